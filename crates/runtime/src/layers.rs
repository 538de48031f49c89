//! Dependency layers: a template's packages installed once, inside the jail,
//! into a tree that every box of the template gets bound read-only at a
//! fixed path (`/layers/python` on `PYTHONPATH`, `/layers/node` with its
//! `node_modules` on `NODE_PATH`). Nothing is installed at run time.
//!
//! A build is one box: `pip install --target` or `npm install --prefix` run
//! by the host's own interpreter, with limits, and no package's code ever
//! runs outside a box. The box reaches the package index only through the
//! host's egress proxy (the jail's egress door, `warden-egress`), allowed to
//! the index's hosts alone; an air-gapped host builds from a folder of
//! wheels or tarballs bound read-only at `/index`, with no network at all.
//! The installed tree is copied out of the box's workspace through the
//! jail's `BoxDir` (links recreated, never followed) into a temporary
//! directory renamed into place, so a half-built layer is never visible.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use warden_jail::{
    Bind, BoxSpec, CopyLimits, Limits, MIB, MountSpec, OutputLimitAction, OutputSink, Status, Stream,
    WorkspaceSpec,
};

use crate::door::{Door, DoorError};
use crate::{OutputTap, RunnerInner, RuntimeError, artifacts};

/// Where a layer is mounted in boxes.
pub const PYTHON_LAYER: &str = "/layers/python";
/// Where a Node.js layer is mounted in boxes (its `node_modules` inside).
pub const NODE_LAYER: &str = "/layers/node";

/// The interpreter a layer is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerRuntime {
    /// `pip install --target`.
    Python,
    /// `npm install --prefix`.
    Node,
}

impl LayerRuntime {
    /// The directory of the layer (relative to its root) that boxes see at
    /// [`LayerRuntime::mount_point`].
    pub fn subdir(self) -> &'static str {
        match self {
            LayerRuntime::Python => "python",
            LayerRuntime::Node => "node",
        }
    }

    /// Where boxes see the layer.
    pub fn mount_point(self) -> &'static str {
        match self {
            LayerRuntime::Python => PYTHON_LAYER,
            LayerRuntime::Node => NODE_LAYER,
        }
    }

    /// The environment that makes the interpreter find the layer.
    pub fn env(self) -> (&'static str, &'static str) {
        match self {
            LayerRuntime::Python => ("PYTHONPATH", PYTHON_LAYER),
            LayerRuntime::Node => ("NODE_PATH", "/layers/node/node_modules"),
        }
    }

    /// The host's interpreter version (`Python 3.11.2`, `Node.js v20.20.2`):
    /// part of a layer's identity. Runs the host's own interpreter, never a
    /// package.
    pub fn interpreter_version(self) -> Result<String, RuntimeError> {
        let (program, label) = match self {
            LayerRuntime::Python => ("/usr/bin/python3", ""),
            LayerRuntime::Node => ("/usr/bin/node", "Node.js "),
        };
        let out = std::process::Command::new(program)
            .arg("--version")
            .env_clear()
            .output()
            .map_err(|e| RuntimeError::Io {
                path: PathBuf::from(program),
                source: e,
            })?;
        let text = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        });
        Ok(format!("{label}{}", text.trim()))
    }
}

/// One requested package (already validated by the platform core).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerPackage {
    /// Name (`requests`, `@scope/name`).
    pub name: String,
    /// Version specifier (`==2.32.3`, `>=1,<2`; an npm range), if any.
    pub version: Option<String>,
    /// Pinned hashes (`sha256:…` for pip, `sha512-…` integrity for npm).
    pub hashes: Vec<String>,
}

/// Where packages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageSource {
    /// A package index over HTTPS, reached through the egress proxy, which
    /// lets the build reach `hosts` (and nothing else).
    Index {
        /// The index URL (`https://pypi.org/simple`,
        /// `https://registry.npmjs.org/`, a mirror).
        url: String,
        /// `host[:port]` the build may reach: the index's own host, and
        /// where it serves files from.
        hosts: Vec<String>,
        /// Addresses the operator allows although they are private
        /// (a mirror on the local network), as CIDRs.
        allow_cidrs: Vec<String>,
    },
    /// A folder of wheels / sdists (pip) or tarballs (npm) on the host,
    /// bound read-only at `/index`; no network at all.
    Folder(PathBuf),
}

