//! Piston's v2 API as its clients call it: the runtimes list, executions
//! in every language with named and unnamed files, stdin and args, compile
//! failures reported as Piston reports them (`run` repeats `compile`),
//! status letters, 400 `{"message"}` for unknown runtimes and bad limits,
//! keys required, anonymous calls (off by default) within their rate.

mod common;

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

async fn execute(s: &Server, key: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut r = s.client.post(s.url("/api/v2/execute")).json(body);
    if let Some(k) = key {
        r = r.header("X-Api-Key", k);
    }
    let r = r.send().await.unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn runtimes_list_the_hosts_toolchains() {
    let s = server().await;
    let v: Value = s
        .client
        .get(s.url("/api/v2/runtimes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = v.as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|r| r["language"].as_str().unwrap()).collect();
    assert_eq!(names, ["python", "javascript", "bash", "c", "c++", "go"], "{v}");
    for r in list {
        semver_like(r["version"].as_str().unwrap());
        assert!(r["aliases"].is_array());
    }
    assert_eq!(list[1]["runtime"], "node");
    assert!(list[0]["aliases"].as_array().unwrap().contains(&json!("py")));
    s.stop().await.unwrap();
}

fn semver_like(v: &str) {
    let parts: Vec<&str> = v.split('.').collect();
    assert_eq!(parts.len(), 3, "{v}");
    assert!(parts.iter().all(|p| p.parse::<u64>().is_ok()), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn executions_answer_as_piston_does() {
    let s = server().await;
    let key = app(&s, "grader").await;
    let (st, v) = execute(
        &s,
        Some(&key),
        &json!({"language": "python", "version": "3.x", "files": [{"name": "main.py", "content": "import sys\nprint(sys.stdin.read().strip(), sys.argv[1:])\nprint('e', file=sys.stderr)"}], "stdin": "in", "args": ["1", "2"]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["language"], "python");
    semver_like(v["version"].as_str().unwrap());
    let run = &v["run"];
    assert_eq!(run["stdout"], "in ['1', '2']\n");
    assert_eq!(run["stderr"], "e\n");
    assert_eq!(run["output"], "in ['1', '2']\ne\n");
    assert_eq!((run["code"].as_i64(), run["signal"].as_str()), (Some(0), None));
    assert!(run["status"].is_null(), "{v}");
    assert!(run["wall_time"].as_u64().is_some(), "{v}");
    assert!(v.get("compile").is_none());

    // An alias, an unnamed file (file0.code), a non-zero exit: RE.
    let (_, v) = execute(
        &s,
        Some(&key),
        &json!({"language": "js", "version": "*", "files": [{"content": "console.log(process.argv.length); process.exit(4)"}]}),
    )
    .await;
    assert_eq!(v["language"], "javascript");
    assert_eq!(
        (v["run"]["code"].as_i64(), v["run"]["status"].as_str()),
        (Some(4), Some("RE"))
    );

    // Compiled languages report their compile stage; several files.
    let (_, v) = execute(
        &s,
        Some(&key),
        &json!({"language": "c++", "version": "*", "files": [{"name": "main.cpp", "content": "#include \"add.h\"\n#include <iostream>\nint main(int c, char**v){std::cout << add(2, 3) << v[1] << std::endl;}"}, {"name": "add.h", "content": "int add(int a, int b) { return a + b; }"}], "args": ["!"]}),
    )
    .await;
    assert_eq!(v["compile"]["code"], 0, "{v}");
    assert_eq!(v["run"]["stdout"], "5!\n", "{v}");
    let (_, v) = execute(
        &s,
        Some(&key),
        &json!({"language": "go", "version": "*", "files": [{"content": "package main\nimport \"fmt\"\nfunc main(){ fmt.Println(\"go\") }"}]}),
    )
    .await;
    assert_eq!(v["run"]["stdout"], "go\n", "{v}");
    // A compile error: `run` repeats `compile`.
    let (st, v) = execute(
        &s,
        Some(&key),
        &json!({"language": "c", "version": "*", "files": [{"name": "bad.c", "content": "int main(void) { return nope; }"}]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_ne!(v["compile"]["code"], 0, "{v}");
    assert!(v["compile"]["stderr"].as_str().unwrap().contains("nope"), "{v}");
    assert_eq!(v["run"], v["compile"]);
    // A timeout: TO and SIGKILL.
    let (_, v) = execute(
        &s,
        Some(&key),
        &json!({"language": "bash", "version": "*", "files": [{"content": "echo start; sleep 10"}], "run_timeout": 300}),
    )
    .await;
    assert_eq!(
        (v["run"]["status"].as_str(), v["run"]["signal"].as_str()),
        (Some("TO"), Some("SIGKILL")),
        "{v}"
    );
    assert_eq!(v["run"]["stdout"], "start\n");
    // Base64 and hex files.
    let (_, v) = execute(
        &s,
        Some(&key),
        &json!({"language": "bash", "version": "*", "files": [{"content": "cat data.bin; cat more.bin"}, {"name": "data.bin", "content": "aGkK", "encoding": "base64"}, {"name": "more.bin", "content": "686f0a", "encoding": "hex"}]}),
    )
    .await;
    assert_eq!(v["run"]["stdout"], "hi\nho\n", "{v}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_400_with_a_message_and_keys_are_required() {
    let s = server().await;
    let key = app(&s, "strict").await;
    let ok = json!({"language": "python", "version": "*", "files": [{"content": "print(1)"}]});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    for (body, want) in [
        (with("language", json!("cobol")), "cobol-* runtime is unknown"),
        (
            with("version", json!("2.7.18")),
            "python-2.7.18 runtime is unknown",
        ),
        (with("version", json!(3)), "version is required as a string"),
        (with("files", json!("x")), "files is required as an array"),
        (
            with("files", json!([{"name": "a"}])),
            "files[0].content is required as a string",
        ),
        (
            with("run_timeout", json!("1s")),
            "If specified, run_timeout must be a number",
        ),
        (
            with("run_timeout", json!(10_000_000)),
            "run_timeout cannot exceed the configured limit of 60000",
        ),
        (
            with("run_memory_limit", json!(-5)),
            "run_memory_limit must be non-negative",
        ),
        (
            with("files", json!([{"content": "aGk=", "encoding": "base64"}])),
            "files must include at least one utf8 encoded file",
        ),
    ] {
        let (st, v) = execute(&s, Some(&key), &body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(v["message"], want, "{body}");
    }
    // A path the workspace refuses: 400 naming it.
    let (st, v) = execute(
        &s,
        Some(&key),
        &with("files", json!([{"name": "../x.py", "content": ""}])),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("/files/0/path"), "{v}");
    // Not JSON.
    let r = s
        .client
        .post(s.url("/api/v2/execute"))
        .header("X-Api-Key", &key)
        .body("language=python")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Keys: none, unknown, a developer's; bearer works as X-Api-Key does.
    let (st, v) = execute(&s, None, &ok).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(v["message"].is_string());
    let (st, _) = execute(&s, Some("wk_nope"), &ok).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let dev = s.key("developer", "d", None).await;
    assert_eq!(execute(&s, Some(&dev), &ok).await.0, StatusCode::FORBIDDEN);
    let r = s
        .client
        .post(s.url("/api/v2/execute"))
        .bearer_auth(&key)
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Nothing refused was recorded; the one run was.
    let list = s
        .expect(
            Method::GET,
            "/v1/executions?app=strict",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_calls_when_allowed_are_rate_limited_and_recorded() {
    let s = server_with(|c| {
        c.compat.piston_anonymous = true;
        c.compat.piston_anonymous_per_minute = 2;
    })
    .await;
    let body = json!({"language": "python", "version": "*", "files": [{"content": "print('anon')"}]});
    for _ in 0..2 {
        let (st, v) = execute(&s, None, &body).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["run"]["stdout"], "anon\n");
    }
    let (st, v) = execute(&s, None, &body).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert!(v["message"].as_str().unwrap().contains("2 a minute"), "{v}");
    // A wrong key is still refused: anonymous means no key at all.
    assert_eq!(
        execute(&s, Some("wk_bad"), &body).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Only the Piston paths open up.
    let r = s
        .call(
            Method::POST,
            "/v1/run",
            None,
            Some(json!({"language": "python", "code": "1"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let list = s
        .expect(
            Method::GET,
            "/v1/executions?app=anonymous",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    s.stop().await.unwrap();
}

async fn packages(s: &Server, method: Method, key: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut r = s.client.request(method, s.url("/api/v2/packages")).json(body);
    if let Some(k) = key {
        r = r.header("X-Api-Key", k);
    }
    let r = r.send().await.unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// What Piston's `ppman list/install/uninstall` send and read: the list
/// matches the runtimes; installing a provided runtime is Piston's success
/// answer; anything else is a `{"message"}` that says why.
#[tokio::test(flavor = "multi_thread")]
async fn packages_list_the_runtimes_and_explain_why_nothing_installs() {
    let s = server().await;
    let key = app(&s, "ppman").await;
    let runtimes: Value = s
        .client
        .get(s.url("/api/v2/runtimes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (st, list) = packages(&s, Method::GET, None, &Value::Null).await;
    assert_eq!(st, StatusCode::OK);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), runtimes.as_array().unwrap().len());
    for (p, r) in list.iter().zip(runtimes.as_array().unwrap()) {
        assert_eq!(
            (&p["language"], &p["language_version"], &p["installed"]),
            (&r["language"], &r["version"], &json!(true)),
            "{p}"
        );
    }
    // `ppman install python` (version `*`), an alias with a range.
    let (st, v) = packages(
        &s,
        Method::POST,
        Some(&key),
        &json!({"language": "python", "version": "*"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["language"], "python");
    assert_eq!(v["version"], list[0]["language_version"]);
    let (st, v) = packages(
        &s,
        Method::POST,
        Some(&key),
        &json!({"language": "py3", "version": "3.x"}),
    )
    .await;
    assert_eq!((st, v["language"].as_str()), (StatusCode::OK, Some("python")));
    // A package this server does not have: 501, and why.
    let (st, v) = packages(
        &s,
        Method::POST,
        Some(&key),
        &json!({"language": "cobol", "version": "3.1.2"}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_IMPLEMENTED);
    let why = v["message"].as_str().unwrap();
    assert!(
        why.contains("cobol-3.1.2") && why.contains("configuration"),
        "{why}"
    );
    let (st, v) = packages(
        &s,
        Method::POST,
        Some(&key),
        &json!({"language": "python", "version": "2.7.18"}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_IMPLEMENTED, "{v}");
    // Uninstalling: never through the API.
    let (st, v) = packages(
        &s,
        Method::DELETE,
        Some(&key),
        &json!({"language": "python", "version": "*"}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_IMPLEMENTED);
    assert!(
        v["message"].as_str().unwrap().contains("cannot be uninstalled"),
        "{v}"
    );
    // Bad bodies name the field; keys are required to write.
    let (st, v) = packages(&s, Method::POST, Some(&key), &json!({"language": "python"})).await;
    assert_eq!(
        (st, v["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("version is required as a string"))
    );
    let (st, v) = packages(&s, Method::DELETE, Some(&key), &json!({"version": "*"})).await;
    assert_eq!(
        (st, v["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("language is required as a string"))
    );
    let (st, v) = packages(
        &s,
        Method::POST,
        None,
        &json!({"language": "python", "version": "*"}),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["message"].is_string());
    let (st, _) = packages(
        &s,
        Method::DELETE,
        Some("wk_nope"),
        &json!({"language": "python", "version": "*"}),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let r = s
        .client
        .post(s.url("/api/v2/packages"))
        .header("X-Api-Key", &key)
        .body("language=python")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    s.stop().await.unwrap();
}
