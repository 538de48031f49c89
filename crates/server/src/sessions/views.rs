//! What the sessions API takes and returns: request bodies, query
//! parameters and views with their OpenAPI schemas, built from the core's
//! records. Parsing stops at types; the checks that depend on the template
//! and the server's policy are the core's (`warden_core::session`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use warden_core::session::NewSession;
use warden_core::{Session, SessionResources, SessionStatus, Snapshot, SnapshotStatus, SnapshotTrigger};
use warden_jail::{EntryInfo, EntryKind};

use crate::templates::PackageView;
use crate::views::{LanguageName, Mode, RunModeName};

/// A template id, as a regular expression.
pub const TEMPLATE_ID_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";

/// A session id, as a regular expression.
pub const SESSION_ID_PATTERN: &str = "^ses_[0-9a-f]{24,32}$";

/// A new session. Everything is optional: the template gives the defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSessionBody {
    /// The template to start from (`python-basic` when absent).
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub template: Option<String>,
    /// The app the session belongs to. Admin keys name it; an app key's
    /// sessions are its own app's (naming another app is 403).
    #[schema(pattern = "^[a-z][a-z0-9-]{1,62}$")]
    pub app: Option<String>,
    /// Resources of the session as a whole (each within the server's
    /// `sessions.max_*`; absent: the template's).
    pub resources: Option<ResourcesBody>,
    /// Idle this long (no execution, no file call), the session expires.
    #[schema(minimum = 1)]
    pub idle_timeout_secs: Option<u64>,
    /// The session expires this long after it was created, whatever it does.
    #[schema(minimum = 1)]
    pub max_lifetime_secs: Option<u64>,
    /// Environment of every execution, added to the template's (names:
    /// letters, digits, `_`; the platform's own, `LD_*` and `WARDEN_*` are
    /// refused).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Network: hosts the session may reach through the egress proxy, the
    /// template's allow-list or part of it (absent: the template's; the
    /// built-in templates allow none).
    pub network: Option<NetworkBody>,
    /// Extra packages for this session, of the template's ecosystem (pip
    /// for python, npm for node; none for shell), in the templates'
    /// grammar: installed with the template's into a layer of the
    /// session's own (built before the answer; shared by sessions asking
    /// for the same; deleted when the last of them ends). A package the
    /// template has already is refused.
    #[serde(default)]
    #[schema(value_type = Vec<PackageBody>)]
    pub packages: Vec<Value>,
    /// Start from this snapshot (of one of the app's sessions): its files
    /// are restored into the workspace before the session runs, and its
    /// template is the default one.
    #[schema(pattern = "^snp_[0-9a-f]{24,32}$")]
    pub snapshot: Option<String>,
}

/// An extra package a session asks for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageBody {
    /// `pip` (python templates) or `npm` (node templates).
    pub ecosystem: crate::templates::EcosystemName,
    /// The package's name (PEP 508 for pip, npm's rules for npm).
    pub name: String,
    /// A PEP 440 specifier (`==1.16.0`, `>=2,<3`) or an npm range or
    /// dist-tag; absent: the newest.
    pub version: Option<String>,
    /// Accepted hashes (pip `sha256:<64 hex>`, npm `sha512-…`); with
    /// hashes the version must be exact.
    #[serde(default)]
    pub hashes: Vec<String>,
}

/// Resources asked for.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesBody {
    /// CPU bandwidth, cores.
    #[schema(minimum = 0.1)]
    pub cpu_cores: Option<f64>,
    /// Memory of all the session's processes together, MiB.
    #[schema(minimum = 64)]
    pub memory_mb: Option<u64>,
    /// Size of the workspace, MiB.
    #[schema(minimum = 1)]
    pub disk_mb: Option<u64>,
    /// Processes and threads together.
    #[schema(minimum = 32)]
    pub pids: Option<u32>,
}

/// A network allow-list.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkBody {
    /// `host` or `host:port` entries (`*.example.com` covers subdomains).
    #[schema(max_items = 64)]
    pub allow: Vec<String>,
}

impl NewSessionBody {
    /// The core's request.
    pub fn into_request(self) -> (Option<String>, NewSession) {
        let r = self.resources.unwrap_or_default();
        (
            self.app,
            NewSession {
                template: self.template,
                cpu_cores: r.cpu_cores,
                memory_mb: r.memory_mb,
                disk_mb: r.disk_mb,
                pids: r.pids,
                idle_timeout_secs: self.idle_timeout_secs,
                max_lifetime_secs: self.max_lifetime_secs,
                env: self.env,
                network: self.network.map(|n| n.allow),
                packages: self.packages,
                snapshot: self.snapshot,
            },
        )
    }
}

