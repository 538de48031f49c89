//! Which resolved addresses a box may reach: the SSRF rules.
//!
//! An address is judged in its canonical form (IPv4-mapped IPv6 is the IPv4
//! address it reaches; NAT64 and 6to4 addresses are also judged by the IPv4
//! address they embed). The unspecified address, multicast and broadcast are
//! never allowed; every other refused range (loopback, private, link-local,
//! reserved) is allowed only inside a CIDR the operator lists; an address of
//! the host's own interfaces is allowed only when the operator lists exactly
//! that address (a /32 or /128), because a wider range that happens to hold
//! the host would otherwise open every service the host listens on.
//!
//! Must never: resolve a name, or let an address through because it is
//! written in another form.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::host::canonical;
use crate::policy::Cidr;
use crate::record::{Reason, Refusal};

/// The refused range an address falls in: the reason and the range's name.
pub(crate) type Class = (Reason, &'static str);

/// The refused range `ip` falls in, or `None` for a public unicast address.
pub(crate) fn classify(ip: IpAddr) -> Option<Class> {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    u128::from(ip) & mask == u128::from(net) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Class> {
    use Reason::*;
    const TABLE: &[([u8; 4], u32, Reason, &str)] = &[
        (
            [0, 0, 0, 0],
            8,
            Unspecified,
            "\"this network\" 0.0.0.0/8, which reaches the host itself",
        ),
        ([127, 0, 0, 0], 8, Loopback, "loopback 127.0.0.0/8"),
        ([10, 0, 0, 0], 8, Private, "private 10.0.0.0/8 (RFC 1918)"),
        ([172, 16, 0, 0], 12, Private, "private 172.16.0.0/12 (RFC 1918)"),
        ([192, 168, 0, 0], 16, Private, "private 192.168.0.0/16 (RFC 1918)"),
        (
            [100, 64, 0, 0],
            10,
            Private,
            "shared address space 100.64.0.0/10 (CGNAT)",
        ),
        (
            [169, 254, 0, 0],
            16,
            LinkLocal,
            "link-local 169.254.0.0/16 (cloud metadata services live here)",
        ),
        (
            [192, 0, 0, 0],
            24,
            Reserved,
            "IETF protocol assignments 192.0.0.0/24",
        ),
        ([192, 0, 2, 0], 24, Reserved, "documentation 192.0.2.0/24"),
        ([198, 51, 100, 0], 24, Reserved, "documentation 198.51.100.0/24"),
        ([203, 0, 113, 0], 24, Reserved, "documentation 203.0.113.0/24"),
        (
            [192, 88, 99, 0],
            24,
            Reserved,
            "6to4 relay anycast 192.88.99.0/24 (deprecated)",
        ),
        ([198, 18, 0, 0], 15, Reserved, "benchmarking 198.18.0.0/15"),
        ([224, 0, 0, 0], 4, Multicast, "multicast 224.0.0.0/4"),
        (
            [255, 255, 255, 255],
            32,
            Broadcast,
            "limited broadcast 255.255.255.255",
        ),
        ([240, 0, 0, 0], 4, Reserved, "reserved 240.0.0.0/4"),
    ];
    TABLE
        .iter()
        .find(|(net, prefix, _, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, reason, name)| (*reason, *name))
}

fn classify_v6(ip: Ipv6Addr) -> Option<Class> {
    use Reason::*;
    let seg = ip.segments();
    if ip.is_unspecified() {
        return Some((
            Unspecified,
            "the unspecified address ::, which reaches the host itself",
        ));
    }
    if ip.is_loopback() {
        return Some((Loopback, "loopback ::1"));
    }
    // Forms that embed an IPv4 address which a translator on the path
    // would reach: judge them by that address first.
    let embedded = if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        Some(Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32))
    } else if seg[0] == 0x2002 {
        Some(Ipv4Addr::from(((u128::from(ip) >> 80) & 0xffff_ffff) as u32))
    } else {
        None
    };
    if let Some(v4) = embedded
        && let Some((reason, _)) = classify_v4(v4)
    {
        return Some((reason, "an IPv6 form (NAT64 or 6to4) of a refused IPv4 address"));
    }
    const TABLE: &[(Ipv6Addr, u32, Reason, &str)] = &[
        (
            Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0),
            96,
            Reserved,
            "IPv4-compatible ::/96 (deprecated)",
        ),
        (
            Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
            48,
            Private,
            "local-use NAT64 64:ff9b:1::/48",
        ),
        (
            Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
            64,
            Reserved,
            "discard-only 100::/64",
        ),
        (
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
            32,
            Reserved,
            "documentation 2001:db8::/32",
        ),
        (
            Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
            20,
            Reserved,
            "documentation 3fff::/20",
        ),
        (
            Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
            23,
            Reserved,
            "IETF protocol assignments 2001::/23 (Teredo among them)",
        ),
        (
            Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0),
            16,
            Reserved,
            "SRv6 SIDs 5f00::/16",
        ),
        (
            Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
            7,
            Private,
            "unique local fc00::/7",
        ),
        (
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            10,
            LinkLocal,
            "link-local fe80::/10",
        ),
        (
            Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
            10,
            Reserved,
            "site-local fec0::/10 (deprecated)",
        ),
        (
            Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
            8,
            Multicast,
            "multicast ff00::/8",
        ),
    ];
    if let Some((_, _, reason, name)) = TABLE.iter().find(|(net, prefix, _, _)| in_v6(ip, *net, *prefix)) {
        return Some((*reason, *name));
    }
    // Global unicast is 2000::/3 (64:ff9b::/96 public targets excepted,
    // handled above); everything else is unallocated.
    if in_v6(ip, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) || embedded.is_some() {
        None
    } else {
        Some((Reserved, "outside global unicast 2000::/3"))
    }
}

