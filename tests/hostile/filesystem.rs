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
