//! A real `warden serve` for tests that attack or exercise the platform
//! through its HTTP API: started on a free loopback port with a fresh data
//! folder and a jail state directory of its own, plus helpers to publish,
//! approve and install a package and to call it.
//!
//! Shared by test binaries with `#[path = "../support/platform.rs"]`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

/// A running `warden serve`.
pub struct Platform {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The first admin key.
    pub admin: String,
    /// Data folder (database, blobs, code).
    pub data: tempfile::TempDir,
    /// The jail's state directory (box slots).
    pub state: tempfile::TempDir,
    client: Client,
    developer: tokio::sync::OnceCell<String>,
}

/// A client; TLS needs rustls's provider installed once per process.
pub fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new()
}

impl Platform {
    /// Start a server with `env` added to its environment.
    pub fn start(env: &[(&str, &str)]) -> Platform {
        assert!(
            rustix::process::geteuid().is_root(),
            "these tests need root (the jail): run scripts/test"
        );
        let data = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .env_remove("WARDEN_DATABASE_URL")
            .env("WARDEN_STATE_DIR", state.path())
            .env("WARDEN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
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
        Platform {
            child,
            base: base.expect("the server printed where it listens"),
            admin: admin.expect("an admin key on first start"),
            data,
            state,
            client: client(),
            developer: tokio::sync::OnceCell::new(),
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One request; the body parsed as JSON (or kept as a string).
    pub async fn req(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.client.request(method, self.url(path)).bearer_auth(key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let st = r.status();
        let text = r.text().await.unwrap();
        (st, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn developer(&self) -> &str {
        self.developer
            .get_or_init(|| async {
                let (st, key) = self
                    .req(
                        Method::POST,
                        "/v1/keys",
                        &self.admin,
                        Some(json!({"name": "developer", "role": "developer"})),
                    )
                    .await;
                assert_eq!(st, StatusCode::CREATED, "{key}");
                key["secret"].as_str().unwrap().to_owned()
            })
            .await
    }

    /// Upload `package`, submit and approve it; returns its code.
    pub async fn publish(&self, package: Vec<u8>) -> String {
        let dev = self.developer().await.to_owned();
        let r = self
            .client
            .post(self.url("/v1/plugins"))
            .bearer_auth(&dev)
            .header("content-type", "application/zip")
            .body(package)
            .send()
            .await
            .unwrap();
        let st = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let code = v["plugin"].as_str().or(v["code"].as_str()).unwrap().to_owned();
        let version = v["version"].as_str().unwrap().to_owned();
        let base = format!("/v1/plugins/{code}/versions/{version}");
        let (st, v) = self
            .req(Method::POST, &format!("{base}/submit"), &dev, None)
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let (st, v) = self
            .req(Method::POST, &format!("{base}/approve"), &self.admin, None)
            .await;
        assert_eq!(
            (st, v["status"].as_str()),
            (StatusCode::OK, Some("active")),
            "{v}"
        );
        code
    }

    /// Create app `id` with the plugins `codes` installed; returns its key.
    pub async fn app(&self, id: &str, codes: &[&str]) -> String {
        let (st, v) = self
            .req(Method::POST, "/v1/apps", &self.admin, Some(json!({"id": id})))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        for code in codes {
            let (st, v) = self
                .req(
                    Method::POST,
                    &format!("/v1/apps/{id}/installations"),
                    &self.admin,
                    Some(json!({"plugin": code})),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
        }
        let (st, k) = self
            .req(
                Method::POST,
                "/v1/keys",
                &self.admin,
                Some(json!({"name": id, "role": "app", "app": id})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{k}");
        k["secret"].as_str().unwrap().to_owned()
    }

    /// Execute `code` in `app` with `event` (sync).
    pub async fn execute(&self, key: &str, app: &str, code: &str, event: Value) -> (StatusCode, Value) {
        self.req(
            Method::POST,
            &format!("/v1/apps/{app}/plugins/{code}/execute"),
            key,
            Some(event),
        )
        .await
    }

    /// Every execution of the node still `running` or `queued` (admin view).
    pub async fn unfinished(&self) -> Vec<Value> {
        let mut left = Vec::new();
        for status in ["running", "queued"] {
            let (st, v) = self
                .req(
                    Method::GET,
                    &format!("/v1/executions?status={status}&limit=100"),
                    &self.admin,
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            left.extend(v["items"].as_array().cloned().unwrap_or_default());
        }
        left
    }

    /// Send the server a signal.
    pub fn signal(&self, sig: rustix::process::Signal) {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).unwrap(),
            sig,
        )
        .unwrap();
    }

    /// Wait up to `limit` for the server to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Zombie children of the server (unreaped box inits), each as
    /// `pid comm`.
    pub fn zombies(&self) -> Vec<String> {
        let me = self.child.id().to_string();
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let mut fields = rest.split_whitespace();
            let (state, ppid) = (fields.next(), fields.next());
            if state == Some("Z") && ppid == Some(me.as_str()) {
                out.push(head.replace(" (", " "));
            }
        }
        out
    }

    /// The jail state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.state.path().to_owned()
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        let running = matches!(self.child.try_wait(), Ok(None));
        let _ = self.child.kill();
        let _ = self.child.wait();
        if running {
            // A killed server leaves its warm boxes' workspaces mounted;
            // the documented recovery removes them, so that no mount
            // outlives the test (every box's mount namespace copies them).
            let _ = Command::new(env!("CARGO_BIN_EXE_warden"))
                .args(["pool", "clean"])
                .env("WARDEN_STATE_DIR", self.state.path())
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// A Python plugin package: `main.py` with `source`, a permissive schema,
/// and `limits`.
pub fn python_package(code: &str, source: &str, limits: Value) -> Vec<u8> {
    let manifest = json!({
        "code": code, "name": code, "version": "1.0.0",
        "type": "sandbox", "runtime": "python3", "entrypoint": "main.py",
        "description": "A test plugin.", "author": "Tests",
        "input_schema": {"type": "object"}, "output_schema": {},
        "limits": limits,
    });
    warden_package::build::ZipBuilder::new()
        .file("manifest.json", manifest.to_string().as_bytes())
        .file("main.py", source.as_bytes())
        .finish()
}

/// A directory on the host for attacks to aim at, with its owner and mode
/// remembered so a test can prove they did not change.
pub struct Target {
    /// Its path.
    pub path: PathBuf,
    _dir: tempfile::TempDir,
    before: (u32, u32, u32),
}

impl Target {
    /// A root-owned directory (mode 0755) holding one file.
    pub fn new() -> Target {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target");
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(path.join("keep"), b"host data").unwrap();
        let before = Self::stat(&path);
        Target {
            path,
            _dir: dir,
            before,
        }
    }

    fn stat(p: &Path) -> (u32, u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid(), m.mode())
    }

    /// Panic unless owner, group, mode and contents are as they were.
    pub fn assert_untouched(&self) {
        assert_eq!(Self::stat(&self.path), self.before, "the host directory changed");
        let names: Vec<_> = std::fs::read_dir(&self.path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("keep")],
            "files appeared on the host"
        );
        assert_eq!(std::fs::read(self.path.join("keep")).unwrap(), b"host data");
        assert_eq!(Self::stat(&self.path.join("keep")).0, 0);
    }
}
