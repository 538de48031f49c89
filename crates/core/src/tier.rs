//! Trust tiers: which sandbox a version's code may run in, decided by the
//! platform (built-ins at start, everything else at review), never by the
//! package.
//!
//! | trust level | who | where its code runs |
//! |---|---|---|
//! | `builtin` | Warden itself (plugins compiled into the server) | in-process, as Rust |
//! | `trusted` | a publisher whose package carries a valid signature by a key registered to the plugin's owner, approved as trusted | the jail, or the wasm tier (in-process, in wasmtime) |
//! | `untrusted` | every other upload | the jail; the wasm tier only where an operator allows it |
//!
//! Must never: let a package choose its own trust level; run native code of
//! a third party inside the server process.

names! {
    /// How far the platform trusts a version's code.
    #[derive(Default)]
    pub enum TrustLevel {
        /// Compiled into Warden.
        Builtin = "builtin",
        /// Signed by a key registered to the owner, approved as trusted.
        Trusted = "trusted",
        /// Everything else.
        #[default]
        Untrusted = "untrusted",
    }
}

/// The manifest `runtime` of built-in plugins (never accepted in an upload).
pub const BUILTIN_RUNTIME: &str = "builtin";

/// The manifest `runtime` of WebAssembly plugins.
pub const WASM_RUNTIME: &str = "wasm";

/// The prefix of built-in plugins' codes; uploads may not use it.
pub const BUILTIN_PREFIX: &str = "warden.builtin.";

/// The owner of built-in plugins.
pub const BUILTIN_OWNER: &str = "warden";

/// Whether code for `runtime` may run at `trust`: built-in code only as a
/// built-in; wasm for trusted versions, and for untrusted ones only when
/// the operator allows it (`wasm_untrusted`); the jail's runtimes for
/// every published version. `Err` says why not.
pub fn may_run(runtime: &str, trust: TrustLevel, wasm_untrusted: bool) -> Result<(), String> {
    match (runtime, trust) {
        (BUILTIN_RUNTIME, TrustLevel::Builtin) => Ok(()),
        (BUILTIN_RUNTIME, t) => Err(format!("only built-in plugins run in-process as Rust, not {t} ones")),
        (_, TrustLevel::Builtin) => Err(format!("a built-in plugin cannot use the `{runtime}` runtime")),
        (WASM_RUNTIME, TrustLevel::Trusted) => Ok(()),
        (WASM_RUNTIME, TrustLevel::Untrusted) if wasm_untrusted => Ok(()),
        (WASM_RUNTIME, TrustLevel::Untrusted) => Err(
            "the wasm tier runs inside the server: untrusted versions may use it only when the operator sets `tiers.wasm_untrusted = true`; approve it as trusted (signed by a key registered to its owner) instead"
                .into(),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_reach_only_their_sandboxes() {
        assert!(may_run("builtin", TrustLevel::Builtin, false).is_ok());
        assert!(may_run("builtin", TrustLevel::Trusted, true).is_err());
        assert!(may_run("python3", TrustLevel::Builtin, true).is_err());
        assert!(may_run("wasm", TrustLevel::Trusted, false).is_ok());
        let refused = may_run("wasm", TrustLevel::Untrusted, false).unwrap_err();
        assert!(refused.contains("tiers.wasm_untrusted"), "{refused}");
        assert!(may_run("wasm", TrustLevel::Untrusted, true).is_ok());
        for rt in ["python3", "node", "shell", "go", "native"] {
            assert!(may_run(rt, TrustLevel::Untrusted, false).is_ok());
            assert!(may_run(rt, TrustLevel::Trusted, false).is_ok());
        }
        assert_eq!(TrustLevel::default(), TrustLevel::Untrusted);
        assert_eq!(TrustLevel::parse("trusted"), Some(TrustLevel::Trusted));
    }
}
