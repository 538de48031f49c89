//! Piston's v2 API (`engineer-man/piston`): `GET /api/v2/runtimes`,
//! `POST /api/v2/execute` and `/api/v2/packages`, for chat bots, graders
//! and editor plug-ins that speak it. The packages are the runtimes (the
//! host's toolchains): listed, "installed" when provided, never changed.
//! [`connect`] is the interactive protocol (`/api/v2/connect`).
//!
//! A request names a language (or an alias) and a version (`*`, an exact
//! version, or a semver range) that the host's toolchain must satisfy,
//! files (`utf8`, `base64` or `hex`; the first is the entry file), stdin,
//! args and limits (ms, bytes), which may not exceed the `run.*` policy.
//! The answer is Piston's: `{language, version, run, compile?}` with each
//! stage's `stdout`, `stderr`, `output`, `code`, `signal`, `status`
//! (`RE`, `SG`, `TO`, `OL`, `EL`, `XX`, or null), `message`, `memory`
//! (bytes), `cpu_time` and `wall_time` (ms). Refusals are 400
//! `{"message"}` as upstream's.
//!
//! Keys are required (bearer or `X-Api-Key`, an app key); an operator may
//! let anonymous calls in on these paths only (`compat.piston_anonymous`),
//! recorded under `compat.anonymous_app`, at most
//! `compat.piston_anonymous_per_minute` a minute on this node.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use warden_core::{Execution, ExecutionResult, ExecutionStatus, NewRun, Role, RunFile, RunLanguage};
use warden_runtime::script::ScriptLanguage;

use crate::AppState;
use crate::auth::Principal;

pub mod connect;
use crate::error::ApiError;

/// The Piston routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v2/runtimes", get(runtimes))
        .route("/api/v2/execute", post(execute))
        .route("/api/v2/packages", get(packages).post(install).delete(uninstall))
        .route("/api/v2/connect", get(connect::connect))
}

/// Anonymous calls admitted this minute (one window for the node).
#[derive(Debug)]
pub struct Anonymous {
    window: Mutex<(Instant, u32)>,
}

impl Default for Anonymous {
    fn default() -> Self {
        Anonymous {
            window: Mutex::new((Instant::now(), 0)),
        }
    }
}

impl Anonymous {
    /// Admit one more anonymous call, if fewer than `per_minute` came in
    /// this minute.
    fn admit(&self, per_minute: u32) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.0.elapsed() >= Duration::from_secs(60) {
            *w = (Instant::now(), 0);
        }
        if w.1 >= per_minute {
            return false;
        }
        w.1 += 1;
        true
    }
}

/// A refusal as Piston words it: a status and `{"message"}`.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"message": self.message}))).into_response()
    }
}

fn message(status: StatusCode, text: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: text.into(),
    }
}

/// A native refusal in Piston's terms.
fn refused(e: &ApiError) -> Refusal {
    let p = e.problem();
    let text = match p.errors.as_slice() {
        [] => p.detail,
        errors => errors
            .iter()
            .map(|f| format!("{}: {}", f.location, f.message))
            .collect::<Vec<_>>()
            .join("; "),
    };
    let status = match e.status() {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        s => s,
    };
    message(status, text)
}

/// Who a call runs for: an app key's app, or the anonymous app when the
/// operator allows it and the minute's budget has room.
fn app_of(s: &AppState, p: Result<Principal, ApiError>, headers: &HeaderMap) -> Result<String, Refusal> {
    let sent_key = headers.contains_key(header::AUTHORIZATION) || headers.contains_key("x-api-key");
    match p {
        Ok(p) => match (p.actor.role, p.actor.app) {
            (Role::App, Some(app)) => Ok(app),
            _ => Err(message(
                StatusCode::FORBIDDEN,
                "the Piston API takes an app key (runs are recorded under its app)",
            )),
        },
        Err(_) if !sent_key && s.config.compat.piston_anonymous => {
            if s.compat
                .anonymous
                .admit(s.config.compat.piston_anonymous_per_minute)
            {
                Ok(s.config.compat.anonymous_app.clone())
            } else {
                Err(message(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "anonymous calls are limited to {} a minute on this server: retry later, or send an API key",
                        s.config.compat.piston_anonymous_per_minute
                    ),
                ))
            }
        }
        Err(e) => Err(message(StatusCode::UNAUTHORIZED, e.problem().detail)),
    }
}

