//! One error type for every handler, rendered as an RFC 9457
//! `application/problem+json` document. Clients get what they can act on
//! (the field or file at fault, the state and the allowed moves); internals
//! are logged with the request id, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use warden_core::{RegistryError, StoreError};

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
        }))
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

    /// 503: a dependency (the store, the jail) is unavailable.
    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
            detail,
        )
    }

    /// 500, with the cause logged and a generic message sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server failed; the error is logged with this request's id",
        )
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0.status.is_server_error() {
            tracing::warn!(status = self.0.status.as_u16(), detail = %self.0.detail, "request failed");
        }
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
            StoreError::Backend(m) => {
                tracing::error!(error = %m, "store failed");
                ApiError::unavailable("the store is unavailable; retry shortly")
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
            RegistryError::Conflict(m) => ApiError::conflict(m),
            RegistryError::Tampered { ref plugin, .. } => {
                metrics::counter!("warden_plugin_failures_total", "plugin" => plugin.clone(), "reason" => "integrity")
                    .increment(1);
                ApiError::new(
                    StatusCode::CONFLICT,
                    "integrity",
                    "The stored package failed its integrity check",
                    e.to_string(),
                )
            }
            RegistryError::Store(s) => s.into(),
            RegistryError::Io { .. } => ApiError::internal(&DisplayChain(&e)),
        }
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
