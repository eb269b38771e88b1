"""Throughput of a MAML-PPO meta-iteration on 2D navigation, beside a per-task loop.

AdaptRL's meta-iteration samples every episode of the meta-batch at once in the batched torch
environment and adapts all tasks together (``torch.func.vmap`` over ``grad``). The peer,
measured in the same process, runs the same algorithm as a Python loop over the tasks, a
common way to write MAML. Each task's episodes step in a Gymnasium ``SyncVectorEnv`` with one
host round trip per step, and each task adapts with its own
``torch.autograd.grad(create_graph=True)``. Both use the same losses, baseline and settings,
so the difference is only in how the work runs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.maml import MAMLPPO, MAMLConfig
from agents.maml_objective import clipped_surrogate_loss, inner_loss, make_task_batch
from agents.maml_sampler import Trajectories
from agents.networks import clip_action
from envs.navigation import Navigation2DDistribution
from envs.registry import make_distribution

MAML_ENV_NAME = "navigation-2d"
MAML_NAME = "AdaptRL MAML-PPO"
LOOP_NAME = "per-task loop, Gymnasium vector env"


@dataclass
class MetaIterationThroughput:
    """Env steps per second of whole meta-iterations (sampling, adaptation and outer steps)."""

    learner: str
    device: str
    meta_iterations: int
    env_steps: int
    seconds: float

    @property
    def steps_per_second(self) -> float:
        return self.env_steps / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "steps_per_second": self.steps_per_second}


def measure_maml_throughput(
    config: MAMLConfig, device: str, seed: int, warmup: int, iterations: int
) -> MetaIterationThroughput:
    """Time ``iterations`` meta-iterations of AdaptRL's MAML-PPO after ``warmup`` untimed ones."""
    agent = MAMLPPO(make_distribution(MAML_ENV_NAME), config, device=device, seed=seed)
    for _ in range(warmup):
        agent.meta_iteration()
    start_steps = agent.num_timesteps
    _synchronize(agent.device)
    start = time.perf_counter()
    for _ in range(iterations):
        agent.meta_iteration()
    _synchronize(agent.device)
    seconds = time.perf_counter() - start
    return MetaIterationThroughput(MAML_NAME, str(agent.device), iterations,
                                   agent.num_timesteps - start_steps, seconds)


class LoopMAML:
    """The peer: MAML-PPO's meta-iteration as a loop over tasks on the CPU.

    It reuses AdaptRL's policy, losses and baseline (so it computes the same function) and
    differs in execution only: per task, per step and per adaptation, one at a time.
    """

    def __init__(self, config: MAMLConfig, seed: int):
        self.agent = MAMLPPO(make_distribution(MAML_ENV_NAME), config, device="cpu", seed=seed)
        self.config = config
        distribution: Navigation2DDistribution = self.agent.distribution
        self.tasks = distribution.meta_split().train
        self.rng = np.random.default_rng(seed)
        self.envs = gym.vector.SyncVectorEnv(
            [distribution.make_env for _ in range(config.rollouts_per_task)],
            autoreset_mode=gym.vector.AutoresetMode.DISABLED,
        )
        self.horizon = distribution.episode_step_limit()
        self.num_timesteps = 0

    def _sample(self, params: dict[str, torch.Tensor], task) -> Trajectories:
        """R episodes of one task, stepped through the vector env with a host round trip per step."""
        policy = self.agent.policy
        self.envs.set_attr("task", [task] * self.envs.num_envs)
        obs, _ = self.envs.reset(seed=int(self.rng.integers(2**31)))
        record: dict[str, list] = {k: [] for k in ("obs", "actions", "log_probs", "rewards")}
        with torch.no_grad():
            for _ in range(self.horizon):
                obs_t = torch.as_tensor(obs, dtype=torch.float32)
                head_params = torch.func.functional_call(policy, params, (obs_t,))
                actions = policy.head.sample(head_params, None)
                record["log_probs"].append(policy.head.log_prob(head_params, actions))
                record["obs"].append(obs_t)
                record["actions"].append(actions)
                obs, rewards, _, _, _ = self.envs.step(
                    clip_action(self.envs.single_action_space, actions.numpy()))
                record["rewards"].append(torch.as_tensor(rewards, dtype=torch.float32))
        self.num_timesteps += self.horizon * self.envs.num_envs
        # (T, R, ...) -> (1, R, T, ...): one task.
        fields = {k: torch.stack(v).transpose(0, 1)[None] for k, v in record.items()}
        mask = torch.ones_like(fields["rewards"])
        return Trajectories(**fields, mask=mask, terminated=torch.zeros_like(mask, dtype=torch.bool))

    def meta_iteration(self) -> None:
        config, policy = self.config, self.agent.policy
        theta = dict(policy.named_parameters())
        indices = self.rng.choice(len(self.tasks), config.meta_batch_size, replace=False)
        per_task = []
        for index in indices:
            params = {k: v.detach() for k, v in theta.items()}
            batches = []
            for _ in range(config.num_adaptation_steps):
                batch = make_task_batch(self._sample(params, self.tasks[index]), config.gamma,
                                        config.gae_lambda, config.normalize_advantages)
                batches.append(batch)
                params = self._adapt(params, batch, create_graph=False)
            post = make_task_batch(self._sample(params, self.tasks[index]), config.gamma,
                                   config.gae_lambda, config.normalize_advantages)
            per_task.append((batches, post))
        for _ in range(config.num_epochs):
            losses = []
            for batches, post in per_task:
                params = theta
                for batch in batches:
                    params = self._adapt(params, batch, create_graph=not config.first_order)
                losses.append(clipped_surrogate_loss(
                    policy, {k: v[None] for k, v in params.items()}, post, config.clip_coef)[0])
            loss = torch.stack(losses).mean()
            self.agent.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            self.agent.optimizer.step()

    def _adapt(self, params, batch, create_graph: bool) -> dict[str, torch.Tensor]:
        names = list(params)
        if not create_graph:
            params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        loss = inner_loss(self.agent.policy, params, batch.obs[0], batch.actions[0],
                          batch.advantages[0], batch.mask[0])
        grads = torch.autograd.grad(loss, [params[k] for k in names], create_graph=create_graph)
        adapted = {k: params[k] - self.config.inner_learning_rate * g for k, g in zip(names, grads)}
        return adapted if create_graph else {k: v.detach() for k, v in adapted.items()}

    def close(self) -> None:
        self.envs.close()


