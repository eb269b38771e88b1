"""Non-learned reference policies for procedural mazes, with :mod:`envs.mazes`'s rewards.

References (names in :data:`MAZE_REFERENCE_NAMES`):

- ``shortest-path``: the oracle, which reads the layout and the goal from the task and walks
  the shortest path, found by breadth-first search. Every episode of a trial is the same.
- ``random-walk``: uniformly random actions until the goal or the time limit.

An episode of L steps that reaches the goal returns ``goal_reward - step_cost * L``. An
episode cut off at ``max_episode_steps`` returns ``-step_cost * max_episode_steps``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from agents.references.base import ReferenceResult, register_references
from envs.mazes import ACTION_STEPS, MazeDistribution, MazeTask

MAZE_REFERENCE_NAMES = ("shortest-path", "random-walk")


def shortest_path_length(task: MazeTask) -> int:
    """Return the number of steps on the shortest path from the task's start to its goal.

    Raises:
        ValueError: when no path joins start and goal, which happens only in a maze built
            by hand, because generated mazes connect every open square.
    """
    walls = task.wall_grid()
    side = task.side
    distances = np.full(side * side, -1, dtype=np.int64)
    start = task.start[0] * side + task.start[1]
    goal = task.goal[0] * side + task.goal[1]
    moves = [row * side + col for row, col in ACTION_STEPS]
    flat_walls = walls.ravel()

    distances[start] = 0
    queue = deque([start])
    while queue:
        square = queue.popleft()
        if square == goal:
            return int(distances[square])
        for move in moves:
            # The border wall keeps every neighbour of an open square inside the grid.
            neighbour = square + move
            if not flat_walls[neighbour] and distances[neighbour] < 0:
                distances[neighbour] = distances[square] + 1
                queue.append(neighbour)
    raise ValueError(f"no path joins start {task.start} and goal {task.goal} in this maze")


def shortest_path_reference(
    distribution: MazeDistribution, tasks: Sequence[MazeTask]
) -> ReferenceResult:
    """Run the shortest-path oracle for one trial on each task.

    An episode's length is the path length capped at ``max_episode_steps``, as in the
    environment.
    """
    path_lengths = np.array([shortest_path_length(task) for task in tasks], dtype=np.int64)
    limit = distribution.max_episode_steps
    reached = path_lengths <= limit
    lengths = np.minimum(path_lengths, limit)
    returns = np.where(reached, distribution.goal_reward, 0.0) - distribution.step_cost * lengths
    shape = (len(tasks), distribution.episodes_per_trial)
    return ReferenceResult(
        returns=np.broadcast_to(returns[:, None], shape).copy(),
        lengths=np.broadcast_to(lengths[:, None], shape).copy(),
    )


def random_walk_reference(
    distribution: MazeDistribution, tasks: Sequence[MazeTask], rng: np.random.Generator
) -> ReferenceResult:
    """Run a uniform random walk for one trial on each task.

    All ``num_tasks * episodes_per_trial`` episodes advance together, one vectorized step per
    time step, with actions drawn from ``rng``.
    """
    num_tasks, num_episodes = len(tasks), distribution.episodes_per_trial
    side = distribution.size + 2
    num_squares = side * side
    params = distribution.task_params(tasks).astype(np.int64)
    # One row per episode: task 0's episodes first, then task 1's, and so on.
    walls = np.repeat(params[:, :num_squares] != 0, num_episodes, axis=0)
    positions = np.repeat(params[:, num_squares], num_episodes)
    goals = np.repeat(params[:, num_squares + 1], num_episodes)
    moves = np.array([row * side + col for row, col in ACTION_STEPS])

    rows = np.arange(num_tasks * num_episodes)
    lengths = np.zeros(rows.size, dtype=np.int64)
    reached = np.zeros(rows.size, dtype=bool)
    active = np.ones(rows.size, dtype=bool)
    for _ in range(distribution.max_episode_steps):
        targets = positions + moves[rng.integers(len(moves), size=rows.size)]
        moved = active & ~walls[rows, targets]
        positions = np.where(moved, targets, positions)
        lengths += active
        arrived = active & (positions == goals)
        reached |= arrived
        active &= ~arrived
        if not active.any():
            break

    returns = np.where(reached, distribution.goal_reward, 0.0) - distribution.step_cost * lengths
    return ReferenceResult(
        returns=returns.reshape(num_tasks, num_episodes),
        lengths=lengths.reshape(num_tasks, num_episodes),
    )


@register_references(MazeDistribution)
def maze_references(
    distribution: MazeDistribution, tasks: Sequence[MazeTask], seed: int
) -> dict[str, ReferenceResult]:
    """Run every maze reference for one trial on each task. Equal seeds give equal results."""
    return {
        "shortest-path": shortest_path_reference(distribution, tasks),
        "random-walk": random_walk_reference(distribution, tasks, np.random.default_rng(seed)),
    }
