//! A template from JSON: every problem at once, each at its JSON pointer.
//!
//! The body is walked by hand rather than deserialized, so that a missing
//! field, a value of the wrong type and a bad value are all reported
//! together and located (`/packages/3/name`, `/env/LD_PRELOAD`), and so
//! that nothing is skipped: unknown fields are refused at every level.
//! What the OpenAPI document's schema cannot say (a field's relation to
//! another, totals, the server's own ceilings) is checked here too.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};
use warden_package::Problem;

use super::grammar::{self, shown};
use super::{
    Ecosystem, NetworkMode, NetworkPolicy, PackageReq, Resources, SeedEncoding, SeedFile, TemplatePolicy,
    TemplateRuntime, TemplateSpec, caps,
};
use crate::layer::normalize_name;

/// The largest integer JSON carries exactly (2^53 - 1).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

#[derive(Default)]
struct Problems {
    list: Vec<Problem>,
    dropped: usize,
}

impl Problems {
    fn at(&mut self, location: impl Into<String>, message: impl Into<String>) {
        if self.list.len() < caps::PROBLEMS {
            self.list.push(Problem {
                location: location.into(),
                message: message.into(),
            });
        } else {
            self.dropped += 1;
        }
    }

    /// Record `r`'s problem, if any; whether it was fine.
    fn check(&mut self, location: &str, r: Result<(), String>) -> bool {
        match r {
            Ok(()) => true,
            Err(m) => {
                self.at(location, m);
                false
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty() && self.dropped == 0
    }

    fn finish(mut self) -> Vec<Problem> {
        if self.dropped > 0 {
            self.list.push(Problem {
                location: "/".into(),
                message: format!(
                    "{} more problems not listed (at most {} are)",
                    self.dropped,
                    caps::PROBLEMS
                ),
            });
        }
        self.list
    }
}

/// `base` extended by an object key, escaped as JSON pointers escape it.
fn key_at(base: &str, key: &str) -> String {
    format!("{base}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `v` as an object with only `allowed` keys (each other key is a
/// problem, at its own pointer).
fn object<'a>(
    v: &'a Value,
    at: &str,
    what: &str,
    allowed: &[&str],
    p: &mut Problems,
) -> Option<&'a Map<String, Value>> {
    let Some(map) = v.as_object() else {
        let location = if at.is_empty() { "/" } else { at };
        p.at(
            location,
            format!("must be {what} (a JSON object), not {}", type_name(v)),
        );
        return None;
    };
    for key in map.keys().filter(|k| !allowed.contains(&k.as_str())) {
        p.at(
            key_at(at, key),
            format!("unknown field: {what} has {}", allowed.join(", ")),
        );
    }
    Some(map)
}

fn string<'a>(v: &'a Value, at: &str, p: &mut Problems) -> Option<&'a str> {
    match v {
        Value::String(s) => Some(s),
        other => {
            p.at(at, format!("must be a string, not {}", type_name(other)));
            None
        }
    }
}

/// A whole number from `lo` to `hi` (`2.0` counts, as JSON Schema's
/// `integer` does).
fn whole(v: &Value, at: &str, lo: u64, hi: u64, p: &mut Problems) -> Option<u64> {
    let Value::Number(n) = v else {
        p.at(at, format!("must be a whole number, not {}", type_name(v)));
        return None;
    };
    let f = n.as_f64().unwrap_or(f64::NAN);
    if !f.is_finite() || f.fract() != 0.0 {
        p.at(at, format!("{n} is not a whole number"));
        return None;
    }
    let (lo_f, hi_f) = (lo as f64, (hi as f64).min(MAX_SAFE_INTEGER));
    if f < lo_f || f > hi_f {
        p.at(at, format!("{n} is out of range: from {lo} to {hi}"));
        return None;
    }
    Some(n.as_u64().unwrap_or(f as u64))
}

/// Where a body's template gets its id.
enum Id<'a> {
    /// In the body (a new template).
    InBody,
    /// From the request's path (a replacement), with `revision` in the body.
    Given(&'a str),
}

/// A new template: the body of `POST /v1/templates`.
pub fn parse_new(doc: &Value, policy: &TemplatePolicy) -> Result<TemplateSpec, Vec<Problem>> {
    parse(doc, Id::InBody, policy).map(|(spec, _)| spec)
}

