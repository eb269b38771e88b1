"""A researcher's own task family, in a module outside the package, through the scripts.

The module is docs/examples/my_tasks.py, copied into a temporary folder that only
PYTHONPATH (for the scripts) or sys.path (in this process) makes importable, so the test
trains exactly what the documentation shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import envs
from envs import ContractError, check_task_distribution, make_distribution
from envs.contract import (
    RULE_INFO,
    RULE_KEEPS_TASK,
    RULE_OBSERVATION,
    RULE_PICKLE,
    RULE_SAMPLE_TASKS,
    RULE_SEEDED_SAMPLER,
    RULE_SET_TASK,
    RULE_SNAPSHOT,
    RULE_STEP,
    RULE_TASK_ASSIGNMENT,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "my_tasks.py"
GUIDE = ROOT / "docs" / "custom-environments.md"
DISTRIBUTION = "LineGoalDistribution"
BROKEN_MODULE = "my_broken_tasks"
# Seconds a script may take here: about 5 on an idle 2-core machine, far more when busy.
SCRIPT_TIMEOUT = 300

# Variants of the example that each break one rule of the environment contract.
BROKEN_SOURCE = '''
import gymnasium as gym
import numpy as np

from my_tasks import LineGoalDistribution, LineGoalEnv, LineGoalTask


class EnvWithoutSetTask(gym.Env):
    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(1, dtype=np.float32), 0.0, False, False, {}


class NoSetTask(LineGoalDistribution):
    def make_env(self, oracle=False):
        return EnvWithoutSetTask()


class FarEnv(LineGoalEnv):
    """Reports five times its position, outside its Box(-1, 1)."""

    def _observe(self):
        return np.array([5.0 * self._position], dtype=np.float32)


class ObservationOutside(LineGoalDistribution):
    def make_env(self, oracle=False):
        return FarEnv(self.horizon)


class Float64Env(LineGoalEnv):
    def _observe(self):
        return np.array([self._position])


class ObservationFloat64(LineGoalDistribution):
    def make_env(self, oracle=False):
        return Float64Env(self.horizon)


class GoalInInfoEnv(LineGoalEnv):
    def _info(self):
        return {"goal": self.task.goal}


class TaskInInfo(LineGoalDistribution):
    def make_env(self, oracle=False):
        return GoalInInfoEnv(self.horizon)


class GoalUnderOtherKeyEnv(LineGoalEnv):
    def _info(self):
        return {"debug": {"target": np.float32(self.task.goal)}}


class GoalUnderOtherKey(LineGoalDistribution):
    def make_env(self, oracle=False):
        return GoalUnderOtherKeyEnv(self.horizon)


class TaskObjectEnv(LineGoalEnv):
    def _info(self):
        return {"current": [self.task]}


class TaskObjectInInfo(LineGoalDistribution):
    def make_env(self, oracle=False):
        return TaskObjectEnv(self.horizon)


class ConstantEnv(LineGoalEnv):
    """Reports a constant that equals the goal of the first task, which is no leak."""

    def _info(self):
        return {"step_size": 0.25}


class ConstantInInfo(LineGoalDistribution):
    def sample_tasks(self, rng, num_tasks):
        tasks = super().sample_tasks(rng, num_tasks)
        return [LineGoalTask(0.25), *tasks[1:]]

    def make_env(self, oracle=False):
        return ConstantEnv(self.horizon)


class GlobalRandom(LineGoalDistribution):
    def sample_tasks(self, rng, num_tasks):
        return [LineGoalTask(goal) for goal in np.random.uniform(-1.0, 1.0, num_tasks)]


class ListTask(LineGoalDistribution):
    def sample_tasks(self, rng, num_tasks):
        return [[float(goal)] for goal in rng.uniform(-1.0, 1.0, num_tasks)]


class ForgetfulEnv(LineGoalEnv):
    """Drops its task at every reset."""

    def reset(self, *, seed=None, options=None):
        result = super().reset(seed=seed, options=options)
        self._task = None
        return result


class Forgetful(LineGoalDistribution):
    def make_env(self, oracle=False):
        return ForgetfulEnv(self.horizon)


class TwoActionsEnv(LineGoalEnv):
    def step(self, action):
        if int(action) == 2:
            raise ValueError("invalid action 2")
        return super().step(action)


class RejectsAction(LineGoalDistribution):
    def make_env(self, oracle=False):
        return TwoActionsEnv(self.horizon)


class Unpicklable(LineGoalDistribution):
    def make_env(self, oracle=False):
        env = LineGoalEnv(self.horizon)
        env.log = lambda message: None
        return env


class PlainTaskEnv(LineGoalEnv):
    """Keeps task as a plain attribute, so assigning it skips set_task."""

    task = None

    def set_task(self, task):
        self.__dict__["task"] = task
        self._task = task


class PlainTaskAttribute(LineGoalDistribution):
    def make_env(self, oracle=False):
        return PlainTaskEnv(self.horizon)


class NoSnapshotEnv(LineGoalEnv):
    snapshot = property()


class NoSnapshot(LineGoalDistribution):
    def make_env(self, oracle=False):
        return NoSnapshotEnv(self.horizon)


class NoisyEnv(LineGoalEnv):
    """Adds reward noise but leaves the random generator out of its snapshot."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward + float(self.np_random.normal(0.0, 0.01)), terminated, truncated, info

    @property
    def snapshot(self):
        return {"task": self._task, "position": self._position, "steps": self._elapsed_steps}

    @snapshot.setter
    def snapshot(self, snapshot):
        self._task = snapshot["task"]
        self._position = snapshot["position"]
        self._elapsed_steps = snapshot["steps"]


