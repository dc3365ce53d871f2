//! Every built-in schema against the payloads the seed systems send, as
//! `fixtures/seed_events.md` (a verbatim copy of the shared EVENTS.md)
//! lists them: each type of its tables exists; each field listed is in the
//! schema and only unmarked (`?`-less) fields are required; identifiers are
//! accepted as a number or a string (`alarmId: 42`, `endpointId: 59`);
//! the hints agree with the schema (`(number)`, `(bool)`, `[min,max]`,
//! `(object)`, `(a/b/c)` enumerations); and a payload with every listed
//! field, and one with only the required ones, validate.

use serde_json::{Map, Value, json};
use switchyard::catalog::Catalog;

/// One row of a table: its types and, for each, its fields.
struct Row {
    types: Vec<String>,
    fields: Vec<Vec<Field>>,
}

#[derive(Debug)]
struct Field {
    name: String,
    optional: bool,
    hint: String,
}

/// `` `a` / `b` `` and the suffix form `` `machine:order_started` / `_paused` ``.
fn types(cell: &str) -> Vec<String> {
    let names: Vec<&str> = cell
        .split('/')
        .map(|s| s.trim().trim_matches('`'))
        .filter(|s| !s.is_empty())
        .collect();
    let first = names.first().copied().unwrap_or_default().to_string();
    names
        .iter()
        .map(|n| match n.strip_prefix('_') {
            Some(suffix) => match first.rsplit_once('_') {
                Some((stem, _)) => format!("{stem}_{suffix}"),
                None => first.clone(),
            },
            None => n.to_string(),
        })
        .collect()
}

/// Splits on commas outside brackets and parentheses.
fn split_fields(cell: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for ch in cell.chars() {
        match ch {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

fn fields(cell: &str) -> Vec<Field> {
    split_fields(cell)
        .into_iter()
        .filter(|f| !f.is_empty() && f != "…")
        .filter_map(|f| {
            let name: String = f.chars().take_while(char::is_ascii_alphanumeric).collect();
            if name.is_empty() {
                return None;
            }
            let rest = f[name.len()..].trim_start();
            Some(Field {
                optional: rest.starts_with('?'),
                hint: rest.trim_start_matches('?').trim().to_string(),
                name,
            })
        })
        .collect()
}

/// The fields of the `i`-th type of a row: `timestamp / duration` gives
/// each type its alternative; a hint naming a type (`reason? (paused)`)
/// keeps the field to that type.
fn fields_of(cell: &str, types: &[String], i: usize) -> Vec<Field> {
    let picked: Vec<String> = split_fields(cell)
        .into_iter()
        .map(|f| {
            let alternatives: Vec<&str> = f.split(" / ").collect();
            if alternatives.len() == types.len() && types.len() > 1 {
                alternatives[i].to_string()
            } else {
                f
            }
        })
        .collect();
    fields(&picked.join(", "))
        .into_iter()
        .filter(|f| {
            let word = f
                .hint
                .trim_start_matches('(')
                .split(')')
                .next()
                .unwrap_or_default();
            let names_a_type = types.iter().any(|t| t.ends_with(&format!("_{word}")));
            !names_a_type || types[i].ends_with(&format!("_{word}"))
        })
        .collect()
}

fn rows() -> Vec<Row> {
    include_str!("fixtures/seed_events.md")
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            let types = types(cells[0]);
            let fields = (0..types.len())
                .map(|i| fields_of(cells[1], &types, i))
                .collect();
            Row { types, fields }
        })
        .collect()
}

fn is_id(name: &str) -> bool {
    name.ends_with("Id")
}

/// A value the property schema accepts (ids: `id`, as the test asks).
fn sample(prop: &Value, id: Option<&Value>) -> Value {
    if let Some(id) = id {
        return id.clone();
    }
    if let Some(Value::Array(options)) = prop.get("enum") {
        return options[0].clone();
    }
    let ty = match prop.get("type") {
        Some(Value::Array(types)) => types[0].as_str().unwrap_or("string").to_string(),
        Some(Value::String(t)) => t.clone(),
        _ => "string".into(),
    };
    match ty.as_str() {
        "string" if prop.get("format").is_some() => json!("2024-05-14T08:30:00Z"),
        "string" => json!("x"),
        "integer" => json!(3),
        "number" => json!(0.5),
        "boolean" => json!(true),
        "array" => match prop.get("items") {
            Some(items) => {
                let n = prop.get("minItems").and_then(Value::as_u64).unwrap_or(1);
                Value::Array((0..n).map(|_| sample(items, None)).collect())
            }
            None => json!([]),
        },
        "object" => json!({}),
        _ => Value::Null,
    }
}

fn types_of(prop: &Value) -> Vec<String> {
    match prop.get("type") {
        Some(Value::Array(t)) => t
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Some(Value::String(t)) => vec![t.clone()],
        _ => vec![],
    }
}

/// What a hint says about the field, checked against its schema.
fn check_hint(ty: &str, f: &Field, prop: &Value, problems: &mut Vec<String>) {
    let types = types_of(prop);
    let has = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
    let hint = f.hint.as_str();
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            problems.push(format!(
                "{ty}.{}: EVENTS.md says {what}, schema {prop}",
                f.name
            ));
        }
    };
    if hint.starts_with("(number)") {
        expect(has("number") || has("integer"), "a number");
    }
    if hint.starts_with("(bool)") {
        expect(has("boolean"), "a boolean");
    }
    if hint.starts_with("(object)") {
        expect(has("object"), "an object");
    }
    if hint.starts_with("[min,max]") {
        expect(has("array"), "an array [min,max]");
    }
    // `(warning/critical)`-style enumerations.
    if let Some(inner) = hint.strip_prefix('(').and_then(|h| h.split(')').next())
        && inner.contains('/')
        && !inner.contains(' ')
        && let Some(Value::Array(allowed)) = prop.get("enum")
    {
        for v in inner.split('/').filter(|v| !v.contains('…')) {
            expect(allowed.contains(&json!(v)), &format!("`{v}` is a value"));
        }
    }
}

