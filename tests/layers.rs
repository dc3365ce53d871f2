//! No import circles between the top-level modules of `src/` (issue 11):
//! no module may import one that imports it back, directly or through
//! others. Every `crate::…` path in the code (comments skipped; `use
//! crate::{a, b::c}` groups expanded) is an edge from the module of the
//! file to the module named; the test fails on any cycle and prints it with
//! a file and line for each edge, so the offending import is easy to find.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `from` → `to` → one place (file:line) where `from` names `to`.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/api/rooms.rs` → `api`);
/// `None` for the crate root and the binary.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a line of code names through `crate::`.
fn named(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        match rest.strip_prefix('{') {
            None => out.push(ident(rest).to_string()),
            Some(group) => {
                let mut depth = 0;
                let mut item_start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && !c.is_whitespace() => {
                            out.push(ident(&group[i..]).to_string());
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let Some(from) = module_of(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable source");
        // `use` groups may span lines: join each statement's lines first.
        let mut statement = String::new();
        let mut first_line = 0;
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if statement.is_empty() {
                first_line = n + 1;
            }
            statement.push_str(code);
            statement.push(' ');
            let open = statement.matches('{').count() > statement.matches('}').count();
            if statement.trim_start().starts_with("use ") && open {
                continue;
            }
            for to in named(&statement) {
                if to != from {
                    let place = format!(
                        "{}:{first_line}",
                        file.strip_prefix(&src).unwrap_or(&file).display()
                    );
                    graph
                        .entry(from.clone())
                        .or_default()
                        .entry(to)
                        .or_insert(place);
                }
            }
            statement.clear();
        }
    }
    graph
}

/// A cycle through `node`, if any, as the list of modules on it.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            if let Some(found) = visit(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = graph();
    assert!(graph.len() > 10, "the scan found the modules: {graph:?}");
    if let Some(found) = cycle(&graph) {
        let edges: Vec<String> = found
            .windows(2)
            .map(|w| format!("  {} -> {}  ({})", w[0], w[1], graph[&w[0]][&w[1]]))
            .collect();
        panic!(
            "import circle {}:\n{}",
            found.join(" -> "),
            edges.join("\n")
        );
    }
}

#[test]
fn paths_are_read_from_use_groups_and_expressions() {
    assert_eq!(
        named("use crate::{a, b::{c, d}, self};"),
        vec!["a".to_string(), "b".to_string()]
    );
    assert_eq!(
        named("crate::metrics::x(); let y = crate::z::w;"),
        vec!["metrics", "z"]
    );
    let mut g = Graph::new();
    g.entry("a".into())
        .or_default()
        .insert("b".into(), "x".into());
    assert_eq!(cycle(&g), None);
    g.entry("b".into())
        .or_default()
        .insert("a".into(), "y".into());
    assert_eq!(cycle(&g), Some(vec!["a".into(), "b".into(), "a".into()]));
}
