//! The executor's tiers: where a version's code runs, chosen by its
//! runtime and allowed by its trust level ([`warden_core::tier::may_run`]).
//!
//! * **builtin**: a Rust plugin compiled into the server
//!   ([`warden_builtins`]), called on the execution's thread; one that
//!   makes requests gets the call's egress policy ([`Tiers::builtin_policy`]).
//! * **wasm**: a WASI command module in the in-process WebAssembly tier
//!   ([`warden_wasm`]), compiled once per package and instantiated afresh
//!   for every call.
//! * **jail**: every other runtime, through the runtime's [`Runner`].
//!
//! Every tier answers with the runtime's [`HandlerResult`], so the
//! executor judges, records and counts all calls the same way.
//!
//! Must never: run a version at a tier its trust level does not allow; run
//! a wasm module that was not compiled from the verified package.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde_json::Value;
use warden_builtins::{Builtin, Failure};
use warden_core::Version;
use warden_core::tier;
use warden_jail::Status as JailStatus;
use warden_package::Manifest;
use warden_runtime::{
    CallLimits, CallStatus, Code, HandlerError, HandlerResult, Invocation, Metrics, Runner, RuntimeError,
    StdioRun, Stream, stdio_call,
};

use crate::config::TiersSection;
use crate::error::ApiError;

/// Where one call runs.
#[derive(Clone)]
pub(crate) enum Target {
    /// In the jail, through the runtime.
    Jail(Code),
    /// A built-in plugin, and the egress policy of this call (only for a
    /// built-in that makes requests; `None`: it reaches nothing).
    Builtin(Arc<dyn Builtin>, Option<Arc<warden_egress::Policy>>),
    /// A compiled wasm module.
    Wasm(warden_wasm::Module),
    /// An API plugin's tool (`crate::api_call`): its version's document,
    /// and the prepared call (the tool, its credential) with the call's
    /// egress policy, filled in by the executor for each call.
    Api(
        Arc<ApiPlugin>,
        Option<(Arc<crate::api_call::Call>, Arc<warden_egress::Policy>)>,
    ),
}

/// An API plugin's version as its calls need it.
#[derive(Debug)]
pub(crate) struct ApiPlugin {
    /// The plugin's code (for its installation's credentials).
    pub(crate) plugin: String,
    /// Its servers and tools.
    pub(crate) spec: warden_package::openapi::ApiSpec,
}

/// Why a version cannot run at its tier.
pub(crate) enum Refusal {
    /// Its trust level does not allow its runtime, or this build lacks
    /// its built-in: a 409 `version-unavailable` naming why.
    Policy(ApiError),
    /// Its wasm module does not compile (or the engine cannot start): the
    /// version fails on this node.
    WasmCompile(String),
}

/// The tiers of this node: the built-ins it was compiled with, the wasm
/// engine (made on first use) and its compiled modules.
pub(crate) struct Tiers {
    builtins: HashMap<&'static str, Arc<dyn Builtin>>,
    config: TiersSection,
    engine: OnceLock<Result<warden_wasm::Engine, String>>,
    /// Package hash → compiled module.
    modules: Mutex<HashMap<String, warden_wasm::Module>>,
    /// Non-public addresses a version's declared hosts may reach
    /// (`policy.network_allow_cidrs`).
    network_allow_cidrs: Vec<String>,
}

impl Tiers {
    /// The tiers with every built-in of this build.
    pub(crate) fn new(config: TiersSection, network_allow_cidrs: Vec<String>) -> Tiers {
        Tiers {
            builtins: warden_builtins::all()
                .into_iter()
                .map(|b| (b.spec().code, b))
                .collect(),
            config,
            engine: OnceLock::new(),
            modules: Mutex::default(),
            network_allow_cidrs,
        }
    }

    /// The built-ins' manifests, for registration at start.
    pub(crate) fn builtin_manifests(&self) -> Vec<Manifest> {
        let mut specs: Vec<_> = self.builtins.values().map(|b| b.spec()).collect();
        specs.sort_by_key(|s| s.code);
        specs
            .into_iter()
            .map(|s| Manifest {
                code: s.code.into(),
                name: s.name.into(),
                version: s.version.into(),
                kind: "builtin".into(),
                runtime: tier::BUILTIN_RUNTIME.into(),
                entrypoint: s.code.into(),
                handler: "call".into(),
                description: s.description.into(),
                author: "Warden".into(),
                input_schema: s.input_schema,
                output_schema: s.output_schema,
                limits: warden_package::ManifestLimits {
                    timeout_ms: Some(s.timeout_ms),
                    memory_mb: None,
                    pids: None,
                },
                permissions: Default::default(),
                changelog: None,
            })
            .collect()
    }

