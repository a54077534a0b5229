//! Prometheus exposition: classic text format 0.0.4 and OpenMetrics 1.0.0.
//!
//! Rendering writes straight into the caller's `String`; apart from the
//! output's own growth, the only allocation is a small reused buffer of
//! formatted histogram `le` values, so a scrape with 100k series stays cheap.

use crate::metrics::{Family, Histogram, Kind, Series, Value};
use std::fmt::Write as _;

/// Which exposition format to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Prometheus classic text format, version 0.0.4.
    #[default]
    Text,
    /// OpenMetrics text format, version 1.0.0.
    OpenMetrics,
}

impl Format {
    /// Picks the format from an HTTP `Accept` header value (`None` = Text).
    ///
    /// OpenMetrics is chosen when the header lists
    /// `application/openmetrics-text` (version `1.0.0` or no version) with
    /// `q > 0` and at least as preferred as `text/plain`; otherwise Text.
    /// The `text/plain` preference comes from the most specific matching
    /// range (`text/plain`, then `text/*`, then `*/*`), as in RFC 9110.
    /// OpenMetrics is never picked through a wildcard alone, because a
    /// client that did not ask for it may not parse it.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };

        let mut om_q: Option<f64> = None;
        let mut text_exact: Option<f64> = None;
        let mut text_star: Option<f64> = None;
        let mut any_star: Option<f64> = None;

        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let mut q = 1.0;
            let mut version: Option<&str> = None;
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim() {
                    k if k.eq_ignore_ascii_case("q") => {
                        // An unparsable weight makes the range unusable rather
                        // than silently preferred.
                        q = value
                            .parse::<f64>()
                            .ok()
                            .filter(|q| q.is_finite())
                            .unwrap_or(0.0);
                    }
                    k if k.eq_ignore_ascii_case("version") => version = Some(value),
                    _ => {}
                }
            }

            let slot = if media.eq_ignore_ascii_case("application/openmetrics-text") {
                // Version 0.0.1 is a different (pre-1.0) dialect we don't emit.
                if !matches!(version, None | Some("1.0.0")) {
                    continue;
                }
                &mut om_q
            } else if media.eq_ignore_ascii_case("text/plain") {
                &mut text_exact
            } else if media.eq_ignore_ascii_case("text/*") {
                &mut text_star
            } else if media == "*/*" {
                &mut any_star
            } else {
                continue;
            };
            *slot = Some(slot.map_or(q, |old: f64| old.max(q)));
        }

        let text_q = text_exact.or(text_star).or(any_star).unwrap_or(0.0);
        match om_q {
            Some(q) if q > 0.0 && q >= text_q => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` header value matching the rendered body.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Renders `families` into `out` (appending), in the given order.
///
/// Series are rendered in the order they appear in each family. In
/// OpenMetrics, families without series are skipped: the format allows
/// them, but some parsers (e.g. the `openmetrics-parser` crate) merge a
/// bare descriptor block into the next family, and it carries no data.
pub fn encode(families: &[Family], format: Format, out: &mut String) {
    let mut le = LeCache::default();
    for family in families {
        match format {
            Format::Text => text_metadata(family, out),
            Format::OpenMetrics => {
                if family.series.is_empty() {
                    continue;
                }
                openmetrics_metadata(family, out);
            }
        }
        for series in &family.series {
            encode_series(family.name, series, &mut le, out);
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    }
}

/// Classic text: metadata is keyed by the sample name, so counters carry `_total`.
fn text_metadata(family: &Family, out: &mut String) {
    let suffix = if family.kind == Kind::Counter {
        "_total"
    } else {
        ""
    };
    out.push_str("# HELP ");
    out.push_str(family.name);
    out.push_str(suffix);
    out.push(' ');
    push_escaped(out, family.help, false);
    out.push_str("\n# TYPE ");
    out.push_str(family.name);
    out.push_str(suffix);
    out.push(' ');
    out.push_str(kind_name(family.kind));
    out.push('\n');
}

/// OpenMetrics: metadata is keyed by the family name, and HELP escapes quotes too.
fn openmetrics_metadata(family: &Family, out: &mut String) {
    out.push_str("# TYPE ");
    out.push_str(family.name);
    out.push(' ');
    out.push_str(kind_name(family.kind));
    out.push_str("\n# HELP ");
    out.push_str(family.name);
    out.push(' ');
    push_escaped(out, family.help, true);
    out.push('\n');
}

/// Sample lines are identical in both formats; only metadata and the
/// trailing `# EOF` differ.
fn encode_series(name: &str, series: &Series, le: &mut LeCache, out: &mut String) {
    match &series.value {
        Value::Counter(v) => {
            push_series_name(out, name, "_total", &series.labels, None);
            push_f64(out, *v);
            out.push('\n');
        }
        Value::Gauge(v) => {
            push_series_name(out, name, "", &series.labels, None);
            push_f64(out, *v);
            out.push('\n');
        }
        Value::Histogram(h) => encode_histogram(name, series, h, le, out),
    }
}

fn encode_histogram(
    name: &str,
    series: &Series,
    h: &Histogram,
    le: &mut LeCache,
    out: &mut String,
) {
    debug_assert_eq!(h.buckets.len(), h.bounds.len() + 1);
    let bounds = le.get(h.bounds);
    let mut cumulative = 0u64;
    for (bound, count) in bounds.zip(&h.buckets) {
        cumulative += count;
        push_series_name(out, name, "_bucket", &series.labels, Some(bound));
        push_u64(out, cumulative);
        out.push('\n');
    }
    // The +Inf bucket is the total even if `buckets` is short, so it always
    // equals `_count`.
    let count = h.count();
    push_series_name(out, name, "_bucket", &series.labels, Some("+Inf"));
    push_u64(out, count);
    out.push('\n');
    push_series_name(out, name, "_sum", &series.labels, None);
    push_f64(out, h.sum);
    out.push('\n');
    push_series_name(out, name, "_count", &series.labels, None);
    push_u64(out, count);
    out.push('\n');
}

/// Writes `name_suffix{labels,le="…"} ` (including the trailing space).
fn push_series_name(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&'static str, String)],
    le: Option<&str>,
) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && le.is_none() {
        out.push(' ');
        return;
    }
    out.push('{');
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push_str("=\"");
        push_escaped(out, value, true);
        out.push('"');
    }
    if let Some(le) = le {
        if !labels.is_empty() {
            out.push(',');
        }
        out.push_str("le=\"");
        out.push_str(le);
        out.push('"');
    }
    out.push_str("} ");
}

