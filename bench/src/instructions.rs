//! Instruction counts of fixed pieces of work, under `valgrind --tool=callgrind`,
//! against a committed baseline (`bench/instructions.json`).
//!
//! Wall time on a shared 2-core machine moves by tens of percent from one
//! run to the next; the number of instructions a fixed piece of work retires
//! does not. So CI compares counts, and fails when one grows by more than
//! [`TOLERANCE`]. What valgrind can run is user-space work: the jail itself
//! refuses to start under valgrind 3.19 (Debian 12), which implements
//! neither `landlock_*` nor `open_tree`, and Warden never runs code without
//! them. The kernel's share of a box's start is measured by `bench/run jail`.
//!
//! Each case but `cli-start` runs in this binary (`--case NAME`); its count
//! is the process's minus the `none` case's (the same process doing nothing),
//! divided by its repetitions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use warden_builtins::{Builtin, Limits};

/// A count may grow by this fraction of its baseline before the check fails.
pub const TOLERANCE: f64 = 0.15;

/// The baseline, committed beside the benchmarks.
fn baseline_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("instructions.json")
}

/// One piece of work: its name, what it stands for, and how many times a
/// run repeats it.
struct Case {
    name: &'static str,
    what: &'static str,
    reps: u64,
}

const CASES: &[Case] = &[
    Case {
        name: "cli-start",
        what: "`warden --version`: the CLI binary's start, relocations included (`warden run` pays it)",
        reps: 1,
    },
    Case {
        name: "seccomp-compile",
        what: "load and compile the `default` seccomp profile (once per profile and process)",
        reps: 10,
    },
    Case {
        name: "seccomp-launch",
        what: "patch a launch's tokens into the compiled program (every box start)",
        reps: 1000,
    },
    Case {
        name: "package-open",
        what: "check the hello-python package: archive, manifest, schemas (every upload)",
        reps: 20,
    },
    Case {
        name: "builtin-template",
        what: "the template built-in's call (the built-in tier's call)",
        reps: 1000,
    },
    Case {
        name: "builtin-jq",
        what: "the jq built-in's call: `.items \\| map(.price) \\| add`",
        reps: 20,
    },
];

/// Run one case `reps` times in this process (under valgrind, by [`run`]).
pub fn case(name: &str) -> anyhow::Result<()> {
    let Some(c) = CASES.iter().find(|c| c.name == name) else {
        if name == "none" {
            return Ok(());
        }
        bail!("no case `{name}`");
    };
    match name {
        "seccomp-compile" => {
            for _ in 0..c.reps {
                let p = warden_jail::seccomp::Profile::load("default")?.compile(true)?;
                std::hint::black_box(p);
            }
        }
        "seccomp-launch" => {
            let p = warden_jail::seccomp::Profile::load("default")?.compile(true)?;
            // The one compile is counted too, spread over the launches.
            for i in 0..c.reps {
                std::hint::black_box(p.with_tokens(0x7f00_0000_1000 + i, 0xdead_beef ^ i));
            }
        }
        "package-open" => {
            let zip = hello_python();
            let policy = warden_package::Policy::default();
            for _ in 0..c.reps {
                let pkg = warden_package::open(&zip, &policy).map_err(|p| anyhow::anyhow!("{p:?}"))?;
                std::hint::black_box(pkg);
            }
        }
        "builtin-template" => {
            let event =
                json!({"template": "{\"greeting\":\"hello {{ name }}\"}", "context": {"name": "bench"}});
            call(&warden_builtins::Template, &event, c.reps)?;
        }
        "builtin-jq" => {
            let event = json!({
                "program": ".items | map(.price) | add",
                "input": {"items": [{"price": 1}, {"price": 2.5}, {"price": 4}]}
            });
            call(&warden_builtins::Jq, &event, c.reps)?;
        }
        "cli-start" => bail!("`cli-start` runs the warden binary itself, not a case of this one"),
        _ => bail!("no case `{name}`"),
    }
    Ok(())
}

fn call(b: &dyn Builtin, event: &Value, reps: u64) -> anyhow::Result<()> {
    let limits = Limits {
        timeout: Duration::from_secs(30),
        output_bytes: 1 << 20,
    };
    for _ in 0..reps {
        let out = b
            .call(event, limits, &mut warden_builtins::Context::default())
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        std::hint::black_box(out);
    }
    Ok(())
}

fn hello_python() -> Vec<u8> {
    warden_package::build::ZipBuilder::new()
        .file(
            "manifest.json",
            include_bytes!("../../examples/plugins/hello-python/manifest.json"),
        )
        .file(
            "main.py",
            include_bytes!("../../examples/plugins/hello-python/main.py"),
        )
        .finish()
}

/// Instructions retired by `program args…` under callgrind.
fn count(program: &Path, args: &[&str]) -> anyhow::Result<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(program)
        .args(args)
        .output()
        .context("running valgrind (apt-get install valgrind)")?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{} {args:?} under valgrind failed ({}):\n{err}",
            program.display(),
            out.status
        );
    }
    // "==123== Collected : 4567"
    err.lines()
        .find_map(|l| l.split_once("Collected :").map(|(_, n)| n.trim().to_owned()))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no instruction count in valgrind's output:\n{err}"))
}

/// Count every case, print the table, compare with the baseline (or write
/// it). Fails when a case grew by more than [`TOLERANCE`] or has no
/// baseline.
pub fn run(write_baseline: bool) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let warden = me.with_file_name("warden");
    if !warden.is_file() {
        bail!("{} not found: build it first (bench/run does)", warden.display());
    }
    let none = count(&me, &["instructions", "--case", "none"])?;
    let mut counts = BTreeMap::new();
    for c in CASES {
        let n = if c.name == "cli-start" {
            count(&warden, &["--version"])?
        } else {
            let total = count(&me, &["instructions", "--case", c.name])?;
            total.saturating_sub(none) / c.reps
        };
        counts.insert(c.name.to_owned(), n);
    }
    let path = baseline_path();
    if write_baseline {
        let doc = serde_json::to_string_pretty(&counts)? + "\n";
        std::fs::write(&path, doc).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    let baseline: BTreeMap<String, u64> = match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("{} does not parse", path.display()))?
        }
        Err(e) => bail!("cannot read the baseline {}: {e}", path.display()),
    };

    println!("## Instructions per piece of work (callgrind), against `bench/instructions.json`\n");
    println!("The process doing nothing: {none} instructions (subtracted from each case run in it).\n");
    println!("| case | what | instructions | baseline | × baseline |");
    println!("|---|---|---:|---:|---:|");
    let mut failures = Vec::new();
    for c in CASES {
        let n = counts[c.name];
        match baseline.get(c.name) {
            Some(&b) => {
                let ratio = n as f64 / b.max(1) as f64;
                println!("| `{}` | {} | {n} | {b} | {ratio:.3} |", c.name, c.what);
                if ratio > 1.0 + TOLERANCE {
                    failures.push(format!(
                        "`{}` grew to {ratio:.2}× its baseline ({n} against {b} instructions)",
                        c.name
                    ));
                }
            }
            None => {
                println!("| `{}` | {} | {n} | — | — |", c.name, c.what);
                failures.push(format!("`{}` has no baseline", c.name));
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "instruction counts regressed by more than {:.0}%:\n  {}\nIf the growth is intended, say why in the commit and \
             rewrite the baseline: bench/run instructions --write-baseline",
            TOLERANCE * 100.0,
            failures.join("\n  ")
        );
    }
    Ok(())
}
