//! What an OTLP receiver got, decoded from protobuf: spans, flattened
//! metric points, resource attributes, accepted and rejected requests.

use std::collections::BTreeMap;

/// What a receiver got, decoded from protobuf.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub spans: Vec<ReceivedSpan>,
    /// Metric data points, flattened (see [`ReceivedPoint`]).
    pub points: Vec<ReceivedPoint>,
    /// Resource attributes of the last accepted request (key -> string value;
    /// merged over that request's resources).
    pub resource: BTreeMap<String, String>,
    /// Number of export requests received and accepted.
    pub requests: usize,
    /// Requests the receiver rejected, with the reason: wrong path, content
    /// type or encoding, undecodable body, or data that breaks the OTLP
    /// rules (bad trace/span id length, duplicate attribute keys, missing
    /// values, unspecified temporality, inconsistent histogram buckets).
    /// A rejected request adds nothing to `spans`/`points`/`requests`.
    pub errors: Vec<String>,
}

impl Received {
    /// Spans with this name.
    pub fn spans_named(&self, name: &str) -> Vec<&ReceivedSpan> {
        self.spans.iter().filter(|s| s.name == name).collect()
    }

    /// Points of this metric, in arrival order.
    pub fn points_named(&self, metric: &str) -> Vec<&ReceivedPoint> {
        self.points.iter().filter(|p| p.metric == metric).collect()
    }

    /// The most recent point of `metric` whose attributes are exactly `attrs`
    /// (any order).
    pub fn last_point(&self, metric: &str, attrs: &[(&str, &str)]) -> Option<&ReceivedPoint> {
        let mut want: Vec<(String, String)> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        self.points
            .iter()
            .rev()
            .find(|p| p.metric == metric && p.attributes == want)
    }

    /// Value of [`Self::last_point`].
    pub fn last_value(&self, metric: &str, attrs: &[(&str, &str)]) -> Option<f64> {
        self.last_point(metric, attrs).map(|p| p.value)
    }
}

#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Empty for a root span, else 8 bytes.
    pub parent_span_id: Vec<u8>,
    pub name: String,
    /// Proto SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: BTreeMap<String, AttrValue>,
    /// Proto status code: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    /// Name of the instrumentation scope the span came under.
    pub scope: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Arrays, key-value lists, bytes, empty values: their debug form.
    Other(String),
}

impl AttrValue {
    /// The string form used for point and resource attributes.
    pub fn to_string_value(&self) -> String {
        match self {
            AttrValue::Str(s) | AttrValue::Other(s) => s.clone(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Double(d) => d.to_string(),
            AttrValue::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReceivedPoint {
    pub metric: String,
    /// Sorted (key, string value) pairs.
    pub attributes: Vec<(String, String)>,
    /// The value for sums and gauges; the count for histograms (and for
    /// exponential histograms and summaries).
    pub value: f64,
    /// "sum", "gauge", "histogram", "exponential_histogram" or "summary".
    pub kind: &'static str,
    pub monotonic: bool,
    /// Aggregation temporality is CUMULATIVE (false for gauges and DELTA).
    pub cumulative: bool,
    pub time_unix_nanos: u64,
    pub start_time_unix_nanos: u64,
    /// The metric's unit ("By", "s", "1", ...).
    pub unit: String,
    /// Bucket details for kind "histogram".
    pub histogram: Option<ReceivedHistogram>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedHistogram {
    pub count: u64,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub bucket_counts: Vec<u64>,
    pub explicit_bounds: Vec<f64>,
}
