//! API plugins: an OpenAPI 3.0 or 3.1 document (`openapi.json`,
//! `openapi.yaml` or `schema.yaml`) read as a list of tools, one per
//! operation, each with self-contained input and output JSON Schemas.
//!
//! The document is a stranger's: every problem is reported at its JSON
//! pointer (`openapi.json#/paths/~1pets/get/operationId`), and the work is
//! bounded whatever the document says: a size cap, a nesting cap, YAML
//! budgets (events, anchors, alias replay), an operation cap counted before
//! anything is derived, and a node and byte budget for inlining `$ref`s (a reference
//! fan-out cannot blow up). Only local references into `#/components/` are
//! followed; a reference cycle (a recursive schema) is refused, not
//! unrolled. Servers must be `https` URLs naming hosts; plain `http`,
//! loopback and private addresses only where the operator allows them;
//! link-local addresses (cloud metadata, `169.254.169.254`) never.
//!
//! Must never: fetch a reference, resolve a name, or touch anything outside
//! the bytes it is given.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::Problem;

/// The names an API plugin's document may have, at the package root.
pub const DOCUMENT_NAMES: &[&str] = &["openapi.json", "openapi.yaml", "schema.yaml"];

/// Largest document, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 2 << 20;

/// Most operations (tools) in one document.
pub const MAX_OPERATIONS: usize = 200;

/// Deepest nesting of the document's values.
pub const MAX_DEPTH: usize = 64;

/// Most schema nodes all tools together may hold once references are
/// inlined.
pub const MAX_INLINED_NODES: usize = 200_000;

/// Most bytes (strings and keys) all tools' schemas together may hold once
/// references are inlined: a long description shared by reference cannot
/// be copied into a memory bomb.
pub const MAX_INLINED_BYTES: usize = 16 << 20;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// What the operator allows a document's servers to name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRules {
    /// IP addresses (`policy.network_ip_literals`); host names only
    /// otherwise.
    pub ip_literals: bool,
    /// Plain `http` and loopback or private addresses
    /// (`policy.api_local_servers`: tests, an API on the local network).
    pub local: bool,
}

/// What an API plugin's document says, derived at upload and stored with
/// the version's manifest (under `api`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    /// The document's file name in the package.
    pub document: String,
    /// Its `openapi` version (`3.0.3`, `3.1.0`).
    pub openapi: String,
    /// The base URLs a call may go to (the document's `servers`).
    pub servers: Vec<String>,
    /// Their hosts, as `host[:port]`: the version's network capability.
    pub hosts: Vec<String>,
    /// One tool per operation, in document order.
    pub tools: Vec<Tool>,
}

/// One operation of the document, callable as a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// The `operationId`.
    pub name: String,
    /// HTTP method, upper case.
    pub method: String,
    /// Path template under the server URL (`/pets/{id}`).
    pub path: String,
    /// The operation's `summary`.
    pub summary: Option<String>,
    /// Where each input property goes in the request (`body` excepted).
    pub parameters: Vec<ToolParameter>,
    /// JSON Schema of the tool's input: one property per parameter, and the
    /// JSON request body under `body`.
    pub input_schema: Value,
    /// JSON Schema of the success (2xx) JSON response; `{}` when the
    /// document gives none.
    pub output_schema: Value,
    /// The ways to authenticate, any one of which will do; each is a list
    /// of schemes used together. Empty: no authentication.
    pub security: Vec<Vec<SecurityUse>>,
}

/// One parameter of a tool: its name in the input, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolParameter {
    /// The parameter's name (and input property).
    pub name: String,
    /// `path`, `query` or `header`.
    #[serde(rename = "in")]
    pub location: String,
    /// `false` for a query parameter declared `explode: false`: an array
    /// goes as one comma-separated value (`ids=1,2`) instead of a
    /// repeated name (`ids=1&ids=2`, the default). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explode: Option<bool>,
}

/// A security scheme an operation uses, in the kinds the platform injects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityUse {
    /// The scheme's name in `components.securitySchemes`.
    pub scheme: String,
    /// How the credential goes into the request.
    pub kind: SecurityKind,
    /// OAuth2 scopes the operation asks for.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The supported kinds of `securitySchemes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SecurityKind {
    /// `apiKey` in a header.
    ApiKeyHeader {
        /// The header.
        name: String,
    },
    /// `apiKey` in a query parameter.
    ApiKeyQuery {
        /// The parameter.
        name: String,
    },
    /// `http` with `scheme: bearer`.
    HttpBearer,
    /// `http` with `scheme: basic`.
    HttpBasic,
    /// `oauth2` with the `clientCredentials` flow.
    Oauth2ClientCredentials {
        /// Where tokens are fetched.
        token_url: String,
    },
}

/// Escape one JSON pointer token.
fn esc(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Problems located in one document.
struct Report<'a> {
    file: &'a str,
    problems: Vec<Problem>,
}

impl Report<'_> {
    fn at(&self, pointer: &str, message: impl Into<String>) -> Problem {
        Problem {
            location: format!("{}#{}", self.file, if pointer.is_empty() { "/" } else { pointer }),
            message: message.into(),
        }
    }
    fn push(&mut self, pointer: &str, message: impl Into<String>) {
        let p = self.at(pointer, message);
        self.problems.push(p);
    }
}

/// Read the document's bytes as JSON (`.json`) or YAML, under budgets.
fn read_document(file: &str, bytes: &[u8], r: &Report<'_>) -> Result<Value, Problem> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(r.at(
            "",
            format!(
                "{} bytes: a document may hold at most {MAX_DOCUMENT_BYTES}",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| r.at("", "not valid UTF-8"))?;
    if file.ends_with(".json") {
        return serde_json::from_str(text).map_err(|e| r.at("", format!("not valid JSON: {e}")));
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_events: 400_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: MAX_DEPTH,
            max_nodes: 200_000,
            max_documents: 1,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
            max_replay_stack_depth: 16,
        },
    };
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
        let e = e.to_string();
        let e: String = e.chars().take(400).collect();
        r.at(
            "",
            format!("not valid YAML (or over the parser's budget: aliases, depth, size): {e}"),
        )
    })
}

/// The pointer of the first value nested deeper than [`MAX_DEPTH`].
fn too_deep(v: &Value, depth: usize) -> Option<Vec<String>> {
    if depth > MAX_DEPTH {
        return Some(Vec::new());
    }
    let found = |k: String, child: &Value| {
        too_deep(child, depth + 1).map(|mut p| {
            p.push(k);
            p
        })
    };
    match v {
        Value::Object(m) => m.iter().find_map(|(k, c)| found(esc(k), c)),
        Value::Array(a) => a.iter().enumerate().find_map(|(i, c)| found(i.to_string(), c)),
        _ => None,
    }
}

