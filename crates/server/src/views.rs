//! What the API accepts (params) and returns (views): plain types with
//! OpenAPI schemas, built from the core's records. Handlers stay thin.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use warden_core::{
    ApiKey, App, AuditEvent, Execution, ExecutionError, ExecutionResult, ExecutionSource, ExecutionStatus,
    Installation, Plugin, ResultMetrics, ResultStatus, RunLanguage, RunMode, SessionLanguage, Version,
};

/// A plugin.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PluginView {
    /// Reverse-DNS code, e.g. `vendor.greeting.say_hello`.
    pub code: String,
    /// Developer who owns it.
    pub owner: String,
    /// Name (from the latest upload).
    pub name: String,
    /// Description (from the latest upload).
    pub description: String,
    /// First upload, Unix ms.
    pub created_at: i64,
    /// Latest change, Unix ms.
    pub updated_at: i64,
}

impl From<Plugin> for PluginView {
    fn from(p: Plugin) -> Self {
        PluginView {
            code: p.code,
            owner: p.owner,
            name: p.name,
            description: p.description,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// One file of a package's canonical file list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileView {
    /// Path in the package.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Marked executable.
    pub executable: bool,
}

/// Finding counts of a report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SummaryView {
    /// Critical findings.
    pub critical: u64,
    /// Warnings.
    pub warning: u64,
    /// Informational findings.
    pub info: u64,
}

/// A plugin version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    /// Unique id.
    pub id: String,
    /// Plugin code.
    pub plugin: String,
    /// Semantic version.
    pub version: String,
    /// `draft`, `pending`, `active`, `rejected`, `inactive` or `failed`.
    pub status: String,
    /// Why it was rejected or failed.
    pub status_reason: Option<String>,
    /// SHA-256 of the package, recorded at upload.
    pub package_sha256: String,
    /// Package size in bytes.
    pub package_size: i64,
    /// Runtime from the manifest.
    pub runtime: String,
    /// Canonical file list.
    pub files: Vec<FileView>,
    /// Report summary, once submitted.
    pub report_summary: Option<SummaryView>,
    /// Who uploaded the current package.
    pub uploaded_by: String,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
    /// Increases with every change.
    pub revision: i64,
    /// How far the platform trusts its code: `builtin` (compiled into
    /// Warden), `trusted` (signed by a key registered to the owner and
    /// approved as trusted) or `untrusted` (the jail only).
    pub trust_level: TrustLevelView,
    /// The registered key whose signature over the package hash the
    /// version carries, if any.
    pub signed_by: Option<String>,
    /// For an API plugin (`type: api`): the servers and the tools derived
    /// from its OpenAPI document; `null` for other plugins.
    pub api: Option<ApiView>,
}

/// An API plugin version's servers and tools, derived from its OpenAPI
/// document at upload.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiView {
    /// The document's file name in the package.
    pub document: String,
    /// Its OpenAPI version.
    pub openapi: String,
    /// The base URLs calls go to (the document's `servers`).
    pub servers: Vec<String>,
    /// Their `host[:port]`: what the version may reach.
    pub hosts: Vec<String>,
    /// One tool per operation.
    pub tools: Vec<ToolView>,
}

/// One operation of an API plugin, callable as a tool.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ToolView {
    /// The `operationId`.
    pub name: String,
    /// HTTP method.
    pub method: String,
    /// Path template under the server URL.
    pub path: String,
    /// The operation's summary.
    pub summary: Option<String>,
    /// Where each input property goes (`path`, `query`, `header`); the
    /// input's `body` is the JSON request body.
    pub parameters: Vec<ToolParameterView>,
    /// JSON Schema of the tool's input.
    #[schema(value_type = Object)]
    pub input_schema: Value,
    /// JSON Schema of its success response.
    #[schema(value_type = Object)]
    pub output_schema: Value,
    /// Ways to authenticate, any one of which will do; each a list of
    /// schemes used together. Empty: none.
    pub security: Vec<Vec<SecurityView>>,
}

