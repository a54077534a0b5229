//! Every metric family netagent exports, declared once: name, kind,
//! unit, help and label names. Collectors build families from these
//! descriptors (so a family cannot be spelled two ways), the exporters
//! render them, and tests check the README's metric tables and the
//! dashboard's queries against [`ALL`].
//!
//! Names are base names: counters get `_total` on the wire, histograms
//! `_bucket`/`_sum`/`_count`. Label names are in render order; every series
//! of a family carries exactly these labels (checked when a series is added
//! in debug builds).
//!
//! Longer than ~600 lines because it is a table: one entry per family,
//! seven lines each, kept in one place on purpose.

use super::Kind;

/// One metric family's description.
#[derive(Debug, PartialEq, Eq)]
pub struct Desc {
    /// Base name (without `_total` for counters).
    pub name: &'static str,
    pub kind: Kind,
    /// Unit of the values (`seconds`, `bytes`), empty when none; the name
    /// ends with it.
    pub unit: &'static str,
    pub help: &'static str,
    /// Label names, in render order.
    pub labels: &'static [&'static str],
}

impl Desc {
    /// The name a scrape shows for the family's samples (`_total` for
    /// counters).
    pub fn exposed_name(&self) -> String {
        match self.kind {
            Kind::Counter => format!("{}_total", self.name),
            _ => self.name.to_string(),
        }
    }
}

// ---- Connections per process (MNA-compatible)

pub const CONNECT: Desc = Desc {
    name: "netagent_connect",
    kind: Kind::Counter,
    unit: "",
    help: "TCP connect attempts and UDP datagrams sent, per process and destination port.",
    labels: &["process", "proto", "dport"],
};

pub const EDGE: Desc = Desc {
    name: "netagent_edge",
    kind: Kind::Counter,
    unit: "",
    help:
        "TCP connect attempts and UDP datagrams sent, per process and destination address and port; dst_name is the name the process resolved to dst_ip.",
    labels: &[
        "process",
        "proto",
        "dport",
        "dst_ip",
        "actual_dst_ip",
        "actual_dport",
        "dst_name",
    ],
};

pub const TX_DURATION_SECONDS: Desc = Desc {
    name: "netagent_tx_duration_seconds",
    kind: Kind::Histogram,
    unit: "seconds",
    help: "Time on one socket from a send to the first receive after it (request to response), for sockets the process opened.",
    labels: &[
        "process",
        "proto",
        "dport",
        "dst_ip",
        "actual_dst_ip",
        "actual_dport",
        "dst_name",
    ],
};

// ---- Connection lifecycle and TCP health

pub const TCP_LISTEN_INFO: Desc = Desc {
    name: "netagent_tcp_listen_info",
    kind: Kind::Gauge,
    unit: "",
    help: "A listening TCP socket of a tracked process; the value is always 1.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "listen_addr",
        "port",
    ],
};

pub const TCP_CONNECTIONS_ACTIVE: Desc = Desc {
    name: "netagent_tcp_connections_active",
    kind: Kind::Gauge,
    unit: "",
    help: "TCP connections currently established (opened while the agent ran or found open at its start, not yet closed).",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "direction",
    ],
};

pub const TCP_CONNECTIONS_IDLE: Desc = Desc {
    name: "netagent_tcp_connections_idle",
    kind: Kind::Gauge,
    unit: "",
    help: "Established TCP connections that carried no payload either way for at least tcp.idle_after_seconds.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "direction",
    ],
};

pub const TCP_CONNECTIONS_OPENED: Desc = Desc {
    name: "netagent_tcp_connections_opened",
    kind: Kind::Counter,
    unit: "",
    help: "TCP connections that reached ESTABLISHED.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "direction",
    ],
};

pub const TCP_CONNECTIONS_SEEDED: Desc = Desc {
    name: "netagent_tcp_connections_seeded",
    kind: Kind::Counter,
    unit: "",
    help: "TCP connections found already established when the agent started: counted in active and, once they close, in closed, but not in opened; their lifetime is unknown.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "direction",
    ],
};

pub const TCP_CONNECTIONS_CLOSED: Desc = Desc {
    name: "netagent_tcp_connections_closed",
    kind: Kind::Counter,
    unit: "",
    help: "Established TCP connections that closed (seeded ones included).",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "direction",
    ],
};

