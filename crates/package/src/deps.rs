//! Dependency deny-list: `requirements.txt`, `package.json` and `go.mod`
//! checked against a configurable list of names and version ranges, each
//! finding naming the offending line.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::analysis::{Finding, Severity};

/// Where a dependency comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// Python (`requirements.txt`).
    Pypi,
    /// Node.js (`package.json`).
    Npm,
    /// Go (`go.mod`).
    Go,
}

/// One denied dependency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyRule {
    /// Ecosystem.
    pub ecosystem: Ecosystem,
    /// Package name (PyPI names compare normalized: case, `_`, `.`, `-`).
    pub name: String,
    /// Denied versions as a semver requirement (`<2.31.0`, `>=1.0, <1.4`),
    /// or `*` for every version.
    pub versions: String,
    /// Why, shown to the developer and reviewers.
    pub reason: String,
}

/// A declared dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Declared {
    name: String,
    /// An exact version, when the declaration pins one.
    pinned: Option<semver::Version>,
    line: u32,
}

fn normalize(eco: Ecosystem, name: &str) -> String {
    match eco {
        Ecosystem::Pypi => name.to_lowercase().replace(['_', '.'], "-"),
        _ => name.to_owned(),
    }
}

/// A version string as semver, padding `1.2` to `1.2.0` and dropping `v`.
fn lenient_version(v: &str) -> Option<semver::Version> {
    let v = v.trim().trim_start_matches('v').trim_start_matches('=');
    if let Ok(parsed) = semver::Version::parse(v) {
        return Some(parsed);
    }
    let parts: Vec<&str> = v.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || !parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut padded = parts.join(".");
    for _ in parts.len()..3 {
        padded.push_str(".0");
    }
    semver::Version::parse(&padded).ok()
}

fn requirements(text: &str) -> Vec<Declared> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw
            .split('#')
            .next()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if line.is_empty() || line.starts_with('-') {
            continue;
        }
        let end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(line.len());
        let name = &line[..end];
        if name.is_empty() {
            continue;
        }
        let spec = line[end..]
            .trim_start_matches(|c: char| c == '[' || c.is_ascii_alphanumeric() || c == ',' || c == ']');
        let pinned = spec.trim().strip_prefix("==").and_then(lenient_version);
        out.push(Declared {
            name: normalize(Ecosystem::Pypi, name),
            pinned,
            line: i as u32 + 1,
        });
    }
    out
}

fn package_json(text: &str) -> Vec<Declared> {
    let Ok(doc) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for section in [
        "dependencies",
        "devDependencies",
        "optionalDependencies",
        "peerDependencies",
    ] {
        let Some(deps) = doc.get(section).and_then(Value::as_object) else {
            continue;
        };
        for (name, range) in deps {
            let range = range.as_str().unwrap_or("");
            // Find the line that declares it, for the report.
            let needle = format!("\"{name}\"");
            let line = text
                .lines()
                .position(|l| l.contains(&needle))
                .map_or(1, |i| i as u32 + 1);
            out.push(Declared {
                name: name.clone(),
                pinned: lenient_version(range),
                line,
            });
        }
    }
    out
}

fn go_mod(text: &str) -> Vec<Declared> {
    let mut out = Vec::new();
    let mut in_block = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split("//").next().unwrap_or("").trim();
        let spec = if in_block {
            if line == ")" {
                in_block = false;
                continue;
            }
            line
        } else if line == "require (" {
            in_block = true;
            continue;
        } else if let Some(rest) = line.strip_prefix("require ") {
            rest
        } else {
            continue;
        };
        let mut it = spec.split_whitespace();
        if let (Some(name), Some(version)) = (it.next(), it.next()) {
            out.push(Declared {
                name: name.to_owned(),
                pinned: lenient_version(version),
                line: i as u32 + 1,
            });
        }
    }
    out
}

