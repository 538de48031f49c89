//! The host's side of a running box: feed stdin, collect output within its
//! caps, enforce the wall clock, read init's reports, reap, and decide how
//! the run ended.
//!
//! Besides the one-shot loop ([`supervise`]), this module is the supervision
//! toolkit for callers that keep a box alive and run several programs in it
//! (the runtime's warm fork-servers, sessions): the capped [`Capture`], wait
//! status decoding ([`Ended`]), and the pure [`classify`] from what was
//! observed to a [`Status`]. There is one copy of each; a loop that
//! supervises a box builds on these rather than repeating them.
//!
//! Memory use is bounded by the output caps whatever the program prints:
//! bytes past a cap are read and dropped (or the box is killed, by policy).
//! No wait here is without a deadline.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use crate::launch::Launched;
use crate::outcome::{Status, Violation};
use crate::report::{self, Report};
use crate::spec::OutputLimitAction;
use crate::sys::{self, Rusage};

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives output as it arrives (for streaming to a terminal or a client).
/// Only bytes within the cap are passed on.
pub trait OutputSink {
    /// A chunk of output.
    fn output(&mut self, stream: Stream, data: &[u8]);
}

/// A sink that drops everything (output is still collected in the result).
pub struct NoSink;

impl OutputSink for NoSink {
    fn output(&mut self, _: Stream, _: &[u8]) {}
}

/// One output stream of a box, read without blocking and kept up to a cap:
/// bytes past the cap are read and dropped, so a program that prints without
/// end can neither fill the host's memory nor block on a full pipe.
#[derive(Debug)]
pub struct Capture {
    stream: Stream,
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Capture {
    /// Capture `fd` (made non-blocking here), keeping at most `cap` bytes.
    pub fn new(stream: Stream, fd: Option<OwnedFd>, cap: usize) -> Capture {
        if let Some(fd) = &fd {
            set_nonblocking(fd);
        }
        Capture {
            stream,
            fd,
            buf: Vec::new(),
            cap,
            truncated: false,
        }
    }

    /// The descriptor to poll for input, while the stream is open.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// The stream is still open (end of file not reached).
    pub fn is_open(&self) -> bool {
        self.fd.is_some()
    }

    /// Output passed the cap (and was dropped past it).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Read what is available, passing what is kept to `sink`. Returns false
    /// once the stream reached end of file (or failed).
    pub fn pump(&mut self, sink: &mut dyn OutputSink) -> bool {
        let Some(fd) = &self.fd else { return false };
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match rustix::io::read(fd, &mut chunk) {
                Ok(0) => {
                    self.fd = None;
                    return false;
                }
                Ok(n) => {
                    let keep = n.min(self.cap.saturating_sub(self.buf.len()));
                    if keep > 0 {
                        self.buf.extend_from_slice(&chunk[..keep]);
                        sink.output(self.stream, &chunk[..keep]);
                    }
                    self.truncated |= keep < n;
                }
                Err(rustix::io::Errno::AGAIN) => return true,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => {
                    self.fd = None;
                    return false;
                }
            }
        }
    }

    /// Stop reading (someone in the box holds the write end open past the
    /// point the host waits for).
    pub fn close(&mut self) {
        self.fd = None;
    }

    /// The bytes kept, and whether any were dropped.
    pub fn finish(self) -> (Vec<u8>, bool) {
        (self.buf, self.truncated)
    }
}

pub(crate) fn set_nonblocking(fd: &OwnedFd) {
    if let Ok(flags) = rustix::fs::fcntl_getfl(fd) {
        let _ = rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK);
    }
}

/// How a process ended, decoded from a raw `wait` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl Ended {
    /// Decode a raw wait status as `waitpid` returns it (in a box's report,
    /// or in a message from a fork-server's `os.waitpid`). `None` for a
    /// status that is neither an exit nor a death (stopped, continued).
    ///
    /// rustix cannot build its `WaitStatus` from a raw value (its
    /// constructor is private), so this is the one place that applies
    /// libc's `W*` functions to one.
    pub fn from_wait_status(raw: i32) -> Option<Ended> {
        if libc::WIFEXITED(raw) {
            Some(Ended::Exited(libc::WEXITSTATUS(raw)))
        } else if libc::WIFSIGNALED(raw) {
            Some(Ended::Signaled(libc::WTERMSIG(raw)))
        } else {
            None
        }
    }

    /// The exit code, when it exited.
    pub fn exit_code(self) -> Option<i32> {
        match self {
            Ended::Exited(c) => Some(c),
            Ended::Signaled(_) => None,
        }
    }

    /// The signal, when one killed it.
    pub fn signal(self) -> Option<i32> {
        match self {
            Ended::Signaled(s) => Some(s),
            Ended::Exited(_) => None,
        }
    }
}

