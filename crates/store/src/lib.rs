//! Warden's storage: [`SqlStore`] keeps the records in SQLite (the embedded
//! default: one file in WAL mode) or PostgreSQL, through one body of SQL run
//! by `sqlx`'s `Any` driver; [`ObjectBlobs`] keeps package blobs in an
//! `object_store` (a local folder by default).
//!
//! Every state change is one transaction holding a compare-and-set and its
//! audit event. Each write transaction starts with its write, so SQLite takes
//! the write lock at once (and waits for it under `busy_timeout`) instead of
//! failing when a read lock cannot be upgraded.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt as _;
use object_store::ObjectStore;
use serde_json::Value;
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, AssertSqlSafe, Row};
use warden_core::store::{
    AuditFilter, ExecutionFilter, NewAudit, NewVersion, PackageFields, Page, PluginFilter, Transition,
};
use warden_core::{
    ApiKey, App, AuditEvent, Blobs, Counts, ErrorKind, Execution, ExecutionMode, ExecutionResult,
    ExecutionSource, ExecutionStatus, Installation, Plugin, Role, Store, StoreError, Version, VersionStatus,
    model::new_id, model::now_ms,
};

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

fn backend_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::Conflict(db.message().to_owned());
        }
        if db.is_foreign_key_violation() {
            return StoreError::InUse(db.message().to_owned());
        }
    }
    StoreError::Backend(e.to_string())
}

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

/// A bind value for queries built at run time.
enum Arg {
    Text(String),
    Int(i64),
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Any, AnyArguments>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, Any, AnyArguments> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s),
            Arg::Int(i) => q.bind(i),
        };
    }
    q
}

