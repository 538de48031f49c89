//! Warden's jail: runs one untrusted program tree in a locked-down Linux box.
//!
//! Layers, outermost first (see `docs/security.md` for the threat model and
//! the test behind each):
//!
//! * namespaces: pid, mount, network, ipc, uts, cgroup, and a user namespace
//!   in rootless mode;
//! * a fresh tmpfs root holding read-only binds of the runtime's host paths,
//!   a private size-capped `/tmp`, a minimal `/dev`, the box's own `/proc`;
//! * an unprivileged uid with every capability dropped and `no_new_privs`;
//! * landlock rules matching the mount plan, TCP denied, signals and abstract
//!   sockets scoped to the box (where the kernel has landlock);
//! * a seccomp allow-list (profiles are data, see `policy/`);
//! * cgroups (v2 or v1) for memory, processes and CPU, rlimits for the rest;
//! * a host-enforced wall clock that kills the whole pid namespace.
//!
//! This is the only crate of Warden with `unsafe`; all of it sits in `sys`,
//! plus the two fork call sites, which say why they are sound.
//!
//! The jail knows nothing of plugins, handlers or HTTP.

mod archive;
mod cgroup;
mod child;
mod egress;
mod error;
mod features;
mod ipc;
mod launch;
mod mounts;
mod outcome;
mod pool;
mod report;
mod running;
pub mod seccomp;
mod spec;
mod supervise;
mod sys;
mod uids;
mod workspace;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use cgroup::{Baseline as CgroupBaseline, BoxCgroup, CgroupLimits, CgroupReport, CgroupStats, Cgroups};
pub use egress::{Egress, EgressNet, PROXY_PORT};
pub use error::JailError;
pub use features::{Facility, Features};
pub use mounts::PlanError;
pub use outcome::{RunOutcome, SandboxReport, Status, Violation};
pub use pool::{CleanReport, PoolConfig, Slot};
pub use running::{BoxEvent, RunningBox};
pub use spec::{
    Bind, BoxSpec, Limits, MIB, MountSpec, OutputLimitAction, Stdin, WorkspaceSpec, default_env, system_binds,
};
pub use supervise::{Bounds, Capture, Ended, KilledFor, NoSink, Observed, OutputSink, Stream, classify};
pub use workspace::{
    BoxDir, BoxFileError, CopyLimits, CopyReport, EmptyBudget, EntryInfo, EntryKind, FileMeta, WalkLimits,
    WalkReport, WorkspaceFile, escape_name,
};

use crate::seccomp::{CompiledProfile, Profile};

/// How the jail is set up on this host.
#[derive(Debug, Clone)]
pub struct JailConfig {
    /// Where box slots live. Default: `/run/warden` as root,
    /// `$XDG_RUNTIME_DIR/warden` or `/tmp/warden-<uid>` otherwise.
    pub state_dir: Option<PathBuf>,
    /// Most boxes at once.
    pub max_boxes: u32,
    /// Box `n` runs as uid `uid_base + n` (root mode); in rootless mode every
    /// box runs as `uid_base` inside its own user namespace. `None` (the
    /// default): the first range no other pool on this host holds, preferring
    /// this state directory's earlier one. An explicit base that another
    /// state directory's pool holds is refused (see `docs/security.md`).
    pub uid_base: Option<u32>,
    /// Keep a network namespace per slot (root mode).
    pub pool_netns: bool,
    /// Hostname inside boxes.
    pub hostname: String,
}

impl Default for JailConfig {
    fn default() -> Self {
        JailConfig {
            state_dir: None,
            max_boxes: 64,
            uid_base: None,
            pool_netns: true,
            hostname: "warden".into(),
        }
    }
}

/// The default state directory for the current user.
pub fn default_state_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        PathBuf::from("/run/warden")
    } else if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(dir).join("warden")
    } else {
        PathBuf::from(format!("/tmp/warden-{}", rustix::process::geteuid().as_raw()))
    }
}

/// The jail: detected kernel features, the box pool, and compiled seccomp
/// profiles. A cheap handle (clone it freely); boxes may start in parallel
/// from many threads.
#[derive(Debug, Clone)]
pub struct Jail {
    inner: Arc<JailInner>,
}

