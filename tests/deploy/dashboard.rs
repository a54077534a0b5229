//! The Grafana dashboard and the alerting rules, checked without a running
//! agent: the dashboard's structure, every metric its panels and the rules
//! query is in the catalog, and `promtool check config|rules` plus the
//! rules' unit tests, which fire and clear every alert. The PromQL helpers
//! here also serve the live test (live_prometheus.rs).

use super::{read, repo, run, text, yaml, ALERTS};
use crate::common::{have, require};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

/// Every (panel title, refId, expr, legendFormat) of the dashboard.
pub(super) fn dashboard_targets(dash: &Value) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        let mut panels = vec![p];
        if let Some(inner) = p["panels"].as_array() {
            panels.extend(inner);
        }
        for p in panels {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    p["title"].as_str().unwrap_or("").to_string(),
                    t["refId"].as_str().unwrap_or("").to_string(),
                    t["expr"]
                        .as_str()
                        .expect("every target has an expr")
                        .to_string(),
                    t["legendFormat"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
    }
    out
}

/// Names of the dashboard's variables that hold label values (not data sources).
pub(super) fn value_variables(dash: &Value) -> Vec<String> {
    dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] != "datasource")
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

/// Grafana's substitutions for a query made at "All": the interval macros
/// and every value variable as the regex `.*` (so each must be used as
/// `label=~"$var"`).
pub(super) fn substitute(expr: &str, vars: &[String]) -> String {
    let mut s = expr.to_string();
    for (from, to) in [
        ("${__rate_interval}", "1m"),
        ("$__rate_interval", "1m"),
        ("${__interval}", "15s"),
        ("$__interval", "15s"),
    ] {
        s = s.replace(from, to);
    }
    for v in vars {
        for form in [format!("${{{v}}}"), format!("${v}")] {
            let uses = s.matches(form.as_str()).count();
            let regex_uses = s.matches(&format!("=~\"{form}\"")).count();
            assert_eq!(
                uses, regex_uses,
                "{form} must only be used as label=~\"{form}\" in {expr}"
            );
            s = s.replace(form.as_str(), ".*");
        }
    }
    let leftover = s.match_indices('$').map(|(i, _)| &s[i..]).find(|rest| {
        rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '{')
    });
    assert!(
        leftover.is_none(),
        "unknown variable in {expr}: {leftover:?}"
    );
    s
}

/// Metric names in a PromQL expression: identifiers outside strings, ranges,
/// label matchers and label lists that are not functions, aggregations or
/// keywords.
pub(super) fn metric_names(expr: &str) -> BTreeSet<String> {
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    const LIST_KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &["and", "or", "unless", "offset", "bool", "inf", "nan"];
    let b = expr.as_bytes();
    let (mut i, mut braces, mut in_list, mut list_next) = (0, 0usize, false, false);
    let mut names = BTreeSet::new();
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'[' => {
                while i < b.len() && b[i] != b']' {
                    i += 1;
                }
                i += 1;
            }
            b'{' => {
                braces += 1;
                i += 1;
            }
            b'}' => {
                braces = braces.saturating_sub(1);
                i += 1;
            }
            b'(' => {
                in_list = list_next;
                list_next = false;
                i += 1;
            }
            b')' => {
                in_list = false;
                i += 1;
            }
            b'0'..=b'9' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let next = expr[i..].trim_start().bytes().next();
                let lower = word.to_ascii_lowercase();
                if braces > 0 || in_list || KEYWORDS.contains(&lower.as_str()) {
                    continue;
                }
                if LIST_KEYWORDS.contains(&lower.as_str()) {
                    list_next = true;
                    continue;
                }
                if AGGREGATIONS.contains(&lower.as_str()) || next == Some(b'(') {
                    continue;
                }
                names.insert(word.to_string());
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn the_promql_metric_name_scanner_finds_names_and_skips_the_rest() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (process, le) (rate(a_bucket{x=~"b_c", y="d"}[1m]))) / ignoring (z) group_left (w) b_total and on (job) c:info offset 5m or -sum without (le) (label_replace(d_x, "id", "$1", "p", "(.*)")) * 8 > bool 1e-05"#,
    );
    let want: BTreeSet<String> = ["a_bucket", "b_total", "c:info", "d_x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
    assert_eq!(
        substitute(
            r#"rate(m{i=~"$instance", p=~"${process}"}[$__rate_interval])"#,
            &["instance".into(), "process".into()]
        ),
        r#"rate(m{i=~".*", p=~".*"}[1m])"#
    );
}

