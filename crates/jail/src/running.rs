//! A box that has started and is still running.
//!
//! One-shot runs call [`RunningBox::wait`] at once. Long-lived boxes (the
//! runtime's warm fork-servers) keep the box, talk to the program over
//! descriptors handed in through [`crate::BoxSpec::extra_fds`], watch
//! [`RunningBox::events_fd`] for a seccomp violation or the program's end,
//! and use the box's cgroup for per-call limits and accounting.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::BoxHandle;
use crate::cgroup::{Baseline, BoxCgroup};
use crate::child::{RECORD_LEN, Record, Step, kind};
use crate::launch::{Launched, op_path};
use crate::outcome::{RunOutcome, SandboxReport};
use crate::seccomp::syscall_name;
use crate::spec::{Limits, OutputLimitAction};
use crate::supervise::{self, OutputSink};
use crate::sys;

/// Something the box's init reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoxEvent {
    /// The program is running (its `exec` succeeded).
    Started,
    /// A forbidden syscall: init is killing the box.
    Violation {
        /// Syscall name.
        syscall: String,
        /// Syscall number.
        nr: i64,
    },
    /// The program ended (raw wait status); init is taking the box down.
    Exited {
        /// Raw `wait` status.
        status: i32,
    },
    /// Setting the box up failed.
    SetupFailed(String),
}

/// A started box. Dropping it kills the box (its lifeline closes).
#[derive(Debug)]
pub struct RunningBox {
    handle: BoxHandle,
    launched: Launched,
    limits: Limits,
    on_output_limit: OutputLimitAction,
    baseline: Option<Baseline>,
    sandbox: SandboxReport,
    seen: supervise::Seen,
}

impl RunningBox {
    pub(crate) fn new(
        handle: BoxHandle,
        launched: Launched,
        limits: Limits,
        on_output_limit: OutputLimitAction,
        baseline: Option<Baseline>,
        sandbox: SandboxReport,
    ) -> RunningBox {
        supervise::set_nonblocking(&launched.report);
        RunningBox {
            handle,
            launched,
            limits,
            on_output_limit,
            baseline,
            sandbox,
            seen: supervise::Seen::default(),
        }
    }

    /// Pid of the box's init, in the host's pid namespace.
    pub fn init_pid(&self) -> i32 {
        self.launched.pid
    }

    /// Host pid of the program (init's only child), once it runs.
    pub fn program_pid(&self) -> Option<i32> {
        let pid = self.launched.pid;
        let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    /// The slot's id.
    pub fn box_id(&self) -> u32 {
        self.handle.id()
    }

    /// What the run's sandbox consists of.
    pub fn sandbox(&self) -> &SandboxReport {
        &self.sandbox
    }

    /// A pidfd of init: readable when the box is gone.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.launched.pidfd.as_fd()
    }

