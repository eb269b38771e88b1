"""MAML's inner and outer losses, and adaptation differentiated through with ``torch.func``.

Notation: theta are the meta-parameters, D_k the trajectories of adaptation step k (sampled
with theta_k), and alpha the inner learning rate. Adaptation is

    theta_{k+1} = theta_k - alpha * grad L_in(theta_k; D_k),    theta_0 = theta,

with L_in the vanilla policy-gradient loss -mean(log pi(a|s) * A). The outer loss is PPO's
clipped surrogate of theta_K on the post-adaptation trajectories. Its gradient with respect
to theta runs back through every adaptation step: the second-order meta-gradient contains the
Hessians of L_in. ``first_order=True`` computes each inner gradient at detached parameters,
so d theta_{k+1} / d theta_k is the identity and those Hessian terms are dropped.

alpha may also be learned: one scalar per parameter tensor and adaptation step, which the
outer loss differentiates like theta (the per-layer, per-step rates of MAML++: Antoniou,
Edwards and Storkey, "How to train your MAML", ICLR 2019, arXiv:1810.09502).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import grad, vmap

from agents.gae import compute_gae
from agents.linear_baseline import fit_predict
from agents.maml_sampler import Params, Trajectories, policy_forward

# The inner step size alpha: one number for every parameter tensor, or one scalar tensor per
# parameter tensor's name (learned step sizes, which the outer loss differentiates).
StepSize = float | Mapping[str, torch.Tensor]


@dataclass
class TaskBatch:
    """Loss inputs from one adaptation step's trajectories, each ``(M, R, T, ...)``."""

    obs: torch.Tensor
    actions: torch.Tensor
    old_log_probs: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Return the discounted return to go of every step, ``(..., T)``, zero on padding."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(rewards.shape[-1])):
        running = (rewards[..., t] + gamma * running) * mask[..., t]
        returns[..., t] = running
    return returns


def make_task_batch(
    trajectories: Trajectories, gamma: float, gae_lambda: float, normalize: bool = True
) -> TaskBatch:
    """Fit the linear baseline per task and compute GAE advantages over each trajectory.

    Each episode is its own trace: the horizon is part of the task and the baseline's features
    include the time, so the last step of an episode is not bootstrapped (MAML's convention). With
    ``normalize``, advantages are standardized per task over the steps that happened.
    """
    mask = trajectories.mask
    returns = discounted_returns(trajectories.rewards, mask, gamma)
    values = fit_predict(trajectories.obs, returns, mask)
    m, r, t = mask.shape
    # compute_gae is time-major: (T, M * R).
    time_major = [x.reshape(m * r, t).transpose(0, 1) for x in (trajectories.rewards, values, mask)]
    rewards_t, values_t, mask_t = time_major
    next_values = torch.cat([values_t[1:], torch.zeros_like(values_t[:1])]) * mask_t
    # The last step that happened ends the trace: termination for GAE, without bootstrap.
    last = mask_t.bool() & ~torch.cat([mask_t[1:], torch.zeros_like(mask_t[:1])]).bool()
    advantages, _ = compute_gae(rewards_t, values_t, next_values, last, last, gamma, gae_lambda)
    advantages = advantages.transpose(0, 1).reshape(m, r, t) * mask
    if normalize:
        count = mask.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)
        mean = advantages.sum(dim=(1, 2), keepdim=True) / count
        centered = (advantages - mean) * mask
        std = (centered.pow(2).sum(dim=(1, 2), keepdim=True) / count).sqrt()
        advantages = centered / (std + 1e-8)
    return TaskBatch(trajectories.obs, trajectories.actions, trajectories.log_probs,
                     advantages.detach(), mask)


def _flat(batch_field: torch.Tensor) -> torch.Tensor:
    """Merge the rollout and time axes of one task's field: ``(R, T, ...)`` -> ``(R * T, ...)``."""
    return batch_field.reshape(-1, *batch_field.shape[2:])


def log_probs_of(policy: nn.Module, params: Params, obs: torch.Tensor, actions: torch.Tensor):
    """Log-probabilities of ``actions`` at ``obs`` under ``params`` (one task, any batch shape)."""
    head_params = policy_forward(policy, params, obs)
    return policy.head.log_prob(head_params, actions)


