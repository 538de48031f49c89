//! Templates read as hostile input: each class of attack the issue lists
//! (shell and path injection in names, `../`, URLs in names, a 10,000
//! package list, a missing runtime) and the rest of the grammar, each
//! refused at its JSON pointer with a message saying why.

use serde_json::{Value, json};

use super::grammar::*;
use super::*;

fn policy() -> TemplatePolicy {
    TemplatePolicy::default()
}

/// The problems of `doc` as (location, message) pairs.
fn problems(doc: Value) -> Vec<(String, String)> {
    match parse_new(&doc, &policy()) {
        Ok(spec) => panic!("accepted: {spec:?}"),
        Err(ps) => ps.into_iter().map(|p| (p.location, p.message)).collect(),
    }
}

/// The one problem of `doc`, which must be at `location`; its message.
fn one(doc: Value, location: &str) -> String {
    let ps = problems(doc);
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(ps[0].0, location, "{ps:#?}");
    ps[0].1.clone()
}

fn python(packages: Value) -> Value {
    json!({"id": "t", "runtime": "python", "packages": packages})
}

fn node(packages: Value) -> Value {
    json!({"id": "t", "runtime": "node", "packages": packages})
}

#[test]
fn a_complete_template_reads_back_typed() {
    let doc = json!({
        "id": "data-science",
        "name": "Data science",
        "description": "numpy and friends\n",
        "runtime": "python",
        "packages": [
            {"ecosystem": "pip", "name": "six", "version": "==1.16.0",
             "hashes": ["sha256:1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926"]},
        ],
        "env": {"MPLBACKEND": "Agg", "_X1": ""},
        "resources": {"cpu_cores": 2, "memory_mb": 1024.0, "pids": 64},
        "network": {"mode": "allow_list", "allow": ["pypi.org", "*.pythonhosted.org:443"]},
        "files": [
            {"path": "config/app.toml", "content": "a = 1\n"},
            {"path": ".env", "content": "AAEC/w==", "encoding": "base64", "mode": 384},
        ],
    });
    let spec = parse_new(&doc, &policy()).unwrap();
    assert_eq!(spec.id, "data-science");
    assert_eq!(spec.runtime, TemplateRuntime::Python);
    assert_eq!(spec.packages[0].version.as_deref(), Some("==1.16.0"));
    assert_eq!(spec.resources.cpu_cores, 2.0);
    assert_eq!(spec.resources.memory_mb, 1024);
    assert_eq!(
        spec.resources.disk_mb,
        Resources::default().disk_mb,
        "defaults fill the rest"
    );
    assert_eq!(spec.network.mode, NetworkMode::AllowList);
    assert_eq!(spec.files[1].bytes().unwrap(), vec![0, 1, 2, 255]);
    assert_eq!(spec.files[1].mode_or_default(), 0o600);
    assert_eq!(spec.files[0].mode_or_default(), 0o644);
    // The typed form validates as the request did.
    assert!(validate(&spec, &policy()).is_empty());
    // A minimal one: the name defaults to the id, everything else too.
    let spec = parse_new(&json!({"id": "sh", "runtime": "shell"}), &policy()).unwrap();
    assert_eq!(spec.name, "sh");
    assert_eq!(spec.network, NetworkPolicy::default());
    assert_eq!(spec.resources, Resources::default());
}

#[test]
fn a_missing_or_unknown_runtime_is_named() {
    let m = one(json!({"id": "t"}), "/runtime");
    assert!(m.contains("required") && m.contains("python, node, shell"), "{m}");
    let m = one(json!({"id": "t", "runtime": "ruby"}), "/runtime");
    assert!(m.contains("`ruby` is not a runtime"), "{m}");
    let m = one(json!({"id": "t", "runtime": "python3"}), "/runtime");
    assert!(m.contains("not a runtime"), "{m}");
    let m = one(json!({"id": "t", "runtime": 3}), "/runtime");
    assert!(m.contains("must be a string, not a number"), "{m}");
}

