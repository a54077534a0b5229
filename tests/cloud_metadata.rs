//! Cloud instance metadata end to end: the real agent, pointed through
//! `cloud.base_url` at a fake metadata service per provider that answers
//! like the provider's documented API (tests/common/fake_cloud.rs), scraped
//! over HTTP. Every label of `netagent_cloud_info` is checked against the
//! fields the test gave the fake; field values carry a per-run nonce.
//! Which provider is asked comes from a fake DMI identity (`cloud.dmi_root`),
//! and only that provider's paths are requested; a machine whose DMI names
//! no cloud asks nobody.
//! Also: nothing answering (closed port, or a service that never answers)
//! costs start-up and scrapes nothing and exports no `netagent_cloud_info`;
//! a service that appears later is found at the next refresh.

mod common;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::fake_cloud::*;
use common::*;

const INFO: &str = "netagent_cloud_info";
const ROUNDS: &str = "netagent_cloud_probes_total";
const DURATION: &str = "netagent_cloud_probe_duration_seconds";
const DECISION: &str = "netagent_cloud_detection_info";

/// The agent with cloud detection against `base_url` on a machine whose
/// DMI identity is `dmi`; `extra` adds keys to the `cloud:` section. Its
/// kernel side tracks one comm nobody uses, and interface counting is off,
/// so start-up is quick and nothing else shows up.
fn agent_with(
    dmi: &FakeDmi,
    base_url: &str,
    timeout_seconds: f64,
    refresh_seconds: f64,
    extra: &str,
) -> Agent {
    Agent::start_with_yaml(&format!(
        "targets:\n  - name: none\n    match_comm: nettest-nocloud\n\
         interface_stats:\n  enabled: false\n\
         cloud:\n  dmi_root: \"{}\"\n  base_url: \"{base_url}\"\n  timeout_seconds: {timeout_seconds}\n  \
         refresh_interval_seconds: {refresh_seconds}\n{extra}",
        dmi.path()
    ))
}

fn agent(dmi: &FakeDmi, base_url: &str, timeout_seconds: f64, refresh_seconds: f64) -> Agent {
    agent_with(dmi, base_url, timeout_seconds, refresh_seconds, "")
}

/// The `netagent_cloud_detection_info` series: (provider, source).
fn decision(m: &Metrics) -> Vec<(String, String)> {
    m.series(DECISION)
        .iter()
        .map(|(l, v)| {
            assert_eq!(*v, 1.0);
            (l["provider"].clone(), l["source"].clone())
        })
        .collect()
}

/// Path prefixes of each provider's metadata API.
const PATHS: [(&str, &str); 4] = [
    ("aws", "/latest/"),
    ("gcp", "/computeMetadata/"),
    ("azure", "/metadata/"),
    ("hetzner", "/hetzner/"),
];

/// Every request the fake saw went to `provider`'s API and no other.
fn only_asked(fake: &FakeCloud, provider: &str) {
    let seen = fake.requests();
    assert!(!seen.is_empty(), "{provider} was not asked");
    for r in &seen {
        let (who, _) = PATHS
            .iter()
            .find(|(_, prefix)| r.target.starts_with(prefix))
            .unwrap_or_else(|| panic!("unknown path {r:?}"));
        assert_eq!(*who, provider, "asked another provider: {r:?}");
    }
}

/// Detection rounds so far: (detected, not_detected).
fn rounds(m: &Metrics) -> (f64, f64) {
    (
        m.get(ROUNDS, &[("result", "detected")]),
        m.get(ROUNDS, &[("result", "not_detected")]),
    )
}

