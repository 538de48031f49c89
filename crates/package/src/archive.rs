//! Reading a plugin package (a zip) that is hostile until proven otherwise.
//!
//! The `zip` crate parses the archive and checks its structure: names listed
//! twice in the central directory, every local header against its central
//! entry (name, sizes, CRC, method, flags, time), entries whose bytes overlap
//! (a local header inside another entry's data) and local headers the central
//! directory does not list. Warden adds the policy the crate does not have,
//! all read from the central directory before a single byte is decompressed:
//! names (UTF-8, relative, no `..`, no drive letters or backslashes, no names
//! differing only in case, no control, bidirectional or invisible characters
//! that let one name pose as another), types (regular files and directories
//! only: no symlinks, devices, FIFOs), encryption, compression method,
//! counts, declared sizes and compression ratios, and no bytes before the
//! first entry. Only then are entries decompressed, each read through a cap
//! one byte past its declared size, so a lying header cannot inflate past
//! the limits either. Nothing is ever written to disk here.
//!
//! Every problem names its entry (`archive:<path>`, the path escaped so the
//! message is safe to print) or the whole archive (`archive:`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read};

use sha2::{Digest, Sha256};
use zip::read::ZipReadOptions;
use zip::{CompressionMethod, ZipArchive};

use crate::Problem;

/// Caps on a package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchiveLimits {
    /// Most entries (files and directories).
    pub max_entries: usize,
    /// Most bytes once unpacked, all entries together.
    pub max_unpacked_bytes: u64,
    /// Most bytes of one entry once unpacked.
    pub max_file_bytes: u64,
    /// Highest ratio of unpacked to packed size for one entry.
    pub max_ratio: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_entries: 1000,
            max_unpacked_bytes: 64 << 20,
            max_file_bytes: 32 << 20,
            max_ratio: 100,
        }
    }
}

/// One regular file of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the package (`/`-separated, relative).
    pub path: String,
    /// Content.
    pub data: Vec<u8>,
    /// The archive marks it executable (native plugins, scripts).
    pub executable: bool,
    /// SHA-256 of the content, hex.
    pub sha256: String,
}

fn problem(path: &str, message: impl Into<String>) -> Problem {
    Problem {
        location: format!("archive:{}", escape(path)),
        message: message.into(),
    }
}

/// Why `c` may not appear in a package's file names, if it may not.
///
/// The set is every character that can make a file list show something other
/// than the name: C0 and C1 controls and DEL (terminal escapes, newlines);
/// the line and paragraph separators; the bidirectional embeddings,
/// overrides, isolates and implicit marks (`readme\u{202e}yp.txt` shows as
/// `readmetxt.py`); the invisible characters (Unicode's
/// `Default_Ignorable_Code_Point`: zero-width space and joiners, U+FEFF, soft
/// hyphen, variation selectors, tags, Hangul fillers…, plus the interlinear
/// annotation marks U+FFF9–U+FFFB), with which `main.py` and `main\u{200b}.py`
/// look the same; and the look-alikes of `/` and `\`, with which a file at
/// the root seems to sit in a folder. Visible look-alike letters (Cyrillic
/// `а` for Latin `a`) are not refused: they are ordinary letters in many
/// languages, and a reviewer sees the file either way.
fn refused_char(c: char) -> Option<&'static str> {
    match c {
        '\u{2028}' | '\u{2029}' => Some("a line or paragraph separator (it breaks a file list's lines)"),
        c if c.is_control() => {
            Some("a control character (it can rewrite what a terminal or a file list shows)")
        }
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
            Some("a bidirectional control (it reorders how the name is shown, so a file can pose as another)")
        }
        '\u{2044}' | '\u{2215}' | '\u{29f8}' | '\u{ff0f}' | '\u{2216}' | '\u{29f9}' | '\u{fe68}'
        | '\u{ff3c}' => Some("a look-alike of `/` or `\\` (the file seems to be in another folder)"),
        '\u{00ad}'
        | '\u{034f}'
        | '\u{115f}'..='\u{1160}'
        | '\u{17b4}'..='\u{17b5}'
        | '\u{180b}'..='\u{180f}'
        | '\u{200b}'..='\u{200d}'
        | '\u{2060}'..='\u{2065}'
        | '\u{206a}'..='\u{206f}'
        | '\u{3164}'
        | '\u{fe00}'..='\u{fe0f}'
        | '\u{feff}'
        | '\u{ffa0}'
        | '\u{fff0}'..='\u{fffb}'
        | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0000}'..='\u{e0fff}' => Some("an invisible character (one name can pose as another)"),
        _ => None,
    }
}

