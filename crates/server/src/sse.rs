//! The Server-Sent Events engine behind `GET /v1/executions/{id}/events`
//! and `GET /v1/layers/{id}/events` (a build's log).
//!
//! While the live log is in memory ([`crate::events`]), the stream sends
//! its events after the client's `Last-Event-ID` and waits for more; once
//! the log is gone (finished a while ago, or the work ran on another node)
//! it polls the stored record and sends its `result`. The
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

/// Whose events a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An execution's (its output and result).
    Execution,
    /// A dependency layer's build (the installer's output and the layer).
    Layer,
}

/// Where a stream is: the last id sent, and whether it has ended.
struct Cursor {
    state: AppState,
    source: Source,
    id: String,
    last: Option<String>,
    finished: bool,
}

impl Cursor {
    fn live(&self) -> Option<std::sync::Arc<crate::events::Log>> {
        match self.source {
            Source::Execution => self.state.exec.hub.get(&self.id),
            Source::Layer => self.state.builds.live(&self.id),
        }
    }

    /// The stored record as the `result` event's data, once it is final;
    /// `Ok(None)` while it is not, `Err(())` when it is gone.
    async fn final_record(&self) -> Result<Option<String>, ()> {
        match self.source {
            Source::Execution => match self.state.store.get_execution(&self.id).await {
                Ok(Some(e)) if e.status.is_final() => Ok(Some(
                    serde_json::to_string(&ExecutionView::from(e)).unwrap_or_default(),
                )),
                Ok(Some(_)) => Ok(None),
                _ => Err(()),
            },
            Source::Layer => match self.state.store.get_layer(&self.id).await {
                Ok(Some(l))
                    if matches!(
                        l.status,
                        warden_core::layer::LayerStatus::Ready | warden_core::layer::LayerStatus::Failed
                    ) =>
                {
                    Ok(Some(
                        serde_json::to_string(&crate::templates::LayerView::from(l)).unwrap_or_default(),
                    ))
                }
                Ok(Some(_)) => Ok(None),
                _ => Err(()),
            },
        }
    }
}

/// The events of `source` `id` after `last` (a `Last-Event-ID`), to the
/// end. The caller has checked that the client may see it.
pub fn events(
    state: AppState,
    source: Source,
    id: String,
    last: Option<String>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let cursor = Cursor {
        state,
        source,
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
        if let Some(log) = c.live() {
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
        match c.final_record().await {
            Ok(Some(data)) => {
                let event = Event::default().id("end").event("result").data(data);
                c.last = Some("end".into());
                c.finished = true;
                return Some((futures::stream::iter(vec![Ok(event)]), c));
            }
            Ok(None) => {
                let pause = if polls < 40 { 250 } else { 1000 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(()) => return None,
        }
    }
}
