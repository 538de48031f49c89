//! Sandbox sessions over a real socket, with real boxes: creating, reading
//! and listing sessions; code in every language and mode (state kept by
//! stateful cells, lost and said so after a timeout); live output; cancel;
//! terminate and delete; files in and out with ranges, every path refused
//! with its reason; ownership; quotas of an app and of the node; expiry by
//! idle timeout and max lifetime; the disk cap; a shutdown that records
//! what it ended; bad input that changes nothing.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use warden_core::Store;

/// Create a session as `key` with `body`; the answer's JSON.
async fn create(s: &Server, key: &str, body: Value) -> Value {
    s.expect(Method::POST, "/v1/sessions", key, Some(body), StatusCode::CREATED)
        .await
}

/// Run code; the answer's status and JSON.
async fn run(s: &Server, key: &str, id: &str, body: Value, query: &str) -> (StatusCode, Value) {
    let r = s
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/executions{query}"),
            Some(key),
            Some(body),
        )
        .await;
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// Run code and expect it to end; its record.
async fn done(s: &Server, key: &str, id: &str, body: Value) -> Value {
    let (st, v) = run(s, key, id, body, "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

fn py(code: &str) -> Value {
    json!({"language": "python", "mode": "script", "code": code})
}

async fn app(s: &Server, id: &str) -> String {
    let r = s
        .call(Method::POST, "/v1/apps", Some(&s.admin), Some(json!({"id": id})))
        .await;
    assert!(r.status() == StatusCode::CREATED || r.status() == StatusCode::CONFLICT);
    s.key("app", id, Some(id)).await
}

/// Wait until the session's record says `status`.
async fn wait_status(s: &Server, id: &str, status: &str, within: Duration) -> Value {
    let t = Instant::now();
    loop {
        let v = s
            .expect(
                Method::GET,
                &format!("/v1/sessions/{id}"),
                &s.admin,
                None,
                StatusCode::OK,
            )
            .await;
        if v["status"] == status {
            return v;
        }
        assert!(t.elapsed() < within, "session {id} is still {}: {v}", v["status"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn raw(
    s: &Server,
    method: Method,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut r = s.client.request(method, s.url(path)).bearer_auth(key).body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let (st, h) = (r.status(), r.headers().clone());
    (st, h, r.bytes().await.unwrap().to_vec())
}

/// A request with its path sent exactly as written (HTTP clients
/// normalize `..` and `%2e%2e` away; attackers do not).
async fn literal(s: &Server, method: &str, path: &str, key: &str, body: &[u8]) -> (StatusCode, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://");
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(body).await.unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // A chunked body: the JSON is between the first and the last chunk lines.
    let json = body
        .find('{')
        .and_then(|a| body.rfind('}').map(|b| &body[a..=b]))
        .unwrap_or("null");
    (
        StatusCode::from_u16(status).unwrap(),
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn code_runs_in_every_language_and_mode_and_cells_keep_their_state() {
    let s = server().await;
    let shop = app(&s, "shop").await;
    let v = create(&s, &shop, json!({"env": {"GREETING": "hello"}})).await;
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ses_"), "{v}");
    assert_eq!(v["status"], "running");
    assert_eq!(v["app"], "shop");
    assert_eq!(v["template"], "python-basic");
    assert_eq!(v["resources"]["memory_mb"], 512);
    assert_eq!(v["network"]["allow"], json!([]));
    assert!(v["started_at"].is_i64());
    let back = s
        .expect(
            Method::GET,
            &format!("/v1/sessions/{id}"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(back["id"], v["id"]);

    // A script: output and exit code; the workspace is the working folder;
    // the session's environment reaches it.
    let e = done(
        &s,
        &shop,
        &id,
        py("import os\nopen('note.txt', 'w').write('kept')\nprint(os.getcwd(), os.environ['GREETING'])"),
    )
    .await;
    assert_eq!(e["status"], "success", "{e}");
    assert_eq!(e["stdout"], "/workspace hello\n");
    assert_eq!(e["kind"], "session");
    assert_eq!(e["session"], id.as_str());
    assert_eq!(e["language"], "python");
    assert_eq!(e["run_mode"], "script");
    assert_eq!(e["plugin"], Value::Null);
    let e = done(
        &s,
        &shop,
        &id,
        json!({"language": "shell", "code": "cat note.txt; echo; echo oops >&2; exit 3"}),
    )
    .await;
    assert_eq!(e["status"], "failed", "{e}");
    assert_eq!(e["exit_code"], 3);
    assert_eq!(e["stdout"], "kept\n");
    assert_eq!(e["stderr"], "oops\n");
    assert_eq!(e["error_kind"], "handler_error");
    // A handler: the return value, as for plugins.
    let e = done(
        &s,
        &shop,
        &id,
        json!({"language": "javascript", "mode": "handler", "event": {"n": 21},
               "code": "export async function handler(event) { return { twice: event.n * 2 }; }"}),
    )
    .await;
    assert_eq!(e["return_value"], json!({"twice": 42}), "{e}");
    let e = done(
        &s,
        &shop,
        &id,
        json!({"language": "python", "mode": "handler", "code": "def handler(event):\n    return {}[1]\n"}),
    )
    .await;
    assert_eq!(e["status"], "failed");
    assert_eq!(e["error"]["type"], "KeyError", "{e}");
    assert!(
        e["error"]["traceback"].as_str().unwrap().contains("return {}[1]"),
        "{e}"
    );
    // Stateful cells: state persists, the last expression is the value.
    let cell = |code: &str| json!({"language": "python", "mode": "repl", "code": code});
    let e = done(&s, &shop, &id, cell("import json\nx = 40")).await;
    assert_eq!(e["status"], "success", "{e}");
    let e = done(&s, &shop, &id, cell("print('out')\nx + 2")).await;
    assert_eq!(e["return_value"], 42, "{e}");
    assert_eq!(e["stdout"], "out\n");
    assert_eq!(e["interpreter_restarted"], false);
    // A timeout kills the interpreter, says so, and the next cell says its
    // state was lost; the files stay.
    let e = done(
        &s,
        &shop,
        &id,
        json!({"language": "python", "mode": "repl", "code": "while True: pass", "timeout_ms": 1000}),
    )
    .await;
    assert_eq!(e["status"], "timeout", "{e}");
    assert_eq!(e["interpreter_died"], true);
    let e = done(&s, &shop, &id, cell("'x' in dir()")).await;
    assert_eq!(e["interpreter_restarted"], true, "{e}");
    assert_eq!(e["return_value"], false);
    let e = done(&s, &shop, &id, py("print(open('note.txt').read())")).await;
    assert_eq!(e["stdout"], "kept\n");
    // Artifacts: only what this execution created or changed under out/.
    let e = done(
        &s,
        &shop,
        &id,
        py("import os\nos.makedirs('out', exist_ok=True)\nopen('out/a.txt','w').write('A')"),
    )
    .await;
    assert_eq!(e["artifacts"].as_array().unwrap().len(), 1, "{e}");
    assert_eq!(e["artifacts"][0]["path"], "a.txt");
    let url = e["artifacts"][0]["url"].as_str().unwrap().to_owned();
    let (st, _, bytes) = raw(&s, Method::GET, &url, &shop, &[], vec![]).await;
    assert_eq!((st, bytes.as_slice()), (StatusCode::OK, b"A".as_slice()));
    let e = done(&s, &shop, &id, py("open('out/b.txt','w').write('B')")).await;
    let paths: Vec<&str> = e["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["b.txt"], "{e}");

    // Async: 202 at once, the record, then its stream.
    let (st, v) = run(
        &s,
        &shop,
        &id,
        py("import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.2)"),
        "?mode=async",
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "queued");
    assert_eq!(v["mode"], "async");
    let exec = v["id"].as_str().unwrap().to_owned();
    let events = sse(&s, &shop, &exec, None).await;
    let stdout: String = events
        .iter()
        .filter(|e| e.1 == "stdout")
        .map(|e| serde_json::from_str::<String>(&e.2).unwrap())
        .collect();
    assert_eq!(stdout, "line 0\nline 1\nline 2\n");
    assert_eq!(events.last().unwrap().1, "result");
    let rest = sse(&s, &shop, &exec, Some(&events[1].0)).await;
    assert_eq!(rest, events[2..].to_vec(), "resumed after Last-Event-ID");
    let got = s
        .expect(
            Method::GET,
            &format!("/v1/executions/{exec}"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(got["status"], "success");

    // The session's executions, newest first, in pages.
    let page = s
        .expect(
            Method::GET,
            &format!("/v1/sessions/{id}/executions?limit=3"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert_eq!(page["items"][0]["id"], exec.as_str());
    assert!(page["next_cursor"].is_string());
    let v = s
        .expect(
            Method::GET,
            &format!("/v1/sessions/{id}"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["executions"], 12, "{v}");

    // Bad input: every problem located, nothing recorded.
    let before = page_len(&s, &shop, &id).await;
    for (body, status, location) in [
        (
            json!({"language": "shell", "mode": "repl", "code": "ls"}),
            422,
            "/mode",
        ),
        (
            json!({"language": "python", "code": "x", "timeout_ms": 10_000_000}),
            422,
            "/timeout_ms",
        ),
        (
            json!({"language": "python", "code": "x", "event": {}}),
            422,
            "/event",
        ),
        (
            json!({"language": "python", "mode": "handler", "code": "x", "event": "text"}),
            422,
            "/event",
        ),
        (
            json!({"language": "python", "code": "x", "env": {"LD_PRELOAD": "/x.so"}}),
            422,
            "/env/LD_PRELOAD",
        ),
    ] {
        let (st, p) = run(&s, &shop, &id, body.clone(), "").await;
        assert_eq!(st.as_u16(), status, "{body}: {p}");
        let at: Vec<&str> = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["location"].as_str().unwrap())
            .collect();
        assert!(at.contains(&location), "{body}: {p}");
    }
    let (st, p) = run(&s, &shop, &id, json!({"language": "cobol", "code": "x"}), "").await;
    assert!(
        st == StatusCode::UNPROCESSABLE_ENTITY || st == StatusCode::BAD_REQUEST,
        "{p}"
    );
    assert!(
        p["detail"].as_str().unwrap().contains("cobol") || p["detail"].as_str().unwrap().contains("language"),
        "{p}"
    );
    let big = "x".repeat((1 << 20) + 1);
    let (st, p) = run(&s, &shop, &id, json!({"language": "python", "code": big}), "").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["location"], "/code");
    assert_eq!(
        page_len(&s, &shop, &id).await,
        before,
        "refused requests leave no record"
    );
    s.stop().await.unwrap();
}

async fn page_len(s: &Server, key: &str, id: &str) -> usize {
    s.expect(
        Method::GET,
        &format!("/v1/sessions/{id}/executions?limit=500"),
        key,
        None,
        StatusCode::OK,
    )
    .await["items"]
        .as_array()
        .unwrap()
        .len()
}

async fn sse(s: &Server, key: &str, id: &str, last: Option<&str>) -> Vec<(String, String, String)> {
    let mut r = s
        .client
        .get(s.url(&format!("/v1/executions/{id}/events")))
        .bearer_auth(key);
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
async fn files_move_in_and_out_and_every_path_is_checked() {
    let s = server_with(|c| c.sessions.max_upload_bytes = 1 << 20).await;
    let shop = app(&s, "shop").await;
    let id = create(&s, &shop, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let f = |p: &str| format!("/v1/sessions/{id}/files/{p}");
    // Raw upload: missing directories are made; a second upload replaces.
    let (st, _, b) = raw(
        &s,
        Method::PUT,
        &f("data/in.txt"),
        &shop,
        &[],
        b"0123456789".to_vec(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
    let entry = json_of(&b);
    assert_eq!(entry["path"], "data/in.txt");
    assert_eq!(entry["kind"], "file");
    assert_eq!(entry["size"], 10);
    let (st, _, _) = raw(
        &s,
        Method::PUT,
        &f("data/in.txt"),
        &shop,
        &[],
        b"abcdefghij".to_vec(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // Code sees it; what code writes, the API reads.
    let e = done(
        &s,
        &shop,
        &id,
        py("print(open('data/in.txt').read()); open('data/out.bin','wb').write(bytes(range(256)) * 4)"),
    )
    .await;
    assert_eq!(e["stdout"], "abcdefghij\n", "{e}");
    let (st, h, b) = raw(&s, Method::GET, &f("data/out.bin"), &shop, &[], vec![]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b.len(), 1024);
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["content-type"], "application/octet-stream");
    assert!(h["content-disposition"].to_str().unwrap().contains("out.bin"));
    // Ranges.
    let (st, h, b) = raw(
        &s,
        Method::GET,
        &f("data/out.bin"),
        &shop,
        &[("range", "bytes=10-19")],
        vec![],
    )
    .await;
    assert_eq!(st, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["content-range"], "bytes 10-19/1024");
    assert_eq!(b, (10u8..20).collect::<Vec<u8>>());
    let (st, h, b) = raw(
        &s,
        Method::GET,
        &f("data/out.bin"),
        &shop,
        &[("range", "bytes=-2")],
        vec![],
    )
    .await;
    assert_eq!((st, b), (StatusCode::PARTIAL_CONTENT, vec![254, 255]));
    assert_eq!(h["content-range"], "bytes 1022-1023/1024");
    let (st, h, b) = raw(
        &s,
        Method::GET,
        &f("data/out.bin"),
        &shop,
        &[("range", "bytes=2000-")],
        vec![],
    )
    .await;
    assert_eq!(
        st,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert_eq!(h["content-range"], "bytes */1024");
    assert_eq!(json_of(&b)["type"], "/problems/range-not-satisfiable");
    // Listing: names, kinds, sizes, modification times.
    let list = s
        .expect(
            Method::GET,
            &format!("/v1/sessions/{id}/files?path=data"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(list["path"], "data");
    assert_eq!(list["truncated"], false);
    let names: Vec<(&str, &str, u64)> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["kind"].as_str().unwrap(),
                e["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, [("in.txt", "file", 10), ("out.bin", "file", 1024)]);
    assert!(list["entries"][0]["modified_at"].as_i64().unwrap() > 1_700_000_000_000);
    let root = s
        .expect(
            Method::GET,
            &format!("/v1/sessions/{id}/files"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert!(
        root["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "data" && e["kind"] == "directory"),
        "{root}"
    );
    // Directories: made with their parents, 200 when there already, 409 on
    // a file.
    let mk = |p: &str| json!({"path": p});
    let d = s
        .expect(
            Method::POST,
            &format!("/v1/sessions/{id}/directories"),
            &shop,
            Some(mk("a/b/c")),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(
        (d["path"].as_str(), d["kind"].as_str()),
        (Some("a/b/c"), Some("directory"))
    );
    s.expect(
        Method::POST,
        &format!("/v1/sessions/{id}/directories"),
        &shop,
        Some(mk("a/b")),
        StatusCode::OK,
    )
    .await;
    let p = s
        .expect(
            Method::POST,
            &format!("/v1/sessions/{id}/directories"),
            &shop,
            Some(mk("data/in.txt/x")),
            StatusCode::CONFLICT,
        )
        .await;
    assert!(p["detail"].as_str().unwrap().contains("in.txt"), "{p}");
    // A directory is neither downloaded nor overwritten.
    let (st, _, _) = raw(&s, Method::GET, &f("a/b"), &shop, &[], vec![]).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _, _) = raw(&s, Method::PUT, &f("a/b"), &shop, &[], b"x".to_vec()).await;
    assert_eq!(st, StatusCode::CONFLICT);
    // Multipart: to ?path= (required).
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"from a form".to_vec()).file_name("ignored.txt"),
    );
    let r = s
        .client
        .post(s.url(&format!("/v1/sessions/{id}/files?path=forms/one.txt")))
        .bearer_auth(&shop)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"named".to_vec()).file_name("named.txt"),
    );
    let r = s
        .client
        .post(s.url(&format!("/v1/sessions/{id}/files?path=named.txt")))
        .bearer_auth(&shop)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, _, b) = raw(&s, Method::GET, &f("named.txt"), &shop, &[], vec![]).await;
    assert_eq!(b, b"named");
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.txt"),
    );
    let r = s
        .client
        .post(s.url(&format!("/v1/sessions/{id}/files")))
        .bearer_auth(&shop)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "?path= is required");
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["location"],
        "query:path"
    );
    // Malformed forms: each a 400 naming what is wrong.
    let form = reqwest::multipart::Form::new().text("other", "x");
    let r = s
        .client
        .post(s.url(&format!("/v1/sessions/{id}/files?path=x")))
        .bearer_auth(&shop)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["location"],
        "form:other"
    );
    let (st, _, b) = raw(
        &s,
        Method::POST,
        &format!("/v1/sessions/{id}/files?path=x"),
        &shop,
        &[("content-type", "multipart/form-data; boundary=XYZ")],
        b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nunterminated".to_vec(),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&b));
    let (st, _, _) = raw(
        &s,
        Method::POST,
        &format!("/v1/sessions/{id}/files?path=x"),
        &shop,
        &[("content-type", "text/plain")],
        b"x".to_vec(),
    )
    .await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Over the cap: 413, by its length or as it streams; nothing left.
    let (st, _, b) = raw(
        &s,
        Method::PUT,
        &f("big.bin"),
        &shop,
        &[],
        vec![0u8; (1 << 20) + 1],
    )
    .await;
    assert_eq!(
        st,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&b)
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..20).map(|_| Ok(vec![1u8; 64 << 10])).collect();
    let sent = s
        .client
        .put(s.url(&f("streamed.bin")))
        .bearer_auth(&shop)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    match sent {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        // The server answers 413 as soon as the cap is passed and closes the
        // connection; a client still sending may see the close before it
        // reads the answer. Either way the upload is refused.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e:?}"),
    }
    // A new connection: the one the refused upload used was closed by the
    // server, and a pooled client may try to reuse it.
    let st = reqwest::Client::new()
        .get(s.url(&f("streamed.bin")))
        .bearer_auth(&shop)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, StatusCode::NOT_FOUND, "a refused upload leaves no file");
    // Every bad path: 400 naming the path and the reason; nothing touched.
    for (path, why) in [
        ("../etc/passwd", "`..`"),
        ("%2e%2e/etc/passwd", "`..`"),
        ("data/%2E%2E/%2E%2E/x", "`..`"),
        ("data/../../x", "`..`"),
        ("/etc/passwd", "absolute"),
        ("a//b", "empty segment"),
        ("a/./b", "`.` segment"),
        ("a%00b", "NUL"),
        ("a%0Ab", "control"),
        ("a%1B%5B2Jb", "control"),
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            let (st, p) = literal(&s, method, &f(path), &shop, b"x").await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{method} {path}: {p}");
            assert_eq!(p["errors"][0]["location"], "path:path", "{p}");
            assert!(
                p["detail"].as_str().unwrap().contains(why),
                "{method} {path}: {p}"
            );
        }
    }
    let long = "a".repeat(300);
    let (st, _, b) = raw(&s, Method::PUT, &f(&long), &shop, &[], b"x".to_vec()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(json_of(&b)["detail"].as_str().unwrap().contains("255 characters"));
    // 200 characters but 400 bytes: the kernel's limit is in bytes.
    let wide = "é".repeat(200);
    let (st, _, b) = raw(&s, Method::PUT, &f(&wide), &shop, &[], b"x".to_vec()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(json_of(&b)["detail"].as_str().unwrap().contains("255 bytes"));
    let (st, p) = literal(
        &s,
        "GET",
        &format!("/v1/sessions/{id}/files?path=../.."),
        &shop,
        b"",
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["errors"][0]["location"], "query:path");
    let p = s
        .expect(
            Method::POST,
            &format!("/v1/sessions/{id}/directories"),
            &shop,
            Some(mk("/tmp/x")),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(p["errors"][0]["location"], "/path");
    // Delete a file, then a tree.
    let (st, _, _) = raw(&s, Method::DELETE, &f("data/in.txt"), &shop, &[], vec![]).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, b) = raw(&s, Method::GET, &f("data/in.txt"), &shop, &[], vec![]).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{}", String::from_utf8_lossy(&b));
    let (st, _, _) = raw(&s, Method::DELETE, &f("a"), &shop, &[], vec![]).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = raw(&s, Method::DELETE, &f("a"), &shop, &[], vec![]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let e = done(&s, &shop, &id, json!({"language": "shell", "code": "ls"})).await;
    assert_eq!(e["stdout"], "data\nforms\nnamed.txt\n", "{e}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_terminate_and_delete() {
    let s = server().await;
    let shop = app(&s, "shop").await;
    let id = create(&s, &shop, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A running execution, cancelled: its processes die, the session lives.
    let (_, v) = run(
        &s,
        &shop,
        &id,
        json!({"language": "shell", "code": "sleep 30; echo never"}),
        "?mode=async",
    )
    .await;
    let slow = v["id"].as_str().unwrap().to_owned();
    // One waiting behind it, cancelled before its turn.
    let (_, v) = run(
        &s,
        &shop,
        &id,
        json!({"language": "shell", "code": "echo never either"}),
        "?mode=async",
    )
    .await;
    let waiting = v["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let w = s
        .expect(
            Method::POST,
            &format!("/v1/executions/{waiting}/cancel"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(w["status"], "cancelled", "{w}");
    assert_eq!(w["started_at"], Value::Null, "it never started");
    let c = s
        .expect(
            Method::POST,
            &format!("/v1/executions/{slow}/cancel"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(c["status"], "cancelled", "{c}");
    assert_eq!(c["error_kind"], "cancelled");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(c["stdout"], "");
    // Cancelling what has ended: 409.
    let p = s
        .expect(
            Method::POST,
            &format!("/v1/executions/{slow}/cancel"),
            &shop,
            None,
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!(p["type"], "/problems/not-cancellable");
    let e = done(&s, &shop, &id, json!({"language": "shell", "code": "echo after"})).await;
    assert_eq!(e["stdout"], "after\n");

    // Terminate while an execution runs: it ends, saying why; the session's
    // record stays with its reason; nothing more runs in it.
    let (_, v) = run(
        &s,
        &shop,
        &id,
        json!({"language": "python", "code": "import time; time.sleep(30)"}),
        "?mode=async",
    )
    .await;
    let running = v["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let ended = s
        .expect(
            Method::POST,
            &format!("/v1/sessions/{id}/terminate"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(ended["status"], "terminated");
    assert_eq!(ended["status_reason"], "terminated on request");
    assert!(ended["ended_at"].is_i64());
    let r = s
        .expect(
            Method::GET,
            &format!("/v1/executions/{running}"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(r["status"], "cancelled", "{r}");
    assert_eq!(r["error_kind"], "session_ended");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("terminated"),
        "{r}"
    );
    let (st, p) = run(&s, &shop, &id, py("print(1)"), "").await;
    assert_eq!(st, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["type"], "/problems/session-state");
    assert_eq!(p["current_state"], "terminated");
    let (st, _, _) = raw(
        &s,
        Method::GET,
        &format!("/v1/sessions/{id}/files/x"),
        &shop,
        &[],
        vec![],
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);
    s.expect(
        Method::POST,
        &format!("/v1/sessions/{id}/terminate"),
        &shop,
        None,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(s.state.sessions.live_count(), 0, "the box is gone");
    // Delete: the record goes, the executions' records stay.
    let r = s
        .call(Method::DELETE, &format!("/v1/sessions/{id}"), Some(&shop), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    s.expect(
        Method::GET,
        &format!("/v1/sessions/{id}"),
        &shop,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    s.expect(
        Method::GET,
        &format!("/v1/executions/{running}"),
        &shop,
        None,
        StatusCode::OK,
    )
    .await;
    // Deleting a live session terminates it first.
    let id2 = create(&s, &shop, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .call(Method::DELETE, &format!("/v1/sessions/{id2}"), Some(&shop), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.state.sessions.live_count(), 0);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_belong_to_their_app() {
    let s = server().await;
    let shop = app(&s, "shop").await;
    let blog = app(&s, "blog").await;
    let dev = s.key("developer", "alice", None).await;
    let id = create(&s, &shop, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = create(&s, &blog, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another app gets exactly the answer for a session that does not exist.
    let missing = "ses_0000000000000000000000";
    for (method, suffix) in [
        (Method::GET, ""),
        (Method::POST, "/terminate"),
        (Method::GET, "/executions"),
        (Method::GET, "/files"),
        (Method::GET, "/files/x"),
    ] {
        let mine = s
            .call(
                method.clone(),
                &format!("/v1/sessions/{id}{suffix}"),
                Some(&blog),
                None,
            )
            .await;
        let (st, text) = (mine.status(), mine.text().await.unwrap());
        let none = s
            .call(
                method.clone(),
                &format!("/v1/sessions/{missing}{suffix}"),
                Some(&blog),
                None,
            )
            .await;
        let (st2, text2) = (none.status(), none.text().await.unwrap());
        assert_eq!(st, StatusCode::NOT_FOUND, "{method} {suffix}: {text}");
        assert_eq!(
            (st, text),
            (st2, text2.replace(missing, &id)),
            "{method} {suffix}"
        );
    }
    let (st, _) = run(&s, &blog, &id, py("print(1)"), "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Developers: 403 whatever the session.
    s.expect(
        Method::GET,
        &format!("/v1/sessions/{id}"),
        &dev,
        None,
        StatusCode::FORBIDDEN,
    )
    .await;
    s.expect(
        Method::POST,
        "/v1/sessions",
        &dev,
        Some(json!({})),
        StatusCode::FORBIDDEN,
    )
    .await;
    // An app creates for itself only; admins name the app.
    s.expect(
        Method::POST,
        "/v1/sessions",
        &shop,
        Some(json!({"app": "blog"})),
        StatusCode::FORBIDDEN,
    )
    .await;
    let p = s
        .expect(
            Method::POST,
            "/v1/sessions",
            &s.admin,
            Some(json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(p["errors"][0]["location"], "/app");
    let p = s
        .expect(
            Method::POST,
            "/v1/sessions",
            &s.admin,
            Some(json!({"app": "nope"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(p["errors"][0]["location"], "/app");
    let by_admin = create(&s, &s.admin, json!({"app": "shop", "template": "shell"})).await;
    assert_eq!(by_admin["app"], "shop");
    // Lists: an app sees its own; admins all, filtered.
    let l = s
        .expect(Method::GET, "/v1/sessions", &shop, None, StatusCode::OK)
        .await;
    let ids: Vec<&str> = l["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [by_admin["id"].as_str().unwrap(), id.as_str()]);
    s.expect(
        Method::GET,
        "/v1/sessions?app=blog",
        &shop,
        None,
        StatusCode::FORBIDDEN,
    )
    .await;
    let l = s
        .expect(
            Method::GET,
            "/v1/sessions?app=blog",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(l["items"][0]["id"], other.as_str());
    let l = s
        .expect(
            Method::GET,
            "/v1/sessions?template=shell",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1);
    let l = s
        .expect(
            Method::GET,
            "/v1/sessions?limit=1",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    let next = l["next_cursor"].as_str().unwrap().to_owned();
    let l2 = s
        .expect(
            Method::GET,
            &format!("/v1/sessions?limit=1&cursor={next}"),
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_ne!(l["items"][0]["id"], l2["items"][0]["id"]);
    s.expect(
        Method::POST,
        &format!("/v1/sessions/{other}/terminate"),
        &blog,
        None,
        StatusCode::OK,
    )
    .await;
    let l = s
        .expect(
            Method::GET,
            "/v1/sessions?status=terminated",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1);
    let p = s
        .expect(
            Method::GET,
            "/v1/sessions?status=sleeping",
            &s.admin,
            None,
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(p["errors"][0]["location"], "query:status");
    // Another app's execution: not found; cancel too.
    let e = done(&s, &shop, &id, py("print(1)")).await;
    let eid = e["id"].as_str().unwrap();
    s.expect(
        Method::GET,
        &format!("/v1/executions/{eid}"),
        &blog,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    s.expect(
        Method::GET,
        &format!("/v1/executions/{eid}"),
        &dev,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    s.expect(
        Method::POST,
        &format!("/v1/executions/{eid}/cancel"),
        &blog,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_of_an_app_and_of_the_node_refuse_clearly() {
    let s = server_with(|c| {
        c.sessions.app_max_live = 2;
        c.sessions.app_max_memory_mb = 700;
        c.sessions.node_max_live = 3;
    })
    .await;
    let shop = app(&s, "shop").await;
    let blog = app(&s, "blog").await;
    let small = json!({"resources": {"memory_mb": 128}});
    let a = create(&s, &shop, small.clone()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Memory: 128 + 640 > 700.
    let p = s
        .expect(
            Method::POST,
            "/v1/sessions",
            &shop,
            Some(json!({"resources": {"memory_mb": 640}})),
            StatusCode::TOO_MANY_REQUESTS,
        )
        .await;
    assert_eq!(p["type"], "/problems/session-quota");
    assert!(p["detail"].as_str().unwrap().contains("memory"), "{p}");
    create(&s, &shop, small.clone()).await;
    let p = s
        .expect(
            Method::POST,
            "/v1/sessions",
            &shop,
            Some(small.clone()),
            StatusCode::TOO_MANY_REQUESTS,
        )
        .await;
    assert!(p["detail"].as_str().unwrap().contains("2 live sessions"), "{p}");
    // The node: 3 live sessions at most.
    create(&s, &blog, small.clone()).await;
    let r = s
        .call(Method::POST, "/v1/sessions", Some(&blog), Some(small.clone()))
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "/problems/node-full", "{p}");
    // Refusals left no record.
    let all = s
        .expect(Method::GET, "/v1/sessions", &s.admin, None, StatusCode::OK)
        .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    // An ended session frees its place.
    s.expect(
        Method::POST,
        &format!("/v1/sessions/{a}/terminate"),
        &shop,
        None,
        StatusCode::OK,
    )
    .await;
    create(&s, &shop, small).await;
    // Too many executions waiting in one session: 429.
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_with_too_many_waiting_executions_refuses_more() {
    let s = server_with(|c| c.sessions.max_pending = 2).await;
    let shop = app(&s, "shop").await;
    let id = create(&s, &shop, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let slow = json!({"language": "shell", "code": "sleep 5"});
    let (st, first) = run(&s, &shop, &id, slow.clone(), "?mode=async").await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, _) = run(&s, &shop, &id, slow.clone(), "?mode=async").await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let r = s
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/executions?mode=async"),
            Some(&shop),
            Some(slow),
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().await.unwrap()["type"], "/problems/session-busy");
    let f = s
        .expect(
            Method::POST,
            &format!("/v1/executions/{}/cancel", first["id"].as_str().unwrap()),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(f["status"], "cancelled");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweeper_expires_idle_and_old_sessions_and_reclaims_them() {
    let s = server_with(|c| c.sessions.sweep_interval_ms = 100).await;
    let shop = app(&s, "shop").await;
    let idle = create(&s, &shop, json!({"idle_timeout_secs": 1})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let old = create(
        &s,
        &shop,
        json!({"max_lifetime_secs": 3, "idle_timeout_secs": 60}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Activity keeps the idle one alive for a while.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (st, _, _) = raw(
            &s,
            Method::GET,
            &format!("/v1/sessions/{idle}/files"),
            &shop,
            &[],
            vec![],
        )
        .await;
        assert_eq!(st, StatusCode::OK, "still alive while used");
    }
    // An execution running when the max lifetime comes ends with the session.
    let (_, v) = run(
        &s,
        &shop,
        &old,
        json!({"language": "shell", "code": "sleep 30"}),
        "?mode=async",
    )
    .await;
    let running = v["id"].as_str().unwrap().to_owned();
    let v = wait_status(&s, &idle, "expired", Duration::from_secs(10)).await;
    assert!(
        v["status_reason"]
            .as_str()
            .unwrap()
            .contains("idle timeout of 1 second"),
        "{v}"
    );
    let v = wait_status(&s, &old, "expired", Duration::from_secs(10)).await;
    assert!(
        v["status_reason"]
            .as_str()
            .unwrap()
            .contains("max lifetime of 3 seconds"),
        "{v}"
    );
    let t = Instant::now();
    loop {
        let e = s
            .expect(
                Method::GET,
                &format!("/v1/executions/{running}"),
                &shop,
                None,
                StatusCode::OK,
            )
            .await;
        if e["status"] != "running" && e["status"] != "queued" {
            assert_eq!(e["status"], "cancelled", "{e}");
            assert_eq!(e["error_kind"], "session_ended");
            assert!(e["error"]["message"].as_str().unwrap().contains("expired"), "{e}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Everything reclaimed: no box, no slot held.
    let t = Instant::now();
    while s.state.sessions.live_count() > 0 {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, p) = run(&s, &shop, &idle, py("print(1)"), "").await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(p["current_state"], "expired");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_disk_cap_gives_enospc_and_leaves_the_others_alone() {
    let s = server().await;
    let shop = app(&s, "shop").await;
    let tiny = create(&s, &shop, json!({"resources": {"disk_mb": 8}})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = create(&s, &shop, json!({"resources": {"disk_mb": 64}})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = done(
        &s,
        &shop,
        &tiny,
        py("import errno\ntry:\n    open('big','wb').write(b'x' * (32 << 20))\nexcept OSError as e:\n    print(errno.errorcode[e.errno])"),
    )
    .await;
    assert_eq!(e["stdout"], "ENOSPC\n", "{e}");
    // An upload into the full workspace: 507, named.
    let (st, _, b) = raw(
        &s,
        Method::PUT,
        &format!("/v1/sessions/{tiny}/files/more.bin"),
        &shop,
        &[],
        vec![7u8; 1 << 20],
    )
    .await;
    assert_eq!(
        st,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert_eq!(json_of(&b)["type"], "/problems/disk-full");
    // The other session writes as it pleases; the full one recovers.
    let e = done(
        &s,
        &shop,
        &other,
        py("open('f','wb').write(b'y' * (16 << 20)); print('ok')"),
    )
    .await;
    assert_eq!(e["stdout"], "ok\n", "{e}");
    let e = done(
        &s,
        &shop,
        &tiny,
        json!({"language": "shell", "code": "rm big; echo free"}),
    )
    .await;
    assert_eq!(e["stdout"], "free\n");
    let (st, _, _) = raw(
        &s,
        Method::PUT,
        &format!("/v1/sessions/{tiny}/files/more.bin"),
        &shop,
        &[],
        vec![7u8; 1 << 20],
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_are_located_and_change_nothing() {
    let s = server().await;
    let shop = app(&s, "shop").await;
    for (body, locations) in [
        (json!({"template": "no-such-template"}), vec!["/template"]),
        (
            json!({"resources": {"memory_mb": 999_999, "cpu_cores": 64.0, "pids": 1}, "idle_timeout_secs": 0}),
            vec![
                "/resources/cpu_cores",
                "/resources/memory_mb",
                "/resources/pids",
                "/idle_timeout_secs",
            ],
        ),
        (
            json!({"env": {"PATH": "/evil", "1BAD": "x"}}),
            vec!["/env/1BAD", "/env/PATH"],
        ),
        (
            json!({"network": {"allow": ["pypi.org"]}}),
            vec!["/network/allow"],
        ),
        (
            json!({"packages": [{"name": "requests"}]}),
            vec!["/packages/0/ecosystem"],
        ),
    ] {
        let p = s
            .expect(
                Method::POST,
                "/v1/sessions",
                &shop,
                Some(body.clone()),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        let got: Vec<&str> = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["location"].as_str().unwrap())
            .collect();
        assert_eq!(got, locations, "{body}: {p}");
    }
    let r = s
        .call(
            Method::POST,
            "/v1/sessions",
            Some(&shop),
            Some(json!({"templat": "x"})),
        )
        .await;
    assert!(r.status().is_client_error());
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("templat"), "{p}");
    let all = s
        .expect(Method::GET, "/v1/sessions", &s.admin, None, StatusCode::OK)
        .await;
    assert!(
        all["items"].as_array().unwrap().is_empty(),
        "nothing was recorded: {all}"
    );
    // A filter that cannot name an app is refused, not matched against.
    for bad in ["", "a", "Shop", "shop%2F..", "x".repeat(64).as_str()] {
        let p = s
            .expect(
                Method::GET,
                &format!("/v1/sessions?app={bad}"),
                &s.admin,
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
        assert_eq!(p["errors"][0]["location"], "query:app", "{bad:?}: {p}");
    }
    assert_eq!(s.state.sessions.live_count(), 0);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_records_the_sessions_it_ended() {
    let s = server_with(|c| c.shutdown_grace_secs = 5).await;
    let shop = app(&s, "shop").await;
    let id = create(&s, &shop, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, v) = run(
        &s,
        &shop,
        &id,
        json!({"language": "shell", "code": "sleep 60"}),
        "?mode=async",
    )
    .await;
    let exec = v["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let (served, data) = s.stop_keep_data().await;
    served.unwrap();
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let store =
        warden_store::SqlStore::connect(&format!("sqlite://{}", data.path().join("warden.db").display()))
            .await
            .unwrap();
    let session = store.get_session(&id).await.unwrap().unwrap();
    assert_eq!(session.status.as_str(), "terminated");
    assert_eq!(session.status_reason.as_deref(), Some("the server stopped"));
    let e = store.get_execution(&exec).await.unwrap().unwrap();
    assert_eq!(e.status.as_str(), "interrupted", "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_takes_its_templates_defaults_and_stays_within_what_it_allows() {
    let s = server().await;
    let shop = app(&s, "shop").await;
    s.expect(
        Method::POST,
        "/v1/templates",
        &s.admin,
        Some(json!({
            "id": "scraper",
            "runtime": "python",
            "env": {"MODE": "scrape"},
            "resources": {"memory_mb": 768, "idle_timeout_secs": 1800},
            "network": {"mode": "allow_list", "allow": ["example.com:443", "*.example.org"]},
            "files": [{"path": "conf/settings.toml", "content": "retries = 3\n"}]
        })),
        StatusCode::CREATED,
    )
    .await;
    let v = create(&s, &shop, json!({"template": "scraper"})).await;
    assert_eq!(v["template"], "scraper");
    assert_eq!(v["resources"]["memory_mb"], 768);
    assert_eq!(v["idle_timeout_secs"], 1800);
    assert_eq!(v["env"]["MODE"], "scrape");
    assert_eq!(v["network"]["allow"], json!(["example.com:443", "*.example.org"]));
    let id = v["id"].as_str().unwrap();
    let e = done(
        &s,
        &shop,
        id,
        py("import os\nprint(open('conf/settings.toml').read().strip(), os.environ['MODE'])"),
    )
    .await;
    assert_eq!(e["stdout"], "retries = 3 scrape\n", "{e}");
    // A part of the template's allow-list, or none; never beyond it.
    let v = create(
        &s,
        &shop,
        json!({"template": "scraper", "network": {"allow": ["api.example.org:443"]}}),
    )
    .await;
    assert_eq!(v["network"]["allow"], json!(["api.example.org:443"]));
    let v = create(
        &s,
        &shop,
        json!({"template": "scraper", "network": {"allow": []}}),
    )
    .await;
    assert_eq!(v["network"]["allow"], json!([]));
    let p = s
        .expect(
            Method::POST,
            "/v1/sessions",
            &shop,
            Some(json!({"template": "scraper", "network": {"allow": ["example.com:80", "evil.com"]}})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    let at: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["location"].as_str().unwrap())
        .collect();
    assert_eq!(at, ["/network/allow/0", "/network/allow/1"], "{p}");
    // A template whose packages are not served to sessions yet: refused,
    // saying so.
    s.expect(
        Method::POST,
        "/v1/templates",
        &s.admin,
        Some(json!({"id": "with-pkgs", "runtime": "python", "packages": [{"ecosystem": "pip", "name": "requests"}]})),
        StatusCode::CREATED,
    )
    .await;
    let p = s
        .expect(
            Method::POST,
            "/v1/sessions",
            &shop,
            Some(json!({"template": "with-pkgs"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(p["errors"][0]["location"], "/template");
    assert!(
        p["errors"][0]["message"].as_str().unwrap().contains("packages"),
        "{p}"
    );
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_come_from_the_templates_layer_and_the_sessions_own() {
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
    let shop = app(&s, "shop").await;
    s.expect(
        Method::POST,
        "/v1/templates",
        &s.admin,
        Some(json!({"id": "hello", "runtime": "python",
            "packages": [{"ecosystem": "pip", "name": "tinyhello", "version": "==1.0.0"}]})),
        StatusCode::CREATED,
    )
    .await;

    // Never built: the first session builds the template's layer and the
    // template is pointed at it.
    let a = create(&s, &shop, json!({"template": "hello"})).await;
    let layer = a["layer"].as_str().expect("a layer").to_owned();
    let t = s
        .expect(Method::GET, "/v1/templates/hello", &shop, None, StatusCode::OK)
        .await;
    assert_eq!(t["layer"], layer.as_str(), "{t}");
    let id = a["id"].as_str().unwrap();
    let v = done(&s, &shop, id, py("import tinyhello\nprint(tinyhello.hi())")).await;
    assert_eq!(v["stdout"], "hi\n", "{v}");
    // Read-only inside the box.
    let v = done(
        &s,
        &shop,
        id,
        py("import tinyhello, os\ntry:\n    open(os.path.join(os.path.dirname(tinyhello.__file__), 'x'), 'w')\n    print('written')\nexcept OSError as e:\n    print('refused', e.errno)"),
    )
    .await;
    assert!(v["stdout"].as_str().unwrap().starts_with("refused"), "{v}");
    // A second session of the template reuses the layer.
    let b = create(&s, &shop, json!({"template": "hello"})).await;
    assert_eq!(b["layer"], layer.as_str());

    // Extra packages: a layer of the session's own, with the template's too.
    let c = create(
        &s,
        &shop,
        json!({"template": "hello", "packages": [{"ecosystem": "pip", "name": "tinyextra"}]}),
    )
    .await;
    let own = c["layer"].as_str().expect("its own layer").to_owned();
    assert_ne!(own, layer);
    let cid = c["id"].as_str().unwrap();
    let v = done(
        &s,
        &shop,
        cid,
        py("import tinyhello, tinyextra\nprint(tinyhello.hi(), tinyextra.WORD)"),
    )
    .await;
    assert_eq!(v["stdout"], "hi extra\n", "{v}");
    let own_dir = s.state.builds.layer_dir(&own);
    assert!(own_dir.is_dir());
    // Its end takes its own layer with it; the template's stays.
    s.expect(
        Method::POST,
        &format!("/v1/sessions/{cid}/terminate"),
        &shop,
        None,
        StatusCode::OK,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while own_dir.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!own_dir.exists(), "the session's own layer was removed");
    s.expect(
        Method::GET,
        &format!("/v1/layers/{own}"),
        &shop,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(s.state.builds.layer_dir(&layer).is_dir());

    // Bad package lists are refused at the field at fault, nothing made.
    let before = s.state.sessions.live_count();
    for (body, location, says) in [
        (
            json!({"template": "hello", "packages": [{"ecosystem": "npm", "name": "left-pad"}]}),
            "/packages/0/ecosystem",
            "need the node runtime",
        ),
        (
            json!({"template": "hello", "packages": [{"ecosystem": "pip", "name": "TinyHello"}]}),
            "/packages/0/name",
            "has `TinyHello` already",
        ),
        (
            json!({"template": "hello", "packages": [{"ecosystem": "pip", "name": "x; rm -rf /"}]}),
            "/packages/0/name",
            "",
        ),
        (
            json!({"template": "shell", "packages": [{"ecosystem": "pip", "name": "six"}]}),
            "/packages",
            "shell",
        ),
        (
            json!({"template": "hello", "packages": [{"ecosystem": "pip", "name": "tinyextra", "version": "==9.9"}]}),
            "/packages",
            "`tinyextra`",
        ),
    ] {
        let p = s
            .expect(
                Method::POST,
                "/v1/sessions",
                &shop,
                Some(body.clone()),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert_eq!(p["errors"][0]["location"], location, "{body}: {p}");
        let message = p["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {p}");
    }
    assert_eq!(s.state.sessions.live_count(), before);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_installed_into_a_running_session_keep_its_files() {
    let folder = public_dir();
    wheel(
        folder.path(),
        "tinyhello",
        "1.0.0",
        "def hi():\n    return 'hi'\n",
    );
    wheel(folder.path(), "tinyextra", "2.0.0", "WORD = 'extra'\n");
    wheel(folder.path(), "tinythird", "3.0.0", "N = 3\n");
    let dir = folder.path().to_owned();
    let s = server_with(move |c| c.layers.folder = Some(dir)).await;
    let shop = app(&s, "shop").await;
    let other = app(&s, "other").await;
    s.expect(
        Method::POST,
        "/v1/templates",
        &s.admin,
        Some(json!({"id": "hello", "runtime": "python",
            "packages": [{"ecosystem": "pip", "name": "tinyhello", "version": "==1.0.0"}]})),
        StatusCode::CREATED,
    )
    .await;
    let a = create(&s, &shop, json!({"template": "hello"})).await;
    let id = a["id"].as_str().unwrap().to_owned();
    let template_layer = a["layer"].as_str().unwrap().to_owned();
    // Files in the workspace, in a folder, and a stateful cell.
    let v = done(
        &s,
        &shop,
        &id,
        py("import os\nos.makedirs('d/e', exist_ok=True)\nopen('d/e/f.txt', 'w').write('kept')\nopen('/tmp/t', 'w').write('t')"),
    )
    .await;
    assert_eq!(v["status"], "success", "{v}");
    let v = done(
        &s,
        &shop,
        &id,
        json!({"language": "python", "mode": "repl", "code": "x = 41"}),
    )
    .await;
    assert_eq!(v["status"], "success", "{v}");
    let path = format!("/v1/sessions/{id}/packages");

    let v = s
        .expect(
            Method::POST,
            &path,
            &shop,
            Some(json!({"packages": [{"ecosystem": "pip", "name": "tinyextra"}]})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["installed"][0]["name"], "tinyextra", "{v}");
    assert_eq!(v["session"]["id"], id.as_str(), "{v}");
    assert_eq!(v["session"]["status"], "running", "{v}");
    let own = v["session"]["layer"].as_str().unwrap().to_owned();
    assert_ne!(own, template_layer, "{v}");
    assert_eq!(v["files_carried"], 1, "{v}");
    let v = done(
        &s,
        &shop,
        &id,
        py("import os, tinyhello, tinyextra\nprint(tinyhello.hi(), tinyextra.WORD, open('d/e/f.txt').read(), os.path.exists('/tmp/t'))"),
    )
    .await;
    assert_eq!(v["stdout"], "hi extra kept False\n", "{v}");
    // A stateful interpreter starts anew in the new box.
    let v = done(
        &s,
        &shop,
        &id,
        json!({"language": "python", "mode": "repl", "code": "'x' in globals()"}),
    )
    .await;
    assert_eq!(v["return_value"], false, "{v}");

    // A second install keeps the first; the session's own earlier layer is
    // given back (deleted: no other session holds it).
    let v = s
        .expect(
            Method::POST,
            &path,
            &shop,
            Some(json!({"packages": [{"ecosystem": "pip", "name": "tinythird"}]})),
            StatusCode::OK,
        )
        .await;
    let names: Vec<&str> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["tinyextra", "tinythird"], "{v}");
    let v2 = done(
        &s,
        &shop,
        &id,
        py("import tinyhello, tinyextra, tinythird\nprint(tinythird.N, open('d/e/f.txt').read())"),
    )
    .await;
    assert_eq!(v2["stdout"], "3 kept\n", "{v2}");
    let own_dir = s.state.builds.layer_dir(&own);
    let deadline = Instant::now() + Duration::from_secs(10);
    while own_dir.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!own_dir.exists(), "the layer it left was removed");

    // Refusals, located; the session unchanged.
    let layer_now = v["session"]["layer"].clone();
    for (body, location, says) in [
        (json!({"packages": []}), "/packages", "at least one"),
        (
            json!({"packages": [{"ecosystem": "pip", "name": "tinyextra"}]}),
            "/packages/0/name",
            "installed already",
        ),
        (
            json!({"packages": [{"ecosystem": "pip", "name": "tinyhello"}]}),
            "/packages/0/name",
            "already",
        ),
        (
            json!({"packages": [{"ecosystem": "npm", "name": "left-pad"}]}),
            "/packages/0/ecosystem",
            "",
        ),
    ] {
        let p = s
            .expect(
                Method::POST,
                &path,
                &shop,
                Some(body.clone()),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert_eq!(p["errors"][0]["location"], location, "{body}: {p}");
        assert!(
            p["errors"][0]["message"].as_str().unwrap().contains(says),
            "{body}: {p}"
        );
    }
    // A package the folder lacks: the build fails naming it.
    let p = s
        .expect(
            Method::POST,
            &path,
            &shop,
            Some(json!({"packages": [{"ecosystem": "pip", "name": "nosuchthing"}]})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(p.to_string().contains("nosuchthing"), "{p}");
    // Another app's session: not found; unknown fields: refused.
    s.expect(
        Method::POST,
        &path,
        &other,
        Some(json!({"packages": [{"ecosystem": "pip", "name": "tinythird"}]})),
        StatusCode::NOT_FOUND,
    )
    .await;
    let after = s
        .expect(
            Method::GET,
            &format!("/v1/sessions/{id}"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(after["layer"], layer_now, "{after}");
    let v = done(&s, &shop, &id, py("print(open('d/e/f.txt').read())")).await;
    assert_eq!(v["stdout"], "kept\n", "{v}");
    // An ended session: 409.
    s.expect(
        Method::POST,
        &format!("/v1/sessions/{id}/terminate"),
        &shop,
        None,
        StatusCode::OK,
    )
    .await;
    s.expect(
        Method::POST,
        &path,
        &shop,
        Some(json!({"packages": [{"ecosystem": "pip", "name": "tinythird"}]})),
        StatusCode::CONFLICT,
    )
    .await;
    s.stop().await.unwrap();
}
