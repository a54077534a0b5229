"""Kernel cost of BPF programs: run statistics and which programs a tool owns.

Run statistics (run_cnt, run_time_ns per program) are kept by the kernel
only while stats are enabled. `Stats` turns them on with BPF_ENABLE_STATS,
which returns a file descriptor: the kernel counts while any such fd is
open, so a crashed suite cannot leave them on (the sysctl
kernel.bpf_stats_enabled is the fallback, restored on exit).

Programs are attributed to a tool by the file descriptors the tool holds
(`/proc/<pid>/fdinfo/*` names a `prog_id` for program and link fds), not
by name: other netagent instances on the same host must not count.
"""
import ctypes
import json
import os
import platform

from .procs import BenchError, run

BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0
SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


class Stats:
    """Context manager: BPF run-time statistics on while inside."""

    def __init__(self):
        self.fd = None
        self.old_sysctl = None

    def __enter__(self):
        if SYS_BPF is not None:
            libc = ctypes.CDLL(None, use_errno=True)
            attr = (ctypes.c_uint32 * 2)(BPF_STATS_RUN_TIME, 0)
            fd = libc.syscall(SYS_BPF, BPF_ENABLE_STATS, ctypes.byref(attr), ctypes.sizeof(attr))
            if fd >= 0:
                self.fd = fd
                return self
        with open(SYSCTL) as f:
            self.old_sysctl = f.read().strip()
        with open(SYSCTL, "w") as f:
            f.write("1")
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.old_sysctl is not None:
            with open(SYSCTL, "w") as f:
                f.write(self.old_sysctl)
            self.old_sysctl = None


def fdinfo_ids(pid, key):
    """IDs under `key` ("prog_id:", "map_id:") in a process's fdinfo: the
    BPF programs or maps it holds."""
    ids = set()
    base = f"/proc/{pid}/fdinfo"
    try:
        fds = os.listdir(base)
    except FileNotFoundError:
        raise BenchError(f"process {pid} is gone") from None
    for fd in fds:
        try:
            with open(f"{base}/{fd}") as f:
                for line in f:
                    if line.startswith(key):
                        ids.add(int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return ids


def prog_ids_of(pid):
    """IDs of the BPF programs a process holds (program or link fds)."""
    return fdinfo_ids(pid, "prog_id:")


def programs(ids):
    """{id: {"name", "type", "run_cnt", "run_time_ns"}} for these program ids."""
    out = run(["bpftool", "-j", "prog", "show"], timeout=30).stdout
    table = {}
    for p in json.loads(out or "[]"):
        if p.get("id") in ids:
            table[p["id"]] = {
                "name": p.get("name", "?"),
                "type": p.get("type", "?"),
                "run_cnt": p.get("run_cnt", 0),
                "run_time_ns": p.get("run_time_ns", 0),
            }
    return table


def delta(before, after):
    """Per-program runs and time between two `programs()` snapshots, keyed by
    "name" (several programs of one name, e.g. TC on two interfaces, add up)."""
    per = {}
    for pid, a in after.items():
        b = before.get(pid, {"run_cnt": 0, "run_time_ns": 0})
        d = per.setdefault(a["name"], {"runs": 0, "ns": 0})
        d["runs"] += a["run_cnt"] - b["run_cnt"]
        d["ns"] += a["run_time_ns"] - b["run_time_ns"]
    return per


def summary(per):
    """Total runs, total ns and mean ns/run over all programs of a tool."""
    runs = sum(d["runs"] for d in per.values())
    ns = sum(d["ns"] for d in per.values())
    return {"runs": runs, "ns": ns, "ns_per_run": ns / runs if runs else None}
