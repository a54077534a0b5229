//! Running a deployment's container through containerd (`ctr`), the
//! runtime the kubelet drives, instead of `docker run`: Docker 20.10 (the
//! docker.io of Debian 12 installed here) refuses `--cap-add BPF` and
//! `--cap-add PERFMON` ("unknown capability": moby 20.10 stops its list at
//! CAP_AUDIT_READ; Docker 23 lifted that), so it cannot run the DaemonSet's
//! or the compose file's securityContext at all. The containerd that the
//! test's dockerd started (docker.rs) runs the same image, imported from
//! the daemon, in its own namespace and under the instance's cgroup parent,
//! so that scripts/test-dockerd.sh stops it with everything else.
//!
//! What `ctr run` (containerd 1.6) cannot express is set as close as it
//! goes, and said: it has no `--user` (the image's USER is used; the
//! DaemonSet's runAsUser must equal it) and always sets no_new_privs
//! (allowPrivilegeEscalation: false). With no_new_privs the kernel still
//! gives the agent its file capabilities, because runc grants them to the
//! container's process before exec: the result is the same capability set.

use super::docker::Docker;
use super::pod::{Mount, RunSpec};
use super::{run, text};
use crate::common::netns::wait_bounded;
use crate::common::TempDir;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// containerd namespace of the test's containers.
const NAMESPACE: &str = "netagent-test";

/// An image in containerd's store.
pub struct Image {
    pub reference: String,
    /// `ENTRYPOINT`: ctr replaces all of the process's arguments, Kubernetes
    /// `args` and compose `command` only `CMD`.
    pub entrypoint: Vec<String>,
    /// `USER` (ctr has no --user).
    pub user: String,
}

/// The containerd of the test's dockerd.
pub struct Containerd<'d> {
    docker: &'d Docker,
    address: String,
    /// The instance's cgroup parent (scripts/test-dockerd.sh cleans it).
    cgroup_parent: String,
}

