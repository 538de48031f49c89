//! cgroup v1: one hierarchy per controller (or per group of co-mounted
//! controllers). A box has a directory in each hierarchy Warden uses:
//! `memory`, `pids`, `cpu` and `cpuacct`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::{
    Baseline, CPU_PERIOD_US, CgroupError, CgroupLimits, CgroupStats, MountEntry, NEEDED, cpu_quota_us,
    io_err, keyed, kill_until_empty, mkdir, open_rw, own_dir_in, pread_all, read_pids, write,
};

/// Warden's subtree in each v1 hierarchy it uses.
#[derive(Debug, Clone)]
pub struct Tree {
    /// `<mount>/<own cgroup>/warden` of the memory hierarchy.
    memory: PathBuf,
    pids: PathBuf,
    cpu: PathBuf,
    /// May be the same directory as `cpu` when co-mounted.
    cpuacct: Option<PathBuf>,
}

impl Tree {
    /// Find the hierarchies and create `warden/` in each.
    pub fn open(mounts: &[MountEntry], own: &[(Vec<String>, PathBuf)]) -> Result<Tree, CgroupError> {
        let base_of = |ctrl: &str| -> Option<PathBuf> {
            let mount = mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.controllers.iter().any(|c| c == ctrl))?;
            let path = own
                .iter()
                .find(|(ctrls, _)| ctrls.iter().any(|c| c == ctrl))
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| PathBuf::from("/"));
            Some(own_dir_in(mount, &path).join("warden"))
        };
        let missing: Vec<&str> = NEEDED.iter().copied().filter(|c| base_of(c).is_none()).collect();
        if !missing.is_empty() {
            return Err(CgroupError::Unusable {
                version: "v1",
                reason: format!("controllers not mounted: {}", missing.join(", ")),
            });
        }
        let tree = Tree {
            memory: base_of("memory").unwrap_or_default(),
            pids: base_of("pids").unwrap_or_default(),
            cpu: base_of("cpu").unwrap_or_default(),
            cpuacct: base_of("cpuacct"),
        };
        for dir in tree.dirs() {
            let made = match std::fs::create_dir(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // Someone (root, earlier) made it: we must still be able
                    // to create box cgroups inside.
                    rustix::fs::access(&dir, rustix::fs::Access::WRITE_OK).map_err(std::io::Error::from)
                }
                Err(e) => Err(e),
            };
            if let Err(source) = made {
                return Err(CgroupError::Unusable {
                    version: "v1",
                    reason: format!(
                        "cannot create cgroups in {}: {source} (no delegation to this user)",
                        dir.display()
                    ),
                });
            }
        }
        Ok(tree)
    }

    fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.memory.clone(), self.pids.clone(), self.cpu.clone()];
        if let Some(a) = &self.cpuacct
            && !dirs.contains(a)
        {
            dirs.push(a.clone());
        }
        dirs
    }

    /// The directories of box cgroup `name`, one per hierarchy.
    pub(crate) fn dirs_of(&self, name: &str) -> Vec<PathBuf> {
        self.dirs().into_iter().map(|d| d.join(name)).collect()
    }

    /// Create (or reuse) `warden/<name>` in each hierarchy.
    pub fn box_cgroup(&self, name: &str) -> Result<BoxCg, CgroupError> {
        let dirs = self.dirs_of(name);
        for dir in &dirs {
            mkdir(dir)?;
        }
        let memory = self.memory.join(name);
        let cpuacct = self.cpuacct.as_ref().map(|d| d.join(name));
        let memsw = memory.join("memory.memsw.limit_in_bytes").exists();
        Ok(BoxCg {
            max_usage: open_rw(&memory.join("memory.max_usage_in_bytes"))?,
            oom_control: File::open(memory.join("memory.oom_control")).map_err(io_err(&memory))?,
            cpuacct_usage: match &cpuacct {
                Some(d) => Some(open_rw(&d.join("cpuacct.usage"))?),
                None => None,
            },
            memory,
            pids: self.pids.join(name),
            cpu: self.cpu.join(name),
            dirs,
            memsw,
            applied: None,
            launcher_thread: false,
        })
    }
}

/// One box's v1 cgroups, with the hot files kept open.
#[derive(Debug)]
pub struct BoxCg {
    memory: PathBuf,
    pids: PathBuf,
    cpu: PathBuf,
    dirs: Vec<PathBuf>,
    memsw: bool,
    max_usage: File,
    oom_control: File,
    cpuacct_usage: Option<File>,
    applied: Option<CgroupLimits>,
    /// One of our threads lives here to fork boxes (see
    /// `BoxCgroup::launcher_attached`).
    launcher_thread: bool,
}

