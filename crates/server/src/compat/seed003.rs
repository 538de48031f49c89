//! Seed 003's control-plane API (`kweaver-ai/sandbox`, under `/api/v1`):
//! sessions, executions, workspace files, templates and a health check,
//! mapped onto the native sessions ([`crate::sessions::SessionManager`])
//! and templates ([`warden_core::Templates`]). A bearer (or `X-Api-Key`)
//! Warden key is required: an app key for sessions, executions and files
//! (they are the app's), any app or admin key to read templates, an admin
//! key to write them; `GET /api/v1/health` is open, as upstream's is.
//!
//! Shapes are upstream's: flat `cpu`/`memory`/`disk` strings in, a
//! `resource_limit` out; execution states `pending`, `running`,
//! `completed`, `failed`, `timeout`, `crashed`; Python code is a
//! `handler(event)` whose return value is `return_value` and whose
//! exception's traceback is in `stderr`; times are ISO 8601 (UTC).
//! Statuses are upstream's: 201 for a new session, execution or template,
//! 204 for a deleted session, 404 and 409 in upstream's domain envelope
//! `{error, message, detail}`, 408 when `execute-sync` waits longer than its
//! `sync_timeout`, 422 `{"detail": [{type, loc, msg}]}` for a request that
//! does not parse, `{"detail": "…"}` for everything else.
//!
//! Must never: run, check or record anything itself (the native services
//! do), or leak a native problem document on an upstream path.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::TryStreamExt as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use warden_core::session::NewSession;
use warden_core::store::{ExecutionFilter, TemplateFilter};
use warden_core::{
    Execution, ExecutionSource, ExecutionStatus, Role, RunMode, Session, SessionFilter, SessionLanguage,
    SessionStatus, Store, Template, TemplateRuntime,
};
use warden_jail::EntryKind;

use crate::AppState;
use crate::api::visible_execution;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::sessions::{BodyError, files};

/// Where upstream mounts a session's workspace in its container (and where
/// Warden's boxes have it).
const WORKSPACE: &str = "/workspace";

/// The most entries a listing walks (sessions, executions, templates),
/// whatever `offset` asks for.
const MAX_WALK: usize = 100_000;

/// When this process started answering (upstream's `uptime`).
static STARTED: OnceLock<Instant> = OnceLock::new();

/// The seed-003 routes.
pub fn router() -> Router<AppState> {
    STARTED.get_or_init(Instant::now);
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/sessions", post(create_session).get(list_sessions))
        .route("/api/v1/sessions/{id}", get(get_session).delete(delete_session))
        .route("/api/v1/sessions/{id}/terminate", post(terminate_session))
        .route(
            "/api/v1/sessions/{id}/dependencies/install",
            post(install_dependencies),
        )
        .route("/api/v1/sessions/{id}/files", get(list_files))
        // The file streams to the workspace under `sessions.max_upload_bytes`
        // (the session manager's cap), not the compat body limit.
        .route(
            "/api/v1/sessions/{id}/files/upload",
            post(upload_file).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/sessions/{id}/files/{*path}", get(download_file))
        .route("/api/v1/executions/sessions/{id}/execute", post(execute))
        .route(
            "/api/v1/executions/sessions/{id}/execute-sync",
            post(execute_sync),
        )
        .route(
            "/api/v1/executions/sessions/{id}/executions",
            get(list_executions),
        )
        .route("/api/v1/executions/{id}/status", get(get_execution))
        .route("/api/v1/executions/{id}/result", get(get_execution))
        .route("/api/v1/templates", post(create_template).get(list_templates))
        .route(
            "/api/v1/templates/{id}",
            get(get_template).put(update_template).delete(delete_template),
        )
}

// ------------------------------------------------------------------ errors

/// An answer that ends a request early (boxed: it is the rare path).
type Refused = Box<Response>;

/// FastAPI's `HTTPException` body: `{"detail": "…"}`.
fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"detail": message.into()}))).into_response()
}

/// Upstream's domain envelope (its not-found and conflict handlers).
fn domain(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    let error = status.canonical_reason().unwrap_or("Error");
    (
        status,
        Json(json!({"error": error, "message": message, "detail": message})),
    )
        .into_response()
}

/// One problem of a request that does not parse, located as FastAPI
/// locates it (`["body", "timeout"]`, `["query", "path"]`).
struct Issue {
    loc: Vec<Value>,
    msg: String,
    kind: &'static str,
}

fn issue(loc: &[&str], msg: impl Into<String>) -> Issue {
    Issue {
        loc: loc.iter().map(|s| json!(s)).collect(),
        msg: msg.into(),
        kind: "value_error",
    }
}

/// 422 `{"detail": [{type, loc, msg}]}`.
fn invalid(issues: Vec<Issue>) -> Response {
    let detail: Vec<Value> = issues
        .into_iter()
        .map(|i| json!({"type": i.kind, "loc": i.loc, "msg": i.msg}))
        .collect();
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"detail": detail}))).into_response()
}

/// A native refusal in upstream's terms: 404 and 409 in the domain
/// envelope, 422 with every located problem, server errors without their
/// cause (it is logged), everything else as `{"detail"}` with its status.
fn native(e: &ApiError) -> Response {
    let p = e.problem();
    match e.status() {
        StatusCode::NOT_FOUND | StatusCode::CONFLICT => domain(e.status(), p.detail),
        StatusCode::UNPROCESSABLE_ENTITY => {
            if p.errors.is_empty() {
                invalid(vec![issue(&["body"], p.detail)])
            } else {
                invalid(
                    p.errors
                        .into_iter()
                        .map(|f| issue(&["body", &f.location], f.message))
                        .collect(),
                )
            }
        }
        StatusCode::SERVICE_UNAVAILABLE => detail(StatusCode::SERVICE_UNAVAILABLE, p.detail),
        s if s.is_server_error() => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "Internal Server Error", "message": "An unexpected error occurred", "detail": null})),
        )
            .into_response(),
        s => detail(s, p.detail),
    }
}

