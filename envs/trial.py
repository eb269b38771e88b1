"""RL²'s trial wrapper: one Gymnasium episode is one trial of several inner episodes on one task."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.batched import previous_action_dim
from envs.tasks import SPLITS, Task, TaskDistribution


class NonFiniteError(ValueError):
    """An environment returned a NaN or infinite observation or reward."""


def check_finite(env_name: str, task: Task | None, step: int, obs, reward) -> None:
    """Raise :class:`NonFiniteError` naming the env, task and step if obs or reward is not finite."""
    obs_ok = bool(np.all(np.isfinite(np.asarray(obs, dtype=np.float64))))
    reward_ok = bool(np.isfinite(reward))
    if obs_ok and reward_ok:
        return
    kind = "observation" if not obs_ok else "reward"
    raise NonFiniteError(
        f"{env_name} returned a non-finite {kind} at step {step} of the trial on task {task}: "
        f"reward={reward!r}, observation={np.asarray(obs).tolist()}. Check the environment's "
        "dynamics and the action it was given; training on such values corrupts the policy."
    )


class TrialWrapper(gym.Wrapper):
    """Turn a task environment into RL²'s interface.

    One episode of this wrapper is one trial: ``episodes_per_trial`` inner episodes on one task,
    drawn uniformly from the chosen split at the trial start (or given as
    ``reset(options={"task": task})``). An inner episode end resets the inner environment
    without changing the task and does not end the wrapper's episode. The end of the last
    inner episode terminates it.

    Observation: ``[base obs, previous action, previous reward, inner-episode-start flag]``,
    float32, with the previous action one-hot for Discrete spaces. At a trial start the previous
    action and reward are zero and the flag is 1; the flag is 1 on the first observation of
    every inner episode.

    ``info`` carries ``inner_episode`` (index of the inner episode the returned observation
    belongs to) and ``inner_episode_returns`` (returns of the trial's finished inner episodes).
    Task parameters appear only where the inner environment was built in oracle mode.

    Args:
        env: environment with ``set_task``; its observation space must be a 1-D Box.
        distribution: where tasks come from.
        split: ``"meta-train"`` or ``"meta-test"``.
        episodes_per_trial: inner episodes per trial; the distribution's default if None.
    """

    def __init__(
        self,
        env: gym.Env,
        distribution: TaskDistribution,
        split: str = "meta-train",
        episodes_per_trial: int | None = None,
    ):
        super().__init__(env)
        if not hasattr(env.unwrapped, "set_task"):
            raise TypeError(
                f"{env} has no set_task(task) method; a trial needs an environment whose task "
                "can be set. Add set_task to the environment class."
            )
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if episodes_per_trial is None:
            episodes_per_trial = distribution.episodes_per_trial
        if int(episodes_per_trial) < 1:
            raise ValueError(f"episodes_per_trial must be at least 1, got {episodes_per_trial}")
        base_space = env.observation_space
        if not (isinstance(base_space, gym.spaces.Box) and len(base_space.shape) == 1):
            raise TypeError(
                f"trials need a 1-D Box observation space, got {base_space}; flatten it first"
            )
        self.distribution = distribution
        self.split = split
        self.episodes_per_trial = int(episodes_per_trial)
        self.discrete = isinstance(env.action_space, gym.spaces.Discrete)
        self.action_dim = previous_action_dim(env.action_space)
        low = np.concatenate(
            [base_space.low, np.full(self.action_dim + 2, -np.inf)]
        ).astype(np.float32)
        high = np.concatenate(
            [base_space.high, np.full(self.action_dim + 2, np.inf)]
        ).astype(np.float32)
        if self.discrete:
            low[-self.action_dim - 2:-2], high[-self.action_dim - 2:-2] = 0.0, 1.0
        low[-1], high[-1] = 0.0, 1.0
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self._task_rng = np.random.default_rng()
        self._trial_step = 0

    @property
    def _env_name(self) -> str:
        # Read when needed: gym.make attaches the spec after the wrapper is built.
        spec = self.spec or self.env.spec
        return spec.id if spec is not None else type(self.env.unwrapped).__name__

    @property
    def task(self) -> Task | None:
        return self.env.unwrapped.task

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            # Task draws get their own stream so that they do not shift the inner env's noise.
            self._task_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        options = dict(options or {})
        task = options.pop("task", None)
        if task is None:
            tasks = self.distribution.meta_split().tasks(self.split)
            task = tasks[int(self._task_rng.integers(len(tasks)))]
        self.env.unwrapped.set_task(task)
        obs, info = self.env.reset(seed=seed, options=options or None)
        self._episode_index = 0
        self._episode_return = 0.0
        self._episode_returns: list[float] = []
        self._trial_step = 0
        check_finite(self._env_name, task, 0, obs, 0.0)
        no_action = np.zeros(self.action_dim, dtype=np.float32)
        return self._observe(obs, no_action, 0.0, True), self._info(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._trial_step += 1
        check_finite(self._env_name, self.task, self._trial_step, obs, reward)
        self._episode_return += float(reward)
        prev_action = self._encode_action(action)
        if not (terminated or truncated):
            return self._observe(obs, prev_action, reward, False), reward, False, False, self._info(info)

        self._episode_returns.append(self._episode_return)
        self._episode_return = 0.0
        if len(self._episode_returns) >= self.episodes_per_trial:
            # The trial is complete: its last observation keeps the last action and reward.
            return self._observe(obs, prev_action, reward, True), reward, True, False, self._info(info)

        self._episode_index += 1
        obs, reset_info = self.env.reset()
        check_finite(self._env_name, self.task, self._trial_step, obs, reward)
        info = {**info, **reset_info}
        return self._observe(obs, prev_action, reward, True), reward, False, False, self._info(info)

    def _encode_action(self, action) -> np.ndarray:
        if self.discrete:
            one_hot = np.zeros(self.action_dim, dtype=np.float32)
            one_hot[int(action)] = 1.0
            return one_hot
        return np.asarray(action, dtype=np.float32).reshape(self.action_dim)

    def _observe(self, obs, prev_action, prev_reward, episode_start: bool) -> np.ndarray:
        return np.concatenate(
            [
                np.asarray(obs, dtype=np.float32),
                prev_action,
                np.array([prev_reward, float(episode_start)], dtype=np.float32),
            ]
        )

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        return {
            **info,
            "inner_episode": self._episode_index,
            "inner_episode_returns": list(self._episode_returns),
        }
