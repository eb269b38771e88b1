#!/usr/bin/env python
"""Train a meta-RL agent and meta-test it; with no flags, RL² on 5-armed Bernoulli bandits.

Run ``python scripts/train.py --help`` for every flag.
"""

import sys

from harness.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