/// Where upstream's handler catches every exception as one status (create
/// session: 400; files: 400 or 404): the native refusal with that status,
/// except authentication, authorization, size and overload, which keep
/// theirs.
fn caught(e: &ApiError, status: StatusCode) -> Response {
    match e.status() {
        StatusCode::UNAUTHORIZED
        | StatusCode::FORBIDDEN
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::TOO_MANY_REQUESTS
        | StatusCode::SERVICE_UNAVAILABLE => native(e),
        s if s.is_server_error() => native(e),
        _ => {
            let p = e.problem();
            let mut message = p.detail;
            for f in p.errors {
                message.push_str(&format!("; {}: {}", f.location, f.message));
            }
            detail(status, message)
        }
    }
}

/// The caller of a session, execution or file call: an app key (its
/// sessions are its app's; admin and developer keys get 403).
fn app_key(p: Result<Principal, ApiError>) -> Result<Principal, Refused> {
    let p = p.map_err(|e| Box::new(native(&e)))?;
    match (p.actor.role, &p.actor.app) {
        (Role::App, Some(_)) => Ok(p),
        _ => Err(Box::new(detail(
            StatusCode::FORBIDDEN,
            "the seed-003 sessions API takes an app key (sessions belong to its app)",
        ))),
    }
}

/// The caller of a template read: an app or admin key.
fn reader(p: Result<Principal, ApiError>) -> Result<Principal, Refused> {
    let p = p.map_err(|e| Box::new(native(&e)))?;
    match p.actor.role {
        Role::App | Role::Admin => Ok(p),
        Role::Developer => Err(Box::new(detail(
            StatusCode::FORBIDDEN,
            "the seed-003 templates API takes an app or admin key",
        ))),
    }
}

/// The caller of a template write: an admin key.
fn admin_key(p: Result<Principal, ApiError>) -> Result<Principal, Refused> {
    let p = p.map_err(|e| Box::new(native(&e)))?;
    match p.actor.role {
        Role::Admin => Ok(p),
        _ => Err(Box::new(detail(
            StatusCode::FORBIDDEN,
            "changing templates takes an admin key",
        ))),
    }
}

/// A JSON body as `T`, or 422 locating what does not fit.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refused> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        Box::new(invalid(vec![Issue {
            loc: vec![json!("body")],
            msg: format!("JSON decode error: {e}"),
            kind: "json_invalid",
        }]))
    })?;
    serde_path_to_error::deserialize(v).map_err(|e| {
        let mut loc = vec![json!("body")];
        for seg in e.path().iter() {
            match seg {
                serde_path_to_error::Segment::Seq { index } => loc.push(json!(index)),
                serde_path_to_error::Segment::Map { key } => loc.push(json!(key)),
                serde_path_to_error::Segment::Enum { variant } => loc.push(json!(variant)),
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        Box::new(invalid(vec![Issue {
            loc,
            msg: e.inner().to_string(),
            kind: "value_error",
        }]))
    })
}

/// An integer query parameter within `min..=max` (its default when
/// absent), or the problem.
fn query_int(
    q: &BTreeMap<String, String>,
    name: &str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, Issue> {
    let Some(raw) = q.get(name) else {
        return Ok(default);
    };
    let n: i64 = raw
        .trim()
        .parse()
        .map_err(|_| issue(&["query", name], "Input should be a valid integer"))?;
    if n < min || n > max {
        return Err(issue(
            &["query", name],
            format!("Input should be between {min} and {max}"),
        ));
    }
    Ok(n)
}

// ------------------------------------------------------------------ views

/// Unix ms as ISO 8601, UTC, with milliseconds.
pub fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Upstream's name of a template runtime (its `runtime_type`).
fn runtime_type(r: TemplateRuntime) -> &'static str {
    match r {
        TemplateRuntime::Python => "python3.11",
        TemplateRuntime::Node => "nodejs20",
        TemplateRuntime::Shell => "shell",
    }
}

/// A session state in upstream's words (its `SessionStatus`).
fn session_status(s: SessionStatus) -> &'static str {
    match s {
        SessionStatus::Creating => "creating",
        SessionStatus::Running => "running",
        SessionStatus::Terminated => "terminated",
        SessionStatus::Expired => "timeout",
        SessionStatus::Failed | SessionStatus::Lost => "failed",
    }
}

/// CPU cores as upstream writes them (`"1"`, `"0.5"`).
fn cpu_text(cores: f64) -> String {
    if cores.fract() == 0.0 {
        format!("{cores:.0}")
    } else {
        format!("{cores}")
    }
}

/// MiB as a Kubernetes quantity (`"512Mi"`, `"1Gi"`).
fn quantity_text(mb: u64) -> String {
    if mb >= 1024 && mb.is_multiple_of(1024) {
        format!("{}Gi", mb / 1024)
    } else {
        format!("{mb}Mi")
    }
}

/// A Kubernetes-style size (`512Mi`, `1Gi`, `1G`, `1048576`) in MiB,
/// rounded up.
fn parse_quantity(raw: &str) -> Option<u64> {
    let t = raw.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().ok()?;
    let bytes_per = match unit {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "K" | "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return None,
    };
    let mb = (n * bytes_per / (1024.0 * 1024.0)).ceil();
    (n.is_finite() && n > 0.0 && mb <= u64::MAX as f64).then_some(mb as u64)
}

/// Upstream's `SessionResponse` of `s`, whose template runs `runtime`.
fn session_view(s: &Session, runtime: &str) -> Value {
    json!({
        "id": s.id,
        "template_id": s.template,
        "status": session_status(s.status),
        "resource_limit": {
            "cpu": cpu_text(s.resources.cpu_cores),
            "memory": quantity_text(s.resources.memory_mb),
            "disk": quantity_text(s.resources.disk_mb),
            "max_processes": s.resources.pids,
        },
        "workspace_path": WORKSPACE,
        "language_runtime": runtime,
        "runtime_type": runtime,
        "runtime_node": s.node,
        "container_id": null,
        "pod_name": null,
        "env_vars": s.env,
        "timeout": s.idle_timeout_secs,
        "python_package_index_url": "https://pypi.org/simple/",
        "requested_dependencies": [],
        "installed_dependencies": [],
        // Nothing to install: a session has its template's packages.
        "dependency_install_status": "completed",
        "dependency_install_error": null,
        "dependency_install_started_at": null,
        "dependency_install_completed_at": null,
        "created_at": iso(s.created_at),
        "updated_at": iso(s.ended_at.unwrap_or(s.last_active_at)),
        "completed_at": s.ended_at.map(iso),
        "last_activity_at": iso(s.last_active_at),
    })
}

