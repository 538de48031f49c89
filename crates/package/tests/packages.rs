//! Golden manifests (every error message asserted) and whole packages.

use std::path::Path;

use warden_package::build::ZipBuilder;
use warden_package::{DenyRule, Ecosystem, Policy, Severity, manifest, open};

/// Each `tests/golden/X.json` must produce exactly the problems listed in
/// `X.expected` (one `location: message` per line), or `ok`.
#[test]
fn golden_manifests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
        let got = match manifest::parse(&std::fs::read(&path).unwrap(), &Default::default()) {
            Ok(_) => "ok\n".to_owned(),
            Err(problems) => problems.iter().map(|p| format!("{p}\n")).collect(),
        };
        assert_eq!(got, expected, "{}", path.display());
        checked += 1;
    }
    assert!(checked >= 6, "golden files missing");
}

const MANIFEST: &str = r#"{
  "code": "vendor.greeting.say_hello", "name": "Say hello", "version": "1.0.0",
  "type": "sandbox", "runtime": "python3", "entrypoint": "main.py",
  "description": "Greets.", "author": "Vendor",
  "input_schema": {"type": "object"}, "output_schema": {"type": "object"}
}"#;

fn with(manifest: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = ZipBuilder::new().file("manifest.json", manifest.as_bytes());
    for (name, text) in files {
        b = b.file(name, text.as_bytes());
    }
    b.finish()
}

fn problems(zip: &[u8]) -> Vec<String> {
    open(zip, &Policy::default())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_good_package_has_a_hash_and_a_canonical_file_list() {
    let zip = with(
        MANIFEST,
        &[
            ("main.py", "def handler(e):\n    return e\n"),
            ("lib/util.py", "X = 1\n"),
        ],
    );
    let p = open(&zip, &Policy::default()).unwrap();
    assert_eq!(p.manifest.code, "vendor.greeting.say_hello");
    assert_eq!(p.manifest.handler, "handler", "the default handler name");
    let listed: Vec<(&str, u64)> = p.files.iter().map(|f| (f.path.as_str(), f.size)).collect();
    assert_eq!(
        listed,
        [
            ("lib/util.py", 6),
            ("main.py", 29),
            ("manifest.json", MANIFEST.len() as u64)
        ]
    );
    assert_eq!(p.sha256.len(), 64);
    // The same files give the same bytes, hence the same hash.
    assert_eq!(
        open(
            &with(
                MANIFEST,
                &[
                    ("main.py", "def handler(e):\n    return e\n"),
                    ("lib/util.py", "X = 1\n")
                ]
            ),
            &Policy::default()
        )
        .unwrap()
        .sha256,
        p.sha256
    );
}

#[test]
fn entrypoints_must_exist_and_fit_the_runtime() {
    assert_eq!(
        problems(&ZipBuilder::new().file("main.py", b"").finish()),
        ["archive:manifest.json: missing: every package needs manifest.json at its root"]
    );
    assert_eq!(
        problems(&with(MANIFEST, &[])),
        ["/entrypoint: `main.py` is not in the package"]
    );
    let m = MANIFEST.replace("\"main.py\"", "\"main.js\"");
    assert_eq!(
        problems(&with(&m, &[("main.js", "")])),
        ["/entrypoint: `main.js` does not look like a python3 file (expected .py)"]
    );
    let m = MANIFEST.replace("python3", "native").replace("main.py", "plugin");
    assert_eq!(
        problems(&with(&m, &[("plugin", "\x7fELF")])),
        ["/entrypoint: `plugin` must be executable (mode 0755) for a native plugin"]
    );
    let ok = ZipBuilder::new()
        .file("manifest.json", m.as_bytes())
        .file_mode("plugin", b"\x7fELF", 0o755)
        .finish();
    assert!(open(&ok, &Policy::default()).is_ok());
    let m = MANIFEST.replace("python3", "go").replace("main.py", ".");
    assert_eq!(
        problems(&with(&m, &[("README.md", "")])),
        [
            "/entrypoint: no .go files in `.`",
            "archive:go.mod: missing: Go plugins need go.mod at the package root (dependencies vendored)"
        ]
    );
    assert!(
        open(
            &with(&m, &[("go.mod", "module x\n"), ("main.go", "package main\n")]),
            &Policy::default()
        )
        .is_ok()
    );
    let m = MANIFEST.replace("main.py", "../main.py");
    assert_eq!(
        problems(&with(&m, &[("main.py", "")])),
        ["/entrypoint: `../main.py` must be a path inside the package"]
    );
}

#[test]
fn archive_and_manifest_problems_are_reported_together_per_stage() {
    // Archive problems stop before the manifest is read.
    let zip = ZipBuilder::new()
        .file("manifest.json", b"{")
        .symlink("evil", "/etc/shadow")
        .finish();
    assert_eq!(problems(&zip), ["archive:evil: symlinks are not allowed"]);
    // Manifest problems are all reported at once.
    let m = MANIFEST
        .replace("\"1.0.0\"", "\"one\"")
        .replace("python3", "perl");
    let got = problems(&with(&m, &[("main.py", "")]));
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().any(|p| p.starts_with("/runtime:")));
    assert!(
        got.iter()
            .any(|p| p == "/version: `one` is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0)")
    );
}