/// Why the host killed the box (or a call in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KilledFor {
    /// The wall clock passed.
    Timeout,
    /// An output stream passed its cap and the policy is to kill.
    Output,
    /// The box stopped answering its supervisor (a stopped or silent
    /// fork-server, output held open past the end of the call).
    Unresponsive,
    /// Someone asked for it to stop.
    Cancelled,
}

/// Everything the host observed about one run (or one call in a live box),
/// for [`classify`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Building the box or starting the program failed.
    pub setup_error: Option<String>,
    /// A forbidden syscall was attempted.
    pub violation: Option<Violation>,
    /// The host killed it, and why.
    pub killed_for: Option<KilledFor>,
    /// How the program ended, when that is known.
    pub ended: Option<Ended>,
    /// Processes the kernel killed at the memory limit.
    pub oom_kills: u64,
    /// CPU time used.
    pub cpu_ms: f64,
}

/// The limits a run was held to, as [`classify`] names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Wall clock.
    pub wall_time: Duration,
    /// CPU time per process (`RLIMIT_CPU`), if limited.
    pub cpu_time: Option<Duration>,
    /// Memory, if limited.
    pub memory_bytes: Option<u64>,
    /// Bytes kept per output stream.
    pub output_bytes: usize,
}

impl From<&crate::spec::Limits> for Bounds {
    fn from(l: &crate::spec::Limits) -> Bounds {
        Bounds {
            wall_time: l.wall_time,
            cpu_time: l.cpu_time,
            memory_bytes: l.memory_bytes,
            output_bytes: l.output_bytes,
        }
    }
}

/// Decide how a run ended, with a human explanation for every status but
/// `ok` and `nonzero_exit`. Pure: the same observations always give the same
/// answer, for one-shot boxes and calls in warm boxes alike. When causes
/// coincide the most specific wins, in the order of [`Status`]'s variants
/// (a violation explains a death better than the timeout that may follow).
pub fn classify(o: &Observed, b: &Bounds) -> (Status, Option<String>) {
    let signal = match (o.ended, o.killed_for) {
        (Some(e), _) => e.signal(),
        // Killed by the host before the program's end was reported.
        (None, Some(_)) => Some(libc::SIGKILL),
        (None, None) => None,
    };
    // RLIMIT_CPU is whole seconds: the soft limit sends SIGXCPU, the hard
    // one (a second later) SIGKILL.
    let cpu_limit_ms = b.cpu_time.map(|d| d.as_secs_f64().ceil().max(1.0) * 1000.0);
    if let Some(msg) = &o.setup_error {
        return (Status::InternalError, Some(msg.clone()));
    }
    if let Some(v) = &o.violation {
        return (
            Status::Violation,
            Some(format!("forbidden syscall {}: the box was killed", v.describe())),
        );
    }
    match o.killed_for {
        Some(KilledFor::Timeout) => {
            return (
                Status::Timeout,
                Some(format!(
                    "wall-clock limit of {:?} reached: the processes were killed",
                    b.wall_time
                )),
            );
        }
        Some(KilledFor::Output) => {
            return (
                Status::OutputLimit,
                Some(format!(
                    "output passed {} bytes on one stream: the box was killed",
                    b.output_bytes
                )),
            );
        }
        Some(KilledFor::Cancelled) => {
            return (
                Status::Cancelled,
                Some("cancelled: the processes were killed".into()),
            );
        }
        Some(KilledFor::Unresponsive) => {
            return (
                Status::Timeout,
                Some(format!(
                    "the box stopped answering (wall-clock limit {:?}): it was killed and will be replaced",
                    b.wall_time
                )),
            );
        }
        None => {}
    }
    if o.oom_kills > 0 {
        return (
            Status::MemoryLimit,
            Some(format!(
                "memory limit of {} bytes reached: the kernel killed {} process(es)",
                b.memory_bytes.unwrap_or(0),
                o.oom_kills
            )),
        );
    }
    if signal == Some(libc::SIGXCPU)
        || (signal == Some(libc::SIGKILL) && cpu_limit_ms.is_some_and(|l| o.cpu_ms >= l))
    {
        return (
            Status::CpuLimit,
            Some(format!(
                "CPU-time limit of {:?} reached",
                b.cpu_time.unwrap_or_default()
            )),
        );
    }
    if signal == Some(libc::SIGSYS) {
        // Seccomp kills with SIGSYS when the kernel cannot notify init (no
        // user notification): still a violation, the syscall unnamed.
        return (
            Status::Violation,
            Some("killed by SIGSYS: a syscall forbidden by the seccomp profile".into()),
        );
    }
    match o.ended {
        Some(Ended::Signaled(sig)) => (Status::Signaled, Some(format!("killed by signal {sig}"))),
        Some(Ended::Exited(0)) => (Status::Ok, None),
        Some(Ended::Exited(_)) => (Status::NonzeroExit, None),
        None => (
            Status::InternalError,
            Some("the box ended without reporting the program's status".into()),
        ),
    }
}

