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
//! The package goes to `dist/CODE-VERSION.zip` in the plugin directory,
//! and a package never holds a package of its own plugin: skipped are hidden
//! files and directories, `target/`, `__pycache__/`, `*.pyc`, `dist/` at the
//! plugin's root, any earlier package of this plugin wherever it lies (a
//! zip whose `manifest.json` has this plugin's `code`, e.g. an earlier
//! `--out`), and whatever `.wardenignore` lists (one name, `dir/` or `*.ext`
//! per line).

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
    /// Where to write the package [default: DIR/dist/CODE-VERSION.zip].
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

/// What `pack` leaves out by path: every hidden file or directory (`.git`,
/// `.env`, `.venv`, `.wardenignore` itself…), `target/`, `__pycache__/`,
/// `*.pyc`, `dist/` at the root (where packages are written), the output
/// zip, and the patterns of `.wardenignore` (gitignore-like: `#`
/// comments, `*` and `?` wildcards, a trailing `/` for directories only, a
/// leading `/` or an inner `/` to match from the plugin's root).
struct Ignore {
    patterns: Vec<(String, bool, bool)>, // (glob, dirs only, anchored)
    out: Option<PathBuf>,
}

/// `*` and `?` within one path segment.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && text[0] != b'/' && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(c)) if *c != b'/' => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(c)) if p == c => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

impl Ignore {
    fn load(dir: &Path, out: Option<&Path>) -> Result<Ignore, PackFailure> {
        let mut ig = Ignore {
            patterns: vec![
                ("target".into(), true, false),
                ("__pycache__".into(), true, false),
                ("*.pyc".into(), false, false),
                // Where `pack` writes; only at the root, so that a vendored
                // dependency's `dist/` (`node_modules/x/dist/`) is packed.
                (OUTPUT_DIR.into(), true, true),
            ],
            out: out.and_then(|o| o.canonicalize().ok()),
        };
        if let Ok(text) = std::fs::read_to_string(dir.join(".wardenignore")) {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if line.starts_with('!') {
                    return Err(PackFailure::Invalid(vec![problem(
                        format!(".wardenignore:{}", n + 1),
                        "negated patterns (`!`) are not supported",
                    )]));
                }
                let dirs_only = line.ends_with('/');
                let body = line.trim_end_matches('/');
                let anchored = body.starts_with('/') || body.contains('/');
                ig.patterns
                    .push((body.trim_start_matches('/').to_owned(), dirs_only, anchored));
            }
        }
        Ok(ig)
    }

    fn skips(&self, abs: &Path, rel: &str, is_dir: bool) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if name.starts_with('.') {
            return true;
        }
        if !is_dir
            && self
                .out
                .as_deref()
                .is_some_and(|o| abs.canonicalize().is_ok_and(|a| a == o))
        {
            return true;
        }
        self.patterns.iter().any(|(pat, dirs_only, anchored)| {
            (!dirs_only || is_dir)
                && if *anchored {
                    glob(pat.as_bytes(), rel.as_bytes())
                } else {
                    glob(pat.as_bytes(), name.as_bytes())
                }
        })
    }
}

/// Files of the plugin: relative path → (bytes, executable).
type Files = BTreeMap<String, (Vec<u8>, bool)>;

/// The folder of the plugin directory that `pack` writes packages to.
const OUTPUT_DIR: &str = "dist";

/// Whether `data` is a package of the plugin `code`: an earlier output of
/// `pack`, which a package must never hold (it would grow by a copy of
/// itself on every pack).
fn is_package_of(data: &[u8], code: &str) -> bool {
    if !data.starts_with(b"PK") {
        return false;
    }
    let Ok(entries) = warden_package::archive::read(data, &Policy::default().archive) else {
        return false;
    };
    entries
        .iter()
        .find(|e| e.path == "manifest.json")
        .and_then(|m| serde_json::from_slice::<serde_json::Value>(&m.data).ok())
        .is_some_and(|m| m["code"] == code)
}

