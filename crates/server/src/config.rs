//! Configuration: defaults, then a TOML file, then `WARDEN_*` environment
//! variables (then command-line flags, applied by the CLI). Every key is in
//! [`KEYS`], the one registry that `docs/configuration.md` documents (a test
//! checks that it does).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warden_core::{Resources, TemplatePolicy};
use warden_package::DenyRule;

/// A configuration key: its dotted path in the TOML file, its environment
/// variable, its default (as written in TOML) and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Dotted TOML path.
    pub path: &'static str,
    /// Environment variable.
    pub env: &'static str,
    /// Default, as TOML.
    pub default: &'static str,
    /// What it is for.
    pub doc: &'static str,
}

macro_rules! keys {
    ($( $path:literal, $env:literal, $default:literal, $doc:literal; )*) => {
        /// Every configuration key.
        pub const KEYS: &[Key] = &[ $( Key { path: $path, env: $env, default: $default, doc: $doc }, )* ];
    };
}

keys! {
    "listen", "WARDEN_LISTEN", "\"127.0.0.1:8080\"", "Address and port the API listens on.";
    "node_id", "WARDEN_NODE_ID", "\"<hostname>:<port>\"", "This server's name, recorded with the executions it runs; at start it marks its own started, unfinished ones interrupted (accepted async ones that had not started stay queued and run). Keep it stable across restarts and unique across servers sharing a database.";
    "data_dir", "WARDEN_DATA_DIR", "\"warden-data\"", "Folder for the SQLite database, package blobs and unpacked code (created when missing).";
    "database_url", "WARDEN_DATABASE_URL", "\"sqlite://<data_dir>/warden.db\"", "Records: `sqlite://PATH` (embedded, one WAL file) or `postgres://USER@HOST/DB`.";
    "blob_dir", "WARDEN_BLOB_DIR", "\"<data_dir>/blobs\"", "Folder for package blobs, artifacts and layer archives, when `objects.url` is not set.";
    "objects.url", "WARDEN_OBJECTS_URL", "none", "S3-compatible object storage for package blobs, artifacts and layer archives, shared by every node: `s3://bucket` or `s3://bucket/prefix`. Unset: the local `blob_dir`. Checked at start (a small object is written, read back and deleted); a failure names the setting to fix.";
    "objects.endpoint", "WARDEN_OBJECTS_ENDPOINT", "none", "The service's URL for S3-compatible services (MinIO, Ceph, …), e.g. `https://s3.example.net`; unset: AWS.";
    "objects.region", "WARDEN_OBJECTS_REGION", "\"us-east-1\"", "The region, as the service expects it in signatures.";
    "objects.access_key_id", "WARDEN_OBJECTS_ACCESS_KEY_ID", "none", "Access key id. With neither key set, the machine's own credentials are used (instance metadata, web identity); `AWS_*` variables are not read.";
    "objects.secret_access_key", "WARDEN_OBJECTS_SECRET_ACCESS_KEY", "none", "Secret access key; prefer the environment variable to the file. Never logged or shown.";
    "objects.allow_http", "WARDEN_OBJECTS_ALLOW_HTTP", "false", "Allow a plain-HTTP `objects.endpoint` (a service on the local network or loopback).";
    "objects.virtual_hosted", "WARDEN_OBJECTS_VIRTUAL_HOSTED", "false", "Address buckets as `bucket.host` instead of `host/bucket` (path style, which S3-compatible services expect).";
    "objects.timeout_secs", "WARDEN_OBJECTS_TIMEOUT_SECS", "30", "Per-request timeout, and the longest time spent retrying one request.";
    "objects.retries", "WARDEN_OBJECTS_RETRIES", "3", "Retries of a failed request (with backoff) before it counts as failed.";
    "cluster.advertise_url", "WARDEN_CLUSTER_ADVERTISE_URL", "none", "The base URL other nodes sharing the database reach this node at (e.g. `http://10.0.0.5:8080`): a request for a session this node runs that reaches another node is forwarded here. Unset: requests for its sessions are not forwarded (another node answers 409 naming this node).";
    "cluster.heartbeat_secs", "WARDEN_CLUSTER_HEARTBEAT_SECS", "5", "How often this node records that it is alive (and looks for dead nodes whose sessions it can take over).";
    "cluster.dead_after_secs", "WARDEN_CLUSTER_DEAD_AFTER_SECS", "30", "A node whose last heartbeat is older than this is dead: its live sessions are taken over by another node (resumed from their latest snapshot, or marked `lost`). Keep it several heartbeats long. A node acts for its sessions only while its own latest recorded heartbeat is younger than three quarters of this (by its own clock): past that it refuses their requests (503) and ends their boxes, so keep the nodes' clocks in step (NTP).";
    "cluster.takeover_wait_secs", "WARDEN_CLUSTER_TAKEOVER_WAIT_SECS", "300", "A node takes over a dead node's sessions only within its own session quotas (`sessions.node_max_*`); a session no node has room to resume waits this long past its node's death, then the node that sees it marks it `lost` with the reason.";
    "log_format", "WARDEN_LOG_FORMAT", "\"text\"", "`text` for people, `json` for log collectors (one object per line).";
    "log_level", "WARDEN_LOG", "\"info\"", "A `tracing` filter: `info`, `debug`, `warden_server=debug,info`, ….";
    "max_concurrent", "WARDEN_MAX_CONCURRENT", "16", "Executions running at once on this node.";
    "max_queue", "WARDEN_MAX_QUEUE", "256", "Executions waiting for a slot; beyond it requests get 429 with `Retry-After`.";
    "retry_after_secs", "WARDEN_RETRY_AFTER_SECS", "1", "The `Retry-After` a 429 answer suggests.";
    "max_event_bytes", "WARDEN_MAX_EVENT_BYTES", "6291456", "Largest execute body (the event), in bytes; larger gets 413.";
    "max_package_bytes", "WARDEN_MAX_PACKAGE_BYTES", "33554432", "Largest uploaded package, in bytes; larger gets 413.";
    "shutdown_grace_secs", "WARDEN_SHUTDOWN_GRACE_SECS", "30", "On SIGTERM, how long in-flight executions may take to finish; those still running are recorded `interrupted`, accepted async ones not yet started stay queued for the next start or another node.";
    "key_cache_secs", "WARDEN_KEY_CACHE_SECS", "5", "How long a checked API key is remembered; a key revoked on another node stops working within this time.";
    "jail.state_dir", "WARDEN_STATE_DIR", "\"/run/warden\"", "Where box slots live (the default when not root: `$XDG_RUNTIME_DIR/warden`).";
    "jail.max_boxes", "WARDEN_JAIL_MAX_BOXES", "64", "Most boxes at once, warm ones included.";
    "warm.enabled", "WARDEN_WARM_ENABLED", "true", "Serve calls from warm boxes.";
    "warm.prewarm_per_code", "WARDEN_WARM_PREWARM_PER_CODE", "1", "Warm boxes kept ready per (app, plugin version) once called.";
    "warm.max_per_code", "WARDEN_WARM_MAX_PER_CODE", "4", "Most warm boxes per (app, plugin version).";
    "warm.max_total", "WARDEN_WARM_MAX_TOTAL", "32", "Most warm boxes in all.";
    "warm.idle_ttl_secs", "WARDEN_WARM_IDLE_TTL_SECS", "300", "Idle warm boxes are stopped after this long.";
    "warm.max_wait_ms", "WARDEN_WARM_MAX_WAIT_MS", "100", "When every warm box of a plugin version is busy, how long a call waits for one before it runs cold. One-shot runs (`/v1/run`, Dify, Piston) wait up to 2 s, or their own timeout when shorter, since starting a box beside busy warm ones costs more CPU than waiting.";
    "warm.grace_ms", "WARDEN_WARM_GRACE_MS", "2000", "Past a warm call's wall clock, how long the host waits for its box to report the end before it counts the box as dead, kills it and replaces it.";
    "layers.dir", "WARDEN_LAYERS_DIR", "\"<data_dir>/layers\"", "Folder of built dependency layers (one read-only tree each, bound into boxes of templates that use it).";
    "layers.pip_index_url", "WARDEN_LAYERS_PIP_INDEX_URL", "\"https://pypi.org/simple\"", "The Python package index builds install from (a mirror's URL here); never a URL with credentials.";
    "layers.pip_index_hosts", "WARDEN_LAYERS_PIP_INDEX_HOSTS", "[\"pypi.org\", \"files.pythonhosted.org\"]", "`host[:port]` a Python build's box may reach through the egress proxy (the index and where it serves files from).";
    "layers.npm_registry", "WARDEN_LAYERS_NPM_REGISTRY", "\"https://registry.npmjs.org/\"", "The npm registry builds install from (a mirror's URL here).";
    "layers.npm_registry_hosts", "WARDEN_LAYERS_NPM_REGISTRY_HOSTS", "[\"registry.npmjs.org\"]", "`host[:port]` a Node.js build's box may reach through the egress proxy.";
    "layers.folder", "WARDEN_LAYERS_FOLDER", "none", "Air-gapped hosts: a folder of wheels and sdists (pip) and tarballs (npm) that builds install from, with no network at all; when set, the indexes are not used.";
    "layers.allow_cidrs", "WARDEN_LAYERS_ALLOW_CIDRS", "[]", "Addresses a build may reach although they are not public (a mirror on the local network), as CIDRs; the egress proxy refuses them otherwise.";
    "layers.build_timeout_secs", "WARDEN_LAYERS_BUILD_TIMEOUT_SECS", "600", "Longest a build may take.";
    "layers.max_size_mb", "WARDEN_LAYERS_MAX_SIZE_MB", "1024", "Largest installed layer; a larger one fails its build.";
    "layers.max_builds", "WARDEN_LAYERS_MAX_BUILDS", "2", "Builds running at once on this node; more wait their turn.";
    "layers.gc_unused_days", "WARDEN_LAYERS_GC_UNUSED_DAYS", "30", "A layer no template uses and no box was given for this long is deleted.";
    "layers.gc_max_total_mb", "WARDEN_LAYERS_GC_MAX_TOTAL_MB", "20480", "When layers take more than this, the least recently used that no template uses are deleted first.";
    "policy.reject_critical", "WARDEN_POLICY_REJECT_CRITICAL", "false", "Reject at submit a version whose report has a critical finding.";
    "policy.max_timeout_ms", "WARDEN_POLICY_MAX_TIMEOUT_MS", "60000", "Largest `limits.timeout_ms` a manifest may ask for.";
    "policy.max_memory_mb", "WARDEN_POLICY_MAX_MEMORY_MB", "1024", "Largest `limits.memory_mb` a manifest may ask for.";
    "policy.network_ip_literals", "WARDEN_POLICY_NETWORK_IP_LITERALS", "false", "Let a manifest's `permissions.network` name IP addresses (`10.1.2.3:8080`, `[2001:db8::1]:443`); `false`: host names only. An address still passes the egress proxy's address rules (loopback, private and link-local ranges need `policy.network_allow_cidrs`).";
    "policy.api_local_servers", "WARDEN_POLICY_API_LOCAL_SERVERS", "false", "Let an API plugin's OpenAPI document name plain-`http` servers and loopback or private hosts (`localhost`, `127.0.0.1`, `10.0.0.5`; addresses also need `policy.network_ip_literals`): tests and APIs on the local network. `false`: public `https` hosts only. Link-local addresses (cloud metadata) are refused either way.";
    "credentials.key", "WARDEN_CREDENTIALS_KEY", "none", "The key platform-held credentials are sealed with (ChaCha20-Poly1305): 32 random bytes in base64 (`head -c 32 /dev/urandom | base64`). Unset: the server stores no credentials (`PUT /v1/apps/{app}/credentials/{name}` answers 409 naming this setting). Prefer the environment variable to the file; never logged or shown. Rotation: docs/capabilities.md.";
    "credentials.old_keys", "WARDEN_CREDENTIALS_OLD_KEYS", "[]", "Earlier `credentials.key`s, still accepted for opening the credentials they sealed (each stored credential names its key's id); a credential written again is sealed with the current key. Never logged or shown.";
    "policy.network_allow_cidrs", "WARDEN_POLICY_NETWORK_ALLOW_CIDRS", "[]", "Addresses plugins' declared hosts may resolve to although they are not public (an internal API), as CIDRs; the egress proxy refuses them otherwise. Name single addresses (`10.0.0.5/32`): a range opens every service in it.";
    "sessions.max_cpu_cores", "WARDEN_SESSIONS_MAX_CPU_CORES", "2.0", "Most CPU one session may ask for, in cores.";
    "sessions.max_memory_mb", "WARDEN_SESSIONS_MAX_MEMORY_MB", "2048", "Most memory one session may ask for (all its processes together), MiB.";
    "sessions.max_disk_mb", "WARDEN_SESSIONS_MAX_DISK_MB", "4096", "Largest workspace one session may ask for, MiB (a tmpfs: it is memory on the host).";
    "sessions.max_pids", "WARDEN_SESSIONS_MAX_PIDS", "512", "Most processes and threads one session may ask for.";
    "sessions.tmp_mb", "WARDEN_SESSIONS_TMP_MB", "64", "Size of each session's `/tmp`, MiB (counted in the disk quotas beside the workspace).";
    "sessions.max_idle_timeout_secs", "WARDEN_SESSIONS_MAX_IDLE_TIMEOUT_SECS", "86400", "Longest idle timeout a session may ask for.";
    "sessions.max_lifetime_secs", "WARDEN_SESSIONS_MAX_LIFETIME_SECS", "604800", "Longest max lifetime a session may ask for.";
    "sessions.network", "WARDEN_SESSIONS_NETWORK", "true", "Whether sessions may reach the hosts their template allows (through the egress proxy); `false`: no session has network.";
    "sessions.app_max_live", "WARDEN_SESSIONS_APP_MAX_LIVE", "8", "Most live sessions one app may hold (on all nodes); beyond it, 429.";
    "sessions.app_max_memory_mb", "WARDEN_SESSIONS_APP_MAX_MEMORY_MB", "4096", "Most memory one app's live sessions may reserve together, MiB; beyond it, 429.";
    "sessions.app_max_disk_mb", "WARDEN_SESSIONS_APP_MAX_DISK_MB", "8192", "Most disk (workspaces and `/tmp`) one app's live sessions may reserve together, MiB; beyond it, 429.";
    "sessions.prestart", "WARDEN_SESSIONS_PRESTART", "2", "Session boxes kept started ahead (agent ready, nothing run, no app yet) for each kind of session recently created (template layer, disk, lifetime; sessions without network), so a create claims one instead of starting a box; each holds a box slot and ~5 MiB. Missing ones start at once, each on its own thread; a create that finds none ready while some are starting waits for one (up to 250 ms; one create per starting box). 0: none.";
    "sessions.node_max_live", "WARDEN_SESSIONS_NODE_MAX_LIVE", "32", "Most live sessions on this node (each holds a box slot: keep it below `jail.max_boxes`); beyond it, 503.";
    "sessions.node_max_memory_mb", "WARDEN_SESSIONS_NODE_MAX_MEMORY_MB", "16384", "Most memory the live sessions on this node may reserve together, MiB; beyond it, 503.";
    "sessions.node_max_disk_mb", "WARDEN_SESSIONS_NODE_MAX_DISK_MB", "32768", "Most disk the live sessions on this node may reserve together, MiB; beyond it, 503.";
    "sessions.max_code_bytes", "WARDEN_SESSIONS_MAX_CODE_BYTES", "1048576", "Largest code of one execution, bytes (422 beyond it; a body far larger gets 413).";
    "sessions.max_upload_bytes", "WARDEN_SESSIONS_MAX_UPLOAD_BYTES", "104857600", "Largest file upload, bytes; larger gets 413.";
    "sessions.default_timeout_ms", "WARDEN_SESSIONS_DEFAULT_TIMEOUT_MS", "60000", "Wall clock of an execution that names no `timeout_ms`.";
    "sessions.max_timeout_ms", "WARDEN_SESSIONS_MAX_TIMEOUT_MS", "600000", "Longest `timeout_ms` an execution may ask for.";
    "sessions.max_pending", "WARDEN_SESSIONS_MAX_PENDING", "16", "Executions running or waiting in one session (they run one at a time); beyond it, 429.";
    "sessions.sync_wait_secs", "WARDEN_SESSIONS_SYNC_WAIT_SECS", "300", "Longest a synchronous execution request waits; an execution still running then is answered 202 (poll or stream it).";
    "sessions.sweep_interval_ms", "WARDEN_SESSIONS_SWEEP_INTERVAL_MS", "1000", "How often the sweeper looks for sessions past their idle timeout or max lifetime (and for dead boxes).";
    "sessions.snapshot_max_mb", "WARDEN_SESSIONS_SNAPSHOT_MAX_MB", "1024", "Largest snapshot (the workspace's files together), MiB; a larger workspace's snapshot is refused (422) and the session keeps running.";
    "sessions.snapshot_every_secs", "WARDEN_SESSIONS_SNAPSHOT_EVERY_SECS", "600", "A live session active since its latest snapshot is snapshotted this often (only its newest scheduled snapshot is kept; explicit ones stay); what a restart or another node resumes from. 0: only explicit snapshots.";
    "sessions.resume_on_restart", "WARDEN_SESSIONS_RESUME_ON_RESTART", "true", "At start, a session this node ran that has a ready snapshot is resumed from its latest one (same id, new box); `false`, or no snapshot: it is marked `lost` with the reason.";
    "run.default_timeout_ms", "WARDEN_RUN_DEFAULT_TIMEOUT_MS", "10000", "Wall clock of a one-shot run (`POST /v1/run`, Dify, Piston) that names none.";
    "run.max_timeout_ms", "WARDEN_RUN_MAX_TIMEOUT_MS", "60000", "Longest wall clock a one-shot run may ask for; beyond it, 422 (400 on the compatibility paths).";
    "run.default_memory_mb", "WARDEN_RUN_DEFAULT_MEMORY_MB", "256", "Memory of a one-shot run that names none, MiB.";
    "run.max_memory_mb", "WARDEN_RUN_MAX_MEMORY_MB", "1024", "Most memory a one-shot run may ask for, MiB.";
    "run.default_compile_timeout_ms", "WARDEN_RUN_DEFAULT_COMPILE_TIMEOUT_MS", "30000", "Wall clock of a compile step (C, C++, Go) that names none.";
    "run.max_compile_timeout_ms", "WARDEN_RUN_MAX_COMPILE_TIMEOUT_MS", "120000", "Longest compile step a run may ask for.";
    "run.default_compile_memory_mb", "WARDEN_RUN_DEFAULT_COMPILE_MEMORY_MB", "1024", "Memory of a compile step that names none, MiB.";
    "run.max_compile_memory_mb", "WARDEN_RUN_MAX_COMPILE_MEMORY_MB", "2048", "Most memory a compile step may ask for, MiB.";
    "run.max_files", "WARDEN_RUN_MAX_FILES", "64", "Most files of one run.";
    "run.max_files_bytes", "WARDEN_RUN_MAX_FILES_BYTES", "2097152", "Most bytes of a run's files together.";
    "run.max_stdin_bytes", "WARDEN_RUN_MAX_STDIN_BYTES", "1048576", "Most bytes of a run's standard input.";
    "run.max_args", "WARDEN_RUN_MAX_ARGS", "256", "Most arguments of a run (each at most 4096 bytes).";
    "run.network", "WARDEN_RUN_NETWORK", "true", "Whether runs that ask for network may reach the hosts their template allows (through the egress proxy); `false`: no run has network, and a run that asks runs without it.";
    "compat.dify_template", "WARDEN_COMPAT_DIFY_TEMPLATE", "\"dify\"", "The template Dify's Python 3 runs use (created at start when missing: python with `requests`, `httpx`, `jinja2`; build it with `POST /v1/templates/dify/build`). Until its layer is built, runs use `python-basic` and say so in their log.";
    "compat.piston_anonymous", "WARDEN_COMPAT_PISTON_ANONYMOUS", "false", "Let calls without a key use the Piston paths (`/api/v2/*`), recorded as app `compat.anonymous_app`, within `compat.piston_anonymous_per_minute`.";
    "compat.piston_anonymous_per_minute", "WARDEN_COMPAT_PISTON_ANONYMOUS_PER_MINUTE", "60", "Anonymous Piston runs allowed per minute on this node (all callers together); beyond it, 429 `{\"message\"}`.";
    "compat.anonymous_app", "WARDEN_COMPAT_ANONYMOUS_APP", "\"anonymous\"", "The app anonymous Piston runs are recorded under (their warm boxes are that app's).";
    "templates.max_cpu_cores", "WARDEN_TEMPLATES_MAX_CPU_CORES", "4.0", "Largest `resources.cpu_cores` a template may ask for (at least 1.0, the default a template gets; at most 64).";
    "templates.max_memory_mb", "WARDEN_TEMPLATES_MAX_MEMORY_MB", "4096", "Largest `resources.memory_mb` a template may ask for (512 to 262144).";
    "templates.max_disk_mb", "WARDEN_TEMPLATES_MAX_DISK_MB", "10240", "Largest `resources.disk_mb` a template may ask for (1024 to 1048576).";
    "templates.max_pids", "WARDEN_TEMPLATES_MAX_PIDS", "1024", "Largest `resources.pids` a template may ask for (128 to 65536).";
    "templates.max_idle_timeout_secs", "WARDEN_TEMPLATES_MAX_IDLE_TIMEOUT_SECS", "86400", "Largest `resources.idle_timeout_secs` a template may ask for (900 to 2592000).";
    "templates.max_lifetime_secs", "WARDEN_TEMPLATES_MAX_LIFETIME_SECS", "604800", "Largest `resources.max_lifetime_secs` a template may ask for (86400 to 2592000).";
    "tiers.wasm_untrusted", "WARDEN_TIERS_WASM_UNTRUSTED", "false", "Let untrusted versions (unsigned, or not approved as trusted) use the `wasm` runtime. The wasm tier runs inside the server process (in wasmtime, without files or sockets), so by default only trusted versions may; untrusted publishers reach only the jail.";
    "tiers.wasm_max_instances", "WARDEN_TIERS_WASM_MAX_INSTANCES", "64", "WebAssembly instances alive at once (the pooling allocator's pool); a call beyond it ends `error`. Keep it at least `max_concurrent`.";
    "tiers.wasm_max_memory_mb", "WARDEN_TIERS_WASM_MAX_MEMORY_MB", "1024", "Largest linear memory of one wasm call (its `limits.memory_mb` is capped at this).";
    "policy.deny", "-", "[]", "Denied dependencies: `[[policy.deny]]` tables with `ecosystem` (`pypi`, `npm`, `go`), `name`, `versions` (a semver requirement or `*`) and `reason`. File only.";
}

