//! The merged catalog as one JSON document (`switchyard catalog --json`),
//! for client code generation; docs/protocol.md describes the shape.
//!
//! Roles, priorities, durability, conflation, `serverOnly` and the
//! commands' rights, timeouts and interlocks come from the compiled
//! catalog, so defaults are applied exactly as the server applies them
//! (admins always included). Schemas (events, documents, command `args`),
//! descriptions and priority maps come from the entries they were compiled
//! from: the built-in ones, replaced entry by entry by those of
//! `CATALOG_FILE`, as [`Catalog::load`] merges. Keys are sorted, so the
//! output is stable for a given catalog. The `rules` section is added by
//! `crate::rules::export` (rules are compiled against the whole catalog).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::commands::{CommandSpec, Condition, Interlock};
use super::spec::{CatalogError, DocumentSpec, EventSpec, RoleSet};
use super::{BUILTIN, Catalog};

/// The version of the document's shape, bumped on incompatible changes.
pub const FORMAT_VERSION: u64 = 1;

/// Loads the catalog as the server does (same checks, same errors) and
/// describes it.
pub fn load_json(file: Option<&Path>) -> Result<Value, CatalogError> {
    let catalog = Catalog::load(file)?;
    let mut entries = RawEntries::parse(BUILTIN, "<builtin>")?;
    if let Some(path) = file {
        entries.merge(RawEntries::read(path)?);
    }
    Ok(describe(&catalog, &entries))
}

/// The raw `events`, `documents` and `commands` entries (schemas as written).
#[derive(Default)]
struct RawEntries {
    events: Map<String, Value>,
    documents: Map<String, Value>,
    commands: Map<String, Value>,
}

impl RawEntries {
    fn parse(text: &str, name: &str) -> Result<Self, CatalogError> {
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| CatalogError::new(name, format!("invalid JSON: {e}")))?;
        Ok(Self::of(doc))
    }

    fn read(path: &Path) -> Result<Self, CatalogError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CatalogError::new(&name, format!("cannot read: {e}")))?;
        if path.extension().is_some_and(|e| e == "toml") {
            let doc: Value = toml::from_str(&text)
                .map_err(|e| CatalogError::new(&name, format!("invalid TOML: {e}")))?;
            return Ok(Self::of(doc));
        }
        Self::parse(&text, &name)
    }

    fn of(mut doc: Value) -> Self {
        let mut take = |key: &str| match doc.get_mut(key).map(Value::take) {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        Self {
            events: take("events"),
            documents: take("documents"),
            commands: take("commands"),
        }
    }

    /// Entry by entry: a file's entry replaces the built-in one whole.
    fn merge(&mut self, other: Self) {
        self.events.extend(other.events);
        self.documents.extend(other.documents);
        self.commands.extend(other.commands);
    }
}

fn describe(catalog: &Catalog, raw: &RawEntries) -> Value {
    let events: BTreeMap<&str, &EventSpec> = catalog
        .events
        .iter()
        .map(|(name, spec)| (name.as_str(), spec))
        .collect();
    let rooms: BTreeMap<&str, &RoleSet> = catalog
        .rooms
        .iter()
        .map(|(kind, roles)| (kind.as_str(), roles))
        .collect();
    let documents: BTreeMap<&str, &DocumentSpec> = catalog
        .documents
        .iter()
        .map(|(ty, spec)| (ty.as_str(), spec))
        .collect();
    let commands: BTreeMap<&str, &CommandSpec> = catalog
        .commands
        .iter()
        .map(|(name, spec)| (name.as_str(), spec))
        .collect();
    json!({
        "version": FORMAT_VERSION,
        "allowUnknown": catalog.allow_unknown,
        "events": events.into_iter().map(|(name, spec)| {
            (name.to_string(), event(spec, raw.events.get(name)))
        }).collect::<Map<_, _>>(),
        "rooms": rooms.into_iter().map(|(kind, roles)| {
            (kind.to_string(), json!(role_names(*roles)))
        }).collect::<Map<_, _>>(),
        "documents": documents.into_iter().map(|(ty, spec)| {
            (ty.to_string(), document(spec, raw.documents.get(ty)))
        }).collect::<Map<_, _>>(),
        "commands": commands.into_iter().map(|(name, spec)| {
            (name.to_string(), command(spec, raw.commands.get(name)))
        }).collect::<Map<_, _>>(),
    })
}

/// What an entry without a schema accepts: any JSON object.
fn any_object() -> Value {
    json!({ "type": "object" })
}

fn field(entry: Option<&Value>, key: &str) -> Option<Value> {
    entry.and_then(|e| e.get(key)).cloned()
}

fn event(spec: &EventSpec, entry: Option<&Value>) -> Value {
    json!({
        "description": spec.description,
        "schema": field(entry, "schema").unwrap_or_else(any_object),
        "priority": spec.priority.as_str(),
        "priorityMap": field(entry, "priorityMap"),
        "durable": spec.durable,
        "publish": role_names(spec.publish),
        "receive": role_names(spec.receive),
        "conflate": spec.conflate.as_ref().map(|c| json!({ "key": c.key, "windowMs": c.window_ms })),
        "serverOnly": spec.server_only,
    })
}

