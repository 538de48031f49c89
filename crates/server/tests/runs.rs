//! `POST /v1/run` over a real socket with real boxes: every language with
//! stdin and arguments, files in several encodings, compile steps that
//! succeed and fail with their own result, limits, the record and its
//! event stream, every bad request refused with its location, who may run,
//! and a hostile run whose leftovers (files, /tmp, System V and POSIX IPC,
//! processes, environment) the next run of the same app never sees.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn app(s: &Server, id: &str) -> String {
    let r = s
        .call(Method::POST, "/v1/apps", Some(&s.admin), Some(json!({"id": id})))
        .await;
    assert!(r.status() == StatusCode::CREATED || r.status() == StatusCode::CONFLICT);
    s.key("app", id, Some(id)).await
}

/// Run and expect 200; the record.
async fn run(s: &Server, key: &str, body: Value) -> Value {
    s.expect(Method::POST, "/v1/run", key, Some(body), StatusCode::OK)
        .await
}

/// Run and expect `status`; the problem document's locations.
async fn refused(s: &Server, key: &str, body: Value, status: StatusCode) -> Vec<String> {
    let r = s.call(Method::POST, "/v1/run", Some(key), Some(body)).await;
    assert_eq!(r.status(), status);
    if status != StatusCode::UNAUTHORIZED {
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "errors on /v1/run are problem documents"
        );
    }
    let v: Value = r.json().await.unwrap();
    v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["location"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_language_runs_with_stdin_and_arguments() {
    let s = server().await;
    let key = app(&s, "runner").await;
    let py = run(
        &s,
        &key,
        json!({"language": "python", "code": "import sys\nprint(sys.stdin.read().upper(), sys.argv[1:])\n", "stdin": "hi", "args": ["a", "b c"]}),
    )
    .await;
    assert_eq!(py["status"], "success", "{py}");
    assert_eq!(py["stdout"], "HI ['a', 'b c']\n");
    assert_eq!(
        (py["kind"].as_str(), py["language"].as_str()),
        (Some("run"), Some("python"))
    );
    assert_eq!(py["template"], "python-basic");
    assert_eq!(py["exit_code"], 0);
    // The record is an ordinary execution.
    let id = py["id"].as_str().unwrap();
    let stored = s
        .expect(
            Method::GET,
            &format!("/v1/executions/{id}"),
            &key,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(stored["stdout"], py["stdout"]);
    assert_eq!(stored["kind"], "run");

    let js = run(
        &s,
        &key,
        json!({"language": "javascript", "code": "let d='';process.stdin.on('data',c=>d+=c).on('end',()=>{console.log(d.trim(), process.argv.slice(2).join('|'));process.exit(3)})", "stdin": "in\n", "args": ["x", "y"]}),
    )
    .await;
    assert_eq!(js["stdout"], "in x|y\n", "{js}");
    assert_eq!(js["status"], "failed", "a non-zero exit is a failed run");
    assert_eq!(js["exit_code"], 3);

    let sh = run(
        &s,
        &key,
        json!({"language": "shell", "files": [{"path": "main.sh", "content": "read l; echo \"$l:$1\"; . ./lib/x.sh"}, {"path": "lib/x.sh", "content": "ZWNobyBmcm9tIGxpYg==", "encoding": "base64"}], "stdin": "line\n", "args": ["arg"]}),
    )
    .await;
    assert_eq!(sh["stdout"], "line:arg\nfrom lib\n", "{sh}");

    for (language, code) in [
        (
            "c",
            "#include <stdio.h>\nint main(int c, char **v){char b[32];fgets(b,32,stdin);printf(\"%s%s\\n\", b, v[1]);return 0;}",
        ),
        (
            "cpp",
            "#include <iostream>\n#include <string>\nint main(int c, char **v){std::string l;std::getline(std::cin,l);std::cout<<l<<v[1]<<std::endl;}",
        ),
        (
            "go",
            "package main\nimport (\"bufio\";\"fmt\";\"os\")\nfunc main(){l,_:=bufio.NewReader(os.Stdin).ReadString('\\n');fmt.Printf(\"%s%s\\n\", l[:len(l)-1], os.Args[1])}",
        ),
    ] {
        let r = run(
            &s,
            &key,
            json!({"language": language, "code": code, "stdin": "got \n", "args": ["it"]}),
        )
        .await;
        assert_eq!(r["status"], "success", "{language}: {r}");
        assert!(
            r["stdout"].as_str().unwrap().starts_with("got "),
            "{language}: {r}"
        );
        assert!(r["stdout"].as_str().unwrap().trim_end().ends_with("it"));
        assert_eq!(r["compile"]["status"], "success", "{language}: {r}");
        assert!(r["template"].is_null());
    }
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compile_step_has_its_own_result_and_limits() {
    let s = server().await;
    let key = app(&s, "compiler").await;
    let broken = run(
        &s,
        &key,
        json!({"language": "c", "code": "int main(void) { return undefined_name; }"}),
    )
    .await;
    assert_eq!(broken["status"], "failed", "{broken}");
    assert_eq!(broken["error_kind"], "compile_error");
    assert_eq!(broken["compile"]["status"], "failed");
    assert!(
        broken["compile"]["stderr"]
            .as_str()
            .unwrap()
            .contains("undefined_name"),
        "{broken}"
    );
    assert_ne!(broken["compile"]["exit_code"], 0);
    assert_eq!(broken["stdout"], "", "nothing ran");
    // The compile step's own memory limit stops a compiler that needs more.
    let tight = run(
        &s,
        &key,
        json!({"language": "cpp", "code": "#include <iostream>\n#include <regex>\n#include <map>\nint main(){std::map<int,int> m; std::regex r(\"a+\"); std::cout << std::regex_match(\"aaa\", r) << m.size();}", "compile_memory_mb": 16}),
    )
    .await;
    assert_eq!(tight["error_kind"], "compile_error", "{tight}");
    assert_ne!(tight["compile"]["status"], "success");
    // A runaway program is stopped by its own limit after a good compile.
    let slow = run(
        &s,
        &key,
        json!({"language": "c", "code": "int main(void){for(;;){}}", "timeout_ms": 500}),
    )
    .await;
    assert_eq!(slow["compile"]["status"], "success", "{slow}");
    assert_eq!(slow["status"], "timeout", "{slow}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_runs_are_refused_with_their_location() {
    let s = server().await;
    let key = app(&s, "picky").await;
    let code = |extra: Value| {
        let mut b = json!({"language": "python", "code": "print(1)"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (body, want) in [
        (
            json!({"language": "python", "code": "1", "files": [{"path": "a.py", "content": ""}]}),
            vec!["/code"],
        ),
        (json!({"language": "python"}), vec!["/files"]),
        (
            json!({"language": "python", "files": [{"path": "../x.py", "content": ""}, {"path": "b", "content": "!!", "encoding": "base64"}]}),
            vec!["/files/1/content"],
        ),
        (
            json!({"language": "python", "files": [{"path": "../x.py", "content": ""}, {"path": ".warden/a", "content": ""}]}),
            vec!["/files/0/path", "/files/1/path"],
        ),
        (code(json!({"timeout_ms": 10_000_000})), vec!["/timeout_ms"]),
        (code(json!({"memory_mb": 1})), vec!["/memory_mb"]),
        (code(json!({"template": "no-such"})), vec!["/template"]),
        (code(json!({"template": "node-basic"})), vec!["/template"]),
        (
            json!({"language": "go", "code": "package main", "template": "python-basic"}),
            vec!["/template"],
        ),
        (code(json!({"args": ["a\u{0}b"]})), vec!["/args/0"]),
    ] {
        let got = refused(&s, &key, body.clone(), StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(got, want, "{body}");
    }
    // Unreadable bodies: 400, naming what is wrong.
    for (body, field) in [
        (json!({"language": "cobol", "code": "x"}), "language"),
        (json!({"language": "python", "code": 5}), "code"),
        (json!({"language": "python", "code": "1", "extra": true}), "extra"),
    ] {
        let r = s
            .call(Method::POST, "/v1/run", Some(&key), Some(body.clone()))
            .await;
        assert!(r.status().is_client_error(), "{body}");
        let v: Value = r.json().await.unwrap();
        assert!(v["detail"].as_str().unwrap().contains(field), "{body}: {v}");
    }
    // Who may run: no key, a developer, an app naming another app, an
    // admin without an app.
    refused(&s, "", code(json!({})), StatusCode::UNAUTHORIZED).await;
    let dev = s.key("developer", "dev", None).await;
    refused(&s, &dev, code(json!({})), StatusCode::FORBIDDEN).await;
    refused(&s, &key, code(json!({"app": "other"})), StatusCode::FORBIDDEN).await;
    let admin = s.admin.clone();
    assert_eq!(
        refused(&s, &admin, code(json!({})), StatusCode::UNPROCESSABLE_ENTITY).await,
        ["/app"]
    );
    let by_admin = run(&s, &admin, code(json!({"app": "picky"}))).await;
    assert_eq!(by_admin["app"], "picky");
    // Nothing refused was recorded.
    let list = s
        .expect(
            Method::GET,
            "/v1/executions?app=picky",
            &admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    s.stop().await.unwrap();
}

/// Leaves what it can behind: files in the workspace and /tmp, System V
/// and POSIX IPC objects, a detached process, an environment variable.
const LEAVE: &str = r#"
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
open('/workspace/left.txt', 'w').write('x')
open('/tmp/left.txt', 'w').write('x')
os.environ['LEFT'] = '1'
os.putenv('LEFT_PUT', '1')
print('sysv', libc.shmget(0x5EED, 4096, 0o1666) >= 0, libc.semget(0x5EED, 1, 0o1666) >= 0, libc.msgget(0x5EED, 0o1666) >= 0)
try:
    open('/dev/shm/left', 'w').write('x')
except OSError:
    pass
libc.mq_open(b'/left', 0o100 | 0o2, 0o666, None)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(60)
    os._exit(0)
print('left')
"#;

/// Reports whatever a previous run left.
const LOOK: &str = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
found = [p for p in ['/workspace/left.txt', '/tmp/left.txt', '/dev/shm/left'] if os.path.exists(p)]
if 'LEFT' in os.environ or 'LEFT_PUT' in os.environ:
    found.append('env')
for name, there in [('shm', libc.shmget(0x5EED, 0, 0)), ('sem', libc.semget(0x5EED, 0, 0)), ('msg', libc.msgget(0x5EED, 0)), ('mq', libc.mq_open(b'/left', 0, 0, None))]:
    if there >= 0:
        found.append(name)
procs = [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid(), os.getppid())]
found += ['process ' + open(f'/proc/{p}/cmdline').read().replace('\0', ' ') for p in procs]
print('found', found)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn every_run_starts_clean_after_a_hostile_one() {
    let s = server().await;
    let key = app(&s, "clean").await;
    let other = app(&s, "neighbour").await;
    for round in 0..3 {
        let l = run(&s, &key, json!({"language": "python", "code": LEAVE})).await;
        assert!(
            l["stdout"].as_str().unwrap().contains("sysv True True True"),
            "round {round}: {l}"
        );
        for (who, k) in [("same app", &key), ("another app", &other)] {
            let look = run(&s, k, json!({"language": "python", "code": LOOK})).await;
            assert_eq!(look["stdout"], "found []\n", "round {round}, {who}: {look}");
        }
    }
    // The warm path was the one tested.
    let warm = run(&s, &key, json!({"language": "python", "code": "print(1)"})).await;
    assert_eq!(warm["warm"], true, "{warm}");
    // Shell and compiled programs get a fresh box: nothing of the last.
    run(
        &s,
        &key,
        json!({"language": "shell", "code": "echo x > /workspace/left.txt; echo x > /tmp/left.txt; (setsid sleep 60 &) ; echo ok"}),
    )
    .await;
    let look = run(
        &s,
        &key,
        json!({"language": "shell", "code": "ls /workspace /tmp; ps -e -o comm= | grep -c sleep || true"}),
    )
    .await;
    assert!(!look["stdout"].as_str().unwrap().contains("left.txt"), "{look}");
    assert!(look["stdout"].as_str().unwrap().ends_with("0\n"), "{look}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_streams_its_events_and_has_no_network_unless_granted() {
    let s = server().await;
    let key = app(&s, "streamer").await;
    let r = s
        .client
        .post(s.url("/v1/run"))
        .bearer_auth(&key)
        .header("accept", "text/event-stream")
        .json(&json!({"language": "python", "code": "import sys\nprint('out line')\nprint('err line', file=sys.stderr)\n"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let text = r.text().await.unwrap();
    assert!(
        text.contains("event: stdout") || text.contains("out line"),
        "{text}"
    );
    assert!(text.contains("event: result"), "{text}");
    assert!(text.contains("err line"), "{text}");
    let stored = s.expect(Method::GET, &location, &key, None, StatusCode::OK).await;
    assert_eq!(stored["status"], "success");
    // Asking for network the template does not grant runs without it.
    let net = run(
        &s,
        &key,
        json!({"language": "python", "network": true, "code": "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\n    print('reached')\nexcept OSError as e:\n    print('blocked', e.errno)\n"}),
    )
    .await;
    assert_eq!(net["status"], "success", "{net}");
    assert!(net["stdout"].as_str().unwrap().starts_with("blocked"), "{net}");
    s.stop().await.unwrap();
}