pub const TCP_CONNECTIONS_ACCEPTED: Desc = Desc {
    name: "netagent_tcp_connections_accepted",
    kind: Kind::Counter,
    unit: "",
    help: "Inbound TCP connections accepted, per listening process and port.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "port",
    ],
};

pub const TCP_CONNECT_FAILED: Desc = Desc {
    name: "netagent_tcp_connect_failed",
    kind: Kind::Counter,
    unit: "",
    help: "Outbound TCP connects that failed, by reason (refused, timeout, unreachable, reset, other).",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "dport",
        "dst_ip",
        "actual_dst_ip",
        "actual_dport",
        "reason",
    ],
};

pub const TCP_RESETS: Desc = Desc {
    name: "netagent_tcp_resets",
    kind: Kind::Counter,
    unit: "",
    help: "TCP resets sent and received on tracked connections, by the kernel's reason (unknown where it gives none).",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "direction",
        "reason",
    ],
};

pub const TCP_RETRANSMITS: Desc = Desc {
    name: "netagent_tcp_retransmits",
    kind: Kind::Counter,
    unit: "",
    help: "TCP segments retransmitted.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "dport",
        "dst_ip",
    ],
};

pub const TCP_RTT_SECONDS: Desc = Desc {
    name: "netagent_tcp_rtt_seconds",
    kind: Kind::Histogram,
    unit: "seconds",
    help: "Smoothed TCP round-trip time, sampled at close and every 10 s of a connection's reads.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "dport",
        "dst_ip",
    ],
};

pub const TCP_CONNECT_DURATION_SECONDS: Desc = Desc {
    name: "netagent_tcp_connect_duration_seconds",
    kind: Kind::Histogram,
    unit: "seconds",
    help: "TCP handshake time: SYN sent to connection established.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "dport",
        "dst_ip",
        "actual_dst_ip",
        "actual_dport",
    ],
};

pub const CONNECTION_DURATION_SECONDS: Desc = Desc {
    name: "netagent_connection_duration_seconds",
    kind: Kind::Histogram,
    unit: "seconds",
    help: "TCP connection lifetime: established to closed.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "direction",
    ],
};

pub const BYTES_SENT: Desc = Desc {
    name: "netagent_bytes_sent",
    kind: Kind::Counter,
    unit: "",
    help: "Payload bytes sent (TCP and UDP), per process, peer and direction.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "proto",
        "dport",
        "dst_ip",
        "actual_dst_ip",
        "actual_dport",
        "direction",
        "dst_name",
    ],
};

pub const BYTES_RECEIVED: Desc = Desc {
    name: "netagent_bytes_received",
    kind: Kind::Counter,
    unit: "",
    help: "Payload bytes received (TCP and UDP), per process, peer and direction.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "proto",
        "dport",
        "dst_ip",
        "actual_dst_ip",
        "actual_dport",
        "direction",
        "dst_name",
    ],
};

// ---- DNS

pub const DNS_REQUESTS: Desc = Desc {
    name: "netagent_dns_requests",
    kind: Kind::Counter,
    unit: "",
    help: "DNS queries sent, by process, container, server, query type and the answer's rcode (NOERROR, NXDOMAIN, SERVFAIL, ...), or timeout when no answer came within dns.timeout_seconds; domain is the queried name with dns.domain_label, else empty.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "server",
        "qtype",
        "rcode",
        "domain",
    ],
};

pub const DNS_REQUEST_DURATION_SECONDS: Desc = Desc {
    name: "netagent_dns_request_duration_seconds",
    kind: Kind::Histogram,
    unit: "seconds",
    help: "Time from a DNS query leaving its socket to its answer reaching it (kernel timestamps); timeouts are not observed.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "qtype",
        "domain",
    ],
};

pub const DNS_MALFORMED: Desc = Desc {
    name: "netagent_dns_malformed",
    kind: Kind::Counter,
    unit: "",
    help: "DNS messages that could not be read, by reason: short (no complete header), question (the question does not parse), answers (an answer does not parse, or lies beyond the bytes the kernel copies).",
    labels: &["reason"],
};

