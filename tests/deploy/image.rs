//! The container image, for real: built from the project's Dockerfile on a
//! base made locally (scripts/image-base.sh: debootstrap from Debian's
//! archive, no registry) by a Docker daemon of the test's own (docker.rs),
//! then run the way the deployment files say (pod.rs reads them):
//!
//! 1. `docker build` with AGENT_SOURCE=prebuilt (the agent this test run
//!    built, debug info stripped), timed and measured; the image holds no
//!    compiler, headers or setcap, and keeps CA certificates;
//! 2. run as the DaemonSet runs it (host network and PID namespaces, user,
//!    capabilities, read-only root, mounts, limits, grace period) with the
//!    ConfigMap's config: exact counts of host traffic (TCP connects, UDP
//!    datagrams, bytes both ways, accepted connections, packets and bytes on
//!    a veth), `/health` on the probes' path and port, the agent's uid and
//!    capabilities; `docker stop` ends it within the grace period with exit
//!    code 0, and nothing of it is left in the kernel (its programs and
//!    maps, qdiscs, TC filters);
//! 3. the compose file's netagent and Prometheus services (compose.rs).
//!
//! Traffic comes from processes with comms unique to this test process, so
//! agents and tests running at the same time neither disturb nor see it.

use super::containerd::Containerd;
use super::docker::Docker;
use super::kernel::{cap_bit, grantable, qdiscs, status_field, Held};
use super::pod::{self, Mount, RunSpec, Source};
use super::{read, repo, run, text, yaml};
use crate::common::hostlink::HostLink;
use crate::common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The locally made base, imported under this tag.
pub(super) const BASE_TAG: &str = "netagent-test/base:bookworm";
/// Where the build context gets the agent (let through by .dockerignore).
const AGENT_IN_CONTEXT: &str = "target/image/netagent";

/// A child process killed on drop.
pub(super) struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The rootfs tar scripts/image-base.sh made (NETAGENT_IMAGE_BASE overrides).
fn base_tar() -> PathBuf {
    std::env::var_os("NETAGENT_IMAGE_BASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/image-base/debian-bookworm.tar"))
}

/// Sum of the series of `name` whose labels include all of `labels`.
pub(super) fn sum(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.sum(name, labels)
}

/// Imports the base and builds the Dockerfile with the DaemonSet's image
/// tag; returns (seconds the build took, image size in bytes).
fn build_image(docker: &Docker, tag: &str) -> (f64, u64) {
    let t = Instant::now();
    docker.ok(
        &["import", base_tar().to_str().unwrap(), BASE_TAG],
        Duration::from_secs(300),
    );
    eprintln!("image: base imported in {:.1} s", t.elapsed().as_secs_f64());

    // The agent of this test run, without debug info (the dev profile's
    // binary is mostly DWARF).
    let bin = repo().join(AGENT_IN_CONTEXT);
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&bin);
    let strip = run(
        Command::new("strip")
            .args(["--strip-debug", "-o"])
            .arg(&bin)
            .arg(AGENT),
        Duration::from_secs(120),
    );
    if !strip.status.success() {
        eprintln!(
            "image: strip failed, using the agent as is: {}",
            text(&strip)
        );
        std::fs::copy(AGENT, &bin).unwrap();
    }

    let t = Instant::now();
    let out = docker.output(
        &[
            "build",
            // Nothing in the build may reach a network (the base has what
            // the runtime stage would download).
            "--network=none",
            "--progress=plain",
            "-f",
            repo().join("Dockerfile").to_str().unwrap(),
            "--build-arg",
            &format!("BASE_IMAGE={BASE_TAG}"),
            "--build-arg",
            "AGENT_SOURCE=prebuilt",
            "--build-arg",
            &format!("AGENT_BINARY={AGENT_IN_CONTEXT}"),
            "-t",
            tag,
            repo().to_str().unwrap(),
        ],
        Duration::from_secs(600),
    );
    let build_secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&bin);
    assert!(out.status.success(), "docker build:\n{}", text(&out));
    let size: u64 = docker
        .ok(
            &["image", "inspect", "-f", "{{.Size}}", tag],
            Duration::from_secs(30),
        )
        .parse()
        .unwrap();

    // What the runtime image holds: the agent and CA certificates; no
    // toolchain, no headers, and setcap gone again.
    let listing = docker.ok(
        &[
            "run",
            "--rm",
            "--network=none",
            "--entrypoint=/bin/sh",
            tag,
            "-c",
            "for t in cc gcc clang rustc cargo ld as setcap; do command -v $t; done; \
             ls -d /usr/include/* /usr/lib/gcc* /usr/lib/llvm* 2>/dev/null; \
             test -s /etc/ssl/certs/ca-certificates.crt && echo ca-ok; \
             test -x /usr/bin/netagent && echo agent-ok; true",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        ["ca-ok", "agent-ok"],
        "the runtime image holds a toolchain, headers or setcap, or lacks CA certificates or the agent"
    );
    (build_secs, size)
}

