//! The `/v1` handlers: each parses its request into a call on the registry,
//! the store or the executor and renders the result. Authorization is the
//! first thing each one does (the `Principal` extractor answers 401; the
//! `require_*` checks answer 403).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::de::DeserializeOwned;
use utoipa::IntoResponses;
use utoipa::openapi::{RefOr, ResponseBuilder, ResponsesBuilder, content::ContentBuilder};
use warden_core::store::{AuditFilter, ExecutionFilter, PluginFilter};
use warden_core::{Blobs, Role, Store};

use crate::AppState;
use crate::auth::{Principal, create_key};
use crate::error::ApiError;
use crate::views::*;

/// JSON body whose rejections are problem documents.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(ApiError::rejection(r.status(), r.body_text())),
        }
    }
}

/// Query string whose rejections are problem documents naming the
/// parameter (`query:NAME`): enums, numbers and their ranges are checked
/// as the query is read.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|e| {
            let path = e.path().to_string();
            let why = e.into_inner().to_string();
            if path == "." {
                ApiError::bad_request(format!("the query string cannot be read: {why}"))
            } else {
                ApiError::bad_field(&format!("query:{path}"), why)
            }
        })
    }
}

/// Path parameters whose rejections are problem documents.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(r) => Err(ApiError::rejection(StatusCode::BAD_REQUEST, r.body_text())),
        }
    }
}

/// Error answers, as `application/problem+json`, by status.
const PROBLEMS: &[(&str, &str)] = &[
    (
        "400",
        "The request cannot be read (the field or parameter is named)",
    ),
    ("401", "No API key, or an unknown or revoked one"),
    ("403", "The key's role may not do this"),
    (
        "404",
        "No such plugin, version, app, installation, execution, key, template or layer (or not yours: the same answer)",
    ),
    (
        "409",
        "Exists already, in use, the version's state does not allow it, a built-in template, or a stale revision",
    ),
    ("413", "The body is over its limit"),
    ("415", "The body's Content-Type is not one the operation takes"),
    ("422", "Invalid: every problem located by JSON pointer or file"),
    ("429", "Too many executions in flight; see Retry-After"),
    ("503", "The store or the jail is unavailable"),
];

fn problem_responses(codes: &[&str]) -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    let described: Vec<(&str, &str)> = PROBLEMS
        .iter()
        .filter(|(c, _)| codes.contains(c))
        .copied()
        .collect();
    described_problems(&described)
}

/// Error answers, as `application/problem+json`, with their descriptions
/// (for operations whose statuses mean something of their own).
pub(crate) fn described_problems(
    codes: &[(&str, &str)],
) -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    let mut b = ResponsesBuilder::new();
    for (code, what) in codes {
        b = b.response(
            *code,
            ResponseBuilder::new()
                .description(*what)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        );
    }
    b.build().into()
}

/// The error answers of an operation without a body.
pub struct Problems;

impl IntoResponses for Problems {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        problem_responses(&["400", "401", "403", "404", "409", "422", "503"])
    }
}

/// The error answers of an operation that reads a body: those of
/// [`Problems`], a body over its limit (413) and a body of the wrong
/// content type (415).
pub struct BodyProblems;

impl IntoResponses for BodyProblems {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        problem_responses(&["400", "401", "403", "404", "409", "413", "415", "422", "503"])
    }
}

/// The error answers of `execute`: those of [`BodyProblems`], and too many
/// executions in flight (429).
pub struct ExecuteProblems;

impl IntoResponses for ExecuteProblems {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        problem_responses(&[
            "400", "401", "403", "404", "409", "413", "415", "422", "429", "503",
        ])
    }
}

