//! The review lifecycle of a plugin version, as a pure state machine.
//!
//! ```text
//! upload ─▶ Draft ──submit──▶ Pending ──approve──▶ Active ◀──activate── Inactive
//!             ▲  └─reupload─┘    │                   └──deactivate──────▲
//!             │                  └──reject──▶ Rejected ──reupload──▶ Pending
//!   Active / Inactive ──(package hash mismatch)──▶ Failed
//! ```
//!
//! Every other move is refused with an error naming the current state and
//! the moves it allows.

use serde::{Deserialize, Serialize};

/// Where a version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Uploaded, not yet submitted for review.
    Draft,
    /// Submitted; checks ran; waiting for a reviewer.
    Pending,
    /// Approved: apps can call it.
    Active,
    /// Refused by a reviewer (or by policy); a fixed package may be uploaded.
    Rejected,
    /// Approved, then switched off; can be switched back on.
    Inactive,
    /// Its stored package no longer matches the recorded hash.
    Failed,
}

impl VersionStatus {
    /// Lowercase name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Draft => "draft",
            VersionStatus::Pending => "pending",
            VersionStatus::Active => "active",
            VersionStatus::Rejected => "rejected",
            VersionStatus::Inactive => "inactive",
            VersionStatus::Failed => "failed",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<VersionStatus> {
        Some(match s {
            "draft" => VersionStatus::Draft,
            "pending" => VersionStatus::Pending,
            "active" => VersionStatus::Active,
            "rejected" => VersionStatus::Rejected,
            "inactive" => VersionStatus::Inactive,
            "failed" => VersionStatus::Failed,
            _ => return None,
        })
    }
}

impl std::fmt::Display for VersionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A move in the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Draft → Pending (runs the checks).
    Submit,
    /// Pending → Active.
    Approve,
    /// Pending → Rejected (a reason is required).
    Reject,
    /// Inactive → Active.
    Activate,
    /// Active → Inactive.
    Deactivate,
    /// A new package for the same version: Draft → Draft, Rejected → Pending.
    Reupload,
    /// Active or Inactive → Failed (the stored package was tampered with).
    Fail,
}

impl Action {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Activate => "activate",
            Action::Deactivate => "deactivate",
            Action::Reupload => "upload a new package",
            Action::Fail => "fail",
        }
    }
}

/// Every action the lifecycle knows, for "allowed moves" messages.
const ALL: [Action; 7] = [
    Action::Submit,
    Action::Approve,
    Action::Reject,
    Action::Activate,
    Action::Deactivate,
    Action::Reupload,
    Action::Fail,
];

/// A refused move.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("version is {from}: cannot {}; {}", action.as_str(), allowed_text(allowed))]
pub struct LifecycleError {
    /// The current state.
    pub from: VersionStatus,
    /// The refused action.
    pub action: Action,
    /// What the current state allows.
    pub allowed: Vec<Action>,
}

fn allowed_text(allowed: &[Action]) -> String {
    if allowed.is_empty() {
        "no move is allowed from here".to_owned()
    } else {
        format!(
            "allowed: {}",
            allowed.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
        )
    }
}

/// Where `action` leads from `from`, if anywhere.
fn target(from: VersionStatus, action: Action) -> Option<VersionStatus> {
    use Action::*;
    use VersionStatus::*;
    Some(match (from, action) {
        (Draft, Submit) => Pending,
        (Draft, Reupload) => Draft,
        (Pending, Approve) => Active,
        (Pending, Reject) => Rejected,
        (Active, Deactivate) => Inactive,
        (Inactive, Activate) => Active,
        (Rejected, Reupload) => Pending,
        (Active | Inactive, Fail) => Failed,
        _ => return None,
    })
}

/// Where `action` leads from `from`, or why it cannot.
pub fn next(from: VersionStatus, action: Action) -> Result<VersionStatus, LifecycleError> {
    target(from, action).ok_or_else(|| LifecycleError {
        from,
        action,
        // `fail` is the platform's move, not one a user can make.
        allowed: ALL
            .iter()
            .copied()
            .filter(|a| *a != Action::Fail && target(from, *a).is_some())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use VersionStatus::*;

    #[test]
    fn every_allowed_move() {
        let allowed = [
            (Draft, Submit, Pending),
            (Draft, Reupload, Draft),
            (Pending, Approve, Active),
            (Pending, Reject, Rejected),
            (Active, Deactivate, Inactive),
            (Inactive, Activate, Active),
            (Rejected, Reupload, Pending),
            (Active, Fail, Failed),
            (Inactive, Fail, Failed),
        ];
        for (from, action, to) in allowed {
            assert_eq!(next(from, action), Ok(to), "{from} {action:?}");
        }
        // Everything else is refused.
        let states = [Draft, Pending, Active, Rejected, Inactive, Failed];
        let mut refused = 0;
        for from in states {
            for action in ALL {
                if !allowed.iter().any(|(f, a, _)| *f == from && *a == action) {
                    assert!(next(from, action).is_err(), "{from} {action:?} should be refused");
                    refused += 1;
                }
            }
        }
        assert_eq!(refused, states.len() * ALL.len() - allowed.len());
    }

    #[test]
    fn refusals_name_the_state_and_the_allowed_moves() {
        assert_eq!(
            next(Active, Approve).unwrap_err().to_string(),
            "version is active: cannot approve; allowed: deactivate"
        );
        assert_eq!(
            next(Draft, Approve).unwrap_err().to_string(),
            "version is draft: cannot approve; allowed: submit, upload a new package"
        );
        assert_eq!(
            next(Failed, Activate).unwrap_err().to_string(),
            "version is failed: cannot activate; no move is allowed from here"
        );
        assert_eq!(
            next(Pending, Submit).unwrap_err().to_string(),
            "version is pending: cannot submit; allowed: approve, reject"
        );
    }

    #[test]
    fn names_round_trip() {
        for s in [Draft, Pending, Active, Rejected, Inactive, Failed] {
            assert_eq!(VersionStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(VersionStatus::parse("deleted"), None);
    }
}