/// Read the files of the plugin `code` in `dir`, leaving out what [`Ignore`]
/// skips and earlier packages of the plugin (with a note in `notes`).
fn collect(
    dir: &Path,
    out: Option<&Path>,
    code: &str,
    progress: bool,
    notes: &mut Vec<String>,
) -> Result<Files, PackFailure> {
    let ignore = Ignore::load(dir, out)?;
    let limits = Policy::default().archive;
    let mut paths = Vec::new();
    let mut stack = vec![(dir.to_owned(), String::new())];
    let mut problems = Vec::new();
    let mut total: u64 = 0;
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
            // Ignored paths are never looked at, whatever they are.
            if ignore.skips(&entry.path(), &rel_path, ft.is_dir()) {
                continue;
            }
            // Names are the plugin author's, but may be a stranger's
            // checkout: escaped like the server's problems.
            let shown = warden_package::archive::escape(&rel_path).into_owned();
            if ft.is_symlink() {
                problems.push(problem(
                    format!("archive:{shown}"),
                    "symbolic links are not allowed in a package: copy the file, or list it in .wardenignore",
                ));
            } else if ft.is_dir() {
                stack.push((entry.path(), rel_path));
            } else if ft.is_file() {
                // Sizes are checked before anything is read.
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                total = total.saturating_add(size);
                if size > limits.max_file_bytes {
                    problems.push(problem(
                        format!("archive:{shown}"),
                        format!(
                            "{size} bytes; one file may have at most {} (list it in .wardenignore?)",
                            limits.max_file_bytes
                        ),
                    ));
                }
                paths.push((entry.path(), rel_path));
            } else {
                problems.push(problem(
                    format!("archive:{shown}"),
                    "only regular files can be packed",
                ));
            }
        }
        if paths.len() > limits.max_entries {
            problems.push(problem(
                "archive:",
                format!(
                    "more than {} files: a package may have at most that many",
                    limits.max_entries
                ),
            ));
            break;
        }
    }
    if total > limits.max_unpacked_bytes {
        problems.push(problem(
            "archive:",
            format!(
                "{total} bytes in all; a package may have at most {}",
                limits.max_unpacked_bytes
            ),
        ));
    }
    if !problems.is_empty() {
        problems.sort();
        problems.dedup();
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
        if is_package_of(&data, code) {
            notes.push(format!(
                "left out {}: a package of this plugin (an earlier `pack` output)",
                warden_package::archive::escape(&rel)
            ));
            continue;
        }
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

/// `(module, version)` pairs `go.mod` requires (line and block forms).
fn go_requirements(gomod: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in gomod.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        let spec = if in_block {
            if line == ")" {
                in_block = false;
                continue;
            }
            line
        } else if let Some(rest) = line.strip_prefix("require") {
            let rest = rest.trim();
            if rest == "(" {
                in_block = true;
                continue;
            }
            rest
        } else {
            continue;
        };
        let mut parts = spec.split_whitespace();
        if let (Some(m), Some(v)) = (parts.next(), parts.next()) {
            out.push((m.to_owned(), v.to_owned()));
        }
    }
    out
}

/// `go.mod` without `replace` directives of `module` (line and block forms).
fn drop_go_replace(gomod: &str, module: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in gomod.lines() {
        let t = line.split("//").next().unwrap_or("").trim();
        if let Some(b) = block.as_mut() {
            if t == ")" {
                let kept = block.take().unwrap_or_default();
                // Keep the block only if something is left in it.
                if kept.len() > 1 {
                    out.extend(kept);
                    out.push(line);
                }
            } else if !t.starts_with(module) {
                b.push(line);
            }
            continue;
        }
        if t.starts_with("replace") && t.trim_start_matches("replace").trim() == "(" {
            block = Some(vec![line]);
            continue;
        }
        if t.starts_with("replace") && t.trim_start_matches("replace").trim().starts_with(module) {
            continue;
        }
        out.push(line);
    }
    out.join("\n") + "\n"
}

/// `vendor/modules.txt` with `module`'s section (whatever its version or
/// replacement) replaced by one for `version`.
fn go_modules_txt(existing: &str, module: &str, version: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in existing.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            skipping = rest.split_whitespace().next() == Some(module);
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!("# {module} {version}\n## explicit; go 1.18\n{module}\n"));
    out
}

fn uses_python_sdk(source: &str) -> bool {
    source.lines().any(|l| {
        let t = l.trim_start();
        (t.starts_with("import ") || t.starts_with("from "))
            && t.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|w| w == "warden_sdk")
    })
}