pub const DNS_UNMATCHED_ANSWERS: Desc = Desc {
    name: "netagent_dns_unmatched_answers",
    kind: Kind::Counter,
    unit: "",
    help: "DNS answers with no waiting query of the same id, addresses, socket and question (late after a timeout, duplicated, or not an answer to this socket).",
    labels: &[],
};

pub const DNS_TABLE_FULL: Desc = Desc {
    name: "netagent_dns_table_full",
    kind: Kind::Counter,
    unit: "",
    help: "DNS entries not kept because their table was full: pending (queries waiting for an answer, dns.max_pending), names (dst_name entries, dns.max_names), series (request and duration series, limits.max_series).",
    labels: &["table"],
};

// ---- Interfaces

pub const INTERFACE_PACKETS: Desc = Desc {
    name: "netagent_interface_packets",
    kind: Kind::Counter,
    unit: "",
    help: "Packets seen by TC on the interface, by direction (ingress, egress).",
    labels: &["interface", "ifindex", "direction"],
};

pub const INTERFACE_BYTES: Desc = Desc {
    name: "netagent_interface_bytes",
    kind: Kind::Counter,
    unit: "bytes",
    help: "Bytes seen by TC on the interface (whole frames, L2 header included), by direction.",
    labels: &["interface", "ifindex", "direction"],
};

pub const INTERFACE_PACKETS_PER_SECOND: Desc = Desc {
    name: "netagent_interface_packets_per_second",
    kind: Kind::Gauge,
    unit: "",
    help: "Packet rate over the last collection interval.",
    labels: &["interface", "ifindex", "direction"],
};

pub const INTERFACE_BYTES_PER_SECOND: Desc = Desc {
    name: "netagent_interface_bytes_per_second",
    kind: Kind::Gauge,
    unit: "",
    help: "Byte rate over the last collection interval.",
    labels: &["interface", "ifindex", "direction"],
};

pub const INTERFACE_ACTIVE: Desc = Desc {
    name: "netagent_interface_active",
    kind: Kind::Gauge,
    unit: "",
    help: "1 if the interface carried traffic during the last collection interval.",
    labels: &["interface", "ifindex"],
};

// ---- BPF self-metrics

pub const BPF_PROGRAMS: Desc = Desc {
    name: "netagent_bpf_programs",
    kind: Kind::Gauge,
    unit: "",
    help: "BPF programs loaded on the host (matching bpf_self.name_prefix).",
    labels: &[],
};

pub const BPF_MAPS: Desc = Desc {
    name: "netagent_bpf_maps",
    kind: Kind::Gauge,
    unit: "",
    help: "BPF maps on the host (matching bpf_self.name_prefix).",
    labels: &[],
};

pub const BPF_PROGRAMS_MEMORY_BYTES: Desc = Desc {
    name: "netagent_bpf_programs_memory_bytes",
    kind: Kind::Gauge,
    unit: "bytes",
    help: "Kernel memory locked by those BPF programs (sum of memlock).",
    labels: &[],
};

pub const BPF_MAPS_MEMORY_BYTES: Desc = Desc {
    name: "netagent_bpf_maps_memory_bytes",
    kind: Kind::Gauge,
    unit: "bytes",
    help: "Kernel memory locked by those BPF maps (sum of memlock).",
    labels: &[],
};

pub const BPF_PROGRAM_MEMORY_BYTES: Desc = Desc {
    name: "netagent_bpf_program_memory_bytes",
    kind: Kind::Gauge,
    unit: "bytes",
    help: "Kernel memory locked by one BPF program (memlock).",
    labels: &["id", "name", "type"],
};

pub const BPF_PROGRAM_RUN_SECONDS: Desc = Desc {
    name: "netagent_bpf_program_run_seconds",
    kind: Kind::Counter,
    unit: "seconds",
    help: "Time spent running one BPF program; advances only while kernel.bpf_stats_enabled is on.",
    labels: &["id", "name", "type"],
};

pub const BPF_PROGRAM_RUNS: Desc = Desc {
    name: "netagent_bpf_program_runs",
    kind: Kind::Counter,
    unit: "",
    help: "Runs of one BPF program; advances only while kernel.bpf_stats_enabled is on.",
    labels: &["id", "name", "type"],
};

