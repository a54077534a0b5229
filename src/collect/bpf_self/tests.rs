//! Unit tests of the parent module.
use super::*;
use crate::metrics::{Kind, Series};
use crate::test_support::TempDir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Barrier};

fn prog(id: u32, name: &str, memlock: u64) -> ProgramObject {
    ProgramObject {
        id,
        name: name.to_string(),
        type_name: "tracing".to_string(),
        memlock_bytes: memlock,
        run_time_ns: 1_500_000_000,
        run_count: 42,
    }
}

fn map(id: u32, name: &str, memlock: u64) -> MapObject {
    MapObject {
        id,
        name: name.to_string(),
        type_name: "percpu_hash".to_string(),
        key_size: 4,
        value_size: 8,
        max_entries: 1024,
        memlock_bytes: memlock,
    }
}

fn sample() -> BpfObjects {
    BpfObjects {
        programs: vec![
            prog(3, "netagent_tx", 4096),
            prog(1, "other_prog", 8192),
            prog(2, "netagent_rx", 4096),
        ],
        maps: vec![
            map(10, "netagent_flows", 100_000),
            map(11, "other_map", 5_000),
        ],
        errors: 0,
    }
}

fn empty_hist() -> Histogram {
    Histogram {
        bounds: &COLLECTION_BOUNDS,
        buckets: vec![0; COLLECTION_BOUNDS.len() + 1],
        sum: 0.0,
    }
}

fn family<'a>(fams: &'a [Family], name: &str) -> Option<&'a Family> {
    fams.iter().find(|f| f.name == name)
}

fn scalar(fams: &[Family], name: &str) -> f64 {
    match family(fams, name).map(|f| &f.series[0].value) {
        Some(Value::Gauge(v)) | Some(Value::Counter(v)) => *v,
        other => panic!("{name}: {other:?}"),
    }
}

fn series_by_id<'a>(fams: &'a [Family], name: &str, id: u32) -> Option<&'a Series> {
    family(fams, name)?.series.iter().find(|s| {
        s.labels
            .iter()
            .any(|(k, v)| *k == "id" && *v == id.to_string())
    })
}

fn value(s: &Series) -> f64 {
    match &s.value {
        Value::Gauge(v) | Value::Counter(v) => *v,
        Value::Histogram(_) => panic!("histogram"),
    }
}

