//! Sandbox sessions: a long-lived box an app opens from a template, runs
//! code in (scripts, handlers, stateful cells) and moves files in and out
//! of, until it is terminated, expires or is lost.
//!
//! This module holds the record ([`Session`]), its states and the moves
//! between them ([`SessionStatus`], [`next`]), and the checks of what a
//! client asks for: a new session ([`plan`]) against its template
//! ([`SessionTemplate`]) and the server's policy ([`SessionPolicy`]), and an
//! execution in one ([`plan_exec`]). Each check reports *every* problem at
//! once, located by JSON pointer, the way a package manifest's are.
//!
//! A session is owned by the app whose key created it, and runs on one
//! node (`node`): its box, its workspace and its running executions live
//! there and nowhere else. Recovery after a crash, snapshots and several
//! nodes forwarding to the owner build on these two fields.
//!
//! Must never: start, touch or look for a box (the server's session
//! manager does), or pass on a value it has not checked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_package::Problem;

names! {
    /// State of a session.
    pub enum SessionStatus {
        /// Recorded; its box is starting.
        Creating = "creating",
        /// Its box runs: executions and file calls are served.
        Running = "running",
        /// Ended on request (terminate, delete, the server stopping).
        Terminated = "terminated",
        /// Ended by the sweeper: idle for longer than its idle timeout, or
        /// older than its max lifetime.
        Expired = "expired",
        /// Its box could not start, or died under it.
        Failed = "failed",
        /// Its node went away (crash, kill -9) while it was live: its box
        /// did not survive.
        Lost = "lost",
    }
}

impl SessionStatus {
    /// The session will not change any more (its box is gone).
    pub fn is_final(self) -> bool {
        !self.is_live()
    }

    /// The session holds (or is getting) a box: it counts against quotas.
    pub fn is_live(self) -> bool {
        matches!(self, SessionStatus::Creating | SessionStatus::Running)
    }
}

/// Why a move between session states is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the session is {from}; it cannot become {to}")]
pub struct SessionMoveError {
    /// Its state now.
    pub from: SessionStatus,
    /// The state asked for.
    pub to: SessionStatus,
}

/// The session state machine: `creating → running`, and from either live
/// state to any final one (`creating → running → terminated | expired |
/// failed | lost`). A final state never changes.
pub fn next(from: SessionStatus, to: SessionStatus) -> Result<SessionStatus, SessionMoveError> {
    use SessionStatus::*;
    match (from, to) {
        (Creating, Running) => Ok(to),
        (Creating | Running, Terminated | Expired | Failed | Lost) => Ok(to),
        _ => Err(SessionMoveError { from, to }),
    }
}

names! {
    /// The languages a session runs.
    pub enum SessionLanguage {
        /// Python 3.
        Python = "python",
        /// JavaScript (Node.js).
        Javascript = "javascript",
        /// bash.
        Shell = "shell",
    }
}

names! {
    /// How an execution's code runs in a session.
    pub enum RunMode {
        /// A program: its output and exit code are the result.
        Script = "script",
        /// `handler(event)`: the return value is the result, as for plugins.
        Handler = "handler",
        /// A cell of the language's persistent interpreter: variables,
        /// imports and open files persist; the value of the last expression
        /// is the result.
        Repl = "repl",
    }
}

impl SessionLanguage {
    /// Whether `mode` exists for this language (bash has scripts only).
    pub fn supports(self, mode: RunMode) -> bool {
        mode == RunMode::Script || self != SessionLanguage::Shell
    }
}

/// What a session's box may use, as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SessionResources {
    /// CPU bandwidth, in cores (fractions allowed).
    pub cpu_cores: f64,
    /// Memory of every process of the session together, MiB.
    pub memory_mb: u64,
    /// Size of the workspace, MiB.
    pub disk_mb: u64,
    /// Processes and threads together.
    pub pids: u32,
}

impl Default for SessionResources {
    /// 1 core, 512 MiB, 1 GiB of workspace, 128 processes (a template's
    /// defaults).
    fn default() -> Self {
        SessionResources {
            cpu_cores: 1.0,
            memory_mb: 512,
            disk_mb: 1024,
            pids: 128,
        }
    }
}

impl SessionResources {
    /// The least a session may ask for: the session agent and one
    /// interpreter of each language must fit.
    pub const MIN: SessionResources = SessionResources {
        cpu_cores: 0.1,
        memory_mb: 64,
        disk_mb: 1,
        pids: 32,
    };
}

/// One sandbox session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// `ses_…`.
    pub id: String,
    /// The app (tenant) that owns it: the app of the key that created it.
    pub app: String,
    /// The template it was started from.
    pub template: String,
    /// State.
    pub status: SessionStatus,
    /// Why it is in its state (always set once final).
    pub status_reason: Option<String>,
    /// What its box may use.
    pub resources: SessionResources,
    /// Idle this long (no execution, no file call), it expires. Seconds.
    pub idle_timeout_secs: u64,
    /// It expires this long after it was created, whatever it does. Seconds.
    pub max_lifetime_secs: u64,
    /// Environment of every execution (the template's, then the request's).
    pub env: BTreeMap<String, String>,
    /// Hosts (`host[:port]`) it may reach through the egress proxy; empty:
    /// no network at all.
    pub network: Vec<String>,
    /// The dependency layer its box got (the template's), if any.
    pub layer: Option<String>,
    /// The node (server process) that runs its box: the only one that can
    /// serve its executions and files.
    pub node: String,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Its box started, Unix ms.
    pub started_at: Option<i64>,
    /// Last execution or file call, Unix ms (the creation at first).
    pub last_active_at: i64,
    /// Ended, Unix ms.
    pub ended_at: Option<i64>,
    /// Executions that ended in it.
    pub executions: u64,
}

