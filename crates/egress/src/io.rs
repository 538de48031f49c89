//! The upstream side of a connection, metered: bytes counted per connection
//! and against the proxy's byte budget, and the time of the last byte kept
//! for the idle cut.
//!
//! Must never: let a connection move a byte past the budget it saw, or
//! buffer anything itself.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::record::{Cut, Reason};

/// The bytes one proxy may still move, shared by its connections.
pub(crate) struct Budget {
    used: AtomicU64,
    max: u64,
}

impl Budget {
    pub fn new(max: u64) -> Budget {
        Budget {
            used: AtomicU64::new(0),
            max,
        }
    }

    /// What is left at this moment.
    pub fn remaining(&self) -> u64 {
        self.max.saturating_sub(self.used.load(Ordering::Relaxed))
    }

    fn spend(&self, n: u64) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}

/// One connection's counters, shared by the tasks that move its bytes and
/// the task that records it.
pub(crate) struct Meter {
    epoch: Instant,
    up: AtomicU64,
    down: AtomicU64,
    /// Nanoseconds after `epoch` of the last byte (or of the connection to
    /// the upstream).
    last: AtomicU64,
    /// Set once the upstream is connected: the idle clock starts then.
    connected: AtomicBool,
    connected_notify: Notify,
    cut: Mutex<Option<Cut>>,
}

impl Meter {
    pub fn new() -> Meter {
        Meter {
            epoch: Instant::now(),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            last: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            connected_notify: Notify::new(),
            cut: Mutex::new(None),
        }
    }

    pub fn up(&self) -> u64 {
        self.up.load(Ordering::Relaxed)
    }

    pub fn down(&self) -> u64 {
        self.down.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    /// The upstream is connected: start the idle clock.
    pub fn start(&self) {
        self.touch();
        self.connected.store(true, Ordering::Release);
        self.connected_notify.notify_waiters();
    }

    /// Records why the connection was cut; the first reason wins.
    pub fn cut(&self, reason: Reason, message: String) {
        let mut cut = self.cut.lock().unwrap_or_else(|p| p.into_inner());
        cut.get_or_insert(Cut { reason, message });
    }

    pub fn peek_cut(&self) -> Option<Cut> {
        self.cut.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn take_cut(&self) -> Option<Cut> {
        self.cut.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Resolves when no byte has moved for `idle` since the upstream was
    /// connected (never before it is).
    pub async fn idle(&self, idle: Duration) {
        loop {
            // Created before the check, so a `start` in between still wakes it.
            let notified = self.connected_notify.notified();
            if self.connected.load(Ordering::Acquire) {
                break;
            }
            notified.await;
        }
        loop {
            let last = self.epoch + Duration::from_nanos(self.last.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// The upstream stream, metered. Reads and writes are limited to what the
/// budget has left; with nothing left they fail and the meter says why.
pub(crate) struct Metered {
    inner: TcpStream,
    budget: Arc<Budget>,
    meter: Arc<Meter>,
}

impl Metered {
    pub fn new(inner: TcpStream, budget: Arc<Budget>, meter: Arc<Meter>) -> Metered {
        Metered { inner, budget, meter }
    }

    fn over_budget(&self) -> io::Error {
        let max = self.budget.max();
        self.meter.cut(
            Reason::ByteCap,
            format!("this box's proxy moved its cap of {max} bytes; the connection was cut"),
        );
        io::Error::other(format!("byte cap of {max} reached"))
    }
}

impl AsyncRead for Metered {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let allowed = this.budget.remaining();
        if allowed == 0 {
            return Poll::Ready(Err(this.over_budget()));
        }
        let n = if (buf.remaining() as u64) <= allowed {
            let before = buf.filled().len();
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            buf.filled().len() - before
        } else {
            let limit = usize::try_from(allowed).unwrap_or(usize::MAX);
            let mut part = ReadBuf::new(buf.initialize_unfilled_to(limit));
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
            let n = part.filled().len();
            buf.advance(n);
            n
        };
        if n > 0 {
            this.budget.spend(n as u64);
            this.meter.down.fetch_add(n as u64, Ordering::Relaxed);
            this.meter.touch();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Metered {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let allowed = this.budget.remaining();
        if allowed == 0 {
            return Poll::Ready(Err(this.over_budget()));
        }
        let limit = usize::try_from(allowed).unwrap_or(usize::MAX).min(buf.len());
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..limit]))?;
        if n > 0 {
            this.budget.spend(n as u64);
            this.meter.up.fetch_add(n as u64, Ordering::Relaxed);
            this.meter.touch();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How much of what the box still sends is read and thrown away after a
/// refusal, and for how long: closing a socket with unread input makes the
/// kernel send a reset, which can destroy the refusal before the box reads
/// it.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_TIME: Duration = Duration::from_millis(500);

/// Closes the box's side gently: no more output, then up to a bounded
/// amount of input read and dropped until the box closes too.
pub(crate) async fn linger_close(stream: std::net::TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let Ok(mut stream) = TcpStream::from_std(stream) else {
        return;
    };
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}
