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
use crate::launch::Launched;
use crate::outcome::{RunOutcome, SandboxReport, Violation};
use crate::report::{self, Report};
use crate::spec::{Limits, OutputLimitAction};
use crate::supervise::{self, OutputSink};
use crate::sys;

/// Something the box's init reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoxEvent {
    /// The program is running (its `exec` succeeded).
    Started,
    /// A forbidden syscall: init is killing the box.
    Violation(Violation),
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
    /// Kills and reaps init when the box is dropped without being waited
    /// for (a warm box retired, a session ended): an unreaped init stays a
    /// zombie of this process, charged to the slot's pids cgroup. First, so
    /// it runs before the slot goes back to the pool (fields drop in order).
    reaper: Option<Reaper>,
    handle: BoxHandle,
    launched: Launched,
    limits: Limits,
    on_output_limit: OutputLimitAction,
    baseline: Option<Baseline>,
    sandbox: SandboxReport,
    seen: supervise::Seen,
}

/// See [`RunningBox::reaper`].
#[derive(Debug)]
struct Reaper {
    /// `None` once disarmed.
    pidfd: Option<OwnedFd>,
}

impl Reaper {
    /// Someone else reaps init (the one-shot supervisor).
    fn disarm(mut self) {
        self.pidfd = None;
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let Some(pidfd) = &self.pidfd else { return };
        let _ = sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
        // SIGKILL from the host always lands; the wait is bounded anyway.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            if sys::reap_pidfd(pidfd.as_fd()) {
                return;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                tracing::warn!("a box's init did not die within 2 s of SIGKILL; left unreaped");
                return;
            }
            let mut fds = [rustix::event::PollFd::new(pidfd, rustix::event::PollFlags::IN)];
            let ts = rustix::event::Timespec::try_from(left).unwrap_or(rustix::event::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            });
            let _ = rustix::event::poll(&mut fds, Some(&ts));
        }
    }
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
        let reaper = launched
            .pidfd
            .try_clone()
            .ok()
            .map(|pidfd| Reaper { pidfd: Some(pidfd) });
        RunningBox {
            handle,
            launched,
            limits,
            on_output_limit,
            baseline,
            sandbox,
            seen: supervise::Seen::default(),
            reaper,
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

    /// The host pids of processes of this box known by their pids inside
    /// it (what the box's own programs report). Only processes of the box's
    /// cgroup are considered, through the kernel's `NSpid` in their status;
    /// pids without a match are left out.
    pub fn host_pids(&mut self, inside: &[i64]) -> Vec<i32> {
        if inside.is_empty() {
            return Vec::new();
        }
        let Some(cg) = self.handle.cgroup_mut() else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for pid in cg.pids() {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            // "NSpid:\t<host pid>\t<pid in the box>": the innermost is last.
            let inner = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|p| p.parse::<i64>().ok());
            if inner.is_some_and(|p| inside.contains(&p)) {
                found.push(pid);
            }
        }
        found
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
        let (records, _) = report::read_reports(&self.launched.report);
        let mut out = Vec::with_capacity(records.len());
        for r in &records {
            self.seen.note(r, &self.launched.ops);
            match *r {
                Report::Started => out.push(BoxEvent::Started),
                Report::Violation { nr, arch } => out.push(BoxEvent::Violation(Violation::new(nr, arch))),
                Report::Exited { status } => out.push(BoxEvent::Exited { status }),
                Report::SetupFailed { .. } | Report::Orphaned => {
                    if let Some(msg) = &self.seen.setup_error {
                        out.push(BoxEvent::SetupFailed(msg.clone()));
                    }
                }
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

    /// The box's `/tmp`, reached through its init's root: root only (init is
    /// non-dumpable, so `/proc/<init>/root` is closed to anyone else). Init
    /// is this process's child and not yet reaped, so its pid cannot have
    /// been reused.
    pub fn tmp_dir(&self) -> Result<crate::BoxDir, crate::JailError> {
        let path = std::path::PathBuf::from(format!("/proc/{}/root/tmp", self.launched.pid));
        crate::BoxDir::open(&path, Some(self.handle.uid()))
    }

    /// Remove every System V IPC object (shared memory, semaphores, message
    /// queues) of the box, so nothing of one call reaches the next. Root
    /// only. Returns how many were removed.
    pub fn clear_ipc(&self) -> Result<usize, crate::JailError> {
        let pidfd = self
            .launched
            .pidfd
            .try_clone()
            .map_err(|e| crate::JailError::Launch {
                step: "duplicating the box's pidfd",
                source: e,
            })?;
        crate::ipc::clear(pidfd)
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
            reaper,
        } = self;
        // The supervisor below reaps init itself.
        if let Some(r) = reaper {
            r.disarm();
        }
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