pub const BPF_MAP_MEMORY_BYTES: Desc = Desc {
    name: "netagent_bpf_map_memory_bytes",
    kind: Kind::Gauge,
    unit: "bytes",
    help: "Kernel memory locked by one BPF map (memlock).",
    labels: &[
        "id",
        "name",
        "type",
        "key_size",
        "value_size",
        "max_entries",
    ],
};

pub const BPF_COLLECTION_DURATION_SECONDS: Desc = Desc {
    name: "netagent_bpf_collection_duration_seconds",
    kind: Kind::Histogram,
    unit: "seconds",
    help: "Time taken by one walk over the host's BPF programs and maps.",
    labels: &[],
};

pub const BPF_COLLECTION_ERRORS: Desc = Desc {
    name: "netagent_bpf_collection_errors",
    kind: Kind::Counter,
    unit: "",
    help:
        "Failures while reading BPF programs and maps (objects unloaded mid-walk are not errors).",
    labels: &[],
};

// ---- Delay accounting

pub const CPU_DELAY_SECONDS: Desc = Desc {
    name: "netagent_cpu_delay_seconds",
    kind: Kind::Counter,
    unit: "seconds",
    help: "Time processes were runnable but waited for a CPU (taskstats cpu_delay_total).",
    labels: &["process", "container", "container_id", "pod", "namespace"],
};

pub const DISK_DELAY_SECONDS: Desc = Desc {
    name: "netagent_disk_delay_seconds",
    kind: Kind::Counter,
    unit: "seconds",
    help: "Time processes waited for synchronous block I/O (taskstats blkio_delay_total).",
    labels: &["process", "container", "container_id", "pod", "namespace"],
};

pub const DELAY_ACCOUNTING_ENABLED: Desc = Desc {
    name: "netagent_delay_accounting_enabled",
    kind: Kind::Gauge,
    unit: "",
    help: "1 while kernel.task_delayacct is on; while 0 disk delays do not grow.",
    labels: &[],
};

pub const DELAY_ACCOUNTING_PROCESSES: Desc = Desc {
    name: "netagent_delay_accounting_processes",
    kind: Kind::Gauge,
    unit: "",
    help: "Processes whose delays were read in the last collection.",
    labels: &[],
};

pub const DELAY_ACCOUNTING_SKIPPED: Desc = Desc {
    name: "netagent_delay_accounting_skipped",
    kind: Kind::Counter,
    unit: "",
    help: "Process reads that did not happen: over delay_accounting.max_processes, or the query failed.",
    labels: &["reason"],
};

// ---- OOM kills

pub const OOM_KILLS: Desc = Desc {
    name: "netagent_oom_kills",
    kind: Kind::Counter,
    unit: "",
    help: "Processes killed by the kernel's OOM killer, by victim process and container.",
    labels: &["process", "container", "container_id", "pod", "namespace"],
};

// ---- Packet drops

pub const PACKET_DROPS: Desc = Desc {
    name: "netagent_packet_drops",
    kind: Kind::Counter,
    unit: "",
    help: "Packets the kernel dropped, by its drop reason (enum skb_drop_reason, lower case), the process and container owning the packet's socket (empty when none), interface and protocol.",
    labels: &[
        "process",
        "container",
        "container_id",
        "pod",
        "namespace",
        "interface",
        "proto",
        "reason",
    ],
};

// ---- Containers

pub const CONTAINER_INFO: Desc = Desc {
    name: "netagent_container_info",
    kind: Kind::Gauge,
    unit: "",
    help: "A container netagent attributed something to, while its cgroup exists; the value is always 1.",
    labels: &[
        "container_id",
        "container",
        "pod",
        "namespace",
        "image",
        "runtime",
    ],
};

pub const CONTAINER_CACHE_ENTRIES: Desc = Desc {
    name: "netagent_container_cache_entries",
    kind: Kind::Gauge,
    unit: "",
    help: "Entries of the cgroup-to-container cache: cgroups (host ones too) and containers.",
    labels: &["kind"],
};

pub const CONTAINER_METADATA_READS: Desc = Desc {
    name: "netagent_container_metadata_reads",
    kind: Kind::Counter,
    unit: "",
    help: "Reads of a container runtime's state for a container's name, by runtime and result (found, missing, error).",
    labels: &["runtime", "result"],
};

