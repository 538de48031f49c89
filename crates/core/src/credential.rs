//! Platform-held credentials: secrets an app stores with Warden for its
//! plugins to use without ever seeing them. The egress proxy injects one
//! into a request a plugin makes "with credential NAME" to a host that both
//! the plugin's version declared and the credential is bound to.
//!
//! At rest a secret is sealed with ChaCha20-Poly1305 (ring's AEAD) under the
//! server's `credentials.key`; the key's id is stored beside each sealed
//! secret, so a rotated key (moved to `credentials.old_keys`) still opens
//! what it sealed, and a secret rewritten is sealed under the current key.
//! The app, the name and the credential's definition (kind, hosts, and an
//! OAuth2 credential's token URL, client id, scope and audience) are
//! the AEAD's associated data: a row edited in the database to send the
//! secret elsewhere no longer opens.
//!
//! Must never: return, log or serialize a secret (`Secret` has no `Serialize`
//! and a redacted `Debug`); seal without a configured key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use warden_package::hosts::{IpLiterals, check_host_entry};

/// How the proxy puts a credential into a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CredentialKind {
    /// An API key, in a header (`X-Api-Key: SECRET`) or a query parameter
    /// (`?api_key=SECRET`): exactly one of the two.
    ApiKey {
        /// The header's name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        /// The query parameter's name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
    },
    /// `Authorization: Bearer SECRET`.
    Bearer,
    /// `Authorization: Basic base64(USERNAME:SECRET)`.
    Basic {
        /// The user name (not secret).
        username: String,
    },
    /// OAuth2 client-credentials: Warden fetches a token from `token_url`
    /// with `client_id` and the secret (the client secret) and sends
    /// `Authorization: Bearer TOKEN`. The token URL is `https://` and its
    /// host one of the credential's hosts, so the client secret goes
    /// nowhere the definition does not name.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials {
        /// The token endpoint.
        token_url: String,
        /// The client id (not secret).
        client_id: String,
        /// The `scope` asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        /// The `audience` asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
}

impl CredentialKind {
    /// `api_key`, `bearer`, `basic` or `oauth2_client_credentials`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CredentialKind::ApiKey { .. } => "api_key",
            CredentialKind::Bearer => "bearer",
            CredentialKind::Basic { .. } => "basic",
            CredentialKind::OAuth2ClientCredentials { .. } => "oauth2_client_credentials",
        }
    }
}

/// What a credential is, apart from its secret: stored in the clear, bound
/// to the sealed secret as associated data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialSpec {
    /// How it is injected.
    #[serde(flatten)]
    pub kind: CredentialKind,
    /// The hosts it may be sent to (`host[:port]`).
    pub hosts: Vec<String>,
}

/// A stored credential: its definition and its sealed secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The app it belongs to.
    pub app: String,
    /// The plugin whose installation in the app it belongs to; `None`: the
    /// app's own, used by every installation without one of that name.
    pub plugin: Option<String>,
    /// Its name, as manifests and requests name it.
    pub name: String,
    /// Kind and hosts.
    pub spec: CredentialSpec,
    /// The id of the key that sealed it.
    pub key_id: String,
    /// Nonce and ciphertext, base64.
    pub sealed: String,
    /// First stored.
    pub created_at: i64,
    /// Last written.
    pub updated_at: i64,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("app", &self.app)
            .field("plugin", &self.plugin)
            .field("name", &self.name)
            .field("spec", &self.spec)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A secret in the clear, for the proxy only: zeroed when dropped, never
/// printed.
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret's text.
    pub fn expose(&self) -> &str {
        // Sealed only from validated text (see `check_secret`).
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a credential could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// No `credentials.key` is configured.
    #[error(
        "this server stores no credentials: set `credentials.key` (WARDEN_CREDENTIALS_KEY, 32 bytes in base64)"
    )]
    NoKey,
    /// The key that sealed it is neither the current nor an old one.
    #[error(
        "credential {0} was sealed with key {1}, which is neither `credentials.key` nor in `credentials.old_keys`"
    )]
    UnknownKey(String, String),
    /// The sealed bytes do not open (tampered, or a different key with the same id).
    #[error("credential {0} does not open: its stored secret or definition was changed")]
    Corrupt(String),
    /// The system's random source failed.
    #[error("no randomness for a nonce")]
    Random,
}

/// A configured key by id.
struct Key {
    id: String,
    key: LessSafeKey,
}

