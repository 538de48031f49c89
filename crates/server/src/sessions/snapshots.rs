//! Snapshots of sessions: a running session's workspace packed as a tar
//! archive (`BoxDir::pack_tar`, by descriptor: the box may be racing) into
//! the object store, and restored (`BoxDir::unpack_tar`, every name
//! checked) into a new session's workspace, or into the same session's new
//! box when its node restarts.
//!
//! A snapshot waits for the session's running execution and holds the
//! session's turn while it packs, so no execution of the session changes
//! files under it (its background processes still may: what they change
//! meanwhile is what the snapshot gets). The archive goes through a scratch
//! file in the data folder, then to the object store; a store that is down
//! fails the snapshot (recorded `failed`, with the reason) and leaves the
//! session running on its local workspace.
//!
//! A snapshot belongs to its session's app: another app is told there is
//! no such snapshot, word for word as for one that does not exist.

use std::io::{BufReader, BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use warden_core::model::{new_id, now_ms};
use warden_core::store::{SessionMove, SnapshotFilter};
use warden_core::{
    Actor, Page, Role, Session, SessionStatus, Snapshot, SnapshotStatus, SnapshotTrigger, Store,
};
use warden_jail::{BoxFileError, CopyLimits, CopyReport, MIB};
use warden_runtime::session::{SessionBox, SessionSpec};

use super::{Live, PinGuard, R, SessionError, SessionManager, blocking, lock};

/// Most entries (files, directories, links) in a snapshot.
const MAX_ENTRIES: usize = 200_000;

/// Deepest directory level in a snapshot.
const MAX_DEPTH: usize = 64;

/// What the node's start-up did with the sessions it ran before.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Resumed from their latest snapshot.
    pub resumed: u64,
    /// Marked `lost`.
    pub lost: u64,
}

impl SessionManager {
    pub(super) fn snapshot_limits(&self, bytes: u64) -> CopyLimits {
        CopyLimits {
            entries: MAX_ENTRIES,
            bytes,
            depth: MAX_DEPTH,
        }
    }

    pub(super) fn scratch(&self, id: &str) -> R<PathBuf> {
        std::fs::create_dir_all(&self.scratch).map_err(|e| {
            SessionError::Internal(format!(
                "cannot make the snapshot scratch folder {}: {e}",
                self.scratch.display()
            ))
        })?;
        Ok(self.scratch.join(format!("{id}.tar")))
    }

    /// Snapshot a running session of this node now: its workspace, packed
    /// into the object store. Waits for the session's running execution.
    pub async fn snapshot(&self, actor: &Actor, id: &str) -> R<Snapshot> {
        let s = self.get(actor, id).await?;
        self.gate()?;
        let live = self.live_here(&s)?;
        self.take_snapshot(&live, SnapshotTrigger::Request).await
    }

