//! The one-shot run and the compatibility APIs through the real binary:
//! `POST /v1/run` (Python warm, Go compiled), its event stream; Dify's
//! Python 3 code node as Dify sends and reads it; Piston with a key and,
//! when the operator allows it by environment, without one; and every run
//! still on record after the server restarts.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Serve, client, req};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_dify_and_piston_through_the_binary() {
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("WARDEN_COMPAT_PISTON_ANONYMOUS", "true"),
        ("WARDEN_COMPAT_PISTON_ANONYMOUS_PER_MINUTE", "5"),
    ];
    let s = Serve::start(data.path(), &env);
    let admin = s.admin.clone().unwrap();
    let c = client();
    let (st, v) = req(
        &c,
        Method::POST,
        s.url("/v1/apps"),
        &admin,
        Some(json!({"id": "clients"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, k) = req(
        &c,
        Method::POST,
        s.url("/v1/keys"),
        &admin,
        Some(json!({"name": "clients", "role": "app", "app": "clients"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    let key = k["secret"].as_str().unwrap().to_owned();

    // The native call.
    let (st, py) = req(
        &c,
        Method::POST,
        s.url("/v1/run"),
        &key,
        Some(json!({"language": "python", "code": "import sys\nprint(sys.stdin.read()[::-1])", "stdin": "olleh"})),
    )
    .await;
    assert_eq!(
        (st, py["stdout"].as_str()),
        (StatusCode::OK, Some("hello\n")),
        "{py}"
    );
    let (_, go) = req(
        &c,
        Method::POST,
        s.url("/v1/run"),
        &key,
        Some(json!({"language": "go", "files": [{"path": "main.go", "content": "package main\nimport \"fmt\"\nfunc main() { fmt.Println(6 * 7) }"}]})),
    )
    .await;
    assert_eq!(go["stdout"], "42\n", "{go}");
    assert_eq!(go["compile"]["status"], "success");
    let text = c
        .post(s.url("/v1/run"))
        .bearer_auth(&key)
        .header("accept", "text/event-stream")
        .json(&json!({"language": "shell", "code": "echo streamed"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("streamed") && text.contains("event: result"),
        "{text}"
    );

    // Dify's Python 3 code node.
    // `{"x": 20}`, base64-encoded as Dify's transformer sends it.
    let inputs = "eyJ4IjogMjB9";
    let code = format!(
        "def main(x: int) -> dict:\n    return {{'y': x + 1}}\n\nimport json\nfrom base64 import b64decode\nout = main(**json.loads(b64decode('{inputs}').decode('utf-8')))\nprint(f'<<RESULT>>{{json.dumps(out)}}<<RESULT>>')\n"
    );
    let r = c
        .post(s.url("/v1/sandbox/run"))
        .header("X-Api-Key", &key)
        .json(&json!({"language": "python3", "code": code, "preload": "", "enable_network": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["code"].as_i64(), v["data"]["error"].as_str()),
        (Some(0), Some("")),
        "{v}"
    );
    assert_eq!(v["data"]["stdout"], "<<RESULT>>{\"y\": 21}<<RESULT>>\n");

    // Piston, with the key and anonymously (allowed by the environment).
    let body = json!({"language": "c", "version": "*", "files": [{"content": "#include <stdio.h>\nint main(void){puts(\"c\");}"}]});
    let (st, v) = req(
        &c,
        Method::POST,
        s.url("/api/v2/execute"),
        &key,
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (st, v["run"]["stdout"].as_str()),
        (StatusCode::OK, Some("c\n")),
        "{v}"
    );
    let r = c.post(s.url("/api/v2/execute")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Every run is on record, and still is after a restart.
    let (_, list) = req(&c, Method::GET, s.url("/v1/executions?app=clients"), &admin, None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 5, "{list}");
    s.signal(rustix::process::Signal::TERM);
    assert!(s.wait().success());
    let s = Serve::start(data.path(), &env);
    let (st, v) = req(
        &c,
        Method::GET,
        s.url(&format!("/v1/executions/{}", py["id"].as_str().unwrap())),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (st, v["stdout"].as_str()),
        (StatusCode::OK, Some("hello\n")),
        "{v}"
    );
    assert_eq!(
        (v["kind"].as_str(), v["language"].as_str()),
        (Some("run"), Some("python"))
    );
    let (_, anon) = req(
        &c,
        Method::GET,
        s.url("/v1/executions?app=anonymous"),
        &admin,
        None,
    )
    .await;
    assert_eq!(anon["items"].as_array().unwrap().len(), 1, "{anon}");
}
