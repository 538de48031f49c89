//! Writing packages: a builder over the `zip` crate for real packages
//! (`warden plugin pack`), and a raw writer for tests that need archives the
//! builder refuses to make (duplicate names, case collisions, odd modes).

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// Builds a zip in memory. Entries carry a fixed timestamp, so the same
/// files always give the same bytes (and the same package hash).
pub struct ZipBuilder {
    writer: ZipWriter<Cursor<Vec<u8>>>,
}

impl Default for ZipBuilder {
    fn default() -> Self {
        ZipBuilder::new()
    }
}

impl ZipBuilder {
    /// An empty archive.
    pub fn new() -> ZipBuilder {
        ZipBuilder {
            writer: ZipWriter::new(Cursor::new(Vec::new())),
        }
    }

    fn options(method: CompressionMethod, mode: u32) -> SimpleFileOptions {
        SimpleFileOptions::default()
            .compression_method(method)
            .last_modified_time(DateTime::default())
            .unix_permissions(mode)
    }

    /// A deflated file, mode 0644.
    pub fn file(self, name: &str, data: &[u8]) -> ZipBuilder {
        self.file_mode(name, data, 0o644)
    }

    /// A deflated file with a unix mode.
    pub fn file_mode(mut self, name: &str, data: &[u8], mode: u32) -> ZipBuilder {
        // A builder for tests and packing: failures here are bugs.
        self.writer
            .start_file(name, Self::options(CompressionMethod::Deflated, mode))
            .unwrap_or_else(|e| panic!("zip builder: {e}"));
        self.writer
            .write_all(data)
            .unwrap_or_else(|e| panic!("zip builder: {e}"));
        self
    }

    /// A stored (uncompressed) file.
    pub fn stored(mut self, name: &str, data: &[u8]) -> ZipBuilder {
        self.writer
            .start_file(name, Self::options(CompressionMethod::Stored, 0o644))
            .unwrap_or_else(|e| panic!("zip builder: {e}"));
        self.writer
            .write_all(data)
            .unwrap_or_else(|e| panic!("zip builder: {e}"));
        self
    }

    /// A directory entry (`name` ends with `/`).
    pub fn dir(mut self, name: &str) -> ZipBuilder {
        self.writer
            .add_directory(name, Self::options(CompressionMethod::Stored, 0o755))
            .unwrap_or_else(|e| panic!("zip builder: {e}"));
        self
    }

    /// A symlink entry.
    pub fn symlink(mut self, name: &str, target: &str) -> ZipBuilder {
        self.writer
            .add_symlink(name, target, Self::options(CompressionMethod::Stored, 0o777))
            .unwrap_or_else(|e| panic!("zip builder: {e}"));
        self
    }

    /// The archive's bytes.
    pub fn finish(self) -> Vec<u8> {
        self.writer
            .finish()
            .unwrap_or_else(|e| panic!("zip builder: {e}"))
            .into_inner()
    }
}

/// A stored zip written byte by byte, names and modes verbatim: for tests of
/// archives no well-behaved tool would make. Mode 0 means "no unix mode".
pub fn raw_zip_modes(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data, mode) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let n = name.as_bytes();
        let local = [
            &0x0403_4b50u32.to_le_bytes()[..],
            &20u16.to_le_bytes(),
            &0u16.to_le_bytes(), // flags
            &0u16.to_le_bytes(), // stored
            &0u32.to_le_bytes(), // time, date
            &crc.to_le_bytes(),
            &(data.len() as u32).to_le_bytes(),
            &(data.len() as u32).to_le_bytes(),
            &(n.len() as u16).to_le_bytes(),
            &0u16.to_le_bytes(),
        ]
        .concat();
        out.extend_from_slice(&local);
        out.extend_from_slice(n);
        out.extend_from_slice(data);
        let made_by: u16 = if *mode != 0 { 3 << 8 | 20 } else { 20 };
        let cd = [
            &0x0201_4b50u32.to_le_bytes()[..],
            &made_by.to_le_bytes(),
            &20u16.to_le_bytes(),
            &0u16.to_le_bytes(),
            &0u16.to_le_bytes(),
            &0u32.to_le_bytes(),
            &crc.to_le_bytes(),
            &(data.len() as u32).to_le_bytes(),
            &(data.len() as u32).to_le_bytes(),
            &(n.len() as u16).to_le_bytes(),
            &0u16.to_le_bytes(), // extra
            &0u16.to_le_bytes(), // comment
            &0u16.to_le_bytes(), // disk
            &0u16.to_le_bytes(), // internal attrs
            &(mode << 16).to_le_bytes(),
            &offset.to_le_bytes(),
        ]
        .concat();
        central.extend_from_slice(&cd);
        central.extend_from_slice(n);
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    let count = entries.len() as u16;
    let end = [
        &0x0605_4b50u32.to_le_bytes()[..],
        &0u16.to_le_bytes(),
        &0u16.to_le_bytes(),
        &count.to_le_bytes(),
        &count.to_le_bytes(),
        &(central.len() as u32).to_le_bytes(),
        &cd_offset.to_le_bytes(),
        &0u16.to_le_bytes(),
    ]
    .concat();
    out.extend_from_slice(&end);
    out
}

/// [`raw_zip_modes`] with no unix modes.
pub fn raw_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let with: Vec<(&str, &[u8], u32)> = entries.iter().map(|(n, d)| (*n, *d, 0)).collect();
    raw_zip_modes(&with)
}

/// CRC-32 (IEEE), as zip wants it.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_raw_archives_are_readable_by_the_zip_crate() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let z = raw_zip(&[("a.txt", b"hello")]);
        let mut a = zip::ZipArchive::new(Cursor::new(z)).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut a.by_index(0).unwrap(), &mut s).unwrap();
        assert_eq!(s, "hello");
    }

    #[test]
    fn builds_are_deterministic() {
        let a = ZipBuilder::new().file("x", b"1").finish();
        let b = ZipBuilder::new().file("x", b"1").finish();
        assert_eq!(a, b);
    }
}