/// Caps on a build.
#[derive(Debug, Clone, Copy)]
pub struct BuildLimits {
    /// Wall clock.
    pub timeout: Duration,
    /// Memory of the build box.
    pub memory_bytes: u64,
    /// Size of the build's workspace (the layer and everything pip or npm
    /// unpack there) and of its `/tmp`.
    pub disk_bytes: u64,
    /// Largest installed layer.
    pub layer_bytes: u64,
    /// Most files in a layer.
    pub layer_entries: usize,
}

impl Default for BuildLimits {
    fn default() -> Self {
        BuildLimits {
            timeout: Duration::from_secs(600),
            memory_bytes: 2048 * MIB,
            disk_bytes: 2048 * MIB,
            layer_bytes: 1024 * MIB,
            layer_entries: 200_000,
        }
    }
}

/// An installed package, as the build recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedPackage {
    /// Normalized name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// SHA-256 of the distribution installed (pip), when known.
    pub sha256: Option<String>,
    /// The registry's integrity string (npm's SRI, `sha512-…`), when known.
    pub integrity: Option<String>,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    /// What was installed.
    pub lock: Vec<LockedPackage>,
    /// Bytes of file content in the layer.
    pub size_bytes: u64,
    /// The build's log (pip's or npm's output, and the egress summary).
    pub log: String,
    /// How long the build took.
    pub duration: Duration,
}

/// A failed build: the package at fault when it can be named, why, and the
/// log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{message}", package.as_ref().map(|p| format!("package `{p}`: ")).unwrap_or_default())]
pub struct LayerBuildError {
    /// The package the failure is about, when the installer named one.
    pub package: Option<String>,
    /// What went wrong.
    pub message: String,
    /// The build's log.
    pub log: String,
}

/// One build: what to install, from where, into which directory.
pub struct LayerBuild<'a> {
    /// The interpreter.
    pub runtime: LayerRuntime,
    /// The packages.
    pub packages: &'a [LayerPackage],
    /// Where they come from.
    pub source: &'a PackageSource,
    /// The layer's final directory (must not exist; its parent must).
    pub dest: &'a Path,
    /// Caps.
    pub limits: BuildLimits,
    /// Receives the installer's output as it comes (progress).
    pub progress: Option<OutputTap>,
}

/// The host's CA bundle (Debian's), bound into boxes that reach the network.
pub(crate) const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Most bytes of log kept per build.
const LOG_CAP: usize = 1 << 20;

struct Tap<'a>(Option<&'a OutputTap>);

impl OutputSink for Tap<'_> {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        if let Some(t) = self.0 {
            t(stream, data);
        }
    }
}

fn fail(package: Option<String>, message: impl Into<String>, log: &str) -> LayerBuildError {
    LayerBuildError {
        package,
        message: message.into(),
        log: log.to_owned(),
    }
}

/// The requirements-file line of a pip package.
fn pip_line(p: &LayerPackage) -> String {
    let mut line = format!("{}{}", p.name, p.version.as_deref().unwrap_or(""));
    for h in &p.hashes {
        line.push_str(&format!(" --hash={h}"));
    }
    line
}

/// The host of an index URL, with its port when it is not the default.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    (!authority.is_empty()).then(|| authority.to_ascii_lowercase())
}

