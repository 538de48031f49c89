//! `warden`: run untrusted code in Warden's jail, and check the host.
//!
//! Conventions (after uv): data on stdout, logs and diagnostics on stderr,
//! `hint:` lines for the next step, `NO_COLOR` respected, and exit codes by
//! class (see `docs/cli.md`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod size;

/// Warden runs untrusted code in a locked-down Linux box.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// More logging on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command in a fresh jail and report how it ended.
    Run(Box<commands::run::RunArgs>),
    /// Report the kernel facilities Warden needs and which layers it will use.
    Doctor(commands::doctor::DoctorArgs),
    /// Manage the box slots kept between runs.
    Pool(commands::pool::PoolArgs),
    /// Serve the HTTP API (SQLite and ./warden-data unless configured).
    Serve(Box<commands::serve::ServeArgs>),
    /// Operator tasks on the store: API keys.
    Admin(commands::admin::AdminArgs),
    /// Write, pack, test and publish plugins.
    Plugin(commands::plugin::PluginArgs),
    /// A server's templates: list, show.
    Template(commands::template::TemplateArgs),
    /// Sandbox sessions on a server: create, exec, ls, cp, rm, list, terminate.
    Session(commands::session::SessionArgs),
    /// Print the API's OpenAPI document.
    Openapi,
}

/// Exit codes shared by every command.
pub mod exit {
    /// Warden itself failed, or refused to run (missing kernel features).
    pub const WARDEN_FAILED: u8 = 125;
    /// Bad usage (clap uses 2 as well).
    pub const USAGE: u8 = 2;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // `serve` sets up its own logging from its configuration.
        init_logging(cli.verbose);
    }
    let result = match cli.command {
        Command::Run(args) => commands::run::run(*args),
        Command::Doctor(args) => commands::doctor::doctor(args),
        Command::Pool(args) => commands::pool::pool(args),
        Command::Serve(args) => commands::serve::serve(*args),
        Command::Admin(args) => commands::admin::admin(args),
        Command::Plugin(args) => commands::plugin::plugin(args),
        Command::Template(args) => commands::template::template(args),
        Command::Session(args) => commands::session::session(args),
        Command::Openapi => commands::admin::openapi(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{} {err:#}", style::error("error:"));
            for hint in commands::hints_for(&err) {
                eprintln!("{} {hint}", style::hint("hint:"));
            }
            ExitCode::from(exit::WARDEN_FAILED)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(style::enabled())
        .init();
}

/// Terminal styling that honours `NO_COLOR` and non-terminals.
pub mod style {
    use std::io::IsTerminal;

    /// Colour only on a terminal, and never with `NO_COLOR` set (decided
    /// once: neither changes while the command runs).
    pub fn enabled() -> bool {
        static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ENABLED.get_or_init(|| {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
        })
    }

    fn paint(code: &str, s: &str) -> String {
        if enabled() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// Red bold.
    pub fn error(s: &str) -> String {
        paint("1;31", s)
    }
    /// Yellow bold.
    pub fn warn(s: &str) -> String {
        paint("1;33", s)
    }
    /// Cyan bold.
    pub fn hint(s: &str) -> String {
        paint("1;36", s)
    }
    /// Green.
    pub fn ok(s: &str) -> String {
        paint("32", s)
    }
    /// Dim.
    pub fn dim(s: &str) -> String {
        paint("2", s)
    }
}
