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
 * The first two message hooks get a typed socket and use the socket-local
 * storage. kprobes and raw syscall hooks only see a socket address, which
 * socket-local storage cannot be reached from; with those (msg_index = 1)
 * message state lives in `sock_index`, keyed by the socket's address and
 * kept in step by the lifecycle program.
 *
 * Attribution: the owner (comm, cgroup) is stored in socket-local storage
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

/* Counters per owner and peer. Preallocated (the agent sizes max_entries
 * from config): run-time allocation can fail under a burst of new series
 * (bpf_mem_alloc refills asynchronously), and a failed insert is a lost
 * event. Shared values with atomic adds, not per-CPU ones, so the memory is
 * the same on 2 or 200 CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct na_flow_key);
	__type(value, struct na_flow_stats);
} flows SEC(".maps");

/* Histograms per owner, peer and kind (preallocated, atomic adds). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct na_flow_key);
	__type(value, struct na_hist);
} hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct na_sock_state);
} sock_state SEC(".maps");

/* Message state by socket address, for the untyped message hooks only
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

/* New per-socket state for the current (target) task. */
static __always_inline struct na_sock_state *
own_socket(void *sk, const __u8 comm[NA_COMM_LEN], __u8 proto, __u8 direction)
{
	struct na_sock_state *st =
		bpf_sk_storage_get(&sock_state, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);

	if (!st) {
		count_lost(NA_LOST_SOCK_STORAGE);
		return NULL;
	}
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

/* The counters of the socket's series, created on first use. */
static __always_inline struct na_flow_stats *flow_stats(const struct na_sock_state *st)
{
	static const struct na_flow_stats zero = {};
	struct na_flow_key k;
	struct na_flow_stats *v;

	flow_key(&k, st, 0);
	v = bpf_map_lookup_elem(&flows, &k);
	if (v)
		return v;
	/* -EEXIST when another CPU inserted it meanwhile: then look it up. */
	bpf_map_update_elem(&flows, &k, &zero, BPF_NOEXIST);
	v = bpf_map_lookup_elem(&flows, &k);
	if (!v)
		count_lost(NA_LOST_FLOW_MAP_FULL);
	return v;
}

static __always_inline void observe(const struct na_sock_state *st, __u8 kind, __u64 ns)
{
	static const struct na_hist zero = {};
	struct na_flow_key k;
	struct na_hist *h;
	__u32 b = NA_HIST_BOUNDS;

	if (kind >= NA_HIST_KINDS)
		return;
	flow_key(&k, st, kind);
	h = bpf_map_lookup_elem(&hists, &k);
	if (!h) {
		bpf_map_update_elem(&hists, &k, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &k);
		if (!h) {
			count_lost(NA_LOST_HIST_MAP_FULL);
			return;
		}
	}
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

static __always_inline void observe_rtt(const struct sock *sk, const struct na_sock_state *st,
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

/* ---------------- message state for untyped hooks ---------------- */

/* Copies a TCP socket's state into `sock_index` for untyped message hooks. */
static __always_inline void index_put(const struct sock *sk, const struct na_sock_state *st)
{
	__u64 key = (__u64)sk;

	if (msg_index)
		bpf_map_update_elem(&sock_index, &key, st, BPF_ANY);
}

static __always_inline void index_delete(const struct sock *sk)
{
	__u64 key = (__u64)sk;

	if (msg_index)
		bpf_map_delete_elem(&sock_index, &key);
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
	st->syn_ts = bpf_ktime_get_ns();
	st->send_ts = 0;
	st->open = 0;
	index_put(sk, st);
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
	if (msg_index) {
		__u64 key = (__u64)sk;
		struct na_sock_state *ix = bpf_map_lookup_elem(&sock_index, &key);

		if (ix) {
			ix->open = 1;
			ix->rtt_ts = now;
		} else {
			index_put(sk, st);
		}
	}
}

/* SYN_SENT -> ESTABLISHED (softirq: SYN-ACK received). */
static __always_inline void on_established_out(const struct sock *sk)
{
	struct na_sock_state *st = bpf_sk_storage_get(&sock_state, (void *)sk, NULL, 0);
	__u64 now = bpf_ktime_get_ns();

	if (!st)
		return;
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
	st = bpf_sk_storage_get(&sock_state, (void *)sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		count_lost(NA_LOST_SOCK_STORAGE);
		return;
	}
	__builtin_memcpy(st->comm, l->comm, NA_COMM_LEN);
	st->cgroup_id = l->cgroup_id;
	st->pid = l->pid;
	st->proto = IPPROTO_TCP;
	st->direction = NA_DIR_INBOUND;
	read_peer_addr(sk, st->daddr, true);
	st->dport = lk.port;
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
	struct na_sock_state *st = bpf_sk_storage_get(&sock_state, (void *)sk, NULL, 0);
	struct na_listen_key lk = {
		.netns = netns_of(sk, true),
	};

	if (!st)
		return;
	lk.port = st->dport;
	bpf_map_delete_elem(&listeners, &lk);
}

/* Any state -> CLOSE: a failed connect, or the end of a connection. */
static __always_inline void on_close(const struct sock *sk, int oldstate)
{
	struct na_sock_state *st = bpf_sk_storage_get(&sock_state, (void *)sk, NULL, 0);
	struct na_flow_stats *fs;

	if (!st)
		return;
	index_delete(sk);
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
	struct na_sock_state *st = bpf_sk_storage_get(&sock_state, (void *)sk, NULL, 0);
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
	st = bpf_sk_storage_get(&sock_state, (void *)sk, NULL, 0);
	if (!st)
		return 0;
	fs = flow_stats(st);
	if (fs)
		ADD(fs->resets_sent, 1);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_tcp_receive_reset, struct sock *sk)
{
	struct na_sock_state *st = bpf_sk_storage_get(&sock_state, sk, NULL, 0);
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
	if (typed)
		st = bpf_sk_storage_get(&sock_state, sk, NULL, 0);
	else
		st = bpf_map_lookup_elem(&sock_index, &key);
	if (st || !udp)
		return st; /* TCP sockets get state at connect/accept only */
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
