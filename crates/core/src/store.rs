//! What the platform needs from storage. `warden-store` implements both
//! traits (SQLite or PostgreSQL for records, a folder or S3 for blobs).
//!
//! Every write that changes a version's state is a compare-and-set on its
//! current state (or revision) together with its audit event, in one
//! transaction: two reviewers approving at once, or an upload racing a
//! submit, leave exactly one winner and a consistent trail.

use std::future::Future;

use serde_json::Value;

use crate::execution::{Execution, ExecutionStatus, QueuedCall};
use crate::layer::{Layer, LayerStatus};
use crate::lifecycle::VersionStatus;
use crate::model::{ApiKey, App, AuditEvent, Installation, Plugin, Version};
use crate::session::{Session, SessionFilter, SessionStatus, SessionUsage};
use crate::snapshot::{Node, Snapshot, SnapshotStatus};
use crate::template::{Template, TemplateRuntime};

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Nothing with that key.
    #[error("not found: {0}")]
    NotFound(String),
    /// It exists already.
    #[error("already exists: {0}")]
    Conflict(String),
    /// The version changed since it was read (state or revision).
    #[error("the version is now {current} (changed concurrently)")]
    Stale {
        /// Its state now.
        current: VersionStatus,
    },
    /// Still referenced (an installation uses the version, a template the
    /// layer).
    #[error("in use: {0}")]
    InUse(String),
    /// A compare-and-set found the record changed since it was read (a
    /// template's revision, a layer's state): nothing was written.
    #[error("{record} changed concurrently: it is now {now}")]
    Changed {
        /// Which record (`template python-basic`, `layer 3f…`).
        record: String,
        /// What it is now (`revision 4`, `building`).
        now: String,
    },
    /// The backend failed.
    #[error("storage backend: {0}")]
    Backend(String),
    /// A stored record does not read back: a column or document that
    /// breaks its type. Never replaced by a default.
    #[error("the stored {record} is corrupt: {reason}")]
    Corrupt {
        /// Which record (`execution exe_…`, `version ver_…`).
        record: String,
        /// What does not parse.
        reason: String,
    },
}

/// An audit event to append.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewAudit {
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Plugin concerned.
    pub plugin: Option<String>,
    /// Version concerned.
    pub version: Option<String>,
    /// State before.
    pub from_status: Option<String>,
    /// State after.
    pub to_status: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// More.
    pub detail: Value,
}

/// A package's stored facts.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageFields {
    /// The manifest.
    pub manifest: Value,
    /// SHA-256 of the package.
    pub sha256: String,
    /// Size.
    pub size: i64,
    /// Canonical file list.
    pub files: Value,
    /// Who uploaded it.
    pub uploaded_by: String,
}

/// An app's installation of a plugin with the versions it may run, read
/// together with the plugin's registry generation in one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    /// The installation.
    pub installation: Installation,
    /// The pinned version (whatever its state), or every active version
    /// when the installation follows the latest.
    pub versions: Vec<Version>,
    /// The plugin's generation when this was read (see [`Generation`]).
    pub generation: Generation,
}

/// A plugin's registry generation: a number the store moves on every write
/// that can change what any app's call of the plugin resolves to (an
/// installation added, re-pinned or removed; a version's state, package,
/// signature or trust level changed; a version deleted). A resolution read
/// at one generation is still right exactly while the generation has not
/// moved, on every node sharing the store, so it can be kept between
/// requests and checked in the same statement that records the next
/// execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The plugin's code.
    pub plugin: String,
    /// The number read.
    pub number: i64,
}

/// A new version (and its plugin, on the first upload).
#[derive(Debug, Clone, PartialEq)]
pub struct NewVersion {
    /// Plugin code.
    pub plugin: String,
    /// Owner, for a plugin created by this upload.
    pub owner: String,
    /// Plugin name.
    pub name: String,
    /// Plugin description.
    pub description: String,
    /// Semantic version.
    pub version: String,
    /// The package.
    pub package: PackageFields,
}

/// A state change, applied only if the version is still where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The state it was read in.
    pub from: VersionStatus,
    /// The revision it was read at.
    pub revision: i64,
    /// The new state.
    pub to: VersionStatus,
    /// Why (rejections, failures); stored as the version's status reason.
    pub reason: Option<String>,
    /// A new reviewers' report, if any (the old one stays otherwise).
    pub report: Option<Value>,
    /// A new trust level, if any (the old one stays otherwise).
    pub trust_level: Option<crate::tier::TrustLevel>,
}

