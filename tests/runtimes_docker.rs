//! Real docker containers (Debian's docker.io 20.10, a private dockerd
//! this test starts and stops): traffic from inside them under known comms
//! is counted exactly per `container`, `container_id`, `pod` and
//! `namespace` — a plain container named by `--name`, and one labelled the
//! way cri-dockerd labels a Kubernetes container, in a kubepods cgroup —
//! and the service map shows container-to-container calls by name.
//!
//! The containers have no network of their own: the test wires a veth
//! between the client's and the server's namespaces (10.204.240.0/30 and
//! 10.204.241.0/30, IPv6 off), so nothing reaches the root namespace.

mod common;

use std::time::{Duration, Instant};

use common::runtimes::docker::Docker;
use common::runtimes::{owner, remove_rootfs, wire};
use common::*;

/// Scrapes until `ok` holds (bounded); the last scrape either way.
fn eventually(agent: &Agent, ok: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = agent.metrics();
        if ok(&m) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn with<'a>(
    mut l: Vec<(&'a str, &'a str)>,
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    l.extend_from_slice(more);
    l
}

#[test]
fn docker_containers_are_counted_by_name_pod_and_namespace() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let started = Instant::now();
    let Some(docker) = Docker::start() else {
        require(
            false,
            "docker.io (dockerd, docker) not installed: scripts/setup.sh installs it",
        );
        return;
    };
    eprintln!(
        "dockerd ready and image imported in {:?}",
        started.elapsed()
    );
    let (cli, srv) = (unique_comm("dkcli"), unique_comm("dksrv"));
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: cli\n    match_comm: \"{cli}\"\n  - name: srv\n    match_comm: \"{srv}\"\n\
         containers:\n  docker_root: \"{}\"\n  prune_interval_seconds: 1\n",
        docker.data_root.display()
    ));

    let serve = [
        "/bin/netagent-testgen",
        "--comm",
        &srv,
        "serve",
        "--tcp4",
        "8080",
        "--bind4",
        "0.0.0.0",
    ];
    let idle = [
        "/bin/netagent-testgen",
        "--comm",
        "idle",
        "serve",
        "--tcp4",
        "0",
    ];
    let web = docker.run("web", &[], "/docker", &serve);
    let client = docker.run("client", &[], "/docker", &idle);
    // A Kubernetes container as cri-dockerd runs it.
    let uid = "0b8e3f46-1a2b-4c3d-9e8f-7a6b5c4d3e2f";
    let pod_cgroup = format!("/kubepods/besteffort/pod{uid}");
    docker.scratch.record_cgroup(&pod_cgroup);
    let api = docker.run(
        &format!("k8s_api_api-0_shop_{uid}_0"),
        &[
            "--label",
            "io.kubernetes.pod.name=api-0",
            "--label",
            "io.kubernetes.pod.namespace=shop",
            "--label",
            "io.kubernetes.container.name=api",
            "--label",
            "io.kubernetes.docker.type=container",
            "--label",
            &format!("io.kubernetes.pod.uid={uid}"),
        ],
        &pod_cgroup,
        &idle,
    );
    let tag = format!("{:x}", std::process::id() % 0x10000);
    let (_, web_ip1) = wire(client.pid, web.pid, 240, &format!("{tag}1"));
    let (_, web_ip2) = wire(api.pid, web.pid, 241, &format!("{tag}2"));

    let out = docker.testgen(
        &client.name,
        &cli,
        &[
            "client",
            "--tcp4",
            &format!("{web_ip1}:8080"),
            "--connects",
            "7",
            "--exchanges",
            "3",
        ],
    );
    assert_eq!(out["tcp4"]["connects_ok"], 7, "{out}");
    let out = docker.testgen(
        &api.name,
        &cli,
        &[
            "client",
            "--tcp4",
            &format!("{web_ip2}:8080"),
            "--connects",
            "4",
        ],
    );
    assert_eq!(out["tcp4"]["connects_ok"], 4, "{out}");

    let opened = "netagent_tcp_connections_opened_total";
    let client_l = owner("cli", "client", &client.id, "", "");
    let api_l = owner("cli", "api", &api.id, "api-0", "shop");
    let web_l = owner("srv", "web", &web.id, "", "");
    let m = eventually(&agent, |m| {
        m.get(opened, &with(web_l.clone(), &[("direction", "inbound")])) == 12.0
    });
    let why = || format!("{:?}", m.series(opened));
    // 7 connects + the exchanges' connection; 4 connects; the server saw all.
    assert_eq!(
        m.get(
            opened,
            &with(client_l.clone(), &[("direction", "outbound")])
        ),
        8.0,
        "{}",
        why()
    );
    assert_eq!(
        m.get(opened, &with(api_l.clone(), &[("direction", "outbound")])),
        4.0,
        "{}",
        why()
    );
    assert_eq!(
        m.get(opened, &with(web_l.clone(), &[("direction", "inbound")])),
        12.0,
        "{}",
        why()
    );
    assert_eq!(m.series(opened).len(), 3, "nothing else: {}", why());
    assert_eq!(
        m.get(
            "netagent_tcp_connections_accepted_total",
            &with(web_l.clone(), &[("port", "8080")])
        ),
        12.0
    );
    assert_eq!(
        m.get(
            "netagent_tcp_listen_info",
            &with(
                web_l.clone(),
                &[("listen_addr", "0.0.0.0"), ("port", "8080")]
            )
        ),
        1.0,
        "{:?}",
        m.series("netagent_tcp_listen_info")
    );

    // One info series per container, read once each.
    for (c, name, pod, ns) in [
        (&client, "client", "", ""),
        (&api, "api", "api-0", "shop"),
        (&web, "web", "", ""),
    ] {
        let labels = [
            ("container_id", c.id.as_str()),
            ("container", name),
            ("pod", pod),
            ("namespace", ns),
            ("image", docker.image.as_str()),
            ("runtime", "docker"),
        ];
        assert_eq!(
            m.get("netagent_container_info", &labels),
            1.0,
            "{:?}",
            m.series("netagent_container_info")
        );
    }
    assert_eq!(m.series("netagent_container_info").len(), 3);
    let reads = &[("runtime", "docker"), ("result", "found")];
    assert_eq!(m.get("netagent_container_metadata_reads_total", reads), 3.0);

    // The service map: container -> container, by name.
    let g: serde_json::Value =
        serde_json::from_str(&http_get(agent.port, "/api/v1/graph", None).unwrap()).unwrap();
    let edge = |s: &str, t: &str| {
        g["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["source"] == s && e["target"] == t)
            .map(|e| e["connects_total"].clone())
    };
    assert_eq!(
        edge("container:client", "container:web"),
        Some(8.into()),
        "{g}"
    );
    assert_eq!(
        edge("container:shop/api-0/api", "container:web"),
        Some(4.into()),
        "{g}"
    );
    let peers: Vec<&serde_json::Value> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "peer")
        .collect();
    assert!(peers.is_empty(), "every end is local: {g}");
    let web_node = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "container:web")
        .unwrap();
    assert_eq!(web_node["container_id"], web.id.as_str());
    assert_eq!(web_node["processes"], serde_json::json!(["srv"]));

    // Removed: gone from the cache and the info family within the prune
    // interval (the kernel's series of the container stay, see README).
    docker.cli(&["rm", "-f", "client", &api.name]);
    let m = eventually(&agent, |m| m.series("netagent_container_info").len() == 1);
    assert_eq!(
        m.get("netagent_container_cache_entries", &[("kind", "container")]),
        1.0,
        "only web is left: {:?}",
        m.series("netagent_container_info")
    );
    drop(docker);
    remove_rootfs();
    eprintln!("docker test took {:?}", started.elapsed());
}
