//! Plugins and their versions: uploads, package replacements and state
//! changes (each a compare-and-set with its audit event), deletions, counts.

use serde_json::Value;
use sqlx::{AnyConnection, AnyPool};
use warden_core::store::{NewAudit, NewVersion, PackageFields, PluginFilter, Transition};
use warden_core::{
    Counts, Page, Plugin, StoreError, TrustLevel, Version, VersionStatus, model::new_id, model::now_ms,
};

use crate::audit;
use crate::error::{Record, Result, all, corrupt, json, json_text, optional};
use crate::query::{Where, page};

macro_rules! plugin_columns {
    () => {
        "code, owner, name, description, created_at, updated_at"
    };
}

macro_rules! version_columns {
    () => {
        "id, plugin, version, status, manifest, package_sha256, package_size, files, report, \
         status_reason, uploaded_by, created_at, updated_at, revision, trust_level, signature, signed_by"
    };
}

#[derive(sqlx::FromRow)]
struct PluginRow {
    code: String,
    owner: String,
    name: String,
    description: String,
    created_at: i64,
    updated_at: i64,
}

impl Record for PluginRow {
    type Out = Plugin;

    fn into_record(self) -> Result<Plugin> {
        Ok(Plugin {
            code: self.code,
            owner: self.owner,
            name: self.name,
            description: self.description,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A row of `plugin_versions`. `files` and `report` are `NULL` where a
/// query leaves them out (see `apps::installed_versions`).
#[derive(sqlx::FromRow)]
pub(crate) struct VersionRow {
    id: String,
    plugin: String,
    version: String,
    status: String,
    manifest: String,
    package_sha256: String,
    package_size: i64,
    files: Option<String>,
    report: Option<String>,
    status_reason: Option<String>,
    uploaded_by: String,
    created_at: i64,
    updated_at: i64,
    revision: i64,
    trust_level: String,
    signature: Option<String>,
    signed_by: Option<String>,
}

fn version_status(record: &str, s: &str) -> Result<VersionStatus> {
    VersionStatus::parse(s).ok_or_else(|| corrupt(record, format!("unknown status `{s}`")))
}

impl Record for VersionRow {
    type Out = Version;

    fn into_record(self) -> Result<Version> {
        let record = format!("version {}", self.id);
        Ok(Version {
            status: version_status(&record, &self.status)?,
            manifest: json(&record, "manifest", &self.manifest)?,
            files: match &self.files {
                Some(f) => json(&record, "files", f)?,
                None => Value::Null,
            },
            report: self
                .report
                .as_deref()
                .map(|r| json(&record, "report", r))
                .transpose()?,
            id: self.id,
            plugin: self.plugin,
            version: self.version,
            package_sha256: self.package_sha256,
            package_size: self.package_size,
            status_reason: self.status_reason,
            uploaded_by: self.uploaded_by,
            created_at: self.created_at,
            updated_at: self.updated_at,
            revision: self.revision,
            trust_level: TrustLevel::parse(&self.trust_level)
                .ok_or_else(|| corrupt(&record, format!("unknown trust level `{}`", self.trust_level)))?,
            signature: self.signature,
            signed_by: self.signed_by,
        })
    }
}

/// Insert a Draft version, and its plugin on the first upload.
pub(crate) async fn create_version(pool: &AnyPool, new: NewVersion, a: NewAudit) -> Result<Version> {
    let now = now_ms();
    let mut tx = pool.begin().await?;
    // The first upload creates the plugin and makes its uploader the owner;
    // later ones (by the owner: `new.owner` is the plugin's owner when it
    // exists) refresh the name and description only.
    let claimed = sqlx::query(concat!(
        "INSERT INTO plugins (",
        plugin_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (code) DO UPDATE SET name = excluded.name, description = excluded.description, \
         updated_at = excluded.updated_at WHERE plugins.owner = excluded.owner"
    ))
    .bind(&new.plugin)
    .bind(&new.owner)
    .bind(&new.name)
    .bind(&new.description)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() == 0 {
        // Two developers raced to create the same plugin: the first owns it.
        return Err(
            StoreError::Conflict(format!("plugin {} belongs to another developer", new.plugin)).into(),
        );
    }
    let v = Version {
        id: new_id("ver"),
        plugin: new.plugin,
        version: new.version,
        status: VersionStatus::Draft,
        manifest: new.package.manifest,
        package_sha256: new.package.sha256,
        package_size: new.package.size,
        files: new.package.files,
        report: None,
        status_reason: None,
        uploaded_by: new.package.uploaded_by,
        created_at: now,
        updated_at: now,
        revision: 1,
        trust_level: TrustLevel::Untrusted,
        signature: None,
        signed_by: None,
    };
    sqlx::query(concat!(
        "INSERT INTO plugin_versions (",
        version_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9, $10, $10, 1, 'untrusted', NULL, NULL)"
    ))
    .bind(&v.id)
    .bind(&v.plugin)
    .bind(&v.version)
    .bind(v.status.as_str())
    .bind(json_text("a manifest", &v.manifest)?)
    .bind(&v.package_sha256)
    .bind(v.package_size)
    .bind(json_text("a file list", &v.files)?)
    .bind(&v.uploaded_by)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| match crate::error::Error::from(e) {
        e if e.is_unique_violation() => {
            StoreError::Conflict(format!("{} {} exists already", v.plugin, v.version)).into()
        }
        e => e,
    })?;
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(v)
}

/// The end of a compare-and-set on a version: the updated row (from
/// `RETURNING`) with its audit event committed, or why nothing was updated.
async fn changed(
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    row: Option<VersionRow>,
    a: &NewAudit,
) -> Result<Version> {
    let Some(row) = row else {
        return Err(refusal(&mut tx, id).await?.into());
    };
    let v = row.into_record()?;
    audit::insert(&mut *tx, a).await?;
    tx.commit().await?;
    Ok(v)
}

/// Why a compare-and-set on version `id` matched nothing: it is gone, or it
/// is now in another state (or revision).
async fn refusal(ex: &mut AnyConnection, id: &str) -> Result<StoreError> {
    let status: Option<(String,)> = sqlx::query_as("SELECT status FROM plugin_versions WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *ex)
        .await?;
    Ok(match status {
        None => StoreError::NotFound(format!("version {id}")),
        Some((s,)) => StoreError::Stale {
            current: version_status(&format!("version {id}"), &s)?,
        },
    })
}

/// Replace a version's package if it is still at `revision`, moving it to
/// `to`.
pub(crate) async fn replace_package(
    pool: &AnyPool,
    id: &str,
    revision: i64,
    to: VersionStatus,
    package: PackageFields,
    report: Option<Value>,
    a: NewAudit,
) -> Result<Version> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query_as(concat!(
        "UPDATE plugin_versions SET status = $1, manifest = $2, package_sha256 = $3, package_size = $4, files = $5, \
         report = $6, status_reason = NULL, uploaded_by = $7, updated_at = $8, revision = revision + 1, \
         signature = NULL, signed_by = NULL \
         WHERE id = $9 AND revision = $10 RETURNING ",
        version_columns!()
    ))
    .bind(to.as_str())
    .bind(json_text("a manifest", &package.manifest)?)
    .bind(&package.sha256)
    .bind(package.size)
    .bind(json_text("a file list", &package.files)?)
    .bind(report.as_ref().map(|r| json_text("a report", r)).transpose()?)
    .bind(&package.uploaded_by)
    .bind(now_ms())
    .bind(id)
    .bind(revision)
    .fetch_optional(&mut *tx)
    .await?;
    changed(tx, id, row, &a).await
}

/// Attach a signature (and the id of the key that made it) to a version
/// still at `revision` and in draft or pending.
pub(crate) async fn set_signature(
    pool: &AnyPool,
    id: &str,
    revision: i64,
    signature: &str,
    signed_by: &str,
    a: NewAudit,
) -> Result<Version> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query_as(concat!(
        "UPDATE plugin_versions SET signature = $1, signed_by = $2, updated_at = $3, revision = revision + 1 \
         WHERE id = $4 AND revision = $5 AND status IN ('draft', 'pending') RETURNING ",
        version_columns!()
    ))
    .bind(signature)
    .bind(signed_by)
    .bind(now_ms())
    .bind(id)
    .bind(revision)
    .fetch_optional(&mut *tx)
    .await?;
    changed(tx, id, row, &a).await
}

/// Apply a transition if the version is still where it was read.
pub(crate) async fn set_status(pool: &AnyPool, id: &str, t: Transition, a: NewAudit) -> Result<Version> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query_as(concat!(
        "UPDATE plugin_versions SET status = $1, status_reason = $2, report = COALESCE($3, report), updated_at = $4, \
         revision = revision + 1, trust_level = COALESCE($8, trust_level) \
         WHERE id = $5 AND status = $6 AND revision = $7 RETURNING ",
        version_columns!()
    ))
    .bind(t.to.as_str())
    .bind(&t.reason)
    .bind(t.report.as_ref().map(|r| json_text("a report", r)).transpose()?)
    .bind(now_ms())
    .bind(id)
    .bind(t.from.as_str())
    .bind(t.revision)
    .bind(t.trust_level.map(TrustLevel::as_str))
    .fetch_optional(&mut *tx)
    .await?;
    changed(tx, id, row, &a).await
}

