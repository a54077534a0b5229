//! Decoding OTLP export requests into [`Received`], with the OTLP rules
//! checked (id lengths, unique attribute keys, temporality, histogram
//! buckets); a request that breaks one is recorded as an error and adds
//! nothing.

use super::received::{AttrValue, Received, ReceivedHistogram, ReceivedPoint, ReceivedSpan};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, NumberDataPoint};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// `AggregationTemporality::Cumulative` / `Delta` in the OTLP proto.
const CUMULATIVE: i32 = 2;
const DELTA: i32 = 1;

pub(super) fn lock(state: &Mutex<Received>) -> MutexGuard<'_, Received> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn reject(state: &Mutex<Received>, why: String) -> String {
    lock(state).errors.push(why.clone());
    why
}

fn attr_value(v: Option<&AnyValue>) -> AttrValue {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s.clone()),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
        Some(other) => AttrValue::Other(format!("{other:?}")),
        None => AttrValue::Other("<empty>".into()),
    }
}

/// Attributes as a map; OTLP requires unique keys.
fn attr_map(kvs: &[KeyValue], what: &str) -> Result<BTreeMap<String, AttrValue>, String> {
    let mut m = BTreeMap::new();
    for kv in kvs {
        if kv.key.is_empty() {
            return Err(format!("{what}: attribute with an empty key"));
        }
        if m.insert(kv.key.clone(), attr_value(kv.value.as_ref()))
            .is_some()
        {
            return Err(format!("{what}: duplicate attribute key {:?}", kv.key));
        }
    }
    Ok(m)
}

fn attr_pairs(kvs: &[KeyValue], what: &str) -> Result<Vec<(String, String)>, String> {
    Ok(attr_map(kvs, what)?
        .into_iter()
        .map(|(k, v)| (k, v.to_string_value()))
        .collect())
}

fn resource_attrs(
    into: &mut BTreeMap<String, String>,
    resource: Option<&Resource>,
) -> Result<(), String> {
    if let Some(r) = resource {
        for (k, v) in attr_map(&r.attributes, "resource")? {
            into.insert(k, v.to_string_value());
        }
    }
    Ok(())
}

fn decode_span(s: &Span, scope: &str) -> Result<ReceivedSpan, String> {
    let what = format!("span {:?}", s.name);
    let trace_id: [u8; 16] = s
        .trace_id
        .as_slice()
        .try_into()
        .map_err(|_| format!("{what}: trace_id has {} bytes, want 16", s.trace_id.len()))?;
    let span_id: [u8; 8] = s
        .span_id
        .as_slice()
        .try_into()
        .map_err(|_| format!("{what}: span_id has {} bytes, want 8", s.span_id.len()))?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return Err(format!("{what}: all-zero trace_id or span_id"));
    }
    if !s.parent_span_id.is_empty() && s.parent_span_id.len() != 8 {
        return Err(format!(
            "{what}: parent_span_id has {} bytes, want 0 or 8",
            s.parent_span_id.len()
        ));
    }
    Ok(ReceivedSpan {
        trace_id,
        span_id,
        parent_span_id: s.parent_span_id.clone(),
        name: s.name.clone(),
        kind: s.kind,
        start_unix_nanos: s.start_time_unix_nano,
        end_unix_nanos: s.end_time_unix_nano,
        attributes: attr_map(&s.attributes, &what)?,
        status_code: s.status.as_ref().map_or(0, |st| st.code),
        scope: scope.to_string(),
    })
}

pub(super) fn ingest_traces(
    state: &Mutex<Received>,
    req: &ExportTraceServiceRequest,
) -> Result<(), String> {
    let mut spans = Vec::new();
    let mut resource = BTreeMap::new();
    for rs in &req.resource_spans {
        resource_attrs(&mut resource, rs.resource.as_ref()).map_err(|e| reject(state, e))?;
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map_or("", |s| s.name.as_str());
            for s in &ss.spans {
                spans.push(decode_span(s, scope).map_err(|e| reject(state, e))?);
            }
        }
    }
    let mut r = lock(state);
    r.spans.extend(spans);
    if !req.resource_spans.is_empty() {
        r.resource = resource;
    }
    r.requests += 1;
    Ok(())
}

fn temporality(t: i32, what: &str) -> Result<bool, String> {
    match t {
        CUMULATIVE => Ok(true),
        DELTA => Ok(false),
        other => Err(format!("{what}: aggregation temporality {other}")),
    }
}

