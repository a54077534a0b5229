//! Slow clients against the header-read and idle timeouts (they neither
//! block scrapes nor stay), and connections beyond `max_connections`,
//! which wait in the backlog for a slot.

use super::{closed_by_server, SecureAgent};
use crate::common::{http_get, require_bpf, serial, TempDir};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status line.
fn read_response(r: &mut BufReader<TcpStream>) -> String {
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    status.trim_end().to_string()
}

#[test]
fn slow_clients_neither_block_scrapes_nor_stay() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let mut agent = SecureAgent::start(
        TempDir::new("httpsec-slow"),
        "  header_read_timeout_seconds: 1\n  idle_timeout_seconds: 3\n",
    );
    let port = agent.port;

    // 200 connections that send part of a request header, then nothing.
    let mut flood = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        flood.push((Instant::now(), s));
    }
    // And a few that trickle a header one byte every 100 ms: the header
    // timeout is for the whole header, not between bytes.
    let tricklers: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let header = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
                let mut bytes = header.iter().chain(std::iter::repeat(&b'a'));
                let mut buf = [0u8; 64];
                while started.elapsed() < Duration::from_secs(8) {
                    if s.write_all(&[*bytes.next().unwrap()]).is_err() {
                        return started.elapsed();
                    }
                    match s.read(&mut buf) {
                        Ok(_) => return started.elapsed(),
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return started.elapsed(),
                    }
                }
                started.elapsed()
            })
        })
        .collect();

    // A scraper meanwhile: answered at once.
    let started = Instant::now();
    let body = http_get(port, "/metrics", None).expect("scrape during the flood");
    let took = started.elapsed();
    assert!(body.contains("netagent_probe_up"), "{body}");
    assert!(
        took < Duration::from_secs(1),
        "scrape took {took:?} with 200 slow connections open"
    );
    eprintln!("scrape during the flood: {took:?}");

    // Every slow connection is closed by the server after the 1 s header
    // read timeout (not before, not much after).
    for (i, (opened, s)) in flood.iter_mut().enumerate() {
        assert!(closed_by_server(s), "slow connection {i} not closed");
        let after = opened.elapsed();
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(4),
            "slow connection {i} closed after {after:?}"
        );
    }
    for t in tricklers {
        let after = t.join().unwrap();
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(3),
            "trickling connection closed after {after:?}"
        );
    }
    drop(flood);

    // Keep-alive: the header clock starts at a request's first byte, so a
    // connection idle for longer than the header timeout (but less than the
    // idle timeout) is still served; after the idle timeout it is closed.
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    w.write_all(request).unwrap();
    let first = read_response(&mut r);
    assert!(first.starts_with("HTTP/1.1 200") || first.starts_with("HTTP/1.1 503"));
    std::thread::sleep(Duration::from_millis(1500));
    w.write_all(request).unwrap();
    let second = read_response(&mut r);
    assert!(second.starts_with("HTTP/1.1 200") || second.starts_with("HTTP/1.1 503"));
    let idle_from = Instant::now();
    assert!(closed_by_server(r.get_mut()), "idle connection not closed");
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(2700) && idle < Duration::from_secs(5),
        "idle connection closed after {idle:?}"
    );

    // Shutdown with slow clients connected is prompt and clean.
    let _slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    let (status, took) = agent.terminate();
    assert!(status.success(), "{status}: {}", agent.stderr());
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
}

#[test]
fn connections_beyond_the_limit_wait_for_a_slot() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let agent = SecureAgent::start(
        TempDir::new("httpsec-limit"),
        "  max_connections: 8\n  header_read_timeout_seconds: 1\n",
    );
    // Eight silent connections take every slot until the header timeout.
    let mut silent: Vec<TcpStream> = (0..8)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // The ninth waits in the listen backlog and is served once they go.
    let started = Instant::now();
    let body = http_get(agent.port, "/metrics", None).expect("scrape beyond the limit");
    let took = started.elapsed();
    assert!(body.contains("netagent_probe_up"));
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(4),
        "ninth connection served after {took:?}"
    );
    for s in &mut silent {
        assert!(closed_by_server(s));
    }
    assert!(
        agent.stderr().contains("connection limit reached"),
        "{}",
        agent.stderr()
    );
}
