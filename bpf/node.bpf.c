// SPDX-License-Identifier: GPL-2.0-only
/*
 * Node signals from the kernel: OOM kills, counted per victim.
 *
 * Hook: the stable tracepoint oom:mark_victim, which the OOM killer fires
 * once per task it chooses (mark_oom_victim sets TIF_MEMDIE first, so a
 * task is never marked twice). The task running the hook is whoever ran
 * out of memory, often not the victim, so everything is read from the
 * victim's task_struct (CO-RE), never from the current task.
 *
 * Two prototypes exist:
 *   since Linux 6.8: mark_victim(struct task_struct *task, uid_t uid)
 *   before:          mark_victim(int pid)
 * The agent loads on_mark_victim and, if the verifier rejects it for the
 * older prototype, on_mark_victim_pid, which can only attribute a victim
 * that is the current task (the common case for a process exceeding its
 * cgroup's limit) and counts the others as lost.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "netagent.h"

char LICENSE[] SEC("license") = "GPL";

/* The kernel types read here; CO-RE relocates every field. */
struct kernfs_node {
	__u64 id; /* what bpf_get_current_cgroup_id() returns for a cgroup */
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup *dfl_cgrp; /* the task's cgroup on the v2 hierarchy */
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	__u64 start_time;
	struct task_struct *group_leader;
	struct css_set *cgroups;
	char comm[16];
} __attribute__((preserve_access_index));

/* OOM kills per (victim comm, victim cgroup); the agent sizes it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct na_oom_key);
	__type(value, __u64);
} oom_kills SEC(".maps");

/* Processes already counted: a multi-threaded victim can have several
 * threads marked (each one that is exiting and allocates again). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct na_oom_proc);
	__type(value, __u8);
} oom_seen SEC(".maps");

/* Kills that could not be counted, by enum na_node_lost_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NA_NODE_LOST_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} node_lost SEC(".maps");

static __always_inline void lose(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&node_lost, &reason);

	if (n)
		*n += 1; /* per-CPU slot */
}

static __always_inline void count_victim(struct task_struct *task)
{
	struct na_oom_key key = {};
	struct na_oom_proc proc = {};
	struct task_struct *leader;
	__u64 *n;
	__u8 one = 1;

	proc.tgid = BPF_CORE_READ(task, tgid);
	leader = BPF_CORE_READ(task, group_leader);
	proc.start_ns = BPF_CORE_READ(leader, start_time);
	if (bpf_map_update_elem(&oom_seen, &proc, &one, BPF_NOEXIST))
		return; /* this process was counted already */

	bpf_core_read_str(key.comm, sizeof(key.comm), &leader->comm);
	key.cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);

	n = bpf_map_lookup_elem(&oom_kills, &key);
	if (!n) {
		__u64 zero = 0;

		bpf_map_update_elem(&oom_kills, &key, &zero, BPF_NOEXIST);
		n = bpf_map_lookup_elem(&oom_kills, &key);
		if (!n) {
			lose(NA_NODE_LOST_OOM_MAP_FULL);
			return;
		}
	}
	__sync_fetch_and_add(n, 1);
}

SEC("tp_btf/mark_victim")
int BPF_PROG(on_mark_victim, struct task_struct *task, unsigned int uid)
{
	count_victim(task);
	return 0;
}

/* Kernels before 6.8: only the victim's pid. */
SEC("tp_btf/mark_victim")
int BPF_PROG(on_mark_victim_pid, int pid)
{
	struct task_struct *current = (struct task_struct *)bpf_get_current_task();

	if (BPF_CORE_READ(current, pid) != pid) {
		lose(NA_NODE_LOST_OOM_UNKNOWN);
		return 0;
	}
	count_victim(current);
	return 0;
}
