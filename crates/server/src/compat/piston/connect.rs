//! Piston's interactive protocol: `GET /api/v2/connect`, a WebSocket.
//!
//! The client sends `init` (the fields of `POST /api/v2/execute`), then
//! maybe `data` (`{stream: "stdin", data}`) and `signal`; the server sends
//! `runtime`, `stage` (`compile`, `run`), `data` (`stdout`/`stderr`),
//! `exit` (`{stage, code, signal}`) per stage, `error`, and closes with
//! Piston's codes: 4999 Job Completed, 4000 Already Initialized, 4001
//! Initialization Timeout, 4002 Notified Error (after an `error`), 4003
//! Not yet initialized, 4004 Can only write to stdin, 4005 Invalid signal.
//!
//! The run is an ordinary one-shot run ([`crate::runs`]): admitted,
//! recorded and run like `execute`; its output comes live from the
//! execution's event log (the SSE engine's). A run's stdin is fixed when
//! it starts, so `data` is taken only until the run starts: for
//! [`STDIN_GRACE`] after `init` (not at all when `init` carries stdin),
//! ending [`STDIN_SETTLE`] after the last `data`. Later stdin and signals
//! are checked but not delivered (see `docs/compat.md`).
//!
//! Must never: hold more sockets than the node has execution room for,
//! keep a socket open without a deadline before `init`, or let a client
//! that goes away cancel a recorded run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use warden_core::{ExecutionResult, ResultStatus};

use super::{app_of, message, parse, refused, stage};
use crate::AppState;
use crate::auth::Principal;
use crate::compat::Compat;
use crate::error::ApiError;

/// How long a socket may stay open without `init` (Piston's second).
const INIT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long after `init` stdin is taken before the run starts.
pub const STDIN_GRACE: Duration = Duration::from_millis(250);
/// How long after a `data` message the run waits for more before starting.
pub const STDIN_SETTLE: Duration = Duration::from_millis(25);
/// How long a wait for more output lasts before looking again.
const WAIT: Duration = Duration::from_secs(15);

/// Piston's signal names (`globals.SIGNALS`).
const SIGNALS: &[&str] = &[
    "SIGABRT",
    "SIGALRM",
    "SIGBUS",
    "SIGCHLD",
    "SIGCLD",
    "SIGCONT",
    "SIGEMT",
    "SIGFPE",
    "SIGHUP",
    "SIGILL",
    "SIGINFO",
    "SIGINT",
    "SIGIO",
    "SIGIOT",
    "SIGKILL",
    "SIGLOST",
    "SIGPIPE",
    "SIGPOLL",
    "SIGPROF",
    "SIGPWR",
    "SIGQUIT",
    "SIGSEGV",
    "SIGSTKFLT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGSYS",
    "SIGTERM",
    "SIGTRAP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGUNUSED",
    "SIGURG",
    "SIGUSR1",
    "SIGUSR2",
    "SIGVTALRM",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGWINCH",
];

/// Open Piston sockets on this node.
#[derive(Debug, Default)]
pub struct Sockets(AtomicUsize);

/// One open socket, counted until dropped.
struct Counted(Arc<Compat>);

