//! Warden's WebAssembly tier: a plugin compiled to a WASI preview 1 command
//! module runs inside the Warden process, in `wasmtime`, with the event on
//! stdin and its result on stdout.
//!
//! What keeps a module in its place, layer by layer:
//!
//! * **Memory safety of the engine**: a module sees only its own linear
//!   memory; every access is checked by wasmtime (guard pages and bounds
//!   checks), and this crate reads and writes guest memory only through
//!   bounds-checked slices ([`wasi`]).
//! * **Capabilities**: a module can call only the host functions this tier
//!   grants: stdin, stdout, stderr, clocks, randomness, arguments and an
//!   empty environment ([`wasi::GRANTED`]). The WASI functions that reach
//!   files or sockets are linked to stubs that answer `ENOTCAPABLE` and touch
//!   nothing; any other import refuses the module at compile time, naming it.
//! * **A fresh instance per call**: nothing a call leaves in memory, globals
//!   or tables is seen by the next one. Compiled code is shared (it is
//!   read-only).
//! * **Limits**: the wall clock by epoch interruption (a ticker thread
//!   advances the engine's epoch; a call past its deadline traps), the
//!   call's memory by a resource limiter (growth past the cap fails and the
//!   call ends `memory_limit`), the wasm stack by `max_wasm_stack` (a deep
//!   recursion traps), tables by a limiter cap, output per stream by a cap
//!   (the rest is dropped), instances by the pooling allocator's pool.
//!
//! Every way a call can end is a value ([`End`]); none of them unwinds into
//! the server.
//!
//! Must never: give a module a file, a socket, the environment or another
//! call's state; block without the call's deadline; use `unsafe`.

pub mod wasi;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{
    Config, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Memory, PoolingAllocationConfig,
    ResourceLimiter, Store, Strategy, Trap, ValType, WasmBacktrace,
};

/// How the engine is built: the pool's size and the ceilings every call's
/// own limits stay under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Instances alive at once (the pooling allocator's pool): calls beyond
    /// it fail to instantiate, so size it above the calls the caller admits.
    pub max_instances: u32,
    /// Largest linear memory any call may have; a call's own cap
    /// ([`Call::memory_bytes`]) is at most this.
    pub max_memory_bytes: u64,
    /// The wasm stack of a call: deeper recursion traps (`StackOverflow`).
    /// Must fit in the stack of the threads that run calls.
    pub max_stack_bytes: usize,
    /// How often the epoch advances: a call's wall clock is enforced to
    /// within one tick.
    pub tick: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_instances: 64,
            max_memory_bytes: 1 << 30,
            max_stack_bytes: 512 << 10,
            tick: Duration::from_millis(10),
        }
    }
}

/// Elements a call's tables may hold in all (each is a pointer).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Longest backtrace kept in a trap's report.
const MAX_BACKTRACE: usize = 4000;

/// Why an engine cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration.
    #[error("cannot configure wasmtime: {0}")]
    Config(String),
    /// The epoch ticker thread could not start.
    #[error("cannot start the epoch ticker")]
    Ticker(#[source] std::io::Error),
}

/// Why a module cannot run in this tier; each names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// Not a valid WebAssembly module (the validator's or compiler's words).
    #[error("not a valid WebAssembly module: {0}")]
    Invalid(String),
    /// A component-model component rather than a core module.
    #[error(
        "this is a WebAssembly component; the wasm tier runs core modules (WASI preview 1 commands, e.g. `clang --target=wasm32-wasi`)"
    )]
    Component,
    /// An import the tier does not grant.
    #[error("imports `{module}.{name}`, which the wasm tier does not grant: {why}")]
    Import {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
        /// Why it is refused.
        why: String,
    },
    /// A missing or ill-typed export.
    #[error("{0}")]
    Export(String),
}

/// A stream a module writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Descriptor 1: the result.
    Stdout,
    /// Descriptor 2: diagnostics.
    Stderr,
}

