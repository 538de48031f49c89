//! `Request` against the real egress proxy (`warden-egress`) on loopback,
//! with an upstream that records every request it receives: the proxy
//! injects the credential the plugin named, removes the name, and its
//! refusals come back as responses with their reason.
//!
//! The end-to-end tests in `crates/server/tests/capabilities.rs` run the
//! Python, Node and Go helpers inside a box; a Rust plugin is a binary the
//! developer builds before publishing, so this test drives the helper
//! directly against the same proxy instead.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use warden_egress::{Credential, Policy, serve};
use warden_plugin::Request;

const SECRET: &str = "s3cret-the-plugin-never-holds";

/// A loopback upstream: records each request's bytes and answers
/// `hello from upstream`.
fn upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&got).into_owned());
            let _ = c.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\nConnection: close\r\n\r\nhello from upstream",
            );
        }
    });
    (port, seen)
}

#[test]
fn the_proxy_injects_the_named_credential_and_refusals_are_responses() {
    let (port, seen) = upstream();
    let host = format!("upstream.test:{port}");
    let policy = Policy::new([host.clone()])
        .unwrap()
        .pin("upstream.test", &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .unwrap()
        .allow_cidr("127.0.0.1/32")
        .unwrap()
        .with_credentials(vec![
            Credential::header(
                "github",
                std::slice::from_ref(&host),
                "authorization",
                &format!("Bearer {SECRET}"),
            )
            .unwrap(),
        ])
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let handle = serve(listener, policy).unwrap();
    let send = |path: &str, credential: Option<&str>| {
        let mut r = Request::new("GET", format!("http://{host}{path}")).timeout(Duration::from_secs(10));
        if let Some(name) = credential {
            r = r.credential(name);
        }
        r.send_through(&proxy).unwrap()
    };

    let with = send("/with", Some("github"));
    assert_eq!((with.status, with.text().as_str()), (200, "hello from upstream"));
    assert!(with.egress_reason.is_none(), "{with:?}");
    let plain = send("/plain", None);
    assert_eq!(plain.status, 200, "{plain:?}");
    let unknown = send("/unknown", Some("gitlab"));
    assert_eq!(unknown.status, 403, "{unknown:?}");
    assert_eq!(unknown.egress_reason.as_deref(), Some("credential_not_allowed"));
    let elsewhere = Request::new("GET", "http://elsewhere.test/")
        .credential("github")
        .send_through(&proxy)
        .unwrap();
    assert_eq!(elsewhere.status, 403, "{elsewhere:?}");
    assert!(elsewhere.egress_reason.is_some(), "{elsewhere:?}");

    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "refused requests never reach it: {heads:?}");
    let with = heads.iter().find(|h| h.starts_with("GET /with ")).unwrap();
    assert!(
        with.to_ascii_lowercase().contains(&format!(
            "\r\nauthorization: bearer {}\r\n",
            SECRET.to_ascii_lowercase()
        )),
        "{with}"
    );
    assert!(
        !with.to_ascii_lowercase().contains("x-warden-credential"),
        "{with}"
    );
    let plain = heads.iter().find(|h| h.starts_with("GET /plain ")).unwrap();
    assert!(!plain.contains(SECRET), "{plain}");
    let report = handle.stop();
    assert!(!format!("{report:?}").contains(SECRET));
}
