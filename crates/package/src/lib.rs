//! Warden's plugin package format, as pure functions: bytes in, verdicts out.
//!
//! A package is a zip holding `manifest.json` and the plugin's files.
//! [`open`] checks everything a package can get wrong and reports every
//! problem at once, each naming its JSON pointer or archive path:
//! the archive itself (hostile until proven otherwise, see [`archive`]), the
//! manifest ([`manifest`]), the schemas it carries ([`schema`]), and that the
//! entrypoint exists; for an API plugin, its OpenAPI document and the tools
//! derived from it ([`openapi`]). [`Package::analyze`] builds the reviewers' report:
//! static analysis ([`analysis`]), the dependency deny-list ([`deps`]), and
//! what the version asks for beyond the last active one.
//!
//! Must never: touch the filesystem, the network, or the clock.

pub mod analysis;
pub mod archive;
pub mod build;
pub mod deps;
pub mod hosts;
pub mod manifest;
pub mod openapi;
pub mod schema;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use analysis::{Finding, Severity};
pub use archive::{ArchiveLimits, Entry};
pub use deps::{DenyRule, Ecosystem};
pub use manifest::{Manifest, ManifestLimits, Permissions, PlatformLimits};

/// One problem with a package: where (a JSON pointer into the manifest such
/// as `/limits/memory_mb`, or `archive:<path>`) and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Problem {
    /// JSON pointer or `archive:<path>`.
    pub location: String,
    /// What is wrong, for the developer.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// What a platform accepts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Archive caps.
    pub archive: ArchiveLimits,
    /// Limits plugins may ask for.
    pub platform: PlatformLimits,
    /// Denied dependencies.
    pub deny: Vec<DenyRule>,
    /// Reject a version whose report has a critical finding.
    pub reject_critical: bool,
}

/// One file of the canonical file list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Path in the package.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Marked executable.
    pub executable: bool,
}

/// A package that passed every check.
#[derive(Debug, Clone)]
pub struct Package {
    /// The manifest.
    pub manifest: Manifest,
    /// For an API plugin (`type: api`): the servers and tools derived from
    /// its OpenAPI document. The registry stores them with the version.
    pub api: Option<openapi::ApiSpec>,
    /// SHA-256 of the whole archive, hex.
    pub sha256: String,
    /// Canonical file list: every regular file, sorted by path.
    pub files: Vec<FileInfo>,
    entries: Vec<Entry>,
}

const CODE_EXTENSIONS: &[(&str, &[&str])] = &[
    ("python3", &["py"]),
    ("node", &["js", "mjs", "cjs"]),
    ("shell", &["sh", "bash"]),
    ("wasm", &["wasm"]),
];

