//! Built-in plugins through the real binary: registered at start, installed
//! and executed over HTTP, shown with their trust level; a restart keeps
//! them as they were.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{Serve, client, req};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtins_are_served_by_the_binary() {
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[]);
    let c = client();
    let admin = s.admin.clone().expect("an admin key on first start");
    let (st, versions) = req(
        &c,
        Method::GET,
        s.url("/v1/plugins/warden.builtin.template/versions"),
        &admin,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{versions}");
    assert_eq!(versions[0]["trust_level"], "builtin", "{versions}");
    assert_eq!(versions[0]["status"], "active", "{versions}");
    let (st, _) = req(
        &c,
        Method::POST,
        s.url("/v1/apps"),
        &admin,
        Some(json!({"id": "mail"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, body) = req(
        &c,
        Method::POST,
        s.url("/v1/apps/mail/installations"),
        &admin,
        Some(json!({"plugin": "warden.builtin.template"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, key) = req(
        &c,
        Method::POST,
        s.url("/v1/keys"),
        &admin,
        Some(json!({"name": "mail", "role": "app", "app": "mail"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    let app = key["secret"].as_str().unwrap().to_owned();
    let (st, body) = req(
        &c,
        Method::POST,
        s.url("/v1/apps/mail/plugins/warden.builtin.template/execute"),
        &app,
        Some(json!({"template": "{% for n in names %}Hi {{ n }}! {% endfor %}", "context": {"names": ["Ada", "Linus"]}})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(
        body["return_value"],
        json!({"text": "Hi Ada! Hi Linus! "}),
        "{body}"
    );
    let sha = versions[0]["package_sha256"].clone();
    s.signal(rustix::process::Signal::TERM);
    assert!(s.wait().success());

    // Restarted: the same version, still installed and callable.
    let s = Serve::start(data.path(), &[]);
    let (_, versions) = req(
        &c,
        Method::GET,
        s.url("/v1/plugins/warden.builtin.template/versions"),
        &admin,
        None,
    )
    .await;
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
    assert_eq!(versions[0]["package_sha256"], sha);
    let (_, body) = req(
        &c,
        Method::POST,
        s.url("/v1/apps/mail/plugins/warden.builtin.template/execute"),
        &app,
        Some(json!({"template": "{{ 6 * 7 }}"})),
    )
    .await;
    assert_eq!(body["return_value"], json!({"text": "42"}), "{body}");
}
