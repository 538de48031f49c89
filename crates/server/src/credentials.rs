//! Platform-held credentials over HTTP: an app's credentials are written,
//! listed and deleted here, never read back ([`warden_core::credential`]).
//! Every write is audited (without the secret); so is every use, by the
//! executor, from the proxy's records.
//!
//! Must never: return, log or audit a secret; store one without the
//! server's `credentials.key`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use warden_core::Store as _;
use warden_core::credential::{self, Credential, CredentialKind, CredentialSpec, Keyring};
use warden_core::model::now_ms;
use warden_core::store::NewAudit;
use warden_package::hosts::IpLiterals;
use warden_runtime::EgressCredential;

use crate::AppState;
use crate::api::{ApiPath, BodyProblems, Problems};
use crate::auth::Principal;
use crate::error::{ApiError, FieldError};

/// How a credential is put into a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKindName {
    /// In a header (`header`) or a query parameter (`query`), as is.
    ApiKey,
    /// `Authorization: Bearer SECRET`.
    Bearer,
    /// `Authorization: Basic base64(username:SECRET)`.
    Basic,
    /// OAuth2 client-credentials: Warden fetches a token from `token_url`
    /// (the secret is the client secret) and sends `Authorization: Bearer
    /// TOKEN`.
    #[serde(rename = "oauth2_client_credentials")]
    Oauth2ClientCredentials,
}

/// A credential to store (or to replace the one of that name).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    /// How it is put into a request.
    pub kind: CredentialKindName,
    /// `api_key` in a header: its name (`X-Api-Key`).
    #[serde(default)]
    #[schema(max_length = 64)]
    pub header: Option<String>,
    /// `api_key` in a query parameter: its name (`api_key`).
    #[serde(default)]
    #[schema(max_length = 64)]
    pub query: Option<String>,
    /// `basic`: the user name.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub username: Option<String>,
    /// `oauth2_client_credentials`: the token endpoint, `https://`, its
    /// host one of `hosts`.
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub token_url: Option<String>,
    /// `oauth2_client_credentials`: the client id.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub client_id: Option<String>,
    /// `oauth2_client_credentials`: the `scope` asked for (optional).
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub scope: Option<String>,
    /// `oauth2_client_credentials`: the `audience` asked for (optional).
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub audience: Option<String>,
    /// The secret (the key, the token, the password, the OAuth2 client
    /// secret). Written, never read back: no answer, log or audit event
    /// holds it.
    #[schema(min_length = 1, max_length = 8192, write_only)]
    pub secret: String,
    /// The hosts it may be sent to, `host[:port]` (a plugin's request to
    /// any other host never carries it).
    #[schema(min_items = 1, max_items = 16)]
    pub hosts: Vec<String>,
}

/// A stored credential, without its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialView {
    /// The app it belongs to.
    pub app: String,
    /// The plugin whose installation it belongs to; null: the app's own.
    pub installation: Option<String>,
    /// Its name, as manifests list it.
    pub name: String,
    /// How it is put into a request.
    pub kind: CredentialKindName,
    /// `api_key` in a header: its name.
    pub header: Option<String>,
    /// `api_key` in a query parameter: its name.
    pub query: Option<String>,
    /// `basic`: the user name.
    pub username: Option<String>,
    /// `oauth2_client_credentials`: the token endpoint.
    pub token_url: Option<String>,
    /// `oauth2_client_credentials`: the client id.
    pub client_id: Option<String>,
    /// `oauth2_client_credentials`: the scope asked for.
    pub scope: Option<String>,
    /// `oauth2_client_credentials`: the audience asked for.
    pub audience: Option<String>,
    /// The hosts it may be sent to.
    pub hosts: Vec<String>,
    /// The id of the key that sealed its secret (rotation: see
    /// docs/capabilities.md).
    pub key_id: String,
    /// First stored, Unix ms.
    pub created_at: i64,
    /// Last written, Unix ms.
    pub updated_at: i64,
}

