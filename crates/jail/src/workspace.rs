//! The one place where the host touches files a box can write: its
//! workspace, and (for a live box) its `/tmp`.
//!
//! A box's program may still be running while the host reads or cleans its
//! files (warm boxes keep their program between calls, sessions keep theirs
//! for hours), so every path below a box directory is hostile and may change
//! between two system calls: a directory swapped for a symlink to `/etc`, a
//! file swapped for a FIFO, a tree a million entries deep. Therefore:
//!
//! * every path is resolved with `openat2` beneath the directory's
//!   descriptor, refusing symlinks, magic links and other mounts
//!   (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//!   RESOLVE_NO_XDEV`), with `O_NOFOLLOW` on the last component;
//! * files are opened non-blocking and checked with `fstat` before anything
//!   is read: regular files only, never a FIFO, socket or device;
//! * ownership and modes are changed on descriptors (`fchown`, `fchmod`),
//!   never by name;
//! * removal goes directory descriptor by directory descriptor
//!   (`unlinkat`), within a budget of entries and depth, so a box racing the
//!   host can make a clean-up fail (and its box be retired) but never
//!   redirect it or make it run forever.
//!
//! Nothing else in Warden touches a box's files by name.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::BoxHandle;
use crate::error::JailError;

/// A regular file found in the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceFile {
    /// Path relative to the directory walked.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

/// Caps on what [`BoxDir::list`] walks.
#[derive(Debug, Clone, Copy)]
pub struct WalkLimits {
    /// Most files listed (and most other entries noted as skipped).
    pub max_files: usize,
    /// Deepest directory level entered.
    pub max_depth: usize,
}

impl Default for WalkLimits {
    fn default() -> Self {
        WalkLimits {
            max_files: 1000,
            max_depth: 16,
        }
    }
}

/// What a walk found beyond the regular files it lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalkReport {
    /// Regular files, in directory order.
    pub files: Vec<WorkspaceFile>,
    /// Entries that are not regular files or directories (symlinks, FIFOs,
    /// sockets): never followed, never copied.
    pub skipped: Vec<PathBuf>,
    /// The walk stopped at a cap.
    pub truncated: bool,
}

/// Why a file operation in a box directory was refused or failed. Paths in
/// messages are escaped ([`escape_name`]): they come from the box.
#[derive(Debug, thiserror::Error)]
pub enum BoxFileError {
    /// The path is not a plain relative path.
    #[error("invalid path `{path}`: {reason}")]
    InvalidPath {
        /// The path, escaped.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// Nothing there.
    #[error("`{0}` does not exist")]
    NotFound(String),
    /// A symlink (or a magic link) on the way: never followed.
    #[error("`{0}` passes through a symbolic link; links are never followed")]
    Link(String),
    /// Resolution would leave the directory (another mount, `..` above it).
    #[error("`{0}` leads outside its directory")]
    Escapes(String),
    /// Not a regular file.
    #[error("`{path}` is {kind}, not a regular file")]
    NotRegular {
        /// The path, escaped.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// Not a directory.
    #[error("`{path}` is {kind}, not a directory")]
    NotDirectory {
        /// The path, escaped.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// Over a size cap.
    #[error("`{path}` is larger than {limit} bytes")]
    TooLarge {
        /// The path, escaped.
        path: String,
        /// The cap.
        limit: u64,
    },
    /// An archive being unpacked is malformed or holds what a workspace
    /// may not.
    #[error("archive entry `{entry}`: {reason}")]
    Archive {
        /// The entry's path, escaped (empty when the archive itself is bad).
        entry: String,
        /// Why.
        reason: String,
    },
    /// Some other system error.
    #[error("`{path}`")]
    Io {
        /// The path, escaped.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl BoxFileError {
    pub(crate) fn from_errno(rel: &Path, e: Errno) -> BoxFileError {
        let path = escape_name(rel.as_os_str().as_bytes());
        match e {
            Errno::NOENT => BoxFileError::NotFound(path),
            Errno::LOOP => BoxFileError::Link(path),
            Errno::XDEV => BoxFileError::Escapes(path),
            Errno::NOTDIR => BoxFileError::NotDirectory {
                path,
                kind: "a file or a symbolic link",
            },
            // Opening a FIFO for writing, non-blocking, with no reader.
            Errno::NXIO => BoxFileError::NotRegular {
                path,
                kind: "a FIFO or a device",
            },
            Errno::NAMETOOLONG => BoxFileError::InvalidPath {
                path,
                reason: "a name is too long",
            },
            e => BoxFileError::Io {
                path,
                source: e.into(),
            },
        }
    }
}

/// Render a name chosen by a box for a person to read: control characters,
/// bidirectional overrides, zero-width characters and invalid UTF-8 are
/// escaped (`\u{202e}`, `\n`), so a name can neither move a terminal's
/// cursor, forge a line of output, nor pose as another name.
pub fn escape_name(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\'' => out.push(c),
            c => out.extend(c.escape_debug()),
        }
    }
    out
}

pub(crate) const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

pub(crate) fn kind_of(ft: FileType) -> &'static str {
    match ft {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "an unknown kind of file",
    }
}

/// Check that `rel` is a plain relative path: no absolute path, no `..`,
/// no NUL. (`openat2` would refuse escapes anyway; this gives a clear error
/// first.) The empty path and `.` mean the directory itself.
pub(crate) fn check_rel(rel: &Path) -> Result<(), BoxFileError> {
    let bad = |reason| BoxFileError::InvalidPath {
        path: escape_name(rel.as_os_str().as_bytes()),
        reason,
    };
    if rel.as_os_str().as_bytes().contains(&0) {
        return Err(bad("it contains a NUL byte"));
    }
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(bad("it must be relative")),
            Component::ParentDir => return Err(bad("`..` is not allowed")),
        }
    }
    Ok(())
}

