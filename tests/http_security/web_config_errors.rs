//! Web-config and export-limit errors at start: the agent exits with
//! status 2 and names the file, the key and the line.

use super::htpasswd;
use crate::common::{TempDir, AGENT};
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
