//! Cgroups: memory, process and CPU limits for a whole box, plus its
//! accounting (CPU time, peak memory, OOM kills).
//!
//! One interface, two backends chosen at start by detection: cgroup v2 (one
//! unified tree, most production hosts) and cgroup v1 (one tree per
//! controller). Box cgroups live below the cgroup Warden itself runs in,
//! under `warden/box-<id>`, and are reused across runs: creating and removing
//! a cgroup per run costs milliseconds at the tail.
//!
//! Must never: write outside Warden's own subtree.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub mod v1;
pub mod v2;

/// Limits a cgroup enforces for the whole box.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CgroupLimits {
    /// Memory (and swap) in bytes.
    pub memory_bytes: Option<u64>,
    /// Processes and threads.
    pub pids: Option<u32>,
    /// CPU bandwidth in cores.
    pub cpu_cores: Option<f64>,
}

/// Accounting for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupStats {
    /// CPU time of every process that ran in the box, in nanoseconds.
    pub cpu_ns: Option<u64>,
    /// Peak memory in bytes.
    pub peak_bytes: Option<u64>,
    /// Processes the kernel killed for exceeding the memory limit.
    pub oom_kills: u64,
}

/// Errors setting up or using cgroups. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file could not be read or written.
    #[error("cgroup file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The hierarchy lacks what Warden needs.
    #[error("cgroup {version}: {reason}")]
    Unusable {
        /// `v1` or `v2`.
        version: &'static str,
        /// What is missing.
        reason: String,
    },
}

/// The controllers Warden needs in either hierarchy.
pub(crate) const NEEDED: &[&str] = &["memory", "pids", "cpu"];

/// The CPU quota period, in microseconds (both hierarchies).
pub(crate) const CPU_PERIOD_US: u64 = 100_000;

/// The quota per period for `cores` CPUs (at least 1 ms), in microseconds.
pub(crate) fn cpu_quota_us(cores: f64) -> u64 {
    (cores * CPU_PERIOD_US as f64).round().max(1000.0) as u64
}

/// Create `dir`; one that exists already is fine.
pub(crate) fn mkdir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The cgroup tree Warden creates boxes in.
#[derive(Debug)]
pub enum Cgroups {
    /// Unified hierarchy.
    V2(v2::Tree),
    /// Per-controller hierarchies.
    V1(v1::Tree),
}

/// What detection found, for `warden doctor`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CgroupReport {
    /// v2 mount point, when mounted.
    pub v2_mount: Option<PathBuf>,
    /// Controllers available to Warden's cgroup in v2.
    pub v2_controllers: Vec<String>,
    /// v1 controllers mounted (name → mount point).
    pub v1_controllers: Vec<(String, PathBuf)>,
    /// Which backend was chosen, if any: `v2`, `v1`.
    pub chosen: Option<&'static str>,
    /// Why the others were not chosen.
    pub notes: Vec<String>,
}

impl Cgroups {
    /// Detect and set up the best usable backend. `None` means no usable
    /// cgroup (the report says why): the jail then falls back to rlimits.
    pub fn detect() -> (Option<Cgroups>, CgroupReport) {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut report = CgroupReport::default();
        let mounts = parse_mountinfo(&mountinfo);
        let memberships = parse_proc_cgroup(&own);

        if let Some(m) = mounts.iter().find(|m| m.fstype == "cgroup2") {
            report.v2_mount = Some(m.mount_point.clone());
            match v2::Tree::open(m, &memberships) {
                Ok(tree) => {
                    report.v2_controllers = tree.available.clone();
                    report.chosen = Some("v2");
                    return (Some(Cgroups::V2(tree)), report);
                }
                Err(e) => {
                    if let Some(own) = v2::own_dir(m, &memberships) {
                        report.v2_controllers = v2::read_controllers(&own);
                    }
                    report.notes.push(e.to_string());
                }
            }
        }
        for m in mounts.iter().filter(|m| m.fstype == "cgroup") {
            for c in &m.controllers {
                report.v1_controllers.push((c.clone(), m.mount_point.clone()));
            }
        }
        match v1::Tree::open(&mounts, &memberships) {
            Ok(tree) => {
                report.chosen = Some("v1");
                (Some(Cgroups::V1(tree)), report)
            }
            Err(e) => {
                report.notes.push(e.to_string());
                (None, report)
            }
        }
    }

    /// `v1` or `v2`.
    pub fn version(&self) -> &'static str {
        match self {
            Cgroups::V2(_) => "v2",
            Cgroups::V1(_) => "v1",
        }
    }

    /// Create (or reuse) the cgroup named `name` (one per pool slot).
    pub fn box_cgroup(&self, name: &str) -> Result<BoxCgroup, CgroupError> {
        Ok(match self {
            Cgroups::V2(t) => BoxCgroup::V2(t.box_cgroup(name)?),
            Cgroups::V1(t) => BoxCgroup::V1(t.box_cgroup(name)?),
        })
    }
}

