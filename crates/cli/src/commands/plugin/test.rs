//! `warden plugin test`: pack the plugin exactly as `pack` does, then run it
//! once in the same jail and runtime the server uses (a cold box: what a
//! first call costs), checking the event against `input_schema` before and
//! the return value against `output_schema` after.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use warden_jail::{Jail, JailConfig};
use warden_package::{PlatformLimits, Problem};
use warden_runtime::{
    CallLimits, CallStatus, Code, HandlerResult, Invocation, Runner, RunnerConfig, RuntimeError, WarmConfig,
};

use super::pack::{build_package, print_report};
use super::{exit, hint, plugin_dir, print_problems};

/// Arguments of `warden plugin test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The plugin directory [default: .].
    pub dir: Option<PathBuf>,
    /// The event (a JSON file) [default: DIR/event.json].
    #[arg(long, short)]
    pub event: Option<PathBuf>,
    /// Print one JSON document (the result and the checks) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Unpack `entries` under `root` as the server does (readable by box uids).
fn write_tree(root: &Path, entries: &[warden_package::Entry]) -> anyhow::Result<()> {
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
    for e in entries {
        warden_core::registry::write_file(&root.join(&e.path), &e.data, e.executable)?;
    }
    Ok(())
}

fn human(r: &HandlerResult, violations: &[Problem]) {
    let ms = r.metrics.duration_ms;
    for (name, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        for line in text.lines() {
            eprintln!("{} {line}", crate::style::dim(&format!("{name} |")));
        }
    }
    match (r.status, violations.is_empty()) {
        (CallStatus::Success, true) => eprintln!(
            "{} in {ms:.1} ms (cpu {:.1} ms, peak memory {:.1} MiB)",
            crate::style::ok("success"),
            r.metrics.cpu_time_ms,
            r.metrics.peak_memory_mb
        ),
        (CallStatus::Success, false) => {
            print_problems("the return value does not match output_schema", violations)
        }
        (status, _) => {
            let e = r.error.as_ref();
            eprintln!(
                "{} {}: {}",
                crate::style::error(&format!("{status:?}").to_lowercase()),
                e.map_or("Error", |e| e.kind.as_str()),
                e.map_or("", |e| e.message.as_str())
            );
            if let Some(e) = e {
                if let (Some(file), Some(line)) = (&e.file, e.line) {
                    eprintln!("  at {file}:{line}");
                }
                if let Some(tb) = &e.traceback {
                    for line in tb.lines() {
                        eprintln!("  {line}");
                    }
                }
            }
        }
    }
}

