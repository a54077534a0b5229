// SPDX-License-Identifier: GPL-2.0-only
/*
 * netagent kernel side: per-process TCP and UDP counters and histograms,
 * aggregated in kernel maps that the agent reads at scrape time.
 *
 * Hooks (stable tracepoints first; the loader picks one hook per feature):
 *   tp_btf/inet_sock_set_state  TCP lifecycle: connect, established, close, listen
 *   tp_btf/tcp_retransmit_skb   retransmits
 *   tp_btf/tcp_send_reset       resets sent
 *   tp_btf/tcp_receive_reset    resets received
 *   messages (bytes, UDP datagrams, send->recv), in order of preference:
 *     tp_btf/sock_send_length + sock_recv_length     (6.3+)
 *     fexit/inet{,6}_sendmsg + inet{,6}_recvmsg      (BTF trampolines)
 *     kprobe+kretprobe on the same functions
 *     tp_btf/sys_enter + sys_exit (read, write, send and recv calls on sockets)
 *   cgroup/sendmsg4, sendmsg6   peer of an unconnected UDP sendto()
 *   cgroup/recvmsg4, recvmsg6   peer of an unconnected UDP recvfrom()
 *
 * Per-socket state: TCP sockets of tracked processes live in `tcp_socks`,
 * keyed by the socket's address from connect / accept / listen to close
 * (every hook can reach it, typed or not). UDP sockets have no close event:
 * their state is socket-local storage, which dies with the socket; kprobes
 * and raw syscall hooks only see a socket address, which socket-local
 * storage cannot be reached from, so with those (msg_index = 1) UDP state
 * lives in the LRU `sock_index` instead.
 *
 * Attribution: the owner (comm, cgroup) is stored in the socket's state
 * when a target process connects, sends or receives first (process
 * context), or, for accepted connections, copied from the listener's owner.
 * Every later event — often in softirq context — uses that stored owner.
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/errno.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <asm/ptrace.h>

#include "vmlinux_min.h"
#include "netagent.h"

#define AF_INET6 10
#define SOCK_DGRAM 2
#define MSG_PEEK 2

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LAST_ACK 9
#define TCP_LISTEN 10

/* Long-lived connections get an RTT sample at most this often. */
#define RTT_SAMPLE_NS (10ULL * 1000 * 1000 * 1000)

char LICENSE[] SEC("license") = "GPL";

/* Set by the agent before load. */
const volatile __u8 track_all = 0;  /* 1: every process, labelled by comm */
const volatile __u8 emit_spans = 0; /* 1: send request/response spans to `span_events` */
const volatile __u32 netns_only = 0; /* non-zero: only sockets of this network namespace */
const volatile __u64 hist_bounds_ns[NA_HIST_KINDS][NA_HIST_BOUNDS] = {};
const volatile __u8 msg_index = 0; /* 1: message hooks are kprobes or syscalls (see top) */

/* comm -> 1 for processes we track when !track_all. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u8[NA_COMM_LEN]);
	__type(value, __u8);
} targets SEC(".maps");

/* Series: counters per owner and peer (`flows`), histograms per owner,
 * peer and kind (`hists`). Each index maps a key to a slot of its counter
 * array; a socket remembers its slots (na_sock_state), so after its first
 * event it reaches its counters by array index, not by hashing a 48-byte
 * key again (about 50 ns less a lookup here; docs/BENCHMARKS.md, "Kernel
 * hot path rework").
 * Slots come from a queue the agent fills with 0..max_entries-1 at load
 * (no atomic fetch-and-add needed, which older kernels lack) and are never
 * reused: series live as long as the agent. Everything is preallocated (the
 * agent sizes max_entries from config): run-time allocation can fail under
 * a burst of new series, and a failed insert is a lost event. Shared values
 * with atomic adds, not per-CPU ones, so the memory is the same on 2 or 200
 * CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct na_flow_key);
	__type(value, __u32);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct na_flow_stats);
} flow_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 16384);
	__type(value, __u32);
} flow_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct na_flow_key);
	__type(value, __u32);
} hists SEC(".maps");

/* By flow slot: its histogram slots, 1 + slot per kind (0 = not looked up
 * yet). A histogram's key is its flow's key plus the kind, so these never
 * change; a new connection of a known flow then finds its histograms
 * without hashing. Racing writers store the same value. */
struct na_flow_hists {
	__u32 slot[NA_HIST_KINDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct na_flow_hists);
} flow_hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct na_hist);
} hist_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 16384);
	__type(value, __u32);
} hist_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct na_sock_state);
} sock_state SEC(".maps");

/* TCP sockets of tracked processes, by address (the agent sizes it from
 * limits.max_sockets). A hash and not socket-local storage: creating
 * storage for every connection cost more than everything else the
 * lifecycle program does (153–227 against 67–83 ns a run over a
 * connection's state changes, measured side by side: docs/BENCHMARKS.md).
 * Entries are deleted at
 * TCP_CLOSE; an address reused after a close we missed is told apart by
 * the peer (same_socket). Not preallocated: memory follows live sockets. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct na_sock_state);
} tcp_socks SEC(".maps");

/* TCP sockets closed lately, by address: an aborting close (SO_LINGER 0,
 * unread data) moves the socket to TCP_CLOSE, which deletes its state,
 * and only then sends its reset. LRU: most closes send no reset. */
