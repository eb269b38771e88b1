"""One training run end to end: checks, run folder, tracking, checkpoints, meta-test."""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch

from agents.registry import make_agent
from harness.config import TrainConfig
from harness.evaluation import evaluate
from harness.run import RunDirectory, software_versions
from harness.tracking import Tracker, WandbSettings

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Result of :func:`train`.

    Attributes:
        run: the run folder.
        agent: the trained agent.
        evaluation: the contents of ``evaluation.json``; None when training was interrupted.
        interrupted: training stopped on Ctrl-C or SIGTERM after writing a checkpoint.
        stop_signal: the signal number that stopped training, when interrupted.
    """

    run: RunDirectory
    agent: Any
    evaluation: dict[str, Any] | None
    interrupted: bool
    stop_signal: int | None = None


class StopRequest:
    """Turns the first SIGINT or SIGTERM into a request to stop at the next update boundary.

    A second signal raises KeyboardInterrupt at once, as usual.
    """

    def __init__(self):
        self.requested = False
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the signal alone
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_number = signum
        logger.warning("stop requested (signal %d): finishing this update and writing a "
                       "checkpoint; send it again to stop at once", signum)


# Settings a resumed run may change, because they do not change what training computes.
RESUMABLE_SETTINGS = ("total_timesteps", "device", "torch_threads", "progress", "track",
                      "checkpoint_interval", "eval_tasks", "eval_seed", "eval_deterministic")
# Settings that name the run to resume rather than describe it.
_RUN_SELECTORS = ("runs_dir", "run_name", "resume")


def resume_config(config: TrainConfig, explicit_settings: Collection[str] | None = None) -> TrainConfig:
    """Return the saved config of the run to resume, with this invocation's overrides.

    The saved run defines everything: agent, env, seed, hyperparameters, budget, device and
    tracking. A resumed run may change the settings in RESUMABLE_SETTINGS. Any other setting
    given must equal the saved one.

    Args:
        explicit_settings: the settings the caller set (the command line's flags), as
            TrainConfig field names, dotted for an agent's hyperparameters
            (``"rl2.hidden_size"``). Default: the settings that differ from TrainConfig's
            defaults.

    Raises:
        ValueError: a given setting outside RESUMABLE_SETTINGS differs from the saved run's.
    """
    run = RunDirectory(config.run_dir())
    run.prepare(resume=True)
    saved = TrainConfig.from_dict(run.read_config()["train"])
    requested, saved_values = config.to_dict(), saved.to_dict()
    if explicit_settings is None:
        explicit_settings = _changed_settings(requested, TrainConfig().to_dict())
    for name in sorted(set(explicit_settings) - set(_RUN_SELECTORS)):
        if name in RESUMABLE_SETTINGS:
            setattr(saved, name, getattr(config, name))
            continue
        section, _, key = name.partition(".")
        new, old = requested[section], saved_values[section]
        if key:
            new, old = new[key], old[key]
        if new != old:
            flag = "--" + name.replace("_", "-")
            allowed = ", ".join("--" + setting.replace("_", "-") for setting in RESUMABLE_SETTINGS)
            raise ValueError(
                f"--resume continues run {run.name} with its saved settings, and {flag} cannot "
                f"change there (saved: {old!r}, given: {new!r}). Drop {flag} to resume, or "
                f"start a new run under another --run-name. A resumed run may change {allowed}."
            )
    saved.runs_dir, saved.run_name, saved.resume = config.runs_dir, config.run_name, True
    return saved


def _changed_settings(values: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """Return the settings in ``values`` that differ from ``defaults``, dotted within an agent's."""
    changed = []
    for name, value in values.items():
        if isinstance(value, dict):
            changed += [f"{name}.{key}" for key in value if value[key] != defaults[name][key]]
        elif value != defaults[name]:
            changed.append(name)
    return changed


def train(config: TrainConfig, explicit_settings: Collection[str] | None = None) -> TrainResult:
    """Train, checkpoint and meta-test one agent as ``config`` specifies.

    Every value is checked before anything is written. A run interrupted by Ctrl-C or
    SIGTERM writes a checkpoint at the end of the current update. ``--resume`` continues it;
    for rl2, memory and maml-ppo with identical results to an uninterrupted run on CPU (the
    stable-baselines3 baselines do not save their rollout state).

    ``explicit_settings`` names the settings the caller set, for a resumed run (see
    :func:`resume_config`).
    """
    if config.resume:
        config = resume_config(config, explicit_settings)
    distribution = config.validate(explicit_settings or ())
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    agent = make_agent(config.agent, distribution, config.agent_config(), config.device,
                       config.seed)
    run = RunDirectory(config.run_dir())
    run.prepare(resume=config.resume)
    resolved = {
        "train": config.to_dict(),
        "distribution": distribution.config(),
        "device": str(agent.device),
        "versions": software_versions(),
    }
    if config.resume:
        # RESUMABLE_SETTINGS may differ from the first invocation's. config.json records the
        # latest, and keeps the versions the run started with beside this one's.
        first = run.read_config()
        resolved["versions_at_start"] = first.get("versions_at_start", first["versions"])
    run.write_config(resolved)

    wandb = None
    if config.track:
        wandb = WandbSettings(project=config.wandb_project, entity=config.wandb_entity,
                              group=config.wandb_group, tags=tuple(config.wandb_tags))
    try:
        return _train_and_evaluate(config, distribution, agent, run, resolved, wandb)
    finally:
        # Agents on MuJoCo hold vector-env worker processes; closing them here, also after
        # Ctrl-C or an error, keeps the workers from outliving the trainer. An agent used
        # again reopens its environments.
        agent.close()


def _train_and_evaluate(config, distribution, agent, run, resolved, wandb) -> TrainResult:
    with Tracker(run.path, run.name, resolved, wandb=wandb, resume=config.resume) as tracker:
        if config.resume:
            agent.load_training_state(run.load_checkpoint(agent.device))
            tracker.truncate_after(agent.num_timesteps)
            logger.info("resumed %s at %d env steps", run.name, agent.num_timesteps)
        stop_signal = _learn(agent, config, run, tracker)
        if stop_signal is not None:
            return TrainResult(run, agent, None, True, stop_signal)

        agent.save(run.model_path)
        tracker.log_model(run.model_path, name=f"{run.name}-model")
        evaluation = evaluate(agent, config.agent, distribution, config.eval_tasks,
                              config.eval_seed, config.eval_deterministic, per_task=True)
        run.write_evaluation(evaluation)
        tracker.log_evaluation(evaluation)
        tracker.log(_evaluation_metrics(evaluation), step=agent.num_timesteps)
    return TrainResult(run, agent, evaluation, False)


def python_command() -> str:
    """Return the running interpreter as a user would type it, relative when it is below cwd."""
    relative = os.path.relpath(sys.executable)
    return sys.executable if relative.startswith("..") else relative


def _learn(agent, config: TrainConfig, run: RunDirectory, tracker: Tracker) -> int | None:
    """Run ``agent.learn`` with logging, checkpoints and a progress bar.

    Returns:
        The number of the signal that interrupted training, or None when it finished.
    """
    from tqdm.auto import tqdm

    # The bar shows the mean of a metric over recent updates: the trial return for agents
    # that adapt within a trial, the post-adaptation return for MAML. An agent whose updates
    # each cover many episodes averages over fewer of them, so that the figure keeps up.
    recent_returns: deque[float] = deque(maxlen=getattr(agent, "progress_window", 20))
    progress_metric = getattr(agent, "progress_metric", "rollout/mean_trial_return")
    progress_label = progress_metric.rsplit("/", 1)[-1].removeprefix("mean_")
    next_checkpoint = (agent.num_timesteps // config.checkpoint_interval + 1) * config.checkpoint_interval
    start = time.perf_counter()
    start_steps = agent.num_timesteps
    bar = tqdm(total=config.total_timesteps, initial=agent.num_timesteps, unit="step",
               unit_scale=True, disable=not config.progress, dynamic_ncols=True)

    def callback(agent, metrics: dict[str, float]) -> bool:
        nonlocal next_checkpoint
        steps = agent.num_timesteps
        metrics["time/elapsed_seconds"] = time.perf_counter() - start
        metrics["time/mean_steps_per_second"] = (steps - start_steps) / metrics["time/elapsed_seconds"]
        tracker.log(metrics, step=steps)
        recent = metrics.get(progress_metric, math.nan)
        if math.isfinite(recent):
            recent_returns.append(recent)
        bar.total = max(bar.total, steps)  # the last rollout may overshoot the budget
        bar.update(steps - bar.n)
        if recent_returns:
            bar.set_postfix({progress_label: f"{sum(recent_returns) / len(recent_returns):.3f}"})
        if steps >= next_checkpoint or stop.requested or steps >= config.total_timesteps:
            run.save_checkpoint(agent.training_state())
            next_checkpoint = (steps // config.checkpoint_interval + 1) * config.checkpoint_interval
        return not stop.requested

    with StopRequest() as stop:
        try:
            agent.learn(config.total_timesteps, callback=callback)
        finally:
            bar.close()
    return stop.signal_number


def _evaluation_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    metrics = {
        "eval/mean_return": evaluation["mean_return"]["mean"],
        "eval/mean_return_ci_low": evaluation["mean_return"]["ci_low"],
        "eval/mean_return_ci_high": evaluation["mean_return"]["ci_high"],
    }
    for index, point in enumerate(evaluation["adaptation_curve"]):
        metrics[f"eval/episode_return/{index}"] = point["mean"]
    for index, point in enumerate(evaluation.get("episode_length_curve", [])):
        metrics[f"eval/episode_length/{index}"] = point["mean"]
    for name, reference in evaluation["references"].items():
        metrics[f"eval/reference/{name}"] = reference["mean_return"]["mean"]
    return metrics
