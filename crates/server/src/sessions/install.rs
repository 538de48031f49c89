//! Installing packages into a running session.
//!
//! A session's packages sit in a read-only dependency layer bound into its
//! box when the box starts, so an install cannot change the box it runs in.
//! It builds the session's new layer (the template's packages, the ones the
//! session had and the new ones) with the same builder as at creation,
//! then carries the session to a new box that binds it: it waits for the
//! running execution, holds the session's turn and its file writes, packs
//! the workspace (`BoxDir::pack_tar`, by descriptor), starts the new box
//! with the session's limits, environment and network, unpacks the
//! workspace into it (`BoxDir::unpack_tar`, every name checked), records
//! the new layer, and only then ends the old box.
//!
//! What does not survive the move, and is documented: the session's `/tmp`,
//! processes it left running, and a stateful interpreter's variables (the
//! next execution starts a new interpreter). A failure at any step leaves
//! the session running in its old box, unchanged.

use std::io::BufReader;
use std::sync::Arc;

use serde_json::Value;
use warden_core::model::new_id;
use warden_core::session::SessionTemplate;
use warden_core::template::PackageReq;
use warden_core::{Actor, Session, Store};
use warden_jail::{BoxFileError, CopyReport, MIB};
use warden_runtime::session::{SessionBox, SessionSpec};

use super::{R, SessionError, SessionManager, blocking, lock, state_error};

/// What an install did.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The session as recorded now (its new layer).
    pub session: Session,
    /// The packages installed by this request, normalized.
    pub installed: Vec<PackageReq>,
    /// Every package the session has beyond its template's, now.
    pub packages: Vec<PackageReq>,
    /// Files and bytes carried to the new box.
    pub carried: CopyReport,
}

impl SessionManager {
    /// The packages session `s` has beyond its template's: its layer's,
    /// when the layer is its own.
    async fn own_packages(&self, s: &Session, t: &SessionTemplate) -> R<Vec<PackageReq>> {
        let Some(id) = s.layer.as_deref().filter(|id| t.layer.as_deref() != Some(*id)) else {
            return Ok(Vec::new());
        };
        let Some(layer) = self.store.get_layer(id).await? else {
            return Err(SessionError::Internal(format!(
                "session {}'s dependency layer {id} has no record",
                s.id
            )));
        };
        let name = |p: &PackageReq| warden_core::layer::normalize_name(p.ecosystem, &p.name);
        Ok(layer
            .packages
            .into_iter()
            .filter(|p| {
                !t.packages
                    .iter()
                    .any(|q| q.ecosystem == p.ecosystem && name(q) == name(p))
            })
            .collect())
    }

