"""Write a comparison's tables and plots: ``results.csv``, ``summary.csv``, ``report.md``, ``plots/``."""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.comparison.backends import CellOutcome
from harness.comparison.results import ADAPTATION_STEP, EnvResults
from harness.plots import plot_adaptation_curves, plot_training_curves
from harness.statistics import bootstrap_interval, summarize_scores

RESULTS_COLUMNS = ["env", "agent", "seed", "unit", "index", "mean_return", "ci_low", "ci_high",
                   "num_tasks", "env_steps", "wall_seconds"]
SUMMARY_COLUMNS = ["env", "agent", "num_seeds", "num_tasks", "mean", "ci_low", "ci_high", "iqm",
                   "iqm_ci_low", "iqm_ci_high", "normalized_mean", "normalized_ci_low",
                   "normalized_ci_high", "mean_env_steps", "mean_wall_seconds"]


@dataclass
class Report:
    """The written files and the rows behind them."""

    results_rows: list[dict[str, Any]]
    summary_rows: list[dict[str, Any]]
    plots: dict[str, Path]
    report_path: Path


def results_rows(groups: list[EnvResults]) -> list[dict[str, Any]]:
    """Return one row per env, agent, seed and adaptation-curve point, from each evaluation."""
    rows = []
    for group in groups:
        for agent, cells in group.cells.items():
            for cell in sorted(cells, key=lambda c: c.seed):
                for x, point in zip(cell.curve_x(), cell.evaluation["adaptation_curve"]):
                    rows.append({
                        "env": group.env, "agent": agent, "seed": cell.seed, "unit": cell.unit,
                        "index": x, "mean_return": point["mean"], "ci_low": point["ci_low"],
                        "ci_high": point["ci_high"], "num_tasks": point["n"],
                        "env_steps": cell.env_steps, "wall_seconds": cell.wall_seconds,
                    })
    return rows


def summary_rows(groups: list[EnvResults], normalize: str, seed: int = 0) -> list[dict[str, Any]]:
    """Return one row per env and agent: mean, IQM and normalized score with 95% intervals."""
    rows = []
    for group in groups:
        anchors = group.normalization_anchors() if normalize != "never" else None
        low, high = (group.references[anchors[0]], group.references[anchors[1]]) if anchors else (None, None)
        for agent, cells in group.cells.items():
            stats = summarize_scores(group.score_matrix(agent), random=low, oracle=high, seed=seed)
            wall = [cell.wall_seconds for cell in cells if cell.wall_seconds is not None]
            rows.append({
                "env": group.env, "agent": agent, "num_seeds": len(cells),
                "num_tasks": stats["num_tasks"], "mean": stats["mean"], "ci_low": stats["ci_low"],
                "ci_high": stats["ci_high"], "iqm": stats["iqm"], "iqm_ci_low": stats["iqm_ci_low"],
                "iqm_ci_high": stats["iqm_ci_high"],
                "normalized_mean": stats.get("normalized_mean"),
                "normalized_ci_low": stats.get("normalized_ci_low"),
                "normalized_ci_high": stats.get("normalized_ci_high"),
                "mean_env_steps": sum(cell.env_steps for cell in cells) / len(cells),
                "mean_wall_seconds": sum(wall) / len(wall) if wall else None,
            })
    return rows


def write_csv(rows: list[dict[str, Any]], columns: list[str], path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row.get(key) is None else row[key] for key in columns})
    tmp.replace(path)
    return path


def make_plots(groups: list[EnvResults], folder: Path, seed: int = 0) -> dict[str, Path]:
    """Draw each env's adaptation curves and training curves; return the PNGs by W&B key."""
    plots: dict[str, Path] = {}
    for group in groups:
        curves: dict[str, dict[str, Any]] = {}
        units = {}
        for agent in group.cells:
            xs, matrices = group.curve_matrices(agent)
            intervals = [bootstrap_interval(matrix, "mean", seed=seed) for matrix in matrices]
            curves[agent] = {"x": xs, "mean": [float(matrix.mean()) for matrix in matrices],
                             "ci_low": [low for low, _ in intervals],
                             "ci_high": [high for _, high in intervals]}
            units[agent] = group.cells[agent][0].unit
        slug = _slug(group.env)
        plots[f"plots/{slug}/adaptation"] = plot_adaptation_curves(
            group.env, curves, group.references, units, folder / f"{slug}-adaptation.png")
        runs = {agent: [smooth(*cell.training_curve) for cell in cells if cell.training_curve is not None]
                for agent, cells in group.cells.items()}
        runs = {agent: curves for agent, curves in runs.items() if curves}
        if runs:
            plots[f"plots/{slug}/training"] = plot_training_curves(
                group.env, runs, "mean episode return (training rollouts, smoothed)",
                folder / f"{slug}-training.png")
    return plots


