//! Executions: the record of one call and its stored result, defined once.
//!
//! The store keeps an [`Execution`] as columns and its [`ExecutionResult`]
//! as one JSON document; the server builds both from the runtime's result
//! and renders them as API views. Status, mode and error kind are enums here
//! and strings only at those edges (the database and the HTTP API), where an
//! unknown name is an error, never a default.

use serde::{Deserialize, Serialize};
use serde_json::Value;

names! {
    /// State of an execution.
    pub enum ExecutionStatus {
        /// Accepted and recorded; not started.
        Queued = "queued",
        /// Running.
        Running = "running",
        /// The handler returned a value.
        Success = "success",
        /// The handler failed.
        Failed = "failed",
        /// Wall-clock limit.
        Timeout = "timeout",
        /// The platform stopped it (limit, violation, output schema, internal).
        Error = "error",
        /// The server stopped (crash, restart) while it was running.
        Interrupted = "interrupted",
        /// Someone cancelled it while it ran.
        Cancelled = "cancelled",
    }
}

impl ExecutionStatus {
    /// The execution will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, ExecutionStatus::Queued | ExecutionStatus::Running)
    }
}

names! {
    /// How the caller asked for an execution.
    pub enum ExecutionMode {
        /// The request waits for the result.
        Sync = "sync",
        /// The request is answered at once; the execution runs from the
        /// durable queue.
        Async = "async",
    }
}

names! {
    /// Why an execution did not succeed, finer than its status.
    pub enum ErrorKind {
        /// The handler raised, exited non-zero or returned no result.
        HandlerError = "handler_error",
        /// The return value does not match the version's `output_schema`.
        OutputSchemaViolation = "output_schema_violation",
        /// The wall-clock limit passed.
        Timeout = "timeout",
        /// A signal the jail did not send ended the handler.
        Signaled = "signaled",
        /// The CPU-time limit.
        CpuLimit = "cpu_limit",
        /// The memory limit.
        MemoryLimit = "memory_limit",
        /// The output cap.
        OutputLimit = "output_limit",
        /// A forbidden system call.
        Violation = "violation",
        /// The jail could not set the box up.
        InternalError = "internal_error",
        /// The platform failed around the call.
        Internal = "internal",
        /// The server stopped while the execution was running.
        Interrupted = "interrupted",
        /// A queued execution's version can no longer run (deleted, its
        /// package changed or failed its hash check) by the time it started.
        VersionUnavailable = "version_unavailable",
        /// Cancelled on request.
        Cancelled = "cancelled",
        /// Its session ended (terminated, expired, its box died, the server
        /// stopped) before or while it ran.
        SessionEnded = "session_ended",
        /// A one-shot run's compile step failed (its result says why); the
        /// program did not run.
        CompileError = "compile_error",
    }
}

/// What an execution runs: a plugin, code in a sandbox session, or a
/// one-shot run, sharing the rest of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExecutionSource {
    /// A version of a plugin installed in the calling app.
    Plugin {
        /// Plugin code.
        plugin: String,
        /// The version accepted for the call (and run).
        version: String,
    },
    /// Code run in a sandbox session of the calling app.
    Session {
        /// The session (`ses_…`).
        session: String,
        /// The code's language.
        language: crate::session::SessionLanguage,
        /// How it runs.
        mode: crate::session::RunMode,
    },
    /// A one-shot program of the calling app (`POST /v1/run` and the
    /// compatibility APIs).
    Run {
        /// Its language.
        language: crate::run::RunLanguage,
        /// The template it ran with (its packages and network), if any.
        template: Option<String>,
    },
}