#[test]
fn every_builtin_schema_accepts_what_the_seeds_send() {
    let catalog = Catalog::load(None).expect("builtin catalog");
    let exported = switchyard::catalog::export::load_json(None).expect("export");
    let rows = rows();
    assert!(rows.len() > 50, "tables read: {}", rows.len());
    let mut problems = Vec::new();
    let mut checked = 0;
    for row in &rows {
        for (ty, fields) in row.types.iter().zip(&row.fields) {
            let Ok(spec) = catalog.event(ty) else {
                problems.push(format!("{ty}: in EVENTS.md, not in the catalog"));
                continue;
            };
            let schema = &exported["events"][ty]["schema"];
            let props = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for name in &required {
                match fields.iter().find(|f| f.name == *name) {
                    Some(f) if f.optional => problems.push(format!(
                        "{ty}.{name}: optional in EVENTS.md, required by the schema"
                    )),
                    Some(_) => {}
                    None => problems.push(format!(
                        "{ty}.{name}: required by the schema, not in EVENTS.md"
                    )),
                }
            }
            for f in fields {
                match props.get(&f.name) {
                    Some(prop) => check_hint(ty, f, prop, &mut problems),
                    None => {
                        problems.push(format!("{ty}.{}: in EVENTS.md, not in the schema", f.name))
                    }
                }
            }
            for id in [json!(42), json!("42")] {
                let build = |all: bool| -> Value {
                    let mut p = Map::new();
                    for f in fields.iter().filter(|f| all || !f.optional) {
                        let prop = props.get(&f.name).cloned().unwrap_or(json!({}));
                        p.insert(f.name.clone(), sample(&prop, is_id(&f.name).then_some(&id)));
                    }
                    Value::Object(p)
                };
                for all in [true, false] {
                    let payload = build(all);
                    if let Err(e) = spec.validate(&payload) {
                        problems.push(format!("{ty}: {payload} refused: {e}"));
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // And the other way: every built-in type is in a table.
    let listed: Vec<&String> = rows.iter().flat_map(|r| &r.types).collect();
    let missing: Vec<&str> = catalog
        .type_names()
        .filter(|t| !listed.iter().any(|l| l == t))
        .collect();
    assert!(
        missing.is_empty(),
        "built-in types not in EVENTS.md: {missing:?}"
    );
    assert_eq!(checked, catalog.len());
}

#[test]
fn the_table_reader_reads_the_seed_forms() {
    assert_eq!(
        types("`machine:order_started` / `_paused` / `_resumed`"),
        [
            "machine:order_started",
            "machine:order_paused",
            "machine:order_resumed"
        ]
    );
    let f =
        fields("alertId, expectedRange [min,max], severity (warning/critical), reason? (paused)");
    let names: Vec<(&str, bool)> = f.iter().map(|f| (f.name.as_str(), f.optional)).collect();
    assert_eq!(
        names,
        [
            ("alertId", false),
            ("expectedRange", false),
            ("severity", false),
            ("reason", true)
        ]
    );
    let t = types("`operator:logged_in` / `operator:logged_out`");
    let out: Vec<String> = fields_of("operatorId, timestamp / duration", &t, 1)
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(out, ["operatorId", "duration"]);
    let t = types("`machine:order_started` / `_paused`");
    assert_eq!(fields_of("machineId, reason? (paused)", &t, 0).len(), 1);
    assert_eq!(fields_of("machineId, reason? (paused)", &t, 1).len(), 2);
}
