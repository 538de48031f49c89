//! Runtimes are data: an argv template, a protocol, a warm mode, extra
//! read-only binds, a seccomp profile and environment. Adding a runtime is an
//! entry in `runtimes.json` (plus a wrapper when it speaks the wrapper
//! protocol), not new jail code.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::RuntimeError;

/// How a handler receives its event and returns its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// A wrapper loads the handler; the event arrives on descriptor 4 and
    /// the result leaves on descriptor 3, apart from anything printed.
    Wrapper,
    /// The event on stdin, the result on stdout (JSON when it parses).
    Stdio,
    /// No protocol: argv runs as given.
    Raw,
    /// A one-shot program ([`crate::script`]): the wrapper loads Warden's
    /// program runner as the handler and the event carries the program;
    /// the program's exit status is the result. The wrapper writes a
    /// document only when the runner itself fails (an unusable event).
    Script,
}

/// How calls can be served warm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmMode {
    /// Every call starts a fresh box.
    None,
    /// A box holds a started interpreter with the module imported and serves
    /// calls one at a time over the fork-server protocol: Python forks a
    /// fresh child per call; Node.js (through `serve_argv`'s agent) runs
    /// each call on a freshly evaluated module in one long-lived process.
    ForkServer,
    /// Boxes are started ahead, import the module, and serve one call each.
    Prestart,
}

/// One runtime.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeDef {
    /// Name used in manifests (`python`).
    pub name: String,
    /// Other accepted names (`python3`).
    pub aliases: Vec<String>,
    /// What the runtime runs.
    pub description: String,
    /// Program and arguments; `{mode}`, `{entrypoint}`, `{handler}` are
    /// filled in per box.
    pub argv: Vec<String>,
    /// The program of a fork-server box, when it is not `argv` in `serve`
    /// mode (Node.js: an agent that speaks the protocol for it); same
    /// placeholders.
    #[serde(default)]
    pub serve_argv: Vec<String>,
    /// Memory a fork-server box may hold between calls, when the runtime
    /// needs more than the pool's `server_memory_bytes` (MiB).
    #[serde(default)]
    pub server_memory_mb: Option<u64>,
    /// Event and result protocol.
    pub protocol: Protocol,
    /// Warm serving.
    pub warm: WarmMode,
    /// Host paths bound read-only in addition to the system ones.
    pub binds: Vec<String>,
    /// Seccomp profile name.
    pub seccomp_profile: String,
    /// Environment added to the box's minimal one.
    pub env: BTreeMap<String, String>,
}

impl RuntimeDef {
    /// What a fork-server box of this runtime may hold between calls: the
    /// pool's allowance, or the runtime's own when larger.
    pub fn server_memory(&self, pool_allowance: u64) -> u64 {
        pool_allowance.max(self.server_memory_mb.unwrap_or(0) << 20)
    }

    /// The argv for one box.
    pub fn argv(&self, mode: &str, entrypoint: &str, handler: &str) -> Vec<String> {
        let template = if mode == "serve" && !self.serve_argv.is_empty() {
            &self.serve_argv
        } else {
            &self.argv
        };
        template
            .iter()
            .map(|a| {
                a.replace("{mode}", mode)
                    .replace("{entrypoint}", entrypoint)
                    .replace("{handler}", handler)
            })
            .collect()
    }
}

/// The built-in runtimes.
pub fn builtin() -> Vec<RuntimeDef> {
    serde_json::from_str(include_str!("../runtimes.json"))
        .unwrap_or_else(|e| panic!("runtimes.json is invalid: {e}"))
}

/// Wrapper sources, installed where boxes see them at `/warden`.
const WRAPPERS: &[(&str, &str)] = &[
    (
        "python/warden_boot.py",
        include_str!("../wrappers/python/warden_boot.py"),
    ),
    (
        "python/warden_wrapper.py",
        include_str!("../wrappers/python/warden_wrapper.py"),
    ),
    (
        "node/warden_wrapper.mjs",
        include_str!("../wrappers/node/warden_wrapper.mjs"),
    ),
    (
        "node/warden_node_agent.py",
        include_str!("../wrappers/node/warden_node_agent.py"),
    ),
    (
        "python/warden_session.py",
        include_str!("../wrappers/python/warden_session.py"),
    ),
    (
        "python/warden_repl.py",
        include_str!("../wrappers/python/warden_repl.py"),
    ),
    (
        "node/warden_repl.mjs",
        include_str!("../wrappers/node/warden_repl.mjs"),
    ),
    ("script/run.py", include_str!("../wrappers/script/run.py")),
    ("script/run.cjs", include_str!("../wrappers/script/run.cjs")),
];

/// Write the wrappers under `dir` (world-readable: boxes run as other uids).
pub fn install_wrappers(dir: &Path) -> Result<(), RuntimeError> {
    mkdir_public(dir)?;
    for (rel, text) in WRAPPERS {
        write_public(&dir.join(rel), text.as_bytes())?;
    }
    Ok(())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.to_owned();
    move |source| RuntimeError::Io { path, source }
}

/// Create `dir` and make it readable by every uid.
fn mkdir_public(dir: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(io_error(dir))
}

/// Write `bytes` to `path` (its directory created), readable by every uid.
/// Files are written beside and renamed into place, so a box never sees a
/// half-written file.
pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    let parent = path.parent().unwrap_or(Path::new("/"));
    mkdir_public(parent)?;
    // Unique per writer: runners starting at once (several servers in one
    // process, or two processes on one state directory) must not rename
    // each other's half-written files.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = parent.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io_error(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_runtimes_parse_and_fill_templates() {
        let defs = builtin();
        let py = defs.iter().find(|d| d.name == "python").unwrap();
        assert_eq!(py.warm, WarmMode::ForkServer);
        assert_eq!(
            py.argv("once", "main.py", "handler")[4..],
            ["/warden/python/warden_boot.py", "once", "main.py", "handler"]
        );
        for d in &defs {
            assert!(!d.description.is_empty());
            if d.protocol != Protocol::Raw {
                assert!(d.argv.iter().any(|a| a.contains("{entrypoint}")), "{}", d.name);
            }
        }
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["python", "node", "shell", "native", "command"]);
    }
}
