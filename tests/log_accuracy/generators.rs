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

    fn ip(&mut self) -> String {
        format!(
            "10.{}.{}.{}",
            self.below(4),
            self.below(256),
            1 + self.below(254)
        )
    }

    fn public_ip(&mut self) -> String {
        format!(
            "{}.{}.{}.{}",
            23 + self.below(180),
            self.below(256),
            self.below(256),
            1 + self.below(254)
        )
    }

    fn port(&mut self) -> u64 {
        1024 + self.below(64_000)
    }

    fn uuid(&mut self) -> String {
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

    fn hex(&mut self, digits: usize) -> String {
        let s = format!("{:016x}{:016x}", self.next(), self.next());
        s[..digits].to_string()
    }

    fn base64(&mut self, chars: usize) -> String {
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..chars)
            .map(|_| B64[self.below(64) as usize] as char)
            .collect()
    }

    fn ms(&mut self) -> String {
        format!("{}ms", 1 + self.below(2000))
    }

    fn secs(&mut self) -> String {
        format!("{}.{}s", self.below(60), self.below(1000))
    }
}

/// One event: its name, its weight among the file's events, and how a
/// line of it is made (from the line number and random values).
type Event = (&'static str, u64, fn(&mut Rng, u64) -> String);

const USERS: [&str; 16] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar", "peggy", "trent", "victor", "walter",
];
const HOSTS: [&str; 6] = [
    "db-primary",
    "db-replica",
    "cache-main",
    "cache-sessions",
    "queue",
    "search-backend",
];
const TABLES: [&str; 5] = ["users", "orders", "payments", "sessions", "invoices"];
const JOBS: [&str; 5] = [
    "sync-users",
    "rotate-keys",
    "send-digest",
    "compact-events",
    "expire-carts",
];
const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];
const CARD_ERRORS: [&str; 4] = [
    "card_declined",
    "insufficient_funds",
    "expired_card",
    "processing_error",
];
const ERRNOS: [&str; 3] = ["ECONNRESET", "ETIMEDOUT", "EPIPE"];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const PATHS: [&str; 6] = [
    "/api/v1/orders",
    "/api/v1/users/me",
    "/healthz",
    "/static/app.css",
    "/login",
    "/api/v1/cart",
];

/// Seconds since 2026-12-06 00:00:00 UTC for line `i` (a few lines a second).
fn clock(i: u64) -> (u64, u64, u64, u64) {
    let s = 50_000 + i / 3;
    (s / 3600 % 24, s / 60 % 60, s % 60, (i * 7919) % 1000)
}