/// Log output shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The jail section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JailSection {
    /// Where box slots live.
    pub state_dir: Option<PathBuf>,
    /// Most boxes at once.
    pub max_boxes: u32,
}

impl Default for JailSection {
    fn default() -> Self {
        JailSection {
            state_dir: None,
            max_boxes: 64,
        }
    }
}

/// The warm pool section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmSection {
    /// Serve calls warm.
    pub enabled: bool,
    /// Ready boxes per code.
    pub prewarm_per_code: usize,
    /// Most boxes per code.
    pub max_per_code: usize,
    /// Most boxes in all.
    pub max_total: usize,
    /// Idle boxes stop after this long.
    pub idle_ttl_secs: u64,
    /// Wait for a busy warm box this long before going cold.
    pub max_wait_ms: u64,
    /// Past a call's wall clock, wait this long for its box before killing it.
    pub grace_ms: u64,
}

impl Default for WarmSection {
    fn default() -> Self {
        WarmSection {
            enabled: true,
            prewarm_per_code: 1,
            max_per_code: 4,
            max_total: 32,
            idle_ttl_secs: 300,
            max_wait_ms: 100,
            grace_ms: 2000,
        }
    }
}

/// The package policy section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySection {
    /// Reject versions with critical findings.
    pub reject_critical: bool,
    /// Largest timeout a manifest may ask for.
    pub max_timeout_ms: u64,
    /// Largest memory a manifest may ask for.
    pub max_memory_mb: u64,
    /// Denied dependencies.
    pub deny: Vec<DenyRule>,
    /// `permissions.network` may name IP addresses.
    pub network_ip_literals: bool,
    /// API plugins' documents may name plain-http, loopback and private
    /// servers.
    pub api_local_servers: bool,
    /// Non-public addresses plugins' declared hosts may reach.
    pub network_allow_cidrs: Vec<String>,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            reject_critical: false,
            max_timeout_ms: 60_000,
            max_memory_mb: 1024,
            deny: Vec::new(),
            network_ip_literals: false,
            api_local_servers: false,
            network_allow_cidrs: Vec::new(),
        }
    }
}