impl Session {
    /// When the max lifetime ends, Unix ms.
    pub fn expires_at(&self) -> i64 {
        self.created_at
            .saturating_add(i64::try_from(self.max_lifetime_secs.saturating_mul(1000)).unwrap_or(i64::MAX))
    }

    /// Why the session should expire at `now` (Unix ms), given its last
    /// activity `last_active` (which the node running it knows best), if it
    /// should.
    pub fn expiry(&self, now: i64, last_active: i64) -> Option<String> {
        if now >= self.expires_at() {
            return Some(format!(
                "it reached its max lifetime of {}",
                secs(self.max_lifetime_secs)
            ));
        }
        let idle_ms = i64::try_from(self.idle_timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        if now.saturating_sub(last_active) >= idle_ms {
            return Some(format!(
                "it was idle for longer than its idle timeout of {}",
                secs(self.idle_timeout_secs)
            ));
        }
        None
    }
}

fn secs(n: u64) -> String {
    if n == 1 {
        "1 second".into()
    } else {
        format!("{n} seconds")
    }
}

/// What a session needs from its template (the template's defaults and
/// what it allows). Built from a stored template by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionTemplate {
    /// Its id.
    pub id: String,
    /// Default resources.
    pub resources: SessionResources,
    /// Default idle timeout, seconds.
    pub idle_timeout_secs: u64,
    /// Default max lifetime, seconds.
    pub max_lifetime_secs: u64,
    /// Environment every session of it gets.
    pub env: BTreeMap<String, String>,
    /// The allow-list its sessions may use (a session asks for these or a
    /// subset); empty: no network.
    pub allow: Vec<String>,
    /// Its runtime: the ecosystem of extra packages (pip for python, npm
    /// for node; a shell template takes none).
    pub runtime: crate::template::TemplateRuntime,
    /// Its own packages (built into its layer).
    pub packages: Vec<crate::template::PackageReq>,
    /// Its ready dependency layer, if any.
    pub layer: Option<String>,
    /// Files written into each new session's workspace: path and bytes.
    pub files: Vec<(String, Vec<u8>)>,
}

impl SessionTemplate {
    /// What a session needs from the stored template `t`: its resources and
    /// timeouts as defaults, its environment, its allow-list (when its
    /// network mode is `allow_list`), its layer and its seed files. An
    /// error naming the template when a seed file does not decode (a
    /// stored template was checked when it was written).
    pub fn of(t: &crate::template::Template) -> Result<SessionTemplate, String> {
        let files = t
            .files
            .iter()
            .map(|f| {
                f.bytes()
                    .map(|b| (f.path.clone(), b))
                    .map_err(|e| format!("template `{}`: seed file `{}`: {e}", t.id, f.path))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SessionTemplate {
            id: t.id.clone(),
            resources: SessionResources {
                cpu_cores: t.resources.cpu_cores,
                memory_mb: t.resources.memory_mb,
                disk_mb: t.resources.disk_mb,
                pids: t.resources.pids,
            },
            idle_timeout_secs: t.resources.idle_timeout_secs,
            max_lifetime_secs: t.resources.max_lifetime_secs,
            env: t.env.clone(),
            allow: match t.network.mode {
                crate::template::NetworkMode::AllowList => t.network.allow.clone(),
                crate::template::NetworkMode::None => Vec::new(),
            },
            runtime: t.runtime,
            packages: t.packages.clone(),
            layer: t.layer.clone(),
            files,
        })
    }
}

/// What a server lets sessions ask for (the `sessions.*` configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPolicy {
    /// The most any session may use.
    pub max: SessionResources,
    /// The longest idle timeout, seconds.
    pub max_idle_timeout_secs: u64,
    /// The longest max lifetime, seconds.
    pub max_lifetime_secs: u64,
    /// Whether sessions may have network at all (through the egress proxy).
    pub network: bool,
    /// Largest code of one execution, bytes.
    pub max_code_bytes: usize,
    /// Largest event of one execution (handler mode), bytes of JSON.
    pub max_event_bytes: usize,
    /// The wall clock of an execution that names none, ms.
    pub default_timeout_ms: u64,
    /// The longest wall clock an execution may ask for, ms.
    pub max_timeout_ms: u64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            max: SessionResources {
                cpu_cores: 2.0,
                memory_mb: 2048,
                disk_mb: 4096,
                pids: 512,
            },
            max_idle_timeout_secs: 24 * 3600,
            max_lifetime_secs: 7 * 24 * 3600,
            network: true,
            max_code_bytes: 1 << 20,
            max_event_bytes: 1 << 20,
            default_timeout_ms: 60_000,
            max_timeout_ms: 600_000,
        }
    }
}