/// Waits until the container's agent answers `path` on `port`; `gone`
/// says (with its logs) whether the container stopped meanwhile.
pub(super) fn wait_serving(
    name: &str,
    port: u16,
    path: &str,
    mut gone: impl FnMut() -> Option<String>,
) -> f64 {
    let t = Instant::now();
    loop {
        if http_get(port, path, None).is_ok() {
            return t.elapsed().as_secs_f64();
        }
        if let Some(logs) = gone() {
            panic!("{name} stopped before serving {path} on {port}:\n{logs}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{name} not serving {path} on {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A UDP sink in the HostLink's namespace: its port.
fn ns_sink(link: &HostLink, comm: &str) -> (Killed, u16) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &link.ns, testgen_exe(), "--comm", comm])
        .args(["serve", "--udp4", "0", "--sink", "--max-seconds", "120"])
        .args(["--bind4", &link.ns_ip.to_string()])
        .stdout(Stdio::piped());
    let mut child = Killed(cmd.spawn().expect("testgen in the namespace"));
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("sink said {line:?}: {e}"));
    (child, v["udp4"].as_u64().unwrap() as u16)
}

/// Phase 2: the image as the DaemonSet runs it. Returns what it counted.
fn run_like_the_daemonset(ctr: &Containerd, spec: &RunSpec) -> BTreeMap<String, f64> {
    let (cli, srv) = (unique_comm("nimgc"), unique_comm("nimgs"));
    // The ConfigMap's config, on a free port (other agents may hold 9102).
    let cm = yaml(&read("deploy/kubernetes/configmap.yaml"), "configmap.yaml");
    let cfg = cm["data"]["config.yaml"].as_str().unwrap();
    let listen = "listen_addr: \":9102\"";
    assert!(cfg.contains(listen), "the ConfigMap no longer has {listen}");
    for p in &spec.probes {
        assert_eq!(p.port, 9102, "{} probes the ConfigMap's port", p.kind);
    }
    let port = free_port();
    let dir = TempDir::new("imgcfg");
    dir.write(
        "config.yaml",
        &cfg.replace(":9102\"", &format!(":{port}\"")),
    );

    let (granted, withheld) = grantable(spec);
    if !withheld.is_empty() {
        eprintln!(
            "NOTE: this machine's runtime cannot grant {withheld:?} (not in root's bounding set); \
             the container runs without it, as Linux >= 5.11 allows"
        );
    }
    let spec = RunSpec {
        security: spec
            .security
            .iter()
            .filter(|o| {
                !withheld
                    .iter()
                    .any(|w| o.strip_prefix("--cap-add=") == Some(w))
            })
            .cloned()
            .collect(),
        ..spec.clone()
    };

    // A quiet veth to a namespace: interface counts exact to the packet.
    let link = HostLink::new("img");
    let (_ns_sink, ns_port) = ns_sink(&link, &srv);
    let qdiscs_before = qdiscs();

    // ctr has no --user: the image's USER must be the DaemonSet's.
    let user = spec
        .security
        .iter()
        .find_map(|o| o.strip_prefix("--user="))
        .expect("the DaemonSet sets runAsUser and runAsGroup");
    let image = ctr.import(&spec.image);
    assert_eq!(image.user, user, "USER of the image");
    let name = format!("netagent-ds-{}", std::process::id());
    let logs = TempDir::new("ctrlogs");
    let resolve = |m: &Mount| match &m.source {
        Source::ConfigMap => dir.0.display().to_string(),
        Source::Host(p) => p.display().to_string(),
        Source::Volume(v) => panic!("a DaemonSet has no named volume {v}"),
    };
    let mut task = ctr.start(&name, &spec, &image, &resolve, &logs);
    let mut seen = BTreeMap::new();
    let ready = wait_serving(&name, port, &spec.probes[0].path, || {
        task.exited().map(|s| format!("{s}\n{}", task.logs()))
    });
    seen.insert("ready_s".to_string(), ready);
    let pid = task.pid();
    // Listeners opened after the agent: it attributes older ones only with
    // CAP_SYS_PTRACE, which the DaemonSet does not grant.
    let echo = Server::start(&srv, &["--tcp4", "0", "--udp4", "0"]);
    let sink = Server::start(&srv, &["--tcp4", "0", "--sink"]);

    // The process runs as the DaemonSet says: its uid, exactly the granted
    // capabilities (file capabilities made effective), the runtime's
    // seccomp filter.
    let (uid, _) = user.split_once(':').unwrap();
    assert_eq!(
        status_field(pid, "Uid:")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [uid; 4],
        "uid of the agent"
    );
    let want: u64 = granted.iter().map(|c| 1u64 << cap_bit(c)).sum();
    let eff = u64::from_str_radix(&status_field(pid, "CapEff:"), 16).unwrap();
    assert_eq!(
        eff, want,
        "effective capabilities {eff:x}, want {granted:?}"
    );
    assert_eq!(status_field(pid, "Seccomp:"), "2", "seccomp filter");

    // Host traffic, from processes with this test's comms.
    let m0 = Metrics::parse(&http_get(port, "/metrics", None).unwrap());
    let iface = |m: &Metrics, dir: &str| {
        [
            "netagent_interface_packets_total",
            "netagent_interface_bytes_total",
        ]
        .map(|n| sum(m, n, &[("interface", &link.host_if), ("direction", dir)]))
    };
    let before = iface(&m0, "egress");
    let (n, k, size, bulk, veth_k, veth_size) = (7u64, 5u64, 300u64, 123_457u64, 11u64, 400u64);
    let (tcp, udp) = (echo.port("tcp4"), echo.port("udp4"));
    testgen(
        &cli,
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{tcp}"),
            "--udp4",
            &format!("127.0.0.1:{udp}"),
            "--connects",
            &n.to_string(),
            "--sends",
            &k.to_string(),
            "--size",
            &size.to_string(),
        ],
    );
    let sink_port = sink.port("tcp4");
    testgen(
        &cli,
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{sink_port}"),
            "--bulk",
            &bulk.to_string(),
        ],
    );
    testgen(
        &cli,
        &[
            "client",
            "--udp4",
            &format!("{}:{ns_port}", link.ns_ip),
            "--sends",
            &veth_k.to_string(),
            "--size",
            &veth_size.to_string(),
        ],
    );

    // Ethernet 14 + IPv4 20 + UDP 8 bytes around each payload.
    let (tcp_s, udp_s, sink_s, ns_s) = (
        tcp.to_string(),
        udp.to_string(),
        sink_port.to_string(),
        ns_port.to_string(),
    );
    let want: Vec<(&str, f64)> = vec![
        ("tcp connects", n as f64),
        ("udp datagrams", k as f64),
        ("udp bytes sent", (k * size) as f64),
        ("accepted", n as f64),
        ("bulk bytes sent", bulk as f64),
        ("bulk bytes received", bulk as f64),
        ("veth datagrams", veth_k as f64),
        ("veth egress packets", veth_k as f64),
        ("veth egress bytes", (veth_k * (veth_size + 42)) as f64),
    ];
    let counts = |m: &Metrics| -> Vec<(&str, f64)> {
        let after = iface(m, "egress");
        let c = |proto: &str, port: &str| {
            sum(
                m,
                "netagent_connect_total",
                &[("process", &cli), ("proto", proto), ("dport", port)],
            )
        };
        let b = |name: &str, process: &str, proto: &str, port: &str| {
            sum(
                m,
                name,
                &[("process", process), ("proto", proto), ("dport", port)],
            )
        };
        vec![
            ("tcp connects", c("tcp", &tcp_s)),
            ("udp datagrams", c("udp", &udp_s)),
            (
                "udp bytes sent",
                b("netagent_bytes_sent_total", &cli, "udp", &udp_s),
            ),
            (
                "accepted",
                sum(
                    m,
                    "netagent_tcp_connections_accepted_total",
                    &[("process", &srv), ("port", &tcp_s)],
                ),
            ),
            (
                "bulk bytes sent",
                b("netagent_bytes_sent_total", &cli, "tcp", &sink_s),
            ),
            (
                "bulk bytes received",
                b("netagent_bytes_received_total", &srv, "tcp", &sink_s),
            ),
            ("veth datagrams", c("udp", &ns_s)),
            ("veth egress packets", after[0] - before[0]),
            ("veth egress bytes", after[1] - before[1]),
        ]
    };
    // Interface counters follow the collection interval (the ConfigMap's:
    // the default 5 s): wait for them, then everything must be exact.
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let m = Metrics::parse(&http_get(port, "/metrics", None).unwrap());
        let got = counts(&m);
        if got.iter().zip(&want).all(|(g, w)| g.1 >= w.1) || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(got, want, "counts of the containerized agent");
    seen.extend(got.iter().map(|(k, v)| (k.to_string(), *v)));

    // Healthy, on the probes' path and port, every probe attached.
    for p in &spec.probes {
        let (code, body) = health(port);
        assert_eq!(
            (code, body["status"].as_str()),
            (200, Some("ok")),
            "{} GET {} (timeout {} s): {body}",
            p.kind,
            p.path,
            p.timeout_seconds
        );
    }
    let m = Metrics::parse(&http_get(port, "/metrics", None).unwrap());
    let detached: Vec<_> = m
        .series("netagent_probe_up")
        .into_iter()
        .filter(|(_, v)| *v != 1.0)
        .map(|(l, _)| l["probe"].clone())
        .collect();
    assert!(detached.is_empty(), "probes detached: {detached:?}");
    seen.insert(
        "probes_up".into(),
        m.series("netagent_probe_up").len() as f64,
    );

    // Stopped as Kubernetes stops a pod: SIGTERM, grace period, SIGKILL.
    let held = Held::of(pid);
    seen.insert("programs".into(), held.progs.len() as f64);
    seen.insert("maps".into(), held.maps.len() as f64);
    let (took, status) = task.stop(spec.stop_timeout);
    assert!(
        status.is_some_and(|s| s.success()),
        "{name}: not shut down within the grace period of {} s by SIGTERM ({status:?}, {took:.1} s):\n{}",
        spec.stop_timeout,
        task.logs()
    );
    seen.insert("stop_s".into(), took);
    held.assert_gone("the DaemonSet's container");
    let after = qdiscs();
    let devs = |s: &BTreeSet<(String, String, String, String)>| -> BTreeSet<String> {
        s.iter().map(|q| q.0.clone()).collect()
    };
    let (devs_before, devs_after) = (devs(&qdiscs_before), devs(&after));
    let added: Vec<_> = after
        .difference(&qdiscs_before)
        .filter(|q| devs_before.contains(&q.0) && devs_after.contains(&q.0))
        .collect();
    assert!(added.is_empty(), "qdiscs left behind: {added:?}");
    for hook in ["ingress", "egress"] {
        let out = run(
            Command::new("tc").args(["filter", "show", "dev", &link.host_if, hook]),
            Duration::from_secs(30),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "",
            "TC filters left on {} {hook}",
            link.host_if
        );
    }
    drop(task);
    seen
}

