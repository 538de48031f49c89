//! The append-only audit trail. Every other module writes its event here,
//! inside its own transaction; the database refuses updates and deletes.

use serde_json::Value;
use sqlx::{Any, AnyPool};
use warden_core::store::{AuditFilter, NewAudit};
use warden_core::{AuditEvent, Page, model::new_id, model::now_ms};

use crate::error::{Record, Result, all, json, json_text};
use crate::query::{Where, page};

macro_rules! columns {
    () => {
        "id, at, actor, action, plugin, version, from_status, to_status, reason, detail"
    };
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: String,
    at: i64,
    actor: String,
    action: String,
    plugin: Option<String>,
    version: Option<String>,
    from_status: Option<String>,
    to_status: Option<String>,
    reason: Option<String>,
    detail: String,
}

impl Record for AuditRow {
    type Out = AuditEvent;

    fn into_record(self) -> Result<AuditEvent> {
        let detail: Value = json(&format!("audit event {}", self.id), "detail", &self.detail)?;
        Ok(AuditEvent {
            id: self.id,
            at: self.at,
            actor: self.actor,
            action: self.action,
            plugin: self.plugin,
            version: self.version,
            from_status: self.from_status,
            to_status: self.to_status,
            reason: self.reason,
            detail,
        })
    }
}

/// Append `a` through `ex` (a transaction, usually).
pub(crate) async fn insert<'c, E: sqlx::Executor<'c, Database = Any>>(
    ex: E,
    a: &NewAudit,
) -> Result<AuditEvent> {
    let ev = AuditEvent {
        id: new_id("aud"),
        at: now_ms(),
        actor: a.actor.clone(),
        action: a.action.clone(),
        plugin: a.plugin.clone(),
        version: a.version.clone(),
        from_status: a.from_status.clone(),
        to_status: a.to_status.clone(),
        reason: a.reason.clone(),
        detail: a.detail.clone(),
    };
    sqlx::query(concat!(
        "INSERT INTO audit_events (",
        columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&ev.id)
    .bind(ev.at)
    .bind(&ev.actor)
    .bind(&ev.action)
    .bind(&ev.plugin)
    .bind(&ev.version)
    .bind(&ev.from_status)
    .bind(&ev.to_status)
    .bind(&ev.reason)
    .bind(json_text("an audit event's detail", &ev.detail)?)
    .execute(ex)
    .await?;
    Ok(ev)
}

/// Audit events, newest first.
pub(crate) async fn list(pool: &AnyPool, f: AuditFilter) -> Result<Page<AuditEvent>> {
    let mut w = Where::default();
    w.text("plugin = $?", f.plugin.as_deref());
    w.text("version = $?", f.version.as_deref());
    w.text("actor = $?", f.actor.as_deref());
    w.text("action = $?", f.action.as_deref());
    w.int("at >= $?", f.since);
    w.int("at < $?", f.until);
    w.text("id < $?", f.cursor.as_deref());
    let rows: Vec<AuditRow> = w
        .select(concat!(columns!(), " FROM audit_events"), "id DESC", f.limit)
        .fetch_all(pool)
        .await?;
    Ok(page(all(rows)?, f.limit, |a| a.id.clone()))
}