/// Figures for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Versions per state.
    pub versions: Vec<(VersionStatus, u64)>,
    /// Plugins with at least one active version.
    pub active_plugins: u64,
    /// Plugins with at least one active version, per trust level of their
    /// active versions (a plugin counts once per level it has active).
    pub active_by_trust: Vec<(crate::tier::TrustLevel, u64)>,
}

/// A page of results, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// Items.
    pub items: Vec<T>,
    /// Pass back to get the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// Filters for listing plugins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginFilter {
    /// Substring of the code, name or description.
    pub search: Option<String>,
    /// Only this owner's.
    pub owner: Option<String>,
    /// Continue after this code.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// Filters for listing executions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionFilter {
    /// Only this app's.
    pub app: Option<String>,
    /// Only this plugin's.
    pub plugin: Option<String>,
    /// Only this version's.
    pub version: Option<String>,
    /// Only this session's.
    pub session: Option<String>,
    /// Only in this state.
    pub status: Option<ExecutionStatus>,
    /// Created at or after.
    pub since: Option<i64>,
    /// Created before.
    pub until: Option<i64>,
    /// Continue after this id.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// Filters for listing audit events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Only this plugin's.
    pub plugin: Option<String>,
    /// Only this version's.
    pub version: Option<String>,
    /// Only this actor's.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// At or after.
    pub since: Option<i64>,
    /// Before.
    pub until: Option<i64>,
    /// Continue after this id.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// Filters for listing templates (by id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateFilter {
    /// Only this runtime's.
    pub runtime: Option<TemplateRuntime>,
    /// Continue after this id.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// Filters for listing dependency layers (by id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerFilter {
    /// Only in this state.
    pub status: Option<LayerStatus>,
    /// Only those not bound into a box since this time (Unix ms; a layer
    /// never used counts from its creation).
    pub unused_since: Option<i64>,
    /// Continue after this id.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// Filters for listing snapshots (newest first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotFilter {
    /// Only this app's.
    pub app: Option<String>,
    /// Only of this session.
    pub session: Option<String>,
    /// Only in this state.
    pub status: Option<SnapshotStatus>,
    /// Continue after (before, in time) this id.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
}

type R<T> = Result<T, StoreError>;

/// A session's state change, applied only if it is still in one of `from`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionMove {
    /// The states it may be in (it is read in one of them).
    pub from: Vec<SessionStatus>,
    /// The new state.
    pub to: SessionStatus,
    /// Why (stored as its status reason; every final state has one).
    pub reason: Option<String>,
    /// When, Unix ms: `started_at` when it starts running, `ended_at` when
    /// it ends.
    pub at: i64,
    /// Only if the session is still this node's: a node never writes over
    /// a session another node has claimed (`None`: whichever node holds it).
    pub node: Option<String>,
}

