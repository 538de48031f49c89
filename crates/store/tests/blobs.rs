//! Blobs behave the same in a local folder and in a real S3-compatible
//! server (the one `scripts/s3` starts, with signatures checked): put, get,
//! stamps, streamed files in parts, listing, deletion; and a wrong key or a
//! missing bucket is named at the probe.

use std::time::Duration;

use warden_core::Blobs;
use warden_store::{ObjectBlobs, S3Options};

/// The test server's settings, or a loud skip.
fn s3_options() -> Option<S3Options> {
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
    Some(S3Options {
        url: format!(
            "s3://{}/store-tests-{}",
            var("WARDEN_TEST_S3_BUCKET").unwrap_or_else(|| "warden".into()),
            std::process::id()
        ),
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        access_key_id: var("WARDEN_TEST_S3_KEY_ID"),
        secret_access_key: var("WARDEN_TEST_S3_SECRET"),
        allow_http: true,
        virtual_hosted: false,
        timeout: Duration::from_secs(10),
        retries: 1,
    })
}

async fn conformance(blobs: ObjectBlobs) {
    assert_eq!(blobs.get("packages/none.zip").await.unwrap(), None);
    assert_eq!(blobs.stamp("packages/none.zip").await.unwrap(), None);
    blobs.put("packages/a.zip", b"first".to_vec()).await.unwrap();
    assert_eq!(
        blobs.get("packages/a.zip").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    let s1 = blobs.stamp("packages/a.zip").await.unwrap().expect("a stamp");
    blobs.put("packages/a.zip", b"second!".to_vec()).await.unwrap();
    let s2 = blobs.stamp("packages/a.zip").await.unwrap().expect("a stamp");
    assert_ne!(s1, s2, "a rewritten blob changes its stamp");

    // A file larger than one part (8 MiB) goes up in parts and comes back
    // byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big");
    let body: Vec<u8> = (0..(20u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &body).unwrap();
    assert_eq!(
        blobs.put_file("snapshots/big.tar", &src).await.unwrap(),
        body.len() as u64
    );
    let back = dir.path().join("back");
    assert!(blobs.get_to_file("snapshots/big.tar", &back).await.unwrap());
    assert!(
        std::fs::read(&back).unwrap() == body,
        "the streamed blob came back changed"
    );
    // An existing file is never overwritten by a download.
    assert!(blobs.get_to_file("snapshots/big.tar", &back).await.is_err());
    assert!(
        !blobs
            .get_to_file("snapshots/none", &dir.path().join("none"))
            .await
            .unwrap()
    );
    assert!(!dir.path().join("none").exists());

    let mut listed = blobs.list("snapshots").await.unwrap();
    listed.sort();
    assert_eq!(listed, vec![("snapshots/big.tar".to_owned(), body.len() as u64)]);
    blobs.delete("snapshots/big.tar").await.unwrap();
    blobs.delete("snapshots/big.tar").await.unwrap();
    assert!(blobs.list("snapshots").await.unwrap().is_empty());
    assert_eq!(blobs.get("snapshots/big.tar").await.unwrap(), None);
    blobs.delete("packages/a.zip").await.unwrap();
}

#[tokio::test]
async fn a_local_folder_holds_blobs() {
    let dir = tempfile::tempdir().unwrap();
    conformance(ObjectBlobs::local(dir.path()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_compatible_server_holds_blobs() {
    let Some(o) = s3_options() else { return };
    let blobs = ObjectBlobs::s3(&o).unwrap();
    blobs
        .probe()
        .await
        .expect("the probe passes with the right settings");
    conformance(blobs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_settings_are_named_at_the_probe() {
    let Some(o) = s3_options() else { return };
    let e = ObjectBlobs::s3(&S3Options {
        secret_access_key: Some("not-the-secret".into()),
        ..o.clone()
    })
    .unwrap()
    .probe()
    .await
    .unwrap_err();
    assert_eq!(e.setting, "objects.secret_access_key", "{e}");

    let e = ObjectBlobs::s3(&S3Options {
        url: "s3://no-such-bucket-here".into(),
        ..o.clone()
    })
    .unwrap()
    .probe()
    .await
    .unwrap_err();
    assert_eq!(e.setting, "objects.url", "{e}");

    // A service that does not answer: the endpoint is named, within the
    // timeout rather than forever.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = ObjectBlobs::s3(&S3Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        timeout: Duration::from_secs(2),
        retries: 0,
        ..o.clone()
    })
    .unwrap()
    .probe()
    .await
    .unwrap_err();
    assert_eq!(e.setting, "objects.endpoint", "{e}");

    // Plain HTTP must be asked for.
    let e = ObjectBlobs::s3(&S3Options {
        allow_http: false,
        ..o.clone()
    })
    .err()
    .expect("plain HTTP refused");
    assert_eq!(e.setting, "objects.allow_http");
    // Half a key pair.
    let e = ObjectBlobs::s3(&S3Options {
        secret_access_key: None,
        ..o
    })
    .err()
    .expect("half a key refused");
    assert_eq!(e.setting, "objects.secret_access_key");
}
