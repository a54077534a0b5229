//! The Kubernetes manifests, the Helm chart (rendered by Helm's own engine)
//! and the compose file, validated offline against the Kubernetes,
//! Prometheus Operator and Compose schemas (scripts/validate-deploy.py),
//! plus what the schemas cannot see: the pieces fit together (ports,
//! probes, capabilities, labels), the shipped agent configs parse, and
//! every deployment grants the same capabilities.

use super::{read, repo, run, text, tools, yaml, CAPS};
use crate::common::{have, require, TempDir};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

/// Objects of one deployment flavour: "static" (deploy/kubernetes) or a chart render.
fn flavour(source: &str) -> String {
    source
        .strip_prefix("chart[")
        .and_then(|s| s.split_once(']'))
        .map(|(tag, _)| format!("chart-{tag}"))
        .unwrap_or_else(|| "static".into())
}

fn string_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

#[test]
fn kubernetes_manifests_helm_chart_and_compose_file_validate_offline() {
    let python = tools().join("venv/bin/python");
    if !require(
        python.exists() && tools().join("node/node_modules").exists() && have("node"),
        "validators missing (run scripts/setup-deploy.sh; needs node)",
    ) {
        return;
    }
    let dir = TempDir::new("k8s");
    let objects = dir.0.join("objects.json");
    let out = run(
        Command::new(&python)
            .arg(repo().join("scripts/validate-deploy.py"))
            .arg("--tools")
            .arg(tools())
            .arg("--render-out")
            .arg(dir.0.join("rendered"))
            .arg("--dump-json")
            .arg(&objects),
        Duration::from_secs(300),
    );
    let log = text(&out);
    assert!(out.status.success(), "validate-deploy.py failed:\n{log}");
    let summary: Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or(""),
    )
    .unwrap_or_else(|e| panic!("no summary ({e}):\n{log}"));
    // Static manifests + the chart rendered twice (defaults, everything on).
    assert_eq!(
        summary["validated"],
        serde_json::json!({"ConfigMap": 3, "DaemonSet": 3, "Namespace": 1, "Service": 3, "ServiceAccount": 3}),
        "{log}"
    );
    assert_eq!(summary["podmonitors"], 2, "{log}");
    assert_eq!(summary["compose_files"], 1, "{log}");
    assert_eq!(summary["kustomizations"], 1, "{log}");

    // What the schemas cannot check: the pieces fit together.
    let all: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&objects).unwrap()).unwrap();
    let mut by_flavour: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for o in &all {
        by_flavour
            .entry(flavour(o["source"].as_str().unwrap()))
            .or_default()
            .push(&o["object"]);
    }
    assert_eq!(
        by_flavour.keys().map(String::as_str).collect::<Vec<_>>(),
        ["chart-all-on", "chart-defaults", "static"]
    );
    let want_caps: BTreeSet<String> = CAPS.iter().map(|c| c.to_string()).collect();
    for (fl, objs) in &by_flavour {
        let of_kind = |k: &str| {
            objs.iter()
                .filter(|o| o["kind"] == k)
                .copied()
                .collect::<Vec<_>>()
        };
        let ds = of_kind("DaemonSet");
        assert_eq!(ds.len(), 1, "{fl}");
        let ds = ds[0];
        let pod = &ds["spec"]["template"];
        let spec = &pod["spec"];
        let pod_labels = &pod["metadata"]["labels"];
        assert!(
            labels_match(&ds["spec"]["selector"]["matchLabels"], pod_labels),
            "{fl}: selector"
        );
        assert_eq!(spec["hostNetwork"], true, "{fl}");
        assert_eq!(spec["hostPID"], true, "{fl}");
        let c = &spec["containers"][0];
        let sc = &c["securityContext"];
        assert!(
            sc["privileged"].is_null() || sc["privileged"] == false,
            "{fl}: privileged"
        );
        assert_eq!(string_set(&sc["capabilities"]["add"]), want_caps, "{fl}");
        assert_eq!(
            string_set(&sc["capabilities"]["drop"]),
            ["ALL".to_string()].into(),
            "{fl}"
        );
        let port = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "metrics")
            .unwrap_or_else(|| panic!("{fl}: no metrics port"));
        assert_eq!(port["containerPort"], 9102, "{fl}");
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(c[probe]["httpGet"]["path"], "/health", "{fl}: {probe}");
            assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{fl}: {probe}");
        }
        for r in ["requests", "limits"] {
            assert!(
                c["resources"][r]["cpu"].is_string() && c["resources"][r]["memory"].is_string(),
                "{fl}: resources.{r}"
            );
        }
        for path in ["/sys/fs/cgroup", "/sys/kernel/btf"] {
            let mount = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["mountPath"] == path)
                .unwrap_or_else(|| panic!("{fl}: {path} not mounted"));
            assert_eq!(mount["readOnly"], true, "{fl}: {path}");
            let vol = spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap();
            assert_eq!(vol["hostPath"]["path"], path, "{fl}");
        }
        let config_mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == "/etc/netagent")
            .unwrap_or_else(|| panic!("{fl}: config not mounted"));
        let config_volume = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == config_mount["name"])
            .unwrap();
        assert_eq!(c["args"][0], "--config", "{fl}");
        assert_eq!(c["args"][1], "/etc/netagent/config.yaml", "{fl}");

        // The agent accepts the ConfigMap's config and listens on the pod's port.
        let cms = of_kind("ConfigMap");
        let cm = cms
            .iter()
            .find(|m| m["metadata"]["name"] == config_volume["configMap"]["name"])
            .unwrap_or_else(|| panic!("{fl}: ConfigMap of the DaemonSet missing"));
        let cfg_text = cm["data"]["config.yaml"].as_str().expect("config.yaml");
        let (cfg, warnings) = netagent::config::Config::parse(cfg_text, "configmap")
            .unwrap_or_else(|e| panic!("{fl}: the agent rejects its ConfigMap: {e}\n{cfg_text}"));
        assert!(warnings.is_empty(), "{fl}: {warnings:?}");
        assert_eq!(cfg.listen_addr().unwrap().port(), 9102, "{fl}");

        let sa = &spec["serviceAccountName"];
        assert!(
            of_kind("ServiceAccount")
                .iter()
                .any(|s| &s["metadata"]["name"] == sa),
            "{fl}: ServiceAccount {sa} missing"
        );
        for svc in of_kind("Service") {
            assert!(
                labels_match(&svc["spec"]["selector"], pod_labels),
                "{fl}: Service selector"
            );
            assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics", "{fl}");
        }
        let pms = of_kind("PodMonitor");
        assert_eq!(
            pms.len(),
            usize::from(fl != "chart-defaults"),
            "{fl}: PodMonitors"
        );
        for pm in pms {
            assert!(
                labels_match(&pm["spec"]["selector"]["matchLabels"], pod_labels),
                "{fl}: PodMonitor selector"
            );
            let endpoint = &pm["spec"]["podMetricsEndpoints"][0];
            assert_eq!(endpoint["port"], "metrics", "{fl}");
            assert_eq!(endpoint["path"], "/metrics", "{fl}");
            // job = the value of the pods' jobLabel: "netagent", as the rules expect.
            let job_label = pm["spec"]["jobLabel"].as_str().unwrap();
            assert_eq!(pod_labels[job_label], "netagent", "{fl}: job label");
        }
    }

    // The image test (image.rs) runs the static DaemonSet through pod.rs;
    // every chart render must run the container the same way: namespaces,
    // user, capabilities, seccomp, read-only root, mounts, limits, probes,
    // grace period, image (only extraArgs may add arguments).
    let run_spec = |fl: &str| {
        let ds = by_flavour[fl]
            .iter()
            .find(|o| o["kind"] == "DaemonSet")
            .unwrap();
        super::pod::from_daemonset(ds)
    };
    let tested = super::pod::from_daemonset(&yaml(
        &read("deploy/kubernetes/daemonset.yaml"),
        "daemonset.yaml",
    ));
    assert_eq!(run_spec("static"), tested);
    for fl in ["chart-defaults", "chart-all-on"] {
        let mut chart = run_spec(fl);
        assert!(
            chart.command.starts_with(&tested.command),
            "{fl}: args {:?}",
            chart.command
        );
        chart.command.truncate(tested.command.len());
        assert_eq!(
            chart, tested,
            "{fl}: the chart runs the container otherwise than the DaemonSet the image test ran"
        );
    }

    // The validator does reject broken objects (strict schema, CRD schema).
    for (name, doc, complaint) in [
        (
            "daemonset.yaml",
            read("deploy/kubernetes/daemonset.yaml").replace("hostPID: true", "hostPid: true"),
            "hostPid",
        ),
        (
            "podmonitor.yaml",
            read("deploy/kubernetes/podmonitor.yaml").replace("interval: 15s", "interval: 15"),
            "interval",
        ),
    ] {
        let bad = TempDir::new("k8sbad");
        std::fs::write(bad.0.join(name), &doc).unwrap();
        let out = run(
            Command::new(&python)
                .arg(repo().join("scripts/validate-deploy.py"))
                .arg("--tools")
                .arg(tools())
                .args(["--no-chart", "--no-compose", "--manifests"])
                .arg(&bad.0),
            Duration::from_secs(120),
        );
        let log = text(&out);
        assert!(
            !out.status.success() && log.contains(complaint),
            "broken {name} passed:\n{log}"
        );
    }
}

