"""Non-learned reference policies for procedural mazes, with :mod:`envs.mazes`'s rewards.

References (names in :data:`MAZE_REFERENCE_NAMES`):

- ``shortest-path``: the oracle, which reads the layout and the goal from the task and walks
  the shortest path, found by breadth-first search. Every episode of a trial is the same.
- ``random-walk``: uniformly random actions until the goal or the time limit.
- ``depth-first``: a non-learned explorer with a perfect memory of what it has seen. It sees
  the same window as the agents and remembers every square it has seen and stood on. While
  the goal has not been seen it explores depth first: it steps to an open neighbour it has
  not stood on, in an order drawn per task, and from a dead end walks back to the nearest
  open square it has seen but not stood on. Once a path to the goal through squares it has
  seen is known, it walks the shortest such path. The memory lasts the whole trial, so from
  the second episode it walks straight to the goal, along the shortest path of the maze when
  that path is known. Its episode 2 to episode 1 step ratio shows what remembering the first
  episode is worth in these mazes. It needs a window of at least 3 x 3, which shows the
  neighbouring squares, and is left out for a 1 x 1 window.

An episode of L steps that reaches the goal returns ``goal_reward - step_cost * L``. An
episode cut off at ``max_episode_steps`` returns ``-step_cost * max_episode_steps``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from agents.references.base import ReferenceResult, register_references
from envs.mazes import ACTION_STEPS, MazeDistribution, MazeTask

MAZE_REFERENCE_NAMES = ("shortest-path", "random-walk", "depth-first")


def shortest_path_length(task: MazeTask) -> int:
    """Return the number of steps on the shortest path from the task's start to its goal.

    Raises:
        ValueError: when no path joins start and goal, which happens only in a maze built
            by hand, because generated mazes connect every open square.
    """
    side = task.side
    goal = task.goal[0] * side + task.goal[1]
    path = _shortest_path(~task.wall_grid().ravel(), side, task.start[0] * side + task.start[1],
                          lambda square: square == goal)
    if path is None:
        raise ValueError(f"no path joins start {task.start} and goal {task.goal} in this maze")
    return len(path)


def _shortest_path(
    open_squares: np.ndarray, side: int, start: int, is_target: Callable[[int], bool]
) -> list[int] | None:
    """Return the squares after ``start`` on a shortest path to the nearest target square.

    Breadth-first search from ``start``; ``start`` itself is never a target.

    Args:
        open_squares: flat bool grid, True where a step may go. The border must be closed,
            so that every neighbour of an open square lies inside the grid.
        side: squares per grid row.
        start: flat index of the first square.
        is_target: whether a flat square index ends the search.

    Returns:
        The path's squares in order, ending at the target, or None when none is reachable.
    """
    moves = [row * side + col for row, col in ACTION_STEPS]
    parents = {start: start}
    queue = deque([start])
    while queue:
        square = queue.popleft()
        if square != start and is_target(square):
            path = []
            while square != start:
                path.append(square)
                square = parents[square]
            return path[::-1]
        for move in moves:
            neighbour = square + move
            if open_squares[neighbour] and neighbour not in parents:
                parents[neighbour] = square
                queue.append(neighbour)
    return None


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


def depth_first_reference(
    distribution: MazeDistribution, tasks: Sequence[MazeTask], rng: np.random.Generator
) -> ReferenceResult:
    """Run the depth-first explorer for one trial on each task (rules in the module docstring)."""
    num_episodes = distribution.episodes_per_trial
    returns = np.zeros((len(tasks), num_episodes))
    lengths = np.zeros((len(tasks), num_episodes), dtype=np.int64)
    for index, task in enumerate(tasks):
        explorer = _DepthFirstExplorer(task, distribution.window, rng.permutation(len(ACTION_STEPS)))
        for episode in range(num_episodes):
            length, reached = explorer.run_episode(distribution.max_episode_steps)
            lengths[index, episode] = length
            returns[index, episode] = (distribution.goal_reward if reached else 0.0) - (
                distribution.step_cost * length
            )
    return ReferenceResult(returns=returns, lengths=lengths)


class _DepthFirstExplorer:
    """The depth-first explorer's memory of one maze, kept across the episodes of a trial.

    Args:
        task: the maze; the explorer reads only the squares its window shows.
        window: side of the observed window, as in the environment.
        move_order: a permutation of the action indices, the order in which it tries
            neighbours it has not stood on.
    """

    def __init__(self, task: MazeTask, window: int, move_order: np.ndarray):
        self.side = task.side
        self.walls = task.wall_grid().ravel()
        self.start = task.start[0] * self.side + task.start[1]
        self.goal = task.goal[0] * self.side + task.goal[1]
        self.radius = window // 2
        self.moves = [ACTION_STEPS[i][0] * self.side + ACTION_STEPS[i][1] for i in move_order]
        self.seen_open = np.zeros(self.walls.size, dtype=bool)
        self.goal_seen = False
        self.stood_on: set[int] = set()

    def run_episode(self, max_steps: int) -> tuple[int, bool]:
        """Walk one episode from the start; return its length and whether it reached the goal."""
        position = self.start
        self._look(position)
        for step in range(1, max_steps + 1):
            position = self._next_square(position)
            self._look(position)
            if position == self.goal:
                return step, True
        return max_steps, False

    def _look(self, position: int) -> None:
        """Remember the open squares and the goal in the window around ``position``."""
        self.stood_on.add(position)
        row, col = divmod(position, self.side)
        for r in range(max(row - self.radius, 0), min(row + self.radius + 1, self.side)):
            for c in range(max(col - self.radius, 0), min(col + self.radius + 1, self.side)):
                square = r * self.side + c
                self.seen_open[square] = not self.walls[square]
                self.goal_seen |= square == self.goal

    def _next_square(self, position: int) -> int:
        if self.goal_seen:
            # The window also shows squares behind walls, so the goal can be in sight before
            # any known path leads to it. Exploring goes on until one does.
            path = _shortest_path(self.seen_open, self.side, position, lambda square: square == self.goal)
            if path is not None:
                return path[0]
        for move in self.moves:
            neighbour = position + move
            if not self.walls[neighbour] and neighbour not in self.stood_on:
                return neighbour
        # No path means every reachable square was visited without finding the goal. A maze
        # whose open squares are connected rules that out, so the explorer just stays put.
        path = _shortest_path(self.seen_open, self.side, position,
                              lambda square: square not in self.stood_on)
        return position if path is None else path[0]


@register_references(MazeDistribution)
def maze_references(
    distribution: MazeDistribution, tasks: Sequence[MazeTask], seed: int
) -> dict[str, ReferenceResult]:
    """Run every maze reference for one trial on each task. Equal seeds give equal results.

    ``depth-first`` needs to see the neighbouring squares and runs only with a window of at
    least 3.
    """
    results = {
        "shortest-path": shortest_path_reference(distribution, tasks),
        "random-walk": random_walk_reference(distribution, tasks, np.random.default_rng(seed)),
    }
    if distribution.window >= 3:
        # The random walk draws from the seed's own generator and the explorer from a
        # spawned one, so that neither changes the other's results.
        explorer_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        results["depth-first"] = depth_first_reference(distribution, tasks, explorer_rng)
    return results
