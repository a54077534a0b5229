//! Exact counts under load: ≥ 10,000 connects/s for 30 s, nothing lost.

mod common;
use common::*;

#[test]
fn ten_thousand_connects_per_second_for_30_s_are_counted_exactly() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let seconds: u64 = std::env::var("NETAGENT_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let agent = Agent::start(&[("loadgen", "nettest-load")]);
    let srv = Server::start("nettest-srv", &["--tcp4", "0"]);
    let port = srv.port("tcp4");
    let target = format!("127.0.0.1:{port}");
    let r = testgen(
        "nettest-load",
        &[
            "load",
            "--tcp",
            &target,
            "--rate",
            "10500",
            "--seconds",
            &seconds.to_string(),
        ],
    );
    let attempts = r["attempts"].as_u64().unwrap();
    let rate = r["rate"].as_f64().unwrap();
    eprintln!("load: {r}");
    assert_eq!(r["failed"].as_u64(), Some(0), "{r}");
    assert!(
        rate >= 10_000.0,
        "generator reached only {rate:.0} connects/s: {r}"
    );

    let m = agent.metrics();
    let counted = m.get(
        "netagent_connect_total",
        &[
            ("process", "loadgen"),
            ("proto", "tcp"),
            ("dport", &port.to_string()),
        ],
    );
    assert_eq!(
        counted, attempts as f64,
        "agent counted {counted}, generator made {attempts}"
    );
    let lost: f64 = m
        .series("netagent_events_lost_total")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(lost, 0.0, "events lost under load");
}
