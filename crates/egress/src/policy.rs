//! A box's egress policy, as data: the allow-list, the ranges the operator
//! opens, names pinned to addresses, and the caps.
//!
//! Allow-list entries are `host[:port]`:
//! * `pypi.org` — exactly that name (compared after normalization: ASCII
//!   only, case-insensitive, one trailing dot ignored);
//! * `*.pythonhosted.org` — any name one label below (`files.pythonhosted.org`,
//!   not `pythonhosted.org`, not `a.b.pythonhosted.org`); the suffix needs at
//!   least two labels, so `*.org` is refused;
//! * `10.1.2.3:8080`, `[2001:db8::1]` — an IP literal, the only way a
//!   request naming an address is let through;
//! * without a port, an entry allows the scheme's default port: 443 for a
//!   `CONNECT` tunnel, 80 for a plain HTTP request. With a port, exactly that
//!   port, for either kind.
//!
//! Must never: do I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::host::{Host, HostError, HostName, Target, canonical};
use crate::record::{Reason, Refusal};

/// A policy that cannot be served, naming the field and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PolicyError {
    /// The field at fault (`allow[2]`, `limits.max_bytes`, …).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl PolicyError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> PolicyError {
        PolicyError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// How an allow-list entry names hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this name.
    Exact(HostName),
    /// Any name exactly one label below this suffix.
    Wildcard(HostName),
    /// Exactly this address (canonical).
    Ip(IpAddr),
}

/// One allow-list entry: a host pattern and an optional port (see the
/// module docs for the forms).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AllowRule {
    host: HostPattern,
    port: Option<u16>,
}

/// The two ways through the proxy; they differ in their default port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `CONNECT host:port`, a TCP tunnel (HTTPS).
    Tunnel,
    /// An absolute-form plain HTTP request.
    Http,
}

impl Kind {
    /// The port an entry without one allows.
    pub fn default_port(self) -> u16 {
        match self {
            Kind::Tunnel => 443,
            Kind::Http => 80,
        }
    }
}

impl AllowRule {
    fn host_matches(&self, host: &Host) -> bool {
        match (&self.host, host) {
            (HostPattern::Exact(a), Host::Name(b)) => a == b,
            (HostPattern::Wildcard(suffix), Host::Name(name)) => name
                .as_str()
                .strip_suffix(suffix.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            (HostPattern::Ip(a), Host::Ip(b)) => a == b,
            _ => false,
        }
    }

    fn port_matches(&self, port: u16, kind: Kind) -> bool {
        self.port.unwrap_or(kind.default_port()) == port
    }

    /// Whether this entry lets `target` through for `kind`.
    pub(crate) fn allows(&self, target: &Target, kind: Kind) -> bool {
        self.host_matches(&target.host) && self.port_matches(target.port, kind)
    }
}

impl FromStr for AllowRule {
    type Err = String;

    /// Parses `host[:port]`; the error says what is wrong, for a person.
    fn from_str(s: &str) -> Result<AllowRule, String> {
        if s.contains("://") || s.contains('/') {
            return Err("an entry is host[:port], not a URL or a path".into());
        }
        if s.contains('@') {
            return Err("an entry is host[:port], without user info".into());
        }
        // IPv6 literals: `[addr]`, `[addr]:port`, or bare `addr`.
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) = rest
                .split_once(']')
                .ok_or("an IPv6 literal needs its closing `]`")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("expected `:port` after `]`")?),
            };
            (&s[..inner.len() + 2], port)
        } else if s.matches(':').count() > 1 {
            (s, None)
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => Some(parse_port(p)?),
        };
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            let suffix = HostName::parse(suffix).map_err(|e| format!("the wildcard's suffix {e}"))?;
            if suffix.labels() < 2 {
                return Err(format!(
                    "`*.{suffix}` would allow a whole top-level domain; a wildcard needs at \
                     least two labels after `*.`"
                ));
            }
            HostPattern::Wildcard(suffix)
        } else if host.contains('*') {
            return Err("only one leading `*.` label is allowed as a wildcard".into());
        } else if host.contains(':') && !host.starts_with('[') {
            let ip: IpAddr = host
                .parse()
                .map_err(|_| "is neither host:port nor an IPv6 address".to_string())?;
            HostPattern::Ip(canonical(ip))
        } else {
            match Host::parse(host).map_err(|e| format!("the host {e}"))? {
                Host::Name(n) => HostPattern::Exact(n),
                Host::Ip(ip) => HostPattern::Ip(ip),
            }
        };
        Ok(AllowRule { host, port })
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 5 {
        return Err(format!(
            "port `{}` is not a number from 1 to 65535",
            p.escape_debug()
        ));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port `{p}` is not a number from 1 to 65535")),
        Ok(n) => Ok(n),
    }
}