/// Where one input property of a tool goes in the request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ToolParameterView {
    /// The parameter's name.
    pub name: String,
    /// `path`, `query` or `header`.
    #[serde(rename = "in")]
    pub location: String,
}

/// A security scheme a tool uses.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecurityView {
    /// Its name in the document's `components.securitySchemes`.
    pub scheme: String,
    /// `api_key_header`, `api_key_query`, `http_bearer`, `http_basic` or
    /// `oauth2_client_credentials`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The header or query parameter of an API key.
    pub name: Option<String>,
    /// The token URL of OAuth2 client credentials.
    pub token_url: Option<String>,
    /// OAuth2 scopes asked for.
    pub scopes: Vec<String>,
}

impl From<warden_package::openapi::ApiSpec> for ApiView {
    fn from(a: warden_package::openapi::ApiSpec) -> Self {
        use warden_package::openapi::SecurityKind as K;
        let security = |s: warden_package::openapi::SecurityUse| {
            let (kind, name, token_url) = match s.kind {
                K::ApiKeyHeader { name } => ("api_key_header", Some(name), None),
                K::ApiKeyQuery { name } => ("api_key_query", Some(name), None),
                K::HttpBearer => ("http_bearer", None, None),
                K::HttpBasic => ("http_basic", None, None),
                K::Oauth2ClientCredentials { token_url } => {
                    ("oauth2_client_credentials", None, Some(token_url))
                }
            };
            SecurityView {
                scheme: s.scheme,
                kind: kind.into(),
                name,
                token_url,
                scopes: s.scopes,
            }
        };
        ApiView {
            document: a.document,
            openapi: a.openapi,
            servers: a.servers,
            hosts: a.hosts,
            tools: a
                .tools
                .into_iter()
                .map(|t| ToolView {
                    name: t.name,
                    method: t.method,
                    path: t.path,
                    summary: t.summary,
                    parameters: t
                        .parameters
                        .into_iter()
                        .map(|p| ToolParameterView {
                            name: p.name,
                            location: p.location,
                        })
                        .collect(),
                    input_schema: t.input_schema,
                    output_schema: t.output_schema,
                    security: t
                        .security
                        .into_iter()
                        .map(|all| all.into_iter().map(security).collect())
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A version's trust level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrustLevelView {
    /// Compiled into Warden.
    Builtin,
    /// Signed by a key registered to the owner, approved as trusted.
    Trusted,
    /// Everything else: the jail only.
    Untrusted,
}

impl From<warden_core::TrustLevel> for TrustLevelView {
    fn from(t: warden_core::TrustLevel) -> Self {
        match t {
            warden_core::TrustLevel::Builtin => TrustLevelView::Builtin,
            warden_core::TrustLevel::Trusted => TrustLevelView::Trusted,
            warden_core::TrustLevel::Untrusted => TrustLevelView::Untrusted,
        }
    }
}

impl From<Version> for VersionView {
    fn from(v: Version) -> Self {
        // A view cannot fail: a record whose tools do not parse shows none
        // here, and a call of it answers the corruption (see exec.rs).
        let api = warden_core::registry::api_of(&v)
            .ok()
            .flatten()
            .map(ApiView::from);
        VersionView {
            api,
            runtime: v
                .manifest
                .get("runtime")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            files: serde_json::from_value(v.files).unwrap_or_default(),
            report_summary: v
                .report
                .as_ref()
                .and_then(|r| r.get("summary"))
                .and_then(|s| serde_json::from_value(s.clone()).ok()),
            id: v.id,
            plugin: v.plugin,
            version: v.version,
            status: v.status.to_string(),
            status_reason: v.status_reason,
            package_sha256: v.package_sha256,
            package_size: v.package_size,
            uploaded_by: v.uploaded_by,
            created_at: v.created_at,
            updated_at: v.updated_at,
            revision: v.revision,
            trust_level: v.trust_level.into(),
            signed_by: v.signed_by,
        }
    }
}

/// A page of a list: plugins by code; executions and audit events newest
/// first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The API's page of a store's page, each item made a view.
    pub fn of<U: Into<T>>(page: warden_core::store::Page<U>) -> Page<T> {
        Page {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

/// Page sizes: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page.
pub const MAX_LIMIT: u32 = 500;

/// Filters for listing plugins.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PluginQuery {
    /// Substring of the code, name or description (case-insensitive).
    pub search: Option<String>,
    /// Only this developer's plugins (admins).
    pub owner: Option<String>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Why a version is rejected.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// Shown to the developer; required (not only white space).
    #[schema(pattern = r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")]
    pub reason: String,
}

/// Bytes of a file (a package, an artifact), as the OpenAPI document
/// names them: a binary string.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}

/// A package as a request body: a binary string of at least one byte (an
/// empty body is a 400).
pub struct PackageBytes;

impl utoipa::PartialSchema for PackageBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .min_length(Some(1))
            .into()
    }
}

impl ToSchema for PackageBytes {}

/// An upload as a form: one field, `package`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The package (zip).
    #[schema(value_type = String, format = Binary, min_length = 1)]
    pub package: Vec<u8>,
}

/// One event of an execution's stream (`text/event-stream`). Keep-alive
/// comments come between events while nothing happens.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StreamEvent {
    /// `status` (`{"status": …}`), `stdout` or `stderr` (a chunk, as a
    /// JSON string), then `result` (the execution), after which the stream
    /// ends.
    #[schema(inline)]
    pub event: StreamEventKind,
    /// `1`, `2`, … in order, and `end` for `result`: send the last one seen
    /// as `Last-Event-ID` to resume.
    #[schema(pattern = "^([1-9][0-9]*|end)$")]
    pub id: String,
    /// JSON text.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// The kinds of stream events.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum StreamEventKind {
    /// A state change.
    Status,
    /// Output.
    Stdout,
    /// Output on stderr.
    Stderr,
    /// The execution, final.
    Result,
}

/// An app.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppView {
    /// Identifier.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Created, Unix ms.
    pub created_at: i64,
}

