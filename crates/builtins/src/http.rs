//! `warden.builtin.http`: one HTTP request made by Warden itself, for an
//! app, with an optional platform-held credential put in by the platform.
//!
//! The request goes through the egress crate's own client
//! ([`warden_egress::client`]), so it is judged exactly as a box's request
//! through the proxy (allow-list, credential binding, resolution, address
//! rules, pinning, injection), and more strictly: plain `http://` only to
//! addresses the operator opened, redirects only to targets that pass every
//! rule again, one deadline, a response cap. What it may reach is the
//! policy the platform hands the call in its [`Context`]: the named
//! credential's own hosts, or nothing (`docs/capabilities.md`).
//!
//! Must never: reach a host without a policy from the platform; return a
//! secret (the response and every message are scrubbed of the credential's
//! forms); panic on what a caller sends.

use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use warden_egress::client::{self, FetchError};

use crate::{Builtin, Context, Failure, Limits, Spec, capped};

/// The HTTP request tool.
#[derive(Debug, Clone, Copy, Default)]
pub struct Http;

/// Methods a caller may use.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Headers the client sets itself (or that describe one hop): a caller
/// naming one is told so rather than silently overridden.
const RESERVED_HEADERS: [&str; 13] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "expect",
    warden_egress::CREDENTIAL_HEADER,
];

/// Redirects followed at most.
const REDIRECTS: usize = 3;

/// A checked request.
#[derive(Debug)]
pub(crate) struct Input {
    pub method: http::Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub credential: Option<String>,
    pub timeout: Duration,
    pub max_response_bytes: usize,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Failure {
    Failure::Handler {
        kind: "InvalidInput",
        message: format!("`{field}` {why}"),
    }
}

/// Reads and checks the event: every error names the field and the reason.
pub(crate) fn input(event: &Value, limits: Limits) -> Result<Input, Failure> {
    let Some(obj) = event.as_object() else {
        return Err(invalid("event", "must be an object"));
    };
    if let Some(k) = obj.keys().find(|k| {
        ![
            "method",
            "url",
            "headers",
            "query",
            "body",
            "credential",
            "timeout_ms",
            "max_response_bytes",
        ]
        .contains(&k.as_str())
    }) {
        return Err(invalid(k, "is not a field of this tool"));
    }
    let method = match obj.get("method") {
        None => http::Method::GET,
        Some(Value::String(m)) if METHODS.contains(&m.to_ascii_uppercase().as_str()) => {
            http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| invalid("method", "is not a method"))?
        }
        Some(_) => {
            return Err(invalid(
                "method",
                format!("must be one of {}", METHODS.join(", ")),
            ));
        }
    };
    let mut url = match obj.get("url") {
        Some(Value::String(u)) if !u.is_empty() => u.clone(),
        Some(_) => return Err(invalid("url", "must be a non-empty string")),
        None => return Err(invalid("url", "is required")),
    };
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err(invalid("url", "must be an absolute https:// (or http://) URL"));
    }
    if url.contains('#') {
        url.truncate(url.find('#').unwrap_or(url.len()));
    }
    if let Some(q) = obj.get("query") {
        let Some(q) = q.as_object() else {
            return Err(invalid("query", "must be an object of names to values"));
        };
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        for (k, v) in q {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(invalid(
                        &format!("query.{k}"),
                        "must be a string, a number or a boolean",
                    ));
                }
            };
            pairs.append_pair(k, &v);
        }
        let pairs = pairs.finish();
        if !pairs.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&pairs);
        }
    }
    if url.parse::<http::Uri>().is_err() {
        return Err(invalid("url", "is not a valid URL"));
    }
    let mut headers = HeaderMap::new();
    if let Some(h) = obj.get("headers") {
        let Some(h) = h.as_object() else {
            return Err(invalid("headers", "must be an object of header names to strings"));
        };
        for (k, v) in h {
            let field = format!("headers.{k}");
            let Value::String(v) = v else {
                return Err(invalid(&field, "must be a string"));
            };
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| invalid(&field, "is not a valid header name"))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(invalid(&field, "is set by the platform, not by the caller"));
            }
            let value = HeaderValue::from_str(v)
                .map_err(|_| invalid(&field, "has a value that is not a valid header value"))?;
            headers.append(name, value);
        }
    }
    let body = match obj.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => {
            headers
                .entry(http::header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("text/plain; charset=utf-8"));
            s.as_bytes().to_vec()
        }
        Some(v) => {
            headers
                .entry(http::header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
            serde_json::to_vec(v).map_err(|e| invalid("body", e))?
        }
    };
    let credential = match obj.get("credential") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if valid_credential_name(c) => Some(c.clone()),
        Some(_) => {
            return Err(invalid(
                "credential",
                "must be a credential's name (`^[a-z][a-z0-9_-]{0,63}$`)",
            ));
        }
    };
    let limit_ms = u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX);
    let timeout = match obj.get("timeout_ms") {
        None => limits.timeout,
        Some(t) => match t.as_u64() {
            Some(ms) if (1..=limit_ms).contains(&ms) => Duration::from_millis(ms),
            _ => {
                return Err(invalid(
                    "timeout_ms",
                    format!("must be an integer from 1 to {limit_ms} (the call's limit)"),
                ));
            }
        },
    };
    let max_response_bytes = match obj.get("max_response_bytes") {
        None => limits.output_bytes,
        Some(t) => match t.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if (1..=limits.output_bytes).contains(&n) => n,
            _ => {
                return Err(invalid(
                    "max_response_bytes",
                    format!(
                        "must be an integer from 1 to {} (the call's result cap)",
                        limits.output_bytes
                    ),
                ));
            }
        },
    };
    Ok(Input {
        method,
        url,
        headers,
        body,
        credential,
        timeout,
        max_response_bytes,
    })
}