impl TryFrom<String> for AllowRule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
            .map_err(|e| format!("allow entry `{}`: {e}", s.escape_debug()))
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Exact(n) => write!(f, "{n}")?,
            HostPattern::Wildcard(n) => write!(f, "*.{n}")?,
            HostPattern::Ip(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

impl From<AllowRule> for String {
    fn from(r: AllowRule) -> String {
        r.to_string()
    }
}

/// A range of addresses the operator opens: `10.0.0.0/8`, `::1/128`, or a
/// bare address (a single-address range). IPv4-mapped IPv6 ranges are
/// turned into the IPv4 range they cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(IpNet);

impl Cidr {
    /// True if `ip` (canonical) is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }

    /// True if the range is exactly the one address `ip`.
    pub fn is_exactly(&self, ip: IpAddr) -> bool {
        self.0.prefix_len() == self.0.max_prefix_len() && self.0.addr() == ip
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let net = match s.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => match s.parse::<IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => return Err("is not an address or a CIDR range (`10.0.0.0/8`)".into()),
            },
        };
        let net = match net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
                    .map_err(|_| "is not a valid range".to_string())?,
                None => net,
            },
            _ => net,
        };
        Ok(Cidr(net.trunc()))
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
            .map_err(|e| format!("allowed CIDR `{}` {e}", s.escape_debug()))
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.0.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Per-proxy caps (one proxy serves one box). Durations are milliseconds
/// in the serialized form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections open at once; more are refused (`concurrency_cap`).
    pub max_concurrent: u32,
    /// Connections served over the proxy's life; more are refused
    /// (`connection_cap`).
    pub max_connections: u32,
    /// Bytes to and from upstreams, summed over both directions and every
    /// connection; a connection reaching it is cut and later ones refused
    /// (`byte_cap`).
    pub max_bytes: u64,
    /// Resolving the name, and each connection attempt.
    #[serde(rename = "connect_timeout_ms", with = "millis")]
    pub connect_timeout: Duration,
    /// A connection on which no byte moved this long is cut.
    #[serde(rename = "idle_timeout_ms", with = "millis")]
    pub idle_timeout: Duration,
    /// The request head must arrive within this time.
    #[serde(rename = "header_timeout_ms", with = "millis")]
    pub header_timeout: Duration,
    /// The largest request head (request line and headers), 8 KiB to 1 MiB.
    pub max_header_bytes: usize,
    /// Records kept; later ones are only counted.
    pub max_records: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_concurrent: 32,
            max_connections: 1024,
            max_bytes: 1 << 30,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_records: 4096,
        }
    }
}

/// The smallest request-head limit hyper accepts.
pub(crate) const MIN_HEADER_BYTES: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 1024 * 1024;
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

