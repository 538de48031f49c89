//! What runs after the fork: the box's init (pid 1 of the new pid namespace)
//! and the payload it starts.
//!
//! The host may be multithreaded, so after the fork this code must not
//! allocate, lock, or panic: every input was prepared by the host in a
//! [`ChildPlan`], and every failure is reported as a fixed-size [`Record`]
//! naming the [`Step`] and the errno.
//!
//! Init builds the box (cgroup, namespaces, mounts, pivot_root, hostname,
//! landlock ruleset), starts the payload, then stays as a small supervisor:
//! it reaps orphans, turns seccomp notifications into violation reports, and
//! when the payload exits (or the host goes away) kills whatever is left. When
//! init exits, the kernel kills every process left in the pid namespace, so no
//! process of the box can outlive the run.
//!
//! The payload drops everything (session, signals, descriptors, rlimits,
//! capabilities, ids, landlock, seccomp) and execs the program.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags,
    UnmountFlags,
};
use syscalls::Errno;

use crate::mounts::MountOp;
use crate::seccomp::CompiledFilter;
use crate::sys::{self, landlock as ll};

/// Every step that can fail in the child, for error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    RelocateFds = 1,
    CloseInherited,
    WriteSetgroups,
    WriteUidMap,
    WriteGidMap,
    JoinCgroup,
    UnshareCgroup,
    JoinNetns,
    MakeMountsPrivate,
    MountRoot,
    OpenRoot,
    Mkdir,
    Symlink,
    BindMount,
    MountTmpfs,
    MountProc,
    WriteFile,
    PivotRoot,
    DetachOldRoot,
    RemountRootReadOnly,
    SetHostname,
    Landlock,
    Signalfd,
    Pipe,
    ForkPayload,
    NewSession,
    ResetSignals,
    DeathSignal,
    Descriptors,
    Chdir,
    Rlimit,
    DropBoundingSet,
    DropAmbient,
    SetGroups,
    SetGid,
    SetUid,
    DropCapabilities,
    NoNewPrivs,
    LandlockRestrict,
    Seccomp,
    Exec,
}

impl Step {
    const ALL: [Step; 41] = [
        Step::RelocateFds,
        Step::CloseInherited,
        Step::WriteSetgroups,
        Step::WriteUidMap,
        Step::WriteGidMap,
        Step::JoinCgroup,
        Step::UnshareCgroup,
        Step::JoinNetns,
        Step::MakeMountsPrivate,
        Step::MountRoot,
        Step::OpenRoot,
        Step::Mkdir,
        Step::Symlink,
        Step::BindMount,
        Step::MountTmpfs,
        Step::MountProc,
        Step::WriteFile,
        Step::PivotRoot,
        Step::DetachOldRoot,
        Step::RemountRootReadOnly,
        Step::SetHostname,
        Step::Landlock,
        Step::Signalfd,
        Step::Pipe,
        Step::ForkPayload,
        Step::NewSession,
        Step::ResetSignals,
        Step::DeathSignal,
        Step::Descriptors,
        Step::Chdir,
        Step::Rlimit,
        Step::DropBoundingSet,
        Step::DropAmbient,
        Step::SetGroups,
        Step::SetGid,
        Step::SetUid,
        Step::DropCapabilities,
        Step::NoNewPrivs,
        Step::LandlockRestrict,
        Step::Seccomp,
        Step::Exec,
    ];

