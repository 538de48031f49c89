//! Sandbox sessions on this node: the [`SessionManager`] every API over
//! sessions calls (the native `/v1/sessions` handlers in [`api`]; the CLI,
//! the SDKs and compatibility layers go through the same calls).
//!
//! A session is a record in the store (`warden_core::Session`) and, while
//! it is live on this node, a box ([`warden_runtime::session::SessionBox`])
//! held in memory. The manager decides who may see what (an app sees its
//! own sessions, admins every one, developers none; "not yours" is "not
//! there"), checks requests against the template and the server's policy
//! (the core's `plan` and `plan_exec`), enforces the quotas of the app (on
//! every node, through the store) and of this node (in memory), and moves
//! the record by compare-and-set before it touches the box, so a terminate
//! racing the sweeper or the shutdown leaves one winner and one reason.
//!
//! Executions of a session run one at a time, in the order they were
//! accepted; each is an ordinary execution record (`source: session`),
//! streamed through the executor's event hub (the one SSE engine). Files go
//! through the session box's workspace `BoxDir` only ([`files`]).
//!
//! The record keeps its owner node: a request for a session another node
//! runs is forwarded there (`crate::cluster`) or refused (409), and a node
//! coming back from a crash resumes its live sessions or marks them `lost`
//! at start-up. The manager acts for its sessions only while this node
//! holds its lease (`crate::cluster::Lease`): without it, requests are
//! refused (503) and the boxes are ended ([`SessionManager::fence`]), and
//! every write to a session's record is conditional on the session still
//! being this node's.
//!
//! Must never: touch a box's files by path, hold a lock across an await
//! that waits on a box, or run a blocking box call on the async threads.

pub mod api;
pub mod files;
pub mod install;
pub mod snapshots;
pub mod views;

pub use snapshots::Recovered;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use warden_core::model::{new_id, now_ms};
use warden_core::session::{
    DEFAULT_TEMPLATE, NewSession, NewSessionExecution, SessionTemplate, plan, plan_exec,
};
use warden_core::store::{ExecutionFilter, SessionMove};
use warden_core::{
    Actor, ErrorKind, Execution, ExecutionMode, ExecutionResult, ExecutionSource, ExecutionStatus, Page,
    Role, RunMode, Session, SessionFilter, SessionLanguage, SessionPolicy, SessionQuota, SessionResources,
    SessionStatus, SessionUsage, Store, StoreError, TemplateError, Templates,
};
use warden_jail::{BoxFileError, EmptyBudget, EntryInfo, EntryKind, JailError, MIB};
use warden_package::Problem;
use warden_runtime::layers::LayerMount;
use warden_runtime::session::{ExecMode, Language, SeedFile, SessionBox, SessionExec, SessionSpec};
use warden_runtime::{CallLimits, Runner, RuntimeError, Stream as OutStream};
use warden_store::{ObjectBlobs, SqlStore};

use crate::builds::{Builds, LayerPin};
use crate::cluster::Lease;
use crate::config::SessionsSection;
use crate::events::{Hub, Log};
use crate::exec::{record_final, recorded, status_of, store_artifacts};

/// Most entries a directory listing returns.
pub const MAX_LIST_ENTRIES: usize = 1000;

/// Bytes of `out/` read for one execution's artifacts.
const ARTIFACT_BYTES: u64 = 16 * MIB;

