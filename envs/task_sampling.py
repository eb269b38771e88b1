"""A single-episode task environment: a new task each episode, optionally visible to the agent.

:class:`TaskSamplingEnv` turns one environment of a task distribution into a plain Gymnasium
environment that any single-task learner (stable-baselines3's PPO, for example) can train on:

- with ``task_visible=True`` the observation ends with the task's parameters, so a memoryless
  policy can act optimally on every task. This is the oracle mode that trains the "oracle"
  references of the locomotion families.
- with ``task_visible=False`` the observation is the environment's own, so a memoryless
  policy has to do well on average over the prior. This is the baseline "PPO without memory,
  new task each episode", against which the meta-learners' adaptation can be measured.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.tasks import SPLITS, Task, TaskDistribution
from envs.trial import NonFiniteError

# Exclusive upper bound of the inner env's reset seeds: Gymnasium accepts any non-negative
# int, and 2**32 keeps the seed a plain 32-bit value in logs.
_SEED_BOUND = 2**32


class TaskSamplingEnv(gym.Env):
    """One environment of ``distribution`` on which every reset starts an episode on a new task.

    Each reset draws the task uniformly from ``split`` with this environment's own
    ``np_random``, unless ``reset(options={"task": task})`` names it. A reset with a seed also
    reseeds the inner environment, with a seed drawn from the same generator, so one seed fixes
    both the task sequence and the inner environment's noise. A reset without a seed continues
    both streams.

    Observation: the inner environment's observation, followed with ``task_visible=True`` by
    the k float parameters of the current task, ``distribution.task_params([task])[0]``, in the
    order that ``task_params`` gives (field order for the locomotion and navigation tasks).
    The appended values are unbounded in the observation space and share the base
    observation's dtype, promoted to at least float32 (float64 for MuJoCo). With
    ``task_visible=False`` the observation and its space are the inner environment's
    unchanged. Actions, rewards, termination, truncation and ``info`` are the inner
    environment's. ``info`` carries no task unless the inner environment was built with
    ``oracle=True``.

    After every reset and step it raises :class:`envs.trial.NonFiniteError`, naming the task
    and step, if the observation or reward is NaN or infinite.

    Args:
        distribution: where the tasks come from.
        split: ``"meta-train"`` (the default, for training) or ``"meta-test"``.
        task_visible: append the task parameters to the observation. The distribution must
            implement ``task_params(tasks)``.
        env: the inner environment, with ``set_task`` and a 1-D Box observation space;
            ``distribution.make_env()`` by default.

    Raises:
        ValueError: for an unknown split.
        TypeError: for an inner environment without ``set_task`` or a 1-D Box observation
            space, or for ``task_visible=True`` with a distribution without ``task_params``.
    """

    def __init__(
        self,
        distribution: TaskDistribution,
        split: str = "meta-train",
        task_visible: bool = False,
        env: gym.Env | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if env is None:
            env = distribution.make_env()
        if not callable(getattr(env.unwrapped, "set_task", None)):
            raise TypeError(
                f"{type(env.unwrapped).__name__} has no set_task(task) method, so a new task "
                "cannot be set at each reset. Add set_task to the environment class."
            )
        base_space = env.observation_space
        if not (isinstance(base_space, gym.spaces.Box) and len(base_space.shape) == 1):
            raise TypeError(
                f"{distribution.name}: TaskSamplingEnv needs a 1-D Box observation space, got "
                f"{base_space}; flatten the observation first (gymnasium.wrappers.FlattenObservation)"
            )
        self.distribution = distribution
        self.split = split
        self.task_visible = bool(task_visible)
        self.env = env
        self.action_space = env.action_space
        self.metadata = dict(env.metadata)
        self.render_mode = getattr(env, "render_mode", None)
        self._task: Task | None = None
        self._task_row: np.ndarray | None = None
        self._episode_step = 0

        if self.task_visible:
            self.num_task_params = self._count_task_params()
            # float32 at least, so that integer or boolean base observations (mazes) can carry
            # real-valued task parameters; MuJoCo's float64 stays float64.
            self._dtype = np.promote_types(base_space.dtype, np.float32)
            unbounded = np.full(self.num_task_params, np.inf)
            self.observation_space = gym.spaces.Box(
                np.concatenate([base_space.low, -unbounded]).astype(self._dtype),
                np.concatenate([base_space.high, unbounded]).astype(self._dtype),
                dtype=self._dtype,
            )
        else:
            self.num_task_params = 0
            self._dtype = base_space.dtype
            self.observation_space = base_space

    def _count_task_params(self) -> int:
        """Return k, the length of one task's parameter row, checked on one task of the split."""
        if not callable(getattr(self.distribution, "task_params", None)):
            raise TypeError(
                f"{self.distribution.name} has no task_params(tasks) method, so its tasks cannot "
                "be appended to the observation; implement it or pass task_visible=False"
            )
        tasks = self.distribution.meta_split().tasks(self.split)
        rows = np.asarray(self.distribution.task_params(tasks[:1]))
        if rows.ndim != 2 or rows.shape[0] != 1:
            raise TypeError(
                f"{self.distribution.name}.task_params([task]) returned shape {rows.shape}; "
                "expected (1, k), one row of k float parameters per task"
            )
        return int(rows.shape[1])

    @property
    def task(self) -> Task | None:
        """The task of the current episode, or None before the first reset."""
        return self._task

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode on a task drawn from the split, or on ``options["task"]``.

        Options other than ``"task"`` are passed on to the inner environment's reset.
        """
        super().reset(seed=seed)
        options = dict(options or {})
        task = options.pop("task", None)
        # The inner seed is drawn before the task, so that a given task and a drawn one leave
        # the inner environment's noise the same for the same seed.
        env_seed = None if seed is None else int(self.np_random.integers(_SEED_BOUND))
        if task is None:
            tasks = self.distribution.meta_split().tasks(self.split)
            task = tasks[int(self.np_random.integers(len(tasks)))]
        self.env.unwrapped.set_task(task)
        self._task = task
        self._task_row = self._task_parameters(task) if self.task_visible else None
        self._episode_step = 0
        obs, info = self.env.reset(seed=env_seed, options=options or None)
        self._check_finite(obs, 0.0)
        return self._observe(obs), info

    def step(self, action):
        if self._task is None:
            raise RuntimeError("call reset() before step() on TaskSamplingEnv")
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._episode_step += 1
        self._check_finite(obs, reward)
        return self._observe(obs), reward, terminated, truncated, info

    def render(self):
        return self.env.render()

    def close(self):
        self.env.close()

    def _task_parameters(self, task: Task) -> np.ndarray:
        """Return the task's parameter row, shape (k,), in the observation's dtype."""
        row = np.asarray(self.distribution.task_params([task]), dtype=self._dtype).reshape(-1)
        if row.shape != (self.num_task_params,):
            raise ValueError(
                f"{self.distribution.name}.task_params gave {row.size} parameters for task "
                f"{task!r}, but the observation space holds {self.num_task_params}"
            )
        return row

    def _observe(self, obs) -> np.ndarray:
        if not self.task_visible:
            return obs
        return np.concatenate([np.asarray(obs, dtype=self._dtype), self._task_row])

    def _check_finite(self, obs, reward) -> None:
        obs_finite = bool(np.all(np.isfinite(np.asarray(obs, dtype=np.float64))))
        if obs_finite and np.isfinite(reward):
            return
        kind = "reward" if obs_finite else "observation"
        raise NonFiniteError(
            f"{type(self.env.unwrapped).__name__} of {self.distribution.name} returned a "
            f"non-finite {kind} at step {self._episode_step} of the episode on task "
            f"{self._task!r}: reward={reward!r}, observation={np.asarray(obs).tolist()}. Check "
            "the environment's dynamics and the action it was given, because training on such "
            "values corrupts the policy."
        )
