//! Per-connection families that the series alone cannot give: idle
//! connections (from the kernel's state of each TCP socket) and resets by
//! the kernel's reason (the series' totals, broken down by `reset_reasons`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::connections::Resolved;
use super::labels::{direction_name, owner_labels, KeyLabels, Labeler};
use crate::kernel::abi::{ResetKey, SockState, IPPROTO_TCP};
use crate::kernel::conns::UNKNOWN_REASON;
use crate::metrics::catalog;
use crate::metrics::{scalar_family, Family, Labels};

/// CLOCK_MONOTONIC in nanoseconds: the kernel side's `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `netagent_tcp_connections_idle`: per owner and direction, the
/// established connections (ESTABLISHED, opened while the agent ran) whose
/// last payload either way — or, without one, the handshake — is at least
/// `idle_after` before `now_ns`. The series are those of
/// `netagent_tcp_connections_active` (0 when none is idle); `sockets` must
/// have been read before `now_ns` was taken.
pub fn idle_family(
    sockets: &[SockState],
    r: &Resolved,
    now_ns: u64,
    idle_after: Duration,
    labeler: &mut Labeler,
) -> Family {
    let idle_ns = u64::try_from(idle_after.as_nanos()).unwrap_or(u64::MAX);
    let mut series: BTreeMap<Labels, f64> = BTreeMap::new();
    for (l, _) in r
        .flows
        .iter()
        .filter(|(l, s)| l.proto == "tcp" && s.opened > 0)
    {
        let mut labels = owner_labels(l.process.clone(), &l.identity);
        labels.push(("direction", l.direction.to_string()));
        series.entry(labels).or_insert(0.0);
    }
    for s in sockets {
        if s.proto != IPPROTO_TCP || s.open == 0 || s.closing != 0 {
            continue; // connecting, listening, or half closed
        }
        let Some(process) = labeler.process(&s.comm) else {
            continue;
        };
        let mut labels = owner_labels(process, &labeler.identity(s.cgroup_id));
        labels.push(("direction", direction_name(s.direction).to_string()));
        let idle = now_ns.saturating_sub(s.data_ts) >= idle_ns;
        *series.entry(labels).or_insert(0.0) += if idle { 1.0 } else { 0.0 };
    }
    scalar_family(&catalog::TCP_CONNECTIONS_IDLE, series)
}

