//! The HTTP API under load: the real `warden serve` binary (release), the
//! Python hello plugin published through the API and the built-in
//! `warden.builtin.jq` installed beside it, then
//!
//! 1. one caller, sequential: HTTP latency against the runtime's warm call
//!    measured in the same run (the `Runner` directly, in this process) and
//!    against the call time the server itself records, giving the HTTP
//!    layer's overhead (auth, schema checks, two store writes, JSON);
//! 2. 1, 4 and 32 clients, each sending its next request when the last is
//!    answered, for the built-in tier, warm Python and the HTTP floor (an
//!    authenticated `GET /v1/me`), interleaved in rounds so that drift hits
//!    all three: p50/p99, executions per second, and ratios to the floor;
//! 3. the store's growth: the built-in's p50 with the executions this run
//!    made, then with 100,000 more written into the same SQLite file;
//! 4. a burst of N concurrent requests (each on its own connection), once
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
const JQ: &str = "warden.builtin.jq";
const JQ_EVENT: &str = r#"{"program": ".name", "input": {"name": "bench"}}"#;

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
    for code in [CODE, JQ] {
        let r = post("/v1/apps/bench/installations", Some(json!({"plugin": code})))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("install {code}: {}", r.text().await?);
        }
    }
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
        // This plugin's only (`burst` also waits for a fresh millisecond).
        let mut url = format!(
            "{}/v1/executions?app=bench&plugin={CODE}&since={since}&limit=500",
            s.base
        );
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

/// What the load matrix sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// `GET /v1/me`: routing, auth and JSON, no execution.
    Floor,
    /// `warden.builtin.jq`: an execution with no box at all.
    Builtin,
    /// The hello Python handler on a warm box.
    Python,
}

const VARIANTS: [Variant; 3] = [Variant::Floor, Variant::Builtin, Variant::Python];

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::Floor => "HTTP floor (`GET /v1/me`)",
            Variant::Builtin => "built-in (`warden.builtin.jq`)",
            Variant::Python => "warm Python (hello)",
        }
    }
}

/// One request of `v`, in ms; an answer other than 200 is an error.
async fn one(c: &reqwest::Client, base: &str, key: &str, v: Variant) -> anyhow::Result<f64> {
    let t = Instant::now();
    let r = match v {
        Variant::Floor => c.get(format!("{base}/v1/me")).bearer_auth(key).send().await?,
        Variant::Builtin | Variant::Python => {
            let (code, event) = if v == Variant::Builtin {
                (JQ, JQ_EVENT)
            } else {
                (CODE, EVENT)
            };
            c.post(format!("{base}/v1/apps/bench/plugins/{code}/execute"))
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(event)
                .send()
                .await?
        }
    };
    let status = r.status();
    let body = r.bytes().await?;
    if status != 200 {
        bail!(
            "{} answered {status}: {}",
            v.label(),
            String::from_utf8_lossy(&body)
        );
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// `clients` callers, each sending `per_client` requests of `v` one after
/// the other: every latency, and the wall time.
async fn load(
    c: &reqwest::Client,
    base: &str,
    key: &str,
    v: Variant,
    clients: usize,
    per_client: usize,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (c, base, key) = (c.clone(), base.to_owned(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut ms = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                ms.push(one(&c, &base, &key, v).await?);
            }
            anyhow::Ok(ms)
        }));
    }
    let mut all = Vec::with_capacity(clients * per_client);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, start.elapsed().as_secs_f64()))
}

/// A row of the load matrix.
struct Cell {
    clients: usize,
    variant: Variant,
    lat: stats::Stats,
    per_sec: f64,
}

/// 1, 4 and 32 clients; for each, `rounds` rounds of the three variants in
/// turn, `per_round` requests each (spread over the clients).
async fn matrix(
    c: &reqwest::Client,
    base: &str,
    key: &str,
    per_round: usize,
    rounds: usize,
) -> anyhow::Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for clients in [1, 4, 32] {
        let per_client = per_round.div_ceil(clients);
        let mut lat: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
        let mut wall = vec![0.0; VARIANTS.len()];
        for _ in 0..rounds {
            for (i, v) in VARIANTS.into_iter().enumerate() {
                let (ms, w) = load(c, base, key, v, clients, per_client).await?;
                lat[i].extend(ms);
                wall[i] += w;
            }
        }
        for (i, v) in VARIANTS.into_iter().enumerate() {
            let n = lat[i].len();
            cells.push(Cell {
                clients,
                variant: v,
                lat: stats::of(std::mem::take(&mut lat[i])),
                per_sec: n as f64 / wall[i],
            });
        }
    }
    Ok(cells)
}

