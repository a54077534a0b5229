//! A private containerd (Debian's containerd 1.6) driven with `ctr` the
//! way the kubelet's CRI plugin drives it: namespace `k8s.io`, container
//! cgroups `/kubepods/<qos>/pod<uid>/<id>`, the CRI annotations on every
//! task, a sandbox container per pod whose network namespace the pod's
//! containers join. The CRI plugin itself is disabled (it would set up CNI
//! and listen for the kubelet); containers run from the image's unpacked
//! root file system (`ctr run --rootfs`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{installed, new_id, rootfs, run_text, try_run, Daemon, Scratch};

pub const CONTAINERD: &str = "/usr/bin/containerd";
pub const CTR: &str = "/usr/bin/ctr";
const NS: &str = "k8s.io";

pub struct Containerd {
    daemon: Option<Daemon>,
    pub scratch: Scratch,
    pub address: String,
    /// containerd's `state` (the agent's `containers.containerd_state`).
    pub state: PathBuf,
    tasks: std::sync::Mutex<Vec<String>>,
}

/// A pod: its sandbox (whose network namespace its containers share).
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub sandbox: Task,
}

pub struct Task {
    pub id: String,
    pub pid: u32,
}

impl Containerd {
    pub fn start() -> Option<Containerd> {
        if !installed(CONTAINERD) || !installed(CTR) {
            return None;
        }
        let scratch = Scratch::new("containerd");
        let root = scratch.var.join("root");
        let state = scratch.run.join("state");
        let address = scratch.run.join("containerd.sock").display().to_string();
        let config = scratch.run.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{address}\"\n\
                 [ttrpc]\n  address = \"{address}.ttrpc\"\n\
                 [debug]\n  address = \"\"\n\
                 [metrics]\n  address = \"\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{}\"\n",
                root.display(),
                state.display(),
                scratch.var.join("opt").display()
            ),
        )
        .unwrap();
        let args = vec![
            "--config".to_string(),
            config.display().to_string(),
            "--log-level".into(),
            "warn".into(),
        ];
        let mut daemon = Daemon::spawn(
            "containerd",
            CONTAINERD,
            &args,
            scratch.run.join("containerd.log"),
        );
        let a = address.clone();
        daemon.wait_ready(Duration::from_secs(60), || {
            try_run(CTR, &["--address", &a, "version"], Duration::from_secs(5))
                .is_ok_and(|o| o.status.success())
        });
        Some(Containerd {
            daemon: Some(daemon),
            scratch,
            address,
            state,
            tasks: Default::default(),
        })
    }

    /// `ctr --address <ours> -n k8s.io args…`, its stdout.
    pub fn ctr(&self, args: &[&str]) -> String {
        let mut all = vec!["--address", self.address.as_str(), "-n", NS];
        all.extend_from_slice(args);
        run_text(CTR, &all, Duration::from_secs(60))
    }

    /// Starts task `id` in `cgroup` with these annotations (and the
    /// network namespace of `netns_pid`, if given); its main process.
    pub fn run(
        &self,
        id: &str,
        cgroup: &str,
        annotations: &[(&str, &str)],
        netns_pid: Option<u32>,
        host_network: bool,
        cmd: &[&str],
    ) -> Task {
        let (root, _) = rootfs();
        let root = root.display().to_string();
        let notes: Vec<String> = annotations
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let ns = netns_pid.map(|p| format!("network:/proc/{p}/ns/net"));
        let mut args = vec!["run", "-d", "--rootfs", "--cgroup", cgroup];
        for n in &notes {
            args.extend(["--annotation", n.as_str()]);
        }
        if let Some(ns) = &ns {
            args.extend(["--with-ns", ns.as_str()]);
        }
        if host_network {
            args.push("--net-host");
        }
        args.extend([root.as_str(), id]);
        args.extend_from_slice(cmd);
        self.scratch.record_cgroup(cgroup);
        self.tasks.lock().unwrap().push(id.to_string());
        self.ctr(&args);
        Task {
            id: id.to_string(),
            pid: self.pid(id),
        }
    }

    fn pid(&self, id: &str) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list = self.ctr(&["task", "ls"]);
            let pid = list.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 3 && f[0] == id && f[2] == "RUNNING")
                    .then(|| f[1].parse().ok())
                    .flatten()
            });
            if let Some(p) = pid {
                return p;
            }
            assert!(Instant::now() < deadline, "task {id} not running: {list}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A pod the way the CRI plugin makes one: a sandbox task (the
    /// traffic generator standing in for `pause`) with the sandbox
    /// annotations in `/kubepods/besteffort/pod<uid>/<id>`.
    pub fn pod(&self, name: &str, namespace: &str) -> Pod {
        let uid = uuid();
        let id = new_id();
        let cgroup = format!("/kubepods/besteffort/pod{uid}/{id}");
        self.scratch
            .record_cgroup(&format!("/kubepods/besteffort/pod{uid}"));
        let sandbox = self.run(
            &id,
            &cgroup,
            &[
                ("io.kubernetes.cri.container-type", "sandbox"),
                ("io.kubernetes.cri.sandbox-id", &id),
                ("io.kubernetes.cri.sandbox-name", name),
                ("io.kubernetes.cri.sandbox-namespace", namespace),
                ("io.kubernetes.cri.sandbox-uid", &uid),
            ],
            None,
            false,
            &[
                "/bin/netagent-testgen",
                "--comm",
                "pause",
                "serve",
                "--tcp4",
                "0",
                "--bind4",
                "127.0.0.1",
                "--max-seconds",
                "600",
            ],
        );
        Pod {
            name: name.to_string(),
            namespace: namespace.to_string(),
            uid,
            sandbox,
        }
    }

    /// A container of `pod`, in its network namespace, with the CRI
    /// container annotations.
    pub fn container(&self, pod: &Pod, name: &str, image: &str, cmd: &[&str]) -> Task {
        let id = new_id();
        let cgroup = format!("/kubepods/besteffort/pod{}/{id}", pod.uid);
        self.run(
            &id,
            &cgroup,
            &[
                ("io.kubernetes.cri.container-type", "container"),
                ("io.kubernetes.cri.container-name", name),
                ("io.kubernetes.cri.image-name", image),
                ("io.kubernetes.cri.sandbox-id", &pod.sandbox.id),
                ("io.kubernetes.cri.sandbox-name", &pod.name),
                ("io.kubernetes.cri.sandbox-namespace", &pod.namespace),
                ("io.kubernetes.cri.sandbox-uid", &pod.uid),
            ],
            Some(pod.sandbox.pid),
            false,
            cmd,
        )
    }

    /// `ctr task exec` of the traffic generator under `comm` in task `id`;
    /// its JSON summary.
    pub fn testgen(&self, id: &str, comm: &str, args: &[&str]) -> serde_json::Value {
        let exec_id = format!("x{}", &new_id()[48..]);
        let mut all = vec![
            "task",
            "exec",
            "--exec-id",
            &exec_id,
            id,
            "/bin/netagent-testgen",
            "--comm",
            comm,
        ];
        all.extend_from_slice(args);
        let out = self.ctr(&all);
        serde_json::from_str(out.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("testgen in {id} said {out:?}: {e}"))
    }

    /// Kills and deletes a task and its container (bounded).
    pub fn remove(&self, id: &str) {
        let a = |args: &[&str]| {
            let mut all = vec!["--address", self.address.as_str(), "-n", NS];
            all.extend_from_slice(args);
            try_run(CTR, &all, Duration::from_secs(30))
        };
        let _ = a(&["task", "kill", "-s", "SIGKILL", id]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !a(&["task", "delete", id]).is_ok_and(|o| o.status.success()) {
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = a(&["container", "delete", id]);
        self.tasks.lock().unwrap().retain(|t| t != id);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        for id in tasks.iter().rev() {
            self.remove(id);
        }
        drop(self.daemon.take());
    }
}

/// A pod uid (UUID form).
fn uuid() -> String {
    let h = new_id();
    format!(
        "{}-{}-{}-{}-{}",
        &h[32..40],
        &h[40..44],
        &h[44..48],
        &h[48..52],
        &h[52..64]
    )
}
