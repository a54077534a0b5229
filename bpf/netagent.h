/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every struct and constant shared between the BPF programs and the Rust
 * agent lives here, and only here. src/kernel/abi.rs mirrors it; a test
 * compares the two layouts against the BTF that clang emits for this file.
 */
#ifndef NETAGENT_H
#define NETAGENT_H

#define NA_COMM_LEN 16
/* Finite histogram bounds per histogram; one more bucket (index
 * NA_HIST_BOUNDS) is +Inf. The bound values are written by the agent at
 * load time (rodata `hist_bounds_ns`), so Rust is the single source of truth. */
#define NA_HIST_BOUNDS 16

/* Reasons an event was not counted (index into the `lost` per-CPU array). */
enum na_lost_reason {
	NA_LOST_FLOW_MAP_FULL = 0, /* `flows` full: a new series could not be created */
	NA_LOST_HIST_MAP_FULL = 1, /* `hists` full */
	NA_LOST_SOCK_STORAGE = 2,  /* socket state could not be created (`tcp_socks` full, or no memory) */
	NA_LOST_LISTENER_MAP_FULL = 3, /* `listeners` full: a listener is not attributed */
	NA_LOST_RINGBUF_FULL = 4,  /* `span_events` full: a span was not emitted */
	NA_LOST_NAT_UNMATCHED = 5, /* a NAT question went unanswered: its note was evicted, or two destinations shared one source */
	NA_LOST_REASONS = 6,
};

/* Who opened the connection, seen from the socket's owner. For UDP: the
 * direction of the first datagram seen on the socket. */
enum na_direction {
	NA_DIR_OUTBOUND = 0, /* connect()ed / sent first: a client */
	NA_DIR_INBOUND = 1,  /* accepted / received first: a server */
};

/* Why an outbound TCP connect failed (index into na_flow_stats.failed). */
enum na_fail_reason {
	NA_FAIL_REFUSED = 0,     /* RST in reply to the SYN (ECONNREFUSED) */
	NA_FAIL_TIMEOUT = 1,     /* no answer to the SYNs (ETIMEDOUT) */
	NA_FAIL_UNREACHABLE = 2, /* ICMP unreachable (EHOSTUNREACH, ENETUNREACH) */
	NA_FAIL_RESET = 3,       /* ECONNRESET */
	NA_FAIL_OTHER = 4,       /* closed by the caller, or any other error */
	NA_FAIL_REASONS = 5,
};

/* Which histogram a `hists` entry is. */
enum na_hist_kind {
	NA_HIST_TX = 0,            /* send -> first recv after it (outbound sockets) */
	NA_HIST_RTT = 1,           /* smoothed RTT, sampled at close and every 10 s */
	NA_HIST_CONNECT = 2,       /* SYN sent -> established */
	NA_HIST_CONN_DURATION = 3, /* established -> closed */
	NA_HIST_KINDS = 4,
};

/* Aggregation key of `flows` and `hists`. 64 bytes, no implicit padding
 * (hash keys are compared bytewise, so every byte must be written). */
struct na_flow_key {
	__u8 comm[NA_COMM_LEN]; /* owner of the socket (who connected / listened / sent) */
	__u8 daddr[16];         /* peer: IPv6, or IPv4 as ::ffff:a.b.c.d; network order */
	__u8 nat_daddr[16];     /* where the peer's address was translated to (DNAT); zero if not */
	__u64 cgroup_id;        /* owner's cgroup v2 id (container attribution) */
	__u16 dport;            /* server-side port: the peer's for outbound, ours for inbound */
	__u16 nat_dport;        /* the translated port; 0 when nothing was translated */
	__u8 proto;             /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 direction;         /* enum na_direction */
	__u8 hist;              /* enum na_hist_kind in `hists`; 0 in `flows` */
	__u8 _pad;
};

/* What is known of a socket's destination translation (NAT). */
enum na_nat_state {
	NA_NAT_UNKNOWN = 0, /* nothing seen yet */
	NA_NAT_PENDING = 1, /* left its namespace unchanged; another may still translate it */
	NA_NAT_DONE = 2,    /* settled: nat_daddr/nat_dport (translated), or not translated (0) */
};

