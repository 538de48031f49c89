//! What a call returns: seed 002's result format, extended with the jail's
//! detailed status, artifacts and the error's location.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_jail::{RunOutcome, Status};

use crate::runtimes::Protocol;

/// How a call ended, for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// The handler returned a value.
    Success,
    /// The handler failed: an exception, a syntax error, a missing handler,
    /// a value that is not JSON, a non-zero exit.
    Failed,
    /// The call ran out of wall-clock time.
    Timeout,
    /// The platform stopped the call: a limit (memory, CPU, output), a
    /// forbidden syscall, or an internal error. `jail_status` says which.
    Error,
    /// Cancelled on request while it ran.
    Cancelled,
}

/// The handler's error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandlerError {
    /// Exception type, or a Warden kind (`HandlerNotFound`, `SyntaxError`,
    /// `ResultNotSerializable`, `InvalidEvent`, `memory_limit`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong.
    pub message: String,
    /// Traceback, trimmed of Warden's wrapper frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    /// File of the error, relative to the package, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Line of the error, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

/// Resource figures of one call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Wall-clock time.
    pub duration_ms: f64,
    /// CPU time, user + system.
    pub cpu_time_ms: f64,
    /// Peak memory, MiB.
    pub peak_memory_mb: f64,
    /// Bytes read from storage.
    pub io_read_bytes: u64,
    /// Bytes written to storage.
    pub io_write_bytes: u64,
}

/// A file the handler left under `out/` in its workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Path relative to `out/`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// The content (stored by the caller; not part of the JSON result).
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// The result of one call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandlerResult {
    /// How the call ended.
    pub status: CallStatus,
    /// The jail's detailed status (`ok`, `memory_limit`, `violation`, …).
    pub jail_status: Status,
    /// What the handler printed (capped).
    pub stdout: String,
    /// What the handler printed on stderr (capped).
    pub stderr: String,
    /// stdout passed its cap.
    pub stdout_truncated: bool,
    /// stderr passed its cap.
    pub stderr_truncated: bool,
    /// Exit code of the handler's process, when it exited.
    pub exit_code: Option<i32>,
    /// Signal that killed the handler's process, when one did.
    pub signal: Option<i32>,
    /// Wall-clock time in seconds.
    pub execution_time: f64,
    /// The handler's return value (`success` only).
    pub return_value: Option<Value>,
    /// The handler's error (`failed`, `timeout`, `error`).
    pub error: Option<HandlerError>,
    /// Resource figures.
    pub metrics: Metrics,
    /// Files left under `out/`.
    pub artifacts: Vec<Artifact>,
    /// Served by a warm box.
    pub warm: bool,
    /// The egress proxy's notable records of the call: the connections it
    /// refused (a box granted network that tried a destination it was not
    /// given), and those that named a credential.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<warden_egress::ConnectionRecord>,
}

/// The wrapper's document on descriptor 3.
#[derive(Debug, Deserialize)]
struct WrapperDoc {
    ok: bool,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    error: Option<HandlerError>,
}

fn err(kind: &str, message: impl Into<String>) -> HandlerError {
    HandlerError {
        kind: kind.to_owned(),
        message: message.into(),
        traceback: None,
        file: None,
        line: None,
    }
}

fn tail(bytes: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim_end();
    let start = s
        .char_indices()
        .rev()
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    s[start..].to_owned()
}

