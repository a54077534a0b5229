//! The exposition as real Prometheus tooling sees it: `promtool check
//! metrics`, the OpenMetrics parser, and a real Prometheus server scraping
//! the agent and answering the README's PromQL examples.

mod common;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

struct Prometheus {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target_port: u16) -> Prometheus {
        let dir = TempDir::new("prom");
        let port = free_port();
        let cfg = dir.0.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
                 - job_name: netagent\n    static_configs:\n      - targets: [\"127.0.0.1:{target_port}\"]\n"
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// Instant query; returns the result vector.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let body = http_get(self.port, &format!("/api/v1/query?query={q}"), None)
            .unwrap_or_else(|e| panic!("query {promql}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{body}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    fn wait_for(
        &self,
        promql: &str,
        what: &str,
        ok: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = http_get(self.port, "/-/ready", None)
                .ok()
                .map(|_| self.query(promql));
            if let Some(r) = r {
                if ok(&r) {
                    return r;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: last result of {promql}: {r:?}"
                );
            } else {
                assert!(Instant::now() < deadline, "prometheus not ready");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
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
    let prom = Prometheus::start(agent.port);
    prom.wait_for("up{job=\"netagent\"}", "agent scraped", |r| {
        r.len() == 1 && value(&r[0]) == 1.0
    });

    let srv = Server::start("nettest-srv", &["--tcp4", "0", "--delay-ms", "20"]);
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
    let r = prom.wait_for(edges, "edge counts", |r| {
        !r.is_empty() && value(&r[0]) >= 41.0
    });
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["metric"]["process"], "promclient");
    assert_eq!(r[0]["metric"]["dst_ip"], "127.0.0.1");
    assert_eq!(r[0]["metric"]["dport"], t4.to_string());
    // 40 connect-and-close plus the one connection carrying the exchanges.
    assert_eq!(value(&r[0]), 41.0);

    // README: "p95 send→recv duration to a port": every exchange took ~20 ms.
    // rate() needs the histogram to grow after Prometheus first saw it.
    testgen(CLIENT, &["client", "--tcp4", &target, "--exchanges", "10"]);
    let p95 = "histogram_quantile(0.95, sum by (process, dport, le) (rate(netagent_tx_duration_seconds_bucket[1m])))";
    let r = prom.wait_for(p95, "p95 duration", |r| {
        r.iter().any(|s| value(s).is_finite())
    });
    let v = value(&r[0]);
    assert!(
        (0.01..=0.025).contains(&v),
        "p95 {v} outside the 20 ms bucket: {r:?}"
    );

    // README: "connection rate per process" returns a positive rate.
    let rate = "sum by (process) (rate(netagent_connect_total[1m]))";
    let r = prom.wait_for(rate, "connect rate", |r| r.iter().any(|s| value(s) > 0.0));
    assert_eq!(r[0]["metric"]["process"], "promclient");
}
