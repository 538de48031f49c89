//! The `/v1/sessions` handlers (and `POST /v1/executions/{id}/cancel`):
//! each parses its request into one call on the [`SessionManager`] and
//! renders its result. Authorization is the manager's (one place for every
//! front end); the `Principal` extractor answers 401 first.
//!
//! [`SessionManager`]: super::SessionManager

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt as _;
use utoipa::IntoResponses;
use utoipa::openapi::RefOr;
use warden_core::SessionFilter;
use warden_core::store::{ExecutionFilter, SnapshotFilter};

use super::files::{self, Ranged};
use super::views::*;
use crate::AppState;
use crate::api::{ApiJson, ApiPath, ApiQuery, described_problems, limit, visible_execution};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::views::{Binary, ExecutionView, Mode, Page};

macro_rules! problems {
    ($name:ident, $doc:literal, [$(($code:literal, $what:literal)),* $(,)?]) => {
        #[doc = $doc]
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                described_problems(&[$(($code, $what)),*])
            }
        }
    };
}

problems!(
    CreateProblems,
    "The error answers of creating a session.",
    [
        ("400", "The body cannot be read (the field is named)"),
        ("401", "No API key, or an unknown or revoked one"),
        (
            "403",
            "Developer keys cannot use sessions; an app key naming another app"
        ),
        ("413", "The body is over its limit"),
        ("415", "The body is not `application/json`"),
        ("404", "No such snapshot (or not this app's: the same answer)"),
        (
            "422",
            "Invalid: every problem located (unknown template or app, resources or timeouts beyond the server's policy, reserved environment names, hosts the template does not allow, bad extra packages, a dependency layer that failed to build, naming the package)"
        ),
        (
            "409",
            "The session's dependency layer is still building after the build's timeout (/problems/layer-building; follow the layer's events)"
        ),
        (
            "429",
            "The app's live sessions use up one of its quotas (sessions, memory, disk)"
        ),
        (
            "503",
            "This node has no room for another session (see Retry-After), or the store is unavailable"
        ),
    ]
);

problems!(
    SessionProblems,
    "The error answers of a call on one session.",
    [
        ("400", "A parameter cannot be read (named)"),
        ("401", "No API key, or an unknown or revoked one"),
        ("403", "Developer keys cannot use sessions"),
        ("404", "No such session (or not this app's: the same answer)"),
        (
            "409",
            "The session's state does not allow this (`current_state`), or it runs on another node"
        ),
        ("503", "The store is unavailable, or the server is shutting down"),
    ]
);

problems!(
    ExecProblems,
    "The error answers of running code in a session.",
    [
        ("400", "The body cannot be read (the field is named)"),
        ("401", "No API key, or an unknown or revoked one"),
        ("403", "Developer keys cannot use sessions"),
        ("404", "No such session (or not this app's: the same answer)"),
        (
            "409",
            "The session is not running (`current_state`), or it runs on another node"
        ),
        ("413", "The body is over its limit"),
        ("415", "The body is not `application/json`"),
        (
            "422",
            "Invalid: every problem located (a mode the language lacks, code over `sessions.max_code_bytes`, a timeout beyond the policy, an event outside handler mode, reserved environment names)"
        ),
        (
            "429",
            "The session has `sessions.max_pending` executions running or waiting (see Retry-After)"
        ),
        ("503", "The store is unavailable, or the server is shutting down"),
    ]
);

problems!(
    CancelProblems,
    "The error answers of cancelling an execution.",
    [
        ("400", "A parameter cannot be read (named)"),
        ("401", "No API key, or an unknown or revoked one"),
        (
            "403",
            "Only the app that ran it (or an admin) may cancel an execution"
        ),
        ("404", "No such execution (or not yours: the same answer)"),
        (
            "409",
            "It has ended, runs a plugin (only a session's executions can be cancelled), or runs on another node"
        ),
        ("503", "The store is unavailable"),
    ]
);

problems!(
    FileProblems,
    "The error answers of a file call.",
    [
        (
            "400",
            "The path cannot be used (NUL, control characters, absolute, `..`, `.` or empty segments, over-long): the reason is named"
        ),
        ("401", "No API key, or an unknown or revoked one"),
        ("403", "Developer keys cannot use sessions"),
        (
            "404",
            "No such session (or not this app's), or nothing at the path"
        ),
        (
            "409",
            "The session is not running; or the entry cannot be used this way (a directory, a symbolic link on the way, a FIFO or device, a file where a directory is needed)"
        ),
        ("503", "The store is unavailable, or the server is shutting down"),
    ]
);

