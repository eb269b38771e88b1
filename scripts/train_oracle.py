#!/usr/bin/env python
"""Train PPO with the task visible and record its meta-test return as the oracle reference.

Run ``python scripts/train_oracle.py --help`` for every flag.
"""

import sys

from harness.oracle import oracle_main

if __name__ == "__main__":
    sys.exit(oracle_main())
