//! Platform-held credentials through the proxy, on real loopback sockets:
//! the box names a credential, the proxy puts the secret in (as a header or
//! a query parameter, over plain HTTP or TLS it opens itself) only for a
//! host the credential is bound to, and removes the name. The upstreams
//! record every byte they received.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use warden_egress::{Credential, Policy, Reason, Verdict};

const SECRET: &str = "s3cret-0f-the-platform";

fn with_credentials(port: u16, creds: Vec<Credential>) -> Policy {
    allow_upstream(port).with_credentials(creds).unwrap()
}

fn bearer(hosts: &[String]) -> Credential {
    Credential::header("github", hosts, "authorization", &format!("Bearer {SECRET}")).unwrap()
}

/// What `up` received, once it has received `n` requests (it records a
/// connection after a short wait for anything smuggled behind the first).
fn received(up: &Upstream, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let seen = up.settled();
        if seen.len() >= n || std::time::Instant::now() > deadline {
            return seen;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn get(addr: SocketAddr, url: &str, extra: &str) -> (Head, String) {
    let host = url.split('/').nth(2).unwrap_or("");
    exchange(
        addr,
        format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").as_bytes(),
    )
}

#[test]
fn the_named_credential_is_put_in_and_its_name_taken_out() {
    let up = http_upstream();
    let port = up.addr.port();
    let target = format!("upstream.test:{port}");
    let (handle, addr) = proxy(with_credentials(
        port,
        vec![bearer(std::slice::from_ref(&target))],
    ));
    let (head, body) = get(
        addr,
        &format!("http://{target}/user?page=2"),
        "X-Warden-Credential: github\r\nAuthorization: Bearer what-the-box-made-up\r\nConnection: authorization\r\n",
    );
    assert_eq!(head.status, 200, "{head:?} {body}");
    let seen = received(&up, 1);
    assert_eq!(seen.len(), 1, "{seen:?}");
    let sent = &seen[0];
    assert!(sent.starts_with("GET /user?page=2 HTTP/1.1\r\n"), "{sent}");
    assert_eq!(
        header(sent, "authorization").as_deref(),
        Some(format!("Bearer {SECRET}").as_str()),
        "{sent}"
    );
    assert_eq!(
        sent.matches("uthorization").count(),
        1,
        "the box's own header is replaced: {sent}"
    );
    assert!(
        !sent.to_ascii_lowercase().contains("x-warden-credential"),
        "{sent}"
    );
    assert!(!body.contains(SECRET), "the response does not echo it: {body}");
    let r = only_record(&handle);
    assert_eq!(r.verdict, Verdict::Allowed { cut: None });
    assert_eq!(r.credential.as_deref(), Some("github"));
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains(SECRET), "{json}");
    assert!(!format!("{:?}", bearer(&[target])).contains(SECRET));
}

#[test]
fn a_query_parameter_credential_is_appended() {
    let up = http_upstream();
    let port = up.addr.port();
    let target = format!("upstream.test:{port}");
    let key = Credential::query("maps", std::slice::from_ref(&target), "key", "a b&c").unwrap();
    let (_handle, addr) = proxy(with_credentials(port, vec![key]));
    let (head, _) = get(
        addr,
        &format!("http://{target}/geo?q=1"),
        "X-Warden-Credential: maps\r\n",
    );
    assert_eq!(head.status, 200, "{head:?}");
    let seen = up.settled();
    assert!(
        seen[0].starts_with("GET /geo?q=1&key=a+b%26c HTTP/1.1\r\n"),
        "{seen:?}"
    );
}

#[test]
fn a_credential_never_goes_where_it_is_not_bound_nor_by_another_name() {
    let bound = http_upstream();
    let other = http_upstream();
    // Both hosts are on the allow-list; the credential is bound to one.
    let policy = Policy::new([
        format!("upstream.test:{}", bound.addr.port()),
        format!("other.test:{}", other.addr.port()),
    ])
    .unwrap()
    .pin("upstream.test", &[LOCALHOST])
    .unwrap()
    .pin("other.test", &[LOCALHOST])
    .unwrap()
    .allow_cidr("127.0.0.1/32")
    .unwrap()
    .with_credentials(vec![bearer(&[format!("upstream.test:{}", bound.addr.port())])])
    .unwrap();
    let (handle, addr) = proxy(policy);
    let url = format!("http://other.test:{}/steal", other.addr.port());
    let (head, _) = get(addr, &url, "X-Warden-Credential: github\r\n");
    assert_refused(&head, &records(&handle, 1)[0], Reason::CredentialNotAllowed);
    let url = format!("http://upstream.test:{}/", bound.addr.port());
    let (head, _) = get(addr, &url, "X-Warden-Credential: gitlab\r\n");
    assert_eq!(
        head.reason().as_deref(),
        Some("credential_not_allowed"),
        "{head:?}"
    );
    // A tunnel cannot carry one (the proxy could not put it in).
    let (head, _) = exchange(
        addr,
        format!(
            "CONNECT upstream.test:{0} HTTP/1.1\r\nHost: upstream.test:{0}\r\nX-Warden-Credential: github\r\n\r\n",
            bound.addr.port()
        )
        .as_bytes(),
    );
    assert_eq!(head.reason().as_deref(), Some("bad_target"), "{head:?}");
    let all = records(&handle, 3);
    assert!(all.iter().all(|r| !r.allowed()), "{all:#?}");
    assert_eq!(all[0].credential.as_deref(), Some("github"));
    thread::sleep(Duration::from_millis(100));
    assert!(other.settled().is_empty(), "never contacted");
    assert!(bound.settled().is_empty(), "never contacted");
}

/// A TLS upstream for `upstream.test` with a certificate signed by a CA
/// `openssl` makes for the test (`cert`, DER); records the request heads
/// it received.
struct TlsUpstream {
    addr: SocketAddr,
    cert: Vec<u8>,
    seen: Arc<Mutex<Vec<String>>>,
}

fn tls_upstream(dir: &Path) -> TlsUpstream {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    // A CA of the test's own, and a certificate for upstream.test it signs.
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-days",
            "2",
            "-subj",
            "/CN=warden test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-subj",
            "/CN=upstream.test",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:upstream.test\nbasicConstraints=critical,CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-outform",
        "DER",
        "-out",
        "leaf.der",
    ]);
    run(&["x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der"]);
    run(&[
        "pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in", "leaf.key", "-out", "leaf.pk8",
    ]);
    let leaf = std::fs::read(dir.join("leaf.der")).unwrap();
    let key = std::fs::read(dir.join("leaf.pk8")).unwrap();
    let cert = std::fs::read(dir.join("ca.der")).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(leaf)],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
            )
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while find(&got, b"\r\n\r\n").is_none() {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&got).to_string());
            let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecure");
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    TlsUpstream { addr, cert, seen }
}

