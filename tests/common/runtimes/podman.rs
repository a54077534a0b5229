//! Podman 4.3 as root with private storage (`--root`, `--runroot`,
//! `--tmpdir`), the cgroupfs manager and runc (crun refuses this machine's
//! hybrid cgroup layout; the ulimits are the machine's hard limits, which
//! root may not raise without CAP_SYS_RESOURCE). Containers start with
//! `--network none`.

use std::path::PathBuf;
use std::time::Duration;

use super::{installed, rootfs, run_text, try_run, Container, Scratch};

pub const PODMAN: &str = "/usr/bin/podman";

pub struct Podman {
    pub scratch: Scratch,
    /// containers/storage graph root and run root (the agent's
    /// `containers.storage_root`, `storage_run_root`).
    pub root: PathBuf,
    pub runroot: PathBuf,
    pub image: String,
}

impl Podman {
    pub fn start() -> Option<Podman> {
        if !installed(PODMAN) {
            return None;
        }
        let scratch = Scratch::new("podman");
        let p = Podman {
            root: scratch.var.join("storage"),
            runroot: scratch.run.join("storage"),
            scratch,
            image: format!("localhost/netagent-test:{}", std::process::id()),
        };
        let (_, tar) = rootfs();
        p.cli(&["import", &tar.to_string_lossy(), &p.image]);
        Some(p)
    }

    fn base(&self) -> Vec<String> {
        [
            "--root",
            &self.root.to_string_lossy(),
            "--runroot",
            &self.runroot.to_string_lossy(),
            "--tmpdir",
            &self.scratch.run.join("libpod").to_string_lossy(),
            "--cgroup-manager",
            "cgroupfs",
            "--runtime",
            "runc",
            "--events-backend",
            "file",
            "--log-level",
            "error",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let base = self.base();
        let mut all: Vec<&str> = base.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run_text(PODMAN, &all, Duration::from_secs(120))
    }

    /// `podman run -d --network none` of our image.
    pub fn run(&self, name: &str, cmd: &[&str]) -> Container {
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
            &self.image,
        ];
        args.extend_from_slice(cmd);
        let id = self.cli(&args);
        self.scratch
            .record_cgroup(&format!("/libpod_parent/libpod-{id}"));
        Container::started(|a| self.cli(a), name, id)
    }

    pub fn testgen(&self, name: &str, comm: &str, args: &[&str]) -> serde_json::Value {
        super::testgen_in(|a| self.cli(a), name, comm, args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let base = self.base();
        let mut all: Vec<&str> = base.iter().map(String::as_str).collect();
        all.extend(["rm", "-a", "-f", "-t", "0"]);
        let _ = try_run(PODMAN, &all, Duration::from_secs(120));
    }
}