#[test]
fn the_report_flags_permissions_findings_and_denied_dependencies() {
    let m = MANIFEST.replace(
        "\"output_schema\"",
        "\"limits\": {\"memory_mb\": 512, \"timeout_ms\": 20000}, \"output_schema\"",
    );
    let zip = with(
        &m,
        &[
            (
                "main.py",
                "import subprocess\nimport ctypes\n\ndef handler(e):\n    return e\n",
            ),
            ("requirements.txt", "requests==2.0.0\n"),
            ("vendor/lib.py", "import socket\n"),
        ],
    );
    let policy = Policy {
        deny: vec![DenyRule {
            ecosystem: Ecosystem::Pypi,
            name: "requests".into(),
            versions: "<2.31.0".into(),
            reason: "CVE-2023-32681".into(),
        }],
        ..Policy::default()
    };
    let pkg = open(&zip, &policy).unwrap();
    let previous = open(&with(MANIFEST, &[("main.py", "")]), &policy)
        .unwrap()
        .manifest;
    let report = pkg.analyze(Some(&previous), &policy);
    let changes: Vec<(&str, &str, &str)> = report
        .permission_changes
        .iter()
        .map(|c| (c.field.as_str(), c.from.as_str(), c.to.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            ("limits.timeout_ms", "10000", "20000"),
            ("limits.memory_mb", "256", "512")
        ]
    );
    let found: Vec<(&str, Severity, &str, u32)> = report
        .findings
        .iter()
        .map(|f| (f.rule.as_str(), f.severity, f.file.as_str(), f.line))
        .collect();
    assert_eq!(
        found,
        [
            ("PY-CTYPES", Severity::Critical, "main.py", 2),
            ("DEP-DENIED", Severity::Critical, "requirements.txt", 1),
            ("PY-SUBPROCESS", Severity::Warning, "main.py", 1),
        ],
        "vendored code is not analyzed line by line"
    );
    assert!(report.has_critical);
    assert_eq!((report.summary.critical, report.summary.warning), (2, 1));
    // The first version has nothing to compare with.
    assert!(pkg.analyze(None, &policy).permission_changes.is_empty());
    // The report serializes with the permission changes first.
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.starts_with("{\"permission_changes\""), "{json}");
}

#[test]
fn a_file_that_poses_as_another_is_refused_at_upload() {
    // A reviewer's list would show `main.py` twice and `helpertxt.py`.
    let zip = with(
        MANIFEST,
        &[
            ("main.py", "def handler(e):\n    return e\n"),
            ("main\u{200b}.py", "import os\n"),
            ("helper\u{202e}yp.txt", "import socket\n"),
        ],
    );
    let got = problems(&zip);
    assert_eq!(
        got,
        [
            "archive:main\\u{200b}.py: the name contains U+200B, an invisible character (one name can pose as another)",
            "archive:helper\\u{202e}yp.txt: the name contains U+202E, a bidirectional control (it reorders how the name is shown, so a file can pose as another)",
        ]
    );
}

#[test]
fn wasm_packages_carry_a_webassembly_module() {
    let manifest = MANIFEST
        .replace("\"python3\"", "\"wasm\"")
        .replace("main.py", "plugin.wasm");
    let module = "\0asm\x01\0\0\0";
    assert!(open(&with(&manifest, &[("plugin.wasm", module)]), &Policy::default()).is_ok());
    assert_eq!(
        problems(&with(&manifest, &[("plugin.wasm", "#!/bin/sh\necho hi\n")])),
        [
            "/entrypoint: `plugin.wasm` is not a WebAssembly module (it does not start with the `\\0asm` magic)"
        ]
    );
    let named = manifest.replace("plugin.wasm", "plugin.bin");
    assert_eq!(
        problems(&with(&named, &[("plugin.bin", module)])),
        ["/entrypoint: `plugin.bin` does not look like a wasm file (expected .wasm)"]
    );
    let builtin = MANIFEST.replace("\"python3\"", "\"builtin\"");
    assert!(
        problems(&with(&builtin, &[("main.py", "")]))
            .iter()
            .any(|p| p.starts_with("/runtime: `builtin` is not a runtime")),
        "an upload may not claim the built-in runtime"
    );
}

