//! `warden session`: sandbox sessions for a person at a terminal, through
//! the HTTP API (`/v1/sessions`), with the server and key found as
//! `warden plugin publish` finds them.
//!
//! `create` prints the new session's id (so `SID=$(warden session create)`
//! works); `exec` runs code and streams its output live (the execution's
//! Server-Sent Events: its stdout to stdout, its stderr to stderr), then
//! exits with the execution's exit code; `cp` copies a file into or out of
//! the workspace (`SID:path` names the session's side); `ls`, `rm`, `list`
//! and `terminate` do what they say. Data goes to stdout, diagnostics and
//! the server's problems (detail and located errors) to stderr.
//!
//! Exit codes of everything but `exec`'s own: 0 ok, 1 no such session or
//! file, 2 usage, 3 the server refused the request as invalid (422, 409,
//! 413), 5 the server could not be reached or refused otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use warden_package::archive::escape;

use super::plugin::exit::{NETWORK, VALIDATION};
use super::plugin::hint;
use super::plugin::publish::{fail, http_client, problem_text, server_and_key};
use super::sse::SseReader;

/// No such session, file or execution.
const NOT_FOUND: u8 = 1;

/// Arguments of `warden session`.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// The Warden server, e.g. `https://warden.example.com`.
    #[arg(long, env = "WARDEN_SERVER", global = true)]
    server: Option<String>,
    #[command(subcommand)]
    command: SessionCommand,
}

#[derive(Debug, Subcommand)]
enum SessionCommand {
    /// Start a session; prints its id.
    Create(CreateArgs),
    /// Run code in a session, its output streamed live; exits with its exit code.
    Exec(ExecArgs),
    /// List a folder of a session's workspace.
    Ls(LsArgs),
    /// Copy a file into (`cp FILE SID:PATH`) or out of (`cp SID:PATH FILE`) a session.
    Cp(CpArgs),
    /// Remove a file or a folder (with what it holds) from a session's workspace.
    Rm(RmArgs),
    /// List sessions, newest first.
    List(ListArgs),
    /// End a session (its record stays).
    Terminate(IdArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// The template (`python-basic` when absent).
    #[arg(long, short)]
    template: Option<String>,
    /// The app the session belongs to (admin keys only).
    #[arg(long)]
    app: Option<String>,
    /// CPU cores.
    #[arg(long)]
    cpu: Option<f64>,
    /// Memory of all its processes together, MiB.
    #[arg(long)]
    memory_mb: Option<u64>,
    /// Workspace size, MiB.
    #[arg(long)]
    disk_mb: Option<u64>,
    /// Processes and threads.
    #[arg(long)]
    pids: Option<u32>,
    /// Idle this long (seconds), it expires.
    #[arg(long)]
    idle_timeout: Option<u64>,
    /// It expires this long (seconds) after it started.
    #[arg(long)]
    max_lifetime: Option<u64>,
    /// An environment variable of every execution, `NAME=VALUE` (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// An extra package, `[pip:|npm:]NAME[VERSION]` (`pip:six==1.16.0`,
    /// `npm:left-pad@^1.3`; pip when no ecosystem is given; repeatable).
    #[arg(long = "package", short = 'p', value_name = "SPEC")]
    packages: Vec<String>,
    /// A host the session may reach (`host[:port]`, repeatable; the
    /// template must allow it).
    #[arg(long = "allow", value_name = "HOST")]
    allow: Vec<String>,
    /// Print the session's record (JSON) instead of its id.
    #[arg(long)]
    json: bool,
}

/// A language of a session.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Language {
    Python,
    Javascript,
    Shell,
}

/// How code runs.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// A program: its output and exit code.
    Script,
    /// `handler(event)`: its return value (JSON) printed.
    Handler,
    /// A cell of the session's persistent interpreter: its last expression printed.
    Repl,
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// The session's id.
    session: String,
    /// The code; `-` or absent: read from `--file`, else from stdin.
    code: Option<String>,
    /// Read the code from this file.
    #[arg(long, short, conflicts_with = "code")]
    file: Option<PathBuf>,
    /// The code's language (from `--file`'s extension when absent, else python).
    #[arg(long, short, value_enum)]
    language: Option<Language>,
    /// How it runs.
    #[arg(long, short, value_enum, default_value = "script")]
    mode: Mode,
    /// The event (JSON object) of handler mode.
    #[arg(long)]
    event: Option<String>,
    /// A time limit, milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// An environment variable of this execution, `NAME=VALUE` (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Print the execution's record (JSON) at the end instead of its value.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct LsArgs {
    /// The session's id.
    session: String,
    /// A folder of the workspace (its root when absent).
    path: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CpArgs {
    /// `FILE` or `SID:PATH`.
    source: String,
    /// `SID:PATH` or `FILE` (a local folder keeps the file's name).
    destination: String,
}

