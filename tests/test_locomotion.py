"""Tests of the MuJoCo locomotion families, their distributions and the vector batched env."""

import copy
import math
import multiprocessing
import pickle
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import TimeLimit

import envs
from envs import (
    AntDir2DDistribution,
    AntDir2DTask,
    AntDirDistribution,
    AntDirEnv,
    AntDirTask,
    AntGoalDistribution,
    AntGoalEnv,
    AntGoalTask,
    BatchedTrialEnv,
    HalfCheetahDirDistribution,
    HalfCheetahDirEnv,
    HalfCheetahDirTask,
    HalfCheetahVelDistribution,
    HalfCheetahVelEnv,
    HalfCheetahVelTask,
    NonFiniteError,
    VectorBatchedEnv,
    make_distribution,
)

# One task per family, with the env built by the family's distribution.
FAMILY_TASKS = {
    "halfcheetah-vel": HalfCheetahVelTask(1.25),
    "halfcheetah-dir": HalfCheetahDirTask(-1.0),
    "ant-dir": AntDirTask(-1.0),
    "ant-dir-2d": AntDir2DTask(2.5),
    "ant-goal": AntGoalTask(1.5, -2.0),
}
FAMILIES = sorted(FAMILY_TASKS)

# Keys of info after a step, besides the oracle's "task".
CHEETAH_INFO_KEYS = {"x_position", "x_velocity", "reward_ctrl", "reward_task"}
ANT_INFO_KEYS = {
    "x_position", "y_position", "distance_from_origin", "x_velocity", "y_velocity",
    "reward_ctrl", "reward_contact", "reward_survive", "reward_task",
}

# Seconds per env step: 5 MuJoCo steps of 0.01 s.
DT = 0.05


@pytest.fixture(autouse=True)
def mujoco_log_in_tmp(tmp_path, monkeypatch):
    # MuJoCo appends its warnings (a deprecated attribute of Gymnasium's ant.xml, the
    # divergence the NaN tests force) to MUJOCO_LOG.TXT in the working directory.
    monkeypatch.chdir(tmp_path)


def family_env(name, oracle=False, **kwargs):
    env = make_distribution(name, **kwargs).make_env(oracle=oracle)
    env.set_task(FAMILY_TASKS[name])
    return env


def fixed_actions(env, count, seed=0):
    rng = np.random.default_rng(seed)
    shape = (count, *env.action_space.shape)
    return rng.uniform(-1.0, 1.0, shape).astype(np.float32)


def run_steps(env, actions):
    return [env.step(action) for action in actions]


# Gymnasium's environment checker


@pytest.mark.parametrize("name", FAMILIES)
def test_check_env_passes(name):
    env = family_env(name)
    check_env(env)
    assert env.task == FAMILY_TASKS[name]
    env.close()


def test_gym_ids_registered():
    for env_id, env_class in [
        ("adaptrl/HalfCheetahVel-v0", HalfCheetahVelEnv),
        ("adaptrl/HalfCheetahDir-v0", HalfCheetahDirEnv),
        ("adaptrl/AntDir-v0", AntDirEnv),
        ("adaptrl/AntGoal-v0", AntGoalEnv),
    ]:
        env = gym.make(env_id)
        assert isinstance(env.unwrapped, env_class)
        env.close()


def test_gym_make_draws_task_at_reset():
    env = gym.make("adaptrl/HalfCheetahVel-v0")
    env.reset(seed=4)
    task = env.unwrapped.task
    assert isinstance(task, HalfCheetahVelTask)
    assert 0.0 <= task.target_velocity < 2.0
    env.reset(seed=4)
    assert env.unwrapped.task == task


def test_gym_make_horizon_without_time_limit():
    env = gym.make("adaptrl/AntDir-v0", horizon=3)
    wrapper = env
    while isinstance(wrapper, gym.Wrapper):
        assert not isinstance(wrapper, TimeLimit)
        wrapper = wrapper.env
    env.reset(seed=0)
    zero = np.zeros(8, dtype=np.float32)
    assert [env.step(zero)[3] for _ in range(3)] == [False, False, True]