// ---- Log patterns

pub const LOG_MESSAGES: Desc = Desc {
    name: "netagent_log_messages",
    kind: Kind::Counter,
    unit: "",
    help: "Log messages by source, container, level and pattern; sample is the first message of the pattern.",
    labels: &["source", "container", "level", "pattern_hash", "sample"],
};

pub const LOG_PATTERN_INFO: Desc = Desc {
    name: "netagent_log_pattern_info",
    kind: Kind::Gauge,
    unit: "",
    help: "1 for each log pattern that counted messages: template is the pattern with <*> for its variables (cut at sample_max_bytes), to join with netagent_log_messages_total on source, container, level and pattern_hash.",
    labels: &["source", "container", "level", "pattern_hash", "template"],
};

pub const LOG_PATTERNS_DROPPED: Desc = Desc {
    name: "netagent_log_patterns_dropped",
    kind: Kind::Counter,
    unit: "",
    help: "Log messages that needed a new pattern beyond max_patterns_per_source or max_patterns; they are counted under pattern_hash=\"~other\".",
    labels: &["source", "container", "level"],
};

pub const LOG_LINES_MALFORMED: Desc = Desc {
    name: "netagent_log_lines_malformed",
    kind: Kind::Counter,
    unit: "",
    help: "Log lines not valid in their file's format (Docker JSON, CRI) or journal entries without a usable MESSAGE; counted as plain text.",
    labels: &["source", "container"],
};

pub const LOG_LINES_TRUNCATED: Desc = Desc {
    name: "netagent_log_lines_truncated",
    kind: Kind::Counter,
    unit: "",
    help: "Log messages longer than logs.max_line_bytes, counted from their first max_line_bytes.",
    labels: &["source", "container"],
};

pub const LOG_FILES: Desc = Desc {
    name: "netagent_log_files",
    kind: Kind::Gauge,
    unit: "",
    help: "Log files being read: live at their path, or rotated away and drained until quiet for rotate_wait_seconds.",
    labels: &["state"],
};

pub const LOG_FILES_SKIPPED: Desc = Desc {
    name: "netagent_log_files_skipped",
    kind: Kind::Gauge,
    unit: "",
    help:
        "Files matching logs.paths that are not read because logs.max_files are open (last scan).",
    labels: &[],
};

pub const LOG_JOURNALD_UP: Desc = Desc {
    name: "netagent_log_journald_up",
    kind: Kind::Gauge,
    unit: "",
    help: "1 while journalctl is being followed.",
    labels: &[],
};

pub const LOG_ERRORS: Desc = Desc {
    name: "netagent_log_errors",
    kind: Kind::Counter,
    unit: "",
    help: "Failures of the log collector: file (open, stat, read), state (saving offsets), journald (journalctl failed to start or exited).",
    labels: &["op"],
};

// ---- Cloud instance metadata

pub const CLOUD_DETECTION_INFO: Desc = Desc {
    name: "netagent_cloud_detection_info",
    kind: Kind::Gauge,
    unit: "",
    help: "Which cloud metadata service the agent asks (provider=\"none\": nobody) and what decided it: source=\"dmi\" (the machine's DMI identity) or \"config\" (cloud.provider); always 1.",
    labels: &["provider", "source"],
};

pub const CLOUD_INFO: Desc = Desc {
    name: "netagent_cloud_info",
    kind: Kind::Gauge,
    unit: "",
    help: "Cloud instance the agent runs on, from the provider's metadata service; always 1, absent when no metadata service answered.",
    labels: &["provider", "account_id", "instance_id", "instance_type", "region", "availability_zone", "availability_zone_id", "lifecycle", "private_ip", "public_ip"],
};

pub const CLOUD_PROBES: Desc = Desc {
    name: "netagent_cloud_probes",
    kind: Kind::Counter,
    unit: "",
    help: "Cloud metadata detection rounds, by result.",
    labels: &["result"],
};

pub const CLOUD_PROBE_DURATION_SECONDS: Desc = Desc {
    name: "netagent_cloud_probe_duration_seconds",
    kind: Kind::Gauge,
    unit: "seconds",
    help: "Time the last cloud metadata detection round took (all providers concurrently).",
    labels: &[],
};

