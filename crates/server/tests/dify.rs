//! The Dify sandbox API as Dify calls it: the requests its Python 3,
//! JavaScript and Jinja2 transformers build (the user's code, then a runner
//! that decodes the base64 inputs, calls `main` and prints the JSON output
//! between `<<RESULT>>` markers), answers parsed the way Dify parses them
//! (`code` 0, then `data.error`, then the text between the markers), errors
//! surfaced, refusals with upstream's statuses and `code`s, the dependency
//! calls, the `dify` template built from a folder of wheels (always) and
//! from the configured index (skipped, loudly, when unreachable), and
//! hostile code contained with the server still answering.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
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

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(v).unwrap())
}

/// What Dify's Python 3 transformer sends for `code` and `inputs`.
fn python3_request(code: &str, inputs: &Value) -> Value {
    let runner = format!(
        "{code}\n\nimport json\nfrom base64 import b64decode\n\ninputs_obj = json.loads(b64decode('{}').decode('utf-8'))\noutput_obj = main(**inputs_obj)\noutput_json = json.dumps(output_obj, indent=4)\nprint(f'<<RESULT>>{{output_json}}<<RESULT>>')\n",
        b64(inputs)
    );
    json!({"language": "python3", "code": runner, "preload": "", "enable_network": true})
}

/// What Dify's JavaScript transformer sends.
fn nodejs_request(code: &str, inputs: &Value) -> Value {
    let runner = format!(
        "{code}\n\nvar inputs_obj = JSON.parse(Buffer.from('{}', 'base64').toString('utf-8'))\nvar output_obj = main(inputs_obj)\nvar output_json = JSON.stringify(output_obj)\nconsole.log(`<<RESULT>>${{output_json}}<<RESULT>>`)\n",
        b64(inputs)
    );
    json!({"language": "nodejs", "code": runner, "preload": "", "enable_network": true})
}

/// What Dify's Jinja2 transformer sends: a Python program rendering the
/// template, with a preload that warms jinja2 up.
fn jinja2_request(template: &str, inputs: &Value) -> Value {
    let runner = format!(
        "def main(**inputs):\n    import jinja2\n    return jinja2.Template('''{template}''').render(**inputs)\n\nimport json\nfrom base64 import b64decode\ninputs_obj = json.loads(b64decode('{}').decode('utf-8'))\noutput = main(**inputs_obj)\nprint(f'''<<RESULT>>{{output}}<<RESULT>>''')\n",
        b64(inputs)
    );
    let preload = "import jinja2\n\ndef _warm():\n    jinja2.Template('{{s}}').render(s='a')\n\nif __name__ == '__main__':\n    _warm()\n";
    json!({"language": "python3", "code": runner, "preload": preload, "enable_network": true})
}

