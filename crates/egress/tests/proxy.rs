//! The proxy end to end, on real loopback sockets: what passes, what is
//! refused and why, the caps, and stop.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use warden_egress::{Limits, Policy, Reason, Verdict};

#[test]
fn an_allowed_tunnel_passes_and_its_bytes_are_counted() {
    let up = echo("127.0.0.1:0");
    let (handle, addr) = proxy(allow_upstream(up.addr.port()));
    let (head, mut s) = connect(addr, &format!("upstream.test:{}", up.addr.port()));
    assert_eq!(head.status, 200, "{head:?}");
    round_trip(&mut s, &[7u8; 1000]);
    round_trip(&mut s, b"second");
    finish(s);
    let r = only_record(&handle);
    assert_eq!(r.verdict, Verdict::Allowed { cut: None });
    assert_eq!(r.method.as_deref(), Some("CONNECT"));
    assert_eq!(r.host.as_deref(), Some("upstream.test"));
    assert_eq!(r.port, Some(up.addr.port()));
    assert_eq!(r.address, Some(up.addr));
    assert_eq!((r.bytes_up, r.bytes_down), (1006, 1006));
    assert!(r.duration_ms > 0.0 && r.started_at > 1_600_000_000_000, "{r:?}");
    assert_eq!(r.id, 1);
}

#[test]
fn bytes_sent_with_the_connect_request_reach_the_upstream() {
    let up = echo("127.0.0.1:0");
    let (handle, addr) = proxy(allow_upstream(up.addr.port()));
    let mut s = client(addr);
    // A client that does not wait for the 200 before its first bytes.
    write!(
        s,
        "CONNECT upstream.test:{} HTTP/1.1\r\n\r\nearly",
        up.addr.port()
    )
    .unwrap();
    assert_eq!(read_head(&mut s).status, 200);
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"early");
    finish(s);
    assert_eq!(only_record(&handle).bytes_up, 5);
}

#[test]
fn an_operator_allowed_ipv6_literal_passes_over_ipv6() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        eprintln!("\n\n*** SKIPPED: ::1 cannot be bound on this machine ***\n");
        return;
    };
    drop(listener);
    let up = echo("[::1]:0");
    let port = up.addr.port();
    let policy = Policy::new([format!("[::1]:{port}")])
        .unwrap()
        .allow_cidr("::1/128")
        .unwrap();
    let (handle, addr) = proxy(policy);
    let (head, mut s) = connect(addr, &format!("[::1]:{port}"));
    assert_eq!(head.status, 200, "{head:?}");
    round_trip(&mut s, b"over ipv6");
    finish(s);
    let r = only_record(&handle);
    assert!(r.allowed(), "{r:#?}");
    assert_eq!(r.host.as_deref(), Some("::1"));
    assert_eq!(r.address, Some(up.addr));
}

#[test]
fn plain_http_is_forwarded_to_the_admitted_host_only() {
    let up = http_upstream();
    let port = up.addr.port();
    let (handle, addr) = proxy(allow_upstream(port));
    let request = format!(
        "POST http://UPSTREAM.test:{port}/simple/six/?x=1 HTTP/1.1\r\nHost: evil.example\r\n\
         Proxy-Authorization: Basic c2VjcmV0\r\nConnection: keep-alive, x-drop-me\r\n\
         X-Drop-Me: 1\r\nX-Keep: 2\r\nContent-Length: 5\r\n\r\nhello"
    );
    let (head, body) = exchange(addr, request.as_bytes());
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(header(&head.text, "x-upstream").as_deref(), Some("yes"));
    assert_eq!(body, "hello from upstream: POST /simple/six/?x=1 HTTP/1.1");
    let seen = up.settled();
    assert_eq!(seen.len(), 1);
    let got = &seen[0];
    assert!(got.starts_with("POST /simple/six/?x=1 HTTP/1.1\r\n"), "{got}");
    assert_eq!(header(got, "host"), Some(format!("upstream.test:{port}")));
    assert_eq!(header(got, "proxy-authorization"), None, "{got}");
    assert_eq!(header(got, "x-drop-me"), None, "{got}");
    assert_eq!(header(got, "x-keep").as_deref(), Some("2"));
    assert!(got.ends_with("\r\n\r\nhello"), "{got}");
    let r = only_record(&handle);
    assert_eq!(r.verdict, Verdict::Allowed { cut: None });
    assert_eq!(r.method.as_deref(), Some("POST"));
    assert_eq!(r.address, Some(up.addr));
    assert_eq!(r.bytes_up as usize, got.len());
    assert!(r.bytes_down > body.len() as u64, "{r:?}");
}