/* Value of `flows`, per CPU: every counter of one key. */
struct na_flow_stats {
	__u64 connects;        /* TCP connect attempts; UDP datagrams sent */
	__u64 opened;          /* TCP connections established */
	__u64 closed;          /* established TCP connections closed */
	__u64 failed[NA_FAIL_REASONS];
	__u64 retransmits;
	__u64 resets_sent;
	__u64 resets_received;
	__u64 bytes_sent;
	__u64 bytes_received;
	__u64 seeded;          /* TCP connections found established when the agent started (seed.c) */
};

/* Value of `hists`, per CPU. */
struct na_hist {
	__u64 buckets[NA_HIST_BOUNDS + 1]; /* non-cumulative; last is +Inf */
	__u64 sum_ns;
};

/* Per-socket state (BPF_MAP_TYPE_SK_STORAGE): freed with the socket, so
 * nothing leaks. Remembers the owner, so events in softirq context are
 * never attributed to whatever task happens to be current. */
struct na_sock_state {
	__u8 comm[NA_COMM_LEN];
	__u8 daddr[16];        /* peer of the last connect / send / receive */
	__u8 pending_addr[16]; /* explicit sendto()/recvfrom() peer, from cgroup hooks */
	__u8 nat_orig[16];     /* the destination the NAT state is about */
	__u8 nat_daddr[16];    /* where it was translated to (NA_NAT_DONE, nat_dport != 0) */
	__u8 nat_saddr[16];    /* NA_NAT_PENDING: the packet's source, the `nat_flows` key */
	__u64 cgroup_id;
	__u64 send_ts;  /* outbound: ktime of the first send since the last recv; 0 = none */
	__u64 recv_ts;  /* inbound: ktime of the first recv since the last send; 0 = none */
	__u64 syn_ts;   /* ktime of SYN_SENT; 0 once established or failed */
	__u64 open_ts;  /* ktime of ESTABLISHED; 0 = unknown (seeded at start, seed.c) */
	__u64 rtt_ts;   /* ktime of the last RTT sample */
	__u64 data_ts;  /* TCP: ktime of the last payload sent or received, or of ESTABLISHED */
	__u32 pid;        /* owner's process id (tgid) */
	__u16 dport;
	__u16 pending_port;
	__u16 peer_port;  /* the peer's port (TCP), or that of the last message (UDP) */
	__u16 nat_orig_port;
	__u16 nat_dport;  /* 0: not translated */
	__u16 nat_sport;  /* NA_NAT_PENDING: the packet's source port */
	__u8 proto;
	__u8 has_pending; /* pending_addr/pending_port are valid */
	__u8 direction;   /* enum na_direction */
	__u8 open;        /* counted in `opened`, not yet in `closed` */
	__u8 nat_state;   /* enum na_nat_state */
	__u8 closing;     /* TCP: left ESTABLISHED (a FIN was sent or received) */
	__u8 _pad[2];
	/* References (1 + slot, and the slot's generation: series.h) to the
	 * socket's series in `flow_counters`, and per histogram kind in
	 * `hist_counters`; 0 = not looked up yet. Cleared whenever a field of
	 * the series key changes. */
	__u32 flow_slot;
	__u32 hist_slot[NA_HIST_KINDS];
	__u32 _pad2;
};

/* `listeners` key: a listening TCP port in one network namespace. */
struct na_listen_key {
	__u32 netns; /* inode number of the network namespace */
	__u16 port;  /* host order */
	__u16 _pad;
};

/* `listeners` value: the listening socket's owner and address. */
struct na_listener {
	__u8 comm[NA_COMM_LEN];
	__u8 addr[16]; /* IPv6, or IPv4 mapped; :: for a wildcard listener */
	__u64 cgroup_id;
	__u32 pid;
	__u32 _pad;
};

/* What the seeding iterator (seed.c) did with one socket: one __u32
 * record each, read by the agent from the iterator's file. */
