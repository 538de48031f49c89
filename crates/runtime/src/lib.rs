//! Warden's runtime: turns "this code, this event" into a result, on top of
//! the jail.
//!
//! * Runtimes are data ([`runtimes`]): Python, Node.js, shell, native
//!   binaries (Go plugins are built once with [`Runner::build_go`] and run
//!   as native), and raw commands.
//! * The handler protocol keeps the result apart from output: wrappers
//!   receive the event on descriptor 4 and write one JSON document to
//!   descriptor 3, a memory file only the host reads.
//! * Calls are served warm when they can be ([`warm`]): Python by a
//!   fork-server (one forked child per call, from an interpreter that already
//!   imported the plugin), Node.js by boxes started ahead that serve one call
//!   each. Otherwise, and whenever no warm box is free, a call runs cold in a
//!   fresh box.
//!
//! Nothing here knows about HTTP or the plugin registry.

mod admission;
mod artifacts;
mod cold;
mod door;
mod gobuild;
pub mod layers;
mod livecall;
mod pycache;
mod result;
pub mod runtimes;
pub mod script;
pub mod session;
mod warm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use warden_jail::{
    Bind, BoxSpec, Jail, JailError, Limits, MIB, MountSpec, OutputLimitAction, Stdin, WorkspaceSpec,
};

pub use gobuild::{BuildError, BuildOutput};
pub use result::{Artifact, CallStatus, HandlerError, HandlerResult, Metrics, StdioRun, stdio_call};
pub use runtimes::{Protocol, RuntimeDef, WarmMode};
pub use warden_egress::{
    ConnectionRecord, Credential as EgressCredential, Reason as EgressReason, Verdict as EgressVerdict,
};
pub use warden_jail::Stream;
pub use warm::{PoolStats, WarmBoxInfo, WarmConfig};

/// Plugin code to run: a directory on the host, bound read-only at `/code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// Identity for the warm pool: code of different plugins, versions or
    /// tenants must never share a box, so the key must tell them apart
    /// (for example `tenant/plugin@version#sha256`).
    pub key: String,
    /// Runtime name or alias (`python`, `node`, `shell`, `native`).
    pub runtime: String,
    /// Host directory holding the code; must be readable by other users
    /// (boxes run as unprivileged uids).
    pub dir: PathBuf,
    /// File to load, relative to `dir`.
    pub entrypoint: String,
    /// Function name (wrapper runtimes).
    pub handler: String,
    /// A dependency layer bound read-only into the box (a template's
    /// packages), if any. Part of the code's identity: boxes of a key
    /// always have the same layer.
    pub layer: Option<layers::LayerMount>,
    /// Where the code may reach through the host's egress proxy (a plugin
    /// version's declared hosts); `None`: no network at all. Part of the
    /// code's identity: every box of a key has the same grant.
    pub network: Option<Network>,
}

/// A grant of network: the hosts a box may reach through the host's egress
/// proxy, the non-public addresses the operator opens for it, and the
/// credentials the proxy may inject into its requests (the box only names
/// them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Network {
    /// `host[:port]` entries (the egress proxy's allow-list).
    pub hosts: Vec<String>,
    /// Addresses allowed although they are not public, as CIDRs.
    pub allow_cidrs: Vec<String>,
    /// Credentials the box may name (secrets: `Debug` redacts them).
    pub credentials: Vec<EgressCredential>,
}

/// Limits of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallLimits {
    /// Wall-clock time.
    pub timeout: Duration,
    /// Memory of the call's processes.
    pub memory_bytes: u64,
    /// CPU time per process.
    pub cpu_time: Duration,
    /// Processes and threads of the call.
    pub pids: u32,
    /// Bytes kept per output stream (the rest is dropped, the call goes on).
    pub output_bytes: usize,
    /// Size of the writable workspace.
    pub workspace_bytes: u64,
    /// Largest return value, encoded.
    pub result_bytes: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            timeout: Duration::from_secs(10),
            memory_bytes: 256 * MIB,
            cpu_time: Duration::from_secs(10),
            pids: 64,
            output_bytes: MIB as usize,
            workspace_bytes: 64 * MIB,
            result_bytes: 6 * MIB as usize,
        }
    }
}

