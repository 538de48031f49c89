//! Template builds through the API, from a folder of wheels (the air-gapped
//! path, no network at all): a build streams its log and ends ready with
//! its lock; a second template with the same packages reuses the layer (no
//! second build); a build that fails names the package and leaves the
//! template as it was; the layer's events end with its record.

mod common;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn template(id: &str, packages: Value) -> Value {
    json!({"id": id, "runtime": "python", "packages": packages})
}

async fn wait_ready(s: &common::Server, layer: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let v = s
            .expect(
                Method::GET,
                &format!("/v1/layers/{layer}"),
                &s.admin,
                None,
                StatusCode::OK,
            )
            .await;
        if matches!(v["status"].as_str(), Some("ready" | "failed")) {
            return v;
        }
        assert!(Instant::now() < deadline, "the build did not end: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_from_a_folder_are_shared_streamed_and_fail_cleanly() {
    let folder = common::public_dir();
    common::wheel(
        folder.path(),
        "tinyhello",
        "1.0.0",
        "def hi():\n    return 'hi'\n",
    );
    let dir = folder.path().to_owned();
    let s = common::server_with(move |c| c.layers.folder = Some(dir)).await;

    // Nothing to build for the standard library.
    let v = s
        .expect(
            Method::POST,
            "/v1/templates/python-basic/build",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["status"], "not_needed", "{v}");

    s.expect(
        Method::POST,
        "/v1/templates",
        &s.admin,
        Some(template(
            "hello-a",
            json!([{"ecosystem": "pip", "name": "TinyHello", "version": "==1.0.0"}]),
        )),
        StatusCode::CREATED,
    )
    .await;
    let r = s
        .call(Method::POST, "/v1/templates/hello-a/build", Some(&s.admin), None)
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: Value = r.json().await.unwrap();
    let layer = v["layer"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["events"], format!("/v1/layers/{layer}/events"));
    // The live log ends with the layer's record.
    let text = s
        .client
        .get(s.url(&format!("/v1/layers/{layer}/events")))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("event: result"), "{text}");
    assert!(text.contains("tinyhello"), "{text}");
    let l = wait_ready(&s, &layer).await;
    assert_eq!(l["status"], "ready", "{l}");
    assert_eq!(l["lock"][0]["name"], "tinyhello");
    assert!(l["index"].as_str().unwrap().starts_with("folder:"));
    let t = s
        .expect(
            Method::GET,
            "/v1/templates/hello-a",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(t["layer"], layer.as_str(), "{t}");

    // The same packages, spelled differently: the same layer, no build.
    s.expect(
        Method::POST,
        "/v1/templates",
        &s.admin,
        Some(template(
            "hello-b",
            json!([{"ecosystem": "pip", "name": "tinyhello", "version": "==1.0.0"}]),
        )),
        StatusCode::CREATED,
    )
    .await;
    let v = s
        .expect(
            Method::POST,
            "/v1/templates/hello-b/build",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        (v["status"].as_str(), v["layer"]["id"].as_str()),
        (Some("ready"), Some(layer.as_str()))
    );

    // A version the folder lacks: failed, the package named; the template
    // keeps what it had (nothing).
    s.expect(
        Method::POST,
        "/v1/templates",
        &s.admin,
        Some(template(
            "hello-c",
            json!([{"ecosystem": "pip", "name": "tinyhello", "version": "==9.9.9"}]),
        )),
        StatusCode::CREATED,
    )
    .await;
    let r = s
        .call(Method::POST, "/v1/templates/hello-c/build", Some(&s.admin), None)
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: Value = r.json().await.unwrap();
    let bad = v["layer"]["id"].as_str().unwrap().to_owned();
    let l = wait_ready(&s, &bad).await;
    assert_eq!(l["status"], "failed", "{l}");
    assert_eq!(l["error"]["package"], "tinyhello", "{l}");
    assert!(!l["log"].as_str().unwrap().is_empty());
    let t = s
        .expect(
            Method::GET,
            "/v1/templates/hello-c",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(t["layer"], Value::Null);
    // Only admins build.
    let dev = s.key("developer", "builder", None).await;
    s.expect(
        Method::POST,
        "/v1/templates/hello-a/build",
        &dev,
        None,
        StatusCode::FORBIDDEN,
    )
    .await;
    s.expect(
        Method::POST,
        "/v1/templates/nope/build",
        &s.admin,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
}
