//! Warden's storage: [`SqlStore`] keeps the records in SQLite (the embedded
//! default: one file in WAL mode) or PostgreSQL, through one body of SQL run
//! by `sqlx`'s `Any` driver; [`ObjectBlobs`] keeps package blobs in an
//! `object_store` (a local folder by default).
//!
//! One module per resource, each with its typed rows (`sqlx::FromRow`) and
//! its queries: [`plugins`] (plugins and versions), [`apps`] (apps and
//! installations), [`executions`] (with the durable queue of async
//! executions), [`templates`], [`layers`] (dependency layers),
//! [`sessions`], [`snapshots`] (session snapshots and the nodes sharing the
//! database), [`keys`], [`audit`]. Queries fail with
//! [`error::Error`], turned into the core's `StoreError` once, at the
//! [`Store`] boundary below; a stored value that does not parse is an error
//! naming its record.
//!
//! Every state change is one transaction holding a compare-and-set and its
//! audit event. Each write transaction starts with its write, so SQLite takes
//! the write lock at once (and waits for it under `busy_timeout`) instead of
//! failing when a read lock cannot be upgraded.

mod apps;
mod audit;
mod blobs;
mod credentials;
mod error;
mod executions;
mod keys;
mod layers;
mod plugins;
mod query;
mod sessions;
mod signing;
mod snapshots;
mod templates;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use warden_core::store::{
    AuditFilter, ExecutionFilter, Generation, Installed, LayerFilter, NewAudit, NewVersion, PackageFields,
    Page, PluginFilter, SessionMove, SnapshotFilter, TemplateFilter, Transition,
};
use warden_core::{
    ApiKey, App, AuditEvent, Counts, Execution, Installation, Layer, LayerStatus, Node, Plugin, QueuedCall,
    Revoked, Session, SessionFilter, SessionUsage, Snapshot, SnapshotStatus, Store, StoreError, Template,
    Version, VersionStatus,
};

pub use blobs::{ObjectBlobs, S3Error, S3Options};

type R<T> = Result<T, StoreError>;

/// Which database is underneath.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file, WAL mode.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Records in SQLite or PostgreSQL.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl SqlStore {
    /// Connect to `url` (`sqlite://PATH` or `postgres://…`) and bring its
    /// schema up to date. A SQLite file (and its folder) is created when
    /// missing.
    pub async fn connect(url: &str) -> R<SqlStore> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let file = path.split('?').next().unwrap_or(path);
            if let Some(dir) = Path::new(file).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Backend(format!(
                        "cannot create the database folder {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            let url = if path.contains("mode=") {
                format!("sqlite://{path}")
            } else if path.contains('?') {
                format!("sqlite://{path}&mode=rwc")
            } else {
                format!("sqlite://{path}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::Backend(format!(
                "unsupported database URL `{url}`: use sqlite://PATH or postgres://USER@HOST/DB"
            )));
        };
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        let options = match backend {
            Backend::Sqlite => options.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    // Each connection waits for the write lock rather than
                    // failing at once; foreign keys are per connection.
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    // WAL + NORMAL: a commit survives the process dying
                    // (SIGKILL); only a power loss may drop the last ones.
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options.max_connections(16),
        };
        let pool = options
            .connect(&url)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open the database: {e}")))?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(|e| StoreError::Backend(format!("cannot switch SQLite to WAL mode: {e}")))?;
        }
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("database migration failed: {e}")))?;
        Ok(SqlStore { pool, backend })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for tooling and tests that need raw SQL.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Close every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Each method is its resource module's query; `?` makes the one error
