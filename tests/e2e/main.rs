//! End to end through the real `warden` binary on a real socket: the
//! published flow (upload, submit, approve, app, install, execute, read
//! back, stream), on SQLite and on PostgreSQL; a server killed with SIGKILL
//! mid-execution records it `interrupted` when it comes back, and runs the
//! async calls it had accepted but not started (on PostgreSQL, with a second
//! node sharing the queue); SIGTERM drains; `warden admin` manages keys.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use warden_package::build::ZipBuilder;

mod cluster;
mod compat;
mod plugin_kit;
mod session_cli;
mod sessions;
mod templates;
mod tiers;

const CODE: &str = "vendor.greeting.say_hello";

/// A client; TLS needs rustls's provider installed once per process.
fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new()
}

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

/// The sample plugin of `examples/plugins/hello-python`, packed.
fn hello_package() -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins/hello-python");
    let mut b = ZipBuilder::new();
    for name in ["manifest.json", "main.py"] {
        b = b.file(name, &std::fs::read(dir.join(name)).unwrap());
    }
    b.finish()
}

fn slow_package() -> Vec<u8> {
    let manifest = json!({
        "code": "vendor.slow.sleep", "name": "Sleeper", "version": "1.0.0",
        "type": "sandbox", "runtime": "python3", "entrypoint": "main.py",
        "description": "Sleeps.", "author": "Tests",
        "input_schema": {"type": "object"}, "output_schema": {"type": "object"},
        "limits": {"timeout_ms": 60000}
    });
    ZipBuilder::new()
        .file("manifest.json", manifest.to_string().as_bytes())
        .file(
            "main.py",
            b"import time\ndef handler(e):\n    time.sleep(e.get('s', 1))\n    return {}\n",
        )
        .finish()
}

struct Serve {
    child: Child,
    base: String,
    admin: Option<String>,
    /// `WARDEN_STATE_DIR` when the test gave one.
    state_dir: Option<String>,
}

impl Serve {
    /// Start `warden serve` on a free port with `data` and extra env.
    fn start(data: &Path, env: &[(&str, &str)]) -> Serve {
        Serve::start_on(data, "127.0.0.1:0", env)
    }

    /// Start `warden serve` listening on `listen` with `data` and extra env.
    fn start_on(data: &Path, listen: &str, env: &[(&str, &str)]) -> Serve {
        assert!(
            rustix::process::geteuid().is_root(),
            "e2e tests need root (the jail): run scripts/test"
        );
        let mut cmd = warden();
        cmd.args(["serve", "--listen", listen, "--data-dir"])
            .arg(data)
            .env_remove("WARDEN_DATABASE_URL")
            .env("WARDEN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // The banner: the data line, the first admin key (first start only),
        // then "listening on", always last.
        let (mut base, mut admin) = (None, None);
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(k) = line.trim().strip_prefix("wk_") {
                admin = Some(format!("wk_{k}"));
            }
            if let Some(rest) = line.strip_prefix("warden: listening on ") {
                base = rest.split_whitespace().next().map(str::to_owned);
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Serve {
            child,
            base: base.expect("the server printed where it listens"),
            admin,
            state_dir: env
                .iter()
                .find(|(k, _)| *k == "WARDEN_STATE_DIR")
                .map(|(_, v)| (*v).to_owned()),
        }
    }

    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    fn signal(&self, sig: rustix::process::Signal) {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).unwrap(),
            sig,
        )
        .unwrap();
    }

    fn wait(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let running = matches!(self.child.try_wait(), Ok(None));
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A server killed here leaves its warm boxes' workspaces mounted; the
        // documented recovery removes them, so that no mount outlives the
        // test. A server the test stopped itself is left as it left things.
        if running && let Some(dir) = &self.state_dir {
            let _ = warden()
                .args(["pool", "clean"])
                .env("WARDEN_STATE_DIR", dir)
                .stdout(Stdio::null())
                .status();
        }
    }
}

