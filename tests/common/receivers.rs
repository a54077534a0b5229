//! Real receivers for what the agent exports: an OTLP collector stand-in
//! (gRPC via tonic's generated `TraceService`/`MetricsService` servers, or
//! HTTP/protobuf via axum) and a DogStatsD UDP listener. Tests assert on what
//! arrives here, decoded by an independent protobuf/statsd decoder, never on
//! the agent's own encoder.
//!
//! Everything is bounded: servers shut down within a few seconds of `stop()`
//! or drop, listener threads poll with short timeouts, and every wait takes a
//! deadline.
//!
//! One file per part in tests/common/receivers/: what was received
//! (`received`), decoding export requests into it (`decode`), the OTLP
//! servers (`grpc`, `http`) and their handle (`otlp`), and the DogStatsD
//! parser and listener (`statsd`).
#![allow(dead_code)]

mod decode;
mod grpc;
mod http;
mod otlp;
mod received;
mod statsd;

// Each test crate uses some of these (see `dead_code` in common/mod.rs).
#[allow(unused_imports)]
pub use otlp::OtlpReceiver;
#[allow(unused_imports)]
pub use received::{AttrValue, Received, ReceivedHistogram, ReceivedPoint, ReceivedSpan};
#[allow(unused_imports)]
pub use statsd::{parse_statsd_datagram, parse_statsd_line, StatsdLine, StatsdListener};

/// Largest accepted request body / gRPC message.
const MAX_MESSAGE: usize = 64 << 20;
