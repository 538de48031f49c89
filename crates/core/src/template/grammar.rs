//! The grammars of a template's fields, each written twice on purpose: as a
//! check in Rust (the server's verdict, with a message naming what is
//! wrong) and as the regular expression the OpenAPI document states, so a
//! client can check a request before sending it. The two must accept
//! exactly the same strings: `warden-server`'s tests hold them together on
//! a list of hostile and ordinary samples.
//!
//! Everything here is pure and conservative: a name or a version that a
//! package manager might also accept but that could smuggle a URL, a path,
//! an option or a second requirement is refused, with a message saying
//! what to write instead.

use std::borrow::Cow;

// The version grammars as pieces of regular expressions, put together
// below (a pattern per clause would otherwise repeat them).
macro_rules! pip_version {
    () => {
        "([0-9]+!)?[0-9]+(\\.[0-9]+)*((a|b|rc)[0-9]+)?(\\.post[0-9]+)?(\\.dev[0-9]+)?"
    };
}

macro_rules! pip_clause {
    () => {
        concat!(
            "(==|!=)(",
            pip_version!(),
            "(\\+[a-z0-9]+(\\.[a-z0-9]+)*)?|([0-9]+!)?[0-9]+(\\.[0-9]+)*\\.\\*)|(~=|<=|>=|<|>)",
            pip_version!()
        )
    };
}

macro_rules! npm_partial {
    () => {
        concat!(
            "v?([xX*]|0|[1-9][0-9]*)(\\.([xX*]|0|[1-9][0-9]*)(\\.([xX*]|0|[1-9][0-9]*)",
            "(-[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?)?)?"
        )
    };
}

macro_rules! npm_range {
    () => {
        concat!(
            npm_partial!(),
            " - ",
            npm_partial!(),
            "|(<=|>=|<|>|=|~|\\^)?",
            npm_partial!(),
            "( (<=|>=|<|>|=|~|\\^)?",
            npm_partial!(),
            ")*"
        )
    };
}

/// A template id: 1 to 63 lowercase letters, digits or `-`, starting with a
/// letter or digit.
pub const ID_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";

/// A template's name: 1 to 128 characters, no control characters, neither
/// starting nor ending with white space.
pub const NAME_PATTERN: &str = concat!(
    "^[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
    "([^\\u0000-\\u001f\\u007f-\\u009f]{0,126}",
    "[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000])?$",
);

/// A description: up to 1024 characters, no control characters but tabs
/// and line feeds.
pub const DESCRIPTION_PATTERN: &str = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]{0,1024}$";

/// A PyPI project name (PEP 508): letters, digits, `.`, `-`, `_`, starting
/// and ending with a letter or digit; up to 128 characters.
pub const PIP_NAME_PATTERN: &str = "^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$";

/// An npm package name: lowercase, optionally `@scope/`, each part starting
/// with a letter or digit, no `..`; up to 214 characters (`node_modules`
/// and `favicon.ico` are refused too).
pub const NPM_NAME_PATTERN: &str = "^(@[a-z0-9](\\.?[a-z0-9_-])*\\.?/)?[a-z0-9](\\.?[a-z0-9_-])*\\.?$";

/// Names npm refuses whatever their form.
pub const NPM_RESERVED_NAMES: &[&str] = &["node_modules", "favicon.ico"];

/// A PEP 440 version specifier, conservatively: comma-separated clauses
/// without spaces, each an operator and a canonical version; `.*` and
/// local versions with `==` and `!=` only; no `===`.
pub const PIP_VERSION_PATTERN: &str = concat!("^(", pip_clause!(), ")(,(", pip_clause!(), "))*$");

/// An npm version range (the `semver` grammar, strict: no URLs, paths,
/// git or file specs, single spaces only), or a dist-tag such as `latest`.
pub const NPM_VERSION_PATTERN: &str = concat!(
    "^((",
    npm_range!(),
    ")( ?\\|\\| ?(",
    npm_range!(),
    "))*|[a-z][a-z0-9._-]{0,63})$"
);

/// A pip hash: `sha256:` and 64 lowercase hex digits.
pub const PIP_HASH_PATTERN: &str = "^sha256:[0-9a-f]{64}$";

/// An npm integrity (Subresource Integrity): `sha512-` and the digest in
/// base64.
pub const NPM_HASH_PATTERN: &str = "^sha512-[A-Za-z0-9+/]{86}==$";

/// An environment variable's name.
pub const ENV_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// Environment variables the platform sets in a box, which a template may
/// not override (the interpreter's search paths, the box's home and
/// temporary folder, the handler protocol's variables).
pub const RESERVED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "PWD",
    "TMPDIR",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "NODE_PATH",
    "NODE_OPTIONS",
];

