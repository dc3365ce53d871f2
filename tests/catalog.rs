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

/// Runs the built `switchyard catalog` with only the given variables, in an
/// empty directory (no `.env`): no database, no JWT secret, production mode.
fn catalog_command(args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("catalog-cmd-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("catalog")
        .args(args)
        .env_clear()
        .env("SWITCHYARD_ENV", "production")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .envs(vars.iter().copied())
        .current_dir(&dir)
        .output()
        .expect("run switchyard catalog");
    let _ = std::fs::remove_dir_all(&dir);
    output
}

fn catalog_json(vars: &[(&str, &str)]) -> Value {
    let out = catalog_command(&["--json"], vars);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

#[test]
fn catalog_command_prints_every_builtin_type_with_its_schema() {
    let doc = catalog_json(&[]);
    let builtin: Value = serde_json::from_str(include_str!("../src/catalog/builtin.json")).unwrap();
    let expected = builtin["events"].as_object().unwrap();
    let events = doc["events"].as_object().expect("events");
    assert_eq!(
        events.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "every built-in type, sorted"
    );
    for (name, entry) in expected {
        let e = &events[name];
        assert_eq!(e["schema"], entry["schema"], "{name}: schema as written");
        assert_eq!(e["priority"], entry["priority"], "{name}");
        assert_eq!(e["durable"], entry["durable"], "{name}");
        assert_eq!(e["receive"], entry["receive"], "{name}");
        assert_eq!(
            e["conflate"],
            entry.get("conflate").cloned().unwrap_or(Value::Null),
            "{name}"
        );
        assert_eq!(
            e["priorityMap"],
            entry.get("priorityMap").cloned().unwrap_or(Value::Null),
            "{name}"
        );
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "conflate",
                "description",
                "durable",
                "priority",
                "priorityMap",
                "publish",
                "receive",
                "schema",
                "serverOnly"
            ],
            "{name}: fixed shape"
        );
        let server_only = entry.get("serverOnly") == Some(&json!(true));
        assert_eq!(e["serverOnly"], server_only, "{name}");
        if server_only {
            assert_eq!(e["publish"], json!([]), "{name}: nobody publishes it");
        }
    }
    assert_eq!(doc["events"]["command_status"]["serverOnly"], true);
    assert_eq!(doc["commands"], json!({}), "no built-in commands");
    assert_eq!(doc["rules"], json!({}), "no built-in rules");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["allowUnknown"], false);
    assert_eq!(doc["rooms"], builtin["rooms"]);
    assert_eq!(
        doc["documents"]["order"]["schema"],
        builtin["documents"]["order"]["schema"]
    );
    // Stable: the same bytes twice.
    let again = catalog_command(&["--json"], &[]);
    assert_eq!(
        serde_json::to_string(&doc).unwrap(),
        serde_json::to_string(&serde_json::from_slice::<Value>(&again.stdout).unwrap()).unwrap()
    );
    // Without --json: one line per type.
    let text = catalog_command(&[], &[]);
    assert_eq!(
        String::from_utf8_lossy(&text.stdout).lines().count(),
        expected.len()
    );
}

