//! Sessions through the real `warden serve` (release): session create from
//! the cached default template, a trivial execution per mode over HTTP and
//! executions/s with 2 clients, beside the HTTP floor (an authenticated GET
//! of the session's record) and a fresh bubblewrap box per execution; how
//! much an idle session holds on the host (RSS and PSS of the server and
//! every process it started, the jail's memory cgroup charge, all measured
//! from outside as deltas over N idle sessions); and failover: two nodes
//! sharing PostgreSQL (and the S3-compatible server when one is configured),
//! the time from `kill -9` of a session's node to the session answering an
//! execution on the other.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::http::{Server, raise_nofile, start_server};
use crate::stats;

fn warden() -> anyhow::Result<PathBuf> {
    let warden = std::env::current_exe()?.with_file_name("warden");
    if !warden.exists() {
        bail!("{} is missing: run through bench/run", warden.display());
    }
    Ok(warden)
}

/// A client and an app key on `s`.
async fn app_key(c: &reqwest::Client, s: &Server) -> anyhow::Result<String> {
    c.post(format!("{}/v1/apps", s.base))
        .bearer_auth(&s.admin)
        .json(&json!({"id": "bench"}))
        .send()
        .await?;
    let k: Value = c
        .post(format!("{}/v1/keys", s.base))
        .bearer_auth(&s.admin)
        .json(&json!({"name": "bench", "role": "app", "app": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    Ok(k["secret"].as_str().context("no app key")?.to_owned())
}

async fn create(c: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<String> {
    let r = c
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(key)
        .json(&json!({}))
        .send()
        .await?;
    let st = r.status();
    let v: Value = r.json().await?;
    if st != reqwest::StatusCode::CREATED {
        bail!("session create: {st} {v}");
    }
    Ok(v["id"].as_str().context("no session id")?.to_owned())
}

async fn exec(c: &reqwest::Client, base: &str, key: &str, id: &str, body: &Value) -> anyhow::Result<()> {
    let r = c
        .post(format!("{base}/v1/sessions/{id}/executions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await?;
    let st = r.status();
    let v: Value = r.json().await?;
    if st != reqwest::StatusCode::OK || v["status"] != "success" {
        bail!("execution: {st} {v}");
    }
    Ok(())
}

/// RSS and PSS (KiB) of `root` and all its descendants.
fn tree_memory(root: u32) -> (u64, u64) {
    let mut pids = vec![root];
    let mut i = 0;
    while i < pids.len() {
        let p = pids[i];
        for t in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            pids.extend(kids.split_whitespace().filter_map(|k| k.parse::<u32>().ok()));
        }
        i += 1;
    }
    pids.sort_unstable();
    pids.dedup();
    let (mut rss, mut pss) = (0, 0);
    for p in pids {
        let text = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        rss += field("Rss:");
        pss += field("Pss:");
    }
    (rss, pss)
}

/// The jail's memory cgroup charge (bytes): `warden/` under this process's
/// own memory cgroup (cgroup v1) or its cgroup2 directory; `None` when
/// neither is readable.
fn jail_charge() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let path = path.trim_start_matches('/');
        let file = if controllers.split(',').any(|c| c == "memory") {
            Path::new("/sys/fs/cgroup/memory")
                .join(path)
                .join("warden/memory.usage_in_bytes")
        } else if controllers.is_empty() {
            Path::new("/sys/fs/cgroup")
                .join(path)
                .join("warden/memory.current")
        } else {
            continue;
        };
        if let Ok(v) = std::fs::read_to_string(&file)
            && let Ok(n) = v.trim().parse()
        {
            return Some(n);
        }
    }
    None
}

/// Sessions over HTTP and idle sessions on one node (SQLite).
pub fn run(runs: usize, idle: usize, seconds: f64) -> anyhow::Result<()> {
    raise_nofile();
    let warden = warden()?;
    let data = tempfile::Builder::new()
        .prefix("warden-bench-sessions-")
        .tempdir()?;
    let room = (idle + 8).to_string();
    let env = [
        ("WARDEN_SESSIONS_NODE_MAX_LIVE", room.clone()),
        ("WARDEN_SESSIONS_APP_MAX_LIVE", room.clone()),
        (
            "WARDEN_SESSIONS_NODE_MAX_MEMORY_MB",
            (512 * (idle + 8)).to_string(),
        ),
        (
            "WARDEN_SESSIONS_APP_MAX_MEMORY_MB",
            (512 * (idle + 8)).to_string(),
        ),
        (
            "WARDEN_SESSIONS_NODE_MAX_DISK_MB",
            (2048 * (idle + 8)).to_string(),
        ),
        ("WARDEN_SESSIONS_APP_MAX_DISK_MB", (2048 * (idle + 8)).to_string()),
        ("WARDEN_JAIL_MAX_BOXES", (idle + 16).to_string()),
    ];
    let s = start_server(&warden, data.path(), &env)?;
    let server_pid = s.pid();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!(
        "## Sessions over HTTP ({} CPUs; release `warden serve`, SQLite, default template `python-basic`; the client on the same host)\n",
        stats::num_cpus()
    );
    rt.block_on(async {
        let c = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
        let key = app_key(&c, &s).await?;
        let base = s.base.as_str();
        println!("| measurement | p50 ms | p99 ms |\n|---|---:|---:|");
        // Create (the template's box image is cached after the first).
        let mut ms = Vec::new();
        for i in 0..runs.clamp(5, 50) + 2 {
            let t = Instant::now();
            let id = create(&c, base, &key).await?;
            let took = t.elapsed().as_secs_f64() * 1000.0;
            c.delete(format!("{base}/v1/sessions/{id}")).bearer_auth(&key).send().await?;
            if i >= 2 {
                ms.push(took);
            }
        }
        let st = stats::of(ms);
        println!(
            "| session create (`POST /v1/sessions`, box ready), back to back | {:.2} | {:.2} |",
            st.median, st.p99
        );
        // The same, 300 ms apart: time for the node to start the next box
        // ahead (`sessions.prestart`), so each create claims one.
        let mut ms = Vec::new();
        for i in 0..runs.clamp(5, 50) + 2 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let t = Instant::now();
            let id = create(&c, base, &key).await?;
            let took = t.elapsed().as_secs_f64() * 1000.0;
            c.delete(format!("{base}/v1/sessions/{id}")).bearer_auth(&key).send().await?;
            if i >= 2 {
                ms.push(took);
            }
        }
        let st = stats::of(ms);
        println!(
            "| session create, 300 ms apart (a box started ahead is claimed) | {:.2} | {:.2} |",
            st.median, st.p99
        );

        let id = create(&c, base, &key).await?;
        // The floor: an authenticated GET of the session's record.
        let mut ms = Vec::new();
        for _ in 0..runs + 3 {
            let t = Instant::now();
            let r = c.get(format!("{base}/v1/sessions/{id}")).bearer_auth(&key).send().await?;
            r.bytes().await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let st = stats::of(ms);
        println!("| HTTP floor (`GET /v1/sessions/{{id}}`) | {:.2} | {:.2} |", st.median, st.p99);
        let cases = [
            ("python script (`pass`)", json!({"language": "python", "mode": "script", "code": "pass"})),
            (
                "python handler",
                json!({"language": "python", "mode": "handler", "code": "def handler(e):\n    return {}\n"}),
            ),
            ("python stateful cell (`1 + 1`)", json!({"language": "python", "mode": "repl", "code": "1 + 1"})),
            ("javascript stateful cell", json!({"language": "javascript", "mode": "repl", "code": "1 + 1"})),
            ("shell script (`true`)", json!({"language": "shell", "mode": "script", "code": "true"})),
        ];
        for (name, body) in &cases {
            for _ in 0..3 {
                exec(&c, base, &key, &id, body).await?;
            }
            let mut ms = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                exec(&c, base, &key, &id, body).await?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let st = stats::of(ms);
            println!("| {name} over HTTP | {:.2} | {:.2} |", st.median, st.p99);
        }
        if let Some(st) = crate::sessions::bwrap_per_execution(runs)? {
            println!(
                "| bubblewrap box per execution, python `pass` (baseline, same run) | {:.2} | {:.2} |",
                st.median, st.p99
            );
        }
        c.delete(format!("{base}/v1/sessions/{id}")).bearer_auth(&key).send().await?;

        // Two clients, a session each: stateful cells per second.
        let cell = json!({"language": "python", "mode": "repl", "code": "1 + 1"});
        let mut clients = Vec::new();
        for _ in 0..2 {
            let (c, key, base, cell) = (c.clone(), key.clone(), base.to_owned(), cell.clone());
            let id = create(&c, &base, &key).await?;
            exec(&c, &base, &key, &id, &cell).await?;
            clients.push(tokio::spawn(async move {
                let end = Instant::now() + Duration::from_secs_f64(seconds);
                let mut n = 0u64;
                while Instant::now() < end {
                    exec(&c, &base, &key, &id, &cell).await?;
                    n += 1;
                }
                c.delete(format!("{base}/v1/sessions/{id}")).bearer_auth(&key).send().await?;
                anyhow::Ok(n)
            }));
        }
        let mut done = 0;
        for h in clients {
            done += h.await??;
        }
        println!(
            "\nStateful Python cells over HTTP, 2 clients (a session each): {:.0} executions/s\n",
            done as f64 / seconds
        );

        // Idle sessions: what each adds on the host.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rss0, pss0) = tree_memory(server_pid);
        let charge0 = jail_charge();
        let t = Instant::now();
        let mut ids = Vec::new();
        let mut stopped = None;
        for _ in 0..idle {
            match create(&c, base, &key).await {
                Ok(id) => ids.push(id),
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
        }
        let took = t.elapsed();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (rss1, pss1) = tree_memory(server_pid);
        let charge1 = jail_charge();
        let n = ids.len().max(1) as f64;
        let pss_mib = pss1.saturating_sub(pss0) as f64 / n / 1024.0;
        println!(
            "Idle sessions: {} created over HTTP in {:.1} s{}",
            ids.len(),
            took.as_secs_f64(),
            stopped.map_or(String::new(), |e| format!(" (creation stopped: {e})"))
        );
        print!(
            "per idle session, measured from the host (server and every process it started, delta over the {} sessions): RSS {:.1} MiB, PSS {:.1} MiB",
            ids.len(),
            rss1.saturating_sub(rss0) as f64 / n / 1024.0,
            pss_mib
        );
        match (charge0, charge1) {
            (Some(a), Some(b)) => println!(", jail memory cgroup charge {:.1} MiB", b.saturating_sub(a) as f64 / n / (1 << 20) as f64),
            _ => println!(" (the jail's memory cgroup is not readable here)"),
        }
        if pss_mib > 0.0 {
            println!(
                "24 GiB hold about {:.0} idle sessions by PSS. With the default settings a node stops at 32 live sessions (`sessions.node_max_live`; `sessions.node_max_memory_mb` = 16384 at 512 MiB reserved a session also gives 32; `jail.max_boxes` = 64 slots shared with warm boxes): this run raised them to {}.",
                (24.0 * 1024.0) / pss_mib,
                idle + 8
            );
        }
        for id in ids {
            c.delete(format!("{base}/v1/sessions/{id}")).bearer_auth(&key).send().await?;
        }
        anyhow::Ok(())
    })?;
    drop(s);
    Ok(())
}

/// The database URL for the failover measurement: `WARDEN_TEST_POSTGRES_URL`
/// with a fresh database, or `None` with the reason.
fn failover_database() -> Result<String, String> {
    let base = std::env::var("WARDEN_TEST_POSTGRES_URL").map_err(|_| {
        "WARDEN_TEST_POSTGRES_URL is not set (start one with `scripts/postgres` and export the URL it prints)".to_owned()
    })?;
    let name = "warden_bench_failover";
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        let o = Command::new("psql")
            .arg(&base)
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", &sql])
            .output()
            .map_err(|e| format!("psql could not run: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "psql failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
    }
    let cut = base
        .rfind('/')
        .ok_or("WARDEN_TEST_POSTGRES_URL has no database part")?;
    Ok(format!("{}/{name}", &base[..cut]))
}

/// Failover: `samples` times, a session on node A with a snapshot; A is
/// killed (SIGKILL); the time until the session answers an execution on B.
pub fn failover(samples: usize) -> anyhow::Result<()> {
    println!("## Failover (two release `warden serve` nodes on loopback)\n");
    let url = match failover_database() {
        Ok(u) => u,
        Err(why) => {
            println!("skipped: {why}\n");
            return Ok(());
        }
    };
    let warden = warden()?;
    let (heartbeat, dead_after) = (1, 3);
    let mut shared: Vec<(&str, String)> = vec![
        ("WARDEN_DATABASE_URL", url),
        ("WARDEN_CLUSTER_HEARTBEAT_SECS", heartbeat.to_string()),
        ("WARDEN_CLUSTER_DEAD_AFTER_SECS", dead_after.to_string()),
    ];
    let blobs = tempfile::tempdir()?;
    let store = match std::env::var("WARDEN_TEST_S3_ENDPOINT") {
        Ok(endpoint) => {
            let var = |k: &str| std::env::var(k).unwrap_or_default();
            let bucket = std::env::var("WARDEN_TEST_S3_BUCKET").unwrap_or_else(|_| "warden".into());
            shared.extend([
                (
                    "WARDEN_OBJECTS_URL",
                    format!("s3://{bucket}/bench-failover-{}", std::process::id()),
                ),
                ("WARDEN_OBJECTS_ENDPOINT", endpoint),
                ("WARDEN_OBJECTS_ALLOW_HTTP", "true".into()),
                ("WARDEN_OBJECTS_ACCESS_KEY_ID", var("WARDEN_TEST_S3_KEY_ID")),
                ("WARDEN_OBJECTS_SECRET_ACCESS_KEY", var("WARDEN_TEST_S3_SECRET")),
            ]);
            "the S3-compatible server"
        }
        Err(_) => {
            shared.push(("WARDEN_BLOB_DIR", blobs.path().to_string_lossy().into_owned()));
            "a shared folder (WARDEN_TEST_S3_ENDPOINT is not set)"
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut times = Vec::new();
    let mut admin: Option<String> = None;
    let mut key: Option<String> = None;
    let data_b = tempfile::tempdir()?;
    let state_b = tempfile::tempdir()?;
    let node = |name: &str, port: u16, state: &Path| {
        let mut env = shared.clone();
        env.extend([
            ("WARDEN_NODE_ID", name.to_owned()),
            ("WARDEN_CLUSTER_ADVERTISE_URL", format!("http://127.0.0.1:{port}")),
            ("WARDEN_STATE_DIR", state.to_string_lossy().into_owned()),
        ]);
        env
    };
    let free_port =
        || -> anyhow::Result<u16> { Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
    let port_b = free_port()?;
    let mut b: Option<Server> = None;
    for i in 0..samples {
        let (data_a, state_a) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let port_a = free_port()?;
        let a = crate::http::start_node(
            &warden,
            data_a.path(),
            port_a,
            &node(&format!("bench-a{i}"), port_a, state_a.path()),
            admin.clone(),
        )?;
        if admin.is_none() {
            admin = Some(a.admin.clone());
        }
        if b.is_none() {
            b = Some(crate::http::start_node(
                &warden,
                data_b.path(),
                port_b,
                &node("bench-b", port_b, state_b.path()),
                admin.clone(),
            )?);
        }
        let bb = b.as_ref().context("node B")?;
        let took = rt.block_on(async {
            if key.is_none() {
                key = Some(app_key(&c, &a).await?);
            }
            let key = key.clone().context("no key")?;
            let id = create(&c, &a.base, &key).await?;
            let sh = json!({"language": "shell", "code": "echo kept > kept.txt"});
            exec(&c, &a.base, &key, &id, &sh).await?;
            let r = c
                .post(format!("{}/v1/sessions/{id}/snapshots", a.base))
                .bearer_auth(&key)
                .send()
                .await?;
            if r.status() != reqwest::StatusCode::CREATED {
                bail!("snapshot: {} {}", r.status(), r.text().await?);
            }
            a.kill();
            let killed = Instant::now();
            let check = json!({"language": "shell", "code": "cat kept.txt"});
            loop {
                if killed.elapsed() > Duration::from_secs(60) {
                    bail!("the session did not answer on node B within 60 s");
                }
                // Listing is answered by B itself (never forwarded).
                let v: Value = c
                    .get(format!("{}/v1/sessions?status=running", bb.base))
                    .bearer_auth(&key)
                    .send()
                    .await?
                    .json()
                    .await?;
                let moved = v["items"].as_array().is_some_and(|a| {
                    a.iter().any(|s| {
                        s["id"] == id.as_str()
                            && s["node"] == "bench-b"
                            && s["status_reason"].as_str().is_some_and(|r| r.contains("resumed"))
                    })
                });
                if moved && exec(&c, &bb.base, &key, &id, &check).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let took = killed.elapsed().as_secs_f64() * 1000.0;
            c.delete(format!("{}/v1/sessions/{id}", bb.base))
                .bearer_auth(&key)
                .send()
                .await?;
            anyhow::Ok(took)
        })?;
        times.push(took);
    }
    let st = stats::of(times.clone());
    println!(
        "Settings: `cluster.heartbeat_secs` = {heartbeat}, `cluster.dead_after_secs` = {dead_after}; PostgreSQL; snapshots in {store}; a 1-file workspace.\n"
    );
    println!("| measurement | samples | p50 ms | max ms |\n|---|---:|---:|---:|");
    println!(
        "| `kill -9` of the session's node → the session answers an execution on the other node | {} | {:.0} | {:.0} |\n",
        times.len(),
        st.median,
        times.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "What it is made of: the others wait until the killed node's last heartbeat (sent up to one heartbeat before the kill) is `dead_after_secs` old, a node notices at its next heartbeat, then claims and restores the session.\n"
    );
    drop(b);
    Ok(())
}
