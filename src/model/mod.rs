//! What the sources' families become before they are exported: the
//! per-metric series cap with `~other` (cardinality), the live service
//! map (graph), request/response spans (spans) and the agent's own
//! families (self_metrics). Plain data and aggregation: no I/O.

pub mod cardinality;
pub mod graph;
pub mod self_metrics;
pub mod spans;