/// Caps on what a request may carry, whatever the configuration.
pub mod caps {
    /// Environment variables of a session or an execution.
    pub const ENV: usize = 64;
    /// Bytes of all names and values together.
    pub const ENV_TOTAL_BYTES: usize = 64 * 1024;
    /// Longest environment variable name.
    pub const ENV_NAME: usize = 128;
    /// Allow-list entries.
    pub const ALLOW: usize = 64;
}

/// Environment variables the platform sets in a session box, which a
/// session may not override: the interpreters' search paths, the home and
/// temporary folders, the proxy the box's network goes through, the
/// dynamic loader's and Warden's own.
pub const RESERVED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "PWD",
    "TMPDIR",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "PYTHONUNBUFFERED",
    "NODE_PATH",
    "NODE_OPTIONS",
    "NODE_EXTRA_CA_CERTS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Prefixes of reserved environment variables.
pub const RESERVED_ENV_PREFIXES: &[&str] = &["LD_", "WARDEN_"];

/// An environment variable's name as a regular expression.
pub const ENV_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]{0,127}$";

/// A new session, as a client asks for it (after the API read the JSON).
/// Absent values take the template's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewSession {
    /// The template (`python-basic` when absent).
    pub template: Option<String>,
    /// CPU, cores.
    pub cpu_cores: Option<f64>,
    /// Memory, MiB.
    pub memory_mb: Option<u64>,
    /// Workspace, MiB.
    pub disk_mb: Option<u64>,
    /// Processes.
    pub pids: Option<u32>,
    /// Idle timeout, seconds.
    pub idle_timeout_secs: Option<u64>,
    /// Max lifetime, seconds.
    pub max_lifetime_secs: Option<u64>,
    /// Environment added to the template's.
    pub env: BTreeMap<String, String>,
    /// The allow-list asked for (`None`: the template's).
    pub network: Option<Vec<String>>,
    /// Extra packages, in the template grammar (`{"ecosystem": "pip",
    /// "name": …, "version": …}`): installed with the template's into a
    /// layer of the session's own.
    pub packages: Vec<Value>,
    /// A snapshot (of a session of the same app) whose files the new
    /// session's workspace starts with; its template is the default.
    pub snapshot: Option<String>,
}

/// The template a session starts from when it names none.
pub const DEFAULT_TEMPLATE: &str = "python-basic";

/// A checked session request: everything its record and its box need.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPlan {
    /// Resources.
    pub resources: SessionResources,
    /// Idle timeout, seconds.
    pub idle_timeout_secs: u64,
    /// Max lifetime, seconds.
    pub max_lifetime_secs: u64,
    /// The template's environment, then the request's.
    pub env: BTreeMap<String, String>,
    /// The allow-list (empty: no network).
    pub network: Vec<String>,
    /// The extra packages, checked (empty: the template's layer as it is).
    pub packages: Vec<crate::template::PackageReq>,
}

fn problem(location: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        location: location.into(),
        message: message.into(),
    }
}

