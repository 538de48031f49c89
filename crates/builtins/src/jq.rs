//! `warden.builtin.jq`: a jq program run over a JSON input, with `jaq`.
//!
//! The program comes from the caller, so it runs on a thread of its own
//! with the call's deadline: past it the call ends `timeout` at once and the
//! thread is left to finish alone (a thread cannot be stopped), and no new
//! program starts while [`MAX_OVERDUE`] are still running. Definitions that
//! call themselves (directly or through an enclosing definition) are refused
//! before running, because jaq recurses on the native stack and a stack
//! overflow would end the server. Of jq's standard library, `env` (the
//! server's environment), `halt` (jaq answers it by exiting the process) and
//! `input`/`debug`/`stderr` (the server's own streams) are not available.
//!
//! Must never: exit, panic or overflow the stack on a caller's program;
//! reveal the server's environment; load a module from disk.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};
use jaq_json::Val;
use serde_json::{Value, json};

use crate::{Builtin, Context, Failure, Limits, Spec, capped};

/// Longest program, bytes.
const MAX_PROGRAM: usize = 10_000;

/// Most results one call may produce.
const MAX_RESULTS: usize = 10_000;

/// Programs still running past their deadline beyond which no new one
/// starts.
const MAX_OVERDUE: usize = 4;

/// Stack of a program's thread (reserved, touched only as used).
const STACK_BYTES: usize = 64 << 20;

/// Functions of jq's standard library a caller may not use.
const WITHHELD: &[&str] = &["env", "halt", "input", "inputs", "debug_empty", "stderr_empty"];

/// Programs running now, on time or not.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Programs whose caller stopped waiting and that still run.
static OVERDUE: AtomicUsize = AtomicUsize::new(0);

/// The jq built-in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Jq;

impl Builtin for Jq {
    fn spec(&self) -> Spec {
        Spec {
            code: "warden.builtin.jq",
            name: "jq transform",
            version: "1.0.0",
            description: "Runs a jq program (jaq's dialect) over a JSON input and returns every output.",
            input_schema: json!({
                "type": "object",
                "required": ["program"],
                "additionalProperties": false,
                "properties": {
                    "program": {"type": "string", "minLength": 1, "maxLength": MAX_PROGRAM,
                                "description": "The jq program, e.g. `.items | map(.price) | add`."},
                    "input": {"description": "The value the program reads as `.` (null if absent)."},
                    "vars": {"type": "object", "description": "Values bound to `$name` for each key `name`.",
                             "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}}
                }
            }),
            output_schema: json!({
                "type": "object",
                "required": ["results"],
                "properties": {"results": {"type": "array", "description": "Every output of the program, in order."}}
            }),
            timeout_ms: 5_000,
        }
    }

    fn call(&self, event: &Value, limits: Limits, _cx: &mut Context<'_>) -> Result<Value, Failure> {
        let program = event
            .get("program")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("`program` must be a string"))?
            .to_owned();
        if program.len() > MAX_PROGRAM {
            return Err(invalid(format!("`program` is longer than {MAX_PROGRAM} bytes")));
        }
        let input = event.get("input").cloned().unwrap_or(Value::Null);
        let vars: Vec<(String, Value)> = match event.get("vars") {
            None => Vec::new(),
            Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Some(_) => return Err(invalid("`vars` must be an object")),
        };
        if OVERDUE.load(Ordering::Acquire) >= MAX_OVERDUE {
            return Err(Failure::Timeout(format!(
                "{MAX_OVERDUE} jq programs are still running past their deadline; try again later"
            )));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        RUNNING.fetch_add(1, Ordering::AcqRel);
        let spawned = std::thread::Builder::new()
            .name("warden-jq".into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let out = run(&program, input, &vars);
                let _ = tx.send(out);
                RUNNING.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            RUNNING.fetch_sub(1, Ordering::AcqRel);
            return Err(Failure::Timeout(
                "no thread could be started for the program".into(),
            ));
        }
        match rx.recv_timeout(limits.timeout) {
            Ok(out) => capped(json!({ "results": out? }), limits.output_bytes),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                OVERDUE.fetch_add(1, Ordering::AcqRel);
                // Counted down when the thread ends, if it ever does.
                let _ = std::thread::Builder::new()
                    .name("warden-jq-overdue".into())
                    .spawn(move || {
                        let _ = rx.recv();
                        OVERDUE.fetch_sub(1, Ordering::AcqRel);
                    });
                Err(Failure::Timeout(format!(
                    "the program ran longer than {} ms",
                    limits.timeout.as_millis()
                )))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Failure::Handler {
                kind: "JqError",
                message: "the program's thread ended without a result".into(),
            }),
        }
    }
}

