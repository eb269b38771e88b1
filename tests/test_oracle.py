"""Tests of the task-sampling env, the oracle training script and the locomotion references."""

import json
import logging
import math
import pickle
import signal
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.references import run_references
from agents.references.locomotion import (
    ORACLE_RETURNS_DIR_VARIABLE,
    ZERO_ACTION_MAX_TASKS,
    load_oracle_record,
    locomotion_references,
    oracle_record_name,
    zero_action_result,
)
from envs import (
    AntGoalTask,
    ContractError,
    HalfCheetahVelTask,
    Navigation2DDistribution,
    Navigation2DEnv,
    Navigation2DTask,
    NonFiniteError,
    TaskDistribution,
    TaskSamplingEnv,
    make_distribution,
)
from harness import oracle as oracle_module
from harness.evaluation import reference_returns
from harness.oracle import OracleConfig, evaluate_oracle, oracle_main, train_oracle

ROOT = Path(__file__).resolve().parents[1]


def small_navigation(**kwargs) -> Navigation2DDistribution:
    """Navigation with 4 meta-train and 3 meta-test goals, so that draws repeat often."""
    return Navigation2DDistribution(num_train_tasks=4, num_test_tasks=3, **kwargs)


# ------------------------------------------------------------------------ TaskSamplingEnv


def test_visible_navigation_appends_goal_hand_checked():
    env = TaskSamplingEnv(small_navigation(), task_visible=True)
    task = Navigation2DTask(0.25, -0.5)
    obs, _ = env.reset(seed=0, options={"task": task})
    # Position (0, 0) at the start, then goal_x, goal_y.
    np.testing.assert_array_equal(obs, np.array([0.0, 0.0, 0.25, -0.5], dtype=np.float32))
    obs, reward, terminated, truncated, _ = env.step(np.array([0.1, 0.05], dtype=np.float32))
    np.testing.assert_allclose(obs, [0.1, 0.05, 0.25, -0.5], atol=1e-7)
    # Minus the distance from (0.1, 0.05) to (0.25, -0.5): -sqrt(0.15² + 0.55²).
    assert reward == pytest.approx(-math.hypot(0.15, 0.55), abs=1e-6)
    assert not terminated
    assert not truncated
    assert env.observation_space.shape == (4,)
    assert env.observation_space.dtype == np.float32


def test_hidden_navigation_keeps_base_observation():
    distribution = small_navigation()
    env = TaskSamplingEnv(distribution, task_visible=False)
    obs, _ = env.reset(seed=0, options={"task": Navigation2DTask(0.25, -0.5)})
    np.testing.assert_array_equal(obs, np.zeros(2, dtype=np.float32))
    assert env.observation_space == distribution.make_env().observation_space
    assert env.num_task_params == 0


def test_visible_ant_goal_params_in_field_order():
    distribution = make_distribution("ant-goal", horizon=5)
    visible = TaskSamplingEnv(distribution, task_visible=True)
    hidden = TaskSamplingEnv(distribution, task_visible=False)
    task = AntGoalTask(1.5, -2.0)
    obs, _ = visible.reset(seed=3, options={"task": task})
    base, _ = hidden.reset(seed=3, options={"task": task})
    assert obs.shape == (31,)  # Ant's 29 values, then goal_x and goal_y
    assert obs[-2] == 1.5
    assert obs[-1] == -2.0
    np.testing.assert_array_equal(obs[:29], base)
    assert visible.observation_space.shape == (31,)
    assert visible.observation_space.dtype == np.float64


def test_visible_cheetah_appends_target_velocity():
    env = TaskSamplingEnv(make_distribution("halfcheetah-vel", horizon=5), task_visible=True)
    obs, _ = env.reset(seed=0, options={"task": HalfCheetahVelTask(1.25)})
    assert obs.shape == (18,)
    assert obs[-1] == 1.25
    for _ in range(3):
        obs, *_ = env.step(np.zeros(6))
        assert obs[-1] == 1.25


def test_new_task_each_episode_from_meta_train():
    distribution = small_navigation()
    split = distribution.meta_split()
    env = TaskSamplingEnv(distribution, task_visible=True)
    env.reset(seed=0)
    seen = []
    for _ in range(40):
        obs, _ = env.reset()
        assert env.task in split.train
        assert env.task not in split.test
        np.testing.assert_array_equal(obs[2:], [env.task.goal_x, env.task.goal_y])
        seen.append(env.task)
    assert set(seen) == set(split.train)
    assert any(a != b for a, b in zip(seen, seen[1:]))


