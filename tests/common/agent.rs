//! [`Agent`]: the real agent binary running with a config the test gives,
//! ready once it serves HTTP, its stderr echoed and kept; killed on drop.

use super::http_client::http_get_at;
use super::metrics::Metrics;
use super::{free_port, TempDir, AGENT};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A running agent; killed on drop so a failing test leaves nothing behind.
pub struct Agent {
    pub child: Child,
    /// Where it serves HTTP: `ip:port`, 127.0.0.1 unless started with
    /// [`Agent::start_with_yaml_on`].
    pub ip: std::net::IpAddr,
    pub port: u16,
    _dir: TempDir,
    stderr: std::sync::Arc<Mutex<String>>,
}

impl Agent {
    /// Starts the agent with `targets` (name, comm) pairs; empty = all processes.
    pub fn start(targets: &[(&str, &str)]) -> Agent {
        let mut yaml = String::from("targets:\n");
        // YAML double-quoted scalars escape `\` and `"`.
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        for (name, comm) in targets {
            yaml += &format!(
                "  - name: \"{}\"\n    match_comm: \"{}\"\n",
                q(name),
                q(comm)
            );
        }
        if targets.is_empty() {
            yaml = "targets: []\n".into();
        }
        Self::start_with_yaml(&yaml)
    }

    /// Starts the agent with this YAML plus an `export.listen_addr` on a free port.
    pub fn start_with_yaml(yaml: &str) -> Agent {
        Self::start_with_yaml_on(yaml, std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// Like [`Agent::start_with_yaml`], serving HTTP on `ip` (an address of
    /// the root namespace) instead of 127.0.0.1.
    pub fn start_with_yaml_on(yaml: &str, ip: std::net::IpAddr) -> Agent {
        let dir = TempDir::new("agent");
        let port = free_port();
        let cfg = dir.0.join("config.yaml");
        let listen = std::net::SocketAddr::new(ip, port);
        std::fs::write(
            &cfg,
            format!("{yaml}export:\n  listen_addr: \"{listen}\"\n"),
        )
        .unwrap();
        let mut child = Command::new(AGENT)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start netagent");
        let stderr = std::sync::Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[agent] {line}");
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut agent = Agent {
            child,
            ip,
            port,
            _dir: dir,
            stderr,
        };
        agent.wait_ready();
        agent
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("agent exited early ({status}): {}", self.stderr());
            }
            // Serving at all means ready; a degraded agent answers 503.
            match http_get_at(self.ip, self.port, "/health", None) {
                Ok(_) => return,
                Err(e) if e.starts_with("HTTP/1.1 503") => return,
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("agent not ready within 20 s: {}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Classic text scrape.
    pub fn scrape(&self) -> String {
        http_get_at(self.ip, self.port, "/metrics", None).expect("scrape /metrics")
    }

    pub fn metrics(&self) -> Metrics {
        Metrics::parse(&self.scrape())
    }

    /// Scrapes until `done` holds or 10 s pass, and returns the last scrape:
    /// for counts that finish in softirq after the traffic's processes
    /// exited (a peer's FIN closing our side). The caller still asserts
    /// the exact figure, so a count that overshoots or never arrives fails.
    #[allow(dead_code)] // not every test binary waits
    pub fn metrics_when(&self, done: impl Fn(&Metrics) -> bool) -> Metrics {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let m = self.metrics();
            if done(&m) || std::time::Instant::now() > until {
                return m;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Sends `sig` and waits for the exit status (bounded).
    pub fn signal_and_wait(&mut self, sig: i32) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not exit after signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
