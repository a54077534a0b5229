//! OTLP export of spans (one per request/response, trace id derived from
//! the flow) and of every metric family, over gRPC or HTTP/protobuf.
//!
//! Built on the generated OTLP protobuf types (`opentelemetry-proto`) with
//! tonic and reqwest as transports rather than on the OpenTelemetry SDK:
//! spans carry kernel timestamps and flow-derived trace ids, which the
//! SDK's tracer does not let a caller set.
//!
//! The span path never blocks event processing: spans go through a
//! per-second cap and a bounded queue; what does not fit is dropped and
//! counted. A failing collector is retried with exponential backoff.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::sync::mpsc;

use crate::metrics::catalog;
use crate::metrics::{Family, Kind, Value};
use crate::model::spans::{FlowSpan, SpanSide};

pub use crate::config::otel::{OtelConfig, Protocol, Temporality};

// ---------------------------------------------------------------- transport

/// Where exports go: a gRPC channel or an HTTP client.
#[derive(Clone)]
pub enum Transport {
    Grpc {
        channel: tonic::transport::Channel,
        headers: tonic::metadata::MetadataMap,
    },
    Http {
        client: reqwest::Client,
        base: String,
        headers: reqwest::header::HeaderMap,
    },
}

impl Transport {
    /// Builds the transport; connects lazily, so an absent collector is
    /// not an error here.
    pub fn new(cfg: &OtelConfig) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs_f64(cfg.export_timeout_seconds.max(0.1));
        let ca = if cfg.ca_file.is_empty() {
            None
        } else {
            Some(
                std::fs::read(&cfg.ca_file)
                    .with_context(|| format!("otel.ca_file {}", cfg.ca_file))?,
            )
        };
        let endpoint = normalise_endpoint(&cfg.endpoint, cfg.insecure);
        match cfg.protocol {
            Protocol::Grpc => {
                let mut ep = tonic::transport::Endpoint::from_shared(endpoint.clone())
                    .with_context(|| format!("otel.endpoint {endpoint:?}"))?
                    .timeout(timeout)
                    .connect_timeout(timeout);
                if !cfg.insecure {
                    let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
                    if let Some(pem) = &ca {
                        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
                    }
                    ep = ep.tls_config(tls).context("TLS for otel.endpoint")?;
                }
                let mut headers = tonic::metadata::MetadataMap::new();
                for (k, v) in &cfg.headers {
                    let key =
                        tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                            .with_context(|| format!("otel.headers key {k:?}"))?;
                    headers.insert(key, v.parse().with_context(|| format!("otel.headers.{k}"))?);
                }
                Ok(Transport::Grpc {
                    channel: ep.connect_lazy(),
                    headers,
                })
            }
            Protocol::HttpProtobuf => {
                let mut b = reqwest::Client::builder().timeout(timeout);
                if let Some(pem) = &ca {
                    b = b.add_root_certificate(
                        reqwest::Certificate::from_pem(pem).context("otel.ca_file")?,
                    );
                }
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in &cfg.headers {
                    headers.insert(
                        reqwest::header::HeaderName::from_bytes(k.as_bytes())
                            .with_context(|| format!("otel.headers key {k:?}"))?,
                        v.parse().with_context(|| format!("otel.headers.{k}"))?,
                    );
                }
                Ok(Transport::Http {
                    client: b.build().context("HTTP client")?,
                    base: endpoint.trim_end_matches('/').to_string(),
                    headers,
                })
            }
        }
    }

    pub async fn export_traces(&self, req: ExportTraceServiceRequest) -> anyhow::Result<()> {
        match self {
            Transport::Grpc { channel, headers } => {
                let r = with_headers(req, headers);
                grpc_result(TraceServiceClient::new(channel.clone()).export(r).await)
            }
            Transport::Http {
                client,
                base,
                headers,
            } => {
                post(
                    client,
                    &format!("{base}/v1/traces"),
                    headers,
                    req.encode_to_vec(),
                )
                .await
            }
        }
    }

    pub async fn export_metrics(&self, req: ExportMetricsServiceRequest) -> anyhow::Result<()> {
        match self {
            Transport::Grpc { channel, headers } => {
                let r = with_headers(req, headers);
                grpc_result(MetricsServiceClient::new(channel.clone()).export(r).await)
            }
            Transport::Http {
                client,
                base,
                headers,
            } => {
                post(
                    client,
                    &format!("{base}/v1/metrics"),
                    headers,
                    req.encode_to_vec(),
                )
                .await
            }
        }
    }
}

