//! Static analysis of plugin sources with real parsers (tree-sitter
//! grammars), for reviewers. The jail is the defence; this report says what
//! the code reaches for: processes, the network, raw system calls, dynamic
//! code. Each finding has a rule id, a severity, a file, a line and a reason.
//!
//! Queries capture imports, calls and commands; the rule tables below decide
//! what is worth a finding, so adding a rule is one table row.

use serde::{Deserialize, Serialize};
use streaming_iterator::StreamingIterator;
use tree_sitter::{Language, Parser, Query, QueryCursor};

/// How much a finding should worry a reviewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Worth a look: normal code rarely needs it in a sandbox.
    Warning,
    /// Only an attempt to get out of the box needs it; a policy may reject
    /// such packages outright.
    Critical,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Rule id (`PY-SUBPROCESS`).
    pub rule: String,
    /// Severity.
    pub severity: Severity,
    /// File in the package.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// Why it matters.
    pub message: String,
}

/// Which language a file is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// `.py`
    Python,
    /// `.js`, `.mjs`, `.cjs`
    JavaScript,
    /// `.go`
    Go,
    /// `.sh`, `.bash`
    Shell,
}

impl Lang {
    /// The language of `path`, if it is one this module reads.
    pub fn of(path: &str) -> Option<Lang> {
        let ext = path.rsplit_once('.').map(|(_, e)| e)?;
        Some(match ext {
            "py" => Lang::Python,
            "js" | "mjs" | "cjs" => Lang::JavaScript,
            "go" => Lang::Go,
            "sh" | "bash" => Lang::Shell,
            _ => return None,
        })
    }

    fn grammar(self) -> Language {
        match self {
            Lang::Python => tree_sitter_python::LANGUAGE.into(),
            Lang::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Lang::Go => tree_sitter_go::LANGUAGE.into(),
            Lang::Shell => tree_sitter_bash::LANGUAGE.into(),
        }
    }

    /// The compiled query, built once per language (a package has many
    /// files of one language).
    fn query(self) -> &'static Query {
        use std::sync::OnceLock;
        static QUERIES: [OnceLock<Query>; 4] = [const { OnceLock::new() }; 4];
        QUERIES[self as usize].get_or_init(|| match Query::new(&self.grammar(), self.query_source()) {
            Ok(q) => q,
            Err(e) => panic!("analysis query for {self:?} does not compile: {e}"),
        })
    }

    /// Captures: `@module` (an import), `@call` (a called name),
    /// `@method` + `@object` (a called attribute), `@command` (shell),
    /// `@word` (shell words, for /dev/tcp).
    fn query_source(self) -> &'static str {
        match self {
            Lang::Python => {
                r#"
                (import_statement name: (dotted_name) @module)
                (import_statement name: (aliased_import name: (dotted_name) @module))
                (import_from_statement module_name: (dotted_name) @module)
                (call function: (identifier) @call)
                (call function: (attribute object: (identifier) @object attribute: (identifier) @method))
                "#
            }
            Lang::JavaScript => {
                r#"
                (import_statement source: (string (string_fragment) @module))
                (call_expression function: (identifier) @require arguments: (arguments . (string (string_fragment) @module)))
                (call_expression function: (import) arguments: (arguments . (string (string_fragment) @module)))
                (call_expression function: (identifier) @call)
                (new_expression constructor: (identifier) @call)
                (call_expression function: (member_expression object: (identifier) @object property: (property_identifier) @method))
                "#
            }
            Lang::Go => "(import_spec path: (interpreted_string_literal) @module)",
            Lang::Shell => {
                r#"
                (command name: (command_name (word) @command))
                (word) @word
                (string) @word
                "#
            }
        }
    }
}

