"""Command-line entry points behind ``scripts/train.py``, ``scripts/evaluate.py`` and
``scripts/pool_evaluations.py``."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from harness.config import TrainConfig
from harness.flags import parse_flags


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def train_main(argv: list[str] | None = None) -> int:
    """Parse the training flags, train, and print the meta-test table."""
    from harness.evaluation import format_table
    from harness.run import RunDirectory
    from harness.training import train

    argv = sys.argv[1:] if argv is None else argv
    config = parse_flags(TrainConfig, argv)
    _configure_logging()
    try:
        result = train(config, explicit_settings=given_settings(argv, config))
    except (ValueError, TypeError, NotImplementedError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # A second Ctrl-C or SIGTERM stops in the middle of an update, without a checkpoint.
        run = RunDirectory(config.run_dir())
        if run.has_checkpoint():
            print(f"Stopped at once; the last checkpoint is kept. Continue with: "
                  f"{_resume_command(run)}", file=sys.stderr)
        else:
            print(f"Stopped at once, before the first checkpoint. Delete {run.path} to start "
                  "the run again.", file=sys.stderr)
        return 128 + signal.SIGINT
    if result.interrupted:
        run = result.run
        print(f"Interrupted at {result.agent.num_timesteps} env steps; checkpoint saved. Continue "
              f"with: {_resume_command(run)}")
        # The shell's convention for a process stopped by a signal: 130 for SIGINT, 143 for SIGTERM.
        return 128 + (result.stop_signal or signal.SIGINT)
    print()
    print(format_table(result.evaluation))
    print(f"\nRun folder: {result.run.path} (config.json, metrics.jsonl, checkpoints/, "
          "model.pt, evaluation.json, evaluation.npz)")
    return 0


def _resume_command(run, program: str | None = None) -> str:
    """Return the command line that resumes ``run`` (a RunDirectory) from its checkpoint.

    ``program`` is how training was started, ``sys.argv[0]`` by default: a script path, which
    is rerun with the same interpreter, or an installed command such as ``adaptrl-train``.
    """
    from harness.training import python_command

    program = sys.argv[0] if program is None else program
    if program.endswith(".py"):
        relative = os.path.relpath(program)
        start = f"{python_command()} {relative if not relative.startswith('..') else program}"
    else:
        name = os.path.basename(program)
        start = name if shutil.which(name) else program
    return f"{start} --resume --run-name {run.name} --runs-dir {run.path.parent}"


def given_settings(argv: list[str], config: TrainConfig) -> list[str]:
    """Return the TrainConfig settings that ``argv``'s flags set, dotted within an agent's.

    ``--rl2.hidden-size 16`` sets ``rl2.hidden_size``, and ``--no-progress`` (tyro's form of a
    false boolean) sets ``progress``.
    """
    values = config.to_dict()
    settings = []
    for token in argv:
        if not token.startswith("--"):
            continue
        name = token[2:].split("=", 1)[0].replace("-", "_")
        prefix, dot, last = name.rpartition(".")
        for candidate in (name, prefix + dot + last.removeprefix("no_")):
            section, _, key = candidate.partition(".")
            if section in values and (not key or key in values[section]):
                settings.append(candidate)
                break
    return settings


@dataclass
class EvaluateConfig:
    """Meta-test a saved run or model file on held-out tasks and write the evaluation JSON.

    With the settings of the run's own meta-test it rewrites evaluation.json, the same
    figures again. Other settings go to a file whose name lists them."""

    path: tyro.conf.Positional[Path]
    """A run folder (runs/<run-name>), or a model.pt or checkpoint file."""
    eval_tasks: int | None = None
    """Held-out tasks to meta-test on. Default: as many as the run's own meta-test (recorded in
    its config.json), or all of the meta-test split for a model file."""
    eval_seed: int = 0
    """Seed of the evaluation's env noise and action sampling."""
    deterministic: bool = False
    """Act with the most likely action instead of sampling."""
    device: str = "auto"
    """auto, cpu or cuda."""
    torch_threads: int | None = None
    """CPU threads for torch; 1 avoids stalls on a machine shared with other busy processes."""
    output: Path | None = None
    """Output path of the JSON. Default: evaluation.json in the run folder (or beside the file)
    when the settings match those of the run's own meta-test. Otherwise the name lists what
    differs, for example evaluation-deterministic.json or evaluation-seed1-tasks40.json, so
    the run's record is not overwritten."""