/// The runtimes of templates, looked up once per request.
struct Runtimes<'a> {
    s: &'a AppState,
    seen: HashMap<String, String>,
}

impl<'a> Runtimes<'a> {
    fn new(s: &'a AppState) -> Self {
        Runtimes {
            s,
            seen: HashMap::new(),
        }
    }

    async fn of(&mut self, template: &str) -> String {
        if let Some(r) = self.seen.get(template) {
            return r.clone();
        }
        // A template deleted since the session started: its id stands in.
        let r = match self.s.templates.get(template).await {
            Ok(t) => runtime_type(t.runtime).to_owned(),
            Err(_) => template.to_owned(),
        };
        self.seen.insert(template.to_owned(), r.clone());
        r
    }

    async fn view(&mut self, s: &Session) -> Value {
        let r = self.of(&s.template).await;
        session_view(s, &r)
    }
}

/// An execution state in upstream's words: the platform stopping the
/// code (a limit, a violation, the server or session going away) is
/// `crashed`.
fn execution_status(e: &Execution) -> &'static str {
    match e.status {
        ExecutionStatus::Queued => "pending",
        ExecutionStatus::Running => "running",
        ExecutionStatus::Success => "completed",
        ExecutionStatus::Failed | ExecutionStatus::Cancelled => "failed",
        ExecutionStatus::Timeout => "timeout",
        ExecutionStatus::Error | ExecutionStatus::Interrupted => "crashed",
    }
}

/// What the code printed on stderr, and the handler's exception as
/// Python prints it when the runtime reported it apart (upstream's wrapper
/// prints it there): `Traceback (most recent call last):`, the frames, the
/// exception.
fn stderr_of(e: &Execution) -> String {
    let Some(r) = e.result.as_ref() else {
        return String::new();
    };
    let mut out = r.stderr.clone();
    let Some(err) = &r.error else {
        return out;
    };
    // Only the handler's own failure is an exception (a timeout or a limit
    // is the platform's word, in `error_message`).
    let last = format!("{}: {}", err.kind, err.message);
    if e.status != ExecutionStatus::Failed || out.contains(&last) {
        return out;
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let tb = err.traceback.as_deref().unwrap_or_default().trim_end();
    if !tb.is_empty() {
        out.push_str("Traceback (most recent call last):\n");
        out.push_str(tb);
        out.push('\n');
    }
    out.push_str(&last);
    out.push('\n');
    out
}

/// Why an execution did not complete, for a person: the exception (type
/// and message) when there is one, else what stopped it.
fn error_message(e: &Execution) -> Option<String> {
    match e.status {
        ExecutionStatus::Success | ExecutionStatus::Queued | ExecutionStatus::Running => None,
        _ => Some(match e.result.as_ref().and_then(|r| r.error.as_ref()) {
            Some(err) => format!("{}: {}", err.kind, err.message),
            None => super::dify::error_of(e),
        }),
    }
}

/// Upstream's `ExecutionResponse` of a session's execution.
fn execution_view(e: &Execution) -> Value {
    let (session, language) = match &e.source {
        ExecutionSource::Session {
            session, language, ..
        } => (session.as_str(), Some(language.as_str())),
        _ => ("", None),
    };
    let r = e.result.as_ref();
    // A handler that raised: its process ended normally, but upstream's
    // wrapper exits 1 then, and its clients read that.
    let exit_code = match (e.status, r.and_then(|r| r.exit_code)) {
        (ExecutionStatus::Success, None) => Some(0),
        (ExecutionStatus::Failed, Some(0) | None) if r.is_some_and(|r| r.error.is_some()) => Some(1),
        (_, code) => code,
    };
    let error_message = error_message(e);
    let metrics = r.and_then(|r| r.metrics.as_ref()).map(|m| {
        json!({
            "duration_ms": m.duration_ms,
            "cpu_time_ms": m.cpu_time_ms,
            "peak_memory_mb": m.peak_memory_mb,
            "io_read_bytes": m.io_read_bytes,
            "io_write_bytes": m.io_write_bytes,
        })
    });
    let completed = e.finished_at.map(iso);
    let artifacts: Vec<Value> = r
        .map(|r| {
            r.artifacts
                .iter()
                .map(|a| {
                    json!({
                        "path": a.path,
                        "size": a.size,
                        "mime_type": "application/octet-stream",
                        "type": "artifact",
                        "created_at": completed,
                        "checksum": format!("sha256:{}", a.sha256),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "id": e.id,
        "session_id": session,
        "status": execution_status(e),
        "code": null,
        "language": language,
        "timeout": null,
        "exit_code": exit_code,
        "error_message": error_message,
        "execution_time": r.map(|r| r.execution_time).or(e.duration_ms.map(|ms| ms / 1000.0)),
        "stdout": r.map(|r| r.stdout.as_str()).unwrap_or_default(),
        "stderr": stderr_of(e),
        "artifacts": artifacts,
        "retry_count": 0,
        "created_at": iso(e.created_at),
        "started_at": e.started_at.map(iso),
        "completed_at": completed,
        "return_value": r.and_then(|r| r.return_value.clone()),
        "metrics": metrics,
    })
}

/// Upstream's `TemplateResponse`. Warden runs no images: `image_url`
/// names the runtime.
fn template_view(t: &Template) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "image_url": format!("warden://runtime/{}", t.runtime.as_str()),
        "runtime_type": runtime_type(t.runtime),
        "default_cpu_cores": t.resources.cpu_cores,
        "default_memory_mb": t.resources.memory_mb,
        "default_disk_mb": t.resources.disk_mb,
        "default_timeout_sec": t.resources.idle_timeout_secs,
        "default_env_vars": t.env,
        "is_active": true,
        "created_at": iso(t.created_at),
        "updated_at": iso(t.updated_at),
    })
}

// ------------------------------------------------------------------ health

/// `GET /api/v1/health`.
async fn health() -> Json<Value> {
    let uptime = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
    Json(json!({"status": "healthy", "version": env!("CARGO_PKG_VERSION"), "uptime": uptime}))
}

// ------------------------------------------------------------------ sessions

/// A package upstream installs into a session.
#[derive(Debug, Deserialize)]
struct DependencySpec {
    name: String,
    #[allow(dead_code)]
    version: Option<String>,
}

fn check_dependencies(deps: &[DependencySpec], min: usize, issues: &mut Vec<Issue>) {
    if deps.len() < min || deps.len() > 50 {
        issues.push(issue(
            &["body", "dependencies"],
            format!("List should have at least {min} and at most 50 items"),
        ));
    }
    for (i, d) in deps.iter().enumerate() {
        let ok = !d.name.is_empty()
            && d.name.len() <= 100
            && !d.name.contains("..")
            && d.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            issues.push(Issue {
                loc: vec![json!("body"), json!("dependencies"), json!(i), json!("name")],
                msg: "Invalid package name format: letters, digits, `.`, `_` and `-`, 1 to 100".into(),
                kind: "value_error",
            });
        }
    }
}

/// Upstream's dependencies as the native session's extra packages, in the
/// ecosystem of template `template`: a bare version is an exact pin.
async fn native_packages(s: &AppState, template: &str, deps: &[DependencySpec]) -> Vec<Value> {
    let ecosystem = match s.store.get_template(template).await {
        Ok(Some(t)) if t.runtime == warden_core::template::TemplateRuntime::Node => "npm",
        _ => "pip",
    };
    deps.iter()
        .map(|d| {
            let mut p = json!({"ecosystem": ecosystem, "name": d.name});
            if let Some(v) = d.version.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                let exact = v.starts_with(|c: char| c.is_ascii_digit());
                p["version"] = json!(if exact && ecosystem == "pip" {
                    format!("=={v}")
                } else {
                    v.to_owned()
                });
            }
            p
        })
        .collect()
}

