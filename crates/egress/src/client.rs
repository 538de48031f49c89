//! Requests Warden makes itself (the built-in HTTP tool), judged exactly as
//! the proxy judges a box's: the target parsed by the proxy's parser, the
//! allow-list (`Policy::admit`), the credential's own hosts
//! (`credential::choose`), resolution, the address rules and pinning
//! (`connect`), the credential put in by the proxy's `forward::rewrite`,
//! TLS by the proxy's `tls` — one copy of each. On top of the proxy's
//! rules: plain `http://` goes only to addresses the operator opened
//! (`allowed_cidrs`), a redirect is followed only when its target passes
//! every rule afresh (at most [`Request::max_redirects`] of them), the
//! whole exchange has one deadline, and the response body has a cap.
//!
//! Must never: contact a host before it passed the allow-list and the
//! address rules; send a credential to a host it is not bound to (a
//! redirect included); return, record or report a secret.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};

use crate::conn::{now_ms, target_of};
use crate::credential::{CREDENTIAL_HEADER, Credential};
use crate::forward;
use crate::host::Target;
use crate::policy::{Kind, Policy};
use crate::record::{ConnectionRecord, Cut, Reason, Refusal, Verdict};

/// The most redirects a request may ask for.
pub const MAX_REDIRECTS: usize = 5;

/// One request Warden makes itself.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The absolute `http://` or `https://` URL, query included.
    pub url: String,
    /// Headers to send (the credential's header, `Host` and hop-by-hop
    /// headers are set by the client, not taken from here).
    pub headers: HeaderMap,
    /// The body (empty for none).
    pub body: Bytes,
    /// The credential of the policy to put into every request (redirects
    /// included), by name.
    pub credential: Option<String>,
    /// The deadline of the whole exchange, redirects included.
    pub timeout: Duration,
    /// The most response-body bytes read; more fails the request.
    pub max_response_bytes: usize,
    /// Redirects followed at most (capped at [`MAX_REDIRECTS`]).
    pub max_redirects: usize,
}

/// The final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The response's headers (hop-by-hop ones removed), in order.
    pub headers: Vec<(String, String)>,
    /// The body, at most the request's cap.
    pub body: Vec<u8>,
    /// The URL that answered (after redirects).
    pub url: String,
    /// Redirects followed.
    pub redirects: usize,
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// A rule refused a target (the first one, or a redirect's): nothing
    /// was sent to it.
    #[error("{message} ({})", reason.as_str())]
    Refused {
        /// The proxy's reason.
        reason: Reason,
        /// What was refused and why.
        message: String,
    },
    /// The deadline passed.
    #[error("no complete response within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The response body is larger than the cap.
    #[error("the response body is larger than {0} bytes")]
    TooLarge(usize),
    /// More redirects than allowed.
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    /// The upstream failed (connection reset, malformed response, TLS).
    #[error("{0}")]
    Upstream(String),
}

/// What a request ended with, and a record per connection it made or was
/// refused (the proxy's record format).
#[derive(Debug)]
pub struct Fetched {
    /// The response, or why there is none.
    pub result: Result<Response, FetchError>,
    /// One record per hop.
    pub records: Vec<ConnectionRecord>,
}

/// Makes `req` under `policy`, blocking the calling thread (at most the
/// request's timeout and a second). Runs on the crate's own runtime, so the
/// caller needs none; call it from a host thread (see [`crate::serve`]).
pub fn fetch(policy: &Policy, req: Request) -> Fetched {
    let timeout = req.timeout;
    let records = Arc::new(Mutex::new(Vec::new()));
    let rt = match crate::proxy::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            return Fetched {
                result: Err(FetchError::Upstream(format!(
                    "the egress runtime is unavailable: {e}"
                ))),
                records: Vec::new(),
            };
        }
    };
    let (tx, rx) = mpsc::channel();
    let policy = Arc::new(policy.clone());
    let kept = records.clone();
    let task = rt.spawn(async move {
        let hops = Hops {
            policy: &policy,
            records: &kept,
        };
        let _ = tx.send(hops.timed(req).await);
    });
    let result = match rx.recv_timeout(timeout + Duration::from_secs(1)) {
        Ok(r) => r,
        Err(_) => {
            task.abort();
            Err(FetchError::Timeout(timeout))
        }
    };
    let records = std::mem::take(&mut *records.lock().unwrap_or_else(|p| p.into_inner()));
    records.iter().for_each(crate::record::count);
    Fetched { result, records }
}