/// A JSON pointer token (`~` and `/` escaped).
fn token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Check a new session against its template and the server's policy:
/// resources within the policy, timeouts within the policy, environment
/// names and values, the allow-list within the template's (and only if the
/// server allows network). Every problem, located.
pub fn plan(
    req: &NewSession,
    t: &SessionTemplate,
    policy: &SessionPolicy,
) -> Result<SessionPlan, Vec<Problem>> {
    let mut problems = Vec::new();
    let min = SessionResources::MIN;
    let max = policy.max;
    let mut r = t.resources;
    if let Some(c) = req.cpu_cores {
        if c.is_finite() && c >= min.cpu_cores && c <= max.cpu_cores {
            r.cpu_cores = c;
        } else {
            problems.push(problem(
                "/resources/cpu_cores",
                format!(
                    "must be between {} and {} (the server's limit)",
                    min.cpu_cores, max.cpu_cores
                ),
            ));
        }
    }
    let mut int = |location: &str, v: Option<u64>, lo: u64, hi: u64, slot: &mut u64| {
        if let Some(v) = v {
            if (lo..=hi).contains(&v) {
                *slot = v;
            } else {
                problems.push(problem(
                    location,
                    format!("must be between {lo} and {hi} (the server's limit)"),
                ));
            }
        }
    };
    int(
        "/resources/memory_mb",
        req.memory_mb,
        min.memory_mb,
        max.memory_mb,
        &mut r.memory_mb,
    );
    int(
        "/resources/disk_mb",
        req.disk_mb,
        min.disk_mb,
        max.disk_mb,
        &mut r.disk_mb,
    );
    let mut pids = u64::from(r.pids);
    int(
        "/resources/pids",
        req.pids.map(u64::from),
        u64::from(min.pids),
        u64::from(max.pids),
        &mut pids,
    );
    r.pids = u32::try_from(pids).unwrap_or(max.pids);
    let mut idle = t.idle_timeout_secs.min(policy.max_idle_timeout_secs);
    int(
        "/idle_timeout_secs",
        req.idle_timeout_secs,
        1,
        policy.max_idle_timeout_secs,
        &mut idle,
    );
    let mut lifetime = t.max_lifetime_secs.min(policy.max_lifetime_secs);
    int(
        "/max_lifetime_secs",
        req.max_lifetime_secs,
        1,
        policy.max_lifetime_secs,
        &mut lifetime,
    );
    // Template defaults outside the session's bounds are brought within
    // them (a template is checked against the templates' ceilings, which an
    // operator may set above the sessions'; its floors are lower than what
    // a session's agent needs).
    if req.cpu_cores.is_none() {
        r.cpu_cores = r.cpu_cores.max(min.cpu_cores).min(max.cpu_cores);
    }
    if req.memory_mb.is_none() {
        r.memory_mb = r.memory_mb.max(min.memory_mb).min(max.memory_mb);
    }
    if req.disk_mb.is_none() {
        r.disk_mb = r.disk_mb.max(min.disk_mb).min(max.disk_mb);
    }
    if req.pids.is_none() {
        r.pids = r.pids.max(min.pids).min(max.pids);
    }
    let mut env = t.env.clone();
    check_env("/env", &req.env, &mut problems);
    env.extend(req.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let network = match &req.network {
        None if policy.network => t.allow.clone(),
        None => Vec::new(),
        Some(asked) => {
            check_allow(asked, t, policy, &mut problems);
            asked.clone()
        }
    };
    let packages = extra_packages(&req.packages, t, &[], &mut problems);
    if problems.is_empty() {
        Ok(SessionPlan {
            resources: r,
            idle_timeout_secs: idle,
            max_lifetime_secs: lifetime,
            env,
            network,
            packages,
        })
    } else {
        Err(problems)
    }
}

/// Packages to install into a running session of template `t` that has
/// `have` installed already (its own, beyond the template's): the same
/// rules as at creation, and a package the session has is refused too.
pub fn more_packages(
    asked: &[Value],
    t: &SessionTemplate,
    have: &[crate::template::PackageReq],
) -> Result<Vec<crate::template::PackageReq>, Vec<Problem>> {
    let mut problems = Vec::new();
    if asked.is_empty() {
        return Err(vec![problem("/packages", "list at least one package to install")]);
    }
    let list = extra_packages(asked, t, have, &mut problems);
    if problems.is_empty() {
        Ok(list)
    } else {
        Err(problems)
    }
}

/// A session's extra packages, read with the template grammar for the
/// template's runtime; a package the template (or, for an install, the
/// session: `have`) lists already, or a pip list that would mix hashed and
/// unhashed requirements with those, is a problem at its index.
fn extra_packages(
    asked: &[Value],
    t: &SessionTemplate,
    have: &[crate::template::PackageReq],
    problems: &mut Vec<Problem>,
) -> Vec<crate::template::PackageReq> {
    use crate::template::Ecosystem;
    if asked.is_empty() {
        return Vec::new();
    }
    let list = match crate::template::parse_packages(&Value::Array(asked.to_vec()), t.runtime) {
        Ok(list) => list,
        Err(ps) => {
            problems.extend(ps);
            return Vec::new();
        }
    };
    let name = |p: &crate::template::PackageReq| crate::layer::normalize_name(p.ecosystem, &p.name);
    let before = problems.len();
    let hashed = |ps: &[crate::template::PackageReq]| {
        ps.iter()
            .filter(|p| p.ecosystem == Ecosystem::Pip)
            .any(|p| !p.hashes.is_empty())
    };
    let template_hashed = hashed(&t.packages) || hashed(have);
    for (i, p) in list.iter().enumerate() {
        let same = |q: &crate::template::PackageReq| q.ecosystem == p.ecosystem && name(q) == name(p);
        if list[..i].iter().any(same) {
            problems.push(problem(
                format!("/packages/{i}/name"),
                format!("{} is listed twice", crate::template::grammar::shown(&p.name)),
            ));
        } else if have.iter().any(same) {
            problems.push(problem(
                format!("/packages/{i}/name"),
                format!(
                    "the session has {} installed already",
                    crate::template::grammar::shown(&p.name)
                ),
            ));
        } else if t.packages.iter().any(same) {
            problems.push(problem(
                format!("/packages/{i}/name"),
                format!(
                    "template `{}` has {} already: list only packages it lacks",
                    t.id,
                    crate::template::grammar::shown(&p.name)
                ),
            ));
        } else if p.ecosystem == Ecosystem::Pip && template_hashed && p.hashes.is_empty() {
            problems.push(problem(
                format!("/packages/{i}/hashes"),
                format!(
                    "required: template `{}` pins its packages by hash, and pip then checks every package's",
                    t.id
                ),
            ));
        }
    }
    if problems.len() == before
        && !template_hashed
        && hashed(&list)
        && t.packages
            .iter()
            .chain(have)
            .any(|q| q.ecosystem == Ecosystem::Pip)
    {
        problems.push(problem(
            "/packages",
            format!(
                "template `{}` does not pin its packages by hash, and pip checks every package's once one has them: give these without hashes",
                t.id
            ),
        ));
    }
    if problems.len() == before {
        list
    } else {
        Vec::new()
    }
}

/// Check environment variables (of a session or an execution) at `at`.
pub fn check_env(at: &str, env: &BTreeMap<String, String>, problems: &mut Vec<Problem>) {
    if env.len() > caps::ENV {
        problems.push(problem(
            at,
            format!("{} variables; at most {} are allowed", env.len(), caps::ENV),
        ));
        return;
    }
    let total: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > caps::ENV_TOTAL_BYTES {
        problems.push(problem(
            at,
            format!(
                "names and values take {total} bytes; at most {} are allowed",
                caps::ENV_TOTAL_BYTES
            ),
        ));
    }
    for (k, v) in env {
        let here = format!("{at}/{}", token(k));
        let valid = !k.is_empty()
            && k.len() <= caps::ENV_NAME
            && k.bytes()
                .enumerate()
                .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
        if !valid {
            problems.push(problem(
                &here,
                format!(
                    "not a variable name: letters, digits and `_`, not starting with a digit, at most {} characters",
                    caps::ENV_NAME
                ),
            ));
        } else if RESERVED_ENV.contains(&k.as_str()) || RESERVED_ENV_PREFIXES.iter().any(|p| k.starts_with(p))
        {
            problems.push(problem(
                &here,
                "reserved: the platform sets it (search paths, home, temporary folder, proxy, `LD_*`, `WARDEN_*`)",
            ));
        }
        if v.contains('\0') {
            problems.push(problem(&here, "the value contains a NUL character"));
        }
    }
}

/// An allow-list entry, `host` or `host:port`, is well formed: a lowercase
/// host name (an optional leading `*.`; no IP literal: the last label starts
/// with a letter) and an optional port from 1 to 65535.
pub fn valid_allow_entry(entry: &str) -> bool {
    let (host, port) = match entry.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (entry, None),
    };
    if let Some(p) = port
        && !(p.bytes().all(|b| b.is_ascii_digit())
            && !p.starts_with('0')
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n)))
    {
        return false;
    }
    let host = host.strip_prefix("*.").unwrap_or(host);
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 || host.len() > 253 {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    labels.iter().all(|l| label_ok(l))
        && labels
            .last()
            .is_some_and(|l| l.as_bytes()[0].is_ascii_lowercase())
}

