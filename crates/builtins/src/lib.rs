//! Warden's built-in plugins: Rust code compiled into the server, registered
//! at start as plugins of the owner `warden` (trust level `builtin`) and
//! called in-process, through the same API, schemas, installations,
//! executions and audit trail as any other plugin.
//!
//! A built-in is one file implementing [`Builtin`] and one line in [`all`]:
//! its [`Spec`] (code, version, schemas, limits) is what the registry stores
//! as the version's manifest, and [`Builtin::call`] turns an event into a
//! value or a [`Failure`]. A call gets a [`Context`] from the platform: the
//! egress policy it may use (none for a built-in that makes no requests)
//! and the list its connections are recorded in. The HTTP request tool
//! (`src/http.rs`) is the one built-in that uses it.
//!
//! Must never: read the server's environment, files or sockets on behalf of
//! a caller (unless that is the built-in's declared job and the platform
//! grants it); panic on what a caller sends; run a caller's program without
//! the call's deadline.

mod http;
mod jq;
mod template;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use http::Http;
pub use jq::Jq;
pub use template::Template;

/// The prefix of every built-in's code; uploads may not use it.
pub const CODE_PREFIX: &str = "warden.builtin.";

/// What the registry records about a built-in (its manifest).
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Plugin code, under [`CODE_PREFIX`].
    pub code: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Semantic version: a new one whenever the behaviour changes.
    pub version: &'static str,
    /// What it does.
    pub description: &'static str,
    /// JSON Schema of its events.
    pub input_schema: Value,
    /// JSON Schema of its results.
    pub output_schema: Value,
    /// Wall-clock limit of a call unless the caller asks for less.
    pub timeout_ms: u64,
}

/// Limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time of the call.
    pub timeout: Duration,
    /// Most bytes of output (the result, encoded as JSON).
    pub output_bytes: usize,
}

/// Why a call did not return a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The event asks for something the built-in cannot do (a program that
    /// does not parse, a template error, …): the caller's fault, recorded
    /// as a failed call with the type and message.
    #[error("{kind}: {message}")]
    Handler {
        /// Error type (`JqCompileError`, `TemplateError`, …).
        kind: &'static str,
        /// What is wrong, naming the place when known.
        message: String,
    },
    /// The call ran out of its wall-clock time (or of its fuel, which is
    /// how the template renderer bounds its work).
    #[error("the call ran out of time: {0}")]
    Timeout(String),
    /// The result is larger than the call's output cap.
    #[error("the result is larger than {0} bytes once encoded as JSON")]
    OutputLimit(usize),
}

/// What the platform gives one call besides its event. Borrowed and
/// allocation-free when empty, so a built-in that makes no requests pays
/// nothing for it.
#[derive(Debug, Default)]
pub struct Context<'a> {
    /// What the call may reach over the network, decided by the platform
    /// for this app and call (`docs/capabilities.md`); `None`: nothing.
    pub egress: Option<&'a warden_egress::Policy>,
    /// A record of every connection the call made or was refused, in the
    /// egress proxy's format: the platform keeps refusals with the
    /// execution, counts them and audits credential uses.
    pub records: Vec<warden_egress::ConnectionRecord>,
}

/// A plugin compiled into Warden.
pub trait Builtin: Send + Sync + std::fmt::Debug {
    /// Its manifest.
    fn spec(&self) -> Spec;
    /// Whether it makes network requests: only then does the platform
    /// prepare an egress policy for its calls.
    fn network(&self) -> bool {
        false
    }
    /// The credential `event` names, which the platform opens for the call
    /// (only asked when [`Builtin::network`] is true).
    fn credential<'e>(&self, _event: &'e Value) -> Option<&'e str> {
        None
    }
    /// Run one call on `event` (already checked against the input schema)
    /// within `limits`, with what the platform grants it in `cx`. Called
    /// on a thread that may block.
    fn call(&self, event: &Value, limits: Limits, cx: &mut Context<'_>) -> Result<Value, Failure>;
}

/// Every built-in, registered at start. One line per plugin.
pub fn all() -> Vec<Arc<dyn Builtin>> {
    vec![Arc::new(Jq), Arc::new(Template), Arc::new(Http)]
}

/// The result's size once encoded, checked against `cap`.
fn capped(value: Value, cap: usize) -> Result<Value, Failure> {
    struct Counter(usize, usize);
    impl std::io::Write for Counter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            if self.0 > self.1 {
                return Err(std::io::Error::other("over the cap"));
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    match serde_json::to_writer(Counter(0, cap), &value) {
        Ok(()) => Ok(value),
        Err(_) => Err(Failure::OutputLimit(cap)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_reserved_and_manifests_are_well_formed() {
        let mut codes = Vec::new();
        for b in all() {
            let s = b.spec();
            assert!(s.code.starts_with(CODE_PREFIX), "{}", s.code);
            assert_eq!(s.code.split('.').count(), 3, "{}", s.code);
            assert!(s.version.split('.').count() == 3, "{}", s.version);
            assert!(s.input_schema.is_object() && s.output_schema.is_object());
            codes.push(s.code);
        }
        let n = codes.len();
        codes.dedup();
        assert_eq!(n, codes.len());
    }

    #[test]
    fn results_past_the_cap_are_refused() {
        let v = Value::String("x".repeat(100));
        assert_eq!(capped(v.clone(), 102), Ok(v.clone()));
        assert_eq!(capped(v, 101), Err(Failure::OutputLimit(101)));
    }
}
