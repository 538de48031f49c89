//! `warden pool`: manage the box slots kept between runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use warden_jail::{Jail, JailConfig};

/// Arguments of `warden pool`.
#[derive(Debug, Args)]
pub struct PoolArgs {
    #[command(subcommand)]
    command: PoolCommand,
    /// Where box slots live.
    #[arg(long, global = true, env = "WARDEN_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum PoolCommand {
    /// Unmount and remove every idle slot: its network namespace, workspace,
    /// cgroup and directory. Slots in use are left alone.
    Clean,
}

/// Run the command.
pub fn pool(args: PoolArgs) -> anyhow::Result<ExitCode> {
    let jail = Jail::new(JailConfig {
        state_dir: args.state_dir,
        ..JailConfig::default()
    })?;
    match args.command {
        PoolCommand::Clean => {
            let report = jail.clean_pool()?;
            let dir = jail.state_dir();
            // Leave no empty state directory behind either.
            let _ = std::fs::remove_dir(dir.join("boxes"));
            let _ = std::fs::remove_dir(dir);
            println!("removed {} box slot(s) from {}", report.removed, dir.display());
            if report.busy > 0 {
                eprintln!(
                    "{} {} slot(s) in use were left alone",
                    crate::style::warn("note:"),
                    report.busy
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