/// Dependencies as upstream lists them in a session.
fn upstream_dependencies(deps: &[DependencySpec]) -> Vec<Value> {
    deps.iter()
        .map(|d| json!({"name": d.name, "version": d.version}))
        .collect()
}

#[derive(Debug, Deserialize)]
struct CreateSessionBody {
    id: Option<String>,
    template_id: String,
    timeout: Option<i64>,
    cpu: Option<String>,
    memory: Option<String>,
    disk: Option<String>,
    #[serde(default)]
    env_vars: BTreeMap<String, String>,
    #[allow(dead_code)]
    event: Option<Value>,
    #[serde(default)]
    dependencies: Vec<DependencySpec>,
    install_timeout: Option<i64>,
    #[allow(dead_code)]
    fail_on_dependency_error: Option<bool>,
    #[allow(dead_code)]
    allow_version_conflicts: Option<bool>,
    python_package_index_url: Option<String>,
}

/// `POST /api/v1/sessions`: 201 with the session, running.
async fn create_session(State(s): State<AppState>, p: Result<Principal, ApiError>, body: Bytes) -> Response {
    let p = match app_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let b: CreateSessionBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let mut issues = Vec::new();
    if b.id.is_some() {
        issues.push(issue(
            &["body", "id"],
            "Warden assigns session ids (`ses_…`): leave `id` out and use the id in the answer",
        ));
    }
    if b.template_id.is_empty() || b.template_id.len() > 64 {
        issues.push(issue(
            &["body", "template_id"],
            "String should have 1 to 64 characters",
        ));
    }
    if let Some(t) = b.timeout
        && !(1..=3600).contains(&t)
    {
        issues.push(issue(&["body", "timeout"], "Input should be between 1 and 3600"));
    }
    let cpu = match b.cpu.as_deref().map(|c| c.trim().parse::<f64>()) {
        None => None,
        Some(Ok(c)) if c.is_finite() && c > 0.0 => Some(c),
        Some(_) => {
            issues.push(issue(
                &["body", "cpu"],
                "Invalid cpu format: a number of cores, e.g. \"1\" or \"0.5\"",
            ));
            None
        }
    };
    let mut size = |field: &str, raw: Option<&str>| match raw.map(parse_quantity) {
        None => None,
        Some(Some(mb)) => Some(mb),
        Some(None) => {
            issues.push(issue(
                &["body", field],
                format!("Invalid {field} format: a size such as \"512Mi\" or \"1Gi\""),
            ));
            None
        }
    };
    let memory_mb = size("memory", b.memory.as_deref());
    let disk_mb = size("disk", b.disk.as_deref());
    check_dependencies(&b.dependencies, 0, &mut issues);
    if let Some(t) = b.install_timeout
        && !(30..=1800).contains(&t)
    {
        issues.push(issue(
            &["body", "install_timeout"],
            "Input should be between 30 and 1800",
        ));
    }
    if b.python_package_index_url.as_ref().is_some_and(|u| u.len() > 512) {
        issues.push(issue(
            &["body", "python_package_index_url"],
            "String should have at most 512 characters",
        ));
    }
    if !issues.is_empty() {
        return invalid(issues);
    }
    // Upstream's dependencies are the native session's extra packages, in
    // the template's ecosystem: built (with the template's) into a layer of
    // the session's own before it answers. A bare version is an exact pin.
    let packages = native_packages(&s, &b.template_id, &b.dependencies).await;
    let requested = upstream_dependencies(&b.dependencies);
    let req = NewSession {
        template: Some(b.template_id),
        cpu_cores: cpu,
        memory_mb,
        disk_mb,
        pids: None,
        idle_timeout_secs: b.timeout.map(|t| t as u64),
        max_lifetime_secs: None,
        env: b.env_vars,
        network: None,
        packages,
        snapshot: None,
    };
    match s.sessions.create(&p.actor, None, req).await {
        Ok(session) => {
            let mut view = Runtimes::new(&s).view(&session).await;
            if !requested.is_empty() {
                // Installed by now: the answer to the create says what was.
                view["requested_dependencies"] = json!(requested);
                view["installed_dependencies"] = json!(requested);
                view["dependency_install_completed_at"] = view["created_at"].clone();
            }
            (StatusCode::CREATED, Json(view)).into_response()
        }
        Err(e) => {
            let e = ApiError::from(e);
            match e.status() {
                StatusCode::CONFLICT => detail(StatusCode::CONFLICT, e.problem().detail),
                _ => caught(&e, StatusCode::BAD_REQUEST),
            }
        }
    }
}

