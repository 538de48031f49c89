//! Executions: from an app's request to a recorded result.
//!
//! 1. Resolve the installed version; verify its package hash (every call).
//! 2. Check the event against `input_schema` (422 with every violation).
//! 3. Admit it or answer 429: at most `max_concurrent + max_queue` in flight
//!    on this node.
//! 4. **Record it** (`running`, or `queued` for async calls) before anything
//!    runs: an accepted request always has its record.
//! 5. Run it on a task of its own (a client that goes away does not cancel
//!    it), streaming output into the live event log.
//! 6. Check the return value against `output_schema`, store artifacts,
//!    write the final record, count it in the metrics.
//!
//! On shutdown, [`Executor::drain`] waits for in-flight executions and marks
//! whatever is still running after the grace period `interrupted`; after a
//! crash, the next start does the same for this node's leftovers.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use serde_json::{Value, json};
use tokio::sync::Notify;
use warden_core::model::{new_id, now_ms};
use warden_core::{Blobs, Execution, ExecutionStatus, Registry, Store, Version};
use warden_package::schema::Schema;
use warden_package::{Manifest, PlatformLimits};
use warden_runtime::{CallLimits, CallStatus, Code, HandlerResult, Invocation, Runner, Stream};
use warden_store::{ObjectBlobs, SqlStore};

use crate::error::{ApiError, DisplayChain, FieldError};
use crate::events::{Hub, Log};
use crate::views::{ExecuteQuery, ExecutionView, Mode};

type Reg = Registry<SqlStore, ObjectBlobs>;

/// A version made ready to run: code unpacked, schemas compiled.
struct Loaded {
    sha256: String,
    input: Schema,
    output: Schema,
}

/// Counts executions in flight and remembers their ids (for shutdown).
#[derive(Default)]
struct Inflight {
    count: AtomicUsize,
    ids: Mutex<HashSet<String>>,
    idle: Notify,
}

/// A slot in the node's execution budget, released on drop.
struct Permit {
    inflight: Arc<Inflight>,
    id: Option<String>,
}

impl Permit {
    fn track(&mut self, id: &str) {
        self.inflight
            .ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned());
        self.id = Some(id.to_owned());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(id) = &self.id {
            self.inflight
                .ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
        }
        if self.inflight.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inflight.idle.notify_waiters();
        }
    }
}

/// Runs executions for the API.
pub struct Executor {
    registry: Arc<Reg>,
    store: Arc<SqlStore>,
    blobs: Arc<ObjectBlobs>,
    runner: Runner,
    node: String,
    capacity: usize,
    retry_after: u64,
    platform: PlatformLimits,
    inflight: Arc<Inflight>,
    /// Executions actually running; the rest wait here, without a thread.
    slots: tokio::sync::Semaphore,
    /// Set when shutdown begins: no more admissions.
    closing: std::sync::atomic::AtomicBool,
    loaded: Mutex<HashMap<String, Arc<Loaded>>>,
    /// Live event logs.
    pub hub: Hub,
}

/// An accepted execution: its record, and (sync) a way to wait for it.
pub struct Accepted {
    /// The record as first written.
    pub view: ExecutionView,
    /// Resolves with the final record.
    pub done: tokio::sync::oneshot::Receiver<ExecutionView>,
    /// Asked for `async`.
    pub is_async: bool,
}

struct Job {
    exec: Execution,
    code: Code,
    inv: Invocation,
    loaded: Arc<Loaded>,
    log: Arc<Log>,
    permit: Permit,
    is_async: bool,
    done: tokio::sync::oneshot::Sender<ExecutionView>,
}

fn problems(ps: Vec<warden_package::Problem>) -> Vec<FieldError> {
    ps.into_iter().map(FieldError::from).collect()
}

