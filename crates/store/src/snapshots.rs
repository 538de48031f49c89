//! Session snapshots (moved `creating → ready | failed` as compare-and-sets
//! on their state, listed newest first) and the nodes sharing the database
//! (one row each, rewritten by its heartbeat).

use sqlx::AnyPool;
use warden_core::store::SnapshotFilter;
use warden_core::{Node, Page, Snapshot, SnapshotStatus, SnapshotTrigger, StoreError};

use crate::error::{Record, Result, all, corrupt, optional};
use crate::query::{Where, page};

macro_rules! columns {
    () => {
        "id, app, session, template, status, trigger, error, object, size_bytes, files, attempts, node, \
         created_at, ready_at"
    };
}

#[derive(sqlx::FromRow)]
struct SnapshotRow {
    id: String,
    app: String,
    session: String,
    template: String,
    status: String,
    trigger: String,
    error: Option<String>,
    object: String,
    size_bytes: i64,
    files: i64,
    attempts: i64,
    node: String,
    created_at: i64,
    ready_at: Option<i64>,
}

impl Record for SnapshotRow {
    type Out = Snapshot;

    fn into_record(self) -> Result<Snapshot> {
        let record = format!("snapshot {}", self.id);
        Ok(Snapshot {
            status: SnapshotStatus::parse(&self.status)
                .ok_or_else(|| corrupt(&record, format!("unknown status `{}`", self.status)))?,
            trigger: SnapshotTrigger::parse(&self.trigger)
                .ok_or_else(|| corrupt(&record, format!("unknown trigger `{}`", self.trigger)))?,
            id: self.id,
            app: self.app,
            session: self.session,
            template: self.template,
            error: self.error,
            object: self.object,
            size_bytes: self.size_bytes,
            files: self.files,
            attempts: self.attempts,
            node: self.node,
            created_at: self.created_at,
            ready_at: self.ready_at,
        })
    }
}

const SELECT: &str = concat!("SELECT ", columns!(), " FROM snapshots WHERE id = $1");

/// Record a new snapshot.
pub(crate) async fn insert(pool: &AnyPool, s: Snapshot) -> Result<()> {
    sqlx::query(concat!(
        "INSERT INTO snapshots (",
        columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(&s.id)
    .bind(&s.app)
    .bind(&s.session)
    .bind(&s.template)
    .bind(s.status.as_str())
    .bind(s.trigger.as_str())
    .bind(&s.error)
    .bind(&s.object)
    .bind(s.size_bytes)
    .bind(s.files)
    .bind(s.attempts)
    .bind(&s.node)
    .bind(s.created_at)
    .bind(s.ready_at)
    .execute(pool)
    .await
    .map_err(|e| match crate::error::Error::from(e) {
        e if e.is_unique_violation() => StoreError::Conflict(format!("snapshot {} exists", s.id)).into(),
        e => e,
    })?;
    Ok(())
}

/// Write a snapshot's state and results if it is still in `from`.
pub(crate) async fn update(pool: &AnyPool, from: SnapshotStatus, s: Snapshot) -> Result<Snapshot> {
    if !from.can_move(s.status) {
        return Err(StoreError::Conflict(format!(
            "snapshot {} cannot move from {from} to {}",
            s.id, s.status
        ))
        .into());
    }
    let mut tx = pool.begin().await?;
    let row: Option<SnapshotRow> = sqlx::query_as(concat!(
        "UPDATE snapshots SET status = $1, error = $2, size_bytes = $3, files = $4, attempts = $5, \
         node = $6, ready_at = $7 WHERE id = $8 AND status = $9 RETURNING ",
        columns!()
    ))
    .bind(s.status.as_str())
    .bind(&s.error)
    .bind(s.size_bytes)
    .bind(s.files)
    .bind(s.attempts)
    .bind(&s.node)
    .bind(s.ready_at)
    .bind(&s.id)
    .bind(from.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        let now: Option<(String,)> = sqlx::query_as("SELECT status FROM snapshots WHERE id = $1")
            .bind(&s.id)
            .fetch_optional(&mut *tx)
            .await?;
        return Err(match now {
            None => StoreError::NotFound(format!("snapshot {}", s.id)),
            Some((now,)) => StoreError::Changed {
                record: format!("snapshot {}", s.id),
                now,
            },
        }
        .into());
    };
    let s = row.into_record()?;
    tx.commit().await?;
    Ok(s)
}

/// One snapshot.
pub(crate) async fn get(pool: &AnyPool, id: &str) -> Result<Option<Snapshot>> {
    let row = sqlx::query_as(SELECT).bind(id).fetch_optional(pool).await?;
    optional::<SnapshotRow>(row)
}

/// Snapshots, newest first (ids grow with time).
pub(crate) async fn list(pool: &AnyPool, f: SnapshotFilter) -> Result<Page<Snapshot>> {
    let mut w = Where::default();
    w.text("app = $?", f.app.as_deref());
    w.text("session = $?", f.session.as_deref());
    w.text("status = $?", f.status.map(SnapshotStatus::as_str));
    w.text("id < $?", f.cursor.as_deref());
    let rows: Vec<SnapshotRow> = w
        .select(concat!(columns!(), " FROM snapshots"), "id DESC", f.limit)
        .fetch_all(pool)
        .await?;
    Ok(page(all(rows)?, f.limit, |s| s.id.clone()))
}

/// The newest ready snapshot of `session`.
pub(crate) async fn latest(pool: &AnyPool, session: &str) -> Result<Option<Snapshot>> {
    let row = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM snapshots WHERE session = $1 AND status = 'ready' ORDER BY id DESC LIMIT 1"
    ))
    .bind(session)
    .fetch_optional(pool)
    .await?;
    optional::<SnapshotRow>(row)
}

/// Forget a snapshot; false when there is none.
pub(crate) async fn delete(pool: &AnyPool, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM snapshots WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(sqlx::FromRow)]
struct NodeRow {
    id: String,
    advertise_url: Option<String>,
    version: String,
    started_at: i64,
    heartbeat_at: i64,
}

impl Record for NodeRow {
    type Out = Node;

    fn into_record(self) -> Result<Node> {
        Ok(Node {
            id: self.id,
            advertise_url: self.advertise_url,
            version: self.version,
            started_at: self.started_at,
            heartbeat_at: self.heartbeat_at,
        })
    }
}

/// Record a node's heartbeat (a heartbeat never goes back in time).
pub(crate) async fn heartbeat(pool: &AnyPool, n: Node) -> Result<()> {
    sqlx::query(
        "INSERT INTO nodes (id, advertise_url, version, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET advertise_url = excluded.advertise_url, version = excluded.version, \
         started_at = excluded.started_at, \
         heartbeat_at = CASE WHEN excluded.heartbeat_at > nodes.heartbeat_at THEN excluded.heartbeat_at \
         ELSE nodes.heartbeat_at END",
    )
    .bind(&n.id)
    .bind(&n.advertise_url)
    .bind(&n.version)
    .bind(n.started_at)
    .bind(n.heartbeat_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// One node.
pub(crate) async fn node(pool: &AnyPool, id: &str) -> Result<Option<Node>> {
    let row = sqlx::query_as(
        "SELECT id, advertise_url, version, started_at, heartbeat_at FROM nodes WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    optional::<NodeRow>(row)
}

/// Every node, by id.
pub(crate) async fn nodes(pool: &AnyPool) -> Result<Vec<Node>> {
    let rows: Vec<NodeRow> =
        sqlx::query_as("SELECT id, advertise_url, version, started_at, heartbeat_at FROM nodes ORDER BY id")
            .fetch_all(pool)
            .await?;
    all(rows)
}
