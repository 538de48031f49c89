//! Handlers in real boxes: every runtime's happy path, every error the
//! protocol promises to report, large and unicode payloads, capped output,
//! artifacts, and the warm pool's guarantees. Needs root (the jail).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_jail::{Jail, JailConfig, Status};
use warden_runtime::{
    CallLimits, CallStatus, Code, HandlerResult, Invocation, Runner, RunnerConfig, RuntimeError, WarmConfig,
};

fn runner() -> &'static Runner {
    static RUNNER: OnceLock<Runner> = OnceLock::new();
    RUNNER.get_or_init(|| {
        assert!(
            rustix::process::geteuid().is_root(),
            "runtime tests need root (the jail); run them through scripts/test"
        );
        let jail = Jail::new(JailConfig::default()).expect("jail");
        let config = RunnerConfig {
            warm: WarmConfig {
                prewarm_per_code: 1,
                max_per_code: 2,
                ..WarmConfig::default()
            },
            ..RunnerConfig::default()
        };
        Runner::new(jail, config).expect("runner")
    })
}

/// A plugin directory (world-readable, as boxes need) holding `files`.
fn plugin(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("warden-plugin-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        let mode = if name.ends_with(".sh") || !name.contains('.') {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

static KEYS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn code(runtime: &str, dir: &Path, entrypoint: &str) -> Code {
    let n = KEYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Code {
        key: format!("test/{runtime}/{n}"),
        runtime: runtime.into(),
        dir: dir.to_owned(),
        entrypoint: entrypoint.into(),
        handler: "handler".into(),
        layer: None,
        network: None,
    }
}

fn inv(event: Value) -> Invocation {
    Invocation::new(serde_json::to_vec(&event).unwrap(), CallLimits::default())
}

fn cold(c: &Code, event: Value) -> HandlerResult {
    runner().invoke_cold(c, &inv(event)).unwrap()
}

/// Start warm boxes for `c` and wait until one is ready.
fn warm_up(c: &Code) {
    let r = runner();
    r.prewarm(c, &CallLimits::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.warm_idle(&c.key) == 0 {
        assert!(
            Instant::now() < deadline,
            "no warm box became ready: {:?}",
            r.pool_stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn warm(c: &Code, event: Value) -> HandlerResult {
    let r = runner().invoke(c, &inv(event)).unwrap();
    assert!(r.warm, "expected a warm call: {r:#?}");
    r
}

const PY_HELLO: &str =
    "def handler(event):\n    return {'greeting': f\"hello {event.get('name', 'world')}\"}\n";

#[test]
fn python_returns_a_value_cold_and_warm() {
    let dir = plugin(&[("main.py", PY_HELLO)]);
    let c = code("python", dir.path(), "main.py");
    let r = cold(&c, json!({"name": "Ada"}));
    assert_eq!(r.status, CallStatus::Success, "{r:#?}");
    assert_eq!(r.return_value, Some(json!({"greeting": "hello Ada"})));
    assert!(!r.warm);
    warm_up(&c);
    let r = warm(&c, json!({"name": "Grace"}));
    assert_eq!(r.status, CallStatus::Success, "{r:#?}");
    assert_eq!(r.return_value, Some(json!({"greeting": "hello Grace"})));
    assert!(r.metrics.duration_ms > 0.0 && r.metrics.cpu_time_ms >= 0.0);
}

#[test]
fn python_async_handler() {
    let dir = plugin(&[(
        "main.py",
        "import asyncio\nasync def handler(event):\n    await asyncio.sleep(0.01)\n    return event['n'] * 2\n",
    )]);
    let c = code("python", dir.path(), "main.py");
    let r = cold(&c, json!({"n": 21}));
    assert_eq!(r.return_value, Some(json!(42)), "{r:#?}");
}

#[test]
fn python_errors_are_precise() {
    let dir = plugin(&[
        ("nohandler.py", "def other(event):\n    return 1\n"),
        ("syntax.py", "def handler(event):\n    return [1, 2\n\nx = 1\n"),
        (
            "raises.py",
            "import json\n\ndef helper(d):\n    return d['missing']\n\ndef handler(event):\n    return helper(event)\n",
        ),
        (
            "setret.py",
            "def handler(event):\n    return {'items': [1, {2, 3}]}\n",
        ),
        ("typed.py", "def handler(event: dict):\n    return len(event)\n"),
    ]);
    let d = dir.path();
    let r = cold(&code("python", d, "nohandler.py"), json!({}));
    assert_eq!(r.status, CallStatus::Failed);
    let e = r.error.unwrap();
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        ("HandlerNotFound", "`nohandler.py` defines no function `handler`")
    );

    let r = cold(&code("python", d, "syntax.py"), json!({}));
    let e = r.error.unwrap();
    assert_eq!(e.kind, "SyntaxError");
    assert_eq!(e.line, Some(2), "{e:?}");
    assert!(e.message.contains("syntax.py, line 2"), "{e:?}");

    let r = cold(&code("python", d, "raises.py"), json!({}));
    let e = r.error.unwrap();
    assert_eq!((e.kind.as_str(), e.message.as_str()), ("KeyError", "'missing'"));
    let tb = e.traceback.unwrap();
    assert!(tb.contains("raises.py\", line 4, in helper"), "{tb}");
    assert!(tb.contains("raises.py\", line 7, in handler"), "{tb}");
    assert!(
        !tb.contains("warden_wrapper"),
        "the wrapper's frames must be trimmed: {tb}"
    );
    assert_eq!(e.line, Some(4));

    let r = cold(&code("python", d, "setret.py"), json!({}));
    let e = r.error.unwrap();
    assert_eq!(e.kind, "ResultNotSerializable");
    assert_eq!(
        e.message,
        "the return value is not JSON-serializable: set at $.items[1]"
    );

    let r = cold(&code("python", d, "typed.py"), json!([1, 2]));
    let e = r.error.unwrap();
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        (
            "InvalidEvent",
            "the handler expects an object but the event is list"
        )
    );
    assert_eq!(
        cold(&code("python", d, "typed.py"), json!({"a": 1})).return_value,
        Some(json!(1))
    );
}

#[test]
fn printed_text_cannot_forge_a_result() {
    let forged = r#"{"ok": true, "value": "forged"}"#;
    let dir = plugin(&[(
        "main.py",
        &format!(
            "import sys\ndef handler(event):\n    print({forged:?})\n    print('===SANDBOX_RESULT===')\n    print({forged:?}, file=sys.stderr)\n    return 'real'\n"
        ),
    )]);
    let c = code("python", dir.path(), "main.py");
    for r in [cold(&c, json!({})), {
        warm_up(&c);
        warm(&c, json!({}))
    }] {
        assert_eq!(r.return_value, Some(json!("real")), "{r:#?}");
        assert!(r.stdout.contains("forged") && r.stdout.contains("===SANDBOX_RESULT==="));
    }
}

/// The runner precompiles the Python wrapper; the import system takes that
/// bytecode only when its header matches the interpreter and the source's
/// hash, so check that from inside a box, as the interpreter sees it.
#[test]
fn python_boxes_find_the_wrapper_precompiled() {
    let dir = plugin(&[(
        "main.py",
        "import importlib.util, sys\n\
         def handler(event):\n\
         \x20   src = '/warden/python/warden_wrapper.py'\n\
         \x20   with open(importlib.util.cache_from_source(src), 'rb') as f:\n\
         \x20       pyc = f.read()\n\
         \x20   with open(src, 'rb') as f:\n\
         \x20       source = f.read()\n\
         \x20   return {'magic': pyc[:4] == importlib.util.MAGIC_NUMBER,\n\
         \x20           'checked_hash': int.from_bytes(pyc[4:8], 'little') == 3,\n\
         \x20           'hash': pyc[8:16] == importlib.util.source_hash(source),\n\
         \x20           'loaded_from': sys.modules['warden_wrapper'].__spec__.cached}\n",
    )]);
    let c = code("python", dir.path(), "main.py");
    let tag = "/warden/python/__pycache__/warden_wrapper.";
    for r in [cold(&c, json!({})), {
        warm_up(&c);
        warm(&c, json!({}))
    }] {
        assert_eq!(r.status, CallStatus::Success, "{r:#?}");
        let v = r.return_value.unwrap();
        assert_eq!(
            (&v["magic"], &v["checked_hash"], &v["hash"]),
            (&json!(true), &json!(true), &json!(true)),
            "{v}"
        );
        assert!(v["loaded_from"].as_str().unwrap().starts_with(tag), "{v}");
    }
}

/// The Python wrapper decodes events on json's C scanner without importing
/// the json package: it must read what json reads, and refuse what it refuses
/// with json's own message.
#[test]
fn python_events_decode_exactly_as_json_does() {
    let dir = plugin(&[(
        "main.py",
        "def handler(event):\n    return {'event': event, 'types': [type(v).__name__ for v in event['values']]}\n",
    )]);
    let c = code("python", dir.path(), "main.py");
    let raw = " \n{\"values\": [1, -0, 2.5e3, 9007199254740993, \"\\u00e9\\ud83e\\udd80\\n\", true, null, {}, []]}\t\r\n";
    let want = json!({
        "event": {"values": [1, 0, 2500.0, 9007199254740993u64, "é🦀\n", true, null, {}, []]},
        "types": ["int", "int", "float", "int", "str", "bool", "NoneType", "dict", "list"],
    });
    let bad: &[(&str, &str)] = &[
        ("{\"a\" 1}", "Expecting ':' delimiter: line 1 column 6 (char 5)"),
        ("[1,]", "Expecting value: line 1 column 4 (char 3)"),
        ("[1] x", "Extra data: line 1 column 5 (char 4)"),
        (
            "\"a\u{1}\"",
            "Invalid control character at: line 1 column 3 (char 2)",
        ),
    ];
    let check = |r: HandlerResult, msg: &str| {
        let e = r.error.unwrap_or_else(|| panic!("{msg}: no error"));
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            (
                "InvalidEvent",
                format!("the event is not valid JSON: {msg}").as_str()
            )
        );
    };
    let call = |warm: bool, event: &[u8]| {
        let inv = Invocation::new(event.to_vec(), CallLimits::default());
        let r = if warm {
            runner().invoke(&c, &inv).unwrap()
        } else {
            runner().invoke_cold(&c, &inv).unwrap()
        };
        assert_eq!(r.warm, warm, "{r:#?}");
        r
    };
    for warm in [false, true] {
        if warm {
            warm_up(&c);
        }
        let r = call(warm, raw.as_bytes());
        assert_eq!(r.status, CallStatus::Success, "{r:#?}");
        assert_eq!(r.return_value, Some(want.clone()));
        for (event, msg) in bad {
            if warm {
                warm_up(&c);
            }
            check(call(warm, event.as_bytes()), msg);
        }
    }
}

#[test]
fn large_and_unicode_payloads_pass_intact() {
    let dir = plugin(&[(
        "main.py",
        "import hashlib\ndef handler(event):\n    data = event['blob']\n    return {'len': len(data), 'sha': hashlib.sha256(data.encode()).hexdigest(), 'echo': event['text'], 'big': 'é' * 2_000_000}\n",
    )]);
    let blob: String = "0123456789abcdef".repeat(5 * 1024 * 1024 / 16);
    let text = "héllo wörld ✓ 日本語 🦀";
    let c = code("python", dir.path(), "main.py");
    let r = cold(&c, json!({"blob": blob, "text": text}));
    assert_eq!(r.status, CallStatus::Success, "{:?}", r.error);
    let v = r.return_value.unwrap();
    assert_eq!(v["len"], blob.len());
    assert_eq!(v["echo"], text);
    assert_eq!(v["big"].as_str().unwrap().chars().count(), 2_000_000);
    use sha2::Digest;
    let want: String = sha2::Sha256::digest(blob.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v["sha"], want);
}

#[test]
fn ten_mib_of_prints_is_capped_and_the_result_still_arrives() {
    let dir = plugin(&[(
        "main.py",
        "import sys\ndef handler(event):\n    chunk = 'x' * 1024 * 1024\n    for _ in range(10):\n        sys.stdout.write(chunk)\n    return 'done'\n",
    )]);
    let c = code("python", dir.path(), "main.py");
    let r = cold(&c, json!({}));
    assert_eq!(r.status, CallStatus::Success, "{:?}", r.error);
    assert_eq!(r.return_value, Some(json!("done")));
    assert!(r.stdout_truncated);
    assert_eq!(r.stdout.len(), CallLimits::default().output_bytes);
}

#[test]
fn artifacts_under_out_are_returned_with_hashes() {
    let dir = plugin(&[(
        "main.py",
        "import os\ndef handler(event):\n    os.makedirs('out/sub', exist_ok=True)\n    open('out/report.csv', 'w').write('a,b\\n1,2\\n')\n    open('out/sub/x.bin', 'wb').write(b'\\x00' * 10)\n    open('scratch.txt', 'w').write('not an artifact')\n    return 'ok'\n",
    )]);
    let c = code("python", dir.path(), "main.py");
    let mut r = cold(&c, json!({}));
    r.artifacts.sort_by(|a, b| a.path.cmp(&b.path));
    let got: Vec<(&str, u64)> = r.artifacts.iter().map(|a| (a.path.as_str(), a.size)).collect();
    assert_eq!(got, [("report.csv", 8), ("sub/x.bin", 10)], "{r:#?}");
    use sha2::Digest;
    let want: String = sha2::Sha256::digest(b"a,b\n1,2\n")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(r.artifacts[0].sha256, want);
    assert_eq!(r.artifacts[0].data, b"a,b\n1,2\n");
}

#[test]
fn node_commonjs_esm_and_async() {
    let dir = plugin(&[
        (
            "cjs.js",
            "exports.handler = async (event) => ({ sum: event.a + event.b });\n",
        ),
        (
            "esm.mjs",
            "export async function handler(event) { await new Promise(r => setTimeout(r, 5)); return `hi ${event.name}`; }\n",
        ),
        ("default.mjs", "export default { handler: (e) => e.n + 1 };\n"),
    ]);
    let d = dir.path();
    assert_eq!(
        cold(&code("node", d, "cjs.js"), json!({"a": 2, "b": 3})).return_value,
        Some(json!({"sum": 5}))
    );
    assert_eq!(
        cold(&code("node", d, "esm.mjs"), json!({"name": "box"})).return_value,
        Some(json!("hi box"))
    );
    assert_eq!(
        cold(&code("node", d, "default.mjs"), json!({"n": 41})).return_value,
        Some(json!(42))
    );
    let c = code("node", d, "cjs.js");
    warm_up(&c);
    assert_eq!(
        warm(&c, json!({"a": 1, "b": 1})).return_value,
        Some(json!({"sum": 2}))
    );
}

#[test]
fn node_errors_are_precise() {
    let dir = plugin(&[
        ("none.js", "exports.other = () => 1;\n"),
        (
            "syntax.mjs",
            "export function handler(e) {\n  return {a: 1,,};\n}\n",
        ),
        (
            "throws.js",
            "function inner() { throw new TypeError('bad input'); }\nexports.handler = () => inner();\n",
        ),
        ("bigint.js", "exports.handler = () => ({ n: 10n });\n"),
    ]);
    let d = dir.path();
    let e = cold(&code("node", d, "none.js"), json!({})).error.unwrap();
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        ("HandlerNotFound", "`none.js` exports no function `handler`")
    );
    let e = cold(&code("node", d, "syntax.mjs"), json!({})).error.unwrap();
    assert_eq!(e.kind, "SyntaxError");
    assert_eq!(e.line, Some(2), "{e:?}");
    let e = cold(&code("node", d, "throws.js"), json!({})).error.unwrap();
    assert_eq!((e.kind.as_str(), e.message.as_str()), ("TypeError", "bad input"));
    let tb = e.traceback.unwrap();
    assert!(tb.contains("/code/throws.js:1"), "{tb}");
    assert!(!tb.contains("warden_wrapper"), "{tb}");
    let e = cold(&code("node", d, "bigint.js"), json!({})).error.unwrap();
    assert_eq!(
        e.message,
        "the return value is not JSON-serializable: bigint at $.n"
    );
}

#[test]
fn shell_reads_the_event_on_stdin_and_answers_on_stdout() {
    let dir = plugin(&[
        (
            "json.sh",
            "#!/bin/bash\nread -r event\necho \"{\\\"got\\\": $event}\"\n",
        ),
        ("text.sh", "#!/bin/bash\ncat > /dev/null\necho plain words\n"),
        ("fail.sh", "#!/bin/bash\necho oops >&2\nexit 3\n"),
    ]);
    let d = dir.path();
    assert_eq!(
        cold(&code("shell", d, "json.sh"), json!({"x": 1})).return_value,
        Some(json!({"got": {"x": 1}}))
    );
    assert_eq!(
        cold(&code("shell", d, "text.sh"), json!({})).return_value,
        Some(json!("plain words"))
    );
    let r = cold(&code("shell", d, "fail.sh"), json!({}));
    assert_eq!(r.status, CallStatus::Failed);
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.error.unwrap().message, "exited with code 3: oops");
}

#[test]
fn a_go_plugin_is_built_in_the_jail_and_runs_native() {
    if !Path::new("/usr/bin/go").exists() {
        panic!("golang-go is not installed: scripts/install-deps installs it");
    }
    let src = plugin(&[
        ("go.mod", "module example.com/hello\n\ngo 1.19\n"),
        (
            "main.go",
            "package main\n\nimport (\n\t\"encoding/json\"\n\t\"os\"\n)\n\nfunc main() {\n\tvar in map[string]any\n\t_ = json.NewDecoder(os.Stdin).Decode(&in)\n\tjson.NewEncoder(os.Stdout).Encode(map[string]any{\"greeting\": \"hello \" + in[\"name\"].(string)})\n}\n",
        ),
    ]);
    let out_dir = plugin(&[]);
    let bin = out_dir.path().join("plugin");
    let built = runner().build_go(src.path(), &bin).unwrap();
    assert!(built.size > 0 && built.sha256.len() == 64);
    let c = code("native", out_dir.path(), "plugin");
    let r = cold(&c, json!({"name": "gopher"}));
    assert_eq!(
        r.return_value,
        Some(json!({"greeting": "hello gopher"})),
        "{r:#?}"
    );

    let broken = plugin(&[
        ("go.mod", "module example.com/b\n\ngo 1.19\n"),
        (
            "main.go",
            "package main\n\nfunc main() {\n\tundefinedThing()\n}\n",
        ),
    ]);
    match runner().build_go(broken.path(), &out_dir.path().join("b")) {
        Err(RuntimeError::BuildFailed { errors, .. }) => {
            assert_eq!(errors[0].file, "main.go");
            assert_eq!(errors[0].line, 4);
            assert!(
                errors[0].message.contains("undefined: undefinedThing"),
                "{errors:?}"
            );
        }
        other => panic!("expected a located build error, got {other:?}"),
    }
}

#[test]
fn warm_calls_start_from_a_clean_state() {
    let dir = plugin(&[(
        "main.py",
        "import os\nCOUNT = 0\ndef handler(event):\n    global COUNT\n    COUNT += 1\n    seen = os.path.exists('/workspace/mark') or os.path.exists('/tmp/mark')\n    open('/workspace/mark', 'w').write('x')\n    open('/tmp/mark', 'w').write('x')\n    return {'count': COUNT, 'seen': seen}\n",
    )]);
    let c = code("python", dir.path(), "main.py");
    warm_up(&c);
    for _ in 0..3 {
        let r = warm(&c, json!({}));
        assert_eq!(
            r.return_value,
            Some(json!({"count": 1, "seen": false})),
            "state leaked between calls: {r:#?}"
        );
    }
}

#[test]
fn limits_hold_inside_warm_calls_and_the_server_survives() {
    let dir = plugin(&[
        (
            "mem.py",
            "def handler(event):\n    if event.get('bomb'):\n        x = [bytearray(16 << 20) for _ in range(64)]\n    return 'alive'\n",
        ),
        (
            "fork.py",
            "import os, time\ndef handler(event):\n    if event.get('bomb'):\n        n = 0\n        try:\n            while True:\n                if os.fork() == 0:\n                    time.sleep(30)\n                    os._exit(0)\n                n += 1\n        except OSError:\n            return {'forked': n}\n    return 'alive'\n",
        ),
        (
            "slow.py",
            "import time\ndef handler(event):\n    if event.get('sleep'):\n        time.sleep(30)\n    return 'alive'\n",
        ),
    ]);
    let d = dir.path();

    let c = code("python", d, "mem.py");
    warm_up(&c);
    let mut bomb = inv(json!({"bomb": true}));
    bomb.limits.memory_bytes = 64 << 20;
    let r = runner().invoke(&c, &bomb).unwrap();
    assert!(r.warm);
    assert_eq!(
        (r.status, r.jail_status),
        (CallStatus::Error, Status::MemoryLimit),
        "{r:#?}"
    );
    assert_eq!(
        warm(&c, json!({})).return_value,
        Some(json!("alive")),
        "the fork-server did not survive"
    );

    let c = code("python", d, "fork.py");
    warm_up(&c);
    let mut bomb = inv(json!({"bomb": true}));
    bomb.limits.pids = 16;
    let r = runner().invoke(&c, &bomb).unwrap();
    assert!(r.warm);
    let forked = r
        .return_value
        .as_ref()
        .and_then(|v| v["forked"].as_u64())
        .unwrap_or_else(|| panic!("{r:#?}"));
    assert!(forked < 16, "forked {forked} processes past a limit of 16");
    assert_eq!(warm(&c, json!({})).return_value, Some(json!("alive")));

    let c = code("python", d, "slow.py");
    warm_up(&c);
    let mut slow = inv(json!({"sleep": true}));
    slow.limits.timeout = Duration::from_millis(300);
    let r = runner().invoke(&c, &slow).unwrap();
    assert_eq!(r.status, CallStatus::Timeout, "{r:#?}");
    assert!(r.metrics.duration_ms < 5000.0);
    assert_eq!(warm(&c, json!({})).return_value, Some(json!("alive")));
}

#[test]
fn a_violation_in_a_warm_call_is_reported_and_the_box_replaced() {
    let dir = plugin(&[(
        "main.py",
        "import ctypes\ndef handler(event):\n    if event.get('attack'):\n        ctypes.CDLL(None).syscall(101, 0, 0, 0, 0)\n    return 'alive'\n",
    )]);
    let c = code("python", dir.path(), "main.py");
    warm_up(&c);
    let r = warm(&c, json!({"attack": true}));
    assert_eq!(
        (r.status, r.jail_status),
        (CallStatus::Error, Status::Violation),
        "{r:#?}"
    );
    assert!(r.error.unwrap().message.contains("`ptrace`"));
    // The box died with the attack; the next call still gets an answer.
    let r = runner().invoke(&c, &inv(json!({}))).unwrap();
    assert_eq!(r.return_value, Some(json!("alive")));
}

#[test]
fn bad_requests_are_refused_clearly() {
    let dir = plugin(&[("main.py", PY_HELLO)]);
    let mut c = code("python", dir.path(), "main.py");
    c.runtime = "cobol".into();
    assert!(matches!(
        runner().invoke(&c, &inv(json!({}))),
        Err(RuntimeError::UnknownRuntime(_))
    ));
    c.runtime = "python".into();
    let huge = Invocation::new(vec![b' '; 7 << 20], CallLimits::default());
    let err = runner().invoke(&c, &huge).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("the event is {} bytes; the limit is {}", 7 << 20, 6 << 20)
    );
    let private = tempfile::tempdir().unwrap();
    std::fs::write(private.path().join("main.py"), PY_HELLO).unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = runner()
        .invoke(&code("python", private.path(), "main.py"), &inv(json!({})))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("must be readable and searchable by other users"),
        "{err}"
    );
    let err = runner()
        .invoke(&code("python", dir.path(), "../etc/passwd"), &inv(json!({})))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("must be a relative path inside the package"),
        "{err}"
    );
}

