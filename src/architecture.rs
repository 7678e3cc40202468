//! The dependency rules of `lib.rs`, checked on the source: top-level modules use only the
//! layers below their own, and no two files of one folder import each other, directly or
//! through others. Test modules (from the first `#[cfg(test)] mod` of a file on, and `tests.rs`
//! files) may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each source file's module path (`["delivery", "targets"]`) and its code without tests.
fn sources() -> Vec<(Vec<String>, String)> {
    fn walk(dir: &Path, out: &mut Vec<(Vec<String>, String)>, root: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out, root);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let Some(stem) = rel.strip_suffix(".rs") else {
                continue;
            };
            let mut module: Vec<String> = stem.split('/').map(str::to_owned).collect();
            let last = module.last().map(String::as_str);
            if last == Some("tests") || matches!(stem, "main" | "lib" | "architecture") {
                continue;
            }
            if last == Some("mod") {
                module.pop();
            }
            let code = std::fs::read_to_string(&path).unwrap();
            let code = match code.find("#[cfg(test)]\nmod ") {
                Some(at) => code[..at].to_owned(),
                None => code,
            };
            out.push((module, code));
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &mut out, &root);
    out
}

/// The modules a file's code names: `crate::a::b…` paths, and `super::x` (or `super::{x, y}`)
/// resolved against the file's folder.
fn named(module: &[String], code: &str) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let path: Vec<String> = code[at + 7..]
            .split("::")
            .map(ident)
            .take_while(|s| !s.is_empty())
            .collect();
        out.insert(path);
    }
    let folder = &module[..module.len().saturating_sub(1)];
    for (at, _) in code.match_indices("super::") {
        if code[..at].ends_with("super::") {
            continue;
        }
        let rest = &code[at + 7..];
        let names: Vec<String> = match rest.strip_prefix('{') {
            Some(list) => list[..list.find('}').unwrap_or(0)]
                .split(',')
                .map(|s| ident(s.trim()))
                .collect(),
            None => vec![ident(rest)],
        };
        for name in names.into_iter().filter(|n| !n.is_empty()) {
            let mut path = folder.to_vec();
            path.push(name);
            out.insert(path);
        }
    }
    out
}

/// Edges between top-level modules, and between the files of each folder.
fn graphs() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let sources = sources();
    let files: BTreeSet<Vec<String>> = sources.iter().map(|(m, _)| m.clone()).collect();
    let mut graphs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, code) in &sources {
        for path in named(module, code) {
            // The longest prefix of `path` that is a source file.
            let Some(target) = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| files.contains(p))
            else {
                continue;
            };
            if target[0] != module[0] {
                let top = graphs.entry("crate".into()).or_default();
                top.entry(module[0].clone())
                    .or_default()
                    .insert(target[0].clone());
            }
            let siblings = module.len() == target.len()
                && module[..module.len() - 1] == target[..target.len() - 1]
                && module != &target;
            if siblings {
                let folder = module[..module.len() - 1].join("/");
                graphs
                    .entry(folder)
                    .or_default()
                    .entry(module.last().unwrap().clone())
                    .or_default()
                    .insert(target.last().unwrap().clone());
            }
        }
    }
    graphs
}

/// A cycle of `graph`, if it has one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_files_of_a_folder_import_each_other_without_cycles() {
    let graphs = graphs();
    assert!(
        graphs.len() > 3,
        "the source was found: {:?}",
        graphs.keys()
    );
    for (folder, graph) in graphs.iter().filter(|(f, _)| *f != "crate") {
        if let Some(c) = cycle(graph) {
            panic!("an import cycle in src/{folder}/: {}", c.join(" → "));
        }
    }
}

#[test]
fn top_level_modules_use_only_the_layers_below_theirs() {
    let layer = |m: &str| super::LAYERS.iter().position(|l| l.contains(&m));
    let graphs = graphs();
    let top = &graphs["crate"];
    let mut wrong = Vec::new();
    for (from, tos) in top {
        let Some(own) = layer(from) else {
            wrong.push(format!("{from} is in no layer of lib.rs"));
            continue;
        };
        for to in tos {
            match layer(to) {
                Some(l) if l > own => {}
                _ => wrong.push(format!("{from} uses {to}")),
            }
        }
    }
    assert!(wrong.is_empty(), "against lib.rs's layers: {wrong:?}");
    // The check sees real edges: the row path's own.
    assert!(top["delivery"].contains("sender") && top["grpc"].contains("delivery"));
}

#[test]
fn a_cycle_is_found() {
    let g: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(x, y)| (x.to_owned(), BTreeSet::from([y.to_owned()])))
        .collect();
    assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
}