/// Receives a call's output as the code writes it (what is kept within the
/// output cap), for streaming to a client; the result holds the same bytes.
/// Called on the thread running the call: it must not block.
pub type OutputTap = Arc<dyn Fn(Stream, &[u8]) + Send + Sync>;

/// One call.
#[derive(Clone)]
pub struct Invocation {
    /// The event, as JSON text.
    pub event: Vec<u8>,
    /// Limits for this call.
    pub limits: CallLimits,
    /// Where output goes as it is produced, if anywhere.
    pub tap: Option<OutputTap>,
}

impl Invocation {
    /// A call with `event` and `limits`, output collected only.
    pub fn new(event: Vec<u8>, limits: CallLimits) -> Invocation {
        Invocation {
            event,
            limits,
            tap: None,
        }
    }
}

impl std::fmt::Debug for Invocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invocation")
            .field("event_bytes", &self.event.len())
            .field("limits", &self.limits)
            .field("tap", &self.tap.is_some())
            .finish()
    }
}

/// Adapts an [`OutputTap`] to the jail's output sink.
pub(crate) struct TapSink<'a>(pub Option<&'a OutputTap>);

impl warden_jail::OutputSink for TapSink<'_> {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        if let Some(tap) = self.0 {
            tap(stream, data);
        }
    }
}

/// Settings of the runner.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Largest event accepted (AWS Lambda's synchronous limit by default).
    pub max_event_bytes: usize,
    /// Calls running at once; further calls wait in the queue.
    pub max_concurrent: usize,
    /// Calls waiting at once; beyond it a call is refused as busy.
    pub max_queue: usize,
    /// How long a call may wait in the queue before it is refused as busy.
    pub queue_timeout: Duration,
    /// The warm pool.
    pub warm: WarmConfig,
    /// Dependency-layer builds running at once (each is a whole box with
    /// pip or npm); more wait.
    pub max_builds: usize,
    /// Session boxes kept started ahead (agent ready, nothing run, no
    /// tenant yet) per kind of session recently started (its layer, disk
    /// and `/tmp` sizes, lifetime; sessions without egress), so a create
    /// claims one instead of waiting for a box and an interpreter to start.
    /// 0: every session starts its own box.
    pub session_prestart: usize,
    /// How long a create with no box ready waits for the one a refill is
    /// starting (one create per box) before it starts its own.
    pub session_prestart_wait: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            max_event_bytes: 6 * MIB as usize,
            max_concurrent: 32,
            max_queue: 256,
            queue_timeout: Duration::from_secs(10),
            warm: WarmConfig::default(),
            max_builds: 2,
            session_prestart: 0,
            session_prestart_wait: Duration::from_millis(250),
        }
    }
}

