//! `warden plugin init NAME --runtime R`: a working plugin to start from: a
//! manifest with input and output schemas, a handler, a sample event, a
//! test, a README; the Warden SDK where the template uses it.
//! `warden plugin init NAME --type api`: an API plugin to start from: a
//! manifest and an OpenAPI document whose operations become its tools.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::{hint, sdk};

/// Runtimes `init` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    /// Python 3: `def handler(event)`.
    Python,
    /// Node.js: `exports.handler = async (event) => …`.
    Node,
    /// Go, built at submit time with the Go SDK.
    Go,
    /// Bash: the event on stdin, the result on stdout.
    Shell,
    /// Rust, built into a native binary with the Rust SDK.
    Rust,
    /// C compiled to a WASI command module (`clang-14 --target=wasm32-wasi`),
    /// run in the in-process WebAssembly tier.
    Wasm,
}

/// Plugin types `init` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PluginType {
    /// Code run by Warden (`--runtime` says which language).
    Sandbox,
    /// An OpenAPI document whose operations become tools; no code.
    Api,
}

/// Arguments of `warden plugin init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The plugin's name; also the directory created.
    pub name: String,
    /// The language (sandbox plugins).
    #[arg(long, short, value_enum, required_unless_present = "kind")]
    pub runtime: Option<Runtime>,
    /// The plugin type: `api` scaffolds an API plugin (an OpenAPI
    /// document, no code) [default: sandbox, with --runtime].
    #[arg(long = "type", id = "kind", value_enum)]
    pub kind: Option<PluginType>,
    /// Where to create it [default: ./NAME].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The plugin's global code (reverse-DNS) [default: com.example.NAME].
    #[arg(long)]
    pub code: Option<String>,
}

fn ident(name: &str) -> String {
    let mut s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s.insert(0, 'p');
    }
    s
}

