//! Host names and request targets in their one normalized form.
//!
//! Allow-list entries, pinned names and what a box asks for all go through
//! the same parser, so "is this the host on the list" is a comparison of two
//! normalized values. Names are ASCII only: a non-ASCII name is refused, not
//! converted (clients send IDNs as punycode `xn--` labels already, and
//! refusing keeps look-alike Unicode out of the allow-list). Anything a
//! resolver would read as a number (`127.1`, `0x7f.1`, `2130706433`) is an
//! IP literal in disguise and is refused as a name.
//!
//! Must never: resolve anything, or accept two spellings of one host.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest name DNS can carry (without the trailing dot).
const MAX_NAME: usize = 253;
/// The longest label DNS can carry.
const MAX_LABEL: usize = 63;

/// A DNS host name, normalized: ASCII, lowercase, no trailing dot, labels of
/// letters, digits, `-` and `_`, and not a number in disguise.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostName(String);

/// Why a string is not a host name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing, or only a dot.
    #[error("is empty")]
    Empty,
    /// A character outside ASCII.
    #[error("is not ASCII (write internationalized names as punycode `xn--` labels)")]
    NonAscii,
    /// Longer than DNS allows.
    #[error("is longer than {MAX_NAME} characters")]
    TooLong,
    /// A label that DNS or host syntax does not allow.
    #[error("has an invalid label `{label}`: {why}")]
    BadLabel {
        /// The label at fault (ASCII, as written).
        label: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A name whose last label is a number: resolvers read it as an IPv4
    /// address (`127.1`, `0x7f000001`).
    #[error("is a numeric address in a form resolvers accept, not a name")]
    Numeric,
    /// An IPv6 literal in brackets that does not parse (or has a zone id).
    #[error("is not a valid IPv6 address")]
    BadIpv6,
}

impl HostName {
    /// Parses and normalizes a host name (see the type's rules).
    pub fn parse(s: &str) -> Result<HostName, HostError> {
        if !s.is_ascii() {
            return Err(HostError::NonAscii);
        }
        let s = s.strip_suffix('.').unwrap_or(s);
        if s.is_empty() {
            return Err(HostError::Empty);
        }
        if s.len() > MAX_NAME {
            return Err(HostError::TooLong);
        }
        for label in s.split('.') {
            let why = if label.is_empty() {
                Some("empty")
            } else if label.len() > MAX_LABEL {
                Some("longer than 63 characters")
            } else if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                Some("only letters, digits, `-` and `_` are allowed")
            } else if label.starts_with('-') || label.ends_with('-') {
                Some("starts or ends with `-`")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(HostError::BadLabel {
                    label: label.to_owned(),
                    why,
                });
            }
        }
        let name = s.to_ascii_lowercase();
        let last = name.rsplit('.').next().unwrap_or(&name);
        if is_numeric_label(last) {
            return Err(HostError::Numeric);
        }
        Ok(HostName(name))
    }

    /// The normalized name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// How many labels the name has.
    pub(crate) fn labels(&self) -> usize {
        self.0.split('.').count()
    }
}

/// A label resolvers read as a number: decimal, octal (leading 0) or hex
/// (`0x`), the forms `inet_aton` accepts.
fn is_numeric_label(label: &str) -> bool {
    if let Some(hex) = label.strip_prefix("0x").or_else(|| label.strip_prefix("0X")) {
        return hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit())
}

impl FromStr for HostName {
    type Err = HostError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HostName::parse(s)
    }
}

impl TryFrom<String> for HostName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        HostName::parse(&s).map_err(|e| format!("host name `{}` {e}", s.escape_debug()))
    }
}