/// Why a call could not be made (the handler's own failures are results,
/// not errors).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No such runtime.
    #[error("unknown runtime `{0}`: expected one of python, node, shell, native, command")]
    UnknownRuntime(String),
    /// The code directory is unusable.
    #[error("code directory {path}: {reason}")]
    Code {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The event is too large.
    #[error("the event is {size} bytes; the limit is {limit}")]
    EventTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many calls are running and queued.
    #[error("busy: {running} calls running and {queued} queued; retry shortly")]
    Busy {
        /// Calls running.
        running: usize,
        /// Calls queued.
        queued: usize,
    },
    /// The jail failed.
    #[error("jail")]
    Jail(#[from] JailError),
    /// A host file operation failed.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Setting up a call's channels failed.
    #[error("preparing the call ({0})")]
    Channel(#[source] std::io::Error),
    /// A one-shot program cannot be run as given (a file path, a missing
    /// toolchain): the platform checks these first, so this is a backstop.
    #[error("the program cannot be run: {0}")]
    BadScript(String),
    /// A Go build failed; the errors are located.
    #[error("go build failed: {}", .errors.iter().map(|e| if e.file.is_empty() { e.message.clone() } else { format!("{}:{}: {}", e.file, e.line, e.message) }).collect::<Vec<_>>().join("; "))]
    BuildFailed {
        /// The compiler's errors.
        errors: Vec<BuildError>,
        /// The whole build log.
        log: String,
    },
}

/// Runs handlers. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<RunnerInner>,
}

pub(crate) struct RunnerInner {
    pub jail: Jail,
    pub defs: HashMap<String, Arc<RuntimeDef>>,
    pub wrappers: PathBuf,
    pub config: RunnerConfig,
    pub admission: admission::Admission,
    pub pool: warm::WarmPool,
    pub builds: admission::Admission,
    /// The runtimes of one-shot programs (Python, JavaScript).
    pub script_defs: Vec<(script::ScriptLanguage, Arc<RuntimeDef>)>,
    /// Session boxes started ahead.
    pub sessions: session::Prestarted,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("wrappers", &self.inner.wrappers)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner on `jail`; installs the wrappers under the jail's state
    /// directory and starts the warm pool's maintenance.
    pub fn new(jail: Jail, config: RunnerConfig) -> Result<Runner, RuntimeError> {
        let wrappers = jail.state_dir().join("wrappers");
        runtimes::install_wrappers(&wrappers)?;
        let mut defs = HashMap::new();
        for def in runtimes::builtin() {
            let def = Arc::new(def);
            for name in std::iter::once(&def.name).chain(&def.aliases) {
                defs.insert(name.clone(), def.clone());
            }
        }
        if let Some(python) = defs.get("python").and_then(|d| d.argv.first())
            && let Err(e) = pycache::install(&jail, &wrappers, python)
        {
            tracing::warn!(error = %e, "the Python wrapper is not precompiled: Python boxes will compile it themselves (more memory per warm box, slower cold calls)");
        }
        let script_defs = script::defs(&defs);
        let inner = Arc::new(RunnerInner {
            script_defs,
            sessions: session::Prestarted::default(),
            admission: admission::Admission::new(
                config.max_concurrent,
                config.max_queue,
                config.queue_timeout,
            ),
            pool: warm::WarmPool::new(config.warm.clone()),
            // Builds wait their turn (an hour at most); 64 may wait.
            builds: admission::Admission::new(config.max_builds, 64, Duration::from_secs(3600)),
            jail,
            defs,
            wrappers,
            config,
        });
        warm::start_maintenance(Arc::downgrade(&inner));
        Ok(Runner { inner })
    }

    /// The jail underneath.
    pub fn jail(&self) -> &Jail {
        &self.inner.jail
    }

    /// A runtime by name or alias.
    pub fn runtime(&self, name: &str) -> Result<Arc<RuntimeDef>, RuntimeError> {
        self.inner
            .defs
            .get(name)
            .cloned()
            .ok_or_else(|| RuntimeError::UnknownRuntime(name.to_owned()))
    }

    /// Call `code` with an event: warm when a warm box is free, cold
    /// otherwise. Waits in the bounded queue when every slot is busy.
    pub fn invoke(&self, code: &Code, inv: &Invocation) -> Result<HandlerResult, RuntimeError> {
        let def = self.check(code, inv)?;
        let _permit = self.inner.admission.enter()?;
        if def.warm != WarmMode::None && self.inner.config.warm.enabled {
            match warm::invoke(&self.inner, &def, code, inv) {
                warm::Attempt::Done(result) => return result,
                warm::Attempt::NoBox => {}
            }
        }
        cold::invoke(&self.inner, &def, code, inv)
    }

    /// Call `code` in a fresh box, never warm.
    pub fn invoke_cold(&self, code: &Code, inv: &Invocation) -> Result<HandlerResult, RuntimeError> {
        let def = self.check(code, inv)?;
        let _permit = self.inner.admission.enter()?;
        cold::invoke(&self.inner, &def, code, inv)
    }

    /// Start warm boxes for `code` now (up to the configured pre-warmed
    /// count), rather than on its first calls.
    pub fn prewarm(&self, code: &Code, limits: &CallLimits) -> Result<(), RuntimeError> {
        let def = self.runtime(&code.runtime)?;
        check_code_dir(code)?;
        if def.warm != WarmMode::None && self.inner.config.warm.enabled {
            warm::prewarm(&self.inner, &def, code, limits);
        }
        Ok(())
    }

    /// Stop every warm box of `code` (a version deactivated or deleted).
    pub fn retire(&self, key: &str) {
        self.inner.pool.retire(key);
    }

    /// Why warm boxes of `key` do not start, when the plugin's own code
    /// failed to load in the last one (its calls go cold meanwhile, and
    /// fail the same way): the runtime state's `warm-pool start` failure.
    /// `None` once a box started, or after the pool's hold-off (30 s).
    pub fn warm_load_failure(&self, key: &str) -> Option<String> {
        self.inner.pool.load_failure(key)
    }

    /// Warm boxes of `key` ready for a call now.
    pub fn warm_idle(&self, key: &str) -> usize {
        self.inner.pool.idle_for(key)
    }

    /// The idle warm boxes of `key`.
    pub fn warm_boxes(&self, key: &str) -> Vec<WarmBoxInfo> {
        self.inner.pool.idle_boxes(key)
    }

    /// Warm pool figures.
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.pool.stats()
    }

    /// Install packages into a dependency layer, inside the jail (see
    /// [`layers`]). At most `max_builds` run at once; more wait their turn.
    pub fn build_layer(
        &self,
        b: layers::LayerBuild<'_>,
    ) -> Result<layers::BuiltLayer, layers::LayerBuildError> {
        let _turn = self.inner.builds.enter().map_err(|e| layers::LayerBuildError {
            package: None,
            message: format!("too many builds are waiting: {e}"),
            log: String::new(),
        })?;
        layers::build(&self.inner, b)
    }

    /// Run a one-shot program (see [`script`]): warm for Python and
    /// JavaScript when a box of the tenant is free, compiled first for C,
    /// C++ and Go. Waits in the bounded queue when every slot is busy.
    pub fn run_script(&self, s: &script::Script) -> Result<script::ScriptOutcome, RuntimeError> {
        let _permit = self.inner.admission.enter()?;
        script::run(&self.inner, s)
    }

    /// Start a sandbox session's box (see [`session`]).
    /// A prestarted box is claimed when one matches (see
    /// [`RunnerConfig::session_prestart`]).
    pub fn start_session(&self, spec: session::SessionSpec) -> Result<session::SessionBox, RuntimeError> {
        session::open(
            &self.inner,
            spec,
            self.inner.config.session_prestart,
            self.inner.config.session_prestart_wait,
        )
    }

    /// Session boxes started ahead and not yet claimed.
    pub fn prestarted_sessions(&self) -> usize {
        self.inner.sessions.idle()
    }

    /// Stop every session box started ahead (a template's layer is going
    /// away, or the node is stopping).
    pub fn clear_prestarted_sessions(&self) {
        self.inner.sessions.clear();
    }

    /// Build a Go plugin from `src` inside the jail, without network
    /// (vendored modules only), and write the binary to `out`.
    pub fn build_go(&self, src: &Path, out: &Path) -> Result<BuildOutput, RuntimeError> {
        gobuild::build(&self.inner, src, out)
    }

    fn check(&self, code: &Code, inv: &Invocation) -> Result<Arc<RuntimeDef>, RuntimeError> {
        let def = self.runtime(&code.runtime)?;
        if inv.event.len() > self.inner.config.max_event_bytes {
            return Err(RuntimeError::EventTooLarge {
                size: inv.event.len(),
                limit: self.inner.config.max_event_bytes,
            });
        }
        check_code_dir(code)?;
        Ok(def)
    }
}

