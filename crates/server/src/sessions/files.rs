//! The host side of a session's file API, before and after the jail's
//! `BoxDir` (which resolves every path beneath the workspace's descriptor
//! and follows nothing the box planted): paths checked as text first, so a
//! bad one is refused with its reason before anything is touched; `Range`
//! headers; an upload's body handed to a blocking writer piece by piece;
//! a download streamed from the descriptor `BoxDir` opened.
//!
//! Must never: open anything by path itself, or buffer a whole upload or
//! download.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

/// Longest path, bytes (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest name in a path, bytes (Linux's `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;

/// A path relative to the workspace as the OpenAPI document states it:
/// `/`-separated names, none empty, `.` or `..`, no control characters,
/// each at most 255 characters. (What a pattern cannot state: a name is
/// also at most 255 bytes of UTF-8, and the path 4096 bytes.) Held
/// together with [`check_path`] by a test.
pub const PATH_PATTERN: &str = concat!(
    "^([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}",
    "|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}",
    "|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253})",
    "(/([^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,254}",
    "|\\.[^/.\\u0000-\\u001f\\u007f-\\u009f][^/\\u0000-\\u001f\\u007f-\\u009f]{0,253}",
    "|\\.\\.[^/\\u0000-\\u001f\\u007f-\\u009f]{1,253}))*$"
);

/// Why a path was refused, for a 400 naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath(pub &'static str);

/// Check a path relative to the workspace as text: not empty, at most
/// 4096 bytes, no NUL, no control characters, not absolute, no empty, `.`
/// or `..` segment, no name over 255 characters or bytes. Returns it as a
/// relative path.
pub fn check_path(raw: &str) -> Result<PathBuf, BadPath> {
    if raw.is_empty() {
        return Err(BadPath("it is empty: name a file or directory in the workspace"));
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(BadPath("it is longer than 4096 bytes"));
    }
    if raw.contains('\0') {
        return Err(BadPath("it contains a NUL byte"));
    }
    if raw.chars().any(char::is_control) {
        return Err(BadPath("it contains a control character"));
    }
    if raw.starts_with('/') {
        return Err(BadPath(
            "it is absolute: paths are relative to the workspace (`data/in.csv`, not `/workspace/data/in.csv`)",
        ));
    }
    for segment in raw.split('/') {
        match segment {
            "" => return Err(BadPath("it has an empty segment (`//`, or a trailing `/`)")),
            "." => return Err(BadPath("it has a `.` segment")),
            ".." => return Err(BadPath("`..` is not allowed")),
            s if s.chars().count() > MAX_NAME_BYTES => {
                return Err(BadPath("a name in it is longer than 255 characters"));
            }
            s if s.len() > MAX_NAME_BYTES => return Err(BadPath("a name in it is longer than 255 bytes")),
            _ => {}
        }
    }
    Ok(PathBuf::from(raw))
}

/// The path's text (it was checked to be UTF-8 text).
pub fn shown(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// The whole file (no header, one that is not a single byte range, or
    /// one this server does not read: the header is then ignored, as RFC
    /// 9110 allows).
    Whole,
    /// Bytes `start..=end`.
    Part {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// A single range wholly outside the file: 416.
    Unsatisfiable,
}

/// Read a `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`) against a
/// file of `size` bytes.
pub fn range(header: Option<&str>, size: u64) -> Ranged {
    let Some(h) = header else { return Ranged::Whole };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        // `bytes=-n`: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
        (false, Some(start), end) if b.trim().is_empty() || end.is_some() => {
            if let Some(e) = end
                && e < start
            {
                return Ranged::Whole;
            }
            if start >= size {
                return Ranged::Unsatisfiable;
            }
            Ranged::Part {
                start,
                end: end.map_or(size - 1, |e| e.min(size - 1)),
            }
        }
        _ => Ranged::Whole,
    }
}

/// A blocking reader over chunks sent from the async side: an upload's
/// body, written by the blocking `BoxDir::write_file` as it arrives.
pub struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    current: Bytes,
}

impl ChunkReader {
    /// A reader and the sender that feeds it (a few chunks in flight).
    pub fn new() -> (
        tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
        ChunkReader,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (
            tx,
            ChunkReader {
                rx,
                current: Bytes::new(),
            },
        )
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Stream `len` bytes of `file` from `start`, in chunks of 64 KiB. A file
/// the box shortens meanwhile ends the stream early.
pub fn stream(
    file: std::fs::File,
    start: u64,
    len: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let file = tokio::fs::File::from_std(file);
    futures::stream::unfold(
        (Some(file), start, len, false),
        |(file, start, left, sought)| async move {
            let mut file = file?;
            if left == 0 {
                return None;
            }
            if !sought
                && start > 0
                && let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await
            {
                return Some((Err(e), (None, start, 0, true)));
            }
            let mut buf = vec![0u8; left.min(64 * 1024) as usize];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), (Some(file), start, left - n as u64, true)))
                }
                Err(e) => Some((Err(e), (None, start, 0, true))),
            }
        },
    )
}

