//! Raw kernel calls that no safe library wraps: the only `unsafe` in Warden.
//!
//! Each function is a thin, typed wrapper over one syscall. They are called
//! from the forked child (see [`crate::child`]), so none of them may allocate,
//! take a lock, or touch global state: they use the `syscalls` crate, which
//! returns the error number instead of going through libc's `errno`, or libc
//! functions that are async-signal-safe.
//!
//! Must never: hold policy (what to mount, which syscalls to allow); that is
//! decided by the safe modules and passed in as data.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use syscalls::{Errno, Sysno, syscall};

pub(crate) mod landlock;

/// Result of a raw call: the kernel's error number on failure.
pub(crate) type SysResult<T> = Result<T, Errno>;

/// `struct clone_args` from `<linux/sched.h>` (size version 2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Which side of a fork the caller is on.
pub(crate) enum Forked {
    /// The new process.
    Child,
    /// The caller, with the child's pid and a pidfd for it.
    Parent {
        /// Child pid in the caller's pid namespace.
        pid: i32,
        /// Pidfd referring to the child.
        pidfd: OwnedFd,
    },
}

/// `clone3` without a new stack (fork semantics: the child runs on a copy of
/// the caller's memory), returning a pidfd for the child.
///
/// # Safety
///
/// The caller may be multithreaded. In the child only the calling thread
/// exists and other threads may have held locks (the allocator's among them)
/// at the moment of the fork: the child must not allocate, lock, or unwind,
/// and must leave through [`exit_now`] or a successful `execve`.
pub(crate) unsafe fn clone3_fork(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> SysResult<Forked> {
    let mut pidfd: i32 = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &raw mut pidfd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= 0x2_0000_0000; // CLONE_INTO_CGROUP
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: `args` is a valid, fully initialised clone_args that lives until
    // the call returns; stack and stack_size are 0, so the child continues on
    // its copy of this stack exactly like fork(2). The caller upholds the
    // post-fork restrictions documented above.
    let ret = unsafe { syscall!(Sysno::clone3, &raw mut args, size_of::<CloneArgs>()) }?;
    if ret == 0 {
        return Ok(Forked::Child);
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a new descriptor in `pidfd`
    // that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Forked::Parent {
        pid: ret as i32,
        pidfd,
    })
}

