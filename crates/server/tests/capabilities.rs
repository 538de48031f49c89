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
                let body = "hello from upstream";
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
