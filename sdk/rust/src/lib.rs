//! Build a Warden `native` plugin from a typed handler.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Input { name: String }
//!
//! #[derive(Serialize)]
//! struct Output { message: String }
//!
//! fn main() {
//!     warden_plugin::run(|input: Input| {
//!         if input.name.is_empty() {
//!             return Err(warden_plugin::Error::new("ValidationError", "name is required"));
//!         }
//!         Ok(Output { message: format!("Hello, {}!", input.name) })
//!     })
//! }
//! ```
//!
//! The event arrives as JSON on stdin and the result leaves as JSON on
//! stdout (exit 0). An error leaves as `{"error": {"type", "message"}}` with
//! exit code 1, which the platform reports with that type and message; a
//! panic is reported as type `Panic`.

use std::io::{BufRead, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest event read.
pub const MAX_EVENT_BYTES: u64 = 64 << 20;

/// An error with a type of the plugin's choosing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Error {
    /// The type the platform reports (`ValidationError`, `NotFound`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

impl Error {
    /// An error of type `kind`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::new("HandlerError", message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::new("HandlerError", message)
    }
}

/// Read the event from stdin, call `handle`, write the result to stdout and
/// exit (0 on success, 1 on error).
pub fn run<In, Out, E>(handle: impl FnOnce(In) -> Result<Out, E>) -> !
where
    In: DeserializeOwned,
    Out: Serialize,
    E: Into<Error>,
{
    let code = run_io(handle, std::io::stdin().lock(), std::io::stdout().lock());
    std::process::exit(code)
}

/// [`run`] on any reader and writer; returns the exit code (for tests).
pub fn run_io<In, Out, E>(
    handle: impl FnOnce(In) -> Result<Out, E>,
    input: impl Read,
    mut output: impl Write,
) -> i32
where
    In: DeserializeOwned,
    Out: Serialize,
    E: Into<Error>,
{
    let mut data = Vec::new();
    if let Err(e) = input.take(MAX_EVENT_BYTES + 1).read_to_end(&mut data) {
        return fail(
            &mut output,
            Error::new("ReadError", format!("reading the event: {e}")),
        );
    }
    if data.len() as u64 > MAX_EVENT_BYTES {
        return fail(
            &mut output,
            Error::new(
                "InvalidEvent",
                format!("the event is over {MAX_EVENT_BYTES} bytes"),
            ),
        );
    }
    let event: In = match serde_json::from_slice(&data) {
        Ok(v) => v,
        Err(e) => {
            return fail(
                &mut output,
                Error::new(
                    "InvalidEvent",
                    format!("the event does not fit the handler's input type: {e}"),
                ),
            );
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(event)));
    let out = match result {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return fail(&mut output, e.into()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the handler panicked".to_owned());
            return fail(&mut output, Error::new("Panic", message));
        }
    };
    match serde_json::to_vec(&out) {
        Ok(mut doc) => {
            doc.push(b'\n');
            if output.write_all(&doc).and_then(|()| output.flush()).is_err() {
                return 1;
            }
            0
        }
        Err(e) => fail(&mut output, Error::new("ResultNotSerializable", e.to_string())),
    }
}

fn fail(output: &mut impl Write, error: Error) -> i32 {
    let doc = serde_json::json!({ "error": error });
    let _ = writeln!(output, "{doc}");
    let _ = output.flush();
    1
}

/// The header naming the platform-held credential the egress proxy injects;
/// the proxy removes it before the request leaves the host.
pub const CREDENTIAL_HEADER: &str = "X-Warden-Credential";

/// Where the egress proxy says why it refused a request (lower case, as
/// [`Response::header`] takes it).
pub const EGRESS_REASON_HEADER: &str = "x-warden-egress-reason";

/// Largest response [`Request::send`] reads (head and body together).
pub const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// Largest response head (status line and headers).
const MAX_HEAD_BYTES: usize = 64 << 10;