/// The credentials section: the key platform-held credentials are sealed
/// with, and earlier keys still accepted for opening them.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialsSection {
    /// The current key, base64 (32 bytes).
    pub key: Option<String>,
    /// Earlier keys, base64.
    pub old_keys: Vec<String>,
}

impl std::fmt::Debug for CredentialsSection {
    // Keys never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsSection")
            .field("key", &self.key.as_ref().map(|_| "<hidden>"))
            .field("old_keys", &format!("<{} hidden>", self.old_keys.len()))
            .finish()
    }
}

/// Whether `s` is an address range as the egress proxy takes it: an IP
/// address, optionally with a prefix length that fits it.
fn is_cidr(s: &str) -> bool {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    len.is_none_or(|l| l.parse::<u8>().is_ok_and(|l| l <= max))
}

/// The trust tiers section: who may use the in-process wasm tier, and its
/// engine's size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TiersSection {
    /// Untrusted versions may use the `wasm` runtime.
    pub wasm_untrusted: bool,
    /// Instances alive at once.
    pub wasm_max_instances: u32,
    /// Largest linear memory of a call, MiB.
    pub wasm_max_memory_mb: u64,
}

impl Default for TiersSection {
    fn default() -> Self {
        TiersSection {
            wasm_untrusted: false,
            wasm_max_instances: 64,
            wasm_max_memory_mb: 1024,
        }
    }
}

