//! The shape of the source tree, checked: layers only look down
//! (docs/ARCHITECTURE.md), no two modules import each other, the agent
//! builds every metric family from the catalog, and no file grows past
//! ~600 lines unless its opening comment says why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each layer and what it may import besides itself. `config` and
/// `metrics` are leaves of plain data: they import nothing of the crate,
/// and every layer may use them.
const LAYERS: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("metrics", &[]),
    ("kernel", &["config", "metrics"]),
    ("collect", &["kernel", "config", "metrics"]),
    ("model", &["collect", "kernel", "config", "metrics"]),
    // Exporters read the model, never the kernel or the sources.
    ("export", &["model", "config", "metrics"]),
    ("http", &["export", "model", "config", "metrics"]),
    (
        "agent",
        &[
            "http", "export", "model", "collect", "kernel", "config", "metrics",
        ],
    ),
];

/// A file's lines before its unit tests (`#[cfg(test)]`), which may use
/// test helpers of any layer.
fn code(text: &str) -> &str {
    match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// (module path below src/, file text) of every library file.
fn library() -> Vec<(Vec<String>, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(src()).unwrap().with_extension("");
            let mut module: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            (module, std::fs::read_to_string(&f).unwrap())
        })
        .collect()
}

/// `crate::a::b…` paths a text names: (a, b).
fn crate_paths(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let mut parts = rest
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or("")
            .split("::")
            .filter(|s| !s.is_empty());
        if let Some(top) = parts.next() {
            out.push((top.to_string(), parts.next().map(str::to_string)));
        }
    }
    out
}

#[test]
fn layers_only_look_down() {
    let mut wrong = Vec::new();
    for (module, text) in library() {
        let top = module[0].as_str();
        let Some((_, allowed)) = LAYERS.iter().find(|(l, _)| *l == top) else {
            continue; // main.rs, lib.rs, test_support.rs
        };
        for (target, _) in crate_paths(code(&text)) {
            if target != top && target != "test_support" && !allowed.contains(&target.as_str()) {
                wrong.push(format!("{} imports crate::{target}", module.join("::")));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_modules_import_each_other() {
    // Edges between the modules directly below each layer (kernel::loader
    // -> kernel::series), from `crate::` and `super::` paths.
    let mut edges: BTreeMap<(String, String), BTreeSet<(String, String)>> = BTreeMap::new();
    for (module, text) in library() {
        if module.len() < 2 {
            continue;
        }
        let from = (module[0].clone(), module[1].clone());
        let code = code(&text);
        for (top, second) in crate_paths(code) {
            if let (true, Some(second)) = (top == module[0], second) {
                edges.entry(from.clone()).or_default().insert((top, second));
            }
        }
        for (i, _) in code.match_indices("super::") {
            let name: String = code[i + "super::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // `super` of a file directly below the layer is the layer.
            if module.len() == 2
                && !name.is_empty()
                && name.chars().all(|c| c.is_lowercase() || c == '_')
            {
                edges
                    .entry(from.clone())
                    .or_default()
                    .insert((module[0].clone(), name));
            }
        }
    }
    let mut both = Vec::new();
    for (a, targets) in &edges {
        for b in targets {
            if a != b && a < b && edges.get(b).is_some_and(|t| t.contains(a)) {
                both.push(format!("{}::{} <-> {}::{}", a.0, a.1, b.0, b.1));
            }
        }
    }
    assert!(both.is_empty(), "two-way imports:\n{}", both.join("\n"));
}

#[test]
fn the_agent_builds_every_family_from_the_catalog() {
    for (module, text) in library() {
        // Test modules in files of their own.
        if module
            .last()
            .is_some_and(|m| m == "tests" || m == "test_support")
        {
            continue;
        }
        assert!(
            !code(&text).contains("Family::ad_hoc("),
            "{} builds a family outside the catalog",
            module.join("::")
        );
    }
}

#[test]
fn no_file_is_over_600_lines_unless_it_says_why() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "tools"] {
        if root.join(dir).exists() {
            rust_files(&root.join(dir), &mut files);
        }
    }
    for dir in ["bpf"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                for e in std::fs::read_dir(&p).unwrap() {
                    files.push(e.unwrap().path());
                }
            } else {
                files.push(p);
            }
        }
    }
    let mut long = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let lines = text.lines().count();
        // The opening comment (the first 40 lines) must give the reason.
        let head: String = text.lines().take(40).collect::<Vec<_>>().join("\n");
        if lines > 650 && !head.contains("Longer than") {
            long.push(format!(
                "{} ({lines} lines)",
                f.strip_prefix(root).unwrap().display()
            ));
        }
    }
    assert!(
        long.is_empty(),
        "files over ~600 lines whose opening comment does not say why (\"Longer than …\"):\n{}",
        long.join("\n")
    );
}
