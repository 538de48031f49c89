//! Trust tiers: the same trivial plugin, a greeting, run as a built-in
//! (`warden.builtin.template`, in-process Rust), as a wasm module (a WASI
//! command writing its answer, in wasmtime, a fresh instance per call) and
//! as a warm jailed Python handler (the hello sample):
//!
//! 1. in the runtime, in this process: p50/p99 per call and calls/s;
//! 2. over HTTP through a release `warden serve`: p50/p99 per execute,
//!    beside the HTTP floor (an authenticated `GET /v1/me`) measured in the
//!    same run, interleaved so that drift hits every row alike.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use warden_builtins::{Builtin, Limits};

use crate::http::{Direct, package as python_package, raise_nofile, start_server};
use crate::stats;

/// The greeting every tier returns.
const GREETING: &str = r#"{"greeting":"hello bench"}"#;

/// The built-in's event: a one-line template.
fn builtin_event() -> Value {
    json!({"template": "{\"greeting\":\"hello {{ name }}\"}", "context": {"name": "bench"}})
}

/// A WASI command that writes [`GREETING`] to stdout.
fn wasm_module() -> anyhow::Result<Vec<u8>> {
    let data = GREETING.replace('"', "\\\"");
    let wat = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{data}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        len = GREETING.len()
    );
    Ok(wat::parse_str(&wat)?)
}

fn wasm_package(module: &[u8]) -> Vec<u8> {
    let manifest = json!({
        "code": "vendor.bench.wasm_hello",
        "name": "wasm hello",
        "version": "1.0.0",
        "type": "sandbox",
        "runtime": "wasm",
        "entrypoint": "plugin.wasm",
        "description": "A greeting from a WASI command, for the tiers benchmark.",
        "author": "bench",
        "input_schema": {"type": "object"},
        "output_schema": {"type": "object"}
    });
    warden_package::build::ZipBuilder::new()
        .file("manifest.json", manifest.to_string().as_bytes())
        .file("plugin.wasm", module)
        .finish()
}

/// Time `n` calls of `f` (after `n / 10` unmeasured): per-call ms and
/// calls per second over the measured ones.
fn measure(n: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<(stats::Stats, f64)> {
    for _ in 0..n / 10 {
        f()?;
    }
    let mut ms = Vec::with_capacity(n);
    let all = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let per_sec = n as f64 / all.elapsed().as_secs_f64();
    Ok((stats::of(ms), per_sec))
}

/// Upload, submit, approve `zip` as the admin and install it in app
/// `bench`.
async fn publish(c: &reqwest::Client, base: &str, admin: &str, zip: Vec<u8>) -> anyhow::Result<String> {
    let r = c
        .post(format!("{base}/v1/plugins"))
        .bearer_auth(admin)
        .header("content-type", "application/zip")
        .body(zip)
        .send()
        .await?;
    let v: Value = r.json().await?;
    let (Some(code), Some(version)) = (v["plugin"].as_str(), v["version"].as_str()) else {
        bail!("upload: {v}");
    };
    let (code, version) = (code.to_owned(), version.to_owned());
    for step in ["submit", "approve"] {
        let r = c
            .post(format!("{base}/v1/plugins/{code}/versions/{version}/{step}"))
            .bearer_auth(admin)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("{step} {code}: {}", r.text().await?);
        }
    }
    install(c, base, admin, &code).await?;
    Ok(code)
}

async fn install(c: &reqwest::Client, base: &str, admin: &str, code: &str) -> anyhow::Result<()> {
    c.post(format!("{base}/v1/apps"))
        .bearer_auth(admin)
        .json(&json!({"id": "bench"}))
        .send()
        .await?;
    let r = c
        .post(format!("{base}/v1/apps/bench/installations"))
        .bearer_auth(admin)
        .json(&json!({ "plugin": code }))
        .send()
        .await?;
    if !(r.status().is_success() || r.status().as_u16() == 409) {
        bail!("install {code}: {}", r.text().await?);
    }
    Ok(())
}

/// One execute over HTTP, in ms; an error unless it succeeded.
async fn execute(c: &reqwest::Client, url: &str, key: &str, event: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    let r = c
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(event.to_owned())
        .send()
        .await?;
    let v: Value = r.json().await?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if v["status"] != "success" {
        bail!("{url} did not succeed: {v}");
    }
    Ok(ms)
}