#[test]
fn a_box_that_half_closes_after_its_request_gets_the_response() {
    let up = http_upstream();
    let port = up.addr.port();
    let (handle, addr) = proxy(allow_upstream(port));
    let mut s = client(addr);
    write!(s, "GET http://upstream.test:{port}/half HTTP/1.1\r\n\r\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let head = read_head(&mut s);
    assert_eq!(head.status, 200, "{head:?}");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    assert_eq!(body, "hello from upstream: GET /half HTTP/1.1");
    assert!(only_record(&handle).allowed());
}

#[test]
fn a_second_request_on_a_forwarded_connection_goes_nowhere() {
    let up = http_upstream();
    let port = up.addr.port();
    let (handle, addr) = proxy(allow_upstream(port));
    let raw = format!(
        "GET http://upstream.test:{port}/one HTTP/1.1\r\n\r\n\
         GET http://other.test/two HTTP/1.1\r\nHost: other.test\r\n\r\n"
    );
    let (head, body) = exchange(addr, raw.as_bytes());
    assert_eq!(head.status, 200);
    assert_eq!(
        body, "hello from upstream: GET /one HTTP/1.1",
        "a second answer came back"
    );
    let r = only_record(&handle);
    assert!(r.allowed());
    thread::sleep(Duration::from_millis(500));
    let seen = up.settled();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        !seen[0].contains("/two"),
        "the smuggled request reached the upstream: {seen:?}"
    );
}

#[test]
fn a_host_not_on_the_list_is_refused() {
    let up = echo("127.0.0.1:0");
    let (handle, addr) = proxy(
        allow_upstream(up.addr.port())
            .pin("other.test", &[common::LOCALHOST])
            .unwrap(),
    );
    let (head, _s) = connect(addr, &format!("other.test:{}", up.addr.port()));
    let r = only_record(&handle);
    assert_refused(&head, &r, Reason::HostNotAllowed);
    assert_eq!(r.host.as_deref(), Some("other.test"));
    assert!(matches!(&r.verdict, Verdict::Refused { message, .. } if message.contains("allow-list")));
    assert_eq!(up.accepted.load(Ordering::SeqCst), 0);
}

#[test]
fn a_port_not_on_the_list_is_refused() {
    let up = echo("127.0.0.1:0");
    let port = up.addr.port();
    let (handle, addr) = proxy(allow_upstream(port));
    let (head, _s) = connect(addr, &format!("upstream.test:{}", port.wrapping_add(1).max(1)));
    assert_refused(&head, &only_record(&handle), Reason::PortNotAllowed);

    // An entry without a port allows 443 to a tunnel, nothing else.
    let policy = Policy::new(["upstream.test"])
        .unwrap()
        .pin("upstream.test", &[common::LOCALHOST])
        .unwrap()
        .allow_cidr("127.0.0.1/32")
        .unwrap();
    let (handle, addr) = proxy(policy);
    let (head, _s) = connect(addr, &format!("upstream.test:{port}"));
    assert_refused(&head, &only_record(&handle), Reason::PortNotAllowed);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 0);
}

