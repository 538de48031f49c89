//! Platform-held credentials the proxy injects: a box asks for a request
//! "with credential NAME" (an absolute-form request carrying the
//! [`CREDENTIAL_HEADER`] header) and the proxy puts the secret into it, as a
//! header or a query parameter, after the target passed the allow-list
//! *and* the credential's own hosts, and before any byte leaves. The box
//! never holds the secret; it only names it.
//!
//! Must never: put a secret into a request to a host the credential is not
//! bound to; show a secret in `Debug` or a record; follow a redirect (the
//! proxy never does: a `3xx` goes back to the box, whose next request is
//! judged afresh).

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};

use crate::host::Target;
use crate::oauth::{OAuth2, Source};
use crate::policy::{AllowRule, Kind, Policy, PolicyError};
use crate::record::{ConnectionRecord, Reason, Refusal};
use crate::scrub::Scrubber;

/// The request header a box names a credential with; the proxy removes it.
pub const CREDENTIAL_HEADER: &str = "x-warden-credential";

/// Where the secret goes.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Inject {
    /// A header set to this value (replacing one the box sent).
    Header(HeaderName, HeaderValue),
    /// A query parameter appended with this value.
    Query(String, String),
    /// `Authorization: Bearer TOKEN`, the token fetched by Warden
    /// ([`crate::oauth`]); resolved into a `Header` before a request leaves.
    OAuth(Arc<Source>),
}

/// What a credential puts into one request, resolved.
pub(crate) struct Ready {
    /// A `Header` or a `Query`.
    pub inject: Inject,
    /// The OAuth2 token used, to drop it when the upstream refuses it.
    pub token: Option<String>,
}

/// One credential a box may name: the hosts it may go to and how it is put
/// into a request.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    name: String,
    hosts: Vec<AllowRule>,
    pub(crate) inject: Inject,
    /// Forms of the secret removed from whatever Warden's own client
    /// returns (an upstream that echoes the request back).
    redact: Vec<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match &self.inject {
            Inject::Header(h, _) => format!("header {h}: <redacted>"),
            Inject::Query(q, _) => format!("query {q}=<redacted>"),
            Inject::OAuth(s) => format!("oauth2 token from {}", s.token_url()),
        };
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .field("inject", &how)
            .finish()
    }
}

fn hosts_of<S: AsRef<str>>(name: &str, hosts: &[S]) -> Result<Vec<AllowRule>, PolicyError> {
    hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            h.as_ref().parse().map_err(|reason: String| {
                PolicyError::new(
                    format!("credentials[{name}].hosts[{i}]"),
                    format!("`{}` {reason}", h.as_ref().escape_debug()),
                )
            })
        })
        .collect()
}

impl Credential {
    /// A credential put into the header `header` as `value` (`Authorization:
    /// Bearer …`, `X-Api-Key: …`), sent only to `hosts` (`host[:port]`).
    pub fn header<S: AsRef<str>>(
        name: &str,
        hosts: &[S],
        header: &str,
        value: &str,
    ) -> Result<Credential, PolicyError> {
        let bad = |why: &str| PolicyError::new(format!("credentials[{name}]"), why.to_owned());
        let header = HeaderName::from_bytes(header.as_bytes()).map_err(|_| bad("not a header name"))?;
        let mut value =
            HeaderValue::from_str(value).map_err(|_| bad("the secret is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(Credential {
            name: name.to_owned(),
            hosts: hosts_of(name, hosts)?,
            inject: Inject::Header(header, value),
            redact: Vec::new(),
        })
    }

    /// A credential appended to the query as `param=value`, sent only to
    /// `hosts`.
    pub fn query<S: AsRef<str>>(
        name: &str,
        hosts: &[S],
        param: &str,
        value: &str,
    ) -> Result<Credential, PolicyError> {
        Ok(Credential {
            name: name.to_owned(),
            hosts: hosts_of(name, hosts)?,
            inject: Inject::Query(param.to_owned(), value.to_owned()),
            redact: Vec::new(),
        })
    }

    /// A credential whose `Authorization: Bearer` token Warden fetches
    /// from `def.token_url` with the client-credentials grant. The token
    /// URL must be `https://` (or `http://`, which Warden's client takes
    /// only to ranges the operator opened) and its host one of `hosts`
    /// exactly. `key` names the credential across calls (its token is
    /// cached under it), `fingerprint` its last write.
    pub fn oauth2<S: AsRef<str>>(
        name: &str,
        hosts: &[S],
        def: OAuth2,
        key: &str,
        fingerprint: &str,
    ) -> Result<Credential, PolicyError> {
        let field = format!("credentials[{name}].token_url");
        let (target, tls, _) =
            crate::client::parse(&def.token_url).map_err(|r| PolicyError::new(field.clone(), r.message))?;
        let hosts = hosts_of(name, hosts)?;
        let kind = if tls { Kind::Tunnel } else { Kind::Http };
        if !hosts.iter().any(|r| r.allows(&target, kind)) {
            return Err(PolicyError::new(
                field,
                format!("the token endpoint's host {target} is not among the credential's hosts"),
            ));
        }
        let source =
            Source::new(name, def, target, key, fingerprint).map_err(|e| PolicyError::new(field, e))?;
        Ok(Credential {
            name: name.to_owned(),
            hosts,
            inject: Inject::OAuth(Arc::new(source)),
            redact: Vec::new(),
        })
    }