/// How much [`BoxDir::empty`] may do before it gives up.
#[derive(Debug, Clone, Copy)]
pub struct EmptyBudget {
    /// Most entries removed or looked at.
    pub entries: usize,
    /// Deepest directory level entered.
    pub depth: usize,
}

impl Default for EmptyBudget {
    fn default() -> Self {
        EmptyBudget {
            entries: 100_000,
            depth: 128,
        }
    }
}

/// A directory a box can write to, held by the host as a descriptor.
/// Every operation resolves beneath it, never following anything the box
/// may have planted (see the module's documentation).
#[derive(Debug)]
pub struct BoxDir {
    pub(crate) fd: OwnedFd,
    pub(crate) uid: Option<u32>,
}

impl BoxDir {
    /// Open a directory the host itself chose (a slot's workspace, a box's
    /// `/tmp` through `/proc/<init>/root`). `owner` is the uid and gid new
    /// files and directories are given (root only; `None` keeps the host's).
    pub fn open(path: &Path, owner: Option<u32>) -> Result<BoxDir, JailError> {
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| JailError::io(path)(e.into()))?;
        let uid = owner.filter(|_| rustix::process::geteuid().is_root());
        Ok(BoxDir { fd, uid })
    }

    pub(crate) fn open_beneath(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, BoxFileError> {
        check_rel(rel)?;
        let start = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        rustix::fs::openat2(
            &self.fd,
            start,
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY,
            Mode::empty(),
            BENEATH,
        )
        .map_err(|e| BoxFileError::from_errno(rel, e))
    }

    /// Open the parent of `rel` and return it with `rel`'s last name.
    pub(crate) fn parent_of<'p>(&self, rel: &'p Path) -> Result<(OwnedFd, &'p OsStr), BoxFileError> {
        check_rel(rel)?;
        let name = rel.file_name().ok_or_else(|| BoxFileError::InvalidPath {
            path: escape_name(rel.as_os_str().as_bytes()),
            reason: "it names no file",
        })?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        let fd = self.open_beneath(parent, OFlags::DIRECTORY | OFlags::RDONLY)?;
        Ok((fd, name))
    }

    /// Open a regular file for reading: non-blocking (a FIFO swapped in
    /// cannot stall the host), checked with `fstat` before any read.
    /// Returns the file and its size.
    pub fn open_file(&self, rel: &Path) -> Result<(File, u64), BoxFileError> {
        let fd = self.open_beneath(rel, OFlags::RDONLY | OFlags::NONBLOCK)?;
        let st = rustix::fs::fstat(&fd).map_err(|e| BoxFileError::from_errno(rel, e))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft != FileType::RegularFile {
            return Err(BoxFileError::NotRegular {
                path: escape_name(rel.as_os_str().as_bytes()),
                kind: kind_of(ft),
            });
        }
        Ok((File::from(fd), st.st_size as u64))
    }

    /// Read a regular file whole, refusing anything larger than `max_bytes`
    /// (checked against what is read, not only the size the file claims).
    pub fn read_file(&self, rel: &Path, max_bytes: u64) -> Result<Vec<u8>, BoxFileError> {
        let (file, size) = self.open_file(rel)?;
        let too_large = || BoxFileError::TooLarge {
            path: escape_name(rel.as_os_str().as_bytes()),
            limit: max_bytes,
        };
        if size > max_bytes {
            return Err(too_large());
        }
        let mut out = Vec::with_capacity(size as usize);
        file.take(max_bytes + 1)
            .read_to_end(&mut out)
            .map_err(|source| BoxFileError::Io {
                path: escape_name(rel.as_os_str().as_bytes()),
                source,
            })?;
        if out.len() as u64 > max_bytes {
            return Err(too_large());
        }
        Ok(out)
    }

    /// Make sure `rel` is a directory owned by the box (created if missing,
    /// with `mode`). Anything else found there (a planted symlink or file)
    /// is removed first. Ownership and mode are set on the directory's
    /// descriptor, so a swap between the steps changes nothing on the host.
    pub fn ensure_dir(&self, rel: &Path, mode: u32) -> Result<(), BoxFileError> {
        let (parent, name) = self.parent_of(rel)?;
        for _ in 0..8 {
            match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(mode)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(BoxFileError::from_errno(rel, e)),
            }
            let dir = match rustix::fs::openat2(
                &parent,
                name,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
                BENEATH,
            ) {
                Ok(d) => d,
                // Not a directory (or a link): out of the way, then again.
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    let _ = rustix::fs::unlinkat(&parent, name, AtFlags::empty());
                    continue;
                }
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(BoxFileError::from_errno(rel, e)),
            };
            let io = |e: Errno| BoxFileError::from_errno(rel, e);
            if let Some(uid) = self.uid {
                rustix::fs::fchown(
                    &dir,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(uid)),
                )
                .map_err(io)?;
            }
            rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode)).map_err(io)?;
            return Ok(());
        }
        Err(BoxFileError::Io {
            path: escape_name(rel.as_os_str().as_bytes()),
            source: std::io::Error::other("the box kept replacing the directory"),
        })
    }

    /// Create (or replace) the regular file `rel` with what `data` yields,
    /// at most `max_bytes`, owned by the box. The parent must exist. A
    /// symlink, FIFO or directory in its place is refused, never followed.
    /// Returns the bytes written.
    pub fn write_file(&self, rel: &Path, data: &mut dyn Read, max_bytes: u64) -> Result<u64, BoxFileError> {
        self.write_file_as(rel, data, max_bytes, FileMeta::default())
    }

    /// [`BoxDir::write_file`], then give the file `meta`'s mode and
    /// modification time (on its descriptor).
    pub fn write_file_as(
        &self,
        rel: &Path,
        data: &mut dyn Read,
        max_bytes: u64,
        meta: FileMeta,
    ) -> Result<u64, BoxFileError> {
        let (parent, name) = self.parent_of(rel)?;
        let fd = rustix::fs::openat2(
            &parent,
            name,
            OFlags::WRONLY
                | OFlags::CREATE
                | OFlags::CLOEXEC
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY,
            Mode::from_raw_mode(0o644),
            BENEATH,
        )
        .map_err(|e| BoxFileError::from_errno(rel, e))?;
        let io = |e: Errno| BoxFileError::from_errno(rel, e);
        let st = rustix::fs::fstat(&fd).map_err(io)?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft != FileType::RegularFile {
            return Err(BoxFileError::NotRegular {
                path: escape_name(rel.as_os_str().as_bytes()),
                kind: kind_of(ft),
            });
        }
        if let Some(uid) = self.uid {
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(uid)),
            )
            .map_err(io)?;
        }
        rustix::fs::ftruncate(&fd, 0).map_err(io)?;
        let mut file = File::from(fd);
        let written =
            std::io::copy(&mut data.take(max_bytes + 1), &mut file).map_err(|source| BoxFileError::Io {
                path: escape_name(rel.as_os_str().as_bytes()),
                source,
            })?;
        if written > max_bytes {
            let _ = rustix::fs::ftruncate(&file, 0);
            return Err(BoxFileError::TooLarge {
                path: escape_name(rel.as_os_str().as_bytes()),
                limit: max_bytes,
            });
        }
        if let Some(mode) = meta.mode {
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o777)).map_err(io)?;
        }
        if let Some(secs) = meta.modified_secs {
            let at = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: secs,
                    tv_nsec: 0,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: secs,
                    tv_nsec: 0,
                },
            };
            rustix::fs::futimens(&file, &at).map_err(io)?;
        }
        Ok(written)
    }

    /// List the regular files under `rel`, within `limits`. Symlinks, FIFOs
    /// and sockets are noted, never followed.
    pub fn list(&self, rel: &Path, limits: WalkLimits) -> Result<WalkReport, BoxFileError> {
        let mut report = WalkReport::default();
        let dir = match self.open_beneath(rel, OFlags::DIRECTORY | OFlags::RDONLY) {
            Ok(d) => d,
            Err(BoxFileError::NotFound(_)) => return Ok(report),
            Err(e) => return Err(e),
        };
        let mut visited = 0usize;
        walk(dir, rel.to_owned(), 0, limits, &mut visited, &mut report);
        Ok(report)
    }

    /// What is at `rel` (never following a link there: a link is reported
    /// as one).
    pub fn stat(&self, rel: &Path) -> Result<EntryInfo, BoxFileError> {
        let (parent, name) = match rel.file_name() {
            Some(_) => self.parent_of(rel)?,
            None => {
                check_rel(rel)?;
                let fd = self.open_beneath(rel, OFlags::DIRECTORY | OFlags::RDONLY)?;
                let st = rustix::fs::fstat(&fd).map_err(|e| BoxFileError::from_errno(rel, e))?;
                return Ok(EntryInfo::from_stat(String::new(), &st));
            }
        };
        let st = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| BoxFileError::from_errno(rel, e))?;
        Ok(EntryInfo::from_stat(name.to_string_lossy().into_owned(), &st))
    }

    /// The entries of the directory `rel` (not recursive), at most `max`;
    /// the flag says whether there were more.
    pub fn read_dir(&self, rel: &Path, max: usize) -> Result<(Vec<EntryInfo>, bool), BoxFileError> {
        let dir = self.open_beneath(rel, OFlags::DIRECTORY | OFlags::RDONLY)?;
        let mut entries = rustix::fs::Dir::new(dir).map_err(|e| BoxFileError::from_errno(rel, e))?;
        let mut out = Vec::new();
        while let Some(entry) = entries.next() {
            let entry = entry.map_err(|e| BoxFileError::from_errno(rel, e))?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            if out.len() >= max {
                return Ok((out, true));
            }
            let dir = entries.fd().map_err(|e| BoxFileError::from_errno(rel, e))?;
            // Gone between the listing and the stat: not there.
            let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let name = String::from_utf8_lossy(name.to_bytes()).into_owned();
            out.push(EntryInfo::from_stat(name, &st));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((out, false))
    }

    /// Remove the file, link or directory tree at `rel` (a link is removed,
    /// never followed), within `budget`.
    pub fn remove(&self, rel: &Path, budget: EmptyBudget) -> Result<(), BoxFileError> {
        let (parent, name) = self.parent_of(rel)?;
        let name_c = std::ffi::CString::new(name.as_bytes()).map_err(|_| BoxFileError::InvalidPath {
            path: escape_name(rel.as_os_str().as_bytes()),
            reason: "it contains a NUL byte",
        })?;
        if let Err(e) = rustix::fs::statat(&parent, name_c.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            return Err(BoxFileError::from_errno(rel, e));
        }
        let mut left = budget.entries;
        if remove_entry(parent.as_fd(), name_c.as_c_str(), budget.depth, &mut left) {
            Ok(())
        } else {
            Err(BoxFileError::Io {
                path: escape_name(rel.as_os_str().as_bytes()),
                source: std::io::Error::other("it could not be removed whole (it is too large or changing)"),
            })
        }
    }

    /// Copy the tree at `rel` to the host directory `dest` (created here; it
    /// must not exist, and its parent is the caller's own): directories,
    /// regular files (mode 0644, or 0755 when the owner could execute),
    /// and symlinks recreated as symlinks with their target text, never
    /// followed (they are only ever resolved inside boxes). FIFOs, sockets
    /// and devices are skipped. Stops with an error past `limits`.
    pub fn copy_tree_out(
        &self,
        rel: &Path,
        dest: &Path,
        limits: CopyLimits,
    ) -> Result<CopyReport, BoxFileError> {
        let src = self.open_beneath(rel, OFlags::DIRECTORY | OFlags::RDONLY)?;
        let mut report = CopyReport::default();
        copy_dir(src, rel, dest, 0, limits, &mut report)?;
        Ok(report)
    }

    /// Remove everything in this directory (the directory itself stays),
    /// within `budget`. Returns false when the budget ran out or something
    /// could not be removed: the box is racing the clean-up, and the caller
    /// should stop trusting it (retire the box).
    pub fn empty(&self, budget: EmptyBudget) -> bool {
        let mut left = budget.entries;
        let Ok(top) = rustix::fs::openat(
            &self.fd,
            c".",
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        empty_dir(top, budget.depth, &mut left)
    }

    /// The directory's descriptor (for `fstatfs` checks by callers).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The mode and time [`BoxDir::write_file_as`] gives a file (`None`: the
/// default mode of a new file, 0644, or the existing file's; the time of
/// the write).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileMeta {
    /// Permission bits (only `0o777` of them are kept: never set-id).
    pub mode: Option<u32>,
    /// Last modification, seconds since the Unix epoch.
    pub modified_secs: Option<i64>,
}

/// What kind of entry a [`EntryInfo`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (never followed by the host).
    Link,
    /// A FIFO, socket or device.
    Other,
}