/// One refused CONNECT through a fresh proxy: the status, header and record.
fn refused_connect(policy: Policy, target: &str, reason: Reason) {
    let (handle, addr) = proxy(policy);
    let (head, _s) = connect(addr, target);
    let r = only_record(&handle);
    assert_refused(&head, &r, reason);
    let Verdict::Refused { message, .. } = &r.verdict else {
        unreachable!()
    };
    assert!(!message.is_empty());
    let body = {
        let mut s = _s;
        let mut b = String::new();
        let _ = s.read_to_string(&mut b);
        b
    };
    assert!(body.contains(reason.as_str()), "{target}: {body}");
}

#[test]
fn loopback_metadata_and_other_forbidden_addresses_are_refused() {
    let up = echo("127.0.0.1:0");
    let port = up.addr.port();
    let literal = |entry: &str| Policy::new([entry]).unwrap();
    // IP literals the allow-list names, without an opening CIDR.
    refused_connect(
        literal(&format!("127.0.0.1:{port}")),
        &format!("127.0.0.1:{port}"),
        Reason::Loopback,
    );
    refused_connect(
        literal("169.254.169.254:80"),
        "169.254.169.254:80",
        Reason::LinkLocal,
    );
    refused_connect(
        literal(&format!("[::1]:{port}")),
        &format!("[::1]:{port}"),
        Reason::Loopback,
    );
    // The mapped form is 127.0.0.1, which an opening of ::1 does not cover.
    refused_connect(
        literal(&format!("[::ffff:127.0.0.1]:{port}"))
            .allow_cidr("::1/128")
            .unwrap(),
        &format!("[::ffff:127.0.0.1]:{port}"),
        Reason::Loopback,
    );
    // 0.0.0.0 reaches the host itself: no CIDR opens it.
    refused_connect(
        literal(&format!("0.0.0.0:{port}"))
            .allow_cidr("0.0.0.0/0")
            .unwrap(),
        &format!("0.0.0.0:{port}"),
        Reason::Unspecified,
    );
    // Names that resolve to forbidden addresses (pinned: the resolver the
    // test controls).
    for (ip, reason) in [
        ("127.0.0.1", Reason::Loopback),
        ("169.254.169.254", Reason::LinkLocal),
        ("::ffff:169.254.169.254", Reason::LinkLocal),
        ("fe80::1", Reason::LinkLocal),
        ("10.0.0.1", Reason::Private),
        ("100.64.0.1", Reason::Private),
        ("fd00::1", Reason::Private),
        ("192.0.2.1", Reason::Reserved),
        ("224.0.0.1", Reason::Multicast),
        ("255.255.255.255", Reason::Broadcast),
        ("::", Reason::Unspecified),
    ] {
        let policy = Policy::new([format!("trick.test:{port}")])
            .unwrap()
            .pin("trick.test", &[ip.parse().unwrap()])
            .unwrap();
        refused_connect(policy, &format!("trick.test:{port}"), reason);
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        0,
        "a refused connection reached the upstream"
    );
}

#[test]
fn a_name_the_system_resolves_to_loopback_is_refused() {
    let up = echo("127.0.0.1:0");
    let port = up.addr.port();
    // `localhost` comes from the system resolver (/etc/hosts), not a pin.
    refused_connect(
        Policy::new([format!("localhost:{port}")]).unwrap(),
        &format!("localhost:{port}"),
        Reason::Loopback,
    );
    assert_eq!(up.accepted.load(Ordering::SeqCst), 0);
}

#[test]
fn the_metadata_address_is_refused_to_plain_http_too() {
    let (handle, addr) = proxy(Policy::new(["169.254.169.254:80"]).unwrap());
    let (head, _) = exchange(
        addr,
        b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
    );
    assert_refused(&head, &only_record(&handle), Reason::LinkLocal);

    let (handle, addr) = proxy(Policy::new(["pypi.org"]).unwrap());
    let (head, _) = exchange(addr, b"GET http://169.254.169.254/ HTTP/1.1\r\n\r\n");
    assert_refused(&head, &only_record(&handle), Reason::IpLiteral);
}