def evaluate_main(argv: list[str] | None = None) -> int:
    """Evaluate a run folder or model file and print the table."""
    from agents.registry import load_agent
    from harness.evaluation import evaluate, format_table
    from harness.run import CONFIG_FILE, MODEL_FILE, RunDirectory

    config = parse_flags(EvaluateConfig, argv)
    _configure_logging()
    path = config.path
    try:
        if config.torch_threads is not None:
            if config.torch_threads < 1:
                raise ValueError(f"--torch-threads must be a positive integer, got {config.torch_threads}")
            torch.set_num_threads(config.torch_threads)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; pass a run folder or a model file")
        recorded = {}
        if path.is_dir():
            run = RunDirectory(path)
            model = run.model_path if run.model_path.is_file() else run.checkpoint_path
            if (run.path / CONFIG_FILE).is_file():
                recorded = run.read_config()["train"]
            folder = path
        else:
            model = path
            folder = path.parent
        if not model.is_file():
            raise FileNotFoundError(
                f"no {MODEL_FILE} or checkpoint found under {path}; pass a run folder or a file"
            )
        agent_name, agent = load_agent(model, device=config.device)
        distribution = agent.distribution
        if config.eval_tasks is not None and not 1 <= config.eval_tasks <= distribution.num_test_tasks:
            raise ValueError(
                f"--eval-tasks must lie in [1, {distribution.num_test_tasks}], got {config.eval_tasks}"
            )
        eval_tasks = config.eval_tasks if config.eval_tasks is not None else recorded.get("eval_tasks")
        try:
            evaluation = evaluate(agent, agent_name, distribution, eval_tasks,
                                  config.eval_seed, config.deterministic, per_task=True)
        finally:
            agent.close()
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    output = config.output or folder / _default_evaluation_name(
        config, eval_tasks, recorded, distribution.num_test_tasks
    )
    RunDirectory(output.parent).write_evaluation(evaluation, output)
    print(format_table(evaluation))
    print(f"\nWrote {output} and the per-task returns in {output.with_suffix('.npz')}")
    return 0


@dataclass
class PoolConfig:
    """Pool a run's meta-tests over evaluation seeds and write evaluation-pooled.json.

    Reads the run's evaluation.json and every evaluation-seed*.json that
    `scripts/evaluate.py RUN --eval-seed K` wrote, with the .npz files beside them. Each
    task's returns and steps are averaged over the seeds before the statistics over tasks."""

    path: tyro.conf.Positional[Path]
    """A run folder (runs/<run-name>)."""
    output: Path | None = None
    """Output path of the JSON. Default: evaluation-pooled.json in the run folder."""


def pool_main(argv: list[str] | None = None) -> int:
    """Pool a run folder's evaluations over seeds, print the table and write the JSON."""
    from harness.pooling import POOLED_FILE, format_pooled, pool_evaluations, seed_evaluation_files
    from harness.run import write_json_atomic

    config = parse_flags(PoolConfig, argv)
    try:
        if not config.path.is_dir():
            raise FileNotFoundError(f"{config.path} is not a folder; pass a run folder, runs/<run-name>")
        paths = seed_evaluation_files(config.path)
        pooled = pool_evaluations(paths)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    output = config.output or config.path / POOLED_FILE
    write_json_atomic(pooled, output)
    print(format_pooled(pooled))
    print(f"\nWrote {output} from {', '.join(path.name for path in paths)}")
    return 0


def _default_evaluation_name(
    config: EvaluateConfig, eval_tasks: int | None, recorded: dict, num_test_tasks: int
) -> str:
    """Return the default file name: evaluation.json, or a name that lists the changed settings.

    ``eval_tasks`` is the number of tasks evaluated, None for all. ``recorded`` contains the
    run's training settings (``eval_tasks``, ``eval_seed``, ``eval_deterministic``). It is
    empty when a file was passed, and then the comparison is with this script's defaults.
    """
    changes = []
    if config.deterministic != recorded.get("eval_deterministic", False):
        changes.append("deterministic" if config.deterministic else "sampled")
    if config.eval_seed != recorded.get("eval_seed", 0):
        changes.append(f"seed{config.eval_seed}")
    tasks = eval_tasks or num_test_tasks
    if tasks != (recorded.get("eval_tasks") or num_test_tasks):
        changes.append(f"tasks{tasks}")
    return "-".join(["evaluation", *changes]) + ".json"
