//! HTTP security of the real agent on real sockets: TLS (and client
//! certificates) and basic auth from an exporter-toolkit web config,
//! reloaded when it changes; slow clients against the header-read, idle
//! and connection limits; web-config errors at start.

mod common;
use common::*;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REALM: &str = r#"Basic realm="netagent""#;

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

/// A CA, a server certificate for 127.0.0.1 signed by it, and a client
/// certificate signed by it, written as PEM files into `dir`.
struct Pki {
    ca_pem: String,
    client_identity_pem: String,
}

fn make_pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "netagent test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["scraper".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();

    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        client_identity_pem: format!("{}{}", client.pem(), client_key.serialize_pem()),
    }
}

/// bcrypt as `htpasswd -nBC` writes it ($2y$), at the lowest cost for speed.
fn htpasswd(password: &str) -> String {
    bcrypt::hash_with_result(password, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

fn https_client(ca_pem: Option<&str>, identity_pem: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(10));
    if let Some(ca) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
    }
    if let Some(id) = identity_pem {
        b = b.identity(reqwest::Identity::from_pem(id.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// GET with optional basic auth: (status, WWW-Authenticate, body).
async fn get(
    client: &reqwest::Client,
    url: &str,
    auth: Option<(&str, &str)>,
) -> Result<(u16, Option<String>, String), reqwest::Error> {
    let mut req = client.get(url);
    if let Some((user, password)) = auth {
        req = req.basic_auth(user, Some(password));
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    Ok((status, challenge, resp.text().await?))
}

#[test]
fn tls_and_basic_auth_protect_every_endpoint() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("httpsec-tls");
    let pki = make_pki(&dir.0);
    let web = dir.0.join("web.yml");
    // Relative paths: from the web config's directory, as in the toolkit.
    let tls = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";
    std::fs::write(
        &web,
        format!("{tls}basic_auth_users:\n  alice: {}\n", htpasswd("s3cret")),
    )
    .unwrap();
    let mut agent = SecureAgent::start(
        dir,
        &format!(
            "  web_config_file: \"{}\"\n  header_read_timeout_seconds: 2\n",
            web.display()
        ),
    );
    let base = format!("https://127.0.0.1:{}", agent.port);
    // A client that starts a TLS handshake and stalls: the header timeout
    // covers the handshake.
    let stalled = {
        let mut s = TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&[0x16, 0x03, 0x01]).unwrap(); // part of a ClientHello record
        let opened = Instant::now();
        std::thread::spawn(move || (closed_by_server(&mut s), opened.elapsed()))
    };
    let client = https_client(Some(&pki.ca_pem), None);
    let rt = runtime();
    let alice = Some(("alice", "s3cret"));

    rt.block_on(async {
        // The right password: metrics over TLS.
        let (status, _, body) = get(&client, &format!("{base}/metrics"), alice)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("# TYPE netagent_probe_up gauge"), "{body}");

        // Every endpoint: 401 with the realm without credentials, served with them.
        for path in ["/metrics", "/health", "/api/v1/graph", "/", "/no-such-page"] {
            let url = format!("{base}{path}");
            let (status, challenge, _) = get(&client, &url, None).await.unwrap();
            assert_eq!(status, 401, "{path} without credentials");
            assert_eq!(challenge.as_deref(), Some(REALM), "{path}");
            let (status, _, _) = get(&client, &url, alice).await.unwrap();
            let expected: &[u16] = match path {
                "/health" => &[200, 503],
                "/no-such-page" => &[404],
                _ => &[200],
            };
            assert!(
                expected.contains(&status),
                "{path} with credentials: {status}"
            );
        }

        // Wrong password, unknown user, garbage header: 401.
        let metrics = format!("{base}/metrics");
        for auth in [("alice", "wrong"), ("mallory", "s3cret"), ("alice", "")] {
            let (status, challenge, _) = get(&client, &metrics, Some(auth)).await.unwrap();
            assert_eq!(status, 401, "{auth:?}");
            assert_eq!(challenge.as_deref(), Some(REALM));
        }
        let resp = client
            .get(&metrics)
            .header("authorization", "Basic !!!not-base64")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);

        // A client that does not trust the CA: the handshake fails.
        let untrusting = https_client(None, None);
        assert!(get(&untrusting, &metrics, alice).await.is_err());

        // Plain HTTP to the TLS port, through an HTTP client: an error, promptly.
        let plain = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let started = Instant::now();
        let r = get(
            &plain,
            &format!("http://127.0.0.1:{}/metrics", agent.port),
            alice,
        )
        .await;
        assert!(r.is_err(), "plain HTTP got an answer: {r:?}");
        assert!(started.elapsed() < Duration::from_secs(4), "{r:?}");
    });

    // Plain HTTP by hand: the server answers with a TLS alert or nothing,
    // and closes; it neither hangs nor speaks HTTP.
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("plain HTTP to the TLS port did not end cleanly: {e}"),
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    if let Some(first) = got.first() {
        assert_eq!(*first, 0x15, "expected a TLS alert record: {got:?}");
    }
    assert!(agent.running(), "agent died: {}", agent.stderr());

    rt.block_on(async {
        // Still healthy after all that.
        let (status, _, _) = get(&client, &format!("{base}/health"), alice)
            .await
            .unwrap();
        assert!([200, 503].contains(&status));

        // A new password in the web config applies to the next request.
        std::fs::write(
            &web,
            format!("{tls}basic_auth_users:\n  alice: {}\n", htpasswd("n3w")),
        )
        .unwrap();
        let metrics = format!("{base}/metrics");
        let (status, _, _) = get(&client, &metrics, alice).await.unwrap();
        assert_eq!(status, 401, "old password still accepted after reload");
        let (status, _, _) = get(&client, &metrics, Some(("alice", "n3w")))
            .await
            .unwrap();
        assert_eq!(status, 200);

        // Client certificates, switched on by the same reload mechanism.
        std::fs::write(
            &web,
            format!(
                "{tls}  client_ca_file: ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n\
                 basic_auth_users:\n  alice: {}\n",
                htpasswd("n3w")
            ),
        )
        .unwrap();
        let anonymous = https_client(Some(&pki.ca_pem), None);
        let r = get(&anonymous, &metrics, Some(("alice", "n3w"))).await;
        assert!(r.is_err(), "no client certificate, yet: {r:?}");
        let with_cert = https_client(Some(&pki.ca_pem), Some(&pki.client_identity_pem));
        let (status, _, _) = get(&with_cert, &metrics, Some(("alice", "n3w")))
            .await
            .unwrap();
        assert_eq!(status, 200);

        // A broken edit is refused and the last good config kept.
        std::fs::write(&web, "tls_server_config:\n  cert_file: missing.pem\n").unwrap();
        let (status, _, _) = get(&with_cert, &metrics, Some(("alice", "n3w")))
            .await
            .unwrap();
        assert_eq!(status, 200);
    });
    assert!(agent.stderr().contains("web config reload failed"));
    let (closed, after) = stalled.join().unwrap();
    assert!(closed, "stalled TLS handshake not closed");
    assert!(
        after >= Duration::from_millis(1800) && after < Duration::from_secs(5),
        "stalled TLS handshake closed after {after:?}"
    );
    let (status, took) = agent.terminate();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(6), "{took:?}");
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status line.
fn read_response(r: &mut BufReader<TcpStream>) -> String {
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    status.trim_end().to_string()
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

#[test]
fn slow_clients_neither_block_scrapes_nor_stay() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let mut agent = SecureAgent::start(
        TempDir::new("httpsec-slow"),
        "  header_read_timeout_seconds: 1\n  idle_timeout_seconds: 3\n",
    );
    let port = agent.port;

    // 200 connections that send part of a request header, then nothing.
    let mut flood = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        flood.push((Instant::now(), s));
    }
    // And a few that trickle a header one byte every 100 ms: the header
    // timeout is for the whole header, not between bytes.
    let tricklers: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let header = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
                let mut bytes = header.iter().chain(std::iter::repeat(&b'a'));
                let mut buf = [0u8; 64];
                while started.elapsed() < Duration::from_secs(8) {
                    if s.write_all(&[*bytes.next().unwrap()]).is_err() {
                        return started.elapsed();
                    }
                    match s.read(&mut buf) {
                        Ok(_) => return started.elapsed(),
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return started.elapsed(),
                    }
                }
                started.elapsed()
            })
        })
        .collect();

    // A scraper meanwhile: answered at once.
    let started = Instant::now();
    let body = http_get(port, "/metrics", None).expect("scrape during the flood");
    let took = started.elapsed();
    assert!(body.contains("netagent_probe_up"), "{body}");
    assert!(
        took < Duration::from_secs(1),
        "scrape took {took:?} with 200 slow connections open"
    );
    eprintln!("scrape during the flood: {took:?}");

    // Every slow connection is closed by the server after the 1 s header
    // read timeout (not before, not much after).
    for (i, (opened, s)) in flood.iter_mut().enumerate() {
        assert!(closed_by_server(s), "slow connection {i} not closed");
        let after = opened.elapsed();
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(4),
            "slow connection {i} closed after {after:?}"
        );
    }
    for t in tricklers {
        let after = t.join().unwrap();
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(3),
            "trickling connection closed after {after:?}"
        );
    }
    drop(flood);

    // Keep-alive: the header clock starts at a request's first byte, so a
    // connection idle for longer than the header timeout (but less than the
    // idle timeout) is still served; after the idle timeout it is closed.
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    w.write_all(request).unwrap();
    let first = read_response(&mut r);
    assert!(first.starts_with("HTTP/1.1 200") || first.starts_with("HTTP/1.1 503"));
    std::thread::sleep(Duration::from_millis(1500));
    w.write_all(request).unwrap();
    let second = read_response(&mut r);
    assert!(second.starts_with("HTTP/1.1 200") || second.starts_with("HTTP/1.1 503"));
    let idle_from = Instant::now();
    assert!(closed_by_server(r.get_mut()), "idle connection not closed");
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(2700) && idle < Duration::from_secs(5),
        "idle connection closed after {idle:?}"
    );

    // Shutdown with slow clients connected is prompt and clean.
    let _slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    let (status, took) = agent.terminate();
    assert!(status.success(), "{status}: {}", agent.stderr());
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
}

