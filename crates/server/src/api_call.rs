//! Calling an API plugin's tools: the event `{"tool": NAME, "input": {...}}`
//! becomes one HTTP request to the document's first server, made by the
//! built-in HTTP tool ([`warden_builtins::Http`]) under a policy that
//! allows exactly the document's hosts, with the credential named after
//! the operation's security scheme injected by Warden's own client.
//!
//! What is checked where: the event against the tools' combined input
//! schema ([`input_schema`], before anything is recorded: a 422); the
//! request here (path parameters percent-encoded, query, headers, JSON
//! body); the 2xx response body against the tool's `output_schema` by the
//! executor, as any plugin's result.
//!
//! Must never: reach a host that is not one of the document's servers';
//! send a credential the operation's security does not name; return a
//! secret (the HTTP tool scrubs every form of it).

use serde_json::{Map, Value, json};
use warden_builtins::{Builtin as _, Context, Failure, Limits};
use warden_core::credential::CredentialKind;
use warden_package::openapi::{ApiSpec, SecurityKind, Tool};

/// The event property naming the tool.
pub(crate) const TOOL: &str = "tool";
/// The event property holding the tool's input.
pub(crate) const INPUT: &str = "input";

/// Longest part of a non-2xx response body quoted in the failure.
const QUOTED_BYTES: usize = 512;

/// The JSON Schema of an API plugin's events: `tool` names one of the
/// tools, and `input` is checked against that tool's `input_schema`, so a
/// violation is located under `/input`.
pub(crate) fn input_schema(spec: &ApiSpec) -> Value {
    let names: Vec<&str> = spec.tools.iter().map(|t| t.name.as_str()).collect();
    let cases: Vec<Value> = spec
        .tools
        .iter()
        .map(|t| {
            json!({
                "if": {"properties": {TOOL: {"const": t.name}}, "required": [TOOL]},
                "then": {"properties": {INPUT: t.input_schema}}
            })
        })
        .collect();
    json!({
        "type": "object",
        "required": [TOOL],
        "additionalProperties": false,
        "properties": {
            TOOL: {"type": "string", "enum": names},
            INPUT: {"type": "object"}
        },
        "allOf": cases
    })
}

/// The tool an event names (after the input schema check).
pub(crate) fn tool_of(event: &Value) -> Option<&str> {
    event.get(TOOL)?.as_str()
}

/// One prepared call of a tool: where it goes, and the credential it uses.
#[derive(Debug)]
pub(crate) struct Call {
    /// The operation.
    pub(crate) tool: Tool,
    /// The base URL (the document's first server).
    pub(crate) server: String,
    /// The credential put in, by name (a security scheme's name).
    pub(crate) credential: Option<String>,
    /// Why the operation cannot be authenticated (the failure's kind and
    /// message): the credentials its security asks for are not stored for
    /// the app, or do not fit its schemes.
    pub(crate) missing: Option<(&'static str, String)>,
}

/// Whether a stored credential of `kind` authenticates the way `scheme`
/// (the document's security scheme) says: an `apiKey` in the same header
/// (names compared without case) or the same query parameter, a bearer
/// token (`Bearer`, or an OAuth2 client-credentials token), basic auth, or
/// OAuth2 client-credentials. `Err` says what differs.
///
/// The credential's own definition is what Warden injects (the admin bound
/// the secret to it; a document cannot move a secret into a query string or
/// send a client secret to its own token URL), so a credential that does not
/// fit the scheme is not used at all.
pub(crate) fn fits(scheme: &SecurityKind, kind: &CredentialKind) -> Result<(), String> {
    let stored = match kind {
        CredentialKind::ApiKey { header: Some(h), .. } => format!("an API key in the header `{h}`"),
        CredentialKind::ApiKey { query, .. } => format!(
            "an API key in the query parameter `{}`",
            query.as_deref().unwrap_or("api_key")
        ),
        CredentialKind::Bearer => "a bearer token".into(),
        CredentialKind::Basic { .. } => "basic auth".into(),
        CredentialKind::OAuth2ClientCredentials { .. } => "OAuth2 client credentials".into(),
    };
    let (ok, wanted) = match scheme {
        SecurityKind::ApiKeyHeader { name } => (
            matches!(kind, CredentialKind::ApiKey { header: Some(h), .. } if h.eq_ignore_ascii_case(name)),
            format!("an API key in the header `{name}`"),
        ),
        SecurityKind::ApiKeyQuery { name } => (
            matches!(kind, CredentialKind::ApiKey { header: None, query }
                if query.as_deref().unwrap_or("api_key") == name),
            format!("an API key in the query parameter `{name}`"),
        ),
        SecurityKind::HttpBearer => (
            matches!(
                kind,
                CredentialKind::Bearer | CredentialKind::OAuth2ClientCredentials { .. }
            ),
            "a bearer token".into(),
        ),
        SecurityKind::HttpBasic => (matches!(kind, CredentialKind::Basic { .. }), "basic auth".into()),
        SecurityKind::Oauth2ClientCredentials { .. } => (
            matches!(kind, CredentialKind::OAuth2ClientCredentials { .. }),
            "OAuth2 client credentials".into(),
        ),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("the scheme wants {wanted}; the credential is {stored}"))
    }
}

