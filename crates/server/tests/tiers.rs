//! Trust tiers through the HTTP API: built-in plugins registered at start
//! and called like any other plugin (schemas, installations, executions,
//! audit), with their trust level shown; codes reserved for them.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Install `code` in `app` (created if new) as the admin.
async fn install(s: &Server, app: &str, code: &str) {
    let r = s
        .call(Method::POST, "/v1/apps", Some(&s.admin), Some(json!({"id": app})))
        .await;
    assert!(r.status() == StatusCode::CREATED || r.status() == StatusCode::CONFLICT);
    s.expect(
        Method::POST,
        &format!("/v1/apps/{app}/installations"),
        &s.admin,
        Some(json!({"plugin": code})),
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builtins_are_listed_installed_called_and_audited_like_any_plugin() {
    let s = server().await;
    // Registered at start, owned by `warden`, Active, trust level builtin.
    let versions = s
        .expect(
            Method::GET,
            "/v1/plugins/warden.builtin.jq/versions",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    let v = &versions[0];
    assert_eq!(v["status"], "active", "{versions}");
    assert_eq!(v["trust_level"], "builtin", "{versions}");
    assert_eq!(v["runtime"], "builtin", "{versions}");
    let plugin = s
        .expect(
            Method::GET,
            "/v1/plugins/warden.builtin.template",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(plugin["owner"], "warden", "{plugin}");

    install(&s, "shop", "warden.builtin.jq").await;
    install(&s, "shop", "warden.builtin.template").await;
    let app = s.key("app", "shop-key", Some("shop")).await;

    let (status, body, _) = s
        .execute(
            &app,
            "shop",
            "warden.builtin.jq",
            r#"{"program": ".items | map(.price * $rate) | add", "input": {"items": [{"price": 2}, {"price": 3}]}, "vars": {"rate": 10}}"#,
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["return_value"], json!({"results": [50]}), "{body}");
    let id = body["id"].as_str().unwrap().to_owned();

    let (status, body, _) = s
        .execute(
            &app,
            "shop",
            "warden.builtin.template",
            r#"{"template": "Dear {{ name }}, you owe {{ total }}.", "context": {"name": "Ada", "total": 50}}"#,
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["return_value"],
        json!({"text": "Dear Ada, you owe 50."}),
        "{body}"
    );

    // The input schema is checked before anything runs.
    let (status, body, _) = s
        .execute(&app, "shop", "warden.builtin.jq", r#"{"program": 1}"#, "")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["location"], "/program", "{body}");

    // A caller's mistake is a failed execution naming it.
    let (status, body, _) = s
        .execute(&app, "shop", "warden.builtin.jq", r#"{"program": ".a | ("}"#, "")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "failed", "{body}");
    assert_eq!(body["error_kind"], "handler_error", "{body}");
    assert_eq!(body["error"]["type"], "JqCompileError", "{body}");

    // A program past its deadline ends `timeout`.
    let (status, body, _) = s
        .execute(
            &app,
            "shop",
            "warden.builtin.jq",
            r#"{"program": "last(repeat(1))"}"#,
            "?timeout_ms=300",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "timeout", "{body}");

    // Recorded like any execution.
    let rec = s
        .expect(
            Method::GET,
            &format!("/v1/executions/{id}"),
            &app,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(rec["plugin"], "warden.builtin.jq", "{rec}");
    assert_eq!(rec["status"], "success", "{rec}");

    // The registration is in the audit trail.
    let audit = s
        .expect(
            Method::GET,
            "/v1/audit?plugin=warden.builtin.jq",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"register"), "{audit}");
    assert!(actions.contains(&"install"), "{audit}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builtin_codes_are_reserved_and_uploads_start_untrusted() {
    let s = server().await;
    let dev = s.key("developer", "mallory", None).await;
    let r = s.upload(&dev, hello("warden.builtin.jq", "9.0.0")).await;
    assert_eq!(
        r.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        r.text().await
    );
    let r = s.upload(&s.admin, hello("warden.builtin.other", "1.0.0")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["location"], "/code", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("reserved"),
        "{body}"
    );
    let v = s
        .publish(&dev, hello("vendor.tiers.hello", "1.0.0"), "tiers")
        .await;
    assert_eq!(v["trust_level"], "untrusted", "{v}");
    // A restart registers nothing twice.
    let before = s
        .expect(
            Method::GET,
            "/v1/audit?plugin=warden.builtin.template",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    let second = second_node(&s, |_| {}).await;
    let after = second
        .expect(
            Method::GET,
            "/v1/audit?plugin=warden.builtin.template",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(before["items"], after["items"]);
    second.stop().await.unwrap();
    s.stop().await.unwrap();
}
