//! Package blobs and artifacts in an `object_store`: a local folder by
//! default, or any object store (S3, memory, …).

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt as _;
use object_store::ObjectStore;
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
