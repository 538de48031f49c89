//! The plugin author's kit through the real binary: `warden plugin init`
//! for every runtime, `test`, `pack` (and its errors), `publish` to a real
//! server, and every sample in `examples/plugins/` published, approved,
//! installed and executed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Serve, req, warden};

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.env("NO_COLOR", "1").output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn plugin(args: &[&str], dir: &Path) -> (i32, String, String) {
    run(warden().arg("plugin").args(args).current_dir(dir))
}

fn examples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn init_makes_a_plugin_that_tests_and_packs_in_every_runtime() {
    let work = tempfile::tempdir().unwrap();
    for runtime in ["python", "node", "go", "shell", "rust"] {
        let name = format!("my-{runtime}");
        let (code, out, err) = plugin(&["init", &name, "--runtime", runtime], work.path());
        assert_eq!(code, 0, "{runtime}: {err}");
        assert_eq!(out.trim(), name, "the directory is the data on stdout");
        assert!(err.contains("hint: cd my-"), "{err}");
        let dir = work.path().join(&name);
        for f in ["manifest.json", "event.json", "README.md"] {
            assert!(dir.join(f).is_file(), "{runtime}: no {f}");
        }
        let (code, out, err) = plugin(&["test"], &dir);
        assert_eq!(code, 0, "{runtime}: {out}\n{err}");
        let value: Value =
            serde_json::from_str(&out).unwrap_or_else(|_| panic!("{runtime}: stdout is the value: {out}"));
        assert_eq!(value, json!({"message": "Hello, Ada!"}), "{runtime}");
        let (code, out, err) = plugin(&["test", "--json"], &dir);
        assert_eq!(code, 0, "{runtime}: {err}");
        let doc: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["passed"], true);
        assert_eq!(doc["result"]["status"], "success");
        let zip = work.path().join(format!("{name}.zip"));
        let (code, out, err) = plugin(&["pack", "--out", zip.to_str().unwrap()], &dir);
        assert_eq!(code, 0, "{runtime}: {err}");
        assert_eq!(out.trim(), zip.to_str().unwrap());
        let pkg = warden_package::open(&std::fs::read(&zip).unwrap(), &Default::default())
            .expect("the server accepts it");
        assert_eq!(pkg.manifest.code, format!("com.example.my_{runtime}"));
    }
}

#[test]
fn init_makes_an_api_plugin_that_packs_and_lists_its_tools() {
    let work = tempfile::tempdir().unwrap();
    let (code, out, err) = plugin(&["init", "notes", "--type", "api"], work.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "notes");
    let dir = work.path().join("notes");
    let zip = work.path().join("notes.zip");
    let (code, out, err) = plugin(&["pack", "--out", zip.to_str().unwrap()], &dir);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), zip.to_str().unwrap());
    assert!(err.contains("tool createNote POST /notes"), "{err}");
    assert!(err.contains("tool getNote GET /notes/{id}"), "{err}");
    let pkg = warden_package::open(&std::fs::read(&zip).unwrap(), &Default::default())
        .expect("the server accepts it");
    assert_eq!(pkg.api.unwrap().tools.len(), 2);
    // `test` has nothing to run: it says so and lists the tools.
    let (code, _, err) = plugin(&["test"], &dir);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("`plugin test` does not call them"), "{err}");
    // A runtime with an API plugin, or neither, is a usage error.
    let (code, _, err) = plugin(
        &["init", "x", "--type", "api", "--runtime", "python"],
        work.path(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("drop --runtime"), "{err}");
    // A document a server refuses is refused by `pack`, at its pointer.
    let doc = std::fs::read_to_string(dir.join("openapi.json"))
        .unwrap()
        .replace("https://api.example.com/v1", "https://169.254.169.254/v1");
    std::fs::write(dir.join("openapi.json"), doc).unwrap();
    let (code, _, err) = plugin(&["pack", "--out", zip.to_str().unwrap()], &dir);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("openapi.json#/servers/0/url"), "{err}");
}

