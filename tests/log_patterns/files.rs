//! Plain log files: known templates and levels give exactly those patterns,
//! counts and samples; patterns beyond the per-source cap are counted
//! under `~other`.

use super::{append, config, hash, messages, parse, scrape_until, total_under, ts, value};
use super::{DROPPED, MALFORMED};
use crate::common::{require_bpf, serial, Agent, TempDir};
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn known_templates_and_levels_give_exactly_those_patterns_and_counts() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("logs-templates");
    let d = &dir.0;
    let agent = Agent::start_with_yaml(&config(
        d,
        &[format!("{}/*.log", d.display())],
        "  sample_max_bytes: 48\n",
    ));
    // (template as written, level, pattern after masking and clustering, count)
    let names = ["alice", "bob", "carol"];
    type Gen = Box<dyn Fn(usize) -> String>;
    let templates: Vec<(Gen, &str, &str, usize)> = vec![
        (
            Box::new(|i| {
                format!(
                    "{} ERROR payment p-{i:04} failed: card \"4111 {i}\" declined",
                    ts(i)
                )
            }),
            "error",
            "<*> ERROR payment <*> failed: card <*> declined",
            7,
        ),
        (
            Box::new(|i| {
                format!(
                    "{} ERROR disk /dev/sda{} is {}% full",
                    ts(i),
                    i % 4,
                    90 + i % 10
                )
            }),
            "error",
            "<*> ERROR disk <*> is <*> full",
            3,
        ),
        (
            Box::new(|i| {
                format!(
                    "{} WARN disk /dev/sda{} is {}% full",
                    ts(i),
                    i % 4,
                    80 + i % 10
                )
            }),
            "warning",
            "<*> WARN disk <*> is <*> full",
            5,
        ),
        (
            Box::new(move |i| {
                format!(
                    "{} INFO user {} logged in from 10.1.{}.{}:{}",
                    ts(i),
                    names[i % 3],
                    i % 7,
                    i,
                    40000 + i
                )
            }),
            "info",
            "<*> INFO user <*> logged in from <*>",
            11,
        ),
        (
            Box::new(|i| {
                format!(
                    "level=debug msg=\"cache refreshed in {}ms\" entries={}",
                    3 + i,
                    i * 10
                )
            }),
            "debug",
            "level=<*> msg=\"cache refreshed in <*>\" entries=<*>",
            4,
        ),
        (
            Box::new(|_| "connection pool exhausted, waiting for a free slot".to_string()),
            "unknown",
            "connection pool exhausted, waiting for a free slot",
            3,
        ),
    ];
    // Interleave the templates in a fixed order; remember each one's first line.
    let mut lines = Vec::new();
    let mut first: Vec<Option<String>> = vec![None; templates.len()];
    let max = templates.iter().map(|t| t.3).max().unwrap();
    for i in 0..max {
        for (k, (gen, _, _, n)) in templates.iter().enumerate() {
            if i < *n {
                let l = gen(i);
                first[k].get_or_insert_with(|| l.clone());
                lines.push(l);
            }
        }
    }
    let app = d.join("app.log");
    append(&app, &(lines.join("\n") + "\n\n")); // a blank line is not a message
                                                // Another file: same template, its own source.
    let other = d.join("other.log");
    append(
        &other,
        &format!("{}\n{}\n", (templates[0].0)(100), (templates[0].0)(101)),
    );
    let want_total = lines.len() as f64 + 2.0;

    let s = scrape_until(&agent, Duration::from_secs(15), |s| {
        total_under(s, d) >= want_total
    });
    let got = messages(&s, |l| l["source"].starts_with(&d.display().to_string()));
    let src = app.display().to_string();
    let mut want = BTreeMap::new();
    for (k, (_, level, pattern, n)) in templates.iter().enumerate() {
        let sample: String = first[k].as_ref().unwrap().chars().take(48).collect();
        want.insert(
            (src.clone(), String::new(), level.to_string(), hash(pattern)),
            (*n as f64, sample),
        );
    }
    let first_other = (templates[0].0)(100);
    want.insert(
        (
            other.display().to_string(),
            String::new(),
            "error".into(),
            hash(templates[0].2),
        ),
        (2.0, first_other[..48].to_string()),
    );
    assert_eq!(got, want, "patterns, levels, counts and samples");
    for level in ["error", "warning", "info", "debug", "unknown"] {
        assert_eq!(
            value(
                &s,
                DROPPED,
                &[("source", &src), ("container", ""), ("level", level)]
            ),
            Some(0.0),
            "{level}: nothing dropped"
        );
    }
    assert_eq!(
        value(&s, MALFORMED, &[("source", &src), ("container", "")]),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "netagent_log_files", &[("state", "live")]),
        Some(2.0)
    );
    // Later scrapes count nothing twice.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(total_under(&parse(&agent.scrape()), d), want_total);
}

#[test]
fn patterns_beyond_the_cap_are_counted_under_other() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("logs-cap");
    let d = &dir.0;
    let agent = Agent::start_with_yaml(&config(
        d,
        &[format!("{}/*.log", d.display())],
        "  max_patterns_per_source: 3\n",
    ));
    // Five templates of different lengths (never merged), in this order.
    let templates = [
        ("alpha started", 4),
        ("beta stopped cleanly", 6),
        ("gamma was restarted twice", 2),
        ("delta took too long to answer", 5),
        ("epsilon is not configured on this node", 3),
    ];
    let mut text = String::new();
    for round in 0..6 {
        for (t, n) in templates {
            if round < n {
                text += t;
                text += "\n";
            }
        }
    }
    let app = d.join("app.log");
    append(&app, &text);
    let s = scrape_until(&agent, Duration::from_secs(15), |s| {
        total_under(s, d) >= 20.0
    });
    let src = app.display().to_string();
    let got: BTreeMap<String, f64> = messages(&s, |l| l["source"] == src)
        .into_iter()
        .map(|((_, _, _, h), (v, _))| (h, v))
        .collect();
    let want = BTreeMap::from([
        (hash("alpha started"), 4.0),
        (hash("beta stopped cleanly"), 6.0),
        (hash("gamma was restarted twice"), 2.0),
        ("~other".to_string(), 8.0),
    ]);
    assert_eq!(got, want);
    assert_eq!(
        value(
            &s,
            DROPPED,
            &[("source", &src), ("container", ""), ("level", "unknown")]
        ),
        Some(8.0),
        "the lines of the two patterns that did not fit"
    );
}
