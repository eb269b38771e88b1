"""PPO over whole trials for recurrent policies: the training loop RL² and the memory policy share.

The agent collects rollouts on a batched trial environment, computes GAE that never crosses
a trial boundary, and replays the stored sequences from their stored initial states in the
PPO update. What differs between agents is only the policy network.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from agents.device import resolve_device
from agents.gae import compute_gae
from agents.networks import clip_action, clip_action_tensor
from agents.ppo import PPOSettings, ppo_update
from agents.recurrent import reset_recurrent_state
from agents.rollout import RolloutCollector
from agents.seeding import SeedStreams
from agents.serialization import atomic_save, load_file
from agents.settings import checked_config
from envs.batched import BatchedTrialEnv, trial_observation_dim
from envs.registry import make_distribution
from envs.tasks import Task, TaskDistribution

logger = logging.getLogger(__name__)

Callback = Callable[["TrialAgent", dict[str, float]], "bool | None"]


@dataclass
class TrialPPOConfig:
    """Hyperparameters shared by the recurrent agents trained with PPO over trials.

    The defaults were tuned for RL² on ``bandit-k5-n10`` (trials of 10 steps). Longer trials
    want ``num_steps`` of at least one trial and usually a wider recurrent state.
    """

    num_envs: int = 512
    """Parallel environments, each running its own trials."""
    num_steps: int = 10
    """Env steps per environment in each rollout (the rollout has num_envs * num_steps steps)."""
    sequence_length: int | None = None
    """Length of the stored sequences replayed by the PPO update, in env steps; must divide
    num_steps. Default: num_steps (truncated backpropagation through the whole rollout)."""
    minibatch_size: int = 1280
    """Env steps per PPO minibatch; a multiple of sequence_length that divides the rollout."""
    num_epochs: int = 4
    """PPO passes over each rollout."""
    hidden_size: int = 64
    """Width of the observation encoder and of the recurrent controller's state."""
    learning_rate: float = 2e-3
    """Adam step size at the start of training."""
    lr_schedule: Literal["linear", "constant"] = "linear"
    """'linear' anneals the learning rate to 0 at total_timesteps; 'constant' keeps it."""
    gamma: float = 1.0
    """Discount factor per env step, across inner-episode boundaries inside a trial. 1.0
    optimizes the undiscounted trial return, which is what meta-test reports."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    reward_scale: float = 1.0
    """Factor applied to rewards before GAE and the value loss (metrics report raw rewards).
    Long trials have returns in the tens; scaling them near 1 keeps the value loss from
    dominating the shared network's gradient after norm clipping."""
    clip_coef: float = 0.2
    """PPO ratio clipping range."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Gradient norm clipping threshold."""
    normalize_advantages: bool = True
    """Normalize advantages per minibatch."""
    reward_prediction_coef: float = 0.0
    """Weight of an auxiliary loss: the mean squared error of a small network that predicts,
    from the policy's recurrent features and the action taken, the raw reward that follows.
    The features are the GRU output for rl2, and the controller output and read vectors for
    memory. The loss trains the recurrent state to keep what the trial has shown about
    rewards. 0 leaves the predictor out. The error is in raw reward units, so a weight that
    suits rewards of about 1 is too large for rewards in the hundreds."""
    observation_prediction_coef: float = 0.0
    """Weight of an auxiliary loss: the squared error, summed over the observation's entries,
    of a small network that predicts the next base observation from the same features and
    action. In a maze the squares that a step brings into view were seen before whenever the
    trial has been there, so predicting them can need memory of the layout. Steps that end a
    trial are left out. 0 leaves the predictor out. On 9x9 mazes a weight of 0.1 made RL²
    reuse less of its first episode (docs/results.md)."""
    position_prediction_coef: float = 0.0
    """Weight of an auxiliary loss: the squared error, summed over its entries, of a small
    network that predicts from the policy's recurrent features and the action taken where the
    step leaves the agent. The target is the displacement from the episode's start (in
    mazes, rows and columns over the maze size). The policy never observes its position, so
    the loss trains the recurrent state to integrate its own moves. Needs an environment that
    reports positions, such as the maze family. 0 leaves the predictor out."""

    @property
    def rollout_size(self) -> int:
        return self.num_envs * self.num_steps

    def resolved_sequence_length(self) -> int:
        return self.num_steps if self.sequence_length is None else self.sequence_length

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field and how to fix it."""
        for name in ("num_envs", "num_steps", "minibatch_size", "num_epochs", "hidden_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("learning_rate", "clip_coef", "max_grad_norm", "reward_scale"):
            value = getattr(self, name)
            if not value > 0 or not np.isfinite(value):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        for name in ("ent_coef", "vf_coef"):
            value = getattr(self, name)
            if not value >= 0 or not np.isfinite(value):
                raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
        for target in ("reward", "observation", "position"):
            value = getattr(self, f"{target}_prediction_coef")
            if not value >= 0 or not np.isfinite(value):
                raise ValueError(
                    f"{target}_prediction_coef must be a non-negative finite number, got "
                    f"{value!r}; use 0 to train without the {target} predictor"
                )
        if self.lr_schedule not in ("linear", "constant"):
            raise ValueError(f"lr_schedule must be 'linear' or 'constant', got {self.lr_schedule!r}")
        length = self.resolved_sequence_length()
        if not isinstance(length, int) or length < 1 or self.num_steps % length:
            raise ValueError(
                f"sequence_length {length!r} must be a positive divisor of num_steps "
                f"{self.num_steps}"
            )
        if self.rollout_size % self.minibatch_size or self.minibatch_size % length:
            # Valid sizes are whole numbers of sequences that divide the rollout; suggest the
            # one closest to four minibatches.
            valid = [k * length for k in range(1, self.rollout_size // length + 1)
                     if self.rollout_size % (k * length) == 0]
            suggestion = min(valid, key=lambda size: abs(self.rollout_size // size - 4))
            raise ValueError(
                f"minibatch_size {self.minibatch_size} must divide the rollout of num_envs * "
                f"num_steps = {self.rollout_size} env steps and be a multiple of sequence_length "
                f"{length}. For example, use minibatch_size={suggestion} for "
                f"{self.rollout_size // suggestion} minibatches."
            )

    def validate_for(self, distribution: TaskDistribution) -> None:
        """Raise ValueError for a setting that ``distribution``'s batched environment cannot serve."""
        if self.position_prediction_coef <= 0 or not distribution.has_batched_env:
            return
        if distribution.make_batched_env(1).displacement() is None:
            raise ValueError(
                f"position_prediction_coef {self.position_prediction_coef} needs an environment "
                f"that reports the agent's position, and {distribution.name} does not; the maze "
                "family does. Set position_prediction_coef to 0 for this distribution."
            )

    def ppo_settings(self) -> PPOSettings:
        return PPOSettings(
            num_epochs=self.num_epochs,
            minibatch_size=self.minibatch_size,
            sequence_length=self.resolved_sequence_length(),
            clip_coef=self.clip_coef,
            ent_coef=self.ent_coef,
            vf_coef=self.vf_coef,
            max_grad_norm=self.max_grad_norm,
            normalize_advantages=self.normalize_advantages,
            reward_prediction_coef=self.reward_prediction_coef,
            observation_prediction_coef=self.observation_prediction_coef,
            position_prediction_coef=self.position_prediction_coef,
        )