/// What the host learned from one one-shot run.
pub(crate) struct Collected {
    pub observed: Observed,
    pub stdout: Capture,
    pub stderr: Capture,
    pub wall: Duration,
    pub rusage: Option<Rusage>,
}

/// What init already reported before the loop started (long-lived boxes read
/// their events themselves).
#[derive(Debug, Default, Clone)]
pub(crate) struct Seen {
    pub violation: Option<Violation>,
    pub exit_status: Option<i32>,
    pub setup_error: Option<String>,
}

impl Seen {
    /// Fold one report in.
    pub(crate) fn note(&mut self, r: &Report, ops: &[crate::mounts::MountOp]) {
        match *r {
            Report::Exited { status } => self.exit_status = Some(status),
            Report::Violation { nr, arch } => {
                self.violation.get_or_insert_with(|| Violation::new(nr, arch));
            }
            Report::SetupFailed { step, errno, op } => {
                self.setup_error = Some(setup_message(step, errno, op, ops));
            }
            Report::Orphaned => {
                self.setup_error
                    .get_or_insert_with(|| "the box lost its supervisor".into());
            }
            Report::Started => {}
        }
    }
}

/// The message for a failed setup step.
pub(crate) fn setup_message(
    step: report::Step,
    errno: i32,
    op: Option<u32>,
    ops: &[crate::mounts::MountOp],
) -> String {
    let err = std::io::Error::from_raw_os_error(errno);
    if step == report::Step::Exec {
        return format!("cannot execute the program: {err}");
    }
    let at = op
        .and_then(|i| crate::launch::op_path(ops, i))
        .map(|p| format!(" at {p}"))
        .unwrap_or_default();
    format!("box setup failed while {}{at}: {err}", step.describe())
}

