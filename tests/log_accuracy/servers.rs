//! The server logs of the generated corpus (see generators.rs): nginx's
//! access and error logs, and an auth log of sshd, sudo and cron's PAM
//! sessions.

use super::generators::*;

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
