//! Real containerd containers the way Kubernetes runs them (Debian's
//! containerd 1.6, a private daemon this test starts and stops, driven
//! with `ctr -n k8s.io`: kubepods cgroups, the CRI annotations, a sandbox
//! per pod whose network namespace the pod's containers share): traffic
//! between two pods is counted exactly per `container`, `pod` and
//! `namespace` and shown by name in the service map; and 1,000 containers
//! started and removed leave nothing in the agent's cache.

mod common;

use std::time::{Duration, Instant};

use common::runtimes::containerd::Containerd;
use common::runtimes::{new_id, owner, remove_rootfs, wire};
use common::*;

fn eventually(agent: &Agent, timeout: Duration, ok: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + timeout;
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

fn start() -> Option<Containerd> {
    let c = Containerd::start();
    if c.is_none() {
        require(
            false,
            "containerd and ctr not installed: scripts/setup.sh installs them",
        );
    }
    c
}

#[test]
fn pods_of_containerd_cri_are_counted_by_pod_namespace_and_container() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let started = Instant::now();
    let Some(ctrd) = start() else { return };
    let (cli, srv) = (unique_comm("ctcli"), unique_comm("ctsrv"));
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: cli\n    match_comm: \"{cli}\"\n  - name: srv\n    match_comm: \"{srv}\"\n\
         containers:\n  containerd_state: \"{}\"\n  prune_interval_seconds: 1\n",
        ctrd.state.display()
    ));
    let front_pod = ctrd.pod("frontend-6d4cf56db6-x7k2p", "shop");
    let web_pod = ctrd.pod("websrv-5f7d8c9b4-kq2lz", "shop");
    let tag = format!("{:x}", std::process::id() % 0x10000);
    let (_, web_ip) = wire(
        front_pod.sandbox.pid,
        web_pod.sandbox.pid,
        242,
        &format!("{tag}c"),
    );
    let websrv = ctrd.container(
        &web_pod,
        "websrv",
        "registry.local/shop/websrv:2.0",
        &[
            "/bin/netagent-testgen",
            "--comm",
            &srv,
            "serve",
            "--tcp4",
            "8080",
            "--bind4",
            "0.0.0.0",
        ],
    );
    let frontend = ctrd.container(
        &front_pod,
        "frontend",
        "registry.local/shop/frontend:1.0",
        &[
            "/bin/netagent-testgen",
            "--comm",
            "idle",
            "serve",
            "--tcp4",
            "0",
        ],
    );
    // The server listens once the agent can see it (the kernel records new
    // listeners only).
    let out = ctrd.testgen(
        &frontend.id,
        &cli,
        &[
            "client",
            "--tcp4",
            &format!("{web_ip}:8080"),
            "--connects",
            "5",
            "--exchanges",
            "2",
        ],
    );
    assert_eq!(out["tcp4"]["connects_ok"], 5, "{out}");

    let opened = "netagent_tcp_connections_opened_total";
    let front = owner("cli", "frontend", &frontend.id, &front_pod.name, "shop");
    let web = owner("srv", "websrv", &websrv.id, &web_pod.name, "shop");
    let m = eventually(&agent, Duration::from_secs(15), |m| {
        m.get(opened, &with(web.clone(), &[("direction", "inbound")])) == 6.0
    });
    let why = || format!("{:?}", m.series(opened));
    assert_eq!(
        m.get(opened, &with(front.clone(), &[("direction", "outbound")])),
        6.0,
        "{}",
        why()
    );
    assert_eq!(
        m.get(opened, &with(web.clone(), &[("direction", "inbound")])),
        6.0,
        "{}",
        why()
    );
    assert_eq!(m.series(opened).len(), 2, "{}", why());
    assert_eq!(
        m.get(
            "netagent_tcp_listen_info",
            &with(web.clone(), &[("listen_addr", "0.0.0.0"), ("port", "8080")])
        ),
        1.0
    );
    for (task, name, pod, image) in [
        (
            &frontend,
            "frontend",
            &front_pod.name,
            "registry.local/shop/frontend:1.0",
        ),
        (
            &websrv,
            "websrv",
            &web_pod.name,
            "registry.local/shop/websrv:2.0",
        ),
    ] {
        let labels = [
            ("container_id", task.id.as_str()),
            ("container", name),
            ("pod", pod.as_str()),
            ("namespace", "shop"),
            ("image", image),
            ("runtime", "containerd"),
        ];
        assert_eq!(
            m.get("netagent_container_info", &labels),
            1.0,
            "{:?}",
            m.series("netagent_container_info")
        );
    }
    assert_eq!(
        m.get(
            "netagent_container_metadata_reads_total",
            &[("runtime", "containerd"), ("result", "found")]
        ),
        2.0,
        "each container read once"
    );

    let g: serde_json::Value =
        serde_json::from_str(&http_get(agent.port, "/api/v1/graph", None).unwrap()).unwrap();
    let (src, dst) = (
        format!("container:shop/{}/frontend", front_pod.name),
        format!("container:shop/{}/websrv", web_pod.name),
    );
    let edge = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == src.as_str() && e["target"] == dst.as_str())
        .unwrap_or_else(|| panic!("no edge {src} -> {dst}: {g}"));
    assert_eq!(edge["connects_total"], 6, "{g}");
    assert!(
        g["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["kind"] != "peer"),
        "{g}"
    );
    let node = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == dst.as_str())
        .unwrap();
    assert_eq!(node["pod"], web_pod.name.as_str());
    assert_eq!(node["namespace"], "shop");
    assert_eq!(node["label"], "websrv");
    drop(ctrd);
    remove_rootfs();
    eprintln!("containerd CRI test took {:?}", started.elapsed());
}

