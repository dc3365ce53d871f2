//! The rule file format (the catalog's `rules` section, and `RULES_FILE`
//! merged over it entry by entry), compiled and checked against the
//! catalog at startup; a bad entry fails startup naming it.
//!
//! ```json
//! { "rules": {
//!     "reactor-a-temp": {
//!       "stream": { "type": "telemetry", "field": "value", "key": "endpointId",
//!                   "match": { "endpointId": 59 } },
//!       "deadband": 0.5,
//!       "thresholds": {
//!         "hot": { "above": 80, "hysteresis": 2, "forMs": 2000,
//!                  "event": "alarm", "room": "alarms", "priority": "critical",
//!                  "payload": { "severity": "critical", "message": "reactor A above 80 °C" },
//!                  "clear": { "severity": "info", "message": "reactor A back in range" } } } } } }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::catalog::{Catalog, Priority};
use crate::domain::rule::{Direction, Limit};
use crate::domain::{RoomName, iso8601};

/// The longest hold time (one day).
pub const MAX_HOLD_MS: i64 = 86_400_000;

#[derive(Debug, thiserror::Error)]
#[error("{source_name}: entry `{entry}`: {reason}")]
pub struct RuleError {
    /// `RULES_FILE` or `CATALOG_FILE`.
    pub source_name: &'static str,
    pub entry: String,
    pub reason: String,
}

/// `RULES_FILE`: `{ "rules": { … } }` (JSON, or TOML with a .toml extension).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: HashMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamEntry {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default, rename = "match")]
    matches: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ThresholdEntry {
    #[serde(default)]
    above: Option<f64>,
    #[serde(default)]
    below: Option<f64>,
    #[serde(default)]
    hysteresis: f64,
    #[serde(default)]
    for_ms: i64,
    event: String,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    clear_priority: Option<Priority>,
    #[serde(default)]
    payload: Map<String, Value>,
    #[serde(default)]
    clear: Map<String, Value>,
    #[serde(default)]
    id_field: Option<String>,
    #[serde(default)]
    value_field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    stream: StreamEntry,
    #[serde(default)]
    deadband: Option<f64>,
    #[serde(default)]
    thresholds: BTreeMap<String, ThresholdEntry>,
}

/// Raised or cleared: which event a threshold publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Raised,
    Cleared,
}