/// The states of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatusName {
    /// Recorded; its box is starting.
    Creating,
    /// Its box runs.
    Running,
    /// Ended on request (or the server stopped).
    Terminated,
    /// Ended by its idle timeout or max lifetime.
    Expired,
    /// Its box could not start or died.
    Failed,
    /// Its server went away while it was live.
    Lost,
}

impl From<SessionStatus> for SessionStatusName {
    /// Exhaustive both ways: a new state in the core fails to compile here
    /// until the document names it.
    fn from(s: SessionStatus) -> Self {
        match s {
            SessionStatus::Creating => SessionStatusName::Creating,
            SessionStatus::Running => SessionStatusName::Running,
            SessionStatus::Terminated => SessionStatusName::Terminated,
            SessionStatus::Expired => SessionStatusName::Expired,
            SessionStatus::Failed => SessionStatusName::Failed,
            SessionStatus::Lost => SessionStatusName::Lost,
        }
    }
}

impl From<SessionStatusName> for SessionStatus {
    fn from(s: SessionStatusName) -> Self {
        match s {
            SessionStatusName::Creating => SessionStatus::Creating,
            SessionStatusName::Running => SessionStatus::Running,
            SessionStatusName::Terminated => SessionStatus::Terminated,
            SessionStatusName::Expired => SessionStatus::Expired,
            SessionStatusName::Failed => SessionStatus::Failed,
            SessionStatusName::Lost => SessionStatus::Lost,
        }
    }
}

/// A session's resources.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionResourcesView {
    /// CPU bandwidth, cores.
    pub cpu_cores: f64,
    /// Memory of the whole session, MiB.
    pub memory_mb: u64,
    /// Size of the workspace, MiB.
    pub disk_mb: u64,
    /// Processes and threads.
    pub pids: u32,
}

impl From<SessionResources> for SessionResourcesView {
    fn from(r: SessionResources) -> Self {
        SessionResourcesView {
            cpu_cores: r.cpu_cores,
            memory_mb: r.memory_mb,
            disk_mb: r.disk_mb,
            pids: r.pids,
        }
    }
}

/// A session's network.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionNetworkView {
    /// Hosts it may reach through the egress proxy; empty: none.
    pub allow: Vec<String>,
}

/// A sandbox session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// Session id.
    pub id: String,
    /// The app that owns it.
    pub app: String,
    /// The template it started from.
    pub template: String,
    /// Its state.
    #[schema(inline)]
    pub status: SessionStatusName,
    /// Why it is in this state (always set once it has ended).
    pub status_reason: Option<String>,
    /// Its resources.
    pub resources: SessionResourcesView,
    /// Idle timeout, seconds.
    pub idle_timeout_secs: u64,
    /// Max lifetime, seconds.
    pub max_lifetime_secs: u64,
    /// Environment of its executions.
    pub env: BTreeMap<String, String>,
    /// Its network.
    pub network: SessionNetworkView,
    /// The dependency layer its box got, if any.
    pub layer: Option<String>,
    /// The server (node) running its box.
    pub node: String,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Its box started, Unix ms.
    pub started_at: Option<i64>,
    /// Last execution or file call recorded, Unix ms.
    pub last_active_at: i64,
    /// It expires at the latest at, Unix ms (its max lifetime).
    pub expires_at: i64,
    /// Ended, Unix ms.
    pub ended_at: Option<i64>,
    /// Executions that ended in it.
    pub executions: u64,
}

impl From<Session> for SessionView {
    fn from(s: Session) -> Self {
        SessionView {
            expires_at: s.expires_at(),
            status: s.status.into(),
            resources: s.resources.into(),
            network: SessionNetworkView { allow: s.network },
            id: s.id,
            app: s.app,
            template: s.template,
            status_reason: s.status_reason,
            idle_timeout_secs: s.idle_timeout_secs,
            max_lifetime_secs: s.max_lifetime_secs,
            env: s.env,
            layer: s.layer,
            node: s.node,
            created_at: s.created_at,
            started_at: s.started_at,
            last_active_at: s.last_active_at,
            ended_at: s.ended_at,
            executions: s.executions,
        }
    }
}

