"""Hyperparameters of the stable-baselines3 baselines and the families they can train on."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from envs.tasks import TaskDistribution


@dataclass
class SB3PPOConfig:
    """Hyperparameters shared by the two stable-baselines3 baselines, under SB3's own names.

    Values left out here (``vf_coef``, ``max_grad_norm``, a constant learning rate and clip
    range) keep stable-baselines3's defaults.
    """

    num_envs: int = 8
    """Environments in SB3's DummyVecEnv, stepped one after another in this process."""
    n_steps: int = 256
    """Env steps per environment in each rollout (the rollout has num_envs * n_steps steps)."""
    batch_size: int = 256
    """Env steps per PPO minibatch, a divisor of the rollout of num_envs * n_steps steps."""
    n_epochs: int = 10
    """PPO passes over each rollout."""
    learning_rate: float = 3e-4
    """Adam step size, constant over training."""
    gamma: float = 0.99
    """Discount factor per env step."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO ratio clipping range."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus. SB3's default is 0, and 0.01 is the RL² and memory agents'."""
    net_arch: tuple[int, ...] = (64, 64)
    """Widths of the hidden layers of the policy and of the value network (separate networks)."""

    @property
    def rollout_size(self) -> int:
        return self.num_envs * self.n_steps

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Rebuild a config from ``dataclasses.asdict`` output or JSON (lists for tuples)."""
        data = dict(data)
        if "net_arch" in data:
            data["net_arch"] = tuple(data["net_arch"])
        return cls(**data)

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field and how to fix it."""
        for name in ("num_envs", "n_steps", "batch_size", "n_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("learning_rate", "clip_range"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        if not isinstance(self.ent_coef, (int, float)) or not self.ent_coef >= 0 \
                or not math.isfinite(self.ent_coef):
            raise ValueError(f"ent_coef must be a non-negative finite number, got {self.ent_coef!r}")
        if any(not isinstance(width, int) or width < 1 for width in self.net_arch):
            raise ValueError(f"net_arch must list positive layer widths, got {self.net_arch!r}")
        # SB3 normalizes advantages per minibatch, which needs at least two samples.
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {self.batch_size}")
        if self.batch_size > self.rollout_size or self.rollout_size % self.batch_size:
            divisors = [size for size in range(2, self.rollout_size + 1)
                        if self.rollout_size % size == 0]
            suggestion = min(divisors, key=lambda size: abs(self.rollout_size // size - 8))
            raise ValueError(
                f"batch_size {self.batch_size} must divide the rollout of num_envs * n_steps = "
                f"{self.rollout_size} env steps, or SB3 trains on a truncated last minibatch. "
                f"For example, use batch_size={suggestion} for "
                f"{self.rollout_size // suggestion} minibatches."
            )

    def model_kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments of the SB3 algorithm's constructor set by this config."""
        return {
            "learning_rate": self.learning_rate,
            "n_steps": self.n_steps,
            "batch_size": self.batch_size,
            "n_epochs": self.n_epochs,
            "gamma": self.gamma,
            "gae_lambda": self.gae_lambda,
            "clip_range": self.clip_range,
            "ent_coef": self.ent_coef,
            "policy_kwargs": {"net_arch": [int(width) for width in self.net_arch]},
        }


@dataclass
class PPOBaselineConfig(SB3PPOConfig):
    """Hyperparameters of the PPO baseline: SB3's PPO with a feed-forward policy ("MlpPolicy").

    The policy's input is only the environment's observation, and every episode runs on a
    new task, so it learns the best behaviour on average over the task prior.
    """

    def validate_for(self, distribution: TaskDistribution) -> None:
        """Raise ValueError when the family's environment does not fit the baseline."""
        check_family(distribution, "ppo", recurrent=False)


@dataclass
class RecurrentPPOBaselineConfig(SB3PPOConfig):
    """Hyperparameters of the RecurrentPPO baseline: sb3-contrib's RecurrentPPO ("MlpLstmPolicy").

    The defaults are sb3-contrib 2.9's on 16 environments, except ``ent_coef``, minibatches of
    256 steps and an LSTM of 64 units instead of 256, for the short trials of the bandit,
    tabular and maze families.
    """

    num_envs: int = 16
    """Trial environments in SB3's DummyVecEnv, stepped one after another in this process."""
    n_steps: int = 128
    """Env steps per environment in each rollout (the rollout has num_envs * n_steps steps).
    A trial may span rollouts: the LSTM state carries over."""
    lstm_hidden_size: int = 64
    """Width of the LSTM state, for the policy and for the value function's own LSTM."""

    def validate(self) -> None:
        super().validate()
        value = self.lstm_hidden_size
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"lstm_hidden_size must be a positive integer, got {value!r}")

    def validate_for(self, distribution: TaskDistribution) -> None:
        """Raise ValueError when sb3-contrib is missing or the family's environment does not fit."""
        if importlib.util.find_spec("sb3_contrib") is None:
            raise ValueError(
                "--agent recurrent-ppo needs the sb3-contrib package, which is not installed. "
                "Install it with `pip install 'adaptrl[bench]'` or `pip install sb3-contrib`."
            )
        check_family(distribution, "recurrent-ppo", recurrent=True)

    def model_kwargs(self) -> dict[str, Any]:
        kwargs = super().model_kwargs()
        kwargs["policy_kwargs"]["lstm_hidden_size"] = self.lstm_hidden_size
        return kwargs


def check_family(distribution: TaskDistribution, agent: str, recurrent: bool) -> None:
    """Raise ValueError unless one environment of ``distribution`` fits an SB3 baseline.

    Both baselines need ``set_task`` and a 1-D Box observation, because the task-sampling
    env and the trial wrapper do. The PPO baseline takes every action space SB3's PPO takes
    (Discrete, Box, MultiDiscrete, MultiBinary). The trial wrapper encodes the previous
    action into the observation only for Discrete and 1-D Box actions. Every built-in
    family fits both.
    """
    env = distribution.make_env()
    try:
        observation_space, action_space = env.observation_space, env.action_space
        has_set_task = callable(getattr(env.unwrapped, "set_task", None))
    finally:
        env.close()
    problems = []
    if not has_set_task:
        problems.append(f"its environment {type(env.unwrapped).__name__} has no set_task(task)")
    if not (isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 1):
        problems.append(f"its observation space {observation_space} is not a 1-D Box")
    if recurrent:
        action_ok = isinstance(action_space, gym.spaces.Discrete) or (
            isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1)
        supported = "Discrete or 1-D Box"
    else:
        action_ok = isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box,
                                              gym.spaces.MultiDiscrete, gym.spaces.MultiBinary))
        supported = "Discrete, Box, MultiDiscrete or MultiBinary"
    if not action_ok:
        problems.append(f"its action space {action_space} is not {supported}")
    if problems:
        raise ValueError(
            f"--agent {agent} does not support {distribution.name}: {'; '.join(problems)}. It "
            f"needs an environment with set_task, a 1-D Box observation and a {supported} "
            "action space. Wrap the environment in the distribution's make_env "
            "(gymnasium.wrappers.FlattenObservation flattens observations), or pick another agent."
        )
