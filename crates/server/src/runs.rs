//! One-shot runs: a tenant's program run once and recorded as an ordinary
//! execution (source `run`), with the same result document and SSE stream
//! as every execution. `POST /v1/run` and the compatibility APIs (Dify's
//! sandbox, Piston; see [`crate::compat`]) all come here: one path from a
//! checked request to a final record.
//!
//! 1. Who: an app key runs for its app; an admin names the app.
//! 2. What: the template (the language's built-in when none is named) and
//!    the request checked against it and the `run.*` policy by the core
//!    ([`warden_core::run::plan`]): every problem at once, located.
//! 3. Admission through the executor's budget (429 beyond it), shared with
//!    plugin calls; the record is written `running` before anything runs.
//! 4. The program runs on a task of its own (a client that goes away does
//!    not cancel it) once a running slot is free: warm boxes of this app
//!    only for Python and JavaScript, a fresh box otherwise; a compile step
//!    with its own limits and result for C, C++ and Go.
//! 5. The final record, its artifacts, the metrics and the event log's
//!    result.
//!
//! Must never: run anything on the host, share a warm box between apps, or
//! answer a request it accepted without recording it.

use std::sync::Arc;
use std::time::Duration;

use warden_core::model::{new_id, now_ms};
use warden_core::run::{NewRun, RunPlan, RunPolicy, RunTemplate};
use warden_core::template::{NetworkMode, Template, TemplateRuntime};
use warden_core::{
    ErrorKind, Execution, ExecutionMode, ExecutionResult, ExecutionSource, ExecutionStatus, ResultStatus,
    Role, RunLanguage, Store, TemplateError, Templates, model::Actor,
};
use warden_jail::MIB;
use warden_runtime::script::{Script, ScriptFile, ScriptLanguage, ScriptNetwork, ScriptOutcome};
use warden_runtime::{CallLimits, Runner, Stream};
use warden_store::{ObjectBlobs, SqlStore};

use crate::builds::Builds;
use crate::error::{ApiError, FieldError};
use crate::events::Log;
use crate::exec::{Executor, record_final, recorded, status_of, store_artifacts};

/// Processes and threads of a run (compile steps get the runtime's own
/// compile default).
const RUN_PIDS: u32 = 64;
/// A run's writable workspace (its files and what it writes).
const RUN_WORKSPACE: u64 = 64 * MIB;

/// The one-shot run service.
pub struct Runs {
    store: Arc<SqlStore>,
    blobs: Arc<ObjectBlobs>,
    runner: Runner,
    templates: Arc<Templates<SqlStore>>,
    builds: Arc<Builds>,
    exec: Arc<Executor>,
    policy: RunPolicy,
    /// The fallback template was used (warned once, then at debug).
    fell_back: std::sync::atomic::AtomicBool,
}

/// An accepted run: its first record and the final one to come.
pub struct RunAccepted {
    /// The record as first written (`running`).
    pub record: Execution,
    /// Resolves with the final record.
    pub done: tokio::sync::oneshot::Receiver<Execution>,
}

fn invalid(errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid("invalid-run", "The run is invalid", errors)
}

fn at(location: &str, message: impl Into<String>) -> ApiError {
    invalid(vec![FieldError {
        location: location.into(),
        message: message.into(),
    }])
}

/// The runtime's name for a language.
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