/// Escapes `\` and newline, plus `"` when `quote` is set (label values and
/// OpenMetrics HELP; classic HELP leaves quotes alone).
fn push_escaped(out: &mut String, s: &str, quote: bool) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'"' if quote => "\\\"",
            _ => continue,
        };
        // Slicing is safe: the matched bytes are ASCII, never inside a
        // multi-byte UTF-8 sequence.
        out.push_str(&s[start..i]);
        out.push_str(escaped);
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// Sample value: integral values as plain integers (no `.0`, no exponent),
/// others in Rust's shortest round-trip form.
fn push_f64(out: &mut String, v: f64) {
    // 2^63: every integral f64 below it converts to i64 exactly.
    const I64_RANGE: f64 = 9_223_372_036_854_775_808.0;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < I64_RANGE {
        let i = v as i64;
        if i < 0 {
            out.push('-');
        }
        push_u64(out, i.unsigned_abs());
    } else {
        // `{:?}` is shortest round-trip and switches to an exponent for
        // tiny magnitudes instead of printing hundreds of zeros.
        let _ = write!(out, "{v:?}");
    }
}

/// Integer formatting without going through `fmt`, which dominates the
/// per-sample cost otherwise.
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

/// Canonical `le` value as Prometheus normalises it (Go's `%g` shortest
/// form, with `.0` added to integers): `0.005`, `1.0`, `100000.0`,
/// `1e+06`, `1e-05`. Both formats use it, so a series keeps one identity
/// whichever format a scraper negotiates.
fn push_canonical_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if v == 0.0 {
        out.push_str("0.0");
        return;
    }
    if v < 0.0 {
        out.push('-');
    }
    // `{:e}` yields the shortest round-trip digits as `d.ddde±N`.
    let mut sci = String::new();
    let _ = write!(sci, "{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();

    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(if exp < 0 { "e-" } else { "e+" });
        let abs = exp.unsigned_abs();
        if abs < 10 {
            out.push('0');
        }
        push_u64(out, u64::from(abs));
        return;
    }

    // Position of the decimal point relative to the first digit.
    let point = exp + 1;
    if point <= 0 {
        out.push_str("0.");
        for _ in 0..-point {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if point >= digits.len() {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
}

/// Formatted `le` values for the bounds slice last seen. Histograms of one
/// family share a `&'static` bounds slice, so this formats once per family
/// instead of once per bucket line.
#[derive(Default)]
struct LeCache {
    bounds: Option<&'static [f64]>,
    text: String,
    ends: Vec<usize>,
}

impl LeCache {
    fn get(&mut self, bounds: &'static [f64]) -> impl Iterator<Item = &str> {
        let hit = self
            .bounds
            .is_some_and(|b| std::ptr::eq(b, bounds) || b == bounds);
        if !hit {
            self.text.clear();
            self.ends.clear();
            for &b in bounds {
                push_canonical_float(&mut self.text, b);
                self.ends.push(self.text.len());
            }
            self.bounds = Some(bounds);
        }
        let text = self.text.as_str();
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(move |(start, end)| &text[start..end])
    }
}

#[cfg(test)]
mod tests;