/// Records: plugins, versions, apps, installations, executions, templates
/// and layers, sessions, audit, keys.
pub trait Store: Send + Sync + 'static {
    /// The backend answers.
    fn ping(&self) -> impl Future<Output = R<()>> + Send;

    /// Insert a Draft version (and its plugin when new). `Conflict` when the
    /// version exists.
    fn create_version(&self, new: NewVersion, audit: NewAudit) -> impl Future<Output = R<Version>> + Send;
    /// Replace a version's package if its revision is still `revision`,
    /// moving it to `to` (with an optional new report).
    fn replace_package(
        &self,
        id: &str,
        revision: i64,
        to: VersionStatus,
        package: PackageFields,
        report: Option<Value>,
        audit: NewAudit,
    ) -> impl Future<Output = R<Version>> + Send;
    /// Apply `t` to a version if it is still in `t.from` at `t.revision` (so
    /// a decision made on one package never lands on another). `Stale` with
    /// its current state otherwise.
    fn set_status(&self, id: &str, t: Transition, audit: NewAudit)
    -> impl Future<Output = R<Version>> + Send;
    /// Delete a version unless an installation uses it.
    fn delete_version(&self, id: &str, audit: NewAudit) -> impl Future<Output = R<()>> + Send;
    /// One plugin.
    fn get_plugin(&self, code: &str) -> impl Future<Output = R<Option<Plugin>>> + Send;
    /// Plugins by code.
    fn list_plugins(&self, filter: PluginFilter) -> impl Future<Output = R<Page<Plugin>>> + Send;
    /// One version.
    fn get_version(&self, plugin: &str, version: &str) -> impl Future<Output = R<Option<Version>>> + Send;
    /// All versions of a plugin.
    fn list_versions(&self, plugin: &str) -> impl Future<Output = R<Vec<Version>>> + Send;

    /// Append an audit event.
    fn append_audit(&self, audit: NewAudit) -> impl Future<Output = R<AuditEvent>> + Send;
    /// Audit events, newest first.
    fn list_audit(&self, filter: AuditFilter) -> impl Future<Output = R<Page<AuditEvent>>> + Send;

    /// Create an app. `Conflict` when it exists.
    fn create_app(&self, app: App, audit: NewAudit) -> impl Future<Output = R<App>> + Send;
    /// One app.
    fn get_app(&self, id: &str) -> impl Future<Output = R<Option<App>>> + Send;
    /// All apps.
    fn list_apps(&self) -> impl Future<Output = R<Vec<App>>> + Send;
    /// Install a plugin in an app. `Conflict` when it is installed.
    fn install(&self, inst: Installation, audit: NewAudit) -> impl Future<Output = R<Installation>> + Send;
    /// Change an installation's pin.
    fn update_installation(
        &self,
        id: &str,
        pinned: Option<String>,
        audit: NewAudit,
    ) -> impl Future<Output = R<Installation>> + Send;
    /// Remove an installation.
    fn uninstall(&self, id: &str, audit: NewAudit) -> impl Future<Output = R<()>> + Send;
    /// An app's installation of a plugin.
    fn get_installation(
        &self,
        app: &str,
        plugin: &str,
    ) -> impl Future<Output = R<Option<Installation>>> + Send;
    /// An app's installation of a plugin with the versions it may run and
    /// the plugin's generation, in one round trip: the pinned version
    /// (whatever its state), or every active version when it follows the
    /// latest. What the run path never reads is not loaded: `report` is
    /// `None` and `files` is `Null`.
    fn installed_versions(
        &self,
        app: &str,
        plugin: &str,
    ) -> impl Future<Output = R<Option<Installed>>> + Send;
    /// An app's installations.
    fn list_installations(&self, app: &str) -> impl Future<Output = R<Vec<Installation>>> + Send;

    /// Record an accepted execution (before it runs).
    fn insert_execution(&self, e: Execution) -> impl Future<Output = R<()>> + Send;
    /// Record an accepted execution only while the plugin is still at
    /// generation `at`, in one statement; false (nothing recorded) when the
    /// generation moved or the plugin is gone: the caller's resolution is
    /// out of date.
    fn insert_execution_at(&self, e: Execution, at: &Generation) -> impl Future<Output = R<bool>> + Send;
    /// Record an accepted async execution together with what it needs to
    /// start, in one transaction: from then on it is in the durable queue,
    /// whatever happens to the process that accepted it.
    fn enqueue_execution(&self, e: Execution, call: QueuedCall) -> impl Future<Output = R<()>> + Send;
    /// [`Store::enqueue_execution`] only while the plugin is still at
    /// generation `at`; false (nothing recorded) otherwise.
    fn enqueue_execution_at(
        &self,
        e: Execution,
        call: QueuedCall,
        at: &Generation,
    ) -> impl Future<Output = R<bool>> + Send;
    /// Take the queued execution `id` for `node`, starting it at `at`: its
    /// queue entry goes, it becomes `running` on `node`. False when it was
    /// no longer queued (another node took it, or it ended). Atomic: of any
    /// number of claims on one execution, at most one returns true.
    fn claim_execution(&self, id: &str, node: &str, at: i64) -> impl Future<Output = R<bool>> + Send;
    /// Take the oldest queued execution for `node` (any node's: nodes
    /// sharing a database share the queue), starting it at `at`. Atomic as
    /// [`Store::claim_execution`]; on PostgreSQL, nodes claiming at once
    /// skip each other's locked rows instead of waiting for them.
    fn claim_next_execution(
        &self,
        node: &str,
        at: i64,
    ) -> impl Future<Output = R<Option<(Execution, QueuedCall)>>> + Send;
    /// Update an execution's state and result, only while it is unfinished
    /// (`queued` or `running`): a final record never changes. Its queue
    /// entry, if any, goes once it is no longer queued. Returns whether it
    /// was updated; `NotFound` when there is no such execution.
    ///
    /// The update that makes a session's execution final also records the
    /// session's activity in the same statement, as [`Store::touch_session`]
    /// would from the execution's node: `last_active_at` moves to its
    /// `finished_at`, and `executions` grows by one if it started.
    fn update_execution(&self, e: Execution) -> impl Future<Output = R<bool>> + Send;
    /// One execution.
    fn get_execution(&self, id: &str) -> impl Future<Output = R<Option<Execution>>> + Send;
    /// Executions, newest first.
    fn list_executions(&self, filter: ExecutionFilter) -> impl Future<Output = R<Page<Execution>>> + Send;
    /// Mark `node`'s started executions interrupted (at start-up: they
    /// belonged to a process that is gone), and its queued ones that cannot
    /// start (not in the queue, e.g. sync calls). Queued executions in the
    /// queue stay there, for any node to start. Returns how many were
    /// marked.
    fn interrupt_unfinished(&self, node: &str, reason: &str) -> impl Future<Output = R<u64>> + Send;
    /// Record a new session (normally `creating`). `Conflict` when its id
    /// exists.
    fn insert_session(&self, s: Session) -> impl Future<Output = R<()>> + Send;
    /// One session.
    fn get_session(&self, id: &str) -> impl Future<Output = R<Option<Session>>> + Send;
    /// Sessions, newest first.
    fn list_sessions(&self, filter: SessionFilter) -> impl Future<Output = R<Page<Session>>> + Send;
    /// Move session `id` to `m.to` if it is still in one of `m.from`
    /// (compare-and-set): the session as moved, or `None` when it was not
    /// in `m.from` (another request or node moved it first). `NotFound`
    /// when there is no such session.
    fn move_session(&self, id: &str, m: SessionMove) -> impl Future<Output = R<Option<Session>>> + Send;
    /// Record activity in a live session `node` holds (nothing when another
    /// node has claimed it): `last_active_at` becomes `at`
    /// (never earlier than it was) and `executions` grows by `executions`.
    fn touch_session(
        &self,
        id: &str,
        node: &str,
        at: i64,
        executions: u64,
    ) -> impl Future<Output = R<()>> + Send;
    /// Point the running session `id`, held by `node`, at dependency layer
    /// `layer` (packages installed into it): false when it is no longer
    /// running there.
    fn set_session_layer(
        &self,
        id: &str,
        node: &str,
        layer: Option<&str>,
    ) -> impl Future<Output = R<bool>> + Send;
    /// Delete an ended session's record (its executions stay). False when
    /// there is no such session; `Conflict` while it is live.
    fn delete_session(&self, id: &str) -> impl Future<Output = R<bool>> + Send;
    /// Live sessions (`creating`, `running`) and what they reserved, of
    /// `app` (or of every app), on every node.
    fn session_usage(&self, app: Option<&str>) -> impl Future<Output = R<SessionUsage>> + Send;
    /// Mark `node`'s live sessions `lost` with `reason` at `at` (at start-up:
    /// their boxes died with the process that ran them). Returns how many.
    fn lose_sessions(&self, node: &str, reason: &str, at: i64) -> impl Future<Output = R<u64>> + Send;
    /// Move a live session from node `from` to node `to` (compare-and-set
    /// on its node: of several nodes taking over a dead one's session, one
    /// wins). True for the winner.
    fn claim_session(&self, id: &str, from: &str, to: &str) -> impl Future<Output = R<bool>> + Send;
    /// [`Store::claim_session`] of a dead node's session, only while that
    /// node's latest heartbeat is older than `beat_before` (Unix ms): a node
    /// that beat again in the meantime keeps its session. True for the
    /// winner.
    fn claim_dead_session(
        &self,
        id: &str,
        from: &str,
        to: &str,
        beat_before: i64,
    ) -> impl Future<Output = R<bool>> + Send;

    /// Versions per state, and how many plugins have an active version.
    fn counts(&self) -> impl Future<Output = R<Counts>> + Send;

    /// Store a new key.
    fn insert_key(&self, key: ApiKey, audit: NewAudit) -> impl Future<Output = R<()>> + Send;
    /// A live (not revoked) key by the hash of its secret.
    fn find_key_by_hash(&self, hash: &str) -> impl Future<Output = R<Option<ApiKey>>> + Send;
    /// Revoke a key. False when it did not exist or was revoked already.
    fn revoke_key(&self, id: &str, audit: NewAudit) -> impl Future<Output = R<bool>> + Send;
    /// Revoke a key unless it is the last live admin key, atomically: two
    /// revocations racing on several nodes never leave no admin key.
    fn revoke_key_keeping_an_admin(
        &self,
        id: &str,
        audit: NewAudit,
    ) -> impl Future<Output = R<Revoked>> + Send;
    /// All keys (hashes are never returned).
    fn list_keys(&self) -> impl Future<Output = R<Vec<ApiKey>>> + Send;

    /// Register a publisher's signing key with its audit event (a conflict
    /// when its id is registered already).
    fn insert_signing_key(
        &self,
        key: crate::signing::SigningKey,
        audit: NewAudit,
    ) -> impl Future<Output = R<()>> + Send;
    /// One signing key, revoked or not.
    fn get_signing_key(&self, id: &str)
    -> impl Future<Output = R<Option<crate::signing::SigningKey>>> + Send;
    /// Every signing key, or one owner's.
    fn list_signing_keys(
        &self,
        owner: Option<&str>,
    ) -> impl Future<Output = R<Vec<crate::signing::SigningKey>>> + Send;
    /// Revoke a live signing key and demote the trusted versions it signed
    /// to untrusted, atomically: how many were demoted, `None` when no live
    /// key has `id`.
    fn revoke_signing_key(&self, id: &str, audit: NewAudit) -> impl Future<Output = R<Option<u64>>> + Send;
    /// Attach a signature (and the id of its key) to a draft or pending
    /// version still at `revision`.
    fn set_signature(
        &self,
        id: &str,
        revision: i64,
        signature: &str,
        signed_by: &str,
        audit: NewAudit,
    ) -> impl Future<Output = R<Version>> + Send;

    /// Store an app's credential, or its installation's when `c.plugin` is
    /// set (its secret sealed already), replacing the one of that name,
    /// with its audit event; true when it is new.
    fn put_credential(
        &self,
        c: crate::credential::Credential,
        audit: NewAudit,
    ) -> impl Future<Output = R<bool>> + Send;
    /// One credential of an app.
    fn get_credential(
        &self,
        app: &str,
        name: &str,
    ) -> impl Future<Output = R<Option<crate::credential::Credential>>> + Send;
    /// One credential of an app's installation of `plugin`.
    fn get_installation_credential(
        &self,
        app: &str,
        plugin: &str,
        name: &str,
    ) -> impl Future<Output = R<Option<crate::credential::Credential>>> + Send;
    /// The credentials of an app's installation of `plugin`, by name.
    fn list_installation_credentials(
        &self,
        app: &str,
        plugin: &str,
    ) -> impl Future<Output = R<Vec<crate::credential::Credential>>> + Send;
    /// Delete a credential of an app's installation of `plugin` with its
    /// audit event; false when there was none.
    fn delete_installation_credential(
        &self,
        app: &str,
        plugin: &str,
        name: &str,
        audit: NewAudit,
    ) -> impl Future<Output = R<bool>> + Send;
    /// An app's credentials, by name.
    fn list_credentials(
        &self,
        app: &str,
    ) -> impl Future<Output = R<Vec<crate::credential::Credential>>> + Send;
    /// Delete an app's credential with its audit event; false when there
    /// was none.
    fn delete_credential(
        &self,
        app: &str,
        name: &str,
        audit: NewAudit,
    ) -> impl Future<Output = R<bool>> + Send;

    /// Insert a template as given (revision 1 normally) with its audit
    /// event. `Conflict` when the id is taken.
    fn insert_template(&self, t: Template, audit: NewAudit) -> impl Future<Output = R<Template>> + Send;
    /// One template.
    fn get_template(&self, id: &str) -> impl Future<Output = R<Option<Template>>> + Send;
    /// Templates by id.
    fn list_templates(&self, filter: TemplateFilter) -> impl Future<Output = R<Page<Template>>> + Send;
    /// Replace the spec of template `t.id` (name, description, runtime,
    /// packages, env, resources, network, files; and `updated_at`) if it is
    /// still at revision `t.revision`, with its audit event: the stored
    /// revision becomes `t.revision + 1`. Its layer stays when
    /// `keep_layer` (the packages need the same layer), else it is
    /// cleared; whatever `t.layer` says. `Changed` naming the revision it
    /// is at when it moved, `NotFound` when it is gone.
    fn update_template(
        &self,
        t: Template,
        keep_layer: bool,
        audit: NewAudit,
    ) -> impl Future<Output = R<Template>> + Send;
    /// Delete a template with its audit event. `Conflict` for a built-in,
    /// `NotFound` when there is none.
    fn delete_template(&self, id: &str, audit: NewAudit) -> impl Future<Output = R<()>> + Send;
    /// Point template `id` at `layer` (or at none) if it is still at
    /// `revision` (the packages the layer was built for), with its audit
    /// event. The layer must exist (`NotFound`) and be ready (`Conflict`);
    /// the revision does not change. `Changed` when the revision moved.
    fn set_template_layer(
        &self,
        id: &str,
        revision: i64,
        layer: Option<&str>,
        audit: NewAudit,
    ) -> impl Future<Output = R<Template>> + Send;

    /// Insert a layer unless one with its id exists: the stored layer, and
    /// whether this call created it. Of concurrent inserts of one id,
    /// exactly one creates it (builds of the same layer coalesce).
    fn insert_layer(&self, layer: Layer) -> impl Future<Output = R<(Layer, bool)>> + Send;
    /// One layer.
    fn get_layer(&self, id: &str) -> impl Future<Output = R<Option<Layer>>> + Send;
    /// Write `layer`'s state and build results (status, error, log cut to
    /// `layer::LOG_CAP`, lock, size, node, built_at) if the stored layer is
    /// still in `from`: a compare-and-set, so of two builders claiming a
    /// queued layer one wins. `Conflict` for a move
    /// [`LayerStatus::can_move`] refuses, `Changed` naming its state when
    /// it is no longer in `from`, `NotFound`.
    fn update_layer(&self, from: LayerStatus, layer: Layer) -> impl Future<Output = R<Layer>> + Send;
    /// Record that layer `id` was bound into a box at `at` (the time never
    /// moves back). False when there is no such layer.
    fn touch_layer(&self, id: &str, at: i64) -> impl Future<Output = R<bool>> + Send;
    /// Layers by id.
    fn list_layers(&self, filter: LayerFilter) -> impl Future<Output = R<Page<Layer>>> + Send;
    /// Delete a layer no template points at (`InUse` otherwise). False
    /// when there was none.
    fn delete_layer(&self, id: &str) -> impl Future<Output = R<bool>> + Send;

    /// Record a new snapshot (in `creating`).
    fn insert_snapshot(&self, s: Snapshot) -> impl Future<Output = R<()>> + Send;
    /// Write a snapshot's state and results if it is still in `from`
    /// (`Changed` when it moved meanwhile, `Conflict` for a move
    /// [`SnapshotStatus::can_move`] refuses).
    fn update_snapshot(&self, from: SnapshotStatus, s: Snapshot) -> impl Future<Output = R<Snapshot>> + Send;
    /// One snapshot.
    fn get_snapshot(&self, id: &str) -> impl Future<Output = R<Option<Snapshot>>> + Send;
    /// Snapshots, newest first.
    fn list_snapshots(&self, filter: SnapshotFilter) -> impl Future<Output = R<Page<Snapshot>>> + Send;
    /// The newest ready snapshot of a session.
    fn latest_snapshot(&self, session: &str) -> impl Future<Output = R<Option<Snapshot>>> + Send;
    /// Forget a snapshot; false when there is none.
    fn delete_snapshot(&self, id: &str) -> impl Future<Output = R<bool>> + Send;

    /// Record a node's heartbeat (and its address and version), creating it
    /// on its first.
    fn heartbeat(&self, node: Node) -> impl Future<Output = R<()>> + Send;
    /// One node.
    fn get_node(&self, id: &str) -> impl Future<Output = R<Option<Node>>> + Send;
    /// Every node that ever beat, by id.
    fn list_nodes(&self) -> impl Future<Output = R<Vec<Node>>> + Send;
}

/// What [`Store::revoke_key_keeping_an_admin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The key is revoked.
    Done,
    /// No live key by that id.
    NotFound,
    /// It is the last live admin key: left alone.
    LastAdmin,
}

/// Package blobs, content-addressed by their SHA-256.
pub trait Blobs: Send + Sync + 'static {
    /// Store bytes under `key`.
    fn put(&self, key: &str, data: Vec<u8>) -> impl Future<Output = R<()>> + Send;
    /// Bytes under `key`, if any.
    fn get(&self, key: &str) -> impl Future<Output = R<Option<Vec<u8>>>> + Send;
    /// A value that changes whenever the blob under `key` is rewritten
    /// (`None` if there is none): lets a verified blob skip re-hashing until
    /// it changes.
    fn stamp(&self, key: &str) -> impl Future<Output = R<Option<String>>> + Send;
}