impl From<Credential> for CredentialView {
    fn from(c: Credential) -> Self {
        let (mut token_url, mut client_id, mut scope, mut audience) = (None, None, None, None);
        let (kind, header, query, username) = match c.spec.kind {
            CredentialKind::ApiKey { header, query } => (CredentialKindName::ApiKey, header, query, None),
            CredentialKind::Bearer => (CredentialKindName::Bearer, None, None, None),
            CredentialKind::Basic { username } => (CredentialKindName::Basic, None, None, Some(username)),
            CredentialKind::OAuth2ClientCredentials {
                token_url: t,
                client_id: i,
                scope: s,
                audience: a,
            } => {
                (token_url, client_id, scope, audience) = (Some(t), Some(i), s, a);
                (CredentialKindName::Oauth2ClientCredentials, None, None, None)
            }
        };
        CredentialView {
            app: c.app,
            installation: c.plugin,
            name: c.name,
            kind,
            header,
            query,
            username,
            token_url,
            client_id,
            scope,
            audience,
            hosts: c.spec.hosts,
            key_id: c.key_id,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

impl CredentialBody {
    /// The definition it asks for; fields another kind uses are refused at
    /// their pointers.
    fn spec(&self) -> Result<CredentialSpec, Vec<FieldError>> {
        let unused = |field: &str, v: &Option<String>| {
            v.as_ref().map(|_| FieldError {
                location: format!("/{field}"),
                message: format!("not used by kind `{}`", kind_name(self.kind)),
            })
        };
        let oauth_fields = [
            ("token_url", &self.token_url),
            ("client_id", &self.client_id),
            ("scope", &self.scope),
            ("audience", &self.audience),
        ];
        let oauth_unused: Vec<FieldError> = if self.kind == CredentialKindName::Oauth2ClientCredentials {
            Vec::new()
        } else {
            oauth_fields.iter().filter_map(|(f, v)| unused(f, v)).collect()
        };
        let (kind, mut errors): (CredentialKind, Vec<FieldError>) = match self.kind {
            CredentialKindName::ApiKey => (
                CredentialKind::ApiKey {
                    header: self.header.clone(),
                    query: self.query.clone(),
                },
                unused("username", &self.username).into_iter().collect(),
            ),
            CredentialKindName::Bearer => (
                CredentialKind::Bearer,
                [
                    unused("header", &self.header),
                    unused("query", &self.query),
                    unused("username", &self.username),
                ]
                .into_iter()
                .flatten()
                .collect(),
            ),
            CredentialKindName::Basic => {
                let mut e: Vec<FieldError> = [unused("header", &self.header), unused("query", &self.query)]
                    .into_iter()
                    .flatten()
                    .collect();
                if self.username.is_none() {
                    e.push(FieldError {
                        location: "/username".into(),
                        message: "required by kind `basic`".into(),
                    });
                }
                (
                    CredentialKind::Basic {
                        username: self.username.clone().unwrap_or_default(),
                    },
                    e,
                )
            }
            CredentialKindName::Oauth2ClientCredentials => {
                let mut e: Vec<FieldError> = [
                    unused("header", &self.header),
                    unused("query", &self.query),
                    unused("username", &self.username),
                ]
                .into_iter()
                .flatten()
                .collect();
                for (field, v) in &oauth_fields[..2] {
                    if v.is_none() {
                        e.push(FieldError {
                            location: format!("/{field}"),
                            message: "required by kind `oauth2_client_credentials`".into(),
                        });
                    }
                }
                (
                    CredentialKind::OAuth2ClientCredentials {
                        token_url: self.token_url.clone().unwrap_or_default(),
                        client_id: self.client_id.clone().unwrap_or_default(),
                        scope: self.scope.clone(),
                        audience: self.audience.clone(),
                    },
                    e,
                )
            }
        };
        errors.extend(oauth_unused);
        if errors.is_empty() {
            Ok(CredentialSpec {
                kind,
                hosts: self.hosts.clone(),
            })
        } else {
            Err(errors)
        }
    }
}

fn kind_name(k: CredentialKindName) -> &'static str {
    match k {
        CredentialKindName::ApiKey => "api_key",
        CredentialKindName::Bearer => "bearer",
        CredentialKindName::Basic => "basic",
        CredentialKindName::Oauth2ClientCredentials => "oauth2_client_credentials",
    }
}

fn invalid(errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid("invalid-credential", "The credential is invalid", errors)
}

/// The app, or 404 (after the caller was authorized for it).
async fn app_exists(s: &AppState, app: &str) -> Result<(), ApiError> {
    s.store
        .get_app(app)
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found(format!("no app `{app}`")))
}

fn audit(p: &Principal, action: &str, detail: serde_json::Value) -> NewAudit {
    NewAudit {
        actor: p.actor.name.clone(),
        action: action.into(),
        plugin: None,
        version: None,
        from_status: None,
        to_status: None,
        reason: None,
        detail,
    }
}

fn no_key() -> ApiError {
    ApiError::conflict_of(
        "credentials-disabled",
        "This server stores no credentials",
        credential::CredentialError::NoKey.to_string(),
    )
}

/// The app, and the installation of `plugin` in it when given, or 404
/// (after the caller was authorized for the app).
async fn scope_exists(s: &AppState, app: &str, plugin: Option<&str>) -> Result<(), ApiError> {
    app_exists(s, app).await?;
    if let Some(plugin) = plugin {
        s.store
            .get_installation(app, plugin)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("app `{app}` has no installation of `{plugin}`")))?;
    }
    Ok(())
}