/// Ranges no operator CIDR can open: they are not destinations (multicast,
/// broadcast) or they mean the host itself (unspecified).
fn never_allowed(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::Unspecified | Reason::Multicast | Reason::Broadcast
    )
}

/// The host's own interface addresses (canonical), read fresh: interfaces
/// come and go.
pub(crate) fn host_addresses() -> io::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
        for addr in [ifa.address, ifa.broadcast].into_iter().flatten() {
            if let Some(v4) = addr.as_sockaddr_in() {
                out.push(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                out.push(canonical(IpAddr::V6(v6.ip())));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Judges one resolved address: `Ok` with the canonical address to connect
/// to, or the refusal naming the range.
pub(crate) fn check(ip: IpAddr, cidrs: &[Cidr], host: &[IpAddr]) -> Result<IpAddr, Refusal> {
    let ip = canonical(ip);
    if let Some((reason, range)) = classify(ip) {
        if never_allowed(reason) {
            return Err(Refusal::new(reason, format!("{ip} is {range}; never allowed")));
        }
        if !cidrs.iter().any(|c| c.contains(ip)) {
            return Err(Refusal::new(
                reason,
                format!("{ip} is {range}; no allowed CIDR of the operator covers it"),
            ));
        }
    }
    if !ip.is_loopback() && host.contains(&ip) && !cidrs.iter().any(|c| c.is_exactly(ip)) {
        return Err(Refusal::new(
            Reason::HostAddress,
            format!(
                "{ip} is one of this host's own addresses; only an allowed CIDR naming exactly \
                 that address opens it"
            ),
        ));
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> Option<Reason> {
        classify(s.parse().unwrap()).map(|c| c.0)
    }

    #[test]
    fn every_dangerous_ipv4_range_is_classified() {
        use Reason::*;
        for (ip, want) in [
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", Private),
            ("100.127.255.255", Private),
            ("169.254.169.254", LinkLocal),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.0.2.1", Reserved),
            ("198.51.100.1", Reserved),
            ("203.0.113.1", Reserved),
            ("198.18.0.1", Reserved),
            ("192.0.0.8", Reserved),
        ] {
            assert_eq!(reason(ip), Some(want), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "151.101.0.223",
            "172.32.0.1",
            "100.128.0.1",
            "11.0.0.1",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges_and_forms_of_ipv4_are_classified() {
        use Reason::*;
        for (ip, want) in [
            ("::1", Loopback),
            ("::", Unspecified),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:0.0.0.0", Unspecified),
            ("::127.0.0.1", Reserved),
            ("::8.8.8.8", Reserved),
            ("64:ff9b::7f00:1", Loopback),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("64:ff9b:1::1", Private),
            ("2002:7f00:1::1", Loopback),
            ("2002:a9fe:a9fe::", LinkLocal),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Reserved),
            ("ff02::1", Multicast),
            ("2001:db8::1", Reserved),
            ("3fff::1", Reserved),
            ("2001::1", Reserved),
            ("100::1", Reserved),
            ("4000::1", Reserved),
        ] {
            assert_eq!(reason(ip), Some(want), "{ip}");
        }
        for ip in [
            "2a00:1450:4001::1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn operator_cidrs_open_ranges_but_not_the_unopenable_ones() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            check(ip("127.0.0.1"), &[], &[]).unwrap_err().reason,
            Reason::Loopback
        );
        assert_eq!(
            check(ip("127.0.0.1"), &cidrs(&["127.0.0.1/32"]), &[]).unwrap(),
            ip("127.0.0.1")
        );
        // The mapped form is judged, and connected to, as IPv4.
        assert_eq!(
            check(ip("::ffff:127.0.0.1"), &cidrs(&["127.0.0.0/8"]), &[]).unwrap(),
            ip("127.0.0.1")
        );
        assert_eq!(
            check(ip("::ffff:127.0.0.1"), &cidrs(&["::1/128"]), &[])
                .unwrap_err()
                .reason,
            Reason::Loopback
        );
        for never in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255"] {
            let err = check(ip(never), &cidrs(&["0.0.0.0/0", "::/0"]), &[]).unwrap_err();
            assert!(err.message.contains("never allowed"), "{never}: {}", err.message);
        }
    }

    #[test]
    fn the_hosts_own_addresses_need_an_exact_cidr() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let host = [ip("10.0.0.5"), ip("203.0.113.9"), ip("127.0.0.1")];
        let lan = cidrs(&["10.0.0.0/8", "203.0.113.0/24"]);
        assert_eq!(
            check(ip("10.0.0.5"), &lan, &host).unwrap_err().reason,
            Reason::HostAddress
        );
        assert_eq!(check(ip("10.0.0.6"), &lan, &host).unwrap(), ip("10.0.0.6"));
        assert_eq!(
            check(ip("203.0.113.9"), &lan, &host).unwrap_err().reason,
            Reason::HostAddress
        );
        let exact = cidrs(&["10.0.0.0/8", "10.0.0.5/32"]);
        assert_eq!(check(ip("10.0.0.5"), &exact, &host).unwrap(), ip("10.0.0.5"));
        // Loopback is judged by its range, which the operator opened.
        assert!(check(ip("127.0.0.1"), &cidrs(&["127.0.0.0/8"]), &host).is_ok());
    }

    #[test]
    fn the_hosts_addresses_include_loopback() {
        let addrs = host_addresses().unwrap();
        assert!(addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{addrs:?}");
    }
}