/// Decide status, return value and error from what the box did.
pub(crate) fn assemble(
    protocol: Protocol,
    o: RunOutcome,
    result_doc: Option<Vec<u8>>,
    result_cap: usize,
    artifacts: Vec<Artifact>,
    warm: bool,
) -> HandlerResult {
    let ran = matches!(o.status, Status::Ok | Status::NonzeroExit);
    let (status, return_value, error) = if !ran {
        let kind = o.status.as_str();
        let message = match (&o.violation, &o.message) {
            (Some(v), _) => format!(
                "the handler made a forbidden system call ({}) and was stopped",
                v.describe()
            ),
            (None, Some(m)) => m.clone(),
            (None, None) => format!("the call ended with {kind}"),
        };
        let status = match o.status {
            Status::Timeout => CallStatus::Timeout,
            Status::Cancelled => CallStatus::Cancelled,
            _ => CallStatus::Error,
        };
        (status, None, Some(err(kind, message)))
    } else {
        match protocol {
            Protocol::Wrapper => wrapper_result(&o, result_doc, result_cap),
            Protocol::Stdio => stdio_result(&o),
            Protocol::Script => script_result(&o, result_doc),
            Protocol::Raw => {
                if o.status == Status::Ok {
                    (CallStatus::Success, None, None)
                } else {
                    let code = o.exit_code.unwrap_or(-1);
                    (
                        CallStatus::Failed,
                        None,
                        Some(err("ExitStatus", format!("exited with code {code}"))),
                    )
                }
            }
        }
    };
    HandlerResult {
        status,
        jail_status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        stdout_truncated: o.stdout_truncated,
        stderr_truncated: o.stderr_truncated,
        exit_code: o.exit_code,
        signal: o.signal,
        execution_time: o.wall_ms / 1000.0,
        return_value,
        error,
        metrics: Metrics {
            duration_ms: o.wall_ms,
            cpu_time_ms: o.cpu_ms,
            peak_memory_mb: o.peak_memory_bytes as f64 / (1024.0 * 1024.0),
            io_read_bytes: o.io_read_bytes,
            io_write_bytes: o.io_write_bytes,
        },
        artifacts,
        warm,
        egress: Vec::new(),
    }
}

/// What a stdio-protocol call that ran outside the jail (the wasm tier,
/// in-process) did, in the jail's terms.
#[derive(Debug, Clone, Default)]
pub struct StdioRun {
    /// How it ended (`ok`, `nonzero_exit`, `timeout`, `memory_limit`,
    /// `internal_error`, …).
    pub status: Option<Status>,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Why, for statuses other than `ok` and `nonzero_exit`.
    pub message: Option<String>,
    /// Descriptor 1, capped.
    pub stdout: Vec<u8>,
    /// Descriptor 2, capped.
    pub stderr: Vec<u8>,
    /// stdout passed its cap.
    pub stdout_truncated: bool,
    /// stderr passed its cap.
    pub stderr_truncated: bool,
    /// Wall-clock time.
    pub wall_ms: f64,
    /// Peak memory.
    pub peak_memory_bytes: u64,
}

/// The result of a stdio-protocol call that ran outside the jail, decided
/// exactly as for a jailed `shell` or `native` handler: stdout is the
/// value, `{"error": {…}}` on stdout with a non-zero exit is the failure.
pub fn stdio_call(run: StdioRun) -> HandlerResult {
    let o = RunOutcome {
        status: run.status.unwrap_or(Status::InternalError),
        exit_code: run.exit_code,
        signal: None,
        wall_ms: run.wall_ms,
        cpu_ms: run.wall_ms,
        peak_memory_bytes: run.peak_memory_bytes,
        io_read_bytes: 0,
        io_write_bytes: 0,
        stdout: run.stdout,
        stderr: run.stderr,
        stdout_truncated: run.stdout_truncated,
        stderr_truncated: run.stderr_truncated,
        violation: None,
        message: run.message,
        box_id: 0,
        sandbox: warden_jail::SandboxReport {
            sandboxed: false,
            user_namespace: false,
            cgroup: "none".into(),
            landlock_abi: 0,
            seccomp_profile: "none".into(),
            uid: 0,
        },
    };
    assemble(Protocol::Stdio, o, None, 0, Vec::new(), false)
}

type Decision = (CallStatus, Option<Value>, Option<HandlerError>);

