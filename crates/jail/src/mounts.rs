//! The mount plan: the box's whole filesystem as a list of steps, computed on
//! the host before the fork and executed verbatim by the child.
//!
//! Keeping the plan as data makes it testable without root and keeps the
//! child free of decisions (and of allocation). The landlock rules are
//! derived from the same plan, so the two layers cannot drift apart.
//!
//! The new root is a small tmpfs. Every path in a step is relative to it.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::spec::MountSpec;
use crate::sys::landlock as ll;

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountOp {
    /// Create a directory.
    Dir { path: CString },
    /// Create a symlink (merged-`/usr` layouts, `/dev/fd`).
    Symlink { target: CString, path: CString },
    /// Bind a host path read-only, nosuid, nodev, recursively.
    BindRo { host: CString, path: CString, dir: bool },
    /// Bind a host device node (`/dev/null` …): writable, nosuid, noexec.
    BindDev { host: CString, path: CString },
    /// Bind a host directory read-write, nosuid, nodev (the workspace).
    BindRw { host: CString, path: CString },
    /// Mount a fresh tmpfs; `size` in bytes and octal `mode`, as the values
    /// of tmpfs's `size=` and `mode=` options.
    Tmpfs {
        path: CString,
        size: CString,
        mode: CString,
    },
    /// Mount a new procfs for the box's pid namespace.
    Proc { path: CString },
    /// Write a small file (synthetic `/etc/passwd` …).
    File { path: CString, contents: Vec<u8> },
}

impl MountOp {
    /// The box path this step creates, for error messages.
    pub(crate) fn path(&self) -> &CString {
        match self {
            MountOp::Dir { path }
            | MountOp::Symlink { path, .. }
            | MountOp::BindRo { path, .. }
            | MountOp::BindDev { path, .. }
            | MountOp::BindRw { path, .. }
            | MountOp::Tmpfs { path, .. }
            | MountOp::Proc { path }
            | MountOp::File { path, .. } => path,
        }
    }
}

/// Errors found while planning: all are the caller's input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// A bind target must be absolute and plain.
    #[error("mount target `{0}` must be an absolute path without `..`")]
    BadTarget(PathBuf),
    /// A non-optional host path is missing.
    #[error("host path `{0}` does not exist")]
    MissingHost(PathBuf),
    /// Targets that the jail owns.
    #[error("mount target `{0}` is reserved by the jail")]
    Reserved(PathBuf),
    /// Paths containing NUL bytes cannot reach the kernel.
    #[error("path `{0}` contains a NUL byte")]
    Nul(PathBuf),
}

/// Inputs beyond the caller's [`MountSpec`].
pub(crate) struct PlanContext<'a> {
    /// Host directory bound at `/workspace`, when the spec asks for one.
    pub workspace_host: Option<&'a Path>,
    /// Size of `/tmp` in bytes.
    pub tmp_bytes: u64,
    /// The program's uid and gid, for the synthetic `/etc/passwd`.
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
}

const RESERVED: &[&str] = &[
    "/",
    "/dev",
    "/proc",
    "/tmp",
    "/workspace",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
];

