//! The event catalog: which event types exist, their payload schema, default
//! priority, durability, who may publish and receive them, conflation, and
//! the room-kind and document-type permissions (SPEC §4), and the device
//! commands with their interlocks (SPEC §13, [`commands`]).
//!
//! The built-in catalog (`builtin.json`, the event families of EVENTS.md) is
//! merged entry by entry with `CATALOG_FILE` (JSON or TOML of the same shape).
//! It is loaded once at startup with every schema compiled once; a bad entry
//! fails startup naming the entry and the reason.

pub mod commands;
pub mod export;
mod spec;

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::domain::event_type::{self, Shown};
use crate::domain::{Identity, Role};
use crate::error::{AppError, Code};

pub use commands::CommandSpec;
pub use spec::{CatalogError, Conflate, DocumentSpec, EventSpec, Priority, RoleSet};

const BUILTIN: &str = include_str!("builtin.json");

#[derive(Debug)]
pub struct Catalog {
    allow_unknown: bool,
    events: HashMap<String, EventSpec>,
    rooms: HashMap<String, RoleSet>,
    documents: HashMap<String, DocumentSpec>,
    commands: HashMap<String, CommandSpec>,
    /// The `rules` entries as written, for `crate::rules` to compile.
    rules: HashMap<String, Value>,
    /// Used for unknown types when `allowUnknown` is set.
    unknown: EventSpec,
}

impl Catalog {
    /// The built-in catalog merged with the optional catalog file.
    pub fn load(file: Option<&Path>) -> Result<Self, CatalogError> {
        let builtin: spec::CatalogFile = serde_json::from_str(BUILTIN)
            .map_err(|e| CatalogError::new("<builtin>", e.to_string()))?;
        let mut catalog = Self::empty();
        catalog.merge(builtin)?;
        if let Some(path) = file {
            catalog.merge(spec::CatalogFile::read(path)?)?;
        }
        Ok(catalog)
    }

    fn empty() -> Self {
        Self {
            allow_unknown: false,
            events: HashMap::new(),
            rooms: HashMap::new(),
            documents: HashMap::new(),
            commands: HashMap::new(),
            rules: HashMap::new(),
            unknown: EventSpec::permissive("*"),
        }
    }

    fn merge(&mut self, file: spec::CatalogFile) -> Result<(), CatalogError> {
        if let Some(allow) = file.allow_unknown {
            self.allow_unknown = allow;
        }
        for (name, entry) in file.events {
            event_type::check(&name)
                .map_err(|e| CatalogError::new(format!("events.{name}"), e.to_string()))?;
            let spec = EventSpec::compile(&name, entry)?;
            self.events.insert(name, spec);
        }
        for (kind, roles) in file.rooms {
            self.rooms.insert(
                kind.clone(),
                RoleSet::parse(&roles, &format!("rooms.{kind}"))?,
            );
        }
        for (ty, entry) in file.documents {
            let spec = DocumentSpec::compile(&ty, entry)?;
            self.documents.insert(ty, spec);
        }
        for (name, entry) in file.commands {
            let spec = CommandSpec::compile(&name, entry)?;
            self.commands.insert(name, spec);
        }
        self.rules.extend(file.rules);
        Ok(())
    }

    /// The spec of an event type: `VALIDATION_FAILED` for a name that breaks
    /// the grammar or is reserved (even when unknown types are allowed: such
    /// an event would break the clients that receive it), else the catalog
    /// entry, else `UNKNOWN_EVENT` unless the catalog allows unknown types.
    pub fn event(&self, event_type: &str) -> Result<&EventSpec, AppError> {
        if let Some(spec) = self.events.get(event_type) {
            return Ok(spec);
        }
        if let Err(e) = event_type::check(event_type) {
            return Err(AppError::new(Code::ValidationFailed, e.to_string())
                .with_details(json!({ "field": "type", "reason": e.reason() })));
        }
        if self.allow_unknown {
            return Ok(&self.unknown);
        }
        Err(AppError::new(
            Code::UnknownEvent,
            format!("`{}` is not in the event catalog", Shown(event_type)),
        ))
    }

    /// The spec of a type a client (socket or HTTP API key) publishes: as
    /// [`Self::event`], and FORBIDDEN for a `serverOnly` type.
    pub fn client_event(&self, event_type: &str) -> Result<&EventSpec, AppError> {
        let spec = self.event(event_type)?;
        spec.refuse_client()?;
        Ok(spec)
    }

    /// Roles that receive a stored event of this type. None for a name that
    /// may not be sent to clients (stored before names were checked), so a
    /// replay never hands a client an event that breaks it.
    pub fn receive_roles(&self, event_type: &str) -> RoleSet {
        match self.event(event_type) {
            Ok(spec) => spec.receive,
            Err(e) if e.code == Code::ValidationFailed => RoleSet::NONE,
            Err(_) => RoleSet::ALL,
        }
    }

