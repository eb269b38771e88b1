"""Pool meta-tests of one run over several evaluation seeds.

The evaluation seed draws the sampled actions (and the env noise), so on the same held-out
tasks two seeds give different episodes. On mazes the step ratio of episode 2 to episode 1
moves by a point or two between seeds. Pooling averages each task's returns and steps over
the seeds before the statistics over tasks: the interval stays one over tasks, the unit that
the meta-test samples, and the per-task means carry less action noise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.evaluation import describe_returns, format_step_ratio, step_ratio

# The evaluation files that pooling reads from a run folder: the run's own meta-test and
# those of `scripts/evaluate.py RUN --eval-seed K`.
SEED_FILE_PATTERN = "evaluation-seed*.json"
POOLED_FILE = "evaluation-pooled.json"


def seed_evaluation_files(folder: Path) -> list[Path]:
    """Return a run folder's ``evaluation.json`` and ``evaluation-seed*.json``, in that order.

    Raises:
        FileNotFoundError: when the folder contains no ``evaluation.json``.
    """
    folder = Path(folder)
    own = folder / "evaluation.json"
    if not own.is_file():
        raise FileNotFoundError(
            f"{own} does not exist; train the run to the end or run scripts/evaluate.py {folder}"
        )
    return [own, *sorted(folder.glob(SEED_FILE_PATTERN))]


def load_evaluation(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Return an evaluation's JSON and the per-task arrays of the ``.npz`` beside it."""
    path = Path(path)
    arrays_path = path.with_suffix(".npz")
    if not arrays_path.is_file():
        raise FileNotFoundError(
            f"{arrays_path} does not exist: pooling needs the per-task arrays that "
            f"scripts/evaluate.py writes beside each evaluation JSON. Evaluate again with the "
            f"settings recorded in {path.name}, or move {path.name} out of the run folder."
        )
    with arrays_path.open("rb") as file, np.load(file) as arrays:
        return json.loads(path.read_text()), {key: arrays[key] for key in arrays.files}


def pool_evaluations(paths: Sequence[Path]) -> dict[str, Any]:
    """Pool evaluations of one agent on the same tasks with different evaluation seeds.

    Args:
        paths: evaluation JSON files, each with its ``.npz``; at least two.

    Returns:
        A dict like ``evaluation.json`` (``agent``, ``env``, ``num_tasks``, ``mean_return``,
        ``adaptation_curve``, ``episode_length_curve`` and ``step_ratio`` where episodes
        vary in length), with ``seeds`` and, per seed, ``per_seed`` trial returns and step
        ratios. Every statistic is over tasks, of each task's mean over the seeds.

    Raises:
        ValueError: when the files differ in agent, distribution, tasks or action choice,
            repeat a seed, or come from MAML-PPO, whose curves are indexed by adaptation step.
    """
    if len(paths) < 2:
        raise ValueError(
            f"pooling needs at least two evaluations, got {len(paths)}; add some with "
            "scripts/evaluate.py RUN --eval-seed K"
        )
    loaded = [load_evaluation(path) for path in paths]
    first = loaded[0][0]
    unit = first.get("adaptation_unit", "inner episode")
    if unit != "inner episode":
        # describe_returns sums a trial's episodes, which is wrong for a curve over steps.
        raise ValueError(
            f"{paths[0]} indexes its curve by {unit}; pooling supports agents that adapt over "
            "the inner episodes of a trial (rl2, memory, ppo, recurrent-ppo)"
        )
    for path, (evaluation, _) in zip(paths, loaded):
        for key in ("agent", "env", "num_tasks", "deterministic", "num_timesteps"):
            if evaluation.get(key) != first.get(key):
                raise ValueError(
                    f"{path} has {key}={evaluation.get(key)!r} but {paths[0]} has "
                    f"{first.get(key)!r}; pool only evaluations of one model on the same tasks"
                )
    seeds = [evaluation["seed"] for evaluation, _ in loaded]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the evaluations repeat a seed ({seeds}); pool each seed once")

    # (seeds, tasks, episodes) -> the mean over seeds, (tasks, episodes).
    returns = np.stack([arrays["returns"] for _, arrays in loaded])
    lengths = None
    if "lengths" in loaded[0][1]:
        lengths = np.stack([arrays["lengths"] for _, arrays in loaded])

    pooled: dict[str, Any] = {
        key: first[key] for key in ("agent", "env", "split", "num_tasks", "adaptation_unit",
                                    "deterministic", "num_timesteps", "episodes_per_trial")
        if key in first
    }
    pooled["seeds"] = seeds
    pooled.update(describe_returns(returns.mean(axis=0),
                                   None if lengths is None else lengths.mean(axis=0)))
    per_seed: dict[str, Any] = {
        "mean_return": [float(seed_returns.sum(axis=1).mean()) for seed_returns in returns]
    }
    if lengths is not None and lengths.shape[2] >= 2:
        pooled["step_ratio"] = step_ratio(lengths.mean(axis=0))
        per_seed["step_ratio"] = [float(steps[:, 1].mean() / steps[:, 0].mean())
                                  for steps in lengths]
    pooled["per_seed"] = per_seed
    return pooled


def format_pooled(pooled: dict[str, Any]) -> str:
    """Render a pooled evaluation: per-seed figures, then the pooled ones with intervals."""
    seeds = pooled["seeds"]
    stats = pooled["mean_return"]
    action_choice = ", most likely action" if pooled.get("deterministic") else ""
    lines = [
        f"{pooled['agent']} on {pooled['num_tasks']} held-out tasks of {pooled['env']}, pooled "
        f"over evaluation seeds {', '.join(map(str, seeds))}{action_choice}",
        f"{'seed':<8}{'mean trial return':>19}" + (f"{'ep 2 / ep 1':>13}"
                                                   if "step_ratio" in pooled else ""),
    ]
    lines.append("-" * len(lines[-1]))

    per_seed = pooled["per_seed"]
    for index, seed in enumerate(seeds):
        line = f"{seed:<8}{per_seed['mean_return'][index]:>19.3f}"
        if "step_ratio" in per_seed:
            line += f"{per_seed['step_ratio'][index]:>13.1%}"
        lines.append(line)

    line = f"{'pooled':<8}{stats['mean']:>19.3f}"
    if "step_ratio" in pooled:
        line += f"{pooled['step_ratio']['ratio']:>13.1%}"
    lines.append(line)
    lines.append(f"Pooled mean trial return: {stats['mean']:.3f}, 95% CI "
                 f"[{stats['ci_low']:.3f}, {stats['ci_high']:.3f}] over {pooled['num_tasks']} tasks")

    if "episode_length_curve" in pooled:
        steps = ", ".join(f"{point['mean']:.2f}" for point in pooled["episode_length_curve"][:4])
        lines.append(f"Mean steps per inner episode, pooled: {steps}"
                     + (", ..." if len(pooled["episode_length_curve"]) > 4 else ""))
    if "step_ratio" in pooled:
        lines.append(format_step_ratio(pooled["agent"], pooled["step_ratio"]))
    return "\n".join(lines)
