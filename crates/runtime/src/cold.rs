//! A call in a fresh box: start the interpreter, load the handler, run it
//! once, collect the result and artifacts, scrub the box.

use warden_jail::Stdin;

use crate::door::Door;
use crate::result::{self, HandlerResult};
use crate::runtimes::{Protocol, RuntimeDef};
use crate::{Code, Invocation, RunnerInner, RuntimeError, artifacts, memfd_with, read_memfd};

pub(crate) fn invoke(
    rt: &RunnerInner,
    def: &RuntimeDef,
    code: &Code,
    inv: &Invocation,
) -> Result<HandlerResult, RuntimeError> {
    let Some(net) = &code.network else {
        return invoke_through(rt, def, code, inv, None);
    };
    // A door of its own for this one box; stopping it cuts what the box
    // left open and waits for every record.
    let door = Door::grant(net)?;
    let result = invoke_through(rt, def, code, inv, Some(&door));
    let report = door.stop();
    result.map(|mut r| {
        r.egress = crate::door::notable(report.connections);
        r
    })
}

/// A call in a fresh box that reaches the network through `door`, when
/// given (the proxy variables set, the host's CA certificates bound).
pub(crate) fn invoke_through(
    rt: &RunnerInner,
    def: &RuntimeDef,
    code: &Code,
    inv: &Invocation,
    door: Option<&Door>,
) -> Result<HandlerResult, RuntimeError> {
    let limits = &inv.limits;
    let handle = artifacts::fresh_box(&rt.jail, limits.workspace_bytes)?;
    let mut spec = rt.box_spec(def, code, "once", limits, limits.timeout);
    if let Some(d) = door {
        d.fit(&mut spec)?;
    }
    let result_fd = match def.protocol {
        Protocol::Wrapper | Protocol::Script => {
            let result = memfd_with(c"warden-result", b"")?;
            let event = memfd_with(c"warden-event", &inv.event)?;
            spec.extra_fds
                .push((result.try_clone().map_err(RuntimeError::Channel)?, 3));
            spec.extra_fds.push((event, 4));
            Some(result)
        }
        Protocol::Stdio => {
            spec.stdin = Stdin::Bytes(inv.event.clone());
            None
        }
        Protocol::Raw => None,
    };
    let (outcome, handle) = handle.run(spec, &mut crate::TapSink(inv.tap.as_ref()))?;
    let doc = result_fd
        .as_ref()
        .and_then(|fd| read_memfd(fd, limits.result_bytes));
    let artifacts = artifacts::collect(&handle, limits.workspace_bytes);
    Ok(result::assemble(
        def.protocol,
        outcome,
        doc,
        limits.result_bytes,
        artifacts,
        false,
    ))
}
