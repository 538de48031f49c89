//! One-shot programs in real boxes: every language with its stdin,
//! arguments and exit status, compile steps and their failures, warm
//! Python runs that start clean after a hostile run (files, processes,
//! System V and POSIX IPC, environment), warm boxes never shared between
//! tenants, limits, and network only when granted. Needs root (the jail).

use std::sync::OnceLock;
use std::time::Duration;

use warden_jail::{Jail, JailConfig, Status};
use warden_runtime::script::{
    Script, ScriptFile, ScriptLanguage, ScriptNetwork, ScriptOutcome, default_compile_limits,
};
use warden_runtime::{CallLimits, CallStatus, HandlerResult, Runner, RunnerConfig, RuntimeError, WarmConfig};

/// One warm box per tenant and language at most: a second run of a tenant
/// lands in the box the first one used.
fn runner() -> &'static Runner {
    static RUNNER: OnceLock<Runner> = OnceLock::new();
    RUNNER.get_or_init(|| {
        assert!(
            rustix::process::geteuid().is_root(),
            "script tests need root (the jail); run them through scripts/test"
        );
        let config = RunnerConfig {
            warm: WarmConfig {
                prewarm_per_code: 1,
                max_per_code: 1,
                max_wait: Duration::from_secs(5),
                ..WarmConfig::default()
            },
            ..RunnerConfig::default()
        };
        Runner::new(Jail::new(JailConfig::default()).expect("jail"), config).expect("runner")
    })
}

fn script(tenant: &str, language: ScriptLanguage, files: &[(&str, &str)]) -> Script {
    Script {
        tenant: tenant.into(),
        language,
        files: files
            .iter()
            .map(|(p, c)| ScriptFile {
                path: (*p).into(),
                bytes: c.as_bytes().to_vec(),
            })
            .collect(),
        stdin: Vec::new(),
        args: Vec::new(),
        layer: None,
        network: None,
        limits: CallLimits {
            timeout: Duration::from_secs(10),
            ..CallLimits::default()
        },
        compile_limits: default_compile_limits(),
        tap: None,
        compile_tap: None,
    }
}

fn run(s: &Script) -> ScriptOutcome {
    runner().run_script(s).unwrap_or_else(|e| panic!("{e}"))
}

fn ran(s: &Script) -> HandlerResult {
    let o = run(s);
    if let Some(c) = &o.compile {
        assert_eq!(c.status, CallStatus::Success, "compile: {}", c.stderr);
    }
    o.run.expect("the program ran")
}

