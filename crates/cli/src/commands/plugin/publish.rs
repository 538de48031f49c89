//! `warden plugin publish`: pack the plugin, upload it to a server, and
//! optionally submit it for review.
//!
//! The server and key come from `--server` / `WARDEN_SERVER` and
//! `WARDEN_API_KEY`, or from the credentials file
//! (`$XDG_CONFIG_HOME/warden/credentials.toml`, else
//! `~/.config/warden/credentials.toml`) with keys `server` and `api_key`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::pack::build_package;
use super::{exit, hint, plugin_dir};

/// Arguments of `warden plugin publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The plugin directory [default: .].
    pub dir: Option<PathBuf>,
    /// The Warden server, e.g. `https://warden.example.com`.
    #[arg(long, env = "WARDEN_SERVER")]
    pub server: Option<String>,
    /// Submit the version for review after the upload.
    #[arg(long)]
    pub submit: bool,
    /// Sign the uploaded package with this minisign secret key (its public
    /// key registered on the server), so it may be approved as trusted.
    #[arg(long, value_name = "KEY_FILE")]
    pub sign: Option<PathBuf>,
    /// Print the version as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Credentials {
    server: Option<String>,
    api_key: Option<String>,
}

fn credentials_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("warden/credentials.toml"))
}

fn load_credentials() -> anyhow::Result<Credentials> {
    let Some(path) = credentials_file().filter(|p| p.is_file()) else {
        return Ok(Credentials::default());
    };
    let text = std::fs::read_to_string(&path)?;
    toml_lite(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The credentials file is two `key = "value"` lines; read them without a
/// TOML dependency in the CLI.
fn toml_lite(text: &str) -> Result<Credentials, String> {
    let mut c = Credentials::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected key = \"value\"", n + 1))?;
        let v = v.trim().trim_matches('"').to_owned();
        match k.trim() {
            "server" => c.server = Some(v),
            "api_key" => c.api_key = Some(v),
            other => {
                return Err(format!(
                    "line {}: unknown key `{other}` (expected server, api_key)",
                    n + 1
                ));
            }
        }
    }
    Ok(c)
}

/// Report `msg` as an error on stderr; the exit code `class`.
pub(crate) fn fail(class: u8, msg: &str) -> ExitCode {
    eprintln!("{} {msg}", crate::style::error("error:"));
    ExitCode::from(class)
}

/// A problem document's words, with each located problem on its own line.
pub(crate) fn problem_text(body: &Value) -> String {
    let mut s = body["detail"]
        .as_str()
        .unwrap_or("the server refused the request")
        .to_owned();
    if let Some(errors) = body["errors"].as_array() {
        for e in errors {
            s.push_str(&format!(
                "\n  {} {}",
                crate::style::warn(e["location"].as_str().unwrap_or("")),
                e["message"].as_str().unwrap_or("")
            ));
        }
    }
    s
}

/// The server and API key to use: `server` (from `--server` or
/// `WARDEN_SERVER`) or the credentials file's, and `WARDEN_API_KEY` or the
/// credentials file's. On a usage error (nothing configured, not a URL) it
/// is reported, with a hint, and its exit code returned; `no_server` is the
/// error when no server is given (`no server to publish to`).
pub(crate) fn server_and_key(server: Option<String>, no_server: &str) -> Result<(String, String), ExitCode> {
    let creds = match load_credentials() {
        Ok(c) => c,
        Err(e) => return Err(fail(2, &e.to_string())),
    };
    let Some(server) = server.or(creds.server) else {
        hint(
            "pass --server URL, set WARDEN_SERVER, or put `server = \"URL\"` in ~/.config/warden/credentials.toml",
        );
        return Err(fail(2, no_server));
    };
    let Some(key) = std::env::var("WARDEN_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .or(creds.api_key)
    else {
        hint("set WARDEN_API_KEY, or put `api_key = \"wk_…\"` in ~/.config/warden/credentials.toml");
        return Err(fail(2, "no API key"));
    };
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        return Err(fail(
            2,
            &format!("`{server}` is not a server URL: give http://HOST:PORT or https://HOST"),
        ));
    }
    Ok((server.trim_end_matches('/').to_owned(), key))
}

