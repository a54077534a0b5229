//! Fuzzing of every input netagent parses or renders, with proptest.
//!
//! `cargo fuzz` needs a nightly compiler (libFuzzer's `-Z sanitizer`
//! flags) and this project builds with stable Rust only, so these property
//! tests are its stable substitute: random and mutated inputs, a few
//! thousand per property on every `cargo test`, a failing case shrunk to a
//! small one and printed. No panic is acceptable anywhere below.
//!
//! * `Config::parse` on arbitrary text, on YAML assembled from the real
//!   keys, and on mutations of the seed corpus in `tests/corpus/config/`:
//!   never a panic, and every error is one line naming a key or a line.
//! * `collect::spans::decode` on arbitrary bytes and on bit-flipped real
//!   records (`tests/corpus/spans/*.bin`, generated from `SpanEvent`
//!   structs; `span_corpus_is_real_records` checks them and
//!   `NETAGENT_WRITE_CORPUS=1` rewrites them after a layout change);
//!   decoded records go on through `SpanDecoder::span` and the OTLP
//!   encoding.
//! * The Prometheus encoder on arbitrary label values and sample values:
//!   both formats parse back with `openmetrics-parser` to the same labels
//!   and values, and `promtool check metrics` accepts a batch of cases
//!   (300, or `PROPTEST_CASES` up to 5000, in one exposition).
//! * The DogStatsD exporter on arbitrary label values, tags and prefixes:
//!   every line it sends to a local UDP socket parses as DogStatsD.
//!
//! Long runs: `PROPTEST_CASES=200000 cargo test --release --test fuzz_inputs`
//! sets the number of cases of every property (the defaults, each
//! property's `proptest_config`, keep the run well under a minute in a
//! debug build). Failing inputs are printed, not persisted; add one to the
//! corpus to keep it.
//!
//! One file per input in tests/fuzz_inputs/ (config, spans, exposition,
//! statsd); corpus.rs holds the proptest settings and reads the seed
//! corpus, labels.rs the label values and series the exposition and
//! DogStatsD properties share.

mod common;

#[path = "fuzz_inputs/config.rs"]
mod config;
#[path = "fuzz_inputs/corpus.rs"]
mod corpus;
#[path = "fuzz_inputs/exposition.rs"]
mod exposition;
#[path = "fuzz_inputs/labels.rs"]
mod labels;
#[path = "fuzz_inputs/spans.rs"]
mod spans;
#[path = "fuzz_inputs/statsd.rs"]
mod statsd;
