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

// ------------------------------------------------------ /api/v2/connect

use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self as tung, Message};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket to `/api/v2/connect` with `key` as X-Api-Key (or bearer), or
/// the HTTP status the upgrade was refused with.
async fn socket(s: &Server, key: Option<&str>, bearer: bool) -> Result<Socket, StatusCode> {
    let url = s.url("/api/v2/connect").replacen("http", "ws", 1);
    let mut req = url.into_client_request().unwrap();
    if let Some(k) = key {
        let (name, value) = if bearer {
            ("authorization", format!("Bearer {k}"))
        } else {
            ("x-api-key", k.to_owned())
        };
        req.headers_mut().insert(name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tung::Error::Http(r)) => Err(StatusCode::from_u16(r.status().as_u16()).unwrap()),
        Err(e) => panic!("connect: {e}"),
    }
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Every JSON message until the close, and the close code and reason.
async fn drain(ws: &mut Socket) -> (Vec<Value>, Option<(u16, String)>) {
    let mut got = Vec::new();
    let read = async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Text(t)) => got.push(serde_json::from_str::<Value>(t.as_str()).unwrap()),
                Ok(Message::Close(c)) => return c.map(|c| (u16::from(c.code), c.reason.to_string())),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    let close = tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("the server closes the socket");
    (got, close)
}

fn kinds(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| match m["type"].as_str().unwrap() {
            "stage" | "exit" => format!("{}:{}", m["type"].as_str().unwrap(), m["stage"].as_str().unwrap()),
            t => t.to_owned(),
        })
        .collect()
}

fn output(msgs: &[Value], stream: &str) -> String {
    msgs.iter()
        .filter(|m| m["type"] == "data" && m["stream"] == stream)
        .map(|m| m["data"].as_str().unwrap())
        .collect()
}

