//! The warm pool: calls answered in milliseconds instead of an interpreter
//! start each.
//!
//! Boxes are kept per code key (plugin, version, tenant: never shared across
//! them), in one of two shapes:
//!
//! * **Fork-server** (Python): a box whose program is the wrapper in `serve`
//!   mode. It imported the plugin once; each call is one `fork` of it, so
//!   every call starts from the same clean state. A box serves one call at a
//!   time, which lets the call use the box's cgroup as its own: before the
//!   call the host sets the memory limit to the server's current usage plus
//!   the call's allowance (and likewise the process limit), resets the
//!   peaks, and afterwards reads the call's own figures and kills whatever
//!   the call left behind. No task is ever moved between cgroups: on cgroup
//!   v1 that waits for an RCU grace period (≈10 ms). The server and the box's
//!   init are shielded from the OOM killer, so a memory bomb kills the call,
//!   not the server.
//! * **Prestart** (Node.js, which cannot fork a running VM): boxes started
//!   ahead that imported the module and wait for one event on stdin; each
//!   serves one call and is then replaced.
//!
//! When no warm box is free the call goes cold, and the pool grows in the
//! background up to its caps. Dead fork-servers are replaced and counted.

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{
    AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};
use serde::Serialize;
use serde_json::Value;
use warden_jail::{BoxEvent, CgroupLimits, RunningBox, Status, Stdin, Stream};

use crate::result::{self, CallOutcome, HandlerError, HandlerResult};
use crate::runtimes::{Protocol, RuntimeDef, WarmMode};
use crate::{CallLimits, Code, Invocation, RunnerInner, RuntimeError, artifacts, memfd_with, read_memfd};

/// Settings of the warm pool.
#[derive(Debug, Clone)]
pub struct WarmConfig {
    /// Serve calls warm at all.
    pub enabled: bool,
    /// Most warm boxes per code key.
    pub max_per_code: usize,
    /// Warm boxes kept ready per code key once it has been called.
    pub prewarm_per_code: usize,
    /// Idle warm boxes are stopped after this long.
    pub idle_ttl: Duration,
    /// Most warm boxes in all.
    pub max_total: usize,
    /// Memory allowed to the fork-server itself, on top of a call's.
    pub server_memory_bytes: u64,
    /// Longest a warm box may take to start and import the plugin.
    pub start_timeout: Duration,
    /// When every warm box of a code is busy (or starting), how long a call
    /// waits for one before it goes cold. A warm call takes milliseconds and
    /// a cold one tens of milliseconds of CPU, so under a burst a short wait
    /// serves more calls than starting interpreters would.
    pub max_wait: Duration,
}

impl Default for WarmConfig {
    fn default() -> Self {
        WarmConfig {
            enabled: true,
            max_per_code: 4,
            prewarm_per_code: 1,
            idle_ttl: Duration::from_secs(300),
            max_total: 32,
            server_memory_bytes: 64 << 20,
            start_timeout: Duration::from_secs(30),
            max_wait: Duration::from_millis(100),
        }
    }
}

/// One idle warm box, for diagnostics and benchmarks.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WarmBoxInfo {
    /// Host pid of the box's init.
    pub init_pid: i32,
    /// Host pid of the program (the fork-server, or the prestarted runtime).
    pub program_pid: Option<i32>,
    /// Time since the box last served a call.
    pub idle_ms: f64,
}

/// Pool figures, for metrics.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PoolStats {
    /// Warm boxes ready for a call.
    pub idle: usize,
    /// Warm boxes serving a call.
    pub busy: usize,
    /// Warm boxes starting.
    pub starting: usize,
    /// Warm boxes started since the runner began.
    pub started_total: u64,
    /// Fork-servers found dead and replaced.
    pub restarts_total: u64,
    /// Calls served warm.
    pub warm_calls_total: u64,
    /// Calls that found no warm box and went cold.
    pub cold_fallbacks_total: u64,
}

#[allow(clippy::large_enum_variant)] // returned once per call, never stored
pub(crate) enum Attempt {
    Done(Result<HandlerResult, RuntimeError>),
    NoBox,
}

