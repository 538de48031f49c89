//! Execution records: inserted when a call is accepted, updated until final
//! (a final record never changes), listed and filtered, and marked
//! interrupted when their node comes back from a crash; and the durable
//! queue of accepted async executions that have not started.
//!
//! A queued execution has a row in `execution_queue` holding its event and
//! limits. Starting it is a claim: one transaction deletes that row and
//! moves the execution from `queued` to `running` on the claiming node, so
//! of any number of claims (threads, nodes sharing the database) exactly
//! one wins. SQLite serializes the writes; PostgreSQL locks the row, and
//! `FOR UPDATE SKIP LOCKED` lets nodes taking "the next one" at once take
//! different ones instead of queueing behind each other.

use sqlx::AnyPool;
use warden_core::store::{ExecutionFilter, Generation};
use warden_core::{
    ErrorKind, Execution, ExecutionMode, ExecutionResult, ExecutionSource, ExecutionStatus, Page, QueuedCall,
    RefusedDestination, RunLanguage, RunMode, SessionLanguage, StoreError, model::now_ms,
};

use crate::Backend;

use crate::error::{Record, Result, all, corrupt, json, json_text, optional};
use crate::query::{Where, page};

macro_rules! columns {
    () => {
        "id, app, plugin, version, status, mode, node, error_kind, result, created_at, started_at, finished_at, \
         duration_ms, source, session, language, run_mode, template, egress_refused"
    };
}

#[derive(sqlx::FromRow)]
struct ExecutionRow {
    id: String,
    app: String,
    plugin: String,
    version: String,
    status: String,
    mode: String,
    node: String,
    error_kind: Option<String>,
    result: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    duration_ms: Option<f64>,
    source: String,
    session: Option<String>,
    language: Option<String>,
    run_mode: Option<String>,
    template: Option<String>,
    egress_refused: Option<String>,
}

impl Record for ExecutionRow {
    type Out = Execution;

    fn into_record(self) -> Result<Execution> {
        let record = format!("execution {}", self.id);
        let unknown = |what: &str, name: &str| corrupt(&record, format!("unknown {what} `{name}`"));
        let missing = |what: &str| corrupt(&record, format!("a session's execution without its {what}"));
        let source = match self.source.as_str() {
            "plugin" => ExecutionSource::Plugin {
                plugin: self.plugin,
                version: self.version,
            },
            "session" => {
                let language = self.language.ok_or_else(|| missing("language"))?;
                let mode = self.run_mode.ok_or_else(|| missing("run mode"))?;
                ExecutionSource::Session {
                    session: self.session.ok_or_else(|| missing("session"))?,
                    language: SessionLanguage::parse(&language)
                        .ok_or_else(|| unknown("language", &language))?,
                    mode: RunMode::parse(&mode).ok_or_else(|| unknown("run mode", &mode))?,
                }
            }
            "run" => {
                let language = self
                    .language
                    .ok_or_else(|| corrupt(&record, "a run without its language"))?;
                ExecutionSource::Run {
                    language: RunLanguage::parse(&language).ok_or_else(|| unknown("language", &language))?,
                    template: self.template,
                }
            }
            other => return Err(unknown("source", other)),
        };
        Ok(Execution {
            source,
            status: ExecutionStatus::parse(&self.status).ok_or_else(|| unknown("status", &self.status))?,
            mode: ExecutionMode::parse(&self.mode).ok_or_else(|| unknown("mode", &self.mode))?,
            error_kind: self
                .error_kind
                .map(|k| ErrorKind::parse(&k).ok_or_else(|| unknown("error kind", &k)))
                .transpose()?,
            result: self
                .result
                .map(|r| json::<ExecutionResult>(&record, "result", &r))
                .transpose()?,
            egress_refused: self
                .egress_refused
                .map(|r| json::<Vec<RefusedDestination>>(&record, "egress_refused", &r))
                .transpose()?
                .unwrap_or_default(),
            id: self.id,
            app: self.app,
            node: self.node,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            duration_ms: self.duration_ms,
        })
    }
}

fn result_text(r: Option<&ExecutionResult>) -> Result<Option<String>> {
    r.map(|r| json_text("an execution's result", r)).transpose()
}

/// The refused destinations as stored: NULL when there are none.
fn refused_text(r: &[RefusedDestination]) -> Result<Option<String>> {
    (!r.is_empty())
        .then(|| json_text("an execution's refused destinations", &r))
        .transpose()
}

