"""Train and meta-test one cell of a comparison, in whichever process a backend gives it.

A cell is one run folder, ``<comparison>/runs/<agent>-<env>-seed<seed>/``, written by
:func:`harness.training.train`. Next to the usual run files the cell keeps ``cell.json``:
its status and the wall time of each training session. A cell is

- finished when ``evaluation.json`` and ``evaluation.npz`` exist and were made with the
  comparison's evaluation settings: it is reused and never trained again;
- half-finished when it has a checkpoint: training resumes from it;
- new otherwise. A folder with neither (a cell stopped before its first checkpoint) has
  nothing to keep, so the cell starts over.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from harness.config import TrainConfig
from harness.run import RunDirectory, write_json_atomic

logger = logging.getLogger(__name__)

CELL_FILE = "cell.json"


def evaluation_matches(evaluation: dict[str, Any], config: TrainConfig) -> bool:
    """Return whether ``evaluation`` was made with ``config``'s meta-test settings."""
    distribution = config.validate()
    num_tasks = config.eval_tasks or distribution.num_test_tasks
    return (evaluation.get("num_tasks") == num_tasks and evaluation.get("seed") == config.eval_seed
            and evaluation.get("deterministic") == config.eval_deterministic)


def finished_evaluation(config: TrainConfig) -> dict[str, Any] | None:
    """Return the run's evaluation if the run is finished for ``config``, else None."""
    run = RunDirectory(config.run_dir())
    if not (run.evaluation_path.is_file() and run.per_task_path.is_file()):
        return None
    with open(run.evaluation_path) as file:
        evaluation = json.load(file)
    return evaluation if evaluation_matches(evaluation, config) else None


def run_cell(train_dict: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume, or reuse) the run that ``train_dict`` describes and meta-test it.

    Args:
        train_dict: :meth:`TrainConfig.to_dict` of the cell.

    Returns:
        A JSON-ready dict: ``status`` (``finished``, ``reused``, ``interrupted`` or
        ``failed``), ``run_dir``, and for a failure its ``error`` and ``traceback``. Errors
        never escape, so that one failing cell cannot stop the others.
    """
    config = TrainConfig.from_dict(train_dict)
    run = RunDirectory(config.run_dir())
    try:
        return _run(config, run)
    except Exception as error:  # a failing cell is reported, not raised
        logger.exception("cell %s failed", run.name)
        return {"status": "failed", "run_dir": str(run.path), "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc()}


def _run(config: TrainConfig, run: RunDirectory) -> dict[str, Any]:
    from harness.training import train

    if finished_evaluation(config) is not None:
        logger.info("cell %s is finished; reusing it", run.name)
        return {"status": "reused", "run_dir": str(run.path)}
    record = read_cell_record(run.path)
    if run.has_checkpoint():
        config.resume = True
    elif run.path.exists():
        logger.info("cell %s stopped before its first checkpoint; starting it over", run.name)
        shutil.rmtree(run.path)
        record = {"sessions": []}
    start = time.perf_counter()
    result = train(config)
    record["sessions"].append({"wall_seconds": time.perf_counter() - start,
                               "num_timesteps": int(result.agent.num_timesteps)})
    record["status"] = "interrupted" if result.interrupted else "finished"
    write_json_atomic(record, run.path / CELL_FILE)
    if result.evaluation is not None:
        score = result.evaluation["mean_return"]
        logger.info("cell %s %s after %d env steps in %.0f s; evaluation.json mean_return %.3f [%.3f, %.3f]",
                    run.name, record["status"], result.agent.num_timesteps,
                    record["sessions"][-1]["wall_seconds"], score["mean"], score["ci_low"],
                    score["ci_high"])
    return {"status": record["status"], "run_dir": str(run.path)}


def read_cell_record(folder: Path) -> dict[str, Any]:
    """Return a cell's ``cell.json``, or an empty record for a run trained outside a comparison."""
    path = Path(folder) / CELL_FILE
    if path.is_file():
        with open(path) as file:
            return json.load(file)
    return {"sessions": []}


def training_wall_seconds(folder: Path) -> float | None:
    """Return the summed wall time of a cell's training sessions, or None when unknown."""
    sessions = read_cell_record(folder)["sessions"]
    return sum(session["wall_seconds"] for session in sessions) if sessions else None