fn manifest(code: &str, name: &str, runtime: &str, entrypoint: &str) -> String {
    let doc = serde_json::json!({
        "code": code,
        "name": name,
        "version": "0.1.0",
        "type": "sandbox",
        "runtime": runtime,
        "entrypoint": entrypoint,
        "handler": "handler",
        "description": format!("{name}: takes a name and returns a greeting."),
        "author": "You <you@example.com>",
        "input_schema": {
            "type": "object",
            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 100}},
            "required": ["name"],
            "additionalProperties": false
        },
        "output_schema": {
            "type": "object",
            "properties": {"message": {"type": "string"}},
            "required": ["message"]
        },
        "limits": {"timeout_ms": 5000, "memory_mb": 128},
        "permissions": {"network": false},
        "changelog": "First version."
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

const PY_MAIN: &str = r#""""{{name}}: a Warden plugin."""

from warden_sdk import PluginError


def handler(event):
    name = event["name"].strip()
    if not name:
        raise PluginError("ValidationError", "name must not be blank")
    return {"message": f"Hello, {name}!"}
"#;

const PY_TEST: &str = r#""""Run with: python3 -m unittest"""

import unittest

from warden_sdk import InvocationError, invoke

from main import handler


class HandlerTest(unittest.TestCase):
    def test_greets(self):
        self.assertEqual(invoke(handler, {"name": "Ada"}), {"message": "Hello, Ada!"})

    def test_refuses_a_blank_name(self):
        with self.assertRaises(InvocationError) as cm:
            invoke(handler, {"name": "  "})
        self.assertEqual(cm.exception.error_type, "ValidationError")


if __name__ == "__main__":
    unittest.main()
"#;

const NODE_MAIN: &str = r#"'use strict';
// {{name}}: a Warden plugin.

exports.handler = async (event) => {
  const name = event.name.trim();
  if (!name) {
    const e = new Error('name must not be blank');
    e.name = 'ValidationError'; // reported as the error's type
    throw e;
  }
  return { message: `Hello, ${name}!` };
};
"#;

const NODE_TEST: &str = r#"'use strict';
// Run with: node --test
const test = require('node:test');
const assert = require('node:assert');
const { handler } = require('./main.js');

test('greets', async () => {
  assert.deepStrictEqual(await handler({ name: 'Ada' }), { message: 'Hello, Ada!' });
});

test('refuses a blank name', async () => {
  await assert.rejects(handler({ name: ' ' }), { name: 'ValidationError' });
});
"#;

const GO_MAIN: &str = r#"// {{name}}: a Warden plugin in Go.
package main

import (
	"strings"

	"warden.dev/sdk"
)

type Input struct {
	Name string `json:"name"`
}

type Output struct {
	Message string `json:"message"`
}

func handle(in Input) (Output, error) {
	name := strings.TrimSpace(in.Name)
	if name == "" {
		return Output{}, plugin.Errorf("ValidationError", "name must not be blank")
	}
	return Output{Message: "Hello, " + name + "!"}, nil
}

func main() {
	plugin.Run(handle)
}
"#;

const GO_TEST: &str = r#"package main

// Run with: go test ./...
import "testing"

func TestHandle(t *testing.T) {
	out, err := handle(Input{Name: "Ada"})
	if err != nil || out.Message != "Hello, Ada!" {
		t.Fatalf("got %v %v", out, err)
	}
	if _, err := handle(Input{Name: " "}); err == nil {
		t.Fatal("a blank name was accepted")
	}
}
"#;

const SH_MAIN: &str = r#"#!/bin/bash
# {{name}}: a Warden plugin in bash. The event arrives as JSON on stdin; what
# is printed on stdout is the result (parsed as JSON when it is JSON).
# Plugins have no network; use only what /usr/bin offers.
set -euo pipefail
event=$(cat)
name=$(printf '%s' "$event" | sed -n 's/.*"name"[[:space:]]*:[[:space:]]*"\([^"\\]*\)".*/\1/p')
if [ -z "${name// }" ]; then
  echo '{"error": {"type": "ValidationError", "message": "name must not be blank"}}'
  exit 1
fi
printf '{"message": "Hello, %s!"}\n' "$name"
"#;

const WASM_MAIN: &str = r#"/* {{name}}: a Warden plugin compiled to WebAssembly (a WASI command).
 * The event arrives as JSON on stdin; what is printed on stdout is the
 * result. Files and sockets are not available in the wasm tier. */
#include <stdio.h>
#include <string.h>

int main(void) {
    static char event[65536];
    size_t n = fread(event, 1, sizeof event - 1, stdin);
    event[n] = '\0';
    /* A real plugin would use a JSON library; the sample finds "name". */
    const char *key = strstr(event, "\"name\"");
    const char *start = key ? strchr(key + 6, '"') : NULL;
    const char *end = start ? strchr(start + 1, '"') : NULL;
    if (!start || !end || end == start + 1) {
        printf("{\"error\": {\"type\": \"ValidationError\", \"message\": \"name must not be blank\"}}\n");
        return 1;
    }
    printf("{\"message\": \"Hello, %.*s!\"}\n", (int)(end - start - 1), start + 1);
    return 0;
}
"#;

const WASM_BUILD: &str = r#"#!/bin/sh
# Build plugin.wasm with Debian's clang-14, lld-14, wasi-libc and
# libclang-rt-14-dev-wasm32 (Warden's scripts/install-deps installs them).
set -eu
cd "$(dirname "$0")"
clang-14 --target=wasm32-wasi -O2 -o plugin.wasm main.c
echo ok
"#;

const SH_TEST: &str = r#"#!/bin/bash
# Run with: bash test.sh
set -euo pipefail
here=$(dirname "$0")
got=$(echo '{"name": "Ada"}' | bash "$here/main.sh")
[ "$got" = '{"message": "Hello, Ada!"}' ] || { echo "FAIL: $got" >&2; exit 1; }
if echo '{"name": " "}' | bash "$here/main.sh" >/dev/null; then echo "FAIL: a blank name was accepted" >&2; exit 1; fi
echo ok
"#;

const RUST_MAIN: &str = r#"//! {{name}}: a Warden plugin in Rust, built into a native binary.

use serde::{Deserialize, Serialize};
use warden_plugin::Error;

#[derive(Deserialize)]
struct Input {
    name: String,
}

#[derive(Debug, Serialize)]
struct Output {
    message: String,
}

fn handle(input: Input) -> Result<Output, Error> {
    let name = input.name.trim();
    if name.is_empty() {
        return Err(Error::new("ValidationError", "name must not be blank"));
    }
    Ok(Output { message: format!("Hello, {name}!") })
}

fn main() {
    warden_plugin::run(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_and_refuses_blank_names() {
        assert_eq!(handle(Input { name: "Ada".into() }).unwrap().message, "Hello, Ada!");
        assert_eq!(handle(Input { name: " ".into() }).unwrap_err().kind, "ValidationError");
    }
}
"#;

const RUST_CARGO: &str = r#"[package]
name = "{{crate}}"
version = "0.1.0"
edition = "2021"
publish = false

# A project of its own, even inside another workspace.
[workspace]

[dependencies]
# The Warden Rust SDK, copied here by `warden plugin init`.
warden-plugin = { path = "warden-plugin" }
serde = { version = "1", features = ["derive"] }

[profile.release]
strip = true
"#;

const RUST_SDK_CARGO: &str = r#"[package]
name = "warden-plugin"
version = "0.1.0"
edition = "2021"
description = "Build a Warden native plugin from a typed Rust handler"
license = "Apache-2.0"
publish = false

[dependencies]
serde = "1"
serde_json = "1"
"#;

fn readme(name: &str, runtime: Runtime, test_cmd: &str) -> String {
    format!(
        r#"# {name}

A Warden plugin ({runtime:?}). It takes `{{"name": "Ada"}}` and returns
`{{"message": "Hello, Ada!"}}`.

| file | what |
|---|---|
| `manifest.json` | what the platform knows about the plugin: code, version, runtime, entrypoint, input and output JSON Schemas, limits |
| `event.json` | a sample event |

```sh
{test_cmd}                                  # the unit test
warden plugin test                          # run it in Warden's jail, checking both schemas
warden plugin pack                          # the package, validated exactly as the server will
warden plugin publish --server URL --submit # upload it and submit it for review (WARDEN_API_KEY)
```

The handler contract, limits and what reviewers look at: Warden's
`docs/plugin-guide.md`.
"#
    )
}

fn api_manifest(code: &str, name: &str) -> String {
    let doc = serde_json::json!({
        "code": code,
        "name": name,
        "version": "0.1.0",
        "type": "api",
        "description": format!("{name}: the Example Notes API's operations, as tools."),
        "author": "You <you@example.com>",
        "limits": {"timeout_ms": 10000}
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// A small OpenAPI 3.1 document: a path parameter, a query parameter, a
/// JSON body, a shared schema by reference, an API key in a header.
const API_DOCUMENT: &str = r##"{
  "openapi": "3.1.0",
  "info": {"title": "Example Notes API", "version": "1.0.0"},
  "servers": [{"url": "https://api.example.com/v1"}],
  "security": [{"api_key": []}],
  "paths": {
    "/notes": {
      "post": {
        "operationId": "createNote",
        "summary": "Create a note",
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewNote"}}}
        },
        "responses": {
          "201": {"description": "Created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Note"}}}}
        }
      }
    },
    "/notes/{id}": {
      "get": {
        "operationId": "getNote",
        "summary": "Read a note",
        "parameters": [
          {"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}},
          {"name": "format", "in": "query", "schema": {"enum": ["plain", "markdown"]}}
        ],
        "responses": {
          "200": {"description": "The note", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Note"}}}}
        }
      }
    }
  },
  "components": {
    "schemas": {
      "NewNote": {
        "type": "object",
        "required": ["text"],
        "properties": {"text": {"type": "string", "maxLength": 10000}, "tags": {"type": "array", "items": {"type": "string"}}}
      },
      "Note": {
        "type": "object",
        "required": ["id", "text"],
        "properties": {"id": {"type": "integer"}, "text": {"type": "string"}, "tags": {"type": ["array", "null"], "items": {"type": "string"}}}
      }
    },
    "securitySchemes": {
      "api_key": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
    }
  }
}
"##;

fn api_readme(name: &str) -> String {
    format!(
        r#"# {name}

A Warden API plugin: no code. Each operation of `openapi.json` becomes a
tool (named by its `operationId`) whose input schema is derived from its
parameters and JSON body, and whose output schema from its success response.

| file | what |
|---|---|
| `manifest.json` | code, version, `"type": "api"`, limits |
| `openapi.json` | the OpenAPI 3.0/3.1 document: servers, operations, security schemes |

```sh
warden plugin pack                          # the package, validated exactly as the server will; lists the tools
warden plugin publish --server URL --submit # upload it and submit it for review (WARDEN_API_KEY)
```

Calls go only to the document's `servers` (https). What is checked, and the
walkthrough: Warden's `docs/plugin-guide.md`.
"#
    )
}

fn fill(template: &str, name: &str, krate: &str) -> String {
    template.replace("{{name}}", name).replace("{{crate}}", krate)
}

fn write_files(dir: &std::path::Path, files: &[(String, String, bool)]) -> std::io::Result<()> {
    for (rel, text, executable) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
        if *executable {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// Run the command.
pub fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.trim().to_owned();
    // The name goes into code and comments of every template: keep it plain.
    let plain = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !plain {
        eprintln!(
            "{} `{name}`: a name is 1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter or digit",
            crate::style::error("error:")
        );
        return Ok(ExitCode::from(2));
    }
    if args.runtime == Some(Runtime::Rust) && ident(&name).replace('_', "-") == "warden-plugin" {
        eprintln!(
            "{} `{name}` is the Rust SDK's own crate name: choose another",
            crate::style::error("error:")
        );
        return Ok(ExitCode::from(2));
    }
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&name));
    if dir.exists() && !dir.is_dir() {
        eprintln!(
            "{} {} exists and is not a directory",
            crate::style::error("error:"),
            dir.display()
        );
        return Ok(ExitCode::from(2));
    }
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        eprintln!(
            "{} {} exists and is not empty",
            crate::style::error("error:"),
            dir.display()
        );
        hint("choose another name, or --dir for another place");
        return Ok(ExitCode::from(2));
    }
    let id = ident(&name);
    let code = args.code.unwrap_or_else(|| format!("com.example.{id}"));
    let krate = id.replace('_', "-");
    let event = "{\"name\": \"Ada\"}\n".to_owned();
    let mut files: Vec<(String, String, bool)> = Vec::new();
    let runtime = match (args.kind, args.runtime) {
        (Some(PluginType::Api), Some(_)) => {
            eprintln!(
                "{} an API plugin runs no code: drop --runtime",
                crate::style::error("error:")
            );
            return Ok(ExitCode::from(2));
        }
        (_, Some(r)) => Some(r),
        (Some(PluginType::Api), None) => None,
        (_, None) => {
            eprintln!(
                "{} a sandbox plugin needs --runtime",
                crate::style::error("error:")
            );
            return Ok(ExitCode::from(2));
        }
    };
    let Some(runtime) = runtime else {
        files.push(("manifest.json".into(), api_manifest(&code, &name), false));
        files.push(("openapi.json".into(), API_DOCUMENT.into(), false));
        files.push(("README.md".into(), api_readme(&name), false));
        write_files(&dir, &files)?;
        eprintln!(
            "{} an API plugin `{code}` in {} ({} files)",
            crate::style::ok("created"),
            dir.display(),
            files.len()
        );
        println!("{}", dir.display());
        hint(&format!(
            "edit openapi.json, then `cd {} && warden plugin pack`",
            dir.display()
        ));
        return Ok(ExitCode::SUCCESS);
    };
    let test_cmd = match runtime {
        Runtime::Python => {
            files.push((
                "manifest.json".into(),
                manifest(&code, &name, "python3", "main.py"),
                false,
            ));
            files.push(("main.py".into(), fill(PY_MAIN, &name, &krate), false));
            files.push(("test_main.py".into(), PY_TEST.into(), false));
            files.push(("warden_sdk/__init__.py".into(), sdk::PYTHON.into(), false));
            "python3 -m unittest"
        }
        Runtime::Node => {
            files.push((
                "manifest.json".into(),
                manifest(&code, &name, "node", "main.js"),
                false,
            ));
            files.push(("main.js".into(), fill(NODE_MAIN, &name, &krate), false));
            files.push(("main.test.js".into(), NODE_TEST.into(), false));
            let pkg = serde_json::json!({"name": krate, "version": "0.1.0", "private": true, "scripts": {"test": "node --test"}});
            files.push((
                "package.json".into(),
                serde_json::to_string_pretty(&pkg)? + "\n",
                false,
            ));
            "node --test"
        }
        Runtime::Go => {
            files.push(("manifest.json".into(), manifest(&code, &name, "go", "."), false));
            files.push((
                "go.mod".into(),
                format!(
                    "module example.com/{id}\n\ngo 1.18\n\nrequire warden.dev/sdk v{}\n",
                    sdk::VERSION
                ),
                false,
            ));
            files.push(("main.go".into(), fill(GO_MAIN, &name, &krate), false));
            files.push(("main_test.go".into(), GO_TEST.into(), false));
            files.push(("vendor/modules.txt".into(), sdk::GO_MODULES_TXT.into(), false));
            files.push(("vendor/warden.dev/sdk/go.mod".into(), sdk::GO_MOD.into(), false));
            files.push((
                "vendor/warden.dev/sdk/plugin.go".into(),
                sdk::GO_PLUGIN.into(),
                false,
            ));
            "go test ./..."
        }
        Runtime::Shell => {
            files.push((
                "manifest.json".into(),
                manifest(&code, &name, "shell", "main.sh"),
                false,
            ));
            files.push(("main.sh".into(), fill(SH_MAIN, &name, &krate), true));
            files.push(("test.sh".into(), SH_TEST.into(), true));
            "bash test.sh"
        }
        Runtime::Rust => {
            files.push((
                "manifest.json".into(),
                manifest(&code, &name, "native", &format!("bin/{krate}")),
                false,
            ));
            files.push(("Cargo.toml".into(), fill(RUST_CARGO, &name, &krate), false));
            files.push(("src/main.rs".into(), fill(RUST_MAIN, &name, &krate), false));
            files.push(("warden-plugin/Cargo.toml".into(), RUST_SDK_CARGO.into(), false));
            files.push(("warden-plugin/src/lib.rs".into(), sdk::RUST_LIB.into(), false));
            files.push((".gitignore".into(), "/target\n/bin\n".to_owned(), false));
            "cargo test"
        }
        Runtime::Wasm => {
            files.push((
                "manifest.json".into(),
                manifest(&code, &name, "wasm", "plugin.wasm"),
                false,
            ));
            files.push(("main.c".into(), fill(WASM_MAIN, &name, &krate), false));
            files.push(("build.sh".into(), WASM_BUILD.into(), true));
            "sh build.sh"
        }
    };
    files.push(("event.json".into(), event, false));
    files.push(("README.md".into(), readme(&name, runtime, test_cmd), false));
    write_files(&dir, &files)?;
    eprintln!(
        "{} a {:?} plugin `{code}` in {} ({} files)",
        crate::style::ok("created"),
        runtime,
        dir.display(),
        files.len()
    );
    println!("{}", dir.display());
    hint(&format!("cd {} && warden plugin test", dir.display()));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_valid_codes() {
        assert_eq!(ident("My Plugin-2"), "my_plugin_2");
        assert_eq!(ident("3d"), "p3d");
        let m: serde_json::Value =
            serde_json::from_str(&manifest("com.example.x", "x", "python3", "main.py")).unwrap();
        assert_eq!(m["version"], "0.1.0");
        warden_package::manifest::parse(
            manifest("com.example.my_plugin_2", "My Plugin", "go", "main.go").as_bytes(),
            &Default::default(),
        )
        .expect("the scaffolded manifest is valid");
    }

    #[test]
    fn the_api_sample_is_a_valid_package_with_its_tools() {
        let zip = warden_package::build::ZipBuilder::new()
            .file(
                "manifest.json",
                api_manifest("com.example.notes", "notes").as_bytes(),
            )
            .file("openapi.json", API_DOCUMENT.as_bytes())
            .file("README.md", api_readme("notes").as_bytes())
            .finish();
        let pkg = warden_package::open(&zip, &Default::default()).expect("the API sample is valid");
        let api = pkg.api.expect("an API plugin");
        let tools: Vec<(&str, &str, &str)> = api
            .tools
            .iter()
            .map(|t| (t.name.as_str(), t.method.as_str(), t.path.as_str()))
            .collect();
        assert_eq!(
            tools,
            [
                ("createNote", "POST", "/notes"),
                ("getNote", "GET", "/notes/{id}")
            ]
        );
        assert_eq!(api.hosts, ["api.example.com"]);
        assert_eq!(api.tools[1].input_schema["required"], serde_json::json!(["id"]));
    }
}