struct na_closed {
	__u32 flow_slot; /* as in na_sock_state */
	__u16 peer_port; /* as in na_sock_state, checked with has_peer */
	__u16 _pad;
	__u32 peer4;     /* the peer address's last 4 bytes */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct na_closed);
} just_closed SEC(".maps");

/* UDP state by socket address, for the untyped message hooks only
 * (msg_index). LRU: UDP sockets have no close event to delete on; the
 * agent sizes it to 1 entry when unused. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct na_sock_state);
} sock_index SEC(".maps");

/* Explicit UDP peer from the cgroup hooks, by task, for the untyped
 * message hooks (which cannot reach the socket-local storage). */
struct na_pending {
	__u8 addr[16];
	__u16 port;
	__u8 _pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct na_pending);
} task_pending SEC(".maps");

/* A message call in flight (entry seen, exit not yet), by task. */
struct na_msg_call {
	__u64 sk; /* socket address */
	__s32 flags;
	__u8 send;
	__u8 _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct na_msg_call);
} msg_calls SEC(".maps");

/* Listening ports of tracked processes, so accepted connections (created
 * in softirq context) can be attributed to the listener's owner. Filled
 * at listen() and, for listeners older than the agent, by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct na_listen_key);
	__type(value, struct na_listener);
} listeners SEC(".maps");

/* Never read: it puts the ring-buffer record's type into the object's BTF
 * (records are only built through pointers, which clang does not describe),
 * so the layout test can compare it with the Rust mirror. 96 bytes of rodata. */
const volatile struct na_span_event span_event_layout = {};

/* Request/response intervals for span export (only when emit_spans). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} span_events SEC(".maps");

/* Events that could not be counted, by enum na_lost_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NA_LOST_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* Counters in `flows` and `hists` are shared between CPUs. */
#define ADD(field, n) __sync_fetch_and_add(&(field), (n))

static __always_inline void count_lost(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&lost, &reason);

	if (v)
		*v += 1;
}

/* Is the current task one we track? Fills comm either way. The buffer is
 * zeroed first: older kernels (Debian 12's 6.1) copy the comm with
 * strscpy(), which leaves the bytes after the NUL as they were, so an
 * uninitialised stack buffer made the targets lookup (and the flow keys)
 * miss (found by the kernel matrix, tests/kernel_matrix.rs). */
static __always_inline bool current_is_target(__u8 comm[NA_COMM_LEN])
{
	__builtin_memset(comm, 0, NA_COMM_LEN);
	if (bpf_get_current_comm(comm, NA_COMM_LEN))
		return false;
	if (track_all)
		return true;
	return bpf_map_lookup_elem(&targets, comm) != NULL;
}

static __always_inline void v4_mapped(__u8 out[16], __be32 a)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, &a, 4);
}

/*
 * Socket field reads. `typed`: the pointer came from a BTF-typed hook and is
 * read directly; otherwise it is an address from a kprobe or syscall hook
 * and read with bpf_probe_read_kernel. Always a constant at the call site,
 * so each program keeps only one of the two.
 */
#define SK_READ(typed, sk, field) ((typed) ? (sk)->field : BPF_CORE_READ(sk, field))

/* The socket's peer address (IPv4 mapped into IPv6). */
static __always_inline void read_peer_addr(const struct sock *sk, __u8 daddr[16], bool typed)
{
	if (SK_READ(typed, sk, __sk_common.skc_family) == AF_INET6) {
		if (typed)
			__builtin_memcpy(daddr, &sk->__sk_common.skc_v6_daddr, 16);
		else
			BPF_CORE_READ_INTO(daddr, sk, __sk_common.skc_v6_daddr);
	} else {
		v4_mapped(daddr, SK_READ(typed, sk, __sk_common.skc_daddr));
	}
}

