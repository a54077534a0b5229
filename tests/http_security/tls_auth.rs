//! TLS (and client certificates) and basic auth from an exporter-toolkit
//! web config protect every endpoint, and are reloaded when the file
//! changes: a real CA, real certificates and a real HTTPS client.

use super::{closed_by_server, htpasswd, SecureAgent};
use crate::common::{require_bpf, serial, TempDir};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

const REALM: &str = r#"Basic realm="netagent""#;

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
