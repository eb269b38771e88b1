"""Read the finished cells of a comparison back into tables of scores.

Every cell's meta-test left ``evaluation.json`` (summaries, references) and
``evaluation.npz`` (per-task returns, shape ``(num_tasks, points)``). For one agent and env,
the seeds' per-task rows stack into the ``(num_seeds, num_tasks)`` score matrix that
:mod:`harness.statistics` summarizes.

One score per task puts every agent on the scale of one episode:

- agents that adapt within a trial (RL², the memory policy, the stable-baselines3
  baselines): the mean episode return over the whole trial, so exploring episodes count;
- MAML-PPO: the episode return after the adaptation steps it was trained to take. As in
  the MAML paper, the episodes spent adapting are not counted.

References are put on the same scale: a trial-level reference return is divided by the
episodes of a trial.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.comparison.cells import training_wall_seconds
from harness.run import EVALUATION_FILE, METRICS_FILE, PER_TASK_FILE, read_per_task

ADAPTATION_STEP = "adaptation step"
# Reference names that anchor the normalized score, in order of preference.
LOW_REFERENCES = ("random", "random-walk", "stand-still", "zero-action")
HIGH_REFERENCES = ("oracle", "shortest-path")


@dataclass
class CellResult:
    """The meta-test and training record of one finished cell."""

    agent: str
    env: str
    seed: int
    key: str
    evaluation: dict[str, Any]
    returns: np.ndarray  # (num_tasks, points): the adaptation curve of every held-out task
    wall_seconds: float | None
    training_curve: tuple[np.ndarray, np.ndarray] | None = None  # (env steps, episode return)

    @property
    def unit(self) -> str:
        return self.evaluation["adaptation_unit"]

    @property
    def env_steps(self) -> int:
        return int(self.evaluation["num_timesteps"])

    def scores(self) -> np.ndarray:
        """Return the per-task score: see the module docstring."""
        if self.unit == ADAPTATION_STEP:
            return self.returns[:, self.evaluation["trained_adaptation_steps"]]
        return self.returns.mean(axis=1)

    def curve_x(self) -> list[int]:
        """Adaptation-curve positions: steps 0..K, or inner episodes 1..n."""
        offset = 0 if self.unit == ADAPTATION_STEP else 1
        return [index + offset for index in range(self.returns.shape[1])]


def load_cell(folder: Path, agent: str, env: str, seed: int, progress_metric: str) -> CellResult:
    """Read one finished cell's run folder."""
    folder = Path(folder)
    with open(folder / EVALUATION_FILE) as file:
        evaluation = json.load(file)
    returns = read_per_task(folder / PER_TASK_FILE)["returns"]
    result = CellResult(agent, env, seed, folder.name, evaluation, returns,
                        training_wall_seconds(folder))
    result.training_curve = read_training_curve(folder / METRICS_FILE, progress_metric,
                                                episodes_per_score(evaluation, progress_metric))
    return result


def episodes_per_score(evaluation: dict[str, Any], metric: str) -> int:
    """Return the episodes that one value of ``metric`` sums over: a trial's, or 1."""
    if "trial" in metric:
        return int(evaluation.get("episodes_per_trial", 1))
    return 1


def read_training_curve(path: Path, metric: str, divisor: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Return (env steps, metric / divisor) from a run's ``metrics.jsonl``; None if absent."""
    if not path.is_file():
        return None
    steps, values = [], []
    with open(path) as file:
        for line in file:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a killed process
            value = record.get(metric)
            if value is not None and math.isfinite(value):
                steps.append(record["step"])
                values.append(value / divisor)
    if not steps:
        return None
    return np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)


@dataclass
class EnvResults:
    """All finished cells of one env, grouped by agent, with the references' per-episode means."""

    env: str
    cells: dict[str, list[CellResult]] = field(default_factory=dict)
    references: dict[str, float] = field(default_factory=dict)
    num_tasks: int | None = None

    def score_matrix(self, agent: str) -> np.ndarray:
        """Return the ``(num_seeds, num_tasks)`` scores of ``agent``, seeds in order."""
        cells = sorted(self.cells[agent], key=lambda cell: cell.seed)
        return np.stack([cell.scores() for cell in cells])

    def curve_matrices(self, agent: str) -> tuple[list[int], list[np.ndarray]]:
        """Return the curve positions and, per position, the ``(num_seeds, num_tasks)`` returns."""
        cells = sorted(self.cells[agent], key=lambda cell: cell.seed)
        stacked = np.stack([cell.returns for cell in cells])  # (seeds, tasks, points)
        return cells[0].curve_x(), [stacked[:, :, i] for i in range(stacked.shape[2])]

    def normalization_anchors(self) -> tuple[str, str] | None:
        """Return the (low, high) reference names that normalize scores here, if both exist."""
        low = next((name for name in LOW_REFERENCES if name in self.references), None)
        high = next((name for name in HIGH_REFERENCES if name in self.references), None)
        return (low, high) if low and high else None


def reference_means(evaluation: dict[str, Any]) -> dict[str, float]:
    """Return each reference's mean return per episode from one evaluation."""
    divisor = 1 if evaluation["adaptation_unit"] == ADAPTATION_STEP else evaluation["episodes_per_trial"]
    return {name: reference["mean_return"]["mean"] / divisor
            for name, reference in evaluation["references"].items()}


def group_by_env(cells: list[CellResult], env_order: list[str], agent_order: list[str]) -> list[EnvResults]:
    """Group finished cells by env and agent, in the config's order."""
    groups = {env: EnvResults(env) for env in env_order}
    for cell in cells:
        group = groups[cell.env]
        group.cells.setdefault(cell.agent, []).append(cell)
        if not group.references or cell.unit != ADAPTATION_STEP:
            # Every cell of an env saw the same tasks; a trial-level evaluation carries the
            # references' adaptation curves too, so it is preferred.
            group.references = reference_means(cell.evaluation)
        group.num_tasks = cell.evaluation["num_tasks"]
    for group in groups.values():
        group.cells = {agent: group.cells[agent] for agent in agent_order if agent in group.cells}
    return [group for group in groups.values() if group.cells]
