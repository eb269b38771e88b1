"""Benchmark AdaptRL's RL² against sb3-contrib's RecurrentPPO on 5-armed Bernoulli bandits.

Both learners train in one process on one machine on ``bandit-k5-n10`` (5 arms, 10 pulls per
trial, one pull per inner episode). The benchmark measures:

1. Training throughput in env steps per second, timed over a fixed number of PPO updates
   after a warm-up.
2. Training time until the held-out mean trial return reaches a target. Both learners are
   evaluated on the same first ``eval_tasks`` tasks of the meta-test split with the same eval
   seed. The clock stops while they are evaluated, so the times count training only. A
   learner that has not reached a target within the cap stops there, and its time is then a
   lower bound.

RecurrentPPO runs with all of sb3-contrib's defaults on 16 trial environments in a
``DummyVecEnv``; one Gymnasium episode of such an environment is one 10-pull trial. RL² runs
with the default :class:`RL2Config` and the training job's default budget, so the figures are
what a user gets without tuning.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.device import resolve_device
from agents.maml import MAMLConfig
from agents.rl2 import RL2, RL2Config
from envs.registry import make_distribution
from envs.tasks import Task, TaskDistribution
from envs.trial import TrialWrapper
from harness.config import TrainConfig
from harness.evaluation import summarize
from harness.flags import parse_flags
from harness.run import software_versions, write_json_atomic

logger = logging.getLogger(__name__)

ENV_NAME = "bandit-k5-n10"
RL2_NAME = "AdaptRL RL²"
PEER_NAME = "sb3-contrib RecurrentPPO"

# Stop reasons of a time-to-target run.
STOP_TARGETS = "all targets reached"
STOP_CAP = "cap"
STOP_BUDGET = "budget"


@dataclass
class PeerConfig:
    """Settings of sb3-contrib's RecurrentPPO ("MlpLstmPolicy"). None keeps sb3-contrib's default."""

    num_envs: int = 16
    """Trial environments in the DummyVecEnv."""
    n_steps: int | None = None
    """Env steps per environment in each rollout (sb3-contrib 2.9's default: 128)."""
    batch_size: int | None = None
    """Env steps per minibatch (sb3-contrib 2.9's default: 128)."""
    n_epochs: int | None = None
    """PPO passes over each rollout (sb3-contrib 2.9's default: 10)."""
    device: str = "auto"
    """auto (sb3-contrib's default: GPU when CUDA is available), cpu, or cuda."""

    def model_kwargs(self) -> dict[str, Any]:
        """Return the RecurrentPPO constructor arguments that differ from sb3-contrib's defaults."""
        names = ("n_steps", "batch_size", "n_epochs")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class BenchmarkConfig:
    """Measure AdaptRL's RL² against sb3-contrib's RecurrentPPO on bandit-k5-n10.

    Prints training throughput (env steps per second) and the training time each learner
    needs to reach a held-out mean trial return, both measured in this run on this machine.
    With no flags, RecurrentPPO's run alone can last its 15-minute cap plus several minutes of
    evaluation. Allow about 30 minutes, an estimate: one run on 2 CPU cores took 15.
    """

    cap_minutes: float = 15.0
    """Training-time cap of each time-to-target run, in minutes. A learner that has not reached
    a target by then stops, and its time to that target is reported as a lower bound."""
    compare_target: float = 6.0
    """Held-out mean trial return (sum of the 10 rewards) that both learners train to. The
    time_to_target_ratio is measured at this target."""
    rl2_targets: tuple[float, ...] = (6.4, 6.55)
    """Further held-out mean trial returns timed for AdaptRL's RL² only."""
    eval_tasks: int = 10_000
    """Held-out tasks per evaluation: the first N of the meta-test split (1 to 10,000). With a
    trial-return standard deviation near 2, N = 10,000 gives a 95% CI of about ±0.04."""
    eval_seed: int = 0
    """Seed of the evaluation's env noise and action sampling, the same at every evaluation."""
    eval_interval_seconds: float = 2.0
    """Training time between evaluations, in seconds. An evaluation runs at the first PPO update
    boundary after this much training time, so times to target are late by at most this
    interval plus one update."""
    eval_deterministic: bool = False
    """Evaluate with the most likely action. By default actions are sampled, as in training."""
    seed: int = 0
    """Training seed of both learners."""
    device: str = "cpu"
    """Device of AdaptRL's RL²: cpu, cuda (fails when CUDA is not available) or auto."""
    total_timesteps: int = TrainConfig.total_timesteps
    """Env-step budget of each time-to-target run. RL²'s linear learning-rate schedule anneals
    to 0 over it. Default: the training job's default budget."""
    torch_threads: int | None = None
    """Threads torch uses inside one operation (torch.set_num_threads), for both learners.
    Default: torch's own choice. Fewer threads than cores can be faster on a busy machine."""
    warmup_updates: int = 1
    """PPO updates run before the throughput clock starts, per learner."""
    rl2_throughput_updates: int = 50
    """PPO updates timed for RL²'s throughput. Each follows one rollout of rl2.num_envs ×
    rl2.num_steps env steps (5,120 with the default RL2Config, so 256,000 in all)."""
    peer_throughput_updates: int = 3
    """PPO updates timed for RecurrentPPO's throughput. Each follows one rollout of
    peer.num_envs × n_steps env steps (16 × 128 = 2,048 with the defaults)."""
    num_envs_list: tuple[int, ...] = ()
    """Measure RL²'s throughput alone at each of these numbers of parallel environments, for
    example 256 1024 4096 with --device cuda. Skips the peer and the time-to-target runs. Each
    keeps the number of minibatches per epoch of the rl2 settings."""
    skip_peer: bool = False
    """Measure AdaptRL's RL² only."""
    throughput_only: bool = False
    """Measure throughput only, without the time-to-target runs."""
    json: bool = False
    """Print the results as one JSON object instead of a table."""
    json_file: Path | None = None
    """Also write the JSON object to this file, for records next to the printed table."""
    progress: bool = True
    """Show progress bars on stderr."""
    rl2: RL2Config = field(default_factory=RL2Config)
    """Hyperparameters of AdaptRL's RL²."""
    peer: PeerConfig = field(default_factory=PeerConfig)
    """Settings of sb3-contrib's RecurrentPPO."""
    maml: bool = False
    """Instead of the RL² benchmark, measure the throughput of MAML-PPO's meta-iteration on
    navigation-2d beside the same meta-iteration run as a per-task loop (--skip-peer drops the
    loop). Uses --seed, --device, --torch-threads, --warmup-updates, --maml-iterations and
    the --maml-ppo.* settings."""
    maml_iterations: int = 5
    """Meta-iterations timed per learner with --maml (each samples meta_batch_size x
    rollouts_per_task x 100 steps per adaptation step and once more after adapting)."""
    maml_ppo: MAMLConfig = field(default_factory=MAMLConfig)
    """Hyperparameters of MAML-PPO for --maml."""

    @property
    def cap_seconds(self) -> float:
        return self.cap_minutes * 60.0

    @property
    def runs_peer(self) -> bool:
        return not self.skip_peer and not self.num_envs_list

    @property
    def runs_time_to_target(self) -> bool:
        return not self.throughput_only and not self.num_envs_list

    def validate(self) -> TaskDistribution:
        """Check every value before anything runs, and return the task distribution.

        Raises:
            ValueError: naming the invalid value and how to fix it.
        """
        distribution = make_distribution(ENV_NAME)
        if not (math.isfinite(self.cap_minutes) and self.cap_minutes > 0):
            raise ValueError(f"--cap-minutes must be a positive number of minutes, got {self.cap_minutes!r}")
        if not 1 <= self.eval_tasks <= distribution.num_test_tasks:
            raise ValueError(
                f"--eval-tasks must lie in [1, {distribution.num_test_tasks}] (the size of the "
                f"meta-test split of {ENV_NAME}), got {self.eval_tasks}"
            )
        for target in (self.compare_target, *self.rl2_targets):
            if not math.isfinite(target):
                raise ValueError(f"targets must be finite mean trial returns, got {target!r}")
        if not (math.isfinite(self.eval_interval_seconds) and self.eval_interval_seconds >= 0):
            raise ValueError(
                f"--eval-interval-seconds must be a non-negative number of seconds, got "
                f"{self.eval_interval_seconds!r}"
            )
        for name in ("total_timesteps", "rl2_throughput_updates", "peer_throughput_updates"):
            _check_integer(name, getattr(self, name), minimum=1)
        for name in ("warmup_updates", "seed", "eval_seed"):
            _check_integer(name, getattr(self, name), minimum=0)
        if self.torch_threads is not None:
            _check_integer("torch_threads", self.torch_threads, minimum=1)
        for num_envs in self.num_envs_list:
            if not isinstance(num_envs, int) or num_envs < 1:
                raise ValueError(f"--num-envs-list values must be positive integers, got {num_envs!r}")
        self.rl2.validate()
        for num_envs in self.num_envs_list:
            scaled_rl2_config(self.rl2, num_envs).validate()
        resolve_device(self.device)
        if self.runs_peer:
            for name in ("num_envs", "n_steps", "batch_size", "n_epochs"):
                value = getattr(self.peer, name)
                if value is not None:
                    _check_integer(f"peer.{name}", value, minimum=1)
            resolve_device(self.peer.device)
        return distribution


def _check_integer(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or value < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"--{name.replace('_', '-')} must be a {kind} integer, got {value!r}")


def scaled_rl2_config(base: RL2Config, num_envs: int) -> RL2Config:
    """Return ``base`` with ``num_envs`` environments and the same number of minibatches per epoch.

    Keeping the minibatch count, not the minibatch size, keeps the gradient steps per update
    fixed, so the work per env step stays comparable across numbers of environments.
    """
    minibatches = base.rollout_size // base.minibatch_size
    minibatch_size = max(1, num_envs * base.num_steps // minibatches)
    return dataclasses.replace(base, num_envs=num_envs, minibatch_size=minibatch_size)


# ------------------------------------------------------------------------------- throughput


@dataclass
class Throughput:
    """Training speed of one learner, timed after its warm-up updates.

    Attributes:
        learner: display name.
        device: where the policy ran.
        num_envs: parallel environments.
        warmup_steps: env steps run before the clock started.
        env_steps: env steps inside the timed window.
        seconds: wall-clock seconds of the timed window (rollouts and updates).
    """

    learner: str
    device: str
    num_envs: int
    warmup_steps: int
    env_steps: int
    seconds: float

    @property
    def steps_per_second(self) -> float:
        return self.env_steps / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "steps_per_second": self.steps_per_second}


def measure_rl2_throughput(
    distribution: TaskDistribution,
    config: RL2Config,
    device: str,
    seed: int,
    warmup_updates: int,
    timed_updates: int,
    progress: bool = False,
) -> Throughput:
    """Time ``timed_updates`` PPO updates of a fresh RL² agent after ``warmup_updates`` updates."""
    agent = RL2(distribution, dataclasses.replace(config), device=device, seed=seed)
    total = (warmup_updates + timed_updates) * config.rollout_size
    window: dict[str, tuple[float, int]] = {}
    bar = _progress_bar(progress, f"{RL2_NAME} throughput", total, "step")

    def callback(agent: RL2, metrics: dict[str, float]) -> bool:
        if agent.num_updates == warmup_updates:
            window["start"] = (time.perf_counter(), agent.num_timesteps)
        bar.update(agent.num_timesteps - bar.n)
        return True

    if warmup_updates == 0:
        window["start"] = (time.perf_counter(), 0)
    with bar:
        agent.learn(total, callback=callback)
    end = time.perf_counter()
    start_time, start_steps = window["start"]
    return Throughput(RL2_NAME, str(agent.device), config.num_envs, start_steps,
                      agent.num_timesteps - start_steps, end - start_time)


def measure_peer_throughput(
    distribution: TaskDistribution,
    config: PeerConfig,
    seed: int,
    warmup_updates: int,
    timed_updates: int,
    progress: bool = False,
) -> Throughput:
    """Time ``timed_updates`` PPO updates of a fresh RecurrentPPO after ``warmup_updates`` updates."""
    model = make_peer(distribution, config, seed)
    rollout_size = model.n_steps * model.n_envs
    total = (warmup_updates + timed_updates) * rollout_size
    window: dict[str, tuple[float, int]] = {}
    bar = _progress_bar(progress, f"{PEER_NAME} throughput", total, "step")

    def after_update(updates: int) -> bool:
        if updates == warmup_updates:
            window["start"] = (time.perf_counter(), model.num_timesteps)
        bar.update(model.num_timesteps - bar.n)
        return True

    if warmup_updates == 0:
        window["start"] = (time.perf_counter(), 0)
    with bar:
        model.learn(total, callback=_peer_callback(after_update, lambda: True))
    end = time.perf_counter()
    bar.update(model.num_timesteps - bar.n)
    start_time, start_steps = window["start"]
    return Throughput(PEER_NAME, str(model.device), model.n_envs, start_steps,
                      model.num_timesteps - start_steps, end - start_time)


def make_peer(distribution: TaskDistribution, config: PeerConfig, seed: int):
    """Build RecurrentPPO("MlpLstmPolicy") on ``config.num_envs`` trial envs in a DummyVecEnv.

    Each environment is what ``envs.make_trial_env(ENV_NAME)`` builds, except that all of them
    share ``distribution``. A fresh distribution per environment would draw the 110,000-task
    meta split again on each environment's first reset, about a second each, inside
    ``learn``.
    """
    try:
        from sb3_contrib import RecurrentPPO
    except ImportError as error:
        raise ImportError(
            f"the peer learner needs sb3-contrib ({error}). Install it with "
            "`pip install 'adaptrl[bench]'`, or pass --skip-peer to measure AdaptRL alone."
        ) from error
    from stable_baselines3.common.vec_env import DummyVecEnv

    def make_env() -> TrialWrapper:
        return TrialWrapper(distribution.make_env(), distribution, split="meta-train")

    vec_env = DummyVecEnv([make_env] * config.num_envs)
    device = str(resolve_device(config.device))
    return RecurrentPPO("MlpLstmPolicy", vec_env, seed=seed, device=device, verbose=0,
                        **config.model_kwargs())


def _peer_callback(after_update: Callable[[int], bool], on_step: Callable[[], bool]):
    """Wrap two functions as a stable-baselines3 callback for RecurrentPPO's ``learn``.

    ``after_update(updates)`` runs at the start of each rollout after the first, which is right
    after a PPO update, and the model's policy changes only there. ``on_step()`` runs after
    every vector-env step. Either one returning False stops training at the next env step.
    """
    from stable_baselines3.common.callbacks import BaseCallback

    class AfterUpdateCallback(BaseCallback):
        def __init__(self):
            super().__init__()
            self.rollouts = 0
            self.keep_training = True

        def _on_rollout_start(self) -> None:
            if self.rollouts > 0 and self.keep_training:
                self.keep_training = after_update(self.rollouts)
            self.rollouts += 1

        def _on_step(self) -> bool:
            return self.keep_training and on_step()

    return AfterUpdateCallback()


# ----------------------------------------------------------------------- time to target


@dataclass
class EvalSettings:
    """Evaluation settings, schedule and cap of a time-to-target run.

    Attributes:
        tasks: the held-out tasks, equal for both learners.
        seed: eval seed of env noise and action sampling, equal at every evaluation.
        deterministic: act with the most likely action instead of sampling.
        interval_seconds: training seconds between evaluations.
        cap_seconds: training-time cap.
        progress: show a progress bar.
    """

    tasks: Sequence[Task]
    seed: int
    deterministic: bool
    interval_seconds: float
    cap_seconds: float
    progress: bool = False


@dataclass
class EvalPoint:
    """One held-out evaluation during training: the mean trial return and its 95% CI."""

    training_seconds: float
    env_steps: int
    mean_return: float
    ci_low: float
    ci_high: float


@dataclass
class TargetOutcome:
    """When a learner reached one target.

    Attributes:
        target: held-out mean trial return.
        reached: whether an evaluation within the cap and budget met the target.
        training_seconds: training time at the first evaluation that met it, or when not
            reached, the training time at which the run stopped (the cap when capped). In that
            case the true time to target is at least this long.
        env_steps: env steps at that evaluation, or at the stop.
        capped: the run stopped at the cap before reaching the target.
    """

    target: float
    reached: bool
    training_seconds: float
    env_steps: int
    capped: bool = False


@dataclass
class TimeToTarget:
    """Result of one time-to-target run.

    Attributes:
        learner: display name.
        targets: one outcome per target.
        stop_reason: ``"all targets reached"``, ``"cap"`` or ``"budget"``.
        training_seconds: training time when the run stopped, evaluation excluded.
        env_steps: env steps trained.
        eval_seconds: wall-clock time spent evaluating (not in ``training_seconds``).
        cap_seconds: the cap the run had.
        evaluations: every evaluation, in order.
    """

    learner: str
    targets: list[TargetOutcome]
    stop_reason: str
    training_seconds: float
    env_steps: int
    eval_seconds: float
    cap_seconds: float
    evaluations: list[EvalPoint]

    def outcome(self, target: float) -> TargetOutcome:
        for outcome in self.targets:
            if outcome.target == target:
                return outcome
        raise KeyError(f"{self.learner} was not timed to target {target}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["training_steps_per_second"] = (
            self.env_steps / self.training_seconds if self.training_seconds > 0 else None
        )
        return data


class TrainingClock:
    """Wall-clock training time that leaves out the time spent inside :meth:`paused`."""

    def __init__(self):
        self._started = time.perf_counter()
        self.paused_seconds = 0.0

    def seconds(self) -> float:
        return time.perf_counter() - self._started - self.paused_seconds

    @contextmanager
    def paused(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.paused_seconds += time.perf_counter() - start


class TargetTracker:
    """Evaluation schedule, cap and target bookkeeping of one time-to-target run.

    The learner calls :meth:`after_update` at every PPO update boundary and :meth:`within_cap`
    wherever else it can stop. The clock starts at :meth:`start`, just before ``learn``.

    Args:
        learner: display name.
        targets: held-out mean trial returns to time.
        settings: evaluation and cap settings.
        evaluate: returns the per-task, per-inner-episode returns of the current policy on
            ``settings.tasks``, of shape ``(num_tasks, episodes_per_trial)``.
    """

    def __init__(self, learner: str, targets: Sequence[float], settings: EvalSettings,
                 evaluate: Callable[[], np.ndarray]):
        self.learner = learner
        self.settings = settings
        self.evaluate = evaluate
        self.pending = sorted(set(targets))
        self.reached: dict[float, TargetOutcome] = {}
        self.evaluations: list[EvalPoint] = []
        self.stop_reason: str | None = None
        self.clock = TrainingClock()
        self._last_eval_seconds = 0.0
        self._last_eval_steps = -1
        self._bar = _progress_bar(settings.progress, f"{learner} to target",
                                  int(settings.cap_seconds), "s")

    def start(self) -> None:
        self.clock = TrainingClock()

    def within_cap(self) -> bool:
        if self.clock.seconds() < self.settings.cap_seconds:
            return True
        self.stop_reason = STOP_CAP
        return False

    def after_update(self, env_steps: int, final: bool = False) -> bool:
        """Evaluate when due and record reached targets; return False to stop training.

        Args:
            env_steps: env steps trained so far.
            final: the budget is spent, so evaluate now if this update was not evaluated.
        """
        seconds = self.clock.seconds()
        self._bar.update(int(min(seconds, self.settings.cap_seconds)) - self._bar.n)
        if not self.within_cap():
            return False
        due = seconds - self._last_eval_seconds >= self.settings.interval_seconds
        if (due or final) and env_steps != self._last_eval_steps:
            self._evaluate_now(seconds, env_steps)
        if not self.pending:
            self.stop_reason = STOP_TARGETS
            return False
        return True

    def _evaluate_now(self, seconds: float, env_steps: int) -> None:
        with self.clock.paused():
            stats = summarize(self.evaluate().sum(axis=1))
        point = EvalPoint(seconds, env_steps, stats["mean"], stats["ci_low"], stats["ci_high"])
        self.evaluations.append(point)
        self._last_eval_seconds, self._last_eval_steps = seconds, env_steps
        self._bar.set_postfix(steps=env_steps, eval_return=f"{point.mean_return:.3f}")
        for target in [t for t in self.pending if point.mean_return >= t]:
            self.pending.remove(target)
            self.reached[target] = TargetOutcome(target, True, seconds, env_steps)
            logger.info("%s reached %.2f (held-out mean trial return %.3f, 95%% CI [%.3f, %.3f]) "
                        "after %.1f s of training and %d env steps", self.learner, target,
                        point.mean_return, point.ci_low, point.ci_high, seconds, env_steps)

    def result(self, env_steps: int) -> TimeToTarget:
        """Close the run and return its outcome for every target."""
        self._bar.close()
        stop_reason = self.stop_reason or STOP_BUDGET
        capped = stop_reason == STOP_CAP
        seconds = self.clock.seconds()
        stop_seconds = self.settings.cap_seconds if capped else seconds
        outcomes = [
            self.reached.get(target) or TargetOutcome(target, False, stop_seconds, env_steps, capped)
            for target in sorted(set(self.reached) | set(self.pending))
        ]
        if self.pending:
            logger.info("%s stopped (%s) without reaching %s after %.1f s of training and %d env "
                        "steps", self.learner, stop_reason, ", ".join(map(str, self.pending)),
                        seconds, env_steps)
        return TimeToTarget(self.learner, outcomes, stop_reason, seconds, env_steps,
                            self.clock.paused_seconds, self.settings.cap_seconds, self.evaluations)


def time_rl2_to_targets(
    distribution: TaskDistribution,
    config: RL2Config,
    device: str,
    seed: int,
    total_timesteps: int,
    targets: Sequence[float],
    settings: EvalSettings,
) -> TimeToTarget:
    """Train a fresh RL² agent until it reaches every target, the cap or ``total_timesteps``.

    Evaluation is ``agent.meta_test(settings.tasks, seed=settings.seed)``, one trial per task.
    """
    agent = RL2(distribution, dataclasses.replace(config), device=device, seed=seed)

    def evaluate() -> np.ndarray:
        return agent.meta_test(settings.tasks, seed=settings.seed, deterministic=settings.deterministic)

    tracker = TargetTracker(RL2_NAME, targets, settings, evaluate)

    def callback(agent: RL2, metrics: dict[str, float]) -> bool:
        return tracker.after_update(agent.num_timesteps, final=agent.num_timesteps >= total_timesteps)

    tracker.start()
    agent.learn(total_timesteps, callback=callback)
    return tracker.result(agent.num_timesteps)


def time_peer_to_targets(
    distribution: TaskDistribution,
    config: PeerConfig,
    seed: int,
    total_timesteps: int,
    targets: Sequence[float],
    settings: EvalSettings,
) -> TimeToTarget:
    """Train a fresh RecurrentPPO until it reaches every target, the cap or ``total_timesteps``.

    RecurrentPPO's learning rate is constant by default, so the budget only bounds the run.
    Evaluation runs the policy on one trial per held-out task (:class:`PeerEvaluator`).
    """
    model = make_peer(distribution, config, seed)
    evaluator = PeerEvaluator(distribution, settings.tasks, settings.seed)

    def evaluate() -> np.ndarray:
        return evaluator.run(model, settings.deterministic)

    tracker = TargetTracker(PEER_NAME, targets, settings, evaluate)
    callback = _peer_callback(lambda updates: tracker.after_update(model.num_timesteps),
                              tracker.within_cap)
    tracker.start()
    model.learn(total_timesteps, callback=callback)
    if tracker.stop_reason is None:
        # The budget ran out, and learn() returned right after the last update.
        tracker.after_update(model.num_timesteps, final=True)
    return tracker.result(model.num_timesteps)


class PeerEvaluator:
    """Meta-test of a RecurrentPPO policy: one trial on each held-out task, all in one batch.

    Each task gets its own :class:`TrialWrapper`, forced onto the task with
    ``reset(options={"task": task})`` and reseeded with the same per-task seed at every
    evaluation, so that every evaluation uses the same tasks and env-noise seeds. Action
    sampling draws from torch's global generator, seeded with ``seed`` inside
    ``torch.random.fork_rng`` so that evaluating does not change training's random stream.

    Args:
        distribution: the task distribution.
        tasks: held-out tasks.
        seed: the eval seed.
    """

    def __init__(self, distribution: TaskDistribution, tasks: Sequence[Task], seed: int):
        self.tasks = list(tasks)
        self.seed = seed
        self.episodes_per_trial = distribution.episodes_per_trial
        self.envs = [TrialWrapper(distribution.make_env(), distribution, split="meta-test")
                     for _ in self.tasks]
        self.env_seeds = np.random.SeedSequence(seed).generate_state(len(self.tasks))

    def run(self, model, deterministic: bool) -> np.ndarray:
        """Return the inner-episode returns, of shape ``(num_tasks, episodes_per_trial)``."""
        num_tasks = len(self.tasks)
        resets = [env.reset(seed=int(env_seed), options={"task": task})
                  for env, env_seed, task in zip(self.envs, self.env_seeds, self.tasks)]
        obs = np.stack([observation for observation, _ in resets])
        episode_index = np.zeros(num_tasks, dtype=np.int64)
        returns = np.zeros((num_tasks, self.episodes_per_trial), dtype=np.float64)
        finished = np.zeros(num_tasks, dtype=bool)
        episode_start = np.ones(num_tasks, dtype=bool)
        state = None
        devices = [model.device] if model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            while not finished.all():
                actions, state = model.predict(obs, state=state, episode_start=episode_start,
                                               deterministic=deterministic)
                episode_start[:] = False
                for i in np.flatnonzero(~finished):
                    obs[i], reward, terminated, truncated, info = self.envs[i].step(actions[i])
                    returns[i, episode_index[i]] += reward
                    episode_index[i] = info["inner_episode"]
                    finished[i] = terminated or truncated
        return returns


# ----------------------------------------------------------------------------- ratios


@dataclass
class Ratio:
    """A ratio of two measurements. With ``lower_bound``, the true ratio is at least ``value``."""

    value: float | None
    lower_bound: bool = False
    note: str = ""


def time_to_target_ratio(rl2: TargetOutcome, peer: TargetOutcome) -> Ratio:
    """Return RecurrentPPO's time to a target divided by RL²'s.

    When the peer did not reach the target, its stop time (the cap, when capped) replaces its
    time and the ratio is a lower bound. When RL² did not reach it, there is no ratio.
    """
    if not rl2.reached:
        return Ratio(None, note=f"{RL2_NAME} did not reach {rl2.target}")
    if rl2.training_seconds <= 0:
        return Ratio(None, note=f"{RL2_NAME}'s time to {rl2.target} is 0 s")
    value = peer.training_seconds / rl2.training_seconds
    if peer.reached:
        return Ratio(value)
    reason = "capped" if peer.capped else "budget spent"
    return Ratio(value, lower_bound=True,
                 note=f"{PEER_NAME} did not reach {peer.target} ({reason}), so this is a lower bound")


# ------------------------------------------------------------------------------- report


def run_benchmark(config: BenchmarkConfig, distribution: TaskDistribution) -> dict[str, Any]:
    """Run every measurement that ``config`` requests and return the report as a JSON-ready dict."""
    device = str(resolve_device(config.device))
    load_at_start = _load_average()
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    _warn_if_busy(load_at_start)
    rl2_throughputs, peer_throughput = _measure_throughputs(config, distribution, device)
    rl2_run = peer_run = None
    if config.runs_time_to_target:
        rl2_run, peer_run = _measure_times_to_target(config, distribution, device)

    throughput_ratio = None
    if peer_throughput is not None and len(rl2_throughputs) == 1:
        throughput_ratio = rl2_throughputs[0].steps_per_second / peer_throughput.steps_per_second
    ratio = Ratio(None, note="not measured")
    if rl2_run is not None and peer_run is not None:
        ratio = time_to_target_ratio(rl2_run.outcome(config.compare_target),
                                     peer_run.outcome(config.compare_target))
    return {
        "benchmark": f"{RL2_NAME} vs {PEER_NAME}" if config.runs_peer else RL2_NAME,
        "env": ENV_NAME,
        "throughput_ratio": throughput_ratio,
        "time_to_target_ratio": ratio.value,
        "time_to_target_ratio_is_lower_bound": ratio.lower_bound,
        "time_to_target_ratio_note": ratio.note,
        "compare_target": config.compare_target,
        "cap_seconds": config.cap_seconds,
        "throughput": {
            "adaptrl_rl2": [result.to_dict() for result in rl2_throughputs],
            "recurrent_ppo": peer_throughput.to_dict() if peer_throughput else None,
        },
        "time_to_target": {
            "adaptrl_rl2": rl2_run.to_dict() if rl2_run else None,
            "recurrent_ppo": peer_run.to_dict() if peer_run else None,
        },
        "evaluation": {
            "split": "meta-test",
            "num_tasks": config.eval_tasks,
            "seed": config.eval_seed,
            "deterministic": config.eval_deterministic,
            "interval_seconds": config.eval_interval_seconds,
            "clock": "training time only; the clock stops while evaluating",
        },
        "seeds": {"training": config.seed, "eval": config.eval_seed,
                  "meta_split": distribution.split_seed},
        "machine": {**machine_facts(device), "load_average_at_start": load_at_start},
        "config": _config_dict(config),
    }


def _warn_if_busy(load_average: list[float] | None) -> None:
    threads = torch.get_num_threads()
    if load_average is None or threads == 1 or load_average[0] < 1.0:
        return
    # Measured with 2 threads on 2 cores beside one busy process: RL² ran at 450 to 10,000
    # env steps per second instead of 45,000 with one thread.
    logger.warning("the 1-minute load average is %.2f before the benchmark starts, so other "
                   "processes are using the CPU. Torch operations with %d threads can stall on a "
                   "busy machine, which slows RL² far more than RecurrentPPO. Rerun on an idle "
                   "machine, or pass --torch-threads 1.", load_average[0], threads)


def _measure_throughputs(
    config: BenchmarkConfig, distribution: TaskDistribution, device: str
) -> tuple[list[Throughput], Throughput | None]:
    rl2_throughputs = []
    for num_envs in config.num_envs_list or (config.rl2.num_envs,):
        rl2_config = scaled_rl2_config(config.rl2, num_envs) if config.num_envs_list else config.rl2
        rl2_throughputs.append(measure_rl2_throughput(
            distribution, rl2_config, device, config.seed, config.warmup_updates,
            config.rl2_throughput_updates, config.progress))
    peer_throughput = None
    if config.runs_peer:
        peer_throughput = measure_peer_throughput(
            distribution, config.peer, config.seed, config.warmup_updates,
            config.peer_throughput_updates, config.progress)
    return rl2_throughputs, peer_throughput


def _measure_times_to_target(
    config: BenchmarkConfig, distribution: TaskDistribution, device: str
) -> tuple[TimeToTarget, TimeToTarget | None]:
    settings = EvalSettings(distribution.meta_split().test[: config.eval_tasks],
                            config.eval_seed, config.eval_deterministic,
                            config.eval_interval_seconds, config.cap_seconds, config.progress)
    rl2_targets = (config.compare_target, *config.rl2_targets)
    rl2_run = time_rl2_to_targets(distribution, config.rl2, device, config.seed,
                                  config.total_timesteps, rl2_targets, settings)
    peer_run = None
    if config.runs_peer:
        peer_run = time_peer_to_targets(distribution, config.peer, config.seed,
                                        config.total_timesteps, (config.compare_target,), settings)
    return rl2_run, peer_run


def machine_facts(device: str) -> dict[str, Any]:
    """Return the CPU, core counts, torch threads, GPU, software versions and date."""
    facts: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "gpu": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average": _load_average(),
    }
    versions = software_versions()
    for distribution in ("adaptrl", "stable-baselines3", "sb3-contrib", "tyro"):
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[distribution] = "not installed"
    facts["versions"] = versions
    return facts


def _load_average() -> list[float] | None:
    """Return the 1, 5 and 15 minute load averages, or None where the OS does not report them."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _config_dict(config: BenchmarkConfig) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    data["rl2_targets"] = list(config.rl2_targets)
    data["num_envs_list"] = list(config.num_envs_list)
    data["json_file"] = str(config.json_file) if config.json_file else None
    return data


def format_report(report: dict[str, Any]) -> str:
    """Render the report of :func:`run_benchmark` as plain-text tables."""
    lines = [f"{report['benchmark']} on {report['env']} (5 arms, 10 pulls per trial)", ""]
    lines += _format_throughput(report)
    if report["time_to_target"]["adaptrl_rl2"] is not None:
        lines += [""] + _format_time_to_target(report)
    lines += [""] + _format_machine(report)
    return "\n".join(lines)


def _format_throughput(report: dict[str, Any]) -> list[str]:
    rows = list(report["throughput"]["adaptrl_rl2"])
    if report["throughput"]["recurrent_ppo"] is not None:
        rows.append(report["throughput"]["recurrent_ppo"])
    header = f"{'learner':<28}{'device':>8}{'envs':>7}{'warm-up steps':>15}{'timed steps':>13}" \
             f"{'seconds':>10}{'steps/s':>11}"
    lines = ["Training throughput (env steps per second: rollouts plus PPO updates, after the "
             "warm-up)", header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['learner']:<28}{row['device']:>8}{row['num_envs']:>7}"
                     f"{row['warmup_steps']:>15,}{row['env_steps']:>13,}{row['seconds']:>10.1f}"
                     f"{row['steps_per_second']:>11,.0f}")
    if report["throughput_ratio"] is not None:
        lines.append(f"throughput_ratio (AdaptRL / RecurrentPPO steps/s): "
                     f"{report['throughput_ratio']:.1f}")
    return lines


def _format_time_to_target(report: dict[str, Any]) -> list[str]:
    rl2 = report["time_to_target"]["adaptrl_rl2"]
    peer = report["time_to_target"]["recurrent_ppo"]
    evaluation = report["evaluation"]
    mode = "most likely action" if evaluation["deterministic"] else "sampled actions"
    lines = [
        f"Time to target: training seconds until the held-out mean trial return reaches the "
        f"target (cap {report['cap_seconds'] / 60:g} min)",
        f"Evaluated on the first {evaluation['num_tasks']:,} meta-test tasks, eval seed "
        f"{evaluation['seed']}, {mode}, at most every {evaluation['interval_seconds']:g} s of "
        "training.",
        "The clock stops while evaluating: times are training time only.",
    ]

    header = f"{'target':>7}  {RL2_NAME:<28}{PEER_NAME:<32}{'ratio':>10}"
    lines += [header, "-" * len(header)]
    peer_outcomes = {outcome["target"]: outcome for outcome in peer["targets"]} if peer else {}
    for outcome in rl2["targets"]:
        peer_outcome = peer_outcomes.get(outcome["target"])
        peer_cell = _format_outcome(peer_outcome) if peer_outcome else "-"
        ratio_cell = _format_ratio(report) if peer_outcome else ""
        lines.append(f"{outcome['target']:>7.2f}  {_format_outcome(outcome):<28}{peer_cell:<32}"
                     f"{ratio_cell:>10}")

    if peer is not None:
        note = report["time_to_target_ratio_note"]
        lines.append(f"time_to_target_ratio (RecurrentPPO / AdaptRL time at "
                     f"{report['compare_target']:g}): {_format_ratio(report)}"
                     + (f" ({note})" if note else ""))
    for run in (rl2, peer):
        if run is not None:
            lines.append(_format_run_summary(run))
    return lines


def _format_ratio(report: dict[str, Any]) -> str:
    value = report["time_to_target_ratio"]
    if value is None:
        return "n/a"
    prefix = ">= " if report["time_to_target_ratio_is_lower_bound"] else ""
    return f"{prefix}{value:.1f}"


def _format_outcome(outcome: dict[str, Any]) -> str:
    steps = f"{outcome['env_steps']:,} steps"
    if outcome["reached"]:
        return f"{outcome['training_seconds']:.1f} s ({steps})"
    if outcome["capped"]:
        return f">= {outcome['training_seconds']:.1f} s (capped)"
    return f"not reached ({outcome['training_seconds']:.1f} s, budget spent)"


def _format_run_summary(run: dict[str, Any]) -> str:
    last = run["evaluations"][-1] if run["evaluations"] else None
    text = (f"{run['learner']}: stopped ({run['stop_reason']}) after {run['training_seconds']:.1f} s "
            f"of training, {run['env_steps']:,} env steps")
    if run["training_steps_per_second"]:
        text += f" ({run['training_steps_per_second']:,.0f} steps/s)"
    count = len(run["evaluations"])
    text += f", {count} evaluation{'' if count == 1 else 's'} taking {run['eval_seconds']:.1f} s"
    if last is not None:
        text += (f"; last held-out mean trial return {last['mean_return']:.3f} "
                 f"[{last['ci_low']:.3f}, {last['ci_high']:.3f}]")
    return text


def _format_machine(report: dict[str, Any]) -> list[str]:
    machine = report["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items()
                         if name != "platform")
    cores = f"{machine['logical_cores']} logical cores"
    if machine["usable_cores"] is not None:
        cores += f" ({machine['usable_cores']} usable by this process)"
    seeds = report["seeds"]
    lines = [
        f"Machine: {machine['cpu']}, {cores}, torch threads: {machine['torch_threads']}, "
        f"device {machine['device']}" + (f" ({machine['gpu']})" if machine["gpu"] else ""),
        f"Platform: {machine['versions']['platform']}",
        f"Load average (1, 5, 15 min): {machine['load_average_at_start']} at start, "
        f"{machine['load_average']} at end; other processes slow both learners",
        f"Versions: {versions}",
        f"Date: {machine['date']}",
        f"Seeds: training {seeds['training']}, eval {seeds['eval']}, meta split "
        f"{seeds['meta_split']}",
    ]
    return lines


# ----------------------------------------------------------------------------- command line


def benchmark_main(argv: list[str] | None = None) -> int:
    """Parse the benchmark flags, run it, and print the table or JSON to stdout."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    config = parse_flags(BenchmarkConfig, argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if config.maml:
            report = _run_maml(config)
        else:
            distribution = config.validate()
            with logging_redirect_tqdm():
                report = run_benchmark(config, distribution)
    except (ValueError, TypeError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    json_report = _finite_or_none(report)
    if config.json:
        print(json.dumps(json_report, indent=2, allow_nan=False))
    elif config.maml:
        from harness.maml_benchmark import format_maml_report

        print("\n".join(format_maml_report(report) + [""] + _format_machine(report)))
    else:
        print(format_report(report))
    if config.json_file is not None:
        try:
            write_json_atomic(json_report, config.json_file)
        except OSError as error:
            print(f"error: failed to write --json-file {config.json_file}: {error}", file=sys.stderr)
            return 1
    return 0


def _run_maml(config: BenchmarkConfig) -> dict[str, Any]:
    """Check the --maml settings, then measure both MAML-PPO meta-iterations."""
    from harness.maml_benchmark import run_maml_benchmark

    _check_integer("maml_iterations", config.maml_iterations, minimum=1)
    _check_integer("warmup_updates", config.warmup_updates, minimum=0)
    _check_integer("seed", config.seed, minimum=0)
    config.maml_ppo.validate()
    device = str(resolve_device(config.device))
    if config.torch_threads is not None:
        _check_integer("torch_threads", config.torch_threads, minimum=1)
        torch.set_num_threads(config.torch_threads)
    load_at_start = _load_average()
    report = run_maml_benchmark(config.maml_ppo, device, config.seed, config.warmup_updates,
                                config.maml_iterations, config.skip_peer)
    report["machine"] = {**machine_facts(device), "load_average_at_start": load_at_start}
    report["seeds"] = {"training": config.seed, "eval": "not used (no evaluation)",
                       "meta_split": make_distribution("navigation-2d").split_seed}
    return report


def _finite_or_none(value: Any) -> Any:
    """Replace NaN and infinite floats with None, which JSON can carry, at any depth."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def _progress_bar(enabled: bool, description: str, total: float, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit=unit, unit_scale=unit == "step",
                disable=not enabled, file=sys.stderr, dynamic_ncols=True, leave=False)
