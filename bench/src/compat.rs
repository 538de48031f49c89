//! The compatibility APIs under load, through the real `warden serve`
//! (release): Dify-style Python 3 runs (the request Dify's Python 3
//! transformer builds: the code, then a runner decoding base64 inputs and
//! printing the output between `<<RESULT>>` markers) with 1, 8 and 50
//! concurrent clients (p50/p99, runs per second, refusals, records);
//! Piston-style Python and C runs; against a bubblewrap box spawned per run
//! (Python run bare in it; C compiled on the host and run in it, which
//! flatters the baseline), measured in the same run.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::http::{now_ms, raise_nofile, start_server};
use crate::jail::{bwrap_args, find_in_path};
use crate::stats;

/// The user's code in a Dify Python 3 code node.
const DIFY_CODE: &str = "def main(arg1: str, arg2: str) -> dict:\n    return {'result': arg1 + arg2}\n";

/// The program Dify sends for `DIFY_CODE` with two string inputs.
fn dify_program() -> String {
    // {"arg1": "hello ", "arg2": "world"}, base64, as the transformer encodes it.
    let inputs = "eyJhcmcxIjogImhlbGxvICIsICJhcmcyIjogIndvcmxkIn0=";
    format!(
        "{DIFY_CODE}\nimport json\nfrom base64 import b64decode\ninputs_obj = json.loads(b64decode('{inputs}').decode('utf-8'))\noutput_obj = main(**inputs_obj)\nprint(f'<<RESULT>>{{json.dumps(output_obj, indent=4)}}<<RESULT>>')\n"
    )
}

const C_PROGRAM: &str = "#include <stdio.h>\nint main(void) { printf(\"hello world\\n\"); return 0; }\n";

struct Load {
    clients: usize,
    ok: usize,
    busy: usize,
    other: usize,
    p50: f64,
    p99: f64,
    per_sec: f64,
    /// Runs served by a warm box, and runs that found none and went cold,
    /// during the row (the server's counters).
    warm: u64,
    cold: u64,
}

/// A counter from the server's `/metrics` (0 when absent).
async fn counter(c: &reqwest::Client, base: &str, admin: &str, name: &str) -> anyhow::Result<u64> {
    let text = c
        .get(format!("{base}/metrics"))
        .bearer_auth(admin)
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0, |v| v as u64))
}