    pub(crate) fn from_u32(v: u32) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| *s as u32 == v)
    }

    /// Lowercase description for error messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Step::RelocateFds => "moving descriptors out of the way",
            Step::CloseInherited => "closing inherited descriptors",
            Step::WriteSetgroups => "writing /proc/self/setgroups",
            Step::WriteUidMap => "writing the uid map",
            Step::WriteGidMap => "writing the gid map",
            Step::JoinCgroup => "joining the box cgroup",
            Step::UnshareCgroup => "creating the cgroup namespace",
            Step::JoinNetns => "joining the pooled network namespace",
            Step::MakeMountsPrivate => "making mounts private",
            Step::MountRoot => "mounting the root tmpfs",
            Step::OpenRoot => "opening the new root",
            Step::Mkdir => "creating a directory",
            Step::Symlink => "creating a symlink",
            Step::BindMount => "bind-mounting",
            Step::MountTmpfs => "mounting a tmpfs",
            Step::MountProc => "mounting /proc",
            Step::WriteFile => "writing a file",
            Step::PivotRoot => "pivot_root",
            Step::DetachOldRoot => "detaching the old root",
            Step::RemountRootReadOnly => "remounting the root read-only",
            Step::SetHostname => "setting the hostname",
            Step::Landlock => "building the landlock ruleset",
            Step::Signalfd => "creating the SIGCHLD descriptor",
            Step::Pipe => "creating a pipe",
            Step::ForkPayload => "starting the program's process",
            Step::NewSession => "starting a new session",
            Step::ResetSignals => "resetting signals",
            Step::DeathSignal => "setting the parent-death signal",
            Step::Descriptors => "placing stdio descriptors",
            Step::Chdir => "changing to the working directory",
            Step::Rlimit => "setting rlimits",
            Step::DropBoundingSet => "dropping the capability bounding set",
            Step::DropAmbient => "clearing ambient capabilities",
            Step::SetGroups => "clearing supplementary groups",
            Step::SetGid => "switching gid",
            Step::SetUid => "switching uid",
            Step::DropCapabilities => "dropping capabilities",
            Step::NoNewPrivs => "setting no_new_privs",
            Step::LandlockRestrict => "enforcing landlock",
            Step::Seccomp => "installing the seccomp filter",
            Step::Exec => "executing the program",
        }
    }
}

/// A message from the child to the host (init → host) or from the payload to
/// init. Fixed size, well under `PIPE_BUF`, so writes are atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Record {
    pub kind: u32,
    pub step: u32,
    pub errno: i32,
    pub a: i64,
    pub b: i64,
}

/// Record kinds.
pub(crate) mod kind {
    /// Setup failed: `step`, `errno`, `a` = index of the mount op or -1.
    pub const SETUP_FAILED: u32 = 1;
    /// The program is running.
    pub const STARTED: u32 = 2;
    /// Seccomp violation: `a` = syscall nr, `b` = audit arch.
    pub const VIOLATION: u32 = 3;
    /// The program ended: `a` = raw wait status.
    pub const EXITED: u32 = 4;
    /// The host went away; init killed the box.
    pub const ORPHANED: u32 = 5;
}

/// Encoded size of a [`Record`].
pub(crate) const RECORD_LEN: usize = 32;

impl Record {
    pub(crate) fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0..4].copy_from_slice(&self.kind.to_ne_bytes());
        out[4..8].copy_from_slice(&self.step.to_ne_bytes());
        out[8..12].copy_from_slice(&self.errno.to_ne_bytes());
        out[16..24].copy_from_slice(&self.a.to_ne_bytes());
        out[24..32].copy_from_slice(&self.b.to_ne_bytes());
        out
    }

    pub(crate) fn decode(buf: &[u8; RECORD_LEN]) -> Record {
        let u32_at = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let i64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[i..i + 8]);
            i64::from_ne_bytes(b)
        };
        Record {
            kind: u32_at(0),
            step: u32_at(4),
            errno: u32_at(8) as i32,
            a: i64_at(16),
            b: i64_at(24),
        }
    }
}

/// Rootless mode: the id maps the child writes for its own user namespace.
pub(crate) struct UserNsPlan {
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
}

