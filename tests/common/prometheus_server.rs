//! A real Prometheus server (Debian package `prometheus`) for tests, killed
//! on drop, with the HTTP API calls the tests need.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port, http_get, TempDir};

pub struct Prometheus {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus on a free port with `config` (a file inside `dir`,
    /// which also holds the TSDB and is removed on drop); waits until ready.
    pub fn start(dir: TempDir, config: &Path) -> Prometheus {
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(p.port, "/-/ready", None).is_err() {
            assert!(Instant::now() < deadline, "prometheus not ready in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// Starts Prometheus scraping `target_port` every second as job `netagent`.
    pub fn scraping(target_port: u16) -> Prometheus {
        let dir = TempDir::new("prom");
        let cfg = dir.0.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
                 - job_name: netagent\n    static_configs:\n      - targets: [\"127.0.0.1:{target_port}\"]\n"
            ),
        )
        .unwrap();
        Prometheus::start(dir, &cfg)
    }

    /// The HTTP API of this server.
    pub fn client(&self) -> PromClient {
        PromClient { port: self.port }
    }

    pub fn api(&self, path: &str) -> Value {
        self.client().api(path)
    }

    /// Instant query; the result vector.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        self.client().query(promql)
    }

    /// Polls `promql` until `ok` holds (at most `within`); the last result.
    pub fn wait_for(
        &self,
        promql: &str,
        within: Duration,
        ok: impl Fn(&[Value]) -> bool,
    ) -> Result<Vec<Value>, Vec<Value>> {
        self.client().wait_for(promql, within, ok)
    }
}

/// The HTTP API of a Prometheus server on `127.0.0.1:port`, whoever runs it
/// (this module's [`Prometheus`], or a container).
#[derive(Debug, Clone, Copy)]
pub struct PromClient {
    pub port: u16,
}

impl PromClient {
    pub fn api(&self, path: &str) -> Value {
        let body = http_get(self.port, path, None).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{path}: {body}");
        v["data"].clone()
    }

    /// Instant query; the result vector.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.api(&format!("/api/v1/query?query={q}"))["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `promql` until `ok` holds (at most `within`); the last result.
    pub fn wait_for(
        &self,
        promql: &str,
        within: Duration,
        ok: impl Fn(&[Value]) -> bool,
    ) -> Result<Vec<Value>, Vec<Value>> {
        let deadline = Instant::now() + within;
        loop {
            let r = self.query(promql);
            if ok(&r) {
                return Ok(r);
            }
            if Instant::now() >= deadline {
                return Err(r);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The value of one instant-vector sample (NaN when absent).
pub fn sample_value(s: &Value) -> f64 {
    s["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}