enum na_seed_result {
	NA_SEED_OPEN = 0,     /* an open connection, seeded (counted in `seeded`) */
	NA_SEED_LISTENER = 1, /* a listener, seeded into `listeners` */
	NA_SEED_KNOWN = 2,    /* already tracked: the live hooks saw it first */
	NA_SEED_FAILED = 3,   /* no room in `tcp_socks` (counted as lost) */
	NA_SEED_RESULTS = 4,
};

/* `span_events` ring buffer record: one request/response interval. Only
 * emitted when the agent exports spans. */
struct na_span_event {
	__u64 start_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u64 end_ns;
	__u64 cgroup_id;
	__u64 sock_cookie; /* kernel socket cookie; hashed before any export */
	__u8 comm[NA_COMM_LEN];
	__u8 laddr[16]; /* local address (IPv4 mapped into IPv6) */
	__u8 raddr[16]; /* peer address */
	__u8 nat_raddr[16]; /* where the peer address was translated to; zero if not */
	__u32 pid;
	__u16 lport;
	__u16 rport;
	__u16 nat_rport; /* the translated peer port; 0 when nothing was translated */
	__u8 proto;
	__u8 direction; /* enum na_direction: outbound = client span */
	__u8 _pad[4];
};

/* ---- reset reasons (tcp_health.c) ---- */

/* The reason of a reset the kernel did not give one for (a tracepoint
 * without it, before Linux 6.10). Otherwise an `enum sk_rst_reason` value
 * of the running kernel, named by the agent from the kernel's BTF. */
#define NA_RST_REASON_UNKNOWN 0xffffffffU

/* `reset_reasons` key: resets sent by one owner for one reason (the value,
 * a __u64, counts them). 32 bytes, no implicit padding. */
struct na_reset_key {
	__u8 comm[NA_COMM_LEN];
	__u64 cgroup_id;
	__u32 reason; /* enum sk_rst_reason, or NA_RST_REASON_UNKNOWN */
	__u32 _pad;
};

/* ---- packet drops (netagent/drops.c) ---- */

/* Drops that could not be counted (index into `drop_lost`). */
enum na_drop_lost_reason {
	NA_DROP_LOST_MAP_FULL = 0, /* `drops` full: a new key did not fit */
	NA_DROP_LOST_REASONS = 1,
};

/* `reason` of a drop on a kernel whose skb:kfree_skb has no reason
 * (before 5.17): no value of enum skb_drop_reason is this. */
#define NA_DROP_REASON_UNKNOWN 0xffffffffu

/* Reasons the agent leaves out (`drop_ignore`, drops.ignore_reasons), at
 * most this many; unused slots hold NA_DROP_REASON_UNKNOWN. */
#define NA_DROP_IGNORE_MAX 8

/* `drops` key: 48 bytes, no implicit padding (hash keys are compared
 * bytewise). The owner is that of the socket the packet belonged to, never
 * the task that happened to free it; all zero when there is none or its
 * owner is not known. */
struct na_drop_key {
	__u8 comm[NA_COMM_LEN];
	__u8 ifname[16]; /* the device's name (IFNAMSIZ), read in the kernel: ifindexes are per network namespace */
	__u64 cgroup_id;
	__u32 reason;    /* the running kernel's enum skb_drop_reason value, or NA_DROP_REASON_UNKNOWN */
	__u8 proto;      /* IP protocol number; 0 when not known */
	__u8 _pad[3];
};

/* ---- per-interface traffic (iface.bpf.c) ---- */

enum na_iface_direction {
	NA_IFACE_INGRESS = 0,
	NA_IFACE_EGRESS = 1,
};

/* `iface_stats` key. */
struct na_iface_key {
	__u32 ifindex;
	__u32 direction; /* enum na_iface_direction */
};

/* `iface_direct` entries: NA_IFACE_DIRECT of them, an interface at
 * ifindex % NA_IFACE_DIRECT when that entry is free. */
#define NA_IFACE_DIRECT 4096

/* `iface_direct` value: the attached interface there and its counter slot
 * (in `iface_counters`: ingress at 2 * slot, egress after it); ifindex 0
 * (no device has it): free. */
