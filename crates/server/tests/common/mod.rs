//! A real server on loopback for the API tests: a real jail, a real SQLite
//! file (or PostgreSQL), a real socket, a real HTTP client.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};
use warden_package::build::ZipBuilder;
use warden_server::{AppState, Config};

pub struct Server {
    pub base: String,
    pub admin: String,
    pub state: AppState,
    pub client: Client,
    pub data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the API tests run plugins in the jail and need root: run them through scripts/test"
    );
}

pub async fn server() -> Server {
    server_with(|_| {}).await
}

pub async fn server_with(tune: impl FnOnce(&mut Config)) -> Server {
    start_server(tune, None).await
}

/// A second node sharing `first`'s database (a SQLite file both open) and
/// whatever else `tune` shares; `first`'s admin key works on it.
pub async fn second_node(first: &Server, tune: impl FnOnce(&mut Config)) -> Server {
    let url = first.state.config.database_url();
    start_server(
        move |c| {
            c.database_url = Some(url);
            tune(c);
        },
        Some(first.admin.clone()),
    )
    .await
}

async fn start_server(tune: impl FnOnce(&mut Config), admin: Option<String>) -> Server {
    require_root();
    let data = tempfile::Builder::new().prefix("warden-api-").tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.path().to_owned(),
        ..Config::default()
    };
    config.warm.prewarm_per_code = 1;
    config.warm.max_per_code = 2;
    tune(&mut config);
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Other nodes sharing the database forward this node's sessions here.
    config
        .cluster
        .advertise_url
        .get_or_insert_with(|| format!("http://{addr}"));
    let node = config.node(addr.port());
    let started = warden_server::start(config, node).await.expect("server starts");
    let admin = match admin {
        Some(a) => a,
        None => started
            .first_admin_key
            .clone()
            .expect("an admin key on first start"),
    };
    let state = started.state.clone();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(warden_server::serve(started.state, listener, async move {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{addr}"),
        admin,
        state,
        client: Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        data,
        stop: Some(tx),
        task: Some(task),
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn call(&self, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> Response {
        let mut r = self.client.request(method, self.url(path));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }

    /// Call and expect `status`; returns the JSON body.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> Value {
        let r = self.call(method.clone(), path, Some(key), body).await;
        let got = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(got, status, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn upload(&self, key: &str, zip: Vec<u8>) -> Response {
        self.client
            .post(self.url("/v1/plugins"))
            .bearer_auth(key)
            .header("content-type", "application/zip")
            .body(zip)
            .send()
            .await
            .unwrap()
    }

    pub async fn key(&self, role: &str, name: &str, app: Option<&str>) -> String {
        let v = self
            .expect(
                Method::POST,
                "/v1/keys",
                &self.admin,
                Some(json!({"name": name, "role": role, "app": app})),
                StatusCode::CREATED,
            )
            .await;
        v["secret"].as_str().unwrap().to_owned()
    }

    /// Upload, submit and approve a package as `dev`; create `app` (if
    /// new) and install the plugin there.
    pub async fn publish(&self, dev: &str, zip: Vec<u8>, app: &str) -> Value {
        let r = self.upload(dev, zip).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "upload: {v}");
        let (code, version) = (
            v["plugin"].as_str().unwrap().to_owned(),
            v["version"].as_str().unwrap().to_owned(),
        );
        let base = format!("/v1/plugins/{code}/versions/{version}");
        self.expect(Method::POST, &format!("{base}/submit"), dev, None, StatusCode::OK)
            .await;
        self.expect(
            Method::POST,
            &format!("{base}/approve"),
            &self.admin,
            None,
            StatusCode::OK,
        )
        .await;
        let r = self
            .call(
                Method::POST,
                "/v1/apps",
                Some(&self.admin),
                Some(json!({"id": app})),
            )
            .await;
        assert!(r.status() == StatusCode::CREATED || r.status() == StatusCode::CONFLICT);
        let r = self
            .call(
                Method::POST,
                &format!("/v1/apps/{app}/installations"),
                Some(&self.admin),
                Some(json!({"plugin": code})),
            )
            .await;
        assert!(
            r.status() == StatusCode::CREATED || r.status() == StatusCode::CONFLICT,
            "{:?}",
            r.text().await
        );
        v
    }

    pub async fn execute(
        &self,
        key: &str,
        app: &str,
        code: &str,
        event: &str,
        query: &str,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let r = self
            .client
            .post(self.url(&format!("/v1/apps/{app}/plugins/{code}/execute{query}")))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(event.to_owned())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        )
    }

    /// Stop taking requests and wait for the server to finish.
    pub async fn stop(self) -> std::io::Result<()> {
        self.stop_keep_data().await.0
    }

    /// Stop, keeping the data folder (the caller reopens the store).
    pub async fn stop_keep_data(mut self) -> (std::io::Result<()>, tempfile::TempDir) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let r = self.task.take().unwrap().await.unwrap();
        (r, self.data)
    }
}

pub fn manifest(code: &str, version: &str, runtime: &str, entrypoint: &str) -> Value {
    json!({
        "code": code, "name": "Test plugin", "version": version,
        "type": "sandbox", "runtime": runtime, "entrypoint": entrypoint,
        "description": "A plugin the tests publish.", "author": "Tests",
        "input_schema": {"type": "object"},
        "output_schema": {"type": "object"}
    })
}

pub fn package(manifest: &Value, files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = ZipBuilder::new().file("manifest.json", manifest.to_string().as_bytes());
    for (name, text) in files {
        b = b.file(name, text.as_bytes());
    }
    b.finish()
}

pub const HELLO_PY: &str = "def handler(event):\n    print('greeting', event.get('name'))\n    return {'greeting': 'hello ' + event.get('name', 'world')}\n";

pub fn hello(code: &str, version: &str) -> Vec<u8> {
    let mut m = manifest(code, version, "python3", "main.py");
    m["input_schema"] = json!({
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 50}},
        "required": ["name"],
        "additionalProperties": false
    });
    m["output_schema"] = json!({
        "type": "object",
        "properties": {"greeting": {"type": "string"}},
        "required": ["greeting"]
    });
    package(&m, &[("main.py", HELLO_PY)])
}

/// A minimal pure-Python wheel in `dir`, written by hand: a zip with the
/// module and its dist-info.
pub fn wheel(dir: &std::path::Path, name: &str, version: &str, module: &str) {
    use std::io::Write;
    let path = dir.join(format!("{name}-{version}-py3-none-any.whl"));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    let info = format!("{name}-{version}.dist-info");
    let files = [
        (format!("{name}/__init__.py"), module.to_owned()),
        (
            format!("{info}/METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
        ),
        (
            format!("{info}/WHEEL"),
            "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n".into(),
        ),
    ];
    let mut record = String::new();
    for (p, body) in &files {
        zip.start_file(p.as_str(), opts).unwrap();
        zip.write_all(body.as_bytes()).unwrap();
        record.push_str(&format!("{p},,\n"));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    zip.start_file(format!("{info}/RECORD"), opts).unwrap();
    zip.write_all(record.as_bytes()).unwrap();
    zip.finish().unwrap();
}

/// A world-readable folder (boxes run as other uids) for wheels.
pub fn public_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}
