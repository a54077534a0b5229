//! Plain HTTP/1.1 GETs against the agent's endpoint (no client library
//! between the test and the wire), and `/health` whatever its status.

use std::io::Read;
use std::time::Duration;

/// Plain HTTP/1.1 GET on loopback; returns the body of a 200 response.
pub fn http_get(port: u16, path: &str, accept: Option<&str>) -> Result<String, String> {
    http_get_at(std::net::Ipv4Addr::LOCALHOST.into(), port, path, accept)
}

/// [`http_get`] to `ip:port`.
pub fn http_get_at(
    ip: std::net::IpAddr,
    port: u16,
    path: &str,
    accept: Option<&str>,
) -> Result<String, String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect((ip, port)).map_err(|e| e.to_string())?;
    // Generous: the soak scrapes hundreds of thousands of kernel entries on
    // a machine it keeps busy.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or("").to_string());
    }
    // The agent answers with a fixed Content-Length body (no chunking needed
    // for our tests); strip chunk framing if a future version uses it.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

/// `/health` as JSON whatever its status (200 ok, 503 degraded).
pub fn health(port: u16) -> (u16, serde_json::Value) {
    match http_get(port, "/health", None) {
        Ok(body) => (200, serde_json::from_str(&body).unwrap()),
        Err(_) => {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            write!(
                s,
                "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").unwrap();
            let code = head.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
            (code, serde_json::from_str(body).unwrap_or_default())
        }
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}
