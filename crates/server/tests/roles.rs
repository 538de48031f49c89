//! Every endpoint of the OpenAPI document, called with every role and with
//! no key: allowed roles get past authorization, the others get 403, no key
//! gets 401. An endpoint missing from the table below fails the test, so a
//! new endpoint cannot ship without deciding who may call it.
//!
//! "Not yours" is answered exactly like "not there": a developer asking for
//! another developer's plugin (any endpoint under `/v1/plugins/{code}`), a
//! developer or another app asking for an execution it may not see, or
//! another app asking for a session, gets the 404 a missing one gets, byte
//! for byte but for the identifier.

mod common;

use std::collections::BTreeMap;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CODE: &str = "vendor.greeting.say_hello";

/// Who may call what. Roles: `admin`; `owner` (the developer who owns the
/// fixture plugin); `dev` (another developer); `app` (the app the plugin is
/// installed in, which ran the fixture execution); `app2` (another app).
/// `public` endpoints need no key. The fixture session belongs to `app`.
fn table() -> BTreeMap<(&'static str, &'static str), &'static [&'static str]> {
    const ADMIN: &[&str] = &["admin"];
    const DEVS: &[&str] = &["admin", "owner", "dev"];
    const OWNER: &[&str] = &["admin", "owner"];
    const APP: &[&str] = &["admin", "app"];
    const APPS: &[&str] = &["admin", "app", "app2"];
    const EXEC: &[&str] = &["admin", "owner", "app"];
    const ALL: &[&str] = &["admin", "owner", "dev", "app", "app2"];
    const PUBLIC: &[&str] = &["public"];
    BTreeMap::from([
        (("POST", "/v1/plugins"), DEVS),
        (("GET", "/v1/plugins"), DEVS),
        (("GET", "/v1/plugins/{code}"), OWNER),
        (("GET", "/v1/plugins/{code}/versions"), OWNER),
        (("GET", "/v1/plugins/{code}/versions/{version}"), OWNER),
        (("DELETE", "/v1/plugins/{code}/versions/{version}"), OWNER),
        (("GET", "/v1/plugins/{code}/versions/{version}/manifest"), OWNER),
        (("GET", "/v1/plugins/{code}/versions/{version}/report"), OWNER),
        (("GET", "/v1/plugins/{code}/versions/{version}/audit"), OWNER),
        (("GET", "/v1/plugins/{code}/versions/{version}/runtime"), OWNER),
        (("GET", "/v1/plugins/{code}/versions/{version}/package"), OWNER),
        (("POST", "/v1/plugins/{code}/versions/{version}/submit"), OWNER),
        (("POST", "/v1/plugins/{code}/versions/{version}/approve"), ADMIN),
        (("POST", "/v1/plugins/{code}/versions/{version}/reject"), ADMIN),
        (("PUT", "/v1/plugins/{code}/versions/{version}/signature"), OWNER),
        (("POST", "/v1/signing-keys"), DEVS),
        (("GET", "/v1/signing-keys"), DEVS),
        (("DELETE", "/v1/signing-keys/{id}"), DEVS),
        (("POST", "/v1/plugins/{code}/versions/{version}/activate"), OWNER),
        (
            ("POST", "/v1/plugins/{code}/versions/{version}/deactivate"),
            OWNER,
        ),
        (("POST", "/v1/apps"), ADMIN),
        (("GET", "/v1/apps"), ADMIN),
        (("GET", "/v1/apps/{app}"), APP),
        (("GET", "/v1/apps/{app}/installations"), APP),
        (("GET", "/v1/apps/{app}/credentials"), APP),
        (("PUT", "/v1/apps/{app}/credentials/{name}"), APP),
        (("GET", "/v1/apps/{app}/credentials/{name}"), APP),
        (("DELETE", "/v1/apps/{app}/credentials/{name}"), APP),
        (("GET", "/v1/apps/{app}/installations/{plugin}/credentials"), APP),
        (
            ("PUT", "/v1/apps/{app}/installations/{plugin}/credentials/{name}"),
            APP,
        ),
        (
            ("GET", "/v1/apps/{app}/installations/{plugin}/credentials/{name}"),
            APP,
        ),
        (
            (
                "DELETE",
                "/v1/apps/{app}/installations/{plugin}/credentials/{name}",
            ),
            APP,
        ),
        (("POST", "/v1/apps/{app}/installations"), ADMIN),
        (("PUT", "/v1/apps/{app}/installations/{plugin}"), ADMIN),
        (("DELETE", "/v1/apps/{app}/installations/{plugin}"), ADMIN),
        (("POST", "/v1/apps/{app}/plugins/{code}/execute"), APP),
        (("POST", "/v1/run"), APPS),
        (("GET", "/v1/executions"), APPS),
        (("GET", "/v1/executions/{id}"), EXEC),
        (("GET", "/v1/executions/{id}/artifacts/{index}"), EXEC),
        (("GET", "/v1/executions/{id}/events"), EXEC),
        (("POST", "/v1/executions/{id}/cancel"), APP),
        (("POST", "/v1/sessions"), APPS),
        (("GET", "/v1/sessions"), APPS),
        (("GET", "/v1/sessions/{id}"), APP),
        (("DELETE", "/v1/sessions/{id}"), APP),
        (("POST", "/v1/sessions/{id}/terminate"), APP),
        (("POST", "/v1/sessions/{id}/executions"), APP),
        (("GET", "/v1/sessions/{id}/executions"), APP),
        (("GET", "/v1/sessions/{id}/files"), APP),
        (("POST", "/v1/sessions/{id}/files"), APP),
        (("GET", "/v1/sessions/{id}/files/{path}"), APP),
        (("PUT", "/v1/sessions/{id}/files/{path}"), APP),
        (("DELETE", "/v1/sessions/{id}/files/{path}"), APP),
        (("POST", "/v1/sessions/{id}/directories"), APP),
        (("POST", "/v1/sessions/{id}/snapshots"), APP),
        (("POST", "/v1/sessions/{id}/packages"), APP),
        (("GET", "/v1/snapshots"), APPS),
        (("GET", "/v1/snapshots/{id}"), APP),
        (("DELETE", "/v1/snapshots/{id}"), APP),
        (("GET", "/v1/templates"), ALL),
        (("POST", "/v1/templates"), ADMIN),
        (("GET", "/v1/templates/{id}"), ALL),
        (("PUT", "/v1/templates/{id}"), ADMIN),
        (("DELETE", "/v1/templates/{id}"), ADMIN),
        (("POST", "/v1/templates/{id}/build"), ADMIN),
        (("GET", "/v1/layers/{id}"), ALL),
        (("GET", "/v1/layers/{id}/events"), ALL),
        (("GET", "/v1/audit"), ADMIN),
        (("POST", "/v1/keys"), ADMIN),
        (("GET", "/v1/keys"), ADMIN),
        (("DELETE", "/v1/keys/{id}"), ADMIN),
        (("GET", "/v1/me"), ALL),
        (("GET", "/v1/nodes"), ADMIN),
        (("GET", "/healthz"), PUBLIC),
        (("GET", "/readyz"), PUBLIC),
        (("GET", "/metrics"), PUBLIC),
    ])
}

