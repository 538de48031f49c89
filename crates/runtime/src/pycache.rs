//! The Python wrapper's bytecode, compiled once per runner.
//!
//! A box that starts Python would otherwise compile `warden_wrapper.py` from
//! source: about 1.5 MiB that stays resident in every fork-server (the
//! compiler's freed memory fragments the heap) and a few milliseconds per
//! cold call. The runner compiles it once, in a box like any other (the
//! interpreter is the one the boxes run, so the bytecode matches it), and
//! installs the pyc beside the source. The pyc is checked against the
//! source's hash at every import: a stale or foreign one is ignored and the
//! source compiled, so a failure here costs memory, never correctness.

use std::path::Path;
use std::time::Duration;

use warden_jail::{Bind, BoxSpec, Jail, Limits, MIB, MountSpec, Status};

/// Compiles the wrapper where a box sees it and prints the interpreter's
/// cache tag, a newline, then the pyc.
const COMPILE: &str = r#"
import py_compile, sys
py_compile.compile("/warden/python/warden_wrapper.py", cfile="/tmp/wrapper.pyc", doraise=True,
                   invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
with open("/tmp/wrapper.pyc", "rb") as f:
    sys.stdout.buffer.write(sys.implementation.cache_tag.encode() + b"\n" + f.read())
"#;

/// Install `wrappers/python/__pycache__/warden_wrapper.<tag>.pyc`. Errors
/// are returned for the caller to log; nothing depends on the pyc.
/// `python` is the interpreter the python runtime's boxes start.
pub(crate) fn install(jail: &Jail, wrappers: &Path, python: &str) -> Result<(), String> {
    if !Path::new(python).exists() {
        return Err(format!("{python} is not installed"));
    }
    let mut spec = BoxSpec::command([python, "-I", "-S", "-c", COMPILE]);
    let mut binds = warden_jail::system_binds();
    binds.push(Bind {
        host: wrappers.to_owned(),
        target: "/warden".into(),
        optional: false,
    });
    spec.mounts = MountSpec {
        ro_binds: binds,
        workspace: None,
    };
    spec.limits = Limits {
        wall_time: Duration::from_secs(30),
        cpu_time: Some(Duration::from_secs(30)),
        memory_bytes: Some(256 * MIB),
        pids: Some(16),
        tmp_bytes: 16 * MIB,
        output_bytes: 8 * MIB as usize,
        ..Limits::default()
    };
    let out = jail.run(spec).map_err(|e| e.to_string())?;
    if out.status != Status::Ok {
        return Err(format!(
            "compiling the wrapper ended {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let newline = out
        .stdout
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("the compiler printed no cache tag")?;
    let (tag, pyc) = (&out.stdout[..newline], &out.stdout[newline + 1..]);
    let tag = std::str::from_utf8(tag)
        .ok()
        .filter(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .ok_or("the compiler printed an unusable cache tag")?;
    // A pyc starts with its 4-byte magic and 12 bytes of flags and hash.
    if pyc.len() < 16 {
        return Err("the compiler printed no bytecode".into());
    }
    let path = wrappers
        .join("python/__pycache__")
        .join(format!("warden_wrapper.{tag}.pyc"));
    crate::runtimes::write_public(&path, pyc).map_err(|e| e.to_string())
}