#[test]
fn ip_literals_are_refused_unless_the_list_names_them() {
    let up = echo("127.0.0.1:0");
    let port = up.addr.port();
    // The range is open, but the list names only the host name.
    for target in [
        format!("127.0.0.1:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("2130706433:{port}"),
        format!("127.1:{port}"),
        format!("0x7f.0.0.1:{port}"),
    ] {
        refused_connect(allow_upstream(port), &target, Reason::IpLiteral);
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 0);
    // Named by the operator (and opened): it passes.
    let policy = Policy::new([format!("127.0.0.1:{port}")])
        .unwrap()
        .allow_cidr("127.0.0.1/32")
        .unwrap();
    let (handle, addr) = proxy(policy);
    let (head, mut s) = connect(addr, &format!("127.0.0.1:{port}"));
    assert_eq!(head.status, 200);
    round_trip(&mut s, b"literal");
    finish(s);
    assert!(only_record(&handle).allowed());
}

/// The host's non-loopback address that routes outward, if it has one.
fn own_address() -> Option<IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn the_hosts_own_address_is_refused_unless_named_exactly() {
    let Some(own) = own_address() else {
        eprintln!("\n\n*** SKIPPED: this machine has no non-loopback IPv4 address ***\n");
        return;
    };
    let up = echo("0.0.0.0:0");
    let port = up.addr.port();
    let IpAddr::V4(v4) = own else { unreachable!() };
    let [a, b, ..] = v4.octets();
    let wide = format!("{a}.{b}.0.0/16");
    // A range that happens to hold the host does not open the host.
    let policy = Policy::new([format!("{own}:{port}"), format!("self.test:{port}")])
        .unwrap()
        .pin("self.test", &[own])
        .unwrap()
        .allow_cidr(&wide)
        .unwrap();
    refused_connect(policy.clone(), &format!("{own}:{port}"), Reason::HostAddress);
    refused_connect(policy.clone(), &format!("self.test:{port}"), Reason::HostAddress);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 0);
    // Named exactly, it opens.
    let (handle, addr) = proxy(policy.allow_cidr(&format!("{own}/32")).unwrap());
    let (head, mut s) = connect(addr, &format!("self.test:{port}"));
    assert_eq!(head.status, 200, "{head:?}");
    round_trip(&mut s, b"own");
    finish(s);
    assert_eq!(only_record(&handle).address, Some(SocketAddr::new(own, port)));
}

#[test]
fn refused_addresses_of_a_name_are_skipped_and_the_allowed_one_is_used() {
    let up = echo("127.0.0.1:0");
    let port = up.addr.port();
    let policy = Policy::new([format!("mixed.test:{port}")])
        .unwrap()
        .pin(
            "mixed.test",
            &[
                "169.254.169.254".parse().unwrap(),
                "127.0.0.2".parse().unwrap(),
                common::LOCALHOST,
            ],
        )
        .unwrap()
        .allow_cidr("127.0.0.1")
        .unwrap();
    let (handle, addr) = proxy(policy);
    let (head, mut s) = connect(addr, &format!("mixed.test:{port}"));
    assert_eq!(head.status, 200, "{head:?}");
    round_trip(&mut s, b"x");
    finish(s);
    assert_eq!(only_record(&handle).address, Some(up.addr));
}

#[test]
fn malformed_and_non_proxy_requests_get_a_clear_4xx() {
    let cases: [(&[u8], Reason); 7] = [
        (b"HELLO\r\n\r\n", Reason::MalformedRequest),
        (
            b"GET / HTTP/1.1\r\nHost: upstream.test\r\n\r\n",
            Reason::OriginForm,
        ),
        (
            b"GET https://upstream.test/ HTTP/1.1\r\n\r\n",
            Reason::UnsupportedScheme,
        ),
        (b"CONNECT upstream.test HTTP/1.1\r\n\r\n", Reason::BadTarget),
        (b"GET upstream.test:80 HTTP/1.1\r\n\r\n", Reason::BadTarget),
        (b"CONNECT -x.test:443 HTTP/1.1\r\n\r\n", Reason::InvalidHost),
        // Non-ASCII names are refused, never converted: the request line
        // itself is not valid HTTP.
        (
            "CONNECT bücher.example:443 HTTP/1.1\r\n\r\n".as_bytes(),
            Reason::MalformedRequest,
        ),
    ];
    for (raw, reason) in cases {
        let (handle, addr) = proxy(Policy::new(["upstream.test"]).unwrap());
        let mut s = client(addr);
        s.write_all(raw).unwrap();
        let head = read_head(&mut s);
        let r = only_record(&handle);
        assert_eq!(
            head.status,
            reason.status(),
            "{}: {head:?}",
            String::from_utf8_lossy(raw)
        );
        assert_eq!(
            r.reason(),
            Some(reason),
            "{}: {r:#?}",
            String::from_utf8_lossy(raw)
        );
        assert!(!r.allowed());
    }
}