impl Counted {
    /// Count one more socket, unless `max` are open.
    fn claim(compat: &Arc<Compat>, max: usize) -> Option<Counted> {
        let n = &compat.sockets.0;
        let mut now = n.load(Ordering::Acquire);
        loop {
            if now >= max {
                return None;
            }
            match n.compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Counted(compat.clone())),
                Err(seen) => now = seen,
            }
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.sockets.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /api/v2/connect`: the key is checked on the upgrade request; at
/// most as many sockets as the node has executions in flight (503 beyond).
pub async fn connect(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let app = match app_of(&s, p, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let ws = match ws {
        Ok(w) => w,
        Err(e) => {
            return message(
                StatusCode::BAD_REQUEST,
                format!("/api/v2/connect takes a WebSocket upgrade: {}", e.body_text()),
            )
            .into_response();
        }
    };
    let max = s.exec.capacity();
    let Some(counted) = Counted::claim(&s.compat, max) else {
        metrics::counter!("warden_executions_rejected_total", "reason" => "sockets").increment(1);
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{max} Piston sockets are open on this node (as many as it has room for runs); retry shortly"
            ),
        )
        .into_response();
    };
    let cap = crate::run_body_limit(&s.config);
    ws.max_message_size(cap)
        .max_frame_size(cap)
        .on_upgrade(move |socket| async move {
            let _counted = counted;
            Conn { s, app, socket }.serve().await;
        })
}

/// A message from the client.
enum Incoming {
    /// A JSON text message.
    Json(Value),
    /// Nothing to act on (ping, pong).
    Skip,
    /// The client closed or the connection failed.
    Gone,
    /// A message the protocol does not have, and why.
    Bad(String),
}

/// How a socket ends early: a close code and reason, or an `error` first.
enum End {
    Close(u16, &'static str),
    Error(String),
    Gone,
}

struct Conn {
    s: AppState,
    app: String,
    socket: WebSocket,
}

impl Conn {
    async fn recv(&mut self) -> Incoming {
        match self.socket.recv().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Incoming::Gone,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Skip,
            Some(Ok(Message::Binary(_))) => {
                Incoming::Bad("binary messages are not accepted: send JSON text messages".into())
            }
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<Value>(t.as_str()) {
                Ok(v @ Value::Object(_)) => Incoming::Json(v),
                Ok(_) => Incoming::Bad("a message must be a JSON object".into()),
                Err(e) => Incoming::Bad(format!("a message is not JSON: {e}")),
            },
        }
    }

    async fn send(&mut self, v: Value) -> bool {
        self.socket
            .send(Message::Text(v.to_string().into()))
            .await
            .is_ok()
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let _ = self
            .socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }

    async fn end(&mut self, end: End) {
        match end {
            End::Close(code, reason) => self.close(code, reason).await,
            End::Error(text) => {
                // A close reason is limited to 123 bytes: the message goes first.
                self.send(json!({"type": "error", "message": text})).await;
                self.close(4002, "Notified Error").await;
            }
            End::Gone => {}
        }
    }

    async fn serve(mut self) {
        if let Err(end) = self.session().await {
            self.end(end).await;
        }
    }

    /// What a message after `init` means: `Ok(Some(stdin))` for stdin,
    /// `Ok(None)` for one to let pass, `Err` for one that ends the socket.
    fn after_init(msg: &Value) -> Result<Option<String>, End> {
        match msg.get("type").and_then(Value::as_str) {
            Some("init") => Err(End::Close(4000, "Already Initialized")),
            Some("data") => match (msg.get("stream").and_then(Value::as_str), msg.get("data")) {
                (Some("stdin"), Some(Value::String(d))) => Ok(Some(d.clone())),
                (Some("stdin"), _) => Err(End::Error("data.data must be a string".into())),
                _ => Err(End::Close(4004, "Can only write to stdin")),
            },
            Some("signal") => match msg.get("signal").and_then(Value::as_str) {
                Some(sig) if SIGNALS.contains(&sig) => Ok(None),
                _ => Err(End::Close(4005, "Invalid signal")),
            },
            other => Err(End::Error(unknown(other))),
        }
    }

    async fn session(&mut self) -> Result<(), End> {
        // 1. `init`, within Piston's second.
        let deadline = tokio::time::Instant::now() + INIT_TIMEOUT;
        let init = loop {
            let got = match tokio::time::timeout_at(deadline, self.recv()).await {
                Err(_) => return Err(End::Close(4001, "Initialization Timeout")),
                Ok(m) => m,
            };
            match got {
                Incoming::Gone => return Err(End::Gone),
                Incoming::Skip => continue,
                Incoming::Bad(why) => return Err(End::Error(why)),
                Incoming::Json(v) => match v.get("type").and_then(Value::as_str) {
                    Some("init") => break v,
                    Some("data" | "signal") => return Err(End::Close(4003, "Not yet initialized")),
                    other => return Err(End::Error(unknown(other))),
                },
            }
        };
        let (rt, version, mut run) = parse(&self.s, &init).map_err(|r| End::Error(r.message))?;

        // 2. Stdin until the run starts.
        if run.stdin.is_empty() {
            let max = self.s.runs.policy().max_stdin_bytes;
            let mut until = tokio::time::Instant::now() + STDIN_GRACE;
            loop {
                let got = match tokio::time::timeout_at(until, self.recv()).await {
                    Err(_) => break,
                    Ok(m) => m,
                };
                match got {
                    Incoming::Gone => return Err(End::Gone),
                    Incoming::Skip => {}
                    Incoming::Bad(why) => return Err(End::Error(why)),
                    Incoming::Json(v) => {
                        if let Some(data) = Self::after_init(&v)? {
                            if run.stdin.len() + data.len() > max {
                                return Err(End::Error(format!(
                                    "stdin cannot exceed the configured limit of {max} bytes"
                                )));
                            }
                            run.stdin.extend_from_slice(data.as_bytes());
                            until = until.min(tokio::time::Instant::now() + STDIN_SETTLE);
                        }
                    }
                }
            }
        }

        // 3. The run, admitted and recorded as every run is.
        let compiled = super::script_language(rt.native).compiled();
        let accepted = self
            .s
            .runs
            .start(&self.app, run, None)
            .await
            .map_err(|e| End::Error(refused(&e).message))?;
        let id = accepted.record.id.clone();
        if !self
            .send(json!({"type": "runtime", "language": rt.language, "version": version.to_string()}))
            .await
        {
            return Err(End::Gone);
        }
        let mut current = if compiled { "compile" } else { "run" };
        self.send(json!({"type": "stage", "stage": current})).await;

        // 4. Live output from the execution's event log.
        let mut sent = Sent::default();
        let mut last: Option<String> = None;
        if let Some(log) = self.s.exec.hub.get(&id) {
            'stream: loop {
                let changed = log.changed();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let (events, done) = log.after(last.as_deref());
                for e in &events {
                    match e.kind {
                        "stdout" | "stderr" => {
                            let text: String = serde_json::from_str(&e.data).unwrap_or_default();
                            sent.add(current, e.kind, &text);
                            if !self
                                .send(json!({"type": "data", "stream": e.kind, "data": text}))
                                .await
                            {
                                return Err(End::Gone);
                            }
                        }
                        "status" if current == "compile" && e.data.contains("\"stage\":\"run\"") => {
                            // The program's first output: the compile step succeeded.
                            self.send(json!({"type": "exit", "stage": "compile", "code": 0, "signal": null}))
                                .await;
                            current = "run";
                            self.send(json!({"type": "stage", "stage": "run"})).await;
                        }
                        _ => {}
                    }
                }
                last = events.last().map(|e| e.id.clone()).or(last);
                if done {
                    break 'stream;
                }
                tokio::select! {
                    _ = tokio::time::timeout(WAIT, changed) => {}
                    m = self.recv() => match m {
                        Incoming::Gone => return Err(End::Gone),
                        Incoming::Skip => {}
                        Incoming::Bad(why) => return Err(End::Error(why)),
                        // Stdin after the start is not delivered.
                        Incoming::Json(v) => { Self::after_init(&v)?; }
                    },
                }
            }
        }

        // 5. How each stage ended, from the final record.
        let Ok(exec) = accepted.done.await else {
            return Err(End::Error("the run's task ended without a result".into()));
        };
        let empty = ExecutionResult::platform_error("PlatformError", "no result", None);
        let r = exec.result.as_ref().unwrap_or(&empty);
        if let (true, Some(c)) = (current == "compile", r.compile.as_deref()) {
            self.rest(&sent, "compile", c).await;
            let ok = c.status == ResultStatus::Success;
            let doc = stage(
                c,
                if ok {
                    warden_core::ExecutionStatus::Success
                } else {
                    warden_core::ExecutionStatus::Failed
                },
            );
            self.send(
                json!({"type": "exit", "stage": "compile", "code": doc["code"], "signal": doc["signal"]}),
            )
            .await;
            if !ok {
                self.close(4999, "Job Completed").await;
                return Ok(());
            }
            current = "run";
            self.send(json!({"type": "stage", "stage": "run"})).await;
        }
        debug_assert_eq!(current, "run");
        self.rest(&sent, "run", r).await;
        let doc = stage(r, exec.status);
        self.send(json!({"type": "exit", "stage": "run", "code": doc["code"], "signal": doc["signal"]}))
            .await;
        self.close(4999, "Job Completed").await;
        Ok(())
    }

    /// What a stage printed that the live log did not carry (past its
    /// chunk cap): the rest of the captured output.
    async fn rest(&mut self, sent: &Sent, stage: &str, r: &ExecutionResult) {
        for (stream, full) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
            let have = sent.get(stage, stream);
            if full.len() > have.len() && full.starts_with(have) {
                let more = full[have.len()..].to_owned();
                self.send(json!({"type": "data", "stream": stream, "data": more}))
                    .await;
            }
        }
    }
}

fn unknown(kind: Option<&str>) -> String {
    match kind {
        Some(k) => format!(
            "unknown message type `{}`: init, data and signal are",
            k.chars().take(40).collect::<String>()
        ),
        None => "a message needs a string `type` (init, data or signal)".into(),
    }
}

/// Output sent live, per stage and stream.
#[derive(Default)]
struct Sent {
    text: [[String; 2]; 2],
}

impl Sent {
    fn at(stage: &str, stream: &str) -> (usize, usize) {
        (usize::from(stage == "run"), usize::from(stream == "stderr"))
    }

    fn add(&mut self, stage: &str, stream: &str, text: &str) {
        let (a, b) = Self::at(stage, stream);
        self.text[a][b].push_str(text);
    }

    fn get(&self, stage: &str, stream: &str) -> &str {
        let (a, b) = Self::at(stage, stream);
        &self.text[a][b]
    }
}
