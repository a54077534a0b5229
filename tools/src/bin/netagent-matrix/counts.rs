//! The exact counts the matrix scenario expects from the agent's scrape,
//! derived from the traffic it generated.

use std::collections::BTreeMap;

use crate::report::Report;
use crate::scenario::{
    Traffic, ACCEPT4_CONNECTS, ACCEPT6_CONNECTS, ACCEPT_LABEL, BULK4, BULK6, CLIENT_LABEL,
    EXCHANGES, TCP4_CONNECTS, TCP6_CONNECTS, UDP4_SENDS, UDP4_SIZE, UDP6_SENDS, UDP6_SIZE,
};
use crate::scrape::Metrics;

pub(crate) fn check_counts(m: &Metrics, t: &Traffic, report: &mut Report) {
    let p = CLIENT_LABEL;
    let conn = |proto: &str, port: u16| {
        m.sum(
            "netagent_connect_total",
            &[
                ("process", p),
                ("proto", proto),
                ("dport", &port.to_string()),
            ],
        )
    };
    let edge = |proto: &str, port: u16, ip: &str| {
        m.sum(
            "netagent_edge_total",
            &[
                ("process", p),
                ("proto", proto),
                ("dport", &port.to_string()),
                ("dst_ip", ip),
            ],
        )
    };
    report.exact("tcp4_connects", TCP4_CONNECTS as f64, conn("tcp", t.tcp4));
    report.exact("tcp6_connects", TCP6_CONNECTS as f64, conn("tcp", t.tcp6));
    report.exact(
        "tcp4_edge",
        TCP4_CONNECTS as f64,
        edge("tcp", t.tcp4, "127.0.0.1"),
    );
    report.exact(
        "tcp6_edge",
        TCP6_CONNECTS as f64,
        edge("tcp", t.tcp6, "::1"),
    );
    report.exact("udp4_sends", UDP4_SENDS as f64, conn("udp", t.udp4));
    report.exact("udp6_sends", UDP6_SENDS as f64, conn("udp", t.udp6));
    report.exact(
        "udp4_edge",
        UDP4_SENDS as f64,
        edge("udp", t.udp4, "127.0.0.1"),
    );
    report.exact("udp6_edge", UDP6_SENDS as f64, edge("udp", t.udp6, "::1"));

    // Accepted connections of the listening target, per port: the connects
    // and the bulk transfer's connection.
    let accepted = |port: u16| {
        m.sum(
            "netagent_tcp_connections_accepted_total",
            &[("process", ACCEPT_LABEL), ("port", &port.to_string())],
        )
    };
    let want = (ACCEPT4_CONNECTS + 1, ACCEPT6_CONNECTS + 1);
    let got = (accepted(t.accept4), accepted(t.accept6));
    report.check(
        "tcp_accepts",
        got == (want.0 as f64, want.1 as f64),
        format!("v4={} v6={}", want.0, want.1),
        format!("v4={} v6={}", got.0, got.1),
    );
    // Payload bytes: what the client sent, and what the accepting target
    // read, per family; UDP datagrams' payloads.
    let bytes = |name: &str, process: &str, proto: &str, port: u16| {
        m.sum(
            name,
            &[
                ("process", process),
                ("proto", proto),
                ("dport", &port.to_string()),
            ],
        )
    };
    let sent = "netagent_bytes_sent_total";
    let received = "netagent_bytes_received_total";
    let got = [
        bytes(sent, p, "tcp", t.accept4),
        bytes(received, ACCEPT_LABEL, "tcp", t.accept4),
        bytes(sent, p, "tcp", t.accept6),
        bytes(received, ACCEPT_LABEL, "tcp", t.accept6),
    ];
    let want = [BULK4, BULK4, BULK6, BULK6].map(|b| b as f64);
    report.check(
        "tcp_bytes",
        got == want,
        format!(
            "sent4={} read4={} sent6={} read6={}",
            want[0], want[1], want[2], want[3]
        ),
        format!(
            "sent4={} read4={} sent6={} read6={}",
            got[0], got[1], got[2], got[3]
        ),
    );
    let got = [bytes(sent, p, "udp", t.udp4), bytes(sent, p, "udp", t.udp6)];
    let want = [UDP4_SENDS * UDP4_SIZE, UDP6_SENDS * UDP6_SIZE].map(|b| b as f64);
    report.check(
        "udp_bytes",
        got == want,
        format!("v4={} v6={}", want[0], want[1]),
        format!("v4={} v6={}", got[0], got[1]),
    );

    for (name, proto, port, ip) in [
        ("tx_duration_tcp", "tcp", t.delay_tcp4, "127.0.0.1"),
        ("tx_duration_udp", "udp", t.delay_udp6, "::1"),
    ] {
        let port = port.to_string();
        let labels = [
            ("process", p),
            ("proto", proto),
            ("dport", port.as_str()),
            ("dst_ip", ip),
        ];
        let count = m.sum("netagent_tx_duration_seconds_count", &labels);
        let mut below = labels.to_vec();
        below.push(("le", "0.025"));
        let faster = m.sum("netagent_tx_duration_seconds_bucket", &below);
        report.check(
            name,
            count == EXCHANGES as f64 && faster == 0.0,
            format!("count={EXCHANGES},below_25ms=0"),
            format!("count={count},below_25ms={faster}"),
        );
    }

    let refused = m.sum(
        "netagent_tcp_connect_failed_total",
        &[
            ("process", p),
            ("dport", &t.closed.to_string()),
            ("dst_ip", "127.0.0.1"),
            ("reason", "refused"),
        ],
    );
    report.exact("connect_refused", 1.0, refused);

    // Its SYN, dropped on lo for want of a listener: the scenario's one
    // drop, with the kernel's reason. Before 5.17 the kernel passes no
    // reason, and kfree_skb() there also frees packets TCP handled (a
    // dozen for this scenario on 5.10): at least that one, as "unknown".
    let btf = std::fs::read("/sys/kernel/btf/vmlinux").unwrap_or_default();
    let drops = "netagent_packet_drops_total";
    let syn = |reason| {
        m.sum(
            drops,
            &[("interface", "lo"), ("proto", "tcp"), ("reason", reason)],
        )
    };
    if netagent::kernel::drops::Tracepoint::of(&btf).is_some_and(|t| t.reason) {
        // Every packet of the scenario crosses lo, so on lo that one drop
        // is all: nothing counted twice, nothing of the scenario's own
        // traffic taken for a drop. Drops off lo (a socket's queue freed by
        // a process of this namespace, without a device) are not the
        // scenario's; they are listed, for whoever reads the log.
        let on_lo = m.sum(drops, &[("interface", "lo")]);
        let series = |lo: bool| -> String {
            m.matching(drops, &[])
                .filter(|(l, _)| (l.get("interface").map(String::as_str) == Some("lo")) == lo)
                .map(|(l, v)| format!(" {l:?}={v}"))
                .collect()
        };
        let ok = syn("no_socket") == 1.0 && on_lo == 1.0;
        report.check(
            "drops_exact",
            ok,
            "no_socket=1,lo=1",
            format!(
                "no_socket={},lo={on_lo}{}",
                syn("no_socket"),
                if ok { String::new() } else { series(true) }
            ),
        );
        let elsewhere = series(false);
        if !elsewhere.is_empty() {
            report.info(format!("drops_off_lo{elsewhere}"));
        }
    } else {
        let unknown = syn("unknown");
        report.check("drops_unknown", unknown >= 1.0, "unknown>=1", unknown);
    }

    // Every connect_total series, exactly: nothing from the servers (not
    // targets), nothing counted twice or under another port.
    let mut expected = BTreeMap::new();
    for (proto, port, n) in [
        ("tcp", t.tcp4, TCP4_CONNECTS),
        ("tcp", t.tcp6, TCP6_CONNECTS),
        ("udp", t.udp4, UDP4_SENDS),
        ("udp", t.udp6, UDP6_SENDS),
        ("tcp", t.delay_tcp4, 1), // the exchange connection
        ("udp", t.delay_udp6, EXCHANGES),
        ("tcp", t.closed, 1), // the refused attempt sent a SYN
        ("tcp", t.accept4, ACCEPT4_CONNECTS + 1),
        ("tcp", t.accept6, ACCEPT6_CONNECTS + 1),
    ] {
        expected.insert(format!("{p}/{proto}/{port}"), n as f64);
    }
    let got: BTreeMap<String, f64> = m
        .matching("netagent_connect_total", &[])
        .map(|(l, v)| {
            let get = |k: &str| l.get(k).map(String::as_str).unwrap_or("?");
            (
                format!("{}/{}/{}", get("process"), get("proto"), get("dport")),
                v,
            )
        })
        .collect();
    report.check(
        "connect_series_exact",
        got == expected,
        format!("{expected:?}"),
        format!("{got:?}"),
    );

    let lost = m.sum("netagent_events_lost_total", &[]);
    report.exact("no_events_lost", 0.0, lost);
}