    /// Install `asked` (the template grammar of `packages` at creation)
    /// into running session `id` of `actor`: build its new layer, then
    /// move the session to a box that binds it, workspace included.
    pub async fn install(&self, actor: &Actor, id: &str, asked: Vec<Value>) -> R<Installed> {
        let s = self.get(actor, id).await?;
        self.gate()?;
        let live = self.live_here(&s)?;
        let (t, stored) = match self.template(&s.template).await {
            Ok(t) => t,
            Err(SessionError::Invalid(_)) => {
                return Err(SessionError::State {
                    status: s.status,
                    detail: format!(
                        "session {id}'s template `{}` was deleted: packages cannot be installed into it",
                        s.template
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        let have = self.own_packages(&s, &t).await?;
        let installed =
            warden_core::session::more_packages(&asked, &t, &have).map_err(SessionError::Invalid)?;
        let mut packages = have;
        packages.extend(installed.iter().cloned());
        // Built before the session is held: a build may take minutes, and
        // the session keeps serving meanwhile.
        let (layer, mut pin) = self.layer(actor, &stored, &packages).await?;

        let turn = live.turn.lock().await;
        let writes = live.writes.write().await;
        if live.state().ending.is_some() {
            return Err(state_error(&self.store.get_session(id).await?.unwrap_or(s)));
        }
        let old = live.boxed();
        let disk = s.resources.disk_mb * MIB;
        let limits = self.snapshot_limits(disk);
        let path = self.scratch(&format!("{id}-{}", new_id("i")))?;
        let (b, p) = (old.clone(), path.clone());
        let packed = blocking(move || super::snapshots::pack(&b, &p, limits)).await;
        let packed = match packed {
            Ok(Ok(report)) => Ok(report),
            // What the box holds (too many entries, too deep): the caller
            // can change that.
            Ok(Err(super::snapshots::Packing::Box(e))) => Err(SessionError::State {
                status: s.status,
                detail: format!(
                    "session {id}'s workspace cannot be carried to a new box: {e}; the session runs on unchanged"
                ),
            }),
            Ok(Err(super::snapshots::Packing::Host(e))) => {
                tracing::error!(session = %id, error = %e, "writing an install's scratch archive failed");
                Err(SessionError::Internal(format!(
                    "session {id}'s workspace could not be packed (the cause is in the server's log); the session runs on unchanged"
                )))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = packed {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let spec = SessionSpec {
            memory_bytes: s.resources.memory_mb * MIB,
            pids: s.resources.pids,
            cpu_cores: s.resources.cpu_cores,
            disk_bytes: disk,
            tmp_bytes: self.settings.tmp_mb * MIB,
            max_lifetime: std::time::Duration::from_secs(
                s.max_lifetime_secs
                    .saturating_sub(((warden_core::model::now_ms() - s.created_at).max(0) / 1000) as u64)
                    .max(1),
            ),
            env: s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            layer,
            egress: s.network.clone(),
            files: Vec::new(),
        };
        let runner = self.runner.clone();
        let started = blocking(move || runner.start_session(spec)).await;
        let new = match started {
            Ok(Ok(b)) => Arc::new(b),
            Ok(Err(e)) => {
                let _ = std::fs::remove_file(&path);
                tracing::error!(session = %id, error = %crate::error::DisplayChain(&e), "an install's new box did not start");
                return Err(SessionError::Internal(format!(
                    "session {id}'s new box did not start (the cause is in the server's log); the session runs on unchanged"
                )));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let (b, p) = (new.clone(), path.clone());
        let carried = blocking(move || {
            let file = std::fs::File::open(&p).map_err(|e| BoxFileError::Io {
                path: "the archive".into(),
                source: e,
            })?;
            b.workspace()
                .unpack_tar(&mut BufReader::with_capacity(1 << 20, file), limits)
        })
        .await;
        let _ = std::fs::remove_file(&path);
        let carried = match carried {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => {
                end_box(new).await;
                return Err(SessionError::State {
                    status: s.status,
                    detail: format!(
                        "session {id}'s workspace could not be carried to its new box: {e}; the session runs on unchanged"
                    ),
                });
            }
            Err(e) => {
                end_box(new).await;
                return Err(e);
            }
        };
        match self
            .store
            .set_session_layer(id, &self.node, pin.id().as_deref())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                end_box(new).await;
                let now = self.store.get_session(id).await?.unwrap_or(s);
                return Err(state_error(&now));
            }
            Err(e) => {
                end_box(new).await;
                return Err(e.into());
            }
        }
        *lock(&live.boxed) = new.clone();
        let old_pin = std::mem::replace(&mut *lock(&live.layer), pin.take());
        // The session began to end while the box moved: the end read the
        // old box, so the new one is ended here.
        if live.state().ending.is_some() {
            end_box(new).await;
            // Given back once: by the end if it took it after the swap,
            // else here.
            let pin = lock(&live.layer).take();
            if let Some(p) = pin {
                self.builds.release(&p).await;
            }
        }
        drop(writes);
        drop(turn);
        end_box(old).await;
        if let Some(p) = old_pin {
            self.builds.release(&p).await;
        }
        metrics::counter!("warden_session_installs_total").increment(1);
        tracing::info!(session = %id, packages = installed.len(), files = carried.files, "packages installed into a session");
        let session = self
            .store
            .get_session(id)
            .await?
            .ok_or_else(|| SessionError::NotFound(format!("no session {id}")))?;
        Ok(Installed {
            session,
            installed,
            packages,
            carried,
        })
    }
}

/// End a box that is no session's any more.
async fn end_box(b: Arc<SessionBox>) {
    if let Err(e) = blocking(move || b.terminate()).await {
        tracing::warn!(error = %e, "ending a session's box failed");
    }
}