/// A list's page size from `?limit=`: the default when absent, 400 naming
/// `query:limit` out of 1 to [`MAX_LIMIT`].
pub(crate) fn limit(l: Option<u32>) -> Result<u32, ApiError> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(n @ 1..=MAX_LIMIT) => Ok(n),
        Some(_) => Err(ApiError::bad_field(
            "query:limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// The plugin `code` as the caller may see it: the guard of every endpoint
/// under `/v1/plugins/{code}` (and of `?plugin=` filters). App keys get
/// 403 whatever the code; a developer asking for another developer's plugin
/// gets exactly the answer for a plugin that does not exist.
pub(crate) async fn owned_plugin(
    s: &AppState,
    p: &Principal,
    code: &str,
) -> Result<warden_core::Plugin, ApiError> {
    if p.actor.role == Role::App {
        return Err(ApiError::forbidden("app keys cannot read plugins"));
    }
    s.store
        .get_plugin(code)
        .await?
        .filter(|plugin| p.may_see_plugin(&plugin.owner))
        .ok_or_else(|| ApiError::not_found(format!("no plugin {code}")))
}

// ---------------------------------------------------------------- plugins

/// Upload a package: a new plugin, a new version, or a new package for a
/// draft or rejected version. Send the zip as the body
/// (`Content-Type: application/zip`) or as the `package` field of a
/// multipart form.
#[utoipa::path(post, path = "/v1/plugins", tag = "plugins",
    request_body(description = "The package (zip): the body itself, or the `package` field of a form",
        content((inline(PackageBytes) = "application/zip"), (UploadForm = "multipart/form-data"))),
    responses(
        (status = 201, description = "A new version, in draft", body = VersionView, links(("version" = (operation_id = "get_version", parameters(("code" = "$response.body#/plugin"), ("version" = "$response.body#/version")))), ("submit" = (operation_id = "submit", parameters(("code" = "$response.body#/plugin"), ("version" = "$response.body#/version")))))),
        (status = 200, description = "A new package for an existing draft (or a rejected version, now pending)", body = VersionView, links(("version" = (operation_id = "get_version", parameters(("code" = "$response.body#/plugin"), ("version" = "$response.body#/version")))), ("submit" = (operation_id = "submit", parameters(("code" = "$response.body#/plugin"), ("version" = "$response.body#/version")))))),
        BodyProblems),
    security(("api_key" = [])))]
pub async fn upload(
    State(s): State<AppState>,
    p: Principal,
    req: Request,
) -> Result<(StatusCode, Json<VersionView>), ApiError> {
    p.require_developer()?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let bytes = if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(req, &s)
            .await
            .map_err(|r| ApiError::rejection(r.status(), r.body_text()))?;
        let mut package = None;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError::rejection(e.status(), e.body_text()))?
        {
            // The form has one field, as the document says: anything else
            // is a mistake the client should hear about.
            match field.name() {
                Some("package") if package.is_none() => {
                    package = Some(
                        field
                            .bytes()
                            .await
                            .map_err(|e| ApiError::rejection(e.status(), e.body_text()))?,
                    );
                }
                Some("package") => {
                    return Err(ApiError::bad_field(
                        "form:package",
                        "the form has two `package` fields",
                    ));
                }
                other => {
                    return Err(ApiError::bad_field(
                        &format!("form:{}", other.unwrap_or_default()),
                        "unknown field: the form has one field, `package`",
                    ));
                }
            }
        }
        package.ok_or_else(|| ApiError::bad_field("form:package", "the form has no `package` field"))?
    } else {
        Bytes::from_request(req, &s)
            .await
            .map_err(|r| ApiError::rejection(r.status(), r.body_text()))?
    };
    if bytes.is_empty() {
        return Err(ApiError::bad_field(
            "body",
            "the body is empty: send the package zip",
        ));
    }
    let v = s.registry.upload(&p.actor, bytes.to_vec()).await?;
    let status = if v.revision == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(v.into())))
}

/// List plugins (developers see their own).
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", params(PluginQuery),
    responses((status = 200, body = Page<PluginView>, links(("plugin" = (operation_id = "get_plugin", parameters(("code" = "$response.body#/items/0/code")))), ("versions" = (operation_id = "list_versions", parameters(("code" = "$response.body#/items/0/code")))))), Problems), security(("api_key" = [])))]