/// The server's credential keys: the current one (seals and opens) and old
/// ones (open only).
pub struct Keyring {
    current: Option<Key>,
    old: Vec<Key>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.as_ref().map(|k| &k.id))
            .field("old", &self.old.iter().map(|k| &k.id).collect::<Vec<_>>())
            .finish()
    }
}

/// A key's id: the first 8 bytes of its SHA-256, hex.
fn key_id(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_key(text: &str) -> Result<Key, String> {
    let bytes = Zeroed(
        STANDARD
            .decode(text.trim())
            .map_err(|_| "is not base64".to_owned())?,
    );
    if bytes.0.len() != 32 {
        return Err(format!(
            "is {} bytes; a key is 32 random bytes in base64 (`head -c 32 /dev/urandom | base64`)",
            bytes.0.len()
        ));
    }
    let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes.0).map_err(|_| "is not a usable key".to_owned())?;
    Ok(Key {
        id: key_id(&bytes.0),
        key: LessSafeKey::new(key),
    })
}

/// Bytes zeroed when dropped.
struct Zeroed(Vec<u8>);

impl Drop for Zeroed {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}

/// The associated data binding a sealed secret to its row (an
/// installation's also to its plugin, so it cannot be moved to another).
fn aad(app: &str, plugin: Option<&str>, name: &str, spec: &CredentialSpec) -> Vec<u8> {
    let spec = serde_json::to_string(spec).unwrap_or_default();
    match plugin {
        None => format!("warden-credential\0{app}\0{name}\0{spec}").into_bytes(),
        Some(p) => format!("warden-installation-credential\0{app}\0{p}\0{name}\0{spec}").into_bytes(),
    }
}

impl Keyring {
    /// The keyring of `current` and `old` (base64 keys); the error names
    /// the setting at fault.
    pub fn new(current: Option<&str>, old: &[String]) -> Result<Keyring, String> {
        let current = current
            .map(|k| parse_key(k).map_err(|e| format!("credentials.key {e}")))
            .transpose()?;
        let old = old
            .iter()
            .enumerate()
            .map(|(i, k)| parse_key(k).map_err(|e| format!("credentials.old_keys[{i}] {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keyring {
            current,
            old,
            rng: SystemRandom::new(),
        })
    }

    /// The current key's id, when one is configured.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_ref().map(|k| k.id.as_str())
    }

    /// Seal `secret` for `app`'s credential `name` (of its installation of
    /// `plugin`, if given) defined by `spec`: the current key's id and the
    /// sealed text.
    pub fn seal(
        &self,
        app: &str,
        plugin: Option<&str>,
        name: &str,
        spec: &CredentialSpec,
        secret: &str,
    ) -> Result<(String, String), CredentialError> {
        let key = self.current.as_ref().ok_or(CredentialError::NoKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| CredentialError::Random)?;
        let mut buf = Zeroed(secret.as_bytes().to_vec());
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(app, plugin, name, spec)),
                &mut buf.0,
            )
            .map_err(|_| CredentialError::Corrupt(name.to_owned()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf.0);
        Ok((key.id.clone(), STANDARD.encode(out)))
    }

    /// Open a stored credential's secret.
    pub fn open(&self, c: &Credential) -> Result<Secret, CredentialError> {
        let key = self
            .current
            .iter()
            .chain(&self.old)
            .find(|k| k.id == c.key_id)
            .ok_or_else(|| CredentialError::UnknownKey(c.name.clone(), c.key_id.clone()))?;
        let corrupt = || CredentialError::Corrupt(c.name.clone());
        let mut bytes = STANDARD.decode(&c.sealed).map_err(|_| corrupt())?;
        if bytes.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN]).map_err(|_| corrupt())?;
        let mut body = bytes.split_off(NONCE_LEN);
        let plain = key
            .key
            .open_in_place(
                nonce,
                Aad::from(aad(&c.app, c.plugin.as_deref(), &c.name, &c.spec)),
                &mut body,
            )
            .map_err(|_| corrupt())?
            .to_vec();
        body.iter_mut().for_each(|b| *b = 0);
        if std::str::from_utf8(&plain).is_err() {
            return Err(corrupt());
        }
        Ok(Secret(plain))
    }
}

/// Longest secret, in bytes.
pub const SECRET_MAX: usize = 8192;
/// Most hosts one credential may be bound to.
pub const HOSTS_MAX: usize = 16;
/// A credential's name (also as manifests list it).
pub const NAME_PATTERN: &str = "^[a-z][a-z0-9_-]{0,63}$";

