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
//!
//! One job per file (the `otel:` section is config::otel): `transport`
//! (gRPC or HTTP), `encode` (OTLP protobuf types), `pipeline` (queue, cap,
//! retries), `stats` (OTLP's self-metrics). This file keeps the public API
//! and `otlp-check`.

mod encode;
mod pipeline;
mod stats;
mod transport;

pub use crate::config::otel::{OtelConfig, Protocol, Temporality};
pub use encode::{encode_span, resource, trace_request, MetricEncoder};
pub use pipeline::{start_span_pipeline, SpanSink};
pub use stats::SpanStats;
pub use transport::Transport;

use encode::now_nanos;

use crate::model::spans::{FlowSpan, SpanSide};

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
        container: Default::default(),
        proto: "tcp",
        side: SpanSide::Client,
        local: "127.0.0.1:40000".parse().expect("literal"),
        peer: "127.0.0.1:4317".parse().expect("literal"),
        actual_peer: None,
        socket_id: 0,
        dst_name: String::new(),
    };
    transport
        .export_traces(trace_request(&resource(cfg), &[span]))
        .await
}
