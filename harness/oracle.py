"""Train and record an oracle reference: PPO that observes the task, evaluated on meta-test tasks.

The oracle is stable-baselines3's PPO with an MLP policy, trained on
:class:`envs.task_sampling.TaskSamplingEnv` with ``task_visible=True``. Every training episode
is on a meta-train task drawn uniformly, and the task's parameters are appended to each
observation, so one memoryless policy learns to act on every task without having to infer it.
Its deterministic policy (the Gaussian's mean action) then runs one episode on each of the
first N meta-test tasks. The mean episode return, with a 95% confidence interval, goes to a
JSON record together with how it was obtained: settings, versions, command, date and wall
time. ``agents.references.locomotion`` reports these records as the ``oracle``
reference of the locomotion families.

Files, for ``--out DIR/NAME.json`` (default ``runs/oracle/<env>-h<horizon>.json``):

- ``NAME.json``: the record;
- ``NAME.zip``: the trained SB3 model (``stable_baselines3.PPO.load``);
- ``NAME.vecnormalize.pkl``: the observation and reward normalization statistics of SB3's
  ``VecNormalize``, without which the model cannot act (absent with ``--no-normalize``);
- ``NAME.checkpoint.*``: the latest checkpoint while training runs, removed at the end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.device import resolve_device
from agents.references.locomotion import oracle_record_name
from envs.locomotion import LocomotionDistribution, installed_version
from envs.registry import make_distribution
from envs.task_sampling import TaskSamplingEnv
from envs.tasks import TaskDistribution
from envs.vector import usable_cpu_count
from harness.config import TrainConfig
from harness.evaluation import summarize
from harness.flags import parse_flags
from harness.run import write_json_atomic
from harness.training import StopRequest, python_command

logger = logging.getLogger(__name__)

RECORD_DESCRIPTION = (
    "stable-baselines3 PPO (MlpPolicy) trained on TaskSamplingEnv(task_visible=True): each "
    "training episode is on a meta-train task drawn uniformly, with the task parameters "
    "appended to every observation. Evaluated with the deterministic (mean) action, one "
    "episode on each of the first num_tasks meta-test tasks, set with reset(options={'task': "
    "task}) and reset seeds from numpy.random.SeedSequence(eval_seed)."
)

# Settings that a resumed run must share with the checkpoint it continues.
_RESUME_KEYS = ("env", "env_kwargs", "seed", "n_envs", "n_steps", "batch_size", "n_epochs",
                "learning_rate", "gamma", "gae_lambda", "clip_range", "ent_coef",
                "hidden_sizes", "normalize")


@dataclass
class OracleConfig:
    """Train PPO with the task visible on a task distribution, then record its meta-test return.

    The PPO defaults are stable-baselines3 2.9's own: 2048 steps per env per rollout,
    minibatches of 64, 10 epochs, learning rate 3e-4, gamma 0.99, GAE lambda 0.95 and clip
    range 0.2. The policy and value networks are separate, each with two hidden layers of 64
    tanh units.
    """

    env: str = "halfcheetah-vel"
    """Task distribution: a registered name such as halfcheetah-vel, halfcheetah-dir, ant-dir,
    ant-dir-2d, ant-goal or navigation-2d, or package.module:factory for your own."""
    env_kwargs: tuple[str, ...] = ()
    """Settings of the task distribution as KEY=VALUE pairs, for example horizon=200."""
    # NOTE: 3M steps is an estimate of what PPO needs on the HalfCheetah task families at
    # horizon 200, where rl-baselines3-zoo trains PPO on one HalfCheetah-v3 task for 1M steps.
    # No full run has checked it yet.
    total_timesteps: int = 3_000_000
    """Training budget in env steps, rounded up to whole rollouts (n_steps * n_envs)."""
    seed: int = 0
    """Seed of PPO's network initialization, action sampling and the training envs."""
    eval_tasks: int | None = None
    """Meta-test tasks to evaluate on, one episode each; default all of the meta-test split."""
    eval_seed: int = 0
    """Seed of the evaluation episodes' reset noise."""
    out: Path | None = None
    """Path of the JSON record. The model and normalization files are written next to it.
    Default runs/oracle/<env>-h<horizon>.json."""
    overwrite: bool = False
    """Replace an existing record and model at --out."""
    resume: bool = False
    """Continue from the checkpoint next to --out that an interrupted run left."""
    checkpoint_interval: int = 100_000
    """Env steps between checkpoints, written after a PPO update; one is also written on Ctrl-C."""
    n_envs: int = 1
    """Training environments stepped together; in worker processes when more than one and at
    most the number of usable cores, in this process otherwise."""
    n_steps: int = 2048
    """Env steps per environment in each rollout."""
    batch_size: int = 64
    """Env steps per minibatch."""
    n_epochs: int = 10
    """PPO passes over each rollout."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO clip range of the probability ratio."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the policy and of the separate value network."""
    normalize: bool = True
    """Normalize observations and rewards with running statistics (SB3's VecNormalize), as
    rl-baselines3-zoo's PPO settings for MuJoCo (Ant-v3, HalfCheetah-v3) do. The recorded
    evaluation returns are the env's own rewards."""
    device: str = "cpu"
    """cpu, cuda or auto. The MLP is small, so the CPU is usually faster."""
    torch_threads: int | None = None
    """CPU threads for torch; default torch's own choice. 1 avoids stalls on a busy machine."""
    progress: bool = True
    """Show progress bars for training and evaluation."""

    def distribution_kwargs(self) -> dict[str, Any]:
        """Parse ``env_kwargs`` as ``scripts/train.py`` does: Python literals or strings."""
        return TrainConfig(env=self.env, env_kwargs=self.env_kwargs).distribution_kwargs()

    def validate(self) -> TaskDistribution:
        """Check every value before training starts; return the task distribution.

        Raises:
            ValueError: naming the invalid value and how to fix it, also for an unknown env,
                and :class:`envs.ContractError` for a custom distribution that breaks the env
                contract (no ``set_task``, an observation space that is not a 1-D Box).
            TypeError: for a built-in distribution without ``task_params``.
        """
        distribution = self._build_distribution()
        # Building one env checks the observation space, set_task and task_params.
        TaskSamplingEnv(distribution, task_visible=True).close()

        positive = ("total_timesteps", "checkpoint_interval", "n_envs", "n_steps", "batch_size",
                    "n_epochs")
        for name in positive:
            _check_integer(name, getattr(self, name), minimum=1)
        for name in ("seed", "eval_seed"):
            _check_integer(name, getattr(self, name), minimum=0)
        if self.batch_size < 2 or self.batch_size > self.n_steps * self.n_envs:
            raise ValueError(
                f"--batch-size must lie in [2, n_steps * n_envs = {self.n_steps * self.n_envs}], "
                f"got {self.batch_size}"
            )
        for name in ("learning_rate", "clip_range"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"--{_flag(name)} must be a positive number, got {value!r}")
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"--{_flag(name)} must lie in [0, 1], got {value!r}")
        if not (math.isfinite(self.ent_coef) and self.ent_coef >= 0):
            raise ValueError(f"--ent-coef must be a non-negative number, got {self.ent_coef!r}")
        if not self.hidden_sizes or any(int(width) < 1 for width in self.hidden_sizes):
            raise ValueError(
                f"--hidden-sizes must list at least one positive width, got {self.hidden_sizes!r}"
            )
        if self.eval_tasks is not None and not 1 <= self.eval_tasks <= distribution.num_test_tasks:
            raise ValueError(
                f"--eval-tasks must lie in [1, {distribution.num_test_tasks}] (the size of the "
                f"meta-test split of {distribution.name}), got {self.eval_tasks}"
            )
        if self.torch_threads is not None:
            _check_integer("torch_threads", self.torch_threads, minimum=1)
        resolve_device(self.device)
        return distribution

    def _build_distribution(self) -> TaskDistribution:
        kwargs = self.distribution_kwargs()
        try:
            return make_distribution(self.env, **kwargs)
        except TypeError as error:
            raise ValueError(
                f"--env-kwargs {' '.join(self.env_kwargs)} does not fit {self.env}: {error}"
            ) from error

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["env_kwargs"] = self.distribution_kwargs()
        data["hidden_sizes"] = [int(width) for width in self.hidden_sizes]
        data["out"] = None if self.out is None else str(self.out)
        return data


