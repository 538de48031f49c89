//! One call on a prestarted box (Node.js): the box imported the module
//! ahead and waits for its one event on stdin. The call consumes the box;
//! the jail's one-shot supervision (with the call's wall clock as its
//! deadline) runs it to its end.

use std::time::Instant;

use warden_jail::CgroupLimits;

use super::{Kind, WarmBox};
use crate::result::{self, HandlerResult};
use crate::runtimes::Protocol;
use crate::{Invocation, RuntimeError, TapSink, artifacts, read_memfd};

pub(super) fn call(
    wbox: WarmBox,
    inv: &Invocation,
    protocol: Protocol,
) -> Result<HandlerResult, RuntimeError> {
    let WarmBox {
        mut running,
        kind,
        door,
        ..
    } = wbox;
    let Kind::Prestart { result } = kind else {
        return Err(RuntimeError::Channel(std::io::Error::other(
            "not a prestarted box",
        )));
    };
    let limits = &inv.limits;
    if let Some(cg) = running.cgroup_mut() {
        let _ = cg.apply(&CgroupLimits {
            memory_bytes: Some(limits.memory_bytes),
            pids: Some(limits.pids),
            cpu_cores: Some(1.0),
        });
    }
    running.restart_accounting();
    running.set_stdin(inv.event.clone());
    let (outcome, handle) =
        running.wait_until(Instant::now() + limits.timeout, &mut TapSink(inv.tap.as_ref()));
    let doc = read_memfd(&result, limits.result_bytes);
    let artifacts = artifacts::collect(&handle, limits.workspace_bytes);
    let mut r = result::assemble(protocol, outcome, doc, limits.result_bytes, artifacts, true);
    // The box served its one call and is gone: its proxy's whole record is
    // this call's.
    if let Some(door) = door {
        r.egress = crate::door::notable(door.stop().connections);
    }
    Ok(r)
}