/// Whether the template's allow-list covers `entry`: the same entry, the
/// same host with any port when the template names no port, or a host
/// under a `*.` entry of the template.
fn covered(entry: &str, template: &[String]) -> bool {
    let split = |e: &str| -> (String, Option<String>) {
        match e.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p.to_owned())),
            None => (e.to_owned(), None),
        }
    };
    let (host, port) = split(entry);
    template.iter().any(|t| {
        let (thost, tport) = split(t);
        let port_ok = tport.is_none() || tport == port;
        let host_ok = match thost.strip_prefix("*.") {
            Some(domain) => {
                let h = host.strip_prefix("*.").unwrap_or(&host);
                h.ends_with(&format!(".{domain}"))
            }
            None => thost == host,
        };
        port_ok && host_ok
    })
}

fn check_allow(asked: &[String], t: &SessionTemplate, policy: &SessionPolicy, problems: &mut Vec<Problem>) {
    if asked.is_empty() {
        return;
    }
    if !policy.network {
        problems.push(problem(
            "/network/allow",
            "this server gives sessions no network (sessions.network is off)",
        ));
        return;
    }
    if t.allow.is_empty() {
        problems.push(problem(
            "/network/allow",
            format!(
                "template `{}` allows no network: its sessions cannot reach any host",
                t.id
            ),
        ));
        return;
    }
    if asked.len() > caps::ALLOW {
        problems.push(problem(
            "/network/allow",
            format!("{} entries; at most {} are allowed", asked.len(), caps::ALLOW),
        ));
        return;
    }
    for (i, e) in asked.iter().enumerate() {
        let at = format!("/network/allow/{i}");
        if !valid_allow_entry(e) {
            problems.push(problem(
                &at,
                "not a host name with an optional port (`api.example.com`, `*.example.com:443`; no IP literals, lowercase)",
            ));
        } else if !covered(e, &t.allow) {
            problems.push(problem(
                &at,
                format!("template `{}` does not allow this host", t.id),
            ));
        }
    }
}

/// An execution in a session, as a client asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSessionExecution {
    /// Its language.
    pub language: SessionLanguage,
    /// How it runs.
    pub mode: RunMode,
    /// The code.
    pub code: String,
    /// The event (handler mode only; a JSON object).
    pub event: Option<Value>,
    /// Its wall clock, ms (the policy's default when absent).
    pub timeout_ms: Option<u64>,
    /// Environment added to the session's for this execution.
    pub env: BTreeMap<String, String>,
}

/// A checked execution request.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecPlan {
    /// The event as JSON text (`{}` when none; handler mode only).
    pub event: String,
    /// Its wall clock, ms.
    pub timeout_ms: u64,
}

