//! Templates: inserted, replaced (a compare-and-set on the revision),
//! deleted (never a built-in) and pointed at a ready layer (a
//! compare-and-set on the revision that leaves it as it is), each with its
//! audit event in the same transaction.

use sqlx::{AnyConnection, AnyPool};
use warden_core::store::{NewAudit, TemplateFilter};
use warden_core::{Page, StoreError, Template, TemplateRuntime};

use crate::audit;
use crate::error::{Record, Result, all, corrupt, json, json_text, optional};
use crate::query::{Where, page};

macro_rules! columns {
    () => {
        "id, name, description, runtime, packages, env, resources, network, files, builtin, layer, revision, \
         created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct TemplateRow {
    id: String,
    name: String,
    description: Option<String>,
    runtime: String,
    packages: String,
    env: String,
    resources: String,
    network: String,
    files: String,
    builtin: i64,
    layer: Option<String>,
    revision: i64,
    created_at: i64,
    updated_at: i64,
}

impl Record for TemplateRow {
    type Out = Template;

    fn into_record(self) -> Result<Template> {
        let record = format!("template {}", self.id);
        Ok(Template {
            runtime: TemplateRuntime::parse(&self.runtime)
                .ok_or_else(|| corrupt(&record, format!("unknown runtime `{}`", self.runtime)))?,
            packages: json(&record, "packages", &self.packages)?,
            env: json(&record, "env", &self.env)?,
            resources: json(&record, "resources", &self.resources)?,
            network: json(&record, "network", &self.network)?,
            files: json(&record, "files", &self.files)?,
            builtin: match self.builtin {
                0 => false,
                1 => true,
                other => return Err(corrupt(&record, format!("builtin is {other}, not 0 or 1"))),
            },
            id: self.id,
            name: self.name,
            description: self.description,
            layer: self.layer,
            revision: self.revision,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// The JSON columns of `t`, in column order.
fn json_columns(t: &Template) -> Result<[String; 5]> {
    Ok([
        json_text("a template's packages", &t.packages)?,
        json_text("a template's env", &t.env)?,
        json_text("a template's resources", &t.resources)?,
        json_text("a template's network policy", &t.network)?,
        json_text("a template's files", &t.files)?,
    ])
}

/// Insert a template with its audit event.
pub(crate) async fn insert(pool: &AnyPool, t: Template, a: NewAudit) -> Result<Template> {
    let [packages, env, resources, network, files] = json_columns(&t)?;
    let mut tx = pool.begin().await?;
    sqlx::query(concat!(
        "INSERT INTO templates (",
        columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(&t.id)
    .bind(&t.name)
    .bind(&t.description)
    .bind(t.runtime.as_str())
    .bind(packages)
    .bind(env)
    .bind(resources)
    .bind(network)
    .bind(files)
    .bind(i64::from(t.builtin))
    .bind(&t.layer)
    .bind(t.revision)
    .bind(t.created_at)
    .bind(t.updated_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| match crate::error::Error::from(e) {
        e if e.is_unique_violation() => {
            StoreError::Conflict(format!("template {} exists already", t.id)).into()
        }
        e if e.is_foreign_key_violation() => StoreError::NotFound(format!("layer {:?}", t.layer)).into(),
        e => e,
    })?;
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(t)
}

/// One template.
pub(crate) async fn get(pool: &AnyPool, id: &str) -> Result<Option<Template>> {
    let row = sqlx::query_as(concat!("SELECT ", columns!(), " FROM templates WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    optional::<TemplateRow>(row)
}

/// Templates by id.
pub(crate) async fn list(pool: &AnyPool, f: TemplateFilter) -> Result<Page<Template>> {
    let mut w = Where::default();
    w.text("runtime = $?", f.runtime.map(TemplateRuntime::as_str));
    w.text("id > $?", f.cursor.as_deref());
    let rows: Vec<TemplateRow> = w
        .select(concat!(columns!(), " FROM templates"), "id", f.limit)
        .fetch_all(pool)
        .await?;
    Ok(page(all(rows)?, f.limit, |t| t.id.clone()))
}

/// Why a compare-and-set on template `id`'s revision matched nothing.
async fn refusal(ex: &mut AnyConnection, id: &str) -> Result<StoreError> {
    let now: Option<(i64,)> = sqlx::query_as("SELECT revision FROM templates WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *ex)
        .await?;
    Ok(match now {
        None => StoreError::NotFound(format!("template {id}")),
        Some((revision,)) => StoreError::Changed {
            record: format!("template {id}"),
            now: format!("revision {revision}"),
        },
    })
}

/// Replace a template's spec if it is still at `t.revision`.
pub(crate) async fn update(pool: &AnyPool, t: Template, keep_layer: bool, a: NewAudit) -> Result<Template> {
    let [packages, env, resources, network, files] = json_columns(&t)?;
    let mut tx = pool.begin().await?;
    let row: Option<TemplateRow> = sqlx::query_as(concat!(
        "UPDATE templates SET name = $1, description = $2, runtime = $3, packages = $4, env = $5, resources = $6, \
         network = $7, files = $8, layer = CASE WHEN $9 = 1 THEN layer ELSE NULL END, revision = revision + 1, \
         updated_at = $10 WHERE id = $11 AND revision = $12 RETURNING ",
        columns!()
    ))
    .bind(&t.name)
    .bind(&t.description)
    .bind(t.runtime.as_str())
    .bind(packages)
    .bind(env)
    .bind(resources)
    .bind(network)
    .bind(files)
    .bind(i64::from(keep_layer))
    .bind(t.updated_at)
    .bind(&t.id)
    .bind(t.revision)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(refusal(&mut tx, &t.id).await?.into());
    };
    let t = row.into_record()?;
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(t)
}

/// Delete a template that is not built in.
pub(crate) async fn delete(pool: &AnyPool, id: &str, a: NewAudit) -> Result<()> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query("DELETE FROM templates WHERE id = $1 AND builtin = 0")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        let exists = sqlx::query("SELECT 1 FROM templates WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        return Err(match exists {
            Some(_) => StoreError::Conflict(format!("template {id} is built in and cannot be deleted")),
            None => StoreError::NotFound(format!("template {id}")),
        }
        .into());
    }
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(())
}

/// Point a template still at `revision` at a ready layer (or at none).
pub(crate) async fn set_layer(
    pool: &AnyPool,
    id: &str,
    revision: i64,
    layer: Option<&str>,
    a: NewAudit,
) -> Result<Template> {
    let mut tx = pool.begin().await?;
    let row: Option<TemplateRow> = sqlx::query_as(concat!(
        "UPDATE templates SET layer = $1 WHERE id = $2 AND revision = $3 AND \
         ($1 IS NULL OR EXISTS (SELECT 1 FROM layers l WHERE l.id = $1 AND l.status = 'ready')) RETURNING ",
        columns!()
    ))
    .bind(layer)
    .bind(id)
    .bind(revision)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        let why = match refusal(&mut tx, id).await? {
            StoreError::Changed { now, .. } if now != format!("revision {revision}") => StoreError::Changed {
                record: format!("template {id}"),
                now,
            },
            StoreError::Changed { .. } => {
                // The revision matched: the layer is the reason.
                let status: Option<(String,)> = sqlx::query_as("SELECT status FROM layers WHERE id = $1")
                    .bind(layer)
                    .fetch_optional(&mut *tx)
                    .await?;
                match status {
                    None => StoreError::NotFound(format!("layer {}", layer.unwrap_or_default())),
                    Some((s,)) => {
                        StoreError::Conflict(format!("layer {} is {s}, not ready", layer.unwrap_or_default()))
                    }
                }
            }
            other => other,
        };
        return Err(why.into());
    };
    let t = row.into_record()?;
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(t)
}
