//! Warden's platform core: plugins and their versions, the review lifecycle,
//! apps and installations, executions and the audit trail.
//!
//! The core decides; it does not store (the [`store::Store`] and
//! [`store::Blobs`] traits, implemented by `warden-store`) and it does not
//! speak HTTP (`warden-server` parses requests into calls on the core and
//! renders its results).

pub mod event;
pub mod execution;
pub mod lifecycle;
pub mod model;
pub mod registry;
pub mod store;

pub use execution::{
    ArtifactRecord, ErrorKind, Execution, ExecutionError, ExecutionMode, ExecutionResult, ExecutionSource,
    ExecutionStatus, QueuedCall, ResultMetrics, ResultStatus, ResultViolation,
};
pub use lifecycle::{Action, LifecycleError, VersionStatus};
pub use model::{Actor, ApiKey, App, AuditEvent, Installation, Plugin, Role, Version};
pub use registry::{GoBuilder, Registry, RegistryError};
pub use store::{
    AuditFilter, Blobs, Counts, ExecutionFilter, NewAudit, NewVersion, PackageFields, Page, PluginFilter,
    Revoked, Store, StoreError, Transition,
};
