//! `/v1/templates` and `/v1/layers`: templates as data (every role reads,
//! admins write) and the records of their dependency layers. The handlers
//! hand the body to the core's [`Templates`] service, which validates it
//! (every problem located) and writes it with its audit event; this module
//! holds the handlers, their views and the request schemas.
//!
//! The request schemas state each field's grammar as the core checks it
//! (`warden_core::template::grammar`), one branch per runtime so that a
//! package of another ecosystem is refused by the document too. What no
//! schema states (names listed twice, totals, the server's ceilings,
//! reserved variable names) is answered 422 with its JSON pointer.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use warden_core::store::TemplateFilter;
use warden_core::template::{caps, grammar};
use warden_core::{
    Ecosystem, Layer, LayerStatus, NetworkMode, Resources, SeedEncoding, Store, Template, TemplateRuntime,
};

use crate::AppState;
use crate::api::{ApiJson, ApiPath, ApiQuery, BodyProblems, Problems, limit};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::views::Page;

/// The largest template request body: a template's seed files (1 MiB
/// decoded, more in base64 or escaped JSON) and the rest.
pub const MAX_TEMPLATE_BODY: usize = 8 << 20;

/// The runtimes, as the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeName {
    /// Python 3 (pip packages).
    Python,
    /// Node.js (npm packages).
    Node,
    /// bash (no packages).
    Shell,
}

impl From<TemplateRuntime> for RuntimeName {
    /// Exhaustive: a new runtime in the core fails to compile here until
    /// the document names it.
    fn from(r: TemplateRuntime) -> RuntimeName {
        match r {
            TemplateRuntime::Python => RuntimeName::Python,
            TemplateRuntime::Node => RuntimeName::Node,
            TemplateRuntime::Shell => RuntimeName::Shell,
        }
    }
}

/// Package ecosystems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EcosystemName {
    /// pip.
    Pip,
    /// npm.
    Npm,
}

impl From<Ecosystem> for EcosystemName {
    fn from(e: Ecosystem) -> EcosystemName {
        match e {
            Ecosystem::Pip => EcosystemName::Pip,
            Ecosystem::Npm => EcosystemName::Npm,
        }
    }
}

/// Network modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkModeName {
    /// No network.
    None,
    /// The allow-list's hosts only, through the egress proxy.
    AllowList,
}

impl From<NetworkMode> for NetworkModeName {
    fn from(m: NetworkMode) -> NetworkModeName {
        match m {
            NetworkMode::None => NetworkModeName::None,
            NetworkMode::AllowList => NetworkModeName::AllowList,
        }
    }
}

/// Seed file encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingName {
    /// Text.
    Utf8,
    /// Standard base64.
    Base64,
}

impl From<SeedEncoding> for EncodingName {
    fn from(e: SeedEncoding) -> EncodingName {
        match e {
            SeedEncoding::Utf8 => EncodingName::Utf8,
            SeedEncoding::Base64 => EncodingName::Base64,
        }
    }
}

/// Layer states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LayerStatusName {
    /// Waiting for a builder.
    Queued,
    /// Being built.
    Building,
    /// Usable by boxes.
    Ready,
    /// The build failed.
    Failed,
}

impl From<LayerStatus> for LayerStatusName {
    fn from(s: LayerStatus) -> LayerStatusName {
        match s {
            LayerStatus::Queued => LayerStatusName::Queued,
            LayerStatus::Building => LayerStatusName::Building,
            LayerStatus::Ready => LayerStatusName::Ready,
            LayerStatus::Failed => LayerStatusName::Failed,
        }
    }
}

/// A package requirement.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PackageView {
    /// pip or npm.
    pub ecosystem: EcosystemName,
    /// The package's name.
    pub name: String,
    /// Its version specifier; `null`: any.
    pub version: Option<String>,
    /// Accepted hashes.
    pub hashes: Vec<String>,
}

impl From<warden_core::PackageReq> for PackageView {
    fn from(p: warden_core::PackageReq) -> Self {
        PackageView {
            ecosystem: p.ecosystem.into(),
            name: p.name,
            version: p.version,
            hashes: p.hashes,
        }
    }
}

