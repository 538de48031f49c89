//! Executions: from an app's request to a recorded result.
//!
//! 1. Resolve the installed version; verify its package hash (every call).
//!    The resolution is kept between requests with the plugin's generation
//!    (see [`warden_core::Generation`]); compiled schemas are kept per
//!    version and package.
//! 2. Check the event against `input_schema` (422 with every violation).
//! 3. Admit it or answer 429: at most `max_concurrent + max_queue` in flight
//!    on this node.
//! 4. **Record it** before anything runs: an accepted request always has
//!    its record. A sync call is recorded `running`; an async call is
//!    recorded `queued` together with its event and limits, in the store's
//!    durable queue. The record is written only while the plugin is still
//!    at the generation it was resolved at (the same statement checks it):
//!    otherwise nothing is recorded, and the request is resolved afresh and
//!    checked again, so an uninstall, a deactivation, a re-pin or a newly
//!    active version made through any node applies to the next request.
//! 5. Run it on a task of its own (a client that goes away does not cancel
//!    it), streaming output into the live event log. Sync calls wait for a
//!    running slot; async ones are started by the dispatcher, which claims
//!    them from the queue (this node's own first, then any node's).
//! 6. Check the return value against `output_schema`, store artifacts,
//!    write the final record, count it in the metrics.
//!
//! On shutdown, [`Executor::drain`] waits for in-flight executions and marks
//! whatever is still running after the grace period `interrupted`; accepted
//! async executions that have not started stay queued. After a crash, the
//! next start marks this node's started executions interrupted, and the
//! queue's executions start on whichever node claims them first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use serde_json::Value;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use warden_core::model::{new_id, now_ms};
use warden_core::{
    ArtifactRecord, Blobs, ErrorKind, Execution, ExecutionError, ExecutionMode, ExecutionResult,
    ExecutionSource, ExecutionStatus, Generation, QueuedCall, RefusedDestination, Registry, RegistryError,
    ResultMetrics, ResultStatus, ResultViolation, Store, Version, VersionStatus,
};
use warden_jail::Status as JailStatus;
use warden_package::schema::Schema;
use warden_package::{Manifest, PlatformLimits};
use warden_runtime::{
    CallLimits, CallStatus, ConnectionRecord, EgressVerdict, HandlerResult, Invocation, Runner, Stream,
};
use warden_store::{ObjectBlobs, SqlStore};

use crate::config::TiersSection;
use crate::error::{ApiError, DisplayChain, FieldError};
use crate::events::{Hub, Log};
use crate::runtime_state::{Audited, Cause, NodeStates, RETRY_AFTER, RuntimeState, RuntimeView, tier_of};
use crate::tiers::{Refusal, Target, Tiers};
use crate::views::{ExecuteQuery, ExecutionView, Mode};

type Reg = Registry<SqlStore, ObjectBlobs>;

/// How often an idle node looks for queued executions it was not told
/// about (other nodes', or left by a crash).
pub const QUEUE_POLL: Duration = Duration::from_secs(1);

/// Resolutions kept at most (all are dropped when full: they are one read
/// each to make again).
const MAX_RESOLUTIONS: usize = 10_000;

/// A version made ready to run: code unpacked, schemas compiled.
struct Loaded {
    sha256: String,
    input: Schema,
    output: Schema,
    /// An API plugin's tools' output schemas, by tool name (its events name
    /// the tool: see [`crate::api_call`]); empty for other plugins.
    tools: HashMap<String, Schema>,
}

impl Loaded {
    /// The schema a call's result is checked against: the tool's, for an
    /// API plugin's event naming one.
    fn output_for(&self, event: &[u8]) -> &Schema {
        if self.tools.is_empty() {
            return &self.output;
        }
        serde_json::from_slice::<Value>(event)
            .ok()
            .and_then(|e| crate::api_call::tool_of(&e).and_then(|t| self.tools.get(t)))
            .unwrap_or(&self.output)
    }
}

/// Counts executions in flight and remembers their ids (for shutdown).
#[derive(Default)]
struct Inflight {
    count: AtomicUsize,
    ids: Mutex<HashSet<String>>,
    idle: Notify,
}

/// A slot in the node's execution budget, released on drop.
pub(crate) struct Permit {
    inflight: Arc<Inflight>,
    id: Option<String>,
}

