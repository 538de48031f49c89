//! The report protocol: what a box's init tells the host, as fixed-size
//! records on a pipe.
//!
//! Init may not allocate (it is a fork of a multithreaded host), so a record
//! is a plain 32-byte array, well under `PIPE_BUF`: every write is atomic and
//! a reader never sees half a record. This module is the one place that
//! knows the wire format; init encodes with [`Report::encode`], the host
//! decodes with [`read_reports`].

use std::os::fd::AsFd;

/// Every step that can fail while init builds a box or starts its program.
/// Each has its own variant, so a failure names exactly what was being done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    RelocateFds = 1,
    CloseInherited,
    WriteSetgroups,
    WriteUidMap,
    WriteGidMap,
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
    AttachRoot,
    MountFileTarget,
    EnterNewRoot,
    SetDomainname,
    LandlockRulePath,
    LandlockAddRule,
    SetNonDumpable,
}

impl Step {
    const ALL: [Step; 47] = [
        Step::RelocateFds,
        Step::CloseInherited,
        Step::WriteSetgroups,
        Step::WriteUidMap,
        Step::WriteGidMap,
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
        Step::AttachRoot,
        Step::MountFileTarget,
        Step::EnterNewRoot,
        Step::SetDomainname,
        Step::LandlockRulePath,
        Step::LandlockAddRule,
        Step::SetNonDumpable,
    ];

    fn from_u32(v: u32) -> Option<Step> {
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
            Step::UnshareCgroup => "creating the cgroup namespace",
            Step::JoinNetns => "joining the pooled network namespace",
            Step::MakeMountsPrivate => "making mounts private",
            Step::MountRoot => "creating the root tmpfs",
            Step::AttachRoot => "attaching the root tmpfs at the slot's root directory",
            Step::OpenRoot => "opening the new root",
            Step::Mkdir => "creating a directory",
            Step::MountFileTarget => "creating a file to mount over",
            Step::Symlink => "creating a symlink",
            Step::BindMount => "bind-mounting",
            Step::MountTmpfs => "mounting a tmpfs",
            Step::MountProc => "mounting /proc",
            Step::WriteFile => "writing a file",
            Step::EnterNewRoot => "changing into the new root",
            Step::PivotRoot => "pivot_root",
            Step::DetachOldRoot => "detaching the old root",
            Step::RemountRootReadOnly => "remounting the root read-only",
            Step::SetHostname => "setting the hostname",
            Step::SetDomainname => "setting the domain name",
            Step::Landlock => "creating the landlock ruleset",
            Step::LandlockRulePath => "opening a path for a landlock rule",
            Step::LandlockAddRule => "adding a landlock rule",
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
            Step::SetNonDumpable => "making init non-dumpable",
            Step::NoNewPrivs => "setting no_new_privs",
            Step::LandlockRestrict => "enforcing landlock",
            Step::Seccomp => "installing the seccomp filter",
            Step::Exec => "executing the program",
        }
    }
}

/// One record from init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// Building the box or starting the program failed at `step`; `op` is the
    /// index of the mount op being applied, when one was.
    SetupFailed { step: Step, errno: i32, op: Option<u32> },
    /// The program is running (its `exec` succeeded).
    Started,
    /// The seccomp filter refused syscall `nr` of audit architecture `arch`;
    /// init is killing the box.
    Violation { nr: i64, arch: u32 },
    /// The program ended with the raw wait status `status`; init is taking
    /// the box down.
    Exited { status: i32 },
    /// The host's lifeline closed; init killed the box.
    Orphaned,
}

/// Encoded size of a record.
pub(crate) const RECORD_LEN: usize = 32;

mod tag {
    pub const SETUP_FAILED: u32 = 1;
    pub const STARTED: u32 = 2;
    pub const VIOLATION: u32 = 3;
    pub const EXITED: u32 = 4;
    pub const ORPHANED: u32 = 5;
}

