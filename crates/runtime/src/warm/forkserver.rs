//! One call on a Python fork-server box.
//!
//! The host sends the fork-server a [`CallRequest`] with the call's
//! descriptors, the fork-server forks a child that runs the handler, and
//! reports `started` and `exited`. Everything the box does is untrusted: the
//! plugin's own threads live in the fork-server and may stop it, stay
//! silent, keep the call's output pipes open, or fill the workspace while
//! the host cleans it. So:
//!
//! * the call has its wall clock; past it the host kills the call's
//!   processes, and past the wall clock plus `grace` (no `exited` report,
//!   output still open) it kills the whole box: a stopped or silent box
//!   counts as dead;
//! * the call's memory and process limits are set on the box's cgroup for
//!   the call only, never above the box's fixed ceiling; a fork-server that
//!   grew past its own allowance between calls is retired first;
//! * after the call everything it could leave is removed: its processes,
//!   the workspace and `/tmp` (through [`warden_jail::BoxDir`]), and System V
//!   IPC objects. Any step that fails retires the box.

use std::io::IoSlice;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use warden_jail::{
    Bounds, BoxEvent, Capture, CgroupBaseline, CgroupLimits, EmptyBudget, Ended, KilledFor, Observed,
    RunOutcome, RunningBox, Stream, Violation, classify,
};

use super::protocol::{CallRequest, ServerMessage};
use super::{CallEnd, Kind, WarmBox, WarmConfig, pipe};
use crate::result;
use crate::runtimes::Protocol;
use crate::{Invocation, TapSink, artifacts, memfd_with, read_memfd};

/// Set the call's limits on the box's cgroup; `Err` when the box is not fit
/// to serve (its fork-server grew past its allowance, or the cgroup failed).
/// Returns the memory the idle fork-server held and the accounting baseline.
fn apply_call_limits(
    running: &mut RunningBox,
    inv: &Invocation,
    wbox_ceiling: u64,
    config: &WarmConfig,
) -> Result<(u64, Option<CgroupBaseline>), String> {
    let limits = &inv.limits;
    let Some(cg) = running.cgroup_mut() else {
        return Ok((0, None));
    };
    let base_mem = cg.memory_usage().unwrap_or(0);
    let tasks = cg.task_count().unwrap_or(0);
    if base_mem > config.server_memory_bytes {
        return Err(format!(
            "the idle fork-server holds {base_mem} bytes, more than its allowance of {}",
            config.server_memory_bytes
        ));
    }
    if tasks > config.server_tasks {
        return Err(format!(
            "the idle fork-server holds {tasks} tasks, more than its allowance of {}",
            config.server_tasks
        ));
    }
    cg.apply(&CgroupLimits {
        memory_bytes: Some((base_mem + limits.memory_bytes).min(wbox_ceiling)),
        pids: Some(tasks + limits.pids),
        cpu_cores: Some(1.0),
    })
    .map_err(|e| format!("setting the call's limits: {e}"))?;
    let base = cg
        .start_run()
        .map_err(|e| format!("starting the call's accounting: {e}"))?;
    Ok((base_mem, Some(base)))
}

/// What the loop learned about the call.
#[derive(Default)]
struct Watch {
    ended: Option<Ended>,
    killed_for: Option<KilledFor>,
    violation: Option<Violation>,
    /// The box died (init is gone).
    box_died: bool,
    /// The box must not serve again (it held our pipes, ignored a kill, …).
    spoiled: bool,
}

