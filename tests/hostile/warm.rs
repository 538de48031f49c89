//! Attacks on warm boxes through the real `warden serve`.
//!
//! A warm box stays alive between calls and its plugin's code keeps running
//! in it (threads started at import time live in the fork-server), so
//! everything the host does to a warm box after a call happens while
//! hostile code watches and races. Each test runs the attack many times
//! through the HTTP API and proves the host, the server and other tenants
//! stayed untouched: host directories unchanged, no execution left
//! `running`, other tenants answered, memory back to its baseline, the
//! server stopping on SIGTERM.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::platform::{Platform, Target, python_package};

const HELLO: &str = "def handler(event):\n    return {'hello': event.get('name', 'world')}\n";

async fn assert_all_final(p: &Platform) {
    let left = p.unfinished().await;
    assert!(left.is_empty(), "executions left unfinished: {left:#?}");
    // Every retired box's init was reaped: none is a zombie holding a pid
    // (and a charge in its slot's pids cgroup).
    let zombies = p.zombies();
    assert!(zombies.is_empty(), "unreaped box inits: {zombies:?}");
}

/// Finding 1: the host recreated `out/` and chowned it by name after each
/// call; a plugin thread replacing `/workspace/out` with a symlink to a host
/// directory won the race within dozens of calls and the host (root) chowned
/// that directory to the box's uid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_planted_for_out_never_makes_the_host_touch_a_host_directory() {
    let target = Target::new();
    let p = Platform::start(&[]);
    let source = format!(
        r#"
import os, threading, time
TARGET = {target:?}

def plant():
    # Move the real out/ away and put a link to a host directory in its place.
    try:
        os.rename('/workspace/out', '/workspace/moved-%d' % time.monotonic_ns())
    except OSError:
        pass
    try:
        os.symlink(TARGET, '/workspace/out')
    except OSError:
        pass
    try:
        os.symlink(TARGET, '/workspace/out/x')
    except OSError:
        pass

def race():
    while True:
        plant()
        time.sleep(0)

threading.Thread(target=race, daemon=True).start()

def handler(event):
    plant()
    return {{"planted": os.path.islink('/workspace/out')}}
"#,
        target = target.path.to_str().unwrap()
    );
    let code = p
        .publish(python_package(
            "hostile.race.symlink_out",
            &source,
            // Generous for the same reason as the FIFO race below: a busy
            // racing thread shares the box's CPU on a loaded host.
            json!({"timeout_ms": 20000}),
        ))
        .await;
    let key = p.app("racer", &[&code]).await;
    let mut planted = 0;
    for i in 0..300 {
        let (st, v) = p.execute(&key, "racer", &code, json!({})).await;
        assert_eq!(st, StatusCode::OK, "call {i}: {v}");
        assert_eq!(v["status"], "success", "call {i}: {v}");
        planted += usize::from(v["return_value"]["planted"] == true);
        target.assert_untouched();
    }
    assert!(planted > 100, "the attack did not run: planted {planted} times");
    assert_all_final(&p).await;
    target.assert_untouched();
}

/// Finding 2: a call that stops its fork-server (SIGSTOP to its parent)
/// left the host waiting forever; a handful starved every other tenant and
/// SIGTERM no longer stopped the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_stops_its_fork_server_cannot_hang_the_host() {
    let mut p = Platform::start(&[
        ("WARDEN_SHUTDOWN_GRACE_SECS", "2"),
        ("WARDEN_MAX_CONCURRENT", "4"),
    ]);
    let stopper = r#"
import os, signal, time

def handler(event):
    if event.get('stop'):
        os.kill(os.getppid(), signal.SIGSTOP)
        time.sleep(event.get('sleep', 0))
    return {"pid": os.getpid()}