/// Parse and check an API plugin's document, and derive its tools. `file`
/// is its name in the package (one of [`DOCUMENT_NAMES`]). On failure,
/// every problem found, each at `file#pointer`.
pub fn parse(file: &str, bytes: &[u8], rules: ServerRules) -> Result<ApiSpec, Vec<Problem>> {
    let mut r = Report {
        file,
        problems: Vec::new(),
    };
    let doc = read_document(file, bytes, &r).map_err(|p| vec![p])?;
    if let Some(mut path) = too_deep(&doc, 0) {
        path.reverse();
        let pointer: String = path.iter().map(|t| format!("/{t}")).collect();
        return Err(vec![
            r.at(&pointer, format!("nested deeper than {MAX_DEPTH} levels")),
        ]);
    }
    let Some(root) = doc.as_object() else {
        return Err(vec![r.at("", "an OpenAPI document is an object")]);
    };
    let version = match root.get("openapi").and_then(Value::as_str) {
        Some(v) if v.starts_with("3.0.") || v.starts_with("3.1.") => v.to_owned(),
        Some(v) => {
            return Err(vec![r.at(
                "/openapi",
                format!(
                    "`{}`: only OpenAPI 3.0 and 3.1 are accepted",
                    v.chars().take(32).collect::<String>()
                ),
            )]);
        }
        None if root.contains_key("swagger") => {
            return Err(vec![r.at(
                "/swagger",
                "Swagger 2.0 is not accepted: convert the document to OpenAPI 3.0 or 3.1",
            )]);
        }
        None => {
            return Err(vec![
                r.at("/openapi", "required: the OpenAPI version (3.0.x or 3.1.x)"),
            ]);
        }
    };
    let v30 = version.starts_with("3.0.");

    // Count operations before deriving anything: 10,000 is refused cheaply.
    let Some(paths) = root.get("paths").and_then(Value::as_object) else {
        return Err(vec![
            r.at("/paths", "required: an object of paths, each with its operations"),
        ]);
    };
    let count: usize = paths
        .values()
        .filter_map(Value::as_object)
        .map(|item| METHODS.iter().filter(|m| item.contains_key(**m)).count())
        .sum();
    if count > MAX_OPERATIONS {
        return Err(vec![r.at(
            "/paths",
            format!("{count} operations: an API plugin may have at most {MAX_OPERATIONS}"),
        )]);
    }
    if count == 0 {
        r.push("/paths", "no operations: an API plugin needs at least one");
    }

    let (servers, hosts) = servers(root, rules, &mut r);
    let schemes = security_schemes(&doc, rules, &mut r);
    let mut inliner = Inliner {
        doc: &doc,
        v30,
        budget: MAX_INLINED_NODES,
        bytes: MAX_INLINED_BYTES,
    };
    let mut tools = Vec::new();
    let mut names = HashSet::new();
    for (path, item) in paths {
        let item_at = format!("/paths/{}", esc(path));
        if !path.starts_with('/') {
            r.push(&item_at, "a path starts with `/`");
            continue;
        }
        let Some(item_obj) = item.as_object() else {
            r.push(&item_at, "a path item is an object");
            continue;
        };
        if item_obj.contains_key("$ref") {
            r.push(
                &format!("{item_at}/$ref"),
                "references to path items are not supported: write the operations out",
            );
            continue;
        }
        if item_obj.contains_key("servers") {
            r.push(
                &format!("{item_at}/servers"),
                "servers per path are not supported: list every server at the document's root",
            );
        }
        for method in METHODS {
            let Some(op) = item_obj.get(*method) else { continue };
            let op_at = format!("{item_at}/{method}");
            match operation(path, method, item_obj, op, &op_at, &schemes, &mut inliner, &mut r) {
                Some(tool) => {
                    if !names.insert(tool.name.clone()) {
                        r.push(
                            &format!("{op_at}/operationId"),
                            format!(
                                "`{}` names another operation too: operationIds are unique",
                                tool.name
                            ),
                        );
                    }
                    tools.push(tool);
                }
                None => {
                    if inliner.budget == 0 {
                        break;
                    }
                }
            }
        }
        if inliner.budget == 0 {
            break;
        }
    }
    if !r.problems.is_empty() {
        r.problems.sort();
        r.problems.dedup();
        return Err(r.problems);
    }
    Ok(ApiSpec {
        document: file.to_owned(),
        openapi: version,
        servers,
        hosts,
        tools,
    })
}

/// The root `servers`: absolute `https` URLs without variables, naming
/// hosts the platform may call. Returns the URLs and their hosts.
fn servers(root: &Map<String, Value>, rules: ServerRules, r: &mut Report<'_>) -> (Vec<String>, Vec<String>) {
    let mut urls = Vec::new();
    let mut hosts: Vec<String> = Vec::new();
    let Some(list) = root
        .get("servers")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    else {
        r.push(
            "/servers",
            "required: at least one server (`{\"url\": \"https://api.example.com\"}`); calls go only there",
        );
        return (urls, hosts);
    };
    if list.len() > 16 {
        r.push("/servers", format!("{} servers: at most 16", list.len()));
        return (urls, hosts);
    }
    for (i, s) in list.iter().enumerate() {
        let at = format!("/servers/{i}");
        if s.get("variables").is_some() {
            r.push(
                &format!("{at}/variables"),
                "server variables are not supported: write each server's URL out",
            );
            continue;
        }
        let Some(raw) = s.get("url").and_then(Value::as_str) else {
            r.push(&format!("{at}/url"), "required: the server's absolute URL");
            continue;
        };
        match server_url(raw, rules) {
            Ok((url, host)) => {
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
                urls.push(url);
            }
            Err(e) => r.push(&format!("{at}/url"), e),
        }
    }
    (urls, hosts)
}

/// One server URL, checked: the URL as calls will use it (no trailing
/// `/`) and its `host[:port]`.
pub fn server_url(raw: &str, rules: ServerRules) -> Result<(String, String), String> {
    let shown: String = raw.chars().take(80).collect();
    if raw.contains('{') {
        return Err(format!(
            "`{shown}` uses server variables, which are not supported: write the URL out"
        ));
    }
    let url = url::Url::parse(raw).map_err(|e| {
        format!("`{shown}` is not an absolute URL ({e}): calls need the server's full https URL")
    })?;
    match url.scheme() {
        "https" => {}
        "http" if rules.local => {}
        "http" => {
            return Err(format!(
                "`{shown}` is plain http: servers are https (plain http only where the operator sets policy.api_local_servers)"
            ));
        }
        s => return Err(format!("`{s}` URLs are not servers: use https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a server URL carries no user or password: credentials come from the platform".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a server URL has no query or fragment".into());
    }
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let host = match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            if d == "localhost" || d.ends_with(".localhost") {
                if !rules.local {
                    return Err(format!("`{d}` is loopback: servers are public hosts"));
                }
            } else {
                crate::hosts::check_host_entry(d, crate::hosts::IpLiterals::Refused)
                    .map_err(|e| format!("host `{d}`: {e}"))?;
            }
            format!("{d}{port}")
        }
        Some(url::Host::Ipv4(ip)) => {
            check_address(IpAddr::V4(ip), rules)?;
            format!("{ip}{port}")
        }
        Some(url::Host::Ipv6(ip)) => {
            check_address(IpAddr::V6(ip), rules)?;
            format!("[{ip}]{port}")
        }
        None => return Err(format!("`{shown}` names no host")),
    };
    let text = url.as_str().trim_end_matches('/').to_owned();
    Ok((text, host))
}

