//! A box directory as a tar archive, both ways: the snapshot of a live
//! session's workspace (packed while its code may still be running and
//! racing the host) and its restore into another box's workspace (from an
//! archive exactly as hostile as the box that made it, and the object store
//! it came back from).
//!
//! Packing walks directory descriptors as [`BoxDir::copy_tree_out`] does:
//! links are archived as links (their text), never followed; FIFOs, sockets
//! and devices are skipped; a file is opened non-blocking and checked with
//! `fstat` before it is read, and exactly the size `fstat` gave is archived
//! (a file that shrinks meanwhile is padded with zeros, one that grows is
//! cut), so a racing box can garble its own snapshot but never the
//! archive's framing, and never make the host read anything else.
//!
//! Unpacking checks every entry's path (relative, no `..`, no NUL, within
//! the depth cap) and writes only through [`BoxDir`]'s own calls, which
//! never pass through a link: an archive that plants `a -> /etc` and then
//! writes `a/passwd` gets an error, not a host file. Hard links, devices,
//! FIFOs and sparse files are skipped; set-id and sticky bits are dropped;
//! everything created belongs to the box.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::workspace::{BoxDir, BoxFileError, CopyLimits, CopyReport, FileMeta, escape_name};

/// Longest link text archived or restored (Linux's `PATH_MAX` less its NUL).
const MAX_LINK_BYTES: usize = 4095;

impl BoxDir {
    /// Write this directory's tree to `out` as a tar archive (GNU format;
    /// long names through its extensions), within `limits`: past a cap it
    /// stops with an error and `out` holds a partial archive the caller
    /// must discard. See the module's documentation for what a racing box
    /// can and cannot do.
    pub fn pack_tar(&self, out: &mut dyn Write, limits: CopyLimits) -> Result<CopyReport, BoxFileError> {
        let top = self.open_beneath(Path::new(""), OFlags::DIRECTORY | OFlags::RDONLY)?;
        let mut builder = tar::Builder::new(out);
        let mut report = CopyReport::default();
        pack_dir(&mut builder, top, Path::new(""), 0, limits, &mut report)?;
        builder.finish().map_err(|source| BoxFileError::Io {
            path: "the archive".into(),
            source,
        })?;
        Ok(report)
    }

    /// Restore the tar archive `input` into this directory, within
    /// `limits` (entries, bytes of file content, directory depth). Existing
    /// files of the same names are replaced; a directory is never replaced
    /// by a file or a link. Stops at the first entry it must refuse, naming
    /// it; what was restored before stays (the caller discards the box).
    pub fn unpack_tar(&self, input: &mut dyn Read, limits: CopyLimits) -> Result<CopyReport, BoxFileError> {
        let mut archive = tar::Archive::new(input);
        let mut report = CopyReport::default();
        let mut made: HashSet<PathBuf> = HashSet::new();
        let entries = archive.entries().map_err(|e| bad_archive("", e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad_archive("", format!("the archive is malformed: {e}")))?;
            let raw = entry.path_bytes().into_owned();
            let shown = escape_name(&raw);
            let Some(rel) = entry_path(&raw).map_err(|why| bad_archive(&shown, why.into()))? else {
                continue;
            };
            if rel.components().count() > limits.depth + 1 {
                return Err(bad_archive(
                    &shown,
                    format!("it is more than {} directories deep", limits.depth),
                ));
            }
            if report.files + report.dirs + report.links + report.skipped >= limits.entries {
                return Err(bad_archive(
                    &shown,
                    format!("the archive holds more than {} entries", limits.entries),
                ));
            }
            let header = entry.header();
            let kind = header.entry_type();
            if kind.is_dir() {
                self.make_parents(&rel, &mut made)?;
                self.ensure_dir(&rel, 0o755)?;
                made.insert(rel);
                report.dirs += 1;
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                let size = entry.size();
                let left = limits.bytes.saturating_sub(report.bytes);
                if size > left {
                    return Err(BoxFileError::TooLarge {
                        path: "the archive".into(),
                        limit: limits.bytes,
                    });
                }
                let meta = FileMeta {
                    mode: header.mode().ok().map(|m| m & 0o777),
                    modified_secs: header.mtime().ok().and_then(|t| i64::try_from(t).ok()),
                };
                self.make_parents(&rel, &mut made)?;
                let n = self.write_file_as(&rel, &mut entry, size, meta)?;
                report.bytes += n;
                report.files += 1;
            } else if kind.is_symlink() {
                let Some(target) = entry.link_name_bytes() else {
                    return Err(bad_archive(&shown, "a link without a target".into()));
                };
                let target = target.into_owned();
                self.make_parents(&rel, &mut made)?;
                self.symlink(&rel, &target)?;
                report.links += 1;
            } else {
                // Hard links (they could name any path), devices, FIFOs,
                // sparse files and unknown kinds: never created.
                report.skipped += 1;
            }
        }
        Ok(report)
    }

