//! Starting a warm box: a fork-server that imported the plugin, or a
//! prestarted box waiting for its one event. Every wait here has the
//! configured start timeout as its deadline.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType};
use warden_jail::{RunningBox, Stdin};

use super::protocol::ServerMessage;
use super::{Kind, WarmBox};
use crate::runtimes::{RuntimeDef, WarmMode};
use crate::{CallLimits, Code, RunnerInner, RuntimeError, artifacts, memfd_with};

fn channel_error(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Channel(std::io::Error::other(msg.into()))
}

/// Start one warm box for `code`.
pub(super) fn start_box(
    rt: &RunnerInner,
    def: &RuntimeDef,
    code: &Code,
    limits: &CallLimits,
) -> Result<WarmBox, RuntimeError> {
    let handle = artifacts::fresh_box(&rt.jail, limits.workspace_bytes)?;
    // A long wall clock: the box lives until evicted; calls have their own.
    let life = rt.pool.config.idle_ttl + Duration::from_secs(24 * 3600);
    let config = &rt.pool.config;
    let mut box_limits = limits.clone();
    box_limits.memory_bytes = limits
        .memory_bytes
        .saturating_add(def.server_memory(config.server_memory_bytes));
    let deadline = Instant::now() + config.start_timeout;
    // A box of code granted network gets its own door for its whole life.
    let door = code.network.as_ref().map(crate::door::Door::grant).transpose()?;
    let fit = |spec: &mut warden_jail::BoxSpec| door.as_ref().map_or(Ok(()), |d| d.fit(spec));
    match def.warm {
        WarmMode::ForkServer => {
            let (host, boxed) = rustix::net::socketpair(
                AddressFamily::UNIX,
                SocketType::SEQPACKET,
                SocketFlags::CLOEXEC,
                None,
            )
            .map_err(|e| RuntimeError::Channel(e.into()))?;
            let mut spec = rt.box_spec(def, code, "serve", &box_limits, life);
            // Per-call CPU limits are set in each child; the server idles.
            spec.limits.cpu_time = None;
            spec.limits.pids = Some(limits.pids.saturating_add(config.server_tasks));
            spec.extra_fds.push((boxed, 5));
            fit(&mut spec)?;
            let mut running = handle.spawn(spec)?;
            drop(running.take_stdout());
            drop(running.take_stderr());
            let msg = recv_until(&host, &mut running, deadline)?;
            match ServerMessage::parse(&msg) {
                Some(ServerMessage::Ready { .. }) => {}
                Some(ServerMessage::LoadFailed { error, .. }) => {
                    return Err(RuntimeError::Code {
                        path: code.dir.clone(),
                        reason: error.map_or("the plugin failed to load".into(), |e| {
                            format!("{}: {}", e.kind, e.message)
                        }),
                    });
                }
                _ => {
                    return Err(channel_error("the fork-server's first message was not `ready`"));
                }
            }
            let server_pid = running
                .program_pid()
                .ok_or_else(|| channel_error("the fork-server has no pid"))?;
            if rt.jail.features().root && !is_non_dumpable(server_pid) {
                // A call could then write the fork-server's memory through
                // /proc/<ppid>/mem and change what later calls compute.
                return Err(channel_error(
                    "the fork-server did not make itself non-dumpable; refusing to serve calls from it",
                ));
            }
            running.protect_from_oom(running.init_pid());
            running.protect_from_oom(server_pid);
            Ok(WarmBox {
                running,
                kind: Kind::ForkServer {
                    ctl: host,
                    server_pid,
                },
                workspace_bytes: limits.workspace_bytes,
                memory_ceiling: box_limits.memory_bytes,
                last_used: Instant::now(),
                door,
                egress_seen: 0,
            })
        }
        WarmMode::Prestart => {
            let result = memfd_with(c"warden-result", b"")?;
            let (ready_r, ready_w) =
                rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK)
                    .map_err(|e| RuntimeError::Channel(e.into()))?;
            let mut spec = rt.box_spec(def, code, "prestart", limits, life);
            spec.stdin = Stdin::Deferred;
            spec.extra_fds
                .push((result.try_clone().map_err(RuntimeError::Channel)?, 3));
            spec.extra_fds.push((ready_w, 5));
            fit(&mut spec)?;
            let running = handle.spawn(spec)?;
            // Wait for "ready" (the module imported) or "failed", the box's
            // death, or the deadline; the pipe is non-blocking, so a box that
            // holds its end open and says nothing cannot stall us.
            let mut buf = [0u8; 16];
            let mut got = 0;
            loop {
                match rustix::io::read(&ready_r, &mut buf[got..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        got += n;
                        if buf[..got].contains(&b'\n') || got == buf.len() {
                            break;
                        }
                        continue;
                    }
                    Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                    Err(_) => break,
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let pidfd = running.pidfd();
                let mut fds = [
                    PollFd::new(&ready_r, PollFlags::IN),
                    PollFd::new(&pidfd, PollFlags::IN),
                ];
                let ts = Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                });
                let _ = poll(&mut fds, Some(&ts));
                if !fds[1].revents().is_empty() && fds[0].revents().is_empty() {
                    break; // the box died without a word
                }
            }
            if &buf[..got] != b"ready\n" {
                running.kill();
                return Err(RuntimeError::Code {
                    path: code.dir.clone(),
                    reason: "the plugin failed to load in a prestarted box".into(),
                });
            }
            Ok(WarmBox {
                running,
                kind: Kind::Prestart { result },
                workspace_bytes: limits.workspace_bytes,
                memory_ceiling: limits.memory_bytes,
                last_used: Instant::now(),
                door,
                egress_seen: 0,
            })
        }
        WarmMode::None => Err(RuntimeError::UnknownRuntime(format!(
            "{} has no warm mode",
            def.name
        ))),
    }
}

/// A process is non-dumpable when its `/proc/<pid>` entries belong to root
/// (the kernel's rule for processes that cleared `PR_SET_DUMPABLE`).
fn is_non_dumpable(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/mem")).is_ok_and(|m| m.uid() == 0)
}

/// Receive one control message, giving up when the box dies or at `deadline`.
fn recv_until(ctl: &OwnedFd, running: &mut RunningBox, deadline: Instant) -> Result<Vec<u8>, RuntimeError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rustix::net::recv(ctl, &mut buf, RecvFlags::DONTWAIT) {
            Ok((n, _)) if n > 0 => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(_) => return Err(channel_error("the fork-server closed its channel")),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(e) => return Err(RuntimeError::Channel(e.into())),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            running.kill();
            return Err(channel_error("the warm box did not become ready in time"));
        }
        let pidfd = running.pidfd();
        let mut fds = [
            PollFd::new(ctl, PollFlags::IN),
            PollFd::new(&pidfd, PollFlags::IN),
        ];
        let ts = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        let _ = poll(&mut fds, Some(&ts));
        if !fds[1].revents().is_empty() && fds[0].revents().is_empty() {
            let events = running.read_events();
            return Err(channel_error(format!(
                "the warm box died while starting: {events:?}"
            )));
        }
    }
}
