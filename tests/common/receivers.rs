//! Real receivers for what the agent exports: an OTLP collector stand-in
//! (gRPC via tonic's generated `TraceService`/`MetricsService` servers, or
//! HTTP/protobuf via axum) and a DogStatsD UDP listener. Tests assert on what
//! arrives here, decoded by an independent protobuf/statsd decoder, never on
//! the agent's own encoder.
//!
//! Everything is bounded: servers shut down within a few seconds of `stop()`
//! or drop, listener threads poll with short timeouts, and every wait takes a
//! deadline.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, NumberDataPoint};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// How long a stopping server may drain open connections before its
/// runtime is dropped (which closes every socket it still holds).
const DRAIN: Duration = Duration::from_secs(2);
/// Largest accepted request body / gRPC message.
const MAX_MESSAGE: usize = 64 << 20;
/// `AggregationTemporality::Cumulative` / `Delta` in the OTLP proto.
const CUMULATIVE: i32 = 2;
const DELTA: i32 = 1;

// ---------------------------------------------------------------------------
// What was received
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Decoding export requests into `Received`
// ---------------------------------------------------------------------------

fn lock(state: &Mutex<Received>) -> MutexGuard<'_, Received> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn reject(state: &Mutex<Received>, why: String) -> String {
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

fn ingest_traces(state: &Mutex<Received>, req: &ExportTraceServiceRequest) -> Result<(), String> {
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

fn ingest_metrics(
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

// ---------------------------------------------------------------------------
// gRPC: tonic's generated servers
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct GrpcSink(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        ingest_traces(&self.0, request.get_ref()).map_err(tonic::Status::invalid_argument)?;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        ingest_metrics(&self.0, request.get_ref()).map_err(tonic::Status::invalid_argument)?;
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn serve_grpc(
    listener: tokio::net::TcpListener,
    state: Arc<Mutex<Received>>,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    use tonic::codec::CompressionEncoding::Gzip;
    let sink = GrpcSink(state);
    let traces = TraceServiceServer::new(sink.clone())
        .accept_compressed(Gzip)
        .max_decoding_message_size(MAX_MESSAGE);
    let metrics = MetricsServiceServer::new(sink)
        .accept_compressed(Gzip)
        .max_decoding_message_size(MAX_MESSAGE);
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let res = tonic::transport::Server::builder()
        .add_service(traces)
        .add_service(metrics)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = shutdown.await;
        })
        .await;
    if let Err(e) = res {
        eprintln!("[otlp-grpc receiver] server error: {e}");
    }
}

// ---------------------------------------------------------------------------
// HTTP/protobuf: axum
// ---------------------------------------------------------------------------

/// `google.rpc.Status`, the body OTLP/HTTP puts on 4xx/5xx answers.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

const PROTOBUF: &str = "application/x-protobuf";

fn proto_response(status: u16, body: Vec<u8>) -> axum::response::Response {
    axum::response::Response::builder()
        .status(status)
        .header("content-type", PROTOBUF)
        .body(axum::body::Body::from(body))
        .unwrap()
}

fn error_response(state: &Mutex<Received>, status: u16, why: String) -> axum::response::Response {
    let why = reject(state, why);
    // gRPC code 3 = INVALID_ARGUMENT.
    let body = RpcStatus {
        code: 3,
        message: why,
    }
    .encode_to_vec();
    proto_response(status, body)
}

/// Checks content type and encoding and returns the decompressed body, or
/// the (status, reason) to answer with.
fn http_body(
    path: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<Vec<u8>, (u16, String)> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<non-ascii>").to_string())
    };
    let ctype = header("content-type").unwrap_or_default();
    let essence = ctype.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(PROTOBUF) {
        return Err((
            415,
            format!("POST {path}: content-type {ctype:?}, want {PROTOBUF}"),
        ));
    }
    match header("content-encoding").as_deref().map(str::trim) {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(MAX_MESSAGE as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| (400, format!("POST {path}: bad gzip: {e}")))?;
            if out.len() > MAX_MESSAGE {
                return Err((413, format!("POST {path}: body over {MAX_MESSAGE} bytes")));
            }
            Ok(out)
        }
        Some(other) => Err((
            415,
            format!("POST {path}: unsupported content-encoding {other:?}"),
        )),
    }
}

