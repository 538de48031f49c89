//! `manifest.json`: the typed manifest, and its validation.
//!
//! Validation reports every problem at once, each at its JSON pointer: first
//! the manifest's own JSON Schema (`docs/manifest.schema.json`, which rejects
//! unknown fields), then what a schema cannot say: semantic versions, the
//! platform's limits, and that the plugin's own schemas compile safely.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Problem, schema};

/// The manifest's JSON Schema, as published in `docs/`.
pub const MANIFEST_SCHEMA: &str = include_str!("../../../docs/manifest.schema.json");

/// A valid manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Global reverse-DNS identifier.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// Plugin type: `sandbox` (code) or `api` (an OpenAPI document).
    #[serde(rename = "type")]
    pub kind: String,
    /// `python3`, `node`, `shell`, `go`, `native`, `wasm` (and `builtin`
    /// for plugins compiled into Warden, which no upload may claim; `api`,
    /// set by Warden, for API plugins, whose manifests name none).
    #[serde(default)]
    pub runtime: String,
    /// File (or, for Go, directory) to load; for API plugins, set by
    /// Warden to the OpenAPI document's name.
    #[serde(default)]
    pub entrypoint: String,
    /// Function to call.
    #[serde(default = "default_handler")]
    pub handler: String,
    /// What the plugin does.
    pub description: String,
    /// Who wrote it.
    pub author: String,
    /// Schema of events (API plugins: none, each tool has its own).
    #[serde(default)]
    pub input_schema: Value,
    /// Schema of return values (API plugins: none).
    #[serde(default)]
    pub output_schema: Value,
    /// Per-call limits it asks for.
    #[serde(default)]
    pub limits: ManifestLimits,
    /// Permissions it asks for.
    #[serde(default)]
    pub permissions: Permissions,
    /// What changed.
    #[serde(default)]
    pub changelog: Option<String>,
}

/// The `type` of API plugins.
pub const API_TYPE: &str = "api";

/// The `runtime` Warden records for API plugins (their manifests name
/// none: no code runs; the platform makes the HTTP calls).
pub const API_RUNTIME: &str = "api";

fn default_handler() -> String {
    "handler".to_owned()
}

/// Limits in the manifest (unset: the platform's defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    /// Wall-clock time of one call.
    pub timeout_ms: Option<u64>,
    /// Memory of one call.
    pub memory_mb: Option<u64>,
    /// Processes and threads of one call.
    pub pids: Option<u32>,
}

/// Permissions in the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// The hosts the plugin may reach through the egress proxy
    /// (`host[:port]`, see [`crate::hosts`]); empty: no network. Written as
    /// a list; `false` (and absence) is the empty list, as manifests said
    /// before hosts could be declared.
    #[serde(default, deserialize_with = "hosts_or_false")]
    pub network: Vec<String>,
    /// The platform-held credentials the plugin's requests name (the app
    /// stores them; the egress proxy injects them; the code never sees
    /// them). Empty: none.
    #[serde(default)]
    pub credentials: Vec<String>,
}

/// Whether `s` is a credential name: 1 to 64 lowercase letters, digits,
/// `_` or `-`, starting with a letter (the one grammar: manifests and the
/// credentials API).
pub fn check_credential_name(s: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(
            "a credential name is 1 to 64 lowercase letters, digits, `_` or `-`, starting with a letter"
                .into(),
        )
    }
}

/// `false` or a list of hosts (`true` never reaches here: validation
/// refuses it with its location first).
fn hosts_or_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Network {
        Flag(bool),
        Hosts(Vec<String>),
    }
    match Network::deserialize(d)? {
        Network::Flag(false) => Ok(Vec::new()),
        Network::Flag(true) => Err(serde::de::Error::custom(
            "permissions.network: `true` is not a list of hosts",
        )),
        Network::Hosts(h) => Ok(h),
    }
}

/// What the platform allows and assumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformLimits {
    /// Largest `limits.timeout_ms`.
    pub max_timeout_ms: u64,
    /// Largest `limits.memory_mb`.
    pub max_memory_mb: u64,
    /// Largest `limits.pids`.
    pub max_pids: u32,
    /// Timeout when the manifest sets none.
    pub default_timeout_ms: u64,
    /// Memory when the manifest sets none.
    pub default_memory_mb: u64,
    /// Processes when the manifest sets none.
    pub default_pids: u32,
    /// `permissions.network` may name IP addresses (an operator's choice:
    /// `policy.network_ip_literals`); names only otherwise.
    #[serde(default)]
    pub network_ip_literals: bool,
    /// An API plugin's document may name plain-`http` servers and loopback
    /// or private addresses (an operator's choice for tests and local APIs:
    /// `policy.api_local_servers`); public `https` hosts only otherwise.
    #[serde(default)]
    pub api_local_servers: bool,
}

