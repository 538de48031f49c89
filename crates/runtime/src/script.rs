//! One-shot programs: a tenant's files, stdin and arguments run once, as
//! `python3 main.py`, `node main.js`, `bash main.sh` would run them, or
//! compiled first (C, C++, Go) and then run; what `POST /v1/run` and the
//! compatibility APIs (Dify's sandbox, Piston) are built on.
//!
//! * **Python** runs on warm fork-servers: a box imported Warden's program
//!   runner (`wrappers/script/run.py`) once, and each run is one forked
//!   child that writes the files, takes its stdin on descriptor 0 and runs
//!   the entry file as `__main__`. After the run the host kills what it
//!   left and empties the workspace, `/tmp` and the box's System V IPC, so
//!   the next run starts clean (see [`crate::warm`]).
//! * **JavaScript** runs in prestarted Node.js boxes, one run per box
//!   (`wrappers/script/run.cjs`): a box is never reused.
//! * **Shell** runs in a fresh box per run (bash starts in a millisecond).
//! * **C, C++, Go** are compiled in a fresh box with the compile limits; the
//!   binary is then run in the same box slot, inside the jail, with the run
//!   limits. Compile and run each have their own result. Compilers never get
//!   network.
//!
//! Warm boxes are kept per tenant, language and dependency layer: a box is
//! never shared between tenants. A run granted network goes cold, through an
//! egress door of its own.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use warden_jail::{BoxHandle, JailError, MIB, Stdin};

use crate::door::Door;
use crate::layers::LayerMount;
use crate::result::{self, HandlerResult};
use crate::runtimes::{Protocol, RuntimeDef};
use crate::{
    CallLimits, Code, Invocation, OutputTap, RunnerInner, RuntimeError, TapSink, artifacts, cold, warm,
};

/// The languages of one-shot programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScriptLanguage {
    /// Python 3 (the host's `/usr/bin/python3`).
    Python,
    /// JavaScript (the host's `/usr/bin/node`).
    Javascript,
    /// bash.
    Shell,
    /// C, compiled by the host's `gcc`.
    C,
    /// C++, compiled by the host's `g++`.
    Cpp,
    /// Go, compiled by the host's `go` (standard library only).
    Go,
}

/// Where compiled programs are written in the workspace; the name is
/// reserved (a run's files may not use it).
pub const BUILD_DIR: &str = ".warden";
/// The binary a compile step writes.
const BINARY: &str = "/workspace/.warden/a.out";

impl ScriptLanguage {
    /// Every language, in the order they are listed.
    pub const ALL: [ScriptLanguage; 6] = [
        ScriptLanguage::Python,
        ScriptLanguage::Javascript,
        ScriptLanguage::Shell,
        ScriptLanguage::C,
        ScriptLanguage::Cpp,
        ScriptLanguage::Go,
    ];