/// Makes `req` under `policy` on the caller's runtime (the token request of
/// an OAuth2 credential, made from the proxy or the client). Records are
/// not counted here: the caller counts them with its own.
pub(crate) fn exchange(policy: Policy, req: Request) -> Pin<Box<dyn Future<Output = Fetched> + Send>> {
    Box::pin(async move {
        let records = Mutex::new(Vec::new());
        let hops = Hops {
            policy: &policy,
            records: &records,
        };
        let result = hops.timed(req).await;
        let records = std::mem::take(&mut *records.lock().unwrap_or_else(|p| p.into_inner()));
        Fetched { result, records }
    })
}

/// One request's hops, and where their records go.
struct Hops<'a> {
    policy: &'a Policy,
    records: &'a Mutex<Vec<ConnectionRecord>>,
}

/// A redirect's status codes, and whether it keeps the method and body.
fn redirect_kind(status: StatusCode) -> Option<bool> {
    match status.as_u16() {
        301..=303 => Some(false),
        307 | 308 => Some(true),
        _ => None,
    }
}

/// Methods a request may be sent again with after a `401` (RFC 9110
/// §9.2.2: idempotent): the upstream refused the token, and repeating the
/// request cannot do twice what was meant once.
fn retryable(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

impl Hops<'_> {
    /// `run` under the request's deadline.
    async fn timed(&self, req: Request) -> Result<Response, FetchError> {
        let timeout = req.timeout;
        match tokio::time::timeout(timeout, self.run(req)).await {
            Ok(r) => r,
            Err(_) => {
                self.cut_last(
                    Reason::IdleTimeout,
                    format!("no complete response within {} ms", timeout.as_millis()),
                );
                Err(FetchError::Timeout(timeout))
            }
        }
    }

    fn push(&self, r: ConnectionRecord) {
        let mut all = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let mut r = r;
        r.id = all.len() as u64 + 1;
        all.push(r);
    }

    fn cut_last(&self, reason: Reason, message: String) {
        let mut all = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = all.last_mut()
            && let Verdict::Allowed { cut: cut @ None } = &mut last.verdict
        {
            *cut = Some(Cut { reason, message });
        }
    }

    fn record(&self, method: &Method, target: Option<&Target>, credential: Option<&str>, verdict: Verdict) {
        self.push(ConnectionRecord {
            id: 0,
            started_at: now_ms(),
            duration_ms: 0.0,
            method: Some(method.as_str().to_owned()),
            host: target.map(|t| t.host.record_form()),
            port: target.map(|t| t.port),
            address: None,
            credential: credential.map(str::to_owned),
            bytes_up: 0,
            bytes_down: 0,
            verdict,
        });
    }

    async fn run(&self, req: Request) -> Result<Response, FetchError> {
        let Request {
            mut method,
            mut url,
            mut headers,
            mut body,
            credential,
            max_response_bytes,
            max_redirects,
            ..
        } = req;
        headers.remove(CREDENTIAL_HEADER);
        headers.remove(header::HOST);
        let max_redirects = max_redirects.min(MAX_REDIRECTS);
        let named = credential.as_deref();
        let mut redirects = 0;
        let mut retried = false;
        loop {
            let started = Instant::now();
            let (target, tls, uri) = match parse(&url) {
                Ok(t) => t,
                Err(r) => {
                    self.record(&method, None, named, refused(&r));
                    return Err(refused_error(r, redirects, &url));
                }
            };
            let judged = if tls { Kind::Tunnel } else { Kind::Http };
            let held = named.is_none_or(|n| self.policy.credentials.iter().any(|c| c.name() == n));
            let chosen = if held {
                Ok(())
            } else {
                Err(Refusal::new(
                    Reason::CredentialNotAllowed,
                    format!(
                        "there is no credential `{}` (the app must store it)",
                        named.unwrap_or_default().escape_debug()
                    ),
                ))
            };
            let chosen = chosen
                .and_then(|()| {
                    self.policy.admit(&target, judged).map_err(|r| match r.reason {
                        // The proxy's wording speaks of a box.
                        Reason::HostNotAllowed => Refusal::new(
                            r.reason,
                            format!("{} is not among the hosts this request may reach", target.host),
                        ),
                        _ => r,
                    })
                })
                .and_then(|()| {
                    named
                        .map(|n| crate::credential::choose(&self.policy.credentials, n, &target, judged))
                        .transpose()
                });
            let credential: Option<&Credential> = match chosen {
                Ok(c) => c,
                Err(r) => {
                    self.record(&method, Some(&target), named, refused(&r));
                    return Err(refused_error(r, redirects, &url));
                }
            };
            let ready = match credential {
                None => None,
                Some(c) => {
                    let (ready, token_hops) = c.ready(self.policy).await;
                    token_hops.into_iter().for_each(|r| self.push(r));
                    match ready {
                        Ok(r) => Some(r),
                        Err(r) => {
                            self.record(&method, Some(&target), named, refused(&r));
                            return Err(refused_error(r, redirects, &url));
                        }
                    }
                }
            };
            let (stream, address) = match crate::connect::open_checked(&target, self.policy, !tls).await {
                Ok(s) => s,
                Err(r) => {
                    self.record(&method, Some(&target), named, refused(&r));
                    return Err(refused_error(r, redirects, &url));
                }
            };
            self.push(ConnectionRecord {
                id: 0,
                started_at: now_ms(),
                duration_ms: 0.0,
                method: Some(method.as_str().to_owned()),
                host: Some(target.host.record_form()),
                port: Some(target.port),
                address: Some(address),
                credential: named.map(str::to_owned),
                bytes_up: body.len() as u64,
                bytes_down: 0,
                verdict: Verdict::Allowed { cut: None },
            });
            let mut out = http::Request::new(Full::new(body.clone()));
            *out.method_mut() = method.clone();
            *out.uri_mut() = uri.clone();
            *out.headers_mut() = headers.clone();
            let out = forward::rewrite(
                out,
                &target,
                judged.default_port(),
                ready.as_ref().map(|r| &r.inject),
            )
            .map_err(|r| self.fail(r.reason, r.message))?;
            let mut driver = None;
            let keep = |task| driver = Some(task);
            let sent = if tls {
                let secured = crate::tls::connect(stream, &target, &self.policy.extra_roots)
                    .await
                    .map_err(|r| self.fail(r.reason, r.message))?;
                forward::send(out, secured, keep).await
            } else {
                forward::send(out, stream, keep).await
            };
            let _abort = AbortOnDrop(driver);
            let mut resp = sent.map_err(|f| self.fail(Reason::UpstreamError, f.message))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED
                && let (Some(c), Some(token)) = (credential, ready.as_ref().and_then(|r| r.token.as_deref()))
            {
                // The upstream refused Warden's token: the next request
                // fetches a fresh one; this one is sent again once, with
                // it, when that is safe.
                c.refused_token(token).await;
                if !retried && retryable(&method) {
                    retried = true;
                    self.finish_last(started, 0);
                    continue;
                }
            }
            let next = redirect_kind(status).and_then(|keeps| {
                let loc = resp.headers().get(header::LOCATION)?.to_str().ok()?;
                Some((keeps, join(&uri, loc)))
            });
            if let Some((keeps, next)) = next {
                self.finish_last(started, 0);
                if redirects >= max_redirects {
                    return Err(FetchError::TooManyRedirects(max_redirects));
                }
                redirects += 1;
                url = next;
                if !keeps && method != Method::HEAD {
                    method = Method::GET;
                    body = Bytes::new();
                    headers.remove(header::CONTENT_TYPE);
                }
                continue;
            }
            let mut got: Vec<u8> = Vec::new();
            let body_of = resp.body_mut();
            while let Some(frame) = body_of.frame().await {
                let frame = frame.map_err(|e| {
                    self.fail(
                        Reason::UpstreamError,
                        format!("the upstream failed while sending its body: {e}"),
                    )
                })?;
                if let Ok(data) = frame.into_data() {
                    if got.len() + data.len() > max_response_bytes {
                        self.cut_last(
                            Reason::ByteCap,
                            format!("the response body is larger than {max_response_bytes} bytes"),
                        );
                        return Err(FetchError::TooLarge(max_response_bytes));
                    }
                    got.extend_from_slice(&data);
                }
            }
            self.finish_last(started, got.len() as u64);
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            return Ok(Response {
                status: status.as_u16(),
                headers,
                body: got,
                url,
                redirects,
            });
        }
    }

    /// Marks the last (allowed) hop cut, and the error for the caller.
    fn fail(&self, reason: Reason, message: String) -> FetchError {
        self.cut_last(reason, message.clone());
        FetchError::Upstream(message)
    }

    fn finish_last(&self, started: Instant, down: u64) {
        let mut all = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = all.last_mut() {
            last.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            last.bytes_down = down;
        }
    }
}

