"""Maze tasks: perfect-maze layouts, their generation from a seed, and argument checks.

A task is one perfect maze (every open square reachable, no loops) with a start and a goal
square.

Geometry: ``size`` is the odd width of the square interior. The grid has ``size + 2`` squares
per side, because a wall border surrounds the interior. Junction cells sit at odd grid
coordinates, so a 9-wide interior has 5 x 5 of them, and the squares between two neighbouring
cells are corridors or walls. Coordinates are ``(row, col)`` with row 0 at the top, and flat
square indices are ``row * (size + 2) + col``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envs.tasks import Task

# Layout characters, row-major over the grid.
WALL, OPEN = "1", "0"

# Upper end, exclusive, of the per-task seeds that sample_tasks draws. With 2**63 seeds two
# tasks of a 10^5-task split share a seed with probability about 5e-10.
SEED_BOUND = 2**63


# ---------------------------------------------------------------------------------------------
# Argument checks


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"maze size must be an int, got {size!r}")
    if size < 3:
        raise ValueError(
            f"maze size {size} is too small to place start and goal on two junction cells; "
            "use an odd size of at least 3, such as 9"
        )
    if size % 2 == 0:
        raise ValueError(
            f"maze size {size} must be odd, because junction cells sit at odd grid "
            f"coordinates and the border wall at the even ones; use {size - 1} or {size + 1}"
        )


def _check_window(window: int, size: int) -> None:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise TypeError(f"window must be an int, got {window!r}")
    if window < 1:
        raise ValueError(f"window {window} must be a positive odd number, such as 3 or 5")
    if window % 2 == 0:
        raise ValueError(
            f"window {window} must be odd so that the agent sits at its centre; "
            f"use {max(window - 1, 1)} or {window + 1}"
        )
    side = size + 2
    if window > side:
        raise ValueError(
            f"window {window} is larger than the grid of a size-{size} maze, which has {side} "
            f"squares per side including the border wall; use an odd window of at most {side}"
        )


def _check_episode_args(max_episode_steps: int, step_cost: float, goal_reward: float) -> None:
    if int(max_episode_steps) != max_episode_steps or max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be a positive integer, got {max_episode_steps!r}")
    if not (math.isfinite(step_cost) and step_cost >= 0):
        raise ValueError(f"step_cost must be finite and non-negative, got {step_cost}")
    if not math.isfinite(goal_reward):
        raise ValueError(f"goal_reward must be finite, got {goal_reward}")


def check_maze_args(
    size: int, window: int, max_episode_steps: int, step_cost: float, goal_reward: float
) -> None:
    _check_size(size)
    _check_window(window, size)
    _check_episode_args(max_episode_steps, step_cost, goal_reward)


# ---------------------------------------------------------------------------------------------
# Tasks and maze generation


@dataclass(frozen=True)
class MazeTask(Task):
    """One maze with its start and goal squares.

    Attributes:
        size: width of the square interior in grid squares, odd and at least 3.
        layout: wall flags of the ``(size + 2) x (size + 2)`` grid in row-major order, one
            character per square: ``"1"`` for a wall, ``"0"`` for an open square.
        start: ``(row, col)`` of the square every episode starts on.
        goal: ``(row, col)`` of the goal square.
        seed: the seed :func:`generate_maze_task` built the task from; None for a maze built
            by hand.
    """

    size: int
    layout: str
    start: tuple[int, int]
    goal: tuple[int, int]
    seed: int | None = None

    def __post_init__(self):
        _check_size(self.size)
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "start", (int(self.start[0]), int(self.start[1])))
        object.__setattr__(self, "goal", (int(self.goal[0]), int(self.goal[1])))
        if self.seed is not None:
            object.__setattr__(self, "seed", int(self.seed))

        side = self.size + 2
        if not isinstance(self.layout, str):
            raise TypeError(f"layout must be a str of '0' and '1', got {type(self.layout).__name__}")
        if len(self.layout) != side * side:
            raise ValueError(
                f"a size-{self.size} maze needs a layout of {side * side} wall flags "
                f"({side} x {side} squares), got {len(self.layout)}"
            )
        if not set(self.layout) <= {WALL, OPEN}:
            raise ValueError(f"layout may contain only '0' and '1', got {sorted(set(self.layout))}")
        for label, (row, col) in (("start", self.start), ("goal", self.goal)):
            if not (0 <= row < side and 0 <= col < side):
                raise ValueError(f"{label} {(row, col)} is outside the {side} x {side} grid")
            if self.layout[row * side + col] == WALL:
                raise ValueError(f"{label} {(row, col)} is on a wall; place it on an open square")
        if self.start == self.goal:
            raise ValueError(f"start and goal are the same square {self.start}; they must differ")

    def key(self) -> tuple:
        """Return the layout alone, so that the meta-train and meta-test splits share no maze.

        Different seeds can generate the same layout. With a key of layout, start and goal,
        51 of the 1,000 meta-test layouts of the default size-9 split also occurred in
        meta-train, with another start or goal.
        """
        return (self.layout,)

    @property
    def side(self) -> int:
        """Grid squares per side, including the border wall."""
        return self.size + 2

    def wall_grid(self) -> np.ndarray:
        """Return the walls as a bool array of shape ``(size + 2, size + 2)``."""
        flags = np.frombuffer(self.layout.encode("ascii"), dtype=np.uint8)
        return (flags == ord(WALL)).reshape(self.side, self.side)


def generate_maze_layout(size: int, rng: np.random.Generator) -> str:
    """Generate a perfect maze by randomized depth-first search and return its layout string.

    The search starts on a random junction cell and keeps an explicit stack, so large mazes
    do not hit Python's recursion limit. At each step it carves the corridor to a uniformly
    chosen unvisited neighbour of the cell on top of the stack, or pops that cell when it has
    none. All random numbers come from one ``rng.random`` call of ``cells`` draws: one for
    the first cell and one per carved corridor.
    """
    _check_size(size)
    side = size + 2
    cells_per_side = (size + 1) // 2
    num_cells = cells_per_side * cells_per_side
    grid = bytearray(WALL.encode("ascii") * (side * side))
    visited = bytearray(num_cells)
    draws = rng.random(num_cells).tolist()

    def square_of(cell: int) -> int:
        row, col = divmod(cell, cells_per_side)
        return (2 * row + 1) * side + 2 * col + 1

    first = int(draws[0] * num_cells)
    visited[first] = 1
    grid[square_of(first)] = ord(OPEN)
    stack = [first]
    draw_index = 1
    while stack:
        cell = stack[-1]
        row, col = divmod(cell, cells_per_side)
        neighbours = []
        if row > 0 and not visited[cell - cells_per_side]:
            neighbours.append(cell - cells_per_side)
        if col < cells_per_side - 1 and not visited[cell + 1]:
            neighbours.append(cell + 1)
        if row < cells_per_side - 1 and not visited[cell + cells_per_side]:
            neighbours.append(cell + cells_per_side)
        if col > 0 and not visited[cell - 1]:
            neighbours.append(cell - 1)
        if not neighbours:
            stack.pop()
            continue
        chosen = neighbours[int(draws[draw_index] * len(neighbours))]
        draw_index += 1
        visited[chosen] = 1
        current_square, next_square = square_of(cell), square_of(chosen)
        # The corridor square lies halfway between two neighbouring cells' squares.
        grid[(current_square + next_square) // 2] = ord(OPEN)
        grid[next_square] = ord(OPEN)
        stack.append(chosen)
    return grid.decode("ascii")


def generate_maze_task(size: int, seed: int) -> MazeTask:
    """Generate the task of ``seed``: its layout, then start and goal on two distinct junction cells.

    Everything is drawn from ``numpy.random.default_rng(seed)``, so equal seeds give equal
    tasks in any process.
    """
    rng = np.random.default_rng(seed)
    layout = generate_maze_layout(size, rng)
    cells_per_side = (size + 1) // 2
    num_cells = cells_per_side * cells_per_side
    start_draw, goal_draw = rng.random(2).tolist()
    start_cell = int(start_draw * num_cells)
    # Draw the goal from the other cells, so that the pair is uniform over ordered pairs.
    goal_cell = int(goal_draw * (num_cells - 1))
    if goal_cell >= start_cell:
        goal_cell += 1
    start = divmod(start_cell, cells_per_side)
    goal = divmod(goal_cell, cells_per_side)
    return MazeTask(
        size=size,
        layout=layout,
        start=(2 * start[0] + 1, 2 * start[1] + 1),
        goal=(2 * goal[0] + 1, 2 * goal[1] + 1),
        seed=int(seed),
    )


def maze_task_params(tasks: Sequence[MazeTask], size: int) -> np.ndarray:
    """Pack tasks into the integer rows :class:`BatchedMazeEnv` takes.

    Each row contains the ``(size + 2) ** 2`` wall flags of the grid, then the flat index of the
    start square, then that of the goal. The dtype is int16 where the flat indices fit, which
    is every size up to 179, and int32 above.
    """
    _check_size(size)
    side = size + 2
    num_squares = side * side
    for task in tasks:
        if task.size != size:
            raise ValueError(f"task of size {task.size} given where size {size} was expected")
    dtype = np.int16 if num_squares - 1 <= np.iinfo(np.int16).max else np.int32
    params = np.empty((len(tasks), num_squares + 2), dtype=dtype)
    if not tasks:
        return params
    flags = np.frombuffer("".join(task.layout for task in tasks).encode("ascii"), dtype=np.uint8)
    params[:, :num_squares] = (flags == ord(WALL)).reshape(len(tasks), num_squares)
    params[:, num_squares] = [task.start[0] * side + task.start[1] for task in tasks]
    params[:, num_squares + 1] = [task.goal[0] * side + task.goal[1] for task in tasks]
    return params