/// Filters for listing sessions.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// Only this app's (app keys: always their own).
    #[param(pattern = "^[a-z][a-z0-9-]{1,62}$")]
    pub app: Option<String>,
    /// Only those started from this template.
    pub template: Option<String>,
    /// Only in this state.
    #[param(value_type = Option<SessionStatusName>, inline)]
    pub status: Option<SessionStatusName>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Code to run in a session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExecutionBody {
    /// `python`, `javascript` or `shell`.
    #[schema(inline)]
    pub language: LanguageName,
    /// `script` (default: a program; its output and exit code), `handler`
    /// (`handler(event)`, the return value as JSON, as for plugins; python
    /// and javascript) or `repl` (a cell of the language's persistent
    /// interpreter: state persists, the last expression's value is the
    /// result; python and javascript).
    #[serde(default = "script")]
    #[schema(inline)]
    pub mode: RunModeName,
    /// The code (at most `sessions.max_code_bytes`).
    pub code: String,
    /// The event handed to `handler(event)` (handler mode only; `{}` when
    /// absent).
    #[schema(value_type = Option<Object>)]
    pub event: Option<Value>,
    /// Wall clock of this execution, ms (at most `sessions.max_timeout_ms`;
    /// `sessions.default_timeout_ms` when absent).
    #[schema(minimum = 1)]
    pub timeout_ms: Option<u64>,
    /// Environment added to the session's for this execution.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn script() -> RunModeName {
    RunModeName::Script
}

impl NewExecutionBody {
    /// The core's request.
    pub fn into_request(self) -> warden_core::session::NewSessionExecution {
        warden_core::session::NewSessionExecution {
            language: self.language.into(),
            mode: self.mode.into(),
            code: self.code,
            event: self.event,
            timeout_ms: self.timeout_ms,
            env: self.env,
        }
    }
}

/// How to run an execution in a session.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionExecuteQuery {
    /// `sync` (default: answer with the finished execution, waiting at most
    /// `sessions.sync_wait_secs`, then 202) or `async` (answer 202 at once;
    /// poll or stream the execution).
    #[param(inline)]
    pub mode: Option<Mode>,
}

/// Filters for listing a session's executions.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionExecutionQuery {
    /// Only in this state.
    #[param(value_type = Option<crate::views::StatusName>, inline)]
    pub status: Option<warden_core::ExecutionStatus>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// The kinds of workspace entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryKindName {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (shown, never followed: reading or writing through
    /// it is refused).
    Link,
    /// A FIFO, socket or device (shown, never opened).
    Other,
}

/// One entry of the workspace.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileEntryView {
    /// Its name (as the box wrote it; invalid UTF-8 replaced).
    pub name: String,
    /// Its path, relative to the workspace.
    pub path: String,
    /// What it is.
    #[schema(inline)]
    pub kind: EntryKindName,
    /// Size in bytes (of the link itself, for a link).
    pub size: u64,
    /// Last modification, Unix ms.
    pub modified_at: i64,
}

impl FileEntryView {
    /// The view of `entry`, found in the directory `dir` (relative).
    pub fn of(dir: &str, entry: EntryInfo) -> FileEntryView {
        let path = if dir.is_empty() {
            entry.name.clone()
        } else {
            format!("{dir}/{}", entry.name)
        };
        FileEntryView {
            kind: match entry.kind {
                EntryKind::File => EntryKindName::File,
                EntryKind::Directory => EntryKindName::Directory,
                EntryKind::Link => EntryKindName::Link,
                EntryKind::Other => EntryKindName::Other,
            },
            name: entry.name,
            path,
            size: entry.size,
            modified_at: entry.modified_ms,
        }
    }
}

/// A directory of the workspace.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileListView {
    /// The directory, relative to the workspace (`""`: the workspace).
    pub path: String,
    /// Its entries, by name (at most 1000).
    pub entries: Vec<FileEntryView>,
    /// It holds more entries than listed.
    pub truncated: bool,
}

/// Which directory to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilesQuery {
    /// A directory relative to the workspace (absent: the workspace): `/`
    /// between names; no empty, `.` or `..` name, no control characters.
    #[param(
        max_length = 4096,
        pattern = "^([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253})(/([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253}))*$"
    )]
    pub path: Option<String>,
}

/// Where a multipart upload goes (`path` is required; the handler checks
/// the session first, so a caller who may not see it learns nothing more).
#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    /// The file's path relative to the workspace.
    pub path: Option<String>,
}

/// A multipart upload: one field, `file`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadFileForm {
    /// The file's bytes.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// A directory to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDirectoryBody {
    /// Its path relative to the workspace (`/` between names; no empty,
    /// `.` or `..` name, no control characters); missing parents are made
    /// too.
    #[schema(
        min_length = 1,
        max_length = 4096,
        pattern = "^([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253})(/([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253}))*$"
    )]
    pub path: String,
}

/// A snapshot id, as the API states it.
pub const SNAPSHOT_ID_PATTERN: &str = "^snp_[0-9a-f]{24,32}$";

/// The states of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotStatusName {
    /// Being packed and uploaded.
    Creating,
    /// In the object store: a session can start from it.
    Ready,
    /// Packing or the upload failed (`error` says why).
    Failed,
}

