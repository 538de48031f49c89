//! Sandbox sessions through the real binary: start, code in each mode,
//! files in and out (a range too), terminate; and a server killed with
//! SIGKILL while a session is live: after the restart the session is
//! `lost` with its reason, and nothing of its box is left on the host (no
//! process, no cgroup, no workspace mount).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use super::{Serve, client, req};

/// An app `shop` and its key.
pub(super) async fn shop(s: &Serve, c: &Client) -> String {
    let admin = s.admin.clone().expect("an admin key on first start");
    let (st, v) = req(
        c,
        Method::POST,
        s.url("/v1/apps"),
        &admin,
        Some(json!({"id": "shop"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, k) = req(
        c,
        Method::POST,
        s.url("/v1/keys"),
        &admin,
        Some(json!({"name": "shop", "role": "app", "app": "shop"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    k["secret"].as_str().unwrap().to_owned()
}

/// Run `body` in session `id` and expect an answer; the execution.
async fn exec(s: &Serve, c: &Client, key: &str, id: &str, body: Value) -> Value {
    let (st, v) = req(
        c,
        Method::POST,
        s.url(&format!("/v1/sessions/{id}/executions")),
        key,
        Some(body),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_starts_runs_code_moves_files_and_terminates() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let s = Serve::start(
        data.path(),
        &[("WARDEN_STATE_DIR", state.path().to_str().unwrap())],
    );
    let c = client();
    let key = shop(&s, &c).await;
    let (st, v) = req(&c, Method::POST, s.url("/v1/sessions"), &key, Some(json!({}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "running", "{v}");
    assert_eq!(v["template"], "python-basic");
    let id = v["id"].as_str().unwrap().to_owned();

    // A script writes a file; a stateful cell keeps a variable; a handler
    // returns a value; a shell script reads what the first wrote.
    let e = exec(
        &s,
        &c,
        &key,
        &id,
        json!({"language": "python", "code": "open('made.txt', 'w').write('by the box')\nprint('ok')"}),
    )
    .await;
    assert_eq!(
        (e["status"].as_str(), e["stdout"].as_str()),
        (Some("success"), Some("ok\n")),
        "{e}"
    );
    exec(
        &s,
        &c,
        &key,
        &id,
        json!({"language": "python", "mode": "repl", "code": "n = 20"}),
    )
    .await;
    let e = exec(
        &s,
        &c,
        &key,
        &id,
        json!({"language": "python", "mode": "repl", "code": "n + 1"}),
    )
    .await;
    assert_eq!(e["return_value"], 21, "the cell kept its state: {e}");
    let e = exec(
        &s,
        &c,
        &key,
        &id,
        json!({"language": "javascript", "mode": "handler", "event": {"n": 2},
               "code": "export async function handler(e) { return { n: e.n * 3 }; }"}),
    )
    .await;
    assert_eq!(e["return_value"], json!({"n": 6}), "{e}");
    let e = exec(
        &s,
        &c,
        &key,
        &id,
        json!({"language": "shell", "code": "cat made.txt"}),
    )
    .await;
    assert_eq!(e["stdout"], "by the box", "{e}");
    // The execution is an ordinary execution record.
    let eid = e["id"].as_str().unwrap();
    let (st, back) = req(
        &c,
        Method::GET,
        s.url(&format!("/v1/executions/{eid}")),
        &key,
        None,
    )
    .await;
    assert_eq!(
        (st, back["session"].as_str()),
        (StatusCode::OK, Some(id.as_str())),
        "{back}"
    );

    // Files: upload, list, download (whole and a range), delete.
    let files = s.url(&format!("/v1/sessions/{id}/files"));
    let r = c
        .put(format!("{files}/in/data.bin"))
        .bearer_auth(&key)
        .body(b"0123456789".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let e = exec(
        &s,
        &c,
        &key,
        &id,
        json!({"language": "shell", "code": "wc -c < in/data.bin"}),
    )
    .await;
    assert_eq!(e["stdout"], "10\n", "the box sees the upload: {e}");
    let (st, list) = req(&c, Method::GET, files.clone(), &key, None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let names: Vec<(&str, &str)> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert!(names.contains(&("made.txt", "file")), "{list}");
    assert!(names.contains(&("in", "directory")), "{list}");
    let r = c
        .get(format!("{files}/made.txt"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"by the box");
    let r = c
        .get(format!("{files}/in/data.bin"))
        .bearer_auth(&key)
        .header("range", "bytes=2-4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 2-4/10");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"234");
    let r = c
        .delete(format!("{files}/in"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let e = exec(&s, &c, &key, &id, json!({"language": "shell", "code": "ls"})).await;
    assert_eq!(e["stdout"], "made.txt\n", "{e}");

    // Terminate: recorded, and its files are gone with it.
    let (st, v) = req(
        &c,
        Method::POST,
        s.url(&format!("/v1/sessions/{id}/terminate")),
        &key,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "terminated", "{v}");
    assert!(v["ended_at"].is_i64(), "{v}");
    let (st, p) = req(&c, Method::GET, format!("{files}/made.txt"), &key, None).await;
    assert_eq!(st, StatusCode::CONFLICT, "an ended session has no files: {p}");
    s.signal(rustix::process::Signal::TERM);
    assert!(s.wait().success());
}

/// What the host holds of one box: its processes, cgroup folders and
/// workspace mount.
#[derive(Debug, Default)]
struct Traces {
    pids: Vec<u32>,
    cgroups: Vec<PathBuf>,
    mounts: Vec<String>,
}

/// Everything on the host that belongs to the box whose environment holds
/// `marker`, and the mounts beneath `state` (the server's jail state
/// folder).
fn traces(marker: &str, state: &Path) -> Traces {
    let mut t = Traces::default();
    let needle = format!("E2E_BOX_MARK={marker}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            continue;
        }
        t.pids.push(pid);
        // The host's view of its cgroups: the box's own folder is the one
        // named `<tag>-box-<slot>` (v1: one per controller; v2: one).
        let cg = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        for line in cg.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let Some(at) = path.find("-box-") else { continue };
            let end = path[at..].find('/').map_or(path.len(), |e| at + e);
            let root = match controllers {
                "" => PathBuf::from("/sys/fs/cgroup"),
                c => PathBuf::from("/sys/fs/cgroup").join(c.split(',').next().unwrap_or(c)),
            };
            let dir = root.join(path[..end].trim_start_matches('/'));
            if dir.is_dir() && !t.cgroups.contains(&dir) {
                t.cgroups.push(dir);
            }
        }
    }
    let state = state.to_str().unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mountinfo.lines() {
        if let Some(point) = line.split(' ').nth(4)
            && point.starts_with(state)
        {
            t.mounts.push(point.to_owned());
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cut_by_sigkill_is_lost_after_restart_and_leaves_nothing() {
    lost_after_sigkill(&[], "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cut_by_sigkill_is_lost_after_restart_on_postgres() {
    let Ok(base) = std::env::var("WARDEN_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("WARDEN_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "WARDEN_TEST_POSTGRES_URL is not set"
        );
        eprintln!("skipped: WARDEN_TEST_POSTGRES_URL is not set");
        return;
    };
    super::sqlx_create(&base, "warden_e2e_sessions").await;
    let url = format!("{}/warden_e2e_sessions", &base[..base.rfind('/').unwrap()]);
    lost_after_sigkill(&[("WARDEN_DATABASE_URL", &url)], "postgres").await;
}

/// A live session's server is killed with SIGKILL (on the database `db`
/// names); after the restart the session is lost and nothing of its box
/// is left. `tag` keeps concurrent runs' boxes apart.
async fn lost_after_sigkill(db: &[(&str, &str)], tag: &str) {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("WARDEN_NODE_ID", "e2e-sessions"),
        ("WARDEN_STATE_DIR", state.path().to_str().unwrap()),
    ];
    env.extend_from_slice(db);
    let s = Serve::start(data.path(), &env);
    let c = client();
    let key = shop(&s, &c).await;
    let admin = s.admin.clone().unwrap();
    let marker = format!("{tag}-{:x}", std::process::id());
    let (st, v) = req(
        &c,
        Method::POST,
        s.url("/v1/sessions"),
        &key,
        Some(json!({"env": {"E2E_BOX_MARK": marker}})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["node"], "e2e-sessions", "{v}");
    // Something in its workspace and /tmp, and a cell's interpreter alive.
    exec(
        &s,
        &c,
        &key,
        &id,
        json!({"language": "python", "mode": "repl", "code": "open('kept.txt', 'w').write('x' * 4096)\nopen('/tmp/t', 'w').write('t')"}),
    )
    .await;
    let before = traces(&marker, state.path());
    assert!(
        !before.pids.is_empty(),
        "the box's processes are found: {before:?}"
    );
    assert!(
        before.mounts.iter().any(|m| m.ends_with("/work")),
        "its workspace is a mount beneath the state folder: {before:?}"
    );
    if Path::new("/sys/fs/cgroup/memory").is_dir() || Path::new("/sys/fs/cgroup/cgroup.controllers").is_file()
    {
        assert!(!before.cgroups.is_empty(), "its cgroup is found: {before:?}");
    }

    s.signal(rustix::process::Signal::KILL);
    assert!(!s.wait().success());
    // The box sees its host go (its lifeline) and ends everything in it:
    // its processes, and so its cgroup empties.
    let deadline = Instant::now() + Duration::from_secs(20);
    let in_cgroups = || {
        before
            .cgroups
            .iter()
            .map(|d| {
                // Exited tasks stay charged to `pids` until they are reaped.
                let charged = std::fs::read_to_string(d.join("pids.current"))
                    .ok()
                    .filter(|n| n.trim() != "0")
                    .map(|n| format!("pids.current={n}"));
                std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default()
                    + &charged.unwrap_or_default()
            })
            .collect::<String>()
    };
    while !traces(&marker, state.path()).pids.is_empty() || !in_cgroups().trim().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the box outlived its server: {:?}, in its cgroups: {}",
            traces(&marker, state.path()),
            in_cgroups()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let s = Serve::start(data.path(), &env);
    let (st, v) = req(&c, Method::GET, s.url(&format!("/v1/sessions/{id}")), &key, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "lost", "{v}");
    assert!(
        v["status_reason"]
            .as_str()
            .unwrap()
            .contains("the server stopped"),
        "{v}"
    );
    assert!(v["ended_at"].is_i64(), "{v}");
    let (st, list) = req(&c, Method::GET, s.url("/v1/sessions?status=lost"), &admin, None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    // Nothing of the box is left: the restart tore its slot down.
    let after = traces(&marker, state.path());
    assert!(after.pids.is_empty(), "{after:?}");
    for dir in &before.cgroups {
        assert!(!dir.exists(), "its cgroup {} is left", dir.display());
    }
    assert!(
        after.mounts.is_empty(),
        "mounts left beneath the state folder: {after:?}"
    );
    // The session takes no more code or files, and its quota place is free.
    let (st, p) = req(
        &c,
        Method::POST,
        s.url(&format!("/v1/sessions/{id}/executions")),
        &key,
        Some(json!({"language": "shell", "code": "true"})),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{p}");
    let (st, v) = req(&c, Method::POST, s.url("/v1/sessions"), &key, Some(json!({}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    s.signal(rustix::process::Signal::TERM);
    assert!(s.wait().success());
}