impl ExecutionSource {
    /// The stored name of the variant (the `source` column).
    pub fn kind(&self) -> &'static str {
        match self {
            ExecutionSource::Plugin { .. } => "plugin",
            ExecutionSource::Session { .. } => "session",
            ExecutionSource::Run { .. } => "run",
        }
    }

    /// The plugin and version, for a plugin's execution.
    pub fn plugin(&self) -> Option<(&str, &str)> {
        match self {
            ExecutionSource::Plugin { plugin, version } => Some((plugin, version)),
            ExecutionSource::Session { .. } | ExecutionSource::Run { .. } => None,
        }
    }

    /// The session, for an execution in one.
    pub fn session(&self) -> Option<&str> {
        match self {
            ExecutionSource::Session { session, .. } => Some(session),
            ExecutionSource::Plugin { .. } | ExecutionSource::Run { .. } => None,
        }
    }
}

/// One call, from acceptance to its final result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// Unique id.
    pub id: String,
    /// Calling app.
    pub app: String,
    /// What runs.
    pub source: ExecutionSource,
    /// State.
    pub status: ExecutionStatus,
    /// As the caller asked.
    pub mode: ExecutionMode,
    /// The node (server process) responsible for it: the one that accepted
    /// it, or the one that took it from the queue. After a crash, only that
    /// node's started executions are marked interrupted.
    pub node: String,
    /// Finer reason when it did not succeed.
    pub error_kind: Option<ErrorKind>,
    /// The result, once final.
    pub result: Option<ExecutionResult>,
    /// Accepted.
    pub created_at: i64,
    /// Started running.
    pub started_at: Option<i64>,
    /// Finished.
    pub finished_at: Option<i64>,
    /// Wall-clock time of the call.
    pub duration_ms: Option<f64>,
    /// Destinations the call's box asked the egress proxy for and was
    /// refused (hosts its version did not declare, SSRF refusals); empty
    /// for a call that tried none or had no network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_refused: Vec<RefusedDestination>,
}

/// One connection the egress proxy refused a call's box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefusedDestination {
    /// When the box asked, ms since the Unix epoch.
    pub at: i64,
    /// The request's method (`CONNECT`, `GET`, …), when one was read.
    #[serde(default)]
    pub method: Option<String>,
    /// The host asked for, normalized, when a valid one was read.
    #[serde(default)]
    pub host: Option<String>,
    /// The port asked for.
    #[serde(default)]
    pub port: Option<u16>,
    /// The proxy's reason (`host_not_allowed`, `loopback`, …; see
    /// docs/egress.md).
    pub reason: String,
    /// What happened, for a person.
    pub message: String,
}

/// How the call itself ended (the runtime's verdict, or the platform's when
/// it overrules it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    /// The handler returned a value.
    Success,
    /// The handler failed.
    Failed,
    /// The wall-clock limit passed.
    Timeout,
    /// The platform stopped or refused the call.
    Error,
    /// Cancelled on request.
    Cancelled,
}

