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

/// An upstream that answers its one request by echoing it: the request's
/// `Authorization` header in a response header and in the body, the body
/// written three bytes at a time (so a form of the secret is split across
/// reads), with `content-encoding: {encoding}` when one is given. Returns
/// the port and what it received.
fn echoing_upstream(encoding: Option<&'static str>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else { return };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while find(&got, b"\r\n\r\n").is_none() {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&got).to_string();
        log.lock().unwrap().push(text.clone());
        let auth = header(&text, "authorization").unwrap_or_default();
        let body = format!("you sent {auth:?}; the token alone: {SECRET}; the end");
        let enc = encoding
            .map(|e| format!("content-encoding: {e}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "HTTP/1.1 200 OK\r\nx-echo: {auth}\r\n{enc}content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes());
        for piece in body.as_bytes().chunks(3) {
            let _ = s.write_all(piece);
            let _ = s.flush();
            thread::sleep(Duration::from_millis(1));
        }
    });
    (port, seen)
}

/// A chunked body decoded (or the body as is, when it is not chunked).
fn dechunk(head: &Head, body: &str) -> String {
    if !header(&head.text, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

#[test]
fn an_upstream_echoing_the_secret_hands_the_box_only_redactions() {
    let (port, seen) = echoing_upstream(None);
    let target = format!("upstream.test:{port}");
    let cred = bearer(std::slice::from_ref(&target)).redacting(SECRET);
    let (handle, addr) = proxy(with_credentials(port, vec![cred]));
    let (head, raw) = get(
        addr,
        &format!("http://{target}/echo"),
        "X-Warden-Credential: github\r\nAccept-Encoding: gzip, br\r\nConnection: close\r\n",
    );
    assert_eq!(head.status, 200, "{head:?} {raw}");
    // The upstream got the secret and was asked for an unencoded answer.
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(
        header(&sent, "authorization").as_deref(),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_eq!(
        header(&sent, "accept-encoding").as_deref(),
        Some("identity"),
        "{sent}"
    );
    // The box got neither form of it, in the headers nor in the body.
    let body = dechunk(&head, &raw);
    assert!(!head.text.contains(SECRET), "{}", head.text);
    assert!(!raw.contains(SECRET) && !body.contains(SECRET), "{raw}");
    assert_eq!(header(&head.text, "x-echo").as_deref(), Some("<redacted>"));
    assert_eq!(header(&head.text, "content-length"), None, "{}", head.text);
    assert_eq!(
        body,
        "you sent \"<redacted>\"; the token alone: <redacted>; the end"
    );
    let r = only_record(&handle);
    assert_eq!(r.verdict, Verdict::Allowed { cut: None }, "{r:#?}");
}

#[test]
fn an_encoded_answer_to_a_credentialed_request_is_refused_not_passed_on() {
    let (port, _seen) = echoing_upstream(Some("gzip"));
    let target = format!("upstream.test:{port}");
    let (handle, addr) = proxy(with_credentials(
        port,
        vec![bearer(std::slice::from_ref(&target)).redacting(SECRET)],
    ));
    let (head, body) = get(
        addr,
        &format!("http://{target}/echo"),
        "X-Warden-Credential: github\r\nConnection: close\r\n",
    );
    assert_eq!(head.status, Reason::UpstreamError.status(), "{head:?} {body}");
    assert_eq!(head.reason().as_deref(), Some(Reason::UpstreamError.as_str()));
    assert!(body.contains("Content-Encoding"), "{body}");
    assert!(!body.contains(SECRET) && !head.text.contains(SECRET), "{body}");
    let r = only_record(&handle);
    assert!(
        matches!(&r.verdict, Verdict::Allowed { cut: Some(c) } if c.reason == Reason::UpstreamError),
        "{r:#?}"
    );
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
    assert_eq!(
        (head.status, dechunk(&head, &body).as_str()),
        (200, "secure"),
        "{head:?}"
    );
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
    assert_eq!(
        cred.clone().redacting("rawkey").scrub("a rawkey b"),
        "a <redacted> b"
    );
    // Shorter than six bytes: kept (replacing it everywhere would corrupt the text).
    assert_eq!(cred.clone().redacting("raw").scrub("a raw b"), "a raw b");

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

// OAuth2 client-credentials: a token endpoint and an upstream served here,
// on loopback, recording what they received.

const CLIENT_SECRET: &str = "client-s3cret-never-upstream";

/// A tiny HTTP/1.1 server: `answer(request number from 1, request text)`
/// gives the status and body; every request (head and body) is kept.
struct Served {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

fn served(answer: impl Fn(usize, &str) -> (u16, String) + Send + Sync + 'static) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let answer = Arc::new(answer);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let log = log.clone();
            let answer = answer.clone();
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Some(end) = find(&got, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_string();
                        let len = header(&format!("{head}\r\n"), "content-length")
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&got).to_string();
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push(text.clone());
                    l.len()
                };
                let (status, body) = answer(n, &text);
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            });
        }
    });
    Served { port, seen }
}