/// `LIKE` pattern matching `s` anywhere, with `%`, `_` and `\` escaped.
fn contains_pattern(s: &str) -> String {
    let mut p = String::from("%");
    // ASCII only, as SQLite's LOWER(): the same matches on both backends.
    for c in s.to_ascii_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Collects `WHERE` clauses and their arguments with `$N` placeholders.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    fn push(&mut self, clause: &str, arg: Arg) {
        self.args.push(arg);
        self.clauses
            .push(clause.replace("$?", &format!("${}", self.args.len())));
    }

    fn text(&mut self, clause: &str, v: &Option<String>) {
        if let Some(v) = v {
            self.push(clause, Arg::Text(v.clone()));
        }
    }

    fn int(&mut self, clause: &str, v: Option<i64>) {
        if let Some(v) = v {
            self.push(clause, Arg::Int(v));
        }
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// `LIMIT $N` for one more than `limit` (to know whether a page follows).
    fn limit(&mut self, limit: u32) -> String {
        self.args.push(Arg::Int(i64::from(page_size(limit)) + 1));
        format!(" LIMIT ${}", self.args.len())
    }
}

fn page_size(limit: u32) -> u32 {
    match limit {
        0 => 50,
        n => n.min(500),
    }
}

fn page<T>(mut items: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Page<T> {
    let size = page_size(limit) as usize;
    let next_cursor = if items.len() > size {
        items.truncate(size);
        items.last().map(cursor_of)
    } else {
        None
    };
    Page { items, next_cursor }
}

const VERSION_COLUMNS: &str = "id, plugin, version, status, manifest, package_sha256, package_size, files, report, \
     status_reason, uploaded_by, created_at, updated_at, revision";
const EXECUTION_COLUMNS: &str = "id, app, plugin, version, status, mode, node, error_kind, result, created_at, started_at, finished_at, duration_ms";
const AUDIT_COLUMNS: &str = "id, at, actor, action, plugin, version, from_status, to_status, reason, detail";

fn get<'r, T: sqlx::Decode<'r, Any> + sqlx::Type<Any>>(row: &'r AnyRow, col: &str) -> R<T> {
    row.try_get(col)
        .map_err(|e| StoreError::Backend(format!("column {col}: {e}")))
}

fn version_from_row(row: &AnyRow) -> R<Version> {
    let status: String = get(row, "status")?;
    Ok(Version {
        id: get(row, "id")?,
        plugin: get(row, "plugin")?,
        version: get(row, "version")?,
        status: VersionStatus::parse(&status)
            .ok_or_else(|| StoreError::Backend(format!("unknown version status `{status}`")))?,
        manifest: parse_json(&get::<String>(row, "manifest")?),
        package_sha256: get(row, "package_sha256")?,
        package_size: get(row, "package_size")?,
        files: parse_json(&get::<String>(row, "files")?),
        report: get::<Option<String>>(row, "report")?.map(|s| parse_json(&s)),
        status_reason: get(row, "status_reason")?,
        uploaded_by: get(row, "uploaded_by")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        revision: get(row, "revision")?,
    })
}

fn plugin_from_row(row: &AnyRow) -> R<Plugin> {
    Ok(Plugin {
        code: get(row, "code")?,
        owner: get(row, "owner")?,
        name: get(row, "name")?,
        description: get(row, "description")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn app_from_row(row: &AnyRow) -> R<App> {
    Ok(App {
        id: get(row, "id")?,
        name: get(row, "name")?,
        created_at: get(row, "created_at")?,
    })
}

fn installation_from_row(row: &AnyRow) -> R<Installation> {
    Ok(Installation {
        id: get(row, "id")?,
        app: get(row, "app")?,
        plugin: get(row, "plugin")?,
        pinned_version: get(row, "pinned_version")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn execution_from_row(row: &AnyRow) -> R<Execution> {
    let id: String = get(row, "id")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        record: format!("execution {id}"),
        reason,
    };
    let status: String = get(row, "status")?;
    let mode: String = get(row, "mode")?;
    let error_kind: Option<String> = get(row, "error_kind")?;
    let result: Option<String> = get(row, "result")?;
    Ok(Execution {
        app: get(row, "app")?,
        source: ExecutionSource::Plugin {
            plugin: get(row, "plugin")?,
            version: get(row, "version")?,
        },
        status: ExecutionStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("unknown status `{status}`")))?,
        mode: ExecutionMode::parse(&mode).ok_or_else(|| corrupt(format!("unknown mode `{mode}`")))?,
        node: get(row, "node")?,
        error_kind: error_kind
            .map(|k| ErrorKind::parse(&k).ok_or_else(|| corrupt(format!("unknown error kind `{k}`"))))
            .transpose()?,
        result: result
            .map(|r| serde_json::from_str::<ExecutionResult>(&r).map_err(|e| corrupt(format!("result: {e}"))))
            .transpose()?,
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        duration_ms: get(row, "duration_ms")?,
        id,
    })
}

fn result_text(r: &ExecutionResult) -> R<String> {
    serde_json::to_string(r).map_err(|e| StoreError::Backend(format!("cannot write a result: {e}")))
}

fn audit_from_row(row: &AnyRow) -> R<AuditEvent> {
    Ok(AuditEvent {
        id: get(row, "id")?,
        at: get(row, "at")?,
        actor: get(row, "actor")?,
        action: get(row, "action")?,
        plugin: get(row, "plugin")?,
        version: get(row, "version")?,
        from_status: get(row, "from_status")?,
        to_status: get(row, "to_status")?,
        reason: get(row, "reason")?,
        detail: parse_json(&get::<String>(row, "detail")?),
    })
}

fn key_from_row(row: &AnyRow) -> R<ApiKey> {
    let role: String = get(row, "role")?;
    Ok(ApiKey {
        id: get(row, "id")?,
        name: get(row, "name")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Backend(format!("unknown role `{role}`")))?,
        app: get(row, "app")?,
        hash: get(row, "hash")?,
        created_at: get(row, "created_at")?,
        revoked_at: get(row, "revoked_at")?,
    })
}

async fn insert_audit<'c, E: sqlx::Executor<'c, Database = Any>>(ex: E, a: &NewAudit) -> R<AuditEvent> {
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
    sqlx::query(
        "INSERT INTO audit_events (id, at, actor, action, plugin, version, from_status, to_status, reason, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&ev.id)
    .bind(ev.at)
    .bind(&ev.actor)
    .bind(&ev.action)
    .bind(&ev.plugin)
    .bind(&ev.version)
    .bind(&ev.from_status)
    .bind(&ev.to_status)
    .bind(&ev.reason)
    .bind(json_text(&ev.detail))
    .execute(ex)
    .await
    .map_err(backend_err)?;
    Ok(ev)
}

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
                .map_err(backend_err)?;
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

    async fn version_by_id(&self, ex: &mut sqlx::AnyConnection, id: &str) -> R<Version> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM plugin_versions WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *ex)
            .await
            .map_err(backend_err)?
            .ok_or_else(|| StoreError::NotFound(format!("version {id}")))?;
        version_from_row(&row)
    }

    async fn status_of(&self, ex: &mut sqlx::AnyConnection, id: &str) -> R<StoreError> {
        let row = sqlx::query("SELECT status FROM plugin_versions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *ex)
            .await
            .map_err(backend_err)?;
        Ok(match row {
            None => StoreError::NotFound(format!("version {id}")),
            Some(row) => {
                let s: String = get(&row, "status")?;
                StoreError::Stale {
                    current: VersionStatus::parse(&s).unwrap_or(VersionStatus::Failed),
                }
            }
        })
    }
}

impl Store for SqlStore {
    async fn ping(&self) -> R<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok(())
    }

    async fn create_version(&self, new: NewVersion, audit: NewAudit) -> R<Version> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        // The first upload creates the plugin and makes its uploader the
        // owner; later ones (by the owner: `new.owner` is the plugin's owner
        // when it exists) refresh the name and description only.
        let claimed = sqlx::query(
            "INSERT INTO plugins (code, owner, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (code) DO UPDATE SET name = excluded.name, description = excluded.description, updated_at = excluded.updated_at \
             WHERE plugins.owner = excluded.owner",
        )
        .bind(&new.plugin)
        .bind(&new.owner)
        .bind(&new.name)
        .bind(&new.description)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend_err)?;
        if claimed.rows_affected() == 0 {
            // Two developers raced to create the same plugin: the first owns it.
            return Err(StoreError::Conflict(format!(
                "plugin {} belongs to another developer",
                new.plugin
            )));
        }
        let v = Version {
            id: new_id("ver"),
            plugin: new.plugin.clone(),
            version: new.version.clone(),
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
        };
        sqlx::query(
            "INSERT INTO plugin_versions (id, plugin, version, status, manifest, package_sha256, package_size, files, \
             report, status_reason, uploaded_by, created_at, updated_at, revision) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9, $10, $10, 1)",
        )
        .bind(&v.id)
        .bind(&v.plugin)
        .bind(&v.version)
        .bind(v.status.as_str())
        .bind(json_text(&v.manifest))
        .bind(&v.package_sha256)
        .bind(v.package_size)
        .bind(json_text(&v.files))
        .bind(&v.uploaded_by)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| match backend_err(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("{} {} exists already", new.plugin, new.version)),
            other => other,
        })?;
        insert_audit(&mut *tx, &audit).await?;
        tx.commit().await.map_err(backend_err)?;
        Ok(v)
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
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        let done = sqlx::query(
            "UPDATE plugin_versions SET status = $1, manifest = $2, package_sha256 = $3, package_size = $4, files = $5, \
             report = $6, status_reason = NULL, uploaded_by = $7, updated_at = $8, revision = revision + 1 \
             WHERE id = $9 AND revision = $10",
        )
        .bind(to.as_str())
        .bind(json_text(&package.manifest))
        .bind(&package.sha256)
        .bind(package.size)
        .bind(json_text(&package.files))
        .bind(report.as_ref().map(json_text))
        .bind(&package.uploaded_by)
        .bind(now_ms())
        .bind(id)
        .bind(revision)
        .execute(&mut *tx)
        .await
        .map_err(backend_err)?;
        if done.rows_affected() == 0 {
            let e = self.status_of(&mut tx, id).await?;
            return Err(e);
        }
        insert_audit(&mut *tx, &audit).await?;
        let v = self.version_by_id(&mut tx, id).await?;
        tx.commit().await.map_err(backend_err)?;
        Ok(v)
    }

    async fn set_status(&self, id: &str, t: Transition, audit: NewAudit) -> R<Version> {
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        let done = sqlx::query(
            "UPDATE plugin_versions SET status = $1, status_reason = $2, report = COALESCE($3, report), updated_at = $4, \
             revision = revision + 1 WHERE id = $5 AND status = $6 AND revision = $7",
        )
        .bind(t.to.as_str())
        .bind(&t.reason)
        .bind(t.report.as_ref().map(json_text))
        .bind(now_ms())
        .bind(id)
        .bind(t.from.as_str())
        .bind(t.revision)
        .execute(&mut *tx)
        .await
        .map_err(backend_err)?;
        if done.rows_affected() == 0 {
            let e = self.status_of(&mut tx, id).await?;
            return Err(e);
        }
        insert_audit(&mut *tx, &audit).await?;
        let v = self.version_by_id(&mut tx, id).await?;
        tx.commit().await.map_err(backend_err)?;
        Ok(v)
    }

    async fn delete_version(&self, id: &str, audit: NewAudit) -> R<()> {
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        // Pinned installations hold the version by foreign key; an active
        // version is also in use while installations follow the latest.
        let done = sqlx::query(
            "DELETE FROM plugin_versions WHERE id = $1 AND NOT (status = 'active' AND EXISTS \
             (SELECT 1 FROM installations i WHERE i.plugin = plugin_versions.plugin AND i.pinned_version IS NULL))",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| match backend_err(e) {
            StoreError::InUse(_) => StoreError::InUse("an installation pins it; upgrade or uninstall it first".into()),
            other => other,
        })?;
        if done.rows_affected() == 0 {
            return Err(match self.status_of(&mut tx, id).await? {
                StoreError::Stale { .. } => StoreError::InUse(
                    "it is active and installations follow the latest version; deactivate it first".into(),
                ),
                other => other,
            });
        }
        insert_audit(&mut *tx, &audit).await?;
        tx.commit().await.map_err(backend_err)?;
        Ok(())
    }

    async fn get_plugin(&self, code: &str) -> R<Option<Plugin>> {
        sqlx::query(
            "SELECT code, owner, name, description, created_at, updated_at FROM plugins WHERE code = $1",
        )
        .bind(code)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_err)?
        .as_ref()
        .map(plugin_from_row)
        .transpose()
    }

    async fn list_plugins(&self, f: PluginFilter) -> R<Page<Plugin>> {
        let mut w = Where::default();
        if let Some(s) = &f.search {
            w.push(
                "(LOWER(code) LIKE $? ESCAPE '\\' OR LOWER(name) LIKE $? ESCAPE '\\' OR LOWER(description) LIKE $? ESCAPE '\\')",
                Arg::Text(contains_pattern(s)),
            );
        }
        w.text("owner = $?", &f.owner);
        w.text("code > $?", &f.cursor);
        let limit = w.limit(f.limit);
        let sql = format!(
            "SELECT code, owner, name, description, created_at, updated_at FROM plugins{} ORDER BY code{limit}",
            w.sql()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), w.args)
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        let items = rows.iter().map(plugin_from_row).collect::<R<Vec<_>>>()?;
        Ok(page(items, f.limit, |p| p.code.clone()))
    }

    async fn get_version(&self, plugin: &str, version: &str) -> R<Option<Version>> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM plugin_versions WHERE plugin = $1 AND version = $2");
        sqlx::query(AssertSqlSafe(sql))
            .bind(plugin)
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?
            .as_ref()
            .map(version_from_row)
            .transpose()
    }

    async fn list_versions(&self, plugin: &str) -> R<Vec<Version>> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM plugin_versions WHERE plugin = $1 ORDER BY created_at, id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(plugin)
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        rows.iter().map(version_from_row).collect()
    }

    async fn append_audit(&self, audit: NewAudit) -> R<AuditEvent> {
        insert_audit(&self.pool, &audit).await
    }

    async fn list_audit(&self, f: AuditFilter) -> R<Page<AuditEvent>> {
        let mut w = Where::default();
        w.text("plugin = $?", &f.plugin);
        w.text("version = $?", &f.version);
        w.text("actor = $?", &f.actor);
        w.text("action = $?", &f.action);
        w.int("at >= $?", f.since);
        w.int("at < $?", f.until);
        w.text("id < $?", &f.cursor);
        let limit = w.limit(f.limit);
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events{} ORDER BY id DESC{limit}",
            w.sql()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), w.args)
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        let items = rows.iter().map(audit_from_row).collect::<R<Vec<_>>>()?;
        Ok(page(items, f.limit, |a| a.id.clone()))
    }

    async fn create_app(&self, app: App, audit: NewAudit) -> R<App> {
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        sqlx::query("INSERT INTO apps (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&app.id)
            .bind(&app.name)
            .bind(app.created_at)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
        insert_audit(&mut *tx, &audit).await?;
        tx.commit().await.map_err(backend_err)?;
        Ok(app)
    }

    async fn get_app(&self, id: &str) -> R<Option<App>> {
        sqlx::query("SELECT id, name, created_at FROM apps WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?
            .as_ref()
            .map(app_from_row)
            .transpose()
    }

    async fn list_apps(&self) -> R<Vec<App>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM apps ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        rows.iter().map(app_from_row).collect()
    }

    async fn install(&self, inst: Installation, audit: NewAudit) -> R<Installation> {
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        sqlx::query(
            "INSERT INTO installations (id, app, plugin, pinned_version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&inst.id)
        .bind(&inst.app)
        .bind(&inst.plugin)
        .bind(&inst.pinned_version)
        .bind(inst.created_at)
        .bind(inst.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match backend_err(e) {
            StoreError::InUse(_) => StoreError::NotFound(format!("app {} or {} {:?}", inst.app, inst.plugin, inst.pinned_version)),
            other => other,
        })?;
        insert_audit(&mut *tx, &audit).await?;
        tx.commit().await.map_err(backend_err)?;
        Ok(inst)
    }

    async fn update_installation(
        &self,
        id: &str,
        pinned: Option<String>,
        audit: NewAudit,
    ) -> R<Installation> {
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        let done = sqlx::query("UPDATE installations SET pinned_version = $1, updated_at = $2 WHERE id = $3")
            .bind(&pinned)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| match backend_err(e) {
                StoreError::InUse(_) => StoreError::NotFound(format!("version {pinned:?}")),
                other => other,
            })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("installation {id}")));
        }
        insert_audit(&mut *tx, &audit).await?;
        let row = sqlx::query(
            "SELECT id, app, plugin, pinned_version, created_at, updated_at FROM installations WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend_err)?;
        let inst = installation_from_row(&row)?;
        tx.commit().await.map_err(backend_err)?;
        Ok(inst)
    }

    async fn uninstall(&self, id: &str, audit: NewAudit) -> R<()> {
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        let done = sqlx::query("DELETE FROM installations WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("installation {id}")));
        }
        insert_audit(&mut *tx, &audit).await?;
        tx.commit().await.map_err(backend_err)?;
        Ok(())
    }

    async fn get_installation(&self, app: &str, plugin: &str) -> R<Option<Installation>> {
        sqlx::query(
            "SELECT id, app, plugin, pinned_version, created_at, updated_at FROM installations WHERE app = $1 AND plugin = $2",
        )
        .bind(app)
        .bind(plugin)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_err)?
        .as_ref()
        .map(installation_from_row)
        .transpose()
    }

    async fn installed_versions(&self, app: &str, plugin: &str) -> R<Option<(Installation, Vec<Version>)>> {
        let rows = sqlx::query(
            "SELECT i.id AS inst_id, i.app AS inst_app, i.pinned_version AS inst_pinned, \
             i.created_at AS inst_created, i.updated_at AS inst_updated, \
             v.id, v.plugin, v.version, v.status, v.manifest, v.package_sha256, v.package_size, v.files, \
             NULL AS report, v.status_reason, v.uploaded_by, v.created_at, v.updated_at, v.revision \
             FROM installations i LEFT JOIN plugin_versions v ON v.plugin = i.plugin AND \
             ((i.pinned_version IS NOT NULL AND v.version = i.pinned_version) OR \
              (i.pinned_version IS NULL AND v.status = 'active')) \
             WHERE i.app = $1 AND i.plugin = $2",
        )
        .bind(app)
        .bind(plugin)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_err)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let inst = Installation {
            id: get(first, "inst_id")?,
            app: get(first, "inst_app")?,
            plugin: plugin.to_owned(),
            pinned_version: get(first, "inst_pinned")?,
            created_at: get(first, "inst_created")?,
            updated_at: get(first, "inst_updated")?,
        };
        let mut versions = Vec::new();
        for row in &rows {
            if get::<Option<String>>(row, "id")?.is_some() {
                versions.push(version_from_row(row)?);
            }
        }
        Ok(Some((inst, versions)))
    }

    async fn list_installations(&self, app: &str) -> R<Vec<Installation>> {
        let rows = sqlx::query(
            "SELECT id, app, plugin, pinned_version, created_at, updated_at FROM installations WHERE app = $1 ORDER BY plugin",
        )
        .bind(app)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_err)?;
        rows.iter().map(installation_from_row).collect()
    }

    async fn insert_execution(&self, e: Execution) -> R<()> {
        let sql = format!(
            "INSERT INTO executions ({EXECUTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        let ExecutionSource::Plugin { plugin, version } = &e.source;
        sqlx::query(AssertSqlSafe(sql))
            .bind(&e.id)
            .bind(&e.app)
            .bind(plugin)
            .bind(version)
            .bind(e.status.as_str())
            .bind(e.mode.as_str())
            .bind(&e.node)
            .bind(e.error_kind.map(ErrorKind::as_str))
            .bind(e.result.as_ref().map(result_text).transpose()?)
            .bind(e.created_at)
            .bind(e.started_at)
            .bind(e.finished_at)
            .bind(e.duration_ms)
            .execute(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok(())
    }

    async fn update_execution(&self, e: Execution) -> R<bool> {
        let ExecutionSource::Plugin { version, .. } = &e.source;
        let done = sqlx::query(
            "UPDATE executions SET status = $1, error_kind = $2, result = $3, started_at = $4, finished_at = $5, \
             duration_ms = $6, version = $7 WHERE id = $8 AND status IN ('queued', 'running')",
        )
        .bind(e.status.as_str())
        .bind(e.error_kind.map(ErrorKind::as_str))
        .bind(e.result.as_ref().map(result_text).transpose()?)
        .bind(e.started_at)
        .bind(e.finished_at)
        .bind(e.duration_ms)
        .bind(version)
        .bind(&e.id)
        .execute(&self.pool)
        .await
        .map_err(backend_err)?;
        if done.rows_affected() == 0 {
            return match self.get_execution(&e.id).await? {
                Some(_) => Ok(false),
                None => Err(StoreError::NotFound(format!("execution {}", e.id))),
            };
        }
        Ok(true)
    }

    async fn get_execution(&self, id: &str) -> R<Option<Execution>> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?
            .as_ref()
            .map(execution_from_row)
            .transpose()
    }

    async fn list_executions(&self, f: ExecutionFilter) -> R<Page<Execution>> {
        let mut w = Where::default();
        w.text("app = $?", &f.app);
        w.text("plugin = $?", &f.plugin);
        w.text("version = $?", &f.version);
        w.text("status = $?", &f.status.map(|s| s.as_str().to_owned()));
        w.int("created_at >= $?", f.since);
        w.int("created_at < $?", f.until);
        w.text("id < $?", &f.cursor);
        let limit = w.limit(f.limit);
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions{} ORDER BY id DESC{limit}",
            w.sql()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), w.args)
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        let items = rows.iter().map(execution_from_row).collect::<R<Vec<_>>>()?;
        Ok(page(items, f.limit, |e| e.id.clone()))
    }

    async fn interrupt_unfinished(&self, node: &str, reason: &str) -> R<u64> {
        let result = ExecutionResult::platform_error("Interrupted", reason, None);
        let done = sqlx::query(
            "UPDATE executions SET status = 'interrupted', error_kind = 'interrupted', result = $1, finished_at = $2 \
             WHERE node = $3 AND status IN ('queued', 'running')",
        )
        .bind(result_text(&result)?)
        .bind(now_ms())
        .bind(node)
        .execute(&self.pool)
        .await
        .map_err(backend_err)?;
        Ok(done.rows_affected())
    }

    async fn counts(&self) -> R<Counts> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM plugin_versions GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        let mut versions = Vec::new();
        for row in &rows {
            let status: String = get(row, "status")?;
            let n: i64 = get(row, "n")?;
            if let Some(s) = VersionStatus::parse(&status) {
                versions.push((s, n.max(0) as u64));
            }
        }
        let row =
            sqlx::query("SELECT COUNT(DISTINCT plugin) AS n FROM plugin_versions WHERE status = 'active'")
                .fetch_one(&self.pool)
                .await
                .map_err(backend_err)?;
        let n: i64 = get(&row, "n")?;
        Ok(Counts {
            versions,
            active_plugins: n.max(0) as u64,
        })
    }

    async fn insert_key(&self, key: ApiKey, audit: NewAudit) -> R<()> {
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        sqlx::query("INSERT INTO api_keys (id, name, role, app, hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)")
            .bind(&key.id)
            .bind(&key.name)
            .bind(key.role.as_str())
            .bind(&key.app)
            .bind(&key.hash)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
        insert_audit(&mut *tx, &audit).await?;
        tx.commit().await.map_err(backend_err)?;
        Ok(())
    }

    async fn find_key_by_hash(&self, hash: &str) -> R<Option<ApiKey>> {
        sqlx::query(
            "SELECT id, name, role, app, hash, created_at, revoked_at FROM api_keys WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_err)?
        .as_ref()
        .map(key_from_row)
        .transpose()
    }

    async fn revoke_key(&self, id: &str, audit: NewAudit) -> R<bool> {
        let mut tx = self.pool.begin().await.map_err(backend_err)?;
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut *tx, &audit).await?;
        tx.commit().await.map_err(backend_err)?;
        Ok(true)
    }

    async fn list_keys(&self) -> R<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, name, role, app, '' AS hash, created_at, revoked_at FROM api_keys ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend_err)?;
        rows.iter().map(key_from_row).collect()
    }
}

