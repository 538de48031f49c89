//! The nodes sharing one database: this node's heartbeat (with the URL the
//! others reach it at), who is alive, forwarding a request for a session
//! to the node that runs its box, and taking over the sessions of a node
//! that stopped beating.
//!
//! A node is alive while its heartbeat is younger than
//! `cluster.dead_after_secs`. Every `cluster.heartbeat_secs` a node beats,
//! then claims the live sessions of each dead node one by one (a
//! compare-and-set on the session's node: of several nodes, one wins; a dead
//! node that comes back finds them no longer its own and never resumes
//! them), resuming each from its latest snapshot or marking it `lost` with
//! the reason; and it ends the boxes it still holds for sessions that are no
//! longer its own (taken over while it was unreachable).
//!
//! Fencing: a node acts for its sessions only while it holds its lease, the
//! span `cluster.dead_after_secs` less a margin (a quarter of it) after the
//! start of its latest recorded heartbeat, measured on its own monotonic
//! clock. Past it (the database unreachable, the process frozen), others may
//! be about to take its sessions over: it refuses their requests (503), and a
//! watchdog ends their boxes without touching their records. Once it beats
//! again, the sessions still its own are resumed from their latest snapshot
//! or marked `lost`; the others' boxes are already gone. Takeover claims a
//! session only while its node's heartbeat is still the stale one it read
//! (one statement),
//! and every write a node makes to a session it holds is conditional on the
//! session still being its own.
//!
//! Forwarding carries the request as it came (the caller's key included:
//! the owner checks it) with a `Warden-Forwarded-By` header; a request that
//! already carries one is never forwarded again, so two nodes that disagree
//! about an owner cannot bounce a request between them.
//!
//! Must never: forward to a node that is not alive, forward twice, or let a
//! node act for a session past its lease.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use warden_core::model::now_ms;
use warden_core::{Node, Store, StoreError};
use warden_store::SqlStore;

use crate::AppState;
use crate::config::ClusterSection;
use crate::error::ApiError;
use crate::sessions::SessionManager;

/// The header a forwarded request carries: the node that forwarded it.
pub const FORWARDED_BY: &str = "warden-forwarded-by";

/// Headers of one hop only: never passed on.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::HOST,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// How long this node may act for its sessions: until its latest recorded
/// heartbeat, counted from when it was sent, is about to make it dead to
/// the others (see the module's documentation).
#[derive(Debug)]
pub struct Lease {
    until: Mutex<Option<Instant>>,
    span: Duration,
    dead_after_secs: u64,
}

impl Lease {
    /// A lease for a node others declare dead after `dead_after_secs`
    /// without a heartbeat: it lasts three quarters of that after each
    /// recorded heartbeat, leaving the rest as a margin for clock drift and
    /// for the node to notice. Not held until the first heartbeat.
    pub fn new(dead_after_secs: u64) -> Arc<Lease> {
        let span = Duration::from_secs(dead_after_secs).mul_f64(0.75);
        Arc::new(Lease {
            until: Mutex::new(None),
            span,
            dead_after_secs,
        })
    }

    /// A heartbeat sent at `sent` was recorded.
    fn renew(&self, sent: Instant) {
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let new = sent + self.span;
        if until.is_none_or(|u| u < new) {
            *until = Some(new);
        }
    }

    /// Whether this node may act for its sessions now.
    pub fn held(&self) -> bool {
        self.until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|u| Instant::now() < u)
    }

    /// Why this node does not act for its sessions (when not [`Lease::held`]).
    pub fn why_not(&self) -> String {
        format!(
            "this node has no recent heartbeat in the cluster's database (cluster.dead_after_secs is {} s): until it has one, it does not act for its sessions, which another node may take over; retry shortly",
            self.dead_after_secs
        )
    }
}

/// This node among the others (see the module's documentation).
pub struct Cluster {
    store: Arc<SqlStore>,
    me: Node,
    settings: ClusterSection,
    client: reqwest::Client,
    lease: Arc<Lease>,
}

