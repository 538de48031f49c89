//! One error type for every handler, rendered as an RFC 9457
//! `application/problem+json` document. Clients get what they can act on
//! (the field or file at fault, the state and the allowed moves); internals
//! are logged with the request id, never sent.
//!
//! Building an [`ApiError`] (by hand or by a `From` conversion) has no side
//! effect: it neither logs nor counts. Its response carries an [`Outcome`]
//! extension with what the client is not told (the cause) and what the
//! metrics count (a plugin failure); the request span logs the cause once
//! (`crate::log_response`) and `crate::metrics::track_http` counts the
//! failure once.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use warden_core::{RegistryError, StoreError, TemplateError};

/// One located problem: a JSON pointer into the request (`/name`,
/// `/limits/memory_mb`), a query parameter (`query:limit`) or a file of the
/// package (`archive:src/main.py`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct FieldError {
    /// Where.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl From<warden_package::Problem> for FieldError {
    fn from(p: warden_package::Problem) -> Self {
        FieldError {
            location: p.location,
            message: p.message,
        }
    }
}

/// The problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem (`/problems/<kind>`);
    /// `docs/api.md` lists them.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, the same for every problem of this kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// Every located problem, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// A version's current state (lifecycle conflicts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_state: Option<String>,
    /// The moves that state allows (lifecycle conflicts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
}

/// An error a handler returns (boxed: errors are rare, results are hot).
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    current_state: Option<String>,
    allowed: Option<Vec<String>>,
    retry_after: Option<u64>,
    www_authenticate: bool,
    outcome: Outcome,
}

/// What a response carries for the server's own eyes only, as a response
/// extension: the internal cause (for the log) and a plugin failure (for
/// the metrics).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The internal cause: logged once with the request id, never sent.
    pub cause: Option<String>,
    /// A failure to count in `warden_plugin_failures_total`.
    pub plugin_failure: Option<PluginFailure>,
}

