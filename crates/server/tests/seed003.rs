//! Seed 003's control-plane API (`kweaver-ai/sandbox`, `/api/v1`) as its
//! clients drive it: the requests its integration tests and web console
//! send (sessions with flat `cpu`/`memory`/`disk`, Lambda-style Python
//! handlers with an `event`, async submit then polling, `execute-sync`,
//! multipart uploads with `?path=`, template CRUD), read the way they read
//! the answers: the states, `return_value`, the traceback in `stderr`,
//! upstream's statuses and error envelopes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn app(s: &Server, id: &str) -> String {
    let r = s
        .call(Method::POST, "/v1/apps", Some(&s.admin), Some(json!({"id": id})))
        .await;
    assert!(r.status() == StatusCode::CREATED || r.status() == StatusCode::CONFLICT);
    s.key("app", id, Some(id)).await
}

/// Call as `key`; the status and the JSON body (`Null` when none).
async fn call(s: &Server, key: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let r = s.call(method, path, Some(key), body).await;
    let st = r.status();
    let text = r.text().await.unwrap_or_default();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// What upstream's integration tests send to create a session.
async fn session(s: &Server, key: &str, template: &str) -> Value {
    let (st, v) = call(
        s,
        key,
        Method::POST,
        "/api/v1/sessions",
        Some(json!({"template_id": template, "timeout": 300, "cpu": "1", "memory": "512Mi", "disk": "1Gi", "env_vars": {"GREETING": "hi"}})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

/// Execute synchronously; the status and the execution.
async fn run_sync(s: &Server, key: &str, session: &str, body: Value, query: &str) -> (StatusCode, Value) {
    call(
        s,
        key,
        Method::POST,
        &format!("/api/v1/executions/sessions/{session}/execute-sync{query}"),
        Some(body),
    )
    .await
}

/// Poll `/status` until the execution reaches a terminal state, as
/// upstream's `wait_for_execution_completion` does.
async fn wait_done(s: &Server, key: &str, id: &str) -> Value {
    let t = Instant::now();
    loop {
        let (st, v) = call(
            s,
            key,
            Method::GET,
            &format!("/api/v1/executions/{id}/status"),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        if ["completed", "failed", "timeout", "crashed"].contains(&v["status"].as_str().unwrap_or_default()) {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "still {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_iso(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|t| t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T')
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_open_and_everything_else_takes_an_app_key() {
    let s = server().await;
    let r = s.client.get(s.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "healthy");
    assert!(v["uptime"].as_f64().is_some_and(|u| u >= 0.0), "{v}");
    assert!(v["version"].is_string());

    let r = s.call(Method::GET, "/api/v1/sessions", None, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    // An admin key is not an app's: 403, in upstream's shape.
    let (st, v) = call(&s, &s.admin, Method::GET, "/api/v1/sessions", None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("app key"), "{v}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_created_listed_terminated_and_deleted_as_upstream_does() {
    let s = server().await;
    let key = app(&s, "agents").await;
    let v = session(&s, &key, "python-basic").await;
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ses_"), "{v}");
    assert_eq!(v["template_id"], "python-basic");
    assert_eq!(v["status"], "running");
    assert_eq!(
        (
            &v["resource_limit"]["cpu"],
            &v["resource_limit"]["memory"],
            &v["resource_limit"]["disk"]
        ),
        (&json!("1"), &json!("512Mi"), &json!("1Gi")),
        "{v}"
    );
    assert_eq!(v["timeout"], 300);
    assert_eq!(v["env_vars"]["GREETING"], "hi");
    assert_eq!(v["language_runtime"], "python3.11");
    assert_eq!(v["workspace_path"], "/workspace");
    assert!(is_iso(&v["created_at"]) && is_iso(&v["last_activity_at"]), "{v}");
    assert!(v["completed_at"].is_null());

    // Defaults: only the template and a timeout (the template's resources).
    let (st, d) = call(
        &s,
        &key,
        Method::POST,
        "/api/v1/sessions",
        Some(json!({"template_id": "python-basic", "timeout": 60})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    let second = d["id"].as_str().unwrap().to_owned();

    let (st, got) = call(&s, &key, Method::GET, &format!("/api/v1/sessions/{id}"), None).await;
    assert_eq!((st, &got["id"]), (StatusCode::OK, &json!(id)));

    // Pagination as the web console pages: limit, offset, total, has_more.
    let (_, page) = call(&s, &key, Method::GET, "/api/v1/sessions?limit=1&offset=0", None).await;
    assert_eq!(
        (page["limit"].as_u64(), page["offset"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["total"], 2);
    assert_eq!(page["has_more"], true);
    let (_, page2) = call(&s, &key, Method::GET, "/api/v1/sessions?limit=1&offset=1", None).await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_eq!(page2["has_more"], false);
    assert_ne!(page["items"][0]["id"], page2["items"][0]["id"]);
    let (_, clamped) = call(&s, &key, Method::GET, "/api/v1/sessions?limit=300", None).await;
    assert_eq!(clamped["limit"], 200);
    let (_, by_template) = call(
        &s,
        &key,
        Method::GET,
        "/api/v1/sessions?template_id=node-basic",
        None,
    )
    .await;
    assert_eq!(by_template["total"], 0, "{by_template}");

    // Terminate keeps the record; again is the same answer; delete is 204,
    // then 404 in the domain envelope.
    let path = format!("/api/v1/sessions/{id}/terminate");
    let (st, t) = call(&s, &key, Method::POST, &path, None).await;
    assert_eq!((st, &t["status"]), (StatusCode::OK, &json!("terminated")), "{t}");
    assert!(is_iso(&t["completed_at"]), "{t}");
    let (st, t) = call(&s, &key, Method::POST, &path, None).await;
    assert_eq!((st, &t["status"]), (StatusCode::OK, &json!("terminated")), "{t}");
    let (_, running) = call(&s, &key, Method::GET, "/api/v1/sessions?status=running", None).await;
    let ids: Vec<&str> = running["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str()]);
    let (st, _) = call(&s, &key, Method::GET, &format!("/api/v1/sessions/{id}"), None).await;
    assert_eq!(st, StatusCode::OK);
    let r = s
        .call(
            Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (st, v) = call(&s, &key, Method::GET, &format!("/api/v1/sessions/{id}"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "Not Found", "{v}");
    assert!(v["message"].as_str().unwrap().contains(&id), "{v}");

    // Another app's session is not there.
    let other = app(&s, "others").await;
    let (st, v) = call(
        &s,
        &other,
        Method::GET,
        &format!("/api/v1/sessions/{second}"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_session_requests_get_upstreams_statuses() {
    let s = server().await;
    let key = app(&s, "agents").await;
    let post = |body: Value| call(&s, &key, Method::POST, "/api/v1/sessions", Some(body));
    // An unknown template: upstream answers 400 with its reason.
    let (st, v) = post(json!({"template_id": "no-such-template"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("no-such-template"), "{v}");
    // Pydantic's checks: 422, located.
    for (body, field) in [
        (json!({"template_id": "python-basic", "timeout": 0}), "timeout"),
        (json!({"template_id": "python-basic", "timeout": 3601}), "timeout"),
        (json!({"template_id": "python-basic", "cpu": "lots"}), "cpu"),
        (json!({"template_id": "python-basic", "memory": "much"}), "memory"),
        (json!({"template_id": "python-basic", "id": "my-session"}), "id"),
        (
            json!({"template_id": "python-basic", "dependencies": [{"name": "../evil"}]}),
            "dependencies",
        ),
        (json!({"template_id": ""}), "template_id"),
    ] {
        let (st, v) = post(body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["detail"][0]["loc"][1], field, "{body}: {v}");
        assert!(
            v["detail"][0]["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }
    let (st, v) = post(json!({"timeout": 30})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["detail"][0]["msg"].as_str().unwrap().contains("template_id"),
        "{v}"
    );
    // Beyond the server's policy: refused, nothing created.
    let (st, v) = post(json!({"template_id": "python-basic", "memory": "64Gi"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("memory"), "{v}");
    let (_, list) = call(&s, &key, Method::GET, "/api/v1/sessions", None).await;
    assert_eq!(list["total"], 0, "{list}");

    let v = session(&s, &key, "python-basic").await;
    let id = v["id"].as_str().unwrap();
    let install = format!("/api/v1/sessions/{id}/dependencies/install");
    let (st, _) = call(
        &s,
        &key,
        Method::POST,
        &install,
        Some(json!({"dependencies": []})),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, v) = call(
        &s,
        &key,
        Method::POST,
        "/api/v1/sessions/ses_000000000000000000000000/dependencies/install",
        Some(json!({"dependencies": [{"name": "requests"}]})),
    )
    .await;
    assert_eq!(
        (st, &v["error"]),
        (StatusCode::NOT_FOUND, &json!("Not Found")),
        "{v}"
    );
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn handlers_run_as_upstream_runs_them() {
    let s = server().await;
    let key = app(&s, "agents").await;
    let v = session(&s, &key, "python-basic").await;
    let sid = v["id"].as_str().unwrap().to_owned();

    // The request upstream's README and tests send: a handler and an event.
    let (st, v) = run_sync(
        &s,
        &key,
        &sid,
        json!({
            "code": "import os\ndef handler(event):\n    name = event.get('name', 'World')\n    print('Hello, World!')\n    return {'message': f'Hello, {name}!', 'age_doubled': event.get('age', 0) * 2, 'greeting': os.environ.get('GREETING')}",
            "language": "python",
            "timeout": 10,
            "event": {"name": "Alice", "age": 25},
            "env_vars": {}
        }),
        "?poll_interval=0.5&sync_timeout=60",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["session_id"], sid.as_str());
    assert_eq!(v["language"], "python");
    assert_eq!(
        v["return_value"],
        json!({"message": "Hello, Alice!", "age_doubled": 50, "greeting": "hi"})
    );
    assert!(v["stdout"].as_str().unwrap().contains("Hello, World!"), "{v}");
    assert_eq!(v["exit_code"], 0);
    assert!(v["execution_time"].as_f64().is_some(), "{v}");
    assert!(is_iso(&v["created_at"]) && is_iso(&v["completed_at"]), "{v}");

    // Submitted, then polled.
    let (st, sub) = call(
        &s,
        &key,
        Method::POST,
        &format!("/api/v1/executions/sessions/{sid}/execute"),
        Some(json!({"code": "def handler(event):\n    print('Result test')\n    return {'statusCode': 200, 'body': 'Success'}", "language": "python", "timeout": 10})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{sub}");
    assert_eq!(sub["session_id"], sid.as_str());
    assert!(
        ["pending", "running"].contains(&sub["status"].as_str().unwrap()),
        "{sub}"
    );
    let eid = sub["execution_id"].as_str().unwrap().to_owned();
    let done = wait_done(&s, &key, &eid).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["return_value"]["body"], "Success");
    let (st, result) = call(
        &s,
        &key,
        Method::GET,
        &format!("/api/v1/executions/{eid}/result"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(result["id"], eid.as_str());
    assert!(
        result["stdout"].as_str().unwrap().contains("Result test"),
        "{result}"
    );

    // A handler's exception: failed, its traceback in stderr.
    let (_, v) = run_sync(
        &s,
        &key,
        &sid,
        json!({"code": "def handler(event):\n    raise ValueError('boom in the handler')", "language": "python", "timeout": 10}),
        "",
    )
    .await;
    assert_eq!(v["status"], "failed", "{v}");
    let stderr = v["stderr"].as_str().unwrap();
    assert!(stderr.contains("Traceback"), "{v}");
    assert!(stderr.contains("ValueError: boom in the handler"), "{v}");
    assert!(v["return_value"].is_null());
    assert_eq!(v["exit_code"], 1, "{v}");
    assert!(v["error_message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    // A syntax error: failed, with something in stderr.
    let (_, v) = run_sync(
        &s,
        &key,
        &sid,
        json!({"code": "print(\"Missing quote)", "language": "python", "timeout": 10, "event": {}}),
        "",
    )
    .await;
    assert_eq!(v["status"], "failed", "{v}");
    assert!(v["stderr"].as_str().unwrap().contains("SyntaxError"), "{v}");
    // Out of time: `timeout`.
    let (_, v) = run_sync(
        &s,
        &key,
        &sid,
        json!({"code": "import time\ndef handler(event):\n    time.sleep(30)", "language": "python", "timeout": 1}),
        "",
    )
    .await;
    assert_eq!(v["status"], "timeout", "{v}");
    // Killed from outside the handler's control: `crashed`.
    let (_, v) = run_sync(
        &s,
        &key,
        &sid,
        json!({"code": "import os, signal\ndef handler(event):\n    os.kill(os.getpid(), signal.SIGKILL)", "language": "python", "timeout": 10}),
        "",
    )
    .await;
    assert_eq!(v["status"], "crashed", "{v}");

    // JavaScript and shell run as programs.
    let (_, v) = run_sync(
        &s,
        &key,
        &sid,
        json!({"code": "console.log('from node', 6 * 7)", "language": "javascript"}),
        "",
    )
    .await;
    assert_eq!(
        (&v["status"], &v["stdout"]),
        (&json!("completed"), &json!("from node 42\n")),
        "{v}"
    );
    let (_, v) = run_sync(
        &s,
        &key,
        &sid,
        json!({"code": "echo $GREETING; exit 3", "language": "shell"}),
        "",
    )
    .await;
    assert_eq!(
        (&v["status"], &v["exit_code"]),
        (&json!("failed"), &json!(3)),
        "{v}"
    );
    assert_eq!(v["stdout"], "hi\n");

    // The session's executions, newest first, with upstream's paging.
    let list = format!("/api/v1/executions/sessions/{sid}/executions");
    let (st, all) = call(&s, &key, Method::GET, &list, None).await;
    assert_eq!(st, StatusCode::OK, "{all}");
    assert_eq!(all["total"], 8, "{all}");
    assert_eq!(all["items"][0]["language"], "shell");
    let (_, one) = call(&s, &key, Method::GET, &format!("{list}?limit=1&offset=1"), None).await;
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    assert_eq!(one["items"][0]["language"], "javascript");
    assert_eq!(
        (one["limit"].as_u64(), one["offset"].as_u64()),
        (Some(1), Some(1))
    );

    // Another app sees none of it.
    let other = app(&s, "others").await;
    let (st, v) = call(
        &s,
        &other,
        Method::GET,
        &format!("/api/v1/executions/{eid}/status"),
        None,
    )
    .await;
    assert_eq!(
        (st, &v["error"]),
        (StatusCode::NOT_FOUND, &json!("Not Found")),
        "{v}"
    );
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_execution_requests_get_upstreams_statuses() {
    let s = server().await;
    let key = app(&s, "agents").await;
    let v = session(&s, &key, "python-basic").await;
    let sid = v["id"].as_str().unwrap().to_owned();
    let ok = json!({"code": "print('test')", "language": "python", "timeout": 10});
    // Upstream's validation tests: each is 422 before anything runs.
    for (query, body) in [
        ("?poll_interval=0.05", ok.clone()),
        ("?poll_interval=11", ok.clone()),
        ("?sync_timeout=5", ok.clone()),
        ("?sync_timeout=3601", ok.clone()),
        ("", json!({"language": "python"})),
        ("", json!({"code": "print('test')"})),
        ("", json!({"code": "print('test')", "language": "ruby"})),
        (
            "",
            json!({"code": "print('test')", "language": "python", "timeout": 0}),
        ),
        (
            "",
            json!({"code": "print('test')", "language": "python", "timeout": 3601}),
        ),
        ("", json!({"code": "", "language": "python"})),
    ] {
        let (st, v) = run_sync(&s, &key, &sid, body.clone(), query).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{query} {body}: {v}");
        assert!(v["detail"].is_array(), "{v}");
    }
    let (_, all) = call(
        &s,
        &key,
        Method::GET,
        &format!("/api/v1/executions/sessions/{sid}/executions"),
        None,
    )
    .await;
    assert_eq!(all["total"], 0, "nothing ran: {all}");

    // No such session: 404, domain envelope.
    let (st, v) = run_sync(&s, &key, "ses_000000000000000000000000", ok.clone(), "").await;
    assert_eq!(
        (st, &v["error"]),
        (StatusCode::NOT_FOUND, &json!("Not Found")),
        "{v}"
    );
    let (st, v) = call(
        &s,
        &key,
        Method::GET,
        "/api/v1/executions/exe_000000000000000000000000/status",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");

    // Waiting longer than sync_timeout: 408; the execution goes on.
    let t = Instant::now();
    let (st, v) = run_sync(
        &s,
        &key,
        &sid,
        json!({"code": "import time\ndef handler(event):\n    time.sleep(14)\n    return 'late'", "language": "python", "timeout": 30}),
        "?sync_timeout=10",
    )
    .await;
    assert_eq!(st, StatusCode::REQUEST_TIMEOUT, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("10s"), "{v}");
    assert!(t.elapsed() >= Duration::from_secs(10));
    let (_, all) = call(
        &s,
        &key,
        Method::GET,
        &format!("/api/v1/executions/sessions/{sid}/executions"),
        None,
    )
    .await;
    let late = all["items"][0]["id"].as_str().unwrap().to_owned();
    let done = wait_done(&s, &key, &late).await;
    assert_eq!(
        (&done["status"], &done["return_value"]),
        (&json!("completed"), &json!("late")),
        "{done}"
    );

    // A terminated session: 409, domain envelope (upstream: not active).
    let (st, _) = call(
        &s,
        &key,
        Method::POST,
        &format!("/api/v1/sessions/{sid}/terminate"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = run_sync(&s, &key, &sid, ok, "").await;
    assert_eq!(
        (st, &v["error"]),
        (StatusCode::CONFLICT, &json!("Conflict")),
        "{v}"
    );
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn files_move_as_the_web_console_moves_them() {
    let s = server().await;
    let key = app(&s, "agents").await;
    let v = session(&s, &key, "python-basic").await;
    let sid = v["id"].as_str().unwrap().to_owned();
    let upload = |path: Option<&str>, bytes: &'static [u8]| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes.to_vec()).file_name("local.csv"),
        );
        let query = path.map(|p| format!("?path={p}")).unwrap_or_default();
        s.client
            .post(s.url(&format!("/api/v1/sessions/{sid}/files/upload{query}")))
            .bearer_auth(&key)
            .multipart(form)
            .send()
    };
    let r = upload(Some("data/in.csv"), b"a,b\n1,2\n").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"session_id": sid, "file_path": "data/in.csv", "size": 8})
    );
    let r = upload(Some("top.txt"), b"top").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Larger than the compat paths' JSON body limit: the upload cap applies.
    let big = vec![7u8; 3 << 20];
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(big));
    let r = s
        .client
        .post(s.url(&format!("/api/v1/sessions/{sid}/files/upload?path=big.bin")))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["size"], 3 << 20, "{v}");
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/sessions/{sid}/files/big.bin"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // The code sees the files in its workspace, and writes its own.
    let (_, v) = run_sync(
        &s,
        &key,
        &sid,
        json!({"code": "def handler(event):\n    rows = open('/workspace/data/in.csv').read().splitlines()\n    open('data/out.txt', 'w').write('rows=%d' % len(rows))\n    return len(rows)", "language": "python", "timeout": 10}),
        "",
    )
    .await;
    assert_eq!(
        (&v["status"], &v["return_value"]),
        (&json!("completed"), &json!(2)),
        "{v}"
    );

    // Listed recursively, files only, with their paths in the container.
    let (st, list) = call(
        &s,
        &key,
        Method::GET,
        &format!("/api/v1/sessions/{sid}/files"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let mut names: Vec<&str> = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["data/in.csv", "data/out.txt", "top.txt"], "{list}");
    assert_eq!(list["count"], 3);
    assert_eq!(list["session_id"], sid.as_str());
    let f = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "data/in.csv")
        .unwrap();
    assert_eq!(
        (&f["container_path"], &f["size"]),
        (&json!("/workspace/data/in.csv"), &json!(8))
    );
    assert!(is_iso(&f["modified_time"]), "{f}");
    let (_, sub) = call(
        &s,
        &key,
        Method::GET,
        &format!("/api/v1/sessions/{sid}/files?path=data/&limit=1"),
        None,
    )
    .await;
    assert_eq!(sub["count"], 1, "{sub}");
    assert!(
        sub["files"][0]["name"].as_str().unwrap().starts_with("data/"),
        "{sub}"
    );

    // Downloaded whole, as an attachment.
    let r = s
        .client
        .get(s.url(&format!("/api/v1/sessions/{sid}/files/data/out.txt")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[reqwest::header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("out.txt")
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"rows=2");
    let (st, v) = call(
        &s,
        &key,
        Method::GET,
        &format!("/api/v1/sessions/{sid}/files/nope.txt"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert!(v["detail"].is_string(), "{v}");

    // Refusals: no path (422), a path out of the workspace (400, the reason
    // named), another app's session (the same 400 as none, no upload).
    let r = upload(None, b"x").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = upload(Some("../escape.txt"), b"x").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains(".."), "{v}");
    let other = app(&s, "others").await;
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(b"x".to_vec()));
    let r = s
        .client
        .post(s.url(&format!("/api/v1/sessions/{sid}/files/upload?path=theirs.txt")))
        .bearer_auth(&other)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (_, list) = call(
        &s,
        &key,
        Method::GET,
        &format!("/api/v1/sessions/{sid}/files"),
        None,
    )
    .await;
    assert_eq!(list["count"], 3, "{list}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_are_managed_as_upstream_manages_them() {
    let s = server().await;
    let key = app(&s, "agents").await;
    let body = json!({
        "id": "seed-py", "name": "Seed Python", "image_url": "python:3.11-slim", "runtime_type": "python3.11",
        "default_cpu_cores": 0.5, "default_memory_mb": 256, "default_disk_mb": 512, "default_timeout": 300,
        "default_env_vars": {"MODE": "seed"}
    });
    // Writes take an admin key.
    let (st, _) = call(&s, &key, Method::POST, "/api/v1/templates", Some(body.clone())).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, t) = call(
        &s,
        &s.admin,
        Method::POST,
        "/api/v1/templates",
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    assert_eq!(
        (&t["id"], &t["name"], &t["runtime_type"]),
        (&json!("seed-py"), &json!("Seed Python"), &json!("python3.11"))
    );
    assert_eq!(
        (
            &t["default_cpu_cores"],
            &t["default_memory_mb"],
            &t["default_disk_mb"],
            &t["default_timeout_sec"]
        ),
        (&json!(0.5), &json!(256), &json!(512), &json!(300)),
        "{t}"
    );
    assert_eq!(t["default_env_vars"], json!({"MODE": "seed"}));
    assert_eq!(t["is_active"], true);
    let (st, v) = call(
        &s,
        &s.admin,
        Method::POST,
        "/api/v1/templates",
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (st, &v["error"]),
        (StatusCode::CONFLICT, &json!("Conflict")),
        "{v}"
    );

    // Reads take an app key too.
    let (st, list) = call(&s, &key, Method::GET, "/api/v1/templates", None).await;
    assert_eq!(st, StatusCode::OK);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"seed-py") && ids.contains(&"python-basic"),
        "{list}"
    );
    let (_, page) = call(&s, &key, Method::GET, "/api/v1/templates?limit=1&offset=1", None).await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["id"], list[1]["id"]);
    let (st, one) = call(&s, &key, Method::GET, "/api/v1/templates/seed-py", None).await;
    assert_eq!((st, &one["name"]), (StatusCode::OK, &json!("Seed Python")));

    // A partial update: what is given changes, the rest stays.
    let (st, u) = call(
        &s,
        &s.admin,
        Method::PUT,
        "/api/v1/templates/seed-py",
        Some(json!({"name": "Renamed", "default_memory_mb": 384})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{u}");
    assert_eq!(
        (&u["name"], &u["default_memory_mb"], &u["default_cpu_cores"]),
        (&json!("Renamed"), &json!(384), &json!(0.5))
    );
    assert_eq!(u["default_env_vars"], json!({"MODE": "seed"}));

    // A session from it has its defaults.
    let (st, v) = call(
        &s,
        &key,
        Method::POST,
        "/api/v1/sessions",
        Some(json!({"template_id": "seed-py"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        (&v["resource_limit"]["memory"], &v["resource_limit"]["cpu"]),
        (&json!("384Mi"), &json!("0.5")),
        "{v}"
    );
    assert_eq!(v["env_vars"]["MODE"], "seed", "{v}");
    let sid = v["id"].as_str().unwrap();
    let (_, done) = run_sync(
        &s,
        &key,
        sid,
        json!({"code": "import os\ndef handler(event):\n    return os.environ['MODE']", "language": "python"}),
        "",
    )
    .await;
    assert_eq!(done["return_value"], "seed", "{done}");

    // Refusals: runtimes Warden has not, out-of-range defaults, built-ins.
    let mut java = body.clone();
    java["id"] = json!("seed-java");
    java["runtime_type"] = json!("java17");
    let (st, v) = call(&s, &s.admin, Method::POST, "/api/v1/templates", Some(java)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["detail"][0]["loc"], json!(["body", "runtime_type"]));
    let (st, v) = call(
        &s,
        &s.admin,
        Method::PUT,
        "/api/v1/templates/seed-py",
        Some(json!({"default_memory_mb": 64})),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = call(
        &s,
        &s.admin,
        Method::DELETE,
        "/api/v1/templates/python-basic",
        None,
    )
    .await;
    assert_eq!(
        (st, &v["error"]),
        (StatusCode::CONFLICT, &json!("Conflict")),
        "{v}"
    );
    let (st, v) = call(
        &s,
        &s.admin,
        Method::PUT,
        "/api/v1/templates/nope",
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(
        (st, &v["error"]),
        (StatusCode::NOT_FOUND, &json!("Not Found")),
        "{v}"
    );

    // Deleted: a message, then 404.
    let (st, _) = call(
        &s,
        &key,
        Method::POST,
        &format!("/api/v1/sessions/{sid}/terminate"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = call(&s, &s.admin, Method::DELETE, "/api/v1/templates/seed-py", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["message"].is_string());
    let (st, _) = call(&s, &key, Method::GET, "/api/v1/templates/seed-py", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_node_answers_for_a_session_another_node_runs() {
    let a = server().await;
    let b = second_node(&a, |_| {}).await;
    let key = app(&a, "agents").await;
    let v = session(&a, &key, "python-basic").await;
    let sid = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["runtime_node"], a.state.cluster.id());
    // Through B: the execution and the files reach A's box.
    let (st, done) = run_sync(
        &b,
        &key,
        &sid,
        json!({"code": "def handler(event):\n    open('via-b.txt', 'w').write('b')\n    return 'via-b'", "language": "python"}),
        "",
    )
    .await;
    assert_eq!(
        (st, &done["return_value"]),
        (StatusCode::OK, &json!("via-b")),
        "{done}"
    );
    let (st, list) = call(
        &b,
        &key,
        Method::GET,
        &format!("/api/v1/sessions/{sid}/files"),
        None,
    )
    .await;
    assert_eq!(
        (st, &list["files"][0]["name"]),
        (StatusCode::OK, &json!("via-b.txt")),
        "{list}"
    );
    let (st, t) = call(
        &b,
        &key,
        Method::POST,
        &format!("/api/v1/sessions/{sid}/terminate"),
        None,
    )
    .await;
    assert_eq!((st, &t["status"]), (StatusCode::OK, &json!("terminated")), "{t}");
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_over_the_cap_is_413_and_leaves_nothing() {
    let s = server_with(|c| c.sessions.max_upload_bytes = 1 << 20).await;
    let key = app(&s, "agents").await;
    let v = session(&s, &key, "python-basic").await;
    let sid = v["id"].as_str().unwrap();
    let form =
        reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(vec![1u8; 2 << 20]));
    let r = s
        .client
        .post(s.url(&format!("/api/v1/sessions/{sid}/files/upload?path=big.bin")))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = r.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains("max_upload_bytes"), "{v}");
    let (_, list) = call(
        &s,
        &key,
        Method::GET,
        &format!("/api/v1/sessions/{sid}/files"),
        None,
    )
    .await;
    assert_eq!(list["count"], 0, "{list}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_given_at_create_are_importable_and_bad_ones_create_nothing() {
    // The air-gapped path: packages from a folder of wheels, no network.
    let folder = public_dir();
    wheel(
        folder.path(),
        "tinyhello",
        "1.0.0",
        "def hi():\n    return 'hi'\n",
    );
    wheel(folder.path(), "tinyextra", "2.0.0", "WORD = 'extra'\n");
    let dir = folder.path().to_owned();
    let s = server_with(move |c| c.layers.folder = Some(dir)).await;
    let key = app(&s, "deps").await;
    let (st, v) = call(
        &s,
        &key,
        Method::POST,
        "/api/v1/sessions",
        Some(json!({"template_id": "python-basic", "dependencies": [{"name": "tinyhello", "version": "1.0.0"}]})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["requested_dependencies"][0]["name"], "tinyhello", "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (st, r) = run_sync(
        &s,
        &key,
        &id,
        json!({"code": "import tinyhello\ndef handler(event):\n    return tinyhello.hi()", "language": "python"}),
        "",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["return_value"], "hi", "{r}");
    // Installing into the running session: the files stay, the new
    // package imports beside the first.
    let (st, v) = call(
        &s,
        &key,
        Method::POST,
        &format!("/api/v1/executions/sessions/{id}/execute-sync"),
        Some(json!({"code": "def handler(event):\n    open('kept.txt', 'w').write('kept')\n    return 1", "language": "python"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let install = format!("/api/v1/sessions/{id}/dependencies/install");
    let (st, v) = call(
        &s,
        &key,
        Method::POST,
        &install,
        Some(json!({"dependencies": [{"name": "tinyextra"}]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["id"], id.as_str(), "{v}");
    let names: Vec<&str> = v["installed_dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["tinyhello", "tinyextra"], "{v}");
    let (st, r) = run_sync(
        &s,
        &key,
        &id,
        json!({"code": "import tinyhello, tinyextra\ndef handler(event):\n    return [tinyhello.hi(), tinyextra.WORD, open('kept.txt').read()]", "language": "python"}),
        "",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["return_value"], json!(["hi", "extra", "kept"]), "{r}");
    // A package it has already: refused at its field, nothing changed.
    let (st, v) = call(
        &s,
        &key,
        Method::POST,
        &install,
        Some(json!({"dependencies": [{"name": "tinyhello"}]})),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("installed already"), "{v}");
    // A package the index does not have: a clear refusal naming it, and no
    // session left behind.
    let (st, v) = call(
        &s,
        &key,
        Method::POST,
        "/api/v1/sessions",
        Some(json!({"template_id": "python-basic", "dependencies": [{"name": "nosuchthing"}]})),
    )
    .await;
    assert!(st.is_client_error(), "{st} {v}");
    assert!(v.to_string().contains("nosuchthing"), "{v}");
    let (_, list) = call(&s, &key, Method::GET, "/api/v1/sessions", None).await;
    assert_eq!(list["total"], 1, "{list}");
    s.stop().await.unwrap();
}