/// A file name safe in a `Content-Disposition` header: letters, digits,
/// `.`, `-`, `_` of the path's last name (`download` when none is left).
pub fn attachment_name(p: &Path) -> String {
    let name: String = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    if name.is_empty() || name.chars().all(|c| c == '.') {
        "download".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_refused_with_their_reason() {
        assert_eq!(check_path("a/b.txt").unwrap(), PathBuf::from("a/b.txt"));
        assert_eq!(
            check_path("...").unwrap(),
            PathBuf::from("..."),
            "a name of three dots is a name"
        );
        assert_eq!(check_path(".hidden/x").unwrap(), PathBuf::from(".hidden/x"));
        for (bad, why) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("../x", "`..`"),
            ("a/../../x", "`..`"),
            ("a/./b", "`.` segment"),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("a\0b", "NUL"),
            ("a\nb", "control"),
            ("a\u{1b}[2Jb", "control"),
            ("a\u{85}b", "control"),
        ] {
            let e = check_path(bad).unwrap_err();
            assert!(e.0.contains(why), "{bad:?}: {e:?}");
        }
        assert!(check_path(&"a".repeat(256)).unwrap_err().0.contains("255"));
        assert!(check_path(&"a/".repeat(2049)).unwrap_err().0.contains("4096"));
    }

    /// The document's pattern and the server's check accept the same
    /// paths (but for the byte lengths a pattern cannot state).
    #[test]
    fn the_documents_pattern_is_the_servers_check() {
        let re = regex::Regex::new(PATH_PATTERN).unwrap();
        let alphabet = ["a", ".", "/", "..", "\u{0}", "\n", "\u{85}", "é", "\\", " ", "-"];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut samples: Vec<String> = vec![
            "a".repeat(255),
            "a".repeat(256),
            format!("{}/b", "é".repeat(200)),
            "...".into(),
            "..a".into(),
            ".a/..b/...".into(),
        ];
        for _ in 0..20_000 {
            let mut s = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            for k in 0..(seed % 9) {
                s.push_str(alphabet[((seed >> (k * 5)) % alphabet.len() as u64) as usize]);
            }
            samples.push(s);
        }
        for s in samples {
            let bytes_ok = s.len() <= MAX_PATH_BYTES && s.split('/').all(|n| n.len() <= MAX_NAME_BYTES);
            let by_doc = re.is_match(&s) && s.chars().count() <= MAX_PATH_BYTES && bytes_ok;
            let by_check = check_path(&s);
            assert_eq!(by_doc, by_check.is_ok(), "{s:?}: {by_check:?}");
        }
    }

    /// Every path the document describes carries this pattern.
    #[test]
    fn the_document_states_the_pattern_for_every_path() {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        let mut found = 0;
        for (route, item) in doc["paths"].as_object().unwrap() {
            if !route.starts_with("/v1/sessions/{id}/files") {
                continue;
            }
            for op in item.as_object().unwrap().values() {
                for param in op["parameters"].as_array().into_iter().flatten() {
                    if param["name"] == "path" {
                        assert_eq!(param["schema"]["pattern"], PATH_PATTERN, "{route}");
                        found += 1;
                    }
                }
            }
        }
        assert_eq!(found, 5, "GET (list), POST (form), GET, PUT, DELETE");
        let dir = &doc["components"]["schemas"]["NewDirectoryBody"]["properties"]["path"];
        assert_eq!(dir["pattern"], PATH_PATTERN);
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        use Ranged::*;
        assert_eq!(range(None, 10), Whole);
        assert_eq!(range(Some("bytes=0-3"), 10), Part { start: 0, end: 3 });
        assert_eq!(range(Some("bytes=4-"), 10), Part { start: 4, end: 9 });
        assert_eq!(range(Some("bytes=-3"), 10), Part { start: 7, end: 9 });
        assert_eq!(range(Some("bytes=-30"), 10), Part { start: 0, end: 9 });
        assert_eq!(range(Some("bytes=5-100"), 10), Part { start: 5, end: 9 });
        assert_eq!(range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(range(Some("bytes=0-0"), 0), Unsatisfiable);
        for ignored in [
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=5-2",
            "bytes=x-",
            "bytes=",
            "bytes=1-2-3",
        ] {
            assert_eq!(range(Some(ignored), 10), Whole, "{ignored}");
        }
    }

    #[test]
    fn attachment_names_are_plain() {
        assert_eq!(attachment_name(Path::new("a/report.csv")), "report.csv");
        assert_eq!(attachment_name(Path::new("x/\"; evil=\"1")), "evil1");
        assert_eq!(attachment_name(Path::new("..")), "download");
    }
}