/// Scrapes until `done` holds for the scrape (bounded).
fn scrape_until(agent: &Agent, within: Duration, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + within;
    loop {
        let m = agent.metrics();
        if done(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}; last scrape: {:?}\nagent log:\n{}",
            m.series(ROUNDS),
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Scrapes until the first detection round has ended, found or not.
fn first_round(agent: &Agent) -> Metrics {
    scrape_until(agent, Duration::from_secs(15), |m| {
        let (found, not_found) = rounds(m);
        found + not_found >= 1.0
    })
}

/// The first round found an instance.
fn detected(agent: &Agent) -> Metrics {
    let m = first_round(agent);
    assert_eq!(
        rounds(&m),
        (1.0, 0.0),
        "not detected; agent log:\n{}",
        agent.stderr()
    );
    m
}

/// The single `netagent_cloud_info` series has exactly these labels, and 1.
fn assert_info(m: &Metrics, want: &[(&str, &str)]) {
    let series = m.series(INFO);
    assert_eq!(series.len(), 1, "{series:?}");
    let (labels, v) = series[0];
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(labels, &want);
    assert_eq!(v, 1.0);
}

/// Prints the agent's own measure of the last round (for docs/BENCHMARKS.md).
fn report_duration(what: &str, m: &Metrics) -> f64 {
    let d = m.get(DURATION, &[]);
    eprintln!("cloud probe ({what}): {:.1} ms", d * 1e3);
    d
}

fn health_provider(agent: &Agent) -> serde_json::Value {
    let body = match http_get(agent.port, "/health", None) {
        Ok(b) => b,
        Err(e) => panic!("/health: {e}"),
    };
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    doc["cloud_provider"].clone()
}

fn aws_instance(n: u64) -> AwsInstance {
    AwsInstance {
        account_id: format!("{:012}", n % 1_000_000_000_000),
        instance_id: format!("i-0{:016x}", n),
        instance_type: "m7g.large".into(),
        region: "eu-north-1".into(),
        availability_zone: "eu-north-1b".into(),
        availability_zone_id: format!("eun1-az{}", n % 3 + 1),
        life_cycle: "spot".into(),
        private_ip: format!("10.{}.{}.7", n % 250, (n >> 8) % 250),
        public_ip: Some(format!("198.51.100.{}", n % 250 + 1)),
    }
}

fn aws_labels(i: &AwsInstance) -> Vec<(&'static str, String)> {
    vec![
        ("provider", "aws".into()),
        ("account_id", i.account_id.clone()),
        ("instance_id", i.instance_id.clone()),
        ("instance_type", i.instance_type.clone()),
        ("region", i.region.clone()),
        ("availability_zone", i.availability_zone.clone()),
        ("availability_zone_id", i.availability_zone_id.clone()),
        ("lifecycle", i.life_cycle.clone()),
        ("private_ip", i.private_ip.clone()),
        ("public_ip", i.public_ip.clone().unwrap_or_default()),
    ]
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn aws_imdsv2_instance_is_exported_with_every_label() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let instance = aws_instance(nonce());
    let want = aws_labels(&instance);
    let fake = FakeCloud::start(Fake::Aws(instance));
    // Like IMDSv2 when it is required: no token, no metadata.
    let err = http_get(
        fake.port,
        "/latest/dynamic/instance-identity/document",
        None,
    )
    .expect_err("a GET without a token must be refused");
    assert!(err.starts_with("HTTP/1.1 401"), "{err}");
    let before = fake.requests().len();

    let dmi = FakeDmi::aws();
    let agent = agent(&dmi, &fake.url(), 2.0, 600.0);
    let m = detected(&agent);
    assert_info(&m, &as_refs(&want));
    assert_eq!(decision(&m), [("aws".into(), "dmi".into())]);
    only_asked(&fake, "aws");
    report_duration("aws, fake IMDSv2", &m);
    assert_eq!(health_provider(&agent), "aws");
    if require(have("promtool"), "promtool to check the exposition") {
        promtool_check(&agent.scrape());
    }

    // The token flow: one PUT for a token with its TTL header, then every
    // GET carries that token, and none was refused.
    let seen = fake.requests().split_off(before);
    let puts: Vec<&Seen> = seen.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 1, "{seen:#?}");
    assert_eq!(puts[0].target, "/latest/api/token");
    let ttl: u32 = puts[0].headers["x-aws-ec2-metadata-token-ttl-seconds"]
        .parse()
        .unwrap();
    assert!((1..=21600).contains(&ttl), "{ttl}");
    let token = fake.tokens()[0].clone();
    let gets: Vec<&Seen> = seen
        .iter()
        .filter(|r| r.method == "GET" && r.target.starts_with("/latest/"))
        .collect();
    assert!(
        gets.iter()
            .any(|r| r.target == "/latest/dynamic/instance-identity/document"),
        "{gets:#?}"
    );
    for r in &gets {
        assert_eq!(
            r.headers.get("x-aws-ec2-metadata-token"),
            Some(&token),
            "{r:?}"
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
}

#[test]
fn gcp_spot_vm_without_external_ip() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let n = nonce();
    let project = format!("netagent-test-{:x}", n % 0xffffff);
    let instance_id = 4_000_000_000_000_000_000 + n % 1_000_000_000;
    let ip = format!("10.128.{}.{}", n % 250, (n >> 8) % 250 + 2);
    let fake = FakeCloud::start(Fake::Gcp(GcpInstance {
        project_id: project.clone(),
        numeric_project_id: 100_000_000_000 + n % 1_000_000,
        instance_id,
        machine_type: "n2-standard-4".into(),
        zone: "europe-west4-b".into(),
        provisioning_model: "SPOT".into(),
        preemptible: true,
        ip: ip.clone(),
        external_ip: None,
        send_flavor: true,
    }));
    // Like the metadata server: without the header, 403.
    let err = http_get(fake.port, "/computeMetadata/v1/instance/id", None)
        .expect_err("a GET without Metadata-Flavor must be refused");
    assert!(err.starts_with("HTTP/1.1 403"), "{err}");
    let before = fake.requests().len();

    let dmi = FakeDmi::gcp();
    let agent = agent(&dmi, &fake.url(), 2.0, 600.0);
    let m = detected(&agent);
    assert_eq!(decision(&m), [("gcp".into(), "dmi".into())]);
    only_asked(&fake, "gcp");
    assert_info(
        &m,
        &[
            ("provider", "gcp"),
            ("account_id", &project),
            ("instance_id", &instance_id.to_string()),
            ("instance_type", "n2-standard-4"),
            ("region", "europe-west4"),
            ("availability_zone", "europe-west4-b"),
            ("availability_zone_id", ""),
            ("lifecycle", "spot"),
            ("private_ip", &ip),
            ("public_ip", ""),
        ],
    );
    report_duration("gcp, fake metadata server", &m);
    let gcp: Vec<Seen> = fake.requests()[before..]
        .iter()
        .filter(|r| r.target.starts_with("/computeMetadata/"))
        .cloned()
        .collect();
    assert!(!gcp.is_empty());
    for r in &gcp {
        assert_eq!(
            r.headers.get("metadata-flavor").map(String::as_str),
            Some("Google"),
            "{r:?}"
        );
    }
}

/// Something answering GCP's paths without `Metadata-Flavor: Google` in
/// its response is not the metadata server.
#[test]
fn gcp_answers_without_the_flavor_header_are_not_trusted() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let fake = FakeCloud::start(Fake::Gcp(GcpInstance {
        project_id: "impostor".into(),
        numeric_project_id: 1,
        instance_id: 1,
        machine_type: "e2-micro".into(),
        zone: "us-central1-a".into(),
        provisioning_model: "STANDARD".into(),
        preemptible: false,
        ip: "10.0.0.2".into(),
        external_ip: Some("203.0.113.5".into()),
        send_flavor: false,
    }));
    let dmi = FakeDmi::gcp();
    let agent = agent(&dmi, &fake.url(), 2.0, 600.0);
    let m = first_round(&agent);
    assert_eq!(rounds(&m), (0.0, 1.0));
    assert!(m.series(INFO).is_empty(), "{:?}", m.series(INFO));
    // The agent did ask (and got 200s), so the header check is what refused.
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.target == "/computeMetadata/v1/project/project-id" && r.status == 200));
    assert_eq!(health_provider(&agent), serde_json::Value::Null);
}