#[test]
fn for_https_the_proxy_opens_tls_itself_and_verifies_the_upstream() {
    let dir = tempfile_dir();
    let up = tls_upstream(&dir);
    let target = format!("upstream.test:{}", up.addr.port());
    let url = format!("https://{target}/repos");
    // Trusted: the secret goes in over TLS.
    let trusting = with_credentials(up.addr.port(), vec![bearer(std::slice::from_ref(&target))])
        .trust_root(up.cert.clone());
    let (handle, addr) = proxy(trusting);
    let (head, body) = get(addr, &url, "X-Warden-Credential: github\r\n");
    assert_eq!((head.status, body.as_str()), (200, "secure"), "{head:?}");
    let seen = up.seen.lock().unwrap().clone();
    assert!(seen[0].starts_with("GET /repos HTTP/1.1\r\n"), "{seen:?}");
    assert_eq!(
        header(&seen[0], "authorization").as_deref(),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_eq!(only_record(&handle).credential.as_deref(), Some("github"));
    // Not trusted (a self-signed certificate): nothing is sent.
    let (handle, addr) = proxy(with_credentials(up.addr.port(), vec![bearer(&[target])]));
    let (head, _) = get(addr, &url, "X-Warden-Credential: github\r\n");
    assert_eq!(head.reason().as_deref(), Some("tls_failed"), "{head:?}");
    assert_eq!(head.status, 502);
    let r = only_record(&handle);
    assert!(
        matches!(r.verdict, Verdict::Allowed { cut: Some(ref c) } if c.reason == Reason::TlsFailed),
        "{r:?}"
    );
    let seen = up.seen.lock().unwrap().clone();
    assert!(seen.iter().skip(1).all(|s| !s.contains(SECRET)), "{seen:?}");
    // Without a credential, `https://` in absolute form is still refused.
    let (head, _) = get(addr, &url, "");
    assert_eq!(head.reason().as_deref(), Some("unsupported_scheme"), "{head:?}");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("warden-egress-tls-{}-{}", std::process::id(), line!()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn client_get(url: &str, credential: Option<&str>) -> warden_egress::client::Request {
    warden_egress::client::Request {
        method: http::Method::GET,
        url: url.to_owned(),
        headers: http::HeaderMap::new(),
        body: Default::default(),
        credential: credential.map(str::to_owned),
        timeout: Duration::from_secs(5),
        max_response_bytes: 1 << 20,
        max_redirects: 3,
    }
}

#[test]
fn wardens_own_client_opens_tls_verifies_and_puts_the_credential_in() {
    let dir = tempfile_dir();
    let up = tls_upstream(&dir);
    let target = format!("upstream.test:{}", up.addr.port());
    let url = format!("https://{target}/repos");
    let trusting = with_credentials(up.addr.port(), vec![bearer(std::slice::from_ref(&target))])
        .trust_root(up.cert.clone());
    let got = warden_egress::client::fetch(&trusting, client_get(&url, Some("github")));
    let resp = got.result.unwrap();
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"secure"[..]));
    let heads = up.seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with("GET /repos HTTP/1.1\r\n"), "{}", heads[0]);
    assert!(
        heads[0].contains(&format!("authorization: Bearer {SECRET}\r\n")),
        "{}",
        heads[0]
    );
    assert_eq!(got.records.len(), 1);
    assert_eq!(got.records[0].credential.as_deref(), Some("github"));
    assert!(got.records[0].allowed());

    // Not trusted: no request goes out, and the record says why.
    let untrusting = with_credentials(up.addr.port(), vec![bearer(std::slice::from_ref(&target))]);
    let got = warden_egress::client::fetch(&untrusting, client_get(&url, Some("github")));
    assert!(
        matches!(&got.result, Err(warden_egress::client::FetchError::Upstream(m)) if m.contains("TLS")),
        "{:?}",
        got.result
    );
    match &got.records[0].verdict {
        Verdict::Allowed { cut: Some(cut) } => assert_eq!(cut.reason, Reason::TlsFailed),
        other => panic!("{other:?}"),
    }
    // The upstream logs the failed handshake's connection with no request.
    let seen = up.seen.lock().unwrap().clone();
    assert!(seen[1..].iter().all(|h| !h.contains("GET")), "{seen:?}");
}