impl From<App> for AppView {
    fn from(a: App) -> Self {
        AppView {
            id: a.id,
            name: a.name,
            created_at: a.created_at,
        }
    }
}

/// A new app.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    /// 2 to 63 lowercase letters, digits or `-`, starting with a letter.
    #[schema(pattern = "^[a-z][a-z0-9-]{1,62}$")]
    pub id: String,
    /// Display name (default: the id).
    #[serde(default)]
    pub name: String,
}

/// A plugin installed in an app.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstallationView {
    /// Unique id.
    pub id: String,
    /// The app.
    pub app: String,
    /// The plugin.
    pub plugin: String,
    /// The pinned version; absent: follows the latest active version.
    pub pinned_version: Option<String>,
    /// Installed, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

impl From<Installation> for InstallationView {
    fn from(i: Installation) -> Self {
        InstallationView {
            id: i.id,
            app: i.app,
            plugin: i.plugin,
            pinned_version: i.pinned_version,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

/// Install a plugin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInstallation {
    /// Plugin code.
    pub plugin: String,
    /// Pin this active version; absent: follow the latest active version.
    pub version: Option<String>,
}

/// Change an installation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateInstallation {
    /// Pin this active version; `null`: follow the latest active version.
    pub version: Option<String>,
}

/// A new API key. Its schema (below) states the rules [`crate::auth::create_key`]
/// applies: a name of 1 to 64 characters once trimmed of white space, with
/// no control characters; `app` for app keys only, and required for them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Principal name: the developer's name for developer keys.
    pub name: String,
    /// The key's role.
    pub role: KeyRole,
    /// The app, for app keys.
    pub app: Option<String>,
}

/// A key's name as a regular expression: white space (Unicode
/// `White_Space`, which `str::trim` removes) around 1 to 64 characters
/// that are not control characters and neither start nor end with white
/// space. The server checks the same rule by hand (`auth::valid_name`).
pub const KEY_NAME_PATTERN: &str = concat!(
    "^[\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*",
    "[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
    "([^\\u0000-\\u001f\\u007f-\\u009f]{0,62}",
    "[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000])?",
    "[\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$",
);