/// Send a GET through the platform's egress proxy, naming `credential` if
/// given; [`Request`] sets a method, headers, a body or a timeout.
///
/// ```no_run
/// let r = warden_plugin::request("https://api.github.com/user", Some("github"))?;
/// if let Some(reason) = &r.egress_reason {
///     eprintln!("the platform refused it: {reason}");
/// }
/// # Ok::<(), warden_plugin::Error>(())
/// ```
pub fn request(url: &str, credential: Option<&str>) -> Result<Response, Error> {
    let mut r = Request::new("GET", url);
    if let Some(name) = credential {
        r = r.credential(name);
    }
    r.send()
}

/// An HTTP request from a plugin through the platform's egress proxy (the
/// box's `HTTP_PROXY`), built step by step and sent with [`Request::send`].
///
/// The URL must be on a host the version declares in `permissions.network`.
/// With a credential (declared in `permissions.credentials`) the proxy puts
/// the secret into the request and opens the connection itself, TLS
/// included for `https://`, so the plugin never holds it. Plain `http://`
/// goes the same way without one. An `https://` request **without** a
/// credential needs TLS end to end through a tunnel, which this SDK does not
/// carry (it has no TLS library): it is an error of type `TlsUnavailable`.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    credential: Option<String>,
    timeout: std::time::Duration,
}

/// What [`Request::send`] got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields in order, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, read whole (chunked encoding removed).
    pub body: Vec<u8>,
    /// Set when the platform's proxy refused the request (and says why).
    pub egress_reason: Option<String>,
}

impl Response {
    /// A 2xx answer.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(
                "InvalidResponse",
                format!("the body is not the JSON expected: {e}"),
            )
        })
    }
}

fn invalid(message: String) -> Error {
    Error::new("InvalidRequest", message)
}

fn egress(message: String) -> Error {
    Error::new("EgressError", message)
}

/// `scheme://authority/rest` split; `rest` starts with `/` (added if absent).
struct Target<'a> {
    https: bool,
    authority: &'a str,
    path: String,
}

fn target(url: &str) -> Result<Target<'_>, Error> {
    let bad = || invalid(format!("url {url:?}: give an absolute http:// or https:// URL"));
    if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(invalid(format!(
            "url {url:?}: spaces and control characters must be percent-encoded"
        )));
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let https = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return Err(bad());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| !port.contains(']'))
        .map_or(authority, |(h, _)| h);
    if host.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    let rest = &rest[end..];
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let path = if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    };
    Ok(Target {
        https,
        authority,
        path,
    })
}

/// The proxy URL from `HTTP_PROXY` (or `http_proxy`), read through `get`.
fn proxy_from(get: impl Fn(&str) -> Option<String>) -> Result<String, Error> {
    ["HTTP_PROXY", "http_proxy"]
        .iter()
        .find_map(|name| get(name).filter(|p| !p.is_empty()))
        .ok_or_else(|| {
            Error::new(
                "NetworkUnavailable",
                "this plugin version has no network: declare the host in permissions.network",
            )
        })
}

