//! The catalog's `commands` section (SPEC §13): per command name, the
//! schema of its `args`, who may send it, who may answer it as the device,
//! its default timeout and its interlocks.
//!
//! ```json
//! "commands": {
//!   "pump:start": {
//!     "args": { "type": "object", "properties": { "rpm": { "type": "number" } } },
//!     "send": ["supervisor", "manager"],
//!     "answer": { "roles": [], "permission": "device" },
//!     "timeoutMs": 10000,
//!     "interlocks": [{ "target": "pump:p1", "document": "tank:t1", "field": "level",
//!                      "below": 10, "reason": "tank t1 is nearly empty" }]
//!   }
//! }
//! ```

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::spec::{CatalogError, RoleSet, compile_schema, failing_field};
use crate::domain::Identity;
use crate::error::{AppError, Code};

/// The event type the server announces every command transition as. Only
/// the server publishes it: its catalog entry must be `serverOnly`.
pub const STATUS_EVENT: &str = "command_status";
/// Default `timeoutMs` of a command (issue 15: 10 s).
pub const DEFAULT_TIMEOUT_MS: i64 = 10_000;
/// The longest timeout a command may ask for (one day).
pub const MAX_TIMEOUT_MS: i64 = 86_400_000;
/// The permission that lets a client answer commands unless the entry says otherwise.
pub const DEFAULT_PERMISSION: &str = "device";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerEntry {
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    permission: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InterlockEntry {
    #[serde(default)]
    target: Option<String>,
    document: String,
    field: String,
    #[serde(default)]
    below: Option<f64>,
    #[serde(default)]
    above: Option<f64>,
    #[serde(default)]
    equals: Option<Value>,
    reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommandEntry {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    send: Option<Vec<String>>,
    #[serde(default)]
    answer: Option<AnswerEntry>,
    #[serde(default)]
    timeout_ms: Option<i64>,
    #[serde(default)]
    interlocks: Vec<InterlockEntry>,
}

/// When an interlock holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Below(f64),
    Above(f64),
    Equals(Value),
}

/// Refuses a command while a document field satisfies a condition.
#[derive(Debug, Clone)]
pub struct Interlock {
    /// Only commands to this room; `None`: every target.
    pub target: Option<String>,
    pub doc_type: String,
    pub doc_id: String,
    pub field: String,
    pub condition: Condition,
    pub reason: String,
}

impl Interlock {
    /// Whether the interlock refuses a command whose target is `target`,
    /// given the document's data (`None` when it does not exist). A missing
    /// document or field, or a value of another type, does not hold.
    pub fn holds(&self, target: &str, data: Option<&Map<String, Value>>) -> bool {
        if self.target.as_deref().is_some_and(|t| t != target) {
            return false;
        }
        let Some(value) = data.and_then(|d| d.get(&self.field)) else {
            return false;
        };
        match &self.condition {
            Condition::Below(limit) => value.as_f64().is_some_and(|v| v < *limit),
            Condition::Above(limit) => value.as_f64().is_some_and(|v| v > *limit),
            Condition::Equals(expected) => value == expected,
        }
    }

    /// The refusal it gives.
    pub fn refusal(&self, name: &str) -> AppError {
        AppError::new(
            Code::Interlocked,
            format!("`{name}` is interlocked: {}", self.reason),
        )
        .with_details(json!({
            "reason": self.reason,
            "document": format!("{}:{}", self.doc_type, self.doc_id),
            "field": self.field,
        }))
    }
}

pub struct CommandSpec {
    pub name: String,
    pub description: Option<String>,
    args: Option<jsonschema::Validator>,
    pub send: RoleSet,
    /// Roles that may answer as the device.
    pub answer_roles: RoleSet,
    /// A permission (JWT `permissions`) that may answer as the device.
    pub answer_permission: Option<String>,
    pub timeout_ms: i64,
    pub interlocks: Vec<Interlock>,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSpec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CommandSpec {
    pub fn compile(name: &str, e: CommandEntry) -> Result<Self, CatalogError> {
        let entry = format!("commands.{name}");
        crate::domain::event_type::check(name)
            .map_err(|err| CatalogError::new(&entry, err.to_string()))?;
        let supervisor_up = ["supervisor", "manager", "admin"].map(String::from);
        let answer = e.answer.unwrap_or(AnswerEntry {
            roles: Vec::new(),
            permission: Some(DEFAULT_PERMISSION.into()),
        });
        let timeout_ms = e.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(CatalogError::new(
                entry,
                format!("timeoutMs must be 1..={MAX_TIMEOUT_MS}"),
            ));
        }
        let interlocks = e
            .interlocks
            .into_iter()
            .enumerate()
            .map(|(i, l)| interlock(&format!("{entry}.interlocks[{i}]"), l))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: name.to_string(),
            description: e.description,
            args: e
                .args
                .as_ref()
                .map(|s| compile_schema(&entry, s))
                .transpose()?,
            send: RoleSet::parse(e.send.as_deref().unwrap_or(&supervisor_up), &entry)?,
            answer_roles: RoleSet::parse(&answer.roles, &entry)?,
            answer_permission: answer.permission,
            timeout_ms,
            interlocks,
        })
    }

    /// Whether this identity may answer the command as the device.
    pub fn may_answer(&self, who: &Identity) -> bool {
        self.answer_roles.contains(who.role)
            || self
                .answer_permission
                .as_ref()
                .is_some_and(|p| who.permissions.contains(p))
    }

    /// `args` must be an object and match the schema; details name the field.
    pub fn validate_args(&self, args: &Value) -> Result<(), AppError> {
        if !args.is_object() {
            return Err(
                AppError::new(Code::ValidationFailed, "`args` must be a JSON object")
                    .with_details(json!({ "field": "args" })),
            );
        }
        let Some(validator) = &self.args else {
            return Ok(());
        };
        let Some(e) = validator.iter_errors(args).next() else {
            return Ok(());
        };
        let field = format!("args{}", failing_field(&e));
        Err(AppError::new(
            Code::ValidationFailed,
            format!("`args` of `{}` are invalid at `{field}`: {e}", self.name),
        )
        .with_details(json!({ "field": field, "reason": e.to_string() })))
    }
}