// ---- Exporters

pub const OTLP_SPANS_DROPPED: Desc = Desc {
    name: "netagent_otlp_spans_dropped",
    kind: Kind::Counter,
    unit: "",
    help: "Spans not exported, by reason: queue_full (collector slow or down), rate_limit (otel.max_spans_per_second), export_failed (gave up after retries), decode_error (bad kernel record).",
    labels: &["reason"],
};

pub const OTLP_SPANS_EXPORTED: Desc = Desc {
    name: "netagent_otlp_spans_exported",
    kind: Kind::Counter,
    unit: "",
    help: "Spans accepted by the OTLP collector.",
    labels: &[],
};

pub const OTLP_EXPORT_ERRORS: Desc = Desc {
    name: "netagent_otlp_export_errors",
    kind: Kind::Counter,
    unit: "",
    help: "Failed OTLP export requests (spans and metrics).",
    labels: &[],
};

pub const STATSD_DROPPED: Desc = Desc {
    name: "netagent_statsd_dropped",
    kind: Kind::Counter,
    unit: "",
    help: "Span durations not sent to DogStatsD, by reason: span_buffer_full (more spans arrived within one statsd.interval_seconds than the buffer holds), sampled (dropped in the kernel over statsd.max_spans_per_second). Either way the lines sent carry the sample rate that stands for them.",
    labels: &["reason"],
};

pub const STATSD_SEND_ERRORS: Desc = Desc {
    name: "netagent_statsd_send_errors",
    kind: Kind::Counter,
    unit: "",
    help: "DogStatsD lines that could not be sent.",
    labels: &[],
};

// ---- The agent itself

pub const SERIES_DROPPED: Desc = Desc {
    name: "netagent_series_dropped",
    kind: Kind::Counter,
    unit: "",
    help: "Series folded into the `~other` series because their metric reached its series cap.",
    labels: &["metric"],
};

pub const SERIES_EXPIRED: Desc = Desc {
    name: "netagent_series_expired",
    kind: Kind::Counter,
    unit: "",
    help: "Series freed because they did not change for limits.series_ttl_seconds and their process, container and sockets are gone.",
    labels: &["family"],
};

pub const BUILD_INFO: Desc = Desc {
    name: "netagent_build_info",
    kind: Kind::Gauge,
    unit: "",
    help: "Build information of the running agent; the value is always 1.",
    labels: &["version", "rustc"],
};

pub const EVENTS_LOST: Desc = Desc {
    name: "netagent_events_lost",
    kind: Kind::Counter,
    unit: "",
    help:
        "Kernel events that could not be counted, by reason (map full, storage allocation failed).",
    labels: &["reason"],
};

pub const PROBE_UP: Desc = Desc {
    name: "netagent_probe_up",
    kind: Kind::Gauge,
    unit: "",
    help: "1 while the kernel program behind a probe is attached; a feature with no working hook shows its preferred probes at 0.",
    labels: &["feature", "probe"],
};

pub const PROBE_INFO: Desc = Desc {
    name: "netagent_probe_info",
    kind: Kind::Gauge,
    unit: "",
    help: "The kernel hook serving each feature (hook=\"none\": unavailable).",
    labels: &["feature", "hook"],
};

pub const PROCESS_RESIDENT_MEMORY_BYTES: Desc = Desc {
    name: "process_resident_memory_bytes",
    kind: Kind::Gauge,
    unit: "bytes",
    help: "Resident memory size in bytes.",
    labels: &[],
};

pub const PROCESS_VIRTUAL_MEMORY_BYTES: Desc = Desc {
    name: "process_virtual_memory_bytes",
    kind: Kind::Gauge,
    unit: "bytes",
    help: "Virtual memory size in bytes.",
    labels: &[],
};

pub const PROCESS_START_TIME_SECONDS: Desc = Desc {
    name: "process_start_time_seconds",
    kind: Kind::Gauge,
    unit: "seconds",
    help: "Start time of the process since unix epoch in seconds.",
    labels: &[],
};

pub const PROCESS_CPU_SECONDS: Desc = Desc {
    name: "process_cpu_seconds",
    kind: Kind::Counter,
    unit: "seconds",
    help: "Total user and system CPU time spent in seconds.",
    labels: &[],
};

