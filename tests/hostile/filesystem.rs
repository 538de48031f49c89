//! The filesystem: host secrets, read-only system paths, link escapes,
//! devices, setuid binaries, neighbouring boxes, and reuse of a slot.

use std::path::Path;

use crate::harness::*;

#[test]
fn host_secrets_are_out_of_reach() {
    require_root();
    // A secret in Warden's own environment and a file in a state directory
    // the box must not see.
    let r = warden()
        .env("WARDEN_TEST_SECRET", "hunter2-in-the-host-env")
        .python("read_secrets.py", &[]);
    assert_eq!(r.status(), "ok", "{r:#?}");
    let out = r.out_json();
    for path in [
        "/etc/shadow",
        "/root",
        "/root/.bashrc",
        "/proc/1/root/etc/shadow",
        "/sys/kernel",
        "/run/warden",
        "/home",
        "/var/lib",
        "/boot",
    ] {
        let v = out[path].as_str().unwrap();
        assert!(v.starts_with("error:"), "{path} was reachable: {v}");
    }
    // The box's pid 1 is its init, not the host's; it is non-dumpable and
    // owned by root, so its environment (a copy of Warden's) is unreadable.
    for path in ["/proc/1/environ", "/proc/1/mem"] {
        let v = out[path].as_str().unwrap();
        assert!(v.starts_with("error: Permission denied"), "{path}: {v}");
    }
    let all = serde_json::to_string(&out).unwrap();
    assert!(
        !all.contains("hunter2"),
        "the host environment leaked into the box: {all}"
    );
    // The program's own environment is exactly the minimal one.
    let env = out["/proc/self/environ"].as_str().unwrap();
    assert!(env.contains("PATH=/usr/local/bin:/usr/bin:/bin"), "{env}");
    assert!(!env.contains("WARDEN"), "{env}");
}

#[test]
fn system_paths_are_read_only() {
    require_root();
    let r = warden().python("write_usr.py", &[]);
    assert_eq!(r.status(), "ok", "{r:#?}");
    let out = r.out_json();
    for (path, v) in out.as_object().unwrap() {
        assert_ne!(v, "written", "{path} was writable");
        assert_ne!(v, "changed", "{path} was changed");
    }
    assert_eq!(out["/usr/bin/warden-evil"], "Read-only file system");
    assert_eq!(out["/warden-evil"], "Read-only file system");
    assert!(!Path::new("/usr/bin/warden-evil").exists());
    assert!(!Path::new("/usr/lib/warden-evil").exists());
}

#[test]
fn links_planted_in_the_workspace_are_never_followed_by_the_host() {
    require_root();
    let out_dir = tempfile::tempdir().unwrap();
    let r = warden()
        .opts(&["--workspace", "8M", "--copy-out"])
        .opt(out_dir.path().to_str().unwrap())
        .python("link_escape.py", &[]);
    assert_eq!(r.status(), "ok", "{r:#?}");
    let made = r.out_json();
    // Hard links to anything outside the workspace cross a mount: refused.
    for name in ["hard-python", "hard-passwd", "hard-null"] {
        assert_eq!(made[name], "Invalid cross-device link", "{name}: {made}");
    }
    // The regular artifact came out; the links and the FIFO did not.
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join("out/real.txt")).unwrap(),
        "real artifact\n"
    );
    for name in ["shadow-link", "out/up", "out/root", "out/proc-root", "out/fifo"] {
        assert!(
            std::fs::symlink_metadata(out_dir.path().join(name)).is_err(),
            "{name} was copied out"
        );
    }
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    for entry in walk(out_dir.path()) {
        let content = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            shadow.is_empty() || content != shadow,
            "host shadow copied out via {entry:?}"
        );
    }
}

