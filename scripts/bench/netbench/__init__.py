"""netagent benchmark suite: see scripts/bench/suite.py and docs/BENCHMARKS.md."""
