// SPDX-License-Identifier: GPL-2.0-only
/*
 * Message hooks, last choice: raw syscall tracepoints, which see a file
 * descriptor and find its socket; entry and exit as with the kprobes
 * (messages.h). Part of netagent.bpf.c.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <asm/ptrace.h>

#include "vmlinux_min.h"
#include "addr.h"
#include "messages.h"

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
