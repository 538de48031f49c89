//! `warden run`: one command in a fresh jail.
//!
//! Without `--json` the program's output streams through to the terminal as
//! it is produced and Warden's own report goes to stderr; the exit code says
//! how the run ended (see `docs/cli.md`). With `--json` the whole result,
//! output included, is printed on stdout as one JSON object.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use warden_jail::{
    Bind, BoxSpec, Jail, JailConfig, Limits, OutputLimitAction, OutputSink, RunOutcome, Status, Stdin,
    Stream, WalkLimits, WorkspaceSpec,
};

use crate::size::parse_size;
use crate::style;

/// Arguments of `warden run`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: the program's own code when it ran to the end; otherwise 124 timeout, \
125 Warden failed or refused, 126 cannot execute, 137 memory limit, 152 CPU limit, 153 output limit, \
159 seccomp violation, 128+N killed by signal N."
)]
pub struct RunArgs {
    /// Print the result (status, output, figures) as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Wall-clock limit in seconds; everything in the box is killed after it.
    #[arg(short = 't', long, default_value = "10", value_name = "SECS")]
    timeout: f64,
    /// CPU-time limit per process in seconds (0: none).
    #[arg(long, default_value = "10", value_name = "SECS")]
    cpu_time: f64,
    /// Memory limit for the whole box (0: none).
    #[arg(short = 'm', long, default_value = "256M", value_parser = parse_size, value_name = "SIZE")]
    memory: u64,
    /// Processes and threads in the box (0: none).
    #[arg(long, default_value = "64", value_name = "N")]
    pids: u32,
    /// CPU bandwidth in cores (0: none).
    #[arg(long, default_value = "1", value_name = "CORES")]
    cpus: f64,
    /// Bytes kept per output stream.
    #[arg(long, default_value = "1M", value_parser = parse_size, value_name = "SIZE")]
    output_limit: u64,
    /// What to do when a stream passes its output limit.
    #[arg(long, value_enum, default_value_t = OnOutputLimit::Kill)]
    on_output_limit: OnOutputLimit,
    /// Size of the private /tmp.
    #[arg(long, default_value = "64M", value_parser = parse_size, value_name = "SIZE")]
    tmp_size: u64,
    /// Largest file the program may write.
    #[arg(long, default_value = "64M", value_parser = parse_size, value_name = "SIZE")]
    file_size: u64,
    /// Open file descriptors.
    #[arg(long, default_value = "256", value_name = "N")]
    open_files: u64,
    /// Give the program a writable /workspace of this size (its working
    /// directory), empty at start and gone after the run.
    #[arg(long, value_parser = parse_size, value_name = "SIZE", num_args = 0..=1, default_missing_value = "64M")]
    workspace: Option<u64>,
    /// Copy a host file or directory into /workspace before the run (implies
    /// --workspace). Repeatable.
    #[arg(long, value_name = "PATH")]
    copy_in: Vec<PathBuf>,
    /// After the run, copy the regular files left in /workspace to DIR
    /// (symlinks and special files are never followed).
    #[arg(long, value_name = "DIR")]
    copy_out: Option<PathBuf>,
    /// Extra read-only bind mount, `HOST` or `HOST:BOX`. Repeatable.
    #[arg(long, value_name = "HOST[:BOX]")]
    ro_bind: Vec<String>,
    /// Set an environment variable; the box starts from a minimal
    /// environment (PATH, HOME, TMPDIR, LANG). Repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Feed this file to the program's stdin (`-` for Warden's own stdin).
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// Seccomp profile: `default`, `strict`, or a path to a profile file.
    #[arg(long, default_value = "default", value_name = "NAME|FILE")]
    profile: String,
    /// Working directory inside the box.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Where box slots live.
    #[arg(long, env = "WARDEN_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Most boxes this host may run at once.
    #[arg(long, env = "WARDEN_MAX_BOXES", default_value = "64", value_name = "N")]
    max_boxes: u32,
    /// Box `n` runs as uid and gid `uid-base + n` (as root; rootless boxes
    /// all run as `uid-base` inside their own user namespace). Default: the
    /// first range no other Warden pool on this host holds (60000 up).
    #[arg(long, env = "WARDEN_UID_BASE", value_name = "UID")]
    uid_base: Option<u32>,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM")]
    command: Vec<OsString>,
}