#[test]
fn azure_regular_vm_in_a_zone() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let n = nonce();
    let subscription = format!("8d10da13-8125-4ba9-a717-{:012x}", n % 0xffff_ffff_ffff);
    let vm_id = format!(
        "02aab8a4-74ef-476e-8182-{:012x}",
        (n >> 4) % 0xffff_ffff_ffff
    );
    let private = format!("10.1.0.{}", n % 250 + 4);
    let public = format!("203.0.113.{}", (n >> 8) % 250 + 1);
    let fake = FakeCloud::start(Fake::Azure(AzureInstance {
        subscription_id: subscription.clone(),
        vm_id: vm_id.clone(),
        vm_size: "Standard_D2s_v5".into(),
        location: "westeurope".into(),
        zone: "3".into(),
        priority: "Regular".into(),
        eviction_policy: String::new(),
        private_ip: private.clone(),
        public_ip: public.clone(),
    }));
    // Like IMDS: without `Metadata: true`, 400.
    let err = http_get(fake.port, "/metadata/instance?api-version=2021-02-01", None)
        .expect_err("a GET without the Metadata header must be refused");
    assert!(err.starts_with("HTTP/1.1 400"), "{err}");

    let dmi = FakeDmi::azure();
    let agent = agent(&dmi, &fake.url(), 2.0, 600.0);
    let m = detected(&agent);
    assert_eq!(decision(&m), [("azure".into(), "dmi".into())]);
    only_asked(&fake, "azure");
    assert_info(
        &m,
        &[
            ("provider", "azure"),
            ("account_id", &subscription),
            ("instance_id", &vm_id),
            ("instance_type", "Standard_D2s_v5"),
            ("region", "westeurope"),
            ("availability_zone", "westeurope-3"),
            ("availability_zone_id", ""),
            ("lifecycle", "on-demand"),
            ("private_ip", &private),
            ("public_ip", &public),
        ],
    );
    report_duration("azure, fake IMDS", &m);
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.target == "/metadata/instance?api-version=2021-02-01"
            && r.headers.get("metadata").map(String::as_str) == Some("true")
            && r.status == 200));
}

