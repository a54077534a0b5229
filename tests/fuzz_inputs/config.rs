//! `Config::parse` on arbitrary text, on YAML assembled from the real keys
//! (read from the parser itself) and on mutations of the seed corpus in
//! tests/corpus/config/: never a panic, and every error is one line naming
//! a key or a line.

use super::corpus::{config, corpus};
use netagent::config::{Config, ConfigError};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Every key of the configuration file by section (`""` = top level),
/// read from the parser itself: an unknown key in a section is refused
/// with "expected one of <every key>". So keys added later are fuzzed
/// (and must appear in the corpus) without editing this file.
fn config_keys() -> &'static [(String, Vec<String>)] {
    static KEYS: OnceLock<Vec<(String, Vec<String>)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let top = expected_keys("zz_probe: 1\n").expect("top-level keys");
        let mut keys = vec![(String::new(), top.clone())];
        for section in top {
            let probe = format!("{section}:\n  zz_probe: 1\n");
            let list = format!("{section}:\n  - zz_probe: 1\n");
            if let Some(names) = expected_keys(&probe).or_else(|| expected_keys(&list)) {
                keys.push((section, names));
            }
        }
        for section in ["targets", "export", "otel", "statsd", "limits", "bpf_self"] {
            assert!(
                keys.iter().any(|(s, _)| s == section),
                "section {section} not discovered: {keys:?}"
            );
        }
        keys
    })
}

/// The key names listed by the unknown-field error for `probe`.
fn expected_keys(probe: &str) -> Option<Vec<String>> {
    let msg = Config::parse(probe, "probe.yaml").err()?.to_string();
    let rest = msg
        .split_once("unknown field")?
        .1
        .split_once("expected ")?
        .1;
    let rest = rest.strip_prefix("one of ").unwrap_or(rest);
    let list = rest.split(" |").next()?;
    let names: Vec<String> = list
        .split(", ")
        .map(|k| k.trim().trim_matches('`').to_string())
        .filter(|k| !k.is_empty())
        .collect();
    (!names.is_empty()).then_some(names)
}

/// Every key name, sections included.
fn all_keys() -> Vec<&'static str> {
    let mut keys = Vec::new();
    for (section, names) in config_keys() {
        if !section.is_empty() {
            keys.push(section.as_str());
        }
        keys.extend(names.iter().map(String::as_str));
    }
    keys
}

/// Parses `text` and checks what the agent relies on: no panic; an error
/// is one non-empty line that names a key or a line; an accepted config
/// satisfies the validation rules the rest of the agent assumes.
fn check_config(text: &str) -> Result<(), TestCaseError> {
    match Config::parse(text, "fuzz.yaml") {
        Ok((cfg, warnings)) => {
            prop_assert!(cfg.listen_addr().is_ok());
            prop_assert!(cfg.limits.span_ring_bytes.is_power_of_two());
            prop_assert!(cfg.limits.span_ring_bytes >= 4096);
            prop_assert!(cfg.limits.max_series >= 1);
            prop_assert!(cfg.limits.max_series_per_metric >= 1);
            prop_assert!(cfg.limits.max_listeners >= 1);
            let iv = cfg.interface_stats.interval_seconds;
            prop_assert!((0.1..=3600.0).contains(&iv), "interval {}", iv);
            prop_assert!(cfg.netns_inode().is_ok());
            if cfg.statsd.enabled {
                prop_assert!(cfg.statsd.interval().is_ok());
            }
            for t in &cfg.targets {
                prop_assert!(!t.name.value.is_empty());
                let comm = netagent::config::kernel_comm(&t.match_comm.value);
                prop_assert!(!comm.is_empty() && comm.len() < 16);
            }
            for w in warnings {
                prop_assert!(w.0.contains("targets["), "warning {:?}", w.0);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!msg.trim().is_empty());
            prop_assert!(!msg.contains('\n'), "multi-line error: {:?}", msg);
            match &e {
                ConfigError::Invalid { error, .. } => {
                    let key = &error.key;
                    prop_assert!(!key.is_empty());
                    prop_assert!(msg.contains(key.as_str()), "{:?}", msg);
                }
                ConfigError::Parse { message, .. } => {
                    prop_assert!(
                        names_line_or_key(message),
                        "parse error names neither a line nor a key: {:?}",
                        msg
                    );
                }
                ConfigError::Read { .. } => prop_assert!(false, "parse() read a file: {}", msg),
            }
        }
    }
    Ok(())
}

