//! Platform-held credentials: each app's definitions in the clear and
//! secrets sealed (by the platform core, before they reach here: this
//! module never sees a secret in the clear). Writes carry their audit event
//! in the same transaction.

use sqlx::AnyPool;
use warden_core::credential::{Credential, CredentialSpec};
use warden_core::store::NewAudit;

use crate::audit;
use crate::error::{Result, corrupt, json, json_text};

/// Where a credential lives: the app's table, or its installation's.
fn scope(plugin: Option<&str>) -> (&'static str, &'static str) {
    match plugin {
        None => ("credentials", "app = $1 AND name = $2"),
        Some(_) => (
            "installation_credentials",
            "app = $1 AND name = $2 AND plugin = $3",
        ),
    }
}

const COLUMNS: &str = "app, name, spec, key_id, sealed, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct CredentialRow {
    app: String,
    name: String,
    spec: String,
    key_id: String,
    sealed: String,
    created_at: i64,
    updated_at: i64,
}

impl CredentialRow {
    fn into_credential(self, plugin: Option<&str>) -> Result<Credential> {
        let record = match plugin {
            None => format!("credential {}/{}", self.app, self.name),
            Some(p) => format!("credential {}/{p}/{}", self.app, self.name),
        };
        if self.sealed.is_empty() {
            return Err(corrupt(&record, "no sealed secret"));
        }
        Ok(Credential {
            spec: json::<CredentialSpec>(&record, "spec", &self.spec)?,
            app: self.app,
            plugin: plugin.map(str::to_owned),
            name: self.name,
            key_id: self.key_id,
            sealed: self.sealed,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Store `c` (the app's, or its installation's when `c.plugin` is set),
/// replacing the one of that name and keeping its creation time, with its
/// audit event; true when it is new.
pub(crate) async fn put(pool: &AnyPool, c: Credential, a: NewAudit) -> Result<bool> {
    let (table, at) = scope(c.plugin.as_deref());
    let plugin = c.plugin.clone().unwrap_or_default();
    let mut tx = pool.begin().await?;
    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT created_at FROM {table} WHERE {at}"
    )))
    .bind(&c.app)
    .bind(&c.name);
    if c.plugin.is_some() {
        q = q.bind(&plugin);
    }
    let existed: Option<(i64,)> = q.fetch_optional(&mut *tx).await?;
    let spec = json_text("a credential's definition", &c.spec)?;
    match existed {
        Some(_) => {
            let at = at.replace("$3", "$7").replace("$2", "$6").replace("$1", "$5");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET spec = $1, key_id = $2, sealed = $3, updated_at = $4 WHERE {at}"
            )))
            .bind(&spec)
            .bind(&c.key_id)
            .bind(&c.sealed)
            .bind(c.updated_at)
            .bind(&c.app)
            .bind(&c.name);
            if c.plugin.is_some() {
                q = q.bind(&plugin);
            }
            q.execute(&mut *tx).await?;
        }
        None => {
            let (extra, slot) = if c.plugin.is_some() {
                (", plugin", ", $8")
            } else {
                ("", "")
            };
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} ({COLUMNS}{extra}) VALUES ($1, $2, $3, $4, $5, $6, $7{slot})"
            )))
            .bind(&c.app)
            .bind(&c.name)
            .bind(&spec)
            .bind(&c.key_id)
            .bind(&c.sealed)
            .bind(c.created_at)
            .bind(c.updated_at);
            if c.plugin.is_some() {
                q = q.bind(&plugin);
            }
            q.execute(&mut *tx).await?;
        }
    }
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(existed.is_none())
}

/// One credential of an app, or of its installation of `plugin`.
pub(crate) async fn get(
    pool: &AnyPool,
    app: &str,
    plugin: Option<&str>,
    name: &str,
) -> Result<Option<Credential>> {
    let (table, at) = scope(plugin);
    let mut q = sqlx::query_as::<_, CredentialRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM {table} WHERE {at}"
    )))
    .bind(app)
    .bind(name);
    if let Some(p) = plugin {
        q = q.bind(p);
    }
    q.fetch_optional(pool)
        .await?
        .map(|r| r.into_credential(plugin))
        .transpose()
}

/// An app's credentials, or its installation's of `plugin`, by name.
pub(crate) async fn list(pool: &AnyPool, app: &str, plugin: Option<&str>) -> Result<Vec<Credential>> {
    let (table, at) = match plugin {
        None => ("credentials", "app = $1"),
        Some(_) => ("installation_credentials", "app = $1 AND plugin = $2"),
    };
    let mut q = sqlx::query_as::<_, CredentialRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM {table} WHERE {at} ORDER BY name"
    )))
    .bind(app);
    if let Some(p) = plugin {
        q = q.bind(p);
    }
    q.fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| r.into_credential(plugin))
        .collect()
}

/// Delete a credential of an app, or of its installation of `plugin`, with
/// its audit event; false when there was none.
pub(crate) async fn delete(
    pool: &AnyPool,
    app: &str,
    plugin: Option<&str>,
    name: &str,
    a: NewAudit,
) -> Result<bool> {
    let (table, at) = scope(plugin);
    let mut tx = pool.begin().await?;
    let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE {at}")))
        .bind(app)
        .bind(name);
    if let Some(p) = plugin {
        q = q.bind(p);
    }
    let done = q.execute(&mut *tx).await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(true)
}
