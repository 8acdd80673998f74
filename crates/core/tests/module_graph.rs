//! The core's modules form no import cycle, submodules included: each module (a file: `proxy` is
//! `src/proxy/mod.rs`, `proxy::pool` is `src/proxy/pool.rs`) that names another in its non-test code —
//! `crate::a::b`, `super::x`, `self::x`, a child by its bare name, and every leaf of a grouped or nested
//! `use` (`use super::{a, b::{c, D}}`) — has an edge to it, and the graph must be a DAG, so every module
//! can be read, tested and replaced from the bottom up. A child that takes an item from its parent
//! (`use super::Helper`) while the parent uses the child is a cycle: shared items live in a module of
//! their own that both import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every module of `src/` by its path (`proxy::pool`), with its non-test code.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
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
            let rel = p.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            if parts == ["lib"] {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            // Test modules may reach anywhere.
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            out.insert(parts.join("::"), strip_comments(&code));
        }
    }
    out
}

fn strip_comments(code: &str) -> String {
    code.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths a `use` tree names, each as its segments: `super::{a, b::{c, D}}` → `super::a`,
/// `super::b::c`, `super::b::D`.
fn expand_use(tree: &str) -> Vec<String> {
    // `X as Y` names X.
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut kept = vec![];
    let mut i = 0;
    while i < words.len() {
        if words[i] == "as" {
            // The alias goes; what closes the group after it stays.
            if let Some(w) = words.get(i + 1) {
                kept.push(w.trim_start_matches(is_ident));
            }
            i += 2;
            continue;
        }
        kept.push(words[i]);
        i += 1;
    }
    let tree: String = kept.concat();
    let mut out = vec![];
    fn go(prefix: &str, t: &str, out: &mut Vec<String>) {
        // Split `t` at top-level commas.
        let mut depth = 0;
        let mut start = 0;
        let mut items = vec![];
        for (i, c) in t.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&t[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&t[start..]);
        for item in items.into_iter().filter(|i| !i.is_empty()) {
            match item.find('{') {
                Some(b) => {
                    let head = item[..b].trim_end_matches("::");
                    let inner = &item[b + 1..item.rfind('}').unwrap_or(item.len())];
                    let p = join(prefix, head);
                    go(&p, inner, out);
                }
                None => out.push(join(prefix, item)),
            }
        }
    }
    fn join(a: &str, b: &str) -> String {
        match (a.is_empty(), b.is_empty()) {
            (true, _) => b.to_string(),
            (_, true) => a.to_string(),
            _ => format!("{a}::{b}"),
        }
    }
    go("", &tree, &mut out);
    out
}

/// The module a path names from inside `module`, or `None` when it names none of this crate.
fn resolve(
    module: &str,
    path: &str,
    known: &BTreeSet<String>,
    children: &BTreeSet<String>,
) -> Option<String> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let here: Vec<&str> = if module.is_empty() {
        vec![]
    } else {
        module.split("::").collect()
    };
    let (mut base, rest): (Vec<&str>, &[&str]) = match segs.first() {
        Some(&"crate") => (vec![], &segs[1..]),
        Some(&"self") => (here.clone(), &segs[1..]),
        Some(&"super") => {
            let mut b = here.clone();
            let mut i = 0;
            while segs.get(i) == Some(&"super") {
                b.pop();
                i += 1;
            }
            (b, &segs[i..])
        }
        Some(first) if children.contains(*first) => (here.clone(), &segs[..]),
        _ => return None,
    };
    // The longest prefix that is a module.
    let mut best = base.join("::");
    for s in rest {
        base.push(s);
        let name = base.join("::");
        if known.contains(&name) {
            best = name;
        } else {
            break;
        }
    }
    (!best.is_empty() && best != module).then_some(best)
}

