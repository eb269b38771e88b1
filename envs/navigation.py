"""2D navigation: a point moves toward a hidden goal, a meta-RL family from the MAML paper.

The family comes from Finn, Abbeel and Levine, 2017, "Model-Agnostic Meta-Learning for Fast
Adaptation of Deep Networks". The constants follow learn2learn's ``Particles2DEnv``
(``learn2learn/gym/envs/particles/particles_2d.py``):

- a task is a goal drawn from Uniform([-0.5, 0.5]²);
- each episode starts at the origin, and the observation is the position;
- an action is a displacement, clipped per coordinate to [-0.1, 0.1];
- the reward is minus the Euclidean distance from the new position to the goal.

Unlike learn2learn, which ends an episode once both coordinates are within 0.01 of the goal,
an episode here never terminates and is truncated after exactly ``horizon`` steps (100 by
default). Every episode then has the same length, and the return sums ``horizon`` distances.

The Gymnasium environment and the batched torch environment both keep positions in float32
and compute the same float32 operations, so their trajectories agree to float32 rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from envs.batched import BatchedEnv
from envs.tasks import Task, TaskDistribution

# Goals are drawn from Uniform([-GOAL_BOUND, GOAL_BOUND]²).
GOAL_BOUND = 0.5
# Each action coordinate is clipped to [-ACTION_BOUND, ACTION_BOUND], so one step moves the
# point at most 0.1 along each axis.
ACTION_BOUND = 0.1
DEFAULT_HORIZON = 100


@dataclass(frozen=True)
class Navigation2DTask(Task):
    """A 2D navigation task, fixed by its goal position.

    Both coordinates are rounded to float32 on construction, so that the Gymnasium env and
    the batched env (which stores goals as float32) measure distances to the same goal.

    Attributes:
        goal_x: x coordinate of the goal.
        goal_y: y coordinate of the goal.
    """

    goal_x: float
    goal_y: float

    def __post_init__(self):
        for name in ("goal_x", "goal_y"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
            object.__setattr__(self, name, float(np.float32(value)))

    @property
    def goal(self) -> np.ndarray:
        """Goal position as a float32 array of shape (2,)."""
        return np.array([self.goal_x, self.goal_y], dtype=np.float32)


def _check_horizon(horizon: int) -> None:
    if int(horizon) < 1:
        raise ValueError(
            f"an episode needs at least 1 step, got horizon={horizon}; pass horizon >= 1"
        )


def _action_space() -> gym.spaces.Box:
    return gym.spaces.Box(-ACTION_BOUND, ACTION_BOUND, shape=(2,), dtype=np.float32)


class Navigation2DEnv(gym.Env):
    """One episode of moving a point in the plane toward a hidden goal.

    Constants (module-level): goals ~ Uniform([-0.5, 0.5]²) (:data:`GOAL_BOUND`), actions
    clipped to [-0.1, 0.1]² (:data:`ACTION_BOUND`), ``horizon`` steps per episode (default
    100), start at the origin.

    Observation: the position, float32, shape (2,), unbounded. Action: a displacement in
    ``Box(-0.1, 0.1, (2,))``. Actions outside the box are clipped per coordinate, not
    rejected, because a Gaussian policy samples outside it. Reward: minus the Euclidean
    distance from the position after the move to the goal. The episode never terminates and
    is truncated after ``horizon`` steps. Steps after the truncation keep moving the point
    and keep reporting ``truncated=True`` until ``reset``.

    The task is hidden from the observation and from ``info`` unless ``oracle=True``, which
    puts ``task.to_dict()`` into ``info["task"]``.

    Args:
        horizon: steps per episode, at least 1.
        oracle: put the goal into ``info["task"]``.
        task: the initial task. Without one, the first reset draws a goal from the prior
            with the environment's own ``np_random``, so that ``gym.make`` alone gives a
            working environment. ``set_task`` or assigning ``env.task`` replaces it.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        horizon: int = DEFAULT_HORIZON,
        oracle: bool = False,
        task: Navigation2DTask | None = None,
    ):
        _check_horizon(horizon)
        self.horizon = int(horizon)
        self.oracle = oracle
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = _action_space()
        self._task: Navigation2DTask | None = None
        self._goal = np.zeros(2, dtype=np.float32)
        self._position: np.ndarray | None = None
        self._elapsed_steps = 0
        if task is not None:
            self.set_task(task)

    @property
    def task(self) -> Navigation2DTask | None:
        """The current task. Assigning to it calls :meth:`set_task`.

        The setter lets Gymnasium vector envs put each worker on its own task with
        ``set_attr("task", tasks)``.
        """
        return self._task

    @task.setter
    def task(self, task: Navigation2DTask) -> None:
        self.set_task(task)

    @property
    def position(self) -> np.ndarray | None:
        """A copy of the point's position, float32 (2,), or None before the first reset."""
        return None if self._position is None else self._position.copy()

    def set_task(self, task: Navigation2DTask) -> None:
        """Put the environment on ``task``.

        The new goal applies from the next step on. The position is kept, so call ``reset``
        to start an episode on the new task from the origin.
        """
        if not isinstance(task, Navigation2DTask):
            raise TypeError(
                f"expected a Navigation2DTask, got {type(task).__name__}; build one with "
                "Navigation2DTask(goal_x, goal_y) or draw one from Navigation2DDistribution"
            )
        self._task = task
        self._goal = task.goal

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._task is None:
            goal = self.np_random.uniform(-GOAL_BOUND, GOAL_BOUND, size=2)
            self.set_task(Navigation2DTask(goal[0], goal[1]))
        self._position = np.zeros(2, dtype=np.float32)
        self._elapsed_steps = 0
        return self._position.copy(), self._info()

    def step(self, action):
        if self._position is None:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (2,):
            raise ValueError(
                f"invalid action {action.tolist()!r}: expected a displacement of shape (2,), "
                f"got shape {action.shape}"
            )
        if not np.all(np.isfinite(action)):
            raise ValueError(f"invalid action {action.tolist()!r}: both coordinates must be finite")
        # The bounds are float32 arrays, so the clipped action is float32 exactly as in
        # BatchedNavigationEnv.
        move = np.clip(action, self.action_space.low, self.action_space.high)
        self._position = self._position + move
        reward = -float(np.linalg.norm(self._position - self._goal))
        self._elapsed_steps += 1
        truncated = self._elapsed_steps >= self.horizon
        return self._position.copy(), reward, False, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        return {"task": self._task.to_dict()} if self.oracle else {}


