//! Templates: what a box starts from, as data. A template names a runtime
//! (`python`, `node`, `shell`), the third-party packages its boxes get
//! (installed once into a read-only dependency layer, see [`crate::layer`]),
//! environment variables, default resources, a network policy (none by
//! default) and seed files.
//!
//! A template arrives as JSON from anyone holding an admin key and ends up
//! in a box's environment and in a package manager's arguments, so it is
//! read as hostile: [`parse_new`] and [`parse_replacement`] report *every*
//! problem at once, each at its JSON pointer (`/packages/3/name`), the way
//! a package manifest's are reported; the grammars are in [`grammar`].
//! [`Templates`] is the service the API calls: validation, the admin check,
//! the store's compare-and-set and the audit trail; and the built-ins
//! ([`builtin`]) present on every fresh start.
//!
//! Must never: run anything, touch the network or the filesystem, or pass a
//! value on unchecked.

pub mod builtin;
pub mod grammar;
mod parse;
mod service;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use parse::{parse_new, parse_packages, parse_replacement, validate};
pub use service::{TemplateError, Templates};

names! {
    /// What a template's boxes run. The interpreter's exact version is the
    /// host's (`/usr/bin/python3`, `/usr/bin/node`) and is recorded with
    /// each dependency layer.
    pub enum TemplateRuntime {
        /// Python 3, packages from pip.
        Python = "python",
        /// Node.js, packages from npm.
        Node = "node",
        /// bash; no packages.
        Shell = "shell",
    }
}

impl TemplateRuntime {
    /// The package ecosystem of the runtime, if it has one.
    pub fn ecosystem(self) -> Option<Ecosystem> {
        match self {
            TemplateRuntime::Python => Some(Ecosystem::Pip),
            TemplateRuntime::Node => Some(Ecosystem::Npm),
            TemplateRuntime::Shell => None,
        }
    }
}

names! {
    /// Where a package comes from.
    #[derive(PartialOrd, Ord)]
    pub enum Ecosystem {
        /// A Python distribution, installed by pip.
        Pip = "pip",
        /// A Node.js package, installed by npm.
        Npm = "npm",
    }
}

names! {
    /// Whether a box may reach the network.
    #[derive(Default)]
    pub enum NetworkMode {
        /// No network at all (the default).
        #[default]
        None = "none",
        /// Only the hosts of the allow-list, through the host's egress proxy.
        AllowList = "allow_list",
    }
}

names! {
    /// How a seed file's content is written in the template.
    pub enum SeedEncoding {
        /// The content is the text itself.
        Utf8 = "utf8",
        /// The content is standard base64 (for binary files).
        Base64 = "base64",
    }
}

/// One package requirement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackageReq {
    /// pip or npm (the runtime's own).
    pub ecosystem: Ecosystem,
    /// The package's name (PEP 508 for pip, npm's rules for npm).
    pub name: String,
    /// A PEP 440 specifier for pip (`==1.16.0`, `>=2,<3`), an npm range
    /// (`^1.2`, `1.x || 2.x`) or dist-tag; absent: any (the newest).
    #[serde(default)]
    pub version: Option<String>,
    /// Accepted hashes of what is installed: pip `sha256:<64 hex>`, npm an
    /// integrity `sha512-…`. With hashes the version must be exact, and for
    /// pip every package needs them (pip's hash-checking mode).
    #[serde(default)]
    pub hashes: Vec<String>,
}

/// What a box of the template may use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU, in cores (fractions allowed).
    pub cpu_cores: f64,
    /// Memory, MiB.
    pub memory_mb: u64,
    /// Disk (workspace and `/tmp`), MiB.
    pub disk_mb: u64,
    /// Processes and threads.
    pub pids: u32,
    /// A box idle this long is stopped, seconds.
    pub idle_timeout_secs: u64,
    /// A box lives at most this long, seconds.
    pub max_lifetime_secs: u64,
}

