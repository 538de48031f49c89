//! API keys: only the hash of a secret is stored, and listings never return
//! it.

use sqlx::AnyPool;
use warden_core::store::NewAudit;
use warden_core::{ApiKey, Revoked, Role, model::now_ms};

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

/// Revoke a live key; with `keep_an_admin`, never the last live admin key.
pub(crate) async fn revoke(pool: &AnyPool, id: &str, a: NewAudit, keep_an_admin: bool) -> Result<Revoked> {
    let mut tx = pool.begin().await?;
    if keep_an_admin {
        // Lock every live admin key first (row locks on PostgreSQL, the
        // write lock on SQLite): a revocation racing this one waits, then
        // counts what this one left.
        sqlx::query(
            "UPDATE api_keys SET revoked_at = revoked_at WHERE role = 'admin' AND revoked_at IS NULL",
        )
        .execute(&mut *tx)
        .await?;
    }
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
         AND ($3 = 0 OR role <> 'admin' \
              OR (SELECT COUNT(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL) > 1)",
    )
    .bind(now_ms())
    .bind(id)
    .bind(i64::from(keep_an_admin))
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        let live = sqlx::query("SELECT 1 FROM api_keys WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        return Ok(if live.is_some() {
            Revoked::LastAdmin
        } else {
            Revoked::NotFound
        });
    }
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(Revoked::Done)
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
