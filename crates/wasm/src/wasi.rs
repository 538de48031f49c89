//! The host functions of the wasm tier: the part of WASI preview 1 a plugin
//! needs to read an event and write a result, written here so that nothing
//! else exists to reach.
//!
//! [`GRANTED`] are implemented below; [`REFUSED`] (files, directories,
//! sockets, signals) are linked to stubs that answer `ENOTCAPABLE` without
//! doing anything, so C programs built with wasi-libc (which imports some of
//! them for `fopen` and friends) load, and fail cleanly if they try. There
//! are no preopened directories, so a module cannot even name a file.
//!
//! Guest memory is read and written only through bounds-checked slices of
//! the module's own `memory`: a bad pointer is `EFAULT`, never a host fault.
//!
//! Must never: open, stat or list anything on the host; block; return more
//! than the call's stdin; let an argument index outside the guest's memory.

use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use crate::{Exit, Host, Stream};

/// The only module a plugin may import from.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// The functions a module is granted, with what each gives it.
pub const GRANTED: &[(&str, &str)] = &[
    ("fd_read", "read the event on descriptor 0"),
    (
        "fd_write",
        "write descriptors 1 (the result) and 2 (diagnostics), up to the output cap",
    ),
    ("fd_close", "close descriptors 0-2 (nothing happens)"),
    ("fd_seek", "ESPIPE for descriptors 0-2 (they are streams)"),
    (
        "fd_fdstat_get",
        "descriptors 0-2 are streams with read or write rights",
    ),
    ("fd_fdstat_set_flags", "ENOTCAPABLE"),
    ("fd_prestat_get", "EBADF: no directory is preopened"),
    ("fd_prestat_dir_name", "EBADF: no directory is preopened"),
    ("args_sizes_get", "one argument, `plugin`"),
    ("args_get", "one argument, `plugin`"),
    ("environ_sizes_get", "an empty environment"),
    ("environ_get", "an empty environment"),
    (
        "clock_time_get",
        "the real-time clock, and a monotonic clock from the call's start",
    ),
    ("clock_res_get", "the clocks' resolution (1 µs)"),
    (
        "random_get",
        "random bytes (seeded by the host, not for cryptography)",
    ),
    ("sched_yield", "returns at once"),
    ("poll_oneoff", "ENOSYS: a call cannot sleep or wait"),
    ("proc_exit", "ends the call with the code"),
    ("proc_raise", "ENOSYS"),
];

/// WASI preview 1 functions that exist as stubs answering `ENOTCAPABLE`:
/// what they would reach is not granted to plugins.
pub const REFUSED: &[(&str, &str)] = &[
    ("fd_advise", "files"),
    ("fd_allocate", "files"),
    ("fd_datasync", "files"),
    ("fd_fdstat_set_rights", "files"),
    ("fd_filestat_get", "files"),
    ("fd_filestat_set_size", "files"),
    ("fd_filestat_set_times", "files"),
    ("fd_pread", "files"),
    ("fd_pwrite", "files"),
    ("fd_readdir", "directories"),
    ("fd_renumber", "descriptors"),
    ("fd_sync", "files"),
    ("fd_tell", "files"),
    ("path_create_directory", "directories"),
    ("path_filestat_get", "files"),
    ("path_filestat_set_times", "files"),
    ("path_link", "files"),
    ("path_open", "files"),
    ("path_readlink", "files"),
    ("path_remove_directory", "directories"),
    ("path_rename", "files"),
    ("path_symlink", "files"),
    ("path_unlink_file", "files"),
    ("sock_accept", "sockets"),
    ("sock_recv", "sockets"),
    ("sock_send", "sockets"),
    ("sock_shutdown", "sockets"),
];

const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;
const ESPIPE: i32 = 70;
/// What a refused function answers.
pub const ENOTCAPABLE: i32 = 76;

/// Most buffers in one `fd_read` or `fd_write` (Linux's `IOV_MAX`).
const MAX_IOVS: u32 = 1024;

/// The one argument a module gets, NUL-terminated.
const ARGV0: &[u8] = b"plugin\0";

/// The guest's memory and the host's state of the call, borrowed apart.
fn split<'a>(caller: &'a mut Caller<'_, Host>) -> Option<(&'a mut [u8], &'a mut Host)> {
    let memory = caller.data().memory?;
    Some(memory.data_and_store_mut(caller))
}

/// `len` bytes at guest address `ptr`, if all of them are in memory.
fn range(mem_len: usize, ptr: i32, len: u32) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as usize)?;
    (end <= mem_len).then_some(start..end)
}

