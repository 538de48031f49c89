//! Sandbox sessions: inserted `creating` when a request is accepted, moved
//! between states by compare-and-set (a state is only left from the state
//! it was read in, so a terminate racing the sweeper leaves one winner and
//! one reason), touched on activity, listed with filters and cursor pages,
//! and marked `lost` when their node comes back from a crash.
//!
//! A node's writes to a session it holds are conditional on the session's
//! node still being that node (`SessionMove::node`, `touch`), and a dead
//! node's session is claimed only while its heartbeat is still stale
//! (`claim_dead`): a node cut off from the others never writes over a
//! session another node took over.
//!
//! Must never: change a final session's state, let a live session be
//! deleted, or let a node write over a session another node has claimed.

use sqlx::{AnyPool, AssertSqlSafe};
use warden_core::store::SessionMove;
use warden_core::{Page, Session, SessionFilter, SessionResources, SessionStatus, SessionUsage, StoreError};

use crate::error::{Record, Result, all, corrupt, json, json_text, optional};
use crate::query::{Where, page};

macro_rules! columns {
    () => {
        "id, app, template, status, status_reason, cpu_cores, memory_mb, disk_mb, pids, idle_timeout_secs, \
         max_lifetime_secs, env, network, layer, node, created_at, started_at, last_active_at, ended_at, executions"
    };
}

/// The live states, as SQL (a closed set of names, not a value).
const LIVE: &str = "('creating', 'running')";

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    app: String,
    template: String,
    status: String,
    status_reason: Option<String>,
    cpu_cores: f64,
    memory_mb: i64,
    disk_mb: i64,
    pids: i64,
    idle_timeout_secs: i64,
    max_lifetime_secs: i64,
    env: String,
    network: String,
    layer: Option<String>,
    node: String,
    created_at: i64,
    started_at: Option<i64>,
    last_active_at: i64,
    ended_at: Option<i64>,
    executions: i64,
}

impl Record for SessionRow {
    type Out = Session;

    fn into_record(self) -> Result<Session> {
        let record = format!("session {}", self.id);
        let count = |column: &str, v: i64| {
            u64::try_from(v).map_err(|_| corrupt(&record, format!("{column} is negative ({v})")))
        };
        let pids = u32::try_from(self.pids)
            .map_err(|_| corrupt(&record, format!("pids is out of range ({})", self.pids)))?;
        if !self.cpu_cores.is_finite() || self.cpu_cores <= 0.0 {
            return Err(corrupt(&record, format!("cpu_cores is {}", self.cpu_cores)));
        }
        Ok(Session {
            status: SessionStatus::parse(&self.status)
                .ok_or_else(|| corrupt(&record, format!("unknown status `{}`", self.status)))?,
            resources: SessionResources {
                cpu_cores: self.cpu_cores,
                memory_mb: count("memory_mb", self.memory_mb)?,
                disk_mb: count("disk_mb", self.disk_mb)?,
                pids,
            },
            idle_timeout_secs: count("idle_timeout_secs", self.idle_timeout_secs)?,
            max_lifetime_secs: count("max_lifetime_secs", self.max_lifetime_secs)?,
            env: json(&record, "env", &self.env)?,
            network: json(&record, "network", &self.network)?,
            executions: count("executions", self.executions)?,
            id: self.id,
            app: self.app,
            template: self.template,
            status_reason: self.status_reason,
            layer: self.layer,
            node: self.node,
            created_at: self.created_at,
            started_at: self.started_at,
            last_active_at: self.last_active_at,
            ended_at: self.ended_at,
        })
    }
}

fn int(what: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("the session's {what} is out of range")).into())
}