/// The proxy's `host:port` from `HTTP_PROXY` (`http://host[:port][/]`).
fn proxy_address(proxy: &str) -> Result<String, Error> {
    let bad = || {
        Error::new(
            "NetworkUnavailable",
            format!("HTTP_PROXY {proxy:?}: not an http:// proxy URL"),
        )
    };
    let rest = match proxy.split_once("://") {
        Some((s, rest)) if s.eq_ignore_ascii_case("http") => rest,
        Some(_) => return Err(bad()),
        None => proxy,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    Ok(if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    })
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Request {
    /// A request with `method` to the absolute `url`; no body, no
    /// credential, a 30 s timeout.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Request {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            credential: None,
            timeout: std::time::Duration::from_secs(30),
        }
    }

    /// Add a header field (`Host`, `Content-Length`, `Connection` and the
    /// credential header are set by [`send`](Request::send)).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Send `body` as is (bytes or text).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Some(body.into());
        self
    }

    /// Send `value` as JSON, with `Content-Type: application/json` unless a
    /// header sets one.
    pub fn json(mut self, value: &impl Serialize) -> Result<Request, Error> {
        let body =
            serde_json::to_vec(value).map_err(|e| invalid(format!("body: cannot be sent as JSON: {e}")))?;
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            self.headers
                .push(("Content-Type".into(), "application/json".into()));
        }
        self.body = Some(body);
        Ok(self)
    }

    /// Name the platform-held credential the proxy injects.
    pub fn credential(mut self, name: impl Into<String>) -> Request {
        self.credential = Some(name.into());
        self
    }

    /// The longest any one step (connect, write, each read) may wait.
    pub fn timeout(mut self, timeout: std::time::Duration) -> Request {
        self.timeout = timeout;
        self
    }

    /// Send it through the proxy in `HTTP_PROXY` and read the whole answer.
    ///
    /// A refusal by the proxy is a [`Response`] (403, `egress_reason` set),
    /// not an error. Errors: `NetworkUnavailable` (the version has no
    /// network), `InvalidRequest` (a bad URL, method, header or
    /// credential name), `TlsUnavailable` (`https://` without a
    /// credential), `EgressError` (the proxy could not be reached or its
    /// answer read).
    pub fn send(self) -> Result<Response, Error> {
        let proxy = proxy_from(|name| std::env::var(name).ok())?;
        self.send_through(&proxy)
    }

    /// [`send`](Request::send) through the proxy at `proxy` (an
    /// `http://host:port` URL, as `HTTP_PROXY` holds) instead of the one in
    /// the environment: for tests and tools outside a box.
    pub fn send_through(self, proxy: &str) -> Result<Response, Error> {
        let proxy = proxy_address(proxy)?;
        let target = target(&self.url)?;
        if !is_token(&self.method) {
            return Err(invalid(format!("method {:?}: not an HTTP method", self.method)));
        }
        for (name, value) in &self.headers {
            if !is_token(name) {
                return Err(invalid(format!("header {name:?}: not a header name")));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(invalid(format!(
                    "header {name}: the value holds a line break or NUL"
                )));
            }
        }
        // No let-chains: `warden plugin init` vendors this file into an
        // edition 2021 crate.
        if let Some(name) = self.credential.as_deref().filter(|n| !is_token(n)) {
            return Err(invalid(format!("credential {name:?}: not a credential name")));
        }
        if target.https && self.credential.is_none() {
            return Err(Error::new(
                "TlsUnavailable",
                format!(
                    "url {}: the Rust SDK sends https:// only with a credential (the proxy then \
                     opens TLS); without one, TLS must run end to end through a tunnel and \
                     this SDK has no TLS library",
                    self.url
                ),
            ));
        }
        let mut head = format!(
            "{} {}://{}{} HTTP/1.1\r\nHost: {}\r\n",
            self.method,
            if target.https { "https" } else { "http" },
            target.authority,
            target.path,
            target.authority
        );
        const SET: [&str; 5] = [
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "x-warden-credential",
        ];
        for (name, value) in &self.headers {
            if !SET.iter().any(|s| name.eq_ignore_ascii_case(s)) {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        if let Some(name) = &self.credential {
            head.push_str(&format!("{CREDENTIAL_HEADER}: {name}\r\n"));
        }
        if let Some(body) = &self.body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");

        let addrs = std::net::ToSocketAddrs::to_socket_addrs(proxy.as_str())
            .map_err(|e| egress(format!("the egress proxy {proxy}: {e}")))?;
        let mut last = None;
        let mut stream = None;
        for addr in addrs {
            match std::net::TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut stream = stream.ok_or_else(|| {
            egress(format!(
                "reaching the egress proxy at {proxy}: {}",
                last.map_or_else(|| "no address".to_owned(), |e| e.to_string())
            ))
        })?;
        let io = |e: std::io::Error| egress(format!("talking to the egress proxy: {e}"));
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        stream.write_all(head.as_bytes()).map_err(io)?;
        if let Some(body) = &self.body {
            stream.write_all(body).map_err(io)?;
        }
        stream.flush().map_err(io)?;
        let reader = std::io::BufReader::new(stream.take(MAX_RESPONSE_BYTES));
        read_response(reader, self.method.eq_ignore_ascii_case("HEAD"))
    }
}

/// Read one HTTP/1.1 response (interim 1xx answers skipped) to its end.
fn read_response(mut r: impl std::io::BufRead, head_only: bool) -> Result<Response, Error> {
    let io = |e: std::io::Error| egress(format!("reading the answer: {e}"));
    loop {
        let mut used = 0;
        let mut line = |r: &mut dyn std::io::BufRead| -> Result<String, Error> {
            let mut buf = Vec::new();
            r.take((MAX_HEAD_BYTES - used) as u64)
                .read_until(b'\n', &mut buf)
                .map_err(io)?;
            used += buf.len();
            if buf.last() != Some(&b'\n') {
                return Err(egress(if used >= MAX_HEAD_BYTES {
                    format!("the answer's head is over {MAX_HEAD_BYTES} bytes")
                } else {
                    "the connection closed inside the answer's head".to_owned()
                }));
            }
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            String::from_utf8(buf).map_err(|_| egress("the answer's head is not text".into()))
        };
        let status_line = line(&mut r)?;
        let status = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|s| s.get(2..5))
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..600).contains(s))
            .ok_or_else(|| egress(format!("not an HTTP answer: {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let l = line(&mut r)?;
            if l.is_empty() {
                break;
            }
            let (k, v) = l
                .split_once(':')
                .ok_or_else(|| egress(format!("a malformed header line: {l:?}")))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        if (100..200).contains(&status) {
            continue;
        }
        let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let mut body = Vec::new();
        if head_only || status == 204 || status == 304 {
        } else if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            body = read_chunked(&mut r)?;
        } else if let Some(len) = find("content-length") {
            let len: u64 = len
                .parse()
                .map_err(|_| egress(format!("a malformed Content-Length: {len:?}")))?;
            r.by_ref().take(len).read_to_end(&mut body).map_err(io)?;
            if body.len() as u64 != len {
                return Err(egress(format!(
                    "the body ended after {} of {len} bytes",
                    body.len()
                )));
            }
        } else {
            r.read_to_end(&mut body).map_err(io)?;
        }
        let egress_reason = find(EGRESS_REASON_HEADER).map(str::to_owned);
        return Ok(Response {
            status,
            headers,
            body,
            egress_reason,
        });
    }
}

fn read_chunked(r: &mut impl std::io::BufRead) -> Result<Vec<u8>, Error> {
    let io = |e: std::io::Error| egress(format!("reading the answer: {e}"));
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.by_ref().take(1024).read_line(&mut size).map_err(io)?;
        let hex = size.split(';').next().unwrap_or_default().trim();
        let n =
            u64::from_str_radix(hex, 16).map_err(|_| egress(format!("a malformed chunk size: {hex:?}")))?;
        if n == 0 {
            // Trailers, then the empty line.
            loop {
                let mut l = String::new();
                if r.by_ref().take(8192).read_line(&mut l).map_err(io)? == 0 || l.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let before = body.len();
        r.by_ref().take(n).read_to_end(&mut body).map_err(io)?;
        if (body.len() - before) as u64 != n {
            return Err(egress("the connection closed inside a chunk".into()));
        }
        let mut crlf = String::new();
        r.by_ref().take(2).read_line(&mut crlf).map_err(io)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Input {
        name: String,
    }

    #[derive(Serialize)]
    struct Output {
        message: String,
    }

    fn greet(i: Input) -> Result<Output, Error> {
        if i.name.is_empty() {
            return Err(Error::new("ValidationError", "name is required"));
        }
        Ok(Output {
            message: format!("Hello, {}!", i.name),
        })
    }

    fn call<In: DeserializeOwned, Out: Serialize, E: Into<Error>>(
        h: impl FnOnce(In) -> Result<Out, E>,
        event: &str,
    ) -> (i32, serde_json::Value) {
        let mut out = Vec::new();
        let code = run_io(h, event.as_bytes(), &mut out);
        (code, serde_json::from_slice(&out).expect("the output is JSON"))
    }

    #[test]
    fn success_writes_the_result() {
        let (code, doc) = call(greet, r#"{"name": "Ada"}"#);
        assert_eq!((code, doc), (0, serde_json::json!({"message": "Hello, Ada!"})));
    }

    #[test]
    fn errors_are_structured() {
        let cases: Vec<(i32, serde_json::Value)> = vec![
            call(greet, r#"{"name": ""}"#),
            call(greet, r#"{"nom": "x"}"#),
            call(greet, "not json"),
            call(
                |_: Input| -> Result<Output, &str> { Err("boom") },
                r#"{"name": "a"}"#,
            ),
            call(
                |_: Input| -> Result<Output, Error> { panic!("oh no") },
                r#"{"name": "a"}"#,
            ),
        ];
        let kinds: Vec<&str> = cases
            .iter()
            .map(|(_, d)| d["error"]["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "ValidationError",
                "InvalidEvent",
                "InvalidEvent",
                "HandlerError",
                "Panic"
            ]
        );
        assert!(cases.iter().all(|(code, _)| *code == 1));
        assert!(
            cases[1].1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("missing field `name`")
        );
        assert_eq!(cases[4].1["error"]["message"], "oh no");
    }

    /// A one-shot loopback server standing for the proxy: it records the
    /// bytes of one request (head and `Content-Length` body) and answers
    /// `answer`, then closes.
    fn answering(answer: &'static [u8]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = c.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map_or(0, |v| v.parse::<usize>().unwrap());
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
                assert!(n > 0, "closed early: {text}");
            }
            c.write_all(answer).unwrap();
            got
        });
        (url, t)
    }

    #[test]
    fn a_credential_goes_in_absolute_form_even_for_https() {
        let (proxy, seen) = answering(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
        );
        let r = Request::new("POST", "https://api.example.test/repos?page=2#top")
            .header("X-Trace", "7")
            .header("Host", "smuggled.test")
            .credential("github")
            .json(&serde_json::json!({"n": 1}))
            .unwrap()
            .send_through(&proxy)
            .unwrap();
        let sent = String::from_utf8(seen.join().unwrap()).unwrap();
        assert_eq!(
            sent,
            "POST https://api.example.test/repos?page=2 HTTP/1.1\r\nHost: api.example.test\r\n\
             X-Trace: 7\r\nContent-Type: application/json\r\nX-Warden-Credential: github\r\n\
             Content-Length: 7\r\nConnection: close\r\n\r\n{\"n\":1}"
        );
        assert!(r.ok() && r.egress_reason.is_none(), "{r:?}");
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(v, serde_json::json!({"ok": true}));
    }

    #[test]
    fn plain_http_goes_without_a_credential_and_reads_a_chunked_body() {
        let (proxy, seen) = answering(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n",
        );
        let r = Request::new("GET", "http://[::1]:8080")
            .body("text as is")
            .send_through(&proxy)
            .unwrap();
        let sent = String::from_utf8(seen.join().unwrap()).unwrap();
        assert!(
            sent.starts_with("GET http://[::1]:8080/ HTTP/1.1\r\nHost: [::1]:8080\r\n"),
            "{sent}"
        );
        assert!(!sent.contains("X-Warden-Credential"), "{sent}");
        assert!(sent.ends_with("\r\n\r\ntext as is"), "{sent}");
        assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
    }

    #[test]
    fn a_refusal_is_a_response_with_its_reason() {
        let (proxy, seen) = answering(
            b"HTTP/1.1 403 Forbidden\r\nX-Warden-Egress-Reason: credential_not_allowed\r\n\
              Connection: close\r\n\r\nrefused: the credential is not bound to this host",
        );
        let r = Request::new("GET", "http://api.example.test/")
            .credential("gitlab")
            .send_through(&proxy)
            .unwrap();
        seen.join().unwrap();
        assert_eq!(r.status, 403);
        assert!(!r.ok());
        assert_eq!(r.egress_reason.as_deref(), Some("credential_not_allowed"));
        assert!(r.text().starts_with("refused:"), "read to the close: {r:?}");
    }

    #[test]
    fn no_proxy_is_network_unavailable() {
        let e = proxy_from(|_| None).unwrap_err();
        assert_eq!(e.kind, "NetworkUnavailable");
        let e = proxy_from(|n| (n == "HTTP_PROXY").then(String::new)).unwrap_err();
        assert_eq!(e.kind, "NetworkUnavailable");
        let p = proxy_from(|n| (n == "http_proxy").then(|| "http://10.0.0.1:3128".into()));
        assert_eq!(p.unwrap(), "http://10.0.0.1:3128");
        assert_eq!(proxy_address("http://10.0.0.1").unwrap(), "10.0.0.1:80");
        assert_eq!(proxy_address("10.0.0.1:3128/").unwrap(), "10.0.0.1:3128");
        for bad in ["socks5://x:1", "http://", "http://u:p@x:1"] {
            assert_eq!(
                proxy_address(bad).unwrap_err().kind,
                "NetworkUnavailable",
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_input_is_a_clear_error_before_anything_is_sent() {
        // Nothing listens here: every case must fail before connecting.
        let proxy = "http://127.0.0.1:9";
        let cases = [
            (
                Request::new("GET", "ftp://x.test/"),
                "InvalidRequest",
                "absolute http",
            ),
            (
                Request::new("GET", "/relative"),
                "InvalidRequest",
                "absolute http",
            ),
            (
                Request::new("GET", "http:///x"),
                "InvalidRequest",
                "absolute http",
            ),
            (
                Request::new("GET", "http://u@x.test/"),
                "InvalidRequest",
                "absolute http",
            ),
            (
                Request::new("GET", "http://x.test/a b"),
                "InvalidRequest",
                "percent-encoded",
            ),
            (
                Request::new("GET", "http://x.test/\r\nX: y"),
                "InvalidRequest",
                "percent-encoded",
            ),
            (Request::new("GE T", "http://x.test/"), "InvalidRequest", "method"),
            (
                Request::new("GET", "http://x.test/").header("X", "a\r\nInjected: 1"),
                "InvalidRequest",
                "header X",
            ),
            (
                Request::new("GET", "http://x.test/").header("A:B", "1"),
                "InvalidRequest",
                "header",
            ),
            (
                Request::new("GET", "http://x.test/").credential("git\r\nhub"),
                "InvalidRequest",
                "credential",
            ),
            (
                Request::new("GET", "https://x.test/"),
                "TlsUnavailable",
                "with a credential",
            ),
        ];
        for (req, kind, says) in cases {
            let e = req.clone().send_through(proxy).unwrap_err();
            assert_eq!(e.kind, kind, "{req:?}: {e}");
            assert!(e.message.contains(says), "{req:?}: {e}");
        }
        let e = Request::new("GET", "http://x.test/")
            .send_through(proxy)
            .unwrap_err();
        assert_eq!(e.kind, "EgressError", "{e}");
    }

    #[test]
    fn a_broken_answer_is_an_error() {
        for (answer, says) in [
            (&b"SSH-2.0-OpenSSH\r\n"[..], "not an HTTP answer"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "5 of 10"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "Content-Length"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "chunk size",
            ),
            (b"HTTP/1.1 200 OK\r\nX-No-End: 1\r\n", "closed inside"),
        ] {
            let e = read_response(answer, false).unwrap_err();
            assert_eq!(e.kind, "EgressError");
            assert!(e.message.contains(says), "{e}");
        }
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        let e = read_response(huge.as_bytes(), false).unwrap_err();
        assert!(e.message.contains("head is over"), "{e}");
        let r = read_response(&b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"[..], true).unwrap();
        assert!(r.body.is_empty(), "a HEAD answer has no body");
    }
}
