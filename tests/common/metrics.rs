//! A scrape, parsed into (name, labels) -> value, and `promtool check
//! metrics` on an exposition.

use std::collections::BTreeMap;
use std::process::Stdio;

/// Samples of one scrape: (metric name, sorted labels) -> value.
#[derive(Debug, Default)]
pub struct Metrics(pub BTreeMap<(String, BTreeMap<String, String>), f64>);

impl Metrics {
    /// Reads the classic text format (label values must not contain `,` or
    /// escaped quotes; ours in these tests do not).
    pub fn parse(text: &str) -> Self {
        let mut m = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => {
                    let body = rest.strip_suffix('}').unwrap();
                    let labels = body
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once("=\"").unwrap();
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (n.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            m.insert((name, labels), value.parse().unwrap());
        }
        Metrics(m)
    }

    /// Value of the series with exactly these labels (0 when absent). As in
    /// Prometheus, a label with an empty value is the same as no label: a
    /// series with `actual_dst_ip=""` matches a query that does not name it.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<&str, &str> = labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|&(k, v)| (k, v))
            .collect();
        let mut found = None;
        for ((n, l), v) in &self.0 {
            if n != name {
                continue;
            }
            let have: BTreeMap<&str, &str> = l
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            if have == want {
                assert!(found.is_none(), "{name}{labels:?} matches two series");
                found = Some(*v);
            }
        }
        found.unwrap_or(0.0)
    }

    /// Sum over the series of `name` whose labels include all of `labels`
    /// (others any; as in Prometheus, an absent label reads as ""). 0 when
    /// none match.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name)
            .into_iter()
            .filter(|(l, _)| {
                labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map_or("", String::as_str) == *v)
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Every series of a metric name.
    pub fn series(&self, name: &str) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.0
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, l), v)| (l, *v))
            .collect()
    }
}

/// Pipes an exposition to `promtool check metrics`; panics with its output on failure.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
