//! The result of one run: how it ended and what it cost.

use serde::{Deserialize, Serialize};

/// How a run ended. Exactly one applies; when several causes coincide the
/// most specific wins, in the order the variants are listed (a seccomp
/// violation explains a death better than the timeout that may follow it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The program exited with code 0.
    Ok,
    /// The program exited with a non-zero code.
    NonzeroExit,
    /// The program was killed by a signal it did not get from the jail.
    Signaled,
    /// The wall-clock limit passed; the host killed the box.
    Timeout,
    /// A process used up its CPU-time limit.
    CpuLimit,
    /// The box hit its memory limit and the kernel killed a process in it.
    MemoryLimit,
    /// A stream passed its output cap and the box was killed.
    OutputLimit,
    /// A syscall forbidden by the seccomp profile was attempted; the box was
    /// killed.
    Violation,
    /// The host stopped it on request (a cancelled execution).
    Cancelled,
    /// The jail failed to set the box up (nothing of the program ran, or the
    /// program could not be started).
    InternalError,
}

impl Status {
    /// The snake_case name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NonzeroExit => "nonzero_exit",
            Status::Signaled => "signaled",
            Status::Timeout => "timeout",
            Status::CpuLimit => "cpu_limit",
            Status::MemoryLimit => "memory_limit",
            Status::OutputLimit => "output_limit",
            Status::Violation => "violation",
            Status::Cancelled => "cancelled",
            Status::InternalError => "internal_error",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The forbidden syscall behind a [`Status::Violation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Syscall name (`ptrace`), or `syscall_<nr>` when the number is unknown.
    pub syscall: String,
    /// Syscall number in its ABI.
    pub nr: i64,
    /// The ABI the syscall was made in: the host's (`x86_64`), or a foreign
    /// one a box tried (`i386`, through `int 0x80`).
    #[serde(default = "native_abi")]
    pub abi: String,
}

fn native_abi() -> String {
    std::env::consts::ARCH.to_owned()
}

impl Violation {
    /// The violation of syscall `nr` in the ABI `arch` (`AUDIT_ARCH_*`), as
    /// init reported it.
    pub fn new(nr: i64, arch: u32) -> Violation {
        let (syscall, abi) = crate::seccomp::syscall_name_in(nr, arch);
        Violation {
            syscall,
            nr,
            abi: abi.to_owned(),
        }
    }

    /// "`ptrace`", or "`execve` of the i386 ABI" for a foreign one.
    pub fn describe(&self) -> String {
        if self.abi == std::env::consts::ARCH {
            format!("`{}`", self.syscall)
        } else {
            format!("`{}` of the {} ABI (syscall {})", self.syscall, self.abi, self.nr)
        }
    }
}

/// The host's own `AUDIT_ARCH_*` value (tests build violations with it).
#[cfg(test)]
pub(crate) fn native_audit_arch() -> u32 {
    crate::seccomp::native_arch().unwrap_or(0)
}

/// Everything known about a finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOutcome {
    /// How the run ended.
    pub status: Status,
    /// Exit code, when the program exited normally.
    pub exit_code: Option<i32>,
    /// Signal number, when the program was killed by one.
    pub signal: Option<i32>,
    /// Wall-clock time from launch to the last process gone, in milliseconds.
    pub wall_ms: f64,
    /// CPU time (user + system) of every process in the box, in milliseconds.
    pub cpu_ms: f64,
    /// Peak memory of the box in bytes (cgroup peak, page cache included;
    /// without cgroups, the largest single process's resident set).
    pub peak_memory_bytes: u64,
    /// Bytes read from storage.
    pub io_read_bytes: u64,
    /// Bytes written to storage.
    pub io_write_bytes: u64,
    /// Captured standard output (at most the cap).
    #[serde(with = "lossy_bytes")]
    pub stdout: Vec<u8>,
    /// Captured standard error (at most the cap).
    #[serde(with = "lossy_bytes")]
    pub stderr: Vec<u8>,
    /// Standard output passed its cap.
    pub stdout_truncated: bool,
    /// Standard error passed its cap.
    pub stderr_truncated: bool,
    /// The forbidden syscall, for [`Status::Violation`].
    pub violation: Option<Violation>,
    /// A human explanation for statuses other than `ok` and `nonzero_exit`.
    pub message: Option<String>,
    /// The pool slot the run used.
    pub box_id: u32,
    /// Which isolation layers were in force.
    pub sandbox: SandboxReport,
}

/// Which isolation layers a run actually had.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxReport {
    /// Namespaces and seccomp were in force. `false` only with the
    /// development-only `--insecure-no-sandbox`.
    pub sandboxed: bool,
    /// The box had its own user namespace (rootless mode).
    pub user_namespace: bool,
    /// `v1`, `v2`, or `none` (rlimits only).
    pub cgroup: String,
    /// Landlock ABI applied, 0 when the kernel has none.
    pub landlock_abi: u32,
    /// Seccomp profile name.
    pub seccomp_profile: String,
    /// Uid the program ran as, inside the box.
    pub uid: u32,
}

mod lossy_bytes {
    //! Output is bytes; JSON wants text. Invalid UTF-8 is replaced, never an
    //! error, so a hostile program cannot break the report.
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(String::deserialize(d)?.into_bytes())
    }
}
