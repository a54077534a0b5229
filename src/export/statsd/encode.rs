//! DogStatsD line content: metric names from family names, tags from
//! labels (sanitised so no value can break the line format), and the call
//! that adds tags and hands a line to cadence.

use std::borrow::Cow;

use cadence::ext::{MetricValue, ToCounterValue};
use cadence::{Metric, MetricBuilder, MetricResult};

/// Family names carry this prefix; the configured `prefix` replaces it.
const FAMILY_PREFIX: &str = "netagent_";

/// Metric name (after the prefix) of the per-span duration distribution.
pub(super) const SPAN_METRIC: &str = "tx_duration_seconds";

/// A counter value cadence will send as a float: its counters take
/// integers only, but model counters are `f64` (`process_cpu_seconds`
/// grows by fractions) and DogStatsD parses counts as floats.
/// `ToCounterValue` is cadence's extension point for such value types.
pub(super) struct FloatCount(pub(super) f64);

impl ToCounterValue for FloatCount {
    fn try_to_value(self) -> MetricResult<MetricValue> {
        Ok(MetricValue::Float(self.0))
    }
}

/// Adds the tags (then the global tags) and sends the line.
pub(super) fn send<'m, T>(
    mut line: MetricBuilder<'m, '_, T>,
    tags: &'m [(Cow<'_, str>, Cow<'_, str>)],
    global_tags: &'m [String],
) -> MetricResult<()>
where
    T: Metric + From<String>,
{
    for (key, value) in tags {
        line = line.with_tag(key, value);
    }
    for tag in global_tags {
        line = line.with_tag_value(tag);
    }
    line.try_send().map(drop)
}

/// Series labels as sanitised tag keys and values.
pub(super) fn label_tags<'a>(
    labels: &'a [(&'static str, String)],
) -> Vec<(Cow<'static, str>, Cow<'a, str>)> {
    labels
        .iter()
        .map(|(k, v)| (tag_key(k), tag_value(v)))
        .collect()
}

/// Metric name after the prefix: the family name without `netagent_`
/// (the prefix takes its place), e.g. `netagent_connect` -> `connect`.
pub(super) fn metric_key(family: &str) -> Cow<'_, str> {
    sanitize_name(family.strip_prefix(FAMILY_PREFIX).unwrap_or(family))
}

/// Metric names keep ASCII letters, digits, `_` and `.`; anything else
/// (`:` and `|` would end the name early) becomes `_`.
pub(super) fn sanitize_name(name: &str) -> Cow<'_, str> {
    replace_chars(name, |c| {
        !(c.is_ascii_alphanumeric() || c == '_' || c == '.')
    })
}

/// Tag values must not contain `,` (tag separator), `|` (field separator),
/// `#` or a newline (line separator): each becomes `_`. `:` is allowed in a
/// value (IPv6 addresses) since a tag splits at its first `:`.
pub(super) fn tag_value(value: &str) -> Cow<'_, str> {
    replace_chars(value, |c| matches!(c, ',' | '|' | '#' | '\n' | '\r'))
}

/// Tag keys: as values, and without `:`, which would end the key.
fn tag_key(key: &'static str) -> Cow<'static, str> {
    replace_chars(key, |c| matches!(c, ',' | '|' | '#' | '\n' | '\r' | ':'))
}

/// `s` with every char matching `bad` replaced by `_`; borrowed when
/// nothing matches (the common case).
fn replace_chars(s: &str, bad: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&bad) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().map(|c| if bad(c) { '_' } else { c }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_prefix_dot_base() {
        assert_eq!(metric_key("netagent_connect"), "connect");
        assert_eq!(metric_key("process_cpu_seconds"), "process_cpu_seconds");
        assert_eq!(metric_key("netagent_a:b|c"), "a_b_c");
        assert!(matches!(metric_key("netagent_connect"), Cow::Borrowed(_)));
        assert_eq!(sanitize_name("net agent"), "net_agent");
    }

    #[test]
    fn tag_values_are_escaped() {
        assert_eq!(tag_value("a,b|c#d\ne\rf"), "a_b_c_d_e_f");
        assert_eq!(tag_value("::1"), "::1");
        assert_eq!(tag_value(""), "");
        assert!(matches!(tag_value("nginx"), Cow::Borrowed(_)));
        assert_eq!(tag_key("a:b"), "a_b");
        // Multi-byte characters survive untouched.
        assert_eq!(tag_value("naïve,x"), "naïve_x");
    }
}
