//! Host side of starting a box: turn a [`BoxSpec`] into a complete
//! [`ChildPlan`] (every string, descriptor and BPF program the child will
//! need), then fork.
//!
//! All allocation happens here, before the fork; see [`crate::child`] for why.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rustix::pipe::PipeFlags;
use rustix::process::Resource;

use crate::child::{self, ChildPlan, PayloadPlan, Rlimit, UserNsPlan};
use crate::error::JailError;
use crate::mounts::{self, PlanContext};
use crate::seccomp::CompiledProfile;
use crate::spec::{BoxSpec, Stdin};
use crate::sys;

/// A started box, from the host's point of view.
#[derive(Debug)]
pub(crate) struct Launched {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub report: OwnedFd,
    /// Closing this tells init to kill the box.
    pub lifeline: OwnedFd,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// Host end of stdin and the bytes to write (`None`: not known yet).
    pub stdin: Option<(OwnedFd, Option<Vec<u8>>)>,
    pub started: Instant,
    /// Mount plan, to name the path when a step fails.
    pub ops: Vec<mounts::MountOp>,
}

/// Everything one launch needs, owned, so it can run on the slot's launcher
/// thread (see [`crate::pool`]).
pub(crate) struct LaunchRequest {
    pub rootless: bool,
    pub landlock_abi: u32,
    pub cap_last: u32,
    pub cgroups: bool,
    pub profile: Arc<CompiledProfile>,
    pub hostname: String,
    pub root_dir: PathBuf,
    pub workspace: PathBuf,
    pub uid: u32,
    pub netns: Option<OwnedFd>,
    /// The egress proxy's port, for a box granted egress (landlock allows
    /// TCP connect to it alone).
    pub egress_port: Option<u16>,
    /// cgroup v2 directory for `CLONE_INTO_CGROUP`.
    pub cgroup_dir: Option<OwnedFd>,
    pub spec: BoxSpec,
    pub program: PathBuf,
}

fn cstring(bytes: &[u8], what: &str) -> Result<CString, JailError> {
    CString::new(bytes).map_err(|_| JailError::Spec(format!("{what} contains a NUL byte")))
}

/// Find `program` the way a shell would, but inside the box: a bare name is
/// searched in the box's `PATH`. Mount targets equal host paths for system
/// binds, so the host's view answers for them.
pub(crate) fn resolve_program(spec: &BoxSpec) -> Result<PathBuf, JailError> {
    let name = spec.program.as_os_str();
    if name.is_empty() {
        return Err(JailError::Spec("no program given".into()));
    }
    if name.as_bytes().contains(&b'/') {
        return Ok(spec.program.clone());
    }
    let path = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        if !dir.is_absolute() {
            continue;
        }
        let candidate = dir.join(name);
        let visible = spec
            .mounts
            .ro_binds
            .iter()
            .any(|b| candidate.starts_with(&b.target) || dir.starts_with(&b.target));
        if visible && is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(JailError::ProgramNotFound(name.to_string_lossy().into_owned()))
}

fn is_executable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok() && path.is_file()
}