/// Where a credential is, for messages: `app `a`` or `app `a`'s installation of `p``.
fn owner(app: &str, plugin: Option<&str>) -> String {
    match plugin {
        None => format!("app `{app}`"),
        Some(p) => format!("app `{app}`'s installation of `{p}`"),
    }
}

/// Store a credential of an app or of one of its installations: checked,
/// sealed, audited (never with the secret).
async fn put_in(
    s: &AppState,
    p: &Principal,
    app: String,
    plugin: Option<String>,
    name: String,
    body: &Bytes,
) -> Result<(StatusCode, Json<CredentialView>), ApiError> {
    p.require_app(&app)?;
    scope_exists(s, &app, plugin.as_deref()).await?;
    if s.credentials.current_id().is_none() {
        return Err(no_key());
    }
    let body: CredentialBody = crate::signing::json_body(body)?;
    let mut errors = Vec::new();
    if let Err(e) = credential::check_name(&name) {
        errors.push(FieldError {
            location: "path:name".into(),
            message: e,
        });
    }
    let spec = match body.spec() {
        Ok(spec) => Some(spec),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    let ip = if s.config.policy.network_ip_literals {
        IpLiterals::Allowed
    } else {
        IpLiterals::Refused
    };
    if let Some(spec) = &spec {
        errors.extend(
            credential::check(spec, &body.secret, ip)
                .into_iter()
                .map(|(location, message)| FieldError { location, message }),
        );
    }
    let (Some(spec), true) = (spec, errors.is_empty()) else {
        return Err(invalid(errors));
    };
    let (key_id, sealed) = s
        .credentials
        .seal(&app, plugin.as_deref(), &name, &spec, &body.secret)
        .map_err(|e| match e {
            credential::CredentialError::NoKey => no_key(),
            e => ApiError::internal(&e),
        })?;
    let now = now_ms();
    let mut detail =
        json!({"app": app, "name": name, "kind": spec.kind.as_str(), "hosts": spec.hosts, "key_id": key_id});
    if let Some(plugin) = &plugin {
        detail["installation"] = json!(plugin);
    }
    let c = Credential {
        app: app.clone(),
        plugin: plugin.clone(),
        name: name.clone(),
        spec,
        key_id,
        sealed,
        created_at: now,
        updated_at: now,
    };
    let created = s
        .store
        .put_credential(c, audit(p, "credential_put", detail))
        .await?;
    let stored = match &plugin {
        None => s.store.get_credential(&app, &name).await?,
        Some(plugin) => s.store.get_installation_credential(&app, plugin, &name).await?,
    }
    .ok_or_else(|| ApiError::internal(&"a credential just stored is gone"))?;
    tracing::info!(app = %app, installation = ?plugin, credential = %name, created, "a credential was stored");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored.into())))
}

