//! One-shot runs: a tenant's program (files or code, stdin, arguments) run
//! once in a fresh or warm box and recorded as an ordinary execution; what
//! `POST /v1/run` and the compatibility APIs (Dify's sandbox, Piston) ask
//! for.
//!
//! This module holds the languages ([`RunLanguage`]), what a client asks
//! for ([`NewRun`]) and its check against the template it names and the
//! server's policy ([`plan`]): every problem at once, located by JSON
//! pointer.
//!
//! Must never: run, fetch or look for anything (the server and the runtime
//! do), or pass on a value it has not checked.

use warden_package::Problem;

use crate::template::TemplateRuntime;

names! {
    /// The languages of one-shot runs.
    pub enum RunLanguage {
        /// Python 3.
        Python = "python",
        /// JavaScript (Node.js).
        Javascript = "javascript",
        /// bash.
        Shell = "shell",
        /// C (gcc).
        C = "c",
        /// C++ (g++).
        Cpp = "cpp",
        /// Go (the standard library only).
        Go = "go",
    }
}

impl RunLanguage {
    /// Whether a program is compiled before it runs.
    pub fn compiled(self) -> bool {
        matches!(self, RunLanguage::C | RunLanguage::Cpp | RunLanguage::Go)
    }

    /// The template runtime a run of this language may use, if any
    /// (compiled languages take no template).
    pub fn template_runtime(self) -> Option<TemplateRuntime> {
        match self {
            RunLanguage::Python => Some(TemplateRuntime::Python),
            RunLanguage::Javascript => Some(TemplateRuntime::Node),
            RunLanguage::Shell => Some(TemplateRuntime::Shell),
            RunLanguage::C | RunLanguage::Cpp | RunLanguage::Go => None,
        }
    }

    /// The built-in template a run uses when it names none.
    pub fn default_template(self) -> Option<&'static str> {
        use crate::template::builtin;
        match self {
            RunLanguage::Python => Some(builtin::PYTHON_BASIC),
            RunLanguage::Javascript => Some(builtin::NODE_BASIC),
            RunLanguage::Shell => Some(builtin::SHELL),
            RunLanguage::C | RunLanguage::Cpp | RunLanguage::Go => None,
        }
    }

    /// The entry file's name when a run sends code rather than files.
    pub fn main_file(self) -> &'static str {
        match self {
            RunLanguage::Python => "main.py",
            RunLanguage::Javascript => "main.js",
            RunLanguage::Shell => "main.sh",
            RunLanguage::C => "main.c",
            RunLanguage::Cpp => "main.cpp",
            RunLanguage::Go => "main.go",
        }
    }
}

/// One file of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFile {
    /// Relative to the workspace.
    pub path: String,
    /// The bytes (decoded by the API from text or base64).
    pub content: Vec<u8>,
}

/// A run as a client asks for it (after the API read the JSON). Absent
/// limits take the policy's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// The language.
    pub language: RunLanguage,
    /// The files; the first is the entry file.
    pub files: Vec<RunFile>,
    /// Standard input.
    pub stdin: Vec<u8>,
    /// Arguments after the entry file.
    pub args: Vec<String>,
    /// The template (its packages and network); the language's built-in
    /// one when absent.
    pub template: Option<String>,
    /// Ask for the template's network (granted only as far as the
    /// template's allow-list and the server allow).
    pub network: bool,
    /// Wall clock of the run, ms.
    pub timeout_ms: Option<u64>,
    /// Memory of the run, MiB.
    pub memory_mb: Option<u64>,
    /// Wall clock of the compile step, ms.
    pub compile_timeout_ms: Option<u64>,
    /// Memory of the compile step, MiB.
    pub compile_memory_mb: Option<u64>,
}

/// What a run needs from its template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTemplate {
    /// Its id.
    pub id: String,
    /// Its runtime.
    pub runtime: TemplateRuntime,
    /// Its allow-list (empty: no network).
    pub allow: Vec<String>,
    /// Its ready dependency layer, if any.
    pub layer: Option<String>,
}