#[test]
fn connections_beyond_the_limit_wait_for_a_slot() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let agent = SecureAgent::start(
        TempDir::new("httpsec-limit"),
        "  max_connections: 8\n  header_read_timeout_seconds: 1\n",
    );
    // Eight silent connections take every slot until the header timeout.
    let mut silent: Vec<TcpStream> = (0..8)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // The ninth waits in the listen backlog and is served once they go.
    let started = Instant::now();
    let body = http_get(agent.port, "/metrics", None).expect("scrape beyond the limit");
    let took = started.elapsed();
    assert!(body.contains("netagent_probe_up"));
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(4),
        "ninth connection served after {took:?}"
    );
    for s in &mut silent {
        assert!(closed_by_server(s));
    }
    assert!(
        agent.stderr().contains("connection limit reached"),
        "{}",
        agent.stderr()
    );
}

/// Runs the agent on a config expected to be refused: (exit status, stderr).
fn refused(dir: &TempDir, export_extra: &str) -> (ExitStatus, String) {
    let cfg = dir.0.join("config.yaml");
    std::fs::write(
        &cfg,
        format!("export:\n  listen_addr: \"127.0.0.1:0\"\n{export_extra}"),
    )
    .unwrap();
    let mut child = Command::new(AGENT)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("agent did not refuse {export_extra:?} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

#[test]
fn web_config_errors_exit_2_naming_file_and_key() {
    // The agent refuses these before loading anything: no root needed.
    let dir = TempDir::new("httpsec-errors");
    let web = dir.0.join("web.yml");
    let extra = format!("  web_config_file: \"{}\"\n", web.display());
    let web_path = web.display().to_string();
    let hash = htpasswd("x");

    let cases: Vec<(Option<String>, &[&str])> = vec![
        // No such file.
        (None, &["export.web_config_file (line 3)", "No such file"]),
        // Unknown keys, at the top and in tls_server_config.
        (
            Some("basic_auth_user:\n  alice: x\n".into()),
            &["unknown field `basic_auth_user`", "line 1"],
        ),
        (
            Some("tls_server_config:\n  cert_fille: server.pem\n".into()),
            &["unknown field `cert_fille`", "line 2"],
        ),
        // A file it names is missing.
        (
            Some("tls_server_config:\n  cert_file: nope.pem\n  key_file: nope.key\n".into()),
            &["tls_server_config.cert_file (line 2)", "nope.pem"],
        ),
        // Not a bcrypt hash.
        (
            Some("basic_auth_users:\n  alice: plaintext\n".into()),
            &["basic_auth_users.alice (line 2)", "bcrypt"],
        ),
        // A toolkit key netagent does not implement.
        (
            Some(format!(
                "basic_auth_users:\n  alice: {hash}\nrate_limit:\n  interval: 1s\n  burst: 5\n"
            )),
            &["rate_limit", "not by netagent"],
        ),
    ];
    for (content, wanted) in cases {
        let _ = std::fs::remove_file(&web);
        if let Some(c) = &content {
            std::fs::write(&web, c).unwrap();
        }
        let (status, err) = refused(&dir, &extra);
        assert_eq!(status.code(), Some(2), "{content:?}: {err}");
        assert!(err.contains(&web_path), "{content:?}: {err}");
        for w in wanted {
            assert!(err.contains(w), "{content:?}: missing {w:?} in {err}");
        }
    }

    for (extra, key) in [
        ("  max_connections: 0\n", "export.max_connections"),
        (
            "  header_read_timeout_seconds: 0\n",
            "export.header_read_timeout_seconds",
        ),
        (
            "  idle_timeout_seconds: -1\n",
            "export.idle_timeout_seconds",
        ),
    ] {
        let (status, err) = refused(&dir, extra);
        assert_eq!(status.code(), Some(2), "{extra}: {err}");
        assert!(err.contains(key), "{err}");
    }
}
