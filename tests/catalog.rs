//! The built-in catalog against its fixture cases, and catalog files.

use std::io::Write;

use serde_json::{Value, json};
use switchyard::catalog::Catalog;
use switchyard::error::Code;

#[test]
fn every_type_accepts_its_valid_payload_and_refuses_its_invalid_one() {
    let catalog = Catalog::load(None).expect("builtin catalog");
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("fixtures/catalog_cases.json")).expect("fixtures");
    let mut families = std::collections::BTreeMap::<String, usize>::new();
    for case in &cases {
        let ty = case["type"].as_str().unwrap();
        let spec = catalog.event(ty).unwrap_or_else(|e| panic!("{ty}: {e}"));
        spec.validate(&case["valid"])
            .unwrap_or_else(|e| panic!("{ty} valid payload refused: {e}"));
        let err = spec.validate(&case["invalid"]).expect_err(ty);
        assert_eq!(err.code, Code::ValidationFailed);
        let failing = case["failing"].as_str().unwrap().trim_start_matches('/');
        let field = err
            .details
            .as_ref()
            .and_then(|d| d["field"].as_str())
            .unwrap_or_default();
        assert!(
            field.trim_start_matches('/').starts_with(failing),
            "{ty}: details name `{field}`, expected `{failing}`"
        );
        *families
            .entry(case["family"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(catalog.len(), cases.len(), "one case per catalog type");
    for family in ["factory", "floor", "manufacturing", "control", "erp"] {
        assert!(
            families.get(family).copied().unwrap_or(0) > 0,
            "family {family} untested"
        );
    }
}

#[test]
fn catalog_file_adds_and_overrides_entries_json_and_toml() {
    let mut f = tempfile("json");
    write!(
        f.1,
        "{}",
        json!({
            "events": {
                "line:speed_changed": {
                    "schema": { "type": "object", "required": ["lineId", "speed"], "additionalProperties": false,
                                "properties": { "lineId": { "type": "string" }, "speed": { "type": "number" } } },
                    "durable": false, "publish": ["operator"], "conflate": { "key": "lineId", "windowMs": 250 }
                },
                "order:created": { "priority": "high" }
            },
            "rooms": { "secret": ["manager"] }
        })
    )
    .unwrap();
    let c = Catalog::load(Some(&f.0)).expect("custom catalog");
    let spec = c.event("line:speed_changed").unwrap();
    assert!(!spec.durable);
    assert!(
        spec.validate(&json!({ "lineId": "l1", "speed": 2.5 }))
            .is_ok()
    );
    assert!(
        spec.validate(&json!({ "lineId": "l1", "speed": 2.5, "extra": 1 }))
            .is_err(),
        "unknown field forbidden by schema"
    );
    assert_eq!(c.event("order:created").unwrap().priority.as_str(), "high");
    assert!(c.event("order:status_changed").is_ok(), "built-ins remain");
    assert!(!c.may_join_kind("secret", switchyard::domain::Role::Supervisor));

    let mut t = tempfile("toml");
    write!(
        t.1,
        "[events.\"x:y\"]\ndurable = false\npriority = \"low\"\n"
    )
    .unwrap();
    assert_eq!(
        Catalog::load(Some(&t.0))
            .unwrap()
            .event("x:y")
            .unwrap()
            .priority
            .as_str(),
        "low"
    );
}

#[test]
fn a_broken_catalog_file_names_the_entry_and_reason() {
    for (body, entry, reason) in [
        (
            json!({ "events": { "a:b": { "schema": { "type": "nonsense" } } } }).to_string(),
            "events.a:b",
            "schema",
        ),
        (
            json!({ "events": { "a:b": { "publish": ["boss"] } } }).to_string(),
            "events.a:b",
            "unknown role",
        ),
        (
            json!({ "events": { "a:b": { "colour": "red" } } }).to_string(),
            "",
            "unknown field",
        ),
        ("{ not json".to_string(), "", "invalid JSON"),
    ] {
        let mut f = tempfile("json");
        write!(f.1, "{body}").unwrap();
        let err = Catalog::load(Some(&f.0)).expect_err(&body).to_string();
        assert!(err.contains(entry) && err.contains(reason), "{err}");
    }
}

fn tempfile(ext: &str) -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("catalog-{}.{ext}", uuid::Uuid::new_v4()));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}