impl Edge {
    pub fn as_str(self) -> &'static str {
        match self {
            Edge::Raised => "raised",
            Edge::Cleared => "cleared",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Threshold {
    pub id: String,
    pub limit: Limit,
    pub event: String,
    pub room: RoomName,
    pub priority: Option<Priority>,
    pub clear_priority: Option<Priority>,
    pub(super) payload: Map<String, Value>,
    pub(super) clear: Map<String, Value>,
    pub(super) id_field: String,
    pub(super) value_field: String,
}

impl Threshold {
    /// The event payload of an edge: the configured fields (for a clear,
    /// `clear` over `payload`), then the alarm id, the value, and
    /// `ruleId`, `thresholdId`, `state`, `limit`, `streamKey`, `timestamp`.
    pub fn payload(
        &self,
        rule: &str,
        edge: Edge,
        alarm_id: &str,
        value: f64,
        key: &str,
        at: i64,
    ) -> Value {
        let mut p = self.payload.clone();
        if edge == Edge::Cleared {
            p.extend(self.clear.clone());
        }
        p.insert(self.id_field.clone(), json!(alarm_id));
        p.insert(self.value_field.clone(), json!(value));
        p.insert("ruleId".into(), json!(rule));
        p.insert("thresholdId".into(), json!(self.id));
        p.insert("state".into(), json!(edge.as_str()));
        p.insert("limit".into(), json!(self.limit.limit));
        p.insert("streamKey".into(), json!(key));
        p.insert("timestamp".into(), json!(iso8601(at)));
        Value::Object(p)
    }

    pub fn priority(&self, edge: Edge) -> Option<Priority> {
        match edge {
            Edge::Raised => self.priority,
            Edge::Cleared => self.clear_priority,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub event_type: String,
    pub field: String,
    pub key: Option<String>,
    pub(super) matches: Map<String, Value>,
    pub deadband: Option<f64>,
    pub thresholds: Vec<Threshold>,
}

impl Rule {
    /// The reading of this rule in a payload: `(stream key, value)` when the
    /// payload matches and its field is a number.
    pub fn reading(&self, payload: &Value) -> Option<(String, f64)> {
        if self.matches.iter().any(|(k, v)| payload.get(k) != Some(v)) {
            return None;
        }
        let value = payload.get(&self.field)?.as_f64()?;
        let key = match &self.key {
            None => String::new(),
            Some(k) => match payload.get(k)? {
                Value::String(s) => s.chars().take(128).collect(),
                other => other.to_string().chars().take(128).collect(),
            },
        };
        Some((key, value))
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Every rule: the catalog's `rules`, then `RULES_FILE` over them.
pub fn load(catalog: &Catalog, file: Option<&Path>) -> Result<Vec<Rule>, RuleError> {
    let mut entries: BTreeMap<String, (&'static str, Value)> = catalog
        .rule_entries()
        .iter()
        .map(|(id, v)| (id.clone(), ("CATALOG_FILE", v.clone())))
        .collect();
    if let Some(path) = file {
        for (id, v) in read(path)?.rules {
            entries.insert(id, ("RULES_FILE", v));
        }
    }
    entries
        .into_iter()
        .map(|(id, (source, v))| compile(catalog, source, &id, v))
        .collect()
}

fn read(path: &Path) -> Result<RulesFile, RuleError> {
    let err = |reason: String| RuleError {
        source_name: "RULES_FILE",
        entry: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).map_err(|e| err(format!("invalid TOML: {e}")))
    } else {
        serde_json::from_str(&text).map_err(|e| err(format!("invalid JSON: {e}")))
    }
}

/// Compiles one rule, checking it against the catalog.
pub fn compile(
    catalog: &Catalog,
    source: &'static str,
    id: &str,
    v: Value,
) -> Result<Rule, RuleError> {
    let err = |entry: String, reason: String| RuleError {
        source_name: source,
        entry,
        reason,
    };
    let entry = format!("rules.{id}");
    if !valid_id(id) {
        return Err(err(entry, "a rule id is 1-64 of [A-Za-z0-9_.:-]".into()));
    }
    let e: RuleEntry = serde_json::from_value(v).map_err(|e| err(entry.clone(), e.to_string()))?;
    let stream = catalog
        .event(&e.stream.event_type)
        .map_err(|x| err(format!("{entry}.stream.type"), x.message))?;
    // Rules see what clients publish; a server-only type never comes by.
    if stream.server_only {
        return Err(err(
            format!("{entry}.stream.type"),
            format!(
                "`{}` is published by the server only: no reading of it ever reaches a rule",
                e.stream.event_type
            ),
        ));
    }
    if e.deadband.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
        return Err(err(
            format!("{entry}.deadband"),
            "must be a positive number".into(),
        ));
    }
    if e.deadband.is_none() && e.thresholds.is_empty() {
        return Err(err(
            entry,
            "a rule needs a `deadband` or `thresholds`".into(),
        ));
    }
    let mut rule = Rule {
        id: id.to_string(),
        event_type: e.stream.event_type,
        field: e.stream.field.unwrap_or_else(|| "value".into()),
        key: e.stream.key,
        matches: e.stream.matches,
        deadband: e.deadband,
        thresholds: Vec::new(),
    };
    for (tid, t) in e.thresholds {
        let entry = format!("{entry}.thresholds.{tid}");
        let t = threshold(catalog, &rule, &tid, t).map_err(|reason| err(entry, reason))?;
        rule.thresholds.push(t);
    }
    Ok(rule)
}

fn threshold(
    catalog: &Catalog,
    rule: &Rule,
    id: &str,
    t: ThresholdEntry,
) -> Result<Threshold, String> {
    if !valid_id(id) {
        return Err("a threshold id is 1-64 of [A-Za-z0-9_.:-]".into());
    }
    let (direction, limit) = match (t.above, t.below) {
        (Some(l), None) => (Direction::Above, l),
        (None, Some(l)) => (Direction::Below, l),
        _ => return Err("exactly one of `above` and `below`".into()),
    };
    if !(limit.is_finite() && t.hysteresis.is_finite() && t.hysteresis >= 0.0) {
        return Err("the limit must be a number and `hysteresis` ≥ 0".into());
    }
    if !(0..=MAX_HOLD_MS).contains(&t.for_ms) {
        return Err(format!("`forMs` must be 0..={MAX_HOLD_MS}"));
    }
    let spec = catalog
        .event(&t.event)
        .map_err(|e| format!("`event`: {}", e.message))?;
    let room = RoomName::parse(t.room.as_deref().unwrap_or("alarms"))
        .map_err(|e| format!("`room`: {}", e.message))?;
    let th = Threshold {
        id: id.to_string(),
        limit: Limit {
            direction,
            limit,
            hysteresis: t.hysteresis,
            hold_ms: t.for_ms,
        },
        event: t.event,
        room,
        priority: t.priority,
        clear_priority: t.clear_priority,
        payload: t.payload,
        clear: t.clear,
        id_field: t.id_field.unwrap_or_else(|| "alarmId".into()),
        value_field: t.value_field.unwrap_or_else(|| "value".into()),
    };
    // The events it will publish must pass the type's schema: checked now,
    // not when the first alarm fires.
    for edge in [Edge::Raised, Edge::Cleared] {
        let sample = th.payload(&rule.id, edge, "sample", limit, "", 0);
        spec.validate(&sample).map_err(|e| {
            format!(
                "the {} event would be refused: {}",
                edge.as_str(),
                e.message
            )
        })?;
    }
    Ok(th)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::load(None).unwrap()
    }

    fn hot() -> Value {
        json!({
            "stream": { "type": "telemetry", "key": "endpointId", "match": { "endpointId": 59 } },
            "deadband": 0.5,
            "thresholds": { "hot": {
                "above": 80, "hysteresis": 2, "forMs": 1000, "event": "alarm", "priority": "critical",
                "payload": { "severity": "critical", "message": "too hot" },
                "clear": { "severity": "info", "message": "back in range" } } }
        })
    }

    #[test]
    fn a_rule_compiles_reads_its_stream_and_builds_valid_events() {
        let c = catalog();
        let r = compile(&c, "RULES_FILE", "reactor-a", hot()).unwrap();
        assert_eq!(
            r.reading(&json!({"endpointId": 59, "value": 81.5})),
            Some(("59".into(), 81.5))
        );
        assert_eq!(r.reading(&json!({"endpointId": 60, "value": 81.5})), None);
        assert_eq!(r.reading(&json!({"endpointId": 59, "value": "on"})), None);
        let t = &r.thresholds[0];
        assert_eq!(t.room.as_str(), "alarms");
        let raised = t.payload("reactor-a", Edge::Raised, "a1", 81.5, "59", 0);
        assert_eq!(raised["alarmId"], "a1");
        assert_eq!(raised["severity"], "critical");
        assert_eq!(raised["state"], "raised");
        let cleared = t.payload("reactor-a", Edge::Cleared, "a1", 77.0, "59", 0);
        assert_eq!(
            (cleared["severity"].as_str(), cleared["state"].as_str()),
            (Some("info"), Some("cleared"))
        );
        assert!(c.event("alarm").unwrap().validate(&cleared).is_ok());
    }

    #[test]
    fn bad_entries_are_named() {
        let c = catalog();
        let cases = [
            (
                "stream",
                json!({"stream": {"type": "nope:nope"}, "deadband": 1}),
                "rules.r.stream.type",
            ),
            (
                "server-only stream",
                json!({"stream": {"type": "command_status"}, "deadband": 1}),
                "rules.r.stream.type",
            ),
            (
                "deadband",
                json!({"stream": {"type": "telemetry"}, "deadband": -1}),
                "rules.r.deadband",
            ),
            ("empty", json!({"stream": {"type": "telemetry"}}), "rules.r"),
            (
                "unknown key",
                json!({"stream": {"type": "telemetry"}, "deadbnd": 1}),
                "rules.r",
            ),
            (
                "both",
                json!({"stream": {"type": "telemetry"}, "thresholds": {"t": {"above": 1, "below": 0, "event": "alarm"}}}),
                "rules.r.thresholds.t",
            ),
            (
                "hold",
                json!({"stream": {"type": "telemetry"}, "thresholds": {"t": {"above": 1, "forMs": -1, "event": "alarm"}}}),
                "rules.r.thresholds.t",
            ),
            // `alarm` requires severity and message: the events would be refused.
            (
                "schema",
                json!({"stream": {"type": "telemetry"}, "thresholds": {"t": {"above": 1, "event": "alarm"}}}),
                "rules.r.thresholds.t",
            ),
            (
                "room",
                json!({"stream": {"type": "telemetry"}, "thresholds": {"t": {"above": 1, "event": "alarm", "room": "Bad Room",
                "payload": {"severity": "info", "message": "m"}}}}),
                "rules.r.thresholds.t",
            ),
        ];
        for (what, v, entry) in cases {
            let e = compile(&c, "RULES_FILE", "r", v).unwrap_err();
            assert_eq!(e.entry, entry, "{what}: {e}");
            assert!(e.to_string().starts_with("RULES_FILE: entry `"), "{e}");
        }
    }
}
