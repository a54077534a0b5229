// SPDX-License-Identifier: GPL-2.0-only
/*
 * Message hooks, third choice: kprobes and kretprobes on the functions
 * the fexit programs use (messages.c). They see only a socket address:
 * the entry notes the call, the return finishes it (messages.h). Part of
 * netagent.bpf.c.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <asm/ptrace.h>

#include "vmlinux_min.h"
#include "messages.h"

/* 3. kprobes on the functions of the fexit programs (kernels without BTF
 * trampolines). */
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