/// Prefixes of reserved environment variables: the dynamic loader's and
/// Warden's own.
pub const RESERVED_ENV_PREFIXES: &[&str] = &["LD_", "WARDEN_"];

/// An environment variable's value: no NUL (it cannot be passed to a
/// program).
pub const ENV_VALUE_PATTERN: &str = "^[^\\u0000]*$";

/// An allow-list entry: a fully qualified lowercase host name (an optional
/// leading `*.`, no IP literals: the top-level label starts with a letter)
/// and an optional port.
pub const ALLOW_ENTRY_PATTERN: &str = concat!(
    "^(\\*\\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?",
    "(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?$"
);

/// A seed file's path: relative, `/`-separated segments of letters, digits,
/// `.`, `-`, `_`, `+`; no empty, `.` or `..` segment (nor one of dots
/// only).
pub const SEED_PATH_PATTERN: &str =
    "^\\.{0,2}[A-Za-z0-9_+-][A-Za-z0-9._+-]*(/\\.{0,2}[A-Za-z0-9_+-][A-Za-z0-9._+-]*)*$";

/// Standard base64 with padding.
pub const BASE64_PATTERN: &str = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$";

/// Longest template name, in characters.
pub const NAME_MAX: usize = 128;
/// Longest description, in characters.
pub const DESCRIPTION_MAX: usize = 1024;
/// Longest PyPI name.
pub const PIP_NAME_MAX: usize = 128;
/// Longest npm name (npm's own limit).
pub const NPM_NAME_MAX: usize = 214;
/// Longest version specifier.
pub const VERSION_MAX: usize = 128;
/// Longest environment variable name.
pub const ENV_NAME_MAX: usize = 128;
/// Longest environment variable value, in characters.
pub const ENV_VALUE_MAX: usize = 4096;
/// Longest allow-list entry.
pub const ALLOW_ENTRY_MAX: usize = 253;
/// Longest seed file path.
pub const SEED_PATH_MAX: usize = 255;

type Check = Result<(), String>;

/// `s` as a message shows it: quoted, control, bidirectional and invisible
/// characters escaped, cut after 64 characters.
pub fn shown(s: &str) -> String {
    let cut: String = s.chars().take(64).collect();
    let more = if cut.len() < s.len() { "…" } else { "" };
    format!("`{}{more}`", warden_package::archive::escape(&cut))
}

fn shown_char(c: char) -> Cow<'static, str> {
    match c {
        ' ' => Cow::Borrowed("a space"),
        '`' => Cow::Borrowed("a backtick"),
        c if c.is_whitespace() || c.is_control() => Cow::Owned(format!("`{}`", c.escape_unicode())),
        c => Cow::Owned(shown(c.encode_utf8(&mut [0; 4]))),
    }
}

fn len_check(s: &str, max: usize) -> Check {
    let n = s.chars().count();
    if n == 0 {
        return Err("empty".into());
    }
    if n > max {
        return Err(format!("{n} characters: at most {max}"));
    }
    Ok(())
}

fn is_url_or_path(s: &str) -> Option<&'static str> {
    if s.contains("://") || s.starts_with("git+") || s.starts_with("file:") || s.starts_with("http:") {
        Some("a URL: give the package's name; where packages come from is the server's configuration")
    } else if s.starts_with('/') || s.starts_with("./") || s.starts_with("../") || s.contains('\\') {
        Some("a path: give the package's name; packages come from the configured index")
    } else if s.split('/').any(|p| p == "..") {
        Some("contains `..`: give the package's name, not a path")
    } else {
        None
    }
}

/// A template id.
pub fn check_id(s: &str) -> Check {
    if s.is_empty() {
        return Err("empty: 1 to 63 lowercase letters, digits or `-`".into());
    }
    if s.len() > 63 {
        return Err(format!("{} characters: at most 63", s.chars().count()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{} is not allowed: an id is lowercase letters, digits and `-`",
            shown_char(c)
        ));
    }
    if s.starts_with('-') {
        return Err("must start with a letter or digit".into());
    }
    Ok(())
}

/// A template's name.
pub fn check_name(s: &str) -> Check {
    len_check(s, NAME_MAX)?;
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!("contains a control character ({})", shown_char(c)));
    }
    if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return Err("starts or ends with white space".into());
    }
    Ok(())
}