/// An interactive client's run: `init`, stdin as `data`, then the live
/// messages in Piston's order and close 4999; each run recorded.
#[tokio::test(flavor = "multi_thread")]
async fn connect_runs_a_program_live_as_piston_does() {
    let s = server().await;
    let key = app(&s, "repl").await;
    let mut ws = socket(&s, Some(&key), false).await.unwrap();
    send(&mut ws, json!({"type": "init", "language": "python", "version": "3.x", "files": [{"content": "import sys\nfor line in sys.stdin: print('got', line.strip())\nprint('err', file=sys.stderr)\nsys.exit(3)"}]})).await;
    send(
        &mut ws,
        json!({"type": "data", "stream": "stdin", "data": "one\n"}),
    )
    .await;
    send(
        &mut ws,
        json!({"type": "data", "stream": "stdin", "data": "two\n"}),
    )
    .await;
    let (msgs, close) = drain(&mut ws).await;
    assert_eq!(
        kinds(&msgs).first().map(String::as_str),
        Some("runtime"),
        "{msgs:?}"
    );
    assert_eq!(msgs[0]["language"], "python");
    semver_like(msgs[0]["version"].as_str().unwrap());
    let k = kinds(&msgs);
    assert_eq!(k[1], "stage:run", "{msgs:?}");
    assert_eq!(k.last().unwrap(), "exit:run", "{msgs:?}");
    assert_eq!(output(&msgs, "stdout"), "got one\ngot two\n", "{msgs:?}");
    assert_eq!(output(&msgs, "stderr"), "err\n");
    assert_eq!(msgs.last().unwrap()["code"], 3);
    assert_eq!(close, Some((4999, "Job Completed".into())));

    // A compiled program: compile, then run; bearer works too.
    let mut ws = socket(&s, Some(&key), true).await.unwrap();
    send(&mut ws, json!({"type": "init", "language": "c", "version": "*", "files": [{"name": "m.c", "content": "#include <stdio.h>\nint main(void){ puts(\"compiled\"); return 0; }"}]})).await;
    let (msgs, close) = drain(&mut ws).await;
    assert_eq!(
        kinds(&msgs),
        [
            "runtime",
            "stage:compile",
            "exit:compile",
            "stage:run",
            "data",
            "exit:run"
        ],
        "{msgs:?}"
    );
    assert_eq!(output(&msgs, "stdout"), "compiled\n");
    assert_eq!(
        (msgs[2]["code"].as_i64(), msgs[5]["code"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(close.unwrap().0, 4999);

    // A compile error ends after the compile stage, its diagnostics streamed.
    let mut ws = socket(&s, Some(&key), false).await.unwrap();
    send(&mut ws, json!({"type": "init", "language": "c", "version": "*", "files": [{"name": "bad.c", "content": "int main(void) { return nope; }"}]})).await;
    let (msgs, close) = drain(&mut ws).await;
    let k = kinds(&msgs);
    assert_eq!(k.last().unwrap(), "exit:compile", "{msgs:?}");
    assert!(!k.contains(&"stage:run".to_owned()), "{msgs:?}");
    assert_ne!(msgs.last().unwrap()["code"], 0);
    assert!(output(&msgs, "stderr").contains("nope"), "{msgs:?}");
    assert_eq!(close.unwrap().0, 4999);

    // Every run is an ordinary record of the app.
    let list = s
        .expect(
            Method::GET,
            "/v1/executions?app=repl",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3, "{list}");
    s.stop().await.unwrap();
}

/// What a hostile or broken client gets: Piston's close codes, an `error`
/// before 4002, no run for a refused `init`, the server still answering.
#[tokio::test(flavor = "multi_thread")]
async fn connect_refuses_bad_clients_with_pistons_close_codes() {
    let s = server().await;
    let key = app(&s, "rude").await;
    let init = json!({"type": "init", "language": "bash", "version": "*", "files": [{"content": "sleep 0.3; echo done"}]});

    // Keys on the upgrade request.
    assert_eq!(
        socket(&s, None, false).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        socket(&s, Some("wk_nope"), false).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    let dev = s.key("developer", "d", None).await;
    assert_eq!(
        socket(&s, Some(&dev), false).await.err(),
        Some(StatusCode::FORBIDDEN)
    );
    // A plain GET is not an upgrade.
    let r = s
        .client
        .get(s.url("/api/v2/connect"))
        .header("X-Api-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Never sent init: 4001 after about a second.
    let mut ws = socket(&s, Some(&key), false).await.unwrap();
    let t = std::time::Instant::now();
    let (_, close) = drain(&mut ws).await;
    assert_eq!(close, Some((4001, "Initialization Timeout".into())));
    assert!(t.elapsed() < std::time::Duration::from_secs(5));

    // Before init: data and signal are 4003.
    for m in [
        json!({"type": "data", "stream": "stdin", "data": "x"}),
        json!({"type": "signal", "signal": "SIGKILL"}),
    ] {
        let mut ws = socket(&s, Some(&key), false).await.unwrap();
        send(&mut ws, m).await;
        assert_eq!(drain(&mut ws).await.1, Some((4003, "Not yet initialized".into())));
    }

    // Garbage, binary, an unknown type, a refused init: `error`, then 4002.
    for (m, why) in [
        (Message::Text("{not json".into()), "not JSON"),
        (Message::Text("[1]".into()), "JSON object"),
        (Message::Binary(vec![0u8, 1, 2].into()), "binary"),
        (Message::Text(json!({"type": "exec"}).to_string().into()), "unknown message type `exec`"),
        (
            Message::Text(json!({"type": "init", "language": "cobol", "version": "*", "files": []}).to_string().into()),
            "cobol-* runtime is unknown",
        ),
        (
            Message::Text(json!({"type": "init", "language": "bash", "version": "*", "files": [{"content": ""}], "run_timeout": 99_999_999}).to_string().into()),
            "run_timeout cannot exceed",
        ),
    ] {
        let mut ws = socket(&s, Some(&key), false).await.unwrap();
        ws.send(m).await.unwrap();
        let (msgs, close) = drain(&mut ws).await;
        assert_eq!(close, Some((4002, "Notified Error".into())), "{why}");
        assert_eq!(msgs.len(), 1, "{why}: {msgs:?}");
        assert_eq!(msgs[0]["type"], "error");
        assert!(msgs[0]["message"].as_str().unwrap().contains(why), "{why}: {msgs:?}");
    }

    // After init: init again is 4000, stdout is not writable (4004), an
    // unknown signal is 4005.
    for (m, code) in [
        (init.clone(), 4000),
        (json!({"type": "data", "stream": "stdout", "data": "x"}), 4004),
        (json!({"type": "signal", "signal": "SIGNOPE"}), 4005),
    ] {
        let mut ws = socket(&s, Some(&key), false).await.unwrap();
        send(&mut ws, init.clone()).await;
        send(&mut ws, m).await;
        let (_, close) = drain(&mut ws).await;
        assert_eq!(close.map(|c| c.0), Some(code));
    }

    // A frame over the cap: the socket is closed as too big.
    let mut ws = socket(&s, Some(&key), false).await.unwrap();
    let huge = "x".repeat(64 << 20);
    let _ = ws.send(Message::Text(huge.into())).await;
    let close = drain(&mut ws).await.1;
    assert!(
        close.as_ref().is_none_or(|c| c.0 == u16::from(CloseCode::Size)),
        "{close:?}"
    );

    // Refused inits were not recorded; the server still runs programs.
    let (st, v) = execute(
        &s,
        Some(&key),
        &json!({"language": "bash", "version": "*", "files": [{"content": "echo alive"}]}),
    )
    .await;
    assert_eq!(
        (st, v["run"]["stdout"].as_str()),
        (StatusCode::OK, Some("alive\n")),
        "{v}"
    );
    s.stop().await.unwrap();
}

/// Sockets are bounded by the node's room for runs: beyond it the upgrade
/// is a clear 503, and room comes back as sockets close.
#[tokio::test(flavor = "multi_thread")]
async fn connect_sockets_are_bounded_by_the_nodes_capacity() {
    let s = server_with(|c| {
        c.max_concurrent = 1;
        c.max_queue = 2;
    })
    .await;
    let key = app(&s, "crowd").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(socket(&s, Some(&key), false).await.unwrap());
    }
    let r = s
        .client
        .get(s.url("/api/v2/connect"))
        .header("X-Api-Key", &key)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("3 Piston sockets"), "{v}");
    // The idle ones are closed at their init timeout; then there is room.
    for ws in &mut open {
        assert_eq!(drain(ws).await.1.map(|c| c.0), Some(4001));
    }
    drop(open);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut ws = socket(&s, Some(&key), false).await.unwrap();
    send(
        &mut ws,
        json!({"type": "init", "language": "bash", "version": "*", "files": [{"content": "echo room"}]}),
    )
    .await;
    let (msgs, close) = drain(&mut ws).await;
    assert_eq!(output(&msgs, "stdout"), "room\n", "{msgs:?}");
    assert_eq!(close.unwrap().0, 4999);
    s.stop().await.unwrap();
}
