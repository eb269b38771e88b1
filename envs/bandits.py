"""Multi-armed bandit tasks: the RL² paper's Bernoulli bandits and a Gaussian-reward variant.

One inner episode is one pull, so a trial of ``num_pulls`` episodes is the paper's setting
of n pulls on one bandit (Duan et al., 2016, "RL²: Fast Reinforcement Learning via Slow
Reinforcement Learning", section 4.1), and the adaptation curve is the mean reward per pull.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from envs.batched import BatchedEnv
from envs.tasks import Task, TaskDistribution

REWARD_KINDS = ("bernoulli", "gaussian")


@dataclass(frozen=True)
class BanditTask(Task):
    """A k-armed bandit, fixed by the mean reward of each arm."""

    arm_means: tuple[float, ...]

    def __post_init__(self):
        # A list would make the task unhashable; store plain floats in a tuple.
        object.__setattr__(self, "arm_means", tuple(float(m) for m in self.arm_means))


def _check_bandit_args(num_arms: int, reward: str, reward_std: float) -> None:
    if int(num_arms) < 2:
        raise ValueError(f"a bandit needs at least 2 arms (k >= 2), got k={num_arms}")
    if reward not in REWARD_KINDS:
        raise ValueError(f"unknown bandit reward {reward!r}; expected one of {REWARD_KINDS}")
    if reward == "gaussian" and not reward_std > 0:
        raise ValueError(f"reward_std must be positive for Gaussian rewards, got {reward_std}")


class BanditEnv(gym.Env):
    """One pull of a k-armed bandit per episode.

    The observation is a constant ``[0.0]``: a bandit has no state, and everything an agent
    learns about the task comes from its past actions and rewards, which the trial wrapper
    appends. Each step terminates the episode.

    Rewards are Bernoulli(mean) for ``reward="bernoulli"`` and Normal(mean, reward_std²) for
    ``reward="gaussian"``; arm means are Uniform(0, 1) in both families.

    Args:
        num_arms: k, the number of arms.
        reward: ``"bernoulli"`` or ``"gaussian"``.
        reward_std: standard deviation of Gaussian rewards; unused for Bernoulli.
        oracle: put the arm means into ``info["task"]``.
        task: the initial task. Without one, the first reset draws a task from the prior
            with the environment's own ``np_random``, so that ``gym.make`` alone gives a
            working environment. ``set_task`` replaces it.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        num_arms: int = 5,
        reward: str = "bernoulli",
        reward_std: float = 1.0,
        oracle: bool = False,
        task: BanditTask | None = None,
    ):
        _check_bandit_args(num_arms, reward, reward_std)
        self.num_arms = int(num_arms)
        self.reward = reward
        self.reward_std = float(reward_std)
        self.oracle = oracle
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(self.num_arms)
        self._task: BanditTask | None = None
        if task is not None:
            self.set_task(task)

    @property
    def task(self) -> BanditTask | None:
        return self._task

    def set_task(self, task: BanditTask) -> None:
        if len(task.arm_means) != self.num_arms:
            raise ValueError(
                f"task has {len(task.arm_means)} arms but the environment has {self.num_arms}"
            )
        self._task = task
        self._means = np.asarray(task.arm_means, dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._task is None:
            means = self.np_random.uniform(0.0, 1.0, self.num_arms)
            self.set_task(BanditTask(tuple(float(m) for m in means)))
        return np.zeros(1, dtype=np.float32), self._info()

    def draw_noise(self) -> float:
        """Draw the random number the next reward is computed from: Uniform(0, 1) or Normal(0, 1)."""
        if self.reward == "bernoulli":
            return float(self.np_random.random())
        return float(self.np_random.standard_normal())

    def step(self, action):
        if self._task is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}; expected an int in [0, {self.num_arms})")
        noise = self.draw_noise()
        mean = self._means[int(action)]
        if self.reward == "bernoulli":
            reward = 1.0 if noise < mean else 0.0
        else:
            reward = float(mean + self.reward_std * noise)
        return np.zeros(1, dtype=np.float32), reward, True, False, self._info()

    def _info(self) -> dict[str, Any]:
        return {"task": self._task.to_dict()} if self.oracle else {}