#[derive(Debug, Args)]
struct RmArgs {
    /// The session's id.
    session: String,
    /// The file or folder, relative to the workspace.
    path: String,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only sessions in this status.
    #[arg(long)]
    status: Option<String>,
    /// Only sessions of this template.
    #[arg(long)]
    template: Option<String>,
    /// Only this app's (admin keys).
    #[arg(long)]
    app: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct IdArgs {
    /// The session's id.
    session: String,
    /// Print the session's record (JSON).
    #[arg(long)]
    json: bool,
}

/// A client bound to one server and key.
struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

/// A failed call, already reported; the exit code.
type Failed = ExitCode;

impl Api {
    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, Failed> {
        rb.bearer_auth(&self.key).send().await.map_err(|e| {
            hint("is the server running and the URL right?");
            fail(NETWORK, &format!("cannot reach {}: {e}", self.base))
        })
    }

    /// A call whose answer must be a success; its JSON (`null` for none).
    async fn json(&self, rb: reqwest::RequestBuilder) -> Result<Value, Failed> {
        let r = self.send(rb).await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            Err(self.refused(status, &body))
        }
    }

    /// Report the server's problem document; the exit code of its class.
    fn refused(&self, status: reqwest::StatusCode, body: &Value) -> Failed {
        match status.as_u16() {
            404 => fail(NOT_FOUND, &problem_text(body)),
            400 | 409 | 413 | 422 | 507 => fail(VALIDATION, &problem_text(body)),
            401 | 403 => {
                hint("check WARDEN_API_KEY: sessions need an app's key or an admin key");
                fail(NETWORK, &problem_text(body))
            }
            _ => fail(
                NETWORK,
                &format!("{} answered {status}: {}", self.base, problem_text(body)),
            ),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Run the command.
pub fn session(args: SessionArgs) -> anyhow::Result<ExitCode> {
    let (base, key) = match server_and_key(args.server.clone(), "no server to ask") {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let api = Api {
            client: http_client()?,
            base,
            key,
        };
        let done = match args.command {
            SessionCommand::Create(a) => create(&api, a).await,
            SessionCommand::Exec(a) => exec(&api, a).await,
            SessionCommand::Ls(a) => ls(&api, a).await,
            SessionCommand::Cp(a) => cp(&api, a).await,
            SessionCommand::Rm(a) => rm(&api, a).await,
            SessionCommand::List(a) => list(&api, a).await,
            SessionCommand::Terminate(a) => terminate(&api, a).await,
        };
        Ok(done.unwrap_or_else(|code| code))
    })
}

/// `NAME=VALUE` pairs as a JSON object; a usage error names the bad one.
fn env_object(pairs: &[String]) -> Result<Value, Failed> {
    let mut env = serde_json::Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            return Err(fail(2, &format!("--env `{}`: give NAME=VALUE", escape(p))));
        };
        env.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(Value::Object(env))
}

/// `[pip:|npm:]NAME[VERSION]` as a package of the API; the server checks
/// the name and the version.
fn package(spec: &str) -> Value {
    let (ecosystem, rest) = match spec.split_once(':') {
        Some((e @ ("pip" | "npm"), rest)) => (e, rest),
        _ => ("pip", spec),
    };
    let cut = if ecosystem == "npm" {
        // `@scope/name@range`: the version follows the last `@` past the first character.
        rest.char_indices()
            .skip(1)
            .filter(|&(_, c)| c == '@')
            .last()
            .map(|(i, _)| (i, i + 1))
    } else {
        rest.find(['=', '<', '>', '!', '~']).map(|i| (i, i))
    };
    let mut p = json!({"ecosystem": ecosystem, "name": rest});
    if let Some((end, start)) = cut {
        p["name"] = json!(rest[..end].trim());
        p["version"] = json!(rest[start..].trim());
    }
    p
}

async fn create(api: &Api, a: CreateArgs) -> Result<ExitCode, Failed> {
    let mut body = json!({"env": env_object(&a.env)?});
    if let Some(t) = &a.template {
        body["template"] = json!(t);
    }
    if let Some(app) = &a.app {
        body["app"] = json!(app);
    }
    let mut resources = serde_json::Map::new();
    if let Some(v) = a.cpu {
        resources.insert("cpu_cores".into(), json!(v));
    }
    if let Some(v) = a.memory_mb {
        resources.insert("memory_mb".into(), json!(v));
    }
    if let Some(v) = a.disk_mb {
        resources.insert("disk_mb".into(), json!(v));
    }
    if let Some(v) = a.pids {
        resources.insert("pids".into(), json!(v));
    }
    if !resources.is_empty() {
        body["resources"] = Value::Object(resources);
    }
    if let Some(v) = a.idle_timeout {
        body["idle_timeout_secs"] = json!(v);
    }
    if let Some(v) = a.max_lifetime {
        body["max_lifetime_secs"] = json!(v);
    }
    if !a.allow.is_empty() {
        body["network"] = json!({"allow": a.allow});
    }
    if !a.packages.is_empty() {
        body["packages"] = Value::Array(a.packages.iter().map(|p| package(p)).collect());
        eprintln!("installing the session's packages (the first time, this builds a layer)…");
    }
    let s = api
        .json(api.client.post(api.url("/v1/sessions")).json(&body))
        .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    } else {
        println!("{}", text(&s["id"]));
    }
    Ok(ExitCode::SUCCESS)
}