/// The HTTP client of the commands that speak to a server: TLS through
/// rustls with the ring provider (roots from the system), Warden's user
/// agent.
pub(crate) fn http_client() -> reqwest::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("warden-cli/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Run the command.
pub fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let (server, key) = match server_and_key(args.server.clone(), "no server to publish to") {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let dir = plugin_dir(args.dir);
    let mut notes = Vec::new();
    let packed = match build_package(&dir, None, true, &mut notes) {
        Ok(p) => p,
        Err(f) => return Ok(f.report()),
    };
    for n in &notes {
        eprintln!("{} {n}", crate::style::dim("==>"));
    }
    let packed_sha256 = packed.package.sha256.clone();
    let (code, version) = (
        packed.package.manifest.code.clone(),
        packed.package.manifest.version.clone(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let base = server;
        let client = http_client()?;
        eprintln!(
            "{} uploading {code} {version} to {base}",
            crate::style::dim("==>")
        );
        let sent = client
            .post(format!("{base}/v1/plugins"))
            .bearer_auth(&key)
            .header("content-type", "application/zip")
            .body(packed.zip)
            .send()
            .await;
        let r = match sent {
            Ok(r) => r,
            Err(e) => {
                hint("is the server running and the URL right?");
                return Ok(fail(exit::NETWORK, &format!("cannot reach {base}: {e}")));
            }
        };
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let mut version_doc = match status.as_u16() {
            200 | 201 => body,
            409 if body["type"] == "/problems/wrong-state" => {
                let state = body["current_state"].as_str().unwrap_or("published");
                hint("bump `version` in manifest.json to publish a new version");
                return Ok(fail(
                    exit::VALIDATION,
                    &format!(
                        "{code} {version} is already {state} on {base}: a published version cannot change"
                    ),
                ));
            }
            400 | 409 | 413 | 422 => return Ok(fail(exit::VALIDATION, &problem_text(&body))),
            401 | 403 => {
                hint("check WARDEN_API_KEY: publishing needs a developer (or admin) key");
                return Ok(fail(exit::NETWORK, &problem_text(&body)));
            }
            _ => {
                return Ok(fail(
                    exit::NETWORK,
                    &format!("{base} answered {status}: {}", problem_text(&body)),
                ));
            }
        };
        let verb = if status.as_u16() == 201 {
            "uploaded"
        } else {
            "replaced the package of"
        };
        eprintln!(
            "{} {verb} {code} {version}: {}",
            crate::style::ok("ok"),
            version_doc["status"].as_str().unwrap_or("?")
        );
        if let Some(key_file) = &args.sign {
            let sha256 = packed_sha256.clone();
            if version_doc["package_sha256"].as_str() != Some(sha256.as_str()) {
                return Ok(fail(
                    exit::NETWORK,
                    &format!("{base} recorded another package hash than the one uploaded ({sha256})"),
                ));
            }
            let signature = match super::sign::signature_for(key_file, &sha256) {
                Ok(s) => s,
                Err(e) => return Ok(fail(exit::VALIDATION, &e)),
            };
            let r = client
                .put(format!("{base}/v1/plugins/{code}/versions/{version}/signature"))
                .bearer_auth(&key)
                .json(&serde_json::json!({ "signature": signature }))
                .send()
                .await;
            let r = match r {
                Ok(r) => r,
                Err(e) => return Ok(fail(exit::NETWORK, &format!("cannot reach {base}: {e}"))),
            };
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                if status.as_u16() == 422 {
                    hint("is the key's public half registered to you? (POST /v1/signing-keys)");
                }
                return Ok(fail(
                    exit::VALIDATION,
                    &format!("signing failed: {}", problem_text(&body)),
                ));
            }
            eprintln!(
                "{} signed with key {}",
                crate::style::ok("ok"),
                body["signed_by"].as_str().unwrap_or("?")
            );
            version_doc = body;
        }
        if args.submit && version_doc["status"] == "draft" {
            let r = client
                .post(format!("{base}/v1/plugins/{code}/versions/{version}/submit"))
                .bearer_auth(&key)
                .send()
                .await;
            let r = match r {
                Ok(r) => r,
                Err(e) => return Ok(fail(exit::NETWORK, &format!("cannot reach {base}: {e}"))),
            };
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                // Classified as the upload is: the plugin's fault, or the server's.
                let class = match status.as_u16() {
                    400 | 409 | 413 | 422 => exit::VALIDATION,
                    _ => exit::NETWORK,
                };
                return Ok(fail(
                    class,
                    &format!("submitting failed: {}", problem_text(&body)),
                ));
            }
            version_doc = body;
            let summary = &version_doc["report_summary"];
            eprintln!(
                "{} submitted for review: {} (report: {} critical, {} warning, {} info)",
                crate::style::ok("ok"),
                version_doc["status"].as_str().unwrap_or("?"),
                summary["critical"],
                summary["warning"],
                summary["info"]
            );
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&version_doc)?);
        } else {
            println!(
                "{code} {version} {}",
                version_doc["status"].as_str().unwrap_or("?")
            );
        }
        match version_doc["status"].as_str() {
            Some("draft") => hint("submit it for review: `warden plugin publish --submit`"),
            Some("pending") => hint(&format!(
                "an admin reviews it: POST {base}/v1/plugins/{code}/versions/{version}/approve (or /reject)"
            )),
            Some("rejected") => {
                if let Some(reason) = version_doc["status_reason"].as_str() {
                    eprintln!("  rejected: {reason}");
                }
                hint("fix it and publish the same version again: it goes back to review");
            }
            _ => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_files_are_read_strictly() {
        let c = toml_lite("# mine\nserver = \"http://h:1\"\napi_key = \"wk_1\"\n").unwrap();
        assert_eq!(
            (c.server.as_deref(), c.api_key.as_deref()),
            (Some("http://h:1"), Some("wk_1"))
        );
        assert!(
            toml_lite("token = \"x\"")
                .unwrap_err()
                .contains("unknown key `token`")
        );
        assert!(toml_lite("just words").unwrap_err().contains("line 1"));
    }
}
