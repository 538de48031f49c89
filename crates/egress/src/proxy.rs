//! Serving a box's listener: the shared runtime, the accept loop with the
//! per-proxy caps, and the handle blocking callers keep.
//!
//! Every proxy runs on one small tokio runtime owned by this crate, started
//! on the first `serve` and kept for the process's life, so callers need no
//! runtime of their own. Its threads are born in the network namespace of
//! the thread that starts it, and the proxy's upstream connections and DNS
//! queries come from those threads: `serve` refuses to start the runtime
//! from a thread that is not in the process's own network namespace.
//!
//! Must never: block a caller without a deadline, or keep serving after its
//! handle is gone.

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::conn::{self, REASON_HEADER, now_ms};
use crate::io::{Budget, linger_close};
use crate::policy::{Policy, PolicyError};
use crate::record::{ConnectionRecord, Reason, Recorder, Refusal, Report, Verdict};

/// What every connection of one proxy shares.
pub(crate) struct Shared {
    pub policy: Policy,
    pub budget: Arc<Budget>,
    pub recorder: Recorder,
    /// Connections being served now.
    live: AtomicU32,
    /// Connections admitted so far.
    served: AtomicU32,
    /// Early refusals still writing their answer.
    refusing: AtomicU32,
    next_id: AtomicU64,
}

/// Early refusals (caps) answered at once; more are closed without an
/// answer (still recorded), so a box looping on `connect` cannot make the
/// host hold descriptors for it.
const MAX_REFUSING: u32 = 64;
/// How long an early refusal may take to write.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);
/// How long `stop` waits for connections to finish their records before
/// aborting them (which records them too).
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long `stop` blocks its caller at most.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The policy is invalid.
    #[error("egress policy: {0}")]
    Policy(#[from] PolicyError),
    /// The listener could not be used.
    #[error("the proxy's listener cannot be served")]
    Listener(#[source] io::Error),
    /// The runtime could not be started.
    #[error("the egress runtime could not start")]
    Runtime(#[source] io::Error),
    /// The first `serve` was called from a thread that has entered another
    /// network namespace (a box's): the runtime's threads would inherit it.
    #[error(
        "serve was called from a thread outside the process's network namespace; call it from a \
         host thread (the listener itself may live in the box's namespace)"
    )]
    WrongNamespace,
}

/// The handle of a running proxy. Dropping it stops the proxy without
/// waiting; `stop` stops it and returns the final report.
#[derive(Debug)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    done: Mutex<mpsc::Receiver<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("live", &self.live)
            .field("served", &self.served)
            .finish_non_exhaustive()
    }
}

impl ProxyHandle {
    /// The connections finished so far (live ones are not in it yet).
    pub fn report(&self) -> Report {
        self.shared.recorder.snapshot()
    }

    /// How many connections are open now.
    pub fn live(&self) -> u32 {
        self.shared.live.load(Ordering::Relaxed)
    }