fn command(spec: &CommandSpec, entry: Option<&Value>) -> Value {
    json!({
        "description": spec.description,
        "args": field(entry, "args").unwrap_or_else(any_object),
        "send": role_names(spec.send),
        "answer": {
            "roles": role_names(spec.answer_roles),
            "permission": spec.answer_permission,
        },
        "timeoutMs": spec.timeout_ms,
        "interlocks": spec.interlocks.iter().map(interlock).collect::<Vec<_>>(),
    })
}

/// An interlock in the shape it is written in (`below` | `above` | `equals`).
fn interlock(l: &Interlock) -> Value {
    let mut v = json!({
        "target": l.target,
        "document": format!("{}:{}", l.doc_type, l.doc_id),
        "field": l.field,
        "reason": l.reason,
    });
    let (key, limit) = match &l.condition {
        Condition::Below(n) => ("below", json!(n)),
        Condition::Above(n) => ("above", json!(n)),
        Condition::Equals(x) => ("equals", x.clone()),
    };
    v[key] = limit;
    v
}

fn document(spec: &DocumentSpec, entry: Option<&Value>) -> Value {
    json!({
        "schema": field(entry, "schema").unwrap_or_else(any_object),
        "read": role_names(spec.read),
        "write": role_names(spec.write),
    })
}

fn role_names(roles: RoleSet) -> Vec<&'static str> {
    roles.roles().map(|r| r.as_str()).collect()
}

/// One line per event type, for people (`switchyard catalog` without `--json`).
pub fn summary(doc: &Value) -> String {
    let mut out = String::new();
    let Some(events) = doc["events"].as_object() else {
        return out;
    };
    for (name, e) in events {
        let roles = |key: &str| {
            e[key]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        let kind = if e["durable"] == true {
            "durable"
        } else {
            "ephemeral"
        };
        let publish = match e["serverOnly"] == true {
            true => "server-only".to_string(),
            false => roles("publish"),
        };
        let conflated = match e["conflate"]["windowMs"].as_u64() {
            Some(ms) => format!(" conflated:{ms}ms"),
            None => String::new(),
        };
        out.push_str(&format!(
            "{name:<34} {:<8} {kind:<9} publish:{publish} receive:{}{conflated}\n",
            e["priority"].as_str().unwrap_or_default(),
            roles("receive"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_type_is_described_with_its_schema_and_defaults() {
        let doc = load_json(None).expect("builtin catalog");
        let events = doc["events"].as_object().expect("events");
        assert_eq!(events.len(), Catalog::load(None).expect("builtin").len());
        let e = &events["order:status_changed"];
        assert_eq!(e["schema"]["type"], "object");
        assert_eq!(e["durable"], true);
        assert!(
            e["receive"]
                .as_array()
                .is_some_and(|r| r.contains(&json!("admin")))
        );
        assert!(e["conflate"].is_null());
        assert_eq!(e["serverOnly"], false);
        let status = &events["command_status"];
        assert_eq!(status["serverOnly"], true);
        assert_eq!(status["publish"], json!([]), "no client publishes it");
        assert_eq!(doc["commands"], json!({}), "the built-in catalog has none");
        assert_eq!(doc["version"], FORMAT_VERSION);
        assert!(summary(&doc).lines().count() == events.len());
    }

    #[test]
    fn commands_are_described_with_their_defaults_and_interlocks() {
        let dir = std::env::temp_dir().join(format!("sy-exp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.json");
        let args = json!({ "type": "object", "properties": { "rpm": { "type": "number" } } });
        std::fs::write(
            &file,
            json!({ "commands": {
                "pump:start": { "args": args, "send": ["operator"], "timeoutMs": 500,
                    "interlocks": [{ "document": "tank:t1", "field": "level", "below": 10,
                                     "reason": "tank t1 is nearly empty" }] },
                "pump:stop": {}
            } })
            .to_string(),
        )
        .unwrap();
        let doc = load_json(Some(&file)).unwrap();
        let start = &doc["commands"]["pump:start"];
        assert_eq!(start["args"], args, "as written");
        assert_eq!(start["send"], json!(["operator", "admin"]));
        assert_eq!(start["timeoutMs"], 500);
        assert_eq!(
            start["interlocks"],
            json!([{ "target": null, "document": "tank:t1", "field": "level", "below": 10.0,
                     "reason": "tank t1 is nearly empty" }])
        );
        let stop = &doc["commands"]["pump:stop"];
        assert_eq!(stop["args"], json!({ "type": "object" }));
        assert_eq!(stop["send"], json!(["supervisor", "manager", "admin"]));
        assert_eq!(
            stop["answer"],
            json!({ "roles": ["admin"], "permission": "device" })
        );
        assert_eq!(
            stop["timeoutMs"],
            super::super::commands::DEFAULT_TIMEOUT_MS
        );
        assert_eq!(stop["description"], Value::Null);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
