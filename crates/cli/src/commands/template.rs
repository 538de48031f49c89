//! `warden template`: a server's templates. `list` and `show` read them
//! through the HTTP API, with the server and key found as `warden plugin
//! publish` finds them (its code, reused); `build` joins them with the
//! dependency-layer builds.
//!
//! Data goes to stdout (a table, or the API's JSON with `--json`),
//! diagnostics to stderr; a build's progress goes to stderr too, as a
//! spinner with the installer's last line on a terminal, as plain lines
//! otherwise. Exit codes: 0 ok, 1 no such template, 2 usage, 3 the build
//! failed, 5 the server could not be reached or refused.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use warden_package::archive::escape;

use super::plugin::exit::{NETWORK, VALIDATION};
use super::plugin::hint;
use super::plugin::publish::{fail, http_client, problem_text, server_and_key};

/// No such template.
const NOT_FOUND: u8 = 1;

/// Arguments of `warden template`.
#[derive(Debug, Args)]
pub struct TemplateArgs {
    #[command(subcommand)]
    command: TemplateCommand,
}

#[derive(Debug, Subcommand)]
enum TemplateCommand {
    /// List the server's templates (built-ins included), by id.
    List(ListArgs),
    /// Show one template, field by field.
    Show(ShowArgs),
    /// Build a template's dependency layer (admin) and follow its log.
    Build(ShowArgs),
}

/// Where the templates are.
#[derive(Debug, Args)]
struct ServerArgs {
    /// The Warden server, e.g. `https://warden.example.com`.
    #[arg(long, env = "WARDEN_SERVER")]
    server: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A template runtime.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Runtime {
    Python,
    Node,
    Shell,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only templates of this runtime.
    #[arg(long, value_enum)]
    runtime: Option<Runtime>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The template's id.
    id: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Run the command.
pub fn template(args: TemplateArgs) -> anyhow::Result<ExitCode> {
    let server = match &args.command {
        TemplateCommand::List(a) => &a.server,
        TemplateCommand::Show(a) | TemplateCommand::Build(a) => &a.server,
    };
    let (base, key) = match server_and_key(server.server.clone(), "no server to ask") {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = http_client()?;
        let get = |path: String| fetch(&client, &base, &key, path);
        match args.command {
            TemplateCommand::List(a) => {
                let mut items = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let mut path = String::from("/v1/templates?limit=500");
                    if let Some(r) = a.runtime {
                        path.push_str(&format!("&runtime={}", runtime_name(r)));
                    }
                    if let Some(c) = &cursor {
                        path.push_str("&cursor=");
                        path.extend(form_urlencoded(c));
                    }
                    let page = match get(path).await {
                        Ok(p) => p,
                        Err(code) => return Ok(code),
                    };
                    items.extend(page["items"].as_array().cloned().unwrap_or_default());
                    cursor = page["next_cursor"].as_str().map(str::to_owned);
                    if cursor.is_none() {
                        break;
                    }
                }
                if a.server.json {
                    println!("{}", serde_json::to_string_pretty(&items)?);
                } else {
                    print!("{}", table(&items));
                }
            }
            TemplateCommand::Build(a) => return build(&client, &base, &key, &a).await,
            TemplateCommand::Show(a) => {
                let t = match get(format!(
                    "/v1/templates/{}",
                    form_urlencoded(&a.id).collect::<String>()
                ))
                .await
                {
                    Ok(t) => t,
                    Err(code) => return Ok(code),
                };
                if a.server.json {
                    println!("{}", serde_json::to_string_pretty(&t)?);
                } else {
                    print!("{}", details(&t));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `POST /v1/templates/{id}/build`, then the layer's events until it is
/// ready or failed.
async fn build(client: &reqwest::Client, base: &str, key: &str, a: &ShowArgs) -> anyhow::Result<ExitCode> {
    let id: String = form_urlencoded(&a.id).collect();
    let r = match client
        .post(format!("{base}/v1/templates/{id}/build"))
        .bearer_auth(key)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            hint("is the server running and the URL right?");
            return Ok(fail(NETWORK, &format!("cannot reach {base}: {e}")));
        }
    };
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    match status.as_u16() {
        200 | 202 => {}
        404 => return Ok(fail(NOT_FOUND, &problem_text(&v))),
        401 | 403 => {
            hint("building needs an admin key (WARDEN_API_KEY)");
            return Ok(fail(NETWORK, &problem_text(&v)));
        }
        _ => {
            return Ok(fail(
                NETWORK,
                &format!("{base} answered {status}: {}", problem_text(&v)),
            ));
        }
    }
    let mut layer = v["layer"].clone();
    if let Some(events) = v["events"].as_str() {
        match follow(client, base, key, events).await {
            Ok(Some(l)) => layer = l,
            Ok(None) => {}
            Err(e) => return Ok(fail(NETWORK, &format!("following the build: {e}"))),
        }
    }
    let state = if layer.is_null() {
        "not_needed".to_owned()
    } else {
        text(&layer["status"])
    };
    if a.server.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_summary(&a.id, &state, &layer))?
        );
    } else {
        match state.as_str() {
            "not_needed" => println!(
                "{}: no packages to install (the standard library is all)",
                escape(&a.id)
            ),
            _ => {
                println!("{}: layer {} {state}", escape(&a.id), text(&layer["id"]));
                for p in layer["lock"].as_array().into_iter().flatten() {
                    println!("  {} {}", text(&p["name"]), text(&p["version"]));
                }
            }
        }
    }
    if state == "failed" {
        let e = &layer["error"];
        let who = e["package"]
            .as_str()
            .map(|p| format!("package `{}`: ", escape(p)))
            .unwrap_or_default();
        return Ok(fail(
            VALIDATION,
            &format!("the build failed: {who}{}", text(&e["message"])),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn json_summary(template: &str, state: &str, layer: &Value) -> Value {
    serde_json::json!({"template": template, "status": state, "layer": layer})
}

/// Read the build's Server-Sent Events: output to stderr (a spinner with
/// the last line on a terminal), the layer's record at the end.
async fn follow(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
) -> anyhow::Result<Option<Value>> {
    use std::io::IsTerminal as _;
    let r = client
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await?
        .error_for_status()?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} building {elapsed} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        b
    });
    let mut events = super::sse::SseReader::new(r);
    let mut result = None;
    while let Some(e) = events.next().await? {
        match e.event.as_str() {
            "stdout" | "stderr" => {
                let text: String = serde_json::from_str(&e.data).unwrap_or_default();
                for l in text.lines().filter(|l| !l.trim().is_empty()) {
                    match &bar {
                        Some(b) => b.set_message(escape(l).into_owned()),
                        None => eprintln!("{}", escape(l)),
                    }
                }
            }
            "result" => result = serde_json::from_str(&e.data).ok(),
            _ => {}
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(result)
}

/// `GET base + path` as JSON; a failure reported on stderr, as an exit code.
async fn fetch(client: &reqwest::Client, base: &str, key: &str, path: String) -> Result<Value, ExitCode> {
    let r = client
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .map_err(|e| {
            hint("is the server running and the URL right?");
            fail(NETWORK, &format!("cannot reach {base}: {e}"))
        })?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    match status.as_u16() {
        200 => Ok(body),
        404 => Err(fail(NOT_FOUND, &problem_text(&body))),
        401 | 403 => {
            hint("check WARDEN_API_KEY: every role may read templates");
            Err(fail(NETWORK, &problem_text(&body)))
        }
        _ => Err(fail(
            NETWORK,
            &format!("{base} answered {status}: {}", problem_text(&body)),
        )),
    }
}

fn runtime_name(r: Runtime) -> &'static str {
    match r {
        Runtime::Python => "python",
        Runtime::Node => "node",
        Runtime::Shell => "shell",
    }
}

/// `s` percent-encoded for a URL's path or query (unreserved characters
/// kept).
fn form_urlencoded(s: &str) -> impl Iterator<Item = String> + '_ {
    s.bytes().map(|b| {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            (b as char).to_string()
        } else {
            format!("%{b:02X}")
        }
    })
}

/// A value the server sent, safe to print: control, bidirectional and
/// invisible characters escaped.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s).into_owned(),
        Value::Null => "-".into(),
        other => escape(&other.to_string()).into_owned(),
    }
}

