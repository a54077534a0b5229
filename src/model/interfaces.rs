//! Per-interface traffic families from the interface collector's snapshot.

use std::collections::BTreeMap;

use crate::collect::interfaces::InterfaceSnapshot;
use crate::metrics::catalog;
use crate::metrics::{scalar_family, Family, Labels};

fn iface(name: &str, ifindex: u32) -> Labels {
    vec![
        ("interface", name.to_string()),
        ("ifindex", ifindex.to_string()),
    ]
}

fn dir(mut l: Labels, direction: &str) -> Labels {
    l.push(("direction", direction.to_string()));
    l
}

/// Totals, rates and activity per interface; `active_only` leaves out
/// interfaces that carried nothing in the last interval.
pub fn families(snap: &InterfaceSnapshot, active_only: bool) -> Vec<Family> {
    let mut packets = BTreeMap::new();
    let mut bytes = BTreeMap::new();
    let mut pps = BTreeMap::new();
    let mut bps = BTreeMap::new();
    let mut active = BTreeMap::new();
    for s in &snap.interfaces {
        if active_only && !s.active {
            continue;
        }
        let l = iface(&s.name, s.ifindex);
        for (d, c, p, b) in [
            ("ingress", s.ingress, s.ingress_pps, s.ingress_bps),
            ("egress", s.egress, s.egress_pps, s.egress_bps),
        ] {
            packets.insert(dir(l.clone(), d), c.packets as f64);
            bytes.insert(dir(l.clone(), d), c.bytes as f64);
            pps.insert(dir(l.clone(), d), p);
            bps.insert(dir(l.clone(), d), b);
        }
        active.insert(l, if s.active { 1.0 } else { 0.0 });
    }
    vec![
        scalar_family(&catalog::INTERFACE_PACKETS, packets),
        scalar_family(&catalog::INTERFACE_BYTES, bytes),
        scalar_family(&catalog::INTERFACE_PACKETS_PER_SECOND, pps),
        scalar_family(&catalog::INTERFACE_BYTES_PER_SECOND, bps),
        scalar_family(&catalog::INTERFACE_ACTIVE, active),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::interfaces::InterfaceSample;
    use crate::kernel::abi::IfaceCounters;

    fn sample(name: &str, ifindex: u32, active: bool) -> InterfaceSample {
        InterfaceSample {
            name: name.into(),
            ifindex,
            ingress: IfaceCounters {
                packets: 3,
                bytes: 300,
            },
            egress: IfaceCounters {
                packets: 1,
                bytes: 60,
            },
            ingress_pps: 1.5,
            egress_pps: 0.5,
            ingress_bps: 150.0,
            egress_bps: 30.0,
            active,
        }
    }

    #[test]
    fn active_only_leaves_out_idle_interfaces() {
        let snap = InterfaceSnapshot {
            interfaces: vec![sample("eth0", 2, true), sample("eth1", 3, false)],
            ..Default::default()
        };
        let all = families(&snap, false);
        assert_eq!(all[0].series.len(), 4, "two interfaces x two directions");
        assert_eq!(all[4].series.len(), 2);
        let active = families(&snap, true);
        assert_eq!(active[0].series.len(), 2);
        assert!(active
            .iter()
            .all(|f| f.series.iter().all(|s| s.labels[0].1 == "eth0")));
        assert_eq!(active[4].series[0].value, crate::metrics::Value::Gauge(1.0));
    }
}
