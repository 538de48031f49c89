//! `warden plugin`: the plugin author's kit. `init` scaffolds a plugin,
//! `pack` validates it exactly as the server does and writes the zip, `test`
//! runs it locally in the same jail and runtime, `publish` uploads it;
//! `keygen` and `sign` make a publisher's key and signatures.
//!
//! Data goes to stdout, progress and diagnostics to stderr; exit codes are
//! by class: 2 usage, 3 validation (manifest, package, schemas, build),
//! 4 runtime (the handler failed), 5 network or server, 125 Warden itself.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub mod init;
pub mod pack;
pub mod publish;
pub mod sign;
pub mod test;

/// Exit codes of `warden plugin`.
pub mod exit {
    /// The manifest, the package, a schema, the event or a build is invalid.
    pub const VALIDATION: u8 = 3;
    /// The handler ran and failed (or broke its output schema).
    pub const RUNTIME: u8 = 4;
    /// The server could not be reached, or refused.
    pub const NETWORK: u8 = 5;
}

/// Arguments of `warden plugin`.
#[derive(Debug, Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Scaffold a working plugin: manifest with schemas, handler, sample
    /// event, a test, a README.
    Init(init::InitArgs),
    /// Validate a plugin as the server does and write its package (zip).
    Pack(pack::PackArgs),
    /// Run a plugin locally in the jail, checking the event and the result
    /// against its schemas.
    Test(test::TestArgs),
    /// Upload a plugin to a Warden server (and optionally sign and submit it).
    Publish(publish::PublishArgs),
    /// Make a minisign key pair for signing packages.
    Keygen(sign::KeygenArgs),
    /// Sign a package (its SHA-256) with a minisign secret key.
    Sign(sign::SignArgs),
}

/// Run the command.
pub fn plugin(args: PluginArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PluginCommand::Init(a) => init::init(a),
        PluginCommand::Pack(a) => pack::pack_command(a),
        PluginCommand::Test(a) => test::test(a),
        PluginCommand::Publish(a) => publish::publish(a),
        PluginCommand::Keygen(a) => sign::keygen(a),
        PluginCommand::Sign(a) => sign::sign(a),
    }
}

/// The Warden SDK sources built into this binary, so that `init` and `pack`
/// can give plugins the SDK matching this Warden.
pub mod sdk {
    /// Python: `warden_sdk/__init__.py`.
    pub const PYTHON: &str = include_str!("../../../../../sdk/python/warden_sdk/__init__.py");
    /// Node.js: `@warden/sdk`.
    pub const NODE_INDEX: &str = include_str!("../../../../../sdk/node/index.js");
    /// Node.js types.
    pub const NODE_TYPES: &str = include_str!("../../../../../sdk/node/index.d.ts");
    /// Node.js package file.
    pub const NODE_PACKAGE: &str = include_str!("../../../../../sdk/node/package.json");
    /// Go: `warden.dev/sdk`.
    pub const GO_PLUGIN: &str = include_str!("../../../../../sdk/go/plugin.go");
    /// Go module file.
    pub const GO_MOD: &str = include_str!("../../../../../sdk/go/go.mod");
    /// Rust: the `warden-plugin` crate's source.
    pub const RUST_LIB: &str = include_str!("../../../../../sdk/rust/src/lib.rs");
    /// Version of the SDKs.
    pub const VERSION: &str = "0.1.0";
    /// `vendor/modules.txt` lines for the Go SDK.
    pub const GO_MODULES_TXT: &str = "# warden.dev/sdk v0.1.0\n## explicit; go 1.18\nwarden.dev/sdk\n";
}

/// The plugin directory: the argument, or the current directory.
pub fn plugin_dir(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| PathBuf::from("."))
}

/// Print located problems, one per line, on stderr.
pub fn print_problems(what: &str, problems: &[warden_package::Problem]) {
    eprintln!(
        "{} {what}: {} problem{}",
        crate::style::error("error:"),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        eprintln!("  {} {}", crate::style::warn(&p.location), p.message);
    }
}

/// A `hint:` line on stderr.
pub fn hint(text: &str) {
    eprintln!("{} {text}", crate::style::hint("hint:"));
}

/// Read `manifest.json` of `dir` as loose JSON (the full check comes with
/// the package).
pub fn read_manifest(dir: &Path) -> Result<serde_json::Value, String> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}
