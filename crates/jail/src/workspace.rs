//! Moving files between the host and a box's workspace.
//!
//! After a run, the workspace holds whatever the program chose to leave:
//! symlinks to `/etc/shadow`, FIFOs, deep trees, huge files. The host reads it
//! only through `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, takes
//! regular files only, and stops at caps on count, depth and bytes.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

use crate::BoxHandle;
use crate::error::JailError;

/// A regular file found in the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceFile {
    /// Path relative to the workspace root.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

/// Caps on what [`BoxHandle::list_files`] walks.
#[derive(Debug, Clone, Copy)]
pub struct WalkLimits {
    /// Most files listed.
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

const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

fn open_beneath(root: &OwnedFd, rel: &Path, flags: OFlags) -> Result<OwnedFd, std::io::Error> {
    rustix::fs::openat2(
        root,
        rel,
        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        BENEATH,
    )
    .map_err(Into::into)
}

impl BoxHandle {
    fn workspace_root(&self) -> Result<OwnedFd, JailError> {
        let dir = self.workspace_dir();
        rustix::fs::open(
            dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| JailError::io(dir)(e.into()))
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
        let dest = self.workspace_dir().join(name);
        copy_tree(src, &dest, self.uid())
    }

    /// List the regular files under `rel` (relative to the workspace).
    pub fn list_files(&self, rel: &Path, limits: WalkLimits) -> Result<WalkReport, JailError> {
        let root = self.workspace_root()?;
        let mut report = WalkReport::default();
        let start = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let dir = match open_beneath(&root, start, OFlags::DIRECTORY | OFlags::RDONLY) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
            Err(e) => return Err(JailError::io(&self.workspace_dir().join(rel))(e)),
        };
        walk(dir, rel.to_owned(), 0, limits, &mut report);
        Ok(report)
    }

    /// Read a regular file of the workspace, refusing symlinks anywhere in
    /// the path and anything larger than `max_bytes`.
    pub fn read_file(&self, rel: &Path, max_bytes: u64) -> Result<Vec<u8>, JailError> {
        let root = self.workspace_root()?;
        let full = self.workspace_dir().join(rel);
        let fd = open_beneath(&root, rel, OFlags::RDONLY).map_err(JailError::io(&full))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| JailError::io(&full)(e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(JailError::Spec(format!(
                "`{}` is not a regular file",
                rel.display()
            )));
        }
        let mut out = Vec::new();
        File::from(fd)
            .take(max_bytes + 1)
            .read_to_end(&mut out)
            .map_err(JailError::io(&full))?;
        if out.len() as u64 > max_bytes {
            return Err(JailError::Spec(format!(
                "`{}` is larger than {max_bytes} bytes",
                rel.display()
            )));
        }
        Ok(out)
    }

    /// Copy the workspace's regular files into `dest` (created if needed),
    /// within `limits` and at most `max_bytes` in total.
    pub fn copy_out(&self, dest: &Path, limits: WalkLimits, max_bytes: u64) -> Result<WalkReport, JailError> {
        let report = self.list_files(Path::new(""), limits)?;
        let mut total = 0u64;
        for f in &report.files {
            total += f.size;
            if total > max_bytes {
                return Err(JailError::Spec(format!(
                    "the workspace holds more than {max_bytes} bytes"
                )));
            }
            let data = self.read_file(&f.path, max_bytes)?;
            let target = dest.join(&f.path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(JailError::io(parent))?;
            }
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&target)
                .map_err(JailError::io(&target))?;
            out.write_all(&data).map_err(JailError::io(&target))?;
        }
        Ok(report)
    }
}

fn walk(dir: OwnedFd, rel: PathBuf, depth: usize, limits: WalkLimits, report: &mut WalkReport) {
    let Ok(mut entries) = rustix::fs::Dir::read_from(&dir) else {
        return;
    };
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let path = rel.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let Ok(st) = rustix::fs::statat(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) else {
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
                if let Ok(sub) = rustix::fs::openat(dir.as_fd(), name, flags, Mode::empty()) {
                    walk(sub, path, depth + 1, limits, report);
                }
            }
            _ => report.skipped.push(path),
        }
    }
}

/// Copy `src` to `dest` on the host, giving ownership to `uid`. The source is
/// the caller's (trusted); symlinks in it are skipped rather than followed.
fn copy_tree(src: &Path, dest: &Path, uid: u32) -> Result<u64, JailError> {
    let meta = std::fs::symlink_metadata(src).map_err(JailError::io(src))?;
    let owner = Some(rustix::fs::Uid::from_raw(uid));
    let group = Some(rustix::fs::Gid::from_raw(uid));
    let chown = |p: &Path| {
        if rustix::process::geteuid().is_root() {
            rustix::fs::chownat(rustix::fs::CWD, p, owner, group, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| JailError::io(p)(e.into()))
        } else {
            Ok(())
        }
    };
    if meta.is_dir() {
        std::fs::create_dir_all(dest).map_err(JailError::io(dest))?;
        chown(dest)?;
        let mut total = 0;
        for entry in std::fs::read_dir(src).map_err(JailError::io(src))? {
            let entry = entry.map_err(JailError::io(src))?;
            total += copy_tree(&entry.path(), &dest.join(entry.file_name()), uid)?;
        }
        Ok(total)
    } else if meta.is_file() {
        let n = std::fs::copy(src, dest).map_err(JailError::io(dest))?;
        chown(dest)?;
        Ok(n)
    } else {
        Ok(0)
    }
}