impl Permit {
    pub(crate) fn track(&mut self, id: &str) {
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
    /// Where calls run: built-in, wasm or jail.
    tiers: Arc<Tiers>,
    /// Each version's runtime lifecycle on this node.
    states: NodeStates,
    node: String,
    capacity: usize,
    retry_after: u64,
    platform: PlatformLimits,
    /// Opens the app's credentials a version declares, for its calls.
    keyring: Arc<warden_core::credential::Keyring>,
    inflight: Arc<Inflight>,
    /// Executions actually running; the rest wait here, without a thread.
    slots: Arc<Semaphore>,
    /// This node's async executions, recorded in the queue and prepared,
    /// in the order they were accepted.
    pending: Mutex<VecDeque<Job>>,
    /// Wakes the dispatcher: an async execution was accepted.
    wake: Notify,
    /// Written while the dispatcher claims, read while an async execution
    /// is recorded and added to `pending`: so "the next one from the queue"
    /// is never one of this node's own that `pending` has yet to receive.
    /// True once claims stopped for good (shutdown), so nothing starts after
    /// the drain's last look.
    gate: tokio::sync::RwLock<bool>,
    /// Set when shutdown begins: no more admissions.
    closing: std::sync::atomic::AtomicBool,
    loaded: Mutex<HashMap<String, Arc<Loaded>>>,
    /// (app, plugin) → the version its calls run and the plugin's
    /// generation it was read at; checked by the statement that records
    /// each execution, so a change made through any node takes effect for
    /// the next request.
    resolved: Mutex<HashMap<(String, String), Arc<Resolution>>>,
    /// Live event logs (shared with the session manager: one SSE engine).
    pub hub: Arc<Hub>,
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
    target: Target,
    inv: Invocation,
    loaded: Arc<Loaded>,
    log: Arc<Log>,
    permit: Permit,
    done: tokio::sync::oneshot::Sender<ExecutionView>,
}

/// What an app's call of a plugin runs, and the plugin's generation it was
/// read at.
struct Resolution {
    version: Version,
    generation: Generation,
}

/// How one try at accepting an execution ended.
enum Attempt {
    /// Recorded and started.
    Accepted(Box<Accepted>),
    /// Nothing recorded: the plugin's generation moved since it was resolved.
    Stale,
    /// Refused by the resolved version's checks (input schema, limits, tier),
    /// before anything was admitted or recorded.
    Refused(ApiError),
}

/// Why a claimed execution cannot run, for its error record.
struct Unavailable(String);

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
        tiers: TiersSection,
        network_allow_cidrs: Vec<String>,
        keyring: Arc<warden_core::credential::Keyring>,
    ) -> Executor {
        Executor {
            keyring,
            tiers: Arc::new(Tiers::new(tiers, network_allow_cidrs)),
            states: NodeStates::new(node.clone()),
            registry,
            store,
            blobs,
            runner,
            node,
            capacity,
            retry_after,
            platform,
            inflight: Arc::default(),
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
            pending: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            gate: tokio::sync::RwLock::new(false),
            closing: std::sync::atomic::AtomicBool::new(false),
            loaded: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
            hub: Arc::default(),
        }
    }

    /// Record every built-in plugin of this build (an Active version at
    /// trust level `builtin`); returns their codes.
    pub async fn register_builtins(&self) -> Result<Vec<String>, warden_core::RegistryError> {
        let mut codes = Vec::new();
        for m in self.tiers.builtin_manifests() {
            let v = self.registry.register_builtin(&m).await?;
            codes.push(format!("{} {}", v.plugin, v.version));
        }
        Ok(codes)
    }

    /// Most executions in flight on this node (running and waiting).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Executions in flight on this node.
    pub fn in_flight(&self) -> usize {
        self.inflight.count.load(Ordering::Acquire)
    }

    /// Start the dispatcher, which starts async executions from the durable
    /// queue as running slots free up. Call once, after creating.
    pub fn start_dispatcher(self: &Arc<Self>) {
        tokio::spawn(self.clone().dispatch());
    }

    /// A slot in the in-flight count for an execution this node took from
    /// the queue: it was admitted where it was accepted, so it is not
    /// refused here, but shutdown waits for it like for any other.
    fn adopt(&self, id: &str) -> Permit {
        self.inflight.count.fetch_add(1, Ordering::AcqRel);
        let mut permit = Permit {
            inflight: self.inflight.clone(),
            id: None,
        };
        permit.track(id);
        permit
    }

    pub(crate) fn admit(&self) -> Result<Permit, ApiError> {
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

    /// Wait for a running slot (shared by plugin executions and one-shot
    /// runs); `None` once the executor has shut down.
    pub(crate) async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    /// The node's name, recorded with the executions it runs.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// `v`'s runtime state on this node, as the API shows it.
    pub(crate) fn runtime(&self, v: &Version) -> RuntimeView {
        self.states.view(v)
    }

    /// Verify and unpack `v`, compile its schemas once per package. A
    /// version failed on this node is refused (503) until a retry is due;
    /// each step moves its runtime state (see [`crate::runtime_state`]).
    async fn load(&self, v: &Version) -> Result<(PathBuf, String, Manifest, Arc<Loaded>), ApiError> {
        self.states.gate(v)?;
        let tier = tier_of(
            v.manifest
                .get("runtime")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        let steady = self.states.is_active(v);
        if !steady {
            self.states.set(v, tier, RuntimeState::Loading, None);
        }
        let started = Instant::now();
        let (dir, entrypoint, manifest) = match self.registry.load_for_run(v).await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(plugin = %v.plugin, version = %v.version, trust_level = %v.trust_level,
                    lifecycle_state = "failed", error = %e, "a plugin version failed to load");
                let cause = Cause::of(&e);
                let detail = match &e {
                    // Storage errors may carry the store's internals: the
                    // log has them, the reason says what failed.
                    RegistryError::Store(_) => {
                        "its package or its record could not be read from storage".to_owned()
                    }
                    RegistryError::Io { .. } => "its package could not be unpacked on this node".to_owned(),
                    other => other.to_string(),
                };
                let excluded = self.fail(v, tier, cause, detail).await;
                return Err(match e {
                    // As before: the detecting call names the integrity
                    // failure; the record is failed for every node.
                    e @ RegistryError::Tampered { .. } => e.into(),
                    _ => excluded,
                });
            }
        };
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
                if !steady {
                    self.states.set(v, tier, RuntimeState::Initializing, None);
                }
                let compile = |s: &Value, which: &str| {
                    warden_package::schema::compile(s)
                        .map_err(|e| format!("the stored {which} does not compile: {e}"))
                };
                let api = warden_core::registry::api_of(v)?;
                let schemas = match &api {
                    // An API plugin's event names a tool and carries its input.
                    Some(spec) => compile(&crate::api_call::input_schema(spec), "API tools' input_schema")
                        .and_then(|input| {
                            let tools = spec
                                .tools
                                .iter()
                                .map(|t| {
                                    compile(&t.output_schema, &format!("output_schema of tool `{}`", t.name))
                                        .map(|s| (t.name.clone(), s))
                                })
                                .collect::<Result<HashMap<_, _>, _>>()?;
                            Ok((
                                input,
                                compile(&Value::Object(Default::default()), "output_schema")?,
                                tools,
                            ))
                        }),
                    None => compile(&manifest.input_schema, "input_schema").and_then(|input| {
                        Ok((
                            input,
                            compile(&manifest.output_schema, "output_schema")?,
                            HashMap::new(),
                        ))
                    }),
                };
                let (input, output, tools) = match schemas {
                    Ok(s) => s,
                    Err(why) => return Err(self.fail(v, tier, Cause::SchemaCompile, why).await),
                };
                let l = Arc::new(Loaded {
                    sha256: v.package_sha256.clone(),
                    input,
                    output,
                    tools,
                });
                self.loaded
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(v.id.clone(), l.clone());
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                metrics::histogram!("warden_plugin_load_duration_ms", "trust_level" => v.trust_level.as_str())
                    .record(ms);
                tracing::info!(plugin = %v.plugin, version = %v.version, trust_level = %v.trust_level,
                    lifecycle_state = "initializing", load_ms = ms, "a plugin version's package is loaded on this node");
                l
            }
        };
        Ok((dir, entrypoint, manifest, loaded))
    }

    /// Where `v` runs (see [`Tiers::target`]); a module that does not
    /// compile fails the version on this node. Marks it active once ready.
    #[allow(clippy::too_many_arguments)] // Tiers::target's, passed on
    async fn target(
        &self,
        app: &str,
        v: &Version,
        dir: &Path,
        entrypoint: &str,
        manifest: &Manifest,
        credentials: Vec<warden_runtime::EgressCredential>,
        fingerprint: &str,
    ) -> Result<Target, ApiError> {
        let tier = tier_of(&manifest.runtime);
        match self
            .tiers
            .target(app, v, dir, entrypoint, manifest, credentials, fingerprint)
        {
            Ok(t) => {
                if let Target::Jail(code) = &t
                    && let Some(why) = self.runner.warm_load_failure(&code.key)
                {
                    // Its code failed to load in a warm box: every call
                    // would fail the same way, cold. Excluded until a retry.
                    tracing::warn!(plugin = %v.plugin, version = %v.version, trust_level = %v.trust_level,
                        lifecycle_state = "failed", reason = %why, "a plugin version's warm boxes do not start");
                    return Err(self.fail(v, tier, Cause::WarmStart, why).await);
                }
                if let Some(Audited::FirstActive) = self.states.set(v, tier, RuntimeState::Active, None) {
                    self.audit_runtime(v, tier, RuntimeState::Active, None).await;
                }
                Ok(t)
            }
            Err(Refusal::Policy(e)) => Err(e),
            Err(Refusal::WasmCompile(why)) => Err(self.fail(v, tier, Cause::WasmCompile, why).await),
        }
    }

    /// Mark `v` failed on this node for `cause` (audited when new, as
    /// `runtime_failed`; a hash mismatch as the record's `fail`); the
    /// problem its calls get until a retry.
    async fn fail(&self, v: &Version, tier: &'static str, cause: Cause, detail: String) -> ApiError {
        if let Some(Audited::Failed(reason)) =
            self.states
                .set(v, tier, RuntimeState::Failed, Some((cause, detail.clone())))
        {
            // A hash mismatch already wrote the record's own `fail` event
            // (with the node's finding as its reason): not twice.
            if cause != Cause::HashMismatch {
                self.audit_runtime(v, tier, RuntimeState::Failed, Some(reason))
                    .await;
            }
        }
        self.states.gate(v).err().unwrap_or_else(|| {
            ApiError::version_failed(
                format!(
                    "{} {} failed on this node: {}: {detail}",
                    v.plugin,
                    v.version,
                    cause.as_str()
                ),
                RETRY_AFTER.as_secs(),
            )
        })
    }

    /// One audit event for a runtime move of `v` on this node (its first
    /// `active`, or a new `failed`). A store that fails is logged.
    async fn audit_runtime(&self, v: &Version, tier: &str, state: RuntimeState, reason: Option<String>) {
        let audit = warden_core::store::NewAudit {
            actor: "system".into(),
            action: format!("runtime_{}", state.as_str()),
            plugin: Some(v.plugin.clone()),
            version: Some(v.version.clone()),
            from_status: None,
            to_status: Some(state.as_str().to_owned()),
            reason,
            detail: serde_json::json!({
                "node": self.node, "tier": tier, "trust_level": v.trust_level.as_str(),
                "package_sha256": v.package_sha256,
            }),
        };
        if let Err(e) = self.store.append_audit(audit).await {
            tracing::warn!(plugin = %v.plugin, version = %v.version, error = %e, "could not audit a runtime state");
        }
    }

    /// The credentials `m` declares (the installation's, else the app's),
    /// opened for the call's proxy, and
    /// their fingerprint (see [`crate::credentials::for_call`]); none when
    /// the version declares no hosts to send them to.
    async fn call_credentials(
        &self,
        app: &str,
        m: &Manifest,
    ) -> Result<(Vec<warden_runtime::EgressCredential>, String), ApiError> {
        if m.permissions.credentials.is_empty() || m.permissions.network.is_empty() {
            return Ok((Vec::new(), String::new()));
        }
        let (opened, print) = crate::credentials::for_call(
            &self.store,
            &self.keyring,
            app,
            &m.code,
            &m.permissions.credentials,
        )
        .await?;
        Ok((opened.into_iter().map(|(c, _)| c).collect(), print))
    }

    /// `target` with its egress policy when it is a built-in that makes
    /// requests: the credential `event` names (the app's installation of
    /// the built-in's, else the app's), opened from the store
    /// (another app's, or one not stored, is simply absent: the call is
    /// refused naming it), or nothing (see [`Tiers::builtin_policy`]).
    async fn builtin_egress(&self, app: &str, target: Target, event: &Value) -> Result<Target, ApiError> {
        if let Target::Api(p, None) = &target {
            return self.api_call(app, p.clone(), event).await;
        }
        let Target::Builtin(b, _) = &target else {
            return Ok(target);
        };
        if !b.network() {
            return Ok(target);
        }
        let credential = match b.credential(event) {
            Some(name) => crate::credentials::for_call(
                &self.store,
                &self.keyring,
                app,
                b.spec().code,
                &[name.to_owned()],
            )
            .await?
            .0
            .pop()
            .map(|(c, _)| c),
            None => None,
        };
        let policy = self.tiers.builtin_policy(credential);
        Ok(Target::Builtin(b.clone(), Some(Arc::new(policy))))
    }

    /// An API plugin's call of the tool `event` names, prepared: the
    /// credential named after the operation's security scheme (the
    /// installation's, else the app's), opened from the store, and the
    /// policy allowing exactly the document's hosts. A credential that is
    /// not stored makes the call fail naming it (see [`crate::api_call`]).
    async fn api_call(
        &self,
        app: &str,
        p: Arc<crate::tiers::ApiPlugin>,
        event: &Value,
    ) -> Result<Target, ApiError> {
        let name = crate::api_call::tool_of(event).unwrap_or_default();
        let Some(tool) = p.spec.tools.iter().find(|t| t.name == name) else {
            return Err(ApiError::bad_field(
                "/tool",
                format!("`{name}` is not one of {}'s tools", p.plugin),
            ));
        };
        let names = crate::api_call::scheme_names(tool);
        let mut opened = if names.is_empty() {
            Vec::new()
        } else {
            crate::credentials::for_call(&self.store, &self.keyring, app, &p.plugin, &names)
                .await?
                .0
        };
        let stored: Vec<(&str, &warden_core::credential::CredentialKind)> =
            opened.iter().map(|(c, kind)| (c.name(), kind)).collect();
        let (credential, missing) = match crate::api_call::choose(tool, &stored) {
            Ok(c) => (c, None),
            Err(why) => (None, Some(why)),
        };
        let chosen = credential
            .as_deref()
            .and_then(|n| opened.iter().position(|(c, _)| c.name() == n))
            .map(|i| opened.swap_remove(i).0);
        let policy = self.tiers.api_policy(&p.spec, chosen).map_err(|why| {
            ApiError::conflict_of(
                "version-unavailable",
                "The version cannot run",
                format!("{} cannot run: {why}", p.plugin),
            )
        })?;
        let call = crate::api_call::Call {
            tool: tool.clone(),
            server: p.spec.servers.first().cloned().unwrap_or_default(),
            credential,
            missing,
        };
        Ok(Target::Api(p, Some((Arc::new(call), Arc::new(policy)))))
    }

    /// One audit event per request a call's proxy sent with a credential
    /// (never the secret). A store that fails is logged: the call's own
    /// record is written regardless.
    async fn audit_credential_uses(&self, exec: &Execution, records: &[ConnectionRecord]) {
        let (plugin, version) = exec.source.plugin().unwrap_or_default();
        for r in records.iter().filter(|r| r.allowed()) {
            let Some(credential) = &r.credential else { continue };
            let audit = warden_core::store::NewAudit {
                actor: exec.app.clone(),
                action: "credential_use".into(),
                plugin: Some(plugin.to_owned()),
                version: Some(version.to_owned()),
                from_status: None,
                to_status: None,
                reason: None,
                detail: serde_json::json!({
                    "app": exec.app, "credential": credential, "execution": exec.id,
                    "method": r.method, "host": r.host, "port": r.port,
                }),
            };
            if let Err(e) = self.store.append_audit(audit).await {
                tracing::warn!(execution = %exec.id, credential = %credential, error = %e, "could not audit a credential's use");
            }
        }
    }

    /// The call's wall-clock (ms) and memory (MiB) limits: the version's,
    /// or lower ones asked for in the query.
    fn limits(&self, m: &Manifest, q: &ExecuteQuery) -> Result<(u64, u64), ApiError> {
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
        Ok((timeout_ms, memory_mb))
    }

    fn call_limits(&self, m: &Manifest, timeout_ms: u64, memory_mb: u64) -> CallLimits {
        let timeout = Duration::from_millis(timeout_ms);
        CallLimits {
            timeout,
            cpu_time: timeout.max(Duration::from_secs(1)),
            memory_bytes: memory_mb << 20,
            pids: m.pids(&self.platform),
            ..CallLimits::default()
        }
    }

    /// The invocation of `event` under `limits`, its output streamed to `log`.
    fn invocation(event: Vec<u8>, limits: CallLimits, log: &Arc<Log>) -> Invocation {
        let tap_log = log.clone();
        let mut inv = Invocation::new(event, limits);
        inv.tap = Some(Arc::new(move |stream, data| {
            tap_log.output(stream == Stream::Stderr, data)
        }));
        inv
    }

    /// Accept an execution of `plugin` for `app` with the event `body`.
    pub async fn accept(
        self: &Arc<Self>,
        app: &str,
        plugin: &str,
        body: &[u8],
        q: &ExecuteQuery,
    ) -> Result<Accepted, ApiError> {
        let mode = match q.mode {
            Some(Mode::Async) => ExecutionMode::Async,
            None | Some(Mode::Sync) => ExecutionMode::Sync,
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_field(
                "body",
                "the body must be the event as JSON (send {} for an empty event)",
            ));
        }
        let event: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_field("body", format!("the event is not valid JSON: {e}")))?;
        // Checked as the handler will read it: an integer beyond 64 bits
        // would be checked rounded and received exact.
        if let Some(w) = warden_core::event::wide_integer(body) {
            let at = if w.pointer.is_empty() {
                "/".to_owned()
            } else {
                w.pointer
            };
            return Err(ApiError::bad_field(
                &at,
                format!(
                    "the integer {} does not fit in 64 bits, so the schema check and the handler would see different numbers; send it as a string",
                    w.literal
                ),
            ));
        }
        let mut fresh = false;
        let mut tries = 0;
        loop {
            tries += 1;
            let (resolved, cached) = self.resolution(app, plugin, fresh).await?;
            match self
                .try_accept(app, plugin, body, &event, q, mode, &resolved)
                .await
            {
                Ok(Attempt::Accepted(accepted)) => return Ok(*accepted),
                // The plugin's generation moved since it was resolved: what
                // was checked may no longer be what the app's call runs.
                Ok(Attempt::Stale) => self.forget_resolution(app, plugin),
                // A refusal by a kept resolution stands only if it is still
                // the current one (a re-pin may bring another input schema).
                Ok(Attempt::Refused(e)) if cached => {
                    let (now, _) = self.resolution(app, plugin, true).await?;
                    if now.generation == resolved.generation {
                        return Err(e);
                    }
                }
                Ok(Attempt::Refused(e)) | Err(e) => return Err(e),
            }
            if tries == 3 {
                return Err(ApiError::unavailable(format!(
                    "{plugin}'s installation or versions kept changing while the call was accepted; retry"
                )));
            }
            fresh = true;
        }
    }

    /// What `app`'s call of `plugin` runs: kept from an earlier request
    /// unless `fresh` (true when it was kept).
    async fn resolution(
        &self,
        app: &str,
        plugin: &str,
        fresh: bool,
    ) -> Result<(Arc<Resolution>, bool), ApiError> {
        let key = (app.to_owned(), plugin.to_owned());
        let kept = if fresh {
            None
        } else {
            self.resolved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned()
        };
        if let Some(r) = kept {
            return Ok((r, true));
        }
        let (version, generation) = self.registry.resolve_at(app, plugin).await?;
        let r = Arc::new(Resolution { version, generation });
        let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        if resolved.len() >= MAX_RESOLUTIONS {
            resolved.clear();
        }
        resolved.insert(key, r.clone());
        Ok((r, false))
    }

    fn forget_resolution(&self, app: &str, plugin: &str) {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(app.to_owned(), plugin.to_owned()));
    }

    /// Check, admit and record an execution of `version`, then start it.
    #[allow(clippy::too_many_arguments)]
    async fn try_accept(
        self: &Arc<Self>,
        app: &str,
        plugin: &str,
        body: &[u8],
        event: &Value,
        q: &ExecuteQuery,
        mode: ExecutionMode,
        resolved: &Resolution,
    ) -> Result<Attempt, ApiError> {
        let (version, generation) = (&resolved.version, resolved.generation.clone());
        let is_async = mode == ExecutionMode::Async;
        // Failed on this node: refused, unless the version changed since
        // this resolution was kept (then the caller resolves afresh).
        if let Err(e) = self.states.gate(version) {
            return Ok(Attempt::Refused(e));
        }
        let (dir, entrypoint, manifest, loaded) = self.load(version).await?;
        let violations = loaded.input.validate(event);
        if !violations.is_empty() {
            return Ok(Attempt::Refused(ApiError::invalid(
                "input-schema",
                "The event does not match the plugin's input_schema",
                problems(violations),
            )));
        }
        let (timeout_ms, memory_mb) = match self.limits(&manifest, q) {
            Ok(l) => l,
            Err(e) => return Ok(Attempt::Refused(e)),
        };
        let (credentials, fingerprint) = self.call_credentials(app, &manifest).await?;
        let target = match self
            .target(
                app,
                version,
                &dir,
                &entrypoint,
                &manifest,
                credentials,
                &fingerprint,
            )
            .await
        {
            Ok(t) => t,
            Err(e) => return Ok(Attempt::Refused(e)),
        };
        let target = self.builtin_egress(app, target, event).await?;
        let limits = self.call_limits(&manifest, timeout_ms, memory_mb);
        let mut permit = self.admit()?;
        let now = now_ms();
        let exec = Execution {
            id: new_id("exe"),
            app: app.to_owned(),
            source: ExecutionSource::Plugin {
                plugin: plugin.to_owned(),
                version: version.version.clone(),
            },
            status: if is_async {
                ExecutionStatus::Queued
            } else {
                ExecutionStatus::Running
            },
            mode,
            node: self.node.clone(),
            error_kind: None,
            result: None,
            created_at: now,
            started_at: (!is_async).then_some(now),
            finished_at: None,
            duration_ms: None,
            egress_refused: Vec::new(),
        };
        permit.track(&exec.id);
        // What any node needs to start it, should this one not.
        let queued = is_async
            .then(|| {
                let event = std::str::from_utf8(body)
                    .map_err(|_| ApiError::bad_field("body", "the event is not UTF-8"))?;
                Ok::<_, ApiError>(QueuedCall {
                    event: event.to_owned(),
                    package_sha256: version.package_sha256.clone(),
                    timeout_ms,
                    memory_mb,
                })
            })
            .transpose()?;
        let id = exec.id.clone();
        let log = self.hub.open(&id);
        let inv = Self::invocation(body.to_vec(), limits, &log);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (recorded_tx, recorded_rx) = tokio::sync::oneshot::channel();
        let view = ExecutionView::from(exec.clone());
        let job = Job {
            exec,
            target,
            inv,
            loaded,
            log,
            permit,
            done: tx,
        };
        // From here on the work belongs to its own task: a client that goes
        // away cannot leave a record without an execution behind it.
        let me = self.clone();
        tokio::spawn(async move {
            if let Some(call) = queued {
                let _gate = me.gate.read().await;
                let recorded = me
                    .store
                    .enqueue_execution_at(job.exec.clone(), call, &generation)
                    .await;
                let ok = matches!(recorded, Ok(true));
                let _ = recorded_tx.send(recorded);
                if ok {
                    job.log.status(job.exec.status.as_str());
                    me.pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_back(job);
                    me.wake.notify_one();
                }
                return;
            }
            // The record and the check that the resolution still holds are
            // one statement: one round trip before the call.
            let recorded = me.store.insert_execution_at(job.exec.clone(), &generation).await;
            let ok = matches!(recorded, Ok(true));
            let _ = recorded_tx.send(recorded);
            if !ok {
                return;
            }
            job.log.status(job.exec.status.as_str());
            // Wait for a running slot without holding a thread.
            let Ok(slot) = me.slots.clone().acquire_owned().await else {
                return;
            };
            me.run_guarded(job, slot).await;
        });
        let recorded = recorded_rx
            .await
            .map_err(|_| ApiError::internal(&"the execution's task ended before recording it"))??;
        if !recorded {
            self.hub.forget(&id);
            return Ok(Attempt::Stale);
        }
        Ok(Attempt::Accepted(Box::new(Accepted {
            view,
            done: rx,
            is_async,
        })))
    }

    /// Make a running execution final with an error (best effort); true
    /// when this wrote it. The update is conditional: an execution that
    /// finished meanwhile keeps its result, and a queued one stays in the
    /// queue.
    async fn finish_unfinished(
        &self,
        id: &str,
        status: ExecutionStatus,
        kind: ErrorKind,
        error_type: &str,
        message: &str,
    ) -> bool {
        let Ok(Some(mut e)) = self.store.get_execution(id).await else {
            return false;
        };
        if e.status != ExecutionStatus::Running {
            return false;
        }
        e.status = status;
        e.error_kind = Some(kind);
        e.result = Some(ExecutionResult::platform_error(error_type, message, None));
        e.finished_at = Some(now_ms());
        matches!(self.store.update_execution(e).await, Ok(true))
    }

    /// Start async executions from the durable queue whenever a running
    /// slot is free: this node's own first (prepared at acceptance), then
    /// the oldest of any node's. Each start is a claim in the store, so an
    /// execution another node took meanwhile is not started twice.
    async fn dispatch(self: Arc<Self>) {
        loop {
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                return;
            };
            let gate = self.gate.write().await;
            if *gate {
                return;
            }
            let job = self.pending.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
            if let Some(mut job) = job {
                let at = now_ms();
                match self.store.claim_execution(&job.exec.id, &self.node, at).await {
                    Ok(true) => {
                        job.exec.status = ExecutionStatus::Running;
                        job.exec.started_at = Some(at);
                        job.log.status("running");
                        tokio::spawn(self.clone().run_guarded(job, slot));
                    }
                    Ok(false) => {
                        // Another node started it (or it ended): its record
                        // says how; clients streaming here read that record.
                        self.hub.forget(&job.exec.id);
                    }
                    Err(e) => {
                        tracing::warn!(execution = %job.exec.id, error = %e, "could not start a queued execution; retrying");
                        self.pending
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push_front(job);
                        drop((gate, slot));
                        tokio::time::sleep(QUEUE_POLL).await;
                    }
                }
                continue;
            }
            // While shutting down, only what this node accepted starts.
            let claimed = if self.closing.load(Ordering::Acquire) {
                Ok(None)
            } else {
                self.store.claim_next_execution(&self.node, now_ms()).await
            };
            drop(gate);
            match claimed {
                Ok(Some((exec, call))) => {
                    tokio::spawn(self.clone().start_claimed(exec, call, slot));
                }
                Ok(None) => {
                    drop(slot);
                    let _ = tokio::time::timeout(QUEUE_POLL, self.wake.notified()).await;
                }
                Err(e) => {
                    drop(slot);
                    tracing::warn!(error = %e, "could not look for queued executions");
                    tokio::time::sleep(QUEUE_POLL).await;
                }
            }
        }
    }

    /// Run an execution this node claimed from the queue without having
    /// accepted it (another node's, or one left by a crash): with the
    /// version it was accepted for, or, when that can no longer run, to an
    /// error record saying why.
    async fn start_claimed(self: Arc<Self>, exec: Execution, call: QueuedCall, slot: OwnedSemaphorePermit) {
        let permit = self.adopt(&exec.id);
        let log = self.hub.open(&exec.id);
        log.status("running");
        let (done, _) = tokio::sync::oneshot::channel();
        match self.prepare(&exec, &call).await {
            Ok((target, loaded, limits)) => {
                let inv = Self::invocation(call.event.into_bytes(), limits, &log);
                let job = Job {
                    exec,
                    target,
                    inv,
                    loaded,
                    log,
                    permit,
                    done,
                };
                self.run_guarded(job, slot).await;
            }
            Err(Unavailable(message)) => {
                tracing::warn!(execution = %exec.id, %message, "a queued execution cannot run");
                let mut exec = exec;
                exec.status = ExecutionStatus::Error;
                exec.error_kind = Some(ErrorKind::VersionUnavailable);
                exec.result = Some(ExecutionResult::platform_error(
                    "VersionUnavailable",
                    message,
                    None,
                ));
                exec.finished_at = Some(now_ms());
                exec.duration_ms = Some(0.0);
                self.conclude(exec, &log, permit, done).await;
            }
        }
    }

    /// The code, schemas and limits a claimed execution was accepted with.
    async fn prepare(
        &self,
        exec: &Execution,
        call: &QueuedCall,
    ) -> Result<(Target, Arc<Loaded>, CallLimits), Unavailable> {
        // Only plugins' executions wait in the shared queue (a session's
        // can run only on the node holding its box).
        let Some((plugin, version)) = exec.source.plugin() else {
            return Err(Unavailable(
                "a session's execution cannot be started from the shared queue".into(),
            ));
        };
        let v = match self.store.get_version(plugin, version).await {
            Ok(Some(v)) => v,
            Ok(None) => {
                return Err(Unavailable(format!(
                    "{plugin} {version} no longer exists (deleted after the execution was accepted)"
                )));
            }
            Err(e) => {
                tracing::error!(execution = %exec.id, error = %e, "could not read a queued execution's version");
                return Err(Unavailable(format!(
                    "{plugin} {version} could not be read from the store when the execution started"
                )));
            }
        };
        if v.package_sha256 != call.package_sha256 {
            return Err(Unavailable(format!(
                "the package of {plugin} {version} changed after the execution was accepted (accepted {}, now {})",
                call.package_sha256, v.package_sha256
            )));
        }
        if v.status == VersionStatus::Failed {
            return Err(Unavailable(format!(
                "{plugin} {version} failed its integrity check: {}",
                v.status_reason
                    .as_deref()
                    .unwrap_or("its package does not match its hash")
            )));
        }
        let (dir, entrypoint, manifest, loaded) = self.load(&v).await.map_err(|e| {
            Unavailable(format!(
                "{plugin} {version} cannot be loaded: {}",
                e.problem().detail
            ))
        })?;
        let limits = self.call_limits(&manifest, call.timeout_ms, call.memory_mb);
        let (credentials, fingerprint) = self.call_credentials(&exec.app, &manifest).await.map_err(|e| {
            Unavailable(format!(
                "{plugin} {version}'s credentials cannot be read: {}",
                e.problem().detail
            ))
        })?;
        let target = self
            .target(
                &exec.app,
                &v,
                &dir,
                &entrypoint,
                &manifest,
                credentials,
                &fingerprint,
            )
            .await
            .map_err(|e| Unavailable(e.problem().detail))?;
        let target = match &target {
            Target::Builtin(b, _) if !b.network() => target,
            Target::Builtin(..) | Target::Api(..) => {
                let event: Value = serde_json::from_str(&call.event).unwrap_or(Value::Null);
                self.builtin_egress(&exec.app, target, &event)
                    .await
                    .map_err(|e| {
                        Unavailable(format!(
                            "{plugin} {version}'s credential cannot be read: {}",
                            e.problem().detail
                        ))
                    })?
            }
            _ => target,
        };
        Ok((target, loaded, limits))
    }

    /// Run `job` in `slot`; should the platform panic, the execution still
    /// ends with a record.
    async fn run_guarded(self: Arc<Self>, job: Job, slot: OwnedSemaphorePermit) {
        let id = job.exec.id.clone();
        let worker = self.clone();
        if let Err(panic) = std::panic::AssertUnwindSafe(worker.run(job, slot))
            .catch_unwind()
            .await
        {
            tracing::error!(execution = %id, panic = ?panic.downcast_ref::<&str>(), "an execution's task panicked");
            self.finish_unfinished(
                &id,
                ExecutionStatus::Error,
                ErrorKind::Internal,
                "PlatformError",
                "the platform failed while running the call",
            )
            .await;
        }
    }

    async fn run(self: Arc<Self>, job: Job, slot: OwnedSemaphorePermit) {
        let Job {
            mut exec,
            target,
            inv,
            loaded,
            log,
            permit,
            done,
        } = job;
        let started = Instant::now();
        // The call blocks this task's thread for its duration; tokio moves
        // the thread's other tasks elsewhere meanwhile. Cheaper than a hop
        // to the blocking pool and back, and a panic stays contained.
        let (runner, tiers) = (self.runner.clone(), self.tiers.clone());
        // An API plugin's result is checked against its tool's schema.
        let event = if loaded.tools.is_empty() {
            Vec::new()
        } else {
            inv.event.clone()
        };
        let call = move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tiers.invoke(&runner, &target, &inv)
            }))
        };
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
            Ok(Ok(mut r)) => {
                let records = std::mem::take(&mut r.egress);
                self.audit_credential_uses(&exec, &records).await;
                exec.egress_refused = refused_destinations(records);
                self.judge(r, loaded.output_for(&event))
            }
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
        store_artifacts(&self.blobs, &exec.id, artifacts, &mut result).await;
        let duration_ms = result
            .metrics
            .as_ref()
            .map(|m| m.duration_ms)
            .filter(|d| *d > 0.0)
            .unwrap_or(wall_ms);
        exec.status = status;
        exec.error_kind = kind;
        exec.result = Some(result);
        exec.finished_at = Some(now_ms());
        exec.duration_ms = Some(duration_ms);
        drop(slot);
        self.conclude(exec, &log, permit, done).await;
    }

    /// The end of every execution this node ran: the final record, the
    /// metrics, the event log's result, the waiting request's answer.
    async fn conclude(
        &self,
        exec: Execution,
        log: &Log,
        permit: Permit,
        done: tokio::sync::oneshot::Sender<ExecutionView>,
    ) {
        self.record(&exec).await;
        let plugin = exec.source.plugin().map_or("", |(p, _)| p).to_owned();
        let status = exec.status;
        metrics::counter!("warden_executions_total", "plugin" => plugin.clone(), "status" => status.as_str())
            .increment(1);
        metrics::histogram!("warden_execution_duration_seconds", "plugin" => plugin.clone())
            .record(exec.duration_ms.unwrap_or(0.0) / 1000.0);
        if !exec.egress_refused.is_empty() {
            metrics::counter!("warden_egress_refused_total", "plugin" => plugin.clone())
                .increment(exec.egress_refused.len() as u64);
        }
        if status != ExecutionStatus::Success {
            let reason = exec
                .error_kind
                .map_or(status.as_str(), ErrorKind::as_str)
                .to_owned();
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
        record_final(&self.store, exec).await;
    }

    /// The platform's verdict on a call: status, error kind, the stored
    /// result, and the artifacts' bytes.
    fn judge(&self, r: HandlerResult, output: &Schema) -> Verdict {
        let call_status = r.status;
        let jail_status = r.jail_status;
        let (mut result, artifacts) = recorded(r);
        let (status, kind) = match call_status {
            CallStatus::Success => {
                let violations = output.validate(result.return_value.as_ref().unwrap_or(&Value::Null));
                if violations.is_empty() {
                    (ExecutionStatus::Success, None)
                } else {
                    let n = violations.len();
                    result.status = ResultStatus::Error;
                    result.error = Some(ExecutionError {
                        violations: violations
                            .into_iter()
                            .map(|p| ResultViolation {
                                location: p.location,
                                message: p.message,
                            })
                            .collect(),
                        ..ExecutionError::new(
                            "OutputSchemaViolation",
                            format!(
                                "the return value does not match the plugin's output_schema ({n} violation{})",
                                if n == 1 { "" } else { "s" }
                            ),
                        )
                    });
                    (ExecutionStatus::Error, Some(ErrorKind::OutputSchemaViolation))
                }
            }
            other => status_of(other, jail_status),
        };
        (status, kind, result, artifacts)
    }

    /// Wait up to `grace` for in-flight executions; mark those still
    /// running interrupted. Accepted async executions that have not started
    /// stay queued, for the next start (or another node). Returns how many
    /// were interrupted.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.closing.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.inflight.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.in_flight() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        // Nothing starts after this: what runs now is all there is to mark.
        *self.gate.write().await = true;
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
                    ErrorKind::Interrupted,
                    "Interrupted",
                    "the server shut down before the execution finished",
                )
                .await;
            n += usize::from(written);
        }
        n
    }
}