/// The credential `tool` uses among those stored (`stored`: names opened
/// for the app, with their kinds): the first of its security alternatives
/// that is one scheme with a stored credential that [`fits`] it. `Err` is
/// the failure's kind (`MissingCredential`, or `CredentialMismatch` when a
/// credential of that name is stored but does not fit) and its message.
pub(crate) fn choose(
    tool: &Tool,
    stored: &[(&str, &CredentialKind)],
) -> Result<Option<String>, (&'static str, String)> {
    if tool.security.is_empty() {
        return Ok(None);
    }
    let mut unfit = Vec::new();
    for alternative in &tool.security {
        let [one] = alternative.as_slice() else { continue };
        let Some((_, kind)) = stored.iter().find(|(name, _)| *name == one.scheme) else {
            continue;
        };
        match fits(&one.kind, kind) {
            Ok(()) => return Ok(Some(one.scheme.clone())),
            Err(why) => unfit.push(format!("`{}`: {why}", one.scheme)),
        }
    }
    if !unfit.is_empty() {
        return Err((
            "CredentialMismatch",
            format!(
                "the operation `{}` cannot use the stored credential{} ({}); nothing was sent",
                tool.name,
                if unfit.len() > 1 { "s" } else { "" },
                unfit.join("; ")
            ),
        ));
    }
    let wanted: Vec<String> = tool
        .security
        .iter()
        .map(|alt| {
            alt.iter()
                .map(|s| format!("`{}`", s.scheme))
                .collect::<Vec<_>>()
                .join(" with ")
        })
        .collect();
    Err((
        "MissingCredential",
        format!(
            "the operation `{}` needs the credential {} (named after its security scheme), and none is stored for this app or its installation{}",
            tool.name,
            wanted.join(" or "),
            if tool.security.iter().any(|a| a.len() > 1) {
                " (schemes used together are not supported: one credential per request)"
            } else {
                ""
            }
        ),
    ))
}

/// The scheme names `tool`'s security may use, each once.
pub(crate) fn scheme_names(tool: &Tool) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in tool.security.iter().flatten() {
        if !names.contains(&s.scheme) {
            names.push(s.scheme.clone());
        }
    }
    names
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Failure {
    Failure::Handler {
        kind: "InvalidInput",
        message: format!("`{field}` {why}"),
    }
}

/// `s` percent-encoded as one path segment (RFC 3986 unreserved characters
/// kept): a value cannot add a segment or a query.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A scalar's text.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A parameter's values: one for a scalar, each item of an array of
/// scalars, none for null (an absent optional one).
fn values(field: &str, v: &Value) -> Result<Vec<String>, Failure> {
    let refused = || {
        invalid(
            field,
            "must be a string, a number, a boolean or an array of them (objects in parameters are not supported)",
        )
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(|i| text(i).ok_or_else(refused)).collect(),
        other => text(other).map(|t| vec![t]).ok_or_else(refused),
    }
}