/// An app id as a regular expression (the registry's rule).
pub const APP_ID_PATTERN: &str = "^[a-z][a-z0-9-]{1,62}$";

impl utoipa::PartialSchema for NewKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let name = serde_json::json!({
            "type": "string",
            "description": "Principal name: the developer's name for developer keys (1 to 64 characters once trimmed, no control characters).",
            "pattern": KEY_NAME_PATTERN,
        });
        let doc = serde_json::json!({
            "description": "A new API key: `app` names the app of an app key, and only of an app key.",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["name", "role"],
                    "properties": {
                        "name": name,
                        "role": {"type": "string", "enum": ["admin", "developer"], "description": "The key's role."},
                        "app": {"type": "null", "description": "Only app keys belong to an app."},
                    },
                    "additionalProperties": false,
                },
                {
                    "type": "object",
                    "required": ["name", "role", "app"],
                    "properties": {
                        "name": name,
                        "role": {"type": "string", "enum": ["app"], "description": "The key's role."},
                        "app": {"type": "string", "description": "The app whose plugins the key calls.", "pattern": APP_ID_PATTERN},
                    },
                    "additionalProperties": false,
                },
            ],
        });
        // A document built from literals above: it always parses.
        serde_json::from_value(doc).unwrap_or_default()
    }
}

impl ToSchema for NewKey {}

/// Roles of API keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    /// Everything.
    Admin,
    /// Their own plugins.
    Developer,
    /// Call the plugins of one app.
    App,
}

impl From<KeyRole> for warden_core::Role {
    fn from(r: KeyRole) -> Self {
        match r {
            KeyRole::Admin => warden_core::Role::Admin,
            KeyRole::Developer => warden_core::Role::Developer,
            KeyRole::App => warden_core::Role::App,
        }
    }
}

/// An API key (never its secret, except once in [`CreatedKey`]).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// Key id.
    pub id: String,
    /// Principal name.
    pub name: String,
    /// Role.
    pub role: String,
    /// For app keys: the app.
    pub app: Option<String>,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Revoked, Unix ms.
    pub revoked_at: Option<i64>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        KeyView {
            id: k.id,
            name: k.name,
            role: k.role.as_str().into(),
            app: k.app,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A key just created: the secret is shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The key's record.
    pub key: KeyView,
    /// The secret to send as `Authorization: Bearer …`.
    pub secret: String,
}

/// The caller.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MeView {
    /// Principal name.
    pub name: String,
    /// Role.
    pub role: String,
    /// For app keys: the app.
    pub app: Option<String>,
    /// The key used.
    pub key_id: String,
}

/// An audit event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    /// Unique, time-ordered id.
    pub id: String,
    /// When, Unix ms.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What (`upload`, `submit`, `approve`, `reject`, `install`, …).
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
    /// More, as the action recorded it (`null` when it recorded nothing).
    #[schema(value_type = Option<Object>)]
    pub detail: Value,
}

impl From<AuditEvent> for AuditView {
    fn from(a: AuditEvent) -> Self {
        AuditView {
            id: a.id,
            at: a.at,
            actor: a.actor,
            action: a.action,
            plugin: a.plugin,
            version: a.version,
            from_status: a.from_status,
            to_status: a.to_status,
            reason: a.reason,
            detail: a.detail,
        }
    }
}

/// Filters for listing audit events.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this plugin's (required for developers: one of theirs).
    pub plugin: Option<String>,
    /// Only this version's.
    pub version: Option<String>,
    /// Only this actor's.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// At or after, Unix ms.
    pub since: Option<i64>,
    /// Before, Unix ms.
    pub until: Option<i64>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// The handler's error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorView {
    /// Exception type, or a Warden kind (`HandlerNotFound`, `SyntaxError`,
    /// `OutputSchemaViolation`, `memory_limit`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong.
    pub message: String,
    /// Traceback, trimmed of Warden's frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    /// File, relative to the package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Output schema violations, each with its JSON pointer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<crate::error::FieldError>,
}