/// The built-in's in-runtime call (`Builtin::call` on `JQ_EVENT`), in ms.
fn builtin_direct(n: usize) -> anyhow::Result<stats::Stats> {
    use warden_builtins::Builtin;
    let event: Value = serde_json::from_str(JQ_EVENT)?;
    let limits = warden_builtins::Limits {
        timeout: Duration::from_secs(5),
        output_bytes: 1 << 20,
    };
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n + n / 10 {
        let t = Instant::now();
        warden_builtins::Jq
            .call(&event, limits, &mut warden_builtins::Context::default())
            .map_err(|e| anyhow::anyhow!("jq: {e:?}"))?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(stats::of(ms.split_off(n / 10)))
}

/// Write `n` finished executions of another app into the server's SQLite
/// file (one statement), shaped like the built-in's records.
/// Returns how many executions were there before.
async fn prefill(data: &Path, n: usize) -> anyhow::Result<i64> {
    let store =
        warden_store::SqlStore::connect(&format!("sqlite://{}", data.join("warden.db").display())).await?;
    let (before,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM executions")
        .fetch_one(store.pool())
        .await?;
    let (result,): (String,) =
        sqlx::query_as("SELECT result FROM executions WHERE plugin = $1 AND result IS NOT NULL LIMIT 1")
            .bind(JQ)
            .fetch_one(store.pool())
            .await?;
    // Ids older than any this run made (time-sortable, like the server's).
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO executions (id, app, plugin, version, status, mode, node, error_kind, result, created_at, \
         started_at, finished_at, duration_ms, source) \
         SELECT printf('exe_%014x%010x', 1000000 + i, i), 'bench-prefill', $2, '1.0.0', 'success', 'sync', \
         'bench-node', NULL, $3, 1000 + i, 1000 + i, 1001 + i, 0.01, 'plugin' FROM n",
    )
    .bind(n as i64)
    .bind(JQ)
    .bind(result)
    .execute(store.pool())
    .await?;
    store.close().await;
    Ok(before)
}

/// `n` sequential calls of the built-in, each followed by one of the floor.
async fn growth_sample(
    c: &reqwest::Client,
    base: &str,
    key: &str,
    n: usize,
) -> anyhow::Result<(stats::Stats, stats::Stats)> {
    let (mut b, mut f) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        b.push(one(c, base, key, Variant::Builtin).await?);
        f.push(one(c, base, key, Variant::Floor).await?);
    }
    Ok((stats::of(b), stats::of(f)))
}

/// Executions written into the store for the growth figures.
const PREFILL: usize = 100_000;

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
    // Every earlier call (the warm-up's, the growth sample's) was answered,
    // so accepted, at or before `done`: records from the next millisecond
    // on are the burst's only.
    let done = now_ms();
    while now_ms() <= done {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let since = now_ms();
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
        let mut loads = None;
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
                let python_direct = {
                    let mut ms = Vec::with_capacity(calls);
                    for _ in 0..calls {
                        ms.push(direct.call()?);
                    }
                    stats::of(ms)
                };
                let builtin_direct = builtin_direct(calls.max(1000))?;
                let cells = matrix(&client, &s.base, &key, (calls / 4).max(32), 3).await?;
                let small = growth_sample(&client, &s.base, &key, calls).await?;
                let before = prefill(data.path(), PREFILL).await?;
                // The first calls after a large write read pages back in.
                growth_sample(&client, &s.base, &key, 50).await?;
                let large = growth_sample(&client, &s.base, &key, calls).await?;
                loads = Some((cells, builtin_direct, python_direct, before, small, large));
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
        let (cells, b_direct, p_direct, before, small, large) = loads.context("no load run")?;
        println!("### HTTP API: 1, 4 and 32 clients, against the floor\n");
        println!("Each client sends its next request when the last is answered; 3 rounds of floor, built-in, Python in turn. In the runtime, measured in this process: built-in `Builtin::call` p50 {:.3} ms, warm Python `Runner::invoke` p50 {:.2} ms.\n", b_direct.median, p_direct.median);
        println!("| clients | what | p50 ms | p99 ms | requests/s | p50 ÷ floor p50 | p50 − floor p50 − in-runtime call p50 |");
        println!("|---:|---|---:|---:|---:|---:|---:|");
        for clients in [1, 4, 32] {
            let floor = cells
                .iter()
                .find(|c| c.clients == clients && c.variant == Variant::Floor)
                .map_or(f64::NAN, |c| c.lat.median);
            for c in cells.iter().filter(|c| c.clients == clients) {
                let (ratio, over) = match c.variant {
                    Variant::Floor => ("—".to_owned(), "—".to_owned()),
                    v => {
                        let call = if v == Variant::Builtin { b_direct.median } else { p_direct.median };
                        (
                            format!("{:.2}", c.lat.median / floor),
                            format!("{:+.3} ms", c.lat.median - floor - call),
                        )
                    }
                };
                println!(
                    "| {clients} | {} | {:.3} | {:.3} | {:.0} | {ratio} | {over} |",
                    c.variant.label(),
                    c.lat.median,
                    c.lat.p99,
                    c.per_sec
                );
            }
        }
        println!("\n### HTTP API: the built-in as the executions table grows (one client)\n");
        println!("| executions in the store | built-in p50 ms | p99 ms | floor p50 ms | p50 − floor p50 |");
        println!("|---|---:|---:|---:|---:|");
        for (label, (b, f)) in [
            (format!("{before} (this run's)"), &small),
            (format!("{} (+{PREFILL} written into the file)", before + PREFILL as i64), &large),
        ] {
            println!(
                "| {label} | {:.3} | {:.3} | {:.3} | {:+.3} |",
                b.median,
                b.p99,
                f.median,
                b.median - f.median
            );
        }
        println!();
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