impl Default for PlatformLimits {
    fn default() -> Self {
        PlatformLimits {
            max_timeout_ms: 60_000,
            max_memory_mb: 1024,
            max_pids: 256,
            default_timeout_ms: 10_000,
            default_memory_mb: 256,
            default_pids: 64,
            network_ip_literals: false,
            api_local_servers: false,
        }
    }
}

impl Manifest {
    /// Effective timeout.
    pub fn timeout_ms(&self, p: &PlatformLimits) -> u64 {
        self.limits.timeout_ms.unwrap_or(p.default_timeout_ms)
    }
    /// Effective memory.
    pub fn memory_mb(&self, p: &PlatformLimits) -> u64 {
        self.limits.memory_mb.unwrap_or(p.default_memory_mb)
    }
    /// Effective process limit.
    pub fn pids(&self, p: &PlatformLimits) -> u32 {
        self.limits.pids.unwrap_or(p.default_pids)
    }
}

fn at(pointer: &str, message: impl Into<String>) -> Problem {
    Problem {
        location: pointer.to_owned(),
        message: message.into(),
    }
}

/// "Additional properties are not allowed ('a', 'b' were unexpected)" at
/// `/x` becomes one problem per field, at `/x/a` and `/x/b`.
fn unknown_fields(p: Problem) -> Vec<Problem> {
    let Some(rest) = p.message.strip_prefix("Additional properties are not allowed (") else {
        return vec![p];
    };
    let names: Vec<&str> = rest.split('\'').skip(1).step_by(2).collect();
    if names.is_empty() {
        return vec![p];
    }
    let base = p.location.trim_end_matches('/');
    names
        .into_iter()
        .map(|n| Problem {
            location: format!("{base}/{}", n.replace('~', "~0").replace('/', "~1")),
            message: "unknown field: the manifest schema does not allow it (docs/manifest.schema.json)"
                .into(),
        })
        .collect()
}

/// `permissions.network`: `false` or a list of distinct hosts in the
/// allow-list grammar, and only for runtimes that run in a box.
fn network_problems(doc: &Value, platform: &PlatformLimits, problems: &mut Vec<Problem>) {
    match doc.pointer("/permissions/network") {
        Some(Value::Bool(true)) => problems.push(at(
            "/permissions/network",
            "`true` does not say where: list the hosts the plugin reaches, as host[:port] \
             (e.g. [\"api.github.com\"]); `false` or an empty list for none",
        )),
        Some(Value::Array(hosts)) => {
            let ip = if platform.network_ip_literals {
                crate::hosts::IpLiterals::Allowed
            } else {
                crate::hosts::IpLiterals::Refused
            };
            let mut seen = std::collections::HashSet::new();
            for (i, h) in hosts.iter().enumerate() {
                let Some(h) = h.as_str() else { continue }; // the schema says it
                let at_i = format!("/permissions/network/{i}");
                if let Err(e) = crate::hosts::check_host_entry(h, ip) {
                    let hint = if e.starts_with("an IP address") {
                        " (this server accepts host names only: policy.network_ip_literals)"
                    } else {
                        ""
                    };
                    problems.push(at(&at_i, format!("{e}{hint}")));
                } else if !seen.insert(h) {
                    problems.push(at(&at_i, format!("`{h}` is listed twice")));
                }
            }
            let runtime = doc.get("runtime").and_then(Value::as_str);
            if !hosts.is_empty() && matches!(runtime, Some("wasm")) {
                problems.push(at(
                    "/permissions/network",
                    "wasm plugins have no network (the wasm tier has no sockets): declare no hosts, or use a boxed runtime",
                ));
            }
        }
        _ => {}
    }
    if let Some(Value::Array(names)) = doc.pointer("/permissions/credentials") {
        let mut seen = std::collections::HashSet::new();
        for (i, n) in names.iter().enumerate() {
            let Some(n) = n.as_str() else { continue }; // the schema says it
            let at_i = format!("/permissions/credentials/{i}");
            if let Err(e) = check_credential_name(n) {
                problems.push(at(&at_i, e));
            } else if !seen.insert(n) {
                problems.push(at(&at_i, format!("`{n}` is listed twice")));
            }
        }
        let hosts = doc
            .pointer("/permissions/network")
            .and_then(Value::as_array)
            .is_some_and(|h| !h.is_empty());
        if !names.is_empty() && !hosts {
            problems.push(at(
                "/permissions/credentials",
                "a credential is sent only to hosts the version declares: list them in permissions.network",
            ));
        }
    }
}