async fn http_traces(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<Received>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let body = match http_body("/v1/traces", &headers, &body) {
        Ok(b) => b,
        Err((status, why)) => return error_response(&state, status, why),
    };
    let req = match ExportTraceServiceRequest::decode(body.as_slice()) {
        Ok(r) => r,
        Err(e) => {
            return error_response(&state, 400, format!("POST /v1/traces: bad protobuf: {e}"))
        }
    };
    match ingest_traces(&state, &req) {
        Ok(()) => proto_response(200, ExportTraceServiceResponse::default().encode_to_vec()),
        // Already recorded by ingest_traces.
        Err(why) => proto_response(
            400,
            RpcStatus {
                code: 3,
                message: why,
            }
            .encode_to_vec(),
        ),
    }
}

async fn http_metrics(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<Received>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let body = match http_body("/v1/metrics", &headers, &body) {
        Ok(b) => b,
        Err((status, why)) => return error_response(&state, status, why),
    };
    let req = match ExportMetricsServiceRequest::decode(body.as_slice()) {
        Ok(r) => r,
        Err(e) => {
            return error_response(&state, 400, format!("POST /v1/metrics: bad protobuf: {e}"))
        }
    };
    match ingest_metrics(&state, &req) {
        Ok(()) => proto_response(200, ExportMetricsServiceResponse::default().encode_to_vec()),
        Err(why) => proto_response(
            400,
            RpcStatus {
                code: 3,
                message: why,
            }
            .encode_to_vec(),
        ),
    }
}

async fn http_unexpected(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<Received>>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    error_response(&state, 404, format!("unexpected request {method} {uri}"))
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    state: Arc<Mutex<Received>>,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    use axum::routing::post;
    let app = axum::Router::new()
        .route("/v1/traces", post(http_traces))
        .route("/v1/metrics", post(http_metrics))
        .fallback(http_unexpected)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_MESSAGE))
        .with_state(state);
    let res = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = shutdown.await;
        })
        .await;
    if let Err(e) = res {
        eprintln!("[otlp-http receiver] server error: {e}");
    }
}

// ---------------------------------------------------------------------------
// OtlpReceiver
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Grpc,
    Http,
}

/// A server running on its own single-threaded tokio runtime in a thread.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn start(proto: Protocol, listener: StdTcpListener, state: Arc<Mutex<Received>>) -> Running {
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("otlp-rx-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let (down_tx, down_rx) = tokio::sync::oneshot::channel();
                    let server = match proto {
                        Protocol::Grpc => tokio::spawn(serve_grpc(listener, state, down_rx)),
                        Protocol::Http => tokio::spawn(serve_http(listener, state, down_rx)),
                    };
                    // Stop asked for, or the handle dropped without asking.
                    let _ = stop_rx.await;
                    let _ = down_tx.send(());
                    // Graceful drain, bounded; what is left is dropped with
                    // the runtime below, closing its sockets.
                    let _ = tokio::time::timeout(DRAIN, server).await;
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("spawn receiver thread");
        Running {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                eprintln!("[otlp receiver] server thread panicked");
            }
        }
    }
}

/// Binds 127.0.0.1:`port` (0 = any free port), retrying for a few seconds
/// while the port is still held (e.g. by the previous server's last sockets).
fn bind_tcp(port: u16) -> StdTcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match StdTcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline && e.kind() == std::io::ErrorKind::AddrInUse => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("bind 127.0.0.1:{port}: {e}"),
        }
    }
}

/// An OTLP receiver on 127.0.0.1: gRPC (TraceService + MetricsService) or
/// HTTP (POST /v1/traces and /v1/metrics with application/x-protobuf bodies,
/// optionally gzip-encoded; answered with the protobuf Export*ServiceResponse).
/// Runs on its own tokio runtime in a background thread so blocking tests can
/// use it. `stop()` frees the port; `restart()` binds the same port again.
pub struct OtlpReceiver {
    proto: Protocol,
    port: u16,
    state: Arc<Mutex<Received>>,
    running: Option<Running>,
}