/// The layers section: where dependency layers are built from and kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LayersSection {
    /// Folder of layers (default: in the data folder).
    pub dir: Option<PathBuf>,
    /// The Python index.
    pub pip_index_url: String,
    /// Hosts a Python build may reach.
    pub pip_index_hosts: Vec<String>,
    /// The npm registry.
    pub npm_registry: String,
    /// Hosts a Node.js build may reach.
    pub npm_registry_hosts: Vec<String>,
    /// Air-gapped: build from this folder, no network.
    pub folder: Option<PathBuf>,
    /// Non-public addresses builds may reach.
    pub allow_cidrs: Vec<String>,
    /// Longest build.
    pub build_timeout_secs: u64,
    /// Largest layer, MiB.
    pub max_size_mb: u64,
    /// Builds at once.
    pub max_builds: usize,
    /// Unused layers go after this many days.
    pub gc_unused_days: u64,
    /// Most MiB of layers kept.
    pub gc_max_total_mb: u64,
}

impl Default for LayersSection {
    fn default() -> Self {
        LayersSection {
            dir: None,
            pip_index_url: "https://pypi.org/simple".into(),
            pip_index_hosts: vec!["pypi.org".into(), "files.pythonhosted.org".into()],
            npm_registry: "https://registry.npmjs.org/".into(),
            npm_registry_hosts: vec!["registry.npmjs.org".into()],
            folder: None,
            allow_cidrs: Vec::new(),
            build_timeout_secs: 600,
            max_size_mb: 1024,
            max_builds: 2,
            gc_unused_days: 30,
            gc_max_total_mb: 20480,
        }
    }
}