/// Check an execution request against the server's policy: the mode exists
/// for the language, the code and the event are within their caps, the
/// timeout within the policy, the environment well formed. Every problem,
/// located.
pub fn plan_exec(req: &NewSessionExecution, policy: &SessionPolicy) -> Result<ExecPlan, Vec<Problem>> {
    let mut problems = Vec::new();
    if !req.language.supports(req.mode) {
        problems.push(problem(
            "/mode",
            format!(
                "{} runs scripts only (`mode: script`); handler and repl modes exist for python and javascript",
                req.language
            ),
        ));
    }
    if req.code.len() > policy.max_code_bytes {
        problems.push(problem(
            "/code",
            format!(
                "the code is {} bytes; the limit is {} (sessions.max_code_bytes)",
                req.code.len(),
                policy.max_code_bytes
            ),
        ));
    }
    if req.code.contains('\0') {
        problems.push(problem("/code", "the code contains a NUL character"));
    }
    let event = match (&req.event, req.mode) {
        (None, _) => "{}".to_owned(),
        (Some(e), RunMode::Handler) => {
            if !e.is_object() {
                problems.push(problem("/event", "the event must be a JSON object"));
            }
            let text = e.to_string();
            if text.len() > policy.max_event_bytes {
                problems.push(problem(
                    "/event",
                    format!(
                        "the event is {} bytes as JSON; the limit is {}",
                        text.len(),
                        policy.max_event_bytes
                    ),
                ));
            }
            text
        }
        (Some(_), mode) => {
            problems.push(problem(
                "/event",
                format!("only handler mode takes an event (this execution's mode is {mode})"),
            ));
            String::new()
        }
    };
    let timeout_ms = match req.timeout_ms {
        None => policy.default_timeout_ms.min(policy.max_timeout_ms),
        Some(t) if (1..=policy.max_timeout_ms).contains(&t) => t,
        Some(_) => {
            problems.push(problem(
                "/timeout_ms",
                format!(
                    "must be between 1 and {} (sessions.max_timeout_ms)",
                    policy.max_timeout_ms
                ),
            ));
            0
        }
    };
    check_env("/env", &req.env, &mut problems);
    if problems.is_empty() {
        Ok(ExecPlan { event, timeout_ms })
    } else {
        Err(problems)
    }
}

/// What a client may read about live sessions' use of a node or an app:
/// how many, and the memory and disk they reserved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionUsage {
    /// Live sessions (`creating` or `running`).
    pub sessions: u64,
    /// Memory they reserved, MiB.
    pub memory_mb: u64,
    /// Disk they reserved, MiB.
    pub disk_mb: u64,
}

/// Caps on live sessions (per app, or per node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionQuota {
    /// Most live sessions.
    pub sessions: u64,
    /// Most memory reserved, MiB.
    pub memory_mb: u64,
    /// Most disk reserved, MiB.
    pub disk_mb: u64,
}

impl SessionQuota {
    /// Why one more session using `r` (and `extra_disk_mb` beside its
    /// workspace) does not fit beside `used`, if it does not.
    pub fn refuses(&self, used: SessionUsage, r: &SessionResources, extra_disk_mb: u64) -> Option<String> {
        if used.sessions + 1 > self.sessions {
            return Some(format!(
                "{} live sessions already (the limit is {})",
                used.sessions, self.sessions
            ));
        }
        if used.memory_mb + r.memory_mb > self.memory_mb {
            return Some(format!(
                "{} MiB of memory reserved by live sessions; {} MiB more would pass the limit of {} MiB",
                used.memory_mb, r.memory_mb, self.memory_mb
            ));
        }
        let disk = r.disk_mb + extra_disk_mb;
        if used.disk_mb + disk > self.disk_mb {
            return Some(format!(
                "{} MiB of disk reserved by live sessions; {disk} MiB more would pass the limit of {} MiB",
                used.disk_mb, self.disk_mb
            ));
        }
        None
    }
}

