//! Sessions that outlive their process, through the real binary: a node
//! killed with SIGKILL resumes, when it starts again, the session it ran
//! from its latest snapshot (nothing of the old box left running) and
//! marks the other lost; two nodes sharing PostgreSQL (and the S3-compatible
//! server, when the test command started one) forward a session's requests
//! to its owner, and when the owner is killed the other takes its session
//! over from the snapshot; the killed node, back, does not resume it twice.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use super::{Serve, client, req, sqlx_create};

/// An app `shop` and its key, made with the admin key.
async fn shop(s: &Serve, c: &Client, admin: &str) -> String {
    let (st, v) = req(
        c,
        Method::POST,
        s.url("/v1/apps"),
        admin,
        Some(json!({"id": "shop"})),
    )
    .await;
    assert!(st == StatusCode::CREATED || st == StatusCode::CONFLICT, "{v}");
    let (st, v) = req(
        c,
        Method::POST,
        s.url("/v1/keys"),
        admin,
        Some(json!({"name": "shop", "role": "app", "app": "shop"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["secret"].as_str().unwrap().to_owned()
}

async fn new_session(s: &Serve, c: &Client, key: &str) -> String {
    new_session_with(s, c, key, json!({})).await
}

async fn new_session_with(s: &Serve, c: &Client, key: &str, body: Value) -> String {
    let (st, v) = req(c, Method::POST, s.url("/v1/sessions"), key, Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// Run shell code in a session; its stdout.
async fn sh(s: &Serve, c: &Client, key: &str, id: &str, code: &str) -> String {
    let (st, v) = req(
        c,
        Method::POST,
        s.url(&format!("/v1/sessions/{id}/executions")),
        key,
        Some(json!({"language": "shell", "code": code})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "success", "{v}");
    v["stdout"].as_str().unwrap_or_default().to_owned()
}

async fn snapshot(s: &Serve, c: &Client, key: &str, id: &str) -> String {
    let (st, v) = req(
        c,
        Method::POST,
        s.url(&format!("/v1/sessions/{id}/snapshots")),
        key,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

async fn get(s: &Serve, c: &Client, key: &str, id: &str) -> Value {
    let (st, v) = req(c, Method::GET, s.url(&format!("/v1/sessions/{id}")), key, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

/// Processes on the host whose environment holds `marker` (a session's
/// environment reaches its box's processes).
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            found.push(format!(
                "{}: {}",
                e.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            ));
        }
    }
    found
}

/// Mounts whose path lies under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().nth(4).is_some_and(|m| m.starts_with(&dir)))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_resumes_its_session_from_the_snapshot_and_leaves_nothing_behind() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_string_lossy().into_owned();
    // No boxes started ahead: every session's box then starts with the
    // session's environment, which is how this test finds its processes (a
    // box started ahead gets it later, from its agent, out of
    // /proc/PID/environ's sight).
    let env = [
        ("WARDEN_NODE_ID", "e2e-resume"),
        ("WARDEN_STATE_DIR", state_dir.as_str()),
        ("WARDEN_SESSIONS_PRESTART", "0"),
    ];
    let s = Serve::start(data.path(), &env);
    let c = client();
    let admin = s.admin.clone().unwrap();
    let key = shop(&s, &c, &admin).await;
    let mark = format!("E2E_MARK={}", std::process::id());
    let body = json!({"env": {"E2E_MARK": std::process::id().to_string()}});
    let kept = new_session_with(&s, &c, &key, body.clone()).await;
    let dropped = new_session_with(&s, &c, &key, body).await;
    assert_eq!(
        sh(&s, &c, &key, &kept, "echo precious > note.txt; echo ok").await,
        "ok\n"
    );
    let snap = snapshot(&s, &c, &key, &kept).await;
    sh(&s, &c, &key, &kept, "echo late > late.txt").await;
    assert!(processes_with(&mark).len() >= 2, "the sessions' boxes run");
    assert!(
        !mounts_under(state.path()).is_empty(),
        "the boxes' mounts are under the state dir"
    );

    s.signal(rustix::process::Signal::KILL);
    assert!(!s.wait().success());
    // Nothing of the old boxes keeps running.
    let t = Instant::now();
    while !processes_with(&mark).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "left running: {:?}",
            processes_with(&mark)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let s = Serve::start(data.path(), &env);
    let v = get(&s, &c, &key, &kept).await;
    assert_eq!(v["status"], "running", "{v}");
    assert!(v["status_reason"].as_str().unwrap().contains(&snap), "{v}");
    assert_eq!(
        sh(
            &s,
            &c,
            &key,
            &kept,
            "cat note.txt; test -e late.txt && echo late || echo no-late"
        )
        .await,
        "precious\nno-late\n"
    );
    let v = get(&s, &c, &key, &dropped).await;
    assert_eq!(v["status"], "lost", "{v}");
    assert!(
        v["status_reason"].as_str().unwrap().contains("no snapshot"),
        "{v}"
    );
    s.signal(rustix::process::Signal::TERM);
    assert!(s.wait().success());
    // A clean stop leaves no box or mount behind.
    assert!(processes_with(&mark).is_empty(), "{:?}", processes_with(&mark));
    assert_eq!(
        mounts_under(state.path()),
        Vec::<String>::new(),
        "mounts left under the state dir"
    );
}

/// A free port on loopback (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Settings both nodes of a two-node test share: a fresh database `db` on
/// the test PostgreSQL, a short heartbeat, and the S3-compatible server
/// when the test command started one (else a folder in `blob_dir`). `None`
/// (the test is skipped) without PostgreSQL.
async fn shared_settings(db: &str, blob_dir: &Path) -> Option<Vec<(String, String)>> {
    let Ok(base) = std::env::var("WARDEN_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("WARDEN_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "WARDEN_TEST_POSTGRES_URL is not set"
        );
        eprintln!("skipped: WARDEN_TEST_POSTGRES_URL is not set");
        return None;
    };
    sqlx_create(&base, db).await;
    let url = format!("{}/{db}", &base[..base.rfind('/').unwrap()]);
    let blob_dir = blob_dir.to_string_lossy().into_owned();
    let mut shared: Vec<(String, String)> = vec![
        ("WARDEN_DATABASE_URL".into(), url),
        ("WARDEN_CLUSTER_HEARTBEAT_SECS".into(), "1".into()),
        ("WARDEN_CLUSTER_DEAD_AFTER_SECS".into(), "3".into()),
    ];
    // The S3-compatible server when the test command started one, else a
    // folder both nodes share.
    match std::env::var("WARDEN_TEST_S3_ENDPOINT") {
        Ok(endpoint) => {
            let var = |k: &str| std::env::var(k).unwrap_or_default();
            let bucket = std::env::var("WARDEN_TEST_S3_BUCKET").unwrap_or_else(|_| "warden".into());
            let prefix = format!("{}-{}", db.replace('_', "-"), std::process::id());
            shared.extend([
                ("WARDEN_OBJECTS_URL".into(), format!("s3://{bucket}/{prefix}")),
                ("WARDEN_OBJECTS_ENDPOINT".into(), endpoint),
                ("WARDEN_OBJECTS_ALLOW_HTTP".into(), "true".into()),
                (
                    "WARDEN_OBJECTS_ACCESS_KEY_ID".into(),
                    var("WARDEN_TEST_S3_KEY_ID"),
                ),
                (
                    "WARDEN_OBJECTS_SECRET_ACCESS_KEY".into(),
                    var("WARDEN_TEST_S3_SECRET"),
                ),
            ]);
        }
        Err(_) => {
            assert!(
                std::env::var("WARDEN_REQUIRE_S3").as_deref() != Ok("1"),
                "WARDEN_REQUIRE_S3 is set but WARDEN_TEST_S3_ENDPOINT is not"
            );
            shared.push(("WARDEN_BLOB_DIR".into(), blob_dir));
        }
    }
    Some(shared)
}

/// One node's settings: `shared`, its name, its advertised port and state
/// folder.
fn node_settings(shared: &[(String, String)], name: &str, port: u16, state: &Path) -> Vec<(String, String)> {
    let mut env = shared.to_vec();
    env.extend([
        ("WARDEN_NODE_ID".into(), name.to_owned()),
        (
            "WARDEN_CLUSTER_ADVERTISE_URL".into(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("WARDEN_STATE_DIR".into(), state.to_string_lossy().into_owned()),
    ]);
    env
}

/// `warden serve` on `port` with `env`.
fn start_node(data: &Path, port: u16, env: &[(String, String)]) -> Serve {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Serve::start_on(data, &format!("127.0.0.1:{port}"), &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_forward_and_take_a_killed_nodes_session_over() {
    let blobs = tempfile::tempdir().unwrap();
    let Some(shared) = shared_settings("warden_e2e_cluster", blobs.path()).await else {
        return;
    };
    let node = |name: &str, port: u16, state: &Path| node_settings(&shared, name, port, state);
    let start = |data: &Path, port: u16, env: &[(String, String)]| start_node(data, port, env);
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let env_a = node("e2e-a", port_a, state_a.path());
    let env_b = node("e2e-b", port_b, state_b.path());
    let a = start(data_a.path(), port_a, &env_a);
    let b = start(data_b.path(), port_b, &env_b);
    let c = client();
    let admin = a.admin.clone().expect("the first node made the admin key");
    let key = shop(&a, &c, &admin).await;
    let id = new_session(&a, &c, &key).await;
    assert_eq!(get(&b, &c, &key, &id).await["node"], "e2e-a");
    // Through B: forwarded to A.
    assert_eq!(
        sh(&b, &c, &key, &id, "echo precious > note.txt; echo via-b").await,
        "via-b\n"
    );
    let snap = snapshot(&b, &c, &key, &id).await;

    a.signal(rustix::process::Signal::KILL);
    assert!(!a.wait().success());
    let killed = Instant::now();
    // While A is dead and not yet declared so: B says it cannot reach it.
    // Then B takes the session over from the snapshot.
    let v = loop {
        let (st, v) = req(&c, Method::GET, b.url(&format!("/v1/sessions/{id}")), &key, None).await;
        if st == StatusCode::OK
            && v["node"] == "e2e-b"
            && v["status"] == "running"
            && v["status_reason"].as_str().is_some_and(|r| r.contains("resumed"))
        {
            break v;
        }
        assert!(st == StatusCode::OK || st == StatusCode::BAD_GATEWAY, "{st} {v}");
        assert!(killed.elapsed() < Duration::from_secs(30), "not taken over: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "failover: the session answered on node e2e-b {:?} after e2e-a was killed",
        killed.elapsed()
    );
    let reason = v["status_reason"].as_str().unwrap();
    assert!(reason.contains(&snap) && reason.contains("e2e-a"), "{reason}");
    assert_eq!(sh(&b, &c, &key, &id, "cat note.txt").await, "precious\n");

    // A comes back: the session is no longer its own; it is not resumed
    // twice, and A forwards its requests to B.
    let a = start(data_a.path(), port_a, &env_a);
    let v = get(&a, &c, &key, &id).await;
    assert_eq!(v["node"], "e2e-b", "{v}");
    assert_eq!(sh(&a, &c, &key, &id, "cat note.txt").await, "precious\n");
    let (st, nodes) = req(&c, Method::GET, a.url("/v1/nodes"), &admin, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(nodes.as_array().unwrap().len(), 2, "{nodes}");
    for n in [a, b] {
        n.signal(rustix::process::Signal::TERM);
        assert!(n.wait().success());
    }
}

/// Processes descending from `pid`.
fn descendants_of(pid: u32) -> Vec<u32> {
    let mut parent = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok())
        else {
            continue;
        };
        parent.insert(p, ppid);
    }
    parent
        .keys()
        .copied()
        .filter(|&p| {
            let mut at = p;
            for _ in 0..64 {
                match parent.get(&at) {
                    Some(&pp) if pp == pid => return true,
                    Some(&pp) if pp > 1 => at = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_past_its_lease_stops_acting_and_never_takes_its_session_back() {
    let blobs = tempfile::tempdir().unwrap();
    let Some(shared) = shared_settings("warden_e2e_fencing", blobs.path()).await else {
        return;
    };
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let a = start_node(
        data_a.path(),
        port_a,
        &node_settings(&shared, "fence-a", port_a, state_a.path()),
    );
    let b = start_node(
        data_b.path(),
        port_b,
        &node_settings(&shared, "fence-b", port_b, state_b.path()),
    );
    let c = client();
    let admin = a.admin.clone().expect("the first node made the admin key");
    let key = shop(&a, &c, &admin).await;
    let mark = format!("E2E_FENCE={}", std::process::id());
    let id = new_session_with(
        &a,
        &c,
        &key,
        json!({"env": {"E2E_FENCE": std::process::id().to_string()}}),
    )
    .await;
    sh(&a, &c, &key, &id, "echo precious > note.txt").await;
    let snap = snapshot(&a, &c, &key, &id).await;
    let pid_a = a.child.id();
    let boxes_of_a = || -> Vec<String> {
        let mine = descendants_of(pid_a);
        processes_with(&mark)
            .into_iter()
            .filter(|p| {
                p.split(':')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .is_some_and(|n| mine.contains(&n))
            })
            .collect()
    };
    assert!(!boxes_of_a().is_empty(), "A runs the session's box");

    // A freezes (no heartbeat, no watchdog) past dead_after: B takes the
    // session over from its snapshot. Listing is never forwarded, so it
    // asks B alone.
    a.signal(rustix::process::Signal::STOP);
    let frozen = Instant::now();
    let taken = loop {
        let (st, v) = req(&c, Method::GET, b.url("/v1/sessions?status=running"), &key, None).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        if let Some(s) = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id.as_str())
            && s["node"] == "fence-b"
            && s["status_reason"].as_str().is_some_and(|r| r.contains("resumed"))
        {
            break s.clone();
        }
        assert!(frozen.elapsed() < Duration::from_secs(30), "not taken over: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = taken["status_reason"].as_str().unwrap().to_owned();
    assert!(reason.contains(&snap) && reason.contains("fence-a"), "{reason}");
    assert!(
        !boxes_of_a().is_empty(),
        "A's box outlives A's freeze (A cannot act)"
    );

    // A thaws: it finds its lease gone and the session B's. Its box of it
    // goes; the record stays B's, untouched by A.
    a.signal(rustix::process::Signal::CONT);
    let thawed = Instant::now();
    while !boxes_of_a().is_empty() {
        assert!(
            thawed.elapsed() < Duration::from_secs(10),
            "A still runs a box of the session B took over: {:?}",
            boxes_of_a()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Requests reaching A go to B, the owner.
    let v = get(&a, &c, &key, &id).await;
    assert_eq!(v["node"], "fence-b", "{v}");
    assert_eq!(sh(&a, &c, &key, &id, "cat note.txt").await, "precious\n");
    // A few heartbeats later, A has not taken it back or rewritten it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v = get(&b, &c, &key, &id).await;
    assert_eq!(
        (v["node"].as_str(), v["status"].as_str()),
        (Some("fence-b"), Some("running")),
        "{v}"
    );
    assert_eq!(v["status_reason"].as_str(), Some(reason.as_str()), "{v}");
    assert!(boxes_of_a().is_empty(), "{:?}", boxes_of_a());
    // A answers for nothing of it, even asked directly (not forwarded).
    let direct = c
        .post(a.url(&format!("/v1/sessions/{id}/executions")))
        .bearer_auth(&key)
        .header("warden-forwarded-by", "the-test")
        .json(&json!({"language": "shell", "code": "echo from-a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        direct.status(),
        StatusCode::CONFLICT,
        "{}",
        direct.text().await.unwrap()
    );
    for n in [a, b] {
        n.signal(rustix::process::Signal::TERM);
        assert!(n.wait().success());
    }
}