pub(crate) fn build(rt: &RunnerInner, b: LayerBuild<'_>) -> Result<BuiltLayer, LayerBuildError> {
    let started = Instant::now();
    let internal =
        |e: &dyn std::fmt::Display| fail(None, format!("the platform could not run the build: {e}"), "");
    if b.dest.exists() {
        return Err(internal(&format!("{} exists already", b.dest.display())));
    }
    let handle = artifacts::fresh_box(&rt.jail, b.limits.disk_bytes).map_err(|e| internal(&e))?;
    let ws = handle.workspace().map_err(|e| internal(&e))?;
    let sub = b.runtime.subdir();
    ws.ensure_dir(Path::new("layer"), 0o755)
        .map_err(|e| internal(&e))?;
    let mut argv: Vec<String>;
    let mut env: Vec<(String, String)> = vec![
        ("HOME".into(), "/workspace".into()),
        ("TMPDIR".into(), "/tmp".into()),
    ];
    match b.runtime {
        LayerRuntime::Python => {
            let reqs: String = b.packages.iter().map(|p| pip_line(p) + "\n").collect();
            ws.write_file(Path::new("requirements.txt"), &mut reqs.as_bytes(), 1 << 20)
                .map_err(|e| internal(&e))?;
            argv = [
                "/usr/bin/python3",
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "--no-cache-dir",
                "--progress-bar",
                "off",
                "--no-warn-script-location",
                "--target",
                "/workspace/layer/python",
                "--report",
                "/workspace/report.json",
                "-r",
                "/workspace/requirements.txt",
            ]
            .map(String::from)
            .to_vec();
            if b.packages.iter().any(|p| !p.hashes.is_empty()) {
                argv.push("--require-hashes".into());
            }
            env.extend([
                ("PIP_CONFIG_FILE".into(), "/dev/null".into()),
                ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
            ]);
        }
        LayerRuntime::Node => {
            let npm = npm_cli().ok_or_else(|| {
                fail(
                    None,
                    "npm is not installed on this host (neither /usr/lib/node_modules/npm nor Debian's npm package)",
                    "",
                )
            })?;
            argv = [
                "/usr/bin/node",
                npm,
                "install",
                "--prefix",
                "/workspace/layer/node",
                "--no-audit",
                "--no-fund",
                "--no-update-notifier",
                "--loglevel",
                "http",
                "--cache",
                "/workspace/.npm-cache",
            ]
            .map(String::from)
            .to_vec();
            env.push(("NPM_CONFIG_USERCONFIG".into(), "/dev/null".into()));
            // Node trusts its own CA list only; the host's store (which the
            // operator controls, and which may hold a mirror's CA) too.
            env.push(("NODE_EXTRA_CA_CERTS".into(), HOST_CA_BUNDLE.into()));
        }
    }
    let mut binds = warden_jail::system_binds();
    binds.push(Bind::same("/etc/ssl/certs"));
    let mut egress = None;
    match b.source {
        PackageSource::Index {
            url,
            hosts,
            allow_cidrs,
        } => {
            match b.runtime {
                LayerRuntime::Python => argv.extend(["--index-url".into(), url.clone()]),
                LayerRuntime::Node => argv.extend(["--registry".into(), url.clone()]),
            }
            let door = Door::open(hosts, allow_cidrs).map_err(|e| match e {
                DoorError::Hosts(e) => fail(None, format!("the index's hosts: {e}"), ""),
                DoorError::Cidr(e) => fail(None, format!("an allowed address range: {e}"), ""),
                DoorError::Setup(_) => internal(&e),
            })?;
            env.extend(door.env());
            egress = Some(door);
        }
        PackageSource::Folder(dir) => {
            binds.push(Bind {
                host: dir.clone(),
                target: PathBuf::from("/index"),
                optional: false,
            });
            match b.runtime {
                LayerRuntime::Python => {
                    argv.extend(["--no-index".into(), "--find-links".into(), "/index".into()]);
                }
                LayerRuntime::Node => argv.push("--offline".into()),
            }
        }
    }
    if b.runtime == LayerRuntime::Node {
        for p in b.packages {
            argv.push(match (&b.source, &p.version) {
                (PackageSource::Folder(dir), _) => match folder_tarball(dir, p) {
                    Some(t) => format!("/index/{t}"),
                    None => {
                        return Err(fail(
                            Some(p.name.clone()),
                            "no tarball for it in the package folder",
                            "",
                        ));
                    }
                },
                (_, Some(v)) => format!("{}@{v}", p.name),
                (_, None) => p.name.clone(),
            });
        }
    }
    let mut spec = BoxSpec::command(argv);
    spec.mounts = MountSpec {
        ro_binds: binds,
        workspace: Some(WorkspaceSpec {
            size_bytes: b.limits.disk_bytes,
        }),
    };
    spec.cwd = PathBuf::from("/workspace");
    for (k, v) in env {
        spec.env.retain(|(key, _)| key.to_str() != Some(k.as_str()));
        spec.env.push((k.into(), v.into()));
    }
    spec.limits = Limits {
        wall_time: b.limits.timeout,
        cpu_time: Some(b.limits.timeout),
        memory_bytes: Some(b.limits.memory_bytes),
        pids: Some(512),
        cpu_cores: Some(2.0),
        file_size_bytes: b.limits.layer_bytes,
        open_files: 4096,
        stack_bytes: 8 * MIB,
        output_bytes: LOG_CAP,
        tmp_bytes: b.limits.disk_bytes,
    };
    spec.on_output_limit = OutputLimitAction::Truncate;
    if let Some(door) = &egress {
        spec.egress = Some(door.egress().map_err(|e| internal(&e))?);
    }
    let (outcome, handle) = handle
        .run(spec, &mut Tap(b.progress.as_ref()))
        .map_err(|e| internal(&e))?;
    let mut log = String::from_utf8_lossy(&outcome.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&outcome.stderr));
    let mut refused = if let Some(door) = egress {
        let report = door.stop();
        let mut refused = Vec::new();
        for c in &report.connections {
            let verdict = match &c.verdict {
                warden_egress::Verdict::Allowed { cut: None } => "allowed".to_owned(),
                warden_egress::Verdict::Allowed { cut: Some(cut) } => {
                    format!("allowed, then cut: {}", cut.message)
                }
                warden_egress::Verdict::Refused { message, .. } => format!("refused: {message}"),
            };
            let line = format!(
                "egress: {} {}:{} {verdict} ({} bytes up, {} down)\n",
                c.method.as_deref().unwrap_or("-"),
                c.host.as_deref().unwrap_or("-"),
                c.port.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                c.bytes_up,
                c.bytes_down
            );
            if let warden_egress::Verdict::Refused { message, .. } = &c.verdict {
                refused.push(message.clone());
            }
            log.push_str(&line);
        }
        refused
    } else {
        Vec::new()
    };
    if outcome.status != Status::Ok {
        if !refused.is_empty() {
            // The index was out of reach: that, not a package, is the cause.
            refused.dedup();
            return Err(fail(
                None,
                format!(
                    "the package index could not be reached: the egress proxy refused {}",
                    refused.join("; ")
                ),
                &log,
            ));
        }
        let (package, why) = diagnose(b.runtime, &log, &outcome.status, outcome.message.as_deref());
        return Err(fail(package, why, &log));
    }
    let lock = match b.runtime {
        LayerRuntime::Python => {
            let report = ws
                .read_file(Path::new("report.json"), 16 << 20)
                .map_err(|e| fail(None, format!("pip left no report: {e}"), &log))?;
            pip_lock(&report).map_err(|e| fail(None, e, &log))?
        }
        LayerRuntime::Node => {
            let lock = ws
                .read_file(Path::new("layer/node/package-lock.json"), 64 << 20)
                .map_err(|e| fail(None, format!("npm left no lock file: {e}"), &log))?;
            let lock = npm_lock(&lock).map_err(|e| fail(None, e, &log))?;
            check_integrity(b.packages, &lock).map_err(|(p, m)| fail(Some(p), m, &log))?;
            lock
        }
    };
    // Copy out beside the destination, then rename: never half a layer.
    let tmp = b.dest.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let copy_limits = CopyLimits {
        entries: b.limits.layer_entries,
        bytes: b.limits.layer_bytes,
        depth: 64,
    };
    std::fs::create_dir(&tmp).map_err(|e| internal(&e))?;
    let copied = ws
        .copy_tree_out(&Path::new("layer").join(sub), &tmp.join(sub), copy_limits)
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp);
            fail(None, format!("the installed layer cannot be kept: {e}"), &log)
        })?;
    drop(handle);
    if let Err(e) = std::fs::rename(&tmp, b.dest) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !b.dest.is_dir() {
            return Err(internal(&e));
        }
        // Another build of the same layer finished first: same content.
    }
    Ok(BuiltLayer {
        lock,
        size_bytes: copied.bytes,
        log,
        duration: started.elapsed(),
    })
}