/// Receives output as a module writes it (what is kept within the cap).
/// Called on the thread running the call: it must not block.
pub type Tap = dyn Fn(Stream, &[u8]) + Send + Sync;

/// One call.
#[derive(Clone, Default)]
pub struct Call<'a> {
    /// What the module reads on descriptor 0 (the event).
    pub stdin: &'a [u8],
    /// Wall-clock limit, instantiation included.
    pub timeout: Duration,
    /// Most linear memory, bytes (at most [`EngineConfig::max_memory_bytes`]).
    pub memory_bytes: u64,
    /// Bytes kept per output stream; the rest is dropped and the stream
    /// marked truncated.
    pub output_bytes: usize,
    /// Where output goes as it is written, if anywhere.
    pub tap: Option<Arc<Tap>>,
}

/// How a trap is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// The wasm stack was exhausted (deep recursion).
    StackOverflow,
    /// Any other trap: `unreachable`, an out-of-bounds access, a division
    /// by zero, an indirect call of the wrong type, …
    Other,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// `_start` returned (code 0) or the module called `proc_exit(code)`.
    Exited(i32),
    /// The module trapped.
    Trapped {
        /// Which kind of trap.
        kind: TrapKind,
        /// wasmtime's description (`wasm \`unreachable\` instruction executed`).
        message: String,
        /// The wasm frames, innermost first, when known.
        backtrace: Option<String>,
    },
    /// The wall clock ran out.
    Timeout,
    /// The module asked for more memory than the call's cap (at
    /// instantiation, or by `memory.grow`), and then failed.
    MemoryLimit {
        /// Bytes it asked for.
        asked: u64,
        /// The call's cap.
        cap: u64,
    },
    /// The platform could not run the call (the instance pool is full, an
    /// internal error); nothing of the module ran, or it was stopped.
    Failed(String),
}

/// What a call did.
#[derive(Debug, Clone)]
pub struct Run {
    /// How it ended.
    pub end: End,
    /// Descriptor 1, up to the cap.
    pub stdout: Vec<u8>,
    /// Descriptor 2, up to the cap.
    pub stderr: Vec<u8>,
    /// stdout passed its cap.
    pub stdout_truncated: bool,
    /// stderr passed its cap.
    pub stderr_truncated: bool,
    /// Wall-clock time, instantiation included.
    pub wall: Duration,
    /// Largest linear memory the call had, bytes.
    pub peak_memory_bytes: u64,
}

/// A module compiled and linked for this tier: instantiated afresh for
/// every call. Cheap to clone; the compiled code is shared.
#[derive(Clone)]
pub struct Module {
    pre: InstancePre<Host>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").finish_non_exhaustive()
    }
}

/// The wasm tier's engine: one per process, shared by every call. Cheap to
/// clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: wasmtime::Engine,
    config: EngineConfig,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A module's request to end the call (`proc_exit`), carried as the error