    /// The language's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScriptLanguage::Python => "python",
            ScriptLanguage::Javascript => "javascript",
            ScriptLanguage::Shell => "shell",
            ScriptLanguage::C => "c",
            ScriptLanguage::Cpp => "cpp",
            ScriptLanguage::Go => "go",
        }
    }

    /// Whether the program is compiled before it runs.
    pub fn compiled(self) -> bool {
        matches!(self, ScriptLanguage::C | ScriptLanguage::Cpp | ScriptLanguage::Go)
    }

    /// The host program that runs or compiles it.
    pub fn toolchain(self) -> &'static str {
        match self {
            ScriptLanguage::Python => "/usr/bin/python3",
            ScriptLanguage::Javascript => "/usr/bin/node",
            ScriptLanguage::Shell => "/bin/bash",
            ScriptLanguage::C => "/usr/bin/gcc",
            ScriptLanguage::Cpp => "/usr/bin/g++",
            ScriptLanguage::Go => "/usr/bin/go",
        }
    }

    /// File name endings the compiler takes as sources besides the entry
    /// file (headers and other files are only read through includes).
    fn source_endings(self) -> &'static [&'static str] {
        match self {
            ScriptLanguage::C => &[".c"],
            ScriptLanguage::Cpp => &[".cpp", ".cc", ".cxx", ".c++", ".C"],
            ScriptLanguage::Go => &[".go"],
            _ => &[],
        }
    }

    /// The toolchain's version (`3.11.2`, `20.20.2`, `5.2.15`, `12.2.0`,
    /// `1.19.8`), asked of the host's program once and remembered; `None`
    /// when the host does not have it.
    pub fn version(self) -> Option<String> {
        static VERSIONS: OnceLock<Vec<(ScriptLanguage, Option<String>)>> = OnceLock::new();
        VERSIONS
            .get_or_init(|| {
                ScriptLanguage::ALL
                    .iter()
                    .map(|l| (*l, l.ask_version()))
                    .collect()
            })
            .iter()
            .find(|(l, _)| *l == self)
            .and_then(|(_, v)| v.clone())
    }

    fn ask_version(self) -> Option<String> {
        let args: &[&str] = match self {
            ScriptLanguage::C | ScriptLanguage::Cpp => &["-dumpfullversion"],
            ScriptLanguage::Go => &["version"],
            _ => &["--version"],
        };
        let out = std::process::Command::new(self.toolchain())
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/nonexistent")
            .env("GOTOOLCHAIN", "local")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .into_owned();
        parse_version(&text)
    }
}

/// The first dotted version number in a toolchain's `--version` text
/// (`Python 3.11.2`, `v20.20.2`, `GNU bash, version 5.2.15(1)-release`,
/// `12.2.0`, `go version go1.19.8 linux/amd64`).
fn parse_version(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit()
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric() || matches!(bytes[i - 1], b'v' | b'o'))
        {
            let end = line[i..]
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .map_or(line.len(), |n| i + n);
            let v = line[i..end].trim_end_matches('.');
            if v.contains('.') {
                return Some(v.to_owned());
            }
            i = end;
        }
        i += 1;
    }
    None
}

/// One file of a program: a path relative to the workspace and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFile {
    /// Relative, `/`-separated, no empty, `.` or `..` segment.
    pub path: String,
    /// Content.
    pub bytes: Vec<u8>,
}

/// Where a run granted network may go: through the host's egress proxy,
/// to these hosts only (the one grant type, [`crate::Network`]).
pub type ScriptNetwork = crate::Network;

/// One program to run.
#[derive(Clone)]
pub struct Script {
    /// Whose program it is: warm boxes are kept per tenant and never serve
    /// another one.
    pub tenant: String,
    /// Its language.
    pub language: ScriptLanguage,
    /// Its files; the first is the entry file (run, or compiled with the
    /// others of its language).
    pub files: Vec<ScriptFile>,
    /// Its standard input.
    pub stdin: Vec<u8>,
    /// Its arguments (after the entry file).
    pub args: Vec<String>,
    /// A template's dependency layer, if any (Python and JavaScript).
    pub layer: Option<LayerMount>,
    /// Network, if granted; `None`: no network at all.
    pub network: Option<ScriptNetwork>,
    /// Limits of the run.
    pub limits: CallLimits,
    /// Limits of the compile step (compiled languages).
    pub compile_limits: CallLimits,
    /// Where the run's output goes as it comes.
    pub tap: Option<OutputTap>,
    /// Where the compile step's output goes as it comes.
    pub compile_tap: Option<OutputTap>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script")
            .field("tenant", &self.tenant)
            .field("language", &self.language)
            .field("files", &self.files.len())
            .field("args", &self.args.len())
            .field("layer", &self.layer)
            .field("network", &self.network)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What a program did: the compile step's result (compiled languages), and
/// the run's (absent when the compile step failed).
#[derive(Debug, Clone)]
pub struct ScriptOutcome {
    /// The compile step.
    pub compile: Option<HandlerResult>,
    /// The run.
    pub run: Option<HandlerResult>,
}

/// Why `path` cannot name a program's file, if it cannot.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("is empty".into());
    }
    if path.len() > 255 {
        return Err(format!("is {} bytes long; at most 255", path.len()));
    }
    if path.starts_with('/') {
        return Err("is absolute; paths are relative to the workspace".into());
    }
    if path.chars().any(|c| c.is_control()) {
        return Err("holds a control character".into());
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err("has an empty segment".into()),
            "." | ".." => return Err(format!("has a `{segment}` segment")),
            _ => {}
        }
    }
    if path == BUILD_DIR || path.starts_with(&format!("{BUILD_DIR}/")) {
        return Err(format!(
            "is under `{BUILD_DIR}/`, which Warden keeps for compiled programs"
        ));
    }
    if path == "out" {
        return Err("is `out`, the folder whose files become the run's artifacts".into());
    }
    Ok(())
}

