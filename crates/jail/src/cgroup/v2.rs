//! cgroup v2: one unified tree. Warden needs the `memory`, `pids` and `cpu`
//! controllers delegated to its own cgroup. Because v2 forbids processes in
//! a cgroup whose controllers are enabled for children ("no internal
//! processes"), Warden first moves itself into a leaf, `warden-supervisor`,
//! when its cgroup holds processes; boxes then live in `warden/box-<id>`.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{
    Baseline, CPU_PERIOD_US, CgroupError, CgroupLimits, CgroupStats, MountEntry, NEEDED, cpu_quota_us,
    io_err, keyed, kill_until_empty, mkdir, open_rw, own_dir_in, pread_all, read_pids, write,
};

/// Warden's subtree in the unified hierarchy.
#[derive(Debug, Clone)]
pub struct Tree {
    /// `<own cgroup>/warden`.
    base: PathBuf,
    /// Controllers available to Warden's cgroup.
    pub available: Vec<String>,
}

/// Warden's own cgroup directory in a cgroup2 mount.
pub fn own_dir(mount: &MountEntry, own: &[(Vec<String>, PathBuf)]) -> Option<PathBuf> {
    let path = own.iter().find(|(c, _)| c.is_empty()).map(|(_, p)| p.clone())?;
    Some(own_dir_in(mount, &path))
}