/// The templates as a table: id, runtime, packages, layer, built-in, name.
fn table(items: &[Value]) -> String {
    let mut rows = vec![[
        "ID".to_owned(),
        "RUNTIME".into(),
        "PACKAGES".into(),
        "LAYER".into(),
        "BUILTIN".into(),
        "NAME".into(),
    ]];
    for t in items {
        let layer = match t["layer"].as_str() {
            Some(l) => escape(&l.chars().take(12).collect::<String>()).into_owned(),
            None => "-".into(),
        };
        rows.push([
            text(&t["id"]),
            text(&t["runtime"]),
            t["packages"].as_array().map_or(0, Vec::len).to_string(),
            layer,
            if t["builtin"] == true { "yes" } else { "no" }.into(),
            text(&t["name"]),
        ]);
    }
    let mut widths = [0; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn duration(secs: &Value) -> String {
    let Some(s) = secs.as_u64() else {
        return text(secs);
    };
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `key` and `value` as a line of [`details`].
fn field(out: &mut String, key: &str, value: &str) {
    out.push_str(format!("{key:<12} {value}").trim_end());
    out.push('\n');
}

/// One template, field by field.
fn details(t: &Value) -> String {
    let mut out = String::new();
    let yes_no = |v: &Value| if *v == true { "yes" } else { "no" };
    field(&mut out, "id:", &text(&t["id"]));
    field(&mut out, "name:", &text(&t["name"]));
    field(&mut out, "description:", &text(&t["description"]));
    field(&mut out, "runtime:", &text(&t["runtime"]));
    field(&mut out, "builtin:", yes_no(&t["builtin"]));
    field(&mut out, "revision:", &text(&t["revision"]));
    let layer = t["layer"]
        .as_str()
        .map_or_else(|| "none".into(), |l| escape(l).into_owned());
    field(&mut out, "layer:", &layer);
    let r = &t["resources"];
    let resources = format!(
        "{} cpu, {} MiB memory, {} MiB disk, {} processes, idle {}, lifetime {}",
        text(&r["cpu_cores"]),
        text(&r["memory_mb"]),
        text(&r["disk_mb"]),
        text(&r["pids"]),
        duration(&r["idle_timeout_secs"]),
        duration(&r["max_lifetime_secs"]),
    );
    field(&mut out, "resources:", &resources);
    let allow: Vec<String> = t["network"]["allow"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let network = if allow.is_empty() {
        text(&t["network"]["mode"])
    } else {
        format!("{}: {}", text(&t["network"]["mode"]), allow.join(", "))
    };
    field(&mut out, "network:", &network);
    let none = |v: &Value| {
        if v.as_array().is_some_and(|a| !a.is_empty()) || v.as_object().is_some_and(|o| !o.is_empty()) {
            ""
        } else {
            "none"
        }
    };
    field(&mut out, "packages:", none(&t["packages"]));
    for p in t["packages"].as_array().into_iter().flatten() {
        let mut s = format!("  {} {}", text(&p["ecosystem"]), text(&p["name"]));
        if let Some(v) = p["version"].as_str() {
            s.push(' ');
            s.push_str(&escape(v));
        }
        let hashes = p["hashes"].as_array().map_or(0, Vec::len);
        if hashes > 0 {
            s.push_str(&format!(
                " ({hashes} hash{})",
                if hashes == 1 { "" } else { "es" }
            ));
        }
        out.push_str(&s);
        out.push('\n');
    }
    field(&mut out, "env:", none(&t["env"]));
    for (k, v) in t["env"].as_object().into_iter().flatten() {
        out.push_str(&format!("  {}={}\n", escape(k), text(v)));
    }
    field(&mut out, "files:", none(&t["files"]));
    for f in t["files"].as_array().into_iter().flatten() {
        let mode = f["mode"]
            .as_u64()
            .map_or_else(|| "0644".to_owned(), |m| format!("{m:04o}"));
        out.push_str(&format!(
            "  {} ({}, {} characters, mode {mode})\n",
            text(&f["path"]),
            text(&f["encoding"]),
            f["content"].as_str().map_or(0, |c| c.chars().count()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> Value {
        json!({
            "id": "scraper", "name": "Scraper \u{1b}[31mred\u{202e}", "description": null,
            "runtime": "python", "builtin": false, "revision": 2, "layer": null,
            "packages": [{"ecosystem": "pip", "name": "requests", "version": ">=2,<3", "hashes": []}],
            "env": {"LANG": "C.UTF-8"},
            "resources": {"cpu_cores": 1.0, "memory_mb": 512, "disk_mb": 1024, "pids": 128,
                "idle_timeout_secs": 900, "max_lifetime_secs": 86400},
            "network": {"mode": "allow_list", "allow": ["example.com:443"]},
            "files": [{"path": "a.txt", "content": "hé", "encoding": "utf8", "mode": null}],
            "created_at": 1, "updated_at": 2,
        })
    }

    #[test]
    fn a_table_lines_up_and_escapes_what_the_server_sent() {
        let mut builtin = sample();
        builtin["id"] = json!("python-basic");
        builtin["name"] = json!("Python (standard library)");
        builtin["builtin"] = json!(true);
        builtin["layer"] = json!("0123456789abcdef0123");
        builtin["packages"] = json!([]);
        let t = table(&[sample(), builtin]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "ID            RUNTIME  PACKAGES  LAYER         BUILTIN  NAME"
        );
        assert_eq!(
            lines[1],
            "scraper       python   1         -             no       Scraper \\u{1b}[31mred\\u{202e}"
        );
        assert_eq!(
            lines[2],
            "python-basic  python   0         0123456789ab  yes      Python (standard library)"
        );
        assert!(!t.contains('\u{1b}'));
    }

    #[test]
    fn details_show_every_field() {
        let d = details(&sample());
        assert_eq!(
            d,
            "id:          scraper\n\
             name:        Scraper \\u{1b}[31mred\\u{202e}\n\
             description: -\n\
             runtime:     python\n\
             builtin:     no\n\
             revision:    2\n\
             layer:       none\n\
             resources:   1.0 cpu, 512 MiB memory, 1024 MiB disk, 128 processes, idle 15m, lifetime 1d\n\
             network:     allow_list: example.com:443\n\
             packages:\n  pip requests >=2,<3\n\
             env:\n  LANG=C.UTF-8\n\
             files:\n  a.txt (utf8, 2 characters, mode 0644)\n"
        );
    }

    #[test]
    fn ids_are_encoded_in_urls() {
        assert_eq!(form_urlencoded("a b/../c").collect::<String>(), "a%20b%2F..%2Fc");
        assert_eq!(
            form_urlencoded("python-basic").collect::<String>(),
            "python-basic"
        );
    }
}