/// that unwinds the wasm stack.
#[derive(Debug)]
pub(crate) struct Exit(pub(crate) i32);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exited with code {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// One output stream of a call.
#[derive(Default)]
pub(crate) struct Output {
    pub(crate) data: Vec<u8>,
    pub(crate) truncated: bool,
}

/// The memory and table limits of one call, and what it used.
pub(crate) struct Limits {
    memory_cap: usize,
    peak: usize,
    refused: Option<usize>,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            // `memory.grow` answers -1 and the module decides; if it then
            // fails, the call ends `memory_limit`.
            self.refused = Some(self.refused.map_or(desired, |r| r.max(desired)));
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// What the host keeps for one call: its stdin, outputs and limits. Lives in
/// the call's store and dies with it.
pub(crate) struct Host {
    pub(crate) stdin: Vec<u8>,
    pub(crate) read: usize,
    pub(crate) out: [Output; 2],
    pub(crate) cap: usize,
    pub(crate) tap: Option<Arc<Tap>>,
    pub(crate) memory: Option<Memory>,
    pub(crate) limits: Limits,
    pub(crate) started: Instant,
}

impl Host {
    /// Keep what fits of `data` on `stream`; the module is told all of it
    /// was written (as a box's output past its cap is dropped).
    pub(crate) fn write(&mut self, stream: Stream, data: &[u8]) {
        let out = &mut self.out[stream as usize];
        let room = self.cap.saturating_sub(out.data.len());
        let kept = &data[..data.len().min(room)];
        if kept.len() < data.len() {
            out.truncated = true;
        }
        if kept.is_empty() {
            return;
        }
        out.data.extend_from_slice(kept);
        if let Some(tap) = &self.tap {
            tap(stream, kept);
        }
    }
}

impl Engine {
    /// An engine with `config`: cranelift, the pooling allocator sized by
    /// it, epoch interruption with a ticker thread (stopped when the last
    /// clone of the engine is dropped).
    pub fn new(config: EngineConfig) -> Result<Engine, EngineError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(config.max_instances)
            .total_memories(config.max_instances)
            .total_tables(config.max_instances)
            .max_memories_per_module(1)
            .max_tables_per_module(4)
            .table_elements(MAX_TABLE_ELEMENTS)
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX));
        let mut c = Config::new();
        c.strategy(Strategy::Cranelift)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_stack_bytes)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = wasmtime::Engine::new(&c).map_err(|e| EngineError::Config(format!("{e:#}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ticking, flag, tick) = (engine.clone(), stop.clone(), config.tick);
        std::thread::Builder::new()
            .name("warden-wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::sleep(tick);
                    ticking.increment_epoch();
                }
            })
            .map_err(EngineError::Ticker)?;
        Ok(Engine {
            inner: Arc::new(Inner { engine, config, stop }),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Compile and link `bytes` for this tier: a valid core module that
    /// imports only what the tier grants and exports `_start` and `memory`.
    /// Slow (milliseconds to seconds): callers cache the result.
    pub fn compile(&self, bytes: &[u8]) -> Result<Module, CompileError> {
        // A component's preamble is `\0asm` with layer 1 (bytes 6..8).
        if bytes.len() >= 8 && bytes.starts_with(b"\0asm") && bytes[6..8] == [1, 0] {
            return Err(CompileError::Component);
        }
        let module = wasmtime::Module::from_binary(&self.inner.engine, bytes)
            .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
        let mut linker: Linker<Host> = Linker::new(&self.inner.engine);
        wasi::define(&mut linker)
            .map_err(|e| CompileError::Invalid(format!("linking the host functions: {e:#}")))?;
        for import in module.imports() {
            let (m, name) = (import.module(), import.name());
            let refuse = |why: &str| CompileError::Import {
                module: m.to_owned(),
                name: name.to_owned(),
                why: why.to_owned(),
            };
            if m != wasi::MODULE {
                return Err(refuse(&format!(
                    "a module may import only `{}` functions",
                    wasi::MODULE
                )));
            }
            let ExternType::Func(ty) = import.ty() else {
                return Err(refuse(
                    "only functions may be imported (a module brings its own memory, tables and globals)",
                ));
            };
            if wasi::GRANTED.iter().any(|(n, _)| *n == name) {
                continue;
            }
            if !wasi::REFUSED.iter().any(|(n, _)| *n == name) {
                return Err(refuse("it is not a WASI preview 1 function"));
            }
            if ty.results().len() != 1 || !matches!(ty.results().next(), Some(ValType::I32)) {
                return Err(refuse(
                    "it is declared with the wrong type (WASI functions return an i32 errno)",
                ));
            }
            linker
                .func_new(m, name, ty, |_, _, results| {
                    results[0] = wasmtime::Val::I32(wasi::ENOTCAPABLE);
                    Ok(())
                })
                .map_err(|e| refuse(&format!("{e:#}")))?;
        }
        match module.get_export("_start") {
            Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {}
            Some(_) => {
                return Err(CompileError::Export(
                    "`_start` must be a function taking and returning nothing".into(),
                ));
            }
            None => {
                return Err(CompileError::Export(
                    "no `_start` export: the wasm tier runs WASI commands (a `main` reading stdin and writing stdout), not reactors or libraries".into(),
                ));
            }
        }
        if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
            return Err(CompileError::Export(
                "no `memory` export: the host reads and writes the module's I/O buffers there".into(),
            ));
        }
        let pre = linker.instantiate_pre(&module).map_err(|e| {
            let text = format!("{e:#}");
            match module
                .imports()
                .find(|i| text.contains(&format!("{}::{}", i.module(), i.name())))
            {
                Some(i) => CompileError::Import {
                    module: i.module().to_owned(),
                    name: i.name().to_owned(),
                    why: format!("it is declared with the wrong type ({text})"),
                },
                None => CompileError::Invalid(text),
            }
        })?;
        Ok(Module { pre })
    }

    /// Run `module` once: a fresh instance, `call`'s stdin, limits and
    /// tap. Never panics on what the module does; every end is an [`End`].
    pub fn run(&self, module: &Module, call: &Call<'_>) -> Run {
        let cap =
            usize::try_from(call.memory_bytes.min(self.inner.config.max_memory_bytes)).unwrap_or(usize::MAX);
        let started = Instant::now();
        let host = Host {
            stdin: call.stdin.to_vec(),
            read: 0,
            out: [Output::default(), Output::default()],
            cap: call.output_bytes,
            tap: call.tap.clone(),
            memory: None,
            limits: Limits {
                memory_cap: cap,
                peak: 0,
                refused: None,
            },
            started,
        };
        let mut store = Store::new(&self.inner.engine, host);
        store.limiter(|h| &mut h.limits);
        let tick = self.inner.config.tick.as_nanos().max(1);
        let ticks = call.timeout.as_nanos().div_ceil(tick) + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        let outcome = module.pre.instantiate(&mut store).and_then(|instance| {
            store.data_mut().memory = instance.get_memory(&mut store, "memory");
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call(&mut store, ())
        });
        let wall = started.elapsed();
        let end = match outcome {
            Ok(()) => End::Exited(0),
            Err(e) => classify(&e, &store.data().limits, cap),
        };
        let host = store.into_data();
        let [stdout, stderr] = host.out;
        Run {
            end,
            stdout: stdout.data,
            stderr: stderr.data,
            stdout_truncated: stdout.truncated,
            stderr_truncated: stderr.truncated,
            wall,
            peak_memory_bytes: host.limits.peak as u64,
        }
    }
}

/// How a call that did not return from `_start` ended.
fn classify(e: &wasmtime::Error, limits: &Limits, cap: usize) -> End {
    let memory_limit = |asked: usize| End::MemoryLimit {
        asked: asked as u64,
        cap: cap as u64,
    };
    if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
        return match (code, limits.refused) {
            (0, _) | (_, None) => End::Exited(*code),
            (_, Some(asked)) => memory_limit(asked),
        };
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match (trap, limits.refused) {
            (Trap::Interrupt, _) => End::Timeout,
            (_, Some(asked)) => memory_limit(asked),
            (t, None) => End::Trapped {
                kind: if *t == Trap::StackOverflow {
                    TrapKind::StackOverflow
                } else {
                    TrapKind::Other
                },
                message: t.to_string(),
                backtrace: e.downcast_ref::<WasmBacktrace>().map(|b| {
                    let mut s = b.to_string();
                    if s.len() > MAX_BACKTRACE {
                        let mut at = MAX_BACKTRACE;
                        while !s.is_char_boundary(at) {
                            at -= 1;
                        }
                        s.truncate(at);
                        s.push('…');
                    }
                    s
                }),
            },
        };
    }
    match limits.refused {
        // Instantiation refused: the module's initial memory is over the cap.
        Some(asked) => memory_limit(asked),
        None => End::Failed(format!("{e:#}")),
    }
}