/// The host's npm (its JavaScript entry point: boxes run it with the host's
/// node, from `/usr`).
fn npm_cli() -> Option<&'static str> {
    [
        "/usr/lib/node_modules/npm/bin/npm-cli.js",
        "/usr/share/nodejs/npm/bin/npm-cli.js",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file())
}

/// The tarball in `dir` for `p` (npm's `npm pack` naming: `name-1.2.3.tgz`,
/// `scope-name-1.2.3.tgz`), the highest version matching its range.
fn folder_tarball(dir: &Path, p: &LayerPackage) -> Option<String> {
    let stem = p.name.trim_start_matches('@').replace('/', "-");
    let range = match p.version.as_deref() {
        Some(v) => semver::VersionReq::parse(v).ok()?,
        None => semver::VersionReq::STAR,
    };
    let mut best: Option<(semver::Version, String)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(version) = name
            .strip_suffix(".tgz")
            .and_then(|n| n.strip_prefix(&stem))
            .and_then(|n| n.strip_prefix('-'))
            .and_then(|v| semver::Version::parse(v).ok())
        else {
            continue;
        };
        if range.matches(&version) && best.as_ref().is_none_or(|(b, _)| version > *b) {
            best = Some((version, name));
        }
    }
    best.map(|(_, n)| n)
}