/// (rule, severity, what it matches, reason). For modules, a match is the
/// module or any submodule of it.
type Rule = (&'static str, Severity, &'static str, &'static str);

const PY_MODULES: &[Rule] = &[
    (
        "PY-SUBPROCESS",
        Severity::Warning,
        "subprocess",
        "starts other programs",
    ),
    (
        "PY-CTYPES",
        Severity::Critical,
        "ctypes",
        "calls C functions and raw system calls directly",
    ),
    (
        "PY-CFFI",
        Severity::Critical,
        "cffi",
        "calls C functions directly",
    ),
    (
        "PY-SOCKET",
        Severity::Warning,
        "socket",
        "opens network connections",
    ),
    ("PY-NETWORK", Severity::Warning, "urllib.request", "fetches URLs"),
    (
        "PY-NETWORK",
        Severity::Warning,
        "http.client",
        "opens HTTP connections",
    ),
    ("PY-NETWORK", Severity::Warning, "requests", "fetches URLs"),
    (
        "PY-MULTIPROCESSING",
        Severity::Info,
        "multiprocessing",
        "starts processes",
    ),
];
const PY_CALLS: &[Rule] = &[
    (
        "PY-EVAL",
        Severity::Warning,
        "eval",
        "evaluates code built at run time",
    ),
    (
        "PY-EXEC",
        Severity::Warning,
        "exec",
        "executes code built at run time",
    ),
    (
        "PY-DYNAMIC-IMPORT",
        Severity::Warning,
        "__import__",
        "imports modules by computed name",
    ),
    (
        "PY-COMPILE",
        Severity::Info,
        "compile",
        "compiles code built at run time",
    ),
];
const PY_METHODS: &[Rule] = &[
    (
        "PY-OS-SYSTEM",
        Severity::Warning,
        "os.system",
        "runs a shell command",
    ),
    (
        "PY-OS-SYSTEM",
        Severity::Warning,
        "os.popen",
        "runs a shell command",
    ),
    (
        "PY-OS-EXEC",
        Severity::Warning,
        "os.exec*",
        "replaces the process with another program",
    ),
    (
        "PY-OS-EXEC",
        Severity::Warning,
        "os.spawn*",
        "starts another program",
    ),
    ("PY-OS-FORK", Severity::Info, "os.fork", "forks the process"),
    (
        "PY-IMPORTLIB",
        Severity::Warning,
        "importlib.import_module",
        "imports modules by computed name",
    ),
];
const JS_MODULES: &[Rule] = &[
    (
        "JS-CHILD-PROCESS",
        Severity::Warning,
        "child_process",
        "starts other programs",
    ),
    ("JS-NET", Severity::Warning, "net", "opens network connections"),
    ("JS-NET", Severity::Warning, "dgram", "sends UDP datagrams"),
    ("JS-NET", Severity::Warning, "http", "opens HTTP connections"),
    ("JS-NET", Severity::Warning, "https", "opens HTTPS connections"),
    ("JS-NET", Severity::Warning, "tls", "opens TLS connections"),
    ("JS-VM", Severity::Warning, "vm", "evaluates code in new contexts"),
    ("JS-WORKER", Severity::Info, "worker_threads", "starts threads"),
];
const JS_CALLS: &[Rule] = &[
    (
        "JS-EVAL",
        Severity::Warning,
        "eval",
        "evaluates code built at run time",
    ),
    (
        "JS-FUNCTION",
        Severity::Warning,
        "Function",
        "builds functions from strings",
    ),
];
const JS_METHODS: &[Rule] = &[
    (
        "JS-PROCESS-BINDING",
        Severity::Critical,
        "process.binding",
        "reaches Node's internal native bindings",
    ),
    (
        "JS-PROCESS-BINDING",
        Severity::Critical,
        "process.dlopen",
        "loads native code",
    ),
];
const GO_MODULES: &[Rule] = &[
    (
        "GO-EXEC",
        Severity::Warning,
        "os/exec",
        "starts other programs (gosec G204)",
    ),
    ("GO-NET", Severity::Warning, "net", "opens network connections"),
    (
        "GO-SYSCALL",
        Severity::Critical,
        "syscall",
        "makes raw system calls",
    ),
    (
        "GO-SYSCALL",
        Severity::Critical,
        "golang.org/x/sys/unix",
        "makes raw system calls",
    ),
    (
        "GO-UNSAFE",
        Severity::Critical,
        "unsafe",
        "bypasses Go's memory safety (gosec G103)",
    ),
    (
        "GO-PLUGIN",
        Severity::Critical,
        "plugin",
        "loads code at run time",
    ),
    ("GO-CGO", Severity::Critical, "C", "links C code (cgo)"),
];
const SH_COMMANDS: &[Rule] = &[
    ("SH-NETWORK", Severity::Warning, "curl", "fetches URLs"),
    ("SH-NETWORK", Severity::Warning, "wget", "fetches URLs"),
    (
        "SH-NETWORK",
        Severity::Critical,
        "nc",
        "opens raw network connections",
    ),
    (
        "SH-NETWORK",
        Severity::Critical,
        "ncat",
        "opens raw network connections",
    ),
    (
        "SH-NETWORK",
        Severity::Critical,
        "netcat",
        "opens raw network connections",
    ),
    (
        "SH-NETWORK",
        Severity::Critical,
        "socat",
        "relays network connections",
    ),
    ("SH-NETWORK", Severity::Warning, "ssh", "opens remote shells"),
    (
        "SH-NETWORK",
        Severity::Warning,
        "telnet",
        "opens raw network connections",
    ),
    (
        "SH-EVAL",
        Severity::Warning,
        "eval",
        "evaluates strings as commands",
    ),
];

fn matches_module(name: &str, rule: &str) -> bool {
    name == rule
        || name
            .strip_prefix(rule)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('/'))
}