/// Run the command.
pub fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let dir = plugin_dir(args.dir);
    let mut notes = Vec::new();
    let packed = match build_package(&dir, None, true, &mut notes) {
        Ok(p) => p,
        Err(f) => return Ok(f.report()),
    };
    if !args.json {
        for n in &notes {
            eprintln!("{} {n}", crate::style::dim("==>"));
        }
        print_report(&packed.package, false);
    }
    if let Some(api) = &packed.package.api {
        // An API plugin runs no code here: its tools are what there is to see.
        for t in &api.tools {
            eprintln!("  tool {} {} {}", t.name, t.method, t.path);
        }
        eprintln!(
            "{} {} is an API plugin: its {} tool(s) are valid; `plugin test` does not call them (the server makes the request: publish it, store its credential and call a tool through the API)",
            crate::style::warn("note:"),
            packed.package.manifest.code,
            api.tools.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let m = packed.package.manifest.clone();
    let event_path = args.event.clone().unwrap_or_else(|| dir.join("event.json"));
    let event_text = match std::fs::read(&event_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{} {}: {e}", crate::style::error("error:"), event_path.display());
            hint("write a sample event to event.json, or pass one with --event FILE");
            return Ok(ExitCode::from(exit::VALIDATION));
        }
    };
    let event: Value = match serde_json::from_slice(&event_text) {
        Ok(v) => v,
        Err(e) => {
            print_problems(
                &format!("{} is not JSON", event_path.display()),
                &[Problem {
                    location: "/".into(),
                    message: e.to_string(),
                }],
            );
            return Ok(ExitCode::from(exit::VALIDATION));
        }
    };
    let input = warden_package::schema::compile(&m.input_schema).map_err(anyhow::Error::msg)?;
    let output = warden_package::schema::compile(&m.output_schema).map_err(anyhow::Error::msg)?;
    let bad = input.validate(&event);
    if !bad.is_empty() {
        print_problems(
            &format!("{} does not match input_schema", event_path.display()),
            &bad,
        );
        return Ok(ExitCode::from(exit::VALIDATION));
    }

    let platform = PlatformLimits::default();
    let timeout = Duration::from_millis(m.timeout_ms(&platform));
    let limits = CallLimits {
        timeout,
        cpu_time: timeout.max(Duration::from_secs(1)),
        memory_bytes: m.memory_mb(&platform) << 20,
        pids: m.pids(&platform),
        ..CallLimits::default()
    };
    let result = if m.runtime == "wasm" {
        // In-process, exactly as the server's wasm tier runs it.
        let ep = m.entrypoint.trim_start_matches("./");
        let Some(module) = packed.package.entries().iter().find(|e| e.path == ep) else {
            anyhow::bail!("the package has no {ep}");
        };
        match warden_server::wasm_call_once(&module.data, &serde_json::to_vec(&event)?, &limits) {
            Ok(r) => r,
            Err(why) => {
                print_problems(
                    "the module cannot run in the wasm tier",
                    &[Problem {
                        location: "/entrypoint".into(),
                        message: why,
                    }],
                );
                return Ok(ExitCode::from(exit::VALIDATION));
            }
        }
    } else {
        let jail = Jail::new(JailConfig::default())?;
        let runner = Runner::new(
            jail,
            RunnerConfig {
                warm: WarmConfig {
                    enabled: false,
                    ..WarmConfig::default()
                },
                ..RunnerConfig::default()
            },
        )?;
        let code_dir = tempfile::Builder::new().prefix("warden-plugin-test-").tempdir()?;
        write_tree(code_dir.path(), packed.package.entries())?;
        let mut entrypoint = m.entrypoint.trim_start_matches("./").to_owned();
        if m.runtime == "go" {
            if !args.json {
                eprintln!(
                    "{} building with Go in the jail (no network, vendored modules only)",
                    crate::style::dim("==>")
                );
            }
            let out = code_dir.path().join(warden_core::registry::GO_BINARY);
            let build_dir = out.parent().unwrap_or(code_dir.path());
            std::fs::create_dir_all(build_dir)?;
            std::fs::set_permissions(build_dir, std::fs::Permissions::from_mode(0o755))?;
            match runner.build_go(code_dir.path(), &out) {
                Ok(_) => entrypoint = warden_core::registry::GO_BINARY.into(),
                Err(RuntimeError::BuildFailed { errors, log }) => {
                    let problems: Vec<Problem> = errors
                        .iter()
                        .map(|e| Problem {
                            location: format!("{}:{}", e.file, e.line),
                            message: e.message.clone(),
                        })
                        .collect();
                    if problems.is_empty() {
                        eprintln!("{log}");
                    }
                    print_problems("go build failed", &problems);
                    return Ok(ExitCode::from(exit::VALIDATION));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let code = Code {
            key: format!("local/{}@{}", m.code, m.version),
            runtime: m.runtime.clone(),
            dir: code_dir.path().to_owned(),
            entrypoint,
            handler: m.handler.clone(),
            layer: None,
            network: None,
        };
        runner.invoke_cold(&code, &Invocation::new(serde_json::to_vec(&event)?, limits))?
    };
    let violations = match (result.status, &result.return_value) {
        (CallStatus::Success, v) => output.validate(v.as_ref().unwrap_or(&Value::Null)),
        _ => Vec::new(),
    };
    let passed = result.status == CallStatus::Success && violations.is_empty();
    if args.json {
        let doc = json!({
            "plugin": m.code,
            "version": m.version,
            "passed": passed,
            "output_schema_violations": violations,
            "result": result,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        human(&result, &violations);
        if let Some(v) = &result.return_value {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
        }
        if passed {
            hint(&format!(
                "publish it with `warden plugin publish {} --server URL --submit`",
                dir.display()
            ));
        }
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::RUNTIME)
    })
}
