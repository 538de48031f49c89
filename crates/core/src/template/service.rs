//! [`Templates`]: what the API asks of templates, decided here. Writes are
//! the admin's; each is validated first, then one compare-and-set in the
//! store with its audit event (two admins replacing a template at once
//! leave one winner, and the other a conflict naming the revision).

use std::sync::Arc;

use serde_json::{Value, json};
use warden_package::Problem;

use super::{Template, TemplatePolicy, TemplateSpec, builtin, parse_new, parse_replacement, validate};
use crate::model::{Actor, Role, now_ms};
use crate::store::{NewAudit, Page, Store, StoreError, TemplateFilter};

/// Why a template operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template is invalid: every problem, located.
    #[error("invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// No such template.
    #[error("{0}")]
    NotFound(String),
    /// The actor may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The id is taken, or the layer is not ready.
    #[error("{0}")]
    Conflict(String),
    /// Built-in templates cannot be changed or deleted.
    #[error("template {0} is built in: it cannot be changed or deleted (create a copy under another id)")]
    Builtin(String),
    /// The template changed since the revision the request was based on.
    #[error(
        "template {id} changed since revision {read} was read: it is now at {now}; read it again and reapply the change"
    )]
    Stale {
        /// The template.
        id: String,
        /// The revision the request was based on.
        read: i64,
        /// What it is at now (`revision 5`).
        now: String,
    },
    /// Storage failed.
    #[error("storage")]
    Store(#[source] StoreError),
}

impl From<StoreError> for TemplateError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => TemplateError::NotFound(m),
            StoreError::Conflict(m) | StoreError::InUse(m) => TemplateError::Conflict(m),
            other => TemplateError::Store(other),
        }
    }
}

type R<T> = Result<T, TemplateError>;

/// Templates over a store, under a server's policy.
pub struct Templates<S> {
    store: Arc<S>,
    policy: TemplatePolicy,
}

fn audit(actor: &Actor, action: &str, t: &Template) -> NewAudit {
    NewAudit {
        actor: actor.name.clone(),
        action: action.into(),
        detail: json!({"template": t.id, "revision": t.revision, "runtime": t.runtime, "layer": t.layer}),
        ..Default::default()
    }
}

fn admin(actor: &Actor, what: &str) -> R<()> {
    if actor.role == Role::Admin {
        Ok(())
    } else {
        Err(TemplateError::Forbidden(format!(
            "only an admin may {what} templates"
        )))
    }
}

impl<S: Store> Templates<S> {
    /// Templates in `store`, checked against `policy`.
    pub fn new(store: Arc<S>, policy: TemplatePolicy) -> Templates<S> {
        Templates { store, policy }
    }

    /// The ceilings templates are checked against.
    pub fn policy(&self) -> &TemplatePolicy {
        &self.policy
    }

    /// Create a template from a request body (admin). `Conflict` when the id
    /// is taken.
    pub async fn create(&self, actor: &Actor, body: &Value) -> R<Template> {
        admin(actor, "create")?;
        let spec = parse_new(body, &self.policy).map_err(TemplateError::Invalid)?;
        self.insert(actor, spec).await
    }

    /// Create a template from a typed spec (admin), checked as a request's.
    pub async fn create_spec(&self, actor: &Actor, spec: TemplateSpec) -> R<Template> {
        admin(actor, "create")?;
        let problems = validate(&spec, &self.policy);
        if !problems.is_empty() {
            return Err(TemplateError::Invalid(problems));
        }
        self.insert(actor, spec).await
    }

    async fn insert(&self, actor: &Actor, spec: TemplateSpec) -> R<Template> {
        let t = Template::new(spec, false, now_ms());
        let a = audit(actor, "create_template", &t);
        let id = t.id.clone();
        self.store.insert_template(t, a).await.map_err(|e| match e {
            StoreError::Conflict(_) => TemplateError::Conflict(format!(
                "template `{id}` exists already: choose another id, or replace it with PUT"
            )),
            other => other.into(),
        })
    }

