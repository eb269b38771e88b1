"""Meta-test evaluation on held-out tasks, with the reference policies on the same tasks."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from envs.tasks import Task, TaskDistribution

logger = logging.getLogger(__name__)

# Two-sided 95% quantile of the standard normal distribution.
Z_95 = 1.959963984540054


def summarize(values: np.ndarray) -> dict[str, float]:
    """Return the mean of ``values`` with a 95% normal-approximation confidence interval.

    With thousands of held-out tasks the sample mean is close to normal, so the interval is
    mean ± 1.96 · std / sqrt(n), with the sample standard deviation (ddof = 1).
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if n > 1 else 0.0
    half_width = Z_95 * std / math.sqrt(n) if n > 1 else float("nan")
    return {"mean": mean, "ci_low": mean - half_width, "ci_high": mean + half_width, "std": std,
            "n": n}


def step_ratio(lengths: np.ndarray, num_resamples: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Return the mean steps of inner episode 2 over those of episode 1, with a 95% interval.

    It measures how much shorter the second episode in the same maze is, as in the
    navigation experiment of RL² (Duan et al., 2016). The interval is a percentile bootstrap that resamples
    tasks, keeping each task's two episodes together, because they are correlated: a maze
    with a long first episode tends to have a long second one.

    Args:
        lengths: steps per inner episode, ``(num_tasks, episodes_per_trial)`` with at least
            two episodes.
        num_resamples: bootstrap replicates.
        seed: seed of the resampling generator; the same arguments give the same interval.

    Returns:
        ``ratio``, ``ci_low``, ``ci_high`` (fractions, not percentages) and ``n``, the tasks.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    if lengths.ndim != 2 or lengths.shape[1] < 2:
        raise ValueError(
            f"step_ratio needs steps of at least two inner episodes per task, shape "
            f"(num_tasks, >= 2), got shape {lengths.shape}"
        )
    first, second = lengths[:, 0], lengths[:, 1]
    n = first.size
    generator = np.random.default_rng(seed)
    replicates = np.empty(num_resamples)
    # Chunks of replicates keep the index array near a million entries.
    chunk = max(1, 1_000_000 // n)
    for start in range(0, num_resamples, chunk):
        count = min(chunk, num_resamples - start)
        rows = generator.integers(n, size=(count, n))
        replicates[start:start + count] = second[rows].mean(axis=1) / first[rows].mean(axis=1)
    low, high = np.percentile(replicates, [2.5, 97.5])
    return {"ratio": float(second.mean() / first.mean()), "ci_low": float(low),
            "ci_high": float(high), "n": n}


def describe_returns(per_episode: np.ndarray, lengths: np.ndarray | None = None) -> dict[str, Any]:
    """Summarize ``(num_tasks, episodes_per_trial)`` inner-episode returns.

    Returns:
        ``mean_return`` (of the trial return, with CI) and ``adaptation_curve``: the mean
        return per inner-episode index, each with its CI. With ``lengths`` (steps per inner
        episode, same shape) also ``episode_length_curve``: the mean steps per index.
    """
    result = {
        "mean_return": summarize(per_episode.sum(axis=1)),
        "adaptation_curve": [summarize(per_episode[:, i]) for i in range(per_episode.shape[1])],
    }
    if lengths is not None:
        result["episode_length_curve"] = [summarize(lengths[:, i]) for i in range(lengths.shape[1])]
    return result


def describe_adaptation(
    curve: np.ndarray, lengths: np.ndarray | None, trained_steps: int
) -> dict[str, Any]:
    """Summarize ``(num_tasks, num_steps + 1)`` returns after 0, 1, ... adaptation steps.

    Returns:
        ``adaptation_curve`` (the mean episode return after each adaptation step, with CI),
        ``mean_return``: its point at ``trained_steps``, the number of steps the agent was
        trained to take, and with ``lengths`` the ``episode_length_curve``.
    """
    result = {
        "mean_return": summarize(curve[:, trained_steps]),
        "adaptation_curve": [summarize(curve[:, i]) for i in range(curve.shape[1])],
    }
    if lengths is not None:
        result["episode_length_curve"] = [summarize(lengths[:, i]) for i in range(lengths.shape[1])]
    return result


def reference_returns(
    distribution: TaskDistribution, tasks: Sequence[Task], seed: int, per_episode: bool = False
) -> dict[str, dict[str, Any]]:
    """Run every reference policy that applies to ``distribution`` on ``tasks``.

    Args:
        per_episode: summarize each task's mean episode return instead of its trial return,
            the scale of an agent whose curve is indexed by adaptation step.

    Returns:
        For each reference name, :func:`describe_returns` of its per-episode returns (and
        steps, for families whose episodes vary in length), plus ``exact_value`` where the
        reference's expected return is known in closed form. With ``per_episode``, only
        ``mean_return``, ``exact_value`` divided by the episodes of a trial, and
        ``episode_length``.
    """
    from agents.references import run_references

    results: dict[str, dict[str, Any]] = {}
    for name, reference in run_references(distribution, tasks, seed).items():
        lengths = reference.lengths if distribution.episode_length_varies else None
        if per_episode:
            results[name] = {"mean_return": summarize(reference.returns.mean(axis=1))}
            if lengths is not None:
                results[name]["episode_length"] = summarize(lengths.mean(axis=1))
        else:
            results[name] = describe_returns(reference.returns, lengths)
        if reference.exact_value is not None:
            scale = reference.returns.shape[1] if per_episode else 1
            results[name]["exact_value"] = reference.exact_value / scale
    return results


def evaluate(
    agent,
    agent_name: str,
    distribution: TaskDistribution,
    num_tasks: int | None = None,
    seed: int = 0,
    deterministic: bool = False,
    references: bool = True,
    per_task: bool = False,
) -> dict[str, Any]:
    """Meta-test ``agent`` on the first ``num_tasks`` held-out tasks; return ``evaluation.json``.

    Every agent and reference evaluated with the same ``seed`` and ``num_tasks`` gets the
    same tasks, drawn from the distribution's fixed meta-test split.

    Args:
        per_task: also return the raw curves under ``"per_task"``: ``returns`` and, for
            families whose episodes vary in length, ``lengths``, arrays of shape
            ``(num_tasks, points)`` in the order of the adaptation curve. They are NumPy
            arrays, not JSON: pop them before writing ``evaluation.json`` (see
            :meth:`harness.run.RunDirectory.write_evaluation`).
    """
    tasks = distribution.meta_split().test
    if num_tasks is not None:
        tasks = tasks[:num_tasks]
    unit = getattr(agent, "adaptation_unit", "inner episode")
    curve, lengths = agent.meta_test(tasks, seed=seed, deterministic=deterministic,
                                     return_lengths=True)
    if not distribution.episode_length_varies:
        lengths = None
    result: dict[str, Any] = {
        "agent": agent_name,
        "env": distribution.name,
        "split": "meta-test",
        "num_tasks": len(tasks),
        "adaptation_unit": unit,
        "seed": seed,
        "deterministic": deterministic,
        "num_timesteps": int(getattr(agent, "num_timesteps", 0)),
    }
    if unit == "adaptation step":
        result["rollouts_per_step"] = agent.config.rollouts_per_task
        result["trained_adaptation_steps"] = agent.config.num_adaptation_steps
        result.update(describe_adaptation(curve, lengths, agent.config.num_adaptation_steps))
    else:
        result["episodes_per_trial"] = distribution.episodes_per_trial
        result.update(describe_returns(curve, lengths))
        if lengths is not None and np.shape(lengths)[1] >= 2:
            result["step_ratio"] = step_ratio(lengths)
    result["references"] = (
        reference_returns(distribution, tasks, seed, per_episode=unit == "adaptation step")
        if references else {}
    )
    if per_task:
        result["per_task"] = {"returns": np.asarray(curve, dtype=np.float64)}
        if lengths is not None:
            result["per_task"]["lengths"] = np.asarray(lengths, dtype=np.float64)
    return result


def format_table(evaluation: dict[str, Any]) -> str:
    """Render an evaluation as a plain-text table of mean returns with 95% CIs."""
    if evaluation.get("adaptation_unit") == "adaptation step":
        return _format_adaptation_steps(evaluation)
    rows = [(evaluation["agent"], evaluation["mean_return"])]
    rows += [(name, ref["mean_return"]) for name, ref in evaluation["references"].items()]
    best = evaluation["references"].get("bayes-optimal", {}).get("exact_value")
    header = f"{'policy':<16}{'mean trial return':>19}{'95% CI':>24}"
    if best:
        header += f"{'of Bayes-optimal':>18}"
    lines = [
        _title(evaluation),
        header,
        "-" * len(header),
    ]
    for name, stats in rows:
        interval = f"[{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]"
        line = f"{name:<16}{stats['mean']:>19.3f}{interval:>24}"
        if best:
            line += f"{stats['mean'] / best:>17.1%}"
        lines.append(line)
    if best:
        lines.append(f"Bayes-optimal expected return, exact by dynamic programming: {best:.3f}")
    if "episode_length_curve" in evaluation:
        lines += ["", *_format_episode_lengths(evaluation)]
    return "\n".join(lines)


def _format_episode_lengths(evaluation: dict[str, Any]) -> list[str]:
    """Render the mean steps of each inner episode, and the second episode's share of the first."""
    rows = [(evaluation["agent"], evaluation["episode_length_curve"])]
    rows += [(name, ref["episode_length_curve"]) for name, ref in evaluation["references"].items()
             if "episode_length_curve" in ref]
    num_episodes = len(rows[0][1])
    header = f"{'policy':<16}" + "".join(f"{f'steps ep {i + 1}':>13}" for i in range(num_episodes))
    if num_episodes > 1:
        header += f"{'ep 2 / ep 1':>13}"
    lines = ["Mean steps per inner episode", header, "-" * len(header)]
    for name, curve in rows:
        line = f"{name:<16}" + "".join(f"{point['mean']:>13.1f}" for point in curve)
        if num_episodes > 1:
            line += f"{curve[1]['mean'] / curve[0]['mean']:>13.1%}"
        lines.append(line)
    if "step_ratio" in evaluation:
        lines.append(format_step_ratio(evaluation["agent"], evaluation["step_ratio"]))
    return lines


def format_step_ratio(agent: str, ratio: dict[str, float]) -> str:
    """Render :func:`step_ratio`'s result as one sentence with its interval."""
    return (f"{agent}: episode 2 takes {ratio['ratio']:.1%} of episode 1's steps, 95% CI "
            f"[{ratio['ci_low']:.1%}, {ratio['ci_high']:.1%}] (bootstrap over "
            f"{ratio['n']} tasks)")


def _title(evaluation: dict[str, Any]) -> str:
    """Return the table's first line: tasks, distribution, seed, and how actions were chosen."""
    action_choice = ", most likely action" if evaluation.get("deterministic") else ""
    return (f"Meta-test on {evaluation['num_tasks']} held-out tasks of {evaluation['env']} "
            f"(seed {evaluation['seed']}{action_choice})")


def _format_adaptation_steps(evaluation: dict[str, Any]) -> str:
    """Render the return after each adaptation step, then the references' episode returns."""
    curve = evaluation["adaptation_curve"]
    lines = [
        f"{_title(evaluation)}, {evaluation['rollouts_per_step']} episodes per task and "
        "adaptation step",
        f"{'policy':<22}{'mean episode return':>21}{'95% CI':>22}",
    ]
    lines.append("-" * len(lines[-1]))
    for index, stats in enumerate(curve):
        trained = "  (trained)" if index == evaluation["trained_adaptation_steps"] else ""
        interval = f"[{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]"
        label = f"{evaluation['agent']}, {index} step{'' if index == 1 else 's'}"
        lines.append(f"{label:<22}{stats['mean']:>21.3f}{interval:>22}{trained}")
    for name, reference in evaluation["references"].items():
        stats = reference["mean_return"]
        interval = f"[{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]"
        lines.append(f"{name:<22}{stats['mean']:>21.3f}{interval:>22}")
    return "\n".join(lines)
