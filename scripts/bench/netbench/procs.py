"""Processes the suite starts, and what /proc says about them.

Every child runs in its own session (so a stop reaches its whole process
group) and gets SIGKILL if the suite itself dies (PR_SET_PDEATHSIG), so a
killed run leaves no servers, load generators or tracers behind. Every
wait is bounded.
"""
import ctypes
import os
import signal
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class BenchError(RuntimeError):
    """A step of the suite failed; the message says which."""


def _die_with_parent():
    # Runs in the child between fork and exec.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _wrap_netns(cmd, netns):
    return ["ip", "netns", "exec", netns, *cmd] if netns else list(cmd)


class Proc:
    """A child process, stopped (group-wide, bounded) by `stop()` or on exit
    of a `with` block."""

    def __init__(self, name, cmd, *, stdout=None, stderr=None, stdin=subprocess.DEVNULL,
                 netns=None, env=None, text=True):
        self.name = name
        self.cmd = _wrap_netns(cmd, netns)
        self.p = subprocess.Popen(
            self.cmd, stdout=stdout, stderr=stderr, stdin=stdin, env=env, text=text,
            start_new_session=True, preexec_fn=_die_with_parent)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{self.name} did not finish within {timeout:.0f} s") from None

    def stop(self, sig=signal.SIGTERM, grace=10.0):
        """Signal the group, wait up to `grace` s, then SIGKILL. Returns the exit code."""
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(timeout=10)
        else:
            # The leader is gone; helpers in its group may not be.
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return self.p.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run(cmd, timeout, netns=None, check=True):
    """Runs a command to completion (bounded); returns CompletedProcess with text output."""
    cmd = _wrap_netns(cmd, netns)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           start_new_session=True, preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(cmd)}: no result within {timeout:.0f} s") from None
    if check and r.returncode != 0:
        raise BenchError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()[-500:]}")
    return r


def cpu_seconds(pid):
    """User + system CPU of a live process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _task_ns(pid):
    """{tid: on-CPU ns} of a live process's threads (/proc/<pid>/task/*/schedstat)."""
    out = {}
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return out


class CpuMeter:
    """CPU time (user + sys) a live process uses from now on.

    /proc/<pid>/stat counts in 10 ms ticks, too coarse for an agent that
    uses milliseconds per second; the threads' schedstat run time is in ns
    but loses a thread that exits meanwhile. The larger of the two is used:
    each can only undercount."""

    def __init__(self, pid):
        self.pid = pid
        self.ticks0 = cpu_seconds(pid)
        self.tasks0 = _task_ns(pid)

    def seconds(self):
        ticks = cpu_seconds(self.pid) - self.ticks0
        tasks = _task_ns(self.pid)
        ns = sum(v - self.tasks0.get(tid, 0) for tid, v in tasks.items())
        return max(ticks, ns / 1e9)


def status_kib(pid, key):
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {key} for pid {pid}")


def wait_until(cond, timeout, what, step=0.05, alive=None):
    """Polls `cond()` until true; raises after `timeout` s or when `alive()` is false."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if alive is not None and not alive():
            raise BenchError(f"{what}: the process exited")
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {timeout:.0f} s")
        time.sleep(step)


def free_port(kind=0):
    """A currently free TCP (kind=0) or UDP (kind=1) port on 127.0.0.1."""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind else socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