class PartialSnapshot(LineGoalDistribution):
    def make_env(self, oracle=False):
        return NoisyEnv(self.horizon)
'''


@dataclass(frozen=True)
class UserModule:
    """The example module, importable as ``name`` from ``folder`` and nowhere else."""

    name: str
    folder: Path

    @property
    def distribution(self) -> str:
        return f"{self.name}:{DISTRIBUTION}"


@pytest.fixture
def user_module(tmp_path, monkeypatch) -> UserModule:
    """Copy the example, and the broken variants beside it, into a folder outside the package."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    (folder / f"{BROKEN_MODULE}.py").write_text(BROKEN_SOURCE)
    monkeypatch.syspath_prepend(str(folder))
    yield UserModule(EXAMPLE.stem, folder)
    for name in (EXAMPLE.stem, BROKEN_MODULE):
        sys.modules.pop(name, None)


def run_script(script: str, args: list[str], pythonpath: Path | None, cwd: Path):
    """Run one of scripts/ in a fresh interpreter, with ``pythonpath`` as its only extra path."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT,
    )


def tiny_training_flags(runs_dir: Path) -> list[str]:
    return [
        "--runs-dir", str(runs_dir), "--total-timesteps", "160", "--checkpoint-interval", "80",
        "--rl2.num-envs", "4", "--rl2.num-steps", "20", "--rl2.minibatch-size", "40",
        "--rl2.hidden-size", "8", "--eval-tasks", "20", "--device", "cpu",
        "--torch-threads", "1", "--no-progress",
    ]


# --------------------------------------------------------------------------- the working path


def test_example_loads_by_path(user_module):
    distribution = make_distribution(user_module.distribution, horizon=5, num_test_tasks=30)
    assert distribution.name == "line-goal"
    assert distribution.horizon == 5
    assert len(distribution.meta_split().test) == 30
    assert distribution.registry_name == user_module.distribution


def test_train_and_evaluate_custom_env(user_module, tmp_path):
    runs_dir = tmp_path / "runs"
    train = run_script(
        "train.py",
        ["--env", user_module.distribution, "--agent", "rl2", "--env-kwargs", "horizon=5",
         *tiny_training_flags(runs_dir)],
        user_module.folder, tmp_path,
    )
    assert train.returncode == 0, train.stderr
    run_dir = runs_dir / "rl2-my_tasks.LineGoalDistribution-horizon5-seed0"
    for name in ("config.json", "metrics.jsonl", "model.pt", "checkpoints/latest.pt",
                 "evaluation.json"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["env"] == user_module.distribution
    assert config["distribution"]["horizon"] == 5
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["agent"] == "rl2"
    assert evaluation["env"] == "line-goal"
    assert evaluation["num_tasks"] == 20
    assert len(evaluation["adaptation_curve"]) == 2  # one point per inner episode
    assert "line-goal" in train.stdout

    output = tmp_path / "evaluation-again.json"
    evaluate = run_script(
        "evaluate.py",
        [str(run_dir), "--eval-tasks", "10", "--device", "cpu", "--torch-threads", "1",
         "--output", str(output)],
        user_module.folder, tmp_path,
    )
    assert evaluate.returncode == 0, evaluate.stderr
    again = json.loads(output.read_text())
    assert again["env"] == "line-goal"
    assert again["num_tasks"] == 10

    # Without the folder on PYTHONPATH the run's module cannot be imported, and the error
    # names the fix.
    lost = run_script("evaluate.py", [str(run_dir), "--device", "cpu"], None, tmp_path)
    assert lost.returncode == 2
    assert lost.stderr.startswith("error: ")
    assert "add its folder to PYTHONPATH" in lost.stderr


def test_compare_custom_env(user_module, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "name: mine\n"
        "agents: [rl2]\n"
        "seeds: 2\n"
        f"envs:\n  {user_module.distribution}:\n"
        "    total_timesteps: 160\n"
        "    env_kwargs: {horizon: 5, num_test_tasks: 20}\n"
        "hyperparameters:\n"
        "  rl2: {num_envs: 4, num_steps: 20, minibatch_size: 40, hidden_size: 8}\n"
        f"output_dir: {tmp_path / 'comparisons'}\n"
    )
    compare = run_script("compare.py", ["--config", str(grid), "--no-progress"],
                         user_module.folder, tmp_path)
    assert compare.returncode == 0, compare.stderr
    folder = tmp_path / "comparisons" / "mine"
    rows = (folder / "results.csv").read_text().splitlines()
    # Header, then one row per seed and inner episode.
    assert len(rows) == 1 + 2 * 2
    assert rows[1].startswith(f"{user_module.distribution},rl2,0,inner episode,1,")
    assert f"## {user_module.distribution}" in (folder / "report.md").read_text()


# --------------------------------------------------------------------------- broken envs


@pytest.mark.parametrize(
    "attribute, rule, fix",
    [
        ("NoSetTask", RULE_SET_TASK, "add a method set_task(self, task)"),
        ("ObservationOutside", RULE_OBSERVATION, "widen low and high of the observation_space"),
        ("TaskInInfo", RULE_INFO, "remove the task and its parameters from info"),
    ],
)
def test_broken_env_rejected_by_cli(user_module, tmp_path, attribute, rule, fix):
    result = run_script(
        "train.py",
        ["--env", f"{BROKEN_MODULE}:{attribute}", *tiny_training_flags(tmp_path / "runs")],
        user_module.folder, tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    assert f"breaks the contract rule '{rule}'" in result.stderr
    assert f"Fix: {fix}" in result.stderr
    assert f"{BROKEN_MODULE}.{attribute}" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "attribute, rule, details",
    [
        ("NoSetTask", RULE_SET_TASK, ["env my_broken_tasks.EnvWithoutSetTask"]),
        ("ObservationOutside", RULE_OBSERVATION,
         ["returned the observation [", "outside Box(-1.0, 1.0, (1,), float32)",
          "step 1 after reset(seed=0)"]),
        ("ObservationFloat64", RULE_OBSERVATION,
         ["reset(seed=0)", "dtype float64 does not cast safely", "dtype=np.float32"]),
        ("TaskInInfo", RULE_INFO, ["info['goal']", "named like the task or one of its fields"]),
        ("GoalUnderOtherKey", RULE_INFO,
         ["info['debug']['target']", "the value of the task field 'goal'"]),
        ("TaskObjectInInfo", RULE_INFO, ["info['current'][0] contains the task LineGoalTask("]),
        ("GlobalRandom", RULE_SEEDED_SAMPLER, ["never from np.random"]),
        ("ListTask", RULE_SAMPLE_TASKS, ["not an envs.Task", "frozen dataclass"]),
        ("Forgetful", RULE_KEEPS_TASK, ["after reset(seed=0)", "env.unwrapped.task is None"]),
        ("RejectsAction", RULE_STEP, ["raised ValueError: invalid action 2"]),
        ("Unpicklable", RULE_PICKLE, ["__getstate__"]),
        ("PlainTaskAttribute", RULE_TASK_ASSIGNMENT, ["setter calls set_task"]),
        ("NoSnapshot", RULE_SNAPSHOT, ["add a snapshot property"]),
        ("PartialSnapshot", RULE_SNAPSHOT, ["bit_generator.state", "the env restored from a snapshot"]),
    ],
)
def test_broken_env_names_rule(user_module, attribute, rule, details):
    with pytest.raises(ContractError) as caught:
        make_distribution(f"{BROKEN_MODULE}:{attribute}")
    message = str(caught.value)
    assert caught.value.rule == rule
    assert message.startswith(f"task distribution {BROKEN_MODULE}.{attribute} ('line-goal')")
    assert f"breaks the contract rule '{rule}'" in message
    assert ". Fix: " in message
    for detail in details:
        assert detail in message


def test_constant_in_info_not_a_leak(user_module):
    # The first task's goal is 0.25, and so is the env's constant: the other tasks show that
    # the value does not follow the task.
    make_distribution(f"{BROKEN_MODULE}:ConstantInInfo")


# --------------------------------------------------------------------------- built-in families


@pytest.mark.parametrize("name", sorted(set(envs.known_names())))
def test_builtin_family_keeps_contract(name):
    if name.startswith(("halfcheetah", "ant")):
        pytest.importorskip("mujoco")
    check_task_distribution(make_distribution(name))


def test_oracle_env_breaks_info_rule():
    distribution = make_distribution("navigation-2d")
    distribution.make_env = lambda oracle=False: envs.Navigation2DEnv(oracle=True)
    with pytest.raises(ContractError, match=r"info with the key info\['task'\]") as caught:
        check_task_distribution(distribution)
    assert caught.value.rule == RULE_INFO


# --------------------------------------------------------------------------- the guide


def test_guide_excerpts_match_example():
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    assert len(blocks) >= 4
    example = EXAMPLE.read_text()
    for block in blocks:
        assert block in example, f"the guide's excerpt is not in {EXAMPLE.name}:\n{block}"


def test_guide_error_matches_check(user_module):
    (shown,) = re.findall(r"```\n(error: .*?)\n```", GUIDE.read_text(), re.DOTALL)
    with pytest.raises(ContractError) as caught:
        make_distribution(f"{BROKEN_MODULE}:ObservationOutside")
    assert shown == f"error: {caught.value}"