/// Whether `s` is a credential name (see [`NAME_PATTERN`]; the grammar is
/// the manifest's, [`warden_package::manifest::check_credential_name`]).
pub fn check_name(s: &str) -> Result<(), String> {
    warden_package::manifest::check_credential_name(s)
}

/// Headers a credential may not be put in: the hop's own, the ones the
/// proxy sets, and Warden's.
fn reserved_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    ) || n.starts_with("x-warden-")
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `url` may be an OAuth2 token endpoint for a credential bound to
/// `hosts`: `https://`, no user info, and its `host[:port]` listed exactly
/// (no wildcard entry covers it): the client secret goes only there. Plain
/// `http://` only to an IP literal where the operator allows IP literals
/// (an internal endpoint; Warden's client then reaches plain HTTP only in
/// the ranges the operator opened).
fn check_token_url(url: &str, hosts: &[String], ip: IpLiterals) -> Result<(), String> {
    if url.len() > 2048 || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err("a URL of at most 2048 characters, without spaces or control characters".into());
    }
    let scheme = |s: &str| url.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s));
    let (rest, default_port, tls) = if scheme("https://") {
        (&url[8..], 443, true)
    } else if scheme("http://") {
        (&url[7..], 80, false)
    } else {
        return Err("the token endpoint must be an `https://` URL".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err("the token endpoint's URL must name a host, without user info".into());
    }
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !authority.starts_with('[') || h.ends_with(']') => match p.parse::<u16>() {
            Ok(p) => (h.to_owned(), p),
            Err(_) => return Err(format!("`{}` is not a port", p.escape_debug())),
        },
        _ => (authority.clone(), default_port),
    };
    if !tls {
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok();
        if !(literal && ip == IpLiterals::Allowed) {
            return Err(
                "the token endpoint must be an `https://` URL (plain `http://` only to an IP literal, where the operator allows them)"
                    .into(),
            );
        }
    }
    let listed = hosts.iter().any(|h| {
        let h = h.to_ascii_lowercase();
        h == format!("{host}:{port}") || (port == default_port && h == host)
    });
    if listed {
        Ok(())
    } else {
        Err(format!(
            "the token endpoint's host `{host}:{port}` must be one of the credential's `hosts` (exactly): the client secret is sent there"
        ))
    }
}