problems!(
    DownloadProblems,
    "The error answers of a download.",
    [
        (
            "400",
            "The path cannot be used (NUL, control characters, absolute, `..`, `.` or empty segments, over-long): the reason is named"
        ),
        ("401", "No API key, or an unknown or revoked one"),
        ("403", "Developer keys cannot use sessions"),
        (
            "404",
            "No such session (or not this app's), or nothing at the path"
        ),
        (
            "409",
            "The session is not running; or the entry is not a regular file (a directory, a symbolic link on the way, a FIFO or device)"
        ),
        (
            "416",
            "The `Range` lies outside the file (`Content-Range: bytes */SIZE`)"
        ),
        ("503", "The store is unavailable, or the server is shutting down"),
    ]
);

problems!(
    UploadProblems,
    "The error answers of an upload or a new directory.",
    [
        (
            "400",
            "The path or the form cannot be used (the reason is named): NUL, control characters, absolute, `..`, `.` or empty segments, over-long; a form without its one `file` field"
        ),
        ("401", "No API key, or an unknown or revoked one"),
        ("403", "Developer keys cannot use sessions"),
        ("404", "No such session (or not this app's: the same answer)"),
        (
            "409",
            "The session is not running; or the entry cannot be used this way (a directory, a symbolic link on the way, a FIFO or device, a file where a directory is needed)"
        ),
        ("413", "Larger than `sessions.max_upload_bytes`"),
        ("415", "The body's Content-Type is not one the operation takes"),
        ("503", "The store is unavailable, or the server is shutting down"),
        ("507", "The session's workspace is full"),
    ]
);

problems!(
    DirectoryProblems,
    "The error answers of making a directory.",
    [
        (
            "400",
            "The path cannot be used (the reason is named): NUL, control characters, absolute, `..`, `.` or empty segments, over-long"
        ),
        ("401", "No API key, or an unknown or revoked one"),
        ("403", "Developer keys cannot use sessions"),
        ("404", "No such session (or not this app's: the same answer)"),
        (
            "409",
            "The session is not running; or the entry cannot be used this way (a symbolic link on the way, a FIFO or device, a file where a directory is needed)"
        ),
        ("413", "The body is over its limit"),
        ("415", "The body is not `application/json`"),
        (
            "422",
            "The body is not a `NewDirectoryBody` (a field missing or unknown)"
        ),
        ("503", "The store is unavailable, or the server is shutting down"),
        ("507", "The session's workspace is full"),
    ]
);

fn located(mut r: Response, location: &str) -> Response {
    if let Ok(h) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, h);
    }
    r
}

// ---------------------------------------------------------------- sessions

/// Open a sandbox session from a template (`python-basic` when none is
/// named): its box is started before the answer. Resources, timeouts,
/// environment and network within the template's and the server's policy;
/// the app's and the node's quotas apply.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = NewSessionBody,
    responses(
        (status = 201, description = "The session, running", body = SessionView, links(("get_session" = (operation_id = "get_session", parameters(("id" = "$response.body#/id")))), ("execute_in_session" = (operation_id = "execute_in_session", parameters(("id" = "$response.body#/id")))), ("list_files" = (operation_id = "list_files", parameters(("id" = "$response.body#/id")))), ("terminate_session" = (operation_id = "terminate_session", parameters(("id" = "$response.body#/id")))))),
        CreateProblems),
    security(("api_key" = [])))]
pub async fn create_session(
    State(s): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<NewSessionBody>,
) -> Result<Response, ApiError> {
    let (app, req) = body.into_request();
    let session = s.sessions.create(&p.actor, app, req).await?;
    let location = format!("/v1/sessions/{}", session.id);
    Ok(located(
        (StatusCode::CREATED, Json(SessionView::from(session))).into_response(),
        &location,
    ))
}

/// List sessions, newest first (apps see their own; admins all).
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", params(SessionQuery),
    responses((status = 200, body = Page<SessionView>, links(("get_session" = (operation_id = "get_session", parameters(("id" = "$response.body#/items/0/id")))))), SessionProblems),
    security(("api_key" = [])))]
