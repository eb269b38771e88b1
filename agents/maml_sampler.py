"""Trajectories for MAML: each task's rollouts under that task's own (adapted) parameters.

A meta-batch of M tasks with R rollouts each is M * R episodes. They run on a batched
environment (:class:`envs.batched.BatchedEnv`) of V rows, V episodes at a time. Each row acts
with the parameters of its task, gathered from the stacked per-task parameters, through
``torch.func.vmap`` over ``functional_call``. Cheap families step all M * R episodes
at once as one batched torch environment; MuJoCo families step a few Gymnasium vector-env
workers, chunk after chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap

from agents.networks import clip_action_tensor
from envs.batched import BatchedEnv

Params = dict[str, torch.Tensor]


@dataclass
class Trajectories:
    """One episode per rollout, padded to the longest, per task: ``(M, R, T, ...)`` tensors.

    Attributes:
        obs: observations ``(M, R, T, obs_dim)``.
        actions: as sampled, before any clipping into the action space: ``(M, R, T)`` for
            Discrete, ``(M, R, T, action_dim)`` for Box.
        log_probs: log-probabilities of the actions under the sampling parameters.
        rewards: ``(M, R, T)``.
        mask: 1.0 on steps that happened, 0.0 on padding after the episode ended.
        terminated: the step ended the episode in a terminal state (no bootstrap).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    terminated: torch.Tensor

    @property
    def num_steps(self) -> int:
        """Env steps that happened (a host read)."""
        return int(self.mask.sum().item())

    def episode_returns(self) -> torch.Tensor:
        """Undiscounted return of every episode, ``(M, R)``."""
        return (self.rewards * self.mask).sum(-1)

    def episode_lengths(self) -> torch.Tensor:
        return self.mask.sum(-1)


def policy_forward(policy: nn.Module, params: Params, obs: torch.Tensor) -> torch.Tensor:
    """Run ``policy`` with ``params`` (no leading task axis) on ``obs``."""
    return functional_call(policy, params, (obs,))


def batched_policy_forward(policy: nn.Module, params: Params, obs: torch.Tensor) -> torch.Tensor:
    """Run ``policy`` with per-row parameters: ``params`` and ``obs`` share the leading axis."""
    return vmap(lambda p, o: policy_forward(policy, p, o))(params, obs)


@torch.no_grad()
def sample_trajectories(
    env: BatchedEnv,
    policy: nn.Module,
    params: Params,
    task_params: torch.Tensor,
    rollouts_per_task: int,
    max_steps: int,
    generator: torch.Generator | None,
    deterministic: bool = False,
) -> Trajectories:
    """Run ``rollouts_per_task`` episodes of every task with that task's parameters.

    Args:
        env: batched environment; its rows are reused chunk after chunk.
        policy: the module whose parameters ``params`` replaces.
        params: per-task parameters with a leading task axis ``M``.
        task_params: the tasks as the env takes them, ``(M, ...)``.
        rollouts_per_task: R, episodes per task.
        max_steps: the longest an episode can last (the family's horizon); episodes end
            earlier when the env reports termination or truncation.
        generator: action sampling.
        deterministic: take each policy's most likely action instead of sampling.

    Returns:
        :class:`Trajectories` of shape ``(M, R, T, ...)`` with T the longest episode.
    """
    num_tasks = task_params.shape[0]
    num_episodes = num_tasks * rollouts_per_task
    device = env.device
    # Episode e belongs to task e // R.
    episode_task = torch.arange(num_tasks, device=device).repeat_interleave(rollouts_per_task)
    chunks = [_run_chunk(env, policy, params, task_params, episode_task[start:start + env.num_envs],
                         max_steps, generator, deterministic)
              for start in range(0, num_episodes, env.num_envs)]
    length = max(chunk["mask"].shape[0] for chunk in chunks)
    fields = {}
    for name in chunks[0]:
        padded = [_pad_time(chunk[name], length) for chunk in chunks]
        # (T, episodes, ...) -> (M, R, T, ...)
        joined = torch.cat(padded, dim=1).transpose(0, 1)
        fields[name] = joined.reshape(num_tasks, rollouts_per_task, *joined.shape[1:])
    return Trajectories(**fields)


def _run_chunk(env, policy, params, task_params, episode_task, max_steps, generator, deterministic):
    """Run one episode in each of the first ``len(episode_task)`` rows; return time-major tensors."""
    rows = episode_task.shape[0]
    device = env.device
    # Rows past the chunk's end (the last chunk may be short) repeat its last episode's task
    # and are dropped afterwards.
    row_task = torch.cat([episode_task, episode_task[-1:].expand(env.num_envs - rows)])
    all_rows = torch.ones(env.num_envs, dtype=torch.bool, device=device)
    env.set_tasks(all_rows, task_params[row_task])
    obs = env.reset(all_rows)
    row_params = {name: value[row_task] for name, value in params.items()}
    head = policy.head
    running = torch.ones(env.num_envs, dtype=torch.bool, device=device)
    steps: dict[str, list[torch.Tensor]] = {key: [] for key in
                                            ("obs", "actions", "log_probs", "rewards", "mask",
                                             "terminated")}
    for _ in range(max_steps):
        head_params = batched_policy_forward(policy, row_params, obs)
        actions = head.mode(head_params) if deterministic else head.sample(head_params, generator)
        log_probs = head.log_prob(head_params, actions)
        next_obs, rewards, terminated, truncated = env.step(clip_action_tensor(env.action_space, actions))
        steps["obs"].append(obs)
        steps["actions"].append(actions)
        steps["log_probs"].append(log_probs)
        steps["rewards"].append(rewards.to(torch.float32) * running)
        steps["mask"].append(running.to(torch.float32))
        steps["terminated"].append(terminated & running)
        running = running & ~(terminated | truncated)
        obs = next_obs
        if not bool(running.any()):
            break
    return {key: torch.stack(values)[:, :rows] for key, values in steps.items()}


def _pad_time(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad the time axis (axis 0) of ``x`` to ``length``."""
    if x.shape[0] == length:
        return x
    pad = torch.zeros(length - x.shape[0], *x.shape[1:], dtype=x.dtype, device=x.device)
    return torch.cat([x, pad])