    /// Create the symbolic link `rel` with the text `target` (never
    /// resolved by the host; only the box's own processes follow it),
    /// owned by the box. A file or link already there is replaced; a
    /// directory is refused.
    pub fn symlink(&self, rel: &Path, target: &[u8]) -> Result<(), BoxFileError> {
        let shown = || escape_name(rel.as_os_str().as_bytes());
        if target.is_empty() || target.len() > MAX_LINK_BYTES || target.contains(&0) {
            return Err(bad_archive(
                &shown(),
                format!("a link's target must be 1 to {MAX_LINK_BYTES} bytes without NUL"),
            ));
        }
        let (parent, name) = self.parent_of(rel)?;
        let io = |e: Errno| BoxFileError::from_errno(rel, e);
        let target = OsStr::from_bytes(target);
        for _ in 0..4 {
            match rustix::fs::symlinkat(target, &parent, name) {
                Ok(()) => {
                    if let Some(uid) = self.uid {
                        let id = Some(rustix::fs::Uid::from_raw(uid));
                        let gid = Some(rustix::fs::Gid::from_raw(uid));
                        rustix::fs::chownat(&parent, name, id, gid, AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
                    }
                    return Ok(());
                }
                Err(Errno::EXIST) => match rustix::fs::unlinkat(&parent, name, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => continue,
                    Err(Errno::ISDIR) => {
                        return Err(BoxFileError::NotRegular {
                            path: shown(),
                            kind: "a directory",
                        });
                    }
                    Err(e) => return Err(io(e)),
                },
                Err(e) => return Err(io(e)),
            }
        }
        Err(BoxFileError::Io {
            path: shown(),
            source: io::Error::other("the box kept replacing it"),
        })
    }

    /// Make the missing ancestors of `rel` (an archive need not list a
    /// file's directories before it), remembering those made.
    fn make_parents(&self, rel: &Path, made: &mut HashSet<PathBuf>) -> Result<(), BoxFileError> {
        let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(());
        };
        if made.contains(parent) {
            return Ok(());
        }
        let mut at = PathBuf::new();
        for c in parent.components() {
            at.push(c);
            if !made.contains(&at) {
                self.ensure_dir(&at, 0o755)?;
                made.insert(at.clone());
            }
        }
        Ok(())
    }
}

fn bad_archive(entry: &str, reason: String) -> BoxFileError {
    BoxFileError::Archive {
        entry: entry.to_owned(),
        reason,
    }
}

/// An archive entry's name as a plain relative path (`None`: the top
/// directory itself, `.` or `./`).
fn entry_path(raw: &[u8]) -> Result<Option<PathBuf>, &'static str> {
    if raw.contains(&0) {
        return Err("its name contains a NUL byte");
    }
    let mut out = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("`..` is not allowed in a name"),
            Component::RootDir | Component::Prefix(_) => return Err("an absolute name is not allowed"),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Yields exactly `left` bytes: what the inner reader gives, then zeros if
