//! Reads the agent's `/metrics` (classic text format) into samples.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// One HTTP/1.1 GET; the body of a 200 response.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("{addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).context("reading the response")?;
    let raw = String::from_utf8_lossy(&raw);
    let Some((head, body)) = raw.split_once("\r\n\r\n") else {
        bail!("no end of header in {raw:?}");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or_default());
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("GET {path}: chunked responses are not expected from the agent");
    }
    Ok(body.to_string())
}

/// Samples of one scrape: (name, labels) -> value.
#[derive(Debug, Default)]
pub struct Metrics(BTreeMap<(String, BTreeMap<String, String>), f64>);

impl Metrics {
    pub fn parse(text: &str) -> Result<Self> {
        let mut m = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line
                .rsplit_once(' ')
                .with_context(|| format!("no value in {line:?}"))?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().with_context(|| format!("value in {line:?}"))?,
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (
                    n,
                    parse_labels(rest.strip_suffix('}').context("unclosed labels")?)
                        .with_context(|| format!("labels in {line:?}"))?,
                ),
                None => (series, BTreeMap::new()),
            };
            m.insert((name.to_string(), labels), value);
        }
        Ok(Metrics(m))
    }

    /// Sum over the series of `name` whose labels include all of `want`
    /// (0 when none match).
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        // + 0.0: an empty f64 sum is -0, which would print as "-0".
        self.matching(name, want).map(|(_, v)| v).sum::<f64>() + 0.0
    }

    /// Series of `name` whose labels include all of `want`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        want: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a BTreeMap<String, String>, f64)> + 'a {
        self.0
            .iter()
            .filter(move |((n, l), _)| {
                n == name && want.iter().all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|((_, l), v)| (l, *v))
    }
}

/// `a="x",b="y\"z"` with the exposition format's escapes (\\, \", \n).
fn parse_labels(body: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").context("expected key=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => bail!("dangling escape"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => bail!("unterminated value"),
            }
        };
        out.insert(key.trim_start_matches(',').to_string(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_values_and_escapes() {
        let m = Metrics::parse(
            "# HELP x y\nnetagent_connect_total{process=\"a\\\"b\",proto=\"tcp\",dport=\"80\"} 7\n\
             netagent_connect_total{process=\"c\",proto=\"udp\",dport=\"53\"} 2\nup 1\n\
             h_bucket{le=\"+Inf\"} 3\n",
        )
        .unwrap();
        assert_eq!(m.sum("netagent_connect_total", &[("process", "a\"b")]), 7.0);
        assert_eq!(m.sum("netagent_connect_total", &[]), 9.0);
        assert_eq!(m.sum("netagent_connect_total", &[("proto", "icmp")]), 0.0);
        assert_eq!(m.sum("up", &[]), 1.0);
        assert_eq!(m.sum("h_bucket", &[("le", "+Inf")]), 3.0);
        assert!(Metrics::parse("broken{a=\"x} 1\n").is_err());
    }
}
