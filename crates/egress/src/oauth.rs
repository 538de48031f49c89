//! OAuth2 client-credentials (RFC 6749 §4.4): Warden fetches the access
//! token itself, from the credential's token endpoint, through its own
//! client ([`crate::client`]) under the caller's address rules but with an
//! allow-list of the token host alone, and puts `Authorization: Bearer
//! TOKEN` into the request.
//!
//! Tokens are cached in memory per credential (by the caller's key and the
//! credential's fingerprint: a rewritten credential starts afresh), refreshed
//! before `expires_in` runs out (a quarter of the lifetime early, at most 30
//! s), and dropped when an upstream answers `401` with the token. One
//! asynchronous lock per credential coalesces refreshes: N callers needing a
//! token cause one token request.
//!
//! Must never: store, log or record a token or the client secret (the
//! secret goes in the token request's form body, to the token host only);
//! fetch a token from a host the credential is not bound to.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap, HeaderValue};

use crate::client::{self, Fetched};
use crate::host::Target;
use crate::policy::{AllowRule, Policy};
use crate::record::{ConnectionRecord, Reason, Refusal};

/// How long a token request may take.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest token response read.
const TOKEN_RESPONSE_MAX: usize = 64 * 1024;
/// The lifetime assumed when the endpoint gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The longest lifetime believed.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// An OAuth2 client-credentials definition, as the caller opened it.
#[derive(Clone)]
pub struct OAuth2 {
    /// The token endpoint (`https://auth.example.com/oauth/token`).
    pub token_url: String,
    /// The client id (not secret).
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// The `scope` asked for, if any.
    pub scope: Option<String>,
    /// The `audience` asked for, if any (Auth0 and others).
    pub audience: Option<String>,
}

impl std::fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Drop for OAuth2 {
    fn drop(&mut self) {
        // Overwrite the secret's bytes in place before the memory is freed.
        let zeroed = "\0".repeat(self.client_secret.len());
        self.client_secret.replace_range(.., &zeroed);
    }
}

/// A token in the cache.
#[derive(Clone)]
pub(crate) struct Token {
    /// The raw token.
    pub raw: String,
    /// `Bearer TOKEN`, marked sensitive.
    pub value: HeaderValue,
    refresh_at: Instant,
}

/// One credential's cached token; its lock coalesces refreshes.
struct Cell {
    fingerprint: String,
    token: tokio::sync::Mutex<Option<Token>>,
    /// The last tokens issued, for scrubbing what the client returns.
    issued: Mutex<Vec<String>>,
}

/// Every credential's cell, by the caller's key.
static CACHE: LazyLock<Mutex<HashMap<String, Arc<Cell>>>> = LazyLock::new(Default::default);

fn cell_for(key: &str, fingerprint: &str) -> Arc<Cell> {
    let mut all = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    match all.get(key) {
        Some(c) if c.fingerprint == fingerprint => c.clone(),
        _ => {
            let c = Arc::new(Cell {
                fingerprint: fingerprint.to_owned(),
                token: tokio::sync::Mutex::new(None),
                issued: Mutex::new(Vec::new()),
            });
            all.insert(key.to_owned(), c.clone());
            c
        }
    }
}

/// Forgets the cached OAuth2 token of the credential cached under `key`
/// (the `key` given to [`crate::Credential::oauth2`]): for a credential
/// that was deleted, so that its token does not wait in memory for a
/// credential of the same name to be written again. A call still holding
/// the credential finishes with it. Returns whether one was cached.
pub fn forget_oauth2_token(key: &str) -> bool {
    forget_where(|k| k == key) > 0
}

/// Forgets the cached tokens of every credential whose key starts with
/// `prefix` (an uninstalled installation's, say); returns how many.
pub fn forget_oauth2_tokens_under(prefix: &str) -> usize {
    forget_where(|k| k.starts_with(prefix))
}

fn forget_where(which: impl Fn(&str) -> bool) -> usize {
    let gone: Vec<Arc<Cell>> = {
        let mut all = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<String> = all.keys().filter(|k| which(k)).cloned().collect();
        keys.iter().filter_map(|k| all.remove(k)).collect()
    };
    for cell in &gone {
        // A refresh under way holds the lock; its token goes with the
        // cell when the last call holding it ends.
        if let Ok(mut t) = cell.token.try_lock() {
            *t = None;
        }
    }
    gone.len()
}

/// Whether a token is cached under `key` (for tests of the cache).
pub fn oauth2_token_cached(key: &str) -> bool {
    let all = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    all.get(key)
        .is_some_and(|c| c.token.try_lock().map_or(true, |t| t.is_some()))
}

/// A credential's token source.
pub(crate) struct Source {
    name: String,
    def: OAuth2,
    token_target: Target,
    token_rule: AllowRule,
    cell: Arc<Cell>,
}

impl PartialEq for Source {
    fn eq(&self, other: &Source) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }
}

impl Eq for Source {}

