"""A task family of your own for AdaptRL: walk along a line to a hidden goal.

Each task is one goal position on [-1, 1]. The agent observes only its own position, so it has
to find the goal from the rewards of its first episode and walk straight to it in the next.
Train RL² on it from the repository root:

    PYTHONPATH=docs/examples python scripts/train.py --env my_tasks:LineGoalDistribution

docs/custom-environments.md explains each part; tests/test_custom_env.py trains on this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from envs import Task, TaskDistribution, VectorBatchedEnv

STEP_SIZE = 0.2


@dataclass(frozen=True)
class LineGoalTask(Task):
    """The goal position on the line [-1, 1]."""

    goal: float

    def __post_init__(self):
        # Rounded to float32, so that a task rebuilt from its float32 row of task_params
        # equals the original.
        object.__setattr__(self, "goal", float(np.float32(self.goal)))


class LineGoalEnv(gym.Env):
    """A point on [-1, 1] that moves left, stays or moves right, toward a hidden goal.

    Observation: the position, float32, shape (1,). Actions: 0 (left), 1 (stay), 2 (right),
    each move ``STEP_SIZE`` long and clipped at the ends of the line. Reward: minus the
    distance to the goal after the move. An episode starts near the origin and is truncated
    after ``horizon`` steps.

    The goal appears neither in the observation nor in ``info``, unless ``oracle=True``
    puts ``task.to_dict()`` into ``info["task"]``.
    """

    metadata = {"render_modes": []}

    def __init__(self, horizon: int = 10, oracle: bool = False):
        self.horizon = int(horizon)
        self.oracle = oracle
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self._task: LineGoalTask | None = None
        self._position = 0.0
        self._elapsed_steps = 0

    @property
    def task(self) -> LineGoalTask | None:
        """The current task. Assigning to it calls :meth:`set_task`, which is how vector envs
        put each worker on its own task."""
        return self._task

    @task.setter
    def task(self, task: LineGoalTask) -> None:
        self.set_task(task)

    def set_task(self, task: LineGoalTask) -> None:
        """Put the env on ``task`` and keep it across resets until the next ``set_task``."""
        if not isinstance(task, LineGoalTask):
            raise TypeError(f"expected a LineGoalTask, got {task!r}")
        self._task = task

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._task is None:
            raise RuntimeError("call set_task(task) before reset()")
        self._position = float(self.np_random.uniform(-0.1, 0.1))
        self._elapsed_steps = 0
        return self._observe(), self._info()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}: expected 0, 1 or 2")
        move = (int(action) - 1) * STEP_SIZE
        self._position = float(np.clip(self._position + move, -1.0, 1.0))
        self._elapsed_steps += 1
        reward = -abs(self._position - self._task.goal)
        truncated = self._elapsed_steps >= self.horizon
        return self._observe(), reward, False, truncated, self._info()

    @property
    def snapshot(self) -> dict[str, Any]:
        """The env's full state, which training checkpoints save and a resumed run assigns back."""
        return {
            "task": self._task,
            "position": self._position,
            "elapsed_steps": self._elapsed_steps,
            "rng_state": self.np_random.bit_generator.state,
        }

    @snapshot.setter
    def snapshot(self, snapshot: dict[str, Any]) -> None:
        self._task = snapshot["task"]
        self._position = snapshot["position"]
        self._elapsed_steps = snapshot["elapsed_steps"]
        self.np_random.bit_generator.state = snapshot["rng_state"]

    def _observe(self) -> np.ndarray:
        return np.array([self._position], dtype=np.float32)

    def _info(self) -> dict[str, Any]:
        return {"task": self._task.to_dict()} if self.oracle else {}


class LineGoalDistribution(TaskDistribution):
    """Goals ~ Uniform(-1, 1), ``episodes_per_trial`` episodes of ``horizon`` steps per trial.

    Every keyword argument can be set from the command line with ``--env-kwargs``, for
    example ``--env-kwargs horizon=20 num_test_tasks=50``.
    """

    name = "line-goal"

    def __init__(
        self,
        horizon: int = 10,
        episodes_per_trial: int = 2,
        num_train_tasks: int = 10_000,
        num_test_tasks: int = 200,
        split_seed: int = 0,
    ):
        super().__init__(num_train_tasks, num_test_tasks, split_seed)
        if int(horizon) < 1 or int(episodes_per_trial) < 1:
            raise ValueError(
                f"horizon and episodes_per_trial must be at least 1, got horizon={horizon}, "
                f"episodes_per_trial={episodes_per_trial}"
            )
        self.horizon = int(horizon)
        self.episodes_per_trial = int(episodes_per_trial)

    def sample_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[LineGoalTask]:
        # Draw only from rng: the meta-train / meta-test split is redrawn from split_seed in
        # every process that loads a run.
        return [LineGoalTask(goal) for goal in rng.uniform(-1.0, 1.0, size=num_tasks)]

    def make_env(self, oracle: bool = False) -> LineGoalEnv:
        return LineGoalEnv(self.horizon, oracle=oracle)

    def task_params(self, tasks) -> np.ndarray:
        """Return the goals of ``tasks`` as float32, shape ``(num_tasks, 1)``."""
        return np.asarray([[task.goal] for task in tasks], dtype=np.float32).reshape(-1, 1)

    def task_from_params(self, row) -> LineGoalTask:
        """Rebuild the task of one row of :meth:`task_params`."""
        return LineGoalTask(float(np.asarray(row).reshape(-1)[0]))

    def make_batched_env(self, num_envs: int, device: Any = "cpu", generator=None):
        # Stepping this env costs far less than a message to a worker process, so one process
        # steps every env. Simulator-backed envs pass asynchronous=True instead.
        return VectorBatchedEnv(self, num_envs, device=device, generator=generator,
                                asynchronous=False)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "horizon": self.horizon}
