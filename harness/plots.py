"""PNG plots for the comparison grid: adaptation curves and training curves per environment.

The functions build `matplotlib.figure.Figure` objects directly instead of going through
pyplot, so they never open a window, work without a display, leave the caller's pyplot
state and backend alone, and leave no figure open. Matplotlib renders the PNG with Agg.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

from harness.statistics import student_t_interval

DPI = 150
PANEL_SIZE = (5.4, 4.2)  # inches per subplot
AGENT_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
                "tab:pink", "tab:olive", "tab:cyan")
# References are drawn in dark neutral colors with distinct dash patterns, so that they
# read as yardsticks and not as another agent.
REFERENCE_STYLES = (
    ("black", "--"), ("dimgray", ":"), ("saddlebrown", "-."), ("darkslategray", (0, (5, 1, 1, 1, 1, 1))),
    ("black", (0, (1, 3))), ("dimgray", (0, (8, 3))),
)
REFERENCE_SUFFIX = " (reference)"
CURVE_KEYS = ("x", "mean", "ci_low", "ci_high")
# Training curves are interpolated onto at most this many steps.
MAX_GRID_POINTS = 1000


def plot_adaptation_curves(
    env_name: str,
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    references: Mapping[str, float],
    unit_label: str | Mapping[str, str],
    path: str | Path,
) -> Path:
    """Plot every agent's adaptation curve on one environment, with references as lines.

    Curves in different units cannot share an x axis: RL²'s return at inner episode 3 and
    MAML's return after 3 adaptation steps measure different amounts of experience. With a
    mapping ``unit_label``, agents are grouped by unit into side-by-side subplots, in the
    order the units first appear in ``curves``. The subplots share the y axis, so returns
    stay comparable, and every subplot shows every reference.

    Args:
        env_name: environment name for the title.
        curves: agent name -> ``{"x", "mean", "ci_low", "ci_high"}``, equal-length
            sequences. ``x`` contains the integer inner-episode indices (1..n) or adaptation
            steps (0..K) in increasing order. ``mean`` is the mean episode return at each
            ``x``, and ``ci_low`` and ``ci_high`` bound its confidence interval. A NaN
            bound, as for a single task, leaves the band out at that point.
        references: reference name -> mean episode return, drawn as a horizontal line.
            May be empty.
        unit_label: x-axis label, for example ``"inner episode"`` or ``"adaptation step"``,
            or a mapping agent name -> label for agents in different units.
        path: output ``.png`` file. Missing parent folders are created.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: on empty ``curves``, a curve with missing keys, unequal lengths,
            non-integer or non-increasing ``x``, non-finite means, ``ci_low > ci_high``, a
            non-finite reference, an agent missing from a ``unit_label`` mapping, or a
            ``path`` that does not end in ``.png``.
    """
    path = _png_path(path)
    if not curves:
        raise ValueError(f"curves for {env_name!r} is empty; pass at least one agent's curve.")
    checked = {agent: _check_curve(agent, curve) for agent, curve in curves.items()}
    _check_references(references)
    panels = _group_by_unit(list(checked), unit_label)
    colors = {agent: AGENT_COLORS[i % len(AGENT_COLORS)] for i, agent in enumerate(checked)}

    width, height = PANEL_SIZE
    figure = Figure(figsize=(width * len(panels) + 2.2, height), layout="constrained")
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for index, (ax, (unit, agents)) in enumerate(zip(axes, panels.items())):
        for agent in agents:
            _draw_adaptation_curve(ax, agent, checked[agent], colors[agent])
        _draw_references(ax, references)
        ax.set_xlabel(unit)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if len(panels) > 1:
            ax.set_title(f"per {unit}")
        if index == 0:
            ax.set_ylabel("mean episode return")
        ax.tick_params(labelleft=True)

    figure.suptitle(f"{env_name}: adaptation on meta-test tasks (mean, 95% CI)")
    _add_legend(figure, axes)
    return _save(figure, path)


def _check_curve(agent: str, curve: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    missing = [key for key in CURVE_KEYS if key not in curve]
    if missing:
        raise ValueError(f"curve of {agent!r} is missing keys {missing}; expected keys {list(CURVE_KEYS)}.")
    arrays = {key: np.asarray(curve[key], dtype=np.float64).reshape(-1) for key in CURVE_KEYS}
    lengths = {key: array.size for key, array in arrays.items()}
    if len(set(lengths.values())) != 1 or lengths["x"] == 0:
        raise ValueError(
            f"curve of {agent!r} needs non-empty sequences of equal length, got lengths {lengths}."
        )

    x = arrays["x"]
    if not np.all(np.isfinite(x)) or np.any(x != np.round(x)):
        raise ValueError(
            f"x of {agent!r} must be integers (episode indices or adaptation steps), got {x.tolist()}."
        )
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"x of {agent!r} must be strictly increasing, got {x.tolist()}.")
    if not np.all(np.isfinite(arrays["mean"])):
        raise ValueError(f"mean of {agent!r} contains NaN or infinity: {arrays['mean'].tolist()}.")
    for key in ("ci_low", "ci_high"):
        if np.any(np.isinf(arrays[key])):
            raise ValueError(f"{key} of {agent!r} contains infinity: {arrays[key].tolist()}.")
    swapped = arrays["ci_low"] > arrays["ci_high"]
    if np.any(swapped):
        raise ValueError(f"ci_low exceeds ci_high for {agent!r} at x = {x[swapped].astype(int).tolist()}.")
    return arrays


def _check_references(references: Mapping[str, float]) -> None:
    for name, value in references.items():
        if not np.isfinite(value):
            raise ValueError(f"reference {name!r} must be a finite return, got {value}.")


def _group_by_unit(agents: list[str], unit_label: str | Mapping[str, str]) -> dict[str, list[str]]:
    if isinstance(unit_label, str):
        return {unit_label: agents}
    missing = [agent for agent in agents if agent not in unit_label]
    if missing:
        raise ValueError(f"unit_label has no unit for agents {missing}; it has {sorted(unit_label)}.")
    panels: dict[str, list[str]] = {}
    for agent in agents:
        panels.setdefault(unit_label[agent], []).append(agent)
    return panels


def _draw_adaptation_curve(ax: Any, agent: str, curve: dict[str, np.ndarray], color: str) -> None:
    x, mean = curve["x"], curve["mean"]
    below = mean - curve["ci_low"]
    above = curve["ci_high"] - mean
    # Error bars mark the interval at each evaluated point, and the light band links them.
    ax.errorbar(x, mean, yerr=np.nan_to_num(np.stack([below, above])), color=color, marker="o",
                markersize=4, capsize=3, linewidth=1.8, label=agent)
    ax.fill_between(x, curve["ci_low"], curve["ci_high"], color=color, alpha=0.15, linewidth=0)


def _draw_references(ax: Any, references: Mapping[str, float]) -> None:
    for index, (name, value) in enumerate(references.items()):
        color, linestyle = REFERENCE_STYLES[index % len(REFERENCE_STYLES)]
        ax.axhline(value, color=color, linestyle=linestyle, linewidth=1.4, label=f"{name}{REFERENCE_SUFFIX}")


def plot_training_curves(
    env_name: str,
    runs: Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]],
    metric_label: str,
    path: str | Path,
) -> Path:
    """Plot each agent's training metric over env steps, mean over seeds with a 95% band.

    Each seed's curve is linearly interpolated onto a common step grid inside the range
    that all of that agent's seeds cover: the union of their logged steps there, or 1000
    evenly spaced steps when the union is larger. The band is the Student t-interval over
    seeds (`harness.statistics.student_t_interval`), because a percentile bootstrap over 3
    to 10 seeds undercovers. An agent with one seed gets its line and no band.

    Args:
        env_name: environment name for the title.
        runs: agent name -> one ``(steps, values)`` pair per seed, as read from the seed's
            ``metrics.jsonl``. ``steps`` must be strictly increasing env step counts.
        metric_label: y-axis label, for example ``"mean episode return"``.
        path: output ``.png`` file. Missing parent folders are created.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: on empty ``runs``, an agent with no seeds, ``steps`` and ``values`` of
            different or zero length, steps that do not increase, non-finite values, seeds
            whose step ranges do not overlap, or a ``path`` that does not end in ``.png``.
    """
    path = _png_path(path)
    if not runs:
        raise ValueError(f"runs for {env_name!r} is empty; pass at least one agent's seeds.")
    curves = {agent: _interpolate_seeds(agent, seeds) for agent, seeds in runs.items()}

    figure = Figure(figsize=(PANEL_SIZE[0] + 3.0, PANEL_SIZE[1]), layout="constrained")
    ax = figure.subplots()
    for index, (agent, (grid, values)) in enumerate(curves.items()):
        color = AGENT_COLORS[index % len(AGENT_COLORS)]
        mean, low, high = student_t_interval(values)
        num_seeds = values.shape[0]
        if num_seeds == 1:
            label = f"{agent} (1 seed, no band)"
        else:
            label = f"{agent} ({num_seeds} seeds)"
        marker = "o" if grid.size == 1 else None
        ax.plot(grid, mean, color=color, linewidth=1.8, marker=marker, label=label)
        if num_seeds > 1:
            ax.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)

    ax.set_xlabel("env steps")
    ax.set_ylabel(metric_label)
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{env_name}: training curves (mean over seeds, 95% t-interval)")
    _add_legend(figure, [ax])
    return _save(figure, path)


def _interpolate_seeds(
    agent: str, seeds: Sequence[tuple[Sequence[float], Sequence[float]]]
) -> tuple[np.ndarray, np.ndarray]:
    """Return the common step grid of ``agent``'s seeds and their values on it, ``(num_seeds, len(grid))``."""
    if len(seeds) == 0:
        raise ValueError(f"runs of {agent!r} has no seeds.")
    checked = []
    for seed_index, (steps, values) in enumerate(seeds):
        steps = np.asarray(steps, dtype=np.float64).reshape(-1)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        where = f"{agent!r} seed {seed_index}"
        if steps.size == 0 or steps.size != values.size:
            raise ValueError(
                f"{where}: steps and values need the same non-zero length, got {steps.size} and "
                f"{values.size}."
            )
        if np.any(np.diff(steps) <= 0):
            position = int(np.argmax(np.diff(steps) <= 0))
            raise ValueError(
                f"{where}: steps must be strictly increasing, but step {steps[position + 1]:g} follows "
                f"{steps[position]:g} at index {position + 1}."
            )
        not_finite = ~np.isfinite(values)
        if not_finite.any():
            raise ValueError(
                f"{where}: {int(not_finite.sum())} non-finite values, the first at step "
                f"{steps[np.argmax(not_finite)]:g}."
            )
        checked.append((steps, values))

    start = max(steps[0] for steps, _ in checked)
    stop = min(steps[-1] for steps, _ in checked)
    if start > stop:
        ranges = [(float(steps[0]), float(steps[-1])) for steps, _ in checked]
        raise ValueError(f"the step ranges of {agent!r}'s seeds do not overlap: {ranges}.")

    grid = np.unique(np.concatenate([steps[(steps >= start) & (steps <= stop)] for steps, _ in checked]))
    if grid.size > MAX_GRID_POINTS:
        grid = np.linspace(start, stop, MAX_GRID_POINTS)
    return grid, np.stack([np.interp(grid, steps, values) for steps, values in checked])


def _add_legend(figure: Figure, axes: Sequence[Any]) -> None:
    # One legend for the whole figure, right of the axes so that it never covers data, and
    # vertically centered so that it clears the title. A reference drawn in every subplot
    # appears once, and references follow the agents.
    entries: dict[str, Any] = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        for handle, label in zip(handles, labels):
            entries.setdefault(label, handle)
    labels = sorted(entries, key=lambda label: label.endswith(REFERENCE_SUFFIX))
    figure.legend([entries[label] for label in labels], labels, loc="outside right center", fontsize="small")


def _png_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plot path must end in .png, got {str(path)!r}.")
    return path


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    return path