/// One of the host's runtimes as Piston names it.
struct Runtime {
    language: &'static str,
    aliases: &'static [&'static str],
    runtime: Option<&'static str>,
    native: RunLanguage,
}

const RUNTIMES: [Runtime; 6] = [
    Runtime {
        language: "python",
        aliases: &["py", "py3", "python3"],
        runtime: None,
        native: RunLanguage::Python,
    },
    Runtime {
        language: "javascript",
        aliases: &["node-javascript", "node-js", "javascript", "js"],
        runtime: Some("node"),
        native: RunLanguage::Javascript,
    },
    Runtime {
        language: "bash",
        aliases: &["sh"],
        runtime: None,
        native: RunLanguage::Shell,
    },
    Runtime {
        language: "c",
        aliases: &["gcc"],
        runtime: Some("gcc"),
        native: RunLanguage::C,
    },
    Runtime {
        language: "c++",
        aliases: &["cpp", "g++"],
        runtime: Some("gcc"),
        native: RunLanguage::Cpp,
    },
    Runtime {
        language: "go",
        aliases: &["go", "golang"],
        runtime: None,
        native: RunLanguage::Go,
    },
];

fn script_language(l: RunLanguage) -> ScriptLanguage {
    match l {
        RunLanguage::Python => ScriptLanguage::Python,
        RunLanguage::Javascript => ScriptLanguage::Javascript,
        RunLanguage::Shell => ScriptLanguage::Shell,
        RunLanguage::C => ScriptLanguage::C,
        RunLanguage::Cpp => ScriptLanguage::Cpp,
        RunLanguage::Go => ScriptLanguage::Go,
    }
}

/// The host's toolchain version as semver (`1.19` → `1.19.0`).
fn version_of(l: RunLanguage) -> Option<semver::Version> {
    let raw = script_language(l).version()?;
    let mut parts: Vec<&str> = raw.split('.').take(3).collect();
    while parts.len() < 3 {
        parts.push("0");
    }
    semver::Version::parse(&parts.join(".")).ok()
}

/// Whether `have` satisfies what a client asked for: `*`, an exact
/// version, or a range.
fn satisfies(asked: &str, have: &semver::Version) -> bool {
    let asked = asked.trim();
    if asked == "*" || asked.is_empty() {
        return true;
    }
    if let Ok(exact) = semver::Version::parse(asked) {
        return &exact == have;
    }
    semver::VersionReq::parse(asked).is_ok_and(|r| r.matches(have))
}

/// `GET /api/v2/runtimes`: the host's toolchains (open: upstream lists
/// them without a key).
async fn runtimes() -> Json<Vec<Value>> {
    Json(
        RUNTIMES
            .iter()
            .filter_map(|r| {
                let v = version_of(r.native)?;
                let mut doc = json!({"language": r.language, "version": v.to_string(), "aliases": r.aliases});
                if let Some(rt) = r.runtime {
                    doc["runtime"] = json!(rt);
                }
                Some(doc)
            })
            .collect(),
    )
}

/// `GET /api/v2/packages`: the same runtimes as `/api/v2/runtimes`, in
/// the package manager's shape (`language`, `language_version`,
/// `installed`). Every one is installed: this server has no package
/// repository, its runtimes are the host's toolchains (open, as the
/// runtimes list is).
async fn packages() -> Json<Vec<Value>> {
    Json(
        RUNTIMES
            .iter()
            .filter_map(|r| {
                let v = version_of(r.native)?;
                Some(json!({"language": r.language, "language_version": v.to_string(), "installed": true}))
            })
            .collect(),
    )
}