/// Check one manifest file against the deny-list.
pub fn check(path: &str, content: &[u8], deny: &[DenyRule]) -> Vec<Finding> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let (eco, declared) = match (file, std::str::from_utf8(content)) {
        ("requirements.txt", Ok(t)) => (Ecosystem::Pypi, requirements(t)),
        ("package.json", Ok(t)) => (Ecosystem::Npm, package_json(t)),
        ("go.mod", Ok(t)) => (Ecosystem::Go, go_mod(t)),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for d in declared {
        for rule in deny
            .iter()
            .filter(|r| r.ecosystem == eco && normalize(eco, &r.name) == d.name)
        {
            let any = rule.versions.trim() == "*";
            let req = semver::VersionReq::parse(&rule.versions).ok();
            let (severity, message) = match (&d.pinned, any) {
                (_, true) => (
                    Severity::Critical,
                    format!("`{}` is denied: {}", d.name, rule.reason),
                ),
                (Some(v), false) if req.as_ref().is_some_and(|r| r.matches(v)) => (
                    Severity::Critical,
                    format!("`{}` {v} is denied ({}): {}", d.name, rule.versions, rule.reason),
                ),
                (Some(_), false) => continue,
                (None, false) => (
                    Severity::Warning,
                    format!(
                        "`{}` is not pinned to an exact version, so it may resolve to a denied one ({}): {}",
                        d.name, rule.versions, rule.reason
                    ),
                ),
            };
            out.push(Finding {
                rule: "DEP-DENIED".into(),
                severity,
                file: path.to_owned(),
                line: d.line,
                message,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny() -> Vec<DenyRule> {
        vec![
            DenyRule {
                ecosystem: Ecosystem::Pypi,
                name: "requests".into(),
                versions: "<2.31.0".into(),
                reason: "CVE-2023-32681".into(),
            },
            DenyRule {
                ecosystem: Ecosystem::Pypi,
                name: "Evil_Pkg".into(),
                versions: "*".into(),
                reason: "malware".into(),
            },
            DenyRule {
                ecosystem: Ecosystem::Npm,
                name: "event-stream".into(),
                versions: "=3.3.6".into(),
                reason: "flatmap-stream backdoor".into(),
            },
            DenyRule {
                ecosystem: Ecosystem::Go,
                name: "github.com/evil/mod".into(),
                versions: "<1.2.0".into(),
                reason: "backdoor".into(),
            },
        ]
    }

    fn lines(path: &str, text: &str) -> Vec<(u32, Severity, String)> {
        check(path, text.as_bytes(), &deny())
            .into_iter()
            .map(|f| (f.line, f.severity, f.message))
            .collect()
    }

    #[test]
    fn requirements_pins_ranges_and_names() {
        let text = "# deps\nrequests==2.25.1\nflask>=2\nevil.pkg\nrequests[socks]>=2.0 ; python_version > '3'\nrequests==2.31.0\n";
        assert_eq!(
            lines("requirements.txt", text),
            [
                (2, Severity::Critical, "`requests` 2.25.1 is denied (<2.31.0): CVE-2023-32681".into()),
                (4, Severity::Critical, "`evil-pkg` is denied: malware".into()),
                (5, Severity::Warning, "`requests` is not pinned to an exact version, so it may resolve to a denied one (<2.31.0): CVE-2023-32681".into()),
            ]
        );
    }

    #[test]
    fn package_json_and_go_mod() {
        let pkg = "{\n  \"name\": \"x\",\n  \"dependencies\": {\n    \"left-pad\": \"^1.0.0\",\n    \"event-stream\": \"3.3.6\"\n  }\n}\n";
        assert_eq!(
            lines("package.json", pkg),
            [(
                5,
                Severity::Critical,
                "`event-stream` 3.3.6 is denied (=3.3.6): flatmap-stream backdoor".into()
            )]
        );
        let gomod = "module example.com/p\n\ngo 1.19\n\nrequire (\n\tgithub.com/ok/mod v1.0.0\n\tgithub.com/evil/mod v1.1.9 // indirect\n)\n";
        assert_eq!(
            lines("go.mod", gomod),
            [(
                7,
                Severity::Critical,
                "`github.com/evil/mod` 1.1.9 is denied (<1.2.0): backdoor".into()
            )]
        );
        assert!(lines("sub/README.md", "requests==1.0").is_empty());
    }
}
