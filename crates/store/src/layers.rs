//! Dependency layers: inserted once per id (concurrent builds of one layer
//! find the same row), moved through their build as compare-and-sets on
//! their state, touched when a box uses them, listed for garbage collection
//! and deleted unless a template points at them (a foreign key says so).

use sqlx::AnyPool;
use warden_core::layer::cap_log;
use warden_core::store::LayerFilter;
use warden_core::{Layer, LayerStatus, Page, StoreError, TemplateRuntime};

use crate::error::{Record, Result, all, corrupt, json, json_text, optional};
use crate::query::{Where, page};

macro_rules! columns {
    () => {
        "id, runtime, interpreter, packages, package_index, status, error, log, locked, size_bytes, node, \
         created_at, built_at, last_used_at"
    };
}

#[derive(sqlx::FromRow)]
struct LayerRow {
    id: String,
    runtime: String,
    interpreter: String,
    packages: String,
    package_index: String,
    status: String,
    error: Option<String>,
    log: String,
    locked: String,
    size_bytes: i64,
    node: Option<String>,
    created_at: i64,
    built_at: Option<i64>,
    last_used_at: Option<i64>,
}

fn status(record: &str, s: &str) -> Result<LayerStatus> {
    LayerStatus::parse(s).ok_or_else(|| corrupt(record, format!("unknown status `{s}`")))
}

impl Record for LayerRow {
    type Out = Layer;

    fn into_record(self) -> Result<Layer> {
        let record = format!("layer {}", self.id);
        Ok(Layer {
            runtime: TemplateRuntime::parse(&self.runtime)
                .ok_or_else(|| corrupt(&record, format!("unknown runtime `{}`", self.runtime)))?,
            packages: json(&record, "packages", &self.packages)?,
            status: status(&record, &self.status)?,
            error: self
                .error
                .as_deref()
                .map(|e| json(&record, "error", e))
                .transpose()?,
            lock: json(&record, "locked", &self.locked)?,
            id: self.id,
            interpreter: self.interpreter,
            index: self.package_index,
            log: self.log,
            size_bytes: self.size_bytes,
            node: self.node,
            created_at: self.created_at,
            built_at: self.built_at,
            last_used_at: self.last_used_at,
        })
    }
}

const SELECT: &str = concat!("SELECT ", columns!(), " FROM layers WHERE id = $1");

/// Insert a layer unless its id exists; the stored one and whether it is new.
pub(crate) async fn insert(pool: &AnyPool, l: Layer) -> Result<(Layer, bool)> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(concat!(
        "INSERT INTO layers (",
        columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (id) DO NOTHING"
    ))
    .bind(&l.id)
    .bind(l.runtime.as_str())
    .bind(&l.interpreter)
    .bind(json_text("a layer's packages", &l.packages)?)
    .bind(&l.index)
    .bind(l.status.as_str())
    .bind(
        l.error
            .as_ref()
            .map(|e| json_text("a layer's error", e))
            .transpose()?,
    )
    .bind(cap_log(&l.log).as_ref())
    .bind(json_text("a layer's lock", &l.lock)?)
    .bind(l.size_bytes)
    .bind(&l.node)
    .bind(l.created_at)
    .bind(l.built_at)
    .bind(l.last_used_at)
    .execute(&mut *tx)
    .await?;
    let row: Option<LayerRow> = sqlx::query_as(SELECT)
        .bind(&l.id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    let stored = optional(row)?.ok_or_else(|| StoreError::NotFound(format!("layer {}", l.id)))?;
    Ok((stored, done.rows_affected() == 1))
}

/// One layer.
pub(crate) async fn get(pool: &AnyPool, id: &str) -> Result<Option<Layer>> {
    let row = sqlx::query_as(SELECT).bind(id).fetch_optional(pool).await?;
    optional::<LayerRow>(row)
}

/// Write a layer's state and results if it is still in `from`.
pub(crate) async fn update(pool: &AnyPool, from: LayerStatus, l: Layer) -> Result<Layer> {
    if !from.can_move(l.status) {
        return Err(
            StoreError::Conflict(format!("layer {} cannot move from {from} to {}", l.id, l.status)).into(),
        );
    }
    let mut tx = pool.begin().await?;
    let row: Option<LayerRow> = sqlx::query_as(concat!(
        "UPDATE layers SET status = $1, error = $2, log = $3, locked = $4, size_bytes = $5, node = $6, \
         built_at = $7 WHERE id = $8 AND status = $9 RETURNING ",
        columns!()
    ))
    .bind(l.status.as_str())
    .bind(
        l.error
            .as_ref()
            .map(|e| json_text("a layer's error", e))
            .transpose()?,
    )
    .bind(cap_log(&l.log).as_ref())
    .bind(json_text("a layer's lock", &l.lock)?)
    .bind(l.size_bytes)
    .bind(&l.node)
    .bind(l.built_at)
    .bind(&l.id)
    .bind(from.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        let now: Option<(String,)> = sqlx::query_as("SELECT status FROM layers WHERE id = $1")
            .bind(&l.id)
            .fetch_optional(&mut *tx)
            .await?;
        return Err(match now {
            None => StoreError::NotFound(format!("layer {}", l.id)),
            Some((s,)) => StoreError::Changed {
                record: format!("layer {}", l.id),
                now: s,
            },
        }
        .into());
    };
    let l = row.into_record()?;
    tx.commit().await?;
    Ok(l)
}

/// Record a use of layer `id` at `at`; false when there is none.
pub(crate) async fn touch(pool: &AnyPool, id: &str, at: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE layers SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
    )
    .bind(at)
    .bind(id)
    .execute(pool)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(true);
    }
    // Used later already, or not there.
    Ok(sqlx::query("SELECT 1 FROM layers WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .is_some())
}

/// Layers by id.
pub(crate) async fn list(pool: &AnyPool, f: LayerFilter) -> Result<Page<Layer>> {
    let mut w = Where::default();
    w.text("status = $?", f.status.map(LayerStatus::as_str));
    w.int("COALESCE(last_used_at, created_at) < $?", f.unused_since);
    w.text("id > $?", f.cursor.as_deref());
    let rows: Vec<LayerRow> = w
        .select(concat!(columns!(), " FROM layers"), "id", f.limit)
        .fetch_all(pool)
        .await?;
    Ok(page(all(rows)?, f.limit, |l| l.id.clone()))
}

/// Delete a layer no template points at; false when there is none.
pub(crate) async fn delete(pool: &AnyPool, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM layers WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(|e| match crate::error::Error::from(e) {
            e if e.is_foreign_key_violation() => {
                StoreError::InUse(format!("layer {id} is a template's layer")).into()
            }
            e => e,
        })?;
    Ok(done.rows_affected() == 1)
}