/// A template's resources.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResourcesView {
    /// CPU cores.
    pub cpu_cores: f64,
    /// Memory, MiB.
    pub memory_mb: u64,
    /// Disk, MiB.
    pub disk_mb: u64,
    /// Processes and threads.
    pub pids: u32,
    /// Idle time before a box stops, seconds.
    pub idle_timeout_secs: u64,
    /// Longest life of a box, seconds.
    pub max_lifetime_secs: u64,
}

impl From<Resources> for ResourcesView {
    fn from(r: Resources) -> Self {
        ResourcesView {
            cpu_cores: r.cpu_cores,
            memory_mb: r.memory_mb,
            disk_mb: r.disk_mb,
            pids: r.pids,
            idle_timeout_secs: r.idle_timeout_secs,
            max_lifetime_secs: r.max_lifetime_secs,
        }
    }
}

/// A template's network policy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NetworkView {
    /// `none` or `allow_list`.
    pub mode: NetworkModeName,
    /// Allowed `host[:port]` entries.
    pub allow: Vec<String>,
}

/// A seed file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SeedFileView {
    /// Path in the workspace.
    pub path: String,
    /// Content, as `encoding` says.
    pub content: String,
    /// `utf8` or `base64`.
    pub encoding: EncodingName,
    /// Permission bits; `null`: 0o644.
    pub mode: Option<u32>,
}

/// A template.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateView {
    /// Identifier.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// `python`, `node` or `shell`.
    pub runtime: RuntimeName,
    /// Third-party packages.
    pub packages: Vec<PackageView>,
    /// Environment variables of its boxes.
    pub env: BTreeMap<String, String>,
    /// Default resources of its boxes.
    pub resources: ResourcesView,
    /// Who its boxes may reach.
    pub network: NetworkView,
    /// Files written into each box's workspace.
    pub files: Vec<SeedFileView>,
    /// Shipped with Warden: cannot be changed or deleted.
    pub builtin: bool,
    /// The id of the ready dependency layer its boxes get; `null` until one
    /// is built (and for templates without packages).
    pub layer: Option<String>,
    /// Increases with every change; send it back to replace the template.
    pub revision: i64,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

impl From<Template> for TemplateView {
    fn from(t: Template) -> Self {
        TemplateView {
            id: t.id,
            name: t.name,
            description: t.description,
            runtime: t.runtime.into(),
            packages: t.packages.into_iter().map(Into::into).collect(),
            env: t.env,
            resources: t.resources.into(),
            network: NetworkView {
                mode: t.network.mode.into(),
                allow: t.network.allow,
            },
            files: t
                .files
                .into_iter()
                .map(|f| SeedFileView {
                    path: f.path,
                    content: f.content,
                    encoding: f.encoding.into(),
                    mode: f.mode,
                })
                .collect(),
            builtin: t.builtin,
            layer: t.layer,
            revision: t.revision,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// Why a layer's build failed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LayerErrorView {
    /// The package at fault, when known.
    pub package: Option<String>,
    /// What went wrong.
    pub message: String,
}

/// One installed distribution.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LockedPackageView {
    /// Name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// SHA-256 of the distribution (pip).
    pub sha256: Option<String>,
    /// Integrity (npm).
    pub integrity: Option<String>,
}

/// A dependency layer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LayerView {
    /// Content address: SHA-256 of runtime, interpreter, packages, index.
    pub id: String,
    /// The runtime.
    pub runtime: RuntimeName,
    /// The interpreter's version.
    pub interpreter: String,
    /// The packages, normalized.
    pub packages: Vec<PackageView>,
    /// Where they come from: an index URL or `folder:<digest>`.
    pub index: String,
    /// `queued`, `building`, `ready` or `failed`.
    pub status: LayerStatusName,
    /// Why the build failed.
    pub error: Option<LayerErrorView>,
    /// The build's log (its end).
    pub log: String,
    /// What was installed.
    pub lock: Vec<LockedPackageView>,
    /// Bytes on disk.
    pub size_bytes: i64,
    /// The node that built it.
    pub node: Option<String>,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Ready or failed, Unix ms.
    pub built_at: Option<i64>,
    /// Last used by a box, Unix ms.
    pub last_used_at: Option<i64>,
}