fn bad(reason: impl Into<String>) -> RuntimeError {
    RuntimeError::BadScript(reason.into())
}

fn check(s: &Script) -> Result<(), RuntimeError> {
    if s.files.is_empty() {
        return Err(bad("a program needs at least one file"));
    }
    let mut seen = std::collections::HashSet::new();
    for f in &s.files {
        check_path(&f.path).map_err(|why| bad(format!("file path `{}` {why}", f.path.escape_debug())))?;
        if !seen.insert(f.path.as_str()) {
            return Err(bad(format!("file `{}` is given twice", f.path.escape_debug())));
        }
    }
    if s.language.version().is_none() {
        return Err(bad(format!(
            "this host has no {} toolchain ({})",
            s.language.as_str(),
            s.language.toolchain()
        )));
    }
    Ok(())
}

/// The runtime definitions one-shot programs use: the Python and Node.js
/// runtimes, with Warden's program runner as the handler.
pub(crate) fn defs(
    defs: &std::collections::HashMap<String, Arc<RuntimeDef>>,
) -> Vec<(ScriptLanguage, Arc<RuntimeDef>)> {
    [
        (ScriptLanguage::Python, "python"),
        (ScriptLanguage::Javascript, "node"),
    ]
    .into_iter()
    .filter_map(|(lang, name)| {
        let mut def = (**defs.get(name)?).clone();
        def.name = format!("{name}-script");
        def.aliases.clear();
        def.protocol = Protocol::Script;
        if lang == ScriptLanguage::Javascript {
            // A run is a program that ends its process (see run.cjs): one
            // prestarted box per run, never a box that serves many.
            def.warm = crate::runtimes::WarmMode::Prestart;
            def.serve_argv.clear();
        }
        Some((lang, Arc::new(def)))
    })
    .collect()
}