/// What a server lets runs ask for (the `run.*` configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPolicy {
    /// Wall clock of a run that names none, ms.
    pub default_timeout_ms: u64,
    /// The longest wall clock a run may ask for, ms.
    pub max_timeout_ms: u64,
    /// Memory of a run that names none, MiB.
    pub default_memory_mb: u64,
    /// The most memory a run may ask for, MiB.
    pub max_memory_mb: u64,
    /// Wall clock of a compile step that names none, ms.
    pub default_compile_timeout_ms: u64,
    /// The longest compile step, ms.
    pub max_compile_timeout_ms: u64,
    /// Memory of a compile step that names none, MiB.
    pub default_compile_memory_mb: u64,
    /// The most memory a compile step may ask for, MiB.
    pub max_compile_memory_mb: u64,
    /// Most files of one run.
    pub max_files: usize,
    /// Most bytes of all files of one run together.
    pub max_files_bytes: usize,
    /// Most bytes of stdin.
    pub max_stdin_bytes: usize,
    /// Most arguments.
    pub max_args: usize,
    /// Whether runs may have network at all.
    pub network: bool,
}

impl Default for RunPolicy {
    fn default() -> Self {
        RunPolicy {
            default_timeout_ms: 10_000,
            max_timeout_ms: 60_000,
            default_memory_mb: 256,
            max_memory_mb: 1024,
            default_compile_timeout_ms: 30_000,
            max_compile_timeout_ms: 120_000,
            default_compile_memory_mb: 1024,
            max_compile_memory_mb: 2048,
            max_files: 64,
            max_files_bytes: 2 << 20,
            max_stdin_bytes: 1 << 20,
            max_args: 256,
            network: true,
        }
    }
}

/// The least memory a run or a compile step may have, MiB.
pub const MIN_MEMORY_MB: u64 = 16;
/// The longest argument, bytes.
pub const MAX_ARG_BYTES: usize = 4096;
/// The longest file path, bytes.
pub const MAX_PATH_BYTES: usize = 255;
/// The folder Warden keeps in a run's workspace for compiled programs.
pub const RESERVED_DIR: &str = ".warden";

/// A checked run: its limits and the hosts it may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    /// Wall clock of the run, ms.
    pub timeout_ms: u64,
    /// Memory of the run, MiB.
    pub memory_mb: u64,
    /// Wall clock of the compile step, ms.
    pub compile_timeout_ms: u64,
    /// Memory of the compile step, MiB.
    pub compile_memory_mb: u64,
    /// Hosts the run may reach (empty: no network).
    pub network: Vec<String>,
}

fn problem(location: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        location: location.into(),
        message: message.into(),
    }
}

/// Why `path` cannot name a run's file, if it cannot: relative,
/// `/`-separated, no empty, `.` or `..` segment, no control character, at
/// most 255 bytes, not Warden's own folder, not `out` itself (the folder
/// whose files become artifacts).
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("is empty".into());
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("is {} bytes long; at most {MAX_PATH_BYTES}", path.len()));
    }
    if path.starts_with('/') {
        return Err("is absolute; paths are relative to the workspace".into());
    }
    if path.chars().any(char::is_control) {
        return Err("holds a control character".into());
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err("has an empty segment".into()),
            "." | ".." => return Err(format!("has a `{segment}` segment")),
            _ => {}
        }
    }
    if path == RESERVED_DIR || path.starts_with(&format!("{RESERVED_DIR}/")) {
        return Err(format!(
            "is under `{RESERVED_DIR}/`, which Warden keeps for compiled programs"
        ));
    }
    if path == "out" {
        return Err("is `out`, the folder whose files become the run's artifacts".into());
    }
    Ok(())
}

