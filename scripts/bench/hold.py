#!/usr/bin/env python3
"""Opens N TCP connections on loopback and holds them open, for the
"cost vs open connections" curve. Both ends live in this process, whose
comm is `bench-hold` (2 fds per connection: the suite runs several
holders, on different ports, for large counts). Listeners on 127.0.0.1 … 127.0.0.K (K = N / 20,000
rounded up) let the kernel reuse ephemeral ports across peers, so 100,000
connections fit one ephemeral range.

Prints {"open": N, "seconds": T} once every connection is established,
then holds them until stdin closes or --max-seconds pass.
"""
import argparse
import ctypes
import json
import resource
import select
import socket
import sys
import threading
import time

PER_ADDR = 20_000


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--conns", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()
    ctypes.CDLL(None).prctl(15, b"bench-hold", 0, 0, 0)  # PR_SET_NAME
    need = 2 * args.conns + 100
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and need > hard:
        # Raising the hard limit needs CAP_SYS_RESOURCE (containers often lack it):
        # the suite starts several holders instead.
        sys.exit(f"hold: {args.conns} connections need {need} fds, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    addrs = [f"127.0.0.{i + 1}" for i in range((args.conns + PER_ADDR - 1) // PER_ADDR)]
    listeners = []
    for a in addrs:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((a, args.port))
        s.listen(4096)
        listeners.append(s)

    accepted = []
    done = threading.Event()

    def accept_all():
        while not done.is_set() and len(accepted) < args.conns:
            ready, _, _ = select.select(listeners, [], [], 0.2)
            for s in ready:
                for _ in range(256):
                    try:
                        s.setblocking(False)
                        c, _ = s.accept()
                    except BlockingIOError:
                        break
                    accepted.append(c)

    t0 = time.monotonic()
    acceptor = threading.Thread(target=accept_all, daemon=True)
    acceptor.start()
    clients = []
    deadline = t0 + args.max_seconds
    for i in range(args.conns):
        if time.monotonic() > deadline:
            sys.exit("hold: connects did not finish in time")
        c = socket.socket()
        c.settimeout(10)
        c.connect((addrs[i // PER_ADDR], args.port))
        clients.append(c)
    while len(accepted) < args.conns:
        if time.monotonic() > deadline:
            sys.exit(f"hold: only {len(accepted)} of {args.conns} accepted")
        time.sleep(0.05)
    done.set()
    print(json.dumps({"open": len(clients), "seconds": round(time.monotonic() - t0, 2)}),
          flush=True)
    # Hold until the suite closes our stdin (or the time bound).
    select.select([sys.stdin], [], [], max(deadline - time.monotonic(), 0))


if __name__ == "__main__":
    main()