impl Cgroups {
    /// Remove the (empty) cgroup named `name`; missing is fine.
    pub fn remove_box_cgroup(&self, name: &str) -> Result<(), CgroupError> {
        let dirs = match self {
            Cgroups::V2(t) => vec![t.dir_of(name)],
            Cgroups::V1(t) => t.dirs_of(name),
        };
        for dir in dirs {
            // A task that just exited (a killed box, a joined launcher
            // thread) leaves its cgroup a moment after it is reaped: retry
            // `EBUSY` briefly before giving up.
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 200 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(e) => return Err(io_err(&dir)(e)),
                }
            }
        }
        Ok(())
    }
}

/// One box's cgroup (one directory in v2, one per hierarchy in v1).
#[derive(Debug)]
pub enum BoxCgroup {
    /// See [`v2::BoxCg`].
    V2(v2::BoxCg),
    /// See [`v1::BoxCg`].
    V1(v1::BoxCg),
}

/// Counter values at the start of a run, to turn cumulative counters into
/// per-run figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Baseline {
    pub(crate) oom_kills: u64,
    pub(crate) cpu_ns: u64,
}

impl BoxCgroup {
    /// Apply limits (only the values that changed since the last run are
    /// written).
    pub fn apply(&mut self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        match self {
            BoxCgroup::V2(c) => c.apply(limits),
            BoxCgroup::V1(c) => c.apply(limits),
        }
    }

    /// Reset peak counters and remember the cumulative ones.
    pub fn start_run(&mut self) -> Result<Baseline, CgroupError> {
        match self {
            BoxCgroup::V2(c) => c.start_run(),
            BoxCgroup::V1(c) => c.start_run(),
        }
    }

    /// v1: a launcher thread moves into the box cgroup, so that processes it
    /// forks are born there. Done once per slot, by the thread itself (which
    /// skips the wait for an RCU grace period that moving another task
    /// costs, about 8 ms); a fork from inside costs nothing more. The
    /// thread then counts as one task of the box (`pids.max` is raised by one
    /// to match).
    ///
    /// Returns the `tasks` files the thread writes `0` to (none on v2,
    /// where `CLONE_INTO_CGROUP` does the job); call
    /// [`BoxCgroup::launcher_attached`] once it has.
    pub fn launcher_tasks_files(&self) -> Vec<std::path::PathBuf> {
        match self {
            BoxCgroup::V2(_) => Vec::new(),
            BoxCgroup::V1(c) => c.tasks_files(),
        }
    }

    /// The launcher thread now lives in the box cgroup.
    pub fn launcher_attached(&mut self) -> Result<(), CgroupError> {
        match self {
            BoxCgroup::V2(_) => Ok(()),
            BoxCgroup::V1(c) => c.launcher_attached(),
        }
    }

    /// v2: the cgroup directory, for `clone3(CLONE_INTO_CGROUP)`.
    pub fn clone_into_fd(&self) -> Result<Option<OwnedFd>, CgroupError> {
        match self {
            BoxCgroup::V2(c) => c.dir_fd().map(Some),
            BoxCgroup::V1(_) => Ok(None),
        }
    }

    /// Figures for the run that started at `base`.
    pub fn stats(&self, base: &Baseline) -> CgroupStats {
        match self {
            BoxCgroup::V2(c) => c.stats(base),
            BoxCgroup::V1(c) => c.stats(base),
        }
    }

    /// Pids still in the box (empty after every run).
    pub fn pids(&self) -> Vec<i32> {
        match self {
            BoxCgroup::V2(c) => c.pids(),
            BoxCgroup::V1(c) => c.pids(),
        }
    }

    /// Memory the box holds now, in bytes: what its cgroup is charged less
    /// the file page cache on its LRU lists. That cache is reclaimable and,
    /// since slots (and their cgroups) are reused, may have been charged by
    /// an earlier box that read the same files; counting it would make a
    /// fresh fork-server look as if it had grown past its allowance.
    pub fn memory_usage(&self) -> Option<u64> {
        match self {
            BoxCgroup::V2(c) => c.memory_usage(),
            BoxCgroup::V1(c) => c.memory_usage(),
        }
    }

    /// Tasks (processes and threads) in the box now, as the pids controller
    /// counts them.
    pub fn task_count(&self) -> Option<u32> {
        match self {
            BoxCgroup::V2(c) => c.task_count(),
            BoxCgroup::V1(c) => c.task_count(),
        }
    }

    /// Kill everything in the box and wait until it is empty (bounded).
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        match self {
            BoxCgroup::V2(c) => c.kill_all(),
            BoxCgroup::V1(c) => c.kill_all(),
        }
    }

    /// Kill every process of the box except `keep` (a live box's init and
    /// its long-lived program), and wait until no other is left: about a
    /// second at most. Returns false when some survived that long.
    pub fn kill_all_except(&self, keep: &[i32]) -> bool {
        kill_until_empty(|| {
            let mut pids = self.pids();
            pids.retain(|p| !keep.contains(p));
            pids
        })
    }
}

