//! `netagent-testgen`: a traffic generator for netagent's tests and benchmarks.
//!
//! netagent attributes traffic to processes by their kernel `comm`, so this tool
//! sets its own comm (`--comm`, default `nettest-cli`) with `prctl(PR_SET_NAME)` on
//! the main thread and at the start of every thread it spawns, before any network
//! I/O. Tests can then look for exactly that name in the agent's output.
//!
//! Subcommands:
//! * `serve`  – TCP/UDP echo servers on loopback (or given bind addresses); prints
//!   the bound ports as one JSON line, then serves until killed or `--max-seconds`.
//!   `--sink` discards instead of echoing; `--abort` resets every TCP connection.
//! * `client` – a known number of TCP connects, UDP datagrams, bulk transfers and
//!   timed request/response exchanges; prints one JSON summary line.
//! * `load`   – paced TCP connection churn (SO_LINGER 0, so no TIME_WAIT) for
//!   benchmarks; prints one JSON summary line.
//! * `hold`   – TCP connections held open and idle, then used (`exchange`) or
//!   closed (`unread-close` resets them, `close`) one stdin command at a time;
//!   prints a JSON line when they are established and after each command.
//! * `udp-hold` – one connected UDP socket used on command (`send N`), and
//!   the process renamed (`rename NAME`): a socket outliving its owner's name;
//! * `spin`, `diskio`, `alloc` – CPU, synchronous disk I/O and memory load for
//!   the node-signal tests (delay accounting, OOM kills); each prints a JSON
//!   line when ready and one when done.
//! * `dns-serve`, `dns-query` – a DNS server answering from a zone given on
//!   the command line after a fixed delay, and a UDP/TCP DNS client (`dns`).
//!
//! Traffic only goes to addresses given on the command line (servers bind to
//! loopback by default), and every loop is bounded by a count and/or a deadline.
//!
//! Layout: `cli` (options), `comm` (process name), `server`, `client`
//! (`tcp`, `udp`), `load`, `hold`, `udp_hold`, `node` (spin, diskio, alloc), `output` (the JSON
//! lines, the interface to tests and benchmarks), `sock` (socket helpers).

mod cli;
mod client;
mod comm;
mod dns;
mod hold;
mod load;
mod node;
mod output;
mod server;
mod sock;
mod udp_hold;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netagent-testgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    // Name the main thread before anything touches the network.
    let comm = comm::COMM.get_or_init(|| cli.comm.clone());
    comm::set_comm(comm).context("prctl(PR_SET_NAME)")?;
    match cli.command {
        Command::Serve(a) => server::serve(a),
        Command::Client(a) => client::client(a),
        Command::Load(a) => load::load(a),
        Command::Hold(a) => hold::hold(a),
        Command::UdpHold(a) => udp_hold::udp_hold(a),
        Command::Spin(a) => node::spin(a),
        Command::Diskio(a) => node::diskio(a),
        Command::Alloc(a) => node::alloc(a),
        Command::DnsServe(a) => dns::dns_serve(a),
        Command::DnsQuery(a) => dns::dns_query(a),
    }
}