/// Upstream's session state filter as a native one: `None` when no native
/// session can be in it (`completed`, or a name upstream does not have).
fn status_filter(name: &str) -> Option<SessionStatus> {
    match name {
        "creating" => Some(SessionStatus::Creating),
        "running" => Some(SessionStatus::Running),
        "terminated" => Some(SessionStatus::Terminated),
        "timeout" => Some(SessionStatus::Expired),
        "failed" => Some(SessionStatus::Failed),
        _ => None,
    }
}

/// `GET /api/v1/sessions`: `{items, total, limit, offset, has_more}`.
async fn list_sessions(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let p = match app_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let (limit, offset) = match (
        query_int(&q, "limit", 50, i64::MIN, i64::MAX),
        query_int(&q, "offset", 0, i64::MIN, i64::MAX),
    ) {
        // Upstream clamps rather than refuses.
        (Ok(l), Ok(o)) => (l.clamp(1, 200) as usize, o.max(0) as usize),
        (Err(i), _) | (_, Err(i)) => return invalid(vec![i]),
    };
    let status = match q.get("status") {
        None => None,
        Some(name) => match status_filter(name) {
            Some(st) => Some(st),
            None => {
                return Json(
                    json!({"items": [], "total": 0, "limit": limit, "offset": offset, "has_more": false}),
                )
                .into_response();
            }
        },
    };
    let mut cursor = None;
    let mut total = 0usize;
    let mut page_items = Vec::new();
    loop {
        let filter = SessionFilter {
            app: None,
            template: q.get("template_id").cloned(),
            status,
            node: None,
            cursor: cursor.take(),
            limit: 500,
        };
        let page = match s.sessions.list(&p.actor, filter).await {
            Ok(page) => page,
            Err(e) => return native(&ApiError::from(e)),
        };
        for item in page.items {
            if total >= offset && page_items.len() < limit {
                page_items.push(item);
            }
            total += 1;
        }
        match page.next_cursor {
            Some(c) if total < MAX_WALK => cursor = Some(c),
            _ => break,
        }
    }
    let mut runtimes = Runtimes::new(&s);
    let mut items = Vec::with_capacity(page_items.len());
    for session in &page_items {
        items.push(runtimes.view(session).await);
    }
    let has_more = offset + items.len() < total;
    Json(json!({"items": items, "total": total, "limit": limit, "offset": offset, "has_more": has_more}))
        .into_response()
}

/// `GET /api/v1/sessions/{id}`.
async fn get_session(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path(id): Path<String>,
) -> Response {
    let p = match app_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match s.sessions.get(&p.actor, &id).await {
        Ok(session) => Json(Runtimes::new(&s).view(&session).await).into_response(),
        Err(e) => native(&ApiError::from(e)),
    }
}

/// `POST /api/v1/sessions/{id}/terminate`: the session, ended (as it is,
/// when it had ended already: upstream answers that too).
async fn terminate_session(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path(id): Path<String>,
) -> Response {
    let p = match app_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let session = match s.sessions.get(&p.actor, &id).await {
        Ok(session) => session,
        Err(e) => return native(&ApiError::from(e)),
    };
    let ended = if session.status.is_final() {
        session
    } else {
        match s.sessions.terminate(&p.actor, &id).await {
            Ok(ended) => ended,
            Err(e) => return native(&ApiError::from(e)),
        }
    };
    Json(Runtimes::new(&s).view(&ended).await).into_response()
}

/// `DELETE /api/v1/sessions/{id}`: 204.
async fn delete_session(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path(id): Path<String>,
) -> Response {
    let p = match app_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match s.sessions.delete(&p.actor, &id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => native(&ApiError::from(e)),
    }
}

#[derive(Debug, Deserialize)]
struct InstallBody {
    #[allow(dead_code)]
    python_package_index_url: Option<String>,
    dependencies: Vec<DependencySpec>,
}

/// `POST /api/v1/sessions/{id}/dependencies/install`: the native install
/// (the session moves to a box with its new layer, workspace carried);
/// answers the session with the dependencies installed.
async fn install_dependencies(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let p = match app_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let b: InstallBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let mut issues = Vec::new();
    check_dependencies(&b.dependencies, 1, &mut issues);
    if !issues.is_empty() {
        return invalid(issues);
    }
    let template = match s.sessions.get(&p.actor, &id).await {
        Ok(session) => session.template,
        Err(e) => return native(&ApiError::from(e)),
    };
    let packages = native_packages(&s, &template, &b.dependencies).await;
    match s.sessions.install(&p.actor, &id, packages).await {
        Ok(done) => {
            let mut view = Runtimes::new(&s).view(&done.session).await;
            let installed: Vec<Value> = done
                .packages
                .iter()
                .map(|p| json!({"name": p.name, "version": p.version}))
                .collect();
            view["requested_dependencies"] = json!(upstream_dependencies(&b.dependencies));
            view["installed_dependencies"] = json!(installed);
            view["dependency_install_completed_at"] = json!(iso(warden_core::model::now_ms()));
            (StatusCode::OK, Json(view)).into_response()
        }
        Err(e) => native(&ApiError::from(e)),
    }
}

// ------------------------------------------------------------------ executions

#[derive(Debug, Deserialize)]
struct ExecuteBody {
    code: String,
    language: String,
    timeout: Option<i64>,
    event: Option<Value>,
}

