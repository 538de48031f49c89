//! Template builds: a template's packages installed once into a dependency
//! layer, which boxes of the template get read-only.
//!
//! `POST /v1/templates/{id}/build` computes the layer's content address
//! (runtime, the interpreter's version, the normalized packages, the
//! index) and inserts the layer record if it is new: two templates with the
//! same packages share one layer, and concurrent builds of one layer
//! coalesce (of all callers, on any node, exactly one claims the queued
//! layer with a compare-and-set and builds it; the others see its state).
//! The build runs in the jail through the runtime ([`Runner::build_layer`]),
//! its output streamed to the layer's live log (SSE at
//! `/v1/layers/{id}/events`); the record ends `ready` (with its lock) or
//! `failed` (naming the package), and the template is pointed at a ready
//! layer only if it still asks for those packages. A failed build changes
//! nothing that worked before. A ready layer is also kept as a blob, so
//! another node sharing the store downloads it instead of rebuilding.
//! Unused layers are collected by age and total size.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warden_core::layer::{Layer, LayerError, LayerStatus, LockedPackage};
use warden_core::model::now_ms;
use warden_core::store::{LayerFilter, NewAudit};
use warden_core::template::{Template, TemplateRuntime};
use warden_core::{Store, StoreError};
use warden_runtime::layers::{
    BuildLimits, LayerBuild, LayerMount, LayerPackage, LayerRuntime, PackageSource,
};
use warden_runtime::{Runner, Stream};
use warden_store::{ObjectBlobs, SqlStore};

use crate::AppState;
use crate::api::{ApiPath, Problems};
use crate::auth::Principal;
use crate::config::LayersSection;
use crate::error::ApiError;
use crate::events::{Hub, Log};
use crate::templates::LayerView;

/// Builds and layers of this node.
pub struct Builds {
    store: Arc<SqlStore>,
    blobs: Arc<ObjectBlobs>,
    runner: Runner,
    node: String,
    cfg: LayersSection,
    dir: PathBuf,
    interpreters: Mutex<HashMap<LayerRuntime, String>>,
    /// Live build logs, by layer id.
    pub hub: Hub,
    /// Layers this node is building now.
    running: Mutex<HashSet<String>>,
    /// Layers bound into this node's live session boxes, with how many
    /// sessions hold each: never collected while held.
    pinned: Mutex<HashMap<String, usize>>,
}

/// Why a session could not get its layer.
#[derive(Debug)]
pub enum SessionLayerError {
    /// The build failed: the request's field at fault (`/packages` or
    /// `/template`) and why, naming the package.
    Failed {
        /// `/packages` or `/template`.
        location: &'static str,
        /// Why.
        message: String,
    },
    /// Still building after the build's timeout.
    Building(String),
    /// The platform failed.
    Other(ApiError),
}

impl From<ApiError> for SessionLayerError {
    fn from(e: ApiError) -> Self {
        SessionLayerError::Other(e)
    }
}

impl From<StoreError> for SessionLayerError {
    fn from(e: StoreError) -> Self {
        SessionLayerError::Other(e.into())
    }
}

/// A layer a live session's box holds (see [`Builds::session_layer`]);
/// give it back with [`Builds::release`] when the box has ended.
#[derive(Debug, Clone)]
pub struct LayerPin {
    /// The layer's id.
    pub id: String,
    /// Built for the session's extra packages (no template points at it):
    /// deleted when the last session holding it ends.
    pub private: bool,
}

/// What a build request did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BuildView {
    /// The template.
    pub template: String,
    /// `not_needed` (no packages: the standard library is all), `ready`
    /// (built now or before), `queued` or `building` (follow the layer's
    /// events), `failed`.
    pub status: String,
    /// The layer, when the template has packages.
    pub layer: Option<LayerView>,
    /// Where the build's live log streams, while it runs.
    pub events: Option<String>,
}

fn layer_runtime(r: TemplateRuntime) -> Option<LayerRuntime> {
    match r {
        TemplateRuntime::Python => Some(LayerRuntime::Python),
        TemplateRuntime::Node => Some(LayerRuntime::Node),
        TemplateRuntime::Shell => None,
    }
}

