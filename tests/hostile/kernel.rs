//! Reaching for the kernel: namespaces, mounts, tracing, keys, BPF, modules,
//! clocks, identity, and signals to processes outside the box.

use crate::harness::*;

/// Syscalls whose mere attempt kills the box, reported by name.
const KILLED: &[&str] = &[
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "ptrace",
    "process_vm_readv",
    "keyctl",
    "add_key",
    "bpf",
    "perf_event_open",
    "io_uring_setup",
    "userfaultfd",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "reboot",
    "swapon",
    "acct",
    "syslog",
    "sethostname",
    "setdomainname",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "open_by_handle_at",
    "iopl",
    "ioperm",
    "personality",
];

#[test]
fn dangerous_syscalls_are_violations_named_by_the_report() {
    require_root();
    // Run them two at a time; each is its own box.
    let results: Vec<(String, Run)> = std::thread::scope(|s| {
        let handles: Vec<_> = KILLED
            .iter()
            .map(|name| s.spawn(move || (name.to_string(), warden().python("syscall.py", &[name]))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (name, r) in results {
        assert_eq!(r.status(), "violation", "{name}: {r:#?}");
        assert_eq!(r.violation(), Some(name.as_str()), "{name}: {r:#?}");
        assert_eq!(r.code, 159, "{name}");
        assert_eq!(
            r.stdout(),
            "",
            "{name}: the call returned before the kill: {r:#?}"
        );
    }
}

#[test]
fn strict_profile_kills_unlisted_syscalls_and_new_processes() {
    require_root();
    let r = warden()
        .opts(&["--profile", "strict"])
        .run(&["/usr/bin/python3", "-c", "import os; os.fork()"]);
    assert_eq!(r.status(), "violation", "{r:#?}");
    assert_eq!(r.violation(), Some("clone"));
    // A later exec is refused too, even of a program the box holds.
    let r = warden().opts(&["--profile", "strict"]).run(&[
        "/usr/bin/python3",
        "-c",
        "import os; os.execv('/bin/true', ['true'])",
    ]);
    assert_eq!(r.status(), "violation", "{r:#?}");
    assert_eq!(r.violation(), Some("execve"));
    // Threads are fine.
    let r = warden().opts(&["--profile", "strict"]).run(&[
        "/usr/bin/python3",
        "-c",
        "import threading; t = threading.Thread(target=print, args=('thread ok',)); t.start(); t.join()",
    ]);
    assert_eq!(r.status(), "ok", "{r:#?}");
    assert_eq!(r.stdout(), "thread ok\n");
}

#[test]
fn raw_syscalls_without_libc_are_filtered_too() {
    require_root();
    // ptrace (101) through inline assembly: no library to intercept it.
    let r = warden().with_c_fixtures().run(&["/cbin/raw_syscall", "101"]);
    assert_eq!(r.status(), "violation", "{r:#?}");
    assert_eq!(r.violation(), Some("ptrace"));
    // The same number with the x32-ABI bit set matches no rule: refused.
    let r = warden()
        .with_c_fixtures()
        .run(&["/cbin/raw_syscall", "0x40000065"]);
    assert_eq!(r.status(), "ok", "{r:#?}");
    assert_eq!(
        r.out_json()["ret"],
        -1,
        "an x32 syscall was not refused with EPERM: {r:#?}"
    );
    // An allowed one works: getpid (39) is 2 inside the box.
    let r = warden().with_c_fixtures().run(&["/cbin/raw_syscall", "39"]);
    assert_eq!(r.status(), "ok", "{r:#?}");
    assert_eq!(r.out_json()["ret"], 2);
}

#[test]
fn the_32_bit_syscall_abi_is_a_violation_named_with_its_abi() {
    require_root();
    // `int 0x80` from a 64-bit program: the i386 ABI, another numbering.
    for (nr, name) in [("20", "getpid"), ("11", "execve")] {
        let r = warden().with_c_fixtures().run(&["/cbin/int80", nr]);
        assert_eq!(r.status(), "violation", "{r:#?}");
        assert_eq!(r.violation(), Some(name), "{r:#?}");
        assert_eq!(r.json["violation"]["abi"], "i386", "{r:#?}");
        assert!(r.stdout().is_empty(), "the syscall returned: {r:#?}");
    }
}

#[test]
fn ids_cannot_be_changed() {
    require_root();
    for call in ["setuid", "setgid"] {
        let r = warden().python("syscall.py", &[call, "0"]);
        assert_eq!(r.status(), "ok", "{r:#?}");
        let out = r.out_json();
        assert_eq!(out["ret"], -1, "{call} succeeded: {out}");
        assert_eq!(out["errno"], 1, "{call}: expected EPERM: {out}");
    }
}

#[test]
fn signals_cannot_reach_host_processes() {
    require_root();
    // Host processes running as the very uid the box will get: if the pid
    // namespace failed, kill(-1) from the box would reach them.
    let (w, uids) = warden().private_uids();
    let mut sleepers: Vec<std::process::Child> = (0..4)
        .map(|i| {
            use std::os::unix::process::CommandExt;
            std::process::Command::new("/bin/sleep")
                .arg("60")
                .uid(uids.start + i)
                .spawn()
                .unwrap()
        })
        .collect();
    let r = w.python("kill_everything.py", &[]);
    for s in &mut sleepers {
        assert!(
            s.try_wait().unwrap().is_none(),
            "a host process was killed from inside the box"
        );
        let _ = s.kill();
        let _ = s.wait();
    }
    assert_eq!(r.status(), "ok", "{r:#?}");
    let out = r.out_json();
    // Inside the box only its own init (pid 1, which ignores signals from
    // its namespace) and the program exist.
    let hits: Vec<i64> = out["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert!(
        hits.iter().all(|p| *p < 16),
        "signalled pids outside the box's range: {hits:?}"
    );
}

#[test]
fn the_box_cannot_change_hostname_or_time_of_the_host() {
    require_root();
    let before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for call in ["sethostname", "settimeofday", "clock_settime"] {
        let r = warden().python("syscall.py", &[call]);
        assert_eq!(r.status(), "violation", "{call}: {r:#?}");
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        before
    );
}
