//! Warden's egress proxy: the only way out of a box that is granted egress.
//!
//! The jail gives such a box a network namespace with nothing but loopback
//! and a listener on `127.0.0.1:3128` that the host created inside it. This
//! crate serves that listener from the host: it resolves names itself (the
//! box has no DNS), lets through only the `host[:port]` pairs on the box's
//! allow-list, refuses addresses a box must never reach (loopback, private,
//! link-local and cloud metadata, multicast, reserved ranges, the host's own
//! addresses) unless the operator opens them, connects to exactly the
//! address it checked, caps connections and bytes, and records every
//! connection. HTTPS passes as `CONNECT` tunnels (no TLS interception);
//! plain HTTP absolute-form requests are forwarded.
//!
//! ```no_run
//! use std::net::TcpListener;
//! use warden_egress::{Policy, serve};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Bound by the host inside the box's network namespace.
//! let listener: TcpListener = TcpListener::bind("127.0.0.1:3128")?;
//! let policy = Policy::new(["pypi.org", "files.pythonhosted.org"])?;
//! let proxy = serve(listener, policy)?; // returns at once
//! // ... run the box with HTTP(S)_PROXY=http://127.0.0.1:3128 ...
//! let report = proxy.stop(); // cuts live tunnels, returns every record
//! for c in &report.connections {
//!     println!("{:?}:{:?} {:?}", c.host, c.port, c.verdict);
//! }
//! # Ok(()) }
//! ```
//!
//! The rules, the refusal reasons and the record format are in
//! `docs/egress.md`. This crate has no `unsafe` and knows nothing of boxes,
//! plugins or builds: callers attach the report to whatever made the
//! connections.

mod address;
pub mod client;
mod conn;
mod connect;
mod credential;
mod forward;
mod host;
mod io;
mod oauth;
mod policy;
mod proxy;
mod record;
mod scrub;
mod tls;

pub use conn::REASON_HEADER;
pub use credential::{CREDENTIAL_HEADER, Credential};
pub use host::{HostError, HostName};
pub use oauth::{OAuth2, forget_oauth2_token, forget_oauth2_tokens_under, oauth2_token_cached};
pub use policy::{AllowRule, Cidr, Limits, Policy, PolicyError};
pub use proxy::{ProxyHandle, ServeError, serve};
pub use record::{ConnectionRecord, Cut, Reason, Report, Verdict};
pub use scrub::{MIN_FORM as MIN_SCRUBBED_FORM, REDACTED};
