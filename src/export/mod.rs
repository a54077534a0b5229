//! Exporters: render the metric model for a consumer. None reads the kernel.

pub mod otlp;
pub mod prometheus;
pub mod statsd;
