//! Files a handler leaves under `out/` in its workspace, with their size and
//! SHA-256. The workspace is hostile: the walk and the reads go through the
//! jail's `BoxDir` (beneath a descriptor, no links, regular files only,
//! non-blocking), and stop at caps.

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
    let ws = match handle.workspace() {
        Ok(ws) => ws,
        Err(e) => {
            tracing::warn!(error = %e, "opening the workspace failed");
            return Vec::new();
        }
    };
    let report = match ws.list(Path::new("out"), limits) {
        Ok(r) => r,
        Err(e) => {
            // The handler's doing (it replaced or removed out/): no artifacts.
            tracing::debug!(error = %e, "out/ cannot be listed");
            return Vec::new();
        }
    };
    let mut total = 0u64;
    let mut out = Vec::new();
    for f in report.files {
        if total + f.size > max_bytes {
            tracing::warn!(path = %warden_jail::escape_name(f.path.as_os_str().as_encoded_bytes()), "artifact over the size cap left out");
            continue;
        }
        let Ok(data) = ws.read_file(&f.path, max_bytes - total) else {
            continue;
        };
        total += data.len() as u64;
        let rel = f.path.strip_prefix("out").unwrap_or(&f.path);
        out.push(Artifact {
            path: rel.to_string_lossy().into_owned(),
            size: data.len() as u64,
            sha256: format!("{:x}", Sha256::digest(&data)),
            data,
        });
    }
    out
}

/// A box from `jail` with an empty workspace of `workspace_bytes` holding
/// `out/`, as every call and build starts from.
pub(crate) fn fresh_box(
    jail: &warden_jail::Jail,
    workspace_bytes: u64,
) -> Result<BoxHandle, crate::RuntimeError> {
    let mut handle = jail.acquire()?;
    handle.prepare_workspace(workspace_bytes)?;
    handle
        .workspace()?
        .ensure_dir(Path::new("out"), 0o755)
        .map_err(warden_jail::JailError::from)?;
    Ok(handle)
}
