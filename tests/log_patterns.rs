//! Log pattern extraction end to end: the real agent tails files (and a
//! real journal through journalctl) that this test writes, and the counts
//! scraped from /metrics must equal what was written — per pattern, level,
//! source and container — through rotation, truncation and restarts.
//!
//! One file per kind of source or event in tests/log_patterns/: plain
//! files (templates, levels, the pattern cap), rotation and restarts,
//! container logs (Docker json-file, CRI), journald, and the CPU benchmark.
//! This file holds what they share: the scrape parser, the agent config
//! and writing to log files.

mod common;

#[path = "log_patterns/bench.rs"]
mod bench;
#[path = "log_patterns/containers.rs"]
mod containers;
#[path = "log_patterns/files.rs"]
mod files;
#[path = "log_patterns/journald.rs"]
mod journald;
#[path = "log_patterns/rotation.rs"]
mod rotation;

use common::Agent;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const MESSAGES: &str = "netagent_log_messages_total";
const DROPPED: &str = "netagent_log_patterns_dropped_total";
const MALFORMED: &str = "netagent_log_lines_malformed_total";

/// The documented pattern hash: first 16 hex digits of SHA-256 of the text.
fn hash(pattern: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, pattern.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the classic text format, including escaped label values (the
/// `sample` label holds log text with quotes and backslashes).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap();
        let name = line[..name_end].to_string();
        let mut labels = BTreeMap::new();
        let mut chars = line[name_end..].chars().peekable();
        if chars.peek() == Some(&'{') {
            chars.next();
            loop {
                let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                assert_eq!(chars.next(), Some('"'), "{line}");
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some(e) => value.push(e),
                            None => panic!("{line}"),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                labels.insert(key, value);
                match chars.next() {
                    Some(',') => continue,
                    Some('}') => break,
                    other => panic!("{other:?} in {line}"),
                }
            }
        }
        let value: String = chars.collect();
        out.push((name, labels, value.trim().parse().unwrap()));
    }
    out
}

/// Labels as a map, for comparisons.
fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Message counts of sources under `dir`: (source, container, level, hash) -> (count, sample).
fn messages(
    samples: &[Sample],
    filter: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<(String, String, String, String), (f64, String)> {
    samples
        .iter()
        .filter(|(n, l, _)| n == MESSAGES && filter(l))
        .map(|(_, l, v)| {
            (
                (
                    l["source"].clone(),
                    l["container"].clone(),
                    l["level"].clone(),
                    l["pattern_hash"].clone(),
                ),
                (*v, l["sample"].clone()),
            )
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let want = labels(want);
    samples
        .iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| *v)
}

/// Scrapes until `done` holds (bounded); returns the last scrape either way.
fn scrape_until(agent: &Agent, timeout: Duration, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = parse(&agent.scrape());
        if done(&s) || Instant::now() >= deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Total of the message counter over sources below `dir`.
fn total_under(samples: &[Sample], dir: &Path) -> f64 {
    let prefix = dir.display().to_string();
    samples
        .iter()
        .filter(|(n, l, _)| n == MESSAGES && l["source"].starts_with(&prefix))
        .map(|(_, _, v)| v)
        .sum()
}

/// Agent config: no process is tracked and no interface counted (this
/// test is about logs), files polled fast.
fn config(dir: &Path, paths: &[String], extra: &str) -> String {
    let paths: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "targets:\n  - name: none\n    match_comm: \"nomatch-logs\"\n\
         interface_stats:\n  enabled: false\n\
         logs:\n  enabled: true\n  journald: false\n  paths: [{}]\n  \
         state_file: \"{}/state/offsets.json\"\n  poll_interval_seconds: 0.05\n  \
         rescan_interval_seconds: 0.2\n  rotate_wait_seconds: 1\n{extra}",
        paths.join(", "),
        dir.display()
    )
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn ts(i: usize) -> String {
    format!(
        "2026-11-22T02:{:02}:{:02}.{:03}Z",
        i / 60 % 60,
        i % 60,
        i % 1000
    )
}

fn open_append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}
