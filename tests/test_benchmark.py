"""The benchmark's measurement functions, ratios, checks and JSON output, on tiny settings.

These runs are seconds long and check the machinery only. The benchmark's figures come from
running ``scripts/benchmark.py`` itself.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from agents import MAMLConfig, RL2Config
from envs import make_distribution
from harness.benchmark import (
    STOP_CAP,
    STOP_TARGETS,
    EvalSettings,
    PeerConfig,
    TargetOutcome,
    TrainingClock,
    benchmark_main,
    format_report,
    measure_peer_throughput,
    measure_rl2_throughput,
    time_peer_to_targets,
    time_rl2_to_targets,
    time_to_target_ratio,
)

pytest.importorskip("sb3_contrib")

TINY_RL2 = RL2Config(num_envs=8, num_steps=10, minibatch_size=40, hidden_size=16)
TINY_PEER = PeerConfig(num_envs=4, n_steps=16, batch_size=64, n_epochs=1, device="cpu")
TINY_FLAGS = [
    "--no-progress", "--eval-tasks", "100", "--eval-interval-seconds", "0",
    "--rl2-throughput-updates", "2", "--peer-throughput-updates", "2",
    "--rl2.num-envs", "8", "--rl2.num-steps", "10", "--rl2.minibatch-size", "40",
    "--rl2.hidden-size", "16",
    "--peer.num-envs", "4", "--peer.n-steps", "16", "--peer.batch-size", "64",
    "--peer.n-epochs", "1", "--peer.device", "cpu",
]
UNREACHABLE = 11.0  # a trial of 10 Bernoulli pulls returns at most 10
CAP_SECONDS = 3.0
GUARD_SECONDS = 120.0


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # On a busy machine, two torch threads can stall each other for seconds per tiny update.
    # These tests check the machinery, not speed, so one thread is enough.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def distribution():
    return make_distribution("bandit-k5-n10")


def eval_settings(distribution, cap_seconds: float = CAP_SECONDS) -> EvalSettings:
    return EvalSettings(distribution.meta_split().test[:100], seed=0, deterministic=False,
                        interval_seconds=0.0, cap_seconds=cap_seconds)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--cap-minutes", "0"], "--cap-minutes must be a positive number of minutes, got 0.0"),
        (["--cap-minutes", "-1.5"], "--cap-minutes must be a positive number of minutes, got -1.5"),
        (["--cap-minutes", "nan"], "--cap-minutes must be a positive number of minutes, got nan"),
        (["--eval-tasks", "0"], "--eval-tasks must lie in [1, 10000]"),
        (["--eval-tasks", "10001"], "got 10001"),
        (["--eval-interval-seconds", "-1"], "--eval-interval-seconds must be a non-negative"),
        (["--warmup-updates", "-1"], "--warmup-updates must be a non-negative integer, got -1"),
        (["--rl2-throughput-updates", "0"], "--rl2-throughput-updates must be a positive integer"),
        (["--num-envs-list", "256", "0"], "--num-envs-list values must be positive integers, got 0"),
        (["--num-envs-list", "250"], "minibatch_size"),
        (["--peer.num-envs", "0"], "--peer.num-envs must be a positive integer, got 0"),
        (["--rl2-targets", "inf"], "targets must be finite mean trial returns, got inf"),
        (["--torch-threads", "0"], "--torch-threads must be a positive integer, got 0"),
    ],
)
def test_invalid_value_rejected(flags, message, capsys):
    assert benchmark_main(flags) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_missing_rejected(capsys):
    assert benchmark_main(["--device", "cuda", "--num-envs-list", "256", "1024", "4096"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda was requested but CUDA is not available here" in err
    assert "Use --device cpu" in err


def test_unknown_option_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark_main(["--no-such-option", "3"])
    assert exit_info.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err


# --------------------------------------------------------------------------- throughput


def test_rl2_throughput_counts_timed_steps(distribution):
    result = measure_rl2_throughput(distribution, TINY_RL2, "cpu", seed=0, warmup_updates=1,
                                    timed_updates=3)
    assert result.warmup_steps == 80
    assert result.env_steps == 240
    assert result.num_envs == 8
    assert result.device == "cpu"
    assert result.seconds > 0
    assert result.steps_per_second == pytest.approx(240 / result.seconds)


def test_peer_throughput_counts_timed_steps(distribution):
    result = measure_peer_throughput(distribution, TINY_PEER, seed=0, warmup_updates=1,
                                     timed_updates=3)
    assert result.warmup_steps == 64
    assert result.env_steps == 192
    assert result.num_envs == 4
    assert result.seconds > 0


# ----------------------------------------------------------------------- time to target


# A run with an unreachable target lasts the whole cap, so those runs get a short cap and
# assert nothing that needs an update to finish inside it. Runs to target 0 stop at the first
# evaluation, which meets it, and their long cap only guards against a busy machine.


@pytest.fixture(scope="module")
def rl2_capped_run(distribution):
    return time_rl2_to_targets(distribution, TINY_RL2, "cpu", seed=0, total_timesteps=10**7,
                               targets=(UNREACHABLE,), settings=eval_settings(distribution))


@pytest.fixture(scope="module")
def rl2_reaching_run(distribution):
    return time_rl2_to_targets(distribution, TINY_RL2, "cpu", seed=0, total_timesteps=10**7,
                               targets=(0.0,), settings=eval_settings(distribution, GUARD_SECONDS))


@pytest.fixture(scope="module")
def peer_capped_run(distribution):
    return time_peer_to_targets(distribution, TINY_PEER, seed=0, total_timesteps=10**7,
                                targets=(UNREACHABLE,), settings=eval_settings(distribution))


@pytest.fixture(scope="module")
def peer_reaching_run(distribution):
    return time_peer_to_targets(distribution, TINY_PEER, seed=0, total_timesteps=10**7,
                                targets=(0.0,), settings=eval_settings(distribution, GUARD_SECONDS))


@pytest.mark.parametrize("run_name", ["rl2_capped_run", "peer_capped_run"])
def test_unreachable_target_stops_at_cap(run_name, request):
    run = request.getfixturevalue(run_name)
    outcome = run.outcome(UNREACHABLE)
    assert not outcome.reached
    assert outcome.capped
    assert outcome.training_seconds == CAP_SECONDS
    assert run.stop_reason == STOP_CAP
    assert run.training_seconds >= CAP_SECONDS


@pytest.mark.parametrize(("run_name", "rollout_size"),
                         [("rl2_reaching_run", 80), ("peer_reaching_run", 64)])
def test_reached_target_stops_after_first_update(run_name, rollout_size, request):
    run = request.getfixturevalue(run_name)
    outcome = run.outcome(0.0)
    assert outcome.reached
    assert outcome.env_steps == rollout_size  # evaluated after the first update
    assert 0 < outcome.training_seconds == run.evaluations[0].training_seconds
    assert run.stop_reason == STOP_TARGETS
    assert [point.env_steps for point in run.evaluations] == [rollout_size]
    assert 0.0 <= run.evaluations[0].mean_return <= 10.0
    assert run.eval_seconds > 0


def test_clock_excludes_paused_time():
    clock = TrainingClock()
    with clock.paused():
        time.sleep(0.3)
    assert clock.paused_seconds >= 0.3
    assert clock.seconds() < 0.1


def test_peer_evaluation_repeats_with_same_seed(distribution):
    from harness.benchmark import PeerEvaluator, make_peer

    model = make_peer(distribution, TINY_PEER, seed=0)
    evaluator = PeerEvaluator(distribution, distribution.meta_split().test[:50], seed=3)
    first = evaluator.run(model, deterministic=False)
    second = evaluator.run(model, deterministic=False)
    assert first.shape == (50, 10)
    np.testing.assert_array_equal(first, second)
    assert set(np.unique(first)) <= {0.0, 1.0}


# ----------------------------------------------------------------------------- ratios


def test_ratio_with_capped_peer_is_lower_bound(rl2_reaching_run, peer_capped_run):
    rl2 = rl2_reaching_run.outcome(0.0)
    ratio = time_to_target_ratio(rl2, peer_capped_run.outcome(UNREACHABLE))
    assert ratio.lower_bound
    assert ratio.value == pytest.approx(CAP_SECONDS / rl2.training_seconds)
    assert "lower bound" in ratio.note


def test_ratio_when_both_reach_is_exact():
    ratio = time_to_target_ratio(TargetOutcome(6.0, True, 20.0, 1000),
                                 TargetOutcome(6.0, True, 300.0, 5000))
    assert ratio.value == pytest.approx(15.0)
    assert not ratio.lower_bound


def test_ratio_undefined_when_rl2_misses():
    ratio = time_to_target_ratio(TargetOutcome(6.0, False, 900.0, 10**6, capped=True),
                                 TargetOutcome(6.0, False, 900.0, 5000, capped=True))
    assert ratio.value is None
    assert "did not reach 6.0" in ratio.note


# --------------------------------------------------------------------------- full output


def test_json_output_has_ratios(capsys):
    # Both learners meet every target at their first evaluation and stop there.
    flags = TINY_FLAGS + ["--json", "--cap-minutes", str(GUARD_SECONDS / 60), "--compare-target",
                          "0", "--rl2-targets", "0.5"]
    assert benchmark_main(flags) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("throughput_ratio", "time_to_target_ratio", "time_to_target_ratio_is_lower_bound",
                "throughput", "time_to_target", "machine", "seeds", "evaluation", "config"):
        assert key in report
    assert report["throughput_ratio"] > 0
    assert report["time_to_target_ratio"] > 0
    assert report["time_to_target_ratio_is_lower_bound"] is False
    rl2_targets = report["time_to_target"]["adaptrl_rl2"]["targets"]
    assert [t["target"] for t in rl2_targets] == [0.0, 0.5]
    assert [t["reached"] for t in rl2_targets] == [True, True]
    assert report["time_to_target"]["recurrent_ppo"]["targets"][0]["reached"]
    assert report["machine"]["torch_threads"] >= 1
    assert report["seeds"] == {"training": 0, "eval": 0, "meta_split": 0}

    report["time_to_target_ratio_is_lower_bound"] = True
    table = format_report(report)
    assert f">= {report['time_to_target_ratio']:.1f}" in table
    assert "The clock stops while evaluating" in table


def test_skip_peer_and_throughput_only(capsys, tmp_path):
    json_file = tmp_path / "records" / "benchmark.json"
    flags = TINY_FLAGS + ["--json", "--skip-peer", "--throughput-only", "--json-file", str(json_file)]
    assert benchmark_main(flags) == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads(json_file.read_text()) == report
    assert report["throughput_ratio"] is None
    assert report["time_to_target_ratio"] is None
    assert report["throughput"]["recurrent_ppo"] is None
    assert report["time_to_target"]["adaptrl_rl2"] is None


def test_num_envs_list_measures_rl2_alone(capsys):
    flags = TINY_FLAGS + ["--num-envs-list", "8", "16"]
    assert benchmark_main(flags) == 0
    table = capsys.readouterr().out
    rows = [line.split() for line in table.splitlines() if line.startswith("AdaptRL RL²  ")]
    assert [row[3] for row in rows] == ["8", "16"]
    assert "RecurrentPPO" not in table
    assert "Time to target" not in table


def test_maml_benchmark_prints_both_learners(capsys):
    argv = ["--maml", "--maml-iterations", "1", "--warmup-updates", "0", "--no-progress",
            "--maml-ppo.meta-batch-size", "2", "--maml-ppo.rollouts-per-task", "2",
            "--maml-ppo.num-epochs", "1", "--json"]
    assert benchmark_main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    ours, loop = report["throughput"]["adaptrl_maml_ppo"], report["throughput"]["loop_maml_ppo"]
    # 2 tasks x 2 episodes x 100 steps, before and after one adaptation step.
    assert ours["env_steps"] == loop["env_steps"] == 800
    assert report["throughput_ratio"] == pytest.approx(ours["steps_per_second"] / loop["steps_per_second"])


def test_maml_loop_peer_adapts_like_the_vmapped_agent():
    """The peer differs in execution only: its per-task adaptation equals the batched one."""
    from agents.maml_objective import adapt, make_task_batch
    from agents.maml_sampler import sample_trajectories
    from harness.maml_benchmark import LoopMAML

    config = MAMLConfig(meta_batch_size=2, rollouts_per_task=3, hidden_sizes=(8,))
    peer = LoopMAML(config, seed=0)
    agent = peer.agent
    task_params = agent._train_params[:2]
    theta = {k: v.detach() for k, v in agent.meta_parameters().items()}
    stacked = {k: v[None].expand(2, *v.shape) for k, v in theta.items()}
    sample = sample_trajectories(agent._training_env(), agent.policy, stacked, task_params, 3, 100,
                                 torch.Generator().manual_seed(0))
    batch = make_task_batch(sample, config.gamma, config.gae_lambda)
    batched = adapt(agent.policy, theta, batch, config.inner_learning_rate, False, shared=True)
    for task in range(2):
        one = type(batch)(*(getattr(batch, f)[task:task + 1] for f in
                            ("obs", "actions", "old_log_probs", "advantages", "mask")))
        looped = peer._adapt(theta, one, create_graph=False)
        for name in theta:
            torch.testing.assert_close(looped[name], batched[name][task], rtol=1e-5, atol=1e-6)
    peer.close()