/// Build the plan. Host paths are inspected (`lstat`, `readlink`) here, on
/// the host, so the child does not decide anything.
pub(crate) fn plan(spec: &MountSpec, ctx: &PlanContext<'_>) -> Result<Vec<MountOp>, PlanError> {
    let mut ops = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    // Create `rel` and its parents, each once.
    fn ensure_dir(ops: &mut Vec<MountOp>, dirs: &mut Vec<PathBuf>, rel: &Path) -> Result<(), PlanError> {
        let mut acc = PathBuf::new();
        for comp in rel.components() {
            acc.push(comp);
            if !dirs.contains(&acc) {
                dirs.push(acc.clone());
                ops.push(MountOp::Dir { path: cstr(&acc)? });
            }
        }
        Ok(())
    }

    for dir in ["dev", "proc", "tmp", "etc"] {
        ensure_dir(&mut ops, &mut dirs, Path::new(dir))?;
    }

    for bind in &spec.ro_binds {
        let rel = relative(&bind.target)?;
        if RESERVED.iter().any(|r| Path::new(r) == bind.target) {
            return Err(PlanError::Reserved(bind.target.clone()));
        }
        let meta = match std::fs::symlink_metadata(&bind.host) {
            Ok(m) => m,
            Err(_) if bind.optional => continue,
            Err(_) => return Err(PlanError::MissingHost(bind.host.clone())),
        };
        if let Some(parent) = rel.parent() {
            ensure_dir(&mut ops, &mut dirs, parent)?;
        }
        if meta.file_type().is_symlink() {
            // Merged /usr: /bin -> usr/bin. Recreate the link; its target is
            // resolved inside the box, against the other binds.
            let target =
                std::fs::read_link(&bind.host).map_err(|_| PlanError::MissingHost(bind.host.clone()))?;
            ops.push(MountOp::Symlink {
                target: cstr(&target)?,
                path: cstr(&rel)?,
            });
        } else {
            let dir = meta.is_dir();
            if dir {
                dirs.push(rel.clone());
            }
            ops.push(MountOp::BindRo {
                host: cstr(&bind.host)?,
                path: cstr(&rel)?,
                dir,
            });
        }
    }

    // /dev: a tmpfs holding only the harmless device nodes.
    ops.push(MountOp::Tmpfs {
        path: cstr(Path::new("dev"))?,
        size: c("65536"),
        mode: c("0755"),
    });
    for node in ["null", "zero", "full", "random", "urandom"] {
        ops.push(MountOp::BindDev {
            host: c(&format!("/dev/{node}")),
            path: c(&format!("dev/{node}")),
        });
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(MountOp::Symlink {
            target: c(target),
            path: c(&format!("dev/{name}")),
        });
    }

    ops.push(MountOp::Proc { path: c("proc") });
    ops.push(MountOp::Tmpfs {
        path: c("tmp"),
        size: c(&ctx.tmp_bytes.max(4096).to_string()),
        mode: c("1777"),
    });

    if let (Some(_), Some(host)) = (&spec.workspace, ctx.workspace_host) {
        ensure_dir(&mut ops, &mut dirs, Path::new("workspace"))?;
        ops.push(MountOp::BindRw {
            host: cstr(host)?,
            path: c("workspace"),
        });
    }

    let home = if spec.workspace.is_some() {
        "/workspace"
    } else {
        "/tmp"
    };
    ops.push(MountOp::File {
        path: c("etc/passwd"),
        contents: format!(
            "root:x:0:0:root:/root:/usr/sbin/nologin\nwarden:x:{}:{}:warden box:{home}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            ctx.uid, ctx.gid
        )
        .into_bytes(),
    });
    ops.push(MountOp::File {
        path: c("etc/group"),
        contents: format!("root:x:0:\nwarden:x:{}:\nnogroup:x:65534:\n", ctx.gid).into_bytes(),
    });
    ops.push(MountOp::File {
        path: c("etc/hosts"),
        contents: b"127.0.0.1\tlocalhost warden\n::1\tlocalhost\n".to_vec(),
    });
    Ok(ops)
}

/// Landlock rules matching the plan: read and execute where the host is
/// bound read-only, read and write on the device nodes, everything inside the
/// writable areas, read on `/proc` and the synthetic `/etc` files.
pub(crate) fn landlock_rules(ops: &[MountOp], abi: u32) -> Vec<(CString, u64)> {
    let handled = ll::handled_fs(abi);
    let read_dir = ll::READ_FILE | ll::READ_DIR | ll::EXECUTE;
    let writable = handled; // everything the ruleset handles
    let mut rules = vec![(c("."), ll::READ_DIR)];
    for op in ops {
        let rule = match op {
            MountOp::BindRo { path, dir: true, .. } => (path.clone(), read_dir),
            MountOp::BindRo { path, dir: false, .. } => (path.clone(), ll::READ_FILE | ll::EXECUTE),
            // The kernel refuses directory rights on a file: keep file rights.
            MountOp::BindDev { path, .. } => (
                path.clone(),
                (ll::READ_FILE | ll::WRITE_FILE | ll::TRUNCATE | ll::IOCTL_DEV) & handled & ll::FILE_RIGHTS,
            ),
            MountOp::BindRw { path, .. } => (path.clone(), writable),
            MountOp::Tmpfs { path, .. } if path.as_bytes() == b"tmp" => (path.clone(), writable),
            MountOp::Proc { path } => (path.clone(), ll::READ_FILE | ll::READ_DIR | ll::WRITE_FILE),
            MountOp::File { path, .. } => (path.clone(), ll::READ_FILE),
            _ => continue,
        };
        rules.push(rule);
    }
    rules
}

fn relative(target: &Path) -> Result<PathBuf, PlanError> {
    if !target.is_absolute() {
        return Err(PlanError::BadTarget(target.to_owned()));
    }
    let mut rel = PathBuf::new();
    for comp in target.components() {
        match comp {
            Component::RootDir => {}
            Component::Normal(part) => rel.push(part),
            _ => return Err(PlanError::BadTarget(target.to_owned())),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(PlanError::Reserved(target.to_owned()));
    }
    Ok(rel)
}

fn cstr(path: &Path) -> Result<CString, PlanError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| PlanError::Nul(path.to_owned()))
}