/// Run `s` until it is served warm (the first run of a tenant starts its
/// box in the background, which takes seconds on a host as loaded as CI's,
/// where every test binary runs at once).
fn ran_warm(s: &Script) -> HandlerResult {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let r = ran(s);
        if r.warm {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no run was served warm within 60 s");
}

#[test]
fn python_runs_with_stdin_arguments_and_exit_status() {
    let mut s = script(
        "lang-py",
        ScriptLanguage::Python,
        &[
            (
                "main.py",
                "import sys, helper\nname = sys.stdin.readline().strip()\nprint(helper.greet(name), sys.argv[1:], sys.argv[0])\nsys.exit(int(sys.argv[1]))\n",
            ),
            ("helper.py", "def greet(n):\n    return 'hello ' + n\n"),
        ],
    );
    s.stdin = b"box\nrest\n".to_vec();
    s.args = vec!["3".into(), "two words".into()];
    for _ in 0..2 {
        let r = ran(&s);
        assert_eq!(r.stdout, "hello box ['3', 'two words'] main.py\n", "{}", r.stderr);
        assert_eq!(r.exit_code, Some(3));
        assert_eq!(r.status, CallStatus::Failed);
        assert_eq!(r.error.as_ref().unwrap().kind, "ExitStatus");
    }
    let ok = ran_warm(&script(
        "lang-py",
        ScriptLanguage::Python,
        &[("a.py", "print('fine')")],
    ));
    assert_eq!(
        (ok.status, ok.exit_code, ok.stdout.as_str()),
        (CallStatus::Success, Some(0), "fine\n")
    );
    // An uncaught exception: Python's traceback on stderr, without
    // Warden's frames, and status 1.
    let boom = ran(&script(
        "lang-py",
        ScriptLanguage::Python,
        &[("boom.py", "def f():\n    raise ValueError('bad value')\nf()\n")],
    ));
    assert_eq!(boom.exit_code, Some(1));
    assert!(
        boom.stderr.starts_with("Traceback (most recent call last):\n"),
        "{}",
        boom.stderr
    );
    assert!(
        boom.stderr.contains("File \"/workspace/boom.py\", line 3"),
        "{}",
        boom.stderr
    );
    assert!(
        boom.stderr.ends_with("ValueError: bad value\n"),
        "{}",
        boom.stderr
    );
    assert!(!boom.stderr.contains("/code/run.py"), "{}", boom.stderr);
    let syntax = ran(&script("lang-py", ScriptLanguage::Python, &[("s.py", "x = (\n")]));
    assert_eq!(syntax.exit_code, Some(1));
    assert!(syntax.stderr.contains("SyntaxError"), "{}", syntax.stderr);
    // Threads finish and atexit functions run, as when the interpreter ends.
    let t = ran(&script(
        "lang-py",
        ScriptLanguage::Python,
        &[(
            "t.py",
            "import atexit, threading, time\natexit.register(lambda: print('atexit'))\ndef w():\n    time.sleep(0.2)\n    print('thread')\nthreading.Thread(target=w).start()\nprint('main')\n",
        )],
    ));
    assert_eq!(t.stdout, "main\nthread\natexit\n");
}

#[test]
fn javascript_runs_with_stdin_arguments_and_exit_status() {
    let mut s = script(
        "lang-js",
        ScriptLanguage::Javascript,
        &[
            (
                "main.js",
                "const h = require('./lib/helper');\nconst input = require('fs').readFileSync(0, 'utf8');\nconsole.log(h.greet(input.trim()), process.argv.slice(2).join('|'));\nsetTimeout(() => { console.log('later'); process.exitCode = Number(process.argv[2]); }, 50);\n",
            ),
            ("lib/helper.js", "exports.greet = (n) => 'hello ' + n;\n"),
        ],
    );
    s.stdin = b"node\n".to_vec();
    s.args = vec!["4".into(), "x y".into()];
    for _ in 0..2 {
        let r = ran(&s);
        assert_eq!(r.stdout, "hello node 4|x y\nlater\n", "{}", r.stderr);
        assert_eq!(r.exit_code, Some(4));
    }
    let boom = ran(&script(
        "lang-js",
        ScriptLanguage::Javascript,
        &[(
            "boom.js",
            "function f() { throw new TypeError('bad type'); }\nf();\n",
        )],
    ));
    assert_eq!(boom.exit_code, Some(1));
    assert!(boom.stderr.contains("TypeError: bad type"), "{}", boom.stderr);
    assert!(boom.stderr.contains("/workspace/boom.js:1"), "{}", boom.stderr);
    let esm = ran(&script(
        "lang-js",
        ScriptLanguage::Javascript,
        &[(
            "m.mjs",
            "const x = await Promise.resolve(41);\nconsole.log(x + 1);\n",
        )],
    ));
    assert_eq!(
        (esm.stdout.as_str(), esm.exit_code),
        ("42\n", Some(0)),
        "{}",
        esm.stderr
    );
}

#[test]
fn shell_runs_with_stdin_arguments_and_exit_status() {
    let mut s = script(
        "lang-sh",
        ScriptLanguage::Shell,
        &[(
            "run.sh",
            "read -r line\necho \"got $line and $# args: $1\"\nexit 7\n",
        )],
    );
    s.stdin = b"input\n".to_vec();
    s.args = vec!["first arg".into(), "second".into()];
    let r = ran(&s);
    assert_eq!(r.stdout, "got input and 2 args: first arg\n");
    assert_eq!(r.exit_code, Some(7));
    assert_eq!(r.status, CallStatus::Failed);
}

#[test]
fn c_cpp_and_go_compile_then_run_in_the_jail() {
    let mut c = script(
        "lang-c",
        ScriptLanguage::C,
        &[
            (
                "file0.code",
                "#include <stdio.h>\n#include <math.h>\n#include \"twice.h\"\nint main(int argc, char **argv) { char b[64]; if (!fgets(b, sizeof b, stdin)) return 9; printf(\"%s %d %.0f %s\", argv[1], twice(21), sqrt(16.0), b); return 5; }\n",
            ),
            ("twice.c", "int twice(int x) { return 2 * x; }\n"),
            ("twice.h", "int twice(int x);\n"),
        ],
    );
    c.stdin = b"line\n".to_vec();
    c.args = vec!["arg".into()];
    let o = run(&c);
    let compile = o.compile.expect("a compile step");
    assert_eq!(compile.status, CallStatus::Success, "{}", compile.stderr);
    let r = o.run.expect("run");
    assert_eq!(
        (r.stdout.as_str(), r.exit_code),
        ("arg 42 4 line\n", Some(5)),
        "{}",
        r.stderr
    );

    let cpp = ran(&script(
        "lang-c",
        ScriptLanguage::Cpp,
        &[(
            "main.cpp",
            "#include <iostream>\n#include <vector>\nint main() { std::vector<int> v{1,2,3}; int s = 0; for (int x : v) s += x; std::cout << \"sum \" << s << std::endl; }\n",
        )],
    ));
    assert_eq!(
        (cpp.stdout.as_str(), cpp.exit_code),
        ("sum 6\n", Some(0)),
        "{}",
        cpp.stderr
    );

    let mut go = script(
        "lang-c",
        ScriptLanguage::Go,
        &[(
            "main.go",
            "package main\nimport (\"bufio\"; \"fmt\"; \"os\")\nfunc main() { r := bufio.NewReader(os.Stdin); l, _ := r.ReadString('\\n'); fmt.Printf(\"go %s %s\", os.Args[1], l); os.Exit(2) }\n",
        )],
    );
    go.stdin = b"in\n".to_vec();
    go.args = vec!["a1".into()];
    let r = ran(&go);
    assert_eq!(
        (r.stdout.as_str(), r.exit_code),
        ("go a1 in\n", Some(2)),
        "{}",
        r.stderr
    );

    // A compile error: the compile step fails with the compiler's message,
    // and nothing runs.
    let bad = run(&script(
        "lang-c",
        ScriptLanguage::C,
        &[("x.c", "int main() { return y; }\n")],
    ));
    let compile = bad.compile.expect("a compile step");
    assert_eq!(compile.status, CallStatus::Failed);
    assert!(compile.stderr.contains("undeclared"), "{}", compile.stderr);
    assert!(bad.run.is_none());
}

#[test]
fn a_compile_step_has_its_own_limits() {
    let mut s = script(
        "lang-c-limits",
        ScriptLanguage::C,
        &[("m.c", "int main() { return 0; }\n")],
    );
    s.compile_limits.timeout = Duration::from_millis(1);
    let o = run(&s);
    let compile = o.compile.expect("a compile step");
    assert_eq!(compile.status, CallStatus::Timeout, "{}", compile.stderr);
    assert!(o.run.is_none());
}

/// What a hostile run leaves behind, and what the next run of the same
/// tenant, in the same warm box, looks for.
const LEAVE: &str = r#"
import ctypes, os, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
open('/workspace/left.txt', 'w').write('secret')
os.makedirs('/workspace/dir/sub', exist_ok=True)
open('/tmp/left.txt', 'w').write('secret')
os.environ['LEFT'] = 'yes'
os.putenv('LEFT_PUT', 'yes')
# System V objects of every kind.
shm = libc.shmget(0x5EED, 4096, 0o1666)
sem = libc.semget(0x5EED, 1, 0o1666)
msg = libc.msgget(0x5EED, 0o1666)
print('sysv', shm >= 0, sem >= 0, msg >= 0)
# POSIX shared memory and message queues.
try:
    open('/dev/shm/left', 'w').write('x')
    print('posix shm made')
except OSError as e:
    print('posix shm refused', e.errno)
mq = libc.mq_open(b'/left', 0o100 | 0o2, 0o666, None)
print('mq', mq)
# A process that outlives the run, detached.
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(60)
    os._exit(0)
print('ppid', os.getppid())
"#;

const LOOK: &str = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
found = []
for p in ['/workspace/left.txt', '/workspace/dir', '/tmp/left.txt', '/dev/shm/left']:
    if os.path.exists(p):
        found.append(p)
if 'LEFT' in os.environ or 'LEFT_PUT' in os.environ:
    found.append('env')
if libc.shmget(0x5EED, 0, 0) >= 0:
    found.append('shm')
if libc.semget(0x5EED, 0, 0) >= 0:
    found.append('sem')
if libc.msgget(0x5EED, 0) >= 0:
    found.append('msg')
if libc.mq_open(b'/left', 0, 0, None) >= 0:
    found.append('mq')
procs = [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid(), os.getppid())]
if procs:
    found.append('processes ' + ','.join(open(f'/proc/{p}/cmdline').read().replace('\0', ' ') for p in procs))