/// `--on-output-limit`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnOutputLimit {
    /// Kill the box (status `output_limit`).
    Kill,
    /// Keep the first bytes, drop the rest, let the program finish.
    Truncate,
}

/// Streams output straight through, for interactive use.
struct Passthrough;

impl OutputSink for Passthrough {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        let _ = match stream {
            Stream::Stdout => std::io::stdout()
                .write_all(data)
                .and_then(|()| std::io::stdout().flush()),
            Stream::Stderr => std::io::stderr().write_all(data),
        };
    }
}

fn secs(v: f64, what: &str) -> anyhow::Result<Option<Duration>> {
    if !v.is_finite() || v < 0.0 {
        bail!("{what} must be a positive number of seconds, not {v}");
    }
    Ok((v > 0.0).then(|| Duration::from_secs_f64(v)))
}

fn spec_from(args: &RunArgs) -> anyhow::Result<BoxSpec> {
    let mut spec = BoxSpec::command(args.command.iter().cloned());
    let workspace = args
        .workspace
        .or((!args.copy_in.is_empty() || args.copy_out.is_some()).then_some(64 << 20));
    spec.limits = Limits {
        wall_time: secs(args.timeout, "--timeout")?.context("--timeout must be greater than 0")?,
        cpu_time: secs(args.cpu_time, "--cpu-time")?,
        memory_bytes: (args.memory > 0).then_some(args.memory),
        pids: (args.pids > 0).then_some(args.pids),
        cpu_cores: if args.cpus.is_finite() && args.cpus > 0.0 {
            Some(args.cpus)
        } else {
            None
        },
        file_size_bytes: args.file_size,
        open_files: args.open_files,
        stack_bytes: 8 << 20,
        output_bytes: usize::try_from(args.output_limit).unwrap_or(usize::MAX),
        tmp_bytes: args.tmp_size,
    };
    spec.on_output_limit = match args.on_output_limit {
        OnOutputLimit::Kill => OutputLimitAction::Kill,
        OnOutputLimit::Truncate => OutputLimitAction::Truncate,
    };
    spec.seccomp_profile = args.profile.clone();
    for b in &args.ro_bind {
        let (host, target) = b.split_once(':').unwrap_or((b, b));
        spec.mounts.ro_binds.push(Bind {
            host: PathBuf::from(host),
            target: PathBuf::from(target),
            optional: false,
        });
    }
    if let Some(size) = workspace {
        spec.mounts.workspace = Some(WorkspaceSpec { size_bytes: size });
        spec.cwd = PathBuf::from("/workspace");
        spec.env.retain(|(k, _)| k != "HOME");
        spec.env.push(("HOME".into(), "/workspace".into()));
    }
    if let Some(cwd) = &args.cwd {
        spec.cwd = cwd.clone();
    }
    for kv in &args.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--env `{kv}`: expected KEY=VALUE");
        };
        spec.env.retain(|(key, _)| key != k);
        spec.env.push((k.into(), v.into()));
    }
    if let Some(path) = &args.stdin {
        let mut bytes = Vec::new();
        if path.as_os_str() == "-" {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading stdin")?;
        } else {
            bytes = std::fs::read(path).with_context(|| format!("reading --stdin {}", path.display()))?;
        }
        spec.stdin = Stdin::Bytes(bytes);
    }
    Ok(spec)
}

