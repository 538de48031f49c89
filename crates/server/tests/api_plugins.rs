//! API plugins (`type: api`) through the real HTTP API: an OpenAPI document
//! uploaded, reviewed and approved; its tools listed with the version; new
//! servers and tools shown in the next version's review; hostile documents
//! refused with their pointer and nothing created; a call answered 501
//! until Warden's HTTP caller lands.

mod common;

use common::{package, server, server_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn api_manifest(code: &str, version: &str) -> Value {
    json!({
        "code": code, "name": "Pets", "version": version, "type": "api",
        "description": "The Pets API, as tools.", "author": "Tests"
    })
}

fn pets(servers: &[&str], extra_op: bool) -> Value {
    let mut d = json!({
        "openapi": "3.0.3",
        "info": {"title": "Pets", "version": "1"},
        "servers": servers.iter().map(|u| json!({"url": u})).collect::<Vec<_>>(),
        "security": [{"key": []}],
        "paths": {
            "/pets/{id}": {
                "get": {
                    "operationId": "getPet",
                    "summary": "Read a pet",
                    "parameters": [
                        {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}},
                        {"name": "fields", "in": "query", "schema": {"type": "string", "nullable": true}}
                    ],
                    "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}}
                }
            }
        },
        "components": {
            "schemas": {"Pet": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
            "securitySchemes": {"key": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}}
        }
    });
    if extra_op {
        d["paths"]["/pets"] = json!({"post": {
            "operationId": "addPet",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}},
            "responses": {"201": {"description": "made"}}
        }});
    }
    d
}

fn api_package(code: &str, version: &str, doc_name: &str, doc: &str) -> Vec<u8> {
    package(&api_manifest(code, version), &[(doc_name, doc)])
}