impl Served {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A token endpoint handing out `tok-1-issued`, `tok-2-issued`, … living `expires_in`
/// seconds, each after `delay` (so concurrent callers overlap).
fn token_endpoint(expires_in: u64, delay: Duration) -> Served {
    served(move |n, _| {
        thread::sleep(delay);
        (
            200,
            format!(r#"{{"access_token":"tok-{n}-issued","token_type":"Bearer","expires_in":{expires_in}}}"#),
        )
    })
}

/// A credential `api` for `api.test:{up}` whose token comes from
/// `auth.test:{auth}`, cached under `key`.
fn oauth_policy(up: u16, auth: u16, key: &str) -> (Policy, Credential) {
    let hosts = [format!("api.test:{up}"), format!("auth.test:{auth}")];
    let cred = Credential::oauth2(
        "api",
        &hosts,
        warden_egress::OAuth2 {
            token_url: format!("http://auth.test:{auth}/oauth/token"),
            client_id: "warden-client".into(),
            client_secret: CLIENT_SECRET.into(),
            scope: Some("read write".into()),
            audience: None,
        },
        key,
        "v1",
    )
    .unwrap();
    let policy = Policy::new([format!("api.test:{up}")])
        .unwrap()
        .pin("api.test", &[LOCALHOST])
        .unwrap()
        .pin("auth.test", &[LOCALHOST])
        .unwrap()
        .allow_cidr("127.0.0.1/32")
        .unwrap()
        .with_credentials(vec![cred.clone()])
        .unwrap();
    (policy, cred)
}

fn ok_upstream() -> Served {
    served(|_, _| (200, r#"{"ok":true}"#.into()))
}

fn unique(tag: &str) -> String {
    format!("{tag}-{}-{:?}", std::process::id(), std::time::Instant::now())
}

#[test]
fn an_oauth2_token_is_fetched_once_for_several_calls_and_the_client_secret_stays_with_the_token_host() {
    let auth = token_endpoint(3600, Duration::ZERO);
    let up = ok_upstream();
    let (policy, cred) = oauth_policy(up.port, auth.port, &unique("once"));
    let url = format!("http://api.test:{}/items", up.port);
    let mut all_records = Vec::new();
    for _ in 0..3 {
        let got = warden_egress::client::fetch(&policy, client_get(&url, Some("api")));
        assert_eq!(got.result.as_ref().unwrap().status, 200, "{:?}", got.result);
        all_records.extend(got.records);
    }
    // The box's requests through the proxy use the same cached token.
    let (handle, addr) = proxy(policy.clone());
    let (head, _) = get(addr, &url, "X-Warden-Credential: api\r\n");
    assert_eq!(head.status, 200, "{head:?}");
    all_records.push(only_record(&handle));

    let tokens = auth.seen();
    assert_eq!(tokens.len(), 1, "one token request for four calls: {tokens:?}");
    assert!(
        tokens[0].starts_with("POST /oauth/token HTTP/1.1\r\n"),
        "{}",
        tokens[0]
    );
    let body = tokens[0].split("\r\n\r\n").nth(1).unwrap();
    assert!(body.contains("grant_type=client_credentials"), "{body}");
    assert!(body.contains("client_id=warden-client"), "{body}");
    assert!(body.contains(&format!("client_secret={CLIENT_SECRET}")), "{body}");
    assert!(body.contains("scope=read+write"), "{body}");
    let calls = up.seen();
    assert_eq!(calls.len(), 4, "{calls:?}");
    for c in &calls {
        assert_eq!(
            header(c, "authorization").as_deref(),
            Some("Bearer tok-1-issued"),
            "{c}"
        );
        assert!(!c.contains(CLIENT_SECRET), "the client secret went upstream: {c}");
        assert!(!c.contains("warden-client"), "{c}");
    }
    // Records name the credential, never the secret or the token; the
    // client's scrubbing removes both.
    let json = serde_json::to_string(&all_records).unwrap();
    assert!(
        !json.contains(CLIENT_SECRET) && !json.contains("tok-1-issued"),
        "{json}"
    );
    assert!(
        all_records
            .iter()
            .all(|r| r.credential.as_deref() == Some("api") || r.credential.is_none())
    );
    assert_eq!(cred.scrub("x tok-1-issued y"), "x <redacted> y");
    assert_eq!(cred.scrub(CLIENT_SECRET), "<redacted>");
    assert!(!format!("{cred:?}{policy:?}").contains(CLIENT_SECRET));
}

#[test]
fn an_expired_oauth2_token_is_refreshed_exactly_once_under_concurrent_calls() {
    let auth = token_endpoint(1, Duration::from_millis(200));
    let up = ok_upstream();
    let (policy, _) = oauth_policy(up.port, auth.port, &unique("expiry"));
    let url = format!("http://api.test:{}/items", up.port);
    let got = warden_egress::client::fetch(&policy, client_get(&url, Some("api")));
    assert_eq!(got.result.unwrap().status, 200);
    assert_eq!(auth.seen().len(), 1);
    thread::sleep(Duration::from_millis(1100));
    let (handle, addr) = proxy(policy.clone());
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let policy = policy.clone();
            let url = url.clone();
            thread::spawn(move || {
                if i % 2 == 0 {
                    warden_egress::client::fetch(&policy, client_get(&url, Some("api")))
                        .result
                        .unwrap()
                        .status
                } else {
                    get(addr, &url, "X-Warden-Credential: api\r\n").0.status
                }
            })
        })
        .collect();
    for w in workers {
        assert_eq!(w.join().unwrap(), 200);
    }
    assert_eq!(auth.seen().len(), 2, "one refresh for eight concurrent calls");
    let calls = up.seen();
    assert_eq!(calls.len(), 9);
    assert!(
        calls[1..]
            .iter()
            .all(|c| header(c, "authorization").as_deref() == Some("Bearer tok-2-issued")),
        "{calls:?}"
    );
    drop(handle);
}

#[test]
fn a_401_drops_the_token_and_a_safe_request_is_sent_again_once_with_a_fresh_one() {
    let auth = token_endpoint(3600, Duration::ZERO);
    // The upstream takes only the second token.
    let up = served(|_, req| {
        if header(req, "authorization").as_deref() == Some("Bearer tok-2-issued") {
            (200, "{}".into())
        } else {
            (401, "{}".into())
        }
    });
    let (policy, _) = oauth_policy(up.port, auth.port, &unique("401"));
    let url = format!("http://api.test:{}/items", up.port);
    let got = warden_egress::client::fetch(&policy, client_get(&url, Some("api")));
    assert_eq!(got.result.unwrap().status, 200);
    assert_eq!(auth.seen().len(), 2, "one refresh");
    let calls = up.seen();
    assert_eq!(calls.len(), 2, "one retry: {calls:?}");
    assert_eq!(
        header(&calls[0], "authorization").as_deref(),
        Some("Bearer tok-1-issued")
    );

    // A POST is not sent again: the 401 goes back, the token is dropped,
    // and the next call fetches a fresh one.
    let auth = token_endpoint(3600, Duration::ZERO);
    let up = served(|n, _| {
        if n == 1 {
            (401, "{}".into())
        } else {
            (200, "{}".into())
        }
    });
    let (policy, _) = oauth_policy(up.port, auth.port, &unique("401-post"));
    let url = format!("http://api.test:{}/items", up.port);
    let mut post = client_get(&url, Some("api"));
    post.method = http::Method::POST;
    post.body = bytes::Bytes::from_static(b"{\"charge\":1}");
    let got = warden_egress::client::fetch(&policy, post.clone());
    assert_eq!(got.result.unwrap().status, 401);
    assert_eq!((up.seen().len(), auth.seen().len()), (1, 1));
    let got = warden_egress::client::fetch(&policy, post);
    assert_eq!(got.result.unwrap().status, 200);
    assert_eq!((up.seen().len(), auth.seen().len()), (2, 2));
    assert_eq!(
        header(&up.seen()[1], "authorization").as_deref(),
        Some("Bearer tok-2-issued")
    );

    // An upstream refusing every token: one retry, no loop.
    let auth = token_endpoint(3600, Duration::ZERO);
    let up = served(|_, _| (401, "{}".into()));
    let (policy, _) = oauth_policy(up.port, auth.port, &unique("401-always"));
    let url = format!("http://api.test:{}/items", up.port);
    let got = warden_egress::client::fetch(&policy, client_get(&url, Some("api")));
    assert_eq!(got.result.unwrap().status, 401);
    assert_eq!((up.seen().len(), auth.seen().len()), (2, 2));
}

#[test]
fn a_failing_token_endpoint_is_a_refusal_naming_the_credential_and_nothing_goes_upstream() {
    for (answer, why) in [
        ((500, "oops".to_owned()), "answered 500"),
        ((200, "<html>".to_owned()), "not JSON"),
        ((200, r#"{"token":"x"}"#.to_owned()), "no `access_token`"),
        (
            (200, r#"{"access_token":"x","token_type":"mac"}"#.to_owned()),
            "token_type",
        ),
    ] {
        let auth = served(move |_, _| answer.clone());
        let up = ok_upstream();
        let (policy, _) = oauth_policy(up.port, auth.port, &unique("fail"));
        let url = format!("http://api.test:{}/items", up.port);
        let got = warden_egress::client::fetch(&policy, client_get(&url, Some("api")));
        match &got.result {
            Err(warden_egress::client::FetchError::Refused { reason, message }) => {
                assert_eq!(*reason, Reason::CredentialTokenFailed);
                assert!(
                    message.contains("credential `api`") && message.contains(why),
                    "{message}"
                );
                assert!(!message.contains(CLIENT_SECRET), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            got.records.iter().any(|r| matches!(
                &r.verdict,
                Verdict::Refused {
                    reason: Reason::CredentialTokenFailed,
                    ..
                }
            )),
            "{:?}",
            got.records
        );
        let (handle, addr) = proxy(policy);
        let (head, _) = get(addr, &url, "X-Warden-Credential: api\r\n");
        assert_eq!(
            (head.status, head.reason().as_deref()),
            (502, Some("credential_token_failed"))
        );
        assert!(matches!(
            only_record(&handle).verdict,
            Verdict::Refused {
                reason: Reason::CredentialTokenFailed,
                ..
            }
        ));
        assert!(up.seen().is_empty(), "nothing was sent upstream");
    }
    // Nobody listening on the token port at all.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let up = ok_upstream();
    let (policy, _) = oauth_policy(up.port, port, &unique("dead"));
    let got = warden_egress::client::fetch(
        &policy,
        client_get(&format!("http://api.test:{}/", up.port), Some("api")),
    );
    assert!(
        matches!(
            &got.result,
            Err(warden_egress::client::FetchError::Refused {
                reason: Reason::CredentialTokenFailed,
                ..
            })
        ),
        "{:?}",
        got.result
    );
    assert!(up.seen().is_empty());
}

#[test]
fn a_token_endpoint_outside_the_credentials_hosts_is_refused_at_definition() {
    let def = warden_egress::OAuth2 {
        token_url: "https://evil.test/token".into(),
        client_id: "c".into(),
        client_secret: CLIENT_SECRET.into(),
        scope: None,
        audience: None,
    };
    let e = Credential::oauth2("api", &["api.test"], def.clone(), &unique("def"), "v1").unwrap_err();
    assert_eq!(e.field, "credentials[api].token_url");
    assert!(
        e.reason.contains("evil.test") && !e.reason.contains(CLIENT_SECRET),
        "{}",
        e.reason
    );
    let mut bad = def;
    bad.token_url = "ftp://api.test/token".into();
    let e = Credential::oauth2("api", &["api.test"], bad, &unique("def"), "v1").unwrap_err();
    assert_eq!(e.field, "credentials[api].token_url");
}

#[test]
fn forgetting_an_installations_tokens_leaves_every_other_credentials() {
    let app = unique("forget");
    let make = |key: &str| {
        Credential::oauth2(
            "api",
            &["auth.test:443"],
            warden_egress::OAuth2 {
                token_url: "https://auth.test/oauth/token".into(),
                client_id: "c".into(),
                client_secret: CLIENT_SECRET.into(),
                scope: None,
                audience: None,
            },
            key,
            "v1",
        )
        .unwrap()
    };
    let _held = [
        make(&format!("{app}\0plug\0api")),
        make(&format!("{app}\0plug\0other")),
        make(&format!("{app}\0plug2\0api")),
        make(&format!("{app}\0\0api")),
    ];
    assert_eq!(
        warden_egress::forget_oauth2_tokens_under(&format!("{app}\0plug\0")),
        2
    );
    assert_eq!(
        warden_egress::forget_oauth2_tokens_under(&format!("{app}\0plug\0")),
        0
    );
    assert!(warden_egress::forget_oauth2_token(&format!("{app}\0plug2\0api")));
    assert!(!warden_egress::forget_oauth2_token(&format!("{app}\0plug2\0api")));
    assert!(warden_egress::forget_oauth2_token(&format!("{app}\0\0api")));
}