#[test]
fn each_newly_declared_host_comes_first_in_the_permission_changes() {
    let declaring = |hosts: &str, extra: &str| {
        MANIFEST.replace(
            "\"output_schema\"",
            &format!("\"permissions\": {{\"network\": {hosts}}}, {extra}\"output_schema\""),
        )
    };
    let policy = Policy::default();
    let old = open(
        &with(&declaring("[\"api.github.com\"]", ""), &[("main.py", "")]),
        &policy,
    )
    .unwrap();
    assert_eq!(old.manifest.permissions.network, ["api.github.com"]);
    let new = open(
        &with(
            &declaring(
                "[\"api.github.com\", \"*.s3.example.net\", \"uploads.example.org:8443\"]",
                "\"limits\": {\"memory_mb\": 512}, ",
            ),
            &[("main.py", "")],
        ),
        &policy,
    )
    .unwrap();
    let report = new.analyze(Some(&old.manifest), &policy);
    let changes: Vec<(&str, &str, &str)> = report
        .permission_changes
        .iter()
        .map(|c| (c.field.as_str(), c.from.as_str(), c.to.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            ("permissions.network", "", "*.s3.example.net"),
            ("permissions.network", "", "uploads.example.org:8443"),
            ("limits.memory_mb", "256", "512"),
        ]
    );
    // Dropping hosts asks for nothing new.
    assert!(
        old.analyze(Some(&new.manifest), &policy)
            .permission_changes
            .is_empty()
    );
    // `false` (the old form) is no network, and a manifest that said it
    // still reads.
    let none = open(&with(&declaring("false", ""), &[("main.py", "")]), &policy).unwrap();
    assert!(none.manifest.permissions.network.is_empty());
    let stored: warden_package::Manifest = serde_json::from_str(
        &declaring("false", "").replace("\"output_schema\"", "\"handler\": \"handler\", \"output_schema\""),
    )
    .unwrap();
    assert!(stored.permissions.network.is_empty());
}

#[test]
fn ip_literals_are_declared_only_where_the_operator_allows_them() {
    let m = MANIFEST.replace(
        "\"output_schema\"",
        "\"permissions\": {\"network\": [\"127.0.0.1:8080\"]}, \"output_schema\"",
    );
    let zip = with(&m, &[("main.py", "")]);
    let refused = problems(&zip);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].starts_with("/permissions/network/0: an IP address")
            && refused[0].contains("policy.network_ip_literals"),
        "{refused:?}"
    );
    let mut policy = Policy::default();
    policy.platform.network_ip_literals = true;
    let pkg = open(&zip, &policy).unwrap();
    assert_eq!(pkg.manifest.permissions.network, ["127.0.0.1:8080"]);
}

