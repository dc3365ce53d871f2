//! The `rules` section of `switchyard catalog --json`: every rule the server
//! would load (the catalog's `rules`, then `RULES_FILE` over them by id),
//! compiled and checked as at startup, and described with the defaults
//! applied as the server applies them. The rest of the document is
//! [`crate::catalog::export`]'s; docs/protocol.md describes the shape.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::spec::{self, Rule, RuleError, Threshold};
use crate::catalog::{Catalog, CatalogError, export};
use crate::domain::rule::Direction;

/// Why the catalog cannot be printed: what would fail startup.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Rules(#[from] RuleError),
}

/// The merged catalog (`CATALOG_FILE` over the built-in one) with its
/// `rules` (`RULES_FILE` over the catalog's), as the server loads them.
pub fn catalog_json(
    catalog_file: Option<&Path>,
    rules_file: Option<&Path>,
) -> Result<Value, ExportError> {
    let mut doc = export::load_json(catalog_file)?;
    let catalog = Catalog::load(catalog_file)?;
    let rules = spec::load(&catalog, rules_file)?;
    doc["rules"] = describe(&rules);
    Ok(doc)
}

/// Rules by id (sorted, as [`spec::load`] returns them).
pub fn describe(rules: &[Rule]) -> Value {
    let mut out = Map::new();
    for r in rules {
        let thresholds: Map<String, Value> = r
            .thresholds
            .iter()
            .map(|t| (t.id.clone(), threshold(t)))
            .collect();
        out.insert(
            r.id.clone(),
            json!({
                "stream": {
                    "type": r.event_type,
                    "field": r.field,
                    "key": r.key,
                    "match": r.matches,
                },
                "deadband": r.deadband,
                "thresholds": thresholds,
            }),
        );
    }
    Value::Object(out)
}

fn threshold(t: &Threshold) -> Value {
    let mut v = json!({
        "hysteresis": t.limit.hysteresis,
        "forMs": t.limit.hold_ms,
        "event": t.event,
        "room": t.room.as_str(),
        "priority": t.priority.map(|p| p.as_str()),
        "clearPriority": t.clear_priority.map(|p| p.as_str()),
        "payload": t.payload,
        "clear": t.clear,
        "idField": t.id_field,
        "valueField": t.value_field,
    });
    let direction = match t.limit.direction {
        Direction::Above => "above",
        Direction::Below => "below",
    };
    v[direction] = json!(t.limit.limit);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_described_with_defaults_and_a_bad_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("sy-rexp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let catalog = dir.join("c.json");
        std::fs::write(
            &catalog,
            json!({ "rules": {
                "hot": { "stream": { "type": "telemetry", "key": "endpointId" },
                         "thresholds": { "t": { "above": 80, "event": "alarm",
                             "payload": { "severity": "critical", "message": "hot" } } } },
                "band": { "stream": { "type": "telemetry" }, "deadband": 0.5 }
            } })
            .to_string(),
        )
        .unwrap();
        let rules = dir.join("r.json");
        std::fs::write(
            &rules,
            json!({ "rules": { "band": { "stream": { "type": "telemetry" }, "deadband": 2 } } })
                .to_string(),
        )
        .unwrap();
        let doc = catalog_json(Some(&catalog), Some(&rules)).unwrap();
        let hot = &doc["rules"]["hot"];
        assert_eq!(
            hot["stream"],
            json!({ "type": "telemetry", "field": "value", "key": "endpointId", "match": {} })
        );
        let t = &hot["thresholds"]["t"];
        assert_eq!(t["above"], 80.0);
        assert_eq!(t["room"], "alarms", "default");
        assert_eq!(
            (t["idField"].as_str(), t["forMs"].as_i64()),
            (Some("alarmId"), Some(0))
        );
        assert_eq!(doc["rules"]["band"]["deadband"], 2.0, "RULES_FILE wins");
        assert!(doc["events"]["alarm"].is_object(), "the catalog is there");
        std::fs::write(
            &rules,
            json!({ "rules": { "band": { "stream": { "type": "nope:nope" }, "deadband": 2 } } })
                .to_string(),
        )
        .unwrap();
        let e = catalog_json(Some(&catalog), Some(&rules)).unwrap_err();
        assert!(e.to_string().contains("rules.band.stream.type"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