def inner_loss(policy: nn.Module, params: Params, obs, actions, advantages, mask) -> torch.Tensor:
    """Vanilla policy-gradient loss of one task: ``-sum(mask * log pi * A) / sum(mask)``."""
    log_probs = log_probs_of(policy, params, _flat(obs), _flat(actions))
    weights = _flat(mask)
    return -(log_probs * _flat(advantages) * weights).sum() / weights.sum().clamp_min(1.0)


def adapt(
    policy: nn.Module,
    params: Params,
    batch: TaskBatch,
    inner_learning_rate: StepSize,
    first_order: bool,
    shared: bool,
) -> Params:
    """Take one adaptation step on every task of ``batch``.

    Args:
        params: theta_k; the same for every task (``shared``, theta_0) or stacked per task
            with a leading axis M.
        batch: step k's trajectories of the M tasks.
        inner_learning_rate: alpha, or a scalar tensor per parameter name.
        first_order: take the inner gradient at detached parameters.

    Returns:
        theta_{k+1}, stacked per task ``(M, ...)``.
    """
    def task_gradient(task_params, obs, actions, advantages, mask):
        return grad(lambda p: inner_loss(policy, p, obs, actions, advantages, mask))(task_params)

    at = {name: value.detach() for name, value in params.items()} if first_order else params
    gradients = vmap(task_gradient, in_dims=(None if shared else 0, 0, 0, 0, 0))(
        at, batch.obs, batch.actions, batch.advantages, batch.mask
    )
    num_tasks = batch.obs.shape[0]
    per_name = isinstance(inner_learning_rate, Mapping)
    return {
        name: (value.unsqueeze(0).expand(num_tasks, *value.shape) if shared else value)
        - (inner_learning_rate[name] if per_name else inner_learning_rate) * gradients[name]
        for name, value in params.items()
    }


def step_size_at(inner_learning_rate: StepSize | Sequence[StepSize], step: int) -> StepSize:
    """Return the step size of adaptation step ``step`` (0-based).

    A sequence contains one step size per trained step, and steps past its end (a meta-test that
    adapts longer than training did) reuse its last entry.
    """
    if isinstance(inner_learning_rate, Sequence):
        return inner_learning_rate[min(step, len(inner_learning_rate) - 1)]
    return inner_learning_rate


def adapt_through(
    policy: nn.Module,
    params: Params,
    batches: list[TaskBatch],
    inner_learning_rate: StepSize | Sequence[StepSize],
    first_order: bool,
) -> Params:
    """Return theta_K per task after one adaptation step on each of ``batches`` in turn.

    ``inner_learning_rate`` is one step size for every step, or a sequence with one per step.
    """
    adapted, shared = params, True
    for step, batch in enumerate(batches):
        adapted = adapt(policy, adapted, batch, step_size_at(inner_learning_rate, step),
                        first_order, shared)
        shared = False
    return adapted


def clipped_surrogate_loss(
    policy: nn.Module, adapted: Params, batch: TaskBatch, clip_coef: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate loss of the adapted parameters, averaged over tasks.

    Returns:
        The loss and detached statistics (``approx_kl``, ``clip_fraction``), averaged over the
        steps that happened.
    """
    def task_log_probs(task_params, obs, actions):
        return log_probs_of(policy, task_params, obs, actions)

    new_log_probs = vmap(task_log_probs)(adapted, batch.obs, batch.actions)
    log_ratio = new_log_probs - batch.old_log_probs
    ratio = log_ratio.exp()
    advantages = batch.advantages
    clipped = ratio.clamp(1 - clip_coef, 1 + clip_coef)
    surrogate = torch.min(ratio * advantages, clipped * advantages)
    mask = batch.mask
    per_task = -(surrogate * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp_min(1.0)
    with torch.no_grad():
        count = mask.sum().clamp_min(1.0)
        stats = {
            "approx_kl": (((ratio - 1) - log_ratio) * mask).sum() / count,
            "clip_fraction": (((ratio - 1).abs() > clip_coef).float() * mask).sum() / count,
        }
    return per_task.mean(), stats


def meta_loss(
    policy: nn.Module,
    params: Params,
    adaptation_batches: list[TaskBatch],
    post_batch: TaskBatch,
    inner_learning_rate: StepSize | Sequence[StepSize],
    first_order: bool,
    clip_coef: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The outer objective as a function of theta (and of learned step sizes): adapt through
    every step, then PPO's loss."""
    adapted = adapt_through(policy, params, adaptation_batches, inner_learning_rate, first_order)
    return clipped_surrogate_loss(policy, adapted, post_batch, clip_coef)