def measure_loop_throughput(
    config: MAMLConfig, seed: int, warmup: int, iterations: int
) -> MetaIterationThroughput:
    """Time ``iterations`` meta-iterations of the per-task loop after ``warmup`` untimed ones."""
    peer = LoopMAML(config, seed)
    try:
        for _ in range(warmup):
            peer.meta_iteration()
        start_steps = peer.num_timesteps
        start = time.perf_counter()
        for _ in range(iterations):
            peer.meta_iteration()
        seconds = time.perf_counter() - start
    finally:
        peer.close()
    return MetaIterationThroughput(LOOP_NAME, "cpu", iterations, peer.num_timesteps - start_steps,
                                   seconds)


def run_maml_benchmark(
    config: MAMLConfig, device: str, seed: int, warmup: int, iterations: int, skip_peer: bool
) -> dict[str, Any]:
    """Measure both learners and return a JSON-ready report."""
    ours = measure_maml_throughput(config, device, seed, warmup, iterations)
    peer = None if skip_peer else measure_loop_throughput(config, seed, warmup, iterations)
    return {
        "benchmark": f"{MAML_NAME} vs {LOOP_NAME}" if peer else MAML_NAME,
        "env": MAML_ENV_NAME,
        "throughput": {"adaptrl_maml_ppo": ours.to_dict(),
                       "loop_maml_ppo": peer.to_dict() if peer else None},
        "throughput_ratio": ours.steps_per_second / peer.steps_per_second if peer else None,
        "meta_batch_size": config.meta_batch_size,
        "rollouts_per_task": config.rollouts_per_task,
        "num_adaptation_steps": config.num_adaptation_steps,
        "first_order": config.first_order,
    }


def format_maml_report(report: dict[str, Any]) -> list[str]:
    """Render :func:`run_maml_benchmark`'s report as a table."""
    lines = [
        f"{report['benchmark']} on {report['env']}: meta-batch {report['meta_batch_size']}, "
        f"{report['rollouts_per_task']} episodes per task, {report['num_adaptation_steps']} "
        f"adaptation step(s), {'first' if report['first_order'] else 'second'}-order",
        "Meta-iteration throughput (env steps per second: sampling, adaptation and outer steps)",
    ]
    header = f"{'learner':<40}{'device':>8}{'iterations':>12}{'env steps':>12}{'seconds':>10}" \
             f"{'steps/s':>11}"
    lines += [header, "-" * len(header)]
    for row in report["throughput"].values():
        if row is None:
            continue
        lines.append(f"{row['learner']:<40}{row['device']:>8}{row['meta_iterations']:>12}"
                     f"{row['env_steps']:>12,}{row['seconds']:>10.1f}{row['steps_per_second']:>11,.0f}")
    if report["throughput_ratio"] is not None:
        lines.append(f"throughput_ratio (AdaptRL / loop steps/s): {report['throughput_ratio']:.1f}")
    return lines


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
