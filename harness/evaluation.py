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


def reference_returns(
    distribution: TaskDistribution, tasks: Sequence[Task], seed: int
) -> dict[str, dict[str, Any]]:
    """Run every reference policy that applies to ``distribution`` on ``tasks``.

    Returns:
        For each reference name, :func:`describe_returns` of its per-episode returns (and
        steps, for families whose episodes vary in length), plus ``exact_value`` where the
        reference's expected return is known in closed form.
    """
    from agents.references import run_references

    results: dict[str, dict[str, Any]] = {}
    for name, reference in run_references(distribution, tasks, seed).items():
        lengths = reference.lengths if distribution.episode_length_varies else None
        results[name] = describe_returns(reference.returns, lengths)
        if reference.exact_value is not None:
            results[name]["exact_value"] = reference.exact_value
    return results


def evaluate(
    agent,
    agent_name: str,
    distribution: TaskDistribution,
    num_tasks: int | None = None,
    seed: int = 0,
    deterministic: bool = False,
    references: bool = True,
) -> dict[str, Any]:
    """Meta-test ``agent`` on the first ``num_tasks`` held-out tasks; return ``evaluation.json``.

    Every agent and reference evaluated with the same ``seed`` and ``num_tasks`` gets the
    same tasks, drawn from the distribution's fixed meta-test split.
    """
    tasks = distribution.meta_split().test
    if num_tasks is not None:
        tasks = tasks[:num_tasks]
    per_episode, lengths = agent.meta_test(tasks, seed=seed, deterministic=deterministic,
                                           return_lengths=True)
    result: dict[str, Any] = {
        "agent": agent_name,
        "env": distribution.name,
        "split": "meta-test",
        "num_tasks": len(tasks),
        "episodes_per_trial": distribution.episodes_per_trial,
        "seed": seed,
        "deterministic": deterministic,
        "num_timesteps": int(getattr(agent, "num_timesteps", 0)),
        **describe_returns(per_episode, lengths if distribution.episode_length_varies else None),
        "references": reference_returns(distribution, tasks, seed) if references else {},
    }
    return result


def format_table(evaluation: dict[str, Any]) -> str:
    """Render an evaluation as a plain-text table of mean trial returns with 95% CIs."""
    rows = [(evaluation["agent"], evaluation["mean_return"])]
    rows += [(name, ref["mean_return"]) for name, ref in evaluation["references"].items()]
    best = evaluation["references"].get("bayes-optimal", {}).get("exact_value")
    header = f"{'policy':<16}{'mean trial return':>19}{'95% CI':>20}"
    if best:
        header += f"{'of Bayes-optimal':>18}"
    lines = [
        f"Meta-test on {evaluation['num_tasks']} held-out tasks of {evaluation['env']} "
        f"(seed {evaluation['seed']})",
        header,
        "-" * len(header),
    ]
    for name, stats in rows:
        interval = f"[{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]"
        line = f"{name:<16}{stats['mean']:>19.3f}{interval:>20}"
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
    return lines