def smooth(steps: np.ndarray, values: np.ndarray, points: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Return a trailing moving average over 1/``points`` of the run, one value per update.

    A MAML-PPO update measures a few hundred episodes, so its training return jumps from
    one update to the next. An average over a 25th of the run shows the trend.
    """
    window = max(1, len(values) // points)
    if window == 1:
        return steps, values
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    averaged = (cumulative[1:] - cumulative[np.maximum(0, np.arange(1, len(values) + 1) - window)]) / counts
    return steps, averaged


def write_report(path: Path, name: str, groups: list[EnvResults], summary: list[dict[str, Any]],
                 outcomes: list[CellOutcome], plots: dict[str, Path],
                 cell_rows: list[dict[str, Any]]) -> Path:
    """Write ``report.md``: per env the score table, references and curves; then every cell."""
    lines = [
        f"# Comparison `{name}`",
        "",
        f"Written {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from the finished cells in `runs/`; the "
        "grid's settings are in `comparison.yaml`, every curve point in `results.csv`, these "
        "tables in `summary.csv`.",
        "",
        "**Score**: mean episode return on held-out tasks, one value per task and seed. For "
        "agents that adapt within a trial it is the mean over the whole trial, so exploring "
        "episodes count; for MAML-PPO it is the episode after its trained adaptation steps, so "
        "the episodes spent adapting do not. **95% CI**: a two-level bootstrap that resamples "
        "seeds, then tasks within each seed. **IQM**: the mean of the middle 50% of all "
        "(seed, task) scores. **Normalized**: (score - low) / (high - low) with the env's "
        "lower and upper references on the same tasks.",
    ]
    for group in groups:
        rows = [row for row in summary if row["env"] == group.env]
        anchors = group.normalization_anchors()
        lines += ["", f"## {group.env}", "",
                  f"Meta-test on {group.num_tasks} held-out tasks, the same for every agent and seed."]
        if anchors:
            lines.append(f"Normalized by {anchors[0]} (0) and {anchors[1]} (1).")
        lines += ["", "| agent | seeds | score | 95% CI | IQM | IQM 95% CI | normalized | "
                  "normalized 95% CI | env steps per cell | wall time per cell |",
                  "|---|---:|---:|---|---:|---|---:|---|---:|---:|"]
        for row in rows:
            lines.append(
                f"| {row['agent']} | {row['num_seeds']} | {_num(row['mean'])} | "
                f"{_interval(row['ci_low'], row['ci_high'])} | {_num(row['iqm'])} | "
                f"{_interval(row['iqm_ci_low'], row['iqm_ci_high'])} | {_num(row['normalized_mean'])} | "
                f"{_interval(row['normalized_ci_low'], row['normalized_ci_high'])} | "
                f"{row['mean_env_steps']:,.0f} | {_duration(row['mean_wall_seconds'])} |")
        if group.references:
            lines += ["", "References, mean episode return on the same tasks: " + ", ".join(
                f"{ref} {_num(value)}" for ref, value in group.references.items()) + "."]
        lines += ["", *_curve_table(group)]
        for kind in ("adaptation", "training"):
            key = f"plots/{_slug(group.env)}/{kind}"
            if key in plots:
                lines += ["", f"![{kind} curves on {group.env}](plots/{plots[key].name})"]
    lines += ["", "## Cells", "", "| cell | status | env steps | wall time |", "|---|---|---:|---:|"]
    for row in cell_rows:
        steps = f"{row['env_steps']:,}" if row.get("env_steps") is not None else ""
        lines.append(f"| {row['key']} | {row['status']} | {steps} | {_duration(row.get('wall_seconds'))} |")
    failed = [outcome for outcome in outcomes if outcome.status == "failed"]
    if failed:
        lines += ["", "## Failed cells"]
        for outcome in failed:
            lines += ["", f"### {outcome.key}", "", outcome.error or "", ""]
            if outcome.log_path:
                lines.append(f"Log: `{outcome.log_path}`")
            if outcome.traceback:
                lines += ["", "```", outcome.traceback.rstrip(), "```"]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def _curve_table(group: EnvResults) -> list[str]:
    """Return the adaptation-curve points of every agent as lines, means over seeds and tasks."""
    lines = ["Adaptation curves (mean episode return at each point, over seeds and tasks):", ""]
    for agent, cells in group.cells.items():
        xs, matrices = group.curve_matrices(agent)
        unit = cells[0].unit
        label = "after step" if unit == ADAPTATION_STEP else "episode"
        points = ", ".join(f"{label} {x}: {_num(float(m.mean()))}" for x, m in zip(xs, matrices))
        if unit == ADAPTATION_STEP:
            # Without this a reader compares a score earned after many episodes of adaptation
            # with the trial-level agents' and references' first episodes.
            evaluation = cells[0].evaluation
            points += (f" (each step adapts on {evaluation['rollouts_per_step']} episodes of the "
                       f"task; trained for {evaluation['trained_adaptation_steps']} step(s))")
        lines.append(f"- {agent}: {points}")
    return lines


def _slug(env: str) -> str:
    return env.replace(":", ".").replace("/", "_")


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def _interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "n/a"
    return f"[{_num(low)}, {_num(high)}]"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
