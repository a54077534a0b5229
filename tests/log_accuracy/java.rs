//! The `java` file of the generated corpus (see generators.rs): Log4j
//! lines and the stack traces under the errors, each line a message.

use super::generators::*;

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