/// Structure of dashboards/netagent.json, without a Prometheus: the data
/// source is a variable, every panel and query uses it, and the panels the
/// issue asks for are there.
#[test]
fn the_dashboard_is_well_formed() {
    let dash: Value =
        serde_json::from_str(&read("dashboards/netagent.json")).expect("dashboard is JSON");
    assert_eq!(dash["uid"], "netagent");
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds: Vec<&Value> = vars.iter().filter(|v| v["type"] == "datasource").collect();
    assert_eq!(ds.len(), 1, "one data source variable");
    assert_eq!(ds[0]["name"], "DS_PROMETHEUS");
    assert_eq!(ds[0]["query"], "prometheus");
    let ds_ref = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"], ds_ref, "variable {}", v["name"]);
        assert_eq!(v["allValue"], ".*", "variable {}", v["name"]);
        assert_eq!(v["includeAll"], true, "variable {}", v["name"]);
    }

    let mut ids = BTreeSet::new();
    let mut kinds = BTreeMap::new();
    for p in dash["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id {}",
            p["id"]
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && g["h"].as_u64().unwrap() > 0,
            "gridPos of {}",
            p["title"]
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"], ds_ref, "panel {}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        let mut refs = BTreeSet::new();
        for t in targets {
            assert_eq!(t["datasource"], ds_ref, "query of {}", p["title"]);
            assert!(
                refs.insert(t["refId"].as_str().unwrap()),
                "refIds of {}",
                p["title"]
            );
        }
        *kinds
            .entry(p["type"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        kinds.get("nodeGraph"),
        Some(&1),
        "one node graph: {kinds:?}"
    );
    let graph = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "nodeGraph")
        .unwrap();
    let refs: BTreeSet<&str> = graph["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["refId"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["edges", "nodes"].into_iter().collect());

    // The panels of the issue, by the metric each one needs.
    let all: BTreeSet<String> = dashboard_targets(&dash)
        .iter()
        .flat_map(|(_, _, e, _)| metric_names(e))
        .collect();
    for needed in [
        "netagent_connect_total",
        "netagent_edge_total",
        "netagent_tx_duration_seconds_bucket",
        "netagent_tcp_connect_failed_total",
        "netagent_tcp_resets_total",
        "netagent_tcp_retransmits_total",
        "netagent_tcp_rtt_seconds_bucket",
        "netagent_bytes_sent_total",
        "netagent_bytes_received_total",
        "netagent_interface_bytes_total",
        "netagent_packet_drops_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "netagent_bpf_programs_memory_bytes",
        "netagent_events_lost_total",
        "netagent_probe_up",
        "netagent_series_dropped_total",
        "netagent_log_messages_total",
        "netagent_log_pattern_info",
        "netagent_dns_requests_total",
        "netagent_dns_request_duration_seconds_bucket",
    ] {
        assert!(all.contains(needed), "no panel shows {needed}");
    }
}

/// Every metric a dashboard panel or an alert rule queries is one the
/// agent exports: a catalog family (with `_total`, `_bucket`, `_sum`,
/// `_count` as the wire has them), or Prometheus' own `up`.
#[test]
fn every_metric_the_dashboard_and_the_rules_query_is_in_the_catalog() {
    let mut exposed = BTreeSet::from(["up".to_string()]);
    for d in netagent::metrics::catalog::ALL {
        exposed.insert(d.exposed_name());
        if d.kind == netagent::metrics::Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                exposed.insert(format!("{}{suffix}", d.name));
            }
        }
    }
    let dash: Value =
        serde_json::from_str(&read("dashboards/netagent.json")).expect("dashboard is JSON");
    let mut queries: Vec<(String, String)> = dashboard_targets(&dash)
        .into_iter()
        .map(|(title, _, expr, _)| (format!("panel {title}"), expr))
        .collect();
    let rules = yaml(&read("deploy/prometheus/netagent.rules.yml"), "rules");
    for g in rules["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
            queries.push((
                format!("rule {name}"),
                r["expr"].as_str().expect("expr").to_string(),
            ));
            if let Some(rec) = r["record"].as_str() {
                exposed.insert(rec.to_string());
            }
        }
    }
    assert!(queries.len() > 10, "{queries:?}");
    for (what, expr) in &queries {
        for name in metric_names(expr) {
            assert!(
                exposed.contains(&name),
                "{what} queries {name}, which the catalog does not have: {expr}"
            );
        }
    }
}

#[test]
fn promtool_checks_the_scrape_config_the_rules_and_their_unit_tests() {
    if !require(
        have("promtool"),
        "promtool (Debian package prometheus) not installed",
    ) {
        return;
    }
    let dir = repo().join("deploy/prometheus");
    for args in [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "netagent.rules.yml"],
        ["test", "rules", "netagent.rules.test.yml"],
    ] {
        let out = run(
            Command::new("promtool").args(args).current_dir(&dir),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "promtool {args:?}:\n{}", text(&out));
    }

    // Every alert of the issue exists, and the unit tests see each one both
    // firing and not firing.
    let rules = yaml(&read("deploy/prometheus/netagent.rules.yml"), "rules");
    let defined: BTreeSet<&str> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(defined, ALERTS.into_iter().collect());
    let tests = yaml(
        &read("deploy/prometheus/netagent.rules.test.yml"),
        "rule tests",
    );
    for alert in ALERTS {
        let cases: Vec<&Value> = tests["tests"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
            .filter(|c| c["alertname"] == alert)
            .collect();
        let firing = cases
            .iter()
            .any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()));
        let quiet = cases
            .iter()
            .any(|c| c["exp_alerts"].as_array().is_some_and(|a| a.is_empty()));
        assert!(
            firing && quiet,
            "{alert}: firing tested {firing}, not firing tested {quiet}"
        );
    }
}
