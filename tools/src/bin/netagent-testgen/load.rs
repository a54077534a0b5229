//! `load`: paced TCP connection churn (SO_LINGER 0, so no TIME_WAIT) for
//! benchmarks; one JSON summary line.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::LoadArgs;
use crate::comm::spawn_named;
use crate::output::{print_json, LoadSummary};
use crate::sock::{errno_name, set_linger_zero};

/// `load` reports and exits this long after `--seconds` even if connects hang.
const HARD_STOP_MARGIN: Duration = Duration::from_secs(2);
/// How far a `load` thread may fall behind its schedule before it stops
/// trying to catch up.
const MAX_LAG: Duration = Duration::from_millis(20);

#[derive(Default)]
struct LoadCounters {
    /// Also the global round-robin index over targets.
    attempts: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl LoadCounters {
    fn fail(&self, name: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_default() += 1;
    }
}

pub fn load(args: LoadArgs) -> Result<ExitCode> {
    let duration = Duration::from_secs_f64(args.seconds);
    let targets: Arc<[SocketAddr]> = args
        .tcp
        .iter()
        .flat_map(|t| {
            (0..args.spread).map(move |k| match t {
                SocketAddr::V4(v4) => SocketAddr::from((
                    std::net::Ipv4Addr::from(u32::from(*v4.ip()).wrapping_add(k)),
                    v4.port(),
                )),
                other => *other,
            })
        })
        .collect();
    let counters = Arc::new(LoadCounters::default());
    // Each thread runs its own schedule at rate/threads, offset so that the
    // threads' attempts interleave evenly.
    let interval = Duration::from_secs_f64(args.threads as f64 / args.rate as f64);

    let start = Instant::now();
    let end = start + duration;
    let mut workers = Vec::new();
    for t in 0..args.threads {
        let targets = Arc::clone(&targets);
        let counters = Arc::clone(&counters);
        let first = start + interval.mul_f64(t as f64 / args.threads as f64);
        let worker = spawn_named(None, move || {
            load_worker(&targets, &counters, first, interval, end)
        })
        .context("spawning load thread")?;
        workers.push(worker);
    }

    // Hard stop: a connect stuck in SYN retransmission must not hold the run.
    let hard_stop = end + HARD_STOP_MARGIN;
    while !workers.iter().all(|w| w.is_finished()) && Instant::now() < hard_stop {
        thread::sleep(Duration::from_millis(10));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let all_done = workers.iter().all(|w| w.is_finished());
    if all_done {
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("load thread panicked"))?;
        }
    }

    let attempts = counters.attempts.load(Ordering::Relaxed);
    let ok = counters.ok.load(Ordering::Relaxed);
    let mut failed = counters.failed.load(Ordering::Relaxed);
    let mut errors = counters
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    // Connects still pending at the hard stop count as failures.
    let unfinished = attempts.saturating_sub(ok + failed);
    if unfinished > 0 {
        failed += unfinished;
        *errors.entry("unfinished".to_string()).or_default() += unfinished;
    }

    print_json(&LoadSummary {
        attempts,
        ok,
        failed,
        errors,
        seconds: elapsed,
        rate: if elapsed > 0.0 {
            attempts as f64 / elapsed
        } else {
            0.0
        },
    })?;
    // Threads still stuck in connect() are detached; returning from main ends
    // the process regardless.
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn load_worker(
    targets: &[SocketAddr],
    counters: &LoadCounters,
    first: Instant,
    interval: Duration,
    end: Instant,
) {
    let mut due = first;
    loop {
        let now = Instant::now();
        if due >= end || now >= end {
            return;
        }
        if due > now {
            thread::sleep(due - now);
        } else if now - due > MAX_LAG {
            // Behind schedule: the machine is too slow for the rate (then this
            // runs flat out) or a connect stalled (e.g. SYN retransmit); resume
            // from now rather than bursting to make up for lost time.
            due = now;
        }
        due += interval;

        let idx = counters.attempts.fetch_add(1, Ordering::Relaxed);
        let target = targets[(idx % targets.len() as u64) as usize];
        match TcpStream::connect(target) {
            Ok(stream) => match set_linger_zero(&stream) {
                Ok(()) => {
                    counters.ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => counters.fail(format!("SO_LINGER {}", errno_name(&e))),
            },
            Err(e) => counters.fail(errno_name(&e)),
        }
    }
}