/// Filters for listing sessions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionFilter {
    /// Only this app's.
    pub app: Option<String>,
    /// Only from this template.
    pub template: Option<String>,
    /// Only in this state.
    pub status: Option<SessionStatus>,
    /// Only those on this node.
    pub node: Option<String>,
    /// Continue after this id.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> SessionTemplate {
        SessionTemplate {
            id: "python-basic".into(),
            resources: SessionResources::default(),
            idle_timeout_secs: 900,
            max_lifetime_secs: 86_400,
            env: BTreeMap::from([("LANG".into(), "C.UTF-8".into())]),
            allow: Vec::new(),
            runtime: crate::template::TemplateRuntime::Python,
            packages: Vec::new(),
            layer: None,
            files: Vec::new(),
        }
    }

    fn locations(r: Result<impl std::fmt::Debug, Vec<Problem>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|p| p.location).collect()
    }

    #[test]
    fn the_state_machine_has_one_way_out() {
        use SessionStatus::*;
        assert_eq!(next(Creating, Running), Ok(Running));
        for end in [Terminated, Expired, Failed, Lost] {
            assert_eq!(next(Creating, end), Ok(end));
            assert_eq!(next(Running, end), Ok(end));
            for to in [Creating, Running, Terminated, Expired, Failed, Lost] {
                assert!(next(end, to).is_err(), "{end} -> {to}");
            }
        }
        assert!(next(Running, Creating).is_err());
        assert!(Running.is_live() && Creating.is_live() && Lost.is_final());
        for name in SessionStatus::NAMES {
            assert_eq!(SessionStatus::parse(name).unwrap().as_str(), *name);
        }
        assert_eq!(SessionStatus::parse("Running"), None);
    }

    #[test]
    fn defaults_come_from_the_template_and_requests_stay_within_the_policy() {
        let policy = SessionPolicy::default();
        let p = plan(&NewSession::default(), &template(), &policy).unwrap();
        assert_eq!(p.resources, SessionResources::default());
        assert_eq!((p.idle_timeout_secs, p.max_lifetime_secs), (900, 86_400));
        assert!(p.network.is_empty());
        assert_eq!(p.env["LANG"], "C.UTF-8");
        let p = plan(
            &NewSession {
                memory_mb: Some(256),
                cpu_cores: Some(0.5),
                idle_timeout_secs: Some(5),
                env: BTreeMap::from([("LANG".into(), "fr_FR.UTF-8".into())]),
                ..NewSession::default()
            },
            &template(),
            &policy,
        )
        .unwrap();
        assert_eq!(p.resources.memory_mb, 256);
        assert_eq!(p.resources.cpu_cores, 0.5);
        assert_eq!(p.idle_timeout_secs, 5);
        assert_eq!(p.env["LANG"], "fr_FR.UTF-8", "the request's value wins");
        let bad = NewSession {
            cpu_cores: Some(f64::NAN),
            memory_mb: Some(1 << 40),
            disk_mb: Some(0),
            pids: Some(1),
            idle_timeout_secs: Some(0),
            max_lifetime_secs: Some(u64::MAX),
            env: BTreeMap::from([
                ("PATH".into(), "/evil".into()),
                ("LD_PRELOAD".into(), "x".into()),
                ("1X".into(), "x".into()),
                ("OK".into(), "a\0b".into()),
            ]),
            network: Some(vec!["example.com".into()]),
            packages: vec![json!({"name": "requests"})],
            ..NewSession::default()
        };
        assert_eq!(
            locations(plan(&bad, &template(), &policy)),
            [
                "/resources/cpu_cores",
                "/resources/memory_mb",
                "/resources/disk_mb",
                "/resources/pids",
                "/idle_timeout_secs",
                "/max_lifetime_secs",
                "/env/1X",
                "/env/LD_PRELOAD",
                "/env/OK",
                "/env/PATH",
                "/network/allow",
                "/packages/0/ecosystem",
            ]
        );
    }

    #[test]
    fn extra_packages_are_read_with_the_template_grammar() {
        let policy = SessionPolicy::default();
        let mut t = template();
        t.packages = vec![crate::template::PackageReq {
            ecosystem: crate::template::Ecosystem::Pip,
            name: "Six".into(),
            version: None,
            hashes: Vec::new(),
        }];
        let ok = NewSession {
            packages: vec![json!({"ecosystem": "pip", "name": "attrs", "version": ">=20"})],
            ..NewSession::default()
        };
        let p = plan(&ok, &t, &policy).unwrap();
        assert_eq!(p.packages.len(), 1);
        assert_eq!(p.packages[0].name, "attrs");
        let bad = NewSession {
            packages: vec![
                json!({"ecosystem": "pip", "name": "six"}),
                json!({"ecosystem": "npm", "name": "left-pad"}),
                json!({"ecosystem": "pip", "name": "x; rm -rf /"}),
            ],
            ..NewSession::default()
        };
        assert_eq!(
            locations(plan(&bad, &t, &policy)),
            ["/packages/1/ecosystem", "/packages/2/name"]
        );
        let dup = NewSession {
            packages: vec![json!({"ecosystem": "pip", "name": "six"})],
            ..NewSession::default()
        };
        let ps = plan(&dup, &t, &policy).unwrap_err();
        assert_eq!(ps[0].location, "/packages/0/name");
        assert!(ps[0].message.contains("has `six` already"), "{}", ps[0].message);
        t.runtime = crate::template::TemplateRuntime::Shell;
        t.packages.clear();
        assert_eq!(locations(plan(&dup, &t, &policy)), ["/packages"]);
    }

    #[test]
    fn the_allow_list_is_the_templates_or_within_it() {
        let mut t = template();
        t.allow = vec!["pypi.org:443".into(), "*.example.com".into()];
        let policy = SessionPolicy::default();
        let p = plan(&NewSession::default(), &t, &policy).unwrap();
        assert_eq!(p.network, t.allow, "the template's by default");
        let p = plan(
            &NewSession {
                network: Some(vec![]),
                ..NewSession::default()
            },
            &t,
            &policy,
        )
        .unwrap();
        assert!(p.network.is_empty(), "a session may ask for none");
        let p = plan(
            &NewSession {
                network: Some(vec!["api.example.com:8443".into(), "pypi.org:443".into()]),
                ..NewSession::default()
            },
            &t,
            &policy,
        )
        .unwrap();
        assert_eq!(p.network.len(), 2);
        let asked = NewSession {
            network: Some(vec![
                "pypi.org:80".into(),
                "example.com".into(),
                "10.0.0.1".into(),
                "Evil.com".into(),
                "files.pythonhosted.org".into(),
            ]),
            ..NewSession::default()
        };
        assert_eq!(
            locations(plan(&asked, &t, &policy)),
            [
                "/network/allow/0",
                "/network/allow/1",
                "/network/allow/2",
                "/network/allow/3",
                "/network/allow/4"
            ]
        );
        let closed = SessionPolicy {
            network: false,
            ..SessionPolicy::default()
        };
        assert!(
            plan(&NewSession::default(), &t, &closed)
                .unwrap()
                .network
                .is_empty()
        );
        for good in ["a.io", "*.b.example.com:1", "x-y.z9.com:65535"] {
            assert!(valid_allow_entry(good), "{good}");
        }
        for bad in [
            "a",
            "1.2.3.4",
            "a.io:0",
            "a.io:65536",
            "a..io",
            "-a.io",
            "a.io:08",
            "*.io.",
            "A.io",
        ] {
            assert!(!valid_allow_entry(bad), "{bad}");
        }
    }

    #[test]
    fn a_stored_template_gives_its_defaults_and_its_allow_list() {
        use crate::template::{
            NetworkMode, NetworkPolicy, SeedEncoding, SeedFile, Template, TemplateRuntime,
        };
        let mut spec = Template::new(
            crate::template::TemplateSpec {
                id: "t".into(),
                name: "t".into(),
                description: None,
                runtime: TemplateRuntime::Python,
                packages: Vec::new(),
                env: BTreeMap::from([("A".into(), "1".into())]),
                resources: crate::template::Resources {
                    memory_mb: 16,
                    ..Default::default()
                },
                network: NetworkPolicy {
                    mode: NetworkMode::AllowList,
                    allow: vec!["example.com".into()],
                },
                files: vec![SeedFile {
                    path: "b.bin".into(),
                    content: "AAE=".into(),
                    encoding: SeedEncoding::Base64,
                    mode: None,
                }],
            },
            false,
            0,
        );
        let t = SessionTemplate::of(&spec).unwrap();
        assert_eq!(t.allow, ["example.com"]);
        assert_eq!(t.files, [("b.bin".to_owned(), vec![0u8, 1])]);
        assert_eq!(t.env["A"], "1");
        // A template's floor is lower than a session's: brought up to it.
        let p = plan(&NewSession::default(), &t, &SessionPolicy::default()).unwrap();
        assert_eq!(p.resources.memory_mb, SessionResources::MIN.memory_mb);
        assert_eq!(p.network, ["example.com"]);
        spec.network.mode = NetworkMode::None;
        assert!(SessionTemplate::of(&spec).unwrap().allow.is_empty());
        spec.files[0].content = "not base64!".into();
        assert!(SessionTemplate::of(&spec).unwrap_err().contains("b.bin"));
    }

    #[test]
    fn executions_are_checked_whole() {
        let policy = SessionPolicy {
            max_code_bytes: 10,
            ..SessionPolicy::default()
        };
        let ok = NewSessionExecution {
            language: SessionLanguage::Python,
            mode: RunMode::Handler,
            code: "x = 1".into(),
            event: Some(json!({"n": 1})),
            timeout_ms: None,
            env: BTreeMap::new(),
        };
        let p = plan_exec(&ok, &policy).unwrap();
        assert_eq!(p.event, r#"{"n":1}"#);
        assert_eq!(p.timeout_ms, 60_000);
        let bad = NewSessionExecution {
            language: SessionLanguage::Shell,
            mode: RunMode::Repl,
            code: "x".repeat(11),
            event: Some(json!({})),
            timeout_ms: Some(0),
            env: BTreeMap::from([("WARDEN_X".into(), String::new())]),
        };
        assert_eq!(
            locations(plan_exec(&bad, &policy)),
            ["/mode", "/code", "/event", "/timeout_ms", "/env/WARDEN_X"]
        );
        let not_object = NewSessionExecution {
            event: Some(json!([1, 2])),
            ..ok
        };
        let problems = plan_exec(&not_object, &policy).unwrap_err();
        assert_eq!(problems[0].location, "/event");
        assert!(problems[0].message.contains("JSON object"), "{problems:?}");
    }

    #[test]
    fn expiry_names_its_reason() {
        let s = Session {
            id: "ses_1".into(),
            app: "a".into(),
            template: "python-basic".into(),
            status: SessionStatus::Running,
            status_reason: None,
            resources: SessionResources::default(),
            idle_timeout_secs: 10,
            max_lifetime_secs: 60,
            env: BTreeMap::new(),
            network: Vec::new(),
            layer: None,
            node: "n".into(),
            created_at: 1_000,
            started_at: Some(1_000),
            last_active_at: 1_000,
            ended_at: None,
            executions: 0,
        };
        assert_eq!(s.expiry(5_000, 1_000), None);
        assert!(s.expiry(11_000, 1_000).unwrap().contains("idle"));
        assert_eq!(s.expiry(11_000, 9_000), None, "activity resets the idle clock");
        assert!(
            s.expiry(61_000, 60_000)
                .unwrap()
                .contains("max lifetime of 60 seconds")
        );
        let quota = SessionQuota {
            sessions: 2,
            memory_mb: 1024,
            disk_mb: 2048,
        };
        let r = SessionResources::default();
        assert_eq!(quota.refuses(SessionUsage::default(), &r, 64), None);
        let used = SessionUsage {
            sessions: 1,
            memory_mb: 512,
            disk_mb: 1024,
        };
        assert!(quota.refuses(used, &r, 64).unwrap().contains("disk"));
        assert!(quota.refuses(used, &r, 0).is_none());
        let full = SessionUsage { sessions: 2, ..used };
        assert!(quota.refuses(full, &r, 0).unwrap().contains("2 live sessions"));
    }
}