/// A full replacement of template `id` and the revision it was read at:
/// the body of `PUT /v1/templates/{id}` (every field but `id`, plus
/// `revision`).
pub fn parse_replacement(
    id: &str,
    doc: &Value,
    policy: &TemplatePolicy,
) -> Result<(TemplateSpec, i64), Vec<Problem>> {
    parse(doc, Id::Given(id), policy).map(|(spec, revision)| (spec, revision.unwrap_or(0)))
}

/// A list of packages for `runtime` (a session's extra packages), read
/// with the template grammar: every problem at `/packages/…`.
pub fn parse_packages(v: &Value, runtime: TemplateRuntime) -> Result<Vec<PackageReq>, Vec<Problem>> {
    let mut p = Problems::default();
    match packages(v, Some(runtime), &mut p) {
        Some(list) if p.is_empty() => Ok(list),
        _ => Err(p.finish()),
    }
}

/// Every problem of a typed spec (the built-ins, templates made by code):
/// the same checks as a request's, on its JSON form.
pub fn validate(spec: &TemplateSpec, policy: &TemplatePolicy) -> Vec<Problem> {
    match serde_json::to_value(spec) {
        Ok(doc) => parse_new(&doc, policy).err().unwrap_or_default(),
        Err(e) => vec![Problem {
            location: "/".into(),
            message: format!("cannot be written as JSON: {e}"),
        }],
    }
}

const FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "runtime",
    "packages",
    "env",
    "resources",
    "network",
    "files",
];
const REPLACEMENT_FIELDS: &[&str] = &[
    "name",
    "description",
    "runtime",
    "packages",
    "env",
    "resources",
    "network",
    "files",
    "revision",
];

fn parse(
    doc: &Value,
    id: Id<'_>,
    policy: &TemplatePolicy,
) -> Result<(TemplateSpec, Option<i64>), Vec<Problem>> {
    let mut p = Problems::default();
    let allowed = match id {
        Id::InBody => FIELDS,
        Id::Given(_) => REPLACEMENT_FIELDS,
    };
    let Some(obj) = object(doc, "", "a template", allowed, &mut p) else {
        return Err(p.finish());
    };
    let id = match id {
        Id::Given(id) => Some(id.to_owned()),
        Id::InBody => match obj.get("id") {
            None => {
                p.at("/id", "required: 1 to 63 lowercase letters, digits or `-`");
                None
            }
            Some(v) => string(v, "/id", &mut p)
                .filter(|s| p.check("/id", grammar::check_id(s)))
                .map(str::to_owned),
        },
    };
    let name = match obj.get("name") {
        None => id.clone(),
        Some(v) => string(v, "/name", &mut p)
            .filter(|s| p.check("/name", grammar::check_name(s)))
            .map(str::to_owned),
    };
    let description = match obj.get("description") {
        None | Some(Value::Null) => Some(None),
        Some(v) => string(v, "/description", &mut p)
            .filter(|s| p.check("/description", grammar::check_description(s)))
            .map(|s| Some(s.to_owned())),
    };
    let runtime = match obj.get("runtime") {
        None => {
            p.at(
                "/runtime",
                format!("required: {}", TemplateRuntime::NAMES.join(", ")),
            );
            None
        }
        Some(v) => string(v, "/runtime", &mut p).and_then(|s| {
            let r = TemplateRuntime::parse(s);
            if r.is_none() {
                p.at(
                    "/runtime",
                    format!(
                        "{} is not a runtime: use {}",
                        shown(s),
                        TemplateRuntime::NAMES.join(", ")
                    ),
                );
            }
            r
        }),
    };
    let packages = match obj.get("packages") {
        None => Some(Vec::new()),
        Some(v) => packages(v, runtime, &mut p),
    };
    let env = match obj.get("env") {
        None => Some(BTreeMap::new()),
        Some(v) => env(v, &mut p),
    };
    let resources = match obj.get("resources") {
        None => Some(Resources::default()),
        Some(v) => resources(v, policy, &mut p),
    };
    let network = match obj.get("network") {
        None => Some(NetworkPolicy::default()),
        Some(v) => network(v, &mut p),
    };
    let files = match obj.get("files") {
        None => Some(Vec::new()),
        Some(v) => files(v, &mut p),
    };
    let revision = match (allowed == REPLACEMENT_FIELDS, obj.get("revision")) {
        (false, _) => Some(None),
        (true, None) => {
            p.at(
                "/revision",
                "required: the revision the template was read at (a full replacement applies only to it)",
            );
            None
        }
        (true, Some(v)) => whole(v, "/revision", 1, MAX_SAFE_INTEGER as u64, &mut p).map(|r| Some(r as i64)),
    };
    match (
        id,
        name,
        description,
        runtime,
        packages,
        env,
        resources,
        network,
        files,
        revision,
    ) {
        (
            Some(id),
            Some(name),
            Some(description),
            Some(runtime),
            Some(packages),
            Some(env),
            Some(resources),
            Some(network),
            Some(files),
            Some(revision),
        ) if p.is_empty() => Ok((
            TemplateSpec {
                id,
                name,
                description,
                runtime,
                packages,
                env,
                resources,
                network,
                files,
            },
            revision,
        )),
        _ => Err(p.finish()),
    }
}

