//! Session boxes: one long-lived box per sandbox session, whose workspace and
//! `/tmp` persist from one execution to the next until the session ends.
//!
//! The box's program is the session agent (`warden_session.py`, untrusted
//! like everything in a box): for each execution it starts a process (a
//! script, or a handler through the language's wrapper) or hands the code to
//! the language's persistent interpreter (stateful cells), and reports
//! `started`/`exited`. The host supervises each execution with the same loop
//! as a fork-server call ([`crate::livecall`]): its wall clock, then the
//! whole box at the wall clock plus a grace period; a cancel kills the
//! execution's processes at once. Memory, processes and CPU are capped for
//! the session as a whole (the box's cgroup), disk by the workspace's and
//! `/tmp`'s sizes. Executions of one session run one at a time.
//!
//! Files move in and out through the jail's `BoxDir` only: beneath the
//! workspace's descriptor, no links, regular files, non-blocking.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType};
use serde::{Deserialize, Serialize};
use warden_jail::{
    Bind, Bounds, BoxDir, JailError, Limits, MIB, MountSpec, OutputLimitAction, RunningBox, Stdin,
    WorkspaceSpec, classify,
};

use crate::door::{Door, DoorError};
use crate::layers::LayerMount;
use crate::livecall::{self, LiveCall, NotSent};
use crate::result::{self, HandlerResult};
use crate::runtimes::Protocol;
use crate::{CallLimits, OutputTap, RunnerInner, RuntimeError, artifacts, memfd_with, read_memfd};

/// A session's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Python 3 (the host's `/usr/bin/python3`).
    Python,
    /// JavaScript (the host's `/usr/bin/node`).
    Javascript,
    /// A bash script.
    Shell,
}

impl Language {
    /// The name the agent speaks.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Javascript => "javascript",
            Language::Shell => "shell",
        }
    }
}

/// How an execution's code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecMode {
    /// A program: its output and exit code are the result.
    Script,
    /// `handler(event)`: its return value is the result, as for plugins.
    Handler,
    /// A cell of the language's persistent interpreter: variables, imports
    /// and open files persist; the last expression's value is the result.
    Repl,
}

impl ExecMode {
    fn as_str(self) -> &'static str {
        match self {
            ExecMode::Script => "script",
            ExecMode::Handler => "handler",
            ExecMode::Repl => "repl",
        }
    }
}

/// What a session box is started with.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// Memory of the whole session.
    pub memory_bytes: u64,
    /// Processes and threads of the whole session.
    pub pids: u32,
    /// CPU bandwidth, in cores.
    pub cpu_cores: f64,
    /// Size of the workspace.
    pub disk_bytes: u64,
    /// Size of `/tmp`.
    pub tmp_bytes: u64,
    /// Longest the box lives (the host's sweeper usually ends it first).
    pub max_lifetime: Duration,
    /// Environment of every execution (validated by the platform).
    pub env: Vec<(String, String)>,
    /// The template's dependency layer, if any.
    pub layer: Option<LayerMount>,
    /// Hosts the session may reach through the egress proxy (`host[:port]`);
    /// empty: no network at all.
    pub egress: Vec<String>,
    /// Seed files, written into the workspace before the agent starts.
    pub files: Vec<SeedFile>,
}

/// A file put into a new session's workspace.
#[derive(Debug, Clone)]
pub struct SeedFile {
    /// Path relative to the workspace.
    pub path: String,
    /// Content.
    pub bytes: Vec<u8>,
}

impl Default for SessionSpec {
    fn default() -> Self {
        SessionSpec {
            memory_bytes: 512 * MIB,
            pids: 128,
            cpu_cores: 1.0,
            disk_bytes: 1024 * MIB,
            tmp_bytes: 256 * MIB,
            max_lifetime: Duration::from_secs(24 * 3600),
            env: Vec::new(),
            layer: None,
            egress: Vec::new(),
            files: Vec::new(),
        }
    }
}

