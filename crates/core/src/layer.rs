//! Dependency layers, as records: a template's packages installed once,
//! read-only, shared by every template with the same packages.
//!
//! A layer is content-addressed: its id is [`layer_id`], the SHA-256 of a
//! canonical JSON document naming the runtime, the interpreter's version,
//! the normalized package list and the index the packages come from, so two
//! templates asking for the same packages (in any order or spelling) share
//! one layer. Its build moves it `queued → building → ready | failed`
//! ([`LayerStatus::can_move`]); a ready layer never changes again (but for
//! when it was last used).
//!
//! Must never: build, download or run anything (the runtime does, in the
//! jail); this module only describes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::hex;
use crate::template::{Ecosystem, PackageReq, TemplateRuntime};

names! {
    /// Where a layer's build is.
    pub enum LayerStatus {
        /// Waiting for a builder.
        Queued = "queued",
        /// A builder is installing the packages.
        Building = "building",
        /// Installed and usable by boxes; never changes again.
        Ready = "ready",
        /// The build failed; `error` names the package when it is known.
        Failed = "failed",
    }
}

impl LayerStatus {
    /// Whether a layer in this state may be written as `to`: `queued →
    /// building → ready | failed`, `queued → failed` (a build that cannot
    /// start), `failed → queued` (a rebuild), and updates within `queued`,
    /// `building` and `failed` (a build's log as it grows). A ready layer
    /// stays as it is.
    pub fn can_move(self, to: LayerStatus) -> bool {
        use LayerStatus::*;
        matches!(
            (self, to),
            (Queued, Building | Failed | Queued)
                | (Building, Ready | Failed | Building)
                | (Failed, Queued | Failed)
        )
    }
}

/// Why a build failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerError {
    /// The package at fault, when the builder could tell.
    pub package: Option<String>,
    /// What went wrong, for people.
    pub message: String,
}

/// One installed distribution, as the build found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedPackage {
    /// Its name (as installed).
    pub name: String,
    /// Its exact version.
    pub version: String,
    /// SHA-256 of the distribution file (pip), hex.
    pub sha256: Option<String>,
    /// The integrity string (npm), `sha512-…`.
    pub integrity: Option<String>,
}

/// A dependency layer's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// [`layer_id`] of what follows: 64 hex digits.
    pub id: String,
    /// The runtime.
    pub runtime: TemplateRuntime,
    /// The interpreter's version, as it reports it (`Python 3.11.2`,
    /// `v18.19.0`).
    pub interpreter: String,
    /// The packages, normalized ([`normalize_packages`]).
    pub packages: Vec<PackageReq>,
    /// Where the packages come from: an index URL, or `folder:<digest>` for
    /// a local folder of wheels or tarballs. Shown to every API role:
    /// never a URL with credentials.
    pub index: String,
    /// Where its build is.
    pub status: LayerStatus,
    /// Why the build failed.
    pub error: Option<LayerError>,
    /// The build's log, its last [`LOG_CAP`] bytes.
    pub log: String,
    /// What was installed.
    pub lock: Vec<LockedPackage>,
    /// Bytes on disk, once ready.
    pub size_bytes: i64,
    /// The node building it, or that built it.
    pub node: Option<String>,
    /// Created (queued), Unix ms.
    pub created_at: i64,
    /// Ready or failed, Unix ms.
    pub built_at: Option<i64>,
    /// Last bound into a box, Unix ms.
    pub last_used_at: Option<i64>,
}

/// The most of a build's log a layer keeps: the end, where the error is.
pub const LOG_CAP: usize = 64 * 1024;

/// `log` cut to its last [`LOG_CAP`] bytes (on a character boundary), with
/// a line saying so.
pub fn cap_log(log: &str) -> std::borrow::Cow<'_, str> {
    if log.len() <= LOG_CAP {
        return std::borrow::Cow::Borrowed(log);
    }
    const MARK: &str = "[… the log's beginning was cut]\n";
    let mut start = log.len() - (LOG_CAP - MARK.len());
    while !log.is_char_boundary(start) {
        start += 1;
    }
    std::borrow::Cow::Owned(format!("{MARK}{}", &log[start..]))
}

