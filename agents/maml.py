"""MAML-PPO: model-agnostic meta-learning (Finn et al., 2017) with PPO's clipped outer loss.

Each meta-iteration draws a meta-batch of meta-train tasks. For every task, the inner loop
takes ``num_adaptation_steps`` vanilla policy-gradient steps, each on fresh trajectories of
the parameters adapted so far, with a linear feature baseline refit on that task's own
trajectories. The outer loop then samples post-adaptation trajectories and runs
``num_epochs`` Adam steps on PPO's clipped surrogate of the adapted parameters, averaged over
the meta-batch, differentiating through the adaptation (:mod:`agents.maml_objective`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from agents.device import resolve_device
from agents.maml_objective import adapt, make_task_batch, meta_loss, step_size_at
from agents.maml_sampler import Params, Trajectories, policy_forward, sample_trajectories
from agents.mlp_policy import POLICY_KINDS, MLPPolicy, resolve_policy_kind
from agents.networks import clip_action
from agents.seeding import SeedStreams
from agents.serialization import atomic_save
from agents.settings import checked_config
from agents.trial_agent import model_header, read_model_file
from envs.tasks import Task, TaskDistribution

logger = logging.getLogger(__name__)

SAVE_FORMAT = "adaptrl.maml_ppo.v1"

Callback = Callable[["MAMLPPO", dict[str, float]], "bool | None"]


@dataclass
class MAMLConfig:
    """Hyperparameters of MAML-PPO.

    The defaults follow the MAML paper's 2D-navigation setup (meta-batch 20, 20 rollouts per
    task, one adaptation step with inner learning rate 0.1, discount 0.99) with PPO's
    clipped objective in the outer loop instead of TRPO.
    """

    meta_batch_size: int = 20
    """Tasks per meta-iteration, drawn without repeats from the meta-train split."""
    rollouts_per_task: int = 20
    """Episodes sampled per task for each adaptation step and for the outer loss."""
    num_adaptation_steps: int = 1
    """Inner-loop policy-gradient steps per task during training."""
    inner_learning_rate: float = 0.1
    """alpha, the step size of each adaptation step."""
    learn_inner_learning_rate: bool = False
    """Meta-learn one inner step size per parameter tensor and adaptation step (MAML++'s
    per-layer, per-step rates), each starting at inner_learning_rate. Meta-test steps past
    num_adaptation_steps reuse the last trained step's sizes."""
    first_order: bool = False
    """Drop the second-order terms of the meta-gradient (first-order MAML)."""
    learning_rate: float = 1e-3
    """Adam step size of the outer loop."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """'linear' anneals the outer learning rate to 0 at total_timesteps."""
    num_epochs: int = 5
    """Outer Adam steps on each meta-batch's post-adaptation trajectories."""
    clip_coef: float = 0.2
    """PPO ratio clipping range of the outer loss."""
    max_grad_norm: float = 1.0
    """Norm clipping of the meta-gradient."""
    gamma: float = 0.99
    """Discount factor of the returns and advantages."""
    gae_lambda: float = 1.0
    """GAE lambda; 1.0 gives the MAML paper's return minus baseline."""
    normalize_advantages: bool = True
    """Standardize advantages per task, in the inner and the outer loss."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the policy's tanh hidden layers."""
    log_std_init: float = 0.0
    """Initial log standard deviation of a Gaussian policy."""
    policy: Literal["auto", "categorical", "gaussian"] = "auto"
    """Policy head: auto picks categorical for Discrete actions and Gaussian for Box."""
    num_envs: int | None = None
    """Environments stepped at once; default: every episode of a meta-batch at once. MuJoCo
    families step up to one env per core in worker processes and more in the training
    process, where a policy forward pass per step over all of them is cheaper than many
    small chunks."""
    eval_adaptation_steps: int = 3
    """Adaptation steps measured at meta-test (the curve has this many points plus one)."""
    eval_tasks_per_batch: int = 100
    """Held-out tasks adapted at once at meta-test."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MAMLConfig:
        """Rebuild a config from ``dataclasses.asdict`` output or JSON (lists for tuples)."""
        data = dict(data)
        if "hidden_sizes" in data:
            data["hidden_sizes"] = tuple(data["hidden_sizes"])
        return cls(**data)

    def validate_for(self, distribution: TaskDistribution) -> tuple[Any, int]:
        """Check the settings that depend on the task distribution.

        Returns:
            The distribution's action space and observation width.

        Raises:
            ValueError: for a meta-batch larger than the meta-train split, or a policy that
                does not fit the action space.
        """
        num_train = len(distribution.meta_split().train)
        if self.meta_batch_size > num_train:
            raise ValueError(
                f"meta_batch_size {self.meta_batch_size} is larger than the {num_train} "
                f"meta-train tasks of {distribution.name}; a meta-batch draws distinct tasks, so "
                f"use meta_batch_size <= {num_train}"
            )
        probe = distribution.make_batched_env(1)
        try:
            resolve_policy_kind(self.policy, probe.action_space)
            return probe.action_space, int(probe.observation_dim)
        finally:
            _close(probe)

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field and how to fix it."""
        for name in ("meta_batch_size", "rollouts_per_task", "num_adaptation_steps", "num_epochs",
                     "eval_adaptation_steps", "eval_tasks_per_batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("inner_learning_rate", "learning_rate", "clip_coef", "max_grad_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        if not self.hidden_sizes or any(not isinstance(h, int) or h < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive integers, got {self.hidden_sizes!r}")
        if self.policy not in POLICY_KINDS:
            raise ValueError(f"policy must be one of {POLICY_KINDS}, got {self.policy!r}")
        if self.lr_schedule not in ("linear", "constant"):
            raise ValueError(f"lr_schedule must be 'linear' or 'constant', got {self.lr_schedule!r}")
        if self.num_envs is not None and (not isinstance(self.num_envs, int) or self.num_envs < 1):
            raise ValueError(f"num_envs must be a positive integer, got {self.num_envs!r}")


class MAMLPPO:
    """MAML-PPO agent with the stable-baselines3-style interface of the other agents.

    Args:
        distribution: task distribution; meta-batches come from its meta-train split.
        config: hyperparameters.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a torch device; the policy and the
            batched torch environments live there, MuJoCo workers on the CPU.
        seed: the run's seed, split into independent streams (:class:`SeedStreams`).

    Raises:
        ValueError: for invalid settings, a meta-batch larger than the meta-train split, or
            a policy that does not fit the action space; all before any training.

    Example:
        >>> from envs import make_distribution
        >>> config = MAMLConfig(meta_batch_size=2, rollouts_per_task=2, num_epochs=1)
        >>> agent = MAMLPPO(make_distribution("bandit-k5-n10"), config).learn(8)
        >>> agent.num_timesteps
        8
    """

    save_format = SAVE_FORMAT
    config_class = MAMLConfig
    display_name = "MAML-PPO"
    # The meta-test curve is indexed by adaptation step, not by inner episode.
    adaptation_unit = "adaptation step"
    progress_metric = "rollout/adapted_return"
    # Updates the progress bar averages: each already spans meta_batch_size x rollouts_per_task
    # post-adaptation episodes (400 by default).
    progress_window = 3

    def __init__(
        self,
        distribution: TaskDistribution,
        config: MAMLConfig | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
    ):
        self.config = checked_config("MAMLPPO", config, MAMLConfig)
        self.distribution = distribution
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.streams = SeedStreams.from_seed(self.seed)
        self.num_timesteps = 0
        self.num_updates = 0
        self.total_timesteps: int | None = None
        self.max_episode_steps = distribution.episode_step_limit()

        self.action_space, self.observation_dim = self.config.validate_for(distribution)
        train_tasks = distribution.meta_split().train
        self._train_params = torch.as_tensor(distribution.task_params(train_tasks),
                                             device=self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.streams.init)
            self.policy = MLPPolicy(self.observation_dim, self.action_space,
                                    self.config.hidden_sizes, self.config.policy,
                                    self.config.log_std_init).to(self.device)
        # (K, number of parameter tensors): row k contains adaptation step k's step sizes, in
        # the order of policy.named_parameters(). None when alpha is a fixed number.
        self.inner_learning_rates: nn.Parameter | None = None
        if self.config.learn_inner_learning_rate:
            num_tensors = len(list(self.policy.parameters()))
            self.inner_learning_rates = nn.Parameter(torch.full(
                (self.config.num_adaptation_steps, num_tensors), self.config.inner_learning_rate,
                device=self.device))
        self.optimizer = torch.optim.Adam(self._trained_parameters(), lr=self.config.learning_rate,
                                          eps=1e-5)
        self._sampling = self.streams.generator("sampling", self.device)
        self._task_generator = self.streams.generator("tasks", self.device)
        self._env_generator = self.streams.generator("env", self.device)
        self._env = None

    # ----------------------------------------------------------------------------- envs

    def _rows(self, num_tasks: int) -> int:
        """Environments to step at once for ``num_tasks`` tasks of R rollouts each."""
        episodes = num_tasks * self.config.rollouts_per_task
        if self.config.num_envs is not None:
            return min(self.config.num_envs, episodes)
        return episodes

    def _training_env(self):
        if self._env is None:
            self._env = self.distribution.make_batched_env(
                self._rows(self.config.meta_batch_size), self.device, self._env_generator
            )
        return self._env

    def close(self) -> None:
        """Close the environments (MuJoCo vector-env workers, where there are any)."""
        if self._env is not None:
            _close(self._env)
            self._env = None

    # ----------------------------------------------------------------------------- training

    def meta_parameters(self) -> Params:
        return dict(self.policy.named_parameters())

    def _trained_parameters(self) -> list[nn.Parameter]:
        """Return what the outer loop trains: the policy's parameters and any learned step sizes."""
        extra = [] if self.inner_learning_rates is None else [self.inner_learning_rates]
        return [*self.policy.parameters(), *extra]

    def step_sizes(self, detach: bool = False) -> float | list[dict[str, torch.Tensor]]:
        """Return the inner step size: alpha, or per adaptation step a scalar per parameter name."""
        if self.inner_learning_rates is None:
            return self.config.inner_learning_rate
        rates = self.inner_learning_rates.detach() if detach else self.inner_learning_rates
        names = [name for name, _ in self.policy.named_parameters()]
        return [dict(zip(names, row)) for row in rates]

    def learn(self, total_timesteps: int, callback: Callback | None = None) -> MAMLPPO:
        """Run meta-iterations until ``num_timesteps`` reaches ``total_timesteps`` env steps.

        Args:
            total_timesteps: the run's budget in env steps, counted from the start of the run
                (every sampled step: pre- and post-adaptation).
            callback: called after each meta-iteration with the agent and a dict of metrics;
                returning ``False`` stops training.
        """
        if not isinstance(total_timesteps, (int, np.integer)) or total_timesteps < 1:
            raise ValueError(f"total_timesteps must be a positive integer, got {total_timesteps!r}")
        self.total_timesteps = int(total_timesteps)
        while self.num_timesteps < self.total_timesteps:
            for group in self.optimizer.param_groups:
                group["lr"] = self._learning_rate()
            metrics = self.meta_iteration()
            if callback is not None and callback(self, metrics) is False:
                break
        return self

    def _learning_rate(self) -> float:
        if self.config.lr_schedule == "constant" or not self.total_timesteps:
            return self.config.learning_rate
        return self.config.learning_rate * max(0.0, 1.0 - self.num_timesteps / self.total_timesteps)

    def meta_iteration(self) -> dict[str, float]:
        """Sample, adapt and take the outer PPO steps on one meta-batch; return metrics."""
        config = self.config
        start = time.perf_counter()
        order = torch.randperm(self._train_params.shape[0], device=self.device,
                               generator=self._task_generator)
        task_params = self._train_params[order[:config.meta_batch_size]]
        batches, trajectories, _ = self._sample_and_adapt(
            self._training_env(), task_params, config.num_adaptation_steps, self._sampling)
        post_batch = batches.pop()
        sampled = time.perf_counter()

        theta = self.meta_parameters()
        totals: dict[str, torch.Tensor] = {}
        for _ in range(config.num_epochs):
            loss, stats = meta_loss(self.policy, theta, batches, post_batch, self.step_sizes(),
                                    config.first_order, config.clip_coef)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(self._trained_parameters(), config.max_grad_norm)
            self.optimizer.step()
            stats = {"meta_loss": loss.detach(), "grad_norm": grad_norm, **stats}
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value / config.num_epochs
        if not all(bool(torch.isfinite(value)) for value in totals.values()):
            raise FloatingPointError(
                f"MAML-PPO's meta-loss or meta-gradient became non-finite at {self.num_timesteps} "
                f"env steps on {self.distribution.name}: {_host(totals)}. Lower "
                "--maml-ppo.inner-learning-rate or --maml-ppo.learning-rate."
            )
        steps = sum(t.num_steps for t in trajectories)
        self.num_timesteps += steps
        self.num_updates += 1
        finished = time.perf_counter()
        metrics = {f"train/{key}": value for key, value in _host(totals).items()}
        for index, batch in enumerate(trajectories):
            metrics[f"rollout/return_after_step/{index}"] = float(batch.episode_returns().mean())
        metrics.update({
            "rollout/pre_adaptation_return": metrics["rollout/return_after_step/0"],
            "rollout/adapted_return": metrics[f"rollout/return_after_step/{len(trajectories) - 1}"],
            "train/learning_rate": self.optimizer.param_groups[0]["lr"],
            "time/steps_per_second": steps / (finished - start),
            "time/rollout_seconds": sampled - start,
            "time/update_seconds": finished - sampled,
        })
        if self.policy.kind == "gaussian":
            metrics["train/log_std"] = float(self.policy.head.log_std.detach().mean())
        if self.inner_learning_rates is not None:
            for step, row in enumerate(self.inner_learning_rates.detach().mean(1).tolist()):
                metrics[f"train/inner_learning_rate/{step}"] = row
        return metrics

    def _sample_and_adapt(
        self, env, task_params: torch.Tensor, num_steps: int, generator, greedy: bool = False
    ):
        """Sample, then adapt, ``num_steps`` times, then sample once more.

        Args:
            greedy: also run each step's parameters with their most likely actions, on as many
                episodes, to measure them without exploration noise.

        Returns:
            ``(batches, trajectories, greedy_trajectories)``: the loss inputs, the sampled
            trajectories of steps 0..num_steps (the last one is the post-adaptation sample),
            and the greedy ones (an empty list without ``greedy``).
        """
        config = self.config
        params = _stack(self.meta_parameters(), task_params.shape[0])
        step_sizes = self.step_sizes(detach=True)
        batches, trajectories, greedy_trajectories = [], [], []
        for step in range(num_steps + 1):
            sample = sample_trajectories(env, self.policy, params, task_params,
                                         config.rollouts_per_task, self.max_episode_steps,
                                         generator)
            trajectories.append(sample)
            if greedy:
                greedy_trajectories.append(sample_trajectories(
                    env, self.policy, params, task_params, config.rollouts_per_task,
                    self.max_episode_steps, generator, deterministic=True))
            batches.append(make_task_batch(sample, config.gamma, config.gae_lambda,
                                           config.normalize_advantages))
            if step < num_steps:
                # No meta-gradient flows through sampling: adapt detached copies.
                params = {k: v.detach() for k, v in adapt(
                    self.policy, params, batches[-1], step_size_at(step_sizes, step),
                    first_order=True, shared=False).items()}
        return batches, trajectories, greedy_trajectories

    # ----------------------------------------------------------------------------- meta-test

    def meta_test(
        self,
        tasks: Sequence[Task],
        seed: int = 0,
        deterministic: bool = False,
        batch_size: int | None = None,
        return_lengths: bool = False,
        num_steps: int | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Adapt to each task from scratch and measure the return after every adaptation step.

        Args:
            tasks: held-out tasks.
            seed: seed of the environment noise and action sampling.
            deterministic: measure each adapted policy with its most likely actions. The
                adaptation itself still learns from sampled episodes, as it must.
            batch_size: tasks adapted at once; default ``eval_tasks_per_batch``.
            return_lengths: also return the mean episode length of each step.
            num_steps: adaptation steps; default ``eval_adaptation_steps``.

        Returns:
            ``(num_tasks, num_steps + 1)``: the mean episode return of each task's
            ``rollouts_per_task`` episodes after 0, 1, ... adaptation steps; with
            ``return_lengths``, the pair ``(returns, lengths)``.
        """
        num_steps = self.config.eval_adaptation_steps if num_steps is None else int(num_steps)
        batch_size = batch_size or self.config.eval_tasks_per_batch
        streams = SeedStreams.from_seed(seed)
        env_generator = streams.generator("env", self.device)
        sampling = streams.generator("sampling", self.device)
        params = torch.as_tensor(self.distribution.task_params(tasks), device=self.device)
        returns, lengths = [], []
        for start in range(0, len(tasks), batch_size):
            chunk = params[start:start + batch_size]
            env = self.distribution.make_batched_env(self._rows(chunk.shape[0]), self.device,
                                                     env_generator)
            try:
                _, sampled, greedy = self._sample_and_adapt(env, chunk, num_steps, sampling,
                                                            greedy=deterministic)
            finally:
                _close(env)
            samples = greedy if deterministic else sampled
            returns.append(torch.stack([s.episode_returns().mean(1) for s in samples], 1))
            lengths.append(torch.stack([s.episode_lengths().mean(1) for s in samples], 1))
        curve = torch.cat(returns).double().cpu().numpy()
        if return_lengths:
            return curve, torch.cat(lengths).double().cpu().numpy()
        return curve

    # ----------------------------------------------------------------------------- acting

    @torch.no_grad()
    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        params: Params | None = None,
    ) -> tuple[np.ndarray, None]:
        """Choose actions with the meta-parameters (or adapted ``params``), as SB3's ``predict``.

        The policy is feed-forward, so ``state`` and ``episode_start`` are accepted for
        interface compatibility and ignored; the returned state is None.
        """
        del state, episode_start
        obs = torch.as_tensor(np.asarray(observation, dtype=np.float32), device=self.device)
        single = obs.dim() == 1
        obs = obs.reshape(-1, self.observation_dim)
        head_params = policy_forward(self.policy, params or self.meta_parameters(), obs)
        head = self.policy.head
        actions = head.mode(head_params) if deterministic else head.sample(head_params, self._sampling)
        actions = clip_action(self.action_space, actions.cpu().numpy())
        return (actions[0] if single else actions), None

    # ----------------------------------------------------------------------------- files

    def save(self, path: str | Path) -> Path:
        """Write the policy and everything needed to rebuild it to ``path`` atomically."""
        return atomic_save(model_header(self) | self._weights(), path)

    def _weights(self) -> dict[str, Any]:
        weights = {"policy": self.policy.state_dict()}
        if self.inner_learning_rates is not None:
            weights["inner_learning_rates"] = self.inner_learning_rates.detach().clone()
        return weights

    def _load_weights(self, data: dict[str, Any]) -> None:
        self.policy.load_state_dict(data["policy"])
        if self.inner_learning_rates is not None:
            with torch.no_grad():
                self.inner_learning_rates.copy_(data["inner_learning_rates"])

    @classmethod
    def load(
        cls,
        path: str | Path,
        distribution: TaskDistribution | None = None,
        device: str | torch.device = "auto",
    ) -> MAMLPPO:
        """Rebuild an agent saved with :meth:`save` (or a training checkpoint)."""
        data, distribution = read_model_file(cls, path, distribution)
        agent = cls(distribution, MAMLConfig.from_dict(data["config"]), device=device,
                    seed=data["seed"])
        agent._load_weights(data)
        agent.num_timesteps = data["num_timesteps"]
        return agent

    def training_state(self) -> dict[str, Any]:
        """Return what resumes training: weights, optimizer, counters and generator states.

        Batched torch environments restart every episode from their reset state, so these
        resume exactly; MuJoCo workers draw their reset noise from their own generators,
        which a resumed run reseeds.
        """
        return model_header(self) | {
            "num_updates": self.num_updates,
            "total_timesteps": self.total_timesteps,
            **self._weights(),
            "optimizer": self.optimizer.state_dict(),
            "generators": {
                "sampling": self._sampling.get_state(),
                "tasks": self._task_generator.get_state(),
                "env": self._env_generator.get_state(),
            },
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`training_state` into this agent."""
        self._load_weights(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self._sampling.set_state(state["generators"]["sampling"])
        self._task_generator.set_state(state["generators"]["tasks"])
        self._env_generator.set_state(state["generators"]["env"])
        self.num_timesteps = state["num_timesteps"]
        self.num_updates = state["num_updates"]
        self.total_timesteps = state["total_timesteps"]


def _stack(params: Params, num_tasks: int) -> Params:
    """Detached copies of ``params`` with a leading task axis."""
    return {k: v.detach().unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}


def _host(values: dict[str, torch.Tensor]) -> dict[str, float]:
    keys = list(values)
    floats = torch.stack([torch.as_tensor(values[k]).float().reshape(()) for k in keys]).tolist()
    return dict(zip(keys, floats))


def _close(env) -> None:
    close = getattr(env, "close", None)
    if callable(close):
        close()


__all__ = ["MAMLConfig", "MAMLPPO", "Trajectories"]
