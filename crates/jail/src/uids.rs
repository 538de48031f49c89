//! Host-wide claims on box uids, so that pools of different servers never run
//! boxes under the same uid.
//!
//! As root, slot `n` of a pool runs as uid `base + n`. Two Warden processes
//! with different state directories have different slots, so if their uid
//! ranges overlapped, two unrelated boxes could run as one uid at the same
//! time. Each process therefore claims its range in a host-wide directory
//! (`/run/warden-uid-claims`): one file per (state directory, range), held
//! with a shared `flock` for as long as the pool lives. A claim nobody holds
//! is stale and removed. Processes sharing a state directory share its claim
//! (they coordinate per slot already). An explicit base that overlaps a live
//! claim of another state directory is refused, naming it; without one, the
//! pool takes the first free range, preferring the one its state directory
//! had before.
//!
//! Rootless pools need none of this: each box maps one uid of its own user
//! namespace onto the caller's.

use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::error::JailError;

/// Where claims live (root only).
pub(crate) const CLAIMS_DIR: &str = "/run/warden-uid-claims";

/// The default first uid, and the highest uid a box may have (65534 is
/// `nobody`).
pub(crate) const DEFAULT_BASE: u32 = 60000;
const TOP: u32 = 65534;

/// A live claim, released when dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    /// The uids claimed.
    pub range: Range<u32>,
    _file: File,
}

struct Found {
    state_dir: PathBuf,
    range: Range<u32>,
    live: bool,
}

fn overlaps(a: &Range<u32>, b: &Range<u32>) -> bool {
    a.start < b.end && b.start < a.end
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JailError + '_ {
    JailError::io(path)
}

/// Claim `count` uids for the pool at `state_dir` (already canonical):
/// exactly `base..base+count` when `base` is given, else the first free
/// range. Claims live in `dir` ([`CLAIMS_DIR`] outside tests).
pub(crate) fn claim(dir: &Path, state_dir: &Path, base: Option<u32>, count: u32) -> Result<Claim, JailError> {
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(dir)(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() || meta.mode() & 0o022 != 0 {
        return Err(JailError::UnsafeStateDir(dir.to_owned()));
    }
    // One process at a time looks and claims.
    let lock_path = dir.join(".lock");
    let lock = open_file(&lock_path, true)?;
    rustix::fs::flock(&lock, FlockOperation::LockExclusive).map_err(|e| io(&lock_path)(e.into()))?;

    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let name = entry.file_name();
        let Some(range) = parse_name(&name.to_string_lossy()) else {
            continue;
        };
        let path = entry.path();
        let Ok(mut file) = open_file(&path, false) else {
            continue;
        };
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let live = rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_err();
        if !live {
            // Nobody holds it: the process that made it is gone.
            let _ = std::fs::remove_file(&path);
        }
        found.push(Found {
            state_dir: PathBuf::from(text.trim_end_matches('\n')),
            range,
            live,
        });
    }
    let clash = |r: &Range<u32>| {
        found
            .iter()
            .find(|f| f.live && f.state_dir != state_dir && overlaps(&f.range, r))
    };
    let range = match base {
        Some(b) => {
            let r = b..b + count;
            if let Some(other) = clash(&r) {
                return Err(JailError::UidClash {
                    wanted: r,
                    held: other.range.clone(),
                    state_dir: other.state_dir.clone(),
                });
            }
            r
        }
        None => {
            // This state directory's earlier range first (live or stale),
            // then the default, then the next blocks up.
            let mut candidates: Vec<u32> = found
                .iter()
                .filter(|f| f.state_dir == state_dir && f.range.len() as u32 == count)
                .map(|f| f.range.start)
                .collect();
            candidates.extend((DEFAULT_BASE..TOP).step_by(count.max(1) as usize));
            candidates
                .into_iter()
                .map(|b| b..b + count)
                .find(|r| r.end <= TOP && clash(r).is_none())
                .ok_or(JailError::NoFreeUids { count })?
        }
    };
    let path = dir.join(format!("{}-{}", range.start, range.end));
    let mut file = open_file(&path, true)?;
    // A live claim of another state directory on exactly this file name
    // was ruled out above; write ours (same text if it is ours already).
    if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
        file.set_len(0).map_err(io(&path))?;
        file.write_all(format!("{}\n", state_dir.display()).as_bytes())
            .map_err(io(&path))?;
    }
    rustix::fs::flock(&file, FlockOperation::LockShared).map_err(|e| io(&path)(e.into()))?;
    drop(lock);
    Ok(Claim { range, _file: file })
}

fn open_file(path: &Path, create: bool) -> Result<File, JailError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io(path))
}

/// `60000-60064` → `60000..60064`.
fn parse_name(name: &str) -> Option<Range<u32>> {
    let (a, b) = name.split_once('-')?;
    let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
    (a < b).then_some(a..b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_of_different_state_dirs_never_overlap() {
        let claims = tempfile::tempdir().unwrap();
        let dir = claims.path().join("claims");
        let a = claim(&dir, Path::new("/srv/a"), None, 64).unwrap();
        assert_eq!(a.range, 60000..60064);
        // Another state directory gets the next block.
        let b = claim(&dir, Path::new("/srv/b"), None, 64).unwrap();
        assert_eq!(b.range, 60064..60128);
        // The same state directory shares its claim.
        let a2 = claim(&dir, Path::new("/srv/a"), None, 64).unwrap();
        assert_eq!(a2.range, a.range);
        // An explicit base over a live claim of another directory is refused.
        let err = claim(&dir, Path::new("/srv/c"), Some(60010), 8).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/srv/a") && msg.contains("60000"), "{msg}");
        // Once a's holders are gone, the range is free again.
        drop((a, a2));
        let c = claim(&dir, Path::new("/srv/c"), Some(60010), 8).unwrap();
        assert_eq!(c.range, 60010..60018);
    }

    #[test]
    fn a_state_dir_gets_its_earlier_range_back() {
        let claims = tempfile::tempdir().unwrap();
        let dir = claims.path().join("claims");
        let x = claim(&dir, Path::new("/srv/x"), None, 32).unwrap();
        let y = claim(&dir, Path::new("/srv/y"), None, 32).unwrap();
        assert_eq!(y.range, 60032..60064);
        drop((x, y));
        let x = claim(&dir, Path::new("/srv/x"), None, 32).unwrap();
        assert_eq!(x.range, 60000..60032);
    }
}
