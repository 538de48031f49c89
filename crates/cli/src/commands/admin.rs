//! `warden admin`: operator tasks run against the store directly (the
//! server need not be running): API keys, the OpenAPI document.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use warden_core::{NewAudit, Role, Store};
use warden_server::config::Config;

/// Arguments of `warden admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
    /// Configuration file (TOML); the store it names is used.
    #[arg(long, short, global = true, env = "WARDEN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data folder [env: WARDEN_DATA_DIR].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL [env: WARDEN_DATABASE_URL].
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
}

/// Roles of API keys.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KeyRole {
    /// Everything.
    Admin,
    /// Their own plugins.
    Developer,
    /// Call the plugins of one app (`--app`).
    App,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an API key and print its secret (shown only this once).
    CreateKey {
        /// The key's role.
        #[arg(long, value_enum)]
        role: KeyRole,
        /// Principal name: the developer's name for developer keys.
        #[arg(long)]
        name: Option<String>,
        /// The app, for app keys.
        #[arg(long)]
        app: Option<String>,
        /// Print the key and its record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by its id (`key_…`). A running server stops
    /// accepting it within `key_cache_secs`.
    RevokeKey {
        /// Key id.
        id: String,
    },
    /// List API keys (never their secrets).
    ListKeys {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run the command.
pub fn admin(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(u) = args.database_url {
        config.database_url = Some(u);
    }
    let url = config.database_url();
    // Only create-key may create the store: a typo in --data-dir must not
    // look like an empty one.
    if !matches!(args.command, AdminCommand::CreateKey { .. })
        && let Some(path) = url.strip_prefix("sqlite://")
        && !std::path::Path::new(path.split('?').next().unwrap_or(path)).is_file()
    {
        eprintln!("{} no database at {path}", crate::style::error("error:"));
        eprintln!(
            "{} point --data-dir (or --database-url) at the server's",
            crate::style::hint("hint:")
        );
        return Ok(ExitCode::from(2));
    }
    if let AdminCommand::CreateKey {
        role: KeyRole::App,
        app: None,
        ..
    } = &args.command
    {
        eprintln!("{} an app key needs --app APP", crate::style::error("error:"));
        return Ok(ExitCode::from(2));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = warden_store::SqlStore::connect(&url).await?;
        let code = match args.command {
            AdminCommand::CreateKey {
                role,
                name,
                app,
                json,
            } => {
                let role = match role {
                    KeyRole::Admin => Role::Admin,
                    KeyRole::Developer => Role::Developer,
                    KeyRole::App => Role::App,
                };
                let name = name
                    .or_else(|| app.clone())
                    .unwrap_or_else(|| role.as_str().to_owned());
                let created =
                    warden_server::auth::create_key(&store, "cli", &name, role, app.as_deref()).await;
                let (key, secret) = match created {
                    Ok(k) => k,
                    Err(e) => {
                        eprintln!("{} {e}", crate::style::error("error:"));
                        store.close().await;
                        return Ok(ExitCode::from(2));
                    }
                };
                if json {
                    let view = warden_server::views::KeyView::from(key);
                    println!("{}", serde_json::json!({"key": view, "secret": secret}));
                } else {
                    println!("{secret}");
                    eprintln!(
                        "created {} key {} for `{}`; the secret above is shown only this once",
                        role.as_str(),
                        key.id,
                        key.name
                    );
                }
                ExitCode::SUCCESS
            }
            AdminCommand::RevokeKey { id } => {
                let audit = NewAudit {
                    actor: "cli".into(),
                    action: "revoke_key".into(),
                    detail: serde_json::json!({"key": id}),
                    ..Default::default()
                };
                if store.revoke_key(&id, audit).await? {
                    eprintln!("revoked {id}");
                    ExitCode::SUCCESS
                } else {
                    eprintln!("{} no live key {id}", crate::style::error("error:"));
                    eprintln!(
                        "{} `warden admin list-keys` lists them",
                        crate::style::hint("hint:")
                    );
                    ExitCode::from(1)
                }
            }
            AdminCommand::ListKeys { json } => {
                let keys: Vec<_> = store
                    .list_keys()
                    .await?
                    .into_iter()
                    .map(warden_server::views::KeyView::from)
                    .collect();
                if json {
                    println!("{}", serde_json::to_string_pretty(&keys)?);
                } else {
                    for k in keys {
                        let state = if k.revoked_at.is_some() { "revoked" } else { "live" };
                        println!(
                            "{}\t{}\t{}\t{}\t{state}",
                            k.id,
                            k.role,
                            k.name,
                            k.app.unwrap_or_default()
                        );
                    }
                }
                ExitCode::SUCCESS
            }
        };
        store.close().await;
        Ok(code)
    })
}

/// `warden openapi`: print the API's OpenAPI document.
pub fn openapi() -> anyhow::Result<ExitCode> {
    print!("{}", warden_server::openapi_json());
    Ok(ExitCode::SUCCESS)
}