"#;
    let code = p
        .publish(python_package(
            "hostile.hang.stop_parent",
            stopper,
            json!({"timeout_ms": 1000}),
        ))
        .await;
    let slow = p
        .publish(python_package(
            "hostile.hang.stop_parent_slow",
            stopper,
            json!({"timeout_ms": 60000}),
        ))
        .await;
    let hello = p
        .publish(python_package(
            "tenant.other.hello",
            HELLO,
            json!({"timeout_ms": 5000}),
        ))
        .await;
    let key = p.app("attacker", &[&code, &slow]).await;
    let other = p.app("neighbour", &[&hello]).await;
    // Warm the box first, so the attack hits a fork-server.
    let (st, v) = p.execute(&key, "attacker", &code, json!({})).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("success")),
        "{v}"
    );

    for round in 0..3 {
        let started = Instant::now();
        let attacks: Vec<_> = (0..4)
            .map(|i| {
                let (p, key, code) = (&p, &key, &code);
                async move {
                    p.execute(key, "attacker", code, json!({"stop": true, "sleep": i % 2 * 30}))
                        .await
                }
            })
            .collect();
        let neighbour = async {
            // The other tenant is answered in its normal time meanwhile.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let t = Instant::now();
            let r = p.execute(&other, "neighbour", &hello, json!({"name": "n"})).await;
            (r, t.elapsed())
        };
        let (results, ((st, v), took)) = tokio::join!(futures::future::join_all(attacks), neighbour);
        assert_eq!(
            (st, v["status"].as_str()),
            (StatusCode::OK, Some("success")),
            "{v}"
        );
        assert!(
            took < Duration::from_secs(5),
            "round {round}: the neighbour waited {took:?}"
        );
        for (st, v) in results {
            assert_eq!(st, StatusCode::OK, "{v}");
            assert!(
                matches!(v["status"].as_str(), Some("timeout" | "error" | "success")),
                "round {round}: {v}"
            );
            assert_ne!(v["status"], "running");
        }
        // Wall clock 1 s, grace 2 s: nothing waits much longer than that.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "round {round} took {:?}",
            started.elapsed()
        );
    }
    assert_all_final(&p).await;

    // A call hanging in a stopped box cannot keep the server from stopping.
    let hang = {
        let url = p.url(&format!("/v1/apps/attacker/plugins/{slow}/execute"));
        let key = key.clone();
        tokio::spawn(async move {
            let _ = crate::platform::client()
                .post(url)
                .bearer_auth(key)
                .json(&json!({"stop": true, "sleep": 50}))
                .send()
                .await;
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let t = Instant::now();
    p.signal(rustix::process::Signal::TERM);
    let st = p.wait_exit(Duration::from_secs(15));
    assert!(st.is_some(), "the server did not stop on SIGTERM within 15 s");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "stopping took {:?}",
        t.elapsed()
    );
    hang.abort();
}

/// Finding 3: a plugin thread swapped a FIFO in for a file under `out/`
/// after the host listed it; the host opened it with a blocking read and
/// waited forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifos_swapped_into_out_never_block_artifact_collection() {
    let p = Platform::start(&[]);
    let source = r#"
import os, threading

def race():
    n = 0
    while True:
        n += 1
        path = '/workspace/out/f%d' % (n % 4)
        try:
            with open(path + '.tmp', 'w') as f:
                f.write('x')
            os.rename(path + '.tmp', path)   # a regular file the host lists...
            os.unlink(path)
            os.mkfifo(path)                  # ...becomes a FIFO before it reads
        except OSError:
            pass

threading.Thread(target=race, daemon=True).start()

def handler(event):
    for i in range(4):
        try:
            os.mkfifo('/workspace/out/q%d' % i)
        except OSError:
            pass
    with open('/workspace/out/real.txt', 'w') as f:
        f.write('an artifact')
    return {}
"#;
    let code = p
        .publish(python_package(
            "hostile.race.fifo_out",
            source,
            // The racing thread keeps one CPU of the box busy; on a loaded
            // 2-core host the handler may wait seconds for its turn. The
            // wall clock is not what this test checks (a host blocked on a
            // FIFO is: the outer minute below).
            json!({"timeout_ms": 20000}),
        ))
        .await;
    let key = p.app("fifos", &[&code]).await;
    for i in 0..200 {
        // A blocked read would hold the call forever; the call's own wall
        // clock is 20 s. (How long a call takes on a loaded host is not this
        // test's business: a minute means it hung.)
        let (st, v) = tokio::time::timeout(
            Duration::from_secs(60),
            p.execute(&key, "fifos", &code, json!({})),
        )
        .await
        .unwrap_or_else(|_| panic!("call {i} hung"));
        assert_eq!(st, StatusCode::OK, "call {i}: {v}");
        assert_eq!(v["status"], "success", "call {i}: {v}");
        // Artifacts are regular files only.
        for a in v["artifacts"].as_array().into_iter().flatten() {
            let path = a["path"].as_str().unwrap();
            assert!(path == "real.txt" || path.starts_with('f'), "{a}");
        }
    }
    assert_all_final(&p).await;
}