/// How long ending a session waits for its running execution to take a
/// cancel before it kills the box anyway.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Why a session call failed. The API renders each as a problem document
/// (`crate::error::ApiError: From<SessionError>`); other front ends map
/// them their own way.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The request is invalid: every problem, located.
    #[error("invalid request")]
    Invalid(Vec<Problem>),
    /// A path (or another single field) cannot be used: 400 naming it.
    #[error("{location}: {message}")]
    BadField {
        /// `path:path`, `query:path`, `/path`, …
        location: String,
        /// Why.
        message: String,
    },
    /// No such session or execution (or not the caller's: the same).
    #[error("{0}")]
    NotFound(String),
    /// The caller's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The session's state does not allow this.
    #[error("{detail}")]
    State {
        /// Its state.
        status: SessionStatus,
        /// What happened.
        detail: String,
    },
    /// Another node runs the session's box (requests are not forwarded yet).
    #[error("session {id} runs on node {node}; send the request there")]
    Elsewhere {
        /// The session.
        id: String,
        /// Its node.
        node: String,
    },
    /// The app's quota is used up.
    #[error("{0}")]
    AppQuota(String),
    /// This node has no room for another session.
    #[error("{0}")]
    NodeFull(String),
    /// The session has as many executions waiting as it may.
    #[error("{0}")]
    Busy(String),
    /// The execution cannot be cancelled (it ended, or is not a session's).
    #[error("{0}")]
    NotCancellable(String),
    /// A file call failed in the workspace.
    #[error("{0}")]
    File(#[source] BoxFileError),
    /// A file or an upload over its cap.
    #[error("{0}")]
    TooLarge(String),
    /// The request's body could not be read (a broken form, a connection
    /// that went away).
    #[error("{0}")]
    Body(String),
    /// A snapshot cannot be taken or restored (too large, not ready, does
    /// not fit): 422 saying why.
    #[error("{0}")]
    SnapshotRefused(String),
    /// The session's dependency layer is still building after the build's
    /// timeout: 409, with where to follow it.
    #[error("{0}")]
    LayerBuilding(String),
    /// The object store failed a snapshot's upload or download: 503; the
    /// session keeps running.
    #[error("{0}")]
    ObjectStore(String),
    /// The server is shutting down.
    #[error("this server is shutting down: retry on another node, or shortly")]
    ShuttingDown,
    /// This node has lost its lease: it does not act for its sessions.
    #[error("{0}")]
    Fenced(String),
    /// The store failed.
    #[error("storage")]
    Store(#[source] StoreError),
    /// The platform failed (the cause is for the log).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for SessionError {
    fn from(e: StoreError) -> Self {
        SessionError::Store(e)
    }
}

type R<T> = Result<T, SessionError>;

/// What executions still waiting or running become when their session
/// ends under them.
#[derive(Debug, Clone)]
struct End {
    status: ExecutionStatus,
    kind: ErrorKind,
    message: String,
}

impl End {
    fn ended(why: impl Into<String>) -> End {
        End {
            status: ExecutionStatus::Cancelled,
            kind: ErrorKind::SessionEnded,
            message: why.into(),
        }
    }

    fn server_stopped() -> End {
        End {
            status: ExecutionStatus::Interrupted,
            kind: ErrorKind::Interrupted,
            message: "the server stopped while the execution waited or ran".into(),
        }
    }
}

#[derive(Default)]
struct RunState {
    /// The execution holding the box now.
    running: Option<String>,
    /// Waiting executions cancelled before their turn.
    cancelled: HashSet<String>,
    /// The session is ending: what waiting and running executions become.
    ending: Option<End>,
}

/// A session live on this node: its record as started, its box, and the
/// bookkeeping of its executions.
struct Live {
    session: Session,
    /// Its box: replaced (under `turn`) when packages are installed.
    boxed: Mutex<Arc<SessionBox>>,
    /// Held (shared) by every file write, and exclusively while an install
    /// carries the workspace to a new box: no write lands in the old box
    /// after it was packed.
    writes: tokio::sync::RwLock<()>,
    /// The dependency layer its box binds, given back when the box ends.
    layer: Mutex<Option<LayerPin>>,
    /// One execution at a time, in the order they were accepted.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Executions running or waiting.
    pending: AtomicUsize,
    /// Last activity, Unix ms (the sweeper's idle clock).
    last_active: AtomicI64,
    state: Mutex<RunState>,
    /// `out/` files already reported as artifacts (path → SHA-256), so an
    /// execution lists only what it created or changed.
    reported: Mutex<HashMap<String, String>>,
    /// When its latest snapshot was taken (or it started), Unix ms.
    snapshot_at: AtomicI64,
    /// A scheduled snapshot of it is being taken.
    snapshotting: AtomicBool,
}

impl Live {
    /// A live session in its first box, holding `layer`.
    fn new(session: Session, boxed: Arc<SessionBox>, layer: Option<LayerPin>) -> Live {
        let now = now_ms();
        Live {
            session,
            boxed: Mutex::new(boxed),
            writes: tokio::sync::RwLock::new(()),
            layer: Mutex::new(layer),
            turn: Arc::new(tokio::sync::Mutex::new(())),
            pending: AtomicUsize::new(0),
            last_active: AtomicI64::new(now),
            state: Mutex::default(),
            reported: Mutex::default(),
            snapshot_at: AtomicI64::new(now),
            snapshotting: AtomicBool::new(false),
        }
    }

    /// Its box now.
    fn boxed(&self) -> Arc<SessionBox> {
        lock(&self.boxed).clone()
    }

    fn touch(&self, at: i64) {
        self.last_active.fetch_max(at, Ordering::AcqRel);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A layer held for a session box that is starting: given back if the
/// session never goes live (the guard dropped with its pin).
struct PinGuard {
    builds: Arc<Builds>,
    pin: Option<LayerPin>,
}

impl PinGuard {
    fn none(builds: &Arc<Builds>) -> PinGuard {
        PinGuard {
            builds: builds.clone(),
            pin: None,
        }
    }

    fn new(builds: &Arc<Builds>, pin: LayerPin) -> PinGuard {
        PinGuard {
            builds: builds.clone(),
            pin: Some(pin),
        }
    }

    fn id(&self) -> Option<String> {
        self.pin.as_ref().map(|p| p.id.clone())
    }

    /// The pin, now the live session's to give back.
    fn take(&mut self) -> Option<LayerPin> {
        self.pin.take()
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Some(pin) = self.pin.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let builds = self.builds.clone();
            rt.spawn(async move { builds.release(&pin).await });
        }
    }
}

/// Releases a place in a session's pending count.
struct Pending(Arc<Live>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An accepted execution: its record as first written, and a way to wait
/// for its final record.
pub struct Accepted {
    /// The record (`queued`).
    pub record: Execution,
    /// Resolves with the final record.
    pub done: tokio::sync::oneshot::Receiver<Execution>,
}

/// Why an upload's body stopped before its end.
#[derive(Debug, Clone)]
pub struct BodyError {
    /// It passed a body limit.
    pub too_large: bool,
    /// What happened.
    pub message: String,
}

/// An open file of a session's workspace, for a download.
pub struct OpenFile {
    /// The file (opened beneath the workspace, a regular file).
    pub file: std::fs::File,
    /// Its size when opened.
    pub size: u64,
    /// Its path, relative to the workspace.
    pub path: PathBuf,
}

/// What an upload or a directory call made.
pub struct Written {
    /// The entry as it is now.
    pub entry: EntryInfo,
    /// It did not exist before.
    pub created: bool,
    /// Its path, relative to the workspace.
    pub path: String,
}

/// What a manager keeps of its own node: its name (on the records of the
/// sessions it runs), a local folder for snapshots in transit, and its
/// dependency layers.
#[derive(Clone)]
pub struct ThisNode {
    /// The node's name (`Config::node`).
    pub node: String,
    /// Scratch folder for snapshot archives (emptied at start).
    pub scratch: PathBuf,
    /// The node's dependency layers (built, kept and held for boxes).
    pub builds: Arc<Builds>,
    /// This node's lease: it acts for its sessions only while it holds it.
    pub lease: Arc<Lease>,
    /// How long past a dead node's death its sessions wait for a node with
    /// room to resume them before they are marked `lost`
    /// (`cluster.takeover_wait_secs`).
    pub takeover_wait: Duration,
}

/// Sessions on this node (see the module's documentation).
pub struct SessionManager {
    store: Arc<SqlStore>,
    blobs: Arc<ObjectBlobs>,
    runner: Runner,
    hub: Arc<Hub>,
    templates: Arc<Templates<SqlStore>>,
    /// Dependency layers: built and held for session boxes.
    builds: Arc<Builds>,
    node: String,
    settings: SessionsSection,
    policy: SessionPolicy,
    live: Mutex<HashMap<String, Arc<Live>>>,
    /// Sessions being created on this node (recorded, box starting).
    reserved: Mutex<HashMap<String, SessionResources>>,
    /// Held while a creation checks the quotas and records the session.
    admission: tokio::sync::Mutex<()>,
    closing: AtomicBool,
    /// Where snapshots are packed and fetched on their way to and from the
    /// object store.
    scratch: PathBuf,
    lease: Arc<Lease>,
    takeover_wait: Duration,
    /// Held by fencing and unfencing (so a session is never ended by one
    /// after the other looked for it); true once boxes were fenced off and
    /// their sessions not yet taken back. Held across box calls: only the
    /// cluster's background tasks take it, never a request.
    fenced: tokio::sync::Mutex<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bad_field(location: &str, message: impl Into<String>) -> SessionError {
    SessionError::BadField {
        location: location.into(),
        message: message.into(),
    }
}

/// An app id as apps are created with (the OpenAPI pattern
/// `^[a-z][a-z0-9-]{1,62}$`).
fn is_app_id(s: &str) -> bool {
    (2..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// A checked path, or a 400 naming `location` and the reason.
fn checked(raw: &str, location: &str) -> R<PathBuf> {
    files::check_path(raw).map_err(|e| {
        bad_field(
            location,
            format!("`{}`: {}", warden_jail::escape_name(raw.as_bytes()), e.0),
        )
    })
}

/// Run a blocking call (a box or a workspace call) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> R<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SessionError::Internal(format!("a blocking session call failed: {e}")))
}

impl SessionManager {
    /// A manager for `node`, with its settings.
    pub fn new(
        store: Arc<SqlStore>,
        blobs: Arc<ObjectBlobs>,
        runner: Runner,
        hub: Arc<Hub>,
        templates: Arc<Templates<SqlStore>>,
        local: ThisNode,
        settings: SessionsSection,
    ) -> Arc<SessionManager> {
        let ThisNode {
            node,
            scratch,
            builds,
            lease,
            takeover_wait,
        } = local;
        let policy = SessionPolicy {
            max: SessionResources {
                cpu_cores: settings.max_cpu_cores,
                memory_mb: settings.max_memory_mb,
                disk_mb: settings.max_disk_mb,
                pids: settings.max_pids,
            },
            max_idle_timeout_secs: settings.max_idle_timeout_secs,
            max_lifetime_secs: settings.max_lifetime_secs,
            network: settings.network,
            max_code_bytes: settings.max_code_bytes,
            max_event_bytes: 1 << 20,
            default_timeout_ms: settings.default_timeout_ms,
            max_timeout_ms: settings.max_timeout_ms,
        };
        Arc::new(SessionManager {
            store,
            blobs,
            runner,
            hub,
            templates,
            builds,
            node,
            settings,
            policy,
            live: Mutex::default(),
            reserved: Mutex::default(),
            admission: tokio::sync::Mutex::new(()),
            closing: AtomicBool::new(false),
            scratch,
            lease,
            takeover_wait,
            fenced: tokio::sync::Mutex::new(false),
        })
    }

    /// The policy requests are checked against.
    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    /// Sessions live on this node.
    pub fn live_count(&self) -> usize {
        lock(&self.live).len()
    }

    fn gate(&self) -> R<()> {
        if self.closing.load(Ordering::Acquire) {
            Err(SessionError::ShuttingDown)
        } else {
            self.leased()
        }
    }

    /// Whether this node may act for its sessions (it holds its lease).
    fn leased(&self) -> R<()> {
        if self.lease.held() {
            Ok(())
        } else {
            Err(SessionError::Fenced(self.lease.why_not()))
        }
    }

    // ------------------------------------------------------------ access

    /// The session `id` as `actor` may see it: admins every one, an app its
    /// own (another app's is "not found", word for word), developers none.
    pub async fn get(&self, actor: &Actor, id: &str) -> R<Session> {
        if actor.role == Role::Developer {
            return Err(SessionError::Forbidden(
                "developer keys cannot use sessions: use the app's key or an admin key".into(),
            ));
        }
        self.store
            .get_session(id)
            .await?
            .filter(|s| actor.role == Role::Admin || actor.app.as_deref() == Some(s.app.as_str()))
            .ok_or_else(|| SessionError::NotFound(format!("no session {id}")))
    }

    /// Sessions, newest first: an app's own (asking for another app's is
    /// 403), or any (admins).
    pub async fn list(&self, actor: &Actor, mut filter: SessionFilter) -> R<Page<Session>> {
        if let Some(app) = &filter.app
            && !is_app_id(app)
        {
            return Err(bad_field(
                "query:app",
                format!(
                    "`{}` is not an app id: 2 to 63 lowercase letters, digits or `-`, starting with a letter",
                    warden_jail::escape_name(app.as_bytes())
                ),
            ));
        }
        match actor.role {
            Role::Admin => {}
            Role::App => {
                let own = actor.app.clone().unwrap_or_default();
                if filter.app.as_ref().is_some_and(|a| *a != own) {
                    return Err(SessionError::Forbidden(format!(
                        "this key lists the sessions of app `{own}` only"
                    )));
                }
                filter.app = Some(own);
            }
            Role::Developer => {
                return Err(SessionError::Forbidden(
                    "developer keys cannot use sessions: use the app's key or an admin key".into(),
                ));
            }
        }
        Ok(self.store.list_sessions(filter).await?)
    }

    /// Session `id` when it is live on this node, `actor` may use it, and
    /// this node may act for it: the store is not asked (a session is in
    /// the live map only while it runs here, and leaves it as it ends).
    /// `None`: ask the store, which gives the precise answer.
    fn live_for(&self, actor: &Actor, id: &str) -> Option<Arc<Live>> {
        if actor.role == Role::Developer || self.gate().is_err() {
            return None;
        }
        let live = lock(&self.live).get(id).cloned()?;
        let theirs = actor.role == Role::Admin || actor.app.as_deref() == Some(live.session.app.as_str());
        (theirs && live.state().ending.is_none()).then_some(live)
    }

    /// The box of a session that must be running on this node.
    fn live_here(&self, s: &Session) -> R<Arc<Live>> {
        if s.status != SessionStatus::Running {
            return Err(state_error(s));
        }
        if s.node != self.node {
            return Err(SessionError::Elsewhere {
                id: s.id.clone(),
                node: s.node.clone(),
            });
        }
        self.leased()?;
        lock(&self.live)
            .get(&s.id)
            .cloned()
            .ok_or_else(|| SessionError::State {
                status: s.status,
                detail: format!("session {} is ending", s.id),
            })
    }

    // ------------------------------------------------------------ lifecycle

    /// What a session needs from the template `id`.
    async fn template(&self, id: &str) -> R<(SessionTemplate, warden_core::template::Template)> {
        let invalid = |message: String| {
            SessionError::Invalid(vec![Problem {
                location: "/template".into(),
                message,
            }])
        };
        let t = match self.templates.get(id).await {
            Ok(t) => t,
            Err(TemplateError::NotFound(_)) => {
                return Err(invalid(format!(
                    "no template `{}` (GET /v1/templates lists them)",
                    warden_jail::escape_name(id.as_bytes())
                )));
            }
            Err(TemplateError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(SessionError::Internal(e.to_string())),
        };
        let st = SessionTemplate::of(&t).map_err(SessionError::Internal)?;
        Ok((st, t))
    }

    /// The layer a new box gets for template `t` and the extra `packages`
    /// (built first when needed), held until the guard is dropped or its
    /// pin moved into the session's [`Live`].
    async fn layer(
        &self,
        actor: &Actor,
        t: &warden_core::template::Template,
        packages: &[warden_core::template::PackageReq],
    ) -> R<(Option<LayerMount>, PinGuard)> {
        use crate::builds::SessionLayerError as E;
        match self.builds.session_layer(&actor.name, t, packages).await {
            Ok(None) => Ok((None, PinGuard::none(&self.builds))),
            Ok(Some((mount, pin))) => Ok((Some(mount), PinGuard::new(&self.builds, pin))),
            Err(E::Failed { location, message }) => Err(SessionError::Invalid(vec![Problem {
                location: location.into(),
                message,
            }])),
            Err(E::Building(m)) => Err(SessionError::LayerBuilding(m)),
            Err(E::Other(e)) => Err(SessionError::Internal(e.to_string())),
        }
    }

    /// Create a session for `actor` (in `app`, which admins name and apps
    /// may only name as their own), from its template, within the policy
    /// and the quotas; its box is started before this returns.
    pub async fn create(&self, actor: &Actor, app: Option<String>, req: NewSession) -> R<Session> {
        let app = match actor.role {
            Role::Developer => {
                return Err(SessionError::Forbidden(
                    "developer keys cannot use sessions: use the app's key or an admin key".into(),
                ));
            }
            Role::App => {
                let own = actor.app.clone().unwrap_or_default();
                if app.as_ref().is_some_and(|a| *a != own) {
                    return Err(SessionError::Forbidden(format!(
                        "this key creates sessions for app `{own}` only"
                    )));
                }
                own
            }
            Role::Admin => {
                let Some(app) = app else {
                    return Err(SessionError::Invalid(vec![Problem {
                        location: "/app".into(),
                        message: "admin keys name the app the session belongs to".into(),
                    }]));
                };
                if self.store.get_app(&app).await?.is_none() {
                    return Err(SessionError::Invalid(vec![Problem {
                        location: "/app".into(),
                        message: format!("no app `{}`", warden_jail::escape_name(app.as_bytes())),
                    }]));
                }
                app
            }
        };
        let restore = match &req.snapshot {
            Some(sid) => Some(self.snapshot_to_restore(&app, sid).await?),
            None => None,
        };
        let template_id = req
            .template
            .clone()
            .or_else(|| restore.as_ref().map(|s| s.template.clone()))
            .unwrap_or_else(|| DEFAULT_TEMPLATE.to_owned());
        let (t, stored) = self.template(&template_id).await?;
        let p = plan(&req, &t, &self.policy).map_err(SessionError::Invalid)?;
        self.gate()?;
        // Built (or fetched) before the quotas are checked: a build may take
        // a while, and holds no place on the node.
        let (layer, mut pin) = self.layer(actor, &stored, &p.packages).await?;
        let now = now_ms();
        let session = Session {
            id: new_id("ses"),
            app: app.clone(),
            template: template_id,
            status: SessionStatus::Creating,
            status_reason: None,
            resources: p.resources,
            idle_timeout_secs: p.idle_timeout_secs,
            max_lifetime_secs: p.max_lifetime_secs,
            env: p.env,
            network: p.network,
            layer: pin.id(),
            node: self.node.clone(),
            created_at: now,
            started_at: None,
            last_active_at: now,
            ended_at: None,
            executions: 0,
        };
        {
            // One creation at a time checks the quotas and records itself,
            // so two cannot both take the last place on this node.
            let _admission = self.admission.lock().await;
            let tmp = self.settings.tmp_mb;
            if let Some(why) = self.node_quota().refuses(self.node_usage(), &p.resources, tmp) {
                metrics::counter!("warden_sessions_rejected_total", "reason" => "node_full").increment(1);
                return Err(SessionError::NodeFull(format!(
                    "this node cannot hold another session: {why}; retry later or on another node"
                )));
            }
            let used = self.store.session_usage(Some(&app)).await?;
            if let Some(why) = self.app_quota().refuses(used, &p.resources, tmp) {
                metrics::counter!("warden_sessions_rejected_total", "reason" => "app_quota").increment(1);
                return Err(SessionError::AppQuota(format!(
                    "app `{app}` cannot open another session: {why}; terminate one first"
                )));
            }
            self.store.insert_session(session.clone()).await?;
            lock(&self.reserved).insert(session.id.clone(), p.resources);
        }
        let spec = SessionSpec {
            memory_bytes: p.resources.memory_mb * MIB,
            pids: p.resources.pids,
            cpu_cores: p.resources.cpu_cores,
            disk_bytes: p.resources.disk_mb * MIB,
            tmp_bytes: self.settings.tmp_mb * MIB,
            max_lifetime: Duration::from_secs(p.max_lifetime_secs),
            env: session.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            layer,
            egress: session.network.clone(),
            files: t
                .files
                .iter()
                .map(|(path, bytes)| SeedFile {
                    path: path.clone(),
                    bytes: bytes.clone(),
                })
                .collect(),
        };
        let runner = self.runner.clone();
        let started = blocking(move || runner.start_session(spec)).await;
        let id = session.id.clone();
        let boxed = match started {
            Ok(Ok(b)) => Arc::new(b),
            Ok(Err(e)) => {
                lock(&self.reserved).remove(&id);
                let full = matches!(e, RuntimeError::Jail(JailError::NoFreeBox { .. }));
                // The cause names host paths: logged, not shown.
                tracing::error!(session = %id, error = %crate::error::DisplayChain(&e), "a session's box did not start");
                let reason = if full {
                    "its box did not start: every box slot of the node is taken"
                } else {
                    "its box did not start (the cause is in the server's log)"
                };
                self.fail(&id, &[SessionStatus::Creating], reason).await;
                return Err(if full {
                    SessionError::NodeFull(format!(
                        "session {id} could not start: every box slot of this node is taken; retry later"
                    ))
                } else {
                    SessionError::Internal(format!("session {id}: {}", crate::error::DisplayChain(&e)))
                });
            }
            Err(e) => {
                lock(&self.reserved).remove(&id);
                self.fail(&id, &[SessionStatus::Creating], "its box did not start")
                    .await;
                return Err(e);
            }
        };
        if let Some(snap) = &restore
            && let Err(e) = self.restore(&boxed, snap, p.resources.disk_mb * MIB).await
        {
            lock(&self.reserved).remove(&id);
            let b = boxed.clone();
            if let Err(e) = blocking(move || b.terminate()).await {
                tracing::warn!(session = %id, error = %e, "ending a session's box failed");
            }
            self.fail(
                &id,
                &[SessionStatus::Creating],
                &format!("its snapshot could not be restored: {e}"),
            )
            .await;
            return Err(e);
        }
        let live = Arc::new(Live::new(session.clone(), boxed, pin.take()));
        // In the map before the record says running, so a request that
        // reads `running` finds the box.
        lock(&self.live).insert(id.clone(), live.clone());
        lock(&self.reserved).remove(&id);
        let moved = self
            .store
            .move_session(
                &id,
                SessionMove {
                    from: vec![SessionStatus::Creating],
                    to: SessionStatus::Running,
                    reason: None,
                    at: now_ms(),
                    node: Some(self.node.clone()),
                },
            )
            .await;
        match moved {
            Ok(Some(s)) if !self.closing.load(Ordering::Acquire) => {
                metrics::counter!("warden_sessions_created_total").increment(1);
                Ok(s)
            }
            Ok(Some(_)) => {
                // Shutdown began while the box started.
                if let Err(e) = self
                    .end(
                        &id,
                        SessionStatus::Terminated,
                        "the server stopped",
                        End::server_stopped(),
                    )
                    .await
                {
                    tracing::warn!(session = %id, error = %e, "could not record a session ended by the shutdown");
                }
                Err(SessionError::ShuttingDown)
            }
            Ok(None) => {
                // Ended while its box started (terminated, the shutdown).
                self.drop_live(&id, End::ended("the session ended")).await;
                let s = self.store.get_session(&id).await?;
                Err(s.map_or_else(
                    || SessionError::NotFound(format!("no session {id}")),
                    |s| state_error(&s),
                ))
            }
            Err(e) => {
                self.drop_live(&id, End::ended("the session failed")).await;
                self.fail(
                    &id,
                    &[SessionStatus::Creating],
                    "it could not be recorded as running",
                )
                .await;
                Err(e.into())
            }
        }
    }

    fn node_quota(&self) -> SessionQuota {
        SessionQuota {
            sessions: self.settings.node_max_live,
            memory_mb: self.settings.node_max_memory_mb,
            disk_mb: self.settings.node_max_disk_mb,
        }
    }

    fn app_quota(&self) -> SessionQuota {
        SessionQuota {
            sessions: self.settings.app_max_live,
            memory_mb: self.settings.app_max_memory_mb,
            disk_mb: self.settings.app_max_disk_mb,
        }
    }

    /// What the live and starting sessions of this node reserved.
    fn node_usage(&self) -> SessionUsage {
        let tmp = self.settings.tmp_mb;
        let mut u = SessionUsage::default();
        let mut add = |r: &SessionResources| {
            u.sessions += 1;
            u.memory_mb += r.memory_mb;
            u.disk_mb += r.disk_mb + tmp;
        };
        for live in lock(&self.live).values() {
            add(&live.session.resources);
        }
        for r in lock(&self.reserved).values() {
            add(r);
        }
        u
    }

    /// Mark a session failed (best effort: it may have moved meanwhile).
    async fn fail(&self, id: &str, from: &[SessionStatus], reason: &str) {
        let m = SessionMove {
            from: from.to_vec(),
            to: SessionStatus::Failed,
            reason: Some(reason.to_owned()),
            at: now_ms(),
            node: Some(self.node.clone()),
        };
        match self.store.move_session(id, m).await {
            Ok(Some(_)) => {
                metrics::counter!("warden_sessions_ended_total", "status" => "failed").increment(1);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(session = %id, error = %e, "could not record a session as failed"),
        }
    }

    /// Terminate a session: its record becomes `terminated` ("terminated on
    /// request"), its running execution is cancelled, its box killed, its
    /// workspace and slot freed. Answers the ended session.
    pub async fn terminate(&self, actor: &Actor, id: &str) -> R<Session> {
        let s = self.get(actor, id).await?;
        self.terminate_found(s, "terminated on request").await
    }

    async fn terminate_found(&self, s: Session, reason: &str) -> R<Session> {
        if s.status.is_final() {
            return Err(state_error(&s));
        }
        if s.node != self.node {
            return Err(SessionError::Elsewhere {
                id: s.id.clone(),
                node: s.node.clone(),
            });
        }
        self.leased()?;
        match self
            .end(
                &s.id,
                SessionStatus::Terminated,
                reason,
                End::ended(format!("the session was {reason}")),
            )
            .await?
        {
            Some(ended) => Ok(ended),
            None => {
                let now = self.store.get_session(&s.id).await?;
                Err(now.map_or_else(
                    || SessionError::NotFound(format!("no session {}", s.id)),
                    |s| state_error(&s),
                ))
            }
        }
    }

    /// Delete a session: terminated first if it is live, then its record
    /// (its executions' records stay).
    pub async fn delete(&self, actor: &Actor, id: &str) -> R<()> {
        let s = self.get(actor, id).await?;
        if s.status.is_live() {
            match self.terminate_found(s, "deleted on request").await {
                Ok(_) => {}
                // Ended meanwhile: deleted all the same.
                Err(SessionError::State { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.store.delete_session(id).await?;
        Ok(())
    }

    /// Move session `id` from a live state to `to` with `reason`, then end
    /// its box (if this node holds one). `None` when it was no longer live
    /// (another request ended it first).
    async fn end(&self, id: &str, to: SessionStatus, reason: &str, end: End) -> R<Option<Session>> {
        let moved = self
            .store
            .move_session(
                id,
                SessionMove {
                    from: vec![SessionStatus::Creating, SessionStatus::Running],
                    to,
                    reason: Some(reason.to_owned()),
                    at: now_ms(),
                    node: Some(self.node.clone()),
                },
            )
            .await?;
        if moved.is_some() {
            metrics::counter!("warden_sessions_ended_total", "status" => to.as_str()).increment(1);
            self.drop_live(id, end).await;
        }
        Ok(moved)
    }

    /// Take a session's box out of the live map and end it: what waits
    /// becomes `end`, the running execution is cancelled (again and again:
    /// a cancel sent just before it took the box is discarded), then the
    /// box is killed and its slot and workspace freed.
    async fn drop_live(&self, id: &str, end: End) {
        let Some(live) = lock(&self.live).remove(id) else {
            return;
        };
        live.state().ending = Some(end);
        let deadline = tokio::time::Instant::now() + CANCEL_GRACE;
        loop {
            let running = {
                let st = live.state();
                if st.running.is_some() {
                    // Under the lock: the next execution cannot take the box
                    // before this signal is written.
                    live.boxed().cancel();
                }
                st.running.is_some()
            };
            if !running || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let boxed = live.boxed();
        if let Err(e) = blocking(move || boxed.terminate()).await {
            tracing::warn!(session = %id, error = %e, "ending a session's box failed");
        }
        let pin = lock(&live.layer).take();
        if let Some(pin) = pin {
            self.builds.release(&pin).await;
        }
    }

    /// Start the sweeper: every `sessions.sweep_interval_ms`, sessions past
    /// their idle timeout or max lifetime expire (with the reason), and a
    /// session whose box died fails. Call once, after creating.
    pub fn start_sweeper(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let every = Duration::from_millis(self.settings.sweep_interval_ms);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(me) = me.upgrade() else { return };
                if me.closing.load(Ordering::Acquire) {
                    return;
                }
                me.sweep().await;
                me.snapshot_due();
            }
        });
    }

    /// One pass of the sweeper (none without the lease: the sessions may
    /// be another node's by now).
    pub async fn sweep(&self) {
        if !self.lease.held() {
            return;
        }
        let lives: Vec<Arc<Live>> = lock(&self.live).values().cloned().collect();
        for live in lives {
            let now = now_ms();
            let busy = live.pending.load(Ordering::Acquire) > 0;
            if busy {
                // Running or waiting executions are activity.
                live.touch(now);
            }
            let id = live.session.id.clone();
            if let Some(why) = live.session.expiry(now, live.last_active.load(Ordering::Acquire)) {
                let reason = format!("expired: {why}");
                match self
                    .end(
                        &id,
                        SessionStatus::Expired,
                        &reason,
                        End::ended(format!("the session {reason}")),
                    )
                    .await
                {
                    Ok(Some(_)) => tracing::info!(session = %id, %reason, "a session expired"),
                    Ok(None) => self.drop_live(&id, End::ended("the session ended")).await,
                    Err(e) => tracing::warn!(session = %id, error = %e, "could not expire a session"),
                }
                continue;
            }
            if !busy {
                let boxed = live.boxed();
                // A box this node is ending on purpose (a terminate or a
                // delete under way) is not a box that died.
                if let Ok(false) = blocking(move || boxed.is_alive()).await
                    && live.state().ending.is_none()
                {
                    let reason = "its box died";
                    match self
                        .end(
                            &id,
                            SessionStatus::Failed,
                            reason,
                            End::ended("the session's box died"),
                        )
                        .await
                    {
                        Ok(Some(_)) => tracing::warn!(session = %id, "a session's box died"),
                        // Ended (or deleted) meanwhile.
                        Ok(None) | Err(SessionError::Store(StoreError::NotFound(_))) => {}
                        Err(e) => {
                            tracing::warn!(session = %id, error = %e, "could not record a dead session")
                        }
                    }
                }
            }
        }
    }

    /// Shutdown: no more sessions or executions; every live session is
    /// recorded `terminated` ("the server stopped"), its running execution
    /// `interrupted`, its box ended; within `grace`. Returns how many
    /// sessions were ended.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.closing.store(true, Ordering::Release);
        let mut ids: Vec<String> = lock(&self.live).keys().cloned().collect();
        ids.extend(lock(&self.reserved).keys().cloned());
        let n = ids.len();
        let ends = ids.iter().map(|id| async move {
            if let Err(e) = self
                .end(
                    id,
                    SessionStatus::Terminated,
                    "the server stopped",
                    End::server_stopped(),
                )
                .await
            {
                tracing::warn!(session = %id, error = %e, "could not record a session ended by the shutdown");
            }
        });
        if tokio::time::timeout(grace, futures::future::join_all(ends))
            .await
            .is_err()
        {
            tracing::warn!("some sessions were still ending when the shutdown's grace period ran out");
        }
        n
    }

    // ------------------------------------------------------------ executions

    /// Accept an execution in session `id`: checked, recorded `queued`,
    /// then run in its turn on a task of its own (a client that goes away
    /// does not cancel it). `asynchronous` only marks the record's mode.
    pub async fn execute(
        self: &Arc<Self>,
        actor: &Actor,
        id: &str,
        req: NewSessionExecution,
        asynchronous: bool,
    ) -> R<Accepted> {
        let (s, live) = match self.live_for(actor, id) {
            Some(live) => (live.session.clone(), live),
            None => {
                let s = self.get(actor, id).await?;
                self.gate()?;
                let live = self.live_here(&s)?;
                (s, live)
            }
        };
        let p = plan_exec(&req, &self.policy).map_err(SessionError::Invalid)?;
        let before = live.pending.fetch_add(1, Ordering::AcqRel);
        let pending = Pending(live.clone());
        if before >= self.settings.max_pending {
            return Err(SessionError::Busy(format!(
                "session {id} has {before} executions running or waiting (the limit is {}); retry when one ends",
                self.settings.max_pending
            )));
        }
        let now = now_ms();
        let id = new_id("exe");
        // Its turn at once when nothing else is running or waiting: a sync
        // execution is then recorded `running` in the statement that
        // accepts it, one store round trip instead of two. (Async ones are
        // answered `queued`, as documented; an earlier execution still
        // being handed to its task holds `pending`, so none is overtaken.)
        let turn = if before == 0 && !asynchronous {
            live.turn.clone().try_lock_owned().ok().filter(|_| {
                let mut st = live.state();
                let free = st.ending.is_none() && st.running.is_none();
                if free {
                    st.running = Some(id.clone());
                }
                free
            })
        } else {
            None
        };
        let record = Execution {
            id,
            app: s.app.clone(),
            source: ExecutionSource::Session {
                session: s.id.clone(),
                language: req.language,
                mode: req.mode,
            },
            status: if turn.is_some() {
                ExecutionStatus::Running
            } else {
                ExecutionStatus::Queued
            },
            mode: if asynchronous {
                ExecutionMode::Async
            } else {
                ExecutionMode::Sync
            },
            node: self.node.clone(),
            error_kind: None,
            result: None,
            created_at: now,
            started_at: turn.as_ref().map(|_| now),
            finished_at: None,
            duration_ms: None,
            egress_refused: Vec::new(),
        };
        // Recorded before it runs: an accepted request always has its record.
        if let Err(e) = self.store.insert_execution(record.clone()).await {
            if turn.is_some() {
                live.state().running = None;
            }
            return Err(e.into());
        }
        live.touch(now);
        let log = self.hub.open(&record.id);
        log.status("queued");
        let mut env: Vec<(String, String)> = s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.extend(req.env);
        let timeout = Duration::from_millis(p.timeout_ms);
        let tap_log = log.clone();
        let job = SessionExec {
            language: match req.language {
                SessionLanguage::Python => Language::Python,
                SessionLanguage::Javascript => Language::Javascript,
                SessionLanguage::Shell => Language::Shell,
            },
            mode: match req.mode {
                RunMode::Script => ExecMode::Script,
                RunMode::Handler => ExecMode::Handler,
                RunMode::Repl => ExecMode::Repl,
            },
            code: req.code.into_bytes(),
            event: p.event.into_bytes(),
            limits: CallLimits {
                timeout,
                cpu_time: timeout.max(Duration::from_secs(1)),
                memory_bytes: s.resources.memory_mb * MIB,
                pids: s.resources.pids,
                workspace_bytes: ARTIFACT_BYTES,
                ..CallLimits::default()
            },
            env,
            tap: Some(Arc::new(move |stream, data| {
                tap_log.output(stream == OutStream::Stderr, data)
            })),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let me = self.clone();
        let first = record.clone();
        tokio::spawn(async move {
            let id = first.id.clone();
            let run = me.clone().run(live, first, job, log.clone(), pending, tx, turn);
            if let Err(panic) = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await {
                tracing::error!(execution = %id, panic = ?panic.downcast_ref::<&str>(), "a session execution's task panicked");
            }
        });
        Ok(Accepted { record, done: rx })
    }

    /// Run one execution in its turn and record how it ended.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        self: Arc<Self>,
        live: Arc<Live>,
        mut exec: Execution,
        job: SessionExec,
        log: Arc<Log>,
        pending: Pending,
        done: tokio::sync::oneshot::Sender<Execution>,
        taken: Option<tokio::sync::OwnedMutexGuard<()>>,
    ) {
        if let Some(turn) = taken {
            // Recorded `running` when accepted: it runs now.
            return self.exec(live, exec, job, log, pending, done, turn).await;
        }
        let turn = live.turn.clone().lock_owned().await;
        enum Next {
            Run,
            Cancelled,
            Ended(End),
        }
        let next = {
            let mut st = live.state();
            if st.cancelled.remove(&exec.id) {
                Next::Cancelled
            } else if let Some(end) = &st.ending {
                Next::Ended(end.clone())
            } else {
                st.running = Some(exec.id.clone());
                Next::Run
            }
        };
        match next {
            // The cancel wrote its record and closed its log.
            Next::Cancelled => {
                drop(turn);
                drop(pending);
                if let Ok(Some(e)) = self.store.get_execution(&exec.id).await {
                    let _ = done.send(e);
                }
                return;
            }
            Next::Ended(end) => {
                drop(turn);
                ended(&mut exec, &end, None);
                self.conclude(&live, exec, &log, pending, done).await;
                return;
            }
            Next::Run => {}
        }
        let at = now_ms();
        exec.status = ExecutionStatus::Running;
        exec.started_at = Some(at);
        if !matches!(self.store.update_execution(exec.clone()).await, Ok(true)) {
            // Made final meanwhile (shutdown, a cancel).
            live.state().running = None;
            drop(turn);
            drop(pending);
            if let Ok(Some(e)) = self.store.get_execution(&exec.id).await {
                let _ = done.send(e);
            }
            return;
        }
        self.exec(live, exec, job, log, pending, done, turn).await;
    }

    /// Run a `running` execution in the box, holding its turn, and record
    /// how it ended.
    #[allow(clippy::too_many_arguments)]
    async fn exec(
        self: Arc<Self>,
        live: Arc<Live>,
        mut exec: Execution,
        job: SessionExec,
        log: Arc<Log>,
        pending: Pending,
        done: tokio::sync::oneshot::Sender<Execution>,
        turn: tokio::sync::OwnedMutexGuard<()>,
    ) {
        log.status("running");
        let boxed = live.boxed();
        let started = std::time::Instant::now();
        let outcome = blocking(move || boxed.exec(&job)).await;
        let ending = {
            let mut st = live.state();
            st.running = None;
            st.ending.clone()
        };
        drop(turn);
        let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut box_died = false;
        let artifacts = match outcome {
            Ok(Ok(o)) => {
                let call = o.result.status;
                let jail = o.result.jail_status;
                let (mut result, data) = recorded(o.result);
                result.interpreter_restarted = o.interpreter_restarted;
                result.interpreter_died = o.interpreter_died;
                let (status, kind) = status_of(call, jail);
                exec.status = status;
                exec.error_kind = kind;
                let data = self.new_artifacts(&live, &mut result, data);
                exec.result = Some(result);
                if status == ExecutionStatus::Cancelled
                    && let Some(end) = &ending
                {
                    // Cancelled because the session ended: say so.
                    ended(&mut exec, end, Some(wall_ms));
                }
                data
            }
            Ok(Err(e)) => {
                box_died = true;
                tracing::warn!(execution = %exec.id, session = %live.session.id, error = %crate::error::DisplayChain(&e), "a session's box failed during an execution");
                let end = ending.unwrap_or_else(|| End {
                    status: ExecutionStatus::Error,
                    kind: ErrorKind::SessionEnded,
                    message: "the session's box died during the execution; the session has failed".into(),
                });
                ended(&mut exec, &end, Some(wall_ms));
                Vec::new()
            }
            Err(e) => {
                tracing::error!(execution = %exec.id, error = %e, "a session execution could not run");
                exec.status = ExecutionStatus::Error;
                exec.error_kind = Some(ErrorKind::Internal);
                exec.result = Some(ExecutionResult::platform_error(
                    "PlatformError",
                    "the platform failed while running the execution",
                    None,
                ));
                Vec::new()
            }
        };
        if let Some(result) = exec.result.as_mut() {
            store_artifacts(&self.blobs, &exec.id, artifacts, result).await;
        }
        exec.duration_ms = Some(
            exec.result
                .as_ref()
                .and_then(|r| r.metrics.as_ref())
                .map(|m| m.duration_ms)
                .filter(|d| *d > 0.0)
                .unwrap_or(wall_ms),
        );
        if box_died {
            let id = live.session.id.clone();
            if let Err(e) = self
                .end(
                    &id,
                    SessionStatus::Failed,
                    "its box died during an execution",
                    End::ended("the session's box died"),
                )
                .await
            {
                tracing::warn!(session = %id, error = %e, "could not record a dead session");
            }
        }
        self.conclude(&live, exec, &log, pending, done).await;
    }

    /// Only the artifacts this execution created or changed (by content):
    /// a session's `out/` keeps what earlier executions left there.
    fn new_artifacts(&self, live: &Live, result: &mut ExecutionResult, data: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut reported = lock(&live.reported);
        let mut kept = Vec::new();
        let mut keep = Vec::new();
        for (a, bytes) in std::mem::take(&mut result.artifacts).into_iter().zip(data) {
            if reported.get(&a.path) != Some(&a.sha256) {
                reported.insert(a.path.clone(), a.sha256.clone());
                kept.push(a);
                keep.push(bytes);
            }
        }
        result.artifacts = kept;
        keep
    }

    /// The end of every execution: its final record, the session's
    /// activity, the metrics, the event log's result, the waiting request.
    async fn conclude(
        &self,
        live: &Live,
        exec: Execution,
        log: &Log,
        pending: Pending,
        done: tokio::sync::oneshot::Sender<Execution>,
    ) {
        let mut exec = exec;
        if exec.finished_at.is_none() {
            exec.finished_at = Some(now_ms());
        }
        // The final record also moves the session's activity and count in
        // the store (a trigger, migration 0013): no second round trip.
        record_final(&self.store, &exec).await;
        drop(pending);
        live.touch(now_ms());
        if let ExecutionSource::Session { language, mode, .. } = &exec.source {
            metrics::counter!("warden_session_executions_total", "language" => language.as_str(), "mode" => mode.as_str(), "status" => exec.status.as_str())
                .increment(1);
        }
        let view = crate::views::ExecutionView::from(exec.clone());
        log.finish(serde_json::to_string(&view).unwrap_or_default());
        let _ = done.send(exec);
    }

    /// A session's executions, newest first.
    pub async fn executions(
        &self,
        actor: &Actor,
        id: &str,
        mut filter: ExecutionFilter,
    ) -> R<Page<Execution>> {
        let s = self.get(actor, id).await?;
        filter.session = Some(s.id);
        filter.app = Some(s.app);
        Ok(self.store.list_executions(filter).await?)
    }

    /// Cancel an execution in a session: a waiting one ends `cancelled`
    /// at once; a running one's processes are killed and it ends
    /// `cancelled`. Answers its record once final (or as it is after a few
    /// seconds). The caller checked that `actor` may see `e`.
    pub async fn cancel(&self, actor: &Actor, e: Execution) -> R<Execution> {
        if !matches!(actor.role, Role::Admin | Role::App) {
            return Err(SessionError::Forbidden(
                "only the app that ran an execution (or an admin) may cancel it".into(),
            ));
        }
        let Some(session) = e.source.session().map(str::to_owned) else {
            return Err(SessionError::NotCancellable(format!(
                "execution {} runs a plugin: only executions in a session can be cancelled (a plugin's call ends at its timeout)",
                e.id
            )));
        };
        if e.status.is_final() {
            return Err(SessionError::NotCancellable(format!(
                "execution {} has ended ({})",
                e.id, e.status
            )));
        }
        if e.node != self.node {
            return Err(SessionError::Elsewhere {
                id: session,
                node: e.node.clone(),
            });
        }
        let live = lock(&self.live).get(&session).cloned();
        if let Some(live) = live {
            let running = {
                let mut st = live.state();
                if st.running.as_deref() == Some(e.id.as_str()) {
                    live.boxed().cancel();
                    true
                } else {
                    st.cancelled.insert(e.id.clone());
                    false
                }
            };
            if running {
                // Again while it still holds the box: a cancel sent just
                // before it took the box is discarded.
                let deadline = tokio::time::Instant::now() + CANCEL_GRACE;
                while tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let st = live.state();
                    if st.running.as_deref() != Some(e.id.as_str()) {
                        break;
                    }
                    live.boxed().cancel();
                }
            } else {
                let mut x = e.clone();
                x.status = ExecutionStatus::Cancelled;
                x.error_kind = Some(ErrorKind::Cancelled);
                x.result = Some(ExecutionResult {
                    status: warden_core::ResultStatus::Cancelled,
                    ..ExecutionResult::platform_error("Cancelled", "cancelled before it started", None)
                });
                x.finished_at = Some(now_ms());
                x.duration_ms = Some(0.0);
                if record_final(&self.store, &x).await
                    && let Some(log) = self.hub.get(&x.id)
                {
                    log.finish(
                        serde_json::to_string(&crate::views::ExecutionView::from(x.clone()))
                            .unwrap_or_default(),
                    );
                }
            }
        }
        // Its record, once final (the running one's task writes it).
        for _ in 0..100 {
            let now = self.store.get_execution(&e.id).await?;
            match now {
                Some(x) if x.status.is_final() => return Ok(x),
                Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                None => return Err(SessionError::NotFound(format!("no execution {}", e.id))),
            }
        }
        self.store
            .get_execution(&e.id)
            .await?
            .ok_or_else(|| SessionError::NotFound(format!("no execution {}", e.id)))
    }

    // ------------------------------------------------------------ files

    /// The running session's box, for a file call (counts as activity).
    async fn for_files(&self, actor: &Actor, id: &str) -> R<Arc<Live>> {
        let live = match self.live_for(actor, id) {
            Some(live) => live,
            None => {
                let s = self.get(actor, id).await?;
                self.gate()?;
                self.live_here(&s)?
            }
        };
        let now = now_ms();
        live.touch(now);
        if let Err(e) = self.store.touch_session(id, &self.node, now, 0).await {
            tracing::debug!(session = %id, error = %e, "could not record a session's activity");
        }
        Ok(live)
    }

    /// Open a regular file of the workspace for reading (never through a
    /// link, never a FIFO or a device).
    pub async fn open_file(&self, actor: &Actor, id: &str, raw: &str) -> R<OpenFile> {
        let path = checked(raw, "path:path")?;
        let live = self.for_files(actor, id).await?;
        let p = path.clone();
        let boxed = live.boxed();
        let (file, size) = blocking(move || boxed.workspace().open_file(&p))
            .await?
            .map_err(SessionError::File)?;
        Ok(OpenFile { file, size, path })
    }

    /// The entries of a workspace directory (`None`: the workspace).
    pub async fn list_files(
        &self,
        actor: &Actor,
        id: &str,
        raw: Option<&str>,
    ) -> R<(String, Vec<EntryInfo>, bool)> {
        let path = match raw {
            Some(raw) => checked(raw, "query:path")?,
            None => PathBuf::new(),
        };
        let live = self.for_files(actor, id).await?;
        let p = path.clone();
        let boxed = live.boxed();
        let (entries, more) = blocking(move || boxed.workspace().read_dir(&p, MAX_LIST_ENTRIES))
            .await?
            .map_err(SessionError::File)?;
        Ok((files::shown(&path), entries, more))
    }

    /// Remove a file, link or directory tree of the workspace (a link is
    /// removed, never followed).
    pub async fn remove_file(&self, actor: &Actor, id: &str, raw: &str) -> R<()> {
        let path = checked(raw, "path:path")?;
        let live = self.for_files(actor, id).await?;
        let _writing = live.writes.read().await;
        let boxed = live.boxed();
        blocking(move || boxed.workspace().remove(&path, EmptyBudget::default()))
            .await?
            .map_err(SessionError::File)
    }

    /// Make a directory of the workspace, and its missing parents.
    pub async fn make_dir(&self, actor: &Actor, id: &str, raw: &str, location: &str) -> R<Written> {
        let path = checked(raw, location)?;
        let live = self.for_files(actor, id).await?;
        let _writing = live.writes.read().await;
        let boxed = live.boxed();
        let p = path.clone();
        let (entry, created) = blocking(move || {
            let ws = boxed.workspace();
            let created = make_dirs(ws, &p)?;
            Ok::<_, BoxFileError>((ws.stat(&p)?, created))
        })
        .await?
        .map_err(SessionError::File)?;
        Ok(Written {
            entry,
            created,
            path: files::shown(&path),
        })
    }

    /// Write a file of the workspace from `body` (at most
    /// `sessions.max_upload_bytes`), making missing parent directories; a
    /// link, FIFO or directory in its place is refused. A failed upload
    /// leaves no partial file.
    pub async fn write_file<S>(
        &self,
        actor: &Actor,
        id: &str,
        raw: &str,
        location: &str,
        body: S,
    ) -> R<Written>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Send,
    {
        let path = checked(raw, location)?;
        let live = self.for_files(actor, id).await?;
        let _writing = live.writes.read().await;
        let boxed = live.boxed();
        let cap = self.settings.max_upload_bytes;
        let (tx, mut reader) = files::ChunkReader::new();
        let p = path.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let ws = boxed.workspace();
            let existed = match ws.stat(&p) {
                Ok(info) if info.kind == EntryKind::Directory => {
                    return Err(BoxFileError::NotRegular {
                        path: files::shown(&p),
                        kind: "a directory",
                    });
                }
                Ok(_) => true,
                Err(BoxFileError::NotFound(_)) => false,
                Err(e) => return Err(e),
            };
            if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                make_dirs(ws, parent)?;
            }
            let written = ws.write_file(&p, &mut reader, cap);
            match written {
                Ok(_) => Ok((ws.stat(&p)?, !existed)),
                Err(e) => {
                    // A file this upload created does not stay half-written.
                    if !existed {
                        let _ = ws.remove(&p, EmptyBudget::default());
                    }
                    Err(e)
                }
            }
        });
        let mut body = std::pin::pin!(body);
        let mut broken = None;
        // Once the writer has stopped (a refusal, a full disk), the rest of
        // the body is still read, up to the cap, so the client gets the
        // answer on a connection it can reuse.
        let (mut read, mut writing) = (0u64, true);
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    read += bytes.len() as u64;
                    if writing && tx.send(Ok(bytes)).await.is_err() {
                        writing = false;
                    }
                    if !writing && read > cap {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.message.clone()))).await;
                    broken = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let wrote = writer
            .await
            .map_err(|e| SessionError::Internal(format!("an upload's writer failed: {e}")))?;
        if let Some(b) = broken {
            return Err(if b.too_large {
                SessionError::TooLarge(b.message)
            } else {
                SessionError::Body(format!("the upload's body could not be read: {}", b.message))
            });
        }
        let (entry, created) = wrote.map_err(|e| match e {
            BoxFileError::TooLarge { limit, .. } => SessionError::TooLarge(format!(
                "the upload is larger than {limit} bytes (sessions.max_upload_bytes)"
            )),
            e => SessionError::File(e),
        })?;
        Ok(Written {
            entry,
            created,
            path: files::shown(&path),
        })
    }

    /// The largest upload, bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.settings.max_upload_bytes
    }

    /// The longest wait of a synchronous execution request.
    pub fn sync_wait(&self) -> Duration {
        Duration::from_secs(self.settings.sync_wait_secs)
    }
}

/// The error for a session whose state does not allow a call.
fn state_error(s: &Session) -> SessionError {
    let detail = match s.status {
        SessionStatus::Creating => format!("session {} is still starting; retry shortly", s.id),
        SessionStatus::Running => format!("session {} is running", s.id),
        ended => format!(
            "session {} has ended ({ended}{})",
            s.id,
            s.status_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
    };
    SessionError::State {
        status: s.status,
        detail,
    }
}

/// Make an execution record final with `end` (a session that ended under
/// it).
fn ended(exec: &mut Execution, end: &End, wall_ms: Option<f64>) {
    exec.status = end.status;
    exec.error_kind = Some(end.kind);
    let mut result = exec
        .result
        .take()
        .unwrap_or_else(|| ExecutionResult::platform_error("", "", None));
    result.status = match end.status {
        ExecutionStatus::Cancelled => warden_core::ResultStatus::Cancelled,
        _ => warden_core::ResultStatus::Error,
    };
    let kind = match end.kind {
        ErrorKind::Interrupted => "Interrupted",
        ErrorKind::SessionEnded => "SessionEnded",
        _ => "Cancelled",
    };
    result.error = Some(warden_core::ExecutionError::new(kind, end.message.clone()));
    exec.result = Some(result);
    exec.finished_at = Some(now_ms());
    if exec.duration_ms.is_none() {
        exec.duration_ms = wall_ms.or(Some(0.0));
    }
}

/// Make `dir` and its missing parents in `ws`, refusing anything else in
/// the way (a file, a link): never removing what is there. Returns whether
/// `dir` itself was made (false: it was a directory already).
fn make_dirs(ws: &warden_jail::BoxDir, dir: &Path) -> Result<bool, BoxFileError> {
    let mut at = PathBuf::new();
    let mut made = false;
    for c in dir.components() {
        at.push(c);
        match ws.stat(&at) {
            Ok(info) if info.kind == EntryKind::Directory => made = false,
            Ok(info) => {
                return Err(BoxFileError::NotDirectory {
                    path: files::shown(&at),
                    kind: match info.kind {
                        EntryKind::File => "a file",
                        EntryKind::Link => "a symbolic link",
                        _ => "a FIFO, socket or device",
                    },
                });
            }
            Err(BoxFileError::NotFound(_)) => {
                ws.ensure_dir(&at, 0o755)?;
                made = true;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(made)
}