fn duration_count(fams: &[Family]) -> u64 {
    match family(fams, "netagent_bpf_collection_duration_seconds").map(|f| &f.series[0].value) {
        Some(Value::Histogram(h)) => h.count(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn totals_cover_all_objects() {
    let cfg = BpfSelfConfig::default();
    let fams = build_families(&sample(), &cfg, &empty_hist(), 7);
    assert_eq!(scalar(&fams, "netagent_bpf_programs"), 3.0);
    assert_eq!(scalar(&fams, "netagent_bpf_maps"), 2.0);
    assert_eq!(scalar(&fams, "netagent_bpf_programs_memory_bytes"), 16384.0);
    assert_eq!(scalar(&fams, "netagent_bpf_maps_memory_bytes"), 105_000.0);
    assert_eq!(scalar(&fams, "netagent_bpf_collection_errors"), 7.0);
    // per_object is off by default.
    assert!(family(&fams, "netagent_bpf_program_memory_bytes").is_none());
    assert!(family(&fams, "netagent_bpf_map_memory_bytes").is_none());
    let kinds: Vec<_> = fams.iter().map(|f| (f.name, f.kind)).collect();
    assert!(kinds.contains(&("netagent_bpf_collection_errors", Kind::Counter)));
    assert!(kinds.contains(&("netagent_bpf_collection_duration_seconds", Kind::Histogram)));
}

#[test]
fn per_object_labels() {
    let cfg = BpfSelfConfig {
        per_object: true,
        ..Default::default()
    };
    let fams = build_families(&sample(), &cfg, &empty_hist(), 0);
    let s = series_by_id(&fams, "netagent_bpf_program_memory_bytes", 2).expect("prog 2");
    assert_eq!(
        s.labels,
        vec![
            ("id", "2".to_string()),
            ("name", "netagent_rx".to_string()),
            ("type", "tracing".to_string()),
        ]
    );
    assert_eq!(value(s), 4096.0);
    let rt = series_by_id(&fams, "netagent_bpf_program_run_seconds", 2).expect("run time");
    assert_eq!(rt.value, Value::Counter(1.5));
    let runs = series_by_id(&fams, "netagent_bpf_program_runs", 2).expect("runs");
    assert_eq!(runs.value, Value::Counter(42.0));
    let m = series_by_id(&fams, "netagent_bpf_map_memory_bytes", 10).expect("map 10");
    assert_eq!(
        m.labels,
        vec![
            ("id", "10".to_string()),
            ("name", "netagent_flows".to_string()),
            ("type", "percpu_hash".to_string()),
            ("key_size", "4".to_string()),
            ("value_size", "8".to_string()),
            ("max_entries", "1024".to_string()),
        ]
    );
    assert_eq!(value(m), 100_000.0);
    // Ascending ids, whatever the input order.
    let ids: Vec<_> = family(&fams, "netagent_bpf_program_memory_bytes")
        .map(|f| f.series.iter().map(|s| s.labels[0].1.clone()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["1", "2", "3"]);
}

#[test]
fn prefix_filter_applies_to_totals_and_series() {
    let cfg = BpfSelfConfig {
        per_object: true,
        name_prefix: "netagent_".to_string(),
        ..Default::default()
    };
    let fams = build_families(&sample(), &cfg, &empty_hist(), 0);
    assert_eq!(scalar(&fams, "netagent_bpf_programs"), 2.0);
    assert_eq!(scalar(&fams, "netagent_bpf_programs_memory_bytes"), 8192.0);
    assert_eq!(scalar(&fams, "netagent_bpf_maps"), 1.0);
    assert_eq!(scalar(&fams, "netagent_bpf_maps_memory_bytes"), 100_000.0);
    assert!(series_by_id(&fams, "netagent_bpf_program_memory_bytes", 1).is_none());
    assert!(series_by_id(&fams, "netagent_bpf_map_memory_bytes", 11).is_none());
    assert_eq!(
        family(&fams, "netagent_bpf_program_runs").map(|f| f.series.len()),
        Some(2)
    );
}

#[test]
fn cap_limits_series_not_totals() {
    let cfg = BpfSelfConfig {
        per_object: true,
        max_objects: 2,
        ..Default::default()
    };
    let mut objects = sample();
    objects.maps.push(map(12, "third_map", 1));
    let fams = build_families(&objects, &cfg, &empty_hist(), 0);
    assert_eq!(scalar(&fams, "netagent_bpf_programs"), 3.0);
    assert_eq!(scalar(&fams, "netagent_bpf_programs_memory_bytes"), 16384.0);
    assert_eq!(scalar(&fams, "netagent_bpf_maps"), 3.0);
    for name in [
        "netagent_bpf_program_memory_bytes",
        "netagent_bpf_program_run_seconds",
        "netagent_bpf_program_runs",
        "netagent_bpf_map_memory_bytes",
    ] {
        assert_eq!(
            family(&fams, name).map(|f| f.series.len()),
            Some(2),
            "{name}"
        );
    }
    // The lowest ids are kept.
    assert!(series_by_id(&fams, "netagent_bpf_program_memory_bytes", 3).is_none());
    assert!(series_by_id(&fams, "netagent_bpf_map_memory_bytes", 12).is_none());
    let none = BpfSelfConfig {
        max_objects: 0,
        ..cfg
    };
    let fams = build_families(&objects, &none, &empty_hist(), 0);
    assert_eq!(
        family(&fams, "netagent_bpf_map_memory_bytes").map(|f| f.series.len()),
        Some(0)
    );
}

#[test]
fn histogram_buckets() {
    let mut h = empty_hist();
    observe(&mut h, 0.00005);
    observe(&mut h, 0.003);
    observe(&mut h, 100.0);
    assert_eq!(h.buckets[0], 1);
    assert_eq!(h.buckets[5], 1); // (0.0025, 0.005]
    assert_eq!(h.buckets[COLLECTION_BOUNDS.len()], 1); // +Inf
    assert_eq!(h.count(), 3);
}

#[test]
fn config_yaml() {
    let cfg: BpfSelfConfig = serde_saphyr::from_str(
        "enabled: true\nper_object: true\nname_prefix: \"netagent_\"\n\
             max_objects: 50\ninterval_seconds: 2.5\nenable_stats: false\n",
    )
    .expect("parses");
    assert!(cfg.per_object);
    assert_eq!(cfg.name_prefix, "netagent_");
    assert_eq!(cfg.max_objects, 50);
    assert_eq!(cfg.interval_seconds, 2.5);
    let partial: BpfSelfConfig = serde_saphyr::from_str("per_object: true\n").expect("parses");
    assert!(partial.enabled);
    assert_eq!(partial.max_objects, 1000);
    assert_eq!(partial.interval_seconds, 10.0);
    let integer: BpfSelfConfig =
        serde_saphyr::from_str("interval_seconds: 30\n").expect("integer seconds");
    assert_eq!(integer.interval_seconds, 30.0);
    assert!(serde_saphyr::from_str::<BpfSelfConfig>("per_objects: true\n").is_err());
}

#[test]
fn bad_interval_falls_back() {
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        let cfg = BpfSelfConfig {
            interval_seconds: bad,
            ..Default::default()
        };
        let c = BpfSelfCollector::with_enumerator(cfg, Box::new(|_| BpfObjects::default()), None);
        assert_eq!(c.interval, Duration::from_secs(10));
    }
}

#[test]
fn disabled_exports_nothing() {
    let cfg = BpfSelfConfig {
        enabled: false,
        ..Default::default()
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let c = BpfSelfCollector::with_enumerator(
        cfg,
        Box::new(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            BpfObjects::default()
        }),
        None,
    );
    assert!(c.families().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn interval_caches_and_errors_accumulate() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let enumerate = move |_: &str| {
        counted.fetch_add(1, Ordering::SeqCst);
        BpfObjects {
            errors: 2,
            ..BpfObjects::default()
        }
    };
    let cached = BpfSelfCollector::with_enumerator(
        BpfSelfConfig::default(),
        Box::new(enumerate.clone()),
        None,
    );
    let a = cached.families();
    let b = cached.families();
    assert_eq!(a, b);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(duration_count(&b), 1);

    let every = BpfSelfCollector::with_enumerator(
        BpfSelfConfig {
            interval_seconds: 0.0,
            ..Default::default()
        },
        Box::new(enumerate),
        None,
    );
    every.families();
    let fams = every.families();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(duration_count(&fams), 2);
    assert_eq!(scalar(&fams, "netagent_bpf_collection_errors"), 4.0);
}

/// Many concurrent scrapes: one walk, everyone gets its result. With
/// interval 0 too, since waiters reuse the walk they waited for.
#[test]
fn single_flight() {
    const THREADS: usize = 16;
    for interval_seconds in [10.0, 0.0] {
        let calls = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new(AtomicUsize::new(0));
        let (counted, all_in) = (calls.clone(), arrived.clone());
        let collector = Arc::new(BpfSelfCollector::with_enumerator(
            BpfSelfConfig {
                interval_seconds,
                ..Default::default()
            },
            Box::new(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
                // Stay busy until every caller is queued behind us.
                let deadline = Instant::now() + Duration::from_secs(5);
                while all_in.load(Ordering::SeqCst) < THREADS && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(100));
                BpfObjects {
                    programs: vec![prog(1, "p", 1)],
                    ..Default::default()
                }
            }),
            None,
        ));
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (c, b, a) = (collector.clone(), barrier.clone(), arrived.clone());
                std::thread::spawn(move || {
                    b.wait();
                    a.fetch_add(1, Ordering::SeqCst);
                    c.families()
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("scrape thread"))
            .collect();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "interval {interval_seconds}"
        );
        for r in &results {
            assert_eq!(duration_count(r), 1);
            assert_eq!(scalar(r, "netagent_bpf_programs"), 1.0);
        }
    }
}

#[test]
fn collector_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<BpfSelfCollector>();
}

// ---- against the real kernel ----

fn tool(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bpftool_json(args: &[&str]) -> serde_json::Value {
    let text = run(Command::new("bpftool").arg("-j").args(args));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bpftool {args:?}: {e}: {text}"))
}

fn prog_ids() -> Vec<u64> {
    crate::test_support::bpftool_programs()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Self-contained (no libbpf headers needed): a socket filter that uses
/// its map, so the map lives as long as the pinned program.
const SELFTEST_C: &str = r#"
typedef unsigned int __u32;
typedef unsigned long long __u64;
#define SEC(n) __attribute__((section(n), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
struct {
    __uint(type, 1); /* BPF_MAP_TYPE_HASH */
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u64);
} na_selftest_map SEC(".maps");
SEC("socket") int na_selftest_prog(void *ctx) {
    __u32 k = 0;
    __u64 *v = bpf_map_lookup_elem(&na_selftest_map, &k);
    return v ? 1 : 0;
}
char LICENSE[] SEC("license") = "GPL";
"#;

/// The test's pinned program; unpins (which unloads the program and,
/// with it, its map) on drop, even when the test fails; then its scratch
/// directory goes.
struct Pinned {
    dir: TempDir,
    pin: PathBuf,
}

impl Pinned {
    fn unpin(&self) {
        let _ = std::fs::remove_file(&self.pin);
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.unpin();
    }
}

fn bpffs_mounted(at: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            f.len() > 2 && Path::new(f[1]) == at && f[2] == "bpf"
        })
    })
}