fn wrapper_result(o: &RunOutcome, doc: Option<Vec<u8>>, cap: usize) -> Decision {
    let Some(bytes) = doc.filter(|d| !d.is_empty()) else {
        let why = match o.exit_code {
            Some(0) => {
                "the handler's process ended without returning (did it call os._exit or process.exit?)"
                    .to_owned()
            }
            Some(c) => format!(
                "the handler's process exited with code {c} before returning: {}",
                tail(&o.stderr, 500)
            ),
            None => "the handler's process ended without a result".to_owned(),
        };
        return (CallStatus::Failed, None, Some(err("NoResult", why)));
    };
    if bytes.len() > cap {
        return (
            CallStatus::Failed,
            None,
            Some(err(
                "ResultTooLarge",
                format!("the return value is larger than {cap} bytes once encoded as JSON"),
            )),
        );
    }
    match serde_json::from_slice::<WrapperDoc>(&bytes) {
        Ok(WrapperDoc { ok: true, value, .. }) => (CallStatus::Success, Some(value), None),
        Ok(WrapperDoc {
            ok: false,
            error: Some(e),
            ..
        }) => (CallStatus::Failed, None, Some(e)),
        Ok(WrapperDoc {
            ok: false,
            error: None,
            ..
        })
        | Err(_) => (
            CallStatus::Failed,
            None,
            Some(err(
                "NoResult",
                "the result channel held something other than the wrapper's document",
            )),
        ),
    }
}

/// A program's exit status is its result; a wrapper document appears only
/// when Warden's runner could not start the program (and says why).
fn script_result(o: &RunOutcome, doc: Option<Vec<u8>>) -> Decision {
    let runner_error = doc
        .filter(|d| !d.is_empty())
        .and_then(|d| serde_json::from_slice::<WrapperDoc>(&d).ok())
        .and_then(|d| d.error);
    if let Some(e) = runner_error {
        return (CallStatus::Failed, None, Some(e));
    }
    if o.status == Status::Ok {
        return (CallStatus::Success, None, None);
    }
    let code = o.exit_code.unwrap_or(-1);
    (
        CallStatus::Failed,
        None,
        Some(err("ExitStatus", format!("exited with code {code}"))),
    )
}