pub(crate) fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Kill the listed pids until `list` reports none (at most ~1 s); false if
/// some are left then. Never signals this process (a v1 launcher thread of
/// ours lives in the box).
pub(crate) fn kill_until_empty(list: impl Fn() -> Vec<i32>) -> bool {
    for _ in 0..200 {
        let pids = list();
        if pids.is_empty() {
            return true;
        }
        for pid in pids {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    list().is_empty()
}

/// Pids in a `cgroup.procs` file, other than this process.
pub(crate) fn read_pids(path: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|p| *p != me)
        .collect()
}

pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io_err(path))
}

pub(crate) fn open_rw(path: &Path) -> Result<File, CgroupError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err(path))
}

/// Read a whole small file through an open handle, from offset 0.
pub(crate) fn pread_all(file: &File) -> String {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 4096];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// `key value` lines (memory.events, cpu.stat, memory.oom_control).
/// `usage` less the file page cache (`active_file` + `inactive_file`) of a
/// `memory.stat` text. Shared memory (tmpfs files) sits on the anonymous
/// lists in both cgroup versions, so it stays counted.
pub(crate) fn without_file_cache(usage: u64, stat: &str, prefix: &str) -> u64 {
    let file = ["active_file", "inactive_file"]
        .iter()
        .filter_map(|k| keyed(stat, &format!("{prefix}{k}")))
        .sum::<u64>();
    usage.saturating_sub(file)
}

pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

/// One line of `/proc/self/mountinfo` that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Root of the mount within its filesystem.
    pub root: PathBuf,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// `cgroup` or `cgroup2` (others are dropped).
    pub fstype: String,
    /// v1 controllers from the super options.
    pub controllers: Vec<String>,
}

const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "blkio",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// Parse the cgroup mounts out of `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mp), Some(fstype)) = (left.get(3), left.get(4), right.first()) else {
            continue;
        };
        if *fstype != "cgroup" && *fstype != "cgroup2" {
            continue;
        }
        let controllers = right
            .get(2)
            .map(|opts| {
                opts.split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        out.push(MountEntry {
            root: PathBuf::from(unescape(root)),
            mount_point: PathBuf::from(unescape(mp)),
            fstype: (*fstype).to_owned(),
            controllers,
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v as char);
            i += 4;
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// One line of `/proc/self/cgroup`: (controllers, path). v2 has no
/// controllers.
pub fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, PathBuf)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let ctrls = parts.next()?;
            let path = parts.next()?;
            let ctrls = ctrls
                .split(',')
                .filter(|c| !c.is_empty())
                .map(|c| c.trim_start_matches("name=").to_owned())
                .collect();
            Some((ctrls, PathBuf::from(path)))
        })
        .collect()
}

/// The directory of Warden's own cgroup within a mount.
pub(crate) fn own_dir_in(mount: &MountEntry, own: &Path) -> PathBuf {
    let rel = own.strip_prefix(&mount.root).unwrap_or(own);
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    mount.mount_point.join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
35 26 0:30 / /sys/fs/cgroup/memory rw,relatime shared:13 - cgroup cgroup rw,memory
36 26 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
37 26 0:32 / /sys/fs/cgroup/pids rw,relatime shared:15 - cgroup cgroup rw,pids
38 26 0:33 / /sys/fs/cgroup/unified rw,relatime shared:16 - cgroup2 cgroup2 rw,nsdelegate
40 26 0:34 /docker/abc /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
41 26 0:35 / /mnt/with\\040space rw - ext4 /dev/vda rw
";

    #[test]
    fn mountinfo_finds_cgroup_mounts_and_controllers() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 5);
        assert_eq!(m[1].controllers, ["cpu", "cpuacct"]);
        assert_eq!(m[1].mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m[3].fstype, "cgroup2");
        assert!(
            m[4].controllers.is_empty(),
            "named hierarchies have no controllers"
        );
        assert_eq!(m[4].root, Path::new("/docker/abc"));
    }

    #[test]
    fn own_cgroup_is_resolved_relative_to_the_mount_root() {
        let m = &parse_mountinfo(MOUNTINFO)[4];
        assert_eq!(
            own_dir_in(m, Path::new("/docker/abc/sub")),
            Path::new("/sys/fs/cgroup/systemd/sub")
        );
        let own = parse_proc_cgroup("4:memory:/process_api/x\n0::/user.slice\n1:name=systemd:/");
        assert_eq!(
            own[0],
            (vec!["memory".to_owned()], PathBuf::from("/process_api/x"))
        );
        assert_eq!(own[1], (vec![], PathBuf::from("/user.slice")));
        assert_eq!(own[2].0, ["systemd"]);
    }

    #[test]
    fn keyed_files() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(text, "oom_kill"), Some(3));
        assert_eq!(keyed(text, "missing"), None);
        let stat = "cache 9\nactive_file 5\ninactive_file 3\ntotal_active_file 50\ntotal_inactive_file 30\n";
        assert_eq!(without_file_cache(100, stat, ""), 92);
        assert_eq!(without_file_cache(100, stat, "total_"), 20);
        assert_eq!(without_file_cache(10, stat, "total_"), 0, "never below zero");
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