fn graph() -> Graph {
    let mods = modules();
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    let mut g = Graph::new();
    for (m, code) in &mods {
        let children: BTreeSet<String> = known
            .iter()
            .filter_map(|k| {
                let rest = if m.is_empty() {
                    k.as_str()
                } else {
                    k.strip_prefix(m.as_str())?.strip_prefix("::")?
                };
                (!rest.contains("::")).then(|| rest.to_string())
            })
            .collect();
        let deps = g.entry(m.clone()).or_default();
        let mut paths = vec![];
        // `use` trees, whole (a grouped one spans lines).
        let mut rest = code.as_str();
        while let Some(i) = rest.find("use ") {
            // A `use` item: at the start of its line, or after `pub`/`pub(crate)`.
            let line_start = rest[..i].rfind('\n').map_or(0, |n| n + 1);
            let lead = rest[line_start..i].trim();
            let after = &rest[i + 4..];
            rest = after;
            if !(lead.is_empty() || lead.starts_with("pub")) {
                continue;
            }
            let Some(end) = after.find(';') else { continue };
            let tree = &after[..end];
            if tree
                .chars()
                .all(|c| is_ident(c) || c.is_whitespace() || "{}:,*".contains(c))
            {
                paths.extend(expand_use(tree));
            }
        }
        // Paths written inline (`crate::x::f()`, `super::handle(…)`, `pool::route(…)`).
        let chars: Vec<char> = code.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if is_ident(chars[i]) && (i == 0 || !is_ident(chars[i - 1]) && chars[i - 1] != ':') {
                let mut j = i;
                while j < chars.len() && (is_ident(chars[j]) || chars[j] == ':') {
                    j += 1;
                }
                let p: String = chars[i..j].iter().collect();
                if p.contains("::") {
                    paths.push(p);
                }
                i = j;
            } else {
                i += 1;
            }
        }
        for p in paths {
            if let Some(to) = resolve(m, &p, &known, &children) {
                deps.insert(to);
            }
        }
    }
    g
}

/// The modules that import each other, as groups (Tarjan's strongly connected components of size > 1).
fn tangles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        out: Vec<Vec<String>>,
    }
    fn strong(t: &mut T, v: &str) {
        let i = t.index.len();
        t.index.insert(v.into(), i);
        t.low.insert(v.into(), i);
        t.stack.push(v.into());
        t.on.insert(v.into());
        for w in t.g.get(v).cloned().unwrap_or_default() {
            if !t.index.contains_key(&w) {
                strong(t, &w);
                let lw = t.low[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(&w) {
                let iw = t.index[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut c = vec![];
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = w == v;
                c.push(w);
                if done {
                    break;
                }
            }
            if c.len() > 1 {
                c.sort();
                t.out.push(c);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on: BTreeSet::new(),
        out: vec![],
    };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            strong(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_import_cycle_between_core_modules_submodules_included() {
    let g = graph();
    assert!(g.contains_key("services") && g.contains_key("proxy::pool"));
    let t = tangles(&g);
    assert!(
        t.is_empty(),
        "modules that import each other (move what they share into a module of its own):\n{}",
        t.iter().map(|c| c.join(" ")).collect::<Vec<_>>().join("\n")
    );
}

/// The parser sees what a reader sees: grouped and nested `use`, `super` and `self`, bare child names.
#[test]
fn the_graph_reads_grouped_and_nested_paths() {
    let mut paths = expand_use("super::{auth, body::{peek, Peek}, front::Front as F}");
    paths.sort();
    assert_eq!(
        paths,
        [
            "super::auth",
            "super::body::Peek",
            "super::body::peek",
            "super::front::Front"
        ]
    );
    let known: BTreeSet<String> = ["proxy", "proxy::pool", "proxy::front", "gate", "gate::door"]
        .map(String::from)
        .into();
    let none = BTreeSet::new();
    let r = |m: &str, p: &str| resolve(m, p, &known, &none);
    assert_eq!(
        r("proxy::pool", "super::front::Front").as_deref(),
        Some("proxy::front")
    );
    assert_eq!(r("proxy::pool", "super::handle").as_deref(), Some("proxy"));
    assert_eq!(
        r("proxy", "crate::gate::door::Door").as_deref(),
        Some("gate::door")
    );
    assert_eq!(r("proxy", "crate::gate::Listener").as_deref(), Some("gate"));
    assert_eq!(r("proxy", "std::sync::Arc"), None);
    let kids: BTreeSet<String> = ["pool".to_string()].into();
    assert_eq!(
        resolve("proxy", "pool::route", &known, &kids).as_deref(),
        Some("proxy::pool")
    );
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("a".into());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(tangles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
}