/// Start a process that shares the caller's memory (`CLONE_VM`) on `stack`,
/// suspending the caller until it execs or exits (`CLONE_VFORK`): the
/// `posix_spawn` technique, which copies no page tables. `token` goes in
/// `clone`'s `parent_tid` argument, which the kernel ignores without
/// `CLONE_PARENT_SETTID` but a seccomp filter can check. Returns the pid.
///
/// # Safety
///
/// `entry` runs in the new process on `stack`, sharing the caller's memory
/// while the caller is suspended: it must not allocate, lock, unwind or
/// return, and must leave through `execve` or [`exit_now`]. The caller must
/// be single-threaded.
pub(crate) unsafe fn clone_vm_vfork(
    stack: &mut [u8],
    token: u64,
    entry: &dyn Fn() -> std::convert::Infallible,
) -> SysResult<i32> {
    #[allow(unreachable_code)] // `entry` never returns; the match says so
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `&&dyn Fn` passed below; the caller is
        // suspended (CLONE_VFORK) for as long as this process uses it.
        let entry = unsafe { &*(arg as *const &dyn Fn() -> std::convert::Infallible) };
        match entry() {}
    }
    let len = stack.len();
    if len < 16 * 1024 {
        return Err(Errno::EINVAL);
    }
    // Stacks grow down on every architecture Warden supports; align the top.
    let top = (stack.as_mut_ptr() as usize + len) & !0xf;
    let arg = &raw const entry as *mut libc::c_void;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    // SAFETY: `top` is the aligned end of a live, exclusively borrowed
    // buffer; `trampoline` and `arg` are valid for the child's lifetime (see
    // above). parent_tid is never written without CLONE_PARENT_SETTID.
    let pid = unsafe {
        libc::clone(
            trampoline,
            top as *mut libc::c_void,
            flags,
            arg,
            token as usize as *mut libc::pid_t,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::pid_t>(),
        )
    };
    if pid < 0 {
        return Err(Errno::new(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    Ok(pid)
}

/// Leave the process at once, without running atexit handlers or flushing
/// stdio buffers copied from the host.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// `execve(2)`. Only returns on failure.
///
/// `argv` and `envp` must be null-terminated arrays of pointers to
/// NUL-terminated strings that outlive the call.
pub(crate) fn execve(program: &CStr, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> Errno {
    if argv.last().is_none_or(|p| !p.is_null()) || envp.last().is_none_or(|p| !p.is_null()) {
        return Errno::EINVAL;
    }
    // SAFETY: both arrays are null-terminated (checked above) and point to
    // CStrings owned by the launch plan, which outlives this call.
    unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Errno::new(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

/// `struct sock_fprog` for `seccomp(2)`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const crate::seccomp::SockFilter,
}

/// Install one seccomp filter on the calling thread. With `listener`, returns
/// the user-notification descriptor (close-on-exec).
///
/// The caller must already have set `no_new_privs`.
pub(crate) fn seccomp_install(
    program: &[crate::seccomp::SockFilter],
    listener: bool,
) -> SysResult<Option<OwnedFd>> {
    let len = u16::try_from(program.len()).map_err(|_| Errno::EINVAL)?;
    let prog = SockFprog {
        len,
        filter: program.as_ptr(),
    };
    let flags = if listener {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        0
    };
    // SAFETY: `prog` points at `len` valid instructions that the kernel copies
    // before returning.
    let ret = unsafe {
        syscall!(
            Sysno::seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &raw const prog
        )
    }?;
    if listener {
        // SAFETY: with NEW_LISTENER the return value is a fresh descriptor.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as RawFd) }))
    } else {
        Ok(None)
    }
}

/// `struct seccomp_data`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct SeccompData {
    nr: i32,
    arch: u32,
    instruction_pointer: u64,
    args: [u64; 6],
}

/// `struct seccomp_notif`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct SeccompNotif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

/// Receive one pending seccomp notification; returns (syscall nr, audit arch).
pub(crate) fn seccomp_notif_recv(listener: BorrowedFd<'_>) -> SysResult<(i64, u32)> {
    // The kernel insists on a zeroed buffer.
    let mut notif = SeccompNotif::default();
    // SAFETY: SECCOMP_IOCTL_NOTIF_RECV writes one `struct seccomp_notif`,
    // whose layout `SeccompNotif` reproduces, into the buffer we own.
    unsafe {
        syscall!(
            Sysno::ioctl,
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &raw mut notif
        )
    }?;
    Ok((i64::from(notif.data.nr), notif.data.arch))
}

/// `struct mount_attr` for `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Mount attribute bits.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// No set-user-id / capabilities on exec.
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// No device access.
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
/// No exec.
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// Set attributes on the mount at `dirfd`/`path` (or the mount `dirfd`
/// itself when `path` is empty), recursively when asked.
pub(crate) fn mount_setattr(
    dirfd: BorrowedFd<'_>,
    path: &CStr,
    attr_set: u64,
    recursive: bool,
) -> SysResult<()> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = 0usize;
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH as usize;
    }
    if recursive {
        flags |= libc::AT_RECURSIVE as usize;
    }
    // SAFETY: `path` is NUL-terminated and `attr` a valid mount_attr of the
    // size passed; the kernel only reads both.
    unsafe {
        syscall!(
            Sysno::mount_setattr,
            dirfd.as_raw_fd(),
            path.as_ptr(),
            flags,
            &raw const attr,
            size_of::<MountAttr>()
        )
    }?;
    Ok(())
}

/// Mark every descriptor from `first` up close-on-exec.
pub(crate) fn cloexec_from(first: u32) -> SysResult<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    unsafe { syscall!(Sysno::close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) }?;
    Ok(())
}

/// Close every descriptor in `first..=last`.
///
/// The caller must own every descriptor in the range (none may be in use as
/// an `OwnedFd` elsewhere), which holds for the freshly forked child where it
/// is used to drop everything inherited from the host.
pub(crate) fn close_range(first: u32, last: u32) -> SysResult<()> {
    // SAFETY: see the contract above: nothing in the range is referenced.
    unsafe { syscall!(Sysno::close_range, first, last, 0u32) }?;
    Ok(())
}