#[test]
fn shell_injection_in_package_names_is_refused() {
    for (name, hint) in [
        ("requests; rm -rf /", "`;` is not allowed"),
        ("six&&curl", "`&`"),
        ("$(reboot)", "`$`"),
        ("`id`", "a backtick"),
        ("six|sh", "`|`"),
        ("six\nevil", "\\u{a}"),
        ("-e", "must not start with `-`"),
        ("--index-url", "must not start with `-`"),
        ("six==1.0", "put the version specifier in `version`"),
        ("requests[socks]", "extras"),
        ("pkg @ https://evil.example/x.whl", "a URL"),
    ] {
        let m = one(
            python(json!([{"ecosystem": "pip", "name": name}])),
            "/packages/0/name",
        );
        assert!(m.contains(hint), "{name:?}: {m}");
    }
    for (name, hint) in [
        ("left-pad; rm -rf /", "`;` is not allowed"),
        ("$(id)", "`$`"),
        ("-g", "must not start with `-`"),
        ("Left-Pad", "lowercase"),
        ("@scope/", "not an npm name"),
        ("a@b", "not an npm name"),
        ("node_modules", "not a package name npm allows"),
    ] {
        let m = one(
            node(json!([{"ecosystem": "npm", "name": name}])),
            "/packages/0/name",
        );
        assert!(m.contains(hint), "{name:?}: {m}");
    }
}

#[test]
fn paths_and_dot_dot_in_package_names_are_refused() {
    for name in [
        "../etc/passwd",
        "/etc/passwd",
        "./local-pkg",
        "..",
        "a/../b",
        "C:\\x",
    ] {
        let m = one(
            python(json!([{"ecosystem": "pip", "name": name}])),
            "/packages/0/name",
        );
        assert!(
            m.contains("path") || m.contains("..") || m.contains("not allowed") || m.contains("start"),
            "{name:?}: {m}"
        );
    }
    for name in ["../x", "@scope/../x", "a..b", "./x", "/abs", ".hidden", "_under"] {
        let m = one(
            node(json!([{"ecosystem": "npm", "name": name}])),
            "/packages/0/name",
        );
        assert!(!m.is_empty(), "{name:?}");
    }
}

#[test]
fn urls_in_package_names_are_refused() {
    for name in [
        "https://evil.example/x.whl",
        "http://evil.example/simple/six",
        "git+https://github.com/x/y",
        "file:///tmp/x.whl",
    ] {
        let m = one(
            python(json!([{"ecosystem": "pip", "name": name}])),
            "/packages/0/name",
        );
        assert!(m.contains("URL"), "{name:?}: {m}");
    }
    for name in [
        "https://evil.example/x.tgz",
        "git+ssh://git@github.com/x/y.git",
        "github:user/repo",
        "file:../x",
        "npm:left-pad",
        "user/repo#main",
    ] {
        let m = one(
            node(json!([{"ecosystem": "npm", "name": name}])),
            "/packages/0/name",
        );
        assert!(
            m.contains("URL") || m.contains("spec") || m.contains("path"),
            "{name:?}: {m}"
        );
    }
}

#[test]
fn ten_thousand_packages_get_one_clear_problem() {
    let many: Vec<Value> = (0..10_000)
        .map(|i| json!({"ecosystem": "pip", "name": format!("pkg{i}")}))
        .collect();
    let m = one(python(Value::Array(many)), "/packages");
    assert_eq!(m, "10000 packages: at most 200 per template");
    // 200 is fine.
    let enough: Vec<Value> = (0..200)
        .map(|i| json!({"ecosystem": "pip", "name": format!("pkg{i}")}))
        .collect();
    assert!(parse_new(&python(Value::Array(enough)), &policy()).is_ok());
}