/// conversion.
impl Store for SqlStore {
    async fn ping(&self) -> R<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(error::Error::from)?;
        Ok(())
    }

    async fn create_version(&self, new: NewVersion, audit: NewAudit) -> R<Version> {
        Ok(plugins::create_version(&self.pool, new, audit).await?)
    }

    async fn replace_package(
        &self,
        id: &str,
        revision: i64,
        to: VersionStatus,
        package: PackageFields,
        report: Option<Value>,
        audit: NewAudit,
    ) -> R<Version> {
        Ok(plugins::replace_package(&self.pool, id, revision, to, package, report, audit).await?)
    }

    async fn set_status(&self, id: &str, t: Transition, audit: NewAudit) -> R<Version> {
        Ok(plugins::set_status(&self.pool, id, t, audit).await?)
    }

    async fn delete_version(&self, id: &str, audit: NewAudit) -> R<()> {
        Ok(plugins::delete_version(&self.pool, id, audit).await?)
    }

    async fn get_plugin(&self, code: &str) -> R<Option<Plugin>> {
        Ok(plugins::get_plugin(&self.pool, code).await?)
    }

    async fn list_plugins(&self, filter: PluginFilter) -> R<Page<Plugin>> {
        Ok(plugins::list_plugins(&self.pool, filter).await?)
    }

    async fn get_version(&self, plugin: &str, version: &str) -> R<Option<Version>> {
        Ok(plugins::get_version(&self.pool, plugin, version).await?)
    }

    async fn list_versions(&self, plugin: &str) -> R<Vec<Version>> {
        Ok(plugins::list_versions(&self.pool, plugin).await?)
    }

    async fn append_audit(&self, a: NewAudit) -> R<AuditEvent> {
        Ok(audit::insert(&self.pool, &a).await?)
    }

    async fn list_audit(&self, filter: AuditFilter) -> R<Page<AuditEvent>> {
        Ok(audit::list(&self.pool, filter).await?)
    }

    async fn create_app(&self, app: App, audit: NewAudit) -> R<App> {
        Ok(apps::create(&self.pool, app, audit).await?)
    }

    async fn get_app(&self, id: &str) -> R<Option<App>> {
        Ok(apps::get(&self.pool, id).await?)
    }

    async fn list_apps(&self) -> R<Vec<App>> {
        Ok(apps::list(&self.pool).await?)
    }

    async fn install(&self, inst: Installation, audit: NewAudit) -> R<Installation> {
        Ok(apps::install(&self.pool, inst, audit).await?)
    }

    async fn update_installation(
        &self,
        id: &str,
        pinned: Option<String>,
        audit: NewAudit,
    ) -> R<Installation> {
        Ok(apps::update(&self.pool, id, pinned, audit).await?)
    }

    async fn uninstall(&self, id: &str, audit: NewAudit) -> R<()> {
        Ok(apps::uninstall(&self.pool, id, audit).await?)
    }

    async fn get_installation(&self, app: &str, plugin: &str) -> R<Option<Installation>> {
        Ok(apps::get_installation(&self.pool, app, plugin).await?)
    }

    async fn installed_versions(&self, app: &str, plugin: &str) -> R<Option<Installed>> {
        Ok(apps::installed_versions(&self.pool, app, plugin).await?)
    }

    async fn list_installations(&self, app: &str) -> R<Vec<Installation>> {
        Ok(apps::list_installations(&self.pool, app).await?)
    }

    async fn insert_execution(&self, e: Execution) -> R<()> {
        Ok(executions::insert(&self.pool, e).await?)
    }

    async fn enqueue_execution(&self, e: Execution, call: QueuedCall) -> R<()> {
        executions::enqueue(&self.pool, e, call, None).await?;
        Ok(())
    }

    async fn insert_execution_at(&self, e: Execution, at: &Generation) -> R<bool> {
        Ok(executions::insert_at(&self.pool, &e, Some(at)).await?)
    }

    async fn enqueue_execution_at(&self, e: Execution, call: QueuedCall, at: &Generation) -> R<bool> {
        Ok(executions::enqueue(&self.pool, e, call, Some(at)).await?)
    }

    async fn claim_execution(&self, id: &str, node: &str, at: i64) -> R<bool> {
        Ok(executions::claim(&self.pool, id, node, at).await?)
    }

    async fn claim_next_execution(&self, node: &str, at: i64) -> R<Option<(Execution, QueuedCall)>> {
        Ok(executions::claim_next(&self.pool, self.backend, node, at).await?)
    }

    async fn update_execution(&self, e: Execution) -> R<bool> {
        Ok(executions::update(&self.pool, e).await?)
    }

    async fn get_execution(&self, id: &str) -> R<Option<Execution>> {
        Ok(executions::get(&self.pool, id).await?)
    }

    async fn list_executions(&self, filter: ExecutionFilter) -> R<Page<Execution>> {
        Ok(executions::list(&self.pool, filter).await?)
    }

    async fn interrupt_unfinished(&self, node: &str, reason: &str) -> R<u64> {
        Ok(executions::interrupt_unfinished(&self.pool, node, reason).await?)
    }

    async fn insert_session(&self, s: Session) -> R<()> {
        Ok(sessions::insert(&self.pool, s).await?)
    }

    async fn get_session(&self, id: &str) -> R<Option<Session>> {
        Ok(sessions::get(&self.pool, id).await?)
    }

    async fn list_sessions(&self, filter: SessionFilter) -> R<Page<Session>> {
        Ok(sessions::list(&self.pool, filter).await?)
    }

    async fn move_session(&self, id: &str, m: SessionMove) -> R<Option<Session>> {
        Ok(sessions::move_to(&self.pool, id, m).await?)
    }

    async fn touch_session(&self, id: &str, node: &str, at: i64, executions: u64) -> R<()> {
        Ok(sessions::touch(&self.pool, id, node, at, executions).await?)
    }

    async fn set_session_layer(&self, id: &str, node: &str, layer: Option<&str>) -> R<bool> {
        Ok(sessions::set_layer(&self.pool, id, node, layer).await?)
    }

    async fn delete_session(&self, id: &str) -> R<bool> {
        Ok(sessions::delete(&self.pool, id).await?)
    }

    async fn session_usage(&self, app: Option<&str>) -> R<SessionUsage> {
        Ok(sessions::usage(&self.pool, app).await?)
    }

    async fn lose_sessions(&self, node: &str, reason: &str, at: i64) -> R<u64> {
        Ok(sessions::lose(&self.pool, node, reason, at).await?)
    }

    async fn claim_session(&self, id: &str, from: &str, to: &str) -> R<bool> {
        Ok(sessions::claim(&self.pool, id, from, to).await?)
    }

    async fn claim_dead_session(&self, id: &str, from: &str, to: &str, beat_before: i64) -> R<bool> {
        Ok(sessions::claim_dead(&self.pool, id, from, to, beat_before).await?)
    }

    async fn counts(&self) -> R<Counts> {
        Ok(plugins::counts(&self.pool).await?)
    }

    async fn insert_key(&self, key: ApiKey, audit: NewAudit) -> R<()> {
        Ok(keys::insert(&self.pool, key, audit).await?)
    }

    async fn find_key_by_hash(&self, hash: &str) -> R<Option<ApiKey>> {
        Ok(keys::find_by_hash(&self.pool, hash).await?)
    }

    async fn revoke_key(&self, id: &str, audit: NewAudit) -> R<bool> {
        Ok(keys::revoke(&self.pool, id, audit, false).await? == Revoked::Done)
    }

    async fn revoke_key_keeping_an_admin(&self, id: &str, audit: NewAudit) -> R<Revoked> {
        Ok(keys::revoke(&self.pool, id, audit, true).await?)
    }

    async fn list_keys(&self) -> R<Vec<ApiKey>> {
        Ok(keys::list(&self.pool).await?)
    }

    async fn insert_signing_key(&self, key: warden_core::signing::SigningKey, audit: NewAudit) -> R<()> {
        Ok(signing::insert(&self.pool, key, audit).await?)
    }

    async fn get_signing_key(&self, id: &str) -> R<Option<warden_core::signing::SigningKey>> {
        Ok(signing::get(&self.pool, id).await?)
    }

    async fn list_signing_keys(&self, owner: Option<&str>) -> R<Vec<warden_core::signing::SigningKey>> {
        Ok(signing::list(&self.pool, owner).await?)
    }

    async fn revoke_signing_key(&self, id: &str, audit: NewAudit) -> R<Option<u64>> {
        Ok(signing::revoke(&self.pool, id, audit).await?)
    }

    async fn set_signature(
        &self,
        id: &str,
        revision: i64,
        signature: &str,
        signed_by: &str,
        audit: NewAudit,
    ) -> R<Version> {
        Ok(plugins::set_signature(&self.pool, id, revision, signature, signed_by, audit).await?)
    }

    async fn put_credential(&self, c: warden_core::credential::Credential, audit: NewAudit) -> R<bool> {
        Ok(credentials::put(&self.pool, c, audit).await?)
    }

    async fn get_credential(&self, app: &str, name: &str) -> R<Option<warden_core::credential::Credential>> {
        Ok(credentials::get(&self.pool, app, None, name).await?)
    }

    async fn list_credentials(&self, app: &str) -> R<Vec<warden_core::credential::Credential>> {
        Ok(credentials::list(&self.pool, app, None).await?)
    }

    async fn delete_credential(&self, app: &str, name: &str, audit: NewAudit) -> R<bool> {
        Ok(credentials::delete(&self.pool, app, None, name, audit).await?)
    }

    async fn get_installation_credential(
        &self,
        app: &str,
        plugin: &str,
        name: &str,
    ) -> R<Option<warden_core::credential::Credential>> {
        Ok(credentials::get(&self.pool, app, Some(plugin), name).await?)
    }

    async fn list_installation_credentials(
        &self,
        app: &str,
        plugin: &str,
    ) -> R<Vec<warden_core::credential::Credential>> {
        Ok(credentials::list(&self.pool, app, Some(plugin)).await?)
    }

    async fn delete_installation_credential(
        &self,
        app: &str,
        plugin: &str,
        name: &str,
        audit: NewAudit,
    ) -> R<bool> {
        Ok(credentials::delete(&self.pool, app, Some(plugin), name, audit).await?)
    }

    async fn insert_template(&self, t: Template, audit: NewAudit) -> R<Template> {
        Ok(templates::insert(&self.pool, t, audit).await?)
    }

    async fn get_template(&self, id: &str) -> R<Option<Template>> {
        Ok(templates::get(&self.pool, id).await?)
    }

    async fn list_templates(&self, filter: TemplateFilter) -> R<Page<Template>> {
        Ok(templates::list(&self.pool, filter).await?)
    }

    async fn update_template(&self, t: Template, keep_layer: bool, audit: NewAudit) -> R<Template> {
        Ok(templates::update(&self.pool, t, keep_layer, audit).await?)
    }

    async fn delete_template(&self, id: &str, audit: NewAudit) -> R<()> {
        Ok(templates::delete(&self.pool, id, audit).await?)
    }

    async fn set_template_layer(
        &self,
        id: &str,
        revision: i64,
        layer: Option<&str>,
        audit: NewAudit,
    ) -> R<Template> {
        Ok(templates::set_layer(&self.pool, id, revision, layer, audit).await?)
    }

    async fn insert_layer(&self, layer: Layer) -> R<(Layer, bool)> {
        Ok(layers::insert(&self.pool, layer).await?)
    }

    async fn get_layer(&self, id: &str) -> R<Option<Layer>> {
        Ok(layers::get(&self.pool, id).await?)
    }

    async fn update_layer(&self, from: LayerStatus, layer: Layer) -> R<Layer> {
        Ok(layers::update(&self.pool, from, layer).await?)
    }

    async fn touch_layer(&self, id: &str, at: i64) -> R<bool> {
        Ok(layers::touch(&self.pool, id, at).await?)
    }

    async fn list_layers(&self, filter: LayerFilter) -> R<Page<Layer>> {
        Ok(layers::list(&self.pool, filter).await?)
    }

    async fn delete_layer(&self, id: &str) -> R<bool> {
        Ok(layers::delete(&self.pool, id).await?)
    }

    async fn insert_snapshot(&self, s: Snapshot) -> R<()> {
        Ok(snapshots::insert(&self.pool, s).await?)
    }

    async fn update_snapshot(&self, from: SnapshotStatus, s: Snapshot) -> R<Snapshot> {
        Ok(snapshots::update(&self.pool, from, s).await?)
    }

    async fn get_snapshot(&self, id: &str) -> R<Option<Snapshot>> {
        Ok(snapshots::get(&self.pool, id).await?)
    }

    async fn list_snapshots(&self, filter: SnapshotFilter) -> R<Page<Snapshot>> {
        Ok(snapshots::list(&self.pool, filter).await?)
    }

    async fn latest_snapshot(&self, session: &str) -> R<Option<Snapshot>> {
        Ok(snapshots::latest(&self.pool, session).await?)
    }

    async fn delete_snapshot(&self, id: &str) -> R<bool> {
        Ok(snapshots::delete(&self.pool, id).await?)
    }

    async fn heartbeat(&self, node: Node) -> R<()> {
        Ok(snapshots::heartbeat(&self.pool, node).await?)
    }

    async fn get_node(&self, id: &str) -> R<Option<Node>> {
        Ok(snapshots::node(&self.pool, id).await?)
    }

    async fn list_nodes(&self) -> R<Vec<Node>> {
        Ok(snapshots::nodes(&self.pool).await?)
    }
}