#[test]
fn hetzner_server_in_a_private_network() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let n = nonce();
    let id = 10_000_000 + n % 90_000_000;
    let public = format!("192.0.2.{}", n % 250 + 1);
    let private = format!("10.0.0.{}", (n >> 8) % 250 + 2);
    let fake = FakeCloud::start(Fake::Hetzner(HetznerServer {
        instance_id: id,
        hostname: format!("netagent-{id}"),
        datacenter: "fsn1-dc14".into(),
        network_zone: "eu-central".into(),
        public_ipv4: public.clone(),
        private_ip: Some(private.clone()),
    }));
    let dmi = FakeDmi::hetzner();
    let agent = agent(&dmi, &fake.url(), 2.0, 600.0);
    let m = detected(&agent);
    assert_eq!(decision(&m), [("hetzner".into(), "dmi".into())]);
    only_asked(&fake, "hetzner");
    assert_info(
        &m,
        &[
            ("provider", "hetzner"),
            ("account_id", ""),
            ("instance_id", &id.to_string()),
            ("instance_type", ""),
            ("region", "eu-central"),
            ("availability_zone", "fsn1-dc14"),
            ("availability_zone_id", ""),
            ("lifecycle", "on-demand"),
            ("private_ip", &private),
            ("public_ip", &public),
        ],
    );
    report_duration("hetzner, fake metadata", &m);
}

/// Nothing listens at the base URL: the round fails at once, there is no
/// info series, one info line says so, and scrapes are unaffected.
#[test]
fn nothing_answering_exports_no_info_and_costs_nothing() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let closed = free_port();
    let dmi = FakeDmi::aws();
    let agent = agent(&dmi, &format!("http://127.0.0.1:{closed}"), 1.0, 600.0);
    let m = first_round(&agent);
    assert_eq!(rounds(&m), (0.0, 1.0));
    assert!(m.series(INFO).is_empty(), "{:?}", m.series(INFO));
    let d = report_duration("closed port", &m);
    assert!(
        d < 1.0,
        "a refused connection must not wait for the timeout: {d}"
    );
    let t = Instant::now();
    let _ = agent.scrape();
    let scrape = t.elapsed();
    eprintln!(
        "scrape with nothing answering: {:.1} ms",
        scrape.as_secs_f64() * 1e3
    );
    assert!(scrape < Duration::from_secs(2), "{scrape:?}");
    let log = agent.stderr();
    assert_eq!(
        log.matches("the cloud metadata service did not answer")
            .count(),
        1,
        "{log}"
    );
}

