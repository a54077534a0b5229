#!/usr/bin/env python3
"""Local receivers for the benchmark's "every feature on" configuration:
an OTLP/HTTP endpoint (answers every POST with 200 and an empty protobuf
message, which is a valid Export*ServiceResponse) and a DogStatsD UDP
socket. Both only count what arrives.

Prints {"otlp": PORT, "statsd": PORT} on start and, on SIGTERM or after
--max-seconds, the counts as one JSON line.
"""
import argparse
import http.server
import json
import signal
import socket
import sys
import threading

counts = {"otlp_requests": 0, "otlp_bytes": 0, "statsd_datagrams": 0, "statsd_bytes": 0}
lock = threading.Lock()


class Otlp(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        self.rfile.read(n)
        with lock:
            counts["otlp_requests"] += 1
            counts["otlp_bytes"] += n
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def statsd(sock):
    while True:
        data = sock.recv(65536)
        with lock:
            counts["statsd_datagrams"] += 1
            counts["statsd_bytes"] += len(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-seconds", type=float, default=3600)
    args = ap.parse_args()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Otlp)
    httpd.daemon_threads = True
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    threading.Thread(target=statsd, args=(udp,), daemon=True).start()
    print(json.dumps({"otlp": httpd.server_address[1], "statsd": udp.getsockname()[1]}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait(args.max_seconds)
    with lock:
        print(json.dumps(counts), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
