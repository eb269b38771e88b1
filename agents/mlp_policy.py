"""Feed-forward policies for MAML-PPO: a tanh MLP into a categorical or Gaussian head."""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import torch
from torch import nn

from agents.networks import CategoricalHead, GaussianHead, orthogonal_linear

POLICY_KINDS = ("auto", "categorical", "gaussian")


def resolve_policy_kind(kind: str, action_space: gym.Space) -> str:
    """Return ``"categorical"`` or ``"gaussian"`` for ``kind`` on ``action_space``.

    Raises:
        ValueError: for an unknown kind, or a kind that does not fit the action space.
    """
    if kind not in POLICY_KINDS:
        raise ValueError(f"unknown policy {kind!r}; expected one of {POLICY_KINDS}")
    discrete = isinstance(action_space, gym.spaces.Discrete)
    box = isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1
    if not (discrete or box):
        raise ValueError(
            f"MAML-PPO supports Discrete and 1-D Box action spaces, got {action_space}"
        )
    if kind == "auto":
        return "categorical" if discrete else "gaussian"
    if kind == "categorical" and box:
        raise ValueError(
            f"policy 'categorical' needs a Discrete action space, but the environment's is "
            f"{action_space}; set policy to 'gaussian' or 'auto'"
        )
    if kind == "gaussian" and discrete:
        raise ValueError(
            f"policy 'gaussian' needs a Box action space, but the environment's is "
            f"{action_space}; set policy to 'categorical' or 'auto'"
        )
    return kind


class MLPPolicy(nn.Module):
    """Observation -> tanh hidden layers -> categorical or Gaussian head parameters.

    MAML's inner loop adapts every parameter, the Gaussian log standard deviation included,
    as the MAML paper's policies did. The module is called functionally
    (``torch.func.functional_call``) with adapted parameters, so it keeps no state beyond them.

    Args:
        observation_dim: width of the observation.
        action_space: the environment's action space.
        hidden_sizes: widths of the hidden layers (the MAML paper used two of 100; 64 here).
        kind: ``"auto"``, ``"categorical"`` or ``"gaussian"``.
        log_std_init: initial log standard deviation of the Gaussian head.
    """

    def __init__(
        self,
        observation_dim: int,
        action_space: gym.Space,
        hidden_sizes: Sequence[int] = (64, 64),
        kind: str = "auto",
        log_std_init: float = 0.0,
    ):
        super().__init__()
        self.kind = resolve_policy_kind(kind, action_space)
        self.observation_dim = int(observation_dim)
        layers: list[nn.Module] = []
        width = self.observation_dim
        for size in hidden_sizes:
            layers += [orthogonal_linear(nn.Linear(width, int(size)), math.sqrt(2)), nn.Tanh()]
            width = int(size)
        self.trunk = nn.Sequential(*layers)
        if self.kind == "categorical":
            self.head = CategoricalHead(width, int(action_space.n))
        else:
            self.head = GaussianHead(width, int(action_space.shape[0]), log_std_init)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Return head parameters ``(..., k)`` for observations ``(..., observation_dim)``."""
        return self.head(self.trunk(obs))
