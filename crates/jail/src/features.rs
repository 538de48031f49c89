//! What the running kernel offers, detected once at start.
//!
//! Warden refuses to run untrusted code without namespaces and seccomp; the
//! other layers (landlock, cgroups) are used when present and reported when
//! absent. Detection reads `/proc` and `/sys` and makes harmless probing
//! syscalls; it never changes anything.

use serde::Serialize;

use crate::cgroup::{CgroupReport, Cgroups};

/// One facility and whether Warden can use it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Facility {
    /// Short name (`user namespaces`).
    pub name: &'static str,
    /// Usable.
    pub available: bool,
    /// Detail: version, reason it is missing, or how it is used.
    pub detail: String,
    /// The jail cannot run untrusted code without it.
    pub required: bool,
}

/// The kernel's capabilities as far as the jail is concerned.
#[derive(Debug, Serialize)]
pub struct Features {
    /// `uname -r`.
    pub kernel: String,
    /// Effective uid is 0: boxes use per-slot uids and pooled network
    /// namespaces; otherwise every box gets its own user namespace.
    pub root: bool,
    /// Every facility probed.
    pub facilities: Vec<Facility>,
    /// Landlock ABI version (0: none).
    pub landlock_abi: u32,
    /// `SECCOMP_RET_USER_NOTIF` is available: violations are named.
    pub seccomp_user_notif: bool,
    /// What cgroup detection found.
    pub cgroup: CgroupReport,
    /// Highest capability number (`/proc/sys/kernel/cap_last_cap`).
    pub cap_last: u32,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

impl Features {
    /// Probe everything. Also returns the chosen cgroup backend, since
    /// detecting it already set it up.
    pub fn detect() -> (Features, Option<Cgroups>) {
        let root = rustix::process::geteuid().is_root();
        let kernel = read("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
        let mut f = Vec::new();

        let ns = |name: &'static str, file: &str, why: &str| {
            let ok = std::path::Path::new(&format!("/proc/self/ns/{file}")).exists();
            Facility {
                name,
                available: ok,
                detail: if ok {
                    why.to_owned()
                } else {
                    format!("/proc/self/ns/{file} is missing: kernel built without it")
                },
                required: true,
            }
        };
        f.push(ns(
            "mount namespace",
            "mnt",
            "private root filesystem (pivot_root)",
        ));
        f.push(ns(
            "pid namespace",
            "pid",
            "box processes see only each other; killing init kills all",
        ));
        f.push(ns(
            "network namespace",
            "net",
            "no network: only a loopback that is down",
        ));
        f.push(ns(
            "ipc namespace",
            "ipc",
            "private System V IPC and POSIX queues",
        ));
        f.push(ns("uts namespace", "uts", "hostname `warden`"));
        f.push(ns(
            "cgroup namespace",
            "cgroup",
            "the box sees its own cgroup as the root",
        ));

        let max_userns: u64 = read("/proc/sys/user/max_user_namespaces")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let unpriv = read("/proc/sys/kernel/unprivileged_userns_clone")
            .map(|s| s != "0")
            .unwrap_or(true);
        let userns_ok = max_userns > 0 && (root || unpriv);
        f.push(Facility {
            name: "user namespaces",
            available: userns_ok,
            detail: if root {
                format!("not needed as root (max_user_namespaces={max_userns}); used in rootless mode")
            } else if userns_ok {
                "rootless mode: each box gets its own user namespace".to_owned()
            } else if max_userns == 0 {
                "user.max_user_namespaces is 0: rootless mode impossible".to_owned()
            } else {
                "kernel.unprivileged_userns_clone is 0: rootless mode impossible".to_owned()
            },
            required: !root,
        });

        let actions = read("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
        let seccomp = !actions.is_empty();
        let user_notif = actions.split_whitespace().any(|a| a == "user_notif");
        f.push(Facility {
            name: "seccomp-bpf",
            available: seccomp,
            detail: if seccomp {
                format!("filter actions: {actions}")
            } else {
                "no /proc/sys/kernel/seccomp/actions_avail: kernel without seccomp filters".into()
            },
            required: true,
        });
        f.push(Facility {
            name: "seccomp user notification",
            available: user_notif,
            detail: if user_notif {
                "violations are reported with the syscall's name".into()
            } else {
                "violations kill the box but the syscall is not named".into()
            },
            required: false,
        });

        let landlock_abi = crate::sys::landlock_abi();
        f.push(Facility {
            name: "landlock",
            available: landlock_abi > 0,
            detail: if landlock_abi > 0 {
                let mut d = format!("ABI {landlock_abi}: filesystem rules matching the mount plan");
                if landlock_abi >= 4 {
                    d.push_str(", TCP bind/connect denied");
                }
                if landlock_abi >= 6 {
                    d.push_str(", signals and abstract sockets scoped to the box");
                }
                d
            } else {
                "not available (kernel < 5.13, or `lsm=` lacks landlock): second filesystem layer off".into()
            },
            required: false,
        });

        // The new mount API and pidfds are required by the launcher.
        let mount_api = probe_open_tree();
        f.push(Facility {
            name: "mount API (open_tree, mount_setattr)",
            available: mount_api,
            detail: if mount_api {
                "recursive read-only bind mounts".into()
            } else {
                "Linux 5.12 or newer is required".into()
            },
            required: true,
        });

        let (cgroups, report) = Cgroups::detect();
        f.push(Facility {
            name: "cgroups",
            available: cgroups.is_some(),
            detail: match &cgroups {
                Some(c) => format!("{}: memory, pids and cpu limits per box", c.version()),
                None => format!(
                    "none usable ({}): falling back to rlimits only (per-process memory and process caps)",
                    report.notes.join("; ")
                ),
            },
            required: false,
        });

        let cap_last = read("/proc/sys/kernel/cap_last_cap")
            .and_then(|s| s.parse().ok())
            .unwrap_or(40);
        (
            Features {
                kernel,
                root,
                facilities: f,
                landlock_abi,
                seccomp_user_notif: user_notif,
                cgroup: report,
                cap_last,
            },
            cgroups,
        )
    }

    /// Required facilities that are missing, by name.
    pub fn missing_required(&self) -> Vec<&Facility> {
        self.facilities
            .iter()
            .filter(|f| f.required && !f.available)
            .collect()
    }
}

fn probe_open_tree() -> bool {
    // open_tree without OPEN_TREE_CLONE just opens a path: harmless.
    rustix::mount::open_tree(
        rustix::fs::CWD,
        c"/",
        rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .is_ok()
}