#[test]
fn a_dead_fork_server_is_replaced_and_counted() {
    let dir = plugin(&[("main.py", PY_HELLO)]);
    let c = code("python", dir.path(), "main.py");
    warm_up(&c);
    let before = runner().pool_stats().restarts_total;
    // Kill the fork-server from outside, as a crash would.
    let server = runner().warm_boxes(&c.key)[0].program_pid.expect("server pid");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(server).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    // The call still gets an answer: the pool notices, replaces the box, and
    // a call that hits the dead box is retried cold.
    let r = runner().invoke(&c, &inv(json!({"name": "again"}))).unwrap();
    assert_eq!(r.return_value, Some(json!({"greeting": "hello again"})), "{r:#?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while runner().pool_stats().restarts_total == before {
        assert!(
            Instant::now() < deadline,
            "the dead fork-server was not counted: {:?}",
            runner().pool_stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    warm_up(&c);
    assert!(
        warm(&c, json!({})).return_value.is_some(),
        "the pool did not recover"
    );
}

#[test]
fn output_is_tapped_as_it_is_written_warm_and_cold() {
    let dir = plugin(&[(
        "main.py",
        "import sys\ndef handler(event):\n    print('out-1', flush=True)\n    print('err-1', file=sys.stderr, flush=True)\n    print('out-2')\n    return {'ok': True}\n",
    )]);
    let c = code("python", dir.path(), "main.py");
    warm_up(&c);
    for warm_call in [true, false] {
        let seen = std::sync::Arc::new(std::sync::Mutex::new((Vec::new(), Vec::new())));
        let s2 = seen.clone();
        let mut call = inv(json!({}));
        call.tap = Some(std::sync::Arc::new(move |stream, data: &[u8]| {
            let mut s = s2.lock().unwrap();
            match stream {
                warden_runtime::Stream::Stdout => s.0.extend_from_slice(data),
                warden_runtime::Stream::Stderr => s.1.extend_from_slice(data),
            }
        }));
        let r = if warm_call {
            runner().invoke(&c, &call).unwrap()
        } else {
            runner().invoke_cold(&c, &call).unwrap()
        };
        assert_eq!(r.status, CallStatus::Success, "{r:?}");
        assert_eq!(r.warm, warm_call);
        let s = seen.lock().unwrap();
        assert_eq!(String::from_utf8_lossy(&s.0), "out-1\nout-2\n");
        assert_eq!(String::from_utf8_lossy(&s.1), "err-1\n");
        assert_eq!(r.stdout, "out-1\nout-2\n", "the result holds the same bytes");
    }
}

#[test]
fn a_busy_warm_box_is_awaited_briefly_before_going_cold() {
    let dir = plugin(&[(
        "main.py",
        "import time\ndef handler(event):\n    time.sleep(event['s'])\n    return {}\n",
    )]);
    for (max_wait, expect_warm) in [(Duration::from_secs(5), true), (Duration::ZERO, false)] {
        let jail = Jail::new(JailConfig::default()).unwrap();
        let r = Runner::new(
            jail,
            RunnerConfig {
                warm: WarmConfig {
                    prewarm_per_code: 1,
                    max_per_code: 1,
                    max_wait,
                    ..WarmConfig::default()
                },
                ..RunnerConfig::default()
            },
        )
        .unwrap();
        let c = code("python", dir.path(), "main.py");
        r.prewarm(&c, &CallLimits::default()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while r.warm_idle(&c.key) == 0 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        let (r2, c2) = (r.clone(), c.clone());
        let first = std::thread::spawn(move || r2.invoke(&c2, &inv(json!({"s": 0.4}))).unwrap());
        std::thread::sleep(Duration::from_millis(100));
        let second = r.invoke(&c, &inv(json!({"s": 0}))).unwrap();
        let first = first.join().unwrap();
        assert_eq!(first.status, CallStatus::Success);
        assert!(first.warm);
        assert_eq!(second.status, CallStatus::Success, "{second:?}");
        assert_eq!(second.warm, expect_warm, "max_wait {max_wait:?}");
        r.retire(&c.key);
    }
}

#[test]
fn page_cache_left_in_a_reused_slot_does_not_retire_the_next_fork_server() {
    // One slot, so the fork-server starts in the cgroup a cold call just
    // used. That call reads 96 MiB the host made sure was not cached: the
    // pages are charged to the slot's cgroup and stay there. They are
    // reclaimable cache, not the fork-server's memory, so the warm call that
    // follows must be served warm rather than counted as a server that grew
    // past its 64 MiB allowance.
    let dir = plugin(&[(
        "main.py",
        "def handler(event):\n    n = 0\n    if event.get('read'):\n        with open('/code/blob', 'rb') as f:\n            while chunk := f.read(1 << 20):\n                n += len(chunk)\n    return n\n",
    )]);
    let blob = dir.path().join("blob");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&blob).unwrap();
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..96 {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
        std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let jail = Jail::new(JailConfig {
        state_dir: Some(state.path().to_owned()),
        max_boxes: 1,
        ..JailConfig::default()
    })
    .unwrap();
    let r = Runner::new(
        jail,
        RunnerConfig {
            warm: WarmConfig {
                prewarm_per_code: 1,
                max_per_code: 1,
                ..WarmConfig::default()
            },
            ..RunnerConfig::default()
        },
    )
    .unwrap();
    let c = code("python", dir.path(), "main.py");
    let read = r.invoke_cold(&c, &inv(json!({"read": true}))).unwrap();
    assert_eq!(read.return_value, Some(json!(96 << 20)), "{read:#?}");
    r.prewarm(&c, &CallLimits::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.warm_idle(&c.key) == 0 {
        assert!(Instant::now() < deadline, "no warm box: {:?}", r.pool_stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let call = r.invoke(&c, &inv(json!({}))).unwrap();
    assert_eq!(call.return_value, Some(json!(0)), "{call:#?}");
    assert!(call.warm, "the fork-server was retired: {:?}", r.pool_stats());
    assert_eq!(r.pool_stats().restarts_total, 0);
    r.retire(&c.key);
    let report = r.jail().clean_pool().unwrap();
    assert_eq!(report.busy, 0, "{report:?}");
}

#[test]
fn warm_node_calls_start_from_a_fresh_module_and_clean_globals() {
    let dir = plugin(&[
        (
            "main.js",
            "const lib = require('./lib.js');\nlet calls = 0;\nexports.handler = (event) => {\n  calls += 1;\n  lib.bump();\n  const seen = { global: globalThis.mark ?? null, env: process.env.WARDEN_MARK ?? null, lib: lib.count() };\n  globalThis.mark = 'set';\n  process.env.WARDEN_MARK = 'set';\n  if (event.timer) setInterval(() => console.log('late output'), 1);\n  console.log(`call ${calls}`);\n  return { calls, seen };\n};\n",
        ),
        (
            "lib.js",
            "let n = 0;\nexports.bump = () => { n += 1; };\nexports.count = () => n;\n",
        ),
    ]);
    let c = code("node", dir.path(), "main.js");
    warm_up(&c);
    for event in [json!({"timer": true}), json!({}), json!({})] {
        let r = warm(&c, event);
        assert_eq!(
            r.return_value,
            Some(json!({"calls": 1, "seen": {"global": null, "env": null, "lib": 1}})),
            "state leaked between calls: {r:#?}"
        );
        assert_eq!(r.stdout, "call 1\n", "a call's output is its own: {r:#?}");
    }
}

#[test]
fn a_warm_node_call_that_leaves_something_behind_gets_a_fresh_process_next() {
    // What a call leaves that the wrapper cannot undo (a timer it did not
    // see, a child process, a polluted prototype) ends the serving process.
    let dir = plugin(&[(
        "main.js",
        "let calls = 0;\nexports.handler = async (event) => {\n  calls += 1;\n  if (event.timer) require('timers').setInterval(() => {}, 1000);\n  if (event.child) require('child_process').spawn('/bin/sleep', ['30']);\n  if (event.pollute) Array.prototype.polluted = true;\n  return { calls, polluted: [].polluted ?? null, pid: process.pid };\n};\n",
    )]);
    let c = code("node", dir.path(), "main.js");
    warm_up(&c);
    let first = warm(&c, json!({})).return_value.unwrap();
    let same = warm(&c, json!({})).return_value.unwrap();
    assert_eq!(first["pid"], same["pid"], "a clean call keeps its process");
    for leak in [
        json!({"timer": true}),
        json!({"child": true}),
        json!({"pollute": true}),
    ] {
        let before = warm(&c, leak.clone()).return_value.unwrap();
        let after = warm(&c, json!({})).return_value.unwrap();
        assert_eq!(
            (after["calls"].clone(), after["polluted"].clone()),
            (json!(1), json!(null)),
            "{leak}: {after}"
        );
        assert_ne!(
            before["pid"], after["pid"],
            "{leak}: the process was not replaced"
        );
    }
}

#[test]
fn limits_hold_inside_warm_node_calls_and_the_box_is_replaced() {
    let dir = plugin(&[(
        "main.js",
        "exports.handler = async (event) => {\n  if (event.bomb) { const a = []; for (;;) a.push(Buffer.alloc(16 << 20, 1)); }\n  if (event.sleep) await new Promise((r) => setTimeout(r, 30000));\n  if (event.exit) process.exit(3);\n  return 'alive';\n};\n",
    )]);
    let c = code("node", dir.path(), "main.js");

    warm_up(&c);
    let mut bomb = inv(json!({"bomb": true}));
    bomb.limits.memory_bytes = 64 << 20;
    let r = runner().invoke(&c, &bomb).unwrap();
    assert!(r.warm, "{r:#?}");
    assert_eq!(
        (r.status, r.jail_status),
        (CallStatus::Error, Status::MemoryLimit),
        "{r:#?}"
    );
    warm_up(&c);
    assert_eq!(warm(&c, json!({})).return_value, Some(json!("alive")));

    warm_up(&c);
    let mut slow = inv(json!({"sleep": true}));
    slow.limits.timeout = Duration::from_millis(300);
    let r = runner().invoke(&c, &slow).unwrap();
    assert!(r.warm, "{r:#?}");
    assert_eq!(r.status, CallStatus::Timeout, "{r:#?}");
    warm_up(&c);
    assert_eq!(warm(&c, json!({})).return_value, Some(json!("alive")));

    warm_up(&c);
    let r = warm(&c, json!({"exit": true}));
    assert_ne!(r.status, CallStatus::Success, "{r:#?}");
    assert_eq!(r.exit_code, Some(3), "{r:#?}");
    warm_up(&c);
    assert_eq!(warm(&c, json!({})).return_value, Some(json!("alive")));
}