def _check_integer(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"--{_flag(name)} must be an integer of at least {minimum}, got {value!r}")


def _flag(name: str) -> str:
    return name.replace("_", "-")


@dataclass(frozen=True)
class OraclePaths:
    """The files of one oracle training, all next to the JSON record."""

    record: Path

    @classmethod
    def for_config(cls, config: OracleConfig, distribution: TaskDistribution) -> OraclePaths:
        if config.out is not None:
            if Path(config.out).suffix != ".json":
                raise ValueError(f"--out must name a .json file, got {config.out}")
            return cls(Path(config.out))
        horizon = getattr(distribution, "horizon", None)
        stem = distribution.name if horizon is None else f"{distribution.name}-h{horizon}"
        return cls(Path("runs") / "oracle" / f"{stem}.json")

    def _sibling(self, suffix: str) -> Path:
        return self.record.with_name(self.record.stem + suffix)

    @property
    def model(self) -> Path:
        return self._sibling(".zip")

    @property
    def normalization(self) -> Path:
        return self._sibling(".vecnormalize.pkl")

    @property
    def checkpoint_model(self) -> Path:
        return self._sibling(".checkpoint.zip")

    @property
    def checkpoint_normalization(self) -> Path:
        return self._sibling(".checkpoint.vecnormalize.pkl")

    @property
    def checkpoint_state(self) -> Path:
        return self._sibling(".checkpoint.json")

    def checkpoint_files(self) -> tuple[Path, ...]:
        return (self.checkpoint_model, self.checkpoint_normalization, self.checkpoint_state)


