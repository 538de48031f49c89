//! Apps and their installations of plugins (pinned to a version, or
//! following the latest active one).

use sqlx::{AnyPool, FromRow, Row};
use warden_core::store::{Generation, Installed, NewAudit};
use warden_core::{App, Installation, StoreError, model::now_ms};

use crate::audit;
use crate::error::{Record, Result, all, optional};
use crate::plugins::VersionRow;

#[derive(sqlx::FromRow)]
struct AppRow {
    id: String,
    name: String,
    created_at: i64,
}

impl Record for AppRow {
    type Out = App;

    fn into_record(self) -> Result<App> {
        Ok(App {
            id: self.id,
            name: self.name,
            created_at: self.created_at,
        })
    }
}

macro_rules! installation_columns {
    () => {
        "id, app, plugin, pinned_version, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct InstallationRow {
    id: String,
    app: String,
    plugin: String,
    pinned_version: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl Record for InstallationRow {
    type Out = Installation;

    fn into_record(self) -> Result<Installation> {
        Ok(Installation {
            id: self.id,
            app: self.app,
            plugin: self.plugin,
            pinned_version: self.pinned_version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Create an app with its audit event.
pub(crate) async fn create(pool: &AnyPool, app: App, a: NewAudit) -> Result<App> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO apps (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(&app.id)
        .bind(&app.name)
        .bind(app.created_at)
        .execute(&mut *tx)
        .await?;
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(app)
}

/// One app.
pub(crate) async fn get(pool: &AnyPool, id: &str) -> Result<Option<App>> {
    let row = sqlx::query_as("SELECT id, name, created_at FROM apps WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    optional::<AppRow>(row)
}

/// Every app, by id.
pub(crate) async fn list(pool: &AnyPool) -> Result<Vec<App>> {
    let rows = sqlx::query_as("SELECT id, name, created_at FROM apps ORDER BY id")
        .fetch_all(pool)
        .await?;
    all::<AppRow>(rows)
}

/// Install a plugin in an app with its audit event.
pub(crate) async fn install(pool: &AnyPool, inst: Installation, a: NewAudit) -> Result<Installation> {
    let mut tx = pool.begin().await?;
    sqlx::query(concat!(
        "INSERT INTO installations (",
        installation_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(&inst.id)
    .bind(&inst.app)
    .bind(&inst.plugin)
    .bind(&inst.pinned_version)
    .bind(inst.created_at)
    .bind(inst.updated_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| match crate::error::Error::from(e) {
        e if e.is_foreign_key_violation() => StoreError::NotFound(format!(
            "app {} or {} {:?}",
            inst.app, inst.plugin, inst.pinned_version
        ))
        .into(),
        e => e,
    })?;
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(inst)
}

/// Change an installation's pin, with its audit event.
pub(crate) async fn update(
    pool: &AnyPool,
    id: &str,
    pinned: Option<String>,
    a: NewAudit,
) -> Result<Installation> {
    let mut tx = pool.begin().await?;
    let row: Option<InstallationRow> = sqlx::query_as(concat!(
        "UPDATE installations SET pinned_version = $1, updated_at = $2 WHERE id = $3 RETURNING ",
        installation_columns!()
    ))
    .bind(&pinned)
    .bind(now_ms())
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| match crate::error::Error::from(e) {
        e if e.is_foreign_key_violation() => StoreError::NotFound(format!("version {pinned:?}")).into(),
        e => e,
    })?;
    let inst = optional(row)?.ok_or_else(|| StoreError::NotFound(format!("installation {id}")))?;
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(inst)
}

/// Remove an installation and its credentials, with its audit event.
pub(crate) async fn uninstall(pool: &AnyPool, id: &str, a: NewAudit) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "DELETE FROM installation_credentials WHERE EXISTS (SELECT 1 FROM installations i \
         WHERE i.id = $1 AND i.app = installation_credentials.app AND i.plugin = installation_credentials.plugin)",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let done = sqlx::query("DELETE FROM installations WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("installation {id}")).into());
    }
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(())
}

/// An app's installation of a plugin.
pub(crate) async fn get_installation(
    pool: &AnyPool,
    app: &str,
    plugin: &str,
) -> Result<Option<Installation>> {
    let row = sqlx::query_as(concat!(
        "SELECT ",
        installation_columns!(),
        " FROM installations WHERE app = $1 AND plugin = $2"
    ))
    .bind(app)
    .bind(plugin)
    .fetch_optional(pool)
    .await?;
    optional::<InstallationRow>(row)
}

/// An app's installations, by plugin.
pub(crate) async fn list_installations(pool: &AnyPool, app: &str) -> Result<Vec<Installation>> {
    let rows = sqlx::query_as(concat!(
        "SELECT ",
        installation_columns!(),
        " FROM installations WHERE app = $1 ORDER BY plugin"
    ))
    .bind(app)
    .fetch_all(pool)
    .await?;
    all::<InstallationRow>(rows)
}

/// The installation's columns under the names the join below gives them.
#[derive(sqlx::FromRow)]
struct InstalledRow {
    inst_id: String,
    inst_pinned: Option<String>,
    inst_created: i64,
    inst_updated: i64,
    plugin_generation: i64,
}

/// An app's installation of a plugin with the versions it may run and the
/// plugin's generation, in one round trip (one statement: one snapshot):
/// the pinned version, or every active one. What the run path never reads
/// (reports, file lists) is not loaded.
pub(crate) async fn installed_versions(pool: &AnyPool, app: &str, plugin: &str) -> Result<Option<Installed>> {
    let rows = sqlx::query(
        "SELECT i.id AS inst_id, i.pinned_version AS inst_pinned, i.created_at AS inst_created, \
         i.updated_at AS inst_updated, p.generation AS plugin_generation, \
         v.id, v.plugin, v.version, v.status, v.manifest, v.package_sha256, v.package_size, NULL AS files, \
         NULL AS report, v.status_reason, v.uploaded_by, v.created_at, v.updated_at, v.revision, v.trust_level, \
         v.signature, v.signed_by \
         FROM installations i JOIN plugins p ON p.code = i.plugin LEFT JOIN plugin_versions v ON v.plugin = i.plugin AND \
         ((i.pinned_version IS NOT NULL AND v.version = i.pinned_version) OR \
          (i.pinned_version IS NULL AND v.status = 'active')) \
         WHERE i.app = $1 AND i.plugin = $2",
    )
    .bind(app)
    .bind(plugin)
    .fetch_all(pool)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let head = InstalledRow::from_row(first)?;
    let inst = Installation {
        id: head.inst_id,
        app: app.to_owned(),
        plugin: plugin.to_owned(),
        pinned_version: head.inst_pinned,
        created_at: head.inst_created,
        updated_at: head.inst_updated,
    };
    let mut versions = Vec::new();
    for row in &rows {
        // No version matched: the left join's one row has none.
        if row.try_get::<Option<String>, _>("id")?.is_some() {
            versions.push(VersionRow::from_row(row)?.into_record()?);
        }
    }
    Ok(Some(Installed {
        installation: inst,
        versions,
        generation: Generation {
            plugin: plugin.to_owned(),
            number: head.plugin_generation,
        },
    }))
}
