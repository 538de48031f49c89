//! The warm pool: calls answered in milliseconds instead of an interpreter
//! start each.
//!
//! Boxes are kept per code key (plugin, version, tenant: never shared across
//! them), in one of two shapes:
//!
//! * **Fork-server** (Python, [`forkserver`]): a box whose program is the
//!   wrapper in `serve` mode. It imported the plugin once; each call is one
//!   `fork` of it, so every call starts from the same clean state. A box
//!   serves one call at a time, which lets the call use the box's cgroup as
//!   its own (limits set per call, never above the box's fixed ceiling) and
//!   lets the host kill whatever the call left behind. The fork-server makes
//!   itself non-dumpable, so a call cannot write its memory.
//!   Node.js boxes run the same protocol through an agent
//!   (`warden_node_agent.py`, the runtime's `serve_argv`) that keeps one
//!   long-lived `node` process: each call runs on a freshly evaluated
//!   module, and what a call leaves that cannot be undone ends that process
//!   (see the wrapper's `serve` mode).
//! * **Prestart** (JavaScript one-shot runs, whose program ends its process,
//!   [`prestart`]): boxes started ahead that imported the runner and wait for
//!   one event on stdin; each serves one run and is then replaced.
//!
//! A live box is hostile: the plugin's own threads keep running in it
//! between calls. So the host touches its files only through the jail's
//! `BoxDir` (beneath a descriptor, no links, regular files, non-blocking),
//! never waits on it without a deadline (a silent or stopped fork-server is
//! killed at the call's wall clock plus `grace`), empties its workspace,
//! `/tmp` and System V IPC after every call, and retires it when any of that
//! fails.
//!
//! When no warm box is free the call goes cold, and the pool grows in the
//! background up to its caps. Dead fork-servers are replaced and counted.

mod forkserver;
mod prestart;
mod protocol;
mod start;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use serde::Serialize;
use warden_jail::RunningBox;

use crate::result::HandlerResult;
use crate::runtimes::RuntimeDef;
use crate::{CallLimits, Code, Invocation, RunnerInner, RuntimeError};

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
    /// How long past a call's wall clock the host waits for the fork-server
    /// to report the call's end (and for output to close) before it counts
    /// the box as dead, kills it and replaces it.
    pub grace: Duration,
    /// Processes and threads the fork-server itself may hold between calls;
    /// a box holding more is retired.
    pub server_tasks: u32,
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
            grace: Duration::from_secs(2),
            server_tasks: 32,
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
    /// The box's fixed memory ceiling: the fork-server's allowance plus the
    /// largest call memory it serves. No call's limit is ever set above it.
    memory_ceiling: u64,
    last_used: Instant,
    /// The box's way out, when its code was granted network (declared after
    /// `running`: the box is gone before its proxy stops).
    door: Option<crate::door::Door>,
    /// The last egress record already attributed to a call.
    egress_seen: u64,
}

/// How long after a warm call the host waits for the connections the call
/// left open to end (a record is written when its connection ends).
const EGRESS_SETTLE: Duration = Duration::from_millis(500);

/// A warm box whose proxy recorded this many connections is replaced: the
/// proxy's caps (connections, bytes) count over its life, and one box must
/// not exhaust them for later calls.
const EGRESS_RECYCLE: u64 = 512;

impl WarmBox {
    /// The notable egress records of the call just served.
    fn take_notable(&mut self) -> Vec<warden_egress::ConnectionRecord> {
        let Some(door) = &self.door else {
            return Vec::new();
        };
        let (notable, last) = door.notable_since(self.egress_seen, EGRESS_SETTLE);
        self.egress_seen = last;
        notable
    }

    /// Whether the box's proxy has served so much that the box should go.
    fn egress_worn(&self) -> bool {
        self.door.as_ref().is_some_and(|d| d.recorded() >= EGRESS_RECYCLE)
    }

    /// Whether this box can serve a call with `limits`. A prestarted box
    /// takes each call's memory limit as it is (it serves one call).
    fn fits(&self, limits: &CallLimits, server_memory: u64) -> bool {
        self.workspace_bytes >= limits.workspace_bytes
            && match self.kind {
                Kind::ForkServer { .. } => {
                    self.memory_ceiling >= limits.memory_bytes.saturating_add(server_memory)
                }
                Kind::Prestart { .. } => true,
            }
    }
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
    /// A box failed to start: do not keep starting boxes for it.
    broken_until: Option<Instant>,
    /// Why the last start failed, when the plugin's own code failed to
    /// load (not a transient cause such as the host's limits).
    load_failure: Option<String>,
}

impl CodePool {
    fn new(def: &Arc<RuntimeDef>, code: &Code, limits: &CallLimits, want: usize) -> CodePool {
        CodePool {
            def: def.clone(),
            code: code.clone(),
            limits: limits.clone(),
            idle: Vec::new(),
            busy: 0,
            starting: 0,
            want,
            last_call: Instant::now(),
            broken_until: None,
            load_failure: None,
        }
    }
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