/// Record an accepted execution through `ex`; with `at`, only while the
/// plugin is at that generation (one statement: the check and the insert
/// see the same snapshot). False when nothing was recorded.
async fn insert_with<'c, E: sqlx::Executor<'c, Database = sqlx::Any>>(
    ex: E,
    e: &Execution,
    at: Option<&Generation>,
) -> Result<bool> {
    let (plugin, version) = e.source.plugin().unwrap_or_default();
    let (session, language, mode, template) = match &e.source {
        ExecutionSource::Session {
            session,
            language,
            mode,
        } => (
            Some(session.as_str()),
            Some(language.as_str()),
            Some(mode.as_str()),
            None,
        ),
        ExecutionSource::Run { language, template } => {
            (None, Some(language.as_str()), None, template.as_deref())
        }
        ExecutionSource::Plugin { .. } => (None, None, None, None),
    };
    let sql = match at {
        None => concat!(
            "INSERT INTO executions (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        ),
        Some(_) => concat!(
            "INSERT INTO executions (",
            columns!(),
            ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19 \
             WHERE EXISTS (SELECT 1 FROM plugins WHERE code = $20 AND generation = $21)"
        ),
    };
    let mut q = sqlx::query(sql)
        .bind(&e.id)
        .bind(&e.app)
        .bind(plugin)
        .bind(version)
        .bind(e.status.as_str())
        .bind(e.mode.as_str())
        .bind(&e.node)
        .bind(e.error_kind.map(ErrorKind::as_str))
        .bind(result_text(e.result.as_ref())?)
        .bind(e.created_at)
        .bind(e.started_at)
        .bind(e.finished_at)
        .bind(e.duration_ms)
        .bind(e.source.kind())
        .bind(session)
        .bind(language)
        .bind(mode)
        .bind(template)
        .bind(refused_text(&e.egress_refused)?);
    if let Some(at) = at {
        q = q.bind(&at.plugin).bind(at.number);
    }
    Ok(q.execute(ex).await?.rows_affected() == 1)
}

/// Record an accepted execution.
pub(crate) async fn insert(pool: &AnyPool, e: Execution) -> Result<()> {
    insert_with(pool, &e, None).await?;
    Ok(())
}

/// Record an accepted execution while the plugin is at generation `at`.
pub(crate) async fn insert_at(pool: &AnyPool, e: &Execution, at: Option<&Generation>) -> Result<bool> {
    insert_with(pool, e, at).await
}

/// Update an unfinished execution; false when it is final already.
pub(crate) async fn update(pool: &AnyPool, e: Execution) -> Result<bool> {
    let (_, version) = e.source.plugin().unwrap_or_default();
    // Only async executions are ever queued; a started or ended one has no
    // business in the queue (a claim removed it already, normally).
    let dequeue = e.mode == ExecutionMode::Async && e.status != ExecutionStatus::Queued;
    let set = sqlx::query(
        "UPDATE executions SET status = $1, error_kind = $2, result = $3, started_at = $4, finished_at = $5, \
         duration_ms = $6, version = $7, egress_refused = $8 WHERE id = $9 AND status IN ('queued', 'running')",
    )
    .bind(e.status.as_str())
    .bind(e.error_kind.map(ErrorKind::as_str))
    .bind(result_text(e.result.as_ref())?)
    .bind(e.started_at)
    .bind(e.finished_at)
    .bind(e.duration_ms)
    .bind(version)
    .bind(refused_text(&e.egress_refused)?)
    .bind(&e.id);
    // A sync execution was never queued: its final record is one statement
    // (one round trip), not a transaction of three.
    let (done, mut tx) = if dequeue {
        let mut tx = pool.begin().await?;
        (set.execute(&mut *tx).await?, Some(tx))
    } else {
        (set.execute(pool).await?, None)
    };
    if done.rows_affected() == 0 {
        // Why not: final already, or no such execution. Records are never
        // deleted and a final one never changes, so a read after the update
        // tells the same as one inside its transaction.
        let exists: Option<(String,)> = match tx.as_mut() {
            Some(tx) => {
                sqlx::query_as("SELECT id FROM executions WHERE id = $1")
                    .bind(&e.id)
                    .fetch_optional(&mut **tx)
                    .await?
            }
            None => {
                sqlx::query_as("SELECT id FROM executions WHERE id = $1")
                    .bind(&e.id)
                    .fetch_optional(pool)
                    .await?
            }
        };
        return match exists {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound(format!("execution {}", e.id)).into()),
        };
    }
    if let Some(mut tx) = tx {
        sqlx::query("DELETE FROM execution_queue WHERE id = $1")
            .bind(&e.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(true)
}

#[derive(sqlx::FromRow)]
struct QueueRow {
    id: String,
    event: String,
    package_sha256: String,
    timeout_ms: i64,
    memory_mb: i64,
}

impl Record for QueueRow {
    type Out = QueuedCall;

    fn into_record(self) -> Result<QueuedCall> {
        let record = format!("queue entry of execution {}", self.id);
        let positive = |column: &str, v: i64| {
            u64::try_from(v).map_err(|_| corrupt(&record, format!("{column} is negative ({v})")))
        };
        Ok(QueuedCall {
            timeout_ms: positive("timeout_ms", self.timeout_ms)?,
            memory_mb: positive("memory_mb", self.memory_mb)?,
            event: self.event,
            package_sha256: self.package_sha256,
        })
    }
}

/// Record an accepted async execution and its queue entry, together; with
/// `at`, only while the plugin is at that generation. False when nothing
/// was recorded.
pub(crate) async fn enqueue(
    pool: &AnyPool,
    e: Execution,
    call: QueuedCall,
    at: Option<&Generation>,
) -> Result<bool> {
    let too_big =
        |what: &str| StoreError::Backend(format!("the {what} of execution {} is out of range", e.id));
    let timeout_ms = i64::try_from(call.timeout_ms).map_err(|_| too_big("timeout"))?;
    let memory_mb = i64::try_from(call.memory_mb).map_err(|_| too_big("memory limit"))?;
    let mut tx = pool.begin().await?;
    if !insert_with(&mut *tx, &e, at).await? {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO execution_queue (id, event, package_sha256, timeout_ms, memory_mb) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&e.id)
    .bind(call.event)
    .bind(call.package_sha256)
    .bind(timeout_ms)
    .bind(memory_mb)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

const START: &str = concat!(
    "UPDATE executions SET status = 'running', started_at = $1, node = $2 WHERE id = $3 AND status = 'queued' \
     RETURNING ",
    columns!()
);

/// Start the queued execution `id` on `node`; false when it is not queued.
pub(crate) async fn claim(pool: &AnyPool, id: &str, node: &str, at: i64) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let taken = sqlx::query("DELETE FROM execution_queue WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if taken.rows_affected() == 0 {
        // Another claim won (its transaction removed the row first).
        return Ok(false);
    }
    let started = sqlx::query(START)
        .bind(at)
        .bind(node)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    tx.commit().await?;
    Ok(started)
}

macro_rules! take_next {
    ($lock:literal) => {
        concat!(
            "DELETE FROM execution_queue WHERE id = (SELECT id FROM execution_queue ORDER BY id LIMIT 1",
            $lock,
            ") RETURNING id, event, package_sha256, timeout_ms, memory_mb"
        )
    };
}

/// Start the oldest queued execution on `node`.
pub(crate) async fn claim_next(
    pool: &AnyPool,
    backend: Backend,
    node: &str,
    at: i64,
) -> Result<Option<(Execution, QueuedCall)>> {
    // A read first: an empty queue, the usual case, takes no write lock.
    let any: Option<(String,)> = sqlx::query_as("SELECT id FROM execution_queue LIMIT 1")
        .fetch_optional(pool)
        .await?;
    if any.is_none() {
        return Ok(None);
    }
    let take = match backend {
        Backend::Postgres => take_next!(" FOR UPDATE SKIP LOCKED"),
        Backend::Sqlite => take_next!(""),
    };
    // An entry whose execution ended some other way is dropped on the way.
    for _ in 0..16 {
        let mut tx = pool.begin().await?;
        let Some(entry): Option<QueueRow> = sqlx::query_as(take).fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        let row: Option<ExecutionRow> = sqlx::query_as(START)
            .bind(at)
            .bind(node)
            .bind(&entry.id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        if let Some(row) = row {
            return Ok(Some((row.into_record()?, entry.into_record()?)));
        }
    }
    Ok(None)
}

/// One execution.
pub(crate) async fn get(pool: &AnyPool, id: &str) -> Result<Option<Execution>> {
    let row = sqlx::query_as(concat!("SELECT ", columns!(), " FROM executions WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    optional::<ExecutionRow>(row)
}

/// Executions, newest first.
pub(crate) async fn list(pool: &AnyPool, f: ExecutionFilter) -> Result<Page<Execution>> {
    let mut w = Where::default();
    w.text("app = $?", f.app.as_deref());
    w.text("plugin = $?", f.plugin.as_deref());
    w.text("version = $?", f.version.as_deref());
    w.text("session = $?", f.session.as_deref());
    w.text("status = $?", f.status.map(ExecutionStatus::as_str));
    w.int("created_at >= $?", f.since);
    w.int("created_at < $?", f.until);
    w.text("id < $?", f.cursor.as_deref());
    let rows: Vec<ExecutionRow> = w
        .select(concat!(columns!(), " FROM executions"), "id DESC", f.limit)
        .fetch_all(pool)
        .await?;
    Ok(page(all(rows)?, f.limit, |e| e.id.clone()))
}

/// Mark `node`'s started executions interrupted, and its queued ones that
/// are not in the queue (they cannot start); queued ones in the queue stay.
pub(crate) async fn interrupt_unfinished(pool: &AnyPool, node: &str, reason: &str) -> Result<u64> {
    let result = ExecutionResult::platform_error("Interrupted", reason, None);
    let done = sqlx::query(
        "UPDATE executions SET status = $1, error_kind = $2, result = $3, finished_at = $4 \
         WHERE node = $5 AND (status = 'running' OR (status = 'queued' AND NOT EXISTS \
         (SELECT 1 FROM execution_queue q WHERE q.id = executions.id)))",
    )
    .bind(ExecutionStatus::Interrupted.as_str())
    .bind(ErrorKind::Interrupted.as_str())
    .bind(result_text(Some(&result))?)
    .bind(now_ms())
    .bind(node)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
