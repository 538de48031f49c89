//! The host's side of a running box: feed stdin, collect output within its
//! caps, enforce the wall clock, read init's reports, and reap.
//!
//! One `poll` loop per box, on the calling thread. Memory use is bounded by
//! the output caps whatever the program prints: bytes past a cap are read
//! and dropped (or the box is killed, by policy).

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use crate::child::{RECORD_LEN, Record, kind};
use crate::launch::Launched;
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

/// Why the host killed the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KilledFor {
    Timeout,
    Output,
}

/// What the host learned from one run.
pub(crate) struct Collected {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub killed_for: Option<KilledFor>,
    /// Raw wait status of the program, from init.
    pub exit_status: Option<i32>,
    /// Seccomp violation: syscall number.
    pub violation: Option<i64>,
    /// Setup failure message.
    pub setup_error: Option<String>,
    pub wall: Duration,
    pub rusage: Option<Rusage>,
}

struct Capture {
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
    stream: Stream,
}

impl Capture {
    /// Read what is available. Returns false at end of file.
    fn pump(&mut self, sink: &mut dyn OutputSink) -> bool {
        let Some(fd) = &self.fd else { return false };
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match rustix::io::read(fd, &mut chunk) {
                Ok(0) => {
                    self.fd = None;
                    return false;
                }
                Ok(n) => {
                    let room = self.cap.saturating_sub(self.buf.len());
                    let keep = n.min(room);
                    if keep > 0 {
                        self.buf.extend_from_slice(&chunk[..keep]);
                        sink.output(self.stream, &chunk[..keep]);
                    }
                    if keep < n {
                        self.truncated = true;
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return true,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    self.fd = None;
                    return false;
                }
            }
        }
    }
}

pub(crate) fn set_nonblocking(fd: &OwnedFd) {
    if let Ok(flags) = rustix::fs::fcntl_getfl(fd) {
        let _ = rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK);
    }
}

/// What init already reported before the loop started (long-lived boxes read
/// their events themselves).
#[derive(Debug, Default, Clone)]
pub(crate) struct Seen {
    pub violation: Option<i64>,
    pub exit_status: Option<i32>,
    pub setup_error: Option<String>,
}

/// Run the loop until init is gone, then reap it. The box is killed at
/// `deadline`.
pub(crate) fn supervise(
    launched: Launched,
    seen: Seen,
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
    for fd in [&stdout, &stderr].into_iter().flatten() {
        set_nonblocking(fd);
    }
    let mut out = Capture {
        fd: stdout,
        buf: Vec::new(),
        cap: output_cap,
        truncated: false,
        stream: Stream::Stdout,
    };
    let mut err = Capture {
        fd: stderr,
        buf: Vec::new(),
        cap: output_cap,
        truncated: false,
        stream: Stream::Stderr,
    };
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
    let mut collected = Collected {
        stdout: Vec::new(),
        stderr: Vec::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        killed_for: None,
        exit_status: seen.exit_status,
        violation: seen.violation,
        setup_error: seen.setup_error,
        wall: Duration::ZERO,
        rusage: None,
    };
    let mut init_gone = false;
    let mut drain_deadline: Option<Instant> = None;
    let kill = |c: &mut Collected, why: KilledFor| {
        if c.killed_for.is_none() && c.exit_status.is_none() {
            c.killed_for = Some(why);
        }
        let _ = sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
    };

    loop {
        // Once init is gone, only unread output remains; stop when both pipes
        // hit end of file, or after a grace period (a concurrently forked box
        // may hold our pipe ends for a few microseconds before closing them).
        if init_gone && out.fd.is_none() && err.fd.is_none() && report.is_none() {
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
        } else if collected.killed_for.is_some() || collected.exit_status.is_some() {
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
        if let Some(fd) = &out.fd {
            fds.push(PollFd::new(fd, PollFlags::IN));
            idx_out = Some(fds.len() - 1);
        }
        if let Some(fd) = &err.fd {
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
        if !init_gone && collected.killed_for.is_none() && Instant::now() >= deadline {
            kill(&mut collected, KilledFor::Timeout);
        }
        if !r_out.is_empty() {
            out.pump(sink);
        }
        if !r_err.is_empty() {
            err.pump(sink);
        }
        if on_output_limit == OutputLimitAction::Kill && (out.truncated || err.truncated) && !init_gone {
            kill(&mut collected, KilledFor::Output);
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
            read_reports(&mut report, &mut collected, &ops);
        }
        if !r_pid.is_empty() && !init_gone {
            init_gone = true;
            drain_deadline = Some(Instant::now() + Duration::from_secs(1));
            stdin_fd = None;
            // Init is gone: read what it reported and reap it.
            read_reports(&mut report, &mut collected, &ops);
            if let Ok((_, ru)) = sys::wait4_pid(pid) {
                collected.rusage = Some(ru);
            }
            collected.wall = started.elapsed();
            out.pump(sink);
            err.pump(sink);
        }
    }
    drop(lifeline);
    collected.stdout = out.buf;
    collected.stderr = err.buf;
    collected.stdout_truncated = out.truncated;
    collected.stderr_truncated = err.truncated;
    collected
}

fn read_reports(report: &mut Option<OwnedFd>, c: &mut Collected, ops: &[crate::mounts::MountOp]) {
    let Some(fd) = report.as_ref() else { return };
    let mut buf = [0u8; RECORD_LEN];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(RECORD_LEN) => {
                let rec = Record::decode(&buf);
                match rec.kind {
                    kind::EXITED => c.exit_status = Some(rec.a as i32),
                    kind::VIOLATION => c.violation = Some(rec.a),
                    kind::SETUP_FAILED => c.setup_error = Some(crate::running::setup_message(&rec, ops)),
                    kind::ORPHANED => {
                        c.setup_error
                            .get_or_insert_with(|| "the box lost its supervisor".into());
                    }
                    _ => {}
                }
            }
            Ok(0) => {
                *report = None;
                return;
            }
            Ok(_) => {} // a torn record cannot happen (writes < PIPE_BUF); ignore
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
    }
}