#[test]
fn a_connection_without_a_request_is_recorded() {
    let (handle, addr) = proxy(Policy::new(["upstream.test"]).unwrap());
    drop(client(addr));
    let r = only_record(&handle);
    assert_eq!(r.reason(), Some(Reason::NoRequest), "{r:#?}");
    assert_eq!(r.method, None);
}

#[test]
fn an_oversized_head_is_refused() {
    let limits = Limits {
        max_header_bytes: 8192,
        ..Limits::default()
    };
    let (handle, addr) = proxy(Policy::new(["upstream.test"]).unwrap().with_limits(limits));
    let mut s = client(addr);
    let mut raw = b"GET http://upstream.test/ HTTP/1.1\r\nX-Big: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 20_000));
    let _ = s.write_all(&raw);
    let head = read_head(&mut s);
    assert_refused_by_proxy(&head, 431);
    assert_eq!(only_record(&handle).reason(), Some(Reason::HeaderTooLarge));
}

/// The proxy's own early answers carry no reason header (hyper writes
/// them); the status says it.
fn assert_refused_by_proxy(head: &Head, status: u16) {
    assert_eq!(head.status, status, "{head:?}");
}

#[test]
fn an_endless_header_is_cut_at_the_limit() {
    let (handle, addr) = proxy(Policy::new(["upstream.test"]).unwrap());
    let mut s = client(addr);
    s.write_all(b"CONNECT upstream.test:443 HTTP/1.1\r\n").unwrap();
    let mut writer = s.try_clone().unwrap();
    let feeder = thread::spawn(move || {
        let line = b"X-Endless: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if writer.write_all(line).is_err() {
                return true;
            }
        }
        false
    });
    let head = read_head(&mut s);
    assert_refused_by_proxy(&head, 431);
    assert!(feeder.join().unwrap(), "the proxy kept reading an endless header");
    let r = only_record(&handle);
    assert_eq!(r.reason(), Some(Reason::HeaderTooLarge), "{r:#?}");
}

#[test]
fn a_slow_head_is_cut_at_the_header_timeout() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (handle, addr) = proxy(Policy::new(["upstream.test"]).unwrap().with_limits(limits));
    let mut s = client(addr);
    s.write_all(b"CONNECT upstream.test:443 HTTP/1.1\r\n").unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    let r = only_record(&handle);
    assert_eq!(r.reason(), Some(Reason::HeaderTimeout), "{r:#?}");
}

#[test]
fn the_concurrency_cap_refuses_and_frees_up() {
    let up = echo("127.0.0.1:0");
    let port = up.addr.port();
    let limits = Limits {
        max_concurrent: 2,
        ..Limits::default()
    };
    let (handle, addr) = proxy(allow_upstream(port).with_limits(limits));
    let target = format!("upstream.test:{port}");
    let (h1, mut a) = connect(addr, &target);
    let (h2, b) = connect(addr, &target);
    assert_eq!((h1.status, h2.status), (200, 200));
    let (h3, _c) = connect(addr, &target);
    assert_eq!(h3.status, 429, "{h3:?}");
    assert_eq!(h3.reason().as_deref(), Some("concurrency_cap"));
    round_trip(&mut a, b"still alive");
    finish(b);
    let deadline = Instant::now() + Duration::from_secs(5);
    while handle.live() >= 2 {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(10));
    }
    let (h4, d) = connect(addr, &target);
    assert_eq!(h4.status, 200);
    finish(a);
    finish(d);
    let all = records(&handle, 4);
    let refused: Vec<_> = all.iter().filter(|r| !r.allowed()).collect();
    assert_eq!(refused.len(), 1, "{all:#?}");
    assert_eq!(refused[0].reason(), Some(Reason::ConcurrencyCap));
    assert_eq!(refused[0].id, 3);
}

