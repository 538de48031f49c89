//! `warden doctor`: what the kernel offers and which layers Warden will use.

use std::process::ExitCode;

use clap::Args;
use warden_jail::{BoxSpec, Features, Jail, JailConfig, Status};

use crate::style;

/// Arguments of `warden doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Skip the end-to-end check (running `/bin/true` in a box).
    #[arg(long)]
    no_self_test: bool,
}

/// Run the command.
pub fn doctor(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let (features, _) = Features::detect();
    let missing = features.missing_required();
    let self_test = if args.no_self_test || !missing.is_empty() {
        None
    } else {
        Some(self_test())
    };
    if args.json {
        let report = serde_json::json!({
            "kernel": features.kernel,
            "root": features.root,
            "mode": if features.root { "root" } else { "rootless" },
            "facilities": features.facilities,
            "landlock_abi": features.landlock_abi,
            "cgroup": features.cgroup,
            "ready": missing.is_empty(),
            "self_test": self_test.as_ref().map(|r| match r {
                Ok(ms) => serde_json::json!({"ok": true, "wall_ms": ms}),
                Err(e) => serde_json::json!({"ok": false, "error": e}),
            }),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("kernel   {}", features.kernel);
        println!(
            "mode     {}",
            if features.root {
                "root: boxes run as per-slot uids, network namespaces are pooled"
            } else {
                "rootless: every box gets its own user namespace"
            }
        );
        println!();
        for f in &features.facilities {
            let mark = if f.available {
                style::ok("ok     ")
            } else if f.required {
                style::error("MISSING")
            } else {
                style::warn("absent ")
            };
            println!("{mark}  {:<38} {}", f.name, style::dim(&f.detail));
        }
        if !features.cgroup.v1_controllers.is_empty() {
            let names: Vec<&str> = features
                .cgroup
                .v1_controllers
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            println!("         cgroup v1 controllers mounted: {}", names.join(" "));
        }
        if let Some(mp) = &features.cgroup.v2_mount {
            let ctrls = if features.cgroup.v2_controllers.is_empty() {
                "none".to_owned()
            } else {
                features.cgroup.v2_controllers.join(" ")
            };
            println!("         cgroup v2 at {}: controllers {ctrls}", mp.display());
        }
        println!();
        if missing.is_empty() {
            let mut layers = vec!["namespaces (pid, mount, net, ipc, uts, cgroup)".to_owned()];
            if !features.root {
                layers.push("user namespace".into());
            }
            layers.push("pivot_root into a read-only tmpfs root".into());
            layers.push("capabilities dropped, no_new_privs".into());
            layers.push("seccomp-bpf".into());
            if features.landlock_abi > 0 {
                layers.push(format!("landlock (ABI {})", features.landlock_abi));
            }
            match features.cgroup.chosen {
                Some(v) => layers.push(format!("cgroup {v} (memory, pids, cpu)")),
                None => layers.push("rlimits only (no usable cgroup)".into()),
            }
            layers.push("rlimits and a host-enforced wall clock".into());
            println!("Warden will use: {}.", layers.join(", "));
        } else {
            let names: Vec<&str> = missing.iter().map(|f| f.name).collect();
            println!(
                "{} Warden will not run untrusted code here: missing {}.",
                style::error("not ready:"),
                names.join(", ")
            );
        }
        match &self_test {
            Some(Ok(ms)) => println!("self-test: ran /bin/true in a box in {ms:.1} ms"),
            Some(Err(e)) => println!("{} {e}", style::error("self-test failed:")),
            None => {}
        }
    }
    let ok = missing.is_empty() && self_test.as_ref().is_none_or(|r| r.is_ok());
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn self_test() -> Result<f64, String> {
    let jail = Jail::new(JailConfig::default()).map_err(|e| format!("{e:#}"))?;
    let out = jail
        .run(BoxSpec::command(["/bin/true"]))
        .map_err(|e| format!("{e:#}"))?;
    if out.status == Status::Ok {
        Ok(out.wall_ms)
    } else {
        Err(format!("{}: {}", out.status, out.message.unwrap_or_default()))
    }
}