fn read_u32(mem: &[u8], ptr: i32) -> Option<u32> {
    let r = range(mem.len(), ptr, 4)?;
    Some(u32::from_le_bytes(mem[r].try_into().ok()?))
}

fn write_bytes(mem: &mut [u8], ptr: i32, bytes: &[u8]) -> bool {
    match range(mem.len(), ptr, bytes.len() as u32) {
        Some(r) => {
            mem[r].copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

fn errno(ok: bool) -> i32 {
    if ok { SUCCESS } else { EFAULT }
}

/// The `(buf, len)` pairs of an iovec array at `iovs`.
fn iovecs(mem: &[u8], iovs: i32, count: i32) -> Result<Vec<(i32, u32)>, i32> {
    let count = u32::try_from(count).map_err(|_| EINVAL)?;
    if count > MAX_IOVS {
        return Err(EINVAL);
    }
    (0..count)
        .map(|i| {
            let at = (iovs as u32).checked_add(i * 8).ok_or(EFAULT)? as i32;
            let buf = read_u32(mem, at).ok_or(EFAULT)?;
            let len = read_u32(mem, at.wrapping_add(4)).ok_or(EFAULT)?;
            range(mem.len(), buf as i32, len).ok_or(EFAULT)?;
            Ok((buf as i32, len))
        })
        .collect()
}

fn fd_write(mut caller: Caller<'_, Host>, fd: i32, iovs: i32, count: i32, nwritten: i32) -> i32 {
    let stream = match fd {
        1 => Stream::Stdout,
        2 => Stream::Stderr,
        _ => return EBADF,
    };
    let Some((mem, host)) = split(&mut caller) else {
        return EFAULT;
    };
    let bufs = match iovecs(mem, iovs, count) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut total: u32 = 0;
    for (buf, len) in bufs {
        let start = buf as u32 as usize;
        host.write(stream, &mem[start..start + len as usize]);
        total = total.saturating_add(len);
    }
    errno(write_bytes(mem, nwritten, &total.to_le_bytes()))
}

fn fd_read(mut caller: Caller<'_, Host>, fd: i32, iovs: i32, count: i32, nread: i32) -> i32 {
    if fd != 0 {
        return EBADF;
    }
    let Some((mem, host)) = split(&mut caller) else {
        return EFAULT;
    };
    let bufs = match iovecs(mem, iovs, count) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut total: u32 = 0;
    for (buf, len) in bufs {
        let rest = &host.stdin[host.read..];
        let n = rest.len().min(len as usize);
        let start = buf as u32 as usize;
        mem[start..start + n].copy_from_slice(&rest[..n]);
        host.read += n;
        total += n as u32;
        if n < len as usize {
            break;
        }
    }
    errno(write_bytes(mem, nread, &total.to_le_bytes()))
}

fn fd_fdstat_get(mut caller: Caller<'_, Host>, fd: i32, stat: i32) -> i32 {
    // Rights: fd_read (bit 1) on stdin, fd_write (bit 6) on stdout/stderr.
    let rights: u64 = match fd {
        0 => 1 << 1,
        1 | 2 => 1 << 6,
        _ => return EBADF,
    };
    let Some((mem, _)) = split(&mut caller) else {
        return EFAULT;
    };
    // struct fdstat { u8 filetype; u16 flags; u64 rights_base; u64 rights_inheriting }
    let mut buf = [0u8; 24];
    buf[8..16].copy_from_slice(&rights.to_le_bytes());
    errno(write_bytes(mem, stat, &buf))
}

fn two_sizes(mut caller: Caller<'_, Host>, at_count: i32, at_size: i32, count: u32, size: u32) -> i32 {
    let Some((mem, _)) = split(&mut caller) else {
        return EFAULT;
    };
    errno(write_bytes(mem, at_count, &count.to_le_bytes()) && write_bytes(mem, at_size, &size.to_le_bytes()))
}

fn args_get(mut caller: Caller<'_, Host>, argv: i32, argv_buf: i32) -> i32 {
    let Some((mem, _)) = split(&mut caller) else {
        return EFAULT;
    };
    errno(write_bytes(mem, argv, &(argv_buf as u32).to_le_bytes()) && write_bytes(mem, argv_buf, ARGV0))
}

fn clock_time_get(mut caller: Caller<'_, Host>, id: i32, _precision: i64, out: i32) -> i32 {
    let Some((mem, host)) = split(&mut caller) else {
        return EFAULT;
    };
    let nanos: u64 = match id {
        // Real time.
        0 => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        // Monotonic, process and thread CPU time: from the call's start.
        1..=3 => host.started.elapsed().as_nanos() as u64,
        _ => return EINVAL,
    };
    errno(write_bytes(mem, out, &nanos.to_le_bytes()))
}

fn clock_res_get(mut caller: Caller<'_, Host>, id: i32, out: i32) -> i32 {
    if !(0..=3).contains(&id) {
        return EINVAL;
    }
    let Some((mem, _)) = split(&mut caller) else {
        return EFAULT;
    };
    errno(write_bytes(mem, out, &1000u64.to_le_bytes()))
}

fn random_get(mut caller: Caller<'_, Host>, buf: i32, len: i32) -> i32 {
    let Some((mem, _)) = split(&mut caller) else {
        return EFAULT;
    };
    let Some(r) = range(mem.len(), buf, len as u32) else {
        return EFAULT;
    };
    // SipHash keyed by the standard library's per-process random keys, over
    // a counter: unpredictable enough for hash tables and sampling.
    let keys = std::hash::RandomState::new();
    for (i, chunk) in mem[r].chunks_mut(8).enumerate() {
        let mut h = keys.build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
    }
    SUCCESS
}

/// Define every granted function in `linker`.
pub(crate) fn define(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, "fd_write", fd_write)?;
    linker.func_wrap(MODULE, "fd_read", fd_read)?;
    linker.func_wrap(MODULE, "fd_close", |fd: i32| {
        if (0..=2).contains(&fd) { SUCCESS } else { EBADF }
    })?;
    linker.func_wrap(
        MODULE,
        "fd_seek",
        |fd: i32, _off: i64, _whence: i32, _out: i32| {
            if (0..=2).contains(&fd) { ESPIPE } else { EBADF }
        },
    )?;
    linker.func_wrap(MODULE, "fd_fdstat_get", fd_fdstat_get)?;
    linker.func_wrap(MODULE, "fd_fdstat_set_flags", |_fd: i32, _flags: i32| ENOTCAPABLE)?;
    linker.func_wrap(MODULE, "fd_prestat_get", |_fd: i32, _out: i32| EBADF)?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |_fd: i32, _path: i32, _len: i32| EBADF,
    )?;
    linker.func_wrap(
        MODULE,
        "args_sizes_get",
        |caller: Caller<'_, Host>, count: i32, size: i32| {
            two_sizes(caller, count, size, 1, ARGV0.len() as u32)
        },
    )?;
    linker.func_wrap(MODULE, "args_get", args_get)?;
    linker.func_wrap(
        MODULE,
        "environ_sizes_get",
        |caller: Caller<'_, Host>, count: i32, size: i32| two_sizes(caller, count, size, 0, 0),
    )?;
    linker.func_wrap(MODULE, "environ_get", |_environ: i32, _buf: i32| SUCCESS)?;
    linker.func_wrap(MODULE, "clock_time_get", clock_time_get)?;
    linker.func_wrap(MODULE, "clock_res_get", clock_res_get)?;
    linker.func_wrap(MODULE, "random_get", random_get)?;
    linker.func_wrap(MODULE, "sched_yield", || SUCCESS)?;
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        |_in: i32, _out: i32, _n: i32, _events: i32| ENOSYS,
    )?;
    linker.func_wrap(MODULE, "proc_exit", |code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(Exit(code)))
    })?;
    linker.func_wrap(MODULE, "proc_raise", |_sig: i32| ENOSYS)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_and_refused_are_disjoint_and_refused_has_no_duplicates() {
        for (name, _) in REFUSED {
            assert!(!GRANTED.iter().any(|(g, _)| g == name), "{name} is both");
        }
        let mut names: Vec<_> = GRANTED.iter().chain(REFUSED).map(|(n, _)| *n).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn ranges_never_leave_memory() {
        assert_eq!(range(100, 96, 4), Some(96..100));
        assert_eq!(range(100, 97, 4), None);
        assert_eq!(range(100, -1, 1), None, "a negative pointer is a huge address");
        assert_eq!(
            range(usize::MAX, -1, u32::MAX),
            Some(u32::MAX as usize..(u32::MAX as usize) * 2)
        );
        assert_eq!(read_u32(&[1, 0, 0, 0, 9], 0), Some(1));
        assert_eq!(read_u32(&[1, 0, 0], 0), None);
    }
}