/// The package a `POST`/`DELETE /api/v2/packages` body names: the runtime
/// and its version, or the refusal that says why not.
fn package_of(
    s: &AppState,
    p: Result<Principal, ApiError>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(&'static Runtime, semver::Version), Refusal> {
    app_of(s, p, headers)?;
    json_only(headers)?;
    let body = object(body)?;
    let field = |name: &str| match body.get(name) {
        Some(Value::String(v)) if !v.is_empty() => Ok(v.clone()),
        _ => Err(message(
            StatusCode::BAD_REQUEST,
            format!("{name} is required as a string"),
        )),
    };
    let (language, version) = (field("language")?, field("version")?);
    find(&language, &version).ok_or_else(|| {
        message(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "Requested package {language}-{version} does not exist: this server's runtimes are its host's toolchains, set by its configuration, and cannot be installed through the API (GET /api/v2/packages lists them)"
            ),
        )
    })
}

/// `POST /api/v2/packages`: a runtime this server provides answers as
/// Piston's install does (`{language, version}`, 200: it is there); any
/// other is 501, since nothing is downloaded.
async fn install(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match package_of(&s, p, &headers, &body) {
        Ok((rt, v)) => Json(json!({"language": rt.language, "version": v.to_string()})).into_response(),
        Err(r) => r.into_response(),
    }
}

/// `DELETE /api/v2/packages`: always 501, naming why (the runtime comes
/// from the server's configuration); 400 for a body without the fields.
async fn uninstall(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match package_of(&s, p, &headers, &body) {
        Ok((rt, v)) => message(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "{}-{v} cannot be uninstalled through the API: this server's runtimes are its host's toolchains, set by its configuration",
                rt.language
            ),
        )
        .into_response(),
        Err(r) => r.into_response(),
    }
}

/// Piston's check on every write: JSON bodies only (415 otherwise).
fn json_only(headers: &HeaderMap) -> Result<(), Refusal> {
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
    {
        Ok(())
    } else {
        Err(message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "requests must be of type application/json",
        ))
    }
}

/// The body as a JSON object, or a 400 that says what is wrong with it.
fn object(body: &[u8]) -> Result<Value, Refusal> {
    match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(message(StatusCode::BAD_REQUEST, "the body must be a JSON object")),
        Err(e) => Err(message(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )),
    }
}

/// The runtime for a language (or alias) and a version a client asked
/// for, with the host's version.
fn find(language: &str, version: &str) -> Option<(&'static Runtime, semver::Version)> {
    let lang = language.to_ascii_lowercase();
    RUNTIMES
        .iter()
        .filter(|r| r.language == lang || r.aliases.contains(&lang.as_str()))
        .find_map(|r| {
            version_of(r.native)
                .filter(|v| satisfies(version, v))
                .map(|v| (r, v))
        })
}

/// A limit from the body: absent (or 0/-1, upstream's "unset") is `None`;
/// otherwise a non-negative number within `max`.
fn limit(body: &Value, name: &str, max: u64, unit: u64) -> Result<Option<u64>, Refusal> {
    let Some(v) = body.get(name).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(n) = v.as_f64() else {
        return Err(message(
            StatusCode::BAD_REQUEST,
            format!("If specified, {name} must be a number"),
        ));
    };
    if n == 0.0 || n == -1.0 {
        return Ok(None);
    }
    if n < 0.0 || !n.is_finite() {
        return Err(message(
            StatusCode::BAD_REQUEST,
            format!("{name} must be non-negative"),
        ));
    }
    if n > (max * unit) as f64 {
        return Err(message(
            StatusCode::BAD_REQUEST,
            format!("{name} cannot exceed the configured limit of {}", max * unit),
        ));
    }
    Ok(Some(((n / unit as f64).ceil() as u64).max(1)))
}

fn decode(content: &str, encoding: &str, i: usize) -> Result<Vec<u8>, Refusal> {
    let bad = |why: String| message(StatusCode::BAD_REQUEST, format!("files[{i}].content {why}"));
    match encoding {
        "utf8" => Ok(content.as_bytes().to_vec()),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(content.as_bytes())
            .map_err(|e| bad(format!("is not base64: {e}"))),
        "hex" => {
            let b = content.as_bytes();
            if !b.len().is_multiple_of(2) {
                return Err(bad("is not hex: odd length".into()));
            }
            b.chunks(2)
                .map(|p| {
                    std::str::from_utf8(p)
                        .ok()
                        .and_then(|p| u8::from_str_radix(p, 16).ok())
                        .ok_or_else(|| bad("is not hex".into()))
                })
                .collect()
        }
        other => Err(message(
            StatusCode::BAD_REQUEST,
            format!("files[{i}].encoding `{other}` is not one of utf8, base64, hex"),
        )),
    }
}

