//! Rootless mode: Warden run by an unprivileged user gives every box its own
//! user namespace. The test switches to `nobody` itself.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

const NOBODY: u32 = 65534;

/// The binary and fixtures copied where `nobody` can read them (the checkout
/// may sit under a private home directory).
fn stage() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("warden-rootless-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("warden");
    std::fs::copy(warden_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fx = dir.path().join("fixtures");
    std::fs::create_dir(&fx).unwrap();
    std::fs::set_permissions(&fx, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in [
        "identity.py",
        "write_usr.py",
        "syscall.py",
        "escape_grandchild.py",
        "read_secrets.py",
    ] {
        std::fs::copy(fixtures().join(f), fx.join(f)).unwrap();
        std::fs::set_permissions(fx.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    (dir, bin, fx)
}

fn run_as_nobody(bin: &Path, fx: &Path, state: &Path, argv: &[&str]) -> Run {
    let out = Command::new(bin)
        .args(["run", "--json", "--state-dir"])
        .arg(state)
        .arg("--ro-bind")
        .arg(format!("{}:/fixtures", fx.display()))
        .arg("--")
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON from rootless warden ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Run {
        json,
        code: out.status.code().unwrap_or(-1),
        warden_stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn rootless_mode_isolates_with_a_user_namespace() {
    require_root();
    let (dir, bin, fx) = stage();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(NOBODY), Some(NOBODY)).unwrap();

    let r = run_as_nobody(&bin, &fx, &state, &["/usr/bin/python3", "/fixtures/identity.py"]);
    assert_eq!(r.status(), "ok", "{r:#?}");
    assert_eq!(r.json["sandbox"]["user_namespace"], true, "{r:#?}");
    let me = r.out_json();
    assert_eq!(me["uid"], 60000, "{me}");
    assert_eq!(me["hostname"], "warden");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(me["status"][cap], "0000000000000000", "{cap}: {me}");
    }
    assert_eq!(me["status"]["NoNewPrivs"], "1");

    let r = run_as_nobody(&bin, &fx, &state, &["/usr/bin/python3", "/fixtures/write_usr.py"]);
    assert_eq!(r.status(), "ok", "{r:#?}");
    assert_eq!(r.out_json()["/usr/bin/warden-evil"], "Read-only file system");

    let r = run_as_nobody(
        &bin,
        &fx,
        &state,
        &["/usr/bin/python3", "/fixtures/syscall.py", "unshare"],
    );
    assert_eq!(r.status(), "violation", "{r:#?}");
    assert_eq!(r.violation(), Some("unshare"));

    // Init shares the program's uid here; it must still be unreadable.
    let r = run_as_nobody(
        &bin,
        &fx,
        &state,
        &["/usr/bin/python3", "/fixtures/read_secrets.py"],
    );
    assert_eq!(r.status(), "ok", "{r:#?}");
    let out = r.out_json();
    assert!(
        out["/proc/1/environ"].as_str().unwrap().starts_with("error:"),
        "{out}"
    );
    assert!(
        out["/proc/1/mem"].as_str().unwrap().starts_with("error:"),
        "{out}"
    );

    let r = run_as_nobody(
        &bin,
        &fx,
        &state,
        &["/usr/bin/python3", "/fixtures/escape_grandchild.py"],
    );
    assert_eq!(r.status(), "ok", "{r:#?}");
    let left: Vec<_> = host_processes_with_uid(&(NOBODY..NOBODY + 1))
        .into_iter()
        .filter(|(_, _, name)| name.contains("python") || name.contains("sleep"))
        .collect();
    assert!(left.is_empty(), "rootless box processes survived: {left:?}");
}