/// Everything init needs, prepared by the host.
pub(crate) struct ChildPlan {
    /// Write end of the report pipe (init → host).
    pub report: OwnedFd,
    /// Read end of the lifeline pipe; the host holds the write end for as
    /// long as it wants the box alive.
    pub lifeline: OwnedFd,
    /// `cgroup.procs` of each hierarchy the box joins (empty: no cgroups).
    pub cgroup_procs: Vec<OwnedFd>,
    /// Pooled network namespace to join, if any.
    pub netns: Option<OwnedFd>,
    /// Rootless id maps.
    pub userns: Option<UserNsPlan>,
    /// Host path of the slot's root mountpoint.
    pub root_dir: CString,
    /// The mount plan.
    pub ops: Vec<MountOp>,
    /// Box hostname.
    pub hostname: CString,
    /// Landlock ABI and rules (empty when the kernel has none).
    pub landlock_abi: u32,
    /// Landlock rules, paths relative to the new root.
    pub landlock_rules: Vec<(CString, u64)>,
    /// The program's process.
    pub payload: PayloadPlan,
}

/// One resource limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rlimit {
    pub resource: rustix::process::Resource,
    pub soft: u64,
    pub hard: u64,
}

/// Everything the payload needs.
pub(crate) struct PayloadPlan {
    /// Descriptors to place at fixed numbers (stdio and extras).
    pub fds: Vec<(OwnedFd, i32)>,
    pub cwd: CString,
    pub rlimits: Vec<Rlimit>,
    pub uid: u32,
    pub gid: u32,
    /// Call `setgroups([])` (not allowed in a rootless user namespace).
    pub clear_groups: bool,
    pub cap_last: u32,
    pub seccomp: Vec<CompiledFilter>,
    pub program: CString,
    /// Owns the strings `argv_ptrs` points into; never read directly.
    #[allow(dead_code)]
    pub argv: Vec<CString>,
    /// Null-terminated pointer array for execve.
    pub argv_ptrs: Vec<*const libc::c_char>,
    /// Owns the strings `envp_ptrs` points into; never read directly.
    #[allow(dead_code)]
    pub envp: Vec<CString>,
    /// Null-terminated pointer array for execve.
    pub envp_ptrs: Vec<*const libc::c_char>,
}

/// A failed step, with the mount op index when it applies.
#[derive(Debug, Clone, Copy)]
struct Fail {
    step: Step,
    errno: i32,
    op: i64,
}

fn fail(step: Step) -> impl Fn(rustix::io::Errno) -> Fail {
    move |e| Fail {
        step,
        errno: e.raw_os_error(),
        op: -1,
    }
}

fn fail_sys(step: Step) -> impl Fn(Errno) -> Fail {
    move |e| Fail {
        step,
        errno: e.into_raw(),
        op: -1,
    }
}

fn write_record(fd: BorrowedFd<'_>, rec: Record) {
    let buf = rec.encode();
    // A short or failed write means the reader is gone; nothing to do.
    let _ = rustix::io::write(fd, &buf);
}

fn report_failure(fd: BorrowedFd<'_>, f: Fail) {
    write_record(
        fd,
        Record {
            kind: kind::SETUP_FAILED,
            step: f.step as u32,
            errno: f.errno,
            a: f.op,
            b: 0,
        },
    );
}

/// Descriptor numbers below this are reserved for the payload's fixed
/// descriptors; init keeps its own above.
fn fd_floor(plan: &ChildPlan) -> i32 {
    let max_target = plan.payload.fds.iter().map(|(_, t)| *t).max().unwrap_or(2);
    max_target.max(2) + 1
}

/// Entry point of the box's init. Never returns.
pub(crate) fn init_main(mut plan: ChildPlan) -> ! {
    match init_setup(&mut plan) {
        Ok(running) => {
            let code = supervise(&plan, running);
            sys::exit_now(code)
        }
        Err(f) => {
            report_failure(plan.report.as_fd(), f);
            sys::exit_now(127)
        }
    }
}

