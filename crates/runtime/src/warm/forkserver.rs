//! One call on a Python fork-server box.
//!
//! The host sends the fork-server a [`CallRequest`] with the call's
//! descriptors, the fork-server forks a child that runs the handler, and
//! reports `started` and `exited`; [`crate::livecall`] supervises the call
//! (its wall clock, then the whole box at the wall clock plus `grace`).
//! Everything the box does is untrusted: the plugin's own threads live in
//! the fork-server and may stop it, stay silent, keep the call's output
//! pipes open, or fill the workspace while the host cleans it. So:
//!
//! * the call's memory and process limits are set on the box's cgroup for
//!   the call only, never above the box's fixed ceiling; a fork-server that
//!   grew past its own allowance between calls is retired first;
//! * after the call everything it could leave is removed: its processes,
//!   the workspace and `/tmp` (through [`warden_jail::BoxDir`]), and System V
//!   IPC objects. Any step that fails retires the box.

use std::path::Path;

use warden_jail::{Bounds, CgroupLimits, EmptyBudget, KilledFor, RunningBox, classify};

use super::protocol::CallRequest;
use super::{CallEnd, Kind, WarmBox, WarmConfig};
use crate::livecall::{self, LiveCall, NotSent};
use crate::pipe;
use crate::result;
use crate::runtimes::RuntimeDef;
use crate::{Invocation, artifacts, memfd_with, read_memfd};

/// The call's limits for the box's cgroup; `Err` when the box is not fit to
/// serve (its fork-server grew past its allowance). Returns the memory the
/// idle fork-server holds and the limits to set.
fn call_limits(
    running: &mut RunningBox,
    inv: &Invocation,
    wbox_ceiling: u64,
    config: &WarmConfig,
    allowance: u64,
) -> Result<(u64, Option<CgroupLimits>), String> {
    let limits = &inv.limits;
    let Some(cg) = running.cgroup_mut() else {
        return Ok((0, None));
    };
    let base_mem = cg.memory_usage().unwrap_or(0);
    let tasks = cg.task_count().unwrap_or(0);
    if base_mem > allowance {
        return Err(format!(
            "the idle fork-server holds {base_mem} bytes, more than its allowance of {allowance}"
        ));
    }
    if tasks > config.server_tasks {
        return Err(format!(
            "the idle fork-server holds {tasks} tasks, more than its allowance of {}",
            config.server_tasks
        ));
    }
    Ok((
        base_mem,
        Some(CgroupLimits {
            memory_bytes: Some((base_mem + limits.memory_bytes).min(wbox_ceiling)),
            pids: Some(tasks + limits.pids),
            cpu_cores: Some(1.0),
        }),
    ))
}

/// One call on a fork-server box.
pub(super) fn call(wbox: &mut WarmBox, inv: &Invocation, config: &WarmConfig, def: &RuntimeDef) -> CallEnd {
    let protocol = def.protocol;
    let Kind::ForkServer { ctl, server_pid } = &wbox.kind else {
        return CallEnd::BoxLost("not a fork-server".into());
    };
    let server_pid = *server_pid;
    let limits = &inv.limits;
    let ceiling = wbox.memory_ceiling;
    let running = &mut wbox.running;
    let init_pid = running.init_pid();

    let allowance = def.server_memory(config.server_memory_bytes);
    let (base_mem, cgroup) = match call_limits(running, inv, ceiling, config, allowance) {
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
    let Ok(result_copy) = result.try_clone() else {
        return CallEnd::BoxLost("creating the call's channels".into());
    };
    let cpu_seconds = limits.cpu_time.as_secs() + u64::from(limits.cpu_time.subsec_nanos() > 0);
    let request = serde_json::to_vec(&CallRequest {
        cpu_seconds: cpu_seconds.max(1),
        cwd: "/workspace".into(),
    })
    .unwrap_or_default();
    let sent = livecall::run(
        LiveCall {
            running,
            ctl,
            keep: vec![init_pid, server_pid],
            limits,
            cgroup,
            grace: config.grace,
            tap: inv.tap.as_ref(),
            cancel: None,
        },
        &request,
        vec![event, out_w, err_w, result_copy],
        out_r,
        err_r,
    );
    let end = match sent {
        Ok(end) => end,
        Err(NotSent(why)) => return CallEnd::BoxLost(why),
    };
    let o = &end.observed;
    if end.box_died && o.violation.is_none() && o.ended.is_none() && o.killed_for.is_none() {
        // The fork-server died under a call it did not cause (as far as the
        // host can tell): replace it and run the call once more, cold.
        return CallEnd::BoxLost("the fork-server died during the call".into());
    }
    let bounds = Bounds {
        wall_time: limits.timeout,
        cpu_time: Some(limits.cpu_time),
        memory_bytes: Some(limits.memory_bytes),
        output_bytes: limits.output_bytes,
    };
    let (status, message) = classify(o, &bounds);
    let doc = read_memfd(&result, limits.result_bytes);
    let alive = !end.box_died && o.killed_for != Some(KilledFor::Unresponsive);
    let artifacts = if alive {
        artifacts::collect(running.handle(), limits.workspace_bytes)
    } else {
        Vec::new()
    };
    // A Node.js agent's serving process that died with the call (killed for
    // a limit, crashed) may have left anything: the box is replaced.
    let healthy = alive && !end.spoiled && !end.interpreter_died && o.violation.is_none() && scrub(running);
    let outcome = end.outcome(status, message, base_mem, running);
    let result = result::assemble(protocol, outcome, doc, limits.result_bytes, artifacts, true);
    CallEnd::Served { result, healthy }
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
