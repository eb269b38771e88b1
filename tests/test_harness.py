"""Runs end to end: run folder, metrics, evaluation, resume after interruption, W&B, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import tyro
from wandb_files import config_of, history_rows, records_of, summary_of

from agents import RL2Config
from harness import TrainConfig, train
from harness.cli import _resume_command, evaluate_main, given_settings, train_main
from harness.evaluation import summarize
from harness.training import resume_config

ROOT = Path(__file__).resolve().parents[1]
TINY_FLAGS = [
    "--rl2.num-envs", "8", "--rl2.num-steps", "10", "--rl2.minibatch-size", "40",
    "--rl2.hidden-size", "16", "--eval-tasks", "200", "--no-progress",
]


def tiny_config(tmp_path: Path, **overrides) -> TrainConfig:
    values = dict(
        total_timesteps=800,
        runs_dir=tmp_path / "runs",
        run_name="tiny",
        checkpoint_interval=160,
        eval_tasks=200,
        progress=False,
        rl2=RL2Config(num_envs=8, num_steps=10, minibatch_size=40, hidden_size=16),
    )
    values.update(overrides)
    return TrainConfig(**values)


def read_metrics(path: Path, drop_time: bool = True) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    if drop_time:
        rows = [{k: v for k, v in row.items() if k != "time" and not k.startswith("time/")}
                for row in rows]
    return rows


def run_script(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            **kwargs)


def communicate(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Wait for ``process``; kill it on timeout so that no training child outlives the test."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise


# --------------------------------------------------------------------------- one run


def test_train_writes_run_folder(tmp_path):
    result = train(tiny_config(tmp_path))
    run = result.run.path
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints", "config.json", "evaluation.json", "evaluation.npz", "metrics.jsonl", "model.pt"]
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["total_timesteps"] == 800
    assert config["train"]["rl2"]["hidden_size"] == 16
    assert config["distribution"]["num_arms"] == 5
    assert "torch" in config["versions"]

    rows = read_metrics(run / "metrics.jsonl", drop_time=False)
    assert [row["step"] for row in rows[:-1]] == list(range(80, 801, 80))
    for row in rows:
        keys = set(row) - {"step", "time"}
        assert all(key.split("/")[0] in {"rollout", "train", "eval", "time"} for key in keys)
    for key in ("train/approx_kl", "train/clip_fraction", "train/entropy",
                "train/explained_variance", "time/steps_per_second",
                "rollout/mean_trial_return", "rollout/episode_return/9"):
        assert key in rows[0], key
    assert rows[-1]["eval/mean_return"] == result.evaluation["mean_return"]["mean"]


def test_evaluation_json_contents(tmp_path):
    result = train(tiny_config(tmp_path))
    evaluation = json.loads(result.run.evaluation_path.read_text())
    assert evaluation["agent"] == "rl2"
    assert evaluation["env"] == "bandit-k5-n10"
    assert evaluation["split"] == "meta-test"
    assert evaluation["num_tasks"] == 200
    assert len(evaluation["adaptation_curve"]) == 10
    mean = evaluation["mean_return"]
    assert mean["ci_low"] < mean["mean"] < mean["ci_high"]
    curve_total = sum(point["mean"] for point in evaluation["adaptation_curve"])
    assert curve_total == pytest.approx(mean["mean"])
    assert set(evaluation["references"]) == {"random", "ucb1", "thompson", "gittins",
                                             "bayes-optimal"}
    exact = evaluation["references"]["bayes-optimal"]["exact_value"]
    assert exact == pytest.approx(6.660, abs=5e-4)


def test_summarize_hand_values():
    stats = summarize([1.0, 2.0, 3.0, 4.0])
    # std with ddof=1 is sqrt(5/3) = 1.2910; half width 1.96 * 1.2910 / 2 = 1.2652.
    assert stats["mean"] == 2.5
    assert stats["ci_high"] - 2.5 == pytest.approx(1.959964 * (5 / 3) ** 0.5 / 2, rel=1e-6)


def test_evaluate_script_reproduces_evaluation(tmp_path):
    result = train(tiny_config(tmp_path))
    output = tmp_path / "again.json"
    code = evaluate_main([str(result.run.path), "--eval-tasks", "200", "--device", "cpu",
                          "--output", str(output)])
    assert code == 0
    again = json.loads(output.read_text())
    assert again["mean_return"] == result.evaluation["mean_return"]
    assert again["references"] == result.evaluation["references"]


def test_evaluate_script_keeps_the_run_record(tmp_path, capsys):
    result = train(tiny_config(tmp_path))
    run = result.run.path
    record = (run / "evaluation.json").read_bytes()
    capsys.readouterr()

    # The run's own meta-test sampled actions on 200 tasks with seed 0.
    assert evaluate_main([str(run), "--deterministic", "--device", "cpu"]) == 0
    assert "(seed 0, most likely action)" in capsys.readouterr().out
    deterministic = json.loads((run / "evaluation-deterministic.json").read_text())
    assert deterministic["deterministic"] is True
    assert (run / "evaluation-deterministic.npz").is_file()

    assert evaluate_main([str(run), "--eval-seed", "1", "--eval-tasks", "50", "--device", "cpu"]) == 0
    assert json.loads((run / "evaluation-seed1-tasks50.json").read_text())["num_tasks"] == 50
    assert (run / "evaluation.json").read_bytes() == record

    # The run's own settings, its 200 tasks included, are the defaults: they reproduce its
    # record in place.
    assert evaluate_main([str(run), "--device", "cpu"]) == 0
    assert json.loads((run / "evaluation.json").read_text()) == json.loads(record)


def test_help_joins_docstring_lines(monkeypatch, capsys):
    # Wide enough that the help's own wrapping keeps each sentence on one line.
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit):
        train_main(["--help"])
    out = capsys.readouterr().out
    # The field docstring breaks its source line after "raw rewards)."
    assert "(metrics report raw rewards). Long trials have returns in the tens;" in out
    assert "with each item of --env-kwargs added before the seed" in out


def test_evaluate_script_names_a_missing_path(tmp_path, capsys):
    assert evaluate_main([str(tmp_path / "no-such-run")]) == 2
    assert "no-such-run does not exist; pass a run folder or a model file" in capsys.readouterr().err


# --------------------------------------------------------------------------- resume


def uninterrupted_reference(tmp_path: Path, total: int) -> Path:
    process = run_script(["--total-timesteps", str(total), "--runs-dir", str(tmp_path / "a"),
                          "--run-name", "ref", "--checkpoint-interval", "400", *TINY_FLAGS])
    output, _ = communicate(process, timeout=300)
    assert process.returncode == 0, output
    return tmp_path / "a" / "ref"


def wait_for_checkpoint(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def assert_same_run(reference: Path, resumed: Path) -> None:
    assert read_metrics(resumed / "metrics.jsonl") == read_metrics(reference / "metrics.jsonl")
    a = torch.load(reference / "model.pt", weights_only=False)["policy"]
    b = torch.load(resumed / "model.pt", weights_only=False)["policy"]
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_resume_after_interruption_matches_uninterrupted(tmp_path, sig):
    total = 8000
    reference = uninterrupted_reference(tmp_path, total)
    flags = ["--total-timesteps", str(total), "--runs-dir", str(tmp_path / "b"),
             "--run-name", "cut", "--checkpoint-interval", "400", *TINY_FLAGS]
    process = run_script(flags)
    run = tmp_path / "b" / "cut"
    wait_for_checkpoint(run / "checkpoints" / "latest.pt", process)
    process.send_signal(sig)
    output, _ = communicate(process, timeout=120)
    if sig != signal.SIGKILL:
        # 130 after SIGINT, 143 after SIGTERM, as a shell reports a process stopped by them.
        assert process.returncode == 128 + sig, output
        assert "--resume --run-name cut" in output
    assert not (run / "model.pt").exists(), "the run finished before the signal arrived"

    # The printed command alone restores the saved budget and settings.
    resumed = run_script(["--resume", "--runs-dir", str(tmp_path / "b"), "--run-name", "cut",
                          "--no-progress"])
    output, _ = communicate(resumed, timeout=300)
    assert resumed.returncode == 0, output
    assert_same_run(reference, run)


def test_second_signal_stops_at_once_without_a_traceback(tmp_path):
    flags = ["--total-timesteps", "400000", "--runs-dir", str(tmp_path), "--run-name", "twice",
             "--checkpoint-interval", "400", *TINY_FLAGS]
    process = run_script(flags)
    wait_for_checkpoint(tmp_path / "twice" / "checkpoints" / "latest.pt", process)
    # Two different signals, because a second SIGINT sent before Python runs the handler
    # merges with the first. Python runs the handlers in signal-number order.
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    output, _ = communicate(process, timeout=120)
    assert process.returncode == 130, output
    assert "Stopped at once; the last checkpoint is kept" in output
    assert "--resume --run-name twice" in output
    assert "Traceback" not in output


def test_resume_command_reruns_the_program_that_trained(tmp_path, monkeypatch):
    from harness.run import RunDirectory
    from harness.training import python_command

    monkeypatch.chdir(tmp_path)
    run = RunDirectory(Path("runs") / "cut")
    tail = "--resume --run-name cut --runs-dir runs"
    assert _resume_command(run, "scripts/train.py") == f"{python_command()} scripts/train.py {tail}"
    # A script outside the working folder keeps its absolute path.
    outside = str(tmp_path.parent / "elsewhere" / "train.py")
    assert _resume_command(run, outside) == f"{python_command()} {outside} {tail}"
    # An installed command is named as the user types it when it is on PATH.
    command = tmp_path / "bin" / "my-train"
    command.parent.mkdir()
    command.write_text("#!/bin/sh\n")
    command.chmod(0o755)
    assert _resume_command(run, str(command)) == f"{command} {tail}"
    monkeypatch.setenv("PATH", f"{command.parent}{os.pathsep}{os.environ['PATH']}")
    assert _resume_command(run, str(command)) == f"my-train {tail}"


def test_resume_without_checkpoint_is_an_error(tmp_path, capsys):
    code = train_main(["--resume", "--runs-dir", str(tmp_path), "--run-name", "missing"])
    assert code == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_resumed_run_records_its_new_budget(tmp_path):
    first = train(tiny_config(tmp_path))
    started_with = json.loads((first.run.path / "config.json").read_text())["versions"]
    resumed = train(TrainConfig(resume=True, runs_dir=tmp_path / "runs", run_name="tiny",
                                total_timesteps=1600, progress=False))
    assert resumed.agent.num_timesteps == 1600
    saved = json.loads((resumed.run.path / "config.json").read_text())
    assert saved["train"]["total_timesteps"] == 1600
    assert saved["train"]["rl2"]["hidden_size"] == 16
    assert saved["versions_at_start"] == started_with


def resume_flags(tmp_path, *flags) -> TrainConfig:
    """The config ``scripts/train.py --resume`` builds from ``flags``, after resume_config."""
    argv = ["--resume", "--runs-dir", str(tmp_path / "runs"), "--run-name", "tiny", *flags]
    return resume_config(tyro.cli(TrainConfig, args=argv), given_settings(argv, TrainConfig()))


def test_resume_applies_a_flag_given_at_its_default(tmp_path):
    train(tiny_config(tmp_path))
    # 5,000,000 is the flag's default, and the run was saved with 800.
    assert resume_flags(tmp_path, "--total-timesteps", "5000000").total_timesteps == 5_000_000
    assert resume_flags(tmp_path, "--eval-tasks", "100").eval_tasks == 100
    assert resume_flags(tmp_path, "--progress").progress is True
    assert resume_flags(tmp_path).total_timesteps == 800


def test_resume_accepts_a_saved_value_again(tmp_path):
    train(tiny_config(tmp_path))
    config = resume_flags(tmp_path, "--rl2.hidden-size", "16", "--agent", "rl2")
    assert config.rl2.hidden_size == 16
    assert config.rl2.num_envs == 8


@pytest.mark.parametrize("flags, fragment", [
    (["--agent", "memory"], "--agent cannot change there (saved: 'rl2', given: 'memory')"),
    (["--rl2.hidden-size", "32"], "--rl2.hidden-size cannot change there (saved: 16, given: 32)"),
    (["--seed", "0"], None),
    (["--seed", "3"], "--seed cannot change there (saved: 0, given: 3)"),
])
def test_resume_rejects_a_changed_setting(tmp_path, flags, fragment):
    train(tiny_config(tmp_path))
    if fragment is None:
        resume_flags(tmp_path, *flags)
        return
    with pytest.raises(ValueError, match=re.escape(fragment)):
        resume_flags(tmp_path, *flags)


def test_resume_with_a_changed_setting_exits_2(tmp_path, capsys):
    train(tiny_config(tmp_path))
    code = train_main(["--resume", "--runs-dir", str(tmp_path / "runs"), "--run-name", "tiny",
                       "--agent", "memory"])
    assert code == 2
    error = capsys.readouterr().err
    assert "Drop --agent to resume, or start a new run under another --run-name" in error


def test_given_settings_reads_flag_forms():
    argv = ["--resume", "--no-progress", "--maml-ppo.no-first-order", "--rl2.hidden-size=16",
            "--env-kwargs", "window=3", "--total-timesteps", "10"]
    assert given_settings(argv, TrainConfig()) == [
        "resume", "progress", "maml_ppo.first_order", "rl2.hidden_size", "env_kwargs",
        "total_timesteps"]


@pytest.mark.parametrize("env_kwargs, name", [
    ((), "rl2-maze-9x9-n2-seed0"),
    (("window=3",), "rl2-maze-9x9-n2-window3-seed0"),
    (("window=3", "max_episode_steps=50"), "rl2-maze-9x9-n2-window3-max_episode_steps50-seed0"),
    (("label=a/b c",), "rl2-maze-9x9-n2-labela_b_c-seed0"),
])
def test_default_run_name_includes_env_kwargs(env_kwargs, name):
    assert TrainConfig(env="maze-9x9-n2", env_kwargs=env_kwargs).resolved_run_name() == name


def test_given_run_name_ignores_env_kwargs():
    config = TrainConfig(env="maze-9x9-n2", env_kwargs=("window=3",), run_name="mine")
    assert config.resolved_run_name() == "mine"


def test_existing_run_needs_resume(tmp_path):
    train(tiny_config(tmp_path))
    with pytest.raises(FileExistsError, match="Pass --resume to continue it"):
        train(tiny_config(tmp_path))


# --------------------------------------------------------------------------- W&B


def test_tracked_run_writes_offline_wandb_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    result = train(tiny_config(tmp_path, track=True, wandb_group="tests"))
    (offline_dir,) = (result.run.path / "wandb").glob("offline-run-*")
    records = records_of(offline_dir)

    config = config_of(records)
    assert config["train"]["total_timesteps"] == 800
    assert config["train"]["wandb_group"] == "tests"
    history = history_rows(records)
    steps = [row["global_step"] for row in history if "train/entropy" in row]
    assert steps == list(range(80, 801, 80))
    local = read_metrics(result.run.path / "metrics.jsonl")
    first = next(row for row in history if "train/entropy" in row)
    assert first["train/entropy"] == pytest.approx(local[0]["train/entropy"])
    summary = summary_of(records)
    assert summary["eval/meta-test/mean_return"] == pytest.approx(
        result.evaluation["mean_return"]["mean"])


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--agent", "dqn"], "unknown agent 'dqn'; choose one of: maml-ppo, memory, ppo, recurrent-ppo, rl2"),
        (["--env", "cartpole"], "unknown environment 'cartpole'.*bandit-k5-n10"),
        (["--env", "bandit-k1-n10"], r"at least 2 arms \(k >= 2\), got k=1"),
        (["--env", "bandit-k5-n0"], r"at least one pull \(n >= 1\), got n=0"),
        (["--env", "no_such_module:make"], "cannot import module 'no_such_module'"),
        (["--env", "a:b:c"], "malformed custom environment path 'a:b:c'"),
        (["--rl2.learning-rate", "0"], "--rl2.learning-rate must be a positive finite number"),
        (["--rl2.minibatch-size", "7"],
         r"--rl2.minibatch-size 7 must divide the rollout of --rl2.num-envs \* --rl2.num-steps"),
        (["--agent", "memory", "--rl2.num-envs", "64"],
         r"--rl2.\* flags were given, but the agent is memory.*\(given: --rl2.num-envs\).*--memory.\*$"),
        (["--agent", "memory", "--rl2.separate-critic"],
         r"given: --rl2.separate-critic\).*\(memory has no --memory.separate-critic\)"),
        (["--memory.memory-slots", "8"], r"--memory.\* flags were given, but the agent is rl2"),
        # Flags that repeat another agent's defaults would be ignored just as silently.
        (["--agent", "memory", "--rl2.no-separate-critic"],
         r"--rl2.\* flags were given, but the agent is memory.*\(given: --rl2.separate-critic\)"),
        (["--agent", "memory", "--rl2.hidden-size", "64"], r"\(given: --rl2.hidden-size\)"),
        (["--total-timesteps", "0"], "--total-timesteps must be a positive integer"),
        (["--eval-tasks", "20000"], r"--eval-tasks must lie in \[1, 10000\]"),
        (["--torch-threads", "0"], "--torch-threads must be a positive integer, got 0"),
        (["--env", "maze-1x1-n2"], "maze size 1 is too small to place start and goal"),
        (["--env", "maze-8x8-n2"], "maze size 8 must be odd"),
        (["--env", "maze-9x9-n2", "--env-kwargs", "window=4"], "window 4 must be odd"),
        (["--env", "maze-9x9-n2", "--env-kwargs", "window=13"], "window 13 is larger than the grid"),
        (["--env", "mdp-s1-a5-n10"], "at least 2 states, got num_states=1"),
        (["--env", "mdp-s10-a1-n10"], "at least 2 actions, got num_actions=1"),
        (["--env-kwargs", "window"], "invalid --env-kwargs item 'window'; write KEY=VALUE"),
        (["--env-kwargs", "colour=3"],
         "--env-kwargs colour=3 does not fit bandit-k5-n10.*valid keys.*num_test_tasks"),
        (["--agent", "memory", "--memory.memory-slots", "0"],
         "--memory.memory-slots must be a positive integer, got 0"),
        (["--agent", "memory", "--memory.memory-width", "-1"],
         "--memory.memory-width must be a positive integer, got -1"),
        (["--rl2.position-prediction-coef", "1.0"],
         "--rl2.position-prediction-coef 1.0 needs an environment that reports the agent's "
         "position, and bandit-k5-n10 does not"),
    ],
)
def test_bad_input_is_rejected_before_training(tmp_path, capsys, flags, message):
    code = train_main(["--runs-dir", str(tmp_path / "runs"), "--no-progress", *flags])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ")
    assert re.search(message, error, re.DOTALL), error
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_without_cuda_fails_before_run_folder(tmp_path, capsys):
    code = train_main(["--device", "cuda", "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert code == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- other families


def test_memory_agent_on_mazes_reports_steps(tmp_path, capsys):
    code = train_main([
        "--agent", "memory", "--env", "maze-7x7-n2", "--total-timesteps", "640",
        "--env-kwargs", "num_train_tasks=300", "num_test_tasks=40", "max_episode_steps=20",
        "--memory.num-envs", "8", "--memory.num-steps", "40", "--memory.minibatch-size", "80",
        "--memory.hidden-size", "16", "--memory.memory-slots", "4", "--memory.memory-width", "4",
        "--runs-dir", str(tmp_path / "runs"), "--run-name", "maze", "--no-progress",
    ])
    assert code == 0
    output = capsys.readouterr().out
    assert "Mean steps per inner episode" in output
    run = tmp_path / "runs" / "maze"
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["agent"] == "memory"
    assert evaluation["num_tasks"] == 40
    assert len(evaluation["episode_length_curve"]) == 2
    assert set(evaluation["references"]) == {"shortest-path", "random-walk", "depth-first"}
    shortest = evaluation["references"]["shortest-path"]["episode_length_curve"][0]["mean"]
    for point in evaluation["episode_length_curve"]:
        assert shortest <= point["mean"] <= 20
    config = json.loads((run / "config.json").read_text())
    assert config["distribution"]["max_episode_steps"] == 20
    assert config["train"]["env_kwargs"] == ["num_train_tasks=300", "num_test_tasks=40",
                                             "max_episode_steps=20"]
    # The evaluate script rebuilds the distribution with the same settings from model.pt.
    assert evaluate_main([str(run), "--eval-tasks", "10"]) == 0
    assert "memory" in capsys.readouterr().out


def test_rl2_on_tabular_mdps_has_references(tmp_path):
    result = train(tiny_config(
        tmp_path, env="mdp-s4-a3-n2", env_kwargs=("num_train_tasks=200", "num_test_tasks=50"),
        eval_tasks=50))
    evaluation = result.evaluation
    assert evaluation["episodes_per_trial"] == 2
    assert "episode_length_curve" not in evaluation
    references = evaluation["references"]
    assert set(references) == {"oracle", "random", "psrl", "posterior-mean"}
    assert references["oracle"]["mean_return"]["mean"] > references["random"]["mean_return"]["mean"]
    assert references["oracle"]["exact_value"] == pytest.approx(
        references["oracle"]["mean_return"]["mean"], abs=4 * references["oracle"]["mean_return"]["std"])
