"""Process entry point of the local backend: ``python -m harness.comparison.worker SPEC RESULT``.

SPEC is a JSON file holding a cell's :meth:`TrainConfig.to_dict`; the worker runs
:func:`harness.comparison.cells.run_cell` and writes its result to the JSON file RESULT. The
exit status is 0 for a finished or reused cell, 1 for a failure and 130 or 143 when a signal
stopped training (after its checkpoint was written).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from harness.comparison.cells import run_cell
from harness.run import write_json_atomic

_EXIT_CODES = {"finished": 0, "reused": 0, "failed": 1, "interrupted": 130}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m harness.comparison.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with open(argv[0]) as file:
        spec = json.load(file)
    result = run_cell(spec)
    write_json_atomic(result, Path(argv[1]))
    if result["status"] == "failed":
        print(result["traceback"], file=sys.stderr)
    return _EXIT_CODES[result["status"]]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