#[derive(Debug)]
struct JailInner {
    config: JailConfig,
    features: Features,
    cgroups: Option<Cgroups>,
    pool: pool::BoxPool,
    state_dir: PathBuf,
    profiles: Mutex<HashMap<String, Arc<CompiledProfile>>>,
}

impl Jail {
    /// Detect the kernel's facilities and prepare the pool. Fails, naming
    /// what is missing, when namespaces or seccomp are unavailable.
    pub fn new(config: JailConfig) -> Result<Jail, JailError> {
        if let Some(base) = config.uid_base
            && (base < 1000 || base.checked_add(config.max_boxes).is_none_or(|top| top >= 65534))
        {
            return Err(JailError::Spec(format!(
                "box uids {}..{} must lie between 1000 and 65533, away from root and system accounts",
                base,
                u64::from(base) + u64::from(config.max_boxes)
            )));
        }
        if config.max_boxes == 0 {
            return Err(JailError::Spec("the pool needs at least one box".into()));
        }
        let (features, cgroups) = Features::detect();
        let missing: Vec<String> = features
            .missing_required()
            .iter()
            .map(|f| f.name.to_owned())
            .collect();
        if !missing.is_empty() {
            return Err(JailError::MissingFeatures(missing));
        }
        if cgroups.is_none() {
            tracing::warn!(
                notes = ?features.cgroup.notes,
                "no usable cgroup: boxes are limited by rlimits only (no whole-box memory or process cap)"
            );
        }
        let state_dir = config.state_dir.clone().unwrap_or_else(default_state_dir);
        let pool = pool::BoxPool::new(
            PoolConfig {
                state_dir: state_dir.clone(),
                max_boxes: config.max_boxes,
                uid_base: config.uid_base,
                pool_netns: config.pool_netns,
            },
            features.root,
        )?;
        Ok(Jail {
            inner: Arc::new(JailInner {
                config,
                features,
                cgroups,
                pool,
                state_dir,
                profiles: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// What the kernel offers.
    pub fn features(&self) -> &Features {
        &self.inner.features
    }

    /// The chosen cgroup backend, if any.
    pub fn cgroups(&self) -> Option<&Cgroups> {
        self.inner.cgroups.as_ref()
    }

    /// True when boxes get their own user namespace (not running as root).
    pub fn rootless(&self) -> bool {
        !self.inner.features.root
    }

    /// Prepare `n` box slots ahead of demand.
    pub fn prewarm(&self, n: u32) -> Result<(), JailError> {
        self.inner.pool.prewarm(n, self.inner.cgroups.as_ref())
    }

    /// Tear down every box slot not in use (see `warden pool clean`).
    pub fn clean_pool(&self) -> Result<CleanReport, JailError> {
        self.inner.pool.clean(self.inner.cgroups.as_ref())
    }

    /// The uids boxes run as: slot `n` gets `start + n` (root); rootless
    /// boxes all run as `start` in their own user namespaces.
    pub fn uid_range(&self) -> std::ops::Range<u32> {
        self.inner.pool.uid_range()
    }

    /// The state directory the pool lives in.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// Whether boxes can still start (for readiness probes): the state
    /// directory is in place and the default seccomp profile is compiled.
    pub fn check_usable(&self) -> Result<(), String> {
        let dir = self.state_dir();
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "the state directory {} is not a directory",
                    dir.display()
                ));
            }
            Err(e) => return Err(format!("the state directory {}: {e}", dir.display())),
        }
        self.profile("default")
            .map(|_| ())
            .map_err(|e| format!("the default seccomp profile: {e}"))
    }

    /// Number of prepared idle slots held by this process.
    pub fn idle_boxes(&self) -> usize {
        self.inner.pool.idle_count()
    }

    /// A compiled seccomp profile, cached. `name` is a built-in profile or a
    /// path to a profile file.
    pub fn profile(&self, name: &str) -> Result<Arc<CompiledProfile>, JailError> {
        let mut cache = self.inner.profiles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(name) {
            return Ok(p.clone());
        }
        let compiled = Arc::new(Profile::load(name)?.compile(self.inner.features.seccomp_user_notif)?);
        cache.insert(name.to_owned(), compiled.clone());
        Ok(compiled)
    }

    /// Run a spec in a fresh box and wait for it.
    pub fn run(&self, spec: BoxSpec) -> Result<RunOutcome, JailError> {
        self.run_with(spec, &mut NoSink)
    }

    /// [`Jail::run`], passing output to `sink` as it arrives.
    pub fn run_with(&self, spec: BoxSpec, sink: &mut dyn OutputSink) -> Result<RunOutcome, JailError> {
        let mut b = self.acquire()?;
        if let Some(ws) = &spec.mounts.workspace {
            b.prepare_workspace(ws.size_bytes)?;
        }
        Ok(b.spawn(spec)?.wait(sink).0)
    }

    /// Take a box slot, for callers that need to put files into the
    /// workspace before the run, read them after, or keep a box running.
    pub fn acquire(&self) -> Result<BoxHandle, JailError> {
        let slot = self.inner.pool.acquire(self.inner.cgroups.as_ref())?;
        Ok(BoxHandle {
            jail: self.clone(),
            slot: Some(slot),
            workspace: false,
        })
    }
}

/// A box slot held by the caller. Dropping it scrubs the slot and returns it
/// to the pool.
#[derive(Debug)]
pub struct BoxHandle {
    jail: Jail,
    slot: Option<Slot>,
    workspace: bool,
}

impl BoxHandle {
    fn slot(&mut self) -> &mut Slot {
        // The slot is only taken in `drop`.
        self.slot
            .as_mut()
            .unwrap_or_else(|| unreachable!("slot taken before drop"))
    }