/// pip's installation report (`--report`) → the lock.
fn pip_lock(report: &[u8]) -> Result<Vec<LockedPackage>, String> {
    #[derive(Deserialize)]
    struct Report {
        install: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        metadata: Meta,
        download_info: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Meta {
        name: String,
        version: String,
    }
    let r: Report =
        serde_json::from_slice(report).map_err(|e| format!("pip's report does not parse: {e}"))?;
    let mut lock: Vec<LockedPackage> = r
        .install
        .into_iter()
        .map(|i| LockedPackage {
            name: normalize_pip_name(&i.metadata.name),
            version: i.metadata.version,
            sha256: i
                .download_info
                .as_ref()
                .and_then(|d| {
                    d.pointer("/archive_info/hashes/sha256")
                        .or_else(|| d.pointer("/archive_info/hash"))
                })
                .and_then(|v| v.as_str())
                .map(|h| h.trim_start_matches("sha256=").to_owned()),
            integrity: None,
        })
        .collect();
    lock.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(lock)
}

/// PEP 503 normalization: lowercase, runs of `-`, `_`, `.` become `-`.
fn normalize_pip_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// npm's `package-lock.json` (v2/v3) → the lock.
fn npm_lock(lock: &[u8]) -> Result<Vec<LockedPackage>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(lock).map_err(|e| format!("npm's lock file does not parse: {e}"))?;
    let packages = v
        .get("packages")
        .and_then(|p| p.as_object())
        .ok_or("npm's lock file has no `packages`")?;
    let mut out: Vec<LockedPackage> = packages
        .iter()
        .filter_map(|(path, p)| {
            let name = path.rsplit_once("node_modules/").map(|(_, n)| n)?;
            Some(LockedPackage {
                name: name.to_owned(),
                version: p.get("version")?.as_str()?.to_owned(),
                sha256: None,
                integrity: p.get("integrity").and_then(|i| i.as_str()).map(str::to_owned),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// npm does not check an integrity the request pins: do it here.
fn check_integrity(asked: &[LayerPackage], lock: &[LockedPackage]) -> Result<(), (String, String)> {
    for p in asked.iter().filter(|p| !p.hashes.is_empty()) {
        let got = lock
            .iter()
            .find(|l| l.name == p.name)
            .and_then(|l| l.integrity.as_deref());
        match got {
            Some(i) if p.hashes.iter().any(|h| h == i) => {}
            other => {
                return Err((
                    p.name.clone(),
                    format!(
                        "the installed package's integrity {} is not one of the pinned {}",
                        other.unwrap_or("(none)"),
                        p.hashes.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Name the package a failed install is about, and say why, from the
/// installer's own output.
fn diagnose(
    runtime: LayerRuntime,
    log: &str,
    status: &Status,
    message: Option<&str>,
) -> (Option<String>, String) {
    match status {
        Status::Timeout => {
            return (
                None,
                format!(
                    "the build passed its time limit ({}); the index may be slow or unreachable",
                    message.unwrap_or("wall clock")
                ),
            );
        }
        Status::MemoryLimit
        | Status::OutputLimit
        | Status::CpuLimit
        | Status::Violation
        | Status::Signaled
        | Status::Cancelled => {
            return (
                last_collecting(log),
                format!("the build was stopped: {}", message.unwrap_or(status.as_str())),
            );
        }
        Status::InternalError => {
            return (
                None,
                format!("the build box could not start: {}", message.unwrap_or("unknown")),
            );
        }
        Status::Ok | Status::NonzeroExit => {}
    }
    let after = |needle: &str| -> Option<&str> {
        log.lines()
            .find_map(|l| l.split_once(needle).map(|(_, rest)| rest.trim()))
    };
    let first_word = |s: &str| {
        s.split(|c: char| {
            c.is_whitespace() || matches!(c, '=' | '<' | '>' | '!' | '~' | '[' | ';' | '(' | ',')
        })
        .next()
        .unwrap_or("")
        .trim_matches(|c| c == '\'' || c == '"')
        .to_owned()
    };
    match runtime {
        LayerRuntime::Python => {
            if let Some(rest) = after("No matching distribution found for ") {
                return (
                    Some(first_word(rest)),
                    format!("no version matches: no matching distribution found for {rest}"),
                );
            }
            if let Some(rest) = after("Could not find a version that satisfies the requirement ") {
                return (Some(first_word(rest)), format!("no version matches `{rest}`"));
            }
            if log.contains("DO NOT MATCH THE HASHES") || log.contains("Hashes are required") {
                let pkg = log
                    .lines()
                    .skip_while(|l| {
                        !l.contains("DO NOT MATCH THE HASHES") && !l.contains("Hashes are required")
                    })
                    .find_map(|l| l.trim().split_once(" from ").map(|(p, _)| first_word(p)));
                return (
                    pkg,
                    "the downloaded distribution does not match the pinned hash".into(),
                );
            }
            if log.contains("subprocess-exited-with-error") || log.contains("Failed to build") {
                return (
                    last_collecting(log),
                    "its build or install script failed (see the log)".into(),
                );
            }
            if log.contains("ProxyError")
                || log.contains("Could not fetch URL")
                || log.contains("NewConnectionError")
            {
                return (None, "the package index could not be reached".into());
            }
        }
        LayerRuntime::Node => {
            if let Some(rest) = after("No matching version found for ") {
                return (
                    Some(npm_name(rest)),
                    format!("no version matches `{}`", rest.trim_end_matches('.')),
                );
            }
            if let Some(rest) = log.lines().find_map(|l| {
                l.split_once("' is not in this registry")
                    .map(|(a, _)| a.rsplit('\'').next().unwrap_or(a))
            }) {
                return (Some(npm_name(rest)), "it is not in the registry".into());
            }
            if let Some(rest) = after("npm error path /workspace/layer/node/node_modules/") {
                return (
                    Some(rest.to_owned()),
                    "its install script failed (see the log)".into(),
                );
            }
            if log.contains("ECONNREFUSED")
                || log.contains("ENOTFOUND")
                || log.contains("ECONNRESET")
                || log.contains("EAI_AGAIN")
            {
                return (None, "the package registry could not be reached".into());
            }
        }
    }
    let tail: String = log
        .lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    (None, format!("the installer failed: {}", tail.trim()))
}

/// `name@spec` → `name` (keeping an npm scope's leading `@`).
fn npm_name(spec: &str) -> String {
    let spec = spec.trim().trim_matches(|c| c == '\'' || c == '"' || c == '.');
    match spec.strip_prefix('@') {
        Some(rest) => format!("@{}", rest.split('@').next().unwrap_or(rest)),
        None => spec.split('@').next().unwrap_or(spec).to_owned(),
    }
}

/// The last package pip started to collect: the one a failure is about.
/// From an index pip says `Collecting NAME…`; from a folder, `Processing
/// /index/FILE`, whose file name starts with the distribution's name.
fn last_collecting(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix("Collecting ") {
            let name = rest
                .split(|c: char| {
                    c.is_whitespace() || matches!(c, '=' | '<' | '>' | '!' | '~' | '[' | ';' | '(')
                })
                .next()?;
            return Some(name.to_owned());
        }
        let file = l.strip_prefix("Processing ")?.rsplit('/').next()?;
        let name = if let Some(wheel) = file.strip_suffix(".whl") {
            wheel.split('-').next()?
        } else {
            let stem = [".tar.gz", ".zip", ".tar.bz2", ".tgz"]
                .iter()
                .find_map(|ext| file.strip_suffix(ext))?;
            stem.rsplit_once('-')?.0
        };
        Some(normalize_pip_name(name))
    })
}

/// A layer a box gets: the host directory and the runtime it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerMount {
    /// The layer's root on the host (holding `python/` or `node/`).
    pub dir: PathBuf,
    /// Its runtime.
    pub runtime: LayerRuntime,
}

impl LayerMount {
    /// The read-only bind and the environment entry for a box.
    pub fn bind_and_env(&self) -> (Bind, (String, String)) {
        let (k, v) = self.runtime.env();
        (
            Bind {
                host: self.dir.join(self.runtime.subdir()),
                target: PathBuf::from(self.runtime.mount_point()),
                optional: false,
            },
            (k.to_owned(), v.to_owned()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_a_failure_is_about_is_named() {
        assert_eq!(
            last_collecting("Collecting six==1.16\nCollecting requests>=2\n").as_deref(),
            Some("requests")
        );
        let folder = "Looking in links: /index\nProcessing /index/tinyhello-1.0.0-py3-none-any.whl\n\
                      Processing /index/Bad_Build-1.0.tar.gz\n  Getting requirements to build wheel: started\n";
        assert_eq!(last_collecting(folder).as_deref(), Some("bad-build"));
        assert_eq!(last_collecting("Processing /index/odd\n"), None);
    }

    #[test]
    fn pip_reports_become_locks() {
        let report = br#"{"version":"1","install":[
            {"metadata":{"name":"Six","version":"1.16.0"},"download_info":{"url":"https://x/six.whl","archive_info":{"hashes":{"sha256":"abc"}}}},
            {"metadata":{"name":"charset_normalizer","version":"3.3.2"},"download_info":{"url":"file:///index/c.whl","archive_info":{"hash":"sha256=def"}}}
        ]}"#;
        let lock = pip_lock(report).unwrap();
        assert_eq!(lock[0].name, "charset-normalizer");
        assert_eq!(lock[0].sha256.as_deref(), Some("def"));
        assert_eq!(
            (lock[1].name.as_str(), lock[1].version.as_str()),
            ("six", "1.16.0")
        );
        assert_eq!(lock[1].sha256.as_deref(), Some("abc"));
        assert!(pip_lock(b"{}").is_err());
    }

    #[test]
    fn npm_locks_list_every_installed_package() {
        let lock = br#"{"lockfileVersion":3,"packages":{
            "":{"dependencies":{"is-number":"^7"}},
            "node_modules/is-number":{"version":"7.0.0","integrity":"sha512-AAA"},
            "node_modules/@scope/x":{"version":"1.0.0","integrity":"sha512-BBB"},
            "node_modules/a/node_modules/b":{"version":"2.0.0"}
        }}"#;
        let lock = npm_lock(lock).unwrap();
        let names: Vec<_> = lock.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["@scope/x", "b", "is-number"]);
        let asked = [LayerPackage {
            name: "is-number".into(),
            version: None,
            hashes: vec!["sha512-ZZZ".into()],
        }];
        assert!(check_integrity(&asked, &lock).is_err());
        let asked = [LayerPackage {
            hashes: vec!["sha512-AAA".into()],
            ..asked[0].clone()
        }];
        assert!(check_integrity(&asked, &lock).is_ok());
    }

    #[test]
    fn failures_name_the_package() {
        let pip = "Collecting six==99\nERROR: Could not find a version that satisfies the requirement six==99 (from versions: 1.16.0)\nERROR: No matching distribution found for six==99\n";
        assert_eq!(
            diagnose(LayerRuntime::Python, pip, &Status::NonzeroExit, None)
                .0
                .as_deref(),
            Some("six")
        );
        let script =
            "Collecting broken-pkg\n  Downloading broken.tar.gz\n  error: subprocess-exited-with-error\n";
        assert_eq!(
            diagnose(LayerRuntime::Python, script, &Status::NonzeroExit, None)
                .0
                .as_deref(),
            Some("broken-pkg")
        );
        let npm = "npm error 404 Not Found - GET https://registry.npmjs.org/nope-xyz - Not found\nnpm error 404  'nope-xyz@*' is not in this registry.\n";
        assert_eq!(
            diagnose(LayerRuntime::Node, npm, &Status::NonzeroExit, None)
                .0
                .as_deref(),
            Some("nope-xyz")
        );
        let npm =
            "npm error code ETARGET\nnpm error notarget No matching version found for is-number@99.0.0.\n";
        assert_eq!(
            diagnose(LayerRuntime::Node, npm, &Status::NonzeroExit, None)
                .0
                .as_deref(),
            Some("is-number")
        );
        let (p, why) = diagnose(LayerRuntime::Python, "", &Status::Timeout, Some("10s"));
        assert!(p.is_none() && why.contains("time limit"), "{why}");
    }

    #[test]
    fn names_and_hosts_normalize() {
        assert_eq!(normalize_pip_name("Foo.Bar__baz"), "foo-bar-baz");
        assert_eq!(npm_name("@scope/x@^1.0.0"), "@scope/x");
        assert_eq!(url_host("https://pypi.org/simple"), Some("pypi.org".into()));
        assert_eq!(url_host("http://user@mirror:8080/x"), Some("mirror:8080".into()));
        assert_eq!(url_host("file:///x"), None);
    }

    #[test]
    fn tarballs_are_found_by_name_and_range() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "is-number-6.0.0.tgz",
            "is-number-7.0.0.tgz",
            "scope-x-1.2.0.tgz",
            "other-1.0.0.tgz",
        ] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let p = |name: &str, v: Option<&str>| LayerPackage {
            name: name.into(),
            version: v.map(String::from),
            hashes: vec![],
        };
        assert_eq!(
            folder_tarball(dir.path(), &p("is-number", None)).as_deref(),
            Some("is-number-7.0.0.tgz")
        );
        assert_eq!(
            folder_tarball(dir.path(), &p("is-number", Some("^6"))).as_deref(),
            Some("is-number-6.0.0.tgz")
        );
        assert_eq!(
            folder_tarball(dir.path(), &p("@scope/x", None)).as_deref(),
            Some("scope-x-1.2.0.tgz")
        );
        assert_eq!(folder_tarball(dir.path(), &p("missing", None)), None);
    }
}