    /// The catalog's type names (bounded), for metric labels.
    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        self.events.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether `role` may subscribe to rooms of this kind (`order` for `order:1`).
    pub fn may_join_kind(&self, kind: &str, role: Role) -> bool {
        self.rooms
            .get(kind)
            .is_none_or(|roles| roles.contains(role))
    }

    pub fn document(&self, doc_type: &str) -> Option<&DocumentSpec> {
        self.documents.get(doc_type)
    }

    /// The command named `name` (`UNKNOWN_COMMAND` when the catalog has none).
    pub fn command(&self, name: &str) -> Result<&CommandSpec, AppError> {
        self.commands.get(name).ok_or_else(|| {
            AppError::new(
                Code::UnknownCommand,
                format!("`{}` is not a command in the catalog", Shown(name)),
            )
            .with_details(json!({ "field": "name" }))
        })
    }

    /// The `rules` section as written (see `crate::rules`).
    pub fn rule_entries(&self) -> &HashMap<String, Value> {
        &self.rules
    }

    /// Whether `who` may answer some command (so its joins look for
    /// commands waiting for it).
    pub fn answers_commands(&self, who: &Identity) -> bool {
        self.commands.values().any(|c| c.may_answer(who))
    }
}

/// Validates `payload` against an event's schema; the error details name the
/// failing field as a JSON pointer.
pub fn validate(spec: &EventSpec, payload: &Value) -> Result<(), AppError> {
    spec.validate(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_loads() {
        let c = Catalog::load(None).expect("builtin catalog is valid");
        assert!(c.len() >= 59, "{}", c.len());
        assert!(c.event("order:status_changed").is_ok());
        assert_eq!(c.event("nope:nope").unwrap_err().code, Code::UnknownEvent);
        assert!(!c.may_join_kind("quality", Role::Operator));
        assert!(c.may_join_kind("quality", Role::Supervisor));
        assert!(c.may_join_kind("order", Role::Operator));
    }

    #[test]
    fn server_only_types_are_refused_to_clients_and_must_stay_so() {
        let c = Catalog::load(None).unwrap();
        let spec = c.event(commands::STATUS_EVENT).unwrap();
        assert!(spec.server_only);
        assert_eq!(spec.publish, RoleSet::NONE, "no role publishes it");
        let e = c.client_event(commands::STATUS_EVENT).unwrap_err();
        assert_eq!(e.code, Code::Forbidden);
        assert!(
            e.message.contains("`command_status`") && e.message.contains("command:result"),
            "{e:?}"
        );
        assert!(c.client_event("alarm").is_ok(), "panels publish alarms");
        let dir = std::env::temp_dir().join(format!("sy-cat-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.json");
        for (text, entry, says) in [
            (
                r#"{"events": {"command_status": {"publish": ["supervisor"]}}}"#,
                "events.command_status",
                "serverOnly",
            ),
            (
                r#"{"events": {"x:y": {"serverOnly": true, "publish": ["manager"]}}}"#,
                "events.x:y",
                "remove `publish`",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let e = Catalog::load(Some(&file)).unwrap_err();
            assert_eq!(e.entry, entry, "{e}");
            assert!(e.reason.contains(says), "{e}");
        }
        std::fs::write(&file, r#"{"events": {"x:y": {"serverOnly": true}}}"#).unwrap();
        let c = Catalog::load(Some(&file)).unwrap();
        let e = c.client_event("x:y").unwrap_err();
        assert_eq!(e.code, Code::Forbidden);
        assert!(e.message.contains("`x:y`") && e.message.contains("server"));
        std::fs::write(&file, r#"{"events": {"x:y": {"serverOnly": "yes"}}}"#).unwrap();
        assert!(Catalog::load(Some(&file)).is_err(), "a boolean");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_catalog_file_adds_commands_and_a_bad_one_is_named() {
        let dir = std::env::temp_dir().join(format!("sy-cat-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(
            &good,
            r#"{"commands": {"valve:close": {"send": ["operator"]}}, "rules": {"r": {}}}"#,
        )
        .unwrap();
        let c = Catalog::load(Some(&good)).unwrap();
        assert!(
            c.command("valve:close")
                .unwrap()
                .send
                .contains(Role::Operator)
        );
        assert_eq!(c.command("nope").unwrap_err().code, Code::UnknownCommand);
        assert!(c.rule_entries().contains_key("r"));
        let bad = dir.join("bad.json");
        std::fs::write(
            &bad,
            r#"{"commands": {"valve:close": {"answer": {"roles": ["robot"]}}}}"#,
        )
        .unwrap();
        let e = Catalog::load(Some(&bad)).unwrap_err();
        assert_eq!(e.entry, "commands.valve:close", "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