    /// Stops the proxy: closes its listener, cuts every live connection
    /// (tunnels included), waits for their records (at most a few seconds)
    /// and returns the final report. Blocks the calling thread; never call
    /// it from an async task's thread.
    pub fn stop(self) -> Report {
        self.stop.send_replace(true);
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let _ = done.recv_timeout(STOP_WAIT);
        drop(done);
        self.shared.recorder.snapshot()
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The runtime every proxy runs on.
pub(crate) fn runtime() -> Result<&'static Runtime, ServeError> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    static START: Mutex<()> = Mutex::new(());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let _one_at_a_time = START.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    if !in_process_network_namespace() {
        return Err(ServeError::WrongNamespace);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .thread_name("warden-egress")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// True unless this thread is known to be in another network namespace
/// than the process's first thread.
fn in_process_network_namespace() -> bool {
    let this = std::fs::read_link("/proc/thread-self/ns/net");
    let process = std::fs::read_link("/proc/self/ns/net");
    match (this, process) {
        (Ok(a), Ok(b)) => a == b,
        _ => true,
    }
}

/// Serves `listener` (usually bound inside a box's network namespace) with
/// `policy` until the returned handle is stopped or dropped. Returns at
/// once; connections are served on the crate's own runtime.
pub fn serve(listener: TcpListener, policy: Policy) -> Result<ProxyHandle, ServeError> {
    policy.validate()?;
    let rt = runtime()?;
    listener.set_nonblocking(true).map_err(ServeError::Listener)?;
    let listener = {
        let _enter = rt.enter();
        tokio::net::TcpListener::from_std(listener).map_err(ServeError::Listener)?
    };
    let shared = Arc::new(Shared {
        budget: Arc::new(Budget::new(policy.limits.max_bytes)),
        recorder: Recorder::new(policy.limits.max_records),
        policy,
        live: AtomicU32::new(0),
        served: AtomicU32::new(0),
        refusing: AtomicU32::new(0),
        next_id: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel();
    rt.spawn(accept_loop(listener, shared.clone(), stop_rx, done_tx));
    Ok(ProxyHandle {
        shared,
        stop: stop_tx,
        done: Mutex::new(done_rx),
    })
}

/// Counts a served connection as live while it exists.
struct Live(Arc<Shared>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            () = conn::stopped(&mut stop) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
                    match admit(&shared) {
                        Ok(live) => {
                            let stop = stop.clone();
                            tasks.spawn(async move {
                                let shared = live.0.clone();
                                conn::serve(shared, stream, id, stop).await;
                                drop(live);
                            });
                        }
                        Err(refusal) => {
                            refuse_early(&shared, &mut tasks, stream, id, refusal);
                        }
                    }
                }
                Err(e) => {
                    // Out of descriptors or memory, or a connection reset
                    // before it was accepted: wait a little, keep serving.
                    tracing::warn!(error = %e, "egress proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let wait_all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(STOP_GRACE, wait_all).await.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    drop(done);
}

/// Applies the caps to a new connection: `Ok` counts it as served and live.
fn admit(shared: &Arc<Shared>) -> Result<Live, Refusal> {
    let limits = &shared.policy.limits;
    if shared.served.load(Ordering::Relaxed) >= limits.max_connections {
        return Err(Refusal::new(
            Reason::ConnectionCap,
            format!(
                "this box already made its {} connections through the proxy",
                limits.max_connections
            ),
        ));
    }
    if shared.live.load(Ordering::Relaxed) >= limits.max_concurrent {
        return Err(Refusal::new(
            Reason::ConcurrencyCap,
            format!(
                "this box already has {} connections open through the proxy",
                limits.max_concurrent
            ),
        ));
    }
    if shared.budget.remaining() == 0 {
        return Err(Refusal::new(
            Reason::ByteCap,
            format!(
                "this box already moved its {} bytes through the proxy",
                limits.max_bytes
            ),
        ));
    }
    shared.served.fetch_add(1, Ordering::Relaxed);
    shared.live.fetch_add(1, Ordering::Relaxed);
    Ok(Live(shared.clone()))
}

/// Refuses a connection over a cap without reading its request: records
/// it, answers with the reason and closes gently.
fn refuse_early(
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
    stream: tokio::net::TcpStream,
    id: u64,
    refusal: Refusal,
) {
    let body = format!(
        "warden egress proxy: {} ({})\n",
        refusal.message,
        refusal.reason.as_str()
    );
    let response = format!(
        "HTTP/1.1 {} Too Many Requests\r\ncontent-type: text/plain; charset=utf-8\r\n\
         {REASON_HEADER}: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        refusal.reason.status(),
        refusal.reason.as_str(),
        body.len(),
    );
    shared.recorder.push(ConnectionRecord {
        id,
        started_at: now_ms(),
        duration_ms: 0.0,
        method: None,
        host: None,
        port: None,
        address: None,
        credential: None,
        bytes_up: 0,
        bytes_down: 0,
        verdict: Verdict::Refused {
            reason: refusal.reason,
            message: refusal.message,
        },
    });
    if shared.refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
        shared.refusing.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let shared = shared.clone();
    tasks.spawn(async move {
        let mut stream = stream;
        let wrote = tokio::time::timeout(REFUSAL_WRITE, stream.write_all(response.as_bytes())).await;
        if let Ok(Ok(())) = wrote
            && let Ok(std) = stream.into_std()
        {
            linger_close(std).await;
        }
        shared.refusing.fetch_sub(1, Ordering::Relaxed);
    });
}
