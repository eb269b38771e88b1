#!/usr/bin/env python
"""Pool a run's meta-tests over evaluation seeds and write evaluation-pooled.json.

Example, after ``python scripts/evaluate.py RUN --eval-seed K`` for K = 1 to 4:
``python scripts/pool_evaluations.py runs/rl2-maze-9x9-n16-seed0``
"""

import sys

from harness.cli import pool_main

if __name__ == "__main__":
    sys.exit(pool_main())
