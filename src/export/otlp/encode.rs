//! Spans and metric families in OTLP protobuf form
//! (`opentelemetry-proto` types), plus the resource and scope every
//! request carries.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};

use crate::config::otel::{OtelConfig, Temporality};
use crate::metrics::{Family, Kind, Value};
use crate::model::spans::{FlowSpan, SpanSide};

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: impl Into<String>) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn i(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

/// `service.name`, `service.version`, `host.name`.
pub fn resource(cfg: &OtelConfig) -> Resource {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    Resource {
        attributes: vec![
            kv("service.name", s(cfg.service_name.clone())),
            kv("service.version", s(env!("CARGO_PKG_VERSION"))),
            kv("host.name", s(host)),
            kv("telemetry.sdk.name", s("netagent")),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "netagent".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// One span in OTLP form: semantic-convention attributes plus the short
/// names the older agent used.
pub fn encode_span(sp: &FlowSpan) -> Span {
    let (client, server) = (sp.client(), sp.server());
    // The address the packets really go to (OTel's network.peer); the
    // server's address stays the one dialled (a Service's ClusterIP).
    let peer = match sp.side {
        SpanSide::Client => sp.actual_peer.unwrap_or(sp.peer),
        SpanSide::Server => sp.peer,
    };
    // A span id unique per span: the flow plus the span's own start time.
    let mut span_id = (crate::model::spans::fnv1a_128(
        format!("{}|{}|{:?}", sp.flow_id(), sp.start_unix_nanos, sp.side).as_bytes(),
    ) as u64)
        .to_be_bytes();
    if span_id == [0; 8] {
        span_id[7] = 1; // all-zero ids are invalid in OTLP
    }
    // OTel's server.address is the server's name when the client knows
    // it (the name it resolved), its address otherwise.
    let server_address = match (sp.side, sp.dst_name.is_empty()) {
        (SpanSide::Client, false) => sp.dst_name.clone(),
        _ => server.ip().to_string(),
    };
    let mut attributes = vec![
        kv("network.transport", s(sp.proto)),
        kv("network.peer.address", s(peer.ip().to_string())),
        kv("network.peer.port", i(peer.port() as i64)),
        kv("server.address", s(server_address)),
        kv("server.port", i(server.port() as i64)),
        kv("client.address", s(client.ip().to_string())),
        kv("client.port", i(client.port() as i64)),
        kv("process.pid", i(sp.pid as i64)),
        kv("process.executable.name", s(sp.comm.clone())),
        kv("container.id", s(sp.container.id.clone())),
        kv("flow_id", s(sp.flow_id())),
        kv("socket_id", s(format!("{:016x}", sp.socket_id))),
        kv("process", s(sp.process.clone())),
        kv("proto", s(sp.proto)),
        kv("dport", i(server.port() as i64)),
        kv("dst_ip", s(server.ip().to_string())),
        kv("src_ip", s(client.ip().to_string())),
        kv("sport", i(client.port() as i64)),
    ];
    if !sp.dst_name.is_empty() {
        attributes.push(kv("dst_name", s(sp.dst_name.clone())));
    }
    if let (SpanSide::Client, Some(actual)) = (sp.side, sp.actual_peer) {
        attributes.push(kv("actual_dst_ip", s(actual.ip().to_string())));
        attributes.push(kv("actual_dport", i(actual.port() as i64)));
    }
    // The container's names, when it has them (also on the resource).
    for (k, v) in [
        ("container.name", sp.container.name.clone()),
        ("k8s.pod.name", sp.container.pod.clone()),
        ("k8s.namespace.name", sp.container.namespace.clone()),
        ("k8s.container.name", k8s_container(sp)),
    ] {
        if !v.is_empty() {
            attributes.push(kv(k, s(v)));
        }
    }
    Span {
        trace_id: sp.trace_id().to_vec(),
        span_id: span_id.to_vec(),
        name: sp.name(),
        kind: match sp.side {
            SpanSide::Client => SpanKind::Client as i32,
            SpanSide::Server => SpanKind::Server as i32,
        },
        start_time_unix_nano: sp.start_unix_nanos,
        end_time_unix_nano: sp.end_unix_nanos,
        attributes,
        ..Default::default()
    }
}

/// The Kubernetes container name: the container's name inside a pod,
/// empty outside Kubernetes.
fn k8s_container(sp: &FlowSpan) -> String {
    if sp.container.pod.is_empty() {
        String::new()
    } else {
        sp.container.name.clone()
    }
}

/// The agent's resource plus, for spans of a container, the container's
/// resource attributes (`container.id`, `container.name`,
/// `container.image.name`, `container.runtime`, and in Kubernetes
/// `k8s.pod.name`, `k8s.namespace.name`, `k8s.container.name`).
fn container_resource(base: &Resource, sp: &FlowSpan) -> Resource {
    let c = &sp.container;
    let mut r = base.clone();
    if c.id.is_empty() {
        return r;
    }
    for (k, v) in [
        ("container.id", c.id.clone()),
        ("container.name", c.name.clone()),
        ("container.image.name", c.image.clone()),
        ("container.runtime", c.runtime.to_string()),
        ("k8s.pod.name", c.pod.clone()),
        ("k8s.namespace.name", c.namespace.clone()),
        ("k8s.container.name", k8s_container(sp)),
    ] {
        if !v.is_empty() {
            r.attributes.push(kv(k, s(v)));
        }
    }
    r
}

/// One `ResourceSpans` per container (host processes share the agent's
/// resource), in the order their first span came.
pub fn trace_request(resource: &Resource, spans: &[FlowSpan]) -> ExportTraceServiceRequest {
    let mut groups: Vec<(&FlowSpan, Vec<Span>)> = Vec::new();
    for sp in spans {
        match groups
            .iter_mut()
            .find(|(first, _)| first.container == sp.container)
        {
            Some((_, list)) => list.push(encode_span(sp)),
            None => groups.push((sp, vec![encode_span(sp)])),
        }
    }
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(first, spans)| ResourceSpans {
                resource: Some(container_resource(resource, first)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

pub(super) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Turns families into OTLP metrics with the Prometheus exposition names
/// (`_total` on counters). Delta temporality subtracts the previous push.
pub struct MetricEncoder {
    temporality: Temporality,
    start_nanos: u64,
    last_push: u64,
    /// Per series: last scalar value, histogram buckets and sum.
    previous: HashMap<SeriesKey, (f64, Vec<u64>, f64)>,
    /// Cumulative start per series: the agent's start for those of the
    /// first push, the push before the one a later series first came in
    /// (an expired series that comes back starts from zero then).
    starts: HashMap<SeriesKey, u64>,
    pushed: bool,
}

/// Metric name and labels of one series.
type SeriesKey = (String, Vec<(&'static str, String)>);

impl MetricEncoder {
    pub fn new(temporality: Temporality) -> Self {
        let now = now_nanos();
        Self {
            temporality,
            start_nanos: now,
            last_push: now,
            previous: HashMap::new(),
            starts: HashMap::new(),
            pushed: false,
        }
    }

    /// Where a series' sum starts: the last push for delta temporality;
    /// for cumulative, from when it (re)appeared.
    fn start_of(&self, key: &SeriesKey, delta: bool, seen: &mut HashMap<SeriesKey, u64>) -> u64 {
        let start = if delta {
            self.last_push
        } else if let Some(&s) = self.starts.get(key) {
            s
        } else if self.pushed {
            self.last_push
        } else {
            self.start_nanos
        };
        seen.insert(key.clone(), start);
        start
    }

    pub fn request(
        &mut self,
        resource: &Resource,
        families: &[Family],
    ) -> ExportMetricsServiceRequest {
        let now = now_nanos();
        let delta = self.temporality == Temporality::Delta;
        let temporality = if delta {
            pm::AggregationTemporality::Delta
        } else {
            pm::AggregationTemporality::Cumulative
        } as i32;
        let mut seen = HashMap::new();
        let mut starts = HashMap::new();
        let mut metrics = Vec::new();
        for f in families {
            let name = match f.kind {
                Kind::Counter => format!("{}_total", f.name),
                _ => f.name.to_string(),
            };
            let attrs = |labels: &[(&'static str, String)]| {
                labels
                    .iter()
                    .map(|(k, v)| kv(k, s(v.clone())))
                    .collect::<Vec<_>>()
            };
            let data = match f.kind {
                Kind::Gauge => pm::metric::Data::Gauge(pm::Gauge {
                    data_points: f
                        .series
                        .iter()
                        .map(|se| pm::NumberDataPoint {
                            attributes: attrs(&se.labels),
                            time_unix_nano: now,
                            value: Some(pm::number_data_point::Value::AsDouble(scalar(&se.value))),
                            ..Default::default()
                        })
                        .collect(),
                }),
                Kind::Counter => pm::metric::Data::Sum(pm::Sum {
                    aggregation_temporality: temporality,
                    is_monotonic: true,
                    data_points: f
                        .series
                        .iter()
                        .map(|se| {
                            let v = scalar(&se.value);
                            let key = (name.clone(), se.labels.clone());
                            let start = self.start_of(&key, delta, &mut starts);
                            let prev = self.previous.get(&key).map(|p| p.0).unwrap_or(0.0);
                            seen.insert(key, (v, Vec::new(), 0.0));
                            pm::NumberDataPoint {
                                attributes: attrs(&se.labels),
                                start_time_unix_nano: start,
                                time_unix_nano: now,
                                value: Some(pm::number_data_point::Value::AsDouble(if delta {
                                    (v - prev).max(0.0)
                                } else {
                                    v
                                })),
                                ..Default::default()
                            }
                        })
                        .collect(),
                }),
                Kind::Histogram => pm::metric::Data::Histogram(pm::Histogram {
                    aggregation_temporality: temporality,
                    data_points: f
                        .series
                        .iter()
                        .filter_map(|se| {
                            let Value::Histogram(h) = &se.value else {
                                return None;
                            };
                            let key = (name.clone(), se.labels.clone());
                            let start = self.start_of(&key, delta, &mut starts);
                            let (_, pb, ps) = self.previous.get(&key).cloned().unwrap_or((
                                0.0,
                                vec![0; h.buckets.len()],
                                0.0,
                            ));
                            seen.insert(key, (0.0, h.buckets.clone(), h.sum));
                            let buckets: Vec<u64> = if delta {
                                h.buckets
                                    .iter()
                                    .zip(pb.iter().chain(std::iter::repeat(&0)))
                                    .map(|(a, b)| a.saturating_sub(*b))
                                    .collect()
                            } else {
                                h.buckets.clone()
                            };
                            let sum = if delta { h.sum - ps } else { h.sum };
                            Some(pm::HistogramDataPoint {
                                attributes: attrs(&se.labels),
                                start_time_unix_nano: start,
                                time_unix_nano: now,
                                count: buckets.iter().sum(),
                                sum: Some(sum),
                                bucket_counts: buckets,
                                explicit_bounds: h.bounds.to_vec(),
                                ..Default::default()
                            })
                        })
                        .collect(),
                }),
            };
            metrics.push(pm::Metric {
                name,
                description: f.help.to_string(),
                data: Some(data),
                ..Default::default()
            });
        }
        self.previous = seen;
        // Series absent from this push are forgotten: back, they start anew.
        self.starts = starts;
        self.pushed = true;
        self.last_push = now;
        ExportMetricsServiceRequest {
            resource_metrics: vec![pm::ResourceMetrics {
                resource: Some(resource.clone()),
                scope_metrics: vec![pm::ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

fn scalar(v: &Value) -> f64 {
    match v {
        Value::Counter(x) | Value::Gauge(x) => *x,
        Value::Histogram(h) => h.count() as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn span(container: Arc<crate::model::spans::Container>) -> FlowSpan {
        FlowSpan {
            start_unix_nanos: 1,
            end_unix_nanos: 2,
            process: "api".into(),
            comm: "api".into(),
            pid: 7,
            container,
            proto: "tcp",
            side: SpanSide::Client,
            local: "10.0.0.1:40000".parse().unwrap(),
            peer: "10.0.0.2:80".parse().unwrap(),
            actual_peer: None,
            socket_id: 1,
            dst_name: String::new(),
        }
    }

    fn attrs(kvs: &[KeyValue]) -> Vec<(String, String)> {
        kvs.iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    Some(any_value::Value::IntValue(i)) => i.to_string(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    #[test]
    fn spans_of_a_pod_carry_its_names_and_come_in_its_resource() {
        let pod = Arc::new(crate::model::spans::Container {
            id: "ab".repeat(32),
            name: "api".into(),
            pod: "api-7d9f".into(),
            namespace: "shop".into(),
            image: "registry.local/shop/api:1".into(),
            runtime: "containerd",
        });
        let spans = [span(pod.clone()), span(Arc::default()), span(pod)];
        let base = Resource {
            attributes: vec![kv("service.name", s("netagent"))],
            ..Default::default()
        };
        let req = trace_request(&base, &spans);
        assert_eq!(req.resource_spans.len(), 2, "the pod's and the host's");
        let pod_rs = &req.resource_spans[0];
        assert_eq!(pod_rs.scope_spans[0].spans.len(), 2);
        let r = attrs(&pod_rs.resource.as_ref().unwrap().attributes);
        for (k, v) in [
            ("service.name", "netagent"),
            ("container.id", "ab".repeat(32).as_str()),
            ("container.name", "api"),
            ("container.image.name", "registry.local/shop/api:1"),
            ("container.runtime", "containerd"),
            ("k8s.pod.name", "api-7d9f"),
            ("k8s.namespace.name", "shop"),
            ("k8s.container.name", "api"),
        ] {
            assert!(r.contains(&(k.to_string(), v.to_string())), "{k}: {r:?}");
        }
        let span_attrs = attrs(&pod_rs.scope_spans[0].spans[0].attributes);
        assert!(span_attrs.contains(&("k8s.pod.name".into(), "api-7d9f".into())));
        assert!(span_attrs.contains(&("container.name".into(), "api".into())));
        // The host's spans: the agent's resource as it is, no k8s names.
        let host = &req.resource_spans[1];
        assert_eq!(host.resource.as_ref().unwrap(), &base);
        let host_attrs = attrs(&host.scope_spans[0].spans[0].attributes);
        assert!(host_attrs.iter().all(|(k, _)| !k.starts_with("k8s.")));
        assert!(host_attrs.contains(&("container.id".into(), String::new())));
    }

    #[test]
    fn a_resolved_server_is_named_in_client_spans_only() {
        let mut sp = span(Arc::default());
        let a = attrs(&encode_span(&sp).attributes);
        assert!(a.contains(&("server.address".into(), "10.0.0.2".into())));
        assert!(a.iter().all(|(k, _)| k != "dst_name"));
        sp.dst_name = "api.shop.test".into();
        let a = attrs(&encode_span(&sp).attributes);
        assert!(a.contains(&("server.address".into(), "api.shop.test".into())));
        assert!(a.contains(&("dst_name".into(), "api.shop.test".into())));
        assert!(a.contains(&("dst_ip".into(), "10.0.0.2".into())));
        assert!(a.contains(&("network.peer.address".into(), "10.0.0.2".into())));
    }

    /// Counter starts by series of a cumulative push: name → (labels' value, start, value).
    fn sum_starts(req: &ExportMetricsServiceRequest) -> Vec<(String, u64, f64)> {
        let mut out = Vec::new();
        for m in &req.resource_metrics[0].scope_metrics[0].metrics {
            if let Some(pm::metric::Data::Sum(sum)) = &m.data {
                for p in &sum.data_points {
                    let v = match p.value {
                        Some(pm::number_data_point::Value::AsDouble(v)) => v,
                        _ => f64::NAN,
                    };
                    let label = attrs(&p.attributes)[0].1.clone();
                    out.push((label, p.start_time_unix_nano, v));
                }
            }
        }
        out
    }

    #[test]
    fn a_cumulative_series_that_comes_back_starts_anew() {
        let counters = |series: &[(&str, f64)]| {
            let mut f = Family::ad_hoc("m", "h", Kind::Counter);
            for (l, v) in series {
                f.push(vec![("process", l.to_string())], Value::Counter(*v));
            }
            vec![f]
        };
        let mut enc = MetricEncoder::new(Temporality::Cumulative);
        let res = Resource::default();
        let first = sum_starts(&enc.request(&res, &counters(&[("a", 5.0), ("b", 1.0)])));
        let agent_start = first[0].1;
        assert!(first.iter().all(|(_, s, _)| *s == agent_start), "{first:?}");
        // "a" expired: absent from the second push.
        let second = sum_starts(&enc.request(&res, &counters(&[("b", 2.0)])));
        assert_eq!(second, vec![("b".to_string(), agent_start, 2.0)]);
        let gone_at = enc.last_push;
        std::thread::sleep(std::time::Duration::from_millis(2));
        let third = sum_starts(&enc.request(&res, &counters(&[("a", 3.0), ("b", 2.0)])));
        assert_eq!(
            third,
            vec![
                ("a".to_string(), gone_at, 3.0),
                ("b".to_string(), agent_start, 2.0)
            ]
        );
        assert!(gone_at > agent_start);
    }
}
