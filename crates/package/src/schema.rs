//! JSON Schemas from strangers, compiled so they can neither fetch anything
//! nor hang the server: no remote or file `$ref` resolution, and the
//! linear-time `regex` engine for `pattern` (a backtracking engine turns
//! `^(a+)+$` into a denial of service).

use jsonschema::{Draft, PatternOptions, Retrieve, Uri, Validator};
use serde_json::Value;

use crate::Problem;

/// Refuses every external reference, whatever the resolver features.
struct NoRetrieval;

impl Retrieve for NoRetrieval {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("external references are not allowed (`{uri}`): inline the schema").into())
    }
}

/// A compiled schema.
pub struct Schema {
    validator: Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

/// Compile a schema under the safe options (draft 2020-12 unless the schema
/// says otherwise).
pub fn compile(schema: &Value) -> Result<Schema, String> {
    let validator = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .with_retriever(NoRetrieval)
        .with_pattern_options(PatternOptions::regex().size_limit(1 << 20))
        .should_validate_formats(false)
        .build(schema)
        .map_err(|e| e.to_string())?;
    Ok(Schema { validator })
}

impl Schema {
    /// Every violation of `instance`, each at its JSON pointer.
    pub fn validate(&self, instance: &Value) -> Vec<Problem> {
        self.validator
            .iter_errors(instance)
            .map(|e| Problem {
                location: pointer(&e.instance_path().to_string()),
                message: e.to_string(),
            })
            .collect()
    }

    /// True when `instance` satisfies the schema.
    pub fn is_valid(&self, instance: &Value) -> bool {
        self.validator.is_valid(instance)
    }
}

/// The empty pointer is the document itself; say so.
fn pointer(p: &str) -> String {
    if p.is_empty() {
        "/".to_owned()
    } else {
        p.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn remote_and_file_references_are_refused() {
        for r in [
            "https://evil.example/schema.json",
            "file:///etc/passwd",
            "http://169.254.169.254/latest",
        ] {
            let err = compile(&json!({"$ref": r})).unwrap_err();
            assert!(err.contains("external references are not allowed"), "{r}: {err}");
        }
        // Local references still work.
        let s = compile(
            &json!({"$defs": {"n": {"type": "integer"}}, "properties": {"x": {"$ref": "#/$defs/n"}}}),
        )
        .unwrap();
        assert!(!s.is_valid(&json!({"x": "no"})));
    }

    #[test]
    fn catastrophic_patterns_run_in_linear_time() {
        let s = compile(&json!({"type": "string", "pattern": "^(a+)+$"})).unwrap();
        let evil = format!("{}!", "a".repeat(100_000));
        let t = std::time::Instant::now();
        assert!(!s.is_valid(&json!(evil)));
        // Not a timing assertion of Warden's speed: a backtracking engine
        // would take longer than the universe has; this one is linear.
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        // Backreferences need backtracking: such a pattern is refused.
        assert!(compile(&json!({"pattern": "(a)\\1"})).is_err());
    }

    #[test]
    fn violations_name_their_pointer() {
        let s = compile(&json!({
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "items": {"type": "array", "items": {"type": "integer"}}}
        }))
        .unwrap();
        let mut p = s.validate(&json!({"items": [1, "two"]}));
        p.sort_by(|a, b| a.location.cmp(&b.location));
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].location, "/");
        assert!(p[0].message.contains("\"name\" is a required property"), "{p:?}");
        assert_eq!(p[1].location, "/items/1");
        assert!(p[1].message.contains("is not of type \"integer\""), "{p:?}");
    }
}