/// A metadata address that accepts and never answers (a black hole): the
/// agent is ready and serves /metrics while the round is still pending,
/// and the round ends at `timeout_seconds`, not later.
#[test]
fn a_black_hole_delays_neither_start_up_nor_scrapes() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let hole = Silent::start();
    let timeout = 8.0;
    let t = Instant::now();
    let dmi = FakeDmi::hetzner();
    let agent = agent(
        &dmi,
        &format!("http://127.0.0.1:{}", hole.port),
        timeout,
        600.0,
    );
    let ready = t.elapsed();
    let t = Instant::now();
    let m = agent.metrics();
    let scrape = t.elapsed();
    eprintln!(
        "black hole: ready after {:.0} ms, first scrape {:.1} ms",
        ready.as_secs_f64() * 1e3,
        scrape.as_secs_f64() * 1e3
    );
    assert!(
        ready < Duration::from_secs_f64(timeout),
        "start-up waited for the probe: {ready:?}"
    );
    assert_eq!(rounds(&m), (0.0, 0.0), "the round should still be pending");
    assert!(m.series(INFO).is_empty());
    assert!(scrape < Duration::from_secs(2), "{scrape:?}");

    let m = scrape_until(&agent, Duration::from_secs(20), |m| rounds(m).1 >= 1.0);
    assert_eq!(rounds(&m), (0.0, 1.0));
    let d = report_duration("black hole", &m);
    assert!(
        (timeout..timeout + 1.0).contains(&d),
        "a round must end at the timeout: {d}"
    );
    assert!(m.series(INFO).is_empty());
}

/// Not found at start, found at a later refresh once a service answers.
#[test]
fn a_service_that_appears_later_is_found_at_the_next_refresh() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let port = free_port();
    let dmi = FakeDmi::aws();
    let agent = agent(&dmi, &format!("http://127.0.0.1:{port}"), 1.0, 1.0);
    let m = first_round(&agent);
    assert_eq!(m.get(ROUNDS, &[("result", "detected")]), 0.0);
    assert!(m.series(INFO).is_empty());

    let instance = aws_instance(nonce());
    let want = aws_labels(&instance);
    let _fake = FakeCloud::start_on(port, Fake::Aws(instance));
    let m = scrape_until(&agent, Duration::from_secs(10), |m| rounds(m).0 >= 1.0);
    assert_info(&m, &as_refs(&want));
    // Refreshes keep going and keep finding the same instance.
    let m = scrape_until(&agent, Duration::from_secs(10), |m| rounds(m).0 >= 2.0);
    assert_info(&m, &as_refs(&want));
    report_duration("aws, a refresh on an idle agent", &m);
    let log = agent.stderr();
    assert_eq!(log.matches("cloud instance detected").count(), 1, "{log}");
}

/// A plain QEMU/KVM guest asks no metadata service at all: the fake (which
/// would answer like AWS) sees no request, there are no rounds, and the
/// decision says why. `cloud.provider: none` silences even an EC2 machine,
/// and `cloud.provider: aws` asks AWS whatever the firmware says.
#[test]
fn a_machine_whose_dmi_names_no_cloud_asks_no_one() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let fake = FakeCloud::start(Fake::Aws(aws_instance(nonce())));
    let qemu = FakeDmi::qemu();
    let ec2 = FakeDmi::aws();
    for (dmi, extra, want) in [
        (&qemu, "", ("none", "dmi")),
        (&ec2, "  provider: none\n", ("none", "config")),
    ] {
        let agent = agent_with(dmi, &fake.url(), 1.0, 1.0, extra);
        // With a 1 s refresh, an agent that asked would have asked twice
        // by now.
        std::thread::sleep(Duration::from_millis(2500));
        let m = agent.metrics();
        assert_eq!(
            decision(&m),
            [(want.0.to_string(), want.1.to_string())],
            "{extra}"
        );
        assert_eq!(rounds(&m), (0.0, 0.0), "{extra}");
        assert!(m.series(INFO).is_empty());
        let seen = fake.requests();
        assert!(seen.is_empty(), "{extra}: asked {seen:?}");
        assert_eq!(health_provider(&agent), serde_json::Value::Null);
        if want.1 == "dmi" {
            let log = agent.stderr();
            assert!(
                log.contains("names no known cloud") && log.contains("QEMU"),
                "{log}"
            );
        }
    }

    let agent = agent_with(&qemu, &fake.url(), 2.0, 600.0, "  provider: aws\n");
    let m = detected(&agent);
    assert_eq!(decision(&m), [("aws".into(), "config".into())]);
    only_asked(&fake, "aws");
}
