//! What the platform keeps: plugins, versions, apps, installations, audit
//! events, API keys (executions are in [`crate::execution`]). Times are Unix
//! milliseconds.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::execution::{Execution, ExecutionStatus};
use crate::lifecycle::VersionStatus;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A new, sortable, unique id (microsecond time prefix + randomness), e.g.
/// for versions, executions and audit events. Ids made by one process are
/// strictly increasing, so "newest first" is "largest id first".
pub fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let mut prev = LAST.load(Ordering::Relaxed);
    let micros = loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(p) => prev = p,
        }
    };
    let mut rand = [0u8; 5];
    if getrandom(&mut rand).is_err() {
        rand = [0; 5];
    }
    format!("{prefix}_{micros:014x}{}", hex(&rand))
}

/// Random bytes from `/dev/urandom`, kept open once opened: ids are made
/// for every request, execution and audit event.
fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    static URANDOM: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    let mut file: &std::fs::File = match URANDOM.get() {
        Some(f) => f,
        None => {
            let f = std::fs::File::open("/dev/urandom")?;
            URANDOM.get_or_init(|| f)
        }
    };
    file.read_exact(buf)
}

/// Lowercase hex.
pub use warden_package::archive::hex;

/// Who may do what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: review, apps, keys.
    Admin,
    /// Their own plugins: upload, submit, (de)activate.
    Developer,
    /// Call the plugins installed in their app.
    App,
}

impl Role {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::App => "app",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "developer" => Role::Developer,
            "app" => Role::App,
            _ => return None,
        })
    }
}

/// Who is acting: an API key's principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Principal name (a developer's name, an app's id, `admin`).
    pub name: String,
    /// Role.
    pub role: Role,
    /// For app keys: the app.
    pub app: Option<String>,
}

impl Actor {
    /// The platform itself (policy decisions, recovery).
    pub fn system() -> Actor {
        Actor {
            name: "system".into(),
            role: Role::Admin,
            app: None,
        }
    }
}

/// A plugin: the code that stays across versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plugin {
    /// Reverse-DNS code.
    pub code: String,
    /// Developer who owns it (set by the first upload).
    pub owner: String,
    /// Name from the latest upload.
    pub name: String,
    /// Description from the latest upload.
    pub description: String,
    /// First upload.
    pub created_at: i64,
    /// Latest change.
    pub updated_at: i64,
}

/// One version of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    /// Unique id.
    pub id: String,
    /// Plugin code.
    pub plugin: String,
    /// Semantic version.
    pub version: String,
    /// Lifecycle state.
    pub status: VersionStatus,
    /// The manifest, as uploaded.
    pub manifest: Value,
    /// SHA-256 of the package, recorded at upload.
    pub package_sha256: String,
    /// Package size.
    pub package_size: i64,
    /// Canonical file list (path, size, sha256, executable).
    pub files: Value,
    /// Reviewers' report, once submitted.
    pub report: Option<Value>,
    /// Reason of the last rejection or failure.
    pub status_reason: Option<String>,
    /// Who uploaded the current package.
    pub uploaded_by: String,
    /// Created.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// Increases with every change (optimistic concurrency).
    pub revision: i64,
    /// How far the platform trusts its code (decided at review; built-ins
    /// at start).
    #[serde(default)]
    pub trust_level: crate::tier::TrustLevel,
    /// The publisher's signature over the package hash (a minisign
    /// signature's text), if one was attached.
    #[serde(default)]
    pub signature: Option<String>,
    /// The id of the registered key that made `signature`.
    #[serde(default)]
    pub signed_by: Option<String>,
}

/// An app: a tenant that calls plugins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    /// Identifier (lowercase letters, digits, `-`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Created.
    pub created_at: i64,
}

/// A plugin installed in an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installation {
    /// Unique id.
    pub id: String,
    /// The app.
    pub app: String,
    /// The plugin code.
    pub plugin: String,
    /// A pinned version, or `None` to follow the latest active one.
    pub pinned_version: Option<String>,
    /// Created.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// An entry of the append-only audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unique, time-ordered id.
    pub id: String,
    /// When.
    pub at: i64,
    /// Who (principal name).
    pub actor: String,
    /// What (`upload`, `submit`, `approve`, `install`, …).
    pub action: String,
    /// Plugin concerned.
    pub plugin: Option<String>,
    /// Version concerned.
    pub version: Option<String>,
    /// State before.
    pub from_status: Option<String>,
    /// State after.
    pub to_status: Option<String>,
    /// Why (required for rejections).
    pub reason: Option<String>,
    /// More, as JSON.
    pub detail: Value,
}

/// An API key (only its hash is stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public id, also the key's prefix.
    pub id: String,
    /// Principal name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// For app keys: the app.
    pub app: Option<String>,
    /// SHA-256 of the secret, hex.
    #[serde(skip)]
    pub hash: String,
    /// Created.
    pub created_at: i64,
    /// Revoked.
    pub revoked_at: Option<i64>,
}