/// Aborts the connection's driver when the hop is over.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

fn refused(r: &Refusal) -> Verdict {
    Verdict::Refused {
        reason: r.reason,
        message: r.message.clone(),
    }
}

fn refused_error(r: Refusal, redirects: usize, url: &str) -> FetchError {
    FetchError::Refused {
        reason: r.reason,
        message: if redirects == 0 {
            r.message
        } else {
            format!(
                "a redirect to {} was not followed: {}",
                url.split(['?', '#']).next().unwrap_or(url),
                r.message
            )
        },
    }
}

/// The target of `url` (absolute, `http` or `https`, no user info), whether
/// it is TLS, and the URI.
pub(crate) fn parse(url: &str) -> Result<(Target, bool, Uri), Refusal> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Refusal::new(Reason::BadTarget, format!("the URL does not parse: {e}")))?;
    let tls = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        Some(s) if s.eq_ignore_ascii_case("http") => false,
        Some(s) => {
            return Err(Refusal::new(
                Reason::UnsupportedScheme,
                format!(
                    "the scheme `{}` is not supported; only https and http",
                    s.escape_debug()
                ),
            ));
        }
        None => {
            return Err(Refusal::new(
                Reason::BadTarget,
                "the URL must be absolute (https://host/path)",
            ));
        }
    };
    let Some(authority) = uri.authority() else {
        return Err(Refusal::new(Reason::BadTarget, "the URL has no host"));
    };
    // The proxy's own parser: the same spellings refused the same way.
    let target = target_of(authority, Some(if tls { 443 } else { 80 }))?;
    Ok((target, tls, uri))
}

