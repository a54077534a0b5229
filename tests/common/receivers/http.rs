//! The OTLP/HTTP receiver (axum): POST /v1/traces and /v1/metrics with
//! application/x-protobuf bodies, optionally gzip-encoded, answered with
//! the protobuf Export*ServiceResponse or a `google.rpc.Status`.

use super::decode::{ingest_metrics, ingest_traces, reject};
use super::received::Received;
use super::MAX_MESSAGE;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::io::Read;
use std::sync::{Arc, Mutex};

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

/// One OTLP/HTTP export: the body decoded as `Req` and handed to
/// `ingest` (which records what it refuses), answered with `Resp` or a
/// google.rpc.Status.
fn http_export<Req: Message + Default, Resp: Message + Default>(
    path: &str,
    state: &Arc<Mutex<Received>>,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    ingest: fn(&Mutex<Received>, &Req) -> Result<(), String>,
) -> axum::response::Response {
    let body = match http_body(path, headers, body) {
        Ok(b) => b,
        Err((status, why)) => return error_response(state, status, why),
    };
    let req = match Req::decode(body.as_slice()) {
        Ok(r) => r,
        Err(e) => return error_response(state, 400, format!("POST {path}: bad protobuf: {e}")),
    };
    match ingest(state, &req) {
        Ok(()) => proto_response(200, Resp::default().encode_to_vec()),
        // Already recorded by ingest.
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

async fn http_traces(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<Received>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    http_export::<ExportTraceServiceRequest, ExportTraceServiceResponse>(
        "/v1/traces",
        &state,
        &headers,
        &body,
        ingest_traces,
    )
}

async fn http_metrics(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<Received>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    http_export::<ExportMetricsServiceRequest, ExportMetricsServiceResponse>(
        "/v1/metrics",
        &state,
        &headers,
        &body,
        ingest_metrics,
    )
}

async fn http_unexpected(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<Received>>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    error_response(&state, 404, format!("unexpected request {method} {uri}"))
}

pub(super) async fn serve_http(
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