/// The request as the native service takes it, or upstream's 400.
fn parse(s: &AppState, body: &Value) -> Result<(&'static Runtime, semver::Version, NewRun), Refusal> {
    let bad = |m: &str| Err(message(StatusCode::BAD_REQUEST, m));
    let Some(language) = body.get("language").and_then(Value::as_str) else {
        return bad("language is required as a string");
    };
    let Some(version) = body.get("version").and_then(Value::as_str) else {
        return bad("version is required as a string");
    };
    let Some(files) = body.get("files").and_then(Value::as_array) else {
        return bad("files is required as an array");
    };
    let Some((rt, have)) = find(language, version) else {
        return Err(message(
            StatusCode::BAD_REQUEST,
            format!("{language}-{version} runtime is unknown"),
        ));
    };
    let mut out = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let Some(content) = f.get("content").and_then(Value::as_str) else {
            return Err(message(
                StatusCode::BAD_REQUEST,
                format!("files[{i}].content is required as a string"),
            ));
        };
        let encoding = f.get("encoding").and_then(Value::as_str).unwrap_or("utf8");
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map_or_else(|| format!("file{i}.code"), str::to_owned);
        out.push(RunFile {
            path: name,
            content: decode(content, encoding, i)?,
        });
    }
    if !files
        .iter()
        .any(|f| matches!(f.get("encoding").and_then(Value::as_str), None | Some("utf8")))
    {
        return bad("files must include at least one utf8 encoded file");
    }
    let args = match body.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => {
            let mut args = Vec::with_capacity(a.len());
            for (i, v) in a.iter().enumerate() {
                match v {
                    Value::String(s) => args.push(s.clone()),
                    Value::Number(n) => args.push(n.to_string()),
                    _ => {
                        return Err(message(
                            StatusCode::BAD_REQUEST,
                            format!("args[{i}] must be a string"),
                        ));
                    }
                }
            }
            args
        }
        Some(_) => return bad("args must be an array"),
    };
    let stdin = match body.get("stdin") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return bad("stdin must be a string"),
    };
    let p = s.runs.policy();
    // Piston's limits: times in ms, memory in bytes.
    let run_timeout = limit(body, "run_timeout", p.max_timeout_ms, 1)?;
    let compile_timeout = limit(body, "compile_timeout", p.max_compile_timeout_ms, 1)?;
    let run_memory = limit(body, "run_memory_limit", p.max_memory_mb, 1 << 20)?;
    let compile_memory = limit(body, "compile_memory_limit", p.max_compile_memory_mb, 1 << 20)?;
    // CPU time is bounded by the wall clock here; the fields are checked as
    // upstream checks them.
    limit(body, "run_cpu_time", p.max_timeout_ms, 1)?;
    limit(body, "compile_cpu_time", p.max_compile_timeout_ms, 1)?;
    let run = NewRun {
        language: rt.native,
        files: out,
        stdin: stdin.into_bytes(),
        args,
        template: None,
        network: false,
        // Piston's default run timeout is 3 s.
        timeout_ms: Some(run_timeout.unwrap_or_else(|| 3000.min(p.max_timeout_ms))),
        memory_mb: run_memory.map(|m| m.max(warden_core::run::MIN_MEMORY_MB)),
        compile_timeout_ms: compile_timeout,
        compile_memory_mb: compile_memory.map(|m| m.max(warden_core::run::MIN_MEMORY_MB)),
    };
    Ok((rt, have, run))
}