static __always_inline __u32 netns_of(const struct sock *sk, bool typed)
{
	if (typed)
		return sk->__sk_common.skc_net.net->ns.inum;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* With netns_only set, sockets of other network namespaces are ignored. */
static __always_inline bool netns_ok(const struct sock *sk, bool typed)
{
	return !netns_only || netns_of(sk, typed) == netns_only;
}

static __always_inline void read_local_addr(const struct sock *sk, __u8 addr[16], bool typed)
{
	if (SK_READ(typed, sk, __sk_common.skc_family) == AF_INET6) {
		if (typed)
			__builtin_memcpy(addr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
		else
			BPF_CORE_READ_INTO(addr, sk, __sk_common.skc_v6_rcv_saddr);
	} else {
		v4_mapped(addr, SK_READ(typed, sk, __sk_common.skc_rcv_saddr));
	}
}

/* The series key changes (a new owner or peer): its slots are looked up again. */
static __always_inline void forget_series(struct na_sock_state *st)
{
	st->flow_slot = 0;
	for (int i = 0; i < NA_HIST_KINDS; i++)
		st->hist_slot[i] = 0;
}

/* The last 4 bytes of a peer address (all of an IPv4 one, mapped). */
static __always_inline __u32 peer4_of(const __u8 addr[16])
{
	return *(const __u32 *)&addr[12];
}

/* Does the socket talk to this peer? A socket's address may have been
 * reused after a close we did not see: the peer's port and address tell
 * (not our port: the kernel releases it before the TCP_CLOSE event). */
static __always_inline bool has_peer(const struct sock *sk, __u16 port, __u32 peer4, bool typed)
{
	__u8 peer[16];

	if (bpf_ntohs(SK_READ(typed, sk, __sk_common.skc_dport)) != port)
		return false;
	read_peer_addr(sk, peer, typed);
	return peer4_of(peer) == peer4;
}

/* Is the TCP state `st` this socket's? */
static __always_inline bool same_socket(const struct sock *sk, const struct na_sock_state *st,
					bool typed)
{
	return has_peer(sk, st->peer_port, peer4_of(st->daddr), typed);
}

/* The state of a TCP socket of a tracked process, or NULL. */
static __always_inline struct na_sock_state *tcp_state(const struct sock *sk, bool typed)
{
	__u64 key = (__u64)sk;
	struct na_sock_state *st = bpf_map_lookup_elem(&tcp_socks, &key);

	if (st && !same_socket(sk, st, typed))
		return NULL;
	return st;
}

/* New per-socket state for the current (target) task, or for an accepted
 * connection (then the caller fills in the owner). */
static __always_inline struct na_sock_state *new_state(void *sk, __u8 proto)
{
	static const struct na_sock_state zero = {};
	struct na_sock_state *st;
	__u64 key = (__u64)sk;

	if (proto == IPPROTO_TCP) {
		if (bpf_map_update_elem(&tcp_socks, &key, &zero, BPF_ANY))
			st = NULL;
		else
			st = bpf_map_lookup_elem(&tcp_socks, &key);
	} else {
		/* Only called for sockets without storage: it comes zeroed. */
		st = bpf_sk_storage_get(&sock_state, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	}
	if (!st)
		count_lost(NA_LOST_SOCK_STORAGE);
	return st;
}

static __always_inline struct na_sock_state *
own_socket(void *sk, const __u8 comm[NA_COMM_LEN], __u8 proto, __u8 direction)
{
	struct na_sock_state *st = new_state(sk, proto);

	if (!st)
		return NULL;
	__builtin_memcpy(st->comm, comm, NA_COMM_LEN);
	st->cgroup_id = bpf_get_current_cgroup_id();
	st->pid = bpf_get_current_pid_tgid() >> 32;
	st->proto = proto;
	st->direction = direction;
	return st;
}

/* One request/response interval for the span exporter. */
static __always_inline void emit_span(struct sock *sk, const struct na_sock_state *st,
				      __u64 start, __u64 end, bool typed)
{
	struct na_span_event *e;

	if (!emit_spans)
		return;
	e = bpf_ringbuf_reserve(&span_events, sizeof(*e), 0);
	if (!e) {
		count_lost(NA_LOST_RINGBUF_FULL);
		return;
	}
	e->start_ns = start;
	e->end_ns = end;
	e->cgroup_id = st->cgroup_id;
	/* Untyped hooks cannot ask for the cookie; the address identifies the
	 * socket as well while it lives (the agent hashes either before use). */
	e->sock_cookie = typed ? bpf_get_socket_cookie(sk) : (__u64)sk;
	__builtin_memcpy(e->comm, st->comm, NA_COMM_LEN);
	read_local_addr(sk, e->laddr, typed);
	__builtin_memcpy(e->raddr, st->daddr, 16);
	e->pid = st->pid;
	e->lport = SK_READ(typed, sk, __sk_common.skc_num);
	e->rport = st->proto == IPPROTO_TCP ? bpf_ntohs(SK_READ(typed, sk, __sk_common.skc_dport))
					    : st->peer_port;
	e->proto = st->proto;
	e->direction = st->direction;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void flow_key(struct na_flow_key *k, const struct na_sock_state *st,
				     __u8 hist)
{
	__builtin_memcpy(k->comm, st->comm, NA_COMM_LEN);
	__builtin_memcpy(k->daddr, st->daddr, 16);
	k->cgroup_id = st->cgroup_id;
	k->dport = st->dport;
	k->proto = st->proto;
	k->direction = st->direction;
	k->hist = hist;
	k->_pad[0] = 0;
	k->_pad[1] = 0;
	k->_pad[2] = 0;
}

/* 1 + the slot of series `k` in an index, taking a free slot for a new
 * one; 0 when the index or its slots are exhausted (counted as `reason`). */
static __always_inline __u32 series_slot(void *index, void *free, const struct na_flow_key *k,
					 __u32 reason)
{
	__u32 *found = bpf_map_lookup_elem(index, k);
	__u32 slot;

	if (found)
		return *found + 1;
	if (bpf_map_pop_elem(free, &slot)) {
		count_lost(reason);
		return 0;
	}
	if (!bpf_map_update_elem(index, k, &slot, BPF_NOEXIST))
		return slot + 1;
	/* Another CPU inserted it meanwhile (-EEXIST): take its slot, give ours back. */
	bpf_map_push_elem(free, &slot, 0);
	found = bpf_map_lookup_elem(index, k);
	if (!found) {
		count_lost(reason);
		return 0;
	}
	return *found + 1;
}

/* The counters of the socket's series, created on first use. */
static __always_inline struct na_flow_stats *flow_stats(struct na_sock_state *st)
{
	struct na_flow_key k;
	__u32 slot = st->flow_slot;

	if (!slot) {
		flow_key(&k, st, 0);
		slot = series_slot(&flows, &flow_slots, &k, NA_LOST_FLOW_MAP_FULL);
		if (!slot)
			return NULL;
		st->flow_slot = slot;
	}
	slot -= 1;
	return bpf_map_lookup_elem(&flow_counters, &slot);
}

static __always_inline void observe(struct na_sock_state *st, __u8 kind, __u64 ns)
{
	struct na_flow_key k;
	struct na_hist *h;
	__u32 b = NA_HIST_BOUNDS;
	__u32 slot;

	if (kind >= NA_HIST_KINDS)
		return;
	slot = st->hist_slot[kind];
	if (!slot) {
		struct na_flow_hists *fh = NULL;
		__u32 flow = st->flow_slot;

		if (flow) {
			flow -= 1;
			fh = bpf_map_lookup_elem(&flow_hists, &flow);
			if (fh)
				slot = fh->slot[kind];
		}
		if (!slot) {
			flow_key(&k, st, kind);
			slot = series_slot(&hists, &hist_slots, &k, NA_LOST_HIST_MAP_FULL);
			if (!slot)
				return;
			if (fh)
				fh->slot[kind] = slot;
		}
		st->hist_slot[kind] = slot;
	}
	slot -= 1;
	h = bpf_map_lookup_elem(&hist_counters, &slot);
	if (!h)
		return;
	for (__u32 i = 0; i < NA_HIST_BOUNDS; i++) {
		if (ns <= hist_bounds_ns[kind][i]) {
			b = i;
			break;
		}
	}
	if (b <= NA_HIST_BOUNDS)
		ADD(h->buckets[b], 1);
	ADD(h->sum_ns, ns);
}

static __always_inline void observe_rtt(const struct sock *sk, struct na_sock_state *st,
					bool typed)
{
	__u32 srtt;

	if (typed) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);

		if (!tp)
			return;
		srtt = tp->srtt_us;
	} else {
		/* Only called for TCP sockets, which are tcp_socks. */
		srtt = BPF_CORE_READ((const struct tcp_sock *)sk, srtt_us);
	}
	/* srtt_us is the smoothed RTT in µs, left-shifted by 3; 0 = no sample yet. */
	srtt >>= 3;
	if (srtt)
		observe(st, NA_HIST_RTT, (__u64)srtt * 1000);
}

static __always_inline __u32 fail_reason(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return NA_FAIL_REFUSED;
	case ETIMEDOUT:
		return NA_FAIL_TIMEOUT;
	case EHOSTUNREACH:
	case ENETUNREACH:
		return NA_FAIL_UNREACHABLE;
	case ECONNRESET:
		return NA_FAIL_RESET;
	default:
		return NA_FAIL_OTHER;
	}
}

/* ---------------- TCP lifecycle ---------------- */

/* CLOSE -> SYN_SENT runs in the task calling connect(): one attempt. */
static __always_inline void on_connect(const struct sock *sk)
{
	struct na_flow_stats *fs;
	struct na_sock_state *st;
	__u8 comm[NA_COMM_LEN];

	if (!netns_ok(sk, true) || !current_is_target(comm))
		return;
	st = own_socket((void *)sk, comm, IPPROTO_TCP, NA_DIR_OUTBOUND);
	if (!st)
		return;
	read_peer_addr(sk, st->daddr, true);
	st->dport = bpf_ntohs(sk->__sk_common.skc_dport);
	st->peer_port = st->dport;
	st->syn_ts = bpf_ktime_get_ns();
	fs = flow_stats(st);
	if (fs)
		ADD(fs->connects, 1);
}

static __always_inline void mark_open(const struct sock *sk, struct na_sock_state *st, __u64 now)
{
	struct na_flow_stats *fs = flow_stats(st);

	if (fs)
		ADD(fs->opened, 1);
	st->open = 1;
	st->open_ts = now;
	st->rtt_ts = now;
}

/* SYN_SENT -> ESTABLISHED (softirq: SYN-ACK received). */
static __always_inline void on_established_out(const struct sock *sk)
{
	struct na_sock_state *st = tcp_state(sk, true);
	__u64 now;

	if (!st)
		return;
	now = bpf_ktime_get_ns();
	if (st->syn_ts) {
		observe(st, NA_HIST_CONNECT, now - st->syn_ts);
		st->syn_ts = 0;
	}
	mark_open(sk, st, now);
}

/* SYN_RECV -> ESTABLISHED on a new child socket (softirq): the owner is
 * whoever listens on the socket's local port in its network namespace. */
static __always_inline void on_established_in(const struct sock *sk)
{
	struct na_listen_key lk = {
		.netns = netns_of(sk, true),
		.port = sk->__sk_common.skc_num,
	};
	struct na_listener *l = bpf_map_lookup_elem(&listeners, &lk);
	struct na_sock_state *st;

	if (!l)
		return;
	st = new_state((void *)sk, IPPROTO_TCP);
	if (!st)
		return;
	__builtin_memcpy(st->comm, l->comm, NA_COMM_LEN);
	st->cgroup_id = l->cgroup_id;
	st->pid = l->pid;
	st->proto = IPPROTO_TCP;
	st->direction = NA_DIR_INBOUND;
	read_peer_addr(sk, st->daddr, true);
	st->dport = lk.port;
	st->peer_port = bpf_ntohs(sk->__sk_common.skc_dport);
	mark_open(sk, st, bpf_ktime_get_ns());
}

/* CLOSE -> LISTEN runs in the task calling listen(). The port is also
 * kept in the listener's socket state: by the time LISTEN -> CLOSE fires,
 * the kernel may already have released the port (skc_num = 0). */
static __always_inline void on_listen(const struct sock *sk)
{
	struct na_listen_key lk = {
		.netns = netns_of(sk, true),
		.port = sk->__sk_common.skc_num,
	};
	struct na_listener l = {};
	struct na_sock_state *st;

	if (!netns_ok(sk, true) || !current_is_target(l.comm))
		return;
	st = own_socket((void *)sk, l.comm, IPPROTO_TCP, NA_DIR_INBOUND);
	if (!st)
		return;
	st->dport = lk.port;
	l.cgroup_id = st->cgroup_id;
	l.pid = st->pid;
	if (sk->__sk_common.skc_family == AF_INET6)
		__builtin_memcpy(l.addr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
	else
		v4_mapped(l.addr, sk->__sk_common.skc_rcv_saddr);
	if (bpf_map_update_elem(&listeners, &lk, &l, BPF_ANY))
		count_lost(NA_LOST_LISTENER_MAP_FULL);
}

/* LISTEN -> CLOSE. Listeners older than the agent have no socket state;
 * the agent removes those itself when sock_diag no longer lists them. */
static __always_inline void on_unlisten(const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct na_sock_state *st = bpf_map_lookup_elem(&tcp_socks, &key);
	struct na_listen_key lk = {
		.netns = netns_of(sk, true),
	};

	if (!st)
		return;
	lk.port = st->dport;
	bpf_map_delete_elem(&listeners, &lk);
	bpf_map_delete_elem(&tcp_socks, &key);
}

/* Any state -> CLOSE: a failed connect, or the end of a connection. */
static __always_inline void count_close(const struct sock *sk, struct na_sock_state *st,
					int oldstate)
{
	struct na_flow_stats *fs;

	if (oldstate == TCP_SYN_SENT) {
		__u32 reason = fail_reason(sk->sk_err);

		st->syn_ts = 0;
		fs = flow_stats(st);
		if (fs && reason < NA_FAIL_REASONS)
			ADD(fs->failed[reason], 1);
		return;
	}
	if (!st->open)
		return;
	st->open = 0;
	fs = flow_stats(st);
	if (fs)
		ADD(fs->closed, 1);
	observe(st, NA_HIST_CONN_DURATION, bpf_ktime_get_ns() - st->open_ts);
	observe_rtt(sk, st, true);
}

static __always_inline void on_close(const struct sock *sk, int oldstate)
{
	__u64 key = (__u64)sk;
	struct na_sock_state *st = bpf_map_lookup_elem(&tcp_socks, &key);

	if (!st)
		return;
	if (same_socket(sk, st, true)) {
		count_close(sk, st, oldstate);
		/* A graceful close ends in LAST_ACK -> CLOSE (no reset
		 * follows) or comes from FIN_WAIT2 (a reset may). */
		if (oldstate != TCP_LAST_ACK && oldstate != TCP_SYN_SENT && st->flow_slot) {
			struct na_closed c = {
				.flow_slot = st->flow_slot,
				.peer_port = st->peer_port,
				.peer4 = peer4_of(st->daddr),
			};

			bpf_map_update_elem(&just_closed, &key, &c, BPF_ANY);
		}
	}
	bpf_map_delete_elem(&tcp_socks, &key);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_inet_sock_set_state, const struct sock *sk, int oldstate, int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	switch (newstate) {
	case TCP_SYN_SENT:
		on_connect(sk);
		break;
	case TCP_ESTABLISHED:
		if (oldstate == TCP_SYN_SENT)
			on_established_out(sk);
		else if (oldstate == TCP_SYN_RECV)
			on_established_in(sk);
		break;
	case TCP_LISTEN:
		on_listen(sk);
		break;
	case TCP_CLOSE:
		if (oldstate == TCP_LISTEN)
			on_unlisten(sk);
		else
			on_close(sk, oldstate);
		break;
	}
	return 0;
}

/* ---------------- TCP health ---------------- */

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_tcp_retransmit_skb, const struct sock *sk, const struct sk_buff *skb)
{
	struct na_sock_state *st = tcp_state(sk, true);
	struct na_flow_stats *fs;

	if (!st)
		return 0;
	fs = flow_stats(st);
	if (fs)
		ADD(fs->retransmits, 1);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_tcp_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	struct na_sock_state *st;
	struct na_flow_stats *fs;

	/* NULL for resets answering packets that match no socket. */
	if (!sk)
		return 0;
	st = tcp_state(sk, true);
	if (st) {
		fs = flow_stats(st);
	} else {
		/* Closed just before (see just_closed). */
		__u64 key = (__u64)sk;
		struct na_closed *c = bpf_map_lookup_elem(&just_closed, &key);
		__u32 slot;

		if (!c || !has_peer(sk, c->peer_port, c->peer4, true))
			return 0;
		slot = c->flow_slot - 1;
		bpf_map_delete_elem(&just_closed, &key);
		fs = bpf_map_lookup_elem(&flow_counters, &slot);
	}
	if (fs)
		ADD(fs->resets_sent, 1);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_tcp_receive_reset, struct sock *sk)
{
	struct na_sock_state *st = tcp_state(sk, true);
	struct na_flow_stats *fs;

	if (!st)
		return 0;
	fs = flow_stats(st);
	if (fs)
		ADD(fs->resets_received, 1);
	return 0;
}

/* ---------------- messages: bytes, datagrams, send->recv ---------------- */

/* cgroup sock_addr hooks run just before the send / just after the receive
 * of an unconnected UDP socket, in the same task as the tracepoint that
 * follows; they note the peer in the socket's state for it. */
static __always_inline void remember_peer(struct bpf_sock_addr *ctx, const __u8 addr[16],
					  __u8 direction)
{
	struct bpf_sock *sk = ctx->sk;
	struct na_sock_state *st;
	__u8 comm[NA_COMM_LEN];

	if (!sk || ctx->protocol != IPPROTO_UDP)
		return;
	if (msg_index) {
		/* The untyped message hook that follows in this task takes it. */
		struct na_pending p = { .port = bpf_ntohs((__u16)ctx->user_port) };
		__u64 task = bpf_get_current_pid_tgid();

		__builtin_memcpy(p.addr, addr, 16);
		bpf_map_update_elem(&task_pending, &task, &p, BPF_ANY);
		return;
	}
	st = bpf_sk_storage_get(&sock_state, sk, NULL, 0);
	if (!st) {
		if (!current_is_target(comm))
			return;
		st = own_socket(sk, comm, IPPROTO_UDP, direction);
		if (!st)
			return;
	}
	__builtin_memcpy(st->pending_addr, addr, 16);
	st->pending_port = bpf_ntohs((__u16)ctx->user_port);
	st->has_pending = 1;
}

static __always_inline void remember_peer4(struct bpf_sock_addr *ctx, __u8 direction)
{
	__u8 addr[16];

	v4_mapped(addr, ctx->user_ip4);
	remember_peer(ctx, addr, direction);
}

static __always_inline void remember_peer6(struct bpf_sock_addr *ctx, __u8 direction)
{
	__u32 ip[4];

	ip[0] = ctx->user_ip6[0];
	ip[1] = ctx->user_ip6[1];
	ip[2] = ctx->user_ip6[2];
	ip[3] = ctx->user_ip6[3];
	remember_peer(ctx, (__u8 *)ip, direction);
}

/* These only observe: 1 = allow, never block or rewrite. */
SEC("cgroup/sendmsg4")
int on_sendmsg4(struct bpf_sock_addr *ctx)
{
	remember_peer4(ctx, NA_DIR_OUTBOUND);
	return 1;
}

SEC("cgroup/sendmsg6")
int on_sendmsg6(struct bpf_sock_addr *ctx)
{
	remember_peer6(ctx, NA_DIR_OUTBOUND);
	return 1;
}

SEC("cgroup/recvmsg4")
int on_recvmsg4(struct bpf_sock_addr *ctx)
{
	remember_peer4(ctx, NA_DIR_INBOUND);
	return 1;
}

SEC("cgroup/recvmsg6")
int on_recvmsg6(struct bpf_sock_addr *ctx)
{
	remember_peer6(ctx, NA_DIR_INBOUND);
	return 1;
}

static __always_inline bool is_udp(const struct sock *sk, bool typed)
{
	return SK_READ(typed, sk, sk_protocol) == IPPROTO_UDP &&
	       SK_READ(typed, sk, sk_type) == SOCK_DGRAM;
}

/* The explicit peer of this task's current UDP message, if a cgroup hook
 * saw one (untyped hooks; typed ones keep it in the socket state). */
static __always_inline void take_task_pending(struct na_sock_state *st)
{
	__u64 task = bpf_get_current_pid_tgid();
	struct na_pending *p = bpf_map_lookup_elem(&task_pending, &task);

	if (!p)
		return;
	__builtin_memcpy(st->pending_addr, p->addr, 16);
	st->pending_port = p->port;
	st->has_pending = 1;
	bpf_map_delete_elem(&task_pending, &task);
}

/* UDP: the series of this datagram — its peer from the cgroup hook
 * (unconnected) or the socket (connected); the server-side port. */
static __always_inline void udp_peer(const struct sock *sk, struct na_sock_state *st, bool typed)
{
	const __u64 *addr = (const __u64 *)st->daddr;
	__u64 old0 = addr[0], old1 = addr[1];
	__u16 old_dport = st->dport;
	__u16 peer_port;

	if (!typed)
		take_task_pending(st);
	if (st->has_pending) {
		__builtin_memcpy(st->daddr, st->pending_addr, 16);
		peer_port = st->pending_port;
		st->has_pending = 0;
	} else {
		read_peer_addr(sk, st->daddr, typed);
		peer_port = bpf_ntohs(SK_READ(typed, sk, __sk_common.skc_dport));
	}
	st->peer_port = peer_port;
	st->dport = st->direction == NA_DIR_INBOUND ? SK_READ(typed, sk, __sk_common.skc_num)
						    : peer_port;
	if (addr[0] != old0 || addr[1] != old1 || st->dport != old_dport)
		forget_series(st);
}

/* State of a socket for a message event; UDP sockets of target processes
 * get their state here on their first message. */
static __always_inline struct na_sock_state *message_state(struct sock *sk, bool udp,
							   __u8 direction, bool typed)
{
	struct na_sock_state *st;
	__u8 comm[NA_COMM_LEN];
	__u64 key = (__u64)sk;

	/* The cgroup hooks may have created state for a socket of another
	 * namespace; it is ignored here, where the namespace is known. */
	if (!netns_ok(sk, typed))
		return NULL;
	if (!udp)
		return tcp_state(sk, typed); /* created at connect/accept only */
	if (typed)
		st = bpf_sk_storage_get(&sock_state, sk, NULL, 0);
	else
		st = bpf_map_lookup_elem(&sock_index, &key);
	if (st)
		return st;
	if (!current_is_target(comm))
		return NULL;
	if (typed)
		return own_socket(sk, comm, IPPROTO_UDP, direction);

	struct na_sock_state fresh = {};

	__builtin_memcpy(fresh.comm, comm, NA_COMM_LEN);
	fresh.cgroup_id = bpf_get_current_cgroup_id();
	fresh.pid = bpf_get_current_pid_tgid() >> 32;
	fresh.proto = IPPROTO_UDP;
	fresh.direction = direction;
	bpf_map_update_elem(&sock_index, &key, &fresh, BPF_ANY);
	st = bpf_map_lookup_elem(&sock_index, &key);
	if (!st)
		count_lost(NA_LOST_SOCK_STORAGE);
	return st;
}

/* One message sent on `sk`: `ret` bytes, or an error. */
static __always_inline void on_message_sent(struct sock *sk, int ret, bool typed)
{
	bool udp = is_udp(sk, typed);
	struct na_sock_state *st = message_state(sk, udp, NA_DIR_OUTBOUND, typed);
	struct na_flow_stats *fs;

	if (!st)
		return;
	if (ret < 0) {
		st->has_pending = 0;
		if (!typed && udp) {
			__u64 task = bpf_get_current_pid_tgid();

			bpf_map_delete_elem(&task_pending, &task);
		}
		return;
	}
	if (udp)
		udp_peer(sk, st, typed);
	fs = flow_stats(st);
	if (fs) {
		if (udp)
			ADD(fs->connects, 1); /* one datagram */
		ADD(fs->bytes_sent, ret);
	}
	if (st->direction == NA_DIR_OUTBOUND) {
		if (!st->send_ts)
			st->send_ts = bpf_ktime_get_ns();
	} else if (st->recv_ts) {
		/* A server's answer: request received -> response sent. */
		emit_span(sk, st, st->recv_ts, bpf_ktime_get_ns(), typed);
		st->recv_ts = 0;
	}
}

/* One message received on `sk`: `ret` bytes (<= 0: error or EOF). */
static __always_inline void on_message_received(struct sock *sk, int ret, int flags, bool typed)
{
	struct na_sock_state *st;
	struct na_flow_stats *fs;
	bool udp;
	__u64 now;

	/* Peeked data is read again later; errors and EOF carry no bytes. */
	if (ret <= 0 || (flags & MSG_PEEK)) {
		if (!typed) {
			__u64 task = bpf_get_current_pid_tgid();

			bpf_map_delete_elem(&task_pending, &task);
		}
		return;
	}
	udp = is_udp(sk, typed);
	st = message_state(sk, udp, NA_DIR_INBOUND, typed);
	if (!st)
		return;
	if (udp)
		udp_peer(sk, st, typed);
	fs = flow_stats(st);
	if (fs)
		ADD(fs->bytes_received, ret);
	now = bpf_ktime_get_ns();
	if (st->send_ts) {
		observe(st, NA_HIST_TX, now - st->send_ts);
		emit_span(sk, st, st->send_ts, now, typed);
		st->send_ts = 0;
	} else if (st->direction == NA_DIR_INBOUND && !st->recv_ts) {
		st->recv_ts = now;
	}
	if (!udp && st->open && now - st->rtt_ts > RTT_SAMPLE_NS) {
		st->rtt_ts = now;
		observe_rtt(sk, st, typed);
	}
}

/* 1. Tracepoints (6.3+): sock_sendmsg / sock_recvmsg of every socket. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(on_sock_send_length, struct sock *sk, int ret, int flags)
{
	on_message_sent(sk, ret, true);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_sock_recv_length, struct sock *sk, int ret, int flags)
{
	on_message_received(sk, ret, flags, true);
	return 0;
}

/* 2. fexit on the inet socket operations the tracepoints sit behind. The
 * loader checks these functions' BTF prototypes match (5.19+ recvmsg). */
SEC("fexit/inet_sendmsg")
int BPF_PROG(fx_inet_sendmsg, struct socket *sock, void *msg, __u64 size, int ret)
{
	struct sock *sk = sock->sk;

	if (sk)
		on_message_sent(sk, ret, true);
	return 0;
}

SEC("fexit/inet6_sendmsg")
int BPF_PROG(fx_inet6_sendmsg, struct socket *sock, void *msg, __u64 size, int ret)
{
	struct sock *sk = sock->sk;

	if (sk)
		on_message_sent(sk, ret, true);
	return 0;
}

SEC("fexit/inet_recvmsg")
int BPF_PROG(fx_inet_recvmsg, struct socket *sock, void *msg, __u64 size, int flags, int ret)
{
	struct sock *sk = sock->sk;

	if (sk)
		on_message_received(sk, ret, flags, true);
	return 0;
}

SEC("fexit/inet6_recvmsg")
int BPF_PROG(fx_inet6_recvmsg, struct socket *sock, void *msg, __u64 size, int flags, int ret)
{
	struct sock *sk = sock->sk;

	if (sk)
		on_message_received(sk, ret, flags, true);
	return 0;
}

/* Untyped hooks: note the call at entry, finish it at exit in this task. */
static __always_inline void call_begin(__u64 sk, int flags, __u8 send)
{
	struct na_msg_call c = { .sk = sk, .flags = flags, .send = send };
	__u64 task = bpf_get_current_pid_tgid();

	if (sk)
		bpf_map_update_elem(&msg_calls, &task, &c, BPF_ANY);
}

static __always_inline void call_end(long ret)
{
	__u64 task = bpf_get_current_pid_tgid();
	struct na_msg_call *c = bpf_map_lookup_elem(&msg_calls, &task);
	struct na_msg_call call;

	if (!c)
		return;
	call = *c;
	bpf_map_delete_elem(&msg_calls, &task);
	if (call.send)
		on_message_sent((struct sock *)call.sk, ret, false);
	else
		on_message_received((struct sock *)call.sk, ret, call.flags, false);
}

/* 3. kprobes on the same functions (kernels without BTF trampolines). */
SEC("kprobe/inet_sendmsg")
int BPF_KPROBE(kp_inet_sendmsg, struct socket *sock)
{
	call_begin((__u64)BPF_CORE_READ(sock, sk), 0, 1);
	return 0;
}

SEC("kprobe/inet6_sendmsg")
int BPF_KPROBE(kp_inet6_sendmsg, struct socket *sock)
{
	call_begin((__u64)BPF_CORE_READ(sock, sk), 0, 1);
	return 0;
}

SEC("kprobe/inet_recvmsg")
int BPF_KPROBE(kp_inet_recvmsg, struct socket *sock, void *msg, __u64 size, int flags)
{
	call_begin((__u64)BPF_CORE_READ(sock, sk), flags, 0);
	return 0;
}

SEC("kprobe/inet6_recvmsg")
int BPF_KPROBE(kp_inet6_recvmsg, struct socket *sock, void *msg, __u64 size, int flags)
{
	call_begin((__u64)BPF_CORE_READ(sock, sk), flags, 0);
	return 0;
}

SEC("kretprobe/inet_sendmsg")
int BPF_KRETPROBE(krp_inet_sendmsg, int ret)
{
	call_end(ret);
	return 0;
}

SEC("kretprobe/inet6_sendmsg")
int BPF_KRETPROBE(krp_inet6_sendmsg, int ret)
{
	call_end(ret);
	return 0;
}

SEC("kretprobe/inet_recvmsg")
int BPF_KRETPROBE(krp_inet_recvmsg, int ret)
{
	call_end(ret);
	return 0;
}

SEC("kretprobe/inet6_recvmsg")
int BPF_KRETPROBE(krp_inet6_recvmsg, int ret)
{
	call_end(ret);
	return 0;
}

/* 4. Raw syscall hooks: the last resort. They run for every system call on
 * the host, so they return after one compare for all but the message
 * calls; sendmmsg/recvmmsg, sendfile and splice are not seen. x86-64 only
 * (syscall numbers and registers). */
#if defined(__TARGET_ARCH_x86)
#define NR_read 0
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47

/* The socket behind file descriptor `fd` of the current task, or 0. */
static __always_inline __u64 socket_of_fd(__u32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file = NULL;
	struct socket *sock;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	/* A socket's file and the socket point at each other; any other file's
	 * private data does not point back. */
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return 0;
	return (__u64)BPF_CORE_READ(sock, sk);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(on_sys_enter, struct pt_regs *regs, long id)
{
	int flags = 0;
	__u8 send;
	__u64 sk;

	switch (id) {
	case NR_write:
	case NR_writev:
	case NR_sendto:
	case NR_sendmsg:
		send = 1;
		break;
	case NR_recvfrom:
		flags = (int)regs->r10; /* 4th syscall argument */
		send = 0;
		break;
	case NR_recvmsg:
		flags = (int)regs->rdx;
		send = 0;
		break;
	case NR_read:
	case NR_readv:
		send = 0;
		break;
	default:
		return 0;
	}
	sk = socket_of_fd((__u32)regs->rdi);
	if (!sk)
		return 0;
	/* Only inet sockets, as with the other message hooks. */
	__u16 family = BPF_CORE_READ((struct sock *)sk, __sk_common.skc_family);
	if (family != 2 && family != AF_INET6)
		return 0;
	call_begin(sk, flags, send);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret)
{
	switch (regs->orig_rax) {
	case NR_write:
	case NR_writev:
	case NR_sendto:
	case NR_sendmsg:
	case NR_recvfrom:
	case NR_recvmsg:
	case NR_read:
	case NR_readv:
		call_end(ret);
	}
	return 0;
}
#endif