impl BoxCg {
    pub(crate) fn apply(&mut self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let prev = self.applied;
        if prev.map(|p| p.memory_bytes) != Some(limits.memory_bytes) {
            let value = limits.memory_bytes.map_or("-1".to_owned(), |b| b.to_string());
            let mem = self.memory.join("memory.limit_in_bytes");
            let sw = self.memory.join("memory.memsw.limit_in_bytes");
            if self.memsw {
                // memsw must never fall below the memory limit: raise memsw
                // first when growing, lower the memory limit first when
                // shrinking. Try one order, then the other.
                if write(&sw, &value).is_err() {
                    write(&mem, &value)?;
                    write(&sw, &value)?;
                } else {
                    write(&mem, &value)?;
                }
            } else {
                write(&mem, &value)?;
            }
        }
        if prev.map(|p| p.pids) != Some(limits.pids) {
            let extra = u32::from(self.launcher_thread);
            let value = limits.pids.map_or("max".to_owned(), |p| (p + extra).to_string());
            write(&self.pids.join("pids.max"), &value)?;
        }
        if prev.map(|p| p.cpu_cores) != Some(limits.cpu_cores) {
            write(&self.cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
            let quota = limits
                .cpu_cores
                .map_or("-1".to_owned(), |c| cpu_quota_us(c).to_string());
            write(&self.cpu.join("cpu.cfs_quota_us"), &quota)?;
        }
        self.applied = Some(*limits);
        Ok(())
    }

    pub(crate) fn start_run(&mut self) -> Result<Baseline, CgroupError> {
        // Writing 0 resets the peak to the current usage.
        self.max_usage
            .write_at(b"0", 0)
            .map_err(io_err(&self.memory.join("memory.max_usage_in_bytes")))?;
        let cpu_ns = match &self.cpuacct_usage {
            Some(f) => pread_all(f).trim().parse().unwrap_or(0),
            None => 0,
        };
        Ok(Baseline {
            oom_kills: keyed(&pread_all(&self.oom_control), "oom_kill").unwrap_or(0),
            cpu_ns,
        })
    }

    pub(crate) fn tasks_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("tasks")).collect()
    }

    pub(crate) fn launcher_attached(&mut self) -> Result<(), CgroupError> {
        self.launcher_thread = true;
        // Re-apply limits so pids.max accounts for the thread.
        if let Some(l) = self.applied.take() {
            self.apply(&l)?;
        }
        Ok(())
    }

    pub(crate) fn stats(&self, base: &Baseline) -> CgroupStats {
        let peak = pread_all(&self.max_usage).trim().parse().ok();
        let cpu_ns = self
            .cpuacct_usage
            .as_ref()
            .and_then(|f| pread_all(f).trim().parse::<u64>().ok())
            .map(|v| v.saturating_sub(base.cpu_ns));
        let oom = keyed(&pread_all(&self.oom_control), "oom_kill").unwrap_or(0);
        CgroupStats {
            cpu_ns,
            peak_bytes: peak,
            oom_kills: oom.saturating_sub(base.oom_kills),
        }
    }

    pub(crate) fn memory_usage(&self) -> Option<u64> {
        let usage = super::read_number(&self.memory.join("memory.usage_in_bytes"))?;
        let stat = std::fs::read_to_string(self.memory.join("memory.stat")).unwrap_or_default();
        // `usage_in_bytes` is hierarchical, so are the `total_` keys.
        Some(super::without_file_cache(usage, &stat, "total_"))
    }

    pub(crate) fn task_count(&self) -> Option<u32> {
        // The box's own tasks: our launcher thread lives here too.
        let n = super::read_number(&self.pids.join("pids.current"))?;
        u32::try_from(n.saturating_sub(u64::from(self.launcher_thread))).ok()
    }

    pub(crate) fn pids(&self) -> Vec<i32> {
        let mut all = Vec::new();
        for d in &self.dirs {
            for p in read_pids(&d.join("cgroup.procs")) {
                if !all.contains(&p) {
                    all.push(p);
                }
            }
        }
        all
    }

    pub(crate) fn kill_all(&self) -> Result<(), CgroupError> {
        kill_until_empty(|| self.pids());
        Ok(())
    }
}
