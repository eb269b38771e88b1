"""Reference results and the registry of reference runners per task-distribution class."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from envs.tasks import Task, TaskDistribution


@dataclass
class ReferenceResult:
    """The per-episode results of one reference policy on a list of tasks.

    Attributes:
        returns: return of every inner episode, ``(num_tasks, episodes_per_trial)``.
        lengths: steps of every inner episode, same shape; None where every episode has the
            same fixed length (bandits, tabular MDPs).
        exact_value: the expected trial return in closed form, where one is known.
    """

    returns: np.ndarray
    lengths: np.ndarray | None = None
    exact_value: float | None = None


ReferenceRunner = Callable[[TaskDistribution, Sequence[Task], int], dict[str, ReferenceResult]]

_RUNNERS: dict[type, ReferenceRunner] = {}


def register_references(distribution_class: type):
    """Register the function that runs every reference of ``distribution_class`` on tasks.

    The function takes ``(distribution, tasks, seed)`` and returns a dict from reference name
    to :class:`ReferenceResult`; equal seeds must give equal results.
    """

    def decorator(runner: ReferenceRunner) -> ReferenceRunner:
        _RUNNERS[distribution_class] = runner
        return runner

    return decorator


def run_references(
    distribution: TaskDistribution, tasks: Sequence[Task], seed: int
) -> dict[str, ReferenceResult]:
    """Run the references registered for the distribution's class; {} for families without any."""
    for cls in type(distribution).__mro__:
        if cls in _RUNNERS:
            return _RUNNERS[cls](distribution, tasks, seed)
    return {}