    /// Slot number.
    pub fn id(&self) -> u32 {
        self.slot.as_ref().map_or(0, |s| s.id)
    }

    /// Uid (and gid) the program runs as inside the box.
    pub fn uid(&self) -> u32 {
        self.slot.as_ref().map_or(0, |s| s.uid)
    }

    /// Create an empty, size-capped workspace; files written to
    /// [`BoxHandle::workspace_dir`] appear at `/workspace` in the box.
    pub fn prepare_workspace(&mut self, size: u64) -> Result<(), JailError> {
        if !self.workspace {
            let jail = self.jail.clone();
            jail.inner.pool.prepare_workspace(self.slot(), size)?;
            self.workspace = true;
        }
        Ok(())
    }

    /// Host path of the workspace. Files put here must be owned by
    /// [`BoxHandle::uid`] for the program to write them.
    pub fn workspace_dir(&self) -> &Path {
        self.slot
            .as_ref()
            .map_or(Path::new("/nonexistent"), |s| s.workspace())
    }

    /// The box's cgroup, when cgroups are in use: per-run limits and
    /// accounting for callers that keep a box running (the warm pool).
    pub fn cgroup_mut(&mut self) -> Option<&mut BoxCgroup> {
        self.slot.as_mut().and_then(|s| s.cgroup.as_mut())
    }