impl Limits {
    /// Checks every cap, naming the first one out of range.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let positive = [
            ("limits.max_concurrent", u64::from(self.max_concurrent)),
            ("limits.max_connections", u64::from(self.max_connections)),
            ("limits.max_bytes", self.max_bytes),
            ("limits.max_records", self.max_records as u64),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(PolicyError::new(field, "must be at least 1"));
            }
        }
        for (field, d) in [
            ("limits.connect_timeout_ms", self.connect_timeout),
            ("limits.idle_timeout_ms", self.idle_timeout),
            ("limits.header_timeout_ms", self.header_timeout),
        ] {
            if d < Duration::from_millis(1) || d > MAX_TIMEOUT {
                return Err(PolicyError::new(field, "must be from 1 ms to 24 hours"));
            }
        }
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&self.max_header_bytes) {
            return Err(PolicyError::new(
                "limits.max_header_bytes",
                format!("must be from {MIN_HEADER_BYTES} to {MAX_HEADER_BYTES}"),
            ));
        }
        Ok(())
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// What one box may reach through its proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The allow-list: `host[:port]` entries (module docs).
    #[serde(default)]
    pub allow: Vec<AllowRule>,
    /// Ranges the operator opens despite the SSRF refusals (loopback,
    /// private, link-local, reserved; the host's own addresses only when
    /// named exactly). Unspecified, multicast and broadcast stay refused.
    #[serde(default)]
    pub allowed_cidrs: Vec<Cidr>,
    /// Names the proxy resolves to these addresses instead of asking DNS (an
    /// operator's fixed mirror; tests). The addresses are still checked.
    #[serde(default)]
    pub pinned: BTreeMap<HostName, Vec<IpAddr>>,
    /// The caps.
    #[serde(default)]
    pub limits: Limits,
    /// Credentials a box may name for the proxy to inject (secrets: never
    /// serialized, redacted in `Debug`).
    #[serde(skip)]
    pub credentials: Vec<crate::credential::Credential>,
    /// Certificates trusted beside the system's roots when the proxy opens
    /// TLS itself (a credential's `https://` request): an internal CA, a
    /// test's upstream.
    #[serde(skip)]
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Policy {
    /// A policy allowing `entries` (each `host[:port]`), with default caps,
    /// no opened ranges and nothing pinned.
    pub fn new<I, S>(entries: I) -> Result<Policy, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let allow = entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let e = e.as_ref();
                e.parse().map_err(|reason: String| {
                    PolicyError::new(format!("allow[{i}]"), format!("`{}` {reason}", e.escape_debug()))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            allow,
            ..Policy::default()
        })
    }

    /// Opens a range (`127.0.0.1/32`, `10.0.0.0/8`, or a bare address).
    pub fn allow_cidr(mut self, cidr: &str) -> Result<Policy, PolicyError> {
        let c = cidr.parse().map_err(|reason: String| {
            PolicyError::new(
                format!("allowed_cidrs[{}]", self.allowed_cidrs.len()),
                format!("`{}` {reason}", cidr.escape_debug()),
            )
        })?;
        self.allowed_cidrs.push(c);
        Ok(self)
    }

    /// Pins `host` to `addrs`: the proxy uses them instead of DNS.
    pub fn pin(mut self, host: &str, addrs: &[IpAddr]) -> Result<Policy, PolicyError> {
        let name = HostName::parse(host).map_err(|e: HostError| {
            PolicyError::new(
                format!("pinned[{}]", host.escape_debug()),
                format!("the name {e}"),
            )
        })?;
        self.pinned.insert(name, addrs.to_vec());
        Ok(self)
    }

    /// Adds credentials a box may name (see [`crate::Credential`]); a
    /// name given twice is refused.
    pub fn with_credentials(
        mut self,
        credentials: Vec<crate::credential::Credential>,
    ) -> Result<Policy, PolicyError> {
        for c in credentials {
            if self.credentials.iter().any(|o| o.name() == c.name()) {
                return Err(PolicyError::new(
                    format!("credentials[{}]", c.name()),
                    "is given twice",
                ));
            }
            self.credentials.push(c);
        }
        Ok(self)
    }

    /// Trusts `der` (a CA certificate, DER) beside the system's roots when
    /// the proxy opens TLS itself.
    pub fn trust_root(mut self, der: Vec<u8>) -> Policy {
        self.extra_roots
            .push(rustls::pki_types::CertificateDer::from(der));
        self
    }

    /// Replaces the caps.
    pub fn with_limits(mut self, limits: Limits) -> Policy {
        self.limits = limits;
        self
    }

    /// Checks what parsing alone cannot (the caps, pins without addresses).
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.limits.validate()?;
        for (name, addrs) in &self.pinned {
            if addrs.is_empty() {
                return Err(PolicyError::new(format!("pinned[{name}]"), "has no address"));
            }
        }
        Ok(())
    }

    /// Decides whether the allow-list lets `target` through for `kind`.
    pub(crate) fn admit(&self, target: &Target, kind: Kind) -> Result<(), Refusal> {
        let hosts: Vec<&AllowRule> = self
            .allow
            .iter()
            .filter(|r| r.host_matches(&target.host))
            .collect();
        if hosts.iter().any(|r| r.port_matches(target.port, kind)) {
            return Ok(());
        }
        if let Host::Ip(_) = target.host
            && hosts.is_empty()
        {
            return Err(Refusal::new(
                Reason::IpLiteral,
                format!(
                    "{target}: an IP address is reachable only when the allow-list names it; \
                     ask for a host name"
                ),
            ));
        }
        if hosts.is_empty() {
            return Err(Refusal::new(
                Reason::HostNotAllowed,
                format!("{} is not on this box's allow-list", target.host),
            ));
        }
        let ports: Vec<String> = hosts
            .iter()
            .map(|r| r.port.unwrap_or(kind.default_port()).to_string())
            .collect();
        Err(Refusal::new(
            Reason::PortNotAllowed,
            format!(
                "{} is allowed on port {} for this kind of request, not {}",
                target.host,
                ports.join(", "),
                target.port
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> AllowRule {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn target(host: &str, port: u16) -> Target {
        Target {
            host: Host::parse(host).unwrap(),
            port,
        }
    }

    fn verdict(policy: &Policy, host: &str, port: u16, kind: Kind) -> Result<(), Reason> {
        policy.admit(&target(host, port), kind).map_err(|r| r.reason)
    }

    #[test]
    fn entries_parse_and_print_in_their_normal_form() {
        for (input, shown) in [
            ("PyPI.org", "pypi.org"),
            ("pypi.org.:443", "pypi.org:443"),
            ("*.PythonHosted.org", "*.pythonhosted.org"),
            ("10.1.2.3:8080", "10.1.2.3:8080"),
            ("[::1]:3000", "[::1]:3000"),
            ("[::ffff:127.0.0.1]:80", "127.0.0.1:80"),
            ("2001:db8::1", "[2001:db8::1]"),
        ] {
            assert_eq!(rule(input).to_string(), shown, "{input}");
        }
    }

    #[test]
    fn bad_entries_say_why() {
        for (input, needle) in [
            ("https://pypi.org", "not a URL"),
            ("pypi.org/simple", "not a URL"),
            ("user@pypi.org", "user info"),
            ("pypi.org:0", "1 to 65535"),
            ("pypi.org:65536", "1 to 65535"),
            ("pypi.org:http", "1 to 65535"),
            ("pypi.org:", "1 to 65535"),
            ("*.org", "top-level domain"),
            ("*.*.example.org", "wildcard's suffix"),
            ("files.*.org", "one leading"),
            ("**.example.org", "one leading"),
            ("bücher.example", "punycode"),
            ("127.1", "numeric address"),
            ("[::1", "closing"),
            ("[::1]x", "`:port`"),
            ("", "empty"),
        ] {
            let err = input.parse::<AllowRule>().unwrap_err();
            assert!(err.contains(needle), "{input}: {err}");
        }
        let err = Policy::new(["pypi.org", "https://x.org"]).unwrap_err();
        assert_eq!(err.field, "allow[1]");
        assert!(err.to_string().starts_with("allow[1]: `https://x.org`"), "{err}");
    }

    #[test]
    fn ports_default_to_the_schemes_port() {
        let p = Policy::new(["pypi.org", "mirror.example:8080"]).unwrap();
        assert_eq!(verdict(&p, "pypi.org", 443, Kind::Tunnel), Ok(()));
        assert_eq!(verdict(&p, "pypi.org", 80, Kind::Http), Ok(()));
        assert_eq!(
            verdict(&p, "pypi.org", 80, Kind::Tunnel),
            Err(Reason::PortNotAllowed)
        );
        assert_eq!(
            verdict(&p, "pypi.org", 443, Kind::Http),
            Err(Reason::PortNotAllowed)
        );
        assert_eq!(verdict(&p, "mirror.example", 8080, Kind::Tunnel), Ok(()));
        assert_eq!(verdict(&p, "mirror.example", 8080, Kind::Http), Ok(()));
        assert_eq!(
            verdict(&p, "mirror.example", 443, Kind::Tunnel),
            Err(Reason::PortNotAllowed)
        );
        assert_eq!(verdict(&p, "PYPI.ORG.", 443, Kind::Tunnel), Ok(()));
    }

    #[test]
    fn wildcards_reach_one_label_down_only() {
        let p = Policy::new(["*.pythonhosted.org"]).unwrap();
        assert_eq!(verdict(&p, "files.pythonhosted.org", 443, Kind::Tunnel), Ok(()));
        assert_eq!(
            verdict(&p, "pythonhosted.org", 443, Kind::Tunnel),
            Err(Reason::HostNotAllowed)
        );
        assert_eq!(
            verdict(&p, "a.files.pythonhosted.org", 443, Kind::Tunnel),
            Err(Reason::HostNotAllowed)
        );
        assert_eq!(
            verdict(&p, "evilpythonhosted.org", 443, Kind::Tunnel),
            Err(Reason::HostNotAllowed)
        );
    }

    #[test]
    fn ip_literals_pass_only_when_listed() {
        let p = Policy::new(["pypi.org", "10.1.2.3:8080", "[::1]:9000"]).unwrap();
        assert_eq!(verdict(&p, "10.1.2.3", 8080, Kind::Tunnel), Ok(()));
        assert_eq!(
            verdict(&p, "10.1.2.3", 9090, Kind::Tunnel),
            Err(Reason::PortNotAllowed)
        );
        assert_eq!(
            verdict(&p, "10.1.2.4", 8080, Kind::Tunnel),
            Err(Reason::IpLiteral)
        );
        assert_eq!(verdict(&p, "[::1]", 9000, Kind::Tunnel), Ok(()));
        assert_eq!(verdict(&p, "[::ffff:10.1.2.3]", 8080, Kind::Tunnel), Ok(()));
        assert_eq!(
            verdict(&p, "151.101.0.223", 443, Kind::Tunnel),
            Err(Reason::IpLiteral)
        );
    }

    #[test]
    fn cidrs_accept_bare_addresses_and_mapped_ranges() {
        let c: Cidr = "127.0.0.1".parse().unwrap();
        assert!(c.is_exactly("127.0.0.1".parse().unwrap()));
        let c: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        let c: Cidr = "10.9.9.9/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        let err = Policy::default().allow_cidr("nope").unwrap_err();
        assert_eq!(err.field, "allowed_cidrs[0]");
    }

    #[test]
    fn limits_name_the_field_out_of_range() {
        let bad = |f: fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            l.validate().unwrap_err().field
        };
        assert_eq!(bad(|l| l.max_concurrent = 0), "limits.max_concurrent");
        assert_eq!(bad(|l| l.max_bytes = 0), "limits.max_bytes");
        assert_eq!(bad(|l| l.idle_timeout = Duration::ZERO), "limits.idle_timeout_ms");
        assert_eq!(bad(|l| l.max_header_bytes = 100), "limits.max_header_bytes");
        assert!(Limits::default().validate().is_ok());
    }

    #[test]
    fn a_policy_reads_from_json_with_errors_naming_the_entry() {
        let p: Policy = serde_json::from_value(serde_json::json!({
            "allow": ["pypi.org", "*.pythonhosted.org:443"],
            "allowed_cidrs": ["127.0.0.1/32"],
            "pinned": {"Mirror.Example": ["127.0.0.1"]},
            "limits": {"max_bytes": 1000, "idle_timeout_ms": 500}
        }))
        .unwrap();
        assert_eq!(p.limits.idle_timeout, Duration::from_millis(500));
        assert_eq!(p.limits.max_concurrent, Limits::default().max_concurrent);
        assert!(p.pinned.contains_key(&HostName::parse("mirror.example").unwrap()));
        let back: Policy = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p);

        let err = serde_json::from_value::<Policy>(serde_json::json!({"allow": ["*.com"]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow entry `*.com`"), "{err}");
        let err = serde_json::from_value::<Policy>(serde_json::json!({"allowd": []}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
