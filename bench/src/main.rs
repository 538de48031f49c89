//! Warden's benchmarks, always against baselines measured in the same run.
//!
//! `warden-bench jail` prints a table: median and p99 wall time of
//! `/bin/true` and `python3 -c pass` run bare, through the jail library (what
//! the server does), through the `warden run` binary, and through bubblewrap
//! with equivalent isolation, interleaved so that drift hits every variant
//! alike; then runs per second with two concurrent callers.
//!
//! Figures are reported, never asserted: see `docs/benchmarks.md`.

use clap::{Parser, Subcommand};

mod compat;
mod handlers;
mod http;
mod instructions;
mod jail;
mod sessions;
mod sessions_http;
mod snapshots;
mod stats;
mod templates;
mod tiers;

#[derive(Debug, Parser)]
#[command(about = "Warden benchmarks against bare runs and bubblewrap")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Start cost of the jail against bare processes and bubblewrap.
    Jail {
        /// Measured runs per variant (after warm-up).
        #[arg(long, default_value = "200")]
        runs: usize,
        /// Seconds per concurrency measurement.
        #[arg(long, default_value = "3")]
        seconds: f64,
        /// A short smoke run (20 runs, 0.5 s): checks the benchmark works.
        #[arg(long)]
        quick: bool,
    },
    /// Python and Node.js handlers: cold vs warm, against bare interpreters
    /// spawned per call and the jail's command runtime.
    Handlers {
        /// Seconds per measurement cell.
        #[arg(long, default_value = "3")]
        seconds: f64,
        /// A short smoke run: checks the benchmark works.
        #[arg(long)]
        quick: bool,
    },
    /// Sandbox sessions in the runtime: start cost, executions per mode,
    /// memory per idle session, against a bubblewrap box per execution;
    /// snapshot and restore of a 100 MiB workspace against the host's tar,
    /// to and from the same object store; the same over HTTP through a
    /// release `warden serve` (create, each mode, 2 clients, idle sessions
    /// measured from the host); failover between two nodes on PostgreSQL.
    Sessions {
        /// Executions measured per mode.
        #[arg(long, default_value = "300")]
        runs: usize,
        /// Idle sessions started for the memory figures (in the runtime).
        #[arg(long, default_value = "100")]
        idle: usize,
        /// Idle sessions created over HTTP on one node for the memory
        /// figures and the extrapolation to 24 GiB.
        #[arg(long, default_value = "200")]
        idle_http: usize,
        /// Failover samples (two nodes on PostgreSQL; skipped, saying why,
        /// without `WARDEN_TEST_POSTGRES_URL`).
        #[arg(long, default_value = "5")]
        failovers: usize,
        /// A short smoke run.
        #[arg(long)]
        quick: bool,
    },
    /// Templates' dependency layers: a build in the jail against the same
    /// `pip install` bare on the host; a box's start with and without a
    /// cached layer.
    Templates {
        /// Builds measured per variant.
        #[arg(long, default_value = "5")]
        builds: usize,
        /// Box starts measured per variant.
        #[arg(long, default_value = "200")]
        runs: usize,
        /// A short smoke run.
        #[arg(long)]
        quick: bool,
    },
    /// The compatibility APIs: Dify-style Python 3 runs over HTTP with 1, 8
    /// and 50 concurrent clients; Piston-style Python and C runs; against a
    /// bubblewrap box per run.
    Compat {
        /// Seconds per concurrency level.
        #[arg(long, default_value = "5")]
        seconds: f64,
        /// Sequential runs per one-at-a-time row.
        #[arg(long, default_value = "100")]
        runs: usize,
        /// A short smoke run.
        #[arg(long)]
        quick: bool,
    },
    /// Trust tiers: one trivial plugin as a built-in, a wasm module and a
    /// warm jailed Python handler, in the runtime and over HTTP beside the
    /// HTTP floor.
    Tiers {
        /// Calls measured per tier and place.
        #[arg(long, default_value = "2000")]
        calls: usize,
        /// A short smoke run (100 calls).
        #[arg(long)]
        quick: bool,
    },
    /// The HTTP API: latency over the runtime's warm call, and a burst of
    /// concurrent execute requests with a record check.
    Http {
        /// Sequential calls measured.
        #[arg(long, default_value = "2000")]
        calls: usize,
        /// Concurrent requests in the burst.
        #[arg(long, default_value = "1000")]
        burst: usize,
        /// A short smoke run (100 calls, a burst of 100).
        #[arg(long)]
        quick: bool,
    },
    /// Instruction counts (valgrind's callgrind) of fixed pieces of work
    /// against the committed baseline `bench/instructions.json`; fails on a
    /// growth of more than 15%. CI runs it.
    Instructions {
        /// Run one case in this process (what the check runs under valgrind).
        #[arg(long, value_name = "NAME")]
        case: Option<String>,
        /// Rewrite the baseline with this run's counts.
        #[arg(long)]
        write_baseline: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Bench::Jail { runs, seconds, quick } => {
            let (runs, seconds) = if quick { (20, 0.5) } else { (runs, seconds) };
            jail::run(runs, seconds)
        }
        Bench::Handlers { seconds, quick } => handlers::run(if quick { 0.3 } else { seconds }),
        Bench::Sessions {
            runs,
            idle,
            idle_http,
            failovers,
            quick,
        } => {
            let (runs, idle) = if quick { (10, 3) } else { (runs, idle) };
            sessions::run(runs, idle)?;
            let (mib, snaps) = if quick { (8, 1) } else { (100, 5) };
            {
                let jail = warden_jail::Jail::new(warden_jail::JailConfig::default())?;
                let runner = warden_runtime::Runner::new(jail, warden_runtime::RunnerConfig::default())?;
                snapshots::run(&runner, mib, snaps)?;
            }
            let (idle_http, seconds, failovers) = if quick {
                (3, 0.5, 1)
            } else {
                (idle_http, 3.0, failovers)
            };
            sessions_http::run(runs, idle_http, seconds)?;
            sessions_http::failover(failovers)
        }
        Bench::Templates { builds, runs, quick } => {
            let (builds, runs) = if quick { (1, 10) } else { (builds, runs) };
            templates::run(builds, runs)
        }
        Bench::Compat { seconds, runs, quick } => {
            let (seconds, runs) = if quick { (0.5, 5) } else { (seconds, runs) };
            compat::run(seconds, runs)
        }
        Bench::Tiers { calls, quick } => tiers::run(if quick { 100 } else { calls }),
        Bench::Instructions { case, write_baseline } => match case {
            Some(name) => instructions::case(&name),
            None => instructions::run(write_baseline),
        },
        Bench::Http { calls, burst, quick } => {
            let (calls, burst) = if quick { (100, 100) } else { (calls, burst) };
            http::run(calls, burst)
        }
    }
}