#[test]
fn hostile_version_specifiers_are_refused() {
    for v in [
        "==1.0; rm -rf /",
        "==1.0 --index-url http://evil",
        ">=1.0\nevil",
        "@ https://evil.example/x.whl",
        "===1.0",
        "1.0",
        "",
        "==1.0,,<2",
        "== 1.0",
        "==1.*.0",
        "<1.0.*",
        "~=1.0+local",
    ] {
        let ps = problems(python(json!([{"ecosystem": "pip", "name": "six", "version": v}])));
        assert_eq!(ps.len(), 1, "{v:?}: {ps:?}");
        assert_eq!(ps[0].0, "/packages/0/version", "{v:?}");
    }
    for v in [
        "file:../x",
        "git+https://github.com/x/y",
        "http://evil.example/x.tgz",
        "github:user/repo",
        "npm:other@1",
        "latest\nx",
        "1.0.0 || $(id)",
        "1.0.0  2.0.0",
        ">=1\t<2",
        "01.2.3",
        "",
        "LATEST",
    ] {
        let ps = problems(node(
            json!([{"ecosystem": "npm", "name": "left-pad", "version": v}]),
        ));
        assert_eq!(ps.len(), 1, "{v:?}: {ps:?}");
        assert_eq!(ps[0].0, "/packages/0/version", "{v:?}");
    }
}

#[test]
fn ordinary_version_specifiers_pass() {
    for v in [
        "==1.16.0",
        ">=2,<3",
        "~=1.4.2",
        "!=1.5.*",
        "==1.0+local.1",
        "==2!1.0",
        ">=1.0rc1",
        "==1.0.post1.dev2",
        "<3",
        "==1.*",
    ] {
        assert_eq!(check_pip_version(v), Ok(()), "{v}");
    }
    for v in [
        "^1.2.3",
        "~1.2",
        "1.x || 2.x",
        "1.x||2.x",
        ">=1.0.0 <2.0.0",
        "1.0.0 - 2.0.0",
        "latest",
        "next",
        "*",
        "1.2.3-beta.1+build.5",
        "=v1.2.3",
        "x",
    ] {
        assert_eq!(check_npm_version(v), Ok(()), "{v}");
    }
    assert!(pip_is_exact("==1.2.3") && pip_is_exact("==1.0+local"));
    assert!(!pip_is_exact("==1.*") && !pip_is_exact(">=1") && !pip_is_exact("==1,!=2"));
    assert!(npm_is_exact("1.2.3") && npm_is_exact("=1.2.3-rc.1") && npm_is_exact("v1.2.3"));
    assert!(
        !npm_is_exact("1.2") && !npm_is_exact("^1.2.3") && !npm_is_exact("1.2.x") && !npm_is_exact("latest")
    );
}

#[test]
fn hashes_are_checked_by_format_and_need_exact_versions() {
    let good = "sha256:1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926";
    for h in [
        "md5:0123",
        "sha256:XYZ",
        "sha256:1E61C37477A1626458E36F7B1D82AA5C9B094FA4802892072E49DE9C60C4C926",
        "sha512-abc",
    ] {
        let m = one(
            python(json!([{"ecosystem": "pip", "name": "six", "version": "==1.16.0", "hashes": [h]}])),
            "/packages/0/hashes/0",
        );
        assert!(!m.is_empty(), "{h}");
    }
    let m = one(
        python(json!([{"ecosystem": "pip", "name": "six", "version": ">=1", "hashes": [good]}])),
        "/packages/0/version",
    );
    assert!(m.contains("exact version"), "{m}");
    // pip's hash-checking mode is all or nothing.
    let m = one(
        python(json!([
            {"ecosystem": "pip", "name": "six", "version": "==1.16.0", "hashes": [good]},
            {"ecosystem": "pip", "name": "attrs"},
        ])),
        "/packages/1/hashes",
    );
    assert!(m.contains("hash-checking mode"), "{m}");
    let integrity = format!("sha512-{}==", "A".repeat(86));
    assert!(
        parse_new(
            &node(
                json!([{"ecosystem": "npm", "name": "left-pad", "version": "1.3.0", "hashes": [integrity]}])
            ),
            &policy()
        )
        .is_ok()
    );
    let m = one(
        node(
            json!([{"ecosystem": "npm", "name": "left-pad", "version": "1.3.0", "hashes": [integrity, integrity]}]),
        ),
        "/packages/0/hashes",
    );
    assert!(m.contains("at most 1"), "{m}");
}

