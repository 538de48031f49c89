//! API keys: only the hash of a secret is stored, and listings never return
//! it.

use sqlx::AnyPool;
use warden_core::store::NewAudit;
use warden_core::{ApiKey, Role, model::now_ms};

use crate::audit;
use crate::error::{Record, Result, all, corrupt, optional};

macro_rules! columns {
    () => {
        "id, name, role, app, hash, created_at, revoked_at"
    };
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    name: String,
    role: String,
    app: Option<String>,
    hash: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl Record for KeyRow {
    type Out = ApiKey;

    fn into_record(self) -> Result<ApiKey> {
        let role = Role::parse(&self.role).ok_or_else(|| {
            corrupt(
                format!("api key {}", self.id),
                format!("unknown role `{}`", self.role),
            )
        })?;
        Ok(ApiKey {
            id: self.id,
            name: self.name,
            role,
            app: self.app,
            hash: self.hash,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// Store a new key with its audit event.
pub(crate) async fn insert(pool: &AnyPool, key: ApiKey, a: NewAudit) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(concat!(
        "INSERT INTO api_keys (",
        columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, NULL)"
    ))
    .bind(&key.id)
    .bind(&key.name)
    .bind(key.role.as_str())
    .bind(&key.app)
    .bind(&key.hash)
    .bind(key.created_at)
    .execute(&mut *tx)
    .await?;
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(())
}

/// A live key by the hash of its secret.
pub(crate) async fn find_by_hash(pool: &AnyPool, hash: &str) -> Result<Option<ApiKey>> {
    let row = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM api_keys WHERE hash = $1 AND revoked_at IS NULL"
    ))
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    optional::<KeyRow>(row)
}

/// Revoke a live key (false when there is none by that id).
pub(crate) async fn revoke(pool: &AnyPool, id: &str, a: NewAudit) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(true)
}

/// Every key, without hashes.
pub(crate) async fn list(pool: &AnyPool) -> Result<Vec<ApiKey>> {
    let rows = sqlx::query_as(
        "SELECT id, name, role, app, '' AS hash, created_at, revoked_at FROM api_keys ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    all::<KeyRow>(rows)
}