/// The sessions section: what one session may ask for, the quotas of an
/// app and of this node, and the caps of executions and files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsSection {
    /// Most CPU per session, cores.
    pub max_cpu_cores: f64,
    /// Most memory per session, MiB.
    pub max_memory_mb: u64,
    /// Largest workspace per session, MiB.
    pub max_disk_mb: u64,
    /// Most processes per session.
    pub max_pids: u32,
    /// Size of each session's `/tmp`, MiB.
    pub tmp_mb: u64,
    /// Longest idle timeout.
    pub max_idle_timeout_secs: u64,
    /// Longest max lifetime.
    pub max_lifetime_secs: u64,
    /// Sessions may have network.
    pub network: bool,
    /// Live sessions per app.
    pub app_max_live: u64,
    /// Memory per app, MiB.
    pub app_max_memory_mb: u64,
    /// Disk per app, MiB.
    pub app_max_disk_mb: u64,
    /// Session boxes started ahead per kind of session.
    pub prestart: usize,
    /// Live sessions on this node.
    pub node_max_live: u64,
    /// Memory on this node, MiB.
    pub node_max_memory_mb: u64,
    /// Disk on this node, MiB.
    pub node_max_disk_mb: u64,
    /// Largest code, bytes.
    pub max_code_bytes: usize,
    /// Largest upload, bytes.
    pub max_upload_bytes: u64,
    /// Default execution timeout, ms.
    pub default_timeout_ms: u64,
    /// Longest execution timeout, ms.
    pub max_timeout_ms: u64,
    /// Executions running or waiting per session.
    pub max_pending: usize,
    /// Longest wait of a synchronous execution request, seconds.
    pub sync_wait_secs: u64,
    /// Sweeper period, ms.
    pub sweep_interval_ms: u64,
    /// Largest snapshot, MiB.
    pub snapshot_max_mb: u64,
    /// Resume this node's sessions from their snapshots at start.
    pub resume_on_restart: bool,
    /// Period of scheduled snapshots, seconds (0: none).
    pub snapshot_every_secs: u64,
}

impl Default for SessionsSection {
    fn default() -> Self {
        SessionsSection {
            max_cpu_cores: 2.0,
            max_memory_mb: 2048,
            max_disk_mb: 4096,
            max_pids: 512,
            tmp_mb: 64,
            max_idle_timeout_secs: 24 * 3600,
            max_lifetime_secs: 7 * 24 * 3600,
            network: true,
            app_max_live: 8,
            app_max_memory_mb: 4096,
            app_max_disk_mb: 8192,
            prestart: 2,
            node_max_live: 32,
            node_max_memory_mb: 16_384,
            node_max_disk_mb: 32_768,
            max_code_bytes: 1 << 20,
            max_upload_bytes: 100 << 20,
            default_timeout_ms: 60_000,
            max_timeout_ms: 600_000,
            max_pending: 16,
            sync_wait_secs: 300,
            sweep_interval_ms: 1000,
            snapshot_max_mb: 1024,
            resume_on_restart: true,
            snapshot_every_secs: 600,
        }
    }
}

/// The run section: what one-shot runs (`POST /v1/run` and the
/// compatibility APIs) may ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSection {
    /// Wall clock of a run that names none, ms.
    pub default_timeout_ms: u64,
    /// Longest run, ms.
    pub max_timeout_ms: u64,
    /// Memory of a run that names none, MiB.
    pub default_memory_mb: u64,
    /// Most memory of a run, MiB.
    pub max_memory_mb: u64,
    /// Wall clock of a compile step that names none, ms.
    pub default_compile_timeout_ms: u64,
    /// Longest compile step, ms.
    pub max_compile_timeout_ms: u64,
    /// Memory of a compile step that names none, MiB.
    pub default_compile_memory_mb: u64,
    /// Most memory of a compile step, MiB.
    pub max_compile_memory_mb: u64,
    /// Most files.
    pub max_files: usize,
    /// Most bytes of files.
    pub max_files_bytes: usize,
    /// Most bytes of stdin.
    pub max_stdin_bytes: usize,
    /// Most arguments.
    pub max_args: usize,
    /// Runs may have network.
    pub network: bool,
}

impl Default for RunSection {
    fn default() -> Self {
        let p = warden_core::RunPolicy::default();
        RunSection {
            default_timeout_ms: p.default_timeout_ms,
            max_timeout_ms: p.max_timeout_ms,
            default_memory_mb: p.default_memory_mb,
            max_memory_mb: p.max_memory_mb,
            default_compile_timeout_ms: p.default_compile_timeout_ms,
            max_compile_timeout_ms: p.max_compile_timeout_ms,
            default_compile_memory_mb: p.default_compile_memory_mb,
            max_compile_memory_mb: p.max_compile_memory_mb,
            max_files: p.max_files,
            max_files_bytes: p.max_files_bytes,
            max_stdin_bytes: p.max_stdin_bytes,
            max_args: p.max_args,
            network: p.network,
        }
    }
}

