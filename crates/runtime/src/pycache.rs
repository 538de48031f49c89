//! The bytecode of Warden's own Python modules, compiled once per runner.
//!
//! A box that starts Python would otherwise compile them from source: for
//! the handler wrapper (`warden_wrapper.py`) about 1.5 MiB that stays
//! resident in every fork-server (the compiler's freed memory fragments the
//! heap) and a few milliseconds per cold call; for the session agent
//! (`warden_session.py`) a few milliseconds of every session box's start.
//! The runner compiles them once, in a box like any other (the interpreter
//! is the one the boxes run, so the bytecode matches it), and installs each
//! pyc beside its source. A pyc is checked against the source's hash at
//! every import: a stale or foreign one is ignored and the source compiled,
//! so a failure here costs time and memory, never correctness.

use std::path::Path;
use std::time::Duration;

use warden_jail::{Bind, BoxSpec, Jail, Limits, MIB, MountSpec, Status};

/// The modules compiled, under `/warden/python`.
const MODULES: [&str; 2] = ["warden_wrapper", "warden_session"];

/// Compiles each of [`MODULES`] where a box sees it and prints the
/// interpreter's cache tag and a newline, then per module `NAME LENGTH`, a
/// newline and the pyc.
const COMPILE: &str = r#"
import py_compile, sys
out = sys.stdout.buffer
out.write(sys.implementation.cache_tag.encode() + b"\n")
for name in sys.argv[1:]:
    py_compile.compile(f"/warden/python/{name}.py", cfile="/tmp/c.pyc", doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    with open("/tmp/c.pyc", "rb") as f:
        data = f.read()
    out.write(b"%s %d\n" % (name.encode(), len(data)) + data)
"#;

/// Install `wrappers/python/__pycache__/<module>.<tag>.pyc` for each of
/// [`MODULES`]. Errors
/// are returned for the caller to log; nothing depends on the pyc.
/// `python` is the interpreter the python runtime's boxes start.
pub(crate) fn install(jail: &Jail, wrappers: &Path, python: &str) -> Result<(), String> {
    if !Path::new(python).exists() {
        return Err(format!("{python} is not installed"));
    }
    let mut spec = BoxSpec::command([python, "-I", "-S", "-c", COMPILE]);
    spec.args.extend(MODULES.iter().map(std::ffi::OsString::from));
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
    let (tag, mut rest) = line(&out.stdout).ok_or("the compiler printed no cache tag")?;
    let tag = std::str::from_utf8(tag)
        .ok()
        .filter(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .ok_or("the compiler printed an unusable cache tag")?;
    for module in MODULES {
        let (header, after) =
            line(rest).ok_or_else(|| format!("the compiler printed nothing for {module}"))?;
        let len = std::str::from_utf8(header)
            .ok()
            .and_then(|h| h.strip_prefix(module)?.strip_prefix(' ')?.parse::<usize>().ok())
            .filter(|&n| n <= after.len())
            .ok_or_else(|| format!("the compiler's output for {module} is malformed"))?;
        let (pyc, next) = after.split_at(len);
        rest = next;
        // A pyc starts with its 4-byte magic and 12 bytes of flags and hash.
        if pyc.len() < 16 {
            return Err(format!("the compiler printed no bytecode for {module}"));
        }
        let path = wrappers
            .join("python/__pycache__")
            .join(format!("{module}.{tag}.pyc"));
        crate::runtimes::write_public(&path, pyc).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The bytes before the first newline, and those after it.
fn line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == b'\n')?;
    Some((&bytes[..at], &bytes[at + 1..]))
}