#[test]
fn packages_must_be_the_runtimes_and_listed_once() {
    let m = one(
        python(json!([{"ecosystem": "npm", "name": "left-pad"}])),
        "/packages/0/ecosystem",
    );
    assert_eq!(
        m,
        "npm packages need the node runtime; this template's runtime is python"
    );
    let m = one(
        json!({"id": "t", "runtime": "shell", "packages": [{"ecosystem": "pip", "name": "six"}]}),
        "/packages",
    );
    assert!(m.contains("shell template has no packages"), "{m}");
    let m = one(
        python(json!([{"ecosystem": "pip", "name": "Six"}, {"ecosystem": "pip", "name": "six"}])),
        "/packages/1/name",
    );
    assert!(m.contains("listed already (/packages/0)"), "{m}");
    let m = one(
        python(json!([{"ecosystem": "conda", "name": "six"}])),
        "/packages/0/ecosystem",
    );
    assert!(m.contains("not an ecosystem"), "{m}");
    let m = one(python(json!([{"name": "six"}])), "/packages/0/ecosystem");
    assert!(m.contains("required"), "{m}");
    let m = one(
        python(json!([{"ecosystem": "pip", "name": "six", "url": "x"}])),
        "/packages/0/url",
    );
    assert!(m.contains("unknown field"), "{m}");
}

#[test]
fn reserved_and_malformed_environment_variables_are_refused() {
    for name in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
        "NODE_PATH",
        "NODE_OPTIONS",
        "PATH",
        "HOME",
        "WARDEN_TOKEN",
    ] {
        let m = one(
            json!({"id": "t", "runtime": "shell", "env": {name: "x"}}),
            &format!("/env/{name}"),
        );
        assert!(m.contains("set by the platform"), "{name}: {m}");
    }
    for name in ["1X", "A-B", "A B", "", "A=B"] {
        let ps = problems(json!({"id": "t", "runtime": "shell", "env": {name: "x"}}));
        assert_eq!(ps.len(), 1, "{name:?}: {ps:?}");
        assert_eq!(ps[0].0, format!("/env/{name}"));
    }
    let m = one(
        json!({"id": "t", "runtime": "shell", "env": {"A": "a\u{0}b"}}),
        "/env/A",
    );
    assert!(m.contains("NUL"), "{m}");
    let m = one(json!({"id": "t", "runtime": "shell", "env": {"A": 1}}), "/env/A");
    assert!(m.contains("must be a string"), "{m}");
    // A slash in a name is escaped as JSON pointers escape it.
    let ps = problems(json!({"id": "t", "runtime": "shell", "env": {"a/b~c": "x"}}));
    assert_eq!(ps[0].0, "/env/a~1b~0c");
}

#[test]
fn seed_file_paths_stay_in_the_workspace() {
    for (path, hint) in [
        ("../etc/passwd", "leave the workspace"),
        ("a/../../b", "leave the workspace"),
        ("/etc/passwd", "absolute"),
        ("a//b", "not normalized"),
        ("a/./b", "not normalized"),
        ("a/", "not normalized"),
        ("a\u{0}b", "control character"),
        ("a\\b", "`/`"),
        ("...", "dots only"),
        ("a b", "a space"),
        ("", "empty"),
    ] {
        let m = one(
            json!({"id": "t", "runtime": "shell", "files": [{"path": path, "content": ""}]}),
            "/files/0/path",
        );
        assert!(m.contains(hint), "{path:?}: {m}");
    }
    let m = one(
        json!({"id": "t", "runtime": "shell", "files": [
            {"path": "a", "content": ""}, {"path": "a/b", "content": ""}]}),
        "/files/1/path",
    );
    assert!(m.contains("folder of the other"), "{m}");
    let m = one(
        json!({"id": "t", "runtime": "shell", "files": [
            {"path": "a", "content": ""}, {"path": "a", "content": "x"}]}),
        "/files/1/path",
    );
    assert!(m.contains("listed already"), "{m}");
    let m = one(
        json!({"id": "t", "runtime": "shell", "files": [{"path": "x", "content": "not base64!", "encoding": "base64"}]}),
        "/files/0/content",
    );
    assert!(m.contains("base64"), "{m}");
    let m = one(
        json!({"id": "t", "runtime": "shell", "files": [{"path": "x", "content": "", "mode": 2541}]}),
        "/files/0/mode",
    );
    assert!(m.contains("from 0 to 511"), "{m}");
    // Six files of 192 KiB each are more than 1 MiB in all.
    let big = "x".repeat(caps::FILE_BYTES);
    let files: Vec<Value> = (0..6)
        .map(|i| json!({"path": format!("f{i}"), "content": big}))
        .collect();
    let m = one(json!({"id": "t", "runtime": "shell", "files": files}), "/files");
    assert!(m.contains("at most 1048576"), "{m}");
    let m = one(
        json!({"id": "t", "runtime": "shell", "files": [{"path": "f", "content": format!("{big}x")}]}),
        "/files/0/content",
    );
    assert!(m.contains("per file"), "{m}");
}