class BatchedNavigationEnv(BatchedEnv):
    """``num_envs`` 2D navigation tasks stepped at once, with :class:`Navigation2DEnv`'s semantics.

    Task parameters are goals of shape ``(num_envs, 2)``, float32, in the order
    ``(goal_x, goal_y)`` of :meth:`Navigation2DDistribution.task_params`. Until ``set_tasks``
    every goal is the origin. Positions have shape ``(num_envs, 2)``, and a per-env step
    counter truncates each episode after ``horizon`` steps.

    Actions have shape ``(num_envs, 2)`` and are clipped per coordinate to [-0.1, 0.1]. They
    are not checked for NaN, because the check would read values back to the host. The
    dynamics are deterministic, so ``step`` ignores ``noise``.

    NOTE: the CUDA tests (agreement with :class:`Navigation2DEnv`, no host sync under
    ``torch.cuda.set_sync_debug_mode("error")``) skip without a GPU and have not run yet.
    """

    def __init__(
        self,
        num_envs: int,
        horizon: int = DEFAULT_HORIZON,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ):
        _check_horizon(horizon)
        super().__init__(num_envs, device, generator)
        self.horizon = int(horizon)
        self.observation_dim = 2
        self.action_space = _action_space()
        # float32 bounds, so that clamping rounds as np.clip does with the Box's float32 bounds.
        self._action_low = torch.as_tensor(self.action_space.low, device=self.device)
        self._action_high = torch.as_tensor(self.action_space.high, device=self.device)
        self.task_params = torch.zeros(self.num_envs, 2, device=self.device)
        self.positions = torch.zeros(self.num_envs, 2, device=self.device)
        self.elapsed_steps = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)

    def set_tasks(self, mask: torch.Tensor, task_params: torch.Tensor) -> None:
        if tuple(task_params.shape) != (self.num_envs, 2):
            raise ValueError(
                f"expected task_params of shape {(self.num_envs, 2)} (num_envs, goal x and y), "
                f"got {tuple(task_params.shape)}"
            )
        params = task_params.to(self.device, torch.float32)
        # torch.where keeps unmasked rows without reading the mask back to the host.
        self.task_params = torch.where(mask[:, None], params, self.task_params)

    def reset(self, mask: torch.Tensor) -> torch.Tensor:
        self.positions = torch.where(mask[:, None], 0.0, self.positions)
        self.elapsed_steps = torch.where(mask, 0, self.elapsed_steps)
        return self.positions

    def step(self, actions: torch.Tensor, noise: torch.Tensor | None = None):
        del noise
        actions = actions.to(self.device, torch.float32)
        if tuple(actions.shape) != (self.num_envs, 2):
            raise ValueError(
                f"expected actions of shape {(self.num_envs, 2)} (num_envs, dx and dy), "
                f"got {tuple(actions.shape)}"
            )
        moves = torch.clamp(actions, self._action_low, self._action_high)
        self.positions = self.positions + moves
        rewards = -torch.linalg.vector_norm(self.positions - self.task_params, dim=1)
        self.elapsed_steps = self.elapsed_steps + 1
        truncated = self.elapsed_steps >= self.horizon
        return self.positions, rewards, torch.zeros_like(truncated), truncated

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "task_params": self.task_params.clone(),
            "positions": self.positions.clone(),
            "elapsed_steps": self.elapsed_steps.clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.check_state_rows(state)
        self.task_params = state["task_params"].to(self.device, torch.float32).clone()
        self.positions = state["positions"].to(self.device, torch.float32).clone()
        self.elapsed_steps = state["elapsed_steps"].to(self.device, torch.long).clone()