/// One execution in a session.
#[derive(Clone)]
pub struct SessionExec {
    /// Its language.
    pub language: Language,
    /// How it runs.
    pub mode: ExecMode,
    /// The code.
    pub code: Vec<u8>,
    /// The event (handler mode).
    pub event: Vec<u8>,
    /// Limits (within the session's).
    pub limits: CallLimits,
    /// Environment added for this execution.
    pub env: Vec<(String, String)>,
    /// Where output goes as it comes.
    pub tap: Option<OutputTap>,
}

/// What an execution did, beyond the call's result.
#[derive(Debug, Clone)]
pub struct SessionOutcome {
    /// The result, in the same shape as a plugin call's.
    pub result: HandlerResult,
    /// The persistent interpreter had died (a crash or timeout of an earlier
    /// cell) and was started anew for this one: its state is gone.
    pub interpreter_restarted: bool,
    /// The persistent interpreter ended with this cell (it crashed or timed
    /// out); the next cell starts a new one.
    pub interpreter_died: bool,
}

struct Inner {
    running: RunningBox,
    ctl: OwnedFd,
    agent_pid: i32,
    /// The agent's own stderr (non-blocking): its last words if it dies.
    agent_err: OwnedFd,
    proxy: Option<Door>,
}

/// A session's box. Executions run one at a time; a cancel may come from
/// another thread. Dropping it kills the box and frees its slot.
pub struct SessionBox {
    inner: Mutex<Option<Inner>>,
    /// Write a byte here to cancel the running execution.
    cancel_w: OwnedFd,
    cancel_r: OwnedFd,
    workspace: BoxDir,
    grace: Duration,
    started: Instant,
    /// Started ahead, then claimed by its session.
    ahead: bool,
}

impl std::fmt::Debug for SessionBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBox").finish_non_exhaustive()
    }
}

fn channel(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Channel(std::io::Error::other(e.to_string()))
}

/// The session agent's start: imported as a module, so that it (and the
/// wrapper it takes its JSON from) load from the bytecode the runner
/// compiled (`pycache.rs`) instead of being compiled in every box. `-I`
/// keeps the workspace (the working folder) off the agent's import path.
const AGENT: &str =
    "import sys; sys.path.insert(0, '/warden/python'); import warden_session; warden_session.main()";

/// What a prestarted session box must match to serve a session: what is
/// fixed when a box starts (its layer, the sizes of its workspace and
/// `/tmp`, its lifetime). Everything else (memory, processes, CPU,
/// environment, seed files) is set when a session claims it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    layer: Option<std::path::PathBuf>,
    disk_bytes: u64,
    tmp_bytes: u64,
    max_lifetime: Duration,
}

impl PoolKey {
    /// The key of `spec`, or `None` when its box cannot be started ahead (a
    /// session granted egress has its own proxy from the start).
    pub(crate) fn of(spec: &SessionSpec) -> Option<PoolKey> {
        spec.egress.is_empty().then(|| PoolKey {
            layer: spec.layer.as_ref().map(|l| l.dir.clone()),
            disk_bytes: spec.disk_bytes,
            tmp_bytes: spec.tmp_bytes,
            max_lifetime: spec.max_lifetime,
        })
    }
}

/// Session boxes started ahead, unclaimed: fresh boxes whose agent is
/// ready and that have run nothing, so any tenant may take one.
#[derive(Default)]
pub(crate) struct Prestarted {
    boxes: Mutex<Pool>,
    /// Signalled when a box is put, and when a refill ends.
    put: std::sync::Condvar,
}

/// What [`Prestarted`] guards with one lock.
#[derive(Default)]
struct Pool {
    ready: HashMap<PoolKey, Vec<(SessionBox, SessionSpec)>>,
    /// Kinds with boxes being started ahead.
    filling: HashMap<PoolKey, Filling>,
}

/// Boxes of one kind being started ahead, and the creates waiting for them.
#[derive(Default)]
struct Filling {
    /// Boxes starting (each on its own thread).
    starting: usize,
    /// Creates waiting: at most one per starting box, so that a burst of
    /// creates does not queue behind fewer starters than creates.
    waiters: usize,
}