/// Controllers listed in `cgroup.controllers` of `dir`.
pub fn read_controllers(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

impl Tree {
    /// Check the controllers, arrange delegation, and create `warden/`.
    pub fn open(mount: &MountEntry, own: &[(Vec<String>, PathBuf)]) -> Result<Tree, CgroupError> {
        let unusable = |reason: String| CgroupError::Unusable {
            version: "v2",
            reason,
        };
        let dir =
            own_dir(mount, own).ok_or_else(|| unusable("this process has no cgroup2 membership".into()))?;
        Self::open_at(&dir, std::process::id()).map_err(|e| match e {
            CgroupError::Unusable { .. } => e,
            other => unusable(other.to_string()),
        })
    }

    /// [`Tree::open`] for an explicit directory (tests use a fake tree).
    pub fn open_at(dir: &Path, self_pid: u32) -> Result<Tree, CgroupError> {
        let available = read_controllers(dir);
        let missing: Vec<&str> = NEEDED
            .iter()
            .copied()
            .filter(|c| !available.iter().any(|a| a == c))
            .collect();
        if !missing.is_empty() {
            return Err(CgroupError::Unusable {
                version: "v2",
                reason: format!(
                    "controllers not available to {}: {} (available: {})",
                    dir.display(),
                    missing.join(", "),
                    if available.is_empty() {
                        "none".to_owned()
                    } else {
                        available.join(" ")
                    }
                ),
            });
        }
        let enable = "+memory +pids +cpu";
        let subtree = dir.join("cgroup.subtree_control");
        if !has_all(&subtree) && write(&subtree, enable).is_err() {
            // Processes (we) live here: move into a leaf and retry.
            let leaf = dir.join("warden-supervisor");
            mkdir(&leaf)?;
            write(&leaf.join("cgroup.procs"), &self_pid.to_string())?;
            write(&subtree, enable)?;
        }
        let base = dir.join("warden");
        mkdir(&base)?;
        let base_subtree = base.join("cgroup.subtree_control");
        if !has_all(&base_subtree) {
            write(&base_subtree, enable)?;
        }
        Ok(Tree { base, available })
    }

    /// The directory of box cgroup `name`.
    pub(crate) fn dir_of(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }

    /// Create (or reuse) `warden/<name>`.
    pub fn box_cgroup(&self, name: &str) -> Result<BoxCg, CgroupError> {
        let dir = self.base.join(name);
        mkdir(&dir)?;
        // Kill the whole box at once on OOM, as v1 cannot.
        let _ = write(&dir.join("memory.oom.group"), "1");
        let peak = open_rw(&dir.join("memory.peak")).ok();
        Ok(BoxCg {
            events: File::open(dir.join("memory.events")).map_err(io_err(&dir))?,
            cpu_stat: File::open(dir.join("cpu.stat")).map_err(io_err(&dir))?,
            peak,
            peak_resettable: true,
            dir,
            applied: None,
        })
    }
}

fn has_all(subtree_control: &Path) -> bool {
    let text = std::fs::read_to_string(subtree_control).unwrap_or_default();
    NEEDED.iter().all(|c| text.split_whitespace().any(|t| t == *c))
}

/// One box's v2 cgroup.
#[derive(Debug)]
pub struct BoxCg {
    dir: PathBuf,
    events: File,
    cpu_stat: File,
    /// Kept open: since Linux 6.12 a write resets the peak for reads through
    /// the same descriptor.
    peak: Option<File>,
    peak_resettable: bool,
    applied: Option<CgroupLimits>,
}

impl BoxCg {
    pub(crate) fn apply(&mut self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let prev = self.applied;
        if prev.map(|p| p.memory_bytes) != Some(limits.memory_bytes) {
            let value = limits.memory_bytes.map_or("max".to_owned(), |b| b.to_string());
            // Swap off first, so the memory limit is the whole budget.
            let _ = write(&self.dir.join("memory.swap.max"), "0");
            write(&self.dir.join("memory.max"), &value)?;
        }
        if prev.map(|p| p.pids) != Some(limits.pids) {
            let value = limits.pids.map_or("max".to_owned(), |p| p.to_string());
            write(&self.dir.join("pids.max"), &value)?;
        }
        if prev.map(|p| p.cpu_cores) != Some(limits.cpu_cores) {
            let quota = limits
                .cpu_cores
                .map_or("max".to_owned(), |c| cpu_quota_us(c).to_string());
            write(&self.dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
        }
        self.applied = Some(*limits);
        Ok(())
    }

    pub(crate) fn start_run(&mut self) -> Result<Baseline, CgroupError> {
        if let Some(peak) = &self.peak
            && self.peak_resettable
            && peak.write_at(b"reset", 0).is_err()
        {
            // Kernels before 6.12 cannot reset; the peak then spans the
            // box's life, so report none rather than a wrong figure.
            self.peak_resettable = false;
        }
        Ok(Baseline {
            oom_kills: keyed(&pread_all(&self.events), "oom_kill").unwrap_or(0),
            cpu_ns: keyed(&pread_all(&self.cpu_stat), "usage_usec").unwrap_or(0) * 1000,
        })
    }

    pub(crate) fn dir_fd(&self) -> Result<OwnedFd, CgroupError> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.dir)
            .map_err(io_err(&self.dir))?;
        Ok(f.into())
    }

    pub(crate) fn stats(&self, base: &Baseline) -> CgroupStats {
        let peak = if self.peak_resettable {
            self.peak.as_ref().and_then(|f| pread_all(f).trim().parse().ok())
        } else {
            None
        };
        let cpu_us = keyed(&pread_all(&self.cpu_stat), "usage_usec");
        CgroupStats {
            cpu_ns: cpu_us.map(|u| (u * 1000).saturating_sub(base.cpu_ns)),
            peak_bytes: peak,
            oom_kills: keyed(&pread_all(&self.events), "oom_kill")
                .unwrap_or(0)
                .saturating_sub(base.oom_kills),
        }
    }

    pub(crate) fn memory_usage(&self) -> Option<u64> {
        let usage = super::read_number(&self.dir.join("memory.current"))?;
        let stat = std::fs::read_to_string(self.dir.join("memory.stat")).unwrap_or_default();
        Some(super::without_file_cache(usage, &stat, ""))
    }

    pub(crate) fn task_count(&self) -> Option<u32> {
        super::read_number(&self.dir.join("pids.current")).and_then(|n| u32::try_from(n).ok())
    }

    pub(crate) fn pids(&self) -> Vec<i32> {
        read_pids(&self.dir.join("cgroup.procs"))
    }

    pub(crate) fn kill_all(&self) -> Result<(), CgroupError> {
        // cgroup.kill (5.14+) kills everything at once; fall back to a loop.
        let _ = write(&self.dir.join("cgroup.kill"), "1");
        kill_until_empty(|| self.pids());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! This machine has no usable cgroup v2 (its controllers are bound to v1),
    //! so the v2 logic is checked against a directory laid out like cgroupfs.
    //! It proves which files are written with which values, not that a kernel
    //! enforces them; the v1 backend is exercised for real by the jail tests.
    use super::*;

    fn fake_cgroup(dir: &Path, controllers: &str) {
        std::fs::write(dir.join("cgroup.controllers"), controllers).unwrap();
        std::fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
    }

    #[test]
    fn refuses_without_the_needed_controllers() {
        let d = tempfile::tempdir().unwrap();
        fake_cgroup(d.path(), "hugetlb");
        let err = Tree::open_at(d.path(), 1).unwrap_err().to_string();
        assert!(err.contains("memory, pids, cpu"), "{err}");
        assert!(err.contains("available: hugetlb"), "{err}");
    }

    #[test]
    fn enables_controllers_and_writes_limits() {
        let d = tempfile::tempdir().unwrap();
        fake_cgroup(d.path(), "cpuset cpu io memory pids");
        let tree = Tree::open_at(d.path(), 1).unwrap();
        let subtree = std::fs::read_to_string(d.path().join("cgroup.subtree_control")).unwrap();
        assert_eq!(subtree, "+memory +pids +cpu");
        let box_dir = d.path().join("warden/box-7");
        std::fs::create_dir_all(&box_dir).unwrap();
        for f in ["memory.events", "cpu.stat", "memory.peak"] {
            std::fs::write(box_dir.join(f), "").unwrap();
        }
        std::fs::write(box_dir.join("memory.events"), "oom 0\noom_kill 2\n").unwrap();
        std::fs::write(box_dir.join("cpu.stat"), "usage_usec 1500\n").unwrap();
        let mut cg = tree.box_cgroup("box-7").unwrap();
        cg.apply(&CgroupLimits {
            memory_bytes: Some(1 << 20),
            pids: Some(16),
            cpu_cores: Some(0.5),
        })
        .unwrap();
        let read = |f: &str| std::fs::read_to_string(box_dir.join(f)).unwrap();
        assert_eq!(read("memory.max"), "1048576");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("pids.max"), "16");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("memory.oom.group"), "1");
        let base = cg.start_run().unwrap();
        assert_eq!(base.oom_kills, 2);
        assert_eq!(base.cpu_ns, 1_500_000);
        std::fs::write(box_dir.join("memory.events"), "oom 1\noom_kill 3\n").unwrap();
        std::fs::write(box_dir.join("cpu.stat"), "usage_usec 4500\n").unwrap();
        let stats = cg.stats(&base);
        assert_eq!(stats.oom_kills, 1);
        assert_eq!(stats.cpu_ns, Some(3_000_000));
    }
}