def test_meta_test_split_draws_test_tasks():
    distribution = small_navigation()
    split = distribution.meta_split()
    env = TaskSamplingEnv(distribution, split="meta-test")
    env.reset(seed=1)
    seen = set()
    for _ in range(30):
        env.reset()
        assert env.task in split.test
        seen.add(env.task)
    assert seen == set(split.test)


def test_task_draws_are_uniform():
    distribution = small_navigation()
    env = TaskSamplingEnv(distribution)
    env.reset(seed=2)
    counts = {task: 0 for task in distribution.meta_split().train}
    draws = 4000
    for _ in range(draws):
        env.reset()
        counts[env.task] += 1
    # Each share has a standard deviation of sqrt(0.25 * 0.75 / 4000) = 0.007.
    for task, count in counts.items():
        assert count / draws == pytest.approx(0.25, abs=0.03), task


def test_task_option_honoured():
    distribution = small_navigation()
    env = TaskSamplingEnv(distribution, task_visible=True)
    task = Navigation2DTask(0.3, 0.4)  # in neither split
    obs, _ = env.reset(seed=0, options={"task": task})
    assert env.task == task
    assert env.env.task == task
    np.testing.assert_array_equal(obs[2:], np.array([0.3, 0.4], dtype=np.float32))
    env.reset()
    assert env.task in distribution.meta_split().train


def test_seeded_resets_reproducible():
    distribution = small_navigation()

    def task_sequence(seed: int) -> list:
        env = TaskSamplingEnv(distribution)
        env.reset(seed=seed)
        tasks = [env.task]
        for _ in range(12):
            env.reset()
            tasks.append(env.task)
        return tasks

    assert task_sequence(7) == task_sequence(7)
    assert task_sequence(7) != task_sequence(8)


def test_seeded_cheetah_reset_noise_reproducible():
    distribution = make_distribution("halfcheetah-vel", horizon=5)
    first = TaskSamplingEnv(distribution, task_visible=True)
    second = TaskSamplingEnv(distribution, task_visible=True)
    obs_first, _ = first.reset(seed=3)
    obs_second, _ = second.reset(seed=3)
    assert first.task == second.task
    np.testing.assert_array_equal(obs_first, obs_second)
    obs_other, _ = second.reset(seed=4)
    assert not np.array_equal(obs_first[:17], obs_other[:17])


@pytest.mark.parametrize("task_visible", [True, False])
def test_check_env_navigation(task_visible):
    check_env(TaskSamplingEnv(small_navigation(), task_visible=task_visible))


@pytest.mark.parametrize("task_visible", [True, False])
def test_check_env_cheetah(task_visible):
    distribution = make_distribution("halfcheetah-dir", horizon=5)
    check_env(TaskSamplingEnv(distribution, task_visible=task_visible), skip_render_check=True)


def test_pickle_mid_episode_cheetah():
    env = TaskSamplingEnv(make_distribution("halfcheetah-vel", horizon=50), task_visible=True)
    env.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(4):
        env.step(rng.uniform(-1, 1, 6))
    clone = pickle.loads(pickle.dumps(env))
    action = rng.uniform(-1, 1, 6)
    obs, reward, *_ = env.step(action)
    obs_clone, reward_clone, *_ = clone.step(action)
    np.testing.assert_array_equal(obs, obs_clone)
    assert reward == reward_clone
    env.reset()
    clone.reset()
    assert env.task == clone.task


def test_dummy_vec_env_new_tasks_after_autoreset():
    distribution = make_distribution("halfcheetah-vel", horizon=3)
    vec_env = DummyVecEnv([lambda: TaskSamplingEnv(distribution, task_visible=True)] * 2)
    vec_env.seed(11)
    obs = vec_env.reset()
    assert obs.shape == (2, 18)
    first_tasks = [env.task for env in vec_env.envs]
    np.testing.assert_array_equal(obs[:, -1], [task.target_velocity for task in first_tasks])
    for _ in range(3):
        obs, rewards, dones, infos = vec_env.step(np.zeros((2, 6)))
    assert dones.all()
    new_tasks = [env.task for env in vec_env.envs]
    assert new_tasks != first_tasks
    np.testing.assert_array_equal(obs[:, -1], [task.target_velocity for task in new_tasks])
    # The terminal observation still carries the task of the finished episode.
    for info, task in zip(infos, first_tasks):
        assert info["terminal_observation"][-1] == task.target_velocity


