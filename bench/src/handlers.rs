//! Handlers: Python and Node.js "hello" handlers served cold and warm,
//! against a bare interpreter spawned per call and the jail's command runtime
//! running the same script, at several concurrency levels.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use warden_jail::{Bind, BoxSpec, Jail, JailConfig, Status, Stdin};
use warden_runtime::{CallLimits, CallStatus, Code, Invocation, Runner, RunnerConfig, WarmConfig};

use crate::stats;

const EVENT: &str = r#"{"name": "bench"}"#;

struct Lang {
    runtime: &'static str,
    interpreter: &'static str,
    files: &'static [(&'static str, &'static str)],
    entrypoint: &'static str,
    /// A script doing what the wrapper does, for the bare and command rows.
    runner: &'static str,
}

const LANGS: &[Lang] = &[
    Lang {
        runtime: "python",
        interpreter: "/usr/bin/python3",
        files: &[
            (
                "main.py",
                "def handler(event):\n    return {'greeting': 'hello ' + event['name']}\n",
            ),
            (
                "run.py",
                "import json, sys\nsys.path.insert(0, sys.path[0])\nfrom main import handler\nprint(json.dumps(handler(json.load(sys.stdin))))\n",
            ),
        ],
        entrypoint: "main.py",
        runner: "run.py",
    },
    Lang {
        runtime: "node",
        interpreter: "/usr/bin/node",
        files: &[
            (
                "main.js",
                "exports.handler = async (event) => ({ greeting: 'hello ' + event.name });\n",
            ),
            (
                "run.js",
                "const { handler } = require('./main.js');\nlet d = '';\nprocess.stdin.on('data', (c) => (d += c)).on('end', async () => console.log(JSON.stringify(await handler(JSON.parse(d)))));\n",
            ),
        ],
        entrypoint: "main.js",
        runner: "run.js",
    },
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Bare,
    Command,
    Cold,
    Warm,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare interpreter per call",
            Variant::Command => "jail, command runtime",
            Variant::Cold => "handler, cold",
            Variant::Warm => "handler, warm",
        }
    }
}

struct Cell {
    latencies_ms: Vec<f64>,
    calls: usize,
    warm: usize,
    elapsed: Duration,
}

fn plugin_dir(lang: &Lang, root: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join(lang.runtime);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    for (name, text) in lang.files {
        let p = dir.join(name);
        std::fs::write(&p, text)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(dir)
}

/// What every call of one cell shares.
struct Target<'a> {
    lang: &'a Lang,
    dir: &'a Path,
    code: &'a Code,
    jail: &'a Jail,
    runner: &'a Runner,
}

fn one_call(v: Variant, t: &Target<'_>) -> anyhow::Result<bool> {
    let Target {
        lang,
        dir,
        code,
        jail,
        runner,
    } = *t;
    match v {
        Variant::Bare => {
            // The box's environment, not this shell's: a host variable such
            // as NODE_EXTRA_CA_CERTS (set on the reference machine) would
            // make the baseline slower than the box and flatter Warden.
            let mut child = Command::new(lang.interpreter)
                .arg(dir.join(lang.runner))
                .env_clear()
                .envs(warden_jail::default_env())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            use std::io::Write;
            child.stdin.take().context("stdin")?.write_all(EVENT.as_bytes())?;
            let out = child.wait_with_output()?;
            if !out.status.success() || !out.stdout.starts_with(b"{") {
                bail!("bare {} failed", lang.runtime);
            }
            Ok(false)
        }
        Variant::Command => {
            let mut spec = BoxSpec::command([lang.interpreter.to_owned(), format!("/code/{}", lang.runner)]);
            spec.mounts.ro_binds.push(Bind {
                host: dir.to_owned(),
                target: "/code".into(),
                optional: false,
            });
            spec.stdin = Stdin::Bytes(EVENT.as_bytes().to_vec());
            let out = jail.run(spec)?;
            if out.status != Status::Ok {
                bail!(
                    "command box: {} {:?} {}",
                    out.status,
                    out.message,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(false)
        }
        Variant::Cold | Variant::Warm => {
            let inv = Invocation::new(EVENT.as_bytes().to_vec(), CallLimits::default());
            let r = if v == Variant::Cold {
                runner.invoke_cold(code, &inv)?
            } else {
                runner.invoke(code, &inv)?
            };
            if r.status != CallStatus::Success {
                bail!("handler call: {:?} {:?}", r.status, r.error);
            }
            Ok(r.warm)
        }
    }
}

fn cell(v: Variant, target: &Target<'_>, conc: usize, dur: Duration) -> anyhow::Result<Cell> {
    let start = Instant::now();
    let deadline = start + dur;
    let per_thread: Vec<anyhow::Result<(Vec<f64>, usize)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..conc)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<(Vec<f64>, usize)> {
                    let mut lat = Vec::new();
                    let mut warm = 0;
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        if one_call(v, target)? {
                            warm += 1;
                        }
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok((lat, warm))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("bench thread")).collect()
    });
    let mut c = Cell {
        latencies_ms: Vec::new(),
        calls: 0,
        warm: 0,
        elapsed: start.elapsed(),
    };
    for r in per_thread {
        let (lat, warm) = r?;
        c.calls += lat.len();
        c.warm += warm;
        c.latencies_ms.extend(lat);
    }
    Ok(c)
}