#[test]
fn declared_credentials_are_named_once_need_hosts_and_come_first_when_new() {
    let with_perms = |perms: &str| {
        MANIFEST.replace(
            "\"output_schema\"",
            &format!("\"permissions\": {perms}, \"output_schema\""),
        )
    };
    let policy = Policy::default();
    let got = problems(&with(
        &with_perms(r#"{"credentials": ["GitHub", "ok", "ok"]}"#),
        &[("main.py", "")],
    ));
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got[0].starts_with("/permissions/credentials: a credential is sent only to hosts"),
        "{got:?}"
    );
    assert!(got[1].starts_with("/permissions/credentials/0:"), "{got:?}");
    assert!(
        got[2].starts_with("/permissions/credentials/2: `ok` is listed twice"),
        "{got:?}"
    );
    let old = open(
        &with(
            &with_perms(r#"{"network": ["api.github.com"]}"#),
            &[("main.py", "")],
        ),
        &policy,
    )
    .unwrap();
    let new = open(
        &with(
            &with_perms(r#"{"network": ["api.github.com"], "credentials": ["github"]}"#),
            &[("main.py", "")],
        ),
        &policy,
    )
    .unwrap();
    assert_eq!(new.manifest.permissions.credentials, ["github"]);
    let changes = new.analyze(Some(&old.manifest), &policy).permission_changes;
    assert_eq!(
        (
            changes[0].field.as_str(),
            changes[0].from.as_str(),
            changes[0].to.as_str()
        ),
        ("permissions.credentials", "", "github")
    );
}

const API_MANIFEST: &str = r#"{
  "code": "vendor.pets.api", "name": "Pets", "version": "1.0.0", "type": "api",
  "description": "Pets.", "author": "Vendor"
}"#;

fn pets_document(server: &str, ops: &[(&str, &str)]) -> String {
    let paths: serde_json::Map<String, serde_json::Value> = ops
        .iter()
        .map(|(id, path)| {
            (
                (*path).to_owned(),
                serde_json::json!({"get": {"operationId": id, "responses": {"200": {"description": "ok"}}}}),
            )
        })
        .collect();
    serde_json::json!({
        "openapi": "3.1.0", "info": {"title": "Pets", "version": "1"},
        "servers": [{"url": server}], "paths": paths
    })
    .to_string()
}

#[test]
fn an_api_package_is_its_manifest_and_document_and_yields_its_tools() {
    let doc = pets_document("https://api.pets.example/v1", &[("listPets", "/pets")]);
    let pkg = open(&with(API_MANIFEST, &[("openapi.json", &doc)]), &Policy::default()).unwrap();
    assert_eq!(pkg.manifest.runtime, manifest::API_RUNTIME);
    assert_eq!(pkg.manifest.entrypoint, "openapi.json");
    let api = pkg.api.as_ref().unwrap();
    assert_eq!(api.hosts, ["api.pets.example"]);
    assert_eq!(api.tools[0].name, "listPets");
    // What the registry stores reads back as the same tools.
    let stored = serde_json::to_value(api).unwrap();
    assert_eq!(
        &serde_json::from_value::<warden_package::openapi::ApiSpec>(stored).unwrap(),
        api
    );
    // Code, a second document, or none at all are refused by path.
    assert_eq!(
        problems(&with(
            API_MANIFEST,
            &[("openapi.json", &doc), ("main.py", "import os\n")]
        )),
        [
            "archive:main.py: an API plugin holds manifest.json, its OpenAPI document and at most README.md, LICENSE, CHANGELOG.md (no code)"
        ]
    );
    assert_eq!(
        problems(&with(
            API_MANIFEST,
            &[("openapi.json", &doc), ("schema.yaml", "openapi: 3.0.0\n")]
        )),
        ["archive:schema.yaml: a second OpenAPI document: an API plugin has one"]
    );
    assert_eq!(
        problems(&with(API_MANIFEST, &[])),
        [
            "archive:openapi.json: missing: an API plugin needs its OpenAPI document at the package root (openapi.json, openapi.yaml, schema.yaml)"
        ]
    );
    // A document's problems name the file and the pointer.
    let bad = pets_document("https://169.254.169.254", &[("listPets", "/pets")]);
    let p = problems(&with(API_MANIFEST, &[("openapi.json", &bad)]));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("openapi.json#/servers/0/url: "), "{p:?}");
}

#[test]
fn an_api_version_shows_new_hosts_and_tools_as_permission_changes() {
    let policy = Policy::default();
    let old_doc = pets_document("https://api.pets.example", &[("listPets", "/pets")]);
    let old = open(&with(API_MANIFEST, &[("openapi.json", &old_doc)]), &policy).unwrap();
    let new_manifest = API_MANIFEST.replace("1.0.0", "1.1.0");
    let new_doc = pets_document(
        "https://api2.pets.example",
        &[("listPets", "/animals"), ("getPet", "/pets/x")],
    );
    let new = open(&with(&new_manifest, &[("openapi.json", &new_doc)]), &policy).unwrap();
    let changes: Vec<(String, String, String)> = new
        .analyze_since(Some((&old.manifest, old.api.as_ref())), &policy)
        .permission_changes
        .into_iter()
        .map(|c| (c.field, c.from, c.to))
        .collect();
    assert_eq!(
        changes,
        [
            (
                "permissions.network".into(),
                String::new(),
                "api2.pets.example".into()
            ),
            (
                "api.tools".into(),
                "listPets GET /pets".into(),
                "listPets GET /animals".into()
            ),
            ("api.tools".into(), String::new(), "getPet GET /pets/x".into()),
        ]
    );
}