/// An IP literal as a server: only where the operator allows addresses;
/// never link-local (metadata), unspecified, multicast or broadcast;
/// loopback and private ranges only for local servers.
fn check_address(ip: IpAddr, rules: ServerRules) -> Result<(), String> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let never = |why: &str| Err(format!("`{ip}` is {why}: never a server"));
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_link_local() {
                return never("link-local (169.254.0.0/16, where cloud metadata lives)");
            }
            if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || v4.octets()[0] == 0 {
                return never("not a unicast host address");
            }
        }
        IpAddr::V6(v6) => {
            if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                return never("link-local (fe80::/10)");
            }
            if v6.is_unspecified() || v6.is_multicast() {
                return never("not a unicast host address");
            }
        }
    }
    if !rules.ip_literals {
        return Err(format!(
            "`{ip}` is an IP address: servers name hosts (addresses only where the operator sets policy.network_ip_literals)"
        ));
    }
    if is_local(ip) && !rules.local {
        return Err(format!(
            "`{ip}` is a loopback or private address: servers are public (local ones only where the operator sets policy.api_local_servers)"
        ));
    }
    Ok(())
}

fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let in_net = |net: Ipv4Addr, prefix: u32| {
                let mask = u32::MAX << (32 - prefix);
                u32::from(v4) & mask == u32::from(net) & mask
            };
            v4.is_loopback()
                || v4.is_private()
                || in_net(Ipv4Addr::new(100, 64, 0, 0), 10)
                || in_net(Ipv4Addr::new(198, 18, 0, 0), 15)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00 || v6 == Ipv6Addr::LOCALHOST
        }
    }
}

/// The document's `components.securitySchemes`, each mapped to a kind the
/// platform injects (or refused at its pointer).
fn security_schemes(doc: &Value, rules: ServerRules, r: &mut Report<'_>) -> BTreeMap<String, SecurityKind> {
    let mut out = BTreeMap::new();
    let Some(schemes) = doc
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object)
    else {
        return out;
    };
    for (name, s) in schemes {
        let at = format!("/components/securitySchemes/{}", esc(name));
        if s.get("$ref").is_some() {
            r.push(
                &format!("{at}/$ref"),
                "write the security scheme out here, not as a reference",
            );
            continue;
        }
        let field = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default();
        let kind = match field("type") {
            "apiKey" => match (field("in"), field("name")) {
                (_, "") => Err((
                    "/name",
                    "required: the header or query parameter the key goes in".to_owned(),
                )),
                ("header", n) => Ok(SecurityKind::ApiKeyHeader { name: n.to_owned() }),
                ("query", n) => Ok(SecurityKind::ApiKeyQuery { name: n.to_owned() }),
                ("cookie", _) => Err((
                    "/in",
                    "apiKey in a cookie is not supported: in a header or a query parameter".to_owned(),
                )),
                (other, _) => Err(("/in", format!("`{other}`: apiKey goes in `header` or `query`"))),
            },
            "http" => match field("scheme").to_ascii_lowercase().as_str() {
                "bearer" => Ok(SecurityKind::HttpBearer),
                "basic" => Ok(SecurityKind::HttpBasic),
                other => Err((
                    "/scheme",
                    format!("http scheme `{other}` is not supported: `bearer` or `basic`"),
                )),
            },
            "oauth2" => match s
                .pointer("/flows/clientCredentials/tokenUrl")
                .and_then(Value::as_str)
            {
                Some(t) => server_url(t, rules)
                    .map(|(url, _)| SecurityKind::Oauth2ClientCredentials { token_url: url })
                    .map_err(|e| ("/flows/clientCredentials/tokenUrl", e)),
                None => Err((
                    "/flows",
                    "only the OAuth2 `clientCredentials` flow (with its `tokenUrl`) is supported".to_owned(),
                )),
            },
            "" => Err(("/type", "required: apiKey, http or oauth2".to_owned())),
            other => Err((
                "/type",
                format!(
                    "`{other}` security is not supported: apiKey (header or query), http (bearer or basic) or oauth2 (clientCredentials)"
                ),
            )),
        };
        match kind {
            Ok(k) => {
                out.insert(name.clone(), k);
            }
            Err((sub, message)) => r.push(&format!("{at}{sub}"), message),
        }
    }
    out
}