/// How many containers the churn test starts and removes (1,000 unless
/// `NETAGENT_CHURN` says otherwise).
fn churn_count() -> usize {
    std::env::var("NETAGENT_CHURN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[test]
fn a_thousand_containers_started_and_removed_leave_no_cache_entries() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let started = Instant::now();
    let Some(ctrd) = start() else { return };
    let comm = unique_comm("ctchurn");
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: churn\n    match_comm: \"{comm}\"\n\
         containers:\n  containerd_state: \"{}\"\n  prune_interval_seconds: 1\n",
        ctrd.state.display()
    ));
    let total = churn_count();
    const BATCH: usize = 25;
    let uid = "c4a1b2c3-d4e5-4f60-8a7b-9c0d1e2f3a4b";
    let pod_cgroup = format!("/kubepods/besteffort/pod{uid}");
    ctrd.scratch.record_cgroup(&pod_cgroup);
    let listen = "netagent_tcp_listen_info";
    let mut done = 0;
    while done < total {
        let n = BATCH.min(total - done);
        // Each container listens (host network) under the tracked comm:
        // a listener series attributed to it, so the agent names it.
        let ids: Vec<String> = (0..n).map(|_| new_id()).collect();
        std::thread::scope(|s| {
            for chunk in ids.chunks(n.div_ceil(4)) {
                let ctrd = &ctrd;
                let (comm, pod_cgroup) = (&comm, &pod_cgroup);
                s.spawn(move || {
                    for id in chunk {
                        ctrd.run(
                            id,
                            &format!("{pod_cgroup}/{id}"),
                            &[
                                ("io.kubernetes.cri.container-type", "container"),
                                ("io.kubernetes.cri.container-name", "worker"),
                                ("io.kubernetes.cri.sandbox-name", "churn-0"),
                                ("io.kubernetes.cri.sandbox-namespace", "batch"),
                            ],
                            None,
                            true,
                            &[
                                "/bin/netagent-testgen",
                                "--comm",
                                comm,
                                "serve",
                                "--tcp4",
                                "0",
                                "--max-seconds",
                                "300",
                            ],
                        );
                    }
                });
            }
        });
        let m = eventually(&agent, Duration::from_secs(30), |m| {
            m.series(listen)
                .iter()
                .filter(|(l, _)| l["pod"] == "churn-0" && ids.contains(&l["container_id"]))
                .count()
                == n
        });
        let named = m
            .series(listen)
            .iter()
            .filter(|(l, _)| l["container"] == "worker" && l["namespace"] == "batch")
            .count();
        assert_eq!(named, n, "batch at {done}: {:?}", m.series(listen));
        std::thread::scope(|s| {
            for chunk in ids.chunks(n.div_ceil(4)) {
                let ctrd = &ctrd;
                s.spawn(move || chunk.iter().for_each(|id| ctrd.remove(id)));
            }
        });
        done += n;
    }
    let churned = started.elapsed();
    // Within a prune interval (1 s) and a scrape, nothing is left.
    let m = eventually(&agent, Duration::from_secs(15), |m| {
        m.get("netagent_container_cache_entries", &[("kind", "container")]) == 0.0
    });
    assert_eq!(
        m.get("netagent_container_cache_entries", &[("kind", "container")]),
        0.0
    );
    assert!(m.series("netagent_container_info").is_empty());
    assert!(m.series(listen).is_empty(), "{:?}", m.series(listen));
    assert_eq!(
        m.get(
            "netagent_container_metadata_reads_total",
            &[("runtime", "containerd"), ("result", "found")]
        ),
        total as f64,
        "each container read exactly once: {:?}",
        m.series("netagent_container_metadata_reads_total")
    );
    // The cgroup entries are those of cgroups that exist now.
    let cgroups = count_dirs(std::path::Path::new("/sys/fs/cgroup/unified"))
        .max(count_dirs(std::path::Path::new("/sys/fs/cgroup")));
    let cached = m.get("netagent_container_cache_entries", &[("kind", "cgroup")]);
    assert!(
        cached <= cgroups as f64 + 10.0,
        "{cached} cgroups cached, {cgroups} exist"
    );
    drop(ctrd);
    remove_rootfs();
    eprintln!(
        "{total} containers started and removed in {churned:?}; whole test {:?}",
        started.elapsed()
    );
}

fn count_dirs(root: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            n += 1;
            stack.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
        }
    }
    n
}