/// Resource figures of a call.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct MetricsView {
    /// Wall-clock time.
    pub duration_ms: f64,
    /// CPU time, user + system.
    pub cpu_time_ms: f64,
    /// Peak memory, MiB.
    pub peak_memory_mb: f64,
    /// Bytes read from storage.
    pub io_read_bytes: u64,
    /// Bytes written to storage.
    pub io_write_bytes: u64,
}

/// A file the handler left under `out/`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ArtifactView {
    /// Path relative to `out/`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Where to download it.
    #[serde(default)]
    pub url: String,
}

/// An execution: a call of a plugin by an app, or code run in one of the
/// app's sessions, with its result once final.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecutionView {
    /// Execution id.
    pub id: String,
    /// Calling app.
    pub app: String,
    /// What ran: `plugin` or `session`.
    #[schema(inline)]
    pub kind: SourceKind,
    /// Plugin code (a plugin's execution; `null` for a session's).
    pub plugin: Option<String>,
    /// Version that ran (a plugin's execution; `null` for a session's).
    pub version: Option<String>,
    /// The session it ran in (a session's execution; `null` for a plugin's).
    pub session: Option<String>,
    /// `python`, `javascript` or `shell` (a session's execution); also
    /// `c`, `cpp` or `go` (a run).
    #[schema(inline)]
    pub language: Option<ExecLanguage>,
    /// The template a run used (its packages and network), if any.
    #[serde(default)]
    pub template: Option<String>,
    /// `script`, `handler` or `repl` (a session's execution).
    #[schema(inline)]
    pub run_mode: Option<RunModeName>,
    /// `queued`, `running`, `success`, `failed`, `timeout`, `error`,
    /// `interrupted` or `cancelled`.
    pub status: String,
    /// `sync` or `async`.
    pub mode: String,
    /// Finer reason: `handler_error`, `output_schema_violation`,
    /// `memory_limit`, `cpu_limit`, `output_limit`, `violation`,
    /// `interrupted`, `internal`, ….
    pub error_kind: Option<String>,
    /// The jail's detailed status (`ok`, `memory_limit`, …).
    pub jail_status: Option<String>,
    /// The handler's return value (`success`): any JSON.
    #[schema(value_type = Value)]
    pub return_value: Option<Value>,
    /// What the handler printed (capped).
    pub stdout: String,
    /// What the handler printed on stderr (capped).
    pub stderr: String,
    /// stdout passed its cap.
    pub stdout_truncated: bool,
    /// stderr passed its cap.
    pub stderr_truncated: bool,
    /// Exit code of the handler's process.
    pub exit_code: Option<i32>,
    /// Signal that killed it.
    pub signal: Option<i32>,
    /// The error (`failed`, `timeout`, `error`, `interrupted`).
    pub error: Option<ErrorView>,
    /// Resource figures.
    pub metrics: Option<MetricsView>,
    /// Files left under `out/`.
    pub artifacts: Vec<ArtifactView>,
    /// Served by a warm box.
    pub warm: bool,
    /// A stateful cell (`repl`) found its session's interpreter dead (a
    /// crash or a timeout of an earlier cell) and ran in a new one: the
    /// interpreter's state was lost (the session's files were not).
    #[serde(default)]
    pub interpreter_restarted: bool,
    /// The session's interpreter ended with this cell (it crashed or timed
    /// out); the next cell starts a new one.
    #[serde(default)]
    pub interpreter_died: bool,
    /// Accepted, Unix ms.
    pub created_at: i64,
    /// Started, Unix ms.
    pub started_at: Option<i64>,
    /// Finished, Unix ms.
    pub finished_at: Option<i64>,
    /// Wall-clock time of the call, ms.
    pub duration_ms: Option<f64>,
    /// A run's compile step (C, C++, Go): when it did not succeed, the
    /// program did not run (`error_kind` `compile_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compile: Option<CompileView>,
    /// Destinations the call's box asked Warden's egress proxy for and was
    /// refused (hosts its version did not declare, private addresses);
    /// empty when it tried none.
    #[serde(default)]
    pub egress_refused: Vec<RefusedDestinationView>,
}