enum Kind {
    ForkServer { ctl: OwnedFd, server_pid: i32 },
    Prestart { result: OwnedFd },
}

struct WarmBox {
    running: RunningBox,
    kind: Kind,
    /// The workspace size the box was started with (a call may not ask more).
    workspace_bytes: u64,
    last_used: Instant,
}

struct CodePool {
    def: Arc<RuntimeDef>,
    code: Code,
    limits: CallLimits,
    idle: Vec<WarmBox>,
    busy: usize,
    starting: usize,
    /// Boxes wanted (grows on misses up to the cap, falls back when idle).
    want: usize,
    last_call: Instant,
    /// The plugin failed to load: do not keep starting boxes for it.
    broken_until: Option<Instant>,
}

#[derive(Default)]
struct Counters {
    started: AtomicU64,
    restarts: AtomicU64,
    warm_calls: AtomicU64,
    cold: AtomicU64,
}

pub(crate) struct WarmPool {
    config: WarmConfig,
    codes: Mutex<HashMap<String, CodePool>>,
    /// Signalled whenever a box becomes idle.
    freed: std::sync::Condvar,
    counters: Counters,
}

impl WarmPool {
    pub(crate) fn new(config: WarmConfig) -> WarmPool {
        WarmPool {
            config,
            codes: Mutex::new(HashMap::new()),
            freed: std::sync::Condvar::new(),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CodePool>> {
        self.codes.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let codes = self.lock();
        let mut s = PoolStats {
            started_total: self.counters.started.load(Ordering::Relaxed),
            restarts_total: self.counters.restarts.load(Ordering::Relaxed),
            warm_calls_total: self.counters.warm_calls.load(Ordering::Relaxed),
            cold_fallbacks_total: self.counters.cold.load(Ordering::Relaxed),
            ..PoolStats::default()
        };
        for p in codes.values() {
            s.idle += p.idle.len();
            s.busy += p.busy;
            s.starting += p.starting;
        }
        s
    }

    pub(crate) fn idle_boxes(&self, key: &str) -> Vec<WarmBoxInfo> {
        self.lock().get(key).map_or_else(Vec::new, |cp| {
            cp.idle
                .iter()
                .map(|b| WarmBoxInfo {
                    init_pid: b.running.init_pid(),
                    program_pid: b.running.program_pid(),
                    idle_ms: b.last_used.elapsed().as_secs_f64() * 1000.0,
                })
                .collect()
        })
    }

    pub(crate) fn idle_for(&self, key: &str) -> usize {
        self.lock().get(key).map_or(0, |cp| cp.idle.len())
    }

    pub(crate) fn retire(&self, key: &str) {
        let removed = self.lock().remove(key);
        drop(removed); // dropping the boxes kills them
    }

    fn total(codes: &HashMap<String, CodePool>) -> usize {
        codes.values().map(|p| p.idle.len() + p.busy + p.starting).sum()
    }
}

/// Serve one call warm, or say there is no box for it.
pub(crate) fn invoke(rt: &Arc<RunnerInner>, def: &Arc<RuntimeDef>, code: &Code, inv: &Invocation) -> Attempt {
    let pool = &rt.pool;
    let taken = {
        let mut codes = pool.lock();
        let deadline = Instant::now() + pool.config.max_wait;
        let mut grown = false;
        let mut topped = false;
        loop {
            let cp = codes.entry(code.key.clone()).or_insert_with(|| CodePool {
                def: def.clone(),
                code: code.clone(),
                limits: inv.limits.clone(),
                idle: Vec::new(),
                busy: 0,
                starting: 0,
                want: pool.config.prewarm_per_code.max(1),
                last_call: Instant::now(),
                broken_until: None,
            });
            cp.last_call = Instant::now();
            // A box fits when its workspace is large enough for this call.
            let pos = cp
                .idle
                .iter()
                .rposition(|b| b.workspace_bytes >= inv.limits.workspace_bytes);
            if let Some(i) = pos {
                cp.busy += 1;
                break Some(cp.idle.swap_remove(i));
            }
            if !grown {
                cp.want = (cp.busy + cp.starting + 1).clamp(cp.want, pool.config.max_per_code);
                grown = true;
            }
            // Wait only for a box that is coming: one serving a call (it
            // returns in milliseconds) or one starting.
            let coming = cp.busy + cp.starting > 0 && cp.broken_until.is_none_or(|t| Instant::now() >= t);
            let now = Instant::now();
            if !coming || now >= deadline {
                break None;
            }
            if !topped && cp.starting == 0 && cp.idle.len() + cp.busy < pool.config.max_per_code {
                // Room to grow: start one in the background while waiting.
                topped = true;
                drop(codes);
                top_up(rt, &code.key);
                codes = pool.lock();
                continue;
            }
            codes = match pool.freed.wait_timeout(codes, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    };
    let Some(mut wbox) = taken else {
        pool.counters.cold.fetch_add(1, Ordering::Relaxed);
        // Grow now rather than at the next maintenance tick.
        top_up(rt, &code.key);
        return Attempt::NoBox;
    };
    let outcome = match &wbox.kind {
        Kind::ForkServer { .. } => fork_server_call(&mut wbox, inv),
        Kind::Prestart { .. } => {
            let result = prestart_call(wbox, inv);
            finish(rt, &code.key, None);
            pool.counters.warm_calls.fetch_add(1, Ordering::Relaxed);
            top_up(rt, &code.key);
            return Attempt::Done(result);
        }
    };
    match outcome {
        CallEnd::Served { result, healthy } => {
            pool.counters.warm_calls.fetch_add(1, Ordering::Relaxed);
            finish(rt, &code.key, healthy.then_some(wbox));
            if !healthy {
                top_up(rt, &code.key);
            }
            Attempt::Done(Ok(result))
        }
        CallEnd::BoxLost(why) => {
            // The fork-server died under a call it did not cause: replace it
            // and run this call once more, cold.
            tracing::warn!(code = %code.key, reason = %why, "warm box lost; retrying the call cold");
            pool.counters.restarts.fetch_add(1, Ordering::Relaxed);
            finish(rt, &code.key, None);
            top_up(rt, &code.key);
            Attempt::NoBox
        }
    }
}

/// Return a box to its pool (or account for one that is gone).
fn finish(rt: &RunnerInner, key: &str, wbox: Option<WarmBox>) {
    let mut codes = rt.pool.lock();
    if let Some(cp) = codes.get_mut(key) {
        cp.busy = cp.busy.saturating_sub(1);
        if let Some(mut b) = wbox {
            b.last_used = Instant::now();
            cp.idle.push(b);
        }
    }
    drop(codes);
    rt.pool.freed.notify_all();
}

/// Start boxes for `key` until it has what it wants (in the background).
fn top_up(rt: &Arc<RunnerInner>, key: &str) {
    let mut to_start = Vec::new();
    {
        let mut codes = rt.pool.lock();
        let total = WarmPool::total(&codes);
        let Some(cp) = codes.get_mut(key) else { return };
        if cp.broken_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let have = cp.idle.len() + cp.busy + cp.starting;
        let room = rt.pool.config.max_total.saturating_sub(total);
        let n = cp
            .want
            .min(rt.pool.config.max_per_code)
            .saturating_sub(have)
            .min(room);
        cp.starting += n;
        for _ in 0..n {
            to_start.push((cp.def.clone(), cp.code.clone(), cp.limits.clone()));
        }
    }
    for (def, code, limits) in to_start {
        let weak = Arc::downgrade(rt);
        let owned_key = key.to_owned();
        let spawned = std::thread::Builder::new().name("warden-warm-start".into()).spawn(move || {
            let Some(rt) = weak.upgrade() else { return };
            let key = owned_key;
            let started = start_box(&rt, &def, &code, &limits);
            let mut codes = rt.pool.lock();
            let Some(cp) = codes.get_mut(&key) else { return };
            cp.starting = cp.starting.saturating_sub(1);
            match started {
                Ok(b) => {
                    rt.pool.counters.started.fetch_add(1, Ordering::Relaxed);
                    cp.idle.push(b);
                    drop(codes);
                    rt.pool.freed.notify_all();
                }
                Err(e) => {
                    tracing::warn!(code = %key, error = %e, "starting a warm box failed; calls go cold for a while");
                    cp.broken_until = Some(Instant::now() + Duration::from_secs(30));
                    drop(codes);
                    // Waiting calls go cold now rather than at their deadline.
                    rt.pool.freed.notify_all();
                }
            }
        });
        if spawned.is_err() {
            let mut codes = rt.pool.lock();
            if let Some(cp) = codes.get_mut(key) {
                cp.starting = cp.starting.saturating_sub(1);
            }
        }
    }
}

pub(crate) fn prewarm(rt: &Arc<RunnerInner>, def: &Arc<RuntimeDef>, code: &Code, limits: &CallLimits) {
    {
        let mut codes = rt.pool.lock();
        let cp = codes.entry(code.key.clone()).or_insert_with(|| CodePool {
            def: def.clone(),
            code: code.clone(),
            limits: limits.clone(),
            idle: Vec::new(),
            busy: 0,
            starting: 0,
            want: 0,
            last_call: Instant::now(),
            broken_until: None,
        });
        cp.want = cp.want.max(rt.pool.config.prewarm_per_code.max(1));
    }
    top_up(rt, &code.key);
}

/// Maintenance: evict idle boxes past their TTL, drop dead ones, keep each
/// pool at what it wants. Stops when the runner is dropped.
pub(crate) fn start_maintenance(rt: Weak<RunnerInner>) {
    let _ = std::thread::Builder::new()
        .name("warden-warm-pool".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(250));
                let Some(rt) = rt.upgrade() else { return };
                let ttl = rt.pool.config.idle_ttl;
                let mut keys = Vec::new();
                let mut dropped = Vec::new();
                {
                    let mut codes = rt.pool.lock();
                    for (key, cp) in codes.iter_mut() {
                        let before = cp.idle.len();
                        let mut keep = Vec::new();
                        for mut b in cp.idle.drain(..) {
                            let dead = box_is_dead(&mut b);
                            if dead {
                                rt.pool.counters.restarts.fetch_add(1, Ordering::Relaxed);
                                dropped.push(b);
                            } else if b.last_used.elapsed() > ttl {
                                dropped.push(b);
                            } else {
                                keep.push(b);
                            }
                        }
                        cp.idle = keep;
                        if cp.last_call.elapsed() > ttl {
                            cp.want = 0;
                        }
                        if cp.idle.len() < before || cp.idle.len() + cp.busy + cp.starting < cp.want {
                            keys.push(key.clone());
                        }
                    }
                    codes
                        .retain(|_, cp| cp.want > 0 || !cp.idle.is_empty() || cp.busy > 0 || cp.starting > 0);
                }
                drop(dropped); // kills them, outside the lock
                for key in keys {
                    top_up(&rt, &key);
                }
            }
        });
}

fn box_is_dead(b: &mut WarmBox) -> bool {
    let pidfd = b.running.pidfd();
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

/// Start one warm box for `code`.
fn start_box(
    rt: &RunnerInner,
    def: &RuntimeDef,
    code: &Code,
    limits: &CallLimits,
) -> Result<WarmBox, RuntimeError> {
    let handle = artifacts::fresh_box(&rt.jail, limits.workspace_bytes)?;
    // A long wall clock: the box lives until evicted; calls have their own.
    let life = rt.pool.config.idle_ttl + Duration::from_secs(24 * 3600);
    let mut call_limits = limits.clone();
    call_limits.memory_bytes += rt.pool.config.server_memory_bytes;
    let deadline = Instant::now() + rt.pool.config.start_timeout;
    match def.warm {
        WarmMode::ForkServer => {
            let (host, boxed) = rustix::net::socketpair(
                AddressFamily::UNIX,
                SocketType::SEQPACKET,
                SocketFlags::CLOEXEC,
                None,
            )
            .map_err(|e| RuntimeError::Channel(e.into()))?;
            let mut spec = rt.box_spec(def, code, "serve", &call_limits, life);
            // Per-call CPU limits are set in each child; the server idles.
            spec.limits.cpu_time = None;
            spec.extra_fds.push((boxed, 5));
            let mut running = handle.spawn(spec)?;
            drop(running.take_stdout());
            drop(running.take_stderr());
            let msg = recv_until(&host, &mut running, deadline)?;
            let ready: Value =
                serde_json::from_slice(&msg).map_err(|e| RuntimeError::Channel(std::io::Error::other(e)))?;
            if ready["ready"] != Value::Bool(true) {
                let e: Option<HandlerError> = serde_json::from_value(ready["error"].clone()).ok();
                return Err(RuntimeError::Code {
                    path: code.dir.clone(),
                    reason: e.map_or("the plugin failed to load".into(), |e| {
                        format!("{}: {}", e.kind, e.message)
                    }),
                });
            }
            let server_pid = running
                .program_pid()
                .ok_or_else(|| RuntimeError::Channel(std::io::Error::other("the fork-server has no pid")))?;
            running.protect_from_oom(running.init_pid());
            running.protect_from_oom(server_pid);
            Ok(WarmBox {
                running,
                kind: Kind::ForkServer {
                    ctl: host,
                    server_pid,
                },
                workspace_bytes: limits.workspace_bytes,
                last_used: Instant::now(),
            })
        }
        WarmMode::Prestart => {
            let result = memfd_with(c"warden-result", b"")?;
            let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| RuntimeError::Channel(e.into()))?;
            let mut spec = rt.box_spec(def, code, "prestart", limits, life);
            spec.stdin = Stdin::Deferred;
            spec.extra_fds
                .push((result.try_clone().map_err(RuntimeError::Channel)?, 3));
            spec.extra_fds.push((ready_w, 5));
            let running = handle.spawn(spec)?;
            // Wait for "ready" (the module imported) or "failed".
            let pidfd = running.pidfd();
            let mut fds = [
                PollFd::new(&ready_r, PollFlags::IN),
                PollFd::new(&pidfd, PollFlags::IN),
            ];
            let left = deadline.saturating_duration_since(Instant::now());
            let ts = Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: 30,
                tv_nsec: 0,
            });
            let _ = poll(&mut fds, Some(&ts));
            let mut buf = [0u8; 16];
            let n = rustix::io::read(&ready_r, &mut buf).unwrap_or(0);
            if &buf[..n] != b"ready\n" {
                running.kill();
                return Err(RuntimeError::Code {
                    path: code.dir.clone(),
                    reason: "the plugin failed to load in a prestarted box".into(),
                });
            }
            Ok(WarmBox {
                running,
                kind: Kind::Prestart { result },
                workspace_bytes: limits.workspace_bytes,
                last_used: Instant::now(),
            })
        }
        WarmMode::None => Err(RuntimeError::UnknownRuntime(format!(
            "{} has no warm mode",
            def.name
        ))),
    }
}