/// Check a credential to store: its definition and secret. Every problem,
/// each at its JSON pointer in the request body.
pub fn check(spec: &CredentialSpec, secret: &str, ip: IpLiterals) -> Vec<(String, String)> {
    let mut p = Vec::new();
    let mut at = |loc: &str, msg: String| p.push((loc.to_owned(), msg));
    match &spec.kind {
        CredentialKind::ApiKey { header, query } => match (header, query) {
            (Some(h), None) => {
                if !is_token(h) {
                    at(
                        "/header",
                        "a header name is 1 to 64 letters, digits or !#$%&'*+-.^_`|~".into(),
                    );
                } else if reserved_header(h) {
                    at(
                        "/header",
                        format!("`{h}` is the proxy's or the connection's own header"),
                    );
                }
            }
            (None, Some(q)) => {
                let ok = (1..=64).contains(&q.len())
                    && q.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
                if !ok {
                    at(
                        "/query",
                        "a query parameter name is 1 to 64 letters, digits, `_`, `-` or `.`".into(),
                    );
                }
            }
            _ => at(
                "/header",
                "an api_key goes in a header or a query parameter: give exactly one of `header` and `query`"
                    .into(),
            ),
        },
        // OAuth2's fields are checked below.
        CredentialKind::Bearer | CredentialKind::OAuth2ClientCredentials { .. } => {}
        CredentialKind::Basic { username } => {
            if username.is_empty()
                || username.len() > 256
                || username.contains(':')
                || username.chars().any(char::is_control)
            {
                at(
                    "/username",
                    "1 to 256 characters, without `:` or control characters".into(),
                );
            }
        }
    }
    if let CredentialKind::OAuth2ClientCredentials {
        token_url,
        client_id,
        scope,
        audience,
    } = &spec.kind
    {
        if let Err(e) = check_token_url(token_url, &spec.hosts, ip) {
            at("/token_url", e);
        }
        if client_id.is_empty() || client_id.len() > 256 || client_id.chars().any(char::is_control) {
            at(
                "/client_id",
                "1 to 256 characters, without control characters".into(),
            );
        }
        for (field, v) in [("/scope", scope), ("/audience", audience)] {
            if let Some(v) = v
                && (v.is_empty() || v.len() > 1024 || v.chars().any(char::is_control))
            {
                at(field, "1 to 1024 characters, without control characters".into());
            }
        }
    }
    if spec.hosts.is_empty() || spec.hosts.len() > HOSTS_MAX {
        at(
            "/hosts",
            format!("1 to {HOSTS_MAX} hosts the credential may be sent to"),
        );
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        if let Err(e) = check_host_entry(h, ip) {
            at(&format!("/hosts/{i}"), e);
        } else if spec.hosts[..i].contains(h) {
            at(&format!("/hosts/{i}"), format!("`{h}` is listed twice"));
        }
    }
    if secret.is_empty() || secret.len() > SECRET_MAX {
        at("/secret", format!("1 to {SECRET_MAX} bytes"));
    } else if secret.chars().any(char::is_control) {
        // It travels in a header or a URL: no line breaks to smuggle a
        // second header or request.
        at(
            "/secret",
            "control characters (line breaks among them) are not allowed".into(),
        );
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY2: &str = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

    fn spec() -> CredentialSpec {
        CredentialSpec {
            kind: CredentialKind::Bearer,
            hosts: vec!["api.github.com".into()],
        }
    }

    fn stored(ring: &Keyring, name: &str, secret: &str) -> Credential {
        let (key_id, sealed) = ring.seal("app", None, name, &spec(), secret).unwrap();
        Credential {
            app: "app".into(),
            plugin: None,
            name: name.into(),
            spec: spec(),
            key_id,
            sealed,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_sealed_secret_opens_with_its_key_and_only_for_its_row() {
        let ring = Keyring::new(Some(KEY), &[]).unwrap();
        let c = stored(&ring, "github", "s3cret");
        assert!(!c.sealed.contains("s3cret"));
        assert_eq!(ring.open(&c).unwrap().expose(), "s3cret");
        // The same secret sealed twice differs (fresh nonce).
        assert_ne!(stored(&ring, "github", "s3cret").sealed, c.sealed);
        // Moved to another host, app or name: it no longer opens.
        let mut moved = c.clone();
        moved.spec.hosts = vec!["evil.example.com".into()];
        assert!(matches!(ring.open(&moved), Err(CredentialError::Corrupt(_))));
        let mut other = c.clone();
        other.app = "other".into();
        assert!(matches!(ring.open(&other), Err(CredentialError::Corrupt(_))));
        // An app's credential moved to an installation, or an
        // installation's to another plugin: it no longer opens.
        let mut installed = c.clone();
        installed.plugin = Some("acme.tool".into());
        assert!(matches!(ring.open(&installed), Err(CredentialError::Corrupt(_))));
        let (key_id, sealed) = ring
            .seal("app", Some("acme.tool"), "github", &spec(), "s3cret")
            .unwrap();
        let mut own = Credential {
            plugin: Some("acme.tool".into()),
            key_id,
            sealed,
            ..c.clone()
        };
        assert_eq!(ring.open(&own).unwrap().expose(), "s3cret");
        own.plugin = Some("acme.other".into());
        assert!(matches!(ring.open(&own), Err(CredentialError::Corrupt(_))));
        assert_eq!(format!("{:?}", ring.open(&c).unwrap()), "Secret(<redacted>)");
    }

    #[test]
    fn rotation_keeps_old_secrets_readable_and_seals_new_ones_under_the_new_key() {
        let old = Keyring::new(Some(KEY), &[]).unwrap();
        let c = stored(&old, "github", "s3cret");
        let rotated = Keyring::new(Some(KEY2), &[KEY.to_owned()]).unwrap();
        assert_eq!(rotated.open(&c).unwrap().expose(), "s3cret");
        let fresh = stored(&rotated, "github", "n3w");
        assert_eq!(Some(fresh.key_id.as_str()), rotated.current_id());
        assert_ne!(fresh.key_id, c.key_id);
        // Without the old key, the old secret is named, not guessed at.
        let forgot = Keyring::new(Some(KEY2), &[]).unwrap();
        assert!(matches!(forgot.open(&c), Err(CredentialError::UnknownKey(..))));
        // No key: nothing is sealed.
        let none = Keyring::new(None, &[]).unwrap();
        assert!(matches!(
            none.seal("app", None, "x", &spec(), "s"),
            Err(CredentialError::NoKey)
        ));
    }

    #[test]
    fn keys_that_are_not_32_bytes_of_base64_are_refused_by_setting() {
        let e = Keyring::new(Some("c2hvcnQ="), &[]).unwrap_err();
        assert!(e.starts_with("credentials.key is 5 bytes"), "{e}");
        let e = Keyring::new(Some(KEY), &["!".into()]).unwrap_err();
        assert!(e.starts_with("credentials.old_keys[0] is not base64"), "{e}");
    }

    #[test]
    fn definitions_and_secrets_are_checked_at_their_pointers() {
        let bad = CredentialSpec {
            kind: CredentialKind::ApiKey {
                header: Some("Proxy-Authorization".into()),
                query: None,
            },
            hosts: vec!["https://x.org".into(), "api.x.org".into(), "api.x.org".into()],
        };
        let got: Vec<String> = check(&bad, "a\r\nX-Evil: 1", IpLiterals::Refused)
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        assert_eq!(got, ["/header", "/hosts/0", "/hosts/2", "/secret"]);
        let both = CredentialSpec {
            kind: CredentialKind::ApiKey {
                header: Some("X-Api-Key".into()),
                query: Some("key".into()),
            },
            hosts: vec!["api.x.org".into()],
        };
        assert_eq!(check(&both, "k", IpLiterals::Refused).len(), 1);
        assert!(check(&spec(), "token", IpLiterals::Refused).is_empty());
        assert!(check_name("github").is_ok() && check_name("GitHub").is_err());
    }

    #[test]
    fn an_oauth2_token_endpoint_must_be_https_and_among_the_hosts() {
        let oauth = |url: &str, hosts: &[&str]| CredentialSpec {
            kind: CredentialKind::OAuth2ClientCredentials {
                token_url: url.into(),
                client_id: "client".into(),
                scope: Some("read".into()),
                audience: None,
            },
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        };
        let at = |spec: CredentialSpec| -> Vec<String> {
            check(&spec, "client-secret", IpLiterals::Refused)
                .into_iter()
                .map(|(l, _)| l)
                .collect()
        };
        assert!(
            at(oauth(
                "https://auth.x.org/oauth/token",
                &["api.x.org", "auth.x.org"]
            ))
            .is_empty()
        );
        assert!(at(oauth("https://Auth.x.org:8443/t", &["auth.x.org:8443"])).is_empty());
        assert_eq!(
            at(oauth("https://evil.org/token", &["api.x.org"])),
            ["/token_url"]
        );
        assert_eq!(
            at(oauth("http://auth.x.org/token", &["auth.x.org"])),
            ["/token_url"]
        );
        assert_eq!(
            at(oauth("https://auth.x.org:8443/t", &["auth.x.org"])),
            ["/token_url"]
        );
        assert_eq!(
            at(oauth("https://u:p@auth.x.org/t", &["auth.x.org"])),
            ["/token_url"]
        );
        assert_eq!(at(oauth("https://a.x.org/t", &["*.x.org"])), ["/token_url"]);
        assert_eq!(at(oauth("ftp://auth.x.org/t", &["auth.x.org"])), ["/token_url"]);
        // Plain HTTP: only to an IP literal, where the operator allows them.
        let local = oauth("http://127.0.0.1:9000/t", &["127.0.0.1:9000"]);
        assert!(check(&local, "s", IpLiterals::Allowed).is_empty());
        assert_eq!(
            check(&local, "s", IpLiterals::Refused).len(),
            2,
            "the URL and the host entry"
        );
        // The definition is associated data: a token URL changed in the
        // database no longer opens the secret.
        let ring = Keyring::new(Some(KEY), &[]).unwrap();
        let spec = oauth("https://auth.x.org/t", &["auth.x.org"]);
        let (key_id, sealed) = ring.seal("app", None, "api", &spec, "client-secret").unwrap();
        let mut c = Credential {
            app: "app".into(),
            plugin: None,
            name: "api".into(),
            spec,
            key_id,
            sealed,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(ring.open(&c).unwrap().expose(), "client-secret");
        c.spec.kind = oauth("https://evil.org/t", &["auth.x.org"]).kind;
        assert!(matches!(ring.open(&c), Err(CredentialError::Corrupt(_))));
        let json = serde_json::to_value(&c.spec).unwrap();
        assert_eq!(json["kind"], "oauth2_client_credentials");
    }
}