#[test]
fn wardens_own_client_puts_a_query_credential_in_and_scrubs_every_form_of_it() {
    let up = http_upstream();
    let port = up.addr.port();
    let target = format!("upstream.test:{port}");
    let secret = "a key&with=odd chars";
    let cred = Credential::query("maps", std::slice::from_ref(&target), "key", secret).unwrap();
    let policy = with_credentials(port, vec![cred.clone()]);
    let got = warden_egress::client::fetch(
        &policy,
        client_get(&format!("http://{target}/geo?q=1"), Some("maps")),
    );
    let resp = got.result.unwrap();
    // The upstream echoes its request line: the secret, URL-encoded.
    let body = String::from_utf8(resp.body).unwrap();
    assert!(
        body.contains("GET /geo?q=1&key=a+key%26with%3Dodd+chars "),
        "{body}"
    );
    let scrubbed = cred.scrub(&body);
    assert!(!scrubbed.contains("a+key%26with%3Dodd+chars"), "{scrubbed}");
    assert!(scrubbed.contains("&key=<redacted>"), "{scrubbed}");
    assert_eq!(cred.clone().redacting("raw").scrub("a raw b"), "a <redacted> b");

    // Without the credential's name in the policy, and to a host it is
    // not bound to: refused, nothing sent.
    let seen = received(&up, 1).len();
    let got = warden_egress::client::fetch(
        &policy,
        client_get(&format!("http://{target}/geo"), Some("other")),
    );
    assert!(matches!(
        got.result,
        Err(warden_egress::client::FetchError::Refused {
            reason: Reason::CredentialNotAllowed,
            ..
        })
    ));
    let got = warden_egress::client::fetch(&policy, client_get("http://elsewhere.test/", Some("maps")));
    assert!(
        matches!(&got.result, Err(warden_egress::client::FetchError::Refused { reason: Reason::HostNotAllowed, message }) if message.contains("elsewhere.test")),
        "{:?}",
        got.result
    );
    assert_eq!(up.settled().len(), seen);
}
