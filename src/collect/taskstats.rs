//! Netlink taskstats client: the kernel's per-process delay accounting
//! (`TASKSTATS_CMD_GET`), through the `neli` crate's message types.
//!
//! One query per process, by TGID: the kernel then sums over the live
//! threads and adds what the threads that already exited had accumulated
//! (`signal->stats`), so a process's values only grow while it lives.
//! The kernel answers only callers with `CAP_NET_ADMIN` (`GENL_ADMIN_PERM`).
//!
//! Every receive is bounded by a socket timeout, so a query can never hang.

use std::io::Cursor;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use neli::consts::genl::{CtrlAttr, CtrlCmd};
use neli::consts::nl::{GenlId, NlmF};
use neli::consts::socket::{Msg, NlFamily};
use neli::genl::{AttrTypeBuilder, Genlmsghdr, GenlmsghdrBuilder, NlattrBuilder};
use neli::nl::{NlPayload, NlmsghdrBuilder};
use neli::socket::NlSocket;
use neli::types::{GenlBuffer, NlBuffer};
use neli::utils::Groups;
use neli::{FromBytesWithInput, Size, ToBytes};

/// `TASKSTATS_GENL_NAME` in linux/taskstats.h.
const FAMILY_NAME: &str = "TASKSTATS";
/// `TASKSTATS_GENL_VERSION`.
const GENL_VERSION: u8 = 1;
/// `TASKSTATS_CMD_GET`.
const CMD_GET: u8 = 1;
/// `TASKSTATS_CMD_ATTR_TGID`: the whole thread group.
const CMD_ATTR_TGID: u16 = 2;
/// `TASKSTATS_TYPE_STATS`: the `struct taskstats` payload.
const TYPE_STATS: u16 = 3;
/// `TASKSTATS_TYPE_AGGR_PID` / `_AGGR_TGID`: a pid or tgid plus its stats.
const TYPE_AGGR_PID: u16 = 4;
const TYPE_AGGR_TGID: u16 = 5;

/// Byte offsets in `struct taskstats` (linux/taskstats.h). These fields are
/// part of version 1 of the struct and have not moved since; checked with
/// `offsetof` against the header of Linux 6.18 (TASKSTATS_VERSION 13) and
/// by the unit test on a reply captured from that kernel.
const OFF_CPU_COUNT: usize = 16;
const OFF_CPU_DELAY_TOTAL: usize = 24;
const OFF_BLKIO_COUNT: usize = 32;
const OFF_BLKIO_DELAY_TOTAL: usize = 40;
/// Bytes a reply's stats must hold for the fields above.
const MIN_STATS_LEN: usize = OFF_BLKIO_DELAY_TOTAL + 8;

/// How long one request may wait for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// A reply is about 450 bytes; room for several stale ones.
const RECV_BUF: usize = 16 * 1024;

/// Delay counters of one process (nanoseconds and event counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delays {
    /// Times the process waited to run on a CPU, and the time it waited.
    pub cpu_count: u64,
    pub cpu_delay_ns: u64,
    /// Waits for synchronous block I/O, and their total time.
    pub blkio_count: u64,
    pub blkio_delay_ns: u64,
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskstatsError {
    /// The process exited between listing and querying it.
    #[error("no such process")]
    NoSuchProcess,
    #[error("netlink: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel refused (EPERM without CAP_NET_ADMIN, ...).
    #[error("the kernel answered {0}")]
    Kernel(std::io::Error),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("malformed reply: {0}")]
    Malformed(String),
}

/// A generic-netlink socket bound to the TASKSTATS family.
pub struct Taskstats {
    socket: NlSocket,
    family: u16,
    pid: u32,
    seq: u32,
    buf: Vec<u8>,
}

