"""The workloads, each bounded by time: servers started once per suite,
clients run once per (round, configuration).

(a) churn     HTTP with `Connection: close`: wrk -> nginx-light on loopback
(b) keepalive HTTP keep-alive request/response: wrk -> nginx-light
(c) udp_rr    UDP request/response (ping-pong): sockperf
(d) bulk      bulk TCP transfer: iperf3
(a') churn_netns  (a) between two network-namespace hosts over veth
(e) udp_drop  UDP datagrams to a closed loopback port: every one a kernel drop
"""
import json
import os
import re
import socket
import sys

from .procs import BenchError, Proc, free_port, run, wait_until

WRK_CONNS = 32
NETNS_SERVER = "10.204.0.2"
NETNS_CLIENT = "10.204.0.1"


def nginx_conf(tmp, listen):
    return f"""worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  keepalive_requests 10000000;
  server {{
    listen {listen} backlog=4096 reuseport;
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""


def tcp_open(host, port, netns=None):
    if netns:
        # bash's /dev/tcp connects from inside the namespace.
        return run(["bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"], timeout=5,
                   netns=netns, check=False).returncode == 0
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


class Nginx:
    """nginx-light with its own config, pid file and logs in a temp dir."""

    def __init__(self, tmp, host, port, log, netns=None):
        d = os.path.join(tmp, f"nginx-{host}-{port}")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(d, f"{host}:{port}"))
        self.url = f"http://{host}:{port}/"
        self.proc = Proc("nginx", ["nginx", "-p", d, "-c", conf], stdout=log, stderr=log,
                         netns=netns)
        wait_until(lambda: tcp_open(host, port, netns), 20, "nginx listening",
                   step=0.1, alive=self.proc.alive)

    def stop(self):
        self.proc.stop()


class SockperfServer:
    def __init__(self, port, log):
        self.port = port
        self.proc = Proc("sockperf", ["sockperf", "server", "-i", "127.0.0.1", "-p", str(port)],
                         stdout=log, stderr=log)

    def stop(self):
        self.proc.stop()


class Iperf3Server:
    def __init__(self, port, log):
        self.port = port
        self.proc = Proc("iperf3", ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port)],
                         stdout=log, stderr=log)
        wait_until(lambda: tcp_open("127.0.0.1", port), 20, "iperf3 listening",
                   step=0.1, alive=self.proc.alive)

    def stop(self):
        self.proc.stop()


def wrk(url, seconds, close, netns=None):
    cmd = ["wrk", "-t1", f"-c{WRK_CONNS}", f"-d{seconds}s", "--timeout", "5s"]
    if close:
        cmd += ["-H", "Connection: close"]
    out = run(cmd + [url], timeout=seconds + 60, netns=netns).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or not rps:
        raise BenchError(f"wrk printed no result: {out[-400:]}")
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return {"rate": float(rps.group(1)), "ops": int(m.group(1)), "errors": errors}


def sockperf(port, seconds):
    out = run(["sockperf", "ping-pong", "-i", "127.0.0.1", "-p", str(port), "-t", str(seconds)],
              timeout=seconds + 60)
    text = out.stdout + out.stderr
    m = re.search(r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); "
                  r"ReceivedMessages=(\d+)", text)
    if not m or int(m.group(3)) == 0:
        raise BenchError(f"sockperf printed no result: {text[-400:]}")
    t, sent, recv = float(m.group(1)), int(m.group(2)), int(m.group(3))
    return {"rate": recv / t, "ops": recv, "errors": sent - recv}


# Datagrams to a loopback port nobody listens on, for `seconds`: every one
# is freed by the kernel as a drop (`no_socket`), so the drops program runs
# once per datagram. One unconnected socket: the ICMP errors the kernel
# sends back (rate-limited) are not reported to it.
UDP_DROP_SENDER = """
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dst, payload, n = ("127.0.0.1", port), b"x" * 64, 0
start = time.monotonic()
end = start + seconds
while time.monotonic() < end:
    for _ in range(1000):
        s.sendto(payload, dst)
    n += 1000
print(n, time.monotonic() - start)
"""


def udp_drop(port, seconds):
    out = run([sys.executable, "-c", UDP_DROP_SENDER, str(port), str(seconds)],
              timeout=seconds + 60)
    n, t = out.stdout.split()
    return {"rate": int(n) / float(t), "ops": int(n), "errors": 0}


def iperf3(port, seconds):
    out = run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
              timeout=seconds + 60, check=False)
    try:
        r = json.loads(out.stdout)
        end = r["end"]["sum_received"]
    except (ValueError, KeyError):
        raise BenchError(f"iperf3 printed no result: {out.stdout[-400:]} {out.stderr[-200:]}")
    return {"rate": end["bits_per_second"] / 1e9, "ops": int(end["bytes"]), "errors": 0}


class NetnsPair:
    """Two network namespaces joined by a veth pair created inside them
    (never in the root namespace); deleted on stop."""

    def __init__(self, tag):
        self.a = f"nb-{tag}-a"
        self.b = f"nb-{tag}-b"
        for ns in (self.a, self.b):
            run(["ip", "netns", "del", ns], timeout=30, check=False)
            run(["ip", "netns", "add", ns], timeout=30)
        run(["ip", "link", "add", "nbv0", "netns", self.a, "type", "veth",
             "peer", "name", "nbv1", "netns", self.b], timeout=30)
        for ns, dev, addr in ((self.a, "nbv0", NETNS_CLIENT), (self.b, "nbv1", NETNS_SERVER)):
            run(["ip", "addr", "add", f"{addr}/30", "dev", dev], timeout=30, netns=ns)
            run(["ip", "link", "set", dev, "up"], timeout=30, netns=ns)
            run(["ip", "link", "set", "lo", "up"], timeout=30, netns=ns)

    def stop(self):
        for ns in (self.a, self.b):
            # Whatever still runs inside (normally nothing: our Procs are stopped first).
            pids = run(["ip", "netns", "pids", ns], timeout=30, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", ns], timeout=30, check=False)


class Workloads:
    """Starts every server once; `run(name, seconds)` runs one client."""

    NAMES = ("churn", "keepalive", "udp_rr", "bulk", "churn_netns", "udp_drop")

    def __init__(self, tmp, log, tag, stack):
        self.nginx = Nginx(tmp, "127.0.0.1", free_port(), log)
        stack.callback(self.nginx.stop)
        self.sockperf = SockperfServer(free_port(1), log)
        stack.callback(self.sockperf.stop)
        self.iperf3 = Iperf3Server(free_port(), log)
        stack.callback(self.iperf3.stop)
        self.ns = NetnsPair(tag)
        stack.callback(self.ns.stop)
        self.nginx_ns = Nginx(tmp, NETNS_SERVER, 80, log, netns=self.ns.b)
        # Free now and bound by nothing later (nothing else here binds it).
        self.closed_port = free_port()
        stack.callback(self.nginx_ns.stop)

    def run(self, name, seconds):
        if name == "churn":
            return wrk(self.nginx.url, seconds, close=True)
        if name == "keepalive":
            return wrk(self.nginx.url, seconds, close=False)
        if name == "udp_rr":
            return sockperf(self.sockperf.port, seconds)
        if name == "bulk":
            return iperf3(self.iperf3.port, seconds)
        if name == "udp_drop":
            return udp_drop(self.closed_port, seconds)
        if name == "churn_netns":
            return wrk(self.nginx_ns.url, seconds, close=True, netns=self.ns.a)
        raise BenchError(f"unknown workload {name}")