#[tokio::test]
async fn an_api_plugin_is_uploaded_reviewed_approved_and_lists_its_tools() {
    let s = server().await;
    let dev = s.key("developer", "dev", None).await;
    let code = "tests.api.pets";
    let doc = pets(&["https://api.pets.example/v1"], false).to_string();
    let v = s
        .publish(&dev, api_package(code, "1.0.0", "openapi.json", &doc), "petshop")
        .await;
    assert_eq!(v["runtime"], "api");

    let got = s
        .expect(
            Method::GET,
            &format!("/v1/plugins/{code}/versions/1.0.0"),
            &dev,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(got["status"], "active");
    let api = &got["api"];
    assert_eq!(api["document"], "openapi.json");
    assert_eq!(api["servers"], json!(["https://api.pets.example/v1"]));
    assert_eq!(api["hosts"], json!(["api.pets.example"]));
    let tools = api["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1);
    let t = &tools[0];
    assert_eq!(
        (t["name"].as_str(), t["method"].as_str(), t["path"].as_str()),
        (Some("getPet"), Some("GET"), Some("/pets/{id}"))
    );
    assert_eq!(t["summary"], "Read a pet");
    assert_eq!(t["input_schema"]["required"], json!(["id"]));
    assert_eq!(
        t["input_schema"]["properties"]["fields"],
        json!({"type": ["string", "null"]})
    );
    assert_eq!(t["output_schema"]["required"], json!(["name"]));
    assert_eq!(
        t["parameters"],
        json!([{"name": "id", "in": "path"}, {"name": "fields", "in": "query"}])
    );
    assert_eq!(
        t["security"],
        json!([[{"scheme": "key", "type": "api_key_header", "name": "X-Api-Key", "token_url": null, "scopes": []}]])
    );

    // The next version reaches a new host and gains a tool: the review
    // shows both as what it asks for beyond the active version.
    let doc2 = pets(&["https://api.pets.example/v1", "https://eu.pets.example"], true).to_string();
    let r = s
        .upload(&dev, api_package(code, "1.1.0", "openapi.json", &doc2))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    s.expect(
        Method::POST,
        &format!("/v1/plugins/{code}/versions/1.1.0/submit"),
        &dev,
        None,
        StatusCode::OK,
    )
    .await;
    let report = s
        .expect(
            Method::GET,
            &format!("/v1/plugins/{code}/versions/1.1.0/report"),
            &s.admin,
            None,
            StatusCode::OK,
        )
        .await;
    let changes: Vec<(String, String, String)> = report["permission_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let f = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (f("field"), f("from"), f("to"))
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                "permissions.network".into(),
                String::new(),
                "eu.pets.example".into()
            ),
            ("api.tools".into(), String::new(), "addPet POST /pets".into()),
        ]
    );

    // Calling it: not available yet, and said so (501), not a failure.
    let (status, body, _) = s.execute(&s.admin, "petshop", code, "{}", "").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert_eq!(body["status"], 501);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("calling API plugins is not available yet"),
        "{body}"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn hostile_documents_are_refused_with_their_pointer_and_create_nothing() {
    let s = server().await;
    let dev = s.key("developer", "dev", None).await;
    let code = "tests.api.hostile";
    let with = |f: &dyn Fn(&mut Value)| {
        let mut d = pets(&["https://api.pets.example"], false);
        f(&mut d);
        d.to_string()
    };
    let mut many = serde_json::Map::new();
    for i in 0..10_000 {
        many.insert(
            format!("/p{i}"),
            json!({"get": {"operationId": format!("op{i}"), "responses": {}}}),
        );
    }
    let bomb = {
        let mut y = String::from(
            "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for i in 1..10 {
            y.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{}", i - 1); 10].join(",")
            ));
        }
        y
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "openapi.json",
            with(&|d| d["servers"] = json!([{"url": "https://169.254.169.254/latest"}])),
            "openapi.json#/servers/0/url",
            "link-local",
        ),
        (
            "openapi.json",
            with(&|d| d["servers"] = json!([{"url": "https://localhost"}])),
            "openapi.json#/servers/0/url",
            "loopback",
        ),
        (
            "openapi.json",
            with(&|d| d["servers"] = json!([{"url": "http://api.pets.example"}])),
            "openapi.json#/servers/0/url",
            "plain http",
        ),
        (
            "openapi.json",
            with(&|d| {
                d["paths"]["/pets/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
                    json!({"$ref": "https://evil.example/pet.json"})
            }),
            "openapi.json#/paths/~1pets~1{id}/get/responses/200/content/application~1json/schema/$ref",
            "only local references",
        ),
        (
            "openapi.json",
            with(&|d| {
                d["components"]["schemas"]["Pet"]["properties"]["parent"] =
                    json!({"$ref": "#/components/schemas/Pet"})
            }),
            "openapi.json#/components/schemas/Pet/properties/parent/$ref",
            "recursive schema",
        ),
        (
            "openapi.json",
            with(&|d| d["paths"] = Value::Object(many.clone())),
            "openapi.json#/paths",
            "at most 200",
        ),
        (
            "openapi.json",
            with(&|d| d["components"]["securitySchemes"]["key"]["in"] = json!("cookie")),
            "openapi.json#/components/securitySchemes/key/in",
            "cookie",
        ),
        ("schema.yaml", bomb, "schema.yaml#/", "not valid YAML"),
    ];
    for (name, doc, at, why) in cases {
        let r = s.upload(&dev, api_package(code, "1.0.0", name, &doc)).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{at}: {body}");
        let errors = body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{body}");
        assert_eq!(errors[0]["location"], at, "{body}");
        assert!(errors[0]["message"].as_str().unwrap().contains(why), "{body}");
    }
    // Nothing was created.
    s.expect(
        Method::GET,
        &format!("/v1/plugins/{code}"),
        &dev,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn local_servers_are_accepted_only_where_the_operator_allows_them() {
    let doc = pets(&["http://127.0.0.1:8080/api"], false).to_string();
    let zip = || api_package("tests.api.local", "1.0.0", "openapi.json", &doc);
    let strict = server().await;
    let dev = strict.key("developer", "dev", None).await;
    let r = strict.upload(&dev, zip()).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["location"], "openapi.json#/servers/0/url",
        "{body}"
    );
    strict.stop().await.unwrap();

    let open = server_with(|c| {
        c.policy.network_ip_literals = true;
        c.policy.api_local_servers = true;
    })
    .await;
    let dev = open.key("developer", "dev", None).await;
    let r = open.upload(&dev, zip()).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["api"]["hosts"], json!(["127.0.0.1:8080"]));
    open.stop().await.unwrap();
}