/// The code of `exec`: the argument, the file, or stdin.
fn read_code(a: &ExecArgs) -> Result<String, Failed> {
    match (&a.code, &a.file) {
        (Some(c), _) if c != "-" => Ok(c.clone()),
        (_, Some(f)) => {
            std::fs::read_to_string(f).map_err(|e| fail(2, &format!("--file {}: {e}", f.display())))
        }
        _ => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| fail(2, &format!("reading the code from stdin: {e}")))?;
            Ok(s)
        }
    }
}

fn language_of(a: &ExecArgs) -> &'static str {
    let from_file = a
        .file
        .as_deref()
        .and_then(Path::extension)
        .and_then(|e| e.to_str())
        .and_then(|e| match e {
            "py" => Some(Language::Python),
            "js" | "mjs" | "cjs" => Some(Language::Javascript),
            "sh" | "bash" => Some(Language::Shell),
            _ => None,
        });
    match a.language.or(from_file).unwrap_or(Language::Python) {
        Language::Python => "python",
        Language::Javascript => "javascript",
        Language::Shell => "shell",
    }
}

async fn exec(api: &Api, a: ExecArgs) -> Result<ExitCode, Failed> {
    let code = read_code(&a)?;
    let mut body = json!({
        "language": language_of(&a),
        "mode": match a.mode { Mode::Script => "script", Mode::Handler => "handler", Mode::Repl => "repl" },
        "code": code,
        "env": env_object(&a.env)?,
    });
    if let Some(e) = &a.event {
        let v: Value = serde_json::from_str(e).map_err(|e| fail(2, &format!("--event is not JSON: {e}")))?;
        body["event"] = v;
    }
    if let Some(t) = a.timeout_ms {
        body["timeout_ms"] = json!(t);
    }
    let sid: String = encode(&a.session);
    // Accepted at once; the output is read from the events as it comes.
    let accepted = api
        .json(
            api.client
                .post(api.url(&format!("/v1/sessions/{sid}/executions?mode=async")))
                .json(&body),
        )
        .await?;
    let Some(eid) = accepted["id"].as_str() else {
        return Err(fail(NETWORK, "the server's answer has no execution id"));
    };
    let record = follow(api, eid).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&record).unwrap_or_default());
    } else if record["return_value"] != Value::Null && !matches!(a.mode, Mode::Script) {
        println!(
            "{}",
            serde_json::to_string_pretty(&record["return_value"]).unwrap_or_default()
        );
    }
    Ok(ExitCode::from(exit_code_of(&record)))
}