/// Move `fd` to a number at or above `floor`.
fn relocate(fd: &mut OwnedFd, floor: i32) -> Result<(), Fail> {
    use std::os::fd::AsRawFd;
    if fd.as_raw_fd() >= floor {
        return Ok(());
    }
    let moved = rustix::io::fcntl_dupfd_cloexec(&*fd, floor).map_err(fail(Step::RelocateFds))?;
    *fd = moved; // closes the old number
    Ok(())
}

/// Keep only the plan's descriptors: everything else inherited from the host
/// (other boxes' pipes, sockets, database files) is closed.
fn close_inherited(plan: &mut ChildPlan) -> Result<(), Fail> {
    use std::os::fd::AsRawFd;
    let floor = fd_floor(plan);
    relocate(&mut plan.report, floor)?;
    relocate(&mut plan.lifeline, floor)?;
    for fd in plan.cgroup_procs.iter_mut() {
        relocate(fd, floor)?;
    }
    if let Some(fd) = plan.netns.as_mut() {
        relocate(fd, floor)?;
    }
    for (fd, _) in plan.payload.fds.iter_mut() {
        relocate(fd, floor)?;
    }
    // Collect the survivors on the stack, sorted, and close the gaps.
    let mut keep = [i32::MAX; 64];
    let mut n = 0;
    let mut push = |fd: i32| {
        if n < keep.len() {
            keep[n] = fd;
            n += 1;
        }
    };
    push(plan.report.as_raw_fd());
    push(plan.lifeline.as_raw_fd());
    for fd in &plan.cgroup_procs {
        push(fd.as_raw_fd());
    }
    if let Some(fd) = &plan.netns {
        push(fd.as_raw_fd());
    }
    for (fd, _) in &plan.payload.fds {
        push(fd.as_raw_fd());
    }
    if n >= keep.len() {
        return Err(Fail {
            step: Step::CloseInherited,
            errno: libc::EMFILE,
            op: -1,
        });
    }
    let keep = &mut keep[..n];
    keep.sort_unstable();
    let mut next: u32 = 0;
    for &fd in keep.iter() {
        let fd = fd as u32;
        if fd > next {
            sys::close_range(next, fd - 1).map_err(fail_sys(Step::CloseInherited))?;
        }
        next = fd + 1;
    }
    sys::close_range(next, u32::MAX).map_err(fail_sys(Step::CloseInherited))?;
    // Plug the numbers below the floor with copies of the lifeline, so every
    // descriptor init creates from now on lands above the payload's fixed
    // numbers (the payload overwrites the plugs).
    for target in 0..floor {
        sys::dup_to(plan.lifeline.as_fd(), target).map_err(fail_sys(Step::RelocateFds))?;
    }
    Ok(())
}