impl OtlpReceiver {
    /// gRPC receiver on a free port.
    pub fn grpc() -> OtlpReceiver {
        Self::start(Protocol::Grpc)
    }

    /// HTTP/protobuf receiver on a free port.
    pub fn http() -> OtlpReceiver {
        Self::start(Protocol::Http)
    }

    fn start(proto: Protocol) -> OtlpReceiver {
        // Bind port 0 and keep the socket: no window for another process to
        // take the port between choosing and binding it.
        let listener = bind_tcp(0);
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Received::default()));
        let running = Running::start(proto, listener, state.clone());
        OtlpReceiver {
            proto,
            port,
            state,
            running: Some(running),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "http://127.0.0.1:PORT" — what the agent's otel.endpoint is set to.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Snapshot of everything received so far.
    pub fn received(&self) -> Received {
        lock(&self.state).clone()
    }

    /// Forgets everything received so far (counts and errors included).
    pub fn clear(&self) {
        *lock(&self.state) = Received::default();
    }

    /// Polls until `cond` holds or `timeout` passes; returns the last
    /// snapshot either way.
    pub fn wait_for(&self, timeout: Duration, cond: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.received();
            if cond(&r) || Instant::now() >= deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Shuts the server down and closes the port (and every connection to
    /// it); idempotent. Bounded: at most ~3 s.
    pub fn stop(&mut self) {
        if let Some(mut r) = self.running.take() {
            r.stop();
        }
    }

    /// Serves again on the same port with the same protocol, keeping what
    /// was already received. Stops first if still running.
    pub fn restart(&mut self) {
        self.stop();
        let listener = bind_tcp(self.port);
        self.running = Some(Running::start(self.proto, listener, self.state.clone()));
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// DogStatsD
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct StatsdLine {
    pub name: String,
    pub value: f64,
    /// "c", "g", "d", "h", "ms" or "s".
    pub kind: String,
    pub sample_rate: Option<f64>,
    /// In line order; a tag without ':' has value "".
    pub tags: Vec<(String, String)>,
}

impl StatsdLine {
    /// Value of the first tag with this key.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one DogStatsD metric line strictly:
/// `<name>:<value>[:<value>...]|<type>[|@<rate>][|#<tag>[,<tag>...]][|c:<container>][|T<unix ts>]`.
/// Several values (protocol v1.1) give several `StatsdLine`s. Names must
/// follow Datadog's rule (ASCII letter first, then letters, digits, '_' and
/// '.', at most 200 chars); values must be finite numbers; rates in (0, 1];
/// tags non-empty with no whitespace and a non-empty key; each optional field
/// at most once.
pub fn parse_statsd_line(line: &str) -> Result<Vec<StatsdLine>, String> {
    let mut fields = line.split('|');
    let head = fields.next().unwrap_or("");
    let (name, values) = head
        .split_once(':')
        .ok_or_else(|| "no ':' between name and value".to_string())?;
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "metric name {name:?} must start with an ASCII letter"
        ));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') || name.len() > 200 {
        return Err(format!(
            "metric name {name:?}: only ASCII letters, digits, '_' and '.', at most 200"
        ));
    }
    let kind = fields.next().ok_or("no '|<type>'")?;
    if !["c", "g", "d", "h", "ms", "s"].contains(&kind) {
        return Err(format!("unknown metric type {kind:?}"));
    }
    let mut parsed = Vec::new();
    for v in values.split(':') {
        let x: f64 = v
            .parse()
            .map_err(|_| format!("value {v:?} is not a number"))?;
        if !x.is_finite() {
            return Err(format!("value {v:?} is not a finite number"));
        }
        parsed.push(x);
    }
    let (mut rate, mut tags, mut container, mut ts) = (None, None, false, false);
    for f in fields {
        if let Some(r) = f.strip_prefix('@') {
            let r: f64 = r
                .parse()
                .map_err(|_| format!("sample rate {f:?} is not a number"))?;
            if !(r > 0.0 && r <= 1.0) || rate.replace(r).is_some() {
                return Err(format!("bad or repeated sample rate {f:?}"));
            }
        } else if let Some(t) = f.strip_prefix('#') {
            let mut list = Vec::new();
            for tag in t.split(',') {
                if tag.is_empty() || tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!("bad tag {tag:?} in {f:?}"));
                }
                let (k, v) = tag.split_once(':').unwrap_or((tag, ""));
                if k.is_empty() {
                    return Err(format!("tag {tag:?} has an empty key"));
                }
                list.push((k.to_string(), v.to_string()));
            }
            if tags.replace(list).is_some() {
                return Err("repeated '|#' tags field".into());
            }
        } else if let Some(c) = f.strip_prefix("c:") {
            if c.is_empty() || std::mem::replace(&mut container, true) {
                return Err(format!("bad or repeated container field {f:?}"));
            }
        } else if let Some(t) = f.strip_prefix('T') {
            if t.is_empty()
                || !t.bytes().all(|b| b.is_ascii_digit())
                || std::mem::replace(&mut ts, true)
            {
                return Err(format!("bad or repeated timestamp field {f:?}"));
            }
        } else {
            return Err(format!("unknown field {f:?}"));
        }
    }
    let tags = tags.unwrap_or_default();
    Ok(parsed
        .into_iter()
        .map(|value| StatsdLine {
            name: name.to_string(),
            value,
            kind: kind.to_string(),
            sample_rate: rate,
            tags: tags.clone(),
        })
        .collect())
}

