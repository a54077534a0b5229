//! `dns-serve` and `dns-query`: a small DNS server and client for the DNS
//! tests, with hickory-proto (the crate the agent parses with).
//!
//! The server answers from a zone given on the command line, after a fixed
//! delay, over UDP and TCP on one port: `NAME=A:ADDR`, `NAME=AAAA:ADDR`,
//! `NAME=CNAME:TARGET` (the target's records follow in the answer),
//! `NAME=NXDOMAIN`, `NAME=SERVFAIL`, `NAME=REFUSED`, `NAME=DROP` (never
//! answered). A name not in the zone is NXDOMAIN; a known name without
//! records of the asked type is NOERROR without answers.
//!
//! The client sends queries from one unconnected UDP socket (sendto) or
//! over one TCP connection, waits for each answer (or its own timeout),
//! and can then connect to the first address it got and make one
//! request/response: the flow whose edge and span the agent should label
//! with the name.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::json;

use crate::comm::spawn_named;
use crate::output::print_json;

#[derive(Args)]
pub struct DnsServeArgs {
    /// Address to serve on (UDP and TCP).
    #[arg(long, value_name = "ADDR")]
    pub bind: IpAddr,
    /// Port (0 = pick a free one, the same for UDP and TCP when possible).
    #[arg(long, default_value_t = 53)]
    pub port: u16,
    /// Delay before each answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub delay_ms: u64,
    /// Zone entries: NAME=A:ADDR, NAME=AAAA:ADDR, NAME=CNAME:TARGET,
    /// NAME=NXDOMAIN, NAME=SERVFAIL, NAME=REFUSED, NAME=DROP.
    #[arg(long = "zone", value_name = "ENTRY")]
    pub zone: Vec<String>,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub max_seconds: u64,
}

#[derive(Args)]
pub struct DnsQueryArgs {
    /// The DNS server.
    #[arg(long, value_name = "ADDR:PORT")]
    pub server: SocketAddr,
    /// Name to look up.
    #[arg(long)]
    pub name: String,
    /// Record type (A, AAAA, SRV, TXT, …).
    #[arg(long, default_value = "A")]
    pub qtype: String,
    /// How many queries, one after the other.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Over TCP (one connection for all queries) instead of UDP.
    #[arg(long)]
    pub tcp: bool,
    /// Wait this long for each answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Send these many bytes of garbage (not DNS) instead of queries.
    #[arg(long, value_name = "N")]
    pub garbage: Option<usize>,
    /// After the answers, connect over TCP to the first address received
    /// at this port, send one byte and read one back (an echo server's:
    /// one request/response).
    #[arg(long, value_name = "PORT")]
    pub connect_port: Option<u16>,
}

/// What the server does for a name.
#[derive(Clone, Debug)]
enum Entry {
    Record(RData),
    Cname(Name),
    Rcode(ResponseCode),
    Drop,
}

fn fqdn(name: &str) -> Result<Name> {
    let n = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    Ok(Name::from_ascii(&n)?.to_lowercase())
}

fn parse_zone(entries: &[String]) -> Result<Vec<(Name, Entry)>> {
    let mut zone = Vec::new();
    for e in entries {
        let (name, what) = e
            .split_once('=')
            .with_context(|| format!("zone entry {e:?}: NAME=..."))?;
        let (kind, value) = what.split_once(':').unwrap_or((what, ""));
        let entry = match kind {
            "A" => Entry::Record(RData::A(A::from(std::net::Ipv4Addr::from_str(value)?))),
            "AAAA" => Entry::Record(RData::AAAA(AAAA::from(std::net::Ipv6Addr::from_str(
                value,
            )?))),
            "CNAME" => Entry::Cname(fqdn(value)?),
            "NXDOMAIN" => Entry::Rcode(ResponseCode::NXDomain),
            "SERVFAIL" => Entry::Rcode(ResponseCode::ServFail),
            "REFUSED" => Entry::Rcode(ResponseCode::Refused),
            "DROP" => Entry::Drop,
            other => bail!("zone entry {e:?}: unknown kind {other}"),
        };
        zone.push((fqdn(name)?, entry));
    }
    Ok(zone)
}

/// The answer to one query, or None to stay silent.
fn respond(zone: &[(Name, Entry)], query: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    let q = req.queries.first()?.clone();
    let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(q.clone());
    let mut name = q.name().to_lowercase();
    let entries = |n: &Name| -> Vec<Entry> {
        zone.iter()
            .filter(|(z, _)| z == n)
            .map(|(_, e)| e.clone())
            .collect()
    };
    let first = entries(&name);
    if first.is_empty() {
        resp.metadata.response_code = ResponseCode::NXDomain;
    }
    // Follow CNAMEs (bounded) and add the records of the asked type.
    for _ in 0..8 {
        let here = entries(&name);
        let mut next = None;
        for e in here {
            match e {
                Entry::Drop => return None,
                Entry::Rcode(rc) => resp.metadata.response_code = rc,
                Entry::Cname(target) => {
                    resp.add_answer(Record::from_rdata(
                        name.clone(),
                        300,
                        RData::CNAME(CNAME(target.clone())),
                    ));
                    next = Some(target);
                }
                Entry::Record(rd) => {
                    if rd.record_type() == q.query_type() {
                        resp.add_answer(Record::from_rdata(name.clone(), 300, rd));
                    }
                }
            }
        }
        match next {
            Some(n) => name = n,
            None => break,
        }
    }
    resp.to_vec().ok()
}