/// The key an OAuth2 credential's token is cached under: the app, the
/// installation's plugin (empty for the app's own) and the name.
fn token_key(app: &str, within: &str, name: &str) -> String {
    format!("{app}\0{within}\0{name}")
}

/// Forgets the cached OAuth2 tokens of `app`'s installation of `plugin`
/// (its credentials are deleted with it).
pub(crate) fn forget_installation_tokens(app: &str, plugin: &str) {
    warden_egress::forget_oauth2_tokens_under(&format!("{app}\0{plugin}\0"));
}

/// Delete a credential of an app or of one of its installations, audited.
async fn delete_in(
    s: &AppState,
    p: &Principal,
    app: String,
    plugin: Option<String>,
    name: String,
) -> Result<StatusCode, ApiError> {
    p.require_app(&app)?;
    let mut detail = json!({"app": app, "name": name});
    if let Some(plugin) = &plugin {
        detail["installation"] = json!(plugin);
    }
    let a = audit(p, "credential_delete", detail);
    let done = match &plugin {
        None => s.store.delete_credential(&app, &name, a).await?,
        Some(plugin) => {
            s.store
                .delete_installation_credential(&app, plugin, &name, a)
                .await?
        }
    };
    if !done {
        return Err(ApiError::not_found(format!(
            "{} has no credential `{name}`",
            owner(&app, plugin.as_deref())
        )));
    }
    // Its OAuth2 token (if it had one) leaves the cache with it: the key is
    // the one `for_call` caches it under.
    warden_egress::forget_oauth2_token(&token_key(&app, plugin.as_deref().unwrap_or(""), &name));
    tracing::info!(app = %app, installation = ?plugin, credential = %name, "a credential was deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Store a credential for an app, or replace the one of that name (admin,
/// or the app's own key). The secret is sealed with the server's key and
/// never returned.
#[utoipa::path(put, path = "/v1/apps/{app}/credentials/{name}", tag = "credentials",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$"),
        ("name" = String, Path, description = "Credential name", pattern = "^[a-z][a-z0-9_-]{0,63}$")),
    request_body = CredentialBody,
    responses((status = 201, description = "Stored", body = CredentialView),
        (status = 200, description = "Replaced", body = CredentialView), BodyProblems),
    security(("api_key" = [])))]
pub async fn put_credential(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((app, name)): ApiPath<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<CredentialView>), ApiError> {
    put_in(&s, &p, app, None, name, &body).await
}

/// An app's credentials: names, kinds and hosts, never secrets (admin, or
/// the app's own key).
#[utoipa::path(get, path = "/v1/apps/{app}/credentials", tag = "credentials",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$")),
    responses((status = 200, body = Vec<CredentialView>), Problems), security(("api_key" = [])))]
pub async fn list_credentials(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(app): ApiPath<String>,
) -> Result<Json<Vec<CredentialView>>, ApiError> {
    p.require_app(&app)?;
    app_exists(&s, &app).await?;
    let all = s.store.list_credentials(&app).await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

/// One credential of an app, without its secret (admin, or the app's own
/// key).
#[utoipa::path(get, path = "/v1/apps/{app}/credentials/{name}", tag = "credentials",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$"),
        ("name" = String, Path, description = "Credential name", pattern = "^[a-z][a-z0-9_-]{0,63}$")),
    responses((status = 200, body = CredentialView), Problems), security(("api_key" = [])))]
