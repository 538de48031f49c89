//! The execute path's kept state, through the real HTTP API: a node keeps
//! what an app's call of a plugin resolves to between requests, and every
//! change that moves the resolution (a new active version, a re-pin, a
//! deactivation, an uninstall), made through this node or another sharing
//! the database, applies to the very next request. And durability: an
//! accepted call is recorded `running` before it runs.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CODE: &str = "vendor.kept.echo";

/// A version of `CODE` whose input schema requires `field`; its handler
/// returns its own version.
fn echo(version: &str, field: &str) -> Vec<u8> {
    let mut m = manifest(CODE, version, "python3", "main.py");
    m["input_schema"] = json!({"type": "object", "required": [field]});
    let main = format!("def handler(event):\n    return {{'version': '{version}'}}\n");
    package(&m, &[("main.py", &main)])
}

async fn upload_active(s: &Server, dev: &str, zip: Vec<u8>, version: &str) {
    let r = s.upload(dev, zip).await;
    assert!(r.status().is_success(), "upload: {}", r.text().await.unwrap());
    let base = format!("/v1/plugins/{CODE}/versions/{version}");
    s.expect(Method::POST, &format!("{base}/submit"), dev, None, StatusCode::OK)
        .await;
    s.expect(
        Method::POST,
        &format!("{base}/approve"),
        &s.admin,
        None,
        StatusCode::OK,
    )
    .await;
}

/// Execute `event` as app `shop`: the status, and the version that ran (or
/// the problem's type).
async fn run(s: &Server, key: &str, code: &str, event: &str) -> (StatusCode, String) {
    let (st, v, _) = s.execute(key, "shop", code, event, "").await;
    let what = if st == StatusCode::OK {
        assert_eq!(v["status"], "success", "{v}");
        v["return_value"]["version"]
            .as_str()
            .or(v["version"].as_str())
            .unwrap_or_default()
            .to_owned()
    } else {
        format!("{} {}", v["type"].as_str().unwrap_or_default(), v["detail"])
    };
    (st, what)
}

async fn pin(s: &Server, version: Option<&str>) {
    s.expect(
        Method::PUT,
        &format!("/v1/apps/shop/installations/{CODE}"),
        &s.admin,
        Some(json!({"version": version})),
        StatusCode::OK,
    )
    .await;
}