class Navigation2DDistribution(TaskDistribution):
    """2D navigation with goals ~ Uniform([-0.5, 0.5]²), ``episodes_per_trial`` episodes per trial.

    Goals are continuous, so two draws practically never coincide. The split still drops
    a meta-train goal equal to a meta-test goal after float32 rounding.

    Args:
        horizon: steps per episode, at least 1.
        episodes_per_trial: inner episodes per RL² trial, at least 1.
        num_train_tasks: meta-train set size.
        num_test_tasks: meta-test set size.
        split_seed: seed of the meta-train / meta-test split.
    """

    name = "navigation-2d"

    def __init__(
        self,
        horizon: int = DEFAULT_HORIZON,
        episodes_per_trial: int = 2,
        num_train_tasks: int = 10_000,
        num_test_tasks: int = 1_000,
        split_seed: int = 0,
    ):
        _check_horizon(horizon)
        if int(episodes_per_trial) < 1:
            raise ValueError(
                f"a trial needs at least 1 episode, got episodes_per_trial={episodes_per_trial}; "
                "pass episodes_per_trial >= 1"
            )
        super().__init__(num_train_tasks, num_test_tasks, split_seed)
        self.horizon = int(horizon)
        self.episodes_per_trial = int(episodes_per_trial)

    def sample_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[Navigation2DTask]:
        goals = rng.uniform(-GOAL_BOUND, GOAL_BOUND, size=(num_tasks, 2)).astype(np.float32)
        return [Navigation2DTask(x, y) for x, y in goals.tolist()]

    def task_params(self, tasks: Sequence[Navigation2DTask]) -> np.ndarray:
        """Return the goals of ``tasks`` as float32 of shape ``(num_tasks, 2)``: x, then y."""
        for task in tasks:
            if not isinstance(task, Navigation2DTask):
                raise TypeError(
                    f"{self.name} takes Navigation2DTask tasks, got {type(task).__name__}"
                )
        goals = [(task.goal_x, task.goal_y) for task in tasks]
        return np.asarray(goals, dtype=np.float32).reshape(len(goals), 2)

    def task_from_params(self, row) -> Navigation2DTask:
        """Rebuild a task from one row of :meth:`task_params`, shape (2,)."""
        row = np.asarray(row, dtype=np.float64)
        if row.shape != (2,):
            raise ValueError(f"expected a row of shape (2,) (goal x and y), got shape {row.shape}")
        return Navigation2DTask(row[0], row[1])

    def make_env(self, oracle: bool = False) -> Navigation2DEnv:
        return Navigation2DEnv(self.horizon, oracle=oracle)

    def make_batched_env(
        self, num_envs: int, device="cpu", generator=None
    ) -> BatchedNavigationEnv:
        return BatchedNavigationEnv(num_envs, self.horizon, device=device, generator=generator)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "horizon": self.horizon,
            "goal_low": -GOAL_BOUND,
            "goal_high": GOAL_BOUND,
            "action_bound": ACTION_BOUND,
        }