pub async fn list_plugins(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<PluginQuery>,
) -> Result<Json<Page<PluginView>>, ApiError> {
    p.require_developer()?;
    let owner = match p.actor.role {
        Role::Admin => q.owner,
        _ => Some(p.actor.name.clone()),
    };
    let page = s
        .store
        .list_plugins(PluginFilter {
            search: q.search,
            owner,
            cursor: q.cursor,
            limit: limit(q.limit)?,
        })
        .await?;
    Ok(Json(Page::of(page)))
}

/// One plugin.
#[utoipa::path(get, path = "/v1/plugins/{code}", tag = "plugins",
    params(("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128)),
    responses((status = 200, body = PluginView), Problems), security(("api_key" = [])))]
pub async fn get_plugin(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<PluginView>, ApiError> {
    Ok(Json(owned_plugin(&s, &p, &code).await?.into()))
}

/// A plugin's versions, oldest first.
#[utoipa::path(get, path = "/v1/plugins/{code}/versions", tag = "plugins",
    params(("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128)),
    responses((status = 200, body = Vec<VersionView>, links(("get_version" = (operation_id = "get_version", parameters(("code" = "$request.path.code"), ("version" = "$response.body#/0/version")))), ("get_manifest" = (operation_id = "get_manifest", parameters(("code" = "$request.path.code"), ("version" = "$response.body#/0/version")))), ("get_report" = (operation_id = "get_report", parameters(("code" = "$request.path.code"), ("version" = "$response.body#/0/version")))), ("version_audit" = (operation_id = "version_audit", parameters(("code" = "$request.path.code"), ("version" = "$response.body#/0/version")))), ("download_package" = (operation_id = "download_package", parameters(("code" = "$request.path.code"), ("version" = "$response.body#/0/version")))))), Problems), security(("api_key" = [])))]
pub async fn list_versions(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<Vec<VersionView>>, ApiError> {
    owned_plugin(&s, &p, &code).await?;
    let versions = s.store.list_versions(&code).await?;
    Ok(Json(versions.into_iter().map(Into::into).collect()))
}

async fn owned_version(
    s: &AppState,
    p: &Principal,
    code: &str,
    version: &str,
) -> Result<warden_core::Version, ApiError> {
    owned_plugin(s, p, code).await?;
    Ok(s.registry.version(code, version).await?)
}

/// One version.
#[utoipa::path(get, path = "/v1/plugins/{code}/versions/{version}", tag = "plugins",
    params(("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128), ("version" = String, Path, description = "Semantic version", pattern = "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$", max_length = 64)),
    responses((status = 200, body = VersionView), Problems), security(("api_key" = [])))]
pub async fn get_version(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((code, version)): ApiPath<(String, String)>,
) -> Result<Json<VersionView>, ApiError> {
    Ok(Json(owned_version(&s, &p, &code, &version).await?.into()))
}

/// A version's manifest, as uploaded.
#[utoipa::path(get, path = "/v1/plugins/{code}/versions/{version}/manifest", tag = "plugins",
    params(("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128), ("version" = String, Path, description = "Semantic version", pattern = "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$", max_length = 64)),
    responses((status = 200, description = "The manifest (see docs/manifest.schema.json)", body = Object), Problems), security(("api_key" = [])))]
pub async fn get_manifest(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((code, version)): ApiPath<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(owned_version(&s, &p, &code, &version).await?.manifest))
}

/// A version's review report: permission changes first, then findings.
#[utoipa::path(get, path = "/v1/plugins/{code}/versions/{version}/report", tag = "plugins",
    params(("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128), ("version" = String, Path, description = "Semantic version", pattern = "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$", max_length = 64)),
    responses((status = 200, description = "The report", body = Object), Problems), security(("api_key" = [])))]
pub async fn get_report(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((code, version)): ApiPath<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let v = owned_version(&s, &p, &code, &version).await?;
    v.report.map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "{code} {version} has no report yet: submit it for review"
        ))
    })
}