impl Call {
    /// The HTTP tool's event for `input` (`{method, url, query, headers,
    /// body, credential}`); every error names the input field.
    pub(crate) fn request(&self, input: &Map<String, Value>) -> Result<Value, Failure> {
        let mut path = self.tool.path.clone();
        let mut query = form_urlencoded::Serializer::new(String::new());
        let mut headers = Map::new();
        for p in &self.tool.parameters {
            let field = format!("input.{}", p.name);
            let Some(v) = input.get(&p.name) else { continue };
            let items = values(&field, v)?;
            // Null, or an empty array, leaves an optional parameter out; a
            // path parameter cannot be an empty array.
            if items.is_empty() {
                if p.location == "path" && !v.is_null() {
                    return Err(invalid(&field, "must not be an empty array"));
                }
                continue;
            }
            match p.location.as_str() {
                // OpenAPI's `simple` style: items joined by commas, each
                // encoded as a segment.
                "path" => {
                    let joined = items.iter().map(|i| segment(i)).collect::<Vec<_>>().join(",");
                    path = path.replace(&format!("{{{}}}", p.name), &joined);
                }
                // `form` style: `ids=1&ids=2`, or `ids=1,2` with
                // `explode: false`.
                "query" if p.explode == Some(false) => {
                    query.append_pair(&p.name, &items.join(","));
                }
                "query" => {
                    for i in &items {
                        query.append_pair(&p.name, i);
                    }
                }
                "header" => {
                    let joined = items.join(",");
                    if joined.contains(['\r', '\n']) {
                        return Err(invalid(&field, "must not contain a line break"));
                    }
                    headers.insert(p.name.clone(), Value::String(joined));
                }
                other => {
                    return Err(invalid(
                        &field,
                        format!("goes `in: {other}`, which is not supported"),
                    ));
                }
            }
        }
        if let Some(left) = path.find('{') {
            return Err(invalid(
                "input",
                format!("lacks the path parameter of `{}`", &path[left..]),
            ));
        }
        let mut url = format!("{}{}", self.server.trim_end_matches('/'), path);
        let query = query.finish();
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        let mut event = json!({
            "method": self.tool.method,
            "url": url,
        });
        if let Some(body) = input.get("body") {
            // Sent as JSON whatever its type (a JSON string included).
            headers.insert("content-type".into(), Value::String("application/json".into()));
            event["body"] = Value::String(body.to_string());
        }
        if !headers.is_empty() {
            event["headers"] = Value::Object(headers);
        }
        if let Some(c) = &self.credential {
            event["credential"] = Value::String(c.clone());
        }
        Ok(event)
    }

