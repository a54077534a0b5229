//! What testgen prints: one JSON object per line on stdout. Tests, the
//! kernel-matrix driver and the benchmark suite parse these lines, so field
//! names, their order and which ones are left out are part of the interface.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

/// Prints `value` as one JSON line on stdout, flushed at once (readers wait
/// for the line, e.g. the ready line of `serve`).
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let line = serde_json::to_string(value).context("serializing JSON output")?;
    let mut out = io::stdout().lock();
    writeln!(out, "{line}").context("writing JSON to stdout")?;
    out.flush().context("flushing stdout")
}

/// Milliseconds with microsecond resolution (keeps the JSON short and exact).
pub fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

// ---------------------------------------------------------------------------
// serve

/// The ready line, once every requested port is bound (0: not served).
#[derive(Serialize)]
pub struct ServeReady {
    pub tcp4: u16,
    pub tcp6: u16,
    pub udp4: u16,
    pub udp6: u16,
    pub pid: u32,
}

// ---------------------------------------------------------------------------
// client

#[derive(Serialize)]
pub struct TcpClientStats {
    pub connects_ok: u64,
    pub connects_failed: u64,
    pub exchanges: u64,
    /// Payload bytes written to this target: `--bulk` plus exchange requests.
    pub bytes_sent: u64,
    /// Failed connect() calls to this target by errno name: the `--connects`
    /// loop (also counted in `connects_failed`), the `--bulk` connection and
    /// the `--exchanges` connection.
    pub connect_errors: BTreeMap<String, u64>,
    /// `--wait-reset`: connections the peer closed with RST.
    pub resets: u64,
    /// `--wait-reset`: connections the peer closed normally (FIN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eofs: Option<u64>,
    /// `--wait-reset`: connections not closed by the peer in time, or another
    /// read error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_failed: Option<u64>,
    /// `--tcp-info`: smoothed RTT of the exchange connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcpi_rtt_us: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The `--bulk` connection's `tcpi_total_retrans`, read once the server
    /// has closed (our FIN acknowledged: nothing more can be retransmitted).
    pub bulk_total_retrans: Option<u32>,
}

#[derive(Serialize)]
pub struct UdpClientStats {
    pub sends_ok: u64,
    pub sends_failed: u64,
    pub exchanges: u64,
    /// Payload bytes sent to this target: `--sends` datagrams plus exchange requests.
    pub bytes_sent: u64,
}

#[derive(Serialize)]
pub struct ExchangeMs {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Serialize)]
pub struct ClientSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp4: Option<TcpClientStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp6: Option<TcpClientStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp4: Option<UdpClientStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp6: Option<UdpClientStats>,
    pub exchange_ms: ExchangeMs,
}

// ---------------------------------------------------------------------------
// load

#[derive(Serialize)]
pub struct LoadSummary {
    pub attempts: u64,
    pub ok: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    pub seconds: f64,
    pub rate: f64,
}

// ---------------------------------------------------------------------------
// spin, diskio, alloc

/// The ready line of `spin`, `diskio` and `alloc`.
#[derive(Serialize)]
pub struct Ready {
    pub pid: u32,
}

/// `spin` is done.
#[derive(Serialize)]
pub struct SpinDone {
    pub pid: u32,
    pub spun_ms: f64,
}

/// `diskio` is done.
#[derive(Serialize)]
pub struct DiskioDone {
    pub pid: u32,
    pub writes: u64,
    pub reads: u64,
}

/// `alloc` holds all its memory.
#[derive(Serialize)]
pub struct Allocated {
    pub pid: u32,
    pub allocated_mib: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn serve_ready_line() {
        let ready = ServeReady {
            tcp4: 1,
            tcp6: 0,
            udp4: 3,
            udp6: 0,
            pid: 42,
        };
        assert_eq!(
            json(&ready),
            r#"{"tcp4":1,"tcp6":0,"udp4":3,"udp6":0,"pid":42}"#
        );
    }

    #[test]
    fn client_summary_leaves_out_what_was_not_asked() {
        let tcp = |wait_reset: bool| TcpClientStats {
            connects_ok: 3,
            connects_failed: 1,
            exchanges: 2,
            bytes_sent: 64,
            connect_errors: BTreeMap::from([("ECONNREFUSED".to_string(), 1)]),
            resets: 0,
            eofs: wait_reset.then_some(3),
            wait_failed: wait_reset.then_some(0),
            tcpi_rtt_us: Some(50),
            bulk_total_retrans: None,
        };
        let summary = ClientSummary {
            tcp4: Some(tcp(false)),
            tcp6: Some(tcp(true)),
            udp4: None,
            udp6: Some(UdpClientStats {
                sends_ok: 4,
                sends_failed: 0,
                exchanges: 2,
                bytes_sent: 192,
            }),
            exchange_ms: ExchangeMs {
                min: Some(ms(Duration::from_micros(1_500))),
                max: None,
            },
        };
        assert_eq!(
            json(&summary),
            concat!(
                r#"{"tcp4":{"connects_ok":3,"connects_failed":1,"exchanges":2,"bytes_sent":64,"#,
                r#""connect_errors":{"ECONNREFUSED":1},"resets":0,"tcpi_rtt_us":50},"#,
                r#""tcp6":{"connects_ok":3,"connects_failed":1,"exchanges":2,"bytes_sent":64,"#,
                r#""connect_errors":{"ECONNREFUSED":1},"resets":0,"eofs":3,"wait_failed":0,"#,
                r#""tcpi_rtt_us":50},"#,
                r#""udp6":{"sends_ok":4,"sends_failed":0,"exchanges":2,"bytes_sent":192},"#,
                r#""exchange_ms":{"min":1.5,"max":null}}"#
            )
        );
    }

    #[test]
    fn load_and_node_lines() {
        let load = LoadSummary {
            attempts: 10,
            ok: 9,
            failed: 1,
            errors: BTreeMap::from([("unfinished".to_string(), 1)]),
            seconds: 1.25,
            rate: 8.0,
        };
        assert_eq!(
            json(&load),
            r#"{"attempts":10,"ok":9,"failed":1,"errors":{"unfinished":1},"seconds":1.25,"rate":8.0}"#
        );
        assert_eq!(json(&Ready { pid: 7 }), r#"{"pid":7}"#);
        let spin = SpinDone {
            pid: 7,
            spun_ms: 0.5,
        };
        assert_eq!(json(&spin), r#"{"pid":7,"spun_ms":0.5}"#);
        let disk = DiskioDone {
            pid: 7,
            writes: 16,
            reads: 100,
        };
        assert_eq!(json(&disk), r#"{"pid":7,"writes":16,"reads":100}"#);
        let alloc = Allocated {
            pid: 7,
            allocated_mib: 64,
        };
        assert_eq!(json(&alloc), r#"{"pid":7,"allocated_mib":64}"#);
    }
}