    /// Readable when init has something to report; then call
    /// [`RunningBox::read_events`].
    pub fn events_fd(&self) -> BorrowedFd<'_> {
        self.launched.report.as_fd()
    }

    /// Take the program's stdout pipe (the caller drains it).
    pub fn take_stdout(&mut self) -> Option<OwnedFd> {
        self.launched.stdout.take()
    }

    /// Take the program's stderr pipe.
    pub fn take_stderr(&mut self) -> Option<OwnedFd> {
        self.launched.stderr.take()
    }

    /// Read what init reported since the last call.
    pub fn read_events(&mut self) -> Vec<BoxEvent> {
        let mut out = Vec::new();
        let mut buf = [0u8; RECORD_LEN];
        while let Ok(RECORD_LEN) = rustix::io::read(&self.launched.report, &mut buf) {
            let rec = Record::decode(&buf);
            match rec.kind {
                kind::STARTED => out.push(BoxEvent::Started),
                kind::VIOLATION => {
                    self.seen.violation = Some(rec.a);
                    out.push(BoxEvent::Violation {
                        syscall: syscall_name(rec.a),
                        nr: rec.a,
                    });
                }
                kind::EXITED => {
                    self.seen.exit_status = Some(rec.a as i32);
                    out.push(BoxEvent::Exited { status: rec.a as i32 });
                }
                kind::SETUP_FAILED => {
                    let msg = setup_message(&rec, &self.launched.ops);
                    self.seen.setup_error = Some(msg.clone());
                    out.push(BoxEvent::SetupFailed(msg));
                }
                _ => {}
            }
        }
        out
    }

    /// The box's cgroup (per-call limits and accounting).
    pub fn cgroup_mut(&mut self) -> Option<&mut BoxCgroup> {
        self.handle.cgroup_mut()
    }

    /// Host path of the box's workspace.
    pub fn workspace_dir(&self) -> &std::path::Path {
        self.handle.workspace_dir()
    }

    /// The slot, for workspace file exchange while the box runs.
    pub fn handle(&self) -> &BoxHandle {
        &self.handle
    }

    /// Keep the kernel's OOM killer off `pid` (init, a fork-server): the
    /// largest other process of the box is chosen instead. Root only; a
    /// no-op that returns false otherwise.
    pub fn protect_from_oom(&self, pid: i32) -> bool {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), "-1000").is_ok()
    }

    /// Kill every process of the box now.
    pub fn kill(&self) {
        let _ = sys::pidfd_signal(self.launched.pidfd.as_fd(), libc::SIGKILL);
    }

    /// Give a [`crate::Stdin::Deferred`] box its input (written as the box
    /// reads it, during [`RunningBox::wait`]).
    pub fn set_stdin(&mut self, bytes: Vec<u8>) {
        if let Some((_, slot)) = self.launched.stdin.as_mut() {
            *slot = Some(bytes);
        }
    }

    /// Start the accounting over (the box's cgroup peak and counters), for a
    /// box started ahead of the call it serves.
    pub fn restart_accounting(&mut self) {
        if let Some(cg) = self.handle.cgroup_mut()
            && let Ok(base) = cg.start_run()
        {
            self.baseline = Some(base);
        }
    }

    /// Run the box to its end (program exit, wall clock, output cap, or a
    /// kill) and report. Returns the handle for workspace access.
    pub fn wait(self, sink: &mut dyn OutputSink) -> (RunOutcome, BoxHandle) {
        let deadline = self.launched.started + self.limits.wall_time;
        self.wait_until(deadline, sink)
    }

    /// [`RunningBox::wait`] with the box killed at `deadline` rather than at
    /// its own wall clock (a box started ahead of its call).
    pub fn wait_until(
        self,
        deadline: std::time::Instant,
        sink: &mut dyn OutputSink,
    ) -> (RunOutcome, BoxHandle) {
        let RunningBox {
            mut handle,
            launched,
            limits,
            on_output_limit,
            baseline,
            sandbox,
            seen,
        } = self;
        let collected = supervise::supervise(
            launched,
            seen,
            deadline,
            limits.output_bytes,
            on_output_limit,
            sink,
        );
        let stats = match (handle.cgroup_mut(), baseline) {
            (Some(cg), Some(base)) => Some(cg.stats(&base)),
            _ => None,
        };
        let outcome = crate::outcome(collected, stats, &limits, handle.id(), sandbox);
        (outcome, handle)
    }
}

pub(crate) fn setup_message(rec: &Record, ops: &[crate::mounts::MountOp]) -> String {
    let step = Step::from_u32(rec.step)
        .map(Step::describe)
        .unwrap_or("an unknown step");
    let errno = std::io::Error::from_raw_os_error(rec.errno);
    let at = op_path(ops, rec.a)
        .map(|p| format!(" at {p}"))
        .unwrap_or_default();
    if rec.step == Step::Exec as u32 {
        format!("cannot execute the program: {errno}")
    } else {
        format!("box setup failed while {step}{at}: {errno}")
    }
}
