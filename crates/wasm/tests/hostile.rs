//! The wasm tier against hostile modules, each written in WebAssembly text:
//! every attack ends as a value (`Timeout`, `MemoryLimit`, a trap, a refused
//! module) and the engine keeps serving the next call.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warden_wasm::{Call, CompileError, End, Engine, EngineConfig, Stream, TrapKind};

const WASI: &str = "wasi_snapshot_preview1";

fn engine() -> Engine {
    Engine::new(EngineConfig {
        max_instances: 16,
        max_memory_bytes: 256 << 20,
        ..EngineConfig::default()
    })
    .unwrap()
}

fn compile(engine: &Engine, wat: &str) -> Result<warden_wasm::Module, CompileError> {
    engine.compile(&wat::parse_str(wat).expect("the fixture is valid WebAssembly text"))
}

fn call(stdin: &[u8]) -> Call<'_> {
    Call {
        stdin,
        timeout: Duration::from_secs(5),
        memory_bytes: 64 << 20,
        output_bytes: 1 << 20,
        tap: None,
    }
}

/// Imports of fd_read, fd_write and proc_exit, and one page of memory.
fn prelude() -> String {
    prelude_with("")
}

/// [`prelude`] with more imports.
fn prelude_with(imports: &str) -> String {
    format!(
        r#"
  (import "{WASI}" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "{WASI}" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "{WASI}" "proc_exit" (func $proc_exit (param i32)))
  {imports}
  (memory (export "memory") 1)
"#
    )
}

/// Copies stdin to stdout.
fn echo() -> String {
    format!(
        r#"(module {}
  (func (export "_start") (local $n i32)
    (loop $again
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (i32.const 1024))
      (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $n (i32.load (i32.const 8)))
      (if (i32.gt_u (local.get $n) (i32.const 0))
        (then
          (i32.store (i32.const 4) (local.get $n))
          (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))
          (br $again))))))"#,
        prelude()
    )
}

/// Writes the decimal digits of `$v` (0..=99) to stdout.
fn print_number() -> &'static str {
    r#"
  (func $print (param $v i32)
    (i32.store8 (i32.const 200) (i32.add (i32.const 48) (i32.div_u (local.get $v) (i32.const 10))))
    (i32.store8 (i32.const 201) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
    (i32.store (i32.const 0) (i32.const 200))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12))))
"#
}

#[test]
fn the_event_goes_in_on_stdin_and_the_result_comes_out_on_stdout() {
    let e = engine();
    let m = compile(&e, &echo()).unwrap();
    let event = br#"{"name": "Ada"}"#;
    let r = e.run(&m, &call(event));
    assert_eq!(r.end, End::Exited(0));
    assert_eq!(r.stdout, event);
    assert!(r.peak_memory_bytes >= 64 << 10, "one page at least");
    // And the output reaches a tap as it is written.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut c = call(b"streamed");
    c.tap = Some(Arc::new(move |s: Stream, d: &[u8]| {
        sink.lock().unwrap().push((s, d.to_vec()));
    }));
    e.run(&m, &c);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(Stream::Stdout, b"streamed".to_vec())]
    );
}

#[test]
fn an_infinite_loop_times_out_at_the_wall_clock() {
    let e = engine();
    let m = compile(
        &e,
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))"#,
    )
    .unwrap();
    let mut c = call(b"");
    c.timeout = Duration::from_millis(200);
    let started = Instant::now();
    let r = e.run(&m, &c);
    assert_eq!(r.end, End::Timeout);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(
        took < Duration::from_secs(2),
        "stopped within ticks of the deadline: {took:?}"
    );
}