fn write_file_at(dir: BorrowedFd<'_>, path: &CStr, contents: &[u8], step: Step) -> Result<(), Fail> {
    let fd = rustix::fs::openat(
        dir,
        path,
        OFlags::WRONLY | OFlags::CLOEXEC | OFlags::CREATE | OFlags::TRUNC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(fail(step))?;
    let mut rest = contents;
    while !rest.is_empty() {
        let n = rustix::io::write(&fd, rest).map_err(fail(step))?;
        if n == 0 {
            return Err(Fail {
                step,
                errno: libc::EIO,
                op: -1,
            });
        }
        rest = &rest[n..];
    }
    Ok(())
}

/// What init holds while the program runs.
struct Running {
    payload: i32,
    listener: Option<OwnedFd>,
    sigchld: OwnedFd,
}

/// Payload → init record carrying the seccomp listener's descriptor number.
const LISTENER: u32 = 100;

fn init_setup(plan: &mut ChildPlan) -> Result<Running, Fail> {
    close_inherited(plan)?;

    // Rootless: map our own ids into the new user namespace. /proc is still
    // the host's here, and "self" resolves to this process.
    if let Some(userns) = &plan.userns {
        let cwd = rustix::fs::CWD;
        match write_file_at(cwd, c"/proc/self/setgroups", b"deny", Step::WriteSetgroups) {
            Err(f) if f.errno == libc::ENOENT => {}
            other => other?,
        }
        write_file_at(cwd, c"/proc/self/uid_map", &userns.uid_map, Step::WriteUidMap)?;
        write_file_at(cwd, c"/proc/self/gid_map", &userns.gid_map, Step::WriteGidMap)?;
    }

    // Join the box cgroup before anything else allocates memory on our
    // behalf, then hide the host's cgroup tree behind a cgroup namespace.
    for procs in &plan.cgroup_procs {
        rustix::io::write(procs, b"0").map_err(fail(Step::JoinCgroup))?;
    }
    sys::unshare(libc::CLONE_NEWCGROUP).map_err(fail_sys(Step::UnshareCgroup))?;
    if let Some(netns) = &plan.netns {
        rustix::thread::move_into_link_name_space(
            netns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(fail(Step::JoinNetns))?;
    }
    plan.cgroup_procs.clear();
    plan.netns = None;

    // Nothing we mount may propagate back to the host.
    rustix::mount::mount_change(c"/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
        .map_err(fail(Step::MakeMountsPrivate))?;

    // The new root: a small tmpfs, attached at the slot's root directory so
    // that pivot_root can use it.
    let root_mnt = new_fs(
        c"tmpfs",
        &[(c"size", c"1m"), (c"mode", c"0755")],
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .map_err(fail(Step::MountRoot))?;
    rustix::mount::move_mount(
        &root_mnt,
        c"",
        rustix::fs::CWD,
        plan.root_dir.as_c_str(),
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(fail(Step::MountRoot))?;
    drop(root_mnt);
    let root = rustix::fs::open(
        plan.root_dir.as_c_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail(Step::OpenRoot))?;

    for (index, op) in plan.ops.iter().enumerate() {
        apply_op(root.as_fd(), op).map_err(|mut f| {
            f.op = index as i64;
            f
        })?;
    }

    // Enter the new root. pivot_root(".", ".") stacks the old root on top of
    // the new one; detaching it leaves only the new root.
    rustix::process::fchdir(&root).map_err(fail(Step::PivotRoot))?;
    rustix::process::pivot_root(c".", c".").map_err(fail(Step::PivotRoot))?;
    rustix::mount::unmount(c".", UnmountFlags::DETACH).map_err(fail(Step::DetachOldRoot))?;
    rustix::process::chdir(c"/").map_err(fail(Step::PivotRoot))?;
    drop(root);
    // The skeleton is complete: nothing may create files at the top level.
    sys::mount_setattr(rustix::fs::CWD, c"/", sys::MOUNT_ATTR_RDONLY, false)
        .map_err(fail_sys(Step::RemountRootReadOnly))?;

    rustix::system::sethostname(plan.hostname.as_bytes()).map_err(fail(Step::SetHostname))?;
    rustix::system::setdomainname(b"warden").map_err(fail(Step::SetHostname))?;

    let ruleset = if plan.landlock_abi > 0 {
        let rs = ll::create_ruleset(plan.landlock_abi).map_err(fail_sys(Step::Landlock))?;
        for (path, access) in &plan.landlock_rules {
            let target = ll::open_path(rustix::fs::CWD, path).map_err(fail_sys(Step::Landlock))?;
            ll::add_path_rule(rs.as_fd(), target.as_fd(), *access).map_err(fail_sys(Step::Landlock))?;
        }
        Some(rs)
    } else {
        None
    };

    // Init must not be readable by the program (they share a uid when
    // rootless): non-dumpable makes /proc/1/* root-only and blocks ptrace.
    sys::set_non_dumpable().map_err(fail_sys(Step::Signalfd))?;
    let sigchld = sys::sigchld_fd().map_err(fail_sys(Step::Signalfd))?;
    // The payload reports failures, and the seccomp listener number, here.
    let (err_r, err_w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK)
            .map_err(fail(Step::Pipe))?;

    // SAFETY: the child runs payload_main, which neither allocates, locks nor
    // returns: it leaves through execve or exit_now (fork_shared_files'
    // contract). Init is single-threaded, so no lock can be held anyway.
    let forked = unsafe { sys::fork_shared_files() };
    let pid = match forked {
        Ok(0) => payload_main(&plan.payload, ruleset.as_ref().map(|r| r.as_fd()), err_w.as_fd()),
        Ok(pid) => pid,
        Err(e) => return Err(fail_sys(Step::ForkPayload)(e)),
    };
    // We resume once the payload has exec'd (or failed): CLONE_VFORK.
    drop(err_w);
    drop(ruleset);

    let mut listener: Option<OwnedFd> = None;
    let mut buf = [0u8; RECORD_LEN];
    while let Ok(RECORD_LEN) = rustix::io::read(&err_r, &mut buf) {
        let rec = Record::decode(&buf);
        match rec.kind {
            kind::SETUP_FAILED => {
                // Reap it so no zombie is left, then report.
                let _ = sys::wait4_pid(pid);
                return Err(Fail {
                    step: Step::from_u32(rec.step).unwrap_or(Step::Exec),
                    errno: rec.errno,
                    op: -1,
                });
            }
            LISTENER => listener = sys::adopt_shared_fd(rec.a as i32),
            _ => {}
        }
    }
    drop(err_r);
    // Drop our copies of the program's stdio: the shared table gave us them,
    // and holding a pipe's write end would delay the host's end-of-file.
    for target in 0..fd_floor(plan) {
        sys::close_raw(target);
    }
    for (fd, _) in plan.payload.fds.drain(..) {
        drop(fd);
    }
    write_record(
        plan.report.as_fd(),
        Record {
            kind: kind::STARTED,
            ..Record::default()
        },
    );
    Ok(Running {
        payload: pid,
        listener,
        sigchld,
    })
}

/// A detached mount of a fresh filesystem (`tmpfs`, `proc`).
fn new_fs(fstype: &CStr, options: &[(&CStr, &CStr)], attrs: MountAttrFlags) -> rustix::io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    for (key, value) in options {
        rustix::mount::fsconfig_set_string(&fs, *key, *value)?;
    }
    rustix::mount::fsconfig_create(&fs)?;
    rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
}

fn apply_op(root: BorrowedFd<'_>, op: &MountOp) -> Result<(), Fail> {
    match op {
        MountOp::Dir { path } => match rustix::fs::mkdirat(root, path.as_c_str(), Mode::from_raw_mode(0o755))
        {
            Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
            Err(e) => Err(fail(Step::Mkdir)(e)),
        },
        MountOp::Symlink { target, path } => {
            rustix::fs::symlinkat(target.as_c_str(), root, path.as_c_str()).map_err(fail(Step::Symlink))
        }
        MountOp::BindRo { host, path, dir } => {
            make_target(root, path, *dir)?;
            let attrs = sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
            bind(root, host, path, attrs, true)
        }
        MountOp::BindDev { host, path } => {
            make_target(root, path, false)?;
            bind(
                root,
                host,
                path,
                sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC,
                false,
            )
        }
        MountOp::BindRw { host, path } => {
            make_target(root, path, true)?;
            bind(
                root,
                host,
                path,
                sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV,
                true,
            )
        }
        MountOp::Tmpfs { path, size, mode } => {
            let attrs = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV;
            let options = [(c"size", size.as_c_str()), (c"mode", mode.as_c_str())];
            let mnt = new_fs(c"tmpfs", &options, attrs).map_err(fail(Step::MountTmpfs))?;
            attach(mnt, root, path, Step::MountTmpfs)
        }
        MountOp::Proc { path } => {
            let attrs = MountAttrFlags::MOUNT_ATTR_NOSUID
                | MountAttrFlags::MOUNT_ATTR_NODEV
                | MountAttrFlags::MOUNT_ATTR_NOEXEC;
            let mnt = new_fs(c"proc", &[], attrs).map_err(fail(Step::MountProc))?;
            attach(mnt, root, path, Step::MountProc)
        }
        MountOp::File { path, contents } => write_file_at(root, path, contents, Step::WriteFile),
    }
}

fn make_target(root: BorrowedFd<'_>, path: &CStr, dir: bool) -> Result<(), Fail> {
    if dir {
        match rustix::fs::mkdirat(root, path, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
            Err(e) => Err(fail(Step::Mkdir)(e)),
        }
    } else {
        rustix::fs::openat(
            root,
            path,
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map(drop)
        .map_err(fail(Step::Mkdir))
    }
}

/// Clone the host tree at `host`, set its attributes, and attach it.
fn bind(root: BorrowedFd<'_>, host: &CStr, path: &CStr, attrs: u64, recursive: bool) -> Result<(), Fail> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let tree = rustix::mount::open_tree(rustix::fs::CWD, host, flags).map_err(fail(Step::BindMount))?;
    sys::mount_setattr(tree.as_fd(), c"", attrs, recursive).map_err(fail_sys(Step::BindMount))?;
    attach(tree, root, path, Step::BindMount)
}

fn attach(mnt: OwnedFd, root: BorrowedFd<'_>, path: &CStr, step: Step) -> Result<(), Fail> {
    rustix::mount::move_mount(&mnt, c"", root, path, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .map_err(fail(step))
}

/// The program's process: drop everything, then exec. Never returns.
fn payload_main(plan: &PayloadPlan, ruleset: Option<BorrowedFd<'_>>, err: BorrowedFd<'_>) -> ! {
    let result = payload_setup(plan, ruleset, err);
    let f = match result {
        Ok(()) => {
            // Everything is in place; exec. Only returns on failure.
            let errno = sys::execve(&plan.program, &plan.argv_ptrs, &plan.envp_ptrs);
            Fail {
                step: Step::Exec,
                errno: errno.into_raw(),
                op: -1,
            }
        }
        Err(f) => f,
    };
    report_failure(err, f);
    sys::exit_now(127)
}

fn payload_setup(
    plan: &PayloadPlan,
    ruleset: Option<BorrowedFd<'_>>,
    err: BorrowedFd<'_>,
) -> Result<(), Fail> {
    use rustix::process::Signal;
    rustix::process::setsid().map_err(fail(Step::NewSession))?;
    sys::reset_signals().map_err(fail_sys(Step::ResetSignals))?;
    // If init dies, so does the program (and init's death empties the pid
    // namespace anyway).
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).map_err(fail(Step::DeathSignal))?;

    // Stdio and extra descriptors at their numbers; everything else is
    // closed at exec. The table is shared with init until then: marking
    // close-on-exec does not affect init, which never execs.
    let mut top = 2;
    for (fd, target) in &plan.fds {
        sys::dup_to(fd.as_fd(), *target).map_err(fail_sys(Step::Descriptors))?;
        top = top.max(*target);
    }
    sys::cloexec_from(top as u32 + 1).map_err(fail_sys(Step::Descriptors))?;

    rustix::process::chdir(plan.cwd.as_c_str()).map_err(fail(Step::Chdir))?;
    for rl in &plan.rlimits {
        rustix::process::setrlimit(
            rl.resource,
            rustix::process::Rlimit {
                current: Some(rl.soft),
                maximum: Some(rl.hard),
            },
        )
        .map_err(fail(Step::Rlimit))?;
    }

    // Capabilities: bounding set first (needs CAP_SETPCAP, which the uid
    // switch below takes away), then ambient, then ids, then the rest.
    sys::drop_bounding_set(plan.cap_last).map_err(fail_sys(Step::DropBoundingSet))?;
    rustix::thread::clear_ambient_capability_set().map_err(fail(Step::DropAmbient))?;
    if plan.clear_groups {
        sys::clear_groups().map_err(fail_sys(Step::SetGroups))?;
    }
    let gid = rustix::process::Gid::from_raw(plan.gid);
    let uid = rustix::process::Uid::from_raw(plan.uid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(fail(Step::SetGid))?;
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(fail(Step::SetUid))?;
    sys::clear_capabilities().map_err(fail_sys(Step::DropCapabilities))?;

    rustix::thread::set_no_new_privs(true).map_err(fail(Step::NoNewPrivs))?;
    if let Some(rs) = ruleset {
        ll::restrict_self(rs).map_err(fail_sys(Step::LandlockRestrict))?;
    }
    // Seccomp last: from here on only `write` and `execve` are needed, and
    // every profile allows both.
    for filter in &plan.seccomp {
        if let Some(listener) =
            sys::seccomp_install(&filter.program, filter.listener).map_err(fail_sys(Step::Seccomp))?
        {
            use std::os::fd::IntoRawFd;
            // Init adopts it from the shared table; we must not close it.
            let raw = listener.into_raw_fd();
            write_record(
                err,
                Record {
                    kind: LISTENER,
                    a: i64::from(raw),
                    ..Record::default()
                },
            );
        }
    }
    Ok(())
}

/// Init's loop: reap, watch for violations, and end the box when the program
/// exits or the host goes away. Returns init's exit code.
fn supervise(plan: &ChildPlan, running: Running) -> i32 {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut listener = running.listener;
    let mut violated = false;
    loop {
        let mut fds = [
            PollFd::new(&plan.lifeline, PollFlags::IN),
            PollFd::new(&running.sigchld, PollFlags::IN),
            match &listener {
                Some(l) => PollFd::new(l, PollFlags::IN),
                // A duplicate entry that never fires when ignored below.
                None => PollFd::new(&running.sigchld, PollFlags::empty()),
            },
        ];
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => {
                sys::kill_all_in_namespace();
                return 126;
            }
        }
        let lifeline = fds[0].revents();
        let child = fds[1].revents();
        let notif = fds[2].revents();

        if !lifeline.is_empty() {
            // The host is gone (or closed the lifeline): nothing may survive.
            sys::kill_all_in_namespace();
            write_record(
                plan.report.as_fd(),
                Record {
                    kind: kind::ORPHANED,
                    ..Record::default()
                },
            );
            return 125;
        }
        if listener.is_some() && !notif.is_empty() {
            if notif.contains(PollFlags::IN) {
                if let Some(l) = &listener
                    && let Ok((nr, arch)) = sys::seccomp_notif_recv(l.as_fd())
                {
                    if !violated {
                        violated = true;
                        write_record(
                            plan.report.as_fd(),
                            Record {
                                kind: kind::VIOLATION,
                                a: nr,
                                b: i64::from(arch),
                                ..Record::default()
                            },
                        );
                    }
                    // The offender is blocked in the kernel; kill the box.
                    sys::kill_all_in_namespace();
                }
            } else {
                // HUP: no process uses the filter any more.
                listener = None;
            }
        }
        if !child.is_empty() {
            let mut buf = [0u8; 128];
            while rustix::io::read(&running.sigchld, &mut buf).is_ok() {}
            while let Some((pid, status)) = sys::reap_any() {
                if pid == running.payload {
                    // The program is done; whatever it left behind goes too.
                    sys::kill_all_in_namespace();
                    write_record(
                        plan.report.as_fd(),
                        Record {
                            kind: kind::EXITED,
                            a: i64::from(status),
                            ..Record::default()
                        },
                    );
                    return 0;
                }
            }
        }
    }
}
