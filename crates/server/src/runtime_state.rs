//! The runtime lifecycle of each plugin version on this node:
//! `loading → initializing → active`, `stopped` once the version is
//! deactivated, or `failed` with the reason (hash mismatch, signature,
//! schema compile, wasm compile, package missing, warm-pool start).
//!
//! The table is this node's own (each node loads code for itself); the
//! API shows it read-only (`GET /v1/plugins/{code}/versions/{version}/runtime`)
//! and the executor writes a version's first `active` and every move to
//! `failed` to the audit trail, so the trail holds every node's story.
//!
//! A `failed` version is excluded on this node: calls get a 503 naming the
//! reason without touching its code, until a retry: the first call after
//! [`RETRY_AFTER`], or at once when the version's record changes (a new
//! revision: re-signed, re-approved, reactivated). A hash mismatch also
//! marks the version's record `failed` for every node; that is the
//! registry's decision, not this table's.
//!
//! Must never: let a version run while its entry says `failed` for the
//! record revision and package it failed with; hold a lock across I/O.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;
use warden_core::model::now_ms;
use warden_core::{RegistryError, Version, VersionStatus};

use crate::error::ApiError;

/// How long a failed version stays excluded before a call retries its load.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(10);

/// A version's state on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeState {
    /// Its package is being fetched and verified (hash, signature).
    Loading,
    /// Verified; its schemas (and wasm module) are being compiled.
    Initializing,
    /// Ready: calls run.
    Active,
    /// Deactivated: calls are refused by the registry.
    Stopped,
    /// Could not be made ready; `reason` says why. Excluded until a retry.
    Failed,
}

impl RuntimeState {
    /// Name as shown and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeState::Loading => "loading",
            RuntimeState::Initializing => "initializing",
            RuntimeState::Active => "active",
            RuntimeState::Stopped => "stopped",
            RuntimeState::Failed => "failed",
        }
    }
}

/// Why a version failed on a node: the step that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The stored package does not match its recorded hash.
    HashMismatch,
    /// A trusted version's signature does not hold.
    Signature,
    /// Its stored input or output schema does not compile.
    SchemaCompile,
    /// Its wasm module does not compile for the wasm tier.
    WasmCompile,
    /// Its package could not be read or unpacked.
    Package,
    /// Its code failed to load in a warm box (the handler's import
    /// raised, the entrypoint is missing).
    WarmStart,
}

impl Cause {
    /// The reason's prefix.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cause::HashMismatch => "hash mismatch",
            Cause::Signature => "signature",
            Cause::SchemaCompile => "schema compile",
            Cause::WasmCompile => "wasm compile",
            Cause::Package => "package unavailable",
            Cause::WarmStart => "warm-pool start",
        }
    }

    /// The step of loading `e` came from.
    pub(crate) fn of(e: &RegistryError) -> Cause {
        match e {
            RegistryError::Tampered { .. } => Cause::HashMismatch,
            RegistryError::Signature(_) => Cause::Signature,
            _ => Cause::Package,
        }
    }
}

/// One version's entry on one node, as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeRuntimeView {
    /// The node (its `cluster.node_id`).
    pub node: String,
    /// `loading`, `initializing`, `active`, `stopped` or `failed`.
    pub state: RuntimeState,
    /// Why it failed: the step (`hash mismatch`, `signature`,
    /// `schema compile`, `wasm compile`, `package unavailable`,
    /// `warm-pool start`), a colon, and the detail.
    pub reason: Option<String>,
    /// When it entered this state, Unix ms.
    pub since: i64,
    /// The version's trust level when it entered this state.
    pub trust_level: String,
    /// Where its code runs: `builtin`, `wasm` or `jail`.
    pub tier: String,
    /// When a failed version is next retried on this node, Unix ms (the
    /// first call from then on, or any call once the record changes).
    pub retry_at: Option<i64>,
}

/// A version's runtime state on the nodes that answer for it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuntimeView {
    /// Plugin code.
    pub plugin: String,
    /// Version.
    pub version: String,
    /// One entry per node that has loaded (or tried to load) the version:
    /// this node's own table (see docs/api.md); other nodes' failures and
    /// first activations are in the version's audit trail.
    pub nodes: Vec<NodeRuntimeView>,
}