impl Default for Resources {
    /// 1 core, 512 MiB, 1 GiB of disk, 128 processes, 15 minutes idle, a
    /// day at most.
    fn default() -> Self {
        Resources {
            cpu_cores: 1.0,
            memory_mb: 512,
            disk_mb: 1024,
            pids: 128,
            idle_timeout_secs: 15 * 60,
            max_lifetime_secs: 24 * 3600,
        }
    }
}

impl Resources {
    /// The smallest values a template may ask for.
    pub const MIN: Resources = Resources {
        cpu_cores: 0.1,
        memory_mb: 16,
        disk_mb: 16,
        pids: 8,
        idle_timeout_secs: 1,
        max_lifetime_secs: 1,
    };

    /// The largest values any server allows (the configured ceilings lie
    /// between the defaults and these).
    pub const HARD_MAX: Resources = Resources {
        cpu_cores: 64.0,
        memory_mb: 262_144,
        disk_mb: 1_048_576,
        pids: 65_536,
        idle_timeout_secs: 30 * 24 * 3600,
        max_lifetime_secs: 30 * 24 * 3600,
    };
}

/// Who a box may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPolicy {
    /// None, or an allow-list.
    pub mode: NetworkMode,
    /// `host` or `host:port` entries (one leading `*.` at most, no IP
    /// literals); empty unless the mode is `allow_list`.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// A file written into each box's workspace before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedFile {
    /// Relative, normalized path in the workspace (`config/app.toml`).
    pub path: String,
    /// The content, as `encoding` says.
    pub content: String,
    /// Text or base64.
    #[serde(default = "utf8")]
    pub encoding: SeedEncoding,
    /// Permission bits (`0o644` when absent); at most `0o777`.
    #[serde(default)]
    pub mode: Option<u32>,
}

fn utf8() -> SeedEncoding {
    SeedEncoding::Utf8
}

impl SeedFile {
    /// The file's bytes (the content decoded).
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        match self.encoding {
            SeedEncoding::Utf8 => Ok(self.content.as_bytes().to_vec()),
            SeedEncoding::Base64 => grammar::decode_base64(&self.content),
        }
    }

    /// The permission bits to create the file with.
    pub fn mode_or_default(&self) -> u32 {
        self.mode.unwrap_or(0o644)
    }
}

/// What a client states about a template: everything but the record's
/// bookkeeping (built-in flag, layer, revision, times).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateSpec {
    /// Identifier: 1 to 63 lowercase letters, digits or `-`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// The runtime.
    pub runtime: TemplateRuntime,
    /// Third-party packages (of the runtime's ecosystem).
    pub packages: Vec<PackageReq>,
    /// Environment variables of its boxes.
    pub env: BTreeMap<String, String>,
    /// Default resources of its boxes.
    pub resources: Resources,
    /// Who its boxes may reach.
    pub network: NetworkPolicy,
    /// Files written into each box's workspace.
    pub files: Vec<SeedFile>,
}

/// A stored template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// Identifier.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// The runtime.
    pub runtime: TemplateRuntime,
    /// Third-party packages.
    pub packages: Vec<PackageReq>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Default resources.
    pub resources: Resources,
    /// Network policy.
    pub network: NetworkPolicy,
    /// Seed files.
    pub files: Vec<SeedFile>,
    /// Shipped with Warden: present on every start, cannot be changed or
    /// deleted through the API.
    pub builtin: bool,
    /// The ready dependency layer its boxes get (its id), once built. Set by
    /// builds, cleared when the packages (or the runtime) change; it does
    /// not change the revision.
    pub layer: Option<String>,
    /// Increases with every change of the spec (optimistic concurrency).
    pub revision: i64,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Last change of the spec, Unix ms.
    pub updated_at: i64,
}

