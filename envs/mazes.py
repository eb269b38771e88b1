"""Procedural mazes: find the goal of an unseen maze, then return to it faster in later episodes.

The Gymnasium env, the batched torch env and the task distribution. Tasks, layouts and the
maze geometry are in :mod:`envs.maze_layouts`. The agent observes only a small window around
itself, so within a trial it has to explore in the first episode and can exploit what it
remembers in the following ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from envs.batched import BatchedEnv
from envs.maze_layouts import (
    OPEN,
    SEED_BOUND,
    WALL,
    MazeTask,
    check_maze_args,
    generate_maze_layout,
    generate_maze_task,
    maze_task_params,
)
from envs.tasks import TaskDistribution

__all__ = [
    "ACTION_NAMES",
    "ACTION_STEPS",
    "AGENT_COLOR",
    "FLOOR_COLOR",
    "GOAL_COLOR",
    "OPEN",
    "PIXELS_PER_SQUARE",
    "WALL",
    "WALL_COLOR",
    "BatchedMazeEnv",
    "MazeDistribution",
    "MazeEnv",
    "MazeTask",
    "generate_maze_layout",
    "generate_maze_task",
    "maze_task_params",
]

# Discrete actions in order: up, right, down, left, as (row, col) steps.
ACTION_NAMES = ("up", "right", "down", "left")
ACTION_STEPS = ((-1, 0), (0, 1), (1, 0), (0, -1))

# Render colours (RGB) and the side of one grid square in pixels.
WALL_COLOR = (64, 64, 64)
FLOOR_COLOR = (235, 235, 235)
GOAL_COLOR = (44, 160, 44)
AGENT_COLOR = (214, 39, 40)
PIXELS_PER_SQUARE = 16


# ---------------------------------------------------------------------------------------------
# Gymnasium environment


class MazeEnv(gym.Env):
    """A maze seen through an egocentric window, one episode from the start square to the goal.

    Observation: a ``window x window`` view centred on the agent, with two channels flattened
    row-major into one float32 vector of length ``2 * window**2``. The wall channel comes first
    and is 1 on walls and on squares outside the grid. The goal channel follows and is 1 on the
    goal square. The agent's position is not observed.

    Actions: Discrete(4), in the order of :data:`ACTION_NAMES` (up, right, down, left). A move
    into a wall leaves the agent in place.

    Reward: ``-step_cost`` on every step (default 0.01), plus ``goal_reward`` (default 1.0) on the
    step that reaches the goal, which terminates the episode. A path of L steps therefore
    returns ``goal_reward - step_cost * L``. The episode is truncated after
    ``max_episode_steps`` steps (default 100) unless that last step reaches the goal, which
    counts as termination. Dynamics are deterministic.

    Args:
        size: width of the maze interior, odd and at least 3.
        window: side of the observed window, odd and at most ``size + 2``.
        max_episode_steps: steps after which an episode is truncated.
        step_cost: cost of every step.
        goal_reward: reward for reaching the goal.
        oracle: put the task into ``info["task"]``.
        task: the initial task. Without one, the first reset generates a task from a seed drawn
            with the environment's own ``np_random``, so that ``gym.make`` alone gives a
            working environment. ``set_task`` replaces it.
        render_mode: None or ``"rgb_array"``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(
        self,
        size: int = 9,
        window: int = 5,
        max_episode_steps: int = 100,
        step_cost: float = 0.01,
        goal_reward: float = 1.0,
        oracle: bool = False,
        task: MazeTask | None = None,
        render_mode: str | None = None,
    ):
        check_maze_args(size, window, max_episode_steps, step_cost, goal_reward)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"unknown render_mode {render_mode!r}; expected None or one of "
                f"{self.metadata['render_modes']}"
            )
        self.size = int(size)
        self.window = int(window)
        self.max_episode_steps = int(max_episode_steps)
        self.step_cost = float(step_cost)
        self.goal_reward = float(goal_reward)
        self.oracle = oracle
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(
            0.0, 1.0, shape=(2 * self.window**2,), dtype=np.float32
        )
        self.action_space = gym.spaces.Discrete(len(ACTION_NAMES))
        self._task: MazeTask | None = None
        self._position: tuple[int, int] | None = None
        self._elapsed_steps = 0
        if task is not None:
            self.set_task(task)

    @property
    def task(self) -> MazeTask | None:
        return self._task

    @property
    def agent_position(self) -> tuple[int, int] | None:
        """The agent's ``(row, col)``; None before the first reset."""
        return self._position

    def set_task(self, task: MazeTask) -> None:
        """Put the environment on ``task`` from the next reset on."""
        if not isinstance(task, MazeTask):
            raise TypeError(f"expected a MazeTask, got {type(task).__name__}")
        if task.size != self.size:
            raise ValueError(f"task has size {task.size} but the environment has size {self.size}")
        self._task = task
        radius = self.window // 2
        # Squares outside the grid read as walls, so the window never leaves the padded grid.
        self._padded_walls = np.pad(task.wall_grid(), radius, constant_values=True)
        self._position = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._task is None:
            task_seed = int(self.np_random.integers(SEED_BOUND))
            self.set_task(generate_maze_task(self.size, task_seed))
        self._position = self._task.start
        self._elapsed_steps = 0
        return self._observe(), self._info()

    def step(self, action):
        if self._position is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}; expected an int in [0, 4)")
        row_step, col_step = ACTION_STEPS[int(action)]
        row, col = self._position[0] + row_step, self._position[1] + col_step
        # The border wall keeps (row, col) inside the grid.
        if not self._task_walls()[row, col]:
            self._position = (row, col)
        self._elapsed_steps += 1

        terminated = self._position == self._task.goal
        truncated = not terminated and self._elapsed_steps >= self.max_episode_steps
        reward = -self.step_cost
        if terminated:
            reward += self.goal_reward
        return self._observe(), reward, terminated, truncated, self._info()

    def render(self) -> np.ndarray | None:
        """Draw the whole maze as an RGB image with ``PIXELS_PER_SQUARE`` pixels per square."""
        if self.render_mode is None:
            gym.logger.warn(
                "render() called on a MazeEnv built without a render_mode; pass "
                "render_mode='rgb_array' to get images"
            )
            return None
        if self._task is None:
            raise RuntimeError("call reset() before render(): the environment has no task yet")
        walls = self._task_walls()
        image = np.where(walls[:, :, None], WALL_COLOR, FLOOR_COLOR).astype(np.uint8)
        image[self._task.goal] = GOAL_COLOR
        if self._position is not None:
            image[self._position] = AGENT_COLOR
        return np.repeat(np.repeat(image, PIXELS_PER_SQUARE, axis=0), PIXELS_PER_SQUARE, axis=1)

    def _task_walls(self) -> np.ndarray:
        radius = self.window // 2
        side = self.size + 2
        return self._padded_walls[radius:radius + side, radius:radius + side]

    def _observe(self) -> np.ndarray:
        row, col = self._position
        # The agent's square (row, col) sits at (row + radius, col + radius) in the padded grid,
        # so the window starts at (row, col) there.
        walls = self._padded_walls[row:row + self.window, col:col + self.window]
        goal = np.zeros((self.window, self.window), dtype=np.float32)
        radius = self.window // 2
        goal_row = self._task.goal[0] - row + radius
        goal_col = self._task.goal[1] - col + radius
        if 0 <= goal_row < self.window and 0 <= goal_col < self.window:
            goal[goal_row, goal_col] = 1.0
        return np.concatenate([walls.ravel(), goal.ravel()]).astype(np.float32)

    def _info(self) -> dict[str, Any]:
        return {"task": self._task.to_dict()} if self.oracle else {}