    /// Make the call for `event` (checked against [`input_schema`]): the
    /// 2xx response's body, or a failure naming the status (non-2xx), the
    /// refusal, or the missing credential.
    pub(crate) fn call(&self, event: &Value, limits: Limits, cx: &mut Context<'_>) -> Result<Value, Failure> {
        if let Some((kind, why)) = &self.missing {
            return Err(Failure::Handler {
                kind,
                message: why.clone(),
            });
        }
        let empty = Map::new();
        let input = event.get(INPUT).and_then(Value::as_object).unwrap_or(&empty);
        let request = self.request(input)?;
        let out = warden_builtins::Http.call(&request, limits, cx)?;
        let status = out.get("status").and_then(Value::as_u64).unwrap_or(0);
        let body = out.get("body").cloned().unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let text = match &body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut quoted: String = text.chars().take(QUOTED_BYTES).collect();
        if quoted.len() < text.len() {
            quoted.push('…');
        }
        Err(Failure::Handler {
            kind: "UpstreamStatus",
            message: format!(
                "{} {} answered {status}: {quoted}",
                self.tool.method, self.tool.path
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_package::openapi::{SecurityUse, ToolParameter};

    fn tool() -> Tool {
        Tool {
            name: "getPet".into(),
            method: "GET".into(),
            path: "/pets/{id}".into(),
            summary: None,
            parameters: vec![
                ToolParameter {
                    name: "id".into(),
                    location: "path".into(),
                    explode: None,
                },
                ToolParameter {
                    name: "fields".into(),
                    location: "query".into(),
                    explode: None,
                },
                ToolParameter {
                    name: "X-Trace".into(),
                    location: "header".into(),
                    explode: None,
                },
            ],
            input_schema: json!({}),
            output_schema: json!({}),
            security: vec![vec![SecurityUse {
                scheme: "key".into(),
                kind: SecurityKind::HttpBearer,
                scopes: vec![],
            }]],
        }
    }

    #[test]
    fn a_request_is_built_with_its_parameters_in_place() {
        let call = Call {
            tool: tool(),
            server: "https://api.example/v1/".into(),
            credential: Some("key".into()),
            missing: None,
        };
        let input = json!({"id": "a b/../c?d", "fields": 3, "X-Trace": true, "body": "text"});
        let got = call.request(input.as_object().unwrap()).unwrap();
        assert_eq!(
            got,
            json!({
                "method": "GET",
                "url": "https://api.example/v1/pets/a%20b%2F..%2Fc%3Fd?fields=3",
                "headers": {"X-Trace": "true", "content-type": "application/json"},
                "body": "\"text\"",
                "credential": "key"
            })
        );
        // A null optional parameter is left out.
        let got = call
            .request(json!({"id": 1, "fields": null}).as_object().unwrap())
            .unwrap();
        assert_eq!(got["url"], "https://api.example/v1/pets/1");
        // Arrays: a comma-separated path segment, a repeated query name, a
        // comma-separated header; objects are refused by name.
        let got = call
            .request(
                json!({"id": [1, "a/b"], "fields": ["x y", "&z"], "X-Trace": ["a", 2]})
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(
            got["url"],
            "https://api.example/v1/pets/1,a%2Fb?fields=x+y&fields=%26z"
        );
        assert_eq!(got["headers"]["X-Trace"], "a,2");
        let mut joined = call.tool.clone();
        joined.parameters[1].explode = Some(false);
        let joined = Call {
            tool: joined,
            server: call.server.clone(),
            credential: None,
            missing: None,
        };
        let got = joined
            .request(json!({"id": 1, "fields": ["a", "b"]}).as_object().unwrap())
            .unwrap();
        assert_eq!(got["url"], "https://api.example/v1/pets/1?fields=a%2Cb");
        for (input, field) in [
            (json!({"id": {"a": 1}}), "`input.id`"),
            (json!({"id": []}), "`input.id`"),
            (json!({"id": 1, "fields": [[1]]}), "`input.fields`"),
            (json!({"id": 1, "X-Trace": "a\r\nX-Evil: 1"}), "`input.X-Trace`"),
        ] {
            match call.request(input.as_object().unwrap()) {
                Err(Failure::Handler { kind, message }) => {
                    assert_eq!(kind, "InvalidInput");
                    assert!(message.contains(field), "{input}: {message}");
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_credential_is_the_security_schemes_name() {
        let t = tool();
        let bearer = CredentialKind::Bearer;
        assert_eq!(choose(&t, &[("key", &bearer)]), Ok(Some("key".into())));
        let (kind, why) = choose(&t, &[("other", &bearer)]).unwrap_err();
        assert_eq!(kind, "MissingCredential");
        assert!(why.contains("`key`") && why.contains("getPet"), "{why}");
        // Stored under the scheme's name but of another kind: not used.
        let basic = CredentialKind::Basic { username: "u".into() };
        let (kind, why) = choose(&t, &[("key", &basic)]).unwrap_err();
        assert_eq!(kind, "CredentialMismatch");
        assert!(
            why.contains("wants a bearer token") && why.contains("is basic auth"),
            "{why}"
        );
        let mut open = t.clone();
        open.security.clear();
        assert_eq!(choose(&open, &[]), Ok(None));
        assert_eq!(scheme_names(&t), ["key"]);
    }

    #[test]
    fn a_credential_fits_a_scheme_only_where_it_puts_the_secret_the_same_way() {
        let header = |h: &str| CredentialKind::ApiKey {
            header: Some(h.into()),
            query: None,
        };
        let query = |q: Option<&str>| CredentialKind::ApiKey {
            header: None,
            query: q.map(Into::into),
        };
        let oauth = CredentialKind::OAuth2ClientCredentials {
            token_url: "https://auth.example/t".into(),
            client_id: "c".into(),
            scope: None,
            audience: None,
        };
        let in_header = SecurityKind::ApiKeyHeader {
            name: "X-Api-Key".into(),
        };
        let in_query = SecurityKind::ApiKeyQuery { name: "key".into() };
        assert!(fits(&in_header, &header("x-api-key")).is_ok());
        assert!(fits(&in_header, &header("X-Other")).is_err());
        assert!(fits(&in_header, &query(Some("X-Api-Key"))).is_err());
        assert!(fits(&in_query, &query(Some("key"))).is_ok());
        assert!(fits(&in_query, &query(Some("Key"))).is_err());
        assert!(
            fits(
                &SecurityKind::ApiKeyQuery {
                    name: "api_key".into()
                },
                &query(None)
            )
            .is_ok()
        );
        assert!(fits(&in_query, &header("key")).is_err());
        assert!(fits(&SecurityKind::HttpBearer, &CredentialKind::Bearer).is_ok());
        assert!(fits(&SecurityKind::HttpBearer, &oauth).is_ok());
        assert!(fits(&SecurityKind::HttpBasic, &CredentialKind::Bearer).is_err());
        let cc = SecurityKind::Oauth2ClientCredentials {
            token_url: "https://elsewhere.example/token".into(),
        };
        assert!(fits(&cc, &oauth).is_ok(), "the credential's token URL is used");
        assert!(fits(&cc, &CredentialKind::Bearer).is_err());
    }
}