#[test]
fn allow_lists_name_hosts_and_only_hosts() {
    for (entry, hint) in [
        ("127.0.0.1", "IP address"),
        ("169.254.169.254", "IP address"),
        ("[::1]", "IP address"),
        ("::1", "IP address"),
        ("http://pypi.org", "not a URL"),
        ("pypi.org/simple", "not a URL"),
        ("*.*.example.com", "one leading `*.`"),
        ("ex*ample.com", "one leading `*.`"),
        ("localhost", "single-label"),
        ("*.com", "`*.` needs a domain"),
        ("PyPI.org", "lowercase"),
        ("pypi.org:0", "port"),
        ("pypi.org:65536", "port"),
        ("pypi.org:", "port"),
        ("-x.org", "label"),
        ("x.1", "top-level label"),
        ("pypi.org; curl x", "`;` is not allowed"),
    ] {
        let m = one(
            json!({"id": "t", "runtime": "shell", "network": {"mode": "allow_list", "allow": [entry]}}),
            "/network/allow/0",
        );
        assert!(m.contains(hint), "{entry:?}: {m}");
    }
    let m = one(
        json!({"id": "t", "runtime": "shell", "network": {"mode": "none", "allow": ["pypi.org"]}}),
        "/network/allow",
    );
    assert!(m.contains("must be empty"), "{m}");
    let m = one(
        json!({"id": "t", "runtime": "shell", "network": {"mode": "allow_list"}}),
        "/network/allow",
    );
    assert!(m.contains("at least one host"), "{m}");
    let m = one(
        json!({"id": "t", "runtime": "shell", "network": {"allow": []}}),
        "/network/mode",
    );
    assert!(m.contains("required"), "{m}");
    for ok in [
        "pypi.org",
        "files.pythonhosted.org:443",
        "*.example.com",
        "xn--p1ai.xn--p1ai",
        "a.b.c.d.e",
    ] {
        assert_eq!(check_allow_entry(ok), Ok(()), "{ok}");
    }
}