# ---------------------------------------------------------------------------------------------
# Batched torch environment


class BatchedMazeEnv(BatchedEnv):
    """``num_envs`` mazes stepped at once as torch tensors, with :class:`MazeEnv`'s semantics.

    Task parameters are the rows of :func:`maze_task_params`, shape
    ``(num_envs, (size + 2) ** 2 + 2)``. Until ``set_tasks`` puts them on other tasks, every env
    is on the task that :func:`generate_maze_task` makes from seed 0. ``step`` and ``reset`` read
    nothing back to the host. Actions must lie in [0, 4), and they are not checked, because a
    check would need a host sync. Dynamics are deterministic, so ``step`` ignores ``noise``.

    NOTE: the CUDA tests (equality with :class:`MazeEnv`, no host sync under
    ``torch.cuda.set_sync_debug_mode("error")``) skip without a GPU and have not run yet.
    """

    def __init__(
        self,
        num_envs: int,
        size: int = 9,
        window: int = 5,
        max_episode_steps: int = 100,
        step_cost: float = 0.01,
        goal_reward: float = 1.0,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ):
        check_maze_args(size, window, max_episode_steps, step_cost, goal_reward)
        super().__init__(num_envs, device, generator)
        self.size = int(size)
        self.window = int(window)
        self.max_episode_steps = int(max_episode_steps)
        self.step_cost = float(step_cost)
        self.goal_reward = float(goal_reward)
        self.observation_dim = 2 * self.window**2
        self.action_space = gym.spaces.Discrete(len(ACTION_NAMES))

        self.side = self.size + 2
        self.num_squares = self.side * self.side
        self.radius = self.window // 2
        self.padded_side = self.side + 2 * self.radius
        self._moves = torch.tensor(
            [row * self.side + col for row, col in ACTION_STEPS], device=self.device
        )
        offsets = torch.arange(-self.radius, self.radius + 1, device=self.device)
        # Flat offsets of the window squares from the agent's square in the padded grid.
        self._window_offsets = (offsets[:, None] * self.padded_side + offsets[None, :]).reshape(-1)
        # Same float32 rounding as rewards of the Gymnasium env cast to float32.
        self._step_reward = torch.tensor(-self.step_cost, dtype=torch.float32, device=self.device)
        self._goal_step_reward = torch.tensor(
            -self.step_cost + self.goal_reward, dtype=torch.float32, device=self.device
        )

        default = torch.as_tensor(
            maze_task_params([generate_maze_task(self.size, 0)], self.size), device=self.device
        )
        self.task_params = default.expand(self.num_envs, -1).clone()
        self._derive_task_tensors()
        self.positions = self._starts.clone()
        self.elapsed_steps = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)

    def set_tasks(self, mask: torch.Tensor, task_params: torch.Tensor) -> None:
        expected = (self.num_envs, self.num_squares + 2)
        if tuple(task_params.shape) != expected:
            raise ValueError(
                f"task_params for {self.num_envs} size-{self.size} mazes must have shape "
                f"{expected}, got {tuple(task_params.shape)}"
            )
        task_params = task_params.to(self.device, self.task_params.dtype)
        # torch.where keeps the unmasked rows without reading the mask on the host.
        self.task_params = torch.where(mask[:, None], task_params, self.task_params)
        self._derive_task_tensors()

    def reset(self, mask: torch.Tensor) -> torch.Tensor:
        self.positions = torch.where(mask, self._starts, self.positions)
        self.elapsed_steps = torch.where(mask, 0, self.elapsed_steps)
        return self._observe()

    def step(self, actions: torch.Tensor, noise: torch.Tensor | None = None):
        del noise
        targets = self.positions + self._moves[actions.to(self.device, torch.long)]
        blocked = self._walls.gather(1, targets[:, None]).squeeze(1)
        self.positions = torch.where(blocked, self.positions, targets)
        self.elapsed_steps = self.elapsed_steps + 1
        terminated = self.positions == self._goals
        truncated = ~terminated & (self.elapsed_steps >= self.max_episode_steps)
        rewards = torch.where(terminated, self._goal_step_reward, self._step_reward)
        return self._observe(), rewards, terminated, truncated

    def displacement(self) -> torch.Tensor:
        """Return rows and columns from each episode's start to the agent over ``size``, ``(num_envs, 2)``."""
        rows, cols = self._row_col(self.positions)
        start_rows, start_cols = self._row_col(self._starts)
        moved = torch.stack([rows - start_rows, cols - start_cols], dim=1)
        return moved.to(torch.float32) / self.size

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "task_params": self.task_params.clone(),
            "positions": self.positions.clone(),
            "elapsed_steps": self.elapsed_steps.clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.check_state_rows(state)
        self.task_params = state["task_params"].to(self.device, self.task_params.dtype)
        self.positions = state["positions"].to(self.device, torch.long)
        self.elapsed_steps = state["elapsed_steps"].to(self.device, torch.long)
        self._derive_task_tensors()

    def _derive_task_tensors(self) -> None:
        """Recompute the wall grids, padded grids, starts and goals from ``task_params``."""
        walls = self.task_params[:, : self.num_squares] != 0
        padded = torch.ones(
            self.num_envs, self.padded_side, self.padded_side, dtype=torch.bool, device=self.device
        )
        inner = slice(self.radius, self.radius + self.side)
        padded[:, inner, inner] = walls.view(self.num_envs, self.side, self.side)
        self._walls = walls
        self._padded_walls = padded.view(self.num_envs, -1)
        self._starts = self.task_params[:, self.num_squares].long()
        self._goals = self.task_params[:, self.num_squares + 1].long()

    def _row_col(self, squares: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split row-major square indices of the ``side x side`` grid into rows and columns."""
        rows = torch.div(squares, self.side, rounding_mode="floor")
        return rows, squares - rows * self.side

    def _to_padded(self, squares: torch.Tensor) -> torch.Tensor:
        rows, cols = self._row_col(squares)
        return (rows + self.radius) * self.padded_side + cols + self.radius

    def _observe(self) -> torch.Tensor:
        window_squares = self._to_padded(self.positions)[:, None] + self._window_offsets[None, :]
        walls = self._padded_walls.gather(1, window_squares)
        goal = window_squares == self._to_padded(self._goals)[:, None]
        return torch.cat([walls, goal], dim=1).to(torch.float32)


# ---------------------------------------------------------------------------------------------
# Task distribution


class MazeDistribution(TaskDistribution):
    """Perfect mazes from randomized depth-first search, ``episodes_per_trial`` episodes per trial.

    Each task's seed is drawn from the caller's generator, and :func:`generate_maze_task` builds
    the layout, start and goal from it. A task's key is its layout alone, so no meta-test maze
    appears in meta-train, not even with another start or goal. Meta-test layouts are
    distinct, and meta-train layouts may repeat.

    Small sizes have few layouts: depth-first search generates 4 for size 3 and 88 for size 5
    (counted over 100,000 draws). ``meta_split`` needs more layouts than ``num_test_tasks``,
    so lower it for these sizes.

    Args:
        size: width of the maze interior, odd and at least 3.
        window: side of the observed window, odd and at most ``size + 2``.
        episodes_per_trial: inner episodes per trial.
        max_episode_steps: steps after which an inner episode is truncated.
        step_cost: cost of every step.
        goal_reward: reward for reaching the goal.
        num_train_tasks: meta-train set size. Generating a maze costs about 50 us, so the
            defaults of 20,000 and 1,000 tasks make the first ``meta_split`` take about 1 s
            (1.1 s measured on a shared 2-core VM for size 9).
        num_test_tasks: meta-test set size.
        split_seed: seed of the meta-train / meta-test split.
    """

    episode_length_varies = True

    def __init__(
        self,
        size: int = 9,
        window: int = 5,
        episodes_per_trial: int = 2,
        max_episode_steps: int = 100,
        step_cost: float = 0.01,
        goal_reward: float = 1.0,
        num_train_tasks: int = 20_000,
        num_test_tasks: int = 1_000,
        split_seed: int = 0,
    ):
        check_maze_args(size, window, max_episode_steps, step_cost, goal_reward)
        if int(episodes_per_trial) < 1:
            raise ValueError(
                f"a trial needs at least one episode (n >= 1), got n={episodes_per_trial}"
            )
        super().__init__(num_train_tasks, num_test_tasks, split_seed)
        self.size = int(size)
        self.window = int(window)
        self.episodes_per_trial = int(episodes_per_trial)
        self.max_episode_steps = int(max_episode_steps)
        self.step_cost = float(step_cost)
        self.goal_reward = float(goal_reward)
        self.name = f"maze-{self.size}x{self.size}-n{self.episodes_per_trial}"

    def sample_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[MazeTask]:
        seeds = rng.integers(SEED_BOUND, size=num_tasks, dtype=np.int64).tolist()
        return [generate_maze_task(self.size, seed) for seed in seeds]

    def task_params(self, tasks: Sequence[MazeTask]) -> np.ndarray:
        """Return the rows of :func:`maze_task_params`, shape ``(num_tasks, (size + 2) ** 2 + 2)``."""
        return maze_task_params(tasks, self.size)

    def make_env(self, oracle: bool = False, render_mode: str | None = None) -> MazeEnv:
        return MazeEnv(
            self.size, self.window, self.max_episode_steps, self.step_cost, self.goal_reward,
            oracle=oracle, render_mode=render_mode,
        )

    def make_batched_env(self, num_envs: int, device="cpu", generator=None) -> BatchedMazeEnv:
        return BatchedMazeEnv(
            num_envs, self.size, self.window, self.max_episode_steps, self.step_cost,
            self.goal_reward, device=device, generator=generator,
        )

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "size": self.size,
            "window": self.window,
            "max_episode_steps": self.max_episode_steps,
            "step_cost": self.step_cost,
            "goal_reward": self.goal_reward,
        }