#[test]
fn catalog_command_reflects_a_catalog_file() {
    let mut f = tempfile("json");
    let speed = json!({ "type": "object", "required": ["lineId", "speed"],
                        "properties": { "lineId": { "type": "string" }, "speed": { "type": "number" } } });
    write!(
        f.1,
        "{}",
        json!({
            "allowUnknown": true,
            "events": {
                "line:speed_changed": { "schema": speed, "durable": false, "publish": ["operator"],
                                        "conflate": { "key": "lineId", "windowMs": 250 } },
                "order:created": { "priority": "high" }
            },
            "rooms": { "secret": ["manager"] },
            "documents": { "recipe": { "write": ["manager"] } }
        })
    )
    .unwrap();
    let path = f.0.display().to_string();
    let doc = catalog_json(&[("CATALOG_FILE", &path)]);
    let added = &doc["events"]["line:speed_changed"];
    assert_eq!(added["schema"], speed);
    assert_eq!(added["durable"], false);
    assert_eq!(added["priority"], "medium", "default");
    assert_eq!(
        added["publish"],
        json!(["operator", "admin"]),
        "admins always may"
    );
    assert_eq!(
        added["receive"],
        json!(["operator", "supervisor", "manager", "admin"])
    );
    assert_eq!(
        added["conflate"],
        json!({ "key": "lineId", "windowMs": 250 })
    );
    // An override replaces the built-in entry whole, as the server merges.
    let overridden = &doc["events"]["order:created"];
    assert_eq!(overridden["priority"], "high");
    assert_eq!(overridden["schema"], json!({ "type": "object" }));
    assert!(
        doc["events"]["order:status_changed"]["schema"]["required"].is_array(),
        "built-ins remain"
    );
    assert_eq!(doc["allowUnknown"], true);
    assert_eq!(doc["rooms"]["secret"], json!(["manager", "admin"]));
    assert_eq!(
        doc["rooms"]["quality"],
        json!(["supervisor", "manager", "admin"])
    );
    let recipe = &doc["documents"]["recipe"];
    assert_eq!(recipe["write"], json!(["manager", "admin"]));
    assert_eq!(
        recipe["read"],
        json!(["operator", "supervisor", "manager", "admin"])
    );

    // A broken file fails the command as it fails startup, naming the entry.
    let mut bad = tempfile("json");
    write!(
        bad.1,
        "{}",
        json!({ "events": { "a:b": { "publish": ["boss"] } } })
    )
    .unwrap();
    let out = catalog_command(
        &["--json"],
        &[("CATALOG_FILE", &bad.0.display().to_string())],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("events.a:b") && stderr.contains("unknown role"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn catalog_command_lists_commands_and_rules_with_the_rules_file_over_them() {
    let mut f = tempfile("json");
    let args = json!({ "type": "object", "required": ["rpm"], "properties": { "rpm": { "type": "number" } } });
    write!(
        f.1,
        "{}",
        json!({
            "events": { "valve:moved": { "serverOnly": true } },
            "commands": {
                "pump:start": { "description": "Start a pump", "args": args, "send": ["operator"],
                                "answer": { "roles": ["supervisor"] }, "timeoutMs": 2000,
                                "interlocks": [{ "target": "device:p1", "document": "tank:t1",
                                                 "field": "state", "equals": "empty",
                                                 "reason": "tank t1 is empty" }] }
            },
            "rules": {
                "hot": { "stream": { "type": "telemetry", "key": "endpointId", "match": { "endpointId": 59 } },
                         "thresholds": { "t": { "above": 80, "hysteresis": 2, "forMs": 1000, "event": "alarm",
                             "priority": "critical",
                             "payload": { "severity": "critical", "message": "hot" } } } },
                "band": { "stream": { "type": "telemetry" }, "deadband": 0.5 }
            }
        })
    )
    .unwrap();
    let mut r = tempfile("json");
    write!(
        r.1,
        "{}",
        json!({ "rules": { "band": { "stream": { "type": "telemetry" }, "deadband": 3 } } })
    )
    .unwrap();
    let catalog = f.0.display().to_string();
    let rules = r.0.display().to_string();
    let doc = catalog_json(&[("CATALOG_FILE", &catalog), ("RULES_FILE", &rules)]);
    assert_eq!(
        doc["commands"]["pump:start"],
        json!({
            "description": "Start a pump",
            "args": args,
            "send": ["operator", "admin"],
            "answer": { "roles": ["supervisor", "admin"], "permission": null },
            "timeoutMs": 2000,
            "interlocks": [{ "target": "device:p1", "document": "tank:t1", "field": "state",
                             "equals": "empty", "reason": "tank t1 is empty" }]
        })
    );
    let moved = &doc["events"]["valve:moved"];
    assert_eq!(
        (moved["serverOnly"].clone(), moved["publish"].clone()),
        (json!(true), json!([]))
    );
    let hot = &doc["rules"]["hot"];
    assert_eq!(hot["stream"]["field"], "value", "default");
    assert_eq!(hot["stream"]["match"], json!({ "endpointId": 59 }));
    assert_eq!(hot["deadband"], Value::Null);
    assert_eq!(
        hot["thresholds"]["t"],
        json!({ "above": 80.0, "hysteresis": 2.0, "forMs": 1000, "event": "alarm", "room": "alarms",
                "priority": "critical", "clearPriority": null,
                "payload": { "severity": "critical", "message": "hot" }, "clear": {},
                "idField": "alarmId", "valueField": "value" })
    );
    assert_eq!(
        doc["rules"]["band"]["deadband"], 3.0,
        "RULES_FILE wins by id"
    );
    // The summary marks the server-only type.
    let text = catalog_command(&[], &[("CATALOG_FILE", &catalog)]);
    let line = String::from_utf8_lossy(&text.stdout)
        .lines()
        .find(|l| l.starts_with("valve:moved"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(line.contains("publish:server-only"), "{line}");

    // A rule the server would refuse fails the command as it fails startup.
    let mut bad = tempfile("json");
    write!(
        bad.1,
        "{}",
        json!({ "rules": { "r": { "stream": { "type": "command_status" }, "deadband": 1 } } })
    )
    .unwrap();
    let out = catalog_command(&["--json"], &[("RULES_FILE", &bad.0.display().to_string())]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rules.r.stream.type") && stderr.contains("server only"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
