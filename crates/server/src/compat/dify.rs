//! Dify's sandbox API (`langgenius/dify-sandbox`), what a Dify deployment's
//! `CODE_EXECUTION_ENDPOINT` points at: `POST /v1/sandbox/run`, the
//! dependency calls and `GET /health`, keyed by `X-Api-Key` (a Warden app
//! key: runs are recorded under its app).
//!
//! Every answer is the upstream envelope `{code, message, data}`. A run that
//! happened is HTTP 200 with `code` 0 and `data` = `{stdout, stderr, error,
//! exit_code}`: older Dify versions read `stdout` and `error`, newer ones
//! also `stderr` and `exit_code`; a run that failed (an exception, a
//! timeout, a limit) has a non-empty, human-readable `error`, which Dify
//! raises as the node's error. Refusals keep upstream's statuses: 400 with
//! `code` -400 (unsupported language, unreadable body), 401 (no or wrong
//! key), 503 with `code` -503 (no room: the node's execution budget).
//!
//! `enable_network` (Dify always sends `true`) is honoured only as far as
//! the template of Dify's runs allows hosts and `run.network` permits;
//! otherwise the run goes on without network. `preload` runs before the
//! code, in the same program.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use warden_core::{Execution, ExecutionStatus, NewRun, Role, RunFile, RunLanguage, Store};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;

/// The Dify routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/v1/sandbox/run", post(run))
        .route("/v1/sandbox/dependencies", get(dependencies))
        .route("/v1/sandbox/dependencies/update", post(update_dependencies))
        .route("/v1/sandbox/dependencies/refresh", get(dependencies))
}

/// An upstream envelope with an HTTP status.
fn envelope(status: StatusCode, code: i64, message: impl Into<String>, data: Value) -> Response {
    (
        status,
        Json(json!({"code": code, "message": message.into(), "data": data})),
    )
        .into_response()
}

/// A refusal in upstream's envelope: a status, a negative `code`, a
/// message, no data.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: i64,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        envelope(self.status, self.code, self.message, Value::Null)
    }
}

fn refusal(status: StatusCode, code: i64, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

fn success(data: Value) -> Response {
    envelope(StatusCode::OK, 0, "success", data)
}

/// A native refusal in upstream's terms.
fn refused(e: &ApiError) -> Refusal {
    let detail = e.problem().detail;
    match e.status() {
        StatusCode::UNAUTHORIZED => refusal(StatusCode::UNAUTHORIZED, -401, detail),
        StatusCode::FORBIDDEN => refusal(StatusCode::FORBIDDEN, -403, detail),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            refusal(StatusCode::SERVICE_UNAVAILABLE, -503, detail)
        }
        s if s.is_client_error() => refusal(StatusCode::BAD_REQUEST, -400, detail),
        _ => refusal(StatusCode::INTERNAL_SERVER_ERROR, -500, detail),
    }
}

/// The app of a Dify call: the key must be an app key.
fn app_of(p: Result<Principal, ApiError>) -> Result<String, Refusal> {
    let p = p.map_err(|e| refused(&e))?;
    match (p.actor.role, p.actor.app) {
        (Role::App, Some(app)) => Ok(app),
        _ => Err(refusal(
            StatusCode::FORBIDDEN,
            -403,
            "the Dify sandbox API takes an app key (runs are recorded under its app): set CODE_EXECUTION_API_KEY to one",
        )),
    }
}

/// `GET /health`: upstream answers the JSON string `"ok"`.
async fn health() -> Json<&'static str> {
    Json("ok")
}

#[derive(Debug, Deserialize)]
struct RunRequest {
    language: String,
    code: String,
    #[serde(default)]
    preload: String,
    #[serde(default)]
    enable_network: bool,
}

/// `POST /v1/sandbox/run`.
async fn run(State(s): State<AppState>, p: Result<Principal, ApiError>, body: Bytes) -> Response {
    let app = match app_of(p) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let req: RunRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return envelope(
                StatusCode::BAD_REQUEST,
                -400,
                format!("the body cannot be read: {e}"),
                Value::Null,
            );
        }
    };
    let (language, template) = match req.language.as_str() {
        "python3" => (RunLanguage::Python, Some(s.config.compat.dify_template.clone())),
        "nodejs" => (RunLanguage::Javascript, None),
        _ => {
            return envelope(StatusCode::BAD_REQUEST, -400, "unsupported language", Value::Null);
        }
    };
    // The preload runs first, in the same program (as upstream's runner
    // executes it before the code).
    let mut program = req.preload;
    if !program.is_empty() && !program.ends_with('\n') {
        program.push('\n');
    }
    program.push_str(&req.code);
    let run = NewRun {
        language,
        files: vec![RunFile {
            path: language.main_file().to_owned(),
            content: program.into_bytes(),
        }],
        stdin: Vec::new(),
        args: Vec::new(),
        template,
        network: req.enable_network,
        timeout_ms: None,
        memory_mb: None,
        compile_timeout_ms: None,
        compile_memory_mb: None,
    };
    let fallback = language.default_template();
    match s.runs.run(&app, run, fallback).await {
        Ok(e) => success(data_of(&e)),
        Err(e) => refused(&e).into_response(),
    }
}

