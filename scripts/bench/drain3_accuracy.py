#!/usr/bin/env python3
"""drain3 (PyPI) on the log corpus, next to netagent's miner.

Reads the files the accuracy benchmark writes (tests/log_accuracy.rs, bench:
target/log-accuracy/<file>.tsv, one `event<TAB>message` per line, the message
as netagent clusters it) and prints one JSON object, per file and per
configuration:

- clusters, and grouping accuracy (the share of lines whose cluster holds
  exactly the lines of their event);
- lines per second on one core (the miner alone, a fresh one per pass);
- bytes per cluster: memory the miner holds after the file (tracemalloc),
  divided by its clusters.

Configurations: `defaults` is TemplateMiner with drain3's defaults and no
configuration file (similarity 0.4, depth 4, 100 children, no masking);
`masked` adds the masking instructions of drain3's example configuration
(examples/drain3.ini: ids, IPs, hex sequences, hex numbers, numbers).

Run by the benchmark with DRAIN3_PYTHON or the venv scripts/setup.sh --bench
makes (target/bench-tools/venv).
"""

import json
import logging
import sys
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

# examples/drain3.ini of drain3, less its `executed cmd` example.
EXAMPLE_MASKING = [
    (r"((?<=[^A-Za-z0-9])|^)(([0-9a-f]{2,}:){3,}([0-9a-f]{2,}))((?=[^A-Za-z0-9])|$)", "ID"),
    (r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})((?=[^A-Za-z0-9])|$)", "IP"),
    (r"((?<=[^A-Za-z0-9])|^)([0-9a-f]{6,} ?){3,}((?=[^A-Za-z0-9])|$)", "SEQ"),
    (r"((?<=[^A-Za-z0-9])|^)([0-9A-F]{4} ?){4,}((?=[^A-Za-z0-9])|$)", "SEQ"),
    (r"((?<=[^A-Za-z0-9])|^)(0x[a-f0-9A-F]+)((?=[^A-Za-z0-9])|$)", "HEX"),
    (r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)", "NUM"),
]


def miner(masked: bool) -> TemplateMiner:
    config = TemplateMinerConfig()  # the defaults, not a drain3.ini
    if masked:
        config.masking_instructions = [MaskingInstruction(p, m) for p, m in EXAMPLE_MASKING]
    return TemplateMiner(config=config)


def grouping_accuracy(truth, predicted):
    size = defaultdict(int)
    members = defaultdict(list)
    for i, (t, p) in enumerate(zip(truth, predicted)):
        size[t] += 1
        members[p].append(i)
    correct = 0
    for lines in members.values():
        event = truth[lines[0]]
        if all(truth[i] == event for i in lines) and size[event] == len(lines):
            correct += len(lines)
    return correct / max(len(truth), 1)


def run(messages, masked):
    m = miner(masked)
    return [m.add_log_message(msg)["cluster_id"] for msg in messages], m


def measure(path: Path, masked: bool) -> dict:
    truth, messages = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        event, _, message = line.partition("\t")
        truth.append(event)
        messages.append(message)
    predicted, m = run(messages, masked)
    clusters = len(m.drain.clusters)
    # Throughput: fresh miners until half a second of work.
    lines, started = 0, time.perf_counter()
    while time.perf_counter() - started < 0.5:
        run(messages, masked)
        lines += len(messages)
    lines_per_s = lines / (time.perf_counter() - started)
    # Memory held by a miner that has seen the file.
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    held = miner(masked)
    for msg in messages:
        held.add_log_message(msg)
    now = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del held
    return {
        "clusters": clusters,
        "accuracy": grouping_accuracy(truth, predicted),
        "lines_per_s": lines_per_s,
        "bytes_per_cluster": (now - base) / max(clusters, 1),
    }


def main():
    logging.disable(logging.CRITICAL)
    out = {}
    for arg in sys.argv[1:]:
        path = Path(arg)
        out[path.stem] = {name: measure(path, masked) for name, masked in (("defaults", False), ("masked", True))}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
