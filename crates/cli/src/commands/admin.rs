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

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an API key and print its secret (shown only this once).
    CreateKey {
        /// `admin`, `developer` or `app`.
        #[arg(long)]
        role: String,
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = warden_store::SqlStore::connect(&config.database_url()).await?;
        let code = match args.command {
            AdminCommand::CreateKey {
                role,
                name,
                app,
                json,
            } => {
                let role = Role::parse(&role)
                    .ok_or_else(|| anyhow::anyhow!("--role must be admin, developer or app, not `{role}`"))?;
                let name = name
                    .or_else(|| app.clone())
                    .unwrap_or_else(|| role.as_str().to_owned());
                let (key, secret) =
                    warden_server::auth::create_key(&store, "cli", &name, role, app.as_deref())
                        .await
                        .map_err(|e| anyhow::anyhow!(e.problem().detail))?;
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
