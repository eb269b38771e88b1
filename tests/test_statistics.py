"""Bootstrap intervals, IQM, normalized scores and t-intervals of the comparison grid."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from harness.statistics import (
    batch_interquartile_mean,
    bootstrap_interval,
    interquartile_mean,
    normalized_score,
    student_t_critical_value,
    student_t_interval,
    summarize_scores,
)


def seed_only_bootstrap(row_values: np.ndarray, num_resamples: int, confidence: float, seed: int):
    """Percentile interval of the mean of ``row_values`` resampled with replacement."""
    generator = np.random.default_rng(seed)
    draws = generator.integers(row_values.size, size=(num_resamples, row_values.size))
    means = row_values[draws].mean(axis=1)
    tail = 50.0 * (1.0 - confidence)
    return np.percentile(means, [tail, 100.0 - tail])


def test_iqm_by_hand():
    # 8 values: drop floor(8 / 4) = 2 from each end, keep 3, 4, 5, 6.
    values = [7.0, 100.0, 1.0, 3.0, 5.0, -50.0, 4.0, 6.0]
    assert interquartile_mean(values) == pytest.approx(4.5)


def test_iqm_pools_matrix():
    # 10 values: drop floor(10 / 4) = 2 from each end, keep the middle 6: 3..8 -> 5.5.
    matrix = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]])
    assert interquartile_mean(matrix) == pytest.approx(5.5)


def test_iqm_small_input_is_mean():
    assert interquartile_mean([1.0, 2.0, 9.0]) == pytest.approx(4.0)


def test_batch_iqm_matches_single():
    generator = np.random.default_rng(3)
    batch = generator.normal(size=(4, 3, 11))
    expected = [interquartile_mean(matrix) for matrix in batch]
    np.testing.assert_allclose(batch_interquartile_mean(batch), expected)


def test_normalized_score_by_hand():
    assert normalized_score(30.0, random=10.0, oracle=50.0) == pytest.approx(0.5)
    assert normalized_score(10.0, random=10.0, oracle=50.0) == pytest.approx(0.0)
    assert normalized_score(60.0, random=10.0, oracle=50.0) == pytest.approx(1.25)
    np.testing.assert_allclose(normalized_score(np.array([-5.0, -1.0]), random=-5.0, oracle=-1.0), [0.0, 1.0])


def test_normalized_score_equal_references():
    with pytest.raises(ValueError, match=r"oracle score \(2.0\) equals the random score \(2.0\)"):
        normalized_score(3.0, random=2.0, oracle=2.0)


def test_normalized_score_nan_reference():
    with pytest.raises(ValueError, match="finite"):
        normalized_score(3.0, random=float("nan"), oracle=2.0)


def test_interval_contains_mean():
    generator = np.random.default_rng(0)
    scores = generator.normal(loc=3.0, scale=2.0, size=(5, 40))
    low, high = bootstrap_interval(scores, "mean")
    assert low < scores.mean() < high


def test_interval_shrinks_with_more_tasks():
    generator = np.random.default_rng(1)
    seed_effects = generator.normal(scale=0.1, size=(4, 1))
    few = seed_effects + generator.normal(size=(4, 20))
    many = seed_effects + generator.normal(size=(4, 2000))
    few_width = np.subtract(*bootstrap_interval(few, "mean")[::-1])
    many_width = np.subtract(*bootstrap_interval(many, "mean")[::-1])
    assert many_width < 0.5 * few_width


def test_constant_rows_give_seed_interval():
    # No task variance: resampling tasks within a row changes nothing, so only the seed
    # level is left, and the interval is the bootstrap interval of the row means.
    generator = np.random.default_rng(2)
    row_values = generator.normal(size=8)
    scores = np.repeat(row_values[:, None], 50, axis=1)
    low, high = bootstrap_interval(scores, "mean", num_resamples=20_000, seed=5)
    expected_low, expected_high = seed_only_bootstrap(row_values, 20_000, 0.95, seed=11)
    width = expected_high - expected_low
    assert low == pytest.approx(expected_low, abs=0.05 * width)
    assert high == pytest.approx(expected_high, abs=0.05 * width)


def test_resampling_keeps_seed_rows():
    # Two seeds that disagree completely. Resampling whole rows makes "both draws are seed
    # 0" and "both draws are seed 1" likely (1/4 each), so the interval spans about [0, 10].
    # Resampling seeds separately for each task column would average 100 independent picks
    # and give a narrow interval around 5.
    scores = np.stack([np.zeros(100), np.full(100, 10.0)])
    low, high = bootstrap_interval(scores, "mean")
    assert low == pytest.approx(0.0)
    assert high == pytest.approx(10.0)


def test_one_seed_is_task_bootstrap():
    generator = np.random.default_rng(4)
    row = generator.normal(size=60)
    low, high = bootstrap_interval(row[None, :], "mean", num_resamples=20_000, seed=1)
    expected_low, expected_high = seed_only_bootstrap(row, 20_000, 0.95, seed=9)
    width = expected_high - expected_low
    assert low == pytest.approx(expected_low, abs=0.05 * width)
    assert high == pytest.approx(expected_high, abs=0.05 * width)


def test_interval_deterministic_under_seed():
    generator = np.random.default_rng(6)
    scores = generator.normal(size=(3, 30))
    assert bootstrap_interval(scores, "iqm", seed=7) == bootstrap_interval(scores, "iqm", seed=7)
    assert bootstrap_interval(scores, "iqm", seed=7) != bootstrap_interval(scores, "iqm", seed=8)


def test_interval_custom_statistic():
    generator = np.random.default_rng(8)
    scores = generator.normal(size=(3, 30))
    low, high = bootstrap_interval(scores, lambda batch: batch.max(axis=(1, 2)))
    assert low <= high <= scores.max()


def test_interval_wider_confidence():
    generator = np.random.default_rng(9)
    scores = generator.normal(size=(4, 50))
    narrow = bootstrap_interval(scores, confidence=0.5)
    wide = bootstrap_interval(scores, confidence=0.99)
    assert wide[0] < narrow[0]
    assert wide[1] > narrow[1]


def test_interval_speed_reasonable():
    generator = np.random.default_rng(10)
    scores = generator.normal(size=(3, 1000))
    start = time.perf_counter()
    bootstrap_interval(scores, "mean", num_resamples=2000)
    bootstrap_interval(scores, "iqm", num_resamples=2000)
    # A loose bound that only catches a per-replicate Python loop, which takes several seconds.
    assert time.perf_counter() - start < 5.0


def test_summarize_scores_keys():
    generator = np.random.default_rng(11)
    scores = generator.normal(loc=20.0, size=(3, 40))
    summary = summarize_scores(scores)
    assert summary["mean"] == pytest.approx(scores.mean())
    assert summary["iqm"] == pytest.approx(interquartile_mean(scores))
    assert summary["ci_low"] < summary["mean"] < summary["ci_high"]
    assert summary["iqm_ci_low"] < summary["iqm"] < summary["iqm_ci_high"]
    assert summary["num_seeds"] == 3
    assert summary["num_tasks"] == 40
    assert not any(key.startswith("normalized") for key in summary)


def test_summarize_scores_normalized():
    generator = np.random.default_rng(12)
    scores = generator.normal(loc=20.0, size=(3, 40))
    summary = summarize_scores(scores, random=10.0, oracle=30.0)
    assert summary["normalized_mean"] == pytest.approx((summary["mean"] - 10.0) / 20.0)
    assert summary["normalized_ci_low"] == pytest.approx((summary["ci_low"] - 10.0) / 20.0)
    assert summary["normalized_ci_high"] == pytest.approx((summary["ci_high"] - 10.0) / 20.0)
    assert summary["normalized_iqm"] == pytest.approx((summary["iqm"] - 10.0) / 20.0)
    assert summary["normalized_iqm_ci_low"] == pytest.approx((summary["iqm_ci_low"] - 10.0) / 20.0)


def test_summarize_scores_reversed_references():
    generator = np.random.default_rng(13)
    scores = generator.normal(loc=20.0, size=(3, 40))
    summary = summarize_scores(scores, random=30.0, oracle=10.0)
    assert summary["normalized_ci_low"] < summary["normalized_mean"] < summary["normalized_ci_high"]


def test_summarize_scores_one_reference_skips_normalization():
    summary = summarize_scores(np.ones((2, 3)), random=0.0)
    assert "normalized_mean" not in summary


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (np.zeros((0, 5)), r"empty: shape \(0, 5\)"),
        (np.zeros((3, 0)), r"empty: shape \(3, 0\)"),
        ([[1.0, 2.0], [3.0]], r"ragged: row lengths are \[2, 1\]"),
        (np.zeros(5), r"2-D array .* got shape \(5,\)"),
        (np.zeros((2, 2, 2)), r"got shape \(2, 2, 2\)"),
    ],
)
def test_summarize_scores_invalid_shape(scores, message):
    with pytest.raises(ValueError, match=message):
        summarize_scores(scores)


def test_summarize_scores_non_finite_positions():
    scores = np.ones((3, 4))
    scores[0, 2] = np.nan
    scores[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"2 non-finite values .* positions \(0, 2\), \(2, 1\)\."):
        summarize_scores(scores)


def test_non_finite_message_truncates():
    scores = np.full((2, 10), np.nan)
    with pytest.raises(ValueError, match=r"20 non-finite values .* and 15 more\."):
        bootstrap_interval(scores)


def test_interval_invalid_settings():
    scores = np.ones((2, 3))
    with pytest.raises(ValueError, match="unknown statistic 'median'.*'iqm', 'mean'"):
        bootstrap_interval(scores, "median")
    with pytest.raises(ValueError, match="num_resamples must be at least 1, got 0"):
        bootstrap_interval(scores, num_resamples=0)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\), got 95"):
        bootstrap_interval(scores, confidence=95)
    with pytest.raises(ValueError, match=r"returned shape \(\)"):
        bootstrap_interval(scores, np.mean)


def test_iqm_invalid_input():
    with pytest.raises(ValueError, match="empty"):
        interquartile_mean([])
    with pytest.raises(ValueError, match="1 non-finite"):
        interquartile_mean([1.0, float("nan")])


@pytest.mark.parametrize(
    ("df", "expected"),
    # Two-sided 95% critical values, scipy.stats.t.ppf(0.975, df) rounded to 4 decimals.
    [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622), (30, 2.0423)],
)
def test_t_critical_value_table(df, expected):
    assert student_t_critical_value(0.95, df) == pytest.approx(expected, abs=1e-4)


def test_t_critical_value_large_df_approaches_normal():
    assert student_t_critical_value(0.95, 5000) == pytest.approx(1.959964, abs=1e-3)


def test_t_interval_by_hand():
    samples = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0]])
    mean, low, high = student_t_interval(samples)
    # Column 0: mean 2, s = 1, half-width 4.3027 / sqrt(3). Column 1 has no spread.
    half_width = 4.302653 / math.sqrt(3)
    np.testing.assert_allclose(mean, [2.0, 10.0])
    np.testing.assert_allclose(low, [2.0 - half_width, 10.0], rtol=1e-6)
    np.testing.assert_allclose(high, [2.0 + half_width, 10.0], rtol=1e-6)


def test_t_interval_one_sample_nan():
    mean, low, high = student_t_interval(np.array([[4.0, 5.0]]))
    np.testing.assert_allclose(mean, [4.0, 5.0])
    assert np.isnan(low).all()
    assert np.isnan(high).all()


def load_rliable():
    # rliable 1.2.0 installs but can fail at import, for example arch 7.2 under pandas 3
    # raises TypeError, so any exception means "not available".
    try:
        from rliable import library, metrics
    except Exception as error:
        pytest.skip(f"rliable is not importable: {type(error).__name__}: {error}")
    return library, metrics


def test_iqm_matches_rliable():
    _, metrics = load_rliable()
    generator = np.random.default_rng(14)
    for shape in [(1, 7), (3, 10), (5, 13), (4, 1000)]:
        scores = generator.normal(size=shape)
        assert interquartile_mean(scores) == pytest.approx(float(metrics.aggregate_iqm(scores)))


def test_interval_matches_rliable_without_seed_effect():
    # With independent scores, rliable's bootstrap over runs and tasks and our two-level
    # bootstrap have the same expected variance, so the widths agree up to Monte Carlo noise.
    library, metrics = load_rliable()
    generator = np.random.default_rng(15)
    scores = generator.normal(size=(10, 200))
    np.random.seed(0)  # rliable draws its indices from numpy's global generator.
    _, intervals = library.get_interval_estimates(
        {"agent": scores}, lambda matrix: np.array([metrics.aggregate_iqm(matrix)]),
        task_bootstrap=True, reps=2000,
    )
    theirs = intervals["agent"].reshape(2)
    ours = bootstrap_interval(scores, "iqm")
    assert ours[0] < interquartile_mean(scores) < ours[1]
    assert theirs[0] < interquartile_mean(scores) < theirs[1]
    ratio = (ours[1] - ours[0]) / (theirs[1] - theirs[0])
    assert 0.75 < ratio < 1.33