#[test]
fn resources_stay_within_the_servers_ceilings() {
    let m = one(
        json!({"id": "t", "runtime": "shell", "resources": {"memory_mb": 8192}}),
        "/resources/memory_mb",
    );
    assert!(m.contains("ceiling of 4096 (templates.max_memory_mb)"), "{m}");
    let m = one(
        json!({"id": "t", "runtime": "shell", "resources": {"memory_mb": 1_000_000_000}}),
        "/resources/memory_mb",
    );
    assert!(m.contains("out of range"), "{m}");
    let m = one(
        json!({"id": "t", "runtime": "shell", "resources": {"cpu_cores": 0.01}}),
        "/resources/cpu_cores",
    );
    assert!(m.contains("out of range"), "{m}");
    let m = one(
        json!({"id": "t", "runtime": "shell", "resources": {"pids": 10.5}}),
        "/resources/pids",
    );
    assert!(m.contains("not a whole number"), "{m}");
    let m = one(
        json!({"id": "t", "runtime": "shell", "resources": {"idle_timeout_secs": 7200, "max_lifetime_secs": 3600}}),
        "/resources/idle_timeout_secs",
    );
    assert!(m.contains("longer than max_lifetime_secs"), "{m}");
    let m = one(
        json!({"id": "t", "runtime": "shell", "resources": {"gpus": 1}}),
        "/resources/gpus",
    );
    assert!(m.contains("unknown field"), "{m}");
    let wide = TemplatePolicy {
        max: Resources {
            memory_mb: 8192,
            ..TemplatePolicy::default().max
        },
    };
    assert!(
        parse_new(
            &json!({"id": "t", "runtime": "shell", "resources": {"memory_mb": 8192}}),
            &wide
        )
        .is_ok()
    );
    assert!(TemplatePolicy::default().check().is_ok());
    let low = TemplatePolicy {
        max: Resources {
            memory_mb: 100,
            ..TemplatePolicy::default().max
        },
    };
    assert!(low.check().unwrap_err().contains("templates.max_memory_mb"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let ps = problems(json!({
        "id": "Bad Id",
        "name": " padded",
        "runtime": "python",
        "packages": [{"ecosystem": "pip", "name": "../x"}, {"ecosystem": "pip", "name": "ok", "version": "1"}],
        "env": {"LD_PRELOAD": "/x.so"},
        "resources": {"memory_mb": -1},
        "network": {"mode": "open"},
        "files": [{"path": "/etc/shadow", "content": ""}],
        "extra": true,
    }));
    let locations: Vec<&str> = ps.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        locations,
        [
            "/extra",
            "/id",
            "/name",
            "/packages/0/name",
            "/packages/1/version",
            "/env/LD_PRELOAD",
            "/resources/memory_mb",
            "/network/mode",
            "/files/0/path"
        ]
    );
    // Not an object at all.
    assert_eq!(
        one(json!([1]), "/"),
        "must be a template (a JSON object), not an array"
    );
}

#[test]
fn a_flood_of_problems_is_cut_and_counted() {
    let bad: Vec<Value> = (0..200)
        .map(|i| json!({"ecosystem": "pip", "name": format!("../{i}")}))
        .collect();
    let ps = problems(python(Value::Array(bad)));
    assert_eq!(ps.len(), caps::PROBLEMS + 1);
    assert_eq!(
        ps[caps::PROBLEMS].1,
        "100 more problems not listed (at most 100 are)"
    );
}

#[test]
fn a_replacement_carries_its_revision_and_no_id() {
    let body = json!({"runtime": "shell", "revision": 3});
    let (spec, revision) = parse_replacement("mine", &body, &policy()).unwrap();
    assert_eq!(
        (spec.id.as_str(), spec.name.as_str(), revision),
        ("mine", "mine", 3)
    );
    let ps = parse_replacement("mine", &json!({"runtime": "shell", "id": "other"}), &policy()).unwrap_err();
    let locations: Vec<&str> = ps.iter().map(|p| p.location.as_str()).collect();
    assert_eq!(locations, ["/id", "/revision"]);
    let ps = parse_replacement("mine", &json!({"runtime": "shell", "revision": 0}), &policy()).unwrap_err();
    assert_eq!(ps[0].location, "/revision");
}

#[test]
fn the_builtins_are_valid_and_minimal() {
    let specs = builtin::specs();
    let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["python-basic", "node-basic", "shell"]);
    for s in &specs {
        assert_eq!(validate(s, &policy()), vec![], "{}", s.id);
        assert!(s.packages.is_empty() && s.files.is_empty() && s.env.is_empty());
        assert_eq!(s.network.mode, NetworkMode::None);
    }
}

#[test]
fn hostile_text_in_messages_is_escaped_and_cut() {
    let name = format!("\u{202e}{}", "x".repeat(500));
    let m = one(
        python(json!([{"ecosystem": "pip", "name": name}])),
        "/packages/0/name",
    );
    assert!(!m.contains('\u{202e}'), "{m}");
    assert!(m.len() < 400, "{}", m.len());
    assert!(shown(&"y".repeat(100)).ends_with("…`"));
}
