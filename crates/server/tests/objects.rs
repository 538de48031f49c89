//! Object storage in a real S3-compatible server (`scripts/s3`, signatures
//! checked), shared by two nodes that also share one database: a package
//! uploaded on one node runs on the other, an artifact made on one is
//! downloaded from the other, a layer built on one is fetched by the other
//! instead of rebuilt, and collecting it removes its archive everywhere.
//! Nothing lands in either node's local blob folder. Wrong settings stop
//! the start with the setting named.

mod common;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use warden_server::{Config, StartError};

/// The test server's settings applied to `c` under a prefix of its own,
/// or a loud skip.
fn s3(prefix: &str) -> Option<impl Fn(&mut Config) + Clone> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("WARDEN_TEST_S3_ENDPOINT") else {
        assert!(
            var("WARDEN_REQUIRE_S3").is_none(),
            "WARDEN_REQUIRE_S3 is set but WARDEN_TEST_S3_ENDPOINT is not"
        );
        eprintln!(
            "\n*** SKIPPED: WARDEN_TEST_S3_ENDPOINT is not set; run `eval \"$(scripts/s3)\"` (scripts/test does) ***\n"
        );
        return None;
    };
    let url = format!(
        "s3://{}/{prefix}-{}",
        var("WARDEN_TEST_S3_BUCKET").unwrap_or_else(|| "warden".into()),
        std::process::id()
    );
    let (id, secret) = (var("WARDEN_TEST_S3_KEY_ID"), var("WARDEN_TEST_S3_SECRET"));
    Some(move |c: &mut Config| {
        c.objects.url = Some(url.clone());
        c.objects.endpoint = Some(endpoint.clone());
        c.objects.allow_http = true;
        c.objects.access_key_id = id.clone();
        c.objects.secret_access_key = secret.clone();
        c.objects.timeout_secs = 10;
    })
}