#[test]
fn a_huge_memory_grow_is_refused_and_ends_memory_limit() {
    let e = engine();
    // Asks for 4 GiB less a page; traps when refused, as a failed malloc does.
    let m = compile(
        &e,
        r#"(module (memory (export "memory") 1)
             (func (export "_start")
               (if (i32.eq (memory.grow (i32.const 65535)) (i32.const -1)) (then unreachable))))"#,
    )
    .unwrap();
    let r = e.run(&m, &call(b""));
    assert_eq!(
        r.end,
        End::MemoryLimit {
            asked: 65536 << 16,
            cap: 64 << 20
        }
    );
    // A module that asks, is refused and copes, succeeds.
    let m = compile(
        &e,
        r#"(module (memory (export "memory") 1)
             (func (export "_start") (drop (memory.grow (i32.const 65535)))))"#,
    )
    .unwrap();
    assert_eq!(e.run(&m, &call(b"")).end, End::Exited(0));
    // So does one that grows within its cap.
    let m = compile(
        &e,
        r#"(module (memory (export "memory") 1)
             (func (export "_start")
               (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))))"#,
    )
    .unwrap();
    let r = e.run(&m, &call(b""));
    assert_eq!(r.end, End::Exited(0));
    assert_eq!(r.peak_memory_bytes, 101 << 16);
}

#[test]
fn an_initial_memory_over_the_cap_does_not_instantiate() {
    let e = engine();
    // 2,000 pages: 125 MiB, over the call's 64 MiB.
    let m = compile(
        &e,
        r#"(module (memory (export "memory") 2000) (func (export "_start")))"#,
    )
    .unwrap();
    let r = e.run(&m, &call(b""));
    assert!(
        matches!(r.end, End::MemoryLimit { asked, .. } if asked == 2000 << 16),
        "{:?}",
        r.end
    );
}

