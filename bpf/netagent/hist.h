/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Histograms per series and kind (enum na_hist_kind): the bucket of a
 * sample against the bounds the agent sets (hist_bounds_ns), and the RTT
 * sample of a TCP socket.
 */
#ifndef NETAGENT_HIST_H
#define NETAGENT_HIST_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "vmlinux_min.h"
#include "maps.h"
#include "series.h"

static __always_inline void observe(struct na_sock_state *st, __u8 kind, __u64 ns)
{
	struct na_flow_key k;
	struct na_hist *h;
	__u32 b = NA_HIST_BOUNDS;
	__u32 slot;
	__s64 cur;

	if (kind >= NA_HIST_KINDS)
		return;
	/* Slot references, as in series.h: stale ones are looked up again. */
	cur = ref_slot(&hist_gens, st->hist_slot[kind]);
	if (cur < 0) {
		struct na_flow_hists *fh = NULL;
		__s64 flow = ref_slot(&flow_gens, st->flow_slot);
		__u32 ref = 0;

		if (flow >= 0) {
			__u32 f = flow;

			fh = bpf_map_lookup_elem(&flow_hists, &f);
			if (fh) {
				ref = fh->slot[kind];
				cur = ref_slot(&hist_gens, ref);
			}
		}
		if (cur < 0) {
			flow_key(&k, st, kind);
			ref = series_slot(&hists, &hist_slots, &hist_gens, &k, NA_LOST_HIST_MAP_FULL);
			cur = ref_slot(&hist_gens, ref);
			if (cur < 0)
				return;
			if (fh)
				fh->slot[kind] = ref;
		}
		st->hist_slot[kind] = ref;
	}
	slot = cur;
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

#endif