impl From<Layer> for LayerView {
    fn from(l: Layer) -> Self {
        LayerView {
            id: l.id,
            runtime: l.runtime.into(),
            interpreter: l.interpreter,
            packages: l.packages.into_iter().map(Into::into).collect(),
            index: l.index,
            status: l.status.into(),
            error: l.error.map(|e| LayerErrorView {
                package: e.package,
                message: e.message,
            }),
            log: l.log,
            lock: l
                .lock
                .into_iter()
                .map(|p| LockedPackageView {
                    name: p.name,
                    version: p.version,
                    sha256: p.sha256,
                    integrity: p.integrity,
                })
                .collect(),
            size_bytes: l.size_bytes,
            node: l.node,
            created_at: l.created_at,
            built_at: l.built_at,
            last_used_at: l.last_used_at,
        }
    }
}

/// Filters for listing templates.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TemplateQuery {
    /// Only this runtime's.
    #[param(value_type = Option<RuntimeName>, inline)]
    pub runtime: Option<TemplateRuntime>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// A new template: the body of `POST /v1/templates`. Its schema is built
/// by [`template_schema`].
pub struct NewTemplate;

impl utoipa::PartialSchema for NewTemplate {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        // Built from literals and constants: it always parses.
        serde_json::from_value(template_schema(false)).unwrap_or_default()
    }
}

impl ToSchema for NewTemplate {}

/// A template's full replacement: the body of `PUT /v1/templates/{id}`.
pub struct TemplateReplacement;

impl utoipa::PartialSchema for TemplateReplacement {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        serde_json::from_value(template_schema(true)).unwrap_or_default()
    }
}

impl ToSchema for TemplateReplacement {}

fn package_schema(eco: Ecosystem) -> Value {
    let (name, name_max, version, hash, hashes_max) = match eco {
        Ecosystem::Pip => (
            grammar::PIP_NAME_PATTERN,
            grammar::PIP_NAME_MAX,
            grammar::PIP_VERSION_PATTERN,
            grammar::PIP_HASH_PATTERN,
            caps::PIP_HASHES,
        ),
        Ecosystem::Npm => (
            grammar::NPM_NAME_PATTERN,
            grammar::NPM_NAME_MAX,
            grammar::NPM_VERSION_PATTERN,
            grammar::NPM_HASH_PATTERN,
            caps::NPM_HASHES,
        ),
    };
    json!({
        "type": "object",
        "description": match eco {
            Ecosystem::Pip => "A pip requirement: a PyPI name, a PEP 440 specifier, sha256 hashes (with an exact `==` version; then every package needs them).",
            Ecosystem::Npm => "An npm package: its name, a semver range or dist-tag, an integrity (with an exact version).",
        },
        "required": ["ecosystem", "name"],
        "properties": {
            "ecosystem": {"type": "string", "enum": [eco.as_str()]},
            "name": {"type": "string", "pattern": name, "maxLength": name_max},
            "version": {"type": ["string", "null"], "pattern": version, "maxLength": grammar::VERSION_MAX,
                "description": "Absent or null: any version."},
            "hashes": {"type": "array", "maxItems": hashes_max, "uniqueItems": true,
                "items": {"type": "string", "pattern": hash}},
        },
        "additionalProperties": false,
    })
}