/// A CString from a literal known to hold no NUL.
fn c(s: &str) -> CString {
    CString::new(OsStr::new(s).as_bytes()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Bind, WorkspaceSpec};

    fn ctx(ws: Option<&Path>) -> PlanContext<'_> {
        PlanContext {
            workspace_host: ws,
            tmp_bytes: 1 << 20,
            uid: 60001,
            gid: 60001,
        }
    }

    fn find<'a>(ops: &'a [MountOp], path: &str) -> Vec<&'a MountOp> {
        ops.iter()
            .filter(|o| o.path().as_bytes() == path.as_bytes())
            .collect()
    }

    #[test]
    fn system_paths_are_read_only_and_symlinks_stay_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let spec = MountSpec {
            ro_binds: vec![
                Bind {
                    host: dir.path().join("real"),
                    target: "/opt/real".into(),
                    optional: false,
                },
                Bind {
                    host: dir.path().join("link"),
                    target: "/opt/link".into(),
                    optional: false,
                },
                Bind {
                    host: "/definitely/missing".into(),
                    target: "/x".into(),
                    optional: true,
                },
            ],
            workspace: None,
        };
        let ops = plan(&spec, &ctx(None)).unwrap();
        assert!(matches!(
            find(&ops, "opt/real")[..],
            [MountOp::BindRo { dir: true, .. }]
        ));
        assert!(matches!(
            find(&ops, "opt/link")[..],
            [MountOp::Symlink { target, .. }] if target.as_bytes() == b"real"
        ));
        assert!(find(&ops, "x").is_empty(), "optional missing paths are skipped");
        // Parent directories come before the mount that needs them.
        let opt = ops.iter().position(|o| o.path().as_bytes() == b"opt").unwrap();
        let real = ops
            .iter()
            .position(|o| o.path().as_bytes() == b"opt/real")
            .unwrap();
        assert!(opt < real);
        // No workspace unless asked.
        assert!(find(&ops, "workspace").is_empty());
    }

    #[test]
    fn fixed_skeleton_has_private_tmp_proc_and_only_harmless_devices() {
        let ops = plan(
            &MountSpec {
                ro_binds: vec![],
                workspace: None,
            },
            &ctx(None),
        )
        .unwrap();
        assert!(matches!(
            find(&ops, "tmp")[..],
            [MountOp::Dir { .. }, MountOp::Tmpfs { size, mode, .. }]
                if size.as_bytes() == b"1048576" && mode.as_bytes() == b"1777"
        ));
        assert!(matches!(
            find(&ops, "proc")[..],
            [MountOp::Dir { .. }, MountOp::Proc { .. }]
        ));
        let devices: Vec<_> = ops
            .iter()
            .filter_map(|o| match o {
                MountOp::BindDev { host, .. } => Some(host.to_str().unwrap().to_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(
            devices,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom"
            ]
        );
        let passwd = find(&ops, "etc/passwd");
        assert!(matches!(
            passwd[..],
            [MountOp::File { contents, .. }] if String::from_utf8_lossy(contents).contains("warden:x:60001:60001")
        ));
    }

    #[test]
    fn workspace_is_bound_read_write_only_when_asked() {
        let ws = Path::new("/run/warden/boxes/3/work");
        let spec = MountSpec {
            ro_binds: vec![],
            workspace: Some(WorkspaceSpec { size_bytes: 1 << 20 }),
        };
        let ops = plan(&spec, &ctx(Some(ws))).unwrap();
        assert!(matches!(
            find(&ops, "workspace")[..],
            [MountOp::Dir { .. }, MountOp::BindRw { host, .. }] if host.as_bytes() == ws.as_os_str().as_bytes()
        ));
    }

    #[test]
    fn bad_targets_are_refused() {
        for (target, err) in [
            ("relative", PlanError::BadTarget("relative".into())),
            ("/a/../b", PlanError::BadTarget("/a/../b".into())),
            ("/proc", PlanError::Reserved("/proc".into())),
        ] {
            let spec = MountSpec {
                ro_binds: vec![Bind {
                    host: "/usr".into(),
                    target: target.into(),
                    optional: false,
                }],
                workspace: None,
            };
            assert_eq!(plan(&spec, &ctx(None)).unwrap_err(), err);
        }
        let spec = MountSpec {
            ro_binds: vec![Bind {
                host: "/nope/nope".into(),
                target: "/nope".into(),
                optional: false,
            }],
            workspace: None,
        };
        assert_eq!(
            plan(&spec, &ctx(None)).unwrap_err(),
            PlanError::MissingHost("/nope/nope".into())
        );
    }

    #[test]
    fn landlock_follows_the_plan() {
        let spec = MountSpec {
            ro_binds: vec![Bind {
                host: "/usr".into(),
                target: "/usr".into(),
                optional: false,
            }],
            workspace: Some(WorkspaceSpec { size_bytes: 1 << 20 }),
        };
        let ops = plan(&spec, &ctx(Some(Path::new("/tmp")))).unwrap();
        let rules = landlock_rules(&ops, 7);
        let get = |p: &str| {
            rules
                .iter()
                .find(|(path, _)| path.as_bytes() == p.as_bytes())
                .map(|r| r.1)
        };
        let usr = get("usr").unwrap();
        assert_eq!(
            usr & ll::WRITE_FILE,
            0,
            "read-only binds are not writable under landlock either"
        );
        assert_ne!(usr & ll::EXECUTE, 0);
        assert_eq!(get("workspace").unwrap(), ll::handled_fs(7));
        assert_eq!(get("tmp").unwrap(), ll::handled_fs(7));
        assert_eq!(
            get("dev/null").unwrap() & !ll::FILE_RIGHTS,
            0,
            "file rules carry file rights only"
        );
        assert_eq!(get("etc/passwd").unwrap(), ll::READ_FILE);
        assert!(get("dev").is_none(), "nothing else under /dev is reachable");
    }
}
