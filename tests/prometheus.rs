//! The exposition as real Prometheus tooling sees it: `promtool check
//! metrics`, the OpenMetrics parser, and a real Prometheus server scraping
//! the agent and answering the README's PromQL examples.

mod common;
use common::prometheus_server::{sample_value as value, Prometheus};
use common::*;
use std::time::Duration;

const CLIENT: &str = "nettest-prom";

#[test]
fn promtool_accepts_the_text_exposition() {
    let _g = serial();
    if !require_bpf()
        || !require(
            have("promtool"),
            "promtool (Debian package prometheus) not installed",
        )
    {
        return;
    }
    let agent = Agent::start(&[("prom \"quoted\" \\ app", CLIENT)]);
    let srv = Server::start(
        "nettest-srv",
        &["--tcp4", "0", "--udp4", "0", "--delay-ms", "2"],
    );
    let (t4, u4) = (srv.port("tcp4"), srv.port("udp4"));
    testgen(
        CLIENT,
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{t4}"),
            "--udp4",
            &format!("127.0.0.1:{u4}"),
            "--connects",
            "3",
            "--sends",
            "3",
            "--exchanges",
            "3",
        ],
    );
    let text = agent.scrape();
    assert!(
        text.contains(r#"process="prom \"quoted\" \\ app""#),
        "escaped label: {text}"
    );
    promtool_check(&text);

    // OpenMetrics when asked, and it parses.
    let om = http_get(
        agent.port,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .unwrap();
    assert!(om.ends_with("# EOF\n"));
    openmetrics_parser::openmetrics::parse_openmetrics(&om)
        .unwrap_or_else(|e| panic!("OpenMetrics scrape does not parse: {e:?}\n{om}"));
}

/// Waits (30 s at most) until `ok` holds for `promql`; panics with `what`.
fn wait_for(
    prom: &Prometheus,
    promql: &str,
    what: &str,
    ok: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    prom.wait_for(promql, Duration::from_secs(30), ok)
        .unwrap_or_else(|r| panic!("{what}: last result of {promql}: {r:?}"))
}

#[test]
fn a_real_prometheus_scrapes_the_agent_and_answers_readme_queries() {
    let _g = serial();
    if !require_bpf()
        || !require(
            have("prometheus"),
            "prometheus server (Debian package prometheus) not installed",
        )
    {
        return;
    }
    let agent = Agent::start(&[("promclient", CLIENT)]);
    let prom = Prometheus::scraping(agent.port);
    wait_for(&prom, "up{job=\"netagent\"}", "agent scraped", |r| {
        r.len() == 1 && value(&r[0]) == 1.0
    });

    let srv = Server::start("nettest-srv", &["--tcp4", "0", "--delay-ms", "35"]);
    let t4 = srv.port("tcp4");
    let target = format!("127.0.0.1:{t4}");
    testgen(
        CLIENT,
        &[
            "client",
            "--tcp4",
            &target,
            "--connects",
            "40",
            "--exchanges",
            "5",
        ],
    );

    // README: "node map by edge".
    let edges = "sum by (process, dst_ip, dport) (netagent_edge_total)";
    let r = wait_for(&prom, edges, "edge counts", |r| {
        !r.is_empty() && value(&r[0]) >= 41.0
    });
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["metric"]["process"], "promclient");
    assert_eq!(r[0]["metric"]["dst_ip"], "127.0.0.1");
    assert_eq!(r[0]["metric"]["dport"], t4.to_string());
    // 40 connect-and-close plus the one connection carrying the exchanges.
    assert_eq!(value(&r[0]), 41.0);

    // README: "p95 send→recv duration to a port": every exchange took ~35 ms,
    // mid-bucket (25, 50] ms so scheduling jitter cannot move it.
    // rate() needs the histogram to grow after Prometheus first saw it.
    testgen(CLIENT, &["client", "--tcp4", &target, "--exchanges", "10"]);
    let p95 = "histogram_quantile(0.95, sum by (process, dport, le) (rate(netagent_tx_duration_seconds_bucket[1m])))";
    let r = wait_for(&prom, p95, "p95 duration", |r| {
        r.iter().any(|s| value(s).is_finite())
    });
    let v = value(&r[0]);
    assert!(
        (0.025..=0.05).contains(&v),
        "p95 {v} outside the (25, 50] ms bucket of the 35 ms delay: {r:?}"
    );

    // README: "connection rate per process" returns a positive rate.
    let rate = "sum by (process) (rate(netagent_connect_total[1m]))";
    let r = wait_for(&prom, rate, "connect rate", |r| {
        r.iter().any(|s| value(s) > 0.0)
    });
    assert_eq!(r[0]["metric"]["process"], "promclient");
}
