//! Log files with known templates: every line is made by one event (a
//! logging statement: its format string and level) from values drawn with
//! a fixed seed, so the same lines come out on every run. The values have
//! the shapes real ones have — numbers, ids, addresses, paths, durations,
//! and words without digits (user names, hosts, job names, error codes,
//! table names) that no mask catches and the clustering must learn.
//!
//! - `json`: structured logging (zap/slog style), one object per line;
//!   the agent clusters its `msg` and takes `level` from the object.
//! - `logfmt`: `key=value` lines with a quoted `msg`.
//! - `java`: Log4j lines and the stack traces under the errors: frames
//!   (`\tat …`), `Caused by: …`, `\t... N more`, each line a message.
//! - `nginx-access`: the `combined` log format.
//! - `nginx-error`: nginx's error log: core messages and request errors
//!   with their `client: …, server: …` context.
//! - `auth`: syslog lines of sshd, sudo and cron's PAM sessions as in
//!   /var/log/auth.log.
//!
//! Event frequencies are skewed, as in real logs: a few events make most
//! lines. Near-duplicate events that differ in one word are there too
//! (`payment <id> settled` / `payment <id> refunded`).
//!
//! JSON and logfmt are made here, `java` in java.rs, the nginx and auth
//! logs in servers.rs; the random values and shared word lists are here.

/// Deterministic pseudo-random numbers (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }

    pub fn ip(&mut self) -> String {
        format!(
            "10.{}.{}.{}",
            self.below(4),
            self.below(256),
            1 + self.below(254)
        )
    }

    pub fn public_ip(&mut self) -> String {
        format!(
            "{}.{}.{}.{}",
            23 + self.below(180),
            self.below(256),
            self.below(256),
            1 + self.below(254)
        )
    }

    pub fn port(&mut self) -> u64 {
        1024 + self.below(64_000)
    }

    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    pub fn hex(&mut self, digits: usize) -> String {
        let s = format!("{:016x}{:016x}", self.next(), self.next());
        s[..digits].to_string()
    }

    pub fn base64(&mut self, chars: usize) -> String {
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..chars)
            .map(|_| B64[self.below(64) as usize] as char)
            .collect()
    }

    pub fn ms(&mut self) -> String {
        format!("{}ms", 1 + self.below(2000))
    }

    pub fn secs(&mut self) -> String {
        format!("{}.{}s", self.below(60), self.below(1000))
    }
}

/// One event: its name, its weight among the file's events, and how a
/// line of it is made (from the line number and random values).
pub type Event = (&'static str, u64, fn(&mut Rng, u64) -> String);

pub const USERS: [&str; 16] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar", "peggy", "trent", "victor", "walter",
];
pub const HOSTS: [&str; 6] = [
    "db-primary",
    "db-replica",
    "cache-main",
    "cache-sessions",
    "queue",
    "search-backend",
];
pub const TABLES: [&str; 5] = ["users", "orders", "payments", "sessions", "invoices"];
pub const JOBS: [&str; 5] = [
    "sync-users",
    "rotate-keys",
    "send-digest",
    "compact-events",
    "expire-carts",
];
pub const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];
pub const CARD_ERRORS: [&str; 4] = [
    "card_declined",
    "insufficient_funds",
    "expired_card",
    "processing_error",
];
pub const ERRNOS: [&str; 3] = ["ECONNRESET", "ETIMEDOUT", "EPIPE"];
pub const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
pub const PATHS: [&str; 6] = [
    "/api/v1/orders",
    "/api/v1/users/me",
    "/healthz",
    "/static/app.css",
    "/login",
    "/api/v1/cart",
];

/// Seconds since 2026-12-06 00:00:00 UTC for line `i` (a few lines a second).
pub fn clock(i: u64) -> (u64, u64, u64, u64) {
    let s = 50_000 + i / 3;
    (s / 3600 % 24, s / 60 % 60, s % 60, (i * 7919) % 1000)
}

