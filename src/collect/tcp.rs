//! Connection lifecycle and health: listeners, open/active/closed
//! connections, failed connects, resets, retransmits, RTT, bytes and
//! durations — per process, container and peer.

use std::collections::BTreeMap;

use super::connections::Resolved;
use super::histograms::add_hist;
use super::labels::{format_addr, owner_labels, KeyLabels, Labeler};
use crate::kernel::abi::{HistKind, ListenKey, Listener, FAIL_REASONS};
use crate::metrics::catalog;
use crate::metrics::{histogram_family, scalar_family, Family, Labels};

fn owner(l: &KeyLabels) -> Labels {
    owner_labels(l.process.clone(), &l.identity)
}

fn with(mut labels: Labels, more: &[(&'static str, &str)]) -> Labels {
    labels.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    labels
}

fn peer(l: &KeyLabels) -> Labels {
    with(owner(l), &[("dport", &l.dport), ("dst_ip", &l.dst_ip)])
}

/// The peer and where it was translated to (empty when it was not).
fn actual_peer(l: &KeyLabels) -> Labels {
    with(
        peer(l),
        &[
            ("actual_dst_ip", &l.actual_dst_ip),
            ("actual_dport", &l.actual_dport),
        ],
    )
}

/// `netagent_tcp_listen_info` from the kernel's listener map.
pub fn listen_family(listeners: &[(ListenKey, Listener)], labeler: &mut Labeler) -> Family {
    let mut series = BTreeMap::new();
    for (k, l) in listeners {
        let Some(process) = labeler.process(&l.comm) else {
            continue;
        };
        let labels = with(
            owner_labels(process, &labeler.identity(l.cgroup_id)),
            &[
                ("listen_addr", &format_addr(l.addr)),
                ("port", &k.port.to_string()),
            ],
        );
        series.insert(labels, 1.0);
    }
    scalar_family(&catalog::TCP_LISTEN_INFO, series)
}

/// Every lifecycle and health family except the listener one and those
/// of conns.rs (idle connections, resets by reason).
pub fn families(r: &Resolved) -> Vec<Family> {
    let mut active = BTreeMap::new();
    let mut opened = BTreeMap::new();
    let mut seeded = BTreeMap::new();
    let mut closed = BTreeMap::new();
    let mut accepted = BTreeMap::new();
    let mut failed = BTreeMap::new();
    let mut retransmits = BTreeMap::new();
    let mut bytes_sent = BTreeMap::new();
    let mut bytes_received = BTreeMap::new();

    for (l, s) in &r.flows {
        if s.bytes_sent > 0 || s.bytes_received > 0 {
            let labels = with(
                owner(l),
                &[
                    ("proto", l.proto),
                    ("dport", &l.dport),
                    ("dst_ip", &l.dst_ip),
                    ("actual_dst_ip", &l.actual_dst_ip),
                    ("actual_dport", &l.actual_dport),
                    ("direction", l.direction),
                    ("dst_name", &l.dst_name),
                ],
            );
            *bytes_sent.entry(labels.clone()).or_insert(0.0) += s.bytes_sent as f64;
            *bytes_received.entry(labels).or_insert(0.0) += s.bytes_received as f64;
        }
        if l.proto != "tcp" {
            continue;
        }
        for (reason, n) in FAIL_REASONS.iter().zip(s.failed.iter()) {
            if *n > 0 {
                *failed
                    .entry(with(actual_peer(l), &[("reason", reason)]))
                    .or_insert(0.0) += *n as f64;
            }
        }
        if s.opened > 0 || s.seeded > 0 || s.retransmits > 0 {
            *retransmits.entry(peer(l)).or_insert(0.0) += s.retransmits as f64;
        }
        if s.opened > 0 || s.seeded > 0 {
            let by_dir = with(owner(l), &[("direction", l.direction)]);
            *opened.entry(by_dir.clone()).or_insert(0.0) += s.opened as f64;
            *closed.entry(by_dir.clone()).or_insert(0.0) += s.closed as f64;
            if s.seeded > 0 {
                *seeded.entry(by_dir.clone()).or_insert(0.0) += s.seeded as f64;
            }
            // Connections found open at start close like the others.
            let open = (s.opened + s.seeded).saturating_sub(s.closed);
            *active.entry(by_dir).or_insert(0.0) += open as f64;
            if l.direction == "inbound" && s.opened > 0 {
                // For inbound keys dport is our own (listening) port.
                *accepted
                    .entry(with(owner(l), &[("port", &l.dport)]))
                    .or_insert(0.0) += s.opened as f64;
            }
        }
    }

    let mut rtt = BTreeMap::new();
    let mut connect = BTreeMap::new();
    let mut lifetime = BTreeMap::new();
    for (l, kind, h) in &r.hists {
        match kind {
            HistKind::Rtt => add_hist(&mut rtt, peer(l), *kind, h),
            HistKind::Connect => add_hist(&mut connect, actual_peer(l), *kind, h),
            HistKind::ConnDuration => add_hist(
                &mut lifetime,
                with(owner(l), &[("direction", l.direction)]),
                *kind,
                h,
            ),
            HistKind::Tx => {}
        }
    }

    vec![
        scalar_family(&catalog::TCP_CONNECTIONS_ACTIVE, active),
        scalar_family(&catalog::TCP_CONNECTIONS_OPENED, opened),
        scalar_family(&catalog::TCP_CONNECTIONS_SEEDED, seeded),
        scalar_family(&catalog::TCP_CONNECTIONS_CLOSED, closed),
        scalar_family(&catalog::TCP_CONNECTIONS_ACCEPTED, accepted),
        scalar_family(&catalog::TCP_CONNECT_FAILED, failed),
        scalar_family(&catalog::TCP_RETRANSMITS, retransmits),
        histogram_family(&catalog::TCP_RTT_SECONDS, rtt),
        histogram_family(&catalog::TCP_CONNECT_DURATION_SECONDS, connect),
        histogram_family(&catalog::CONNECTION_DURATION_SECONDS, lifetime),
        scalar_family(&catalog::BYTES_SENT, bytes_sent),
        scalar_family(&catalog::BYTES_RECEIVED, bytes_received),
    ]
}