/// The schema of a template body: one branch per runtime (its packages are
/// of its ecosystem; a shell template has none), `id` for a new one,
/// `revision` for a replacement.
pub fn template_schema(replacement: bool) -> Value {
    let resources = json!({
        "type": "object",
        "description": "Defaults fill what is left out; the server's `templates.max_*` ceilings apply (422 beyond them).",
        "properties": {
            "cpu_cores": {"type": "number", "minimum": Resources::MIN.cpu_cores, "maximum": Resources::HARD_MAX.cpu_cores},
            "memory_mb": {"type": "integer", "minimum": Resources::MIN.memory_mb, "maximum": Resources::HARD_MAX.memory_mb},
            "disk_mb": {"type": "integer", "minimum": Resources::MIN.disk_mb, "maximum": Resources::HARD_MAX.disk_mb},
            "pids": {"type": "integer", "minimum": Resources::MIN.pids, "maximum": Resources::HARD_MAX.pids},
            "idle_timeout_secs": {"type": "integer", "minimum": Resources::MIN.idle_timeout_secs, "maximum": Resources::HARD_MAX.idle_timeout_secs},
            "max_lifetime_secs": {"type": "integer", "minimum": Resources::MIN.max_lifetime_secs, "maximum": Resources::HARD_MAX.max_lifetime_secs},
        },
        "additionalProperties": false,
    });
    let network = json!({
        "description": "Default: no network.",
        "oneOf": [
            {
                "type": "object",
                "required": ["mode"],
                "properties": {
                    "mode": {"type": "string", "enum": ["none"]},
                    "allow": {"type": "array", "maxItems": 0, "items": {"type": "string"}},
                },
                "additionalProperties": false,
            },
            {
                "type": "object",
                "required": ["mode", "allow"],
                "properties": {
                    "mode": {"type": "string", "enum": ["allow_list"]},
                    "allow": {"type": "array", "minItems": 1, "maxItems": caps::ALLOW, "uniqueItems": true,
                        "items": {"type": "string", "pattern": grammar::ALLOW_ENTRY_PATTERN, "maxLength": grammar::ALLOW_ENTRY_MAX}},
                },
                "additionalProperties": false,
            },
        ],
    });
    let path =
        json!({"type": "string", "pattern": grammar::SEED_PATH_PATTERN, "maxLength": grammar::SEED_PATH_MAX});
    let mode = json!({"type": ["integer", "null"], "minimum": 0, "maximum": 0o777,
        "description": "Permission bits (no setuid, setgid or sticky bit); absent or null: 0o644."});
    let files = json!({
        "type": "array",
        "description": "Each path once; at most 1 MiB in all.",
        "maxItems": caps::FILES,
        "items": {
            "oneOf": [
                {
                    "type": "object",
                    "required": ["path", "content"],
                    "properties": {
                        "path": path,
                        "content": {"type": "string", "maxLength": caps::FILE_CHARS},
                        "encoding": {"type": "string", "enum": ["utf8"]},
                        "mode": mode,
                    },
                    "additionalProperties": false,
                },
                {
                    "type": "object",
                    "required": ["path", "content", "encoding"],
                    "properties": {
                        "path": path,
                        "content": {"type": "string", "pattern": grammar::BASE64_PATTERN, "maxLength": caps::FILE_BASE64_CHARS},
                        "encoding": {"type": "string", "enum": ["base64"]},
                        "mode": mode,
                    },
                    "additionalProperties": false,
                },
            ],
        },
    });
    let env = json!({
        "type": "object",
        "description": "Variables of its boxes. Names the platform sets are refused (422): PATH, HOME, PWD, TMPDIR, PYTHONPATH, PYTHONHOME, PYTHONSTARTUP, PYTHONUSERBASE, NODE_PATH, NODE_OPTIONS, LD_*, WARDEN_*.",
        "maxProperties": caps::ENV,
        "propertyNames": {"type": "string", "pattern": grammar::ENV_NAME_PATTERN, "maxLength": grammar::ENV_NAME_MAX},
        "additionalProperties": {"type": "string", "pattern": grammar::ENV_VALUE_PATTERN, "maxLength": grammar::ENV_VALUE_MAX},
    });
    let branches: Vec<Value> = TemplateRuntime::NAMES
        .iter()
        .map(|runtime| {
            let packages = match TemplateRuntime::parse(runtime).and_then(TemplateRuntime::ecosystem) {
                Some(eco) => json!({"type": "array", "maxItems": caps::PACKAGES, "items": package_schema(eco),
                    "description": "Each package once (names compared as the index does)."}),
                None => json!({"type": "array", "maxItems": 0, "items": {"type": "object"},
                    "description": "A shell template has no packages."}),
            };
            let mut properties = serde_json::Map::new();
            if !replacement {
                properties.insert(
                    "id".into(),
                    json!({"type": "string", "pattern": grammar::ID_PATTERN, "description": "1 to 63 lowercase letters, digits or `-`."}),
                );
            }
            properties.insert(
                "name".into(),
                json!({"type": "string", "pattern": grammar::NAME_PATTERN, "description": "Display name; default: the id."}),
            );
            properties.insert(
                "description".into(),
                json!({"type": ["string", "null"], "pattern": grammar::DESCRIPTION_PATTERN}),
            );
            properties.insert("runtime".into(), json!({"type": "string", "enum": [runtime]}));
            properties.insert("packages".into(), packages);
            properties.insert("env".into(), env.clone());
            properties.insert("resources".into(), resources.clone());
            properties.insert("network".into(), network.clone());
            properties.insert("files".into(), files.clone());
            let required = if replacement {
                properties.insert(
                    "revision".into(),
                    json!({"type": "integer", "minimum": 1, "maximum": 9_007_199_254_740_991_i64,
                        "description": "The revision the template was read at; a replacement applies only to it (409 otherwise)."}),
                );
                json!(["runtime", "revision"])
            } else {
                json!(["id", "runtime"])
            };
            json!({"type": "object", "required": required, "properties": properties, "additionalProperties": false})
        })
        .collect();
    json!({
        "description": if replacement {
            "A template's full replacement: every field but `id`, and the `revision` it was read at."
        } else {
            "A new template."
        },
        "oneOf": branches,
    })
}