/// A template's description.
pub fn check_description(s: &str) -> Check {
    let n = s.chars().count();
    if n > DESCRIPTION_MAX {
        return Err(format!("{n} characters: at most {DESCRIPTION_MAX}"));
    }
    if let Some(c) = s.chars().find(|c| c.is_control() && !matches!(c, '\t' | '\n')) {
        return Err(format!(
            "contains a control character ({}): only tabs and line feeds",
            shown_char(c)
        ));
    }
    Ok(())
}

/// A PyPI project name.
pub fn check_pip_name(s: &str) -> Check {
    len_check(s, PIP_NAME_MAX)?;
    if let Some(why) = is_url_or_path(s) {
        return Err(why.into());
    }
    if s.contains('@') {
        return Err(
            "a direct reference (`name @ URL`) is not accepted: give the name, and the version in `version`"
                .into(),
        );
    }
    if s.contains('[') {
        return Err("extras (`name[extra]`) are not supported: list the packages the extra adds".into());
    }
    if s.contains(['=', '<', '>', '~', '!']) {
        return Err("a name only: put the version specifier in `version`".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "{} is not allowed: a PyPI name is letters, digits, `.`, `-` and `_`",
            shown_char(c)
        ));
    }
    if s.starts_with('-') {
        return Err("must not start with `-` (it would read as an option)".into());
    }
    if !(s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
    {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

fn npm_part(p: &str) -> bool {
    p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
        && !p.contains("..")
}

/// An npm package name.
pub fn check_npm_name(s: &str) -> Check {
    len_check(s, NPM_NAME_MAX)?;
    if s.contains(':') || s.contains('#') {
        return Err("a URL or a `file:`, `git:`, `npm:` or `github:` spec: give the package's name; where packages come from is the server's configuration".into());
    }
    if let Some(why) = is_url_or_path(s) {
        return Err(why.into());
    }
    if s.contains("..") {
        return Err("contains `..`".into());
    }
    if s.starts_with('-') {
        return Err("must not start with `-` (it would read as an option)".into());
    }
    if s.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("npm names are lowercase".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_' | '@' | '/')))
    {
        return Err(format!(
            "{} is not allowed: an npm name is lowercase letters, digits, `.`, `-` and `_`, with an optional `@scope/`",
            shown_char(c)
        ));
    }
    if NPM_RESERVED_NAMES.contains(&s) {
        return Err(format!("{} is not a package name npm allows", shown(s)));
    }
    let ok = match s.strip_prefix('@') {
        Some(scoped) => {
            matches!(scoped.split_once('/'), Some((scope, name)) if npm_part(scope) && npm_part(name))
        }
        None => npm_part(s),
    };
    if !ok {
        return Err(
            "not an npm name: `name` or `@scope/name`, each part starting with a letter or digit".into(),
        );
    }
    Ok(())
}

/// `s` without the longest run of ASCII digits at its start, if there is one.
fn digits(s: &str) -> Option<&str> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    (n > 0).then(|| &s[n..])
}

/// Digits, then any number of `.digits`.
fn release(s: &str) -> Option<&str> {
    let mut rest = digits(s)?;
    while let Some(r) = rest.strip_prefix('.').and_then(digits) {
        rest = r;
    }
    Some(rest)
}

/// An optional `digits!`.
fn epoch(s: &str) -> &str {
    digits(s).and_then(|r| r.strip_prefix('!')).unwrap_or(s)
}

/// A canonical PEP 440 version without its local part; the rest.
fn pip_version(s: &str) -> Option<&str> {
    let mut rest = release(epoch(s))?;
    for pre in ["a", "b", "rc"] {
        if let Some(r) = rest.strip_prefix(pre).and_then(digits) {
            rest = r;
            break;
        }
    }
    if let Some(r) = rest.strip_prefix(".post").and_then(digits) {
        rest = r;
    }
    if let Some(r) = rest.strip_prefix(".dev").and_then(digits) {
        rest = r;
    }
    Some(rest)
}

fn pip_local(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

fn pip_clause(c: &str) -> bool {
    for op in ["==", "!="] {
        if let Some(v) = c.strip_prefix(op) {
            let exact = match pip_version(v) {
                Some("") => true,
                Some(rest) => rest.strip_prefix('+').is_some_and(pip_local),
                None => false,
            };
            return exact || release(epoch(v)) == Some(".*");
        }
    }
    for op in ["~=", "<=", ">=", "<", ">"] {
        if let Some(v) = c.strip_prefix(op) {
            return pip_version(v) == Some("");
        }
    }
    false
}

/// A pip version specifier (PEP 440, conservatively).
pub fn check_pip_version(s: &str) -> Check {
    if s.is_empty() {
        return Err("empty: leave `version` out (or null) for any version".into());
    }
    if s.chars().count() > VERSION_MAX {
        return Err(format!("{} characters: at most {VERSION_MAX}", s.chars().count()));
    }
    if s.contains("://") || s.contains('/') || s.contains('@') || s.contains('\\') {
        return Err("a version specifier, not a URL or a path".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "contains {}: write clauses without spaces, such as `>=2,<3`",
            shown_char(c)
        ));
    }
    if s.contains("===") {
        return Err("arbitrary equality (`===`) is not accepted: use `==`".into());
    }
    if !s.split(',').all(pip_clause) {
        if s.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "{} has no operator: write `=={s}` for exactly this version",
                shown(s)
            ));
        }
        return Err(format!(
            "{} is not a version specifier this server accepts: clauses such as `==1.16.0`, `>=2,<3`, `~=1.4.2` or `!=1.5.*`, separated by commas, in PEP 440's canonical form",
            shown(s)
        ));
    }
    Ok(())
}