/// The whole image test: build, DaemonSet, compose. One daemon, one build.
#[test]
fn the_image_builds_and_runs_like_the_daemonset_and_compose_prometheus_scrapes_it() {
    let _g = serial();
    if !require_bpf()
        || !require(
            have("bpftool") && have("tc") && have("ip"),
            "bpftool, tc and ip needed",
        )
        || !require(
            base_tar().exists(),
            &format!(
                "no local base image {}: run scripts/setup.sh (scripts/image-base.sh, debootstrap)",
                base_tar().display()
            ),
        )
    {
        return;
    }
    let started = Instant::now();
    let Some(docker) = Docker::start() else {
        return;
    };
    let daemon_s = started.elapsed().as_secs_f64();
    let ds = yaml(&read("deploy/kubernetes/daemonset.yaml"), "daemonset.yaml");
    let spec = pod::from_daemonset(&ds);
    let (build_s, size) = build_image(&docker, &spec.image);
    eprintln!(
        "image: {} built in {build_s:.1} s, {:.1} MB ({size} bytes)",
        spec.image,
        size as f64 / 1e6
    );
    let t = Instant::now();
    let ds_counts = run_like_the_daemonset(&Containerd::of(&docker), &spec);
    let ds_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let compose_counts = super::compose::run_the_compose_services(&docker, &spec.image);
    let compose_s = t.elapsed().as_secs_f64();
    drop(docker);
    eprintln!(
        "image test: daemon {daemon_s:.1} s, build {build_s:.1} s, image {:.1} MB, \
         DaemonSet phase {ds_s:.1} s {ds_counts:?}, compose phase {compose_s:.1} s \
         {compose_counts:?}, total {:.1} s",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
}
