//! The `otel:` config section (README, "Exporters").

use std::collections::BTreeMap;

use serde::Deserialize;

use super::KeyError;

/// `otel:` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtelConfig {
    /// `http://host:4317` (gRPC) or `http://host:4318` (HTTP); empty = off.
    pub endpoint: String,
    /// `grpc` or `http/protobuf`.
    pub protocol: Protocol,
    /// Plain text when true; TLS with the system roots (plus `ca_file`) when false.
    pub insecure: bool,
    /// Extra PEM CA certificate for TLS.
    pub ca_file: String,
    /// Headers sent with every export (e.g. `authorization`).
    pub headers: BTreeMap<String, String>,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Export request/response spans.
    pub traces: bool,
    /// Spans beyond this per second are dropped (counted).
    pub max_spans_per_second: u32,
    /// Spans waiting for export; beyond it new spans are dropped (counted).
    pub queue_size: usize,
    pub batch_size: usize,
    pub export_timeout_seconds: f64,
    /// Seconds between OTLP metric pushes; 0 = no metric push.
    pub metrics_interval_seconds: f64,
    /// `cumulative` or `delta` for sums and histograms.
    pub metrics_temporality: Temporality,
    /// Longest wait between retries of a failed export.
    pub retry_max_backoff_seconds: f64,
}

impl Default for OtelConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            protocol: Protocol::Grpc,
            insecure: true,
            ca_file: String::new(),
            headers: BTreeMap::new(),
            service_name: "netagent".into(),
            traces: true,
            max_spans_per_second: 1000,
            queue_size: 4096,
            batch_size: 512,
            export_timeout_seconds: 5.0,
            metrics_interval_seconds: 0.0,
            metrics_temporality: Temporality::Cumulative,
            retry_max_backoff_seconds: 30.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf", alias = "http")]
    HttpProtobuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Temporality {
    Cumulative,
    Delta,
}

impl OtelConfig {
    pub fn enabled(&self) -> bool {
        !self.endpoint.is_empty()
    }

    pub fn validate(&self) -> Result<(), KeyError> {
        let iv = self.metrics_interval_seconds;
        if self.enabled() && !(iv == 0.0 || iv >= 0.1) {
            return Err(KeyError {
                key: "otel.metrics_interval_seconds".into(),
                line: None,
                reason: "must be 0 (off) or at least 0.1".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