/// Whether an `operationId` can be a tool name: a letter, then letters,
/// digits or `_`, 64 characters at most.
fn tool_name_ok(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The JSON media type of a `content` object, if it has one.
fn json_media(content: &Map<String, Value>) -> Option<(&String, &Value)> {
    content.iter().find(|(k, _)| {
        let k = k
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        k == "application/json" || k.ends_with("+json")
    })
}

#[allow(clippy::too_many_arguments)]
fn operation(
    path: &str,
    method: &str,
    item: &Map<String, Value>,
    op: &Value,
    at: &str,
    schemes: &BTreeMap<String, SecurityKind>,
    inl: &mut Inliner<'_>,
    r: &mut Report<'_>,
) -> Option<Tool> {
    let before = r.problems.len();
    let Some(op) = op.as_object() else {
        r.push(at, "an operation is an object");
        return None;
    };
    let name = match op.get("operationId").and_then(Value::as_str) {
        Some(n) if tool_name_ok(n) => n.to_owned(),
        Some(n) => {
            let shown: String = n.chars().take(64).collect();
            r.push(
                &format!("{at}/operationId"),
                format!("`{shown}` is not a tool name: a letter, then letters, digits or `_` (64 at most)"),
            );
            String::new()
        }
        None => {
            r.push(
                &format!("{at}/operationId"),
                "required: each operation's operationId names its tool",
            );
            String::new()
        }
    };
    if op.contains_key("servers") {
        r.push(
            &format!("{at}/servers"),
            "servers per operation are not supported: list every server at the document's root",
        );
    }

    // Parameters: the path item's, overridden by the operation's.
    let mut params: Vec<(String, String, bool, Value, Option<bool>)> = Vec::new();
    let lists = [
        (
            item.get("parameters"),
            format!("{}/parameters", &at[..at.rfind('/').unwrap_or(0)]),
        ),
        (op.get("parameters"), format!("{at}/parameters")),
    ];
    for (list, list_at) in lists {
        let Some(list) = list else { continue };
        let Some(list) = list.as_array() else {
            r.push(&list_at, "a list of parameters");
            continue;
        };
        for (i, p) in list.iter().enumerate() {
            let p_at = format!("{list_at}/{i}");
            let (p, p_at) = match inl.deref(p, &p_at, "parameters") {
                Ok(x) => x,
                Err((ptr, m)) => {
                    r.push(&ptr, m);
                    continue;
                }
            };
            let pname = p.get("name").and_then(Value::as_str).unwrap_or_default();
            let pin = p.get("in").and_then(Value::as_str).unwrap_or_default();
            if pname.is_empty() {
                r.push(&format!("{p_at}/name"), "required: the parameter's name");
                continue;
            }
            match pin {
                "path" | "query" | "header" => {}
                "cookie" => {
                    r.push(&format!("{p_at}/in"), "cookie parameters are not supported");
                    continue;
                }
                other => {
                    r.push(&format!("{p_at}/in"), format!("`{other}`: path, query or header"));
                    continue;
                }
            }
            // OpenAPI's default serialization (`form` in the query, `simple`
            // in paths and headers) is the one supported; `explode` only
            // changes how a query array goes.
            let style = if pin == "query" { "form" } else { "simple" };
            match p.get("style") {
                None => {}
                Some(Value::String(s)) if s == style => {}
                Some(other) => {
                    r.push(
                        &format!("{p_at}/style"),
                        format!("{other}: only `{style}` is supported for a {pin} parameter"),
                    );
                    continue;
                }
            }
            let explode = match p.get("explode") {
                None => None,
                Some(Value::Bool(b)) => (pin == "query" && !b).then_some(false),
                Some(_) => {
                    r.push(&format!("{p_at}/explode"), "must be a boolean");
                    continue;
                }
            };
            if pin == "header"
                && ["accept", "content-type", "authorization"].contains(&pname.to_ascii_lowercase().as_str())
            {
                // OpenAPI says these are ignored: the platform sets them.
                continue;
            }
            let Some(schema) = p.get("schema") else {
                r.push(
                    &format!("{p_at}/schema"),
                    "required: the parameter's schema (parameters described by `content` are not supported)",
                );
                continue;
            };
            let schema = match inl.inline(schema, &format!("{p_at}/schema"), &mut Vec::new(), 0) {
                Ok(s) => s,
                Err((ptr, m)) => {
                    r.push(&ptr, m);
                    return None;
                }
            };
            let mut schema = schema;
            if let (Some(d), Value::Object(m)) = (p.get("description").and_then(Value::as_str), &mut schema) {
                m.entry("description")
                    .or_insert_with(|| Value::String(d.to_owned()));
            }
            let required = pin == "path" || p.get("required").and_then(Value::as_bool).unwrap_or(false);
            if pin == "path" && p.get("required").and_then(Value::as_bool) != Some(true) {
                r.push(
                    &format!("{p_at}/required"),
                    "a path parameter is required: `required: true`",
                );
            }
            params.retain(|(n, l, _, _, _)| !(n == pname && l == pin));
            if let Some((_, other, _, _, _)) = params.iter().find(|(n, _, _, _, _)| n == pname) {
                r.push(
                    &format!("{p_at}/name"),
                    format!("`{pname}` names a {other} parameter too: a tool's inputs need distinct names"),
                );
                continue;
            }
            if pname == "body" {
                r.push(
                    &format!("{p_at}/name"),
                    "`body` is the request body's input: rename the parameter",
                );
                continue;
            }
            params.push((pname.to_owned(), pin.to_owned(), required, schema, explode));
        }
    }
    // Every `{name}` in the path template has its path parameter.
    for seg in path.split('{').skip(1) {
        let Some((var, _)) = seg.split_once('}') else {
            r.push(at, format!("`{path}` has an unclosed `{{`"));
            break;
        };
        if !params.iter().any(|(n, l, _, _, _)| n == var && l == "path") {
            r.push(
                &format!("{at}/parameters"),
                format!("`{{{var}}}` in the path has no path parameter `{var}`"),
            );
        }
    }

    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut parameters = Vec::new();
    for (n, l, req, schema, explode) in params {
        if req {
            required.push(Value::String(n.clone()));
        }
        properties.insert(n.clone(), schema);
        parameters.push(ToolParameter {
            name: n,
            location: l,
            explode,
        });
    }

    // The JSON request body, under `body`.
    if let Some(body) = op.get("requestBody") {
        match inl.deref(body, &format!("{at}/requestBody"), "requestBodies") {
            Err((ptr, m)) => r.push(&ptr, m),
            Ok((body, body_at)) => {
                let content = body.get("content").and_then(Value::as_object);
                match content.and_then(json_media) {
                    None => r.push(
                        &format!("{body_at}/content"),
                        "only JSON request bodies (application/json or +json) are supported",
                    ),
                    Some((media, m)) => {
                        let schema_at = format!("{body_at}/content/{}/schema", esc(media));
                        let schema = match m.get("schema") {
                            None => Ok(json!({})),
                            Some(s) => inl.inline(s, &schema_at, &mut Vec::new(), 0),
                        };
                        match schema {
                            Ok(s) => {
                                properties.insert("body".into(), s);
                                if body.get("required").and_then(Value::as_bool) == Some(true) {
                                    required.push(Value::String("body".into()));
                                }
                            }
                            Err((ptr, m)) => {
                                r.push(&ptr, m);
                                return None;
                            }
                        }
                    }
                }
            }
        }
    }

    // The first 2xx response with a JSON body.
    let mut output = json!({});
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        let mut codes: Vec<&String> = responses
            .keys()
            .filter(|k| {
                k.len() == 3
                    && k.starts_with('2')
                    && (k.as_str() == "2XX" || k.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        codes.sort();
        for code in codes {
            let resp_at = format!("{at}/responses/{code}");
            let (resp, resp_at) = match inl.deref(&responses[code], &resp_at, "responses") {
                Ok(x) => x,
                Err((ptr, m)) => {
                    r.push(&ptr, m);
                    break;
                }
            };
            let Some((media, m)) = resp
                .get("content")
                .and_then(Value::as_object)
                .and_then(json_media)
            else {
                continue;
            };
            if let Some(s) = m.get("schema") {
                match inl.inline(
                    s,
                    &format!("{resp_at}/content/{}/schema", esc(media)),
                    &mut Vec::new(),
                    0,
                ) {
                    Ok(s) => output = s,
                    Err((ptr, m)) => {
                        r.push(&ptr, m);
                        return None;
                    }
                }
            }
            break;
        }
    }

    // Security: the operation's, else the document's.
    let (sec, sec_at) = match op.get("security") {
        Some(s) => (Some(s), format!("{at}/security")),
        None => (inl.doc.get("security"), "/security".to_owned()),
    };
    let mut security = Vec::new();
    if let Some(sec) = sec {
        match sec.as_array() {
            None => r.push(&sec_at, "a list of security requirements"),
            Some(alternatives) => {
                for (i, req) in alternatives.iter().enumerate() {
                    let Some(req) = req.as_object() else {
                        r.push(&format!("{sec_at}/{i}"), "a security requirement is an object");
                        continue;
                    };
                    if req.is_empty() {
                        // `{}`: authentication is optional; a call without
                        // a credential is one of the ways.
                        security.push(Vec::new());
                        continue;
                    }
                    let mut all = Vec::new();
                    for (scheme, scopes) in req {
                        let Some(kind) = schemes.get(scheme) else {
                            if inl
                                .doc
                                .pointer(&format!("/components/securitySchemes/{}", esc(scheme)))
                                .is_none()
                            {
                                r.push(
                                    &format!("{sec_at}/{i}/{}", esc(scheme)),
                                    format!("`{scheme}` is not in components.securitySchemes"),
                                );
                            }
                            continue;
                        };
                        let scopes = scopes
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                            .unwrap_or_default();
                        all.push(SecurityUse {
                            scheme: scheme.clone(),
                            kind: kind.clone(),
                            scopes,
                        });
                    }
                    security.push(all);
                }
            }
        }
    }
    // Optional authentication alone is no authentication.
    if security.iter().all(Vec::is_empty) {
        security.clear();
    }

    let mut input = json!({"type": "object", "properties": properties, "additionalProperties": false});
    if !required.is_empty() {
        input["required"] = Value::Array(required);
    }
    for (which, s) in [("input", &input), ("output", &output)] {
        if let Err(e) = crate::schema::compile(s) {
            r.push(at, format!("the derived {which} schema does not compile: {e}"));
        }
    }
    if r.problems.len() > before {
        return None;
    }
    Some(Tool {
        name,
        method: method.to_ascii_uppercase(),
        path: path.to_owned(),
        summary: op
            .get("summary")
            .and_then(Value::as_str)
            .map(|s| s.chars().take(1000).collect()),
        parameters,
        input_schema: input,
        output_schema: output,
        security,
    })
}

/// Inlines local references into self-contained schemas, under a node
/// budget shared by the whole document.
struct Inliner<'a> {
    doc: &'a Value,
    v30: bool,
    budget: usize,
    bytes: usize,
}

type Located = (String, String);

/// Keywords whose values are data, not schemas: copied as they are.
const DATA_KEYWORDS: &[&str] = &["example", "examples", "default", "enum", "const"];

impl<'a> Inliner<'a> {
    /// The target of a local `#/components/...` reference, and its pointer.
    fn target(&self, r: &str, at: &str) -> Result<(&'a Value, String), Located> {
        let ref_at = format!("{at}/$ref");
        let Some(ptr) = r.strip_prefix('#') else {
            return Err((
                ref_at,
                format!(
                    "`{}`: only local references into #/components/ are followed (remote and file references are refused)",
                    r.chars().take(80).collect::<String>()
                ),
            ));
        };
        if !ptr.starts_with("/components/") {
            return Err((
                ref_at,
                format!(
                    "`{}`: only references into #/components/ are followed",
                    r.chars().take(80).collect::<String>()
                ),
            ));
        }
        match self.doc.pointer(ptr) {
            Some(v) => Ok((v, ptr.to_owned())),
            None => Err((
                ref_at,
                format!(
                    "`{}` is unresolvable: nothing is there",
                    r.chars().take(80).collect::<String>()
                ),
            )),
        }
    }

    /// A parameter, request body or response: itself, or what its `$ref`
    /// (into `#/components/<section>/`) points at, with its pointer.
    fn deref(&self, v: &'a Value, at: &str, section: &str) -> Result<(&'a Value, String), Located> {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return Ok((v, at.to_owned()));
        };
        let (target, ptr) = self.target(r, at)?;
        if !ptr.starts_with(&format!("/components/{section}/")) {
            return Err((
                format!("{at}/$ref"),
                format!("`{r}`: expected a reference into #/components/{section}/"),
            ));
        }
        if target.get("$ref").is_some() {
            return Err((
                format!("{ptr}/$ref"),
                "a reference to a reference: write the component out".into(),
            ));
        }
        Ok((target, ptr))
    }

    /// The budget ran out at `at`: the error, and no more inlining for the
    /// document.
    fn over(&mut self, at: &str) -> Located {
        self.budget = 0;
        (
            at.to_owned(),
            format!(
                "the schemas expand to more than {MAX_INLINED_NODES} nodes or {} MiB once references are inlined: share less, or simplify",
                MAX_INLINED_BYTES >> 20
            ),
        )
    }

    /// Charge what copying `v` costs to the byte budget (strings and keys
    /// by length, every value 8 bytes); `false` once it runs out. The walk
    /// stops there, so charging costs no more than the budget.
    fn charge(&mut self, v: &Value) -> bool {
        let mut todo = vec![v];
        while let Some(v) = todo.pop() {
            let cost = 8 + match v {
                Value::String(s) => s.len(),
                Value::Array(a) => {
                    todo.extend(a);
                    0
                }
                Value::Object(m) => {
                    todo.extend(m.values());
                    m.keys().map(String::len).sum()
                }
                _ => 0,
            };
            if cost > self.bytes {
                self.bytes = 0;
                return false;
            }
            self.bytes -= cost;
        }
        true
    }

    /// `v` (at pointer `at`) with every reference replaced by its target,
    /// OpenAPI 3.0's `nullable` and boolean exclusive bounds rewritten as
    /// JSON Schema 2020-12. `stack` holds the references being expanded: a
    /// reference to one of them is a cycle, refused.
    fn inline(
        &mut self,
        v: &Value,
        at: &str,
        stack: &mut Vec<String>,
        depth: usize,
    ) -> Result<Value, Located> {
        if self.budget == 0 {
            return Err(self.over(at));
        }
        self.budget -= 1;
        if depth > 2 * MAX_DEPTH {
            return Err((
                at.to_owned(),
                format!(
                    "schemas nest deeper than {} levels once references are inlined",
                    2 * MAX_DEPTH
                ),
            ));
        }
        let Value::Object(m) = v else {
            return Ok(match v {
                Value::Array(a) => {
                    let mut out = Vec::with_capacity(a.len());
                    for (i, x) in a.iter().enumerate() {
                        out.push(self.inline(x, &format!("{at}/{i}"), stack, depth + 1)?);
                    }
                    Value::Array(out)
                }
                other => {
                    if !self.charge(other) {
                        return Err(self.over(at));
                    }
                    other.clone()
                }
            });
        };
        if let Some(r) = m.get("$ref").and_then(Value::as_str) {
            if let Some(first) = stack.iter().position(|s| s == r) {
                let cycle: Vec<&str> = stack[first..].iter().map(String::as_str).chain([r]).collect();
                return Err((
                    format!("{at}/$ref"),
                    format!(
                        "recursive schema ({}): recursive schemas are refused; bound the nesting with distinct components",
                        cycle.join(" → ")
                    ),
                ));
            }
            let (target, ptr) = self.target(r, at)?;
            if !ptr.starts_with("/components/schemas/") {
                return Err((
                    format!("{at}/$ref"),
                    format!("`{r}`: a schema refers into #/components/schemas/"),
                ));
            }
            stack.push(r.to_owned());
            let resolved = self.inline(target, &ptr, stack, depth + 1);
            stack.pop();
            let resolved = resolved?;
            // 3.0 ignores a reference's siblings; 3.1 applies them too.
            let siblings: Map<String, Value> = m
                .iter()
                .filter(|(k, _)| *k != "$ref")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if self.v30 || siblings.is_empty() {
                return Ok(resolved);
            }
            let mut rest = self.inline(&Value::Object(siblings), at, stack, depth + 1)?;
            rest["allOf"] = json!([resolved]);
            return Ok(rest);
        }
        let mut out = Map::new();
        for (k, x) in m {
            if !self.charge(&Value::Null) || self.bytes < k.len() {
                return Err(self.over(at));
            }
            self.bytes -= k.len();
            if DATA_KEYWORDS.contains(&k.as_str()) || k.starts_with("x-") {
                if !self.charge(x) {
                    return Err(self.over(at));
                }
                out.insert(k.clone(), x.clone());
                continue;
            }
            out.insert(
                k.clone(),
                self.inline(x, &format!("{at}/{}", esc(k)), stack, depth + 1)?,
            );
        }
        if self.v30 {
            openapi30_to_2020(&mut out);
        }
        Ok(Value::Object(out))
    }
}

/// OpenAPI 3.0's dialect, where it differs from JSON Schema 2020-12:
/// `nullable: true` becomes a `null` type (and a `null` in `enum`);
/// boolean `exclusiveMinimum`/`exclusiveMaximum` become numbers.
fn openapi30_to_2020(m: &mut Map<String, Value>) {
    if let Some(Value::Bool(nullable)) = m.get("nullable") {
        let nullable = *nullable;
        m.remove("nullable");
        if nullable {
            match m.get_mut("type") {
                Some(Value::String(t)) => {
                    let t = t.clone();
                    m.insert("type".into(), json!([t, "null"]));
                }
                Some(Value::Array(ts)) if !ts.contains(&json!("null")) => ts.push(json!("null")),
                _ => {}
            }
            if let Some(Value::Array(e)) = m.get_mut("enum")
                && !e.contains(&Value::Null)
            {
                e.push(Value::Null);
            }
        }
    }
    for (flag, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
        if let Some(Value::Bool(b)) = m.get(flag) {
            let b = *b;
            m.remove(flag);
            if b && let Some(n) = m.remove(bound) {
                m.insert(flag.into(), n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: ServerRules = ServerRules {
        ip_literals: false,
        local: false,
    };

    fn doc(version: &str, paths: Value) -> Value {
        json!({
            "openapi": version,
            "info": {"title": "Pets", "version": "1"},
            "servers": [{"url": "https://api.pets.example/v1"}],
            "paths": paths,
        })
    }

    fn parse_json(v: &Value, rules: ServerRules) -> Result<ApiSpec, Vec<Problem>> {
        parse("openapi.json", &serde_json::to_vec(v).unwrap(), rules)
    }

    /// The single problem of `v`, as `(location, message)`.
    fn refused(v: &Value) -> (String, String) {
        let p = parse_json(v, STRICT).unwrap_err();
        assert_eq!(p.len(), 1, "{p:?}");
        (p[0].location.clone(), p[0].message.clone())
    }

    fn get(op: Value) -> Value {
        json!({"/pets": {"get": op}})
    }

    #[test]
    fn tools_take_parameters_body_refs_and_security() {
        let mut d = doc(
            "3.0.3",
            json!({"/pets/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "put": {
                    "operationId": "updatePet",
                    "summary": "Update a pet",
                    "parameters": [
                        {"$ref": "#/components/parameters/Trace"},
                        {"name": "dry_run", "in": "query", "schema": {"type": "boolean"}}
                    ],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}},
                    "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}},
                    "security": [{"key": []}, {"oauth": ["pets:write"]}]
                }
            }}),
        );
        d["components"] = json!({
            "parameters": {"Trace": {"name": "X-Trace", "in": "header", "required": true, "schema": {"type": "string"}}},
            "schemas": {
                "Pet": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"},
                    "tag": {"type": "string", "nullable": true},
                    "owner": {"$ref": "#/components/schemas/Owner"}
                }},
                "Owner": {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0, "exclusiveMinimum": true}}}
            },
            "securitySchemes": {
                "key": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "oauth": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "https://auth.pets.example/token", "scopes": {}}}}
            }
        });
        let spec = parse_json(&d, STRICT).unwrap();
        assert_eq!(spec.servers, ["https://api.pets.example/v1"]);
        assert_eq!(spec.hosts, ["api.pets.example"]);
        assert_eq!(spec.tools.len(), 1);
        let t = &spec.tools[0];
        assert_eq!(
            (t.name.as_str(), t.method.as_str(), t.path.as_str()),
            ("updatePet", "PUT", "/pets/{id}")
        );
        assert_eq!(t.summary.as_deref(), Some("Update a pet"));
        let locations: Vec<(&str, &str)> = t
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.location.as_str()))
            .collect();
        assert_eq!(
            locations,
            [("id", "path"), ("X-Trace", "header"), ("dry_run", "query")]
        );
        assert_eq!(t.input_schema["required"], json!(["id", "X-Trace", "body"]));
        assert_eq!(t.input_schema["properties"]["id"], json!({"type": "integer"}));
        // References inlined; 3.0's nullable and boolean bounds rewritten.
        let pet = &t.input_schema["properties"]["body"];
        assert_eq!(pet["properties"]["tag"], json!({"type": ["string", "null"]}));
        assert_eq!(
            pet["properties"]["owner"]["properties"]["age"],
            json!({"type": "integer", "exclusiveMinimum": 0})
        );
        assert_eq!(&t.output_schema, pet);
        assert!(!t.input_schema.to_string().contains("$ref"));
        // The derived schemas work as schemas.
        let input = crate::schema::compile(&t.input_schema).unwrap();
        assert!(input.is_valid(&json!({"id": 1, "X-Trace": "t", "body": {"name": "Rex", "tag": null}})));
        assert!(!input.is_valid(&json!({"id": "one", "X-Trace": "t", "body": {"name": "Rex"}})));
        assert!(!input.is_valid(&json!({"id": 1, "X-Trace": "t"})));
        assert!(
            !input.is_valid(&json!({"id": 1, "X-Trace": "t", "body": {"name": "Rex", "owner": {"age": 0}}}))
        );
        // Security: either scheme.
        assert_eq!(t.security.len(), 2);
        assert_eq!(
            t.security[0][0].kind,
            SecurityKind::ApiKeyHeader {
                name: "X-Api-Key".into()
            }
        );
        assert_eq!(
            t.security[1][0],
            SecurityUse {
                scheme: "oauth".into(),
                kind: SecurityKind::Oauth2ClientCredentials {
                    token_url: "https://auth.pets.example/token".into()
                },
                scopes: vec!["pets:write".into()],
            }
        );
    }

    #[test]
    fn openapi_31_nullable_types_and_ref_siblings_pass_through() {
        let mut d = doc(
            "3.1.0",
            get(
                json!({"operationId": "listPets", "responses": {"2XX": {"content": {"application/json": {"schema": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Pet", "description": "a pet"}
                }}}}}}),
            ),
        );
        d["components"] = json!({"schemas": {"Pet": {"type": ["string", "null"]}}});
        d["security"] = json!([{"bearer": []}]);
        d["components"]["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "Bearer"}});
        let spec = parse_json(&d, STRICT).unwrap();
        let t = &spec.tools[0];
        assert_eq!(
            t.output_schema["items"],
            json!({"description": "a pet", "allOf": [{"type": ["string", "null"]}]})
        );
        let out = crate::schema::compile(&t.output_schema).unwrap();
        assert!(out.is_valid(&json!(["a", null])));
        assert!(!out.is_valid(&json!([1])));
        assert_eq!(
            t.input_schema,
            json!({"type": "object", "properties": {}, "additionalProperties": false})
        );
        assert_eq!(
            t.security,
            vec![vec![SecurityUse {
                scheme: "bearer".into(),
                kind: SecurityKind::HttpBearer,
                scopes: vec![]
            }]]
        );
    }

    #[test]
    fn yaml_documents_parse_with_numeric_response_codes() {
        let yaml = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  - url: https://api.example.com\npaths:\n  /ping:\n    get:\n      operationId: ping\n      responses:\n        200:\n          description: ok\n          content:\n            application/json:\n              schema: {type: string}\n";
        let spec = parse("schema.yaml", yaml.as_bytes(), STRICT).unwrap();
        assert_eq!(spec.tools[0].output_schema, json!({"type": "string"}));
    }

    #[test]
    fn references_that_leave_the_document_or_lead_nowhere_are_refused() {
        for (r, why) in [
            ("https://evil.example/schema.json#/Pet", "only local references"),
            ("other.yaml#/components/schemas/Pet", "only local references"),
            ("#/paths/~1pets", "only references into #/components/"),
            ("#/components/schemas/Missing", "unresolvable"),
        ] {
            let d = doc(
                "3.0.3",
                get(
                    json!({"operationId": "listPets", "responses": {"200": {"content": {"application/json": {"schema": {"$ref": r}}}}}}),
                ),
            );
            let (at, m) = refused(&d);
            assert_eq!(
                at, "openapi.json#/paths/~1pets/get/responses/200/content/application~1json/schema/$ref",
                "{r}"
            );
            assert!(m.contains(why), "{r}: {m}");
        }
    }

    #[test]
    fn recursive_schemas_are_refused_at_the_reference_closing_the_cycle() {
        let mut d = doc(
            "3.1.0",
            get(
                json!({"operationId": "tree", "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}}}),
            ),
        );
        d["components"] = json!({"schemas": {
            "Node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/components/schemas/Kids"}}}},
            "Kids": {"$ref": "#/components/schemas/Node"}
        }});
        let (at, m) = refused(&d);
        assert_eq!(at, "openapi.json#/components/schemas/Kids/$ref");
        assert!(
            m.contains("recursive schema")
                && m.contains("Node → #/components/schemas/Kids → #/components/schemas/Node"),
            "{m}"
        );
    }

    #[test]
    fn reference_fan_out_is_bounded() {
        // Each level refers to the next twice: 2^40 nodes if unrolled.
        let mut schemas = Map::new();
        for i in 0..40 {
            let next = json!({"$ref": format!("#/components/schemas/S{}", i + 1)});
            schemas.insert(
                format!("S{i}"),
                json!({"type": "object", "properties": {"a": next, "b": next}}),
            );
        }
        schemas.insert("S40".into(), json!({"type": "string"}));
        let mut d = doc(
            "3.0.3",
            get(
                json!({"operationId": "bomb", "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/S0"}}}}}}),
            ),
        );
        d["components"] = json!({"schemas": schemas});
        let t = std::time::Instant::now();
        let (_, m) = refused(&d);
        assert!(m.contains("nodes or 16 MiB once references are inlined"), "{m}");
        assert!(t.elapsed() < std::time::Duration::from_secs(10));

        // Few nodes, but a long description copied by each reference: the
        // byte budget stops it (2^12 copies of 1 MiB would be 4 GiB).
        let mut schemas = Map::new();
        for i in 0..12 {
            let next = json!({"$ref": format!("#/components/schemas/S{}", i + 1)});
            schemas.insert(
                format!("S{i}"),
                json!({"type": "array", "prefixItems": [next, next]}),
            );
        }
        schemas.insert(
            "S12".into(),
            json!({"type": "string", "description": "x".repeat(1 << 20)}),
        );
        d["components"] = json!({"schemas": schemas});
        let t = std::time::Instant::now();
        let (at, m) = refused(&d);
        assert!(at.starts_with("openapi.json#/components/schemas/S12"), "{at}");
        assert!(m.contains("16 MiB"), "{m}");
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn ten_thousand_operations_are_refused_before_any_is_derived() {
        let mut paths = Map::new();
        for i in 0..10_000 {
            paths.insert(
                format!("/p{i}"),
                json!({"get": {"operationId": format!("op{i}"), "responses": {}}}),
            );
        }
        let (at, m) = refused(&doc("3.0.3", Value::Object(paths)));
        assert_eq!(at, "openapi.json#/paths");
        assert!(m.contains("10000 operations") && m.contains("at most 200"), "{m}");
    }

    #[test]
    fn deep_nesting_huge_documents_and_alias_bombs_are_refused() {
        let mut deep = json!("x");
        for _ in 0..70 {
            deep = json!({"a": deep});
        }
        let mut d = doc("3.0.3", get(json!({"operationId": "x", "responses": {}})));
        d["x-deep"] = deep;
        let (at, m) = refused(&d);
        assert!(at.starts_with("openapi.json#/x-deep/a/a/"), "{at}");
        assert!(m.contains("deeper than 64"), "{m}");

        let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        let p = parse("openapi.json", &huge, STRICT).unwrap_err();
        assert_eq!(p[0].location, "openapi.json#/");
        assert!(p[0].message.contains("at most"), "{p:?}");

        // A billion laughs: nine levels of ten aliases each.
        let mut bomb = String::from(
            "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(",");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let t = std::time::Instant::now();
        let p = parse("openapi.yaml", bomb.as_bytes(), STRICT).unwrap_err();
        assert_eq!(p[0].location, "openapi.yaml#/");
        assert!(p[0].message.contains("not valid YAML"), "{p:?}");
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn servers_must_be_public_https_hosts() {
        let local = ServerRules {
            ip_literals: true,
            local: true,
        };
        let ips = ServerRules {
            ip_literals: true,
            local: false,
        };
        for (url, rules, why) in [
            ("http://api.example.com", STRICT, "plain http"),
            ("https://localhost:8443", STRICT, "loopback"),
            ("https://127.0.0.1", STRICT, "an IP address"),
            ("https://127.0.0.1", ips, "loopback or private"),
            ("https://10.1.2.3", ips, "loopback or private"),
            ("https://[::1]:8443", ips, "loopback or private"),
            ("https://169.254.169.254/latest", local, "link-local"),
            ("http://[::ffff:169.254.169.254]", local, "link-local"),
            ("https://0.0.0.0", local, "not a unicast"),
            ("https://2130706433", STRICT, "an IP address"),
            ("https://{region}.api.example.com", STRICT, "server variables"),
            ("/v1", STRICT, "not an absolute URL"),
            ("https://user:pw@api.example.com", STRICT, "no user or password"),
            ("ftp://api.example.com", STRICT, "not servers"),
            ("https://intranet", STRICT, "single-label"),
        ] {
            let mut d = doc("3.0.3", get(json!({"operationId": "x", "responses": {}})));
            d["servers"] = json!([{"url": url}]);
            let p = parse_json(&d, rules).unwrap_err();
            assert_eq!(p.len(), 1, "{url}: {p:?}");
            assert_eq!(p[0].location, "openapi.json#/servers/0/url", "{url}");
            assert!(p[0].message.contains(why), "{url}: {}", p[0].message);
        }
        // What the operator allows.
        let mut d = doc("3.0.3", get(json!({"operationId": "x", "responses": {}})));
        d["servers"] = json!([{"url": "http://127.0.0.1:8080/api/"}]);
        let spec = parse_json(&d, local).unwrap();
        assert_eq!(spec.servers, ["http://127.0.0.1:8080/api"]);
        assert_eq!(spec.hosts, ["127.0.0.1:8080"]);
        // Variables, missing servers, servers per operation.
        d["servers"] = json!([{"url": "https://{r}.example.com", "variables": {"r": {"default": "eu"}}}]);
        assert_eq!(refused(&d).0, "openapi.json#/servers/0/variables");
        d["servers"] = json!([]);
        assert_eq!(refused(&d).0, "openapi.json#/servers");
        let mut d = doc(
            "3.0.3",
            get(
                json!({"operationId": "x", "responses": {}, "servers": [{"url": "https://evil.example.com"}]}),
            ),
        );
        assert_eq!(refused(&d).0, "openapi.json#/paths/~1pets/get/servers");
        d["paths"]["/pets"]["servers"] = json!([]);
        d["paths"]["/pets"]["get"]
            .as_object_mut()
            .unwrap()
            .remove("servers");
        assert_eq!(refused(&d).0, "openapi.json#/paths/~1pets/servers");
    }

    #[test]
    fn operation_ids_are_required_unique_safe_names() {
        let (at, m) = refused(&doc("3.0.3", get(json!({"responses": {}}))));
        assert_eq!(at, "openapi.json#/paths/~1pets/get/operationId");
        assert!(m.contains("required"), "{m}");
        let (at, m) = refused(&doc(
            "3.0.3",
            get(json!({"operationId": "../etc/passwd", "responses": {}})),
        ));
        assert_eq!(at, "openapi.json#/paths/~1pets/get/operationId");
        assert!(m.contains("not a tool name"), "{m}");
        let d = doc(
            "3.0.3",
            json!({"/a": {"get": {"operationId": "same", "responses": {}}}, "/b": {"get": {"operationId": "same", "responses": {}}}}),
        );
        let (at, m) = refused(&d);
        assert_eq!(at, "openapi.json#/paths/~1b/get/operationId");
        assert!(m.contains("unique"), "{m}");
    }

    #[test]
    fn unsupported_security_and_parameters_are_refused_where_they_are() {
        let mut d = doc("3.0.3", get(json!({"operationId": "x", "responses": {}})));
        for (scheme, at, why) in [
            (
                json!({"type": "apiKey", "in": "cookie", "name": "sid"}),
                "/in",
                "cookie",
            ),
            (json!({"type": "http", "scheme": "digest"}), "/scheme", "digest"),
            (
                json!({"type": "oauth2", "flows": {"authorizationCode": {}}}),
                "/flows",
                "clientCredentials",
            ),
            (
                json!({"type": "openIdConnect", "openIdConnectUrl": "https://x.example.com"}),
                "/type",
                "not supported",
            ),
            (
                json!({"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "http://169.254.169.254/token"}}}),
                "/flows/clientCredentials/tokenUrl",
                "plain http",
            ),
        ] {
            d["components"] = json!({"securitySchemes": {"s": scheme}});
            let (loc, m) = refused(&d);
            assert_eq!(loc, format!("openapi.json#/components/securitySchemes/s{at}"));
            assert!(m.contains(why), "{m}");
        }
        d["components"] = json!({});
        d["paths"]["/pets"]["get"]["security"] = json!([{"nope": []}]);
        assert_eq!(refused(&d).0, "openapi.json#/paths/~1pets/get/security/0/nope");

        for (params, at, why) in [
            (
                json!([{"name": "sid", "in": "cookie", "schema": {}}]),
                "/0/in",
                "cookie",
            ),
            (json!([{"name": "q", "in": "query"}]), "/0/schema", "required"),
            (
                json!([{"name": "q", "in": "query", "schema": {}}, {"name": "q", "in": "header", "schema": {}}]),
                "/1/name",
                "distinct",
            ),
            (
                json!([{"name": "body", "in": "query", "schema": {}}]),
                "/0/name",
                "rename",
            ),
            (
                json!([{"$ref": "#/components/schemas/X"}]),
                "/0/$ref",
                "unresolvable",
            ),
            (
                json!([{"name": "q", "in": "query", "style": "deepObject", "schema": {}}]),
                "/0/style",
                "only `form`",
            ),
            (
                json!([{"name": "id", "in": "path", "required": true, "style": "matrix", "schema": {}}]),
                "/0/style",
                "only `simple`",
            ),
            (
                json!([{"name": "q", "in": "query", "explode": "no", "schema": {}}]),
                "/0/explode",
                "boolean",
            ),
        ] {
            let d = doc(
                "3.0.3",
                get(json!({"operationId": "x", "parameters": params, "responses": {}})),
            );
            let (loc, m) = refused(&d);
            assert_eq!(loc, format!("openapi.json#/paths/~1pets/get/parameters{at}"));
            assert!(m.contains(why), "{m}");
        }
        // A path template's variable needs its parameter.
        let d = doc(
            "3.0.3",
            json!({"/pets/{id}": {"get": {"operationId": "x", "responses": {}}}}),
        );
        let (loc, m) = refused(&d);
        assert_eq!(loc, "openapi.json#/paths/~1pets~1{id}/get/parameters");
        assert!(m.contains("`{id}`"), "{m}");
        // Bodies are JSON.
        let d = doc(
            "3.0.3",
            get(json!({"operationId": "x", "requestBody": {"content": {"text/plain": {}}}, "responses": {}})),
        );
        assert_eq!(
            refused(&d).0,
            "openapi.json#/paths/~1pets/get/requestBody/content"
        );
    }

    #[test]
    fn versions_other_than_3_0_and_3_1_are_refused() {
        let mut d = doc("2.0", get(json!({"operationId": "x", "responses": {}})));
        assert_eq!(refused(&d).0, "openapi.json#/openapi");
        d.as_object_mut().unwrap().remove("openapi");
        d["swagger"] = json!("2.0");
        assert_eq!(refused(&d).0, "openapi.json#/swagger");
    }
}
