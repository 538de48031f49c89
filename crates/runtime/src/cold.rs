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
    invoke_through(rt, def, code, inv, None)
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
        spec.mounts
            .ro_binds
            .push(warden_jail::Bind::same("/etc/ssl/certs"));
        for (k, v) in d.env().into_iter().chain([(
            "NODE_EXTRA_CA_CERTS".to_owned(),
            crate::layers::HOST_CA_BUNDLE.to_owned(),
        )]) {
            spec.env.retain(|(key, _)| key.to_str() != Some(k.as_str()));
            spec.env.push((k.into(), v.into()));
        }
        spec.egress = Some(
            d.egress()
                .map_err(|e| RuntimeError::Channel(std::io::Error::other(e.to_string())))?,
        );
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
