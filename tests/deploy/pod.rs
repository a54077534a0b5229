//! How a container runs, read from the deployment files themselves and
//! turned into `docker run` options, so that the image test (image.rs) runs
//! the image exactly as they deploy it: the DaemonSet's pod template
//! (deploy/kubernetes/daemonset.yaml; kubernetes.rs checks that the Helm
//! chart renders the same) and the compose services
//! (deploy/observability/compose.yaml).
//!
//! Every key of the pod template, the container and the compose service is
//! either translated or listed as meaningless outside a cluster
//! (scheduling, service accounts, pull policy); any other key fails the
//! test. A change to a deployment file that would change how the container
//! runs must be taught here, and is then what the test runs.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path on the host (hostPath, a compose bind mount).
    Host(PathBuf),
    /// The pod's ConfigMap volume (its name is not compared: the chart names
    /// it after the release).
    ConfigMap,
    /// A named compose volume.
    Volume(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: Source,
    pub target: String,
    pub read_only: bool,
}

/// An HTTP probe (liveness, readiness): what the kubelet would GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub kind: String,
    pub path: String,
    pub port: u16,
    /// timeoutSeconds
    pub timeout_seconds: u64,
}

/// One container as the deployment file runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// Namespaces, user and security options, as `docker run` options.
    pub security: Vec<String>,
    pub mounts: Vec<Mount>,
    /// Resource limits as `docker run` options (`--cpus`, `--memory`).
    pub limits: Vec<String>,
    pub probes: Vec<Probe>,
    pub image: String,
    /// The arguments after the image (container `args`, compose `command`).
    pub command: Vec<String>,
    /// Seconds between SIGTERM and SIGKILL when stopped.
    pub stop_timeout: u64,
}

impl RunSpec {
    /// `docker run` options for this spec; `resolve` gives the host side
    /// of each mount (the test substitutes its own config files).
    pub fn docker_args(&self, resolve: impl Fn(&Mount) -> String) -> Vec<String> {
        let mut args = self.security.clone();
        for m in &self.mounts {
            let ro = if m.read_only { ":ro" } else { "" };
            args.push("-v".into());
            args.push(format!("{}:{}{ro}", resolve(m), m.target));
        }
        args.extend(self.limits.iter().cloned());
        args
    }
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: not a list: {v}"))
        .iter()
        .map(|s| match s {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => panic!("{what}: not a string: {s}"),
        })
        .collect()
}

/// Fails on keys of `obj` in neither list; a new key must be taught here.
fn known_keys(obj: &Value, what: &str, translated: &[&str], not_applicable: &[&str]) {
    for k in obj
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {obj}"))
        .keys()
    {
        assert!(
            translated.contains(&k.as_str()) || not_applicable.contains(&k.as_str()),
            "{what}.{k}: the image test (tests/deploy/pod.rs) does not know how a container \
             runs with it; teach it, so that the test keeps running what the deployment does"
        );
    }
}

/// Kubernetes CPU quantity ("500m", "1", "0.5") in CPUs.
fn cpus(q: &str) -> String {
    let v = match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().unwrap() / 1000.0,
        None => q.parse::<f64>().unwrap(),
    };
    format!("{v}")
}

/// Kubernetes memory quantity ("256Mi", "1Gi", "300M", bytes) in bytes.
fn bytes(q: &str) -> u64 {
    for (suffix, mult) in [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ] {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap() * mult;
        }
    }
    q.parse().unwrap_or_else(|_| panic!("memory quantity {q}"))
}

