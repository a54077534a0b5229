/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * NAT as the socket programs see it: a translation that nat.c found in
 * another namespace (the node behind a pod) waits in `nat_found` for the
 * socket's next event, which takes it into the socket's state. TCP
 * settles at the end of the handshake (the SYN has crossed every
 * namespace of this host by then); UDP on the first reply.
 */
#ifndef NETAGENT_NAT_H
#define NETAGENT_NAT_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"
#include "series.h"
#include "lost.h"

/* Takes a translation found elsewhere into `st`; `final`: no translation
 * can come any more, so an unanswered question is settled as "none", and
 * its note in `nat_flows` goes. A note that is gone without an answer was
 * evicted (or its answer was): that is counted, not taken for "none". */
static __always_inline void nat_take(struct na_sock_state *st, __u64 sk, bool final)
{
	struct na_nat_found *f;

	if (st->nat_state != NA_NAT_PENDING)
		return;
	f = bpf_map_lookup_elem(&nat_found, &sk);
	if (f) {
		if (same_dest(f->orig, f->orig_port, st->nat_orig, st->nat_orig_port)) {
			__builtin_memcpy(st->nat_daddr, f->daddr, 16);
			st->nat_dport = f->dport;
			st->nat_state = NA_NAT_DONE;
			forget_series(st);
		}
		bpf_map_delete_elem(&nat_found, &sk);
		if (st->nat_state == NA_NAT_DONE)
			return;
	}
	if (!final)
		return;
	st->nat_state = NA_NAT_DONE;

	struct na_nat_key k = { .sport = st->nat_sport, .proto = st->proto };
	struct na_nat_flow *note;

	__builtin_memcpy(k.saddr, st->nat_saddr, 16);
	note = bpf_map_lookup_elem(&nat_flows, &k);
	if (!note || note->sk != sk || note->ambiguous)
		count_lost(NA_LOST_NAT_UNMATCHED);
	if (note && note->sk == sk)
		bpf_map_delete_elem(&nat_flows, &k);
}

#endif