/// Parses one datagram: newline-separated lines, an optional final newline.
/// Panics with the offending line on anything malformed.
pub fn parse_statsd_datagram(datagram: &str) -> Vec<StatsdLine> {
    let body = datagram.strip_suffix('\n').unwrap_or(datagram);
    let mut out = Vec::new();
    for line in body.split('\n') {
        match parse_statsd_line(line) {
            Ok(l) => out.extend(l),
            Err(e) => panic!("malformed DogStatsD line {line:?} ({e}) in datagram {datagram:?}"),
        }
    }
    out
}

/// A DogStatsD listener: a UDP socket on 127.0.0.1 whose datagrams a
/// background thread collects (polling with a short timeout, so the thread
/// ends promptly on drop). Parsing happens in the caller's thread, so a
/// malformed line panics the test.
pub struct StatsdListener {
    addr: SocketAddr,
    datagrams: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatsdListener {
    pub fn new() -> StatsdListener {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind statsd listener");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        // A bigger receive buffer (capped by net.core.rmem_max) so a burst
        // from the agent is not dropped by the kernel before we read it.
        {
            use std::os::fd::AsRawFd;
            let size: libc::c_int = 8 << 20;
            // SAFETY: setsockopt on our own socket with a valid int option.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    &size as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        let addr = sock.local_addr().unwrap();
        let datagrams = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (datagrams.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("statsd-{}", addr.port()))
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !s.load(Ordering::Relaxed) {
                    match sock.recv(&mut buf) {
                        Ok(n) => d
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(buf[..n].to_vec()),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock
                                    | std::io::ErrorKind::TimedOut
                                    | std::io::ErrorKind::Interrupted
                            ) => {}
                        Err(e) => {
                            eprintln!("[statsd listener] recv: {e}");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })
            .expect("spawn statsd thread");
        StatsdListener {
            addr,
            datagrams,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Raw datagrams so far, in arrival order (to check sizes and framing).
    /// Panics on a datagram that is not UTF-8.
    pub fn raw(&self) -> Vec<String> {
        self.datagrams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|d| {
                String::from_utf8(d.clone())
                    .unwrap_or_else(|_| panic!("DogStatsD datagram is not UTF-8: {d:?}"))
            })
            .collect()
    }

    /// Every line received so far, parsed; panics on a malformed one.
    pub fn lines(&self) -> Vec<StatsdLine> {
        self.raw()
            .iter()
            .flat_map(|d| parse_statsd_datagram(d))
            .collect()
    }

    /// Forgets every datagram received so far.
    pub fn clear(&self) {
        self.datagrams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Polls until `cond` holds or `timeout` passes; returns the last parse
    /// either way.
    pub fn wait_for(
        &self,
        timeout: Duration,
        cond: impl Fn(&[StatsdLine]) -> bool,
    ) -> Vec<StatsdLine> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.lines();
            if cond(&l) || Instant::now() >= deadline {
                return l;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Default for StatsdListener {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for StatsdListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