impl Prestarted {
    /// Boxes waiting to be claimed.
    pub(crate) fn idle(&self) -> usize {
        self.pool().ready.values().map(Vec::len).sum()
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.boxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drop boxes unclaimed for longer than `ttl`, and dead ones.
    pub(crate) fn evict(&self, ttl: Duration) {
        let mut dropped = Vec::new();
        {
            let mut pool = self.pool();
            let map = &mut pool.ready;
            for list in map.values_mut() {
                let (keep, gone): (Vec<_>, Vec<_>) =
                    list.drain(..).partition(|(b, _)| b.age() <= ttl && b.is_alive());
                *list = keep;
                dropped.extend(gone);
            }
            map.retain(|_, l| !l.is_empty());
        }
        drop(dropped); // kills them, outside the lock
    }

    /// Drop every unclaimed box (slots and layers are freed).
    pub(crate) fn clear(&self) {
        let all: Vec<_> = self.pool().ready.drain().collect();
        drop(all);
    }

    /// A ready box of kind `key`; when there is none but a box is starting
    /// ahead that no other create waits for, wait for it (up to `wait`): a
    /// create back to back with the last one then takes the box already
    /// half started instead of starting another beside it.
    fn take(&self, key: &PoolKey, wait: Duration) -> Option<SessionBox> {
        let deadline = Instant::now() + wait;
        let mut pool = self.pool();
        let mut waiting = false;
        let got = loop {
            if let Some(list) = pool.ready.get_mut(key) {
                let mut dead = Vec::new();
                let mut found = None;
                while let Some((b, spec)) = list.pop() {
                    if b.is_alive() {
                        found = Some(b);
                        break;
                    }
                    dead.push((b, spec));
                }
                if let Some(b) = found {
                    break Some(b);
                }
            }
            let now = Instant::now();
            let Some(filling) = pool.filling.get_mut(key) else {
                break None;
            };
            if now >= deadline || (!waiting && filling.waiters >= filling.starting) {
                break None;
            }
            if !waiting {
                filling.waiters += 1;
                waiting = true;
            }
            pool = self
                .put
                .wait_timeout(pool, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        if waiting && let Some(filling) = pool.filling.get_mut(key) {
            filling.waiters = filling.waiters.saturating_sub(1);
        }
        got
    }

    /// A box started ahead for `key` is ready: claimable, and no longer
    /// counted as starting (one step, so a refill never counts it twice).
    fn put(&self, key: PoolKey, b: SessionBox, spec: SessionSpec) {
        let mut pool = self.pool();
        Self::one_started(&mut pool, &key);
        pool.ready.entry(key).or_default().push((b, spec));
        drop(pool);
        self.put.notify_all();
    }

    fn one_started(pool: &mut Pool, key: &PoolKey) {
        if let Some(filling) = pool.filling.get_mut(key) {
            filling.starting = filling.starting.saturating_sub(1);
            if filling.starting == 0 {
                pool.filling.remove(key);
            }
        }
    }

    /// How many more boxes of `key` to start for `want` unclaimed, counting
    /// those ready and those starting; they are counted as starting now.
    fn start_filling(&self, key: &PoolKey, want: usize) -> usize {
        let mut pool = self.pool();
        let ready = pool.ready.get(key).map_or(0, Vec::len);
        let filling = pool.filling.entry(key.clone()).or_default();
        let n = want.saturating_sub(ready + filling.starting);
        filling.starting += n;
        if filling.starting == 0 {
            pool.filling.remove(key);
        }
        n
    }

    /// A box of `key` being started ahead failed; with none starting any
    /// more, nobody waits for one.
    fn end_one(&self, key: &PoolKey) {
        Self::one_started(&mut self.pool(), key);
        self.put.notify_all();
    }
}

/// A session's box: a prestarted one when one matches `spec` (its limits,
/// environment and seed files set now), else a fresh start. Either way the
/// pool is topped up in the background to `prestart` boxes for this key.
pub(crate) fn open(
    rt: &Arc<RunnerInner>,
    spec: SessionSpec,
    prestart: usize,
    wait: Duration,
) -> Result<SessionBox, RuntimeError> {
    // Without cgroups a box's memory and process limits are rlimits fixed
    // at its start: a box started ahead could not take a session's own.
    let key = PoolKey::of(&spec).filter(|_| rt.jail.cgroups().is_some());
    let claimed = key.as_ref().and_then(|k| rt.sessions.take(k, wait));
    let b = match claimed {
        // A box that cannot be made this session's is dropped (killed);
        // the session starts cold instead.
        Some(b) => claim(b, &spec).or_else(|e| {
            tracing::warn!(error = %e, "claiming a prestarted session box failed; starting one");
            start(rt, spec.clone())
        })?,
        None => start(rt, spec.clone())?,
    };
    if let Some(key) = key
        && prestart > 0
    {
        refill(rt, key, spec, prestart);
    }
    Ok(b)
}

/// Start boxes for `key` in the background until it has `want` unclaimed,
/// each on its own thread, so that `want` boxes come back as fast as one.
fn refill(rt: &Arc<RunnerInner>, key: PoolKey, spec: SessionSpec, want: usize) {
    let n = rt.sessions.start_filling(&key, want);
    let base = SessionSpec {
        env: Vec::new(),
        files: Vec::new(),
        ..spec
    };
    for _ in 0..n {
        let weak = Arc::downgrade(rt);
        let (mine, base) = (key.clone(), base.clone());
        let spawned = std::thread::Builder::new()
            .name("warden-session-prestart".into())
            .spawn(move || {
                let Some(rt) = weak.upgrade() else { return };
                match start(&rt, base.clone()) {
                    Ok(b) => rt.sessions.put(mine, b, base),
                    Err(e) => {
                        tracing::warn!(error = %e, "starting a session box ahead failed; sessions start cold");
                        rt.sessions.end_one(&mine);
                    }
                }
            });
        if spawned.is_err() {
            rt.sessions.end_one(&key);
        }
    }
}

/// Make a prestarted box the session `spec` describes: its limits on the
/// box's cgroup, its environment in the agent (so persistent interpreters
/// inherit it too), its seed files in the workspace.
fn claim(mut b: SessionBox, spec: &SessionSpec) -> Result<SessionBox, RuntimeError> {
    {
        let mut guard = b.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = guard
            .as_mut()
            .ok_or_else(|| channel("the prestarted session box is gone"))?;
        let cg = inner
            .running
            .cgroup_mut()
            .ok_or_else(|| channel("a box started ahead has no cgroup to take the session's limits"))?;
        cg.apply(&warden_jail::CgroupLimits {
            memory_bytes: Some(spec.memory_bytes),
            pids: Some(spec.pids),
            cpu_cores: Some(spec.cpu_cores),
        })
        .map_err(|e| channel(format!("setting the session's limits: {e}")))?;
        if !spec.env.is_empty() {
            let msg = serde_json::json!({
                "op": "env",
                "env": spec.env.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            })
            .to_string();
            rustix::net::send(&inner.ctl, msg.as_bytes(), rustix::net::SendFlags::DONTWAIT)
                .map_err(|e| channel(format!("sending the session's environment: {e}")))?;
            let deadline = Instant::now() + Duration::from_secs(5);
            let reply = recv_message(&inner.ctl, &mut inner.running, deadline)?;
            let ok = serde_json::from_slice::<Ready>(&reply).is_ok_and(|r| r.msg == "env_set");
            if !ok {
                return Err(channel("the session agent did not take the environment"));
            }
        }
    }
    write_seed_files(&b.workspace, spec)?;
    b.started = Instant::now();
    b.ahead = true;
    Ok(b)
}

fn write_seed_files(workspace: &BoxDir, spec: &SessionSpec) -> Result<(), RuntimeError> {
    for f in &spec.files {
        let path = Path::new(&f.path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let mut dir = std::path::PathBuf::new();
            for c in parent.components() {
                dir.push(c);
                workspace.ensure_dir(&dir, 0o755).map_err(JailError::from)?;
            }
        }
        workspace
            .write_file(path, &mut f.bytes.as_slice(), spec.disk_bytes)
            .map_err(JailError::from)?;
    }
    Ok(())
}

pub(crate) fn start(rt: &RunnerInner, spec: SessionSpec) -> Result<SessionBox, RuntimeError> {
    let mut handle = rt.jail.acquire()?;
    handle.prepare_workspace(spec.disk_bytes)?;
    let workspace = handle.workspace()?;
    write_seed_files(&workspace, &spec)?;
    let (host, boxed) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| RuntimeError::Channel(e.into()))?;
    let mut box_spec = warden_jail::BoxSpec::command(["/usr/bin/python3", "-I", "-S", "-B", "-c", AGENT]);
    let mut binds = warden_jail::system_binds();
    binds.push(Bind {
        host: rt.wrappers.clone(),
        target: "/warden".into(),
        optional: false,
    });
    let mut env = vec![
        ("HOME".to_owned(), "/workspace".to_owned()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
    ];
    if let Some(layer) = &spec.layer {
        let (bind, e) = layer.bind_and_env();
        binds.push(bind);
        env.push(e);
    }
    let mut proxy = None;
    if !spec.egress.is_empty() {
        binds.push(Bind::same("/etc/ssl/certs"));
        let door = Door::open(&spec.egress, &[]).map_err(|e| match e {
            DoorError::Hosts(e) => {
                RuntimeError::Channel(std::io::Error::other(format!("the session's allow-list: {e}")))
            }
            e => channel(e),
        })?;
        env.extend(door.env());
        env.push(("NODE_EXTRA_CA_CERTS".into(), crate::layers::HOST_CA_BUNDLE.into()));
        box_spec.egress = Some(door.egress().map_err(channel)?);
        proxy = Some(door);
    }
    env.extend(spec.env.iter().cloned());
    for (k, v) in env {
        box_spec.env.retain(|(key, _)| key.to_str() != Some(k.as_str()));
        box_spec.env.push((k.into(), v.into()));
    }
    box_spec.mounts = MountSpec {
        ro_binds: binds,
        workspace: Some(WorkspaceSpec {
            size_bytes: spec.disk_bytes,
        }),
    };
    box_spec.cwd = "/workspace".into();
    box_spec.limits = Limits {
        wall_time: spec.max_lifetime + Duration::from_secs(60),
        cpu_time: None,
        memory_bytes: Some(spec.memory_bytes),
        pids: Some(spec.pids),
        cpu_cores: Some(spec.cpu_cores),
        // The workspace's and /tmp's sizes cap the disk; one file may fill
        // either (the size limit is there to stop runaway files elsewhere).
        file_size_bytes: spec.disk_bytes.max(spec.tmp_bytes).max(MIB) + MIB,
        open_files: 1024,
        stack_bytes: 8 * MIB,
        output_bytes: 64 * 1024,
        tmp_bytes: spec.tmp_bytes,
    };
    box_spec.on_output_limit = OutputLimitAction::Truncate;
    box_spec.stdin = Stdin::Null;
    box_spec.extra_fds.push((boxed, 5));
    let mut running = handle.spawn(box_spec)?;
    drop(running.take_stdout());
    let agent_err = running
        .take_stderr()
        .ok_or_else(|| channel("the session box has no stderr"))?;
    rustix::fs::fcntl_setfl(&agent_err, rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| RuntimeError::Channel(e.into()))?;
    let deadline = Instant::now() + rt.pool.config().start_timeout;
    let agent_pid = wait_ready(&host, &mut running, deadline)?;
    running.protect_from_oom(running.init_pid());
    running.protect_from_oom(agent_pid);
    let (cancel_r, cancel_w) = livecall::cancel_pipe().map_err(RuntimeError::Channel)?;
    Ok(SessionBox {
        inner: Mutex::new(Some(Inner {
            running,
            ctl: host,
            agent_pid,
            agent_err,
            proxy,
        })),
        cancel_w,
        cancel_r,
        workspace,
        grace: rt.pool.config().grace,
        started: Instant::now(),
        ahead: false,
    })
}

#[derive(Deserialize)]
struct Ready {
    msg: String,
}

fn wait_ready(ctl: &OwnedFd, running: &mut RunningBox, deadline: Instant) -> Result<i32, RuntimeError> {
    let msg = recv_message(ctl, running, deadline)?;
    let ok = serde_json::from_slice::<Ready>(&msg).is_ok_and(|r| r.msg == "ready");
    if !ok {
        return Err(channel("the session agent's first message was not `ready`"));
    }
    running
        .program_pid()
        .ok_or_else(|| channel("the session agent has no pid"))
}

/// One message from the agent, giving up when the box dies or at
/// `deadline` (the box is then killed).
fn recv_message(ctl: &OwnedFd, running: &mut RunningBox, deadline: Instant) -> Result<Vec<u8>, RuntimeError> {
    let mut buf = [0u8; 4096];
    loop {
        match rustix::net::recv(ctl, &mut buf, RecvFlags::DONTWAIT) {
            Ok((n, _)) if n > 0 => return Ok(buf[..n].to_vec()),
            Ok(_) => return Err(channel("the session agent closed its channel")),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(e) => return Err(RuntimeError::Channel(e.into())),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            running.kill();
            return Err(channel("the session agent did not answer in time"));
        }
        let pidfd = running.pidfd();
        let mut fds = [
            PollFd::new(ctl, PollFlags::IN),
            PollFd::new(&pidfd, PollFlags::IN),
        ];
        let ts = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        let _ = poll(&mut fds, Some(&ts));
        if !fds[1].revents().is_empty() && fds[0].revents().is_empty() {
            let events = running.read_events();
            return Err(channel(format!("the session box died: {events:?}")));
        }
    }
}

impl SessionBox {
    /// The workspace, for file uploads, downloads and listings (every path
    /// resolved beneath it; nothing the box planted is followed).
    pub fn workspace(&self) -> &BoxDir {
        &self.workspace
    }

    /// Whether its box was started ahead and claimed (else started for it).
    pub fn started_ahead(&self) -> bool {
        self.ahead
    }

    /// How long the box has lived.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the box is still alive (its init has not exited).
    pub fn is_alive(&self) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(inner) = guard.as_mut() else { return false };

        let pidfd = inner.running.pidfd();
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        !matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }

    /// Memory the session's box holds now (its cgroup's usage), when known.
    pub fn memory_bytes(&self) -> Option<u64> {
        let mut guard = self.inner.lock().ok()?;
        guard.as_mut()?.running.cgroup_mut()?.memory_usage()
    }

    /// Cancel the running execution (if any): its processes are killed and
    /// it ends `cancelled`. True when a cancel was signalled.
    pub fn cancel(&self) -> bool {
        rustix::io::write(&self.cancel_w, &[1]).is_ok()
    }

    /// Run one execution, waiting for any running one to end first.
    pub fn exec(&self, x: &SessionExec) -> Result<SessionOutcome, RuntimeError> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = guard.as_mut().ok_or_else(|| channel("the session has ended"))?;
        // A cancel sent while nothing ran is stale.
        let mut drain = [0u8; 64];
        while rustix::io::read(&self.cancel_r, &mut drain).is_ok_and(|n| n > 0) {}
        let limits = &x.limits;
        let code = memfd_with(c"warden-code", &x.code)?;
        let event = memfd_with(c"warden-event", &x.event)?;
        let result = memfd_with(c"warden-result", b"")?;
        let (out_r, out_w) = crate::pipe()?;
        let (err_r, err_w) = crate::pipe()?;
        let cpu_seconds = limits.cpu_time.as_secs() + u64::from(limits.cpu_time.subsec_nanos() > 0);
        let request = serde_json::json!({
            "op": "exec",
            "mode": x.mode.as_str(),
            "language": x.language.as_str(),
            "cpu_seconds": cpu_seconds.max(1),
            "env": x.env.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        })
        .to_string();
        let init_pid = inner.running.init_pid();
        let sent = livecall::run(
            LiveCall {
                running: &mut inner.running,
                ctl: &inner.ctl,
                keep: vec![init_pid, inner.agent_pid],
                limits,
                cgroup: None,
                grace: self.grace,
                tap: x.tap.as_ref(),
                cancel: Some(self.cancel_r.as_fd()),
            },
            request.as_bytes(),
            vec![
                code,
                event,
                out_w,
                err_w,
                result.try_clone().map_err(RuntimeError::Channel)?,
            ],
            out_r,
            err_r,
        );
        let end = match sent {
            Ok(end) => end,
            Err(NotSent(why)) => {
                *guard = None;
                return Err(channel(format!("the session's box is gone: {why}")));
            }
        };
        if end.box_died && end.observed.ended.is_none() {
            let mut words = [0u8; 4096];
            let n = rustix::io::read(&inner.agent_err, &mut words).unwrap_or(0);
            tracing::warn!(
                agent = %String::from_utf8_lossy(&words[..n]),
                "a session's agent died during an execution"
            );
        }
        let (restarted, died) = (end.restarted, end.interpreter_died);
        let dead = end.box_died || end.spoiled;
        let bounds = Bounds {
            wall_time: limits.timeout,
            cpu_time: (x.mode != ExecMode::Repl).then_some(limits.cpu_time),
            memory_bytes: None,
            output_bytes: limits.output_bytes,
        };
        let (status, message) = classify(&end.observed, &bounds);
        let doc = read_memfd(&result, limits.result_bytes);
        let protocol = match x.mode {
            ExecMode::Script => Protocol::Raw,
            ExecMode::Handler | ExecMode::Repl => Protocol::Wrapper,
        };
        let artifacts = if dead {
            Vec::new()
        } else {
            artifacts::collect(inner.running.handle(), limits.workspace_bytes)
        };
        let outcome = end.outcome(status, message, 0, &inner.running);
        let result = result::assemble(protocol, outcome, doc, limits.result_bytes, artifacts, true);
        if dead {
            // The box is gone or cannot be trusted to serve again.
            if let Some(inner) = guard.take() {
                inner.running.kill();
            }
        }
        Ok(SessionOutcome {
            result,
            interpreter_restarted: restarted,
            interpreter_died: died,
        })
    }

    /// End the session: kill the box, stop its proxy, free its slot (the
    /// workspace goes with it). Returns the egress proxy's report, if any.
    pub fn terminate(&self) -> Option<warden_egress::Report> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        inner.running.kill();
        let report = inner.proxy.map(Door::stop);
        drop(inner.running);
        report
    }
}