/// Exit code for a finished run.
fn exit_code(out: &RunOutcome) -> u8 {
    match out.status {
        Status::Ok => 0,
        Status::NonzeroExit => out.exit_code.map_or(1, |c| c as u8),
        Status::Timeout => 124,
        Status::InternalError => {
            if out
                .message
                .as_deref()
                .is_some_and(|m| m.starts_with("cannot execute"))
            {
                126
            } else {
                125
            }
        }
        Status::MemoryLimit => 137,
        Status::CpuLimit => 152,
        Status::OutputLimit => 153,
        Status::Violation => 159,
        // `warden run` never cancels; a signal from outside is what it would be.
        Status::Cancelled => 130,
        Status::Signaled => 128u8.saturating_add(out.signal.unwrap_or(0) as u8),
    }
}

/// Run the command.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let spec = spec_from(&args)?;
    let config = JailConfig {
        state_dir: args.state_dir.clone(),
        max_boxes: args.max_boxes,
        uid_base: args.uid_base,
        ..JailConfig::default()
    };
    let jail = Jail::new(config)?;
    let mut handle = jail.acquire()?;
    if let Some(ws) = &spec.mounts.workspace {
        handle.prepare_workspace(ws.size_bytes)?;
        for src in &args.copy_in {
            handle
                .copy_in(src)
                .with_context(|| format!("copying {} into the workspace", src.display()))?;
        }
    }
    let workspace_size = spec.mounts.workspace.as_ref().map_or(0, |w| w.size_bytes);
    let (outcome, handle) = if args.json {
        handle.run(spec, &mut warden_jail::NoSink)?
    } else {
        handle.run(spec, &mut Passthrough)?
    };
    // The program's result stands whatever happens to its files: a failed
    // copy-out is reported beside it (and exits 125), never instead of it.
    let copy_out = args.copy_out.as_ref().map(|dest| {
        let copied = handle.copy_out(dest, WalkLimits::default(), workspace_size);
        CopyOut::from_result(dest, copied)
    });
    drop(handle);

    if let Some(c) = &copy_out {
        for skipped in &c.skipped {
            eprintln!(
                "{} not copied out (not a regular file): {skipped}",
                style::warn("warning:")
            );
        }
        if let Some(e) = &c.error {
            eprintln!("{} {e}", style::error("warden:"));
        }
    }
    if args.json {
        let mut doc = serde_json::to_value(&outcome)?;
        if let Some(c) = &copy_out {
            doc["copy_out"] = serde_json::to_value(c)?;
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if !matches!(outcome.status, Status::Ok | Status::NonzeroExit) {
        let msg = outcome.message.as_deref().unwrap_or("");
        eprintln!("{} {}: {msg}", style::error("warden:"), outcome.status);
        if outcome.stdout_truncated || outcome.stderr_truncated {
            eprintln!(
                "{} raise --output-limit, or pass --on-output-limit truncate to keep running",
                style::hint("hint:")
            );
        }
    }
    if copy_out.as_ref().is_some_and(|c| c.error.is_some()) {
        return Ok(ExitCode::from(125));
    }
    Ok(ExitCode::from(exit_code(&outcome)))
}

/// What `--copy-out` did, for the report. Names come from the box and are
/// escaped ([`warden_jail::escape_name`]): they reach a person's terminal.
#[derive(Debug, serde::Serialize)]
struct CopyOut {
    /// Files copied.
    files: usize,
    /// Entries left out (not regular files), escaped.
    skipped: Vec<String>,
    /// Why the copy failed, when it did.
    error: Option<String>,
}

impl CopyOut {
    fn from_result(
        dest: &std::path::Path,
        r: Result<warden_jail::WalkReport, warden_jail::JailError>,
    ) -> CopyOut {
        match r {
            Ok(report) => CopyOut {
                files: report.files.len(),
                skipped: report
                    .skipped
                    .iter()
                    .map(|p| warden_jail::escape_name(p.as_os_str().as_encoded_bytes()))
                    .collect(),
                error: None,
            },
            Err(e) => CopyOut {
                files: 0,
                skipped: Vec::new(),
                error: Some(format!(
                    "copying the workspace to {} failed: {}",
                    dest.display(),
                    warden_jail::escape_name(format!("{:#}", anyhow::Error::from(e)).as_bytes())
                )),
            },
        }
    }
}
