//! A Docker daemon of the test's own (scripts/test-dockerd.sh): started for
//! this test process with its own data-root, exec-root, pidfile, socket,
//! containerd and cgroup parent, stopped on drop, and by the script's
//! watchdog if the process is killed. The client is the `docker` that comes
//! with that `dockerd`, with a configuration directory of its own (no
//! credentials or settings of the machine are read).

use super::{repo, run, text};
use crate::common::netns::wait_bounded;
use crate::common::{skip_or_fail, TempDir};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the daemon may take to start or stop.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Docker {
    /// `unix:///run/netagent-test-docker-<pid>.sock`
    pub host: String,
    /// `netagent-test-docker-<pid>`: names its cgroup parent
    pub instance: String,
    /// `/run/netagent-test-docker-<pid>`: its containerd's socket is inside
    pub exec_root: String,
    client: PathBuf,
    config: TempDir,
}

/// `dockerd` on PATH, and the `docker` client of the same package: next to
/// it, or in the sibling bin/ (Debian: /usr/sbin/dockerd, /usr/bin/docker).
/// Not simply the first `docker` on PATH: another CLI may come first (a
/// newer one without the buildx plugin cannot build with BuildKit).
fn binaries() -> Option<(PathBuf, PathBuf)> {
    let path = std::env::var_os("PATH")?;
    let daemon = std::env::split_paths(&path)
        .map(|d| d.join("dockerd"))
        .find(|p| p.exists())?;
    let dir = daemon.parent()?;
    let client = [dir.join("docker"), dir.parent()?.join("bin/docker")]
        .into_iter()
        .find(|p| p.exists())
        .or_else(|| {
            std::env::split_paths(&path)
                .map(|d| d.join("docker"))
                .find(|p| p.exists())
        })?;
    Some((daemon, client))
}

fn script() -> PathBuf {
    repo().join("scripts/test-dockerd.sh")
}

impl Docker {
    /// Starts the daemon; None (after a skip, or a failure under CI) when
    /// it cannot start here, with the reason.
    pub fn start() -> Option<Docker> {
        let Some((_, client)) = binaries() else {
            skip_or_fail(
                "dockerd cannot start: not installed (Debian package docker.io, scripts/setup.sh)",
            );
            return None;
        };
        let out = run(
            Command::new(script())
                .arg("start")
                .arg(std::process::id().to_string()),
            DAEMON_TIMEOUT,
        );
        if !out.status.success() {
            skip_or_fail(&format!("dockerd cannot start:\n{}", text(&out)));
            return None;
        }
        let host = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let instance = format!("netagent-test-docker-{}", std::process::id());
        Some(Docker {
            host,
            exec_root: format!("/run/{instance}"),
            instance,
            client,
            config: TempDir::new("dockercli"),
        })
    }

    /// A `docker` command against this daemon.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.client);
        c.env("DOCKER_CONFIG", &self.config.0)
            .env("DOCKER_BUILDKIT", "1")
            .args(["-H", &self.host]);
        c
    }

    /// Runs `docker args…` (bounded by `timeout`).
    pub fn output(&self, args: &[&str], timeout: Duration) -> Output {
        run(self.cmd().args(args), timeout)
    }

    /// Runs `docker args…`, fails the test unless it succeeds; its stdout.
    pub fn ok(&self, args: &[&str], timeout: Duration) -> String {
        let out = self.output(args, timeout);
        assert!(
            out.status.success(),
            "docker {}:\n{}",
            args.join(" "),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker inspect -f FORMAT name`.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "-f", format, name], Duration::from_secs(30))
    }

    /// Runs `docker args…` without ever panicking (for drops); success?
    pub fn quiet(&self, args: &[&str], timeout: Duration) -> bool {
        let Ok(mut c) = self
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        match wait_bounded(&mut c, timeout) {
            Some(s) => s.success(),
            None => {
                let _ = c.kill();
                let _ = c.wait();
                false
            }
        }
    }

    /// The last lines a container logged (for failure messages).
    pub fn logs(&self, name: &str) -> String {
        text(&self.output(&["logs", "--tail", "40", name], Duration::from_secs(30)))
    }
}

impl Drop for Docker {
    /// Never panics (it may run while a failed test unwinds).
    fn drop(&mut self) {
        let child = Command::new(script())
            .arg("stop")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .spawn();
        match child {
            Ok(mut c) => match wait_bounded(&mut c, DAEMON_TIMEOUT) {
                Some(s) if s.success() => {}
                Some(s) => eprintln!("test-dockerd.sh stop: {s}"),
                None => {
                    let _ = c.kill();
                    let _ = c.wait();
                    eprintln!("test-dockerd.sh stop did not finish; its watchdog will retry");
                }
            },
            Err(e) => eprintln!("test-dockerd.sh stop: {e}"),
        }
    }
}

/// A container removed (with `docker rm -f`) on drop.
pub struct Container<'d> {
    pub docker: &'d Docker,
    pub name: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        self.docker
            .quiet(&["rm", "-f", &self.name], Duration::from_secs(60));
    }
}

/// `docker stop -t <grace>`: the agent exits by itself, with status 0,
/// within the grace period.
pub fn stop_within_grace(docker: &Docker, name: &str, grace: u64) -> f64 {
    let t = Instant::now();
    docker.ok(
        &["stop", "-t", &grace.to_string(), name],
        Duration::from_secs(grace + 60),
    );
    let took = t.elapsed().as_secs_f64();
    let state = docker.inspect(name, "{{.State.ExitCode}} {{.State.OOMKilled}}");
    assert_eq!(
        state,
        "0 false",
        "{name} after SIGTERM (exit code, OOM-killed):\n{}",
        docker.logs(name)
    );
    assert!(
        took < grace as f64,
        "{name} took {took:.1} s to stop (grace {grace} s): killed, not shut down"
    );
    took
}
