//! Resource exhaustion: processes, memory, CPU, time, disk, output.

use crate::harness::*;

#[test]
fn fork_bomb_is_stopped_by_the_pids_limit() {
    require_root();
    let (w, uids) = warden().opts(&["--pids", "32", "-t", "20"]).private_uids();
    let r = w.python("fork_bomb.py", &[]);
    assert_eq!(r.status(), "ok", "{r:#?}");
    let line = r.stdout();
    assert!(
        line.starts_with("stopped after"),
        "the bomb was never stopped: {line}"
    );
    let made: u32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(made < 32, "more processes than the pids limit: {made}");
    // The sleeping children died with the box.
    assert_no_box_processes(&uids);
}

#[test]
fn shell_fork_bomb_is_contained_and_killed_at_the_deadline() {
    require_root();
    let (w, uids) = warden().opts(&["--pids", "64", "-t", "2"]).private_uids();
    let r = w.run(&["/bin/sh", "/fixtures/shell_fork_bomb.sh"]);
    // Either the bomb runs into the deadline, or the pids cap stops the
    // shell's own last fork first and it gives up: contained both ways.
    assert!(matches!(r.status(), "timeout" | "nonzero_exit"), "{r:#?}");
    assert!(r.wall_ms() < 10_000.0, "the deadline was not enforced: {r:#?}");
    assert_no_box_processes(&uids);
}

#[test]
fn memory_bomb_is_killed_by_the_memory_limit() {
    require_root();
    let (w, uids) = warden().opts(&["--memory", "64M"]).private_uids();
    let r = w.python("memory_bomb.py", &[]);
    assert_eq!(r.status(), "memory_limit", "{r:#?}");
    assert_eq!(r.code, 137);
    assert!(!r.stdout().contains("allocated"), "{r:#?}");
    let peak = r.json["peak_memory_bytes"].as_u64().unwrap();
    assert!(peak <= 64 << 20, "peak {peak} above the limit");
    assert_no_box_processes(&uids);
}

#[test]
fn cpu_spin_is_stopped_by_the_cpu_limit() {
    require_root();
    let r = warden()
        .opts(&["--cpu-time", "1", "-t", "10"])
        .python("cpu_spin.py", &[]);
    assert_eq!(r.status(), "cpu_limit", "{r:#?}");
    assert_eq!(r.code, 152);
    let cpu = r.json["cpu_ms"].as_f64().unwrap();
    assert!(cpu >= 900.0, "stopped before using its CPU budget: {cpu} ms");
}

#[test]
fn sleeping_past_the_wall_clock_is_killed() {
    require_root();
    let (w, uids) = warden().opts(&["-t", "0.5"]).private_uids();
    let r = w.run(&["/bin/sleep", "30"]);
    assert_eq!(r.status(), "timeout", "{r:#?}");
    assert_eq!(r.code, 124);
    assert!(r.wall_ms() < 5_000.0, "{r:#?}");
    assert_no_box_processes(&uids);
}

#[test]
fn double_forked_setsid_grandchild_does_not_survive() {
    require_root();
    let (w, uids) = warden().private_uids();
    let r = w.python("escape_grandchild.py", &[]);
    assert_eq!(r.status(), "ok", "{r:#?}");
    assert_eq!(r.stdout(), "parent done\n");
    // The grandchild slept for a minute in its own session; the run ended as
    // soon as the parent did, and the grandchild with it.
    assert!(r.wall_ms() < 10_000.0, "{r:#?}");
    assert_no_box_processes(&uids);
}

#[test]
fn filling_tmp_stops_at_its_size() {
    require_root();
    let r = warden().opts(&["--tmp-size", "8M"]).python("fill.py", &["/tmp"]);
    assert_eq!(r.status(), "nonzero_exit", "{r:#?}");
    assert!(r.stdout().contains("No space left on device"), "{r:#?}");
    let mib: u32 = r.stdout().split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(mib <= 8, "wrote {mib} MiB into an 8 MiB /tmp");
    assert!(
        !std::path::Path::new("/tmp/fill").exists(),
        "the box wrote to the host's /tmp"
    );
}

#[test]
fn filling_the_workspace_stops_at_its_size() {
    require_root();
    let r = warden()
        .opts(&["--workspace", "8M", "--file-size", "1G"])
        .python("fill.py", &["/workspace"]);
    assert_eq!(r.status(), "nonzero_exit", "{r:#?}");
    assert!(r.stdout().contains("No space left on device"), "{r:#?}");
}

#[test]
fn one_file_cannot_pass_the_file_size_limit() {
    require_root();
    let r = warden()
        .opts(&["--workspace", "64M", "--file-size", "2M"])
        .python("fill.py", &["/workspace"]);
    assert_eq!(r.status(), "nonzero_exit", "{r:#?}");
    assert!(r.stdout().contains("File too large"), "{r:#?}");
}

#[test]
fn endless_stdout_is_capped_and_killed() {
    require_root();
    let r = warden()
        .opts(&["--output-limit", "64k"])
        .run(&["/bin/sh", "/fixtures/endless_output.sh"]);
    assert_eq!(r.status(), "output_limit", "{r:#?}");
    assert_eq!(r.code, 153);
    assert_eq!(r.stdout().len(), 64 * 1024);
    assert_eq!(r.json["stdout_truncated"], true);
}

#[test]
fn endless_stdout_with_truncate_keeps_the_cap_and_runs_to_the_deadline() {
    require_root();
    let r = warden()
        .opts(&[
            "--output-limit",
            "64k",
            "--on-output-limit",
            "truncate",
            "-t",
            "1",
        ])
        .run(&["/bin/sh", "/fixtures/endless_output.sh"]);
    assert_eq!(r.status(), "timeout", "{r:#?}");
    assert_eq!(r.stdout().len(), 64 * 1024, "the host kept more than the cap");
    assert_eq!(r.json["stdout_truncated"], true);
}
