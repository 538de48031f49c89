//! The registry over both real backends: every test runs once against a
//! SQLite file and once against a PostgreSQL database (a fresh database per
//! test on the server named by `WARDEN_TEST_POSTGRES_URL`; `scripts/test`
//! starts one). With `WARDEN_REQUIRE_POSTGRES=1` a missing server fails the
//! PostgreSQL half instead of skipping it.

use std::sync::Arc;

use serde_json::json;
use warden_core::store::{
    AuditFilter, ExecutionFilter, LayerFilter, NewAudit, PluginFilter, SessionMove, SnapshotFilter,
    TemplateFilter,
};
use warden_core::{
    Actor, ApiKey, Ecosystem, ErrorKind, Execution, ExecutionMode, ExecutionSource, ExecutionStatus, Layer,
    LayerError, LayerStatus, LockedPackage, Node, PackageReq, QueuedCall, Registry, RegistryError, Revoked,
    Role, RunLanguage, RunMode, Session, SessionFilter, SessionLanguage, SessionResources, SessionStatus,
    SessionUsage, Snapshot, SnapshotStatus, SnapshotTrigger, Store, StoreError, TemplateError,
    TemplatePolicy, TemplateRuntime, Templates, VersionStatus,
    model::{new_id, now_ms},
};
use warden_package::Policy;
use warden_package::build::ZipBuilder;
use warden_store::{ObjectBlobs, SqlStore};

struct Ctx {
    url: String,
    store: Arc<SqlStore>,
    registry: Arc<Registry<SqlStore, ObjectBlobs>>,
    data: tempfile::TempDir,
}

fn admin() -> Actor {
    Actor {
        name: "root".into(),
        role: Role::Admin,
        app: None,
    }
}

fn dev(name: &str) -> Actor {
    Actor {
        name: name.into(),
        role: Role::Developer,
        app: None,
    }
}

fn manifest(code: &str, version: &str) -> String {
    json!({
        "code": code, "name": "Say hello", "version": version,
        "type": "sandbox", "runtime": "python3", "entrypoint": "main.py",
        "description": "Greets someone.", "author": "Vendor",
        "input_schema": {"type": "object"}, "output_schema": {"type": "object"}
    })
    .to_string()
}

fn package(code: &str, version: &str, body: &str) -> Vec<u8> {
    ZipBuilder::new()
        .file("manifest.json", manifest(code, version).as_bytes())
        .file("main.py", body.as_bytes())
        .finish()
}

const HELLO: &str =
    "def handler(event):\n    return {\"greeting\": \"hello \" + event.get(\"name\", \"world\")}\n";

async fn sqlite() -> Ctx {
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", data.path().join("db/warden.db").display());
    ctx(&url, data).await
}

/// A fresh database on the test server, or `None` to skip.
async fn postgres() -> Option<Ctx> {
    let Ok(base) = std::env::var("WARDEN_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("WARDEN_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "WARDEN_REQUIRE_POSTGRES=1 but WARDEN_TEST_POSTGRES_URL is not set"
        );
        eprintln!(
            "skipped: set WARDEN_TEST_POSTGRES_URL (scripts/postgres prints one) to run against PostgreSQL"
        );
        return None;
    };
    sqlx::any::install_default_drivers();
    let name = new_id("t").replace('_', "");
    let admin = sqlx::AnyPool::connect(&base)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let url = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => format!("{}/{name}", &base[..i]),
        _ => format!("{base}/{name}"),
    };
    Some(ctx(&url, tempfile::tempdir().unwrap()).await)
}

async fn ctx(url: &str, data: tempfile::TempDir) -> Ctx {
    let store = Arc::new(SqlStore::connect(url).await.unwrap());
    let blobs = Arc::new(ObjectBlobs::local(&data.path().join("blobs")).unwrap());
    let registry = Arc::new(Registry::new(
        store.clone(),
        blobs,
        Policy::default(),
        data.path().join("code"),
    ));
    Ctx {
        url: url.to_owned(),
        store,
        registry,
        data,
    }
}

/// Run a test body against both backends.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { Box::pin(super::$name(super::sqlite().await)).await }
            )*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(ctx) = super::postgres().await { Box::pin(super::$name(ctx)).await }
            })*
        }
    };
}

both!(
    the_review_lifecycle_walks_and_is_audited,
    refused_transitions_name_the_state_and_change_nothing,
    a_rejected_version_comes_back_with_a_fixed_package,
    a_new_version_is_a_draft_while_the_old_one_stays_active,
    only_owners_manage_their_plugins,
    a_tampered_package_fails_the_version,
    concurrent_approvals_leave_one_winner,
    an_upload_racing_a_submit_stays_consistent,
    installations_pin_or_follow_and_block_deletion,
    the_audit_trail_is_append_only,
    executions_are_recorded_filtered_and_interrupted,
    a_corrupt_execution_is_an_error_naming_it,
    queued_async_executions_outlive_their_node_and_start_exactly_once,
    corrupt_versions_and_keys_are_errors_naming_them,
    api_keys_are_found_by_hash_and_revoked,
    the_last_admin_key_survives_racing_revocations,
    plugins_are_searched_and_paged,
    templates_are_created_listed_replaced_and_deleted_with_their_audit,
    racing_replacements_of_a_template_leave_one_winner,
    builtins_appear_once_across_nodes_and_stay,
    layers_are_inserted_once_and_move_through_their_build,
    a_template_points_only_at_a_ready_layer_built_for_its_revision,
    layers_are_listed_touched_and_collected,
    corrupt_templates_and_layers_are_errors_naming_them,
    sessions_move_only_from_where_they_are_and_are_lost_with_their_node,
    a_final_session_execution_moves_its_sessions_activity_in_the_same_statement,
    sessions_are_listed_filtered_counted_and_deleted_once_ended,
    session_executions_are_ordinary_records,
    a_corrupt_session_is_an_error_naming_it,
    snapshots_move_once_and_are_listed_newest_first,
    nodes_beat_and_never_go_back_in_time,
    a_dead_nodes_session_is_claimed_by_one_node,
    a_node_cut_off_never_writes_over_a_session_another_node_claimed,
    runs_are_ordinary_records_with_their_language_and_template,
    signed_versions_are_trusted_until_their_key_is_revoked,
    every_write_that_moves_a_resolution_moves_the_generation,
    installation_credentials_are_their_own_and_go_with_the_installation,
);

async fn upload(ctx: &Ctx, who: &Actor, version: &str) -> warden_core::Version {
    ctx.registry
        .upload(who, package("vendor.greeting.say_hello", version, HELLO))
        .await
        .unwrap()
}

async fn active(ctx: &Ctx, version: &str) -> warden_core::Version {
    let alice = dev("alice");
    upload(ctx, &alice, version).await;
    ctx.registry
        .submit(&alice, "vendor.greeting.say_hello", version)
        .await
        .unwrap();
    ctx.registry
        .approve(&admin(), "vendor.greeting.say_hello", version)
        .await
        .unwrap()
}