/// A version's audit trail, oldest first.
#[utoipa::path(get, path = "/v1/plugins/{code}/versions/{version}/audit", tag = "plugins",
    params(("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128), ("version" = String, Path, description = "Semantic version", pattern = "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$", max_length = 64)),
    responses((status = 200, body = Vec<AuditView>), Problems), security(("api_key" = [])))]
pub async fn version_audit(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((code, version)): ApiPath<(String, String)>,
) -> Result<Json<Vec<AuditView>>, ApiError> {
    owned_plugin(&s, &p, &code).await?;
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .store
            .list_audit(AuditFilter {
                plugin: Some(code.clone()),
                version: Some(version.clone()),
                cursor,
                limit: 500,
                ..Default::default()
            })
            .await?;
        items.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    items.reverse();
    Ok(Json(items.into_iter().map(Into::into).collect()))
}

/// A version's runtime state on this node: `loading`, `initializing`,
/// `active`, `stopped` or `failed` with the reason. Read-only.
#[utoipa::path(get, path = "/v1/plugins/{code}/versions/{version}/runtime", tag = "plugins",
    params(("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128), ("version" = String, Path, description = "Semantic version", pattern = "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$", max_length = 64)),
    responses((status = 200, body = crate::runtime_state::RuntimeView), Problems), security(("api_key" = [])))]
pub async fn version_runtime(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((code, version)): ApiPath<(String, String)>,
) -> Result<Json<crate::runtime_state::RuntimeView>, ApiError> {
    let v = owned_version(&s, &p, &code, &version).await?;
    Ok(Json(s.exec.runtime(&v)))
}

/// Download a version's package (verified against its recorded hash).
#[utoipa::path(get, path = "/v1/plugins/{code}/versions/{version}/package", tag = "plugins",
    params(("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128), ("version" = String, Path, description = "Semantic version", pattern = "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$", max_length = 64)),
    responses((status = 200, description = "The package", content_type = "application/zip", body = inline(Binary)), Problems), security(("api_key" = [])))]
pub async fn download_package(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((code, version)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let v = owned_version(&s, &p, &code, &version).await?;
    let bytes = s.registry.verified_blob(&v).await?;
    let disposition = format!("attachment; filename=\"{}-{}.zip\"", v.plugin, v.version);
    let mut r = bytes.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    if let Ok(h) = HeaderValue::from_str(&disposition) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, h);
    }
    Ok(r)
}

/// Owner or admin: 403 for app keys, 404 for other developers (as for a
/// plugin that does not exist).
async fn owner_guard(s: &AppState, p: &Principal, code: &str) -> Result<(), ApiError> {
    p.require_developer()?;
    owned_plugin(s, p, code).await.map(drop)
}

/// Admin only: 403 for every other key, whatever the plugin.
async fn admin_guard(s: &AppState, p: &Principal, code: &str) -> Result<(), ApiError> {
    p.require_admin()?;
    owned_plugin(s, p, code).await.map(drop)
}

macro_rules! transition {
    ($name:ident, $path:literal, $doc:literal, $call:ident, $guard:ident) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "plugins",
            params(("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128), ("version" = String, Path, description = "Semantic version", pattern = "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$", max_length = 64)),
            responses((status = 200, body = VersionView), Problems), security(("api_key" = [])))]
        pub async fn $name(State(s): State<AppState>, p: Principal, ApiPath((code, version)): ApiPath<(String, String)>) -> Result<Json<VersionView>, ApiError> {
            $guard(&s, &p, &code).await?;
            Ok(Json(s.registry.$call(&p.actor, &code, &version).await?.into()))
        }
    };
}

transition!(
    submit,
    "/v1/plugins/{code}/versions/{version}/submit",
    "Submit a draft for review: the checks run and the report is stored (owner or admin).",
    submit,
    owner_guard
);
transition!(
    activate,
    "/v1/plugins/{code}/versions/{version}/activate",
    "Switch an inactive version back on (owner or admin).",
    activate,
    owner_guard
);
transition!(
    deactivate,
    "/v1/plugins/{code}/versions/{version}/deactivate",
    "Switch an active version off: calls to it are refused (owner or admin).",
    deactivate,
    owner_guard
);

