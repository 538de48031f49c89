//! Execution records: inserted when a call is accepted, updated until final
//! (a final record never changes), listed and filtered, and marked
//! interrupted when their node comes back from a crash.

use sqlx::AnyPool;
use warden_core::store::ExecutionFilter;
use warden_core::{
    ErrorKind, Execution, ExecutionMode, ExecutionResult, ExecutionSource, ExecutionStatus, Page, StoreError,
    model::now_ms,
};

use crate::error::{Record, Result, all, corrupt, json, json_text, optional};
use crate::query::{Where, page};

macro_rules! columns {
    () => {
        "id, app, plugin, version, status, mode, node, error_kind, result, created_at, started_at, finished_at, \
         duration_ms"
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
}

impl Record for ExecutionRow {
    type Out = Execution;

    fn into_record(self) -> Result<Execution> {
        let record = format!("execution {}", self.id);
        let unknown = |what: &str, name: &str| corrupt(&record, format!("unknown {what} `{name}`"));
        Ok(Execution {
            source: ExecutionSource::Plugin {
                plugin: self.plugin,
                version: self.version,
            },
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

/// Record an accepted execution through `ex`.
async fn insert_with<'c, E: sqlx::Executor<'c, Database = sqlx::Any>>(ex: E, e: &Execution) -> Result<()> {
    let ExecutionSource::Plugin { plugin, version } = &e.source;
    sqlx::query(concat!(
        "INSERT INTO executions (",
        columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
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
    .execute(ex)
    .await?;
    Ok(())
}

/// Record an accepted execution.
pub(crate) async fn insert(pool: &AnyPool, e: Execution) -> Result<()> {
    insert_with(pool, &e).await
}

/// Update an unfinished execution; false when it is final already.
pub(crate) async fn update(pool: &AnyPool, e: Execution) -> Result<bool> {
    let ExecutionSource::Plugin { version, .. } = &e.source;
    let done = sqlx::query(
        "UPDATE executions SET status = $1, error_kind = $2, result = $3, started_at = $4, finished_at = $5, \
         duration_ms = $6, version = $7 WHERE id = $8 AND status IN ('queued', 'running')",
    )
    .bind(e.status.as_str())
    .bind(e.error_kind.map(ErrorKind::as_str))
    .bind(result_text(e.result.as_ref())?)
    .bind(e.started_at)
    .bind(e.finished_at)
    .bind(e.duration_ms)
    .bind(version)
    .bind(&e.id)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        let exists: Option<(String,)> = sqlx::query_as("SELECT id FROM executions WHERE id = $1")
            .bind(&e.id)
            .fetch_optional(pool)
            .await?;
        return match exists {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound(format!("execution {}", e.id)).into()),
        };
    }
    Ok(true)
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

/// Mark `node`'s unfinished executions interrupted.
pub(crate) async fn interrupt_unfinished(pool: &AnyPool, node: &str, reason: &str) -> Result<u64> {
    let result = ExecutionResult::platform_error("Interrupted", reason, None);
    let done = sqlx::query(
        "UPDATE executions SET status = $1, error_kind = $2, result = $3, finished_at = $4 \
         WHERE node = $5 AND status IN ('queued', 'running')",
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
