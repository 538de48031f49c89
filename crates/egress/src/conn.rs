//! One connection from a box, from accept to its record.
//!
//! hyper reads the request head (bounded in size and time, one request per
//! connection); the service decides: target form → allow-list → resolution
//! and address checks → connect. A `CONNECT` then becomes a tunnel (hyper
//! hands over the box's socket, with any bytes it already read); a plain
//! HTTP request is forwarded (`forward`). Stop and the idle clock race the
//! whole connection; the record is written by a guard, so a connection
//! ended any way (even aborted) is recorded exactly once.
//!
//! Must never: answer a refusal without recording it, or read more of the
//! box's request head than the limit.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::credential::{CREDENTIAL_HEADER, Credential};
use crate::forward::{self, Body};
use crate::host::{Host, HostError, Target};
use crate::io::{Meter, Metered, linger_close};
use crate::policy::Kind;
use crate::proxy::Shared;
use crate::record::{ConnectionRecord, Cut, Reason, Refusal, Verdict};

/// The header naming the reason on every response the proxy makes itself.
pub const REASON_HEADER: &str = "x-warden-egress-reason";

/// What is known about the connection so far.
#[derive(Default)]
struct Draft {
    method: Option<String>,
    target: Option<Target>,
    address: Option<SocketAddr>,
    credential: Option<String>,
    refusal: Option<Refusal>,
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// State shared by the connection's task and hyper's service calls.
struct Conn {
    shared: Arc<Shared>,
    meter: Arc<Meter>,
    draft: Mutex<Draft>,
    tunnel: Mutex<Option<(OnUpgrade, Metered)>>,
    driver: Mutex<Option<AbortOnDrop>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes the record when dropped.
struct Finish {
    conn: Arc<Conn>,
    id: u64,
    started_at: i64,
    start: Instant,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let draft = std::mem::take(&mut *lock(&self.conn.draft));
        let meter = &self.conn.meter;
        let verdict = match (draft.refusal, draft.address) {
            (Some(r), _) => Verdict::Refused {
                reason: r.reason,
                message: r.message,
            },
            (None, Some(_)) => Verdict::Allowed {
                cut: meter.take_cut(),
            },
            (None, None) => Verdict::Refused {
                reason: Reason::Stopped,
                message: "the proxy stopped before this connection was decided".into(),
            },
        };
        self.conn.shared.recorder.push(ConnectionRecord {
            id: self.id,
            started_at: self.started_at,
            duration_ms: self.start.elapsed().as_secs_f64() * 1000.0,
            method: draft.method,
            host: draft.target.as_ref().map(|t| t.host.record_form()),
            port: draft.target.as_ref().map(|t| t.port),
            address: draft.address,
            credential: draft.credential,
            bytes_up: meter.up(),
            bytes_down: meter.down(),
            verdict,
        });
    }
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Resolves once the proxy is stopped (or its handle is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The response the proxy gives for a refusal: the reason's status, the
/// reason in a header and the message in a plain-text body.
pub(crate) fn refusal_response(r: &Refusal) -> Response<Body> {
    let body = format!("warden egress proxy: {} ({})\n", r.message, r.reason.as_str());
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *resp.status_mut() = StatusCode::from_u16(r.reason.status()).unwrap_or(StatusCode::FORBIDDEN);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(REASON_HEADER, HeaderValue::from_static(r.reason.as_str()));
    resp
}

/// The refusal a host that does not parse gets.
pub(crate) fn host_refusal(host: &str, e: HostError) -> Refusal {
    let reason = match e {
        HostError::NonAscii => Reason::NonAsciiHost,
        HostError::Numeric => Reason::IpLiteral,
        _ => Reason::InvalidHost,
    };
    Refusal::new(reason, format!("the host `{}` {e}", host.escape_debug()))
}

/// The target of a `CONNECT`: authority form, with a port.
fn connect_target(uri: &Uri) -> Result<Target, Refusal> {
    let authority = match (uri.scheme(), uri.authority(), uri.path_and_query()) {
        (None, Some(a), None) => a,
        _ => {
            return Err(Refusal::new(
                Reason::BadTarget,
                "CONNECT takes host:port, nothing else",
            ));
        }
    };
    target_of(authority, None)
}

/// The target of a plain HTTP request: absolute form, scheme `http`.
fn absolute_target(uri: &Uri) -> Result<Target, Refusal> {
    let Some(scheme) = uri.scheme_str() else {
        return Err(if uri.authority().is_some() {
            Refusal::new(Reason::BadTarget, "only CONNECT takes a host:port target")
        } else {
            Refusal::new(
                Reason::OriginForm,
                "this is a proxy: send absolute URLs (GET http://host/path) or CONNECT host:port",
            )
        });
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(Refusal::new(
            Reason::UnsupportedScheme,
            "https goes through a CONNECT tunnel, not an absolute https:// URL",
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(Refusal::new(
            Reason::UnsupportedScheme,
            format!(
                "the scheme `{}` is not proxied; only http and CONNECT",
                scheme.escape_debug()
            ),
        ));
    }
    let Some(authority) = uri.authority() else {
        return Err(Refusal::new(Reason::BadTarget, "the URL has no host"));
    };
    target_of(authority, Some(80))
}

/// The target of a request naming a credential: absolute form, `http` or
/// `https` (the proxy opens TLS itself: it must see the request to put the
/// secret in); true for `https`.
fn credential_target(uri: &Uri) -> Result<(Target, bool), Refusal> {
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => {
            let Some(authority) = uri.authority() else {
                return Err(Refusal::new(Reason::BadTarget, "the URL has no host"));
            };
            Ok((target_of(authority, Some(443))?, true))
        }
        _ => Ok((absolute_target(uri)?, false)),
    }
}

pub(crate) fn target_of(
    authority: &http::uri::Authority,
    default_port: Option<u16>,
) -> Result<Target, Refusal> {
    if authority.as_str().contains('@') {
        return Err(Refusal::new(
            Reason::BadTarget,
            "user info in the target is not accepted",
        ));
    }
    let host = Host::parse(authority.host()).map_err(|e| host_refusal(authority.host(), e))?;
    let port = match (authority.port_u16(), default_port) {
        (Some(0), _) => return Err(Refusal::new(Reason::BadTarget, "port 0 is not a port")),
        (Some(p), _) => p,
        (None, Some(p)) if authority.port().is_none() => p,
        (None, _) => {
            return Err(Refusal::new(
                Reason::BadTarget,
                "CONNECT needs host:port with a port from 1 to 65535",
            ));
        }
    };
    Ok(Target { host, port })
}

impl Conn {
    fn draft(&self) -> MutexGuard<'_, Draft> {
        lock(&self.draft)
    }

    /// hyper's service: one call per connection.
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        self.draft().method = Some(req.method().as_str().to_owned());
        match self.decide(req).await {
            Ok(resp) => resp,
            Err(refusal) => {
                let resp = refusal_response(&refusal);
                self.draft().refusal = Some(refusal);
                resp
            }
        }
    }

    async fn decide(&self, req: Request<Incoming>) -> Result<Response<Body>, Refusal> {
        let named = match req.headers().get(CREDENTIAL_HEADER) {
            None => None,
            Some(v) => {
                let name: String = String::from_utf8_lossy(v.as_bytes()).chars().take(64).collect();
                self.draft().credential = Some(name.clone());
                Some(name)
            }
        };
        let (kind, target, tls) = if req.method() == Method::CONNECT {
            if named.is_some() {
                return Err(Refusal::new(
                    Reason::BadTarget,
                    "a credential goes into a plain request, not a tunnel: send `GET https://host/path` \
                     with the header to the proxy",
                ));
            }
            (Kind::Tunnel, connect_target(req.uri())?, false)
        } else if named.is_some() {
            let (target, tls) = credential_target(req.uri())?;
            (Kind::Http, target, tls)
        } else {
            (Kind::Http, absolute_target(req.uri())?, false)
        };
        self.draft().target = Some(target.clone());
        let policy = &self.shared.policy;
        // An `https://` target is judged like a tunnel: port 443 by default.
        let judged = if tls { Kind::Tunnel } else { kind };
        policy.admit(&target, judged)?;
        let credential = match &named {
            Some(name) => Some(crate::credential::choose(
                &policy.credentials,
                name,
                &target,
                judged,
            )?),
            None => None,
        };
        // An OAuth2 credential's token, fetched (or taken from the cache)
        // before the upstream is contacted.
        let ready = match credential {
            None => None,
            Some(c) => {
                let (ready, token_hops) = c.ready(policy).await;
                token_hops.iter().for_each(crate::record::count);
                Some(ready?)
            }
        };
        let (stream, address) = crate::connect::open(&target, policy).await?;
        self.draft().address = Some(address);
        self.meter.start();
        let upstream = Metered::new(stream, self.shared.budget.clone(), self.meter.clone());
        match kind {
            Kind::Tunnel => {
                let mut req = req;
                let upgrade = hyper::upgrade::on(&mut req);
                *lock(&self.tunnel) = Some((upgrade, upstream));
                Ok(Response::new(
                    Full::new(Bytes::new()).map_err(|e| match e {}).boxed(),
                ))
            }
            Kind::Http => {
                let default_port = judged.default_port();
                let req =
                    match forward::rewrite(req, &target, default_port, ready.as_ref().map(|r| &r.inject)) {
                        Ok(req) => req,
                        Err(r) => {
                            // Connected but nothing sent: a cut, with the reason.
                            self.meter.cut(r.reason, r.message.clone());
                            return Ok(refusal_response(&r));
                        }
                    };
                let keep = |task| *lock(&self.driver) = Some(AbortOnDrop(task));
                let sent = if tls {
                    match crate::tls::connect(upstream, &target, &policy.extra_roots).await {
                        Ok(secured) => forward::send(req, secured, keep).await,
                        Err(r) => {
                            self.meter.cut(r.reason, r.message.clone());
                            return Ok(refusal_response(&r));
                        }
                    }
                } else {
                    forward::send(req, upstream, keep).await
                };
                match sent {
                    Ok(resp) => {
                        // The upstream refused Warden's token: the box's next
                        // request gets a fresh one. This one is not sent
                        // again (its body streamed through); the box sees
                        // the 401 and may retry.
                        if resp.status() == http::StatusCode::UNAUTHORIZED
                            && let (Some(c), Some(token)) =
                                (credential, ready.as_ref().and_then(|r| r.token.as_deref()))
                        {
                            c.refused_token(token).await;
                        }
                        match credential {
                            None => Ok(resp),
                            Some(c) => self.scrubbed(resp, c),
                        }
                    }
                    Err(failed) => {
                        self.meter.cut(Reason::UpstreamError, failed.message);
                        let cut = self.meter.peek_cut().unwrap_or(Cut {
                            reason: Reason::UpstreamError,
                            message: String::new(),
                        });
                        Ok(refusal_response(&Refusal::new(cut.reason, cut.message)))
                    }
                }
            }
        }
    }

    /// The upstream's answer to a request the proxy put `credential` into,
    /// with every form of the secret taken out of its headers and body (an
    /// upstream that echoes the request must not hand the box the secret).
    /// An encoded body (the proxy asked for `identity`) cannot be scrubbed:
    /// the box gets a refusal instead, and the connection is cut.
    fn scrubbed(&self, resp: Response<Body>, credential: &Credential) -> Result<Response<Body>, Refusal> {
        let encoded = resp
            .headers()
            .get_all(http::header::CONTENT_ENCODING)
            .iter()
            .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded {
            let r = Refusal::new(
                Reason::UpstreamError,
                "the upstream answered a request carrying a credential with an encoded body \
                 (Content-Encoding), which the proxy cannot scrub of the secret; it asked for `identity`",
            );
            self.meter.cut(r.reason, r.message.clone());
            return Ok(refusal_response(&r));
        }
        let scrubber = credential.scrubber();
        if scrubber.is_empty() {
            return Ok(resp);
        }
        let (mut parts, body) = resp.into_parts();
        scrubber.headers(&mut parts.headers);
        // The length changes wherever a form is replaced.
        parts.headers.remove(http::header::CONTENT_LENGTH);
        Ok(Response::from_parts(
            parts,
            crate::scrub::ScrubBody::new(body, scrubber).boxed(),
        ))
    }

    /// Records what hyper's own end says, when the service decided nothing.
    fn after_http(&self, result: Result<(), hyper::Error>) {
        let mut draft = self.draft();
        if draft.refusal.is_some() || draft.address.is_some() {
            return;
        }
        let max = self.shared.policy.limits.max_header_bytes;
        let timeout = self.shared.policy.limits.header_timeout.as_millis();
        draft.refusal = Some(match result {
            Ok(()) => Refusal::new(Reason::NoRequest, "the connection closed without a request"),
            Err(e) if e.is_parse_too_large() => Refusal::new(
                Reason::HeaderTooLarge,
                format!("the request head is larger than {max} bytes (or has too many headers)"),
            ),
            Err(e) if e.is_timeout() => Refusal::new(
                Reason::HeaderTimeout,
                format!("the request head did not arrive within {timeout} ms"),
            ),
            Err(e) if e.is_incomplete_message() => Refusal::new(
                Reason::MalformedRequest,
                "the connection closed in the middle of the request head",
            ),
            Err(e) => Refusal::new(
                Reason::MalformedRequest,
                format!("the request could not be parsed: {e}"),
            ),
        });
    }
}

/// Serves one accepted connection (already admitted by the caps) to its end.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, id: u64, mut stop: watch::Receiver<bool>) {
    let conn = Arc::new(Conn {
        shared: shared.clone(),
        meter: Arc::new(Meter::new()),
        draft: Mutex::new(Draft::default()),
        tunnel: Mutex::new(None),
        driver: Mutex::new(None),
    });
    let finish = Finish {
        conn: conn.clone(),
        id,
        started_at: now_ms(),
        start: Instant::now(),
    };
    // A second descriptor for the box's socket, so that a refusal can be
    // followed by a gentle close after hyper has dropped its own.
    let (stream, spare) = match split_spare(stream) {
        Ok(pair) => pair,
        Err(e) => {
            conn.draft().refusal = Some(Refusal::new(Reason::Internal, format!("accepting failed: {e}")));
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let limits = &shared.policy.limits;
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(false)
        // A box may shut its write side once its request is sent; that
        // must not cancel the request.
        .half_close(true)
        .max_buf_size(limits.max_header_bytes)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let service_conn = conn.clone();
    let service = service_fn(move |req| {
        let c = service_conn.clone();
        async move { Ok::<_, Infallible>(c.handle(req).await) }
    });
    let http = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let idle = limits.idle_timeout;
    let mut was_stopped = false;
    tokio::select! {
        r = http => conn.after_http(r),
        () = stopped(&mut stop) => was_stopped = true,
        () = conn.meter.idle(idle) => cut_idle(&conn.meter, idle),
    }
    let tunnel = lock(&conn.tunnel).take();
    let go_on = !was_stopped && conn.meter.peek_cut().is_none();
    if let (Some((upgrade, mut upstream)), true) = (tunnel, go_on) {
        match upgrade.await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    () = stopped(&mut stop) => was_stopped = true,
                    () = conn.meter.idle(idle) => cut_idle(&conn.meter, idle),
                }
            }
            Err(e) => conn.meter.cut(
                Reason::Internal,
                format!("the box's side of the tunnel could not be taken over: {e}"),
            ),
        }
    }
    if was_stopped {
        conn.meter.cut(Reason::Stopped, "the proxy was stopped".into());
        let mut draft = conn.draft();
        if draft.refusal.is_none() && draft.address.is_none() {
            draft.refusal = Some(Refusal::new(Reason::Stopped, "the proxy was stopped"));
        }
    }
    lock(&conn.driver).take();
    let refused = conn.draft().refusal.is_some();
    drop(finish);
    if refused
        && !was_stopped
        && let Some(spare) = spare
    {
        linger_close(spare).await;
    }
}