/// Parse and submit an execution: Python runs as `handler(event)`,
/// JavaScript and shell as programs (upstream's wrappers call no handler
/// for them).
async fn submit(
    s: &AppState,
    p: &Principal,
    id: &str,
    body: &[u8],
    asynchronous: bool,
) -> Result<crate::sessions::Accepted, Response> {
    let b: ExecuteBody = parse(body).map_err(|r| *r)?;
    let mut issues = Vec::new();
    if b.code.is_empty() || b.code.len() > 102_400 {
        issues.push(issue(
            &["body", "code"],
            "String should have 1 to 102400 characters",
        ));
    }
    let language = match b.language.as_str() {
        "python" => Some(SessionLanguage::Python),
        "javascript" => Some(SessionLanguage::Javascript),
        "shell" => Some(SessionLanguage::Shell),
        _ => {
            issues.push(Issue {
                loc: vec![json!("body"), json!("language")],
                msg: "Input should be 'python', 'javascript' or 'shell'".into(),
                kind: "literal_error",
            });
            None
        }
    };
    if let Some(t) = b.timeout
        && !(1..=3600).contains(&t)
    {
        issues.push(issue(&["body", "timeout"], "Input should be between 1 and 3600"));
    }
    if b.event.as_ref().is_some_and(|e| !e.is_object() && !e.is_null()) {
        issues.push(issue(&["body", "event"], "Input should be a valid dictionary"));
    }
    let (Some(language), true) = (language, issues.is_empty()) else {
        return Err(invalid(issues));
    };
    let (mode, event) = match language {
        SessionLanguage::Python => (
            RunMode::Handler,
            Some(b.event.filter(Value::is_object).unwrap_or_else(|| json!({}))),
        ),
        _ => (RunMode::Script, None),
    };
    let req = warden_core::session::NewSessionExecution {
        language,
        mode,
        code: b.code,
        event,
        // Upstream's default is 30 s (within the server's ceiling).
        timeout_ms: Some(match b.timeout {
            Some(t) => t as u64 * 1000,
            None => 30_000.min(s.sessions.policy().max_timeout_ms),
        }),
        env: BTreeMap::new(),
    };
    s.sessions
        .execute(&p.actor, id, req, asynchronous)
        .await
        .map_err(|e| native(&ApiError::from(e)))
}

/// `POST /api/v1/executions/sessions/{id}/execute`: 201 with
/// `{execution_id, session_id, status, created_at}` at once.
async fn execute(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let p = match app_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match submit(&s, &p, &id, &body, true).await {
        Ok(accepted) => {
            let e = &accepted.record;
            (
                StatusCode::CREATED,
                Json(json!({
                    "execution_id": e.id,
                    "session_id": id,
                    "status": execution_status(e),
                    "created_at": iso(e.created_at),
                })),
            )
                .into_response()
        }
        Err(r) => r,
    }
}

/// `POST /api/v1/executions/sessions/{id}/execute-sync`: the finished
/// execution, or 408 after `sync_timeout` seconds (it goes on running).
async fn execute_sync(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let p = match app_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut issues = Vec::new();
    // Upstream polls its database every `poll_interval`; Warden is told
    // when the execution ends, so the value is only checked.
    if let Some(raw) = q.get("poll_interval") {
        match raw.trim().parse::<f64>() {
            Ok(v) if (0.1..=10.0).contains(&v) => {}
            _ => issues.push(issue(
                &["query", "poll_interval"],
                "Input should be a number between 0.1 and 10.0",
            )),
        }
    }
    let wait = match query_int(&q, "sync_timeout", 300, 10, 3600) {
        Ok(w) => w as u64,
        Err(i) => {
            issues.push(i);
            0
        }
    };
    if !issues.is_empty() {
        return invalid(issues);
    }
    let accepted = match submit(&s, &p, &id, &body, false).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let record_id = accepted.record.id.clone();
    match tokio::time::timeout(Duration::from_secs(wait), accepted.done).await {
        Ok(Ok(done)) => Json(execution_view(&done)).into_response(),
        // Its task ended without a word: the record as stored.
        Ok(Err(_)) => match s.store.get_execution(&record_id).await {
            Ok(Some(e)) if e.status.is_final() => Json(execution_view(&e)).into_response(),
            Ok(_) => detail(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("execution {record_id} did not finish"),
            ),
            Err(e) => native(&ApiError::from(e)),
        },
        Err(_) => detail(
            StatusCode::REQUEST_TIMEOUT,
            format!("Synchronous execution timeout after {wait}s"),
        ),
    }
}

/// `GET /api/v1/executions/{id}/status` and `…/result`: the execution as
/// it is now (any of the app's session executions).
async fn get_execution(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path(id): Path<String>,
) -> Response {
    let p = match app_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match visible_execution(&s, &p, &id).await {
        Ok(e) if e.source.session().is_some() => Json(execution_view(&e)).into_response(),
        // A plugin's or a one-shot run's: not one of this API's.
        Ok(_) => domain(StatusCode::NOT_FOUND, format!("no execution {id}")),
        Err(e) => native(&e),
    }
}

/// `GET /api/v1/executions/sessions/{id}/executions`: `{items, total,
/// limit, offset}`, newest first; `total` counts the items answered, as
/// upstream's does.
async fn list_executions(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let p = match app_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let (limit, offset) = match (
        query_int(&q, "limit", 50, i64::MIN, i64::MAX),
        query_int(&q, "offset", 0, i64::MIN, i64::MAX),
    ) {
        (Ok(l), Ok(o)) => (l.clamp(1, 1000) as usize, o.max(0) as usize),
        (Err(i), _) | (_, Err(i)) => return invalid(vec![i]),
    };
    let mut cursor = None;
    let mut seen = 0usize;
    let mut items = Vec::new();
    loop {
        let filter = ExecutionFilter {
            cursor: cursor.take(),
            limit: 500,
            ..ExecutionFilter::default()
        };
        let page = match s.sessions.executions(&p.actor, &id, filter).await {
            Ok(page) => page,
            Err(e) => return native(&ApiError::from(e)),
        };
        for e in page.items {
            if seen >= offset && items.len() < limit {
                items.push(execution_view(&e));
            }
            seen += 1;
        }
        match page.next_cursor {
            Some(c) if items.len() < limit && seen < MAX_WALK => cursor = Some(c),
            _ => break,
        }
    }
    Json(json!({"total": items.len(), "items": items, "limit": limit, "offset": offset})).into_response()
}

// ------------------------------------------------------------------ files