/// Check a run against its template (the one it names, or its language's
/// built-in; `None` for compiled languages) and the server's policy:
/// files, stdin, arguments, limits, the template's runtime. Every problem,
/// located.
pub fn plan(req: &NewRun, t: Option<&RunTemplate>, policy: &RunPolicy) -> Result<RunPlan, Vec<Problem>> {
    let mut problems = Vec::new();
    if req.files.is_empty() {
        problems.push(problem(
            "/files",
            "a run needs its code: send `code`, or `files` with the entry file first",
        ));
    } else if req.files.len() > policy.max_files {
        problems.push(problem(
            "/files",
            format!("{} files; at most {} per run", req.files.len(), policy.max_files),
        ));
    } else {
        let total: usize = req.files.iter().map(|f| f.content.len()).sum();
        if total > policy.max_files_bytes {
            problems.push(problem(
                "/files",
                format!(
                    "the files hold {total} bytes; at most {} per run",
                    policy.max_files_bytes
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, f) in req.files.iter().enumerate() {
            let at = format!("/files/{i}/path");
            if let Err(why) = check_path(&f.path) {
                problems.push(problem(&at, format!("`{}` {why}", f.path.escape_debug())));
            } else if !seen.insert(f.path.as_str()) {
                problems.push(problem(
                    &at,
                    format!("`{}` is listed twice", f.path.escape_debug()),
                ));
            }
        }
    }
    if req.stdin.len() > policy.max_stdin_bytes {
        problems.push(problem(
            "/stdin",
            format!("{} bytes; at most {}", req.stdin.len(), policy.max_stdin_bytes),
        ));
    }
    if req.args.len() > policy.max_args {
        problems.push(problem(
            "/args",
            format!("{} arguments; at most {}", req.args.len(), policy.max_args),
        ));
    } else {
        for (i, a) in req.args.iter().enumerate() {
            if a.len() > MAX_ARG_BYTES {
                problems.push(problem(
                    format!("/args/{i}"),
                    format!("{} bytes; at most {MAX_ARG_BYTES}", a.len()),
                ));
            } else if a.contains('\0') {
                problems.push(problem(format!("/args/{i}"), "holds a NUL character"));
            }
        }
    }
    match (req.language.template_runtime(), t, &req.template) {
        (None, _, Some(_)) => problems.push(problem(
            "/template",
            format!(
                "{} programs take no template (templates carry Python and Node.js packages)",
                req.language
            ),
        )),
        (Some(want), Some(t), _) if t.runtime != want => problems.push(problem(
            "/template",
            format!(
                "template `{}` is for {}; a {} run needs a {} template",
                t.id, t.runtime, req.language, want
            ),
        )),
        _ => {}
    }
    let mut limit = |location: &str, asked: Option<u64>, default: u64, lo: u64, hi: u64| -> u64 {
        match asked {
            Some(v) if (lo..=hi).contains(&v) => v,
            Some(_) => {
                problems.push(problem(
                    location,
                    format!("must be between {lo} and {hi} (the server's limit)"),
                ));
                default.min(hi)
            }
            None => default.clamp(lo, hi.max(lo)),
        }
    };
    let timeout_ms = limit(
        "/timeout_ms",
        req.timeout_ms,
        policy.default_timeout_ms,
        1,
        policy.max_timeout_ms,
    );
    let memory_mb = limit(
        "/memory_mb",
        req.memory_mb,
        policy.default_memory_mb,
        MIN_MEMORY_MB,
        policy.max_memory_mb,
    );
    let compile_timeout_ms = limit(
        "/compile_timeout_ms",
        req.compile_timeout_ms,
        policy.default_compile_timeout_ms,
        1,
        policy.max_compile_timeout_ms,
    );
    let compile_memory_mb = limit(
        "/compile_memory_mb",
        req.compile_memory_mb,
        policy.default_compile_memory_mb,
        MIN_MEMORY_MB,
        policy.max_compile_memory_mb,
    );
    let network = match t {
        Some(t) if req.network && policy.network => t.allow.clone(),
        _ => Vec::new(),
    };
    if problems.is_empty() {
        Ok(RunPlan {
            timeout_ms,
            memory_mb,
            compile_timeout_ms,
            compile_memory_mb,
            network,
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(language: RunLanguage, files: &[(&str, &str)]) -> NewRun {
        NewRun {
            language,
            files: files
                .iter()
                .map(|(p, c)| RunFile {
                    path: (*p).into(),
                    content: c.as_bytes().to_vec(),
                })
                .collect(),
            stdin: Vec::new(),
            args: Vec::new(),
            template: None,
            network: false,
            timeout_ms: None,
            memory_mb: None,
            compile_timeout_ms: None,
            compile_memory_mb: None,
        }
    }

    fn template(runtime: TemplateRuntime, allow: &[&str]) -> RunTemplate {
        RunTemplate {
            id: "t".into(),
            runtime,
            allow: allow.iter().map(|s| (*s).into()).collect(),
            layer: None,
        }
    }

    fn locations(e: Vec<Problem>) -> Vec<String> {
        e.into_iter().map(|p| p.location).collect()
    }

    #[test]
    fn defaults_come_from_the_policy_and_network_from_the_template() {
        let p = RunPolicy::default();
        let t = template(TemplateRuntime::Python, &["pypi.org"]);
        let plan_ = plan(
            &run(RunLanguage::Python, &[("main.py", "print(1)")]),
            Some(&t),
            &p,
        )
        .unwrap();
        assert_eq!((plan_.timeout_ms, plan_.memory_mb), (10_000, 256));
        assert!(plan_.network.is_empty(), "network only when asked for");
        let mut asked = run(RunLanguage::Python, &[("main.py", "")]);
        asked.network = true;
        assert_eq!(plan(&asked, Some(&t), &p).unwrap().network, ["pypi.org"]);
        let off = RunPolicy {
            network: false,
            ..RunPolicy::default()
        };
        assert!(plan(&asked, Some(&t), &off).unwrap().network.is_empty());
        // Asked for, but the template grants none: no network, no error.
        let none = template(TemplateRuntime::Python, &[]);
        assert!(plan(&asked, Some(&none), &p).unwrap().network.is_empty());
    }

    #[test]
    fn every_problem_is_located() {
        let p = RunPolicy::default();
        let mut r = run(
            RunLanguage::C,
            &[
                ("../x.c", ""),
                ("a.c", ""),
                ("a.c", ""),
                (".warden/b", ""),
                ("out", ""),
            ],
        );
        r.template = Some("python-basic".into());
        r.timeout_ms = Some(0);
        r.memory_mb = Some(1 << 30);
        r.compile_memory_mb = Some(1);
        r.args = vec!["ok".into(), "nul\0".into(), "x".repeat(MAX_ARG_BYTES + 1)];
        r.stdin = vec![0; p.max_stdin_bytes + 1];
        let got = locations(plan(&r, None, &p).unwrap_err());
        assert_eq!(
            got,
            [
                "/files/0/path",
                "/files/2/path",
                "/files/3/path",
                "/files/4/path",
                "/stdin",
                "/args/1",
                "/args/2",
                "/template",
                "/timeout_ms",
                "/memory_mb",
                "/compile_memory_mb",
            ]
        );
        let empty = locations(plan(&run(RunLanguage::Go, &[]), None, &p).unwrap_err());
        assert_eq!(empty, ["/files"]);
        let wrong = plan(
            &run(RunLanguage::Javascript, &[("m.js", "")]),
            Some(&template(TemplateRuntime::Python, &[])),
            &p,
        )
        .unwrap_err();
        assert!(
            wrong[0].message.contains("needs a node template"),
            "{}",
            wrong[0].message
        );
    }

    #[test]
    fn caps_on_counts_and_sizes_hold() {
        let p = RunPolicy {
            max_files: 2,
            max_files_bytes: 10,
            max_args: 1,
            ..RunPolicy::default()
        };
        let many = run(RunLanguage::Shell, &[("a", ""), ("b", ""), ("c", "")]);
        assert!(plan(&many, None, &p).unwrap_err()[0].message.contains("3 files"));
        let big = run(RunLanguage::Shell, &[("a", "0123456789x")]);
        assert!(plan(&big, None, &p).unwrap_err()[0].message.contains("11 bytes"));
        let mut args = run(RunLanguage::Shell, &[("a", "")]);
        args.args = vec!["1".into(), "2".into()];
        assert_eq!(locations(plan(&args, None, &p).unwrap_err()), ["/args"]);
    }

    #[test]
    fn paths_follow_the_grammar() {
        for ok in ["main.py", "src/a.c", "a b", ".env", "..x", "out/x.txt"] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a//b",
            "a/./b",
            "../a",
            "a\nb",
            ".warden",
            ".warden/x",
            "out",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path(&"a".repeat(256)).is_err());
    }
}
