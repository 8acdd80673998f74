//! The core's top-level modules form no import cycle: each `crate::x` a module's non-test code names is an
//! edge, and the graph must be a DAG (so every module can be read, tested and replaced from the bottom up).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn top_modules() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().and_then(|x| x.to_str()) != Some("rs") {
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            // Test modules may reach anywhere.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let deps = graph.entry(top.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn no_import_cycle_between_core_modules() {
    let g = top_modules();
    assert!(g.contains_key("services") && g.contains_key("supervisor"));
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        v: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(v) {
            return;
        }
        if let Some(i) = path.iter().position(|p| p == v) {
            panic!("import cycle: {} -> {v}", path[i..].join(" -> "));
        }
        path.push(v.to_string());
        for w in g.get(v).into_iter().flatten() {
            if g.contains_key(w) {
                visit(w, g, path, done);
            }
        }
        path.pop();
        done.insert(v.to_string());
    }
    let mut done = BTreeSet::new();
    for v in g.keys() {
        visit(v, &g, &mut vec![], &mut done);
    }
}