    /// Start `spec` in this box and return at once; the box runs until the
    /// program ends, its wall clock passes, or it is killed.
    pub fn spawn(mut self, spec: BoxSpec) -> Result<RunningBox, JailError> {
        let jail = self.jail.clone();
        let inner = &jail.inner;
        if spec.mounts.workspace.is_some() && !self.workspace {
            return Err(JailError::Spec(
                "the spec asks for a workspace: call prepare_workspace first".into(),
            ));
        }
        if spec.limits.wall_time.is_zero() {
            return Err(JailError::Spec("the wall-clock limit must be positive".into()));
        }
        let mut spec = spec;
        let egress = spec.egress.take();
        if egress.is_some() {
            if jail.rootless() {
                return Err(JailError::Spec(
                    "egress needs root: the host joins the box's network namespace to give it its proxy"
                        .into(),
                ));
            }
            // The built-in profiles refuse every internet socket; a box
            // granted egress runs under their refinement.
            if spec.seccomp_profile == "default" {
                spec.seccomp_profile = "egress".into();
            }
        }
        let profile = jail.profile(&spec.seccomp_profile)?;
        let program = launch::resolve_program(&spec)?;
        let limits = spec.limits.clone();
        let on_output_limit = spec.on_output_limit;

        let slot = self.slot();
        let (baseline, cgroup_dir) = match slot.cgroup.as_mut() {
            Some(cg) => {
                cg.apply(&CgroupLimits {
                    memory_bytes: limits.memory_bytes,
                    pids: limits.pids,
                    cpu_cores: limits.cpu_cores,
                })?;
                (Some(cg.start_run()?), cg.clone_into_fd()?)
            }
            None => (None, None),
        };
        let (netns, egress_port) = match (&egress, &slot.netns) {
            (Some(e), _) => (Some(e.netns.try_clone()), Some(e.port)),
            (None, Some(fd)) => (Some(fd.try_clone()), None),
            (None, None) => (None, None),
        };
        let netns = netns.transpose().map_err(|e| JailError::Launch {
            step: "dup netns",
            source: e,
        })?;
        let sandbox = SandboxReport {
            sandboxed: true,
            user_namespace: jail.rootless(),
            cgroup: inner.cgroups.as_ref().map_or("none", |c| c.version()).to_owned(),
            landlock_abi: inner.features.landlock_abi,
            seccomp_profile: profile.name.clone(),
            uid: slot.uid,
        };
        let req = launch::LaunchRequest {
            rootless: jail.rootless(),
            landlock_abi: inner.features.landlock_abi,
            cap_last: inner.features.cap_last,
            cgroups: inner.cgroups.is_some(),
            profile,
            hostname: inner.config.hostname.clone(),
            root_dir: slot.root_dir.clone(),
            workspace: slot.work_dir.clone(),
            uid: slot.uid,
            netns,
            egress_port,
            cgroup_dir,
            spec,
            program,
        };
        let launched = match &slot.launcher {
            Some(launcher) => launcher.launch(req)?,
            None => launch::launch(req)?,
        };
        Ok(RunningBox::new(
            self,
            launched,
            limits,
            on_output_limit,
            baseline,
            sandbox,
        ))
    }

    /// Run `spec` in this box and wait for it. The handle stays usable (for
    /// example to copy the workspace out).
    pub fn run(self, spec: BoxSpec, sink: &mut dyn OutputSink) -> Result<(RunOutcome, BoxHandle), JailError> {
        Ok(self.spawn(spec)?.wait(sink))
    }
}

impl Drop for BoxHandle {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.jail.inner.pool.release(slot);
        }
    }
}

/// Decide the status and assemble the figures of a one-shot run.
pub(crate) fn outcome(
    c: supervise::Collected,
    stats: Option<CgroupStats>,
    limits: &Limits,
    box_id: u32,
    sandbox: SandboxReport,
) -> RunOutcome {
    let supervise::Collected {
        mut observed,
        stdout,
        stderr,
        wall,
        rusage,
    } = c;
    let ru = rusage.as_ref();
    observed.cpu_ms = match stats.and_then(|s| s.cpu_ns) {
        Some(ns) => ns as f64 / 1e6,
        None => ru.map_or(0.0, |r| r.cpu_us as f64 / 1e3),
    };
    observed.oom_kills = stats.map_or(0, |s| s.oom_kills);
    let peak = stats
        .and_then(|s| s.peak_bytes)
        .or_else(|| ru.map(|r| r.max_rss_bytes))
        .unwrap_or(0);
    let (status, message) = supervise::classify(&observed, &Bounds::from(limits));
    let (stdout, stdout_truncated) = stdout.finish();
    let (stderr, stderr_truncated) = stderr.finish();
    RunOutcome {
        status,
        exit_code: observed.ended.and_then(Ended::exit_code),
        signal: match observed.ended {
            Some(e) => e.signal(),
            // Init was killed by the host before the program ended.
            None => observed.killed_for.map(|_| libc::SIGKILL),
        },
        wall_ms: wall.as_secs_f64() * 1000.0,
        cpu_ms: observed.cpu_ms,
        peak_memory_bytes: peak,
        io_read_bytes: ru.map_or(0, |r| r.in_blocks * 512),
        io_write_bytes: ru.map_or(0, |r| r.out_blocks * 512),
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        violation: observed.violation,
        message,
        box_id,
        sandbox,
    }
}
