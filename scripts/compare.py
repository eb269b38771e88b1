#!/usr/bin/env python
"""Compare agents across environments and seeds; ``--config quick`` runs the bundled quick grid.

Run ``python scripts/compare.py --help`` for every flag.
"""

import sys

from harness.comparison.cli import compare_main

if __name__ == "__main__":
    sys.exit(compare_main())