/// Delete a version no installation uses.
pub(crate) async fn delete_version(pool: &AnyPool, id: &str, a: NewAudit) -> Result<()> {
    let mut tx = pool.begin().await?;
    // Pinned installations hold the version by foreign key; an active
    // version is also in use while installations follow the latest.
    let done = sqlx::query(
        "DELETE FROM plugin_versions WHERE id = $1 AND NOT (status = 'active' AND EXISTS \
         (SELECT 1 FROM installations i WHERE i.plugin = plugin_versions.plugin AND i.pinned_version IS NULL))",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(|e| match crate::error::Error::from(e) {
        e if e.is_foreign_key_violation() => {
            StoreError::InUse("an installation pins it; upgrade or uninstall it first".into()).into()
        }
        e => e,
    })?;
    if done.rows_affected() == 0 {
        return Err(match refusal(&mut tx, id).await? {
            StoreError::Stale { .. } => StoreError::InUse(
                "it is active and installations follow the latest version; deactivate it first".into(),
            ),
            other => other,
        }
        .into());
    }
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(())
}

/// One plugin.
pub(crate) async fn get_plugin(pool: &AnyPool, code: &str) -> Result<Option<Plugin>> {
    let row = sqlx::query_as(concat!(
        "SELECT ",
        plugin_columns!(),
        " FROM plugins WHERE code = $1"
    ))
    .bind(code)
    .fetch_optional(pool)
    .await?;
    optional::<PluginRow>(row)
}

/// Plugins by code.
pub(crate) async fn list_plugins(pool: &AnyPool, f: PluginFilter) -> Result<Page<Plugin>> {
    let mut w = Where::default();
    w.contains(
        "(LOWER(code) LIKE $? ESCAPE '\\' OR LOWER(name) LIKE $? ESCAPE '\\' OR LOWER(description) LIKE $? ESCAPE '\\')",
        f.search.as_deref(),
    );
    w.text("owner = $?", f.owner.as_deref());
    w.text("code > $?", f.cursor.as_deref());
    let rows: Vec<PluginRow> = w
        .select(concat!(plugin_columns!(), " FROM plugins"), "code", f.limit)
        .fetch_all(pool)
        .await?;
    Ok(page(all(rows)?, f.limit, |p| p.code.clone()))
}

/// One version.
pub(crate) async fn get_version(pool: &AnyPool, plugin: &str, version: &str) -> Result<Option<Version>> {
    let row = sqlx::query_as(concat!(
        "SELECT ",
        version_columns!(),
        " FROM plugin_versions WHERE plugin = $1 AND version = $2"
    ))
    .bind(plugin)
    .bind(version)
    .fetch_optional(pool)
    .await?;
    optional::<VersionRow>(row)
}

/// A plugin's versions, oldest first.
pub(crate) async fn list_versions(pool: &AnyPool, plugin: &str) -> Result<Vec<Version>> {
    let rows = sqlx::query_as(concat!(
        "SELECT ",
        version_columns!(),
        " FROM plugin_versions WHERE plugin = $1 ORDER BY created_at, id"
    ))
    .bind(plugin)
    .fetch_all(pool)
    .await?;
    all::<VersionRow>(rows)
}

/// Versions per state, and how many plugins have an active version.
pub(crate) async fn counts(pool: &AnyPool) -> Result<Counts> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) AS n FROM plugin_versions GROUP BY status")
            .fetch_all(pool)
            .await?;
    let versions = rows
        .into_iter()
        .map(|(s, n)| Ok((version_status("plugin_versions", &s)?, n.max(0) as u64)))
        .collect::<Result<_>>()?;
    let (active,): (i64,) =
        sqlx::query_as("SELECT COUNT(DISTINCT plugin) AS n FROM plugin_versions WHERE status = 'active'")
            .fetch_one(pool)
            .await?;
    let by_trust: Vec<(String, i64)> = sqlx::query_as(
        "SELECT trust_level, COUNT(DISTINCT plugin) AS n FROM plugin_versions WHERE status = 'active' \
         GROUP BY trust_level",
    )
    .fetch_all(pool)
    .await?;
    let active_by_trust = by_trust
        .into_iter()
        .map(|(t, n)| {
            let level = TrustLevel::parse(&t)
                .ok_or_else(|| corrupt("plugin_versions", format!("unknown trust level `{t}`")))?;
            Ok((level, n.max(0) as u64))
        })
        .collect::<Result<_>>()?;
    Ok(Counts {
        versions,
        active_plugins: active.max(0) as u64,
        active_by_trust,
    })
}
