//! `warden plugin pack`: gather a plugin directory into a package, exactly
//! as the server will check it (`warden_package::open`, the same messages,
//! every problem at once).
//!
//! Also, so that a package is complete:
//! * a Rust plugin (a `Cargo.toml` beside a `native` manifest) is built with
//!   `cargo build --release` and its binary placed at the entrypoint;
//! * the Warden SDK of the plugin's language is added when the code uses it
//!   and the package does not carry its own copy (Python `warden_sdk/`,
//!   Node.js `node_modules/@warden/sdk/`, Go `vendor/warden.dev/sdk/`, with
//!   a local `replace` of it dropped from `go.mod`).
//!
//! Skipped: `.git/`, `target/`, `__pycache__/`, `*.pyc`, `.DS_Store`, zips
//! at the top level, and whatever `.wardenignore` lists (one name, `dir/`
//! or `*.ext` per line).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::Args;
use warden_package::build::ZipBuilder;
use warden_package::{Package, Policy, Problem};

use super::{exit, hint, plugin_dir, print_problems, read_manifest, sdk};

/// Arguments of `warden plugin pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    /// The plugin directory [default: .].
    pub dir: Option<PathBuf>,
    /// Where to write the package [default: ./CODE-VERSION.zip].
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Print the reviewers' report (findings) too.
    #[arg(long)]
    pub report: bool,
}

/// A packed plugin.
pub struct Packed {
    /// The zip.
    pub zip: Vec<u8>,
    /// The package as the server will see it.
    pub package: Package,
}

/// Why packing failed.
pub enum PackFailure {
    /// The plugin is invalid: located problems.
    Invalid(Vec<Problem>),
    /// Something else (I/O, a build that could not run).
    Other(String),
}

impl PackFailure {
    /// Report it and give the exit code.
    pub fn report(self) -> ExitCode {
        match self {
            PackFailure::Invalid(problems) => {
                print_problems("the plugin is invalid", &problems);
                ExitCode::from(exit::VALIDATION)
            }
            PackFailure::Other(msg) => {
                eprintln!("{} {msg}", crate::style::error("error:"));
                ExitCode::from(exit::VALIDATION)
            }
        }
    }
}

fn problem(location: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        location: location.into(),
        message: message.into(),
    }
}

struct Ignore {
    names: Vec<String>,
    dirs: Vec<String>,
    exts: Vec<String>,
}

impl Ignore {
    fn load(dir: &Path) -> Ignore {
        let mut ig = Ignore {
            names: vec![".DS_Store".into()],
            dirs: vec![".git".into(), "target".into(), "__pycache__".into()],
            exts: vec!["pyc".into()],
        };
        if let Ok(text) = std::fs::read_to_string(dir.join(".wardenignore")) {
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                if let Some(d) = line.strip_suffix('/') {
                    ig.dirs.push(d.to_owned());
                } else if let Some(e) = line.strip_prefix("*.") {
                    ig.exts.push(e.to_owned());
                } else {
                    ig.names.push(line.to_owned());
                }
            }
        }
        ig
    }

    fn skips(&self, rel: &str, is_dir: bool) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if is_dir {
            return self.dirs.iter().any(|d| d == name || d == rel);
        }
        if self.names.iter().any(|n| n == name || n == rel) {
            return true;
        }
        if !rel.contains('/') && name.ends_with(".zip") {
            return true;
        }
        name.rsplit_once('.')
            .is_some_and(|(_, ext)| self.exts.iter().any(|e| e == ext))
    }
}

/// Files of the plugin: relative path → (bytes, executable).
type Files = BTreeMap<String, (Vec<u8>, bool)>;

