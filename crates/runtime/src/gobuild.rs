//! Go plugins are compiled once, at publish time, inside the jail: Debian's
//! toolchain, no network (`GOPROXY=off`, vendored modules only), a private
//! build cache. The binary then runs as a `native` plugin.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use warden_jail::{BoxSpec, Limits, MIB, MountSpec, NoSink, Status, WorkspaceSpec};

use crate::{RunnerInner, RuntimeError};

/// The Go command inside the box (Debian's `golang-go` links it here).
const GO: &str = "/usr/bin/go";

/// A compiler error, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildError {
    /// File, relative to the package.
    pub file: String,
    /// Line.
    pub line: u32,
    /// Column, when the compiler gives one.
    pub column: Option<u32>,
    /// The compiler's message.
    pub message: String,
}

/// A successful build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildOutput {
    /// Where the binary was written.
    pub binary: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Wall-clock build time.
    pub duration_ms: f64,
}

/// Pull `file:line:col: message` lines out of the compiler's output.
pub(crate) fn parse_errors(log: &str) -> Vec<BuildError> {
    log.lines()
        .filter_map(|l| {
            let l = l.trim_start_matches("./");
            let (file, rest) = l.split_once(".go:")?;
            let mut parts = rest.splitn(3, ':');
            let line = parts.next()?.trim().parse().ok()?;
            let (column, message) = match (parts.next(), parts.next()) {
                (Some(c), Some(m)) if c.trim().parse::<u32>().is_ok() => (c.trim().parse().ok(), m),
                (Some(m), None) => (None, m),
                (Some(c), Some(m)) => (None, &l[l.len() - c.len() - m.len() - 1..]),
                _ => return None,
            };
            Some(BuildError {
                file: format!("{file}.go"),
                line,
                column,
                message: message.trim().to_owned(),
            })
        })
        .collect()
}

pub(crate) fn build(rt: &RunnerInner, src: &Path, out: &Path) -> Result<BuildOutput, RuntimeError> {
    if !Path::new(GO).exists() {
        return Err(RuntimeError::Code {
            path: PathBuf::from(GO),
            reason: "the Go toolchain is not installed (apt-get install golang-go)".into(),
        });
    }
    let name = src
        .file_name()
        .ok_or_else(|| RuntimeError::Code {
            path: src.to_owned(),
            reason: "has no directory name".into(),
        })?
        .to_string_lossy()
        .into_owned();
    let handle = crate::artifacts::fresh_box(&rt.jail, 2048 * MIB)?;
    handle.copy_in(src)?;
    let vendored = src.join("vendor").is_dir();
    let mut argv = vec![
        GO.to_owned(),
        "build".into(),
        "-trimpath".into(),
        "-buildvcs=false".into(),
    ];
    if vendored {
        argv.push("-mod=vendor".into());
    }
    argv.extend(["-o".into(), "/workspace/out/plugin".into(), ".".into()]);
    let mut spec = BoxSpec::command(argv);
    spec.mounts = MountSpec {
        ro_binds: warden_jail::system_binds(),
        workspace: Some(WorkspaceSpec {
            size_bytes: 2048 * MIB,
        }),
    };
    spec.cwd = PathBuf::from("/workspace").join(&name);
    for (k, v) in [
        ("HOME", "/workspace"),
        ("GOCACHE", "/tmp/go-build"),
        ("GOPATH", "/tmp/go"),
        ("GOPROXY", "off"),
        ("GOSUMDB", "off"),
        ("GOTOOLCHAIN", "local"),
        ("GOTELEMETRY", "off"),
        ("GOFLAGS", "-mod=mod"),
        ("CGO_ENABLED", "0"),
    ] {
        spec.env.retain(|(key, _)| key != k);
        if k == "GOFLAGS" && vendored {
            continue;
        }
        spec.env.push((k.into(), v.into()));
    }
    spec.limits = Limits {
        wall_time: Duration::from_secs(300),
        cpu_time: Some(Duration::from_secs(300)),
        memory_bytes: Some(2048 * MIB),
        pids: Some(512),
        cpu_cores: Some(2.0),
        file_size_bytes: 1024 * MIB,
        open_files: 1024,
        stack_bytes: 8 * MIB,
        output_bytes: MIB as usize,
        tmp_bytes: 1024 * MIB,
    };
    let started = std::time::Instant::now();
    let (outcome, handle) = handle.run(spec, &mut NoSink)?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&outcome.stdout),
        String::from_utf8_lossy(&outcome.stderr)
    );
    if outcome.status != Status::Ok {
        let mut errors = parse_errors(&log);
        if errors.is_empty() {
            errors.push(BuildError {
                file: String::new(),
                line: 0,
                column: None,
                message: match &outcome.message {
                    Some(m) => format!("go build: {}: {m}\n{log}", outcome.status),
                    None => format!("go build: {}\n{log}", outcome.status),
                },
            });
        }
        return Err(RuntimeError::BuildFailed { errors, log });
    }
    let binary = handle.read_file(Path::new("out/plugin"), 512 * MIB)?;
    std::fs::write(out, &binary).map_err(|e| RuntimeError::Io {
        path: out.to_owned(),
        source: e,
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o755)).map_err(|e| {
            RuntimeError::Io {
                path: out.to_owned(),
                source: e,
            }
        })?;
    }
    Ok(BuildOutput {
        binary: out.to_owned(),
        size: binary.len() as u64,
        sha256: format!("{:x}", Sha256::digest(&binary)),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_errors_are_located() {
        let log = "# example.com/p\n./main.go:12:5: undefined: foo\n./util/x.go:3: syntax error: unexpected }\nnote: module requires Go 1.21\n";
        let errs = parse_errors(log);
        assert_eq!(
            errs,
            [
                BuildError {
                    file: "main.go".into(),
                    line: 12,
                    column: Some(5),
                    message: "undefined: foo".into()
                },
                BuildError {
                    file: "util/x.go".into(),
                    line: 3,
                    column: None,
                    message: "syntax error: unexpected }".into()
                },
            ]
        );
    }
}
