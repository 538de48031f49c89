//! Attacks on a session's file API through the real `warden serve`: the
//! session's own code plants symbolic links (to `/etc/passwd`, to `/`, to a
//! host folder and a host file, upwards), hard links, a FIFO, names that
//! look like `..`, and tries `mknod`; then every file call (download, a
//! range, list, upload by PUT and by form, mkdir, delete) is aimed at them.
//! Nothing outside the workspace is read or written, a FIFO never blocks
//! the server, and each refusal says what it refused. A second app can
//! neither see nor touch the first app's session, its executions or files.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::platform::{Platform, Target};

/// Run a shell script in the session; the execution.
async fn sh(p: &Platform, key: &str, id: &str, code: &str) -> Value {
    let (st, e) = p
        .req(
            Method::POST,
            &format!("/v1/sessions/{id}/executions"),
            key,
            Some(json!({"language": "shell", "code": code})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{e}");
    e
}

/// One raw request on a file path (`Range` when given); status, headers'
/// `content-type` and the body, answered within 10 s (a FIFO must never
/// hold the server).
async fn file_call(
    p: &Platform,
    method: Method,
    path: &str,
    key: &str,
    range: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut r = crate::platform::client()
        .request(method.clone(), p.url(path))
        .bearer_auth(key)
        .body(body);
    if let Some(range) = range {
        r = r.header("range", range);
    }
    let call = async {
        let r = r.send().await.unwrap();
        let st = r.status();
        (st, r.bytes().await.unwrap().to_vec())
    };
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap_or_else(|_| panic!("{method} {path} did not answer within 10 s"));
    assert!(started.elapsed() < Duration::from_secs(10));
    out
}

fn detail(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v["detail"].as_str().unwrap_or_default().to_owned()
}

fn sha(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_links_fifos_and_odd_names_never_lead_the_file_api_out_of_the_workspace() {
    let p = Platform::start(&[]);
    let key = p.app("shop", &[]).await;
    let target = Target::new();
    let passwd = sha("/etc/passwd");
    let (st, v) = p.req(Method::POST, "/v1/sessions", &key, Some(json!({}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let host_dir = target.path.display().to_string();

    // The session's code plants its traps.
    let e = sh(
        &p,
        &key,
        &id,
        &format!(
            "set -u\n\
             echo inside > real.txt\n\
             mkdir -p real\n\
             ln -s /etc/passwd passwd\n\
             ln -s / root\n\
             ln -s {host_dir} hostdir\n\
             ln -s {host_dir}/keep hostfile\n\
             ln -s ../../../../.. up\n\
             ln -s {host_dir} real/inner\n\
             ln real.txt hard.txt\n\
             ln /etc/passwd hardpasswd 2>/dev/null && echo HARDLINKED-PASSWD\n\
             mkfifo fifo\n\
             mknod null c 1 3 2>/dev/null && echo MKNOD-WORKED\n\
             mknod disk b 8 0 2>/dev/null && echo MKNOD-WORKED\n\
             echo dots > ...\n\
             echo dotdot > ..x\n\
             echo lead > '.. '\n\
             echo done"
        ),
    )
    .await;
    let out = e["stdout"].as_str().unwrap_or_default();
    assert!(out.ends_with("done\n"), "{e}");
    assert!(
        !out.contains("MKNOD-WORKED"),
        "a box cannot make device nodes: {e}"
    );
    assert!(
        !out.contains("HARDLINKED-PASSWD"),
        "a box cannot hard-link a host file into its workspace: {e}"
    );

    let files = format!("/v1/sessions/{id}/files");
    // The listing shows each trap for what it is, following none.
    let (st, list) = p.req(Method::GET, &files, &key, None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let kind = |name: &str| -> String {
        list["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{name} is listed: {list}"))
    };
    for link in ["passwd", "root", "hostdir", "hostfile", "up"] {
        assert_eq!(kind(link), "link", "{link}");
    }
    assert_eq!(kind("fifo"), "other");
    assert_eq!(kind("hard.txt"), "file");
    assert_eq!(kind("..."), "file");
    assert!(
        !list["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "null" || e["name"] == "disk"),
        "{list}"
    );

    // Reads through links are refused, whole or in ranges, and say why.
    for path in [
        "passwd",
        "root/etc/passwd",
        "hostdir/keep",
        "hostfile",
        "up/etc/passwd",
        "real/inner/keep",
    ] {
        for range in [None, Some("bytes=0-3"), Some("bytes=-5")] {
            let (st, body) =
                file_call(&p, Method::GET, &format!("{files}/{path}"), &key, range, vec![]).await;
            assert_eq!(
                st,
                StatusCode::CONFLICT,
                "GET {path} {range:?}: {}",
                String::from_utf8_lossy(&body)
            );
            let text = String::from_utf8_lossy(&body);
            assert!(!text.contains("root:x:0:0"), "{path}: {text}");
            assert!(!text.contains("host data"), "{path}: {text}");
            let why = detail(&body);
            assert!(why.contains("link") || why.contains("outside"), "{path}: {text}");
        }
    }
    // Listing through a link is refused too.
    for dir in ["root", "hostdir", "up", "real/inner", "root/etc"] {
        let (st, v) = p
            .req(Method::GET, &format!("{files}?path={dir}"), &key, None)
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "list {dir}: {v}");
        assert!(!v.to_string().contains("keep"), "{dir}: {v}");
    }
    // A FIFO is never opened: refused at once, the server not held.
    for range in [None, Some("bytes=0-0")] {
        let (st, body) = file_call(&p, Method::GET, &format!("{files}/fifo"), &key, range, vec![]).await;
        assert_eq!(st, StatusCode::CONFLICT, "{}", String::from_utf8_lossy(&body));
        assert!(detail(&body).contains("not a regular file"), "{}", detail(&body));
    }
    let (st, body) = file_call(
        &p,
        Method::PUT,
        &format!("{files}/fifo"),
        &key,
        None,
        b"x".to_vec(),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{}", String::from_utf8_lossy(&body));
    // A hard link to a workspace file is that file: read as it is.
    let (st, body) = file_call(&p, Method::GET, &format!("{files}/hard.txt"), &key, None, vec![]).await;
    assert_eq!((st, body.as_slice()), (StatusCode::OK, b"inside\n".as_slice()));
    // Names that look like `..` are names.
    // (`.. ` is sent as `..%20`: a URL parser trims a trailing space.)
    for (name, content) in [("...", "dots\n"), ("..x", "dotdot\n"), ("..%20", "lead\n")] {
        let (st, body) = file_call(&p, Method::GET, &format!("{files}/{name}"), &key, None, vec![]).await;
        assert_eq!(
            (st, String::from_utf8_lossy(&body).as_ref()),
            (StatusCode::OK, content),
            "{name}"
        );
    }

    // Writes through links are refused: PUT, form, mkdir.
    for path in [
        "passwd",
        "hostfile",
        "hostdir/new.txt",
        "root/tmp/new.txt",
        "up/tmp/new.txt",
        "real/inner/new.txt",
        "real/inner/keep",
    ] {
        let (st, body) = file_call(
            &p,
            Method::PUT,
            &format!("{files}/{path}"),
            &key,
            None,
            b"owned".to_vec(),
        )
        .await;
        assert_eq!(
            st,
            StatusCode::CONFLICT,
            "PUT {path}: {}",
            String::from_utf8_lossy(&body)
        );
        let form =
            reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(b"owned".to_vec()));
        let r = crate::platform::client()
            .post(p.url(&format!("{files}?path={path}")))
            .bearer_auth(&key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CONFLICT, "form {path}");
    }
    for dir in [
        "hostdir/sub",
        "root/tmp/sub",
        "real/inner/sub",
        "passwd/sub",
        "fifo/sub",
    ] {
        let (st, v) = p
            .req(
                Method::POST,
                &format!("/v1/sessions/{id}/directories"),
                &key,
                Some(json!({"path": dir})),
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "mkdir {dir}: {v}");
    }
    // Deleting a link removes the link, never what it points to; deleting
    // through one is refused.
    for path in ["hostdir/keep", "real/inner/keep", "root/etc/passwd"] {
        let (st, body) = file_call(&p, Method::DELETE, &format!("{files}/{path}"), &key, None, vec![]).await;
        assert_eq!(
            st,
            StatusCode::CONFLICT,
            "DELETE {path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    for path in ["passwd", "hostdir", "hostfile", "root", "up", "real", "fifo"] {
        let (st, body) = file_call(&p, Method::DELETE, &format!("{files}/{path}"), &key, None, vec![]).await;
        assert_eq!(
            st,
            StatusCode::NO_CONTENT,
            "DELETE {path}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    // The host is as it was.
    target.assert_untouched();
    assert_eq!(sha("/etc/passwd"), passwd, "/etc/passwd changed");
    assert!(std::path::Path::new("/etc").is_dir() && std::path::Path::new("/tmp").is_dir());
    assert!(!std::path::Path::new("/tmp/new.txt").exists());
    let e = sh(
        &p,
        &key,
        &id,
        "ls -A | LC_ALL=C sort | sed 's/.*/[&]/' | tr -d '\\n'",
    )
    .await;
    assert_eq!(e["stdout"], "[.. ][...][..x][hard.txt][real.txt]", "{e}");
    // The server still answers at once.
    let (st, _) = p
        .req(Method::GET, &format!("/v1/sessions/{id}"), &key, None)
        .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_app_can_never_see_or_touch_another_apps_session() {
    let p = Platform::start(&[]);
    let shop = p.app("shop", &[]).await;
    let rival = p.app("rival", &[]).await;
    let (st, v) = p.req(Method::POST, "/v1/sessions", &shop, Some(json!({}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let e = sh(&p, &shop, &id, "echo secret > s.txt").await;
    let exec = e["id"].as_str().unwrap().to_owned();
    // A well-formed id no session has: what "not there" looks like.
    let missing = format!("ses_{}", "0".repeat(32));

    let answer = |status: StatusCode, body: &[u8]| {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        (status, v["type"].clone(), v["title"].clone())
    };
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/sessions/{}".into(), None),
        (Method::POST, "/v1/sessions/{}/terminate".into(), None),
        (Method::GET, "/v1/sessions/{}/executions".into(), None),
        (
            Method::POST,
            "/v1/sessions/{}/executions".into(),
            Some(json!({"language": "shell", "code": "cat s.txt"})),
        ),
        (Method::GET, "/v1/sessions/{}/files".into(), None),
        (Method::GET, "/v1/sessions/{}/files/s.txt".into(), None),
        (Method::PUT, "/v1/sessions/{}/files/s.txt".into(), None),
        (Method::DELETE, "/v1/sessions/{}/files/s.txt".into(), None),
        (
            Method::POST,
            "/v1/sessions/{}/directories".into(),
            Some(json!({"path": "d"})),
        ),
        (Method::DELETE, "/v1/sessions/{}".into(), None),
    ];
    for (method, path, body) in &calls {
        let mut seen = Vec::new();
        for sid in [&id, &missing] {
            let url = path.replace("{}", sid);
            let mut r = crate::platform::client()
                .request(method.clone(), p.url(&url))
                .bearer_auth(&rival);
            if let Some(b) = body {
                r = r.json(b);
            }
            let r = r.send().await.unwrap();
            let st = r.status();
            let b = r.bytes().await.unwrap();
            let text = String::from_utf8_lossy(&b).into_owned();
            assert!(
                !text.contains("secret") && !text.contains("shop"),
                "{method} {url}: {text}"
            );
            seen.push(answer(st, &b));
        }
        assert_eq!(seen[0].0, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(
            seen[0], seen[1],
            "{method} {path}: another app's session answers like a missing one"
        );
    }
    // Its execution and its stream are not the rival's either.
    for path in [
        format!("/v1/executions/{exec}"),
        format!("/v1/executions/{exec}/events"),
    ] {
        let (st, v) = p.req(Method::GET, &path, &rival, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    let (st, v) = p
        .req(
            Method::POST,
            &format!("/v1/executions/{exec}/cancel"),
            &rival,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    // Lists never show it.
    let (st, v) = p.req(Method::GET, "/v1/sessions", &rival, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["items"], json!([]), "{v}");
    let (st, v) = p.req(Method::GET, "/v1/sessions?app=shop", &rival, None).await;
    assert!(st == StatusCode::OK || st == StatusCode::FORBIDDEN, "{v}");
    assert!(!v.to_string().contains(&id), "{v}");
    // And the session is as the shop left it.
    let (st, v) = p
        .req(Method::GET, &format!("/v1/sessions/{id}"), &shop, None)
        .await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("running")),
        "{v}"
    );
    let e = sh(&p, &shop, &id, "cat s.txt; ls").await;
    assert_eq!(e["stdout"], "secret\ns.txt\n", "{e}");
}