fn packages(v: &Value, runtime: Option<TemplateRuntime>, p: &mut Problems) -> Option<Vec<PackageReq>> {
    let Some(items) = v.as_array() else {
        p.at(
            "/packages",
            format!("must be an array of packages, not {}", type_name(v)),
        );
        return None;
    };
    if items.len() > caps::PACKAGES {
        p.at(
            "/packages",
            format!(
                "{} packages: at most {} per template",
                items.len(),
                caps::PACKAGES
            ),
        );
        return None;
    }
    if runtime == Some(TemplateRuntime::Shell) && !items.is_empty() {
        p.at(
            "/packages",
            "a shell template has no packages: use the python or node runtime for third-party packages",
        );
        return None;
    }
    let before = p.list.len() + p.dropped;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(pkg) = package(item, &format!("/packages/{i}"), runtime, p) {
            out.push((i, pkg));
        }
    }
    // Each package once (names compared as the index compares them).
    let mut seen: HashMap<(Ecosystem, String), usize> = HashMap::new();
    for (i, pkg) in &out {
        let key = (pkg.ecosystem, normalize_name(pkg.ecosystem, &pkg.name));
        if let Some(first) = seen.get(&key) {
            p.at(
                format!("/packages/{i}/name"),
                format!(
                    "{} is listed already (/packages/{first}): list each package once",
                    shown(&pkg.name)
                ),
            );
        } else {
            seen.insert(key, *i);
        }
    }
    // pip checks hashes for every requirement once one has them.
    let pip: Vec<&(usize, PackageReq)> = out
        .iter()
        .filter(|(_, k)| k.ecosystem == Ecosystem::Pip)
        .collect();
    if let Some((_, hashed)) = pip.iter().find(|(_, k)| !k.hashes.is_empty()) {
        for (i, k) in pip.iter().filter(|(_, k)| k.hashes.is_empty()) {
            p.at(
                format!("/packages/{i}/hashes"),
                format!(
                    "required: {} has hashes, and pip then checks every package's (hash-checking mode); give {}'s too",
                    shown(&hashed.name),
                    shown(&k.name)
                ),
            );
        }
    }
    (p.list.len() + p.dropped == before).then(|| out.into_iter().map(|(_, k)| k).collect())
}