#[test]
fn names_chosen_by_the_box_reach_the_operator_escaped() {
    require_root();
    let out_dir = tempfile::tempdir().unwrap();
    // A file whose name forges a warning line and clears the screen, and a
    // FIFO whose name hides behind a right-to-left override.
    let script = r#"n=$(printf 'a\nwarning: forged\033[2J'); echo x > "$n"; mkfifo "$(printf 'p\342\200\256txt.exe')""#;
    let out = std::process::Command::new(warden_bin())
        .args(["run", "--workspace", "1M", "--copy-out"])
        .arg(out_dir.path())
        .args(["--", "/bin/sh", "-c", script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\x1b'),
        "an escape sequence reached the terminal: {stderr:?}"
    );
    assert!(
        !stderr.contains('\u{202e}'),
        "a bidi override reached the terminal: {stderr:?}"
    );
    assert!(
        !stderr.lines().any(|l| l.starts_with("warning: forged")),
        "a forged line: {stderr:?}"
    );
    assert!(
        stderr.contains("p\\u{202e}txt.exe"),
        "the FIFO is named, escaped: {stderr:?}"
    );

    // A copy-out that fails still prints the run's result, and says why.
    let not_a_dir = out_dir.path().join("file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let r = warden()
        .opts(&["--workspace", "1M", "--copy-out", not_a_dir.to_str().unwrap()])
        .run(&["/bin/sh", "-c", "echo hi > made.txt; echo done"]);
    assert_eq!(r.code, 125, "{r:#?}");
    assert_eq!(r.status(), "ok", "{r:#?}");
    assert_eq!(r.stdout(), "done\n");
    assert!(
        r.json["copy_out"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(not_a_dir.to_str().unwrap())),
        "{r:#?}"
    );
    assert!(r.warden_stderr.contains("copying the workspace"), "{r:#?}");
}

#[test]
fn pools_of_different_state_dirs_never_share_uids() {
    require_root();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (a.path().to_str().unwrap(), b.path().to_str().unwrap());
    let _clean = (CleanPool(a_dir.to_owned()), CleanPool(b_dir.to_owned()));
    // A box of pool A holds its uid range while it runs.
    let holder = std::process::Command::new(warden_bin())
        .args([
            "run",
            "--json",
            "--state-dir",
            a_dir,
            "--",
            "/bin/sh",
            "-c",
            "id -u; sleep 3",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let claims = std::fs::read_dir("/run/warden-uid-claims").unwrap();
    let canonical = a.path().canonicalize().unwrap();
    let held = claims
        .flatten()
        .find(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.trim() == canonical.to_str().unwrap()))
        .expect("pool A claimed its uids");
    let start = held
        .file_name()
        .to_string_lossy()
        .split('-')
        .next()
        .unwrap()
        .to_owned();
    // Pool B asking for the same uids explicitly is refused, naming A.
    let out = std::process::Command::new(warden_bin())
        .args([
            "run",
            "--json",
            "--state-dir",
            b_dir,
            "--uid-base",
            &start,
            "--",
            "/bin/true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(canonical.to_str().unwrap()), "{err}");
    // Left to choose, pool B takes other uids.
    let r = warden().opts(&["--state-dir", b_dir]).run(&["/usr/bin/id", "-u"]);
    let uid: u32 = r.stdout().trim().parse().unwrap();
    let a_start: u32 = start.parse().unwrap();
    assert!(
        !(a_start..a_start + 64).contains(&uid),
        "pool B ran as {uid}, inside A's range"
    );
    let out = holder.wait_with_output().unwrap();
    assert!(out.status.success());
}

/// Tear a private pool down when the test ends, pass or fail.
struct CleanPool(String);

impl Drop for CleanPool {
    fn drop(&mut self) {
        let out = std::process::Command::new(warden_bin())
            .args(["pool", "clean", "--state-dir", &self.0])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pool clean failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!Path::new(&self.0).exists(), "pool clean left {}", self.0);
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn devices_are_limited_to_the_harmless_five() {
    require_root();
    let r = warden().python("devices.py", &[]);
    assert_eq!(r.status(), "ok", "{r:#?}");
    let out = r.out_json();
    for dev in [
        "/dev/mem",
        "/dev/kmem",
        "/dev/port",
        "/dev/kmsg",
        "/dev/sda",
        "/dev/vda",
        "/dev/tty",
        "/dev/console",
    ] {
        assert_eq!(out[dev], "No such file or directory", "{dev}: {out}");
    }
    assert_eq!(out["mknod"], "Operation not permitted");
    let listed: Vec<&str> = out["dev"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            "fd", "full", "null", "random", "stderr", "stdin", "stdout", "urandom", "zero"
        ]
    );
}

#[test]
fn setuid_binaries_give_no_privilege() {
    require_root();
    let r = warden().with_c_fixtures().run(&["/cbin/euid"]);
    assert_eq!(r.status(), "ok", "{r:#?}");
    let out = r.out_json();
    assert_eq!(
        out["euid"], out["uid"],
        "a setuid-root binary raised privileges: {out}"
    );
    assert_ne!(out["euid"], 0);
    // And the system's own setuid programs cannot help either.
    if Path::new("/usr/bin/su").exists() {
        let r = warden().run(&["/usr/bin/su", "-c", "id -u"]);
        assert_ne!(r.status(), "ok", "su worked inside the box: {r:#?}");
        assert!(!r.stdout().starts_with('0'), "{r:#?}");
    }
}

#[test]
fn concurrent_boxes_cannot_see_each_other() {
    require_root();
    let writer = std::thread::spawn(|| {
        warden()
            .opts(&["--workspace", "8M"])
            .python("neighbour.py", &["write", "3"])
    });
    // Give the writer time to start and plant its files.
    std::thread::sleep(std::time::Duration::from_millis(800));
    // The reader walks the whole box filesystem (all of /usr): give it time
    // on a loaded machine; isolation, not speed, is under test.
    let reader = warden()
        .opts(&["--workspace", "8M", "--timeout", "60"])
        .python("neighbour.py", &["read"]);
    let writer = writer.join().unwrap();
    assert_eq!(writer.status(), "ok", "{writer:#?}");
    assert_eq!(reader.status(), "ok", "{reader:#?}");
    assert_ne!(
        writer.json["box_id"], reader.json["box_id"],
        "both runs used one box"
    );
    assert_ne!(writer.uid(), reader.uid(), "neighbours share a uid");
    let out = reader.out_json();
    assert_eq!(
        out["found"],
        serde_json::json!([]),
        "the reader found the writer's files"
    );
    // The reader's pid namespace holds only its init and itself.
    assert_eq!(out["pids"], serde_json::json!([1, 2]), "{out}");
}

#[test]
fn nothing_written_by_one_run_is_visible_to_the_next_in_the_same_box() {
    require_root();
    // A private pool of one slot, so both runs must use the same box.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state").to_str().unwrap().to_owned();
    let _clean = CleanPool(state.clone());
    let pool = ["--state-dir", &state, "--max-boxes", "1", "--workspace", "8M"];
    let first = warden()
        .opts(&pool)
        .run(&["/bin/sh", "/fixtures/pool_probe.sh", "write"]);
    assert_eq!(first.stdout(), "written\n", "{first:#?}");
    let second = warden()
        .opts(&pool)
        .run(&["/bin/sh", "/fixtures/pool_probe.sh", "read"]);
    assert_eq!(first.json["box_id"], second.json["box_id"]);
    assert_eq!(
        second.stdout(),
        "found:\n",
        "a later run saw an earlier run's files: {second:#?}"
    );
}