def test_unknown_split_rejected():
    with pytest.raises(ValueError, match="unknown split 'train'"):
        TaskSamplingEnv(small_navigation(), split="train")


def test_env_without_set_task_rejected():
    with pytest.raises(TypeError, match="no set_task"):
        TaskSamplingEnv(small_navigation(), env=gym.make("Pendulum-v1"))


class ImageNavigationEnv(Navigation2DEnv):
    """Navigation with a 2-D observation space, which TaskSamplingEnv rejects."""

    def __init__(self, horizon: int = 100, oracle: bool = False):
        super().__init__(horizon, oracle)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(4, 4), dtype=np.float32)


class ImageNavigationDistribution(Navigation2DDistribution):
    name = "image-navigation"

    def make_env(self, oracle: bool = False):
        return ImageNavigationEnv(self.horizon, oracle)


def make_image_distribution(**kwargs) -> ImageNavigationDistribution:
    return ImageNavigationDistribution(**kwargs)


def test_non_1d_observation_rejected():
    with pytest.raises(TypeError, match="1-D Box observation space"):
        TaskSamplingEnv(ImageNavigationDistribution())


class NoParamsDistribution(TaskDistribution):
    """Navigation goals without a task_params method."""

    name = "no-params"

    def sample_tasks(self, rng, num_tasks):
        return [Navigation2DTask(*rng.uniform(-0.5, 0.5, 2)) for _ in range(num_tasks)]

    def make_env(self, oracle: bool = False):
        return Navigation2DEnv(horizon=5, oracle=oracle)


def test_visible_needs_task_params():
    distribution = NoParamsDistribution(num_train_tasks=3, num_test_tasks=2)
    with pytest.raises(TypeError, match="no task_params"):
        TaskSamplingEnv(distribution, task_visible=True)
    obs, _ = TaskSamplingEnv(distribution).reset(seed=0)
    assert obs.shape == (2,)


class NaNRewardEnv(Navigation2DEnv):
    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, float("nan"), terminated, truncated, info


def test_non_finite_reward_names_task_and_step():
    task = Navigation2DTask(0.25, -0.5)
    env = TaskSamplingEnv(small_navigation(), env=NaNRewardEnv())
    env.reset(seed=0, options={"task": task})
    with pytest.raises(NonFiniteError, match=r"non-finite reward at step 1 .*goal_x=0\.25"):
        env.step(np.zeros(2, dtype=np.float32))


# ------------------------------------------------------------------------------ the oracle


