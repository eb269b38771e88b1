"""Generalized advantage estimation (Schulman et al., 2016) with explicit boundary kinds."""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute advantages and value targets for a time-major rollout.

    Two boundary kinds enter separately, as in torchrl:

    - ``terminated[t]``: the step reached a terminal state, so its TD error does not bootstrap.
    - ``done[t]``: the trace stops after step t (termination, truncation, or a trial end),
      so the advantage of step t does not recurse into step t + 1. A truncated step has
      ``done`` set but not ``terminated``, and bootstraps from ``next_values[t]``, which the
      caller computes from the real final observation, not from the reset one.

    For RL² the "episode" here is the trial: an inner-episode end inside a trial is neither.

    Args:
        rewards: ``(num_steps, num_envs)``.
        values: V(s_t), ``(num_steps, num_envs)``.
        next_values: V(s_{t+1}) of the observation step t really led to, ``(num_steps, num_envs)``.
        terminated: ``(num_steps, num_envs)``, bool.
        done: ``(num_steps, num_envs)``, bool; must include every terminated step.
        gamma: discount factor.
        gae_lambda: GAE's lambda.

    Returns:
        ``(advantages, returns)``, both ``(num_steps, num_envs)``; returns = advantages + values.
    """
    shape = rewards.shape
    for name, tensor in (("values", values), ("next_values", next_values),
                         ("terminated", terminated), ("done", done)):
        if tensor.shape != shape:
            raise ValueError(f"expected {name} of shape {tuple(shape)}, got {tuple(tensor.shape)}")

    bootstrap = (~terminated.bool()).to(rewards.dtype)
    carry = (~done.bool()).to(rewards.dtype)
    deltas = rewards + gamma * bootstrap * next_values - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(shape[0])):
        running = deltas[t] + gamma * gae_lambda * carry[t] * running
        advantages[t] = running
    return advantages, advantages + values
