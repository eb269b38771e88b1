#!/usr/bin/env python
"""Meta-test a saved run or model file on held-out tasks and write the evaluation JSON.

Example: ``python scripts/evaluate.py runs/rl2-bandit-k5-n10-seed0``
"""

import sys

from harness.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