/// The absolute URL a `Location` of a response to `base` points at.
fn join(base: &Uri, location: &str) -> String {
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map_or("", |a| a.as_str());
    if location.contains("://") {
        return location.to_owned();
    }
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = base.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    format!("{scheme}://{authority}{dir}{location}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_join_like_a_browser() {
        let base: Uri = "http://a.example:8080/x/y?q=1".parse().unwrap();
        let j = |l: &str| join(&base, l);
        assert_eq!(j("https://b.example/z"), "https://b.example/z");
        assert_eq!(j("//c.example/z"), "http://c.example/z");
        assert_eq!(j("/z?r=2"), "http://a.example:8080/z?r=2");
        assert_eq!(j("z"), "http://a.example:8080/x/z");
    }

    #[test]
    fn targets_parse_with_the_proxys_rules() {
        let reason = |u: &str| parse(u).map(|_| ()).unwrap_err().reason;
        assert_eq!(
            parse("https://API.example/x").unwrap().0.to_string(),
            "api.example:443"
        );
        assert!(!parse("http://api.example:8080/").unwrap().1);
        assert_eq!(reason("ftp://api.example/"), Reason::UnsupportedScheme);
        assert_eq!(reason("/relative"), Reason::BadTarget);
        assert_eq!(reason("https://u:p@api.example/"), Reason::BadTarget);
        assert_eq!(reason("http://2130706433/"), Reason::IpLiteral);
    }
}