impl Drop for SessionBox {
    fn drop(&mut self) {
        self.terminate();
    }
}

#[cfg(test)]
mod prestart_tests {
    use super::*;

    /// The bookkeeping of boxes started ahead: as many start at once as are
    /// missing, a refill never counts a box twice, and as many creates may
    /// wait as boxes are starting (the rest start their own at once).
    #[test]
    fn boxes_missing_start_together_and_each_may_have_one_waiting_create() {
        let p = Prestarted::default();
        let key = PoolKey::of(&SessionSpec::default()).unwrap();
        assert_eq!(p.start_filling(&key, 2), 2, "both missing start at once");
        assert_eq!(p.start_filling(&key, 2), 0, "already starting");
        assert_eq!(p.start_filling(&key, 3), 1, "one more wanted");
        // Three starting: three creates may wait, a fourth does not.
        let waited: Vec<_> = std::thread::scope(|s| {
            let waiters: Vec<_> = (0..3)
                .map(|_| s.spawn(|| p.take(&key, Duration::from_secs(30))))
                .collect();
            // Let them register, then a fourth finds every box spoken for.
            while p.pool().filling.get(&key).map_or(0, |f| f.waiters) < 3 {
                std::thread::yield_now();
            }
            let t = Instant::now();
            assert!(p.take(&key, Duration::from_secs(30)).is_none());
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the fourth waited for a box"
            );
            // The starts fail: the waiters give up and start their own.
            for _ in 0..3 {
                p.end_one(&key);
            }
            waiters.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert!(waited.iter().all(Option::is_none));
        assert!(p.pool().filling.is_empty(), "nothing left counted as starting");
        assert_eq!(p.start_filling(&key, 1), 1, "a new refill starts afresh");
    }
}
