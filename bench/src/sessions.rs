//! Sessions, measured in the runtime (the HTTP figures: `sessions_http`):
//! how long a session takes to start; a trivial execution in a live session
//! in each mode, one client and two; what an idle session holds on the host
//! (RSS and PSS of its processes, and its cgroup's charge); against the
//! cheapest alternative on this machine, a fresh bubblewrap box per
//! execution with a bind-mounted workspace, in the same run.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use warden_jail::{Jail, JailConfig};
use warden_runtime::session::{ExecMode, Language, SessionBox, SessionExec, SessionSpec};
use warden_runtime::{CallLimits, CallStatus, Runner, RunnerConfig};

use crate::jail::{bwrap_args, find_in_path};
use crate::stats;

fn exec(s: &SessionBox, language: Language, mode: ExecMode, code: &str) -> anyhow::Result<()> {
    let o = s.exec(&SessionExec {
        language,
        mode,
        code: code.as_bytes().to_vec(),
        event: b"{}".to_vec(),
        limits: CallLimits::default(),
        env: vec![],
        tap: None,
    })?;
    if o.result.status != CallStatus::Success {
        bail!("{mode:?} failed: {:?}", o.result);
    }
    Ok(())
}

/// RSS and PSS (KiB) of a process, from `smaps_rollup`.
fn rss_pss(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// The host pids of a box: its init's descendants.
fn box_pids(init: i32) -> Vec<i32> {
    let mut out = vec![init];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        let kids = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        out.extend(kids.split_whitespace().filter_map(|k| k.parse::<i32>().ok()));
        i += 1;
    }
    out
}

pub fn run(runs: usize, idle: usize) -> anyhow::Result<()> {
    let jail = Jail::new(JailConfig {
        max_boxes: (idle + 8).max(64) as u32,
        ..JailConfig::default()
    })?;
    let runner = Runner::new(jail, RunnerConfig::default())?;
    println!("## Sessions (runtime, {} CPUs)\n", stats::num_cpus());

    // Start cost.
    let mut starts = Vec::new();
    for i in 0..runs.clamp(5, 50) + 2 {
        let t = Instant::now();
        let s = runner.start_session(SessionSpec::default())?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        exec(&s, Language::Shell, ExecMode::Script, "true")?;
        s.terminate();
        if i >= 2 {
            starts.push(ms);
        }
    }
    let st = stats::of(starts);
    println!("| measurement | p50 ms | p99 ms |\n|---|---:|---:|");
    println!(
        "| session start (agent ready) | {:.2} | {:.2} |",
        st.median, st.p99
    );

    // One trivial execution in a live session, per mode.
    let s = runner.start_session(SessionSpec::default())?;
    let cases: [(&str, Language, ExecMode, &str); 5] = [
        (
            "python script (`pass`)",
            Language::Python,
            ExecMode::Script,
            "pass",
        ),
        (
            "python handler",
            Language::Python,
            ExecMode::Handler,
            "def handler(e):\n    return {}\n",
        ),
        (
            "python stateful cell (`1 + 1`)",
            Language::Python,
            ExecMode::Repl,
            "1 + 1",
        ),
        (
            "javascript stateful cell",
            Language::Javascript,
            ExecMode::Repl,
            "1 + 1",
        ),
        ("shell script (`true`)", Language::Shell, ExecMode::Script, "true"),
    ];
    for (name, lang, mode, code) in cases {
        for _ in 0..3 {
            exec(&s, lang, mode, code)?;
        }
        let mut ms = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            exec(&s, lang, mode, code)?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let st = stats::of(ms);
        println!("| {name} | {:.2} | {:.2} |", st.median, st.p99);
    }

    // The cheapest alternative: a fresh bubblewrap box per execution.
    if let Some(st) = bwrap_per_execution(runs)? {
        println!(
            "| bubblewrap box per execution, python `pass` (baseline) | {:.2} | {:.2} |",
            st.median, st.p99
        );
    }

    // Two clients, two sessions: executions per second.
    let seconds = 3.0;
    let done = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for _ in 0..2 {
            let runner = &runner;
            let done = &done;
            handles.push(scope.spawn(move || -> anyhow::Result<()> {
                let s = runner.start_session(SessionSpec::default())?;
                let end = Instant::now() + Duration::from_secs_f64(seconds);
                while Instant::now() < end {
                    exec(&s, Language::Python, ExecMode::Repl, "1 + 1")?;
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a client panicked"))??;
        }
        Ok(())
    })?;
    println!(
        "\nStateful cells with 2 clients (2 sessions): {:.0} executions/s\n",
        done.load(std::sync::atomic::Ordering::Relaxed) as f64 / seconds
    );
    drop(s);

    // Idle sessions: what each holds.
    let t = Instant::now();
    let mut sessions = Vec::new();
    for _ in 0..idle {
        sessions.push(runner.start_session(SessionSpec::default())?);
    }
    let started = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (mut rss, mut pss, mut charged) = (0u64, 0u64, 0u64);
    let inits = idle_inits();
    for init in &inits {
        for pid in box_pids(*init) {
            let (r, p) = rss_pss(pid);
            rss += r;
            pss += p;
        }
    }
    for s in &sessions {
        charged += s.memory_bytes().unwrap_or(0);
    }
    let n = sessions.len().max(1) as f64;
    let per_pss_kib = pss as f64 / n;
    println!(
        "Idle sessions: {} started in {:.1} s",
        sessions.len(),
        started.as_secs_f64()
    );
    println!(
        "per idle session: RSS {:.1} MiB, PSS {:.1} MiB (init + agent), cgroup charge {:.1} MiB",
        rss as f64 / n / 1024.0,
        per_pss_kib / 1024.0,
        charged as f64 / n / (1 << 20) as f64
    );
    if per_pss_kib > 0.0 {
        println!(
            "24 GiB hold about {:.0} idle sessions by PSS",
            (24.0 * 1024.0 * 1024.0) / per_pss_kib
        );
    }
    Ok(())
}

/// The cheapest alternative a user has on this machine: a fresh bubblewrap
/// box per execution with a bind-mounted workspace, running `python3 -c
/// pass`; `None` without bubblewrap.
pub(crate) fn bwrap_per_execution(runs: usize) -> anyhow::Result<Option<stats::Stats>> {
    let Some(bwrap) = find_in_path("bwrap") else {
        return Ok(None);
    };
    let ws = tempfile::tempdir()?;
    let mut ms = Vec::with_capacity(runs);
    for i in 0..runs + 3 {
        let mut args = bwrap_args(&[]);
        let argv_at = args.iter().position(|a| a == "--").map_or(args.len(), |p| p);
        args.truncate(argv_at);
        args.extend(
            [
                "--bind",
                ws.path().to_str().unwrap_or("/tmp"),
                "/workspace",
                "--chdir",
                "/workspace",
                "--",
                "/usr/bin/python3",
                "-S",
                "-c",
                "pass",
            ]
            .map(String::from),
        );
        let t = Instant::now();
        let st = Command::new(&bwrap).args(&args).status().context("bwrap")?;
        if !st.success() {
            bail!("bwrap failed: {st}");
        }
        if i >= 3 {
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(Some(stats::of(ms)))
}

/// Inits of this process's live boxes: children of this process running
/// as a box uid (the jail's boxes are this process's children).
fn idle_inits() -> Vec<i32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 4 (after the command in parentheses) is the parent pid.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) {
            out.push(pid);
        }
    }
    out
}
