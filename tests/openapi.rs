//! The OpenAPI document (SPEC §10, issue 13 item 3): every example in it
//! validates against its own schema; every `/api/v1` route in the source is
//! in it (a route mounted with a plain `.route(..)` instead of the table in
//! `src/http/openapi.rs` fails here); and a live node serves it.

mod common;

use std::path::Path;

use serde_json::{Value, json};

fn document() -> Value {
    serde_json::to_value(switchyard::http::openapi::document()).expect("document serializes")
}

/// A schema whose `#/components/...` references resolve: the document's
/// components travel with it.
fn resolvable(schema: &Value, doc: &Value) -> Value {
    json!({ "allOf": [schema], "components": doc["components"] })
}

fn check(doc: &Value, schema: &Value, example: &Value, at: &str, failures: &mut Vec<String>) {
    let validator = match jsonschema::draft202012::new(&resolvable(schema, doc)) {
        Ok(v) => v,
        Err(e) => {
            failures.push(format!("{at}: schema does not compile: {e}"));
            return;
        }
    };
    for e in validator.iter_errors(example) {
        failures.push(format!("{at}: example {example} fails: {e}"));
    }
}

/// Walks the document: parameters and media types (`schema` + `example`
/// or `examples`), and schemas carrying `example` / `examples`.
fn walk(doc: &Value, node: &Value, at: &str, seen: &mut usize, failures: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(schema) = map.get("schema") {
                if let Some(example) = map.get("example") {
                    *seen += 1;
                    check(doc, schema, example, at, failures);
                }
                if let Some(Value::Object(examples)) = map.get("examples") {
                    for (name, ex) in examples {
                        *seen += 1;
                        check(
                            doc,
                            schema,
                            &ex["value"],
                            &format!("{at}/examples/{name}"),
                            failures,
                        );
                    }
                }
            } else {
                let mut bare = map.clone();
                let example = bare.remove("example");
                let examples = bare.remove("examples");
                let schema = Value::Object(bare);
                if let Some(example) = example {
                    *seen += 1;
                    check(doc, &schema, &example, at, failures);
                }
                if let Some(Value::Array(examples)) = examples {
                    for ex in examples {
                        *seen += 1;
                        check(doc, &schema, &ex, at, failures);
                    }
                }
            }
            for (k, v) in map {
                if k != "example" && k != "examples" {
                    walk(doc, v, &format!("{at}/{k}"), seen, failures);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(doc, v, &format!("{at}/{i}"), seen, failures);
            }
        }
        _ => {}
    }
}

fn refs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let doc = document();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20);
    for r in all {
        let pointer = r.strip_prefix('#').unwrap_or(&r);
        assert!(doc.pointer(pointer).is_some(), "unresolvable {r}");
    }
}

#[test]
fn every_example_validates_against_its_schema() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let (mut seen, mut failures) = (0, Vec::new());
    walk(&doc, &doc, "#", &mut seen, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Not vacuous: the document carries examples on every body and parameter.
    assert!(seen >= 80, "only {seen} examples found");
    // And the check bites: a wrong example fails.
    let mut wrong = Vec::new();
    check(
        &doc,
        &json!({ "$ref": "#/components/schemas/KickReply" }),
        &json!({ "disconnected": "two", "incomplete": [] }),
        "control",
        &mut wrong,
    );
    assert_eq!(wrong.len(), 1, "{wrong:?}");
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// String literals starting with `/api/v1` that follow `marker` (e.g.
/// `.route(` or `path = `), whitespace allowed in between.
fn literals_after(text: &str, marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        rest = &rest[i + marker.len()..];
        let trimmed = rest.trim_start();
        if let Some(lit) = trimmed.strip_prefix("\"/api/v1")
            && let Some(end) = lit.find('"')
        {
            found.push(format!("/api/v1{}", &lit[..end]));
        }
    }
    found
}

#[test]
fn every_api_route_in_the_source_is_in_the_document() {
    let doc = document();
    let paths = doc["paths"].as_object().expect("paths");
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut checked = 0;
    let mut missing = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        for marker in [".route(", ".route_service(", ".nest(", "path = "] {
            for route in literals_after(&text, marker) {
                checked += 1;
                let known = paths.contains_key(&route)
                    || (marker == ".nest(" && paths.keys().any(|p| p.starts_with(&route)));
                if !known {
                    missing.push(format!("{}: {marker}\"{route}\"", file.display()));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document (annotate the handler with \
         #[utoipa::path] and add it to src/http/openapi.rs `router()`):\n{}",
        missing.join("\n")
    );
    assert!(checked >= 10, "only {checked} route literals found");
    for expected in [
        "/api/v1/events",
        "/api/v1/telemetry",
        "/api/v1/documents/{type}/{id}",
        "/api/v1/documents/{type}/{id}/history",
        "/api/v1/admin/connections",
        "/api/v1/admin/users/{userId}/connections",
        "/api/v1/admin/stats",
        "/api/v1/openapi.json",
    ] {
        assert!(paths.contains_key(expected), "{expected} missing");
    }
}

#[test]
fn the_scan_finds_plain_routes() {
    let text = r#"Router::new().route(
        "/api/v1/hidden", get(x)).route("/health", get(y))"#;
    assert_eq!(literals_after(text, ".route("), ["/api/v1/hidden"]);
}

#[tokio::test]
async fn a_live_node_serves_the_document() {
    let app = common::spawn_app(&common::sqlite_url(), &[]).await;
    let res = reqwest::get(format!("{}/api/v1/openapi.json", app.url()))
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap_or_default(),
        "application/json"
    );
    let served: Value = res.json().await.expect("json");
    assert_eq!(served, document());
    app.stop().await;
}

/// The document's error codes are the server's (src/http/schema.rs copies
/// the list for the derive; this keeps the copy from drifting).
#[test]
fn the_documented_error_codes_are_the_servers() {
    let doc = document();
    let mut documented: Vec<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let mut served: Vec<String> = switchyard::error::Code::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
}