/// The stored result of a call. Documents written by earlier versions carry
/// only `status` and `error` for platform errors; every other field has its
/// empty value then. A field of the wrong type is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionResult {
    /// How the call ended.
    pub status: ResultStatus,
    /// The jail's detailed status (`ok`, `memory_limit`, …), in the jail's
    /// own words.
    #[serde(default)]
    pub jail_status: Option<String>,
    /// What the handler printed (capped).
    #[serde(default)]
    pub stdout: String,
    /// What the handler printed on stderr (capped).
    #[serde(default)]
    pub stderr: String,
    /// stdout passed its cap.
    #[serde(default)]
    pub stdout_truncated: bool,
    /// stderr passed its cap.
    #[serde(default)]
    pub stderr_truncated: bool,
    /// Exit code of the handler's process.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Signal that killed it.
    #[serde(default)]
    pub signal: Option<i32>,
    /// Wall-clock time, seconds.
    #[serde(default)]
    pub execution_time: f64,
    /// The handler's return value (`success`).
    #[serde(default)]
    pub return_value: Option<Value>,
    /// Why it did not succeed.
    #[serde(default)]
    pub error: Option<ExecutionError>,
    /// Resource figures.
    #[serde(default)]
    pub metrics: Option<ResultMetrics>,
    /// Files the handler left under `out/`.
    #[serde(default)]
    pub artifacts: Vec<ArtifactRecord>,
    /// Served by a warm box.
    #[serde(default)]
    pub warm: bool,
    /// A stateful cell found its session's interpreter dead (a crash or a
    /// timeout of an earlier cell) and ran in a new one: the state (variables,
    /// imports, open files) was lost. Absent when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub interpreter_restarted: bool,
    /// The session's interpreter ended with this cell (it crashed or timed
    /// out); the next cell starts a new one. Absent when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub interpreter_died: bool,
    /// A one-shot run's compile step (C, C++, Go), with its own limits and
    /// result: its output, exit code, figures and error. Absent for
    /// everything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compile: Option<Box<ExecutionResult>>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ExecutionResult {
    /// A result for a call the platform ended or refused before or around
    /// the handler: status `error`, nothing printed.
    pub fn platform_error(kind: &str, message: impl Into<String>, jail_status: Option<&str>) -> Self {
        ExecutionResult {
            status: ResultStatus::Error,
            jail_status: jail_status.map(str::to_owned),
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            exit_code: None,
            signal: None,
            execution_time: 0.0,
            return_value: None,
            error: Some(ExecutionError::new(kind, message)),
            metrics: None,
            artifacts: Vec::new(),
            warm: false,
            interpreter_restarted: false,
            interpreter_died: false,
            compile: None,
        }
    }
}

/// The error of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionError {
    /// Exception type, or a Warden kind (`HandlerNotFound`, `SyntaxError`,
    /// `OutputSchemaViolation`, `Interrupted`, `memory_limit`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong.
    pub message: String,
    /// Traceback, trimmed of Warden's frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    /// File, relative to the package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Output schema violations, each located by its JSON pointer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<ResultViolation>,
}

impl ExecutionError {
    /// An error with a type and a message only.
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        ExecutionError {
            kind: kind.to_owned(),
            message: message.into(),
            traceback: None,
            file: None,
            line: None,
            violations: Vec::new(),
        }
    }
}

/// One way the return value breaks the output schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultViolation {
    /// JSON pointer into the return value.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

/// Resource figures of a call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResultMetrics {
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

/// A file a call left under `out/` (its bytes are a blob of their own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// Path relative to `out/`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// False when its bytes could not be stored (the download then answers
    /// 404); absent from the document when true.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub stored: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// What an accepted, not yet started async execution needs to start on any