pub(crate) fn run(rt: &Arc<RunnerInner>, s: &Script) -> Result<ScriptOutcome, RuntimeError> {
    check(s)?;
    match s.language {
        ScriptLanguage::Python | ScriptLanguage::Javascript => Ok(ScriptOutcome {
            compile: None,
            run: Some(interpreted(rt, s)?),
        }),
        ScriptLanguage::Shell => {
            let handle = with_files(rt, s, s.limits.workspace_bytes)?;
            let mut argv = vec!["/bin/bash".to_owned(), s.files[0].path.clone()];
            argv.extend(s.args.iter().cloned());
            let (run, _) = run_in(handle, s, argv)?;
            Ok(ScriptOutcome {
                compile: None,
                run: Some(run),
            })
        }
        ScriptLanguage::C | ScriptLanguage::Cpp | ScriptLanguage::Go => compiled(rt, s),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// How long a one-shot run waits for one of its tenant's warm boxes when
/// every one is busy or starting (never past the run's own wall clock),
/// before it starts a box of its own. Measured on 2 cores (docs/benchmarks.md,
/// "Compatibility APIs"): a warm Python run costs a few milliseconds of
/// CPU and a cold one tens, so under a burst of short runs, starting
/// interpreters beside busy warm boxes served fewer runs than queueing for
/// them; a warm box of a short run frees in milliseconds.
const RUN_WARM_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Python and JavaScript: warm when a box of the tenant is free or frees
/// within [`RUN_WARM_WAIT`], cold otherwise (and always cold with network:
/// a warm box has none).
fn interpreted(rt: &Arc<RunnerInner>, s: &Script) -> Result<HandlerResult, RuntimeError> {
    let def = rt
        .script_defs
        .iter()
        .find(|(l, _)| *l == s.language)
        .map(|(_, d)| d.clone())
        .ok_or_else(|| bad(format!("no runtime for {}", s.language.as_str())))?;
    let entrypoint = match s.language {
        ScriptLanguage::Python => "run.py",
        _ => "run.cjs",
    };
    let code = Code {
        key: format!(
            "run/{}/{}/{}",
            s.tenant,
            s.language.as_str(),
            s.layer
                .as_ref()
                .map_or("-".into(), |l| l.dir.display().to_string())
        ),
        runtime: def.name.clone(),
        dir: rt.wrappers.join("script"),
        entrypoint: entrypoint.into(),
        handler: "handler".into(),
        layer: s.layer.clone(),
        // A run's network is a door of its own per call (below), never a
        // warm box's.
        network: None,
    };
    let event = serde_json::json!({
        "main": s.files[0].path,
        "files": s.files.iter().map(|f| serde_json::json!({"path": f.path, "content": b64(&f.bytes)})).collect::<Vec<_>>(),
        "stdin": b64(&s.stdin),
        "args": s.args,
    });
    let event = serde_json::to_vec(&event).map_err(|e| bad(e.to_string()))?;
    if event.len() > rt.config.max_event_bytes {
        return Err(RuntimeError::EventTooLarge {
            size: event.len(),
            limit: rt.config.max_event_bytes,
        });
    }
    let inv = Invocation {
        event,
        limits: s.limits.clone(),
        tap: s.tap.clone(),
    };
    match &s.network {
        None => {
            if rt.config.warm.enabled {
                let wait = rt.config.warm.max_wait.max(RUN_WARM_WAIT.min(s.limits.timeout));
                match warm::invoke_within(rt, &def, &code, &inv, wait) {
                    warm::Attempt::Done(result) => return result,
                    warm::Attempt::NoBox => {}
                }
            }
            cold::invoke(rt, &def, &code, &inv)
        }
        Some(net) => {
            let door = open_door(net)?;
            let result = cold::invoke_through(rt, &def, &code, &inv, Some(&door));
            door.stop();
            result
        }
    }
}

fn open_door(net: &ScriptNetwork) -> Result<Door, RuntimeError> {
    Door::open(&net.hosts, &net.allow_cidrs).map_err(|e| match e {
        crate::door::DoorError::Hosts(e) => bad(format!("the network allow-list: {e}")),
        crate::door::DoorError::Cidr(e) => bad(format!("an allowed address range: {e}")),
        e => RuntimeError::Channel(std::io::Error::other(e.to_string())),
    })
}

/// A fresh box slot whose workspace (of `size` bytes) holds the program's
/// files and an empty `out/`, written by the host through the workspace's
/// descriptor.
fn with_files(rt: &RunnerInner, s: &Script, size: u64) -> Result<BoxHandle, RuntimeError> {
    let handle = artifacts::fresh_box(&rt.jail, size)?;
    let ws = handle.workspace()?;
    for f in &s.files {
        let path = Path::new(&f.path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let mut dir = PathBuf::new();
            for c in parent.components() {
                dir.push(c);
                ws.ensure_dir(&dir, 0o755).map_err(JailError::from)?;
            }
        }
        ws.write_file(path, &mut f.bytes.as_slice(), size)
            .map_err(JailError::from)?;
    }
    Ok(handle)
}

/// Run `argv` in `handle`'s box with the run's limits, stdin and network;
/// returns the result (with the artifacts under `out/`) and the slot.
fn run_in(
    handle: BoxHandle,
    s: &Script,
    argv: Vec<String>,
) -> Result<(HandlerResult, BoxHandle), RuntimeError> {
    let limits = &s.limits;
    let door = s.network.as_ref().map(open_door).transpose()?;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut binds = Vec::new();
    if let Some(d) = &door {
        env.extend(d.env());
        env.push(("NODE_EXTRA_CA_CERTS".into(), crate::layers::HOST_CA_BUNDLE.into()));
        binds.push(warden_jail::Bind::same("/etc/ssl/certs"));
    }
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let layer = s.layer.as_ref().filter(|_| !s.language.compiled());
    let mut spec = crate::jail_spec(argv, binds, layer, &env_refs, limits, limits.timeout);
    spec.stdin = Stdin::Bytes(s.stdin.clone());
    if let Some(d) = &door {
        spec.egress = Some(
            d.egress()
                .map_err(|e| RuntimeError::Channel(std::io::Error::other(e.to_string())))?,
        );
    }
    let ran = handle.run(spec, &mut TapSink(s.tap.as_ref()));
    if let Some(d) = door {
        d.stop();
    }
    let (outcome, handle) = ran?;
    let artifacts = artifacts::collect(&handle, limits.workspace_bytes);
    Ok((
        result::assemble(Protocol::Raw, outcome, None, 0, artifacts, false),
        handle,
    ))
}

/// The compiler's command line for `s`.
fn compile_argv(s: &Script) -> Vec<String> {
    let main = &s.files[0].path;
    let others = s.files[1..]
        .iter()
        .map(|f| f.path.as_str())
        .filter(|p| s.language.source_endings().iter().any(|e| p.ends_with(e)));
    let mut argv: Vec<String> = match s.language {
        ScriptLanguage::C => [
            "/usr/bin/gcc",
            "-std=gnu17",
            "-O2",
            "-pipe",
            "-o",
            BINARY,
            "-x",
            "c",
        ]
        .map(String::from)
        .to_vec(),
        ScriptLanguage::Cpp => [
            "/usr/bin/g++",
            "-std=gnu++17",
            "-O2",
            "-pipe",
            "-o",
            BINARY,
            "-x",
            "c++",
        ]
        .map(String::from)
        .to_vec(),
        // No -trimpath: it would rebuild the standard library (half a
        // minute) instead of using the toolchain's prebuilt one.
        _ => ["/usr/bin/go", "build", "-o", BINARY].map(String::from).to_vec(),
    };
    argv.push(go_main(s).unwrap_or_else(|| main.clone()));
    argv.extend(others.map(String::from));
    if matches!(s.language, ScriptLanguage::C | ScriptLanguage::Cpp) {
        argv.extend(["-x", "none", "-lm"].map(String::from));
    }
    argv
}

/// Go takes source files by their `.go` ending only: an entry file named
/// otherwise is compiled under its name with `.go` added.
fn go_main(s: &Script) -> Option<String> {
    let main = &s.files[0].path;
    (s.language == ScriptLanguage::Go && !main.ends_with(".go")).then(|| format!("{main}.go"))
}

fn compiled(rt: &RunnerInner, s: &Script) -> Result<ScriptOutcome, RuntimeError> {
    let size = s.limits.workspace_bytes.max(s.compile_limits.workspace_bytes);
    let mut files = s.clone();
    if let Some(name) = go_main(s) {
        files.files[0].path = name;
    }
    let handle = with_files(rt, &files, size)?;
    handle
        .workspace()?
        .ensure_dir(Path::new(BUILD_DIR), 0o755)
        .map_err(JailError::from)?;
    let cl = &s.compile_limits;
    let env: &[(&str, &str)] = match s.language {
        ScriptLanguage::Go => &[
            ("GOCACHE", "/tmp/go-build"),
            ("GOPATH", "/tmp/go"),
            ("GOPROXY", "off"),
            ("GOSUMDB", "off"),
            ("GOTOOLCHAIN", "local"),
            ("GOTELEMETRY", "off"),
            ("GOFLAGS", "-mod=mod"),
            ("CGO_ENABLED", "0"),
        ],
        _ => &[("TMPDIR", "/tmp")],
    };
    let mut spec = crate::jail_spec(compile_argv(s), Vec::new(), None, env, cl, cl.timeout);
    // Compilers write their temporary files to /tmp; Go also its cache.
    spec.limits.tmp_bytes = cl.workspace_bytes.max(256 * MIB);
    spec.limits.open_files = 1024;
    let (outcome, handle) = handle.run(spec, &mut TapSink(s.compile_tap.as_ref()))?;
    let compile = result::assemble(Protocol::Raw, outcome, None, 0, Vec::new(), false);
    if compile.status != crate::CallStatus::Success {
        return Ok(ScriptOutcome {
            compile: Some(compile),
            run: None,
        });
    }
    let mut argv = vec![BINARY.to_owned()];
    argv.extend(s.args.iter().cloned());
    let (run, _) = run_in(handle, s, argv)?;
    Ok(ScriptOutcome {
        compile: Some(compile),
        run: Some(run),
    })
}

/// Default compile limits: compilers need more memory, processes and time
/// than most programs.
pub fn default_compile_limits() -> CallLimits {
    CallLimits {
        timeout: Duration::from_secs(30),
        memory_bytes: 1024 * MIB,
        cpu_time: Duration::from_secs(30),
        pids: 256,
        output_bytes: MIB as usize,
        workspace_bytes: 256 * MIB,
        result_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_what_each_toolchain_prints() {
        for (text, want) in [
            ("Python 3.11.2\n", "3.11.2"),
            ("v20.20.2\n", "20.20.2"),
            (
                "GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)\nCopyright",
                "5.2.15",
            ),
            ("12.2.0\n", "12.2.0"),
            ("go version go1.19.8 linux/amd64\n", "1.19.8"),
        ] {
            assert_eq!(parse_version(text).as_deref(), Some(want), "{text}");
        }
        assert_eq!(parse_version("no version here"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn paths_are_relative_plain_and_not_reserved() {
        for ok in ["main.py", "src/lib/util.c", "a b.txt", ".hidden", "..x"] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        for (path, why) in [
            ("", "is empty"),
            ("/etc/passwd", "absolute"),
            ("a//b", "empty segment"),
            ("a/../b", "`..`"),
            ("./a", "`.`"),
            ("a\u{0}b", "control"),
            (".warden/a.out", ".warden"),
            (".warden", ".warden"),
            ("out", "artifacts"),
        ] {
            let e = check_path(path).unwrap_err();
            assert!(e.contains(why), "{path:?}: {e}");
        }
        assert!(check_path(&"a".repeat(256)).unwrap_err().contains("255"));
    }

    fn script(language: ScriptLanguage, names: &[&str]) -> Script {
        Script {
            tenant: "t".into(),
            language,
            files: names
                .iter()
                .map(|n| ScriptFile {
                    path: (*n).into(),
                    bytes: Vec::new(),
                })
                .collect(),
            stdin: Vec::new(),
            args: Vec::new(),
            layer: None,
            network: None,
            limits: CallLimits::default(),
            compile_limits: default_compile_limits(),
            tap: None,
            compile_tap: None,
        }
    }

    #[test]
    fn compilers_get_the_entry_file_and_the_other_sources_only() {
        let c = compile_argv(&script(
            ScriptLanguage::C,
            &["file0.code", "util.c", "util.h", "notes.txt"],
        ));
        let tail: Vec<&str> = c.iter().map(String::as_str).skip_while(|a| *a != "c").collect();
        assert_eq!(tail, ["c", "file0.code", "util.c", "-x", "none", "-lm"]);
        let cpp = compile_argv(&script(ScriptLanguage::Cpp, &["main.cpp", "a.cc", "b.hpp"]));
        assert!(cpp.ends_with(&["main.cpp", "a.cc", "-x", "none", "-lm"].map(String::from)));
        let go = compile_argv(&script(ScriptLanguage::Go, &["prog", "util.go", "go.txt"]));
        assert!(go.ends_with(&["prog.go", "util.go"].map(String::from)), "{go:?}");
    }
}