impl RunSection {
    /// The core's policy these settings make.
    pub fn policy(&self) -> warden_core::RunPolicy {
        warden_core::RunPolicy {
            default_timeout_ms: self.default_timeout_ms,
            max_timeout_ms: self.max_timeout_ms,
            default_memory_mb: self.default_memory_mb,
            max_memory_mb: self.max_memory_mb,
            default_compile_timeout_ms: self.default_compile_timeout_ms,
            max_compile_timeout_ms: self.max_compile_timeout_ms,
            default_compile_memory_mb: self.default_compile_memory_mb,
            max_compile_memory_mb: self.max_compile_memory_mb,
            max_files: self.max_files,
            max_files_bytes: self.max_files_bytes,
            max_stdin_bytes: self.max_stdin_bytes,
            max_args: self.max_args,
            network: self.network,
        }
    }
}

/// The compatibility section: Dify's sandbox API and Piston's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompatSection {
    /// The template of Dify's Python runs.
    pub dify_template: String,
    /// Piston paths without a key.
    pub piston_anonymous: bool,
    /// Anonymous Piston runs per minute on this node.
    pub piston_anonymous_per_minute: u32,
    /// The app anonymous runs are recorded under.
    pub anonymous_app: String,
}

impl Default for CompatSection {
    fn default() -> Self {
        CompatSection {
            dify_template: "dify".into(),
            piston_anonymous: false,
            piston_anonymous_per_minute: 60,
            anonymous_app: "anonymous".into(),
        }
    }
}

/// The cluster section: how the nodes sharing one database find each other
/// and tell when one has died.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// Where other nodes reach this one.
    pub advertise_url: Option<String>,
    /// Heartbeat period, seconds.
    pub heartbeat_secs: u64,
    /// Silence after which a node is dead, seconds.
    pub dead_after_secs: u64,
    /// How long past `dead_after_secs` a dead node's sessions wait for a
    /// node with room to resume them before they are marked `lost`,
    /// seconds.
    pub takeover_wait_secs: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            advertise_url: None,
            heartbeat_secs: 5,
            dead_after_secs: 30,
            takeover_wait_secs: 300,
        }
    }
}

/// The object storage section: an S3-compatible bucket shared by every
/// node, instead of the local blob folder.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectsSection {
    /// `s3://bucket[/prefix]`; unset: the local blob folder.
    pub url: Option<String>,
    /// The service's URL (S3-compatible services).
    pub endpoint: Option<String>,
    /// The region.
    pub region: String,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
    /// Virtual-hosted-style addressing.
    pub virtual_hosted: bool,
    /// Per-request timeout, seconds.
    pub timeout_secs: u64,
    /// Retries per request.
    pub retries: usize,
}

impl std::fmt::Debug for ObjectsSection {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectsSection")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<hidden>"),
            )
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted", &self.virtual_hosted)
            .field("timeout_secs", &self.timeout_secs)
            .field("retries", &self.retries)
            .finish()
    }
}

impl Default for ObjectsSection {
    fn default() -> Self {
        ObjectsSection {
            url: None,
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            virtual_hosted: false,
            timeout_secs: 30,
            retries: 3,
        }
    }
}

impl ObjectsSection {
    /// The store's options, when object storage is configured.
    pub fn s3(&self) -> Option<warden_store::S3Options> {
        let url = self.url.clone()?;
        Some(warden_store::S3Options {
            url,
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            allow_http: self.allow_http,
            virtual_hosted: self.virtual_hosted,
            timeout: std::time::Duration::from_secs(self.timeout_secs.max(1)),
            retries: self.retries,
        })
    }
}

/// The templates section: the ceilings of what a template may ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplatesSection {
    /// Most CPU cores.
    pub max_cpu_cores: f64,
    /// Most memory, MiB.
    pub max_memory_mb: u64,
    /// Most disk, MiB.
    pub max_disk_mb: u64,
    /// Most processes.
    pub max_pids: u32,
    /// Longest idle timeout, seconds.
    pub max_idle_timeout_secs: u64,
    /// Longest lifetime, seconds.
    pub max_lifetime_secs: u64,
}

impl Default for TemplatesSection {
    fn default() -> Self {
        let max = TemplatePolicy::default().max;
        TemplatesSection {
            max_cpu_cores: max.cpu_cores,
            max_memory_mb: max.memory_mb,
            max_disk_mb: max.disk_mb,
            max_pids: max.pids,
            max_idle_timeout_secs: max.idle_timeout_secs,
            max_lifetime_secs: max.max_lifetime_secs,
        }
    }
}

impl TemplatesSection {
    /// The core's policy for these ceilings.
    pub fn policy(&self) -> TemplatePolicy {
        TemplatePolicy {
            max: Resources {
                cpu_cores: self.max_cpu_cores,
                memory_mb: self.max_memory_mb,
                disk_mb: self.max_disk_mb,
                pids: self.max_pids,
                idle_timeout_secs: self.max_idle_timeout_secs,
                max_lifetime_secs: self.max_lifetime_secs,
            },
        }
    }
}

/// Everything `warden serve` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// This node's name (default: hostname and port).
    pub node_id: Option<String>,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Database URL (default: SQLite in the data folder).
    pub database_url: Option<String>,
    /// Blob folder (default: in the data folder).
    pub blob_dir: Option<PathBuf>,
    /// Log shape.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// Executions running at once.
    pub max_concurrent: usize,
    /// Executions waiting.
    pub max_queue: usize,
    /// `Retry-After` of a 429.
    pub retry_after_secs: u64,
    /// Largest event.
    pub max_event_bytes: usize,
    /// Largest package.
    pub max_package_bytes: usize,
    /// Drain time on SIGTERM.
    pub shutdown_grace_secs: u64,
    /// API key cache lifetime.
    pub key_cache_secs: u64,
    /// The jail.
    pub jail: JailSection,
    /// The warm pool.
    pub warm: WarmSection,
    /// The package policy.
    pub policy: PolicySection,
    /// Sessions.
    pub sessions: SessionsSection,
    /// Templates' ceilings.
    pub templates: TemplatesSection,
    /// Dependency layers.
    pub layers: LayersSection,
    /// Object storage.
    pub objects: ObjectsSection,
    /// Trust tiers.
    pub tiers: TiersSection,
    /// Nodes sharing the database.
    pub cluster: ClusterSection,
    /// One-shot runs.
    pub run: RunSection,
    /// Compatibility APIs.
    pub compat: CompatSection,
    /// Platform-held credentials.
    pub credentials: CredentialsSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            node_id: None,
            data_dir: PathBuf::from("warden-data"),
            database_url: None,
            blob_dir: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            max_concurrent: 16,
            max_queue: 256,
            retry_after_secs: 1,
            max_event_bytes: 6 << 20,
            max_package_bytes: 32 << 20,
            shutdown_grace_secs: 30,
            key_cache_secs: 5,
            jail: JailSection::default(),
            warm: WarmSection::default(),
            policy: PolicySection::default(),
            sessions: SessionsSection::default(),
            templates: TemplatesSection::default(),
            layers: LayersSection::default(),
            objects: ObjectsSection::default(),
            tiers: TiersSection::default(),
            cluster: ClusterSection::default(),
            run: RunSection::default(),
            compat: CompatSection::default(),
            credentials: CredentialsSection::default(),
        }
    }
}

