//! Real sockets on loopback: upstreams the tests run, and blocking clients
//! speaking to the proxy the way a box's programs do.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use warden_egress::{ConnectionRecord, Policy, ProxyHandle, Reason, serve};

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP echo server; counts the connections it accepted.
pub struct Echo {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

pub fn echo(bind: &str) -> Echo {
    let listener = TcpListener::bind(bind).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    Echo { addr, accepted }
}

/// A tiny HTTP/1.1 server: answers each connection's first request with
/// `200` and a body naming it, and keeps every byte it received.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<String>>>,
    /// Connections accepted, and those whose handling is over (logged in
    /// `seen` if they carried a request).
    accepted: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
}

impl Upstream {
    /// What it received, once every connection it accepted is logged (a
    /// connection is logged after its response and a short wait for
    /// smuggled bytes, so right after a client has its answer the log may
    /// still lag). Gives up waiting after 5 s.
    pub fn settled(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let accepted = self.accepted.load(Ordering::Acquire);
            if self.finished.load(Ordering::Acquire) >= accepted || Instant::now() >= deadline {
                return self.seen.lock().unwrap().clone();
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

pub fn http_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let accepted = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (count, over) = (accepted.clone(), finished.clone());
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            count.fetch_add(1, Ordering::AcqRel);
            let log = log.clone();
            let done = Finished(over.clone());
            thread::spawn(move || {
                let _done = done;
                stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut got = Vec::new();
                let head_end = loop {
                    if let Some(i) = find(&got, b"\r\n\r\n") {
                        break i + 4;
                    }
                    let mut buf = [0u8; 4096];
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&got[..head_end]).to_string();
                let len = header(&head, "content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                while got.len() < head_end + len {
                    let mut buf = [0u8; 4096];
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let first = head.lines().next().unwrap_or("").to_string();
                let body = format!("hello from upstream: {first}");
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-upstream: yes\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                // Keep whatever else arrives (a smuggled request would).
                stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                got.extend_from_slice(&rest);
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&got).to_string());
            });
        }
    });
    Upstream {
        addr,
        seen,
        accepted,
        finished,
    }
}

/// Counts a connection's handling as over when dropped, however it ends.
struct Finished(Arc<AtomicUsize>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` in a response or request head.
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// A proxy on a fresh loopback listener.
pub fn proxy(policy: Policy) -> (ProxyHandle, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (serve(listener, policy).unwrap(), addr)
}

/// The usual policy: `upstream.test:<port>` pinned to 127.0.0.1, which the
/// operator opens exactly.
pub fn allow_upstream(port: u16) -> Policy {
    Policy::new([format!("upstream.test:{port}")])
        .unwrap()
        .pin("upstream.test", &[LOCALHOST])
        .unwrap()
        .allow_cidr("127.0.0.1/32")
        .unwrap()
}

pub fn client(proxy: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// A response head as the box sees it.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub text: String,
}

impl Head {
    pub fn reason(&self) -> Option<String> {
        header(&self.text, "x-warden-egress-reason")
    }
}

/// Reads a response head, one byte at a time (nothing past it is taken).
pub fn read_head(s: &mut TcpStream) -> Head {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            other => panic!(
                "no complete response head ({other:?}) after {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
        assert!(got.len() < 64 * 1024, "response head too long");
    }
    let text = String::from_utf8(got).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    Head { status, text }
}

/// Sends `CONNECT target` and reads the answer's head.
pub fn connect(proxy: SocketAddr, target: &str) -> (Head, TcpStream) {
    let mut s = client(proxy);
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let head = read_head(&mut s);
    (head, s)
}

/// Sends raw bytes, then reads the whole answer (head and body to EOF).
pub fn exchange(proxy: SocketAddr, raw: &[u8]) -> (Head, String) {
    let mut s = client(proxy);
    s.write_all(raw).unwrap();
    let head = read_head(&mut s);
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    (head, String::from_utf8_lossy(&body).to_string())
}

/// Bytes through a tunnel and back from the echo upstream.
pub fn round_trip(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
}

/// Closes the client's side and waits for the proxy to close too.
pub fn finish(mut s: TcpStream) {
    let _ = s.shutdown(Shutdown::Write);
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
}

/// Waits until the proxy has recorded `n` connections; returns them.
pub fn records(handle: &ProxyHandle, n: usize) -> Vec<ConnectionRecord> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let report = handle.report();
        if report.connections.len() >= n {
            return report.connections;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} records, have {:#?}",
            report.connections
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// The one record the proxy has, once written.
pub fn only_record(handle: &ProxyHandle) -> ConnectionRecord {
    let mut all = records(handle, 1);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

/// Asserts a refusal: the status and reason the box saw, and the record.
pub fn assert_refused(head: &Head, record: &ConnectionRecord, reason: Reason) {
    assert_eq!(head.reason().as_deref(), Some(reason.as_str()), "{head:?}");
    assert_eq!(head.status, reason.status(), "{head:?}");
    assert_eq!(record.reason(), Some(reason), "{record:#?}");
    assert!(!record.allowed(), "{record:#?}");
    assert_eq!(record.address, None, "{record:#?}");
    assert_eq!((record.bytes_up, record.bytes_down), (0, 0));
}