print('found', found)
print('ppid', os.getppid())
print('out', sorted(os.listdir('/workspace')))
"#;

#[test]
fn every_warm_run_starts_clean_after_a_hostile_one() {
    let tenant = "clean";
    let leave = script(tenant, ScriptLanguage::Python, &[("leave.py", LEAVE)]);
    let look = script(tenant, ScriptLanguage::Python, &[("look.py", LOOK)]);
    ran_warm(&look);
    for round in 0..3 {
        let l = ran(&leave);
        assert!(l.warm, "round {round}: the hostile run went cold");
        assert!(
            l.stdout.contains("sysv True True True"),
            "{}\n{}",
            l.stdout,
            l.stderr
        );
        let ppid_leave = l
            .stdout
            .lines()
            .find(|x| x.starts_with("ppid"))
            .unwrap()
            .to_owned();
        let k = ran(&look);
        assert!(k.warm);
        // The same fork-server (one box per tenant here), and nothing left.
        let ppid_look = k.stdout.lines().find(|x| x.starts_with("ppid")).unwrap();
        assert_eq!(ppid_leave, ppid_look, "not the same box: {}", k.stdout);
        assert!(
            k.stdout.contains("found []"),
            "round {round}: {}\n{}",
            k.stdout,
            k.stderr
        );
        assert!(k.stdout.contains("out ['look.py', 'out']"), "{}", k.stdout);
    }
}

