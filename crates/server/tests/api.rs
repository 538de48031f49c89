//! The API over a real socket: the execute path and its checks, errors as
//! problem documents, backpressure, streaming, durability on shutdown,
//! integrity, metrics, and the committed OpenAPI document.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use warden_core::Store;

const CODE: &str = "vendor.greeting.say_hello";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn execute_checks_input_and_output_and_records_everything() {
    let s = server().await;
    let dev = s.key("developer", "alice", None).await;
    s.publish(&dev, hello(CODE, "1.0.0"), "shop").await;
    let app = s.key("app", "shop", Some("shop")).await;

    let (st, v, headers) = s.execute(&app, "shop", CODE, r#"{"name": "Ada"}"#, "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "success");
    assert_eq!(v["return_value"], json!({"greeting": "hello Ada"}));
    assert_eq!(v["stdout"], "greeting Ada\n");
    assert_eq!(v["version"], "1.0.0");
    let id = v["id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("/v1/executions/{id}").as_str());
    assert!(headers.contains_key("x-request-id"));
    // The record reads back the same.
    let back = s
        .expect(
            Method::GET,
            &format!("/v1/executions/{id}"),
            &app,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(back["return_value"], v["return_value"]);
    assert_eq!(back["status"], "success");

    // Input schema: every violation with its pointer, nothing recorded.
    let before = s
        .state
        .store
        .list_executions(Default::default())
        .await
        .unwrap()
        .items
        .len();
    let (st, p, headers) = s
        .execute(&app, "shop", CODE, r#"{"name": 7, "extra": true}"#, "")
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(p["type"], "/problems/input-schema");
    let locations: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["location"].as_str().unwrap())
        .collect();
    assert!(locations.contains(&"/name"), "{p}");
    assert!(locations.contains(&"/"), "{p}");
    // Not JSON at all.
    let (st, p, _) = s.execute(&app, "shop", CODE, "{\"name\": ", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(p["detail"].as_str().unwrap().contains("not valid JSON"), "{p}");
    // An integer beyond 64 bits would be checked rounded and received exact
    // by the handler: refused where it is.
    let (st, p, _) = s
        .execute(
            &app,
            "shop",
            CODE,
            r#"{"name": "x", "n": [1, 18446744073709551616]}"#,
            "",
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["errors"][0]["location"], "/n/1", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("64 bits"), "{p}");
    // Limits only within the version's.
    let (st, p, _) = s
        .execute(
            &app,
            "shop",
            CODE,
            r#"{"name": "x"}"#,
            "?timeout_ms=999999&memory_mb=4",
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["errors"].as_array().unwrap().len(), 2, "{p}");
    let (st, p, _) = s
        .execute(&app, "shop", CODE, r#"{"name": "x"}"#, "?mode=later")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(p["errors"][0]["location"], "query:mode");
    let after = s
        .state
        .store
        .list_executions(Default::default())
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(before, after, "refused requests leave no record");

    // An event over the limit: 413, as a problem.
    // (On a connection of its own: the server answers before reading the
    // body, then closes that connection.)
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(7 << 20));
    let r = reqwest::Client::new()
        .post(s.url(&format!("/v1/apps/shop/plugins/{CODE}/execute")))
        .bearer_auth(&app)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let st = r.status();
    let p: Value = r.json().await.unwrap();
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
    assert_eq!(p["type"], "/problems/too-large");

    // Output schema: the value is checked, the violation recorded.
    let mut m = manifest("vendor.bad.output", "1.0.0", "python3", "main.py");
    m["output_schema"] =
        json!({"type": "object", "required": ["answer"], "properties": {"answer": {"type": "integer"}}});
    s.publish(
        &dev,
        package(
            &m,
            &[("main.py", "def handler(e):\n    return {'answer': 'forty-two'}\n")],
        ),
        "shop",
    )
    .await;
    let (st, v, _) = s.execute(&app, "shop", "vendor.bad.output", "{}", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["status"], "error");
    assert_eq!(v["error_kind"], "output_schema_violation");
    assert_eq!(v["error"]["type"], "OutputSchemaViolation");
    assert_eq!(v["error"]["violations"][0]["location"], "/answer");
    let stored = s
        .expect(
            Method::GET,
            &format!("/v1/executions/{}", v["id"].as_str().unwrap()),
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(stored["error_kind"], "output_schema_violation");

    // Listing: filters and cursors.
    let page = s
        .expect(
            Method::GET,
            "/v1/executions?plugin=vendor.greeting.say_hello&status=success&limit=1",
            &app,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let p = s
        .expect(
            Method::GET,
            "/v1/executions?limit=1000",
            &app,
            None,
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(p["errors"][0]["location"], "query:limit");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_are_problem_documents_with_the_right_status() {
    let s = server().await;
    let dev = s.key("developer", "alice", None).await;
    // A package with several problems: all reported, each located.
    let mut m = manifest("Bad Code", "one", "cobol", "main.py");
    m["limits"] = json!({"memory_mb": 999999});
    m["surprise"] = json!(1);
    let r = s.upload(&dev, package(&m, &[])).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    let locations: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["location"].as_str().unwrap())
        .collect();
    for expected in ["/code", "/version", "/runtime", "/limits/memory_mb", "/surprise"] {
        assert!(locations.contains(&expected), "{expected} missing from {p}");
    }
    // A zip-slip archive is refused naming the entry.
    let evil = warden_package::build::raw_zip(&[
        (
            "manifest.json",
            manifest("a.b.c", "1.0.0", "python3", "main.py")
                .to_string()
                .as_bytes(),
        ),
        ("../evil.py", b"x"),
    ]);
    let p: Value = s.upload(&dev, evil).await.json().await.unwrap();
    assert!(
        p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["location"] == "archive:../evil.py"),
        "{p}"
    );
    // Not a zip; empty.
    let p: Value = s.upload(&dev, b"hello".to_vec()).await.json().await.unwrap();
    assert_eq!(p["status"], 422);
    let r = s.upload(&dev, Vec::new()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Over the package limit.
    let r = reqwest::Client::new()
        .post(s.url("/v1/plugins"))
        .bearer_auth(&dev)
        .header("content-type", "application/zip")
        .body(vec![0u8; 33 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Multipart works too.
    let form = reqwest::multipart::Form::new().part(
        "package",
        reqwest::multipart::Part::bytes(hello(CODE, "1.0.0")).file_name("p.zip"),
    );
    let r = s
        .client
        .post(s.url("/v1/plugins"))
        .bearer_auth(&dev)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Re-uploading a draft replaces its package: 200, not 201.
    let r = s.upload(&dev, hello(CODE, "1.0.0")).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Lifecycle: 409 naming the state and the allowed moves.
    let p = s
        .expect(
            Method::POST,
            &format!("/v1/plugins/{CODE}/versions/1.0.0/approve"),
            &s.admin,
            None,
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!(p["type"], "/problems/wrong-state");
    assert_eq!(p["current_state"], "draft");
    assert_eq!(p["allowed"], json!(["submit", "upload a new package"]));
    // A reason is required to reject; the body is strict.
    s.expect(
        Method::POST,
        &format!("/v1/plugins/{CODE}/versions/1.0.0/submit"),
        &dev,
        None,
        StatusCode::OK,
    )
    .await;
    let p = s
        .expect(
            Method::POST,
            &format!("/v1/plugins/{CODE}/versions/1.0.0/reject"),
            &s.admin,
            Some(json!({"reason": " "})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(p["errors"][0]["location"], "/reason");
    let p = s
        .expect(
            Method::POST,
            &format!("/v1/plugins/{CODE}/versions/1.0.0/reject"),
            &s.admin,
            Some(json!({"reasn": "typo"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(p["detail"].as_str().unwrap().contains("reasn"), "{p}");
    let r = s
        .client
        .post(s.url(&format!("/v1/plugins/{CODE}/versions/1.0.0/reject")))
        .bearer_auth(&s.admin)
        .body("{\"reason\": \"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // 404s and 405s.
    let p = s
        .expect(
            Method::GET,
            "/v1/plugins/no.such.plugin",
            &s.admin,
            None,
            StatusCode::NOT_FOUND,
        )
        .await;
    assert_eq!(p["type"], "/problems/not-found");
    let p = s
        .expect(Method::GET, "/v2/anything", &s.admin, None, StatusCode::NOT_FOUND)
        .await;
    assert!(p["detail"].as_str().unwrap().contains("/v2/anything"));
    let p = s
        .expect(
            Method::PATCH,
            "/v1/apps",
            &s.admin,
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        )
        .await;
    assert_eq!(p["status"], 405);
    // A bad key, a revoked key.
    let r = s.call(Method::GET, "/v1/me", Some("wk_0000"), None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    let keys = s
        .expect(Method::GET, "/v1/keys", &s.admin, None, StatusCode::OK)
        .await;
    let alice = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "alice")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.call(Method::DELETE, &format!("/v1/keys/{alice}"), Some(&s.admin), None)
        .await;
    let r = s.call(Method::GET, "/v1/me", Some(&dev), None).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a revoked key stops working at once on this node"
    );
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beyond_the_queue_requests_get_429_and_leave_no_record() {
    let s = server_with(|c| {
        c.max_concurrent = 1;
        c.max_queue = 1;
        c.retry_after_secs = 3;
    })
    .await;
    let dev = s.key("developer", "alice", None).await;
    let m = manifest("vendor.slow.sleep", "1.0.0", "python3", "main.py");
    s.publish(
        &dev,
        package(
            &m,
            &[(
                "main.py",
                "import time\ndef handler(e):\n    time.sleep(1.5)\n    return {}\n",
            )],
        ),
        "shop",
    )
    .await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..5 {
        let (st, v, headers) = s
            .execute(&s.admin, "shop", "vendor.slow.sleep", "{}", "?mode=async")
            .await;
        match st {
            StatusCode::ACCEPTED => accepted.push(v["id"].as_str().unwrap().to_owned()),
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(headers["retry-after"], "3");
                assert_eq!(v["type"], "/problems/busy");
                refused += 1;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(accepted.len(), 2, "one running and one queued");
    assert_eq!(refused, 3);
    // Every accepted request has exactly one record; the refused, none.
    let all = s
        .state
        .store
        .list_executions(Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 2);
    for id in &accepted {
        let mut v = Value::Null;
        for _ in 0..100 {
            v = s
                .expect(
                    Method::GET,
                    &format!("/v1/executions/{id}"),
                    &s.admin,
                    None,
                    StatusCode::OK,
                )
                .await;
            if v["status"] == "success" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(v["status"], "success", "{v}");
    }
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_stream_and_resume_from_last_event_id() {
    let s = server().await;
    let dev = s.key("developer", "alice", None).await;
    let m = manifest("vendor.chatty.talk", "1.0.0", "python3", "main.py");
    let code = "import sys, time\ndef handler(e):\n    for i in range(3):\n        print('line', i, flush=True)\n        time.sleep(0.2)\n    print('oops', file=sys.stderr, flush=True)\n    return {'n': 3}\n";
    s.publish(&dev, package(&m, &[("main.py", code)]), "shop").await;
    let (st, v, _) = s
        .execute(&s.admin, "shop", "vendor.chatty.talk", "{}", "?mode=async")
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(v["status"], "queued");
    let id = v["id"].as_str().unwrap().to_owned();
    let events = sse(&s, &id, None).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"status"));
    assert_eq!(kinds.last(), Some(&"result"));
    let stdout: String = events
        .iter()
        .filter(|e| e.1 == "stdout")
        .map(|e| serde_json::from_str::<String>(&e.2).unwrap())
        .collect();
    assert_eq!(stdout, "line 0\nline 1\nline 2\n");
    assert!(events.iter().any(|e| e.1 == "stderr" && e.2.contains("oops")));
    let result: Value = serde_json::from_str(&events.last().unwrap().2).unwrap();
    assert_eq!(result["status"], "success");
    assert_eq!(result["return_value"], json!({"n": 3}));
    // Resume after the second event: exactly the rest, ids in order.
    let rest = sse(&s, &id, Some(&events[1].0)).await;
    assert_eq!(rest, events[2..].to_vec());
    assert!(sse(&s, &id, Some("end")).await.is_empty());
    s.stop().await.unwrap();
}

/// (id, event, data) of every event until the stream ends.
async fn sse(s: &Server, id: &str, last: Option<&str>) -> Vec<(String, String, String)> {
    let mut r = s
        .client
        .get(s.url(&format!("/v1/executions/{id}/events")))
        .bearer_auth(&s.admin);
    if let Some(l) = last {
        r = r.header("last-event-id", l);
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(30), r.text())
        .await
        .unwrap()
        .unwrap();
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty() && !b.starts_with(':'))
        .map(|block| {
            let (mut i, mut e, mut d) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    i = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("event:") {
                    e = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    d.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            (i, e, d)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_finishes_in_flight_work_or_records_it_interrupted() {
    let s = server_with(|c| c.shutdown_grace_secs = 5).await;
    let dev = s.key("developer", "alice", None).await;
    let m = manifest("vendor.slow.sleep", "1.0.0", "python3", "main.py");
    let slow =
        "import time\ndef handler(e):\n    time.sleep(e.get('s', 1))\n    return {'slept': e.get('s', 1)}\n";
    s.publish(&dev, package(&m, &[("main.py", slow)]), "shop").await;
    let (st, v, _) = s
        .execute(
            &s.admin,
            "shop",
            "vendor.slow.sleep",
            r#"{"s": 1}"#,
            "?mode=async",
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let id = v["id"].as_str().unwrap().to_owned();
    let db = s.state.config.database_url();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (stopped, _data) = s.stop_keep_data().await;
    stopped.unwrap();
    let store = warden_store::SqlStore::connect(&db).await.unwrap();
    let e = store.get_execution(&id).await.unwrap().unwrap();
    assert_eq!(
        e.status,
        warden_core::ExecutionStatus::Success,
        "the grace period let it finish"
    );

    // With no grace, an execution still running is recorded interrupted.
    let s = server_with(|c| c.shutdown_grace_secs = 0).await;
    let dev = s.key("developer", "alice", None).await;
    s.publish(&dev, package(&m, &[("main.py", slow)]), "shop").await;
    let (_, v, _) = s
        .execute(
            &s.admin,
            "shop",
            "vendor.slow.sleep",
            r#"{"s": 5}"#,
            "?mode=async",
        )
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    let db = s.state.config.database_url();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (stopped, _data) = s.stop_keep_data().await;
    stopped.unwrap();
    let store = warden_store::SqlStore::connect(&db).await.unwrap();
    let e = store.get_execution(&id).await.unwrap().unwrap();
    assert_eq!(e.status, warden_core::ExecutionStatus::Interrupted);
    assert!(e.result.unwrap().error.unwrap().message.contains("shut down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_leaves_accepted_async_work_that_has_not_started_queued() {
    let s = server_with(|c| {
        c.max_concurrent = 1;
        c.shutdown_grace_secs = 0;
    })
    .await;
    let dev = s.key("developer", "alice", None).await;
    let m = manifest("vendor.slow.sleep", "1.0.0", "python3", "main.py");
    let slow = "import time\ndef handler(e):\n    time.sleep(e.get('s', 1))\n    return {}\n";
    s.publish(&dev, package(&m, &[("main.py", slow)]), "shop").await;
    let mut ids = Vec::new();
    for event in [r#"{"s": 5}"#, r#"{"s": 0}"#] {
        let (st, v, _) = s
            .execute(&s.admin, "shop", "vendor.slow.sleep", event, "?mode=async")
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let db = s.state.config.database_url();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (stopped, _data) = s.stop_keep_data().await;
    stopped.unwrap();
    let store = warden_store::SqlStore::connect(&db).await.unwrap();
    let running = store.get_execution(&ids[0]).await.unwrap().unwrap();
    assert_eq!(running.status, warden_core::ExecutionStatus::Interrupted);
    let waiting = store.get_execution(&ids[1]).await.unwrap().unwrap();
    assert_eq!(waiting.status, warden_core::ExecutionStatus::Queued);
    // Still in the queue, with its event, for the next start.
    let (next, call) = store
        .claim_next_execution("next-start", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.id, ids[1]);
    assert_eq!(call.event, r#"{"s": 0}"#);
}

/// Put an async execution in the store's queue as a node that is gone
/// would have: this server takes it from there.
async fn enqueue(s: &Server, version: &str, sha256: &str, event: &str) -> String {
    use warden_core::{Execution, ExecutionMode, ExecutionSource, ExecutionStatus, QueuedCall};
    let e = Execution {
        id: warden_core::model::new_id("exe"),
        app: "shop".into(),
        source: ExecutionSource::Plugin {
            plugin: CODE.into(),
            version: version.into(),
        },
        status: ExecutionStatus::Queued,
        mode: ExecutionMode::Async,
        node: "a-node-that-is-gone".into(),
        error_kind: None,
        result: None,
        created_at: warden_core::model::now_ms(),
        started_at: None,
        finished_at: None,
        duration_ms: None,
        egress_refused: Vec::new(),
    };
    let call = QueuedCall {
        event: event.into(),
        package_sha256: sha256.into(),
        timeout_ms: 5000,
        memory_mb: 128,
    };
    s.state.store.enqueue_execution(e.clone(), call).await.unwrap();
    e.id
}

/// The execution once final (the queue is polled about once a second).
async fn settled(s: &Server, id: &str) -> Value {
    for _ in 0..200 {
        let v = s
            .expect(
                Method::GET,
                &format!("/v1/executions/{id}"),
                &s.admin,
                None,
                StatusCode::OK,
            )
            .await;
        if !matches!(v["status"].as_str(), Some("queued" | "running")) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("execution {id} never finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_executions_run_with_their_version_or_end_saying_why() {
    let s = server().await;
    let dev = s.key("developer", "alice", None).await;
    let v = s.publish(&dev, hello(CODE, "1.0.0"), "shop").await;
    let sha = v["package_sha256"].as_str().unwrap().to_owned();

    let ok = enqueue(&s, "1.0.0", &sha, r#"{"name": "Queue"}"#).await;
    let done = settled(&s, &ok).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["return_value"], json!({"greeting": "hello Queue"}));
    let record = s.state.store.get_execution(&ok).await.unwrap().unwrap();
    assert_ne!(
        record.node, "a-node-that-is-gone",
        "the node that ran it owns the record"
    );
    assert!(record.started_at.is_some());

    let cases = [
        (enqueue(&s, "9.9.9", &sha, "{}").await, "no longer exists"),
        (
            enqueue(&s, "1.0.0", &"0".repeat(64), "{}").await,
            "changed after the execution was accepted",
        ),
    ];
    for (id, why) in cases {
        let e = settled(&s, &id).await;
        assert_eq!(
            (e["status"].as_str(), e["error_kind"].as_str()),
            (Some("error"), Some("version_unavailable")),
            "{e}"
        );
        assert_eq!(e["error"]["type"], "VersionUnavailable");
        assert!(e["error"]["message"].as_str().unwrap().contains(why), "{e}");
    }

    // The package is swapped on disk after the call was accepted.
    let blob = s.data.path().join(format!("blobs/packages/{sha}.zip"));
    std::fs::write(&blob, hello(CODE, "6.6.6")).unwrap();
    let tampered = enqueue(&s, "1.0.0", &sha, r#"{"name": "Eve"}"#).await;
    let e = settled(&s, &tampered).await;
    assert_eq!(e["error_kind"], "version_unavailable", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("vendor.greeting.say_hello 1.0.0 cannot be loaded"),
        "{e}"
    );
    assert_eq!(e["return_value"], Value::Null, "nothing of it ran");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tampered_package_fails_the_call_the_version_and_counts() {
    let s = server().await;
    let dev = s.key("developer", "alice", None).await;
    let v = s.publish(&dev, hello(CODE, "1.0.0"), "shop").await;
    let (st, _, _) = s.execute(&s.admin, "shop", CODE, r#"{"name": "a"}"#, "").await;
    assert_eq!(st, StatusCode::OK);
    let blob = s.data.path().join(format!(
        "blobs/packages/{}.zip",
        v["package_sha256"].as_str().unwrap()
    ));
    std::fs::write(&blob, hello(CODE, "6.6.6")).unwrap();
    let (st, p, _) = s.execute(&s.admin, "shop", CODE, r#"{"name": "a"}"#, "").await;
    assert_eq!(st, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["type"], "/problems/integrity");
    let v = s
        .expect(
            Method::GET,
            &format!("/v1/plugins/{CODE}/versions/1.0.0"),
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["status"], "failed");
    let trail = s
        .expect(
            Method::GET,
            &format!("/v1/plugins/{CODE}/versions/1.0.0/audit"),
            &dev,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(trail.as_array().unwrap().last().unwrap()["action"], "fail");
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("warden_plugin_failures_total")
                && l.contains("reason=\"integrity\"")
                && l.contains(CODE)),
        "{metrics}"
    );
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn artifacts_are_listed_and_downloadable() {
    let s = server().await;
    let dev = s.key("developer", "alice", None).await;
    let m = manifest("vendor.files.report", "1.0.0", "python3", "main.py");
    let code = "def handler(e):\n    open('out/report.txt', 'w').write('quarterly\\n')\n    return {}\n";
    s.publish(&dev, package(&m, &[("main.py", code)]), "shop").await;
    let (st, v, _) = s.execute(&s.admin, "shop", "vendor.files.report", "{}", "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let a = &v["artifacts"][0];
    assert_eq!(a["path"], "report.txt");
    assert_eq!(a["size"], 10);
    let r = s
        .client
        .get(s.url(a["url"].as_str().unwrap()))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"quarterly\n");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operations_endpoints_answer() {
    let s = server().await;
    let r = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let ready: Value = s
        .client
        .get(s.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["store"], "ok");
    assert_eq!(ready["checks"]["jail"], "ok");
    // Request ids: made when absent, kept when given.
    let r = s
        .client
        .get(s.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    let a = s.client.get(s.url("/healthz")).send().await.unwrap().headers()["x-request-id"].clone();
    let b = s.client.get(s.url("/healthz")).send().await.unwrap().headers()["x-request-id"].clone();
    assert_ne!(a, b);
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "warden_http_requests_total",
        "warden_http_request_duration_seconds_bucket",
        "warden_pool_boxes",
        "warden_plugin_active_count",
        "warden_sandbox_process_restarts_total",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    assert!(
        !metrics.contains("exe_") && !metrics.contains("req_"),
        "no ids in labels"
    );
    let doc: Value = s
        .client
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let ui = s.client.get(s.url("/docs/")).send().await.unwrap();
    assert_eq!(ui.status(), StatusCode::OK);
    assert!(
        ui.text().await.unwrap().contains("swagger"),
        "the UI is served from vendored assets"
    );
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_admin_key_cannot_be_revoked() {
    let s = server().await;
    let me = s
        .expect(Method::GET, "/v1/me", &s.admin, None, StatusCode::OK)
        .await;
    let first = me["key_id"].as_str().unwrap().to_owned();
    // The key revoking itself, the last admin key: refused, named, still live.
    let p = s
        .expect(
            Method::DELETE,
            &format!("/v1/keys/{first}"),
            &s.admin,
            None,
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!(p["type"], "/problems/last-admin-key", "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("warden admin create-key"),
        "{p}"
    );
    s.expect(Method::GET, "/v1/me", &s.admin, None, StatusCode::OK)
        .await;
    // With a second admin key, the first one goes; then the second is the last.
    let second = s.key("admin", "second", None).await;
    s.expect(
        Method::DELETE,
        &format!("/v1/keys/{first}"),
        &second,
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    s.expect(Method::GET, "/v1/me", &s.admin, None, StatusCode::UNAUTHORIZED)
        .await;
    let second_id = s
        .expect(Method::GET, "/v1/me", &second, None, StatusCode::OK)
        .await["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.expect(
        Method::DELETE,
        &format!("/v1/keys/{second_id}"),
        &second,
        None,
        StatusCode::CONFLICT,
    )
    .await;
    // Other keys go as before; a key already revoked is not found.
    let created = s
        .expect(
            Method::POST,
            "/v1/keys",
            &second,
            Some(json!({"name": "alice", "role": "developer"})),
            StatusCode::CREATED,
        )
        .await;
    let dev_id = created["key"]["id"].as_str().unwrap().to_owned();
    for expected in [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND] {
        s.expect(
            Method::DELETE,
            &format!("/v1/keys/{dev_id}"),
            &second,
            None,
            expected,
        )
        .await;
    }
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_parameters_are_read_as_the_document_declares() {
    let s = server().await;
    // Enums and ranges are checked as the query is read, each problem
    // naming its parameter; the document declares the same (see below).
    for (query, location) in [
        ("status=", "query:status"),
        ("status=done", "query:status"),
        ("limit=0", "query:limit"),
        ("limit=501", "query:limit"),
        ("limit=-1", "query:limit"),
        ("since=soon", "query:since"),
    ] {
        let p = s
            .expect(
                Method::GET,
                &format!("/v1/executions?{query}"),
                &s.admin,
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
        assert_eq!(p["errors"][0]["location"], location, "{query}: {p}");
    }
    let page = s
        .expect(
            Method::GET,
            "/v1/executions?status=success&limit=500",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert!(
        page["items"].is_array() && page.get("next_cursor").is_some(),
        "{page}"
    );
    let doc = serde_json::to_value(warden_server::openapi()).unwrap();
    let params = doc["paths"]["/v1/executions"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = |name: &str| params.iter().find(|p| p["name"] == name).unwrap()["schema"].clone();
    assert_eq!(param("limit")["minimum"], 1);
    assert_eq!(param("limit")["maximum"], 500);
    assert_eq!(
        param("status")["enum"],
        json!([
            "queued",
            "running",
            "success",
            "failed",
            "timeout",
            "error",
            "interrupted",
            "cancelled"
        ])
    );
    // A form upload has one field.
    let form = reqwest::multipart::Form::new()
        .part(
            "package",
            reqwest::multipart::Part::bytes(hello("vendor.a.b", "1.0.0")),
        )
        .text("extra", "x");
    let dev = s.key("developer", "alice", None).await;
    let r = s
        .client
        .post(s.url("/v1/plugins"))
        .bearer_auth(&dev)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["location"], "form:extra", "{p}");
    s.stop().await.unwrap();
}

/// `docs/openapi.json` is what the code generates. To update it:
/// `warden openapi > docs/openapi.json` (or `WARDEN_UPDATE_OPENAPI=1`).
#[test]
fn the_committed_openapi_document_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let generated = warden_server::openapi_json();
    if std::env::var("WARDEN_UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json drifted from the code: run `cargo run -p warden-cli -- openapi > docs/openapi.json` and commit it"
    );
}

/// Every response link names an operation of the document by `operationId`
/// (utoipa 5.5 writes `operation_id`; `openapi_json` renames it), and each
/// parameter it fills is one that operation takes.
#[test]
fn response_links_point_at_operations_of_the_document() {
    let doc: Value = serde_json::from_str(&warden_server::openapi_json()).unwrap();
    let mut operations = std::collections::BTreeMap::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            if let Some(id) = op["operationId"].as_str() {
                let params: Vec<String> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect();
                // Generated clients (the console's types, SDKs) name
                // operations by id: two with one id would be one to them.
                assert!(
                    operations.insert(id.to_owned(), params).is_none(),
                    "two operations have the id {id}"
                );
            }
        }
    }
    let mut links = 0;
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let Some(responses) = op["responses"].as_object() else {
                continue;
            };
            for response in responses.values() {
                let Some(map) = response["links"].as_object() else {
                    continue;
                };
                for (name, link) in map {
                    assert!(link.get("operation_id").is_none(), "{name}: {link}");
                    let target = link["operationId"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{name}: {link}"));
                    let params = &operations[target];
                    for p in link["parameters"].as_object().unwrap().keys() {
                        assert!(
                            params.contains(p),
                            "link {name} fills {p}, which {target} does not take"
                        );
                    }
                    links += 1;
                }
            }
        }
    }
    assert!(links >= 20, "only {links} links");
}