fn stdio_result(o: &RunOutcome) -> Decision {
    let text = String::from_utf8_lossy(&o.stdout);
    let parsed: Option<Value> = serde_json::from_str(text.trim()).ok();
    if o.status == Status::Ok {
        if o.stdout_truncated {
            return (
                CallStatus::Failed,
                None,
                Some(err("ResultTooLarge", "stdout (the result) passed the output cap")),
            );
        }
        let value = parsed.unwrap_or_else(|| Value::String(text.trim_end_matches('\n').to_owned()));
        return (CallStatus::Success, Some(value), None);
    }
    // A structured error printed by an SDK: {"error": {"type", "message"}}.
    if let Some(e) = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| serde_json::from_value::<HandlerError>(e.clone()).ok())
    {
        return (CallStatus::Failed, None, Some(e));
    }
    let code = o.exit_code.unwrap_or(-1);
    let msg = match tail(&o.stderr, 500) {
        t if t.is_empty() => format!("exited with code {code}"),
        t => format!("exited with code {code}: {t}"),
    };
    (CallStatus::Failed, None, Some(err("ExitStatus", msg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: Status, code: Option<i32>, stdout: &str) -> RunOutcome {
        RunOutcome {
            status,
            exit_code: code,
            signal: None,
            message: None,
            violation: None,
            wall_ms: 12.0,
            cpu_ms: 10.0,
            peak_memory_bytes: 2 << 20,
            io_read_bytes: 0,
            io_write_bytes: 0,
            stdout: stdout.as_bytes().to_vec(),
            stderr: b"trace\n".to_vec(),
            stdout_truncated: false,
            stderr_truncated: false,
            box_id: 0,
            sandbox: warden_jail::SandboxReport {
                sandboxed: true,
                user_namespace: false,
                cgroup: "v1".into(),
                landlock_abi: 7,
                seccomp_profile: "default".into(),
                uid: 60000,
            },
        }
    }

    #[test]
    fn wrapper_documents_decide_success_and_failure() {
        let ok = assemble(
            Protocol::Wrapper,
            outcome(Status::Ok, Some(0), "printed"),
            Some(br#"{"ok":true,"value":{"a":1}}"#.to_vec()),
            1 << 20,
            vec![],
            false,
        );
        assert_eq!(ok.status, CallStatus::Success);
        assert_eq!(ok.return_value, Some(serde_json::json!({"a": 1})));
        assert_eq!(ok.stdout, "printed");
        assert_eq!(ok.metrics.peak_memory_mb, 2.0);
        let failed = assemble(
            Protocol::Wrapper,
            outcome(Status::Ok, Some(0), ""),
            Some(br#"{"ok":false,"error":{"type":"KeyError","message":"'x'","line":3}}"#.to_vec()),
            1 << 20,
            vec![],
            false,
        );
        assert_eq!(failed.status, CallStatus::Failed);
        assert_eq!(failed.error.as_ref().unwrap().kind, "KeyError");
        assert_eq!(failed.error.as_ref().unwrap().line, Some(3));
        let none = assemble(
            Protocol::Wrapper,
            outcome(Status::Ok, Some(0), ""),
            None,
            1 << 20,
            vec![],
            false,
        );
        assert_eq!(none.error.unwrap().kind, "NoResult");
        let big = assemble(
            Protocol::Wrapper,
            outcome(Status::Ok, Some(0), ""),
            Some(vec![b' '; 100]),
            10,
            vec![],
            false,
        );
        assert_eq!(big.error.unwrap().kind, "ResultTooLarge");
    }

    #[test]
    fn jail_statuses_become_timeout_or_error() {
        let mut o = outcome(Status::Timeout, None, "");
        o.message = Some("wall-clock limit".into());
        let t = assemble(Protocol::Wrapper, o, None, 1 << 20, vec![], true);
        assert_eq!(t.status, CallStatus::Timeout);
        assert_eq!(t.error.unwrap().kind, "timeout");
        let mut o = outcome(Status::Violation, None, "");
        o.violation = Some(warden_jail::Violation {
            syscall: "ptrace".into(),
            nr: 101,
            abi: std::env::consts::ARCH.into(),
        });
        let v = assemble(Protocol::Stdio, o, None, 1 << 20, vec![], false);
        assert_eq!(v.status, CallStatus::Error);
        assert_eq!(v.jail_status, Status::Violation);
        assert!(v.error.unwrap().message.contains("`ptrace`"));
    }

    #[test]
    fn stdio_results_parse_json_or_keep_text() {
        let j = assemble(
            Protocol::Stdio,
            outcome(Status::Ok, Some(0), "{\"n\": 2}\n"),
            None,
            0,
            vec![],
            false,
        );
        assert_eq!(j.return_value, Some(serde_json::json!({"n": 2})));
        let s = assemble(
            Protocol::Stdio,
            outcome(Status::Ok, Some(0), "hello\n"),
            None,
            0,
            vec![],
            false,
        );
        assert_eq!(s.return_value, Some(Value::String("hello".into())));
        let e = assemble(
            Protocol::Stdio,
            outcome(
                Status::NonzeroExit,
                Some(1),
                r#"{"error":{"type":"ValidationError","message":"name is required"}}"#,
            ),
            None,
            0,
            vec![],
            false,
        );
        assert_eq!(e.status, CallStatus::Failed);
        assert_eq!(e.error.unwrap().kind, "ValidationError");
        let x = assemble(
            Protocol::Stdio,
            outcome(Status::NonzeroExit, Some(3), ""),
            None,
            0,
            vec![],
            false,
        );
        assert_eq!(x.error.unwrap().message, "exited with code 3: trace");
    }
}
