//! Platform-held credentials: each app's definitions in the clear and
//! secrets sealed (by the platform core, before they reach here: this
//! module never sees a secret in the clear). Writes carry their audit event
//! in the same transaction.

use sqlx::AnyPool;
use warden_core::credential::{Credential, CredentialSpec};
use warden_core::store::NewAudit;

use crate::audit;
use crate::error::{Record, Result, all, corrupt, json, json_text, optional};

macro_rules! columns {
    () => {
        "app, name, spec, key_id, sealed, created_at, updated_at"
    };
}

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

impl Record for CredentialRow {
    type Out = Credential;

    fn into_record(self) -> Result<Credential> {
        let record = format!("credential {}/{}", self.app, self.name);
        if self.sealed.is_empty() {
            return Err(corrupt(&record, "no sealed secret"));
        }
        Ok(Credential {
            spec: json::<CredentialSpec>(&record, "spec", &self.spec)?,
            app: self.app,
            name: self.name,
            key_id: self.key_id,
            sealed: self.sealed,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Store `c` (replacing the app's credential of that name, keeping its
/// creation time) with its audit event; true when it is new.
pub(crate) async fn put(pool: &AnyPool, c: Credential, a: NewAudit) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let existed: Option<(i64,)> =
        sqlx::query_as("SELECT created_at FROM credentials WHERE app = $1 AND name = $2")
            .bind(&c.app)
            .bind(&c.name)
            .fetch_optional(&mut *tx)
            .await?;
    let spec = json_text("a credential's definition", &c.spec)?;
    match existed {
        Some(_) => {
            sqlx::query(
                "UPDATE credentials SET spec = $1, key_id = $2, sealed = $3, updated_at = $4 \
                 WHERE app = $5 AND name = $6",
            )
            .bind(&spec)
            .bind(&c.key_id)
            .bind(&c.sealed)
            .bind(c.updated_at)
            .bind(&c.app)
            .bind(&c.name)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query(concat!(
                "INSERT INTO credentials (",
                columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .bind(&c.app)
            .bind(&c.name)
            .bind(&spec)
            .bind(&c.key_id)
            .bind(&c.sealed)
            .bind(c.created_at)
            .bind(c.updated_at)
            .execute(&mut *tx)
            .await?;
        }
    }
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(existed.is_none())
}

/// One credential of an app.
pub(crate) async fn get(pool: &AnyPool, app: &str, name: &str) -> Result<Option<Credential>> {
    let row = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM credentials WHERE app = $1 AND name = $2"
    ))
    .bind(app)
    .bind(name)
    .fetch_optional(pool)
    .await?;
    optional::<CredentialRow>(row)
}

/// An app's credentials, by name.
pub(crate) async fn list(pool: &AnyPool, app: &str) -> Result<Vec<Credential>> {
    let rows = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM credentials WHERE app = $1 ORDER BY name"
    ))
    .bind(app)
    .fetch_all(pool)
    .await?;
    all::<CredentialRow>(rows)
}

/// Delete an app's credential with its audit event; false when there was
/// none.
pub(crate) async fn delete(pool: &AnyPool, app: &str, name: &str, a: NewAudit) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query("DELETE FROM credentials WHERE app = $1 AND name = $2")
        .bind(app)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(true)
}