/// One entry of a box directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Its name (lossy UTF-8; escape it before showing it to a person).
    pub name: String,
    /// Its kind.
    pub kind: EntryKind,
    /// Size in bytes (of the link itself, for a link).
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

impl EntryInfo {
    fn from_stat(name: String, st: &rustix::fs::Stat) -> EntryInfo {
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => EntryKind::File,
            FileType::Directory => EntryKind::Directory,
            FileType::Symlink => EntryKind::Link,
            _ => EntryKind::Other,
        };
        EntryInfo {
            name,
            kind,
            size: st.st_size as u64,
            modified_ms: st.st_mtime * 1000 + (st.st_mtime_nsec / 1_000_000) as i64,
        }
    }
}

/// Caps on [`BoxDir::copy_tree_out`].
#[derive(Debug, Clone, Copy)]
pub struct CopyLimits {
    /// Most entries (files, directories, links).
    pub entries: usize,
    /// Most bytes of file content.
    pub bytes: u64,
    /// Deepest directory level.
    pub depth: usize,
}

/// What [`BoxDir::copy_tree_out`] copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Regular files.
    pub files: usize,
    /// Directories (the top one included).
    pub dirs: usize,
    /// Symlinks (recreated, not followed).
    pub links: usize,
    /// Bytes of file content.
    pub bytes: u64,
    /// Entries skipped (FIFOs, sockets, devices).
    pub skipped: usize,
}