fn cut_idle(meter: &Meter, idle: std::time::Duration) {
    meter.cut(
        Reason::IdleTimeout,
        format!("no byte moved for {} ms", idle.as_millis()),
    );
}

/// The stream back, plus a duplicate of its descriptor.
fn split_spare(stream: TcpStream) -> std::io::Result<(TcpStream, Option<std::net::TcpStream>)> {
    let std = stream.into_std()?;
    let spare = std.try_clone().ok();
    Ok((TcpStream::from_std(std)?, spare))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(t: &str) -> Result<Target, Reason> {
        connect_target(&t.parse::<Uri>().unwrap()).map_err(|r| r.reason)
    }

    fn absolute(t: &str) -> Result<Target, Reason> {
        absolute_target(&t.parse::<Uri>().unwrap()).map_err(|r| r.reason)
    }

    #[test]
    fn connect_targets_need_host_and_port() {
        assert_eq!(connect("pypi.org:443").unwrap().to_string(), "pypi.org:443");
        assert_eq!(connect("[::1]:8080").unwrap().to_string(), "[::1]:8080");
        assert_eq!(connect("pypi.org"), Err(Reason::BadTarget));
        assert_eq!(connect("pypi.org:0"), Err(Reason::BadTarget));
        assert_eq!(connect("user@pypi.org:443"), Err(Reason::BadTarget));
        assert_eq!(connect("http://pypi.org/"), Err(Reason::BadTarget));
        assert_eq!(connect("127.1:443"), Err(Reason::IpLiteral));
        assert_eq!(connect("-a.org:443"), Err(Reason::InvalidHost));
    }

    #[test]
    fn plain_http_targets_are_absolute_http_urls() {
        assert_eq!(
            absolute("http://Example.COM/x?y").unwrap().to_string(),
            "example.com:80"
        );
        assert_eq!(absolute("http://example.com:8080/").unwrap().port, 8080);
        assert_eq!(absolute("/simple/"), Err(Reason::OriginForm));
        assert_eq!(absolute("*"), Err(Reason::OriginForm));
        assert_eq!(absolute("example.com:80"), Err(Reason::BadTarget));
        assert_eq!(absolute("https://example.com/"), Err(Reason::UnsupportedScheme));
        assert_eq!(absolute("ftp://example.com/"), Err(Reason::UnsupportedScheme));
        assert_eq!(absolute("http://u:p@example.com/"), Err(Reason::BadTarget));
        assert_eq!(absolute("http://2130706433/"), Err(Reason::IpLiteral));
    }
}