/// List templates by id, built-ins included (every role).
#[utoipa::path(get, path = "/v1/templates", tag = "templates", params(TemplateQuery),
    responses((status = 200, body = Page<TemplateView>, links(("get_template" = (operation_id = "get_template", parameters(("id" = "$response.body#/items/0/id")))))), Problems),
    security(("api_key" = [])))]
pub async fn list_templates(
    State(s): State<AppState>,
    _p: Principal,
    ApiQuery(q): ApiQuery<TemplateQuery>,
) -> Result<Json<Page<TemplateView>>, ApiError> {
    let page = s
        .templates
        .list(TemplateFilter {
            runtime: q.runtime,
            cursor: q.cursor,
            limit: limit(q.limit)?,
        })
        .await?;
    Ok(Json(Page::of(page)))
}

/// One template (every role).
#[utoipa::path(get, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Template id", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")),
    responses((status = 200, body = TemplateView), Problems),
    security(("api_key" = [])))]
pub async fn get_template(
    State(s): State<AppState>,
    _p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TemplateView>, ApiError> {
    Ok(Json(s.templates.get(&id).await?.into()))
}

/// Create a template (admin). Every problem of the body is answered at
/// once, each at its JSON pointer.
#[utoipa::path(post, path = "/v1/templates", tag = "templates", request_body = NewTemplate,
    responses(
        (status = 201, description = "Created", body = TemplateView,
            headers(("Location" = String, description = "The template's URL")),
            links(("get_template" = (operation_id = "get_template", parameters(("id" = "$response.body#/id")))),
                  ("replace_template" = (operation_id = "replace_template", parameters(("id" = "$response.body#/id")))),
                  ("delete_template" = (operation_id = "delete_template", parameters(("id" = "$response.body#/id")))))),
        BodyProblems),
    security(("api_key" = [])))]
pub async fn create_template(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    p.require_admin()?;
    let t = s.templates.create(&p.actor, &body).await?;
    let location = format!("/v1/templates/{}", t.id);
    let mut r = (StatusCode::CREATED, Json(TemplateView::from(t))).into_response();
    if let Ok(h) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, h);
    }
    Ok(r)
}

/// Replace a template whole (admin): every field but `id`, and the
/// `revision` it was read at. A stale revision is a 409
/// (`/problems/stale-revision`); a built-in cannot be replaced (409
/// `/problems/builtin`). The layer stays when the packages are the same.
#[utoipa::path(put, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Template id", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")),
    request_body = TemplateReplacement,
    responses((status = 200, body = TemplateView), BodyProblems),
    security(("api_key" = [])))]
pub async fn replace_template(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<TemplateView>, ApiError> {
    p.require_admin()?;
    Ok(Json(s.templates.replace(&p.actor, &id, &body).await?.into()))
}

/// Delete a template (admin); a built-in cannot be deleted (409
/// `/problems/builtin`).
#[utoipa::path(delete, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Template id", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")),
    responses((status = 204, description = "Deleted"), Problems),
    security(("api_key" = [])))]