/// Reject a pending version; a reason is required (admin).
#[utoipa::path(post, path = "/v1/plugins/{code}/versions/{version}/reject", tag = "plugins",
    params(("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128), ("version" = String, Path, description = "Semantic version", pattern = "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$", max_length = 64)),
    request_body = RejectBody,
    responses((status = 200, body = VersionView), BodyProblems), security(("api_key" = [])))]
pub async fn reject(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((code, version)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<RejectBody>,
) -> Result<Json<VersionView>, ApiError> {
    admin_guard(&s, &p, &code).await?;
    Ok(Json(
        s.registry
            .reject(&p.actor, &code, &version, &body.reason)
            .await?
            .into(),
    ))
}

/// Delete a version no installation uses (owner or admin).
#[utoipa::path(delete, path = "/v1/plugins/{code}/versions/{version}", tag = "plugins",
    params(("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128), ("version" = String, Path, description = "Semantic version", pattern = "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$", max_length = 64)),
    responses((status = 204, description = "Deleted"), Problems), security(("api_key" = [])))]
pub async fn delete_version(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((code, version)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    owner_guard(&s, &p, &code).await?;
    s.registry.delete_version(&p.actor, &code, &version).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- apps

/// Create an app (admin).
#[utoipa::path(post, path = "/v1/apps", tag = "apps", request_body = NewApp,
    responses((status = 201, body = AppView, links(("get_app" = (operation_id = "get_app", parameters(("app" = "$response.body#/id")))), ("list_installations" = (operation_id = "list_installations", parameters(("app" = "$response.body#/id")))))), BodyProblems), security(("api_key" = [])))]
pub async fn create_app(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<NewApp>,
) -> Result<(StatusCode, Json<AppView>), ApiError> {
    p.require_admin()?;
    let app = s.registry.create_app(&p.actor, &body.id, &body.name).await?;
    Ok((StatusCode::CREATED, Json(app.into())))
}

/// List apps (admin).
#[utoipa::path(get, path = "/v1/apps", tag = "apps",
    responses((status = 200, body = Vec<AppView>, links(("get_app" = (operation_id = "get_app", parameters(("app" = "$response.body#/0/id")))), ("list_installations" = (operation_id = "list_installations", parameters(("app" = "$response.body#/0/id")))))), Problems), security(("api_key" = [])))]
pub async fn list_apps(State(s): State<AppState>, p: Principal) -> Result<Json<Vec<AppView>>, ApiError> {
    p.require_admin()?;
    Ok(Json(
        s.store.list_apps().await?.into_iter().map(Into::into).collect(),
    ))
}

/// One app (admin, or the app's own key).
#[utoipa::path(get, path = "/v1/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$")),
    responses((status = 200, body = AppView), Problems), security(("api_key" = [])))]
pub async fn get_app(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(app): ApiPath<String>,
) -> Result<Json<AppView>, ApiError> {
    p.require_app(&app)?;
    let a = s
        .store
        .get_app(&app)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no app `{app}`")))?;
    Ok(Json(a.into()))
}

/// An app's installations (admin, or the app's own key).
#[utoipa::path(get, path = "/v1/apps/{app}/installations", tag = "apps",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$")),
    responses((status = 200, body = Vec<InstallationView>, links(("execute" = (operation_id = "execute", parameters(("app" = "$request.path.app"), ("code" = "$response.body#/0/plugin")))))), Problems), security(("api_key" = [])))]
pub async fn list_installations(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(app): ApiPath<String>,
) -> Result<Json<Vec<InstallationView>>, ApiError> {
    p.require_app(&app)?;
    s.store
        .get_app(&app)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no app `{app}`")))?;
    Ok(Json(
        s.store
            .list_installations(&app)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Install a plugin in an app, pinned to an active version or following
/// the latest active one (admin).
#[utoipa::path(post, path = "/v1/apps/{app}/installations", tag = "apps",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$")), request_body = NewInstallation,
    responses((status = 201, body = InstallationView), BodyProblems), security(("api_key" = [])))]
pub async fn install(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(app): ApiPath<String>,
    ApiJson(body): ApiJson<NewInstallation>,
) -> Result<(StatusCode, Json<InstallationView>), ApiError> {
    p.require_admin()?;
    let i = s
        .registry
        .install(&p.actor, &app, &body.plugin, body.version.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(i.into())))
}

