//! Build a Warden `native` plugin from a typed handler.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Input { name: String }
//!
//! #[derive(Serialize)]
//! struct Output { message: String }
//!
//! fn main() {
//!     warden_plugin::run(|input: Input| {
//!         if input.name.is_empty() {
//!             return Err(warden_plugin::Error::new("ValidationError", "name is required"));
//!         }
//!         Ok(Output { message: format!("Hello, {}!", input.name) })
//!     })
//! }
//! ```
//!
//! The event arrives as JSON on stdin and the result leaves as JSON on
//! stdout (exit 0). An error leaves as `{"error": {"type", "message"}}` with
//! exit code 1, which the platform reports with that type and message; a
//! panic is reported as type `Panic`.

use std::io::{Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest event read.
pub const MAX_EVENT_BYTES: u64 = 64 << 20;

/// An error with a type of the plugin's choosing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Error {
    /// The type the platform reports (`ValidationError`, `NotFound`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

impl Error {
    /// An error of type `kind`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::new("HandlerError", message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::new("HandlerError", message)
    }
}

/// Read the event from stdin, call `handle`, write the result to stdout and
/// exit (0 on success, 1 on error).
pub fn run<In, Out, E>(handle: impl FnOnce(In) -> Result<Out, E>) -> !
where
    In: DeserializeOwned,
    Out: Serialize,
    E: Into<Error>,
{
    let code = run_io(handle, std::io::stdin().lock(), std::io::stdout().lock());
    std::process::exit(code)
}

/// [`run`] on any reader and writer; returns the exit code (for tests).
pub fn run_io<In, Out, E>(
    handle: impl FnOnce(In) -> Result<Out, E>,
    input: impl Read,
    mut output: impl Write,
) -> i32
where
    In: DeserializeOwned,
    Out: Serialize,
    E: Into<Error>,
{
    let mut data = Vec::new();
    if let Err(e) = input.take(MAX_EVENT_BYTES + 1).read_to_end(&mut data) {
        return fail(
            &mut output,
            Error::new("ReadError", format!("reading the event: {e}")),
        );
    }
    if data.len() as u64 > MAX_EVENT_BYTES {
        return fail(
            &mut output,
            Error::new(
                "InvalidEvent",
                format!("the event is over {MAX_EVENT_BYTES} bytes"),
            ),
        );
    }
    let event: In = match serde_json::from_slice(&data) {
        Ok(v) => v,
        Err(e) => {
            return fail(
                &mut output,
                Error::new(
                    "InvalidEvent",
                    format!("the event does not fit the handler's input type: {e}"),
                ),
            );
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(event)));
    let out = match result {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return fail(&mut output, e.into()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the handler panicked".to_owned());
            return fail(&mut output, Error::new("Panic", message));
        }
    };
    match serde_json::to_vec(&out) {
        Ok(mut doc) => {
            doc.push(b'\n');
            if output.write_all(&doc).and_then(|()| output.flush()).is_err() {
                return 1;
            }
            0
        }
        Err(e) => fail(&mut output, Error::new("ResultNotSerializable", e.to_string())),
    }
}

fn fail(output: &mut impl Write, error: Error) -> i32 {
    let doc = serde_json::json!({ "error": error });
    let _ = writeln!(output, "{doc}");
    let _ = output.flush();
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Input {
        name: String,
    }

    #[derive(Serialize)]
    struct Output {
        message: String,
    }

    fn greet(i: Input) -> Result<Output, Error> {
        if i.name.is_empty() {
            return Err(Error::new("ValidationError", "name is required"));
        }
        Ok(Output {
            message: format!("Hello, {}!", i.name),
        })
    }

    fn call<In: DeserializeOwned, Out: Serialize, E: Into<Error>>(
        h: impl FnOnce(In) -> Result<Out, E>,
        event: &str,
    ) -> (i32, serde_json::Value) {
        let mut out = Vec::new();
        let code = run_io(h, event.as_bytes(), &mut out);
        (code, serde_json::from_slice(&out).expect("the output is JSON"))
    }

    #[test]
    fn success_writes_the_result() {
        let (code, doc) = call(greet, r#"{"name": "Ada"}"#);
        assert_eq!((code, doc), (0, serde_json::json!({"message": "Hello, Ada!"})));
    }

    #[test]
    fn errors_are_structured() {
        let cases: Vec<(i32, serde_json::Value)> = vec![
            call(greet, r#"{"name": ""}"#),
            call(greet, r#"{"nom": "x"}"#),
            call(greet, "not json"),
            call(
                |_: Input| -> Result<Output, &str> { Err("boom") },
                r#"{"name": "a"}"#,
            ),
            call(
                |_: Input| -> Result<Output, Error> { panic!("oh no") },
                r#"{"name": "a"}"#,
            ),
        ];
        let kinds: Vec<&str> = cases
            .iter()
            .map(|(_, d)| d["error"]["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "ValidationError",
                "InvalidEvent",
                "InvalidEvent",
                "HandlerError",
                "Panic"
            ]
        );
        assert!(cases.iter().all(|(code, _)| *code == 1));
        assert!(
            cases[1].1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("missing field `name`")
        );
        assert_eq!(cases[4].1["error"]["message"], "oh no");
    }
}