/// Roles that get, instead of 403, exactly the answer for a resource that
/// does not exist: they must not learn that it does.
fn hidden(method: &str, path: &str) -> &'static [&'static str] {
    let allowed = table()[&(method, path)];
    if path.starts_with("/v1/plugins/{code}") && allowed.contains(&"owner") {
        &["dev"]
    } else if path == "/v1/executions/{id}/cancel" {
        // Developers may never cancel (403 whatever the id).
        &["app2"]
    } else if path.starts_with("/v1/executions/{id}") {
        &["dev", "app2"]
    } else if path.starts_with("/v1/sessions/{id}") || path.starts_with("/v1/snapshots/{id}") {
        // Developers may not use sessions at all (403 whatever the id).
        &["app2"]
    } else {
        &[]
    }
}

/// A layer id (none is built in this test).
const LAYER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A plugin code, an execution id and a session id that exist nowhere.
const MISSING_CODE: &str = "vendor.nothing.here";
const MISSING_EXEC: &str = "exe_0000000000000000000000";
const MISSING_SESSION: &str = "ses_0000000000000000000000";
const MISSING_SNAPSHOT: &str = "snp_0000000000000000000000";

fn body_for(method: &str, path: &str) -> Option<Value> {
    match (method, path) {
        ("POST", "/v1/apps") => Some(json!({"id": "zz-new"})),
        ("POST", "/v1/keys") => Some(json!({"name": "tmp", "role": "developer"})),
        ("POST", "/v1/apps/{app}/installations") => Some(json!({"plugin": CODE})),
        ("PUT", "/v1/apps/{app}/installations/{plugin}") => Some(json!({"version": "1.0.0"})),
        ("POST", "/v1/apps/{app}/plugins/{code}/execute") => Some(json!({"name": "roles"})),
        ("POST", "/v1/sessions/{id}/executions") => Some(json!({"language": "shell", "code": "echo roles"})),
        ("POST", "/v1/run") => Some(json!({"language": "shell", "code": "echo roles"})),
        ("POST", "/v1/sessions/{id}/directories") => Some(json!({"path": "made"})),
        (_, p) if p.ends_with("/reject") => Some(json!({"reason": "roles test"})),
        ("POST", _) | ("PUT", _) => Some(json!({})),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_endpoint_answers_every_role_as_the_table_says() {
    let s = server().await;
    let owner = s.key("developer", "alice", None).await;
    let dev = s.key("developer", "mallory", None).await;
    s.publish(&owner, hello(CODE, "1.0.0"), "shop").await;
    let r = s.upload(&owner, hello(CODE, "1.1.0")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    s.expect(
        Method::POST,
        "/v1/apps",
        &s.admin,
        Some(json!({"id": "blog"})),
        StatusCode::CREATED,
    )
    .await;
    let app = s.key("app", "shop", Some("shop")).await;
    let app2 = s.key("app", "blog", Some("blog")).await;
    let (st, exec, _) = s.execute(&app, "shop", CODE, r#"{"name": "fixture"}"#, "").await;
    assert_eq!(st, StatusCode::OK, "{exec}");
    let exec_id = exec["id"].as_str().unwrap().to_owned();
    let spare = s
        .expect(
            Method::POST,
            "/v1/keys",
            &s.admin,
            Some(json!({"name": "spare", "role": "developer"})),
            StatusCode::CREATED,
        )
        .await;
    let spare_key = spare["key"]["id"].as_str().unwrap().to_owned();
    let session = s
        .expect(
            Method::POST,
            "/v1/sessions",
            &app,
            Some(json!({})),
            StatusCode::CREATED,
        )
        .await;
    let session_id = session["id"].as_str().unwrap().to_owned();
    let r = s
        .client
        .put(s.url(&format!("/v1/sessions/{session_id}/files/hello.txt")))
        .bearer_auth(&app)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let snapshot = s
        .expect(
            Method::POST,
            &format!("/v1/sessions/{session_id}/snapshots"),
            &app,
            None,
            StatusCode::CREATED,
        )
        .await;
    let snapshot_id = snapshot["id"].as_str().unwrap().to_owned();

    let keys: BTreeMap<&str, &str> = BTreeMap::from([
        ("admin", s.admin.as_str()),
        ("owner", owner.as_str()),
        ("dev", dev.as_str()),
        ("app", app.as_str()),
        ("app2", app2.as_str()),
    ]);
    let fill_with = |path: &str, code: &str, exec: &str, session: &str, snap: &str| {
        let id = if path.starts_with("/v1/keys") {
            spare_key.as_str()
        } else if path.starts_with("/v1/sessions") {
            session
        } else if path.starts_with("/v1/snapshots") {
            snap
        } else if path.starts_with("/v1/templates") {
            // A built-in: present on every start, and never deleted.
            "python-basic"
        } else if path.starts_with("/v1/layers") {
            LAYER
        } else {
            exec
        };
        path.replace("{code}", code)
            .replace("{plugin}", code)
            .replace("{version}", "1.1.0")
            .replace("{app}", "shop")
            .replace("{id}", id)
            .replace("{index}", "0")
            .replace("{path}", "hello.txt")
            .replace("{name}", "github")
    };
    let fill = |path: &str| fill_with(path, CODE, &exec_id, &session_id, &snapshot_id);

    // The document's operations and the table must be the same set.
    let doc = serde_json::to_value(warden_server::openapi()).unwrap();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                operations.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    let table = table();
    for (m, p) in &operations {
        assert!(
            table.contains_key(&(m.as_str(), p.as_str())),
            "{m} {p} is not in the roles table: decide who may call it"
        );
    }
    assert_eq!(
        operations.len(),
        table.len(),
        "the table names an endpoint the API does not have"
    );

    // Refusals first (they change nothing), then the allowed calls, deletes last.
    let mut checked = 0;
    for ((method, path), allowed) in &table {
        let url = fill(path);
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let anonymous = s
            .call(m.clone(), &url, None, body_for(method, path))
            .await
            .status();
        if allowed.contains(&"public") {
            assert_eq!(anonymous, StatusCode::OK, "{method} {path} without a key");
            checked += 1;
            continue;
        }
        assert_eq!(
            anonymous,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a key"
        );
        for (role, key) in &keys {
            if !allowed.contains(role) {
                let r = s.call(m.clone(), &url, Some(key), body_for(method, path)).await;
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                // The same call for a plugin or an execution that does not exist.
                let missing = fill_with(
                    path,
                    MISSING_CODE,
                    MISSING_EXEC,
                    MISSING_SESSION,
                    MISSING_SNAPSHOT,
                );
                let r = s
                    .call(m.clone(), &missing, Some(key), body_for(method, path))
                    .await;
                let missing_status = r.status();
                let missing_text = r
                    .text()
                    .await
                    .unwrap_or_default()
                    .replace(MISSING_CODE, CODE)
                    .replace(MISSING_EXEC, &exec_id)
                    .replace(MISSING_SESSION, &session_id)
                    .replace(MISSING_SNAPSHOT, &snapshot_id);
                if hidden(method, path).contains(role) {
                    assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path} as {role}: {text}");
                } else {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} as {role}: {text}");
                }
                if path.starts_with("/v1/plugins/{code}")
                    || path.starts_with("/v1/executions/{id}")
                    || path.starts_with("/v1/sessions/{id}")
                    || path.starts_with("/v1/snapshots/{id}")
                {
                    assert_eq!(
                        (status, text.as_str()),
                        (missing_status, missing_text.as_str()),
                        "{method} {path} as {role}: not answered as for a missing one"
                    );
                    assert!(
                        !text.contains("alice"),
                        "{method} {path} as {role} names the owner: {text}"
                    );
                }
                checked += 1;
            }
        }
    }
    let mut allowed_calls: Vec<_> = table.iter().filter(|(_, a)| !a.contains(&"public")).collect();
    allowed_calls.sort_by_key(|((m, _), _)| *m == "DELETE");
    for ((method, path), allowed) in allowed_calls {
        let url = fill(path);
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        for role in allowed.iter() {
            let r = s
                .call(m.clone(), &url, Some(keys[role]), body_for(method, path))
                .await;
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            assert!(
                status != StatusCode::UNAUTHORIZED
                    && status != StatusCode::FORBIDDEN
                    && !status.is_server_error(),
                "{method} {path} as {role}: {status} {text}"
            );
            checked += 1;
        }
    }
    assert!(checked > 150, "only {checked} calls checked");
    s.stop().await.unwrap();
}

/// The compatibility paths (outside the OpenAPI document): who may call
/// them. Upstream's clients send one key, so these take app keys only
/// (admin and developer keys get 403, no key 401); the health check and
/// Piston's runtimes and packages lists are open, as upstream's are.
fn compat_table() -> Vec<(&'static str, &'static str, Option<Value>, &'static [&'static str])> {
    const APPS: &[&str] = &["app", "app2"];
    const PUBLIC: &[&str] = &["public"];
    vec![
        ("GET", "/health", None, PUBLIC),
        (
            "POST",
            "/v1/sandbox/run",
            Some(json!({"language": "python3", "code": "print(1)", "preload": "", "enable_network": true})),
            APPS,
        ),
        ("GET", "/v1/sandbox/dependencies?language=python3", None, APPS),
        (
            "GET",
            "/v1/sandbox/dependencies/refresh?language=python3",
            None,
            APPS,
        ),
        (
            "POST",
            "/v1/sandbox/dependencies/update?language=python3",
            Some(json!({})),
            APPS,
        ),
        ("GET", "/api/v2/runtimes", None, PUBLIC),
        ("GET", "/api/v2/packages", None, PUBLIC),
        (
            "POST",
            "/api/v2/packages",
            Some(json!({"language": "bash", "version": "*"})),
            APPS,
        ),
        (
            "POST",
            "/api/v2/execute",
            Some(json!({"language": "bash", "version": "*", "files": [{"content": "echo roles"}]})),
            APPS,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compat_endpoint_answers_every_role_as_its_table_says() {
    let s = server().await;
    let dev = s.key("developer", "mallory", None).await;
    for id in ["shop", "blog"] {
        s.expect(
            Method::POST,
            "/v1/apps",
            &s.admin,
            Some(json!({"id": id})),
            StatusCode::CREATED,
        )
        .await;
    }
    let app = s.key("app", "shop", Some("shop")).await;
    let app2 = s.key("app", "blog", Some("blog")).await;
    let keys = [
        ("admin", s.admin.clone()),
        ("dev", dev),
        ("app", app),
        ("app2", app2),
    ];
    let mut checked = 0;
    for (method, path, body, allowed) in compat_table() {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let anonymous = s.call(m.clone(), path, None, body.clone()).await.status();
        if allowed.contains(&"public") {
            assert_eq!(anonymous, StatusCode::OK, "{method} {path} without a key");
            checked += 1;
            continue;
        }
        assert_eq!(
            anonymous,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a key"
        );
        for (role, key) in &keys {
            // Upstream clients send X-Api-Key; bearer works too.
            let r = s
                .client
                .request(m.clone(), s.url(path))
                .header("X-Api-Key", key.as_str())
                .json(body.as_ref().unwrap_or(&Value::Null))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            if allowed.contains(role) {
                assert!(status.is_success(), "{method} {path} as {role}: {status} {text}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} as {role}: {text}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 3 + 6 * 4);
    s.stop().await.unwrap();
}

/// Who may call a seed-003 path (`/api/v1/*`), and what the others get.
#[derive(Clone, Copy)]
enum Seed003 {
    /// No key needed.
    Public,
    /// Any app key (admin and developer keys: 403).
    Apps,
    /// The fixture session's app gets `ok`; another app gets `stranger`
    /// (its session is "not there"); admin and developer keys 403.
    Owner { ok: u16, stranger: u16 },
    /// App and admin keys (developer keys: 403).
    Readers,
    /// Admin keys get `ok`; every other key 403.
    Admin { ok: u16 },
}

/// Seed 003's control plane (outside the OpenAPI document): every path,
/// in an order where the destructive calls come last.
fn seed003_table(sid: &str, eid: &str) -> Vec<(&'static str, String, Option<Value>, Seed003)> {
    use Seed003::*;
    let run = json!({"code": "def handler(event):\n    return 1", "language": "python", "timeout": 10});
    let template =
        json!({"id": "roles-tpl", "name": "Roles", "image_url": "python:3.11", "runtime_type": "python3.11"});
    vec![
        ("GET", "/api/v1/health".into(), None, Public),
        ("GET", "/api/v1/sessions".into(), None, Apps),
        (
            "GET",
            format!("/api/v1/sessions/{sid}"),
            None,
            Owner {
                ok: 200,
                stranger: 404,
            },
        ),
        (
            "POST",
            format!("/api/v1/sessions/{sid}/dependencies/install"),
            // A version the native grammar refuses: checked (422) without
            // reaching a package index.
            Some(json!({"dependencies": [{"name": "requests", "version": "not a version"}]})),
            Owner {
                ok: 422,
                stranger: 404,
            },
        ),
        (
            "POST",
            format!("/api/v1/executions/sessions/{sid}/execute"),
            Some(run.clone()),
            Owner {
                ok: 201,
                stranger: 404,
            },
        ),
        (
            "POST",
            format!("/api/v1/executions/sessions/{sid}/execute-sync"),
            Some(run),
            Owner {
                ok: 200,
                stranger: 404,
            },
        ),
        (
            "GET",
            format!("/api/v1/executions/{eid}/status"),
            None,
            Owner {
                ok: 200,
                stranger: 404,
            },
        ),
        (
            "GET",
            format!("/api/v1/executions/{eid}/result"),
            None,
            Owner {
                ok: 200,
                stranger: 404,
            },
        ),
        (
            "GET",
            format!("/api/v1/executions/sessions/{sid}/executions"),
            None,
            Owner {
                ok: 200,
                stranger: 404,
            },
        ),
        // A form, built by the test (upstream answers every file error 400).
        (
            "POST",
            format!("/api/v1/sessions/{sid}/files/upload?path=roles.txt"),
            None,
            Owner {
                ok: 200,
                stranger: 400,
            },
        ),
        (
            "GET",
            format!("/api/v1/sessions/{sid}/files"),
            None,
            Owner {
                ok: 200,
                stranger: 400,
            },
        ),
        (
            "GET",
            format!("/api/v1/sessions/{sid}/files/roles.txt"),
            None,
            Owner {
                ok: 200,
                stranger: 404,
            },
        ),
        ("GET", "/api/v1/templates".into(), None, Readers),
        ("GET", "/api/v1/templates/python-basic".into(), None, Readers),
        (
            "POST",
            "/api/v1/templates".into(),
            Some(template),
            Admin { ok: 201 },
        ),
        (
            "PUT",
            "/api/v1/templates/roles-tpl".into(),
            Some(json!({"name": "Renamed"})),
            Admin { ok: 200 },
        ),
        (
            "DELETE",
            "/api/v1/templates/roles-tpl".into(),
            None,
            Admin { ok: 200 },
        ),
        (
            "POST",
            format!("/api/v1/sessions/{sid}/terminate"),
            None,
            Owner {
                ok: 200,
                stranger: 404,
            },
        ),
        (
            "DELETE",
            format!("/api/v1/sessions/{sid}"),
            None,
            Owner {
                ok: 204,
                stranger: 404,
            },
        ),
        (
            "POST",
            "/api/v1/sessions".into(),
            Some(json!({"template_id": "python-basic", "timeout": 60})),
            Apps,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_seed_003_endpoint_answers_every_role_as_its_table_says() {
    let s = server().await;
    let dev = s.key("developer", "mallory", None).await;
    for id in ["shop", "blog"] {
        s.expect(
            Method::POST,
            "/v1/apps",
            &s.admin,
            Some(json!({"id": id})),
            StatusCode::CREATED,
        )
        .await;
    }
    let app = s.key("app", "shop", Some("shop")).await;
    let app2 = s.key("app", "blog", Some("blog")).await;
    let session = s
        .expect(
            Method::POST,
            "/api/v1/sessions",
            &app,
            Some(json!({"template_id": "python-basic"})),
            StatusCode::CREATED,
        )
        .await;
    let sid = session["id"].as_str().unwrap().to_owned();
    let done = s
        .expect(
            Method::POST,
            &format!("/api/v1/executions/sessions/{sid}/execute-sync"),
            &app,
            Some(json!({"code": "def handler(event):\n    return 1", "language": "python"})),
            StatusCode::OK,
        )
        .await;
    let eid = done["id"].as_str().unwrap().to_owned();
    // The app whose session it is answers last: its DELETE ends the rows.
    let keys = [
        ("admin", s.admin.clone()),
        ("dev", dev),
        ("app2", app2),
        ("app", app),
    ];
    let send = |m: Method, path: &str, key: Option<&str>, body: &Option<Value>| {
        let mut r = s.client.request(m, s.url(path));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        if path.contains("/files/upload") {
            let part = reqwest::multipart::Part::bytes(b"roles".to_vec()).file_name("roles.txt");
            r = r.multipart(reqwest::multipart::Form::new().part("file", part));
        } else if let Some(b) = body {
            r = r.json(b);
        }
        r.send()
    };
    let mut checked = 0;
    for (method, path, body, who) in seed003_table(&sid, &eid) {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let anonymous = send(m.clone(), &path, None, &body).await.unwrap().status();
        if let Seed003::Public = who {
            assert_eq!(anonymous, StatusCode::OK, "{method} {path} without a key");
            checked += 1;
            continue;
        }
        assert_eq!(
            anonymous,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a key"
        );
        for (role, key) in &keys {
            let r = send(m.clone(), &path, Some(key), &body).await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let expected = match (who, *role) {
                (Seed003::Apps, "app" | "app2") => None,
                (Seed003::Readers, "admin" | "app" | "app2") => None,
                (Seed003::Owner { ok, .. }, "app") => Some(ok),
                (Seed003::Owner { stranger, .. }, "app2") => Some(stranger),
                (Seed003::Admin { ok }, "admin") => Some(ok),
                _ => Some(403),
            };
            match expected {
                Some(want) => assert_eq!(status, want, "{method} {path} as {role}: {text}"),
                None => assert!(
                    (200..300).contains(&status),
                    "{method} {path} as {role}: {status} {text}"
                ),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 1 + 19 * 4);
    s.stop().await.unwrap();
}