    fn engine(&self) -> Result<&warden_wasm::Engine, String> {
        self.engine
            .get_or_init(|| {
                warden_wasm::Engine::new(warden_wasm::EngineConfig {
                    max_instances: self.config.wasm_max_instances.max(1),
                    max_memory_bytes: self.config.wasm_max_memory_mb.max(1) << 20,
                    ..warden_wasm::EngineConfig::default()
                })
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Where `v` (verified and unpacked in `dir`, with `manifest`) runs for
    /// `app`; a problem naming why when its trust level does not allow its
    /// runtime, or its code cannot be prepared.
    #[allow(clippy::too_many_arguments)] // the version's facts, and the app's credentials for it
    pub(crate) fn target(
        &self,
        app: &str,
        v: &Version,
        dir: &Path,
        entrypoint: &str,
        manifest: &Manifest,
        credentials: Vec<warden_runtime::EgressCredential>,
        fingerprint: &str,
    ) -> Result<Target, Refusal> {
        let refuse = |why: String| {
            ApiError::conflict_of(
                "version-unavailable",
                "The version cannot run",
                format!("{} {} cannot run: {why}", v.plugin, v.version),
            )
        };
        tier::may_run(&manifest.runtime, v.trust_level, self.config.wasm_untrusted)
            .map_err(|why| Refusal::Policy(refuse(why)))?;
        match manifest.runtime.as_str() {
            tier::BUILTIN_RUNTIME => self
                .builtins
                .get(manifest.entrypoint.as_str())
                .cloned()
                .map(|b| Target::Builtin(b, None))
                .ok_or_else(|| Refusal::Policy(refuse("this server was built without that built-in".into()))),
            warden_package::manifest::API_RUNTIME => match warden_core::registry::api_of(v) {
                Ok(Some(spec)) => Ok(Target::Api(
                    Arc::new(ApiPlugin {
                        plugin: v.plugin.clone(),
                        spec,
                    }),
                    None,
                )),
                Ok(None) => Err(Refusal::Policy(refuse("its record has no API tools".into()))),
                Err(e) => Err(Refusal::Policy(refuse(e.to_string()))),
            },
            tier::WASM_RUNTIME => self.module(v, dir, entrypoint).map(Target::Wasm).map_err(|why| {
                tracing::warn!(plugin = %v.plugin, version = %v.version, trust_level = %v.trust_level,
                    lifecycle_state = "failed", reason = %why, "a wasm plugin version cannot run");
                Refusal::WasmCompile(why)
            }),
            _ => Ok(Target::Jail(Code {
                // Never shared across apps, plugins, versions or packages,
                // nor across writes of the credentials its boxes hold.
                key: if fingerprint.is_empty() {
                    format!("{app}/{}@{}#{}", v.plugin, v.version, v.package_sha256)
                } else {
                    format!(
                        "{app}/{}@{}#{}+{}",
                        v.plugin,
                        v.version,
                        v.package_sha256,
                        warden_package::archive::hex(&<sha2::Sha256 as sha2::Digest>::digest(
                            fingerprint.as_bytes()
                        ))
                    )
                },
                runtime: manifest.runtime.clone(),
                dir: dir.to_owned(),
                entrypoint: entrypoint.to_owned(),
                handler: manifest.handler.clone(),
                layer: None,
                // Exactly what the approved version declared; nothing
                // declared, no network.
                network: (!manifest.permissions.network.is_empty()).then(|| warden_runtime::Network {
                    hosts: manifest.permissions.network.clone(),
                    allow_cidrs: self.network_allow_cidrs.clone(),
                    credentials,
                }),
            })),
        }
    }

    /// The egress policy of one call of a built-in that makes requests: with
    /// `credential` (the one the call named, opened from the app's store),
    /// exactly that credential's own hosts, at the addresses the proxy's
    /// rules allow (the operator's `policy.network_allow_cidrs` opened);
    /// without one, no host at all. A built-in has no manifest an admin
    /// reviewed, so it gets no other grant (`docs/capabilities.md`).
    pub(crate) fn builtin_policy(
        &self,
        credential: Option<warden_runtime::EgressCredential>,
    ) -> warden_egress::Policy {
        let mut policy = warden_egress::Policy {
            // Checked when the configuration was read.
            allowed_cidrs: self
                .network_allow_cidrs
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            ..warden_egress::Policy::default()
        };
        if let Some(c) = credential {
            policy.allow = c.hosts().to_vec();
            policy.credentials = vec![c];
        }
        policy
    }

    /// The egress policy of one call of an API plugin's tool: exactly the
    /// document's hosts (`spec.hosts`), at the addresses the proxy's rules
    /// allow (the operator's `policy.network_allow_cidrs` opened), with the
    /// operation's credential when one is stored. The credential still goes
    /// only to its own hosts as well.
    pub(crate) fn api_policy(
        &self,
        spec: &warden_package::openapi::ApiSpec,
        credential: Option<warden_runtime::EgressCredential>,
    ) -> Result<warden_egress::Policy, String> {
        let mut policy = self.builtin_policy(None);
        policy.allow = spec
            .hosts
            .iter()
            .map(|h| {
                h.parse()
                    .map_err(|why| format!("the document's host `{h}` {why}"))
            })
            .collect::<Result<_, String>>()?;
        policy.credentials = credential.into_iter().collect();
        Ok(policy)
    }

    /// The compiled module of `v`'s package, compiled on first use.
    fn module(&self, v: &Version, dir: &Path, entrypoint: &str) -> Result<warden_wasm::Module, String> {
        if let Some(m) = self
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&v.package_sha256)
        {
            return Ok(m.clone());
        }
        let engine = self.engine()?;
        // Unpacked from the verified package (the folder is named by its hash).
        let bytes = std::fs::read(dir.join(entrypoint))
            .map_err(|e| format!("its module `{entrypoint}` cannot be read: {e}"))?;
        let started = Instant::now();
        let module = engine
            .compile(&bytes)
            .map_err(|e| format!("its module `{entrypoint}` does not compile for the wasm tier: {e}"))?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        metrics::histogram!("warden_plugin_load_duration_ms", "trust_level" => v.trust_level.as_str())
            .record(ms);
        tracing::info!(plugin = %v.plugin, version = %v.version, trust_level = %v.trust_level,
            lifecycle_state = "initializing", compile_ms = ms, "wasm module compiled");
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(v.package_sha256.clone(), module.clone());
        Ok(module)
    }

    /// Run `inv` at `target`. Blocks for the call's duration.
    pub(crate) fn invoke(
        &self,
        runner: &Runner,
        target: &Target,
        inv: &Invocation,
    ) -> Result<HandlerResult, RuntimeError> {
        match target {
            Target::Jail(code) => runner.invoke(code, inv),
            Target::Builtin(b, egress) => Ok(builtin_call(
                |event, limits, cx| b.call(event, limits, cx),
                egress.as_deref(),
                inv,
            )),
            Target::Api(_, Some((call, policy))) => Ok(builtin_call(
                |event, limits, cx| call.call(event, limits, cx),
                Some(policy),
                inv,
            )),
            Target::Api(p, None) => Ok(builtin_call(
                |_, _, _| {
                    Err(Failure::Handler {
                        kind: "PlatformError",
                        message: format!("the call of {} was not prepared", p.plugin),
                    })
                },
                None,
                inv,
            )),
            Target::Wasm(module) => Ok(match self.engine() {
                Ok(engine) => wasm_call(engine, module, inv),
                Err(e) => stdio_call(StdioRun {
                    status: Some(JailStatus::InternalError),
                    message: Some(format!("the wasm engine could not start: {e}")),
                    ..StdioRun::default()
                }),
            }),
        }
    }
}

/// Compile `module` and run it once on `event` under `limits`, exactly as
/// the wasm tier runs a call (for `warden plugin test`); `Err` says why the
/// module cannot run in the tier.
pub fn wasm_call_once(module: &[u8], event: &[u8], limits: &CallLimits) -> Result<HandlerResult, String> {
    let engine = warden_wasm::Engine::new(warden_wasm::EngineConfig {
        max_instances: 1,
        max_memory_bytes: limits.memory_bytes.max(1 << 20),
        ..warden_wasm::EngineConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let module = engine.compile(module).map_err(|e| e.to_string())?;
    let inv = Invocation::new(event.to_vec(), limits.clone());
    Ok(wasm_call(&engine, &module, &inv))
}

/// Run an in-process call (a built-in's, or an API plugin's tool) on
/// `inv`'s event: its result, failure and connection records as the
/// runtime's [`HandlerResult`].
fn builtin_call(
    f: impl FnOnce(&Value, warden_builtins::Limits, &mut warden_builtins::Context<'_>) -> Result<Value, Failure>,
    egress: Option<&warden_egress::Policy>,
    inv: &Invocation,
) -> HandlerResult {
    let started = Instant::now();
    let event: Value = serde_json::from_slice(&inv.event).unwrap_or(Value::Null);
    let mut cx = warden_builtins::Context {
        egress,
        records: Vec::new(),
    };
    let out = f(
        &event,
        warden_builtins::Limits {
            timeout: inv.limits.timeout,
            output_bytes: inv.limits.result_bytes,
        },
        &mut cx,
    );
    let wall = started.elapsed();
    let error = |kind: &str, message: String| HandlerError {
        kind: kind.to_owned(),
        message,
        traceback: None,
        file: None,
        line: None,
    };
    let (status, jail_status, value, err) = match out {
        Ok(v) => (CallStatus::Success, JailStatus::Ok, Some(v), None),
        Err(Failure::Handler { kind, message }) => (
            CallStatus::Failed,
            JailStatus::NonzeroExit,
            None,
            Some(error(kind, message)),
        ),
        Err(f @ Failure::Timeout(_)) => (
            CallStatus::Timeout,
            JailStatus::Timeout,
            None,
            Some(error("timeout", f.to_string())),
        ),
        Err(f @ Failure::OutputLimit(_)) => (
            CallStatus::Failed,
            JailStatus::NonzeroExit,
            None,
            Some(error("ResultTooLarge", f.to_string())),
        ),
    };
    HandlerResult {
        status,
        jail_status,
        stdout: String::new(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        exit_code: None,
        signal: None,
        execution_time: wall.as_secs_f64(),
        return_value: value,
        error: err,
        metrics: Metrics {
            duration_ms: wall.as_secs_f64() * 1000.0,
            cpu_time_ms: wall.as_secs_f64() * 1000.0,
            ..Metrics::default()
        },
        artifacts: Vec::new(),
        warm: true,
        egress: cx.records,
    }
}

fn wasm_call(engine: &warden_wasm::Engine, module: &warden_wasm::Module, inv: &Invocation) -> HandlerResult {
    let tap = inv.tap.clone().map(|tap| {
        Arc::new(move |s: warden_wasm::Stream, data: &[u8]| {
            tap(
                match s {
                    warden_wasm::Stream::Stdout => Stream::Stdout,
                    warden_wasm::Stream::Stderr => Stream::Stderr,
                },
                data,
            )
        }) as Arc<warden_wasm::Tap>
    });
    let run = engine.run(
        module,
        &warden_wasm::Call {
            stdin: &inv.event,
            timeout: inv.limits.timeout,
            memory_bytes: inv.limits.memory_bytes,
            output_bytes: inv.limits.output_bytes,
            tap,
        },
    );
    let mut trap = None;
    let (status, exit_code, message) = match run.end {
        warden_wasm::End::Exited(0) => (JailStatus::Ok, Some(0), None),
        warden_wasm::End::Exited(c) => (JailStatus::NonzeroExit, Some(c), None),
        warden_wasm::End::Trapped {
            kind,
            message,
            backtrace,
        } => {
            trap = Some(HandlerError {
                kind: match kind {
                    warden_wasm::TrapKind::StackOverflow => "StackOverflow".into(),
                    warden_wasm::TrapKind::Other => "WasmTrap".into(),
                },
                message: format!("the module trapped: {message}"),
                traceback: backtrace,
                file: None,
                line: None,
            });
            (JailStatus::NonzeroExit, None, None)
        }
        warden_wasm::End::Timeout => (
            JailStatus::Timeout,
            None,
            Some(format!(
                "the module ran past the call's wall-clock limit of {} ms",
                inv.limits.timeout.as_millis()
            )),
        ),
        warden_wasm::End::MemoryLimit { asked, cap } => (
            JailStatus::MemoryLimit,
            None,
            Some(format!(
                "the module asked for {asked} bytes of linear memory; the call's cap is {cap}"
            )),
        ),
        warden_wasm::End::Failed(why) => (JailStatus::InternalError, None, Some(why)),
    };
    let mut r = stdio_call(StdioRun {
        status: Some(status),
        exit_code,
        message,
        stdout: run.stdout,
        stderr: run.stderr,
        stdout_truncated: run.stdout_truncated,
        stderr_truncated: run.stderr_truncated,
        wall_ms: run.wall.as_secs_f64() * 1000.0,
        peak_memory_bytes: run.peak_memory_bytes,
    });
    if let Some(t) = trap {
        r.status = CallStatus::Failed;
        r.error = Some(t);
    }
    r
}