/// An exact pip pin: one `==` clause without a wildcard.
pub fn pip_is_exact(s: &str) -> bool {
    s.strip_prefix("==")
        .is_some_and(|v| !v.contains(',') && !v.ends_with(".*") && pip_clause(s))
}

/// `x`, `X`, `*`, `0` or a number without leading zeros; the rest.
fn npm_xr(s: &str) -> Option<&str> {
    if let Some(r) = s.strip_prefix(['x', 'X', '*']) {
        return Some(r);
    }
    if let Some(r) = s.strip_prefix('0') {
        return Some(r);
    }
    if s.starts_with(|c: char| matches!(c, '1'..='9')) {
        return digits(s);
    }
    None
}

fn npm_idents(s: &str) -> bool {
    s.split('.')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// A partial version (`1`, `1.2`, `1.2.x`, `v1.2.3-beta.1+build`), whole.
fn npm_partial(s: &str) -> bool {
    let s = s.strip_prefix('v').unwrap_or(s);
    let Some(rest) = npm_xr(s) else { return false };
    let Some(rest) = rest.strip_prefix('.') else {
        return rest.is_empty();
    };
    let Some(rest) = npm_xr(rest) else { return false };
    let Some(rest) = rest.strip_prefix('.') else {
        return rest.is_empty();
    };
    let Some(rest) = npm_xr(rest) else { return false };
    let (pre, build) = match rest.split_once('+') {
        Some((pre, build)) => (pre, Some(build)),
        None => (rest, None),
    };
    let pre_ok = pre.is_empty() || pre.strip_prefix('-').is_some_and(npm_idents);
    pre_ok && build.is_none_or(npm_idents)
}

fn npm_simple(s: &str) -> bool {
    let rest = ["<=", ">=", "<", ">", "=", "~", "^"]
        .iter()
        .find_map(|op| s.strip_prefix(op))
        .unwrap_or(s);
    npm_partial(rest)
}

fn npm_range(s: &str) -> bool {
    if let Some((a, b)) = s.split_once(" - ")
        && npm_partial(a)
        && npm_partial(b)
    {
        return true;
    }
    s.split(' ').all(npm_simple)
}

fn npm_tag(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
}

fn npm_range_set(s: &str) -> bool {
    let pieces: Vec<&str> = s.split("||").collect();
    let last = pieces.len() - 1;
    pieces.iter().enumerate().all(|(i, p)| {
        let mut p = *p;
        if i > 0 {
            p = p.strip_prefix(' ').unwrap_or(p);
        }
        if i < last {
            p = p.strip_suffix(' ').unwrap_or(p);
        }
        npm_range(p)
    })
}

/// An npm version range or dist-tag.
pub fn check_npm_version(s: &str) -> Check {
    if s.is_empty() {
        return Err("empty: leave `version` out (or null) for the latest version".into());
    }
    if s.chars().count() > VERSION_MAX {
        return Err(format!("{} characters: at most {VERSION_MAX}", s.chars().count()));
    }
    if s.contains(':') || s.contains('/') || s.contains('@') || s.contains('#') || s.contains('\\') {
        return Err("a version range, not a URL, a path, a git or file spec or an alias (`file:`, `git+https:`, `http:`, `github:`, `npm:` are refused)".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| (c.is_whitespace() && *c != ' ') || c.is_control())
    {
        return Err(format!("contains {}: single spaces only", shown_char(c)));
    }
    if !(npm_range_set(s) || npm_tag(s)) {
        return Err(format!(
            "{} is not an npm version range this server accepts: `1.2.3`, `^1.2`, `~1.2.3`, `>=1 <2`, `1.x || 2.x`, `1.0.0 - 2.0.0` (single spaces), or a dist-tag such as `latest`",
            shown(s)
        ));
    }
    Ok(())
}

/// An exact npm version: `1.2.3` (optionally with `=` or `v`, a
/// pre-release and build metadata), no wildcard.
pub fn npm_is_exact(s: &str) -> bool {
    let v = s.strip_prefix('=').unwrap_or(s);
    let v = v.strip_prefix('v').unwrap_or(v);
    let core = v.split(['-', '+']).next().unwrap_or("");
    npm_partial(v)
        && core.split('.').count() == 3
        && core.split('.').all(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// A pip hash.
pub fn check_pip_hash(s: &str) -> Check {
    let Some(hex) = s.strip_prefix("sha256:") else {
        return Err(format!(
            "{} is not a sha256 hash: write `sha256:` and 64 hex digits (other algorithms are not accepted)",
            shown(s)
        ));
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("`sha256:` takes exactly 64 hex digits".into());
    }
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("write the hex digits in lowercase".into());
    }
    Ok(())
}

/// An npm integrity string.
pub fn check_npm_hash(s: &str) -> Check {
    let Some(b64) = s.strip_prefix("sha512-") else {
        return Err(format!(
            "{} is not a sha512 integrity: write `sha512-` and the base64 digest, as package-lock.json does",
            shown(s)
        ));
    };
    let ok = b64.len() == 88
        && b64.ends_with("==")
        && b64[..86]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !ok {
        return Err("`sha512-` takes the 64-byte digest in base64 (88 characters ending in `==`)".into());
    }
    Ok(())
}

/// Whether an environment variable name is the platform's.
pub fn env_is_reserved(name: &str) -> bool {
    RESERVED_ENV.contains(&name) || RESERVED_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// An environment variable's name.
pub fn check_env_name(s: &str) -> Check {
    len_check(s, ENV_NAME_MAX)?;
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        return Err(format!(
            "{} is not allowed: a variable name is letters, digits and `_`",
            shown_char(c)
        ));
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("must not start with a digit".into());
    }
    if env_is_reserved(s) {
        return Err(format!(
            "{} is set by the platform and cannot be overridden (reserved: {}, and every name starting with {})",
            shown(s),
            RESERVED_ENV.join(", "),
            RESERVED_ENV_PREFIXES.join(" or ")
        ));
    }
    Ok(())
}

/// An environment variable's value.
pub fn check_env_value(s: &str) -> Check {
    let n = s.chars().count();
    if n > ENV_VALUE_MAX {
        return Err(format!("{n} characters: at most {ENV_VALUE_MAX}"));
    }
    if s.contains('\0') {
        return Err("contains a NUL character, which no program can receive".into());
    }
    Ok(())
}

/// An allow-list entry: `host` or `host:port` (the one grammar,
/// [`warden_package::hosts`]; templates never name IP addresses).
pub fn check_allow_entry(s: &str) -> Check {
    len_check(s, ALLOW_ENTRY_MAX)?;
    warden_package::hosts::check_host_entry(s, warden_package::hosts::IpLiterals::Refused)
}

/// A seed file's path.
pub fn check_seed_path(s: &str) -> Check {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.chars().count() > SEED_PATH_MAX {
        return Err(format!(
            "{} characters: at most {SEED_PATH_MAX}",
            s.chars().count()
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!("contains a control character ({})", shown_char(c)));
    }
    if s.starts_with('/') {
        return Err("absolute: paths are relative to the box's workspace".into());
    }
    if s.contains('\\') {
        return Err("separate folders with `/`".into());
    }
    let segments: Vec<&str> = s.split('/').collect();
    if segments.contains(&"..") {
        return Err("`..` would leave the workspace".into());
    }
    if segments.iter().any(|p| p.is_empty() || *p == ".") {
        return Err("not normalized: no empty or `.` segment (`//`, `./`, a trailing `/`)".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '/')))
    {
        return Err(format!(
            "{} is not allowed in a path: letters, digits, `.`, `-`, `_`, `+`",
            shown_char(c)
        ));
    }
    for seg in segments {
        let rest = seg
            .strip_prefix("..")
            .or_else(|| seg.strip_prefix('.'))
            .unwrap_or(seg);
        if rest.is_empty() || rest.starts_with('.') {
            return Err(format!(
                "{} is not a file or folder name (dots only, or more than two leading dots)",
                shown(seg)
            ));
        }
    }
    Ok(())
}

/// The bytes of standard base64 (padding required, as
/// [`BASE64_PATTERN`]; non-zero trailing bits are tolerated, as the pattern
/// does).
pub fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    ENGINE
        .decode(s)
        .map_err(|e| format!("not standard base64 with padding: {e}"))
}