    pub(crate) fn config(&self) -> &WarmConfig {
        &self.config
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

    /// Why `key`'s boxes do not start, while its pool holds off: the
    /// plugin's code failed to load in the last box started for it.
    pub(crate) fn load_failure(&self, key: &str) -> Option<String> {
        let codes = self.lock();
        let cp = codes.get(key)?;
        cp.broken_until
            .is_some_and(|t| Instant::now() < t)
            .then(|| cp.load_failure.clone())
            .flatten()
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

/// Serve one call warm, or say there is no box for it (waiting at most
/// the pool's `max_wait` for a busy or starting box).
pub(crate) fn invoke(rt: &Arc<RunnerInner>, def: &Arc<RuntimeDef>, code: &Code, inv: &Invocation) -> Attempt {
    invoke_within(rt, def, code, inv, rt.pool.config.max_wait)
}

/// [`invoke`], waiting at most `max_wait` for a box that is coming before
/// saying there is none.
pub(crate) fn invoke_within(
    rt: &Arc<RunnerInner>,
    def: &Arc<RuntimeDef>,
    code: &Code,
    inv: &Invocation,
    max_wait: Duration,
) -> Attempt {
    let pool = &rt.pool;
    // Boxes to kill, outside the lock (a kill waits for the box to empty).
    let mut discard = Vec::new();
    let taken = {
        let mut codes = pool.lock();
        let deadline = Instant::now() + max_wait;
        let mut grown = false;
        let mut topped = false;
        loop {
            let cp = codes.entry(code.key.clone()).or_insert_with(|| {
                CodePool::new(def, code, &inv.limits, pool.config.prewarm_per_code.max(1))
            });
            cp.last_call = Instant::now();
            // A box fits when its workspace and memory ceiling are large
            // enough for this call; a call asking more than the boxes were
            // started for raises what new boxes get.
            let server_memory = def.server_memory(pool.config.server_memory_bytes);
            let pos = cp.idle.iter().rposition(|b| b.fits(&inv.limits, server_memory));
            if pos.is_none() && !grown {
                cp.limits.workspace_bytes = cp.limits.workspace_bytes.max(inv.limits.workspace_bytes);
                cp.limits.memory_bytes = cp.limits.memory_bytes.max(inv.limits.memory_bytes);
                // Idle boxes too small for this call make room for one that
                // fits (dropping a box kills it).
                if let Some(i) = cp.idle.iter().position(|b| !b.fits(&inv.limits, server_memory)) {
                    discard.push(cp.idle.swap_remove(i));
                }
            }
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
    drop(discard);
    let Some(mut wbox) = taken else {
        pool.counters.cold.fetch_add(1, Ordering::Relaxed);
        // Grow now rather than at the next maintenance tick.
        top_up(rt, &code.key);
        return Attempt::NoBox;
    };
    let outcome = match &wbox.kind {
        Kind::ForkServer { .. } => forkserver::call(&mut wbox, inv, &pool.config, def),
        Kind::Prestart { .. } => {
            let result = prestart::call(wbox, inv, def.protocol);
            finish(rt, &code.key, None);
            pool.counters.warm_calls.fetch_add(1, Ordering::Relaxed);
            top_up(rt, &code.key);
            return Attempt::Done(result);
        }
    };
    match outcome {
        CallEnd::Served { mut result, healthy } => {
            result.egress = wbox.take_notable();
            let healthy = healthy && !wbox.egress_worn();
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
            let started = start::start_box(&rt, &def, &code, &limits);
            let mut codes = rt.pool.lock();
            let Some(cp) = codes.get_mut(&key) else { return };
            cp.starting = cp.starting.saturating_sub(1);
            match started {
                Ok(b) => {
                    rt.pool.counters.started.fetch_add(1, Ordering::Relaxed);
                    cp.load_failure = None;
                    cp.idle.push(b);
                    drop(codes);
                    rt.pool.freed.notify_all();
                }
                Err(e) => {
                    tracing::warn!(code = %key, error = %e, "starting a warm box failed; calls go cold for a while");
                    cp.broken_until = Some(Instant::now() + Duration::from_secs(30));
                    cp.load_failure = match &e {
                        RuntimeError::Code { reason, .. } => Some(reason.clone()),
                        _ => None,
                    };
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
        let cp = codes
            .entry(code.key.clone())
            .or_insert_with(|| CodePool::new(def, code, limits, 0));
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
                rt.sessions.evict(ttl);
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

#[allow(clippy::large_enum_variant)] // returned once per call, never stored
enum CallEnd {
    /// The call ran; `healthy` says whether the box may serve another.
    Served { result: HandlerResult, healthy: bool },
    /// The box was gone before the call could be judged (not the call's
    /// doing, as far as the host can tell): retry it cold.
    BoxLost(String),
}