fn interlock(entry: &str, l: InterlockEntry) -> Result<Interlock, CatalogError> {
    let condition = match (l.below, l.above, l.equals) {
        (Some(v), None, None) => Condition::Below(v),
        (None, Some(v), None) => Condition::Above(v),
        (None, None, Some(v)) => Condition::Equals(v),
        _ => {
            return Err(CatalogError::new(
                entry,
                "exactly one of `below`, `above`, `equals`",
            ));
        }
    };
    let Some((doc_type, doc_id)) = l
        .document
        .split_once(':')
        .filter(|(t, i)| !t.is_empty() && !i.is_empty())
    else {
        return Err(CatalogError::new(
            entry,
            format!("`document` must be `type:id`, not `{}`", l.document),
        ));
    };
    if let Some(t) = &l.target {
        crate::domain::RoomName::parse(t)
            .map_err(|e| CatalogError::new(entry, format!("`target`: {}", e.message)))?;
    }
    if l.field.is_empty() || l.reason.trim().is_empty() {
        return Err(CatalogError::new(
            entry,
            "`field` and `reason` are required",
        ));
    }
    Ok(Interlock {
        target: l.target,
        doc_type: doc_type.to_string(),
        doc_id: doc_id.to_string(),
        field: l.field,
        condition,
        reason: l.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn spec(v: Value) -> Result<CommandSpec, CatalogError> {
        CommandSpec::compile("pump:start", serde_json::from_value(v).unwrap())
    }

    fn who(role: Role, permissions: &[&str]) -> Identity {
        Identity {
            user_id: "u".into(),
            company_id: "c".into(),
            role,
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            expires_at: 0,
        }
    }

    #[test]
    fn defaults_and_answer_rights() {
        let s = spec(json!({})).unwrap();
        assert_eq!(s.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert!(s.send.contains(Role::Supervisor) && !s.send.contains(Role::Operator));
        assert!(s.may_answer(&who(Role::Operator, &["device"])));
        assert!(!s.may_answer(&who(Role::Manager, &[])));
        let s = spec(json!({"answer": {"roles": ["operator"]}})).unwrap();
        assert!(s.may_answer(&who(Role::Operator, &[])));
        assert!(!s.may_answer(&who(Role::Supervisor, &["device"])));
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            json!({"send": ["boss"]}),
            json!({"timeoutMs": 0}),
            json!({"args": {"type": 5}}),
            json!({"interlocks": [{"document": "t", "field": "f", "below": 1, "reason": "r"}]}),
            json!({"interlocks": [{"document": "t:1", "field": "f", "reason": "r"}]}),
            json!({"interlocks": [{"document": "t:1", "field": "f", "below": 1, "above": 2, "reason": "r"}]}),
        ] {
            let e = spec(bad.clone()).unwrap_err();
            assert!(e.entry.starts_with("commands.pump:start"), "{bad}: {e}");
        }
        assert!(serde_json::from_value::<CommandEntry>(json!({"sned": []})).is_err());
    }

    #[test]
    fn args_are_validated_naming_the_field() {
        let s = spec(json!({"args": {"type": "object", "required": ["rpm"],
                                     "properties": {"rpm": {"type": "number"}}}}))
        .unwrap();
        assert!(s.validate_args(&json!({"rpm": 5})).is_ok());
        let e = s.validate_args(&json!({"rpm": "x"})).unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "args/rpm");
        let e = s.validate_args(&json!({})).unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "args/rpm");
        assert!(s.validate_args(&json!([1])).is_err());
    }

    #[test]
    fn interlocks_hold_on_their_condition_and_target() {
        let s = spec(
            json!({"interlocks": [{"target": "pump:p1", "document": "tank:t1",
            "field": "level", "below": 10, "reason": "tank t1 nearly empty"}]}),
        )
        .unwrap();
        let l = &s.interlocks[0];
        let low = json!({"level": 5}).as_object().cloned().unwrap();
        let ok = json!({"level": 50}).as_object().cloned().unwrap();
        assert!(l.holds("pump:p1", Some(&low)));
        assert!(!l.holds("pump:p1", Some(&ok)));
        assert!(!l.holds("pump:p2", Some(&low)));
        assert!(!l.holds("pump:p1", None));
        assert_eq!(l.refusal("pump:start").code, Code::Interlocked);
        let eq = Interlock {
            condition: Condition::Equals(json!("open")),
            ..l.clone()
        };
        assert!(eq.holds(
            "pump:p1",
            Some(&json!({"level": "open"}).as_object().cloned().unwrap())
        ));
    }
}
