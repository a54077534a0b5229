/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel types the programs read, declared with
 * preserve_access_index so the loader relocates every field offset (CO-RE)
 * against the running kernel's BTF. Committed instead of a generated
 * vmlinux.h so the build needs no BTF on the build machine.
 */
#ifndef NETAGENT_VMLINUX_MIN_H
#define NETAGENT_VMLINUX_MIN_H

struct sock_common {
	__be32 skc_daddr;
	__be16 skc_dport;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_type;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

#endif