/// `POST /api/v2/execute`.
async fn execute(
    State(s): State<AppState>,
    p: Result<Principal, ApiError>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let app = match app_of(&s, p, &headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = json_only(&headers) {
        return r.into_response();
    }
    let body = match object(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let (rt, version, run) = match parse(&s, &body) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    match s.runs.run(&app, run, None).await {
        Ok(e) => Json(answer(rt, &version, &e)).into_response(),
        Err(e) => refused(&e).into_response(),
    }
}

/// One stage as Piston reports it.
fn stage(r: &ExecutionResult, status: ExecutionStatus) -> Value {
    let jail = r.jail_status.as_deref().unwrap_or_default();
    let letters = match jail {
        "timeout" => Some("TO"),
        "output_limit" => Some(if r.stderr_truncated && !r.stdout_truncated {
            "EL"
        } else {
            "OL"
        }),
        "signaled" | "memory_limit" | "cpu_limit" | "violation" => Some("SG"),
        "nonzero_exit" => Some("RE"),
        "internal_error" => Some("XX"),
        _ => match status {
            ExecutionStatus::Success => None,
            ExecutionStatus::Failed => Some("RE"),
            ExecutionStatus::Timeout => Some("TO"),
            _ => Some("XX"),
        },
    };
    let signal = match (letters, r.signal) {
        (Some("TO" | "OL" | "EL"), _) => Some("SIGKILL".to_owned()),
        (_, Some(n)) => Some(signal_name(n)),
        _ => None,
    };
    let msg = r
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .or_else(|| match letters {
            Some("RE") => r.exit_code.map(|c| format!("Exited with error status {c}")),
            _ => None,
        });
    let m = r.metrics.as_ref();
    json!({
        "stdout": r.stdout,
        "stderr": r.stderr,
        "output": format!("{}{}", r.stdout, r.stderr),
        "code": r.exit_code,
        "signal": signal,
        "status": letters,
        "message": msg,
        "memory": m.map(|m| (m.peak_memory_mb * 1024.0 * 1024.0).round() as u64),
        "cpu_time": m.map(|m| m.cpu_time_ms.round() as u64),
        "wall_time": m.map(|m| m.duration_ms.round() as u64),
    })
}

fn signal_name(n: i32) -> String {
    match n {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return format!("SIG{n}"),
    }
    .to_owned()
}

/// The whole answer: `{language, version, run, compile?}`; when the
/// compile step failed, `run` repeats it (as upstream does).
fn answer(rt: &Runtime, version: &semver::Version, e: &Execution) -> Value {
    let empty = ExecutionResult::platform_error("PlatformError", "no result", None);
    let r = e.result.as_ref().unwrap_or(&empty);
    let mut doc = json!({"language": rt.language, "version": version.to_string()});
    match &r.compile {
        Some(c) => {
            let compiled = c.status == warden_core::ResultStatus::Success;
            let cstatus = if compiled {
                ExecutionStatus::Success
            } else {
                ExecutionStatus::Failed
            };
            doc["compile"] = stage(c, cstatus);
            doc["run"] = if compiled {
                stage(r, e.status)
            } else {
                doc["compile"].clone()
            };
        }
        None => doc["run"] = stage(r, e.status),
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_match_as_piston_clients_ask() {
        let v = semver::Version::parse("3.11.2").unwrap();
        for ok in ["*", "3.11.2", "3.x", "3", "3.11", ">=3.10", "^3.0.0", "3.11.x"] {
            assert!(satisfies(ok, &v), "{ok}");
        }
        for no in ["3.10.0", "3.12", "2.x", "<3", "nonsense", "3.11.3"] {
            assert!(!satisfies(no, &v), "{no}");
        }
    }

    #[test]
    fn hex_and_base64_files_decode_and_bad_ones_are_named() {
        assert_eq!(decode("6869", "hex", 0).unwrap(), b"hi");
        assert_eq!(decode("aGk=", "base64", 0).unwrap(), b"hi");
        assert!(decode("6", "hex", 0).is_err());
        assert!(decode("zz", "hex", 0).is_err());
        assert!(decode("!", "base64", 0).is_err());
        assert!(decode("x", "rot13", 0).is_err());
    }

    #[test]
    fn the_anonymous_budget_refills_each_minute() {
        let a = Anonymous::default();
        assert!(a.admit(2) && a.admit(2));
        assert!(!a.admit(2));
        a.window.lock().unwrap().0 = Instant::now() - Duration::from_secs(61);
        assert!(a.admit(2));
    }
}