impl From<HostName> for String {
    fn from(h: HostName) -> String {
        h.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host as a box may ask for it: a name, or an IP literal (IPv4-mapped
/// IPv6 literals are turned into the IPv4 address they reach).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, resolved by the proxy.
    Name(HostName),
    /// An address written as such.
    Ip(IpAddr),
}

impl Host {
    /// Parses a host as written in a URL authority: a name, a dotted-quad
    /// IPv4 address, or an IPv6 address in brackets.
    pub fn parse(s: &str) -> Result<Host, HostError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(HostError::BadIpv6)?;
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(canonical(IpAddr::V6(ip))))
                .map_err(|_| HostError::BadIpv6);
        }
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(Host::Ip(IpAddr::V4(ip)));
        }
        HostName::parse(s).map(Host::Name)
    }

    /// The host as it appears in records: the name, or the address without
    /// brackets.
    pub fn record_form(&self) -> String {
        match self {
            Host::Name(n) => n.0.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(&n.0),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// The address a connection is for, in the form its own host would be
/// reached: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes IPv4, since the
/// kernel delivers it to the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// What a box asked to reach: host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The host, normalized.
    pub host: Host,
    /// The port (the scheme's default when the request gave none).
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Result<String, HostError> {
        HostName::parse(s).map(|n| n.0)
    }

    #[test]
    fn names_are_normalized_to_one_spelling() {
        assert_eq!(name("PyPI.org").unwrap(), "pypi.org");
        assert_eq!(name("pypi.org.").unwrap(), "pypi.org");
        assert_eq!(name("XN--bcher-kva.example").unwrap(), "xn--bcher-kva.example");
        assert_eq!(name("_dmarc.example.com").unwrap(), "_dmarc.example.com");
        assert_eq!(name("localhost").unwrap(), "localhost");
    }

    #[test]
    fn non_ascii_names_are_refused_not_converted() {
        assert_eq!(name("bücher.example"), Err(HostError::NonAscii));
        // A Cyrillic "а" that looks like a Latin one.
        assert_eq!(name("pypi.\u{430}pp"), Err(HostError::NonAscii));
        assert_eq!(name("pypi.org\u{3002}"), Err(HostError::NonAscii));
    }

    #[test]
    fn malformed_names_name_the_label() {
        assert_eq!(name(""), Err(HostError::Empty));
        assert_eq!(name("."), Err(HostError::Empty));
        assert!(matches!(
            name("a..b"),
            Err(HostError::BadLabel { why: "empty", .. })
        ));
        assert!(matches!(name("pypi.org.."), Err(HostError::BadLabel { .. })));
        assert!(matches!(name("-a.org"), Err(HostError::BadLabel { .. })));
        assert!(matches!(name("a b.org"), Err(HostError::BadLabel { .. })));
        assert!(matches!(name("a%2e.org"), Err(HostError::BadLabel { .. })));
        assert!(matches!(name("user@host"), Err(HostError::BadLabel { .. })));
        assert!(matches!(name(&"a".repeat(64)), Err(HostError::BadLabel { .. })));
        let long = vec!["a".repeat(60); 5].join(".");
        assert_eq!(name(&long), Err(HostError::TooLong));
    }

    #[test]
    fn numbers_in_disguise_are_not_names() {
        for s in [
            "127.1",
            "2130706433",
            "0x7f000001",
            "0x7f.0.0.1",
            "017700000001",
            "1.2.3.04",
        ] {
            assert_eq!(name(s), Err(HostError::Numeric), "{s}");
        }
        assert!(name("1.2.3.example").is_ok());
        assert!(name("0xcafe.example").is_ok());
    }

    #[test]
    fn hosts_parse_literals_and_unwrap_ipv4_mapped_ones() {
        assert_eq!(
            Host::parse("127.0.0.1").unwrap(),
            Host::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(Host::parse("[::1]").unwrap(), Host::Ip("::1".parse().unwrap()));
        assert_eq!(
            Host::parse("[::ffff:127.0.0.1]").unwrap(),
            Host::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            Host::parse("[::FFFF:7f00:1]").unwrap(),
            Host::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(Host::parse("[fe80::1%25eth0]"), Err(HostError::BadIpv6));
        assert_eq!(Host::parse("[::1"), Err(HostError::BadIpv6));
        assert_eq!(Host::parse("127.0.0.01"), Err(HostError::Numeric));
        assert_eq!(Host::parse("[::1]").unwrap().to_string(), "[::1]");
        assert_eq!(Host::parse("[::1]").unwrap().record_form(), "::1");
    }
}
