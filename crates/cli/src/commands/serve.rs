//! `warden serve`: the HTTP API on the embedded defaults (SQLite and a data
//! folder) or on what the configuration names.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use warden_server::config::{Config, LogFormat};

/// Arguments of `warden serve`. Every setting also has a key in the
/// configuration file and a `WARDEN_*` variable (`docs/configuration.md`);
/// flags win over variables, which win over the file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(long, short, env = "WARDEN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080] [env: WARDEN_LISTEN].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data folder: SQLite database, blobs, unpacked code [default: ./warden-data] [env: WARDEN_DATA_DIR].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB` [default: SQLite in the data folder] [env: WARDEN_DATABASE_URL].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Executions running at once [default: 16] [env: WARDEN_MAX_CONCURRENT].
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<usize>,
    /// Executions waiting; beyond it, 429 [default: 256] [env: WARDEN_MAX_QUEUE].
    #[arg(long, value_name = "N")]
    pub max_queue: Option<usize>,
    /// Log lines as JSON objects [env: WARDEN_LOG_FORMAT=json].
    #[arg(long)]
    pub log_json: bool,
}

impl ServeArgs {
    /// The configuration: file, then environment, then these flags.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut c = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &self.database_url {
            c.database_url = Some(v.clone());
        }
        if let Some(v) = self.max_concurrent {
            c.max_concurrent = v.max(1);
        }
        if let Some(v) = self.max_queue {
            c.max_queue = v;
        }
        if self.log_json {
            c.log_format = LogFormat::Json;
        }
        Ok(c)
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(crate::style::enabled()).init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Every connection is a descriptor: lift the soft limit to the hard one
/// (1,024 by default on Debian, too few for a busy server).
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::warn!(error = %e, "could not raise the open files limit");
        }
    }
}

/// Run the command.
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    init_logging(&config);
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("warden-http")
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(async move {
        let listen = config.listen;
        let data_dir = config.data_dir.clone();
        let db = warden_server::redact(&config.database_url());
        // Listen first: a second server started by mistake on the same port
        // stops here, before it touches this node's records.
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let node = config.node(addr.port());
        let started = warden_server::start(config, node.clone()).await?;
        if started.interrupted > 0 {
            tracing::warn!(
                count = started.interrupted,
                node = %node,
                "executions left unfinished by the previous run of this node were recorded as interrupted"
            );
        }
        if started.lost_sessions > 0 || started.resumed_sessions > 0 {
            tracing::warn!(
                resumed = started.resumed_sessions,
                lost = started.lost_sessions,
                node = %node,
                "sessions live in the previous run of this node were resumed from their snapshots or marked lost"
            );
        }
        // The banner ends with the "listening" line, once everything is ready.
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "warden: data in {} (database {db}, node {node})",
            data_dir.display()
        )?;
        if let Some(key) = &started.first_admin_key {
            writeln!(
                out,
                "warden: first start: created an admin API key; it is shown only this once:"
            )?;
            writeln!(out)?;
            writeln!(out, "    {key}")?;
            writeln!(out)?;
        }
        writeln!(
            out,
            "warden: listening on http://{addr} (console: http://{addr}/console/, API docs: http://{addr}/docs)"
        )?;
        out.flush()?;
        drop(out);
        if let Some(key) = &started.first_admin_key {
            eprintln!("{} export WARDEN_API_KEY={key}", crate::style::hint("hint:"));
        }
        warden_server::serve(started.state, listener, shutdown_signal())
            .await
            .context("serving")?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    });
    // The grace period is over and every record is written: whatever still
    // runs (a call stuck in a box past its deadline) must not keep the
    // process alive. Boxes die with us (their lifelines close).
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    served
}
