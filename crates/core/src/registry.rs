//! The registry: uploads, the review lifecycle, apps and installations, and
//! loading a version to run (verifying its package hash every time).
//!
//! Permissions: developers manage their own plugins (upload, submit,
//! activate, deactivate, delete); reviews (approve, reject), apps and
//! installations are the admin's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warden_package::openapi::ApiSpec;
use warden_package::{Manifest, Policy, Problem};

use crate::lifecycle::{self, Action, LifecycleError, VersionStatus};
use crate::model::{Actor, App, Installation, Plugin, Role, Version, hex, new_id, now_ms};
use crate::signing::{self, SigningKey};
use crate::store::{Blobs, Generation, NewAudit, NewVersion, PackageFields, Store, StoreError, Transition};
use crate::tier::{self, TrustLevel};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request or package is invalid: every problem, located.
    #[error("invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The actor may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The version's state does not allow this.
    #[error("{plugin} {version}: {error}")]
    Lifecycle {
        /// Plugin.
        plugin: String,
        /// Version.
        version: String,
        /// What the lifecycle says.
        error: LifecycleError,
    },
    /// It exists already, or is in use.
    #[error("{0}")]
    Conflict(String),
    /// A trusted version's signature does not hold when its code is
    /// loaded (the key was revoked, or the signature no longer verifies):
    /// it does not run.
    #[error("{0}")]
    Signature(String),
    /// The stored package no longer matches its recorded hash; the version
    /// was marked failed.
    #[error(
        "{plugin} {version}: the stored package does not match its recorded hash (recorded {expected}, found {found}); the version was marked failed"
    )]
    Tampered {
        /// Plugin.
        plugin: String,
        /// Version.
        version: String,
        /// Recorded hash.
        expected: String,
        /// Hash of what is stored.
        found: String,
    },
    /// Storage failed.
    #[error("storage")]
    Store(#[source] StoreError),
    /// A file operation failed.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => RegistryError::NotFound(m),
            StoreError::Conflict(m) | StoreError::InUse(m) => RegistryError::Conflict(m),
            other => RegistryError::Store(other),
        }
    }
}

type R<T> = Result<T, RegistryError>;

/// Builds Go sources into a native binary at submit time (implemented by the
/// runtime; kept as a trait so the registry does not depend on it).
pub trait GoBuilder: Send + Sync + 'static {
    /// Build `src` into the executable `out`; on failure, located problems.
    fn build(&self, src: &Path, out: &Path) -> Result<(), Vec<Problem>>;
}

/// The registry service.
pub struct Registry<S, B> {
    /// Package hash → blob stamp when it was last verified.
    verified: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Trusted versions (id, revision) whose signature held on this node.
    trusted: std::sync::Mutex<std::collections::HashSet<(String, i64)>>,
    store: Arc<S>,
    blobs: Arc<B>,
    policy: Policy,
    code_root: PathBuf,
    go: Option<Arc<dyn GoBuilder>>,
}

fn blob_key(sha256: &str) -> String {
    format!("packages/{sha256}.zip")
}

fn build_key(sha256: &str) -> String {
    format!("builds/{sha256}.bin")
}

/// The status reason of a version an admin switched off.
const ADMIN_DEACTIVATED: &str = "deactivated by admin";

/// Where a Go plugin's binary sits in its extracted code directory.
pub const GO_BINARY: &str = ".warden-build/plugin";

fn problem(location: &str, message: impl Into<String>) -> RegistryError {
    RegistryError::Invalid(vec![Problem {
        location: location.into(),
        message: message.into(),
    }])
}

fn audit(actor: &Actor, action: &str, v: Option<&Version>, to: Option<VersionStatus>) -> NewAudit {
    NewAudit {
        actor: actor.name.clone(),
        action: action.into(),
        plugin: v.map(|v| v.plugin.clone()),
        version: v.map(|v| v.version.clone()),
        from_status: v.map(|v| v.status.to_string()),
        to_status: to.map(|s| s.to_string()),
        reason: None,
        detail: Value::Null,
    }
}

/// A report as stored: the analysis plus the hash of the package it is about.
fn report_value(report: &warden_package::Report, sha256: &str) -> Value {
    let mut v = serde_json::to_value(report).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("package_sha256".into(), Value::String(sha256.to_owned()));
    }
    v
}

/// The key of a stored manifest under which an API plugin's version keeps
/// the servers and tools derived from its OpenAPI document (Warden writes
/// it at upload; the manifest schema refuses it in an upload).
pub const API_KEY: &str = "api";

/// The manifest of a stored version (read in place: no copy of the JSON,
/// except for an API plugin's, whose derived tools are set aside).
pub fn manifest_of(v: &Version) -> Option<Manifest> {
    use serde::Deserialize as _;
    match v.manifest.as_object() {
        Some(m) if m.contains_key(API_KEY) => {
            let mut m = m.clone();
            m.remove(API_KEY);
            Manifest::deserialize(&Value::Object(m)).ok()
        }
        _ => Manifest::deserialize(&v.manifest).ok(),
    }
}

/// The servers and tools of a stored API plugin version; `Ok(None)` for
/// other plugins. `Err` names the record when what is stored does not
/// parse.
pub fn api_of(v: &Version) -> Result<Option<ApiSpec>, StoreError> {
    use serde::Deserialize as _;
    v.manifest
        .get(API_KEY)
        .map(|a| {
            ApiSpec::deserialize(a).map_err(|e| StoreError::Corrupt {
                record: format!("version {}", v.id),
                reason: format!("its API tools (manifest `{API_KEY}`) do not parse: {e}"),
            })
        })
        .transpose()
}