/// One plugin failure for the metrics: bounded labels (a plugin code and a
/// reason), never ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFailure {
    /// The plugin's code.
    pub plugin: String,
    /// Why (`integrity`, or an execution's error kind).
    pub reason: String,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> ApiError {
        ApiError(Box::new(Inner {
            status,
            kind,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            current_state: None,
            allowed: None,
            retry_after: None,
            www_authenticate: false,
            outcome: Outcome::default(),
        }))
    }

    /// The same error, carrying an internal cause for the log (never sent).
    pub fn with_cause(mut self, cause: impl std::fmt::Display) -> ApiError {
        self.0.outcome.cause = Some(cause.to_string());
        self
    }

    /// The internal cause, if any (for callers that report errors outside
    /// a request, such as the command line).
    pub fn cause(&self) -> Option<&str> {
        self.0.outcome.cause.as_deref()
    }

    /// An extractor's rejection (bad JSON, wrong content type, too large),
    /// with axum's status and message.
    pub fn rejection(status: StatusCode, detail: String) -> ApiError {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::too_large(format!("{detail} (see max_event_bytes / max_package_bytes)"))
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                status,
                "unsupported-media-type",
                "Unsupported content type",
                detail,
            ),
            StatusCode::UNPROCESSABLE_ENTITY => {
                ApiError::new(status, "invalid", "The request body is invalid", detail)
            }
            s if s.is_server_error() => ApiError::internal(&detail),
            _ => ApiError::bad_request(detail),
        }
    }

    /// 400: the request cannot be read.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "The request cannot be read",
            detail,
        )
    }

    /// 400 naming one location.
    pub fn bad_field(location: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        let mut e = ApiError::bad_request(format!("{location}: {message}"));
        e.0.errors.push(FieldError {
            location: location.into(),
            message,
        });
        e
    }

    /// 401: no key, or a key that is not valid.
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "An API key is required",
            detail,
        );
        e.0.www_authenticate = true;
        e
    }

    /// 403: the key's role may not do this.
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not allowed for this key",
            detail,
        )
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 409: exists already, in use, or the wrong state.
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "Conflicts with the current state",
            detail,
        )
    }

    /// 409 of a kind of its own (`/problems/<kind>`), for conflicts a
    /// client handles differently from the generic one.
    pub fn conflict_of(kind: &'static str, title: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, kind, title, detail)
    }

    /// 413.
    pub fn too_large(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "The body is too large",
            detail,
        )
    }

    /// 422 with every located problem.
    pub fn invalid(kind: &'static str, title: &'static str, errors: Vec<FieldError>) -> ApiError {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.location, one.message),
            many => format!("{} problems; see `errors`", many.len()),
        };
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, kind, title, detail);
        e.0.errors = errors;
        e
    }

    /// 429 with `Retry-After`.
    pub fn busy(detail: impl Into<String>, retry_after: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            "Too many executions in flight",
            detail,
        );
        e.0.retry_after = Some(retry_after);
        e
    }

    /// 409: a session's state does not allow this (it has ended, or is
    /// still starting); `current_state` names the state.
    pub fn session_state(current: &str, detail: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::CONFLICT,
            "session-state",
            "The session's state does not allow this",
            detail,
        );
        e.0.current_state = Some(current.to_owned());
        e
    }

    /// 429: the app's live sessions use up one of its quotas.
    pub fn session_quota(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "session-quota",
            "The app's session quota is used up",
            detail,
        )
    }

    /// 429 with `Retry-After`: a session has as many executions running or
    /// waiting as it may.
    pub fn session_busy(detail: impl Into<String>, retry_after: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "session-busy",
            "Too many executions waiting in the session",
            detail,
        );
        e.0.retry_after = Some(retry_after);
        e
    }

    /// 503 with `Retry-After`: this node holds as many sessions (or as much
    /// of their memory or disk) as it may.
    pub fn node_full(detail: impl Into<String>, retry_after: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node-full",
            "This node has no room for another session",
            detail,
        );
        e.0.retry_after = Some(retry_after);
        e
    }

    /// 507: the session's workspace is full.
    pub fn disk_full(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "disk-full",
            "The session's workspace is full",
            detail,
        )
    }

    /// 416: the `Range` asked for lies outside the file.
    pub fn range_not_satisfiable(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range-not-satisfiable",
            "The range lies outside the file",
            detail,
        )
    }

    /// 422: a snapshot cannot be taken or restored (too large, not ready,
    /// does not fit the workspace).
    pub fn snapshot_refused(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "snapshot-refused",
            "The snapshot cannot be taken or restored",
            detail,
        )
    }

    /// 503 with `Retry-After`: the object store failed a snapshot's
    /// transfer; nothing changed but the snapshot's record.
    pub fn object_store(detail: impl Into<String>, retry_after: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "object-store",
            "The object store is unavailable",
            detail,
        );
        e.0.retry_after = Some(retry_after);
        e
    }

    /// 503: a dependency (the store, the jail) is unavailable.
    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
            detail,
        )
    }

    /// 503: a version failed to load on this node and is excluded until a
    /// retry, `retry_after` seconds from now at the latest; `detail` names
    /// the reason. Not the caller's fault (so not 4xx), and not a platform
    /// bug (so not 500): the platform's copy of the code is unusable here.
    pub fn version_failed(detail: impl Into<String>, retry_after: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "version-failed",
            "The version failed to load on this node",
            detail,
        );
        e.0.retry_after = Some(retry_after);
        e
    }

    /// 500: a generic message is sent; the cause goes to the log with the
    /// request id (when the response is sent, not here).
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server failed; the error is logged with this request's id",
        )
        .with_cause(cause)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        let e = &self.0;
        Problem {
            kind: format!("/problems/{}", e.kind),
            title: e.title.into(),
            status: e.status.as_u16(),
            detail: e.detail.clone(),
            errors: e.errors.clone(),
            current_state: e.current_state.clone(),
            allowed: e.allowed.clone(),
        }
    }
}

/// Render a problem document with `status` (also used by the fallbacks).
pub fn problem_response(status: StatusCode, body: &Problem) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