/// A configuration problem, naming the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the configuration file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file or a variable does not parse or has a wrong value.
    #[error("{origin}: {message}")]
    Invalid {
        /// The file, or the environment.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Defaults, then `file` (if any), then the `WARDEN_*` variables of `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.to_owned(),
                    source: e,
                })?;
                text.parse::<toml::Table>().map_err(|e| ConfigError::Invalid {
                    origin: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        let origin = file.map_or_else(|| "the configuration".to_owned(), |p| p.display().to_string());
        for (name, value) in env {
            if !name.starts_with("WARDEN_") {
                continue;
            }
            let Some(key) = KEYS.iter().find(|k| k.env == name) else {
                continue;
            };
            set_path(&mut table, key.path, env_value(&value));
        }
        let config: Config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid {
                origin,
                message: e.to_string(),
            })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| {
            Err(ConfigError::Invalid {
                origin: key.to_owned(),
                message: why.to_owned(),
            })
        };
        if self.max_concurrent == 0 {
            return bad("max_concurrent", "must be at least 1");
        }
        if self.max_event_bytes < 2 {
            return bad("max_event_bytes", "must hold at least `{}`");
        }
        if self.layers.max_builds == 0 {
            return bad("layers.max_builds", "must be at least 1");
        }
        if self.layers.build_timeout_secs == 0 {
            return bad("layers.build_timeout_secs", "must be at least 1");
        }
        if let Err(e) =
            warden_core::credential::Keyring::new(self.credentials.key.as_deref(), &self.credentials.old_keys)
        {
            let (key, why) = e.split_once(' ').unwrap_or(("credentials.key", e.as_str()));
            return bad(key, why);
        }
        if let Some(c) = self.policy.network_allow_cidrs.iter().find(|c| !is_cidr(c)) {
            return bad(
                "policy.network_allow_cidrs",
                &format!("`{c}` is not an address range (`10.0.0.0/8`, `10.0.0.5/32`, `fd00::/8`)"),
            );
        }
        for (key, url) in [
            ("layers.pip_index_url", &self.layers.pip_index_url),
            ("layers.npm_registry", &self.layers.npm_registry),
        ] {
            if !url.starts_with("https://") && !url.starts_with("http://") {
                return bad(key, "must be an http(s) URL");
            }
            if url.contains('@') {
                return bad(
                    key,
                    "must not carry credentials (every API role can read a layer's index)",
                );
            }
        }
        if self.objects.url.is_none()
            && (self.objects.endpoint.is_some() || self.objects.access_key_id.is_some())
        {
            return bad(
                "objects.url",
                "is not set, so the other objects.* settings would be ignored: set it (s3://bucket) or remove them",
            );
        }
        if let Some(e) = &self.objects.endpoint
            && !e.starts_with("https://")
            && !e.starts_with("http://")
        {
            return bad("objects.endpoint", "must be an http(s) URL");
        }
        if let Some(u) = &self.cluster.advertise_url
            && (!(u.starts_with("http://") || u.starts_with("https://"))
                || u.contains('@')
                || u.contains('?'))
        {
            return bad(
                "cluster.advertise_url",
                "must be a base http(s) URL without credentials or query, e.g. http://10.0.0.5:8080",
            );
        }
        if self.cluster.heartbeat_secs == 0 || self.cluster.dead_after_secs < 2 * self.cluster.heartbeat_secs
        {
            return bad(
                "cluster.dead_after_secs",
                "must be at least twice cluster.heartbeat_secs (and the heartbeat at least 1 s)",
            );
        }
        if self.jail.max_boxes == 0 {
            return bad("jail.max_boxes", "must be at least 1");
        }
        if self.warm.max_per_code < self.warm.prewarm_per_code {
            return bad("warm.max_per_code", "must be at least warm.prewarm_per_code");
        }
        let s = &self.sessions;
        let min = warden_core::SessionResources::MIN;
        if !(s.max_cpu_cores.is_finite() && s.max_cpu_cores >= min.cpu_cores) {
            return bad(
                "sessions.max_cpu_cores",
                &format!("must be at least {}", min.cpu_cores),
            );
        }
        if s.max_memory_mb < min.memory_mb {
            return bad(
                "sessions.max_memory_mb",
                &format!("must be at least {}", min.memory_mb),
            );
        }
        if s.max_disk_mb < min.disk_mb || s.tmp_mb == 0 {
            return bad(
                "sessions.max_disk_mb",
                "the workspace and /tmp need at least 1 MiB each",
            );
        }
        if s.max_pids < min.pids {
            return bad("sessions.max_pids", &format!("must be at least {}", min.pids));
        }
        if s.max_idle_timeout_secs == 0 || s.max_lifetime_secs == 0 {
            return bad("sessions.max_lifetime_secs", "timeouts must be at least 1 second");
        }
        if s.node_max_live >= u64::from(self.jail.max_boxes) {
            return bad(
                "sessions.node_max_live",
                "must be below jail.max_boxes (each live session holds a box slot; plugins need some too)",
            );
        }
        if s.default_timeout_ms == 0 || s.default_timeout_ms > s.max_timeout_ms {
            return bad(
                "sessions.default_timeout_ms",
                "must be between 1 and sessions.max_timeout_ms",
            );
        }
        if s.max_pending == 0 || s.sweep_interval_ms == 0 {
            return bad(
                "sessions.max_pending",
                "sessions.max_pending and sessions.sweep_interval_ms must be at least 1",
            );
        }
        let r = &self.run;
        if r.default_timeout_ms == 0 || r.default_timeout_ms > r.max_timeout_ms {
            return bad(
                "run.default_timeout_ms",
                "must be between 1 and run.max_timeout_ms",
            );
        }
        if r.default_compile_timeout_ms == 0 || r.default_compile_timeout_ms > r.max_compile_timeout_ms {
            return bad(
                "run.default_compile_timeout_ms",
                "must be between 1 and run.max_compile_timeout_ms",
            );
        }
        let min = warden_core::run::MIN_MEMORY_MB;
        if r.default_memory_mb < min || r.default_memory_mb > r.max_memory_mb {
            return bad(
                "run.default_memory_mb",
                &format!("must be between {min} and run.max_memory_mb"),
            );
        }
        if r.default_compile_memory_mb < min || r.default_compile_memory_mb > r.max_compile_memory_mb {
            return bad(
                "run.default_compile_memory_mb",
                &format!("must be between {min} and run.max_compile_memory_mb"),
            );
        }
        if r.max_files == 0 {
            return bad("run.max_files", "must be at least 1");
        }
        if self.compat.piston_anonymous && self.compat.piston_anonymous_per_minute == 0 {
            return bad(
                "compat.piston_anonymous_per_minute",
                "must be at least 1 when compat.piston_anonymous is on",
            );
        }
        if warden_core::template::grammar::check_id(&self.compat.anonymous_app).is_err() {
            return bad("compat.anonymous_app", "must be an app id");
        }
        if warden_core::template::grammar::check_id(&self.compat.dify_template).is_err() {
            return bad("compat.dify_template", "must be a template id");
        }
        if let Err(why) = self.templates.policy().check() {
            let (key, message) = why.split_once(": ").unwrap_or(("templates", &why));
            return bad(key, message);
        }
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("warden.db").display()))
    }

    /// The blob folder in effect.
    pub fn blob_dir(&self) -> PathBuf {
        self.blob_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }

    /// This node's name: `node_id`, or the hostname and `port`.
    pub fn node(&self, port: u16) -> String {
        if let Some(n) = self.node_id.as_ref().filter(|n| !n.trim().is_empty()) {
            return n.trim().to_owned();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "warden".to_owned());
        format!("{host}:{port}")
    }

    /// Where verified packages are unpacked for running.
    pub fn code_dir(&self) -> PathBuf {
        self.data_dir.join("code")
    }
}