pub async fn list_sessions(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<SessionQuery>,
) -> Result<Json<Page<SessionView>>, ApiError> {
    let page = s
        .sessions
        .list(
            &p.actor,
            SessionFilter {
                app: q.app,
                template: q.template,
                status: q.status.map(Into::into),
                node: None,
                cursor: q.cursor,
                limit: limit(q.limit)?,
            },
        )
        .await?;
    Ok(Json(Page::of(page)))
}

/// One session.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id", pattern = "^ses_[0-9a-f]{24,32}$")),
    responses((status = 200, body = SessionView), SessionProblems), security(("api_key" = [])))]
pub async fn get_session(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(s.sessions.get(&p.actor, &id).await?.into()))
}

/// End a session: its running execution is cancelled, its box killed, its
/// workspace and everything it held freed. The record stays (`terminated`,
/// with the reason). With `?snapshot=true` the workspace is snapshotted
/// first (the snapshot's id is in the `Warden-Snapshot` header); if the
/// snapshot fails, the session is not terminated.
#[utoipa::path(post, path = "/v1/sessions/{id}/terminate", tag = "sessions",
    params(("id" = String, Path, description = "Session id", pattern = "^ses_[0-9a-f]{24,32}$"), TerminateQuery),
    responses((status = 200, description = "The session, ended", body = SessionView,
        headers(("Warden-Snapshot" = String, description = "The snapshot taken first (with `?snapshot=true`)"))),
        SnapshotProblems), security(("api_key" = [])))]
pub async fn terminate_session(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TerminateQuery>,
) -> Result<Response, ApiError> {
    if q.snapshot == Some(true) {
        let (ended, snap) = s.sessions.terminate_with_snapshot(&p.actor, &id).await?;
        let mut r = Json(SessionView::from(ended)).into_response();
        if let Ok(h) = HeaderValue::from_str(&snap.id) {
            r.headers_mut().insert("warden-snapshot", h);
        }
        return Ok(r);
    }
    Ok(Json(SessionView::from(s.sessions.terminate(&p.actor, &id).await?)).into_response())
}

// --------------------------------------------------------------- snapshots

problems!(
    SnapshotProblems,
    "The error answers of taking a snapshot.",
    [
        ("400", "A parameter cannot be used (it is named)"),
        ("401", "No API key, or an unknown or revoked one"),
        ("403", "Developer keys cannot use sessions"),
        ("404", "No such session (or not this app's: the same answer)"),
        ("409", "The session is not running, or runs on another node"),
        (
            "422",
            "The workspace is larger than `sessions.snapshot_max_mb` (or deeper, or holds more entries, than a snapshot may)"
        ),
        (
            "503",
            "The object store did not take the archive (the snapshot is recorded `failed`; the session keeps running), the store is unavailable, or the server is shutting down"
        ),
    ]
);

problems!(
    SnapshotReadProblems,
    "The error answers of reading or deleting snapshots.",
    [
        ("400", "A parameter cannot be used (it is named)"),
        ("401", "No API key, or an unknown or revoked one"),
        (
            "403",
            "Developer keys cannot use sessions; an app key naming another app"
        ),
        ("404", "No such snapshot (or not this app's: the same answer)"),
        (
            "422",
            "The snapshot is still being taken (it cannot be deleted yet)"
        ),
        ("503", "The store or the object store is unavailable"),
    ]
);

/// Snapshot a running session's workspace into the object store now (after
/// its running execution, if any). A session can later start from it
/// (`POST /v1/sessions` with `snapshot`), and the session itself resumes
/// from its latest snapshot if its node restarts.
#[utoipa::path(post, path = "/v1/sessions/{id}/snapshots", tag = "sessions",
    params(("id" = String, Path, description = "Session id", pattern = "^ses_[0-9a-f]{24,32}$")),
    responses((status = 201, description = "The snapshot, ready", body = SnapshotView,
        links(("get_snapshot" = (operation_id = "get_snapshot", parameters(("id" = "$response.body#/id")))), ("delete_snapshot" = (operation_id = "delete_snapshot", parameters(("id" = "$response.body#/id")))))),
        SnapshotProblems), security(("api_key" = [])))]