def test_planar_ant_takes_angle_tasks():
    env = AntDirEnv(planar=True)
    env.set_task(AntDir2DTask(0.5))
    with pytest.raises(TypeError, match=r"AntDirEnv takes a AntDir2DTask, got AntDirTask"):
        env.set_task(AntDirTask(1.0))


# The task stays out of observations and info unless oracle=True


@pytest.mark.parametrize("name", FAMILIES)
def test_task_hidden_from_info(name):
    env = family_env(name)
    _, reset_info = env.reset(seed=0)
    assert "task" not in reset_info
    expected_keys = CHEETAH_INFO_KEYS if name.startswith("halfcheetah") else ANT_INFO_KEYS
    for action in fixed_actions(env, 3):
        _, _, _, _, info = env.step(action)
        assert set(info) == expected_keys


@pytest.mark.parametrize("name", ["halfcheetah-vel", "ant-dir-2d", "ant-goal"])
def test_task_hidden_from_observations(name):
    env = family_env(name)
    observations = [env.reset(seed=0)[0]]
    observations += [step[0] for step in run_steps(env, fixed_actions(env, 5))]
    task_values = np.float32(FAMILY_TASKS[name].key())
    assert not np.isin(task_values, np.float32(observations)).any()


@pytest.mark.parametrize("name", FAMILIES)
def test_oracle_info_has_task(name):
    env = family_env(name, oracle=True)
    expected = FAMILY_TASKS[name].to_dict()
    _, reset_info = env.reset(seed=0)
    assert reset_info["task"] == expected
    for action in fixed_actions(env, 2):
        assert env.step(action)[4]["task"] == expected


@pytest.mark.parametrize("name", FAMILIES)
def test_info_reward_terms_sum_to_reward(name):
    env = family_env(name)
    env.reset(seed=0)
    for action in fixed_actions(env, 4):
        _, reward, _, _, info = env.step(action)
        # float(): Gymnasium's control cost is a float32 for float32 actions.
        terms = [float(value) for key, value in info.items() if key.startswith("reward_")]
        assert reward == pytest.approx(sum(terms), abs=1e-12)


# The task and the simulation survive pickling, deep copies and vector-env workers


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("clone", [pickle.loads, copy.deepcopy], ids=["pickle", "deepcopy"])
def test_env_copy_keeps_task_and_state(name, clone):
    env = family_env(name)
    env.reset(seed=1)
    actions = fixed_actions(env, 10)
    run_steps(env, actions[:5])
    copied = clone(pickle.dumps(env)) if clone is pickle.loads else clone(env)
    assert copied.task == FAMILY_TASKS[name]

    original_steps = run_steps(env, actions[5:])
    copied_steps = run_steps(copied, actions[5:])
    for original, restored in zip(original_steps, copied_steps, strict=True):
        np.testing.assert_array_equal(original[0], restored[0])
        assert original[1:4] == restored[1:4]
    # Reset noise continues from the same random generator state.
    np.testing.assert_array_equal(env.reset()[0], copied.reset()[0])


def make_cheetah_dir():
    return gym.make("adaptrl/HalfCheetahDir-v0")


def test_async_vector_env_sets_task_per_worker():
    tasks = [HalfCheetahDirTask(1.0), HalfCheetahDirTask(-1.0)]
    vector_env = AsyncVectorEnv([make_cheetah_dir] * 2, autoreset_mode=AutoresetMode.DISABLED)
    try:
        vector_env.set_attr("task", tasks)
        assert vector_env.get_attr("task") == tuple(tasks)
        # The same seed gives both workers the same dynamics, so only the sign of the task
        # term differs between them.
        vector_env.reset(seed=[7, 7])
        actions = np.full((2, 6), 0.5, dtype=np.float32)
        for _ in range(3):
            _, _, _, _, info = vector_env.step(actions)
            assert info["x_velocity"][0] == info["x_velocity"][1]
            assert info["reward_task"][0] == info["x_velocity"][0]
            assert info["reward_task"][1] == -info["x_velocity"][1]
        assert vector_env.get_attr("task") == tuple(tasks)
    finally:
        vector_env.close()