/// `GET /api/v1/sessions/{id}/files`: every file under `path` (the whole
/// workspace when absent), `{session_id, files, count}`; links, FIFOs and
/// devices are not listed (upstream's object store has none).
async fn list_files(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let p = match app_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let limit = match query_int(&q, "limit", 1000, 1, 10_000) {
        Ok(l) => l as usize,
        Err(i) => return invalid(vec![i]),
    };
    let start = q
        .get("path")
        .map(|p| p.trim().trim_matches('/').to_owned())
        .filter(|p| !p.is_empty());
    let mut dirs = VecDeque::from([start]);
    let mut files = Vec::new();
    let mut reads = 0usize;
    while let Some(dir) = dirs.pop_front() {
        reads += 1;
        let (shown, entries, _) = match s.sessions.list_files(&p.actor, &id, dir.as_deref()).await {
            Ok(listing) => listing,
            Err(e) => return caught(&ApiError::from(e), StatusCode::BAD_REQUEST),
        };
        for entry in entries {
            let path = if shown.is_empty() {
                entry.name.clone()
            } else {
                format!("{shown}/{}", entry.name)
            };
            match entry.kind {
                EntryKind::File if files.len() < limit => files.push(json!({
                    "name": path,
                    "container_path": format!("{WORKSPACE}/{path}"),
                    "size": entry.size,
                    "modified_time": iso(entry.modified_ms),
                    "etag": null,
                })),
                EntryKind::Directory if reads + dirs.len() < MAX_WALK => dirs.push_back(Some(path)),
                _ => {}
            }
        }
        if files.len() >= limit {
            break;
        }
    }
    Json(json!({"session_id": id, "count": files.len(), "files": files})).into_response()
}

/// `POST /api/v1/sessions/{id}/files/upload?path=…`: a form whose `file`
/// field is written to `path` (missing directories are made; a file there
/// is replaced); `{session_id, file_path, size}`.
async fn upload_file(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    req: Request,
) -> Response {
    let p = match app_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let Some(path) = q.get("path").cloned() else {
        return invalid(vec![Issue {
            loc: vec![json!("query"), json!("path")],
            msg: "Field required".into(),
            kind: "missing",
        }]);
    };
    // The session first: a caller who may not see it learns nothing more.
    if let Err(e) = s.sessions.get(&p.actor, &id).await {
        return caught(&ApiError::from(e), StatusCode::BAD_REQUEST);
    }
    let mut form = match Multipart::from_request(req, &s).await {
        Ok(f) => f,
        Err(r) => return detail(StatusCode::BAD_REQUEST, r.body_text()),
    };
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return detail(e.status(), e.body_text()),
        };
        // Upstream reads the `file` field and ignores the others.
        if field.name() != Some("file") {
            continue;
        }
        let body = field.map_err(|e| BodyError {
            too_large: e.status() == StatusCode::PAYLOAD_TOO_LARGE,
            message: e.body_text(),
        });
        return match s
            .sessions
            .write_file(&p.actor, &id, &path, "query:path", body)
            .await
        {
            Ok(w) => {
                Json(json!({"session_id": id, "file_path": w.path, "size": w.entry.size})).into_response()
            }
            Err(e) => caught(&ApiError::from(e), StatusCode::BAD_REQUEST),
        };
    }
    invalid(vec![Issue {
        loc: vec![json!("body"), json!("file")],
        msg: "Field required".into(),
        kind: "missing",
    }])
}