/// Stream execution `eid`'s output (stdout to stdout, stderr to stderr) and
/// return its final record; a dropped stream is resumed after the last
/// event seen.
async fn follow(api: &Api, eid: &str) -> Result<Value, Failed> {
    use std::io::Write as _;
    let mut last: Option<String> = None;
    for _ in 0..5 {
        let mut rb = api
            .client
            .get(api.url(&format!("/v1/executions/{}/events", encode(eid))));
        if let Some(l) = &last {
            rb = rb.header("last-event-id", l);
        }
        let r = api.send(rb).await?;
        if !r.status().is_success() {
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            return Err(api.refused(status, &body));
        }
        let mut events = SseReader::new(r);
        loop {
            let e = match events.next().await {
                Ok(Some(e)) => e,
                Ok(None) | Err(_) => break,
            };
            if !e.id.is_empty() {
                last = Some(e.id.clone());
            }
            match e.event.as_str() {
                "stdout" | "stderr" => {
                    let chunk: String = serde_json::from_str(&e.data).unwrap_or_default();
                    if e.event == "stdout" {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(chunk.as_bytes());
                        let _ = out.flush();
                    } else {
                        let mut err = std::io::stderr().lock();
                        let _ = err.write_all(chunk.as_bytes());
                        let _ = err.flush();
                    }
                }
                "result" => {
                    return serde_json::from_str(&e.data)
                        .map_err(|e| fail(NETWORK, &format!("the execution's result is not JSON: {e}")));
                }
                _ => {}
            }
        }
    }
    Err(fail(
        NETWORK,
        &format!("the execution's events ended before its result; GET /v1/executions/{eid} has it"),
    ))
}

/// How `warden session exec` exits: the program's exit code when it has
/// one; otherwise 0 for success, 124 for a timeout (as `timeout` does),
/// 137 for out of memory or killed, 130 for cancelled, 1 for any other
/// failure (its error printed on stderr).
fn exit_code_of(record: &Value) -> u8 {
    let status = record["status"].as_str().unwrap_or("");
    if let Some(c) = record["exit_code"].as_i64() {
        if c == 0 && status != "success" {
            report_error(record);
            return 1;
        }
        return u8::try_from(c & 0xff).unwrap_or(1);
    }
    match status {
        "success" => 0,
        other => {
            report_error(record);
            match other {
                "timeout" => 124,
                "oom" | "killed" => 137,
                "cancelled" => 130,
                _ => 1,
            }
        }
    }
}

fn report_error(record: &Value) {
    let e = &record["error"];
    let status = text(&record["status"]);
    let msg = match (e["type"].as_str(), e["message"].as_str()) {
        (Some(t), Some(m)) => format!("{}: {}", escape(t), escape(m)),
        (None, Some(m)) => escape(m).into_owned(),
        _ => String::new(),
    };
    if let Some(tb) = e["traceback"].as_str() {
        eprint!("{}", escape_lines(tb));
    }
    eprintln!(
        "{} the execution ended {status}{}{msg}",
        crate::style::error("error:"),
        if msg.is_empty() { "" } else { ": " }
    );
    if record["interpreter_restarted"] == true {
        hint("the interpreter was restarted: variables of earlier cells are gone");
    }
}

/// `text` with each line escaped (newlines kept).
fn escape_lines(text: &str) -> String {
    text.lines().map(|l| format!("{}\n", escape(l))).collect()
}

/// A session path (`/workspace/a/b`, `/a/b`, `a/b`) relative to the
/// workspace, each name percent-encoded for the URL.
fn workspace_path(path: &str) -> String {
    url_path(workspace_raw(path))
}

/// A session path relative to the workspace, as text.
fn workspace_raw(path: &str) -> &str {
    path.strip_prefix("/workspace")
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .unwrap_or(path)
        .trim_start_matches('/')
}

