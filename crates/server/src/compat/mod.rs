//! Compatibility APIs: existing clients pointed at Warden unchanged.
//!
//! Each submodule is one upstream API, a thin translation onto the native
//! parts: it parses the upstream request into a [`crate::runs`] call (or,
//! for control planes, a [`crate::sessions`] call) and renders the record
//! the way the upstream clients read it, with the upstream error envelope.
//! Every accepted request is an ordinary execution record.
//!
//! * [`dify`]: `langgenius/dify-sandbox` (`/v1/sandbox/*`, `/health`), what
//!   Dify's `CODE_EXECUTION_ENDPOINT` points at.
//! * [`piston`]: Piston's v2 API (`/api/v2/*`).
//! * [`seed003`]: seed 003's control plane (`kweaver-ai/sandbox`,
//!   `/api/v1/*`): sessions, executions, files and templates onto the
//!   native sessions and templates.
//!
//! Must never: run, check or record anything itself (the native services
//! do), or leak a native problem document on an upstream path.

pub mod dify;
pub mod piston;
pub mod seed003;

use axum::Router;

use crate::AppState;

/// Every compatibility route (outside the OpenAPI document: their shapes
/// are the upstream projects', see `docs/compat.md`).
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(dify::router())
        .merge(piston::router())
        .merge(seed003::router())
}

/// What the compatibility APIs keep between requests.
#[derive(Debug, Default)]
pub struct Compat {
    /// Anonymous Piston calls admitted this minute.
    pub anonymous: piston::Anonymous,
    /// Open Piston sockets (`/api/v2/connect`).
    pub sockets: piston::connect::Sockets,
}
