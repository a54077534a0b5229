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
 *   iter/tcp                    once at start: TCP sockets older than the agent
 *   cgroup/sendmsg4, sendmsg6   peer of an unconnected UDP sendto()
 *   cgroup/recvmsg4, recvmsg6   peer of an unconnected UDP recvfrom()
 *   cgroup_skb/egress, ingress  DNS messages of sockets that sendmsg/connect marked
 *   tp_btf/kfree_skb            packet drops with the kernel's reason, by socket owner
 *
 * Per-socket state: TCP sockets of tracked processes live in `tcp_socks`,
 * keyed by the socket's address from connect / accept / listen to close
 * (every hook can reach it, typed or not; with the untyped message hooks
 * in its preallocated twin `tcp_socks_pre`, tcp_prealloc = 1, see maps.h). UDP sockets have no close event:
 * their state is socket-local storage, which dies with the socket; kprobes
 * and raw syscall hooks only see a socket address, which socket-local
 * storage cannot be reached from, so with those (msg_index = 1) UDP state
 * lives in the LRU `sock_index` instead; so it does with the typed hooks on
 * kernels whose tracing programs cannot use socket-local storage (before
 * 5.11, e.g. Debian 11's 5.10): the agent picks the mode at load.
 *
 * Attribution: the owner (comm, cgroup) is stored in the socket's state
 * when a target process connects, sends or receives first (process
 * context), or, for accepted connections, copied from the listener's owner.
 * Every later event — often in softirq context — uses that stored owner.
 *
 * Source layout: the agent loads this one object and all of its programs
 * share its maps and globals, so this file is a unity build: it includes
 * the files under netagent/ into one translation unit instead of compiling
 * them apart. Separate objects would need a BPF linker (bpftool gen object)
 * on every build machine, and extern maps that aya cannot resolve. Each
 * file still includes what it uses, so it reads (and an editor checks it)
 * on its own.
 *   netagent/maps.h           every map and load-time global (the agent uses their names)
 *   netagent/lost.h           events that could not be counted
 *   netagent/addr.h           socket field reads (typed or not), addresses, network namespace
 *   netagent/sock.h           per-socket state: target processes, ownership, socket identity
 *   netagent/span.h           request/response spans to the ring buffer
 *   netagent/series.h         series slots and flow counters
 *   netagent/hist.h           histograms
 *   netagent/nat.h            translations found in another namespace, taken by the socket
 *   netagent/messages.h       what one message counts, for every message hook
 *   netagent/dns.h            DNS client sockets and their owners, DNS maps (marked from udp_peers.c)
 *   netagent/tcp_lifecycle.c  tp_btf/inet_sock_set_state
 *   netagent/tcp_health.c     tp_btf/tcp_retransmit_skb, tcp_send_reset, tcp_receive_reset
 *   netagent/udp_peers.c      cgroup/sendmsg4|6, recvmsg4|6, connect4|6
 *   netagent/messages.c       tp_btf/sock_{send,recv}_length, fexit/inet{,6}_{send,recv}msg
 *   netagent/kprobes.c        kprobe + kretprobe on inet{,6}_{send,recv}msg
 *   netagent/syscalls.c       tp_btf/sys_enter + sys_exit (x86-64)
 *   netagent/nat.c            tp_btf/net_dev_queue: where connections really go (DNAT)
 *   netagent/seed.c           iter/tcp: connections and listeners older than the agent
 *   netagent/dns.c            cgroup_skb/egress, ingress: DNS messages of marked sockets
 *   netagent/drops.c          tp_btf/kfree_skb: packet drops (its maps are its own)
 * netagent.h holds the ABI shared with the agent (mirrored in
 * src/kernel/abi.rs), vmlinux_min.h the kernel types read (CO-RE).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

/* State and helpers, each after what it uses. */
#include "netagent/maps.h"
#include "netagent/lost.h"
#include "netagent/addr.h"
#include "netagent/sock.h"
#include "netagent/span.h"
#include "netagent/series.h"
#include "netagent/hist.h"
#include "netagent/nat.h"
#include "netagent/messages.h"
#include "netagent/dns.h"

/* Programs, one family per file; this order is the order of their
 * sections in the object. */
#include "netagent/tcp_lifecycle.c"
#include "netagent/tcp_health.c"
#include "netagent/udp_peers.c"
#include "netagent/messages.c"
#include "netagent/kprobes.c"
#include "netagent/syscalls.c"
#include "netagent/nat.c"
#include "netagent/seed.c"
#include "netagent/dns.c"
#include "netagent/drops.c"
