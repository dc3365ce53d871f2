//! Catalog entries: the file shape (serde) and the compiled form.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::domain::Role;
use crate::error::{AppError, Code};

#[derive(Debug, thiserror::Error)]
#[error("CATALOG_FILE: entry `{entry}`: {reason}")]
pub struct CatalogError {
    pub entry: String,
    pub reason: String,
}

impl CatalogError {
    pub fn new(entry: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            entry: entry.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Medium,
    High,
    Critical,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Low, Self::Medium, Self::High, Self::Critical]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A set of roles as a bit mask: membership tests on the hot path are one AND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleSet(u8);

impl RoleSet {
    pub const ALL: RoleSet = RoleSet(0b1111);
    /// Nobody, not even admins: for events that may not be sent at all.
    pub const NONE: RoleSet = RoleSet(0);

    fn bit(role: Role) -> u8 {
        1 << (role as u8)
    }

    pub fn of(roles: &[Role]) -> Self {
        Self(roles.iter().fold(0, |acc, r| acc | Self::bit(*r)))
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn from_bits(bits: u8) -> Self {
        Self(bits & Self::ALL.0)
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    pub fn roles(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// Parses role names; admins are always included (SPEC: admins may do anything).
    pub fn parse(names: &[String], entry: &str) -> Result<Self, CatalogError> {
        let mut roles = vec![Role::Admin];
        for name in names {
            let role = Role::parse(name).ok_or_else(|| {
                CatalogError::new(
                    entry,
                    format!("unknown role `{name}` (use operator, supervisor, manager, admin)"),
                )
            })?;
            roles.push(role);
        }
        Ok(Self::of(&roles))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConflateEntry {
    #[serde(default)]
    key: Option<String>,
    window_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityMapEntry {
    field: String,
    values: HashMap<String, Priority>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventEntry {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    durable: Option<bool>,
    #[serde(default)]
    publish: Option<Vec<String>>,
    #[serde(default)]
    receive: Option<Vec<String>>,
    #[serde(default)]
    conflate: Option<ConflateEntry>,
    #[serde(default)]
    priority_map: Option<PriorityMapEntry>,
    /// Only the server publishes this type (see [`EventSpec::server_only`]).
    #[serde(default)]
    server_only: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentEntry {
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    read: Option<Vec<String>>,
    #[serde(default)]
    write: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CatalogFile {
    #[serde(default)]
    pub allow_unknown: Option<bool>,
    #[serde(default)]
    pub events: HashMap<String, EventEntry>,
    #[serde(default)]
    pub rooms: HashMap<String, Vec<String>>,
    #[serde(default)]
    pub documents: HashMap<String, DocumentEntry>,
    #[serde(default)]
    pub commands: HashMap<String, super::commands::CommandEntry>,
    /// Telemetry rules, compiled and checked by `crate::rules` (which needs
    /// the whole catalog to check them).
    #[serde(default)]
    pub rules: HashMap<String, Value>,
}

impl CatalogFile {
    pub fn read(path: &Path) -> Result<Self, CatalogError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CatalogError::new(&name, format!("cannot read: {e}")))?;
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        if is_toml {
            toml::from_str(&text)
                .map_err(|e| CatalogError::new(&name, format!("invalid TOML: {e}")))
        } else {
            serde_json::from_str(&text)
                .map_err(|e| CatalogError::new(&name, format!("invalid JSON: {e}")))
        }
    }
}

/// Conflation of a type: latest value per `(room, key)` within the window.
#[derive(Debug, Clone)]
pub struct Conflate {
    /// Payload field naming the key; `None` = one value per room.
    pub key: Option<String>,
    pub window_ms: u64,
}

pub struct EventSpec {
    pub name: String,
    pub description: Option<String>,
    validator: Option<jsonschema::Validator>,
    pub priority: Priority,
    pub durable: bool,
    pub publish: RoleSet,
    pub receive: RoleSet,
    pub conflate: Option<Conflate>,
    priority_map: Option<PriorityMapEntry>,
    /// Published by the server itself (e.g. `command_status`, announced for
    /// each command transition): refused from every client path, sockets
    /// and the HTTP API alike, so no client can forge it. `publish` is then
    /// empty.
    pub server_only: bool,
}

impl std::fmt::Debug for EventSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSpec")
            .field("name", &self.name)
            .field("durable", &self.durable)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

pub(super) fn compile_schema(
    entry: &str,
    schema: &Value,
) -> Result<jsonschema::Validator, CatalogError> {
    jsonschema::draft202012::new(schema)
        .map_err(|e| CatalogError::new(entry, format!("schema does not compile: {e}")))
}

impl EventSpec {
    pub fn compile(name: &str, e: EventEntry) -> Result<Self, CatalogError> {
        let entry = format!("events.{name}");
        let validator = e
            .schema
            .as_ref()
            .map(|s| compile_schema(&entry, s))
            .transpose()?;
        let supervisor_up = ["supervisor", "manager", "admin"].map(String::from);
        let server_only = e.server_only.unwrap_or(false);
        if server_only && e.publish.is_some() {
            return Err(CatalogError::new(
                entry,
                "a `serverOnly` type is published by the server only: remove `publish`",
            ));
        }
        if !server_only && name == super::commands::STATUS_EVENT {
            return Err(CatalogError::new(
                entry,
                format!(
                    "the server announces every command transition as `{name}`: \
                     it must stay `\"serverOnly\": true` (clients could forge it otherwise)"
                ),
            ));
        }
        Ok(Self {
            name: name.to_string(),
            description: e.description,
            validator,
            priority: e.priority.unwrap_or(Priority::Medium),
            durable: e.durable.unwrap_or(true),
            publish: match server_only {
                true => RoleSet::NONE,
                false => RoleSet::parse(e.publish.as_deref().unwrap_or(&supervisor_up), &entry)?,
            },
            receive: match &e.receive {
                Some(r) => RoleSet::parse(r, &entry)?,
                None => RoleSet::ALL,
            },
            conflate: match e.conflate {
                Some(c) if c.window_ms == 0 || c.window_ms > 60_000 => {
                    return Err(CatalogError::new(
                        entry,
                        "conflate.windowMs must be 1..=60000",
                    ));
                }
                Some(c) => Some(Conflate {
                    key: c.key,
                    window_ms: c.window_ms,
                }),
                None => None,
            },
            priority_map: e.priority_map,
            server_only,
        })
    }

    /// The spec used for unknown types when the catalog allows them.
    pub fn permissive(name: &str) -> Self {
        Self {
            name: name.to_string(),
            description: None,
            validator: None,
            priority: Priority::Medium,
            durable: true,
            publish: RoleSet::of(&[Role::Supervisor, Role::Manager, Role::Admin]),
            receive: RoleSet::ALL,
            conflate: None,
            priority_map: None,
            server_only: false,
        }
    }

    /// The refusal of a client's publish of a [`Self::server_only`] type:
    /// FORBIDDEN, naming the type and what to do instead.
    pub fn refuse_client(&self) -> Result<(), AppError> {
        if !self.server_only {
            return Ok(());
        }
        let instead = if self.name == super::commands::STATUS_EVENT {
            ": it announces each transition of a device command; a device reports \
             progress with `command:ack` and `command:result`"
        } else {
            " (catalog `serverOnly`)"
        };
        Err(AppError::new(
            Code::Forbidden,
            format!("`{}` is published by the server only{instead}", self.name),
        )
        .with_details(json!({ "field": "type", "reason": "serverOnly" })))
    }

    /// Payloads are always JSON objects; the schema adds the rest.
    pub fn validate(&self, payload: &Value) -> Result<(), AppError> {
        if !payload.is_object() {
            return Err(
                AppError::new(Code::ValidationFailed, "payload must be a JSON object")
                    .with_details(json!({ "field": "", "reason": "expected an object" })),
            );
        }
        let Some(validator) = &self.validator else {
            return Ok(());
        };
        let errors: Vec<Value> = validator
            .iter_errors(payload)
            .take(10)
            .map(|e| json!({ "field": failing_field(&e), "reason": e.to_string() }))
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        let first = errors[0]["reason"].as_str().unwrap_or_default().to_string();
        let field = errors[0]["field"].as_str().unwrap_or_default().to_string();
        Err(AppError::new(
            Code::ValidationFailed,
            format!(
                "payload of `{}` is invalid at `{field}`: {first}",
                self.name
            ),
        )
        .with_details(json!({ "field": field, "errors": errors })))
    }

    /// Effective priority: explicit, else mapped from the payload, else default.
    pub fn priority_for(&self, payload: &Value, explicit: Option<Priority>) -> Priority {
        if let Some(p) = explicit {
            return p;
        }
        self.priority_map
            .as_ref()
            .and_then(|m| {
                payload
                    .get(&m.field)?
                    .as_str()
                    .and_then(|v| m.values.get(v))
                    .copied()
            })
            .unwrap_or(self.priority)
    }
}

/// A JSON pointer to the failing field; for a missing required property,
/// the pointer of that property rather than of its parent object.
pub(super) fn failing_field(e: &jsonschema::ValidationError<'_>) -> String {
    let path = e.instance_path().to_string();
    match e.kind() {
        jsonschema::error::ValidationErrorKind::Required { property } => {
            format!("{path}/{}", property.as_str().unwrap_or_default())
        }
        _ => path,
    }
}

pub struct DocumentSpec {
    validator: Option<jsonschema::Validator>,
    pub read: RoleSet,
    pub write: RoleSet,
}

impl std::fmt::Debug for DocumentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentSpec").finish_non_exhaustive()
    }
}

impl DocumentSpec {
    pub fn compile(ty: &str, e: DocumentEntry) -> Result<Self, CatalogError> {
        let entry = format!("documents.{ty}");
        Ok(Self {
            validator: e
                .schema
                .as_ref()
                .map(|s| compile_schema(&entry, s))
                .transpose()?,
            read: match &e.read {
                Some(r) => RoleSet::parse(r, &entry)?,
                None => RoleSet::ALL,
            },
            write: match &e.write {
                Some(r) => RoleSet::parse(r, &entry)?,
                None => RoleSet::ALL,
            },
        })
    }

    pub fn is_valid(&self, data: &Value) -> bool {
        self.validator.as_ref().is_none_or(|v| v.is_valid(data))
    }
}

impl DocumentSpec {
    /// Validates a whole document (the result of a merge) against the type's
    /// schema; the details name the failing field as a JSON pointer.
    pub fn validate(&self, doc_type: &str, data: &Value) -> Result<(), AppError> {
        let Some(validator) = &self.validator else {
            return Ok(());
        };
        let errors: Vec<Value> = validator
            .iter_errors(data)
            .take(10)
            .map(|e| json!({ "field": failing_field(&e), "reason": e.to_string() }))
            .collect();
        let Some(first) = errors.first() else {
            return Ok(());
        };
        let field = first["field"].as_str().unwrap_or_default().to_string();
        let reason = first["reason"].as_str().unwrap_or_default().to_string();
        Err(AppError::new(
            Code::ValidationFailed,
            format!("the `{doc_type}` document would be invalid at `{field}`: {reason}"),
        )
        .with_details(json!({ "field": field, "errors": errors })))
    }
}