/// Table rows for the first idle warm box of `key`.
fn box_memory(runner: &Runner, key: &str, when: &str) -> Vec<String> {
    runner
        .warm_boxes(key)
        .into_iter()
        .take(1)
        .map(|b| {
            let (srss, spss) = b.program_pid.map(rss_pss).unwrap_or((0, 0));
            let (irss, ipss) = rss_pss(b.init_pid);
            let mib = |k: u64| k as f64 / 1024.0;
            format!(
                "| {when} | python fork-server | {:.1} | {:.1} |\n| {when} | its box's init | {:.1} | {:.1} |",
                mib(srss),
                mib(spss),
                mib(irss),
                mib(ipss)
            )
        })
        .collect()
}

/// Resident and proportional set size of a process, in KiB.
fn rss_pss(pid: i32) -> (u64, u64) {
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (field(&status, "VmRSS:"), field(&rollup, "Pss:"))
}

pub fn run(seconds: f64) -> anyhow::Result<()> {
    let dur = Duration::from_secs_f64(seconds);
    let jail = Jail::new(JailConfig::default())?;
    jail.prewarm(8)?;
    let runner = Runner::new(
        jail.clone(),
        RunnerConfig {
            warm: WarmConfig {
                max_per_code: 8,
                prewarm_per_code: 2,
                ..WarmConfig::default()
            },
            ..RunnerConfig::default()
        },
    )?;
    let root = tempfile::Builder::new().prefix("warden-bench-").tempdir()?;
    println!("## Handlers: latency and throughput, {seconds} s per cell\n");
    println!(
        "Host: {} cores. Event `{EVENT}`; every variant starts the interpreter (or forks it, warm), loads the handler, calls it, and returns JSON.\n",
        stats::num_cpus()
    );
    println!("| runtime | variant | concurrency | p50 ms | p99 ms | calls/s | served warm |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut memory = Vec::new();
    for lang in LANGS {
        let dir = plugin_dir(lang, root.path())?;
        let code = Code {
            key: format!("bench/{}", lang.runtime),
            runtime: lang.runtime.into(),
            dir: dir.clone(),
            entrypoint: lang.entrypoint.into(),
            handler: "handler".into(),
            layer: None,
            network: None,
        };
        runner.prewarm(&code, &CallLimits::default())?;
        let target = Target {
            lang,
            dir: &dir,
            code: &code,
            jail: &jail,
            runner: &runner,
        };
        if lang.runtime == "python" {
            let deadline = Instant::now() + Duration::from_secs(10);
            while runner.warm_idle(&code.key) == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            memory.extend(box_memory(&runner, &code.key, "fresh, before any call"));
        }
        for v in [Variant::Bare, Variant::Command, Variant::Cold, Variant::Warm] {
            for conc in [1usize, 2, 8] {
                if v == Variant::Warm {
                    // Let the pool grow to this concurrency first.
                    let _ = cell(v, &target, conc, Duration::from_secs_f64(seconds.min(1.0)))?;
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while runner.warm_idle(&code.key) < conc.min(8) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                let c = cell(v, &target, conc, dur)?;
                let calls = c.calls;
                let warm = c.warm;
                let rate = calls as f64 / c.elapsed.as_secs_f64();
                let s = stats::of(c.latencies_ms);
                let warm_share = if matches!(v, Variant::Warm | Variant::Cold) {
                    format!("{:.0}%", 100.0 * warm as f64 / calls.max(1) as f64)
                } else {
                    "–".into()
                };
                println!(
                    "| {} | {} | {conc} | {:.2} | {:.2} | {:.0} | {warm_share} |",
                    lang.runtime,
                    v.name(),
                    s.median,
                    s.p99,
                    rate
                );
            }
        }
        if lang.runtime == "python" {
            std::thread::sleep(Duration::from_millis(200));
            memory.extend(box_memory(&runner, &code.key, "after the runs above"));
        }
        runner.retire(&code.key);
    }
    println!("\n## An idle warm box\n");
    println!("| when | process | RSS MiB | PSS MiB |");
    println!("|---|---|---:|---:|");
    for m in memory {
        println!("{m}");
    }
    println!(
        "\nPSS divides shared pages among the processes sharing them; init is a copy-on-write fork of the host process, so most of its RSS is shared with it."
    );
    Ok(())
}