impl Cluster {
    /// This node, named `id`, in the cluster `settings` describe; it acts
    /// for its sessions while it holds `lease` (renewed by its heartbeats).
    pub fn new(
        store: Arc<SqlStore>,
        id: String,
        settings: ClusterSection,
        lease: Arc<Lease>,
    ) -> Arc<Cluster> {
        let now = now_ms();
        // The client only ever speaks to the other nodes; TLS (https
        // advertise URLs) needs the process-wide provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Arc::new(Cluster {
            store,
            me: Node {
                id,
                advertise_url: settings
                    .advertise_url
                    .as_ref()
                    .map(|u| u.trim_end_matches('/').to_owned()),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at: now,
                heartbeat_at: now,
            },
            settings,
            client,
            lease,
        })
    }

    /// This node's name.
    pub fn id(&self) -> &str {
        &self.me.id
    }

    fn dead_after_ms(&self) -> i64 {
        i64::try_from(self.settings.dead_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// Record that this node is alive, now, and renew its lease from the
    /// moment the heartbeat was sent.
    pub async fn beat(&self) -> Result<(), StoreError> {
        let sent = Instant::now();
        let mut me = self.me.clone();
        me.heartbeat_at = now_ms();
        self.store.heartbeat(me).await?;
        self.lease.renew(sent);
        Ok(())
    }

    /// Every node, and whether it is alive now.
    pub async fn nodes(&self) -> Result<Vec<(Node, bool)>, StoreError> {
        let now = now_ms();
        let dead_after = self.dead_after_ms();
        Ok(self
            .store
            .list_nodes()
            .await?
            .into_iter()
            .map(|n| {
                let alive = !n.is_dead(now, dead_after);
                (n, alive)
            })
            .collect())
    }

    /// Where to forward a request for a session `node` runs: its URL, if
    /// it is alive and has one (and is not this node).
    pub async fn owner_url(&self, node: &str) -> Option<String> {
        if node == self.me.id {
            return None;
        }
        let n = self.store.get_node(node).await.ok()??;
        if n.is_dead(now_ms(), self.dead_after_ms()) {
            return None;
        }
        n.advertise_url
    }

    /// Send `req` to the node at `base` and answer what it answers
    /// (streamed both ways). A node that does not answer is a 502 naming it.
    pub async fn forward(&self, node: &str, base: &str, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut out = self
            .client
            .request(parts.method.clone(), format!("{base}{path}"))
            .body(reqwest::Body::wrap_stream(body.into_data_stream()));
        for (name, value) in &parts.headers {
            if !HOP_BY_HOP.contains(name) && name.as_str() != FORWARDED_BY {
                out = out.header(name, value);
            }
        }
        out = out.header(FORWARDED_BY, self.me.id.as_str());
        metrics::counter!("warden_requests_forwarded_total").increment(1);
        match out.send().await {
            Ok(answer) => {
                let mut r = Response::builder().status(answer.status());
                for (name, value) in answer.headers() {
                    if !HOP_BY_HOP.contains(name) {
                        r = r.header(name, value);
                    }
                }
                r.body(Body::from_stream(answer.bytes_stream()))
                    .unwrap_or_else(|e| ApiError::internal(&e).into_response())
            }
            Err(e) => {
                tracing::warn!(node, error = %e, "a forwarded request failed");
                let mut r = ApiError::unavailable(format!(
                    "the session runs on node {node}, which did not answer; retry shortly (if the node has died, another node takes the session over)"
                ))
                .into_response();
                *r.status_mut() = StatusCode::BAD_GATEWAY;
                r
            }
        }
    }

    /// Every `cluster.heartbeat_secs`, three tasks: one beats (and only
    /// that, so a slow takeover never delays the heartbeat); one, while
    /// this node holds its lease, takes back the sessions fenced off while
    /// it had none, takes over the sessions of dead nodes and ends the
    /// boxes of sessions no longer this node's; a watchdog ends the boxes
    /// of this node's sessions as soon as the lease runs out. Call once.
    pub fn start(self: &Arc<Self>, sessions: Arc<SessionManager>) {
        let every = Duration::from_secs(self.settings.heartbeat_secs);
        let me = Arc::downgrade(self);
        let closing = sessions.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(c) = me.upgrade() else { return };
                if closing.is_closing() {
                    return;
                }
                if let Err(e) = c.beat().await {
                    tracing::warn!(error = %e, "this node's heartbeat could not be recorded");
                }
            }
        });
        let me = Arc::downgrade(self);
        let tended = sessions.clone();
        tokio::spawn(async move {
            loop {
                let Some(c) = me.upgrade() else { return };
                if tended.is_closing() {
                    return;
                }
                if c.lease.held() {
                    tended.unfence().await;
                    match c.nodes().await {
                        Ok(nodes) => {
                            for (n, alive) in nodes {
                                if !alive && n.id != c.me.id {
                                    tended.take_over(&n, c.settings.dead_after_secs).await;
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "the nodes could not be listed"),
                    }
                    tended.drop_disowned().await;
                }
                drop(c);
                tokio::time::sleep(every).await;
            }
        });
        let lease = self.lease.clone();
        let tick = every.min(Duration::from_secs(1)) / 2;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                if sessions.is_closing() {
                    return;
                }
                if !lease.held() {
                    sessions.fence().await;
                }
            }
        });
    }
}