fn no_local_blobs(s: &common::Server) {
    let blobs = s.data.path().join("blobs");
    let n = std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        n,
        0,
        "{} holds blobs although object storage is configured",
        blobs.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_packages_artifacts_and_layers_through_s3() {
    let Some(objects) = s3("two-nodes") else { return };
    let folder = common::public_dir();
    common::wheel(folder.path(), "tinyhello", "1.0.0", "WORD = 'hi'\n");
    let dir = folder.path().to_owned();
    let o = objects.clone();
    let a = common::server_with(move |c| {
        o(c);
        c.layers.folder = Some(dir);
        c.layers.gc_unused_days = 0;
    })
    .await;
    let dir = folder.path().to_owned();
    let b = common::second_node(&a, move |c| {
        objects(c);
        c.layers.folder = Some(dir);
    })
    .await;

    // A package published on A runs on B, which never saw the upload.
    let dev = a.key("developer", "alice", None).await;
    let m = common::manifest("vendor.files.report", "1.0.0", "python3", "main.py");
    let code =
        "def handler(e):\n    open('out/report.txt', 'w').write('quarterly\\n')\n    return {'ok': True}\n";
    a.publish(&dev, common::package(&m, &[("main.py", code)]), "shop")
        .await;
    let (st, v, _) = b.execute(&a.admin, "shop", "vendor.files.report", "{}", "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["return_value"]["ok"], true, "{v}");
    // An artifact made on A is downloaded from B.
    let (st, v, _) = a.execute(&a.admin, "shop", "vendor.files.report", "{}", "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let url = v["artifacts"][0]["url"].as_str().unwrap().to_owned();
    let r = b
        .client
        .get(b.url(&url))
        .bearer_auth(&a.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"quarterly\n");

    // A layer built on A is fetched by B from its archive, not rebuilt.
    a.expect(
        Method::POST,
        "/v1/templates",
        &a.admin,
        Some(json!({"id": "hello", "runtime": "python",
            "packages": [{"ecosystem": "pip", "name": "tinyhello"}]})),
        StatusCode::CREATED,
    )
    .await;
    let v = a
        .expect(
            Method::POST,
            "/v1/templates/hello/build",
            &a.admin,
            None,
            StatusCode::ACCEPTED,
        )
        .await;
    let layer = v["layer"]["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(180);
    let built = loop {
        let l = a
            .expect(
                Method::GET,
                &format!("/v1/layers/{layer}"),
                &a.admin,
                None,
                StatusCode::OK,
            )
            .await;
        // Ready, and the template pointed at it (the step after).
        if l["status"] == "ready" && b.state.store_template("hello").await.layer.as_deref() == Some(&layer) {
            break l;
        }
        assert_ne!(l["status"], "failed", "{l}");
        assert!(Instant::now() < deadline, "the build did not end: {l}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let a_port = a.base.rsplit(':').next().unwrap().to_owned();
    assert!(
        built["node"].as_str().unwrap().ends_with(&format!(":{a_port}")),
        "{built}"
    );
    let template = b.state.store_template("hello").await;
    let mount = b
        .state
        .builds
        .mount_for(&template)
        .await
        .unwrap()
        .expect("a ready layer");
    assert!(mount.dir.starts_with(b.data.path()), "{}", mount.dir.display());
    let module = mount.dir.join("python/tinyhello/__init__.py");
    assert_eq!(std::fs::read_to_string(&module).unwrap(), "WORD = 'hi'\n");
    // Still one build: B's record of the layer is A's.
    let l = b
        .expect(
            Method::GET,
            &format!("/v1/layers/{layer}"),
            &a.admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        (&l["node"], &l["built_at"]),
        (&built["node"], &built["built_at"]),
        "{l}"
    );

    // Collected once no template uses it: the record, A's copy and the
    // archive go; B's copy goes at B's next collection.
    a.expect(
        Method::DELETE,
        "/v1/templates/hello",
        &a.admin,
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert!(a.state.builds.collect_garbage().await.unwrap() >= 1);
    assert!(!a.state.builds.layer_dir(&layer).exists());
    let archives = a.state.blobs.list("layers").await.unwrap();
    assert!(archives.is_empty(), "{archives:?}");
    b.state.builds.collect_garbage().await.unwrap();
    assert!(!mount.dir.exists(), "B kept a collected layer");

    no_local_blobs(&a);
    no_local_blobs(&b);
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

async fn start_error(tune: impl FnOnce(&mut Config)) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.path().to_owned(),
        ..Config::default()
    };
    tune(&mut c);
    match warden_server::start(c, "objects-test".into()).await {
        Ok(_) => panic!("the server started with wrong object storage settings"),
        Err(StartError::Objects(e)) => e.setting.to_owned(),
        Err(e) => panic!("another start error: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_settings_stop_the_start_naming_the_setting() {
    common::require_root();
    let Some(objects) = s3("wrong") else { return };
    let o = objects.clone();
    let setting = start_error(move |c| {
        o(c);
        c.objects.secret_access_key = Some("not-the-secret".into());
    })
    .await;
    assert_eq!(setting, "objects.secret_access_key");
    let o = objects.clone();
    let setting = start_error(move |c| {
        o(c);
        c.objects.url = Some("s3://no-such-bucket-here".into());
    })
    .await;
    assert_eq!(setting, "objects.url");
    let setting = start_error(move |c| {
        objects(c);
        c.objects.allow_http = false;
    })
    .await;
    assert_eq!(setting, "objects.allow_http");
}

/// The template record, for calling the builds manager directly.
trait TemplateOf {
    async fn store_template(&self, id: &str) -> warden_core::Template;
}

impl TemplateOf for warden_server::AppState {
    async fn store_template(&self, id: &str) -> warden_core::Template {
        use warden_core::Store as _;
        self.store.get_template(id).await.unwrap().expect("the template")
    }
}