/// `netagent_tcp_resets_total`: resets received (the kernel never says
/// why: `unknown`) and sent, by reason. Per owner the reasons of resets
/// sent add up to the series' total: `reasons` is read after the series
/// and the kernel counts a reason before its total, so it covers every
/// reset in the totals; what it lacks (a reason the full map could not
/// take, counted as lost) is `unknown`.
pub fn resets_family<'n>(
    r: &Resolved,
    reasons: &[(ResetKey, u64)],
    reason_name: impl Fn(u32) -> &'n str,
    labeler: &mut Labeler,
) -> Family {
    let owner = |l: &KeyLabels| owner_labels(l.process.clone(), &l.identity);
    let mut sent_total: BTreeMap<Labels, u64> = BTreeMap::new();
    let mut received: BTreeMap<Labels, u64> = BTreeMap::new();
    for (l, s) in r.flows.iter().filter(|(l, _)| l.proto == "tcp") {
        *sent_total.entry(owner(l)).or_default() += s.resets_sent;
        *received.entry(owner(l)).or_default() += s.resets_received;
    }
    let mut by_reason: BTreeMap<(Labels, &str), u64> = BTreeMap::new();
    let mut explained: BTreeMap<Labels, u64> = BTreeMap::new();
    for (k, n) in reasons {
        let Some(process) = labeler.process(&k.comm) else {
            continue;
        };
        let o = owner_labels(process, &labeler.identity(k.cgroup_id));
        *explained.entry(o.clone()).or_default() += n;
        *by_reason.entry((o, reason_name(k.reason))).or_default() += n;
    }
    for (o, total) in &sent_total {
        let missing = total.saturating_sub(explained.get(o).copied().unwrap_or(0));
        if missing > 0 {
            *by_reason.entry((o.clone(), UNKNOWN_REASON)).or_default() += missing;
        }
    }
    let with = |mut o: Labels, direction: &str, reason: &str| {
        o.push(("direction", direction.to_string()));
        o.push(("reason", reason.to_string()));
        o
    };
    let mut series: BTreeMap<Labels, f64> = BTreeMap::new();
    for ((o, reason), n) in by_reason {
        if n > 0 {
            *series.entry(with(o, "sent", reason)).or_default() += n as f64;
        }
    }
    for (o, n) in received {
        if n > 0 {
            *series
                .entry(with(o, "received", UNKNOWN_REASON))
                .or_default() += n as f64;
        }
    }
    scalar_family(&catalog::TCP_RESETS, series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::labels::{HostOnly, ProcessNames};
    use crate::kernel::abi::{comm_bytes, FlowStats, DIR_INBOUND, DIR_OUTBOUND};
    use crate::metrics::Value;
    use std::sync::Arc;

    fn sock(comm: &str, direction: u8, data_ts: u64) -> SockState {
        // SAFETY: SockState is plain data; all zero is a valid value.
        let mut s: SockState = unsafe { std::mem::zeroed() };
        s.comm = comm_bytes(comm);
        s.proto = IPPROTO_TCP;
        s.open = 1;
        s.direction = direction;
        s.data_ts = data_ts;
        s
    }

    fn values(f: &Family) -> Vec<(String, f64)> {
        f.series
            .iter()
            .map(|s| {
                let l: Vec<String> = s
                    .labels
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let v = match s.value {
                    Value::Counter(v) | Value::Gauge(v) => v,
                    _ => f64::NAN,
                };
                (l.join(","), v)
            })
            .collect()
    }

    #[test]
    fn idle_counts_established_connections_past_the_threshold() {
        let names = ProcessNames::by_comm();
        let mut host = HostOnly;
        let mut labeler = Labeler::new(&names, &mut host);
        let s = 1_000_000_000u64;
        let now = 100 * s;
        let mut closing = sock("web", DIR_INBOUND, 0);
        closing.closing = 1;
        let mut connecting = sock("web", DIR_OUTBOUND, 0);
        connecting.open = 0;
        let sockets = [
            sock("web", DIR_OUTBOUND, now - 60 * s), // exactly the threshold: idle
            sock("web", DIR_OUTBOUND, now - 59 * s),
            sock("web", DIR_INBOUND, 0),
            sock("web", DIR_INBOUND, now + s), // written after `now` was taken
            closing,
            connecting,
            sock("db", DIR_INBOUND, now - s),
        ];
        // A process whose connections all closed keeps its series, at 0.
        let mut gone = flow("old", 0, 0);
        gone.1.opened = 3;
        gone.1.closed = 3;
        let r = Resolved {
            flows: vec![(gone.0.clone(), &gone.1)],
            hists: vec![],
        };
        let f = idle_family(&sockets, &r, now, Duration::from_secs(60), &mut labeler);
        assert_eq!(
            values(&f),
            vec![
                ("process=db,direction=inbound".to_string(), 0.0),
                ("process=old,direction=inbound".to_string(), 0.0),
                ("process=web,direction=inbound".to_string(), 1.0),
                ("process=web,direction=outbound".to_string(), 1.0),
            ]
        );
    }

    fn flow(process: &str, sent: u64, received: u64) -> (KeyLabels, FlowStats) {
        (
            KeyLabels {
                process: process.into(),
                identity: Arc::default(),
                cgroup_id: 0,
                proto: "tcp",
                dport: "80".into(),
                dst_ip: "127.0.0.1".into(),
                actual_dst_ip: String::new(),
                actual_dport: String::new(),
                direction: "inbound",
                dst_name: String::new(),
            },
            FlowStats {
                resets_sent: sent,
                resets_received: received,
                ..FlowStats::default()
            },
        )
    }

    fn reason(comm: &str, reason: u32, n: u64) -> (ResetKey, u64) {
        (
            ResetKey {
                comm: comm_bytes(comm),
                cgroup_id: 0,
                reason,
                _pad: 0,
            },
            n,
        )
    }

    #[test]
    fn resets_sent_add_up_by_reason_and_received_ones_are_unknown() {
        let names = ProcessNames::by_comm();
        let mut host = HostOnly;
        let mut labeler = Labeler::new(&names, &mut host);
        let flows = [flow("web", 5, 0), flow("web", 2, 3), flow("cli", 4, 0)];
        let r = Resolved {
            flows: flows.iter().map(|(l, s)| (l.clone(), s)).collect(),
            hists: vec![],
        };
        let reasons = [
            reason("web", 11, 6),
            reason("web", 12, 1),
            // cli: 3 of its 4 found a place in the map; one is unknown.
            reason("cli", u32::MAX, 1),
            reason("cli", 11, 2),
        ];
        let name = |v: u32| match v {
            11 => "tcp_abort_on_close",
            12 => "tcp_abort_on_linger",
            _ => UNKNOWN_REASON,
        };
        let f = resets_family(&r, &reasons, name, &mut labeler);
        assert_eq!(
            values(&f),
            vec![
                (
                    "process=cli,direction=sent,reason=tcp_abort_on_close".to_string(),
                    2.0
                ),
                ("process=cli,direction=sent,reason=unknown".to_string(), 2.0),
                (
                    "process=web,direction=received,reason=unknown".to_string(),
                    3.0
                ),
                (
                    "process=web,direction=sent,reason=tcp_abort_on_close".to_string(),
                    6.0
                ),
                (
                    "process=web,direction=sent,reason=tcp_abort_on_linger".to_string(),
                    1.0
                ),
            ]
        );
    }
}