/// `folder:<digest>`: a folder's identity for layer ids, from its entries'
/// names, sizes and modification times (a changed folder is another index).
fn folder_identity(dir: &Path) -> Result<String, ApiError> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let mut entries: Vec<(String, u64, i64)> = std::fs::read_dir(dir)
        .map_err(|e| ApiError::internal(&format!("layers.folder {}: {e}", dir.display())))?
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), m.size(), m.mtime()))
        })
        .collect();
    entries.sort();
    let mut h = Sha256::new();
    for (name, size, mtime) in entries {
        h.update(format!("{name}\0{size}\0{mtime}\n").as_bytes());
    }
    Ok(format!("folder:{:x}", h.finalize()))
}

impl Builds {
    /// Builds on `runner`, keeping layers under `cfg.dir` (default: in
    /// `data_dir`).
    pub fn new(
        store: Arc<SqlStore>,
        blobs: Arc<ObjectBlobs>,
        runner: Runner,
        node: String,
        cfg: LayersSection,
        data_dir: &Path,
    ) -> std::io::Result<Builds> {
        let dir = cfg.dir.clone().unwrap_or_else(|| data_dir.join("layers"));
        std::fs::create_dir_all(&dir)?;
        // Boxes run as other uids and must reach the layers they are given.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        Ok(Builds {
            store,
            blobs,
            runner,
            node,
            cfg,
            dir,
            interpreters: Mutex::new(HashMap::new()),
            hub: Hub::default(),
            running: Mutex::new(HashSet::new()),
            pinned: Mutex::new(HashMap::new()),
        })
    }

    /// Where layer `id` lives on this node.
    pub fn layer_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn interpreter(&self, r: LayerRuntime) -> Result<String, ApiError> {
        if let Some(v) = self
            .interpreters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&r)
        {
            return Ok(v.clone());
        }
        let v = r
            .interpreter_version()
            .map_err(|e| ApiError::internal(&format!("the interpreter's version: {e}")))?;
        self.interpreters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(r, v.clone());
        Ok(v)
    }

    /// Where packages of `r` come from, and that source's identity.
    fn source(&self, r: LayerRuntime) -> Result<(PackageSource, String), ApiError> {
        if let Some(folder) = &self.cfg.folder {
            return Ok((PackageSource::Folder(folder.clone()), folder_identity(folder)?));
        }
        let (url, hosts) = match r {
            LayerRuntime::Python => (&self.cfg.pip_index_url, &self.cfg.pip_index_hosts),
            LayerRuntime::Node => (&self.cfg.npm_registry, &self.cfg.npm_registry_hosts),
        };
        Ok((
            PackageSource::Index {
                url: url.clone(),
                hosts: hosts.clone(),
                allow_cidrs: self.cfg.allow_cidrs.clone(),
            },
            url.clone(),
        ))
    }

    /// Start (or join) the build of `template`'s layer.
    pub async fn build(self: &Arc<Self>, actor: &str, template: Template) -> Result<BuildView, ApiError> {
        if layer_runtime(template.runtime).is_none() || template.packages.is_empty() {
            return Ok(BuildView {
                template: template.id,
                status: "not_needed".into(),
                layer: None,
                events: None,
            });
        }
        let id = template.id.clone();
        let (layer, live) = self.start(actor, template, true).await?;
        Ok(self.view(id, layer, live))
    }

    /// Start (or join) the build of the layer of `template`'s runtime and
    /// packages; the template is pointed at it when ready if `point`.
    /// Returns the layer's record and whether this node builds it now.
    async fn start(
        self: &Arc<Self>,
        actor: &str,
        template: Template,
        point: bool,
    ) -> Result<(Layer, bool), ApiError> {
        let Some(runtime) = layer_runtime(template.runtime) else {
            return Err(ApiError::internal(&"a shell template has no layer"));
        };
        let interpreter = self.interpreter(runtime)?;
        let (source, index) = self.source(runtime)?;
        let queued = Layer::queued(
            template.runtime,
            &interpreter,
            &template.packages,
            &index,
            now_ms(),
        );
        let (mut layer, _) = self.store.insert_layer(queued).await?;
        if layer.status == LayerStatus::Failed {
            // A rebuild (the index may be back, the package fixed).
            let mut again = layer.clone();
            again.status = LayerStatus::Queued;
            again.error = None;
            again.log = String::new();
            layer = match self.store.update_layer(LayerStatus::Failed, again).await {
                Ok(l) => l,
                Err(StoreError::Changed { .. }) => self.reload(&layer.id).await?,
                Err(e) => return Err(e.into()),
            };
        }
        if layer.status == LayerStatus::Ready {
            self.ensure_local(&layer).await?;
            if point {
                self.point(actor, &template, &layer).await?;
            }
            return Ok((layer, false));
        }
        if layer.status == LayerStatus::Queued {
            let mut claim = layer.clone();
            claim.status = LayerStatus::Building;
            claim.node = Some(self.node.clone());
            match self.store.update_layer(LayerStatus::Queued, claim).await {
                Ok(claimed) => {
                    layer = claimed;
                    let point = point.then(|| template.clone());
                    self.spawn(actor.to_owned(), point, layer.clone(), runtime, source);
                }
                // Another builder (this node or another) took it.
                Err(StoreError::Changed { .. }) => layer = self.reload(&layer.id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        let live = layer.status == LayerStatus::Building;
        Ok((layer, live))
    }

    /// The layer a new session box of `template` gets, holding the
    /// template's packages and `extra` ones, held for the session until
    /// [`Builds::release`]: `None` when there are no packages. Built first
    /// when it is not ready (by the same builder and egress rules as
    /// `POST /v1/templates/{id}/build`, waiting at most the build's
    /// timeout); the template is pointed at a layer of its own packages.
    /// A failed build is a 422 problem at `/packages` (some extra package
    /// failed) or `/template`, naming the package.
    pub async fn session_layer(
        self: &Arc<Self>,
        actor: &str,
        template: &Template,
        extra: &[warden_core::template::PackageReq],
    ) -> Result<Option<(LayerMount, LayerPin)>, SessionLayerError> {
        let Some(runtime) = layer_runtime(template.runtime) else {
            return Ok(None);
        };
        if template.packages.is_empty() && extra.is_empty() {
            return Ok(None);
        }
        let private = !extra.is_empty();
        if !private
            && let Some(id) = &template.layer
            && let Some(layer) = self.store.get_layer(id).await?
            && layer.status == LayerStatus::Ready
        {
            return Ok(Some(self.pin_ready(&layer, runtime, false).await?));
        }
        let mut wanted = template.clone();
        wanted.packages.extend(extra.iter().cloned());
        let (layer, _) = self.start(actor, wanted, !private).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.cfg.build_timeout_secs + 30);
        let mut layer = layer;
        while matches!(layer.status, LayerStatus::Queued | LayerStatus::Building) {
            if tokio::time::Instant::now() >= deadline {
                return Err(SessionLayerError::Building(format!(
                    "the dependency layer {} of this session is still building; follow GET /v1/layers/{}/events and create the session again",
                    layer.id, layer.id
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            layer = self.reload(&layer.id).await?;
        }
        if layer.status == LayerStatus::Failed {
            let e = layer.error.clone().unwrap_or(LayerError {
                package: None,
                message: "the build failed".into(),
            });
            let extra_failed = e.package.as_deref().is_some_and(|p| {
                extra.iter().any(|x| {
                    warden_core::layer::normalize_name(x.ecosystem, &x.name)
                        == warden_core::layer::normalize_name(x.ecosystem, p)
                })
            });
            let who = e
                .package
                .as_deref()
                .map(|p| format!("package `{p}`: "))
                .unwrap_or_default();
            let (at, what) = if extra_failed || (private && e.package.is_none()) {
                ("/packages", "the session's packages could not be installed")
            } else {
                ("/template", "the template's packages could not be installed")
            };
            return Err(SessionLayerError::Failed {
                location: at,
                message: format!(
                    "{what}: {who}{} (layer {}, GET /v1/layers/{} has the log)",
                    e.message, layer.id, layer.id
                ),
            });
        }
        Ok(Some(self.pin_ready(&layer, runtime, private).await?))
    }

    /// Hold a ready layer for a session box: on this node's disk, its use
    /// recorded, never collected until released.
    async fn pin_ready(
        &self,
        layer: &Layer,
        runtime: LayerRuntime,
        private: bool,
    ) -> Result<(LayerMount, LayerPin), ApiError> {
        let dir = self.ensure_local(layer).await?;
        let _ = self.store.touch_layer(&layer.id, now_ms()).await;
        *self
            .pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(layer.id.clone())
            .or_default() += 1;
        Ok((
            LayerMount { dir, runtime },
            LayerPin {
                id: layer.id.clone(),
                private,
            },
        ))
    }

    /// The layer `id` for a resumed session box (its record names the
    /// layer it had), held like [`Builds::session_layer`]'s; `None` when
    /// the layer is gone or not ready.
    pub async fn session_layer_by_id(
        &self,
        id: &str,
        private: bool,
    ) -> Result<Option<(LayerMount, LayerPin)>, ApiError> {
        let Some(layer) = self.store.get_layer(id).await? else {
            return Ok(None);
        };
        let Some(runtime) = layer_runtime(layer.runtime).filter(|_| layer.status == LayerStatus::Ready)
        else {
            return Ok(None);
        };
        self.pin_ready(&layer, runtime, private).await.map(Some)
    }

    /// A session's box that held `pin` has ended: the layer may be
    /// collected again, and a session-private layer no other session of
    /// this node holds is deleted now (unless a template points at it).
    pub async fn release(&self, pin: &LayerPin) {
        let last = {
            let mut pinned = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
            match pinned.get_mut(&pin.id) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    pinned.remove(&pin.id);
                    true
                }
                None => false,
            }
        };
        if last
            && pin.private
            && let Err(e) = self.delete(&pin.id).await
        {
            tracing::warn!(layer = %pin.id, error = ?e, "a session's own layer could not be deleted; the collector will");
        }
    }

    fn is_pinned(&self, id: &str) -> bool {
        self.pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// Delete layer `id` (record, folder, archive) unless a template uses
    /// it; whether it was deleted.
    async fn delete(&self, id: &str) -> Result<bool, ApiError> {
        match self.store.delete_layer(id).await {
            Ok(true) => {
                let dir = self.layer_dir(id);
                // remove_dir_all never follows the links a layer holds.
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
                // Its archive too, so no node downloads it again. A
                // failure leaves an orphan blob, not a broken layer.
                if let Err(e) = self.blobs.delete(&Self::blob_key(id)).await {
                    tracing::warn!(layer = %id, error = %e, "a collected layer's archive stays in object storage");
                }
                Ok(true)
            }
            // A template uses it: kept.
            Ok(false) | Err(StoreError::InUse(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn reload(&self, id: &str) -> Result<Layer, ApiError> {
        self.store
            .get_layer(id)
            .await?
            .ok_or_else(|| ApiError::internal(&format!("layer {id} vanished during a build request")))
    }

    fn view(&self, template: String, layer: Layer, live: bool) -> BuildView {
        BuildView {
            template,
            status: layer.status.as_str().to_owned(),
            events: live.then(|| format!("/v1/layers/{}/events", layer.id)),
            layer: Some(layer.into()),
        }
    }

    /// Point the template at a ready layer, if it still asks for what the
    /// layer holds (its revision is unchanged since the build began, or its
    /// packages are still the layer's).
    async fn point(&self, actor: &str, template: &Template, layer: &Layer) -> Result<(), ApiError> {
        if template.layer.as_deref() == Some(layer.id.as_str()) {
            return Ok(());
        }
        let audit = NewAudit {
            actor: actor.to_owned(),
            action: "set_template_layer".into(),
            detail: serde_json::json!({"template": template.id, "layer": layer.id}),
            ..Default::default()
        };
        match self
            .store
            .set_template_layer(&template.id, template.revision, Some(&layer.id), audit)
            .await
        {
            Ok(_) | Err(StoreError::Changed { .. }) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn spawn(
        self: &Arc<Self>,
        actor: String,
        template: Option<Template>,
        layer: Layer,
        runtime: LayerRuntime,
        source: PackageSource,
    ) {
        let me = self.clone();
        let log = self.hub.open(&layer.id);
        log.status("building");
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(layer.id.clone());
        tokio::spawn(async move {
            let id = layer.id.clone();
            let packages: Vec<LayerPackage> = layer
                .packages
                .iter()
                .map(|p| LayerPackage {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    hashes: p.hashes.clone(),
                })
                .collect();
            let dest = me.layer_dir(&id);
            let limits = BuildLimits {
                timeout: Duration::from_secs(me.cfg.build_timeout_secs),
                layer_bytes: me.cfg.max_size_mb << 20,
                ..BuildLimits::default()
            };
            let runner = me.runner.clone();
            let tap_log = log.clone();
            let built = tokio::task::spawn_blocking(move || {
                // A leftover of a crashed build of this layer.
                if dest.exists() {
                    let _ = std::fs::remove_dir_all(&dest);
                }
                runner.build_layer(LayerBuild {
                    runtime,
                    packages: &packages,
                    source: &source,
                    dest: &dest,
                    limits,
                    progress: Some(Arc::new(move |stream, data| {
                        tap_log.output(stream == Stream::Stderr, data)
                    })),
                })
            })
            .await;
            let mut done = layer.clone();
            done.built_at = Some(now_ms());
            match built {
                Ok(Ok(b)) => {
                    done.status = LayerStatus::Ready;
                    done.log = b.log;
                    done.size_bytes = i64::try_from(b.size_bytes).unwrap_or(i64::MAX);
                    done.lock = b
                        .lock
                        .into_iter()
                        .map(|l| LockedPackage {
                            name: l.name,
                            version: l.version,
                            sha256: l.sha256,
                            integrity: l.integrity,
                        })
                        .collect();
                }
                Ok(Err(e)) => {
                    done.status = LayerStatus::Failed;
                    done.log = e.log.clone();
                    done.error = Some(LayerError {
                        package: e.package.clone(),
                        message: e.message.clone(),
                    });
                }
                Err(panic) => {
                    done.status = LayerStatus::Failed;
                    done.error = Some(LayerError {
                        package: None,
                        message: format!("the build's task failed: {panic}"),
                    });
                }
            }
            // Kept as a blob before it is recorded ready: a node that sees
            // it ready can fetch it rather than rebuild it.
            if done.status == LayerStatus::Ready
                && let Err(e) = me.upload(&done).await
            {
                tracing::warn!(layer = %id, error = %e, "the layer could not be kept as a blob; other nodes will rebuild it");
            }
            let stored = me.store.update_layer(LayerStatus::Building, done.clone()).await;
            match &stored {
                Ok(l) if l.status == LayerStatus::Ready => {
                    if let Some(template) = &template
                        && let Err(e) = me.point(&actor, template, l).await
                    {
                        tracing::warn!(layer = %id, template = %template.id, error = ?e, "the template could not be pointed at its built layer");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(layer = %id, error = %e, "the build's outcome could not be recorded")
                }
            }
            log.finish(serde_json::to_string(&LayerView::from(stored.unwrap_or(done))).unwrap_or_default());
            me.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        });
    }

    /// The blob key of a layer's archive.
    fn blob_key(id: &str) -> String {
        format!("layers/{id}.tar")
    }

    /// Keep a ready layer as a tar blob for other nodes, written to a
    /// temporary file and streamed up (a layer may be a gigabyte).
    async fn upload(&self, layer: &Layer) -> Result<(), String> {
        let dir = self.layer_dir(&layer.id);
        let tar_path = self
            .dir
            .join(format!("{}.upload-{}.tar", layer.id, std::process::id()));
        let path = tar_path.clone();
        let made = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let file = std::fs::File::create(&path)?;
            let mut b = tar::Builder::new(std::io::BufWriter::new(file));
            // Links stay links; nothing is followed.
            b.follow_symlinks(false);
            b.append_dir_all(".", &dir)?;
            b.into_inner()?
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        let sent = match made {
            Ok(()) => self
                .blobs
                .put_file(&Self::blob_key(&layer.id), &tar_path)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&tar_path).await;
        sent
    }

    /// Make sure a ready layer is on this node's disk: download and unpack
    /// its blob when another node built it.
    pub async fn ensure_local(&self, layer: &Layer) -> Result<PathBuf, ApiError> {
        let dir = self.layer_dir(&layer.id);
        if dir.is_dir() {
            return Ok(dir);
        }
        let stamp = format!("{}-{}", std::process::id(), now_ms());
        let tar_path = self.dir.join(format!("{}.download-{stamp}.tar", layer.id));
        let found = self
            .blobs
            .get_to_file(&Self::blob_key(&layer.id), &tar_path)
            .await;
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tar_path).await;
                return Err(e.into());
            }
        };
        if !found {
            return Err(ApiError::internal(&format!(
                "layer {} is ready but its blob is missing",
                layer.id
            )));
        }
        let tmp = self.dir.join(format!("{}.unpack-{stamp}", layer.id));
        let dest = dir.clone();
        let archive_path = tar_path.clone();
        let unpacked = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir(&tmp)?;
            // unpack refuses absolute paths, `..`, and entries whose parent
            // resolves outside `tmp` through a link unpacked before them.
            let file = std::fs::File::open(&archive_path)?;
            let mut archive = tar::Archive::new(std::io::BufReader::new(file));
            archive.set_preserve_permissions(false);
            archive.set_overwrite(false);
            if let Err(e) = archive.unpack(&tmp) {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
            match std::fs::rename(&tmp, &dest) {
                Ok(()) => Ok(()),
                Err(_) if dest.is_dir() => std::fs::remove_dir_all(&tmp),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    Err(e)
                }
            }
        })
        .await;
        let _ = tokio::fs::remove_file(&tar_path).await;
        unpacked
            .map_err(|e| ApiError::internal(&e))?
            .map_err(|e| ApiError::internal(&format!("unpacking layer {}: {e}", layer.id)))?;
        Ok(dir)
    }

    /// The layer a box of `template` gets, if it has a ready one (fetched
    /// from the blob store when another node built it); its use recorded.
    pub async fn mount_for(&self, template: &Template) -> Result<Option<LayerMount>, ApiError> {
        let (Some(id), Some(runtime)) = (&template.layer, layer_runtime(template.runtime)) else {
            return Ok(None);
        };
        let Some(layer) = self.store.get_layer(id).await? else {
            return Ok(None);
        };
        if layer.status != LayerStatus::Ready {
            return Ok(None);
        }
        let dir = self.ensure_local(&layer).await?;
        let _ = self.store.touch_layer(id, now_ms()).await;
        Ok(Some(LayerMount { dir, runtime }))
    }

    /// Delete layers no template uses: those unused for `gc_unused_days`,
    /// then the least recently used while all of them take more than
    /// `gc_max_total_mb`. Returns how many were deleted.
    pub async fn collect_garbage(&self) -> Result<usize, ApiError> {
        let mut ready = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list_layers(LayerFilter {
                    status: Some(LayerStatus::Ready),
                    cursor: cursor.clone(),
                    limit: 500,
                    ..LayerFilter::default()
                })
                .await?;
            ready.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let now = now_ms();
        let old = now - i64::try_from(self.cfg.gc_unused_days).unwrap_or(i64::MAX / 86_400_000) * 86_400_000;
        let last = |l: &Layer| l.last_used_at.or(l.built_at).unwrap_or(l.created_at);
        ready.sort_by_key(last);
        let mut total: i64 = ready.iter().map(|l| l.size_bytes).sum();
        let cap = i64::try_from(self.cfg.gc_max_total_mb << 20).unwrap_or(i64::MAX);
        let mut deleted = 0;
        for l in ready {
            if last(&l) >= old && total <= cap {
                continue;
            }
            if self
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&l.id)
                || self.is_pinned(&l.id)
            {
                continue;
            }
            if self.delete(&l.id).await? {
                total -= l.size_bytes;
                deleted += 1;
            }
        }
        deleted += self.sweep_local().await?;
        Ok(deleted)
    }

    /// Remove what this node holds for layers the store no longer knows
    /// (another node sharing the store collected them) and the leftovers
    /// of transfers interrupted by a crash. Returns how many layers went.
    async fn sweep_local(&self) -> Result<usize, ApiError> {
        let mut names = Vec::new();
        let mut rd = match tokio::fs::read_dir(&self.dir).await {
            Ok(rd) => rd,
            Err(_) => return Ok(0),
        };
        while let Ok(Some(e)) = rd.next_entry().await {
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        let mut removed = 0;
        for name in names {
            let path = self.dir.join(&name);
            let id = name.split('.').next().unwrap_or_default();
            let is_id = id.len() == 64 && id.bytes().all(|c| c.is_ascii_hexdigit());
            if !is_id {
                continue;
            }
            if name.len() > 64 {
                // A transfer's temporary file or folder: stale after an hour.
                let old = tokio::fs::symlink_metadata(&path)
                    .await
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < hour_ago);
                if old {
                    let _ = tokio::task::spawn_blocking(move || {
                        std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path))
                    })
                    .await;
                }
                continue;
            }
            let busy = self
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(id);
            if busy || self.is_pinned(id) || self.store.get_layer(id).await?.is_some() {
                continue;
            }
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(path)).await;
            removed += 1;
        }
        Ok(removed)
    }

    /// Collect garbage every ten minutes while the server runs.
    pub fn start_collector(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(600)).await;
                let Some(b) = me.upgrade() else { return };
                match b.collect_garbage().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "unused dependency layers collected"),
                    Err(e) => tracing::warn!(error = ?e, "collecting unused layers failed"),
                }
            }
        });
    }

    /// This node's live log of layer `id`'s build, if it builds it.
    pub fn live(&self, id: &str) -> Option<Arc<Log>> {
        self.hub.get(id)
    }
}

