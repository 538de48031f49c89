//! What runs after the fork: the box's init (pid 1 of the new pid namespace)
//! and the payload it starts.
//!
//! The host may be multithreaded, so after the fork this code must not
//! allocate, lock, or panic: every input was prepared by the host in a
//! [`ChildPlan`], and every failure is reported as a fixed-size
//! [`Report::SetupFailed`] naming the [`Step`] and the errno.
//!
//! Init builds the box (cgroup, namespaces, mounts, pivot_root, hostname),
//! then confines *itself* exactly as the program will be: rlimits, empty
//! capability sets, the box uid, `no_new_privs`, landlock, seccomp. It holds
//! the seccomp listener directly, and the program inherits every layer by
//! `fork` instead of setting each one up again. Init then starts the program
//! (`CLONE_VM | CLONE_VFORK`, on a stack the host prepared: no page tables are
//! copied) and stays as a small supervisor: it reaps orphans, turns seccomp
//! notifications into violation reports, and when the program exits (or the
//! host goes away) kills whatever is left. When init exits, the kernel kills
//! every process left in the pid namespace, so nothing of the box can
//! outlive the run.
//!
//! The program's own process only takes a new session, resets signals,
//! places its descriptors, changes directory and execs.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags,
    UnmountFlags,
};
use syscalls::Errno;

use crate::mounts::MountOp;
use crate::report::{Report, Step};
use crate::seccomp::SockFilter;
use crate::sys::{self, landlock as ll};

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
    /// Landlock ABI (0: none).
    pub landlock_abi: u32,
    /// Landlock rules, paths relative to the new root.
    pub landlock_rules: Vec<(CString, u64)>,
    /// The one TCP port the box may connect to (its egress proxy), if any.
    pub landlock_connect_port: Option<u16>,
    /// Resource limits for init and the program.
    pub rlimits: Vec<Rlimit>,
    /// Uid and gid of the box.
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
    /// Call `setgroups([])` (not allowed in a rootless user namespace).
    pub clear_groups: bool,
    /// Highest capability number of the kernel.
    pub cap_last: u32,
    /// The seccomp program, tokens already set.
    pub seccomp: Vec<SockFilter>,
    /// Install it with a listener (kill verdicts notify init).
    pub seccomp_listener: bool,
    /// Passed in `clone`'s ignored `parent_tid` when starting the program.
    pub spawn_token: u64,
    /// Stack for the program's process until it execs.
    pub stack: Vec<u8>,
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

/// What the program's process needs before exec.
pub(crate) struct PayloadPlan {
    /// Descriptors to place at fixed numbers (stdio and extras).
    pub fds: Vec<(OwnedFd, i32)>,
    pub cwd: CString,
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
    /// Written by the program's process when it fails before exec; it
    /// shares init's memory (`CLONE_VM`), and init reads it once it resumes.
    pub failure: std::cell::Cell<Option<(Step, i32)>>,
}

/// A failed step, with the mount op index when it applies.
#[derive(Debug, Clone, Copy)]
struct Fail {
    step: Step,
    errno: i32,
    op: Option<u32>,
}

fn fail(step: Step) -> impl Fn(rustix::io::Errno) -> Fail {
    move |e| Fail {
        step,
        errno: e.raw_os_error(),
        op: None,
    }
}

fn fail_sys(step: Step) -> impl Fn(Errno) -> Fail {
    move |e| Fail {
        step,
        errno: e.into_raw(),
        op: None,
    }
}

fn write_record(fd: BorrowedFd<'_>, rec: Report) {
    let buf = rec.encode();
    // A short or failed write means the reader is gone; nothing to do.
    let _ = rustix::io::write(fd, &buf);
}

