//! Package blobs, artifacts, layers and snapshots in an `object_store`: a
//! local folder by default, or an S3-compatible service shared by every
//! node.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use object_store::{ObjectStore, ObjectStoreExt as _};
use tokio::io::AsyncWriteExt as _;
use warden_core::{Blobs, StoreError};

type R<T> = std::result::Result<T, StoreError>;

/// Package blobs in an `object_store` (a local folder by default).
#[derive(Clone)]
pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    /// The folder, for a local store (its stamps include the change time,
    /// which no one can set back).
    local: Option<std::path::PathBuf>,
}

impl ObjectBlobs {
    /// Blobs in the folder `dir` (created when missing).
    pub fn local(dir: &Path) -> R<ObjectBlobs> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| StoreError::Backend(format!("blob folder {}: {e}", dir.display())))?;
        Ok(ObjectBlobs {
            store: Arc::new(fs),
            local: Some(dir.to_owned()),
        })
    }

    /// Blobs in any object store (S3, memory, …).
    pub fn new(store: Arc<dyn ObjectStore>) -> ObjectBlobs {
        ObjectBlobs { store, local: None }
    }

    /// Blobs in an S3-compatible bucket. Nothing is contacted yet: call
    /// [`ObjectBlobs::probe`] to find out whether the settings work.
    pub fn s3(o: &S3Options) -> Result<ObjectBlobs, S3Error> {
        // The HTTP client's TLS needs a process-wide provider; the first
        // one installed wins, and it is the same one everywhere here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (bucket, prefix) = parse_s3_url(&o.url)?;
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&o.region)
            .with_virtual_hosted_style_request(o.virtual_hosted)
            .with_retry(object_store::RetryConfig {
                max_retries: o.retries,
                retry_timeout: o.timeout,
                ..Default::default()
            })
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_timeout(o.timeout)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_allow_http(o.allow_http),
            );
        if let Some(e) = &o.endpoint {
            if e.starts_with("http://") && !o.allow_http {
                return Err(S3Error {
                    setting: "objects.allow_http",
                    message: format!(
                        "the endpoint {e} is plain HTTP; set objects.allow_http = true to use it"
                    ),
                });
            }
            b = b.with_endpoint(e);
        }
        match (&o.access_key_id, &o.secret_access_key) {
            (Some(id), Some(secret)) => {
                b = b.with_access_key_id(id).with_secret_access_key(secret);
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(S3Error {
                    setting: "objects.secret_access_key",
                    message: "is missing while objects.access_key_id is set".into(),
                });
            }
            (None, Some(_)) => {
                return Err(S3Error {
                    setting: "objects.access_key_id",
                    message: "is missing while objects.secret_access_key is set".into(),
                });
            }
        }
        let s3 = b.build().map_err(|e| S3Error {
            setting: "objects.url",
            message: e.to_string(),
        })?;
        let store: Arc<dyn ObjectStore> = match prefix {
            Some(p) => Arc::new(object_store::prefix::PrefixStore::new(s3, p)),
            None => Arc::new(s3),
        };
        Ok(ObjectBlobs { store, local: None })
    }

    /// Write, read back and delete a small object: proves at start that the
    /// store is reachable and the credentials work, and names the setting
    /// to fix when not.
    pub async fn probe(&self) -> Result<(), S3Error> {
        let key = object_store::path::Path::from(format!(".warden/probe-{}", std::process::id()));
        let named = |e: object_store::Error| {
            let text = e.to_string();
            let setting = match &e {
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. } => "objects.secret_access_key",
                _ if text.contains("SignatureDoesNotMatch") => "objects.secret_access_key",
                _ if text.contains("InvalidAccessKeyId") => "objects.access_key_id",
                _ if text.contains("NoSuchBucket") => "objects.url",
                object_store::Error::NotFound { .. } => "objects.url",
                _ => "objects.endpoint",
            };
            S3Error {
                setting,
                message: text,
            }
        };
        self.store
            .put(&key, bytes::Bytes::from_static(b"warden").into())
            .await
            .map_err(named)?;
        let got = self
            .store
            .get(&key)
            .await
            .map_err(named)?
            .bytes()
            .await
            .map_err(named)?;
        self.store.delete(&key).await.map_err(named)?;
        if got.as_ref() != b"warden" {
            return Err(S3Error {
                setting: "objects.endpoint",
                message: "the store returned other bytes than were written".into(),
            });
        }
        Ok(())
    }

    /// Store the file at `path` under `key`, streamed (large files go up in
    /// parts; nothing is held whole in memory).
    pub async fn put_file(&self, key: &str, path: &Path) -> R<u64> {
        let loc = blob_path(key)?;
        let err = |e: &dyn std::fmt::Display| StoreError::Backend(format!("blob {key}: {e}"));
        let mut file = tokio::fs::File::open(path).await.map_err(|e| err(&e))?;
        let mut w = object_store::buffered::BufWriter::with_capacity(self.store.clone(), loc, 8 << 20);
        let n = match tokio::io::copy(&mut file, &mut w).await {
            Ok(n) => n,
            Err(e) => {
                let _ = w.abort().await;
                return Err(err(&e));
            }
        };
        w.shutdown().await.map_err(|e| err(&e))?;
        Ok(n)
    }

    /// Write the blob under `key` to a new file at `path`, streamed;
    /// `false` when there is no such blob (and no file is made).
    pub async fn get_to_file(&self, key: &str, path: &Path) -> R<bool> {
        let loc = blob_path(key)?;
        let err = |e: &dyn std::fmt::Display| StoreError::Backend(format!("blob {key}: {e}"));
        let r = match self.store.get(&loc).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(err(&e)),
        };
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
            .map_err(|e| err(&e))?;
        let mut stream = r.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| err(&e))?;
            file.write_all(&chunk).await.map_err(|e| err(&e))?;
        }
        file.flush().await.map_err(|e| err(&e))?;
        Ok(true)
    }

    /// Delete the blob under `key` (no error when there is none).
    pub async fn delete(&self, key: &str) -> R<()> {
        let loc = blob_path(key)?;
        match self.store.delete(&loc).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StoreError::Backend(format!("blob {key}: {e}"))),
        }
    }

    /// Keys and sizes of the blobs under `prefix`.
    pub async fn list(&self, prefix: &str) -> R<Vec<(String, u64)>> {
        let loc = blob_path(prefix)?;
        self.store
            .list(Some(&loc))
            .map_ok(|m| (m.location.to_string(), m.size))
            .try_collect()
            .await
            .map_err(|e| StoreError::Backend(format!("listing blobs under {prefix}: {e}")))
    }
}

