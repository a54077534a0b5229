// SPDX-License-Identifier: GPL-2.0-only
/*
 * Sockets older than the agent: a TCP iterator (iter/tcp, Linux 5.9+; no
 * ftrace, so it runs where fentry/kprobes do not) that the agent reads once
 * at start in every network namespace that holds a socket of a tracked
 * process. The agent first fills `seed_owners` (socket inode -> owner, from
 * /proc/<pid>/fd); the walk then gives each open connection and listener
 * of those owners the state the live hooks would have given it at connect,
 * accept or listen, so its later bytes, retransmits, resets and close count
 * and `netagent_tcp_connections_active` is right at once. Part of
 * netagent.bpf.c.
 *
 * What a seeded connection counts: `seeded`, not `opened` (it was not seen
 * to open), so active = opened + seeded - closed; its close counts in
 * `closed` but observes no duration: its start is unknown (open_ts = 0;
 * the kernel keeps no establishment time). Connects in flight (SYN_SENT,
 * SYN_RECV) are not seeded: if their SYN went out before the hooks were
 * attached, they stay untracked.
 *
 * Races. The live hooks are attached before the walk, and every state
 * change of a socket runs with the socket lock held; since 5.16 the
 * iterator runs this program with that lock held too (lock_sock_fast) and
 * skips sockets already unhashed, before that (5.9 to 5.15) under the hash
 * bucket lock that a close needs to unhash the socket, and the tracepoint
 * fires only after the unhash. So for any socket, either
 *  - its close ran first: it is no longer listed, nothing is created; or
 *  - the walk ran first: the close finds the state and counts it closed.
 * A connection that opens during the walk becomes ESTABLISHED through
 * inet_sk_state_store(), which runs the tracepoint before it stores the
 * new state: a walk that reads an open state finds the hook's state
 * already there (NA_SEED_KNOWN) and leaves it alone; a walk that reads
 * SYN_SENT/SYN_RECV skips it and the hook counts it. Nothing is counted
 * twice and nothing is left behind. On 5.9 to 5.15 (no socket lock) the
 * state is written whole, with one update, so a message hook that reads it
 * meanwhile never sees half of it.
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "vmlinux_min.h"
#include "maps.h"
#include "lost.h"
#include "addr.h"
#include "sock.h"
#include "series.h"

#define SEED_ESTABLISHED 1
#define SEED_FIN_WAIT1 4
#define SEED_FIN_WAIT2 5
#define SEED_CLOSE_WAIT 8
#define SEED_LAST_ACK 9
#define SEED_LISTEN 10
#define SEED_CLOSING 11

/* The owners of sockets of tracked processes, by socket inode; filled by
 * the agent before the walk and emptied after it. The value is a
 * listener's (its addr unused). Sized by the agent (limits.max_sockets). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct na_listener);
} seed_owners SEC(".maps");

/* Every listening port of the namespace walked, tracked or not: the
 * iterator lists listeners before established sockets, so an open
 * connection on a listening port is known to be an accepted one. Emptied
 * by the agent after the walk. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct na_listen_key);
	__type(value, __u8);
} seed_ports SEC(".maps");

/* Open in the agent's sense: counted as opened, not yet TCP_CLOSE. */
static __always_inline bool seed_open_state(__u8 state)
{
	switch (state) {
	case SEED_ESTABLISHED:
	case SEED_FIN_WAIT1:
	case SEED_FIN_WAIT2:
	case SEED_CLOSE_WAIT:
	case SEED_LAST_ACK:
	case SEED_CLOSING:
		return true;
	}
	return false;
}

/* The socket's inode (`socket:[ino]`); 0 before accept(). */
static __always_inline __u64 seed_inode(const struct sock *sk)
{
	struct socket *so = sk->sk_socket;

	if (!so)
		return 0;
	return BPF_CORE_READ((struct socket_alloc *)so, vfs_inode.i_ino);
}

static __always_inline void seed_report(struct bpf_iter__tcp *ctx, __u32 result)
{
	bpf_seq_write(ctx->meta->seq, &result, sizeof(result));
}