/// Fork the box. On success the child is running init; the returned handles
/// are the host's ends.
pub(crate) fn launch(req: LaunchRequest) -> Result<Launched, JailError> {
    let LaunchRequest {
        rootless,
        landlock_abi,
        cap_last,
        cgroups,
        profile,
        hostname,
        root_dir,
        workspace,
        uid,
        netns,
        egress_port,
        cgroup_dir,
        spec,
        program,
    } = req;
    let l = &spec.limits;
    let ops = mounts::plan(
        &spec.mounts,
        &PlanContext {
            workspace_host: spec.mounts.workspace.as_ref().map(|_| workspace.as_path()),
            tmp_bytes: l.tmp_bytes,
            uid,
            gid: uid,
        },
    )?;
    let landlock_rules = if landlock_abi > 0 {
        mounts::landlock_rules(&ops, landlock_abi)
    } else {
        Vec::new()
    };

    // argv / envp as C arrays.
    let program_c = cstring(program.as_os_str().as_bytes(), "program path")?;
    let argv: Vec<CString> = spec
        .args
        .iter()
        .map(|a| cstring(a.as_bytes(), "an argument"))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| {
            if k.is_empty() || k.as_bytes().contains(&b'=') {
                return Err(JailError::Spec(format!(
                    "invalid environment variable name {k:?}"
                )));
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv, "an environment variable")
        })
        .collect::<Result<_, _>>()?;
    let ptrs = |v: &[CString]| {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect::<Vec<_>>()
    };
    let argv_ptrs = ptrs(&argv);
    let envp_ptrs = ptrs(&envp);

    let mut rlimits = vec![
        Rlimit {
            resource: Resource::Core,
            soft: 0,
            hard: 0,
        },
        Rlimit {
            resource: Resource::Fsize,
            soft: l.file_size_bytes,
            hard: l.file_size_bytes,
        },
        Rlimit {
            resource: Resource::Nofile,
            soft: l.open_files,
            hard: l.open_files,
        },
        Rlimit {
            resource: Resource::Stack,
            soft: l.stack_bytes,
            hard: l.stack_bytes,
        },
    ];
    if let Some(cpu) = l.cpu_time {
        // Whole seconds, rounded up; SIGXCPU at the soft limit, SIGKILL one
        // second later if the program ignores it.
        let secs = cpu.as_secs() + u64::from(cpu.subsec_nanos() > 0);
        let secs = secs.max(1);
        rlimits.push(Rlimit {
            resource: Resource::Cpu,
            soft: secs,
            hard: secs + 1,
        });
    }
    if !cgroups {
        // No cgroup: per-process fallbacks. RLIMIT_NPROC counts the box uid's
        // processes; RLIMIT_DATA bounds each process's heap (RLIMIT_AS would
        // break V8, which reserves large address ranges it never touches).
        if let Some(p) = l.pids {
            rlimits.push(Rlimit {
                resource: Resource::Nproc,
                soft: p.into(),
                hard: p.into(),
            });
        }
        if let Some(m) = l.memory_bytes {
            rlimits.push(Rlimit {
                resource: Resource::Data,
                soft: m,
                hard: m,
            });
        }
    }

    // Descriptors: stdin, stdout, stderr, then extras.
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    let (stdin_box, stdin_host) = match spec.stdin {
        Stdin::Null => {
            let null = std::fs::File::open("/dev/null").map_err(JailError::io(Path::new("/dev/null")))?;
            (OwnedFd::from(null), None)
        }
        Stdin::Bytes(bytes) => {
            let (r, w) = pipe()?;
            (r, Some((w, Some(bytes))))
        }
        Stdin::Deferred => {
            let (r, w) = pipe()?;
            (r, Some((w, None)))
        }
    };
    let mut fds = vec![(stdin_box, 0), (stdout_w, 1), (stderr_w, 2)];
    for (fd, target) in spec.extra_fds {
        if target < 3 || fds.iter().any(|(_, t)| *t == target) {
            return Err(JailError::Spec(format!(
                "extra descriptor number {target} is taken"
            )));
        }
        if target > 63 {
            return Err(JailError::Spec(format!(
                "extra descriptor number {target} is above 63"
            )));
        }
        fds.push((fd, target));
    }

    let max_target = fds.iter().map(|(_, t)| *t).max().unwrap_or(2);
    if l.open_files <= max_target as u64 {
        return Err(JailError::Spec(format!(
            "the open-files limit ({}) must exceed the highest descriptor handed to the program ({max_target})",
            l.open_files
        )));
    }
    // A fresh random token per box, so no program can learn one from another.
    let mut token = [0u8; 8];
    rustix::rand::getrandom(&mut token, rustix::rand::GetRandomFlags::empty()).map_err(|e| {
        JailError::Launch {
            step: "getrandom",
            source: e.into(),
        }
    })?;
    let spawn_token = u64::from_ne_bytes(token);
    let seccomp = profile.with_tokens(program_c.as_ptr() as u64, spawn_token);
    let (report_r, report_w) = pipe()?;
    let (lifeline_r, lifeline_w) = pipe()?;

    let userns = rootless.then(|| {
        let (host_uid, host_gid) = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        UserNsPlan {
            uid_map: format!("{uid} {host_uid} 1\n").into_bytes(),
            gid_map: format!("{uid} {host_gid} 1\n").into_bytes(),
        }
    });
    let mut flags = (libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) as u64;
    if netns.is_none() {
        flags |= libc::CLONE_NEWNET as u64;
    }
    if rootless {
        flags |= libc::CLONE_NEWUSER as u64;
    }

    let mut plan = ChildPlan {
        report: report_w,
        lifeline: lifeline_r,
        netns,
        userns,
        root_dir: cstring(root_dir.as_os_str().as_bytes(), "state dir")?,
        ops,
        hostname: cstring(hostname.as_bytes(), "hostname")?,
        landlock_abi,
        landlock_rules,
        landlock_connect_port: egress_port,
        rlimits,
        uid,
        gid: uid,
        clear_groups: !rootless,
        cap_last,
        seccomp,
        seccomp_listener: profile.listener,
        spawn_token,
        stack: vec![0u8; 64 * 1024],
        payload: PayloadPlan {
            fds,
            cwd: cstring(spec.cwd.as_os_str().as_bytes(), "working directory")?,
            program: program_c,
            argv,
            argv_ptrs,
            envp,
            envp_ptrs,
            failure: std::cell::Cell::new(None),
        },
    };

    let started = Instant::now();
    // SAFETY: in the child branch we call only `child::init_main`, which
    // neither allocates, locks, nor returns (it leaves through exit_now).
    let forked = unsafe { sys::clone3_fork(flags, cgroup_dir.as_ref().map(|f| f.as_fd())) }.map_err(|e| {
        JailError::Launch {
            step: "clone3",
            source: std::io::Error::from_raw_os_error(e.into_raw()),
        }
    })?;
    match forked {
        sys::Forked::Child => child::init_main(plan),
        sys::Forked::Parent { pid, pidfd } => {
            // The parent keeps the mount plan to name a failed step.
            let ops = std::mem::take(&mut plan.ops);
            drop(plan); // the child's ends
            Ok(Launched {
                pid,
                pidfd,
                report: report_r,
                lifeline: lifeline_w,
                stdout: Some(stdout_r),
                stderr: Some(stderr_r),
                stdin: stdin_host,
                started,
                ops,
            })
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), JailError> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| JailError::Launch {
        step: "pipe",
        source: e.into(),
    })
}

/// Human name of a mount op's path, for messages.
pub(crate) fn op_path(ops: &[mounts::MountOp], index: u32) -> Option<String> {
    let op = ops.get(usize::try_from(index).ok()?)?;
    Some(format!(
        "/{}",
        OsStr::from_bytes(op.path().as_bytes()).to_string_lossy()
    ))
}
