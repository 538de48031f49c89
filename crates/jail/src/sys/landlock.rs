//! Landlock through its three syscalls.
//!
//! The `landlock` crate is the friendlier API, but it allocates while
//! building a ruleset, and rulesets must be built in the forked child (the
//! paths exist only in the box's new root). So the UAPI structs are
//! reproduced here and called directly.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use syscalls::{Errno, Sysno, syscall};

use super::SysResult;

/// Execute a file.
pub(crate) const EXECUTE: u64 = 1 << 0;
/// Open a file for writing.
pub(crate) const WRITE_FILE: u64 = 1 << 1;
/// Open a file for reading.
pub(crate) const READ_FILE: u64 = 1 << 2;
/// List a directory.
pub(crate) const READ_DIR: u64 = 1 << 3;
/// Remove a directory.
pub(crate) const REMOVE_DIR: u64 = 1 << 4;
/// Unlink a file.
pub(crate) const REMOVE_FILE: u64 = 1 << 5;
/// Create a character device.
pub(crate) const MAKE_CHAR: u64 = 1 << 6;
/// Create a directory.
pub(crate) const MAKE_DIR: u64 = 1 << 7;
/// Create a regular file.
pub(crate) const MAKE_REG: u64 = 1 << 8;
/// Create a unix socket.
pub(crate) const MAKE_SOCK: u64 = 1 << 9;
/// Create a FIFO.
pub(crate) const MAKE_FIFO: u64 = 1 << 10;
/// Create a block device.
pub(crate) const MAKE_BLOCK: u64 = 1 << 11;
/// Create a symlink.
pub(crate) const MAKE_SYM: u64 = 1 << 12;
/// Link or rename across directories (ABI 2).
pub(crate) const REFER: u64 = 1 << 13;
/// Truncate a file (ABI 3).
pub(crate) const TRUNCATE: u64 = 1 << 14;
/// ioctl on device files (ABI 5).
pub(crate) const IOCTL_DEV: u64 = 1 << 15;

/// Rights that apply to a regular file (the rest only make sense on
/// directories, and the kernel refuses them on files).
pub(crate) const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

/// TCP bind (ABI 4).
const NET_BIND_TCP: u64 = 1 << 0;
/// TCP connect (ABI 4).
const NET_CONNECT_TCP: u64 = 1 << 1;
/// Abstract unix sockets outside the domain (ABI 6).
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
/// Signals to processes outside the domain (ABI 6).
const SCOPE_SIGNAL: u64 = 1 << 1;

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: u32 = 1;

/// Filesystem rights a ruleset of this ABI can handle.
pub(crate) fn handled_fs(abi: u32) -> u64 {
    let mut rights = EXECUTE
        | WRITE_FILE
        | READ_FILE
        | READ_DIR
        | REMOVE_DIR
        | REMOVE_FILE
        | MAKE_CHAR
        | MAKE_DIR
        | MAKE_REG
        | MAKE_SOCK
        | MAKE_FIFO
        | MAKE_BLOCK
        | MAKE_SYM;
    if abi >= 2 {
        rights |= REFER;
    }
    if abi >= 3 {
        rights |= TRUNCATE;
    }
    if abi >= 5 {
        rights |= IOCTL_DEV;
    }
    rights
}

/// `struct landlock_ruleset_attr`.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr` (packed in the UAPI).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// `struct landlock_net_port_attr`.
#[repr(C, packed)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

/// `LANDLOCK_RULE_NET_PORT`.
const RULE_NET_PORT: u32 = 2;

/// Allow TCP `connect` to `port` (any address): the one door of a box that
/// is granted egress, its proxy on loopback. ABI 4+.
pub(crate) fn add_connect_port_rule(ruleset: BorrowedFd<'_>, port: u16) -> SysResult<()> {
    let attr = NetPortAttr {
        allowed_access: NET_CONNECT_TCP,
        port: u64::from(port),
    };
    // SAFETY: `attr` is a valid net-port attribute read by the kernel.
    unsafe {
        syscall!(
            Sysno::landlock_add_rule,
            ruleset.as_raw_fd(),
            RULE_NET_PORT,
            &raw const attr,
            0u32
        )
    }?;
    Ok(())
}

/// The kernel's landlock ABI version, 0 when landlock is absent or disabled.
pub(crate) fn abi_version() -> u32 {
    // SAFETY: a null attr with size 0 and the VERSION flag only queries.
    match unsafe {
        syscall!(
            Sysno::landlock_create_ruleset,
            0usize,
            0usize,
            CREATE_RULESET_VERSION
        )
    } {
        Ok(v) => v as u32,
        Err(_) => 0,
    }
}

/// Create a ruleset that handles every filesystem right of `abi`, denies all
/// TCP bind/connect (ABI 4+), and scopes abstract unix sockets and signals to
/// the domain (ABI 6+).
pub(crate) fn create_ruleset(abi: u32) -> SysResult<OwnedFd> {
    let attr = RulesetAttr {
        handled_access_fs: handled_fs(abi),
        handled_access_net: if abi >= 4 {
            NET_BIND_TCP | NET_CONNECT_TCP
        } else {
            0
        },
        scoped: if abi >= 6 {
            SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        } else {
            0
        },
    };
    // Older kernels reject a struct larger than they know.
    let size = match abi {
        0..=3 => 8,
        4..=5 => 16,
        _ => size_of::<RulesetAttr>(),
    };
    // SAFETY: `attr` is valid for `size` bytes (a prefix of the struct).
    let fd = unsafe { syscall!(Sysno::landlock_create_ruleset, &raw const attr, size, 0u32) }?;
    // SAFETY: the syscall returned a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Allow `access` beneath the file or directory open at `parent`.
pub(crate) fn add_path_rule(ruleset: BorrowedFd<'_>, parent: BorrowedFd<'_>, access: u64) -> SysResult<()> {
    if access == 0 {
        return Err(Errno::EINVAL);
    }
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: parent.as_raw_fd(),
    };
    // SAFETY: `attr` is a valid path-beneath attribute read by the kernel.
    unsafe {
        syscall!(
            Sysno::landlock_add_rule,
            ruleset.as_raw_fd(),
            RULE_PATH_BENEATH,
            &raw const attr,
            0u32
        )
    }?;
    Ok(())
}

/// Enforce the ruleset on the calling thread (and everything it execs).
/// `no_new_privs` must be set first.
pub(crate) fn restrict_self(ruleset: BorrowedFd<'_>) -> SysResult<()> {
    // SAFETY: takes a descriptor and flags only.
    unsafe { syscall!(Sysno::landlock_restrict_self, ruleset.as_raw_fd(), 0u32) }?;
    Ok(())
}

/// Open `path` (relative to `dir`) as an `O_PATH` descriptor for a rule.
pub(crate) fn open_path(dir: BorrowedFd<'_>, path: &CStr) -> SysResult<OwnedFd> {
    rustix::fs::openat(
        dir,
        path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Errno::new(e.raw_os_error()))
}
