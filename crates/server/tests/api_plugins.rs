//! API plugins (`type: api`) through the real HTTP API: an OpenAPI document
//! uploaded, reviewed and approved; its tools listed with the version; new
//! servers and tools shown in the next version's review; hostile documents
//! refused with their pointer and nothing created; tools called by Warden
//! itself against a recording upstream on loopback, with the credential
//! named after the operation's security scheme injected, and nothing else.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

    // Calling it without the credential its security scheme names: a
    // failed execution naming it (nothing is sent anywhere).
    let (status, body, _) = s
        .execute(
            &s.admin,
            "petshop",
            code,
            &json!({"tool": "getPet", "input": {"id": 1}}).to_string(),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "failed", "{body}");
    assert_eq!(body["error"]["type"], "MissingCredential", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("`key`"),
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

const CREDENTIALS_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const API_KEY: &str = "pets-k3y-the-result-never-shows";
const TOKEN: &str = "pets-t0ken-the-record-never-shows";
const CLIENT_SECRET: &str = "pets-cl1ent-secret-never-shows";
const OAUTH_TOKEN: &str = "pets-0auth-token-never-shows";

/// The third party, on loopback: records every request (head and body)
/// and answers by path: `/api/pets/7` a pet, `/api/pets/8` one that breaks
/// the output schema, `/api/pets/9` a 404, `/api/pets/10` a redirect to
/// `away_port`, `POST /api/pets` the body it got back, `POST /oauth/token`
/// an OAuth2 token ([`OAUTH_TOKEN`]).
struct Pets {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Pets {
    fn start(away_port: u16) -> Pets {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|n| n.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if req.len() >= end + 4 + len {
                            break;
                        }
                    }
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req).into_owned();
                kept.lock().unwrap().push(req.clone());
                let line = req.lines().next().unwrap_or("").to_owned();
                let path = line.split(' ').nth(1).unwrap_or("/");
                let (status, extra, body) = match (
                    line.split(' ').next().unwrap_or(""),
                    path.split('?').next().unwrap(),
                ) {
                    ("GET", "/api/pets/7") => (
                        "200 OK",
                        String::new(),
                        json!({"name": "Rex", "echo": req}).to_string(),
                    ),
                    ("GET", "/api/pets/8") => ("200 OK", String::new(), json!({"nom": "Rex"}).to_string()),
                    ("GET", "/api/pets/10") => (
                        "302 Found",
                        format!("Location: http://127.0.0.1:{away_port}/stolen\r\n"),
                        String::new(),
                    ),
                    ("POST", "/oauth/token") => (
                        "200 OK",
                        String::new(),
                        json!({"access_token": OAUTH_TOKEN, "token_type": "Bearer", "expires_in": 3600})
                            .to_string(),
                    ),
                    ("POST", "/api/pets") => (
                        "201 Created",
                        String::new(),
                        req.split_once("\r\n\r\n")
                            .map(|(_, b)| b.to_owned())
                            .unwrap_or_default(),
                    ),
                    _ => (
                        "404 Not Found",
                        String::new(),
                        json!({"error": "no such pet"}).to_string(),
                    ),
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Pets { port, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// The header names of a recorded request, sorted.
fn header_names(req: &str) -> Vec<String> {
    let head = req.split_once("\r\n\r\n").map_or(req, |(h, _)| h);
    let mut names: Vec<String> = head
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(':').next().unwrap().to_ascii_lowercase())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_plugins_tools_are_called_by_warden_with_only_their_credential() {
    let away = TcpListener::bind("127.0.0.1:0").unwrap();
    away.set_nonblocking(true).unwrap();
    let away_port = away.local_addr().unwrap().port();
    let upstream = Pets::start(away_port);
    let host = format!("127.0.0.1:{}", upstream.port);
    let s = server_with(|c| {
        c.policy.network_ip_literals = true;
        c.policy.api_local_servers = true;
        c.policy.network_allow_cidrs = vec!["127.0.0.1/32".into()];
        c.credentials.key = Some(CREDENTIALS_KEY.into());
    })
    .await;
    let dev = s.key("developer", "dev", None).await;
    let code = "tests.api.calls";
    let mut doc = pets(&[&format!("http://{host}/api")], true);
    doc["paths"]["/pets"]["post"]["security"] = json!([{"token": []}]);
    doc["paths"]["/pets"]["post"]["responses"] = json!({"201": {"description": "made",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}});
    doc["components"]["securitySchemes"]["token"] = json!({"type": "http", "scheme": "bearer"});
    s.publish(
        &dev,
        api_package(code, "1.0.0", "openapi.json", &doc.to_string()),
        "petshop",
    )
    .await;
    let app = s.key("app", "shop", Some("petshop")).await;
    for (name, body) in [
        (
            "key",
            json!({"kind": "api_key", "header": "X-Api-Key", "secret": API_KEY, "hosts": [host]}),
        ),
        (
            "token",
            json!({"kind": "bearer", "secret": TOKEN, "hosts": [host]}),
        ),
    ] {
        s.expect(
            Method::PUT,
            &format!("/v1/apps/petshop/credentials/{name}"),
            &s.admin,
            Some(body),
            StatusCode::CREATED,
        )
        .await;
    }
    let call = |event: Value| {
        let (s, app) = (&s, &app);
        async move {
            let (status, v, _) = s.execute(app, "petshop", code, &event.to_string(), "").await;
            (status, v)
        }
    };

    // GET with a path and a query parameter: the API key goes in its
    // header, percent-encoding keeps the path parameter one segment.
    let (status, v) = call(json!({"tool": "getPet", "input": {"id": 7, "fields": "name tag"}})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["return_value"]["name"], "Rex", "{v}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with("GET /api/pets/7?fields=name+tag HTTP/1.1\r\n"),
        "{}",
        seen[0]
    );
    assert!(
        seen[0].contains(&format!("\r\nx-api-key: {API_KEY}\r\n")),
        "{}",
        seen[0]
    );
    assert_eq!(
        header_names(&seen[0]),
        ["accept-encoding", "connection", "host", "x-api-key"],
        "nothing else: {}",
        seen[0]
    );
    // The upstream echoed the request: the result shows the key redacted.
    assert!(!v.to_string().contains(API_KEY), "{v}");
    assert!(
        v["return_value"]["echo"]
            .as_str()
            .unwrap()
            .contains("x-api-key: <redacted>"),
        "{v}"
    );
    let mut ids = vec![v["id"].as_str().unwrap().to_owned()];

    // POST with a JSON body: the bearer token, and the body as sent.
    let (_, v) = call(json!({"tool": "addPet", "input": {"body": {"name": "Tom"}}})).await;
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["return_value"], json!({"name": "Tom"}), "{v}");
    ids.push(v["id"].as_str().unwrap().to_owned());
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let post = &seen[1];
    assert!(post.starts_with("POST /api/pets HTTP/1.1\r\n"), "{post}");
    assert!(
        post.contains(&format!("\r\nauthorization: Bearer {TOKEN}\r\n")),
        "{post}"
    );
    assert!(
        !post.contains(API_KEY),
        "the other credential is not sent: {post}"
    );
    assert!(post.contains("\r\ncontent-type: application/json\r\n"), "{post}");
    assert!(post.ends_with("\r\n\r\n{\"name\":\"Tom\"}"), "{post}");
    assert_eq!(
        header_names(post),
        [
            "accept-encoding",
            "authorization",
            "connection",
            "content-length",
            "content-type",
            "host"
        ],
        "{post}"
    );

    // Async: the queued call is prepared again from its stored event.
    let (status, v, _) = s
        .execute(
            &app,
            "petshop",
            code,
            &json!({"tool": "getPet", "input": {"id": 7}}).to_string(),
            "?mode=async",
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let mut rec = Value::Null;
    for _ in 0..100 {
        rec = s
            .expect(
                Method::GET,
                &format!("/v1/executions/{id}"),
                &app,
                None,
                StatusCode::OK,
            )
            .await;
        if rec["status"] != "queued" && rec["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rec["status"], "success", "{rec}");
    assert_eq!(rec["return_value"]["name"], "Rex", "{rec}");
    ids.push(id);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen[2].contains(&format!("\r\nx-api-key: {API_KEY}\r\n")),
        "{}",
        seen[2]
    );

    // An input failing the tool's input schema: 422 located under
    // `/input`, nothing recorded, nothing sent.
    for (event, at) in [
        (json!({"tool": "getPet", "input": {"id": "seven"}}), "/input/id"),
        (json!({"tool": "getPet", "input": {}}), "/input"),
        (json!({"tool": "deletePet", "input": {"id": 1}}), "/tool"),
    ] {
        let (status, body) = call(event.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{event}: {body}");
        assert!(
            body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["location"] == at),
            "{event}: {body}"
        );
    }
    assert_eq!(upstream.seen().len(), 3, "nothing was sent");

    // A response failing the output schema is not a success.
    let (_, v) = call(json!({"tool": "getPet", "input": {"id": 8}})).await;
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["error"]["type"], "OutputSchemaViolation", "{v}");

    // A non-2xx answer is a failed call naming the status.
    let (_, v) = call(json!({"tool": "getPet", "input": {"id": 9}})).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["type"], "UpstreamStatus", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("404"), "{v}");

    // A redirect to another host is not followed: the refusal is recorded.
    let (_, v) = call(json!({"tool": "getPet", "input": {"id": 10}})).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["type"], "EgressRefused", "{v}");
    assert_eq!(v["egress_refused"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(
        matches!(away.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the other host was never contacted"
    );

    // Neither secret is in any result, record or the audit trail; each
    // use is audited.
    let mut texts = Vec::new();
    for id in &ids {
        let rec = s
            .expect(
                Method::GET,
                &format!("/v1/executions/{id}"),
                &s.admin,
                None,
                StatusCode::OK,
            )
            .await;
        assert_eq!(rec["status"], "success", "{rec}");
        texts.push(rec.to_string());
    }
    let trail = s
        .expect(Method::GET, "/v1/audit?limit=200", &s.admin, None, StatusCode::OK)
        .await;
    texts.push(trail.to_string());
    for text in texts {
        assert!(!text.contains(API_KEY) && !text.contains(TOKEN), "{text}");
    }
    assert!(trail.to_string().contains("credential_use"), "{trail}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_decides_where_a_credential_goes_and_one_that_does_not_fit_is_not_sent() {
    let upstream = Pets::start(9);
    let host = format!("127.0.0.1:{}", upstream.port);
    let s = server_with(|c| {
        c.policy.network_ip_literals = true;
        c.policy.api_local_servers = true;
        c.policy.network_allow_cidrs = vec!["127.0.0.1/32".into()];
        c.credentials.key = Some(CREDENTIALS_KEY.into());
    })
    .await;
    let dev = s.key("developer", "dev", None).await;
    let code = "tests.api.schemes";
    let mut doc = pets(&[&format!("http://{host}/api")], true);
    doc["security"] = json!([{"q": []}]);
    doc["components"]["securitySchemes"] = json!({
        "q": {"type": "apiKey", "in": "query", "name": "key"},
        "cc": {"type": "oauth2", "flows": {"clientCredentials": {
            "tokenUrl": format!("http://{host}/oauth/token"), "scopes": {"pets:write": "write"}}}}
    });
    doc["paths"]["/pets"]["post"]["security"] = json!([{"cc": ["pets:write"]}]);
    doc["paths"]["/pets/{id}"]["get"]["parameters"]
        .as_array_mut()
        .unwrap()
        .push(
            json!({"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}}),
        );
    doc["paths"]["/pets"]["post"]["responses"] = json!({"201": {"description": "made",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}});
    s.publish(
        &dev,
        api_package(code, "1.0.0", "openapi.json", &doc.to_string()),
        "petshop",
    )
    .await;
    let app = s.key("app", "shop", Some("petshop")).await;
    let call = |event: Value| {
        let (s, app) = (&s, &app);
        async move {
            let (status, v, _) = s.execute(app, "petshop", code, &event.to_string(), "").await;
            assert_eq!(status, StatusCode::OK, "{v}");
            v
        }
    };

    // The app's `q` puts its key in a header; the document wants it in the
    // query: the call fails naming both, and nothing is sent.
    s.expect(
        Method::PUT,
        "/v1/apps/petshop/credentials/q",
        &s.admin,
        Some(json!({"kind": "api_key", "header": "key", "secret": API_KEY, "hosts": [host]})),
        StatusCode::CREATED,
    )
    .await;
    let v = call(json!({"tool": "getPet", "input": {"id": 7}})).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["type"], "CredentialMismatch", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("query parameter `key`") && message.contains("header `key`"),
        "{message}"
    );
    assert!(upstream.seen().is_empty(), "nothing was sent");

    // The installation's own `q`, a query key: it goes in the query, as
    // the document says, and in no header.
    s.expect(
        Method::PUT,
        &format!("/v1/apps/petshop/installations/{code}/credentials/q"),
        &s.admin,
        Some(json!({"kind": "api_key", "query": "key", "secret": API_KEY, "hosts": [host]})),
        StatusCode::CREATED,
    )
    .await;
    let v = call(json!({"tool": "getPet", "input": {"id": 7, "fields": "name", "tags": ["a b", "c"]}})).await;
    assert_eq!(v["status"], "success", "{v}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let line = seen[0].lines().next().unwrap();
    assert!(line.starts_with("GET /api/pets/7?"), "{line}");
    let query: Vec<&str> = line
        .split(' ')
        .nth(1)
        .unwrap()
        .split_once('?')
        .unwrap()
        .1
        .split('&')
        .collect();
    assert_eq!(query.len(), 4, "{line}");
    assert!(query.contains(&"fields=name"), "{line}");
    assert!(
        query.contains(&"tags=a+b") && query.contains(&"tags=c"),
        "an array goes as a repeated name: {line}"
    );
    assert!(query.contains(&format!("key={API_KEY}").as_str()), "{line}");
    // `Accept-Encoding: identity`: a credential's answer must be scrubbable.
    assert_eq!(
        header_names(&seen[0]),
        ["accept-encoding", "connection", "host"],
        "{}",
        seen[0]
    );
    assert!(!v.to_string().contains(API_KEY), "the echo is scrubbed: {v}");

    // OAuth2 client credentials: Warden fetches a token once (with the
    // client secret, to the credential's token URL) and sends it as a
    // bearer token on each call; the client secret goes nowhere else.
    s.expect(
        Method::PUT,
        "/v1/apps/petshop/credentials/cc",
        &s.admin,
        Some(
            json!({"kind": "oauth2_client_credentials", "secret": CLIENT_SECRET,
            "token_url": format!("http://{host}/oauth/token"), "client_id": "shop",
            "scope": "pets:write", "hosts": [host]}),
        ),
        StatusCode::CREATED,
    )
    .await;
    for name in ["Tom", "Kit"] {
        let v = call(json!({"tool": "addPet", "input": {"body": {"name": name}}})).await;
        assert_eq!(v["status"], "success", "{v}");
        assert_eq!(v["return_value"], json!({"name": name}), "{v}");
    }
    let seen = upstream.seen();
    let tokens: Vec<&String> = seen
        .iter()
        .filter(|r| r.starts_with("POST /oauth/token "))
        .collect();
    assert_eq!(tokens.len(), 1, "one token fetch for two calls: {seen:?}");
    assert!(
        tokens[0].contains("grant_type=client_credentials"),
        "{}",
        tokens[0]
    );
    let posts: Vec<&String> = seen.iter().filter(|r| r.starts_with("POST /api/pets ")).collect();
    assert_eq!(posts.len(), 2, "{seen:?}");
    for post in &posts {
        assert!(
            post.contains(&format!("\r\nauthorization: Bearer {OAUTH_TOKEN}\r\n")),
            "{post}"
        );
        assert!(!post.contains(CLIENT_SECRET) && !post.contains(API_KEY), "{post}");
    }
    let trail = s
        .expect(Method::GET, "/v1/audit?limit=200", &s.admin, None, StatusCode::OK)
        .await
        .to_string();
    for secret in [API_KEY, CLIENT_SECRET, OAUTH_TOKEN] {
        assert!(!trail.contains(secret), "{trail}");
    }
    s.stop().await.unwrap();
}
