/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every struct and constant shared between the BPF programs and the Rust
 * agent lives here, and only here. src/kernel/abi.rs mirrors it; a test
 * compares the two layouts against the BTF that clang emits for this file.
 */
#ifndef NETAGENT_H
#define NETAGENT_H

#define NA_COMM_LEN 16
/* Finite histogram bounds; one more bucket (index NA_HIST_BOUNDS) is +Inf.
 * The bound values themselves are written by the agent at load time
 * (rodata `hist_bounds_ns`), so Rust is the single source of truth. */
#define NA_HIST_BOUNDS 16

/* Reasons an event was not counted (index into the `lost` per-CPU array). */
enum na_lost_reason {
	NA_LOST_FLOW_MAP_FULL = 0, /* `flows` hash map full: a new series could not be created */
	NA_LOST_HIST_MAP_FULL = 1, /* `durations` hash map full */
	NA_LOST_SOCK_STORAGE = 2,  /* per-socket storage could not be allocated */
	NA_LOST_REASONS = 3,
};

/* Aggregation key of `flows` (connects / sends) and `durations`.
 * 36 bytes, no implicit padding (hash keys are compared bytewise). */
struct na_flow_key {
	__u8 comm[NA_COMM_LEN]; /* owner of the socket (who connected / sent) */
	__u8 daddr[16];         /* IPv6, or IPv4 as ::ffff:a.b.c.d; network order */
	__u16 dport;            /* host order */
	__u8 proto;             /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 _pad;
};

/* Value of `durations`: send->recv latency histogram, per CPU. */
struct na_hist {
	__u64 buckets[NA_HIST_BOUNDS + 1]; /* non-cumulative; last is +Inf */
	__u64 sum_ns;
};

/* Per-socket state (BPF_MAP_TYPE_SK_STORAGE): freed with the socket, so
 * nothing leaks when a socket closes. Remembers who owns the socket, so
 * events in softirq context are never attributed to the current task. */
struct na_sock_state {
	__u8 comm[NA_COMM_LEN];
	__u8 daddr[16];        /* destination of the last connect / send */
	__u8 pending_addr[16]; /* explicit sendto() destination, set by cgroup/sendmsg */
	__u64 send_ts;         /* ktime of the first send since the last recv; 0 = none */
	__u16 dport;
	__u16 pending_port;
	__u8 proto;
	__u8 has_pending; /* pending_addr/pending_port are valid */
	__u8 _pad[2];
};

#endif /* NETAGENT_H */