impl Layer {
    /// A queued layer for these packages, made at `now`: its id is
    /// [`layer_id`] of them.
    pub fn queued(
        runtime: TemplateRuntime,
        interpreter: &str,
        packages: &[PackageReq],
        index: &str,
        now: i64,
    ) -> Layer {
        let packages = normalize_packages(packages);
        Layer {
            id: id_of(runtime, interpreter, &packages, index),
            runtime,
            interpreter: interpreter.to_owned(),
            packages,
            index: index.to_owned(),
            status: LayerStatus::Queued,
            error: None,
            log: String::new(),
            lock: Vec::new(),
            size_bytes: 0,
            node: None,
            created_at: now,
            built_at: None,
            last_used_at: None,
        }
    }
}

/// A package name as its index compares names: pip's per PEP 503
/// (lowercase, each run of `-`, `_`, `.` one `-`); npm's as written (they
/// are lowercase already).
pub fn normalize_name(ecosystem: Ecosystem, name: &str) -> String {
    match ecosystem {
        Ecosystem::Npm => name.to_owned(),
        Ecosystem::Pip => {
            let mut out = String::with_capacity(name.len());
            let mut in_run = false;
            for c in name.chars() {
                if matches!(c, '-' | '_' | '.') {
                    if !in_run {
                        out.push('-');
                    }
                    in_run = true;
                } else {
                    out.extend(c.to_lowercase());
                    in_run = false;
                }
            }
            out
        }
    }
}

/// A version specifier in one spelling: pip's clauses (which the grammar
/// keeps free of spaces) sorted, since their order means nothing; npm's as
/// written.
fn normalize_version(ecosystem: Ecosystem, v: &str) -> String {
    match ecosystem {
        Ecosystem::Npm => v.to_owned(),
        Ecosystem::Pip => {
            let mut clauses: Vec<&str> = v.split(',').collect();
            clauses.sort_unstable();
            clauses.dedup();
            clauses.join(",")
        }
    }
}

