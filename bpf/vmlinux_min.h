/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel types the programs read, declared with
 * preserve_access_index so the loader relocates every field offset (CO-RE)
 * against the running kernel's BTF. Committed instead of a generated
 * vmlinux.h so the build needs no BTF on the build machine.
 */
#ifndef NETAGENT_VMLINUX_MIN_H
#define NETAGENT_VMLINUX_MIN_H

#include <linux/types.h>
#include <linux/in6.h> /* struct in6_addr */

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	unsigned int skc_hash; /* of its address pair; in an anonymous union there */
	volatile unsigned char skc_state;
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct socket;

struct sock {
	struct sock_common __sk_common;
	struct socket *sk_socket; /* NULL until accept() (seed.c) */
	int sk_err;
	__u16 sk_type;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

struct tcp_sock {
	__u32 srtt_us; /* smoothed RTT << 3, in microseconds */
} __attribute__((preserve_access_index));

/* Packets as net_dev_queue sees them (nat.c): the owning socket, if any,
 * and where the IP header starts. */
struct sk_buff {
	struct sock *sk;
	unsigned char *head;
	__u16 network_header;
	__be16 protocol;
} __attribute__((preserve_access_index));

/* For the fallback message hooks (fexit/kprobe on inet_*msg, syscalls). */
struct file {
	void *private_data;
} __attribute__((preserve_access_index));

struct socket {
	struct file *file;
	struct sock *sk;
} __attribute__((preserve_access_index));

/* A socket's inode, the `socket:[ino]` of /proc/<pid>/fd (seed.c). */
struct inode {
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct socket_alloc {
	struct socket socket;
	struct inode vfs_inode;
} __attribute__((preserve_access_index));

/* The context of an iter/tcp program (seed.c). */
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
	__u32 uid;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct task_struct {
	struct files_struct *files;
} __attribute__((preserve_access_index));

#endif