fn package(v: &Value, at: &str, runtime: Option<TemplateRuntime>, p: &mut Problems) -> Option<PackageReq> {
    let obj = object(v, at, "a package", &["ecosystem", "name", "version", "hashes"], p)?;
    let before = p.list.len() + p.dropped;
    let eco_at = format!("{at}/ecosystem");
    let ecosystem = match obj.get("ecosystem") {
        None => {
            p.at(&eco_at, format!("required: {}", Ecosystem::NAMES.join(" or ")));
            None
        }
        Some(v) => string(v, &eco_at, p).and_then(|s| {
            let e = Ecosystem::parse(s);
            if e.is_none() {
                p.at(
                    &eco_at,
                    format!(
                        "{} is not an ecosystem: {}",
                        shown(s),
                        Ecosystem::NAMES.join(" or ")
                    ),
                );
            }
            e
        }),
    };
    if let (Some(e), Some(r)) = (ecosystem, runtime)
        && r.ecosystem() != Some(e)
    {
        let needs = match e {
            Ecosystem::Pip => "python",
            Ecosystem::Npm => "node",
        };
        p.at(
            &eco_at,
            format!("{e} packages need the {needs} runtime; this template's runtime is {r}"),
        );
    }
    let name_at = format!("{at}/name");
    let name = match obj.get("name") {
        None => {
            p.at(&name_at, "required: the package's name");
            None
        }
        Some(v) => string(v, &name_at, p).filter(|s| {
            let r = match ecosystem {
                Some(Ecosystem::Pip) => grammar::check_pip_name(s),
                Some(Ecosystem::Npm) => grammar::check_npm_name(s),
                None => Ok(()),
            };
            p.check(&name_at, r)
        }),
    };
    let version_at = format!("{at}/version");
    let version = match obj.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => string(v, &version_at, p).filter(|s| {
            let r = match ecosystem {
                Some(Ecosystem::Pip) => grammar::check_pip_version(s),
                Some(Ecosystem::Npm) => grammar::check_npm_version(s),
                None => Ok(()),
            };
            p.check(&version_at, r)
        }),
    };
    let hashes_at = format!("{at}/hashes");
    let mut hashes = Vec::new();
    match obj.get("hashes") {
        None => {}
        Some(Value::Array(items)) => {
            let cap = match ecosystem {
                Some(Ecosystem::Npm) => caps::NPM_HASHES,
                _ => caps::PIP_HASHES,
            };
            if items.len() > cap {
                p.at(
                    &hashes_at,
                    format!(
                        "{} hashes: at most {cap} for a package of this ecosystem",
                        items.len()
                    ),
                );
            } else {
                for (j, h) in items.iter().enumerate() {
                    let h_at = format!("{hashes_at}/{j}");
                    if let Some(s) = string(h, &h_at, p) {
                        let r = match ecosystem {
                            Some(Ecosystem::Pip) => grammar::check_pip_hash(s),
                            Some(Ecosystem::Npm) => grammar::check_npm_hash(s),
                            None => Ok(()),
                        };
                        if p.check(&h_at, r) {
                            if hashes.iter().any(|x: &String| x == s) {
                                p.at(&h_at, "listed already");
                            }
                            hashes.push(s.to_owned());
                        }
                    }
                }
            }
        }
        Some(other) => p.at(
            &hashes_at,
            format!("must be an array of hashes, not {}", type_name(other)),
        ),
    }
    if !hashes.is_empty() {
        let exact = match (ecosystem, version) {
            (Some(Ecosystem::Pip), Some(v)) => grammar::pip_is_exact(v),
            (Some(Ecosystem::Npm), Some(v)) => grammar::npm_is_exact(v),
            _ => false,
        };
        if !exact {
            p.at(
                &version_at,
                "a package with hashes needs an exact version (`==1.2.3` for pip, `1.2.3` for npm): a hash pins one file",
            );
        }
    }
    let ecosystem = ecosystem?;
    let name = name?;
    (p.list.len() + p.dropped == before).then(|| PackageReq {
        ecosystem,
        name: name.to_owned(),
        version: version.map(str::to_owned),
        hashes,
    })
}

fn env(v: &Value, p: &mut Problems) -> Option<BTreeMap<String, String>> {
    let Some(map) = v.as_object() else {
        p.at(
            "/env",
            format!("must be an object of variables, not {}", type_name(v)),
        );
        return None;
    };
    if map.len() > caps::ENV {
        p.at("/env", format!("{} variables: at most {}", map.len(), caps::ENV));
        return None;
    }
    let before = p.list.len() + p.dropped;
    let mut out = BTreeMap::new();
    let mut total = 0;
    for (k, v) in map {
        let at = key_at("/env", k);
        let name_ok = p.check(&at, grammar::check_env_name(k));
        if let Some(value) = string(v, &at, p)
            && p.check(&at, grammar::check_env_value(value))
            && name_ok
        {
            total += k.len() + value.len();
            out.insert(k.clone(), value.to_owned());
        }
    }
    if total > caps::ENV_TOTAL_BYTES {
        p.at(
            "/env",
            format!(
                "{total} bytes of names and values: at most {}",
                caps::ENV_TOTAL_BYTES
            ),
        );
    }
    (p.list.len() + p.dropped == before).then_some(out)
}

