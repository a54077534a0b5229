//! The compose file's netagent and Prometheus services, run as compose
//! would run them (pod.rs reads their network mode, PID namespace,
//! capabilities, volumes and command from deploy/observability/compose.yaml)
//! by the image test's daemon: netagent from the image the test built from
//! the same Dockerfile, Prometheus from Debian's `prometheus` binary in an
//! image built on the same local base (no registry: the compose file's
//! prom/prometheus cannot be pulled). Only ports change (other agents may
//! hold 9102 and 9090) and the scrape interval (15 s → 1 s). Prometheus
//! scrapes the containerized agent with the shipped scrape config and
//! rules; a dashboard query returns the test's traffic, and the exact count
//! reaches Prometheus.

use super::containerd::Containerd;
use super::dashboard::{dashboard_targets, substitute, value_variables};
use super::docker::{stop_within_grace, Container, Docker};
use super::image::{sum, wait_serving, BASE_TAG};
use super::kernel::{grantable, Held};
use super::pod::{self, Mount, RunSpec, Source};
use super::{read, repo, yaml};
use crate::common::prometheus_server::{sample_value, PromClient};
use crate::common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const PROMETHEUS_TAG: &str = "netagent-test/prometheus:debian";

/// `docker run -d --name NAME <spec> IMAGE COMMAND` with mounts resolved.
fn start(
    docker: &Docker,
    name: &str,
    spec: &RunSpec,
    image: &str,
    resolve: impl Fn(&Mount) -> String,
) {
    let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.into()];
    args.extend(spec.docker_args(resolve));
    args.push(image.to_string());
    args.extend(spec.command.iter().cloned());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    docker.ok(&argv, Duration::from_secs(60));
}

/// `text` with `from` replaced by `to`; `from` must be there.
fn replaced(text: &str, from: &str, to: &str, what: &str) -> String {
    assert!(text.contains(from), "{what} no longer has {from:?}");
    text.replace(from, to)
}