/// Write an execution's final record, retrying a store that hiccups: the
/// record stays unfinished (and is marked interrupted at the node's next
/// start) only if the store is gone for good. False when it was final
/// already (shutdown recorded it interrupted, or a cancel got there first).
pub(crate) async fn record_final(store: &SqlStore, exec: &Execution) -> bool {
    let mut delay = Duration::from_millis(50);
    for attempt in 0..12u32 {
        match store.update_execution(exec.clone()).await {
            Ok(true) => return true,
            Ok(false) => {
                tracing::warn!(execution = %exec.id, "the execution was already final; its result was not recorded");
                return false;
            }
            Err(e) => {
                tracing::warn!(execution = %exec.id, attempt, error = %e, "could not record an execution's result");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::error!(execution = %exec.id, "gave up recording an execution's result: it stays unfinished and is marked interrupted at this node's next start");
    false
}

/// Store an execution's artifacts as blobs (`artifacts/{id}/{index}`); one
/// that cannot be stored is marked so in `result` (its download answers
/// 404).
pub(crate) async fn store_artifacts(
    blobs: &ObjectBlobs,
    id: &str,
    artifacts: Vec<Vec<u8>>,
    result: &mut ExecutionResult,
) {
    for (i, data) in artifacts.into_iter().enumerate() {
        if let Err(e) = blobs.put(&format!("artifacts/{id}/{i}"), data).await {
            tracing::warn!(execution = %id, error = %e, "could not store an artifact");
            if let Some(a) = result.artifacts.get_mut(i) {
                a.stored = false;
            }
        }
    }
}

/// The record's status and error kind of a call that did not succeed, as
/// the runtime reports it (`Success` is each caller's own: a plugin's
/// return value is checked against its output schema first).
pub(crate) fn status_of(call: CallStatus, jail: JailStatus) -> (ExecutionStatus, Option<ErrorKind>) {
    match call {
        CallStatus::Success => (ExecutionStatus::Success, None),
        CallStatus::Failed => (ExecutionStatus::Failed, Some(ErrorKind::HandlerError)),
        CallStatus::Timeout => (ExecutionStatus::Timeout, Some(ErrorKind::Timeout)),
        CallStatus::Error => (ExecutionStatus::Error, Some(stopped_by(jail))),
        CallStatus::Cancelled => (ExecutionStatus::Cancelled, Some(ErrorKind::Cancelled)),
    }
}

/// Status, error kind, stored result and artifact bytes of a finished call.
type Verdict = (ExecutionStatus, Option<ErrorKind>, ExecutionResult, Vec<Vec<u8>>);

fn platform_error(message: String) -> Verdict {
    (
        ExecutionStatus::Error,
        Some(ErrorKind::Internal),
        ExecutionResult::platform_error("PlatformError", message, Some(JailStatus::InternalError.as_str())),
        Vec::new(),
    )
}

/// Why the platform stopped a call the runtime reports as `error`, in the
/// record's terms.
fn stopped_by(jail: JailStatus) -> ErrorKind {
    match jail {
        JailStatus::Timeout => ErrorKind::Timeout,
        JailStatus::Signaled => ErrorKind::Signaled,
        JailStatus::CpuLimit => ErrorKind::CpuLimit,
        JailStatus::MemoryLimit => ErrorKind::MemoryLimit,
        JailStatus::OutputLimit => ErrorKind::OutputLimit,
        JailStatus::Violation => ErrorKind::Violation,
        JailStatus::InternalError => ErrorKind::InternalError,
        JailStatus::Cancelled => ErrorKind::Cancelled,
        // The runtime reports a handler that ran as success or failure, so
        // these never come with `error`; should one, the platform is at fault.
        JailStatus::Ok | JailStatus::NonzeroExit => ErrorKind::Internal,
    }
}

/// The egress proxy's refusals as the execution record keeps them.
pub(crate) fn refused_destinations(records: Vec<ConnectionRecord>) -> Vec<RefusedDestination> {
    records
        .into_iter()
        .filter_map(|c| match c.verdict {
            EgressVerdict::Refused { reason, message } => Some(RefusedDestination {
                at: c.started_at,
                method: c.method,
                host: c.host,
                port: c.port,
                reason: reason.as_str().to_owned(),
                message,
            }),
            EgressVerdict::Allowed { .. } => None,
        })
        .collect()
}

/// The runtime's result as the record keeps it (the one conversion), and
/// the artifacts' bytes, which are stored as blobs of their own.
pub(crate) fn recorded(r: HandlerResult) -> (ExecutionResult, Vec<Vec<u8>>) {
    let mut data = Vec::with_capacity(r.artifacts.len());
    let artifacts = r
        .artifacts
        .into_iter()
        .map(|a| {
            data.push(a.data);
            ArtifactRecord {
                path: a.path,
                size: a.size,
                sha256: a.sha256,
                stored: true,
            }
        })
        .collect();
    let result = ExecutionResult {
        status: match r.status {
            CallStatus::Success => ResultStatus::Success,
            CallStatus::Failed => ResultStatus::Failed,
            CallStatus::Timeout => ResultStatus::Timeout,
            CallStatus::Error => ResultStatus::Error,
            CallStatus::Cancelled => ResultStatus::Cancelled,
        },
        jail_status: Some(r.jail_status.as_str().to_owned()),
        stdout: r.stdout,
        stderr: r.stderr,
        stdout_truncated: r.stdout_truncated,
        stderr_truncated: r.stderr_truncated,
        exit_code: r.exit_code,
        signal: r.signal,
        execution_time: r.execution_time,
        return_value: r.return_value,
        error: r.error.map(|e| ExecutionError {
            kind: e.kind,
            message: e.message,
            traceback: e.traceback,
            file: e.file,
            line: e.line,
            violations: Vec::new(),
        }),
        metrics: Some(ResultMetrics {
            duration_ms: r.metrics.duration_ms,
            cpu_time_ms: r.metrics.cpu_time_ms,
            peak_memory_mb: r.metrics.peak_memory_mb,
            io_read_bytes: r.metrics.io_read_bytes,
            io_write_bytes: r.metrics.io_write_bytes,
        }),
        artifacts,
        warm: r.warm,
        interpreter_restarted: false,
        interpreter_died: false,
        compile: None,
    };
    (result, data)
}
