// SPDX-License-Identifier: GPL-2.0-only
/*
 * Message hooks with a typed socket, the first two of the four in the
 * loader's order of preference (netagent.bpf.c). Part of netagent.bpf.c.
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "vmlinux_min.h"
#include "messages.h"

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