impl Report {
    /// The wire form: tag, then up to four words. Allocates nothing (init
    /// calls it after the fork).
    pub(crate) fn encode(&self) -> [u8; RECORD_LEN] {
        let (tag, w1, w2, a, b): (u32, u32, i32, i64, i64) = match *self {
            Report::SetupFailed { step, errno, op } => {
                (tag::SETUP_FAILED, step as u32, errno, op.map_or(-1, i64::from), 0)
            }
            Report::Started => (tag::STARTED, 0, 0, 0, 0),
            Report::Violation { nr, arch } => (tag::VIOLATION, 0, 0, nr, i64::from(arch)),
            Report::Exited { status } => (tag::EXITED, 0, 0, i64::from(status), 0),
            Report::Orphaned => (tag::ORPHANED, 0, 0, 0, 0),
        };
        let mut out = [0u8; RECORD_LEN];
        out[0..4].copy_from_slice(&tag.to_ne_bytes());
        out[4..8].copy_from_slice(&w1.to_ne_bytes());
        out[8..12].copy_from_slice(&w2.to_ne_bytes());
        out[16..24].copy_from_slice(&a.to_ne_bytes());
        out[24..32].copy_from_slice(&b.to_ne_bytes());
        out
    }

    /// Parse one record; `None` for a tag or step this build does not know.
    pub(crate) fn decode(buf: &[u8; RECORD_LEN]) -> Option<Report> {
        let u32_at = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let i64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[i..i + 8]);
            i64::from_ne_bytes(b)
        };
        Some(match u32_at(0) {
            tag::SETUP_FAILED => Report::SetupFailed {
                step: Step::from_u32(u32_at(4))?,
                errno: u32_at(8) as i32,
                op: u32::try_from(i64_at(16)).ok(),
            },
            tag::STARTED => Report::Started,
            tag::VIOLATION => Report::Violation {
                nr: i64_at(16),
                arch: u32::try_from(i64_at(24)).ok()?,
            },
            tag::EXITED => Report::Exited {
                status: i32::try_from(i64_at(16)).ok()?,
            },
            tag::ORPHANED => Report::Orphaned,
            _ => return None,
        })
    }
}

/// Read every complete record available on the (non-blocking) report pipe.
/// Returns the records and whether the pipe reached end of file (init is
/// gone and nothing more will come).
pub(crate) fn read_reports(fd: impl AsFd) -> (Vec<Report>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; RECORD_LEN];
    loop {
        match rustix::io::read(fd.as_fd(), &mut buf) {
            Ok(RECORD_LEN) => out.extend(Report::decode(&buf)),
            Ok(0) => return (out, true),
            // A torn record cannot happen (writes are atomic); skip it.
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return (out, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_survives_the_round_trip() {
        let mut all = vec![
            Report::Started,
            Report::Orphaned,
            Report::Exited { status: 0 },
            Report::Exited { status: 0x0900 },
            Report::Exited { status: 9 },
            Report::Violation {
                nr: 101,
                arch: 0xc000_003e,
            },
            Report::Violation {
                nr: 11,
                arch: 0x4000_0003,
            },
        ];
        for step in Step::ALL {
            all.push(Report::SetupFailed {
                step,
                errno: 13,
                op: None,
            });
            all.push(Report::SetupFailed {
                step,
                errno: 2,
                op: Some(7),
            });
        }
        for r in all {
            assert_eq!(Report::decode(&r.encode()), Some(r), "{r:?}");
        }
    }

    #[test]
    fn steps_are_numbered_once_and_described() {
        for (i, s) in Step::ALL.iter().enumerate() {
            assert_eq!(*s as u32, i as u32 + 1, "{s:?} is out of order in ALL");
            assert!(!s.describe().is_empty());
        }
    }

    #[test]
    fn unknown_tags_and_steps_decode_to_nothing() {
        let mut buf = [0u8; RECORD_LEN];
        buf[0..4].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(Report::decode(&buf), None);
        buf[0..4].copy_from_slice(&tag::SETUP_FAILED.to_ne_bytes());
        buf[4..8].copy_from_slice(&999u32.to_ne_bytes());
        assert_eq!(Report::decode(&buf), None);
    }

    #[test]
    fn records_are_read_whole_from_a_pipe_until_end_of_file() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::NONBLOCK).unwrap();
        for rec in [Report::Started, Report::Exited { status: 256 }] {
            rustix::io::write(&w, &rec.encode()).unwrap();
        }
        let (got, eof) = read_reports(&r);
        assert_eq!(got, vec![Report::Started, Report::Exited { status: 256 }]);
        assert!(!eof);
        drop(w);
        assert_eq!(read_reports(&r), (vec![], true));
    }
}
