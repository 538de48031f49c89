//! Live event logs of executions, for Server-Sent Events.
//!
//! While an execution runs, its output chunks and state changes are kept
//! in memory with increasing ids, so a client that reconnects with
//! `Last-Event-ID` gets exactly what it missed. The final `result` event has
//! the id `end`. A finished log is kept for [`KEEP_FINISHED`]; after that
//! (or on another node) a client gets the stored result, which holds the
//! whole captured output anyway.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long a finished log stays in memory.
pub const KEEP_FINISHED: Duration = Duration::from_secs(120);

/// Most events one log keeps.
pub const MAX_CHUNKS: usize = 4096;

/// Text of `buf` (invalid bytes replaced) and the bytes of an unfinished
/// UTF-8 sequence at its end, kept for the next chunk.
fn decode(buf: &[u8]) -> (String, &[u8]) {
    let mut out = String::new();
    let mut rest = buf;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return (out, &[]);
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                match e.error_len() {
                    Some(n) => {
                        out.push('\u{fffd}');
                        rest = &after[n..];
                    }
                    None => return (out, after),
                }
            }
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `1`, `2`, … or `end` for the result.
    pub id: String,
    /// `status`, `stdout`, `stderr` or `result`.
    pub kind: &'static str,
    /// JSON text.
    pub data: String,
}

#[derive(Default)]
struct Inner {
    events: Vec<Event>,
    next: u64,
    done: bool,
    finished_at: Option<Instant>,
    /// Bytes of an unfinished UTF-8 sequence per stream (0: stdout, 1: stderr).
    partial: [Vec<u8>; 2],
    /// Chunks stopped being logged.
    capped: bool,
}

/// The event log of one execution.
#[derive(Default)]
pub struct Log {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl Log {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push_locked(inner: &mut Inner, kind: &'static str, data: String) {
        inner.next += 1;
        let id = inner.next.to_string();
        inner.events.push(Event { id, kind, data });
    }

    /// A state change.
    pub fn status(&self, status: &str) {
        Self::push_locked(
            &mut self.lock(),
            "status",
            serde_json::json!({ "status": status }).to_string(),
        );
        self.notify.notify_waiters();
    }

    /// A stage of the program begins (`run`, after a compile step): output
    /// before this event was the compiler's, after it the program's.
    pub fn stage(&self, stage: &str) {
        Self::push_locked(
            &mut self.lock(),
            "status",
            serde_json::json!({ "status": "running", "stage": stage }).to_string(),
        );
        self.notify.notify_waiters();
    }

    /// A chunk of output; UTF-8 sequences split across chunks are joined.
    /// Past [`MAX_CHUNKS`] events, chunks are no longer logged one by one (a
    /// plugin printing a byte at a time would otherwise cost far more memory
    /// than its output): one `status` event says so, and the final result
    /// carries the whole captured output.
    pub fn output(&self, stderr: bool, bytes: &[u8]) {
        let mut inner = self.lock();
        if inner.events.len() >= MAX_CHUNKS {
            if !inner.capped {
                inner.capped = true;
                Self::push_locked(
                    &mut inner,
                    "status",
                    serde_json::json!({"status": "running", "output": "too many chunks to stream; the result holds all of it"}).to_string(),
                );
                drop(inner);
                self.notify.notify_waiters();
            }
            return;
        }
        let i = usize::from(stderr);
        let mut buf = std::mem::take(&mut inner.partial[i]);
        buf.extend_from_slice(bytes);
        let (text, rest) = decode(&buf);
        inner.partial[i] = rest.to_vec();
        if text.is_empty() {
            return;
        }
        let kind = if stderr { "stderr" } else { "stdout" };
        Self::push_locked(&mut inner, kind, serde_json::Value::String(text).to_string());
        drop(inner);
        self.notify.notify_waiters();
    }

    /// The final result; the log is complete.
    pub fn finish(&self, result: String) {
        let mut inner = self.lock();
        for i in 0..2 {
            let rest = std::mem::take(&mut inner.partial[i]);
            if !rest.is_empty() {
                let kind = if i == 1 { "stderr" } else { "stdout" };
                let text = String::from_utf8_lossy(&rest).into_owned();
                Self::push_locked(&mut inner, kind, serde_json::Value::String(text).to_string());
            }
        }
        inner.events.push(Event {
            id: "end".into(),
            kind: "result",
            data: result,
        });
        inner.done = true;
        inner.finished_at = Some(Instant::now());
        drop(inner);
        self.notify.notify_waiters();
    }

    /// Events after `last` (an id a client saw), and whether the log is
    /// complete.
    pub fn after(&self, last: Option<&str>) -> (Vec<Event>, bool) {
        let inner = self.lock();
        let from = match last {
            None => 0,
            Some("end") => inner.events.len(),
            Some(id) => match id.parse::<u64>() {
                Ok(n) => inner
                    .events
                    .iter()
                    .position(|e| e.id.parse::<u64>().map_or(true, |m| m > n))
                    .unwrap_or(inner.events.len()),
                Err(_) => 0,
            },
        };
        (inner.events[from..].to_vec(), inner.done)
    }

