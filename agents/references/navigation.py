"""Non-learned reference policies for 2D navigation (:mod:`envs.navigation`).

References (names in :data:`NAVIGATION_REFERENCE_NAMES`):

- ``oracle``: reads the goal from the task and moves each step by the goal minus the
  position, clipped per coordinate to [-0.1, 0.1]. This policy is optimal, and the
  docstring of :func:`oracle_action` gives the reason.
- ``stand-still``: the zero action, so every step is scored at the origin and an episode
  returns ``-horizon * |goal|``.

Both are deterministic and every episode starts at the origin, so every episode of a trial
returns the same. Their returns are computed in closed form, in float64, for all tasks at
once. The environments keep positions in float32, so a simulated return differs from the
closed form by float32 rounding, which the tests bound by 1e-5 over 100 steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agents.references.base import ReferenceResult, register_references
from envs.navigation import ACTION_BOUND, Navigation2DDistribution, Navigation2DTask

NAVIGATION_REFERENCE_NAMES = ("oracle", "stand-still")


def oracle_action(position, goal) -> np.ndarray:
    """Return the oracle's action: ``goal - position`` clipped per coordinate to [-0.1, 0.1].

    This action is optimal for the sum of rewards, not only greedy. Every action lies in the
    square [-0.1, 0.1]², so after t steps from the origin the reachable positions are the
    square [-0.1 t, 0.1 t]². The closest of them to the goal, in Euclidean distance, is the
    goal clipped per coordinate to that square, because the distance splits into one term per
    axis. Clipping ``goal - position`` moves each coordinate toward the goal at full speed
    until it arrives, so the policy is at exactly that point after every step t. Each reward
    is then the largest any policy can get at step t, and so is their sum.

    Moving along the straight line (scaling ``goal - position`` until its largest coordinate
    is 0.1) is worse whenever the goal is off the axes and the diagonals. For the goal
    (0.3, 0.1) the first step reaches (0.1, 0.033) at distance 0.211 instead of (0.1, 0.1)
    at distance 0.2.

    Args:
        position: current positions, shape (..., 2).
        goal: goals, shape (..., 2), broadcast against ``position``.

    Returns:
        Actions of shape (..., 2), in float64 unless both inputs are float32.
    """
    offset = np.asarray(goal) - np.asarray(position)
    return np.clip(offset, -ACTION_BOUND, ACTION_BOUND)


def oracle_returns(goals, horizon: int) -> np.ndarray:
    """Return the oracle's episode return for each goal, in closed form, float64.

    After t steps the oracle is at the goal clipped to [-0.1 t, 0.1 t]² (see
    :func:`oracle_action`), so coordinate i is still ``max(|g_i| - 0.1 t, 0)`` short of it, and
    the return is ``-sum over t = 1..horizon of sqrt(sum over i of max(|g_i| - 0.1 t, 0)²)``.
    For the goal (0.25, 0) the rewards are -0.15, -0.05, 0, 0, ..., so the return is -0.2.

    Args:
        goals: shape (num_tasks, 2) or (2,).
        horizon: steps per episode, at least 1.

    Returns:
        Shape (num_tasks,), or a 0-d array for one goal of shape (2,).
    """
    if int(horizon) < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    goals = np.asarray(goals, dtype=np.float64)
    if goals.shape[-1:] != (2,):
        raise ValueError(f"goals must have shape (num_tasks, 2) or (2,), got {goals.shape}")
    steps = np.arange(1, int(horizon) + 1, dtype=np.float64)
    # (..., horizon, 2): how far each coordinate still is from the goal after each step.
    remaining = np.maximum(np.abs(goals)[..., None, :] - ACTION_BOUND * steps[:, None], 0.0)
    distances = np.sqrt((remaining**2).sum(axis=-1))
    return -distances.sum(axis=-1)


def stand_still_returns(goals, horizon: int) -> np.ndarray:
    """Return the episode return of the zero action for each goal: ``-horizon * |goal|``, float64."""
    goals = np.asarray(goals, dtype=np.float64)
    return -int(horizon) * np.linalg.norm(goals, axis=-1)


def _repeat_over_episodes(returns: np.ndarray, episodes_per_trial: int) -> ReferenceResult:
    # Every episode of a trial is the same, so each task's return is repeated per episode.
    shape = (returns.shape[0], episodes_per_trial)
    per_episode = np.broadcast_to(returns[:, None], shape).copy()
    return ReferenceResult(
        returns=per_episode,
        exact_value=float(per_episode.sum(axis=1).mean()) if returns.size else None,
    )


@register_references(Navigation2DDistribution)
def navigation_references(
    distribution: Navigation2DDistribution, tasks: Sequence[Navigation2DTask], seed: int
) -> dict[str, ReferenceResult]:
    """Run every 2D navigation reference for one trial on each task.

    Both references are deterministic, so ``seed`` is unused. ``exact_value`` is the mean
    trial return over ``tasks``, exact because no return depends on chance.
    """
    del seed
    goals = distribution.task_params(tasks).astype(np.float64)
    episodes = distribution.episodes_per_trial
    return {
        "oracle": _repeat_over_episodes(oracle_returns(goals, distribution.horizon), episodes),
        "stand-still": _repeat_over_episodes(stand_still_returns(goals, distribution.horizon), episodes),
    }