fn copy_dir(
    src: OwnedFd,
    rel: &Path,
    dest: &Path,
    depth: usize,
    limits: CopyLimits,
    report: &mut CopyReport,
) -> Result<(), BoxFileError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let too_big = |what: &str| BoxFileError::Io {
        path: escape_name(rel.as_os_str().as_bytes()),
        source: std::io::Error::other(format!("the tree holds more than {what}")),
    };
    let host_err = |source: std::io::Error| BoxFileError::Io {
        path: dest.display().to_string(),
        source,
    };
    if depth > limits.depth {
        return Err(too_big(&format!("{} directory levels", limits.depth)));
    }
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dest)
        .map_err(host_err)?;
    report.dirs += 1;
    let mut entries = rustix::fs::Dir::new(src).map_err(|e| BoxFileError::from_errno(rel, e))?;
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(|e| BoxFileError::from_errno(rel, e))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        if report.files + report.dirs + report.links >= limits.entries {
            return Err(too_big(&format!("{} entries", limits.entries)));
        }
        let dir = entries.fd().map_err(|e| BoxFileError::from_errno(rel, e))?;
        let os_name = OsStr::from_bytes(name.to_bytes());
        let (sub_rel, sub_dest) = (rel.join(os_name), dest.join(os_name));
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| BoxFileError::from_errno(&sub_rel, e))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let sub = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| BoxFileError::from_errno(&sub_rel, e))?;
                copy_dir(sub, &sub_rel, &sub_dest, depth + 1, limits, report)?;
            }
            FileType::RegularFile => {
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
                    Mode::empty(),
                )
                .map_err(|e| BoxFileError::from_errno(&sub_rel, e))?;
                let st = rustix::fs::fstat(&fd).map_err(|e| BoxFileError::from_errno(&sub_rel, e))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    report.skipped += 1;
                    continue;
                }
                let mode = if st.st_mode & 0o100 != 0 { 0o755 } else { 0o644 };
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&sub_dest)
                    .map_err(host_err)?;
                let left = limits.bytes.saturating_sub(report.bytes);
                let n = std::io::copy(&mut File::from(fd).take(left + 1), &mut out).map_err(host_err)?;
                if n > left {
                    return Err(too_big(&format!("{} bytes", limits.bytes)));
                }
                report.bytes += n;
                report.files += 1;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| BoxFileError::from_errno(&sub_rel, e))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(target.to_bytes()), &sub_dest)
                    .map_err(host_err)?;
                report.links += 1;
            }
            _ => report.skipped += 1,
        }
    }
    Ok(())
}