/// `GET /api/v1/sessions/{id}/files/{path}`: the file, streamed.
async fn download_file(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path((id, path)): Path<(String, String)>,
) -> Response {
    let p = match app_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let open = match s.sessions.open_file(&p.actor, &id, &path).await {
        Ok(open) => open,
        Err(e) => return caught(&ApiError::from(e), StatusCode::NOT_FOUND),
    };
    let size = open.size;
    let name = files::attachment_name(&open.path);
    let mut r = Response::new(Body::from_stream(files::stream(open.file, 0, size)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

// ------------------------------------------------------------------ templates

#[derive(Debug, Deserialize)]
struct CreateTemplateBody {
    id: String,
    name: String,
    image_url: String,
    runtime_type: String,
    default_cpu_cores: Option<f64>,
    default_memory_mb: Option<i64>,
    default_disk_mb: Option<i64>,
    default_timeout: Option<i64>,
    default_env_vars: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct UpdateTemplateBody {
    name: Option<String>,
    image_url: Option<String>,
    default_cpu_cores: Option<f64>,
    default_memory_mb: Option<i64>,
    default_disk_mb: Option<i64>,
    default_timeout: Option<i64>,
    default_env_vars: Option<BTreeMap<String, String>>,
}

/// Upstream's bounds on a template's defaults.
fn check_defaults(
    cpu: Option<f64>,
    memory: Option<i64>,
    disk: Option<i64>,
    timeout: Option<i64>,
    issues: &mut Vec<Issue>,
) {
    if cpu.is_some_and(|c| !(0.1..=4.0).contains(&c)) {
        issues.push(issue(
            &["body", "default_cpu_cores"],
            "Input should be between 0.1 and 4.0",
        ));
    }
    let mut bounded = |field: &str, v: Option<i64>, min: i64, max: i64| {
        if v.is_some_and(|v| !(min..=max).contains(&v)) {
            issues.push(issue(
                &["body", field],
                format!("Input should be between {min} and {max}"),
            ));
        }
    };
    bounded("default_memory_mb", memory, 128, 8192);
    bounded("default_disk_mb", disk, 256, 51_200);
    bounded("default_timeout", timeout, 60, 3600);
}

fn text_len(field: &str, v: Option<&str>, max: usize, issues: &mut Vec<Issue>) {
    if v.is_some_and(|v| v.is_empty() || v.chars().count() > max) {
        issues.push(issue(
            &["body", field],
            format!("String should have 1 to {max} characters"),
        ));
    }
}

/// `POST /api/v1/templates` (admin): 201 with the template. Its packages
/// are built natively (`POST /v1/templates/{id}/build`).
async fn create_template(State(s): State<AppState>, p: Result<Principal, ApiError>, body: Bytes) -> Response {
    let p = match admin_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let b: CreateTemplateBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let mut issues = Vec::new();
    text_len("id", Some(&b.id), 64, &mut issues);
    text_len("name", Some(&b.name), 255, &mut issues);
    text_len("image_url", Some(&b.image_url), 512, &mut issues);
    let runtime = match b.runtime_type.as_str() {
        "python3.11" => Some("python"),
        "nodejs20" => Some("node"),
        "java17" | "go1.21" => {
            issues.push(issue(
                &["body", "runtime_type"],
                format!(
                    "`{}` is not available here: Warden's sessions run python3.11 and nodejs20",
                    b.runtime_type
                ),
            ));
            None
        }
        _ => {
            issues.push(Issue {
                loc: vec![json!("body"), json!("runtime_type")],
                msg: "Input should be 'python3.11', 'nodejs20', 'java17' or 'go1.21'".into(),
                kind: "literal_error",
            });
            None
        }
    };
    check_defaults(
        b.default_cpu_cores,
        b.default_memory_mb,
        b.default_disk_mb,
        b.default_timeout,
        &mut issues,
    );
    if !issues.is_empty() {
        return invalid(issues);
    }
    // Upstream's defaults for what the client left out.
    let spec = json!({
        "id": b.id,
        "name": b.name,
        "runtime": runtime,
        "env": b.default_env_vars.unwrap_or_default(),
        "resources": {
            "cpu_cores": b.default_cpu_cores.unwrap_or(0.5),
            "memory_mb": b.default_memory_mb.unwrap_or(512),
            "disk_mb": b.default_disk_mb.unwrap_or(1024),
            "idle_timeout_secs": b.default_timeout.unwrap_or(300),
        },
    });
    match s.templates.create(&p.actor, &spec).await {
        Ok(t) => (StatusCode::CREATED, Json(template_view(&t))).into_response(),
        Err(e) => native(&ApiError::from(e)),
    }
}

/// `GET /api/v1/templates`: an array, by id.
async fn list_templates(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(r) = reader(p) {
        return *r;
    }
    let (limit, offset) = match (
        query_int(&q, "limit", 50, i64::MIN, i64::MAX),
        query_int(&q, "offset", 0, i64::MIN, i64::MAX),
    ) {
        (Ok(l), Ok(o)) => (l.clamp(1, 1000) as usize, o.max(0) as usize),
        (Err(i), _) | (_, Err(i)) => return invalid(vec![i]),
    };
    let mut cursor = None;
    let mut seen = 0usize;
    let mut items = Vec::new();
    loop {
        let filter = TemplateFilter {
            runtime: None,
            cursor: cursor.take(),
            limit: 500,
        };
        let page = match s.templates.list(filter).await {
            Ok(page) => page,
            Err(e) => return native(&ApiError::from(e)),
        };
        for t in page.items {
            if seen >= offset && items.len() < limit {
                items.push(template_view(&t));
            }
            seen += 1;
        }
        match page.next_cursor {
            Some(c) if items.len() < limit && seen < MAX_WALK => cursor = Some(c),
            _ => break,
        }
    }
    Json(Value::Array(items)).into_response()
}

/// `GET /api/v1/templates/{id}`.
async fn get_template(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = reader(p) {
        return *r;
    }
    match s.templates.get(&id).await {
        Ok(t) => Json(template_view(&t)).into_response(),
        Err(e) => native(&ApiError::from(e)),
    }
}

/// `PUT /api/v1/templates/{id}` (admin): the fields given change, the
/// others stay (a built-in cannot change: 409).
async fn update_template(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let p = match admin_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let b: UpdateTemplateBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let mut issues = Vec::new();
    text_len("name", b.name.as_deref(), 255, &mut issues);
    text_len("image_url", b.image_url.as_deref(), 512, &mut issues);
    check_defaults(
        b.default_cpu_cores,
        b.default_memory_mb,
        b.default_disk_mb,
        b.default_timeout,
        &mut issues,
    );
    if !issues.is_empty() {
        return invalid(issues);
    }
    let current = match s.templates.get(&id).await {
        Ok(t) => t,
        Err(e) => return native(&ApiError::from(e)),
    };
    let mut doc = match serde_json::to_value(current.spec()) {
        Ok(d) => d,
        Err(e) => return native(&ApiError::internal(&e)),
    };
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("id");
        obj.insert("revision".into(), json!(current.revision));
        if let Some(name) = b.name {
            obj.insert("name".into(), json!(name));
        }
        if let Some(env) = b.default_env_vars {
            obj.insert("env".into(), json!(env));
        }
        if let Some(r) = obj.get_mut("resources").and_then(Value::as_object_mut) {
            let mut set = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    r.insert(k.into(), v);
                }
            };
            set("cpu_cores", b.default_cpu_cores.map(|v| json!(v)));
            set("memory_mb", b.default_memory_mb.map(|v| json!(v)));
            set("disk_mb", b.default_disk_mb.map(|v| json!(v)));
            set("idle_timeout_secs", b.default_timeout.map(|v| json!(v)));
        }
    }
    match s.templates.replace(&p.actor, &id, &doc).await {
        Ok(t) => Json(template_view(&t)).into_response(),
        Err(e) => native(&ApiError::from(e)),
    }
}

/// `DELETE /api/v1/templates/{id}` (admin): `{"message": …}`.
async fn delete_template(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Path(id): Path<String>,
) -> Response {
    let p = match admin_key(p) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match s.templates.delete(&p.actor, &id).await {
        Ok(()) => Json(json!({"message": "Template deleted successfully"})).into_response(),
        Err(e) => native(&ApiError::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_8601_utc() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn sizes_read_as_kubernetes_quantities() {
        assert_eq!(parse_quantity("512Mi"), Some(512));
        assert_eq!(parse_quantity("1Gi"), Some(1024));
        assert_eq!(parse_quantity("0.5Gi"), Some(512));
        assert_eq!(parse_quantity("1G"), Some(954));
        assert_eq!(parse_quantity("1048576"), Some(1));
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("0Mi"), None);
        assert_eq!(parse_quantity("5Xi"), None);
        assert_eq!(quantity_text(512), "512Mi");
        assert_eq!(quantity_text(2048), "2Gi");
        assert_eq!(cpu_text(1.0), "1");
        assert_eq!(cpu_text(0.5), "0.5");
    }
}
