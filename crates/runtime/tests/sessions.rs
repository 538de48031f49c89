//! Session boxes in real boxes: scripts, handlers and stateful cells in
//! Python, JavaScript and shell; the workspace and `/tmp` persisting between
//! executions; a crashed or timed-out interpreter restarted and said so;
//! cancel; the session's disk cap; files through the workspace's `BoxDir`.
//! Needs root (the jail).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_jail::{Jail, JailConfig, MIB};
use warden_runtime::session::{ExecMode, Language, SeedFile, SessionBox, SessionExec, SessionSpec};
use warden_runtime::{CallLimits, CallStatus, Runner, RunnerConfig};

fn runner() -> &'static Runner {
    static RUNNER: OnceLock<Runner> = OnceLock::new();
    RUNNER.get_or_init(|| {
        assert!(
            rustix::process::geteuid().is_root(),
            "session tests need root (the jail); run them through scripts/test"
        );
        Runner::new(
            Jail::new(JailConfig::default()).expect("jail"),
            RunnerConfig::default(),
        )
        .expect("runner")
    })
}

fn session(spec: SessionSpec) -> SessionBox {
    runner().start_session(spec).expect("session")
}

fn exec(
    s: &SessionBox,
    language: Language,
    mode: ExecMode,
    code: &str,
) -> warden_runtime::session::SessionOutcome {
    exec_with(s, language, mode, code, b"{}", Duration::from_secs(20))
}

fn exec_with(
    s: &SessionBox,
    language: Language,
    mode: ExecMode,
    code: &str,
    event: &[u8],
    timeout: Duration,
) -> warden_runtime::session::SessionOutcome {
    s.exec(&SessionExec {
        language,
        mode,
        code: code.as_bytes().to_vec(),
        event: event.to_vec(),
        limits: CallLimits {
            timeout,
            cpu_time: timeout,
            ..CallLimits::default()
        },
        env: vec![],
        tap: None,
    })
    .expect("exec")
}

#[test]
fn scripts_run_in_every_language_and_the_workspace_and_tmp_persist() {
    let s = session(SessionSpec::default());
    let o = exec(
        &s,
        Language::Python,
        ExecMode::Script,
        "import os\nopen('/workspace/a.txt','w').write('from python')\nopen('/tmp/t','w').write('tmp')\nprint(os.getcwd())",
    );
    assert_eq!(o.result.status, CallStatus::Success, "{:?}", o.result);
    assert_eq!(o.result.stdout, "/workspace\n");
    let o = exec(
        &s,
        Language::Shell,
        ExecMode::Script,
        "cat /workspace/a.txt /tmp/t; echo; exit 3",
    );
    assert_eq!(o.result.status, CallStatus::Failed, "{:?}", o.result);
    assert_eq!(o.result.exit_code, Some(3));
    assert_eq!(o.result.stdout, "from pythontmp\n");
    let o = exec(
        &s,
        Language::Javascript,
        ExecMode::Script,
        "const fs = require('fs'); console.log(fs.readFileSync('/workspace/a.txt', 'utf8').length)",
    );
    assert_eq!(o.result.status, CallStatus::Success, "{:?}", o.result);
    assert_eq!(o.result.stdout, "11\n");
    // Errors keep their traceback in stderr.
    let o = exec(
        &s,
        Language::Python,
        ExecMode::Script,
        "x = 1\nraise ValueError('boom')",
    );
    assert_eq!(o.result.status, CallStatus::Failed);
    assert!(
        o.result.stderr.contains("ValueError: boom"),
        "{}",
        o.result.stderr
    );
    // The host reads the workspace by descriptor.
    assert_eq!(
        s.workspace().read_file(Path::new("a.txt"), 100).unwrap(),
        b"from python"
    );
}

/// The agent starts from the bytecode the runner compiled (a pyc the
/// import system accepts: this interpreter's magic, checked against the
/// source's hash), imported as a module rather than compiled as a script.
#[test]
fn the_session_agent_starts_from_its_precompiled_bytecode() {
    let s = session(SessionSpec::default());
    let o = exec(
        &s,
        Language::Python,
        ExecMode::Script,
        "import importlib.util, json, os\n\
         out = {}\n\
         for name in ('warden_session', 'warden_wrapper'):\n\
         \x20   src = f'/warden/python/{name}.py'\n\
         \x20   with open(importlib.util.cache_from_source(src), 'rb') as f:\n\
         \x20       pyc = f.read()\n\
         \x20   with open(src, 'rb') as f:\n\
         \x20       source = f.read()\n\
         \x20   out[name] = [pyc[:4] == importlib.util.MAGIC_NUMBER,\n\
         \x20                int.from_bytes(pyc[4:8], 'little') == 3,\n\
         \x20                pyc[8:16] == importlib.util.source_hash(source)]\n\
         with open(f'/proc/{os.getppid()}/cmdline', 'rb') as f:\n\
         \x20   out['agent'] = f.read().split(b'\\0')[1:-1][-1].decode()\n\
         print(json.dumps(out))",
    );
    assert_eq!(o.result.status, CallStatus::Success, "{:?}", o.result);
    let v: serde_json::Value = serde_json::from_str(o.result.stdout.trim()).unwrap();
    assert_eq!(v["warden_session"], serde_json::json!([true, true, true]), "{v}");
    assert_eq!(v["warden_wrapper"], serde_json::json!([true, true, true]), "{v}");
    assert!(
        v["agent"].as_str().unwrap().contains("import warden_session"),
        "{v}"
    );
}