fn load_selftest() -> Pinned {
    let pid = std::process::id();
    let dir = TempDir::new("selftest");
    let bpffs = Path::new("/sys/fs/bpf");
    if !bpffs_mounted(bpffs) {
        run(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(bpffs));
    }
    let guard = Pinned {
        pin: bpffs.join(format!("na_selftest_{pid}")),
        dir,
    };
    let src = guard.dir.0.join("selftest.bpf.c");
    let obj = guard.dir.0.join("selftest.bpf.o");
    std::fs::write(&src, SELFTEST_C).expect("write C");
    run(Command::new("clang")
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
        ])
        .arg(&src)
        .arg("-o")
        .arg(&obj));
    guard.unpin(); // leftover of a crashed run with the same pid
    run(Command::new("bpftool")
        .args(["prog", "load"])
        .arg(&obj)
        .arg(&guard.pin)
        .args(["type", "socket"]));
    guard
}

#[test]
fn reports_real_program_and_map() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        crate::test_support::skip_or_fail("bpf_self real test needs root");
        return;
    }
    if !tool("clang") || !tool("bpftool") {
        crate::test_support::skip_or_fail("bpf_self real test needs clang and bpftool");
        return;
    }
    let pinned = load_selftest();
    let pin = pinned.pin.to_string_lossy().into_owned();
    let shown = bpftool_json(&["prog", "show", "pinned", &pin]);
    let prog_id = shown["id"].as_u64().expect("prog id") as u32;
    let prog_memlock = shown["bytes_memlock"].as_u64().expect("prog memlock");
    let map_id = shown["map_ids"][0].as_u64().expect("map id") as u32;
    let map_shown = bpftool_json(&["map", "show", "id", &map_id.to_string()]);
    let map_memlock = map_shown["bytes_memlock"].as_u64().expect("map memlock");

    let collector = BpfSelfCollector::new(BpfSelfConfig {
        per_object: true,
        name_prefix: "na_selftest".to_string(),
        interval_seconds: 0.0,
        enable_stats: true,
        ..Default::default()
    });
    // Run stats are on now (held by the collector's fd; the sysctl
    // file shows only what was written to it), so test runs count.
    assert!(collector._stats.is_some(), "enable_stats failed as root");
    let data = pinned.dir.0.join("packet");
    std::fs::write(&data, [0u8; 64]).expect("packet");
    run(Command::new("bpftool")
        .args(["prog", "run", "pinned", &pin, "data_in"])
        .arg(&data)
        .args(["repeat", "3"]));

    let fams = collector.families();
    let p = series_by_id(&fams, "netagent_bpf_program_memory_bytes", prog_id)
        .unwrap_or_else(|| panic!("program {prog_id} missing: {fams:#?}"));
    assert!(p.labels[1].1.starts_with("na_selftest"), "{:?}", p.labels);
    assert_eq!(p.labels[2], ("type", "socket_filter".to_string()));
    assert_eq!(value(p), prog_memlock as f64);
    let runs = series_by_id(&fams, "netagent_bpf_program_runs", prog_id).expect("runs");
    assert!(value(runs) >= 3.0, "runs {runs:?}");
    let rt = series_by_id(&fams, "netagent_bpf_program_run_seconds", prog_id).expect("time");
    assert!(value(rt) > 0.0, "run time {rt:?}");

    let m = series_by_id(&fams, "netagent_bpf_map_memory_bytes", map_id)
        .unwrap_or_else(|| panic!("map {map_id} missing: {fams:#?}"));
    assert_eq!(
        m.labels[1..],
        [
            ("name", "na_selftest_map".to_string()),
            ("type", "hash".to_string()),
            ("key_size", "4".to_string()),
            ("value_size", "8".to_string()),
            ("max_entries", "64".to_string()),
        ]
    );
    assert_eq!(value(m), map_memlock as f64);

    // Totals include at least our objects (a concurrent run of this
    // test may add its own).
    assert!(scalar(&fams, "netagent_bpf_programs") >= 1.0);
    assert!(scalar(&fams, "netagent_bpf_maps") >= 1.0);
    assert!(scalar(&fams, "netagent_bpf_programs_memory_bytes") >= prog_memlock as f64);
    assert!(scalar(&fams, "netagent_bpf_maps_memory_bytes") >= map_memlock as f64);
    assert_eq!(scalar(&fams, "netagent_bpf_collection_errors"), 0.0);
    assert_eq!(duration_count(&fams), 1);

    // Unpinning must unload the program (the kernel frees it once the
    // last reference goes; allow it a moment).
    pinned.unpin();
    let deadline = Instant::now() + Duration::from_secs(5);
    while prog_ids().contains(&u64::from(prog_id)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !prog_ids().contains(&u64::from(prog_id)),
        "program {prog_id} still loaded after unpinning"
    );
    let fams = collector.families();
    assert!(series_by_id(&fams, "netagent_bpf_program_memory_bytes", prog_id).is_none());
}
