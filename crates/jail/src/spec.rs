//! What a caller asks the jail to run: the program, its environment, the
//! filesystem it may see, and the limits it must stay within.
//!
//! These types are plain data. Turning them into kernel steps happens in
//! [`crate::mounts`] (the mount plan) and [`crate::launch`] (everything else).

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One untrusted program and everything the jail needs to run it.
#[derive(Debug)]
pub struct BoxSpec {
    /// Program to execute, as a path inside the box. A bare name is looked up
    /// in the box's `PATH` (taken from [`BoxSpec::env`], else `/usr/bin:/bin`).
    pub program: PathBuf,
    /// Full argument vector, `argv[0]` included.
    pub args: Vec<OsString>,
    /// The complete environment: nothing of the host's leaks in.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory inside the box.
    pub cwd: PathBuf,
    /// Host paths exposed read-only, and the writable areas.
    pub mounts: MountSpec,
    /// Resource and time limits.
    pub limits: Limits,
    /// Name of the seccomp profile (`default`, `strict`, …).
    pub seccomp_profile: String,
    /// What the program reads on stdin.
    pub stdin: Stdin,
    /// Extra descriptors handed to the program, each placed at the given
    /// number (for example a result channel on fd 3). Numbers 0–2 are taken by
    /// stdio and may not be used here.
    pub extra_fds: Vec<(OwnedFd, i32)>,
    /// What to do when a stream exceeds its output cap.
    pub on_output_limit: OutputLimitAction,
    /// Egress through the host's proxy (root only): the box joins this
    /// network namespace instead of a pooled empty one, runs under the
    /// `egress` seccomp profile, and landlock lets it connect to the proxy's
    /// port only. `None`: no network at all.
    pub egress: Option<crate::egress::Egress>,
}

impl BoxSpec {
    /// A spec running `argv` with the default mounts and limits, no stdin, and
    /// a minimal environment.
    pub fn command<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = argv.into_iter().map(Into::into).collect();
        let program = args.first().map(PathBuf::from).unwrap_or_default();
        BoxSpec {
            program,
            args,
            env: default_env(),
            cwd: PathBuf::from("/"),
            mounts: MountSpec::default(),
            limits: Limits::default(),
            seccomp_profile: "default".to_owned(),
            stdin: Stdin::Null,
            extra_fds: Vec::new(),
            on_output_limit: OutputLimitAction::Kill,
            egress: None,
        }
    }
}

/// The environment every box starts from unless the caller replaces it.
pub fn default_env() -> Vec<(OsString, OsString)> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", "/tmp"),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect()
}

/// Standard input of the boxed program.
#[derive(Debug, Default)]
pub enum Stdin {
    /// `/dev/null`.
    #[default]
    Null,
    /// These bytes, then end of file. The host writes them without blocking,
    /// so any size works.
    Bytes(Vec<u8>),
    /// A pipe whose bytes are given later, with
    /// [`crate::RunningBox::set_stdin`]: a box started ahead of time reads
    /// its input once it is known.
    Deferred,
}

/// What happens when a stream passes its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputLimitAction {
    /// Kill the box at once; the run ends with status `output_limit`.
    #[default]
    Kill,
    /// Keep the first bytes up to the cap, drain and drop the rest, and let the
    /// program finish; the result says the stream was truncated.
    Truncate,
}

/// The box's filesystem beyond the fixed skeleton (`/dev`, `/proc`, `/tmp`,
/// a synthetic `/etc`).
#[derive(Debug, Clone)]
pub struct MountSpec {
    /// Host paths bind-mounted read-only, nosuid, nodev. A path that is a
    /// symlink on the host (merged-`/usr` `/bin`, `/lib`, …) is recreated as
    /// the same symlink instead of being mounted.
    pub ro_binds: Vec<Bind>,
    /// A writable workspace at `/workspace`, private to the box slot and
    /// emptied between runs. `None` means no writable workspace at all.
    pub workspace: Option<WorkspaceSpec>,
}

impl Default for MountSpec {
    fn default() -> Self {
        MountSpec {
            ro_binds: system_binds(),
            workspace: None,
        }
    }
}

/// The read-only host paths that dynamically linked programs, `python3`,
/// `node` and `bash` need on a Debian-like system. Paths missing on the host
/// are skipped when the plan is built.
pub fn system_binds() -> Vec<Bind> {
    [
        "/usr",
        "/bin",
        "/sbin",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/etc/alternatives",
        "/etc/ld.so.cache",
        "/etc/localtime",
    ]
    .into_iter()
    .map(Bind::same)
    .collect()
}

/// One read-only bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Path on the host.
    pub host: PathBuf,
    /// Absolute path inside the box.
    pub target: PathBuf,
    /// Skip silently when the host path does not exist (system defaults);
    /// otherwise a missing path is an error.
    pub optional: bool,
}

impl Bind {
    /// Bind a host path at the same place inside the box, skipping it when the
    /// host lacks it.
    pub fn same(path: &str) -> Self {
        Bind {
            host: PathBuf::from(path),
            target: PathBuf::from(path),
            optional: true,
        }
    }
}

/// A writable workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceSpec {
    /// Size cap in bytes (a tmpfs owned by the box slot).
    pub size_bytes: u64,
}

/// Every limit a box runs under. Values of `None` mean "no limit of this
/// kind" and are only accepted where it is safe (the wall clock always has a
/// limit).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Wall-clock time, enforced by the host: when it passes, everything in
    /// the box is killed.
    pub wall_time: Duration,
    /// CPU time per process (`RLIMIT_CPU`, rounded up to whole seconds).
    pub cpu_time: Option<Duration>,
    /// Memory for the whole box (cgroup), swap included.
    pub memory_bytes: Option<u64>,
    /// Processes and threads in the box (cgroup `pids.max`).
    pub pids: Option<u32>,
    /// CPU bandwidth in cores (cgroup quota), e.g. `1.0`.
    pub cpu_cores: Option<f64>,
    /// Largest file the program may write (`RLIMIT_FSIZE`).
    pub file_size_bytes: u64,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Stack size (`RLIMIT_STACK`).
    pub stack_bytes: u64,
    /// Bytes kept per output stream (stdout, stderr).
    pub output_bytes: usize,
    /// Size of the private `/tmp`.
    pub tmp_bytes: u64,
}

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall_time: Duration::from_secs(10),
            cpu_time: Some(Duration::from_secs(10)),
            memory_bytes: Some(256 * MIB),
            pids: Some(64),
            cpu_cores: Some(1.0),
            file_size_bytes: 64 * MIB,
            open_files: 256,
            stack_bytes: 8 * MIB,
            output_bytes: MIB as usize,
            tmp_bytes: 64 * MIB,
        }
    }
}