/// A create that finds no box ready while one is being started ahead takes
/// that box when it is ready, instead of starting a second beside it (on a
/// small host two starts at once make both slow).
#[test]
fn a_create_back_to_back_takes_the_box_being_started_ahead() {
    let state = tempfile::tempdir().unwrap();
    let r = Runner::new(
        Jail::new(JailConfig {
            state_dir: Some(state.path().to_owned()),
            max_boxes: 8,
            ..JailConfig::default()
        })
        .unwrap(),
        RunnerConfig {
            session_prestart: 1,
            // Generous: the property is which box, not how fast.
            session_prestart_wait: Duration::from_secs(60),
            ..RunnerConfig::default()
        },
    )
    .unwrap();
    let first = r.start_session(SessionSpec::default()).unwrap();
    assert!(!first.started_ahead(), "nothing was started ahead yet");
    // At once: the box started ahead for the first is still starting.
    let second = r.start_session(SessionSpec::default()).unwrap();
    assert!(second.started_ahead(), "the second started a box of its own");
    let o = exec(&second, Language::Shell, ExecMode::Script, "echo ok");
    assert_eq!(o.result.stdout, "ok\n", "{:?}", o.result);
    // Without a refill under way (another kind of session), a create starts
    // its own box at once rather than waiting.
    let other = r
        .start_session(SessionSpec {
            disk_bytes: 48 * MIB,
            ..SessionSpec::default()
        })
        .unwrap();
    assert!(!other.started_ahead());
}

#[test]
fn handlers_return_values_as_plugins_do() {
    let s = session(SessionSpec::default());
    let o = exec_with(
        &s,
        Language::Python,
        ExecMode::Handler,
        "def handler(event):\n    print('hi')\n    return {'n': event['n'] + 1}\n",
        br#"{"n": 41}"#,
        Duration::from_secs(20),
    );
    assert_eq!(o.result.status, CallStatus::Success, "{:?}", o.result);
    assert_eq!(o.result.return_value, Some(json!({"n": 42})));
    assert_eq!(o.result.stdout, "hi\n");
    let o = exec_with(
        &s,
        Language::Javascript,
        ExecMode::Handler,
        "export async function handler(event) { return { twice: event.n * 2 }; }",
        br#"{"n": 21}"#,
        Duration::from_secs(20),
    );
    assert_eq!(o.result.status, CallStatus::Success, "{:?}", o.result);
    assert_eq!(o.result.return_value, Some(json!({"twice": 42})));
    let o = exec(
        &s,
        Language::Python,
        ExecMode::Handler,
        "def handler(event):\n    return {}[1]\n",
    );
    assert_eq!(o.result.status, CallStatus::Failed);
    assert_eq!(o.result.error.as_ref().unwrap().kind, "KeyError");
}