/// Debian's prometheus (the host's binary, from scripts/setup.sh) in an
/// image on the local base; the compose service's command is its argv.
fn build_prometheus_image(docker: &Docker) {
    let ctx = TempDir::new("promimg");
    let bin = which("prometheus").expect("prometheus (Debian package) not installed");
    std::fs::copy(&bin, ctx.0.join("prometheus")).unwrap();
    ctx.write(
        "Dockerfile",
        "ARG BASE\nFROM ${BASE}\nCOPY prometheus /bin/prometheus\nENTRYPOINT [\"/bin/prometheus\"]\n",
    );
    docker.ok(
        &[
            "build",
            "--network=none",
            "--progress=plain",
            "--build-arg",
            &format!("BASE={BASE_TAG}"),
            "-t",
            PROMETHEUS_TAG,
            ctx.0.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.exists())
}

/// Phase 3 of the image test; returns what Prometheus saw.
pub(super) fn run_the_compose_services(docker: &Docker, image: &str) -> BTreeMap<String, f64> {
    let compose_dir = repo().join("deploy/observability");
    let compose = yaml(&read("deploy/observability/compose.yaml"), "compose.yaml");
    let netagent = pod::from_compose(&compose, "netagent", &compose_dir);
    let prometheus = pod::from_compose(&compose, "prometheus", &compose_dir);

    // netagent: the image this test built from the Dockerfile compose names.
    let build = &compose["services"]["netagent"]["build"];
    assert_eq!(
        compose_dir
            .join(build["context"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        repo().canonicalize().unwrap(),
        "compose builds from the repository root"
    );
    assert_eq!(build["dockerfile"], "Dockerfile");
    assert_eq!(
        netagent.image, image,
        "compose and the DaemonSet name one image"
    );

    let cfg = TempDir::new("composecfg");
    let agent_port = free_port();
    let agent_cfg = cfg.write(
        "netagent.yaml",
        &replaced(
            &read("deploy/observability/netagent.yaml"),
            "listen_addr: \"127.0.0.1:9102\"",
            &format!("listen_addr: \"127.0.0.1:{agent_port}\""),
            "observability/netagent.yaml",
        ),
    );
    // deploy/prometheus as compose mounts it, scraping the agent's port
    // every second.
    let prom_dir = cfg.0.join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let mut prom_cfg = read("deploy/prometheus/prometheus.yml");
    for (from, to) in [
        ("scrape_interval: 15s", "scrape_interval: 1s".to_string()),
        ("evaluation_interval: 15s", "evaluation_interval: 1s".into()),
        ("scrape_timeout: 10s", "scrape_timeout: 1s".into()),
        ("localhost:9102", format!("localhost:{agent_port}")),
    ] {
        prom_cfg = replaced(&prom_cfg, from, &to, "prometheus.yml");
    }
    std::fs::write(prom_dir.join("prometheus.yml"), prom_cfg).unwrap();
    std::fs::copy(
        repo().join("deploy/prometheus/netagent.rules.yml"),
        prom_dir.join("netagent.rules.yml"),
    )
    .unwrap();
    let prom_port = free_port();
    let mut prometheus = prometheus;
    prometheus.command = prometheus
        .command
        .iter()
        .map(|a| {
            if a == "--web.listen-address=127.0.0.1:9090" {
                format!("--web.listen-address=127.0.0.1:{prom_port}")
            } else {
                a.clone()
            }
        })
        .collect();
    assert!(
        prometheus
            .command
            .contains(&format!("--web.listen-address=127.0.0.1:{prom_port}")),
        "compose's Prometheus no longer listens on 127.0.0.1:9090: {:?}",
        prometheus.command
    );
    let pid = std::process::id();
    let volume = format!("netagent-test-prometheus-data-{pid}");
    let resolve = |m: &Mount| -> String {
        match &m.source {
            Source::Host(p) if p.ends_with("netagent.yaml") => agent_cfg.display().to_string(),
            Source::Host(p) if p.ends_with("prometheus") => prom_dir.display().to_string(),
            Source::Host(p) => {
                assert!(
                    Path::new(p).is_absolute() && p.exists(),
                    "compose mounts {}",
                    p.display()
                );
                p.display().to_string()
            }
            Source::Volume(v) => {
                assert_eq!(v, "prometheus-data");
                volume.clone()
            }
            Source::ConfigMap => unreachable!(),
        }
    };

    let t = Instant::now();
    build_prometheus_image(docker);
    let mut seen = BTreeMap::new();
    seen.insert("prometheus_image_s".to_string(), t.elapsed().as_secs_f64());

    // netagent through containerd: Docker 20.10 refuses its cap_add
    // (containerd.rs).
    let ctr = Containerd::of(docker);
    let (_, withheld) = grantable(&netagent);
    let mut netagent = netagent;
    netagent.security.retain(|o| {
        !withheld
            .iter()
            .any(|w| o.strip_prefix("--cap-add=") == Some(w))
    });
    let agent_image = ctr.import(image);
    let logs = TempDir::new("composelogs");
    let agent_name = format!("netagent-compose-{pid}");
    let mut agent = ctr.start(&agent_name, &netagent, &agent_image, &resolve, &logs);
    wait_serving(&agent_name, agent_port, "/health", || {
        agent.exited().map(|s| format!("{s}\n{}", agent.logs()))
    });
    let agent_pid = agent.pid();
    let prom_name = format!("netagent-prometheus-{pid}");
    start(docker, &prom_name, &prometheus, PROMETHEUS_TAG, resolve);
    let prom_container = Container {
        docker,
        name: prom_name.clone(),
    };
    wait_serving(&prom_name, prom_port, "/-/ready", || {
        (docker.inspect(&prom_name, "{{.State.Running}}") != "true")
            .then(|| docker.logs(&prom_name))
    });
    let prom = PromClient { port: prom_port };
    prom.wait_for("up{job=\"netagent\"} == 1", Duration::from_secs(30), |r| {
        r.len() == 1
    })
    .unwrap_or_else(|r| panic!("Prometheus does not scrape the containerized agent: {r:?}"));

    // Traffic the dashboard shows: connects from this test's comm.
    let cli = unique_comm("nimgc");
    let srv = Server::start(&unique_comm("nimgs"), &["--tcp4", "0"]);
    let port = srv.port("tcp4").to_string();
    let n = 9u64;
    for round in 0..2 {
        // Two rounds a few scrapes apart, so that rate() sees growth.
        testgen(
            &cli,
            &[
                "client",
                "--tcp4",
                &format!("127.0.0.1:{port}"),
                "--connects",
                &n.to_string(),
            ],
        );
        if round == 0 {
            std::thread::sleep(Duration::from_secs(3));
        }
    }
    let exact =
        format!("netagent_connect_total{{process=\"{cli}\",proto=\"tcp\",dport=\"{port}\"}}");
    let r = prom
        .wait_for(&exact, Duration::from_secs(20), |r| {
            r.len() == 1 && sample_value(&r[0]) >= (2 * n) as f64
        })
        .unwrap_or_else(|r| panic!("{exact}: {r:?}"));
    assert_eq!(sample_value(&r[0]), (2 * n) as f64, "{exact}");
    seen.insert("connects_in_prometheus".into(), sample_value(&r[0]));
    // And the agent says the same.
    let m = Metrics::parse(&http_get(agent_port, "/metrics", None).unwrap());
    assert_eq!(
        sum(
            &m,
            "netagent_connect_total",
            &[("process", &cli), ("proto", "tcp"), ("dport", &port)]
        ),
        (2 * n) as f64
    );

    // A dashboard panel's PromQL, as Grafana sends it with "All" selected.
    let dash: serde_json::Value = serde_json::from_str(&read("dashboards/netagent.json")).unwrap();
    let panel = "Connection rate by process and port";
    let (_, _, expr, _) = dashboard_targets(&dash)
        .into_iter()
        .find(|(title, ..)| title == panel)
        .unwrap_or_else(|| panic!("no dashboard panel {panel:?}"));
    let q = substitute(&expr, &value_variables(&dash));
    let r = prom
        .wait_for(&q, Duration::from_secs(20), |r| {
            r.iter().any(|s| {
                s["metric"]["process"] == cli.as_str()
                    && s["metric"]["dport"] == port.as_str()
                    && sample_value(s) > 0.0
            })
        })
        .unwrap_or_else(|r| {
            panic!("dashboard panel {panel:?}: {q}\n gave no rate for {cli}: {r:?}")
        });
    let rate = r
        .iter()
        .find(|s| s["metric"]["process"] == cli.as_str() && s["metric"]["dport"] == port.as_str())
        .map(sample_value)
        .unwrap();
    seen.insert("dashboard_rate_per_s".into(), rate);

    let held = Held::of(agent_pid);
    stop_within_grace(docker, &prom_name, prometheus.stop_timeout);
    let (took, status) = agent.stop(netagent.stop_timeout);
    assert!(
        status.is_some_and(|s| s.success()),
        "{agent_name}: not shut down by SIGTERM within {} s ({status:?}):\n{}",
        netagent.stop_timeout,
        agent.logs()
    );
    seen.insert("agent_stop_s".into(), took);
    held.assert_gone("the compose file's netagent");
    drop(prom_container);
    drop(agent);
    docker.quiet(&["volume", "rm", "-f", &volume], Duration::from_secs(30));
    seen
}