impl std::fmt::Display for ApiError {
    /// The detail, and the internal cause when there is one: for logs and
    /// the command line, never for clients.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0.outcome.cause {
            Some(cause) => write!(f, "{}: {cause}", self.0.detail),
            None => f.write_str(&self.0.detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = problem_response(self.0.status, &self.problem());
        if let Some(secs) = self.0.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.0.www_authenticate {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"warden\""),
            );
        }
        r.extensions_mut().insert(self.0.outcome);
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Conflict(m) | StoreError::InUse(m) => ApiError::conflict(m),
            StoreError::Stale { current } => {
                ApiError::conflict(format!("the version changed concurrently; it is now {current}"))
            }
            e @ StoreError::Changed { .. } => ApiError::conflict(e.to_string()),
            StoreError::Backend(m) => {
                ApiError::unavailable("the store is unavailable; retry shortly").with_cause(m)
            }
            e @ StoreError::Corrupt { .. } => ApiError::internal(&e),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(problems) => ApiError::invalid(
                "invalid",
                "The request or package is invalid",
                problems.into_iter().map(FieldError::from).collect(),
            ),
            RegistryError::NotFound(m) => ApiError::not_found(m),
            RegistryError::Forbidden(m) => ApiError::forbidden(m),
            RegistryError::Lifecycle { ref error, .. } => {
                let mut a = ApiError::new(
                    StatusCode::CONFLICT,
                    "wrong-state",
                    "The version's state does not allow this",
                    e.to_string(),
                );
                a.0.current_state = Some(error.from.to_string());
                a.0.allowed = Some(error.allowed.iter().map(|x| x.as_str().to_owned()).collect());
                a
            }
            RegistryError::Conflict(m) | RegistryError::Signature(m) => ApiError::conflict(m),
            RegistryError::Tampered { ref plugin, .. } => {
                let mut a = ApiError::new(
                    StatusCode::CONFLICT,
                    "integrity",
                    "The stored package failed its integrity check",
                    e.to_string(),
                );
                a.0.outcome.plugin_failure = Some(PluginFailure {
                    plugin: plugin.clone(),
                    reason: "integrity".into(),
                });
                a
            }
            RegistryError::Store(s) => s.into(),
            RegistryError::Io { .. } => ApiError::internal(&DisplayChain(&e)),
        }
    }
}

impl From<TemplateError> for ApiError {
    fn from(e: TemplateError) -> Self {
        match e {
            TemplateError::Invalid(problems) => ApiError::invalid(
                "invalid",
                "The template is invalid",
                problems.into_iter().map(FieldError::from).collect(),
            ),
            TemplateError::NotFound(m) => ApiError::not_found(m),
            TemplateError::Forbidden(m) => ApiError::forbidden(m),
            TemplateError::Conflict(m) => ApiError::conflict(m),
            e @ TemplateError::Builtin(_) => ApiError::conflict_of(
                "builtin",
                "Built-in templates cannot be changed or deleted",
                e.to_string(),
            ),
            e @ TemplateError::Stale { .. } => ApiError::conflict_of(
                "stale-revision",
                "The template changed since it was read",
                e.to_string(),
            ),
            TemplateError::Store(s) => s.into(),
        }
    }
}

impl From<crate::sessions::SessionError> for ApiError {
    fn from(e: crate::sessions::SessionError) -> Self {
        use crate::sessions::SessionError as S;
        match e {
            S::Invalid(problems) => ApiError::invalid(
                "invalid",
                "The request is invalid",
                problems.into_iter().map(FieldError::from).collect(),
            ),
            S::BadField { location, message } => ApiError::bad_field(&location, message),
            S::NotFound(m) => ApiError::not_found(m),
            S::Forbidden(m) => ApiError::forbidden(m),
            S::State { status, detail } => ApiError::session_state(status.as_str(), detail),
            e @ S::Elsewhere { .. } => ApiError::conflict_of(
                "session-elsewhere",
                "The session runs on another node",
                e.to_string(),
            ),
            S::AppQuota(m) => ApiError::session_quota(m),
            S::NodeFull(m) => ApiError::node_full(m, 5),
            S::Busy(m) => ApiError::session_busy(m, 1),
            S::NotCancellable(m) => {
                ApiError::conflict_of("not-cancellable", "The execution cannot be cancelled", m)
            }
            S::File(e) => file_error(e),
            S::TooLarge(m) => ApiError::too_large(m),
            S::Body(m) => ApiError::bad_field("body", m),
            S::SnapshotRefused(m) => ApiError::snapshot_refused(m),
            S::ObjectStore(m) => ApiError::object_store(m, 5),
            S::LayerBuilding(m) => ApiError::conflict_of(
                "layer-building",
                "The session's dependency layer is still building",
                m,
            ),
            e @ S::ShuttingDown => ApiError::unavailable(e.to_string()),
            S::Fenced(m) => ApiError::unavailable(m),
            S::Store(e) => e.into(),
            S::Internal(m) => ApiError::internal(&m),
        }
    }
}