fn matches_name(name: &str, rule: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == rule,
    }
}

/// Analyze one source file. Unreadable or unparsable files give an `info`
/// finding rather than silence.
pub fn scan(path: &str, source: &[u8]) -> Vec<Finding> {
    let Some(lang) = Lang::of(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let finding = |rule: &Rule, line: usize, what: &str| Finding {
        rule: rule.0.to_owned(),
        severity: rule.1,
        file: path.to_owned(),
        line: line as u32 + 1,
        message: format!("`{what}` {}", rule.3),
    };
    let Ok(text) = std::str::from_utf8(source) else {
        out.push(Finding {
            rule: "NOT-UTF8".into(),
            severity: Severity::Info,
            file: path.to_owned(),
            line: 1,
            message: "not UTF-8: not analyzed".into(),
        });
        return out;
    };
    let grammar = lang.grammar();
    let mut parser = Parser::new();
    if parser.set_language(&grammar).is_err() {
        return out;
    }
    let Some(tree) = parser.parse(text, None) else {
        return out;
    };
    if tree.root_node().has_error() {
        out.push(Finding {
            rule: "PARSE-ERROR".into(),
            severity: Severity::Info,
            file: path.to_owned(),
            line: first_error_line(&tree),
            message: "the file does not parse cleanly; findings may be incomplete".into(),
        });
    }
    let query = lang.query();
    let names = query.capture_names();
    let mut cursor = QueryCursor::new();
    let mut matches = cursor.matches(query, tree.root_node(), text.as_bytes());
    while let Some(m) = matches.next() {
        let mut module = None;
        let mut call = None;
        let mut object = None;
        let mut method = None;
        let mut command = None;
        let mut word = None;
        let mut require = None;
        for cap in m.captures() {
            let t = cap.node.utf8_text(text.as_bytes()).unwrap_or("");
            let line = cap.node.start_position().row;
            match names[cap.index as usize] {
                "module" => module = Some((t.trim_matches('"'), line)),
                "call" => call = Some((t, line)),
                "object" => object = Some(t),
                "method" => method = Some((t, line)),
                "command" => command = Some((t, line)),
                "word" => word = Some((t, line)),
                "require" => require = Some(t),
                _ => {}
            }
        }
        // `require('x')` counts as an import only when it is `require`.
        if let Some(r) = require
            && r != "require"
        {
            module = None;
        }
        let (mods, calls, methods): (&[Rule], &[Rule], &[Rule]) = match lang {
            Lang::Python => (PY_MODULES, PY_CALLS, PY_METHODS),
            Lang::JavaScript => (JS_MODULES, JS_CALLS, JS_METHODS),
            Lang::Go => (GO_MODULES, &[], &[]),
            Lang::Shell => (&[], SH_COMMANDS, &[]),
        };
        if let Some((name, line)) = module {
            let name = name.strip_prefix("node:").unwrap_or(name);
            if let Some(rule) = mods.iter().find(|r| matches_module(name, r.2)) {
                out.push(finding(rule, line, name));
            }
        }
        if let Some((name, line)) = call.or(command) {
            let base = name.rsplit('/').next().unwrap_or(name);
            if let Some(rule) = calls.iter().find(|r| matches_name(base, r.2)) {
                out.push(finding(rule, line, base));
            }
        }
        if let (Some(obj), Some((name, line))) = (object, method) {
            let full = format!("{obj}.{name}");
            if let Some(rule) = methods.iter().find(|r| matches_name(&full, r.2)) {
                out.push(finding(rule, line, &full));
            }
        }
        if let Some((w, line)) = word
            && (w.contains("/dev/tcp/") || w.contains("/dev/udp/"))
        {
            let rule: Rule = (
                "SH-DEV-TCP",
                Severity::Critical,
                "/dev/tcp",
                "opens a network connection through bash's /dev/tcp",
            );
            out.push(finding(&rule, line, "/dev/tcp"));
        }
    }
    out.sort_by(|a, b| (a.line, &a.rule).cmp(&(b.line, &b.rule)));
    out.dedup();
    out
}

/// Line of the first syntax error. Iterative: a hostile file can nest
/// deeply enough to overflow a recursive walk.
fn first_error_line(tree: &tree_sitter::Tree) -> u32 {
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        if node.is_error() || node.is_missing() {
            return node.start_position().row as u32 + 1;
        }
        if node.has_error() {
            // Push children in reverse so the first one is visited first.
            let mut cursor = node.walk();
            let children: Vec<_> = node.children(&mut cursor).collect();
            stack.extend(children.into_iter().rev());
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(path: &str, src: &str) -> Vec<(String, Severity, u32)> {
        scan(path, src.as_bytes())
            .into_iter()
            .map(|f| (f.rule, f.severity, f.line))
            .collect()
    }

    #[test]
    fn python_imports_and_calls() {
        let src = "import json\nimport subprocess\nfrom ctypes import CDLL\nimport socket as s\nimport os\n\ndef handler(e):\n    os.system('ls')\n    os.execvp('x', ['x'])\n    eval(e['code'])\n    __import__('pickle')\n    return 1\n";
        assert_eq!(
            rules("main.py", src),
            [
                ("PY-SUBPROCESS".into(), Severity::Warning, 2),
                ("PY-CTYPES".into(), Severity::Critical, 3),
                ("PY-SOCKET".into(), Severity::Warning, 4),
                ("PY-OS-SYSTEM".into(), Severity::Warning, 8),
                ("PY-OS-EXEC".into(), Severity::Warning, 9),
                ("PY-EVAL".into(), Severity::Warning, 10),
                ("PY-DYNAMIC-IMPORT".into(), Severity::Warning, 11),
            ]
        );
        // Names in strings and comments are not code.
        assert!(rules("x.py", "# import subprocess\ns = 'os.system'\n").is_empty());
    }

    #[test]
    fn javascript_requires_imports_eval_and_function() {
        let src = "const cp = require('child_process');\nimport net from 'node:net';\nconst vm = await import('vm');\nexports.handler = (e) => eval(e.x) + new Function('return 1')();\nprocess.binding('fs');\nconst ok = require('path');\n";
        assert_eq!(
            rules("index.mjs", src),
            [
                ("JS-CHILD-PROCESS".into(), Severity::Warning, 1),
                ("JS-NET".into(), Severity::Warning, 2),
                ("JS-VM".into(), Severity::Warning, 3),
                ("JS-EVAL".into(), Severity::Warning, 4),
                ("JS-FUNCTION".into(), Severity::Warning, 4),
                ("JS-PROCESS-BINDING".into(), Severity::Critical, 5),
            ]
        );
    }

    #[test]
    fn go_imports_gosec_style() {
        let src = "package main\n\nimport (\n\t\"encoding/json\"\n\t\"os/exec\"\n\t\"unsafe\"\n\t\"net/http\"\n)\n\nimport \"syscall\"\n";
        assert_eq!(
            rules("main.go", src),
            [
                ("GO-EXEC".into(), Severity::Warning, 5),
                ("GO-UNSAFE".into(), Severity::Critical, 6),
                ("GO-NET".into(), Severity::Warning, 7),
                ("GO-SYSCALL".into(), Severity::Critical, 10),
            ]
        );
    }

    #[test]
    fn shell_network_tools_and_dev_tcp() {
        let src = "#!/bin/bash\nread -r event\ncurl -s https://x.example\n/usr/bin/nc host 80\necho hi > /dev/tcp/10.0.0.1/80\necho done\n";
        assert_eq!(
            rules("run.sh", src),
            [
                ("SH-NETWORK".into(), Severity::Warning, 3),
                ("SH-NETWORK".into(), Severity::Critical, 4),
                ("SH-DEV-TCP".into(), Severity::Critical, 5),
            ]
        );
    }

    #[test]
    fn deeply_nested_sources_do_not_overflow_the_stack() {
        let src = format!("x = {}1{}\n", "(".repeat(50_000), ")".repeat(49_999));
        let f = scan("deep.py", src.as_bytes());
        assert!(f.iter().any(|f| f.rule == "PARSE-ERROR"), "{f:?}");
        let ok = format!(
            "x = {}1{}\nimport subprocess\n",
            "[".repeat(20_000),
            "]".repeat(20_000)
        );
        assert!(
            scan("deep2.py", ok.as_bytes())
                .iter()
                .any(|f| f.rule == "PY-SUBPROCESS")
        );
    }

    #[test]
    fn broken_files_are_reported_not_skipped() {
        let f = scan("bad.py", b"def handler(:\n  import subprocess\n");
        assert!(f.iter().any(|f| f.rule == "PARSE-ERROR"), "{f:?}");
        assert_eq!(scan("x.py", &[0xff, 0xfe])[0].rule, "NOT-UTF8");
        assert!(scan("README.md", b"import subprocess").is_empty());
    }
}