class TrialAgent:
    """A recurrent policy trained with PPO over trials; RL² and the memory policy subclass it.

    The policy's recurrent state (a GRU state, or a whole external memory) is cleared only
    at trial starts, so within a trial the policy can learn from earlier episodes on the
    same task. Training runs on batched torch environments, and the whole collection loop
    stays on ``device``. Subclasses set ``save_format`` and ``config_class`` and build the
    policy in :meth:`build_policy`; the policy provides ``state_size``, ``initial_state``,
    ``step``, ``unroll`` and ``head`` as :class:`agents.networks.RecurrentActorCritic` does.

    Args:
        distribution: task distribution; training draws trials from its meta-train split.
        config: hyperparameters.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a torch device.
        seed: the run's seed, split into independent streams (:class:`SeedStreams`).
    """

    save_format: str = ""
    config_class: type[TrialPPOConfig] = TrialPPOConfig
    display_name: str = "agent"

    def __init__(
        self,
        distribution: TaskDistribution,
        config: TrialPPOConfig | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
    ):
        self.config = checked_config(type(self).__name__, config, self.config_class)
        if not distribution.has_batched_env:
            raise NotImplementedError(
                f"{self.display_name} training needs a batched torch environment, and "
                f"{distribution.name} has none; training through Gymnasium vector environments "
                "is not implemented yet"
            )
        self.distribution = distribution
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.streams = SeedStreams.from_seed(self.seed)
        self.num_timesteps = 0
        self.num_updates = 0
        self.total_timesteps: int | None = None

        probe = distribution.make_batched_env(1)
        self.action_space = probe.action_space
        self.base_observation_dim = probe.observation_dim
        self.observation_dim = trial_observation_dim(probe.observation_dim, self.action_space)
        self.config.validate_for(distribution)
        displacement = probe.displacement()
        # Width of the env's displacement, 0 for families without positions.
        self.displacement_dim = 0 if displacement is None else int(displacement.shape[-1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.streams.init)
            self.policy = self.build_policy(self.observation_dim, self.action_space).to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.config.learning_rate,
                                          eps=1e-5)
        self._collector: RolloutCollector | None = None
        self._sampling = self.streams.generator("sampling", self.device)

    def build_policy(self, observation_dim: int, action_space) -> torch.nn.Module:
        """Build the policy network (on the CPU; the caller moves it to the device)."""
        raise NotImplementedError

    def observation_prediction_size(self) -> int:
        """Return the width the observation predictor predicts, 0 when the agent has none."""
        return self.base_observation_dim if self.config.observation_prediction_coef > 0 else 0

    def position_prediction_size(self) -> int:
        """Return the width the position predictor predicts, 0 when the agent has none."""
        return self.displacement_dim if self.config.position_prediction_coef > 0 else 0

    # ----------------------------------------------------------------------------- training

    def learn(self, total_timesteps: int, callback: Callback | None = None) -> TrialAgent:
        """Train until ``num_timesteps`` reaches ``total_timesteps`` env steps.

        ``total_timesteps`` counts from the start of the run, so a resumed agent continues
        to the same total. The learning-rate schedule runs over it.

        Args:
            total_timesteps: the run's env-step budget; rounded up to whole rollouts.
            callback: called after each update with the agent and a dict of metrics
                (namespaced keys, host floats); returning ``False`` stops training.
        """
        if not isinstance(total_timesteps, (int, np.integer)) or total_timesteps < 1:
            raise ValueError(f"total_timesteps must be a positive integer, got {total_timesteps!r}")
        self.total_timesteps = int(total_timesteps)
        rollout_size = self.config.rollout_size
        remaining = self.total_timesteps - self.num_timesteps
        if remaining > 0 and remaining % rollout_size:
            final_timesteps = self.num_timesteps + -(-remaining // rollout_size) * rollout_size
            logger.info(
                "total_timesteps %d is not a whole number of rollouts of %d env steps (num_envs x "
                "num_steps); training stops after %d env steps",
                self.total_timesteps, rollout_size, final_timesteps,
            )
        collector = self._ensure_collector()
        settings = self.config.ppo_settings()
        while self.num_timesteps < self.total_timesteps:
            learning_rate = self._learning_rate()
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate

            start = time.perf_counter()
            rollout, trial_stats = collector.collect(self.policy, self.config.num_steps)
            rollout.advantages, rollout.returns = compute_gae(
                rollout.rewards * self.config.reward_scale, rollout.values, rollout.next_values,
                rollout.terminated, rollout.done, self.config.gamma, self.config.gae_lambda,
            )
            collected = time.perf_counter()
            update_stats = ppo_update(self.policy, self.optimizer, rollout, settings, self._sampling)

            self.num_timesteps += self.config.rollout_size
            self.num_updates += 1
            metrics = _gather_metrics(trial_stats, update_stats)
            finished = time.perf_counter()
            metrics.update({
                "train/learning_rate": learning_rate,
                "time/steps_per_second": self.config.rollout_size / (finished - start),
                "time/rollout_seconds": collected - start,
                "time/update_seconds": finished - collected,
            })
            if callback is not None and callback(self, metrics) is False:
                break
        return self

    def _learning_rate(self) -> float:
        if self.config.lr_schedule == "constant" or not self.total_timesteps:
            return self.config.learning_rate
        remaining = max(0.0, 1.0 - self.num_timesteps / self.total_timesteps)
        return self.config.learning_rate * remaining

    def _ensure_collector(self) -> RolloutCollector:
        if self._collector is None:
            split = self.distribution.meta_split()
            base = self.distribution.make_batched_env(
                self.config.num_envs, self.device, self.streams.generator("env", self.device)
            )
            env = BatchedTrialEnv(
                base,
                split.train,
                torch.as_tensor(self.distribution.task_params(split.train)),
                self.distribution.episodes_per_trial,
                generator=self.streams.generator("tasks", self.device),
                name=self.distribution.name,
            )
            self._collector = RolloutCollector(env, self.policy.state_size, self._sampling)
        return self._collector

    def close(self) -> None:
        """Close the training environments (MuJoCo worker processes, where there are any)."""
        if self._collector is not None:
            close = getattr(self._collector.env.base, "close", None)
            if callable(close):
                close()
            self._collector = None

    # ----------------------------------------------------------------------------- acting

    @torch.no_grad()
    def predict(
        self,
        observation: np.ndarray,
        state: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Choose actions for trial observations, as stable-baselines3's recurrent ``predict``.

        An episode of the trial environment is one trial, so ``episode_start`` marks trial
        starts: the state of those rows is cleared before acting.

        Args:
            observation: ``(obs_dim,)`` or ``(batch, obs_dim)``.
            state: recurrent state ``(batch, state_size)`` returned by the previous call; None
                at the start of a trial.
            episode_start: ``(batch,)`` bool, True where a new trial starts.
            deterministic: take the most likely action instead of sampling.

        Returns:
            ``(actions, next_state)``: actions ``(batch, ...)`` (unbatched if the observation
            was) and the next state ``(batch, state_size)``.
        """
        obs = torch.as_tensor(np.asarray(observation, dtype=np.float32), device=self.device)
        single = obs.dim() == 1
        obs = obs.reshape(-1, self.observation_dim)
        batch = obs.shape[0]
        if state is None:
            hidden = self.policy.initial_state(batch, self.device)
        else:
            hidden = torch.as_tensor(np.asarray(state, dtype=np.float32), device=self.device)
            if hidden.shape != (batch, self.policy.state_size):
                raise ValueError(
                    f"expected state of shape {(batch, self.policy.state_size)}, got "
                    f"{tuple(hidden.shape)}; pass the state returned by the previous predict"
                )
        if episode_start is not None:
            starts = torch.as_tensor(np.asarray(episode_start, dtype=bool), device=self.device)
            hidden = reset_recurrent_state(hidden, starts.reshape(batch))
        params, _, hidden = self.policy.step(obs, hidden)
        head = self.policy.head
        actions = head.mode(params) if deterministic else head.sample(params, self._sampling)
        actions = clip_action(self.action_space, actions.cpu().numpy())
        return (actions[0] if single else actions), hidden.cpu().numpy()

    @torch.no_grad()
    def meta_test(
        self,
        tasks: Sequence[Task],
        seed: int = 0,
        deterministic: bool = False,
        batch_size: int = 10_000,
        return_lengths: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Run one trial on each task and return the return of every inner episode.

        Args:
            tasks: held-out tasks.
            seed: seed of the environment noise and action sampling, so that every agent
                evaluated with the same seed gets the same noise in the same order.
            deterministic: act greedily instead of sampling.
            batch_size: tasks stepped at once.
            return_lengths: also return the steps of every inner episode.

        Returns:
            ``(num_tasks, episodes_per_trial)`` float64: the adaptation curve of each task;
            with ``return_lengths``, the pair ``(returns, lengths)`` with lengths int64 of
            the same shape.
        """
        streams = SeedStreams.from_seed(seed)
        env_generator = streams.generator("env", self.device)
        sampling = streams.generator("sampling", self.device)
        params = torch.as_tensor(self.distribution.task_params(tasks))
        episodes = self.distribution.episodes_per_trial
        returns, lengths = [], []
        for start in range(0, len(tasks), batch_size):
            chunk = range(start, min(start + batch_size, len(tasks)))
            base = self.distribution.make_batched_env(len(chunk), self.device, env_generator)
            env = BatchedTrialEnv(base, [tasks[i] for i in chunk], params[chunk.start:chunk.stop],
                                  episodes, name=self.distribution.name)
            try:
                chunk_returns, chunk_lengths = self._run_one_trial(env, sampling, deterministic)
            finally:
                if hasattr(base, "close"):
                    base.close()
            returns.append(chunk_returns)
            lengths.append(chunk_lengths)
        if return_lengths:
            return np.concatenate(returns), np.concatenate(lengths)
        return np.concatenate(returns)

    def _run_one_trial(
        self, env: BatchedTrialEnv, sampling, deterministic: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        n, device = env.num_envs, self.device
        obs = env.reset(task_index=torch.arange(n, device=device))
        hidden = self.policy.initial_state(n, device)
        trial_start = torch.ones(n, dtype=torch.bool, device=device)
        returns = torch.zeros(n, env.episodes_per_trial, dtype=torch.float64, device=device)
        lengths = torch.zeros(n, env.episodes_per_trial, dtype=torch.long, device=device)
        finished = torch.zeros(n, dtype=torch.bool, device=device)
        rows = torch.arange(n, device=device)
        head = self.policy.head
        step = 0
        # Trials of variable length end at different steps; the host checks every 16 steps.
        while step % 16 or not bool(finished.all()):
            hidden = reset_recurrent_state(hidden, trial_start)
            params, _, hidden = self.policy.step(obs, hidden)
            actions = head.mode(params) if deterministic else head.sample(params, sampling)
            result = env.step(clip_action_tensor(env.action_space, actions))
            running = ~finished
            returns[rows, result.episode_index] += result.reward.double() * running
            lengths[rows, result.episode_index] += running.long()
            trial_start = result.terminated | result.truncated
            finished |= trial_start
            obs = result.obs
            step += 1
        return returns.cpu().numpy(), lengths.cpu().numpy()

    # ----------------------------------------------------------------------------- files

    def save(self, path: str | Path) -> Path:
        """Write the policy and everything needed to rebuild it to ``path`` atomically."""
        return atomic_save(model_header(self) | {"policy": self.policy.state_dict()}, path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        distribution: TaskDistribution | None = None,
        device: str | torch.device = "auto",
    ) -> TrialAgent:
        """Rebuild an agent saved with :meth:`save` (or a training checkpoint).

        Args:
            path: the file.
            distribution: the task distribution; rebuilt from the saved name if None.
            device: where to put the policy.
        """
        data, distribution = read_model_file(cls, path, distribution)
        agent = cls(distribution, cls.config_class(**data["config"]), device=device,
                    seed=data["seed"])
        agent.policy.load_state_dict(data["policy"])
        agent.num_timesteps = data["num_timesteps"]
        return agent

    def training_state(self) -> dict[str, Any]:
        """Return everything that resumes training exactly: weights, optimizer, envs, RNGs."""
        collector = self._ensure_collector()
        return model_header(self) | {
            "num_updates": self.num_updates,
            "total_timesteps": self.total_timesteps,
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "collector": collector.state_dict(),
            "generators": {
                "sampling": self._sampling.get_state(),
                "env": collector.env.base.generator.get_state(),
                "tasks": collector.env.generator.get_state(),
            },
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`training_state` into this agent."""
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        collector = self._ensure_collector()
        collector.load_state_dict(state["collector"])
        self._sampling.set_state(state["generators"]["sampling"])
        collector.env.base.generator.set_state(state["generators"]["env"])
        collector.env.generator.set_state(state["generators"]["tasks"])
        self.num_timesteps = state["num_timesteps"]
        self.num_updates = state["num_updates"]
        self.total_timesteps = state["total_timesteps"]


def _gather_metrics(trial_stats, update_stats: dict[str, torch.Tensor]) -> dict[str, float]:
    """Bring one update's statistics to the host in a single transfer."""
    names = [f"train/{key}" for key in update_stats]
    values = [value.float().reshape(()) for value in update_stats.values()]
    k = trial_stats.episode_count.shape[0]
    stacked = torch.cat([
        torch.stack(values + [trial_stats.trial_return_sum, trial_stats.trial_count]),
        trial_stats.episode_return_sum,
        trial_stats.episode_count,
    ]).tolist()
    metrics = dict(zip(names, stacked[: len(names)]))
    trial_sum, trial_count = stacked[len(names): len(names) + 2]
    episode_sums = stacked[len(names) + 2: len(names) + 2 + k]
    episode_counts = stacked[len(names) + 2 + k:]
    metrics["rollout/trials"] = trial_count
    metrics["rollout/mean_trial_return"] = trial_sum / trial_count if trial_count else float("nan")
    for index, (total, count) in enumerate(zip(episode_sums, episode_counts)):
        if count:
            metrics[f"rollout/episode_return/{index}"] = total / count
    return metrics


def model_header(agent) -> dict[str, Any]:
    """Return what every model file and checkpoint starts with: format, settings, task family, step.

    ``agent`` has ``save_format``, a dataclass ``config``, ``distribution``, ``seed`` and
    ``num_timesteps``; :func:`read_model_file` reads these entries back.
    """
    return {
        "format": agent.save_format,
        "config": dataclasses.asdict(agent.config),
        "distribution": distribution_spec(agent.distribution),
        "seed": agent.seed,
        "num_timesteps": agent.num_timesteps,
    }


def distribution_spec(distribution: TaskDistribution) -> dict[str, Any]:
    return {
        "registry_name": distribution.registry_name,
        "registry_kwargs": distribution.registry_kwargs,
        "config": distribution.config(),
    }


def read_model_file(
    agent_class: type, path: str | Path, distribution: TaskDistribution | None
) -> tuple[dict[str, Any], TaskDistribution]:
    """Read a model or checkpoint file of ``agent_class`` and the distribution it was trained on.

    Raises:
        ValueError: when the file was written by another agent class.
    """
    data = load_file(path)
    if data.get("format") != agent_class.save_format:
        raise ValueError(
            f"{path} is not a model file of {agent_class.__name__} (format "
            f"{data.get('format')!r}, expected {agent_class.save_format!r}); load it with "
            "agents.load_agent(path)"
        )
    if distribution is None:
        distribution = rebuild_distribution(data["distribution"], path)
    return data, distribution


def rebuild_distribution(spec: dict[str, Any], path) -> TaskDistribution:
    if spec.get("registry_name") is None:
        raise ValueError(
            f"{path} was saved from a task distribution built outside the registry "
            f"({spec['config'].get('name')}); pass it to load(path, distribution=...)"
        )
    return make_distribution(spec["registry_name"], **spec["registry_kwargs"])