# Golden values: each reward term recomputed from the state before and after one step


def cheetah_golden_step(env, task):
    env.set_task(task)
    env.reset(seed=0)
    qpos = np.linspace(-0.2, 0.3, env.model.nq)
    qvel = np.linspace(0.5, -0.4, env.model.nv)
    env.set_state(qpos, qvel)
    action = np.array([0.3, -0.7, 0.9, -0.1, 0.5, -1.0])
    x_before = env.data.qpos[0]
    _, reward, terminated, truncated, info = env.step(action)
    velocity = (env.data.qpos[0] - x_before) / DT
    ctrl_cost = 0.05 * float(np.sum(action**2))
    return velocity, ctrl_cost, reward, terminated, truncated, info


def test_golden_halfcheetah_vel():
    env = HalfCheetahVelEnv()
    assert env.dt == pytest.approx(DT)
    velocity, ctrl_cost, reward, terminated, truncated, info = cheetah_golden_step(
        env, HalfCheetahVelTask(1.25)
    )
    assert ctrl_cost == pytest.approx(0.05 * 2.65)
    assert info["x_velocity"] == pytest.approx(velocity, abs=1e-12)
    assert info["reward_task"] == pytest.approx(-abs(velocity - 1.25), abs=1e-12)
    assert info["reward_ctrl"] == pytest.approx(-ctrl_cost, abs=1e-12)
    assert reward == pytest.approx(-abs(velocity - 1.25) - ctrl_cost, abs=1e-12)
    assert (terminated, truncated) == (False, False)


def test_golden_halfcheetah_dir():
    velocity, ctrl_cost, reward, terminated, truncated, info = cheetah_golden_step(
        HalfCheetahDirEnv(), HalfCheetahDirTask(-1.0)
    )
    assert velocity != 0.0
    assert info["reward_task"] == pytest.approx(-velocity, abs=1e-12)
    assert reward == pytest.approx(-velocity - ctrl_cost, abs=1e-12)
    assert (terminated, truncated) == (False, False)


def ant_golden_step(env, task):
    """Step an Ant from a fixed state low enough for its feet to touch the floor."""
    env.set_task(task)
    env.reset(seed=0)
    qpos = env.mujoco_env.init_qpos.copy()
    qpos[:3] = [0.4, -0.3, 0.3]
    qpos[7:] = np.linspace(-0.3, 0.3, env.model.nq - 7)
    qvel = np.zeros(env.model.nv)
    qvel[:2] = [0.8, -0.6]
    env.set_state(qpos, qvel)
    action = np.linspace(-0.9, 0.9, 8)
    xy_before = env.data.body("torso").xpos[:2].copy()
    _, reward, terminated, truncated, info = env.step(action)
    # Ant-v5 reads the torso's body position, which MuJoCo computes before the last of the
    # step's 5 integrations. qpos is the state after it.
    velocity = (env.data.body("torso").xpos[:2] - xy_before) / DT
    ctrl_cost = 0.5 * float(np.sum(action**2))
    forces = np.clip(env.data.cfrc_ext, -1.0, 1.0)
    contact_cost = 5e-4 * float(np.sum(forces**2))
    assert contact_cost > 0.0, "the feet should touch the floor, or the contact term goes untested"
    assert 0.2 <= env.data.qpos[2] <= 1.0
    return velocity, ctrl_cost, contact_cost, reward, terminated, truncated, info


def check_ant_terms(info, velocity, ctrl_cost, contact_cost):
    assert info["x_velocity"] == pytest.approx(velocity[0], abs=1e-12)
    assert info["y_velocity"] == pytest.approx(velocity[1], abs=1e-12)
    assert info["reward_survive"] == 1.0
    assert info["reward_ctrl"] == pytest.approx(-ctrl_cost, abs=1e-12)
    assert info["reward_contact"] == pytest.approx(-contact_cost, abs=1e-12)