pub async fn get_credential(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((app, name)): ApiPath<(String, String)>,
) -> Result<Json<CredentialView>, ApiError> {
    p.require_app(&app)?;
    let c = s
        .store
        .get_credential(&app, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app `{app}` has no credential `{name}`")))?;
    Ok(Json(c.into()))
}

/// Delete a credential (admin, or the app's own key): later calls get no
/// secret; a running call keeps the one its box was given.
#[utoipa::path(delete, path = "/v1/apps/{app}/credentials/{name}", tag = "credentials",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$"),
        ("name" = String, Path, description = "Credential name", pattern = "^[a-z][a-z0-9_-]{0,63}$")),
    responses((status = 204, description = "Deleted"), Problems), security(("api_key" = [])))]
pub async fn delete_credential(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((app, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_in(&s, &p, app, None, name).await
}

/// Store a credential for an app's installation of a plugin, or replace
/// the one of that name (admin, or the app's own key). Calls of that
/// plugin in that app use it before the app's credential of the same name.
/// The secret is sealed and never returned.
#[utoipa::path(put, path = "/v1/apps/{app}/installations/{plugin}/credentials/{name}", tag = "credentials",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$"),
        ("plugin" = String, Path, description = "Plugin code of the installation"),
        ("name" = String, Path, description = "Credential name", pattern = "^[a-z][a-z0-9_-]{0,63}$")),
    request_body = CredentialBody,
    responses((status = 201, description = "Stored", body = CredentialView),
        (status = 200, description = "Replaced", body = CredentialView), BodyProblems),
    security(("api_key" = [])))]
pub async fn put_installation_credential(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((app, plugin, name)): ApiPath<(String, String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<CredentialView>), ApiError> {
    put_in(&s, &p, app, Some(plugin), name, &body).await
}

/// The credentials of an app's installation of a plugin, never secrets
/// (admin, or the app's own key).
#[utoipa::path(get, path = "/v1/apps/{app}/installations/{plugin}/credentials", tag = "credentials",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$"),
        ("plugin" = String, Path, description = "Plugin code of the installation")),
    responses((status = 200, body = Vec<CredentialView>), Problems), security(("api_key" = [])))]
pub async fn list_installation_credentials(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((app, plugin)): ApiPath<(String, String)>,
) -> Result<Json<Vec<CredentialView>>, ApiError> {
    p.require_app(&app)?;
    scope_exists(&s, &app, Some(&plugin)).await?;
    let all = s.store.list_installation_credentials(&app, &plugin).await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

/// One credential of an app's installation of a plugin, without its secret
/// (admin, or the app's own key).
#[utoipa::path(get, path = "/v1/apps/{app}/installations/{plugin}/credentials/{name}", tag = "credentials",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$"),
        ("plugin" = String, Path, description = "Plugin code of the installation"),
        ("name" = String, Path, description = "Credential name", pattern = "^[a-z][a-z0-9_-]{0,63}$")),
    responses((status = 200, body = CredentialView), Problems), security(("api_key" = [])))]
pub async fn get_installation_credential(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((app, plugin, name)): ApiPath<(String, String, String)>,
) -> Result<Json<CredentialView>, ApiError> {
    p.require_app(&app)?;
    let c = s
        .store
        .get_installation_credential(&app, &plugin, &name)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{} has no credential `{name}`",
                owner(&app, Some(&plugin))
            ))
        })?;
    Ok(Json(c.into()))
}