/// Call `/v1/sandbox/run` as Dify does; the HTTP status and the envelope.
async fn sandbox(s: &Server, key: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut r = s.client.post(s.url("/v1/sandbox/run")).json(body);
    if let Some(k) = key {
        r = r.header("X-Api-Key", k);
    }
    let r = r.send().await.unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// Dify's reading of an answer: HTTP 200, `code` 0, no `data.error`, then
/// the text between the markers. `Err` is what Dify would raise.
fn dify_reads(status: StatusCode, v: &Value) -> Result<String, String> {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return Err("Code execution service is unavailable".into());
    }
    if status != StatusCode::OK {
        return Err(format!("status {status}"));
    }
    if v["code"] != 0 {
        return Err(v["message"].as_str().unwrap_or_default().to_owned());
    }
    if let Some(e) = v["data"]["error"].as_str().filter(|e| !e.is_empty()) {
        return Err(e.to_owned());
    }
    let stdout = v["data"]["stdout"].as_str().unwrap();
    let start = stdout.find("<<RESULT>>").ok_or("Failed to parse result")? + "<<RESULT>>".len();
    let end = stdout.rfind("<<RESULT>>").ok_or("Failed to parse result")?;
    Ok(stdout[start..end].to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn python3_and_javascript_code_nodes_work_as_dify_reads_them() {
    let s = server().await;
    let key = app(&s, "dify").await;
    let inputs = json!({"arg1": "héllo ", "arg2": "wörld", "n": [1, 2, 3]});
    let code = "def main(arg1: str, arg2: str, n: list) -> dict:\n    return {'result': arg1 + arg2, 'total': sum(n), 'nested': {'ok': True}}\n";
    let (st, v) = sandbox(&s, Some(&key), &python3_request(code, &inputs)).await;
    let out: Value = serde_json::from_str(&dify_reads(st, &v).unwrap()).unwrap();
    assert_eq!(
        out,
        json!({"result": "héllo wörld", "total": 6, "nested": {"ok": true}})
    );
    assert_eq!(v["message"], "success");
    assert_eq!(v["data"]["exit_code"], 0);
    assert_eq!(v["data"]["stderr"], "");

    let js = "function main({arg1, arg2, n}) {\n  return {result: arg1 + arg2, total: n.reduce((a, b) => a + b, 0)}\n}\n";
    let (st, v) = sandbox(&s, Some(&key), &nodejs_request(js, &inputs)).await;
    let out: Value = serde_json::from_str(&dify_reads(st, &v).unwrap()).unwrap();
    assert_eq!(out, json!({"result": "héllo wörld", "total": 6}));

    // Logging on stderr does not fail a run that succeeded.
    let noisy = "import sys\ndef main() -> dict:\n    print('warn', file=sys.stderr)\n    return {'a': 1}\n";
    let (st, v) = sandbox(&s, Some(&key), &python3_request(noisy, &json!({}))).await;
    assert_eq!(dify_reads(st, &v).unwrap().trim(), "{\n    \"a\": 1\n}");
    assert_eq!(v["data"]["stderr"], "warn\n");

    // Every run is an ordinary execution of the key's app.
    let list = s
        .expect(
            Method::GET,
            "/v1/executions?app=dify",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{list}");
    assert!(items.iter().all(|e| e["kind"] == "run"));
    assert_eq!(items[2]["language"], "python");
    assert_eq!(items[1]["language"], "javascript");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_surface_as_errors_and_refusals_keep_upstream_statuses() {
    let s = server_with(|c| c.run.default_timeout_ms = 1500).await;
    let key = app(&s, "dify-errors").await;
    // An exception: HTTP 200, code 0, a readable error with the traceback.
    let (st, v) = sandbox(
        &s,
        Some(&key),
        &python3_request("def main() -> dict:\n    return {'x': 1 / 0}\n", &json!({})),
    )
    .await;
    let e = dify_reads(st, &v).unwrap_err();
    assert!(e.contains("ZeroDivisionError"), "{e}");
    assert!(e.starts_with("process exited with code 1"), "{e}");
    assert_eq!(v["data"]["exit_code"], 1);
    // A syntax error, and a JavaScript exception.
    let (st, v) = sandbox(&s, Some(&key), &python3_request("def main(:\n", &json!({}))).await;
    assert!(dify_reads(st, &v).unwrap_err().contains("SyntaxError"));
    let (st, v) = sandbox(
        &s,
        Some(&key),
        &nodejs_request("function main() { throw new Error('boom') }", &json!({})),
    )
    .await;
    assert!(dify_reads(st, &v).unwrap_err().contains("boom"));
    // A timeout.
    let (st, v) = sandbox(
        &s,
        Some(&key),
        &python3_request("def main() -> dict:\n    while True: pass\n", &json!({})),
    )
    .await;
    let e = dify_reads(st, &v).unwrap_err();
    assert!(e.contains("ran out of time"), "{e}");
    // A result the runner never printed: Dify's parser fails, as upstream.
    let (st, v) = sandbox(
        &s,
        Some(&key),
        &json!({"language": "python3", "code": "print('no markers')", "preload": "", "enable_network": true}),
    )
    .await;
    assert_eq!(dify_reads(st, &v).unwrap_err(), "Failed to parse result");

    // Refusals.
    let body = python3_request("def main():\n    return {}\n", &json!({}));
    let (st, v) = sandbox(&s, None, &body).await;
    assert_eq!((st, v["code"].as_i64()), (StatusCode::UNAUTHORIZED, Some(-401)));
    let (st, _) = sandbox(&s, Some("dify-sandbox"), &body).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "upstream's default key is not a Warden key"
    );
    let (st, _) = sandbox(&s, Some("wk_0000000000000000000000000000000000000000"), &body).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let dev = s.key("developer", "dev", None).await;
    let (st, v) = sandbox(&s, Some(&dev), &body).await;
    assert_eq!((st, v["code"].as_i64()), (StatusCode::FORBIDDEN, Some(-403)));
    let (st, v) = sandbox(
        &s,
        Some(&key),
        &json!({"language": "ruby", "code": "puts 1", "preload": "", "enable_network": true}),
    )
    .await;
    assert_eq!((st, v["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-400)));
    assert_eq!(v["message"], "unsupported language");
    let (st, v) = sandbox(&s, Some(&key), &json!({"language": "python3"})).await;
    assert_eq!((st, v["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-400)));
    assert!(v["message"].as_str().unwrap().contains("code"), "{v}");
    let r = s
        .client
        .post(s.url("/v1/sandbox/run"))
        .header("X-Api-Key", &key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Health, open as upstream's.
    let h: Value = s
        .client
        .get(s.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h, json!("ok"));
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_the_nodes_budget_dify_gets_503_and_the_rest_run() {
    let s = server_with(|c| {
        c.max_concurrent = 1;
        c.max_queue = 1;
    })
    .await;
    let key = app(&s, "dify-busy").await;
    let slow = python3_request(
        "import time\ndef main() -> dict:\n    time.sleep(1.5)\n    return {'ok': 1}\n",
        &json!({}),
    );
    let calls = (0..4).map(|_| sandbox(&s, Some(&key), &slow));
    let answers = futures::future::join_all(calls).await;
    let ok = answers.iter().filter(|(st, _)| *st == StatusCode::OK).count();
    let busy: Vec<&Value> = answers
        .iter()
        .filter(|(st, _)| *st == StatusCode::SERVICE_UNAVAILABLE)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(ok + busy.len(), 4, "{answers:?}");
    assert_eq!(ok, 2, "the budget is max_concurrent + max_queue: {answers:?}");
    assert!(busy.iter().all(|v| v["code"] == -503), "{busy:?}");
    for (st, v) in answers.iter().filter(|(st, _)| *st == StatusCode::OK) {
        assert_eq!(dify_reads(*st, v).unwrap().trim(), "{\n    \"ok\": 1\n}");
    }
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_code_is_contained_and_the_server_answers_on() {
    let s = server_with(|c| c.run.default_timeout_ms = 3000).await;
    let key = app(&s, "dify-hostile").await;
    let attempt = |body: &str| {
        python3_request(
            &format!(
                "def main() -> dict:\n{}\n",
                body.lines().map(|l| format!("    {l}\n")).collect::<String>()
            ),
            &json!({}),
        )
    };
    // Host files are not there: the box sees its own root.
    let (st, v) = sandbox(
        &s,
        Some(&key),
        &attempt("import os\nreturn {'shadow': os.path.exists('/etc/shadow') and os.access('/etc/shadow', os.R_OK), 'work': os.path.exists('/work'), 'root': os.listdir('/root') if os.path.exists('/root') else []}"),
    )
    .await;
    let out: Value = serde_json::from_str(&dify_reads(st, &v).unwrap()).unwrap();
    assert_eq!(out, json!({"shadow": false, "work": false, "root": []}));
    // A subprocess runs inside the same box, nowhere else.
    let (st, v) = sandbox(
        &s,
        Some(&key),
        &attempt("import subprocess\nr = subprocess.run(['/bin/sh', '-c', 'ls /work /root/.ssh 2>&1; id -u'], capture_output=True, text=True)\nreturn {'out': r.stdout}"),
    )
    .await;
    let out: Value = serde_json::from_str(&dify_reads(st, &v).unwrap()).unwrap();
    let text = out["out"].as_str().unwrap();
    assert!(text.contains("No such file"), "{text}");
    assert!(
        !text.lines().last().unwrap().starts_with('0'),
        "root inside: {text}"
    );
    // A fork bomb ends as an error, not a dead server.
    let (st, v) = sandbox(&s, Some(&key), &attempt("import os\nwhile True:\n    os.fork()")).await;
    assert!(dify_reads(st, &v).is_err(), "{v}");
    // No network was granted: Dify asks for it, the run goes on without.
    let (st, v) = sandbox(
        &s,
        Some(&key),
        &attempt("import socket\ntry:\n    socket.create_connection(('1.1.1.1', 443), timeout=2)\n    return {'net': 'reached'}\nexcept OSError:\n    return {'net': 'blocked'}"),
    )
    .await;
    let out: Value = serde_json::from_str(&dify_reads(st, &v).unwrap()).unwrap();
    assert_eq!(out["net"], "blocked");
    // Memory beyond the limit.
    let (st, v) = sandbox(&s, Some(&key), &attempt("x = bytearray(2 << 30)\nreturn {}")).await;
    assert!(dify_reads(st, &v).is_err(), "{v}");
    // The server still answers, and the next run is clean.
    let (st, v) = sandbox(
        &s,
        Some(&key),
        &python3_request("def main() -> dict:\n    return {'fine': True}\n", &json!({})),
    )
    .await;
    assert_eq!(dify_reads(st, &v).unwrap().trim(), "{\n    \"fine\": true\n}");
    s.stop().await.unwrap();
}

/// Ask for the Dify template's build and wait for its layer; the layer.
async fn build_dify(s: &Server, key: &str) -> Value {
    let r = s
        .client
        .post(s.url("/v1/sandbox/dependencies/update"))
        .header("X-Api-Key", key)
        .json(&json!({"language": "python3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 0, "{v}");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let t = s
            .expect(Method::GET, "/v1/templates/dify", &s.admin, None, StatusCode::OK)
            .await;
        if let Some(layer) = t["layer"].as_str() {
            return s
                .expect(
                    Method::GET,
                    &format!("/v1/layers/{layer}"),
                    &s.admin,
                    None,
                    StatusCode::OK,
                )
                .await;
        }
        // A failed build leaves the template without a layer: say why.
        let r = s
            .client
            .post(s.url("/v1/templates/dify/build"))
            .bearer_auth(&s.admin)
            .send()
            .await
            .unwrap();
        let b: Value = r.json().await.unwrap();
        assert_ne!(b["status"], "failed", "{b}");
        assert!(Instant::now() < deadline, "the build did not end: {b}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn dependencies(s: &Server, key: &str, path: &str) -> Value {
    let r = s
        .client
        .get(s.url(&format!("{path}?language=python3")))
        .header("X-Api-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dify_template_builds_from_a_folder_of_wheels() {
    let folder = public_dir();
    for (name, module) in [
        ("requests", "def get(url):\n    return 'requests-from-folder'\n"),
        ("httpx", "def get(url):\n    return 'httpx-from-folder'\n"),
        (
            "jinja2",
            "class Template:\n    def __init__(self, s):\n        self.s = s\n    def render(self, **kw):\n        return self.s.replace('{{ name }}', kw.get('name', ''))\n",
        ),
    ] {
        wheel(folder.path(), name, "9.9.9", module);
    }
    let dir = folder.path().to_owned();
    let s = server_with(move |c| c.layers.folder = Some(dir)).await;
    let key = app(&s, "dify-offline").await;
    // Before the build: the packages the template asks for.
    let v = dependencies(&s, &key, "/v1/sandbox/dependencies").await;
    let names: Vec<&str> = v["data"]["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["requests", "httpx", "jinja2"], "{v}");
    // Other languages are refused as upstream refuses them.
    let r = s
        .client
        .get(s.url("/v1/sandbox/dependencies?language=nodejs"))
        .header("X-Api-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let layer = build_dify(&s, &key).await;
    assert_eq!(layer["status"], "ready", "{layer}");
    assert!(layer["index"].as_str().unwrap().starts_with("folder:"), "{layer}");
    // After it: the locked versions, on both listing paths.
    for path in ["/v1/sandbox/dependencies", "/v1/sandbox/dependencies/refresh"] {
        let v = dependencies(&s, &key, path).await;
        let deps = v["data"]["dependencies"].as_array().unwrap();
        assert_eq!(deps.len(), 3, "{v}");
        assert!(deps.iter().all(|d| d["version"] == "9.9.9"), "{v}");
    }
    // Python runs get the layer.
    let (st, v) = sandbox(
        &s,
        Some(&key),
        &python3_request(
            "import requests, httpx\ndef main() -> dict:\n    return {'r': requests.get('x'), 'h': httpx.get('x')}\n",
            &json!({}),
        ),
    )
    .await;
    let out: Value = serde_json::from_str(&dify_reads(st, &v).unwrap()).unwrap();
    assert_eq!(
        out,
        json!({"r": "requests-from-folder", "h": "httpx-from-folder"})
    );
    let (st, v) = sandbox(
        &s,
        Some(&key),
        &jinja2_request("Hi {{ name }}", &json!({"name": "Ada"})),
    )
    .await;
    assert_eq!(dify_reads(st, &v).unwrap(), "Hi Ada");
    s.stop().await.unwrap();
}

/// The addresses `host` resolves to when they are not public (a mirror on
/// the local network): what this machine's operator would allow.
fn operator_allows(host: &str) -> Vec<String> {
    use std::net::{IpAddr, ToSocketAddrs};
    let Ok(addrs) = (host, 443).to_socket_addrs() else {
        return Vec::new();
    };
    addrs
        .map(|a| a.ip())
        .filter(|ip| match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                v4.is_private() || v4.is_loopback() || (o[0] == 203 && o[1] == 0 && o[2] == 113)
            }
            IpAddr::V6(_) => false,
        })
        .map(|ip| format!("{ip}/32"))
        .collect()
}

fn reachable(host: &str) -> bool {
    use std::net::ToSocketAddrs;
    let ok = (host, 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok());
    if !ok {
        eprintln!(
            "\n*** SKIPPED: {host}:443 is unreachable; the Dify template's build from the index is not tested ***\n"
        );
    }
    ok
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dify_template_builds_from_the_index_and_jinja2_nodes_render() {
    if !reachable("pypi.org") || !reachable("files.pythonhosted.org") {
        return;
    }
    let allow = [
        operator_allows("pypi.org"),
        operator_allows("files.pythonhosted.org"),
    ]
    .concat();
    let s = server_with(move |c| c.layers.allow_cidrs = allow).await;
    let key = app(&s, "dify-online").await;
    let layer = build_dify(&s, &key).await;
    assert_eq!(layer["status"], "ready", "{layer}");
    let v = dependencies(&s, &key, "/v1/sandbox/dependencies").await;
    let names: Vec<String> = v["data"]["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_ascii_lowercase())
        .collect();
    for want in ["requests", "httpx", "jinja2", "markupsafe"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {v}");
    }
    let (st, v) = sandbox(
        &s,
        Some(&key),
        &jinja2_request(
            "{% for item in items %}{{ loop.index }}. {{ item|upper }}\n{% endfor %}{{ who }}",
            &json!({"items": ["a", "b"], "who": "<done>"}),
        ),
    )
    .await;
    assert_eq!(dify_reads(st, &v).unwrap(), "1. A\n2. B\n<done>");
    let (st, v) = sandbox(
        &s,
        Some(&key),
        &python3_request(
            "import requests, httpx\ndef main() -> dict:\n    return {'r': requests.__name__, 'h': httpx.__name__}\n",
            &json!({}),
        ),
    )
    .await;
    let out: Value = serde_json::from_str(&dify_reads(st, &v).unwrap()).unwrap();
    assert_eq!(out, json!({"r": "requests", "h": "httpx"}));
    s.stop().await.unwrap();
}