fn host_shmem_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Shmem:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// Finding 4 and the IPC residue: System V shared memory survived between
/// warm calls and each call's memory limit was relative to current usage,
/// so repeated calls pinned ever more host memory; IPC objects of one call
/// were visible to the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipc_objects_never_outlive_their_call_and_pin_no_memory() {
    let p = Platform::start(&[]);
    let source = r#"
import ctypes

libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmdt.argtypes = [ctypes.c_void_p]
IPC_PRIVATE, IPC_CREAT = 0, 0o1000

def count(kind):
    with open('/proc/sysvipc/' + kind) as f:
        return len(f.read().splitlines()) - 1

def handler(event):
    seen = {k: count(k) for k in ('shm', 'sem', 'msg')}
    size = event['mb'] << 20
    sid = libc.shmget(IPC_PRIVATE, size, IPC_CREAT | 0o600)
    addr = libc.shmat(sid, None, 0)
    ctypes.memset(addr, 1, size)      # the pages are really used
    libc.shmdt(ctypes.c_void_p(addr))  # detached, never removed
    libc.semget(IPC_PRIVATE, 1, IPC_CREAT | 0o600)
    libc.msgget(IPC_PRIVATE, IPC_CREAT | 0o600)
    return {"seen": seen, "left": {k: count(k) for k in ('shm', 'sem', 'msg')}}
"#;
    let code = p
        .publish(python_package(
            "hostile.ipc.shm_leak",
            source,
            json!({"timeout_ms": 10000, "memory_mb": 256}),
        ))
        .await;
    let key = p.app("ipc", &[&code]).await;
    let (st, v) = p.execute(&key, "ipc", &code, json!({"mb": 1})).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("success")),
        "{v}"
    );
    let before = host_shmem_kib();
    for i in 0..12 {
        let (st, v) = p.execute(&key, "ipc", &code, json!({"mb": 96})).await;
        assert_eq!(
            (st, v["status"].as_str()),
            (StatusCode::OK, Some("success")),
            "call {i}: {v}"
        );
        assert_eq!(
            v["return_value"]["left"],
            json!({"shm": 1, "sem": 1, "msg": 1}),
            "the call made its objects"
        );
        assert_eq!(
            v["return_value"]["seen"],
            json!({"shm": 0, "sem": 0, "msg": 0}),
            "call {i} saw what an earlier call left: {v}"
        );
    }
    // 12 × 96 MiB would be 1152 MiB if segments survived their calls.
    let grown = host_shmem_kib().saturating_sub(before);
    assert!(grown < 300 << 10, "host shared memory grew by {grown} KiB");
    assert_all_final(&p).await;
}

/// A call could write its fork-server's memory through /proc/<ppid>/mem
/// (same uid, dumpable) and so change what later calls of the same app
/// compute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cannot_read_or_write_its_fork_servers_memory() {
    let p = Platform::start(&[]);
    let source = r#"
import os

SECRET = "original-secret-value-0123456789"

def handler(event):
    if not event.get('attack'):
        return {"secret": SECRET}
    ppid = os.getppid()
    try:
        fd = os.open('/proc/%d/mem' % ppid, os.O_RDWR)
    except OSError as e:
        return {"opened": False, "error": type(e).__name__}
    needle, written = SECRET.encode(), 0
    with open('/proc/%d/maps' % ppid) as maps:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith('rw'):
                continue
            lo, hi = (int(x, 16) for x in span.split('-'))
            try:
                data = os.pread(fd, hi - lo, lo)
            except OSError:
                continue
            at = data.find(needle)
            while at >= 0:
                written += os.pwrite(fd, b"tampered-secret-value-0123456789", lo + at)
                at = data.find(needle, at + 1)
    return {"opened": True, "written": written}
"#;
    let code = p
        .publish(python_package(
            "hostile.mem.parent",
            source,
            json!({"timeout_ms": 10000, "memory_mb": 256}),
        ))
        .await;
    let key = p.app("mem", &[&code]).await;
    let secret = json!({"secret": "original-secret-value-0123456789"});
    for i in 0..10 {
        let (st, v) = p.execute(&key, "mem", &code, json!({})).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["return_value"], secret, "call {i}: {v}");
        let (st, v) = p.execute(&key, "mem", &code, json!({"attack": true})).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["return_value"]["opened"], Value::Bool(false), "call {i}: {v}");
    }
    let (_, v) = p.execute(&key, "mem", &code, json!({})).await;
    assert_eq!(v["return_value"], secret);
    assert_all_final(&p).await;
}
