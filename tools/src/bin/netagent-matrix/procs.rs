//! Child processes with bounded waits: the agent (killed on drop, its
//! stderr forwarded and kept), testgen servers (killed on drop) and
//! one-shot commands (killed at their deadline).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Lines of agent stderr kept for failure messages.
const KEPT_LINES: usize = 40;

/// Children die with the driver, even when it is killed (a host run past
/// its time limit): nothing of a scenario outlives it.
fn dies_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// What a finished one-shot command said.
pub struct Output {
    /// None when it was killed at its deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for `child` until `deadline`; kills it past that. None = killed.
fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command to completion, killing it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = dies_with_parent(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let out = drain(child.stdout.take().expect("piped"));
    let err = drain(child.stderr.take().expect("piped"));
    let status = wait_until(&mut child, Instant::now() + timeout)?;
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// The running agent.
pub struct Agent {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    pub fn start(agent: &Path, config: &Path) -> Result<Agent> {
        let mut child = dies_with_parent(&mut Command::new(agent))
            .arg("--config")
            .arg(config)
            // Plain log lines on a serial console.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", agent.display()))?;
        let kept = Arc::new(Mutex::new(Vec::new()));
        let sink = kept.clone();
        let pipe = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[agent] {line}");
                let mut k = sink.lock().unwrap_or_else(|p| p.into_inner());
                if k.len() == KEPT_LINES {
                    k.remove(0);
                }
                k.push(line);
            }
        });
        Ok(Agent {
            child,
            stderr: kept,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the agent wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join(" | ")
    }

    /// Waits until the agent listens on `port` (seen in /proc/net/tcp, so
    /// the wait itself sends no packet over the loopback being counted).
    pub fn wait_listening(&mut self, port: u16, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("agent exited early ({status}): {}", self.stderr_tail());
            }
            if listening(port) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!(
                    "agent not listening on port {port} within {timeout:?}: {}",
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status within `timeout` (None: it had to be killed).
    pub fn terminate(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        wait_until(&mut self.child, Instant::now() + timeout)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when a TCP socket listens on `port` (IPv4 or IPv6).
fn listening(port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                // local_address is column 1, state column 3 (0A = LISTEN).
                cols.len() > 3 && cols[1].ends_with(&want) && cols[3] == "0A"
            })
        })
    })
}

/// A testgen server, killed on drop.
pub struct Server {
    child: Child,
    pub ports: serde_json::Value,
}

impl Server {
    pub fn start(testgen: &Path, comm: &str, args: &[&str], timeout: Duration) -> Result<Server> {
        Self::start_as(testgen, comm, "serve", args, timeout)
    }

    /// The same with another testgen server command (`dns-serve`).
    pub fn start_as(
        testgen: &Path,
        comm: &str,
        command: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Server> {
        let mut child = dies_with_parent(&mut Command::new(testgen))
            .args(["--comm", comm, command])
            .args(args)
            .args(["--max-seconds", "900"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting netagent-testgen serve")?;
        // The ready line arrives once every port is bound; read it on a
        // thread so a hung server cannot stall us past the timeout.
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Server {
            child,
            ports: serde_json::Value::Null,
        };
        let line = rx
            .recv_timeout(timeout)
            .context("testgen serve printed no ready line in time")?;
        server.ports =
            serde_json::from_str(&line).with_context(|| format!("testgen serve said {line:?}"))?;
        Ok(server)
    }

    pub fn port(&self, key: &str) -> Result<u16> {
        self.ports[key]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .with_context(|| format!("no {key} port in {}", self.ports))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a testgen client and returns its JSON summary and exit code.
pub fn testgen_client(
    testgen: &Path,
    comm: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<(Option<i32>, serde_json::Value)> {
    let out = run(
        Command::new(testgen)
            .args(["--comm", comm, "client"])
            .args(args),
        timeout,
    )?;
    let Some(status) = out.status else {
        bail!("testgen client {args:?} still running after {timeout:?}");
    };
    let last = out.stdout.lines().last().unwrap_or_default();
    let summary = serde_json::from_str(last).with_context(|| {
        format!(
            "testgen client {args:?} printed {:?} (stderr {:?})",
            out.stdout, out.stderr
        )
    })?;
    Ok((status.code(), summary))
}
