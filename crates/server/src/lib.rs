//! Warden's HTTP API (`warden serve`): plugins and their review, apps and
//! installations, executions with schema checks, streaming and durable
//! records, templates and their dependency layers, API keys, audit,
//! OpenAPI, health and metrics.
//!
//! The HTTP layer parses requests into calls on the core (the registry), the
//! store and the [`exec::Executor`], and renders their results; it makes no
//! decision of its own beyond who may call what ([`auth`]).

pub mod api;
mod api_call;
pub mod auth;
pub mod builds;
pub mod cluster;
pub mod compat;
pub mod config;
pub mod console;
pub mod credentials;
pub mod error;
pub mod events;
pub mod exec;
pub mod metrics;
pub mod runs;
pub mod runtime_state;
pub mod sessions;
pub mod signing;
pub mod sse;
pub mod templates;
mod tiers;
pub use tiers::wasm_call_once;
pub mod views;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;
use warden_core::{GoBuilder, Registry, Role, Store, TemplateError, Templates};
use warden_jail::{Jail, JailConfig};
use warden_package::{PlatformLimits, Policy, Problem};
use warden_runtime::{Runner, RunnerConfig, RuntimeError, WarmConfig};
use warden_store::{ObjectBlobs, SqlStore};

pub use config::Config;
use error::ApiError;