pub async fn snapshot_session(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let snap = s.sessions.snapshot(&p.actor, &id).await?;
    let location = format!("/v1/snapshots/{}", snap.id);
    Ok(located(
        (StatusCode::CREATED, Json(SnapshotView::from(snap))).into_response(),
        &location,
    ))
}

problems!(
    InstallProblems,
    "The error answers of installing packages into a session.",
    [
        ("400", "The body cannot be read (the field is named)"),
        ("401", "No API key, or an unknown or revoked one"),
        ("403", "Developer keys cannot use sessions"),
        ("404", "No such session (or not this app's: the same answer)"),
        (
            "409",
            "The session is not running (`current_state`), runs on another node, its template was deleted, or its new layer is still building after the build's timeout (/problems/layer-building)"
        ),
        ("413", "The body is over its limit"),
        ("415", "The body is not `application/json`"),
        (
            "422",
            "Invalid: every problem located (no packages, a package the template or the session has already, another ecosystem, a layer that failed to build, naming the package)"
        ),
        ("503", "The store is unavailable, or the server is shutting down"),
    ]
);

/// Install packages into a running session: its new dependency layer (the
/// template's packages, the session's and these) is built, then the session
/// moves to a box that binds it, its workspace carried over. Its `/tmp`,
/// the processes it left running and a stateful interpreter's variables do
/// not survive the move; on any failure the session runs on unchanged.
#[utoipa::path(post, path = "/v1/sessions/{id}/packages", tag = "sessions",
    params(("id" = String, Path, description = "Session id", pattern = "^ses_[0-9a-f]{24,32}$")),
    request_body = InstallBody,
    responses((status = 200, description = "Installed: the session in its new box", body = InstalledView),
        InstallProblems), security(("api_key" = [])))]
pub async fn install_packages(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    body: Result<ApiJson<InstallBody>, ApiError>,
) -> Result<Json<InstalledView>, ApiError> {
    // Whether the caller may touch the session is answered before its body
    // is read: another app learns nothing from a malformed request.
    s.sessions.get(&p.actor, &id).await?;
    let ApiJson(body) = body?;
    Ok(Json(
        s.sessions.install(&p.actor, &id, body.packages).await?.into(),
    ))
}

/// List snapshots, newest first (apps see their own; admins all).
#[utoipa::path(get, path = "/v1/snapshots", tag = "sessions", params(SnapshotQuery),
    responses((status = 200, body = Page<SnapshotView>), SnapshotReadProblems),
    security(("api_key" = [])))]
pub async fn list_snapshots(
    State(s): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<SnapshotQuery>,
) -> Result<Json<Page<SnapshotView>>, ApiError> {
    let page = s
        .sessions
        .list_snapshots(
            &p.actor,
            SnapshotFilter {
                app: q.app,
                session: q.session,
                status: q.status.map(Into::into),
                cursor: q.cursor,
                limit: limit(q.limit)?,
            },
        )
        .await?;
    Ok(Json(Page::of(page)))
}

/// One snapshot.
#[utoipa::path(get, path = "/v1/snapshots/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Snapshot id", pattern = "^snp_[0-9a-f]{24,32}$")),
    responses((status = 200, body = SnapshotView), SnapshotReadProblems), security(("api_key" = [])))]
pub async fn get_snapshot(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SnapshotView>, ApiError> {
    Ok(Json(s.sessions.get_snapshot(&p.actor, &id).await?.into()))
}

/// Delete a snapshot: its archive in the object store, then its record.
#[utoipa::path(delete, path = "/v1/snapshots/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Snapshot id", pattern = "^snp_[0-9a-f]{24,32}$")),
    responses((status = 204, description = "Deleted"), SnapshotReadProblems), security(("api_key" = [])))]