/// `name` with every character a package's file name may not contain
/// written as `\u{…}`, so that a message naming a hostile file is safe to
/// print and shows what is really there.
pub fn escape(name: &str) -> Cow<'_, str> {
    if !name.chars().any(|c| refused_char(c).is_some()) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 16);
    for c in name.chars() {
        if refused_char(c).is_some() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Why a name is not acceptable, if it is not.
fn bad_name(name: &str) -> Option<Cow<'static, str>> {
    let refuse = |why: &'static str| Some(Cow::Borrowed(why));
    if name.is_empty() || name == "/" {
        return refuse("empty name");
    }
    if name.contains('\0') {
        return refuse("the name contains a NUL byte");
    }
    if let Some((c, why)) = name.chars().find_map(|c| Some((c, refused_char(c)?))) {
        return Some(Cow::Owned(format!(
            "the name contains U+{:04X}, {why}",
            u32::from(c)
        )));
    }
    if name.contains('\\') {
        return refuse("backslashes are not allowed in names (Windows paths escape on some tools)");
    }
    if name.starts_with('/') {
        return refuse("absolute paths are not allowed");
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return refuse("drive letters are not allowed");
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    for part in trimmed.split('/') {
        match part {
            "" => return refuse("empty path component (`//`)"),
            "." => return refuse("`.` components are not allowed"),
            ".." => return refuse("`..` components are not allowed (zip-slip)"),
            _ => {}
        }
    }
    if name.len() > 1024 {
        return refuse("the name is longer than 1024 bytes");
    }
    None
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

/// How many entries the central directory lists, and the names it lists
/// more than once (once per extra listing, in directory order).
///
/// `ZipArchive` keys entries by name: of two entries with one name it keeps
/// the last one's metadata at the first one's place, and only
/// `has_duplicate_names` says that one vanished. The crate's own directory
/// walker, `ZipIterable`, keeps every listing, so it names them. The walk
/// stops after `cap` listings: enough to name the duplicates of a package
/// within the limits, or to show that it is over them.
fn listing(bytes: &[u8], cap: usize) -> (usize, Vec<Vec<u8>>) {
    let Ok(mut listing) = zip::unstable::read::ZipIterable::try_new(Cursor::new(bytes), Default::default())
    else {
        return (0, Vec::new());
    };
    let listed = listing.len();
    let Ok(files) = listing.files() else {
        return (listed, Vec::new());
    };
    let mut seen = HashSet::new();
    let mut repeated = Vec::new();
    for entry in files.take(cap).map_while(Result::ok) {
        let name = entry.name_raw().to_vec();
        if seen.contains(&name) {
            repeated.push(name);
        } else {
            seen.insert(name);
        }
    }
    (listed, repeated)
}

/// What the `zip` crate finds wrong with the archive's structure, each
/// problem located at its entry where the crate's answer allows.
///
/// The crate decides ([`ZipArchive::validate_header_consistency`]); this
/// only finds which entry its verdict is about: an entry whose local header
/// disagrees with the central directory, else two entries whose bytes
/// overlap. A local header that no entry lists has no name to give, so it is
/// reported for the whole archive. An entry already refused (its location in
/// `refused`) gets no second problem, and a verdict no entry explains is
/// reported only when no entry is refused.
fn structure_problems(archive: &mut ZipArchive<Cursor<&[u8]>>, refused: &HashSet<String>) -> Vec<Problem> {
    let Err(verdict) = archive.validate_header_consistency() else {
        return Vec::new();
    };
    // Located as `read` locates them: by name, or by index if the name is
    // not UTF-8.
    let names: Vec<String> = archive
        .file_names_raw()
        .enumerate()
        .map(|(i, n)| std::str::from_utf8(n).map_or_else(|_| format!("#{i}"), str::to_owned))
        .collect();
    let mut problems = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let Ok(entry) = archive.by_index_data(i) else {
            continue;
        };
        if refused.contains(&problem(name, "").location) {
            continue;
        }
        // Consistency is checked before the decompressor is made, so only
        // entries whose decompressor can be made tell it apart from other
        // errors; the others are refused by the policy checks anyway.
        let readable = !entry.encrypted()
            && matches!(
                entry.compression(),
                CompressionMethod::Stored | CompressionMethod::Deflated
            );
        if !readable {
            continue;
        }
        let options = ZipReadOptions::new().enforce_header_consistency(true);
        if let Err(e) = archive.by_index_with_options(i, options) {
            problems.push(problem(
                name,
                format!("its local header does not match the central directory ({e})"),
            ));
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    // Overlaps: the crate says whether; the entries' spans say which.
    let dir_start = archive.central_directory_start();
    let mut spans = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if let Ok(file) = archive.by_index_raw(i) {
            let start = file.header_start();
            let end = file
                .data_start()
                .map_or(start, |d| d.saturating_add(file.compressed_size()));
            spans.push((start, end, name));
        }
    }
    spans.sort();
    for pair in spans.windows(2) {
        let ((_, end, first), (start, _, second)) = (&pair[0], &pair[1]);
        if end > start {
            problems.push(problem(
                second,
                format!(
                    "its bytes overlap those of `{}` (one entry hidden inside another)",
                    escape(first)
                ),
            ));
        }
    }
    for (_, end, name) in &spans {
        if *end > dir_start {
            problems.push(problem(name, "its data runs into the central directory"));
        }
    }
    // The verdict may be about an entry refused already (the crate stops at
    // the first fault it finds); if no entry is refused, it is news.
    if problems.is_empty() && refused.is_empty() {
        problems.push(problem(
            "",
            format!("the archive's structure is inconsistent ({verdict})"),
        ));
    }
    problems
}

/// Read and check a package. On success, the regular files sorted by path.
pub fn read(bytes: &[u8], limits: &ArchiveLimits) -> Result<Vec<Entry>, Vec<Problem>> {
    let mut archive = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| vec![problem("", format!("not a readable zip archive: {e}"))])?;
    let (entries, duplicates) = if archive.has_duplicate_names() {
        let (listed, repeated) = listing(bytes, limits.max_entries.saturating_add(1));
        (listed.max(archive.len() + repeated.len()), repeated)
    } else {
        (archive.len(), Vec::new())
    };
    if entries > limits.max_entries {
        return Err(vec![problem(
            "",
            format!(
                "the archive has {entries} entries; the limit is {}",
                limits.max_entries
            ),
        )]);
    }
    let mut problems = Vec::new();
    // Duplicates first, as the directory lists them.
    for raw in &duplicates {
        problems.push(problem(&String::from_utf8_lossy(raw), "duplicate entry"));
    }
    if archive.has_duplicate_names() && duplicates.is_empty() {
        problems.push(problem("", "the central directory lists a name more than once"));
    }
    let mut seen: HashMap<String, String> = HashMap::new(); // lowercase -> name
    let mut declared_total: u64 = 0;
    let mut files = Vec::new(); // (index, name, size, executable)
    let mut first_header = u64::MAX;
    for i in 0..archive.len() {
        let entry = match archive.by_index_data(i) {
            Ok(e) => e,
            Err(e) => {
                problems.push(problem(&format!("#{i}"), format!("unreadable entry: {e}")));
                continue;
            }
        };
        first_header = first_header.min(entry.header_start());
        let Ok(name) = std::str::from_utf8(entry.name_raw()).map(str::to_owned) else {
            problems.push(problem(&format!("#{i}"), "the name is not valid UTF-8"));
            continue;
        };
        if let Some(why) = bad_name(&name) {
            problems.push(problem(&name, why));
            continue;
        }
        // The crate compares names byte for byte; two names one
        // case-insensitive filesystem would merge are ours to refuse.
        let key = name.trim_end_matches('/').to_lowercase();
        if let Some(prev) = seen.get(&key) {
            if prev.trim_end_matches('/') == name.trim_end_matches('/') {
                problems.push(problem(&name, "duplicate entry"));
            } else {
                problems.push(problem(&name, format!("differs only in case from `{prev}`")));
            }
            continue;
        }
        seen.insert(key, name.clone());
        if entry.encrypted() {
            problems.push(problem(&name, "encrypted entries are not allowed"));
            continue;
        }
        let mode = entry.unix_mode();
        let kind = mode.map(|m| m & S_IFMT);
        let is_dir = entry.is_dir();
        // The crate reads symlinks and devices as it reads files (and its
        // extractor writes symlinks); a package has neither.
        match kind {
            Some(S_IFLNK) => {
                problems.push(problem(&name, "symlinks are not allowed"));
                continue;
            }
            Some(k) if k != 0 && k != S_IFREG && k != S_IFDIR => {
                problems.push(problem(&name, "only regular files and directories are allowed"));
                continue;
            }
            Some(S_IFDIR) if !is_dir => {
                problems.push(problem(&name, "a directory entry must end with `/`"));
                continue;
            }
            _ => {}
        }
        if is_dir {
            continue;
        }
        if !matches!(
            entry.compression(),
            CompressionMethod::Stored | CompressionMethod::Deflated
        ) {
            problems.push(problem(
                &name,
                format!(
                    "unsupported compression method {:?}: use deflate",
                    entry.compression()
                ),
            ));
            continue;
        }
        // The crate bounds what it inflates by the declared size, but any
        // declared size goes: the caps and the ratio are policy.
        let (size, packed) = (entry.size(), entry.compressed_size());
        if size > limits.max_file_bytes {
            problems.push(problem(
                &name,
                format!(
                    "{size} bytes unpacked; one file may have at most {}",
                    limits.max_file_bytes
                ),
            ));
            continue;
        }
        if size > 0 && (packed == 0 || size / packed.max(1) > limits.max_ratio) {
            problems.push(problem(
                &name,
                format!(
                    "compression ratio {}:1 suggests a zip bomb (the limit is {}:1)",
                    size / packed.max(1),
                    limits.max_ratio
                ),
            ));
            continue;
        }
        declared_total = declared_total.saturating_add(size);
        let executable = mode.is_some_and(|m| m & 0o111 != 0);
        files.push((i, name, size, executable));
    }
    // A path that is a file and also a directory of another file cannot be
    // unpacked (`src` and `src/main.rs`).
    let file_names: HashSet<String> = files.iter().map(|f| f.1.to_lowercase()).collect();
    for (_, name, _, _) in &files {
        let lower = name.to_lowercase();
        for (pos, _) in lower.match_indices('/') {
            if file_names.contains(&lower[..pos]) {
                problems.push(problem(
                    name,
                    format!("`{}` is a file, so it cannot also be a directory", &name[..pos]),
                ));
                break;
            }
        }
    }
    if declared_total > limits.max_unpacked_bytes {
        problems.push(problem(
            "",
            format!(
                "{declared_total} bytes unpacked; a package may have at most {}",
                limits.max_unpacked_bytes
            ),
        ));
    }
    // Where entries lie is known only with one entry per name (of two, the
    // crate keeps one); duplicates are refused above already.
    if !archive.has_duplicate_names() {
        // The crate accepts bytes before the first entry (it reads
        // self-extracting archives, and shifts every offset when the end
        // record lies about where the directory is). Nothing makes a package
        // that way; such bytes are the other half of a polyglot file and no
        // file list shows them.
        if first_header != u64::MAX && first_header > 0 {
            problems.push(problem(
                "",
                format!(
                    "{first_header} bytes come before the first entry; a package starts with its first entry"
                ),
            ));
        }
        let whole = problem("", "").location;
        let refused = problems
            .iter()
            .filter(|p| p.location != whole)
            .map(|p| p.location.clone())
            .collect();
        problems.extend(structure_problems(&mut archive, &refused));
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    // Metadata and structure are sound: decompress, never past the declared
    // sizes (the cap is ours, so a change in the crate cannot lift it).
    let mut out = Vec::with_capacity(files.len());
    for (i, name, size, executable) in files {
        let entry = archive
            .by_index(i)
            .map_err(|e| vec![problem(&name, format!("unreadable entry: {e}"))])?;
        let mut data = Vec::with_capacity(size.min(1 << 20) as usize);
        let read = entry.take(size + 1).read_to_end(&mut data);
        match read {
            Ok(_) if data.len() as u64 > size => {
                problems.push(problem(&name, "the entry inflates past its declared size"));
                continue;
            }
            Ok(_) if (data.len() as u64) < size => {
                problems.push(problem(&name, "the entry is shorter than its declared size"));
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                problems.push(problem(&name, format!("corrupt data: {e}")));
                continue;
            }
        }
        let sha256 = hex(&Sha256::digest(&data));
        out.push(Entry {
            path: name,
            data,
            executable,
            sha256,
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{ZipBuilder, crc32, raw_zip, raw_zip_modes};

    fn messages(r: Result<Vec<Entry>, Vec<Problem>>) -> Vec<String> {
        r.unwrap_err()
            .into_iter()
            .map(|p| format!("{}: {}", p.location, p.message))
            .collect()
    }

    // Zip records written field by field (stored, no unix mode), for
    // archives that no writer makes: the tests put them together.

    /// A local file header and its data.
    fn local(name: &str, data: &[u8], extra: &[u8]) -> Vec<u8> {
        [
            &0x0403_4b50u32.to_le_bytes()[..],
            &20u16.to_le_bytes(), // version needed
            &0u16.to_le_bytes(),  // flags
            &0u16.to_le_bytes(),  // stored
            &0u32.to_le_bytes(),  // time, date
            &crc32(data).to_le_bytes(),
            &(data.len() as u32).to_le_bytes(),
            &(data.len() as u32).to_le_bytes(),
            &(name.len() as u16).to_le_bytes(),
            &(extra.len() as u16).to_le_bytes(),
            name.as_bytes(),
            extra,
            data,
        ]
        .concat()
    }

    /// A central directory header for `data` whose local header is at `offset`.
    fn central(name: &str, data: &[u8], extra: &[u8], offset: usize) -> Vec<u8> {
        [
            &0x0201_4b50u32.to_le_bytes()[..],
            &20u16.to_le_bytes(), // made by
            &20u16.to_le_bytes(), // version needed
            &0u16.to_le_bytes(),  // flags
            &0u16.to_le_bytes(),  // stored
            &0u32.to_le_bytes(),  // time, date
            &crc32(data).to_le_bytes(),
            &(data.len() as u32).to_le_bytes(),
            &(data.len() as u32).to_le_bytes(),
            &(name.len() as u16).to_le_bytes(),
            &(extra.len() as u16).to_le_bytes(),
            &0u16.to_le_bytes(), // comment
            &0u16.to_le_bytes(), // disk
            &0u16.to_le_bytes(), // internal attributes
            &0u32.to_le_bytes(), // external attributes
            &(offset as u32).to_le_bytes(),
            name.as_bytes(),
            extra,
        ]
        .concat()
    }

    /// The end of central directory record.
    fn end(count: u16, directory: &[u8], offset: usize) -> Vec<u8> {
        [
            &0x0605_4b50u32.to_le_bytes()[..],
            &0u16.to_le_bytes(), // disk
            &0u16.to_le_bytes(), // disk with the directory
            &count.to_le_bytes(),
            &count.to_le_bytes(),
            &(directory.len() as u32).to_le_bytes(),
            &(offset as u32).to_le_bytes(),
            &0u16.to_le_bytes(), // comment
        ]
        .concat()
    }

    /// An Info-ZIP Unicode Path extra field (0x7075) giving `path` as the
    /// real name of the entry whose header names `header_name`.
    fn unicode_path(header_name: &str, path: &str) -> Vec<u8> {
        let body = [
            &[1u8][..],
            &crc32(header_name.as_bytes()).to_le_bytes(),
            path.as_bytes(),
        ]
        .concat();
        [
            &0x7075u16.to_le_bytes()[..],
            &(body.len() as u16).to_le_bytes(),
            &body,
        ]
        .concat()
    }

    /// Two sound entries, then the directory: (entries, directory, end).
    fn two_entries() -> (Vec<u8>, Vec<u8>, usize) {
        let a = local("main.py", b"print(1)", b"");
        let b = local("readme", b"x", b"");
        let directory = [
            central("main.py", b"print(1)", b"", 0),
            central("readme", b"x", b"", a.len()),
        ]
        .concat();
        let body = [a, b].concat();
        let at = body.len();
        (body, directory, at)
    }

    #[test]
    fn a_sound_archive_reads_back_with_hashes() {
        let zip = ZipBuilder::new()
            .file("manifest.json", b"{}")
            .dir("src/")
            .file_mode("src/run.sh", b"echo hi\n", 0o755)
            .finish();
        let entries = read(&zip, &ArchiveLimits::default()).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["manifest.json", "src/run.sh"]);
        assert!(entries[1].executable && !entries[0].executable);
        assert_eq!(
            entries[0].sha256,
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn hostile_names_are_refused_all_at_once() {
        let zip = raw_zip(&[
            ("../evil", b"x".as_slice()),
            ("/etc/passwd", b"x"),
            ("C:/windows", b"x"),
            ("a\\..\\b", b"x"),
            ("ok/./x", b"x"),
            ("dup", b"x"),
            ("dup", b"y"),
            ("Readme", b"x"),
            ("README", b"y"),
        ]);
        let m = messages(read(&zip, &ArchiveLimits::default()));
        assert_eq!(
            m,
            [
                "archive:dup: duplicate entry",
                "archive:../evil: `..` components are not allowed (zip-slip)",
                "archive:/etc/passwd: absolute paths are not allowed",
                "archive:C:/windows: drive letters are not allowed",
                "archive:a\\..\\b: backslashes are not allowed in names (Windows paths escape on some tools)",
                "archive:ok/./x: `.` components are not allowed",
                "archive:README: differs only in case from `Readme`",
            ]
        );
    }

    #[test]
    fn symlinks_devices_and_encryption_are_refused() {
        let zip = ZipBuilder::new()
            .symlink("link", "/etc/shadow")
            .file("ok.txt", b"fine")
            .finish();
        assert_eq!(
            messages(read(&zip, &ArchiveLimits::default())),
            ["archive:link: symlinks are not allowed"]
        );
        let zip = raw_zip_modes(&[("fifo", b"", 0o010644)]);
        assert_eq!(
            messages(read(&zip, &ArchiveLimits::default())),
            ["archive:fifo: only regular files and directories are allowed"]
        );
    }

    #[test]
    fn non_utf8_names_are_refused() {
        let zip = raw_zip(&[("caf\u{e9}", b"x")]);
        // Patch the name bytes in both headers to Latin-1 `é` (0xE9).
        let bad: Vec<u8> = {
            let needle = "caf\u{e9}".as_bytes();
            let mut z = zip.clone();
            let mut i = 0;
            while i + needle.len() <= z.len() {
                if &z[i..i + needle.len()] == needle {
                    z.splice(i..i + needle.len(), b"caf\xe9_".iter().copied());
                }
                i += 1;
            }
            z
        };
        let m = messages(read(&bad, &ArchiveLimits::default()));
        assert!(m.iter().any(|l| l.contains("not valid UTF-8")), "{m:?}");
    }

    #[test]
    fn bombs_and_sizes_are_stopped_before_unpacking() {
        // 30 MiB of zeros (under the file cap) deflates to ~30 KiB: ~1000:1.
        let zeros = vec![0u8; 30 << 20];
        let zip = ZipBuilder::new().file("bomb.bin", &zeros).finish();
        let m = messages(read(&zip, &ArchiveLimits::default()));
        assert_eq!(m.len(), 1);
        assert!(
            m[0].starts_with("archive:bomb.bin: compression ratio") && m[0].contains("zip bomb"),
            "{m:?}"
        );
        let limits = ArchiveLimits {
            max_file_bytes: 10,
            ..ArchiveLimits::default()
        };
        let zip = ZipBuilder::new().stored("big.txt", b"0123456789abc").finish();
        assert_eq!(
            messages(read(&zip, &limits)),
            ["archive:big.txt: 13 bytes unpacked; one file may have at most 10"]
        );
        let limits = ArchiveLimits {
            max_unpacked_bytes: 20,
            ..ArchiveLimits::default()
        };
        let zip = ZipBuilder::new()
            .stored("a", b"0123456789abc")
            .stored("b", b"0123456789abc")
            .finish();
        assert_eq!(
            messages(read(&zip, &limits)),
            ["archive:: 26 bytes unpacked; a package may have at most 20"]
        );
    }

    #[test]
    fn too_many_entries_are_refused_from_the_directory_alone() {
        let mut b = ZipBuilder::new();
        for i in 0..100_000 {
            b = b.stored(&format!("f{i}"), b"");
        }
        let zip = b.finish();
        assert_eq!(
            messages(read(&zip, &ArchiveLimits::default())),
            ["archive:: the archive has 100000 entries; the limit is 1000"]
        );
    }

    #[test]
    fn lying_sizes_cannot_inflate_past_the_declared_size() {
        let zip = ZipBuilder::new().stored("x", b"hello world").finish();
        // Lower the declared size in both headers from 11 to 5.
        let mut z = zip.clone();
        for sig in [[0x50u8, 0x4b, 0x03, 0x04], [0x50, 0x4b, 0x01, 0x02]] {
            let at = z.windows(4).position(|w| w == sig).unwrap();
            let off = if sig[2] == 3 { at + 22 } else { at + 24 };
            z[off..off + 4].copy_from_slice(&5u32.to_le_bytes());
        }
        let r = read(&z, &ArchiveLimits::default());
        assert!(r.is_err(), "a lying size was accepted: {:?}", r.map(|e| e.len()));
    }

    #[test]
    fn a_file_cannot_also_be_a_directory() {
        let zip = raw_zip(&[("src", b"binary"), ("src/main.rs", b"fn main() {}")]);
        let m = messages(read(&zip, &ArchiveLimits::default()));
        assert_eq!(
            m,
            ["archive:src/main.rs: `src` is a file, so it cannot also be a directory"]
        );
    }

    #[test]
    fn garbage_is_not_a_zip() {
        assert_eq!(
            messages(read(b"PK\x03\x04 nope", &ArchiveLimits::default())).len(),
            1
        );
        assert!(messages(read(b"", &ArchiveLimits::default()))[0].contains("not a readable zip archive"));
    }

    #[test]
    fn the_helpers_make_a_sound_archive() {
        let (body, directory, at) = two_entries();
        let zip = [body, directory.clone(), end(2, &directory, at)].concat();
        let entries = read(&zip, &ArchiveLimits::default()).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["main.py", "readme"]);
    }

    #[test]
    fn control_bidi_and_invisible_characters_in_names_are_refused_escaped() {
        let zip = raw_zip(&[
            ("notes\u{202e}yp.txt", b"x".as_slice()),
            ("main\u{200b}.py", b"x"),
            ("\u{feff}manifest.json", b"x"),
            ("red\u{1b}[31m.py", b"x"),
            ("two\nlines.py", b"x"),
            ("c1\u{85}.py", b"x"),
            ("del\u{7f}.py", b"x"),
            ("iso\u{2066}late.py", b"x"),
            ("mark\u{200f}.py", b"x"),
            ("lib\u{2215}util.py", b"x"),
            ("para\u{2029}graph.py", b"x"),
            ("tag\u{e0041}.py", b"x"),
        ]);
        let m = messages(read(&zip, &ArchiveLimits::default()));
        let bidi =
            "a bidirectional control (it reorders how the name is shown, so a file can pose as another)";
        let invisible = "an invisible character (one name can pose as another)";
        let control = "a control character (it can rewrite what a terminal or a file list shows)";
        assert_eq!(
            m,
            [
                format!("archive:notes\\u{{202e}}yp.txt: the name contains U+202E, {bidi}"),
                format!("archive:main\\u{{200b}}.py: the name contains U+200B, {invisible}"),
                format!("archive:\\u{{feff}}manifest.json: the name contains U+FEFF, {invisible}"),
                format!("archive:red\\u{{1b}}[31m.py: the name contains U+001B, {control}"),
                format!("archive:two\\u{{a}}lines.py: the name contains U+000A, {control}"),
                format!("archive:c1\\u{{85}}.py: the name contains U+0085, {control}"),
                format!("archive:del\\u{{7f}}.py: the name contains U+007F, {control}"),
                format!("archive:iso\\u{{2066}}late.py: the name contains U+2066, {bidi}"),
                format!("archive:mark\\u{{200f}}.py: the name contains U+200F, {bidi}"),
                "archive:lib\\u{2215}util.py: the name contains U+2215, a look-alike of `/` or `\\` (the file seems to be in another folder)".to_owned(),
                "archive:para\\u{2029}graph.py: the name contains U+2029, a line or paragraph separator (it breaks a file list's lines)".to_owned(),
                format!("archive:tag\\u{{e0041}}.py: the name contains U+E0041, {invisible}"),
            ]
        );
        // Every message is safe to print as it is.
        assert!(
            m.iter().all(|l| l.chars().all(|c| refused_char(c).is_none())),
            "{m:?}"
        );
        // Letters of every script, and visible symbols, stay allowed.
        let zip = raw_zip(&[
            ("café.py", b"x".as_slice()),
            ("数据/处理.py", b"x"),
            ("пример.py", b"x"),
            ("עברית.txt", b"x"),
            ("emoji-\u{1f600}.txt", b"x"),
            ("a b+c=d~e.txt", b"x"),
        ]);
        assert_eq!(read(&zip, &ArchiveLimits::default()).unwrap().len(), 6);
    }

    #[test]
    fn a_local_header_that_disagrees_with_the_central_directory_is_refused() {
        let (body, directory, at) = two_entries();
        let zip = [body, directory.clone(), end(2, &directory, at)].concat();
        // Fields of `main.py`'s local header (at 0), one lie at a time.
        let mismatch = "archive:main.py: its local header does not match the central directory \
                        (invalid Zip archive: header inconsistency detected: ";
        for (field, at, value, detail) in [
            (
                "name",
                30,
                b"evil.py".to_vec(),
                "Local file header filename mismatch (does not match central directory))",
            ),
            (
                "compressed size",
                18,
                9u32.to_le_bytes().to_vec(),
                "compressed size mismatch (does not match central directory))",
            ),
            (
                "size",
                22,
                9u32.to_le_bytes().to_vec(),
                "uncompressed size mismatch (does not match central directory))",
            ),
            (
                "method",
                8,
                8u16.to_le_bytes().to_vec(),
                "compression method mismatch (does not match central directory))",
            ),
            (
                "encryption flag",
                6,
                1u16.to_le_bytes().to_vec(),
                "encryption flag mismatch for 'main.py')",
            ),
            (
                "data descriptor flag",
                6,
                8u16.to_le_bytes().to_vec(),
                "data descriptor flag mismatch for 'main.py')",
            ),
            (
                "crc",
                14,
                0u32.to_le_bytes().to_vec(),
                "CRC32 checksum mismatch (does not match central directory))",
            ),
        ] {
            let mut z = zip.clone();
            z[at..at + value.len()].copy_from_slice(&value);
            assert_eq!(
                messages(read(&z, &ArchiveLimits::default())),
                [format!("{mismatch}{detail}")],
                "{field}"
            );
        }
    }

    #[test]
    fn an_entry_hidden_inside_another_entrys_data_is_refused() {
        // `readme.txt` stores a whole local entry; the directory lists that
        // entry too, pointing into the middle of `readme.txt`'s data.
        let inner = local("evil.py", b"import os", b"");
        let outer = local("readme.txt", &inner, b"");
        let directory = [
            central("readme.txt", &inner, b"", 0),
            central("evil.py", b"import os", b"", 30 + "readme.txt".len()),
        ]
        .concat();
        let zip = [outer.clone(), directory.clone(), end(2, &directory, outer.len())].concat();
        assert_eq!(
            messages(read(&zip, &ArchiveLimits::default())),
            ["archive:evil.py: its bytes overlap those of `readme.txt` (one entry hidden inside another)"]
        );
        // Two listings of one local entry under different names: the local
        // header names only one of them.
        let a = local("main.py", b"print(1)", b"");
        let directory = [
            central("main.py", b"print(1)", b"", 0),
            central("other.py", b"print(1)", b"", 0),
        ]
        .concat();
        let zip = [a.clone(), directory.clone(), end(2, &directory, a.len())].concat();
        assert_eq!(
            messages(read(&zip, &ArchiveLimits::default())),
            [
                "archive:other.py: its local header does not match the central directory (invalid Zip archive: \
              header inconsistency detected: Local file header filename mismatch (does not match central directory))"
            ]
        );
    }

    #[test]
    fn bytes_before_the_first_entry_and_unlisted_local_headers_are_refused() {
        let (body, directory, at) = two_entries();
        let zip = [body.clone(), directory.clone(), end(2, &directory, at)].concat();
        let unlisted = "archive:: the archive's structure is inconsistent (invalid Zip archive: \
                        header inconsistency detected: local file header missing from central directory)";
        // A script in front (a polyglot): the crate reads past it.
        let script = b"#!/bin/sh\necho polyglot\nexit 0\n";
        let z = [&script[..], &zip].concat();
        assert_eq!(
            messages(read(&z, &ArchiveLimits::default())),
            ["archive:: 31 bytes come before the first entry; a package starts with its first entry"]
        );
        // An unlisted entry in front, the offsets adjusted to it.
        let hidden = local("hidden.py", b"import os", b"");
        let shift = hidden.len();
        let readme_at = shift + local("main.py", b"print(1)", b"").len();
        let directory = [
            central("main.py", b"print(1)", b"", shift),
            central("readme", b"x", b"", readme_at),
        ]
        .concat();
        let z = [
            hidden.clone(),
            body.clone(),
            directory.clone(),
            end(2, &directory, shift + at),
        ]
        .concat();
        assert_eq!(
            messages(read(&z, &ArchiveLimits::default())),
            [
                format!(
                    "archive:: {shift} bytes come before the first entry; a package starts with its first entry"
                ),
                unlisted.to_owned(),
            ]
        );
        // An unlisted entry between two listed ones.
        let a = local("main.py", b"print(1)", b"");
        let b = local("readme", b"x", b"");
        let directory = [
            central("main.py", b"print(1)", b"", 0),
            central("readme", b"x", b"", a.len() + hidden.len()),
        ]
        .concat();
        let body = [a, hidden, b].concat();
        let z = [body.clone(), directory.clone(), end(2, &directory, body.len())].concat();
        assert_eq!(messages(read(&z, &ArchiveLimits::default())), [unlisted]);
    }

    #[test]
    fn a_central_directory_that_lies_about_its_count_or_offset_is_refused() {
        let (body, directory, at) = two_entries();
        let with_end = |count: u16, offset: usize| {
            [body.clone(), directory.clone(), end(count, &directory, offset)].concat()
        };
        // One entry fewer than listed: the second entry's local header is
        // unlisted.
        assert_eq!(
            messages(read(&with_end(1, at), &ArchiveLimits::default())),
            [
                "archive:: the archive's structure is inconsistent (invalid Zip archive: \
              header inconsistency detected: local file header missing from central directory)"
            ]
        );
        // One entry more than there is.
        let m = messages(read(&with_end(3, at), &ArchiveLimits::default()));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("archive:: not a readable zip archive: "),
            "{m:?}"
        );
        // The directory said to start 10 bytes early: the crate shifts every
        // local header by 10 to make it fit.
        assert_eq!(
            messages(read(&with_end(2, at - 10), &ArchiveLimits::default())),
            [
                "archive:: 10 bytes come before the first entry; a package starts with its first entry",
                "archive:main.py: its local header does not match the central directory (invalid Zip archive: Invalid local file header)",
                "archive:readme: its local header does not match the central directory (invalid Zip archive: Invalid local file header)",
            ]
        );
        // Or 10 bytes late.
        let m = messages(read(&with_end(2, at + 10), &ArchiveLimits::default()));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("archive:: not a readable zip archive: "),
            "{m:?}"
        );
    }

    #[test]
    fn names_repeated_through_unicode_path_fields_are_refused() {
        // The headers say `a.txt` and `b.txt`; their Unicode Path fields
        // (which readers prefer) both say `main.py`.
        let (ea, eb) = (unicode_path("a.txt", "main.py"), unicode_path("b.txt", "main.py"));
        let a = local("a.txt", b"print(1)", &ea);
        let b = local("b.txt", b"print(2)", &eb);
        let directory = [
            central("a.txt", b"print(1)", &ea, 0),
            central("b.txt", b"print(2)", &eb, a.len()),
        ]
        .concat();
        let body = [a, b].concat();
        let zip = [body.clone(), directory.clone(), end(2, &directory, body.len())].concat();
        assert_eq!(
            messages(read(&zip, &ArchiveLimits::default())),
            ["archive:main.py: duplicate entry"]
        );
        // A Unicode Path field is checked as the name it is.
        let e = unicode_path("readme.txt", "readme\u{202e}yp.txt");
        let a = local("readme.txt", b"x", &e);
        let directory = central("readme.txt", b"x", &e, 0);
        let zip = [a.clone(), directory.clone(), end(1, &directory, a.len())].concat();
        let m = messages(read(&zip, &ArchiveLimits::default()));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("archive:readme\\u{202e}yp.txt: the name contains U+202E"),
            "{m:?}"
        );
    }

    #[test]
    fn repeated_names_count_towards_the_entry_limit() {
        let many: Vec<(&str, &[u8])> = (0..2000).map(|_| ("same", b"x".as_slice())).collect();
        assert_eq!(
            messages(read(&raw_zip(&many), &ArchiveLimits::default())),
            ["archive:: the archive has 2000 entries; the limit is 1000"]
        );
    }
}