#[test]
fn deep_recursion_traps_as_a_stack_overflow() {
    let e = engine();
    let m = compile(
        &e,
        r#"(module (memory (export "memory") 1)
             (func $down (param i64) (call $down (i64.add (local.get 0) (i64.const 1))))
             (func (export "_start") (call $down (i64.const 0))))"#,
    )
    .unwrap();
    let r = e.run(&m, &call(b""));
    match r.end {
        End::Trapped { kind, message, .. } => {
            assert_eq!(kind, TrapKind::StackOverflow);
            assert!(message.contains("call stack exhausted"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The engine goes on serving.
    let echo = compile(&e, &echo()).unwrap();
    assert_eq!(e.run(&echo, &call(b"after")).stdout, b"after");
}

#[test]
fn a_module_importing_what_it_was_not_granted_is_refused_by_name() {
    let e = engine();
    let err = compile(
        &e,
        r#"(module (import "env" "system" (func (param i32) (result i32)))
             (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap_err();
    assert!(
        matches!(&err, CompileError::Import { module, name, .. } if module == "env" && name == "system"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`env.system`"), "{err}");
    // A WASI name that does not exist.
    let err = compile(
        &e,
        &format!(
            r#"(module (import "{WASI}" "sock_open" (func (param i32) (result i32)))
                 (memory (export "memory") 1) (func (export "_start")))"#
        ),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a WASI preview 1 function"), "{err}");
    // A granted name with the wrong type.
    let err = compile(
        &e,
        &format!(
            r#"(module (import "{WASI}" "fd_write" (func (param i32)))
                 (memory (export "memory") 1) (func (export "_start")))"#
        ),
    )
    .unwrap_err();
    assert!(
        matches!(&err, CompileError::Import { name, why, .. } if name == "fd_write" && why.contains("wrong type")),
        "{err:?}"
    );
    // Importing a memory (to share the host's?) is refused too.
    let err = compile(
        &e,
        &format!(r#"(module (import "{WASI}" "memory" (memory 1)) (func (export "_start")))"#),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("only functions may be imported"),
        "{err}"
    );
}

#[test]
fn files_and_sockets_answer_not_capable_and_touch_nothing() {
    let e = engine();
    // path_open(dirfd 3, "/etc/passwd") then exit with its errno.
    let m = compile(
        &e,
        &format!(
            r#"(module {}
  (data (i32.const 100) "/etc/passwd")
  (func (export "_start")
    (if (i32.ne (call $accept (i32.const 3) (i32.const 0) (i32.const 0)) (i32.const 76)) (then unreachable))
    (call $proc_exit (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 11)
                                 (i32.const 0) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 0)))))"#,
            prelude_with(&format!(
                r#"(import "{WASI}" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "{WASI}" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))"#
            ))
        ),
    )
    .unwrap();
    assert_eq!(e.run(&m, &call(b"")).end, End::Exited(76));
}

#[test]
fn exit_codes_traps_and_bad_pointers_are_reported() {
    let e = engine();
    let exit3 = compile(
        &e,
        &format!(
            r#"(module {} (func (export "_start") (call $proc_exit (i32.const 3))))"#,
            prelude()
        ),
    )
    .unwrap();
    assert_eq!(e.run(&exit3, &call(b"")).end, End::Exited(3));
    let trap = compile(
        &e,
        r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#,
    )
    .unwrap();
    match e.run(&trap, &call(b"")).end {
        End::Trapped {
            kind: TrapKind::Other,
            message,
            ..
        } => {
            assert!(message.contains("unreachable"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // An iovec array outside memory: EFAULT (21), and no host fault.
    let bad = compile(
        &e,
        &format!(
            r#"(module {} (func (export "_start")
                 (call $proc_exit (call $fd_write (i32.const 1) (i32.const -16) (i32.const 1) (i32.const 12)))))"#,
            prelude()
        ),
    )
    .unwrap();
    assert_eq!(e.run(&bad, &call(b"")).end, End::Exited(21));
}

#[test]
fn every_call_gets_a_fresh_instance() {
    let e = engine();
    // Counts its calls in a global and in memory: always 1.
    let m = compile(
        &e,
        &format!(
            r#"(module {} (global $calls (mut i32) (i32.const 0)) {}
  (func (export "_start")
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store (i32.const 300) (i32.add (i32.load (i32.const 300)) (i32.const 1)))
    (call $print (i32.add (global.get $calls) (i32.mul (i32.const 10) (i32.load (i32.const 300)))))))"#,
            prelude(),
            print_number()
        ),
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(e.run(&m, &call(b"")).stdout, b"11");
    }
}

#[test]
fn output_past_the_cap_is_dropped_and_marked() {
    let e = engine();
    let m = compile(&e, &echo()).unwrap();
    let mut c = call(&[b'x'; 5000]);
    c.output_bytes = 1000;
    let r = e.run(&m, &c);
    assert_eq!(r.end, End::Exited(0));
    assert_eq!(r.stdout.len(), 1000);
    assert!(r.stdout_truncated && !r.stderr_truncated);
}

#[test]
fn what_is_not_a_command_module_is_refused_with_the_reason() {
    let e = engine();
    let err = e.compile(b"not wasm at all").unwrap_err();
    assert!(matches!(err, CompileError::Invalid(_)), "{err:?}");
    // A component's preamble.
    let err = e.compile(b"\0asm\x0d\x00\x01\x00").unwrap_err();
    assert_eq!(err, CompileError::Component);
    let err = compile(
        &e,
        r#"(module (memory (export "memory") 1) (func (export "main")))"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("no `_start` export"), "{err}");
    let err = compile(&e, r#"(module (func (export "_start")))"#).unwrap_err();
    assert!(err.to_string().contains("no `memory` export"), "{err}");
}

#[test]
fn a_full_pool_fails_the_call_not_the_server() {
    let e = Engine::new(EngineConfig {
        max_instances: 1,
        max_memory_bytes: 64 << 20,
        ..EngineConfig::default()
    })
    .unwrap();
    let spin = compile(
        &e,
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))"#,
    )
    .unwrap();
    let echo = compile(&e, &echo()).unwrap();
    std::thread::scope(|s| {
        let spinning = s.spawn(|| {
            let mut c = call(b"");
            c.timeout = Duration::from_millis(600);
            e.run(&spin, &c).end
        });
        std::thread::sleep(Duration::from_millis(200));
        let r = e.run(&echo, &call(b"x"));
        assert!(matches!(&r.end, End::Failed(m) if !m.is_empty()), "{:?}", r.end);
        assert_eq!(spinning.join().unwrap(), End::Timeout);
    });
    // The slot is free again.
    assert_eq!(e.run(&echo, &call(b"x")).stdout, b"x");
}

#[test]
fn calls_run_in_parallel_without_sharing_anything() {
    let e = engine();
    let m = compile(&e, &echo()).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (e, m) = (&e, &m);
                s.spawn(move || {
                    for j in 0..20 {
                        let input = format!("{i}-{j}");
                        assert_eq!(e.run(m, &call(input.as_bytes())).stdout, input.as_bytes());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}