pub async fn delete_snapshot(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.sessions.delete_snapshot(&p.actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a session: terminated first if it is live, then its record (its
/// executions' records stay).
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id", pattern = "^ses_[0-9a-f]{24,32}$")),
    responses((status = 204, description = "Deleted"), SessionProblems), security(("api_key" = [])))]
pub async fn delete_session(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    s.sessions.delete(&p.actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- executions

/// Run code in a session: a script (output and exit code), a handler
/// (`handler(event)`, the return value as JSON) or a cell of the
/// language's persistent interpreter (`repl`). Executions of a session run
/// one at a time, in order; each is an ordinary execution record, streamed
/// at `/v1/executions/{id}/events`. `?mode=async` answers 202 at once.
#[utoipa::path(post, path = "/v1/sessions/{id}/executions", tag = "sessions",
    params(("id" = String, Path, description = "Session id", pattern = "^ses_[0-9a-f]{24,32}$"), SessionExecuteQuery),
    request_body = NewExecutionBody,
    responses(
        (status = 200, description = "The finished execution", body = ExecutionView, links(("get_execution" = (operation_id = "get_execution", parameters(("id" = "$response.body#/id")))), ("execution_events" = (operation_id = "execution_events", parameters(("id" = "$response.body#/id")))))),
        (status = 202, description = "Accepted (async, or still running after `sessions.sync_wait_secs`): the execution as recorded", body = ExecutionView, links(("get_execution" = (operation_id = "get_execution", parameters(("id" = "$response.body#/id")))), ("execution_events" = (operation_id = "execution_events", parameters(("id" = "$response.body#/id")))), ("cancel_execution" = (operation_id = "cancel_execution", parameters(("id" = "$response.body#/id")))))),
        ExecProblems),
    security(("api_key" = [])))]
pub async fn execute_in_session(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SessionExecuteQuery>,
    ApiJson(body): ApiJson<NewExecutionBody>,
) -> Result<Response, ApiError> {
    let asynchronous = q.mode == Some(Mode::Async);
    let accepted = s
        .sessions
        .execute(&p.actor, &id, body.into_request(), asynchronous)
        .await?;
    let location = format!("/v1/executions/{}", accepted.record.id);
    let (status, record) = if asynchronous {
        (StatusCode::ACCEPTED, accepted.record)
    } else {
        match tokio::time::timeout(s.sessions.sync_wait(), accepted.done).await {
            Ok(Ok(done)) => (StatusCode::OK, done),
            // Still running (or its task ended without a word): the record
            // as it is; the client polls or streams it.
            _ => {
                let now = warden_core::Store::get_execution(&*s.store, &accepted.record.id)
                    .await?
                    .unwrap_or(accepted.record);
                let status = if now.status.is_final() {
                    StatusCode::OK
                } else {
                    StatusCode::ACCEPTED
                };
                (status, now)
            }
        }
    };
    Ok(located(
        (status, Json(ExecutionView::from(record))).into_response(),
        &location,
    ))
}

/// A session's executions, newest first.
#[utoipa::path(get, path = "/v1/sessions/{id}/executions", tag = "sessions",
    params(("id" = String, Path, description = "Session id", pattern = "^ses_[0-9a-f]{24,32}$"), SessionExecutionQuery),
    responses((status = 200, body = Page<ExecutionView>, links(("get_execution" = (operation_id = "get_execution", parameters(("id" = "$response.body#/items/0/id")))))), SessionProblems),
    security(("api_key" = [])))]
pub async fn list_session_executions(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SessionExecutionQuery>,
) -> Result<Json<Page<ExecutionView>>, ApiError> {
    let page = s
        .sessions
        .executions(
            &p.actor,
            &id,
            ExecutionFilter {
                status: q.status,
                cursor: q.cursor,
                limit: limit(q.limit)?,
                ..ExecutionFilter::default()
            },
        )
        .await?;
    Ok(Json(Page::of(page)))
}

/// Cancel an execution running or waiting in a session: its processes are
/// killed (the session and its files stay) and it ends `cancelled`. Answers
/// the execution once final.
#[utoipa::path(post, path = "/v1/executions/{id}/cancel", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^exe_[0-9a-f]{24,32}$")),
    responses((status = 200, description = "The execution, as it ended", body = ExecutionView), CancelProblems), security(("api_key" = [])))]
pub async fn cancel_execution(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ExecutionView>, ApiError> {
    // Developers never cancel: a role check, whatever the execution.
    if p.actor.role == warden_core::Role::Developer {
        return Err(ApiError::forbidden(
            "only the app that ran an execution (or an admin) may cancel it",
        ));
    }
    let e = visible_execution(&s, &p, &id).await?;
    Ok(Json(s.sessions.cancel(&p.actor, e).await?.into()))
}

// ---------------------------------------------------------------- files

/// List a directory of the session's workspace: names, kinds (a link or a
/// FIFO is shown, never followed or opened), sizes, modification times.
#[utoipa::path(get, path = "/v1/sessions/{id}/files", tag = "sessions",
    params(("id" = String, Path, description = "Session id", pattern = "^ses_[0-9a-f]{24,32}$"), FilesQuery),
    responses((status = 200, body = FileListView, links(("download_file" = (operation_id = "download_file", parameters(("id" = "$request.path.id"), ("path" = "$response.body#/entries/0/path")))))), FileProblems),
    security(("api_key" = [])))]
