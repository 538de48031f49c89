//! Plain HTTP through the proxy: an absolute-form request (`GET
//! http://host/path`) to an allowed host is rewritten into the request its
//! server expects and sent on the upstream connection the proxy checked.
//!
//! `rewrite` is the one place a request is changed before it leaves; a
//! platform-held credential the box named is injected there, after the
//! policy has admitted the target and the credential's own hosts, and
//! before any byte is sent.
//!
//! Must never: send a request to a host other than the admitted target (the
//! `Host` header is replaced by the target's), or pass hop-by-hop headers
//! (the proxy's own `Proxy-Authorization` among them) on.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::credential::{CREDENTIAL_HEADER, Inject};
use crate::host::Target;
use crate::record::{Reason, Refusal};

/// The body of every response the proxy gives the box.
pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

/// Headers that describe one hop, never the message: RFC 9110 §7.6.1 and
/// the proxy's own.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those `Connection` lists.
/// `Transfer-Encoding` goes too: hyper frames each hop's body itself.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// Turns the box's absolute-form request into the origin-form request the
/// target's server expects: path and query only, `Host` set to the target,
/// hop-by-hop headers and the credential header removed, the credential
/// (if any) put in, one request per connection. `default_port` is the
/// scheme's (80, or 443 for a credential's `https://` request).
pub(crate) fn rewrite<B>(
    mut req: Request<B>,
    target: &Target,
    default_port: u16,
    credential: Option<&Inject>,
) -> Result<Request<B>, Refusal> {
    if let Some(Inject::OAuth(_)) = credential {
        // Resolved by `Credential::ready` before any request is rewritten.
        return Err(Refusal::new(
            Reason::Internal,
            "an OAuth2 credential reached the rewrite without its token",
        ));
    }
    let mut path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    req.headers_mut().remove(CREDENTIAL_HEADER);
    if let Some(Inject::Query(param, value)) = credential {
        let pair: String = form_urlencoded::Serializer::new(String::new())
            .append_pair(param, value)
            .finish();
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str(&pair);
    }
    *req.uri_mut() = path.parse::<Uri>().map_err(|_| {
        Refusal::new(
            Reason::BadTarget,
            "the request's path is not a valid origin-form path",
        )
    })?;
    strip_hop_by_hop(req.headers_mut());
    // After the hop-by-hop headers went: a `Connection` header naming it
    // must not remove the secret, and a header of that name the box sent
    // is replaced.
    if let Some(Inject::Header(name, value)) = credential {
        req.headers_mut().insert(name.clone(), value.clone());
    }
    if credential.is_some() {
        // The answer is scrubbed of the secret on its way to the box
        // (`crate::scrub`), which needs it unencoded.
        req.headers_mut()
            .insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    }
    let host = if target.port == default_port {
        target.host.to_string()
    } else {
        target.to_string()
    };
    let host = HeaderValue::from_str(&host)
        .map_err(|_| Refusal::new(Reason::InvalidHost, "the host is not a valid header value"))?;
    req.headers_mut().insert(header::HOST, host);
    req.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    *req.version_mut() = Version::HTTP_11;
    Ok(req)
}

/// Why a forwarded request failed after the upstream was connected.
pub(crate) struct Failed {
    pub message: String,
}

/// Sends the rewritten request on `upstream` and returns the upstream's
/// response for the box. The connection's driver task is handed to
/// `keep_driver`, which must abort it when the box's connection ends.
pub(crate) async fn send<IO, B>(
    req: Request<B>,
    upstream: IO,
    keep_driver: impl FnOnce(tokio::task::JoinHandle<()>),
) -> Result<Response<Body>, Failed>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, driver) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(upstream))
        .await
        .map_err(|e| Failed {
            message: format!("could not start HTTP with the upstream: {e}"),
        })?;
    keep_driver(tokio::spawn(async move {
        let _ = driver.await;
    }));
    let mut resp = sender.send_request(req).await.map_err(|e| Failed {
        message: format!("the upstream failed before its response was complete: {e}"),
    })?;
    strip_hop_by_hop(resp.headers_mut());
    Ok(resp.map(|b| b.boxed()))
}
