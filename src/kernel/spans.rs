//! The kernel's span cap (bpf/netagent/span.h): spans dropped before the
//! ring because only OTLP reads them and its per-second cap is already
//! met on that CPU. The agent adds them to the exporter's `rate_limit`
//! drops, so a span the kernel saw is exported or counted.

use aya::maps::{Map, MapData, PerCpuArray};

use super::error::KernelError;

/// `struct na_span_rate`: window start, sent in it, capped (all time),
/// seen in it, the chance a span is kept in it.
type SpanRate = [u64; 5];

/// The per-CPU `span_rate` map.
pub struct SpanCap {
    map: PerCpuArray<MapData, SpanRate>,
}

impl SpanCap {
    pub(super) fn new(map: Map) -> Result<Self, KernelError> {
        Ok(Self {
            map: PerCpuArray::try_from(map).map_err(|e| KernelError::Object(e.to_string()))?,
        })
    }

    /// Spans dropped over the cap so far, summed over CPUs (0 when the map
    /// cannot be read: the count then lags, it is never invented).
    pub fn capped(&self) -> u64 {
        self.map
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().map(|r| r[2]).sum())
            .unwrap_or(0)
    }
}