/// Remove the entries of `dir` (already open), depth-first, spending
/// `left`. True when it ended empty.
fn empty_dir(dir: OwnedFd, depth: usize, left: &mut usize) -> bool {
    // Two passes at most: entries created while we read are caught by the
    // second; a box that keeps creating them makes us give up.
    for _ in 0..2 {
        let Ok(entries) = rustix::fs::Dir::read_from(&dir) else {
            return false;
        };
        let mut removed_any = false;
        let mut clean = true;
        for entry in entries {
            let Ok(entry) = entry else { return false };
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            if *left == 0 {
                return false;
            }
            *left -= 1;
            removed_any = true;
            if !remove_entry(dir.as_fd(), name, depth, left) {
                clean = false;
            }
        }
        if !removed_any {
            return true;
        }
        if !clean {
            return false;
        }
    }
    // Check it is empty now.
    rustix::fs::Dir::read_from(&dir)
        .map(|mut d| {
            d.all(|e| {
                e.map(|e| e.file_name() == c"." || e.file_name() == c"..")
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

/// Remove one entry of `parent`: a file or link by `unlinkat`, a directory
/// by emptying it through its own descriptor first.
fn remove_entry(parent: BorrowedFd<'_>, name: &std::ffi::CStr, depth: usize, left: &mut usize) -> bool {
    for _ in 0..4 {
        match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => return true,
            Err(Errno::ISDIR) => {}
            Err(_) => return false,
        }
        if depth == 0 {
            return false;
        }
        let sub = match rustix::fs::openat(
            parent,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(s) => s,
            // Swapped for a link or a file meanwhile: unlink it again.
            Err(Errno::NOTDIR | Errno::LOOP) => continue,
            Err(Errno::NOENT) => return true,
            Err(_) => return false,
        };
        if !empty_dir(sub, depth - 1, left) {
            return false;
        }
        match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => return true,
            // Refilled or swapped meanwhile: go round once more.
            Err(Errno::NOTEMPTY | Errno::NOTDIR) => continue,
            Err(_) => return false,
        }
    }
    false
}

fn walk(
    dir: OwnedFd,
    rel: PathBuf,
    depth: usize,
    limits: WalkLimits,
    visited: &mut usize,
    report: &mut WalkReport,
) {
    let Ok(mut entries) = rustix::fs::Dir::new(dir) else {
        return;
    };
    // Every entry counts, not only regular files: a box can create a
    // million FIFOs as easily as a million files.
    let max_visits = limits.max_files.saturating_mul(4).max(64);
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        *visited += 1;
        if *visited > max_visits {
            report.truncated = true;
            return;
        }
        let Ok(dir) = entries.fd() else { return };
        let path = rel.join(OsStr::from_bytes(name.to_bytes()));
        let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                if report.files.len() >= limits.max_files {
                    report.truncated = true;
                    return;
                }
                report.files.push(WorkspaceFile {
                    path,
                    size: st.st_size as u64,
                });
            }
            FileType::Directory => {
                if depth + 1 >= limits.max_depth {
                    report.truncated = true;
                    continue;
                }
                let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                if let Ok(sub) = rustix::fs::openat(dir, name, flags, Mode::empty()) {
                    walk(sub, path, depth + 1, limits, visited, report);
                }
            }
            _ => {
                if report.skipped.len() < limits.max_files {
                    report.skipped.push(path);
                } else {
                    report.truncated = true;
                }
            }
        }
    }
}