/// Parse and validate `manifest.json`.
pub fn parse(bytes: &[u8], platform: &PlatformLimits) -> Result<Manifest, Vec<Problem>> {
    let text = std::str::from_utf8(bytes).map_err(|_| vec![at("/", "manifest.json is not valid UTF-8")])?;
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| vec![at("/", format!("manifest.json is not valid JSON: {e}"))])?;
    static META: std::sync::OnceLock<schema::Schema> = std::sync::OnceLock::new();
    let meta = META.get_or_init(|| {
        schema::compile(&serde_json::from_str(MANIFEST_SCHEMA).unwrap_or(Value::Null))
            .unwrap_or_else(|e| panic!("the manifest schema does not compile: {e}"))
    });
    let mut problems: Vec<Problem> = meta
        .validate(&doc)
        .into_iter()
        .flat_map(unknown_fields)
        .map(|mut p| {
            // Friendlier words where the generic ones hide the choices.
            match (
                p.location.as_str(),
                doc.get(&p.location[1..]).and_then(Value::as_str),
            ) {
                ("/type", Some("wasm")) => {
                    p.message = "type `wasm` is not a type: WebAssembly plugins are `sandbox` plugins with `runtime: wasm`".into();
                }
                ("/runtime", Some(r)) => {
                    p.message = format!("`{r}` is not a runtime: use python3, node, shell, go, native or wasm");
                }
                _ => {}
            }
            p
        })
        .collect();
    // Checks beyond the schema, on whatever parts are well-formed.
    if let Some(v) = doc.get("version").and_then(Value::as_str)
        && semver::Version::parse(v).is_err()
    {
        problems.push(at(
            "/version",
            format!("`{v}` is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0)"),
        ));
    }
    let limits = doc.get("limits");
    let num = |k: &str| limits.and_then(|l| l.get(k)).and_then(Value::as_u64);
    if let Some(t) = num("timeout_ms").filter(|t| *t > platform.max_timeout_ms) {
        problems.push(at(
            "/limits/timeout_ms",
            format!("{t} exceeds the platform maximum of {}", platform.max_timeout_ms),
        ));
    }
    if let Some(m) = num("memory_mb").filter(|m| *m > platform.max_memory_mb) {
        problems.push(at(
            "/limits/memory_mb",
            format!("{m} exceeds the platform maximum of {}", platform.max_memory_mb),
        ));
    }
    if let Some(p) = num("pids").filter(|p| *p > u64::from(platform.max_pids)) {
        problems.push(at(
            "/limits/pids",
            format!("{p} exceeds the platform maximum of {}", platform.max_pids),
        ));
    }
    if doc.get("type").and_then(Value::as_str) == Some(API_TYPE) {
        // An API plugin has no code: its document says everything else.
        for (key, why) in [
            ("runtime", "an API plugin runs no code: remove `runtime`"),
            (
                "entrypoint",
                "an API plugin runs no code: its OpenAPI document is the package",
            ),
            ("handler", "an API plugin runs no code: remove `handler`"),
            (
                "input_schema",
                "an API plugin's tools take their input schemas from the OpenAPI document",
            ),
            (
                "output_schema",
                "an API plugin's tools take their output schemas from the OpenAPI document",
            ),
            (
                "permissions",
                "an API plugin's hosts are its document's servers, and its credentials follow the document's securitySchemes: remove `permissions`",
            ),
        ] {
            if doc.get(key).is_some() {
                problems.push(at(&format!("/{key}"), why));
            }
        }
    }
    network_problems(&doc, platform, &mut problems);
    for key in ["input_schema", "output_schema"] {
        if let Some(s) = doc.get(key).filter(|s| s.is_object())
            && let Err(e) = schema::compile(s)
        {
            problems.push(at(&format!("/{key}"), format!("does not compile: {e}")));
        }
    }
    if !problems.is_empty() {
        problems.sort_by(|a, b| a.location.cmp(&b.location));
        problems.dedup();
        return Err(problems);
    }
    serde_json::from_value(doc).map_err(|e| vec![at("/", e.to_string())])
}