/// Duplicate `fd` onto `target`, clearing close-on-exec on the copy.
///
/// The descriptor previously at `target`, if any, is closed: the caller must
/// not own it through an `OwnedFd`.
pub(crate) fn dup_to(fd: BorrowedFd<'_>, target: RawFd) -> SysResult<()> {
    // SAFETY: dup3 only manipulates the descriptor table; see the contract.
    unsafe { syscall!(Sysno::dup3, fd.as_raw_fd(), target, 0) }?;
    Ok(())
}

/// Block SIGCHLD and return a non-blocking signalfd for it.
pub(crate) fn sigchld_fd() -> SysResult<OwnedFd> {
    let mut set: libc::sigset_t = empty_sigset();
    // SAFETY: `set` is a valid sigset_t we own.
    unsafe { libc::sigaddset(&raw mut set, libc::SIGCHLD) };
    // SAFETY: `set` is valid; the old mask is not requested. The caller is
    // single-threaded (the forked child), so the process mask is ours.
    unsafe {
        syscall!(
            Sysno::rt_sigprocmask,
            libc::SIG_BLOCK,
            &raw const set,
            0usize,
            size_of::<u64>()
        )
    }?;
    // SAFETY: `set` is valid and the flags are valid for signalfd4.
    let fd = unsafe {
        syscall!(
            Sysno::signalfd4,
            -1i32,
            &raw const set,
            size_of::<u64>(),
            libc::SFD_NONBLOCK | libc::SFD_CLOEXEC
        )
    }?;
    // SAFETY: signalfd4 returned a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn empty_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data for which all-zero is the empty set on
    // Linux; sigemptyset below makes that explicit.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t we own.
    unsafe { libc::sigemptyset(&raw mut set) };
    set
}

/// Give the program a clean signal state: empty mask, default dispositions
/// (the host may ignore SIGPIPE, and ignored signals survive `execve`).
pub(crate) fn reset_signals() -> SysResult<()> {
    let set = empty_sigset();
    // SAFETY: `set` is a valid empty mask; the caller is single-threaded.
    unsafe {
        syscall!(
            Sysno::rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const set,
            0usize,
            size_of::<u64>()
        )
    }?;
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is a valid disposition for every catchable signal;
        // errors (signals reserved by libc) are ignored on purpose.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    Ok(())
}

/// Kill every process this process may signal: used by the box's init, where
/// that means every other process of the box's pid namespace.
pub(crate) fn kill_all_in_namespace() {
    // SAFETY: kill(-1, SIGKILL) takes no pointers. In the box's init it
    // reaches only the box's pid namespace (the kernel never delivers -1 to
    // processes outside the caller's namespace).
    let _ = unsafe { syscall!(Sysno::kill, -1i32, libc::SIGKILL) };
}

/// Reap one exited child without blocking: `Some((pid, raw wait status))`.
pub(crate) fn reap_any() -> Option<(i32, i32)> {
    let mut status: i32 = 0;
    // SAFETY: `status` is a valid out-pointer; rusage is not requested.
    let pid = unsafe {
        syscall!(
            Sysno::wait4,
            -1i32,
            &raw mut status,
            libc::WNOHANG | libc::__WALL,
            0usize
        )
    }
    .ok()? as i32;
    (pid > 0).then_some((pid, status))
}

/// Reap the child behind `pidfd` if it has exited, without blocking: true
/// when it was reaped now or before. Through the pidfd (`P_PIDFD`), never a
/// pid, so a recycled pid can never be reaped by mistake.
pub(crate) fn reap_pidfd(pidfd: BorrowedFd<'_>) -> bool {
    const P_PIDFD: usize = 3;
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid out-pointer; rusage is not requested.
    let r = unsafe {
        syscall!(
            Sysno::waitid,
            P_PIDFD,
            pidfd.as_raw_fd(),
            &raw mut info,
            libc::WEXITED | libc::WNOHANG | libc::__WALL,
            0usize
        )
    };
    match r {
        Ok(_) => {
            // WNOHANG with nothing to reap leaves si_pid at 0.
            // SAFETY: the kernel filled `info`; si_pid is valid for SIGCHLD
            // information, and zero (as initialized) otherwise.
            let pid = unsafe { info.si_pid() };
            pid != 0
        }
        Err(Errno::EINTR) => false,
        // ECHILD: reaped already (by the one-shot supervisor).
        Err(_) => true,
    }
}