    /// What this credential puts into a request now: for OAuth2, a valid
    /// token (fetched under `policy`'s address rules when none is cached),
    /// with the token request's records.
    pub(crate) async fn ready(&self, policy: &Policy) -> (Result<Ready, Refusal>, Vec<ConnectionRecord>) {
        match &self.inject {
            Inject::OAuth(source) => {
                let (token, records) = source.token(policy).await;
                let ready = token.map(|t| Ready {
                    inject: Inject::Header(http::header::AUTHORIZATION, t.value),
                    token: Some(t.raw),
                });
                (ready, records)
            }
            other => (
                Ok(Ready {
                    inject: other.clone(),
                    token: None,
                }),
                Vec::new(),
            ),
        }
    }

    /// Drops the cached OAuth2 token `token` (an upstream answered `401`).
    pub(crate) async fn refused_token(&self, token: &str) {
        if let Inject::OAuth(source) = &self.inject {
            source.invalidate(token).await;
        }
    }

    /// Whether its token is fetched by Warden (OAuth2).
    pub fn is_oauth2(&self) -> bool {
        matches!(self.inject, Inject::OAuth(_))
    }

    /// The name a box asks for it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hosts it may be sent to: for Warden's own client, the only
    /// hosts a request naming it may reach.
    pub fn hosts(&self) -> &[AllowRule] {
        &self.hosts
    }

    /// Also removes `secret` (the raw secret behind the injected value,
    /// such as the token of `Bearer TOKEN`) from what Warden's own client
    /// returns.
    pub fn redacting(mut self, secret: &str) -> Credential {
        if !secret.is_empty() {
            self.redact.push(secret.to_owned());
        }
        self
    }

    /// Every form of the secret: the injected value, its percent-encoded
    /// query form, the OAuth2 tokens issued lately and the client secret,
    /// and what [`Credential::redacting`] added.
    fn forms(&self) -> Vec<Vec<u8>> {
        let mut forms: Vec<Vec<u8>> = self.redact.iter().map(|f| f.as_bytes().to_vec()).collect();
        match &self.inject {
            Inject::Header(_, v) => forms.push(v.as_bytes().to_vec()),
            Inject::Query(_, v) => {
                forms.push(v.as_bytes().to_vec());
                forms.push(
                    form_urlencoded::byte_serialize(v.as_bytes())
                        .collect::<String>()
                        .into_bytes(),
                );
            }
            Inject::OAuth(s) => forms.extend(s.secrets().into_iter().map(String::into_bytes)),
        }
        forms
    }

    /// What takes the secret out of a response: the proxy's to a box, and
    /// Warden's own client's.
    pub(crate) fn scrubber(&self) -> Scrubber {
        Scrubber::new(self.forms())
    }

    /// `text` with every form of the secret (see [`Credential::redacting`];
    /// forms shorter than [`crate::MIN_SCRUBBED_FORM`] bytes are kept) replaced by
    /// `<redacted>`.
    pub fn scrub(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.scrubber().all(text.as_bytes())).into_owned()
    }

    /// Whether it may be sent to `target` (for a request of `kind`).
    pub(crate) fn bound_to(&self, target: &Target, kind: Kind) -> bool {
        self.hosts.iter().any(|r| r.allows(target, kind))
    }
}

/// The credential named `name` for `target`, or the refusal.
pub(crate) fn choose<'a>(
    credentials: &'a [Credential],
    name: &str,
    target: &Target,
    kind: Kind,
) -> Result<&'a Credential, Refusal> {
    let c = credentials.iter().find(|c| c.name == name).ok_or_else(|| {
        Refusal::new(
            Reason::CredentialNotAllowed,
            format!(
                "this box holds no credential `{}` (its version must declare it, and the app must store it)",
                name.escape_debug()
            ),
        )
    })?;
    if !c.bound_to(target, kind) {
        return Err(Refusal::new(
            Reason::CredentialNotAllowed,
            format!("credential `{name}` is not bound to {target}; it is never sent there"),
        ));
    }
    Ok(c)
}
