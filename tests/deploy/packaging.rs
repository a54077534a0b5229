//! The systemd unit (`systemd-analyze verify` and its offline security
//! score) and the .deb package: built with `cargo deb`, installed with
//! dpkg, run, removed and purged.

use super::{is_root, read, repo, run, text};
use crate::common::{have, require, serial, TempDir, AGENT};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = read("deploy/systemd/netagent.service");
    let directive = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("unit has no {key}="))
            .to_string()
    };
    assert_eq!(
        directive("ExecStart"),
        "/usr/bin/netagent --config /etc/netagent/config.yaml"
    );
    for (k, v) in [
        ("Restart", "on-failure"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
    ] {
        assert_eq!(directive(k), v, "{k}");
    }
    if !have("systemd-analyze") {
        // Allowed to skip even under CI=true: the CI machine has no systemd.
        eprintln!("SKIP: systemd-analyze not installed; the unit was only checked as text");
        return;
    }
    // verify also checks that ExecStart exists: point it at the built binary.
    let dir = TempDir::new("unit");
    let path = dir.0.join("netagent.service");
    std::fs::write(
        &path,
        unit.replace("ExecStart=/usr/bin/netagent", &format!("ExecStart={AGENT}")),
    )
    .unwrap();
    let out = run(
        Command::new("systemd-analyze").arg("verify").arg(&path),
        Duration::from_secs(60),
    );
    let log = text(&out);
    assert!(out.status.success(), "systemd-analyze verify:\n{log}");
    // Unknown or malformed settings are only warned about ("…, ignoring").
    assert!(
        !log.contains("netagent.service"),
        "systemd-analyze verify warns:\n{log}"
    );

    // Exposure (0 = locked down … 10 = unprotected) at most 5.0.
    let out = run(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=50", "--no-pager"])
            .arg(&path),
        Duration::from_secs(60),
    );
    let log = text(&out);
    let score = log
        .lines()
        .find_map(|l| l.split("netagent.service: ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{log}"));
    assert!(
        out.status.success() && score <= 5.0,
        "exposure {score}:\n{log}"
    );
}

/// Purges the netagent package when dropped (also when the test fails).
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "netagent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn package_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "netagent"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

#[test]
fn the_deb_package_builds_installs_and_uninstalls() {
    let _g = serial();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let cargo_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !require(
        is_root() && have("dpkg"),
        "needs root and dpkg to install the package",
    ) || !require(
        cargo_deb,
        "cargo-deb not installed (scripts/setup-deploy.sh)",
    ) || !require(
        !package_installed()
            && !Path::new("/usr/bin/netagent").exists()
            && !Path::new("/etc/netagent").exists(),
        "netagent is already installed on this machine; not touching it",
    ) {
        return;
    }
    let block = read("deploy/debian/cargo-deb.toml");
    assert!(
        read("Cargo.toml").contains(block.trim()),
        "Cargo.toml lacks the [package.metadata.deb] block: append deploy/debian/cargo-deb.toml to it"
    );

    // Package the binary this test run built (target/debug/netagent, the
    // dev profile; `cargo deb` proper builds and packages the release one),
    // so the test needs no release build. cargo-deb 3.8 warns about dev.
    let out_dir = TempDir::new("deb");
    let out = run(
        Command::new(&cargo)
            .args([
                "deb",
                "--no-build",
                "--locked",
                "--profile",
                "dev",
                "--fast",
                "--output",
            ])
            .arg(&out_dir.0)
            .current_dir(repo()),
        Duration::from_secs(150),
    );
    assert!(out.status.success(), "cargo deb:\n{}", text(&out));
    let deb = std::fs::read_dir(&out_dir.0)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb");
    let contents = text(&run(
        Command::new("dpkg-deb").arg("-c").arg(&deb),
        Duration::from_secs(60),
    ));
    for f in [
        "./usr/bin/netagent",
        "./lib/systemd/system/netagent.service",
        "./etc/netagent/config.yaml",
    ] {
        assert!(contents.contains(f), "{f} not in the package:\n{contents}");
    }

    let _installed = Installed;
    let out = run(
        Command::new("dpkg").arg("-i").arg(&deb),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "dpkg -i:\n{}", text(&out));
    let version = run(
        Command::new("/usr/bin/netagent").arg("--version"),
        Duration::from_secs(30),
    );
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("netagent {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        std::fs::read_to_string("/etc/netagent/config.yaml").unwrap(),
        read("config.example.yaml")
    );
    assert_eq!(
        std::fs::read_to_string("/lib/systemd/system/netagent.service").unwrap(),
        read("deploy/systemd/netagent.service")
    );
    let conffiles = run(
        Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "netagent"]),
        Duration::from_secs(30),
    );
    assert!(
        String::from_utf8_lossy(&conffiles.stdout).contains("/etc/netagent/config.yaml"),
        "not a conffile: {}",
        text(&conffiles)
    );

    // Remove keeps the (conf)figuration, purge removes it.
    let out = run(
        Command::new("dpkg").args(["-r", "netagent"]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "dpkg -r:\n{}", text(&out));
    assert!(!Path::new("/usr/bin/netagent").exists());
    assert!(Path::new("/etc/netagent/config.yaml").exists());
    let out = run(
        Command::new("dpkg").args(["--purge", "netagent"]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "dpkg --purge:\n{}", text(&out));
    assert!(!Path::new("/etc/netagent").exists());
    assert!(!Path::new("/lib/systemd/system/netagent.service").exists());
    assert!(!package_installed());
    // cargo-deb's (empty) staging directory.
    let _ = std::fs::remove_dir(repo().join("target/netagent"));
}
