//! Session snapshots and the nodes that share one database, as records.
//!
//! A snapshot is a session's workspace packed as a tar archive into the
//! object store (`snapshots/<app>/<id>.tar`), taken on request, when the
//! session ends (when asked) or on a schedule. It moves `creating → ready
//! | failed` ([`SnapshotStatus::can_move`]); a ready snapshot never changes
//! again. It belongs to the app of its session: another app never sees it.
//! A new session (or the same session, resumed after its node died) starts
//! from the latest ready one.
//!
//! A node is one `warden serve` process sharing the database: it records a
//! heartbeat with the address other nodes reach it at, so a request for a
//! session it owns can be forwarded to it, and so the others can tell when
//! it has died and take its sessions over.
//!
//! Must never: pack, store or restore anything (the jail and the server
//! do); this module only describes.

use serde::{Deserialize, Serialize};

names! {
    /// Where a snapshot is.
    pub enum SnapshotStatus {
        /// Being packed and uploaded.
        Creating = "creating",
        /// In the object store, restorable; never changes again.
        Ready = "ready",
        /// Packing or the upload failed; `error` says why.
        Failed = "failed",
    }
}

impl SnapshotStatus {
    /// Whether a snapshot in this state may be written as `to`: `creating
    /// → ready | failed`, and `failed → creating` (a retry).
    pub fn can_move(self, to: SnapshotStatus) -> bool {
        use SnapshotStatus::*;
        matches!((self, to), (Creating, Ready | Failed) | (Failed, Creating))
    }
}

names! {
    /// Why a snapshot was taken.
    pub enum SnapshotTrigger {
        /// An explicit request.
        Request = "request",
        /// The session ended and asked for one.
        Terminate = "terminate",
        /// The node's periodic snapshot of its live sessions.
        Schedule = "schedule",
    }
}

/// A session's workspace in the object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `snp_…`.
    pub id: String,
    /// The app that owns it (its session's).
    pub app: String,
    /// The session it was taken of.
    pub session: String,
    /// That session's template (a restore starts from it).
    pub template: String,
    /// Where it is.
    pub status: SnapshotStatus,
    /// Why it was taken.
    pub trigger: SnapshotTrigger,
    /// Why it failed, for people.
    pub error: Option<String>,
    /// Its object's key in the object store.
    pub object: String,
    /// The archive's size, bytes (0 until ready).
    pub size_bytes: i64,
    /// Regular files in it.
    pub files: i64,
    /// Attempts at packing and uploading it.
    pub attempts: i64,
    /// The node that took it.
    pub node: String,
    /// When it was asked for, Unix ms.
    pub created_at: i64,
    /// When it became ready, Unix ms.
    pub ready_at: Option<i64>,
}

impl Snapshot {
    /// The object key of snapshot `id` of `app`'s session.
    pub fn object_key(app: &str, id: &str) -> String {
        format!("snapshots/{app}/{id}.tar")
    }
}

/// One `warden serve` process sharing the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Its `node_id`.
    pub id: String,
    /// The base URL other nodes forward its sessions' requests to
    /// (`None`: it does not take forwarded requests).
    pub advertise_url: Option<String>,
    /// Warden's version it runs.
    pub version: String,
    /// When it (last) started, Unix ms.
    pub started_at: i64,
    /// Its latest heartbeat, Unix ms.
    pub heartbeat_at: i64,
}

impl Node {
    /// Whether its heartbeat is older than `dead_after_ms` at `now`.
    pub fn is_dead(&self, now: i64, dead_after_ms: i64) -> bool {
        now.saturating_sub(self.heartbeat_at) > dead_after_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_move_only_forward_but_for_a_retry() {
        use SnapshotStatus::*;
        assert!(Creating.can_move(Ready));
        assert!(Creating.can_move(Failed));
        assert!(Failed.can_move(Creating));
        assert!(!Ready.can_move(Creating));
        assert!(!Ready.can_move(Failed));
        assert!(!Failed.can_move(Ready));
        assert!(!Creating.can_move(Creating));
    }

    #[test]
    fn a_node_is_dead_when_its_heartbeat_is_old() {
        let n = Node {
            id: "a".into(),
            advertise_url: None,
            version: "0".into(),
            started_at: 0,
            heartbeat_at: 1_000,
        };
        assert!(!n.is_dead(5_000, 10_000));
        assert!(n.is_dead(11_001, 10_000));
        assert_eq!(
            Snapshot::object_key("app_1", "snp_2"),
            "snapshots/app_1/snp_2.tar"
        );
    }
}