/// A relative workspace path with each name percent-encoded.
fn url_path(raw: &str) -> String {
    raw.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// [`workspace_path`] of `path`, refused here (exit 3) when a name is `.`
/// or `..`: a URL cannot carry those names (they are resolved away before
/// the request leaves), and the workspace's rules refuse them anyway.
fn checked(path: &str) -> Result<String, Failed> {
    if path.split('/').any(|n| n == "." || n == "..") {
        return Err(fail(
            VALIDATION,
            &format!(
                "path `{}`: a `.` or `..` name is not allowed; paths are relative to the workspace and stay inside it",
                escape(path)
            ),
        ));
    }
    Ok(workspace_path(path))
}

async fn ls(api: &Api, a: LsArgs) -> Result<ExitCode, Failed> {
    let mut url = format!("/v1/sessions/{}/files", encode(&a.session));
    if let Some(p) = &a.path {
        let rel = checked(p)?;
        if !rel.is_empty() {
            url.push_str("?path=");
            url.push_str(&rel.split('/').collect::<Vec<_>>().join("%2F"));
        }
    }
    let v = api.json(api.client.get(api.url(&url))).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    for e in v["entries"].as_array().into_iter().flatten() {
        let kind = e["kind"].as_str().unwrap_or("other");
        let mark = match kind {
            "directory" => "/",
            "link" => "@",
            "other" => "|",
            _ => "",
        };
        println!(
            "{:<9} {:>12}  {}  {}{mark}",
            kind,
            e["size"].as_u64().map_or_else(|| "-".into(), |s| s.to_string()),
            modified(&e["modified_at"]),
            text(&e["name"]),
        );
    }
    if v["truncated"] == true {
        eprintln!(
            "{} the listing was cut at 1000 entries",
            crate::style::warn("warning:")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS` (UTC).
fn modified(v: &Value) -> String {
    let Some(ms) = v.as_i64() else {
        return "-".into();
    };
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `SID:PATH` split, when `s` names a session's side (`ses_…:`).
fn remote(s: &str) -> Option<(&str, &str)> {
    let (sid, path) = s.split_once(':')?;
    (sid.starts_with("ses_") && !sid.contains('/')).then_some((sid, path))
}

async fn cp(api: &Api, a: CpArgs) -> Result<ExitCode, Failed> {
    match (remote(&a.source), remote(&a.destination)) {
        (None, Some((sid, path))) if Path::new(&a.source).is_dir() => {
            upload_dir(api, &a.source, sid, path).await
        }
        (Some((sid, path)), None) if is_remote_dir(api, sid, path).await? => {
            download_dir(api, sid, path, &a.destination).await
        }
        (None, Some((sid, path))) => {
            let local = Path::new(&a.source);
            let mut rel = checked(path.trim_end_matches('/'))?;
            if rel.is_empty() || path.ends_with('/') {
                // Into a folder: the file keeps its name.
                let name = local
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                rel = format!(
                    "{}{}",
                    if rel.is_empty() {
                        String::new()
                    } else {
                        format!("{rel}/")
                    },
                    encode(&name)
                );
            }
            let file = tokio::fs::File::open(local)
                .await
                .map_err(|e| fail(NOT_FOUND, &format!("{}: {e}", local.display())))?;
            let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            // Streamed from the file, never held whole.
            let body = reqwest::Body::from(file);
            let v = api
                .json(
                    api.client
                        .put(api.url(&format!("/v1/sessions/{}/files/{rel}", encode(sid))))
                        .header(reqwest::header::CONTENT_LENGTH, len)
                        .body(body),
                )
                .await?;
            eprintln!(
                "{} {} bytes to {}:{}",
                crate::style::ok("copied"),
                v["size"].as_u64().unwrap_or(len),
                escape(sid),
                text(&v["path"])
            );
            Ok(ExitCode::SUCCESS)
        }
        (Some((sid, path)), None) => {
            let rel = checked(path)?;
            let r = api
                .send(
                    api.client
                        .get(api.url(&format!("/v1/sessions/{}/files/{rel}", encode(sid)))),
                )
                .await?;
            if !r.status().is_success() {
                let status = r.status();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                return Err(api.refused(status, &body));
            }
            let mut dest = PathBuf::from(&a.destination);
            if dest.is_dir() {
                let name = path.rsplit('/').find(|n| !n.is_empty()).unwrap_or("download");
                dest.push(name);
            }
            let written = save(r, &dest)
                .await
                .map_err(|e| fail(NETWORK, &format!("{}: {e}", dest.display())))?;
            eprintln!(
                "{} {written} bytes to {}",
                crate::style::ok("copied"),
                dest.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        (Some(_), Some(_)) => Err(fail(2, "both sides name a session: copy to a local file first")),
        (None, None) => {
            hint("name the session's side as SID:PATH, e.g. `warden session cp data.csv ses_…:in/data.csv`");
            Err(fail(2, "neither side names a session"))
        }
    }
}

/// Most files one folder copy moves: a copy beyond it is refused before
/// anything is sent, rather than left half done.
const MAX_TREE_FILES: usize = 10_000;

/// Whether `SID:PATH` names a folder of the workspace (the workspace
/// itself for an empty path).
async fn is_remote_dir(api: &Api, sid: &str, path: &str) -> Result<bool, Failed> {
    let rel = checked(path.trim_end_matches('/'))?;
    if rel.is_empty() {
        return Ok(true);
    }
    let r = api.send(api.client.get(api.url(&list_url(sid, &rel)))).await?;
    Ok(r.status().is_success())
}

/// A local folder as the relative paths of its files and folders (links,
/// FIFOs and devices are skipped and counted, never followed).
fn local_tree(root: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>, usize), Failed> {
    let (mut files, mut dirs, mut skipped) = (Vec::new(), Vec::new(), 0);
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let dir = root.join(&rel);
        let read =
            std::fs::read_dir(&dir).map_err(|e| fail(NOT_FOUND, &format!("{}: {e}", dir.display())))?;
        for entry in read {
            let entry = entry.map_err(|e| fail(NOT_FOUND, &format!("{}: {e}", dir.display())))?;
            let kind = entry
                .file_type()
                .map_err(|e| fail(NOT_FOUND, &format!("{}: {e}", entry.path().display())))?;
            let child = rel.join(entry.file_name());
            if kind.is_dir() {
                dirs.push(child.clone());
                todo.push(child);
            } else if kind.is_file() {
                files.push(child);
                if files.len() > MAX_TREE_FILES {
                    return Err(fail(
                        VALIDATION,
                        &format!(
                            "{} holds more than {MAX_TREE_FILES} files: pack it (tar) and copy the archive",
                            root.display()
                        ),
                    ));
                }
            } else {
                skipped += 1;
            }
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs, skipped))
}

/// The listing URL of a workspace folder (`rel` encoded; `""`: the
/// workspace).
fn list_url(sid: &str, rel: &str) -> String {
    let mut url = format!("/v1/sessions/{}/files", encode(sid));
    if !rel.is_empty() {
        url.push_str("?path=");
        url.push_str(&rel.split('/').collect::<Vec<_>>().join("%2F"));
    }
    url
}

/// `rel`'s names appended to the workspace path `base` (as text), refused
/// when a name is not valid UTF-8.
fn remote_rel(base: &str, rel: &Path) -> Result<String, Failed> {
    let mut out = base.to_owned();
    for name in rel.iter() {
        let Some(name) = name.to_str() else {
            return Err(fail(
                VALIDATION,
                &format!(
                    "{}: a name that is not UTF-8 cannot be sent",
                    escape(&rel.to_string_lossy())
                ),
            ));
        };
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(name);
    }
    Ok(out)
}

/// `warden session cp DIR SID:PATH`: the folder and what it holds, file
/// by file (streamed), its empty folders made too. Into `PATH/` (or the
/// workspace) it keeps its name, as `cp -r` does.
async fn upload_dir(api: &Api, source: &str, sid: &str, path: &str) -> Result<ExitCode, Failed> {
    let local = Path::new(source);
    checked(path)?;
    let mut base = workspace_raw(path.trim_end_matches('/')).to_owned();
    if base.is_empty() || path.ends_with('/') {
        let name = local
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_owned()))
            .ok_or_else(|| fail(VALIDATION, &format!("{}: a folder with no name", local.display())))?;
        base = remote_rel(&base, Path::new(&name))?;
    }
    let (files, dirs, skipped) = local_tree(local)?;
    let session = encode(sid);
    let make = |rel: String| {
        api.json(
            api.client
                .post(api.url(&format!("/v1/sessions/{session}/directories")))
                .json(&serde_json::json!({ "path": rel })),
        )
    };
    make(base.clone()).await?;
    for d in &dirs {
        make(remote_rel(&base, d)?).await?;
    }
    let mut bytes = 0u64;
    for f in &files {
        let rel = url_path(&remote_rel(&base, f)?);
        let file = tokio::fs::File::open(local.join(f))
            .await
            .map_err(|e| fail(NOT_FOUND, &format!("{}: {e}", local.join(f).display())))?;
        let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        api.json(
            api.client
                .put(api.url(&format!("/v1/sessions/{session}/files/{rel}")))
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(reqwest::Body::from(file)),
        )
        .await?;
        bytes += len;
    }
    eprintln!(
        "{} {} files ({bytes} bytes) and {} folders to {}:{}",
        crate::style::ok("copied"),
        files.len(),
        dirs.len() + 1,
        escape(sid),
        escape(&base)
    );
    if skipped > 0 {
        eprintln!(
            "{} {skipped} links or special files were not copied",
            crate::style::warn("warning:")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `warden session cp SID:PATH DIR`: a workspace folder and what it holds
/// into a new local folder (`DIR/NAME` when `DIR` exists). Names come from
/// the box: each is checked to be one plain name before it is joined, and
/// nothing is written outside the new folder; links and special files are
/// skipped.
async fn download_dir(api: &Api, sid: &str, path: &str, destination: &str) -> Result<ExitCode, Failed> {
    checked(path)?;
    let rel = workspace_raw(path.trim_end_matches('/')).to_owned();
    let mut dest = PathBuf::from(destination);
    if dest.is_dir() {
        let name = rel.rsplit('/').next().unwrap_or_default();
        dest.push(if name.is_empty() { "workspace" } else { name });
    }
    if dest.symlink_metadata().is_ok() {
        return Err(fail(
            VALIDATION,
            &format!("{} exists: remove it or name a new folder", dest.display()),
        ));
    }
    std::fs::create_dir(&dest).map_err(|e| fail(NOT_FOUND, &format!("{}: {e}", dest.display())))?;
    let session = encode(sid);
    let (mut files, mut bytes, mut skipped) = (0usize, 0u64, 0usize);
    let mut todo = vec![(rel, dest.clone())];
    while let Some((remote, local)) = todo.pop() {
        let listing = api
            .json(api.client.get(api.url(&list_url(sid, &url_path(&remote)))))
            .await?;
        if listing["truncated"] == true {
            return Err(fail(
                VALIDATION,
                &format!(
                    "{}:{} holds more than 1000 entries: pack it (tar) in the session and copy the archive",
                    escape(sid),
                    escape(&remote)
                ),
            ));
        }
        for e in listing["entries"].as_array().into_iter().flatten() {
            let Some(name) = e["name"].as_str().filter(|n| plain_name(n)) else {
                skipped += 1;
                continue;
            };
            let child = remote_rel(&remote, Path::new(name))?;
            match e["kind"].as_str() {
                Some("directory") => {
                    let d = local.join(name);
                    std::fs::create_dir(&d).map_err(|e| fail(NOT_FOUND, &format!("{}: {e}", d.display())))?;
                    todo.push((child, d));
                }
                Some("file") => {
                    files += 1;
                    if files > MAX_TREE_FILES {
                        return Err(fail(
                            VALIDATION,
                            &format!(
                                "the folder holds more than {MAX_TREE_FILES} files: pack it (tar) in the session and copy the archive"
                            ),
                        ));
                    }
                    let r = api
                        .send(
                            api.client
                                .get(api.url(&format!("/v1/sessions/{session}/files/{}", url_path(&child)))),
                        )
                        .await?;
                    if !r.status().is_success() {
                        let status = r.status();
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        return Err(api.refused(status, &body));
                    }
                    let to = local.join(name);
                    bytes += save(r, &to)
                        .await
                        .map_err(|e| fail(NETWORK, &format!("{}: {e}", to.display())))?;
                }
                _ => skipped += 1,
            }
        }
    }
    eprintln!(
        "{} {files} files ({bytes} bytes) to {}",
        crate::style::ok("copied"),
        dest.display()
    );
    if skipped > 0 {
        eprintln!(
            "{} {skipped} links, special files or unusable names were not copied",
            crate::style::warn("warning:")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One name that is safe to join to a local folder: not empty, `.` or
/// `..`, no `/`, no NUL.
fn plain_name(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\0'])
}

/// Write a download to `dest` as it arrives (a temporary file beside it,
/// renamed when complete); the bytes written.
async fn save(mut r: reqwest::Response, dest: &Path) -> std::io::Result<u64> {
    use tokio::io::AsyncWriteExt as _;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.warden-{}",
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut f = tokio::fs::File::create(&tmp).await?;
    let mut n = 0u64;
    let copied: std::io::Result<()> = async {
        while let Some(chunk) = r.chunk().await.map_err(std::io::Error::other)? {
            f.write_all(&chunk).await?;
            n += chunk.len() as u64;
        }
        f.flush().await?;
        Ok(())
    }
    .await;
    if let Err(e) = copied {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    tokio::fs::rename(&tmp, dest).await?;
    Ok(n)
}

async fn rm(api: &Api, a: RmArgs) -> Result<ExitCode, Failed> {
    let rel = checked(&a.path)?;
    if rel.is_empty() {
        return Err(fail(
            2,
            "give a path inside the workspace, not the workspace itself",
        ));
    }
    api.json(
        api.client
            .delete(api.url(&format!("/v1/sessions/{}/files/{rel}", encode(&a.session)))),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn list(api: &Api, a: ListArgs) -> Result<ExitCode, Failed> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = vec![("limit".to_owned(), "200".to_owned())];
        for (k, v) in [("status", &a.status), ("template", &a.template), ("app", &a.app)] {
            if let Some(v) = v {
                q.push((k.into(), v.clone()));
            }
        }
        if let Some(c) = &cursor {
            q.push(("cursor".into(), c.clone()));
        }
        let page = api
            .json(api.client.get(api.url(&format!("/v1/sessions?{}", query(&q)))))
            .await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&items).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![[
        "ID".to_owned(),
        "STATUS".into(),
        "TEMPLATE".into(),
        "APP".into(),
        "EXECUTIONS".into(),
        "REASON".into(),
    ]];
    for s in &items {
        rows.push([
            text(&s["id"]),
            text(&s["status"]),
            text(&s["template"]),
            text(&s["app"]),
            text(&s["executions"]),
            if s["status_reason"].is_null() {
                String::new()
            } else {
                text(&s["status_reason"])
            },
        ]);
    }
    print!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

async fn terminate(api: &Api, a: IdArgs) -> Result<ExitCode, Failed> {
    let s = api
        .json(
            api.client
                .post(api.url(&format!("/v1/sessions/{}/terminate", encode(&a.session)))),
        )
        .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    } else {
        println!("{} {}", text(&s["id"]), text(&s["status"]));
    }
    Ok(ExitCode::SUCCESS)
}

/// Rows as columns lined up, the last one unpadded.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
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

/// `pairs` as a query string, each side encoded.
fn query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `s` percent-encoded for one URL path segment or query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A value the server sent, safe to print.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s).into_owned(),
        Value::Null => "-".into(),
        other => escape(&other.to_string()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_specs_read_as_the_api_takes_them() {
        assert_eq!(package("six"), json!({"ecosystem": "pip", "name": "six"}));
        assert_eq!(
            package("pip:six==1.16.0"),
            json!({"ecosystem": "pip", "name": "six", "version": "==1.16.0"})
        );
        assert_eq!(
            package("requests>=2,<3"),
            json!({"ecosystem": "pip", "name": "requests", "version": ">=2,<3"})
        );
        assert_eq!(
            package("npm:@scope/pad@^1.3"),
            json!({"ecosystem": "npm", "name": "@scope/pad", "version": "^1.3"})
        );
        assert_eq!(
            package("npm:left-pad"),
            json!({"ecosystem": "npm", "name": "left-pad"})
        );
    }

    #[test]
    fn session_paths_are_relative_to_the_workspace_and_encoded() {
        assert_eq!(workspace_path("/workspace/a b/c.txt"), "a%20b/c.txt");
        assert_eq!(workspace_path("a/c"), "a/c");
        assert_eq!(workspace_path("/a/c"), "a/c");
        assert_eq!(workspace_path("/workspace"), "");
        assert_eq!(workspace_path("/workspaces/x"), "workspaces/x");
        assert!(checked("../etc/x").is_err());
        assert!(checked("a/./x").is_err());
        assert_eq!(checked("/workspace/a.b/..c").ok(), Some("a.b/..c".to_owned()));
        assert_eq!(remote("ses_0a:/x"), Some(("ses_0a", "/x")));
        assert_eq!(remote("./ses_0a:/x"), None);
        assert_eq!(remote("data.csv"), None);
    }

    #[test]
    fn exit_codes_follow_the_execution() {
        assert_eq!(exit_code_of(&json!({"status": "success", "exit_code": 0})), 0);
        assert_eq!(exit_code_of(&json!({"status": "failed", "exit_code": 3})), 3);
        assert_eq!(exit_code_of(&json!({"status": "success", "exit_code": null})), 0);
        assert_eq!(
            exit_code_of(&json!({"status": "timeout", "exit_code": null})),
            124
        );
        assert_eq!(exit_code_of(&json!({"status": "failed", "exit_code": null})), 1);
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(modified(&json!(0)), "1970-01-01 00:00:00");
        assert_eq!(modified(&json!(1_796_032_745_869_i64)), "2026-11-30 09:59:05");
        assert_eq!(modified(&Value::Null), "-");
    }
}
