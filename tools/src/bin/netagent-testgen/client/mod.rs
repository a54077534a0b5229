//! `client`: a known number of TCP connects, UDP datagrams, bulk transfers
//! and timed request/response exchanges per target; one JSON summary line.

mod tcp;
mod udp;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{ensure, Result};

use crate::cli::ClientArgs;
use crate::output::{ms, print_json, ClientSummary, ExchangeMs, UdpClientStats};
use crate::sock::SocketOpts;

/// Size of one request in a request/response exchange.
const EXCHANGE_LEN: usize = 32;
/// Per-exchange I/O timeout, so a silent peer cannot stall the client forever.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Payload of each `client --sends` datagram; `--size` repeats or cuts it.
pub const SEND_PAYLOAD: &[u8; 32] = b"ntgen-send-datagram-0123456789ab";

/// Wall times of all exchanges, across targets.
#[derive(Default)]
struct Timings {
    min: Option<Duration>,
    max: Option<Duration>,
}

impl Timings {
    fn record(&mut self, d: Duration) {
        self.min = Some(self.min.map_or(d, |m| m.min(d)));
        self.max = Some(self.max.map_or(d, |m| m.max(d)));
    }
}

pub fn client(args: ClientArgs) -> Result<ExitCode> {
    ensure!(
        args.tcp4.is_some() || args.tcp6.is_some() || args.udp4.is_some() || args.udp6.is_some(),
        "client: no target; give at least one of --tcp4/--tcp6/--udp4/--udp6"
    );
    ensure!(
        !args.tcp_info || args.exchanges > 0,
        "client: --tcp-info reads the exchange connection; give --exchanges too"
    );
    let opts = SocketOpts::new(args.syn_retries, &args.bind)?;
    let mut timings = Timings::default();
    let mut failed = false;

    let mut run_tcp = |target: Option<SocketAddr>, timings: &mut Timings| {
        target.map(|addr| {
            let (stats, ok) = tcp::tcp_client(addr, &args, &opts, timings);
            failed |= !ok;
            stats
        })
    };
    let tcp4 = run_tcp(args.tcp4, &mut timings);
    let tcp6 = run_tcp(args.tcp6, &mut timings);

    let mut run_udp = |target: Option<SocketAddr>, timings: &mut Timings| {
        target
            .map(|addr| -> Result<UdpClientStats> {
                let stats = udp::udp_client(addr, &args, &opts, timings)?;
                failed |= stats.sends_failed > 0 || stats.exchanges < args.exchanges;
                Ok(stats)
            })
            .transpose()
    };
    let udp4 = run_udp(args.udp4, &mut timings)?;
    let udp6 = run_udp(args.udp6, &mut timings)?;

    print_json(&ClientSummary {
        tcp4,
        tcp6,
        udp4,
        udp6,
        exchange_ms: ExchangeMs {
            min: timings.min.map(ms),
            max: timings.max.map(ms),
        },
    })?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A request whose content identifies the exchange, so stale or foreign replies
/// are recognised.
fn exchange_payload(seq: u64) -> [u8; EXCHANGE_LEN] {
    let mut p = [b'x'; EXCHANGE_LEN];
    p[..8].copy_from_slice(b"ntgen-xc");
    p[8..16].copy_from_slice(&seq.to_be_bytes());
    p[16..20].copy_from_slice(&std::process::id().to_be_bytes());
    p
}