impl BoxHandle {
    /// The workspace, as a [`BoxDir`] whose new files belong to the box.
    pub fn workspace(&self) -> Result<BoxDir, JailError> {
        BoxDir::open(self.workspace_dir(), Some(self.uid()))
    }

    /// Copy a host file or directory (recursively) into the workspace root,
    /// owned by the box user. Symlinks in the source are skipped.
    pub fn copy_in(&self, src: &Path) -> Result<u64, JailError> {
        let name = src.file_name().ok_or_else(|| {
            JailError::Spec(format!(
                "cannot copy `{}` into the workspace: it has no file name",
                src.display()
            ))
        })?;
        let ws = self.workspace()?;
        copy_tree(&ws, src, Path::new(name))
    }

    /// List the regular files under `rel` (relative to the workspace).
    pub fn list_files(&self, rel: &Path, limits: WalkLimits) -> Result<WalkReport, JailError> {
        Ok(self.workspace()?.list(rel, limits)?)
    }

    /// Read a regular file of the workspace, refusing symlinks anywhere in
    /// the path and anything larger than `max_bytes`.
    pub fn read_file(&self, rel: &Path, max_bytes: u64) -> Result<Vec<u8>, JailError> {
        Ok(self.workspace()?.read_file(rel, max_bytes)?)
    }

    /// Copy the workspace's regular files into `dest` (created if needed),
    /// within `limits` and at most `max_bytes` in total.
    pub fn copy_out(&self, dest: &Path, limits: WalkLimits, max_bytes: u64) -> Result<WalkReport, JailError> {
        let ws = self.workspace()?;
        let report = ws.list(Path::new(""), limits)?;
        let mut total = 0u64;
        for f in &report.files {
            total += f.size;
            if total > max_bytes {
                return Err(JailError::Spec(format!(
                    "the workspace holds more than {max_bytes} bytes"
                )));
            }
            let data = ws.read_file(&f.path, max_bytes)?;
            // `f.path` is made of real directory entries: never `..`, never
            // absolute. The destination is the caller's own folder.
            let target = dest.join(&f.path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(JailError::io(parent))?;
            }
            let mut out = std::fs::OpenOptions::new();
            out.write(true).create(true).truncate(true);
            std::os::unix::fs::OpenOptionsExt::custom_flags(&mut out, libc::O_NOFOLLOW);
            let mut out = out.open(&target).map_err(JailError::io(&target))?;
            std::io::Write::write_all(&mut out, &data).map_err(JailError::io(&target))?;
        }
        Ok(report)
    }
}