/// The run's `data`: `{stdout, stderr, error, exit_code}`.
pub fn data_of(e: &Execution) -> Value {
    let r = e.result.as_ref();
    let stdout = r.map(|r| r.stdout.as_str()).unwrap_or_default();
    let stderr = r.map(|r| r.stderr.as_str()).unwrap_or_default();
    let exit_code = r
        .and_then(|r| r.exit_code)
        .unwrap_or(if e.status == ExecutionStatus::Success {
            0
        } else {
            -1
        });
    json!({
        "stdout": stdout,
        "stderr": stderr,
        "error": error_of(e),
        "exit_code": exit_code,
    })
}

/// Why a run did not succeed, for a person reading Dify's node error;
/// empty when it succeeded.
pub fn error_of(e: &Execution) -> String {
    if e.status == ExecutionStatus::Success {
        return String::new();
    }
    let r = e.result.as_ref();
    let stderr = r.map(|r| r.stderr.trim_end()).unwrap_or_default();
    let why = r
        .and_then(|r| r.error.as_ref())
        .map(|x| x.message.clone())
        .unwrap_or_default();
    let head = match (e.status, r.and_then(|r| r.exit_code), r.and_then(|r| r.signal)) {
        (ExecutionStatus::Failed, Some(code), _) => format!("process exited with code {code}"),
        (ExecutionStatus::Timeout, ..) => "the code ran out of time and was stopped".to_owned(),
        (_, _, Some(sig)) => format!("the code was stopped by signal {sig}: {why}"),
        _ if !why.is_empty() => format!(
            "the code was stopped: {why} ({})",
            e.error_kind.map(|k| k.as_str()).unwrap_or("error")
        ),
        _ => format!("the code did not finish ({})", e.status.as_str()),
    };
    if stderr.is_empty() {
        head
    } else {
        format!("{head}\n{stderr}")
    }
}

#[derive(Debug, Deserialize)]
struct LanguageQuery {
    language: Option<String>,
}

/// The packages Dify's Python runs have: the template's lock when its
/// layer is built, else what it asks for.
async fn listed(s: &AppState) -> Result<Value, ApiError> {
    let id = &s.config.compat.dify_template;
    let Some((t, _)) = s.runs.template(id).await? else {
        return Ok(json!({"dependencies": []}));
    };
    let locked = match &t.layer {
        Some(l) => s
            .store
            .get_layer(l)
            .await?
            .filter(|l| l.status == warden_core::LayerStatus::Ready)
            .map(|l| l.lock),
        None => None,
    };
    let deps: Vec<Value> = match locked {
        Some(lock) => lock
            .into_iter()
            .map(|p| json!({"name": p.name, "version": p.version}))
            .collect(),
        None => t
            .packages
            .iter()
            .map(|p| json!({"name": p.name, "version": p.version.clone().unwrap_or_default()}))
            .collect(),
    };
    Ok(json!({"dependencies": deps}))
}

fn python3_only(q: &LanguageQuery) -> Result<(), Refusal> {
    match q.language.as_deref() {
        Some("python3") => Ok(()),
        None => Err(refusal(
            StatusCode::BAD_REQUEST,
            -400,
            "the `language` parameter is required",
        )),
        Some(_) => Err(refusal(StatusCode::BAD_REQUEST, -400, "unsupported language")),
    }
}

/// `GET /v1/sandbox/dependencies` and `…/refresh`.
async fn dependencies(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Query(q): Query<LanguageQuery>,
) -> Response {
    if let Err(r) = app_of(p) {
        return r.into_response();
    }
    if let Err(r) = python3_only(&q) {
        return r.into_response();
    }
    match listed(&s).await {
        Ok(v) => success(v),
        Err(e) => refused(&e).into_response(),
    }
}

/// `POST /v1/sandbox/dependencies/update`: start (or join) the build of
/// the template's packages; runs use them once it is ready.
async fn update_dependencies(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    Query(q): Query<LanguageQuery>,
    body: Bytes,
) -> Response {
    let app = match app_of(p) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    // Upstream takes the language from the body or the query.
    let from_body = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("language").and_then(Value::as_str).map(str::to_owned));
    let q = LanguageQuery {
        language: q.language.or(from_body),
    };
    if let Err(r) = python3_only(&q) {
        return r.into_response();
    }
    let id = s.config.compat.dify_template.clone();
    let t = match s.templates.get(&id).await {
        Ok(t) => t,
        Err(e) => return refused(&ApiError::from(e)).into_response(),
    };
    match s.builds.build(&format!("app:{app}"), t).await {
        Ok(b) => success(json!({"template": b.template, "status": b.status})),
        Err(e) => refused(&e).into_response(),
    }
}