    /// Record, pack and upload a snapshot of `live`.
    pub(super) async fn take_snapshot(&self, live: &Arc<Live>, trigger: SnapshotTrigger) -> R<Snapshot> {
        let s = &live.session;
        let id = new_id("snp");
        let record = Snapshot {
            object: Snapshot::object_key(&s.app, &id),
            id: id.clone(),
            app: s.app.clone(),
            session: s.id.clone(),
            template: s.template.clone(),
            status: SnapshotStatus::Creating,
            trigger,
            error: None,
            size_bytes: 0,
            files: 0,
            attempts: 1,
            node: self.node.clone(),
            created_at: now_ms(),
            ready_at: None,
        };
        self.store.insert_snapshot(record.clone()).await?;
        let path = self.scratch(&id)?;
        let max = self.settings.snapshot_max_mb * MIB;
        let packed = {
            // No execution of the session runs while its files are packed.
            let _turn = live.turn.lock().await;
            let boxed = live.boxed();
            let (p, limits) = (path.clone(), self.snapshot_limits(max));
            blocking(move || pack(&boxed, &p, limits)).await?
        };
        let report = match packed {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                let (reason, err) = match e {
                    Packing::Box(BoxFileError::TooLarge { .. }) => {
                        let m = format!(
                            "the workspace holds more than {} MiB (sessions.snapshot_max_mb); remove files, then snapshot again",
                            self.settings.snapshot_max_mb
                        );
                        (m.clone(), SessionError::SnapshotRefused(m))
                    }
                    Packing::Box(e @ BoxFileError::Io { .. }) if e.to_string().contains("more than") => {
                        let m = format!("the workspace cannot be snapshotted: {e}");
                        (m.clone(), SessionError::SnapshotRefused(m))
                    }
                    Packing::Box(e) => {
                        let m = format!("the workspace could not be packed: {e}");
                        (m.clone(), SessionError::SnapshotRefused(m))
                    }
                    Packing::Host(e) => {
                        tracing::error!(snapshot = %id, error = %e, "writing a snapshot's scratch file failed");
                        (
                            "the node could not write the archive (the cause is in the server's log)"
                                .to_owned(),
                            SessionError::Internal(format!("snapshot {id}: {e}")),
                        )
                    }
                };
                self.fail_snapshot(record, &reason).await;
                return Err(err);
            }
        };
        let put = self.blobs.put_file(&record.object, &path).await;
        let _ = std::fs::remove_file(&path);
        match put {
            Ok(size) => {
                let mut ready = record.clone();
                ready.status = SnapshotStatus::Ready;
                ready.size_bytes = size as i64;
                ready.files = report.files as i64;
                ready.ready_at = Some(now_ms());
                let done = self
                    .store
                    .update_snapshot(SnapshotStatus::Creating, ready)
                    .await?;
                live.snapshot_at.fetch_max(done.created_at, Ordering::AcqRel);
                metrics::counter!("warden_snapshots_total", "status" => "ready").increment(1);
                Ok(done)
            }
            Err(e) => {
                tracing::warn!(snapshot = %id, error = %e, "a snapshot's upload failed");
                let reason = format!("the object store did not take the archive: {e}");
                self.fail_snapshot(record, &reason).await;
                Err(SessionError::ObjectStore(format!(
                    "snapshot {id} failed: {reason}; the session keeps running on this node; retry later"
                )))
            }
        }
    }

    async fn fail_snapshot(&self, record: Snapshot, reason: &str) {
        let id = record.id.clone();
        let mut failed = record;
        failed.status = SnapshotStatus::Failed;
        failed.error = Some(reason.to_owned());
        metrics::counter!("warden_snapshots_total", "status" => "failed").increment(1);
        if let Err(e) = self.store.update_snapshot(SnapshotStatus::Creating, failed).await {
            tracing::warn!(snapshot = %id, error = %e, "could not record a failed snapshot");
        }
    }

    /// A snapshot as `actor` may see it (an app its own; admins all;
    /// another app's is "not found", as a missing one).
    pub async fn get_snapshot(&self, actor: &Actor, id: &str) -> R<Snapshot> {
        self.no_developers(actor)?;
        self.store
            .get_snapshot(id)
            .await?
            .filter(|s| actor.role == Role::Admin || actor.app.as_deref() == Some(s.app.as_str()))
            .ok_or_else(|| SessionError::NotFound(format!("no snapshot {id}")))
    }

    /// Snapshots, newest first: an app's own, or any (admins).
    pub async fn list_snapshots(&self, actor: &Actor, mut filter: SnapshotFilter) -> R<Page<Snapshot>> {
        if let Some(app) = &filter.app
            && !super::is_app_id(app)
        {
            return Err(super::bad_field(
                "query:app",
                format!(
                    "`{}` is not an app id: 2 to 63 lowercase letters, digits or `-`, starting with a letter",
                    warden_jail::escape_name(app.as_bytes())
                ),
            ));
        }
        if let Some(session) = &filter.session
            && !is_session_id(session)
        {
            return Err(super::bad_field(
                "query:session",
                format!(
                    "`{}` is not a session id: `ses_` and 24 to 32 lowercase hex digits",
                    warden_jail::escape_name(session.as_bytes())
                ),
            ));
        }
        self.no_developers(actor)?;
        if actor.role == Role::App {
            let own = actor.app.clone().unwrap_or_default();
            if filter.app.as_ref().is_some_and(|a| *a != own) {
                return Err(SessionError::Forbidden(format!(
                    "this key lists the snapshots of app `{own}` only"
                )));
            }
            filter.app = Some(own);
        }
        Ok(self.store.list_snapshots(filter).await?)
    }

    /// Delete a snapshot: its object, then its record.
    pub async fn delete_snapshot(&self, actor: &Actor, id: &str) -> R<()> {
        let s = self.get_snapshot(actor, id).await?;
        if s.status == SnapshotStatus::Creating {
            return Err(SessionError::SnapshotRefused(format!(
                "snapshot {id} is still being taken; delete it once it is ready or failed"
            )));
        }
        self.blobs.delete(&s.object).await.map_err(|e| {
            SessionError::ObjectStore(format!(
                "snapshot {id}'s object could not be deleted: {e}; retry later"
            ))
        })?;
        self.store.delete_snapshot(id).await?;
        Ok(())
    }

    fn no_developers(&self, actor: &Actor) -> R<()> {
        if actor.role == Role::Developer {
            return Err(SessionError::Forbidden(
                "developer keys cannot use sessions: use the app's key or an admin key".into(),
            ));
        }
        Ok(())
    }

    /// The ready snapshot `id` a new session of `app` may start from.
    pub(super) async fn snapshot_to_restore(&self, app: &str, id: &str) -> R<Snapshot> {
        let s = self
            .store
            .get_snapshot(id)
            .await?
            .filter(|s| s.app == app)
            .ok_or_else(|| SessionError::NotFound(format!("no snapshot {id}")))?;
        if s.status != SnapshotStatus::Ready {
            return Err(SessionError::SnapshotRefused(format!(
                "snapshot {id} is {}; only a ready snapshot can be restored",
                s.status
            )));
        }
        Ok(s)
    }

    /// Restore snapshot `snap` into `boxed`'s workspace (of at most
    /// `disk_bytes`).
    pub(super) async fn restore(
        &self,
        boxed: &Arc<SessionBox>,
        snap: &Snapshot,
        disk_bytes: u64,
    ) -> R<CopyReport> {
        let path = self.scratch(&format!("{}-{}", snap.id, new_id("r")))?;
        let fetched = self.blobs.get_to_file(&snap.object, &path).await;
        let found = match fetched {
            Ok(found) => found,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(SessionError::ObjectStore(format!(
                    "snapshot {} could not be read from the object store: {e}; retry later",
                    snap.id
                )));
            }
        };
        if !found {
            let _ = std::fs::remove_file(&path);
            return Err(SessionError::SnapshotRefused(format!(
                "snapshot {}'s archive is missing from the object store",
                snap.id
            )));
        }
        let (b, p, limits) = (boxed.clone(), path.clone(), self.snapshot_limits(disk_bytes));
        let unpacked = blocking(move || {
            let file = std::fs::File::open(&p).map_err(|e| BoxFileError::Io {
                path: "the archive".into(),
                source: e,
            })?;
            b.workspace()
                .unpack_tar(&mut BufReader::with_capacity(1 << 20, file), limits)
        })
        .await?;
        let _ = std::fs::remove_file(&path);
        unpacked.map_err(|e| {
            let full = matches!(&e, BoxFileError::Io { source, .. } if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded))
                || matches!(e, BoxFileError::TooLarge { .. });
            SessionError::SnapshotRefused(if full {
                format!(
                    "snapshot {} does not fit the session's workspace ({} MiB): ask for more disk",
                    snap.id,
                    disk_bytes / MIB
                )
            } else {
                format!("snapshot {} could not be restored: {e}", snap.id)
            })
        })
    }

    /// The live (creating or running) sessions recorded as `node`'s, every
    /// page of them.
    async fn live_sessions_of(&self, node: &str) -> R<Vec<Session>> {
        let mut out = Vec::new();
        for status in [SessionStatus::Creating, SessionStatus::Running] {
            let mut cursor = None;
            loop {
                let page = self
                    .store
                    .list_sessions(warden_core::SessionFilter {
                        node: Some(node.to_owned()),
                        status: Some(status),
                        cursor,
                        limit: 500,
                        ..Default::default()
                    })
                    .await?;
                out.extend(page.items);
                cursor = page.next_cursor;
                if cursor.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// At start: every session this node ran and that had not ended is
    /// resumed from its latest ready snapshot (`sessions.resume_on_restart`)
    /// or marked `lost`, with the reason. Nothing else of it survived: its
    /// box died with the old process.
    pub async fn recover(&self) -> R<Recovered> {
        // Scratch files of transfers the old process did not finish.
        let _ = std::fs::remove_dir_all(&self.scratch);
        let mine = self.live_sessions_of(&self.node).await?;
        if !mine.is_empty() {
            self.clean_slots().await;
        }
        self.take_back(
            mine,
            "the server stopped while the session was live (crash or restart)",
            "the server restarted",
        )
        .await
    }

    /// Resume each of `mine` (this node's sessions, recorded live, whose
    /// boxes are gone because `why`) from its latest ready snapshot
    /// (`sessions.resume_on_restart`; its reason says it resumed after
    /// `after`), or mark it `lost` with the reason. A session another node
    /// claimed meanwhile is left alone.
    async fn take_back(&self, mine: Vec<Session>, why: &str, after: &str) -> R<Recovered> {
        let mut out = Recovered::default();
        for s in mine {
            let latest = if self.settings.resume_on_restart && s.status == SessionStatus::Running {
                self.store.latest_snapshot(&s.id).await?
            } else {
                None
            };
            // Still this node's (not taken over while it was down)?
            if !self.store.claim_session(&s.id, &self.node, &self.node).await? {
                continue;
            }
            let reason = match latest {
                Some(snap) => match self
                    .resume(
                        &s,
                        &snap,
                        format!("resumed from snapshot {} after {after}", snap.id),
                    )
                    .await
                {
                    Ok(()) => {
                        out.resumed += 1;
                        continue;
                    }
                    Err(e) => format!("{why}, and resuming it from snapshot {} failed: {e}", snap.id),
                },
                None if self.settings.resume_on_restart => {
                    format!("{why}; its box did not survive and it has no snapshot to resume from")
                }
                None => format!("{why}; its box did not survive"),
            };
            let m = SessionMove {
                from: vec![SessionStatus::Creating, SessionStatus::Running],
                to: SessionStatus::Lost,
                reason: Some(reason),
                at: now_ms(),
                node: Some(self.node.clone()),
            };
            if self.store.move_session(&s.id, m).await?.is_some() {
                out.lost += 1;
                metrics::counter!("warden_sessions_ended_total", "status" => "lost").increment(1);
            }
        }
        Ok(out)
    }

    /// This node has lost its lease (see `crate::cluster`): end the boxes
    /// of its sessions, which another node may be taking over, without
    /// touching their records (they may be another node's by now, or the
    /// database unreachable). Called again and again while the lease is
    /// lost, so a box that finished starting meanwhile goes too.
    pub async fn fence(&self) {
        let mut fenced = self.fenced.lock().await;
        if self.lease.held() {
            return;
        }
        let ids: Vec<String> = lock(&self.live).keys().cloned().collect();
        if !*fenced {
            tracing::warn!(
                sessions = ids.len(),
                "this node has lost its lease (no recent heartbeat): it stops acting for its sessions and ends their boxes"
            );
            metrics::counter!("warden_node_fenced_total").increment(1);
        }
        *fenced = true;
        for id in ids {
            self.drop_live(
                &id,
                super::End::ended(
                    "this node lost contact with the cluster's database, and its boxes were stopped",
                ),
            )
            .await;
        }
    }

    /// This node holds its lease again: the sessions fenced off that are
    /// still its own are resumed from their latest snapshot or marked
    /// `lost`; those another node took over are left to it.
    pub async fn unfence(&self) {
        let mut fenced = self.fenced.lock().await;
        if !*fenced || self.is_closing() {
            return;
        }
        let mine = match self.live_sessions_of(&self.node).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "this node's sessions could not be listed after it regained its lease");
                return;
            }
        };
        let orphans: Vec<Session> = {
            let live = lock(&self.live);
            let reserved = lock(&self.reserved);
            mine.into_iter()
                .filter(|s| !live.contains_key(&s.id) && !reserved.contains_key(&s.id))
                .collect()
        };
        match self
            .take_back(
                orphans,
                "this node lost contact with the cluster's database for too long and stopped the session's box",
                "this node regained contact with the cluster's database",
            )
            .await
        {
            Ok(r) => {
                *fenced = false;
                tracing::info!(resumed = r.resumed, lost = r.lost, "this node regained its lease");
            }
            Err(e) => tracing::warn!(error = %e, "this node's fenced sessions could not all be taken back; tried again at the next heartbeat"),
        }
    }

    /// Tear down the box slots the crashed process left (a lost session's
    /// workspace is a tmpfs holding its files, and its cgroup): done when
    /// sessions were live, before any is resumed, rather than whenever a
    /// slot is next used. Slots another live process holds are locked and
    /// left alone (as `warden pool clean` does).
    async fn clean_slots(&self) {
        let jail = self.runner.jail().clone();
        let clean = move || {
            // A box's cgroup stays busy for a moment after its server died
            // (its exited processes are reaped by the host's init).
            let mut tries = 0;
            loop {
                match jail.clean_pool() {
                    Err(_) if tries < 20 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    done => return done,
                }
            }
        };
        match tokio::task::spawn_blocking(clean).await {
            Ok(Ok(r)) => tracing::info!(
                removed = r.removed,
                busy = r.busy,
                "box slots left by the stopped server torn down"
            ),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "box slots left by the stopped server could not all be torn down")
            }
            Err(e) => tracing::warn!(error = %e, "tearing down the stopped server's box slots failed"),
        }
    }

    /// Give session `s` (of this node, recorded running) a new box with its
    /// recorded resources, restore `snap` into it and make it live again.
    async fn resume(&self, s: &Session, snap: &Snapshot, reason: String) -> R<()> {
        // The layer it had (no template may point at it any more: given back
        // as a session's own, deleted when no session holds it).
        let (layer, mut pin) = match &s.layer {
            None => (None, PinGuard::none(&self.builds)),
            Some(id) => match self.builds.session_layer_by_id(id, true).await {
                Ok(Some((mount, pin))) => (Some(mount), PinGuard::new(&self.builds, pin)),
                Ok(None) => {
                    return Err(SessionError::Internal(format!(
                        "its dependency layer {id} is gone"
                    )));
                }
                Err(e) => return Err(SessionError::Internal(e.to_string())),
            },
        };
        let spec = SessionSpec {
            memory_bytes: s.resources.memory_mb * MIB,
            pids: s.resources.pids,
            cpu_cores: s.resources.cpu_cores,
            disk_bytes: s.resources.disk_mb * MIB,
            tmp_bytes: self.settings.tmp_mb * MIB,
            max_lifetime: std::time::Duration::from_secs(s.max_lifetime_secs),
            env: s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            layer,
            egress: s.network.clone(),
            files: Vec::new(),
        };
        let runner = self.runner.clone();
        let boxed = Arc::new(
            blocking(move || runner.start_session(spec))
                .await?
                .map_err(|e| SessionError::Internal(format!("its box did not start: {e}")))?,
        );
        if let Err(e) = self.restore(&boxed, snap, s.resources.disk_mb * MIB).await {
            let b = boxed.clone();
            let _ = blocking(move || b.terminate()).await;
            return Err(e);
        }
        let live = Arc::new(Live::new(s.clone(), boxed.clone(), pin.take()));
        lock(&self.live).insert(s.id.clone(), live.clone());
        let moved = self
            .store
            .move_session(
                &s.id,
                SessionMove {
                    from: vec![SessionStatus::Running],
                    to: SessionStatus::Running,
                    reason: Some(reason),
                    at: now_ms(),
                    node: Some(self.node.clone()),
                },
            )
            .await;
        match moved {
            Ok(Some(_)) => {
                metrics::counter!("warden_sessions_resumed_total").increment(1);
                tracing::info!(session = %s.id, snapshot = %snap.id, "a session resumed from its snapshot");
                Ok(())
            }
            other => {
                lock(&self.live).remove(&s.id);
                let _ = blocking(move || boxed.terminate()).await;
                let pin = lock(&live.layer).take();
                if let Some(pin) = pin {
                    self.builds.release(&pin).await;
                }
                match other {
                    Err(e) => Err(e.into()),
                    _ => Err(SessionError::Internal("it ended while it was resumed".into())),
                }
            }
        }
    }

    /// Take over the live sessions of `dead` (a node silent for more than
    /// `dead_after_secs`, as read): each one this node wins (compare-and-set
    /// on its node, and on `dead` not having beaten since it was read) is
    /// resumed here from its latest snapshot, or marked `lost`.
    pub async fn take_over(&self, dead: &warden_core::Node, dead_after_secs: u64) {
        if self.closing.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let theirs = match self.live_sessions_of(&dead.id).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(node = %dead.id, error = %e, "a dead node's sessions could not be listed");
                return;
            }
        };
        let silent = format!(
            "its node {} stopped answering (no heartbeat for more than {dead_after_secs} s)",
            dead.id
        );
        // How long its sessions have waited for a node with room.
        let waited_ms = now_ms().saturating_sub(dead.heartbeat_at);
        let wait_ms = i64::try_from(
            dead_after_secs
                .saturating_add(self.takeover_wait.as_secs())
                .saturating_mul(1000),
        )
        .unwrap_or(i64::MAX);
        for s in theirs {
            if !self.lease.held() {
                return;
            }
            let latest = match s.status {
                SessionStatus::Running => self.store.latest_snapshot(&s.id).await.ok().flatten(),
                _ => None,
            };
            // Resuming it takes room on this node: reserved before the
            // claim, within the node's quotas, or it is left to a node with
            // room (and lost once it has waited too long).
            let mut no_room = None;
            if latest.is_some() {
                let _admission = self.admission.lock().await;
                match self
                    .node_quota()
                    .refuses(self.node_usage(), &s.resources, self.settings.tmp_mb)
                {
                    Some(why) => no_room = Some(why),
                    None => {
                        lock(&self.reserved).insert(s.id.clone(), s.resources);
                    }
                }
            }
            if let Some(why) = &no_room
                && waited_ms < wait_ms
            {
                tracing::info!(session = %s.id, node = %dead.id, reason = %why, "a dead node's session is left for a node with room");
                continue;
            }
            // Only while its heartbeat is still the one found stale: a node
            // that beat again since keeps its session.
            let stale = dead.heartbeat_at.saturating_add(1);
            let claimed = self
                .store
                .claim_dead_session(&s.id, &dead.id, &self.node, stale)
                .await;
            let won = match claimed {
                Ok(won) => won,
                Err(e) => {
                    tracing::warn!(session = %s.id, error = %e, "a dead node's session could not be claimed");
                    false
                }
            };
            if !won {
                lock(&self.reserved).remove(&s.id);
                continue;
            }
            let mut s = s;
            s.node = self.node.clone();
            let reason = match (latest, no_room) {
                (Some(snap), Some(why)) => format!(
                    "{silent}, and no node had room to resume it from snapshot {} within cluster.takeover_wait_secs ({} s); on node {}: {why}",
                    snap.id,
                    self.takeover_wait.as_secs(),
                    self.node
                ),
                (Some(snap), None) => {
                    let why = format!(
                        "resumed on node {} from snapshot {}: {silent}",
                        self.node, snap.id
                    );
                    let resumed = self.resume(&s, &snap, why).await;
                    lock(&self.reserved).remove(&s.id);
                    match resumed {
                        Ok(()) => continue,
                        Err(e) => format!("{silent}, and resuming it from snapshot {} failed: {e}", snap.id),
                    }
                }
                (None, _) => format!("{silent}, and it had no snapshot to resume from"),
            };
            let m = SessionMove {
                from: vec![SessionStatus::Creating, SessionStatus::Running],
                to: SessionStatus::Lost,
                reason: Some(reason),
                at: now_ms(),
                node: Some(self.node.clone()),
            };
            match self.store.move_session(&s.id, m).await {
                Ok(Some(_)) => {
                    metrics::counter!("warden_sessions_ended_total", "status" => "lost").increment(1);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(session = %s.id, error = %e, "a dead node's session could not be marked lost")
                }
            }
        }
    }

    /// End the boxes this node still holds for sessions that are no longer
    /// its own (taken over by another node while this one was unreachable)
    /// or that ended elsewhere. Their records are not touched.
    pub async fn drop_disowned(&self) {
        let lives: Vec<(String, Arc<Live>)> = lock(&self.live)
            .iter()
            .map(|(id, live)| (id.clone(), live.clone()))
            .collect();
        for (id, live) in lives {
            let gone = match self.store.get_session(&id).await {
                Ok(Some(s)) => s.node != self.node || s.status.is_final(),
                Ok(None) => true,
                Err(_) => false,
            };
            // A session this node is ending itself (a terminate, a delete,
            // the sweeper) has a final record before it leaves the map: not
            // disowned, and its end is already under way.
            if gone && live.state().ending.is_none() {
                tracing::warn!(session = %id, "a session this node held is no longer its own: its box is ended");
                self.drop_live(&id, super::End::ended("the session moved to another node"))
                    .await;
            }
        }
    }

    /// Start a scheduled snapshot of every live session active since its
    /// latest snapshot and at least `sessions.snapshot_every_secs` past it
    /// (one at a time per session; a failed one is tried again a minute
    /// later). Only the newest scheduled snapshot of a session is kept.
    pub fn snapshot_due(self: &Arc<Self>) {
        let every = i64::try_from(self.settings.snapshot_every_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        if every == 0 || self.is_closing() || !self.lease.held() {
            return;
        }
        let now = now_ms();
        let lives: Vec<Arc<Live>> = lock(&self.live).values().cloned().collect();
        for live in lives {
            let last = live.snapshot_at.load(Ordering::Acquire);
            if live.last_active.load(Ordering::Acquire) <= last || now - last < every {
                continue;
            }
            if live.snapshotting.swap(true, Ordering::AcqRel) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let id = live.session.id.clone();
                match me.take_snapshot(&live, SnapshotTrigger::Schedule).await {
                    Ok(snap) => me.prune_scheduled(&id, &snap.id).await,
                    Err(e) => {
                        tracing::warn!(session = %id, error = %e, "a scheduled snapshot failed; it is tried again in a minute");
                        live.snapshot_at.store(
                            now_ms().saturating_sub(every).saturating_add(60_000),
                            Ordering::Release,
                        );
                    }
                }
                live.snapshotting.store(false, Ordering::Release);
            });
        }
    }

    /// Delete the scheduled snapshots of `session` but `keep`.
    async fn prune_scheduled(&self, session: &str, keep: &str) {
        let page = match self
            .store
            .list_snapshots(SnapshotFilter {
                session: Some(session.to_owned()),
                limit: 500,
                ..Default::default()
            })
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(session, error = %e, "old scheduled snapshots could not be listed");
                return;
            }
        };
        for old in page.items {
            if old.trigger != SnapshotTrigger::Schedule
                || old.id == keep
                || old.status == SnapshotStatus::Creating
            {
                continue;
            }
            if let Err(e) = self.blobs.delete(&old.object).await {
                tracing::warn!(snapshot = %old.id, error = %e, "an old scheduled snapshot's object could not be deleted");
                continue;
            }
            if let Err(e) = self.store.delete_snapshot(&old.id).await {
                tracing::warn!(snapshot = %old.id, error = %e, "an old scheduled snapshot could not be deleted");
            }
        }
    }

    /// Whether this manager is shutting down.
    pub fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Snapshot a session, then terminate it; a failed snapshot leaves it
    /// running (nothing is lost) and says why.
    pub async fn terminate_with_snapshot(&self, actor: &Actor, id: &str) -> R<(Session, Snapshot)> {
        let s = self.get(actor, id).await?;
        let live = self.live_here(&s)?;
        let snap = self.take_snapshot(&live, SnapshotTrigger::Terminate).await?;
        let ended = self
            .terminate_found(s, "terminated on request, after a snapshot")
            .await?;
        Ok((ended, snap))
    }
}

/// `ses_` and 24 to 32 lowercase hex digits (the API's pattern).
fn is_session_id(s: &str) -> bool {
    s.strip_prefix("ses_").is_some_and(|h| {
        (24..=32).contains(&h.len()) && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Why packing failed: the box's side, or the host's scratch file.
pub(super) enum Packing {
    Box(BoxFileError),
    Host(std::io::Error),
}

pub(super) fn pack(
    boxed: &SessionBox,
    path: &std::path::Path,
    limits: CopyLimits,
) -> Result<CopyReport, Packing> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(Packing::Host)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let report = boxed
        .workspace()
        .pack_tar(&mut out, limits)
        .map_err(|e| match e {
            BoxFileError::Io { path, source } if path == "the archive" => Packing::Host(source),
            e => Packing::Box(e),
        })?;
    out.flush().map_err(Packing::Host)?;
    Ok(report)
}