#[test]
fn pack_and_test_report_problems_by_class() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("bad");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        r#"{"code": "Bad", "name": "", "version": "1", "type": "sandbox", "runtime": "python3", "entrypoint": "missing.py", "description": "d", "author": "a", "input_schema": {"type": "object"}, "output_schema": {"type": "objekt"}, "colour": "red"}"#,
    )
    .unwrap();
    let (code, _, err) = plugin(&["pack"], &dir);
    assert_eq!(code, 3, "validation errors exit 3: {err}");
    for expected in ["/code", "/name", "/version", "/colour", "/output_schema"] {
        assert!(err.contains(expected), "{expected} missing from:\n{err}");
    }
    // A handler that raises: exit 4 with the error's type and line.
    let (code, _, err) = plugin(&["init", "boom", "--runtime", "python"], work.path());
    assert_eq!(code, 0, "{err}");
    let boom = work.path().join("boom");
    std::fs::write(boom.join("main.py"), "def handler(event):\n    return 1 / 0\n").unwrap();
    let (code, _, err) = plugin(&["test"], &boom);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("ZeroDivisionError") && err.contains("main.py:2"),
        "{err}"
    );
    // An event that breaks the input schema: exit 3 naming the pointer.
    std::fs::write(boom.join("bad-event.json"), r#"{"name": 5}"#).unwrap();
    let (code, _, err) = plugin(&["test", "--event", "bad-event.json"], &boom);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("/name"), "{err}");
    // A return value that breaks the output schema: exit 4.
    std::fs::write(
        boom.join("main.py"),
        "def handler(event):\n    return {'msg': 1}\n",
    )
    .unwrap();
    let (code, _, err) = plugin(&["test"], &boom);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("output_schema"), "{err}");
    // Init refuses to overwrite.
    let (code, _, err) = plugin(&["init", "boom", "--runtime", "node"], work.path());
    assert_eq!(code, 2, "{err}");
}

#[test]
fn pack_never_packs_a_package_of_its_own_plugin() {
    let work = tempfile::tempdir().unwrap();
    let (code, _, err) = plugin(&["init", "twice", "--runtime", "python"], work.path());
    assert_eq!(code, 0, "{err}");
    let dir = work.path().join("twice");
    let files = |zip: &Path| -> Vec<String> {
        warden_package::open(&std::fs::read(zip).unwrap(), &Default::default())
            .expect("the server accepts it")
            .files
            .into_iter()
            .map(|f| f.path)
            .collect()
    };
    // The package goes to dist/, which is never packed: a second pack packs
    // exactly the same files.
    let (code, out, err) = plugin(&["pack"], &dir);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "./dist/com.example.twice-0.1.0.zip");
    let zip = dir.join(out.trim());
    let first = files(&zip);
    assert!(first.contains(&"main.py".to_owned()), "{first:?}");
    assert!(!first.iter().any(|f| f.ends_with(".zip")), "{first:?}");
    let (code, again, err) = plugin(&["pack"], &dir);
    assert_eq!((code, again.as_str()), (0, out.as_str()), "{err}");
    assert_eq!(files(&zip), first, "the second pack packed something else");
    // An output written elsewhere in the folder is left out too.
    let (code, _, err) = plugin(&["pack", "--out", "release.zip"], &dir);
    assert_eq!(code, 0, "{err}");
    assert_eq!(files(&dir.join("release.zip")), first);
    let (code, _, err) = plugin(&["pack"], &dir);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("left out release.zip: a package of this plugin"),
        "{err}"
    );
    assert_eq!(files(&zip), first);
    // So is every earlier version.
    let manifest_path = dir.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["version"] = json!("0.2.0");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let (code, out, err) = plugin(&["pack"], &dir);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "./dist/com.example.twice-0.2.0.zip");
    assert_eq!(files(&dir.join(out.trim())), first);
    // A package of another plugin is data like any other file.
    let (code, _, err) = plugin(&["init", "other", "--runtime", "shell"], work.path());
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = plugin(
        &["pack", "--out", dir.join("other.zip").to_str().unwrap()],
        &work.path().join("other"),
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = plugin(&["pack"], &dir);
    assert_eq!(code, 0, "{err}");
    let mut expected = first.clone();
    expected.push("other.zip".to_owned());
    expected.sort();
    assert_eq!(files(&dir.join(out.trim())), expected);
}

