//! One process run on request inside a live box: a fork-server's call, a
//! session's execution. The one copy of the loop that supervises it.
//!
//! The host sends the box's long-lived program (the fork-server, the
//! session agent) a request with the call's descriptors; the program starts
//! a process and reports `started` and `exited`. Everything the box does is
//! untrusted: its own threads may stop the program, stay silent, keep the
//! call's output pipes open, or race the host. So the call has its wall
//! clock (past it the host kills the call's processes), and past the wall
//! clock plus `grace` (no `exited` report, output still open) the whole box
//! is killed: a stopped or silent box counts as dead. Sends never block. A
//! cancel (a byte on the cancel pipe) kills the call's processes at once.

use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use serde::Deserialize;
use warden_jail::{
    BoxEvent, Capture, CgroupBaseline, CgroupLimits, CgroupStats, Ended, KilledFor, Observed, RunOutcome,
    RunningBox, Status, Stream, Violation,
};

use crate::{CallLimits, OutputTap, TapSink};

/// What a box's long-lived program reports about a call.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub(crate) enum CallMessage {
    /// The call's process started. `keep`: processes the host must leave
    /// alive if it has to kill the call (the program's idle interpreters).
    Started {
        /// The process's pid in the box.
        pid: i64,
        /// Pids to spare.
        #[serde(default)]
        keep: Vec<i64>,
        /// A persistent interpreter had died and was started anew.
        #[serde(default)]
        restarted: bool,
    },
    /// The call ended with this raw `wait` status.
    Exited {
        /// Raw status.
        status: i32,
        /// Pids to spare when the call's leftovers are killed.
        #[serde(default)]
        keep: Vec<i64>,
        /// The persistent interpreter that ran the call ended.
        #[serde(default)]
        died: bool,
    },
}

impl CallMessage {
    fn parse(bytes: &[u8]) -> Option<CallMessage> {
        serde_json::from_slice(bytes).ok()
    }
}

/// A call to run.
pub(crate) struct LiveCall<'a> {
    /// The box.
    pub running: &'a mut RunningBox,
    /// The control socket to its long-lived program.
    pub ctl: &'a OwnedFd,
    /// Processes never killed for a call: init and the long-lived program.
    pub keep: Vec<i32>,
    /// The call's limits (wall clock, memory, processes, output).
    pub limits: &'a CallLimits,
    /// Set on the box's cgroup for the call (absolute), when given.
    pub cgroup: Option<CgroupLimits>,
    /// How long past the wall clock the box may stay silent.
    pub grace: Duration,
    /// Where output goes as it comes.
    pub tap: Option<&'a OutputTap>,
    /// Readable when the call must stop now.
    pub cancel: Option<BorrowedFd<'a>>,
}

/// How the call went, for the caller to judge.
pub(crate) struct LiveEnd {
    /// What was observed, for `classify`.
    pub observed: Observed,
    /// Standard output and error.
    pub stdout: Capture,
    /// See `stdout`.
    pub stderr: Capture,
    /// From the request to the end.
    pub wall: Duration,
    /// The cgroup's figures for the call.
    pub stats: Option<CgroupStats>,
    /// The box died (init is gone) during the call.
    pub box_died: bool,
    /// The box must not serve another call (held output open, ignored a
    /// kill, spoke outside the protocol, stopped answering).
    pub spoiled: bool,
    /// A persistent interpreter had died and was started anew for this call.
    pub restarted: bool,
    /// The persistent interpreter that ran the call ended with it.
    pub interpreter_died: bool,
}

impl LiveEnd {
    /// The run's report (the jail's shape) from the call's end; `base_mem`
    /// is what the box held before the call (its peak counts above it).
    pub(crate) fn outcome(
        self,
        status: Status,
        message: Option<String>,
        base_mem: u64,
        running: &RunningBox,
    ) -> RunOutcome {
        let LiveEnd {
            observed,
            stdout,
            stderr,
            wall,
            stats,
            ..
        } = self;
        let (stdout, stdout_truncated) = stdout.finish();
        let (stderr, stderr_truncated) = stderr.finish();
        RunOutcome {
            status,
            exit_code: observed.ended.and_then(Ended::exit_code),
            signal: match observed.ended {
                Some(e) => e.signal(),
                None => Some(rustix::process::Signal::KILL.as_raw()),
            },
            wall_ms: wall.as_secs_f64() * 1000.0,
            cpu_ms: observed.cpu_ms,
            peak_memory_bytes: stats
                .and_then(|s| s.peak_bytes)
                .map_or(0, |p| p.saturating_sub(base_mem)),
            io_read_bytes: 0,
            io_write_bytes: 0,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            violation: observed.violation,
            message,
            box_id: running.box_id(),
            sandbox: running.sandbox().clone(),
        }
    }
}