/// Change an installation's pin (admin).
#[utoipa::path(put, path = "/v1/apps/{app}/installations/{plugin}", tag = "apps",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$"), ("plugin" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128)),
    request_body = UpdateInstallation,
    responses((status = 200, body = InstallationView), BodyProblems), security(("api_key" = [])))]
pub async fn upgrade(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((app, plugin)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<UpdateInstallation>,
) -> Result<Json<InstallationView>, ApiError> {
    p.require_admin()?;
    Ok(Json(
        s.registry
            .upgrade(&p.actor, &app, &plugin, body.version.as_deref())
            .await?
            .into(),
    ))
}

/// Remove a plugin from an app (admin).
#[utoipa::path(delete, path = "/v1/apps/{app}/installations/{plugin}", tag = "apps",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$"), ("plugin" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128)),
    responses((status = 204, description = "Uninstalled"), Problems), security(("api_key" = [])))]
pub async fn uninstall(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((app, plugin)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    p.require_admin()?;
    s.registry.uninstall(&p.actor, &app, &plugin).await?;
    crate::credentials::forget_installation_tokens(&app, &plugin);
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- execute

/// Call a plugin installed in an app with the event as the body. The event
/// is checked against the version's `input_schema` before anything runs;
/// the return value against its `output_schema`. `?mode=async` answers 202
/// at once; poll `GET /v1/executions/{id}` or stream its events.
#[utoipa::path(post, path = "/v1/apps/{app}/plugins/{code}/execute", tag = "executions",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$"), ("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128), ExecuteQuery),
    request_body(content = Object, description = "The event (any JSON the plugin's input_schema accepts)"),
    responses(
        (status = 200, description = "The finished execution", body = ExecutionView, links(("get_execution" = (operation_id = "get_execution", parameters(("id" = "$response.body#/id")))), ("execution_events" = (operation_id = "execution_events", parameters(("id" = "$response.body#/id")))))),
        (status = 202, description = "Accepted (async): the execution as recorded", body = ExecutionView, links(("get_execution" = (operation_id = "get_execution", parameters(("id" = "$response.body#/id")))), ("execution_events" = (operation_id = "execution_events", parameters(("id" = "$response.body#/id")))))),
        ExecuteProblems),
    security(("api_key" = [])))]
pub async fn execute(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((app, code)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ExecuteQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    p.require_app(&app)?;
    let body = Bytes::from_request(req, &s)
        .await
        .map_err(|r| ApiError::rejection(r.status(), r.body_text()))?;
    let accepted = s.exec.accept(&app, &code, &body, &q).await?;
    let location = format!("/v1/executions/{}", accepted.view.id);
    let (status, view) = if accepted.is_async {
        (StatusCode::ACCEPTED, accepted.view)
    } else {
        let view = accepted
            .done
            .await
            .map_err(|_| ApiError::internal(&"the execution's task ended without a result"))?;
        (StatusCode::OK, view)
    };
    let mut r = (status, Json(view)).into_response();
    if let Ok(h) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, h);
    }
    Ok(r)
}

// ---------------------------------------------------------------- executions

/// The execution `id` as the caller may see it (admins: all; apps: their
/// own; developers: their plugins'). Another tenant's execution gets
/// exactly the answer for one that does not exist.
pub(crate) async fn visible_execution(
    s: &AppState,
    p: &Principal,
    id: &str,
) -> Result<warden_core::Execution, ApiError> {
    let missing = || ApiError::not_found(format!("no execution {id}"));
    let e = s.store.get_execution(id).await?.ok_or_else(missing)?;
    let visible = match p.actor.role {
        Role::Admin => true,
        Role::App => p.actor.app.as_deref() == Some(e.app.as_str()),
        // A session's executions are its app's alone.
        Role::Developer => match e.source.plugin() {
            Some((plugin, _)) => s
                .store
                .get_plugin(plugin)
                .await?
                .is_some_and(|plugin| p.may_see_plugin(&plugin.owner)),
            None => false,
        },
    };
    if visible { Ok(e) } else { Err(missing()) }
}