/// Packages in one canonical form: names normalized, version clauses
/// sorted, hashes sorted and unique, the list sorted.
pub fn normalize_packages(packages: &[PackageReq]) -> Vec<PackageReq> {
    let mut out: Vec<PackageReq> = packages
        .iter()
        .map(|p| {
            let mut hashes = p.hashes.clone();
            hashes.sort_unstable();
            hashes.dedup();
            PackageReq {
                ecosystem: p.ecosystem,
                name: normalize_name(p.ecosystem, &p.name),
                version: p.version.as_deref().map(|v| normalize_version(p.ecosystem, v)),
                hashes,
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The document a layer's id is the SHA-256 of. Field order is fixed by
/// the struct; `serde_json` writes it compactly, strings escaped one way.
#[derive(Serialize)]
struct Identity<'a> {
    /// Bumped if the identity's form ever changes.
    v: u32,
    runtime: TemplateRuntime,
    interpreter: &'a str,
    index: &'a str,
    packages: &'a [PackageReq],
}

fn id_of(runtime: TemplateRuntime, interpreter: &str, normalized: &[PackageReq], index: &str) -> String {
    let doc = Identity {
        v: 1,
        runtime,
        interpreter,
        index,
        packages: normalized,
    };
    // A struct of strings and enums always serializes.
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    hex(&Sha256::digest(bytes))
}

/// A layer's id: the SHA-256 (hex) of the canonical JSON
/// `{"v":1,"runtime":…,"interpreter":…,"index":…,"packages":[…]}` with the
/// packages normalized ([`normalize_packages`]), each written as
/// `{"ecosystem":…,"name":…,"version":…|null,"hashes":[…]}`.
pub fn layer_id(runtime: TemplateRuntime, interpreter: &str, packages: &[PackageReq], index: &str) -> String {
    id_of(runtime, interpreter, &normalize_packages(packages), index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pip(name: &str, version: Option<&str>) -> PackageReq {
        PackageReq {
            ecosystem: Ecosystem::Pip,
            name: name.into(),
            version: version.map(Into::into),
            hashes: vec![],
        }
    }

    #[test]
    fn pip_names_normalize_as_pep_503_says() {
        assert_eq!(normalize_name(Ecosystem::Pip, "Zope.Interface"), "zope-interface");
        assert_eq!(normalize_name(Ecosystem::Pip, "a__-._b"), "a-b");
        assert_eq!(normalize_name(Ecosystem::Pip, "six"), "six");
        assert_eq!(normalize_name(Ecosystem::Npm, "@types/node"), "@types/node");
    }

    #[test]
    fn the_same_packages_in_any_order_or_spelling_give_one_id() {
        let a = [pip("Six", Some("==1.16.0")), pip("requests", Some(">=2,<3"))];
        let b = [pip("requests", Some("<3,>=2")), pip("six", Some("==1.16.0"))];
        let id = layer_id(
            TemplateRuntime::Python,
            "Python 3.11.2",
            &a,
            "https://pypi.org/simple",
        );
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            id,
            layer_id(
                TemplateRuntime::Python,
                "Python 3.11.2",
                &b,
                "https://pypi.org/simple"
            )
        );
        // Another interpreter, index or version: another layer.
        assert_ne!(
            id,
            layer_id(
                TemplateRuntime::Python,
                "Python 3.12.0",
                &a,
                "https://pypi.org/simple"
            )
        );
        assert_ne!(
            id,
            layer_id(TemplateRuntime::Python, "Python 3.11.2", &a, "folder:ab")
        );
        let c = [pip("six", Some("==1.16.1")), pip("requests", Some(">=2,<3"))];
        assert_ne!(
            id,
            layer_id(
                TemplateRuntime::Python,
                "Python 3.11.2",
                &c,
                "https://pypi.org/simple"
            )
        );
        // The id is of a document anyone can rebuild.
        let doc = r#"{"v":1,"runtime":"python","interpreter":"Python 3.11.2","index":"https://pypi.org/simple","packages":[{"ecosystem":"pip","name":"requests","version":"<3,>=2","hashes":[]},{"ecosystem":"pip","name":"six","version":"==1.16.0","hashes":[]}]}"#;
        assert_eq!(id, hex(&Sha256::digest(doc.as_bytes())));
        let layer = Layer::queued(
            TemplateRuntime::Python,
            "Python 3.11.2",
            &b,
            "https://pypi.org/simple",
            5,
        );
        assert_eq!(layer.id, id);
        assert_eq!(layer.packages[0].name, "requests");
        assert_eq!(layer.status, LayerStatus::Queued);
    }

    #[test]
    fn a_build_moves_one_way_and_a_ready_layer_stays() {
        use LayerStatus::*;
        for (from, to, ok) in [
            (Queued, Building, true),
            (Building, Ready, true),
            (Building, Failed, true),
            (Failed, Queued, true),
            (Queued, Failed, true),
            (Building, Building, true),
            (Ready, Ready, false),
            (Ready, Queued, false),
            (Ready, Building, false),
            (Queued, Ready, false),
            (Failed, Ready, false),
            (Building, Queued, false),
        ] {
            assert_eq!(from.can_move(to), ok, "{from} → {to}");
        }
    }

    #[test]
    fn a_long_log_keeps_its_end() {
        let log = format!("{}THE ERROR", "é".repeat(LOG_CAP));
        let capped = cap_log(&log);
        assert!(capped.len() <= LOG_CAP, "{}", capped.len());
        assert!(capped.starts_with("[… the log's beginning was cut]"));
        assert!(capped.ends_with("THE ERROR"));
        assert_eq!(cap_log("short"), "short");
    }
}