fn check_code_dir(code: &Code) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |reason: &str| RuntimeError::Code {
        path: code.dir.clone(),
        reason: reason.to_owned(),
    };
    let meta = std::fs::metadata(&code.dir).map_err(|_| bad("does not exist"))?;
    if !meta.is_dir() {
        return Err(bad("is not a directory"));
    }
    if meta.permissions().mode() & 0o005 != 0o005 {
        return Err(bad(
            "must be readable and searchable by other users (mode 0755): boxes run as unprivileged uids",
        ));
    }
    if code.entrypoint.is_empty()
        || code.entrypoint.starts_with('/')
        || code.entrypoint.split('/').any(|p| p == "..")
    {
        return Err(bad(&format!(
            "entrypoint `{}` must be a relative path inside the package",
            code.entrypoint
        )));
    }
    Ok(())
}

impl RunnerInner {
    /// The box spec for one box of `def` running `code` in `mode`.
    pub(crate) fn box_spec(
        &self,
        def: &RuntimeDef,
        code: &Code,
        mode: &str,
        limits: &CallLimits,
        wall: Duration,
    ) -> BoxSpec {
        let argv = def.argv(mode, &code.entrypoint, &code.handler);
        let mut binds: Vec<Bind> = def.binds.iter().map(|b| Bind::same(b)).collect();
        binds.push(Bind {
            host: code.dir.clone(),
            target: PathBuf::from("/code"),
            optional: false,
        });
        if matches!(def.protocol, Protocol::Wrapper | Protocol::Script) {
            binds.push(Bind {
                host: self.wrappers.clone(),
                target: PathBuf::from("/warden"),
                optional: false,
            });
        }
        let env: Vec<(&str, &str)> = def.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut spec = jail_spec(argv, binds, code.layer.as_ref(), &env, limits, wall);
        spec.seccomp_profile = def.seccomp_profile.clone();
        spec
    }
}