def test_golden_ant_dir():
    velocity, ctrl, contact, reward, terminated, truncated, info = ant_golden_step(
        AntDirEnv(), AntDirTask(-1.0)
    )
    check_ant_terms(info, velocity, ctrl, contact)
    assert info["reward_task"] == pytest.approx(-velocity[0], abs=1e-12)
    assert reward == pytest.approx(-velocity[0] + 1.0 - ctrl - contact, abs=1e-12)
    assert (terminated, truncated) == (False, False)


def test_golden_ant_dir_2d():
    angle = 2.5
    velocity, ctrl, contact, reward, terminated, truncated, info = ant_golden_step(
        AntDirEnv(planar=True), AntDir2DTask(angle)
    )
    forward = math.cos(angle) * velocity[0] + math.sin(angle) * velocity[1]
    check_ant_terms(info, velocity, ctrl, contact)
    assert info["reward_task"] == pytest.approx(forward, abs=1e-12)
    assert reward == pytest.approx(forward + 1.0 - ctrl - contact, abs=1e-12)
    assert (terminated, truncated) == (False, False)


def test_golden_ant_goal():
    env = AntGoalEnv()
    velocity, ctrl, contact, reward, terminated, truncated, info = ant_golden_step(
        env, AntGoalTask(1.5, -2.0)
    )
    x, y = env.data.qpos[:2]
    distance = math.hypot(x - 1.5, y + 2.0)
    check_ant_terms(info, velocity, ctrl, contact)
    assert info["reward_task"] == pytest.approx(-distance, abs=1e-12)
    assert reward == pytest.approx(-distance + 1.0 - ctrl - contact, abs=1e-12)
    assert (terminated, truncated) == (False, False)


def test_ant_goal_observes_torso_xy():
    env = family_env("ant-goal")
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs[:2], env.data.qpos[:2])
    obs, *_ = env.step(np.zeros(8, dtype=np.float32))
    np.testing.assert_array_equal(obs[:2], env.data.qpos[:2])
    assert obs.shape == (29,)


def test_ant_dir_observation_size():
    # Ant-v5's qpos without x and y (13) and qvel (14), without contact forces.
    assert family_env("ant-dir").observation_space.shape == (27,)


def test_ant_terminates_when_unhealthy():
    env = family_env("ant-dir")
    env.reset(seed=0)
    qpos = env.data.qpos.copy()
    qpos[2] = 1.5  # above the healthy range [0.2, 1.0]
    env.set_state(qpos, np.zeros(env.model.nv))
    _, reward, terminated, truncated, info = env.step(np.zeros(8, dtype=np.float32))
    assert terminated is True
    assert truncated is False
    assert info["reward_survive"] == 0.0


# Horizon