/// An environment value as TOML (numbers, booleans, arrays), else a string.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) {
    let mut parts = path.split('.').peekable();
    let mut t = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            t.insert(part.to_owned(), value);
            return;
        }
        let entry = t
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else { return };
        t = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("warden.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:9000\"\nmax_queue = 10\n[warm]\nmax_per_code = 8\n[[policy.deny]]\necosystem = \"pypi\"\nname = \"requests\"\nversions = \"<2.31\"\nreason = \"CVE\"\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("WARDEN_MAX_QUEUE", "20"),
                ("WARDEN_DATABASE_URL", "postgres://u@h/db"),
                ("WARDEN_WARM_ENABLED", "false"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.max_queue, 20, "the environment wins over the file");
        assert_eq!(c.warm.max_per_code, 8);
        assert!(!c.warm.enabled);
        assert_eq!(c.database_url(), "postgres://u@h/db");
        assert_eq!(c.policy.deny.len(), 1);
        assert_eq!(c.max_concurrent, 16);
        let d = Config::load(None, Vec::new()).unwrap();
        assert_eq!(d, Config::default());
        assert_eq!(d.database_url(), "sqlite://warden-data/warden.db");
    }

    #[test]
    fn mistakes_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("warden.toml");
        std::fs::write(&file, "listn = \"x\"\n").unwrap();
        let e = Config::load(Some(&file), Vec::new()).unwrap_err().to_string();
        assert!(e.contains("listn"), "{e}");
        let e = Config::load(None, env(&[("WARDEN_MAX_CONCURRENT", "many")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_concurrent"), "{e}");
        let e = Config::load(None, env(&[("WARDEN_MAX_CONCURRENT", "0")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_concurrent: must be at least 1"), "{e}");
        let e = Config::load(None, env(&[("WARDEN_LISTEN", "localhost")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen") || e.contains("socket address"), "{e}");
    }

    #[test]
    fn session_limits_are_checked_naming_the_key() {
        let c = Config::load(
            None,
            env(&[
                ("WARDEN_SESSIONS_APP_MAX_LIVE", "3"),
                ("WARDEN_SESSIONS_NETWORK", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(c.sessions.app_max_live, 3);
        assert!(!c.sessions.network);
        for (var, value, key) in [
            ("WARDEN_SESSIONS_NODE_MAX_LIVE", "64", "sessions.node_max_live"),
            ("WARDEN_SESSIONS_MAX_MEMORY_MB", "8", "sessions.max_memory_mb"),
            (
                "WARDEN_SESSIONS_DEFAULT_TIMEOUT_MS",
                "900000",
                "sessions.default_timeout_ms",
            ),
            ("WARDEN_SESSIONS_MAX_PENDING", "0", "sessions.max_pending"),
        ] {
            let e = Config::load(None, env(&[(var, value)])).unwrap_err().to_string();
            assert!(e.contains(key), "{var}={value}: {e}");
        }
    }

    #[test]
    fn template_ceilings_are_read_and_checked() {
        let c = Config::load(
            None,
            env(&[
                ("WARDEN_TEMPLATES_MAX_MEMORY_MB", "8192"),
                ("WARDEN_TEMPLATES_MAX_CPU_CORES", "2.5"),
            ]),
        )
        .unwrap();
        assert_eq!(c.templates.policy().max.memory_mb, 8192);
        assert_eq!(c.templates.policy().max.cpu_cores, 2.5);
        // Below the default a template gets, or beyond any server's.
        let e = Config::load(None, env(&[("WARDEN_TEMPLATES_MAX_MEMORY_MB", "256")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("templates.max_memory_mb: 256 is outside 512"),
            "{e}"
        );
        let e = Config::load(None, env(&[("WARDEN_TEMPLATES_MAX_CPU_CORES", "1000")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("templates.max_cpu_cores:"), "{e}");
    }

    #[test]
    fn every_key_is_documented() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/configuration.md"
        ))
        .unwrap();
        for k in KEYS {
            assert!(
                doc.contains(&format!("`{}`", k.path)),
                "docs/configuration.md lacks `{}`",
                k.path
            );
            if k.env != "-" {
                assert!(
                    doc.contains(&format!("`{}`", k.env)),
                    "docs/configuration.md lacks `{}`",
                    k.env
                );
            }
        }
        // And every key of the Config struct is in the registry.
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let mut paths = Vec::new();
        fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    if v.is_table() {
                        walk(&p, v, out)
                    } else {
                        out.push(p)
                    }
                }
            }
        }
        walk("", &defaults, &mut paths);
        for p in paths {
            assert!(
                KEYS.iter().any(|k| k.path == p),
                "config key `{p}` is not in KEYS"
            );
        }
    }
}