impl Executor {
    /// An executor: at most `max_concurrent` executions run at once, and
    /// `capacity` (running and waiting) are in flight on this node.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        registry: Arc<Reg>,
        store: Arc<SqlStore>,
        blobs: Arc<ObjectBlobs>,
        runner: Runner,
        node: String,
        max_concurrent: usize,
        capacity: usize,
        retry_after: u64,
        platform: PlatformLimits,
    ) -> Executor {
        Executor {
            registry,
            store,
            blobs,
            runner,
            node,
            capacity,
            retry_after,
            platform,
            inflight: Arc::default(),
            slots: tokio::sync::Semaphore::new(max_concurrent.max(1)),
            closing: std::sync::atomic::AtomicBool::new(false),
            loaded: Mutex::new(HashMap::new()),
            hub: Hub::default(),
        }
    }

    /// Executions in flight on this node.
    pub fn in_flight(&self) -> usize {
        self.inflight.count.load(Ordering::Acquire)
    }

    fn admit(&self) -> Result<Permit, ApiError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(ApiError::unavailable(
                "this server is shutting down: retry on another node, or shortly",
            ));
        }
        let before = self.inflight.count.fetch_add(1, Ordering::AcqRel);
        let permit = Permit {
            inflight: self.inflight.clone(),
            id: None,
        };
        if before >= self.capacity {
            drop(permit);
            metrics::counter!("warden_executions_rejected_total", "reason" => "busy").increment(1);
            return Err(ApiError::busy(
                format!(
                    "{before} executions are in flight on this node (the limit is {}); retry shortly",
                    self.capacity
                ),
                self.retry_after,
            ));
        }
        Ok(permit)
    }

    /// Verify and unpack `v`, compile its schemas once per package.
    async fn load(&self, v: &Version) -> Result<(PathBuf, String, Manifest, Arc<Loaded>), ApiError> {
        let (dir, entrypoint, manifest) = self.registry.load_for_run(v).await?;
        let cached = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&v.id)
            .filter(|l| l.sha256 == v.package_sha256)
            .cloned();
        let loaded = match cached {
            Some(l) => l,
            None => {
                let compile = |s: &Value, which: &str| {
                    warden_package::schema::compile(s).map_err(|e| {
                        ApiError::internal(&format!(
                            "the stored {which} of {} {} does not compile: {e}",
                            v.plugin, v.version
                        ))
                    })
                };
                let l = Arc::new(Loaded {
                    sha256: v.package_sha256.clone(),
                    input: compile(&manifest.input_schema, "input_schema")?,
                    output: compile(&manifest.output_schema, "output_schema")?,
                });
                self.loaded
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(v.id.clone(), l.clone());
                l
            }
        };
        Ok((dir, entrypoint, manifest, loaded))
    }

    fn limits(&self, m: &Manifest, q: &ExecuteQuery) -> Result<CallLimits, ApiError> {
        let mut timeout_ms = m.timeout_ms(&self.platform);
        let mut memory_mb = m.memory_mb(&self.platform);
        let mut errors = Vec::new();
        if let Some(t) = q.timeout_ms {
            if t == 0 || t > timeout_ms {
                errors.push(FieldError {
                    location: "query:timeout_ms".into(),
                    message: format!("must be between 1 and {timeout_ms} (the version's limit)"),
                });
            } else {
                timeout_ms = t;
            }
        }
        if let Some(mb) = q.memory_mb {
            if !(16..=memory_mb).contains(&mb) {
                errors.push(FieldError {
                    location: "query:memory_mb".into(),
                    message: format!("must be between 16 and {memory_mb} (the version's limit)"),
                });
            } else {
                memory_mb = mb;
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(
                "invalid-limits",
                "Limits beyond the version's",
                errors,
            ));
        }
        let timeout = Duration::from_millis(timeout_ms);
        Ok(CallLimits {
            timeout,
            cpu_time: timeout.max(Duration::from_secs(1)),
            memory_bytes: memory_mb << 20,
            pids: m.pids(&self.platform),
            ..CallLimits::default()
        })
    }

    /// Accept an execution of `plugin` for `app` with the event `body`.
    pub async fn accept(
        self: &Arc<Self>,
        app: &str,
        plugin: &str,
        body: &[u8],
        q: &ExecuteQuery,
    ) -> Result<Accepted, ApiError> {
        let is_async = q.mode == Some(Mode::Async);
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_field(
                "body",
                "the body must be the event as JSON (send {} for an empty event)",
            ));
        }
        let event: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_field("body", format!("the event is not valid JSON: {e}")))?;
        let version = self.registry.resolve(app, plugin).await?;
        let (dir, entrypoint, manifest, loaded) = self.load(&version).await?;
        let violations = loaded.input.validate(&event);
        if !violations.is_empty() {
            return Err(ApiError::invalid(
                "input-schema",
                "The event does not match the plugin's input_schema",
                problems(violations),
            ));
        }
        let limits = self.limits(&manifest, q)?;
        let mut permit = self.admit()?;
        let now = now_ms();
        let exec = Execution {
            id: new_id("exe"),
            app: app.to_owned(),
            plugin: plugin.to_owned(),
            version: version.version.clone(),
            status: if is_async {
                ExecutionStatus::Queued
            } else {
                ExecutionStatus::Running
            },
            mode: if is_async { "async" } else { "sync" }.into(),
            node: self.node.clone(),
            error_kind: None,
            result: None,
            created_at: now,
            started_at: (!is_async).then_some(now),
            finished_at: None,
            duration_ms: None,
        };
        permit.track(&exec.id);
        let code = Code {
            // Never shared across apps, plugins, versions or packages.
            key: format!("{app}/{plugin}@{}#{}", version.version, version.package_sha256),
            runtime: manifest.runtime.clone(),
            dir,
            entrypoint,
            handler: manifest.handler.clone(),
        };
        let log = self.hub.open(&exec.id);
        let tap_log = log.clone();
        let mut inv = Invocation::new(body.to_vec(), limits);
        inv.tap = Some(Arc::new(move |stream, data| {
            tap_log.output(stream == Stream::Stderr, data)
        }));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (recorded_tx, recorded_rx) = tokio::sync::oneshot::channel();
        let view = ExecutionView::from(exec.clone());
        let job = Job {
            exec,
            code,
            inv,
            loaded,
            log,
            permit,
            is_async,
            done: tx,
        };
        // From here on the work belongs to its own task: a client that goes
        // away cannot leave a record without an execution behind it.
        let me = self.clone();
        tokio::spawn(async move {
            let id = job.exec.id.clone();
            let inserted = me.store.insert_execution(job.exec.clone()).await;
            let ok = inserted.is_ok();
            let _ = recorded_tx.send(inserted);
            if !ok {
                return;
            }
            job.log.status(job.exec.status.as_str());
            let worker = me.clone();
            if let Err(panic) = std::panic::AssertUnwindSafe(worker.run(job)).catch_unwind().await {
                tracing::error!(execution = %id, panic = ?panic.downcast_ref::<&str>(), "an execution's task panicked");
                me.finish_unfinished(
                    &id,
                    ExecutionStatus::Error,
                    "internal",
                    "PlatformError",
                    "the platform failed while running the call",
                )
                .await;
            }
        });
        recorded_rx
            .await
            .map_err(|_| ApiError::internal(&"the execution's task ended before recording it"))??;
        Ok(Accepted {
            view,
            done: rx,
            is_async,
        })
    }

    /// Make an unfinished execution final with an error (best effort);
    /// true when this wrote it. The update is conditional: an execution
    /// that finished meanwhile keeps its result.
    async fn finish_unfinished(
        &self,
        id: &str,
        status: ExecutionStatus,
        kind: &str,
        error_type: &str,
        message: &str,
    ) -> bool {
        let Ok(Some(mut e)) = self.store.get_execution(id).await else {
            return false;
        };
        if e.status.is_final() {
            return false;
        }
        e.status = status;
        e.error_kind = Some(kind.into());
        e.result = Some(json!({"status": "error", "error": {"type": error_type, "message": message}}));
        e.finished_at = Some(now_ms());
        matches!(self.store.update_execution(e).await, Ok(true))
    }

    async fn run(self: Arc<Self>, job: Job) {
        let Job {
            mut exec,
            code,
            inv,
            loaded,
            log,
            permit,
            is_async,
            done,
        } = job;
        // Wait for a running slot without holding a thread.
        let Ok(_slot) = self.slots.acquire().await else {
            return;
        };
        if is_async {
            exec.status = ExecutionStatus::Running;
            exec.started_at = Some(now_ms());
            if let Err(e) = self.store.update_execution(exec.clone()).await {
                tracing::warn!(execution = %exec.id, error = %e, "could not record the start of an execution");
            }
            log.status("running");
        }
        let started = Instant::now();
        // The call blocks this task's thread for its duration; tokio moves
        // the thread's other tasks elsewhere meanwhile. Cheaper than a hop
        // to the blocking pool and back, and a panic stays contained.
        let runner = self.runner.clone();
        let call =
            move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.invoke(&code, &inv)));
        let outcome = if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread
        {
            // block_in_place needs the multi-threaded runtime.
            tokio::task::spawn_blocking(call)
                .await
                .unwrap_or_else(|e| Err(Box::new(e.to_string())))
        } else {
            tokio::task::block_in_place(call)
        };
        let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (status, kind, mut result, artifacts) = match outcome {
            Ok(Ok(r)) => self.judge(r, &loaded),
            Ok(Err(e)) => {
                // The cause names host paths: logged, not shown to callers.
                tracing::error!(execution = %exec.id, error = %DisplayChain(&e), "the runtime could not run the call");
                platform_error("the platform could not run the call; the error is in the server's log".into())
            }
            Err(_) => {
                tracing::error!(execution = %exec.id, "the runtime panicked while running the call");
                platform_error("the platform failed while running the call".into())
            }
        };
        for (i, data) in artifacts.into_iter().enumerate() {
            if let Err(e) = self.blobs.put(&format!("artifacts/{}/{i}", exec.id), data).await {
                tracing::warn!(execution = %exec.id, error = %e, "could not store an artifact");
                if let Some(a) = result.get_mut("artifacts").and_then(|a| a.get_mut(i)) {
                    a["stored"] = Value::Bool(false);
                }
            }
        }
        let duration_ms = result
            .pointer("/metrics/duration_ms")
            .and_then(Value::as_f64)
            .filter(|d| *d > 0.0)
            .unwrap_or(wall_ms);
        exec.status = status;
        exec.error_kind = kind;
        exec.result = Some(result);
        exec.finished_at = Some(now_ms());
        exec.duration_ms = Some(duration_ms);
        self.record(&exec).await;
        let plugin = exec.plugin.clone();
        metrics::counter!("warden_executions_total", "plugin" => plugin.clone(), "status" => status.as_str())
            .increment(1);
        metrics::histogram!("warden_execution_duration_seconds", "plugin" => plugin.clone())
            .record(duration_ms / 1000.0);
        if status != ExecutionStatus::Success {
            let reason = exec
                .error_kind
                .clone()
                .unwrap_or_else(|| status.as_str().to_owned());
            crate::metrics::plugin_failure(crate::error::PluginFailure { plugin, reason });
        }
        let view = ExecutionView::from(exec);
        log.finish(serde_json::to_string(&view).unwrap_or_default());
        drop(permit);
        let _ = done.send(view);
    }

    /// Write the final record, retrying a store that hiccups: the record
    /// stays `running` (and is marked interrupted at the next start) only if
    /// the store is gone for good.
    async fn record(&self, exec: &Execution) {
        let mut delay = Duration::from_millis(50);
        for attempt in 0..12u32 {
            match self.store.update_execution(exec.clone()).await {
                Ok(true) => return,
                Ok(false) => {
                    // Already final: shutdown recorded it interrupted.
                    tracing::warn!(execution = %exec.id, "the execution was already final; its result was not recorded");
                    return;
                }
                Err(e) => {
                    tracing::warn!(execution = %exec.id, attempt, error = %e, "could not record an execution's result");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::error!(execution = %exec.id, "gave up recording an execution's result: it stays unfinished and is marked interrupted at this node's next start");
    }

    /// The platform's verdict on a call: status, error kind, the stored
    /// result, and the artifacts' bytes.
    fn judge(
        &self,
        mut r: HandlerResult,
        loaded: &Loaded,
    ) -> (ExecutionStatus, Option<String>, Value, Vec<Vec<u8>>) {
        // The bytes move out; the record keeps each artifact's name, size
        // and hash (`data` is not serialized).
        let artifacts: Vec<Vec<u8>> = r
            .artifacts
            .iter_mut()
            .map(|a| std::mem::take(&mut a.data))
            .collect();
        let mut value = serde_json::to_value(&r).unwrap_or(Value::Null);
        let (status, kind) = match r.status {
            CallStatus::Success => {
                let violations = loaded
                    .output
                    .validate(r.return_value.as_ref().unwrap_or(&Value::Null));
                if violations.is_empty() {
                    (ExecutionStatus::Success, None)
                } else {
                    let n = violations.len();
                    value["status"] = json!("error");
                    value["error"] = json!({
                        "type": "OutputSchemaViolation",
                        "message": format!("the return value does not match the plugin's output_schema ({n} violation{})", if n == 1 { "" } else { "s" }),
                        "violations": problems(violations),
                    });
                    (ExecutionStatus::Error, Some("output_schema_violation".to_owned()))
                }
            }
            CallStatus::Failed => (ExecutionStatus::Failed, Some("handler_error".to_owned())),
            CallStatus::Timeout => (ExecutionStatus::Timeout, Some("timeout".to_owned())),
            CallStatus::Error => (ExecutionStatus::Error, Some(r.jail_status.as_str().to_owned())),
        };
        (status, kind, value, artifacts)
    }

    /// Wait up to `grace` for in-flight executions; mark the rest
    /// interrupted. Returns how many were interrupted.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.closing.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.inflight.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.in_flight() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        let ids: Vec<String> = self
            .inflight
            .ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let mut n = 0;
        for id in ids {
            let written = self
                .finish_unfinished(
                    &id,
                    ExecutionStatus::Interrupted,
                    "interrupted",
                    "Interrupted",
                    "the server shut down before the execution finished",
                )
                .await;
            n += usize::from(written);
        }
        n
    }
}

fn platform_error(message: String) -> (ExecutionStatus, Option<String>, Value, Vec<Vec<u8>>) {
    let result = json!({
        "status": "error",
        "jail_status": "internal_error",
        "error": {"type": "PlatformError", "message": message},
    });
    (
        ExecutionStatus::Error,
        Some("internal".to_owned()),
        result,
        Vec::new(),
    )
}
