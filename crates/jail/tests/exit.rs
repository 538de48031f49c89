//! A process that exits without dropping its jail (a runner kept in a
//! `static`, `std::process::exit`) leaves no workspace mount in the host's
//! mount table: every later box's mount namespace would copy it. Needs root.

use std::path::Path;
use std::process::Command;

use warden_jail::{Jail, JailConfig};

/// Set in the child process this test starts: its state dir.
const CHILD: &str = "WARDEN_TEST_EXIT_CHILD";
const NAME: &str = "a_process_exiting_without_dropping_its_jail_leaves_no_mount_behind";

/// Mount points under `dir` in this process's mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = format!("{}/", dir.display());
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_process_exiting_without_dropping_its_jail_leaves_no_mount_behind() {
    assert!(
        rustix::process::geteuid().is_root(),
        "jail tests need root; run them through scripts/test"
    );
    if let Some(dir) = std::env::var_os(CHILD) {
        let dir = Path::new(&dir).to_path_buf();
        let jail = Jail::new(JailConfig {
            state_dir: Some(dir.clone()),
            ..JailConfig::default()
        })
        .unwrap();
        // Two boxes keep their workspaces; a third is given back, which
        // unmounts its own.
        let mut kept = Vec::new();
        for _ in 0..2 {
            let mut b = jail.acquire().unwrap();
            b.prepare_workspace(1 << 20).unwrap();
            kept.push(b);
        }
        let mut given_back = jail.acquire().unwrap();
        given_back.prepare_workspace(1 << 20).unwrap();
        drop(given_back);
        println!("mounted before exit: {}", mounts_under(&dir).len());
        std::mem::forget(kept);
        std::mem::forget(jail);
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("mounted before exit: 2"),
        "the child held two workspaces at exit: {stdout}"
    );
    assert_eq!(mounts_under(dir.path()), Vec::<String>::new());
}
