//! Parsing and validation of whole config files.

use super::export::parse_listen_addr;
use super::*;

fn parse(y: &str) -> Result<Config, String> {
    Config::parse(y, "test.yaml")
        .map(|(c, _)| c)
        .map_err(|e| e.to_string())
}

#[test]
fn mna_example_parses() {
    let c = parse(
        r#"
interfaces: ["eth0"]
targets:
  - name: "nginx"
    match_comm: "nginx"
export:
  listen_addr: ":9102"
otel:
  endpoint: ""
  insecure: true
"#,
    )
    .unwrap();
    assert_eq!(c.targets.len(), 1);
    assert_eq!(c.targets[0].name.value, "nginx");
    assert_eq!(c.interfaces[0].value, "eth0");
    assert_eq!(c.listen_addr().unwrap(), "[::]:9102".parse().unwrap());
    assert!(!c.track_all());
}

#[test]
fn the_example_config_parses() {
    let (c, warnings) = Config::parse(
        include_str!("../../config.example.yaml"),
        "config.example.yaml",
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.targets.len(), 2);
    assert_eq!(c.tcp.idle_after(), Some(std::time::Duration::from_secs(60)));
}

#[test]
fn empty_file_is_the_default() {
    let c = parse("# nothing\n").unwrap();
    assert!(c.track_all());
    assert_eq!(c.export.listen_addr.value, ":9102");
    assert!(c.otel.insecure);
    assert_eq!(c.limits.max_series, 16384);
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let err = parse("targets: []\nexport:\n  listen_adr: \":9102\"\n").unwrap_err();
    assert!(err.contains("listen_adr"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn unknown_target_key_is_named_with_its_line() {
    let err = parse("targets:\n  - name: a\n    match: a\n").unwrap_err();
    assert!(err.contains("match"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn duplicate_comm_is_rejected_with_both_lines() {
    let err =
        parse("targets:\n  - name: a\n    match_comm: web\n  - name: b\n    match_comm: web\n")
            .unwrap_err();
    assert!(err.contains("targets[1].match_comm (line 5)"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn long_comm_warns_and_truncates() {
    let (c, warnings) = Config::parse(
        "targets:\n  - name: x\n    match_comm: a-very-long-process-name\n",
        "t.yaml",
    )
    .unwrap();
    assert_eq!(
        kernel_comm(&c.targets[0].match_comm.value),
        "a-very-long-pro"
    );
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].0.contains("line 3"), "{:?}", warnings);
}

#[test]
fn bad_listen_addr_names_key_and_line() {
    let err = parse("export:\n  listen_addr: \"nonsense\"\n").unwrap_err();
    assert!(err.contains("export.listen_addr (line 2)"), "{err}");
    let err = parse("export:\n  listen_addr: \":99999\"\n").unwrap_err();
    assert!(err.contains("port"), "{err}");
}

#[test]
fn listen_addr_forms() {
    assert_eq!(
        parse_listen_addr("127.0.0.1:9102").unwrap(),
        "127.0.0.1:9102".parse().unwrap()
    );
    assert_eq!(
        parse_listen_addr("[::1]:0").unwrap(),
        "[::1]:0".parse().unwrap()
    );
    assert_eq!(
        parse_listen_addr("localhost:1").unwrap(),
        "127.0.0.1:1".parse().unwrap()
    );
}

#[test]
fn cloud_defaults_and_keys() {
    let c = parse("# nothing\n").unwrap();
    assert!(c.cloud.enabled);
    assert_eq!(c.cloud.base_url.value, "http://169.254.169.254");
    assert_eq!(c.cloud.timeout(), std::time::Duration::from_secs(1));
    assert_eq!(c.cloud.refresh_interval().as_secs(), 600);
    let c = parse(
            "cloud:\n  enabled: false\n  base_url: \"http://127.0.0.1:8080/\"\n  timeout_seconds: 0.5\n  refresh_interval_seconds: 60\n",
        )
        .unwrap();
    assert!(!c.cloud.enabled);
    assert_eq!(c.cloud.timeout().as_millis(), 500);
    assert_eq!(c.cloud.refresh_interval().as_secs(), 60);
}

#[test]
fn bad_cloud_keys_are_named_with_their_line() {
    let err = parse("targets: []\ncloud:\n  base_url: \"169.254.169.254\"\n").unwrap_err();
    assert!(err.contains("cloud.base_url (line 3)"), "{err}");
    let err = parse("cloud:\n  enabled: true\n  timeout_seconds: 0\n").unwrap_err();
    assert!(err.contains("cloud.timeout_seconds (line 3)"), "{err}");
    let err = parse("cloud:\n  refresh_interval_seconds: 0.5\n").unwrap_err();
    assert!(
        err.contains("cloud.refresh_interval_seconds (line 2)"),
        "{err}"
    );
    let err = parse("cloud:\n  enabled: true\n  timeout: 1\n").unwrap_err();
    assert!(err.contains("timeout") && err.contains("line 3"), "{err}");
}

#[test]
fn node_sections_parse_and_bad_values_name_key_and_line() {
    let c = parse(
            "delay_accounting:\n  enable_sysctl: true\n  interval_seconds: 0.5\noom_kills:\n  enabled: false\n",
        )
        .unwrap();
    assert!(c.delay_accounting.enabled && c.delay_accounting.enable_sysctl);
    assert_eq!(c.delay_accounting.interval_seconds.value, 0.5);
    assert!(!c.oom_kills.enabled);
    let d = parse("").unwrap();
    assert!(d.delay_accounting.enabled && !d.delay_accounting.enable_sysctl);
    assert!(d.oom_kills.enabled);
    let err = parse("delay_accounting:\n  interval_seconds: 0\n").unwrap_err();
    assert!(
        err.contains("delay_accounting.interval_seconds (line 2)"),
        "{err}"
    );
    let err = parse("delay_accounting:\n\n  max_processes: 0\n").unwrap_err();
    assert!(
        err.contains("delay_accounting.max_processes (line 3)"),
        "{err}"
    );
    let err = parse("oom_kills:\n  enable: true\n").unwrap_err();
    assert!(err.contains("enable") && err.contains("line 2"), "{err}");
    let err = parse("delay_accounting:\n  intervall: 1\n").unwrap_err();
    assert!(err.contains("intervall") && err.contains("line 2"), "{err}");
}

#[test]
fn nat_section_defaults_and_errors_name_key_and_line() {
    let d = parse("").unwrap();
    assert!(d.nat.enabled);
    assert_eq!(d.nat.max_pending.value, 16384);
    let c = parse("nat:\n  enabled: false\n  max_pending: 100\n").unwrap();
    assert!(!c.nat.enabled);
    assert_eq!(c.nat.max_pending.value, 100);
    let err = parse("nat:\n\n  max_pending: 0\n").unwrap_err();
    assert!(err.contains("nat.max_pending (line 3)"), "{err}");
    let err = parse("nat:\n  max_pendng: 5\n").unwrap_err();
    assert!(
        err.contains("max_pendng") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn drops_section_defaults_and_errors_name_key_and_line() {
    let d = parse("").unwrap();
    assert!(d.drops.enabled);
    assert_eq!(d.drops.max_series.value, 4096);
    let c = parse("drops:\n  enabled: false\n  max_series: 10\n").unwrap();
    assert!(!c.drops.enabled);
    assert_eq!(c.drops.max_series.value, 10);
    let err = parse("drops:\n  enabled: true\n\n  max_series: 0\n").unwrap_err();
    assert!(err.contains("drops.max_series (line 4)"), "{err}");
    let err = parse("drops:\n  max_series: 300000\n").unwrap_err();
    assert!(err.contains("drops.max_series (line 2)"), "{err}");
    let err = parse("drops:\n  enable: true\n").unwrap_err();
    assert!(err.contains("enable") && err.contains("line 2"), "{err}");
    let err = parse("drops:\n  enabled: sometimes\n").unwrap_err();
    assert!(err.contains("line 2"), "{err}");
    assert_eq!(d.drops.ignored(), ["not_specified", "queue_purge"]);
    let c = parse("drops:\n  ignore_reasons: []\n").unwrap();
    assert!(c.drops.ignored().is_empty());
    let c = parse("drops:\n  ignore_reasons: [no_socket, tcp_old_data]\n").unwrap();
    assert_eq!(c.drops.ignored(), ["no_socket", "tcp_old_data"]);
    let err = parse("drops:\n  ignore_reasons:\n    - no_socket\n    - NO_SOCKET\n").unwrap_err();
    assert!(err.contains("drops.ignore_reasons[1] (line 4)"), "{err}");
    let err = parse("drops:\n  ignore_reasons: [unknown]\n").unwrap_err();
    assert!(err.contains("drops.ignore_reasons[0] (line 2)"), "{err}");
    let nine = (0..9)
        .map(|i| format!("r{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let err = parse(&format!("drops:\n  ignore_reasons: [{nine}]\n")).unwrap_err();
    assert!(err.contains("drops.ignore_reasons[8] (line 2)"), "{err}");
}

#[test]
fn wrong_type_is_reported() {
    let err = parse("targets: 5\n").unwrap_err();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn logs_section_defaults_and_errors_name_key_and_line() {
    let c = parse("logs:\n  enabled: true\n").unwrap();
    assert!(c.logs.enabled && c.logs.journald);
    assert_eq!(c.logs.max_patterns_per_source.value, 100);
    assert!(!parse("# nothing\n").unwrap().logs.enabled);
    let err = parse("logs:\n  enabled: true\n  max_patern: 3\n").unwrap_err();
    assert!(
        err.contains("max_patern") && err.contains("line 3"),
        "{err}"
    );
    let err = parse("logs:\n  paths:\n    - /var/log/*.log\n    - relative/*.log\n").unwrap_err();
    assert!(err.contains("logs.paths[1] (line 4)"), "{err}");
    let err = parse("logs:\n  paths: [\"/var/log/[x\"]\n").unwrap_err();
    assert!(err.contains("logs.paths[0] (line 2)"), "{err}");
    let err = parse("logs:\n\n  max_patterns_per_source: 0\n").unwrap_err();
    assert!(
        err.contains("logs.max_patterns_per_source (line 3)"),
        "{err}"
    );
    let err = parse("logs:\n  similarity: 1.5\n").unwrap_err();
    assert!(err.contains("logs.similarity (line 2)"), "{err}");
    let err = parse("logs:\n  journald_directory: journal\n").unwrap_err();
    assert!(err.contains("logs.journald_directory (line 2)"), "{err}");
}
