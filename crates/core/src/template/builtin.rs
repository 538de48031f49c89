//! The templates every Warden has: created at start-up when missing,
//! brought back to this definition when an older one is stored, the same on
//! every node sharing a database. They cannot be changed or deleted through
//! the API (copy one under another id to change it).

use std::collections::BTreeMap;

use super::{NetworkPolicy, Resources, TemplateRuntime, TemplateSpec};

/// Python with its standard library only.
pub const PYTHON_BASIC: &str = "python-basic";
/// Node.js with its built-in modules only.
pub const NODE_BASIC: &str = "node-basic";
/// bash.
pub const SHELL: &str = "shell";

fn spec(id: &str, name: &str, description: &str, runtime: TemplateRuntime) -> TemplateSpec {
    TemplateSpec {
        id: id.into(),
        name: name.into(),
        description: Some(description.into()),
        runtime,
        packages: Vec::new(),
        env: BTreeMap::new(),
        resources: Resources::default(),
        network: NetworkPolicy::default(),
        files: Vec::new(),
    }
}

/// The built-in templates, as this version of Warden defines them.
pub fn specs() -> Vec<TemplateSpec> {
    vec![
        spec(
            PYTHON_BASIC,
            "Python (standard library)",
            "Python 3 with its standard library only: no third-party packages, no network.",
            TemplateRuntime::Python,
        ),
        spec(
            NODE_BASIC,
            "Node.js (built-in modules)",
            "Node.js with its built-in modules only: no npm packages, no network.",
            TemplateRuntime::Node,
        ),
        spec(
            SHELL,
            "Shell (bash)",
            "bash and the host's basic tools, no network.",
            TemplateRuntime::Shell,
        ),
    ]
}
