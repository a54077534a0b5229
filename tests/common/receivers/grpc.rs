//! The OTLP/gRPC receiver: tonic's generated `TraceService` and
//! `MetricsService` servers (gzip accepted).

use super::decode::{ingest_metrics, ingest_traces};
use super::received::Received;
use super::MAX_MESSAGE;
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
use std::sync::{Arc, Mutex};

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

pub(super) async fn serve_grpc(
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
