//! The `nat:` config section (README, "NAT").

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{range, unspanned, KeyError};

/// `nat:` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatConfig {
    /// Label edges with the destination after this host's NAT
    /// (`actual_dst_ip`, `actual_dport`). Default true; it costs one short
    /// program run per packet a device sends.
    pub enabled: bool,
    /// Connections and datagrams whose translation may still happen in
    /// another namespace of this host (a pod's SYN before the node's DNAT)
    /// that the kernel keeps track of at once. When more are in flight the
    /// oldest go unmatched, counted as lost (`nat_unmatched`).
    pub max_pending: Spanned<u32>,
}

impl Default for NatConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_pending: unspanned(16384),
        }
    }
}

impl NatConfig {
    /// Upper bound of `max_pending`: two maps of this many ~60-byte entries.
    const MAX_PENDING: u32 = 1 << 20;

    pub fn validate(&self) -> Result<(), KeyError> {
        range("nat.max_pending", &self.max_pending, 1, Self::MAX_PENDING)
    }
}