@dataclass
class OracleResult:
    """The outcome of :func:`train_oracle`.

    Attributes:
        distribution: the task distribution trained on.
        model: the trained SB3 PPO model.
        paths: where the record, model and checkpoint files are.
        record: the JSON record, or None when training was interrupted.
        stop_signal: the signal number that interrupted training, or None.
    """

    distribution: TaskDistribution
    model: Any
    paths: OraclePaths
    record: dict[str, Any] | None
    stop_signal: int | None = None


# --------------------------------------------------------------------------------- training


def make_training_env(distribution: TaskDistribution, config: OracleConfig,
                      normalization: Path | None = None):
    """Build the SB3 vector env of ``config.n_envs`` task-visible meta-train envs.

    Each env is wrapped in SB3's ``Monitor``, which records episode returns for the progress
    bar, and the vector env in ``VecNormalize`` when ``config.normalize`` is set: with the
    statistics saved at ``normalization`` when given, with fresh ones otherwise.
    """
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    def make_env() -> gym.Env:
        return Monitor(TaskSamplingEnv(distribution, split="meta-train", task_visible=True))

    if 1 < config.n_envs <= usable_cpu_count():
        vec_env = SubprocVecEnv([_WorkerEnvFactory(make_env)] * config.n_envs)
    else:
        vec_env = DummyVecEnv([make_env] * config.n_envs)
    if config.normalize and normalization is not None:
        vec_env = VecNormalize.load(str(normalization), vec_env)
    elif config.normalize:
        vec_env = VecNormalize(vec_env, norm_obs=True, norm_reward=True, gamma=config.gamma)
    return vec_env


class _WorkerEnvFactory:
    """Env factory for SubprocVecEnv workers that leaves Ctrl-C to the main process.

    Ctrl-C sends SIGINT to every process of the terminal's process group. An SB3 worker that
    receives it exits, and the main process then fails at its next step instead of writing
    its checkpoint, so the workers ignore SIGINT.
    """

    def __init__(self, make_env):
        self.make_env = make_env

    def __call__(self) -> gym.Env:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return self.make_env()


def make_model(config: OracleConfig, vec_env):
    """Build stable-baselines3's PPO with the settings of ``config`` on ``vec_env``."""
    from stable_baselines3 import PPO

    return PPO(
        "MlpPolicy",
        vec_env,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        policy_kwargs={"net_arch": [int(width) for width in config.hidden_sizes]},
        seed=config.seed,
        device=str(resolve_device(config.device)),
        verbose=0,
    )


