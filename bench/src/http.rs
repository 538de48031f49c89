//! The HTTP API under load: the real `warden serve` binary (release), the
//! Python hello plugin published through the API, then
//!
//! 1. one caller, sequential: HTTP latency against the runtime's warm call
//!    measured in the same run (the `Runner` directly, in this process) and
//!    against the call time the server itself records, giving the HTTP
//!    layer's overhead (auth, schema checks, two store writes, JSON);
//! 2. a burst of N concurrent requests (each on its own connection), once
//!    with the default queue (some get 429) and once with a queue sized for
//!    the burst: p50/p99, executions per second, and a check that every
//!    accepted request has exactly one execution record and refused ones
//!    none.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use warden_jail::{Jail, JailConfig};
use warden_runtime::{CallLimits, CallStatus, Code, Invocation, Runner, RunnerConfig, WarmConfig};

use crate::stats;

const CODE: &str = "vendor.greeting.say_hello";
const EVENT: &str = r#"{"name": "bench"}"#;

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    pub(crate) admin: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
    }
}

pub(crate) fn raise_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    l.current = l.maximum;
    let _ = setrlimit(Resource::Nofile, l);
}

pub(crate) fn start_server(warden: &Path, data: &Path, env: &[(&str, String)]) -> anyhow::Result<Server> {
    start_on(warden, data, "127.0.0.1:0", env, None)
}

/// `warden serve` on `port` (a node of a cluster: its advertised URL names
/// the port); `admin` is the key when the database already has one (only a
/// first start prints it).
pub(crate) fn start_node(
    warden: &Path,
    data: &Path,
    port: u16,
    env: &[(&str, String)],
    admin: Option<String>,
) -> anyhow::Result<Server> {
    start_on(warden, data, &format!("127.0.0.1:{port}"), env, admin)
}

