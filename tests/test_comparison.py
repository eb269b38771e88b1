"""The comparison grid: config checks, local and Ray backends, resume, failures, outputs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.comparison import ComparisonConfig, EnvSettings, check_comparison, run_comparison
from harness.comparison.cli import CompareArgs, build_config, compare_main
from harness.comparison.config import bundled_configs
from harness.config import TrainConfig
from harness.run import read_per_task
from harness.training import train

REPO = Path(__file__).resolve().parents[1]

# Tiny agents: a few updates each on 3-armed bandits with 5 pulls per trial.
TINY = {
    "rl2": {"num_envs": 8, "num_steps": 10, "minibatch_size": 40, "hidden_size": 16},
    "maml-ppo": {"meta_batch_size": 4, "rollouts_per_task": 4, "hidden_sizes": [16],
                 "eval_adaptation_steps": 2},
}


def tiny_config(tmp_path: Path, agents=("rl2", "maml-ppo"), seeds=(0, 1), **overrides) -> ComparisonConfig:
    config = ComparisonConfig(
        name="tiny",
        agents=list(agents),
        envs=[EnvSettings("bandit-k3-n5", 800, {"num_test_tasks": 12})],
        seeds=list(seeds),
        hyperparameters={agent: TINY[agent] for agent in agents if agent in TINY},
        workers=2,
        output_dir=tmp_path / "comparisons",
    )
    for key, value in overrides.items():
        setattr(config, key, list(value) if key == "agents" else value)
    return config


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# --- configuration --------------------------------------------------------------------


def test_bundled_configs_load_and_pass_the_checks():
    configs = bundled_configs()
    assert {"quick", "full"} <= set(configs)
    for name in ("quick", "full"):
        config = ComparisonConfig.from_file(name)
        config.validate()
        assert len(config.seeds) == 3
        assert {"rl2", "memory", "maml-ppo", "ppo", "recurrent-ppo"} <= set(config.agents)


def test_yaml_config_builds_each_cell_as_train_would(tmp_path):
    path = write_yaml(tmp_path / "grid.yaml", {
        "name": "grid", "agents": ["rl2", "maml-ppo"], "seeds": 2,
        "envs": {"bandit-k3-n5": {"total_timesteps": 1000, "env_kwargs": {"num_test_tasks": 7},
                                  "agent_timesteps": {"maml-ppo": 500},
                                  "hyperparameters": {"rl2": {"hidden_size": 8}}}},
        "hyperparameters": {"rl2": {"hidden_size": 32, "num_envs": 4}},
        "evaluation": {"tasks": 5, "seed": 3},
    })
    config = ComparisonConfig.from_file(path)
    assert [cell.key for cell in config.cells()] == [
        "rl2-bandit-k3-n5-seed0", "rl2-bandit-k3-n5-seed1",
        "maml-ppo-bandit-k3-n5-seed0", "maml-ppo-bandit-k3-n5-seed1"]
    rl2 = config.train_config(config.cells()[1])
    # The env's own settings win over the grid-wide ones; the rest are kept.
    assert (rl2.rl2.hidden_size, rl2.rl2.num_envs) == (8, 4)
    assert (rl2.seed, rl2.total_timesteps, rl2.eval_tasks, rl2.eval_seed) == (1, 1000, 5, 3)
    assert rl2.distribution_kwargs() == {"num_test_tasks": 7}
    assert rl2.runs_dir == Path("comparisons/grid/runs")
    assert rl2.wandb_group == "grid"
    maml = config.train_config(config.cells()[2])
    assert maml.total_timesteps == 500
    assert maml.rl2 == TrainConfig().rl2  # settings of one agent never reach another


@pytest.mark.parametrize("data, message", [
    ({"agentz": ["rl2"]}, "unknown key 'agentz'; the valid keys are: name, agents"),
    ({"envs": {"bandit-k3-n5": {"total_timestep": 5}}}, "envs.bandit-k3-n5: unknown key 'total_timestep'"),
    ({"envs": {"bandit-k3-n5": {}}}, "envs.bandit-k3-n5 needs total_timesteps"),
    ({"evaluation": {"task": 5}}, "evaluation: unknown key 'task'"),
    ({"seeds": 0}, "the seed count (seeds, --seeds) must be at least 1, got 0"),
    ({"hyperparameters": {"rl2": 5}}, "hyperparameters.rl2 must be a mapping of settings"),
    ({"envs": {"bandit-k3-n5": {"total_timesteps": 5, "hyperparameters": [1]}}},
     "envs.bandit-k3-n5.hyperparameters must map agent names to their settings"),
])
def test_config_keys_that_do_not_exist_are_errors(tmp_path, data, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ComparisonConfig.from_file(write_yaml(tmp_path / "bad.yaml", data))


def test_malformed_yaml_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("agents: [rl2\n")
    with pytest.raises(ValueError, match="broken.yaml is not valid YAML"):
        ComparisonConfig.from_file(path)
    assert compare_main(["--config", str(path)]) == 2


@pytest.mark.parametrize("change, message", [
    ({"agents": ["rl2", "dqn"]}, "unknown agent 'dqn'; choose one of: "),
    ({"envs": [EnvSettings("bandit-x3", 100)]}, "unknown environment 'bandit-x3'. Known task distributions"),
    ({"seeds": []}, "seeds must be a count of at least 1"),
    ({"workers": 0}, "workers must be a positive integer, got 0"),
    ({"backend": "slurm"}, "unknown backend 'slurm'; choose one of: local, ray"),
    ({"address": "10.0.0.1:6379"}, "is for the Ray backend"),
    ({"envs": [EnvSettings("bandit-k3-n5", 0)]}, "envs.bandit-k3-n5.total_timesteps must be a positive"),
    ({"hyperparameters": {"rl2": {"hidden_sise": 3}}},
     "hyperparameters.rl2 .* has the unknown key 'hidden_sise'; the valid keys are: num_envs"),
    ({"hyperparameters": {"rl2": {"hidden_size": -1}}},
     "cell rl2-bandit-k3-n5-seed0: .*hidden.*the key some_name under hyperparameters.rl2"),
    ({"hyperparameters": {"memory": {"hidden_size": 4}}}, "not in the agents list"),
    ({"normalize": "sometimes"}, "normalize must be one of auto, always, never"),
    ({"name": "a b"}, "invalid comparison name 'a b'"),
])
def test_bad_grids_are_rejected_before_any_cell_starts(tmp_path, change, message):
    config = tiny_config(tmp_path, **{"agents": ("rl2",), **change})
    with pytest.raises(ValueError, match=message):
        run_comparison(config, progress=False)
    assert not config.folder.exists()


def test_normalize_always_needs_an_oracle_on_every_env(tmp_path):
    config = tiny_config(tmp_path, agents=("rl2",), normalize="always")
    with pytest.raises(ValueError, match="bandit-k3-n5 has random, ucb1, thompson, gittins, "
                                         "bayes-optimal; set normalize: auto"):
        check_comparison(config)


def test_ray_unreachable_address_rejected(tmp_path):
    pytest.importorskip("ray")
    # Port 1 on the loopback interface: nothing listens there, so the connection is refused.
    config = tiny_config(tmp_path, agents=("rl2",), backend="ray", address="127.0.0.1:1")
    with pytest.raises(ValueError, match=r"cannot reach the Ray cluster at '127.0.0.1:1'"):
        run_comparison(config, progress=False)
    assert not (config.folder / "runs").exists()


def test_flags_override_the_config_file(tmp_path):
    args = CompareArgs(config="quick", seeds=1, workers=1, agents=("rl2",), output_dir=tmp_path)
    config = build_config(args)
    assert (config.seeds, config.workers, config.agents, config.output_dir) == ([0], 1, ["rl2"], tmp_path)
    assert config.name == "quick"
    flags_only = build_config(CompareArgs(envs=("bandit-k3-n5",), total_timesteps=100, name="x"))
    assert [(env.name, env.total_timesteps) for env in flags_only.envs] == [("bandit-k3-n5", 100)]
    with pytest.raises(ValueError, match="--envs needs --total-timesteps"):
        build_config(CompareArgs(envs=("bandit-k3-n5",)))


def test_rerun_other_settings_rejected(tmp_path):
    config = tiny_config(tmp_path, agents=("rl2",), seeds=(0,))
    config.folder.mkdir(parents=True)
    changed = tiny_config(tmp_path, agents=("rl2",), seeds=(0,))
    changed.envs = [EnvSettings("bandit-k3-n5", 1600, {"num_test_tasks": 12})]
    (config.folder / "comparison.yaml").write_text(yaml.safe_dump(config.to_dict()))
    with pytest.raises(ValueError, match="contains a comparison with other settings \\(envs differ"):
        check_comparison(changed)
    # Where and how the cells run may change between a stop and a rerun.
    config.workers = 1
    check_comparison(config)


# --- a whole grid on the local backend --------------------------------------------------


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    """Two agents x two seeds on bandits, trained by worker processes, then the outputs."""
    tmp_path = tmp_path_factory.mktemp("grid")
    config = tiny_config(tmp_path)
    result = run_comparison(config, progress=False)
    return config, result


def test_grid_cells_share_held_out_tasks(finished_grid):
    config, result = finished_grid
    assert [outcome.status for outcome in result.outcomes] == ["finished"] * 4, result.outcomes
    evaluations = [json.loads((config.runs_dir / cell.key / "evaluation.json").read_text())
                   for cell in config.cells()]
    assert {e["num_tasks"] for e in evaluations} == {12}
    assert {e["seed"] for e in evaluations} == {0}
    # The references ran on the same tasks, so every trial-level evaluation reports the same values.
    rl2 = [e for e in evaluations if e["agent"] == "rl2"]
    assert rl2[0]["references"] == rl2[1]["references"]
    for cell in config.cells():
        returns = read_per_task(config.runs_dir / cell.key / "evaluation.npz")["returns"]
        assert returns.shape == ((12, 5) if cell.agent == "rl2" else (12, 3))


def test_results_csv_has_one_row_per_curve_point(finished_grid):
    config, result = finished_grid
    with open(config.folder / "results.csv") as file:
        rows = list(csv.DictReader(file))
    # rl2: 5 inner episodes x 2 seeds; maml-ppo: 0, 1 and 2 adaptation steps x 2 seeds.
    assert len(rows) == 5 * 2 + 3 * 2
    rl2_seed1 = [row for row in rows if row["agent"] == "rl2" and row["seed"] == "1"]
    assert [row["index"] for row in rl2_seed1] == ["1", "2", "3", "4", "5"]
    assert {row["unit"] for row in rl2_seed1} == {"inner episode"}
    evaluation = json.loads((config.runs_dir / "rl2-bandit-k3-n5-seed1" / "evaluation.json").read_text())
    assert [float(row["mean_return"]) for row in rl2_seed1] == pytest.approx(
        [point["mean"] for point in evaluation["adaptation_curve"]])
    maml = [row["index"] for row in rows if row["agent"] == "maml-ppo" and row["seed"] == "0"]
    assert maml == ["0", "1", "2"]
    assert all(float(row["wall_seconds"]) > 0 and int(row["env_steps"]) >= 800 for row in rows)


def test_summary_score_per_episode_mean(finished_grid):
    config, result = finished_grid
    summary = {row["agent"]: row for row in result.report.summary_rows}
    scores = np.stack([read_per_task(config.runs_dir / f"rl2-bandit-k3-n5-seed{s}" / "evaluation.npz")
                       ["returns"].mean(axis=1) for s in (0, 1)])
    assert summary["rl2"]["mean"] == pytest.approx(scores.mean())
    assert summary["rl2"]["ci_low"] <= summary["rl2"]["mean"] <= summary["rl2"]["ci_high"]
    # Bandits have no oracle reference, so auto normalization leaves the score unnormalized.
    assert summary["rl2"]["normalized_mean"] is None
    maml_steps = json.loads((config.runs_dir / "maml-ppo-bandit-k3-n5-seed0" / "evaluation.json")
                            .read_text())["trained_adaptation_steps"]
    maml = np.stack([read_per_task(config.runs_dir / f"maml-ppo-bandit-k3-n5-seed{s}" / "evaluation.npz")
                     ["returns"][:, maml_steps] for s in (0, 1)])
    assert summary["maml-ppo"]["mean"] == pytest.approx(maml.mean())


def test_report_and_plots_are_written(finished_grid):
    config, result = finished_grid
    report = (config.folder / "report.md").read_text()
    assert "## bandit-k3-n5" in report
    assert "| rl2 | 2 |" in report
    assert "| maml-ppo | 2 |" in report
    assert "References, mean episode return on the same tasks: random" in report
    for key, path in result.report.plots.items():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", key
        assert f"(plots/{path.name})" in report
    assert {"plots/bandit-k3-n5/adaptation", "plots/bandit-k3-n5/training"} <= set(result.report.plots)


def test_rerun_reuses_finished_cells(finished_grid):
    config, _ = finished_grid
    model = config.runs_dir / "rl2-bandit-k3-n5-seed0" / "model.pt"
    before = model.stat().st_mtime_ns
    result = run_comparison(config, progress=False)
    assert [outcome.status for outcome in result.outcomes] == ["reused"] * 4
    assert model.stat().st_mtime_ns == before


def test_half_finished_cell_resumes(tmp_path):
    config = tiny_config(tmp_path, agents=("rl2",), seeds=(0,))
    config.checkpoints_per_cell = 2
    # Train the cell to its first checkpoint only (half the budget), as a stopped comparison
    # would leave it: a checkpoint, no model and no evaluation.
    cell = config.cells()[0]
    partial = config.train_config(cell)
    partial.total_timesteps = 400
    train(partial)
    run_dir = config.runs_dir / cell.key
    (run_dir / "model.pt").unlink()
    (run_dir / "evaluation.json").unlink()
    result = run_comparison(config, progress=False)
    assert result.outcomes[0].status == "finished"
    log = (config.folder / "logs" / f"{cell.key}.log").read_text()
    assert "resumed rl2-bandit-k3-n5-seed0 at 400 env steps" in log
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["num_timesteps"] == 800


# --- failures, processes and W&B ----------------------------------------------------------

FAILING_MODULE = '''
"""A bandit family whose environments break after a few hundred steps, to test cell failures."""
from envs.bandits import BanditDistribution

class BreakingDistribution(BanditDistribution):
    def __init__(self, **kwargs):
        super().__init__(num_arms=3, num_pulls=5, **kwargs)

    def make_batched_env(self, num_envs, *args, **kwargs):
        if num_envs > 1:  # the contract check before training builds one env; training builds 8
            raise RuntimeError("this family breaks on purpose when training starts")
        return super().make_batched_env(num_envs, *args, **kwargs)
'''


def test_failing_cell_reported_others_finish(tmp_path, monkeypatch, capsys):
    (tmp_path / "breaking_family.py").write_text(FAILING_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    config = tiny_config(tmp_path, agents=("rl2",), seeds=(0,))
    config.envs.append(EnvSettings("breaking_family:BreakingDistribution", 800, {"num_test_tasks": 12}))
    config_path = write_yaml(tmp_path / "grid.yaml", config.to_dict())
    status = compare_main(["--config", str(config_path), "--no-progress"])
    assert status == 1
    err = capsys.readouterr().err
    assert "FAILED rl2-breaking_family.BreakingDistribution-seed0: RuntimeError: this family breaks" in err
    assert "Traceback (most recent call last)" in err
    report = (config.folder / "report.md").read_text()
    assert "## Failed cells" in report
    assert "| rl2-bandit-k3-n5-seed0 | finished |" in report


def _processes_with(marker: str) -> list[int]:
    """Return the PIDs of other processes whose environment contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_wandb_grid_leaves_no_processes(tmp_path, monkeypatch):
    from wandb_files import history_rows, read_transaction_log

    marker = f"ADAPTRL_TEST_{uuid.uuid4().hex}"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv(marker, "1")
    config = tiny_config(tmp_path, agents=("rl2",), seeds=(0, 1), track=True)
    result = run_comparison(config, progress=False)
    assert [outcome.status for outcome in result.outcomes] == ["finished"] * 2
    assert _processes_with(marker) == []
    for cell in config.cells():
        assert list((config.runs_dir / cell.key / "wandb").glob("offline-run-*/run-*.wandb"))
    logs = list((config.folder / "summary" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logs) == 1
    records = read_transaction_log(logs[0])
    run = next(record.run for record in records if record.HasField("run"))
    assert run.run_group == "tiny"
    rows = history_rows(records)
    assert len(rows) == 1
    assert rows[0]["comparison/results._type"] == "table-file"
    assert rows[0]["comparison/results.nrows"] == 5 * 2  # 5 inner episodes x 2 seeds
    assert rows[0]["comparison/summary.nrows"] == 1
    assert rows[0]["plots/bandit-k3-n5/adaptation._type"] == "image-file"


def test_ray_backend_returns_run_folders(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        config = tiny_config(tmp_path, agents=("rl2",), backend="ray")
        result = run_comparison(config, progress=False)
    finally:
        ray.shutdown()
    assert [outcome.status for outcome in result.outcomes] == ["finished"] * 2
    for cell in config.cells():
        folder = config.runs_dir / cell.key
        assert (folder / "evaluation.npz").is_file()
        assert (folder / "model.pt").is_file()
    assert (config.folder / "report.md").is_file()


def test_training_curve_smoothing_by_hand():
    from harness.comparison.report import smooth

    steps = np.arange(50.0)
    # 50 points / 25 gives a window of 2: each value averages itself and the one before.
    _, values = smooth(steps, np.arange(50.0))
    assert values[:4].tolist() == [0.0, 0.5, 1.5, 2.5]
    assert values[-1] == 48.5
    _, short = smooth(steps[:10], np.arange(10.0))
    assert short.tolist() == list(range(10))


def test_ray_address_must_be_host_and_port():
    from harness.comparison.backends import check_reachable

    with pytest.raises(ValueError, match="invalid Ray address 'head-node'; expected host:port"):
        check_reachable("head-node")


def test_compare_script_prints_help():
    completed = subprocess.run([sys.executable, "scripts/compare.py", "--help"], cwd=REPO,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0
    assert "--config" in completed.stdout


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_ctrl_c_checkpoints_running_cells(tmp_path):
    import signal
    import time

    marker = f"ADAPTRL_TEST_{uuid.uuid4().hex}"
    config = tiny_config(tmp_path, agents=("rl2",), seeds=(0, 1))
    # A budget far beyond what the test waits for, so the cells are training when stopped.
    config.envs = [EnvSettings("bandit-k3-n5", 50_000_000, {"num_test_tasks": 12})]
    path = write_yaml(tmp_path / "grid.yaml", config.to_dict())
    env = {**os.environ, marker: "1", "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "scripts/compare.py", "--config", str(path), "--no-progress"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = [config.runs_dir / cell.key / "metrics.jsonl" for cell in config.cells()]
    deadline = time.monotonic() + 120
    while not all(path.is_file() and path.stat().st_size > 0 for path in metrics):
        assert time.monotonic() < deadline, "the cells did not start training"
        assert driver.poll() is None, driver.stdout.read()
        time.sleep(0.5)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=180)
    assert driver.returncode == 130, output
    assert "run the same command again to resume" in output
    assert _processes_with(marker) == []
    for cell in config.cells():
        run_dir = config.runs_dir / cell.key
        assert (run_dir / "checkpoints" / "latest.pt").is_file()
        assert json.loads((run_dir / "cell.json").read_text())["status"] == "interrupted"
