//! A private dockerd (Debian's docker.io 20.10): its own data root, exec
//! root, socket and managed containerd; no bridge, no iptables rules, no
//! IP forwarding. Containers start with `--network none`.

use std::path::PathBuf;
use std::time::Duration;

use super::{installed, rootfs, run, run_text, try_run, Container, Daemon, Scratch};

pub const DOCKERD: &str = "/usr/sbin/dockerd";
/// Debian's client (not whatever else is first in PATH).
pub const DOCKER: &str = "/usr/bin/docker";

/// A running dockerd and the image imported into it; containers removed
/// and the daemon stopped on drop.
pub struct Docker {
    daemon: Option<Daemon>,
    pub scratch: Scratch,
    pub host: String,
    pub data_root: PathBuf,
    pub image: String,
}

impl Docker {
    /// None when docker.io is not installed (the caller skips or fails).
    pub fn start() -> Option<Docker> {
        if !installed(DOCKERD) || !installed(DOCKER) {
            return None;
        }
        let scratch = Scratch::new("docker");
        let data_root = scratch.var.join("docker");
        let sock = scratch.run.join("docker.sock");
        let host = format!("unix://{}", sock.display());
        let config = scratch.run.join("daemon.json");
        std::fs::write(&config, "{}\n").unwrap();
        let args: Vec<String> = [
            "--data-root",
            &data_root.to_string_lossy(),
            "--exec-root",
            &scratch.run.join("exec").to_string_lossy(),
            "--host",
            &host,
            "--pidfile",
            &scratch.run.join("docker.pid").to_string_lossy(),
            "--config-file",
            &config.to_string_lossy(),
            "--bridge",
            "none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--userland-proxy=false",
            "--exec-opt",
            "native.cgroupdriver=cgroupfs",
            "--log-level",
            "warn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut daemon = Daemon::spawn("dockerd", DOCKERD, &args, scratch.run.join("dockerd.log"));
        let h = host.clone();
        daemon.wait_ready(Duration::from_secs(60), || {
            try_run(DOCKER, &["-H", &h, "version"], Duration::from_secs(5))
                .is_ok_and(|o| o.status.success())
        });
        let image = format!("netagent-test:{}", std::process::id());
        let (_, tar) = rootfs();
        run(
            DOCKER,
            &["-H", &host, "import", &tar.to_string_lossy(), &image],
            Duration::from_secs(120),
        );
        Some(Docker {
            daemon: Some(daemon),
            scratch,
            host,
            data_root,
            image,
        })
    }

    /// `docker -H <ours> args…`, its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all = vec!["-H", self.host.as_str()];
        all.extend_from_slice(args);
        run_text(DOCKER, &all, Duration::from_secs(60))
    }

    /// `docker run -d --network none` of our image; `extra` goes before
    /// the image (labels, cgroup parent), `cmd` after it.
    pub fn run(&self, name: &str, extra: &[&str], cgroup_parent: &str, cmd: &[&str]) -> Container {
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--cgroup-parent",
            cgroup_parent,
        ];
        args.extend_from_slice(extra);
        args.push(&self.image);
        args.extend_from_slice(cmd);
        let id = self.cli(&args);
        self.scratch
            .record_cgroup(&format!("{}/{id}", cgroup_parent.trim_end_matches('/')));
        Container::started(|a| self.cli(a), name, id)
    }

    /// Runs the traffic generator in a container under `comm`; its JSON
    /// summary.
    pub fn testgen(&self, name: &str, comm: &str, args: &[&str]) -> serde_json::Value {
        super::testgen_in(|a| self.cli(a), name, comm, args)
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let ids = try_run(
            DOCKER,
            &["-H", &self.host, "ps", "-aq"],
            Duration::from_secs(30),
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["-H", self.host.as_str(), "rm", "-f"];
            args.extend(ids);
            let _ = try_run(DOCKER, &args, Duration::from_secs(60));
        }
        drop(self.daemon.take());
        // `scratch` goes next: leftovers, mounts, directories.
    }
}