fn collect(dir: &Path, progress: bool) -> Result<Files, PackFailure> {
    let ignore = Ignore::load(dir);
    let mut paths = Vec::new();
    let mut stack = vec![(dir.to_owned(), String::new())];
    let mut problems = Vec::new();
    while let Some((abs, rel)) = stack.pop() {
        let entries =
            std::fs::read_dir(&abs).map_err(|e| PackFailure::Other(format!("{}: {e}", abs.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| PackFailure::Other(format!("{}: {e}", abs.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel_path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry
                .file_type()
                .map_err(|e| PackFailure::Other(format!("{rel_path}: {e}")))?;
            if ft.is_symlink() {
                problems.push(problem(
                    format!("archive:{rel_path}"),
                    "symbolic links are not allowed in a package: copy the file",
                ));
            } else if ft.is_dir() {
                if !ignore.skips(&rel_path, true) {
                    stack.push((entry.path(), rel_path));
                }
            } else if ft.is_file() {
                if !ignore.skips(&rel_path, false) {
                    paths.push((entry.path(), rel_path));
                }
            } else {
                problems.push(problem(
                    format!("archive:{rel_path}"),
                    "only regular files can be packed",
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(PackFailure::Invalid(problems));
    }
    paths.sort_by(|a, b| a.1.cmp(&b.1));
    let bar = (progress && std::io::stderr().is_terminal() && paths.len() > 200).then(|| {
        let bar = indicatif::ProgressBar::new(paths.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} reading files {bar:30} {pos}/{len}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut files = Files::new();
    for (abs, rel) in paths {
        let data = std::fs::read(&abs).map_err(|e| PackFailure::Other(format!("{rel}: {e}")))?;
        let executable = std::fs::metadata(&abs)
            .map(|m| m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        files.insert(rel, (data, executable));
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(files)
}

/// Build a Rust plugin with cargo and return its binary.
fn cargo_build(dir: &Path) -> Result<PathBuf, PackFailure> {
    eprintln!(
        "{} building the Rust plugin with `cargo build --release`",
        crate::style::dim("==>")
    );
    let out = Command::new("cargo")
        .args(["build", "--release", "--message-format=json-render-diagnostics"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| PackFailure::Other(format!("cannot run cargo: {e} (is Rust installed?)")))?;
    if !out.status.success() {
        return Err(PackFailure::Invalid(vec![problem(
            "Cargo.toml",
            "cargo build failed (its errors are above)",
        )]));
    }
    let mut binary = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|x| x == "bin"))
            && let Some(exe) = msg["executable"].as_str()
        {
            binary = Some(PathBuf::from(exe));
        }
    }
    binary.ok_or_else(|| {
        PackFailure::Invalid(vec![problem(
            "Cargo.toml",
            "the crate has no binary target to package",
        )])
    })
}

fn add_sdks(runtime: &str, files: &mut Files, notes: &mut Vec<String>) {
    let text = |f: &(Vec<u8>, bool)| String::from_utf8_lossy(&f.0).into_owned();
    match runtime {
        "python3" => {
            let uses = files.iter().any(|(p, f)| {
                p.ends_with(".py")
                    && text(f).lines().any(|l| {
                        l.trim_start().starts_with("import warden_sdk")
                            || l.trim_start().starts_with("from warden_sdk")
                    })
            });
            if uses && !files.contains_key("warden_sdk/__init__.py") {
                files.insert(
                    "warden_sdk/__init__.py".into(),
                    (sdk::PYTHON.as_bytes().to_vec(), false),
                );
                notes.push(format!(
                    "added the Warden Python SDK {} (warden_sdk/)",
                    sdk::VERSION
                ));
            }
        }
        "node" => {
            let uses = files
                .get("package.json")
                .and_then(|f| serde_json::from_slice::<serde_json::Value>(&f.0).ok())
                .is_some_and(|p| p["dependencies"].get("@warden/sdk").is_some());
            if uses && !files.contains_key("node_modules/@warden/sdk/package.json") {
                for (name, body) in [
                    ("package.json", sdk::NODE_PACKAGE),
                    ("index.js", sdk::NODE_INDEX),
                    ("index.d.ts", sdk::NODE_TYPES),
                ] {
                    files.insert(
                        format!("node_modules/@warden/sdk/{name}"),
                        (body.as_bytes().to_vec(), false),
                    );
                }
                notes.push(format!(
                    "added the Warden Node.js SDK {} (node_modules/@warden/sdk/)",
                    sdk::VERSION
                ));
            }
        }
        "go" => {
            let Some(gomod) = files.get("go.mod").map(text) else {
                return;
            };
            if !gomod.contains("warden.dev/sdk") {
                return;
            }
            // A local `replace` of the SDK points outside the package.
            let kept: Vec<&str> = gomod
                .lines()
                .filter(|l| !(l.trim_start().starts_with("replace") && l.contains("warden.dev/sdk")))
                .collect();
            if kept.len() != gomod.lines().count() {
                files.insert("go.mod".into(), ((kept.join("\n") + "\n").into_bytes(), false));
                notes.push("dropped the local `replace warden.dev/sdk` from go.mod".into());
            }
            if !files.contains_key("vendor/warden.dev/sdk/plugin.go") {
                files.insert(
                    "vendor/warden.dev/sdk/plugin.go".into(),
                    (sdk::GO_PLUGIN.as_bytes().to_vec(), false),
                );
                files.insert(
                    "vendor/warden.dev/sdk/go.mod".into(),
                    (sdk::GO_MOD.as_bytes().to_vec(), false),
                );
                notes.push(format!(
                    "vendored the Warden Go SDK {} (vendor/warden.dev/sdk/)",
                    sdk::VERSION
                ));
            }
            let modules = files.get("vendor/modules.txt").map(text).unwrap_or_default();
            let modules = if modules.contains("# warden.dev/sdk ") {
                // `go mod vendor` with the replace wrote `=> path`: drop it.
                modules
                    .lines()
                    .map(|l| match l.strip_prefix("# warden.dev/sdk ") {
                        Some(rest) => {
                            format!("# warden.dev/sdk {}", rest.split(" => ").next().unwrap_or(rest))
                        }
                        None => l.to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
                    + "\n"
            } else {
                modules + sdk::GO_MODULES_TXT
            };
            files.insert("vendor/modules.txt".into(), (modules.into_bytes(), false));
        }
        _ => {}
    }
}

/// Gather, complete, zip and check the plugin in `dir`. `notes` receives
/// what was added or built.
pub fn build_package(dir: &Path, progress: bool, notes: &mut Vec<String>) -> Result<Packed, PackFailure> {
    if !dir.join("manifest.json").is_file() {
        return Err(PackFailure::Invalid(vec![problem(
            "manifest.json",
            format!(
                "{} has no manifest.json (is this a plugin directory?)",
                dir.display()
            ),
        )]));
    }
    let manifest = read_manifest(dir).map_err(|e| PackFailure::Invalid(vec![problem("manifest.json", e)]))?;
    let runtime = manifest["runtime"].as_str().unwrap_or_default().to_owned();
    let entrypoint = manifest["entrypoint"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("./")
        .to_owned();
    let mut built = None;
    if runtime == "native" && dir.join("Cargo.toml").is_file() {
        if entrypoint.is_empty() || entrypoint.contains("..") || entrypoint.starts_with('/') {
            return Err(PackFailure::Invalid(vec![problem(
                "/entrypoint",
                "name the binary's path in the package",
            )]));
        }
        let binary = cargo_build(dir)?;
        let data =
            std::fs::read(&binary).map_err(|e| PackFailure::Other(format!("{}: {e}", binary.display())))?;
        notes.push(format!("built {} with cargo → {entrypoint}", binary.display()));
        built = Some(data);
    }
    let mut files = collect(dir, progress)?;
    if let Some(data) = built {
        files.insert(entrypoint, (data, true));
    }
    add_sdks(&runtime, &mut files, notes);
    let mut zip = ZipBuilder::new();
    for (path, (data, executable)) in &files {
        zip = zip.file_mode(path, data, if *executable { 0o755 } else { 0o644 });
    }
    let zip = zip.finish();
    let package = warden_package::open(&zip, &Policy::default()).map_err(PackFailure::Invalid)?;
    Ok(Packed { zip, package })
}

/// Print the report's summary (and findings with `full`) on stderr.
pub fn print_report(package: &Package, full: bool) {
    let report = package.analyze(None, &Policy::default());
    let s = report.summary;
    if s.critical + s.warning + s.info == 0 {
        return;
    }
    eprintln!(
        "{} reviewers will see {} critical, {} warning and {} info finding(s)",
        crate::style::warn("note:"),
        s.critical,
        s.warning,
        s.info
    );
    if full {
        for f in &report.findings {
            eprintln!(
                "  {:?} {} {}:{} {}",
                f.severity, f.rule, f.file, f.line, f.message
            );
        }
    } else {
        hint("`warden plugin pack --report` lists them");
    }
}

/// Run the command.
pub fn pack_command(args: PackArgs) -> anyhow::Result<ExitCode> {
    let dir = plugin_dir(args.dir);
    let mut notes = Vec::new();
    let packed = match build_package(&dir, true, &mut notes) {
        Ok(p) => p,
        Err(f) => return Ok(f.report()),
    };
    for n in &notes {
        eprintln!("{} {n}", crate::style::dim("==>"));
    }
    let m = &packed.package.manifest;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}-{}.zip", m.code, m.version)));
    std::fs::write(&out, &packed.zip)?;
    eprintln!(
        "{} {} {} ({} files, {} bytes, sha256 {})",
        crate::style::ok("packed"),
        m.code,
        m.version,
        packed.package.files.len(),
        packed.zip.len(),
        &packed.package.sha256[..12]
    );
    print_report(&packed.package, args.report);
    println!("{}", out.display());
    hint(&format!("try it with `warden plugin test {}`", dir.display()));
    Ok(ExitCode::SUCCESS)
}