#[test]
fn the_connection_cap_refuses_past_the_total() {
    let up = echo("127.0.0.1:0");
    let port = up.addr.port();
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let (handle, addr) = proxy(allow_upstream(port).with_limits(limits));
    let target = format!("upstream.test:{port}");
    for _ in 0..2 {
        let (h, s) = connect(addr, &target);
        assert_eq!(h.status, 200);
        finish(s);
    }
    let (h, _s) = connect(addr, &target);
    assert_eq!(h.status, 429);
    assert_eq!(h.reason().as_deref(), Some("connection_cap"));
    let all = records(&handle, 3);
    assert_eq!(all[2].reason(), Some(Reason::ConnectionCap), "{all:#?}");
}

#[test]
fn the_byte_cap_cuts_the_tunnel_and_refuses_the_next() {
    let up = echo("127.0.0.1:0");
    let port = up.addr.port();
    let limits = Limits {
        max_bytes: 1000,
        ..Limits::default()
    };
    let (handle, addr) = proxy(allow_upstream(port).with_limits(limits));
    let target = format!("upstream.test:{port}");
    let (h, mut s) = connect(addr, &target);
    assert_eq!(h.status, 200);
    s.write_all(&[1u8; 600]).unwrap();
    let mut back = Vec::new();
    let _ = s.read_to_end(&mut back);
    assert_eq!(back.len(), 400, "the box got more than the cap allowed");
    let r = only_record(&handle);
    assert_eq!((r.bytes_up, r.bytes_down), (600, 400));
    assert_eq!(r.reason(), Some(Reason::ByteCap), "{r:#?}");
    assert!(r.allowed());

    let (h, _s) = connect(addr, &target);
    assert_eq!(h.status, 429);
    assert_eq!(h.reason().as_deref(), Some("byte_cap"));
    assert_eq!(records(&handle, 2)[1].reason(), Some(Reason::ByteCap));
}

#[test]
fn an_upstream_that_does_not_answer_hits_the_connect_timeout() {
    // A listener whose accept queue is full drops new SYNs: connecting to
    // it hangs, on loopback, without any outside network.
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, getsockname, listen, socket,
    };
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::empty(), None).unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(127, 0, 0, 1, 0),
    )
    .unwrap();
    listen(&fd, Backlog::new(0).unwrap()).unwrap();
    let bound: SockaddrIn = getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd)).unwrap();
    let port = bound.port();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let mut fillers = Vec::new();
    loop {
        match TcpStream::connect_timeout(&target, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
        assert!(fillers.len() < 16, "the accept queue never filled");
    }
    let limits = Limits {
        connect_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (handle, addr) = proxy(allow_upstream(port).with_limits(limits));
    let start = Instant::now();
    let (head, _s) = connect(addr, &format!("upstream.test:{port}"));
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    assert_refused(&head, &only_record(&handle), Reason::ConnectTimeout);
    drop(fd);
}

#[test]
fn a_closed_port_is_a_connect_failure() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (handle, addr) = proxy(allow_upstream(port));
    let (head, _s) = connect(addr, &format!("upstream.test:{port}"));
    assert_refused(&head, &only_record(&handle), Reason::ConnectFailed);
}