/// Where and how to reach an S3-compatible bucket.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// The service's URL, for S3-compatible services (MinIO, Ceph, a test
    /// server); AWS when `None`.
    pub endpoint: Option<String>,
    /// The region (AWS), or what the service expects in signatures.
    pub region: String,
    /// Credentials; when both are `None`, the instance's or environment's.
    pub access_key_id: Option<String>,
    /// The secret half.
    pub secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
    /// Address buckets as `bucket.host` rather than `host/bucket`.
    pub virtual_hosted: bool,
    /// Per-request timeout, and the most time spent retrying one.
    pub timeout: Duration,
    /// Retries of a failed request.
    pub retries: usize,
}

/// A setting that does not work, named, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct S3Error {
    /// The configuration key to look at.
    pub setting: &'static str,
    /// What went wrong.
    pub message: String,
}

/// Bucket and optional prefix of an `s3://` URL.
fn parse_s3_url(url: &str) -> Result<(String, Option<object_store::path::Path>), S3Error> {
    let bad = |why: &str| S3Error {
        setting: "objects.url",
        message: format!("`{url}`: {why}"),
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("must start with s3:// (s3://bucket or s3://bucket/prefix)"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid_bucket {
        return Err(bad(
            "the bucket name must be 3 to 63 lowercase letters, digits, dots or hyphens",
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return Ok((bucket.to_owned(), None));
    }
    let p = object_store::path::Path::parse(prefix).map_err(|e| bad(&format!("the prefix: {e}")))?;
    Ok((bucket.to_owned(), Some(p)))
}

fn blob_path(key: &str) -> R<object_store::path::Path> {
    object_store::path::Path::parse(key).map_err(|e| StoreError::Backend(format!("blob key `{key}`: {e}")))
}

impl Blobs for ObjectBlobs {
    async fn put(&self, key: &str, data: Vec<u8>) -> R<()> {
        let path = blob_path(key)?;
        self.store
            .put_opts(&path, bytes::Bytes::from(data).into(), Default::default())
            .await
            .map_err(|e| StoreError::Backend(format!("blob {key}: {e}")))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> R<Option<Vec<u8>>> {
        let path = blob_path(key)?;
        match self.store.get_opts(&path, Default::default()).await {
            Ok(r) => {
                let chunks: Vec<bytes::Bytes> = r
                    .into_stream()
                    .try_collect()
                    .await
                    .map_err(|e| StoreError::Backend(format!("blob {key}: {e}")))?;
                Ok(Some(chunks.concat()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StoreError::Backend(format!("blob {key}: {e}"))),
        }
    }

    async fn stamp(&self, key: &str) -> R<Option<String>> {
        let path = blob_path(key)?;
        if let Some(root) = &self.local {
            use std::os::unix::fs::MetadataExt;
            // One stat: cheaper inline than a hop to the blocking pool.
            let file = root.join(path.as_ref());
            return match std::fs::symlink_metadata(file) {
                Ok(m) => Ok(Some(format!(
                    "{}-{}-{}-{}.{}-{}.{}",
                    m.dev(),
                    m.ino(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec()
                ))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StoreError::Backend(format!("blob {key}: {e}"))),
            };
        }
        let head = object_store::GetOptions {
            head: true,
            ..Default::default()
        };
        match self.store.get_opts(&path, head).await.map(|r| r.meta) {
            Ok(meta) => {
                Ok(Some(meta.e_tag.or(meta.version).unwrap_or_else(|| {
                    format!("{}-{}", meta.size, meta.last_modified)
                })))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StoreError::Backend(format!("blob {key}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_their_problem() {
        assert_eq!(parse_s3_url("s3://warden").unwrap().0, "warden");
        let (b, p) = parse_s3_url("s3://warden/node-a/").unwrap();
        assert_eq!((b.as_str(), p.unwrap().as_ref()), ("warden", "node-a"));
        for bad in ["http://x/y", "s3://", "s3://UPPER", "s3://a", "s3://-x-"] {
            let e = parse_s3_url(bad).unwrap_err();
            assert_eq!(e.setting, "objects.url", "{bad}");
        }
        assert!(parse_s3_url("s3://warden/a//b").is_err());
    }
}