impl Template {
    /// A new record (revision 1, no layer) for `spec`, made at `now`.
    pub fn new(spec: TemplateSpec, builtin: bool, now: i64) -> Template {
        Template {
            id: spec.id,
            name: spec.name,
            description: spec.description,
            runtime: spec.runtime,
            packages: spec.packages,
            env: spec.env,
            resources: spec.resources,
            network: spec.network,
            files: spec.files,
            builtin,
            layer: None,
            revision: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// What a client stated.
    pub fn spec(&self) -> TemplateSpec {
        TemplateSpec {
            id: self.id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            runtime: self.runtime,
            packages: self.packages.clone(),
            env: self.env.clone(),
            resources: self.resources,
            network: self.network.clone(),
            files: self.files.clone(),
        }
    }

    /// Whether `other` needs another layer than this: another runtime, or
    /// other packages once normalized (order, case and spelling of names do
    /// not count).
    pub fn needs_other_layer(&self, other: &TemplateSpec) -> bool {
        self.runtime != other.runtime
            || crate::layer::normalize_packages(&self.packages)
                != crate::layer::normalize_packages(&other.packages)
    }
}

/// Caps on a template, whatever the server's configuration.
pub mod caps {
    /// Packages per template.
    pub const PACKAGES: usize = 200;
    /// Hashes per pip package (one per distribution file).
    pub const PIP_HASHES: usize = 64;
    /// Hashes per npm package (one tarball per version).
    pub const NPM_HASHES: usize = 1;
    /// Environment variables per template.
    pub const ENV: usize = 64;
    /// Bytes of all environment names and values together.
    pub const ENV_TOTAL_BYTES: usize = 64 * 1024;
    /// Allow-list entries.
    pub const ALLOW: usize = 64;
    /// Seed files per template.
    pub const FILES: usize = 64;
    /// Bytes of one seed file, decoded (a multiple of 3, so the base64
    /// length is exact: 262144 characters).
    pub const FILE_BYTES: usize = 192 * 1024;
    /// Characters of one `utf8` seed file's content.
    pub const FILE_CHARS: usize = 192 * 1024;
    /// Characters of one `base64` seed file's content.
    pub const FILE_BASE64_CHARS: usize = FILE_BYTES / 3 * 4;
    /// Bytes of all seed files together, decoded.
    pub const FILES_TOTAL_BYTES: usize = 1024 * 1024;
    /// Problems reported for one request (the rest are counted).
    pub const PROBLEMS: usize = 100;
}

/// What a server allows templates to ask for: the ceilings of their
/// resources (the `templates.max_*` configuration keys).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemplatePolicy {
    /// The largest resources a template may ask for.
    pub max: Resources,
}

impl Default for TemplatePolicy {
    /// 4 cores, 4 GiB of memory, 10 GiB of disk, 1024 processes, a day
    /// idle, a week of life.
    fn default() -> Self {
        TemplatePolicy {
            max: Resources {
                cpu_cores: 4.0,
                memory_mb: 4096,
                disk_mb: 10_240,
                pids: 1024,
                idle_timeout_secs: 24 * 3600,
                max_lifetime_secs: 7 * 24 * 3600,
            },
        }
    }
}

impl TemplatePolicy {
    /// Why these ceilings cannot be used, naming the key: each must lie
    /// between the default a template gets and [`Resources::HARD_MAX`].
    pub fn check(&self) -> Result<(), String> {
        let d = Resources::default();
        let h = Resources::HARD_MAX;
        let m = self.max;
        let range = |key: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && v >= lo && v <= hi {
                Ok(())
            } else {
                Err(format!(
                    "templates.{key}: {v} is outside {lo} (the default a template gets) to {hi}"
                ))
            }
        };
        range("max_cpu_cores", m.cpu_cores, d.cpu_cores, h.cpu_cores)?;
        range(
            "max_memory_mb",
            m.memory_mb as f64,
            d.memory_mb as f64,
            h.memory_mb as f64,
        )?;
        range(
            "max_disk_mb",
            m.disk_mb as f64,
            d.disk_mb as f64,
            h.disk_mb as f64,
        )?;
        range(
            "max_pids",
            f64::from(m.pids),
            f64::from(d.pids),
            f64::from(h.pids),
        )?;
        range(
            "max_idle_timeout_secs",
            m.idle_timeout_secs as f64,
            d.idle_timeout_secs as f64,
            h.idle_timeout_secs as f64,
        )?;
        range(
            "max_lifetime_secs",
            m.max_lifetime_secs as f64,
            d.max_lifetime_secs as f64,
            h.max_lifetime_secs as f64,
        )
    }
}

#[cfg(test)]
mod tests;