/// Record a new session.
pub(crate) async fn insert(pool: &AnyPool, s: Session) -> Result<()> {
    sqlx::query(concat!(
        "INSERT INTO sessions (",
        columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
    ))
    .bind(&s.id)
    .bind(&s.app)
    .bind(&s.template)
    .bind(s.status.as_str())
    .bind(&s.status_reason)
    .bind(s.resources.cpu_cores)
    .bind(int("memory", s.resources.memory_mb)?)
    .bind(int("disk", s.resources.disk_mb)?)
    .bind(i64::from(s.resources.pids))
    .bind(int("idle timeout", s.idle_timeout_secs)?)
    .bind(int("max lifetime", s.max_lifetime_secs)?)
    .bind(json_text("a session's environment", &s.env)?)
    .bind(json_text("a session's allow-list", &s.network)?)
    .bind(&s.layer)
    .bind(&s.node)
    .bind(s.created_at)
    .bind(s.started_at)
    .bind(s.last_active_at)
    .bind(s.ended_at)
    .bind(int("execution count", s.executions)?)
    .execute(pool)
    .await?;
    Ok(())
}

/// One session.
pub(crate) async fn get(pool: &AnyPool, id: &str) -> Result<Option<Session>> {
    let row = sqlx::query_as(concat!("SELECT ", columns!(), " FROM sessions WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    optional::<SessionRow>(row)
}

/// Sessions, newest first.
pub(crate) async fn list(pool: &AnyPool, f: SessionFilter) -> Result<Page<Session>> {
    let mut w = Where::default();
    w.text("app = $?", f.app.as_deref());
    w.text("template = $?", f.template.as_deref());
    w.text("status = $?", f.status.map(SessionStatus::as_str));
    w.text("node = $?", f.node.as_deref());
    w.text("id < $?", f.cursor.as_deref());
    let rows: Vec<SessionRow> = w
        .select(concat!(columns!(), " FROM sessions"), "id DESC", f.limit)
        .fetch_all(pool)
        .await?;
    Ok(page(all(rows)?, f.limit, |s| s.id.clone()))
}

/// Move a session if it is still in one of `m.from`.
pub(crate) async fn move_to(pool: &AnyPool, id: &str, m: SessionMove) -> Result<Option<Session>> {
    if m.from.is_empty() {
        return Ok(None);
    }
    let started_at = (m.to == SessionStatus::Running).then_some(m.at);
    let ended_at = m.to.is_final().then_some(m.at);
    // `$5`, `$6`, …: one placeholder per state it may be in; then the id,
    // then the node it must still be on (if any).
    let states: Vec<String> = (0..m.from.len()).map(|i| format!("${}", i + 5)).collect();
    let on_node = if m.node.is_some() {
        format!(" AND node = ${}", m.from.len() + 6)
    } else {
        String::new()
    };
    let sql = format!(
        "UPDATE sessions SET status = $1, status_reason = COALESCE($2, status_reason), \
         started_at = COALESCE($3, started_at), ended_at = COALESCE($4, ended_at) \
         WHERE id = ${} AND status IN ({}){on_node} RETURNING {}",
        m.from.len() + 5,
        states.join(", "),
        columns!()
    );
    let mut q = sqlx::query_as::<_, SessionRow>(AssertSqlSafe(sql))
        .bind(m.to.as_str())
        .bind(m.reason)
        .bind(started_at)
        .bind(ended_at);
    for s in &m.from {
        q = q.bind(s.as_str());
    }
    q = q.bind(id);
    if let Some(node) = &m.node {
        q = q.bind(node);
    }
    let row = q.fetch_optional(pool).await?;
    match row {
        Some(row) => Ok(Some(row.into_record()?)),
        None => match get(pool, id).await? {
            Some(_) => Ok(None),
            None => Err(StoreError::NotFound(format!("session {id}")).into()),
        },
    }
}

/// Point a running session `node` holds at another dependency layer.
pub(crate) async fn set_layer(pool: &AnyPool, id: &str, node: &str, layer: Option<&str>) -> Result<bool> {
    let done =
        sqlx::query("UPDATE sessions SET layer = $1 WHERE id = $2 AND node = $3 AND status = 'running'")
            .bind(layer)
            .bind(id)
            .bind(node)
            .execute(pool)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Record activity, if the session is still `node`'s.
pub(crate) async fn touch(pool: &AnyPool, id: &str, node: &str, at: i64, executions: u64) -> Result<()> {
    sqlx::query(
        "UPDATE sessions SET last_active_at = CASE WHEN last_active_at < $1 THEN $1 ELSE last_active_at END, \
         executions = executions + $2 WHERE id = $3 AND node = $4",
    )
    .bind(at)
    .bind(int("execution count", executions)?)
    .bind(id)
    .bind(node)
    .execute(pool)
    .await?;
    Ok(())
}

/// Delete an ended session.
pub(crate) async fn delete(pool: &AnyPool, id: &str) -> Result<bool> {
    let done = sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM sessions WHERE id = $1 AND status NOT IN {LIVE}"
    )))
    .bind(id)
    .execute(pool)
    .await?;
    if done.rows_affected() > 0 {
        return Ok(true);
    }
    match get(pool, id).await? {
        Some(s) => Err(StoreError::Conflict(format!(
            "session {id} is {}: terminate it before deleting its record",
            s.status
        ))
        .into()),
        None => Ok(false),
    }
}

