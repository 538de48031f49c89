//! Warden's platform core: plugins and their versions, the review lifecycle,
//! apps and installations, executions, templates and their dependency
//! layers, sandbox sessions, one-shot runs, and the audit trail.
//!
//! The core decides; it does not store (the [`store::Store`] and
//! [`store::Blobs`] traits, implemented by `warden-store`) and it does not
//! speak HTTP (`warden-server` parses requests into calls on the core and
//! renders its results).

/// A closed set of names: `as_str`, `parse` and `NAMES` from one list, so
/// what is stored, shown and parsed cannot drift apart.
macro_rules! names {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $variant,)*
        }

        impl $name {
            /// Every name, in declaration order (for messages listing them).
            pub const NAMES: &'static [&'static str] = &[$($s),*];

            /// The name, as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s,)*
                }
            }

            /// Parse a stored or requested name.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($s => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod credential;
pub mod event;
pub mod execution;
pub mod layer;
pub mod lifecycle;
pub mod model;
pub mod registry;
pub mod run;
pub mod session;
pub mod signing;
pub mod snapshot;
pub mod store;
pub mod template;
pub mod tier;

pub use execution::{
    ArtifactRecord, ErrorKind, Execution, ExecutionError, ExecutionMode, ExecutionResult, ExecutionSource,
    ExecutionStatus, QueuedCall, RefusedDestination, ResultMetrics, ResultStatus, ResultViolation,
};
pub use layer::{Layer, LayerError, LayerStatus, LockedPackage, layer_id};
pub use lifecycle::{Action, LifecycleError, VersionStatus};
pub use model::{Actor, ApiKey, App, AuditEvent, Installation, Plugin, Role, Version};
pub use registry::{GoBuilder, Registry, RegistryError};
pub use run::{NewRun, RunFile, RunLanguage, RunPlan, RunPolicy, RunTemplate};
pub use session::{
    RunMode, Session, SessionFilter, SessionLanguage, SessionPolicy, SessionQuota, SessionResources,
    SessionStatus, SessionUsage,
};
pub use snapshot::{Node, Snapshot, SnapshotStatus, SnapshotTrigger};
pub use store::{
    AuditFilter, Blobs, Counts, ExecutionFilter, Generation, Installed, LayerFilter, NewAudit, NewVersion,
    PackageFields, Page, PluginFilter, Revoked, SessionMove, SnapshotFilter, Store, StoreError,
    TemplateFilter, Transition,
};
pub use template::{
    Ecosystem, NetworkMode, NetworkPolicy, PackageReq, Resources, SeedEncoding, SeedFile, Template,
    TemplateError, TemplatePolicy, TemplateRuntime, TemplateSpec, Templates,
};
pub use tier::TrustLevel;
