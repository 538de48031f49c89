//! API keys: `wk_` + 40 hex digits of randomness, shown once; the store
//! keeps only their SHA-256. A request names its key with
//! `Authorization: Bearer wk_…` (or `X-Api-Key`). Checked keys are cached
//! for `key_cache_secs`; revoking through this node clears the cache at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use warden_core::model::{hex, new_id, now_ms};
use warden_core::{Actor, ApiKey, NewAudit, Revoked, Role, Store};
use warden_store::SqlStore;

use crate::AppState;
use crate::error::ApiError;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Who, with which role.
    pub actor: Actor,
    /// The key used.
    pub key_id: String,
}

/// SHA-256 of a key, hex: what the store keeps.
pub fn hash_key(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    // /dev/urandom does not fail on Linux once opened; a failure here is a
    // broken host, and a key must never be predictable.
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("reading /dev/urandom");
    hex(&buf)
}

/// A key's name trimmed of white space, if it is 1 to 64 characters with
/// no control characters: the rule `views::KEY_NAME_PATTERN` states.
pub fn valid_name(name: &str) -> Option<&str> {
    let name = name.trim();
    let n = name.chars().count();
    ((1..=64).contains(&n) && !name.chars().any(char::is_control)).then_some(name)
}

/// Create a key for `name` with `role` (and `app` for app keys). Returns the
/// stored record and the secret, which exists nowhere else.
pub async fn create_key(
    store: &SqlStore,
    by: &str,
    name: &str,
    role: Role,
    app: Option<&str>,
) -> Result<(ApiKey, String), ApiError> {
    let Some(name) = valid_name(name) else {
        return Err(ApiError::bad_field("/name", "1 to 64 printable characters"));
    };
    if role == Role::App {
        let Some(a) = app else {
            return Err(ApiError::bad_field(
                "/app",
                "an app key needs the app it calls for",
            ));
        };
        if store.get_app(a).await?.is_none() {
            return Err(ApiError::not_found(format!("no app `{a}`")));
        }
    } else if app.is_some() {
        return Err(ApiError::bad_field("/app", "only app keys belong to an app"));
    }
    let secret = format!("wk_{}", random_hex(20));
    let key = ApiKey {
        id: new_id("key"),
        name: if role == Role::App {
            app.unwrap_or(name).to_owned()
        } else {
            name.to_owned()
        },
        role,
        app: app.map(str::to_owned),
        hash: hash_key(&secret),
        created_at: now_ms(),
        revoked_at: None,
    };
    let audit = NewAudit {
        actor: by.to_owned(),
        action: "create_key".into(),
        detail: serde_json::json!({"key": key.id, "name": key.name, "role": role.as_str(), "app": key.app}),
        ..Default::default()
    };
    store.insert_key(key.clone(), audit).await?;
    Ok((key, secret))
}

/// Revoke the live key `id` for `by`, refusing (409) to revoke the last
/// live admin key: that would leave no one able to manage the server
/// through the API (an API fuzzer once revoked the key it was using).
pub async fn revoke_key(store: &SqlStore, by: &str, id: &str) -> Result<(), ApiError> {
    let audit = NewAudit {
        actor: by.to_owned(),
        action: "revoke_key".into(),
        detail: serde_json::json!({"key": id}),
        ..Default::default()
    };
    // One atomic statement in the store: several nodes revoking the last two
    // admin keys at once still leave one.
    match store.revoke_key_keeping_an_admin(id, audit).await? {
        Revoked::Done => Ok(()),
        Revoked::NotFound => Err(ApiError::not_found(format!("no live key {id}"))),
        Revoked::LastAdmin => Err(ApiError::conflict_of(
            "last-admin-key",
            "The last admin key cannot be revoked",
            format!(
                "{id} is the last live admin key: revoking it would lock every admin out. \
                 Create another admin key first (`warden admin create-key --role admin` on the \
                 server's machine, or POST /v1/keys), then revoke this one"
            ),
        )),
    }
}

/// Remembers checked keys for a short while.
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (ApiKey, Instant)>>,
}

impl KeyCache {
    /// A cache keeping keys for `ttl`.
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ApiKey, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live key with this secret, if any.
    pub async fn check(&self, store: &SqlStore, secret: &str) -> Result<Option<ApiKey>, ApiError> {
        let hash = hash_key(secret);
        if let Some((key, at)) = self.lock().get(&hash)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(key.clone()));
        }
        let found = store.find_key_by_hash(&hash).await?;
        let mut cache = self.lock();
        match &found {
            Some(key) => {
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(hash, (key.clone(), Instant::now()));
            }
            None => {
                cache.remove(&hash);
            }
        }
        Ok(found)
    }

    /// Forget everything (after a revocation).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let (scheme, rest) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim());
    }
    parts.headers.get("x-api-key")?.to_str().ok().map(str::trim)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(secret) = bearer(parts) else {
            return Err(ApiError::unauthorized(
                "send an API key as `Authorization: Bearer wk_…` (`warden admin create-key` makes one)",
            ));
        };
        if !secret.starts_with("wk_") || secret.len() > 128 {
            return Err(ApiError::unauthorized(
                "the API key is malformed (keys start with `wk_`)",
            ));
        }
        let key = state
            .keys
            .check(&state.store, secret)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the API key is unknown or revoked"))?;
        Ok(Principal {
            actor: Actor {
                name: key.name.clone(),
                role: key.role,
                app: key.app.clone(),
            },
            key_id: key.id,
        })
    }
}

impl Principal {
    /// Admins only.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.actor.role {
            Role::Admin => Ok(()),
            _ => Err(ApiError::forbidden(format!(
                "this needs an admin key; this key's role is {}",
                self.actor.role.as_str()
            ))),
        }
    }

    /// Admins and plugin developers.
    pub fn require_developer(&self) -> Result<(), ApiError> {
        match self.actor.role {
            Role::Admin | Role::Developer => Ok(()),
            Role::App => Err(ApiError::forbidden("app keys cannot manage plugins")),
        }
    }

    /// Admins and the app itself.
    pub fn require_app(&self, app: &str) -> Result<(), ApiError> {
        match (&self.actor.role, &self.actor.app) {
            (Role::Admin, _) => Ok(()),
            (Role::App, Some(own)) if own == app => Ok(()),
            (Role::App, _) => Err(ApiError::forbidden(format!(
                "this key belongs to another app, not `{app}`"
            ))),
            (Role::Developer, _) => Err(ApiError::forbidden("this needs the app's key or an admin key")),
        }
    }

    /// Whether this key may see a plugin owned by `owner`: admins, and the
    /// developer who owns it. Callers answer "not found" otherwise, never
    /// naming the owner.
    pub fn may_see_plugin(&self, owner: &str) -> bool {
        match self.actor.role {
            Role::Admin => true,
            Role::Developer => self.actor.name == owner,
            Role::App => false,
        }
    }
}
