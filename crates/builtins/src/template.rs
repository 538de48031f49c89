//! `warden.builtin.template`: a Jinja template rendered with `minijinja`.
//!
//! The template comes from the caller, so its work is metered: minijinja's
//! fuel counts every instruction and the size of every string or list an
//! operation builds, and a render that runs out ends `timeout`; recursion
//! (macros, nested blocks) is capped below what a server thread's stack
//! holds. There is no loader: `include`, `import` and `extends` find
//! nothing.
//!
//! Must never: read a file, render without fuel, panic on a template.

use minijinja::value::Value as Jinja;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde_json::{Value, json};

use crate::{Builtin, Context, Failure, Limits, Spec, capped};

/// Longest template, bytes.
const MAX_TEMPLATE: usize = 100_000;

/// Fuel of one render: instructions plus the sizes of what they build.
const FUEL: u64 = 5_000_000;

/// Recursion levels of one render (a macro call costs about ten).
const RECURSION: usize = 200;

/// The template built-in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Template;

impl Builtin for Template {
    fn spec(&self) -> Spec {
        Spec {
            code: "warden.builtin.template",
            name: "Jinja template",
            version: "1.0.0",
            description: "Renders a Jinja template (minijinja's dialect) with a JSON context.",
            input_schema: json!({
                "type": "object",
                "required": ["template"],
                "additionalProperties": false,
                "properties": {
                    "template": {"type": "string", "maxLength": MAX_TEMPLATE,
                                 "description": "The template, e.g. `Hello {{ user.name }}!`."},
                    "context": {"type": "object", "description": "The variables the template sees."},
                    "autoescape": {"enum": ["none", "html"],
                                   "description": "Escape values for HTML (default: none)."},
                    "strict": {"type": "boolean",
                               "description": "An undefined variable is an error (default: false, it renders empty)."}
                }
            }),
            output_schema: json!({
                "type": "object",
                "required": ["text"],
                "properties": {"text": {"type": "string"}}
            }),
            timeout_ms: 5_000,
        }
    }

    fn call(&self, event: &Value, limits: Limits, _cx: &mut Context<'_>) -> Result<Value, Failure> {
        let invalid = |message: &str| Failure::Handler {
            kind: "InvalidEvent",
            message: message.to_owned(),
        };
        let source = event
            .get("template")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("`template` must be a string"))?;
        if source.len() > MAX_TEMPLATE {
            return Err(invalid("`template` is longer than 100000 bytes"));
        }
        let context = match event.get("context") {
            None => Jinja::from(()),
            Some(v @ Value::Object(_)) => to_jinja(v),
            Some(_) => return Err(invalid("`context` must be an object")),
        };
        let html = match event.get("autoescape").map(Value::as_str) {
            None | Some(Some("none")) => false,
            Some(Some("html")) => true,
            Some(_) => return Err(invalid("`autoescape` must be \"none\" or \"html\"")),
        };
        let strict = event.get("strict").and_then(Value::as_bool).unwrap_or(false);
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION);
        env.set_auto_escape_callback(move |_| if html { AutoEscape::Html } else { AutoEscape::None });
        env.set_undefined_behavior(if strict {
            UndefinedBehavior::Strict
        } else {
            UndefinedBehavior::Lenient
        });
        match env.render_str(source, context) {
            Ok(text) => capped(json!({ "text": text }), limits.output_bytes),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(Failure::Timeout(format!(
                "the template used up its fuel ({FUEL} units of work){}",
                e.line().map_or_else(String::new, |l| format!(" at line {l}"))
            ))),
            Err(e) => {
                let mut message = e.kind().to_string();
                if let Some(d) = e.detail() {
                    message = format!("{message}: {d}");
                }
                if let Some(l) = e.line() {
                    message = format!("{message} (line {l})");
                }
                Err(Failure::Handler {
                    kind: "TemplateError",
                    message,
                })
            }
        }
    }
}

/// A JSON value as minijinja holds it.
fn to_jinja(v: &Value) -> Jinja {
    match v {
        Value::Null => Jinja::from(()),
        Value::Bool(b) => Jinja::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Jinja::from(i),
            (None, Some(u), _) => Jinja::from(u),
            (None, None, Some(f)) => Jinja::from(f),
            (None, None, None) => Jinja::from(n.to_string()),
        },
        Value::String(s) => Jinja::from(s.as_str()),
        Value::Array(a) => Jinja::from(a.iter().map(to_jinja).collect::<Vec<_>>()),
        Value::Object(m) => Jinja::from_pairs(m.iter().map(|(k, v)| (k.as_str(), to_jinja(v)))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn render(event: Value) -> Result<Value, Failure> {
        Template.call(
            &event,
            Limits {
                timeout: Duration::from_secs(5),
                output_bytes: 1 << 20,
            },
            &mut Context::default(),
        )
    }

    #[test]
    fn templates_render_their_context() {
        assert_eq!(
            render(
                json!({"template": "Hello {{ user.name | upper }}! {% for i in items %}{{ i }},{% endfor %}",
                          "context": {"user": {"name": "ada"}, "items": [1, 2.5, "x", null, true]}})
            ),
            Ok(json!({"text": "Hello ADA! 1,2.5,x,None,True,"}))
        );
        assert_eq!(
            render(json!({"template": "{{ x }}", "context": {"x": "<b>"}, "autoescape": "html"})),
            Ok(json!({"text": "&lt;b&gt;"}))
        );
        assert_eq!(
            render(json!({"template": "[{{ missing }}]"})),
            Ok(json!({"text": "[]"}))
        );
    }

    #[test]
    fn errors_name_the_line() {
        let Err(Failure::Handler { kind, message }) = render(json!({"template": "a\n{% if %}"})) else {
            panic!("a syntax error must fail")
        };
        assert_eq!(kind, "TemplateError");
        assert!(message.contains("line 2"), "{message}");
        let r = render(json!({"template": "{{ missing.x }}", "strict": true}));
        assert!(
            matches!(
                r,
                Err(Failure::Handler {
                    kind: "TemplateError",
                    ..
                })
            ),
            "{r:?}"
        );
        let r = render(json!({"template": "{% include 'x' %}"}));
        assert!(
            matches!(
                r,
                Err(Failure::Handler {
                    kind: "TemplateError",
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn hostile_templates_run_out_of_fuel_or_recursion() {
        // Doubling a string: the sizes built are metered, so this ends long
        // before it could exhaust memory.
        let doubling = "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}";
        assert!(matches!(
            render(json!({"template": doubling})),
            Err(Failure::Timeout(_))
        ));
        let macro_doubling = "{% macro f(s, n) %}{% if n > 0 %}{{ f(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ f('xxxxxxxx', 60) }}";
        assert!(matches!(
            render(json!({"template": macro_doubling})),
            Err(Failure::Timeout(_))
        ));
        let spin = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        assert!(matches!(
            render(json!({"template": spin})),
            Err(Failure::Timeout(_))
        ));
        let deep = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
        let r = render(json!({"template": deep}));
        assert!(
            matches!(r, Err(Failure::Handler { kind: "TemplateError", ref message }) if message.contains("recursion")),
            "{r:?}"
        );
    }
}