/* As on_listen (tcp_lifecycle.c), for a listener found by the walk. */
static __always_inline __u32 seed_listener(const struct sock *sk, const struct na_listen_key *lk,
					   const struct na_listener *owner)
{
	struct na_sock_state st = {};
	struct na_listener l = *owner;
	__u64 key = (__u64)sk;

	__builtin_memcpy(st.comm, owner->comm, NA_COMM_LEN);
	st.cgroup_id = owner->cgroup_id;
	st.pid = owner->pid;
	st.proto = IPPROTO_TCP;
	st.direction = NA_DIR_INBOUND;
	st.dport = lk->port;
	/* NOEXIST: a listen() the hook saw is not replaced. */
	if (bpf_map_update_elem(TCP_SOCKS(true), &key, &st, BPF_NOEXIST))
		return bpf_map_lookup_elem(TCP_SOCKS(true), &key) ? NA_SEED_KNOWN : NA_SEED_FAILED;
	read_local_addr(sk, l.addr, true);
	if (bpf_map_update_elem(&listeners, lk, &l, BPF_ANY))
		count_lost(NA_LOST_LISTENER_MAP_FULL);
	return NA_SEED_LISTENER;
}

/* An open connection found by the walk: state as on_connect +
 * on_established_out or on_established_in would have made it. */
static __always_inline __u32 seed_connection(const struct sock *sk, const struct na_listen_key *lk,
					     const struct na_listener *owner, bool inbound,
					     bool established)
{
	struct na_sock_state st = {};
	struct na_sock_state *live;
	struct na_flow_stats *fs;
	__u64 key = (__u64)sk;
	__u16 peer_port = bpf_ntohs(sk->__sk_common.skc_dport);

	live = bpf_map_lookup_elem(TCP_SOCKS(true), &key);
	if (live && same_socket(sk, live, true))
		return NA_SEED_KNOWN;
	__builtin_memcpy(st.comm, owner->comm, NA_COMM_LEN);
	st.cgroup_id = owner->cgroup_id;
	st.pid = owner->pid;
	st.proto = IPPROTO_TCP;
	st.direction = inbound ? NA_DIR_INBOUND : NA_DIR_OUTBOUND;
	read_peer_addr(sk, st.daddr, true);
	st.peer_port = peer_port;
	st.dport = inbound ? lk->port : peer_port;
	st.open = 1;
	st.open_ts = 0; /* unknown: no duration is observed at close */
	st.rtt_ts = bpf_ktime_get_ns();
	/* Idle connections: its last payload is counted as now (the kernel
	 * keeps it in jiffies, and the tick rate is not known here), so it
	 * is idle once it carries none for tcp.idle_after_seconds from the
	 * agent's start: never counted idle too early. One that already left
	 * ESTABLISHED is not an idle candidate. */
	st.data_ts = st.rtt_ts;
	st.closing = !established;
	/* One update (see the race note above); replaces only a state whose
	 * socket address was reused after a close we did not see. */
	if (bpf_map_update_elem(TCP_SOCKS(true), &key, &st, BPF_ANY)) {
		count_lost(NA_LOST_SOCK_STORAGE);
		return NA_SEED_FAILED;
	}
	live = bpf_map_lookup_elem(TCP_SOCKS(true), &key);
	if (!live)
		return NA_SEED_FAILED;
	fs = flow_stats(live);
	if (fs)
		ADD(fs->seeded, 1);
	return NA_SEED_OPEN;
}

SEC("iter/tcp")
int seed_tcp_sockets(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	const struct na_listener *owner;
	struct na_listen_key lk = {};
	const struct sock *sk;
	struct tcp_sock *tp;
	__u8 state, one = 1;
	__u64 ino;
	bool inbound;

	if (!skc)
		return 0; /* the end of the walk */
	/* Full TCP sockets only: not request or time-wait ones. */
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	sk = (const struct sock *)tp;
	if (!netns_ok(sk, true))
		return 0;
	lk.netns = netns_of(sk, true);
	lk.port = sk->__sk_common.skc_num;
	state = sk->__sk_common.skc_state;
	ino = seed_inode(sk);
	if (state == SEED_LISTEN) {
		bpf_map_update_elem(&seed_ports, &lk, &one, BPF_ANY);
		owner = ino ? bpf_map_lookup_elem(&seed_owners, &ino) : NULL;
		if (owner)
			seed_report(ctx, seed_listener(sk, &lk, owner));
		return 0;
	}
	if (!seed_open_state(state))
		return 0;
	inbound = bpf_map_lookup_elem(&seed_ports, &lk) != NULL;
	if (ino)
		owner = bpf_map_lookup_elem(&seed_owners, &ino);
	else if (inbound)
		/* Not accept()ed yet: it belongs to whoever listens, as live. */
		owner = bpf_map_lookup_elem(&listeners, &lk);
	else
		return 0;
	if (owner)
		seed_report(ctx, seed_connection(sk, &lk, owner, inbound,
						 state == SEED_ESTABLISHED));
	return 0;
}