pub async fn delete_template(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    p.require_admin()?;
    s.templates.delete(&p.actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A dependency layer: its packages, build state, log and lock (every
/// role).
#[utoipa::path(get, path = "/v1/layers/{id}", tag = "templates",
    params(("id" = String, Path, description = "Layer id (64 hex digits)", pattern = "^[0-9a-f]{64}$")),
    responses((status = 200, body = LayerView), Problems),
    security(("api_key" = [])))]
pub async fn get_layer(
    State(s): State<AppState>,
    _p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<LayerView>, ApiError> {
    let layer = s
        .store
        .get_layer(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no layer {id}")))?;
    Ok(Json(layer.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where `a` and `b` differ (numbers compared by value: utoipa writes
    /// `64.0` as `64`), or `None`.
    fn difference(a: &Value, b: &Value, at: &str) -> Option<String> {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                (x.as_f64() != y.as_f64()).then(|| format!("{at}: {x} / {y}"))
            }
            (Value::Object(x), Value::Object(y)) => {
                if x.keys().ne(y.keys()) {
                    return Some(format!(
                        "{at}: keys {:?} / {:?}",
                        x.keys().collect::<Vec<_>>(),
                        y.keys().collect::<Vec<_>>()
                    ));
                }
                x.iter()
                    .find_map(|(k, v)| difference(v, &y[k], &format!("{at}/{k}")))
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (v, w))| difference(v, w, &format!("{at}/{i}"))),
            _ => (a != b).then(|| format!("{at}: {a} / {b}")),
        }
    }

    /// The schemas survive utoipa's model: what the document carries is
    /// what was written (a keyword utoipa does not know would vanish).
    #[test]
    fn the_request_schemas_keep_every_keyword() {
        for replacement in [false, true] {
            let written = template_schema(replacement);
            let schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> =
                serde_json::from_value(written.clone()).unwrap();
            let back = serde_json::to_value(&schema).unwrap();
            assert_eq!(
                difference(&written, &back, ""),
                None,
                "replacement: {replacement}"
            );
        }
    }

    /// A small deterministic generator of strings over `alphabet`.
    fn strings(alphabet: &[&str], count: usize, max_len: usize, seed: u64) -> Vec<String> {
        let mut x = seed.max(1);
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..count)
            .map(|_| {
                let n = (next() % (max_len as u64 + 1)) as usize;
                (0..n)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }

    /// Each pattern of the document accepts exactly what the core's check
    /// accepts, on hostile and ordinary samples and on thousands of
    /// generated ones (the schema's `maxLength` and the names it lists
    /// as refused in prose included).
    #[test]
    fn the_documents_patterns_say_what_the_checks_do() {
        type Check = fn(&str) -> Result<(), String>;
        type Refused = fn(&str) -> bool;
        let no: Refused = |_| false;
        let base64_ok: Check = |s| grammar::decode_base64(s).map(drop);
        let long = |c: &str, n: usize| c.repeat(n);
        /// A grammar: its name, pattern, `maxLength`, check, the names the
        /// schema refuses in prose, samples, and an alphabet to generate
        /// more from.
        type Case<'a> = (
            &'a str,
            &'a str,
            usize,
            Check,
            Refused,
            Vec<String>,
            &'a [&'a str],
        );
        let cases: Vec<Case> = vec![
            (
                "id",
                grammar::ID_PATTERN,
                usize::MAX,
                grammar::check_id,
                no,
                vec![
                    "a".into(),
                    "-a".into(),
                    "a\n".into(),
                    long("a", 63),
                    long("a", 64),
                ],
                &["a", "z", "0", "9", "-", "A", "_", " "],
            ),
            (
                "name",
                grammar::NAME_PATTERN,
                usize::MAX,
                grammar::check_name,
                no,
                vec![
                    " x".into(),
                    "\u{85}x".into(),
                    "x\u{3000}".into(),
                    long("n", 128),
                    long("n", 129),
                ],
                &[
                    "a", " ", "\t", "\u{85}", "\u{a0}", "\u{7f}", "é", "\u{2028}", "\u{3000}", "\u{1680}",
                ],
            ),
            (
                "description",
                grammar::DESCRIPTION_PATTERN,
                usize::MAX,
                grammar::check_description,
                no,
                vec!["a\nb\tc".into(), "a\rb".into(), long("d", 1024), long("d", 1025)],
                &["a", "\n", "\t", "\r", "\u{0}", "\u{9f}", "\u{a0}"],
            ),
            (
                "pip name",
                grammar::PIP_NAME_PATTERN,
                grammar::PIP_NAME_MAX,
                grammar::check_pip_name,
                no,
                vec!["../x".into(), "x;y".into(), long("p", 128), long("p", 129)],
                &["a", "Z", "0", ".", "-", "_", " ", "/", "@", "["],
            ),
            (
                "npm name",
                grammar::NPM_NAME_PATTERN,
                grammar::NPM_NAME_MAX,
                grammar::check_npm_name,
                |s| grammar::NPM_RESERVED_NAMES.contains(&s),
                vec![
                    "@types/node".into(),
                    "node_modules".into(),
                    "favicon.ico".into(),
                    long("n", 215),
                ],
                &["a", "0", ".", "-", "_", "@", "/", "A", "~"],
            ),
            (
                "pip version",
                grammar::PIP_VERSION_PATTERN,
                grammar::VERSION_MAX,
                grammar::check_pip_version,
                no,
                vec![
                    "==1!2.0rc1.post2.dev3".into(),
                    "==1.0+loc.1".into(),
                    "!=1.5.*".into(),
                    "<1.*".into(),
                ],
                &[
                    "=", "!", "~", "<", ">", "1", "0", ".", "*", ",", "a", "b", "rc", ".post", ".dev", "+",
                    "l", " ",
                ],
            ),
            (
                "npm version",
                grammar::NPM_VERSION_PATTERN,
                grammar::VERSION_MAX,
                grammar::check_npm_version,
                no,
                vec![
                    "1.x || 2.x".into(),
                    "1.2.3-a.b+c".into(),
                    "1 - 2".into(),
                    "latest".into(),
                    "||".into(),
                ],
                &[
                    "1", "0", ".", "x", "X", "*", "^", "~", ">", "<", "=", " ", "|", "-", "+", "a", "v",
                ],
            ),
            (
                "pip hash",
                grammar::PIP_HASH_PATTERN,
                usize::MAX,
                grammar::check_pip_hash,
                no,
                vec![
                    format!("sha256:{}", long("a", 64)),
                    format!("sha256:{}", long("A", 64)),
                ],
                &["sha256:", "a", "f", "0", "A", "g"],
            ),
            (
                "npm hash",
                grammar::NPM_HASH_PATTERN,
                usize::MAX,
                grammar::check_npm_hash,
                no,
                vec![
                    format!("sha512-{}==", long("A", 86)),
                    format!("sha512-{}=", long("A", 87)),
                ],
                &["sha512-", "A", "+", "/", "="],
            ),
            (
                "env name",
                grammar::ENV_NAME_PATTERN,
                grammar::ENV_NAME_MAX,
                grammar::check_env_name,
                grammar::env_is_reserved,
                vec![
                    "LD_PRELOAD".into(),
                    "PATHS".into(),
                    long("E", 128),
                    long("E", 129),
                ],
                &["A", "_", "1", "a", "-", "LD_", "WARDEN_", "PATH", "HOME"],
            ),
            (
                "env value",
                grammar::ENV_VALUE_PATTERN,
                grammar::ENV_VALUE_MAX,
                grammar::check_env_value,
                no,
                vec![long("v", 4096), long("v", 4097)],
                &["a", "\u{0}", "\n", "é"],
            ),
            (
                "allow entry",
                grammar::ALLOW_ENTRY_PATTERN,
                grammar::ALLOW_ENTRY_MAX,
                grammar::check_allow_entry,
                no,
                vec![
                    "a.b:65535".into(),
                    "a.b:65536".into(),
                    "[::1]".into(),
                    format!("{}.com", long("a", 64)),
                ],
                &["a", "b", "1", ".", "-", "*.", ":", "6", "5", "0", "A"],
            ),
            (
                "seed path",
                grammar::SEED_PATH_PATTERN,
                grammar::SEED_PATH_MAX,
                grammar::check_seed_path,
                no,
                vec![
                    "...".into(),
                    "..a".into(),
                    "a\\b".into(),
                    long("f", 255),
                    long("f", 256),
                ],
                &["a", ".", "/", "-", "_", "+", "\\", " "],
            ),
            (
                "base64",
                grammar::BASE64_PATTERN,
                usize::MAX,
                base64_ok,
                no,
                vec!["QR==".into(), "QUI=".into(), "Q===".into()],
                &["A", "Q", "=", "+", "/", "z"],
            ),
        ];
        for (i, (what, pattern, max, check, refused, samples, alphabet)) in cases.into_iter().enumerate() {
            let re = regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{what}: {e}"));
            for s in samples
                .into_iter()
                .chain(strings(alphabet, 20_000, 12, 7919 * (i as u64 + 1)))
            {
                let by_schema = re.is_match(&s) && s.chars().count() <= max && !refused(&s);
                let by_check = check(&s);
                assert_eq!(by_schema, by_check.is_ok(), "{what}: {s:?}: {by_check:?}");
            }
        }
    }
}
