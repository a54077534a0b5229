//! netagent: an eBPF network-observability agent.
//!
//! Data path: `kernel` (BPF programs, loading) → `collect` (reading kernel
//! maps) → `model` (labelled metric families) → `export` (wire formats) →
//! `http` (endpoints). `agent` wires them together; `config` feeds it.

pub mod agent;
pub mod collect;
pub mod config;
pub mod export;
pub mod http;
pub mod kernel;
pub mod metrics;
pub mod model;

#[cfg(test)]
mod test_support;
