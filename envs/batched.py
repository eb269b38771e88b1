"""Batched torch environments: N tasks stepped at once on one device, and RL² trials over them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch

from envs.tasks import Task


class BatchedEnv(ABC):
    """``num_envs`` environments of one family stepped together as tensors.

    Semantics match the family's Gymnasium environment step for step, and a test checks that
    the two give identical trajectories. There is no autoreset: :class:`BatchedTrialEnv` decides which
    envs to reset. Randomness comes from ``generator`` only, and every ``step`` accepts the
    noise explicitly so that a test can feed the Gymnasium env's draws.
    """

    observation_dim: int
    action_space: gym.Space

    def __init__(self, num_envs: int, device: Any, generator: torch.Generator | None):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.generator = generator

    @abstractmethod
    def set_tasks(self, mask: torch.Tensor, task_params: torch.Tensor) -> None:
        """Put the envs where ``mask`` (shape ``(num_envs,)``, bool) is set on the given tasks."""

    @abstractmethod
    def reset(self, mask: torch.Tensor) -> torch.Tensor:
        """Reset the episodes of the masked envs; return all observations ``(num_envs, obs_dim)``."""

    @abstractmethod
    def step(self, actions: torch.Tensor, noise: torch.Tensor | None = None):
        """Step every env; return ``(obs, reward, terminated, truncated)`` without resetting."""

    def displacement(self) -> torch.Tensor | None:
        """Return where each agent is relative to its episode's start, or None.

        Families with positions return ``(num_envs, k)`` floats, scaled to about [-1, 1]. The
        policy never observes it, but a policy that keeps track of its own moves can work it
        out, so it serves as an auxiliary training target
        (``TrialPPOConfig.position_prediction_coef``). Families without positions keep this
        default.
        """
        return None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Return the tensors that resume the envs exactly; families with state override this."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        del state

    def check_state_rows(self, state: dict[str, torch.Tensor]) -> None:
        """Raise ValueError when a saved tensor does not have one row per env."""
        for name, tensor in state.items():
            if tensor.shape[0] != self.num_envs:
                raise ValueError(
                    f"state {name!r} has {tensor.shape[0]} rows but the environment has "
                    f"{self.num_envs} envs"
                )


@dataclass
class TrialStep:
    """Result of one step of :class:`BatchedTrialEnv`; every field has ``num_envs`` rows.

    Attributes:
        obs: next observation, ``(num_envs, obs_dim)``; the first of a new trial where one ended.
        reward: ``(num_envs,)``.
        terminated: the trial ended (all its inner episodes done): no bootstrap.
        truncated: the trial was cut short from outside: bootstrap from ``final_obs``.
        final_obs: the observation the step led to, before any reset.
        episode_end: an inner episode ended at this step.
        episode_index: inner-episode index the step belonged to, ``(num_envs,)`` int64.
        displacement: where the step left the agent relative to its episode's start, before
            any reset, ``(num_envs, k)``; None for families without positions
            (:meth:`BatchedEnv.displacement`).
    """

    obs: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_obs: torch.Tensor
    episode_end: torch.Tensor
    episode_index: torch.Tensor
    displacement: torch.Tensor | None = None


def previous_action_dim(action_space: gym.Space) -> int:
    """Return the width of the previous-action block of a trial observation."""
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return int(action_space.shape[0])
    raise TypeError(
        f"trials support Discrete and 1-D Box action spaces, got {action_space}; "
        "flatten the action space with a Gymnasium wrapper first"
    )


def trial_observation_dim(base_observation_dim: int, action_space: gym.Space) -> int:
    """Return the width of a trial observation: base obs, previous action, reward and flag."""
    return base_observation_dim + previous_action_dim(action_space) + 2


class BatchedTrialEnv:
    """RL² trials over a :class:`BatchedEnv`, with :class:`envs.trial.TrialWrapper`'s semantics.

    Each env runs trials of ``episodes_per_trial`` inner episodes on one task, drawn
    uniformly from ``tasks`` at the trial start. The observation is
    ``[base obs, previous action, previous reward, inner-episode-start flag]``: the previous
    action is one-hot for Discrete spaces, and at a trial start the previous action and reward
    are zero. Trials end by termination, because a trial has a fixed number of episodes.

    Args:
        base: the batched family environment.
        tasks: the tasks trials are drawn from (a split of the distribution).
        task_params: their parameters, shape ``(len(tasks), ...)``, as the base env takes them.
        episodes_per_trial: inner episodes per trial.
        generator: torch generator for task draws.
        name: the distribution's name, used in error messages.
    """

    # Trials end only by termination, so the rollout needs no bootstrap from final observations.
    may_truncate = False

    def __init__(
        self,
        base: BatchedEnv,
        tasks: Sequence[Task],
        task_params: torch.Tensor,
        episodes_per_trial: int,
        generator: torch.Generator | None = None,
        name: str = "batched environment",
    ):
        if int(episodes_per_trial) < 1:
            raise ValueError(f"episodes_per_trial must be at least 1, got {episodes_per_trial}")
        if len(tasks) != task_params.shape[0]:
            raise ValueError(
                f"expected one row of task_params per task, got {task_params.shape[0]} rows "
                f"for {len(tasks)} tasks"
            )
        self.base = base
        self.name = name
        self.tasks = tuple(tasks)
        self.num_envs = base.num_envs
        self.device = base.device
        self.task_pool = task_params.to(self.device)
        self.episodes_per_trial = int(episodes_per_trial)
        self.generator = generator
        self.action_space = base.action_space
        self.discrete = isinstance(base.action_space, gym.spaces.Discrete)
        self.action_dim = previous_action_dim(base.action_space)
        self.observation_dim = trial_observation_dim(base.observation_dim, base.action_space)
        n = self.num_envs
        self.task_index = torch.zeros(n, dtype=torch.long, device=self.device)
        self.episode_index = torch.zeros(n, dtype=torch.long, device=self.device)
        self._base_obs = torch.zeros(n, base.observation_dim, device=self.device)
        self._all = torch.ones(n, dtype=torch.bool, device=self.device)

    def reset(self, task_index: torch.Tensor | None = None) -> torch.Tensor:
        """Start a new trial in every env; return the first observations.

        Args:
            task_index: indices into ``tasks``, shape ``(num_envs,)``; drawn uniformly if None.
        """
        if task_index is None:
            task_index = self._draw_task_index()
        self.task_index = task_index.to(self.device, torch.long)
        self.base.set_tasks(self._all, self.task_pool[self.task_index])
        self.episode_index = torch.zeros_like(self.episode_index)
        self._base_obs = self.base.reset(self._all)
        zeros = torch.zeros(self.num_envs, device=self.device)
        return self._observe(self._base_obs, torch.zeros(self.num_envs, self.action_dim,
                                                         device=self.device), zeros, self._all)

    def step(self, actions: torch.Tensor, noise: torch.Tensor | None = None) -> TrialStep:
        """Step every env; envs whose trial ended start a new trial on a newly drawn task."""
        base_obs, reward, base_terminated, base_truncated = self.base.step(actions, noise)
        displacement = self.base.displacement()
        episode_end = base_terminated | base_truncated
        prev_action = self._encode_action(actions)
        final_obs = self._observe(base_obs, prev_action, reward, episode_end)
        episode_index = self.episode_index
        trial_end = episode_end & (episode_index + 1 >= self.episodes_per_trial)

        new_task_index = torch.where(trial_end, self._draw_task_index(), self.task_index)
        self.base.set_tasks(trial_end, self.task_pool[new_task_index])
        self.task_index = new_task_index
        self.episode_index = torch.where(
            trial_end, 0, episode_index + episode_end.to(torch.long)
        )
        reset_obs = self.base.reset(episode_end)
        self._base_obs = torch.where(episode_end[:, None], reset_obs, base_obs)

        # A new trial starts with no previous action or reward.
        keep = (~trial_end).to(reward.dtype)
        obs = self._observe(self._base_obs, prev_action * keep[:, None], reward * keep, episode_end)
        return TrialStep(
            obs=obs,
            reward=reward,
            terminated=trial_end,
            truncated=torch.zeros_like(trial_end),
            final_obs=final_obs,
            episode_end=episode_end,
            episode_index=episode_index,
            displacement=displacement,
        )

    def current_tasks(self) -> list[Task]:
        """Return the task of each env (reads indices back to the host; not for the step loop)."""
        return [self.tasks[i] for i in self.task_index.tolist()]

    def state_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.state_dict(),
            "task_index": self.task_index.clone(),
            "episode_index": self.episode_index.clone(),
            "base_obs": self._base_obs.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state["base"])
        self.task_index = state["task_index"].to(self.device)
        self.episode_index = state["episode_index"].to(self.device)
        self._base_obs = state["base_obs"].to(self.device)

    def _draw_task_index(self) -> torch.Tensor:
        return torch.randint(
            len(self.tasks), (self.num_envs,), device=self.device, generator=self.generator
        )

    def _encode_action(self, actions: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return torch.nn.functional.one_hot(actions.long(), self.action_dim).to(torch.float32)
        return actions.to(torch.float32).reshape(self.num_envs, self.action_dim)

    def _observe(self, base_obs, prev_action, prev_reward, episode_start) -> torch.Tensor:
        # (num_envs, base_dim + action_dim + 2)
        return torch.cat(
            [
                base_obs.to(torch.float32),
                prev_action,
                prev_reward.to(torch.float32)[:, None],
                episode_start.to(torch.float32)[:, None],
            ],
            dim=1,
        )