pub fn dns_serve(a: DnsServeArgs) -> Result<std::process::ExitCode> {
    let zone = std::sync::Arc::new(parse_zone(&a.zone)?);
    let udp = UdpSocket::bind((a.bind, a.port)).context("bind UDP")?;
    let port = udp.local_addr()?.port();
    let tcp = TcpListener::bind((a.bind, port)).context("bind TCP")?;
    let delay = Duration::from_millis(a.delay_ms);
    print_json(&json!({"udp": port, "tcp": port, "pid": std::process::id()}))?;
    {
        let zone = zone.clone();
        spawn_named(None, move || {
            for stream in tcp.incoming().flatten() {
                let zone = zone.clone();
                let _ = spawn_named(None, move || serve_tcp(stream, &zone, delay));
            }
        })?;
    }
    {
        let udp = udp.try_clone()?;
        spawn_named(None, move || {
            let mut buf = [0u8; 4096];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                let Some(answer) = respond(&zone, &buf[..n]) else {
                    continue;
                };
                let out = udp.try_clone();
                let _ = spawn_named(None, move || {
                    std::thread::sleep(delay);
                    if let Ok(out) = out {
                        let _ = out.send_to(&answer, from);
                    }
                });
            }
        })?;
    }
    std::thread::sleep(Duration::from_secs(a.max_seconds));
    Ok(std::process::ExitCode::SUCCESS)
}

/// One TCP connection: length-prefixed queries, each answered after the
/// delay, in order.
fn serve_tcp(mut s: TcpStream, zone: &[(Name, Entry)], delay: Duration) {
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        if s.read_exact(&mut q).is_err() {
            return;
        }
        let Some(answer) = respond(zone, &q) else {
            continue;
        };
        std::thread::sleep(delay);
        let mut out = (answer.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&answer);
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

fn query_bytes(id: u16, name: &Name, qtype: RecordType) -> Result<Vec<u8>> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name.clone(), qtype));
    Ok(m.to_vec()?)
}

pub fn dns_query(a: DnsQueryArgs) -> Result<std::process::ExitCode> {
    let name = fqdn(&a.name)?;
    let qtype = RecordType::from_str(&a.qtype).context("--qtype")?;
    let timeout = Duration::from_millis(a.timeout_ms);
    let mut results = Vec::new();
    let mut first_addr: Option<IpAddr> = None;
    let local: SocketAddr = if a.server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let mut tcp = if a.tcp {
        let s = TcpStream::connect_timeout(&a.server, timeout).context("connect")?;
        s.set_read_timeout(Some(timeout))?;
        Some(s)
    } else {
        None
    };
    let udp = UdpSocket::bind(local)?;
    udp.set_read_timeout(Some(timeout))?;
    if let Some(n) = a.garbage {
        udp.send_to(&vec![0x5a; n], a.server)?;
        print_json(&json!({"garbage": n}))?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    for i in 0..a.count {
        let id = (std::process::id() as u16)
            .wrapping_mul(31)
            .wrapping_add(i as u16);
        let q = query_bytes(id, &name, qtype)?;
        let started = Instant::now();
        let answer: Option<Vec<u8>> = match tcp.as_mut() {
            Some(s) => {
                let mut out = (q.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&q);
                s.write_all(&out)?;
                let mut len = [0u8; 2];
                match s.read_exact(&mut len) {
                    Ok(()) => {
                        let mut b = vec![0u8; u16::from_be_bytes(len) as usize];
                        s.read_exact(&mut b)?;
                        Some(b)
                    }
                    Err(_) => None,
                }
            }
            None => {
                udp.send_to(&q, a.server)?;
                let mut buf = [0u8; 4096];
                let deadline = started + timeout;
                let mut got = None;
                while Instant::now() < deadline {
                    match udp.recv_from(&mut buf) {
                        Ok((n, _)) => {
                            if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                                got = Some(buf[..n].to_vec());
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
                got
            }
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match answer.and_then(|b| Message::from_vec(&b).ok()) {
            Some(m) => {
                for r in &m.answers {
                    let addr = match &r.data {
                        RData::A(x) => Some(IpAddr::V4(x.0)),
                        RData::AAAA(x) => Some(IpAddr::V6(x.0)),
                        _ => None,
                    };
                    first_addr = first_addr.or(addr);
                }
                results.push(json!({
                    "rcode": u16::from(m.metadata.response_code),
                    "answers": m.answers.len(),
                    "ms": ms,
                }));
            }
            None => results.push(json!({"rcode": "timeout", "ms": ms})),
        }
    }
    let mut connected = None;
    if let (Some(port), Some(addr)) = (a.connect_port, first_addr) {
        let mut s = TcpStream::connect_timeout(&SocketAddr::new(addr, port), timeout)
            .context("connect to the resolved address")?;
        s.write_all(b"x")?;
        s.set_read_timeout(Some(timeout))?;
        let mut echo = [0u8; 1];
        s.read_exact(&mut echo).context("read the echo")?;
        connected = Some(SocketAddr::new(addr, port).to_string());
    }
    print_json(&json!({
        "results": results,
        "first_addr": first_addr.map(|a| a.to_string()),
        "connected": connected,
    }))?;
    Ok(std::process::ExitCode::SUCCESS)
}