/// A workspace call's failure: the path at fault is the client's (checked
/// and escaped), never a host path.
fn file_error(e: warden_jail::BoxFileError) -> ApiError {
    use warden_jail::BoxFileError as F;
    let kind_conflict =
        |m: String| ApiError::conflict_of("file-kind", "The workspace entry cannot be used this way", m);
    match e {
        F::InvalidPath { .. } => ApiError::bad_field("path", e.to_string()),
        F::NotFound(p) => ApiError::not_found(format!("`{p}` does not exist in the session's workspace")),
        e @ (F::Link(_) | F::Escapes(_) | F::NotRegular { .. } | F::NotDirectory { .. }) => {
            kind_conflict(e.to_string())
        }
        e @ F::TooLarge { .. } => ApiError::too_large(e.to_string()),
        // Only unpacking reports it, and what is unpacked is the client's.
        e @ F::Archive { .. } => ApiError::bad_field("body", e.to_string()),
        F::Io { path, source } => match source.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                ApiError::disk_full(format!(
                    "the session's workspace is full (writing `{path}`): remove files or start a session with more disk"
                ))
            }
            std::io::ErrorKind::IsADirectory
            | std::io::ErrorKind::AlreadyExists
            | std::io::ErrorKind::DirectoryNotEmpty
            | std::io::ErrorKind::PermissionDenied
            | std::io::ErrorKind::ReadOnlyFilesystem
            | std::io::ErrorKind::ExecutableFileBusy
            | std::io::ErrorKind::ResourceBusy
            | std::io::ErrorKind::TooManyLinks => kind_conflict(format!("`{path}`: {source}")),
            _ => ApiError::internal(&format_args!("workspace file `{path}`: {source}")),
        },
    }
}

/// Displays an error with its sources, for logs.
pub struct DisplayChain<'a>(pub &'a dyn std::error::Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut s = self.0.source();
        while let Some(e) = s {
            write!(f, ": {e}")?;
            s = e.source();
        }
        Ok(())
    }
}

/// Logs each response once, inside the request's span (the trace layer's
/// `on_response`): server errors at `error` with their cause, client errors
/// at `debug`, the rest at `debug` too. It replaces the trace layer's own
/// failure log, so a failed request gives exactly one line.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOutcome;

impl<B> tower_http::trace::OnResponse<B> for LogOutcome {
    fn on_response(self, response: &Response<B>, latency: std::time::Duration, _: &tracing::Span) {
        let status = response.status().as_u16();
        let latency_ms = latency.as_secs_f64() * 1000.0;
        let cause = response
            .extensions()
            .get::<Outcome>()
            .and_then(|o| o.cause.as_deref());
        if response.status().is_server_error() {
            tracing::error!(status, latency_ms, cause = cause.unwrap_or("-"), "request failed");
        } else {
            tracing::debug!(status, latency_ms, cause, "answered");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tower_http::trace::OnResponse;

    use super::*;

    /// Captures what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(f: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn conversions_neither_log_nor_leak_and_the_response_logs_once() {
        let mut response = None;
        let during_conversion = capture(|| {
            let e = ApiError::from(RegistryError::Store(StoreError::Backend(
                "disk /var/lib/warden on fire".into(),
            )));
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(!e.problem().detail.contains("on fire"), "the cause is not sent");
            assert_eq!(e.cause(), Some("disk /var/lib/warden on fire"));
            let internal = ApiError::internal(&"a bug");
            assert_eq!(internal.problem().status, 500);
            response = Some(e.into_response());
        });
        assert_eq!(during_conversion, "", "conversions and rendering do not log");
        let response = response.unwrap();
        let logged = capture(|| {
            LogOutcome.on_response(
                &response,
                std::time::Duration::from_millis(3),
                &tracing::Span::none(),
            );
        });
        assert_eq!(logged.lines().count(), 1, "{logged}");
        assert!(
            logged.contains("ERROR") && logged.contains("disk /var/lib/warden on fire"),
            "{logged}"
        );
    }

    #[test]
    fn a_tampered_package_is_a_failure_to_count_carried_not_counted() {
        let e = ApiError::from(RegistryError::Tampered {
            plugin: "vendor.x.y".into(),
            version: "1.0.0".into(),
            expected: "aa".into(),
            found: "bb".into(),
        });
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let outcome = r.extensions().get::<Outcome>().expect("the outcome rides along");
        assert_eq!(
            outcome.plugin_failure,
            Some(PluginFailure {
                plugin: "vendor.x.y".into(),
                reason: "integrity".into()
            })
        );
    }
}