/// List executions, newest first (apps see their own; developers, one of
/// their plugins' at a time).
#[utoipa::path(get, path = "/v1/executions", tag = "executions", params(ExecutionQuery),
    responses((status = 200, body = Page<ExecutionView>, links(("get_execution" = (operation_id = "get_execution", parameters(("id" = "$response.body#/items/0/id")))), ("execution_events" = (operation_id = "execution_events", parameters(("id" = "$response.body#/items/0/id")))))), Problems), security(("api_key" = [])))]
pub async fn list_executions(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ExecutionQuery>,
) -> Result<Json<Page<ExecutionView>>, ApiError> {
    let mut app = q.app;
    match p.actor.role {
        Role::Admin => {}
        Role::App => {
            let own = p.actor.app.clone().unwrap_or_default();
            if app.as_ref().is_some_and(|a| *a != own) {
                return Err(ApiError::forbidden(format!(
                    "this key lists executions of app `{own}` only"
                )));
            }
            app = Some(own);
        }
        Role::Developer => {
            let Some(plugin) = &q.plugin else {
                return Err(ApiError::forbidden(
                    "developers list the executions of one of their plugins: add ?plugin=CODE",
                ));
            };
            owned_plugin(&s, &p, plugin).await?;
        }
    }
    let page = s
        .store
        .list_executions(ExecutionFilter {
            app,
            plugin: q.plugin,
            version: q.version,
            session: None,
            status: q.status,
            since: q.since,
            until: q.until,
            cursor: q.cursor,
            limit: limit(q.limit)?,
        })
        .await?;
    Ok(Json(Page::of(page)))
}

/// One execution, with its result once final.
#[utoipa::path(get, path = "/v1/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^exe_[0-9a-f]{24,32}$")),
    responses((status = 200, body = ExecutionView), Problems), security(("api_key" = [])))]
pub async fn get_execution(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ExecutionView>, ApiError> {
    Ok(Json(visible_execution(&s, &p, &id).await?.into()))
}

/// Download an artifact of an execution (by its index in `artifacts`).
#[utoipa::path(get, path = "/v1/executions/{id}/artifacts/{index}", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^exe_[0-9a-f]{24,32}$"), ("index" = u32, Path, description = "Index in the execution's `artifacts`", minimum = 0)),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = inline(Binary)), Problems), security(("api_key" = [])))]
pub async fn get_artifact(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((id, index)): ApiPath<(String, usize)>,
) -> Result<Response, ApiError> {
    let e = visible_execution(&s, &p, &id).await?;
    let view = ExecutionView::from(e);
    let a = view
        .artifacts
        .get(index)
        .ok_or_else(|| ApiError::not_found(format!("execution {id} has no artifact {index}")))?;
    let data = s
        .blobs
        .get(&format!("artifacts/{id}/{index}"))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("artifact {index} of execution {id} was not stored")))?;
    let mut r = data.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let name: String = a
        .path
        .rsplit('/')
        .next()
        .unwrap_or("artifact")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    if let Ok(h) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, h);
    }
    Ok(r)
}

/// Stream an execution as Server-Sent Events: `status`, `stdout` and
/// `stderr` chunks (JSON strings) with increasing ids, then `result` (the
/// execution, id `end`). Reconnect with `Last-Event-ID` to resume.
#[utoipa::path(get, path = "/v1/executions/{id}/events", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^exe_[0-9a-f]{24,32}$"), ("Last-Event-ID" = Option<String>, Header, description = "The last event id received (`1`, `2`, … or `end`); an id the stream never sent replays it from the start")),
    responses((status = 200, description = "An event stream: each event as described, then the stream ends", content_type = "text/event-stream", body = StreamEvent), Problems), security(("api_key" = [])))]
