//! Start cost of the jail against bare processes, bubblewrap and firejail.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use warden_jail::{BoxSpec, Jail, JailConfig, Status};

use crate::stats;

/// One way of running a command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Bare,
    JailLib,
    JailLibFreshNetns,
    WardenCli,
    Bwrap,
    Firejail,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare process",
            Variant::JailLib => "warden jail (library)",
            Variant::JailLibFreshNetns => "warden jail, fresh netns per run",
            Variant::WardenCli => "`warden run` (binary)",
            Variant::Bwrap => "bubblewrap",
            Variant::Firejail => "firejail",
        }
    }
}

struct Ctx {
    jail: Jail,
    jail_fresh_netns: Jail,
    warden: PathBuf,
    bwrap: Option<PathBuf>,
    firejail: Option<PathBuf>,
    _state: tempfile::TempDir,
}

/// bubblewrap with the isolation `warden run` gives by default (minus
/// seccomp, cgroups and landlock, which bwrap does not set up itself).
pub(crate) fn bwrap_args(argv: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--ro-bind",
        "/etc/alternatives",
        "/etc/alternatives",
        "--ro-bind",
        "/etc/ld.so.cache",
        "/etc/ld.so.cache",
        "--tmpfs",
        "/tmp",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--cap-drop",
        "ALL",
        "--hostname",
        "warden",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(argv.iter().map(|s| s.to_string()));
    a
}

/// firejail as close to `warden run`'s isolation as its options go: the
/// host's root read-only (it cannot build a minimal root as Warden and
/// bubblewrap do), private home, `/tmp` and `/dev`, no network, new IPC
/// namespace, every capability dropped, `no_new_privs`, its default seccomp
/// filter. No landlock, no cgroup limits.
fn firejail_args(argv: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--quiet",
        "--noprofile",
        "--read-only=/",
        "--private",
        "--private-tmp",
        "--private-dev",
        "--net=none",
        "--ipc-namespace",
        "--caps.drop=all",
        "--nonewprivs",
        "--seccomp",
        "--hostname=warden",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(argv.iter().map(|s| s.to_string()));
    a
}

/// Run `program args` with no input or output; an unsuccessful exit is an
/// error naming it.
fn quiet(program: &std::path::Path, args: &[String]) -> anyhow::Result<()> {
    let st = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("{} {args:?} failed: {st}", program.display());
    }
    Ok(())
}