class BatchedBanditEnv(BatchedEnv):
    """``num_envs`` bandits stepped at once as torch tensors, with :class:`BanditEnv`'s semantics.

    Task parameters are a tensor of arm means of shape ``(num_envs, num_arms)``.
    """

    def __init__(
        self,
        num_envs: int,
        num_arms: int,
        reward: str = "bernoulli",
        reward_std: float = 1.0,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ):
        _check_bandit_args(num_arms, reward, reward_std)
        super().__init__(num_envs, device, generator)
        self.num_arms = int(num_arms)
        self.reward = reward
        self.reward_std = float(reward_std)
        self.observation_dim = 1
        self.action_space = gym.spaces.Discrete(self.num_arms)
        self.task_params = torch.full((num_envs, self.num_arms), 0.5, device=self.device)
        self._obs = torch.zeros(num_envs, 1, device=self.device)

    def set_tasks(self, mask: torch.Tensor, task_params: torch.Tensor) -> None:
        # Rows of unmasked envs keep their task; torch.where avoids a host sync on the mask.
        self.task_params = torch.where(mask[:, None], task_params, self.task_params)

    def reset(self, mask: torch.Tensor) -> torch.Tensor:
        return self._obs

    def draw_noise(self) -> torch.Tensor:
        shape = (self.num_envs,)
        if self.reward == "bernoulli":
            return torch.rand(shape, device=self.device, generator=self.generator)
        return torch.randn(shape, device=self.device, generator=self.generator)

    def step(self, actions: torch.Tensor, noise: torch.Tensor | None = None):
        if noise is None:
            noise = self.draw_noise()
        means = self.task_params.gather(1, actions.long()[:, None]).squeeze(1)
        if self.reward == "bernoulli":
            rewards = (noise < means).to(torch.float32)
        else:
            rewards = (means + self.reward_std * noise).to(torch.float32)
        terminated = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        truncated = torch.zeros_like(terminated)
        return self._obs, rewards, terminated, truncated

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"task_params": self.task_params.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.task_params = state["task_params"].to(self.device)


class BanditDistribution(TaskDistribution):
    """k-armed bandits with arm means ~ Uniform(0, 1), ``num_pulls`` pulls per trial.

    Args:
        num_arms: k.
        num_pulls: n, pulls per trial; each pull is one inner episode.
        reward: ``"bernoulli"`` (the RL² paper's bandits) or ``"gaussian"``.
        reward_std: standard deviation of Gaussian rewards.
        num_train_tasks: meta-train set size.
        num_test_tasks: meta-test set size.
        split_seed: seed of the meta-train / meta-test split.
    """

    def __init__(
        self,
        num_arms: int = 5,
        num_pulls: int = 10,
        reward: str = "bernoulli",
        reward_std: float = 1.0,
        num_train_tasks: int = 100_000,
        num_test_tasks: int = 10_000,
        split_seed: int = 0,
    ):
        _check_bandit_args(num_arms, reward, reward_std)
        if int(num_pulls) < 1:
            raise ValueError(f"a trial needs at least one pull (n >= 1), got n={num_pulls}")
        super().__init__(num_train_tasks, num_test_tasks, split_seed)
        self.num_arms = int(num_arms)
        self.num_pulls = int(num_pulls)
        self.episodes_per_trial = self.num_pulls
        self.reward = reward
        self.reward_std = float(reward_std)
        prefix = "bandit" if reward == "bernoulli" else "gaussian-bandit"
        self.name = f"{prefix}-k{self.num_arms}-n{self.num_pulls}"

    def sample_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[BanditTask]:
        # Rounded to float32 so that the Gymnasium env (float64) and the batched env (float32)
        # compare rewards against the same means.
        means = rng.uniform(0.0, 1.0, size=(num_tasks, self.num_arms)).astype(np.float32)
        return [BanditTask(tuple(row.tolist())) for row in means]

    def episode_step_limit(self) -> int:
        return 1  # one pull per inner episode

    def task_params(self, tasks) -> np.ndarray:
        """Return the arm means of ``tasks`` as an array of shape ``(num_tasks, num_arms)``."""
        return np.asarray([task.arm_means for task in tasks], dtype=np.float32)

    def make_env(self, oracle: bool = False) -> BanditEnv:
        return BanditEnv(self.num_arms, self.reward, self.reward_std, oracle=oracle)

    def make_batched_env(self, num_envs: int, device="cpu", generator=None) -> BatchedBanditEnv:
        return BatchedBanditEnv(
            num_envs, self.num_arms, self.reward, self.reward_std, device=device, generator=generator
        )

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "num_arms": self.num_arms,
            "num_pulls": self.num_pulls,
            "reward": self.reward,
            "reward_std": self.reward_std,
        }
