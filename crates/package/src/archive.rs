//! Reading a plugin package (a zip) that is hostile until proven otherwise.
//!
//! Every entry's metadata is checked from the central directory before a
//! single byte is decompressed: names (UTF-8, relative, no `..`, no drive
//! letters or backslashes, no duplicates, no names differing only in case),
//! types (regular files and directories only: no symlinks, devices, FIFOs),
//! encryption, compression method, counts, declared sizes and compression
//! ratios. Only then are entries decompressed, each read through a cap one
//! byte past its declared size, so a lying header cannot inflate past the
//! limits either. Nothing is ever written to disk here.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read};

use sha2::{Digest, Sha256};
use zip::CompressionMethod;

use crate::Problem;

/// Caps on a package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchiveLimits {
    /// Most entries (files and directories).
    pub max_entries: usize,
    /// Most bytes once unpacked, all entries together.
    pub max_unpacked_bytes: u64,
    /// Most bytes of one entry once unpacked.
    pub max_file_bytes: u64,
    /// Highest ratio of unpacked to packed size for one entry.
    pub max_ratio: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_entries: 1000,
            max_unpacked_bytes: 64 << 20,
            max_file_bytes: 32 << 20,
            max_ratio: 100,
        }
    }
}

/// One regular file of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the package (`/`-separated, relative).
    pub path: String,
    /// Content.
    pub data: Vec<u8>,
    /// The archive marks it executable (native plugins, scripts).
    pub executable: bool,
    /// SHA-256 of the content, hex.
    pub sha256: String,
}

fn problem(path: &str, message: impl Into<String>) -> Problem {
    Problem {
        location: format!("archive:{path}"),
        message: message.into(),
    }
}

/// Why a name is not acceptable, if it is not.
fn bad_name(name: &str) -> Option<&'static str> {
    if name.is_empty() || name == "/" {
        return Some("empty name");
    }
    if name.contains('\0') {
        return Some("the name contains a NUL byte");
    }
    if name.contains('\\') {
        return Some("backslashes are not allowed in names (Windows paths escape on some tools)");
    }
    if name.starts_with('/') {
        return Some("absolute paths are not allowed");
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Some("drive letters are not allowed");
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    for part in trimmed.split('/') {
        match part {
            "" => return Some("empty path component (`//`)"),
            "." => return Some("`.` components are not allowed"),
            ".." => return Some("`..` components are not allowed (zip-slip)"),
            _ => {}
        }
    }
    if name.len() > 1024 {
        return Some("the name is longer than 1024 bytes");
    }
    None
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?)))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The central directory as written: (declared entry count, raw names).
///
/// The `zip` crate keys entries by name, so two entries with one name
/// collapse into one and vanish from its view; walking the directory
/// ourselves finds them. `None` when the directory cannot be located (the
/// `zip` crate then reports why).
fn central_directory(bytes: &[u8], max_entries: usize) -> Option<(u64, Vec<Vec<u8>>)> {
    const EOCD: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    let search_from = bytes.len().saturating_sub(22 + 65535);
    let eocd = (search_from..=bytes.len().saturating_sub(22))
        .rev()
        .find(|&i| bytes.get(i..i + 4) == Some(&EOCD[..]))?;
    let mut count = u16_at(bytes, eocd + 10)? as u64;
    let mut cd_offset = u32_at(bytes, eocd + 16)?;
    if count == 0xffff || cd_offset == 0xffff_ffff {
        // zip64: the locator sits right before the end record.
        let loc = eocd.checked_sub(20)?;
        if bytes.get(loc..loc + 4) != Some(&[0x50, 0x4b, 0x06, 0x07][..]) {
            return None;
        }
        let rec = usize::try_from(u64_at(bytes, loc + 8)?).ok()?;
        if bytes.get(rec..rec + 4) != Some(&[0x50, 0x4b, 0x06, 0x06][..]) {
            return None;
        }
        count = u64_at(bytes, rec + 32)?;
        cd_offset = u64_at(bytes, rec + 48)?;
    }
    if count > max_entries as u64 {
        return Some((count, Vec::new()));
    }
    let mut names = Vec::with_capacity(count as usize);
    let mut at = usize::try_from(cd_offset).ok()?;
    for _ in 0..count {
        if bytes.get(at..at + 4) != Some(&[0x50, 0x4b, 0x01, 0x02][..]) {
            return None;
        }
        let (n, x, c) = (
            u16_at(bytes, at + 28)?,
            u16_at(bytes, at + 30)?,
            u16_at(bytes, at + 32)?,
        );
        names.push(bytes.get(at + 46..at + 46 + n)?.to_vec());
        at += 46 + n + x + c;
    }
    Some((count, names))
}