async fn req(
    c: &Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = c.request(method, url).bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let st = r.status();
    let text = r.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The whole published flow through the binary.
async fn flow(s: &Serve) {
    use reqwest::Method;
    let c = client();
    let admin = s.admin.clone().expect("an admin key on first start");
    let (st, key) = req(
        &c,
        Method::POST,
        s.url("/v1/keys"),
        &admin,
        Some(json!({"name": "alice", "role": "developer"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    let dev = key["secret"].as_str().unwrap().to_owned();
    let r = c
        .post(s.url("/v1/plugins"))
        .bearer_auth(&dev)
        .header("content-type", "application/zip")
        .body(hello_package())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let base = s.url(&format!("/v1/plugins/{CODE}/versions/1.0.0"));
    let (st, v) = req(&c, Method::POST, format!("{base}/submit"), &dev, None).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("pending")),
        "{v}"
    );
    let (st, v) = req(&c, Method::POST, format!("{base}/approve"), &admin, None).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("active")),
        "{v}"
    );
    let (st, _) = req(
        &c,
        Method::POST,
        s.url("/v1/apps"),
        &admin,
        Some(json!({"id": "shop", "name": "The shop"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = req(
        &c,
        Method::POST,
        s.url("/v1/apps/shop/installations"),
        &admin,
        Some(json!({"plugin": CODE})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, k) = req(
        &c,
        Method::POST,
        s.url("/v1/keys"),
        &admin,
        Some(json!({"name": "shop", "role": "app", "app": "shop"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let app = k["secret"].as_str().unwrap().to_owned();
    let exec = s.url(&format!("/v1/apps/shop/plugins/{CODE}/execute"));
    let (st, v) = req(&c, Method::POST, exec.clone(), &app, Some(json!({"name": "Ada"}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "success");
    assert_eq!(v["return_value"]["message"], "Hello, Ada!");
    let id = v["id"].as_str().unwrap();
    let (st, back) = req(
        &c,
        Method::GET,
        s.url(&format!("/v1/executions/{id}")),
        &app,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(back["return_value"], v["return_value"]);
    // Async, then its events.
    let (st, v) = req(
        &c,
        Method::POST,
        format!("{exec}?mode=async"),
        &app,
        Some(json!({"name": "Bob"})),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let id = v["id"].as_str().unwrap();
    let text = c
        .get(s.url(&format!("/v1/executions/{id}/events")))
        .bearer_auth(&app)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("event: result"), "{text}");
    assert!(text.contains("Hello, Bob!"), "{text}");
    let (_, list) = req(
        &c,
        Method::GET,
        s.url("/v1/executions?status=success"),
        &app,
        None,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_flow_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[]);
    flow(&s).await;
    // SIGTERM: a clean stop.
    s.signal(rustix::process::Signal::TERM);
    assert!(s.wait().success());
    assert!(data.path().join("warden.db").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_flow_on_postgres() {
    let Ok(base) = std::env::var("WARDEN_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("WARDEN_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "WARDEN_TEST_POSTGRES_URL is not set"
        );
        eprintln!("skipped: WARDEN_TEST_POSTGRES_URL is not set");
        return;
    };
    sqlx_create(&base, "warden_e2e").await;
    let url = format!("{}/warden_e2e", &base[..base.rfind('/').unwrap()]);
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[("WARDEN_DATABASE_URL", &url)]);
    flow(&s).await;
    s.signal(rustix::process::Signal::TERM);
    assert!(s.wait().success());
    assert!(
        !data.path().join("warden.db").exists(),
        "the records went to PostgreSQL"
    );
}

async fn sqlx_create(base: &str, name: &str) {
    let out = Command::new("psql")
        .arg(base)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE); CREATE DATABASE {name};"
        ))
        .output()
        .unwrap();
    if !out.status.success() {
        // psql runs each -c statement in one transaction block; retry one by one.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            let o = Command::new("psql")
                .arg(base)
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", &sql])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_cut_by_sigkill_is_recorded_interrupted_after_restart() {
    use reqwest::Method;
    let data = tempfile::tempdir().unwrap();
    let env = [("WARDEN_NODE_ID", "e2e-node")];
    let s = Serve::start(data.path(), &env);
    let c = client();
    let admin = s.admin.clone().unwrap();
    let r = c
        .post(s.url("/v1/plugins"))
        .bearer_auth(&admin)
        .header("content-type", "application/zip")
        .body(slow_package())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let base = s.url("/v1/plugins/vendor.slow.sleep/versions/1.0.0");
    req(&c, Method::POST, format!("{base}/submit"), &admin, None).await;
    req(&c, Method::POST, format!("{base}/approve"), &admin, None).await;
    req(
        &c,
        Method::POST,
        s.url("/v1/apps"),
        &admin,
        Some(json!({"id": "shop"})),
    )
    .await;
    req(
        &c,
        Method::POST,
        s.url("/v1/apps/shop/installations"),
        &admin,
        Some(json!({"plugin": "vendor.slow.sleep"})),
    )
    .await;
    let (st, v) = req(
        &c,
        Method::POST,
        s.url("/v1/apps/shop/plugins/vendor.slow.sleep/execute?mode=async"),
        &admin,
        Some(json!({"s": 30})),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    // Wait until it runs, then kill the server outright.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, e) = req(
            &c,
            Method::GET,
            s.url(&format!("/v1/executions/{id}")),
            &admin,
            None,
        )
        .await;
        if e["status"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "never started: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.signal(rustix::process::Signal::KILL);
    let st = s.wait();
    assert!(!st.success());
    // Back up on the same data and node: the execution is not lost.
    let s = Serve::start(data.path(), &env);
    assert!(s.admin.is_none(), "the admin key is created once");
    let (st, e) = req(
        &c,
        Method::GET,
        s.url(&format!("/v1/executions/{id}")),
        &admin,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{e}");
    assert_eq!(e["status"], "interrupted", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped before the execution finished"),
        "{e}"
    );
    s.signal(rustix::process::Signal::TERM);
    assert!(s.wait().success());
}

/// Publish the slow plugin as `admin` and install it in app `shop`.
async fn publish_slow(s: &Serve, c: &Client, admin: &str) {
    use reqwest::Method;
    let r = c
        .post(s.url("/v1/plugins"))
        .bearer_auth(admin)
        .header("content-type", "application/zip")
        .body(slow_package())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let base = s.url("/v1/plugins/vendor.slow.sleep/versions/1.0.0");
    for step in ["submit", "approve"] {
        let (st, v) = req(c, Method::POST, format!("{base}/{step}"), admin, None).await;
        assert_eq!(st, StatusCode::OK, "{step}: {v}");
    }
    let (st, v) = req(
        c,
        Method::POST,
        s.url("/v1/apps"),
        admin,
        Some(json!({"id": "shop"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = req(
        c,
        Method::POST,
        s.url("/v1/apps/shop/installations"),
        admin,
        Some(json!({"plugin": "vendor.slow.sleep"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

/// `GET /v1/executions/{id}` until `done` holds (or 60 s pass).
async fn wait_for(s: &Serve, c: &Client, key: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, e) = req(
            c,
            reqwest::Method::GET,
            s.url(&format!("/v1/executions/{id}")),
            key,
            None,
        )
        .await;
        if done(&e) {
            return e;
        }
        assert!(Instant::now() < deadline, "execution {id} stayed {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many executions of the slow plugin this server ran to success.
async fn successes(s: &Serve, c: &Client) -> u64 {
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("warden_executions_total{")
                && l.contains("plugin=\"vendor.slow.sleep\"")
                && l.contains("status=\"success\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// One node runs an async call and has six more accepted, not started (one
/// running slot), when it is killed with SIGKILL. After the restart (with
/// `extra_nodes` more servers on the same database), the started call is
/// `interrupted` and each of the six runs, exactly once, after the crash.
async fn accepted_async_calls_survive_sigkill(data: &Path, db: &[(&str, &str)], extra_nodes: usize) {
    use reqwest::Method;
    let mut env = vec![("WARDEN_NODE_ID", "e2e-queue"), ("WARDEN_MAX_CONCURRENT", "1")];
    env.extend_from_slice(db);
    let s = Serve::start(data, &env);
    let c = client();
    let admin = s.admin.clone().unwrap();
    publish_slow(&s, &c, &admin).await;
    let exec = s.url("/v1/apps/shop/plugins/vendor.slow.sleep/execute?mode=async");
    let (st, v) = req(&c, Method::POST, exec.clone(), &admin, Some(json!({"s": 30}))).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let started = v["id"].as_str().unwrap().to_owned();
    wait_for(&s, &c, &admin, &started, |e| e["status"] == "running").await;
    let mut queued = Vec::new();
    for i in 0..6 {
        let (st, v) = req(
            &c,
            Method::POST,
            exec.clone(),
            &admin,
            Some(json!({"s": 0.2, "i": i})),
        )
        .await;
        assert_eq!(
            (st, v["status"].as_str()),
            (StatusCode::ACCEPTED, Some("queued")),
            "{v}"
        );
        queued.push(v["id"].as_str().unwrap().to_owned());
    }
    s.signal(rustix::process::Signal::KILL);
    assert!(!s.wait().success());
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;

    let mut nodes = vec![Serve::start(data, &env)];
    for n in 0..extra_nodes {
        let name = format!("e2e-queue-{n}");
        let mut env = vec![("WARDEN_NODE_ID", name.as_str()), ("WARDEN_MAX_CONCURRENT", "1")];
        env.extend_from_slice(db);
        nodes.push(Serve::start(data, &env));
    }
    let s = &nodes[0];
    let e = wait_for(s, &c, &admin, &started, |e| e["status"] != "running").await;
    assert_eq!(
        e["status"], "interrupted",
        "a started call stays interrupted: {e}"
    );
    for id in &queued {
        let e = wait_for(s, &c, &admin, id, |e| {
            !matches!(e["status"].as_str(), Some("queued" | "running"))
        })
        .await;
        assert_eq!(e["status"], "success", "{e}");
        assert!(
            e["started_at"].as_i64().unwrap() > killed_at,
            "it started after the crash, not before: {e}"
        );
    }
    let mut ran = 0;
    for n in &nodes {
        ran += successes(n, &c).await;
    }
    assert_eq!(ran, 6, "each accepted call ran exactly once across the nodes");
    for n in nodes {
        n.signal(rustix::process::Signal::TERM);
        assert!(n.wait().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_async_calls_survive_sigkill_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    accepted_async_calls_survive_sigkill(data.path(), &[], 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_async_calls_survive_sigkill_on_postgres_with_two_nodes() {
    let Ok(base) = std::env::var("WARDEN_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("WARDEN_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "WARDEN_TEST_POSTGRES_URL is not set"
        );
        eprintln!("skipped: WARDEN_TEST_POSTGRES_URL is not set");
        return;
    };
    sqlx_create(&base, "warden_e2e_queue").await;
    let url = format!("{}/warden_e2e_queue", &base[..base.rfind('/').unwrap()]);
    let data = tempfile::tempdir().unwrap();
    accepted_async_calls_survive_sigkill(data.path(), &[("WARDEN_DATABASE_URL", &url)], 1).await;
}

#[test]
fn admin_commands_manage_keys() {
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = warden()
            .arg("admin")
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .env_remove("WARDEN_DATABASE_URL")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["create-key", "--role", "developer", "--name", "alice"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.trim().starts_with("wk_") && out.trim().len() == 43, "{out}");
    assert!(err.contains("shown only this once"), "{err}");
    let (code, out, _) = run(&["list-keys", "--json"]);
    assert_eq!(code, Some(0));
    let keys: Value = serde_json::from_str(&out).unwrap();
    let id = keys[0]["id"].as_str().unwrap().to_owned();
    assert!(!out.contains("wk_"), "secrets are never listed");
    let (code, _, err) = run(&["create-key", "--role", "app", "--name", "x"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("app"), "{err}");
    let (code, _, _) = run(&["revoke-key", &id]);
    assert_eq!(code, Some(0));
    let (code, _, err) = run(&["revoke-key", &id]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no live key"), "{err}");
}

#[test]
fn bad_configuration_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("warden.toml");
    std::fs::write(&file, "max_concurent = 3\n").unwrap();
    let out = warden().args(["serve", "--config"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_concurent"), "{err}");
}