fn valid_credential_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Whether a `Content-Type` says JSON (`application/json`, `…+json`).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

impl Builtin for Http {
    fn spec(&self) -> Spec {
        Spec {
            code: "warden.builtin.http",
            name: "HTTP request",
            version: "1.0.0",
            description: "Makes one HTTP request from Warden, with an app's stored credential put in by the \
                          platform, to the hosts that credential is bound to; https (http only to addresses the \
                          operator opened), the egress proxy's address rules, redirects only to permitted hosts.",
            input_schema: json!({
                "type": "object",
                "required": ["url"],
                "additionalProperties": false,
                "properties": {
                    "method": {"type": "string", "enum": METHODS, "default": "GET"},
                    "url": {"type": "string", "minLength": 8, "maxLength": 8192,
                        "description": "An absolute https:// URL (http:// only to addresses the operator opened)."},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "query": {"type": "object",
                        "additionalProperties": {"type": ["string", "number", "boolean"]}},
                    "body": {"description": "A string is sent as text; any other JSON value as JSON."},
                    "credential": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$",
                        "description": "The name of one of the app's stored credentials; the request may reach only its hosts."},
                    "timeout_ms": {"type": "integer", "minimum": 1},
                    "max_response_bytes": {"type": "integer", "minimum": 1}
                }
            }),
            output_schema: json!({
                "type": "object",
                "required": ["status", "headers", "body", "elapsed_ms"],
                "properties": {
                    "status": {"type": "integer"},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body": {"description": "JSON when the response says JSON and parses, text otherwise."},
                    "elapsed_ms": {"type": "number"}
                }
            }),
            timeout_ms: 30_000,
        }
    }

    fn network(&self) -> bool {
        true
    }

    fn credential<'e>(&self, event: &'e Value) -> Option<&'e str> {
        event.get("credential")?.as_str()
    }

    fn call(&self, event: &Value, limits: Limits, cx: &mut Context<'_>) -> Result<Value, Failure> {
        let started = Instant::now();
        let input = input(event, limits)?;
        let Some(policy) = cx.egress else {
            return Err(Failure::Handler {
                kind: "EgressRefused",
                message: "this call was given no network by the platform".into(),
            });
        };
        let credential = input
            .credential
            .as_deref()
            .and_then(|n| policy.credentials.iter().find(|c| c.name() == n));
        let scrub = |s: &str| credential.map_or_else(|| s.to_owned(), |c| c.scrub(s));
        let fetched = client::fetch(
            policy,
            client::Request {
                method: input.method,
                url: input.url,
                headers: input.headers,
                body: input.body.into(),
                credential: input.credential.clone(),
                timeout: input.timeout,
                max_response_bytes: input.max_response_bytes,
                max_redirects: REDIRECTS,
            },
        );
        cx.records.extend(fetched.records);
        let resp = match fetched.result {
            Ok(r) => r,
            Err(FetchError::Timeout(d)) => {
                return Err(Failure::Timeout(format!(
                    "no complete response within {} ms",
                    d.as_millis()
                )));
            }
            Err(e) => {
                let kind = match e {
                    FetchError::Refused { .. } => "EgressRefused",
                    FetchError::TooLarge(_) => "ResponseTooLarge",
                    FetchError::TooManyRedirects(_) => "TooManyRedirects",
                    _ => "UpstreamError",
                };
                return Err(Failure::Handler {
                    kind,
                    message: scrub(&e.to_string()),
                });
            }
        };
        let mut headers = Map::new();
        let mut content_type = String::new();
        for (k, v) in &resp.headers {
            let v = scrub(v);
            if k == "content-type" {
                content_type = v.clone();
            }
            match headers.get_mut(k) {
                Some(Value::String(prev)) => {
                    prev.push_str(", ");
                    prev.push_str(&v);
                }
                _ => {
                    headers.insert(k.clone(), Value::String(v));
                }
            }
        }
        let text = scrub(&String::from_utf8_lossy(&resp.body));
        let body = if is_json(&content_type) {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        } else {
            Value::String(text)
        };
        let out = json!({
            "status": resp.status,
            "headers": headers,
            "body": body,
            "elapsed_ms": started.elapsed().as_secs_f64() * 1000.0,
        });
        capped(out, limits.output_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            timeout: Duration::from_secs(5),
            output_bytes: 1000,
        }
    }

    fn err(event: Value) -> String {
        match input(&event, limits()) {
            Err(Failure::Handler { kind, message }) => {
                assert_eq!(kind, "InvalidInput");
                message
            }
            other => panic!("{event}: {other:?}"),
        }
    }

    #[test]
    fn a_request_is_read_with_its_defaults() {
        let i = input(
            &json!({"url": "https://api.example/v1/x?a=1#frag", "query": {"b": "two words", "n": 3, "t": true}}),
            limits(),
        )
        .unwrap();
        assert_eq!(i.method, http::Method::GET);
        assert_eq!(i.url, "https://api.example/v1/x?a=1&b=two+words&n=3&t=true");
        assert_eq!(i.timeout, Duration::from_secs(5));
        assert_eq!(i.max_response_bytes, 1000);
        assert!(i.body.is_empty() && i.credential.is_none());

        let i = input(
            &json!({"method": "post", "url": "http://127.0.0.1:8080/", "body": {"k": [1]}, "credential": "github",
                    "headers": {"X-Trace": "1"}, "timeout_ms": 250, "max_response_bytes": 10}),
            limits(),
        )
        .unwrap();
        assert_eq!(i.method, http::Method::POST);
        assert_eq!(i.body, br#"{"k":[1]}"#);
        assert_eq!(i.headers["content-type"], "application/json");
        assert_eq!(i.headers["x-trace"], "1");
        assert_eq!(i.credential.as_deref(), Some("github"));
        assert_eq!(
            (i.timeout, i.max_response_bytes),
            (Duration::from_millis(250), 10)
        );

        let i = input(
            &json!({"url": "https://a.example/", "method": "PUT", "body": "plain"}),
            limits(),
        )
        .unwrap();
        assert_eq!(i.headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(i.body, b"plain");
    }

    #[test]
    fn bad_input_names_the_field_and_the_reason() {
        for (event, needle) in [
            (json!([]), "`event` must be an object"),
            (json!({}), "`url` is required"),
            (json!({"url": 3}), "`url` must be a non-empty string"),
            (
                json!({"url": "ftp://a.example/"}),
                "`url` must be an absolute https://",
            ),
            (json!({"url": "/relative"}), "`url` must be an absolute"),
            (json!({"url": "https://a b.example/"}), "`url` is not a valid URL"),
            (
                json!({"url": "https://a.example/", "method": "TRACE"}),
                "`method` must be one of",
            ),
            (
                json!({"url": "https://a.example/", "method": 1}),
                "`method` must be one of",
            ),
            (
                json!({"url": "https://a.example/", "headers": []}),
                "`headers` must be an object",
            ),
            (
                json!({"url": "https://a.example/", "headers": {"x": 1}}),
                "`headers.x` must be a string",
            ),
            (
                json!({"url": "https://a.example/", "headers": {"bad name": "v"}}),
                "`headers.bad name` is not a valid header name",
            ),
            (
                json!({"url": "https://a.example/", "headers": {"x": "a\nb"}}),
                "`headers.x` has a value",
            ),
            (
                json!({"url": "https://a.example/", "headers": {"Host": "evil.example"}}),
                "`headers.Host` is set by the platform",
            ),
            (
                json!({"url": "https://a.example/", "headers": {"X-Warden-Credential": "github"}}),
                "set by the platform",
            ),
            (
                json!({"url": "https://a.example/", "headers": {"Transfer-Encoding": "chunked"}}),
                "set by the platform",
            ),
            (
                json!({"url": "https://a.example/", "query": "a=1"}),
                "`query` must be an object",
            ),
            (
                json!({"url": "https://a.example/", "query": {"a": [1]}}),
                "`query.a` must be a string",
            ),
            (
                json!({"url": "https://a.example/", "credential": "GitHub"}),
                "`credential` must be a credential's name",
            ),
            (
                json!({"url": "https://a.example/", "credential": 7}),
                "`credential` must be",
            ),
            (
                json!({"url": "https://a.example/", "timeout_ms": 0}),
                "`timeout_ms` must be an integer from 1 to 5000",
            ),
            (
                json!({"url": "https://a.example/", "timeout_ms": 5001}),
                "`timeout_ms` must be",
            ),
            (
                json!({"url": "https://a.example/", "timeout_ms": "1"}),
                "`timeout_ms` must be",
            ),
            (
                json!({"url": "https://a.example/", "max_response_bytes": 1001}),
                "`max_response_bytes` must be an integer from 1 to 1000",
            ),
            (
                json!({"url": "https://a.example/", "follow": true}),
                "`follow` is not a field",
            ),
        ] {
            let m = err(event.clone());
            assert!(m.contains(needle), "{event}: {m}");
        }
    }

    #[test]
    fn without_a_policy_nothing_is_reached() {
        let mut cx = Context::default();
        let out = Http.call(&json!({"url": "https://example.com/"}), limits(), &mut cx);
        assert!(
            matches!(
                &out,
                Err(Failure::Handler {
                    kind: "EgressRefused",
                    ..
                })
            ),
            "{out:?}"
        );
        assert!(cx.records.is_empty());
    }

    #[test]
    fn json_content_types_are_recognized() {
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
        ] {
            assert!(is_json(ct), "{ct}");
        }
        for ct in ["text/plain", "application/jsonl", ""] {
            assert!(!is_json(ct), "{ct}");
        }
    }
}
