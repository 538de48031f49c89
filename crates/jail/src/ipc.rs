//! Emptying a live box's System V IPC namespace between two calls.
//!
//! A warm box keeps its IPC namespace for its whole life, so shared memory,
//! semaphores and message queues made by one call would survive into the
//! next (and shared memory would keep its pages charged to the box). The
//! host removes them after each call: a janitor thread joins the box's IPC
//! namespace through the box init's pidfd, removes every object, and returns
//! to the host's namespace. POSIX message queues and `/dev/shm` need nothing:
//! the seccomp profiles refuse `mq_open` and a box's `/dev` has no `shm`.
//!
//! Joining another IPC namespace needs `CAP_SYS_ADMIN` over it, so this works
//! as root only; rootless boxes are retired after each call instead.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use crate::error::JailError;
use crate::sys::{self, SysvKind};

type Job = (OwnedFd, mpsc::SyncSender<Result<usize, JailError>>);

fn janitor() -> Result<mpsc::Sender<Job>, JailError> {
    static JANITOR: OnceLock<Mutex<Option<mpsc::Sender<Job>>>> = OnceLock::new();
    let cell = JANITOR.get_or_init(|| Mutex::new(None));
    let mut guard = cell.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = guard.as_ref() {
        return Ok(tx.clone());
    }
    let home: OwnedFd = File::open("/proc/thread-self/ns/ipc")
        .map_err(|e| JailError::Launch {
            step: "opening the host's IPC namespace",
            source: e,
        })?
        .into();
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("warden-ipc".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for (pidfd, reply) in rx {
                let result = sys::setns(pidfd.as_fd(), libc::CLONE_NEWIPC)
                    .map_err(|e| JailError::Launch {
                        step: "joining a box's IPC namespace",
                        source: std::io::Error::from_raw_os_error(e.into_raw()),
                    })
                    .map(|()| {
                        [SysvKind::Shm, SysvKind::Sem, SysvKind::Msg]
                            .into_iter()
                            .map(sys::remove_sysv)
                            .sum()
                    });
                // Back home, so this thread pins no box's namespace.
                let _ = sys::setns(home.as_fd(), libc::CLONE_NEWIPC);
                let _ = reply.send(result);
            }
        })
        .map_err(|e| JailError::Launch {
            step: "starting the IPC janitor thread",
            source: e,
        })?;
    *guard = Some(tx.clone());
    Ok(tx)
}

/// Remove every System V IPC object in the IPC namespace of the process
/// behind `pidfd` (a box's init). Returns how many were removed.
pub(crate) fn clear(pidfd: OwnedFd) -> Result<usize, JailError> {
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let gone = || JailError::Launch {
        step: "IPC janitor thread",
        source: std::io::Error::other("gone"),
    };
    janitor()?.send((pidfd, reply_tx)).map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())?
}
