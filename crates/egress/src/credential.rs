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

use http::header::{HeaderName, HeaderValue};

use crate::host::Target;
use crate::policy::{AllowRule, Kind, PolicyError};
use crate::record::{Reason, Refusal};

/// The request header a box names a credential with; the proxy removes it.
pub const CREDENTIAL_HEADER: &str = "x-warden-credential";

/// Where the secret goes.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Inject {
    /// A header set to this value (replacing one the box sent).
    Header(HeaderName, HeaderValue),
    /// A query parameter appended with this value.
    Query(String, String),
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

    /// `text` with every form of the secret replaced by `<redacted>`: the
    /// injected value, its percent-encoded query form, and what
    /// [`Credential::redacting`] added.
    pub fn scrub(&self, text: &str) -> String {
        let mut forms: Vec<String> = self.redact.clone();
        match &self.inject {
            Inject::Header(_, v) => forms.push(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            Inject::Query(_, v) => {
                forms.push(v.clone());
                forms.push(form_urlencoded::byte_serialize(v.as_bytes()).collect());
            }
        }
        // Longest first, so a form inside another goes with it.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        let mut out = text.to_owned();
        for f in forms.iter().filter(|f| !f.is_empty()) {
            if out.contains(f.as_str()) {
                out = out.replace(f.as_str(), "<redacted>");
            }
        }
        out
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