def tiny_oracle_config(tmp_path: Path, **overrides) -> OracleConfig:
    """A few PPO updates on HalfCheetahVel with 20-step episodes, evaluated on 3 tasks."""
    settings = dict(env="halfcheetah-vel", env_kwargs=("horizon=20", "num_test_tasks=4"),
                    total_timesteps=128, n_steps=64, batch_size=32, n_epochs=1, eval_tasks=3,
                    out=tmp_path / "halfcheetah-vel-h20.json", progress=False, torch_threads=1)
    settings.update(overrides)
    return OracleConfig(**settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"env": "halfcheetah-speed"}, "unknown environment 'halfcheetah-speed'"),
        ({"total_timesteps": 0}, "--total-timesteps must be an integer of at least 1"),
        ({"n_envs": -2}, "--n-envs must be an integer of at least 1"),
        ({"batch_size": 65}, r"--batch-size must lie in \[2, n_steps \* n_envs = 64\]"),
        ({"eval_tasks": 5}, r"--eval-tasks must lie in \[1, 4\]"),
        ({"env_kwargs": ("horizon=20", "speed=3")}, "does not fit halfcheetah-vel"),
        ({"gamma": 1.5}, r"--gamma must lie in \[0, 1\]"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
    ],
)
def test_oracle_config_rejects_bad_input(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_oracle_config(tmp_path, **overrides).validate()


def test_oracle_config_rejects_non_1d_observation(tmp_path):
    config = tiny_oracle_config(tmp_path, env=f"{__name__}:make_image_distribution", env_kwargs=())
    # A custom distribution is checked against the env contract as it loads.
    with pytest.raises(ContractError, match="rule 'supported spaces'.*take a 1-D Box"):
        config.validate()


def test_oracle_main_reports_bad_input(tmp_path, capsys):
    code = oracle_main(["--env", "halfcheetah-speed", "--out", str(tmp_path / "x.json")])
    assert code == 2
    error = capsys.readouterr().err
    assert "unknown environment 'halfcheetah-speed'" in error
    assert "halfcheetah-vel" in error  # the valid names are listed
    assert not (tmp_path / "x.json").exists()


def test_oracle_trains_evaluates_and_records(tmp_path):
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    config = tiny_oracle_config(tmp_path)
    result = train_oracle(config, command="train_oracle.py --env halfcheetah-vel")
    record = result.record
    distribution = make_distribution("halfcheetah-vel", horizon=20, num_test_tasks=4)
    tasks = distribution.meta_split().test[:3]

    assert result.stop_signal is None
    assert json.loads(result.paths.record.read_text()) == record
    assert record["env"] == "halfcheetah-vel"
    assert record["horizon"] == 20
    assert record["env_kwargs"] == {"horizon": 20, "num_test_tasks": 4}
    assert record["split_seed"] == 0
    assert record["num_tasks"] == 3
    assert record["episode_lengths"] == [20, 20, 20]
    assert record["mean_return"]["mean"] == pytest.approx(np.mean(record["episode_returns"]))
    assert record["mean_return"]["n"] == 3
    assert record["task_params"] == distribution.task_params(tasks).astype(np.float64).tolist()
    assert record["training"]["num_timesteps"] == 128
    assert record["training"]["hyperparameters"]["n_steps"] == 64
    assert record["distribution"]["horizon"] == 20
    for package in ("stable-baselines3", "gymnasium", "mujoco"):
        assert record["versions"][package] not in (None, "not installed"), package
    assert record["command"] == "train_oracle.py --env halfcheetah-vel"
    assert record["date"]
    assert record["wall_time_s"]["training"] >= 0
    for path in result.paths.checkpoint_files():
        assert not path.exists(), path

    # The saved model and statistics reproduce the recorded returns exactly.
    model = PPO.load(result.paths.model, device="cpu")
    normalizer = VecNormalize.load(str(result.paths.normalization),
                                   DummyVecEnv([lambda: TaskSamplingEnv(distribution, task_visible=True)]))
    again = evaluate_oracle(model, distribution, 3, record["eval_seed"], normalizer)
    np.testing.assert_array_equal(again["returns"], record["episode_returns"])

    # The locomotion references report this record on the same tasks, task by task.
    references = locomotion_references(distribution, tasks, seed=0, records_dir=tmp_path)
    oracle = references["oracle"].returns
    np.testing.assert_array_equal(oracle[:, 0], record["episode_returns"])
    np.testing.assert_array_equal(oracle[:, 1], record["episode_returns"])

    with pytest.raises(FileExistsError, match="--overwrite"):
        train_oracle(config)


class StopAfterFirstUpdate:
    """Stands in for SIGINT arriving during the second rollout: the stop is seen at its end."""

    def __init__(self):
        self.reads = 0
        self.signal_number = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    @property
    def requested(self) -> bool:
        self.reads += 1
        if self.reads >= 2:
            self.signal_number = signal.SIGINT
        return self.reads >= 2


def test_oracle_interrupt_then_resume(tmp_path, monkeypatch):
    config = tiny_oracle_config(tmp_path)
    monkeypatch.setattr(oracle_module, "StopRequest", StopAfterFirstUpdate)
    interrupted = train_oracle(config)
    monkeypatch.undo()

    assert interrupted.stop_signal == signal.SIGINT
    assert interrupted.record is None
    assert not interrupted.paths.record.exists()
    state = json.loads(interrupted.paths.checkpoint_state.read_text())
    assert state["num_timesteps"] == 64  # saved after the first update
    assert interrupted.paths.checkpoint_model.is_file()
    assert interrupted.paths.checkpoint_normalization.is_file()

    with pytest.raises(ValueError, match="--seed 0"):
        train_oracle(tiny_oracle_config(tmp_path, seed=1, resume=True))

    with pytest.raises(FileExistsError, match="--resume to continue it"):
        train_oracle(config)

    resumed = train_oracle(tiny_oracle_config(tmp_path, resume=True))
    assert resumed.record["training"]["num_timesteps"] == 128
    # One normalization layer, with the checkpoint's statistics carried on.
    normalizer = resumed.model.get_vec_normalize_env()
    assert isinstance(normalizer.venv, DummyVecEnv)
    assert normalizer.obs_rms.count > 128
    assert resumed.paths.record.is_file()
    for path in resumed.paths.checkpoint_files():
        assert not path.exists(), path

    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_oracle(tiny_oracle_config(tmp_path, resume=True, overwrite=True))


def test_oracle_main_end_to_end(tmp_path, capsys):
    out = tmp_path / "oracle" / "record.json"
    code = oracle_main(["--env", "halfcheetah-dir", "--env-kwargs", "horizon=10",
                        "--total-timesteps", "64", "--n-steps", "32", "--batch-size", "32",
                        "--n-epochs", "1", "--eval-tasks", "2", "--out", str(out),
                        "--no-progress", "--no-normalize"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Oracle on halfcheetah-dir (horizon 10)" in printed
    assert "copy the record to agents/references/oracle_returns/halfcheetah-dir-h10.json" in printed
    record = json.loads(out.read_text())
    assert record["command"].endswith(
        "--env halfcheetah-dir --env-kwargs horizon=10 --total-timesteps 64 --n-steps 32 "
        f"--batch-size 32 --n-epochs 1 --eval-tasks 2 --out {out} --no-progress --no-normalize")
    assert record["normalization_file"] is None
    assert record["task_params"] == [[1.0], [-1.0]]
    assert (out.parent / "record.zip").is_file()
    assert not (out.parent / "record.vecnormalize.pkl").exists()


# ----------------------------------------------------------------- locomotion references


def write_record(folder: Path, distribution, returns, changes=None) -> Path:
    """Write an oracle record evaluated on the first len(returns) meta-test tasks.

    ``changes`` replaces fields of the record, to make it invalid or not apply.
    """
    tasks = distribution.meta_split().test[:len(returns)]
    record = {
        "env": distribution.name,
        "horizon": distribution.horizon,
        "split_seed": 0,
        "num_tasks": len(returns),
        "mean_return": {"mean": float(np.mean(returns))},
        "episode_returns": list(returns),
        "task_params": distribution.task_params(tasks).astype(np.float64).tolist(),
        "distribution": json.loads(json.dumps(distribution.config())),
    }
    record.update(changes or {})
    path = folder / oracle_record_name(distribution.name, distribution.horizon)
    path.write_text(json.dumps(record))
    return path


def test_references_without_record_zero_action_only(tmp_path):
    distribution = make_distribution("halfcheetah-vel", horizon=20)
    tasks = distribution.meta_split().test[:3]
    results = locomotion_references(distribution, tasks, seed=0, records_dir=tmp_path)
    assert set(results) == {"zero-action"}
    zero = results["zero-action"]
    assert zero.returns.shape == (3, 2)
    np.testing.assert_array_equal(zero.returns[:, 0], zero.returns[:, 1])
    np.testing.assert_array_equal(zero.lengths, np.full((3, 2), 20))
    # Without torque the cheetah stays nearly still, so each step costs about the target
    # velocity: the return is close to -20 * target.
    for task, episode_return in zip(tasks, zero.returns[:, 0]):
        assert episode_return == pytest.approx(-20 * task.target_velocity, abs=3.0), task


def test_zero_action_ant_earns_healthy_reward():
    distribution = make_distribution("ant-dir", horizon=20)
    tasks = distribution.meta_split().test[:2]
    zero = zero_action_result(distribution, tasks, seed=0)
    # The ant rests on its legs, never terminates, and earns the healthy reward of 1 per step.
    # Its velocity terms only add the settling motion, a few units over 20 steps.
    np.testing.assert_array_equal(zero.lengths, np.full((2, 2), 20))
    assert np.all(np.abs(zero.returns - 20.0) < 6.0), zero.returns


def test_zero_action_caps_tasks_and_is_seeded():
    distribution = make_distribution("halfcheetah-dir", horizon=2, num_test_tasks=25)
    tasks = distribution.meta_split().test
    first = zero_action_result(distribution, tasks, seed=4)
    assert first.returns.shape == (ZERO_ACTION_MAX_TASKS, 2)
    again = zero_action_result(distribution, tasks, seed=4)
    np.testing.assert_array_equal(first.returns, again.returns)
    other = zero_action_result(distribution, tasks, seed=5)
    assert not np.array_equal(first.returns, other.returns)


def test_record_on_same_tasks_gives_per_task_returns(tmp_path):
    distribution = make_distribution("halfcheetah-vel", horizon=20)
    write_record(tmp_path, distribution, [10.0, 20.0, 30.0])
    tasks = distribution.meta_split().test[:2]
    oracle = locomotion_references(distribution, tasks, 0, records_dir=tmp_path)["oracle"]
    np.testing.assert_array_equal(oracle.returns, [[10.0, 10.0], [20.0, 20.0]])
    assert oracle.exact_value is None


def test_record_on_other_tasks_gives_recorded_mean(tmp_path):
    distribution = make_distribution("halfcheetah-vel", horizon=20)
    write_record(tmp_path, distribution, [10.0, 20.0, 30.0])
    tasks = distribution.meta_split().test[1:3]  # not the record's leading tasks
    oracle = locomotion_references(distribution, tasks, 0, records_dir=tmp_path)["oracle"]
    np.testing.assert_array_equal(oracle.returns, [[20.0, 20.0], [20.0, 20.0]])
    more = distribution.meta_split().test[:5]  # more tasks than the record contains
    oracle = locomotion_references(distribution, more, 0, records_dir=tmp_path)["oracle"]
    np.testing.assert_array_equal(oracle.returns, np.full((5, 2), 20.0))


def test_record_of_other_split_seed_ignored(tmp_path, caplog):
    write_record(tmp_path, make_distribution("halfcheetah-vel", horizon=20), [10.0, 20.0])
    distribution = make_distribution("halfcheetah-vel", horizon=20, split_seed=1)
    tasks = distribution.meta_split().test[:2]
    with caplog.at_level(logging.WARNING):
        results = locomotion_references(distribution, tasks, 0, records_dir=tmp_path)
    assert set(results) == {"zero-action"}
    assert "split_seed 0, not 1" in caplog.text


def test_record_of_other_reward_ignored(tmp_path, caplog):
    distribution = make_distribution("halfcheetah-vel", horizon=20)
    config = json.loads(json.dumps(distribution.config()))
    config["reward"]["ctrl_cost_weight"] = 0.1
    write_record(tmp_path, distribution, [10.0, 20.0], {"distribution": config})
    with caplog.at_level(logging.WARNING):
        results = locomotion_references(distribution, distribution.meta_split().test[:2], 0,
                                        records_dir=tmp_path)
    assert set(results) == {"zero-action"}
    assert "its reward" in caplog.text


def test_record_of_other_horizon_not_found(tmp_path):
    write_record(tmp_path, make_distribution("halfcheetah-vel", horizon=20), [10.0, 20.0])
    distribution = make_distribution("halfcheetah-vel", horizon=30)
    assert load_oracle_record("halfcheetah-vel", 30, tmp_path) is None
    results = locomotion_references(distribution, distribution.meta_split().test[:2], 0,
                                    records_dir=tmp_path)
    assert set(results) == {"zero-action"}


def test_malformed_record_rejected(tmp_path):
    distribution = make_distribution("halfcheetah-vel", horizon=20)
    path = write_record(tmp_path, distribution, [10.0, 20.0], {"num_tasks": 3})
    with pytest.raises(ValueError, match=f"invalid oracle record {path}: num_tasks is 3"):
        load_oracle_record("halfcheetah-vel", 20, tmp_path)
    write_record(tmp_path, distribution, [10.0, 20.0], {"horizon": 200})
    with pytest.raises(ValueError, match="at horizon 200, but its name says"):
        load_oracle_record("halfcheetah-vel", 20, tmp_path)
    write_record(tmp_path, distribution, [10.0, 20.0], {"episode_returns": None})
    with pytest.raises(ValueError, match="'episode_returns' must be a list"):
        load_oracle_record("halfcheetah-vel", 20, tmp_path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        load_oracle_record("halfcheetah-vel", 20, tmp_path)


def test_records_dir_from_environment_variable(tmp_path, monkeypatch):
    distribution = make_distribution("halfcheetah-dir", horizon=10)
    write_record(tmp_path, distribution, [100.0, 80.0])
    monkeypatch.setenv(ORACLE_RETURNS_DIR_VARIABLE, str(tmp_path))
    tasks = distribution.meta_split().test[:2]
    assert set(run_references(distribution, tasks, 0)) == {"oracle", "zero-action"}
    summaries = reference_returns(distribution, tasks, seed=0)
    # A trial has 2 episodes, each with the task's recorded return.
    assert summaries["oracle"]["mean_return"]["mean"] == pytest.approx(180.0)
    assert summaries["oracle"]["adaptation_curve"][0]["mean"] == pytest.approx(90.0)


def test_packaged_records_ship_and_load():
    tomllib = pytest.importorskip("tomllib")  # in the standard library from Python 3.11
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    assert "oracle_returns/*.json" in package_data["agents.references"]
    # Every record shipped in the package is valid for the env and horizon in its name.
    for path in (ROOT / "agents" / "references" / "oracle_returns").glob("*.json"):
        env, _, horizon = path.stem.rpartition("-h")
        assert load_oracle_record(env, int(horizon)) is not None, path