fn report_failure(fd: BorrowedFd<'_>, f: Fail) {
    write_record(
        fd,
        Report::SetupFailed {
            step: f.step,
            errno: f.errno,
            op: f.op,
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
            op: None,
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
                op: None,
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

    // We were born in the box cgroup (forked by a thread living there, or
    // with CLONE_INTO_CGROUP): never migrated, which would cost an RCU grace
    // period. Hide the host's cgroup tree behind a cgroup namespace.
    sys::unshare(libc::CLONE_NEWCGROUP).map_err(fail_sys(Step::UnshareCgroup))?;
    if let Some(netns) = &plan.netns {
        rustix::thread::move_into_link_name_space(
            netns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(fail(Step::JoinNetns))?;
    }
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
    .map_err(fail(Step::AttachRoot))?;
    drop(root_mnt);
    let root = rustix::fs::open(
        plan.root_dir.as_c_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail(Step::OpenRoot))?;

    for (index, op) in plan.ops.iter().enumerate() {
        apply_op(root.as_fd(), op).map_err(|mut f| {
            f.op = u32::try_from(index).ok();
            f
        })?;
    }

    // Enter the new root. pivot_root(".", ".") stacks the old root on top of
    // the new one; detaching it leaves only the new root.
    rustix::process::fchdir(&root).map_err(fail(Step::EnterNewRoot))?;
    rustix::process::pivot_root(c".", c".").map_err(fail(Step::PivotRoot))?;
    rustix::mount::unmount(c".", UnmountFlags::DETACH).map_err(fail(Step::DetachOldRoot))?;
    rustix::process::chdir(c"/").map_err(fail(Step::EnterNewRoot))?;
    drop(root);
    // The skeleton is complete: nothing may create files at the top level.
    sys::mount_setattr(rustix::fs::CWD, c"/", sys::MOUNT_ATTR_RDONLY, false)
        .map_err(fail_sys(Step::RemountRootReadOnly))?;

    rustix::system::sethostname(plan.hostname.as_bytes()).map_err(fail(Step::SetHostname))?;
    rustix::system::setdomainname(b"warden").map_err(fail(Step::SetDomainname))?;

    let ruleset = if plan.landlock_abi > 0 {
        let rs = ll::create_ruleset(plan.landlock_abi).map_err(fail_sys(Step::Landlock))?;
        for (path, access) in &plan.landlock_rules {
            let target = ll::open_path(rustix::fs::CWD, path).map_err(fail_sys(Step::LandlockRulePath))?;
            ll::add_path_rule(rs.as_fd(), target.as_fd(), *access)
                .map_err(fail_sys(Step::LandlockAddRule))?;
        }
        // A box granted egress may connect to its proxy's port, nowhere else.
        if let Some(port) = plan.landlock_connect_port
            && plan.landlock_abi >= 4
        {
            ll::add_connect_port_rule(rs.as_fd(), port).map_err(fail_sys(Step::LandlockAddRule))?;
        }
        Some(rs)
    } else {
        None
    };
    let sigchld = sys::sigchld_fd().map_err(fail_sys(Step::Signalfd))?;

    // From here on init is confined exactly as the program will be, and the
    // program inherits all of it.
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
    // Bounding set first: dropping it needs CAP_SETPCAP, which the uid
    // switch takes away.
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
    // Non-dumpable: /proc/1/* becomes root's and ptrace needs a capability,
    // so the program (same uid now) cannot read init's memory, which holds a
    // copy of the host's.
    sys::set_non_dumpable().map_err(fail_sys(Step::SetNonDumpable))?;
    rustix::thread::set_no_new_privs(true).map_err(fail(Step::NoNewPrivs))?;
    if let Some(rs) = &ruleset {
        ll::restrict_self(rs.as_fd()).map_err(fail_sys(Step::LandlockRestrict))?;
    }
    drop(ruleset);
    // Seccomp last. Init's remaining syscalls (clone, ppoll, read, write,
    // wait4, kill, ioctl, exit) are required by every profile.
    let listener =
        sys::seccomp_install(&plan.seccomp, plan.seccomp_listener).map_err(fail_sys(Step::Seccomp))?;

    let payload = &plan.payload;
    let entry = || -> std::convert::Infallible { payload_main(payload) };
    // SAFETY: clone_vm_vfork's contract: the new process runs payload_main,
    // which does not allocate, lock or return, and leaves through execve or
    // exit_now; we are suspended until then, so it is the only user of our
    // memory, and init is single-threaded.
    let pid = unsafe { sys::clone_vm_vfork(&mut plan.stack, plan.spawn_token, &entry) }
        .map_err(fail_sys(Step::ForkPayload))?;
    // We resume once the program has exec'd, or failed before.
    if let Some((step, errno)) = plan.payload.failure.take() {
        let _ = sys::wait4_pid(pid);
        return Err(Fail {
            step,
            errno,
            op: None,
        });
    }
    // Our copies of the program's descriptors would delay the host's end of
    // file on its output.
    plan.payload.fds.clear();
    write_record(plan.report.as_fd(), Report::Started);
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
        MountOp::Dir { path } => make_target(root, path, true),
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
        .map_err(fail(Step::MountFileTarget))
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

/// The program's process: session, signals, descriptors, directory, exec.
/// Never returns. Runs in init's memory (`CLONE_VM`) until exec, so it
/// reports failure through `plan.failure` and must not allocate.
fn payload_main(plan: &PayloadPlan) -> ! {
    let f = match payload_setup(plan) {
        Ok(()) => {
            let errno = sys::execve(&plan.program, &plan.argv_ptrs, &plan.envp_ptrs);
            (Step::Exec, errno.into_raw())
        }
        Err(f) => (f.step, f.errno),
    };
    plan.failure.set(Some(f));
    sys::exit_now(127)
}

fn payload_setup(plan: &PayloadPlan) -> Result<(), Fail> {
    use rustix::process::Signal;
    rustix::process::setsid().map_err(fail(Step::NewSession))?;
    sys::reset_signals().map_err(fail_sys(Step::ResetSignals))?;
    // If init dies, so does the program (and init's death empties the pid
    // namespace anyway).
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).map_err(fail(Step::DeathSignal))?;
    // Stdio and extra descriptors at their numbers; every other descriptor
    // (init's) is closed at exec. This process has its own copy of the table.
    let mut top = 2;
    for (fd, target) in &plan.fds {
        sys::dup_to(fd.as_fd(), *target).map_err(fail_sys(Step::Descriptors))?;
        top = top.max(*target);
    }
    sys::cloexec_from(top as u32 + 1).map_err(fail_sys(Step::Descriptors))?;
    rustix::process::chdir(plan.cwd.as_c_str()).map_err(fail(Step::Chdir))?;
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
            write_record(plan.report.as_fd(), Report::Orphaned);
            return 125;
        }
        if listener.is_some() && !notif.is_empty() {
            if notif.contains(PollFlags::IN) {
                if let Some(l) = &listener
                    && let Ok((nr, arch)) = sys::seccomp_notif_recv(l.as_fd())
                {
                    if !violated {
                        violated = true;
                        write_record(plan.report.as_fd(), Report::Violation { nr, arch });
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
                    write_record(plan.report.as_fd(), Report::Exited { status });
                    return 0;
                }
            }
        }
    }
}