fn add_sdks(runtime: &str, files: &mut Files, notes: &mut Vec<String>) -> Result<(), PackFailure> {
    let text = |f: &(Vec<u8>, bool)| String::from_utf8_lossy(&f.0).into_owned();
    match runtime {
        "python3" => {
            let uses = files
                .iter()
                .any(|(p, f)| p.ends_with(".py") && uses_python_sdk(&text(f)));
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
            const SDK: &str = "warden.dev/sdk";
            let Some(gomod) = files.get("go.mod").map(text) else {
                return Ok(());
            };
            let requirements = go_requirements(&gomod);
            if let Some((_, version)) = requirements.iter().find(|(m, _)| m == SDK) {
                let rewritten = drop_go_replace(&gomod, SDK);
                if rewritten.trim_end() != gomod.trim_end() {
                    files.insert("go.mod".into(), (rewritten.into_bytes(), false));
                    notes.push(format!("dropped the local `replace {SDK}` from go.mod"));
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
                files.insert(
                    "vendor/modules.txt".into(),
                    (go_modules_txt(&modules, SDK, version).into_bytes(), false),
                );
            }
            // The build in the jail is offline: everything else must be vendored.
            let modules = files.get("vendor/modules.txt").map(text).unwrap_or_default();
            let missing: Vec<Problem> = requirements
                .iter()
                .filter(|(m, _)| m != SDK)
                .filter(|(m, v)| !modules.lines().any(|l| l.starts_with(&format!("# {m} {v}"))))
                .map(|(m, v)| problem("go.mod", format!("requires {m} {v}, which is not vendored: run `go mod vendor` (the build has no network)")))
                .collect();
            if !missing.is_empty() {
                return Err(PackFailure::Invalid(missing));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Gather, complete, zip and check the plugin in `dir`. `notes` receives
/// what was added or built.
pub fn build_package(
    dir: &Path,
    out: Option<&Path>,
    progress: bool,
    notes: &mut Vec<String>,
) -> Result<Packed, PackFailure> {
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
    let code = manifest["code"].as_str().unwrap_or_default().to_owned();
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
    let mut files = collect(dir, out, &code, progress, notes)?;
    if let Some(data) = built {
        files.insert(entrypoint, (data, true));
    }
    add_sdks(&runtime, &mut files, notes)?;
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
    let packed = match build_package(&dir, args.out.as_deref(), true, &mut notes) {
        Ok(p) => p,
        Err(f) => return Ok(f.report()),
    };
    for n in &notes {
        eprintln!("{} {n}", crate::style::dim("==>"));
    }
    let m = &packed.package.manifest;
    let out = match args.out {
        Some(out) => out,
        None => {
            let folder = dir.join(OUTPUT_DIR);
            if let Err(e) = std::fs::create_dir_all(&folder) {
                eprintln!(
                    "{} cannot create {}: {e}",
                    crate::style::error("error:"),
                    folder.display()
                );
                return Ok(ExitCode::from(2));
            }
            folder.join(format!("{}-{}.zip", m.code, m.version))
        }
    };
    if let Err(e) = std::fs::write(&out, &packed.zip) {
        eprintln!(
            "{} cannot write {}: {e}",
            crate::style::error("error:"),
            out.display()
        );
        return Ok(ExitCode::from(2));
    }
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
    if let Some(api) = &packed.package.api {
        for t in &api.tools {
            eprintln!("  tool {} {} {}", t.name, t.method, t.path);
        }
        eprintln!(
            "{} {} tool(s), calling {}",
            crate::style::dim("==>"),
            api.tools.len(),
            api.servers.join(", ")
        );
    }
    println!("{}", out.display());
    hint(&format!("try it with `warden plugin test {}`", dir.display()));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_modules_are_vendored_consistently() {
        let gomod = "module x\n\ngo 1.18\n\nrequire (\n\twarden.dev/sdk v0.0.0-00010101000000-000000000000\n\tgolang.org/x/text v0.3.0 // indirect\n)\n\nreplace (\n\twarden.dev/sdk => ../sdk\n)\nreplace other.example/m => ./m\n";
        let reqs = go_requirements(gomod);
        assert_eq!(reqs[0].0, "warden.dev/sdk");
        assert_eq!(reqs[1], ("golang.org/x/text".to_owned(), "v0.3.0".to_owned()));
        let dropped = drop_go_replace(gomod, "warden.dev/sdk");
        assert!(
            !dropped.contains("=> ../sdk")
                && !dropped.contains("replace (")
                && dropped.contains("replace other.example/m"),
            "{dropped}"
        );
        let txt = go_modules_txt(
            "# warden.dev/sdk v0.1.0 => ../sdk\n## explicit; go 1.18\nwarden.dev/sdk\n# warden.dev/sdk => ../sdk\n# golang.org/x/text v0.3.0\n## explicit\ngolang.org/x/text\n",
            "warden.dev/sdk",
            "v0.2.0",
        );
        assert_eq!(
            txt,
            "# golang.org/x/text v0.3.0\n## explicit\ngolang.org/x/text\n# warden.dev/sdk v0.2.0\n## explicit; go 1.18\nwarden.dev/sdk\n"
        );
        let mut files = Files::new();
        files.insert("go.mod".into(), (gomod.as_bytes().to_vec(), false));
        let mut notes = Vec::new();
        match add_sdks("go", &mut files, &mut notes) {
            Err(PackFailure::Invalid(p)) => assert!(
                p[0].message
                    .contains("golang.org/x/text v0.3.0, which is not vendored"),
                "{p:?}"
            ),
            _ => panic!("an unvendored requirement must be refused"),
        }
        assert!(
            uses_python_sdk("import os, warden_sdk\n") && uses_python_sdk("from warden_sdk import typed")
        );
        assert!(!uses_python_sdk("import warden_sdkx\n# warden_sdk"));
    }

    #[test]
    fn ignore_patterns_follow_gitignore_basics() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".wardenignore"),
            "# comment\n*.tar.gz\n/data/\ndist/*\nnode_modules\nnotes.txt\n",
        )
        .unwrap();
        let ig = Ignore::load(dir.path(), None).unwrap_or_else(|_| panic!("loads"));
        let p = dir.path();
        let skip = |rel: &str, is_dir: bool| ig.skips(&p.join(rel), rel, is_dir);
        assert!(skip("a.tar.gz", false));
        assert!(skip("data", true));
        assert!(!skip("src/data", true), "anchored to the root");
        assert!(skip("dist/app.js", false));
        assert!(!skip("dist/sub/app.js", false), "`*` stays in one segment");
        assert!(skip("node_modules", true) && skip("lib/node_modules", true));
        assert!(skip("docs/notes.txt", false));
        assert!(skip(".env", false) && skip(".venv", true) && skip(".wardenignore", false));
        assert!(skip("target", true) && skip("x/__pycache__", true) && skip("m.pyc", false));
        assert!(!skip("main.py", false) && !skip("assets.zip", false));
        std::fs::write(dir.path().join(".wardenignore"), "!keep\n").unwrap();
        assert!(Ignore::load(dir.path(), None).is_err());
    }

    #[test]
    fn packages_of_the_plugin_and_dist_are_never_packed() {
        let dir = tempfile::tempdir().unwrap();
        let ig = Ignore::load(dir.path(), None).unwrap_or_else(|_| panic!("loads"));
        let p = dir.path();
        let skip = |rel: &str, is_dir: bool| ig.skips(&p.join(rel), rel, is_dir);
        assert!(skip("dist", true), "where packages are written");
        assert!(!skip("dist", false), "a file named dist is the author's");
        assert!(
            !skip("node_modules/x/dist", true) && !skip("lib/dist", true),
            "a dependency's dist/ is code"
        );
        let package = |code: &str| {
            ZipBuilder::new()
                .file("manifest.json", format!(r#"{{"code": "{code}"}}"#).as_bytes())
                .file("main.py", b"")
                .finish()
        };
        assert!(is_package_of(&package("a.b.c"), "a.b.c"));
        assert!(!is_package_of(&package("a.b.other"), "a.b.c"));
        let no_manifest = ZipBuilder::new().file("data.json", b"{}").finish();
        assert!(!is_package_of(&no_manifest, "a.b.c"));
        assert!(!is_package_of(b"PK\x03\x04 not really", "a.b.c"));
        assert!(!is_package_of(br#"{"code": "a.b.c"}"#, "a.b.c"));
    }
}
