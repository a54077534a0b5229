//! HTTP security of the real agent on real sockets: TLS (and client
//! certificates) and basic auth from an exporter-toolkit web config,
//! reloaded when it changes; slow clients against the header-read, idle
//! and connection limits; web-config errors at start.
//!
//! One file per concern in tests/http_security/: TLS and basic auth, slow
//! clients and the connection limit, web-config errors at start. This file
//! holds the agent they all start, whose config each test writes whole,
//! and the helpers more than one of them uses.

mod common;

#[path = "http_security/slow_clients.rs"]
mod slow_clients;
#[path = "http_security/tls_auth.rs"]
mod tls_auth;
#[path = "http_security/web_config_errors.rs"]
mod web_config_errors;

use common::{free_port, TempDir, AGENT};
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running agent whose config this file writes whole: `common`'s helper
/// appends its own `export:` section, and these tests need more of it.
struct SecureAgent {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
    _dir: TempDir,
}

impl SecureAgent {
    /// Starts with `export.listen_addr` on a free loopback port plus
    /// `export_extra` (lines indented under `export:`); config in `dir`.
    fn start(dir: TempDir, export_extra: &str) -> SecureAgent {
        let port = free_port();
        let cfg = dir.0.join("config.yaml");
        std::fs::write(
            &cfg,
            format!("targets: []\nexport:\n  listen_addr: \"127.0.0.1:{port}\"\n{export_extra}"),
        )
        .unwrap();
        let (child, stderr) = spawn_agent(&cfg);
        let mut agent = SecureAgent {
            child,
            port,
            stderr,
            _dir: dir,
        };
        agent.wait_serving();
        agent
    }

    /// Ready once the server logs that it serves (no probe connection,
    /// which would take a slot from the connection-limit test).
    fn wait_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("agent exited early ({status}): {}", self.stderr());
            }
            if self.stderr().contains("serving /metrics") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("agent not serving within 20 s: {}", self.stderr());
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then the exit status and how long it took (bounded).
    fn terminate(&mut self) -> (ExitStatus, Duration) {
        let started = Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (s, started.elapsed());
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "agent did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for SecureAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_agent(cfg: &Path) -> (Child, Arc<Mutex<String>>) {
    let mut child = Command::new(AGENT)
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netagent");
    let stderr = Arc::new(Mutex::new(String::new()));
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
    (child, stderr)
}

/// bcrypt as `htpasswd -nBC` writes it ($2y$), at the lowest cost for speed.
fn htpasswd(password: &str) -> String {
    bcrypt::hash_with_result(password, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

/// True when the server closed the connection (EOF or reset) rather than
/// the read timing out or data arriving.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!(
            "server sent data on a slow connection: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}