impl Taskstats {
    /// Opens the socket and resolves the TASKSTATS family id.
    pub fn open() -> Result<Self, TaskstatsError> {
        let socket = NlSocket::connect(NlFamily::Generic, None, Groups::empty())?;
        socket.block()?;
        set_recv_timeout(&socket, REPLY_TIMEOUT)?;
        let pid = socket.pid()?;
        let mut ts = Self {
            socket,
            family: 0,
            pid,
            seq: 0,
            buf: vec![0; RECV_BUF],
        };
        ts.family = ts.resolve_family()?;
        Ok(ts)
    }

    /// Delays of process `tgid`, summed over its threads (live and exited).
    pub fn tgid(&mut self, tgid: u32) -> Result<Delays, TaskstatsError> {
        let attrs = std::iter::once(
            NlattrBuilder::default()
                .nla_type(
                    AttrTypeBuilder::default()
                        .nla_type(CMD_ATTR_TGID)
                        .build()
                        .map_err(build_error)?,
                )
                .nla_payload(tgid)
                .build()
                .map_err(build_error)?,
        )
        .collect::<GenlBuffer<u16, _>>();
        let genl = GenlmsghdrBuilder::<u8, u16>::default()
            .cmd(CMD_GET)
            .version(GENL_VERSION)
            .attrs(attrs)
            .build()
            .map_err(build_error)?;
        let seq = self.send(self.family, genl)?;
        let family = self.family;
        self.receive(seq, |bytes| parse_reply(bytes, family))
    }

    /// `CTRL_CMD_GETFAMILY` for "TASKSTATS".
    fn resolve_family(&mut self) -> Result<u16, TaskstatsError> {
        let attrs = std::iter::once(
            NlattrBuilder::default()
                .nla_type(
                    AttrTypeBuilder::default()
                        .nla_type(CtrlAttr::FamilyName)
                        .build()
                        .map_err(build_error)?,
                )
                .nla_payload(FAMILY_NAME)
                .build()
                .map_err(build_error)?,
        )
        .collect::<GenlBuffer<CtrlAttr, _>>();
        let genl = GenlmsghdrBuilder::<CtrlCmd, CtrlAttr>::default()
            .cmd(CtrlCmd::Getfamily)
            .version(2)
            .attrs(attrs)
            .build()
            .map_err(build_error)?;
        let seq = self.send(GenlId::Ctrl, genl)?;
        self.receive(seq, parse_family_reply)
    }

    /// Serialises and sends one request (no ACK asked: the reply, or an
    /// error message, is the answer). Returns its sequence number.
    fn send<T, P>(&mut self, nl_type: T, payload: P) -> Result<u32, TaskstatsError>
    where
        T: neli::consts::nl::NlType,
        P: Size + ToBytes,
    {
        self.seq = self.seq.wrapping_add(1);
        let msg = NlmsghdrBuilder::default()
            .nl_type(nl_type)
            .nl_flags(NlmF::REQUEST)
            .nl_pid(self.pid)
            .nl_seq(self.seq)
            .nl_payload(NlPayload::Payload(payload))
            .build()
            .map_err(build_error)?;
        let mut out = Cursor::new(vec![0u8; msg.padded_size()]);
        msg.to_bytes(&mut out)
            .map_err(|e| TaskstatsError::Malformed(e.to_string()))?;
        self.socket.send(out.get_ref(), Msg::empty())?;
        Ok(self.seq)
    }