pub async fn list_files(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FilesQuery>,
) -> Result<Json<FileListView>, ApiError> {
    let (dir, entries, truncated) = s.sessions.list_files(&p.actor, &id, q.path.as_deref()).await?;
    Ok(Json(FileListView {
        entries: entries.into_iter().map(|e| FileEntryView::of(&dir, e)).collect(),
        path: dir,
        truncated,
    }))
}

/// Download a file of the session's workspace, streamed; one byte range
/// (`Range: bytes=…`) answers 206. Links are never followed; FIFOs and
/// devices are never opened.
#[utoipa::path(get, path = "/v1/sessions/{id}/files/{path}", tag = "sessions",
    params(("id" = String, Path, description = "Session id", pattern = "^ses_[0-9a-f]{24,32}$"), ("path" = String, Path, description = "The file's path relative to the workspace: `/` between names; no empty, `.` or `..` name, no control characters; a name at most 255 bytes, the path 4096", max_length = 4096, pattern = "^([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253})(/([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253}))*$"), ("Range" = Option<String>, Header, description = "One byte range: `bytes=FIRST-LAST`, `bytes=FIRST-` or `bytes=-SUFFIX` (anything else is ignored)")),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = inline(Binary)),
        (status = 206, description = "The range asked for (`Content-Range` says which)", content_type = "application/octet-stream", body = inline(Binary)),
        DownloadProblems),
    security(("api_key" = [])))]
pub async fn download_file(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((id, path)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let open = s.sessions.open_file(&p.actor, &id, &path).await?;
    let size = open.size;
    let asked = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len) = match files::range(asked, size) {
        Ranged::Whole => (StatusCode::OK, 0, size),
        Ranged::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Ranged::Unsatisfiable => {
            let mut r = ApiError::range_not_satisfiable(format!(
                "the file is {size} bytes; the range `{}` lies outside it",
                asked.unwrap_or_default()
            ))
            .into_response();
            if let Ok(h) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, h);
            }
            return Ok(r);
        }
    };
    let body = Body::from_stream(files::stream(open.file, start, len));
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        files::attachment_name(&open.path)
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

fn written(w: super::Written) -> Response {
    let status = if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let dir = match w.path.rsplit_once('/') {
        Some((d, _)) => d.to_owned(),
        None => String::new(),
    };
    (status, Json(FileEntryView::of(&dir, w.entry))).into_response()
}

/// Refuse a body that says it is over the cap before anything is touched.
fn check_length(headers: &HeaderMap, cap: u64) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > cap => Err(ApiError::too_large(format!(
            "the upload is {n} bytes; the limit is {cap} (sessions.max_upload_bytes)"
        ))),
        _ => Ok(()),
    }
}

/// Upload a file into the session's workspace: the body is the file
/// (streamed; at most `sessions.max_upload_bytes`). Missing directories
/// are made; an existing file is replaced (200); a link, FIFO or
/// directory in its place is refused.
#[utoipa::path(put, path = "/v1/sessions/{id}/files/{path}", tag = "sessions",
    params(("id" = String, Path, description = "Session id", pattern = "^ses_[0-9a-f]{24,32}$"), ("path" = String, Path, description = "The file's path relative to the workspace: `/` between names; no empty, `.` or `..` name, no control characters; a name at most 255 bytes, the path 4096", max_length = 4096, pattern = "^([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253})(/([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253}))*$")),
    request_body(description = "The file's bytes", content((inline(Binary) = "application/octet-stream"))),
    responses(
        (status = 201, description = "Created", body = FileEntryView),
        (status = 200, description = "Replaced", body = FileEntryView),
        UploadProblems),
    security(("api_key" = [])))]
