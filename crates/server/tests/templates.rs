//! `/v1/templates` and `/v1/layers` through a real server: the built-ins on
//! a fresh start, creation (201 + Location), full replacement at a
//! revision, deletion, hostile bodies answered 422 at their JSON pointers,
//! lists by runtime and page, the audit trail, and a layer's record.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use warden_core::{Ecosystem, Layer, LayerStatus, PackageReq, Store, TemplateRuntime};

fn locations(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["location"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn templates_are_created_replaced_deleted_and_listed() {
    let s = server().await;
    let dev = s.key("developer", "alice", None).await;

    // A fresh start has the built-ins (and the template of Dify's Python
    // runs, which the compatibility layer makes), listed like any other.
    let page = s
        .expect(Method::GET, "/v1/templates", &dev, None, StatusCode::OK)
        .await;
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dify", "node-basic", "python-basic", "shell"]);
    let python = s
        .expect(
            Method::GET,
            "/v1/templates/python-basic",
            &dev,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(python["builtin"], true);
    assert_eq!(python["runtime"], "python");
    assert_eq!(python["packages"], json!([]));
    assert_eq!(python["network"], json!({"mode": "none", "allow": []}));
    assert_eq!(python["resources"]["memory_mb"], 512);

    // Create: 201, Location, the record.
    let body = json!({
        "id": "scraper", "name": "Scraper", "runtime": "python",
        "packages": [{"ecosystem": "pip", "name": "requests", "version": ">=2,<3"}],
        "env": {"LANG": "C.UTF-8"},
        "resources": {"memory_mb": 1024},
        "network": {"mode": "allow_list", "allow": ["example.com:443"]},
        "files": [{"path": "conf/a.txt", "content": "hello"}],
    });
    let r = s
        .call(Method::POST, "/v1/templates", Some(&s.admin), Some(body.clone()))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["location"], "/v1/templates/scraper");
    let created: Value = r.json().await.unwrap();
    assert_eq!(
        (
            created["revision"].clone(),
            created["layer"].clone(),
            created["builtin"].clone()
        ),
        (json!(1), Value::Null, json!(false))
    );
    assert_eq!(created["resources"]["memory_mb"], 1024);
    assert_eq!(created["resources"]["pids"], 128, "defaults fill the rest");
    assert_eq!(created["files"][0]["encoding"], "utf8");
    let p = s
        .expect(
            Method::POST,
            "/v1/templates",
            &s.admin,
            Some(body),
            StatusCode::CONFLICT,
        )
        .await;
    assert!(p["detail"].as_str().unwrap().contains("exists already"), "{p}");
    // Only admins write.
    s.expect(
        Method::POST,
        "/v1/templates",
        &dev,
        Some(json!({"id": "mine", "runtime": "shell"})),
        StatusCode::FORBIDDEN,
    )
    .await;

    // Replace: the whole template, at the revision read.
    let replacement = json!({"name": "Scraper 2", "runtime": "python", "revision": 1,
        "packages": [{"ecosystem": "pip", "name": "requests", "version": ">=2,<3"}]});
    let replaced = s
        .expect(
            Method::PUT,
            "/v1/templates/scraper",
            &s.admin,
            Some(replacement.clone()),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        (replaced["revision"].clone(), replaced["name"].clone()),
        (json!(2), json!("Scraper 2"))
    );
    assert_eq!(replaced["env"], json!({}), "a full replacement");
    let p = s
        .expect(
            Method::PUT,
            "/v1/templates/scraper",
            &s.admin,
            Some(replacement),
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!(p["type"], "/problems/stale-revision");
    assert!(p["detail"].as_str().unwrap().contains("now at revision 2"), "{p}");
    let p = s
        .expect(
            Method::PUT,
            "/v1/templates/shell",
            &s.admin,
            Some(json!({"runtime": "shell", "revision": 1})),
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!(p["type"], "/problems/builtin");
    s.expect(
        Method::PUT,
        "/v1/templates/nothing-here",
        &s.admin,
        Some(json!({"runtime": "shell", "revision": 1})),
        StatusCode::NOT_FOUND,
    )
    .await;

    // Lists: by runtime, in pages.
    for i in 0..3 {
        s.expect(
            Method::POST,
            "/v1/templates",
            &s.admin,
            Some(json!({"id": format!("sh{i}"), "runtime": "shell"})),
            StatusCode::CREATED,
        )
        .await;
    }
    let pythons = s
        .expect(
            Method::GET,
            "/v1/templates?runtime=python",
            &dev,
            None,
            StatusCode::OK,
        )
        .await;
    let ids: Vec<&str> = pythons["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dify", "python-basic", "scraper"]);
    let first = s
        .expect(
            Method::GET,
            "/v1/templates?runtime=shell&limit=2",
            &dev,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let rest = s
        .expect(
            Method::GET,
            &format!("/v1/templates?runtime=shell&limit=2&cursor={cursor}"),
            &dev,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert_eq!(rest["next_cursor"], Value::Null);
    let p = s
        .expect(
            Method::GET,
            "/v1/templates?runtime=ruby",
            &dev,
            None,
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(locations(&p), ["query:runtime"]);

    // Delete: 204, then gone; never a built-in.
    let r = s
        .call(Method::DELETE, "/v1/templates/scraper", Some(&s.admin), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    s.expect(
        Method::GET,
        "/v1/templates/scraper",
        &dev,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    let p = s
        .expect(
            Method::DELETE,
            "/v1/templates/python-basic",
            &s.admin,
            None,
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!(p["type"], "/problems/builtin");

    // Every write is in the audit trail.
    let trail = s
        .expect(Method::GET, "/v1/audit?limit=500", &s.admin, None, StatusCode::OK)
        .await;
    let scraper: Vec<&str> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"]["template"] == "scraper")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(scraper, ["delete_template", "update_template", "create_template"]);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_templates_are_refused_with_every_problem_located() {
    let s = server().await;
    let post = |body: Value| s.call(Method::POST, "/v1/templates", Some(&s.admin), Some(body));

    // Shell and path injection, URLs, a missing runtime: one request, every
    // problem at its pointer.
    let r = post(json!({
        "id": "evil",
        "packages": [
            {"ecosystem": "pip", "name": "requests; rm -rf /"},
            {"ecosystem": "pip", "name": "../../etc/passwd"},
            {"ecosystem": "pip", "name": "https://evil.example/x.whl"},
            {"ecosystem": "pip", "name": "six", "version": "==1.0 --index-url http://evil"},
        ],
        "env": {"LD_PRELOAD": "/tmp/x.so"},
        "files": [{"path": "../outside", "content": "x"}],
    }))
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "/problems/invalid");
    assert_eq!(
        locations(&p),
        [
            "/runtime",
            "/packages/0/name",
            "/packages/1/name",
            "/packages/2/name",
            "/packages/3/version",
            "/env/LD_PRELOAD",
            "/files/0/path"
        ]
    );
    let messages: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(messages[0].starts_with("required"), "{messages:?}");
    assert!(messages[2].contains("path"), "{messages:?}");
    assert!(messages[3].contains("URL"), "{messages:?}");

    // 10,000 packages: one problem naming the count.
    let many: Vec<Value> = (0..10_000)
        .map(|i| json!({"ecosystem": "pip", "name": format!("pkg{i}")}))
        .collect();
    let r = post(json!({"id": "huge", "runtime": "python", "packages": many})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        p["errors"],
        json!([{"location": "/packages", "message": "10000 packages: at most 200 per template"}])
    );

    // A runtime that does not exist; packages of another ecosystem.
    let r = post(json!({"id": "x", "runtime": "ruby"})).await;
    let p: Value = r.json().await.unwrap();
    assert_eq!(locations(&p), ["/runtime"]);
    let r = post(json!({"id": "x", "runtime": "python",
        "packages": [{"ecosystem": "npm", "name": "left-pad"}]}))
    .await;
    let p: Value = r.json().await.unwrap();
    assert_eq!(locations(&p), ["/packages/0/ecosystem"]);

    // Not JSON: 400; not a JSON content type: 415; nothing was created.
    let r = s
        .client
        .post(s.url("/v1/templates"))
        .bearer_auth(&s.admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = s
        .client
        .post(s.url("/v1/templates"))
        .bearer_auth(&s.admin)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let all = s
        .expect(Method::GET, "/v1/templates", &s.admin, None, StatusCode::OK)
        .await;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        4,
        "only the built-ins and Dify's template"
    );
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_layer_record_is_readable_by_every_role() {
    let s = server().await;
    let app_key = {
        s.expect(
            Method::POST,
            "/v1/apps",
            &s.admin,
            Some(json!({"id": "shop"})),
            StatusCode::CREATED,
        )
        .await;
        s.key("app", "shop", Some("shop")).await
    };
    let missing = "a".repeat(64);
    let p = s
        .expect(
            Method::GET,
            &format!("/v1/layers/{missing}"),
            &app_key,
            None,
            StatusCode::NOT_FOUND,
        )
        .await;
    assert_eq!(p["type"], "/problems/not-found");
    let six = PackageReq {
        ecosystem: Ecosystem::Pip,
        name: "Six".into(),
        version: Some("==1.16.0".into()),
        hashes: vec![],
    };
    let layer = Layer::queued(
        TemplateRuntime::Python,
        "Python 3.11.2",
        &[six],
        "https://pypi.org/simple",
        1,
    );
    let (layer, _) = s.state.store.insert_layer(layer).await.unwrap();
    let view = s
        .expect(
            Method::GET,
            &format!("/v1/layers/{}", layer.id),
            &app_key,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(view["id"], layer.id.as_str());
    assert_eq!(view["status"], LayerStatus::Queued.as_str());
    assert_eq!(view["packages"][0]["name"], "six", "normalized");
    assert_eq!(view["interpreter"], "Python 3.11.2");
    assert_eq!(view["error"], Value::Null);
    assert_eq!(view["lock"], json!([]));
    s.stop().await.unwrap();
}