    /// Replace template `id` with a request body holding the full new spec
    /// and the revision it was read at (admin). The layer stays when the
    /// packages need the same one.
    pub async fn replace(&self, actor: &Actor, id: &str, body: &Value) -> R<Template> {
        admin(actor, "change")?;
        let (spec, read) = parse_replacement(id, body, &self.policy).map_err(TemplateError::Invalid)?;
        let current = self.get(id).await?;
        if current.builtin {
            return Err(TemplateError::Builtin(id.into()));
        }
        self.update(actor, &current, spec, read, "update_template").await
    }

    async fn update(
        &self,
        actor: &Actor,
        current: &Template,
        spec: TemplateSpec,
        read: i64,
        action: &str,
    ) -> R<Template> {
        let keep_layer = !current.needs_other_layer(&spec);
        let mut t = Template::new(spec, current.builtin, now_ms());
        t.created_at = current.created_at;
        t.revision = read;
        t.layer = current.layer.clone().filter(|_| keep_layer);
        let mut a = audit(actor, action, &t);
        a.detail["revision"] = json!(read + 1);
        let id = t.id.clone();
        self.store
            .update_template(t, keep_layer, a)
            .await
            .map_err(|e| match e {
                StoreError::Changed { now, .. } => TemplateError::Stale { id, read, now },
                other => other.into(),
            })
    }

    /// Delete template `id` (admin); never a built-in.
    pub async fn delete(&self, actor: &Actor, id: &str) -> R<()> {
        admin(actor, "delete")?;
        let t = self.get(id).await?;
        if t.builtin {
            return Err(TemplateError::Builtin(id.into()));
        }
        let a = audit(actor, "delete_template", &t);
        self.store.delete_template(id, a).await.map_err(Into::into)
    }

    /// One template.
    pub async fn get(&self, id: &str) -> R<Template> {
        self.store
            .get_template(id)
            .await?
            .ok_or_else(|| TemplateError::NotFound(format!("no template `{id}`")))
    }

    /// Templates by id.
    pub async fn list(&self, filter: TemplateFilter) -> R<Page<Template>> {
        Ok(self.store.list_templates(filter).await?)
    }

    /// Point template `id`, read at `revision`, at a ready layer (or at
    /// none): what a build does once its layer is ready (admin or
    /// `system`). `Stale` when the template changed since: the layer was
    /// built for packages it may no longer have.
    pub async fn set_layer(
        &self,
        actor: &Actor,
        id: &str,
        revision: i64,
        layer: Option<&str>,
    ) -> R<Template> {
        admin(actor, "change")?;
        let a = NewAudit {
            actor: actor.name.clone(),
            action: "set_template_layer".into(),
            detail: json!({"template": id, "revision": revision, "layer": layer}),
            ..Default::default()
        };
        self.store
            .set_template_layer(id, revision, layer, a)
            .await
            .map_err(|e| match e {
                StoreError::Changed { now, .. } => TemplateError::Stale {
                    id: id.into(),
                    read: revision,
                    now,
                },
                other => other.into(),
            })
    }

    /// Make the built-in templates present and as this version defines them:
    /// create the missing ones, bring back an older definition. Safe to run
    /// on every start of every node sharing a database (another node
    /// winning a race is not an error). Returns the ids created or updated.
    pub async fn ensure_builtins(&self) -> R<Vec<String>> {
        let system = Actor::system();
        let mut changed = Vec::new();
        for spec in builtin::specs() {
            let problems = validate(&spec, &self.policy);
            if !problems.is_empty() {
                return Err(TemplateError::Invalid(problems));
            }
            match self.store.get_template(&spec.id).await? {
                None => {
                    let t = Template::new(spec, true, now_ms());
                    let a = audit(&system, "create_template", &t);
                    let id = t.id.clone();
                    match self.store.insert_template(t, a).await {
                        Ok(_) => changed.push(id),
                        Err(StoreError::Conflict(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(t) if !t.builtin => {
                    tracing::warn!(
                        template = %t.id,
                        "a template that is not built in holds a built-in's id; it is left as it is"
                    );
                }
                Some(t) if t.spec() == spec => {}
                Some(t) => {
                    let id = t.id.clone();
                    match self
                        .update(&system, &t, spec, t.revision, "update_template")
                        .await
                    {
                        Ok(_) => changed.push(id),
                        Err(TemplateError::Stale { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(changed)
    }
}