#[test]
fn warm_boxes_are_never_shared_between_tenants() {
    let who = "import os\nprint(os.getuid())\n";
    let a1 = ran_warm(&script("tenant-a", ScriptLanguage::Python, &[("w.py", who)]));
    let b1 = ran_warm(&script("tenant-b", ScriptLanguage::Python, &[("w.py", who)]));
    let a2 = ran_warm(&script("tenant-a", ScriptLanguage::Python, &[("w.py", who)]));
    assert_eq!(a1.stdout, a2.stdout, "a tenant's warm box is reused");
    assert_ne!(
        a1.stdout, b1.stdout,
        "two tenants got the same box (uid {})",
        a1.stdout
    );
    // Node.js boxes serve one run each: a run finds nothing of the last.
    let leave = "require('fs').writeFileSync('/tmp/left', 'x'); require('fs').writeFileSync('left', 'x'); process.env.LEFT = '1'; console.log('left')";
    let look = "const fs = require('fs'); console.log(['/tmp/left', '/workspace/left'].filter(fs.existsSync).concat(process.env.LEFT ? ['env'] : []).join(',') || 'clean')";
    for _ in 0..2 {
        let l = ran(&script(
            "tenant-a",
            ScriptLanguage::Javascript,
            &[("l.js", leave)],
        ));
        assert_eq!(l.stdout, "left\n", "{}", l.stderr);
        let k = ran(&script("tenant-a", ScriptLanguage::Javascript, &[("k.js", look)]));
        assert_eq!(k.stdout, "clean\n", "{}", k.stderr);
    }
}

#[test]
fn limits_end_runs_and_the_box_serves_on() {
    let tenant = "limits";
    let mut slow = script(
        tenant,
        ScriptLanguage::Python,
        &[("slow.py", "import time\ntime.sleep(30)\n")],
    );
    slow.limits.timeout = Duration::from_millis(500);
    let r = ran(&slow);
    assert_eq!(r.status, CallStatus::Timeout);
    let mut hog = script(
        tenant,
        ScriptLanguage::Python,
        &[("hog.py", "x = bytearray(400 << 20)\nprint(len(x))\n")],
    );
    hog.limits.memory_bytes = 64 << 20;
    let r = ran(&hog);
    assert_eq!(r.status, CallStatus::Error, "{:?} {}", r.jail_status, r.stderr);
    assert_eq!(r.jail_status, Status::MemoryLimit);
    let bomb = ran(&script(
        tenant,
        ScriptLanguage::Python,
        &[(
            "bomb.py",
            "import os\nn = 0\nwhile n < 5000:\n    try:\n        os.fork()\n    except OSError:\n        pass\n    n += 1\n",
        )],
    ));
    assert_ne!(bomb.status, CallStatus::Success);
    let fine = ran(&script(
        tenant,
        ScriptLanguage::Python,
        &[("ok.py", "print('still here')")],
    ));
    assert_eq!(fine.stdout, "still here\n");
}