#[test]
fn stateful_cells_keep_their_state_and_say_when_it_was_lost() {
    let s = session(SessionSpec::default());
    let o = exec(
        &s,
        Language::Python,
        ExecMode::Repl,
        "import json\nx = 40\nf = open('/workspace/log', 'w')",
    );
    assert_eq!(o.result.status, CallStatus::Success, "{:?}", o.result);
    assert!(!o.interpreter_restarted);
    let o = exec(
        &s,
        Language::Python,
        ExecMode::Repl,
        "f.write('kept'); f.flush()\nprint('out')\njson.dumps({'x': x + 2})",
    );
    assert_eq!(o.result.status, CallStatus::Success, "{:?}", o.result);
    assert_eq!(o.result.return_value, Some(Value::String(r#"{"x": 42}"#.into())));
    assert_eq!(o.result.stdout, "out\n");
    // A cell's exception is reported; the interpreter lives on.
    let o = exec(&s, Language::Python, ExecMode::Repl, "1 / 0");
    assert_eq!(o.result.status, CallStatus::Failed);
    assert_eq!(o.result.error.as_ref().unwrap().kind, "ZeroDivisionError");
    let o = exec(&s, Language::Python, ExecMode::Repl, "x");
    assert_eq!(o.result.return_value, Some(json!(40)));
    // A timeout kills the interpreter, never the session's files.
    let o = exec_with(
        &s,
        Language::Python,
        ExecMode::Repl,
        "while True: pass",
        b"{}",
        Duration::from_secs(1),
    );
    assert_eq!(o.result.status, CallStatus::Timeout, "{:?}", o.result);
    assert!(o.interpreter_died);
    let o = exec(&s, Language::Python, ExecMode::Repl, "'x' in dir()");
    assert!(
        o.interpreter_restarted,
        "the next cell must say the state was lost"
    );
    assert_eq!(o.result.return_value, Some(json!(false)));
    assert_eq!(s.workspace().read_file(Path::new("log"), 100).unwrap(), b"kept");
    // A crash too.
    let o = exec(&s, Language::Python, ExecMode::Repl, "import os\nos._exit(3)");
    assert!(o.interpreter_died);
    assert_ne!(o.result.status, CallStatus::Success);
    let o = exec(&s, Language::Python, ExecMode::Repl, "2 + 2");
    assert!(o.interpreter_restarted);
    assert_eq!(o.result.return_value, Some(json!(4)));
    // JavaScript keeps its global scope too, and awaits a promise.
    let o = exec(
        &s,
        Language::Javascript,
        ExecMode::Repl,
        "let n = 20; const path = require('path'); n",
    );
    assert_eq!(o.result.return_value, Some(json!(20)), "{:?}", o.result);
    let o = exec(
        &s,
        Language::Javascript,
        ExecMode::Repl,
        "console.log('js'); Promise.resolve(n + 1)",
    );
    assert_eq!(o.result.return_value, Some(json!(21)), "{:?}", o.result);
    assert_eq!(o.result.stdout, "js\n");
    // A Python timeout did not take the JavaScript interpreter's state.
    let o = exec_with(
        &s,
        Language::Python,
        ExecMode::Script,
        "import time; time.sleep(10)",
        b"{}",
        Duration::from_secs(1),
    );
    assert_eq!(o.result.status, CallStatus::Timeout);
    let o = exec(&s, Language::Javascript, ExecMode::Repl, "n");
    assert!(!o.interpreter_restarted);
    assert_eq!(o.result.return_value, Some(json!(20)));
}

#[test]
fn a_running_execution_can_be_cancelled() {
    let s = Arc::new(session(SessionSpec::default()));
    let canceller = {
        let s = s.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            assert!(s.cancel());
        })
    };
    let t = Instant::now();
    let o = exec(&s, Language::Shell, ExecMode::Script, "sleep 30; echo never");
    canceller.join().unwrap();
    assert_eq!(o.result.status, CallStatus::Cancelled, "{:?}", o.result);
    assert!(t.elapsed() < Duration::from_secs(10));
    // The session goes on.
    let o = exec(&s, Language::Shell, ExecMode::Script, "echo after");
    assert_eq!(o.result.stdout, "after\n");
}

#[test]
fn the_disk_cap_holds_and_the_session_survives_it() {
    let s = session(SessionSpec {
        disk_bytes: 8 * MIB,
        ..SessionSpec::default()
    });
    let o = exec(
        &s,
        Language::Python,
        ExecMode::Script,
        "import errno\ntry:\n    open('/workspace/big','wb').write(b'x' * (32 << 20))\nexcept OSError as e:\n    print(errno.errorcode[e.errno])",
    );
    assert_eq!(o.result.stdout.trim(), "ENOSPC", "{:?}", o.result);
    let o = exec(
        &s,
        Language::Shell,
        ExecMode::Script,
        "rm /workspace/big; echo ok",
    );
    assert_eq!(o.result.stdout, "ok\n");
}

#[test]
fn files_planted_by_the_box_are_never_followed_by_the_host() {
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("s"), b"host secret").unwrap();
    let s = session(SessionSpec {
        files: vec![SeedFile {
            path: "data/in.txt".into(),
            bytes: b"seed".to_vec(),
        }],
        ..SessionSpec::default()
    });
    let script = format!(
        "ln -s {0}/s link; ln -s {0} dirlink; mkfifo fifo; cat data/in.txt",
        secret.path().display()
    );
    let o = exec(&s, Language::Shell, ExecMode::Script, &script);
    assert_eq!(o.result.stdout, "seed");
    let ws = s.workspace();
    assert!(ws.read_file(Path::new("link"), 100).is_err());
    assert!(ws.read_file(Path::new("dirlink/s"), 100).is_err());
    assert!(ws.read_file(Path::new("fifo"), 100).is_err());
    let mut data: &[u8] = b"overwrite";
    assert!(ws.write_file(Path::new("link"), &mut data, 100).is_err());
    assert_eq!(std::fs::read(secret.path().join("s")).unwrap(), b"host secret");
}