async fn trail(ctx: &Ctx) -> Vec<(String, Option<String>, Option<String>, String)> {
    let mut events = ctx
        .store
        .list_audit(AuditFilter {
            plugin: Some("vendor.greeting.say_hello".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    events.reverse();
    events
        .into_iter()
        .map(|e| (e.action, e.from_status, e.to_status, e.actor))
        .collect()
}

fn t(
    action: &str,
    from: Option<&str>,
    to: Option<&str>,
    actor: &str,
) -> (String, Option<String>, Option<String>, String) {
    (
        action.into(),
        from.map(Into::into),
        to.map(Into::into),
        actor.into(),
    )
}

async fn the_review_lifecycle_walks_and_is_audited(ctx: Ctx) {
    let alice = dev("alice");
    let code = "vendor.greeting.say_hello";
    let v = upload(&ctx, &alice, "1.0.0").await;
    assert_eq!(v.status, VersionStatus::Draft);
    assert_eq!(v.files[0]["path"], "main.py");
    let v = ctx.registry.submit(&alice, code, "1.0.0").await.unwrap();
    assert_eq!(v.status, VersionStatus::Pending);
    let report = v.report.as_ref().expect("the report is stored at submit");
    assert_eq!(report["package_sha256"], v.package_sha256.as_str());
    assert!(report["summary"].is_object());
    let v = ctx.registry.approve(&admin(), code, "1.0.0").await.unwrap();
    assert_eq!(v.status, VersionStatus::Active);
    let v = ctx.registry.deactivate(&alice, code, "1.0.0").await.unwrap();
    assert_eq!(v.status, VersionStatus::Inactive);
    let v = ctx.registry.activate(&admin(), code, "1.0.0").await.unwrap();
    assert_eq!(v.status, VersionStatus::Active);
    assert_eq!(v.revision, 5);
    // Switched off by an admin, only an admin switches it back on.
    ctx.registry.deactivate(&admin(), code, "1.0.0").await.unwrap();
    let e = ctx.registry.activate(&alice, code, "1.0.0").await.unwrap_err();
    assert!(matches!(e, RegistryError::Forbidden(_)), "{e:?}");
    let v = ctx.registry.activate(&admin(), code, "1.0.0").await.unwrap();
    assert_eq!((v.status, v.revision), (VersionStatus::Active, 7));
    let counts = ctx.store.counts().await.unwrap();
    assert_eq!(counts.active_plugins, 1);
    assert_eq!(counts.versions, vec![(VersionStatus::Active, 1)]);
    // Reading it back gives the same record.
    assert_eq!(ctx.store.get_version(code, "1.0.0").await.unwrap().unwrap(), v);
    assert_eq!(
        trail(&ctx).await,
        vec![
            t("upload", None, Some("draft"), "alice"),
            t("submit", Some("draft"), Some("pending"), "alice"),
            t("approve", Some("pending"), Some("active"), "root"),
            t("deactivate", Some("active"), Some("inactive"), "alice"),
            t("activate", Some("inactive"), Some("active"), "root"),
            t("deactivate", Some("active"), Some("inactive"), "root"),
            t("activate", Some("inactive"), Some("active"), "root"),
        ]
    );
}

async fn refused_transitions_name_the_state_and_change_nothing(ctx: Ctx) {
    let alice = dev("alice");
    let code = "vendor.greeting.say_hello";
    let draft = upload(&ctx, &alice, "1.0.0").await;
    let refusals = [
        ctx.registry.approve(&admin(), code, "1.0.0").await.unwrap_err(),
        ctx.registry
            .reject(&admin(), code, "1.0.0", "no")
            .await
            .unwrap_err(),
        ctx.registry.activate(&alice, code, "1.0.0").await.unwrap_err(),
        ctx.registry.deactivate(&alice, code, "1.0.0").await.unwrap_err(),
    ];
    for e in &refusals {
        assert!(matches!(e, RegistryError::Lifecycle { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("version is draft") && msg.contains("allowed: submit"),
            "{msg}"
        );
    }
    ctx.registry.submit(&alice, code, "1.0.0").await.unwrap();
    let e = ctx.registry.submit(&alice, code, "1.0.0").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("version is pending: cannot submit; allowed: approve, reject"),
        "{e}"
    );
    let e = ctx
        .registry
        .upload(&alice, package(code, "1.0.0", HELLO))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("version is pending"), "{e}");
    ctx.registry.approve(&admin(), code, "1.0.0").await.unwrap();
    let e = ctx.registry.approve(&admin(), code, "1.0.0").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("version is active: cannot approve; allowed: deactivate"),
        "{e}"
    );
    let e = ctx
        .registry
        .upload(&alice, package(code, "1.0.0", "def handler(e):\n    return {}\n"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("version is active: cannot upload"), "{e}");
    // Only the successful moves left a trace or a new revision.
    let v = ctx.store.get_version(code, "1.0.0").await.unwrap().unwrap();
    assert_eq!(v.revision, draft.revision + 2);
    assert_eq!(v.package_sha256, draft.package_sha256);
    assert_eq!(trail(&ctx).await.len(), 3);
}

async fn a_rejected_version_comes_back_with_a_fixed_package(ctx: Ctx) {
    let alice = dev("alice");
    let code = "vendor.greeting.say_hello";
    upload(&ctx, &alice, "1.0.0").await;
    ctx.registry.submit(&alice, code, "1.0.0").await.unwrap();
    let e = ctx
        .registry
        .reject(&admin(), code, "1.0.0", "   ")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("/reason: a reason is required"), "{e}");
    let e = ctx
        .registry
        .reject(&dev("bob"), code, "1.0.0", "mine now")
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Forbidden(_)), "{e:?}");
    let v = ctx
        .registry
        .reject(&admin(), code, "1.0.0", "greets too loudly")
        .await
        .unwrap();
    assert_eq!(v.status, VersionStatus::Rejected);
    assert_eq!(v.status_reason.as_deref(), Some("greets too loudly"));
    let fixed = package(
        code,
        "1.0.0",
        "def handler(event):\n    return {\"greeting\": \"hi\"}\n",
    );
    let v2 = ctx.registry.upload(&alice, fixed).await.unwrap();
    assert_eq!(
        v2.status,
        VersionStatus::Pending,
        "a fixed package goes straight back to review"
    );
    assert_ne!(v2.package_sha256, v.package_sha256);
    assert_eq!(
        v2.report.as_ref().unwrap()["package_sha256"],
        v2.package_sha256.as_str()
    );
    assert_eq!(v2.status_reason, None);
    let events = ctx
        .store
        .list_audit(AuditFilter {
            action: Some("reject".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason.as_deref(), Some("greets too loudly"));
    assert_eq!(events[0].actor, "root");
}

async fn a_new_version_is_a_draft_while_the_old_one_stays_active(ctx: Ctx) {
    let code = "vendor.greeting.say_hello";
    active(&ctx, "1.0.0").await;
    let v2 = upload(&ctx, &dev("alice"), "1.1.0").await;
    assert_eq!(v2.status, VersionStatus::Draft);
    let latest = ctx.registry.latest_active(code).await.unwrap().unwrap();
    assert_eq!(latest.version, "1.0.0");
    let versions = ctx.store.list_versions(code).await.unwrap();
    let states: Vec<_> = versions.iter().map(|v| (v.version.as_str(), v.status)).collect();
    assert_eq!(
        states,
        [("1.0.0", VersionStatus::Active), ("1.1.0", VersionStatus::Draft)]
    );
    // Semantic order, not upload order, decides the latest.
    active(&ctx, "1.1.0").await;
    active(&ctx, "1.0.1").await;
    assert_eq!(
        ctx.registry.latest_active(code).await.unwrap().unwrap().version,
        "1.1.0"
    );
}

async fn only_owners_manage_their_plugins(ctx: Ctx) {
    let code = "vendor.greeting.say_hello";
    upload(&ctx, &dev("alice"), "1.0.0").await;
    let bob = dev("bob");
    let e = ctx
        .registry
        .upload(&bob, package(code, "2.0.0", HELLO))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("belongs to another developer"), "{e}");
    assert!(!e.to_string().contains("alice"), "the owner is named: {e}");
    assert!(matches!(
        ctx.registry.submit(&bob, code, "1.0.0").await,
        Err(RegistryError::Forbidden(_))
    ));
    assert!(matches!(
        ctx.registry.approve(&dev("alice"), code, "1.0.0").await,
        Err(RegistryError::Forbidden(_))
    ));
    let app = Actor {
        name: "shop".into(),
        role: Role::App,
        app: Some("shop".into()),
    };
    assert!(matches!(
        ctx.registry.upload(&app, package("x.y.z", "1.0.0", HELLO)).await,
        Err(RegistryError::Forbidden(_))
    ));
    assert!(ctx.store.get_version(code, "2.0.0").await.unwrap().is_none());
    assert!(ctx.store.get_plugin("x.y.z").await.unwrap().is_none());
    assert_eq!(ctx.store.get_plugin(code).await.unwrap().unwrap().owner, "alice");
    // An admin may upload a new version; the plugin stays alice's.
    upload(&ctx, &admin(), "2.0.0").await;
    assert_eq!(ctx.store.get_plugin(code).await.unwrap().unwrap().owner, "alice");
}

async fn a_tampered_package_fails_the_version(ctx: Ctx) {
    let code = "vendor.greeting.say_hello";
    let v = active(&ctx, "1.0.0").await;
    let (dir, entry, manifest) = ctx.registry.load_for_run(&v).await.unwrap();
    assert_eq!(entry, "main.py");
    assert_eq!(manifest.code, code);
    assert_eq!(std::fs::read_to_string(dir.join("main.py")).unwrap(), HELLO);
    // Someone with access to the blob folder swaps the package.
    let blob = ctx
        .data
        .path()
        .join(format!("blobs/packages/{}.zip", v.package_sha256));
    assert!(blob.is_file(), "{}", blob.display());
    std::fs::write(
        &blob,
        package(code, "1.0.0", "import os\ndef handler(e):\n    return {}\n"),
    )
    .unwrap();
    let e = ctx.registry.load_for_run(&v).await.unwrap_err();
    assert!(matches!(e, RegistryError::Tampered { .. }), "{e:?}");
    assert!(e.to_string().contains("does not match its recorded hash"), "{e}");
    let now = ctx.store.get_version(code, "1.0.0").await.unwrap().unwrap();
    assert_eq!(now.status, VersionStatus::Failed);
    assert!(
        now.status_reason
            .as_deref()
            .unwrap()
            .contains("package hash mismatch")
    );
    let fail = trail(&ctx).await.pop().unwrap();
    assert_eq!(fail, t("fail", Some("active"), Some("failed"), "system"));
    // A failed version cannot be called any more.
    let e = ctx.registry.load_for_run(&now).await.unwrap_err();
    assert!(matches!(e, RegistryError::Tampered { .. }));
    assert_eq!(trail(&ctx).await.len(), 4, "failing again adds nothing");
    // A blob that disappeared fails the call but not the version: a
    // missing blob is an outage, not a substitution.
    let v2 = active(&ctx, "1.0.1").await;
    std::fs::remove_file(
        ctx.data
            .path()
            .join(format!("blobs/packages/{}.zip", v2.package_sha256)),
    )
    .unwrap();
    let e = ctx.registry.load_for_run(&v2).await.unwrap_err();
    assert!(matches!(e, RegistryError::Store(_)), "{e:?}");
    assert_eq!(
        ctx.store
            .get_version(code, "1.0.1")
            .await
            .unwrap()
            .unwrap()
            .status,
        VersionStatus::Active
    );
    // One byte flipped in place, size kept and modification time set back:
    // still caught (the blob's change time moved), even though the version
    // was verified and loaded just before.
    let v3 = active(&ctx, "1.0.2").await;
    ctx.registry.load_for_run(&v3).await.unwrap();
    let path = ctx
        .data
        .path()
        .join(format!("blobs/packages/{}.zip", v3.package_sha256));
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(&bytes).unwrap();
        f.set_modified(before).unwrap();
    }
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), before);
    assert!(matches!(
        ctx.registry.load_for_run(&v3).await,
        Err(RegistryError::Tampered { .. })
    ));
}