/// Delete a credential of an app's installation of a plugin (admin, or the
/// app's own key): later calls fall back to the app's credential of that
/// name, if any.
#[utoipa::path(delete, path = "/v1/apps/{app}/installations/{plugin}/credentials/{name}", tag = "credentials",
    params(("app" = String, Path, description = "App id", pattern = "^[a-z][a-z0-9-]{1,62}$"),
        ("plugin" = String, Path, description = "Plugin code of the installation"),
        ("name" = String, Path, description = "Credential name", pattern = "^[a-z][a-z0-9_-]{0,63}$")),
    responses((status = 204, description = "Deleted"), Problems), security(("api_key" = [])))]
pub async fn delete_installation_credential(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((app, plugin, name)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_in(&s, &p, app, Some(plugin), name).await
}

/// The credentials a call of `plugin` declaring `names` carries into its
/// box's proxy (or the HTTP tool's client), each the app's installation of
/// `plugin`'s credential of that name if it has one, else the app's,
/// opened from the store, with a fingerprint of what they
/// are (name, key, last write) for the warm pool's key: a credential
/// rewritten is never served by a box holding the old one. A declared name
/// the app has not stored is left out (the plugin's request naming it is
/// refused by the proxy, saying so); one that does not open is logged and
/// left out.
pub(crate) async fn for_call(
    store: &warden_store::SqlStore,
    keyring: &Keyring,
    app: &str,
    plugin: &str,
    names: &[String],
) -> Result<(Vec<(EgressCredential, CredentialKind)>, String), ApiError> {
    let mut out = Vec::new();
    let mut print = String::new();
    for name in names {
        // The installation's first, then the app's.
        let c = match store.get_installation_credential(app, plugin, name).await? {
            Some(c) => c,
            None => match store.get_credential(app, name).await? {
                Some(c) => c,
                None => continue,
            },
        };
        let within = c.plugin.as_deref().unwrap_or("");
        let secret = match keyring.open(&c) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(app = %app, credential = %name, error = %e, "a credential could not be opened; the call runs without it");
                continue;
            }
        };
        let made = match &c.spec.kind {
            CredentialKind::ApiKey { header: Some(h), .. } => {
                EgressCredential::header(name, &c.spec.hosts, h, secret.expose())
            }
            CredentialKind::ApiKey { query, .. } => EgressCredential::query(
                name,
                &c.spec.hosts,
                query.as_deref().unwrap_or("api_key"),
                secret.expose(),
            ),
            CredentialKind::Bearer => EgressCredential::header(
                name,
                &c.spec.hosts,
                "authorization",
                &format!("Bearer {}", secret.expose()),
            ),
            CredentialKind::Basic { username } => {
                use base64::Engine as _;
                let pair = format!("{username}:{}", secret.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair.as_bytes());
                EgressCredential::header(name, &c.spec.hosts, "authorization", &format!("Basic {encoded}"))
                    .map(|m| m.redacting(&encoded))
            }
            // The token is fetched by the proxy or the client when a request
            // names it, cached per app and name, and forgotten when the
            // credential is rewritten (its key and last write change) or
            // deleted (`delete_in`).
            CredentialKind::OAuth2ClientCredentials {
                token_url,
                client_id,
                scope,
                audience,
            } => EgressCredential::oauth2(
                name,
                &c.spec.hosts,
                warden_egress::OAuth2 {
                    token_url: token_url.clone(),
                    client_id: client_id.clone(),
                    client_secret: secret.expose().to_owned(),
                    scope: scope.clone(),
                    audience: audience.clone(),
                },
                &token_key(app, within, name),
                &format!("{}:{}", c.key_id, c.updated_at),
            ),
        };
        // Warden's own client scrubs the raw secret from what it returns.
        match made.map(|m| m.redacting(secret.expose())) {
            Ok(m) => {
                print.push_str(&format!("{name}:{within}:{}:{};", c.key_id, c.updated_at));
                out.push((m, c.spec.kind.clone()));
            }
            Err(e) => {
                tracing::error!(app = %app, credential = %name, error = %e, "a stored credential is unusable; the call runs without it");
            }
        }
    }
    Ok((out, print))
}
