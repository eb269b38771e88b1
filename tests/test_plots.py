"""PNG adaptation and training curve plots: files, closed figures, input checks."""

from __future__ import annotations

import struct
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from harness.plots import _interpolate_seeds, plot_adaptation_curves, plot_training_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Return (width, height) from the IHDR chunk, after checking the PNG signature."""
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_SIGNATURE
    assert header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def curve(x, mean, half_width=0.05):
    mean = np.asarray(mean, dtype=float)
    return {"x": list(x), "mean": mean.tolist(), "ci_low": (mean - half_width).tolist(),
            "ci_high": (mean + half_width).tolist()}


def bandit_curves():
    x = range(1, 6)
    return {
        "RL²": curve(x, [0.5, 0.62, 0.7, 0.74, 0.76]),
        "memory policy": curve(x, [0.5, 0.58, 0.64, 0.69, 0.71]),
    }


def seed_runs(num_seeds=3, total=100_000, stride=5_000):
    generator = np.random.default_rng(0)
    runs = []
    for seed in range(num_seeds):
        steps = np.arange(0, total + 1, stride + 100 * seed)
        runs.append((steps, 1.0 - np.exp(-steps / 30_000) + generator.normal(0, 0.02, steps.size)))
    return runs


def test_adaptation_plot_writes_png(tmp_path):
    path = tmp_path / "nested" / "bandit.png"
    result = plot_adaptation_curves(
        "bandit", bandit_curves(), {"random": 0.5, "oracle": 0.9}, "inner episode", path
    )
    assert result == path
    width, height = png_size(path)
    assert 600 < width < 4000
    assert 400 < height < 2000
    assert plt.get_fignums() == []


def test_adaptation_plot_panel_per_unit(tmp_path):
    curves = {"RL²": curve(range(1, 4), [-150, -100, -70], 10),
              "MAML-PPO": curve(range(0, 4), [-200, -160, -120, -90], 10)}
    units = {"RL²": "inner episode", "MAML-PPO": "adaptation step"}
    one_panel = plot_adaptation_curves("cheetah", {"RL²": curves["RL²"]}, {}, "inner episode",
                                       tmp_path / "one.png")
    two_panels = plot_adaptation_curves("cheetah", curves, {"random": -300.0}, units, tmp_path / "two.png")
    assert png_size(two_panels)[0] > 1.5 * png_size(one_panel)[0]
    assert plt.get_fignums() == []


def test_adaptation_plot_single_point_nan_interval(tmp_path):
    # One adaptation step evaluated on one task: no interval, still a plot.
    curves = {"agent": {"x": [0], "mean": [1.0], "ci_low": [float("nan")], "ci_high": [float("nan")]}}
    path = plot_adaptation_curves("env", curves, {}, "adaptation step", tmp_path / "point.png")
    assert png_size(path)[0] > 0


def test_training_plot_writes_png(tmp_path):
    runs = {"RL²": seed_runs(), "MAML-PPO": seed_runs(num_seeds=1)}
    path = plot_training_curves("bandit", runs, "mean trial return", tmp_path / "out" / "train.png")
    width, height = png_size(path)
    assert 600 < width < 4000
    assert 400 < height < 2000
    assert plt.get_fignums() == []


def test_training_grid_within_overlap():
    # Seed 0 logs every 10 steps from 0 to 100, seed 1 every 20 from 10 to 90, both on the
    # line value = step. The grid is the union of logged steps inside [10, 90].
    seeds = [
        (np.arange(0, 101, 10), np.arange(0, 101, 10.0)),
        (np.arange(10, 91, 20), np.arange(10, 91, 20.0)),
    ]
    grid, values = _interpolate_seeds("agent", seeds)
    np.testing.assert_array_equal(grid, [10, 20, 30, 40, 50, 60, 70, 80, 90])
    np.testing.assert_allclose(values, np.stack([grid, grid]))


def test_plots_leave_open_figures_alone(tmp_path):
    figure = plt.figure()
    try:
        plot_adaptation_curves("bandit", bandit_curves(), {}, "inner episode", tmp_path / "a.png")
        plot_training_curves("bandit", {"RL²": seed_runs()}, "return", tmp_path / "t.png")
        assert plt.get_fignums() == [figure.number]
    finally:
        plt.close(figure)


@pytest.mark.parametrize(
    ("curves", "message"),
    [
        ({}, "empty"),
        ({"RL²": {"x": [1, 2], "mean": [0.1, 0.2]}}, r"missing keys \['ci_low', 'ci_high'\]"),
        ({"RL²": {"x": [1, 2, 3], "mean": [0.1, 0.2], "ci_low": [0, 0], "ci_high": [1, 1]}},
         "equal length"),
        ({"RL²": {"x": [], "mean": [], "ci_low": [], "ci_high": []}}, "non-empty"),
        ({"RL²": curve([1.5, 2.5], [0.1, 0.2])}, "must be integers"),
        ({"RL²": curve([2, 1], [0.1, 0.2])}, "strictly increasing"),
        ({"RL²": curve([1, 2], [0.1, float("nan")])}, "mean of 'RL²' contains NaN"),
        ({"RL²": {"x": [1, 2], "mean": [0.1, 0.2], "ci_low": [0.0, 0.3], "ci_high": [0.2, 0.25]}},
         r"ci_low exceeds ci_high for 'RL²' at x = \[2\]"),
    ],
)
def test_adaptation_plot_invalid_curves(tmp_path, curves, message):
    with pytest.raises(ValueError, match=message):
        plot_adaptation_curves("bandit", curves, {}, "inner episode", tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
    assert plt.get_fignums() == []


def test_adaptation_plot_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="reference 'oracle' must be a finite return"):
        plot_adaptation_curves("bandit", bandit_curves(), {"oracle": float("inf")}, "inner episode",
                               tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"no unit for agents \['memory policy'\]"):
        plot_adaptation_curves("bandit", bandit_curves(), {}, {"RL²": "inner episode"}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="must end in .png"):
        plot_adaptation_curves("bandit", bandit_curves(), {}, "inner episode", tmp_path / "bad.pdf")


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ({}, "empty"),
        ({"RL²": []}, "no seeds"),
        ({"RL²": [([0, 10, 20], [1.0, 2.0])]}, "same non-zero length, got 3 and 2"),
        ({"RL²": [([], [])]}, "same non-zero length, got 0 and 0"),
        ({"RL²": [([0, 20, 10], [1.0, 2.0, 3.0])]}, "step 10 follows 20 at index 2"),
        ({"RL²": [([0, 10, 20], [1.0, float("nan"), 3.0])]}, "1 non-finite values, the first at step 10"),
        ({"RL²": [([0, 10], [1.0, 2.0]), ([20, 30], [1.0, 2.0])]}, "do not overlap"),
    ],
)
def test_training_plot_invalid_runs(tmp_path, runs, message):
    with pytest.raises(ValueError, match=message):
        plot_training_curves("bandit", runs, "return", tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
    assert plt.get_fignums() == []