pub const PROCESS_OPEN_FDS: Desc = Desc {
    name: "process_open_fds",
    kind: Kind::Gauge,
    unit: "",
    help: "Number of open file descriptors.",
    labels: &[],
};

pub const PROCESS_MAX_FDS: Desc = Desc {
    name: "process_max_fds",
    kind: Kind::Gauge,
    unit: "",
    help: "Maximum number of open file descriptors.",
    labels: &[],
};

/// Every family, in the order of the README's metric tables.
pub static ALL: &[&Desc] = &[
    &CONNECT,
    &EDGE,
    &TX_DURATION_SECONDS,
    &TCP_LISTEN_INFO,
    &TCP_CONNECTIONS_ACTIVE,
    &TCP_CONNECTIONS_IDLE,
    &TCP_CONNECTIONS_OPENED,
    &TCP_CONNECTIONS_SEEDED,
    &TCP_CONNECTIONS_CLOSED,
    &TCP_CONNECTIONS_ACCEPTED,
    &TCP_CONNECT_FAILED,
    &TCP_RESETS,
    &TCP_RETRANSMITS,
    &TCP_RTT_SECONDS,
    &TCP_CONNECT_DURATION_SECONDS,
    &CONNECTION_DURATION_SECONDS,
    &BYTES_SENT,
    &BYTES_RECEIVED,
    &DNS_REQUESTS,
    &DNS_REQUEST_DURATION_SECONDS,
    &DNS_MALFORMED,
    &DNS_UNMATCHED_ANSWERS,
    &DNS_TABLE_FULL,
    &INTERFACE_PACKETS,
    &INTERFACE_BYTES,
    &INTERFACE_PACKETS_PER_SECOND,
    &INTERFACE_BYTES_PER_SECOND,
    &INTERFACE_ACTIVE,
    &BPF_PROGRAMS,
    &BPF_MAPS,
    &BPF_PROGRAMS_MEMORY_BYTES,
    &BPF_MAPS_MEMORY_BYTES,
    &BPF_PROGRAM_MEMORY_BYTES,
    &BPF_PROGRAM_RUN_SECONDS,
    &BPF_PROGRAM_RUNS,
    &BPF_MAP_MEMORY_BYTES,
    &BPF_COLLECTION_DURATION_SECONDS,
    &BPF_COLLECTION_ERRORS,
    &CPU_DELAY_SECONDS,
    &DISK_DELAY_SECONDS,
    &DELAY_ACCOUNTING_ENABLED,
    &DELAY_ACCOUNTING_PROCESSES,
    &DELAY_ACCOUNTING_SKIPPED,
    &OOM_KILLS,
    &PACKET_DROPS,
    &CONTAINER_INFO,
    &CONTAINER_CACHE_ENTRIES,
    &CONTAINER_METADATA_READS,
    &LOG_MESSAGES,
    &LOG_PATTERN_INFO,
    &LOG_PATTERNS_DROPPED,
    &LOG_LINES_MALFORMED,
    &LOG_LINES_TRUNCATED,
    &LOG_FILES,
    &LOG_FILES_SKIPPED,
    &LOG_JOURNALD_UP,
    &LOG_ERRORS,
    &CLOUD_DETECTION_INFO,
    &CLOUD_INFO,
    &CLOUD_PROBES,
    &CLOUD_PROBE_DURATION_SECONDS,
    &OTLP_SPANS_DROPPED,
    &OTLP_SPANS_EXPORTED,
    &OTLP_EXPORT_ERRORS,
    &STATSD_DROPPED,
    &STATSD_SEND_ERRORS,
    &SERIES_DROPPED,
    &SERIES_EXPIRED,
    &BUILD_INFO,
    &EVENTS_LOST,
    &PROBE_UP,
    &PROBE_INFO,
    &PROCESS_RESIDENT_MEMORY_BYTES,
    &PROCESS_VIRTUAL_MEMORY_BYTES,
    &PROCESS_START_TIME_SECONDS,
    &PROCESS_CPU_SECONDS,
    &PROCESS_OPEN_FDS,
    &PROCESS_MAX_FDS,
];