/// The only container of a DaemonSet's pod template.
pub fn from_daemonset(ds: &Value) -> RunSpec {
    assert_eq!(ds["kind"], "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    known_keys(
        spec,
        "pod spec",
        &[
            "hostNetwork",
            "hostPID",
            "containers",
            "volumes",
            "terminationGracePeriodSeconds",
        ],
        // The API server, scheduler and DNS: nothing about how the
        // container runs on its node.
        &[
            "serviceAccountName",
            "automountServiceAccountToken",
            "dnsPolicy",
            "priorityClassName",
            "tolerations",
            "nodeSelector",
            "affinity",
            "imagePullSecrets",
        ],
    );
    let mut security = Vec::new();
    // The test's daemon has no bridge: the agent must run on the host network.
    assert_eq!(spec["hostNetwork"], true, "hostNetwork");
    security.push("--network=host".to_string());
    if spec["hostPID"] == true {
        security.push("--pid=host".into());
    }
    let containers = spec["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    let c = &containers[0];
    known_keys(
        c,
        "container",
        &[
            "image",
            "args",
            "ports",
            "readinessProbe",
            "livenessProbe",
            "resources",
            "securityContext",
            "volumeMounts",
        ],
        &["name", "imagePullPolicy"],
    );

    let sc = &c["securityContext"];
    known_keys(
        sc,
        "securityContext",
        &[
            "privileged",
            "runAsNonRoot",
            "runAsUser",
            "runAsGroup",
            "allowPrivilegeEscalation",
            "readOnlyRootFilesystem",
            "capabilities",
            "seccompProfile",
        ],
        &[],
    );
    if sc["privileged"] == true {
        security.push("--privileged".into());
    }
    match (sc["runAsUser"].as_u64(), sc["runAsGroup"].as_u64()) {
        (Some(u), Some(g)) => security.push(format!("--user={u}:{g}")),
        (Some(u), None) => security.push(format!("--user={u}")),
        (None, None) => {}
        (None, Some(_)) => panic!("runAsGroup without runAsUser"),
    }
    if sc["runAsNonRoot"] == true {
        // The kubelet refuses to start the container as uid 0.
        assert_ne!(sc["runAsUser"].as_u64(), Some(0), "runAsNonRoot with uid 0");
        assert!(
            sc["runAsUser"].is_u64(),
            "runAsNonRoot: the test needs the uid"
        );
    }
    if sc["allowPrivilegeEscalation"] == false {
        security.push("--security-opt=no-new-privileges".into());
    }
    if sc["readOnlyRootFilesystem"] == true {
        security.push("--read-only".into());
    }
    let caps = &sc["capabilities"];
    known_keys(caps, "capabilities", &["drop", "add"], &[]);
    for cap in strings(&caps["drop"], "capabilities.drop") {
        security.push(format!("--cap-drop={cap}"));
    }
    for cap in strings(&caps["add"], "capabilities.add") {
        security.push(format!("--cap-add={cap}"));
    }
    match sc["seccompProfile"]["type"].as_str() {
        // Docker's default profile is its RuntimeDefault.
        Some("RuntimeDefault") | None => {}
        Some("Unconfined") => security.push("--security-opt=seccomp=unconfined".into()),
        Some(other) => panic!("seccompProfile.type {other}"),
    }

    // Mounts: each volumeMount with its volume.
    let volumes = spec["volumes"].as_array().expect("volumes");
    let mut mounts = Vec::new();
    for vm in c["volumeMounts"].as_array().expect("volumeMounts") {
        known_keys(vm, "volumeMount", &["name", "mountPath", "readOnly"], &[]);
        let vol = volumes
            .iter()
            .find(|v| v["name"] == vm["name"])
            .unwrap_or_else(|| panic!("no volume {}", vm["name"]));
        let source = if let Some(hp) = vol.get("hostPath") {
            known_keys(hp, "hostPath", &["path"], &["type"]);
            Source::Host(PathBuf::from(hp["path"].as_str().unwrap()))
        } else if let Some(cm) = vol.get("configMap") {
            known_keys(cm, "configMap", &[], &["name"]);
            Source::ConfigMap
        } else {
            panic!("volume kind of {vol}: teach tests/deploy/pod.rs")
        };
        mounts.push(Mount {
            source,
            target: vm["mountPath"].as_str().unwrap().to_string(),
            read_only: vm["readOnly"] == true,
        });
    }
    assert_eq!(
        mounts.len(),
        volumes.len(),
        "every volume is mounted, none twice"
    );

    let mut limits = Vec::new();
    let res = &c["resources"];
    known_keys(res, "resources", &["limits"], &["requests"]);
    known_keys(&res["limits"], "limits", &["cpu", "memory"], &[]);
    if let Some(cpu) = res["limits"]["cpu"].as_str() {
        limits.push(format!("--cpus={}", cpus(cpu)));
    }
    if let Some(mem) = res["limits"]["memory"].as_str() {
        limits.push(format!("--memory={}", bytes(mem)));
    }

    // Probes: httpGet on a named or numbered port of the container.
    let ports = c["ports"].as_array().expect("ports");
    let mut probes = Vec::new();
    for kind in ["livenessProbe", "readinessProbe"] {
        let p = &c[kind];
        if p.is_null() {
            continue;
        }
        known_keys(
            p,
            kind,
            &["httpGet", "timeoutSeconds"],
            &[
                "initialDelaySeconds",
                "periodSeconds",
                "failureThreshold",
                "successThreshold",
            ],
        );
        known_keys(&p["httpGet"], kind, &["path", "port"], &[]);
        let port = match &p["httpGet"]["port"] {
            Value::Number(n) => n.as_u64().unwrap(),
            Value::String(name) => ports
                .iter()
                .find(|q| q["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{kind}: no port named {name}"))["containerPort"]
                .as_u64()
                .unwrap(),
            other => panic!("{kind}: port {other}"),
        };
        probes.push(Probe {
            kind: kind.to_string(),
            path: p["httpGet"]["path"].as_str().unwrap().to_string(),
            port: port as u16,
            timeout_seconds: p["timeoutSeconds"].as_u64().unwrap_or(1),
        });
    }
    for p in ports {
        known_keys(p, "port", &["name", "containerPort"], &["protocol"]);
    }

    RunSpec {
        security,
        mounts,
        limits,
        probes,
        image: c["image"].as_str().expect("image").to_string(),
        command: strings(&c["args"], "args"),
        stop_timeout: spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30),
    }
}