impl<'d> Containerd<'d> {
    pub fn of(docker: &'d Docker) -> Containerd<'d> {
        Containerd {
            docker,
            address: format!("{}/containerd/containerd.sock", docker.exec_root),
            cgroup_parent: format!("/{}", docker.instance),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("ctr");
        c.args(["--address", &self.address, "--namespace", NAMESPACE]);
        c
    }

    fn ok(&self, args: &[&str], timeout: Duration) -> String {
        let out = run(self.cmd().args(args), timeout);
        assert!(
            out.status.success(),
            "ctr {}:\n{}",
            args.join(" "),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `ctr args…` (30 s at most) without ever panicking.
    fn quiet(&self, args: &[&str]) {
        let Ok(mut c) = self
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return;
        };
        if wait_bounded(&mut c, Duration::from_secs(30)).is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Copies `tag` from the daemon's image store into containerd's.
    pub fn import(&self, tag: &str) -> Image {
        let dir = TempDir::new("ctrimport");
        let tar = dir.0.join("image.tar");
        self.docker.ok(
            &["save", "-o", tar.to_str().unwrap(), tag],
            Duration::from_secs(300),
        );
        self.ok(
            &["images", "import", tar.to_str().unwrap()],
            Duration::from_secs(300),
        );
        let entrypoint: Vec<String> =
            serde_json::from_str(&self.docker.inspect(tag, "{{json .Config.Entrypoint}}"))
                .unwrap_or_default();
        Image {
            reference: if tag.contains('/') {
                format!("docker.io/{tag}")
            } else {
                format!("docker.io/library/{tag}")
            },
            entrypoint,
            user: self.docker.inspect(tag, "{{.Config.User}}"),
        }
    }

    /// `ctr run` options for `spec` (its `docker run` options translated),
    /// with `resolve` giving each mount's host side.
    fn run_args(&self, spec: &RunSpec, resolve: &dyn Fn(&Mount) -> String) -> Vec<String> {
        let mut args = Vec::new();
        let mut drop_all = false;
        let mut added = Vec::new();
        let mut seccomp = true;
        for opt in spec.security.iter().chain(&spec.limits) {
            let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
            match k {
                "--network" if v == "host" => args.push("--net-host".into()),
                "--pid" if v == "host" => {
                    args.push("--with-ns".into());
                    args.push(format!("pid:/proc/{}/ns/pid", std::process::id()));
                }
                // Checked by the caller against the image's USER.
                "--user" => {}
                "--read-only" => args.push("--read-only".into()),
                "--privileged" => args.push("--privileged".into()),
                "--cap-drop" if v == "ALL" => drop_all = true,
                "--cap-drop" => args.extend(["--cap-drop".into(), format!("CAP_{v}")]),
                "--cap-add" => added.push(format!("CAP_{v}")),
                // ctr always sets no_new_privs (see above).
                "--security-opt" if v == "no-new-privileges" => {}
                "--security-opt" if v == "seccomp=unconfined" => seccomp = false,
                "--cpus" => args.extend(["--cpus".into(), v.to_string()]),
                "--memory" => args.extend(["--memory-limit".into(), v.to_string()]),
                _ => panic!("{opt}: teach tests/deploy/containerd.rs"),
            }
        }
        if drop_all {
            // containerd's default set, as its default spec lists it ("ALL"
            // is not a name ctr knows).
            let spec: serde_json::Value =
                serde_json::from_str(&self.ok(&["oci", "spec"], Duration::from_secs(30))).unwrap();
            for cap in spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
            {
                let cap = cap.as_str().unwrap();
                if !added.iter().any(|a| a == cap) {
                    args.extend(["--cap-drop".into(), cap.to_string()]);
                }
            }
        }
        for cap in added {
            args.extend(["--cap-add".into(), cap]);
        }
        if seccomp {
            // The runtime's default profile (RuntimeDefault).
            args.push("--seccomp".into());
        }
        for m in &spec.mounts {
            let mode = if m.read_only { "ro" } else { "rw" };
            args.push("--mount".into());
            args.push(format!(
                "type=bind,src={},dst={},options=rbind:{mode}",
                resolve(m),
                m.target
            ));
        }
        args
    }

    /// Starts container `name` of `image` as `spec` says; its output goes
    /// to a file in `logs`.
    pub fn start(
        &self,
        name: &str,
        spec: &RunSpec,
        image: &Image,
        resolve: &dyn Fn(&Mount) -> String,
        logs: &TempDir,
    ) -> Task<'_> {
        let log = logs.0.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = self.cmd();
        cmd.args(["run", "--rm", "--cgroup"])
            .arg(format!("{}/{name}", self.cgroup_parent))
            .args(self.run_args(spec, resolve))
            .arg(&image.reference)
            .arg(name);
        if !spec.command.is_empty() {
            cmd.args(&image.entrypoint).args(&spec.command);
        }
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().expect("ctr run");
        Task {
            ctr: self,
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }
}

/// A running container: `ctr run --rm` in the foreground, whose exit
/// status is the container's. Killed and removed on drop.
pub struct Task<'c> {
    ctr: &'c Containerd<'c>,
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Task<'_> {
    /// The container's main process (host PID), once it runs.
    pub fn pid(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = run(self.ctr.cmd().args(["task", "ls"]), Duration::from_secs(30));
            let pid = String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&self.name.as_str()) && f.get(2) == Some(&"RUNNING"))
                    .then(|| f[1].parse().ok())
                    .flatten()
            });
            if let Some(pid) = pid {
                return pid;
            }
            assert!(
                self.exited().is_none() && Instant::now() < deadline,
                "{} did not start:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Still running? None while it does; its exit status once it exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn logs(&self) -> String {
        let all = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Stopped as the kubelet stops it: SIGTERM, SIGKILL after `grace`
    /// seconds. Returns (seconds it took, exit status); None if killed.
    pub fn stop(&mut self, grace: u64) -> (f64, Option<ExitStatus>) {
        let t = Instant::now();
        self.ctr.ok(
            &["task", "kill", "--signal", "SIGTERM", &self.name],
            Duration::from_secs(30),
        );
        let child = self.child.as_mut().unwrap();
        let status = wait_bounded(child, Duration::from_secs(grace));
        let took = t.elapsed().as_secs_f64();
        if status.is_none() {
            self.kill();
        }
        (took, status)
    }

    /// Never panics (it runs in drops, maybe while a test unwinds).
    fn kill(&mut self) {
        self.ctr
            .quiet(&["task", "kill", "--signal", "SIGKILL", &self.name]);
        if let Some(mut c) = self.child.take() {
            if wait_bounded(&mut c, Duration::from_secs(30)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // `run --rm` removes it, unless ctr itself was killed.
        self.ctr.quiet(&["containers", "rm", &self.name]);
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
    }
}