/// The agent configs shipped with the deployments parse, and the pieces that
/// must agree across files do.
#[test]
fn shipped_configs_parse_and_agree() {
    let parse = |text: &str, what: &str| {
        let (cfg, warnings) = netagent::config::Config::parse(text, what)
            .unwrap_or_else(|e| panic!("the agent rejects {what}: {e}"));
        assert!(warnings.is_empty(), "{what}: {warnings:?}");
        cfg
    };
    let cm = yaml(&read("deploy/kubernetes/configmap.yaml"), "configmap");
    parse(
        cm["data"]["config.yaml"].as_str().unwrap(),
        "configmap.yaml",
    );

    // Compose: the agent sends OTLP to the collector's published port, and
    // Prometheus (scraping localhost:9102) finds the agent there.
    let stack = parse(
        &read("deploy/observability/netagent.yaml"),
        "observability/netagent.yaml",
    );
    assert_eq!(stack.otel.endpoint, "http://127.0.0.1:4317");
    assert_eq!(stack.listen_addr().unwrap().port(), 9102);
    let compose = yaml(&read("deploy/observability/compose.yaml"), "compose.yaml");
    let services = &compose["services"];
    assert!(string_set(&services["otel-collector"]["ports"]).contains("127.0.0.1:4317:4317"));
    let agent = &services["netagent"];
    assert_eq!(agent["network_mode"], "host");
    assert_eq!(agent["pid"], "host");
    assert_eq!(
        string_set(&agent["cap_add"]),
        CAPS.iter().map(|c| c.to_string()).collect()
    );
    assert_eq!(string_set(&agent["cap_drop"]), ["ALL".to_string()].into());
    let volumes = string_set(&agent["volumes"]);
    for v in [
        "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        "/sys/kernel/btf:/sys/kernel/btf:ro",
    ] {
        assert!(volumes.contains(v), "compose netagent volumes: {volumes:?}");
    }
    assert!(read("deploy/prometheus/prometheus.yml").contains("localhost:9102"));
    let ds = yaml(
        &read("deploy/observability/grafana/provisioning/datasources/datasources.yaml"),
        "datasources",
    );
    let prom = ds["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "prometheus")
        .expect("a Prometheus data source");
    assert_eq!(
        prom["isDefault"], true,
        "the dashboard's DS_PROMETHEUS picks the default"
    );
    assert!(prom["url"].as_str().unwrap().ends_with(":9090"));

    // One capability set everywhere: unit, Dockerfile, Helm values.
    let unit = read("deploy/systemd/netagent.service");
    let unit_caps = |key: &str| -> BTreeSet<String> {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("unit has no {key}="))
            .split_whitespace()
            .map(|c| c.trim_start_matches("CAP_").to_string())
            .collect()
    };
    let want: BTreeSet<String> = CAPS.iter().map(|c| c.to_string()).collect();
    assert_eq!(unit_caps("CapabilityBoundingSet"), want);
    assert_eq!(unit_caps("AmbientCapabilities"), want);
    let dockerfile = read("Dockerfile");
    let setcap = dockerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("&& setcap "))
        .expect("Dockerfile runs setcap");
    // Permitted only: the agent raises them itself, so it also starts where
    // the runtime withholds one (with +ep the kernel would refuse the exec).
    let file_caps: BTreeSet<String> = setcap
        .split_whitespace()
        .next()
        .unwrap()
        .strip_suffix("+p")
        .expect("file capabilities +p (permitted, not effective)")
        .split(',')
        .map(|c| c.trim_start_matches("cap_").to_ascii_uppercase())
        .collect();
    assert_eq!(file_caps, want, "Dockerfile setcap");
    assert!(dockerfile.contains("cargo build --release --locked"));
    // The default base stays the public one; BASE_IMAGE overrides it.
    assert!(dockerfile.contains("ARG BASE_IMAGE=debian:bookworm-slim"));
    assert!(dockerfile.contains("FROM ${BASE_IMAGE}"));
    assert!(dockerfile.contains("COPY config.example.yaml /etc/netagent/config.yaml"));
    assert!(dockerfile
        .lines()
        .any(|l| l.starts_with("USER ") && !l.contains("root") && !l.starts_with("USER 0")));
    let values = yaml(&read("deploy/helm/netagent/values.yaml"), "values.yaml");
    assert_eq!(
        string_set(&values["securityContext"]["capabilities"]["add"]),
        want
    );
}
