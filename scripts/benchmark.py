#!/usr/bin/env python
"""Benchmark AdaptRL's RL² against sb3-contrib's RecurrentPPO on 5-armed Bernoulli bandits.

Prints training throughput and time to a held-out return target for both learners, measured
in one run on this machine. Run ``python scripts/benchmark.py --help`` for every flag.
"""

import sys

from harness.benchmark import benchmark_main

if __name__ == "__main__":
    sys.exit(benchmark_main())
