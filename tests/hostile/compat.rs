//! Piston's exploit programs (restated in `fixtures/piston/`) and Dify's
//! usual attacks, sent through the real `warden serve` on the compatibility
//! paths: each must fail, leave nothing for the next run, leave no
//! execution unfinished, and leave the server answering.

use std::io::Read;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::fixtures;
use crate::platform::{Platform, client};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("piston").join(name)).unwrap()
}

async fn piston(p: &Platform, key: &str, body: Value) -> Value {
    let r = client()
        .post(p.url("/api/v2/execute"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

fn python(name: &str, args: &[&str]) -> Value {
    json!({"language": "python", "version": "*", "files": [{"name": "main.py", "content": fixture(name)}], "args": args, "run_timeout": 3000})
}

/// The server answers, runs a program, and holds no unfinished execution.
async fn still_serving(p: &Platform, key: &str) {
    let v = piston(
        p,
        key,
        json!({"language": "bash", "version": "*", "files": [{"content": "echo alive"}]}),
    )
    .await;
    assert_eq!(v["run"]["stdout"], "alive\n", "{v}");
    let left = p.unfinished().await;
    assert!(left.is_empty(), "executions left unfinished: {left:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pistons_exploits_fail_and_leave_nothing_behind() {
    crate::harness::require_root();
    let p = Platform::start(&[]);
    let key = p.app("grader", &[]).await;

    // A fork loop meets the pids limit and the wall clock.
    let v = piston(&p, &key, python("fork_forever.py", &[])).await;
    assert_eq!(v["run"]["status"], "TO", "{v}");
    still_serving(&p, &key).await;

    // Filling the disk stops at the workspace's cap; the next run has room.
    let v = piston(&p, &key, python("fill_disk.py", &[])).await;
    assert!(
        v["run"]["stdout"].as_str().unwrap().starts_with("stopped:"),
        "{v}"
    );
    assert_eq!(v["run"]["status"], "RE");
    let v = piston(
        &p,
        &key,
        json!({"language": "python", "version": "*", "files": [{"content": "import os\ns = os.statvfs('.')\nprint(os.path.exists('beans'), s.f_bavail * s.f_frsize > 32 << 20)"}]}),
    )
    .await;
    assert_eq!(v["run"]["stdout"], "False True\n", "{v}");

    // Files left anywhere writable are gone by the next run (warm and cold).
    for language in ["python", "bash"] {
        let body = if language == "python" {
            python("persist.py", &[])
        } else {
            json!({"language": "bash", "version": "*", "files": [{"content": "for d in /dev/shm /run/lock /tmp /var/tmp /workspace; do [ -e $d/bean ] && echo $d/bean exists; echo beannn > $d/bean 2>/dev/null; done; true"}]})
        };
        for round in 0..3 {
            let v = piston(&p, &key, body.clone()).await;
            assert_eq!(v["run"]["stdout"], "", "{language} round {round}: {v}");
        }
    }

    // No network: neither the internet nor the host's own loopback.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let v = piston(&p, &key, python("network.py", &[&port])).await;
    assert_eq!(v["run"]["stdout"], "reached: []\n", "{v}");
    assert!(listener.accept().is_err(), "the box reached the host's loopback");

    // Runaway output is cut at its cap and the run is stopped.
    let v = piston(&p, &key, python("runaway_output.py", &[])).await;
    let out = v["run"]["stdout"].as_str().unwrap();
    assert!(out.len() <= 1 << 20, "{} bytes kept", out.len());
    assert!(
        matches!(v["run"]["status"].as_str(), Some("OL" | "TO")),
        "{}",
        v["run"]["status"]
    );
    assert_eq!(v["run"]["signal"], "SIGKILL");

    // Concurrent requests each get their own answer.
    let calls = (0..8).map(|i| {
        piston(
            &p,
            &key,
            json!({"language": "c", "version": "*", "files": [{"name": "m.c", "content": format!("#include <stdio.h>\nint main(void){{printf(\"request #{i}\");return 0;}}")}]}),
        )
    });
    for (i, v) in futures::future::join_all(calls).await.into_iter().enumerate() {
        assert_eq!(v["run"]["stdout"], format!("request #{i}"), "{v}");
    }
    still_serving(&p, &key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn difys_malicious_code_nodes_are_contained() {
    crate::harness::require_root();
    let p = Platform::start(&[("WARDEN_RUN_DEFAULT_TIMEOUT_MS", "3000")]);
    let key = p.app("dify", &[]).await;
    let run = |code: &str| {
        let body = json!({"language": "python3", "code": code, "preload": "", "enable_network": true});
        let key = key.clone();
        let url = p.url("/v1/sandbox/run");
        async move {
            let r = client()
                .post(url)
                .header("X-Api-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["code"], 0, "{v}");
            v["data"].clone()
        }
    };
    // The host's files: a secret planted on the host is not in the box.
    let secret = tempfile::Builder::new()
        .prefix("warden-secret-")
        .tempfile()
        .unwrap();
    std::fs::write(secret.path(), "host secret").unwrap();
    let d = run(&format!(
        "print(open({:?}).read())",
        secret.path().to_str().unwrap()
    ))
    .await;
    assert!(d["error"].as_str().unwrap().contains("FileNotFoundError"), "{d}");
    // Escaping through a subprocess: still the box.
    let d = run(&format!(
        "import subprocess\nprint(subprocess.run(['cat', {:?}], capture_output=True).returncode)",
        secret.path().to_str().unwrap()
    ))
    .await;
    assert_eq!(d["stdout"], "1\n", "{d}");
    // A fork bomb.
    let d = run("import os\nwhile True:\n    os.fork()").await;
    assert!(!d["error"].as_str().unwrap().is_empty(), "{d}");
    // Network, although asked for: not granted by the default template.
    let d = run("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)").await;
    assert!(!d["error"].as_str().unwrap().is_empty(), "{d}");
    // The host is untouched: the planted file is as it was.
    let mut text = String::new();
    std::fs::File::open(secret.path())
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "host secret");
    let d = run("print('fine')").await;
    assert_eq!(d["stdout"], "fine\n");
    assert!(p.unfinished().await.is_empty());
    let (st, _) = p.req(Method::GET, "/healthz", &p.admin, None).await;
    assert_eq!(st, StatusCode::OK);
}