/// Package blobs in an `object_store` (a local folder by default).
#[derive(Clone)]
pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    /// The folder, for a local store (its stamps include the change time,
    /// which no one can set back).
    local: Option<std::path::PathBuf>,
}

impl ObjectBlobs {
    /// Blobs in the folder `dir` (created when missing).
    pub fn local(dir: &Path) -> R<ObjectBlobs> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| StoreError::Backend(format!("blob folder {}: {e}", dir.display())))?;
        Ok(ObjectBlobs {
            store: Arc::new(fs),
            local: Some(dir.to_owned()),
        })
    }

    /// Blobs in any object store (S3, memory, …).
    pub fn new(store: Arc<dyn ObjectStore>) -> ObjectBlobs {
        ObjectBlobs { store, local: None }
    }
}

fn blob_path(key: &str) -> R<object_store::path::Path> {
    object_store::path::Path::parse(key).map_err(|e| StoreError::Backend(format!("blob key `{key}`: {e}")))
}

impl Blobs for ObjectBlobs {
    async fn put(&self, key: &str, data: Vec<u8>) -> R<()> {
        let path = blob_path(key)?;
        self.store
            .put_opts(&path, bytes::Bytes::from(data).into(), Default::default())
            .await
            .map_err(|e| StoreError::Backend(format!("blob {key}: {e}")))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> R<Option<Vec<u8>>> {
        let path = blob_path(key)?;
        match self.store.get_opts(&path, Default::default()).await {
            Ok(r) => {
                let chunks: Vec<bytes::Bytes> = r
                    .into_stream()
                    .try_collect()
                    .await
                    .map_err(|e| StoreError::Backend(format!("blob {key}: {e}")))?;
                Ok(Some(chunks.concat()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StoreError::Backend(format!("blob {key}: {e}"))),
        }
    }

    async fn stamp(&self, key: &str) -> R<Option<String>> {
        let path = blob_path(key)?;
        if let Some(root) = &self.local {
            use std::os::unix::fs::MetadataExt;
            // One stat: cheaper inline than a hop to the blocking pool.
            let file = root.join(path.as_ref());
            return match std::fs::symlink_metadata(file) {
                Ok(m) => Ok(Some(format!(
                    "{}-{}-{}-{}.{}-{}.{}",
                    m.dev(),
                    m.ino(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec()
                ))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StoreError::Backend(format!("blob {key}: {e}"))),
            };
        }
        let head = object_store::GetOptions {
            head: true,
            ..Default::default()
        };
        match self.store.get_opts(&path, head).await.map(|r| r.meta) {
            Ok(meta) => {
                Ok(Some(meta.e_tag.or(meta.version).unwrap_or_else(|| {
                    format!("{}-{}", meta.size, meta.last_modified)
                })))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StoreError::Backend(format!("blob {key}: {e}"))),
        }
    }
}