fn run_once(ctx: &Ctx, v: Variant, argv: &[&str]) -> anyhow::Result<Duration> {
    let start = Instant::now();
    match v {
        Variant::Bare => {
            let st = Command::new(argv[0])
                .args(&argv[1..])
                .env_clear()
                .envs(warden_jail::default_env()) // the environment a box starts with
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()?;
            if !st.success() {
                bail!("bare {argv:?} failed");
            }
        }
        Variant::JailLib | Variant::JailLibFreshNetns => {
            let jail = if v == Variant::JailLib {
                &ctx.jail
            } else {
                &ctx.jail_fresh_netns
            };
            let out = jail.run(BoxSpec::command(argv.iter().copied()))?;
            if out.status != Status::Ok {
                bail!("jail run of {argv:?}: {} {:?}", out.status, out.message);
            }
        }
        Variant::WardenCli => {
            let mut args = vec!["run".to_owned(), "--".to_owned()];
            args.extend(argv.iter().map(|s| s.to_string()));
            quiet(&ctx.warden, &args)?;
        }
        Variant::Bwrap => quiet(
            ctx.bwrap.as_ref().context("bwrap not installed")?,
            &bwrap_args(argv),
        )?,
        Variant::Firejail => quiet(
            ctx.firejail.as_ref().context("firejail not installed")?,
            &firejail_args(argv),
        )?,
    }
    Ok(start.elapsed())
}

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub fn run(runs: usize, seconds: f64) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let warden = exe.with_file_name("warden");
    if !warden.is_file() {
        bail!("{} not found: build it first (bench/run does)", warden.display());
    }
    let state = tempfile::tempdir()?;
    let fresh_state = state.path().join("fresh");
    let ctx = Ctx {
        jail: Jail::new(JailConfig::default())?,
        jail_fresh_netns: Jail::new(JailConfig {
            state_dir: Some(fresh_state),
            pool_netns: false,
            ..JailConfig::default()
        })?,
        warden,
        bwrap: find_in_path("bwrap"),
        firejail: find_in_path("firejail"),
        _state: state,
    };
    ctx.jail.prewarm(2)?;
    ctx.jail_fresh_netns.prewarm(2)?;

    let mut variants = vec![
        Variant::Bare,
        Variant::JailLib,
        Variant::JailLibFreshNetns,
        Variant::WardenCli,
    ];
    if ctx.bwrap.is_some() {
        variants.push(Variant::Bwrap);
    } else {
        eprintln!("note: bubblewrap is not installed (apt-get install bubblewrap); its rows are left out");
    }
    if ctx.firejail.is_some() {
        variants.push(Variant::Firejail);
    } else {
        eprintln!("note: firejail is not installed (apt-get install firejail); its rows are left out");
    }
    let commands: [(&str, &[&str]); 2] = [
        ("/bin/true", &["/bin/true"]),
        ("python3 -c pass", &["/usr/bin/python3", "-c", "pass"]),
    ];

    println!("## Start cost: median and p99 wall time, {runs} interleaved runs each\n");
    println!(
        "Host: {} cores, kernel {}.\n",
        stats::num_cpus(),
        stats::read_trim("/proc/sys/kernel/osrelease")
    );
    println!("| command | variant | median ms | p99 ms | × bare | overhead over bare (median) |");
    println!("|---|---|---:|---:|---:|---:|");
    for (label, argv) in commands {
        let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); variants.len()];
        for _ in 0..(runs / 10).max(3) {
            for v in &variants {
                run_once(&ctx, *v, argv)?; // warm-up: page cache, pooled slots
            }
        }
        for _ in 0..runs {
            for (i, v) in variants.iter().enumerate() {
                samples[i].push(run_once(&ctx, *v, argv)?.as_secs_f64() * 1000.0);
            }
        }
        let all: Vec<stats::Stats> = samples.into_iter().map(stats::of).collect();
        let bare = all[0].median;
        for (v, s) in variants.iter().zip(&all) {
            println!(
                "| `{label}` | {} | {:.2} | {:.2} | {:.2} | {:+.2} ms |",
                v.name(),
                s.median,
                s.p99,
                s.median / bare,
                s.median - bare
            );
        }
    }

    println!("\n## Throughput: `/bin/true` runs per second with 2 concurrent callers, {seconds} s each\n");
    println!("| variant | runs/s | × bare |");
    println!("|---|---:|---:|");
    let mut bare_rate = 0.0;
    for v in &variants {
        let rate = throughput(&ctx, *v, &["/bin/true"], 2, Duration::from_secs_f64(seconds))?;
        if *v == Variant::Bare {
            bare_rate = rate;
        }
        println!("| {} | {:.0} | {:.2} |", v.name(), rate, rate / bare_rate);
    }
    let _ = ctx.jail_fresh_netns.clean_pool();
    Ok(())
}

fn throughput(ctx: &Ctx, v: Variant, argv: &[&str], threads: usize, dur: Duration) -> anyhow::Result<f64> {
    let deadline = Instant::now() + dur;
    let counts: Vec<anyhow::Result<usize>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<usize> {
                    let mut n = 0;
                    while Instant::now() < deadline {
                        run_once(ctx, v, argv)?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("bench thread")).collect()
    });
    let mut total = 0;
    for c in counts {
        total += c?;
    }
    Ok(total as f64 / dur.as_secs_f64())
}