async fn lifecycle(s: &Server, version: &str, action: &str) {
    s.expect(
        Method::POST,
        &format!("/v1/plugins/{CODE}/versions/{version}/{action}"),
        &s.admin,
        None,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_change_to_a_resolution_applies_to_the_next_request() {
    let s = server().await;
    let dev = s.key("developer", "alice", None).await;
    s.publish(&dev, echo("1.0.0", "a"), "shop").await;
    let app = s.key("app", "shop", Some("shop")).await;
    // Valid for both versions, so only the resolution decides.
    let both = r#"{"a": 1, "b": 1}"#;
    assert_eq!(run(&s, &app, CODE, both).await, (StatusCode::OK, "1.0.0".into()));
    assert_eq!(run(&s, &app, CODE, both).await, (StatusCode::OK, "1.0.0".into()));

    // A new active version: the installation follows the latest.
    upload_active(&s, &dev, echo("2.0.0", "b"), "2.0.0").await;
    assert_eq!(run(&s, &app, CODE, both).await, (StatusCode::OK, "2.0.0".into()));
    // The kept 2.0.0 refuses an event without `b`, and rightly so.
    let (st, what) = run(&s, &app, CODE, r#"{"a": 1}"#).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what}");

    // A re-pin: the next request runs the pinned version, and an event
    // only it accepts is checked against it, not against the kept one.
    pin(&s, Some("1.0.0")).await;
    assert_eq!(
        run(&s, &app, CODE, r#"{"a": 1}"#).await,
        (StatusCode::OK, "1.0.0".into())
    );
    assert_eq!(run(&s, &app, CODE, both).await, (StatusCode::OK, "1.0.0".into()));
    pin(&s, Some("2.0.0")).await;
    assert_eq!(
        run(&s, &app, CODE, r#"{"b": 1}"#).await,
        (StatusCode::OK, "2.0.0".into())
    );

    // A deactivation of the pinned version: it cannot be called.
    lifecycle(&s, "2.0.0", "deactivate").await;
    let (st, what) = run(&s, &app, CODE, both).await;
    assert_eq!(st, StatusCode::CONFLICT, "{what}");
    assert!(what.contains("2.0.0 is inactive"), "{what}");
    // Following the latest again: the newest active one is 1.0.0.
    pin(&s, None).await;
    assert_eq!(run(&s, &app, CODE, both).await, (StatusCode::OK, "1.0.0".into()));
    // A deactivation of the last active version.
    lifecycle(&s, "1.0.0", "deactivate").await;
    let (st, what) = run(&s, &app, CODE, both).await;
    assert_eq!(st, StatusCode::CONFLICT, "{what}");
    assert!(what.contains("no active version"), "{what}");
    lifecycle(&s, "2.0.0", "activate").await;
    assert_eq!(run(&s, &app, CODE, both).await, (StatusCode::OK, "2.0.0".into()));

    // An uninstall.
    s.expect(
        Method::DELETE,
        &format!("/v1/apps/shop/installations/{CODE}"),
        &s.admin,
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let (st, what) = run(&s, &app, CODE, both).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{what}");
    // Refused and stale requests left no record: one per accepted call.
    let page = s
        .expect(
            Method::GET,
            "/v1/executions?app=shop&limit=100",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 8, "{page}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_made_through_another_node_applies_to_the_next_request() {
    let a = server().await;
    // The nodes share the database and the package blobs, as a cluster does.
    let blobs = a.state.config.blob_dir();
    let b = second_node(&a, move |c| c.blob_dir = Some(blobs)).await;
    let jq = "warden.builtin.jq";
    a.call(
        Method::POST,
        "/v1/apps",
        Some(&a.admin),
        Some(json!({"id": "shop"})),
    )
    .await;
    a.expect(
        Method::POST,
        "/v1/apps/shop/installations",
        &a.admin,
        Some(json!({"plugin": jq})),
        StatusCode::CREATED,
    )
    .await;
    let event = r#"{"program": ".x", "input": {"x": 1}}"#;
    // Node b resolves and keeps the installation.
    for _ in 0..2 {
        let (st, v, _) = b.execute(&b.admin, "shop", jq, event, "").await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["return_value"], json!({"results": [1]}));
    }
    // Node a deactivates the built-in's version: b's next call cannot run it.
    a.expect(
        Method::POST,
        &format!("/v1/plugins/{jq}/versions/1.0.0/deactivate"),
        &a.admin,
        None,
        StatusCode::OK,
    )
    .await;
    let (st, v, _) = b.execute(&b.admin, "shop", jq, event, "").await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    a.expect(
        Method::POST,
        &format!("/v1/plugins/{jq}/versions/1.0.0/activate"),
        &a.admin,
        None,
        StatusCode::OK,
    )
    .await;
    let (st, v, _) = b.execute(&b.admin, "shop", jq, event, "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Node a uninstalls it: b's next call finds nothing installed.
    a.expect(
        Method::DELETE,
        &format!("/v1/apps/shop/installations/{jq}"),
        &a.admin,
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let (st, v, _) = b.execute(&b.admin, "shop", jq, event, "").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_accepted_call_is_recorded_running_before_it_runs() {
    let s = server().await;
    let dev = s.key("developer", "alice", None).await;
    let m = manifest("vendor.slow.nap", "1.0.0", "python3", "main.py");
    s.publish(
        &dev,
        package(
            &m,
            &[(
                "main.py",
                "import time\ndef handler(e):\n    time.sleep(1.5)\n    return {'slept': True}\n",
            )],
        ),
        "shop",
    )
    .await;
    let app = s.key("app", "shop", Some("shop")).await;
    let call = {
        let (client, url, app) = (
            s.client.clone(),
            s.url("/v1/apps/shop/plugins/vendor.slow.nap/execute"),
            app.clone(),
        );
        tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(app)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        })
    };
    // While the handler sleeps, its record is there, `running`.
    let deadline = Instant::now() + Duration::from_secs(20);
    let running = loop {
        let page = s
            .expect(
                Method::GET,
                "/v1/executions?app=shop&status=running",
                &app,
                None,
                StatusCode::OK,
            )
            .await;
        if let Some(e) = page["items"].as_array().unwrap().first() {
            break e.clone();
        }
        assert!(Instant::now() < deadline, "no running record appeared");
        assert!(
            !call.is_finished(),
            "the call ended before its record was seen running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!call.is_finished(), "the record was seen after the call ended");
    assert_eq!(running["status"], "running");
    assert!(running["finished_at"].is_null(), "{running}");
    let (st, done) = call.await.unwrap();
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["id"], running["id"]);
    assert_eq!(done["status"], "success");
    let id = done["id"].as_str().unwrap();
    let stored = s
        .expect(
            Method::GET,
            &format!("/v1/executions/{id}"),
            &app,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(stored["status"], "success");
    assert_eq!(stored["return_value"], json!({"slept": true}));
    s.stop().await.unwrap();
}