/// One call on a fork-server box.
pub(super) fn call(wbox: &mut WarmBox, inv: &Invocation, config: &WarmConfig) -> CallEnd {
    let Kind::ForkServer { ctl, server_pid } = &wbox.kind else {
        return CallEnd::BoxLost("not a fork-server".into());
    };
    let server_pid = *server_pid;
    let limits = &inv.limits;
    let ceiling = wbox.memory_ceiling;
    let running = &mut wbox.running;
    let init_pid = running.init_pid();
    let started = Instant::now();

    let (base_mem, baseline) = match apply_call_limits(running, inv, ceiling, config) {
        Ok(v) => v,
        Err(why) => return CallEnd::BoxLost(why),
    };

    // Channels: output pipes, the event and the result as memory files.
    let channels = (|| -> Result<_, crate::RuntimeError> {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let event = memfd_with(c"warden-event", &inv.event)?;
        let result = memfd_with(c"warden-result", b"")?;
        Ok((out_r, out_w, err_r, err_w, event, result))
    })();
    let Ok((out_r, out_w, err_r, err_w, event, result)) = channels else {
        return CallEnd::BoxLost("creating the call's channels".into());
    };
    let cpu_seconds = limits.cpu_time.as_secs() + u64::from(limits.cpu_time.subsec_nanos() > 0);
    let request = CallRequest {
        cpu_seconds: cpu_seconds.max(1),
        cwd: "/workspace".into(),
    };
    let header = serde_json::to_vec(&request).unwrap_or_default();
    let fds = [event.as_fd(), out_w.as_fd(), err_w.as_fd(), result.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    anc.push(SendAncillaryMessage::ScmRights(&fds));
    // Never blocks: a fork-server that stopped reading its channel is dead.
    if let Err(e) = rustix::net::sendmsg(
        ctl,
        &[IoSlice::new(&header)],
        &mut anc,
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    ) {
        running.kill();
        return CallEnd::BoxLost(format!("the fork-server does not take calls ({e})"));
    }
    // Only the call's process may hold the write ends now.
    drop((out_w, err_w, event));

    let mut out = Capture::new(Stream::Stdout, Some(out_r), limits.output_bytes);
    let mut err = Capture::new(Stream::Stderr, Some(err_r), limits.output_bytes);
    let mut sink = TapSink(inv.tap.as_ref());
    let deadline = started + limits.timeout;
    // Past this the box is dead to us, whatever it is doing.
    let hard_deadline = deadline + config.grace;
    let mut w = Watch::default();
    // Once the call's end is known, how long output may stay open.
    let mut drain_until: Option<Instant> = None;
    let mut msg = vec![0u8; 4096];
    loop {
        if w.ended.is_some() && !out.is_open() && !err.is_open() {
            break;
        }
        if w.box_died {
            break;
        }
        let now = Instant::now();
        if now >= hard_deadline {
            // Stopped, frozen or silent: kill the whole box.
            running.kill();
            w.killed_for.get_or_insert(KilledFor::Unresponsive);
            w.spoiled = true;
            break;
        }
        if drain_until.is_some_and(|d| now >= d) {
            // The call ended but someone in the box holds its output open.
            out.close();
            err.close();
            w.spoiled = true;
            break;
        }
        if w.ended.is_none() && w.killed_for.is_none() && now >= deadline {
            w.killed_for = Some(KilledFor::Timeout);
            if !kill_call(running, init_pid, server_pid) {
                w.spoiled = true;
            }
        }
        let wake = match (w.ended, drain_until) {
            (Some(_), Some(d)) => d,
            (None, _) if w.killed_for.is_some() => hard_deadline,
            _ => deadline,
        };
        let wait = wake.min(hard_deadline).saturating_duration_since(now);
        let events_fd = running.events_fd();
        let pidfd = running.pidfd();
        let out_fd = out.fd();
        let err_fd = err.fd();
        let mut pfds: Vec<PollFd<'_>> = Vec::with_capacity(5);
        pfds.push(PollFd::new(ctl, PollFlags::IN));
        pfds.push(PollFd::new(&events_fd, PollFlags::IN));
        pfds.push(PollFd::new(&pidfd, PollFlags::IN));
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
        drop(pfds);
        out.pump(&mut sink);
        err.pump(&mut sink);
        if ctl_ready {
            loop {
                match rustix::net::recv(ctl, &mut msg, RecvFlags::DONTWAIT) {
                    Ok((0, _)) => {
                        // The fork-server closed its channel: it is gone.
                        w.box_died = true;
                        break;
                    }
                    Ok((n, _)) => match ServerMessage::parse(&msg[..n]) {
                        Some(ServerMessage::Exited { status }) if w.ended.is_none() => {
                            w.ended = Ended::from_wait_status(status)
                                .or(Some(Ended::Signaled(rustix::process::Signal::KILL.as_raw())));
                            // The call is over: whatever it left goes too,
                            // which also closes its output pipes.
                            if !kill_call(running, init_pid, server_pid) {
                                w.spoiled = true;
                            }
                            drain_until = Some(Instant::now() + Duration::from_millis(250));
                        }
                        Some(ServerMessage::Started { .. }) => {}
                        _ => {
                            // Not the protocol: a confused or hostile server.
                            w.spoiled = true;
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
                    w.violation.get_or_insert(v);
                }
            }
            if died {
                w.box_died = true;
            }
        }
    }
    if w.box_died && w.violation.is_none() {
        // Give init's report a moment: a violation kills the box too.
        for ev in running.read_events() {
            if let BoxEvent::Violation(v) = ev {
                w.violation.get_or_insert(v);
            }
        }
        if w.violation.is_none() && w.ended.is_none() && w.killed_for.is_none() {
            return CallEnd::BoxLost("the fork-server died during the call".into());
        }
    }
    let wall = started.elapsed();
    let stats = match (running.cgroup_mut(), baseline) {
        (Some(cg), Some(base)) => Some(cg.stats(&base)),
        _ => None,
    };
    let observed = Observed {
        setup_error: None,
        violation: w.violation.clone(),
        killed_for: w.killed_for,
        ended: w.ended,
        oom_kills: stats.map_or(0, |s| s.oom_kills),
        cpu_ms: stats.and_then(|s| s.cpu_ns).map_or(0.0, |ns| ns as f64 / 1e6),
    };
    let bounds = Bounds {
        wall_time: limits.timeout,
        cpu_time: Some(limits.cpu_time),
        memory_bytes: Some(limits.memory_bytes),
        output_bytes: limits.output_bytes,
    };
    let (status, message) = classify(&observed, &bounds);
    let doc = read_memfd(&result, limits.result_bytes);
    let alive = !w.box_died && w.killed_for != Some(KilledFor::Unresponsive);
    let artifacts = if alive {
        artifacts::collect(running.handle(), limits.workspace_bytes)
    } else {
        Vec::new()
    };
    let healthy = alive && !w.spoiled && w.violation.is_none() && scrub(running);
    let (stdout, stdout_truncated) = out.finish();
    let (stderr, stderr_truncated) = err.finish();
    let outcome = RunOutcome {
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
    };
    let result = result::assemble(
        Protocol::Wrapper,
        outcome,
        doc,
        limits.result_bytes,
        artifacts,
        true,
    );
    CallEnd::Served { result, healthy }
}

/// Kill every process of the box except its init and the fork-server.
/// False when some survived (the box is then retired).
fn kill_call(running: &mut RunningBox, init_pid: i32, server_pid: i32) -> bool {
    match running.cgroup_mut() {
        Some(cg) => cg.kill_all_except(&[init_pid, server_pid]),
        // Without a cgroup the host cannot find the call's processes.
        None => false,
    }
}

/// Empty the workspace (keeping a fresh `out/`), `/tmp` and the box's IPC
/// objects between calls. False when the box cannot be made clean (it is
/// then retired).
fn scrub(running: &RunningBox) -> bool {
    if !rustix::process::geteuid().is_root() {
        // Rootless: /tmp and the IPC namespace cannot be reached from
        // outside; the box serves one call only.
        return false;
    }
    let Ok(ws) = running.handle().workspace() else {
        return false;
    };
    let mut ok = ws.empty(EmptyBudget::default());
    ok &= ws.ensure_dir(Path::new("out"), 0o755).is_ok();
    ok &= running.tmp_dir().is_ok_and(|t| t.empty(EmptyBudget::default()));
    ok &= running.clear_ipc().is_ok();
    ok
}
