//! Signed packages over HTTP: publishers register their minisign public
//! keys, attach a signature over a version's package hash, and an admin
//! approves a signed version as `trusted` (see [`warden_core::signing`]).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warden_core::TrustLevel;
use warden_core::signing::SigningKey;

use crate::AppState;
use crate::api::{ApiPath, ApiQuery, BodyProblems, Problems};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::views::{TrustLevelView, VersionView};

/// A registered signing key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SigningKeyView {
    /// The key's id as minisign shows it (16 uppercase hex digits).
    pub id: String,
    /// The developer it is registered to: it vouches for their plugins.
    pub owner: String,
    /// A name for people.
    pub name: String,
    /// The public key (minisign's base64 line).
    pub public_key: String,
    /// Registered, Unix ms.
    pub created_at: i64,
    /// Revoked, Unix ms: versions it signed are no longer trusted.
    pub revoked_at: Option<i64>,
}

impl From<SigningKey> for SigningKeyView {
    fn from(k: SigningKey) -> Self {
        SigningKeyView {
            id: k.id,
            owner: k.owner,
            name: k.name,
            public_key: k.public_key,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A key to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSigningKey {
    /// A name for people: 1–100 characters, no control characters, not
    /// only white space.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    /// A minisign Ed25519 public key: its base64 line (`RW…`, 56
    /// characters), or the whole `.pub` file (an `untrusted comment:` line,
    /// then that line).
    #[schema(
        min_length = 56,
        max_length = 400,
        pattern = r"^(untrusted comment: [^\n]*\n)?RW[Q-T][A-Za-z0-9+/]{53}\n?$"
    )]
    pub public_key: String,
}

/// Filters for listing keys.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SigningKeyQuery {
    /// Only this owner's (admins; developers always see their own).
    pub owner: Option<String>,
}

/// A signature to attach.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureBody {
    /// The text of a `.minisig` file: a minisign signature of the
    /// package's SHA-256 as 64 lowercase hex digits without a newline.
    #[schema(min_length = 1, max_length = 2000)]
    pub signature: String,
}

/// How to approve.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// `untrusted` (the default: the jail only) or `trusted` (needs a valid
    /// signature by a live key registered to the plugin's owner).
    pub trust_level: Option<TrustLevelView>,
}

/// Register a signing key for the plugins you own (developer or admin).
#[utoipa::path(post, path = "/v1/signing-keys", tag = "signing",
    request_body = NewSigningKey,
    responses((status = 201, body = SigningKeyView), BodyProblems), security(("api_key" = [])))]
pub async fn register_signing_key(
    State(s): State<AppState>,
    p: Principal,
    body: Bytes,
) -> Result<(StatusCode, Json<SigningKeyView>), ApiError> {
    p.require_developer()?;
    let body: NewSigningKey = json_body(&body)?;
    let key = s
        .registry
        .register_signing_key(&p.actor, &body.name, &body.public_key)
        .await?;
    Ok((StatusCode::CREATED, Json(key.into())))
}

/// Signing keys: your own (developers); anyone's (admins).
#[utoipa::path(get, path = "/v1/signing-keys", tag = "signing", params(SigningKeyQuery),
    responses((status = 200, body = Vec<SigningKeyView>), Problems), security(("api_key" = [])))]
pub async fn list_signing_keys(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<SigningKeyQuery>,
) -> Result<Json<Vec<SigningKeyView>>, ApiError> {
    p.require_developer()?;
    let keys = s.registry.signing_keys(&p.actor, q.owner.as_deref()).await?;
    Ok(Json(keys.into_iter().map(Into::into).collect()))
}

/// Revoke a signing key (its owner or an admin): every version it signed
/// stops being trusted at once (it stays callable where untrusted code
/// runs: the jail).
#[utoipa::path(delete, path = "/v1/signing-keys/{id}", tag = "signing",
    params(("id" = String, Path, description = "Key id", pattern = "^[0-9A-F]{16}$")),
    responses((status = 204, description = "Revoked"), Problems), security(("api_key" = [])))]
pub async fn revoke_signing_key(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    p.require_developer()?;
    let demoted = s.registry.revoke_signing_key(&p.actor, &id).await?;
    tracing::info!(key = %id, demoted, "a signing key was revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Attach a signature to a draft or pending version (owner or admin): by a
/// registered, live key of the plugin's owner, over this version's package
/// hash; checked now, again at approval as trusted and whenever the code
/// is loaded.
#[utoipa::path(put, path = "/v1/plugins/{code}/versions/{version}/signature", tag = "signing",
    params(("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128), ("version" = String, Path, description = "Semantic version", pattern = "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$", max_length = 64)),
    request_body = SignatureBody,
    responses((status = 200, body = VersionView), BodyProblems), security(("api_key" = [])))]
pub async fn sign_version(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((code, version)): ApiPath<(String, String)>,
    body: Bytes,
) -> Result<Json<VersionView>, ApiError> {
    p.require_developer()?;
    crate::api::owned_plugin(&s, &p, &code).await?;
    let body: SignatureBody = json_body(&body)?;
    let v = s
        .registry
        .sign(&p.actor, &code, &version, &body.signature)
        .await?;
    Ok(Json(v.into()))
}

/// Approve a pending version: apps can now call it (admin). With
/// `{"trust_level": "trusted"}` it may also use the in-process wasm tier;
/// that needs a valid signature by a live key registered to the plugin's
/// owner (there is no other way to trust code). No body: untrusted.
#[utoipa::path(post, path = "/v1/plugins/{code}/versions/{version}/approve", tag = "plugins",
    params(("code" = String, Path, description = "Plugin code", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){2,}$", max_length = 128), ("version" = String, Path, description = "Semantic version", pattern = "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$", max_length = 64)),
    request_body(content = Option<ApproveBody>, content_type = "application/json", description = "Optional: the trust level"),
    responses((status = 200, body = VersionView), BodyProblems), security(("api_key" = [])))]
pub async fn approve(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((code, version)): ApiPath<(String, String)>,
    body: Bytes,
) -> Result<Json<VersionView>, ApiError> {
    p.require_admin()?;
    crate::api::owned_plugin(&s, &p, &code).await?;
    let body: ApproveBody = if body.iter().all(u8::is_ascii_whitespace) {
        ApproveBody::default()
    } else {
        json_body(&body)?
    };
    let trust = match body.trust_level.unwrap_or(TrustLevelView::Untrusted) {
        TrustLevelView::Trusted => TrustLevel::Trusted,
        TrustLevelView::Untrusted => TrustLevel::Untrusted,
        TrustLevelView::Builtin => TrustLevel::Builtin,
    };
    let v = s.registry.approve_as(&p.actor, &code, &version, trust).await?;
    Ok(Json(v.into()))
}

/// A JSON body, read after the caller was authorized (so a refused caller
/// learns nothing from how its body was judged); a problem naming the
/// field otherwise.
/// A JSON request body as `T`, a wrong shape answered 422 at the field.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            // Well-formed JSON of the wrong shape: 422 naming the field.
            let location = if path == "." {
                "body".to_owned()
            } else {
                format!("/{}", path.replace('.', "/"))
            };
            ApiError::invalid(
                "invalid",
                "The request body is invalid",
                vec![crate::error::FieldError {
                    location,
                    message: inner.to_string(),
                }],
            )
        } else {
            ApiError::bad_field("body", format!("not JSON: {inner}"))
        }
    })
}