    /// Wait until something is added after the caller last looked (see
    /// [`Log::after`]); `enable` the returned future before looking.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

/// Every live log.
pub struct Hub {
    inner: Mutex<Logs>,
    /// How long a finished log stays: [`KEEP_FINISHED`].
    keep: Duration,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            inner: Mutex::default(),
            keep: KEEP_FINISHED,
        }
    }
}

/// The logs by id, and their ids in a ring that [`Hub::open`] walks a
/// little at a time to drop expired ones.
#[derive(Default)]
struct Logs {
    by_id: HashMap<String, Arc<Log>>,
    ring: VecDeque<String>,
}

/// Ring entries [`Hub::open`] looks at per log it adds: more than one, so
/// the walk outpaces the additions and every entry is looked at again
/// after at most about half the ring's length of opens.
const SWEEP_PER_OPEN: usize = 2;

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Logs> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start the log of execution `id`, and drop a few expired finished
    /// ones: a constant amount of work per call, where a scan of every
    /// kept log made each execution slower the more had finished in the
    /// last [`KEEP_FINISHED`].
    pub fn open(&self, id: &str) -> Arc<Log> {
        let mut logs = self.lock();
        for _ in 0..SWEEP_PER_OPEN.min(logs.ring.len()) {
            let Some(next) = logs.ring.pop_front() else {
                break;
            };
            let keep = logs
                .by_id
                .get(&next)
                .map(|log| log.lock().finished_at.is_none_or(|t| t.elapsed() < self.keep));
            match keep {
                Some(true) => logs.ring.push_back(next),
                Some(false) => {
                    logs.by_id.remove(&next);
                }
                // Forgotten meanwhile.
                None => {}
            }
        }
        if let Some(log) = logs.by_id.get(id) {
            return log.clone();
        }
        let log = Arc::new(Log::default());
        logs.by_id.insert(id.to_owned(), log.clone());
        logs.ring.push_back(id.to_owned());
        log
    }

    /// The log of execution `id`, while it is kept.
    pub fn get(&self, id: &str) -> Option<Arc<Log>> {
        self.lock().by_id.get(id).cloned()
    }

    /// Drop the log of execution `id`, which runs elsewhere (another node
    /// started it): clients following it read its stored record instead.
    pub fn forget(&self, id: &str) {
        if let Some(log) = self.lock().by_id.remove(id) {
            log.notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_at_a_time_is_capped_not_hoarded() {
        let log = Log::default();
        for _ in 0..MAX_CHUNKS * 3 {
            log.output(false, b"x");
        }
        log.finish("{}".into());
        let (events, done) = log.after(None);
        assert!(done);
        assert_eq!(events.len(), MAX_CHUNKS + 2, "the chunks, one notice, the result");
        assert!(events[MAX_CHUNKS].data.contains("too many chunks"));
    }

    #[test]
    fn expired_logs_go_a_few_at_a_time_and_live_ones_stay() {
        let hub = Hub {
            keep: Duration::ZERO,
            ..Hub::default()
        };
        let running = hub.open("running");
        for i in 0..300 {
            hub.open(&format!("done-{i}")).finish("{}".into());
        }
        let logs = hub.lock();
        assert!(
            logs.by_id.len() < 10,
            "expired logs are dropped as new ones come: {} kept",
            logs.by_id.len()
        );
        assert!(logs.ring.len() < 10, "the ring shrinks with them");
        drop(logs);
        assert!(
            Arc::ptr_eq(&hub.get("running").expect("a running log stays"), &running),
            "an unfinished log is never dropped"
        );
        hub.forget("running");
        assert!(hub.get("running").is_none());
        assert!(Arc::ptr_eq(&hub.open("x"), &hub.open("x")), "one log per id");
    }

    #[test]
    fn reconnecting_clients_get_exactly_what_they_missed() {
        let hub = Hub::default();
        let log = hub.open("e1");
        log.status("running");
        log.output(false, b"one\n");
        log.output(true, b"err\n");
        let (all, done) = log.after(None);
        assert_eq!(
            all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["1", "2", "3"]
        );
        assert!(!done);
        log.output(false, b"two\n");
        log.finish("{\"status\":\"success\"}".into());
        let (rest, done) = log.after(Some("2"));
        assert_eq!(
            rest.iter().map(|e| (e.id.as_str(), e.kind)).collect::<Vec<_>>(),
            [("3", "stderr"), ("4", "stdout"), ("end", "result")]
        );
        assert!(done);
        assert!(log.after(Some("end")).0.is_empty());
        assert_eq!(
            log.after(Some("garbage")).0.len(),
            5,
            "an unknown id replays everything"
        );
    }

    #[test]
    fn utf8_split_across_chunks_is_joined() {
        let log = Log::default();
        let snow = "☃".as_bytes();
        log.output(false, &snow[..1]);
        log.output(false, &snow[1..]);
        log.output(false, b"\xff!");
        let (events, _) = log.after(None);
        let texts: Vec<String> = events
            .iter()
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect();
        assert_eq!(texts, ["☃", "\u{fffd}!"]);
    }
}