fn iso(i: u64) -> String {
    let (h, m, s, ms) = clock(i);
    format!("2026-12-06T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// `lines` lines from `events`, picked by weight.
fn generate(seed: u64, lines: u64, events: &[Event]) -> Vec<(String, String)> {
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

fn log4j(i: u64, level: &str, thread: &str, logger: &str, msg: &str) -> String {
    let (h, m, s, ms) = clock(i);
    format!("2026-12-06 {h:02}:{m:02}:{s:02},{ms:03} {level:<5} [{thread}] {logger} - {msg}")
}

fn exec_thread(r: &mut Rng) -> String {
    format!("http-nio-8080-exec-{}", 1 + r.below(10))
}

/// The classes of the frames of a stack trace.
const FRAMES: [&str; 12] = [
    "com.acme.shop.inventory.InventoryService.reserve(InventoryService.java:{})",
    "com.acme.shop.orders.OrderService.place(OrderService.java:{})",
    "com.acme.shop.orders.OrderController.create(OrderController.java:{})",
    "org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:{})",
    "jakarta.servlet.http.HttpServlet.service(HttpServlet.java:{})",
    "org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:{})",
    "org.apache.tomcat.util.threads.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:{})",
    "java.base/java.lang.Thread.run(Thread.java:{})",
    "com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:{})",
    "com.acme.shop.payments.PaymentClient.charge(PaymentClient.java:{})",
    "org.springframework.jdbc.core.JdbcTemplate.execute(JdbcTemplate.java:{})",
    "java.base/java.net.Socket.connect(Socket.java:{})",
];

/// Lines of one logged exception: the error line, the exception, frames,
/// maybe a cause with its frames and `... N more`.
fn java_error(r: &mut Rng, i: u64, out: &mut Vec<(String, String)>) {
    let thread = exec_thread(r);
    let frames = |r: &mut Rng, out: &mut Vec<(String, String)>, n: u64| {
        for _ in 0..n {
            let f = r
                .pick(&FRAMES)
                .replace("{}", &(20 + r.below(400)).to_string());
            out.push(("frame".into(), format!("\tat {f}")));
        }
    };
    match r.below(3) {
        0 => {
            let order = 100_000 + r.below(900_000);
            out.push((
                "order-failed".into(),
                log4j(
                    i,
                    "ERROR",
                    &thread,
                    "OrderController",
                    &format!("Failed to place order {order}"),
                ),
            ));
            out.push((
                "ex-inventory".into(),
                format!(
                    "java.lang.IllegalStateException: Inventory for item SKU-{} is exhausted",
                    r.below(100_000)
                ),
            ));
            let n = 3 + r.below(5);
            frames(r, out, n);
        }
        1 => {
            out.push((
                "payment-failed".into(),
                log4j(
                    i,
                    "ERROR",
                    &thread,
                    "PaymentClient",
                    &format!("Payment call for customer {} failed", r.pick(&USERS)),
                ),
            ));
            out.push((
                "ex-payment".into(),
                format!(
                    "com.acme.shop.payments.PaymentException: Gateway returned {} for charge {}",
                    r.pick(&["502", "503", "504"]),
                    r.hex(12)
                ),
            ));
            let n = 2 + r.below(4);
            frames(r, out, n);
            out.push((
                "caused-by-timeout".into(),
                format!(
                    "Caused by: java.net.SocketTimeoutException: Connect timed out after {} ms",
                    1000 * (1 + r.below(30))
                ),
            ));
            let n = 1 + r.below(3);
            frames(r, out, n);
            out.push(("more".into(), format!("\t... {} more", 5 + r.below(40))));
        }
        _ => {
            out.push((
                "query-failed".into(),
                log4j(
                    i,
                    "ERROR",
                    &thread,
                    "OrderRepository",
                    &format!("Query on table {} failed", r.pick(&TABLES)),
                ),
            ));
            out.push((
                "ex-data-access".into(),
                format!(
                    "org.springframework.dao.DataAccessResourceFailureException: Unable to acquire JDBC Connection for statement {}",
                    r.hex(8)
                ),
            ));
            let n = 2 + r.below(4);
            frames(r, out, n);
            out.push((
                "caused-by-pool".into(),
                format!(
                    "Caused by: java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after {}ms.",
                    r.below(30_000)
                ),
            ));
            let n = 2 + r.below(3);
            frames(r, out, n);
            out.push(("more".into(), format!("\t... {} more", 5 + r.below(40))));
        }
    }
}

pub fn java() -> Vec<(String, String)> {
    let mut r = Rng::new(3);
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < 5000 {
        i += 1;
        let thread = exec_thread(&mut r);
        match r.below(100) {
            0..=34 => out.push((
                "order-received".into(),
                log4j(
                    i,
                    "INFO",
                    &thread,
                    "OrderController",
                    &format!(
                        "Received order {} from customer {}",
                        100_000 + r.below(900_000),
                        r.pick(&USERS)
                    ),
                ),
            )),
            35..=54 => out.push((
                "order-shipped".into(),
                log4j(
                    i,
                    "INFO",
                    &format!("scheduling-{}", 1 + r.below(4)),
                    "ShippingService",
                    &format!(
                        "Order {} shipped via {} in {} parcels",
                        100_000 + r.below(900_000),
                        r.pick(&["dhl", "ups", "fedex"]),
                        1 + r.below(4)
                    ),
                ),
            )),
            55..=69 => out.push((
                "cache-refreshed".into(),
                log4j(
                    i,
                    "DEBUG",
                    &format!("scheduling-{}", 1 + r.below(4)),
                    "CacheRefresher",
                    &format!(
                        "Refreshed {} entries of cache {} in {} ms",
                        r.below(5000),
                        r.pick(&TABLES),
                        r.below(900)
                    ),
                ),
            )),
            70..=79 => out.push((
                "retrying".into(),
                log4j(
                    i,
                    "WARN",
                    &format!("pool-{}-thread-{}", 1 + r.below(3), 1 + r.below(8)),
                    "PaymentClient",
                    &format!(
                        "Retrying payment {} (attempt {} of 3)",
                        r.uuid(),
                        1 + r.below(3)
                    ),
                ),
            )),
            80..=81 => out.push((
                "started".into(),
                log4j(
                    i,
                    "INFO",
                    "main",
                    "ShopApplication",
                    &format!(
                        "Started ShopApplication in {}.{} seconds (process running for {}.{})",
                        2 + r.below(20),
                        r.below(1000),
                        3 + r.below(20),
                        r.below(1000)
                    ),
                ),
            )),
            82..=83 => out.push((
                "pool-stats".into(),
                log4j(
                    i,
                    "DEBUG",
                    "HikariPool-1 housekeeper",
                    "HikariPool",
                    &format!(
                        "HikariPool-1 - Pool stats (total={}, active={}, idle={}, waiting={})",
                        r.below(20),
                        r.below(20),
                        r.below(20),
                        r.below(5)
                    ),
                ),
            )),
            _ => java_error(&mut r, i, &mut out),
        }
    }
    out
}

pub fn nginx_access() -> Vec<(String, String)> {
    const AGENTS: [&str; 4] = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "curl/7.88.1",
        "Prometheus/2.42.0",
    ];
    const EVENTS: &[Event] = &[("combined", 1, |r, i| {
        let (h, m, s, _) = clock(i);
        let user = if r.below(10) == 0 {
            r.pick(&USERS)
        } else {
            "-"
        };
        let referer = if r.below(3) == 0 {
            "https://shop.example.com/"
        } else {
            "-"
        };
        format!(
            r#"{} - {user} [06/Dec/2026:{h:02}:{m:02}:{s:02} +0000] "{} {}?page={} HTTP/1.1" {} {} "{referer}" "{}""#,
            r.public_ip(),
            r.pick(&METHODS),
            r.pick(&PATHS),
            r.below(20),
            r.pick(&["200", "200", "200", "301", "304", "404", "500"]),
            r.below(100_000),
            r.pick(&AGENTS)
        )
    })];
    generate(4, 5000, EVENTS)
}

fn nginx_error_line(r: &mut Rng, i: u64, level: &str, msg: &str) -> String {
    let (h, m, s, _) = clock(i);
    let pid = 1000 + r.below(8);
    format!("2026/12/06 {h:02}:{m:02}:{s:02} [{level}] {pid}#{pid}: {msg}")
}

fn nginx_context(r: &mut Rng, upstream: bool) -> String {
    let path = r.pick(&PATHS);
    let up = if upstream {
        format!(r#", upstream: "http://{}:8080{path}""#, r.ip())
    } else {
        String::new()
    };
    format!(
        r#"client: {}, server: shop.example.com, request: "{} {path} HTTP/1.1"{up}, host: "shop.example.com""#,
        r.public_ip(),
        r.pick(&METHODS)
    )
}

pub fn nginx_error() -> Vec<(String, String)> {
    const EVENTS: &[Event] = &[
        ("open-failed", 40, |r, i| {
            let ctx = nginx_context(r, false);
            let msg = format!(
                r#"*{} open() "/usr/share/nginx/html{}" failed (2: No such file or directory), {ctx}"#,
                r.below(100_000),
                r.pick(&["/favicon.ico", "/robots.txt", "/wp-login.php", "/.env"])
            );
            nginx_error_line(r, i, "error", &msg)
        }),
        ("connect-refused", 25, |r, i| {
            let ctx = nginx_context(r, true);
            let msg = format!(
                "*{} connect() failed (111: Connection refused) while connecting to upstream, {ctx}",
                r.below(100_000)
            );
            nginx_error_line(r, i, "error", &msg)
        }),
        ("upstream-timeout", 15, |r, i| {
            let ctx = nginx_context(r, true);
            let msg = format!(
                "*{} upstream timed out (110: Connection timed out) while reading response header from upstream, {ctx}",
                r.below(100_000)
            );
            nginx_error_line(r, i, "error", &msg)
        }),
        ("buffered", 15, |r, i| {
            let ctx = nginx_context(r, true);
            let msg = format!(
                "*{} an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/{}/{:02}/{} while reading upstream, {ctx}",
                r.below(100_000),
                r.below(10),
                r.below(100),
                r.below(10_000_000)
            );
            nginx_error_line(r, i, "warn", &msg)
        }),
        ("limiting", 20, |r, i| {
            let ctx = nginx_context(r, false);
            let msg = format!(
                r#"*{} limiting requests, excess: {}.{:03} by zone "api", {ctx}"#,
                r.below(100_000),
                r.below(20),
                r.below(1000)
            );
            nginx_error_line(r, i, "error", &msg)
        }),
        ("keepalive-closed", 30, |r, i| {
            let msg = format!(
                "*{} client {} closed keepalive connection",
                r.below(100_000),
                r.public_ip()
            );
            nginx_error_line(r, i, "info", &msg)
        }),
        ("ssl-handshake", 8, |r, i| {
            let msg = format!(
                "*{} SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share) while SSL handshaking, client: {}, server: 0.0.0.0:443",
                r.below(100_000),
                r.public_ip()
            );
            nginx_error_line(r, i, "crit", &msg)
        }),
        ("body-too-large", 5, |r, i| {
            let ctx = nginx_context(r, false);
            let msg = format!(
                "*{} client intended to send too large body: {} bytes, {ctx}",
                r.below(100_000),
                1_048_576 + r.below(10_000_000)
            );
            nginx_error_line(r, i, "error", &msg)
        }),
        ("signal-received", 6, |r, i| {
            let msg = format!("signal 17 (SIGCHLD) received from {}", 1000 + r.below(8));
            nginx_error_line(r, i, "notice", &msg)
        }),
        ("worker-exited", 6, |r, i| {
            let msg = format!("worker process {} exited with code 0", 1000 + r.below(8));
            nginx_error_line(r, i, "notice", &msg)
        }),
        ("start-worker", 6, |r, i| {
            let msg = format!("start worker process {}", 1000 + r.below(8));
            nginx_error_line(r, i, "notice", &msg)
        }),
        ("signal-process", 2, |r, i| {
            nginx_error_line(r, i, "notice", "signal process started")
        }),
        ("epoll", 2, |r, i| {
            nginx_error_line(r, i, "notice", r#"using the "epoll" event method"#)
        }),
        ("conflicting-name", 1, |r, i| {
            let msg = format!(
                r#"conflicting server name "{}" on 0.0.0.0:80, ignored"#,
                r.pick(&["shop.example.com", "example.org"])
            );
            nginx_error_line(r, i, "warn", &msg)
        }),
    ];
    generate(5, 5000, EVENTS)
}

fn syslog(i: u64, host: &str, prog: &str, pid: u64, msg: &str) -> String {
    let (h, m, s, _) = clock(i);
    format!("Dec  6 {h:02}:{m:02}:{s:02} {host} {prog}[{pid}]: {msg}")
}

pub fn auth() -> Vec<(String, String)> {
    const EVENTS: &[Event] = &[
        ("accepted-publickey", 60, |r, i| {
            let msg = format!(
                "Accepted publickey for {} from {} port {} ssh2: ED25519 SHA256:{}",
                r.pick(&USERS),
                r.public_ip(),
                r.port(),
                r.base64(43)
            );
            syslog(i, "web-frontend", "sshd", 2000 + r.below(5000), &msg)
        }),
        ("accepted-password", 10, |r, i| {
            let msg = format!(
                "Accepted password for {} from {} port {} ssh2",
                r.pick(&USERS),
                r.public_ip(),
                r.port()
            );
            syslog(i, "web-frontend", "sshd", 2000 + r.below(5000), &msg)
        }),
        ("failed-password", 40, |r, i| {
            let msg = format!(
                "Failed password for {} from {} port {} ssh2",
                r.pick(&["root", "admin", "ubuntu", "oracle", "git"]),
                r.public_ip(),
                r.port()
            );
            syslog(i, "web-frontend", "sshd", 2000 + r.below(5000), &msg)
        }),
        ("invalid-user", 40, |r, i| {
            let msg = format!(
                "Invalid user {} from {} port {}",
                r.pick(&["admin", "test", "postgres", "deploy", "pi"]),
                r.public_ip(),
                r.port()
            );
            syslog(i, "web-frontend", "sshd", 2000 + r.below(5000), &msg)
        }),
        ("closed-preauth", 50, |r, i| {
            let msg = format!(
                "Connection closed by {} port {} [preauth]",
                r.public_ip(),
                r.port()
            );
            syslog(i, "web-frontend", "sshd", 2000 + r.below(5000), &msg)
        }),
        ("session-opened", 70, |r, i| {
            let msg = format!(
                "pam_unix(sshd:session): session opened for user {}(uid={}) by (uid=0)",
                r.pick(&USERS),
                1000 + r.below(16)
            );
            syslog(i, "web-frontend", "sshd", 2000 + r.below(5000), &msg)
        }),
        ("session-closed", 65, |r, i| {
            let msg = format!(
                "pam_unix(sshd:session): session closed for user {}",
                r.pick(&USERS)
            );
            syslog(i, "web-frontend", "sshd", 2000 + r.below(5000), &msg)
        }),
        ("disconnected", 60, |r, i| {
            let msg = format!(
                "Disconnected from user {} {} port {}",
                r.pick(&USERS),
                r.public_ip(),
                r.port()
            );
            syslog(i, "web-frontend", "sshd", 2000 + r.below(5000), &msg)
        }),
        ("sudo-command", 30, |r, i| {
            let msg = format!(
                "{} : TTY=pts/{} ; PWD=/home/{} ; USER=root ; COMMAND=/usr/bin/systemctl restart {}",
                r.pick(&USERS),
                r.below(4),
                r.pick(&USERS),
                r.pick(&["nginx", "postgresql", "shop"])
            );
            syslog(i, "web-frontend", "sudo", 3000 + r.below(5000), &msg)
        }),
        ("sudo-session-opened", 30, |r, i| {
            let msg = format!(
                "pam_unix(sudo:session): session opened for user root(uid=0) by {}(uid={})",
                r.pick(&USERS),
                1000 + r.below(16)
            );
            syslog(i, "web-frontend", "sudo", 3000 + r.below(5000), &msg)
        }),
        ("cron-session-opened", 80, |r, i| {
            let msg = "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)";
            syslog(i, "web-frontend", "CRON", 4000 + r.below(5000), msg)
        }),
        ("cron-session-closed", 80, |r, i| {
            let msg = "pam_unix(cron:session): session closed for user root";
            syslog(i, "web-frontend", "CRON", 4000 + r.below(5000), msg)
        }),
    ];
    generate(6, 5000, EVENTS)
}