fn names_line_or_key(message: &str) -> bool {
    let names_line = message
        .match_indices("line ")
        .any(|(i, m)| message[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()));
    names_line || all_keys().iter().any(|k| message.contains(k))
}

/// One edit of a seed file (positions scale to the current length).
#[derive(Debug, Clone)]
enum Mutation {
    Delete(Index, u8),
    Insert(Index, String),
    Replace(Index, u8, String),
    FlipBit(Index, u8),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    Truncate(Index),
}

/// Fragments that mean something to YAML or to our validation.
fn yaml_token() -> impl Strategy<Value = String> {
    let fixed: Vec<&'static str> = vec![
        ":",
        ": ",
        "- ",
        "\n",
        "\n  ",
        "  ",
        "\t",
        "{",
        "}",
        "[",
        "]",
        ",",
        "\"",
        "'",
        "&a ",
        "*a",
        "<<: *a",
        "!!str ",
        "!!int ",
        "!!binary ",
        "!custom ",
        "#",
        "|",
        ">-",
        "~",
        "null",
        "?",
        "---\n",
        "...\n",
        "%YAML 1.2\n",
        "-1",
        "0",
        "4096",
        "4097",
        "65536",
        "1e309",
        "-0.0",
        ".nan",
        ".inf",
        "-.inf",
        "0x10",
        "0o17",
        "18446744073709551616",
        "true",
        "False",
        "yes",
        "\\",
        "\\u0000",
        "\"\\x00\"",
        "\u{feff}",
        "\r",
        "\r\n",
        "é",
        "漢",
        "🦀",
    ];
    let keys: Vec<&'static str> = all_keys();
    assert!(keys.len() > 30, "keys: {keys:?}");
    prop_oneof![
        4 => proptest::sample::select(fixed).prop_map(str::to_string),
        3 => proptest::sample::select(keys).prop_map(|k| format!("{k}: ")),
        1 => any::<String>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<(Index, u8)>().prop_map(|(i, n)| Mutation::Delete(i, n % 16 + 1)),
        (any::<Index>(), yaml_token()).prop_map(|(i, t)| Mutation::Insert(i, t)),
        (any::<Index>(), any::<u8>(), yaml_token()).prop_map(|(i, n, t)| Mutation::Replace(
            i,
            n % 8 + 1,
            t
        )),
        any::<(Index, u8)>().prop_map(|(i, b)| Mutation::FlipBit(i, b % 8)),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        any::<(Index, Index)>().prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

/// Applies the mutations to the bytes of a seed; the result is read as
/// UTF-8 with invalid sequences replaced (what a file read lossily gives;
/// `Config::load` itself refuses invalid UTF-8 before parsing).
fn mutate(seed: &[u8], mutations: &[Mutation]) -> String {
    let mut b = seed.to_vec();
    for m in mutations {
        let len = b.len();
        if len == 0 && !matches!(m, Mutation::Insert(..)) {
            continue;
        }
        match m {
            Mutation::Delete(i, n) => {
                let at = i.index(len);
                let end = (at + *n as usize).min(len);
                b.drain(at..end);
            }
            Mutation::Insert(i, t) => {
                let at = i.index(len + 1);
                b.splice(at..at, t.bytes());
            }
            Mutation::Replace(i, n, t) => {
                let at = i.index(len);
                let end = (at + *n as usize).min(len);
                b.splice(at..end, t.bytes());
            }
            Mutation::FlipBit(i, bit) => b[i.index(len)] ^= 1 << bit,
            Mutation::DuplicateLine(i) => {
                let mut lines: Vec<Vec<u8>> =
                    b.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
                let at = i.index(lines.len());
                let line = lines[at].clone();
                lines.insert(at, line);
                b = lines.join(&b'\n');
            }
            Mutation::SwapLines(x, y) => {
                let mut lines: Vec<Vec<u8>> =
                    b.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
                let n = lines.len();
                lines.swap(x.index(n), y.index(n));
                b = lines.join(&b'\n');
            }
            Mutation::Truncate(i) => b.truncate(i.index(len)),
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn config_seeds() -> &'static [(String, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| corpus("config", "yaml"))
}

/// A scalar as YAML might hold it for any key: numbers at and beyond the
/// limits, booleans, strings (quoted or not), and small collections.
fn yaml_value() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<u32>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        (0u32..32).prop_map(|p| (1u64 << p).to_string()),
        proptest::sample::select(vec![
            "true",
            "false",
            "null",
            "~",
            "\"\"",
            "''",
            ".nan",
            ".inf",
            "-.inf",
            "self",
            "grpc",
            "http",
            "http/protobuf",
            "delta",
            "cumulative",
            "\":9102\"",
            "\"[::1]:0\"",
            "\"localhost:65536\"",
            "unix://",
            "\"udp://127.0.0.1:8125\"",
            "\"eth[\"",
            "/proc/self/ns/net",
            "/nonexistent",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z0-9_.:/*?\\[\\] -]{0,20}",
        any::<String>().prop_map(|s| format!("{s:?}")),
    ];
    prop_oneof![
        6 => scalar.clone(),
        1 => proptest::collection::vec(scalar.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
        1 => (scalar.clone(), scalar).prop_map(|(k, v)| format!("{{ {k}: {v} }}")),
    ]
}

/// A document built from the real keys with random values, so that inputs
/// get past the unknown-key check into validation.
fn structured_config() -> impl Strategy<Value = String> {
    let entry = (any::<Index>(), any::<Index>(), yaml_value(), any::<bool>());
    proptest::collection::vec(entry, 0..8).prop_map(|entries| {
        let mut sections: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut top = String::new();
        for (s, key, value, keep_section) in entries {
            let keys = config_keys();
            let (section, names) = &keys[s.index(keys.len())];
            let (section, name) = (section.as_str(), &names[key.index(names.len())]);
            if section.is_empty() || !keep_section {
                top += &format!("{name}: {value}\n");
            } else {
                sections
                    .entry(section)
                    .or_default()
                    .push(format!("{name}: {value}"));
            }
        }
        for (section, lines) in sections {
            if section == "targets" {
                top += "targets:\n";
                for (i, l) in lines.iter().enumerate() {
                    let dash = if i % 2 == 0 { "  - " } else { "    " };
                    top += &format!("{dash}{l}\n");
                }
            } else {
                top += &format!("{section}:\n");
                for l in lines {
                    top += &format!("  {l}\n");
                }
            }
        }
        top
    })
}

#[test]
fn config_corpus_covers_every_key_and_seeds_behave() {
    let seeds = config_seeds();
    let mut valid = Vec::new();
    for (name, bytes) in seeds {
        let text = std::str::from_utf8(bytes).expect("seeds are UTF-8");
        let result = Config::parse(text, name);
        if name.starts_with("invalid-") {
            let err = result
                .err()
                .unwrap_or_else(|| panic!("{name} was accepted"));
            let msg = err.to_string();
            assert!(names_line_or_key(&msg), "{name}: {msg}");
            assert!(!msg.contains('\n'), "{name}: {msg}");
        } else {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
            valid.push(text);
        }
    }
    assert!(valid.len() >= 10, "at least ten valid seeds");
    for (section, names) in config_keys() {
        for key in names {
            assert!(
                valid
                    .iter()
                    .any(|t| t.contains(&format!("{key}:")) && t.contains(section.as_str())),
                "no valid seed in tests/corpus/config uses {section}.{key}"
            );
        }
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn config_parse_arbitrary_text(text in any::<String>()) {
        check_config(&text)?;
    }

    #[test]
    fn config_parse_yaml_alphabet(text in "[a-z_:\\-\\[\\]{}\"'#&*!|>,.0-9 \n\t]{0,200}") {
        check_config(&text)?;
    }

    #[test]
    fn config_parse_structured_documents(text in structured_config()) {
        check_config(&text)?;
    }

    #[test]
    fn config_parse_mutated_seeds(
        seed in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let seeds = config_seeds();
        let (_, bytes) = &seeds[seed.index(seeds.len())];
        check_config(&mutate(bytes, &mutations))?;
    }
}
