//! Files a handler leaves under `out/` in its workspace, with their size and
//! SHA-256. The workspace is hostile: the walk and the reads go through the
//! jail's link-refusing helpers, and stop at caps.

use std::path::Path;

use sha2::{Digest, Sha256};
use warden_jail::{BoxHandle, WalkLimits};

use crate::result::Artifact;

/// Most artifacts returned per call.
const MAX_FILES: usize = 100;

/// Collect `out/` (at most `max_bytes` in total); anything past the caps is
/// left out and logged.
pub(crate) fn collect(handle: &BoxHandle, max_bytes: u64) -> Vec<Artifact> {
    let limits = WalkLimits {
        max_files: MAX_FILES,
        max_depth: 8,
    };
    let report = match handle.list_files(Path::new("out"), limits) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "listing out/ failed");
            return Vec::new();
        }
    };
    let mut total = 0u64;
    let mut out = Vec::new();
    for f in report.files {
        if total + f.size > max_bytes {
            tracing::warn!(path = %f.path.display(), "artifact over the size cap left out");
            continue;
        }
        let Ok(data) = handle.read_file(&f.path, max_bytes - total) else {
            continue;
        };
        total += data.len() as u64;
        let rel = f.path.strip_prefix("out").unwrap_or(&f.path);
        out.push(Artifact {
            path: rel.to_string_lossy().into_owned(),
            size: data.len() as u64,
            sha256: hex(&Sha256::digest(&data)),
            data,
        });
    }
    out
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A box from `jail` with an empty workspace of `workspace_bytes` holding
/// `out/`, as every call and build starts from.
pub(crate) fn fresh_box(
    jail: &warden_jail::Jail,
    workspace_bytes: u64,
) -> Result<BoxHandle, crate::RuntimeError> {
    let mut handle = jail.acquire()?;
    handle.prepare_workspace(workspace_bytes)?;
    make_out_dir(&handle).map_err(|e| crate::RuntimeError::Io {
        path: handle.workspace_dir().join("out"),
        source: e,
    })?;
    Ok(handle)
}

/// Create `out/` in a fresh workspace, owned by the box user.
pub(crate) fn make_out_dir(handle: &BoxHandle) -> std::io::Result<()> {
    let dir = handle.workspace_dir().join("out");
    std::fs::create_dir_all(&dir)?;
    if rustix::process::geteuid().is_root() {
        let id = handle.uid();
        std::os::unix::fs::chown(&dir, Some(id), Some(id))?;
    }
    Ok(())
}