#[test]
fn a_terminated_session_runs_nothing() {
    let s = session(SessionSpec::default());
    let o = exec(&s, Language::Shell, ExecMode::Script, "echo up");
    assert_eq!(o.result.stdout, "up\n");
    assert!(s.is_alive());
    s.terminate();
    assert!(!s.is_alive());
    let err = s
        .exec(&SessionExec {
            language: Language::Shell,
            mode: ExecMode::Script,
            code: b"echo".to_vec(),
            event: vec![],
            limits: CallLimits::default(),
            env: vec![],
            tap: None,
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("ended") || format!("{err:?}").contains("ended"),
        "{err:?}"
    );
}

#[test]
fn a_session_granted_egress_gives_its_scripts_the_proxy() {
    let s = session(SessionSpec {
        egress: vec!["example.com:443".into()],
        ..SessionSpec::default()
    });
    let o = exec(
        &s,
        Language::Python,
        ExecMode::Script,
        "import os\nprint(os.environ.get('HTTPS_PROXY'), os.environ.get('http_proxy'))",
    );
    assert_eq!(o.result.status, CallStatus::Success, "{:?}", o.result);
    assert_eq!(o.result.stdout, "http://127.0.0.1:3128 http://127.0.0.1:3128\n");
    let o = exec(&s, Language::Shell, ExecMode::Script, "echo \"$HTTPS_PROXY\"");
    assert_eq!(o.result.stdout, "http://127.0.0.1:3128\n");
}

#[test]
fn a_prestarted_session_box_becomes_exactly_the_session_that_claims_it() {
    // Its own runner and pool: one box kept ahead per kind of session.
    let state = tempfile::tempdir().unwrap();
    let r = Runner::new(
        Jail::new(JailConfig {
            state_dir: Some(state.path().to_owned()),
            max_boxes: 8,
            ..JailConfig::default()
        })
        .unwrap(),
        RunnerConfig {
            session_prestart: 1,
            ..RunnerConfig::default()
        },
    )
    .unwrap();
    let wait_for_one = |r: &Runner| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while r.prestarted_sessions() == 0 {
            assert!(Instant::now() < deadline, "no session box was started ahead");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // The first session of its kind starts cold, and leaves one started ahead.
    let first = r.start_session(SessionSpec::default()).unwrap();
    exec(
        &first,
        Language::Shell,
        ExecMode::Script,
        "echo first > /workspace/mine; echo first > /tmp/mine",
    );
    wait_for_one(&r);
    // The next claims it: its memory limit, environment and seed files are
    // this session's, and nothing of another session is in it.
    let second = r
        .start_session(SessionSpec {
            memory_bytes: 96 * MIB,
            env: vec![("WARDEN_TEST_SESSION".into(), "second".into())],
            files: vec![SeedFile {
                path: "seed/hello.txt".into(),
                bytes: b"seeded".to_vec(),
            }],
            ..SessionSpec::default()
        })
        .unwrap();
    assert_eq!(
        r.prestarted_sessions(),
        0,
        "the box started ahead was not claimed"
    );
    let o = exec(
        &second,
        Language::Shell,
        ExecMode::Script,
        "cat /workspace/seed/hello.txt; echo; ls /workspace /tmp | grep -c mine",
    );
    assert_eq!(o.result.stdout, "seeded\n0\n", "{:?}", o.result);
    // The environment reaches a persistent interpreter started after the
    // claim (it inherits the agent's).
    let o = exec(
        &second,
        Language::Python,
        ExecMode::Repl,
        "import os\nos.environ.get('WARDEN_TEST_SESSION')",
    );
    assert_eq!(o.result.return_value, Some(json!("second")), "{:?}", o.result);
    let o = exec(
        &second,
        Language::Python,
        ExecMode::Script,
        "x = bytearray(200 << 20)\nprint('allocated')",
    );
    assert_ne!(
        o.result.stdout, "allocated\n",
        "the session's 96 MiB limit was not applied: {:?}",
        o.result
    );
    assert_eq!(o.result.status, CallStatus::Error, "{:?}", o.result);
    // The pool is topped up again for the next create.
    wait_for_one(&r);
    drop((first, second));
    r.clear_prestarted_sessions();
    assert_eq!(r.prestarted_sessions(), 0);
}