@pytest.mark.parametrize("name", ["halfcheetah-vel", "ant-goal"])
def test_horizon_truncates_at_exactly_horizon(name):
    env = family_env(name, horizon=5)
    env.reset(seed=0)
    flags = [env.step(np.zeros(env.action_space.shape, dtype=np.float32))[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]
    env.reset()
    assert env.step(np.zeros(env.action_space.shape, dtype=np.float32))[3] is False


def test_horizon_default_200():
    assert HalfCheetahVelEnv().horizon == 200
    assert make_distribution("ant-goal").horizon == 200
    assert make_distribution("ant-goal").make_env().horizon == 200


@pytest.mark.parametrize("horizon", [0, -5, 2.5, True])
def test_horizon_invalid_rejected(horizon):
    with pytest.raises(ValueError, match=r"horizon must be an integer number of steps of at least 1"):
        HalfCheetahVelEnv(horizon=horizon)
    with pytest.raises(ValueError, match=r"horizon must be an integer number of steps of at least 1"):
        make_distribution("ant-dir", horizon=horizon)


def test_human_render_without_display_rejected(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    # GLFW would abort the process here, so the env raises before it gets there.
    with pytest.raises(gym.error.Error, match=r"render_mode='human' needs a display"):
        HalfCheetahVelEnv(render_mode="human")
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    with pytest.raises(gym.error.Error, match=r"set the environment variable MUJOCO_GL=egl"):
        AntGoalEnv(render_mode="rgb_array")


def test_step_before_reset_rejected():
    env = family_env("halfcheetah-dir")
    with pytest.raises(RuntimeError, match=r"call reset\(\) before step\(\)"):
        env.step(np.zeros(6, dtype=np.float32))


# Distributions, splits and task parameters


@pytest.mark.parametrize(
    "name, distribution_class",
    [
        ("halfcheetah-vel", HalfCheetahVelDistribution),
        ("halfcheetah-dir", HalfCheetahDirDistribution),
        ("ant-dir", AntDirDistribution),
        ("ant-dir-2d", AntDir2DDistribution),
        ("ant-goal", AntGoalDistribution),
    ],
)
def test_registry_builds_family(name, distribution_class):
    distribution = make_distribution(name, episodes_per_trial=3)
    assert type(distribution) is distribution_class
    assert distribution.name == name
    assert distribution.episodes_per_trial == 3
    assert name in envs.known_names()
    assert make_distribution(name).episodes_per_trial == 2


@pytest.mark.parametrize("name, task_class", [("halfcheetah-dir", HalfCheetahDirTask),
                                               ("ant-dir", AntDirTask)])
def test_finite_split_both_directions(name, task_class):
    split = make_distribution(name, num_test_tasks=5).meta_split()
    assert split.train == (task_class(1.0), task_class(-1.0))
    assert split.test == (task_class(1.0), task_class(-1.0)) * 2 + (task_class(1.0),)


def test_finite_split_rejects_train_size():
    with pytest.raises(ValueError, match=r"halfcheetah-dir has exactly 2 tasks.*got 10"):
        make_distribution("halfcheetah-dir", num_train_tasks=10)


def test_velocity_split_disjoint():
    split = make_distribution("halfcheetah-vel", num_train_tasks=2000, num_test_tasks=300).meta_split()
    train = {task.key() for task in split.train}
    test = {task.key() for task in split.test}
    assert train.isdisjoint(test)
    assert len(test) == 300
    velocities = np.array([task.target_velocity for task in split.train + split.test])
    assert velocities.min() >= 0.0
    assert velocities.max() < 2.0


def test_goal_prior_uniform_in_disc():
    distribution = make_distribution("ant-goal")
    tasks = distribution.sample_tasks(np.random.default_rng(0), 4000)
    radii = np.hypot([t.goal_x for t in tasks], [t.goal_y for t in tasks])
    assert radii.max() <= 3.0 + 1e-6
    # Uniform by area: a quarter of the goals lie within half the radius.
    assert np.mean(radii < 1.5) == pytest.approx(0.25, abs=0.03)


@pytest.mark.parametrize("name", FAMILIES)
def test_task_params_round_trip(name):
    distribution = make_distribution(name)
    tasks = list(distribution.meta_split().train[:50])
    params = distribution.task_params(tasks)
    assert params.dtype == np.float32
    assert params.shape == (len(tasks), len(tasks[0].key()))
    rebuilt = [distribution.task_from_params(row) for row in params]
    assert rebuilt == tasks
    assert distribution.task_from_params(torch.as_tensor(params[0])) == tasks[0]


def test_task_params_wrong_width_rejected():
    with pytest.raises(ValueError, match=r"ant-goal tasks have 2 parameters, got a row of shape \(3,\)"):
        make_distribution("ant-goal").task_from_params([1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "build",
    [lambda: HalfCheetahDirTask(0.5), lambda: AntDirTask(0.0), lambda: HalfCheetahVelTask(math.nan),
     lambda: AntGoalTask(1.0, math.inf)],
)
def test_task_invalid_values_rejected(build):
    with pytest.raises(ValueError):
        build()


def test_config_records_constants_and_versions():
    config = make_distribution("halfcheetah-vel", horizon=150).config()
    assert config["horizon"] == 150
    assert config["episodes_per_trial"] == 2
    assert config["reward"]["ctrl_cost_weight"] == 0.05
    assert config["reward"]["velocity_range"] == [0.0, 2.0]
    assert config["gymnasium_version"] == gym.__version__
    assert config["mujoco_version"] == __import__("mujoco").__version__

    ant = make_distribution("ant-goal").config()["reward"]
    assert ant["healthy_reward"] == 1.0
    assert ant["ctrl_cost_weight"] == 0.5
    assert ant["contact_cost_weight"] == 5e-4
    assert ant["goal_radius"] == 3.0
    assert make_distribution("ant-dir-2d").config()["env_kwargs"] == {"planar": True}


# Divergence guard


@pytest.mark.parametrize("name", ["halfcheetah-vel", "ant-goal"])
def test_nan_state_raises_naming_env_task_step(name):
    env = family_env(name)
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    env.step(zero)
    env.step(zero)
    # Written into MjData directly: set_state would let MuJoCo see it before the step.
    env.data.qvel[0] = np.nan
    with pytest.raises(NonFiniteError) as excinfo:
        env.step(zero)
    message = str(excinfo.value)
    assert type(env).__name__ in message
    assert repr(FAMILY_TASKS[name]) in message
    assert "at step 3 " in message


def test_nan_action_raises():
    env = family_env("halfcheetah-dir")
    env.reset(seed=0)
    with pytest.raises(NonFiniteError, match=r"diverged at step 1 .*the reward is nan"):
        env.step(np.full(6, np.nan, dtype=np.float32))


# Missing MuJoCo


def test_missing_mujoco_names_extra(monkeypatch):
    distribution = make_distribution("ant-goal")
    # A None entry in sys.modules makes `import mujoco` raise ImportError.
    monkeypatch.setitem(sys.modules, "mujoco", None)
    with pytest.raises(gym.error.DependencyNotInstalled, match=r'pip install -e "\.\[mujoco\]"'):
        distribution.make_env()
    with pytest.raises(gym.error.DependencyNotInstalled, match=r"mujoco package"):
        HalfCheetahVelEnv()


def test_import_envs_without_mujoco():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["mujoco"] = None
        import gymnasium as gym
        import envs
        distribution = envs.make_distribution("halfcheetah-vel")
        print(len(distribution.meta_split().test), distribution.config()["mujoco_version"])
        try:
            distribution.make_env()
        except gym.error.DependencyNotInstalled as error:
            print(error)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # mujoco fails to import in the subprocess, but importlib.metadata still finds its version.
    assert lines[0].startswith("100 ")
    assert 'pip install -e ".[mujoco]"' in lines[1]


# VectorBatchedEnv


def cheetah_vel(horizon=6, **kwargs):
    return make_distribution("halfcheetah-vel", horizon=horizon, num_train_tasks=20,
                             num_test_tasks=5, **kwargs)


def test_vector_matches_sequential_envs():
    distribution = cheetah_vel()
    tasks = distribution.meta_split().train[:3]
    params = torch.as_tensor(distribution.task_params(tasks))
    all_rows = torch.ones(3, dtype=torch.bool)
    actions = np.random.default_rng(5).uniform(-1.0, 1.0, (8, 3, 6)).astype(np.float32)

    with VectorBatchedEnv(distribution, 3, generator=torch.Generator().manual_seed(11),
                          asynchronous=True) as batched:
        assert isinstance(batched.vector_env, AsyncVectorEnv)
        batched.set_tasks(all_rows, params)
        batched_obs = [batched.reset(all_rows).numpy()]
        batched_steps = [batched.step(torch.as_tensor(step_actions)) for step_actions in actions]
        seed = batched.seed

    singles = [distribution.make_env() for _ in range(3)]
    single_obs = []
    for i, env in enumerate(singles):
        env.set_task(tasks[i])
        single_obs.append(env.reset(seed=seed + i)[0])
    np.testing.assert_array_equal(batched_obs[0], np.float32(single_obs))
    for step_actions, batched_step in zip(actions, batched_steps, strict=True):
        results = [env.step(action) for env, action in zip(singles, step_actions, strict=True)]
        obs, reward, terminated, truncated = batched_step
        np.testing.assert_array_equal(obs.numpy(), np.float32([r[0] for r in results]))
        np.testing.assert_array_equal(reward.numpy(), np.float32([r[1] for r in results]))
        np.testing.assert_array_equal(terminated.numpy(), [r[2] for r in results])
        np.testing.assert_array_equal(truncated.numpy(), [r[3] for r in results])
    # The horizon of 6 steps truncates every env at the sixth step.
    assert [bool(step[3].all()) for step in batched_steps[:6]] == [False] * 5 + [True]


def test_vector_reset_only_masked_rows():
    distribution = cheetah_vel(horizon=4)
    params = torch.as_tensor(distribution.task_params(distribution.meta_split().train[:3]))
    all_rows = torch.ones(3, dtype=torch.bool)
    middle = torch.tensor([False, True, False])
    zero = torch.zeros(3, 6)
    with distribution.make_batched_env(3, generator=torch.Generator().manual_seed(0)) as batched:
        batched.set_tasks(all_rows, params)
        batched.reset(all_rows)
        for _ in range(3):
            stepped_obs = batched.step(zero)[0]
        reset_obs = batched.reset(middle)
        np.testing.assert_array_equal(reset_obs[[0, 2]].numpy(), stepped_obs[[0, 2]].numpy())
        assert not torch.equal(reset_obs[1], stepped_obs[1])
        # Rows 0 and 2 reach the horizon of 4 steps. Row 1 restarted its episode.
        obs, _, _, truncated = batched.step(zero)
        assert truncated.tolist() == [True, False, True]
        # An empty mask resets nothing and returns the current observations.
        assert torch.equal(batched.reset(torch.zeros(3, dtype=torch.bool)), obs)


def test_vector_set_tasks_masked_rows():
    distribution = cheetah_vel()
    tasks = distribution.meta_split().train
    params = torch.as_tensor(distribution.task_params(tasks))
    with VectorBatchedEnv(distribution, 3, asynchronous=False) as batched:
        batched.set_tasks(torch.ones(3, dtype=torch.bool), params[:3])
        batched.set_tasks(torch.tensor([False, False, True]), params[3:6])
        assert batched.current_tasks() == [tasks[0], tasks[1], tasks[5]]


def test_vector_trial_two_episodes():
    distribution = cheetah_vel(horizon=3)
    split = distribution.meta_split()
    with distribution.make_batched_env(2, generator=torch.Generator().manual_seed(1)) as batched:
        trial_env = BatchedTrialEnv(
            batched, split.train, torch.as_tensor(distribution.task_params(split.train)),
            distribution.episodes_per_trial, generator=torch.Generator().manual_seed(2),
            name=distribution.name,
        )
        assert trial_env.observation_dim == 17 + 6 + 2
        obs = trial_env.reset()
        assert obs[:, -1].tolist() == [1.0, 1.0]
        assert batched.current_tasks() == trial_env.current_tasks()

        steps = [trial_env.step(torch.full((2, 6), 0.25)) for _ in range(6)]
    assert [step.episode_index.tolist() for step in steps] == [[0, 0]] * 3 + [[1, 1]] * 3
    assert [step.episode_end.tolist() for step in steps] == [[False] * 2] * 2 + [[True] * 2] + \
        [[False] * 2] * 2 + [[True] * 2]
    assert [step.terminated.tolist() for step in steps] == [[False] * 2] * 5 + [[True] * 2]
    # The first observation of the second episode carries the inner-episode-start flag.
    assert steps[2].obs[:, -1].tolist() == [1.0, 1.0]
    assert steps[3].obs[:, -1].tolist() == [0.0, 0.0]


def test_vector_close_stops_workers():
    distribution = cheetah_vel()
    batched = distribution.make_batched_env(2)
    processes = list(batched.vector_env.processes)
    assert all(process.is_alive() for process in processes)
    batched.close()
    batched.close()
    assert not any(process.is_alive() for process in processes)
    assert not set(processes) & set(multiprocessing.active_children())


def test_vector_seed_drawn_from_generator():
    distribution = cheetah_vel()
    rows = torch.ones(2, dtype=torch.bool)
    observations = []
    for _ in range(2):
        with VectorBatchedEnv(distribution, 2, generator=torch.Generator().manual_seed(9),
                              asynchronous=False) as batched:
            observations.append(batched.reset(rows))
    torch.testing.assert_close(observations[0], observations[1], rtol=0, atol=0)
    assert not torch.equal(observations[0][0], observations[0][1])


def test_vector_state_dict_resumes_exactly():
    distribution = make_distribution("ant-goal", horizon=50, num_train_tasks=10, num_test_tasks=5)
    params = torch.as_tensor(distribution.task_params(distribution.meta_split().train[:2]))
    rows = torch.ones(2, dtype=torch.bool)
    actions = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (10, 2, 8)), dtype=torch.float32)
    with VectorBatchedEnv(distribution, 2, asynchronous=False) as original:
        original.set_tasks(rows, params)
        original.reset(rows)
        for step_actions in actions[:5]:
            original.step(step_actions)
        state = original.state_dict()
        expected = [original.step(step_actions) for step_actions in actions[5:]]
    with VectorBatchedEnv(distribution, 2, asynchronous=False) as resumed:
        resumed.load_state_dict(state)
        assert resumed.current_tasks() == list(distribution.meta_split().train[:2])
        for step_actions, want in zip(actions[5:], expected, strict=True):
            got = resumed.step(step_actions)
            for got_tensor, want_tensor in zip(got, want, strict=True):
                assert torch.equal(got_tensor, want_tensor)


def test_vector_clips_actions():
    distribution = cheetah_vel()
    rows = torch.ones(2, dtype=torch.bool)
    params = torch.as_tensor(distribution.task_params(distribution.meta_split().train[:1] * 2))
    with VectorBatchedEnv(distribution, 2, generator=torch.Generator().manual_seed(0),
                          asynchronous=False) as batched:
        batched.set_tasks(rows, params)
        batched.reset(rows)
        # Both rows start from their own reset noise, so compare each row with a replay.
        rewards = batched.step(torch.tensor([[5.0] * 6, [-3.0] * 6]))[1]
        seed = batched.seed
    for row, action in enumerate([1.0, -1.0]):
        env = distribution.make_env()
        env.set_task(distribution.meta_split().train[0])
        env.reset(seed=seed + row)
        assert rewards[row].item() == np.float32(env.step(np.full(6, action, dtype=np.float32))[1])


def test_vector_rejects_noise():
    with VectorBatchedEnv(cheetah_vel(), 1) as batched:
        batched.reset(torch.ones(1, dtype=torch.bool))
        with pytest.raises(ValueError, match=r"take no noise"):
            batched.step(torch.zeros(1, 6), noise=torch.zeros(1))


def test_vector_single_env_runs_in_process():
    distribution = cheetah_vel()
    assert distribution.has_batched_env
    with distribution.make_batched_env(1) as batched:
        assert isinstance(batched.vector_env, gym.vector.SyncVectorEnv)
        assert batched.observation_dim == 17
        assert batched.action_space.shape == (6,)


def test_workers_up_to_core_count(monkeypatch):
    """One process per env pays only while there are cores for them; beyond, envs step in-process."""
    import envs.locomotion

    monkeypatch.setattr(envs.locomotion, "usable_cpu_count", lambda: 2)
    distribution = cheetah_vel(horizon=3)
    with distribution.make_batched_env(2) as batched:
        assert isinstance(batched.vector_env, AsyncVectorEnv)
    with distribution.make_batched_env(3) as batched:
        assert isinstance(batched.vector_env, SyncVectorEnv)


def test_worker_factory_keeps_handlers():
    """AsyncVectorEnv calls the first factory in the trainer too; its stop handler must survive."""
    import signal

    from envs.vector import _make_worker_env

    def handler(signum, frame):
        pass

    previous = signal.signal(signal.SIGINT, handler)
    try:
        assert _make_worker_env(lambda: "env") == "env"
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, previous)