/// Live sessions and their reservations.
pub(crate) async fn usage(pool: &AnyPool, app: Option<&str>) -> Result<SessionUsage> {
    let mut sql = format!(
        "SELECT COUNT(*), CAST(COALESCE(SUM(memory_mb), 0) AS BIGINT), CAST(COALESCE(SUM(disk_mb), 0) AS BIGINT) \
         FROM sessions WHERE status IN {LIVE}"
    );
    if app.is_some() {
        sql.push_str(" AND app = $1");
    }
    let mut q = sqlx::query_as::<_, (i64, i64, i64)>(AssertSqlSafe(sql));
    if let Some(a) = app {
        q = q.bind(a);
    }
    let (sessions, memory, disk) = q.fetch_one(pool).await?;
    let record = "the live sessions' totals";
    let count = |v: i64| u64::try_from(v).map_err(|_| corrupt(record, format!("a negative total ({v})")));
    Ok(SessionUsage {
        sessions: count(sessions)?,
        memory_mb: count(memory)?,
        disk_mb: count(disk)?,
    })
}

/// Move live session `id` from node `from` to node `to`, if it is still
/// `from`'s.
pub(crate) async fn claim(pool: &AnyPool, id: &str, from: &str, to: &str) -> Result<bool> {
    let done = sqlx::query(AssertSqlSafe(format!(
        "UPDATE sessions SET node = $1 WHERE id = $2 AND node = $3 AND status IN {LIVE}"
    )))
    .bind(to)
    .bind(id)
    .bind(from)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Move live session `id` from dead node `from` to node `to`, if it is
/// still `from`'s and `from`'s latest heartbeat is older than
/// `beat_before`: checked in the same statement, so a node that beat again
/// keeps its session.
pub(crate) async fn claim_dead(
    pool: &AnyPool,
    id: &str,
    from: &str,
    to: &str,
    beat_before: i64,
) -> Result<bool> {
    let done = sqlx::query(AssertSqlSafe(format!(
        "UPDATE sessions SET node = $1 WHERE id = $2 AND node = $3 AND status IN {LIVE} \
         AND NOT EXISTS (SELECT 1 FROM nodes WHERE nodes.id = $4 AND nodes.heartbeat_at >= $5)"
    )))
    .bind(to)
    .bind(id)
    .bind(from)
    .bind(from)
    .bind(beat_before)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Mark `node`'s live sessions lost.
pub(crate) async fn lose(pool: &AnyPool, node: &str, reason: &str, at: i64) -> Result<u64> {
    let done = sqlx::query(AssertSqlSafe(format!(
        "UPDATE sessions SET status = 'lost', status_reason = $1, ended_at = $2 WHERE node = $3 AND status IN {LIVE}"
    )))
    .bind(reason)
    .bind(at)
    .bind(node)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