#[test]
fn an_upstream_that_hangs_up_mid_request_is_a_502_and_a_cut() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            drop(s);
        }
    });
    let (handle, addr) = proxy(allow_upstream(port));
    let (head, _) = exchange(
        addr,
        format!("GET http://upstream.test:{port}/ HTTP/1.1\r\n\r\n").as_bytes(),
    );
    assert_eq!(head.status, 502, "{head:?}");
    assert_eq!(head.reason().as_deref(), Some("upstream_error"));
    let r = only_record(&handle);
    assert!(r.allowed(), "{r:#?}");
    assert_eq!(r.reason(), Some(Reason::UpstreamError));
}

#[test]
fn an_idle_tunnel_is_cut() {
    let up = echo("127.0.0.1:0");
    let port = up.addr.port();
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (handle, addr) = proxy(allow_upstream(port).with_limits(limits));
    let (h, mut s) = connect(addr, &format!("upstream.test:{port}"));
    assert_eq!(h.status, 200);
    round_trip(&mut s, b"one");
    thread::sleep(Duration::from_millis(150));
    round_trip(&mut s, b"activity resets the clock");
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let r = only_record(&handle);
    assert_eq!(r.reason(), Some(Reason::IdleTimeout), "{r:#?}");
    assert!(r.allowed());
}

#[test]
fn stop_cuts_a_live_tunnel_and_closes_the_listener() {
    let up = echo("127.0.0.1:0");
    let port = up.addr.port();
    let (handle, addr) = proxy(allow_upstream(port));
    let (h, mut s) = connect(addr, &format!("upstream.test:{port}"));
    assert_eq!(h.status, 200);
    round_trip(&mut s, b"before stop");
    // A second connection that never finishes its request.
    let mut idle = client(addr);
    idle.write_all(b"CONNECT upstream.test").unwrap();
    thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let report = handle.stop();
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    let mut rest = Vec::new();
    let n = s.read_to_end(&mut rest);
    assert!(
        matches!(n, Ok(0)) || n.is_err(),
        "the tunnel is still open: {n:?}"
    );
    assert_eq!(report.connections.len(), 2, "{report:#?}");
    let tunnel = &report.connections[0];
    assert!(tunnel.allowed());
    assert_eq!(tunnel.reason(), Some(Reason::Stopped));
    assert_eq!(tunnel.bytes_up, 11);
    assert_eq!(report.connections[1].reason(), Some(Reason::Stopped));
    assert!(!report.connections[1].allowed());
    assert!(TcpStream::connect(addr).is_err(), "the listener still accepts");
}

#[test]
fn dropping_the_handle_stops_the_proxy() {
    let up = echo("127.0.0.1:0");
    let port = up.addr.port();
    let (handle, addr) = proxy(allow_upstream(port));
    let (h, mut s) = connect(addr, &format!("upstream.test:{port}"));
    assert_eq!(h.status, 200);
    drop(handle);
    let mut rest = Vec::new();
    let n = s.read_to_end(&mut rest);
    assert!(matches!(n, Ok(0)) || n.is_err(), "{n:?}");
}

#[test]
fn an_invalid_policy_is_refused_by_serve() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let policy = Policy::new(["pypi.org"]).unwrap().with_limits(Limits {
        max_header_bytes: 10,
        ..Limits::default()
    });
    let err = warden_egress::serve(listener, policy).unwrap_err();
    assert!(err.to_string().contains("limits.max_header_bytes"), "{err}");
}

#[test]
fn records_are_kept_up_to_the_cap_and_the_rest_counted() {
    let limits = Limits {
        max_records: 2,
        ..Limits::default()
    };
    let (handle, addr) = proxy(Policy::new(["upstream.test"]).unwrap().with_limits(limits));
    for _ in 0..4 {
        let _ = exchange(addr, b"GET / HTTP/1.1\r\n\r\n");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = handle.report();
        if r.connections.len() + r.dropped_records as usize == 4 {
            assert_eq!(r.connections.len(), 2);
            break;
        }
        assert!(Instant::now() < deadline, "{r:#?}");
        thread::sleep(Duration::from_millis(10));
    }
}