fn start_on(
    warden: &Path,
    data: &Path,
    listen: &str,
    env: &[(&str, String)],
    known_admin: Option<String>,
) -> anyhow::Result<Server> {
    let mut cmd = Command::new(warden);
    cmd.args(["serve", "--listen", listen, "--data-dir"])
        .arg(data)
        .env("WARDEN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().context("starting warden serve")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let (mut base, mut admin) = (None, None);
    for line in lines.by_ref() {
        let line = line?;
        if let Some(k) = line.trim().strip_prefix("wk_") {
            admin = Some(format!("wk_{k}"));
        }
        if let Some(rest) = line.strip_prefix("warden: listening on ") {
            base = rest.split_whitespace().next().map(str::to_owned);
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(Server {
        child,
        base: base.context("the server did not say where it listens")?,
        admin: admin.or(known_admin).context("no admin key printed")?,
    })
}

impl Server {
    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and wait for it.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hello Python sample as a package.
pub(crate) fn package(root: &Path) -> anyhow::Result<Vec<u8>> {
    let dir = root.join("examples/plugins/hello-python");
    let mut b = warden_package::build::ZipBuilder::new();
    for name in ["manifest.json", "main.py"] {
        b = b.file(name, &std::fs::read(dir.join(name))?);
    }
    Ok(b.finish())
}

async fn publish(c: &reqwest::Client, s: &Server, zip: Vec<u8>) -> anyhow::Result<String> {
    let post = |path: &str, body: Option<Value>| {
        let mut r = c.post(format!("{}{path}", s.base)).bearer_auth(&s.admin);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r
    };
    let r = c
        .post(format!("{}/v1/plugins", s.base))
        .bearer_auth(&s.admin)
        .header("content-type", "application/zip")
        .body(zip)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("upload: {}", r.text().await?);
    }
    for step in ["submit", "approve"] {
        let r = post(&format!("/v1/plugins/{CODE}/versions/1.0.0/{step}"), None)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("{step}: {}", r.text().await?);
        }
    }
    post("/v1/apps", Some(json!({"id": "bench"}))).send().await?;
    post("/v1/apps/bench/installations", Some(json!({"plugin": CODE})))
        .send()
        .await?;
    let r: Value = post(
        "/v1/keys",
        Some(json!({"name": "bench", "role": "app", "app": "bench"})),
    )
    .send()
    .await?
    .json()
    .await?;
    r["secret"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no app key: {r}"))
}

struct Answer {
    status: u16,
    ms: f64,
    id: Option<String>,
    server_ms: Option<f64>,
    warm: bool,
}

async fn execute(c: &reqwest::Client, url: &str, key: &str) -> Answer {
    let t = Instant::now();
    let r = c
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(EVENT)
        .send()
        .await;
    let (status, body) = match r {
        Ok(r) => {
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    };
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    Answer {
        status,
        ms,
        id: body["id"].as_str().map(str::to_owned),
        server_ms: body["duration_ms"].as_f64(),
        warm: body["warm"].as_bool().unwrap_or(false),
    }
}

/// Every execution record of app `bench` created since `since`.
async fn records(c: &reqwest::Client, s: &Server, since: i64) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/executions?app=bench&since={since}&limit=500", s.base);
        if let Some(cur) = &cursor {
            url.push_str(&format!("&cursor={cur}"));
        }
        let page: Value = c.get(url).bearer_auth(&s.admin).send().await?.json().await?;
        for e in page["items"].as_array().context("items")? {
            ids.push(e["id"].as_str().unwrap_or_default().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => break,
        }
    }
    Ok(ids)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The runtime's warm call, directly: the baseline the HTTP layer adds to.
pub(crate) struct Direct {
    runner: Runner,
    code: Code,
    inv: Invocation,
    _dir: tempfile::TempDir,
}

impl Direct {
    pub(crate) fn new(root: &Path) -> anyhow::Result<Direct> {
        let jail = Jail::new(JailConfig::default())?;
        let runner = Runner::new(
            jail,
            RunnerConfig {
                warm: WarmConfig {
                    prewarm_per_code: 1,
                    max_per_code: 2,
                    ..WarmConfig::default()
                },
                ..RunnerConfig::default()
            },
        )?;
        let dir = tempfile::Builder::new().prefix("warden-bench-http-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        std::fs::copy(
            root.join("examples/plugins/hello-python/main.py"),
            dir.path().join("main.py"),
        )?;
        std::fs::set_permissions(
            dir.path().join("main.py"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )?;
        let code = Code {
            key: "bench/http-baseline".into(),
            runtime: "python".into(),
            dir: dir.path().to_owned(),
            entrypoint: "main.py".into(),
            handler: "handler".into(),
            layer: None,
            network: None,
        };
        runner.prewarm(&code, &CallLimits::default())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while runner.warm_idle(&code.key) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let inv = Invocation::new(EVENT.as_bytes().to_vec(), CallLimits::default());
        Ok(Direct {
            runner,
            code,
            inv,
            _dir: dir,
        })
    }

    /// One warm call, in ms.
    pub(crate) fn call(&self) -> anyhow::Result<f64> {
        let t = Instant::now();
        let r = tokio::task::block_in_place(|| self.runner.invoke(&self.code, &self.inv))?;
        if r.status != CallStatus::Success {
            bail!("baseline call failed: {:?}", r.error);
        }
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }
}

struct Burst {
    label: String,
    accepted: usize,
    refused: usize,
    other: usize,
    p50: f64,
    p99: f64,
    per_sec: f64,
    records_ok: String,
}

async fn burst(c: &reqwest::Client, s: &Server, key: &str, n: usize, label: &str) -> anyhow::Result<Burst> {
    let url = Arc::new(format!("{}/v1/apps/bench/plugins/{CODE}/execute", s.base));
    let key = Arc::new(key.to_owned());
    let since = now_ms() - 1;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (c, url, key) = (c.clone(), url.clone(), key.clone());
        tasks.push(tokio::spawn(async move { execute(&c, &url, &key).await }));
    }
    let mut answers = Vec::with_capacity(n);
    for t in tasks {
        answers.push(t.await?);
    }
    let wall = start.elapsed().as_secs_f64();
    let ok: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    let refused = answers.iter().filter(|a| a.status == 429).count();
    let other = answers.len() - ok.len() - refused;
    let lat = stats::of(ok.iter().map(|a| a.ms).collect());
    // Exactly one record per accepted request, none for the refused.
    let accepted_ids: HashSet<String> = ok.iter().filter_map(|a| a.id.clone()).collect();
    let stored = records(c, s, since).await?;
    let stored_set: HashSet<String> = stored.iter().cloned().collect();
    let records_ok =
        if stored.len() == stored_set.len() && stored_set == accepted_ids && accepted_ids.len() == ok.len() {
            format!("yes ({} records)", stored.len())
        } else {
            format!(
                "NO: {} accepted, {} records ({} distinct), {} accepted without a record",
                ok.len(),
                stored.len(),
                stored_set.len(),
                accepted_ids.difference(&stored_set).count()
            )
        };
    Ok(Burst {
        label: label.to_owned(),
        accepted: ok.len(),
        refused,
        other,
        p50: lat.median,
        p99: lat.p99,
        per_sec: ok.len() as f64 / wall,
        records_ok,
    })
}

/// Run the benchmark; `calls` sequential calls, bursts of `burst_n`.
pub fn run(calls: usize, burst_n: usize) -> anyhow::Result<()> {
    raise_nofile();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let warden = std::env::current_exe()?.with_file_name("warden");
    if !warden.exists() {
        bail!("{} is missing: run through bench/run", warden.display());
    }
    let direct = Direct::new(&root)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(burst_n + 16)
            .timeout(Duration::from_secs(300))
            .build()?;
        let mut bursts = Vec::new();
        let mut sequential = None;
        for (i, queue) in [(0, None), (1, Some(burst_n))] {
            let data = tempfile::Builder::new().prefix("warden-bench-data-").tempdir()?;
            let mut env = vec![
                ("WARDEN_WARM_MAX_PER_CODE", "8".to_owned()),
                ("WARDEN_WARM_PREWARM_PER_CODE", "2".to_owned()),
            ];
            if let Some(q) = queue {
                env.push(("WARDEN_MAX_QUEUE", q.to_string()));
            }
            let s = start_server(&warden, data.path(), &env)?;
            let key = publish(&client, &s, package(&root)?).await?;
            let url = format!("{}/v1/apps/bench/plugins/{CODE}/execute", s.base);
            for _ in 0..100 {
                execute(&client, &url, &key).await;
            }
            if i == 0 {
                let mut floor = Vec::with_capacity(calls);
                for _ in 0..calls {
                    let t = Instant::now();
                    let r = client.get(format!("{}/healthz", s.base)).send().await?;
                    r.bytes().await?;
                    floor.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                let mut http = Vec::with_capacity(calls);
                let mut overhead = Vec::with_capacity(calls);
                let mut baseline = Vec::with_capacity(calls);
                let mut warm = 0;
                for _ in 0..50 {
                    direct.call()?;
                }
                // Interleaved, so that drift on this shared host hits both.
                for _ in 0..calls {
                    baseline.push(direct.call()?);
                    let a = execute(&client, &url, &key).await;
                    if a.status != 200 {
                        bail!("sequential call answered {}", a.status);
                    }
                    warm += usize::from(a.warm);
                    http.push(a.ms);
                    if let Some(sm) = a.server_ms {
                        overhead.push(a.ms - sm);
                    }
                }
                sequential = Some((stats::of(http), stats::of(overhead), warm, stats::of(floor), stats::of(baseline)));
            }
            let label = match queue {
                None => "default queue (max_concurrent 16, max_queue 256)".to_owned(),
                Some(q) => format!("queue sized for the burst (max_queue {q})"),
            };
            bursts.push(burst(&client, &s, &key, burst_n, &label).await?);
        }
        let (http, overhead, warm, floor, base) = sequential.context("no sequential run")?;
        println!("### HTTP API: one caller, {calls} sequential calls\n");
        println!("Host: {} cores. `warden serve` (release, SQLite) with the Python hello plugin; the client on the same host.\n", stats::num_cpus());
        println!("| what | p50 ms | p99 ms |");
        println!("|---|---:|---:|");
        println!("| HTTP round trip floor (`GET /healthz`) | {:.2} | {:.2} |", floor.median, floor.p99);
        println!("| runtime warm call, direct (`Runner::invoke`, this process) | {:.2} | {:.2} |", base.median, base.p99);
        println!("| `POST …/execute` over HTTP, end to end | {:.2} | {:.2} |", http.median, http.p99);
        println!("| HTTP latency minus the call time the server recorded | {:.2} | {:.2} |", overhead.median, overhead.p99);
        println!("\n{warm} of {calls} calls were served warm. HTTP overhead over the direct warm call at p50: {:.2} ms.\n", http.median - base.median);
        println!("### HTTP API: {burst_n} concurrent requests, each on its own connection\n");
        println!("| server | accepted | 429 | other | p50 ms | p99 ms | executions/s | one record per accepted request |");
        println!("|---|---:|---:|---:|---:|---:|---:|---|");
        for b in &bursts {
            println!(
                "| {} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {} |",
                b.label, b.accepted, b.refused, b.other, b.p50, b.p99, b.per_sec, b.records_ok
            );
        }
        if bursts.iter().any(|b| !b.records_ok.starts_with("yes")) {
            bail!("an accepted request does not have exactly one record");
        }
        Ok(())
    })
}