/// `clients` concurrent clients sending Dify runs for `seconds`.
async fn dify_load(
    c: &reqwest::Client,
    url: &str,
    key: &str,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<Load> {
    let body = Arc::new(
        json!({"language": "python3", "code": dify_program(), "preload": "", "enable_network": true}),
    );
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let ok = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (c, url, key, body) = (c.clone(), url.to_owned(), key.to_owned(), body.clone());
        let (ok, busy, other) = (ok.clone(), busy.clone(), other.clone());
        tasks.push(tokio::spawn(async move {
            let mut ms = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                let r = c.post(&url).header("X-Api-Key", &key).json(&*body).send().await;
                let (status, v) = match r {
                    Ok(r) => {
                        let st = r.status().as_u16();
                        (st, r.json::<Value>().await.unwrap_or(Value::Null))
                    }
                    Err(_) => (0, Value::Null),
                };
                let good = status == 200
                    && v["code"] == 0
                    && v["data"]["error"] == ""
                    && v["data"]["stdout"]
                        .as_str()
                        .is_some_and(|s| s.contains("hello world"));
                if good {
                    ok.fetch_add(1, Ordering::Relaxed);
                    ms.push(t.elapsed().as_secs_f64() * 1000.0);
                } else if status == 503 {
                    busy.fetch_add(1, Ordering::Relaxed);
                } else {
                    other.fetch_add(1, Ordering::Relaxed);
                }
            }
            ms
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let wall = started.elapsed().as_secs_f64();
    let st = stats::of(all);
    let ok = ok.load(Ordering::Relaxed) as usize;
    Ok(Load {
        clients,
        ok,
        busy: busy.load(Ordering::Relaxed) as usize,
        other: other.load(Ordering::Relaxed) as usize,
        p50: st.median,
        p99: st.p99,
        per_sec: ok as f64 / wall,
        warm: 0,
        cold: 0,
    })
}

/// Sequential Piston runs of `body`: p50/p99 ms.
async fn piston_seq(
    c: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
    runs: usize,
) -> anyhow::Result<stats::Stats> {
    let mut ms = Vec::with_capacity(runs);
    for i in 0..runs + 3 {
        let t = Instant::now();
        let v: Value = c
            .post(url)
            .bearer_auth(key)
            .json(body)
            .send()
            .await?
            .json()
            .await?;
        if v["run"]["stdout"] != "hello world\n" {
            bail!("piston run: {v}");
        }
        if i >= 3 {
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(stats::of(ms))
}

/// One bubblewrap box per run: `argv` in a fresh box with a workspace.
fn bwrap_run(bwrap: &std::path::Path, ws: &std::path::Path, argv: &[&str]) -> anyhow::Result<()> {
    let mut args = bwrap_args(&[]);
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args.truncate(at);
    args.extend(
        [
            "--bind",
            ws.to_str().unwrap_or("/tmp"),
            "/workspace",
            "--chdir",
            "/workspace",
            "--",
        ]
        .map(String::from),
    );
    args.extend(argv.iter().map(|a| (*a).to_owned()));
    let out = Command::new(bwrap).args(&args).output().context("bwrap")?;
    if !out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("hello world") {
        bail!("bwrap run failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn bwrap_seq(
    bwrap: &std::path::Path,
    ws: &std::path::Path,
    argv: &[&str],
    runs: usize,
) -> anyhow::Result<stats::Stats> {
    let mut ms = Vec::with_capacity(runs);
    for i in 0..runs + 3 {
        let t = Instant::now();
        bwrap_run(bwrap, ws, argv)?;
        if i >= 3 {
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(stats::of(ms))
}

fn bwrap_rate(
    bwrap: &std::path::Path,
    ws: &std::path::Path,
    argv: &[&str],
    threads: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let done = AtomicU64::new(0);
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    std::thread::scope(|s| -> anyhow::Result<()> {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    while Instant::now() < end {
                        bwrap_run(bwrap, ws, argv)?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().map_err(|_| anyhow::anyhow!("a thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(done.load(Ordering::Relaxed) as f64 / seconds)
}

/// Run the benchmark: `seconds` per concurrency level, `runs` sequential
/// runs per Piston and baseline row.
pub fn run(seconds: f64, runs: usize) -> anyhow::Result<()> {
    raise_nofile();
    let warden = std::env::current_exe()?.with_file_name("warden");
    if !warden.exists() {
        bail!("{} is missing: run through bench/run", warden.display());
    }
    let data = tempfile::Builder::new()
        .prefix("warden-bench-compat-")
        .tempdir()?;
    let s = start_server(&warden, data.path(), &[])?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (loads, py, c_run, records) = rt.block_on(async {
        let c = reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .timeout(Duration::from_secs(120))
            .build()?;
        let post = |path: &str, body: Value| {
            c.post(format!("{}{path}", s.base))
                .bearer_auth(&s.admin)
                .json(&body)
        };
        post("/v1/apps", json!({"id": "bench"})).send().await?;
        let k: Value = post(
            "/v1/keys",
            json!({"name": "bench", "role": "app", "app": "bench"}),
        )
        .send()
        .await?
        .json()
        .await?;
        let key = k["secret"].as_str().context("no app key")?.to_owned();
        let since = now_ms();
        let dify = format!("{}/v1/sandbox/run", s.base);
        dify_load(&c, &dify, &key, 1, 1.0).await?;
        let mut loads = Vec::new();
        for clients in [1, 8, 50] {
            let warm0 = counter(&c, &s.base, &s.admin, "warden_warm_calls_total").await?;
            let cold0 = counter(&c, &s.base, &s.admin, "warden_cold_fallbacks_total").await?;
            let mut l = dify_load(&c, &dify, &key, clients, seconds).await?;
            l.warm = counter(&c, &s.base, &s.admin, "warden_warm_calls_total").await? - warm0;
            l.cold = counter(&c, &s.base, &s.admin, "warden_cold_fallbacks_total").await? - cold0;
            loads.push(l);
        }
        let piston = format!("{}/api/v2/execute", s.base);
        let py = piston_seq(
            &c,
            &piston,
            &key,
            &json!({"language": "python", "version": "*", "files": [{"content": "print('hello world')"}]}),
            runs,
        )
        .await?;
        let c_run = piston_seq(
            &c,
            &piston,
            &key,
            &json!({"language": "c", "version": "*", "files": [{"name": "main.c", "content": C_PROGRAM}]}),
            runs.min(50),
        )
        .await?;
        // Every accepted Dify run has its record.
        let mut n = 0usize;
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/v1/executions?app=bench&since={since}&limit=500", s.base);
            if let Some(cur) = &cursor {
                url.push_str(&format!("&cursor={cur}"));
            }
            let page: Value = c.get(url).bearer_auth(&s.admin).send().await?.json().await?;
            n += page["items"].as_array().map_or(0, Vec::len);
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        Ok::<_, anyhow::Error>((loads, py, c_run, n))
    })?;
    drop(s);

    println!("## Compatibility APIs\n");
    println!(
        "Host: {} cores. `warden serve` (release, SQLite, default settings: max_concurrent 16, max_queue 256, warm.max_per_code 4); the clients on the same host; {seconds} s per row.\n",
        stats::num_cpus()
    );
    println!("### Dify: Python 3 code node runs over HTTP (`POST /v1/sandbox/run`)\n");
    println!("| concurrent clients | runs ok | 503 | other | p50 ms | p99 ms | runs/s | warm | cold |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut accepted = 0;
    for l in &loads {
        accepted += l.ok;
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {} | {} |",
            l.clients, l.ok, l.busy, l.other, l.p50, l.p99, l.per_sec, l.warm, l.cold
        );
    }
    println!(
        "\nExecution records for the measured runs: {records} (runs answered: {accepted} Dify + warm-up + Piston rows).\n"
    );

    println!("### One run at a time: Warden against a bubblewrap box per run\n");
    println!("| what | p50 ms | p99 ms |\n|---|---:|---:|");
    println!(
        "| Piston `python` hello world over HTTP | {:.1} | {:.1} |",
        py.median, py.p99
    );
    println!(
        "| Piston `c` hello world over HTTP (compile in the jail + run) | {:.1} | {:.1} |",
        c_run.median, c_run.p99
    );
    if let Some(bwrap) = find_in_path("bwrap") {
        let ws = tempfile::Builder::new().prefix("warden-bench-bwrap-").tempdir()?;
        std::fs::write(ws.path().join("main.py"), dify_program())?;
        std::fs::write(ws.path().join("main.c"), C_PROGRAM)?;
        let py = bwrap_seq(&bwrap, ws.path(), &["/usr/bin/python3", "main.py"], runs)?;
        println!(
            "| bubblewrap box per run, the Dify program (`python3 main.py`), no HTTP | {:.1} | {:.1} |",
            py.median, py.p99
        );
        let st = Command::new("gcc")
            .args(["-O2", "-o"])
            .arg(ws.path().join("a.out"))
            .arg(ws.path().join("main.c"))
            .status()?;
        if !st.success() {
            bail!("gcc failed");
        }
        let c = bwrap_seq(&bwrap, ws.path(), &["./a.out"], runs)?;
        println!(
            "| bubblewrap box per run, C binary compiled on the host beforehand | {:.1} | {:.1} |",
            c.median, c.p99
        );
        let rate = bwrap_rate(
            &bwrap,
            ws.path(),
            &["/usr/bin/python3", "main.py"],
            stats::num_cpus(),
            seconds,
        )?;
        println!(
            "\nBubblewrap box per run, the Dify program, {} threads: {rate:.0} runs/s.\n",
            stats::num_cpus()
        );
    } else {
        println!("\n(bubblewrap is not installed: no baseline rows)\n");
    }
    if loads.iter().any(|l| l.other > 0) {
        bail!("some runs failed (see `other`)");
    }
    Ok(())
}
