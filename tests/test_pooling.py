"""The episode-2 step ratio and its interval, and pooling a run's meta-tests over seeds."""

import json

import numpy as np
import pytest

from harness.cli import evaluate_main, pool_main, train_main
from harness.evaluation import step_ratio
from harness.pooling import pool_evaluations
from harness.run import RunDirectory

# --------------------------------------------------------------------------- the step ratio


def test_step_ratio_by_hand():
    # Episode 1: 10 and 20 steps, mean 15; episode 2: 5 and 12, mean 8.5; later episodes
    # do not count. The ratio is of the means, 8.5 / 15, not the mean of 0.5 and 0.6.
    lengths = np.array([[10, 5, 3], [20, 12, 3]])
    result = step_ratio(lengths)
    assert result["ratio"] == pytest.approx(8.5 / 15)
    assert result["n"] == 2
    # Resampling two tasks gives three ratios: both first (0.5), both second (0.6) or one of
    # each (8.5 / 15). Each outer one has probability 1/4, so the 2.5% and 97.5% percentiles
    # of 10,000 draws are 0.5 and 0.6.
    assert result["ci_low"] == pytest.approx(0.5)
    assert result["ci_high"] == pytest.approx(0.6)


def test_step_ratio_interval_reproducible():
    rng = np.random.default_rng(0)
    first = rng.integers(10, 60, size=500)
    lengths = np.stack([first, first * 0.6 + rng.normal(0, 3, size=500)], axis=1)
    result = step_ratio(lengths, seed=3)
    assert result == step_ratio(lengths, seed=3)
    assert result["ci_low"] < result["ratio"] < result["ci_high"]
    assert result["ci_high"] - result["ci_low"] < 0.05
    # The same steps in every task leave no spread to resample.
    constant = step_ratio(np.tile([[20, 12]], (50, 1)))
    assert constant["ci_low"] == constant["ci_high"] == pytest.approx(0.6)


def test_step_ratio_needs_two_episodes():
    with pytest.raises(ValueError, match=r"at least two inner episodes per task.*\(4, 1\)"):
        step_ratio(np.ones((4, 1)))


# --------------------------------------------------------------------------- pooling by hand


def write_evaluation(folder, name, seed, returns, lengths, **fields):
    """Write an evaluation JSON with its per-task arrays, as scripts/evaluate.py does."""
    evaluation = {"agent": "rl2", "env": "maze-9x9-n2", "split": "meta-test",
                  "num_tasks": len(returns), "adaptation_unit": "inner episode", "seed": seed,
                  "deterministic": False, "num_timesteps": 1000, "episodes_per_trial": 2}
    evaluation.update(fields)
    evaluation["per_task"] = {"returns": np.asarray(returns, dtype=np.float64),
                              "lengths": np.asarray(lengths, dtype=np.float64)}
    return RunDirectory(folder).write_evaluation(evaluation, folder / name)


def two_seeds(folder):
    first = write_evaluation(folder, "evaluation.json", 0, [[0.5, 0.8], [0.2, 0.7]],
                             [[40, 20], [60, 30]])
    second = write_evaluation(folder, "evaluation-seed1.json", 1, [[0.7, 0.8], [0.4, 0.9]],
                              [[20, 20], [40, 10]])
    return [first, second]


def test_pool_averages_each_task_over_seeds(tmp_path):
    pooled = pool_evaluations(two_seeds(tmp_path))
    assert pooled["seeds"] == [0, 1]
    # Per task over the seeds: steps (30, 20) and (50, 20); trial returns 1.4 and 1.1.
    assert [point["mean"] for point in pooled["episode_length_curve"]] == [40, 20]
    assert pooled["mean_return"]["mean"] == pytest.approx(1.25)
    assert pooled["step_ratio"]["ratio"] == pytest.approx(0.5)
    # Seed 0: 25 / 50; seed 1: 15 / 30; trial returns 1.1 and 1.4.
    assert pooled["per_seed"]["step_ratio"] == pytest.approx([0.5, 0.5])
    assert pooled["per_seed"]["mean_return"] == pytest.approx([1.1, 1.4])


@pytest.mark.parametrize("field, value", [("env", "maze-9x9-n16"), ("num_timesteps", 2000),
                                          ("deterministic", True), ("seed", 0)])
def test_pool_rejects_evaluations_that_differ(tmp_path, field, value):
    first, _ = two_seeds(tmp_path)
    fields = {"seed": 2, field: value}
    other = write_evaluation(tmp_path, "evaluation-seed2.json", fields.pop("seed"), [[0, 0], [0, 0]],
                             [[1, 1], [1, 1]], **fields)
    message = "repeat a seed" if field == "seed" else f"has {field}="
    with pytest.raises(ValueError, match=message):
        pool_evaluations([first, other])


def test_pool_rejects_adaptation_step_curves(tmp_path):
    first, _ = two_seeds(tmp_path)
    steps = write_evaluation(tmp_path, "evaluation-seed3.json", 3, [[0, 0], [0, 0]],
                             [[1, 1], [1, 1]], adaptation_unit="adaptation step")
    with pytest.raises(ValueError, match="indexes its curve by adaptation step"):
        pool_evaluations([steps, first])


def test_pool_needs_two_evaluations_with_their_arrays(tmp_path):
    first, second = two_seeds(tmp_path)
    with pytest.raises(ValueError, match="at least two evaluations, got 1"):
        pool_evaluations([first])
    second.with_suffix(".npz").unlink()
    with pytest.raises(FileNotFoundError, match="evaluation-seed1.npz does not exist"):
        pool_evaluations([first, second])


def test_pool_script_missing_evaluation(tmp_path, capsys):
    assert pool_main([str(tmp_path)]) == 2
    assert "evaluation.json does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- end to end


def test_evaluate_and_pool_a_maze_run(tmp_path, capsys):
    code = train_main([
        "--env", "maze-7x7-n2", "--total-timesteps", "640",
        "--env-kwargs", "num_train_tasks=300", "num_test_tasks=40", "max_episode_steps=20",
        "--rl2.num-envs", "8", "--rl2.num-steps", "40", "--rl2.minibatch-size", "80",
        "--rl2.hidden-size", "16", "--runs-dir", str(tmp_path / "runs"), "--run-name", "maze",
        "--no-progress",
    ])
    assert code == 0
    assert "rl2: episode 2 takes" in capsys.readouterr().out
    run = tmp_path / "runs" / "maze"
    own = json.loads((run / "evaluation.json").read_text())
    lengths = np.load(run / "evaluation.npz")["lengths"]
    assert own["step_ratio"]["ratio"] == pytest.approx(lengths[:, 1].mean() / lengths[:, 0].mean())

    assert evaluate_main([str(run), "--eval-seed", "1"]) == 0
    assert pool_main([str(run)]) == 0
    assert "pooled over evaluation seeds 0, 1" in capsys.readouterr().out
    pooled = json.loads((run / "evaluation-pooled.json").read_text())
    assert pooled["num_tasks"] == 40
    assert pooled["per_seed"]["step_ratio"][0] == pytest.approx(own["step_ratio"]["ratio"])
    both = (lengths + np.load(run / "evaluation-seed1.npz")["lengths"]) / 2
    assert pooled["step_ratio"]["ratio"] == pytest.approx(both[:, 1].mean() / both[:, 0].mean())