#[test]
fn without_a_grant_there_is_no_network() {
    let probe = "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    print('connected')\nexcept OSError as e:\n    print('refused', type(e).__name__)\n";
    let r = ran(&script("net", ScriptLanguage::Python, &[("n.py", probe)]));
    assert!(r.stdout.starts_with("refused"), "{}{}", r.stdout, r.stderr);
}

/// What this machine's operator allows the proxy to reach although it is
/// not public: where `host` resolves, when it resolves into a reserved
/// range (a registry mirror).
fn operator_allows(host: &str) -> Vec<String> {
    use std::net::{IpAddr, ToSocketAddrs};
    (host, 443)
        .to_socket_addrs()
        .map(|a| a.map(|a| a.ip()).collect::<Vec<IpAddr>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|ip| match ip {
            IpAddr::V4(v4) => v4.is_private() || v4.octets()[..3] == [203, 0, 113],
            IpAddr::V6(_) => false,
        })
        .map(|ip| format!("{ip}/32"))
        .collect()
}

fn reachable(host: &str) -> bool {
    use std::net::ToSocketAddrs;
    let ok = (host, 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok());
    if !ok {
        eprintln!(
            "\n*** SKIPPED: {host}:443 is unreachable from this machine; a granted run's network is not tested ***\n"
        );
    }
    ok
}

#[test]
fn a_granted_run_reaches_its_hosts_and_nothing_else() {
    if !reachable("pypi.org") {
        return;
    }
    let mut s = script(
        "net-granted",
        ScriptLanguage::Python,
        &[(
            "n.py",
            "import urllib.request\nprint(urllib.request.urlopen('https://pypi.org/simple/', timeout=20).status)\ntry:\n    urllib.request.urlopen('https://example.com/', timeout=20)\n    print('example reached')\nexcept Exception as e:\n    print('example refused')\n",
        )],
    );
    s.network = Some(ScriptNetwork {
        hosts: vec!["pypi.org".into()],
        allow_cidrs: operator_allows("pypi.org"),
        credentials: Vec::new(),
    });
    s.limits.timeout = Duration::from_secs(60);
    let r = ran(&s);
    assert_eq!(r.stdout, "200\nexample refused\n", "{}", r.stderr);
}

#[test]
fn bad_programs_are_refused_before_any_box() {
    for (files, why) in [
        (vec![], "at least one file"),
        (vec![("../x.py", "")], "`..`"),
        (vec![("/etc/x.py", "")], "absolute"),
        (vec![(".warden/a.out", "")], ".warden"),
        (vec![("a.py", ""), ("a.py", "")], "twice"),
    ] {
        let s = script("bad", ScriptLanguage::Python, &files);
        match runner().run_script(&s) {
            Err(RuntimeError::BadScript(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("{files:?}: {other:?}"),
        }
    }
}

/// A one-shot run whose tenant's only warm box is busy waits for it rather
/// than starting a box of its own, even where plugin calls would wait only
/// a moment (`max_wait` 10 ms here): both of two concurrent runs are warm.
#[test]
fn a_run_waits_for_its_tenants_busy_warm_box_instead_of_going_cold() {
    let runner = Runner::new(
        Jail::new(JailConfig::default()).expect("jail"),
        RunnerConfig {
            warm: WarmConfig {
                prewarm_per_code: 1,
                max_per_code: 1,
                max_wait: Duration::from_millis(10),
                ..WarmConfig::default()
            },
            ..RunnerConfig::default()
        },
    )
    .expect("runner");
    let s = script(
        "queue",
        ScriptLanguage::Python,
        &[("main.py", "import time\ntime.sleep(0.3)\nprint('done')")],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !runner.run_script(&s).unwrap().run.unwrap().warm {
        assert!(
            std::time::Instant::now() < deadline,
            "no run was served warm within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cold = runner.pool_stats().cold_fallbacks_total;
    let both = std::thread::scope(|sc| {
        let a = sc.spawn(|| runner.run_script(&s).unwrap().run.unwrap());
        let b = sc.spawn(|| runner.run_script(&s).unwrap().run.unwrap());
        [a.join().unwrap(), b.join().unwrap()]
    });
    for r in &both {
        assert_eq!(r.stdout, "done\n");
        assert!(r.warm, "a run went cold beside a busy warm box: {r:?}");
    }
    assert_eq!(runner.pool_stats().cold_fallbacks_total, cold);
}