/// Check a package. On failure, every problem found.
pub fn open(bytes: &[u8], policy: &Policy) -> Result<Package, Vec<Problem>> {
    let entries = archive::read(bytes, &policy.archive)?;
    let Some(manifest_entry) = entries.iter().find(|e| e.path == "manifest.json") else {
        return Err(vec![Problem {
            location: "archive:manifest.json".into(),
            message: "missing: every package needs manifest.json at its root".into(),
        }]);
    };
    let mut manifest = manifest::parse(&manifest_entry.data, &policy.platform)?;
    if manifest.kind == manifest::API_TYPE {
        let spec = api_document(&entries, &policy.platform)?;
        manifest.runtime = manifest::API_RUNTIME.to_owned();
        manifest.entrypoint = spec.document.clone();
        return Ok(finish(bytes, manifest, Some(spec), entries));
    }
    let mut problems = Vec::new();
    let ep = manifest.entrypoint.trim_start_matches("./");
    let entry_problem = |message: String| Problem {
        location: "/entrypoint".into(),
        message,
    };
    if ep.split('/').any(|p| p == "..") || manifest.entrypoint.starts_with('/') {
        problems.push(entry_problem(format!(
            "`{}` must be a path inside the package",
            manifest.entrypoint
        )));
    } else if manifest.runtime == "go" {
        // The build compiles the package at the root (`go build .`).
        if !(ep == "." || ep.is_empty()) {
            problems.push(entry_problem(format!(
                "`{}`: Go plugins are built from the package root; set the entrypoint to `.`",
                manifest.entrypoint
            )));
        }
        // Go sources at the package root, which the build compiles.
        let has_go = entries
            .iter()
            .any(|e| !e.path.contains('/') && e.path.ends_with(".go"));
        if !has_go {
            problems.push(entry_problem(format!(
                "no .go files in `{}`",
                manifest.entrypoint
            )));
        }
        if !entries.iter().any(|e| e.path == "go.mod") {
            problems.push(Problem {
                location: "archive:go.mod".into(),
                message: "missing: Go plugins need go.mod at the package root (dependencies vendored)".into(),
            });
        }
    } else {
        match entries.iter().find(|e| e.path == ep) {
            None => problems.push(entry_problem(format!(
                "`{}` is not in the package",
                manifest.entrypoint
            ))),
            Some(e) => {
                if let Some((_, exts)) = CODE_EXTENSIONS.iter().find(|(r, _)| *r == manifest.runtime) {
                    let ext = ep.rsplit_once('.').map(|(_, x)| x).unwrap_or("");
                    if !exts.contains(&ext) {
                        problems.push(entry_problem(format!(
                            "`{}` does not look like a {} file (expected .{})",
                            manifest.entrypoint,
                            manifest.runtime,
                            exts.join(", .")
                        )));
                    }
                }
                if manifest.runtime == "wasm" && !e.data.starts_with(b"\0asm") {
                    problems.push(entry_problem(format!(
                        "`{}` is not a WebAssembly module (it does not start with the `\\0asm` magic)",
                        manifest.entrypoint
                    )));
                }
                if manifest.runtime == "native" && !e.executable {
                    problems.push(entry_problem(format!(
                        "`{}` must be executable (mode 0755) for a native plugin",
                        manifest.entrypoint
                    )));
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(finish(bytes, manifest, None, entries))
}

/// Files an API plugin's package may hold besides the manifest and the
/// document: words for people, never run.
const API_DOCS: &[&str] = &["README.md", "LICENSE", "CHANGELOG.md"];

/// An API plugin's package: `manifest.json` and one OpenAPI document, no
/// code; the document checked and its tools derived.
fn api_document(entries: &[Entry], platform: &PlatformLimits) -> Result<openapi::ApiSpec, Vec<Problem>> {
    let mut problems = Vec::new();
    let docs: Vec<&Entry> = entries
        .iter()
        .filter(|e| openapi::DOCUMENT_NAMES.contains(&e.path.as_str()))
        .collect();
    for e in entries {
        let known = e.path == "manifest.json"
            || openapi::DOCUMENT_NAMES.contains(&e.path.as_str())
            || API_DOCS.contains(&e.path.as_str());
        if !known {
            problems.push(Problem {
                location: format!("archive:{}", e.path),
                message: format!(
                    "an API plugin holds manifest.json, its OpenAPI document and at most {} (no code)",
                    API_DOCS.join(", ")
                ),
            });
        }
    }
    match docs.as_slice() {
        [] => problems.push(Problem {
            location: "archive:openapi.json".into(),
            message: format!(
                "missing: an API plugin needs its OpenAPI document at the package root ({})",
                openapi::DOCUMENT_NAMES.join(", ")
            ),
        }),
        [doc] if problems.is_empty() => {
            let rules = openapi::ServerRules {
                ip_literals: platform.network_ip_literals,
                local: platform.api_local_servers,
            };
            return openapi::parse(&doc.path, &doc.data, rules);
        }
        [_] => {}
        [_, more @ ..] => {
            for e in more {
                problems.push(Problem {
                    location: format!("archive:{}", e.path),
                    message: "a second OpenAPI document: an API plugin has one".into(),
                });
            }
        }
    }
    Err(problems)
}

fn finish(bytes: &[u8], manifest: Manifest, api: Option<openapi::ApiSpec>, entries: Vec<Entry>) -> Package {
    let files = entries
        .iter()
        .map(|e| FileInfo {
            path: e.path.clone(),
            size: e.data.len() as u64,
            sha256: e.sha256.clone(),
            executable: e.executable,
        })
        .collect();
    Package {
        manifest,
        api,
        sha256: archive::hex(&Sha256::digest(bytes)),
        files,
        entries,
    }
}

/// A change in what a version asks for, compared with the last active one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionChange {
    /// What changed (`permissions.network`, `api.tools`, `limits.memory_mb`,
    /// `runtime`). A newly declared host (for an API plugin: a new server
    /// host) and a new tool are each one change of their own, `from` empty.
    pub field: String,
    /// Before.
    pub from: String,
    /// After.
    pub to: String,
}

/// The reviewers' report on a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// What this version asks for beyond the last active one: first, so a
    /// reviewer cannot miss it.
    pub permission_changes: Vec<PermissionChange>,
    /// Counts by severity.
    pub summary: Summary,
    /// Static analysis and deny-list findings.
    pub findings: Vec<Finding>,
    /// The version would be rejected by a `reject_critical` policy.
    pub has_critical: bool,
}

/// Finding counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Critical findings.
    pub critical: usize,
    /// Warnings.
    pub warning: usize,
    /// Informational findings.
    pub info: usize,
}

impl Package {
    /// The package's files with their contents (for extraction).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The reviewers' report. `previous` is the manifest of the plugin's last
    /// active version, if any.
    pub fn analyze(&self, previous: Option<&Manifest>, policy: &Policy) -> Report {
        self.analyze_since(previous.map(|m| (m, None)), policy)
    }

    /// The reviewers' report against the plugin's last active version: its
    /// manifest and, for an API plugin, its derived tools.
    pub fn analyze_since(
        &self,
        previous: Option<(&Manifest, Option<&openapi::ApiSpec>)>,
        policy: &Policy,
    ) -> Report {
        let mut findings = Vec::new();
        for e in &self.entries {
            if e.path.starts_with("vendor/")
                || e.path.contains("/vendor/")
                || e.path.contains("node_modules/")
            {
                // Third-party code is listed by the deny-list, not analyzed
                // line by line (a reviewer cannot act on it).
                continue;
            }
            findings.extend(analysis::scan(&e.path, &e.data));
            findings.extend(deps::check(&e.path, &e.data, &policy.deny));
        }
        findings.sort_by(|a, b| (b.severity, &a.file, a.line).cmp(&(a.severity, &b.file, b.line)));
        let mut summary = Summary::default();
        for f in &findings {
            match f.severity {
                Severity::Critical => summary.critical += 1,
                Severity::Warning => summary.warning += 1,
                Severity::Info => summary.info += 1,
            }
        }
        Report {
            permission_changes: previous
                .map(|(m, api)| {
                    permission_diff((m, api), (&self.manifest, self.api.as_ref()), &policy.platform)
                })
                .unwrap_or_default(),
            summary,
            has_critical: summary.critical > 0,
            findings,
        }
    }
}

/// Every host a version may reach: its declared network, and for an API
/// plugin its document's servers.
fn hosts<'a>(m: &'a Manifest, api: Option<&'a openapi::ApiSpec>) -> Vec<&'a str> {
    let mut out: Vec<&str> = m.permissions.network.iter().map(String::as_str).collect();
    for h in api.iter().flat_map(|a| &a.hosts) {
        if !out.contains(&h.as_str()) {
            out.push(h);
        }
    }
    out
}

/// What `new` asks for beyond `old` (each a manifest and, for an API
/// plugin, its derived tools).
pub fn permission_diff(
    (old, old_api): (&Manifest, Option<&openapi::ApiSpec>),
    (new, new_api): (&Manifest, Option<&openapi::ApiSpec>),
    p: &PlatformLimits,
) -> Vec<PermissionChange> {
    let mut out = Vec::new();
    let mut up = |field: &str, from: String, to: String| {
        out.push(PermissionChange {
            field: field.into(),
            from,
            to,
        })
    };
    // Each host the new version may reach that the old one could not, and
    // each credential it names that the old one did not, first.
    // An API plugin's hosts are its document's servers.
    let old_hosts = hosts(old, old_api);
    for host in hosts(new, new_api) {
        if !old_hosts.contains(&host) {
            up("permissions.network", String::new(), host.to_owned());
        }
    }
    // Each tool an API plugin gains, and each it keeps but now calls
    // another way.
    let old_tools = old_api.map(|a| a.tools.as_slice()).unwrap_or_default();
    for t in new_api.iter().flat_map(|a| &a.tools) {
        let shown = |t: &openapi::Tool| format!("{} {} {}", t.name, t.method, t.path);
        match old_tools.iter().find(|o| o.name == t.name) {
            None => up("api.tools", String::new(), shown(t)),
            Some(o) if (&o.method, &o.path) != (&t.method, &t.path) => up("api.tools", shown(o), shown(t)),
            Some(_) => {}
        }
    }
    for name in &new.permissions.credentials {
        if !old.permissions.credentials.contains(name) {
            up("permissions.credentials", String::new(), name.clone());
        }
    }
    if new.runtime != old.runtime {
        up("runtime", old.runtime.clone(), new.runtime.clone());
    }
    if new.timeout_ms(p) > old.timeout_ms(p) {
        up(
            "limits.timeout_ms",
            old.timeout_ms(p).to_string(),
            new.timeout_ms(p).to_string(),
        );
    }
    if new.memory_mb(p) > old.memory_mb(p) {
        up(
            "limits.memory_mb",
            old.memory_mb(p).to_string(),
            new.memory_mb(p).to_string(),
        );
    }
    if new.pids(p) > old.pids(p) {
        up("limits.pids", old.pids(p).to_string(), new.pids(p).to_string());
    }
    out
}