/// Why a call could not even be sent.
pub(crate) struct NotSent(pub String);

/// Send `request` with `fds` (closed here once sent: only the call's
/// process may hold the write ends of its output, or the host would never
/// see them end) and supervise the call to its end; `out` and `err` are the
/// read ends of the call's output.
pub(crate) fn run(
    call: LiveCall<'_>,
    request: &[u8],
    fds: Vec<OwnedFd>,
    out: OwnedFd,
    err: OwnedFd,
) -> Result<LiveEnd, NotSent> {
    let LiveCall {
        running,
        ctl,
        keep,
        limits,
        cgroup,
        grace,
        tap,
        cancel,
    } = call;
    let started = Instant::now();
    let baseline: Option<CgroupBaseline> = match (running.cgroup_mut(), cgroup) {
        (Some(cg), Some(l)) => {
            cg.apply(&l)
                .map_err(|e| NotSent(format!("setting the call's limits: {e}")))?;
            Some(
                cg.start_run()
                    .map_err(|e| NotSent(format!("starting the call's accounting: {e}")))?,
            )
        }
        (Some(cg), None) => cg.start_run().ok(),
        (None, _) => None,
    };
    let sent = {
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut anc = SendAncillaryBuffer::new(&mut space);
        anc.push(SendAncillaryMessage::ScmRights(&borrowed));
        // Never blocks: a program that stopped reading its channel is dead.
        rustix::net::sendmsg(
            ctl,
            &[IoSlice::new(request)],
            &mut anc,
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        )
    };
    // Copies are in flight; ours would keep the call's output open forever.
    drop(fds);
    if let Err(e) = sent {
        running.kill();
        return Err(NotSent(format!("the box's program does not take calls ({e})")));
    }
    let mut out = Capture::new(Stream::Stdout, Some(out), limits.output_bytes);
    let mut err = Capture::new(Stream::Stderr, Some(err), limits.output_bytes);
    let mut sink = TapSink(tap);
    let deadline = started + limits.timeout;
    let hard_deadline = deadline + grace;
    let mut ended: Option<Ended> = None;
    let mut killed_for: Option<KilledFor> = None;
    let mut violation: Option<Violation> = None;
    let (mut box_died, mut spoiled, mut was_started, mut restarted, mut interpreter_died) =
        (false, false, false, false, false);
    // Spared when the call is killed before it ends (the call's own
    // interpreter is not among them), and after it ends.
    let mut spare_running = keep.clone();
    let mut drain_until: Option<Instant> = None;
    let kill = |running: &mut RunningBox, spare: &[i32]| -> bool {
        match running.cgroup_mut() {
            Some(cg) => cg.kill_all_except(spare),
            // Without a cgroup the host cannot find the call's processes.
            None => false,
        }
    };
    let mut msg = vec![0u8; 4096];
    loop {
        if ended.is_some() && !out.is_open() && !err.is_open() {
            break;
        }
        if box_died {
            break;
        }
        let now = Instant::now();
        if now >= hard_deadline {
            // Stopped, frozen or silent: kill the whole box.
            running.kill();
            killed_for.get_or_insert(KilledFor::Unresponsive);
            spoiled = true;
            break;
        }
        if drain_until.is_some_and(|d| now >= d) {
            // The call ended but someone in the box holds its output open.
            out.close();
            err.close();
            spoiled = true;
            break;
        }
        if ended.is_none() && killed_for.is_none() && now >= deadline {
            killed_for = Some(KilledFor::Timeout);
            spoiled |= !kill(running, &spare_running);
        }
        let wake = match (ended, drain_until) {
            (Some(_), Some(d)) => d,
            (None, _) if killed_for.is_some() => hard_deadline,
            _ => deadline,
        };
        let wait = wake.min(hard_deadline).saturating_duration_since(now);
        let events_fd = running.events_fd();
        let pidfd = running.pidfd();
        let out_fd = out.fd();
        let err_fd = err.fd();
        let mut pfds: Vec<PollFd<'_>> = Vec::with_capacity(6);
        pfds.push(PollFd::new(ctl, PollFlags::IN));
        pfds.push(PollFd::new(&events_fd, PollFlags::IN));
        pfds.push(PollFd::new(&pidfd, PollFlags::IN));
        let idx_cancel = cancel.as_ref().map(|c| {
            pfds.push(PollFd::new(c, PollFlags::IN));
            pfds.len() - 1
        });
        if let Some(fd) = &out_fd {
            pfds.push(PollFd::new(fd, PollFlags::IN));
        }
        if let Some(fd) = &err_fd {
            pfds.push(PollFd::new(fd, PollFlags::IN));
        }
        let ts = Timespec::try_from(wait.max(Duration::from_millis(1))).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        let _ = poll(&mut pfds, Some(&ts));
        let ctl_ready = !pfds[0].revents().is_empty();
        let events_ready = !pfds[1].revents().is_empty();
        let died = !pfds[2].revents().is_empty();
        let cancelled = idx_cancel.is_some_and(|i| !pfds[i].revents().is_empty());
        drop(pfds);
        out.pump(&mut sink);
        err.pump(&mut sink);
        if cancelled && ended.is_none() && killed_for.is_none() {
            killed_for = Some(KilledFor::Cancelled);
            spoiled |= !kill(running, &spare_running);
        }
        if ctl_ready {
            loop {
                match rustix::net::recv(ctl, &mut msg, RecvFlags::DONTWAIT) {
                    Ok((0, _)) => {
                        // The program closed its channel: it is gone.
                        box_died = true;
                        break;
                    }
                    Ok((n, _)) => match CallMessage::parse(&msg[..n]) {
                        Some(CallMessage::Started {
                            keep: k,
                            restarted: r,
                            ..
                        }) if !was_started => {
                            was_started = true;
                            restarted = r;
                            // The program names processes by their pids in the box.
                            spare_running = keep.iter().copied().chain(running.host_pids(&k)).collect();
                        }
                        Some(CallMessage::Exited {
                            status,
                            keep: k,
                            died: d,
                        }) if ended.is_none() => {
                            ended = Ended::from_wait_status(status)
                                .or(Some(Ended::Signaled(rustix::process::Signal::KILL.as_raw())));
                            interpreter_died = d;
                            // The call is over: whatever it left goes too,
                            // which also closes its output pipes.
                            let spare: Vec<i32> = keep.iter().copied().chain(running.host_pids(&k)).collect();
                            spoiled |= !kill(running, &spare);
                            drain_until = Some(Instant::now() + Duration::from_millis(250));
                        }
                        _ => {
                            // Not the protocol: a confused or hostile program.
                            spoiled = true;
                        }
                    },
                    Err(rustix::io::Errno::INTR) => {}
                    Err(_) => break,
                }
            }
        }
        if events_ready || died {
            for ev in running.read_events() {
                if let BoxEvent::Violation(v) = ev {
                    violation.get_or_insert(v);
                }
            }
            if died {
                box_died = true;
            }
        }
    }
    if box_died && violation.is_none() {
        // Give init's report a moment: a violation kills the box too.
        for ev in running.read_events() {
            if let BoxEvent::Violation(v) = ev {
                violation.get_or_insert(v);
            }
        }
    }
    let stats = match (running.cgroup_mut(), baseline) {
        (Some(cg), Some(base)) => Some(cg.stats(&base)),
        _ => None,
    };
    Ok(LiveEnd {
        observed: Observed {
            setup_error: None,
            violation,
            killed_for,
            ended,
            oom_kills: stats.map_or(0, |s| s.oom_kills),
            cpu_ms: stats.and_then(|s| s.cpu_ns).map_or(0.0, |ns| ns as f64 / 1e6),
        },
        stdout: out,
        stderr: err,
        wall: started.elapsed(),
        stats,
        box_died,
        spoiled,
        restarted,
        interpreter_died,
    })
}

/// A pipe whose write end is kept by the caller to cancel a call (a byte, or
/// closing it), and whose read end the call's loop watches.
pub(crate) fn cancel_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK)?;
    Ok((r, w))
}