/// A node sharing the database.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct NodeView {
    /// Its `node_id`.
    pub id: String,
    /// Where other nodes forward its sessions' requests (none: not
    /// forwarded).
    pub advertise_url: Option<String>,
    /// Warden's version it runs.
    pub version: String,
    /// When it last started, Unix ms.
    pub started_at: i64,
    /// Its latest heartbeat, Unix ms.
    pub heartbeat_at: i64,
    /// Its heartbeat is younger than `cluster.dead_after_secs`.
    pub alive: bool,
    /// The node answering this request.
    pub this_node: bool,
}

/// The nodes sharing the database, and whether each is alive (admin).
#[utoipa::path(get, path = "/v1/nodes", tag = "operations",
    responses((status = 200, body = Vec<NodeView>), crate::api::Problems), security(("api_key" = [])))]
pub async fn list_nodes(
    State(s): State<AppState>,
    p: crate::auth::Principal,
) -> Result<axum::Json<Vec<NodeView>>, ApiError> {
    p.require_admin()?;
    let me = s.cluster.id().to_owned();
    Ok(axum::Json(
        s.cluster
            .nodes()
            .await?
            .into_iter()
            .map(|(n, alive)| NodeView {
                this_node: n.id == me,
                id: n.id,
                advertise_url: n.advertise_url,
                version: n.version,
                started_at: n.started_at,
                heartbeat_at: n.heartbeat_at,
                alive,
            })
            .collect(),
    ))
}

/// The paths below which a session's id comes first: the native API's and
/// seed 003's (`compat::seed003`), whose calls need the session's box too.
const SESSION_PREFIXES: &[&str] = &[
    "/v1/sessions/",
    "/api/v1/sessions/",
    "/api/v1/executions/sessions/",
];

/// The session id a path names (`/v1/sessions/{id}` and below, and seed
/// 003's session paths).
fn session_of(path: &str) -> Option<&str> {
    let rest = SESSION_PREFIXES.iter().find_map(|p| path.strip_prefix(p))?;
    let id = rest.split('/').next()?;
    (id.len() > 4 && id.starts_with("ses_") && id[4..].bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// Middleware: a request for a session another node runs goes to that node
/// (if it is alive and reachable), once.
pub async fn forward_sessions(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(id) = session_of(req.uri().path()) else {
        return next.run(req).await;
    };
    // Unauthenticated requests, and requests already forwarded, are
    // answered here.
    if req.headers().contains_key(FORWARDED_BY) || !req.headers().contains_key(header::AUTHORIZATION) {
        return next.run(req).await;
    }
    let owner = match s.store.get_session(id).await {
        Ok(Some(session)) if session.status.is_live() && session.node != s.cluster.id() => session.node,
        _ => return next.run(req).await,
    };
    match s.cluster.owner_url(&owner).await {
        Some(base) => s.cluster.forward(&owner, &base, req).await,
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_session_paths_are_forwarded() {
        assert_eq!(
            session_of("/v1/sessions/ses_0123456789abcdef01234567"),
            Some("ses_0123456789abcdef01234567")
        );
        assert_eq!(
            session_of("/v1/sessions/ses_0123456789abcdef01234567/files/a/b"),
            Some("ses_0123456789abcdef01234567")
        );
        assert_eq!(session_of("/v1/sessions"), None);
        assert_eq!(session_of("/v1/sessions/"), None);
        assert_eq!(session_of("/v1/sessions/ses_"), None);
        assert_eq!(session_of("/v1/sessions/ses_xyz"), None);
        assert_eq!(session_of("/v1/snapshots/snp_00"), None);
    }

    #[test]
    fn seed_003_session_paths_are_forwarded_too() {
        let id = "ses_0123456789abcdef01234567";
        for path in [
            format!("/api/v1/sessions/{id}"),
            format!("/api/v1/sessions/{id}/files/upload"),
            format!("/api/v1/executions/sessions/{id}/execute-sync"),
        ] {
            assert_eq!(session_of(&path), Some(id), "{path}");
        }
        assert_eq!(session_of("/api/v1/sessions"), None);
        assert_eq!(session_of("/api/v1/executions/exe_0123/status"), None);
        assert_eq!(session_of("/api/v1/templates/ses_0123"), None);
    }
}