fn number_point(
    m: &opentelemetry_proto::tonic::metrics::v1::Metric,
    p: &NumberDataPoint,
    kind: &'static str,
    monotonic: bool,
    cumulative: bool,
) -> Result<ReceivedPoint, String> {
    let what = format!("metric {:?}", m.name);
    let value = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => return Err(format!("{what}: data point without a value")),
    };
    Ok(ReceivedPoint {
        metric: m.name.clone(),
        attributes: attr_pairs(&p.attributes, &what)?,
        value,
        kind,
        monotonic,
        cumulative,
        time_unix_nanos: p.time_unix_nano,
        start_time_unix_nanos: p.start_time_unix_nano,
        unit: m.unit.clone(),
        histogram: None,
    })
}

fn decode_metric(
    m: &opentelemetry_proto::tonic::metrics::v1::Metric,
    out: &mut Vec<ReceivedPoint>,
) -> Result<(), String> {
    let what = format!("metric {:?}", m.name);
    if m.name.is_empty() {
        return Err("metric with an empty name".into());
    }
    let point = |attributes: &[KeyValue], time, start, value, kind, cumulative| {
        Ok::<_, String>(ReceivedPoint {
            metric: m.name.clone(),
            attributes: attr_pairs(attributes, &what)?,
            value,
            kind,
            monotonic: false,
            cumulative,
            time_unix_nanos: time,
            start_time_unix_nanos: start,
            unit: m.unit.clone(),
            histogram: None,
        })
    };
    match &m.data {
        None => return Err(format!("{what}: no data")),
        Some(metric::Data::Gauge(g)) => {
            for p in &g.data_points {
                out.push(number_point(m, p, "gauge", false, false)?);
            }
        }
        Some(metric::Data::Sum(s)) => {
            let cumulative = temporality(s.aggregation_temporality, &what)?;
            for p in &s.data_points {
                out.push(number_point(m, p, "sum", s.is_monotonic, cumulative)?);
            }
        }
        Some(metric::Data::Histogram(h)) => {
            let cumulative = temporality(h.aggregation_temporality, &what)?;
            for p in &h.data_points {
                if !p.bucket_counts.is_empty() {
                    if p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
                        return Err(format!(
                            "{what}: {} bucket counts for {} bounds",
                            p.bucket_counts.len(),
                            p.explicit_bounds.len()
                        ));
                    }
                    let total: u64 = p.bucket_counts.iter().sum();
                    if total != p.count {
                        return Err(format!(
                            "{what}: bucket counts add up to {total}, count is {}",
                            p.count
                        ));
                    }
                }
                if p.explicit_bounds.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(format!(
                        "{what}: bounds not strictly increasing: {:?}",
                        p.explicit_bounds
                    ));
                }
                let mut rp = point(
                    &p.attributes,
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    p.count as f64,
                    "histogram",
                    cumulative,
                )?;
                rp.histogram = Some(ReceivedHistogram {
                    count: p.count,
                    sum: p.sum,
                    min: p.min,
                    max: p.max,
                    bucket_counts: p.bucket_counts.clone(),
                    explicit_bounds: p.explicit_bounds.clone(),
                });
                out.push(rp);
            }
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            let cumulative = temporality(h.aggregation_temporality, &what)?;
            for p in &h.data_points {
                out.push(point(
                    &p.attributes,
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    p.count as f64,
                    "exponential_histogram",
                    cumulative,
                )?);
            }
        }
        Some(metric::Data::Summary(s)) => {
            for p in &s.data_points {
                out.push(point(
                    &p.attributes,
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    p.count as f64,
                    "summary",
                    true,
                )?);
            }
        }
    }
    Ok(())
}

pub(super) fn ingest_metrics(
    state: &Mutex<Received>,
    req: &ExportMetricsServiceRequest,
) -> Result<(), String> {
    let mut points = Vec::new();
    let mut resource = BTreeMap::new();
    for rm in &req.resource_metrics {
        resource_attrs(&mut resource, rm.resource.as_ref()).map_err(|e| reject(state, e))?;
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                decode_metric(m, &mut points).map_err(|e| reject(state, e))?;
            }
        }
    }
    let mut r = lock(state);
    r.points.extend(points);
    if !req.resource_metrics.is_empty() {
        r.resource = resource;
    }
    r.requests += 1;
    Ok(())
}