/// Everything a handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Records.
    pub store: Arc<SqlStore>,
    /// Package blobs and artifacts.
    pub blobs: Arc<ObjectBlobs>,
    /// Uploads, reviews, installations.
    pub registry: Arc<Registry<SqlStore, ObjectBlobs>>,
    /// Templates (validation, writes, built-ins).
    pub templates: Arc<Templates<SqlStore>>,
    /// Template builds and dependency layers.
    pub builds: Arc<builds::Builds>,
    /// Executions.
    pub exec: Arc<exec::Executor>,
    /// Sandbox sessions on this node.
    pub sessions: Arc<sessions::SessionManager>,
    /// This node among the nodes sharing the database.
    pub cluster: Arc<cluster::Cluster>,
    /// One-shot runs (`POST /v1/run` and the compatibility APIs).
    pub runs: Arc<runs::Runs>,
    /// State of the compatibility APIs.
    pub compat: Arc<compat::Compat>,
    /// API key checks.
    pub keys: Arc<auth::KeyCache>,
    /// The runtime (for pool figures and readiness).
    pub runner: Runner,
    /// Settings.
    pub config: Arc<Config>,
    /// The keys platform-held credentials are sealed with.
    pub credentials: Arc<warden_core::credential::Keyring>,
    /// Metrics.
    pub metrics: PrometheusHandle,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The jail is unusable on this machine.
    #[error("cannot sandbox plugins on this machine (run `warden doctor`)")]
    Jail(#[source] warden_jail::JailError),
    /// The runtime could not start.
    #[error("cannot start the runtime")]
    Runtime(#[source] RuntimeError),
    /// The store could not open.
    #[error("cannot open the store ({url})")]
    Store {
        /// Where.
        url: String,
        /// Why.
        #[source]
        source: warden_core::StoreError,
    },
    /// The built-in templates could not be created.
    #[error("cannot create the built-in templates")]
    Builtins(#[source] TemplateError),
    /// Object storage is unusable: the setting to fix, and why.
    #[error("cannot use object storage")]
    Objects(#[source] warden_store::S3Error),
    /// A built-in plugin could not be registered.
    #[error("cannot register the built-in plugins")]
    BuiltinPlugins(#[source] warden_core::RegistryError),
    /// The layers folder is unusable.
    #[error("cannot use the layers folder")]
    Layers(#[source] std::io::Error),
    /// A credentials key is unusable.
    #[error("{0}")]
    Credentials(String),
    /// The listener could not bind.
    #[error("cannot listen on {addr}")]
    Listen {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Builds Go plugins at submit time with the runtime's jailed toolchain.
struct GoInJail(Runner);

impl GoBuilder for GoInJail {
    fn build(&self, src: &Path, out: &Path) -> Result<(), Vec<Problem>> {
        match self.0.build_go(src, out) {
            Ok(_) => Ok(()),
            Err(RuntimeError::BuildFailed { errors, log }) if !errors.is_empty() => Err(errors
                .into_iter()
                .map(|e| Problem {
                    location: if e.file.is_empty() {
                        "archive:".to_owned()
                    } else {
                        format!("archive:{}:{}", e.file, e.line)
                    },
                    message: format!("go build: {}", e.message),
                })
                .chain(std::iter::once(Problem {
                    location: "build-log".into(),
                    message: log.lines().take(40).collect::<Vec<_>>().join("\n"),
                }))
                .collect()),
            Err(e) => Err(vec![Problem {
                location: "/runtime".into(),
                message: format!("the Go build failed: {}", error::DisplayChain(&e)),
            }]),
        }
    }
}

/// What `start` prints for the operator.
pub struct Started {
    /// The state.
    pub state: AppState,
    /// An admin key created on first start (no live admin key existed).
    pub first_admin_key: Option<String>,
    /// Executions of this node found unfinished and marked interrupted.
    pub interrupted: u64,
    /// Sessions of this node found live (their boxes died with the previous
    /// process) and marked lost.
    pub lost_sessions: u64,
    /// Sessions of this node resumed from their latest snapshot.
    pub resumed_sessions: u64,
}

/// Open everything `config` names: jail, runtime, store, blobs; recover
/// the unfinished executions of `node` (this server's name, see
/// [`Config::node`]); create the first admin key.
pub async fn start(config: Config, node: String) -> Result<Started, StartError> {
    let jail = Jail::new(JailConfig {
        state_dir: config.jail.state_dir.clone(),
        max_boxes: config.jail.max_boxes,
        ..JailConfig::default()
    })
    .map_err(StartError::Jail)?;
    let runner = Runner::new(
        jail,
        RunnerConfig {
            max_event_bytes: config.max_event_bytes,
            max_concurrent: config.max_concurrent,
            // The server admits at most this many; the runner never refuses.
            max_queue: config.max_queue + 1,
            queue_timeout: Duration::from_secs(24 * 3600),
            warm: WarmConfig {
                enabled: config.warm.enabled,
                max_per_code: config.warm.max_per_code,
                prewarm_per_code: config.warm.prewarm_per_code,
                max_total: config.warm.max_total,
                idle_ttl: Duration::from_secs(config.warm.idle_ttl_secs),
                max_wait: Duration::from_millis(config.warm.max_wait_ms),
                grace: Duration::from_millis(config.warm.grace_ms),
                ..WarmConfig::default()
            },
            max_builds: config.layers.max_builds,
            session_prestart: config.sessions.prestart,
            ..RunnerConfig::default()
        },
    )
    .map_err(StartError::Runtime)?;
    let url = config.database_url();
    let store = Arc::new(SqlStore::connect(&url).await.map_err(|e| StartError::Store {
        url: redact(&url),
        source: e,
    })?);
    let blobs = Arc::new(match config.objects.s3() {
        Some(o) => {
            let b = ObjectBlobs::s3(&o).map_err(StartError::Objects)?;
            b.probe().await.map_err(StartError::Objects)?;
            b
        }
        None => ObjectBlobs::local(&config.blob_dir()).map_err(|e| StartError::Store {
            url: config.blob_dir().display().to_string(),
            source: e,
        })?,
    });
    let interrupted = store
        .interrupt_unfinished(
            &node,
            "the server stopped before the execution finished (crash or restart)",
        )
        .await
        .map_err(|e| StartError::Store {
            url: redact(&url),
            source: e,
        })?;
    let templates = Arc::new(Templates::new(store.clone(), config.templates.policy()));
    let created = templates.ensure_builtins().await.map_err(StartError::Builtins)?;
    if !created.is_empty() {
        tracing::info!(templates = ?created, "built-in templates created or brought up to date");
    }
    let first_admin_key = if store
        .list_keys()
        .await
        .map_err(|e| StartError::Store {
            url: redact(&url),
            source: e,
        })?
        .iter()
        .any(|k| k.role == Role::Admin && k.revoked_at.is_none())
    {
        None
    } else {
        let (_, secret) = auth::create_key(&store, "system", "admin", Role::Admin, None)
            .await
            .map_err(|e| StartError::Store {
                url: redact(&url),
                source: warden_core::StoreError::Backend(e.to_string()),
            })?;
        Some(secret)
    };
    let platform = PlatformLimits {
        max_timeout_ms: config.policy.max_timeout_ms,
        max_memory_mb: config.policy.max_memory_mb,
        network_ip_literals: config.policy.network_ip_literals,
        api_local_servers: config.policy.api_local_servers,
        ..PlatformLimits::default()
    };
    let policy = Policy {
        platform: platform.clone(),
        deny: config.policy.deny.clone(),
        reject_critical: config.policy.reject_critical,
        ..Policy::default()
    };
    let mut registry = Registry::new(store.clone(), blobs.clone(), policy, config.code_dir());
    if Path::new("/usr/bin/go").exists() {
        registry = registry.with_go_builder(Arc::new(GoInJail(runner.clone())));
    }
    let registry = Arc::new(registry);
    let builds = Arc::new(
        builds::Builds::new(
            store.clone(),
            blobs.clone(),
            runner.clone(),
            node.clone(),
            config.layers.clone(),
            &config.data_dir,
        )
        .map_err(StartError::Layers)?,
    );
    builds.start_collector();
    // Checked with the configuration already; a key that does not parse
    // here still stops the start, naming the setting.
    let keyring = Arc::new(
        warden_core::credential::Keyring::new(
            config.credentials.key.as_deref(),
            &config.credentials.old_keys,
        )
        .map_err(StartError::Credentials)?,
    );
    let capacity = config.max_concurrent + config.max_queue;
    let exec_node = node.clone();
    let exec = Arc::new(exec::Executor::new(
        registry.clone(),
        store.clone(),
        blobs.clone(),
        runner.clone(),
        node,
        config.max_concurrent,
        capacity,
        config.retry_after_secs,
        platform,
        config.tiers.clone(),
        config.policy.network_allow_cidrs.clone(),
        keyring.clone(),
    ));
    let registered = exec
        .register_builtins()
        .await
        .map_err(StartError::BuiltinPlugins)?;
    tracing::info!(plugins = ?registered, "built-in plugins registered");
    // Queued executions start as soon as there is a slot: this node's
    // leftovers from before a crash, other nodes' and new ones alike.
    exec.start_dispatcher();
    let lease = cluster::Lease::new(config.cluster.dead_after_secs);
    let sessions = sessions::SessionManager::new(
        store.clone(),
        blobs.clone(),
        runner.clone(),
        exec.hub.clone(),
        templates.clone(),
        sessions::ThisNode {
            node: exec_node.clone(),
            scratch: config.data_dir.join("tmp").join("snapshots"),
            builds: builds.clone(),
            lease: lease.clone(),
            takeover_wait: std::time::Duration::from_secs(config.cluster.takeover_wait_secs),
        },
        config.sessions.clone(),
    );
    let cluster = cluster::Cluster::new(store.clone(), exec_node.clone(), config.cluster.clone(), lease);
    cluster.beat().await.map_err(|e| StartError::Store {
        url: redact(&url),
        source: e,
    })?;
    // No box survives its server: the sessions this node ran resume from
    // their latest snapshot, or are lost.
    let recovered = sessions.recover().await.map_err(|e| StartError::Store {
        url: redact(&url),
        source: match e {
            sessions::SessionError::Store(e) => e,
            e => warden_core::StoreError::Backend(e.to_string()),
        },
    })?;
    sessions.start_sweeper();
    cluster.start(sessions.clone());
    let runs = Arc::new(runs::Runs::new(
        store.clone(),
        blobs.clone(),
        runner.clone(),
        templates.clone(),
        builds.clone(),
        exec.clone(),
        config.run.policy(),
    ));
    match runs.ensure_dify_template(&config.compat.dify_template).await {
        Ok(true) => {
            tracing::info!(template = %config.compat.dify_template, "created the template of Dify's Python runs; build its packages with POST /v1/templates/{}/build", config.compat.dify_template)
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "could not create the template of Dify's Python runs"),
    }
    let state = AppState {
        store,
        blobs,
        registry,
        templates,
        builds,
        exec,
        sessions,
        cluster,
        runs,
        compat: Arc::default(),
        keys: Arc::new(auth::KeyCache::new(Duration::from_secs(config.key_cache_secs))),
        runner,
        config: Arc::new(config),
        credentials: keyring,
        metrics: metrics::handle(),
    };
    Ok(Started {
        state,
        first_admin_key,
        interrupted,
        lost_sessions: recovered.lost,
        resumed_sessions: recovered.resumed,
    })
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("wk_…")
                    .description(Some(
                        "An API key made by `warden admin create-key` or `POST /v1/keys`",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Warden",
        description = "Run untrusted plugin code safely and fast: upload and review plugins, install them in apps, execute them in Warden's jail.",
        license(name = "Apache-2.0"),
    ),
    components(schemas(error::Problem, error::FieldError)),
    modifiers(&SecurityAddon),
    tags(
        (name = "plugins", description = "Packages, versions and their review"),
        (name = "apps", description = "Apps (tenants) and their installations"),
        (name = "executions", description = "Calling plugins; execution records and events"),
        (name = "sessions", description = "Sandbox sessions: code (scripts, handlers, stateful cells) and files in a long-lived box"),
        (name = "audit", description = "The append-only audit trail"),
        (name = "templates", description = "Templates (what a box starts from) and their dependency layers"),
        (name = "keys", description = "API keys"),
        (name = "credentials", description = "Platform-held credentials: stored per app, sealed, never returned; the egress proxy puts them into plugins' requests"),
        (name = "signing", description = "Publishers' signing keys and signed packages (what makes a version trusted)"),
        (name = "operations", description = "Health, readiness, metrics, the nodes sharing the database"),
    )
)]
struct ApiDoc;

fn routes(config: &Config) -> OpenApiRouter<AppState> {
    use api::*;
    let package_limit = DefaultBodyLimit::max(config.max_package_bytes);
    let event_limit = DefaultBodyLimit::max(config.max_event_bytes);
    let template_limit = DefaultBodyLimit::max(templates::MAX_TEMPLATE_BODY);
    let run_limit = DefaultBodyLimit::max(run_body_limit(config));
    let s = &config.sessions;
    let exec_limit = DefaultBodyLimit::max((s.max_code_bytes + (1 << 20)) * 2 + (64 << 10));
    // A form's boundaries and headers beside the file.
    let upload_limit = DefaultBodyLimit::max(
        usize::try_from(s.max_upload_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(64 << 10),
    );
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(upload, list_plugins).layer(package_limit))
        .routes(routes!(get_plugin))
        .routes(routes!(list_versions))
        .routes(routes!(get_version, delete_version))
        .routes(routes!(get_manifest))
        .routes(routes!(get_report))
        .routes(routes!(version_audit))
        .routes(routes!(version_runtime))
        .routes(routes!(download_package))
        .routes(routes!(submit))
        .routes(routes!(signing::approve))
        .routes(routes!(signing::sign_version))
        .routes(routes!(signing::register_signing_key, signing::list_signing_keys))
        .routes(routes!(signing::revoke_signing_key))
        .routes(routes!(reject))
        .routes(routes!(activate))
        .routes(routes!(deactivate))
        .routes(routes!(create_app, list_apps))
        .routes(routes!(credentials::list_credentials))
        .routes(routes!(
            credentials::put_credential,
            credentials::get_credential,
            credentials::delete_credential
        ))
        .routes(routes!(credentials::list_installation_credentials))
        .routes(routes!(
            credentials::put_installation_credential,
            credentials::get_installation_credential,
            credentials::delete_installation_credential
        ))
        .routes(routes!(get_app))
        .routes(routes!(list_installations, install))
        .routes(routes!(upgrade, uninstall))
        .routes(routes!(execute).layer(event_limit))
        .routes(routes!(runs::run).layer(run_limit))
        .routes(routes!(list_executions))
        .routes(routes!(get_execution))
        .routes(routes!(get_artifact))
        .routes(routes!(execution_events))
        .routes(routes!(sessions::api::cancel_execution))
        .routes(routes!(
            sessions::api::create_session,
            sessions::api::list_sessions
        ))
        .routes(routes!(sessions::api::get_session, sessions::api::delete_session))
        .routes(routes!(sessions::api::terminate_session))
        .routes(routes!(sessions::api::snapshot_session))
        .routes(routes!(sessions::api::install_packages))
        .routes(routes!(sessions::api::list_snapshots))
        .routes(routes!(
            sessions::api::get_snapshot,
            sessions::api::delete_snapshot
        ))
        .routes(
            routes!(
                sessions::api::execute_in_session,
                sessions::api::list_session_executions
            )
            .layer(exec_limit),
        )
        .routes(routes!(sessions::api::list_files, sessions::api::upload_file).layer(upload_limit))
        .routes(routes!(sessions::api::make_directory))
        .routes(routes!(templates::create_template, templates::list_templates).layer(template_limit))
        .routes(
            routes!(
                templates::get_template,
                templates::replace_template,
                templates::delete_template
            )
            .layer(template_limit),
        )
        .routes(routes!(templates::get_layer))
        .routes(routes!(builds::build_template))
        .routes(routes!(builds::layer_events))
        .routes(routes!(list_audit))
        .routes(routes!(create_api_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(cluster::list_nodes))
        .routes(routes!(me))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics));
    // The file path is the rest of the URL (`{*path}` for the router,
    // `{path}` in the document).
    wildcard(
        router,
        "/v1/sessions/{id}/files/{*path}",
        routes!(
            sessions::api::download_file,
            sessions::api::put_file,
            sessions::api::delete_file
        ),
    )
}

/// The largest body of a run: its files as base64 (4/3), stdin and
/// arguments escaped in JSON, and room.
pub(crate) fn run_body_limit(config: &Config) -> usize {
    (config.run.max_files_bytes / 3 * 4 + config.run.max_stdin_bytes) * 2 + (1 << 20)
}

/// Route `methods` at `axum_path` (a wildcard route) while the document
/// keeps their OpenAPI path.
fn wildcard(
    mut router: OpenApiRouter<AppState>,
    axum_path: &str,
    (schemas, paths, methods): utoipa_axum::router::UtoipaMethodRouter<AppState>,
) -> OpenApiRouter<AppState> {
    let doc = router.get_openapi_mut();
    for (path, item) in paths.paths {
        match doc.paths.paths.get_mut(&path) {
            Some(it) => it.merge_operations(item),
            None => {
                doc.paths.paths.insert(path, item);
            }
        }
    }
    doc.components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(schemas);
    router.route(axum_path, methods)
}

/// The OpenAPI document, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes(&Config::default()).into_openapi()
}

/// The OpenAPI document as committed in `docs/openapi.json`.
pub fn openapi_json() -> String {
    pretty_json(&openapi())
}

fn pretty_json(doc: &utoipa::openapi::OpenApi) -> String {
    let mut s = fix_links(&doc.to_pretty_json().unwrap_or_default());
    s.push('\n');
    s
}

/// The document's text with the response links' fields named as OpenAPI
/// names them: utoipa 5.5 writes `operation_id` and `operation_ref` in
/// links where the specification says `operationId` and `operationRef`
/// (tools that follow links ignore the others). Done on the text, which
/// keeps the document's order: a key followed by a string value can only
/// be a link's (schema properties are objects; quotes inside strings are
/// escaped).
fn fix_links(json: &str) -> String {
    json.replace("\"operation_id\": \"", "\"operationId\": \"")
        .replace("\"operation_ref\": \"", "\"operationRef\": \"")
}

#[derive(Clone, Default)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        warden_core::model::new_id("req").parse().ok().map(RequestId::new)
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route {}: see /docs for the API", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let mut e = ApiError::bad_request(format!("{method} is not allowed on {}", uri.path())).problem();
    e.status = 405;
    e.kind = "/problems/method-not-allowed".into();
    e.title = "Method not allowed".into();
    error::problem_response(StatusCode::METHOD_NOT_ALLOWED, &e)
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    ApiError::internal(&format_args!("a handler panicked: {what}")).into_response()
}

/// The whole HTTP application over `state`.
pub fn app(state: AppState) -> Router {
    let (router, doc) = routes(&state.config).split_for_parts();
    // The same document `openapi()` gives: body limits do not show in it.
    let doc_json = axum::body::Bytes::from(pretty_json(&doc));
    let request_id = HeaderName::from_static("x-request-id");
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc_json = doc_json.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], doc_json) }
            }),
        )
        // The UI reads the document served above (links fixed, see fix_links).
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json")))
        .merge(console::router())
        .merge(compat::router().layer(DefaultBodyLimit::max(run_body_limit(&state.config))))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // A session another node runs: its requests go there.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cluster::forward_sessions,
        ))
        .layer(DefaultBodyLimit::max(1 << 20))
        .layer(axum::middleware::from_fn(metrics::track_http))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        })
        .on_response(error::LogOutcome)
        // LogOutcome logs server errors; the layer's own failure log would
        // be a second line for the same request.
        .on_failure(()))
        .layer(SetRequestIdLayer::new(request_id, MakeId))
        .with_state(state)
}

/// Serve `state` on `listener` until `shutdown` resolves; then stop taking
/// requests and give in-flight executions `shutdown_grace_secs` to finish.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    let exec = state.exec.clone();
    let sessions = state.sessions.clone();
    let store = state.store.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stop = stop_rx.clone();
    let drained = async move {
        let _ = stop.wait_for(|s| *s).await;
        tracing::info!(
            "shutting down: waiting up to {}s for in-flight executions",
            grace.as_secs()
        );
        let (n, ended) = tokio::join!(exec.drain(grace), sessions.shutdown(grace));
        if ended > 0 {
            tracing::info!(
                sessions = ended,
                "live sessions were terminated (the server stopped)"
            );
        }
        if n > 0 {
            tracing::warn!(
                interrupted = n,
                "executions still running at the deadline were recorded as interrupted"
            );
        }
    };
    // Requests finish (or the grace period ends); then the store closes.
    let (served, ()) = tokio::join!(
        async {
            let mut stop = stop_rx;
            tokio::select! {
                r = server => r,
                () = async {
                    let _ = stop.wait_for(|s| *s).await;
                    tokio::time::sleep(grace + Duration::from_secs(1)).await;
                } => Ok(()),
            }
        },
        drained
    );
    store.close().await;
    served
}
