//! Server-Sent Events read from a response as they arrive: the one reader
//! of the commands that follow a server's live output (a template's build,
//! a session's execution). It never buffers more than one event past the
//! last line break.

/// One event: its `event:` name, its `id:` (empty when it had none) and its
/// `data:` lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: String,
    /// The `id:` field.
    pub id: String,
    /// The `data:` fields, joined with `\n`.
    pub data: String,
}

/// Events of a `text/event-stream` response, one at a time.
pub struct SseReader {
    response: reqwest::Response,
    buf: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseReader {
    /// Read the events of `response`.
    pub fn new(response: reqwest::Response) -> SseReader {
        SseReader {
            response,
            buf: Vec::new(),
            current: empty(),
            has_data: false,
        }
    }

    /// The next event, or `None` when the stream ended.
    pub async fn next(&mut self) -> reqwest::Result<Option<SseEvent>> {
        loop {
            while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&raw);
                if let Some(done) = self.line(line.trim_end_matches(['\n', '\r'])) {
                    return Ok(Some(done));
                }
            }
            match self.response.chunk().await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }

    /// Take one line; an event when the line ends one.
    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            if self.current.event.is_empty() && !self.has_data {
                return None;
            }
            self.has_data = false;
            return Some(std::mem::replace(&mut self.current, empty()));
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.current.event = value.to_owned(),
            "id" => self.current.id = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }
}

fn empty() -> SseEvent {
    SseEvent {
        event: String::new(),
        id: String::new(),
        data: String::new(),
    }
}