/// A box running `argv` in its workspace (`/workspace`, of the call's size,
/// also its `HOME`), with the system's read-only binds plus `binds`, the
/// dependency layer (and the variable that finds it) when there is one,
/// `env` added, the call's limits and `wall` as its wall clock; output past
/// the cap is dropped, stdin is empty. The one place a call's box is
/// described.
pub(crate) fn jail_spec(
    argv: Vec<String>,
    binds: Vec<Bind>,
    layer: Option<&layers::LayerMount>,
    env: &[(&str, &str)],
    limits: &CallLimits,
    wall: Duration,
) -> BoxSpec {
    let mut spec = BoxSpec::command(argv);
    let mut all = warden_jail::system_binds();
    all.extend(binds);
    let layer_env = layer.map(|l| {
        let (bind, env) = l.bind_and_env();
        all.push(bind);
        env
    });
    spec.mounts = MountSpec {
        ro_binds: all,
        workspace: Some(WorkspaceSpec {
            size_bytes: limits.workspace_bytes,
        }),
    };
    spec.cwd = PathBuf::from("/workspace");
    spec.env.retain(|(k, _)| k != "HOME");
    spec.env.push(("HOME".into(), "/workspace".into()));
    for (k, v) in env {
        spec.env.push((k.into(), v.into()));
    }
    if let Some((k, v)) = layer_env {
        spec.env.retain(|(key, _)| key.to_str() != Some(k.as_str()));
        spec.env.push((k.into(), v.into()));
    }
    spec.limits = Limits {
        wall_time: wall,
        cpu_time: Some(limits.cpu_time),
        memory_bytes: Some(limits.memory_bytes),
        pids: Some(limits.pids),
        cpu_cores: Some(1.0),
        file_size_bytes: limits.workspace_bytes.max(MIB),
        open_files: 256,
        stack_bytes: 8 * MIB,
        output_bytes: limits.output_bytes,
        tmp_bytes: 64 * MIB,
    };
    spec.on_output_limit = OutputLimitAction::Truncate;
    spec.stdin = Stdin::Null;
    spec
}

/// A pipe for a call's output (the host keeps the read end).
pub(crate) fn pipe() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd), RuntimeError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| RuntimeError::Channel(e.into()))
}

/// A memory file holding `bytes`, positioned at the start.
pub(crate) fn memfd_with(name: &std::ffi::CStr, bytes: &[u8]) -> Result<std::os::fd::OwnedFd, RuntimeError> {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| RuntimeError::Channel(e.into()))?;
    let mut off = 0;
    while off < bytes.len() {
        off += rustix::io::write(&fd, &bytes[off..]).map_err(|e| RuntimeError::Channel(e.into()))?;
    }
    rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(0)).map_err(|e| RuntimeError::Channel(e.into()))?;
    Ok(fd)
}

/// Read a memory file from the start, at most `cap + 1` bytes (so the caller
/// can tell "too large").
pub(crate) fn read_memfd(fd: &std::os::fd::OwnedFd, cap: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 64 * 1024];
    let mut len = 0;
    loop {
        if len == out.len() {
            if out.len() > cap {
                break;
            }
            out.resize((out.len() * 2).min(cap + 1).max(out.len() + 1), 0);
        }
        match rustix::io::pread(fd, &mut out[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
    }
    out.truncate(len);
    Some(out)
}