/// Resource usage of a reaped child, as `wait4` reports it.
pub(crate) struct Rusage {
    /// User + system CPU time in microseconds.
    pub cpu_us: u64,
    /// Largest resident set, bytes.
    pub max_rss_bytes: u64,
    /// Blocks read (512 bytes each).
    pub in_blocks: u64,
    /// Blocks written.
    pub out_blocks: u64,
}

/// Wait for the given child (blocking) and return its raw status and usage.
pub(crate) fn wait4_pid(pid: i32) -> SysResult<(i32, Rusage)> {
    let mut status: i32 = 0;
    // SAFETY: rusage is plain data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both out-pointers are valid for the duration of the call.
        match unsafe { syscall!(Sysno::wait4, pid, &raw mut status, libc::__WALL, &raw mut ru) } {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    let tv = |t: libc::timeval| (t.tv_sec as u64) * 1_000_000 + t.tv_usec as u64;
    Ok((
        status,
        Rusage {
            cpu_us: tv(ru.ru_utime) + tv(ru.ru_stime),
            max_rss_bytes: (ru.ru_maxrss as u64) * 1024,
            in_blocks: ru.ru_inblock as u64,
            out_blocks: ru.ru_oublock as u64,
        },
    ))
}

/// Send a signal through a pidfd (race-free: never hits a recycled pid).
pub(crate) fn pidfd_signal(pidfd: BorrowedFd<'_>, signal: i32) -> SysResult<()> {
    // SAFETY: no pointers are passed (info is null, flags 0).
    unsafe { syscall!(Sysno::pidfd_send_signal, pidfd.as_raw_fd(), signal, 0usize, 0u32) }?;
    Ok(())
}

/// Drop capabilities `0..=cap_last` from the bounding set, so no exec can
/// ever regain them. `cap_last` is the kernel's highest capability number.
pub(crate) fn drop_bounding_set(cap_last: u32) -> SysResult<()> {
    for cap in 0..=cap_last {
        // SAFETY: PR_CAPBSET_DROP takes an integer capability number.
        match unsafe { syscall!(Sysno::prctl, libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } {
            Ok(_) | Err(Errno::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Clear the effective, permitted and inheritable capability sets.
pub(crate) fn clear_capabilities() -> SysResult<()> {
    let mut header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: header and the two-element data array match the v3 ABI.
    unsafe { syscall!(Sysno::capset, &raw mut header, data.as_ptr()) }?;
    Ok(())
}

/// `unshare(2)`.
pub(crate) fn unshare(flags: i32) -> SysResult<()> {
    // SAFETY: unshare takes only flags. Called in the single-threaded child.
    unsafe { syscall!(Sysno::unshare, flags) }?;
    Ok(())
}

/// Run `f` when the process exits through `exit` (returning from `main`,
/// `std::process::exit`), even when nothing was dropped. Not on a signal.
pub(crate) fn at_exit(f: extern "C" fn()) -> SysResult<()> {
    // SAFETY: `atexit` stores a function pointer; `f` is a plain `extern "C"`
    // function with no arguments, which is what it expects, and lives for
    // the whole program.
    match unsafe { libc::atexit(f) } {
        0 => Ok(()),
        _ => Err(Errno::ENOMEM),
    }
}

/// Landlock's version query; 0 when the kernel has no landlock.
pub(crate) fn landlock_abi() -> u32 {
    landlock::abi_version()
}

/// Make the process non-dumpable so that, in rootless mode, the program
/// (same uid) cannot read the init's memory or environment through `/proc`.
pub(crate) fn set_non_dumpable() -> SysResult<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer.
    unsafe { syscall!(Sysno::prctl, libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }?;
    Ok(())
}

/// `setgroups(0, NULL)`.
pub(crate) fn clear_groups() -> SysResult<()> {
    // SAFETY: size 0 with a null list.
    unsafe { syscall!(Sysno::setgroups, 0usize, 0usize) }?;
    Ok(())
}

/// Join the namespaces `nstype` (e.g. `CLONE_NEWIPC`) of the process behind
/// `fd` (a pidfd) or the namespace `fd` refers to (an nsfs file), on the
/// calling thread only.
pub(crate) fn setns(fd: BorrowedFd<'_>, nstype: i32) -> SysResult<()> {
    // SAFETY: setns takes a descriptor and flags, no pointers.
    unsafe { syscall!(Sysno::setns, fd.as_raw_fd(), nstype) }?;
    Ok(())
}

/// The System V IPC object kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SysvKind {
    /// Shared memory segments (`shmget`).
    Shm,
    /// Semaphore sets (`semget`).
    Sem,
    /// Message queues (`msgget`).
    Msg,
}

/// `*_INFO` and `*_STAT_ANY` commands from `<linux/shm.h>`, `<linux/sem.h>`,
/// `<linux/msg.h>`. The `_ANY` forms (Linux 4.17) skip the read-permission
/// check, which the caller (root, in the namespace's owning user namespace)
/// would pass anyway.
const SHM_INFO: i32 = 14;
const SHM_STAT_ANY: i32 = 15;
const SEM_INFO: i32 = 19;
const SEM_STAT_ANY: i32 = 20;
const MSG_INFO: i32 = 12;
const MSG_STAT_ANY: i32 = 13;

/// One `shmctl`/`semctl`/`msgctl` call with an out-buffer large enough for
/// every structure these commands write (at most 120 bytes on 64-bit
/// kernels: `msqid_ds`).
fn sysv_ctl(kind: SysvKind, id: i32, cmd: i32, buf: &mut [u64; 32]) -> SysResult<usize> {
    let ptr = buf.as_mut_ptr() as usize;
    match kind {
        // SAFETY: `buf` is valid, writable and larger than any structure the
        // kernel writes for these commands; IPC_RMID ignores it.
        SysvKind::Shm => unsafe { syscall!(Sysno::shmctl, id, cmd, ptr) },
        // SAFETY: as above; semctl's fourth argument is the `semun` union,
        // whose pointer member is what the INFO/STAT commands read.
        SysvKind::Sem => unsafe { syscall!(Sysno::semctl, id, 0, cmd, ptr) },
        // SAFETY: as above.
        SysvKind::Msg => unsafe { syscall!(Sysno::msgctl, id, cmd, ptr) },
    }
}

/// Remove every System V IPC object of `kind` in the calling thread's IPC
/// namespace; returns how many were removed. Objects still attached (shared
/// memory) are only marked and go when their last user detaches.
pub(crate) fn remove_sysv(kind: SysvKind) -> usize {
    let (info, stat) = match kind {
        SysvKind::Shm => (SHM_INFO, SHM_STAT_ANY),
        SysvKind::Sem => (SEM_INFO, SEM_STAT_ANY),
        SysvKind::Msg => (MSG_INFO, MSG_STAT_ANY),
    };
    let mut buf = [0u64; 32];
    // The INFO commands return the highest index in use.
    let Ok(highest) = sysv_ctl(kind, 0, info, &mut buf) else {
        return 0;
    };
    let mut removed = 0;
    for index in 0..=highest.min(i32::MAX as usize) as i32 {
        // The STAT commands take an index and return the object's id.
        let Ok(id) = sysv_ctl(kind, index, stat, &mut buf) else {
            continue;
        };
        if sysv_ctl(kind, id as i32, libc::IPC_RMID, &mut buf).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Bring the loopback interface of the calling thread's network namespace
/// up (`SIOCSIFFLAGS` with `IFF_UP`). Needs `CAP_NET_ADMIN` over it.
pub(crate) fn set_loopback_up() -> SysResult<()> {
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .map_err(|e| Errno::new(e.raw_os_error()))?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq for SIOCGIFFLAGS, which fills its flags.
    unsafe { syscall!(Sysno::ioctl, sock.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut req) }?;
    // SAFETY: the union member written by SIOCGIFFLAGS is ifru_flags.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: `req` names lo and carries its flags, as SIOCSIFFLAGS reads it.
    unsafe { syscall!(Sysno::ioctl, sock.as_raw_fd(), libc::SIOCSIFFLAGS, &raw const req) }?;
    Ok(())
}
