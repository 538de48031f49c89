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

    // Metrics by trust level, and the time to load a version.
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // jq, template and http: every built-in of this build is active.
    assert!(
        metrics.contains("warden_plugin_active_count{trust_level=\"builtin\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("warden_plugin_active_count{trust_level=\"untrusted\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("warden_plugin_load_duration_ms_count{trust_level=\"builtin\"}"),
        "{metrics}"
    );
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

const WASI: &str = "wasi_snapshot_preview1";

/// A wasm package whose module's `_start` is `body` (with fd_write
/// imported as `$fd_write` and one page of memory holding `data` at 64).
fn wasm_package(code: &str, body: &str, data: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module
  (import "{WASI}" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{data}")
  (func (export "_start") {body}))"#
    );
    let module = wat::parse_str(&wat).expect("the fixture is valid WebAssembly text");
    let mut m = manifest(code, "1.0.0", "wasm", "plugin.wasm");
    m["output_schema"] = json!({"type": "object"});
    let mut b = warden_package::build::ZipBuilder::new().file("manifest.json", m.to_string().as_bytes());
    b = b.file("plugin.wasm", &module);
    b.finish()
}

/// Writes `data` (its length `len`) to stdout.
fn write_stdout(len: usize) -> String {
    format!(
        "(i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const {len})) \
         (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wasm_plugins_run_in_process_only_where_the_operator_allows_untrusted_ones() {
    let greeting = r#"{\"greeting\":\"hello from wasm\"}"#;
    let len = greeting.replace('\\', "").len();
    // By default an untrusted version cannot use the in-process tier.
    let s = server().await;
    let dev = s.key("developer", "wasm-dev", None).await;
    let v = s
        .publish(
            &dev,
            wasm_package("vendor.wasm.hello", &write_stdout(len), greeting),
            "wasm",
        )
        .await;
    assert_eq!(v["trust_level"], "untrusted");
    let app = s.key("app", "wasm-key", Some("wasm")).await;
    let (status, body, _) = s.execute(&app, "wasm", "vendor.wasm.hello", "{}", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("tiers.wasm_untrusted"),
        "{body}"
    );
    s.stop().await.unwrap();

    let s = server_with(|c| c.tiers.wasm_untrusted = true).await;
    let dev = s.key("developer", "wasm-dev", None).await;
    s.publish(
        &dev,
        wasm_package("vendor.wasm.hello", &write_stdout(len), greeting),
        "wasm",
    )
    .await;
    s.publish(
        &dev,
        wasm_package("vendor.wasm.spin", "(loop $l (br $l))", ""),
        "wasm",
    )
    .await;
    s.publish(
        &dev,
        wasm_package(
            "vendor.wasm.hog",
            "(if (i32.eq (memory.grow (i32.const 60000)) (i32.const -1)) (then unreachable))",
            "",
        ),
        "wasm",
    )
    .await;
    s.publish(
        &dev,
        wasm_package("vendor.wasm.deep", "(call $deep) ) (func $deep (call $deep)", ""),
        "wasm",
    )
    .await;
    let app = s.key("app", "wasm-key", Some("wasm")).await;
    let (status, body, _) = s.execute(&app, "wasm", "vendor.wasm.hello", "{}", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(
        body["return_value"],
        json!({"greeting": "hello from wasm"}),
        "{body}"
    );

    let (_, body, _) = s
        .execute(&app, "wasm", "vendor.wasm.spin", "{}", "?timeout_ms=300")
        .await;
    assert_eq!(body["status"], "timeout", "{body}");
    assert_eq!(body["error_kind"], "timeout", "{body}");

    let (_, body, _) = s.execute(&app, "wasm", "vendor.wasm.hog", "{}", "").await;
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error_kind"], "memory_limit", "{body}");

    let (_, body, _) = s.execute(&app, "wasm", "vendor.wasm.deep", "{}", "").await;
    assert_eq!(body["status"], "failed", "{body}");
    assert_eq!(body["error"]["type"], "StackOverflow", "{body}");

    // The server is still serving.
    let (_, body, _) = s.execute(&app, "wasm", "vendor.wasm.hello", "{}", "").await;
    assert_eq!(body["status"], "success", "{body}");
    s.stop().await.unwrap();
}

/// A minisign key pair: (public key file text, secret key).
fn keypair() -> (String, minisign::SecretKey, minisign::PublicKey) {
    let minisign::KeyPair { pk, sk } = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    (pk.to_box().unwrap().to_string(), sk, pk)
}

/// The text of a `.minisig` of `message` by `sk`.
fn sign(pk: &minisign::PublicKey, sk: &minisign::SecretKey, message: &str) -> String {
    minisign::sign(Some(pk), sk, std::io::Cursor::new(message.as_bytes()), None, None)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_a_valid_signature_by_the_owners_key_makes_a_version_trusted_and_revoking_it_ends_that() {
    let greeting = r#"{\"greeting\":\"signed\"}"#;
    let len = greeting.replace('\\', "").len();
    // The operator has not opened the wasm tier to untrusted code.
    let s = server().await;
    let dev = s.key("developer", "alice", None).await;
    let mallory = s.key("developer", "mallory", None).await;
    let (pub_a, sk_a, pk_a) = keypair();
    let (pub_m, sk_m, pk_m) = keypair();
    let (_, sk_x, pk_x) = keypair();

    // Keys: registered, listed per owner, refused when malformed or twice.
    let key_a = s
        .expect(
            Method::POST,
            "/v1/signing-keys",
            &dev,
            Some(json!({"name": "alice's laptop", "public_key": pub_a})),
            StatusCode::CREATED,
        )
        .await;
    let id_a = key_a["id"].as_str().unwrap().to_owned();
    assert_eq!(key_a["owner"], "alice", "{key_a}");
    assert!(pub_a.contains(&id_a), "the id is minisign's: {pub_a} {id_a}");
    let again = s
        .expect(
            Method::POST,
            "/v1/signing-keys",
            &mallory,
            Some(json!({"name": "copy", "public_key": pub_a})),
            StatusCode::CONFLICT,
        )
        .await;
    assert!(again["detail"].as_str().unwrap().contains(&id_a), "{again}");
    let bad = s
        .expect(
            Method::POST,
            "/v1/signing-keys",
            &dev,
            Some(json!({"name": "", "public_key": "ssh-ed25519 AAAA"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    let locations: Vec<_> = bad["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["location"].clone())
        .collect();
    assert!(
        locations.contains(&json!("/name")) && locations.contains(&json!("/public_key")),
        "{bad}"
    );
    s.expect(
        Method::POST,
        "/v1/signing-keys",
        &mallory,
        Some(json!({"name": "mallory", "public_key": pub_m})),
        StatusCode::CREATED,
    )
    .await;
    let mine = s
        .expect(Method::GET, "/v1/signing-keys", &dev, None, StatusCode::OK)
        .await;
    assert_eq!(
        mine.as_array().unwrap().len(),
        1,
        "a developer sees only their keys: {mine}"
    );
    let all = s
        .expect(Method::GET, "/v1/signing-keys", &s.admin, None, StatusCode::OK)
        .await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");

    // A draft, signed; a new package for the draft drops the signature.
    let r = s
        .upload(
            &dev,
            wasm_package("vendor.wasm.signed", &write_stdout(len), greeting),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let base = "/v1/plugins/vendor.wasm.signed/versions/1.0.0";
    let v: Value = r.json().await.unwrap();
    let sha = v["package_sha256"].as_str().unwrap().to_owned();
    let signed = s
        .expect(
            Method::PUT,
            &format!("{base}/signature"),
            &dev,
            Some(json!({"signature": sign(&pk_a, &sk_a, &sha)})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(signed["signed_by"], json!(id_a), "{signed}");
    let r = s
        .upload(
            &dev,
            wasm_package(
                "vendor.wasm.signed",
                &write_stdout(len),
                "{\\\"greeting\\\":\\\"signer\\\"}",
            ),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["signed_by"],
        Value::Null,
        "a new package is not what was signed: {v}"
    );
    let sha = v["package_sha256"].as_str().unwrap().to_owned();

    // Signatures that must not hold: another package, another owner's key,
    // an unregistered key, garbage.
    for (signature, why) in [
        (sign(&pk_a, &sk_a, &"0".repeat(64)), "does not match"),
        (sign(&pk_m, &sk_m, &sha), "registered to mallory"),
        (sign(&pk_x, &sk_x, &sha), "not registered"),
        ("hello".to_owned(), "not a minisign signature"),
    ] {
        let body = s
            .expect(
                Method::PUT,
                &format!("{base}/signature"),
                &dev,
                Some(json!({ "signature": signature })),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert_eq!(body["errors"][0]["location"], "/signature", "{body}");
        assert!(
            body["errors"][0]["message"].as_str().unwrap().contains(why),
            "{why}: {body}"
        );
    }
    // Mallory cannot even see alice's plugin to sign it.
    s.expect(
        Method::PUT,
        &format!("{base}/signature"),
        &mallory,
        Some(json!({"signature": sign(&pk_m, &sk_m, &sha)})),
        StatusCode::NOT_FOUND,
    )
    .await;
    s.expect(
        Method::PUT,
        &format!("{base}/signature"),
        &dev,
        Some(json!({"signature": sign(&pk_a, &sk_a, &sha)})),
        StatusCode::OK,
    )
    .await;
    s.expect(
        Method::POST,
        &format!("{base}/submit"),
        &dev,
        None,
        StatusCode::OK,
    )
    .await;
    // Only an admin approves, and `builtin` is never granted.
    s.expect(
        Method::POST,
        &format!("{base}/approve"),
        &dev,
        Some(json!({"trust_level": "trusted"})),
        StatusCode::FORBIDDEN,
    )
    .await;
    let body = s
        .expect(
            Method::POST,
            &format!("{base}/approve"),
            &s.admin,
            Some(json!({"trust_level": "builtin"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(body["errors"][0]["location"], "/trust_level", "{body}");
    let approved = s
        .expect(
            Method::POST,
            &format!("{base}/approve"),
            &s.admin,
            Some(json!({"trust_level": "trusted"})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(approved["trust_level"], "trusted", "{approved}");
    // A trusted version runs on the in-process tier.
    install(&s, "signed", "vendor.wasm.signed").await;
    let app = s.key("app", "signed-key", Some("signed")).await;
    let (status, body, _) = s.execute(&app, "signed", "vendor.wasm.signed", "{}", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["return_value"], json!({"greeting": "signer"}), "{body}");

    // Unsigned code is never approved as trusted; it stays pending.
    let r = s
        .upload(
            &dev,
            wasm_package("vendor.wasm.unsigned", &write_stdout(len), greeting),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let base_u = "/v1/plugins/vendor.wasm.unsigned/versions/1.0.0";
    s.expect(
        Method::POST,
        &format!("{base_u}/submit"),
        &dev,
        None,
        StatusCode::OK,
    )
    .await;
    let body = s
        .expect(
            Method::POST,
            &format!("{base_u}/approve"),
            &s.admin,
            Some(json!({"trust_level": "trusted"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no signature"),
        "{body}"
    );
    let still = s.expect(Method::GET, base_u, &dev, None, StatusCode::OK).await;
    assert_eq!(still["status"], "pending", "{still}");

    // Revoking the key ends the trust at once: the version is untrusted and
    // leaves the in-process tier. Another developer cannot revoke it.
    s.expect(
        Method::DELETE,
        &format!("/v1/signing-keys/{id_a}"),
        &mallory,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/signing-keys/{id_a}"),
            Some(&dev),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let v = s.expect(Method::GET, base, &dev, None, StatusCode::OK).await;
    assert_eq!(v["trust_level"], "untrusted", "{v}");
    let (status, body, _) = s.execute(&app, "signed", "vendor.wasm.signed", "{}", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("tiers.wasm_untrusted"),
        "{body}"
    );

    // Every step is in the audit trail.
    let audit = s
        .expect(
            Method::GET,
            "/v1/audit?plugin=vendor.wasm.signed",
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    let actions: Vec<_> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert!(
        actions.contains(&json!("sign")) && actions.contains(&json!("approve")),
        "{audit}"
    );
    s.stop().await.unwrap();
}

/// `GET …/runtime` of `code` `version`, as `key`: this node's entry.
async fn runtime(s: &Server, key: &str, code: &str, version: &str) -> Value {
    let view = s
        .expect(
            Method::GET,
            &format!("/v1/plugins/{code}/versions/{version}/runtime"),
            key,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(view["nodes"].as_array().map(Vec::len), Some(1), "{view}");
    view["nodes"][0].clone()
}

/// The actions of a version's audit trail, oldest first.
async fn trail(s: &Server, key: &str, code: &str, version: &str) -> Vec<Value> {
    s.expect(
        Method::GET,
        &format!("/v1/plugins/{code}/versions/{version}/audit"),
        key,
        None,
        StatusCode::OK,
    )
    .await
    .as_array()
    .unwrap()
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_node_shows_a_versions_runtime_state_and_excludes_a_failed_one() {
    let s = server().await;
    let dev = s.key("developer", "alice", None).await;

    // Healthy: active once called, audited once with the node and tier.
    s.publish(&dev, hello("vendor.life.ok", "1.0.0"), "shop").await;
    let (st, body, _) = s
        .execute(&s.admin, "shop", "vendor.life.ok", r#"{"name": "a"}"#, "")
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    s.execute(&s.admin, "shop", "vendor.life.ok", r#"{"name": "b"}"#, "")
        .await;
    let n = runtime(&s, &dev, "vendor.life.ok", "1.0.0").await;
    assert_eq!(n["state"], "active", "{n}");
    assert_eq!(n["tier"], "jail", "{n}");
    assert_eq!(n["trust_level"], "untrusted", "{n}");
    assert_eq!(n["reason"], Value::Null, "{n}");
    assert!(n["node"].as_str().is_some_and(|x| !x.is_empty()), "{n}");
    let actives: Vec<_> = trail(&s, &dev, "vendor.life.ok", "1.0.0")
        .await
        .into_iter()
        .filter(|a| a["action"] == "runtime_active")
        .collect();
    assert_eq!(actives.len(), 1, "only the first activation: {actives:?}");
    assert_eq!(actives[0]["detail"]["node"], n["node"], "{actives:?}");

    // Deactivated: stopped.
    s.expect(
        Method::POST,
        "/v1/plugins/vendor.life.ok/versions/1.0.0/deactivate",
        &dev,
        None,
        StatusCode::OK,
    )
    .await;
    let n = runtime(&s, &dev, "vendor.life.ok", "1.0.0").await;
    assert_eq!(n["state"], "stopped", "{n}");

    // Tampered: the detecting call names the integrity failure, the node
    // shows `failed` with `hash mismatch`, the trail has it, and later
    // calls are refused with a problem, never run and never a 500.
    let v = s.publish(&dev, hello("vendor.life.bad", "1.0.0"), "shop").await;
    let (st, _, _) = s
        .execute(&s.admin, "shop", "vendor.life.bad", r#"{"name": "a"}"#, "")
        .await;
    assert_eq!(st, StatusCode::OK);
    let blob = s.data.path().join(format!(
        "blobs/packages/{}.zip",
        v["package_sha256"].as_str().unwrap()
    ));
    std::fs::write(&blob, hello("vendor.life.bad", "6.6.6")).unwrap();
    let (st, p, _) = s
        .execute(&s.admin, "shop", "vendor.life.bad", r#"{"name": "a"}"#, "")
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["type"], "/problems/integrity", "{p}");
    let n = runtime(&s, &dev, "vendor.life.bad", "1.0.0").await;
    assert_eq!(n["state"], "failed", "{n}");
    assert!(
        n["reason"].as_str().unwrap().starts_with("hash mismatch: "),
        "{n}"
    );
    // The record's own `fail` event tells it (once, not twice).
    let failed: Vec<_> = trail(&s, &dev, "vendor.life.bad", "1.0.0")
        .await
        .into_iter()
        .filter(|a| a["action"] == "fail" || a["action"] == "runtime_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["action"], "fail", "{failed:?}");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("package hash mismatch"),
        "{failed:?}"
    );
    // The record is failed for every node: the registry refuses the call.
    let (st, p, _) = s
        .execute(&s.admin, "shop", "vendor.life.bad", r#"{"name": "a"}"#, "")
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("cannot be called"), "{p}");

    // A package missing from the blob store: the version fails on this
    // node (503 naming the reason, with Retry-After) and stays excluded
    // even once the blob is back, until a retry is due; a change of the
    // version's record retries at once.
    let v = s.publish(&dev, hello("vendor.life.gone", "1.0.0"), "shop").await;
    let blob = s.data.path().join(format!(
        "blobs/packages/{}.zip",
        v["package_sha256"].as_str().unwrap()
    ));
    let kept = std::fs::read(&blob).unwrap();
    std::fs::remove_file(&blob).unwrap();
    let (st, p, headers) = s
        .execute(&s.admin, "shop", "vendor.life.gone", r#"{"name": "a"}"#, "")
        .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{p}");
    assert_eq!(p["type"], "/problems/version-failed", "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("package unavailable"),
        "{p}"
    );
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    let n = runtime(&s, &dev, "vendor.life.gone", "1.0.0").await;
    assert_eq!(n["state"], "failed", "{n}");
    assert!(
        n["reason"].as_str().unwrap().starts_with("package unavailable: "),
        "{n}"
    );
    assert!(n["retry_at"].as_i64().is_some(), "{n}");
    let failed: Vec<_> = trail(&s, &dev, "vendor.life.gone", "1.0.0")
        .await
        .into_iter()
        .filter(|a| a["action"] == "runtime_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["detail"]["node"], n["node"], "{failed:?}");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("package unavailable"),
        "{failed:?}"
    );
    std::fs::write(&blob, &kept).unwrap();
    let (st, p, _) = s
        .execute(&s.admin, "shop", "vendor.life.gone", r#"{"name": "a"}"#, "")
        .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "excluded until a retry: {p}");
    for step in ["deactivate", "activate"] {
        s.expect(
            Method::POST,
            &format!("/v1/plugins/vendor.life.gone/versions/1.0.0/{step}"),
            &dev,
            None,
            StatusCode::OK,
        )
        .await;
    }
    let (st, body, _) = s
        .execute(&s.admin, "shop", "vendor.life.gone", r#"{"name": "a"}"#, "")
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    let n = runtime(&s, &dev, "vendor.life.gone", "1.0.0").await;
    assert_eq!(n["state"], "active", "{n}");

    // Another developer's version: not there.
    let eve = s.key("developer", "eve", None).await;
    s.expect(
        Method::GET,
        "/v1/plugins/vendor.life.ok/versions/1.0.0/runtime",
        &eve,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_whose_code_does_not_load_in_a_warm_box_fails_naming_the_warm_pool_start() {
    let s = server().await;
    let dev = s.key("developer", "alice", None).await;
    let code = "vendor.life.noload";
    let m = manifest(code, "1.0.0", "python3", "main.py");
    let main = "raise RuntimeError('the module refuses to load')\ndef handler(event):\n    return {}\n";
    s.publish(&dev, package(&m, &[("main.py", main)]), "shop").await;

    // The calls that find no warm box run cold and fail with the module's
    // error, recorded; once a warm box has failed to start with it, the
    // version is failed on this node and calls get a 503 naming the step,
    // without running.
    let mut refused = None;
    let mut ran = 0;
    for _ in 0..50 {
        let (st, body, headers) = s.execute(&s.admin, "shop", code, "{}", "").await;
        if st == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some((body, headers));
            break;
        }
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_ne!(body["status"], "success", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("the module refuses to load")),
            "{body}"
        );
        ran += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (p, headers) = refused.expect("the version was never excluded");
    assert_eq!(p["type"], "/problems/version-failed", "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("warm-pool start") && detail.contains("the module refuses to load"),
        "{p}"
    );
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    let n = runtime(&s, &dev, code, "1.0.0").await;
    assert_eq!(n["state"], "failed", "{n}");
    assert!(
        n["reason"].as_str().unwrap().starts_with("warm-pool start: "),
        "{n}"
    );
    let failed: Vec<_> = trail(&s, &dev, code, "1.0.0")
        .await
        .into_iter()
        .filter(|a| a["action"] == "runtime_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    // Every call that ran has its record; the refused one has none.
    let list = s
        .expect(
            Method::GET,
            &format!("/v1/executions?plugin={code}"),
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), ran, "{list}");
    s.stop().await.unwrap();
}