/// Receive one control message, giving up when the box dies or at `deadline`.
fn recv_until(ctl: &OwnedFd, running: &mut RunningBox, deadline: Instant) -> Result<Vec<u8>, RuntimeError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rustix::net::recv(ctl, &mut buf, RecvFlags::DONTWAIT) {
            Ok((n, _)) if n > 0 => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(_) => {
                return Err(RuntimeError::Channel(std::io::Error::other(
                    "the fork-server closed its channel",
                )));
            }
            Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(RuntimeError::Channel(e.into())),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            running.kill();
            return Err(RuntimeError::Channel(std::io::Error::other(
                "the warm box did not become ready in time",
            )));
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
            return Err(RuntimeError::Channel(std::io::Error::other(format!(
                "the warm box died while starting: {events:?}"
            ))));
        }
    }
}

#[allow(clippy::large_enum_variant)] // returned once per call, never stored
enum CallEnd {
    Served { result: HandlerResult, healthy: bool },
    BoxLost(String),
}

/// Output of one stream, capped.
struct Capped {
    stream: Stream,
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Capped {
    fn new(stream: Stream, fd: OwnedFd, cap: usize) -> Capped {
        if let Ok(fl) = rustix::fs::fcntl_getfl(&fd) {
            let _ = rustix::fs::fcntl_setfl(&fd, fl | rustix::fs::OFlags::NONBLOCK);
        }
        Capped {
            stream,
            fd: Some(fd),
            buf: Vec::new(),
            cap,
            truncated: false,
        }
    }

    fn pump(&mut self, tap: Option<&crate::OutputTap>) {
        let Some(fd) = &self.fd else { return };
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match rustix::io::read(fd, &mut chunk) {
                Ok(0) => {
                    self.fd = None;
                    return;
                }
                Ok(n) => {
                    let keep = n.min(self.cap.saturating_sub(self.buf.len()));
                    self.buf.extend_from_slice(&chunk[..keep]);
                    if let (Some(tap), true) = (tap, keep > 0) {
                        tap(self.stream, &chunk[..keep]);
                    }
                    self.truncated |= keep < n;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => {
                    self.fd = None;
                    return;
                }
            }
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| RuntimeError::Channel(e.into()))
}

/// One call on a fork-server box.
fn fork_server_call(wbox: &mut WarmBox, inv: &Invocation) -> CallEnd {
    let Kind::ForkServer { ctl, server_pid } = &wbox.kind else {
        return CallEnd::BoxLost("not a fork-server".into());
    };
    let server_pid = *server_pid;
    let limits = &inv.limits;
    let running = &mut wbox.running;
    let init_pid = running.init_pid();
    let started = Instant::now();

    // The call's own limits, relative to the idle server's usage.
    let mut base_mem = 0;
    let baseline = match running.cgroup_mut() {
        Some(cg) => {
            base_mem = cg.memory_usage().unwrap_or(0);
            let tasks = cg.task_count().unwrap_or(0);
            let applied = cg.apply(&CgroupLimits {
                memory_bytes: Some(base_mem + limits.memory_bytes),
                pids: Some(tasks + limits.pids),
                cpu_cores: Some(1.0),
            });
            if let Err(e) = applied {
                return CallEnd::BoxLost(format!("setting the call's limits: {e}"));
            }
            cg.start_run().ok()
        }
        None => None,
    };

    // Channels: output pipes, the event and the result as memory files.
    let channels = (|| -> Result<_, RuntimeError> {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let event = memfd_with(c"warden-event", &inv.event)?;
        let result = memfd_with(c"warden-result", b"")?;
        Ok((out_r, out_w, err_r, err_w, event, result))
    })();
    let Ok((out_r, out_w, err_r, err_w, event, result)) = channels else {
        return CallEnd::BoxLost("creating the call's channels".into());
    };
    let cpu_seconds = limits.cpu_time.as_secs() + u64::from(limits.cpu_time.subsec_nanos() > 0);
    let header = serde_json::json!({"cpu_seconds": cpu_seconds.max(1), "cwd": "/workspace"}).to_string();
    let fds = [event.as_fd(), out_w.as_fd(), err_w.as_fd(), result.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    anc.push(SendAncillaryMessage::ScmRights(&fds));
    if let Err(e) = rustix::net::sendmsg(
        ctl,
        &[IoSlice::new(header.as_bytes())],
        &mut anc,
        SendFlags::NOSIGNAL,
    ) {
        return CallEnd::BoxLost(format!("the fork-server is gone ({e})"));
    }
    // Only the call's process may hold the write ends now.
    drop((out_w, err_w, event));

    let mut out = Capped::new(Stream::Stdout, out_r, limits.output_bytes);
    let mut err = Capped::new(Stream::Stderr, err_r, limits.output_bytes);
    let deadline = started + limits.timeout;
    let mut exit_status: Option<i32> = None;
    let mut timed_out = false;
    let mut violation: Option<String> = None;
    let mut box_died = false;
    let mut msg = vec![0u8; 4096];
    loop {
        let done = exit_status.is_some() && out.fd.is_none() && err.fd.is_none();
        if done || box_died {
            break;
        }
        let now = Instant::now();
        if !timed_out && exit_status.is_none() && now >= deadline {
            timed_out = true;
            kill_call(running, init_pid, server_pid);
        }
        if exit_status.is_some() {
            // The call's process is gone; anything it left behind goes too,
            // which also closes the output pipes.
            kill_call(running, init_pid, server_pid);
        }
        let wait = if exit_status.is_some() || timed_out {
            Duration::from_millis(20)
        } else {
            deadline.saturating_duration_since(now)
        };
        let mut pfds: Vec<PollFd<'_>> = Vec::with_capacity(5);
        pfds.push(PollFd::new(ctl, PollFlags::IN));
        let events_fd = running.events_fd();
        pfds.push(PollFd::new(&events_fd, PollFlags::IN));
        let pidfd = running.pidfd();
        pfds.push(PollFd::new(&pidfd, PollFlags::IN));
        if let Some(fd) = &out.fd {
            pfds.push(PollFd::new(fd, PollFlags::IN));
        }
        if let Some(fd) = &err.fd {
            pfds.push(PollFd::new(fd, PollFlags::IN));
        }
        let ts = Timespec::try_from(wait).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        let _ = poll(&mut pfds, Some(&ts));
        let ctl_ready = !pfds[0].revents().is_empty();
        let events_ready = !pfds[1].revents().is_empty();
        let died = !pfds[2].revents().is_empty();
        drop(pfds);
        out.pump(inv.tap.as_ref());
        err.pump(inv.tap.as_ref());
        if ctl_ready {
            while let Ok((n, _)) = rustix::net::recv(ctl, &mut msg, RecvFlags::DONTWAIT) {
                if n == 0 {
                    box_died = true;
                    break;
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&msg[..n])
                    && let Some(st) = v.get("exited").and_then(Value::as_i64)
                {
                    exit_status = Some(st as i32);
                }
            }
        }
        if events_ready || died {
            for ev in running.read_events() {
                if let BoxEvent::Violation { syscall, .. } = ev {
                    violation = Some(syscall);
                }
            }
            if died {
                box_died = true;
            }
        }
    }
    if box_died && violation.is_none() {
        // Give init's report a moment: a violation kills the box too.
        for ev in running.read_events() {
            if let BoxEvent::Violation { syscall, .. } = ev {
                violation = Some(syscall);
            }
        }
        if violation.is_none() && exit_status.is_none() {
            return CallEnd::BoxLost("the fork-server died during the call".into());
        }
    }
    let wall = started.elapsed();
    let stats = match (running.cgroup_mut(), baseline) {
        (Some(cg), Some(base)) => Some(cg.stats(&base)),
        _ => None,
    };
    let oom = stats.map_or(0, |s| s.oom_kills);
    let (exit_code, signal) = match exit_status {
        Some(st) if libc_wifexited(st) => (Some((st >> 8) & 0xff), None),
        Some(st) => (None, Some(st & 0x7f)),
        None => (None, Some(9)),
    };
    let jail_status = if violation.is_some() {
        Status::Violation
    } else if timed_out {
        Status::Timeout
    } else if oom > 0 {
        Status::MemoryLimit
    } else if signal == Some(24) {
        Status::CpuLimit
    } else if signal.is_some() {
        Status::Signaled
    } else if exit_code == Some(0) {
        Status::Ok
    } else {
        Status::NonzeroExit
    };
    let message = match jail_status {
        Status::Timeout => Some(format!(
            "wall-clock limit of {:?} reached: the call's processes were killed",
            limits.timeout
        )),
        Status::MemoryLimit => Some(format!(
            "memory limit of {} bytes reached: the kernel killed the call",
            limits.memory_bytes
        )),
        Status::CpuLimit => Some(format!("CPU-time limit of {:?} reached", limits.cpu_time)),
        Status::Signaled => Some(format!("killed by signal {}", signal.unwrap_or(0))),
        _ => None,
    };
    let doc = read_memfd(&result, limits.result_bytes);
    let artifacts = artifacts::collect(running.handle(), limits.workspace_bytes);
    let healthy = !box_died && violation.is_none() && scrub(running);
    let outcome = CallOutcome {
        jail_status,
        exit_code,
        signal,
        message,
        violation,
        wall_ms: wall.as_secs_f64() * 1000.0,
        cpu_ms: stats.and_then(|s| s.cpu_ns).map_or(0.0, |ns| ns as f64 / 1e6),
        peak_memory_bytes: stats
            .and_then(|s| s.peak_bytes)
            .map_or(0, |p| p.saturating_sub(base_mem)),
        io_read_bytes: 0,
        io_write_bytes: 0,
        stdout: out.buf,
        stderr: err.buf,
        stdout_truncated: out.truncated,
        stderr_truncated: err.truncated,
    };
    let result = result::assemble(
        Protocol::Wrapper,
        outcome,
        doc,
        limits.result_bytes,
        artifacts,
        true,
    );
    CallEnd::Served { result, healthy }
}

fn libc_wifexited(status: i32) -> bool {
    status & 0x7f == 0
}

/// Kill every process of the box except its init and the fork-server.
fn kill_call(running: &mut RunningBox, init_pid: i32, server_pid: i32) {
    let Some(cg) = running.cgroup_mut() else { return };
    for _ in 0..100 {
        let left: Vec<i32> = cg
            .pids()
            .into_iter()
            .filter(|p| *p != init_pid && *p != server_pid)
            .collect();
        if left.is_empty() {
            return;
        }
        for pid in left {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Empty the workspace (keeping a fresh `out/`) and `/tmp` between calls.
/// Returns false when the box cannot be made clean (it is then retired).
fn scrub(running: &RunningBox) -> bool {
    let handle = running.handle();
    let ws = handle.workspace_dir();
    let mut ok = empty_dir(ws);
    ok &= artifacts::make_out_dir(handle).is_ok();
    // The box's /tmp is reachable through its init's root (root only).
    let tmp = std::path::PathBuf::from(format!("/proc/{}/root/tmp", running.init_pid()));
    if rustix::process::geteuid().is_root() {
        ok &= empty_dir(&tmp);
    } else {
        // Rootless: /tmp cannot be reached from outside; retire the box after
        // a call that may have written there.
        ok = false;
    }
    ok
}

fn empty_dir(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut ok = true;
    for e in entries.flatten() {
        let p = e.path();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        // remove_dir_all does not follow symlinks, so a planted link cannot
        // redirect the deletion outside the box.
        let r = if is_dir {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        ok &= r.is_ok();
    }
    ok
}

/// One call on a prestarted box (consumed by the call).
fn prestart_call(wbox: WarmBox, inv: &Invocation) -> Result<HandlerResult, RuntimeError> {
    let WarmBox {
        mut running, kind, ..
    } = wbox;
    let Kind::Prestart { result } = kind else {
        return Err(RuntimeError::Channel(std::io::Error::other(
            "not a prestarted box",
        )));
    };
    let limits = &inv.limits;
    if let Some(cg) = running.cgroup_mut() {
        let _ = cg.apply(&CgroupLimits {
            memory_bytes: Some(limits.memory_bytes),
            pids: Some(limits.pids),
            cpu_cores: Some(1.0),
        });
    }
    running.restart_accounting();
    running.set_stdin(inv.event.clone());
    let (outcome, handle) = running.wait_until(
        Instant::now() + limits.timeout,
        &mut crate::TapSink(inv.tap.as_ref()),
    );
    let doc = read_memfd(&result, limits.result_bytes);
    let artifacts = artifacts::collect(&handle, limits.workspace_bytes);
    Ok(result::assemble(
        Protocol::Wrapper,
        CallOutcome::from(outcome),
        doc,
        limits.result_bytes,
        artifacts,
        true,
    ))
}
