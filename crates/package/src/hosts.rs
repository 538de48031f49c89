//! The grammar of a network allow-list entry, `host[:port]`: what a
//! template's `network.allow` and a manifest's `permissions.network` may
//! name. One copy, so a host a template may list and a host a plugin may
//! declare are the same language; the egress proxy parses its policy again
//! at run time and refuses the same entries.
//!
//! Must never: resolve a name or open anything; it only reads the string.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest entry, in characters (a DNS name's limit).
pub const HOST_ENTRY_MAX: usize = 253;

/// Whether IP literals may be named (`10.1.2.3:8080`, `[2001:db8::1]:443`).
/// Templates never may; plugins may when the operator allows it
/// (`policy.network_ip_literals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpLiterals {
    /// Names only.
    Refused,
    /// Dotted IPv4 and bracketed IPv6 addresses too.
    Allowed,
}

const IP_REFUSED: &str =
    "an IP address: an allow-list names hosts (the proxy resolves them and refuses private addresses)";

/// `s` quoted for a message, control and invisible characters escaped, cut
/// after 64 characters.
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    let more = if cut.len() < s.len() { "…" } else { "" };
    format!("`{}{more}`", crate::archive::escape(&cut))
}

fn shown_char(c: char) -> Cow<'static, str> {
    match c {
        ' ' => Cow::Borrowed("a space"),
        '`' => Cow::Borrowed("a backtick"),
        c if c.is_whitespace() || c.is_control() => Cow::Owned(format!("`{}`", c.escape_unicode())),
        c => Cow::Owned(shown(c.encode_utf8(&mut [0; 4]))),
    }
}

fn dns_label(l: &str) -> bool {
    (1..=63).contains(&l.len())
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

fn check_port(p: &str) -> Result<(), String> {
    let ok = !p.starts_with('0')
        && (1..=5).contains(&p.len())
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
    if ok {
        Ok(())
    } else {
        Err(format!("port {} is not a number from 1 to 65535", shown(p)))
    }
}

/// Check one allow-list entry: `host`, `host:port`, `*.domain[:port]` (one
/// leading label at most, under a domain of two labels or more), and, when
/// `ip` allows it, a dotted IPv4 or bracketed IPv6 address with an optional
/// port. The error says what is wrong, for a person.
pub fn check_host_entry(s: &str, ip: IpLiterals) -> Result<(), String> {
    let n = s.chars().count();
    if n == 0 {
        return Err("empty".into());
    }
    if n > HOST_ENTRY_MAX {
        return Err(format!("{n} characters: at most {HOST_ENTRY_MAX}"));
    }
    if s.contains("://") || s.contains('/') {
        return Err("a host name (`pypi.org`, `registry.npmjs.org:443`), not a URL".into());
    }
    if s.starts_with('[') || s.matches(':').count() > 1 {
        if ip == IpLiterals::Refused {
            return Err(IP_REFUSED.into());
        }
        let (inner, port) = s
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .ok_or("an IPv6 address is written in brackets: `[2001:db8::1]:443`")?;
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{} is not an IPv6 address", shown(inner)));
        }
        return match port {
            "" => Ok(()),
            p => check_port(p.strip_prefix(':').ok_or("expected `:port` after `]`")?),
        };
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port {
        check_port(p)?;
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("write the host name in lowercase".into());
    }
    let (wild, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    if name.contains('*') {
        return Err("one leading `*.` at most: `*.example.com`".into());
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels
        .iter()
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    {
        if ip == IpLiterals::Refused {
            return Err(IP_REFUSED.into());
        }
        if wild || name.parse::<Ipv4Addr>().is_err() {
            return Err(format!(
                "{} is not an IPv4 address in dotted form (four numbers from 0 to 255)",
                shown(host)
            ));
        }
        return Ok(());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')))
    {
        return Err(format!(
            "{} is not allowed in a host name: letters, digits, `-` and `.`",
            shown_char(c)
        ));
    }
    if labels.len() < 2 {
        return Err(if wild {
            "`*.` needs a domain under a top-level one: `*.example.com`".into()
        } else {
            "a single-label name: give a fully qualified host name such as `pypi.org`".into()
        });
    }
    if !labels.iter().all(|l| dns_label(l)) {
        return Err(
            "each dot-separated label is 1 to 63 letters, digits or `-`, not starting or ending with `-`"
                .into(),
        );
    }
    if !labels[labels.len() - 1].starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("the top-level label starts with a letter (IP addresses are not accepted)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pass_and_ip_literals_only_when_allowed() {
        for ok in [
            "api.github.com",
            "api.github.com:8443",
            "*.example.com",
            "xn--p1ai.xn--p1ai",
        ] {
            assert_eq!(check_host_entry(ok, IpLiterals::Refused), Ok(()), "{ok}");
            assert_eq!(check_host_entry(ok, IpLiterals::Allowed), Ok(()), "{ok}");
        }
        for ip in ["127.0.0.1", "10.1.2.3:8080", "[::1]", "[2001:db8::1]:443"] {
            assert_eq!(
                check_host_entry(ip, IpLiterals::Refused),
                Err(IP_REFUSED.into()),
                "{ip}"
            );
            assert_eq!(check_host_entry(ip, IpLiterals::Allowed), Ok(()), "{ip}");
        }
    }

    #[test]
    fn disguised_or_broken_addresses_are_refused_even_when_allowed() {
        for (bad, why) in [
            ("127.1", "dotted form"),
            ("2130706433", "dotted form"),
            ("256.0.0.1", "dotted form"),
            ("*.1.2.3", "dotted form"),
            ("[::1", "brackets"),
            ("[zz::1]:80", "not an IPv6 address"),
            ("[::1]:0", "1 to 65535"),
            ("[::1]80", "`:port`"),
            ("::1", "brackets"),
        ] {
            let e = check_host_entry(bad, IpLiterals::Allowed).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn wildcards_urls_and_odd_names_are_refused() {
        for (bad, why) in [
            ("", "empty"),
            ("https://api.github.com", "not a URL"),
            ("a.*.example.com", "one leading"),
            ("*.com", "top-level"),
            ("localhost", "single-label"),
            ("API.github.com", "lowercase"),
            ("api.github.com:0", "1 to 65535"),
            ("exa mple.com", "a space"),
        ] {
            let e = check_host_entry(bad, IpLiterals::Allowed).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