/// node, kept in the store's queue until it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedCall {
    /// The event, as the caller sent it (JSON text, up to the event limit).
    pub event: String,
    /// SHA-256 of the package accepted for the call: a version whose
    /// package changed since does not run it.
    pub package_sha256: String,
    /// The wall-clock limit accepted for the call.
    pub timeout_ms: u64,
    /// The memory limit accepted for the call, MiB.
    pub memory_mb: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for name in ExecutionStatus::NAMES {
            assert_eq!(ExecutionStatus::parse(name).unwrap().as_str(), *name);
        }
        for name in ErrorKind::NAMES {
            let k = ErrorKind::parse(name).unwrap();
            assert_eq!(serde_json::to_value(k).unwrap(), json!(name));
        }
        assert_eq!(ExecutionMode::parse("async"), Some(ExecutionMode::Async));
        assert_eq!(ExecutionMode::parse("Async"), None);
        assert_eq!(ErrorKind::parse("memory-limit"), None);
        assert!(!ExecutionStatus::Queued.is_final() && ExecutionStatus::Interrupted.is_final());
    }

    /// A result as the runtime wrote it: parsed and written back unchanged.
    #[test]
    fn a_full_result_keeps_its_shape() {
        let doc = json!({
            "status": "error", "jail_status": "ok", "stdout": "hi\n", "stderr": "",
            "stdout_truncated": false, "stderr_truncated": false, "exit_code": 0,
            "signal": null, "execution_time": 0.012, "return_value": {"n": 1},
            "error": {"type": "OutputSchemaViolation", "message": "1 violation",
                      "violations": [{"location": "/n", "message": "not a string"}]},
            "metrics": {"duration_ms": 12.0, "cpu_time_ms": 3.5, "peak_memory_mb": 8.0,
                        "io_read_bytes": 0, "io_write_bytes": 4096},
            "artifacts": [{"path": "a.txt", "size": 2, "sha256": "ab"},
                          {"path": "b.txt", "size": 3, "sha256": "cd", "stored": false}],
            "warm": true
        });
        let r: ExecutionResult = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(r.error.as_ref().unwrap().violations[0].location, "/n");
        assert!(r.artifacts[0].stored && !r.artifacts[1].stored);
        assert_eq!(serde_json::to_value(&r).unwrap(), doc);
    }

    #[test]
    fn a_sessions_interpreter_notes_appear_only_when_set() {
        let mut r = ExecutionResult::platform_error("X", "y", None);
        assert!(
            serde_json::to_value(&r)
                .unwrap()
                .get("interpreter_died")
                .is_none()
        );
        r.interpreter_restarted = true;
        let doc = serde_json::to_value(&r).unwrap();
        assert_eq!(doc["interpreter_restarted"], json!(true));
        assert!(doc.get("interpreter_died").is_none());
        assert_eq!(serde_json::from_value::<ExecutionResult>(doc).unwrap(), r);
        let source = ExecutionSource::Session {
            session: "ses_1".into(),
            language: crate::session::SessionLanguage::Python,
            mode: crate::session::RunMode::Repl,
        };
        assert_eq!(source.kind(), "session");
        assert_eq!(source.session(), Some("ses_1"));
        assert_eq!(source.plugin(), None);
    }

    #[test]
    fn a_runs_compile_step_is_a_result_of_its_own() {
        let mut r = ExecutionResult::platform_error("X", "y", None);
        assert!(serde_json::to_value(&r).unwrap().get("compile").is_none());
        let mut compile =
            ExecutionResult::platform_error("ExitStatus", "exited with code 1", Some("nonzero_exit"));
        compile.status = ResultStatus::Failed;
        compile.stderr = "main.c:1: error".into();
        r.compile = Some(Box::new(compile));
        let doc = serde_json::to_value(&r).unwrap();
        assert_eq!(doc["compile"]["stderr"], json!("main.c:1: error"));
        assert_eq!(serde_json::from_value::<ExecutionResult>(doc).unwrap(), r);
        assert!(
            serde_json::from_value::<ExecutionResult>(
                json!({"status": "failed", "compile": {"status": "maybe"}})
            )
            .is_err()
        );
        let source = ExecutionSource::Run {
            language: crate::run::RunLanguage::Cpp,
            template: None,
        };
        assert_eq!(source.kind(), "run");
        assert_eq!((source.plugin(), source.session()), (None, None));
        assert_eq!(ErrorKind::parse("compile_error"), Some(ErrorKind::CompileError));
    }

    #[test]
    fn an_older_platform_error_document_still_reads() {
        let r: ExecutionResult = serde_json::from_value(json!({
            "status": "error",
            "error": {"type": "Interrupted", "message": "the server restarted"},
        }))
        .unwrap();
        assert_eq!(
            r,
            ExecutionResult::platform_error("Interrupted", "the server restarted", None)
        );
    }

    #[test]
    fn a_corrupt_document_is_an_error_not_a_default() {
        for bad in [
            json!({"status": "maybe"}),
            json!({"stdout": "no status"}),
            json!({"status": "success", "stdout": 7}),
            json!({"status": "success", "metrics": "fast"}),
        ] {
            assert!(
                serde_json::from_value::<ExecutionResult>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