pub async fn put_file(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((id, path)): ApiPath<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    check_length(req.headers(), s.sessions.max_upload_bytes())?;
    let body = req.into_body().into_data_stream().map_err(|e| super::BodyError {
        too_large: false,
        message: e.to_string(),
    });
    let w = s
        .sessions
        .write_file(&p.actor, &id, &path, "path:path", body)
        .await?;
    Ok(written(w))
}

/// Upload a file into the session's workspace as a form with one field,
/// `file` (at most `sessions.max_upload_bytes`), to `?path=`. Missing
/// directories are made; an existing file is replaced (200).
#[utoipa::path(post, path = "/v1/sessions/{id}/files", tag = "sessions",
    params(("id" = String, Path, description = "Session id", pattern = "^ses_[0-9a-f]{24,32}$"), ("path" = String, Query, description = "The file's path relative to the workspace: `/` between names; no empty, `.` or `..` name, no control characters; a name at most 255 bytes, the path 4096. Missing directories are made.", max_length = 4096, pattern = "^([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253})(/([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253}))*$")),
    request_body(content = UploadFileForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Created", body = FileEntryView),
        (status = 200, description = "Replaced", body = FileEntryView),
        UploadProblems),
    security(("api_key" = [])))]
pub async fn upload_file(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    // The session first: a caller who may not see it learns nothing more.
    s.sessions.get(&p.actor, &id).await?;
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_form {
        return Err(ApiError::rejection(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the file as `multipart/form-data` with one field, `file` (or PUT the bytes to /v1/sessions/{id}/files/{path})".into(),
        ));
    }
    let Some(path) = q.path else {
        return Err(ApiError::bad_field(
            "query:path",
            "name the file's path in the workspace: `?path=…`",
        ));
    };
    let mut form = Multipart::from_request(req, &s)
        .await
        .map_err(|r| ApiError::rejection(r.status(), r.body_text()))?;
    let mut written_file = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::rejection(e.status(), e.body_text()))?
    {
        match field.name() {
            Some("file") if written_file.is_none() => {
                let location = "query:path";
                let body = field.map_err(|e| super::BodyError {
                    too_large: e.status() == StatusCode::PAYLOAD_TOO_LARGE,
                    message: e.body_text(),
                });
                written_file = Some(
                    s.sessions
                        .write_file(&p.actor, &id, &path, location, body)
                        .await?,
                );
            }
            Some("file") => {
                return Err(ApiError::bad_field("form:file", "the form has two `file` fields"));
            }
            other => {
                return Err(ApiError::bad_field(
                    &format!("form:{}", other.unwrap_or_default()),
                    "unknown field: the form has one field, `file`",
                ));
            }
        }
    }
    let w = written_file.ok_or_else(|| ApiError::bad_field("form:file", "the form has no `file` field"))?;
    Ok(written(w))
}

/// Remove a file, a link (never what it points to) or a directory tree of
/// the session's workspace.
#[utoipa::path(delete, path = "/v1/sessions/{id}/files/{path}", tag = "sessions",
    params(("id" = String, Path, description = "Session id", pattern = "^ses_[0-9a-f]{24,32}$"), ("path" = String, Path, description = "The path relative to the workspace: `/` between names; no empty, `.` or `..` name, no control characters; a name at most 255 bytes, the path 4096", max_length = 4096, pattern = "^([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253})(/([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253}))*$")),
    responses((status = 204, description = "Removed"), FileProblems), security(("api_key" = [])))]
pub async fn delete_file(
    State(s): State<AppState>,
    p: Principal,
    ApiPath((id, path)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.sessions.remove_file(&p.actor, &id, &path).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make a directory in the session's workspace, and its missing parents
/// (201; 200 when it was there already).
#[utoipa::path(post, path = "/v1/sessions/{id}/directories", tag = "sessions",
    params(("id" = String, Path, description = "Session id", pattern = "^ses_[0-9a-f]{24,32}$")),
    request_body = NewDirectoryBody,
    responses(
        (status = 201, description = "Made", body = FileEntryView),
        (status = 200, description = "It was there already", body = FileEntryView),
        DirectoryProblems),
    security(("api_key" = [])))]
pub async fn make_directory(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewDirectoryBody>,
) -> Result<Response, ApiError> {
    let w = s.sessions.make_dir(&p.actor, &id, &body.path, "/path").await?;
    Ok(written(w))
}