    /// Reads datagrams until the one answering `seq`; replies to earlier
    /// requests that timed out are skipped. Bounded by [`REPLY_TIMEOUT`].
    fn receive<R>(
        &mut self,
        seq: u32,
        parse: impl Fn(&[u8]) -> Result<R, TaskstatsError>,
    ) -> Result<R, TaskstatsError> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        while Instant::now() < deadline {
            let n = match self.socket.recv(&mut self.buf[..], Msg::empty()) {
                Ok((n, _)) => n,
                Err(e) if is_timeout(&e) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let bytes = &self.buf[..n];
            if reply_seq(bytes) != Some(seq) {
                continue;
            }
            return parse(bytes);
        }
        Err(TaskstatsError::Timeout(REPLY_TIMEOUT))
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn set_recv_timeout(socket: &NlSocket, d: Duration) -> std::io::Result<()> {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid socket fd and a timeval that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sequence number of the first message in a datagram (nlmsghdr bytes 8..12).
fn reply_seq(bytes: &[u8]) -> Option<u32> {
    bytes
        .get(8..12)
        .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
}

type Messages<C, A> = NlBuffer<u16, Genlmsghdr<C, A>>;

/// Decodes every netlink message in a datagram.
fn messages<C, A>(bytes: &[u8]) -> Result<Messages<C, A>, TaskstatsError>
where
    Genlmsghdr<C, A>: Size + FromBytesWithInput<Input = usize>,
{
    NlBuffer::from_bytes_with_input(&mut Cursor::new(bytes), bytes.len())
        .map_err(|e| TaskstatsError::Malformed(e.to_string()))
}

/// The family id in a `CTRL_CMD_GETFAMILY` reply.
fn parse_family_reply(bytes: &[u8]) -> Result<u16, TaskstatsError> {
    for msg in messages::<CtrlCmd, CtrlAttr>(bytes)? {
        match msg.nl_payload() {
            NlPayload::Payload(p) => {
                if let Ok(id) = p
                    .attrs()
                    .get_attr_handle()
                    .get_attr_payload_as::<u16>(CtrlAttr::FamilyId)
                {
                    return Ok(id);
                }
            }
            NlPayload::Err(e) => return Err(kernel_error(*e.error())),
            _ => {}
        }
    }
    Err(TaskstatsError::Malformed(format!(
        "no id for generic netlink family {FAMILY_NAME}"
    )))
}

/// The delays in a `TASKSTATS_CMD_GET` reply (raw datagram bytes).
pub fn parse_reply(bytes: &[u8], family: u16) -> Result<Delays, TaskstatsError> {
    for msg in messages::<u8, u16>(bytes)? {
        match msg.nl_payload() {
            NlPayload::Payload(p) if *msg.nl_type() == family => {
                let top = p.attrs().get_attr_handle();
                let aggr = top
                    .get_attribute(TYPE_AGGR_TGID)
                    .or_else(|| top.get_attribute(TYPE_AGGR_PID))
                    .ok_or_else(|| TaskstatsError::Malformed("no AGGR_TGID/AGGR_PID".into()))?;
                let nested = aggr
                    .get_attr_handle::<u16>()
                    .map_err(|e| TaskstatsError::Malformed(e.to_string()))?;
                let stats = nested
                    .get_attribute(TYPE_STATS)
                    .ok_or_else(|| TaskstatsError::Malformed("no TASKSTATS_TYPE_STATS".into()))?;
                return parse_stats(stats.nla_payload().as_ref());
            }
            NlPayload::Err(e) => return Err(kernel_error(*e.error())),
            _ => {}
        }
    }
    Err(TaskstatsError::Malformed("no taskstats message".into()))
}

/// Fields of `struct taskstats` (native byte order).
fn parse_stats(raw: &[u8]) -> Result<Delays, TaskstatsError> {
    if raw.len() < MIN_STATS_LEN {
        return Err(TaskstatsError::Malformed(format!(
            "struct taskstats of {} bytes, need {MIN_STATS_LEN}",
            raw.len()
        )));
    }
    let u64_at = |off: usize| u64::from_ne_bytes(raw[off..off + 8].try_into().expect("8 bytes"));
    Ok(Delays {
        cpu_count: u64_at(OFF_CPU_COUNT),
        cpu_delay_ns: u64_at(OFF_CPU_DELAY_TOTAL),
        blkio_count: u64_at(OFF_BLKIO_COUNT),
        blkio_delay_ns: u64_at(OFF_BLKIO_DELAY_TOTAL),
    })
}

/// Netlink error codes are negative errnos.
fn kernel_error(code: libc::c_int) -> TaskstatsError {
    match -code {
        libc::ESRCH => TaskstatsError::NoSuchProcess,
        errno => TaskstatsError::Kernel(std::io::Error::from_raw_os_error(errno)),
    }
}

/// A request that could not be built (never expected: its parts are fixed).
fn build_error(e: impl std::fmt::Display) -> TaskstatsError {
    TaskstatsError::Malformed(format!("building a request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Family id the kernel gave TASKSTATS when the replies were captured.
    const CAPTURED_FAMILY: u16 = 31;

    /// `TASKSTATS_CMD_GET` by TGID for a single-threaded `sleep` on Linux
    /// 6.18 (struct version 16) with kernel.task_delayacct=1; before and
    /// after the query its /proc/<pid>/schedstat read `2196056 1373093 9`
    /// (run time, run-queue delay = cpu_delay_total, timeslices = cpu_count).
    const REPLY: &[u8] = include_bytes!("../../tests/corpus/taskstats/reply-6.18-tgid.bin");
    /// The same request for a pid that does not exist.
    const ESRCH: &[u8] = include_bytes!("../../tests/corpus/taskstats/reply-6.18-esrch.bin");

    #[test]
    fn parses_a_reply_captured_from_linux_6_18() {
        let d = parse_reply(REPLY, CAPTURED_FAMILY).unwrap();
        assert_eq!(d.cpu_delay_ns, 1_373_093, "schedstat run_delay");
        assert_eq!(d.cpu_count, 9, "schedstat pcount");
        // After 300 O_DSYNC|O_DIRECT writes by dd (which exec'd the sleep).
        assert_eq!((d.blkio_count, d.blkio_delay_ns), (5, 185_284));
        assert_eq!(reply_seq(REPLY), Some(2));
    }

    #[test]
    fn struct_version_and_layout_are_those_the_offsets_assume() {
        // nlmsghdr (16) + genlmsghdr (4) + AGGR_TGID header (4) + TGID attr
        // (8) + STATS header (4): the struct starts at byte 36.
        let stats = &REPLY[36..];
        let version = u16::from_ne_bytes([stats[0], stats[1]]);
        assert!(version >= 1, "version {version}");
        assert!(parse_stats(&stats[..MIN_STATS_LEN]).is_ok());
        assert!(matches!(
            parse_stats(&stats[..MIN_STATS_LEN - 1]),
            Err(TaskstatsError::Malformed(_))
        ));
    }

    #[test]
    fn a_gone_process_is_no_such_process() {
        assert!(matches!(
            parse_reply(ESRCH, CAPTURED_FAMILY),
            Err(TaskstatsError::NoSuchProcess)
        ));
    }

    #[test]
    fn a_reply_of_another_family_or_garbage_is_rejected() {
        assert!(matches!(
            parse_reply(REPLY, CAPTURED_FAMILY + 1),
            Err(TaskstatsError::Malformed(_))
        ));
        assert!(parse_reply(&REPLY[..40], CAPTURED_FAMILY).is_err());
        assert!(parse_reply(&[], CAPTURED_FAMILY).is_err());
    }

    /// Against the running kernel: a child's delays equal its schedstat.
    #[test]
    fn live_query_matches_schedstat() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            crate::test_support::skip_or_fail("taskstats needs CAP_NET_ADMIN");
            return;
        }
        /// Kills and reaps the child on drop, also when an assertion fails.
        struct Child(std::process::Child);
        impl Drop for Child {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut ts = Taskstats::open().expect("open taskstats");
        let child = Child(
            std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .expect("spawn sleep"),
        );
        let pid = child.0.id();
        std::thread::sleep(Duration::from_millis(200)); // asleep: values settle
        let schedstat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
        let d = ts.tgid(pid).expect("query");
        // The CPU part comes from the scheduler's own statistics, which
        // the kernel reports whether or not kernel.task_delayacct is on.
        let f: Vec<u64> = schedstat
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!((d.cpu_delay_ns, d.cpu_count), (f[1], f[2]), "{schedstat}");
        drop(child); // killed and reaped: the pid is gone
        assert!(matches!(ts.tgid(pid), Err(TaskstatsError::NoSuchProcess)));
        // The socket keeps working after an error reply.
        ts.tgid(std::process::id()).expect("query self");
    }
}