def _training_callback(bar, stop, save_checkpoint, checkpoint_interval: int):
    """Return an SB3 callback that updates ``bar``, checkpoints and stops on request.

    Checkpoints are written at the start of a rollout, right after a PPO update, so that they
    hold the updated weights. A stop requested during a rollout waits for that rollout's
    update and the checkpoint after it, then ends ``learn`` at the next env step.
    """
    from stable_baselines3.common.callbacks import BaseCallback

    class OracleCallback(BaseCallback):
        def _on_training_start(self) -> None:
            self.next_checkpoint = (self.num_timesteps // checkpoint_interval + 1) * checkpoint_interval
            self.stopping = False

        def _on_rollout_start(self) -> None:
            stop_requested = stop.requested
            if self.num_timesteps >= self.next_checkpoint or stop_requested:
                save_checkpoint(self.model)
                self.next_checkpoint = (self.num_timesteps // checkpoint_interval + 1) * checkpoint_interval
            self.stopping = stop_requested

        def _on_step(self) -> bool:
            bar.total = max(bar.total, self.num_timesteps)  # the last rollout may overshoot
            bar.update(self.num_timesteps - bar.n)
            return not self.stopping

        def _on_rollout_end(self) -> None:
            # Monitor's returns of the last 100 training episodes, before reward normalization.
            returns = [info["r"] for info in self.model.ep_info_buffer]
            if returns:
                bar.set_postfix({"episode_return": f"{np.mean(returns):.1f}"})

    return OracleCallback()


def _save_checkpoint(model, paths: OraclePaths, config: OracleConfig, train_seconds: float) -> None:
    model.save(paths.checkpoint_model)
    normalizer = model.get_vec_normalize_env()
    if normalizer is not None:
        normalizer.save(str(paths.checkpoint_normalization))
    state = {"config": config.to_dict(), "num_timesteps": int(model.num_timesteps),
             "train_seconds": train_seconds}
    # Written last: a checkpoint counts as complete only when its state file exists.
    write_json_atomic(state, paths.checkpoint_state)
    logger.info("checkpoint at %d env steps: %s", model.num_timesteps, paths.checkpoint_model)


def _check_checkpoint(paths: OraclePaths, config: OracleConfig) -> dict[str, Any]:
    """Return the state of the checkpoint to resume after checking it fits ``config``."""
    if not paths.checkpoint_state.is_file():
        raise FileNotFoundError(
            f"--resume found no checkpoint at {paths.checkpoint_state}; drop --resume to start "
            "a new training, or pass the --out of the interrupted one"
        )
    state = json.loads(paths.checkpoint_state.read_text())
    saved, current = state["config"], config.to_dict()
    changed = [key for key in _RESUME_KEYS if saved.get(key) != current.get(key)]
    if changed:
        details = ", ".join(f"--{_flag(key)} {saved.get(key)!r} (now {current.get(key)!r})"
                            for key in changed)
        raise ValueError(
            f"the checkpoint at {paths.checkpoint_state} was trained with {details}; pass the "
            "same settings to resume it"
        )
    return state


def _load_checkpoint(paths: OraclePaths, config: OracleConfig, vec_env):
    """Load the model of an interrupted run onto ``vec_env``; return (model, training seconds).

    ``vec_env`` must already carry the checkpoint's normalization statistics.
    """
    from stable_baselines3 import PPO

    state = _check_checkpoint(paths, config)
    model = PPO.load(paths.checkpoint_model, env=vec_env, device=str(resolve_device(config.device)))
    # NOTE: a resumed run is not bit-identical to an uninterrupted one: the training envs
    # restart their episodes, and the random streams are reseeded from the step count.
    model.set_random_seed(int(np.random.SeedSequence([config.seed, model.num_timesteps])
                              .generate_state(1)[0]))
    return model, float(state["train_seconds"])


def _learn(
    model, config: OracleConfig, paths: OraclePaths, seconds_before: float
) -> tuple[int | None, float]:
    """Run ``model.learn`` up to ``config.total_timesteps`` with a progress bar and checkpoints.

    Returns:
        The signal number that interrupted training (None when it finished), and the training
        seconds so far, earlier runs of a resumed training included.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()

    def save_checkpoint(model) -> None:
        _save_checkpoint(model, paths, config, seconds_before + time.perf_counter() - start)

    remaining = config.total_timesteps - model.num_timesteps
    bar = tqdm(total=config.total_timesteps, initial=model.num_timesteps, unit="step",
               unit_scale=True, desc="train", disable=not config.progress, dynamic_ncols=True)
    with StopRequest() as stop:
        try:
            if remaining > 0:
                callback = _training_callback(bar, stop, save_checkpoint, config.checkpoint_interval)
                model.learn(remaining, callback=callback, reset_num_timesteps=model.num_timesteps == 0)
                if stop.requested and not callback.stopping:
                    # The stop came during the last rollout, so learn finished the budget
                    # without another rollout start, where the callback would have saved.
                    save_checkpoint(model)
        finally:
            bar.close()
    return stop.signal_number, seconds_before + time.perf_counter() - start


# ------------------------------------------------------------------------------- evaluation


def evaluate_oracle(
    model,
    distribution: TaskDistribution,
    num_tasks: int | None,
    seed: int,
    normalizer=None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Run the deterministic policy for one episode on each of the first ``num_tasks`` meta-test tasks.

    Args:
        model: a trained SB3 model that observes ``TaskSamplingEnv(task_visible=True)``.
        num_tasks: meta-test tasks, in split order; None for all of them.
        seed: the episodes' reset seeds are ``SeedSequence(seed).generate_state(num_tasks)``.
        normalizer: the ``VecNormalize`` whose observation statistics the model was trained
            with, or None.

    Returns:
        ``returns`` and ``lengths`` (steps) of the episodes, shape ``(num_tasks,)``, and
        ``task_params``, shape ``(num_tasks, k)``.
    """
    from tqdm.auto import tqdm

    tasks = distribution.meta_split().test[:num_tasks]
    env = TaskSamplingEnv(distribution, split="meta-test", task_visible=True)
    seeds = np.random.SeedSequence(seed).generate_state(len(tasks))
    returns = np.zeros(len(tasks))
    lengths = np.zeros(len(tasks), dtype=np.int64)
    try:
        for i in tqdm(range(len(tasks)), desc="evaluate", unit="task", disable=not progress,
                      dynamic_ncols=True):
            obs, _ = env.reset(seed=int(seeds[i]), options={"task": tasks[i]})
            done = False
            while not done:
                if normalizer is not None:
                    obs = normalizer.normalize_obs(obs)
                # SB3 clips the action to the action space before returning it.
                action, _ = model.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = env.step(action)
                returns[i] += float(reward)
                lengths[i] += 1
                done = terminated or truncated
    finally:
        env.close()
    task_params = np.asarray(distribution.task_params(tasks), dtype=np.float64)
    return {"returns": returns, "lengths": lengths, "task_params": task_params}


def oracle_record(
    config: OracleConfig,
    distribution: TaskDistribution,
    evaluation: dict[str, np.ndarray],
    num_timesteps: int,
    train_seconds: float,
    eval_seconds: float,
    paths: OraclePaths,
    command: str,
) -> dict[str, Any]:
    """Assemble the JSON record of one oracle training and its meta-test evaluation."""
    from harness.benchmark import machine_facts

    device = str(resolve_device(config.device))
    facts = machine_facts(device)
    date = facts.pop("date")
    versions = facts.pop("versions")
    versions["mujoco"] = installed_version("mujoco") or "not installed"
    settings = config.to_dict()
    hyperparameters = {key: settings[key] for key in
                       ("n_steps", "batch_size", "n_epochs", "learning_rate", "gamma",
                        "gae_lambda", "clip_range", "ent_coef", "hidden_sizes")}
    return {
        "reference": "oracle",
        "description": RECORD_DESCRIPTION,
        "env": distribution.name,
        "env_kwargs": settings["env_kwargs"],
        "horizon": getattr(distribution, "horizon", None),
        "split": "meta-test",
        "split_seed": distribution.split_seed,
        "num_tasks": int(evaluation["returns"].size),
        "eval_seed": config.eval_seed,
        "deterministic": True,
        "mean_return": summarize(evaluation["returns"]),
        "episode_returns": evaluation["returns"].tolist(),
        "episode_lengths": evaluation["lengths"].tolist(),
        "task_params": evaluation["task_params"].tolist(),
        "distribution": distribution.config(),
        "training": {
            "algorithm": "PPO",
            "policy": "MlpPolicy",
            "total_timesteps": config.total_timesteps,
            "num_timesteps": int(num_timesteps),
            "seed": config.seed,
            "n_envs": config.n_envs,
            "normalize": config.normalize,
            "hyperparameters": hyperparameters,
            "device": device,
        },
        "wall_time_s": {"training": round(train_seconds, 1), "evaluation": round(eval_seconds, 1)},
        "training_steps_per_second": round(num_timesteps / train_seconds, 1) if train_seconds > 0 else None,
        "model_file": paths.model.name,
        "normalization_file": paths.normalization.name if config.normalize else None,
        "versions": versions,
        "machine": facts,
        "command": command,
        "date": date,
    }


# ---------------------------------------------------------------------------------- the run


def train_oracle(config: OracleConfig, command: str = "") -> OracleResult:
    """Train the oracle as ``config`` specifies, evaluate it and write the record and model.

    Every value is checked before training starts. Ctrl-C or SIGTERM writes a checkpoint after
    the current rollout's update and returns with ``stop_signal`` set; ``--resume`` continues
    from it.

    Raises:
        ValueError, TypeError: for invalid settings (see :meth:`OracleConfig.validate`).
        FileExistsError: when the record exists and neither ``overwrite`` nor ``resume`` is set.
        FileNotFoundError: for ``resume`` without a checkpoint.
    """
    distribution = config.validate()
    paths = OraclePaths.for_config(config, distribution)
    if paths.record.exists() and not (config.overwrite or config.resume):
        raise FileExistsError(
            f"{paths.record} exists; pass --overwrite to replace it or another --out"
        )
    if paths.checkpoint_state.exists() and not (config.overwrite or config.resume):
        raise FileExistsError(
            f"{paths.checkpoint_state} is the checkpoint of an interrupted training; pass "
            "--resume to continue it, --overwrite to start over, or another --out"
        )
    if config.resume:
        _check_checkpoint(paths, config)  # before starting any env worker
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    paths.record.parent.mkdir(parents=True, exist_ok=True)

    normalization = paths.checkpoint_normalization if config.resume else None
    vec_env = make_training_env(distribution, config, normalization)
    try:
        if config.resume:
            model, seconds_before = _load_checkpoint(paths, config, vec_env)
            logger.info("resumed %s at %d env steps", paths.checkpoint_model, model.num_timesteps)
        else:
            model, seconds_before = make_model(config, vec_env), 0.0
        logger.info("training PPO on %s with the task visible for %d env steps on %s",
                    distribution.name, config.total_timesteps, model.device)
        stop_signal, train_seconds = _learn(model, config, paths, seconds_before)
        if stop_signal is not None:
            return OracleResult(distribution, model, paths, None, stop_signal)

        model.save(paths.model)
        normalizer = model.get_vec_normalize_env()
        if normalizer is not None:
            normalizer.save(str(paths.normalization))
        start = time.perf_counter()
        evaluation = evaluate_oracle(model, distribution, config.eval_tasks, config.eval_seed,
                                     normalizer, config.progress)
        eval_seconds = time.perf_counter() - start
    finally:
        vec_env.close()

    record = oracle_record(config, distribution, evaluation, model.num_timesteps, train_seconds,
                           eval_seconds, paths, command)
    write_json_atomic(record, paths.record)
    for path in paths.checkpoint_files():
        path.unlink(missing_ok=True)
    return OracleResult(distribution, model, paths, record)


def oracle_main(argv: list[str] | None = None) -> int:
    """Parse the flags of ``scripts/train_oracle.py``, train, evaluate and print the result."""
    config = parse_flags(OracleConfig, argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    arguments = sys.argv[1:] if argv is None else list(argv)
    command = _command_line(arguments)
    try:
        result = train_oracle(config, command)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError,
            gym.error.DependencyNotInstalled) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if result.stop_signal is not None:
        resume = [*arguments, "--resume"] if "--resume" not in arguments else arguments
        print(f"Interrupted; checkpoint saved at {result.paths.checkpoint_model}. Continue with: "
              f"{_command_line(resume)}")
        # The shell's convention for a process stopped by a signal: 128 + the signal number.
        return 128 + result.stop_signal
    record = result.record
    stats = record["mean_return"]
    print(f"\nOracle on {record['env']} (horizon {record['horizon']}): mean episode return "
          f"{stats['mean']:.2f}, 95% CI [{stats['ci_low']:.2f}, {stats['ci_high']:.2f}], over "
          f"{record['num_tasks']} meta-test tasks after {record['training']['num_timesteps']} "
          f"env steps ({record['wall_time_s']['training']:.0f} s of training)")
    print(f"Wrote {result.paths.record} and {result.paths.model}.")
    if isinstance(result.distribution, LocomotionDistribution):
        name = oracle_record_name(record["env"], record["horizon"])
        print(f"To report it as the oracle reference, copy the record to "
              f"agents/references/oracle_returns/{name}")
    return 0


def _command_line(arguments: list[str]) -> str:
    """Return the command that runs this program with ``arguments``, as a shell line.

    A ``.py`` script is prefixed with the interpreter, since scripts/ files are not executable;
    a console script such as ``adaptrl-train-oracle`` runs by itself.
    """
    program = [sys.argv[0]]
    if sys.argv[0].endswith(".py"):
        program.insert(0, python_command())
    return shlex.join([*program, *arguments])
