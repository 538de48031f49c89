//! Capabilities enforced by the host (issue 16), through the real HTTP API:
//! a plugin version reaches exactly the hosts it declared, through the
//! egress proxy; anything else fails inside the box, is recorded with the
//! execution and counted. The third party is an upstream served by the
//! test on loopback, which the test's server allows explicitly
//! (`policy.network_ip_literals`, `policy.network_allow_cidrs`).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CODE: &str = "test.caps.fetcher";

/// Fetches each URL of the event through whatever proxy the box was given,
/// tries one direct connection, and says which proxy it saw.
const FETCHER: &str = r#"
import os, socket, urllib.request, urllib.error

def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return {"status": r.status, "body": r.read().decode()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "reason": e.headers.get("x-warden-egress-reason")}
    except Exception as e:
        return {"error": type(e).__name__}

def handler(event):
    out = {name: fetch(url) for name, url in event["urls"].items()}
    host, port = event["direct"]
    try:
        socket.create_connection((host, port), timeout=3).close()
        out["direct"] = "connected"
    except OSError:
        out["direct"] = "failed"
    out["proxy"] = os.environ.get("HTTP_PROXY")
    return out
"#;

/// An HTTP server on loopback that answers every request with one line
/// and records each request head it received.
struct Upstream {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let head = String::from_utf8_lossy(&head).into_owned();
                // `?echo=1`: the answer quotes the request's head back, in
                // the body and (its API key) in a header, as a debugging
                // endpoint would.
                let (body, extra) = if head.lines().next().is_some_and(|l| l.contains("echo=1")) {
                    let key = head
                        .lines()
                        .find_map(|l| l.strip_prefix("x-api-key: "))
                        .unwrap_or("")
                        .to_owned();
                    (format!("you sent: {head}"), format!("X-Echo: {key}\r\n"))
                } else {
                    ("hello from upstream".to_owned(), String::new())
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Upstream { port, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn fetcher(version: &str, network: Value) -> Vec<u8> {
    let mut m = manifest(CODE, version, "python3", "main.py");
    m["permissions"] = json!({ "network": network });
    package(&m, &[("main.py", FETCHER)])
}

async fn refused_metric(s: &Server) -> u64 {
    let text = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("warden_egress_refused_total{") && l.contains(CODE))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The refused destinations of an execution, as `(host, port, reason)`.
fn refused(exec: &Value) -> Vec<(String, u64, String)> {
    exec["egress_refused"]
        .as_array()
        .unwrap_or_else(|| panic!("no egress_refused: {exec}"))
        .iter()
        .map(|r| {
            (
                r["host"].as_str().unwrap_or("").to_owned(),
                r["port"].as_u64().unwrap_or(0),
                r["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_reaches_only_its_declared_hosts_and_refusals_are_recorded() {
    let declared = Upstream::start();
    let undeclared = Upstream::start();
    let s = server_with(|c| {
        c.policy.network_ip_literals = true;
        c.policy.network_allow_cidrs = vec!["127.0.0.1/32".into()];
    })
    .await;
    let dev = s.key("developer", "dev", None).await;
    let app = "caps";

    // `true` does not say where: refused with its location.
    let r = s.upload(&dev, fetcher("0.9.0", json!(true))).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_client_error(), "{status}: {text}");
    assert!(
        text.contains("/permissions/network") && text.contains("list the hosts"),
        "{text}"
    );

    let host = format!("127.0.0.1:{}", declared.port);
    s.publish(&dev, fetcher("1.0.0", json!([host])), app).await;
    let caller = s.key("app", app, Some(app)).await;
    let event = json!({
        "urls": {
            "declared": format!("http://127.0.0.1:{}/hello", declared.port),
            "undeclared": format!("http://127.0.0.1:{}/secret", undeclared.port),
            "named": "http://metadata.google.internal/computeMetadata/v1/",
        },
        "direct": ["127.0.0.1", declared.port],
    })
    .to_string();
    let before = refused_metric(&s).await;
    assert_eq!(before, 0);

    // Cold or warm, every call: the declared host answers; the others are
    // refused inside the box, recorded with this call and counted.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut calls = 0u64;
    let mut served_warm = false;
    while !served_warm {
        assert!(Instant::now() < deadline, "no call was served warm in 60 s");
        let (status, v, _) = s.execute(&caller, app, CODE, &event, "").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        calls += 1;
        let out = &v["return_value"];
        assert_eq!(out["declared"]["status"], 200, "{v}");
        assert_eq!(out["declared"]["body"], "hello from upstream", "{v}");
        assert_eq!(out["undeclared"]["status"], 403, "{v}");
        assert_eq!(out["undeclared"]["reason"], "port_not_allowed", "{v}");
        assert_eq!(out["named"]["status"], 403, "{v}");
        assert_eq!(out["named"]["reason"], "host_not_allowed", "{v}");
        assert_eq!(out["direct"], "failed", "no way out but the proxy: {v}");
        assert_eq!(out["proxy"], "http://127.0.0.1:3128", "{v}");
        let mut got = refused(&v);
        got.sort();
        assert_eq!(
            got,
            [
                (
                    "127.0.0.1".to_owned(),
                    u64::from(undeclared.port),
                    "port_not_allowed".to_owned()
                ),
                (
                    "metadata.google.internal".to_owned(),
                    80,
                    "host_not_allowed".to_owned()
                ),
            ],
            "exactly this call's refusals (call {calls}, warm: {}): {v}",
            v["warm"]
        );
        // The record keeps them.
        let stored = s
            .expect(
                Method::GET,
                &format!("/v1/executions/{}", v["id"].as_str().unwrap()),
                &caller,
                None,
                StatusCode::OK,
            )
            .await;
        assert_eq!(stored["egress_refused"], v["egress_refused"]);
        served_warm = v["warm"] == true;
        if !served_warm {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(refused_metric(&s).await, before + 2 * calls);
    // The undeclared upstream was never contacted; the declared one saw one
    // request per call, with nothing of the proxy's in it.
    assert!(undeclared.heads().is_empty(), "{:?}", undeclared.heads());
    let heads = declared.heads();
    assert_eq!(heads.len() as u64, calls, "{heads:?}");
    for h in &heads {
        assert!(h.starts_with("GET /hello HTTP/1.1\r\n"), "{h}");
        assert!(!h.to_ascii_lowercase().contains("proxy-"), "{h}");
    }

    // The review shows a newly declared host first.
    let r = s
        .upload(&dev, fetcher("1.1.0", json!([host, "api.example.org"])))
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let base = format!("/v1/plugins/{CODE}/versions/1.1.0");
    s.expect(
        Method::POST,
        &format!("{base}/submit"),
        &dev,
        None,
        StatusCode::OK,
    )
    .await;
    let report = s
        .expect(Method::GET, &format!("{base}/report"), &dev, None, StatusCode::OK)
        .await;
    assert_eq!(
        report["permission_changes"][0],
        json!({"field": "permissions.network", "from": "", "to": "api.example.org"}),
        "{report}"
    );

    // A version that declares nothing has no network, and no warm box of
    // the version before serves it.
    s.publish(&dev, fetcher("2.0.0", json!([])), app).await;
    for _ in 0..3 {
        let (status, v, _) = s.execute(&caller, app, CODE, &event, "").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["version"], "2.0.0", "{v}");
        let out = &v["return_value"];
        assert_eq!(out["proxy"], Value::Null, "{v}");
        assert!(out["declared"]["error"].is_string(), "{v}");
        assert_eq!(out["direct"], "failed", "{v}");
        assert!(refused(&v).is_empty(), "{v}");
    }
    assert_eq!(declared.heads().len() as u64, calls);
    assert!(undeclared.heads().is_empty());
    s.stop().await.unwrap();
}

/// A test key for sealing credentials (32 bytes, base64).
const CREDENTIALS_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SECRET: &str = "ghp_s3cret-the-plugin-never-sees";
const SECRET2: &str = "ghp_r0tated-s3cret";
const SNOOP_CODE: &str = "test.caps.snoop";

/// Prints everything it can see (its environment, its files, its
/// process's), then asks the proxy for requests with and without a
/// credential.
const SNOOP: &str = r#"
import os, json, urllib.request, urllib.error

def fetch(url, credential=None):
    req = urllib.request.Request(url)
    if credential:
        req.add_header("X-Warden-Credential", credential)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return {"status": r.status, "body": r.read().decode()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "reason": e.headers.get("x-warden-egress-reason")}
    except Exception as e:
        return {"error": type(e).__name__}

def show_files():
    for root in ["/workspace", "/tmp", "/code", "/etc", "/warden"]:
        for d, _, files in os.walk(root):
            for f in files:
                p = os.path.join(d, f)
                try:
                    with open(p, "rb") as fh:
                        print("FILE", p, fh.read(65536).decode("latin-1"))
                except Exception as e:
                    print("UNREADABLE", p, type(e).__name__)
    for p in ["/proc/self/environ", "/proc/self/cmdline", "/proc/1/environ", "/proc/1/cmdline"]:
        try:
            with open(p, "rb") as fh:
                print("PROC", p, fh.read().decode("latin-1"))
        except Exception as e:
            print("UNREADABLE", p, type(e).__name__)

def scan_memory(prefix, length, digests):
    """How many windows of `length` bytes starting with `prefix` in this
    process's readable memory hash (sha256) to each of `digests`."""
    import hashlib, re
    found = {d: 0 for d in digests}
    regions = 0
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]", "[vvar_vclock]")):
                continue
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            regions += 1
            for m in re.finditer(re.escape(prefix.encode()), data):
                d = hashlib.sha256(data[m.start():m.start() + length]).hexdigest()
                if d in found:
                    found[d] += 1
    return {"regions": regions, "found": found}

def handler(event):
    scan = event.pop("__scan__", None)
    print("ENV", json.dumps(dict(os.environ)))
    show_files()
    out = {name: fetch(url, cred) for name, (url, cred) in event.items()}
    print("RESPONSES", json.dumps(out))
    show_files()
    if scan:
        out["__scan__"] = scan_memory(scan["prefix"], scan["length"], [scan["secret"], scan["control"]])
    return out
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_held_credential_reaches_its_host_and_never_the_box() {
    let bound = Upstream::start();
    let other = Upstream::start();
    let s = server_with(|c| {
        c.policy.network_ip_literals = true;
        c.policy.network_allow_cidrs = vec!["127.0.0.1/32".into()];
        c.credentials.key = Some(CREDENTIALS_KEY.into());
    })
    .await;
    let dev = s.key("developer", "dev", None).await;
    let app = "vault";
    let bound_host = format!("127.0.0.1:{}", bound.port);
    let other_host = format!("127.0.0.1:{}", other.port);
    let mut m = manifest(SNOOP_CODE, "1.0.0", "python3", "main.py");
    m["permissions"] = json!({"network": [bound_host, other_host], "credentials": ["github"]});
    s.publish(&dev, package(&m, &[("main.py", SNOOP)]), app).await;
    let app_key = s.key("app", app, Some(app)).await;
    s.expect(
        Method::POST,
        "/v1/apps",
        &s.admin,
        Some(json!({"id": "other-app"})),
        StatusCode::CREATED,
    )
    .await;
    let other_app = s.key("app", "other-app", Some("other-app")).await;

    // Written by the app's key, read back without the secret.
    let path = format!("/v1/apps/{app}/credentials/github");
    let body = json!({"kind": "api_key", "header": "X-Api-Key", "secret": SECRET, "hosts": [bound_host]});
    let v = s
        .expect(
            Method::PUT,
            &path,
            &app_key,
            Some(body.clone()),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(
        (v["name"].as_str(), v["kind"].as_str()),
        (Some("github"), Some("api_key")),
        "{v}"
    );
    assert_eq!(v["hosts"], json!([bound_host]));
    assert!(!v.to_string().contains(SECRET), "{v}");
    for (who, status) in [
        (&app_key, StatusCode::OK),
        (&s.admin, StatusCode::OK),
        (&other_app, StatusCode::FORBIDDEN),
    ] {
        let r = s
            .call(
                Method::GET,
                &format!("/v1/apps/{app}/credentials"),
                Some(who),
                None,
            )
            .await;
        assert_eq!(r.status(), status);
        let text = r.text().await.unwrap();
        assert!(!text.contains(SECRET), "{text}");
    }
    let one = s.expect(Method::GET, &path, &app_key, None, StatusCode::OK).await;
    assert!(
        one.get("secret").is_none() && !one.to_string().contains(SECRET),
        "{one}"
    );
    // Located errors; the body is never echoed.
    let bad = s
        .expect(
            Method::PUT,
            &format!("/v1/apps/{app}/credentials/other"),
            &app_key,
            Some(json!({"kind": "bearer", "header": "X-Api-Key", "secret": "a\nb", "hosts": ["https://x.org"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    let at: Vec<&str> = bad["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["location"].as_str().unwrap())
        .collect();
    assert_eq!(at, ["/header"], "{bad}");

    // The box scans its own memory after its requests for the secret (by
    // its hash: the box is never told it) and for a control value of the
    // same shape that it does hold, which proves the scan sees memory.
    let sha = |t: &str| warden_package::archive::hex(&<sha2::Sha256 as sha2::Digest>::digest(t.as_bytes()));
    let control = format!("{}-CONTROL-value-held-in-the-event-and-some-more", &SECRET[..6]);
    let control = &control[..SECRET.len()];
    let scan = json!({"prefix": &SECRET[..6], "length": SECRET.len(), "secret": sha(SECRET), "control": sha(control),
        "control_value": control});
    let event = |suffix: &str| {
        json!({
            "__scan__": scan,
            "with": [format!("http://{bound_host}/with{suffix}?echo=1"), "github"],
            "without": [format!("http://{bound_host}/without{suffix}"), null],
            "elsewhere": [format!("http://{other_host}/elsewhere"), "github"],
            "undeclared": [format!("http://{bound_host}/forged"), "gitlab"],
        })
        .to_string()
    };
    let (status, v, _) = s.execute(&app_key, app, SNOOP_CODE, &event(""), "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let out = &v["return_value"];
    assert_eq!(out["with"]["status"], 200, "{v}");
    assert_eq!(out["without"]["status"], 200, "{v}");
    assert_eq!(out["elsewhere"]["reason"], "credential_not_allowed", "{v}");
    assert_eq!(out["undeclared"]["reason"], "credential_not_allowed", "{v}");
    // The box saw its world (so the search below looked at something) and
    // never the secret.
    let stdout = v["stdout"].as_str().unwrap();
    assert!(
        stdout.contains("ENV ") && stdout.contains("HTTP_PROXY") && stdout.contains("FILE /code/main.py"),
        "{stdout}"
    );
    let whole = v.to_string();
    assert!(!whole.contains(SECRET), "the secret reached the box: {whole}");
    // The upstream echoed the request back: the proxy scrubbed the answer.
    let echoed = out["with"]["body"].as_str().unwrap();
    assert!(
        echoed.starts_with("you sent: GET /with?echo=1 ") && echoed.contains("\r\nx-api-key: <redacted>\r\n"),
        "{echoed}"
    );
    let scanned = &out["__scan__"];
    assert!(scanned["regions"].as_u64().unwrap() > 5, "{scanned}");
    assert!(
        scanned["found"][sha(control)].as_u64().unwrap() >= 1,
        "the scan found the control value it holds: {scanned}"
    );
    assert_eq!(
        scanned["found"][sha(SECRET)],
        0,
        "the secret is in the box's memory: {scanned}"
    );
    // The bound upstream got it exactly where asked; nothing else leaked.
    let heads = bound.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    let with = heads.iter().find(|h| h.starts_with("GET /with?echo=1 ")).unwrap();
    let without = heads.iter().find(|h| h.starts_with("GET /without ")).unwrap();
    assert!(with.contains(&format!("\r\nx-api-key: {SECRET}\r\n")), "{with}");
    assert!(!without.contains(SECRET), "{without}");
    for h in &heads {
        assert!(!h.to_ascii_lowercase().contains("x-warden-credential"), "{h}");
    }
    assert!(
        other.heads().is_empty(),
        "a host the credential is not bound to was contacted: {:?}",
        other.heads()
    );
    let mut refused: Vec<String> = v["egress_refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_owned())
        .collect();
    refused.sort();
    assert_eq!(
        refused,
        ["credential_not_allowed", "credential_not_allowed"],
        "{v}"
    );

    // Audited on write and on use, never with the secret.
    let trail = s
        .expect(Method::GET, "/v1/audit?limit=100", &s.admin, None, StatusCode::OK)
        .await;
    let text = trail.to_string();
    assert!(!text.contains(SECRET), "{text}");
    let events: Vec<&Value> = trail["items"]
        .as_array()
        .unwrap_or_else(|| trail.as_array().unwrap())
        .iter()
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "credential_put" && e["detail"]["name"] == "github"),
        "{text}"
    );
    let used: Vec<&&Value> = events
        .iter()
        .filter(|e| e["action"] == "credential_use")
        .collect();
    assert_eq!(used.len(), 1, "{text}");
    assert_eq!(used[0]["detail"]["credential"], "github");
    assert_eq!(used[0]["detail"]["execution"], v["id"]);

    // Rewritten: the next call carries the new secret (no box keeps the old).
    let body2 = json!({"kind": "api_key", "header": "X-Api-Key", "secret": SECRET2, "hosts": [bound_host]});
    s.expect(Method::PUT, &path, &s.admin, Some(body2), StatusCode::OK)
        .await;
    let (status, v2, _) = s.execute(&app_key, app, SNOOP_CODE, &event("2"), "").await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    let with2 = bound
        .heads()
        .into_iter()
        .find(|h| h.starts_with("GET /with2?echo=1 "))
        .unwrap();
    assert!(
        with2.contains(&format!("\r\nx-api-key: {SECRET2}\r\n")),
        "{with2}"
    );
    assert!(!v2.to_string().contains(SECRET2));

    // Deleted: later calls carry nothing.
    s.expect(Method::DELETE, &path, &app_key, None, StatusCode::NO_CONTENT)
        .await;
    s.expect(Method::GET, &path, &app_key, None, StatusCode::NOT_FOUND)
        .await;
    let (_, v3, _) = s.execute(&app_key, app, SNOOP_CODE, &event("3"), "").await;
    assert_eq!(
        v3["return_value"]["with"]["reason"], "credential_not_allowed",
        "{v3}"
    );
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_servers_key_no_credential_is_stored() {
    let s = server().await;
    s.expect(
        Method::POST,
        "/v1/apps",
        &s.admin,
        Some(json!({"id": "vault"})),
        StatusCode::CREATED,
    )
    .await;
    let v = s
        .expect(
            Method::PUT,
            "/v1/apps/vault/credentials/github",
            &s.admin,
            Some(json!({"kind": "bearer", "secret": SECRET, "hosts": ["api.github.com"]})),
            StatusCode::CONFLICT,
        )
        .await;
    assert!(v["detail"].as_str().unwrap().contains("credentials.key"), "{v}");
    let list = s
        .expect(
            Method::GET,
            "/v1/apps/vault/credentials",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(list, json!([]));
    s.stop().await.unwrap();
}

/// The plugin SDK's `request` helper (shipped in the package, as `warden
/// plugin pack` ships it): a credential by name, plain requests, and what
/// a refusal looks like.
const SDK_USER: &str = r#"
from warden_sdk import request

def handler(event):
    out = {}
    for name, (url, cred) in event.items():
        r = request(url, credential=cred, timeout=10)
        out[name] = {"status": r.status, "reason": r.egress_reason, "body": r.text()}
    return out
"#;

/// Publish `files` as plugin `code` (`runtime`, `entry`) declaring one
/// loopback host and the credential `github`, store that credential, and
/// call it with a credentialed, a plain and an undeclared-credential
/// request: the secret reaches the upstream only where asked, never the
/// box or the record.
async fn sdk_request_is_injected(code: &str, runtime: &str, entry: &str, files: &[(&str, &str)]) {
    let bound = Upstream::start();
    let s = server_with(|c| {
        c.policy.network_ip_literals = true;
        c.policy.network_allow_cidrs = vec!["127.0.0.1/32".into()];
        c.credentials.key = Some(CREDENTIALS_KEY.into());
    })
    .await;
    let dev = s.key("developer", "dev", None).await;
    let app = "sdkapp";
    let host = format!("127.0.0.1:{}", bound.port);
    let mut m = manifest(code, "1.0.0", runtime, entry);
    m["permissions"] = json!({"network": [host], "credentials": ["github"]});
    s.publish(&dev, package(&m, files), app).await;
    let app_key = s.key("app", app, Some(app)).await;
    s.expect(
        Method::PUT,
        &format!("/v1/apps/{app}/credentials/github"),
        &app_key,
        Some(json!({"kind": "bearer", "secret": SECRET, "hosts": [host]})),
        StatusCode::CREATED,
    )
    .await;
    let event = json!({
        "with": [format!("http://{host}/with"), "github"],
        "plain": [format!("http://{host}/plain"), null],
        "unknown": [format!("http://{host}/unknown"), "gitlab"],
    })
    .to_string();
    let (status, v, _) = s.execute(&app_key, app, code, &event, "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let out = &v["return_value"];
    assert_eq!(out["with"]["status"], 200, "{v}");
    assert_eq!(out["with"]["body"], "hello from upstream", "{v}");
    assert_eq!(out["plain"]["status"], 200, "{v}");
    assert_eq!(out["unknown"]["status"], 403, "{v}");
    assert_eq!(out["unknown"]["reason"], "credential_not_allowed", "{v}");
    assert!(!v.to_string().contains(SECRET), "{v}");
    let heads = bound.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    let with = heads.iter().find(|h| h.starts_with("GET /with ")).unwrap();
    assert!(
        with.contains(&format!("\r\nauthorization: Bearer {SECRET}\r\n")),
        "{with}"
    );
    let plain = heads.iter().find(|h| h.starts_with("GET /plain ")).unwrap();
    assert!(!plain.contains(SECRET), "{plain}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_request_helper_sends_a_credential_by_name_and_never_holds_it() {
    let sdk = include_str!("../../../sdk/python/warden_sdk/__init__.py");
    sdk_request_is_injected(
        "test.caps.sdk",
        "python3",
        "main.py",
        &[("main.py", SDK_USER), ("warden_sdk/__init__.py", sdk)],
    )
    .await;
}

/// The Node SDK's `request` helper, as a Node plugin ships it.
const SDK_NODE_USER: &str = r#"
const { request } = require('@warden/sdk');
exports.handler = async (event) => {
  const out = {};
  for (const [name, [url, credential]] of Object.entries(event)) {
    const r = await request(url, { credential: credential === null ? undefined : credential, timeoutMs: 10000 });
    out[name] = { status: r.status, reason: r.egressReason, body: r.text() };
  }
  return out;
};
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_node_sdk_request_helper_sends_a_credential_by_name() {
    let sdk = include_str!("../../../sdk/node/index.js");
    sdk_request_is_injected(
        "test.caps.nodesdk",
        "node",
        "main.js",
        &[
            ("main.js", SDK_NODE_USER),
            ("node_modules/@warden/sdk/index.js", sdk),
        ],
    )
    .await;
}

/// The Go SDK's `Request` helper, as a Go plugin ships it: built at submit
/// time in the jail from the vendored SDK, then run as a native binary.
const SDK_GO_USER: &str = r#"package main

import (
	"time"

	plugin "warden.dev/sdk"
)

type result struct {
	Status int     `json:"status"`
	Reason *string `json:"reason"`
	Body   string  `json:"body"`
}

func main() {
	plugin.Run(func(in map[string][2]*string) (map[string]result, error) {
		out := map[string]result{}
		for name, call := range in {
			opts := &plugin.RequestOptions{Timeout: 10 * time.Second}
			if call[1] != nil {
				opts.Credential = *call[1]
			}
			r, err := plugin.Request(*call[0], opts)
			if err != nil {
				return nil, err
			}
			res := result{Status: r.Status, Body: r.Text()}
			if r.EgressReason != "" {
				res.Reason = &r.EgressReason
			}
			out[name] = res
		}
		return out, nil
	})
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_go_sdk_request_helper_sends_a_credential_by_name() {
    sdk_request_is_injected(
        "test.caps.gosdk",
        "go",
        ".",
        &[
            (
                "go.mod",
                "module example.com/sdkreq\n\ngo 1.18\n\nrequire warden.dev/sdk v0.1.0\n",
            ),
            ("main.go", SDK_GO_USER),
            (
                "vendor/modules.txt",
                "# warden.dev/sdk v0.1.0\n## explicit; go 1.18\nwarden.dev/sdk\n",
            ),
            (
                "vendor/warden.dev/sdk/plugin.go",
                include_str!("../../../sdk/go/plugin.go"),
            ),
            (
                "vendor/warden.dev/sdk/go.mod",
                include_str!("../../../sdk/go/go.mod"),
            ),
        ],
    )
    .await;
}

const HTTP_TOOL: &str = "warden.builtin.http";

/// An upstream for the built-in HTTP tool, on loopback: it records every
/// request head and answers by path — `/echo` returns the head it got as
/// JSON, `/json` a JSON document, `/same` redirects to `/landed` on
/// itself, `/away` to `away_port` on loopback, `/big` sends 100,000 bytes
/// and `/slow` answers after 3 s.
struct Scripted {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn start(away_port: u16) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    seen.lock().unwrap().push(head.clone());
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let (status, extra, ctype, body) = match path.split('?').next().unwrap() {
                        "/echo" => (
                            "200 OK",
                            String::new(),
                            "application/json",
                            json!({"head": head}).to_string(),
                        ),
                        "/json" => (
                            "200 OK",
                            String::new(),
                            "application/json",
                            r#"{"ok":true,"n":[1,2]}"#.to_owned(),
                        ),
                        "/same" => (
                            "302 Found",
                            "Location: /landed\r\n".to_owned(),
                            "text/plain",
                            String::new(),
                        ),
                        "/landed" => ("200 OK", String::new(), "text/plain", "landed".to_owned()),
                        "/away" => (
                            "302 Found",
                            format!("Location: http://127.0.0.1:{away_port}/stolen\r\n"),
                            "text/plain",
                            String::new(),
                        ),
                        "/big" => ("200 OK", String::new(), "text/plain", "x".repeat(100_000)),
                        "/slow" => {
                            std::thread::sleep(Duration::from_secs(3));
                            ("200 OK", String::new(), "text/plain", "late".to_owned())
                        }
                        _ => ("404 Not Found", String::new(), "text/plain", "no".to_owned()),
                    };
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\n{extra}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Scripted { port, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

async fn http_refused_metric(s: &Server) -> u64 {
    let text = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("warden_egress_refused_total{") && l.contains(HTTP_TOOL))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// One call of the HTTP tool by `key` for `app`: the execution.
async fn http_tool(s: &Server, key: &str, app: &str, event: Value) -> Value {
    let (status, v, _) = s.execute(key, app, HTTP_TOOL, &event.to_string(), "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// A failed call's error type and message, and its one refused destination.
fn refusal(v: &Value) -> (String, String, String) {
    assert_eq!(v["status"], "failed", "{v}");
    let reasons = refused(v);
    assert_eq!(reasons.len(), 1, "{v}");
    (
        v["error"]["type"].as_str().unwrap_or("").to_owned(),
        v["error"]["message"].as_str().unwrap_or("").to_owned(),
        reasons[0].2.clone(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_tool_reaches_only_its_credentials_hosts_and_never_shows_the_secret() {
    let other = Upstream::start();
    let api = Scripted::start(other.port);
    let s = server_with(|c| {
        c.policy.network_ip_literals = true;
        c.policy.network_allow_cidrs = vec!["127.0.0.1/32".into()];
        c.credentials.key = Some(CREDENTIALS_KEY.into());
    })
    .await;
    let app = "tools";
    for id in [app, "elsewhere"] {
        s.expect(
            Method::POST,
            "/v1/apps",
            &s.admin,
            Some(json!({"id": id})),
            StatusCode::CREATED,
        )
        .await;
        s.expect(
            Method::POST,
            &format!("/v1/apps/{id}/installations"),
            &s.admin,
            Some(json!({"plugin": HTTP_TOOL})),
            StatusCode::CREATED,
        )
        .await;
    }
    let key = s.key("app", app, Some(app)).await;
    let host = format!("127.0.0.1:{}", api.port);
    let put = |app: &str, name: &str, body: Value| {
        let path = format!("/v1/apps/{app}/credentials/{name}");
        let s = &s;
        async move {
            s.expect(Method::PUT, &path, &s.admin, Some(body), StatusCode::CREATED)
                .await;
        }
    };
    put(
        app,
        "api",
        json!({"kind": "bearer", "secret": SECRET, "hosts": [host]}),
    )
    .await;
    put(
        app,
        "meta",
        json!({"kind": "bearer", "secret": SECRET2,
               "hosts": ["169.254.169.254", "10.0.0.1", "[::1]", "1.1.1.1:80"]}),
    )
    .await;
    put(
        "elsewhere",
        "theirs",
        json!({"kind": "api_key", "header": "X-Api-Key", "secret": "theirs-s3cret", "hosts": [host]}),
    )
    .await;
    let before = http_refused_metric(&s).await;
    let mut refusals = 0;

    // The credential goes in as its definition says; the caller's header
    // goes along; nothing of the platform's does. The upstream echoes the
    // secret back: the result shows it redacted.
    let v = http_tool(
        &s,
        &key,
        app,
        json!({"method": "POST", "url": format!("http://{host}/echo"), "credential": "api",
               "headers": {"X-Trace": "t1"}, "query": {"q": "a b"}, "body": {"k": 1}}),
    )
    .await;
    assert_eq!(v["status"], "success", "{v}");
    let out = &v["return_value"];
    assert_eq!(out["status"], 200, "{v}");
    assert_eq!(out["headers"]["content-type"], "application/json", "{v}");
    assert!(out["elapsed_ms"].as_f64().unwrap() > 0.0, "{v}");
    let echoed = out["body"]["head"].as_str().unwrap();
    assert!(echoed.contains("\r\nauthorization: <redacted>\r\n"), "{echoed}");
    let heads = api.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = &heads[0];
    assert!(head.starts_with("POST /echo?q=a+b HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nauthorization: Bearer {SECRET}\r\n")),
        "{head}"
    );
    assert!(head.contains("\r\nx-trace: t1\r\n"), "{head}");
    // Asked unencoded, so that the answer can be scrubbed of the secret.
    assert!(head.contains("\r\naccept-encoding: identity\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-type: application/json\r\n"), "{head}");
    let (head_only, body) = head.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, r#"{"k":1}"#);
    let names: Vec<String> = head_only
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(':').next().unwrap().to_ascii_lowercase())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "accept-encoding",
            "authorization",
            "connection",
            "content-length",
            "content-type",
            "host",
            "x-trace"
        ],
        "nothing else is sent: {head}"
    );
    // The secret is in neither the result nor the record nor the audit.
    assert!(!v.to_string().contains(SECRET), "{v}");
    let rec = s
        .expect(
            Method::GET,
            &format!("/v1/executions/{}", v["id"].as_str().unwrap()),
            &key,
            None,
            StatusCode::OK,
        )
        .await;
    assert!(!rec.to_string().contains(SECRET), "{rec}");
    assert_eq!(rec["return_value"], v["return_value"]);
    let trail = s
        .expect(Method::GET, "/v1/audit?limit=200", &s.admin, None, StatusCode::OK)
        .await;
    assert!(!trail.to_string().contains(SECRET));
    assert!(
        trail.to_string().contains("credential_use") && trail.to_string().contains(v["id"].as_str().unwrap()),
        "a use is audited: {trail}"
    );

    // JSON comes back as JSON; text as text.
    let v = http_tool(
        &s,
        &key,
        app,
        json!({"url": format!("http://{host}/json"), "credential": "api"}),
    )
    .await;
    assert_eq!(v["return_value"]["body"], json!({"ok": true, "n": [1, 2]}), "{v}");

    // A redirect to the same host is followed, with the credential.
    let v = http_tool(
        &s,
        &key,
        app,
        json!({"url": format!("http://{host}/same"), "credential": "api"}),
    )
    .await;
    assert_eq!(v["return_value"]["status"], 200, "{v}");
    assert_eq!(v["return_value"]["body"], "landed", "{v}");
    let landed = api
        .heads()
        .into_iter()
        .find(|h| h.starts_with("GET /landed "))
        .unwrap();
    assert!(
        landed.contains(&format!("authorization: Bearer {SECRET}")),
        "{landed}"
    );

    // A redirect to another host is not followed: neither it nor the
    // credential goes there.
    let v = http_tool(
        &s,
        &key,
        app,
        json!({"url": format!("http://{host}/away"), "credential": "api"}),
    )
    .await;
    let (kind, message, reason) = refusal(&v);
    refusals += 1;
    assert_eq!(
        (kind.as_str(), reason.as_str()),
        ("EgressRefused", "port_not_allowed"),
        "{v}"
    );
    assert!(
        message.contains(&format!(
            "redirect to http://127.0.0.1:{}/stolen was not followed",
            other.port
        )),
        "{message}"
    );

    // Ungranted hosts: refused naming them, never contacted.
    for (url, want) in [
        (format!("http://127.0.0.1:{}/x", other.port), "port_not_allowed"),
        (format!("http://localhost:{}/x", api.port), "host_not_allowed"),
    ] {
        let v = http_tool(&s, &key, app, json!({"url": url, "credential": "api"})).await;
        let (kind, message, reason) = refusal(&v);
        refusals += 1;
        assert_eq!((kind.as_str(), reason.as_str()), ("EgressRefused", want), "{v}");
        let named = if want == "host_not_allowed" {
            "localhost"
        } else {
            "127.0.0.1"
        };
        assert!(message.contains(named), "{message}");
    }
    // Without a credential the tool reaches nothing.
    let v = http_tool(&s, &key, app, json!({"url": format!("http://{host}/echo")})).await;
    let (_, message, reason) = refusal(&v);
    refusals += 1;
    assert_eq!(reason, "ip_literal", "{v}");
    assert!(message.contains("127.0.0.1"), "{message}");
    let v = http_tool(
        &s,
        &key,
        app,
        json!({"url": format!("http://localhost:{}/echo", api.port)}),
    )
    .await;
    let (_, message, reason) = refusal(&v);
    refusals += 1;
    assert_eq!(reason, "host_not_allowed", "{v}");
    assert!(message.contains("localhost"), "{message}");

    // The address rules of the proxy: a credential bound to the metadata
    // address, private and loopback ranges gets nowhere; plain http to a
    // public address is refused before any connection.
    for (url, want) in [
        ("http://169.254.169.254/latest/meta-data/", "link_local"),
        ("https://169.254.169.254/computeMetadata/v1/", "link_local"),
        ("http://10.0.0.1/", "private"),
        ("https://[::1]/", "loopback"),
        ("http://1.1.1.1/", "unsupported_scheme"),
    ] {
        let v = http_tool(&s, &key, app, json!({"url": url, "credential": "meta"})).await;
        let (kind, _, reason) = refusal(&v);
        refusals += 1;
        assert_eq!(
            (kind.as_str(), reason.as_str()),
            ("EgressRefused", want),
            "{url}: {v}"
        );
    }

    // An unknown name, and another app's credential, are the same: absent.
    for name in ["nope", "theirs"] {
        let v = http_tool(
            &s,
            &key,
            app,
            json!({"url": format!("http://{host}/echo"), "credential": name}),
        )
        .await;
        let (kind, message, reason) = refusal(&v);
        refusals += 1;
        assert_eq!(
            (kind.as_str(), reason.as_str()),
            ("EgressRefused", "credential_not_allowed"),
            "{v}"
        );
        assert!(message.contains(&format!("no credential `{name}`")), "{message}");
        assert!(!v.to_string().contains("theirs-s3cret"), "{v}");
    }

    // The response cap and the deadline.
    let v = http_tool(
        &s,
        &key,
        app,
        json!({"url": format!("http://{host}/big"), "credential": "api", "max_response_bytes": 1000}),
    )
    .await;
    assert_eq!(
        (v["status"].as_str(), v["error"]["type"].as_str()),
        (Some("failed"), Some("ResponseTooLarge")),
        "{v}"
    );
    let started = Instant::now();
    let v = http_tool(
        &s,
        &key,
        app,
        json!({"url": format!("http://{host}/slow"), "credential": "api", "timeout_ms": 500}),
    )
    .await;
    assert_eq!(v["status"], "timeout", "{v}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );

    assert!(
        other.heads().is_empty(),
        "an ungranted host was contacted: {:?}",
        other.heads()
    );
    for h in api.heads() {
        assert!(!h.contains("theirs-s3cret") && !h.contains(SECRET2), "{h}");
        assert!(!h.to_ascii_lowercase().contains("x-warden-credential"), "{h}");
    }
    assert_eq!(http_refused_metric(&s).await, before + refusals);
    s.stop().await.unwrap();
}

const CLIENT_SECRET: &str = "oauth-client-s3cret-only-for-the-token-host";

/// An OAuth2 token endpoint on loopback: hands out `tok-N-issued`, living
/// an hour, and records every request (head and form body).
struct TokenEndpoint {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl TokenEndpoint {
    fn start() -> TokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push(String::from_utf8_lossy(&got).into_owned());
                    l.len()
                };
                let body =
                    format!(r#"{{"access_token":"tok-{n}-issued","token_type":"bearer","expires_in":3600}}"#);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenEndpoint { port, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oauth2_credential_gets_its_token_from_warden_and_the_box_sees_neither_secret_nor_token() {
    let api = Upstream::start();
    let auth = TokenEndpoint::start();
    let s = server_with(|c| {
        c.policy.network_ip_literals = true;
        c.policy.network_allow_cidrs = vec!["127.0.0.1/32".into()];
        c.credentials.key = Some(CREDENTIALS_KEY.into());
    })
    .await;
    let dev = s.key("developer", "dev", None).await;
    let app = "oauthed";
    let api_host = format!("127.0.0.1:{}", api.port);
    let auth_host = format!("127.0.0.1:{}", auth.port);
    let mut m = manifest(SNOOP_CODE, "1.0.0", "python3", "main.py");
    // The plugin declares the API host only: the token host is Warden's.
    m["permissions"] = json!({"network": [api_host], "credentials": ["oauth"]});
    s.publish(&dev, package(&m, &[("main.py", SNOOP)]), app).await;
    s.expect(
        Method::POST,
        &format!("/v1/apps/{app}/installations"),
        &s.admin,
        Some(json!({"plugin": HTTP_TOOL})),
        StatusCode::CREATED,
    )
    .await;
    let app_key = s.key("app", app, Some(app)).await;
    let path = format!("/v1/apps/{app}/credentials/oauth");

    // A token endpoint outside the credential's hosts: refused where it is.
    let bad = s
        .expect(
            Method::PUT,
            &path,
            &app_key,
            Some(
                json!({"kind": "oauth2_client_credentials", "token_url": "https://auth.elsewhere.test/token",
                        "client_id": "warden", "secret": CLIENT_SECRET, "hosts": [api_host]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(bad["errors"][0]["location"], "/token_url", "{bad}");
    assert!(!bad.to_string().contains(CLIENT_SECRET), "{bad}");
    let missing = s
        .expect(
            Method::PUT,
            &path,
            &app_key,
            Some(json!({"kind": "oauth2_client_credentials", "secret": CLIENT_SECRET, "hosts": [api_host]})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    let at: Vec<&str> = missing["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["location"].as_str().unwrap())
        .collect();
    assert_eq!(at, ["/token_url", "/client_id"], "{missing}");

    let v = s
        .expect(
            Method::PUT,
            &path,
            &app_key,
            Some(json!({"kind": "oauth2_client_credentials", "token_url": format!("http://{auth_host}/oauth/token"),
                        "client_id": "warden", "scope": "read", "secret": CLIENT_SECRET,
                        "hosts": [api_host, auth_host]})),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(v["kind"], "oauth2_client_credentials", "{v}");
    assert_eq!(v["token_url"], format!("http://{auth_host}/oauth/token"), "{v}");
    assert_eq!(
        (v["client_id"].as_str(), v["scope"].as_str()),
        (Some("warden"), Some("read"))
    );
    assert!(!v.to_string().contains(CLIENT_SECRET), "{v}");

    // Two box calls and an HTTP tool call: one token request.
    let mut outputs = Vec::new();
    for i in 0..2 {
        let event = json!({"with": [format!("http://{api_host}/box{i}"), "oauth"]}).to_string();
        let (status, v, _) = s.execute(&app_key, app, SNOOP_CODE, &event, "").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["return_value"]["with"]["status"], 200, "{v}");
        assert!(v["stdout"].as_str().unwrap().contains("ENV "), "{v}");
        outputs.push(v);
    }
    let v = http_tool(
        &s,
        &app_key,
        app,
        json!({"url": format!("http://{api_host}/tool"), "credential": "oauth"}),
    )
    .await;
    assert_eq!(v["return_value"]["status"], 200, "{v}");
    outputs.push(v);
    let tokens = auth.seen();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert!(tokens[0].starts_with("POST /oauth/token "), "{}", tokens[0]);
    assert!(
        tokens[0].contains(&format!("client_secret={CLIENT_SECRET}")),
        "{}",
        tokens[0]
    );
    let heads = api.heads();
    assert_eq!(heads.len(), 3, "{heads:?}");
    for h in &heads {
        assert!(h.contains("\r\nauthorization: Bearer tok-1-issued\r\n"), "{h}");
        assert!(!h.contains(CLIENT_SECRET), "the client secret went upstream: {h}");
    }
    // Neither the client secret nor the token is in what the box saw
    // (environment, files, output), the records or the audit.
    for v in &outputs {
        let rec = s
            .expect(
                Method::GET,
                &format!("/v1/executions/{}", v["id"].as_str().unwrap()),
                &app_key,
                None,
                StatusCode::OK,
            )
            .await;
        for text in [v.to_string(), rec.to_string()] {
            assert!(
                !text.contains(CLIENT_SECRET) && !text.contains("tok-1-issued"),
                "{text}"
            );
        }
    }
    let trail = s
        .expect(Method::GET, "/v1/audit?limit=200", &s.admin, None, StatusCode::OK)
        .await
        .to_string();
    assert!(
        !trail.contains(CLIENT_SECRET) && !trail.contains("tok-1-issued"),
        "{trail}"
    );
    assert!(trail.contains("credential_use"), "{trail}");

    // Deleted: its token leaves the server's cache (the server runs in
    // this process, so its cache is this one).
    let cached = format!("{app}\0\0oauth");
    assert!(warden_egress::oauth2_token_cached(&cached));
    s.expect(Method::DELETE, &path, &app_key, None, StatusCode::NO_CONTENT)
        .await;
    assert!(!warden_egress::oauth2_token_cached(&cached));
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_installations_credential_comes_before_the_apps_and_goes_with_the_installation() {
    let up = Upstream::start();
    let s = server_with(|c| {
        c.policy.network_ip_literals = true;
        c.policy.network_allow_cidrs = vec!["127.0.0.1/32".into()];
        c.credentials.key = Some(CREDENTIALS_KEY.into());
    })
    .await;
    let dev = s.key("developer", "dev", None).await;
    let app = "inst";
    let host = format!("127.0.0.1:{}", up.port);
    let mut m = manifest(SNOOP_CODE, "1.0.0", "python3", "main.py");
    m["permissions"] = json!({"network": [host], "credentials": ["github"]});
    s.publish(&dev, package(&m, &[("main.py", SNOOP)]), app).await;
    let app_key = s.key("app", app, Some(app)).await;
    s.expect(
        Method::POST,
        "/v1/apps",
        &s.admin,
        Some(json!({"id": "other-app"})),
        StatusCode::CREATED,
    )
    .await;
    let other_app = s.key("app", "other-app", Some("other-app")).await;
    let body =
        |secret: &str| json!({"kind": "api_key", "header": "X-Api-Key", "secret": secret, "hosts": [host]});
    let app_path = format!("/v1/apps/{app}/credentials/github");
    let inst_path = format!("/v1/apps/{app}/installations/{SNOOP_CODE}/credentials/github");
    s.expect(
        Method::PUT,
        &app_path,
        &app_key,
        Some(body(SECRET)),
        StatusCode::CREATED,
    )
    .await;
    // Another app may not write it; an installation that does not exist
    // has no credentials.
    let r = s
        .call(Method::PUT, &inst_path, Some(&other_app), Some(body(SECRET2)))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    s.expect(
        Method::PUT,
        &format!("/v1/apps/{app}/installations/test.caps.absent/credentials/github"),
        &app_key,
        Some(body(SECRET2)),
        StatusCode::NOT_FOUND,
    )
    .await;
    let v = s
        .expect(
            Method::PUT,
            &inst_path,
            &app_key,
            Some(body(SECRET2)),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(v["installation"], SNOOP_CODE, "{v}");
    assert!(!v.to_string().contains(SECRET2), "{v}");
    let listed = s
        .expect(
            Method::GET,
            &format!("/v1/apps/{app}/installations/{SNOOP_CODE}/credentials"),
            &app_key,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert!(!listed.to_string().contains(SECRET2));

    let call = |path: &'static str| {
        let s = &s;
        let app_key = &app_key;
        let event = json!({"with": [format!("http://{host}/{path}"), "github"]}).to_string();
        async move {
            let (status, v, _) = s.execute(app_key, app, SNOOP_CODE, &event, "").await;
            assert_eq!(status, StatusCode::OK, "{v}");
            assert_eq!(v["return_value"]["with"]["status"], 200, "{v}");
            assert!(
                !v.to_string().contains(SECRET) && !v.to_string().contains(SECRET2),
                "{v}"
            );
        }
    };
    let sent = |path: &str| {
        up.heads()
            .into_iter()
            .find(|h| h.starts_with(&format!("GET /{path} ")))
            .unwrap()
    };
    // The installation's first.
    call("first").await;
    assert!(
        sent("first").contains(&format!("\r\nx-api-key: {SECRET2}\r\n")),
        "{}",
        sent("first")
    );
    // Deleted: the app's again.
    s.expect(Method::DELETE, &inst_path, &app_key, None, StatusCode::NO_CONTENT)
        .await;
    s.expect(Method::GET, &inst_path, &app_key, None, StatusCode::NOT_FOUND)
        .await;
    call("second").await;
    assert!(
        sent("second").contains(&format!("\r\nx-api-key: {SECRET}\r\n")),
        "{}",
        sent("second")
    );
    // Uninstalled: the installation's credentials go with it.
    s.expect(
        Method::PUT,
        &inst_path,
        &s.admin,
        Some(body(SECRET2)),
        StatusCode::CREATED,
    )
    .await;
    s.expect(
        Method::DELETE,
        &format!("/v1/apps/{app}/installations/{SNOOP_CODE}"),
        &s.admin,
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    s.expect(
        Method::POST,
        &format!("/v1/apps/{app}/installations"),
        &s.admin,
        Some(json!({"plugin": SNOOP_CODE})),
        StatusCode::CREATED,
    )
    .await;
    s.expect(Method::GET, &inst_path, &app_key, None, StatusCode::NOT_FOUND)
        .await;
    call("third").await;
    assert!(
        sent("third").contains(&format!("\r\nx-api-key: {SECRET}\r\n")),
        "{}",
        sent("third")
    );

    // Audited on write (naming the installation) and on use; never a secret.
    let trail = s
        .expect(Method::GET, "/v1/audit?limit=200", &s.admin, None, StatusCode::OK)
        .await;
    let text = trail.to_string();
    assert!(!text.contains(SECRET) && !text.contains(SECRET2), "{text}");
    let events = trail["items"]
        .as_array()
        .unwrap_or_else(|| trail.as_array().unwrap());
    let count = |action: &str, installation: bool| {
        events
            .iter()
            .filter(|e| e["action"] == action && (e["detail"]["installation"] == SNOOP_CODE) == installation)
            .count()
    };
    assert_eq!(count("credential_put", true), 2, "{text}");
    assert_eq!(count("credential_delete", true), 1, "{text}");
    assert!(
        events.iter().filter(|e| e["action"] == "credential_use").count() >= 3,
        "{text}"
    );
    s.stop().await.unwrap();
}