/// A package's manifest as the registry stores it: for an API plugin, with
/// its derived servers and tools under [`API_KEY`].
fn stored_manifest(pkg: &warden_package::Package) -> Value {
    let mut v = serde_json::to_value(&pkg.manifest).unwrap_or(Value::Null);
    if let (Some(api), Value::Object(m)) = (&pkg.api, &mut v) {
        m.insert(API_KEY.into(), serde_json::to_value(api).unwrap_or(Value::Null));
    }
    v
}

/// The Active version with the highest semantic version.
fn newest_active(versions: Vec<Version>) -> Option<Version> {
    versions
        .into_iter()
        .filter(|v| v.status == VersionStatus::Active)
        .filter_map(|v| semver::Version::parse(&v.version).ok().map(|s| (s, v)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v)
}

impl<S: Store, B: Blobs> Registry<S, B> {
    /// A registry over `store` and `blobs`; verified packages are unpacked
    /// under `code_root` for running.
    pub fn new(store: Arc<S>, blobs: Arc<B>, policy: Policy, code_root: PathBuf) -> Self {
        Registry {
            verified: std::sync::Mutex::default(),
            trusted: std::sync::Mutex::default(),
            store,
            blobs,
            policy,
            code_root,
            go: None,
        }
    }

    /// Build Go plugins at submit time with `builder`.
    pub fn with_go_builder(mut self, builder: Arc<dyn GoBuilder>) -> Self {
        self.go = Some(builder);
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The package policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn open(&self, bytes: Vec<u8>) -> R<(warden_package::Package, Vec<u8>)> {
        let policy = self.policy.clone();
        tokio::task::spawn_blocking(move || warden_package::open(&bytes, &policy).map(|p| (p, bytes)))
            .await
            .map_err(|e| RegistryError::Store(StoreError::Backend(format!("package check panicked: {e}"))))?
            .map_err(RegistryError::Invalid)
    }

    fn check_owner(actor: &Actor, plugin: &Plugin) -> R<()> {
        match actor.role {
            Role::Admin => Ok(()),
            Role::Developer if actor.name == plugin.owner => Ok(()),
            // Never the owner's name: one developer learns nothing about
            // another (reads answer 404, as for a plugin that does not exist).
            Role::Developer => Err(RegistryError::Forbidden(format!(
                "plugin {} belongs to another developer",
                plugin.code
            ))),
            Role::App => Err(RegistryError::Forbidden("apps cannot manage plugins".into())),
        }
    }

    fn lifecycle_error(v: &Version, error: LifecycleError) -> RegistryError {
        RegistryError::Lifecycle {
            plugin: v.plugin.clone(),
            version: v.version.clone(),
            error,
        }
    }

    /// A version, or `NotFound`.
    pub async fn version(&self, plugin: &str, version: &str) -> R<Version> {
        self.store
            .get_version(plugin, version)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("plugin {plugin} has no version {version}")))
    }

    /// A plugin, or `NotFound`.
    pub async fn plugin(&self, code: &str) -> R<Plugin> {
        self.store
            .get_plugin(code)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("no plugin {code}")))
    }

    /// The newest active version of a plugin (by semantic version).
    pub async fn latest_active(&self, plugin: &str) -> R<Option<Version>> {
        Ok(newest_active(self.store.list_versions(plugin).await?))
    }

    /// Upload a package: a new version (Draft), a new package for a Draft
    /// version, or a fixed package for a Rejected one (back to Pending).
    pub async fn upload(&self, actor: &Actor, bytes: Vec<u8>) -> R<Version> {
        if actor.role == Role::App {
            return Err(RegistryError::Forbidden("apps cannot upload plugins".into()));
        }
        let (pkg, bytes) = self.open(bytes).await?;
        let m = &pkg.manifest;
        if m.code.starts_with(tier::BUILTIN_PREFIX) {
            return Err(problem(
                "/code",
                format!(
                    "codes starting with `{}` are reserved for Warden's built-in plugins",
                    tier::BUILTIN_PREFIX
                ),
            ));
        }
        let existing = self.store.get_plugin(&m.code).await?;
        if let Some(existing) = &existing {
            Self::check_owner(actor, existing)?;
        }
        let size = bytes.len() as i64;
        self.blobs.put(&blob_key(&pkg.sha256), bytes).await?;
        let fields = PackageFields {
            manifest: stored_manifest(&pkg),
            sha256: pkg.sha256.clone(),
            size,
            files: serde_json::to_value(&pkg.files).unwrap_or(Value::Null),
            uploaded_by: actor.name.clone(),
        };
        let Some(current) = self.store.get_version(&m.code, &m.version).await? else {
            let new = NewVersion {
                plugin: m.code.clone(),
                // An admin's upload to a developer's plugin keeps its owner.
                owner: existing
                    .as_ref()
                    .map_or_else(|| actor.name.clone(), |p| p.owner.clone()),
                name: m.name.clone(),
                description: m.description.clone(),
                version: m.version.clone(),
                package: fields,
            };
            let mut a = audit(actor, "upload", None, Some(VersionStatus::Draft));
            a.plugin = Some(m.code.clone());
            a.version = Some(m.version.clone());
            a.detail = json!({"sha256": pkg.sha256, "size": size});
            return Ok(self.store.create_version(new, a).await?);
        };
        let to = lifecycle::next(current.status, Action::Reupload)
            .map_err(|e| Self::lifecycle_error(&current, e))?;
        let mut a = audit(actor, "upload", Some(&current), Some(to));
        a.detail = json!({"sha256": pkg.sha256, "size": size});
        if to == VersionStatus::Pending {
            // A fixed package for a rejected version goes straight back to
            // review: the checks run now.
            let report = self.report(&pkg).await?;
            let (to, reason) = self.policy_verdict(&report);
            a.to_status = Some(to.to_string());
            a.reason = reason;
            return self
                .store
                .replace_package(
                    &current.id,
                    current.revision,
                    to,
                    fields,
                    Some(report_value(&report, &pkg.sha256)),
                    a,
                )
                .await
                .map_err(|e| self.stale(&current, Action::Reupload, e));
        }
        self.store
            .replace_package(&current.id, current.revision, to, fields, None, a)
            .await
            .map_err(|e| self.stale(&current, Action::Reupload, e))
    }

    /// Turn a lost race into the lifecycle error the winner's state implies.
    fn stale(&self, v: &Version, action: Action, e: StoreError) -> RegistryError {
        match e {
            StoreError::Stale { current } => match lifecycle::next(current, action) {
                Err(error) => Self::lifecycle_error(v, error),
                Ok(_) => RegistryError::Conflict(format!(
                    "{} {} changed while this request ran (it is now {current}); retry",
                    v.plugin, v.version
                )),
            },
            other => other.into(),
        }
    }

    async fn report(&self, pkg: &warden_package::Package) -> R<warden_package::Report> {
        let previous = self.latest_active(&pkg.manifest.code).await?;
        let Some(previous) = previous else {
            return Ok(pkg.analyze(None, &self.policy));
        };
        let api = api_of(&previous)?;
        let manifest = manifest_of(&previous);
        Ok(pkg.analyze_since(manifest.as_ref().map(|m| (m, api.as_ref())), &self.policy))
    }

    fn policy_verdict(&self, report: &warden_package::Report) -> (VersionStatus, Option<String>) {
        if self.policy.reject_critical && report.has_critical {
            (
                VersionStatus::Rejected,
                Some(format!(
                    "rejected by policy: {} critical finding(s) in the report",
                    report.summary.critical
                )),
            )
        } else {
            (VersionStatus::Pending, None)
        }
    }

    /// Submit a Draft for review: run the checks (and build Go sources),
    /// store the report, move to Pending (or Rejected by policy).
    pub async fn submit(&self, actor: &Actor, plugin: &str, version: &str) -> R<Version> {
        let v = self.version(plugin, version).await?;
        Self::check_owner(actor, &self.plugin(plugin).await?)?;
        lifecycle::next(v.status, Action::Submit).map_err(|e| Self::lifecycle_error(&v, e))?;
        let bytes = self.verified_blob(&v).await?;
        let (pkg, _) = self.open(bytes).await?;
        if pkg.manifest.runtime == "go" {
            self.build_go(&v, &pkg).await?;
        }
        let report = self.report(&pkg).await?;
        let (to, reason) = self.policy_verdict(&report);
        let mut a = audit(actor, "submit", Some(&v), Some(to));
        a.reason = reason.clone();
        a.detail = json!({"summary": report.summary, "permission_changes": report.permission_changes, "sha256": v.package_sha256});
        self.store
            .set_status(
                &v.id,
                Transition {
                    from: VersionStatus::Draft,
                    revision: v.revision,
                    to,
                    reason,
                    report: Some(report_value(&report, &v.package_sha256)),
                    trust_level: None,
                },
                a,
            )
            .await
            .map_err(|e| self.stale(&v, Action::Submit, e))
    }

    async fn build_go(&self, v: &Version, pkg: &warden_package::Package) -> R<()> {
        let Some(go) = self.go.clone() else {
            return Err(problem(
                "/runtime",
                "this server cannot build Go plugins (no Go toolchain configured)",
            ));
        };
        let src = self.extract(&v.package_sha256, pkg.entries()).await?;
        let out = self.code_root.join(format!("build-{}.tmp", new_id("b")));
        let (src2, out2) = (src.clone(), out.clone());
        let built = tokio::task::spawn_blocking(move || go.build(&src2, &out2))
            .await
            .map_err(|e| RegistryError::Store(StoreError::Backend(format!("go build panicked: {e}"))))?;
        built.map_err(RegistryError::Invalid)?;
        let binary = std::fs::read(&out).map_err(|e| RegistryError::Io {
            path: out.clone(),
            source: e,
        })?;
        let _ = std::fs::remove_file(&out);
        self.blobs.put(&build_key(&v.package_sha256), binary).await?;
        Ok(())
    }

    /// Record a plugin compiled into Warden as an Active version of the
    /// owner `warden` at trust level `builtin` (at start, on every node).
    /// Its package is its manifest as JSON, stored and hash-checked like
    /// any other, so loading it is verified the same way. Registering what
    /// is already recorded does nothing; a recorded version with another
    /// manifest is a conflict (a changed built-in needs a new version).
    pub async fn register_builtin(&self, manifest: &Manifest) -> R<Version> {
        if !manifest.code.starts_with(tier::BUILTIN_PREFIX) || manifest.runtime != tier::BUILTIN_RUNTIME {
            return Err(problem(
                "/code",
                format!(
                    "a built-in's code starts with `{}` and its runtime is `{}`",
                    tier::BUILTIN_PREFIX,
                    tier::BUILTIN_RUNTIME
                ),
            ));
        }
        let package = serde_json::to_vec(manifest)
            .map_err(|e| problem("/", format!("the manifest does not serialize: {e}")))?;
        let sha256 = hex(&Sha256::digest(&package));
        let size = package.len() as i64;
        let existing = self.store.get_version(&manifest.code, &manifest.version).await?;
        if let Some(v) = existing {
            return Self::same_builtin(v, &sha256);
        }
        self.blobs.put(&blob_key(&sha256), package).await?;
        let system = Actor {
            name: tier::BUILTIN_OWNER.into(),
            ..Actor::system()
        };
        let new = NewVersion {
            plugin: manifest.code.clone(),
            owner: tier::BUILTIN_OWNER.into(),
            name: manifest.name.clone(),
            description: manifest.description.clone(),
            version: manifest.version.clone(),
            package: PackageFields {
                manifest: serde_json::to_value(manifest).unwrap_or(Value::Null),
                sha256: sha256.clone(),
                size,
                files: json!([]),
                uploaded_by: tier::BUILTIN_OWNER.into(),
            },
        };
        let mut a = audit(&system, "register", None, Some(VersionStatus::Draft));
        a.plugin = Some(manifest.code.clone());
        a.version = Some(manifest.version.clone());
        a.detail = json!({"sha256": sha256, "trust_level": TrustLevel::Builtin});
        let v = match self.store.create_version(new, a).await {
            Ok(v) => v,
            // Another node registered it first.
            Err(StoreError::Conflict(_)) => {
                let v = self.version(&manifest.code, &manifest.version).await?;
                return Self::same_builtin(v, &sha256);
            }
            Err(e) => return Err(e.into()),
        };
        let mut a = audit(&system, "activate", Some(&v), Some(VersionStatus::Active));
        a.detail = json!({"trust_level": TrustLevel::Builtin});
        match self
            .store
            .set_status(
                &v.id,
                Transition {
                    from: VersionStatus::Draft,
                    revision: v.revision,
                    to: VersionStatus::Active,
                    reason: None,
                    report: None,
                    trust_level: Some(TrustLevel::Builtin),
                },
                a,
            )
            .await
        {
            Ok(v) => Ok(v),
            Err(StoreError::Stale { .. }) => self.version(&manifest.code, &manifest.version).await,
            Err(e) => Err(e.into()),
        }
    }

    fn same_builtin(v: Version, sha256: &str) -> R<Version> {
        if v.trust_level == TrustLevel::Builtin && v.package_sha256 == sha256 {
            return Ok(v);
        }
        Err(RegistryError::Conflict(format!(
            "built-in {} {} is recorded with another manifest or trust level (package {}, this build's {sha256}): a changed built-in needs a new version",
            v.plugin, v.version, v.package_sha256
        )))
    }

    /// Approve a Pending version (admin).
    pub async fn approve(&self, actor: &Actor, plugin: &str, version: &str) -> R<Version> {
        self.review(actor, plugin, version, Action::Approve, None).await
    }

    /// Approve a Pending version (admin) at a trust level: `untrusted` as
    /// [`Registry::approve`]; `trusted` only when it carries a valid
    /// signature by a live key registered to the plugin's owner (checked
    /// again here), never otherwise; `builtin` never (only code compiled
    /// into Warden is).
    pub async fn approve_as(
        &self,
        actor: &Actor,
        plugin: &str,
        version: &str,
        trust: TrustLevel,
    ) -> R<Version> {
        match trust {
            TrustLevel::Untrusted => return self.approve(actor, plugin, version).await,
            TrustLevel::Builtin => {
                return Err(problem(
                    "/trust_level",
                    "only plugins compiled into Warden are built-in; approve as `trusted` or `untrusted`",
                ));
            }
            TrustLevel::Trusted => {}
        }
        if actor.role != Role::Admin {
            return Err(RegistryError::Forbidden(
                "only an admin may approve a version".into(),
            ));
        }
        let owner = self.plugin(plugin).await?.owner;
        let v = self.version(plugin, version).await?;
        let to = lifecycle::next(v.status, Action::Approve).map_err(|e| Self::lifecycle_error(&v, e))?;
        self.signature_holds(&owner, &v).await?.map_err(|why| {
            problem(
                "/trust_level",
                format!("{plugin} {version} cannot be approved as trusted: {why}"),
            )
        })?;
        let mut a = audit(actor, "approve", Some(&v), Some(to));
        a.detail = json!({"trust_level": TrustLevel::Trusted, "signed_by": v.signed_by});
        self.store
            .set_status(
                &v.id,
                Transition {
                    from: v.status,
                    revision: v.revision,
                    to,
                    reason: None,
                    report: None,
                    trust_level: Some(TrustLevel::Trusted),
                },
                a,
            )
            .await
            .map_err(|e| self.stale(&v, Action::Approve, e))
    }

    /// Whether `v`'s signature is by a live key registered to `owner` and
    /// signs its package hash: `Ok(Err(why))` when it does not.
    async fn signature_holds(&self, owner: &str, v: &Version) -> R<Result<(), String>> {
        let (Some(signature), Some(key_id)) = (&v.signature, &v.signed_by) else {
            return Ok(Err(
                "it carries no signature (attach one by a key registered to the plugin's owner: PUT …/signature)"
                    .into(),
            ));
        };
        let Some(key) = self.store.get_signing_key(key_id).await? else {
            return Ok(Err(format!("key {key_id} is not registered")));
        };
        Ok(signing::verify(&key, owner, &v.package_sha256, signature))
    }

    /// Register `public_key` (minisign) as a signing key of `actor` (a
    /// developer: the key vouches for the plugins they own; an admin
    /// registers keys in its own name).
    pub async fn register_signing_key(&self, actor: &Actor, name: &str, public_key: &str) -> R<SigningKey> {
        if actor.role == Role::App {
            return Err(RegistryError::Forbidden(
                "apps cannot register signing keys".into(),
            ));
        }
        let name = name.trim();
        let mut problems = Vec::new();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            problems.push(Problem {
                location: "/name".into(),
                message: "a name of 1 to 100 printable characters is required".into(),
            });
        }
        let parsed = signing::parse_public_key(public_key).map_err(|e| Problem {
            location: "/public_key".into(),
            message: e,
        });
        let (id, line) = match parsed {
            Ok(k) if problems.is_empty() => k,
            Ok(_) => return Err(RegistryError::Invalid(problems)),
            Err(p) => {
                problems.push(p);
                return Err(RegistryError::Invalid(problems));
            }
        };
        let key = SigningKey {
            id,
            owner: actor.name.clone(),
            name: name.to_owned(),
            public_key: line,
            created_at: now_ms(),
            revoked_at: None,
        };
        let mut a = audit(actor, "signing_key.register", None, None);
        a.detail = json!({"key": key.id, "name": key.name});
        self.store.insert_signing_key(key.clone(), a).await?;
        Ok(key)
    }

    /// Signing keys: a developer's own; an admin's choice of owner (all
    /// when `None`).
    pub async fn signing_keys(&self, actor: &Actor, owner: Option<&str>) -> R<Vec<SigningKey>> {
        match actor.role {
            Role::Admin => Ok(self.store.list_signing_keys(owner).await?),
            Role::Developer => Ok(self.store.list_signing_keys(Some(&actor.name)).await?),
            Role::App => Err(RegistryError::Forbidden("apps have no signing keys".into())),
        }
    }

    /// Revoke a signing key (its owner or an admin): the versions it signed
    /// stop being trusted (they stay callable in the jail). How many were
    /// demoted.
    pub async fn revoke_signing_key(&self, actor: &Actor, id: &str) -> R<u64> {
        let not_found = || RegistryError::NotFound(format!("no signing key {id}"));
        let key = self.store.get_signing_key(id).await?.ok_or_else(not_found)?;
        match actor.role {
            Role::Admin => {}
            Role::Developer if key.owner == actor.name => {}
            // Another developer's key is, to them, a key that does not exist.
            _ => return Err(not_found()),
        }
        if key.revoked_at.is_some() {
            return Err(RegistryError::Conflict(format!(
                "signing key {id} is revoked already"
            )));
        }
        let mut a = audit(actor, "signing_key.revoke", None, None);
        a.detail = json!({"key": id});
        self.store.revoke_signing_key(id, a).await?.ok_or_else(not_found)
    }

    /// Attach the owner's signature over the package hash to a draft or
    /// pending version (its owner or an admin). The signature is checked
    /// now: by a registered, live key of the plugin's owner, over this
    /// version's package.
    pub async fn sign(&self, actor: &Actor, plugin: &str, version: &str, signature: &str) -> R<Version> {
        let p = self.plugin(plugin).await?;
        Self::check_owner(actor, &p)?;
        let v = self.version(plugin, version).await?;
        if !matches!(v.status, VersionStatus::Draft | VersionStatus::Pending) {
            return Err(RegistryError::Conflict(format!(
                "{plugin} {version} is {}: signatures are attached to draft or pending versions (a reviewed version keeps what it was reviewed with)",
                v.status
            )));
        }
        let key_id = signing::signature_key_id(signature).map_err(|e| problem("/signature", e))?;
        let key = self.store.get_signing_key(&key_id).await?.ok_or_else(|| {
            problem(
                "/signature",
                format!(
                    "key {key_id} is not registered (register its public key first: POST /v1/signing-keys)"
                ),
            )
        })?;
        signing::verify(&key, &p.owner, &v.package_sha256, signature)
            .map_err(|e| problem("/signature", e))?;
        let mut a = audit(actor, "sign", Some(&v), None);
        a.detail = json!({"signed_by": key_id});
        self.store
            .set_signature(&v.id, v.revision, signature, &key_id, a)
            .await
            .map_err(|e| self.stale(&v, Action::Submit, e))
    }

    /// Reject a Pending version (admin); a reason is required.
    pub async fn reject(&self, actor: &Actor, plugin: &str, version: &str, reason: &str) -> R<Version> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(problem("/reason", "a reason is required to reject a version"));
        }
        self.review(actor, plugin, version, Action::Reject, Some(reason.to_owned()))
            .await
    }

    async fn review(
        &self,
        actor: &Actor,
        plugin: &str,
        version: &str,
        action: Action,
        reason: Option<String>,
    ) -> R<Version> {
        if actor.role != Role::Admin {
            return Err(RegistryError::Forbidden(format!(
                "only an admin may {} a version",
                action.as_str()
            )));
        }
        self.transition(actor, plugin, version, action, reason).await
    }

    /// Switch an Inactive version back on (its owner or an admin; only an
    /// admin when an admin switched it off).
    pub async fn activate(&self, actor: &Actor, plugin: &str, version: &str) -> R<Version> {
        Self::check_owner(actor, &self.plugin(plugin).await?)?;
        let v = self.version(plugin, version).await?;
        if actor.role != Role::Admin
            && let Some(reason) = v
                .status_reason
                .as_deref()
                .filter(|r| r.starts_with(ADMIN_DEACTIVATED))
        {
            return Err(RegistryError::Forbidden(format!(
                "{plugin} {version} was {reason}: only an admin may activate it again"
            )));
        }
        self.apply(actor, v, Action::Activate, None).await
    }

    /// Switch an Active version off (its owner or an admin).
    pub async fn deactivate(&self, actor: &Actor, plugin: &str, version: &str) -> R<Version> {
        Self::check_owner(actor, &self.plugin(plugin).await?)?;
        let reason = (actor.role == Role::Admin).then(|| format!("{ADMIN_DEACTIVATED} `{}`", actor.name));
        self.transition(actor, plugin, version, Action::Deactivate, reason)
            .await
    }

    async fn transition(
        &self,
        actor: &Actor,
        plugin: &str,
        version: &str,
        action: Action,
        reason: Option<String>,
    ) -> R<Version> {
        let v = self.version(plugin, version).await?;
        self.apply(actor, v, action, reason).await
    }

    /// Apply `action` to `v` as read: a compare-and-set on its state and
    /// revision, with its audit event.
    async fn apply(&self, actor: &Actor, v: Version, action: Action, reason: Option<String>) -> R<Version> {
        let to = lifecycle::next(v.status, action).map_err(|e| Self::lifecycle_error(&v, e))?;
        let mut a = audit(actor, action.as_str(), Some(&v), Some(to));
        a.reason = reason.clone();
        self.store
            .set_status(
                &v.id,
                Transition {
                    from: v.status,
                    revision: v.revision,
                    to,
                    reason,
                    report: None,
                    trust_level: None,
                },
                a,
            )
            .await
            .map_err(|e| self.stale(&v, action, e))
    }

    /// Delete a version that no installation uses (its owner or an admin).
    pub async fn delete_version(&self, actor: &Actor, plugin: &str, version: &str) -> R<()> {
        Self::check_owner(actor, &self.plugin(plugin).await?)?;
        let v = self.version(plugin, version).await?;
        let a = audit(actor, "delete", Some(&v), None);
        self.store.delete_version(&v.id, a).await.map_err(|e| match e {
            StoreError::InUse(why) => {
                RegistryError::Conflict(format!("{plugin} {version} cannot be deleted: {why}"))
            }
            other => other.into(),
        })
    }

    /// The package bytes of a version, verified against the recorded hash.
    /// A mismatch marks an Active or Inactive version Failed (audited).
    pub async fn verified_blob(&self, v: &Version) -> R<Vec<u8>> {
        let Some(bytes) = self.blobs.get(&blob_key(&v.package_sha256)).await? else {
            // Missing is not tampering (a misconfigured or lagging store):
            // the call fails, the version stays as it is.
            tracing::error!(plugin = %v.plugin, version = %v.version, "package blob missing");
            return Err(RegistryError::Store(StoreError::Backend(format!(
                "the package of {} {} is missing from the blob store",
                v.plugin, v.version
            ))));
        };
        let found = hex(&Sha256::digest(&bytes));
        if found == v.package_sha256 {
            return Ok(bytes);
        }
        tracing::error!(plugin = %v.plugin, version = %v.version, expected = %v.package_sha256, %found, "package hash mismatch");
        if lifecycle::next(v.status, Action::Fail).is_ok() {
            let mut a = audit(&Actor::system(), "fail", Some(v), Some(VersionStatus::Failed));
            let reason = format!(
                "package hash mismatch: recorded {}, found {found}",
                v.package_sha256
            );
            a.reason = Some(reason.clone());
            // A concurrent transition may win; the version is failed either way
            // on the next load.
            let _ = self
                .store
                .set_status(
                    &v.id,
                    Transition {
                        from: v.status,
                        revision: v.revision,
                        to: VersionStatus::Failed,
                        reason: Some(reason),
                        report: None,
                        trust_level: None,
                    },
                    a,
                )
                .await;
        }
        Err(RegistryError::Tampered {
            plugin: v.plugin.clone(),
            version: v.version.clone(),
            expected: v.package_sha256.clone(),
            found,
        })
    }

    /// Make a version runnable: verify its package, unpack it (once per
    /// hash) and, for Go plugins, place the built binary. Returns the code
    /// directory and the entrypoint to run.
    ///
    /// The package is re-hashed whenever its blob's stamp (inode, size,
    /// modification and change times, or the object store's ETag) differs
    /// from the one it had when it was last verified: any rewrite of the blob
    /// is caught on the next load, without hashing megabytes on every call.
    pub async fn load_for_run(&self, v: &Version) -> R<(PathBuf, String, Manifest)> {
        if v.trust_level == TrustLevel::Trusted {
            self.check_trusted(v).await?;
        }
        let key = blob_key(&v.package_sha256);
        let stamp = self.blobs.stamp(&key).await?;
        let known = stamp.is_some()
            && self
                .verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&v.package_sha256)
                == stamp.as_ref();
        let mut bytes = None;
        if !known {
            bytes = Some(self.verified_blob(v).await?);
            if let Some(stamp) = stamp {
                self.verified
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(v.package_sha256.clone(), stamp);
            }
        }
        let manifest = manifest_of(v).ok_or_else(|| problem("/", "the stored manifest no longer parses"))?;
        if manifest.runtime == tier::BUILTIN_RUNTIME
            || manifest.runtime == warden_package::manifest::API_RUNTIME
        {
            // Built-in code is in the server, and an API plugin runs no
            // code (Warden makes its requests from the tools stored with
            // the version): the package was verified above; there is
            // nothing to unpack.
            return Ok((self.code_root.clone(), manifest.entrypoint.clone(), manifest));
        }
        let unpacked = self.code_root.join(&v.package_sha256);
        let dir = if unpacked.is_dir() {
            // Unpacked from these very bytes (the directory is named by their hash).
            unpacked
        } else {
            let bytes = match bytes {
                Some(b) => b,
                None => self.verified_blob(v).await?,
            };
            let (pkg, _) = self.open(bytes).await?;
            self.extract(&v.package_sha256, pkg.entries()).await?
        };
        if manifest.runtime == "go" {
            let bin = dir.join(GO_BINARY);
            if !bin.exists() {
                let data = self
                    .blobs
                    .get(&build_key(&v.package_sha256))
                    .await?
                    .ok_or_else(|| {
                        RegistryError::NotFound(format!(
                            "{} {} has no build: submit it again",
                            v.plugin, v.version
                        ))
                    })?;
                write_file(&bin, &data, true)?;
            }
            return Ok((dir, GO_BINARY.to_owned(), manifest));
        }
        let ep = manifest.entrypoint.trim_start_matches("./").to_owned();
        Ok((dir, ep, manifest))
    }

    /// A trusted version's signature, checked again whenever it is loaded
    /// (once per record revision on this node: revoking its key demotes
    /// the version and so changes the revision).
    async fn check_trusted(&self, v: &Version) -> R<()> {
        let seen = (v.id.clone(), v.revision);
        if self
            .trusted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&seen)
        {
            return Ok(());
        }
        let owner = self.plugin(&v.plugin).await?.owner;
        if let Err(why) = self.signature_holds(&owner, v).await? {
            tracing::error!(plugin = %v.plugin, version = %v.version, trust_level = %v.trust_level,
                lifecycle_state = "failed", reason = %why, "a trusted version's signature does not hold");
            return Err(RegistryError::Signature(format!(
                "{} {} is trusted but its signature does not hold, so it does not run: {why}",
                v.plugin, v.version
            )));
        }
        self.trusted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seen);
        Ok(())
    }

    /// Unpack entries under `code_root/<sha256>` once (atomically: into a
    /// temporary directory renamed into place). World-readable, because boxes
    /// run as unprivileged uids.
    async fn extract(&self, sha256: &str, entries: &[warden_package::Entry]) -> R<PathBuf> {
        let dir = self.code_root.join(sha256);
        if dir.is_dir() {
            return Ok(dir);
        }
        let tmp = self.code_root.join(format!(".{sha256}.{}", new_id("x")));
        let io = |p: &Path| {
            let p = p.to_owned();
            move |e| RegistryError::Io { path: p, source: e }
        };
        mkdir_public(&self.code_root).map_err(io(&self.code_root))?;
        mkdir_public(&tmp).map_err(io(&tmp))?;
        for e in entries {
            // Paths were validated by the archive reader: relative, no `..`.
            let path = tmp.join(&e.path);
            write_file(&path, &e.data, e.executable)?;
        }
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => Ok(dir),
            Err(_) if dir.is_dir() => {
                // Another request unpacked it first.
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(dir)
            }
            Err(e) => Err(RegistryError::Io { path: dir, source: e }),
        }
    }

    /// Create an app (admin).
    pub async fn create_app(&self, actor: &Actor, id: &str, name: &str) -> R<App> {
        if actor.role != Role::Admin {
            return Err(RegistryError::Forbidden("only an admin may create apps".into()));
        }
        let ok = id.len() >= 2
            && id.len() <= 63
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(problem(
                "/id",
                "2 to 63 lowercase letters, digits or `-`, starting with a letter",
            ));
        }
        let app = App {
            id: id.into(),
            name: if name.trim().is_empty() {
                id.into()
            } else {
                name.trim().into()
            },
            created_at: now_ms(),
        };
        let mut a = audit(actor, "create_app", None, None);
        a.detail = json!({"app": id});
        self.store.create_app(app, a).await.map_err(|e| match e {
            StoreError::Conflict(_) => RegistryError::Conflict(format!("app `{id}` exists already")),
            other => other.into(),
        })
    }

    async fn installable(&self, plugin: &str, pin: Option<&str>) -> R<()> {
        self.plugin(plugin).await?;
        match pin {
            Some(ver) => {
                let v = self.version(plugin, ver).await?;
                if v.status != VersionStatus::Active {
                    return Err(RegistryError::Conflict(format!(
                        "{plugin} {ver} is {}: only active versions can be installed",
                        v.status
                    )));
                }
            }
            None => {
                if self.latest_active(plugin).await?.is_none() {
                    return Err(RegistryError::Conflict(format!(
                        "{plugin} has no active version to follow"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Install a plugin in an app, pinned or following the latest active
    /// version (admin).
    pub async fn install(
        &self,
        actor: &Actor,
        app: &str,
        plugin: &str,
        pin: Option<&str>,
    ) -> R<Installation> {
        if actor.role != Role::Admin {
            return Err(RegistryError::Forbidden(
                "only an admin may install plugins".into(),
            ));
        }
        self.store
            .get_app(app)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("no app `{app}`")))?;
        self.installable(plugin, pin).await?;
        let now = now_ms();
        let inst = Installation {
            id: new_id("inst"),
            app: app.into(),
            plugin: plugin.into(),
            pinned_version: pin.map(str::to_owned),
            created_at: now,
            updated_at: now,
        };
        let mut a = audit(actor, "install", None, None);
        a.plugin = Some(plugin.into());
        a.version = pin.map(str::to_owned);
        a.detail = json!({"app": app});
        self.store.install(inst, a).await.map_err(|e| match e {
            StoreError::Conflict(_) => RegistryError::Conflict(format!(
                "{plugin} is already installed in `{app}`: upgrade it instead"
            )),
            other => other.into(),
        })
    }

    /// Change an installation's pin (admin).
    pub async fn upgrade(
        &self,
        actor: &Actor,
        app: &str,
        plugin: &str,
        pin: Option<&str>,
    ) -> R<Installation> {
        if actor.role != Role::Admin {
            return Err(RegistryError::Forbidden(
                "only an admin may change installations".into(),
            ));
        }
        let inst = self.installation(app, plugin).await?;
        self.installable(plugin, pin).await?;
        let mut a = audit(actor, "upgrade", None, None);
        a.plugin = Some(plugin.into());
        a.version = pin.map(str::to_owned);
        a.detail = json!({"app": app, "from": inst.pinned_version});
        Ok(self
            .store
            .update_installation(&inst.id, pin.map(str::to_owned), a)
            .await?)
    }

    /// Remove a plugin from an app (admin).
    pub async fn uninstall(&self, actor: &Actor, app: &str, plugin: &str) -> R<()> {
        if actor.role != Role::Admin {
            return Err(RegistryError::Forbidden(
                "only an admin may uninstall plugins".into(),
            ));
        }
        let inst = self.installation(app, plugin).await?;
        let mut a = audit(actor, "uninstall", None, None);
        a.plugin = Some(plugin.into());
        a.detail = json!({"app": app});
        Ok(self.store.uninstall(&inst.id, a).await?)
    }

    /// An app's installation of a plugin, or `NotFound`.
    pub async fn installation(&self, app: &str, plugin: &str) -> R<Installation> {
        self.store
            .get_installation(app, plugin)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("{plugin} is not installed in app `{app}`")))
    }

    /// The version an app's call of `plugin` runs: the pinned one, or the
    /// latest active. Inactive, rejected or failed versions cannot be called.
    pub async fn resolve(&self, app: &str, plugin: &str) -> R<Version> {
        Ok(self.resolve_at(app, plugin).await?.0)
    }

    /// [`Registry::resolve`], with the plugin's generation read in the same
    /// statement: the resolution holds while the generation has not moved
    /// (see [`crate::store::Generation`]), which is what lets the executor
    /// keep it between requests.
    pub async fn resolve_at(&self, app: &str, plugin: &str) -> R<(Version, Generation)> {
        let installed =
            self.store.installed_versions(app, plugin).await?.ok_or_else(|| {
                RegistryError::NotFound(format!("{plugin} is not installed in app `{app}`"))
            })?;
        let generation = installed.generation;
        let version = match &installed.installation.pinned_version {
            Some(ver) => {
                let v = installed
                    .versions
                    .into_iter()
                    .find(|v| &v.version == ver)
                    .ok_or_else(|| {
                        RegistryError::NotFound(format!("plugin {plugin} has no version {ver}"))
                    })?;
                if v.status != VersionStatus::Active {
                    return Err(RegistryError::Conflict(format!(
                        "{plugin} {ver} is {}: it cannot be called",
                        v.status
                    )));
                }
                v
            }
            None => newest_active(installed.versions).ok_or_else(|| {
                RegistryError::Conflict(format!("{plugin} has no active version: it cannot be called"))
            })?,
        };
        Ok((version, generation))
    }
}

fn mkdir_public(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
}

/// Write one file of an unpacked package, creating its missing directories
/// readable by every uid (boxes run as other users); `executable` gives 0755.
pub fn write_file(path: &Path, data: &[u8], executable: bool) -> Result<(), RegistryError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e| RegistryError::Io {
        path: path.to_owned(),
        source: e,
    };
    if let Some(parent) = path.parent() {
        let mut dirs = Vec::new();
        let mut d = parent;
        while !d.exists() {
            dirs.push(d.to_owned());
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
        for d in dirs.iter().rev() {
            mkdir_public(d).map_err(io)?;
        }
    }
    std::fs::write(path, data).map_err(io)?;
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)
}