/// Copy the host's `src` (the caller's, trusted; symlinks in it are skipped)
/// to `rel` in `dir`.
fn copy_tree(dir: &BoxDir, src: &Path, rel: &Path) -> Result<u64, JailError> {
    let meta = std::fs::symlink_metadata(src).map_err(JailError::io(src))?;
    if meta.is_dir() {
        dir.ensure_dir(rel, 0o755)?;
        let mut total = 0;
        for entry in std::fs::read_dir(src).map_err(JailError::io(src))? {
            let entry = entry.map_err(JailError::io(src))?;
            total += copy_tree(dir, &entry.path(), &rel.join(entry.file_name()))?;
        }
        Ok(total)
    } else if meta.is_file() {
        let mut file = File::open(src).map_err(JailError::io(src))?;
        Ok(dir.write_file(rel, &mut file, u64::MAX - 1)?)
    } else {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dir() -> (tempfile::TempDir, BoxDir) {
        let t = tempfile::tempdir().unwrap();
        let d = BoxDir::open(t.path(), None).unwrap();
        (t, d)
    }

    #[test]
    fn names_from_a_box_are_escaped_for_people() {
        assert_eq!(escape_name(b"plain.txt"), "plain.txt");
        assert_eq!(escape_name("a\u{202e}txt.exe".as_bytes()), "a\\u{202e}txt.exe");
        assert_eq!(escape_name(b"x\nwarning: forged"), "x\\nwarning: forged");
        assert_eq!(escape_name(b"\x1b[2J"), "\\u{1b}[2J");
        assert_eq!(escape_name(b"bad\xffutf8"), "bad\u{fffd}utf8");
        assert_eq!(escape_name("\u{200b}zw".as_bytes()), "\\u{200b}zw");
    }

    #[test]
    fn paths_must_be_plain_and_relative() {
        let (_t, d) = dir();
        for bad in ["/etc/passwd", "../x", "a/../../x"] {
            assert!(
                matches!(
                    d.read_file(Path::new(bad), 10),
                    Err(BoxFileError::InvalidPath { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn links_fifos_and_escapes_are_refused() {
        let (t, d) = dir();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, b"host secret").unwrap();
        std::fs::write(t.path().join("f"), b"data").unwrap();
        symlink(&secret, t.path().join("link")).unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        symlink(outside.path(), t.path().join("sub/up")).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, t.path().join("fifo"), Mode::from_raw_mode(0o600)).unwrap();
        assert_eq!(d.read_file(Path::new("f"), 10).unwrap(), b"data");
        assert!(matches!(
            d.read_file(Path::new("link"), 1 << 20),
            Err(BoxFileError::Link(_))
        ));
        assert!(matches!(
            d.read_file(Path::new("sub/up/secret"), 1 << 20),
            Err(BoxFileError::Link(_))
        ));
        // Opened non-blocking and refused by fstat: no wait for a writer.
        assert!(matches!(
            d.read_file(Path::new("fifo"), 10),
            Err(BoxFileError::NotRegular { kind: "a FIFO", .. })
        ));
        assert!(matches!(
            d.read_file(Path::new("f"), 3),
            Err(BoxFileError::TooLarge { .. })
        ));
        for target in ["link", "sub/up/secret"] {
            let mut data: &[u8] = b"overwritten";
            // A link as the last name is ELOOP; as a directory on the way,
            // O_DIRECTORY makes it ENOTDIR. Refused either way.
            assert!(
                matches!(
                    d.write_file(Path::new(target), &mut data, 100),
                    Err(BoxFileError::Link(_) | BoxFileError::NotDirectory { .. })
                ),
                "{target}"
            );
        }
        let mut data: &[u8] = b"x";
        assert!(matches!(
            d.write_file(Path::new("fifo"), &mut data, 10),
            Err(BoxFileError::NotRegular { .. })
        ));
        assert_eq!(std::fs::read(&secret).unwrap(), b"host secret");
    }

    #[test]
    fn ensure_dir_replaces_a_planted_link_and_never_touches_its_target() {
        let (t, d) = dir();
        let outside = tempfile::tempdir().unwrap();
        let before = std::fs::metadata(outside.path()).unwrap();
        symlink(outside.path(), t.path().join("out")).unwrap();
        d.ensure_dir(Path::new("out"), 0o700).unwrap();
        let meta = std::fs::symlink_metadata(t.path().join("out")).unwrap();
        assert!(meta.is_dir());
        let after = std::fs::metadata(outside.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((before.mode(), before.uid()), (after.mode(), after.uid()));
        // A file in the way goes too.
        std::fs::write(t.path().join("f2"), b"x").unwrap();
        d.ensure_dir(Path::new("f2"), 0o755).unwrap();
        assert!(t.path().join("f2").is_dir());
    }

    #[test]
    fn empty_removes_trees_without_following_links() {
        let (t, d) = dir();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"k").unwrap();
        std::fs::create_dir_all(t.path().join("a/b/c")).unwrap();
        std::fs::write(t.path().join("a/b/c/file"), b"x").unwrap();
        symlink(outside.path(), t.path().join("a/link")).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, t.path().join("fifo"), Mode::from_raw_mode(0o600)).unwrap();
        assert!(d.empty(EmptyBudget::default()));
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn trees_copy_out_with_links_as_links_and_within_caps() {
        let (t, d) = dir();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"host").unwrap();
        std::fs::create_dir_all(t.path().join("layer/pkg/bin")).unwrap();
        std::fs::write(t.path().join("layer/pkg/mod.py"), b"x = 1").unwrap();
        std::fs::write(t.path().join("layer/pkg/bin/tool"), b"#!/bin/sh").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            t.path().join("layer/pkg/bin/tool"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        symlink(outside.path().join("secret"), t.path().join("layer/pkg/evil")).unwrap();
        symlink("../pkg/bin/tool", t.path().join("layer/tool")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            t.path().join("layer/fifo"),
            Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let dest = tempfile::tempdir().unwrap();
        let out = dest.path().join("copy");
        let limits = CopyLimits {
            entries: 100,
            bytes: 1 << 20,
            depth: 8,
        };
        let r = d.copy_tree_out(Path::new("layer"), &out, limits).unwrap();
        assert_eq!((r.files, r.dirs, r.links, r.skipped), (2, 3, 2, 1));
        assert_eq!(std::fs::read(out.join("pkg/mod.py")).unwrap(), b"x = 1");
        let mode = std::fs::metadata(out.join("pkg/bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        // The link is a link: its target is text, never read by the host.
        assert_eq!(
            std::fs::read_link(out.join("pkg/evil")).unwrap(),
            outside.path().join("secret")
        );
        assert!(std::fs::symlink_metadata(out.join("fifo")).is_err());
        // Caps.
        let small = CopyLimits { bytes: 3, ..limits };
        assert!(
            d.copy_tree_out(Path::new("layer"), &dest.path().join("c2"), small)
                .is_err()
        );
        let shallow = CopyLimits { depth: 1, ..limits };
        assert!(
            d.copy_tree_out(Path::new("layer"), &dest.path().join("c3"), shallow)
                .is_err()
        );
        // A link where the tree should be is refused.
        symlink(outside.path(), t.path().join("fake")).unwrap();
        assert!(
            d.copy_tree_out(Path::new("fake"), &dest.path().join("c4"), limits)
                .is_err()
        );
    }

    #[test]
    fn entries_are_listed_stated_and_removed_without_following_links() {
        let (t, d) = dir();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"k").unwrap();
        std::fs::create_dir_all(t.path().join("sub/deeper")).unwrap();
        std::fs::write(t.path().join("sub/deeper/f"), b"12345").unwrap();
        std::fs::write(t.path().join("a.txt"), b"abc").unwrap();
        symlink(outside.path(), t.path().join("link")).unwrap();
        let (entries, more) = d.read_dir(Path::new(""), 10).unwrap();
        assert!(!more);
        let kinds: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("a.txt", EntryKind::File),
                ("link", EntryKind::Link),
                ("sub", EntryKind::Directory)
            ]
        );
        assert_eq!(entries[0].size, 3);
        assert!(entries[0].modified_ms > 0);
        assert!(
            d.read_dir(Path::new(""), 1).unwrap().1,
            "more entries than asked for"
        );
        assert_eq!(d.stat(Path::new("link")).unwrap().kind, EntryKind::Link);
        assert!(
            d.read_dir(Path::new("link"), 10).is_err(),
            "a link is never listed through"
        );
        // Removing the link removes the link only.
        d.remove(Path::new("link"), EmptyBudget::default()).unwrap();
        assert!(outside.path().join("keep").exists());
        d.remove(Path::new("sub"), EmptyBudget::default()).unwrap();
        assert!(!t.path().join("sub").exists());
        assert!(matches!(
            d.remove(Path::new("nothing"), EmptyBudget::default()),
            Err(BoxFileError::NotFound(_))
        ));
    }

    #[test]
    fn empty_gives_up_past_its_budget() {
        let (t, d) = dir();
        let mut p = t.path().to_owned();
        for _ in 0..10 {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        assert!(!d.empty(EmptyBudget {
            entries: 1000,
            depth: 3
        }));
        for i in 0..50 {
            std::fs::write(t.path().join(format!("f{i}")), b"").unwrap();
        }
        assert!(!d.empty(EmptyBudget {
            entries: 20,
            depth: 64
        }));
        assert!(d.empty(EmptyBudget::default()));
    }

    #[test]
    fn walks_stop_at_their_caps_whatever_the_entries_are() {
        let (t, d) = dir();
        for i in 0..300 {
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                t.path().join(format!("p{i}")),
                Mode::from_raw_mode(0o600),
            )
            .unwrap();
        }
        let r = d
            .list(
                Path::new(""),
                WalkLimits {
                    max_files: 10,
                    max_depth: 4,
                },
            )
            .unwrap();
        assert!(r.truncated);
        assert!(r.skipped.len() <= 10);
    }
}