fn resources(v: &Value, policy: &TemplatePolicy, p: &mut Problems) -> Option<Resources> {
    const KEYS: &[&str] = &[
        "cpu_cores",
        "memory_mb",
        "disk_mb",
        "pids",
        "idle_timeout_secs",
        "max_lifetime_secs",
    ];
    let obj = object(v, "/resources", "resources", KEYS, p)?;
    let before = p.list.len() + p.dropped;
    let (min, hard, max, mut r) = (
        Resources::MIN,
        Resources::HARD_MAX,
        policy.max,
        Resources::default(),
    );
    if let Some(v) = obj.get("cpu_cores") {
        let at = "/resources/cpu_cores";
        match v.as_f64().filter(|f| f.is_finite() && v.is_number()) {
            None => p.at(at, format!("must be a number of cores, not {}", type_name(v))),
            Some(c) if c < min.cpu_cores || c > hard.cpu_cores => p.at(
                at,
                format!(
                    "{c} is out of range: from {} to {}",
                    min.cpu_cores, hard.cpu_cores
                ),
            ),
            Some(c) if c > max.cpu_cores => p.at(
                at,
                format!(
                    "{c} exceeds this server's ceiling of {} (templates.max_cpu_cores)",
                    max.cpu_cores
                ),
            ),
            Some(c) => r.cpu_cores = c,
        }
    }
    let mut int = |key: &str, lo: u64, hi: u64, ceiling: u64, slot: &mut u64| {
        if let Some(v) = obj.get(key) {
            let at = format!("/resources/{key}");
            if let Some(n) = whole(v, &at, lo, hi, p) {
                if n > ceiling {
                    p.at(
                        &at,
                        format!("{n} exceeds this server's ceiling of {ceiling} (templates.max_{key})"),
                    );
                } else {
                    *slot = n;
                }
            }
        }
    };
    int(
        "memory_mb",
        min.memory_mb,
        hard.memory_mb,
        max.memory_mb,
        &mut r.memory_mb,
    );
    int("disk_mb", min.disk_mb, hard.disk_mb, max.disk_mb, &mut r.disk_mb);
    let mut pids = u64::from(r.pids);
    int(
        "pids",
        u64::from(min.pids),
        u64::from(hard.pids),
        u64::from(max.pids),
        &mut pids,
    );
    int(
        "idle_timeout_secs",
        min.idle_timeout_secs,
        hard.idle_timeout_secs,
        max.idle_timeout_secs,
        &mut r.idle_timeout_secs,
    );
    int(
        "max_lifetime_secs",
        min.max_lifetime_secs,
        hard.max_lifetime_secs,
        max.max_lifetime_secs,
        &mut r.max_lifetime_secs,
    );
    r.pids = u32::try_from(pids).unwrap_or(u32::MAX);
    if p.list.len() + p.dropped == before && r.idle_timeout_secs > r.max_lifetime_secs {
        p.at(
            "/resources/idle_timeout_secs",
            format!(
                "{} is longer than max_lifetime_secs ({}): a box never idles past its lifetime",
                r.idle_timeout_secs, r.max_lifetime_secs
            ),
        );
    }
    (p.list.len() + p.dropped == before).then_some(r)
}

fn network(v: &Value, p: &mut Problems) -> Option<NetworkPolicy> {
    let obj = object(v, "/network", "a network policy", &["mode", "allow"], p)?;
    let before = p.list.len() + p.dropped;
    let mode = match obj.get("mode") {
        None => {
            p.at(
                "/network/mode",
                format!("required: {}", NetworkMode::NAMES.join(" or ")),
            );
            None
        }
        Some(v) => string(v, "/network/mode", p).and_then(|s| {
            let m = NetworkMode::parse(s);
            if m.is_none() {
                p.at(
                    "/network/mode",
                    format!(
                        "{} is not a network mode: {}",
                        shown(s),
                        NetworkMode::NAMES.join(" or ")
                    ),
                );
            }
            m
        }),
    };
    let mut allow = Vec::new();
    match obj.get("allow") {
        None => {}
        Some(Value::Array(items)) if items.len() > caps::ALLOW => p.at(
            "/network/allow",
            format!("{} entries: at most {}", items.len(), caps::ALLOW),
        ),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("/network/allow/{i}");
                if let Some(s) = string(item, &at, p)
                    && p.check(&at, grammar::check_allow_entry(s))
                {
                    if allow.iter().any(|a: &String| a == s) {
                        p.at(&at, format!("{} is listed already", shown(s)));
                    }
                    allow.push(s.to_owned());
                }
            }
        }
        Some(other) => p.at(
            "/network/allow",
            format!("must be an array of hosts, not {}", type_name(other)),
        ),
    }
    match (mode, obj.get("allow").and_then(Value::as_array).map(Vec::len)) {
        (Some(NetworkMode::None), Some(n)) if n > 0 => p.at(
            "/network/allow",
            "must be empty when the mode is none (set the mode to allow_list to grant these hosts)",
        ),
        (Some(NetworkMode::AllowList), None | Some(0)) => p.at(
            "/network/allow",
            "required: an allow_list grants at least one host",
        ),
        _ => {}
    }
    let mode = mode?;
    (p.list.len() + p.dropped == before).then_some(NetworkPolicy { mode, allow })
}