struct na_iface_slot {
	__u32 ifindex;
	__u32 slot;
};

/* `iface_stats` and `iface_counters` value, per CPU. */
struct na_iface_counters {
	__u64 packets;
	__u64 bytes; /* skb->len: the whole frame as TC sees it, L2 header included */
};

/* ---- node signals: OOM kills (node.bpf.c) ---- */

/* Reasons an OOM kill was not counted (index into `node_lost`). */
enum na_node_lost_reason {
	NA_NODE_LOST_OOM_MAP_FULL = 0,  /* `oom_kills` full: a new (comm, cgroup) key did not fit */
	NA_NODE_LOST_OOM_UNKNOWN = 1,   /* old (int pid) tracepoint and the victim was not current */
	NA_NODE_LOST_REASONS = 2,
};

/* `oom_kills` key: the victim's comm and cgroup v2 id. 24 bytes, no padding. */
struct na_oom_key {
	__u8 comm[NA_COMM_LEN];
	__u64 cgroup_id;
};

/* `oom_seen` key: one process (thread group), so a victim whose threads
 * are marked one after the other is counted once. */
struct na_oom_proc {
	__u32 tgid;
	__u32 _pad;
	__u64 start_ns; /* the group leader's start_time: pids are reused, this pair is not */
};

/* ---- DNS (netagent/dns.h, dns.c) ---- */

/* Bytes of a DNS message copied to the agent (header, question and the
 * first answers); the message's own length is sent too. */
#define NA_DNS_CAPTURE 512
/* Server ports that make a socket a DNS client (load-time `dns_ports`). */
#define NA_DNS_PORTS 8

/* Reasons a DNS message was not seen (index into the `dns_lost` per-CPU
 * array), exported as netagent_events_lost_total{reason="dns_..."}. */
enum na_dns_lost_reason {
	NA_DNS_LOST_RINGBUF_FULL = 0, /* `dns_events` full: a message was not sent to the agent */
	NA_DNS_LOST_STORAGE = 1,      /* a DNS socket could not be marked (no memory) */
	NA_DNS_LOST_REASONS = 2,
};

/* Which way a DNS message went, seen from the socket. */
enum na_dns_direction {
	NA_DNS_EGRESS = 0,  /* sent by the socket's owner (a query) */
	NA_DNS_INGRESS = 1, /* received (an answer) */
};

/* `dns_socks` value (socket-local storage): a socket that connected or
 * sent to a DNS port, its owner at that moment (process context), and
 * where the next DNS message starts in each direction of a TCP stream. */
struct na_dns_owner {
	__u8 comm[NA_COMM_LEN];
	__u64 cgroup_id;
	__u32 pid;
	__u32 tcp_next[2];   /* by enum na_dns_direction: sequence number of the next message */
	__u16 tcp_body[2];   /* non-zero: the message at tcp_next has this length, its prefix was seen */
	__u8 tcp_synced[2];  /* tcp_next is valid */
	__u8 _pad[6];
};

/* `dns_events` ring buffer record: one DNS message of a marked socket. */
struct na_dns_event {
	__u64 ts_ns;       /* bpf_ktime_get_ns (CLOCK_MONOTONIC) when the packet passed */
	__u64 cgroup_id;   /* the socket owner's */
	__u64 sock_cookie; /* kernel socket cookie */
	__u8 comm[NA_COMM_LEN];
	__u8 laddr[16];    /* the socket's end (IPv4 mapped into IPv6) */
	__u8 raddr[16];    /* the DNS server's */
	__u32 pid;
	__u16 lport;
	__u16 rport;
	__u16 msg_len;     /* the DNS message's length: UDP payload, or TCP length prefix */
	__u16 cap_len;     /* bytes of it in data (at most NA_DNS_CAPTURE) */
	__u8 proto;        /* IPPROTO_UDP or IPPROTO_TCP */
	__u8 direction;    /* enum na_dns_direction */
	__u8 _pad[2];
	__u8 data[NA_DNS_CAPTURE];
};

#endif /* NETAGENT_H */