/// One destination the egress proxy refused a call's box.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefusedDestinationView {
    /// When the box asked, Unix ms.
    pub at: i64,
    /// The request's method (`CONNECT` for HTTPS, `GET`, …), when one was
    /// read.
    pub method: Option<String>,
    /// The host asked for, normalized, when a valid one was read.
    pub host: Option<String>,
    /// The port asked for.
    pub port: Option<u16>,
    /// The proxy's reason: `host_not_allowed`, `port_not_allowed`,
    /// `ip_literal`, `loopback`, `private`, `link_local`, … (see
    /// docs/egress.md).
    pub reason: String,
    /// What happened, for a person.
    pub message: String,
}

impl From<warden_core::RefusedDestination> for RefusedDestinationView {
    fn from(r: warden_core::RefusedDestination) -> Self {
        RefusedDestinationView {
            at: r.at,
            method: r.method,
            host: r.host,
            port: r.port,
            reason: r.reason,
            message: r.message,
        }
    }
}

impl From<ExecutionError> for ErrorView {
    fn from(e: ExecutionError) -> Self {
        ErrorView {
            kind: e.kind,
            message: e.message,
            traceback: e.traceback,
            file: e.file,
            line: e.line,
            violations: e
                .violations
                .into_iter()
                .map(|v| crate::error::FieldError {
                    location: v.location,
                    message: v.message,
                })
                .collect(),
        }
    }
}

impl From<ResultMetrics> for MetricsView {
    fn from(m: ResultMetrics) -> Self {
        MetricsView {
            duration_ms: m.duration_ms,
            cpu_time_ms: m.cpu_time_ms,
            peak_memory_mb: m.peak_memory_mb,
            io_read_bytes: m.io_read_bytes,
            io_write_bytes: m.io_write_bytes,
        }
    }
}

/// What an execution runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A plugin installed in the app.
    Plugin,
    /// Code in one of the app's sessions.
    Session,
    /// A one-shot run (`POST /v1/run`, Dify's and Piston's APIs).
    Run,
}

/// The language of a session's execution or of a one-shot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecLanguage {
    /// Python 3.
    Python,
    /// JavaScript (Node.js).
    Javascript,
    /// bash.
    Shell,
    /// C (runs only).
    C,
    /// C++ (runs only).
    Cpp,
    /// Go (runs only).
    Go,
}

impl From<SessionLanguage> for ExecLanguage {
    fn from(l: SessionLanguage) -> ExecLanguage {
        match l {
            SessionLanguage::Python => ExecLanguage::Python,
            SessionLanguage::Javascript => ExecLanguage::Javascript,
            SessionLanguage::Shell => ExecLanguage::Shell,
        }
    }
}

impl From<RunLanguage> for ExecLanguage {
    fn from(l: RunLanguage) -> ExecLanguage {
        match l {
            RunLanguage::Python => ExecLanguage::Python,
            RunLanguage::Javascript => ExecLanguage::Javascript,
            RunLanguage::Shell => ExecLanguage::Shell,
            RunLanguage::C => ExecLanguage::C,
            RunLanguage::Cpp => ExecLanguage::Cpp,
            RunLanguage::Go => ExecLanguage::Go,
        }
    }
}

impl From<ExecLanguage> for RunLanguage {
    fn from(l: ExecLanguage) -> RunLanguage {
        match l {
            ExecLanguage::Python => RunLanguage::Python,
            ExecLanguage::Javascript => RunLanguage::Javascript,
            ExecLanguage::Shell => RunLanguage::Shell,
            ExecLanguage::C => RunLanguage::C,
            ExecLanguage::Cpp => RunLanguage::Cpp,
            ExecLanguage::Go => RunLanguage::Go,
        }
    }
}

