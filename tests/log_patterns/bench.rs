//! The CPU cost of log pattern extraction (ignored by default): the agent
//! with logs off, on but idle, and under a realistic line mix, in
//! interleaved rounds; the table goes to target/bench/logs.md.

use super::{append, config, messages, open_append, scrape_until, total_under};
use crate::common::{require_bpf, serial, Agent, TempDir};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Deterministic pseudo-random numbers (xorshift64) for the benchmark's lines.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One line of a realistic mix: ten templates, numbers, ids, addresses,
/// quoted strings, user names (words the mask leaves to clustering),
/// logfmt, JSON and syslog lines, every level.
fn bench_line(r: &mut Rng, i: u64) -> String {
    const USERS: [&str; 8] = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    let ts = format!(
        "2026-11-22T03:{:02}:{:02}.{:06}Z",
        i / 60_000 % 60,
        i / 1000 % 60,
        i % 1_000_000
    );
    let user = USERS[r.next(8) as usize];
    let (a, b, c, d) = (r.next(256), r.next(256), r.next(1000), r.next(65536));
    match r.next(10) {
        0 => format!(
            "{ts} INFO http request method=GET path=/api/v1/items/{d} status=200 \
             duration={c}ms bytes={}",
            a * d
        ),
        1 => format!(
            "{ts} INFO user {user} logged in from 10.{a}.{b}.{}:{d}",
            c % 256
        ),
        2 => format!("{ts} WARN slow query on table orders took {c}ms rows={d}"),
        3 => format!(
            "{ts} ERROR upstream \"inventory-{}\" timed out after {c}ms (attempt {} of 3)",
            a % 9,
            b % 3 + 1
        ),
        4 => format!("level=info msg=\"cache refreshed in {c}ms\" entries={d} hit_ratio=0.{a}"),
        5 => format!(r#"{{"level":"debug","ts":{i},"msg":"tick {d} processed","queue":{a}}}"#),
        6 => {
            let (hi, lo) = (r.next(u64::MAX), r.next(u64::MAX));
            format!(
                "{ts} INFO worker-{} picked job {hi:016x}{lo:016x} from queue default",
                a % 16
            )
        }
        7 => format!("{ts} ERROR failed to connect to 10.0.{a}.{b}:5432: connection refused"),
        8 => format!(
            "Nov 22 03:04:05 node-1 sshd[{c}{d}]: Accepted publickey for {user} \
             from 192.168.{a}.{b} port {d} ssh2"
        ),
        _ => format!("{ts} DEBUG gc pause {}ms heap={c}MB", a % 50),
    }
}

/// user + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / tick
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    /// logs.enabled: false
    Off,
    /// logs on, files followed, nothing written
    Idle,
    /// logs on, `rate` lines/s written
    Load,
}

/// Runs the agent in one variant for `seconds`; returns (CPU cores used,
/// lines written).
fn bench_round(variant: Variant, seconds: f64, rate: f64, files: usize) -> (f64, u64) {
    let dir = TempDir::new("logs-bench");
    let d = &dir.0;
    let paths: Vec<PathBuf> = (0..files).map(|i| d.join(format!("app{i}.log"))).collect();
    for p in &paths {
        append(p, "");
    }
    let mut cfg = config(d, &[format!("{}/*.log", d.display())], "");
    cfg = cfg.replace("poll_interval_seconds: 0.05", "poll_interval_seconds: 0.25");
    cfg = cfg.replace(
        "rescan_interval_seconds: 0.2",
        "rescan_interval_seconds: 10",
    );
    if variant == Variant::Off {
        cfg = cfg.replace(
            "  enabled: true\n  journald",
            "  enabled: false\n  journald",
        );
    }
    let agent = Agent::start_with_yaml(&cfg);
    let pid = agent.child.id();
    std::thread::sleep(Duration::from_secs(1)); // start-up work settles
    let mut handles: Vec<std::fs::File> = paths.iter().map(|p| open_append(p)).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let mut written = 0u64;
    while t0.elapsed().as_secs_f64() < seconds {
        if variant == Variant::Load {
            let due = (t0.elapsed().as_secs_f64() * rate) as u64;
            let mut batches = vec![String::new(); files];
            while written < due {
                let b = &mut batches[(written % files as u64) as usize];
                b.push_str(&bench_line(&mut rng, written));
                b.push('\n');
                written += 1;
            }
            for (f, b) in handles.iter_mut().zip(&batches) {
                f.write_all(b.as_bytes()).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let cpu = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
    if variant == Variant::Load {
        // Exact under load, too.
        let s = scrape_until(&agent, Duration::from_secs(60), |s| {
            total_under(s, d) >= written as f64
        });
        assert_eq!(total_under(&s, d), written as f64, "lines counted");
        let patterns = messages(&s, |l| l["source"].starts_with(&d.display().to_string())).len();
        eprintln!(
            "  load round: {written} lines, {patterns} series of netagent_log_messages_total"
        );
    }
    (cpu, written)
}

#[test]
#[ignore = "benchmark: cargo test --release --test log_patterns bench -- --ignored --nocapture"]
fn bench_cpu_per_10k_lines_per_second() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let seconds: f64 = env_or("NETAGENT_LOG_BENCH_SECONDS", 10.0);
    let rate: f64 = env_or("NETAGENT_LOG_BENCH_RATE", 10_000.0);
    let rounds: usize = env_or("NETAGENT_LOG_BENCH_ROUNDS", 3);
    let files: usize = env_or("NETAGENT_LOG_BENCH_FILES", 4);
    let mut rows = Vec::new();
    for round in 1..=rounds {
        // Interleaved, so that machine noise hits every variant alike.
        let (off, _) = bench_round(Variant::Off, seconds, rate, files);
        let (idle, _) = bench_round(Variant::Idle, seconds, rate, files);
        let (load, lines) = bench_round(Variant::Load, seconds, rate, files);
        let actual = lines as f64 / seconds;
        let per_10k = (load - off) / (actual / 10_000.0);
        eprintln!("round {round}: off {off:.4} idle {idle:.4} load {load:.4} cores at {actual:.0} lines/s");
        rows.push((off, idle, load, actual, per_10k));
    }
    let median = |k: fn(&(f64, f64, f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(k).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let pct = |c: f64| format!("{:.2} %", c * 100.0);
    let mut out = format!(
        "Workload: {rate:.0} lines/s over {files} files (10 templates, every level), {seconds} s per run, {rounds} rounds interleaved (off, idle, load); CPU = agent user+system time / wall time (100 % = one core).\n\n\
         | round | logs off | logs on, idle | logs on, {rate:.0} lines/s | lines/s written | CPU per 10k lines/s (load − off) |\n|---|---|---|---|---|---|\n"
    );
    for (i, (off, idle, load, actual, per)) in rows.iter().enumerate() {
        out += &format!(
            "| {} | {} | {} | {} | {actual:.0} | {} |\n",
            i + 1,
            pct(*off),
            pct(*idle),
            pct(*load),
            pct(*per)
        );
    }
    out += &format!(
        "| median | {} | {} | {} | {:.0} | **{}** |\n",
        pct(median(|r| r.0)),
        pct(median(|r| r.1)),
        pct(median(|r| r.2)),
        median(|r| r.3),
        pct(median(|r| r.4))
    );
    println!("\n{out}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("logs.md"), &out).unwrap();
}