async fn concurrent_approvals_leave_one_winner(ctx: Ctx) {
    let alice = dev("alice");
    let code = "vendor.greeting.say_hello";
    upload(&ctx, &alice, "1.0.0").await;
    ctx.registry.submit(&alice, code, "1.0.0").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let r = ctx.registry.clone();
        tasks.push(tokio::spawn(async move {
            let who = Actor {
                name: format!("reviewer{i}"),
                role: Role::Admin,
                app: None,
            };
            if i % 2 == 0 {
                r.approve(&who, code, "1.0.0").await
            } else {
                r.reject(&who, code, "1.0.0", "too slow").await
            }
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => won.push(v),
            Err(RegistryError::Lifecycle { .. } | RegistryError::Conflict(_)) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one review lands");
    let v = ctx.store.get_version(code, "1.0.0").await.unwrap().unwrap();
    assert_eq!(v.status, won[0].status);
    assert_eq!(v.revision, 3);
    let reviews: Vec<_> = trail(&ctx)
        .await
        .into_iter()
        .filter(|e| e.0 == "approve" || e.0 == "reject")
        .collect();
    assert_eq!(reviews.len(), 1, "{reviews:?}");
}

async fn an_upload_racing_a_submit_stays_consistent(ctx: Ctx) {
    let alice = dev("alice");
    let code = "vendor.greeting.say_hello";
    for round in 0..6 {
        let version = format!("1.0.{round}");
        upload(&ctx, &alice, &version).await;
        let (r1, r2) = (ctx.registry.clone(), ctx.registry.clone());
        let (a1, a2) = (alice.clone(), alice.clone());
        let v1 = version.clone();
        let body = format!("def handler(event):\n    return {{\"round\": {round}}}\n");
        let up = tokio::spawn(async move { r1.upload(&a1, package(code, &v1, &body)).await });
        let v2 = version.clone();
        let sub = tokio::spawn(async move { r2.submit(&a2, code, &v2).await });
        let (up, sub) = (up.await.unwrap(), sub.await.unwrap());
        let v = ctx.store.get_version(code, &version).await.unwrap().unwrap();
        let events: Vec<_> = ctx
            .store
            .list_audit(AuditFilter {
                version: Some(version.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .items;
        let successes = 1 + usize::from(up.is_ok()) + usize::from(sub.is_ok());
        assert_eq!(
            events.len(),
            successes,
            "one audit event per landed change: {events:?}"
        );
        assert_eq!(v.revision as usize, successes);
        match v.status {
            // The report always describes the package it was made from.
            VersionStatus::Pending => {
                assert!(sub.is_ok());
                assert_eq!(
                    v.report.as_ref().unwrap()["package_sha256"],
                    v.package_sha256.as_str()
                );
            }
            VersionStatus::Draft => assert!(sub.is_err() && v.report.is_none()),
            other => panic!("unexpected state {other}"),
        }
        if let Err(e) = &sub {
            assert!(
                matches!(e, RegistryError::Conflict(_) | RegistryError::Lifecycle { .. }),
                "{e:?}"
            );
        }
        if let Err(e) = &up {
            assert!(e.to_string().contains("version is pending"), "{e}");
        }
    }
}

async fn installations_pin_or_follow_and_block_deletion(ctx: Ctx) {
    let code = "vendor.greeting.say_hello";
    let root = admin();
    active(&ctx, "1.0.0").await;
    upload(&ctx, &dev("alice"), "2.0.0").await;
    let e = ctx.registry.install(&root, "shop", code, None).await.unwrap_err();
    assert!(matches!(e, RegistryError::NotFound(_)), "{e:?}");
    ctx.registry.create_app(&root, "shop", "The shop").await.unwrap();
    ctx.registry.create_app(&root, "blog", "").await.unwrap();
    let e = ctx.registry.create_app(&root, "shop", "again").await.unwrap_err();
    assert!(e.to_string().contains("exists already"), "{e}");
    let e = ctx.registry.create_app(&root, "Bad_Id", "").await.unwrap_err();
    assert!(e.to_string().contains("/id"), "{e}");
    let e = ctx
        .registry
        .install(&root, "shop", code, Some("2.0.0"))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("2.0.0 is draft: only active versions can be installed"),
        "{e}"
    );
    let e = ctx
        .registry
        .install(&dev("alice"), "shop", code, None)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Forbidden(_)));
    ctx.registry
        .install(&root, "shop", code, Some("1.0.0"))
        .await
        .unwrap();
    ctx.registry.install(&root, "blog", code, None).await.unwrap();
    let e = ctx.registry.install(&root, "shop", code, None).await.unwrap_err();
    assert!(e.to_string().contains("already installed"), "{e}");
    assert_eq!(ctx.registry.resolve("shop", code).await.unwrap().version, "1.0.0");
    assert_eq!(ctx.registry.resolve("blog", code).await.unwrap().version, "1.0.0");
    // Both installations hold 1.0.0: deleting it is refused.
    let e = ctx
        .registry
        .delete_version(&dev("alice"), code, "1.0.0")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot be deleted"), "{e}");
    // A newer active version: the follower moves, the pinned one stays.
    let alice = dev("alice");
    ctx.registry.submit(&alice, code, "2.0.0").await.unwrap();
    ctx.registry.approve(&root, code, "2.0.0").await.unwrap();
    assert_eq!(ctx.registry.resolve("blog", code).await.unwrap().version, "2.0.0");
    assert_eq!(ctx.registry.resolve("shop", code).await.unwrap().version, "1.0.0");
    // An inactive version cannot be called.
    ctx.registry.deactivate(&alice, code, "1.0.0").await.unwrap();
    let e = ctx.registry.resolve("shop", code).await.unwrap_err();
    assert!(
        e.to_string().contains("1.0.0 is inactive: it cannot be called"),
        "{e}"
    );
    let e = ctx
        .registry
        .delete_version(&alice, code, "1.0.0")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("pins it"), "{e}");
    ctx.registry
        .upgrade(&root, "shop", code, Some("2.0.0"))
        .await
        .unwrap();
    assert_eq!(ctx.registry.resolve("shop", code).await.unwrap().version, "2.0.0");
    ctx.registry.delete_version(&alice, code, "1.0.0").await.unwrap();
    assert!(ctx.store.get_version(code, "1.0.0").await.unwrap().is_none());
    // 2.0.0 is followed by blog and pinned by shop.
    let e = ctx
        .registry
        .delete_version(&alice, code, "2.0.0")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot be deleted"), "{e}");
    ctx.registry.uninstall(&root, "shop", code).await.unwrap();
    let e = ctx
        .registry
        .delete_version(&alice, code, "2.0.0")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("deactivate it first"), "{e}");
    ctx.registry.uninstall(&root, "blog", code).await.unwrap();
    assert!(ctx.registry.uninstall(&root, "blog", code).await.is_err());
    ctx.registry.delete_version(&alice, code, "2.0.0").await.unwrap();
    assert!(ctx.store.list_installations("shop").await.unwrap().is_empty());
    let actions: Vec<_> = ctx
        .store
        .list_audit(AuditFilter::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in ["create_app", "install", "upgrade", "uninstall", "delete"] {
        assert!(actions.iter().any(|x| x == a), "no {a} event in {actions:?}");
    }
}

async fn the_audit_trail_is_append_only(ctx: Ctx) {
    upload(&ctx, &dev("alice"), "1.0.0").await;
    let pool = ctx.store.pool();
    let e = sqlx::query("UPDATE audit_events SET actor = 'mallory'")
        .execute(pool)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = sqlx::query("DELETE FROM audit_events")
        .execute(pool)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    assert_eq!(trail(&ctx).await, vec![t("upload", None, Some("draft"), "alice")]);
}

fn execution(app: &str, plugin: &str, status: ExecutionStatus) -> Execution {
    Execution {
        id: new_id("exe"),
        app: app.into(),
        source: ExecutionSource::Plugin {
            plugin: plugin.into(),
            version: "1.0.0".into(),
        },
        status,
        mode: ExecutionMode::Sync,
        node: "node-a".into(),
        error_kind: None,
        result: None,
        created_at: now_ms(),
        started_at: None,
        finished_at: None,
        duration_ms: None,
        egress_refused: Vec::new(),
    }
}

async fn executions_are_recorded_filtered_and_interrupted(ctx: Ctx) {
    let s = &ctx.store;
    let mut ids = Vec::new();
    for i in 0..25 {
        let app = if i % 2 == 0 { "shop" } else { "blog" };
        let e = execution(app, "a.b.c", ExecutionStatus::Queued);
        s.insert_execution(e.clone()).await.unwrap();
        ids.push(e.id.clone());
        if i % 5 != 0 {
            let mut done = e;
            done.status = ExecutionStatus::Success;
            done.result =
                Some(serde_json::from_value(json!({"status": "success", "return_value": {"i": i}})).unwrap());
            done.started_at = Some(now_ms());
            done.finished_at = Some(now_ms());
            done.duration_ms = Some(1.5);
            assert!(s.update_execution(done).await.unwrap());
        }
    }
    let one = s.get_execution(&ids[3]).await.unwrap().unwrap();
    assert_eq!(one.status, ExecutionStatus::Success);
    assert_eq!(one.result.unwrap().return_value.unwrap()["i"], 3);
    assert_eq!(one.duration_ms, Some(1.5));
    // Pages of 10, newest first, no overlap, nothing missed.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let p = s
            .list_executions(ExecutionFilter {
                cursor: cursor.clone(),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(p.items.into_iter().map(|e| e.id));
        cursor = p.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let counts = s.counts().await.unwrap();
    assert_eq!(counts.active_plugins, 0);
    let shop = s
        .list_executions(ExecutionFilter {
            app: Some("shop".into()),
            status: Some(ExecutionStatus::Success),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(shop.items.len(), 10);
    assert!(
        shop.items
            .iter()
            .all(|e| e.app == "shop" && e.status == ExecutionStatus::Success)
    );
    let none = s
        .list_executions(ExecutionFilter {
            since: Some(now_ms() + 60_000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.items.is_empty());
    // Another node's unfinished execution is not this node's to interrupt.
    let mut other = execution("shop", "a.b.c", ExecutionStatus::Running);
    other.node = "node-b".into();
    s.insert_execution(other.clone()).await.unwrap();
    // A restart finds five executions that never finished.
    assert_eq!(
        s.interrupt_unfinished("node-a", "the server restarted")
            .await
            .unwrap(),
        5
    );
    let still = s.get_execution(&other.id).await.unwrap().unwrap();
    assert_eq!(still.status, ExecutionStatus::Running);
    let e = s.get_execution(&ids[0]).await.unwrap().unwrap();
    assert_eq!(e.status, ExecutionStatus::Interrupted);
    assert_eq!(e.error_kind.map(ErrorKind::as_str), Some("interrupted"));
    assert_eq!(e.result.unwrap().error.unwrap().message, "the server restarted");
    assert_eq!(s.interrupt_unfinished("node-a", "again").await.unwrap(), 0);
    let missing = execution("shop", "a.b.c", ExecutionStatus::Success);
    assert!(matches!(
        s.update_execution(missing).await,
        Err(StoreError::NotFound(_))
    ));
    // A final record never changes.
    let mut again = s.get_execution(&ids[0]).await.unwrap().unwrap();
    again.status = ExecutionStatus::Success;
    assert!(!s.update_execution(again).await.unwrap());
    assert_eq!(
        s.get_execution(&ids[0]).await.unwrap().unwrap().status,
        ExecutionStatus::Interrupted
    );
}

async fn a_corrupt_execution_is_an_error_naming_it(ctx: Ctx) {
    let s = &ctx.store;
    let e = execution("shop", "a.b.c", ExecutionStatus::Queued);
    s.insert_execution(e.clone()).await.unwrap();
    for (column, value, expected) in [
        ("result", r#"{"status": "success", "stdout": 7}"#, "result"),
        ("result", "not json", "result"),
        ("status", "half-done", "unknown status `half-done`"),
        ("mode", "later", "unknown mode `later`"),
        ("error_kind", "oops", "unknown error kind `oops`"),
    ] {
        let sql = format!("UPDATE executions SET {column} = $1 WHERE id = $2");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .bind(&e.id)
            .execute(s.pool())
            .await
            .unwrap();
        let err = s.get_execution(&e.id).await.unwrap_err();
        match &err {
            StoreError::Corrupt { record, reason } => {
                assert_eq!(record, &format!("execution {}", e.id));
                assert!(reason.contains(expected), "{reason}");
            }
            other => panic!("{column}: expected Corrupt, got {other:?}"),
        }
        assert!(err.to_string().contains(&e.id), "{err}");
        // Listing fails the same way rather than skipping or defaulting it.
        assert!(matches!(
            s.list_executions(ExecutionFilter::default()).await,
            Err(StoreError::Corrupt { .. })
        ));
        let repair = match column {
            "result" => "UPDATE executions SET result = NULL WHERE id = $1",
            "status" => "UPDATE executions SET status = 'queued' WHERE id = $1",
            "mode" => "UPDATE executions SET mode = 'sync' WHERE id = $1",
            _ => "UPDATE executions SET error_kind = NULL WHERE id = $1",
        };
        sqlx::query(repair).bind(&e.id).execute(s.pool()).await.unwrap();
        assert_eq!(s.get_execution(&e.id).await.unwrap().unwrap(), e);
    }
}

async fn corrupt_versions_and_keys_are_errors_naming_them(ctx: Ctx) {
    let code = "vendor.greeting.say_hello";
    let v = active(&ctx, "1.0.0").await;
    let pool = ctx.store.pool();
    fn corrupt<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
        match r {
            Err(StoreError::Corrupt { record, reason }) => format!("{record}: {reason}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    sqlx::query("UPDATE plugin_versions SET files = '[{' WHERE id = $1")
        .bind(&v.id)
        .execute(pool)
        .await
        .unwrap();
    let msg = corrupt(ctx.store.get_version(code, "1.0.0").await);
    assert!(msg.starts_with(&format!("version {}: files:", v.id)), "{msg}");
    assert!(corrupt(ctx.store.list_versions(code).await).contains(&v.id));
    sqlx::query("UPDATE plugin_versions SET status = 'approved-ish' WHERE id = $1")
        .bind(&v.id)
        .execute(pool)
        .await
        .unwrap();
    assert!(corrupt(ctx.store.counts().await).contains("approved-ish"));
    let key = ApiKey {
        id: "wk_bad".into(),
        name: "x".into(),
        role: Role::Admin,
        app: None,
        hash: "ef".repeat(32),
        created_at: now_ms(),
        revoked_at: None,
    };
    ctx.store.insert_key(key, NewAudit::default()).await.unwrap();
    sqlx::query("UPDATE api_keys SET role = 'root' WHERE id = 'wk_bad'")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        corrupt(ctx.store.find_key_by_hash(&"ef".repeat(32)).await),
        "api key wk_bad: unknown role `root`"
    );
}

fn queued(i: usize) -> (Execution, QueuedCall) {
    let mut e = execution("shop", "a.b.c", ExecutionStatus::Queued);
    e.mode = ExecutionMode::Async;
    let call = QueuedCall {
        event: json!({"i": i, "pad": "x".repeat(i * 1000)}).to_string(),
        package_sha256: format!("{i:064x}"),
        timeout_ms: 1000 + i as u64,
        memory_mb: 64,
    };
    (e, call)
}

async fn queue_len(s: &SqlStore) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM execution_queue")
        .fetch_one(s.pool())
        .await
        .unwrap();
    n
}

async fn queued_async_executions_outlive_their_node_and_start_exactly_once(ctx: Ctx) {
    let s = &ctx.store;
    let mut calls = std::collections::HashMap::new();
    for i in 0..40 {
        let (e, call) = queued(i);
        s.enqueue_execution(e.clone(), call.clone()).await.unwrap();
        calls.insert(e.id.clone(), call);
    }
    // node-a started one of them before it crashed, and had a sync call
    // recorded `queued` (which has no queue entry and cannot start).
    let first = calls.keys().min().unwrap().clone();
    assert!(s.claim_execution(&first, "node-a", now_ms()).await.unwrap());
    assert!(!s.claim_execution(&first, "node-b", now_ms()).await.unwrap());
    let sync = execution("shop", "a.b.c", ExecutionStatus::Queued);
    s.insert_execution(sync.clone()).await.unwrap();
    assert_eq!(s.interrupt_unfinished("node-a", "restart").await.unwrap(), 2);
    let started = s.get_execution(&first).await.unwrap().unwrap();
    assert_eq!(started.status, ExecutionStatus::Interrupted);
    assert_eq!(
        s.get_execution(&sync.id).await.unwrap().unwrap().status,
        ExecutionStatus::Interrupted
    );
    assert_eq!(queue_len(s).await, 39, "the accepted, unstarted ones stay queued");

    // Two nodes with a pool each, four claimers per node, one queue.
    let other = Arc::new(SqlStore::connect(&ctx.url).await.unwrap());
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = if t % 2 == 0 {
            ctx.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let node = format!("node-{}", t % 2);
            let mut got = Vec::new();
            while let Some((e, call)) = store.claim_next_execution(&node, 42).await.unwrap() {
                assert_eq!(
                    (e.status, e.started_at, e.node.as_str()),
                    (ExecutionStatus::Running, Some(42), node.as_str())
                );
                got.push((e.id, call));
            }
            got
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    let mut ids: Vec<_> = claimed.iter().map(|(id, _)| id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 39, "every queued execution started once");
    assert_eq!(claimed.len(), 39, "and none twice");
    for (id, call) in &claimed {
        assert_eq!(&calls[id], call, "the event and limits come back as accepted");
    }
    assert_eq!(queue_len(s).await, 0, "a started execution's event is dropped");
    assert!(s.claim_next_execution("node-a", 1).await.unwrap().is_none());

    // One execution, many claims at once: one winner.
    let (e, call) = queued(1);
    s.enqueue_execution(e.clone(), call).await.unwrap();
    let mut racers = Vec::new();
    for t in 0..8 {
        let store = if t % 2 == 0 {
            ctx.store.clone()
        } else {
            other.clone()
        };
        let id = e.id.clone();
        racers.push(tokio::spawn(async move {
            store.claim_execution(&id, "node-x", 7).await.unwrap()
        }));
    }
    let mut wins = 0;
    for r in racers {
        wins += usize::from(r.await.unwrap());
    }
    assert_eq!(wins, 1);

    // A queued execution that ends without starting leaves the queue too.
    let (e, call) = queued(2);
    s.enqueue_execution(e.clone(), call).await.unwrap();
    let mut ended = e.clone();
    ended.status = ExecutionStatus::Error;
    ended.finished_at = Some(now_ms());
    assert!(s.update_execution(ended).await.unwrap());
    assert_eq!(queue_len(s).await, 0);
    assert!(!s.claim_execution(&e.id, "node-a", 1).await.unwrap());
    other.close().await;
}

async fn api_keys_are_found_by_hash_and_revoked(ctx: Ctx) {
    let s = &ctx.store;
    let key = ApiKey {
        id: "wk_test1".into(),
        name: "alice".into(),
        role: Role::Developer,
        app: None,
        hash: "ab".repeat(32),
        created_at: now_ms(),
        revoked_at: None,
    };
    let audit = NewAudit {
        actor: "root".into(),
        action: "create_key".into(),
        ..Default::default()
    };
    s.insert_key(key.clone(), audit.clone()).await.unwrap();
    assert!(matches!(
        s.insert_key(key.clone(), audit.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.find_key_by_hash(&key.hash).await.unwrap().unwrap(), key);
    assert!(s.find_key_by_hash(&"cd".repeat(32)).await.unwrap().is_none());
    let listed = s.list_keys().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].hash, "", "hashes are never listed");
    assert!(s.revoke_key("wk_test1", audit.clone()).await.unwrap());
    assert!(!s.revoke_key("wk_test1", audit.clone()).await.unwrap());
    assert!(s.find_key_by_hash(&key.hash).await.unwrap().is_none());
    assert!(s.list_keys().await.unwrap()[0].revoked_at.is_some());
}

async fn the_last_admin_key_survives_racing_revocations(ctx: Ctx) {
    let s = &ctx.store;
    let audit = NewAudit {
        actor: "root".into(),
        action: "revoke_key".into(),
        ..Default::default()
    };
    for round in 0..5 {
        let ids = [format!("wk_admin{round}a"), format!("wk_admin{round}b")];
        for (i, id) in ids.iter().enumerate() {
            let key = ApiKey {
                id: id.clone(),
                name: id.clone(),
                role: Role::Admin,
                app: None,
                hash: format!("{round}{i}").repeat(32),
                created_at: now_ms(),
                revoked_at: None,
            };
            s.insert_key(key, audit.clone()).await.unwrap();
        }
        // Every other admin key of earlier rounds is gone by now: these two
        // are the last, and both are revoked at once.
        let (a, b) = tokio::join!(
            s.revoke_key_keeping_an_admin(&ids[0], audit.clone()),
            s.revoke_key_keeping_an_admin(&ids[1], audit.clone())
        );
        let mut outcomes = [a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(outcomes, [Revoked::Done, Revoked::LastAdmin], "round {round}");
        let live: Vec<_> = s
            .list_keys()
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.role == Role::Admin && k.revoked_at.is_none())
            .collect();
        assert_eq!(live.len(), 1, "round {round}: {live:?}");
        // Clear the survivor (the unchecked revocation `warden admin` uses)
        // so the next round's two keys are again the last ones.
        assert!(s.revoke_key(&live[0].id, audit.clone()).await.unwrap());
    }
    assert_eq!(
        s.revoke_key_keeping_an_admin("wk_nothing", audit).await.unwrap(),
        Revoked::NotFound
    );
}

async fn plugins_are_searched_and_paged(ctx: Ctx) {
    let alice = dev("alice");
    for i in 0..7 {
        let code = format!("vendor.tools.t{i}");
        ctx.registry
            .upload(&alice, package(&code, "1.0.0", HELLO))
            .await
            .unwrap();
    }
    ctx.registry
        .upload(&dev("bob"), package("other.x.y", "1.0.0", HELLO))
        .await
        .unwrap();
    let first = ctx
        .store
        .list_plugins(PluginFilter {
            search: Some("TOOLS".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.items.len(), 5);
    let second = ctx
        .store
        .list_plugins(PluginFilter {
            search: Some("tools".into()),
            cursor: first.next_cursor,
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(second.items.len(), 2);
    assert!(second.next_cursor.is_none());
    let bobs = ctx
        .store
        .list_plugins(PluginFilter {
            owner: Some("bob".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        bobs.items.iter().map(|p| p.code.as_str()).collect::<Vec<_>>(),
        ["other.x.y"]
    );
    // LIKE wildcards in a search are literal.
    let none = ctx
        .store
        .list_plugins(PluginFilter {
            search: Some("%".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.items.is_empty());
}

fn templates(ctx: &Ctx) -> Templates<SqlStore> {
    Templates::new(ctx.store.clone(), TemplatePolicy::default())
}

/// The template audit events, oldest first: (action, template, actor).
async fn template_trail(ctx: &Ctx) -> Vec<(String, String, String)> {
    let mut events = ctx
        .store
        .list_audit(AuditFilter {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    events.reverse();
    events
        .into_iter()
        .filter(|e| e.action.ends_with("_template") || e.action == "set_template_layer")
        .map(|e| {
            (
                e.action,
                e.detail["template"].as_str().unwrap_or("").to_owned(),
                e.actor,
            )
        })
        .collect()
}

async fn templates_are_created_listed_replaced_and_deleted_with_their_audit(ctx: Ctx) {
    let t = templates(&ctx);
    let body = json!({
        "id": "scraper", "name": "Scraper", "runtime": "python",
        "packages": [{"ecosystem": "pip", "name": "requests", "version": ">=2,<3"}],
        "env": {"LANG": "C.UTF-8"},
        "network": {"mode": "allow_list", "allow": ["example.com:443"]},
        "files": [{"path": "conf/a.txt", "content": "x"}],
    });
    let created = t.create(&admin(), &body).await.unwrap();
    assert_eq!(
        (created.revision, created.builtin, created.layer.clone()),
        (1, false, None)
    );
    assert_eq!(ctx.store.get_template("scraper").await.unwrap().unwrap(), created);
    // The id is taken; a developer may not write; bad input changes nothing.
    assert!(matches!(
        t.create(&admin(), &body).await,
        Err(TemplateError::Conflict(_))
    ));
    assert!(matches!(
        t.create(&dev("alice"), &body).await,
        Err(TemplateError::Forbidden(_))
    ));
    let bad =
        json!({"id": "evil", "runtime": "python", "packages": [{"ecosystem": "pip", "name": "x; rm -rf /"}]});
    match t.create(&admin(), &bad).await {
        Err(TemplateError::Invalid(p)) => assert_eq!(p[0].location, "/packages/0/name"),
        other => panic!("{other:?}"),
    }
    assert!(ctx.store.get_template("evil").await.unwrap().is_none());
    for i in 0..5 {
        t.create(&admin(), &json!({"id": format!("n{i}"), "runtime": "node"}))
            .await
            .unwrap();
    }
    // Pages by id, filtered by runtime.
    let first = t
        .list(TemplateFilter {
            limit: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        first.items.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        ["n0", "n1", "n2", "n3"]
    );
    let rest = t
        .list(TemplateFilter {
            cursor: first.next_cursor,
            limit: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        ["n4", "scraper"]
    );
    assert!(rest.next_cursor.is_none());
    let pythons = t
        .list(TemplateFilter {
            runtime: Some(TemplateRuntime::Python),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pythons.items.len(), 1);
    // A full replacement at the revision read.
    let replaced = t
        .replace(
            &admin(),
            "scraper",
            &json!({"name": "Scraper 2", "runtime": "python", "revision": 1}),
        )
        .await
        .unwrap();
    assert_eq!((replaced.revision, replaced.name.as_str()), (2, "Scraper 2"));
    assert!(
        replaced.packages.is_empty() && replaced.env.is_empty(),
        "a full replacement"
    );
    assert_eq!(replaced.created_at, created.created_at);
    // At a revision that is no longer current: nothing changes.
    match t
        .replace(&admin(), "scraper", &json!({"runtime": "shell", "revision": 1}))
        .await
    {
        Err(TemplateError::Stale { read, now, .. }) => assert_eq!((read, now.as_str()), (1, "revision 2")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ctx.store.get_template("scraper").await.unwrap().unwrap(),
        replaced
    );
    assert!(matches!(
        t.replace(&admin(), "nothing", &json!({"runtime": "shell", "revision": 1}))
            .await,
        Err(TemplateError::NotFound(_))
    ));
    t.delete(&admin(), "scraper").await.unwrap();
    assert!(matches!(
        t.delete(&admin(), "scraper").await,
        Err(TemplateError::NotFound(_))
    ));
    assert!(matches!(t.get("scraper").await, Err(TemplateError::NotFound(_))));
    let trail = template_trail(&ctx).await;
    let scraper: Vec<_> = trail.iter().filter(|(_, id, _)| id == "scraper").collect();
    assert_eq!(
        scraper
            .iter()
            .map(|(a, _, who)| (a.as_str(), who.as_str()))
            .collect::<Vec<_>>(),
        [
            ("create_template", "root"),
            ("update_template", "root"),
            ("delete_template", "root")
        ]
    );
}

async fn racing_replacements_of_a_template_leave_one_winner(ctx: Ctx) {
    let t = Arc::new(templates(&ctx));
    t.create(&admin(), &json!({"id": "contested", "runtime": "shell"}))
        .await
        .unwrap();
    // Two nodes, eight admins, all read revision 1.
    let other = Arc::new(SqlStore::connect(&ctx.url).await.unwrap());
    let mut racers = Vec::new();
    for i in 0..8 {
        let service = if i % 2 == 0 {
            t.clone()
        } else {
            Arc::new(Templates::new(other.clone(), TemplatePolicy::default()))
        };
        racers.push(tokio::spawn(async move {
            let body = json!({"name": format!("by {i}"), "runtime": "shell", "revision": 1});
            service.replace(&admin(), "contested", &body).await
        }));
    }
    let mut winners = Vec::new();
    for r in racers {
        match r.await.unwrap() {
            Ok(t) => winners.push(t),
            Err(TemplateError::Stale { now, .. }) => assert_eq!(now, "revision 2"),
            Err(e) => panic!("unexpected: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one replacement lands");
    let stored = ctx.store.get_template("contested").await.unwrap().unwrap();
    assert_eq!((stored.revision, &stored.name), (2, &winners[0].name));
    let updates = template_trail(&ctx)
        .await
        .into_iter()
        .filter(|(a, id, _)| a == "update_template" && id == "contested")
        .count();
    assert_eq!(updates, 1, "one audit event for the one change");
    other.close().await;
}

async fn builtins_appear_once_across_nodes_and_stay(ctx: Ctx) {
    // Three nodes starting at once on one database.
    let mut starts = Vec::new();
    for _ in 0..3 {
        let store = Arc::new(SqlStore::connect(&ctx.url).await.unwrap());
        starts.push(tokio::spawn(async move {
            Templates::new(store, TemplatePolicy::default())
                .ensure_builtins()
                .await
                .unwrap()
        }));
    }
    let mut created = Vec::new();
    for s in starts {
        created.extend(s.await.unwrap());
    }
    created.sort();
    assert_eq!(
        created,
        ["node-basic", "python-basic", "shell"],
        "each created once"
    );
    let t = templates(&ctx);
    assert!(
        t.ensure_builtins().await.unwrap().is_empty(),
        "a restart changes nothing"
    );
    let all = t.list(TemplateFilter::default()).await.unwrap().items;
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|x| x.builtin && x.revision == 1));
    let python = t.get("python-basic").await.unwrap();
    assert_eq!(python.runtime, TemplateRuntime::Python);
    assert!(python.packages.is_empty());
    // Built-ins cannot be changed or deleted through the service, nor
    // deleted in the store.
    assert!(matches!(
        t.delete(&admin(), "python-basic").await,
        Err(TemplateError::Builtin(_))
    ));
    assert!(matches!(
        t.replace(&admin(), "shell", &json!({"runtime": "shell", "revision": 1}))
            .await,
        Err(TemplateError::Builtin(_))
    ));
    assert!(matches!(
        ctx.store.delete_template("shell", NewAudit::default()).await,
        Err(StoreError::Conflict(_))
    ));
    // An older definition stored (here: edited behind Warden's back) is
    // brought back to this version's at the next start.
    sqlx::query("UPDATE templates SET name = 'Old name' WHERE id = 'shell'")
        .execute(ctx.store.pool())
        .await
        .unwrap();
    assert_eq!(t.ensure_builtins().await.unwrap(), ["shell"]);
    let shell = t.get("shell").await.unwrap();
    assert_eq!((shell.name.as_str(), shell.revision), ("Shell (bash)", 2));
    let creations = template_trail(&ctx)
        .await
        .into_iter()
        .filter(|(a, _, who)| a == "create_template" && who == "system")
        .count();
    assert_eq!(creations, 3);
}

fn pip(name: &str, version: &str) -> PackageReq {
    PackageReq {
        ecosystem: Ecosystem::Pip,
        name: name.into(),
        version: Some(version.into()),
        hashes: vec![],
    }
}

fn queued_layer(packages: &[PackageReq]) -> Layer {
    Layer::queued(
        TemplateRuntime::Python,
        "Python 3.11.2",
        packages,
        "https://pypi.org/simple",
        now_ms(),
    )
}

async fn layers_are_inserted_once_and_move_through_their_build(ctx: Ctx) {
    let s = &ctx.store;
    let layer = queued_layer(&[pip("six", "==1.16.0")]);
    // Builds of the same layer coalesce: of many inserts, one creates it.
    let mut inserts = Vec::new();
    for _ in 0..6 {
        let (store, layer) = (s.clone(), layer.clone());
        inserts.push(tokio::spawn(
            async move { store.insert_layer(layer).await.unwrap() },
        ));
    }
    let mut created = 0;
    for i in inserts {
        let (stored, new) = i.await.unwrap();
        assert_eq!(stored, layer);
        created += usize::from(new);
    }
    assert_eq!(created, 1);
    // One of several builders claims it.
    let mut claims = Vec::new();
    for n in 0..4 {
        let (store, mut l) = (s.clone(), layer.clone());
        claims.push(tokio::spawn(async move {
            l.status = LayerStatus::Building;
            l.node = Some(format!("node-{n}"));
            store.update_layer(LayerStatus::Queued, l).await
        }));
    }
    let mut building = None;
    for c in claims {
        match c.await.unwrap() {
            Ok(l) => {
                assert!(building.is_none(), "two builders claimed it");
                building = Some(l);
            }
            Err(StoreError::Changed { now, .. }) => assert_eq!(now, "building"),
            Err(e) => panic!("{e:?}"),
        }
    }
    let mut l = building.expect("one builder claims it");
    // The log grows while it builds, and is kept to its end.
    l.log = format!("{}Successfully installed six-1.16.0\n", "x".repeat(100_000));
    let l = s.update_layer(LayerStatus::Building, l).await.unwrap();
    assert!(l.log.len() <= warden_core::layer::LOG_CAP);
    assert!(l.log.ends_with("six-1.16.0\n"));
    let mut done = l.clone();
    done.status = LayerStatus::Ready;
    done.lock = vec![LockedPackage {
        name: "six".into(),
        version: "1.16.0".into(),
        sha256: Some("ab".repeat(32)),
        integrity: None,
    }];
    done.size_bytes = 54_321;
    done.built_at = Some(now_ms());
    let ready = s.update_layer(LayerStatus::Building, done).await.unwrap();
    assert_eq!(s.get_layer(&layer.id).await.unwrap().unwrap(), ready);
    // A ready layer never changes again.
    let mut again = ready.clone();
    again.size_bytes = 1;
    assert!(matches!(
        s.update_layer(LayerStatus::Ready, again.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    again.status = LayerStatus::Failed;
    assert!(matches!(
        s.update_layer(LayerStatus::Building, again).await,
        Err(StoreError::Changed { .. })
    ));
    // A failed build names the package, and can be queued again.
    let other = queued_layer(&[pip("no-such-package-here", "==9.9.9")]);
    assert_ne!(other.id, layer.id);
    let (mut f, _) = s.insert_layer(other).await.unwrap();
    f.status = LayerStatus::Failed;
    f.error = Some(LayerError {
        package: Some("no-such-package-here".into()),
        message: "no matching distribution".into(),
    });
    f.log = "ERROR: No matching distribution found\n".into();
    let failed = s.update_layer(LayerStatus::Queued, f).await.unwrap();
    assert_eq!(
        failed.error.as_ref().unwrap().package.as_deref(),
        Some("no-such-package-here")
    );
    let mut retry = failed.clone();
    retry.status = LayerStatus::Queued;
    retry.error = None;
    retry.log.clear();
    let requeued = s.update_layer(LayerStatus::Failed, retry).await.unwrap();
    assert_eq!(
        (requeued.status, requeued.error.clone()),
        (LayerStatus::Queued, None)
    );
    let mut missing = queued_layer(&[pip("zzz", "==1")]);
    missing.status = LayerStatus::Building;
    assert!(matches!(
        s.update_layer(LayerStatus::Queued, missing).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn a_template_points_only_at_a_ready_layer_built_for_its_revision(ctx: Ctx) {
    let t = templates(&ctx);
    let s = &ctx.store;
    let body = json!({"id": "six", "runtime": "python",
        "packages": [{"ecosystem": "pip", "name": "six", "version": "==1.16.0"}]});
    let tpl = t.create(&admin(), &body).await.unwrap();
    let (layer, _) = s.insert_layer(queued_layer(&tpl.packages)).await.unwrap();
    // Not ready yet; not there at all.
    assert!(matches!(
        t.set_layer(&Actor::system(), "six", 1, Some(&layer.id)).await,
        Err(TemplateError::Conflict(m)) if m.contains("queued, not ready")
    ));
    assert!(matches!(
        t.set_layer(&Actor::system(), "six", 1, Some(&"0".repeat(64)))
            .await,
        Err(TemplateError::NotFound(_))
    ));
    let mut l = layer.clone();
    l.status = LayerStatus::Building;
    let l = s.update_layer(LayerStatus::Queued, l).await.unwrap();
    let mut l2 = l.clone();
    l2.status = LayerStatus::Ready;
    s.update_layer(LayerStatus::Building, l2).await.unwrap();
    let with = t
        .set_layer(&Actor::system(), "six", 1, Some(&layer.id))
        .await
        .unwrap();
    assert_eq!(
        (with.layer.as_deref(), with.revision),
        (Some(layer.id.as_str()), 1)
    );
    assert!(matches!(
        t.set_layer(&dev("alice"), "six", 1, None).await,
        Err(TemplateError::Forbidden(_))
    ));
    // A layer a template uses cannot be collected.
    assert!(matches!(
        s.delete_layer(&layer.id).await,
        Err(StoreError::InUse(_))
    ));
    // Replacing the template with the same packages (other spelling and
    // order) keeps its layer; other packages clear it.
    let same = json!({"name": "renamed", "runtime": "python", "revision": 1,
        "packages": [{"ecosystem": "pip", "name": "Six", "version": "==1.16.0"}]});
    let kept = t.replace(&admin(), "six", &same).await.unwrap();
    assert_eq!(
        (kept.layer.as_deref(), kept.revision),
        (Some(layer.id.as_str()), 2)
    );
    // A build that finished for revision 1 cannot land on revision 2.
    assert!(matches!(
        t.set_layer(&Actor::system(), "six", 1, None).await,
        Err(TemplateError::Stale { .. })
    ));
    let changed = json!({"runtime": "python", "revision": 2,
        "packages": [{"ecosystem": "pip", "name": "six", "version": "==1.15.0"}]});
    let cleared = t.replace(&admin(), "six", &changed).await.unwrap();
    assert_eq!((cleared.layer.as_deref(), cleared.revision), (None, 3));
    assert!(s.delete_layer(&layer.id).await.unwrap(), "unused now, it can go");
    assert!(!s.delete_layer(&layer.id).await.unwrap());
    assert!(
        template_trail(&ctx)
            .await
            .iter()
            .any(|(a, id, who)| a == "set_template_layer" && id == "six" && who == "system")
    );
}

async fn layers_are_listed_touched_and_collected(ctx: Ctx) {
    let s = &ctx.store;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut l = queued_layer(&[pip("pkg", &format!("=={i}"))]);
        l.created_at = 1_000 + i;
        let (l, _) = s.insert_layer(l).await.unwrap();
        ids.push(l.id);
    }
    ids.sort();
    let mut l = s.get_layer(&ids[0]).await.unwrap().unwrap();
    l.status = LayerStatus::Building;
    s.update_layer(LayerStatus::Queued, l).await.unwrap();
    // Touches only move forward.
    assert!(s.touch_layer(&ids[1], 50_000).await.unwrap());
    assert!(s.touch_layer(&ids[1], 40_000).await.unwrap());
    assert_eq!(
        s.get_layer(&ids[1]).await.unwrap().unwrap().last_used_at,
        Some(50_000)
    );
    assert!(!s.touch_layer(&"f".repeat(64), 1).await.unwrap());
    let page = s
        .list_layers(LayerFilter {
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|l| l.id.clone()).collect::<Vec<_>>(),
        ids[..3]
    );
    let rest = s
        .list_layers(LayerFilter {
            cursor: page.next_cursor,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 2);
    let building = s
        .list_layers(LayerFilter {
            status: Some(LayerStatus::Building),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(building.items.len(), 1);
    // Unused since 10 s: all but the one used at 50 s.
    let stale = s
        .list_layers(LayerFilter {
            unused_since: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stale.items.len(), 4);
    assert!(stale.items.iter().all(|l| l.id != ids[1]));
}

async fn corrupt_templates_and_layers_are_errors_naming_them(ctx: Ctx) {
    fn corrupt<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
        match r {
            Err(StoreError::Corrupt { record, reason }) => format!("{record}: {reason}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    let t = templates(&ctx);
    t.create(&admin(), &json!({"id": "c", "runtime": "shell"}))
        .await
        .unwrap();
    let pool = ctx.store.pool();
    sqlx::query("UPDATE templates SET resources = '{\"cpu_cores\": \"lots\"}' WHERE id = 'c'")
        .execute(pool)
        .await
        .unwrap();
    assert!(corrupt(ctx.store.get_template("c").await).starts_with("template c: resources:"));
    sqlx::query("UPDATE templates SET resources = '{}', runtime = 'cobol' WHERE id = 'c'")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        corrupt(ctx.store.list_templates(TemplateFilter::default()).await),
        "template c: unknown runtime `cobol`"
    );
    let (l, _) = ctx.store.insert_layer(queued_layer(&[])).await.unwrap();
    sqlx::query("UPDATE layers SET status = 'done' WHERE id = $1")
        .bind(&l.id)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        corrupt(ctx.store.get_layer(&l.id).await),
        format!("layer {}: unknown status `done`", l.id)
    );
}

fn session(app: &str, node: &str) -> Session {
    let now = now_ms();
    Session {
        id: new_id("ses"),
        app: app.into(),
        template: "python-basic".into(),
        status: SessionStatus::Creating,
        status_reason: None,
        resources: SessionResources {
            cpu_cores: 0.5,
            memory_mb: 256,
            disk_mb: 100,
            pids: 64,
        },
        idle_timeout_secs: 60,
        max_lifetime_secs: 3600,
        env: std::collections::BTreeMap::from([("GREETING".into(), "hi there".into())]),
        network: vec!["pypi.org:443".into()],
        layer: None,
        node: node.into(),
        created_at: now,
        started_at: None,
        last_active_at: now,
        ended_at: None,
        executions: 0,
    }
}

fn moving(from: &[SessionStatus], to: SessionStatus, reason: Option<&str>) -> SessionMove {
    SessionMove {
        from: from.to_vec(),
        to,
        reason: reason.map(Into::into),
        at: now_ms(),
        node: None,
    }
}

async fn sessions_move_only_from_where_they_are_and_are_lost_with_their_node(ctx: Ctx) {
    use SessionStatus::*;
    let s = &ctx.store;
    let a = session("shop", "node-a");
    s.insert_session(a.clone()).await.unwrap();
    assert_eq!(
        s.get_session(&a.id).await.unwrap().unwrap(),
        a,
        "it reads back whole"
    );
    assert!(matches!(
        s.insert_session(a.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    // creating -> running sets started_at.
    let running = s
        .move_session(&a.id, moving(&[Creating], Running, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(running.status, Running);
    assert!(running.started_at.is_some() && running.ended_at.is_none());
    // A move from a state it is no longer in changes nothing.
    assert_eq!(
        s.move_session(&a.id, moving(&[Creating], Failed, Some("late")))
            .await
            .unwrap(),
        None
    );
    // Two racing ends: exactly one wins, with its reason.
    let (x, y) = tokio::join!(
        s.move_session(&a.id, moving(&[Creating, Running], Terminated, Some("asked"))),
        s.move_session(&a.id, moving(&[Creating, Running], Expired, Some("idle"))),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(x.is_some() != y.is_some(), "one winner: {x:?} {y:?}");
    let ended = s.get_session(&a.id).await.unwrap().unwrap();
    assert!(ended.status == Terminated || ended.status == Expired);
    assert_eq!(
        ended.status_reason.as_deref(),
        Some(if ended.status == Terminated {
            "asked"
        } else {
            "idle"
        })
    );
    assert!(ended.ended_at.is_some());
    assert_eq!(ended.started_at, running.started_at);
    assert!(matches!(
        s.move_session("ses_missing", moving(&[Running], Lost, Some("x")))
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Activity: last_active_at never moves back; executions add up.
    let b = session("shop", "node-a");
    s.insert_session(b.clone()).await.unwrap();
    s.touch_session(&b.id, &b.node, b.last_active_at + 5_000, 2)
        .await
        .unwrap();
    s.touch_session(&b.id, &b.node, b.last_active_at + 1_000, 1)
        .await
        .unwrap();
    let touched = s.get_session(&b.id).await.unwrap().unwrap();
    assert_eq!(touched.last_active_at, b.last_active_at + 5_000);
    assert_eq!(touched.executions, 3);
    // Another node's live session is not this node's to lose.
    let c = session("blog", "node-b");
    s.insert_session(c.clone()).await.unwrap();
    s.move_session(&c.id, moving(&[Creating], Running, None))
        .await
        .unwrap();
    assert_eq!(
        s.lose_sessions("node-a", "the server restarted", now_ms())
            .await
            .unwrap(),
        1
    );
    let lost = s.get_session(&b.id).await.unwrap().unwrap();
    assert_eq!(lost.status, Lost);
    assert_eq!(lost.status_reason.as_deref(), Some("the server restarted"));
    assert!(lost.ended_at.is_some());
    assert_eq!(s.get_session(&c.id).await.unwrap().unwrap().status, Running);
    assert_eq!(
        s.get_session(&a.id).await.unwrap().unwrap(),
        ended,
        "a final session is not lost again"
    );
    assert_eq!(s.lose_sessions("node-a", "again", now_ms()).await.unwrap(), 0);
}

/// An execution in a session, as the session's node records it.
fn session_execution(s: &Session, node: &str, status: ExecutionStatus) -> Execution {
    Execution {
        source: ExecutionSource::Session {
            session: s.id.clone(),
            language: warden_core::SessionLanguage::Python,
            mode: warden_core::RunMode::Repl,
        },
        node: node.into(),
        ..execution(&s.app, "", status)
    }
}

async fn a_final_session_execution_moves_its_sessions_activity_in_the_same_statement(ctx: Ctx) {
    use ExecutionStatus::*;
    let s = &ctx.store;
    let a = session("shop", "node-a");
    s.insert_session(a.clone()).await.unwrap();
    let at = a.last_active_at;
    let count = |id: String| async move {
        let now = s.get_session(&id).await.unwrap().unwrap();
        (now.executions, now.last_active_at)
    };
    // Recorded running at once (the fast path), then final: counted, and
    // the session's activity is the execution's end.
    let mut e = session_execution(&a, "node-a", Running);
    e.started_at = Some(at + 10);
    s.insert_execution(e.clone()).await.unwrap();
    assert_eq!(count(a.id.clone()).await, (0, at), "not final yet");
    e.status = Success;
    e.finished_at = Some(at + 2_000);
    assert!(s.update_execution(e.clone()).await.unwrap());
    assert_eq!(count(a.id.clone()).await, (1, at + 2_000));
    // Queued, running, final: counted once; activity never moves back.
    let mut q = session_execution(&a, "node-a", Queued);
    s.insert_execution(q.clone()).await.unwrap();
    q.status = Running;
    q.started_at = Some(at + 20);
    assert!(s.update_execution(q.clone()).await.unwrap());
    q.status = Failed;
    q.finished_at = Some(at + 1_000);
    assert!(s.update_execution(q.clone()).await.unwrap());
    assert_eq!(count(a.id.clone()).await, (2, at + 2_000));
    // A final record that is refused (final already) changes nothing.
    q.status = Success;
    assert!(!s.update_execution(q.clone()).await.unwrap());
    assert_eq!(count(a.id.clone()).await, (2, at + 2_000));
    // Cancelled before its turn: activity, but not counted.
    let mut c = session_execution(&a, "node-a", Queued);
    s.insert_execution(c.clone()).await.unwrap();
    c.status = Cancelled;
    c.finished_at = Some(at + 3_000);
    assert!(s.update_execution(c).await.unwrap());
    assert_eq!(count(a.id.clone()).await, (2, at + 3_000));
    // A node that no longer holds the session moves nothing.
    let mut cut = session_execution(&a, "node-b", Running);
    cut.started_at = Some(at + 30);
    s.insert_execution(cut.clone()).await.unwrap();
    cut.status = Success;
    cut.finished_at = Some(at + 9_000);
    assert!(s.update_execution(cut).await.unwrap());
    assert_eq!(count(a.id.clone()).await, (2, at + 3_000));
    // A node's restart interrupts its started ones: they ran, so they count.
    let mut r = session_execution(&a, "node-a", Running);
    r.started_at = Some(at + 40);
    s.insert_execution(r).await.unwrap();
    s.interrupt_unfinished("node-a", "the server restarted")
        .await
        .unwrap();
    assert_eq!(count(a.id.clone()).await.0, 3);
    // A plugin's execution has no session: nothing else moves.
    let mut p = execution("shop", "hello", Running);
    s.insert_execution(p.clone()).await.unwrap();
    p.status = Success;
    p.finished_at = Some(at + 10_000);
    assert!(s.update_execution(p).await.unwrap());
    assert_eq!(count(a.id.clone()).await.0, 3);
}

async fn sessions_are_listed_filtered_counted_and_deleted_once_ended(ctx: Ctx) {
    let s = &ctx.store;
    let mut ids = Vec::new();
    for i in 0..12 {
        let mut x = session(if i % 3 == 0 { "blog" } else { "shop" }, "node-a");
        if i % 4 == 0 {
            x.template = "node-basic".into();
        }
        s.insert_session(x.clone()).await.unwrap();
        if i % 2 == 0 {
            s.move_session(
                &x.id,
                moving(&[SessionStatus::Creating], SessionStatus::Running, None),
            )
            .await
            .unwrap()
            .unwrap();
        }
        if i >= 10 {
            s.move_session(
                &x.id,
                moving(
                    &[SessionStatus::Creating, SessionStatus::Running],
                    SessionStatus::Failed,
                    Some("its box did not start"),
                ),
            )
            .await
            .unwrap()
            .unwrap();
        }
        ids.push(x.id);
    }
    // Pages of 5, newest first, nothing missed.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let p = s
            .list_sessions(SessionFilter {
                cursor: cursor.clone(),
                limit: 5,
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(p.items.into_iter().map(|x| x.id));
        cursor = p.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let blog_node = s
        .list_sessions(SessionFilter {
            app: Some("blog".into()),
            template: Some("node-basic".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // Only i = 0 is both the blog's (i % 3) and from node-basic (i % 4).
    assert_eq!(blog_node.items.len(), 1);
    assert!(
        blog_node
            .items
            .iter()
            .all(|x| x.app == "blog" && x.template == "node-basic")
    );
    let running = s
        .list_sessions(SessionFilter {
            status: Some(SessionStatus::Running),
            node: Some("node-a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(running.items.len(), 5, "0, 2, 4, 6, 8 run; 10 failed");
    // Usage: the live ones (10 and 11 ended), their reservations.
    assert_eq!(
        s.session_usage(None).await.unwrap(),
        SessionUsage {
            sessions: 10,
            memory_mb: 10 * 256,
            disk_mb: 10 * 100
        }
    );
    let blog = s.session_usage(Some("blog")).await.unwrap();
    assert_eq!(blog.sessions, 4, "0, 3, 6, 9");
    assert_eq!(
        s.session_usage(Some("nobody")).await.unwrap(),
        SessionUsage::default()
    );
    // A live session's record cannot be deleted; an ended one's can, once.
    assert!(matches!(
        s.delete_session(&ids[0]).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.delete_session(&ids[10]).await.unwrap());
    assert!(s.get_session(&ids[10]).await.unwrap().is_none());
    assert!(!s.delete_session(&ids[10]).await.unwrap());
}

async fn session_executions_are_ordinary_records(ctx: Ctx) {
    let s = &ctx.store;
    let x = session("shop", "node-a");
    s.insert_session(x.clone()).await.unwrap();
    let mut ids = Vec::new();
    for (i, (language, mode)) in [
        (SessionLanguage::Python, RunMode::Repl),
        (SessionLanguage::Javascript, RunMode::Handler),
        (SessionLanguage::Shell, RunMode::Script),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = execution("shop", "unused", ExecutionStatus::Queued);
        e.source = ExecutionSource::Session {
            session: x.id.clone(),
            language,
            mode,
        };
        e.mode = if i == 0 {
            ExecutionMode::Async
        } else {
            ExecutionMode::Sync
        };
        s.insert_execution(e.clone()).await.unwrap();
        assert_eq!(s.get_execution(&e.id).await.unwrap().unwrap(), e);
        ids.push(e.id);
    }
    // A plugin's execution beside them.
    s.insert_execution(execution("shop", "a.b.c", ExecutionStatus::Queued))
        .await
        .unwrap();
    let mine = s
        .list_executions(ExecutionFilter {
            session: Some(x.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.items.len(), 3);
    assert!(
        mine.items
            .iter()
            .all(|e| e.source.session() == Some(x.id.as_str()))
    );
    // Ended like any other; started but unfinished ones are interrupted at
    // the node's next start, queued ones too (a session's never wait in the
    // shared queue: no other node could run them).
    let mut done = s.get_execution(&ids[1]).await.unwrap().unwrap();
    done.status = ExecutionStatus::Cancelled;
    done.error_kind = Some(ErrorKind::Cancelled);
    done.result =
        Some(serde_json::from_value(json!({"status": "cancelled", "interpreter_died": true})).unwrap());
    assert!(s.update_execution(done.clone()).await.unwrap());
    let back = s.get_execution(&ids[1]).await.unwrap().unwrap();
    assert_eq!(back, done);
    assert!(back.result.unwrap().interpreter_died);
    assert_eq!(s.interrupt_unfinished("node-a", "restarted").await.unwrap(), 3);
    assert_eq!(
        s.get_execution(&ids[0]).await.unwrap().unwrap().status,
        ExecutionStatus::Interrupted
    );
    assert!(
        s.claim_next_execution("node-b", now_ms())
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_corrupt_session_is_an_error_naming_it(ctx: Ctx) {
    let s = &ctx.store;
    let x = session("shop", "node-a");
    s.insert_session(x.clone()).await.unwrap();
    for (column, value, expected) in [
        ("status", "sleeping", "unknown status `sleeping`"),
        ("env", "[1]", "env"),
        ("network", "{}", "network"),
    ] {
        let sql = format!("UPDATE sessions SET {column} = $1 WHERE id = $2");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .bind(&x.id)
            .execute(s.pool())
            .await
            .unwrap();
        match s.get_session(&x.id).await.unwrap_err() {
            StoreError::Corrupt { record, reason } => {
                assert_eq!(record, format!("session {}", x.id));
                assert!(reason.contains(expected), "{reason}");
            }
            other => panic!("{column}: expected Corrupt, got {other:?}"),
        }
        assert!(matches!(
            s.list_sessions(SessionFilter::default()).await,
            Err(StoreError::Corrupt { .. })
        ));
        let repair = match column {
            "status" => "UPDATE sessions SET status = 'creating' WHERE id = $1",
            "env" => "UPDATE sessions SET env = '{\"GREETING\": \"hi there\"}' WHERE id = $1",
            _ => "UPDATE sessions SET network = '[\"pypi.org:443\"]' WHERE id = $1",
        };
        sqlx::query(repair).bind(&x.id).execute(s.pool()).await.unwrap();
        assert_eq!(s.get_session(&x.id).await.unwrap().unwrap(), x);
    }
    let mut e = execution("shop", "", ExecutionStatus::Queued);
    e.source = ExecutionSource::Session {
        session: x.id.clone(),
        language: SessionLanguage::Python,
        mode: RunMode::Script,
    };
    s.insert_execution(e.clone()).await.unwrap();
    sqlx::query("UPDATE executions SET language = 'cobol' WHERE id = $1")
        .bind(&e.id)
        .execute(s.pool())
        .await
        .unwrap();
    assert!(matches!(
        s.get_execution(&e.id).await,
        Err(StoreError::Corrupt { reason, .. }) if reason.contains("unknown language `cobol`")
    ));
}

fn snapshot(app: &str, session: &str) -> Snapshot {
    let id = new_id("snp");
    Snapshot {
        object: Snapshot::object_key(app, &id),
        id,
        app: app.into(),
        session: session.into(),
        template: "python-basic".into(),
        status: SnapshotStatus::Creating,
        trigger: SnapshotTrigger::Request,
        error: None,
        size_bytes: 0,
        files: 0,
        attempts: 1,
        node: "n1".into(),
        created_at: 1_000,
        ready_at: None,
    }
}

async fn snapshots_move_once_and_are_listed_newest_first(ctx: Ctx) {
    let s = &ctx.store;
    let first = snapshot("app_a", "ses_1");
    s.insert_snapshot(first.clone()).await.unwrap();
    assert!(matches!(
        s.insert_snapshot(first.clone()).await.unwrap_err(),
        StoreError::Conflict(_)
    ));
    assert_eq!(s.get_snapshot(&first.id).await.unwrap().unwrap(), first);
    assert!(
        s.latest_snapshot("ses_1").await.unwrap().is_none(),
        "not ready yet"
    );

    // Two nodes finish the same snapshot: one wins, the other learns its state.
    let mut ready = first.clone();
    ready.status = SnapshotStatus::Ready;
    ready.size_bytes = 10_240;
    ready.files = 3;
    ready.ready_at = Some(2_000);
    let mut failed = first.clone();
    failed.status = SnapshotStatus::Failed;
    failed.error = Some("the object store is down".into());
    let (a, b) = tokio::join!(
        s.update_snapshot(SnapshotStatus::Creating, ready.clone()),
        s.update_snapshot(SnapshotStatus::Creating, failed.clone())
    );
    let (won, lost) = match (a, b) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        other => panic!("exactly one must win: {other:?}"),
    };
    assert!(matches!(lost, StoreError::Changed { .. }), "{lost:?}");
    assert_eq!(s.get_snapshot(&first.id).await.unwrap().unwrap(), won);
    // A ready snapshot never changes again.
    if won.status == SnapshotStatus::Ready {
        assert!(matches!(
            s.update_snapshot(SnapshotStatus::Ready, failed.clone())
                .await
                .unwrap_err(),
            StoreError::Conflict(_)
        ));
        assert_eq!(s.latest_snapshot("ses_1").await.unwrap().unwrap().id, first.id);
    } else {
        // A failed one may be retried.
        let mut retry = won.clone();
        retry.status = SnapshotStatus::Creating;
        retry.attempts = 2;
        s.update_snapshot(SnapshotStatus::Failed, retry).await.unwrap();
        s.update_snapshot(SnapshotStatus::Creating, ready.clone())
            .await
            .unwrap();
        assert_eq!(s.latest_snapshot("ses_1").await.unwrap().unwrap().id, first.id);
    }
    let mut gone = snapshot("app_a", "ses_1");
    gone.status = SnapshotStatus::Ready;
    assert!(matches!(
        s.update_snapshot(SnapshotStatus::Creating, gone)
            .await
            .unwrap_err(),
        StoreError::NotFound(_)
    ));

    // Newest first, per app and per session, in pages.
    let mut ids = vec![first.id.clone()];
    for i in 0..4 {
        let mut n = snapshot(if i % 2 == 0 { "app_a" } else { "app_b" }, "ses_2");
        n.status = SnapshotStatus::Ready;
        s.insert_snapshot(n.clone()).await.unwrap();
        ids.push(n.id);
    }
    let newest = s.latest_snapshot("ses_2").await.unwrap().unwrap();
    assert_eq!(&newest.id, ids.last().unwrap());
    let page = s
        .list_snapshots(SnapshotFilter {
            app: Some("app_a".into()),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<_> = page.items.iter().map(|s| s.id.clone()).collect();
    assert_eq!(got, vec![ids[3].clone(), ids[1].clone()]);
    let rest = s
        .list_snapshots(SnapshotFilter {
            app: Some("app_a".into()),
            cursor: page.next_cursor,
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![ids[0].clone()]
    );
    assert!(rest.next_cursor.is_none());
    let of_b = s
        .list_snapshots(SnapshotFilter {
            app: Some("app_b".into()),
            session: Some("ses_2".into()),
            status: Some(SnapshotStatus::Ready),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_b.items.len(), 2);
    assert!(of_b.items.iter().all(|s| s.app == "app_b"));

    assert!(s.delete_snapshot(&ids[1]).await.unwrap());
    assert!(!s.delete_snapshot(&ids[1]).await.unwrap());
    assert!(s.get_snapshot(&ids[1]).await.unwrap().is_none());

    // A corrupt row is an error naming it.
    sqlx::query("UPDATE snapshots SET trigger = 'whim' WHERE id = $1")
        .bind(&ids[2])
        .execute(s.pool())
        .await
        .unwrap();
    let err = s.get_snapshot(&ids[2]).await.unwrap_err().to_string();
    assert!(err.contains(&ids[2]) && err.contains("whim"), "{err}");
}

async fn nodes_beat_and_never_go_back_in_time(ctx: Ctx) {
    let s = &ctx.store;
    let node = |id: &str, at: i64| Node {
        id: id.into(),
        advertise_url: Some(format!("http://127.0.0.1:1/{id}")),
        version: "1".into(),
        started_at: 100,
        heartbeat_at: at,
    };
    assert!(s.get_node("b").await.unwrap().is_none());
    s.heartbeat(node("b", 1_000)).await.unwrap();
    s.heartbeat(node("a", 2_000)).await.unwrap();
    s.heartbeat(node("b", 5_000)).await.unwrap();
    // A delayed, older heartbeat does not make a node look older.
    let mut late = node("b", 3_000);
    late.advertise_url = Some("http://127.0.0.1:2".into());
    s.heartbeat(late).await.unwrap();
    let b = s.get_node("b").await.unwrap().unwrap();
    assert_eq!(b.heartbeat_at, 5_000);
    assert_eq!(b.advertise_url.as_deref(), Some("http://127.0.0.1:2"));
    let all = s.list_nodes().await.unwrap();
    assert_eq!(all.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(all[0].is_dead(20_000, 10_000));
    assert!(!all[1].is_dead(14_000, 10_000));
}

async fn a_dead_nodes_session_is_claimed_by_one_node(ctx: Ctx) {
    let s = ctx.store.clone();
    let live = session("shop", "dead");
    s.insert_session(live.clone()).await.unwrap();
    let mut ended = session("shop", "dead");
    ended.status = SessionStatus::Terminated;
    s.insert_session(ended.clone()).await.unwrap();
    // Four nodes race for it: one wins.
    let mut racers = Vec::new();
    for n in 0..4 {
        let (s, id) = (s.clone(), live.id.clone());
        racers.push(tokio::spawn(async move {
            s.claim_session(&id, "dead", &format!("n{n}")).await.unwrap()
        }));
    }
    let mut wins = 0;
    for r in racers {
        wins += usize::from(r.await.unwrap());
    }
    assert_eq!(wins, 1);
    let now = s.get_session(&live.id).await.unwrap().unwrap();
    assert!(now.node.starts_with('n'), "{now:?}");
    // The dead node, back, cannot claim it again; an ended session is never claimed.
    assert!(!s.claim_session(&live.id, "dead", "dead").await.unwrap());
    assert!(!s.claim_session(&ended.id, "dead", "n0").await.unwrap());
    assert!(!s.claim_session("ses_nothing", "dead", "n0").await.unwrap());
}

async fn a_node_cut_off_never_writes_over_a_session_another_node_claimed(ctx: Ctx) {
    use SessionStatus::*;
    let s = ctx.store.clone();
    let mut cut = session("shop", "cut");
    cut.status = Running;
    s.insert_session(cut.clone()).await.unwrap();
    let beat = |at: i64| warden_core::Node {
        id: "cut".into(),
        advertise_url: None,
        version: "0".into(),
        started_at: 1_000,
        heartbeat_at: at,
    };
    s.heartbeat(beat(10_000)).await.unwrap();
    // Its heartbeat is not older than the cut-off: not claimed.
    assert!(
        !s.claim_dead_session(&cut.id, "cut", "other", 10_000)
            .await
            .unwrap()
    );
    assert_eq!(s.get_session(&cut.id).await.unwrap().unwrap().node, "cut");
    // Older: claimed once.
    assert!(
        s.claim_dead_session(&cut.id, "cut", "other", 10_001)
            .await
            .unwrap()
    );
    assert!(
        !s.claim_dead_session(&cut.id, "cut", "third", 10_001)
            .await
            .unwrap()
    );
    // The cut-off node, back, can neither end it nor touch it.
    let mut m = moving(&[Creating, Running], Expired, Some("idle"));
    m.node = Some("cut".into());
    assert_eq!(s.move_session(&cut.id, m.clone()).await.unwrap(), None);
    s.touch_session(&cut.id, "cut", cut.last_active_at + 9_000, 4)
        .await
        .unwrap();
    let now = s.get_session(&cut.id).await.unwrap().unwrap();
    assert_eq!(
        (now.node.as_str(), now.status, now.executions),
        ("other", Running, 0)
    );
    assert_eq!(now.last_active_at, cut.last_active_at);
    // The node that claimed it can.
    s.touch_session(&cut.id, "other", cut.last_active_at + 9_000, 1)
        .await
        .unwrap();
    m.node = Some("other".into());
    let moved = s.move_session(&cut.id, m).await.unwrap().unwrap();
    assert_eq!((moved.status, moved.executions), (Expired, 1));
    // A node that never beat is dead to everyone: its session is claimed.
    let mut silent = session("shop", "never-beat");
    silent.status = Running;
    s.insert_session(silent.clone()).await.unwrap();
    assert!(
        s.claim_dead_session(&silent.id, "never-beat", "other", 1)
            .await
            .unwrap()
    );
}

async fn runs_are_ordinary_records_with_their_language_and_template(ctx: Ctx) {
    let s = &ctx.store;
    let mut ids = Vec::new();
    for (language, template) in [
        (RunLanguage::Python, Some("dify")),
        (RunLanguage::Go, None),
        (RunLanguage::Cpp, None),
    ] {
        let mut e = execution("shop", "", ExecutionStatus::Running);
        e.source = ExecutionSource::Run {
            language,
            template: template.map(str::to_owned),
        };
        let mut compile = warden_core::ExecutionResult::platform_error("X", "y", None);
        compile.stderr = "main.cpp:1: error".into();
        let mut result =
            warden_core::ExecutionResult::platform_error("CompileError", "did not compile", None);
        result.compile = Some(Box::new(compile));
        s.insert_execution(e.clone()).await.unwrap();
        e.status = ExecutionStatus::Failed;
        e.error_kind = Some(ErrorKind::CompileError);
        e.result = Some(result);
        e.finished_at = Some(now_ms());
        assert!(s.update_execution(e.clone()).await.unwrap());
        assert_eq!(s.get_execution(&e.id).await.unwrap().unwrap(), e);
        ids.push(e.id);
    }
    let listed = s
        .list_executions(ExecutionFilter {
            app: Some("shop".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 3);
    assert!(listed.items.iter().all(|e| e.source.kind() == "run"));
    // A run whose language is not one of the six is corrupt, and says so.
    sqlx::query("UPDATE executions SET language = 'cobol' WHERE id = $1")
        .bind(&ids[0])
        .execute(s.pool())
        .await
        .unwrap();
    assert!(matches!(
        s.get_execution(&ids[0]).await,
        Err(StoreError::Corrupt { reason, .. }) if reason.contains("unknown language `cobol`")
    ));
    sqlx::query("UPDATE executions SET language = NULL WHERE id = $1")
        .bind(&ids[1])
        .execute(s.pool())
        .await
        .unwrap();
    assert!(matches!(
        s.get_execution(&ids[1]).await,
        Err(StoreError::Corrupt { reason, .. }) if reason.contains("without its language")
    ));
}

async fn signed_versions_are_trusted_until_their_key_is_revoked(ctx: Ctx) {
    let alice = dev("alice");
    let minisign::KeyPair { pk, sk } = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let key = ctx
        .registry
        .register_signing_key(&alice, "laptop", &pk.to_box().unwrap().to_string())
        .await
        .unwrap();
    // One key id, one registration, across owners.
    let again = ctx
        .registry
        .register_signing_key(&dev("bob"), "copy", &pk.to_base64())
        .await
        .unwrap_err();
    assert!(again.to_string().contains(&key.id), "{again}");
    assert_eq!(
        ctx.store.list_signing_keys(Some("alice")).await.unwrap(),
        vec![key.clone()]
    );
    assert!(ctx.store.list_signing_keys(Some("bob")).await.unwrap().is_empty());

    let v = upload(&ctx, &alice, "1.0.0").await;
    let sig = minisign::sign(
        None,
        &sk,
        std::io::Cursor::new(v.package_sha256.as_bytes()),
        None,
        None,
    )
    .unwrap()
    .to_string();
    let signed = ctx
        .registry
        .sign(&alice, "vendor.greeting.say_hello", "1.0.0", &sig)
        .await
        .unwrap();
    assert_eq!(signed.signed_by.as_deref(), Some(key.id.as_str()));
    assert_eq!(signed.signature.as_deref(), Some(sig.as_str()));
    ctx.registry
        .submit(&alice, "vendor.greeting.say_hello", "1.0.0")
        .await
        .unwrap();
    let trusted = ctx
        .registry
        .approve_as(
            &admin(),
            "vendor.greeting.say_hello",
            "1.0.0",
            warden_core::TrustLevel::Trusted,
        )
        .await
        .unwrap();
    assert_eq!(trusted.trust_level, warden_core::TrustLevel::Trusted);
    // A trusted version loads (its signature checked again) ...
    ctx.registry.load_for_run(&trusted).await.unwrap();
    // ... until its key is revoked: then it is untrusted, in the same step.
    assert_eq!(ctx.registry.revoke_signing_key(&alice, &key.id).await.unwrap(), 1);
    let after = ctx
        .store
        .get_version("vendor.greeting.say_hello", "1.0.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.trust_level, warden_core::TrustLevel::Untrusted);
    assert!(after.revision > trusted.revision);
    // The record as it was read before the revocation no longer loads.
    let stale = warden_core::Version {
        revision: after.revision + 1,
        ..trusted
    };
    let e = ctx.registry.load_for_run(&stale).await.unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");
    let revoked_twice = ctx
        .registry
        .revoke_signing_key(&alice, &key.id)
        .await
        .unwrap_err();
    assert!(
        revoked_twice.to_string().contains("revoked already"),
        "{revoked_twice}"
    );
}

/// The plugin's generation as `shop`'s call of it reads it.
async fn generation(ctx: &Ctx) -> warden_core::Generation {
    ctx.registry
        .resolve_at("shop", "vendor.greeting.say_hello")
        .await
        .unwrap()
        .1
}

async fn every_write_that_moves_a_resolution_moves_the_generation(ctx: Ctx) {
    let code = "vendor.greeting.say_hello";
    let (root, alice) = (admin(), dev("alice"));
    active(&ctx, "1.0.0").await;
    ctx.registry.create_app(&root, "shop", "Shop").await.unwrap();
    ctx.registry.install(&root, "shop", code, None).await.unwrap();
    let mut seen = vec![generation(&ctx).await];
    // Each write below moves it; a read leaves it.
    let still = generation(&ctx).await;
    assert_eq!(still, seen[0], "reading does not move it");
    // A guarded record: written at the current generation, refused at an old one.
    let e = execution("shop", code, ExecutionStatus::Running);
    assert!(ctx.store.insert_execution_at(e.clone(), &seen[0]).await.unwrap());
    assert!(ctx.store.get_execution(&e.id).await.unwrap().is_some());
    // A new active version.
    active(&ctx, "2.0.0").await;
    seen.push(generation(&ctx).await);
    // A re-pin.
    ctx.registry
        .upgrade(&root, "shop", code, Some("1.0.0"))
        .await
        .unwrap();
    seen.push(generation(&ctx).await);
    // A deactivation (of the version not pinned, so 1.0.0 still resolves).
    ctx.registry.deactivate(&alice, code, "2.0.0").await.unwrap();
    seen.push(generation(&ctx).await);
    for pair in seen.windows(2) {
        assert!(pair[1].number > pair[0].number, "{seen:?}");
    }
    let old = seen[0].clone();
    let stale = execution("shop", code, ExecutionStatus::Running);
    assert!(
        !ctx.store.insert_execution_at(stale.clone(), &old).await.unwrap(),
        "a record at an old generation is refused"
    );
    assert!(
        ctx.store.get_execution(&stale.id).await.unwrap().is_none(),
        "and nothing is written"
    );
    let (e, call) = queued(0);
    let e = Execution {
        app: "shop".into(),
        source: ExecutionSource::Plugin {
            plugin: code.into(),
            version: "1.0.0".into(),
        },
        ..e
    };
    assert!(
        !ctx.store
            .enqueue_execution_at(e.clone(), call.clone(), &old)
            .await
            .unwrap()
    );
    assert!(ctx.store.get_execution(&e.id).await.unwrap().is_none());
    assert_eq!(queue_len(&ctx.store).await, 0, "nor a queue entry");
    let now = generation(&ctx).await;
    assert!(
        ctx.store
            .enqueue_execution_at(e.clone(), call, &now)
            .await
            .unwrap()
    );
    assert_eq!(queue_len(&ctx.store).await, 1);
    // An uninstall: the installation is gone, and so is the old resolution.
    ctx.registry.uninstall(&root, "shop", code).await.unwrap();
    let fresh = execution("shop", code, ExecutionStatus::Running);
    assert!(!ctx.store.insert_execution_at(fresh, &now).await.unwrap());
}

/// A sealed credential row (the store never sees a secret in the clear).
fn sealed(app: &str, plugin: Option<&str>, name: &str, sealed: &str) -> warden_core::credential::Credential {
    warden_core::credential::Credential {
        app: app.into(),
        plugin: plugin.map(str::to_owned),
        name: name.into(),
        spec: warden_core::credential::CredentialSpec {
            kind: warden_core::credential::CredentialKind::Bearer,
            hosts: vec!["api.example.com".into()],
        },
        key_id: "k1".into(),
        sealed: sealed.into(),
        created_at: 1,
        updated_at: 1,
    }
}

async fn installation_credentials_are_their_own_and_go_with_the_installation(ctx: Ctx) {
    let code = "vendor.greeting.say_hello";
    let root = admin();
    active(&ctx, "1.0.0").await;
    ctx.registry.create_app(&root, "shop", "").await.unwrap();
    ctx.registry.install(&root, "shop", code, None).await.unwrap();
    let s = &ctx.store;
    assert!(
        s.put_credential(sealed("shop", None, "github", "app-row"), NewAudit::default())
            .await
            .unwrap()
    );
    assert!(
        s.put_credential(
            sealed("shop", Some(code), "github", "inst-row"),
            NewAudit::default()
        )
        .await
        .unwrap()
    );
    // Replaced, not added; the app's row is untouched.
    let mut again = sealed("shop", Some(code), "github", "inst-row-2");
    again.updated_at = 2;
    assert!(!s.put_credential(again, NewAudit::default()).await.unwrap());
    let inst = s
        .get_installation_credential("shop", code, "github")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            inst.sealed.as_str(),
            inst.plugin.as_deref(),
            inst.created_at,
            inst.updated_at
        ),
        ("inst-row-2", Some(code), 1, 2)
    );
    let app = s.get_credential("shop", "github").await.unwrap().unwrap();
    assert_eq!((app.sealed.as_str(), app.plugin), ("app-row", None));
    assert_eq!(s.list_credentials("shop").await.unwrap().len(), 1);
    assert_eq!(
        s.list_installation_credentials("shop", code).await.unwrap().len(),
        1
    );
    assert!(
        s.get_installation_credential("shop", "other.plugin", "github")
            .await
            .unwrap()
            .is_none()
    );
    // Deleted by name in its own scope.
    s.put_credential(sealed("shop", Some(code), "maps", "m"), NewAudit::default())
        .await
        .unwrap();
    assert!(
        s.delete_installation_credential("shop", code, "maps", NewAudit::default())
            .await
            .unwrap()
    );
    assert!(
        !s.delete_installation_credential("shop", code, "maps", NewAudit::default())
            .await
            .unwrap()
    );
    // Uninstalled: its credentials go, the app's stay.
    ctx.registry.uninstall(&root, "shop", code).await.unwrap();
    assert!(
        s.list_installation_credentials("shop", code)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.get_credential("shop", "github").await.unwrap().is_some());
    ctx.registry.install(&root, "shop", code, None).await.unwrap();
    assert!(
        s.get_installation_credential("shop", code, "github")
            .await
            .unwrap()
            .is_none()
    );
}