/// Read and check a package. On success, the regular files sorted by path.
pub fn read(bytes: &[u8], limits: &ArchiveLimits) -> Result<Vec<Entry>, Vec<Problem>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| vec![problem("", format!("not a readable zip archive: {e}"))])?;
    let (declared, raw_names) =
        central_directory(bytes, limits.max_entries).unwrap_or((archive.len() as u64, Vec::new()));
    let entries = declared.max(archive.len() as u64);
    if entries > limits.max_entries as u64 {
        return Err(vec![problem(
            "",
            format!(
                "the archive has {entries} entries; the limit is {}",
                limits.max_entries
            ),
        )]);
    }
    let mut problems = Vec::new();
    // Duplicates first, from the directory as written.
    let mut exact: HashSet<&[u8]> = HashSet::new();
    for raw in &raw_names {
        if !exact.insert(raw.as_slice()) {
            problems.push(problem(&String::from_utf8_lossy(raw), "duplicate entry"));
        }
    }
    let mut seen: HashMap<String, String> = HashMap::new(); // lowercase -> name
    let mut declared_total: u64 = 0;
    let mut files = Vec::new(); // (index, name, size, executable)
    for i in 0..archive.len() {
        let entry = match archive.by_index_raw(i) {
            Ok(e) => e,
            Err(e) => {
                problems.push(problem(&format!("#{i}"), format!("unreadable entry: {e}")));
                continue;
            }
        };
        let Ok(name) = std::str::from_utf8(entry.name_raw()).map(str::to_owned) else {
            problems.push(problem(&format!("#{i}"), "the name is not valid UTF-8"));
            continue;
        };
        if let Some(why) = bad_name(&name) {
            problems.push(problem(&name, why));
            continue;
        }
        let key = name.trim_end_matches('/').to_lowercase();
        if let Some(prev) = seen.get(&key) {
            if prev.trim_end_matches('/') == name.trim_end_matches('/') {
                problems.push(problem(&name, "duplicate entry"));
            } else {
                problems.push(problem(&name, format!("differs only in case from `{prev}`")));
            }
            continue;
        }
        seen.insert(key, name.clone());
        if entry.encrypted() {
            problems.push(problem(&name, "encrypted entries are not allowed"));
            continue;
        }
        let mode = entry.unix_mode();
        let kind = mode.map(|m| m & S_IFMT);
        let is_dir = entry.is_dir();
        match kind {
            Some(S_IFLNK) => {
                problems.push(problem(&name, "symlinks are not allowed"));
                continue;
            }
            Some(k) if k != 0 && k != S_IFREG && k != S_IFDIR => {
                problems.push(problem(&name, "only regular files and directories are allowed"));
                continue;
            }
            Some(S_IFDIR) if !is_dir => {
                problems.push(problem(&name, "a directory entry must end with `/`"));
                continue;
            }
            _ => {}
        }
        if is_dir {
            continue;
        }
        if !matches!(
            entry.compression(),
            CompressionMethod::Stored | CompressionMethod::Deflated
        ) {
            problems.push(problem(
                &name,
                format!(
                    "unsupported compression method {:?}: use deflate",
                    entry.compression()
                ),
            ));
            continue;
        }
        let (size, packed) = (entry.size(), entry.compressed_size());
        if size > limits.max_file_bytes {
            problems.push(problem(
                &name,
                format!(
                    "{size} bytes unpacked; one file may have at most {}",
                    limits.max_file_bytes
                ),
            ));
            continue;
        }
        if size > 0 && (packed == 0 || size / packed.max(1) > limits.max_ratio) {
            problems.push(problem(
                &name,
                format!(
                    "compression ratio {}:1 suggests a zip bomb (the limit is {}:1)",
                    size / packed.max(1),
                    limits.max_ratio
                ),
            ));
            continue;
        }
        declared_total = declared_total.saturating_add(size);
        let executable = mode.is_some_and(|m| m & 0o111 != 0);
        files.push((i, name, size, executable));
    }
    // A path that is a file and also a directory of another file cannot be
    // unpacked (`src` and `src/main.rs`).
    let file_names: std::collections::HashSet<String> = files.iter().map(|f| f.1.to_lowercase()).collect();
    for (_, name, _, _) in &files {
        let lower = name.to_lowercase();
        for (pos, _) in lower.match_indices('/') {
            if file_names.contains(&lower[..pos]) {
                problems.push(problem(
                    name,
                    format!("`{}` is a file, so it cannot also be a directory", &name[..pos]),
                ));
                break;
            }
        }
    }
    if declared_total > limits.max_unpacked_bytes {
        problems.push(problem(
            "",
            format!(
                "{declared_total} bytes unpacked; a package may have at most {}",
                limits.max_unpacked_bytes
            ),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    // Metadata is sound: decompress, never past the declared sizes.
    let mut out = Vec::with_capacity(files.len());
    for (i, name, size, executable) in files {
        let entry = archive
            .by_index(i)
            .map_err(|e| vec![problem(&name, format!("unreadable entry: {e}"))])?;
        let mut data = Vec::with_capacity(size.min(1 << 20) as usize);
        let read = entry.take(size + 1).read_to_end(&mut data);
        match read {
            Ok(_) if data.len() as u64 > size => {
                problems.push(problem(&name, "the entry inflates past its declared size"));
                continue;
            }
            Ok(_) if (data.len() as u64) < size => {
                problems.push(problem(&name, "the entry is shorter than its declared size"));
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                problems.push(problem(&name, format!("corrupt data: {e}")));
                continue;
            }
        }
        let sha256 = hex(&Sha256::digest(&data));
        out.push(Entry {
            path: name,
            data,
            executable,
            sha256,
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{ZipBuilder, raw_zip, raw_zip_modes};

    fn messages(r: Result<Vec<Entry>, Vec<Problem>>) -> Vec<String> {
        r.unwrap_err()
            .into_iter()
            .map(|p| format!("{}: {}", p.location, p.message))
            .collect()
    }

    #[test]
    fn a_sound_archive_reads_back_with_hashes() {
        let zip = ZipBuilder::new()
            .file("manifest.json", b"{}")
            .dir("src/")
            .file_mode("src/run.sh", b"echo hi\n", 0o755)
            .finish();
        let entries = read(&zip, &ArchiveLimits::default()).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["manifest.json", "src/run.sh"]);
        assert!(entries[1].executable && !entries[0].executable);
        assert_eq!(
            entries[0].sha256,
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn hostile_names_are_refused_all_at_once() {
        let zip = raw_zip(&[
            ("../evil", b"x".as_slice()),
            ("/etc/passwd", b"x"),
            ("C:/windows", b"x"),
            ("a\\..\\b", b"x"),
            ("ok/./x", b"x"),
            ("dup", b"x"),
            ("dup", b"y"),
            ("Readme", b"x"),
            ("README", b"y"),
        ]);
        let m = messages(read(&zip, &ArchiveLimits::default()));
        assert_eq!(
            m,
            [
                "archive:dup: duplicate entry",
                "archive:../evil: `..` components are not allowed (zip-slip)",
                "archive:/etc/passwd: absolute paths are not allowed",
                "archive:C:/windows: drive letters are not allowed",
                "archive:a\\..\\b: backslashes are not allowed in names (Windows paths escape on some tools)",
                "archive:ok/./x: `.` components are not allowed",
                "archive:README: differs only in case from `Readme`",
            ]
        );
    }

    #[test]
    fn symlinks_devices_and_encryption_are_refused() {
        let zip = ZipBuilder::new()
            .symlink("link", "/etc/shadow")
            .file("ok.txt", b"fine")
            .finish();
        assert_eq!(
            messages(read(&zip, &ArchiveLimits::default())),
            ["archive:link: symlinks are not allowed"]
        );
        let zip = raw_zip_modes(&[("fifo", b"", 0o010644)]);
        assert_eq!(
            messages(read(&zip, &ArchiveLimits::default())),
            ["archive:fifo: only regular files and directories are allowed"]
        );
    }

    #[test]
    fn non_utf8_names_are_refused() {
        let zip = raw_zip(&[("caf\u{e9}", b"x")]);
        // Patch the name bytes in both headers to Latin-1 `é` (0xE9).
        let bad: Vec<u8> = {
            let needle = "caf\u{e9}".as_bytes();
            let mut z = zip.clone();
            let mut i = 0;
            while i + needle.len() <= z.len() {
                if &z[i..i + needle.len()] == needle {
                    z.splice(i..i + needle.len(), b"caf\xe9_".iter().copied());
                }
                i += 1;
            }
            z
        };
        let m = messages(read(&bad, &ArchiveLimits::default()));
        assert!(m.iter().any(|l| l.contains("not valid UTF-8")), "{m:?}");
    }

    #[test]
    fn bombs_and_sizes_are_stopped_before_unpacking() {
        // 30 MiB of zeros (under the file cap) deflates to ~30 KiB: ~1000:1.
        let zeros = vec![0u8; 30 << 20];
        let zip = ZipBuilder::new().file("bomb.bin", &zeros).finish();
        let m = messages(read(&zip, &ArchiveLimits::default()));
        assert_eq!(m.len(), 1);
        assert!(
            m[0].starts_with("archive:bomb.bin: compression ratio") && m[0].contains("zip bomb"),
            "{m:?}"
        );
        let limits = ArchiveLimits {
            max_file_bytes: 10,
            ..ArchiveLimits::default()
        };
        let zip = ZipBuilder::new().stored("big.txt", b"0123456789abc").finish();
        assert_eq!(
            messages(read(&zip, &limits)),
            ["archive:big.txt: 13 bytes unpacked; one file may have at most 10"]
        );
        let limits = ArchiveLimits {
            max_unpacked_bytes: 20,
            ..ArchiveLimits::default()
        };
        let zip = ZipBuilder::new()
            .stored("a", b"0123456789abc")
            .stored("b", b"0123456789abc")
            .finish();
        assert_eq!(
            messages(read(&zip, &limits)),
            ["archive:: 26 bytes unpacked; a package may have at most 20"]
        );
    }

    #[test]
    fn too_many_entries_are_refused_from_the_directory_alone() {
        let mut b = ZipBuilder::new();
        for i in 0..100_000 {
            b = b.stored(&format!("f{i}"), b"");
        }
        let zip = b.finish();
        assert_eq!(
            messages(read(&zip, &ArchiveLimits::default())),
            ["archive:: the archive has 100000 entries; the limit is 1000"]
        );
    }

    #[test]
    fn lying_sizes_cannot_inflate_past_the_declared_size() {
        let zip = ZipBuilder::new().stored("x", b"hello world").finish();
        // Lower the declared size in both headers from 11 to 5.
        let mut z = zip.clone();
        for sig in [[0x50u8, 0x4b, 0x03, 0x04], [0x50, 0x4b, 0x01, 0x02]] {
            let at = z.windows(4).position(|w| w == sig).unwrap();
            let off = if sig[2] == 3 { at + 22 } else { at + 24 };
            z[off..off + 4].copy_from_slice(&5u32.to_le_bytes());
        }
        let r = read(&z, &ArchiveLimits::default());
        assert!(r.is_err(), "a lying size was accepted: {:?}", r.map(|e| e.len()));
    }

    #[test]
    fn a_file_cannot_also_be_a_directory() {
        let zip = raw_zip(&[("src", b"binary"), ("src/main.rs", b"fn main() {}")]);
        let m = messages(read(&zip, &ArchiveLimits::default()));
        assert_eq!(
            m,
            ["archive:src/main.rs: `src` is a file, so it cannot also be a directory"]
        );
    }

    #[test]
    fn garbage_is_not_a_zip() {
        assert_eq!(
            messages(read(b"PK\x03\x04 nope", &ArchiveLimits::default())).len(),
            1
        );
        assert!(messages(read(b"", &ArchiveLimits::default()))[0].contains("not a readable zip archive"));
    }
}
