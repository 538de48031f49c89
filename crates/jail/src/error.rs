//! Errors of the jail, on the host side. Failures inside a box after it
//! started are not errors: they are a [`crate::RunOutcome`] with status
//! `internal_error` and a message naming the step.

use std::path::{Path, PathBuf};

use crate::cgroup::CgroupError;
use crate::mounts::PlanError;
use crate::seccomp::PolicyError;
use crate::workspace::BoxFileError;

/// Why the jail could not run something.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// The kernel lacks a facility Warden will not run untrusted code
    /// without.
    #[error("refusing to run untrusted code: missing {}", .0.join(", "))]
    MissingFeatures(Vec<String>),
    /// A mount in the spec is invalid.
    #[error("invalid mount")]
    Mount(#[from] PlanError),
    /// The seccomp profile is unknown or invalid.
    #[error("invalid seccomp profile")]
    Policy(#[from] PolicyError),
    /// The program cannot be found.
    #[error("program `{0}` not found in the box (searched PATH inside the box)")]
    ProgramNotFound(String),
    /// The spec is inconsistent.
    #[error("invalid box spec: {0}")]
    Spec(String),
    /// Every slot is taken.
    #[error("no free box: all {max} slots are in use (raise the pool size or retry)")]
    NoFreeBox {
        /// Pool size.
        max: u32,
    },
    /// A cgroup operation failed.
    #[error("cgroup")]
    Cgroup(#[from] CgroupError),
    /// A slot could not be cleaned for reuse.
    #[error("box {id} could not be scrubbed: {reason}")]
    Scrub {
        /// Slot id.
        id: u32,
        /// What went wrong.
        reason: String,
    },
    /// The uids asked for are held by a pool of another state directory.
    #[error(
        "box uids {}..{} overlap uids {}..{} held by the Warden pool at {}: two pools must never share uids; \
         choose another uid base (or leave it unset to have a free range chosen)",
        wanted.start, wanted.end, held.start, held.end, state_dir.display()
    )]
    UidClash {
        /// The range asked for.
        wanted: std::ops::Range<u32>,
        /// The range held.
        held: std::ops::Range<u32>,
        /// The state directory of the pool holding it.
        state_dir: PathBuf,
    },
    /// No range of free uids is left between 60000 and 65533.
    #[error("no {count} free box uids are left between 60000 and 65533 (other Warden pools hold them)")]
    NoFreeUids {
        /// Uids wanted.
        count: u32,
    },
    /// The state directory is not a private directory owned by us.
    #[error("state directory {0} is not a directory owned by the current user; refusing to use it")]
    UnsafeStateDir(PathBuf),
    /// A file operation in a box's directory was refused or failed.
    #[error(transparent)]
    BoxFile(#[from] BoxFileError),
    /// A host-side file operation failed.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Starting the box's first process failed.
    #[error("starting the box ({step})")]
    Launch {
        /// What was being done.
        step: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl JailError {
    /// Map an I/O error on `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JailError + '_ {
        move |source| JailError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