async fn api_key(s: &Serve, role: &str, name: &str) -> String {
    let c = super::client();
    let (st, k) = req(
        &c,
        Method::POST,
        s.url("/v1/keys"),
        s.admin.as_ref().unwrap(),
        Some(json!({"name": name, "role": role})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    k["secret"].as_str().unwrap().to_owned()
}

fn publish(dir: &Path, server: &str, key: &str, extra: &[&str]) -> (i32, String, String) {
    let mut cmd = warden();
    cmd.args(["plugin", "publish"])
        .arg(dir)
        .args(["--server", server])
        .args(extra)
        .env("WARDEN_API_KEY", key)
        .env("HOME", dir);
    run(&mut cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_uploads_submits_and_refuses_to_change_a_published_version() {
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[]);
    let dev = api_key(&s, "developer", "alice").await;
    let work = tempfile::tempdir().unwrap();
    let (code, _, err) = plugin(&["init", "greeter", "--runtime", "python"], work.path());
    assert_eq!(code, 0, "{err}");
    let dir = work.path().join("greeter");
    let (code, out, err) = publish(&dir, &s.base, &dev, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "com.example.greeter 0.1.0 draft");
    // A draft may be replaced; submitting moves it to review.
    let (code, out, err) = publish(&dir, &s.base, &dev, &["--submit"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "com.example.greeter 0.1.0 pending");
    assert!(err.contains("replaced the package"), "{err}");
    // Once in review, the same version cannot change: a clear error, exit 3.
    let (code, _, err) = publish(&dir, &s.base, &dev, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("already pending") && err.contains("bump `version`"),
        "{err}"
    );
    // A bad key and an unreachable server are network-class failures.
    let (code, _, err) = publish(&dir, &s.base, "wk_nope", &[]);
    assert_eq!(code, 5, "{err}");
    let (code, _, err) = publish(&dir, "http://127.0.0.1:1", &dev, &[]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    // No server or key: a usage error with a hint.
    let mut cmd = warden();
    cmd.args(["plugin", "publish"])
        .arg(&dir)
        .env_remove("WARDEN_SERVER")
        .env("HOME", work.path());
    let (code, _, err) = run(&mut cmd);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_is_published_approved_and_executed_through_the_server() {
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[]);
    let admin = s.admin.clone().unwrap();
    let dev = api_key(&s, "developer", "vendor").await;
    let c = super::client();
    let (st, _) = req(
        &c,
        Method::POST,
        s.url("/v1/apps"),
        &admin,
        Some(json!({"id": "samples"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let samples = examples();
    assert!(samples.len() >= 6, "{samples:?}");
    for dir in samples {
        let (code, out, err) = plugin(&["test", dir.to_str().unwrap()], &dir);
        assert_eq!(code, 0, "warden plugin test {}: {out}\n{err}", dir.display());
        let (code, out, err) = publish(&dir, &s.base, &dev, &["--submit", "--json"]);
        assert_eq!(code, 0, "{}: {err}", dir.display());
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "pending", "{}: {v}", dir.display());
        let (plugin, version) = (v["plugin"].as_str().unwrap(), v["version"].as_str().unwrap());
        let (st, a) = req(
            &c,
            Method::POST,
            s.url(&format!("/v1/plugins/{plugin}/versions/{version}/approve")),
            &admin,
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{a}");
        let (st, i) = req(
            &c,
            Method::POST,
            s.url("/v1/apps/samples/installations"),
            &admin,
            Some(json!({"plugin": plugin})),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{i}");
        let event: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("event.json")).unwrap()).unwrap();
        let (st, e) = req(
            &c,
            Method::POST,
            s.url(&format!("/v1/apps/samples/plugins/{plugin}/execute")),
            &admin,
            Some(event),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{e}");
        assert_eq!(e["status"], "success", "{}: {e}", dir.display());
        match plugin {
            "vendor.data.csv_to_json" => assert_eq!(e["return_value"]["row_count"], 2, "{e}"),
            _ => assert_eq!(
                e["return_value"]["message"],
                "Hello, Ada!",
                "{}: {e}",
                dir.display()
            ),
        }
    }
}

/// `init --runtime wasm` gives C that Debian's clang-14 builds into a WASI
/// module, and `test` runs it in the wasm tier as the server does: the
/// result, a refused import, a module that is not WebAssembly.
#[test]
fn init_makes_a_wasm_plugin_that_builds_with_clang_and_tests_in_the_wasm_tier() {
    let work = tempfile::tempdir().unwrap();
    let (code, _, err) = plugin(&["init", "my-wasm", "--runtime", "wasm"], work.path());
    assert_eq!(code, 0, "{err}");
    let dir = work.path().join("my-wasm");
    let (code, out, err) = run(Command::new("sh").arg(dir.join("build.sh")));
    assert_eq!(
        code, 0,
        "build.sh (needs clang-14 and wasi-libc: scripts/install-deps): {out}\n{err}"
    );
    let (code, out, err) = plugin(&["test"], &dir);
    assert_eq!(code, 0, "{out}\n{err}");
    let value: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("stdout is the value: {out}"));
    assert_eq!(value, json!({"message": "Hello, Ada!"}));

    // A module importing what the tier does not grant is refused by name.
    let c = "__attribute__((import_module(\"env\"), import_name(\"steal\"))) int steal(void);\nint main(void) { return steal(); }\n";
    std::fs::write(dir.join("main.c"), c).unwrap();
    let (code, out, err) = run(Command::new("sh").arg(dir.join("build.sh")));
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, _, err) = plugin(&["test"], &dir);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("env.steal"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_sign_and_publish_sign_lead_to_a_trusted_version() {
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(data.path(), &[]);
    let dev = api_key(&s, "developer", "alice").await;
    let work = tempfile::tempdir().unwrap();
    // A key pair; the secret half is the owner's only (0600).
    let (code, public, err) = plugin(&["keygen", "--out", "alice"], work.path());
    assert_eq!(code, 0, "{err}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(work.path().join("alice.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (code, _, err) = plugin(&["keygen", "--out", "alice"], work.path());
    assert_eq!(code, 2, "an existing key is never overwritten: {err}");
    let c = super::client();
    let (st, key) = req(
        &c,
        Method::POST,
        s.url("/v1/signing-keys"),
        &dev,
        Some(json!({"name": "alice", "public_key": public})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");

    // `sign` writes a signature the server accepts for that package.
    let (code, _, err) = plugin(&["init", "greeter", "--runtime", "python"], work.path());
    assert_eq!(code, 0, "{err}");
    let dir = work.path().join("greeter");
    let (code, out, err) = plugin(&["pack"], &dir);
    assert_eq!(code, 0, "{err}");
    let zip = dir.join(out.trim());
    let (code, _, err) = plugin(&["sign", zip.to_str().unwrap(), "--key", "../alice.key"], &dir);
    assert_eq!(code, 0, "{err}");
    let signature = std::fs::read_to_string(format!("{}.minisig", zip.display())).unwrap();
    assert!(err.contains(key["id"].as_str().unwrap()), "{err}");

    // `publish --sign` uploads, signs and submits; the admin approves it as trusted.
    let key_file = work.path().join("alice.key");
    let (code, out, err) = publish(
        &dir,
        &s.base,
        &dev,
        &["--sign", key_file.to_str().unwrap(), "--submit", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["signed_by"], key["id"], "{v}");
    let (st, sig_again) = req(
        &c,
        Method::GET,
        s.url("/v1/plugins/com.example.greeter/versions/0.1.0"),
        &dev,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(sig_again["package_sha256"], v["package_sha256"]);
    assert!(signature.starts_with("untrusted comment:"), "{signature}");
    let (st, approved) = req(
        &c,
        Method::POST,
        s.url("/v1/plugins/com.example.greeter/versions/0.1.0/approve"),
        s.admin.as_ref().unwrap(),
        Some(json!({"trust_level": "trusted"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{approved}");
    assert_eq!(approved["trust_level"], "trusted");

    // A key that is not registered: a clear refusal naming it, exit 3.
    let (code, _, err) = plugin(&["keygen", "--out", "stranger"], work.path());
    assert_eq!(code, 0, "{err}");
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    m["version"] = json!("0.2.0");
    std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap();
    let stranger = work.path().join("stranger.key");
    let (code, _, err) = publish(&dir, &s.base, &dev, &["--sign", stranger.to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not registered"), "{err}");
}
