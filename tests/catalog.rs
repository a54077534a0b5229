//! The metric catalog (src/metrics/catalog.rs) is the one place a family
//! is declared; the README's metric tables must say exactly the same:
//! every family, its type and its labels, nothing more, nothing less.

use std::collections::BTreeMap;

use netagent::metrics::catalog::{Desc, ALL};
use netagent::metrics::Kind;

/// (type, labels) per exposed name, from every README table row whose
/// first cell names metrics in backticks. A row may name several
/// families that share type and labels.
fn readme_families() -> BTreeMap<String, (String, Vec<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut out = BTreeMap::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| `name` | type | labels | meaning |" -> ["", name, type, labels, meaning, ""]
        if cells.len() < 5
            || !cells[1].starts_with("`netagent_") && !cells[1].starts_with("`process_")
        {
            continue;
        }
        let names: Vec<String> = backticked(cells[1]);
        // "gauge (1)" is a gauge that is always 1.
        let kind = cells[2].split_whitespace().next().unwrap_or("").to_string();
        let labels = backticked(&without_parentheses(cells[3]));
        for name in names {
            assert!(
                out.insert(name.clone(), (kind.clone(), labels.clone()))
                    .is_none(),
                "{name} appears twice in README's tables"
            );
        }
    }
    out
}

/// The words in backticks.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// `direction` (`sent`/`received`) -> `direction`: the values in
/// parentheses are not label names.
fn without_parentheses(cell: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn kind_name(d: &Desc) -> &'static str {
    match d.kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    }
}

#[test]
fn readme_metric_tables_match_the_catalog_exactly() {
    let readme = readme_families();
    let catalog: BTreeMap<String, (String, Vec<String>)> = ALL
        .iter()
        .map(|d| {
            (
                d.exposed_name(),
                (
                    kind_name(d).to_string(),
                    d.labels.iter().map(|l| l.to_string()).collect(),
                ),
            )
        })
        .collect();
    let missing: Vec<&String> = catalog
        .keys()
        .filter(|n| !readme.contains_key(*n))
        .collect();
    let unknown: Vec<&String> = readme
        .keys()
        .filter(|n| !catalog.contains_key(*n))
        .collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "README lacks {missing:?}; README names families the catalog does not have: {unknown:?}"
    );
    for (name, want) in &catalog {
        assert_eq!(
            &readme[name], want,
            "{name}: README (type, labels) vs catalog"
        );
    }
}

#[test]
fn catalog_names_are_unique_and_units_match_the_names() {
    let mut seen = std::collections::BTreeSet::new();
    for d in ALL {
        assert!(seen.insert(d.name), "{} declared twice", d.name);
        assert!(
            d.name.starts_with("netagent_") || d.name.starts_with("process_"),
            "{}",
            d.name
        );
        assert!(
            !d.name.ends_with("_total"),
            "{}: base names have no _total",
            d.name
        );
        if !d.unit.is_empty() {
            assert!(
                d.name.ends_with(&format!("_{}", d.unit)),
                "{}: unit {}",
                d.name,
                d.unit
            );
        }
        assert!(!d.help.is_empty() && !d.help.contains('\n'), "{}", d.name);
    }
}