pub async fn execution_events(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    visible_execution(&s, &p, &id).await?;
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(
        Sse::new(crate::sse::events(s, crate::sse::Source::Execution, id, last))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
}

// ---------------------------------------------------------------- audit, keys, me

/// List audit events, newest first (admin; developers for one of their
/// plugins).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditView>), Problems), security(("api_key" = [])))]
pub async fn list_audit(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditView>>, ApiError> {
    match p.actor.role {
        Role::Admin => {}
        Role::App => return Err(ApiError::forbidden("app keys cannot read the audit trail")),
        Role::Developer => {
            let Some(plugin) = &q.plugin else {
                return Err(ApiError::forbidden(
                    "developers read the audit trail of one of their plugins: add ?plugin=CODE",
                ));
            };
            owned_plugin(&s, &p, plugin).await?;
        }
    }
    let page = s
        .store
        .list_audit(AuditFilter {
            plugin: q.plugin,
            version: q.version,
            actor: q.actor,
            action: q.action,
            since: q.since,
            until: q.until,
            cursor: q.cursor,
            limit: limit(q.limit)?,
        })
        .await?;
    Ok(Json(Page::of(page)))
}

/// Create an API key; the secret is in this answer only (admin).
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, body = CreatedKey, links(("revoke" = (operation_id = "revoke_key", parameters(("id" = "$response.body#/key/id")))))), BodyProblems), security(("api_key" = [])))]
pub async fn create_api_key(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    p.require_admin()?;
    let (key, secret) = create_key(
        &s.store,
        &p.actor.name,
        &body.name,
        body.role.into(),
        body.app.as_deref(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: key.into(),
            secret,
        }),
    ))
}

/// List API keys (never their secrets) (admin).
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses((status = 200, body = Vec<KeyView>), Problems), security(("api_key" = [])))]
pub async fn list_keys(State(s): State<AppState>, p: Principal) -> Result<Json<Vec<KeyView>>, ApiError> {
    p.require_admin()?;
    Ok(Json(
        s.store.list_keys().await?.into_iter().map(Into::into).collect(),
    ))
}

/// Revoke an API key (admin). The last live admin key cannot be revoked
/// (409 `/problems/last-admin-key`): create another admin key first.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id", pattern = "^key_[0-9a-f]{24,32}$")),
    responses((status = 204, description = "Revoked"), Problems), security(("api_key" = [])))]
pub async fn revoke_key(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    p.require_admin()?;
    crate::auth::revoke_key(&s.store, &p.actor.name, &id).await?;
    s.keys.clear();
    Ok(StatusCode::NO_CONTENT)
}

/// Who this key is.
#[utoipa::path(get, path = "/v1/me", tag = "keys",
    responses((status = 200, body = MeView), Problems), security(("api_key" = [])))]
pub async fn me(p: Principal) -> Json<MeView> {
    Json(MeView {
        name: p.actor.name,
        role: p.actor.role.as_str().into(),
        app: p.actor.app,
        key_id: p.key_id,
    })
}

// ---------------------------------------------------------------- operations

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        checks: serde_json::json!({}),
    })
}

/// Readiness: the store answers and the jail can start boxes.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(s): State<AppState>) -> (StatusCode, Json<Health>) {
    // Causes go to the log: this endpoint needs no key.
    let store = match tokio::time::timeout(Duration::from_secs(2), s.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store does not answer");
            "unavailable"
        }
        Err(_) => "unavailable: no answer within 2 s",
    };
    let jail = match s.runner.jail().check_usable() {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the jail cannot start boxes");
            "unavailable"
        }
    };
    let ok = store == "ok" && jail == "ok";
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if ok { "ok" } else { "unavailable" }.into(),
            checks: serde_json::json!({"store": store, "jail": jail, "executions_in_flight": s.exec.in_flight()}),
        }),
    )
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(s): State<AppState>) -> Response {
    crate::metrics::refresh(&s).await;
    let mut r = s.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