pub fn run(calls: usize) -> anyhow::Result<()> {
    raise_nofile();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let warden = std::env::current_exe()?.with_file_name("warden");
    if !warden.exists() {
        bail!("{} is missing: run through bench/run", warden.display());
    }

    // 1. In the runtime.
    let builtin = warden_builtins::Template;
    let event = builtin_event();
    let limits = Limits {
        timeout: Duration::from_secs(5),
        output_bytes: 1 << 20,
    };
    let (b_stats, b_rate) = measure(calls, || {
        builtin
            .call(&event, limits, &mut warden_builtins::Context::default())
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    })?;
    let engine = warden_wasm::Engine::new(warden_wasm::EngineConfig::default())?;
    let module_bytes = wasm_module()?;
    let module = engine
        .compile(&module_bytes)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let call = warden_wasm::Call {
        stdin: b"{}",
        timeout: Duration::from_secs(5),
        memory_bytes: 16 << 20,
        output_bytes: 1 << 20,
        tap: None,
    };
    let (w_stats, w_rate) = measure(calls, || {
        let r = engine.run(&module, &call);
        if r.end != warden_wasm::End::Exited(0) || r.stdout != GREETING.as_bytes() {
            bail!("the wasm call failed: {:?}", r.end);
        }
        Ok(())
    })?;
    let direct = Direct::new(&root)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (j_stats, j_rate) = rt.block_on(async { measure(calls, || direct.call().map(drop)) })?;

    // 2. Over HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = rt.block_on(async {
        let c = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let data = tempfile::Builder::new().prefix("warden-bench-tiers-").tempdir()?;
        // The wasm version is untrusted here (no signing key in the bench):
        // the operator lets it use the in-process tier.
        let env = [("WARDEN_TIERS_WASM_UNTRUSTED", "true".to_owned())];
        let s = start_server(&warden, data.path(), &env)?;
        let wasm_code = publish(&c, &s.base, &s.admin, wasm_package(&module_bytes)).await?;
        let py_code = publish(&c, &s.base, &s.admin, python_package(&root)?).await?;
        install(&c, &s.base, &s.admin, "warden.builtin.template").await?;
        let r: Value = c
            .post(format!("{}/v1/keys", s.base))
            .bearer_auth(&s.admin)
            .json(&json!({"name": "bench", "role": "app", "app": "bench"}))
            .send()
            .await?
            .json()
            .await?;
        let key = r["secret"].as_str().context("no app key")?.to_owned();
        let url = |code: &str| format!("{}/v1/apps/bench/plugins/{code}/execute", s.base);
        let rows = [
            (url("warden.builtin.template"), builtin_event().to_string()),
            (url(&wasm_code), "{}".to_owned()),
            (url(&py_code), r#"{"name": "bench"}"#.to_owned()),
        ];
        let me = format!("{}/v1/me", s.base);
        let mut floor = Vec::with_capacity(calls);
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(calls); rows.len()];
        for _ in 0..calls / 10 {
            for (u, e) in &rows {
                execute(&c, u, &key, e).await?;
            }
        }
        for _ in 0..calls {
            let t = Instant::now();
            c.get(&me).bearer_auth(&key).send().await?.bytes().await?;
            floor.push(t.elapsed().as_secs_f64() * 1000.0);
            for (i, (u, e)) in rows.iter().enumerate() {
                times[i].push(execute(&c, u, &key, e).await?);
            }
        }
        drop(s);
        anyhow::Ok((
            stats::of(floor),
            times.into_iter().map(stats::of).collect::<Vec<_>>(),
        ))
    })?;
    let (floor, over) = http;

    println!("### Trust tiers: one trivial plugin per tier, {calls} calls each\n");
    println!(
        "Host: {} cores. The greeting as `warden.builtin.template` (built-in), a WASI command in wasmtime (a fresh instance per call), and the hello Python handler warm in the jail.\n",
        stats::num_cpus()
    );
    println!("| in the runtime (this process) | p50 µs | p99 µs | calls/s |");
    println!("|---|---:|---:|---:|");
    for (name, s, rate) in [
        ("built-in (`Builtin::call`)", &b_stats, b_rate),
        ("wasm (`Engine::run`, instantiation included)", &w_stats, w_rate),
        ("jail, warm Python (`Runner::invoke`)", &j_stats, j_rate),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.0} |",
            s.median * 1000.0,
            s.p99 * 1000.0,
            rate
        );
    }
    println!("\n| over HTTP (`warden serve`, release, SQLite) | p50 ms | p99 ms | p50 over the floor ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| HTTP floor (`GET /v1/me`, authenticated) | {:.3} | {:.3} | — |",
        floor.median, floor.p99
    );
    for (name, s) in ["built-in", "wasm", "jail, warm Python"].iter().zip(&over) {
        println!(
            "| {name} | {:.3} | {:.3} | {:+.3} |",
            s.median,
            s.p99,
            s.median - floor.median
        );
    }
    Ok(())
}