/// A one-shot run's compile step: its own limits, output and end.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompileView {
    /// `success`, `failed` (the compiler exited non-zero), `timeout` or
    /// `error` (a limit stopped it).
    pub status: String,
    /// The jail's detailed status (`ok`, `nonzero_exit`, `memory_limit`, …).
    pub jail_status: Option<String>,
    /// What the compiler printed (capped).
    pub stdout: String,
    /// The compiler's diagnostics (capped).
    pub stderr: String,
    /// Exit code of the compiler.
    pub exit_code: Option<i32>,
    /// Signal that killed it.
    pub signal: Option<i32>,
    /// Why it did not succeed.
    pub error: Option<ErrorView>,
    /// Resource figures.
    pub metrics: Option<MetricsView>,
}

impl From<ExecutionResult> for CompileView {
    fn from(r: ExecutionResult) -> Self {
        CompileView {
            status: match r.status {
                ResultStatus::Success => "success",
                ResultStatus::Failed => "failed",
                ResultStatus::Timeout => "timeout",
                ResultStatus::Error => "error",
                ResultStatus::Cancelled => "cancelled",
            }
            .into(),
            jail_status: r.jail_status,
            stdout: r.stdout,
            stderr: r.stderr,
            exit_code: r.exit_code,
            signal: r.signal,
            error: r.error.map(Into::into),
            metrics: r.metrics.map(Into::into),
        }
    }
}

/// A session's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LanguageName {
    /// Python 3.
    Python,
    /// JavaScript (Node.js).
    Javascript,
    /// bash.
    Shell,
}

impl From<LanguageName> for SessionLanguage {
    fn from(l: LanguageName) -> SessionLanguage {
        match l {
            LanguageName::Python => SessionLanguage::Python,
            LanguageName::Javascript => SessionLanguage::Javascript,
            LanguageName::Shell => SessionLanguage::Shell,
        }
    }
}

impl From<SessionLanguage> for LanguageName {
    fn from(l: SessionLanguage) -> LanguageName {
        match l {
            SessionLanguage::Python => LanguageName::Python,
            SessionLanguage::Javascript => LanguageName::Javascript,
            SessionLanguage::Shell => LanguageName::Shell,
        }
    }
}

/// How code runs in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunModeName {
    /// A program: its output and exit code are the result.
    Script,
    /// `handler(event)`: the return value is the result, as for plugins.
    Handler,
    /// A cell of the language's persistent interpreter: state persists;
    /// the last expression's value is the result.
    Repl,
}

impl From<RunModeName> for RunMode {
    fn from(m: RunModeName) -> RunMode {
        match m {
            RunModeName::Script => RunMode::Script,
            RunModeName::Handler => RunMode::Handler,
            RunModeName::Repl => RunMode::Repl,
        }
    }
}

impl From<RunMode> for RunModeName {
    fn from(m: RunMode) -> RunModeName {
        match m {
            RunMode::Script => RunModeName::Script,
            RunMode::Handler => RunModeName::Handler,
            RunMode::Repl => RunModeName::Repl,
        }
    }
}