#[derive(Debug, Clone)]
struct Entry {
    state: RuntimeState,
    cause: Option<Cause>,
    reason: Option<String>,
    since: i64,
    at: Instant,
    revision: i64,
    sha256: String,
    trust_level: String,
    tier: &'static str,
    /// Whether it has been active on this node before (only the first
    /// activation is audited).
    was_active: bool,
}

/// A move worth an audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Audited {
    /// First `active` on this node.
    FirstActive,
    /// Into `failed`, with the reason.
    Failed(String),
}

/// This node's table: version id → entry.
#[derive(Debug)]
pub(crate) struct NodeStates {
    node: String,
    entries: Mutex<HashMap<String, Entry>>,
}

/// The tier a manifest runtime runs at.
pub(crate) fn tier_of(runtime: &str) -> &'static str {
    match runtime {
        warden_core::tier::BUILTIN_RUNTIME => "builtin",
        warden_core::tier::WASM_RUNTIME => "wasm",
        warden_package::manifest::API_RUNTIME => "api",
        _ => "jail",
    }
}

impl NodeStates {
    pub(crate) fn new(node: String) -> NodeStates {
        NodeStates {
            node,
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuse a call of `v` while it is failed on this node for this record
    /// revision and package, and no retry is due: a 503 naming the reason.
    pub(crate) fn gate(&self, v: &Version) -> Result<(), ApiError> {
        let entries = self.lock();
        let Some(e) = entries.get(&v.id) else {
            return Ok(());
        };
        if e.state != RuntimeState::Failed || e.revision != v.revision || e.sha256 != v.package_sha256 {
            return Ok(());
        }
        let waited = e.at.elapsed();
        if waited >= RETRY_AFTER {
            return Ok(());
        }
        Err(ApiError::version_failed(
            format!(
                "{} {} failed on node `{}` and is excluded: {}; it is retried {} s after the failure, or at once when the version changes",
                v.plugin,
                v.version,
                self.node,
                e.reason.as_deref().unwrap_or("no reason recorded"),
                RETRY_AFTER.as_secs()
            ),
            (RETRY_AFTER - waited).as_secs().max(1),
        ))
    }

    /// Whether `v` is active on this node with this revision and package
    /// (the common path of a call: nothing to record).
    pub(crate) fn is_active(&self, v: &Version) -> bool {
        self.lock().get(&v.id).is_some_and(|e| {
            e.state == RuntimeState::Active && e.revision == v.revision && e.sha256 == v.package_sha256
        })
    }

    /// Move `v` (running at `tier`) to `state`; what to audit, if anything.
    pub(crate) fn set(
        &self,
        v: &Version,
        tier: &'static str,
        state: RuntimeState,
        failure: Option<(Cause, String)>,
    ) -> Option<Audited> {
        let mut entries = self.lock();
        let before = entries.get(&v.id);
        let was_active = before.is_some_and(|e| e.was_active);
        let was_failed = before.is_some_and(|e| {
            e.state == RuntimeState::Failed && e.revision == v.revision && e.sha256 == v.package_sha256
        });
        if before
            .is_some_and(|e| e.state == state && e.revision == v.revision && e.sha256 == v.package_sha256)
            && state != RuntimeState::Failed
        {
            return None;
        }
        let (cause, reason) = match failure {
            Some((c, detail)) => (Some(c), Some(format!("{}: {detail}", c.as_str()))),
            None => (None, None),
        };
        let audited = match state {
            RuntimeState::Active if !was_active => Some(Audited::FirstActive),
            // A retry that fails the same way again is not news.
            RuntimeState::Failed if !(was_failed && before.and_then(|e| e.cause) == cause) => {
                reason.clone().map(Audited::Failed)
            }
            _ => None,
        };
        tracing::info!(plugin = %v.plugin, version = %v.version, trust_level = %v.trust_level,
            lifecycle_state = state.as_str(), reason = reason.as_deref().unwrap_or(""), tier,
            "a plugin version's runtime state on this node");
        entries.insert(
            v.id.clone(),
            Entry {
                state,
                cause,
                reason,
                since: now_ms(),
                at: Instant::now(),
                revision: v.revision,
                sha256: v.package_sha256.clone(),
                trust_level: v.trust_level.as_str().to_owned(),
                tier,
                was_active: was_active || state == RuntimeState::Active,
            },
        );
        audited
    }

    /// `v`'s entries as the API shows them. A version whose record is
    /// inactive shows `stopped` (since its record changed), whatever it
    /// was before; one whose record is failed shows `failed` with the
    /// record's reason.
    pub(crate) fn view(&self, v: &Version) -> RuntimeView {
        let nodes = self
            .lock()
            .get(&v.id)
            .map(|e| {
                let mut n = NodeRuntimeView {
                    node: self.node.clone(),
                    state: e.state,
                    reason: e.reason.clone(),
                    since: e.since,
                    trust_level: e.trust_level.clone(),
                    tier: e.tier.to_owned(),
                    retry_at: (e.state == RuntimeState::Failed)
                        .then(|| e.since + RETRY_AFTER.as_millis() as i64),
                };
                match v.status {
                    VersionStatus::Inactive if e.state != RuntimeState::Failed => {
                        n.state = RuntimeState::Stopped;
                        n.since = n.since.max(v.updated_at);
                    }
                    VersionStatus::Failed if e.state != RuntimeState::Failed => {
                        n.state = RuntimeState::Failed;
                        n.reason = Some(format!(
                            "{}: {}",
                            Cause::HashMismatch.as_str(),
                            v.status_reason
                                .as_deref()
                                .unwrap_or("the version's record is failed")
                        ));
                        n.since = n.since.max(v.updated_at);
                    }
                    _ => {}
                }
                n
            })
            .into_iter()
            .collect();
        RuntimeView {
            plugin: v.plugin.clone(),
            version: v.version.clone(),
            nodes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version() -> Version {
        Version {
            id: "ver_1".into(),
            plugin: "vendor.a.b".into(),
            version: "1.0.0".into(),
            status: VersionStatus::Active,
            revision: 1,
            manifest: serde_json::Value::Null,
            package_sha256: "aa".into(),
            package_size: 0,
            files: serde_json::Value::Null,
            report: None,
            status_reason: None,
            uploaded_by: "alice".into(),
            created_at: 0,
            updated_at: 0,
            trust_level: warden_core::TrustLevel::Untrusted,
            signature: None,
            signed_by: None,
        }
    }

    #[test]
    fn only_the_first_activation_and_new_failures_are_audited() {
        let t = NodeStates::new("n1".into());
        let v = version();
        assert_eq!(t.set(&v, "jail", RuntimeState::Loading, None), None);
        assert_eq!(
            t.set(&v, "jail", RuntimeState::Active, None),
            Some(Audited::FirstActive)
        );
        assert!(t.is_active(&v));
        assert_eq!(t.set(&v, "jail", RuntimeState::Active, None), None);
        let failed = t.set(
            &v,
            "jail",
            RuntimeState::Failed,
            Some((Cause::SchemaCompile, "x".into())),
        );
        assert_eq!(failed, Some(Audited::Failed("schema compile: x".into())));
        // The same failure on a retry is not audited again.
        assert_eq!(
            t.set(
                &v,
                "jail",
                RuntimeState::Failed,
                Some((Cause::SchemaCompile, "x".into()))
            ),
            None
        );
        // Active again after a retry: not the first activation.
        assert_eq!(t.set(&v, "jail", RuntimeState::Active, None), None);
    }

    #[test]
    fn a_failed_version_is_refused_until_its_record_changes() {
        let t = NodeStates::new("n1".into());
        let mut v = version();
        assert!(t.gate(&v).is_ok());
        t.set(
            &v,
            "wasm",
            RuntimeState::Failed,
            Some((Cause::WasmCompile, "bad magic".into())),
        );
        let p = t.gate(&v).unwrap_err().problem();
        assert_eq!(p.status, 503);
        assert!(p.detail.contains("wasm compile: bad magic"), "{}", p.detail);
        v.revision = 2;
        assert!(t.gate(&v).is_ok(), "a new revision retries at once");
        let view = t.view(&v);
        assert_eq!(view.nodes[0].state, RuntimeState::Failed);
        assert!(view.nodes[0].retry_at.is_some());
    }
}