/// Service `name` of a compose file in `compose_dir` (relative bind-mount
/// sources are resolved against it).
pub fn from_compose(compose: &Value, name: &str, compose_dir: &Path) -> RunSpec {
    let s = &compose["services"][name];
    assert!(s.is_object(), "no service {name}");
    known_keys(
        s,
        name,
        &[
            "image",
            "command",
            "network_mode",
            "pid",
            "cap_drop",
            "cap_add",
            "volumes",
            "user",
        ],
        // The image is built by the test from the same Dockerfile (checked
        // there); start order and restarts are compose's business.
        &["build", "depends_on", "restart"],
    );
    let mut security = Vec::new();
    assert_eq!(
        s["network_mode"], "host",
        "{name}: the test's daemon has no bridge"
    );
    security.push("--network=host".to_string());
    match s["pid"].as_str() {
        Some("host") => security.push("--pid=host".into()),
        None => {}
        Some(other) => panic!("{name}: pid {other}"),
    }
    if let Some(u) = s["user"].as_str() {
        security.push(format!("--user={u}"));
    }
    if !s["cap_drop"].is_null() {
        for cap in strings(&s["cap_drop"], "cap_drop") {
            security.push(format!("--cap-drop={cap}"));
        }
    }
    if !s["cap_add"].is_null() {
        for cap in strings(&s["cap_add"], "cap_add") {
            security.push(format!("--cap-add={cap}"));
        }
    }
    let mut mounts = Vec::new();
    if !s["volumes"].is_null() {
        for v in strings(&s["volumes"], "volumes") {
            let mut parts = v.split(':');
            let (src, dst) = (parts.next().unwrap(), parts.next().expect("target"));
            let read_only = match parts.next() {
                None | Some("rw") => false,
                Some("ro") => true,
                Some(o) => panic!("{name}: volume option {o}"),
            };
            let source = if src.starts_with('.') || src.starts_with('/') {
                Source::Host(compose_dir.join(src))
            } else {
                Source::Volume(src.to_string())
            };
            mounts.push(Mount {
                source,
                target: dst.to_string(),
                read_only,
            });
        }
    }
    RunSpec {
        security,
        mounts,
        limits: Vec::new(),
        probes: Vec::new(),
        image: s["image"].as_str().expect("image").to_string(),
        command: if s["command"].is_null() {
            Vec::new()
        } else {
            strings(&s["command"], "command")
        },
        // compose's default stop_grace_period
        stop_timeout: 10,
    }
}