/// What a withheld function does instead: fail, naming why.
fn withheld<'a>(_: jaq_core::Cv<'a, data::JustLut<Val>>) -> jaq_core::ValXs<'a, Val> {
    jaq_core::box_iter::box_once(Err(jaq_core::Exn::from(jaq_core::Error::str(
        "this function is not available in the jq built-in: it would reach the server's environment or streams",
    ))))
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::Handler {
        kind: "InvalidEvent",
        message: message.into(),
    }
}

fn compile_error(message: impl Into<String>) -> Failure {
    Failure::Handler {
        kind: "JqCompileError",
        message: message.into(),
    }
}

/// Line and column (1-based) of `part`, a slice of `code`.
fn at(code: &str, part: &str) -> String {
    let (base, at) = (code.as_ptr() as usize, part.as_ptr() as usize);
    if at < base || at + part.len() > base + code.len() {
        return "in jq's standard library".into();
    }
    let start = at - base;
    let before = &code[..start.min(code.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}

fn to_val(v: &Value) -> Result<Val, Failure> {
    jaq_json::read::parse_single(v.to_string().as_bytes())
        .map_err(|e| invalid(format!("the input could not be read by jq: {e}")))
}

fn from_val(v: &Val) -> Result<Value, Failure> {
    serde_json::from_str(&v.to_string()).map_err(|_| Failure::Handler {
        kind: "JqError",
        message: format!("the program produced a value JSON cannot hold: {v}"),
    })
}

/// Compile and run `code` on `input` with `vars` bound.
fn run(code: &str, input: Value, vars: &[(String, Value)]) -> Result<Vec<Value>, Failure> {
    let input = to_val(&input)?;
    let names: Vec<String> = vars.iter().map(|(k, _)| format!("${k}")).collect();
    let values = vars
        .iter()
        .map(|(_, v)| to_val(v))
        .collect::<Result<Vec<_>, _>>()?;
    let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
    let funs = jaq_core::funs::<data::JustLut<Val>>()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .map(|(name, args, f)| {
            if WITHHELD.contains(&name) {
                jaq_core::native::run::<data::JustLut<Val>>((
                    name,
                    args,
                    withheld as jaq_core::RunPtr<data::JustLut<Val>>,
                ))
            } else {
                (name, args, f)
            }
        });
    let arena = Arena::default();
    let modules = Loader::new(defs)
        .load(&arena, File { code, path: () })
        .map_err(|errs| compile_error(load_errors(code, errs)))?;
    if let Some(term) = jaq_core::load::parse(code, |p| p.term())
        && let Some(name) = recursive(&term, &mut Vec::new())
    {
        return Err(compile_error(format!(
            "`{name}` calls itself: recursive definitions are not allowed in the jq built-in (use `recurse`, `until`, `reduce` or `foreach`)"
        )));
    }
    let filter = Compiler::default()
        .with_funs(funs)
        .with_global_vars(names.iter().map(String::as_str))
        .compile(modules)
        .map_err(|errs| {
            let why: Vec<String> = errs
                .into_iter()
                .flat_map(|(_, es)| es)
                .map(|(name, undefined)| format!("undefined {undefined:?} `{name}` at {}", at(code, name)))
                .collect();
            compile_error(why.join("; ").to_lowercase())
        })?;
    let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new(values));
    let mut out = Vec::new();
    for r in filter.id.run((ctx, input)) {
        match r {
            Ok(v) => {
                if out.len() == MAX_RESULTS {
                    return Err(Failure::Handler {
                        kind: "JqError",
                        message: format!("the program produced more than {MAX_RESULTS} results"),
                    });
                }
                out.push(from_val(&v)?);
            }
            Err(e) => {
                let message = match e.get_err() {
                    Ok(e) => e.to_string(),
                    Err(_) => "the program stopped with an exception jq cannot report".into(),
                };
                return Err(Failure::Handler {
                    kind: "JqError",
                    message,
                });
            }
        }
    }
    Ok(out)
}

fn load_errors(code: &str, errs: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let mut why = Vec::new();
    for (_, e) in errs {
        match e {
            Error::Io(es) => why.extend(
                es.into_iter()
                    .map(|(path, e)| format!("cannot load `{path}`: {e}")),
            ),
            Error::Lex(es) => why.extend(es.into_iter().map(|(expect, found)| {
                use jaq_core::load::lex::Expect;
                let what = match expect {
                    Expect::Digit => "a digit",
                    Expect::Ident => "an identifier",
                    Expect::Delim(_) => "a closing delimiter",
                    Expect::Escape => "an escape sequence",
                    Expect::Unicode => "a unicode escape",
                    Expect::Token => "a token",
                    _ => "something else",
                };
                format!("expected {what} at {}", at(code, found))
            })),
            Error::Parse(es) => why.extend(
                es.into_iter()
                    .map(|(expect, found)| format!("expected {} at {}", expect.as_str(), at(code, found))),
            ),
        }
    }
    if why.is_empty() {
        "the program does not parse".into()
    } else {
        why.join("; ")
    }
}

/// The name of a definition that calls itself (or an enclosing definition
/// of the same name and arity), if any. `scope` holds the enclosing
/// definitions.
fn recursive<'s>(t: &Term<&'s str>, scope: &mut Vec<(&'s str, usize)>) -> Option<&'s str> {
    let all =
        |ts: &[Term<&'s str>], scope: &mut Vec<(&'s str, usize)>| ts.iter().find_map(|t| recursive(t, scope));
    match t {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Break(_) | Term::Var(_) => None,
        Term::Str(_, parts) => parts.iter().find_map(|p| match p {
            jaq_core::load::lex::StrPart::Term(t) => recursive(t, scope),
            _ => None,
        }),
        Term::Arr(t) => t.as_deref().and_then(|t| recursive(t, scope)),
        Term::Obj(kvs) => kvs
            .iter()
            .find_map(|(k, v)| recursive(k, scope).or_else(|| v.as_ref().and_then(|v| recursive(v, scope)))),
        Term::Neg(t) | Term::Label(_, t) => recursive(t, scope),
        Term::BinOp(l, op, r) => recursive(l, scope)
            .or_else(|| match op {
                BinaryOp::Pipe(Some(p)) => pattern(p, scope),
                _ => None,
            })
            .or_else(|| recursive(r, scope)),
        Term::Fold(_, xs, p, args) => recursive(xs, scope)
            .or_else(|| pattern(p, scope))
            .or_else(|| all(args, scope)),
        Term::TryCatch(t, c) => {
            recursive(t, scope).or_else(|| c.as_deref().and_then(|c| recursive(c, scope)))
        }
        Term::IfThenElse(branches, otherwise) => branches
            .iter()
            .find_map(|(c, t)| recursive(c, scope).or_else(|| recursive(t, scope)))
            .or_else(|| otherwise.as_deref().and_then(|o| recursive(o, scope))),
        Term::Def(defs, rest) => defs
            .iter()
            .find_map(|d: &Def<&'s str, Term<&'s str>>| {
                scope.push((d.name, d.args.len()));
                let found = recursive(&d.body, scope);
                scope.pop();
                found
            })
            .or_else(|| recursive(rest, scope)),
        Term::Call(name, args) => {
            if scope.contains(&(*name, args.len())) {
                return Some(name);
            }
            all(args, scope)
        }
        Term::Path(t, path) => recursive(t, scope).or_else(|| {
            path.0.iter().find_map(|(part, _)| match part {
                jaq_core::path::Part::Index(i) => recursive(i, scope),
                jaq_core::path::Part::Range(a, b) => a
                    .as_ref()
                    .and_then(|a| recursive(a, scope))
                    .or_else(|| b.as_ref().and_then(|b| recursive(b, scope))),
            })
        }),
    }
}

fn pattern<'s>(p: &Pattern<&'s str>, scope: &mut Vec<(&'s str, usize)>) -> Option<&'s str> {
    match p {
        Pattern::Var(_) => None,
        Pattern::Arr(ps) => ps.iter().find_map(|p| pattern(p, scope)),
        Pattern::Obj(kvs) => kvs
            .iter()
            .find_map(|(k, p)| recursive(k, scope).or_else(|| pattern(p, scope))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> Limits {
        Limits {
            timeout: Duration::from_secs(5),
            output_bytes: 1 << 20,
        }
    }

    fn jq(event: Value) -> Result<Value, Failure> {
        Jq.call(&event, limits(), &mut Context::default())
    }

    #[test]
    fn programs_transform_their_input_and_see_their_vars() {
        assert_eq!(
            jq(
                json!({"program": ".items | map(.price) | add", "input": {"items": [{"price": 2}, {"price": 3.5}]}})
            ),
            Ok(json!({"results": [5.5]}))
        );
        assert_eq!(
            jq(json!({"program": ".[] | select(. > $min)", "input": [1, 5, 9], "vars": {"min": 4}})),
            Ok(json!({"results": [5, 9]}))
        );
        assert_eq!(
            jq(json!({"program": "[$a, $b]", "vars": {"a": 1, "b": "two"}})),
            Ok(json!({"results": [[1, "two"]]}))
        );
        assert_eq!(
            jq(json!({"program": "{x: (.a | ascii_upcase)} | tojson", "input": {"a": "é"}})),
            Ok(json!({"results": ["{\"x\":\"é\"}"]}))
        );
    }

    #[test]
    fn errors_name_what_and_where() {
        let Err(Failure::Handler { kind, message }) = jq(json!({"program": ".a | ("})) else {
            panic!("a syntax error must fail")
        };
        assert_eq!(kind, "JqCompileError");
        assert!(message.contains("line 1"), "{message}");
        let Err(Failure::Handler { kind, message }) = jq(json!({"program": "nosuchfn(1)"})) else {
            panic!("an undefined function must fail")
        };
        assert_eq!(kind, "JqCompileError");
        assert!(message.contains("nosuchfn"), "{message}");
        let Err(Failure::Handler { kind, message }) = jq(json!({"program": ".a + 1", "input": {"a": "x"}}))
        else {
            panic!("a runtime error must fail")
        };
        assert_eq!(kind, "JqError");
        assert!(message.contains("cannot"), "{message}");
    }

    #[test]
    fn the_servers_environment_and_exits_are_out_of_reach() {
        for program in [
            "env",
            "$ENV",
            "halt",
            "halt_error",
            "input",
            "debug",
            "stderr",
            "include \"x\"; .",
        ] {
            let r = jq(json!({"program": program, "input": 1}));
            let Err(Failure::Handler { kind, message }) = r else {
                panic!("{program}: {r:?}")
            };
            assert!(kind == "JqCompileError" || kind == "JqError", "{program}: {kind}");
            assert!(
                !message.contains("PATH") && !message.contains("CARGO"),
                "{program}: {message}"
            );
        }
    }

    #[test]
    fn recursion_is_refused_before_it_runs_and_loops_time_out() {
        for program in [
            "def f: 1 + f; f",
            "def f(g): g | f(g); f(.)",
            "def outer: def inner: outer; inner; outer",
            "[.[] | def r: r; r]",
        ] {
            let r = jq(json!({"program": program, "input": [1]}));
            let Err(Failure::Handler { kind, message }) = r else {
                panic!("{program}: {r:?}")
            };
            assert_eq!(kind, "JqCompileError", "{program}");
            assert!(message.contains("calls itself"), "{program}: {message}");
        }
        // Definitions that do not call themselves are fine.
        assert_eq!(
            jq(json!({"program": "def inc: . + 1; def twice(f): f | f; twice(inc)", "input": 1})),
            Ok(json!({"results": [3]}))
        );
        let started = std::time::Instant::now();
        let r = Jq.call(
            &json!({"program": "last(repeat(1))"}),
            Limits {
                timeout: Duration::from_millis(200),
                output_bytes: 1 << 20,
            },
            &mut Context::default(),
        );
        assert!(matches!(r, Err(Failure::Timeout(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn outputs_are_capped() {
        let r = Jq.call(
            &json!({"program": "[range(100000)]"}),
            Limits {
                timeout: Duration::from_secs(5),
                output_bytes: 1000,
            },
            &mut Context::default(),
        );
        assert_eq!(r, Err(Failure::OutputLimit(1000)));
        let r = jq(json!({"program": "range(20000)"}));
        assert!(
            matches!(r, Err(Failure::Handler { kind: "JqError", .. })),
            "{r:?}"
        );
    }
}
