//! Publishers' signing keys. Revoking one also ends the trust of every
//! version it signed (they stay callable in the jail, as untrusted), in the
//! same transaction as the revocation.

use sqlx::AnyPool;
use warden_core::StoreError;
use warden_core::model::now_ms;
use warden_core::signing::SigningKey;
use warden_core::store::NewAudit;

use crate::audit;
use crate::error::{Record, Result, all, optional};

macro_rules! columns {
    () => {
        "id, owner, name, public_key, created_at, revoked_at"
    };
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    owner: String,
    name: String,
    public_key: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl Record for KeyRow {
    type Out = SigningKey;

    fn into_record(self) -> Result<SigningKey> {
        Ok(SigningKey {
            id: self.id,
            owner: self.owner,
            name: self.name,
            public_key: self.public_key,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// Register a key; a conflict when its id is registered already (to
/// anyone: a key id names one key).
pub(crate) async fn insert(pool: &AnyPool, key: SigningKey, a: NewAudit) -> Result<()> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(concat!(
        "INSERT INTO signing_keys (",
        columns!(),
        ") VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT (id) DO NOTHING"
    ))
    .bind(&key.id)
    .bind(&key.owner)
    .bind(&key.name)
    .bind(&key.public_key)
    .bind(key.created_at)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("signing key {} is registered already", key.id)).into());
    }
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(())
}

/// One key, revoked or not.
pub(crate) async fn get(pool: &AnyPool, id: &str) -> Result<Option<SigningKey>> {
    let row = sqlx::query_as(concat!("SELECT ", columns!(), " FROM signing_keys WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    optional::<KeyRow>(row)
}

/// Every key, or one owner's, oldest first.
pub(crate) async fn list(pool: &AnyPool, owner: Option<&str>) -> Result<Vec<SigningKey>> {
    let rows = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM signing_keys WHERE ($1 IS NULL OR owner = $1) ORDER BY created_at, id"
    ))
    .bind(owner)
    .fetch_all(pool)
    .await?;
    all::<KeyRow>(rows)
}

/// Revoke a live key and demote the trusted versions it signed to
/// untrusted; how many were demoted, or `None` when no live key has `id`.
pub(crate) async fn revoke(pool: &AnyPool, id: &str, a: NewAudit) -> Result<Option<u64>> {
    let mut tx = pool.begin().await?;
    let now = now_ms();
    let done = sqlx::query("UPDATE signing_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    let demoted = sqlx::query(
        "UPDATE plugin_versions SET trust_level = 'untrusted', updated_at = $1, revision = revision + 1 \
         WHERE signed_by = $2 AND trust_level = 'trusted'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    audit::insert(&mut *tx, &a).await?;
    tx.commit().await?;
    Ok(Some(demoted.rows_affected()))
}