/// Run the loop until init is gone, then reap it. The box is killed at
/// `deadline`.
pub(crate) fn supervise(
    launched: Launched,
    mut seen: Seen,
    deadline: Instant,
    output_cap: usize,
    on_output_limit: OutputLimitAction,
    sink: &mut dyn OutputSink,
) -> Collected {
    let Launched {
        pid,
        pidfd,
        report,
        lifeline,
        stdout,
        stderr,
        stdin,
        started,
        ops,
    } = launched;
    // `report` is non-blocking already (RunningBox::new).
    let mut out = Capture::new(Stream::Stdout, stdout, output_cap);
    let mut err = Capture::new(Stream::Stderr, stderr, output_cap);
    let (mut stdin_fd, stdin_bytes) = match stdin {
        Some((fd, bytes)) => {
            set_nonblocking(&fd);
            (Some(fd), bytes.unwrap_or_default())
        }
        None => (None, Vec::new()),
    };
    let mut stdin_off = 0usize;
    if stdin_bytes.is_empty() {
        stdin_fd = None; // closing it gives the program end of file at once
    }
    let mut report = Some(report);
    let mut killed_for: Option<KilledFor> = None;
    let mut wall = Duration::ZERO;
    let mut rusage = None;
    let mut init_gone = false;
    let mut drain_deadline: Option<Instant> = None;
    let read_reports = |report: &mut Option<OwnedFd>, seen: &mut Seen| {
        if let Some(fd) = report.as_ref() {
            let (records, eof) = report::read_reports(fd);
            for r in &records {
                seen.note(r, &ops);
            }
            if eof {
                *report = None;
            }
        }
    };
    let kill = |killed_for: &mut Option<KilledFor>, seen: &Seen, why: KilledFor| {
        if killed_for.is_none() && seen.exit_status.is_none() {
            *killed_for = Some(why);
        }
        let _ = sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
    };

    loop {
        // Once init is gone, only unread output remains; stop when both pipes
        // hit end of file, or after a grace period (a concurrently forked box
        // may hold our pipe ends for a few microseconds before closing them).
        if init_gone && !out.is_open() && !err.is_open() && report.is_none() {
            break;
        }
        let now = Instant::now();
        if init_gone && drain_deadline.is_some_and(|d| now >= d) {
            break;
        }
        let timeout = if init_gone {
            drain_deadline
                .map(|d| d.saturating_duration_since(now))
                .unwrap_or(Duration::ZERO)
        } else if killed_for.is_some() || seen.exit_status.is_some() {
            Duration::from_millis(50)
        } else {
            deadline.saturating_duration_since(now)
        };

        let mut idx_out = None;
        let mut idx_err = None;
        let mut idx_rep = None;
        let mut idx_in = None;
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(5);
        let idx_pid = if init_gone {
            None
        } else {
            fds.push(PollFd::new(&pidfd, PollFlags::IN));
            Some(fds.len() - 1)
        };
        let out_fd = out.fd();
        if let Some(fd) = &out_fd {
            fds.push(PollFd::new(fd, PollFlags::IN));
            idx_out = Some(fds.len() - 1);
        }
        let err_fd = err.fd();
        if let Some(fd) = &err_fd {
            fds.push(PollFd::new(fd, PollFlags::IN));
            idx_err = Some(fds.len() - 1);
        }
        if let Some(fd) = &report {
            fds.push(PollFd::new(fd, PollFlags::IN));
            idx_rep = Some(fds.len() - 1);
        }
        if let Some(fd) = &stdin_fd {
            fds.push(PollFd::new(fd, PollFlags::OUT));
            idx_in = Some(fds.len() - 1);
        }
        let ts = Timespec::try_from(timeout).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        match poll(&mut fds, Some(&ts)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => {}
        }
        let revents = |i: Option<usize>| i.map(|i| fds[i].revents()).unwrap_or(PollFlags::empty());
        let (r_pid, r_out, r_err, r_rep, r_in) = (
            revents(idx_pid),
            revents(idx_out),
            revents(idx_err),
            revents(idx_rep),
            revents(idx_in),
        );
        drop(fds);

        // Checked on every pass, not only when poll times out: a program that
        // prints without pause would otherwise never time out.
        if !init_gone && killed_for.is_none() && Instant::now() >= deadline {
            kill(&mut killed_for, &seen, KilledFor::Timeout);
        }
        if !r_out.is_empty() {
            out.pump(sink);
        }
        if !r_err.is_empty() {
            err.pump(sink);
        }
        if on_output_limit == OutputLimitAction::Kill && (out.truncated() || err.truncated()) && !init_gone {
            kill(&mut killed_for, &seen, KilledFor::Output);
            // Keep draining (and dropping) so the program is not blocked
            // writing while it dies.
        }
        if !r_in.is_empty() {
            if let Some(fd) = &stdin_fd {
                match rustix::io::write(fd, &stdin_bytes[stdin_off..]) {
                    Ok(n) => stdin_off += n,
                    Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                    Err(_) => stdin_off = stdin_bytes.len(), // EPIPE: the program closed stdin
                }
            }
            if stdin_off >= stdin_bytes.len() {
                stdin_fd = None;
            }
        }
        if !r_rep.is_empty() {
            read_reports(&mut report, &mut seen);
        }
        if !r_pid.is_empty() && !init_gone {
            init_gone = true;
            drain_deadline = Some(Instant::now() + Duration::from_secs(1));
            stdin_fd = None;
            // Init is gone: read what it reported and reap it.
            read_reports(&mut report, &mut seen);
            if let Ok((_, ru)) = sys::wait4_pid(pid) {
                rusage = Some(ru);
            }
            wall = started.elapsed();
            out.pump(sink);
            err.pump(sink);
        }
    }
    drop(lifeline);
    let Seen {
        violation,
        exit_status,
        setup_error,
    } = seen;
    Collected {
        observed: Observed {
            setup_error,
            violation,
            killed_for,
            ended: exit_status.and_then(Ended::from_wait_status),
            oom_kills: 0,
            cpu_ms: 0.0,
        },
        stdout: out,
        stderr: err,
        wall,
        rusage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            wall_time: Duration::from_secs(2),
            cpu_time: Some(Duration::from_millis(1500)),
            memory_bytes: Some(64 << 20),
            output_bytes: 1024,
        }
    }

    fn status(o: Observed) -> Status {
        classify(&o, &bounds()).0
    }

    #[test]
    fn wait_statuses_decode_as_the_kernel_encodes_them() {
        assert_eq!(Ended::from_wait_status(0), Some(Ended::Exited(0)));
        assert_eq!(Ended::from_wait_status(3 << 8), Some(Ended::Exited(3)));
        assert_eq!(Ended::from_wait_status(9), Some(Ended::Signaled(9)));
        assert_eq!(Ended::from_wait_status(0x80 | 11), Some(Ended::Signaled(11)));
        assert_eq!(Ended::from_wait_status(0x137f), None, "stopped by SIGSTOP");
        assert_eq!(Ended::from_wait_status(0xffff), None, "continued");
    }

    #[test]
    fn exits_are_ok_or_nonzero_and_explain_nothing() {
        let ok = Observed {
            ended: Some(Ended::Exited(0)),
            ..Observed::default()
        };
        assert_eq!(classify(&ok, &bounds()), (Status::Ok, None));
        let bad = Observed {
            ended: Some(Ended::Exited(2)),
            ..Observed::default()
        };
        assert_eq!(classify(&bad, &bounds()), (Status::NonzeroExit, None));
    }

    #[test]
    fn the_most_specific_cause_wins() {
        let violation = Some(Violation::new(101, crate::outcome::native_audit_arch()));
        // A violation kills the box; the timeout that may follow is not the cause.
        assert_eq!(
            status(Observed {
                violation: violation.clone(),
                killed_for: Some(KilledFor::Timeout),
                ended: Some(Ended::Signaled(9)),
                ..Observed::default()
            }),
            Status::Violation
        );
        assert_eq!(
            status(Observed {
                setup_error: Some("x".into()),
                violation,
                ..Observed::default()
            }),
            Status::InternalError
        );
        assert_eq!(
            status(Observed {
                killed_for: Some(KilledFor::Timeout),
                oom_kills: 1,
                ..Observed::default()
            }),
            Status::Timeout
        );
        assert_eq!(
            status(Observed {
                killed_for: Some(KilledFor::Output),
                ..Observed::default()
            }),
            Status::OutputLimit
        );
        assert_eq!(
            status(Observed {
                killed_for: Some(KilledFor::Unresponsive),
                ..Observed::default()
            }),
            Status::Timeout
        );
        assert_eq!(
            status(Observed {
                killed_for: Some(KilledFor::Cancelled),
                ended: Some(Ended::Signaled(9)),
                ..Observed::default()
            }),
            Status::Cancelled
        );
        assert_eq!(
            status(Observed {
                ended: Some(Ended::Signaled(9)),
                oom_kills: 2,
                ..Observed::default()
            }),
            Status::MemoryLimit
        );
    }

    #[test]
    fn cpu_limit_is_sigxcpu_or_a_kill_after_the_whole_seconds_ran_out() {
        assert_eq!(
            status(Observed {
                ended: Some(Ended::Signaled(libc::SIGXCPU)),
                ..Observed::default()
            }),
            Status::CpuLimit
        );
        // 1.5 s rounds up to 2 s of RLIMIT_CPU.
        assert_eq!(
            status(Observed {
                ended: Some(Ended::Signaled(libc::SIGKILL)),
                cpu_ms: 2100.0,
                ..Observed::default()
            }),
            Status::CpuLimit
        );
        assert_eq!(
            status(Observed {
                ended: Some(Ended::Signaled(libc::SIGKILL)),
                cpu_ms: 1900.0,
                ..Observed::default()
            }),
            Status::Signaled
        );
    }

    #[test]
    fn a_seccomp_kill_without_notification_is_a_violation() {
        assert_eq!(
            status(Observed {
                ended: Some(Ended::Signaled(libc::SIGSYS)),
                ..Observed::default()
            }),
            Status::Violation
        );
    }

    #[test]
    fn a_box_that_never_reported_is_an_internal_error() {
        assert_eq!(status(Observed::default()), Status::InternalError);
    }

    #[test]
    fn capture_keeps_the_cap_drops_the_rest_and_sees_end_of_file() {
        struct Count(usize);
        impl OutputSink for Count {
            fn output(&mut self, _: Stream, data: &[u8]) {
                self.0 += data.len();
            }
        }
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut c = Capture::new(Stream::Stdout, Some(r), 10);
        rustix::io::write(&w, b"0123456789abcdef").unwrap();
        let mut sink = Count(0);
        assert!(c.pump(&mut sink), "open while the writer lives");
        assert_eq!(sink.0, 10);
        drop(w);
        assert!(!c.pump(&mut sink));
        assert!(!c.is_open());
        assert_eq!(c.finish(), (b"0123456789".to_vec(), true));
    }
}