fn files(v: &Value, p: &mut Problems) -> Option<Vec<SeedFile>> {
    let Some(items) = v.as_array() else {
        p.at(
            "/files",
            format!("must be an array of seed files, not {}", type_name(v)),
        );
        return None;
    };
    if items.len() > caps::FILES {
        p.at(
            "/files",
            format!("{} files: at most {}", items.len(), caps::FILES),
        );
        return None;
    }
    let before = p.list.len() + p.dropped;
    let mut out: Vec<SeedFile> = Vec::with_capacity(items.len());
    let mut total = 0;
    for (i, item) in items.iter().enumerate() {
        let at = format!("/files/{i}");
        let Some((file, size)) = seed_file(item, &at, p) else {
            continue;
        };
        if let Some(j) = out.iter().position(|f| f.path == file.path) {
            p.at(
                format!("{at}/path"),
                format!("{} is listed already (/files/{j})", shown(&file.path)),
            );
        } else if let Some(other) = out.iter().find(|f| {
            f.path.starts_with(&format!("{}/", file.path)) || file.path.starts_with(&format!("{}/", f.path))
        }) {
            p.at(
                format!("{at}/path"),
                format!(
                    "{} and {} cannot both be files: one is a folder of the other",
                    shown(&file.path),
                    shown(&other.path)
                ),
            );
        }
        total += size;
        out.push(file);
    }
    if total > caps::FILES_TOTAL_BYTES {
        p.at(
            "/files",
            format!(
                "{total} bytes of seed files: at most {} in all",
                caps::FILES_TOTAL_BYTES
            ),
        );
    }
    (p.list.len() + p.dropped == before).then_some(out)
}

/// One seed file and its size in bytes.
fn seed_file(v: &Value, at: &str, p: &mut Problems) -> Option<(SeedFile, usize)> {
    let obj = object(v, at, "a seed file", &["path", "content", "encoding", "mode"], p)?;
    let before = p.list.len() + p.dropped;
    let path_at = format!("{at}/path");
    let path = match obj.get("path") {
        None => {
            p.at(&path_at, "required: a relative path in the workspace");
            None
        }
        Some(v) => string(v, &path_at, p).filter(|s| p.check(&path_at, grammar::check_seed_path(s))),
    };
    let encoding_at = format!("{at}/encoding");
    let encoding = match obj.get("encoding") {
        None => Some(SeedEncoding::Utf8),
        Some(v) => string(v, &encoding_at, p).and_then(|s| {
            let e = SeedEncoding::parse(s);
            if e.is_none() {
                p.at(
                    &encoding_at,
                    format!(
                        "{} is not an encoding: {}",
                        shown(s),
                        SeedEncoding::NAMES.join(" or ")
                    ),
                );
            }
            e
        }),
    };
    let content_at = format!("{at}/content");
    let content = match obj.get("content") {
        None => {
            p.at(
                &content_at,
                "required: the file's content (`\"\"` for an empty file)",
            );
            None
        }
        Some(v) => string(v, &content_at, p),
    };
    let size = match (content, encoding) {
        (Some(c), Some(SeedEncoding::Utf8)) => {
            let n = c.chars().count();
            if n > caps::FILE_CHARS {
                p.at(
                    &content_at,
                    format!("{n} characters: at most {} per file", caps::FILE_CHARS),
                );
            }
            Some(c.len())
        }
        (Some(c), Some(SeedEncoding::Base64)) => {
            if c.len() > caps::FILE_BASE64_CHARS {
                p.at(
                    &content_at,
                    format!(
                        "{} characters of base64: at most {} ({} bytes) per file",
                        c.len(),
                        caps::FILE_BASE64_CHARS,
                        caps::FILE_BYTES
                    ),
                );
                None
            } else {
                match grammar::decode_base64(c) {
                    Ok(bytes) => Some(bytes.len()),
                    Err(e) => {
                        p.at(&content_at, e);
                        None
                    }
                }
            }
        }
        _ => None,
    };
    let mode = match obj.get("mode") {
        None | Some(Value::Null) => Some(None),
        Some(v) => {
            let mode_at = format!("{at}/mode");
            // Permission bits only: no setuid, setgid or sticky bit.
            whole(v, &mode_at, 0, 0o777, p).map(|m| Some(m as u32))
        }
    };
    if p.list.len() + p.dropped != before {
        return None;
    }
    Some((
        SeedFile {
            path: path?.to_owned(),
            content: content?.to_owned(),
            encoding: encoding?,
            mode: mode?,
        },
        size?,
    ))
}