/// it ends early (a file the box shrank while it was archived).
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let cap = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..cap])? {
            0 => {
                buf[..cap].fill(0);
                cap
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

fn header(kind: tar::EntryType, st: &rustix::fs::Stat, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(match kind {
        tar::EntryType::Directory => 0o755,
        tar::EntryType::Symlink => 0o777,
        _ => st.st_mode & 0o777,
    });
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn pack_dir(
    builder: &mut tar::Builder<&mut dyn Write>,
    dir: OwnedFd,
    rel: &Path,
    depth: usize,
    limits: CopyLimits,
    report: &mut CopyReport,
) -> Result<(), BoxFileError> {
    let too_big = |what: String| BoxFileError::Io {
        path: escape_name(rel.as_os_str().as_bytes()),
        source: io::Error::other(format!("the tree holds more than {what}")),
    };
    let mut entries = rustix::fs::Dir::new(dir).map_err(|e| BoxFileError::from_errno(rel, e))?;
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(|e| BoxFileError::from_errno(rel, e))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        if report.files + report.dirs + report.links >= limits.entries {
            return Err(too_big(format!("{} entries", limits.entries)));
        }
        let dir = entries.fd().map_err(|e| BoxFileError::from_errno(rel, e))?;
        let sub = rel.join(OsStr::from_bytes(name.to_bytes()));
        let archive_err = |source: io::Error| BoxFileError::Io {
            path: escape_name(sub.as_os_str().as_bytes()),
            source,
        };
        // Gone between the listing and the stat: not there.
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(BoxFileError::from_errno(&sub, e)),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                if depth + 1 > limits.depth {
                    return Err(too_big(format!("{} directory levels", limits.depth)));
                }
                let fd = match rustix::fs::openat(
                    dir,
                    name,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    // Swapped or removed meanwhile: the box's own doing.
                    Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => {
                        report.skipped += 1;
                        continue;
                    }
                    Err(e) => return Err(BoxFileError::from_errno(&sub, e)),
                };
                let mut h = header(tar::EntryType::Directory, &st, 0);
                builder
                    .append_data(&mut h, &sub, io::empty())
                    .map_err(archive_err)?;
                report.dirs += 1;
                pack_dir(builder, fd, &sub, depth + 1, limits, report)?;
            }
            FileType::RegularFile => {
                let fd = match rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT | Errno::LOOP) => {
                        report.skipped += 1;
                        continue;
                    }
                    Err(e) => return Err(BoxFileError::from_errno(&sub, e)),
                };
                // What was opened is what is checked and archived.
                let st = rustix::fs::fstat(&fd).map_err(|e| BoxFileError::from_errno(&sub, e))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    report.skipped += 1;
                    continue;
                }
                let size = st.st_size as u64;
                if size > limits.bytes.saturating_sub(report.bytes) {
                    return Err(BoxFileError::TooLarge {
                        path: "the workspace".into(),
                        limit: limits.bytes,
                    });
                }
                let mut h = header(tar::EntryType::Regular, &st, size);
                let data = Exact {
                    inner: File::from(fd).take(size),
                    left: size,
                };
                builder.append_data(&mut h, &sub, data).map_err(archive_err)?;
                report.bytes += size;
                report.files += 1;
            }
            FileType::Symlink => {
                let target = match rustix::fs::readlinkat(dir, name, Vec::new()) {
                    Ok(t) => t,
                    Err(Errno::NOENT | Errno::INVAL) => {
                        report.skipped += 1;
                        continue;
                    }
                    Err(e) => return Err(BoxFileError::from_errno(&sub, e)),
                };
                let mut h = header(tar::EntryType::Symlink, &st, 0);
                let target = Path::new(OsStr::from_bytes(target.to_bytes()));
                builder.append_link(&mut h, &sub, target).map_err(archive_err)?;
                report.links += 1;
            }
            _ => report.skipped += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn limits() -> CopyLimits {
        CopyLimits {
            entries: 1000,
            bytes: 1 << 20,
            depth: 16,
        }
    }

    fn boxdir() -> (tempfile::TempDir, BoxDir) {
        let t = tempfile::tempdir().unwrap();
        let d = BoxDir::open(t.path(), None).unwrap();
        (t, d)
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_tree_goes_out_and_back_whole_and_nothing_else_does() {
        let (src, from) = boxdir();
        let s = src.path();
        std::fs::create_dir_all(s.join("a/b/empty")).unwrap();
        std::fs::write(s.join("a/b/data.bin"), vec![7u8; 70_000]).unwrap();
        std::fs::write(s.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(s.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(s.join("suid"), b"x").unwrap();
        std::fs::set_permissions(s.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(200));
        std::fs::create_dir(s.join("d".repeat(120))).unwrap();
        std::fs::write(s.join(&long), b"long").unwrap();
        std::fs::write(s.join(OsStr::from_bytes(b"bad\xffname")), b"bytes").unwrap();
        symlink("/etc/passwd", s.join("to-passwd")).unwrap();
        symlink("a/b", s.join("rel-link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            s.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();

        let mut tar = Vec::new();
        let packed = from.pack_tar(&mut tar, limits()).unwrap();
        assert_eq!(
            (packed.files, packed.dirs, packed.links, packed.skipped),
            (5, 4, 2, 1),
            "{packed:?}"
        );
        assert_eq!(packed.bytes, 70_000 + 18 + 1 + 4 + 5);

        let (dst, to) = boxdir();
        let d = dst.path();
        let restored = to.unpack_tar(&mut tar.as_slice(), limits()).unwrap();
        assert_eq!(
            (restored.files, restored.dirs, restored.links, restored.bytes),
            (5, 4, 2, packed.bytes)
        );
        assert_eq!(std::fs::read(d.join("a/b/data.bin")).unwrap(), vec![7u8; 70_000]);
        assert!(d.join("a/b/empty").is_dir());
        assert_eq!(std::fs::read(d.join(&long)).unwrap(), b"long");
        assert_eq!(
            std::fs::read(d.join(OsStr::from_bytes(b"bad\xffname"))).unwrap(),
            b"bytes"
        );
        assert_eq!(mode(&d.join("run.sh")), 0o755);
        assert_eq!(mode(&d.join("suid")), 0o755, "set-id bits never come back");
        assert_eq!(
            std::fs::read_link(d.join("to-passwd")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(std::fs::read_link(d.join("rel-link")).unwrap(), Path::new("a/b"));
        assert!(!d.join("fifo").exists(), "FIFOs are never archived");
        let src_mtime = std::fs::metadata(s.join("run.sh")).unwrap().modified().unwrap();
        let dst_mtime = std::fs::metadata(d.join("run.sh")).unwrap().modified().unwrap();
        let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(src_mtime), secs(dst_mtime));
    }

    #[test]
    fn packing_stops_at_its_caps() {
        let (src, from) = boxdir();
        std::fs::write(src.path().join("big"), vec![1u8; 2000]).unwrap();
        let small = CopyLimits {
            bytes: 1000,
            ..limits()
        };
        let err = from.pack_tar(&mut Vec::new(), small).unwrap_err();
        assert!(matches!(err, BoxFileError::TooLarge { limit: 1000, .. }), "{err}");
        std::fs::create_dir_all(src.path().join("1/2/3/4")).unwrap();
        let shallow = CopyLimits { depth: 2, ..limits() };
        let err = from.pack_tar(&mut Vec::new(), shallow).unwrap_err();
        assert!(err.to_string().contains("directory levels") || format!("{err:?}").contains("levels"));
    }

    /// One entry of a hand-made archive: name, kind, content, link target.
    type Raw<'a> = (&'a [u8], tar::EntryType, &'a [u8], Option<&'a [u8]>);

    /// An archive is built by hand here, the way an attacker would.
    fn hostile(entries: &[Raw<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_old();
            // Write the name raw: `set_path` refuses what an attacker would not.
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o6777);
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
            }
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    #[test]
    fn a_hostile_archive_never_writes_outside_the_directory() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim");
        std::fs::create_dir(&target).unwrap();
        let link_text = target.as_os_str().as_bytes().to_vec();
        // (archive, the error it must give; `None`: it may restore, but
        // only inside the directory)
        let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
            (
                hostile(&[(b"../escape", tar::EntryType::Regular, b"x", None)]),
                Some("`..`"),
            ),
            (
                hostile(&[(b"a/../../escape", tar::EntryType::Regular, b"x", None)]),
                Some("`..`"),
            ),
            (
                hostile(&[(b"/tmp/abs", tar::EntryType::Regular, b"x", None)]),
                Some("absolute"),
            ),
            (
                hostile(&[
                    (b"l", tar::EntryType::Symlink, b"", Some(&link_text)),
                    (b"l", tar::EntryType::Regular, b"x", None),
                ]),
                Some("link"),
            ),
            (
                hostile(&[
                    (b"l", tar::EntryType::Symlink, b"", Some(&link_text)),
                    (b"l/pwned", tar::EntryType::Regular, b"x", None),
                ]),
                None,
            ),
            (
                hostile(&[
                    (b"l", tar::EntryType::Symlink, b"", Some(&link_text)),
                    (b"l/sub", tar::EntryType::Directory, b"", None),
                    (b"l/sub/f", tar::EntryType::Regular, b"x", None),
                ]),
                None,
            ),
        ];
        for (tar, why) in cases {
            let (dst, to) = boxdir();
            let result = to.unpack_tar(&mut tar.as_slice(), limits());
            match why {
                Some(why) => {
                    let text = format!("{}", result.unwrap_err());
                    assert!(text.contains(why), "{why}: {text}");
                }
                None => {
                    // The link was replaced by what came after it, inside.
                    let l = std::fs::symlink_metadata(dst.path().join("l")).unwrap();
                    assert!(!l.file_type().is_symlink(), "{result:?}");
                }
            }
            assert_eq!(
                std::fs::read_dir(&target).unwrap().count(),
                0,
                "{why:?}: the victim is untouched"
            );
        }
        assert!(!outside.path().join("escape").exists());
        assert!(!Path::new("/tmp/abs").exists());

        // Hard links, devices and FIFOs are skipped, never made; set-id
        // bits dropped.
        let (dst, to) = boxdir();
        let tar = hostile(&[
            (b"hard", tar::EntryType::Link, b"", Some(b"/etc/shadow")),
            (b"dev", tar::EntryType::Char, b"", None),
            (b"fifo", tar::EntryType::Fifo, b"", None),
            (b"ok", tar::EntryType::Regular, b"fine", None),
        ]);
        let r = to.unpack_tar(&mut tar.as_slice(), limits()).unwrap();
        assert_eq!((r.files, r.skipped), (1, 3));
        let names: Vec<_> = std::fs::read_dir(dst.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ok")]);
        assert_eq!(mode(&dst.path().join("ok")), 0o777);
    }

    #[test]
    fn an_archive_over_its_caps_or_cut_short_is_refused() {
        let tar = hostile(&[(b"f", tar::EntryType::Regular, &[1u8; 600], None)]);
        let (_d, to) = boxdir();
        let err = to
            .unpack_tar(
                &mut tar.as_slice(),
                CopyLimits {
                    bytes: 100,
                    ..limits()
                },
            )
            .unwrap_err();
        assert!(matches!(err, BoxFileError::TooLarge { limit: 100, .. }), "{err}");

        let many: Vec<(Vec<u8>, _)> = (0..5).map(|i| (format!("f{i}").into_bytes(), ())).collect();
        let entries: Vec<Raw<'_>> = many
            .iter()
            .map(|(n, _)| (n.as_slice(), tar::EntryType::Regular, &b"x"[..], None))
            .collect();
        let tar = hostile(&entries);
        let (_d, to) = boxdir();
        let err = to
            .unpack_tar(
                &mut tar.as_slice(),
                CopyLimits {
                    entries: 3,
                    ..limits()
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("more than 3 entries"), "{err}");

        let deep = hostile(&[(b"a/b/c/d/e", tar::EntryType::Regular, b"x", None)]);
        let (_d, to) = boxdir();
        let err = to
            .unpack_tar(&mut deep.as_slice(), CopyLimits { depth: 2, ..limits() })
            .unwrap_err();
        assert!(err.to_string().contains("deep"), "{err}");

        let whole = hostile(&[(b"f", tar::EntryType::Regular, &[1u8; 5000], None)]);
        let (_d, to) = boxdir();
        let err = to.unpack_tar(&mut &whole[..2048], limits()).unwrap_err();
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn a_file_that_shrinks_while_packed_keeps_the_archive_framed() {
        let mut e = Exact {
            inner: &b"abc"[..],
            left: 6,
        };
        let mut out = Vec::new();
        e.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc\0\0\0");
        let mut e = Exact {
            inner: &b"abcdefgh"[..],
            left: 4,
        };
        let mut out = Vec::new();
        e.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcd");
    }
}