pub fn iso(i: u64) -> String {
    let (h, m, s, ms) = clock(i);
    format!("2026-12-06T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// `lines` lines from `events`, picked by weight.
pub fn generate(seed: u64, lines: u64, events: &[Event]) -> Vec<(String, String)> {
    let mut r = Rng::new(seed);
    let total: u64 = events.iter().map(|e| e.1).sum();
    (0..lines)
        .map(|i| {
            let mut x = r.below(total);
            let (name, _, make) = events
                .iter()
                .find(|e| {
                    if x < e.1 {
                        true
                    } else {
                        x -= e.1;
                        false
                    }
                })
                .expect("weights add up");
            (name.to_string(), make(&mut r, i))
        })
        .collect()
}

fn json_line(i: u64, level: &str, msg: &str, fields: &str) -> String {
    format!(
        r#"{{"time":"{}","level":"{level}","logger":"shop","msg":"{msg}"{fields}}}"#,
        iso(i)
    )
}

pub fn json() -> Vec<(String, String)> {
    const EVENTS: &[Event] = &[
        ("request-completed", 300, |r, i| {
            let f = format!(
                r#","method":"{}","path":"{}","status":200,"duration_ms":{}"#,
                r.pick(&METHODS),
                r.pick(&PATHS),
                r.below(900)
            );
            json_line(i, "info", "request completed", &f)
        }),
        ("user-logged-in", 120, |r, i| {
            let m = format!("user {} logged in from {}", r.pick(&USERS), r.public_ip());
            json_line(i, "info", &m, "")
        }),
        ("user-logged-out", 60, |r, i| {
            let m = format!("user {} logged out", r.pick(&USERS));
            json_line(i, "info", &m, "")
        }),
        ("order-created", 90, |r, i| {
            let m = format!(
                "order {} created for customer {} with {} items",
                r.uuid(),
                r.pick(&USERS),
                1 + r.below(9)
            );
            json_line(i, "info", &m, "")
        }),
        ("cache-hit", 150, |r, i| {
            let m = format!("cache hit for key {}:{}", r.pick(&TABLES), r.below(10_000));
            json_line(i, "debug", &m, "")
        }),
        ("cache-miss", 70, |r, i| {
            let m = format!("cache miss for key {}:{}", r.pick(&TABLES), r.below(10_000));
            json_line(i, "debug", &m, "")
        }),
        ("slow-query", 30, |r, i| {
            let m = format!("slow query on table {} took {}", r.pick(&TABLES), r.ms());
            json_line(i, "warn", &m, "")
        }),
        ("charge-failed", 20, |r, i| {
            let m = format!(
                "failed to charge card for order {}: {}",
                r.uuid(),
                r.pick(&CARD_ERRORS)
            );
            json_line(i, "error", &m, "")
        }),
        ("job-finished", 25, |r, i| {
            let m = format!("job {} finished in {}", r.pick(&JOBS), r.secs());
            json_line(i, "info", &m, "")
        }),
        ("job-started", 25, |r, i| {
            let m = format!("job {} started", r.pick(&JOBS));
            json_line(i, "info", &m, "")
        }),
        ("retrying", 15, |r, i| {
            let m = format!(
                "retrying request to {} (attempt {}/5)",
                r.pick(&HOSTS),
                1 + r.below(5)
            );
            json_line(i, "warn", &m, "")
        }),
        ("connection-lost", 8, |r, i| {
            let m = format!(
                "connection to {}:{} lost: {}",
                r.pick(&HOSTS),
                r.port(),
                r.pick(&ERRNOS)
            );
            json_line(i, "error", &m, "")
        }),
        ("rate-limited", 12, |r, i| {
            let m = format!("rate limit exceeded for tenant {}", r.pick(&TENANTS));
            json_line(i, "warn", &m, "")
        }),
        ("payment-settled", 20, |r, i| {
            let m = format!("payment {} settled", r.uuid());
            json_line(i, "info", &m, "")
        }),
        ("payment-refunded", 6, |r, i| {
            let m = format!("payment {} refunded", r.uuid());
            json_line(i, "info", &m, "")
        }),
        ("lock-acquired", 20, |r, i| {
            let m = format!("acquired lock {} after {}", r.pick(&JOBS), r.ms());
            json_line(i, "debug", &m, "")
        }),
        ("config-reloaded", 3, |_, i| {
            json_line(i, "info", "config reloaded from /etc/shop/config.yaml", "")
        }),
        ("listening", 2, |r, i| {
            let m = format!("listening on {}:{}", r.ip(), r.port());
            json_line(i, "info", &m, "")
        }),
        ("shutting-down", 2, |_, i| {
            json_line(i, "info", "shutting down gracefully", "")
        }),
    ];
    generate(1, 5000, EVENTS)
}

fn logfmt_line(i: u64, level: &str, rest: &str) -> String {
    format!("ts={} level={level} {rest}", iso(i))
}

pub fn logfmt() -> Vec<(String, String)> {
    const EVENTS: &[Event] = &[
        ("http-request", 300, |r, i| {
            let rest = format!(
                r#"msg="http request" method={} path={} status={} dur={} remote={}"#,
                r.pick(&METHODS),
                r.pick(&PATHS),
                r.pick(&["200", "201", "304", "404"]),
                r.ms(),
                r.public_ip()
            );
            logfmt_line(i, "info", &rest)
        }),
        ("query", 150, |r, i| {
            let rest = format!(
                r#"msg="query executed" table={} rows={} dur={}"#,
                r.pick(&TABLES),
                r.below(500),
                r.ms()
            );
            logfmt_line(i, "debug", &rest)
        }),
        ("session-created", 60, |r, i| {
            let rest = format!(
                r#"msg="session created for {}" session={}"#,
                r.pick(&USERS),
                r.hex(24)
            );
            logfmt_line(i, "info", &rest)
        }),
        ("session-expired", 40, |r, i| {
            let rest = format!(
                r#"msg="session expired" user={} idle={}"#,
                r.pick(&USERS),
                r.secs()
            );
            logfmt_line(i, "info", &rest)
        }),
        ("upstream-error", 25, |r, i| {
            let rest = format!(
                r#"msg="upstream request failed" upstream={} err="dial tcp {}:{}: connect: connection refused""#,
                r.pick(&HOSTS),
                r.ip(),
                r.port()
            );
            logfmt_line(i, "error", &rest)
        }),
        ("queue-depth", 40, |r, i| {
            let rest = format!(
                r#"msg="queue depth" queue={} depth={}"#,
                r.pick(&["emails", "reports", "thumbnails"]),
                r.below(1000)
            );
            logfmt_line(i, "debug", &rest)
        }),
        ("worker-started", 10, |r, i| {
            let rest = format!(
                r#"msg="worker started" worker={} concurrency={}"#,
                r.pick(&JOBS),
                1 + r.below(16)
            );
            logfmt_line(i, "info", &rest)
        }),
        ("cert-expiry", 5, |r, i| {
            let rest = format!(
                r#"msg="certificate expires soon" domain={} days={}"#,
                r.pick(&["shop.example.com", "api.example.com", "example.org"]),
                1 + r.below(30)
            );
            logfmt_line(i, "warn", &rest)
        }),
        ("login-failed", 20, |r, i| {
            let rest = format!(
                r#"msg="login failed" user={} reason={} remote={}"#,
                r.pick(&USERS),
                r.pick(&["bad_password", "locked", "unknown_user"]),
                r.public_ip()
            );
            logfmt_line(i, "warn", &rest)
        }),
        ("gc", 15, |r, i| {
            let rest = format!(
                r#"msg="gc finished" heap_mb={} pause={}"#,
                r.below(4096),
                r.ms()
            );
            logfmt_line(i, "debug", &rest)
        }),
        ("panic-recovered", 3, |r, i| {
            let rest = format!(
                r#"msg="recovered from panic in handler" path={} panic="runtime error: index out of range [{}] with length {}""#,
                r.pick(&PATHS),
                r.below(9),
                r.below(9)
            );
            logfmt_line(i, "error", &rest)
        }),
        ("ready", 2, |r, i| {
            let rest = format!(r#"msg="server ready" addr=:{}"#, r.port());
            logfmt_line(i, "info", &rest)
        }),
    ];
    generate(2, 5000, EVENTS)
}