impl Runs {
    /// The service over the server's parts.
    pub fn new(
        store: Arc<SqlStore>,
        blobs: Arc<ObjectBlobs>,
        runner: Runner,
        templates: Arc<Templates<SqlStore>>,
        builds: Arc<Builds>,
        exec: Arc<Executor>,
        policy: RunPolicy,
    ) -> Runs {
        Runs {
            store,
            blobs,
            runner,
            templates,
            builds,
            exec,
            policy,
            fell_back: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// What runs may ask for.
    pub fn policy(&self) -> &RunPolicy {
        &self.policy
    }

    /// The app a run of `actor` belongs to: an app key's own (naming
    /// another is 403), the one an admin names (422 when missing or
    /// unknown); developer keys cannot run code.
    pub async fn app_for(&self, actor: &Actor, app: Option<String>) -> Result<String, ApiError> {
        match actor.role {
            Role::Developer => Err(ApiError::forbidden(
                "developer keys cannot run code: use the app's key or an admin key",
            )),
            Role::App => {
                let own = actor.app.clone().unwrap_or_default();
                if app.as_ref().is_some_and(|a| *a != own) {
                    return Err(ApiError::forbidden(format!(
                        "this key runs code for app `{own}` only"
                    )));
                }
                Ok(own)
            }
            Role::Admin => {
                let Some(app) = app else {
                    return Err(at("/app", "admin keys name the app the run belongs to"));
                };
                if self.store.get_app(&app).await?.is_none() {
                    return Err(at(
                        "/app",
                        format!("no app `{}`", warden_jail::escape_name(app.as_bytes())),
                    ));
                }
                Ok(app)
            }
        }
    }

    /// The template `id` as a run needs it; `None` when it does not exist.
    pub async fn template(&self, id: &str) -> Result<Option<(Template, RunTemplate)>, ApiError> {
        match self.templates.get(id).await {
            Ok(t) => {
                let rt = RunTemplate {
                    id: t.id.clone(),
                    runtime: t.runtime,
                    allow: match t.network.mode {
                        NetworkMode::AllowList => t.network.allow.clone(),
                        NetworkMode::None => Vec::new(),
                    },
                    layer: t.layer.clone(),
                };
                Ok(Some((t, rt)))
            }
            Err(TemplateError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Create template `id` for Dify's Python runs (python with `requests`,
    /// `httpx` and `jinja2`) when it does not exist; its layer is built by
    /// `POST /v1/templates/{id}/build`.
    pub async fn ensure_dify_template(&self, id: &str) -> Result<bool, ApiError> {
        if self.template(id).await?.is_some() {
            return Ok(false);
        }
        let pip = |name: &str| warden_core::template::PackageReq {
            ecosystem: warden_core::template::Ecosystem::Pip,
            name: name.into(),
            version: None,
            hashes: Vec::new(),
        };
        let spec = warden_core::template::TemplateSpec {
            id: id.into(),
            name: "Dify code nodes".into(),
            description: Some(
                "Python 3 with the packages Dify's code and template nodes expect (requests, httpx, jinja2); used by the Dify sandbox API".into(),
            ),
            runtime: TemplateRuntime::Python,
            packages: vec![pip("requests"), pip("httpx"), pip("jinja2")],
            env: Default::default(),
            resources: Default::default(),
            network: Default::default(),
            files: Vec::new(),
        };
        match self.templates.create_spec(&Actor::system(), spec).await {
            Ok(_) => Ok(true),
            Err(TemplateError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Check `req` for `app` and accept it: recorded `running`, then run on
    /// a task of its own. `fallback`: a template to use instead of the
    /// named one while the named one's packages are not built (Dify's).
    pub async fn start(
        self: &Arc<Self>,
        app: &str,
        req: NewRun,
        fallback: Option<&str>,
    ) -> Result<RunAccepted, ApiError> {
        let mut req = req;
        let template = match req.language.template_runtime() {
            None => None,
            Some(_) => {
                let id = req
                    .template
                    .clone()
                    .or_else(|| req.language.default_template().map(str::to_owned))
                    .unwrap_or_default();
                let found = self.template(&id).await?;
                let found = match (found, fallback) {
                    (Some((t, _)), Some(fb)) if !t.packages.is_empty() && t.layer.is_none() => {
                        if self.fell_back.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            tracing::debug!(template = %id, fallback = %fb, "the template's packages are not built yet; running with the fallback template");
                        } else {
                            tracing::warn!(template = %id, fallback = %fb, "the template's packages are not built yet; running with the fallback template (said once; build it with POST /v1/templates/{id}/build)");
                        }
                        req.template = Some(fb.to_owned());
                        self.template(fb).await?
                    }
                    (None, Some(fb)) => {
                        req.template = Some(fb.to_owned());
                        self.template(fb).await?
                    }
                    (found, _) => found,
                };
                let Some((t, rt)) = found else {
                    return Err(at(
                        "/template",
                        format!(
                            "no template `{}` (GET /v1/templates lists them)",
                            warden_jail::escape_name(id.as_bytes())
                        ),
                    ));
                };
                if !t.packages.is_empty() && t.layer.is_none() {
                    return Err(at(
                        "/template",
                        format!(
                            "template `{}` has packages that are not built yet: POST /v1/templates/{}/build, then run again",
                            t.id, t.id
                        ),
                    ));
                }
                Some((t, rt))
            }
        };
        let plan = warden_core::run::plan(&req, template.as_ref().map(|(_, rt)| rt), &self.policy)
            .map_err(|ps| invalid(ps.into_iter().map(FieldError::from).collect()))?;
        let layer = match &template {
            Some((t, _)) => self.builds.mount_for(t).await?,
            None => None,
        };
        let mut permit = self.exec.admit()?;
        let now = now_ms();
        let record = Execution {
            id: new_id("exe"),
            app: app.to_owned(),
            source: ExecutionSource::Run {
                language: req.language,
                template: template.as_ref().map(|(t, _)| t.id.clone()),
            },
            status: ExecutionStatus::Running,
            mode: ExecutionMode::Sync,
            node: self.exec.node().to_owned(),
            error_kind: None,
            result: None,
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            duration_ms: None,
            egress_refused: Vec::new(),
        };
        permit.track(&record.id);
        // Recorded before it runs: an accepted request always has its record.
        self.store.insert_execution(record.clone()).await?;
        let log = self.exec.hub.open(&record.id);
        log.status("running");
        let script = self.script(app, req, &plan, layer, &log);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let me = self.clone();
        let first = record.clone();
        tokio::spawn(async move {
            let id = first.id.clone();
            let run = me.execute(first, script, log, permit, tx);
            if let Err(panic) = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await {
                tracing::error!(execution = %id, panic = ?panic.downcast_ref::<&str>(), "a run's task panicked");
            }
        });
        Ok(RunAccepted { record, done: rx })
    }

    /// Check, accept and run `req`; the final record.
    pub async fn run(
        self: &Arc<Self>,
        app: &str,
        req: NewRun,
        fallback: Option<&str>,
    ) -> Result<Execution, ApiError> {
        let accepted = self.start(app, req, fallback).await?;
        accepted
            .done
            .await
            .map_err(|_| ApiError::internal(&"the run's task ended without a result"))
    }

    fn script(
        &self,
        app: &str,
        req: NewRun,
        plan: &RunPlan,
        layer: Option<warden_runtime::layers::LayerMount>,
        log: &Arc<Log>,
    ) -> Script {
        let timeout = Duration::from_millis(plan.timeout_ms);
        let compile_timeout = Duration::from_millis(plan.compile_timeout_ms);
        let tap_log = log.clone();
        let compile_log = log.clone();
        // After a compile step, the first output of the program itself is
        // marked, so a live client can tell the compiler's from it.
        let compiled = script_language(req.language).compiled();
        let marked = std::sync::atomic::AtomicBool::new(!compiled);
        Script {
            tenant: app.to_owned(),
            language: script_language(req.language),
            files: req
                .files
                .into_iter()
                .map(|f| ScriptFile {
                    path: f.path,
                    bytes: f.content,
                })
                .collect(),
            stdin: req.stdin,
            args: req.args,
            layer,
            network: (!plan.network.is_empty()).then(|| ScriptNetwork {
                hosts: plan.network.clone(),
                allow_cidrs: Vec::new(),
                credentials: Vec::new(),
            }),
            limits: CallLimits {
                timeout,
                cpu_time: timeout.max(Duration::from_secs(1)),
                memory_bytes: plan.memory_mb * MIB,
                pids: RUN_PIDS,
                workspace_bytes: RUN_WORKSPACE,
                ..CallLimits::default()
            },
            compile_limits: CallLimits {
                timeout: compile_timeout,
                cpu_time: compile_timeout.max(Duration::from_secs(1)),
                memory_bytes: plan.compile_memory_mb * MIB,
                ..warden_runtime::script::default_compile_limits()
            },
            tap: Some(Arc::new(move |stream, data| {
                if !marked.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tap_log.stage("run");
                }
                tap_log.output(stream == Stream::Stderr, data)
            })),
            // The compiler's diagnostics stream too: a client watching the
            // log sees why nothing ran.
            compile_tap: Some(Arc::new(move |stream, data| {
                compile_log.output(stream == Stream::Stderr, data)
            })),
        }
    }

    /// Run an accepted program in its turn and record how it ended.
    async fn execute(
        self: Arc<Self>,
        mut exec: Execution,
        script: Script,
        log: Arc<Log>,
        permit: crate::exec::Permit,
        done: tokio::sync::oneshot::Sender<Execution>,
    ) {
        let started = std::time::Instant::now();
        let slot = self.exec.slot().await;
        let runner = self.runner.clone();
        let outcome = match slot {
            Some(_) => tokio::task::spawn_blocking(move || runner.run_script(&script))
                .await
                .map_err(|e| e.to_string()),
            None => Err("the server is shutting down".to_owned()),
        };
        let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
        let artifacts = match outcome {
            Ok(Ok(o)) => self.conclude(&mut exec, o),
            Ok(Err(e)) => {
                let bad = matches!(e, warden_runtime::RuntimeError::BadScript(_));
                tracing::warn!(execution = %exec.id, error = %crate::error::DisplayChain(&e), "a run could not start");
                exec.status = ExecutionStatus::Error;
                exec.error_kind = Some(ErrorKind::Internal);
                exec.result = Some(ExecutionResult::platform_error(
                    "PlatformError",
                    if bad {
                        format!("the run could not start: {e}")
                    } else {
                        "the platform failed while running the program".to_owned()
                    },
                    None,
                ));
                Vec::new()
            }
            Err(e) => {
                tracing::error!(execution = %exec.id, error = %e, "a run could not run");
                exec.status = ExecutionStatus::Error;
                exec.error_kind = Some(ErrorKind::Internal);
                exec.result = Some(ExecutionResult::platform_error(
                    "PlatformError",
                    "the platform failed while running the program",
                    None,
                ));
                Vec::new()
            }
        };
        if let Some(result) = exec.result.as_mut() {
            store_artifacts(&self.blobs, &exec.id, artifacts, result).await;
        }
        exec.duration_ms = Some(wall_ms);
        exec.finished_at = Some(now_ms());
        record_final(&self.store, &exec).await;
        drop(permit);
        if let ExecutionSource::Run { language, .. } = &exec.source {
            metrics::counter!("warden_runs_total", "language" => language.as_str(), "status" => exec.status.as_str())
                .increment(1);
        }
        let view = crate::views::ExecutionView::from(exec.clone());
        log.finish(serde_json::to_string(&view).unwrap_or_default());
        let _ = done.send(exec);
    }

    /// The record of a finished program: the run's result with the compile
    /// step's inside; a failed compile step is the run's failure.
    fn conclude(&self, exec: &mut Execution, o: ScriptOutcome) -> Vec<Vec<u8>> {
        let compile = o.compile.map(|c| {
            let (mut r, _) = recorded(c);
            r.artifacts.clear();
            r
        });
        match o.run {
            Some(run) => {
                let (status, kind) = status_of(run.status, run.jail_status);
                let (mut result, data) = recorded(run);
                result.compile = compile.map(Box::new);
                exec.status = status;
                exec.error_kind = kind;
                exec.result = Some(result);
                data
            }
            None => {
                let compile = compile.unwrap_or_else(|| {
                    ExecutionResult::platform_error(
                        "PlatformError",
                        "the program neither compiled nor ran",
                        None,
                    )
                });
                let (status, why) = match compile.status {
                    ResultStatus::Timeout => (ExecutionStatus::Failed, "the compile step ran out of time"),
                    ResultStatus::Error => {
                        (ExecutionStatus::Failed, "the compile step was stopped by a limit")
                    }
                    _ => (ExecutionStatus::Failed, "the program did not compile"),
                };
                let mut result = ExecutionResult::platform_error("CompileError", why, None);
                result.status = ResultStatus::Failed;
                result.jail_status = None;
                result.compile = Some(Box::new(compile));
                exec.status = status;
                exec.error_kind = Some(ErrorKind::CompileError);
                exec.result = Some(result);
                Vec::new()
            }
        }
    }
}

// ---------------------------------------------------------------- POST /v1/run

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::api::ApiJson;
use crate::auth::Principal;
use crate::views::{ExecLanguage, ExecutionView};

/// How a file's content is written in the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileEncoding {
    /// Text, as is (the default).
    #[default]
    Utf8,
    /// Base64 (standard alphabet, padded).
    Base64,
}

/// One file of a run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunFileBody {
    /// Relative to the workspace (`main.py`, `src/util.c`); no `..`, not
    /// under `.warden/`, not `out` itself.
    pub path: String,
    /// The content, as `encoding` says.
    pub content: String,
    /// `utf8` (default) or `base64`.
    #[serde(default)]
    #[schema(inline)]
    pub encoding: FileEncoding,
}

/// A one-shot run: `code` (one file, named after the language) or `files`
/// (the first is the entry file).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// The app the run belongs to (admin keys; app keys run for their own).
    pub app: Option<String>,
    /// `python`, `javascript`, `shell`, `c`, `cpp` or `go`.
    #[schema(inline)]
    pub language: ExecLanguage,
    /// The program, as one file.
    pub code: Option<String>,
    /// The program's files, the entry file first (instead of `code`).
    pub files: Option<Vec<RunFileBody>>,
    /// Standard input.
    #[serde(default)]
    pub stdin: String,
    /// Arguments after the entry file.
    #[serde(default)]
    pub args: Vec<String>,
    /// The template (its packages and network); the language's built-in
    /// when absent. Compiled languages take none.
    pub template: Option<String>,
    /// Ask for the template's network (through the egress proxy); granted
    /// only as far as the template allows and `run.network` permits, and
    /// the run goes on without it otherwise.
    #[serde(default)]
    pub network: bool,
    /// Wall clock of the run, ms (default and most: `run.*`).
    #[schema(minimum = 1)]
    pub timeout_ms: Option<u64>,
    /// Memory of the run, MiB.
    #[schema(minimum = 16)]
    pub memory_mb: Option<u64>,
    /// Wall clock of the compile step, ms (C, C++, Go).
    #[schema(minimum = 1)]
    pub compile_timeout_ms: Option<u64>,
    /// Memory of the compile step, MiB.
    #[schema(minimum = 16)]
    pub compile_memory_mb: Option<u64>,
}

impl RunBody {
    /// The app it names and the core's request; content that cannot be
    /// decoded is a located problem.
    pub fn into_request(self) -> Result<(Option<String>, NewRun), ApiError> {
        let language = RunLanguage::from(self.language);
        let files = match (self.code, self.files) {
            (Some(_), Some(_)) => {
                return Err(at("/code", "send `code` or `files`, not both"));
            }
            (Some(code), None) => vec![warden_core::RunFile {
                path: language.main_file().to_owned(),
                content: code.into_bytes(),
            }],
            (None, Some(files)) => {
                let mut out = Vec::with_capacity(files.len());
                let mut problems = Vec::new();
                for (i, f) in files.into_iter().enumerate() {
                    let content = match f.encoding {
                        FileEncoding::Utf8 => f.content.into_bytes(),
                        FileEncoding::Base64 => {
                            match base64::engine::general_purpose::STANDARD.decode(f.content.as_bytes()) {
                                Ok(b) => b,
                                Err(e) => {
                                    problems.push(FieldError {
                                        location: format!("/files/{i}/content"),
                                        message: format!("not base64: {e}"),
                                    });
                                    Vec::new()
                                }
                            }
                        }
                    };
                    out.push(warden_core::RunFile {
                        path: f.path,
                        content,
                    });
                }
                if !problems.is_empty() {
                    return Err(invalid(problems));
                }
                out
            }
            (None, None) => Vec::new(),
        };
        Ok((
            self.app,
            NewRun {
                language,
                files,
                stdin: self.stdin.into_bytes(),
                args: self.args,
                template: self.template,
                network: self.network,
                timeout_ms: self.timeout_ms,
                memory_mb: self.memory_mb,
                compile_timeout_ms: self.compile_timeout_ms,
                compile_memory_mb: self.compile_memory_mb,
            },
        ))
    }
}

/// The error answers of a run.
pub struct RunProblems;

impl utoipa::IntoResponses for RunProblems {
    fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        crate::api::described_problems(&[
            ("400", "The body cannot be read (the field is named)"),
            ("401", "No API key, or an unknown or revoked one"),
            (
                "403",
                "Developer keys cannot run code; an app key naming another app",
            ),
            ("413", "The body is over its limit"),
            ("415", "The body is not `application/json`"),
            (
                "422",
                "Invalid: every problem located (no code, both `code` and `files`, bad paths, limits beyond `run.*`, an unknown template or one for another runtime, a template for a compiled language, unbuilt packages)",
            ),
            (
                "429",
                "The node has `max_concurrent + max_queue` executions in flight (see Retry-After)",
            ),
            ("503", "The store is unavailable, or the server is shutting down"),
        ])
    }
}

/// Run a program once and answer with its execution record: Python and
/// JavaScript on warm boxes of the calling app, shell and compiled
/// programs in a fresh box; C, C++ and Go are compiled first, with limits
/// and a result of their own (`compile`). Every run starts clean. With
/// `Accept: text/event-stream` the answer is the execution's event stream
/// (as `GET /v1/executions/{id}/events`) instead.
#[utoipa::path(post, path = "/v1/run", tag = "executions", request_body = RunBody,
    responses(
        (status = 200, description = "The run's execution record, final (its `status` says how the program ended), or its event stream", body = ExecutionView,
            links(("get_execution" = (operation_id = "get_execution", parameters(("id" = "$response.body#/id")))))),
        RunProblems),
    security(("api_key" = [])))]
pub async fn run(
    State(s): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RunBody>,
) -> Result<Response, ApiError> {
    let (app, req) = body.into_request()?;
    let app = s.runs.app_for(&p.actor, app).await?;
    let accepted = s.runs.start(&app, req, None).await?;
    let location = format!("/v1/executions/{}", accepted.record.id);
    let stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let mut r = if stream {
        Sse::new(crate::sse::events(
            s.clone(),
            crate::sse::Source::Execution,
            accepted.record.id.clone(),
            None,
        ))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
    } else {
        let e = accepted
            .done
            .await
            .map_err(|_| ApiError::internal(&"the run's task ended without a result"))?;
        (StatusCode::OK, Json(ExecutionView::from(e))).into_response()
    };
    if let Ok(h) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, h);
    }
    Ok(r)
}
