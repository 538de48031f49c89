//! `warden template build` through the real binary against a real server
//! building from a folder of wheels (the air-gapped path): the build's log
//! and the layer's lock, exit 0; a package the folder lacks, exit 3 naming
//! it.

use std::io::Write;

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{Serve, client, req, warden};

fn wheel(dir: &std::path::Path, name: &str, version: &str) {
    let mut zip = zip::ZipWriter::new(
        std::fs::File::create(dir.join(format!("{name}-{version}-py3-none-any.whl"))).unwrap(),
    );
    let opts = zip::write::SimpleFileOptions::default();
    let info = format!("{name}-{version}.dist-info");
    for (p, body) in [
        (format!("{name}/__init__.py"), "VALUE = 42\n".to_owned()),
        (
            format!("{info}/METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
        ),
        (
            format!("{info}/WHEEL"),
            "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n".into(),
        ),
        (format!("{info}/RECORD"), String::new()),
    ] {
        zip.start_file(p, opts).unwrap();
        zip.write_all(body.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_build_follows_a_build_to_its_lock() {
    use std::os::unix::fs::PermissionsExt;
    let folder = tempfile::tempdir().unwrap();
    std::fs::set_permissions(folder.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    wheel(folder.path(), "answer", "1.0.0");
    let data = tempfile::tempdir().unwrap();
    let s = Serve::start(
        data.path(),
        &[("WARDEN_LAYERS_FOLDER", folder.path().to_str().unwrap())],
    );
    let admin = s.admin.clone().unwrap();
    let c = client();
    for (id, version) in [("answers", "==1.0.0"), ("broken", "==2.0.0")] {
        let (st, v) = req(
            &c,
            Method::POST,
            s.url("/v1/templates"),
            &admin,
            Some(json!({"id": id, "runtime": "python", "packages": [{"ecosystem": "pip", "name": "answer", "version": version}]})),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let run = |id: &str| {
        warden()
            .args(["template", "build", id, "--server", &s.base])
            .env("WARDEN_API_KEY", &admin)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = run("answers");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ready") && stdout.contains("answer 1.0.0"),
        "{stdout}"
    );
    assert!(
        stderr.contains("Successfully installed answer-1.0.0"),
        "the build's log: {stderr}"
    );
    let out = run("broken");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("package `answer`"), "{stderr}");
}
