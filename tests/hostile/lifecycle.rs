//! Who the program is inside the box, and what happens when Warden itself
//! dies mid-run.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn the_program_runs_unprivileged_in_a_minimal_world() {
    require_root();
    let r = warden()
        .env("WARDEN_TEST_SECRET", "from-the-host")
        .python("identity.py", &[]);
    assert_eq!(r.status(), "ok", "{r:#?}");
    let me = r.out_json();
    let uid = r.uid();
    assert!(uid >= 1000, "box uid {uid}");
    assert_eq!(me["uid"], uid);
    assert_eq!(me["euid"], uid);
    assert_eq!(me["gid"], uid);
    assert_eq!(
        me["groups"],
        serde_json::json!([]),
        "supplementary groups leaked: {me}"
    );
    assert_eq!(me["pid"], 2, "the program is not the box's pid 2");
    assert_eq!(me["ppid"], 1);
    assert_eq!(me["sid"], true, "not in a session of its own");
    assert_eq!(me["hostname"], "warden");
    let st = &me["status"];
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(st[cap], "0000000000000000", "{cap}: {st}");
    }
    assert_eq!(st["NoNewPrivs"], "1");
    assert_eq!(st["Seccomp"], "2", "no seccomp filter: {st}");
    let env = me["env"].as_object().unwrap();
    let mut keys: Vec<&str> = env.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["HOME", "LANG", "PATH", "TMPDIR"],
        "environment not cleared: {env:?}"
    );
    let root: Vec<&str> = me["root"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // The system binds, the skeleton, and the fixtures the harness binds.
    assert_eq!(
        root,
        [
            "bin", "dev", "etc", "fixtures", "lib", "lib64", "proc", "sbin", "tmp", "usr"
        ]
    );
    // Every mount the program sees is nosuid, and the system ones read-only.
    for line in me["mounts"].as_array().unwrap() {
        let line = line.as_str().unwrap();
        let f: Vec<&str> = line.split(' ').collect();
        assert!(f[3].contains("nosuid"), "mount without nosuid: {line}");
        if f[1] == "/" || f[1].starts_with("/usr") {
            assert!(
                f[3].split(',').any(|o| o == "ro"),
                "writable system mount: {line}"
            );
        }
    }
}

#[test]
fn the_box_dies_with_warden() {
    require_root();
    let base = 64900u32; // a private uid range for this test
    let mut child = Command::new(warden_bin())
        .args(["run", "--uid-base", &base.to_string(), "-t", "60", "--"])
        .args(["/bin/sh", "-c", "echo ready; sleep 60 & sleep 60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let uids = base..base + 64;
    assert!(
        !host_processes_with_uid(&uids).is_empty(),
        "the box is not running"
    );
    // SIGKILL: Warden gets no chance to clean up. The box's init notices its
    // lifeline close and takes the box down.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !host_processes_with_uid(&uids).is_empty() {
        assert!(
            Instant::now() < deadline,
            "box processes outlived Warden: {:?}",
            host_processes_with_uid(&uids)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn clear_errors_for_bad_requests() {
    require_root();
    let out = Command::new(warden_bin())
        .args(["run", "--", "no-such-program"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("program `no-such-program` not found"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    let out = Command::new(warden_bin())
        .args(["run", "--memory", "lots", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`lots` is not a size"));

    let out = Command::new(warden_bin())
        .args(["run", "--profile", "nope", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown seccomp profile `nope`"));

    let out = Command::new(warden_bin())
        .args(["run", "--uid-base", "0", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("away from root"));

    // A program that exists but cannot be executed.
    let r = warden().run(&["/fixtures/fork_bomb.py"]);
    assert_eq!(r.status(), "internal_error", "{r:#?}");
    assert_eq!(r.code, 126);
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("cannot execute the program: Permission denied"),
        "{r:#?}"
    );
}

#[test]
fn doctor_reports_every_layer() {
    require_root();
    let out = Command::new(warden_bin())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["ready"], true);
    assert_eq!(d["self_test"]["ok"], true, "{d}");
    let names: Vec<&str> = d["facilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for want in [
        "user namespaces",
        "seccomp-bpf",
        "landlock",
        "cgroups",
        "network namespace",
        "pid namespace",
    ] {
        assert!(names.contains(&want), "doctor does not report {want}: {names:?}");
    }
}
