//! Where OTLP requests go: gRPC (tonic) or HTTP/protobuf (reqwest), with
//! the configured headers, TLS and timeout. Knows nothing of spans or
//! metrics beyond the two request types.

use std::time::Duration;

use anyhow::Context;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::config::otel::{OtelConfig, Protocol};

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
}
