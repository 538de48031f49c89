//! Secrets taken out of what comes back: an upstream that echoes a request
//! (a debugging endpoint, an error page quoting the `Authorization` header,
//! a redirect carrying the query) would otherwise hand the box the secret
//! the proxy put in. Every form of the credential's secret is replaced by
//! [`REDACTED`] in the response's headers and, streaming, in its body; a
//! form split across two reads of the body is caught too (the scrubber
//! holds back at most the longest form's length less one byte).
//!
//! Must never: pass on a byte sequence equal to a form of the secret;
//! hold back more than the longest form; change a response that holds no
//! form at all.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http::header::HeaderValue;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::forward::Body;

/// What a form of the secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Forms shorter than this are not scrubbed: replacing every `pw` of a
/// response would corrupt it, and a secret that short is guessable anyway.
pub const MIN_FORM: usize = 6;

/// Replaces the forms of a secret in a stream of bytes. No `Debug`: it
/// holds the secret.
#[derive(Clone)]
pub(crate) struct Scrubber {
    /// Longest first, so a form inside another goes with it.
    forms: Vec<Vec<u8>>,
    /// Bytes read but not yet passed on: the start of a possible form.
    pending: Vec<u8>,
}

impl Scrubber {
    /// A scrubber of `forms` (empty ones and those shorter than
    /// [`MIN_FORM`] are left out).
    pub(crate) fn new(forms: impl IntoIterator<Item = Vec<u8>>) -> Scrubber {
        let mut forms: Vec<Vec<u8>> = forms.into_iter().filter(|f| f.len() >= MIN_FORM).collect();
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        Scrubber {
            forms,
            pending: Vec::new(),
        }
    }

    /// Whether there is nothing to scrub.
    pub(crate) fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// Takes `chunk` in and returns what can be passed on now: every
    /// complete form replaced, a possible start of one held back.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let (out, used) = self.scan(false);
        self.pending.drain(..used);
        out
    }

    /// The rest, at the end of the stream.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let (out, _) = self.scan(true);
        self.pending.clear();
        out
    }

    /// `bytes` scrubbed whole (a header's value).
    pub(crate) fn all(&self, bytes: &[u8]) -> Vec<u8> {
        let one = Scrubber {
            forms: self.forms.clone(),
            pending: bytes.to_vec(),
        };
        one.scan(true).0
    }

    /// Scrubs `pending` from its start; returns the output and how many
    /// bytes of `pending` it covers. Unless `at_end`, stops at the first
    /// position where a form could begin but the bytes run out.
    fn scan(&self, at_end: bool) -> (Vec<u8>, usize) {
        let p = &self.pending;
        let mut out = Vec::with_capacity(p.len());
        let mut i = 0;
        'bytes: while i < p.len() {
            let rest = &p[i..];
            for f in &self.forms {
                if rest.starts_with(f) {
                    out.extend_from_slice(REDACTED.as_bytes());
                    i += f.len();
                    continue 'bytes;
                }
            }
            if !at_end
                && self
                    .forms
                    .iter()
                    .any(|f| rest.len() < f.len() && f.starts_with(rest))
            {
                break;
            }
            out.push(p[i]);
            i += 1;
        }
        (out, i)
    }

    /// Scrubs every header value in place. A value that no longer parses
    /// (it cannot: `<redacted>` is visible ASCII) is dropped.
    pub(crate) fn headers(&self, headers: &mut HeaderMap) {
        if self.is_empty() {
            return;
        }
        let names: Vec<_> = headers.keys().cloned().collect();
        for name in names {
            let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
            let scrubbed: Vec<Vec<u8>> = values.iter().map(|v| self.all(v.as_bytes())).collect();
            if values
                .iter()
                .zip(&scrubbed)
                .all(|(v, s)| v.as_bytes() == s.as_slice())
            {
                continue;
            }
            headers.remove(&name);
            for s in scrubbed {
                if let Ok(v) = HeaderValue::from_bytes(&s) {
                    headers.append(name.clone(), v);
                }
            }
        }
    }
}

/// A response body with the secret's forms taken out. Trailers are
/// dropped (they could carry the secret and no box needs them).
pub(crate) struct ScrubBody {
    inner: Body,
    scrubber: Scrubber,
    done: bool,
}

impl ScrubBody {
    /// `inner`, scrubbed by `scrubber`.
    pub(crate) fn new(inner: Body, scrubber: Scrubber) -> ScrubBody {
        ScrubBody {
            inner,
            scrubber,
            done: false,
        }
    }
}

impl HttpBody for ScrubBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not passed on.
                    let Ok(data) = frame.into_data() else { continue };
                    let out = this.scrubber.push(&data);
                    // An empty frame would say nothing; read on.
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let rest = this.scrubber.finish();
                    if !rest.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        // The length changes when a form is replaced.
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms() -> Vec<Vec<u8>> {
        vec![
            b"Bearer tok-123456".to_vec(),
            b"tok-123456".to_vec(),
            b"short".to_vec(),
        ]
    }

    fn streamed(input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut s = Scrubber::new(forms());
        let mut out = Vec::new();
        let mut from = 0;
        for &c in cuts {
            out.extend(s.push(&input[from..c]));
            from = c;
        }
        out.extend(s.push(&input[from..]));
        out.extend(s.finish());
        out
    }

    #[test]
    fn every_form_goes_wherever_the_chunks_split_it() {
        let input = b"a: Bearer tok-123456; b: tok-123456tok-123456 short tok-12345 end tok-1";
        let want = b"a: <redacted>; b: <redacted><redacted> short tok-12345 end tok-1".to_vec();
        assert_eq!(Scrubber::new(forms()).all(input), want);
        for i in 0..=input.len() {
            for j in i..=input.len() {
                assert_eq!(streamed(input, &[i, j]), want, "cut at {i} and {j}");
            }
        }
        // One byte at a time.
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(streamed(input, &cuts), want);
    }

    #[test]
    fn it_holds_back_no_more_than_a_possible_form() {
        let mut s = Scrubber::new(forms());
        assert_eq!(s.push(b"hello Bear"), b"hello ".to_vec());
        assert_eq!(s.push(b"s"), b"Bears".to_vec());
        assert_eq!(s.push(b"tok-1"), Vec::<u8>::new());
        assert_eq!(s.finish(), b"tok-1".to_vec());
    }

    #[test]
    fn without_forms_nothing_changes() {
        let mut s = Scrubber::new(vec![Vec::new(), b"abc".to_vec()]);
        assert!(s.is_empty());
        assert_eq!(s.push(b"abc abc"), b"abc abc".to_vec());
    }

    #[test]
    fn header_values_are_scrubbed_and_others_kept_in_order() {
        let mut h = HeaderMap::new();
        h.append("x-echo", HeaderValue::from_static("Bearer tok-123456"));
        h.append("x-echo", HeaderValue::from_static("plain"));
        h.append("location", HeaderValue::from_static("/next?key=tok-123456&x=1"));
        h.append("x-other", HeaderValue::from_static("kept"));
        Scrubber::new(forms()).headers(&mut h);
        let echo: Vec<_> = h.get_all("x-echo").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(echo, ["<redacted>", "plain"]);
        assert_eq!(h["location"], "/next?key=<redacted>&x=1");
        assert_eq!(h["x-other"], "kept");
    }
}
