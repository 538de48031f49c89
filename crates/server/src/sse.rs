//! The Server-Sent Events engine behind `GET /v1/executions/{id}/events`.
//!
//! While the execution's live log is in memory ([`crate::events`]), the
//! stream sends its events after the client's `Last-Event-ID` and waits for
//! more; once the log is gone (finished a while ago, or the execution ran on
//! another node) it polls the stored record and sends its `result`. The
//! stream ends after `result` (id `end`), or after about 15 minutes of
//! polling a record that never becomes final (its node is gone). It must
//! never hold a lock across an await, nor poll without a pause.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::Event;
use futures::{Stream, StreamExt as _};
use warden_core::Store;

use crate::AppState;
use crate::views::ExecutionView;

/// How long a wait for new events lasts before looking again.
const WAIT: Duration = Duration::from_secs(15);

/// Polls of the stored record before giving up (about 15 minutes: 40 at
/// 250 ms, then one a second).
const MAX_POLLS: u32 = 900;

/// Where a stream is: the last id sent, and whether it has ended.
struct Cursor {
    state: AppState,
    id: String,
    last: Option<String>,
    finished: bool,
}

/// The events of execution `id` after `last` (a `Last-Event-ID`), to the
/// end. The caller has checked that the client may see the execution.
pub fn events(
    state: AppState,
    id: String,
    last: Option<String>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let cursor = Cursor {
        state,
        id,
        last,
        finished: false,
    };
    futures::stream::unfold(cursor, next_batch).flatten()
}

/// The next batch of events, or `None` when the stream is over.
async fn next_batch(
    mut c: Cursor,
) -> Option<(
    futures::stream::Iter<std::vec::IntoIter<Result<Event, Infallible>>>,
    Cursor,
)> {
    if c.finished {
        return None;
    }
    let mut polls = 0u32;
    loop {
        if let Some(log) = c.state.exec.hub.get(&c.id) {
            let changed = log.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (events, _) = log.after(c.last.as_deref());
            if !events.is_empty() {
                c.last = events.last().map(|e| e.id.clone());
                c.finished = c.last.as_deref() == Some("end");
                let batch: Vec<Result<Event, Infallible>> = events
                    .into_iter()
                    .map(|e| Ok(Event::default().id(e.id).event(e.kind).data(e.data)))
                    .collect();
                return Some((futures::stream::iter(batch), c));
            }
            if c.last.as_deref() == Some("end") {
                return None;
            }
            let _ = tokio::time::timeout(WAIT, changed).await;
            continue;
        }
        // Not in memory: the stored record.
        if c.last.as_deref() == Some("end") {
            return None;
        }
        polls += 1;
        if polls > MAX_POLLS {
            return None;
        }
        match c.state.store.get_execution(&c.id).await {
            Ok(Some(e)) if e.status.is_final() => {
                let view = ExecutionView::from(e);
                let event = Event::default()
                    .id("end")
                    .event("result")
                    .data(serde_json::to_string(&view).unwrap_or_default());
                c.last = Some("end".into());
                c.finished = true;
                return Some((futures::stream::iter(vec![Ok(event)]), c));
            }
            Ok(Some(_)) => {
                let pause = if polls < 40 { 250 } else { 1000 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            _ => return None,
        }
    }
}
