//! Session snapshots over a real socket, with real boxes and a real object
//! store folder: a workspace goes to the object store and comes back in a
//! new session (files, modes, links); a session terminated with a snapshot;
//! another app's snapshot is "not found"; a snapshot over its cap or with
//! the object store gone fails with its reason and the session keeps
//! running; a restarted node resumes its sessions from their latest
//! snapshot and marks the others lost, with the reason.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use warden_core::{Blobs as _, Store as _};

async fn app(s: &Server, id: &str) -> String {
    let r = s
        .call(Method::POST, "/v1/apps", Some(&s.admin), Some(json!({"id": id})))
        .await;
    assert!(r.status() == StatusCode::CREATED || r.status() == StatusCode::CONFLICT);
    s.key("app", id, Some(id)).await
}

async fn session(s: &Server, key: &str, body: Value) -> String {
    s.expect(Method::POST, "/v1/sessions", key, Some(body), StatusCode::CREATED)
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Run a shell script in the session; its stdout.
async fn sh(s: &Server, key: &str, id: &str, code: &str) -> String {
    let v = s
        .expect(
            Method::POST,
            &format!("/v1/sessions/{id}/executions"),
            key,
            Some(json!({"language": "shell", "code": code})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["status"], "success", "{v}");
    v["stdout"].as_str().unwrap_or_default().to_owned()
}

async fn snapshot(s: &Server, key: &str, id: &str, status: StatusCode) -> Value {
    s.expect(
        Method::POST,
        &format!("/v1/sessions/{id}/snapshots"),
        key,
        None,
        status,
    )
    .await
}

const PLANT: &str = "mkdir -p src/deep/er && printf 'print(42)\\n' > src/main.py && \
     printf '#!/bin/sh\\necho run\\n' > run.sh && chmod 755 run.sh && \
     head -c 300000 /dev/urandom > src/deep/er/blob.bin && sha256sum src/deep/er/blob.bin > sum && \
     ln -s src/main.py link && mkfifo pipe && echo planted";

const CHECK: &str = "cat src/main.py && sha256sum -c sum >/dev/null && echo sum-ok && \
     stat -c %a run.sh && readlink link && ./run.sh && (test -e pipe && echo pipe || echo no-pipe)";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workspace_goes_to_the_object_store_and_back_into_a_new_session() {
    let s = server().await;
    let shop = app(&s, "shop").await;
    let other = app(&s, "other").await;
    let id = session(&s, &shop, json!({})).await;
    assert_eq!(sh(&s, &shop, &id, PLANT).await.trim(), "planted");

    let snap = snapshot(&s, &shop, &id, StatusCode::CREATED).await;
    assert_eq!(snap["status"], "ready", "{snap}");
    assert_eq!(snap["session"], id.as_str());
    assert_eq!(snap["app"], "shop");
    assert_eq!(snap["trigger"], "request");
    assert_eq!(snap["template"], "python-basic");
    assert!(snap["size_bytes"].as_i64().unwrap() > 300_000, "{snap}");
    assert!(snap["files"].as_i64().unwrap() >= 4, "{snap}");
    let sid = snap["id"].as_str().unwrap().to_owned();
    // The object is in the store, where the record says.
    let object = s
        .state
        .blobs
        .get(&format!("snapshots/shop/{sid}.tar"))
        .await
        .unwrap()
        .expect("the archive is in the object store");
    assert_eq!(object.len() as i64, snap["size_bytes"].as_i64().unwrap());

    // A new session starts from it: same files, modes and link; no FIFO.
    let restored = session(&s, &shop, json!({"snapshot": sid})).await;
    let out = sh(&s, &shop, &restored, CHECK).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["print(42)", "sum-ok", "755", "src/main.py", "run", "no-pipe"],
        "{out}"
    );

    // Another app: no such snapshot, word for word; developers: 403.
    let missing = "snp_00000000000000000000000000000000";
    let theirs = s
        .expect(
            Method::GET,
            &format!("/v1/snapshots/{sid}"),
            &other,
            None,
            StatusCode::NOT_FOUND,
        )
        .await;
    let none = s
        .expect(
            Method::GET,
            &format!("/v1/snapshots/{missing}"),
            &other,
            None,
            StatusCode::NOT_FOUND,
        )
        .await;
    assert_eq!(
        theirs["detail"].as_str().unwrap().replace(&sid, "X"),
        none["detail"].as_str().unwrap().replace(missing, "X")
    );
    let refused = s
        .expect(
            Method::POST,
            "/v1/sessions",
            &other,
            Some(json!({"snapshot": sid})),
            StatusCode::NOT_FOUND,
        )
        .await;
    assert!(
        refused["detail"].as_str().unwrap().contains("no snapshot"),
        "{refused}"
    );
    let listed = s
        .expect(Method::GET, "/v1/snapshots", &other, None, StatusCode::OK)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);
    for bad in ["session=ses_x", "session=", "app=A", "app="] {
        let p = s
            .expect(
                Method::GET,
                &format!("/v1/snapshots?{bad}"),
                &shop,
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
        let field = bad.split('=').next().unwrap();
        assert!(
            p["detail"].as_str().unwrap().contains(&format!("query:{field}")),
            "{p}"
        );
    }
    let dev = s.key("developer", "dev", None).await;
    s.expect(Method::GET, "/v1/snapshots", &dev, None, StatusCode::FORBIDDEN)
        .await;
    let mine = s
        .expect(
            Method::GET,
            &format!("/v1/snapshots?session={id}"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(mine["items"][0]["id"], sid.as_str());

    // Terminate with a snapshot: the header names it; it restores too.
    sh(&s, &shop, &restored, "echo second > later.txt").await;
    let r = s
        .call(
            Method::POST,
            &format!("/v1/sessions/{restored}/terminate?snapshot=true"),
            Some(&shop),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let at_end = r
        .headers()
        .get("warden-snapshot")
        .expect("the snapshot's id")
        .to_str()
        .unwrap()
        .to_owned();
    let ended: Value = r.json().await.unwrap();
    assert_eq!(ended["status"], "terminated");
    let snap2 = s
        .expect(
            Method::GET,
            &format!("/v1/snapshots/{at_end}"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(snap2["trigger"], "terminate");
    assert_eq!(snap2["status"], "ready");
    let third = session(&s, &shop, json!({"snapshot": at_end})).await;
    assert_eq!(
        sh(&s, &shop, &third, "cat later.txt src/main.py").await,
        "second\nprint(42)\n"
    );

    // A snapshot of an ended session cannot be taken.
    snapshot(&s, &shop, &restored, StatusCode::CONFLICT).await;

    // Deleting removes the object and the record.
    s.expect(
        Method::DELETE,
        &format!("/v1/snapshots/{sid}"),
        &shop,
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    s.expect(
        Method::GET,
        &format!("/v1/snapshots/{sid}"),
        &shop,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(
        s.state
            .blobs
            .get(&format!("snapshots/shop/{sid}.tar"))
            .await
            .unwrap()
            .is_none()
    );
    let gone = s
        .expect(
            Method::POST,
            "/v1/sessions",
            &shop,
            Some(json!({"snapshot": sid})),
            StatusCode::NOT_FOUND,
        )
        .await;
    assert!(gone["detail"].as_str().unwrap().contains(&sid), "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_that_cannot_be_taken_or_restored_say_why_and_lose_nothing() {
    let s = server_with(|c| c.sessions.snapshot_max_mb = 2).await;
    let shop = app(&s, "shop").await;
    let id = session(&s, &shop, json!({})).await;
    sh(&s, &shop, &id, "head -c 3000000 /dev/zero > big && echo ok").await;

    // Over the cap: refused, recorded failed with the reason, still running.
    let p = snapshot(&s, &shop, &id, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        p["type"].as_str().unwrap().rsplit('/').next(),
        Some("snapshot-refused"),
        "{p}"
    );
    assert!(
        p["detail"].as_str().unwrap().contains("sessions.snapshot_max_mb"),
        "{p}"
    );
    let failed = s
        .expect(
            Method::GET,
            &format!("/v1/snapshots?session={id}"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(failed["items"][0]["status"], "failed", "{failed}");
    assert!(
        failed["items"][0]["error"]
            .as_str()
            .unwrap()
            .contains("sessions.snapshot_max_mb")
    );
    assert_eq!(
        sh(&s, &shop, &id, "rm big && echo small > f && cat f").await,
        "small\n"
    );

    // The object store gone (its folder replaced by a file): 503 naming
    // it, recorded failed; the session keeps working on its local disk and
    // a terminate that asked for a snapshot does not terminate.
    let blobs = s.state.config.blob_dir();
    let aside = blobs.with_extension("aside");
    std::fs::rename(&blobs, &aside).unwrap();
    std::fs::write(&blobs, b"not a folder").unwrap();
    let p = snapshot(&s, &shop, &id, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(p["detail"].as_str().unwrap().contains("object store"), "{p}");
    let r = s
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/terminate?snapshot=true"),
            Some(&shop),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(
        sh(&s, &shop, &id, "cat f").await,
        "small\n",
        "the session still runs"
    );
    let listed = s
        .expect(
            Method::GET,
            &format!("/v1/snapshots?session={id}&status=failed"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 3, "{listed}");
    // Back: the retry succeeds.
    std::fs::remove_file(&blobs).unwrap();
    std::fs::rename(&aside, &blobs).unwrap();
    let ok = snapshot(&s, &shop, &id, StatusCode::CREATED).await;
    assert_eq!(ok["status"], "ready");

    // A failed snapshot cannot be restored; one too large for the new
    // session's workspace is refused and that session fails with the reason.
    let bad = listed["items"][0]["id"].as_str().unwrap();
    let p = s
        .expect(
            Method::POST,
            "/v1/sessions",
            &shop,
            Some(json!({"snapshot": bad})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(
        p["detail"].as_str().unwrap().contains("only a ready snapshot"),
        "{p}"
    );
    sh(&s, &shop, &id, "head -c 1500000 /dev/urandom > mid && echo ok").await;
    let fits_not = snapshot(&s, &shop, &id, StatusCode::CREATED).await;
    let p = s
        .expect(
            Method::POST,
            "/v1/sessions",
            &shop,
            Some(json!({"snapshot": fits_not["id"], "resources": {"disk_mb": 1}})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(p["detail"].as_str().unwrap().contains("does not fit"), "{p}");
    let failed_sessions = s
        .expect(
            Method::GET,
            "/v1/sessions?status=failed",
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    let reason = failed_sessions["items"][0]["status_reason"].as_str().unwrap();
    assert!(reason.contains("snapshot"), "{reason}");
    // Its box is gone: only the first session holds one.
    assert_eq!(s.state.sessions.live_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_resumes_sessions_from_their_snapshot_and_loses_the_others() {
    let a = server().await;
    let shop = app(&a, "shop").await;
    let kept = session(&a, &shop, json!({})).await;
    let dropped = session(&a, &shop, json!({})).await;
    sh(&a, &shop, &kept, "echo precious > note.txt && echo ok").await;
    let snap = snapshot(&a, &shop, &kept, StatusCode::CREATED).await;
    // Written after the snapshot: not in it.
    sh(&a, &shop, &kept, "echo late > late.txt && echo ok").await;
    let node = a
        .expect(
            Method::GET,
            &format!("/v1/sessions/{kept}"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await["node"]
        .as_str()
        .unwrap()
        .to_owned();

    // The same node starts again on the same database and object store
    // (as after kill -9: nothing recorded the sessions as ended).
    let blobs = a.state.config.blob_dir();
    let b = second_node(&a, |c| {
        c.node_id = Some(node.clone());
        c.blob_dir = Some(blobs);
    })
    .await;
    let v = b
        .expect(
            Method::GET,
            &format!("/v1/sessions/{kept}"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["status"], "running", "{v}");
    let reason = v["status_reason"].as_str().unwrap();
    assert!(reason.contains(snap["id"].as_str().unwrap()), "{reason}");
    assert_eq!(
        sh(
            &b,
            &shop,
            &kept,
            "cat note.txt; test -e late.txt && echo late || echo no-late"
        )
        .await,
        "precious\nno-late\n"
    );
    let v = b
        .expect(
            Method::GET,
            &format!("/v1/sessions/{dropped}"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["status"], "lost", "{v}");
    assert!(
        v["status_reason"].as_str().unwrap().contains("no snapshot"),
        "{v}"
    );
    assert_eq!(b.state.sessions.live_count(), 1);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_node_forwards_to_the_owner_and_takes_a_dead_owners_sessions_over() {
    let fast = |c: &mut warden_server::Config| {
        c.cluster.heartbeat_secs = 1;
        c.cluster.dead_after_secs = 3;
    };
    let a = server_with(fast).await;
    let blobs = a.state.config.blob_dir();
    let b = second_node(&a, |c| {
        fast(c);
        c.blob_dir = Some(blobs);
    })
    .await;
    let shop = app(&a, "shop").await;
    let id = session(&a, &shop, json!({})).await;
    let node_a = a.state.cluster.id().to_owned();
    let node_b = b.state.cluster.id().to_owned();
    assert_ne!(node_a, node_b);

    // Through B: every session call reaches A, which runs the box.
    assert_eq!(
        sh(
            &b,
            &shop,
            &id,
            "echo kept > kept.txt && hostname -s >/dev/null; echo via-b"
        )
        .await,
        "via-b\n"
    );
    let snap = snapshot(&b, &shop, &id, StatusCode::CREATED).await;
    assert_eq!(snap["node"], node_a.as_str());
    let r = b
        .call(
            Method::GET,
            &format!("/v1/sessions/{id}/files/kept.txt"),
            Some(&shop),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "kept\n");
    // Another app through B: not found, as on A.
    let other = app(&a, "other").await;
    b.expect(
        Method::GET,
        &format!("/v1/sessions/{id}"),
        &other,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    // Both nodes are listed, alive (admins only).
    let nodes = b
        .expect(Method::GET, "/v1/nodes", &b.admin, None, StatusCode::OK)
        .await;
    let listed: Vec<(&str, bool, bool)> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap(),
                n["alive"].as_bool().unwrap(),
                n["this_node"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(listed.contains(&(node_a.as_str(), true, false)), "{nodes}");
    assert!(listed.contains(&(node_b.as_str(), true, true)), "{nodes}");
    assert!(
        nodes[0]["advertise_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    b.expect(Method::GET, "/v1/nodes", &shop, None, StatusCode::FORBIDDEN)
        .await;

    // B takes A's sessions over (as when A stops beating): resumed on B
    // from the snapshot; A, still running, lets go of its box.
    let dead = a.state.store.get_node(&node_a).await.unwrap().unwrap();
    b.state.sessions.take_over(&dead, 3).await;
    let v = b
        .expect(
            Method::GET,
            &format!("/v1/sessions/{id}"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["node"], node_b.as_str(), "{v}");
    assert_eq!(v["status"], "running");
    assert!(v["status_reason"].as_str().unwrap().contains(&node_a), "{v}");
    assert_eq!(b.state.sessions.live_count(), 1);
    let t = std::time::Instant::now();
    while a.state.sessions.live_count() > 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "A still holds the box");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Through A now: forwarded to B; the files are the snapshot's.
    assert_eq!(sh(&a, &shop, &id, "cat kept.txt").await, "kept\n");
    // A second takeover finds nothing to take: the session is B's.
    a.state.sessions.take_over(&dead, 3).await;
    let v = a
        .expect(
            Method::GET,
            &format!("/v1/sessions/{id}"),
            &shop,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(v["node"], node_b.as_str());
    assert_eq!(a.state.sessions.live_count(), 0);
}

/// The ready scheduled snapshots of a session.
async fn scheduled(s: &Server, id: &str, key: &str) -> Vec<String> {
    let v = s
        .expect(
            Method::GET,
            &format!("/v1/snapshots?session={id}&status=ready"),
            key,
            None,
            StatusCode::OK,
        )
        .await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["trigger"] == "schedule")
        .map(|x| x["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Wait for one scheduled snapshot other than `before`; its id.
async fn next_scheduled(s: &Server, id: &str, key: &str, before: Option<&str>) -> String {
    let t = std::time::Instant::now();
    loop {
        let now = scheduled(s, id, key).await;
        if let [one] = now.as_slice()
            && Some(one.as_str()) != before
        {
            return one.clone();
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no new scheduled snapshot: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_active_session_is_snapshotted_on_schedule_and_only_the_newest_is_kept() {
    let s = server_with(|c| c.sessions.snapshot_every_secs = 1).await;
    let shop = app(&s, "shop").await;
    let idle = session(&s, &shop, json!({})).await;
    let id = session(&s, &shop, json!({})).await;
    sh(&s, &shop, &id, "echo one > f && echo ok").await;
    let first = next_scheduled(&s, &id, &shop, None).await;
    sh(&s, &shop, &id, "echo two > f && echo ok").await;
    let second = next_scheduled(&s, &id, &shop, Some(&first)).await;
    // The older one is gone, object and record.
    s.expect(
        Method::GET,
        &format!("/v1/snapshots/{first}"),
        &shop,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    // The newest holds the latest files.
    let restored = session(&s, &shop, json!({"snapshot": second})).await;
    assert_eq!(sh(&s, &shop, &restored, "cat f").await, "two\n");
    // A session with no activity since it started is never snapshotted.
    assert!(scheduled(&s, &idle, &shop).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_takes_over_only_what_its_quotas_hold_and_the_rest_waits_or_is_lost() {
    // A beats rarely, so its heartbeat read below stays its latest.
    let a = server_with(|c| {
        c.cluster.heartbeat_secs = 60;
        c.cluster.dead_after_secs = 180;
    })
    .await;
    let blobs = a.state.config.blob_dir();
    let shop = app(&a, "shop").await;
    let mut ids = Vec::new();
    for n in 0..2 {
        let id = session(&a, &shop, json!({"resources": {"memory_mb": 128}})).await;
        sh(&a, &shop, &id, &format!("echo {n} > n.txt")).await;
        snapshot(&a, &shop, &id, StatusCode::CREATED).await;
        ids.push(id);
    }
    let node_a = a.state.cluster.id().to_owned();
    let dead = a.state.store.get_node(&node_a).await.unwrap().unwrap();
    let record = |id: String| {
        let store = a.state.store.clone();
        async move { store.get_session(&id).await.unwrap().unwrap() }
    };

    // B holds one live session: it resumes one of A's and leaves the other
    // on A, untouched, for a node with room.
    let b = second_node(&a, |c| {
        c.blob_dir = Some(blobs.clone());
        c.sessions.node_max_live = 1;
        c.cluster.takeover_wait_secs = 3600;
    })
    .await;
    let node_b = b.state.cluster.id().to_owned();
    b.state.sessions.take_over(&dead, 3).await;
    b.state.sessions.take_over(&dead, 3).await;
    assert_eq!(b.state.sessions.live_count(), 1);
    let (mut taken, mut left) = (Vec::new(), Vec::new());
    for id in &ids {
        let s = record(id.clone()).await;
        assert_eq!(s.status, warden_core::SessionStatus::Running, "{s:?}");
        if s.node == node_b {
            assert!(s.status_reason.as_deref().unwrap().contains("resumed"), "{s:?}");
            taken.push(s);
        } else {
            assert_eq!(s.node, node_a, "{s:?}");
            assert_eq!(s.status_reason, None, "{s:?}");
            left.push(s);
        }
    }
    assert_eq!((taken.len(), left.len()), (1, 1));
    let n = sh(&b, &shop, &taken[0].id, "cat n.txt").await;
    assert!(n == "0\n" || n == "1\n", "{n}");

    // C has room for none of them (too little memory), and they have waited
    // long enough: the one left is lost, saying why.
    let c = second_node(&a, |c| {
        c.blob_dir = Some(blobs.clone());
        c.sessions.node_max_memory_mb = 64;
        c.cluster.takeover_wait_secs = 0;
    })
    .await;
    c.state.sessions.take_over(&dead, 0).await;
    assert_eq!(c.state.sessions.live_count(), 0);
    let s = record(left[0].id.clone()).await;
    assert_eq!(s.status, warden_core::SessionStatus::Lost, "{s:?}");
    let reason = s.status_reason.unwrap();
    assert!(
        reason.contains("no node had room") && reason.contains("64 MiB") && reason.contains(&node_a),
        "{reason}"
    );
    // The one B resumed is B's still.
    let s = record(taken[0].id.clone()).await;
    assert_eq!(
        (s.node.as_str(), s.status),
        (node_b.as_str(), warden_core::SessionStatus::Running)
    );
}