impl From<Execution> for ExecutionView {
    fn from(e: Execution) -> Self {
        let mut template = None;
        let (kind, plugin, version, session, language, run_mode) = match e.source {
            ExecutionSource::Plugin { plugin, version } => {
                (SourceKind::Plugin, Some(plugin), Some(version), None, None, None)
            }
            ExecutionSource::Run {
                language,
                template: t,
            } => {
                template = t;
                (SourceKind::Run, None, None, None, Some(language.into()), None)
            }
            ExecutionSource::Session {
                session,
                language,
                mode,
            } => (
                SourceKind::Session,
                None,
                None,
                Some(session),
                Some(language.into()),
                Some(mode.into()),
            ),
        };
        let mut view = ExecutionView {
            status: e.status.as_str().into(),
            mode: e.mode.as_str().into(),
            error_kind: e.error_kind.map(|k| k.as_str().into()),
            jail_status: None,
            return_value: None,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            exit_code: None,
            signal: None,
            error: None,
            metrics: None,
            artifacts: Vec::new(),
            warm: false,
            interpreter_restarted: false,
            interpreter_died: false,
            created_at: e.created_at,
            started_at: e.started_at,
            finished_at: e.finished_at,
            duration_ms: e.duration_ms,
            id: e.id,
            app: e.app,
            kind,
            plugin,
            version,
            session,
            language,
            template,
            run_mode,
            compile: None,
            egress_refused: e.egress_refused.into_iter().map(Into::into).collect(),
        };
        if let Some(r) = e.result {
            view.compile = r.compile.map(|c| CompileView::from(*c));
            view.jail_status = r.jail_status;
            view.return_value = r.return_value;
            view.stdout = r.stdout;
            view.stderr = r.stderr;
            view.stdout_truncated = r.stdout_truncated;
            view.stderr_truncated = r.stderr_truncated;
            view.exit_code = r.exit_code;
            view.signal = r.signal;
            view.error = r.error.map(Into::into);
            view.metrics = r.metrics.map(Into::into);
            view.warm = r.warm;
            view.interpreter_restarted = r.interpreter_restarted;
            view.interpreter_died = r.interpreter_died;
            view.artifacts = r
                .artifacts
                .into_iter()
                .enumerate()
                .map(|(i, a)| ArtifactView {
                    url: format!("/v1/executions/{}/artifacts/{i}", view.id),
                    path: a.path,
                    size: a.size,
                    sha256: a.sha256,
                })
                .collect();
        }
        view
    }
}

/// Filters for listing executions.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecutionQuery {
    /// Only this app's (app keys: always their own).
    pub app: Option<String>,
    /// Only this plugin's (required for developers: one of theirs).
    pub plugin: Option<String>,
    /// Only this version's.
    pub version: Option<String>,
    /// Only in this state.
    #[param(value_type = Option<StatusName>, inline)]
    pub status: Option<ExecutionStatus>,
    /// Accepted at or after, Unix ms.
    pub since: Option<i64>,
    /// Accepted before, Unix ms.
    pub until: Option<i64>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// How to run an execution.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecuteQuery {
    /// `sync` (default: answer with the result) or `async` (answer 202 at
    /// once; poll or stream the execution).
    #[param(inline)]
    pub mode: Option<Mode>,
    /// Lower the version's timeout for this call, ms (at most the
    /// version's own limit, else 422).
    #[param(minimum = 1)]
    pub timeout_ms: Option<u64>,
    /// Lower the version's memory limit for this call, MiB (16 to the
    /// version's own limit, else 422).
    #[param(minimum = 16)]
    pub memory_mb: Option<u64>,
}

/// How an execution runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The answer is the finished execution.
    #[default]
    Sync,
    /// The answer (202) is the execution as recorded; it runs on.
    Async,
}

/// The states of an execution.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum StatusName {
    /// Accepted and recorded; not started.
    Queued,
    /// Running.
    Running,
    /// The handler returned a value.
    Success,
    /// The handler failed.
    Failed,
    /// Wall-clock limit.
    Timeout,
    /// The platform stopped it.
    Error,
    /// The server stopped while it ran.
    Interrupted,
    /// Cancelled on request while it ran.
    Cancelled,
}

impl From<ExecutionStatus> for StatusName {
    /// Exhaustive both ways: a new state in the core fails to compile here
    /// until the document names it.
    fn from(s: ExecutionStatus) -> StatusName {
        match s {
            ExecutionStatus::Queued => StatusName::Queued,
            ExecutionStatus::Running => StatusName::Running,
            ExecutionStatus::Success => StatusName::Success,
            ExecutionStatus::Failed => StatusName::Failed,
            ExecutionStatus::Timeout => StatusName::Timeout,
            ExecutionStatus::Error => StatusName::Error,
            ExecutionStatus::Interrupted => StatusName::Interrupted,
            ExecutionStatus::Cancelled => StatusName::Cancelled,
        }
    }
}

/// Liveness or readiness.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable`.
    pub status: String,
    /// Each check and its verdict.
    #[schema(value_type = Object)]
    pub checks: Value,
}