impl From<SnapshotStatus> for SnapshotStatusName {
    fn from(s: SnapshotStatus) -> Self {
        match s {
            SnapshotStatus::Creating => SnapshotStatusName::Creating,
            SnapshotStatus::Ready => SnapshotStatusName::Ready,
            SnapshotStatus::Failed => SnapshotStatusName::Failed,
        }
    }
}

impl From<SnapshotStatusName> for SnapshotStatus {
    fn from(s: SnapshotStatusName) -> Self {
        match s {
            SnapshotStatusName::Creating => SnapshotStatus::Creating,
            SnapshotStatusName::Ready => SnapshotStatus::Ready,
            SnapshotStatusName::Failed => SnapshotStatus::Failed,
        }
    }
}

/// Why a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotTriggerName {
    /// `POST /v1/sessions/{id}/snapshots`.
    Request,
    /// `POST /v1/sessions/{id}/terminate?snapshot=true`.
    Terminate,
    /// The node's periodic snapshot.
    Schedule,
}

impl From<SnapshotTrigger> for SnapshotTriggerName {
    fn from(t: SnapshotTrigger) -> Self {
        match t {
            SnapshotTrigger::Request => SnapshotTriggerName::Request,
            SnapshotTrigger::Terminate => SnapshotTriggerName::Terminate,
            SnapshotTrigger::Schedule => SnapshotTriggerName::Schedule,
        }
    }
}

/// A session's workspace, saved in the object store.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SnapshotView {
    /// Snapshot id.
    pub id: String,
    /// The app that owns it.
    pub app: String,
    /// The session it was taken of.
    pub session: String,
    /// That session's template (a session started from the snapshot gets
    /// it unless it names another).
    pub template: String,
    /// Its state.
    #[schema(inline)]
    pub status: SnapshotStatusName,
    /// Why it was taken.
    #[schema(inline)]
    pub trigger: SnapshotTriggerName,
    /// Why it failed.
    pub error: Option<String>,
    /// The archive's size, bytes.
    pub size_bytes: i64,
    /// Regular files in it.
    pub files: i64,
    /// The node that took it.
    pub node: String,
    /// Asked for, Unix ms.
    pub created_at: i64,
    /// Ready, Unix ms.
    pub ready_at: Option<i64>,
}

impl From<Snapshot> for SnapshotView {
    fn from(s: Snapshot) -> Self {
        SnapshotView {
            status: s.status.into(),
            trigger: s.trigger.into(),
            id: s.id,
            app: s.app,
            session: s.session,
            template: s.template,
            error: s.error,
            size_bytes: s.size_bytes,
            files: s.files,
            node: s.node,
            created_at: s.created_at,
            ready_at: s.ready_at,
        }
    }
}

/// Filters of `GET /v1/snapshots`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SnapshotQuery {
    /// Only this app's (admins; an app key sees its own only).
    #[param(pattern = "^[a-z][a-z0-9-]{1,62}$")]
    pub app: Option<String>,
    /// Only of this session.
    #[param(pattern = "^ses_[0-9a-f]{24,32}$")]
    pub session: Option<String>,
    /// Only in this state.
    #[param(value_type = Option<SnapshotStatusName>, inline)]
    pub status: Option<SnapshotStatusName>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Options of `POST /v1/sessions/{id}/terminate`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TerminateQuery {
    /// Snapshot the workspace first; if the snapshot fails the session is
    /// not terminated (503 or 422 says why) and keeps running.
    pub snapshot: Option<bool>,
}

/// Packages to install into a running session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallBody {
    /// Packages of the template's ecosystem, in the templates' grammar, that
    /// neither the template nor the session has yet (at least one).
    #[schema(value_type = Vec<PackageBody>, min_items = 1)]
    pub packages: Vec<Value>,
}

/// What installing packages into a session did.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstalledView {
    /// The session, now in a box that binds its new layer (`layer`).
    pub session: SessionView,
    /// The packages this request installed.
    pub installed: Vec<PackageView>,
    /// Every package the session has beyond its template's.
    pub packages: Vec<PackageView>,
    /// Regular files carried from the old box's workspace to the new one.
    pub files_carried: usize,
    /// Bytes of those files.
    pub bytes_carried: u64,
}

impl From<crate::sessions::install::Installed> for InstalledView {
    fn from(i: crate::sessions::install::Installed) -> Self {
        InstalledView {
            session: i.session.into(),
            installed: i.installed.into_iter().map(Into::into).collect(),
            packages: i.packages.into_iter().map(Into::into).collect(),
            files_carried: i.carried.files,
            bytes_carried: i.carried.bytes,
        }
    }
}
