"""stable-baselines3 baselines that run through the same scripts as the meta-RL agents.

- :class:`PPOBaseline` (``--agent ppo``): SB3's PPO with a feed-forward policy on
  :class:`envs.TaskSamplingEnv`, which starts every episode on a new meta-train task and hides
  the task. It measures what a learner gets without meta-learning: the best behaviour on
  average over the task prior. At meta-test it cannot adapt, so its adaptation curve is flat
  in expectation.
- :class:`RecurrentPPOBaseline` (``--agent recurrent-ppo``): sb3-contrib's RecurrentPPO with
  an LSTM policy on :class:`envs.TrialWrapper`, the recurrent learner a user would pick
  instead of RL². Its LSTM state is reset only at trial starts.

Both store SB3's own model zip in their model files and checkpoints. SB3 does not save its
rollout state (the environments' current episodes, the last observation, the LSTM state,
the random generators), so a resumed run restarts the environments' episodes with seeds
drawn from the run's seed and its step count. A resumed baseline run therefore continues
training but is not bit-identical to an uninterrupted one, unlike rl2, memory and maml-ppo.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.device import resolve_device
from agents.sb3_config import PPOBaselineConfig, RecurrentPPOBaselineConfig, SB3PPOConfig
from agents.serialization import atomic_save
from agents.settings import checked_config
from agents.trial_agent import model_header, read_model_file
from envs.task_sampling import TaskSamplingEnv
from envs.tasks import Task, TaskDistribution
from envs.trial import TrialWrapper

Callback = Callable[["SB3Baseline", dict[str, float]], "bool | None"]


class SB3Baseline:
    """An SB3 on-policy algorithm behind the agent interface of RL² and MAML-PPO.

    Subclasses set the SB3 algorithm and policy, the environment in each vector-env slot,
    the rollout metrics and the meta-test loop.

    Args:
        distribution: task distribution; training draws tasks from its meta-train split.
        config: hyperparameters.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a torch device, for the SB3 policy. The
            environments run on the CPU.
        seed: the run's seed, passed to SB3 as its ``seed``. SB3 seeds Python's, NumPy's and
            torch's global generators with it, and the environments with ``seed + index``.

    Raises:
        ValueError: for invalid settings, a family whose environment does not fit, or, for
            the recurrent baseline, a missing sb3-contrib package.
    """

    save_format: str = ""
    config_class: type[SB3PPOConfig] = SB3PPOConfig
    display_name: str = "baseline"
    policy_name: str = ""

    def __init__(
        self,
        distribution: TaskDistribution,
        config: SB3PPOConfig | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
    ):
        self.config = checked_config(type(self).__name__, config, self.config_class)
        self.config.validate_for(distribution)
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.distribution = distribution
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.num_updates = 0
        self.total_timesteps: int | None = None
        self._vec_env: DummyVecEnv | None = self._make_vec_env()
        self._episodes = _EpisodeTracker(self.config.num_envs)
        self.model = self.algorithm_class()(
            self.policy_name, self._vec_env, seed=self.seed, device=str(self.device), verbose=0,
            **self.config.model_kwargs(),
        )

    # ------------------------------------------------------------------------- subclass parts

    @staticmethod
    def algorithm_class() -> type:
        raise NotImplementedError

    def make_env(self):
        """Build the Gymnasium environment of one vector-env slot."""
        raise NotImplementedError

    def rollout_metrics(self, finished: list[tuple[float, int, dict]]) -> dict[str, float]:
        """Summarize the episodes that ended during one rollout: ``(return, length, info)``."""
        raise NotImplementedError

    def _meta_test_chunk(self, tasks: Sequence[Task], env_seeds: np.ndarray,
                         deterministic: bool) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    # ----------------------------------------------------------------------------- envs

    def _make_vec_env(self) -> DummyVecEnv:
        return DummyVecEnv([self.make_env] * self.config.num_envs)

    def _ensure_vec_env(self) -> None:
        """Reopen the training environments after :meth:`close`, seeded for the step count."""
        if self._vec_env is None:
            self._vec_env = self._make_vec_env()
            self.model.set_env(self._vec_env)
            self._vec_env.seed(_continuation_seed(self.seed, self.num_timesteps))

    def close(self) -> None:
        """Close the training environments. :meth:`learn` reopens them."""
        if self._vec_env is not None:
            self._vec_env.close()
            self._vec_env = None

    # ----------------------------------------------------------------------------- training

    @property
    def num_timesteps(self) -> int:
        """Env steps trained on, summed over the vector env's environments."""
        return int(self.model.num_timesteps)

    def learn(self, total_timesteps: int, callback: Callback | None = None) -> SB3Baseline:
        """Train until ``num_timesteps`` reaches ``total_timesteps`` env steps.

        ``total_timesteps`` counts from the start of the run, so a resumed agent continues
        to the same total.

        Args:
            total_timesteps: the run's env-step budget; rounded up to whole rollouts.
            callback: called after each PPO update with the agent and a dict of metrics
                (``rollout/``, ``train/`` from SB3's logger, ``time/``); returning ``False``
                stops training.
        """
        if not isinstance(total_timesteps, (int, np.integer)) or total_timesteps < 1:
            raise ValueError(f"total_timesteps must be a positive integer, got {total_timesteps!r}")
        self.total_timesteps = int(total_timesteps)
        remaining = self.total_timesteps - self.num_timesteps
        if remaining <= 0:
            return self
        self._ensure_vec_env()
        if self.model._last_obs is None:
            # SB3 resets the environments in learn, so no episode is in progress.
            self._episodes = _EpisodeTracker(self.config.num_envs)
        update_callback = _UpdateCallback(self, callback)
        # reset_num_timesteps=False makes SB3 train `remaining` steps past num_timesteps.
        self.model.learn(remaining, callback=update_callback, log_interval=None,
                         reset_num_timesteps=False)
        if update_callback.stopped_at is not None:
            # SB3 ends learn only from a step callback, one vector-env step after the stop
            # request. Forget that step, because no update trained on it.
            self.model.num_timesteps = update_callback.stopped_at
            self.model._last_obs = None
        return self

    def _update_metrics(self) -> dict[str, float]:
        """Return the ``train/`` values SB3's last update recorded in its logger."""
        values = self.model.logger.name_to_value
        return {key: float(value) for key, value in values.items() if key.startswith("train/")}

    # ----------------------------------------------------------------------------- acting

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """Return SB3's ``predict(observation, state, episode_start, deterministic)``."""
        return self.model.predict(observation, state=state, episode_start=episode_start,
                                  deterministic=deterministic)

    def meta_test(
        self,
        tasks: Sequence[Task],
        seed: int = 0,
        deterministic: bool = False,
        batch_size: int = 1000,
        return_lengths: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Run ``episodes_per_trial`` episodes on each task and return each episode's return.

        Every task gets its own environment, pinned to the task and reset with its own seed
        from ``SeedSequence(seed)``. Action sampling draws from torch's global generator,
        seeded with ``seed`` inside ``torch.random.fork_rng``, so that meta-test leaves
        training's random stream unchanged.

        Args:
            tasks: held-out tasks.
            seed: seed of the environment noise and action sampling.
            deterministic: act greedily instead of sampling.
            batch_size: tasks stepped at once.
            return_lengths: also return the steps of every episode.

        Returns:
            ``(num_tasks, episodes_per_trial)`` float64 returns; with ``return_lengths``, the
            pair ``(returns, lengths)`` with lengths int64 of the same shape.
        """
        env_seeds = np.random.SeedSequence(seed).generate_state(len(tasks))
        returns, lengths = [], []
        with _seeded_torch(seed, self.device):
            for start in range(0, len(tasks), batch_size):
                stop = min(start + batch_size, len(tasks))
                chunk_returns, chunk_lengths = self._meta_test_chunk(
                    tasks[start:stop], env_seeds[start:stop], deterministic)
                returns.append(chunk_returns)
                lengths.append(chunk_lengths)
        if return_lengths:
            return np.concatenate(returns), np.concatenate(lengths)
        return np.concatenate(returns)

    # ----------------------------------------------------------------------------- files

    def _model_zip(self) -> bytes:
        """Return SB3's model zip: ``PPO.load(io.BytesIO(data))`` (or RecurrentPPO's) reads it."""
        buffer = io.BytesIO()
        self.model.save(buffer)
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write SB3's model zip and everything needed to rebuild the agent to ``path`` atomically."""
        return atomic_save(model_header(self) | {"model": self._model_zip()}, path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        distribution: TaskDistribution | None = None,
        device: str | torch.device = "auto",
    ) -> SB3Baseline:
        """Rebuild an agent saved with :meth:`save` (or a training checkpoint).

        Args:
            path: the file.
            distribution: the task distribution; rebuilt from the saved name if None.
            device: where to put the policy.
        """
        data, distribution = read_model_file(cls, path, distribution)
        agent = cls(distribution, cls.config_class.from_dict(data["config"]), device=device,
                    seed=data["seed"])
        agent._load_model_zip(data["model"])
        return agent

    def _load_model_zip(self, model_zip: bytes) -> None:
        """Load the policy, the optimizer and SB3's step and update counters from a model zip."""
        data, params, _ = load_from_zip_file(io.BytesIO(model_zip), device=str(self.device))
        self.model.set_parameters(params, exact_match=True, device=str(self.device))
        self.model.num_timesteps = int(data["num_timesteps"])
        self.model._n_updates = int(data["_n_updates"])

    def training_state(self) -> dict[str, Any]:
        """Return what resumes training: SB3's model zip (policy and optimizer) and counters."""
        return model_header(self) | {
            "model": self._model_zip(),
            "num_updates": self.num_updates,
            "total_timesteps": self.total_timesteps,
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`training_state` into this agent.

        The environments restart their episodes at the next :meth:`learn`, and SB3 reseeds
        its generators and the environments from the run's seed and the restored step count,
        so that the resumed run does not replay the tasks the run started with.
        """
        self._load_model_zip(state["model"])
        self.num_updates = state["num_updates"]
        self.total_timesteps = state["total_timesteps"]
        self._ensure_vec_env()
        self.model.set_random_seed(_continuation_seed(self.seed, self.num_timesteps))
        self.model._last_obs = None


class PPOBaseline(SB3Baseline):
    """SB3 PPO without memory, on a new hidden meta-train task every episode.

    The policy's input is only the environment's observation, so it learns the best
    behaviour on average over the task prior. On bandits, where every arm's mean is Uniform(0, 1), that
    is random play in expectation.

    Example:
        >>> from envs import make_distribution
        >>> config = PPOBaselineConfig(num_envs=2, n_steps=8, batch_size=8, n_epochs=1)
        >>> agent = PPOBaseline(make_distribution("bandit-k5-n10"), config, device="cpu")
        >>> agent.learn(total_timesteps=32).num_timesteps
        32
    """

    save_format = "adaptrl.sb3_ppo.v1"
    config_class = PPOBaselineConfig
    display_name = "PPO baseline"
    policy_name = "MlpPolicy"
    progress_metric = "rollout/mean_episode_return"

    @staticmethod
    def algorithm_class() -> type:
        return PPO

    def make_env(self) -> TaskSamplingEnv:
        return TaskSamplingEnv(self.distribution, split="meta-train", task_visible=False)

    def rollout_metrics(self, finished: list[tuple[float, int, dict]]) -> dict[str, float]:
        returns = [episode_return for episode_return, _, _ in finished]
        lengths = [length for _, length, _ in finished]
        return {
            "rollout/episodes": len(finished),
            "rollout/mean_episode_return": float(np.mean(returns)) if finished else float("nan"),
            "rollout/mean_episode_length": float(np.mean(lengths)) if finished else float("nan"),
        }

    def _meta_test_chunk(self, tasks: Sequence[Task], env_seeds: np.ndarray,
                         deterministic: bool) -> tuple[np.ndarray, np.ndarray]:
        """Run each task's episodes one after another; the policy keeps no state between them."""
        num_episodes = self.distribution.episodes_per_trial
        num_tasks = len(tasks)
        returns = np.zeros((num_tasks, num_episodes), dtype=np.float64)
        lengths = np.zeros((num_tasks, num_episodes), dtype=np.int64)
        envs = [TaskSamplingEnv(self.distribution, split="meta-test") for _ in tasks]
        try:
            obs = np.stack([env.reset(seed=int(env_seed), options={"task": task})[0]
                            for env, env_seed, task in zip(envs, env_seeds, tasks)])
            episode = np.zeros(num_tasks, dtype=np.int64)
            running = np.ones(num_tasks, dtype=bool)
            while running.any():
                rows = np.flatnonzero(running)
                actions, _ = self.model.predict(obs[rows], deterministic=deterministic)
                for row, action in zip(rows, actions):
                    next_obs, reward, terminated, truncated, _ = envs[row].step(action)
                    returns[row, episode[row]] += reward
                    lengths[row, episode[row]] += 1
                    if terminated or truncated:
                        episode[row] += 1
                        if episode[row] == num_episodes:
                            running[row] = False
                            continue
                        # No seed: the task's environment continues its own noise stream.
                        next_obs, _ = envs[row].reset(options={"task": tasks[row]})
                    obs[row] = next_obs
        finally:
            for env in envs:
                env.close()
        return returns, lengths


class RecurrentPPOBaseline(SB3Baseline):
    """sb3-contrib's RecurrentPPO with an LSTM policy, trained on trials of meta-train tasks.

    One Gymnasium episode of :class:`envs.TrialWrapper` is one trial, so SB3 resets the LSTM
    state at trial starts only and carries it across the inner episodes of a trial, as RL²
    does. Observations are trial observations: the environment's, then the previous action,
    the previous reward and the inner-episode-start flag. Needs the sb3-contrib package.

    Example:
        >>> from envs import make_distribution
        >>> config = RecurrentPPOBaselineConfig(num_envs=2, n_steps=8, batch_size=8, n_epochs=1)
        >>> agent = RecurrentPPOBaseline(make_distribution("bandit-k5-n10"), config, device="cpu")
        >>> agent.learn(total_timesteps=32).num_timesteps
        32
    """

    save_format = "adaptrl.sb3_recurrent_ppo.v1"
    config_class = RecurrentPPOBaselineConfig
    display_name = "RecurrentPPO baseline"
    policy_name = "MlpLstmPolicy"
    progress_metric = "rollout/mean_trial_return"

    @staticmethod
    def algorithm_class() -> type:
        try:
            from sb3_contrib import RecurrentPPO
        except ImportError as error:
            raise ImportError(
                f"--agent recurrent-ppo needs sb3-contrib ({error}). Install it with "
                "`pip install 'adaptrl[bench]'` or `pip install sb3-contrib`."
            ) from error
        return RecurrentPPO

    def make_env(self) -> TrialWrapper:
        return TrialWrapper(self.distribution.make_env(), self.distribution, split="meta-train")

    def predict(
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Choose actions for trial observations with sb3-contrib's recurrent ``predict``.

        ``episode_start`` marks trial starts, where the LSTM state is reset. Pass the
        ``state`` returned by the previous call, across inner-episode boundaries too.
        """
        return self.model.predict(observation, state=state, episode_start=episode_start,
                                  deterministic=deterministic)

    def rollout_metrics(self, finished: list[tuple[float, int, dict]]) -> dict[str, float]:
        metrics: dict[str, float] = {
            "rollout/trials": len(finished),
            "rollout/mean_trial_return": (
                float(np.mean([trial_return for trial_return, _, _ in finished]))
                if finished else float("nan")
            ),
        }
        episode_returns = [info["inner_episode_returns"] for _, _, info in finished]
        for index in range(self.distribution.episodes_per_trial):
            values = [returns[index] for returns in episode_returns if len(returns) > index]
            if values:
                metrics[f"rollout/episode_return/{index}"] = float(np.mean(values))
        return metrics

    def _meta_test_chunk(self, tasks: Sequence[Task], env_seeds: np.ndarray,
                         deterministic: bool) -> tuple[np.ndarray, np.ndarray]:
        """Run one trial per task; the LSTM state is reset only at the first step."""
        num_episodes = self.distribution.episodes_per_trial
        num_tasks = len(tasks)
        returns = np.zeros((num_tasks, num_episodes), dtype=np.float64)
        lengths = np.zeros((num_tasks, num_episodes), dtype=np.int64)
        envs = [TrialWrapper(self.distribution.make_env(), self.distribution, split="meta-test")
                for _ in tasks]
        try:
            obs = np.stack([env.reset(seed=int(env_seed), options={"task": task})[0]
                            for env, env_seed, task in zip(envs, env_seeds, tasks)])
            episode = np.zeros(num_tasks, dtype=np.int64)
            running = np.ones(num_tasks, dtype=bool)
            episode_start = np.ones(num_tasks, dtype=bool)
            state = None
            while running.any():
                # Every row is stepped through the LSTM, so that the state array keeps one row
                # per task. The actions of finished trials are dropped.
                actions, state = self.model.predict(obs, state=state, episode_start=episode_start,
                                                    deterministic=deterministic)
                episode_start = np.zeros(num_tasks, dtype=bool)
                for row in np.flatnonzero(running):
                    obs[row], reward, terminated, truncated, info = envs[row].step(actions[row])
                    returns[row, episode[row]] += reward
                    lengths[row, episode[row]] += 1
                    episode[row] = info["inner_episode"]
                    running[row] = not (terminated or truncated)
        finally:
            for env in envs:
                env.close()
        return returns, lengths


# --------------------------------------------------------------------------------- helpers


class _EpisodeTracker:
    """Sums the rewards and steps of each vector-env slot's current episode."""

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.finished: list[tuple[float, int, dict]] = []

    def add(self, rewards: np.ndarray, dones: np.ndarray, infos: list[dict]) -> None:
        self.returns += rewards
        self.lengths += 1
        for index in np.flatnonzero(dones):
            self.finished.append((float(self.returns[index]), int(self.lengths[index]),
                                  infos[index]))
            self.returns[index] = 0.0
            self.lengths[index] = 0

    def pop_finished(self) -> list[tuple[float, int, dict]]:
        finished, self.finished = self.finished, []
        return finished


class _UpdateCallback(BaseCallback):
    """Calls AdaptRL's callback after each PPO update of SB3's ``learn``.

    SB3 updates right after a rollout ends, then starts the next rollout or ends ``learn``,
    so the callback runs at the next rollout start or at the end of training. SB3 can stop
    only from a step callback: when AdaptRL's callback returns ``False``, the next env step
    returns ``False``, and ``stopped_at`` is the step count of the last update.
    """

    def __init__(self, agent: SB3Baseline, callback: Callback | None):
        super().__init__(verbose=0)
        self.agent = agent
        self.user_callback = callback
        self.stopped_at: int | None = None
        self._update_pending = False
        self._rollout_start = self._rollout_end = time.perf_counter()

    def _on_rollout_start(self) -> None:
        self._after_update()
        self._rollout_start = time.perf_counter()

    def _on_step(self) -> bool:
        if self.stopped_at is not None:
            return False
        self.agent._episodes.add(np.asarray(self.locals["rewards"], dtype=np.float64),
                                 np.asarray(self.locals["dones"], dtype=bool),
                                 self.locals["infos"])
        return True

    def _on_rollout_end(self) -> None:
        self._rollout_end = time.perf_counter()
        self._update_pending = True

    def _on_training_end(self) -> None:
        self._after_update()

    def _after_update(self) -> None:
        if not self._update_pending or self.stopped_at is not None:
            return
        self._update_pending = False
        agent = self.agent
        agent.num_updates += 1
        finished = time.perf_counter()
        metrics = agent.rollout_metrics(agent._episodes.pop_finished())
        metrics.update(agent._update_metrics())
        metrics.update({
            "time/steps_per_second": agent.config.rollout_size / (finished - self._rollout_start),
            "time/rollout_seconds": self._rollout_end - self._rollout_start,
            "time/update_seconds": finished - self._rollout_end,
        })
        if self.user_callback is not None and self.user_callback(agent, metrics) is False:
            self.stopped_at = agent.num_timesteps


def _continuation_seed(seed: int, num_timesteps: int) -> int:
    """Return a seed for continuing a run at ``num_timesteps``.

    SB3 seeds NumPy's global generator with it, which takes seeds below 2**32, and the
    environments with ``seed + index``; a value below 2**31 leaves room for both.
    """
    return int(np.random.SeedSequence([seed, num_timesteps]).generate_state(1)[0] >> 1)


@contextmanager
def _seeded_torch(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators with ``seed`` and restore their states on exit."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


__all__ = ["PPOBaseline", "PPOBaselineConfig", "RecurrentPPOBaseline", "RecurrentPPOBaselineConfig"]