/// Build a template's dependency layer (admin): 200 when it is ready
/// already (or the template has no packages: `not_needed`), 202 while it
/// is queued or building (follow `events`), with the layer's record. Two
/// templates with the same packages share one layer; concurrent builds of
/// it coalesce. A failed build leaves the template as it was.
#[utoipa::path(post, path = "/v1/templates/{id}/build", tag = "templates",
    params(("id" = String, Path, description = "Template id", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")),
    responses(
        (status = 200, description = "Ready (or nothing to build)", body = BuildView),
        (status = 202, description = "Queued or building", body = BuildView,
            headers(("Location" = String, description = "The layer's URL"))),
        Problems),
    security(("api_key" = [])))]
pub async fn build_template(
    State(s): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    p.require_admin()?;
    let template = s.templates.get(&id).await?;
    let view = s.builds.build(&p.actor.name, template).await?;
    let pending = matches!(view.status.as_str(), "queued" | "building");
    let location = view.layer.as_ref().map(|l| format!("/v1/layers/{}", l.id));
    let mut r = (
        if pending {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        },
        Json(view),
    )
        .into_response();
    if let Some(h) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert(header::LOCATION, h);
    }
    Ok(r)
}

/// A layer's build as it happens (every role): Server-Sent Events `status`,
/// `stdout` and `stderr` (the installer's output), and last `result` (the
/// layer's record, id `end`). Resumes after `Last-Event-ID`; a build that
/// ended (or runs on another node) gets its `result` at once.
#[utoipa::path(get, path = "/v1/layers/{id}/events", tag = "templates",
    params(("id" = String, Path, description = "Layer id (64 hex digits)", pattern = "^[0-9a-f]{64}$"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, description = "The build's events", content_type = "text/event-stream", body = String), Problems),
    security(("api_key" = [])))]
pub async fn layer_events(
    State(s): State<AppState>,
    _p: Principal,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if s.store.get_layer(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no layer {id}")));
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let stream = crate::sse::events(s, crate::sse::Source::Layer, id, last);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_another_index_when_it_changes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a-1.0-py3-none-any.whl"), b"x").unwrap();
        let one = folder_identity(d.path()).unwrap();
        assert!(one.starts_with("folder:"));
        assert_eq!(folder_identity(d.path()).unwrap(), one);
        std::fs::write(d.path().join("b-1.0-py3-none-any.whl"), b"y").unwrap();
        assert_ne!(folder_identity(d.path()).unwrap(), one);
    }

    #[test]
    fn only_python_and_node_templates_have_layers() {
        assert_eq!(layer_runtime(TemplateRuntime::Shell), None);
        assert_eq!(layer_runtime(TemplateRuntime::Python), Some(LayerRuntime::Python));
    }
}