impl Source {
    /// The source for credential `name`; `target` is the token URL's,
    /// already checked against the credential's hosts. `key` names the
    /// credential across calls (app and name), `fingerprint` what it is
    /// (its last write): a new fingerprint drops the cached token.
    pub(crate) fn new(
        name: &str,
        def: OAuth2,
        target: Target,
        key: &str,
        fingerprint: &str,
    ) -> Result<Source, String> {
        let token_rule: AllowRule = target.to_string().parse()?;
        let fingerprint = format!(
            "{fingerprint}\0{}\0{}\0{:?}\0{:?}",
            def.token_url, def.client_id, def.scope, def.audience
        );
        Ok(Source {
            name: name.to_owned(),
            cell: cell_for(key, &fingerprint),
            def,
            token_target: target,
            token_rule,
        })
    }

    /// The token endpoint, for `Debug`.
    pub(crate) fn token_url(&self) -> &str {
        &self.def.token_url
    }

    /// The tokens issued lately and the client secret: forms to scrub.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut out = self.cell.issued.lock().unwrap_or_else(|p| p.into_inner()).clone();
        out.push(self.def.client_secret.clone());
        out
    }

    /// A valid token: the cached one, or a fresh one fetched under
    /// `policy`'s address rules (one fetch for all concurrent callers). The
    /// records are those of the token request, if one was made.
    pub(crate) async fn token(&self, policy: &Policy) -> (Result<Token, Refusal>, Vec<ConnectionRecord>) {
        let mut slot = self.cell.token.lock().await;
        if let Some(t) = slot.as_ref()
            && Instant::now() < t.refresh_at
        {
            return (Ok(t.clone()), Vec::new());
        }
        *slot = None;
        let fetched = self.fetch(policy).await;
        let result = self.judge(fetched.result);
        if let Ok(t) = &result {
            *slot = Some(t.clone());
            let mut issued = self.cell.issued.lock().unwrap_or_else(|p| p.into_inner());
            issued.push(t.raw.clone());
            if issued.len() > 2 {
                issued.remove(0);
            }
        }
        (result, fetched.records)
    }

    /// Drops the cached token if it is still `raw` (an upstream refused it):
    /// the next caller fetches a fresh one.
    pub(crate) async fn invalidate(&self, raw: &str) {
        let mut slot = self.cell.token.lock().await;
        if slot.as_ref().is_some_and(|t| t.raw == raw) {
            *slot = None;
        }
    }

    fn fetch(&self, policy: &Policy) -> Pin<Box<dyn Future<Output = Fetched> + Send + 'static>> {
        let mut only_token_host = policy.clone();
        only_token_host.allow = vec![self.token_rule.clone()];
        only_token_host.credentials = Vec::new();
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.def.client_id)
            .append_pair("client_secret", &self.def.client_secret);
        if let Some(s) = &self.def.scope {
            form.append_pair("scope", s);
        }
        if let Some(a) = &self.def.audience {
            form.append_pair("audience", a);
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let req = client::Request {
            method: Method::POST,
            url: self.def.token_url.clone(),
            headers,
            body: Bytes::from(form.finish()),
            credential: None,
            timeout: TOKEN_TIMEOUT,
            max_response_bytes: TOKEN_RESPONSE_MAX,
            max_redirects: 0,
        };
        client::exchange(only_token_host, req)
    }

    fn judge(&self, result: Result<client::Response, client::FetchError>) -> Result<Token, Refusal> {
        let fail = |why: String| {
            Refusal::new(
                Reason::CredentialTokenFailed,
                format!(
                    "credential `{}`: no token from its token endpoint {}: {why}",
                    self.name, self.token_target
                ),
            )
        };
        let resp = result.map_err(|e| fail(e.to_string()))?;
        if !(200..300).contains(&resp.status) {
            return Err(fail(format!("it answered {}", resp.status)));
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&resp.body).map_err(|_| fail("its answer is not JSON".into()))?;
        let raw = doc
            .get("access_token")
            .and_then(|v| v.as_str())
            .filter(|t| !t.is_empty() && t.len() <= 8192)
            .ok_or_else(|| fail("its answer has no `access_token` string".into()))?;
        if let Some(kind) = doc.get("token_type")
            && !kind.as_str().is_some_and(|k| k.eq_ignore_ascii_case("bearer"))
        {
            return Err(fail("its `token_type` is not `Bearer`".into()));
        }
        let lifetime = match doc.get("expires_in") {
            None | Some(serde_json::Value::Null) => DEFAULT_LIFETIME,
            Some(v) => match v.as_u64() {
                Some(s) => Duration::from_secs(s.max(1)).min(MAX_LIFETIME),
                None => return Err(fail("its `expires_in` is not a whole number of seconds".into())),
            },
        };
        let mut value = HeaderValue::from_str(&format!("Bearer {raw}"))
            .map_err(|_| fail("its `access_token` is not a valid header value".into()))?;
        value.set_sensitive(true);
        let early = (lifetime / 4).min(Duration::from_secs(30));
        Ok(Token {
            raw: raw.to_owned(),
            value,
            refresh_at: Instant::now() + lifetime - early,
        })
    }
}