fn with_headers<T>(msg: T, headers: &tonic::metadata::MetadataMap) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    *r.metadata_mut() = headers.clone();
    r
}

fn grpc_result<T>(r: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<()> {
    r.map(|_| ())
        .map_err(|s| anyhow::anyhow!("gRPC {}: {}", s.code(), s.message()))
}

/// `host:port` gets a scheme from `insecure`.
fn normalise_endpoint(endpoint: &str, insecure: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else if insecure {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &reqwest::header::HeaderMap,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    let resp = client
        .post(url)
        .headers(headers.clone())
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    if !resp.status().is_success() {
        anyhow::bail!("POST {url}: HTTP {}", resp.status());
    }
    Ok(())
}

// ---------------------------------------------------------------- encoding

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
    let peer = sp.peer;
    // A span id unique per span: the flow plus the span's own start time.
    let mut span_id = (crate::model::spans::fnv1a_128(
        format!("{}|{}|{:?}", sp.flow_id(), sp.start_unix_nanos, sp.side).as_bytes(),
    ) as u64)
        .to_be_bytes();
    if span_id == [0; 8] {
        span_id[7] = 1; // all-zero ids are invalid in OTLP
    }
    let attributes = vec![
        kv("network.transport", s(sp.proto)),
        kv("network.peer.address", s(peer.ip().to_string())),
        kv("network.peer.port", i(peer.port() as i64)),
        kv("server.address", s(server.ip().to_string())),
        kv("server.port", i(server.port() as i64)),
        kv("client.address", s(client.ip().to_string())),
        kv("client.port", i(client.port() as i64)),
        kv("process.pid", i(sp.pid as i64)),
        kv("process.executable.name", s(sp.comm.clone())),
        kv("container.id", s(sp.container.clone())),
        kv("flow_id", s(sp.flow_id())),
        kv("socket_id", s(format!("{:016x}", sp.socket_id))),
        kv("process", s(sp.process.clone())),
        kv("proto", s(sp.proto)),
        kv("dport", i(server.port() as i64)),
        kv("dst_ip", s(server.ip().to_string())),
        kv("src_ip", s(client.ip().to_string())),
        kv("sport", i(client.port() as i64)),
    ];
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

pub fn trace_request(resource: &Resource, spans: &[FlowSpan]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans: spans.iter().map(encode_span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn now_nanos() -> u64 {
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
        }
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
        let start = if delta {
            self.last_push
        } else {
            self.start_nanos
        };
        let mut seen = HashMap::new();
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

// ---------------------------------------------------------------- span pipeline

/// Span export counters, shared with the agent's own metrics.
#[derive(Debug, Default)]
pub struct SpanStats {
    pub exported: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_rate_limit: AtomicU64,
    pub dropped_export_failed: AtomicU64,
    pub export_errors: AtomicU64,
    /// Ring-buffer records that did not decode.
    pub decode_errors: AtomicU64,
    /// Spans the DogStatsD buffer had no room for.
    pub dropped_statsd_buffer: AtomicU64,
    /// DogStatsD lines that could not be sent (set by the statsd exporter).
    pub statsd_errors: AtomicU64,
}

impl SpanStats {
    pub fn families(&self) -> Vec<Family> {
        let mut dropped = Family::new(&catalog::OTLP_SPANS_DROPPED);
        for (reason, n) in [
            ("queue_full", &self.dropped_queue_full),
            ("rate_limit", &self.dropped_rate_limit),
            ("export_failed", &self.dropped_export_failed),
            ("decode_error", &self.decode_errors),
            ("statsd_buffer_full", &self.dropped_statsd_buffer),
        ] {
            dropped.push(
                vec![("reason", reason.to_string())],
                Value::Counter(n.load(Ordering::Relaxed) as f64),
            );
        }
        let mut exported = Family::new(&catalog::OTLP_SPANS_EXPORTED);
        exported.push(
            Vec::new(),
            Value::Counter(self.exported.load(Ordering::Relaxed) as f64),
        );
        let mut errors = Family::new(&catalog::OTLP_EXPORT_ERRORS);
        errors.push(
            Vec::new(),
            Value::Counter(self.export_errors.load(Ordering::Relaxed) as f64),
        );
        let mut statsd = Family::new(&catalog::STATSD_SEND_ERRORS);
        statsd.push(
            Vec::new(),
            Value::Counter(self.statsd_errors.load(Ordering::Relaxed) as f64),
        );
        vec![dropped, exported, errors, statsd]
    }
}

/// The producer side, used by the span reader: non-blocking.
pub struct SpanSink {
    tx: mpsc::Sender<FlowSpan>,
    stats: Arc<SpanStats>,
    per_second: u32,
    window: Instant,
    in_window: u32,
}

impl SpanSink {
    /// Offers a span: dropped (and counted) when over the per-second cap or
    /// when the queue is full; never waits.
    pub fn offer(&mut self, span: FlowSpan) {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.in_window = 0;
        }
        if self.in_window >= self.per_second {
            self.stats
                .dropped_rate_limit
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.in_window += 1;
        if self.tx.try_send(span).is_err() {
            self.stats
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Retries of one batch before it is dropped (backoff from 0.5 s doubling
/// up to `retry_max_backoff_seconds`).
const MAX_ATTEMPTS: u32 = 8;

/// Starts the export task; returns the producer handle.
pub fn start_span_pipeline(
    cfg: &OtelConfig,
    transport: Transport,
    stats: Arc<SpanStats>,
) -> SpanSink {
    let (tx, mut rx) = mpsc::channel::<FlowSpan>(cfg.queue_size.max(1));
    let resource = resource(cfg);
    let batch_size = cfg.batch_size.max(1);
    let max_backoff = Duration::from_secs_f64(cfg.retry_max_backoff_seconds.clamp(0.1, 600.0));
    let task_stats = stats.clone();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(batch_size);
        loop {
            // Wait for the first span, then gather more for up to 200 ms.
            match rx.recv().await {
                Some(sp) => batch.push(sp),
                None => return,
            }
            let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
            while batch.len() < batch_size {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(sp)) => batch.push(sp),
                    _ => break,
                }
            }
            let req = trace_request(&resource, &batch);
            let mut backoff = Duration::from_millis(500);
            let mut attempt = 0;
            loop {
                attempt += 1;
                match transport.export_traces(req.clone()).await {
                    Ok(()) => {
                        task_stats
                            .exported
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => {
                        task_stats.export_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(error = %format!("{e:#}"), attempt, "span export failed");
                        if attempt >= MAX_ATTEMPTS {
                            tracing::warn!(error = %format!("{e:#}"), spans = batch.len(), "dropping spans after retries");
                            task_stats
                                .dropped_export_failed
                                .fetch_add(batch.len() as u64, Ordering::Relaxed);
                            break;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(max_backoff);
                    }
                }
            }
            batch.clear();
        }
    });
    SpanSink {
        tx,
        stats,
        per_second: cfg.max_spans_per_second,
        window: Instant::now(),
        in_window: 0,
    }
}

/// Sends one test span (for `netagent otlp-check`).
pub async fn check(cfg: &OtelConfig) -> anyhow::Result<()> {
    let transport = Transport::new(cfg)?;
    let now = now_nanos();
    let span = FlowSpan {
        start_unix_nanos: now.saturating_sub(1_000_000),
        end_unix_nanos: now,
        process: "netagent-otlp-check".into(),
        comm: "netagent".into(),
        pid: std::process::id(),
        container: String::new(),
        proto: "tcp",
        side: SpanSide::Client,
        local: "127.0.0.1:40000".parse().expect("literal"),
        peer: "127.0.0.1:4317".parse().expect("literal"),
        socket_id: 0,
    };
    transport
        .export_traces(trace_request(&resource(cfg), &[span]))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme() {
        assert_eq!(
            normalise_endpoint("collector:4317", true),
            "http://collector:4317"
        );
        assert_eq!(
            normalise_endpoint("collector:4317", false),
            "https://collector:4317"
        );
        assert_eq!(normalise_endpoint("http://x:1", false), "http://x:1");
    }

    #[test]
    fn config_parses_with_defaults_and_rejects_unknown_keys() {
        let c: OtelConfig = serde_saphyr::from_str(
            "endpoint: \"http://127.0.0.1:4318\"\nprotocol: http/protobuf\n",
        )
        .unwrap();
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert!(c.insecure && c.traces);
        assert!(serde_saphyr::from_str::<OtelConfig>("endpont: x\n").is_err());
    }
}
