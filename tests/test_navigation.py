"""Tests of the 2D navigation family: tasks, environments, split, registry, trials and references."""

import copy
import dataclasses
import functools
import math
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AsyncVectorEnv
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker

import envs
from agents.references.base import run_references
from agents.references.navigation import (
    NAVIGATION_REFERENCE_NAMES,
    navigation_references,
    oracle_action,
    oracle_returns,
    stand_still_returns,
)
from envs import BatchedTrialEnv, TrialWrapper, make_distribution
from envs.navigation import (
    BatchedNavigationEnv,
    Navigation2DDistribution,
    Navigation2DEnv,
    Navigation2DTask,
)

# Tolerance of the mean comparisons below, in standard errors. A two-sided 4-sigma check fails
# by chance with probability about 6e-5.
STANDARD_ERRORS = 4.0

# The oracle's expected episode return over the prior, horizon 100: the midpoint rule on a
# 2000 x 2000 grid of goals over [-0.5, 0.5]² applied to oracle_returns gives -0.50608. The
# oracle reaches every goal of the prior within 5 steps, so the horizon does not matter.
ORACLE_PRIOR_VALUE = -0.50608

# Standing still scores -|goal| on each of the 100 steps. The mean distance from the centre
# of a unit square to a uniform point in it is (√2 + ln(1 + √2)) / 6 ≈ 0.38260.
STAND_STILL_PRIOR_VALUE = -100 * (math.sqrt(2) + math.log(1 + math.sqrt(2))) / 6

# Bound on float32 rounding of positions and distances summed over 100 steps. The oracle's
# simulated returns on 50 meta-test tasks differed from the closed form by at most 6e-8.
FLOAT32_RETURN_TOLERANCE = 1e-5


def standard_error(values):
    return values.std(ddof=1) / np.sqrt(values.size)


def small_distribution(**kwargs):
    return make_distribution("navigation-2d", num_train_tasks=64, num_test_tasks=16, **kwargs)


def env_with_task(task, horizon=100, oracle=False):
    return Navigation2DEnv(horizon=horizon, oracle=oracle, task=task)


@pytest.fixture(scope="module")
def default_distribution():
    return make_distribution("navigation-2d")


# Tasks


def test_task_rounds_to_float32():
    task = Navigation2DTask(0.1, -0.3)
    assert task.goal_x == float(np.float32(0.1))
    assert task.goal_y == float(np.float32(-0.3))
    assert task.goal.dtype == np.float32
    np.testing.assert_array_equal(task.goal, np.float32([0.1, -0.3]))


def test_task_equal_hashable_frozen():
    first = Navigation2DTask(0.25, 0.0)
    same = Navigation2DTask(np.float64(0.25), 0)
    other = Navigation2DTask(0.0, 0.25)
    assert first == same
    assert hash(first) == hash(same)
    assert first != other
    assert len({first, same, other}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.goal_x = 0.5


def test_task_to_dict_and_pickle():
    task = Navigation2DTask(0.25, -0.125)
    assert task.to_dict() == {"goal_x": 0.25, "goal_y": -0.125}
    assert pickle.loads(pickle.dumps(task)) == task
    assert copy.deepcopy(task) == task


@pytest.mark.parametrize("goal", [(math.nan, 0.0), (0.0, math.inf)])
def test_task_rejects_non_finite(goal):
    with pytest.raises(ValueError, match=r"must be finite"):
        Navigation2DTask(*goal)


# The Gymnasium environment


def test_reset_at_origin():
    env = env_with_task(Navigation2DTask(0.3, 0.4))
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32
    assert obs.shape == (2,)
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    assert info == {}


def test_spaces():
    env = Navigation2DEnv()
    assert env.observation_space.shape == (2,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space.shape == (2,)
    np.testing.assert_array_equal(env.action_space.low, np.float32([-0.1, -0.1]))
    np.testing.assert_array_equal(env.action_space.high, np.float32([0.1, 0.1]))


def test_step_reward_hand_worked():
    # From the origin, the move (0.1, 0.1) lands at (0.1, 0.1), which is (0.3, 0.4) short of
    # the goal (0.4, 0.5): a 3-4-5 triangle at distance 0.5.
    env = env_with_task(Navigation2DTask(0.4, 0.5))
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.float32([0.1, 0.1]))
    np.testing.assert_allclose(obs, [0.1, 0.1], rtol=0, atol=1e-7)
    assert reward == pytest.approx(-0.5, abs=1e-6)
    assert not terminated
    assert not truncated
    assert info == {}
    # The move (-0.05, 0.1) lands at (0.05, 0.2), at distance √(0.35² + 0.3²) ≈ 0.46098.
    obs, reward, _, _, _ = env.step([-0.05, 0.1])
    np.testing.assert_allclose(obs, [0.05, 0.2], rtol=0, atol=1e-7)
    assert reward == pytest.approx(-math.hypot(0.35, 0.3), abs=1e-6)


@pytest.mark.parametrize(
    "action, expected_position",
    [
        ([0.5, -0.3], [0.1, -0.1]),
        ([-2.0, 0.05], [-0.1, 0.05]),
        ([0.1, -0.1], [0.1, -0.1]),
        ([1e6, -1e6], [0.1, -0.1]),
        ([0.0, 0.0], [0.0, 0.0]),
    ],
)
def test_actions_clipped(action, expected_position):
    env = env_with_task(Navigation2DTask(0.0, 0.0))
    env.reset(seed=0)
    obs, reward, _, _, _ = env.step(np.asarray(action))
    np.testing.assert_array_equal(obs, np.float32(expected_position))
    # The goal is the origin, so the reward is minus the length of the clipped move.
    assert reward == pytest.approx(-math.hypot(*expected_position), abs=1e-7)


def test_clipped_action_accumulates():
    env = env_with_task(Navigation2DTask(0.0, 0.0))
    env.reset(seed=0)
    for _ in range(3):
        obs, _, _, _, _ = env.step([1.0, -0.02])
    np.testing.assert_allclose(obs, [0.3, -0.06], rtol=0, atol=1e-6)


@pytest.mark.parametrize("horizon", [1, 5, 100])
def test_truncation_at_horizon(horizon):
    env = Navigation2DEnv(horizon=horizon, task=Navigation2DTask(0.2, 0.2))
    env.reset(seed=0)
    flags = [env.step([0.01, 0.0])[2:4] for _ in range(horizon)]
    assert [terminated for terminated, _ in flags] == [False] * horizon
    assert [truncated for _, truncated in flags] == [False] * (horizon - 1) + [True]


def test_reset_restarts_step_count():
    env = Navigation2DEnv(horizon=3, task=Navigation2DTask(0.2, 0.2))
    for _ in range(2):
        obs, _ = env.reset()
        np.testing.assert_array_equal(obs, [0.0, 0.0])
        truncated = [env.step([0.1, 0.1])[3] for _ in range(3)]
        assert truncated == [False, False, True]


def test_default_horizon_is_100():
    env = gym.make("adaptrl/Navigation2D-v0")
    env.reset(seed=0)
    truncated = [env.step(np.zeros(2, dtype=np.float32))[3] for _ in range(100)]
    assert truncated.index(True) == 99
    env.close()


def test_reset_without_task_draws_one():
    first, second, third = Navigation2DEnv(), Navigation2DEnv(), Navigation2DEnv()
    first.reset(seed=3)
    second.reset(seed=3)
    third.reset(seed=4)
    assert isinstance(first.task, Navigation2DTask)
    assert first.task == second.task
    assert first.task != third.task
    assert abs(first.task.goal_x) <= 0.5
    assert abs(first.task.goal_y) <= 0.5


def test_task_kept_across_resets():
    task = Navigation2DTask(-0.2, 0.1)
    env = env_with_task(task)
    env.reset(seed=0)
    env.reset(seed=1)
    assert env.task == task


def test_task_setter_calls_set_task():
    env = Navigation2DEnv()
    env.task = Navigation2DTask(0.0, 0.3)
    env.reset(seed=0)
    _, reward, _, _, _ = env.step([0.0, 0.1])
    assert reward == pytest.approx(-0.2, abs=1e-6)


def test_set_task_keeps_position():
    env = env_with_task(Navigation2DTask(0.5, 0.5))
    env.reset(seed=0)
    env.step([0.1, 0.0])
    env.set_task(Navigation2DTask(0.1, -0.2))
    obs, reward, _, _, _ = env.step([0.0, 0.0])
    np.testing.assert_allclose(obs, [0.1, 0.0], rtol=0, atol=1e-7)
    assert reward == pytest.approx(-0.2, abs=1e-6)


def test_observation_is_a_copy():
    env = env_with_task(Navigation2DTask(0.2, 0.2))
    obs, _ = env.reset(seed=0)
    obs[:] = 5.0
    next_obs, _, _, _, _ = env.step([0.1, 0.0])
    np.testing.assert_allclose(next_obs, [0.1, 0.0], rtol=0, atol=1e-7)


def test_info_hides_task():
    env = Navigation2DEnv(task=Navigation2DTask(0.3, -0.2))
    other = Navigation2DEnv(task=Navigation2DTask(-0.4, 0.1))
    obs, info = env.reset(seed=0)
    other_obs, _ = other.reset(seed=0)
    assert info == {}
    # Observations are positions only, the same on every task for the same actions.
    np.testing.assert_array_equal(obs, other_obs)
    for action in ([0.1, 0.0], [0.3, -0.3], [0.0, 0.05]):
        obs, _, _, _, info = env.step(action)
        other_obs, _, _, _, _ = other.step(action)
        assert info == {}
        np.testing.assert_array_equal(obs, other_obs)


def test_oracle_info_has_task():
    task = Navigation2DTask(0.3, -0.2)
    env = env_with_task(task, oracle=True)
    _, info = env.reset(seed=0)
    assert info == {"task": task.to_dict()}
    _, _, _, _, info = env.step([0.1, 0.1])
    assert info["task"] == {"goal_x": task.goal_x, "goal_y": task.goal_y}


# Bad input to the Gymnasium environment


def test_env_rejects_bad_horizon():
    with pytest.raises(ValueError, match=r"at least 1 step, got horizon=0; pass horizon >= 1"):
        Navigation2DEnv(horizon=0)
    with pytest.raises(ValueError, match=r"horizon=-3"):
        gym.make("adaptrl/Navigation2D-v0", horizon=-3)


@pytest.mark.parametrize("task", [None, (0.1, 0.2), {"goal_x": 0.1, "goal_y": 0.2}])
def test_env_rejects_wrong_task_type(task):
    env = Navigation2DEnv()
    with pytest.raises(TypeError, match=r"expected a Navigation2DTask, got"):
        env.set_task(task)
    with pytest.raises(TypeError, match=r"expected a Navigation2DTask"):
        env.task = task


def test_env_constructor_rejects_wrong_task_type():
    with pytest.raises(TypeError, match=r"expected a Navigation2DTask, got tuple"):
        Navigation2DEnv(task=(0.1, 0.2))


def test_env_rejects_maze_task():
    maze_task = make_distribution("maze-5x5-n2", num_train_tasks=4, num_test_tasks=2).meta_split().test[0]
    with pytest.raises(TypeError, match=r"expected a Navigation2DTask, got MazeTask"):
        Navigation2DEnv().set_task(maze_task)


@pytest.mark.parametrize(
    "action, message",
    [
        ([0.1, 0.1, 0.1], r"expected a displacement of shape \(2,\), got shape \(3,\)"),
        (0.1, r"got shape \(\)"),
        ([math.nan, 0.0], r"both coordinates must be finite"),
        ([0.0, -math.inf], r"both coordinates must be finite"),
    ],
)
def test_env_rejects_bad_action(action, message):
    env = env_with_task(Navigation2DTask(0.1, 0.1))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_env_step_before_reset():
    with pytest.raises(RuntimeError, match=r"call reset\(\) before step\(\)"):
        env_with_task(Navigation2DTask(0.1, 0.1)).step([0.0, 0.0])


# Gymnasium checks and where the task travels


# A bare env has no spec, so the checker cannot test render modes and may warn. Positions are
# unbounded, as in learn2learn's Particles2DEnv, so the checker's warning about infinite
# observation bounds is expected too.
@pytest.mark.filterwarnings("ignore:.*alternative render modes")
@pytest.mark.filterwarnings("ignore:.*Box observation space m")
def test_check_env_passes():
    check_env(Navigation2DEnv())
    check_env(Navigation2DEnv(horizon=3, oracle=True, task=Navigation2DTask(0.1, 0.2)))


@pytest.mark.filterwarnings("ignore:.*Box observation space m")
def test_check_env_gym_make():
    env = gym.make("adaptrl/Navigation2D-v0")
    while isinstance(env, (OrderEnforcing, PassiveEnvChecker)):
        env = env.env
    assert isinstance(env, Navigation2DEnv)
    check_env(env)
    env.close()


def test_task_survives_env_pickle_and_deepcopy():
    task = Navigation2DTask(0.3, 0.1)
    env = env_with_task(task)
    env.reset(seed=0)
    env.step([0.1, 0.0])
    for restored in (pickle.loads(pickle.dumps(env)), copy.deepcopy(env)):
        assert restored.task == task
        np.testing.assert_allclose(restored.position, [0.1, 0.0], rtol=0, atol=1e-7)
        obs, reward, _, _, _ = restored.step([0.1, 0.1])
        np.testing.assert_allclose(obs, [0.2, 0.1], rtol=0, atol=1e-7)
        assert reward == pytest.approx(-0.1, abs=1e-6)


def test_task_survives_async_vector_env():
    tasks = (Navigation2DTask(0.3, 0.0), Navigation2DTask(0.0, -0.4))
    vector_env = AsyncVectorEnv([functools.partial(env_with_task, task) for task in tasks])
    try:
        vector_env.reset(seed=0)
        assert vector_env.get_attr("task") == tasks
        _, rewards, _, _, _ = vector_env.step(np.float32([[0.1, 0.0], [0.1, 0.0]]))
        # From (0.1, 0): 0.2 short of (0.3, 0), and √(0.1² + 0.4²) from (0, -0.4).
        np.testing.assert_allclose(rewards, [-0.2, -math.hypot(0.1, 0.4)], rtol=0, atol=1e-6)
        assert vector_env.get_attr("task") == tasks
    finally:
        vector_env.close()


def test_async_vector_env_set_attr_task():
    vector_env = AsyncVectorEnv([functools.partial(Navigation2DEnv, horizon=5)] * 2)
    tasks = (Navigation2DTask(-0.2, 0.0), Navigation2DTask(0.0, 0.5))
    try:
        vector_env.set_attr("task", list(tasks))
        assert vector_env.get_attr("task") == tasks
        vector_env.reset(seed=0)
        assert vector_env.get_attr("task") == tasks
        _, rewards, _, _, _ = vector_env.step(np.zeros((2, 2), dtype=np.float32))
        np.testing.assert_allclose(rewards, [-0.2, -0.5], rtol=0, atol=1e-6)
    finally:
        vector_env.close()


# The batched torch environment


def run_side_by_side(distribution, num_envs=6, num_steps=250, device="cpu", seed=0,
                     resume_at=None):
    """Step Gymnasium envs and a batched env with the same tasks and actions; record both.

    Actions are Normal(0, 0.15²), so about half their coordinates fall outside the box and
    get clipped. A few envs reset early at random, so the envs fall out of step, and an env
    whose episode was truncated resets. At step ``resume_at`` the batched env is rebuilt from
    its state dict.
    """
    rng = np.random.default_rng(seed)
    tasks = distribution.meta_split().test[:num_envs]
    gym_envs = [distribution.make_env() for _ in range(num_envs)]
    batched = distribution.make_batched_env(num_envs, device=device)
    every_env = torch.ones(num_envs, dtype=torch.bool, device=device)
    batched.set_tasks(every_env, torch.as_tensor(distribution.task_params(tasks), device=device))
    batched_obs = batched.reset(every_env)
    gym_obs = []
    for env, task in zip(gym_envs, tasks, strict=True):
        env.set_task(task)
        gym_obs.append(env.reset(seed=0)[0])

    record = {key: [] for key in ("gym_obs", "batched_obs", "gym_reward", "batched_reward",
                                  "gym_truncated", "batched_truncated", "batched_terminated",
                                  "clipped")}
    record["gym_obs"].append(np.stack(gym_obs))
    record["batched_obs"].append(batched_obs.cpu().numpy())
    for step in range(num_steps):
        if step == resume_at:
            state = copy.deepcopy(batched.state_dict())
            batched = distribution.make_batched_env(num_envs, device=device)
            batched.load_state_dict(state)
        actions = rng.normal(0.0, 0.15, size=(num_envs, 2)).astype(np.float32)
        record["clipped"].append(np.abs(actions) > 0.1)
        gym_steps = [env.step(action) for env, action in zip(gym_envs, actions, strict=True)]
        obs, reward, terminated, truncated = batched.step(torch.as_tensor(actions, device=device))
        record["gym_reward"].append([s[1] for s in gym_steps])
        record["batched_reward"].append(reward.cpu().numpy())
        record["gym_truncated"].append([s[3] for s in gym_steps])
        record["batched_truncated"].append(truncated.cpu().numpy())
        record["batched_terminated"].append(terminated.cpu().numpy())

        reset = np.array([s[3] for s in gym_steps]) | (rng.random(num_envs) < 0.02)
        batched_obs = batched.reset(torch.as_tensor(reset, device=device))
        gym_obs = [env.reset()[0] if reset[i] else gym_steps[i][0] for i, env in enumerate(gym_envs)]
        record["gym_obs"].append(np.stack(gym_obs))
        record["batched_obs"].append(batched_obs.cpu().numpy())
    return {key: np.asarray(value) for key, value in record.items()}


@pytest.fixture(scope="module")
def side_by_side():
    return run_side_by_side(small_distribution(horizon=40), resume_at=57)


def test_batched_matches_gym_observations(side_by_side):
    assert side_by_side["batched_obs"].dtype == np.float32
    np.testing.assert_allclose(side_by_side["batched_obs"], side_by_side["gym_obs"],
                               rtol=0, atol=1e-6)
    # The points wander well away from the origin, so the comparison is not vacuous.
    assert np.abs(side_by_side["gym_obs"]).max() > 0.5


def test_batched_matches_gym_rewards(side_by_side):
    assert side_by_side["batched_reward"].dtype == np.float32
    np.testing.assert_allclose(side_by_side["batched_reward"], side_by_side["gym_reward"],
                               rtol=0, atol=1e-6)


def test_batched_matches_gym_truncation(side_by_side):
    np.testing.assert_array_equal(side_by_side["batched_truncated"], side_by_side["gym_truncated"])
    assert not side_by_side["batched_terminated"].any()
    # Early resets put the envs out of step, so episodes end at different steps.
    truncated = side_by_side["batched_truncated"]
    assert truncated.any()
    assert (truncated.any(axis=1) & ~truncated.all(axis=1)).any()


def test_batched_comparison_clips(side_by_side):
    # About 1 - P(|Normal(0, 0.15²)| <= 0.1) ≈ 0.5 of the coordinates are outside the box.
    assert 0.3 < side_by_side["clipped"].mean() < 0.7


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batched_matches_gym_cuda():
    result = run_side_by_side(small_distribution(horizon=40), device="cuda", resume_at=57)
    np.testing.assert_allclose(result["batched_obs"], result["gym_obs"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(result["batched_reward"], result["gym_reward"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(result["batched_truncated"], result["gym_truncated"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batched_step_no_host_sync_cuda():
    distribution = small_distribution()
    batched = distribution.make_batched_env(16, device="cuda")
    params = torch.as_tensor(distribution.task_params(distribution.meta_split().test), device="cuda")
    mask = torch.rand(16, device="cuda") < 0.5
    actions = torch.randn(16, 2, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        batched.set_tasks(mask, params)
        batched.reset(mask)
        batched.step(actions)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_batched_state_dict_resumes_exactly():
    distribution = small_distribution(horizon=7)
    every_env = torch.ones(5, dtype=torch.bool)
    params = torch.as_tensor(distribution.task_params(distribution.meta_split().test[:5]))
    original = distribution.make_batched_env(5)
    original.set_tasks(every_env, params)
    original.reset(every_env)
    for _ in range(3):
        original.step(torch.full((5, 2), 0.07))
    state = original.state_dict()
    assert set(state) == {"task_params", "positions", "elapsed_steps"}
    restored = distribution.make_batched_env(5)
    restored.load_state_dict(copy.deepcopy(state))
    actions = torch.as_tensor(np.random.default_rng(0).normal(0, 0.2, size=(10, 5, 2)), dtype=torch.float32)
    for step_actions in actions:
        for expected, actual in zip(original.step(step_actions), restored.step(step_actions), strict=True):
            assert torch.equal(expected, actual)


def test_batched_state_dict_copies():
    env = small_distribution().make_batched_env(2)
    env.reset(torch.ones(2, dtype=torch.bool))
    env.step(torch.full((2, 2), 0.1))
    state = env.state_dict()
    env.step(torch.full((2, 2), 0.1))
    np.testing.assert_array_equal(state["elapsed_steps"].numpy(), [1, 1])
    np.testing.assert_allclose(state["positions"].numpy(), [[0.1, 0.1]] * 2, rtol=0, atol=1e-7)


def test_batched_load_state_dict_wrong_rows():
    state = small_distribution().make_batched_env(3).state_dict()
    with pytest.raises(ValueError, match=r"state 'task_params' has 3 rows but the environment has 2"):
        small_distribution().make_batched_env(2).load_state_dict(state)


def test_batched_reset_only_masked():
    env = BatchedNavigationEnv(3, horizon=10)
    env.reset(torch.ones(3, dtype=torch.bool))
    env.step(torch.tensor([[0.1, 0.0], [0.0, 0.1], [0.5, 0.5]]))
    obs = env.reset(torch.tensor([True, False, True]))
    np.testing.assert_allclose(obs.numpy(), [[0.0, 0.0], [0.0, 0.1], [0.0, 0.0]], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(env.elapsed_steps.numpy(), [0, 1, 0])


def test_batched_set_tasks_only_masked():
    env = BatchedNavigationEnv(2)
    params = torch.tensor([[0.1, 0.2], [0.3, 0.4]])
    env.set_tasks(torch.tensor([False, True]), params)
    np.testing.assert_array_equal(env.task_params.numpy(), np.float32([[0.0, 0.0], [0.3, 0.4]]))


def test_batched_ignores_noise():
    env = BatchedNavigationEnv(2)
    env.reset(torch.ones(2, dtype=torch.bool))
    _, reward, _, _ = env.step(torch.full((2, 2), 0.1), noise=torch.randn(2, 2))
    np.testing.assert_allclose(reward.numpy(), [-math.hypot(0.1, 0.1)] * 2, rtol=0, atol=1e-7)


def test_batched_rejects_bad_input():
    with pytest.raises(ValueError, match=r"horizon=0; pass horizon >= 1"):
        BatchedNavigationEnv(2, horizon=0)
    with pytest.raises(ValueError, match=r"num_envs must be at least 1, got 0"):
        BatchedNavigationEnv(0)
    env = BatchedNavigationEnv(2)
    with pytest.raises(ValueError, match=r"expected task_params of shape \(2, 2\) .* got \(2, 3\)"):
        env.set_tasks(torch.ones(2, dtype=torch.bool), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"expected actions of shape \(2, 2\) .* got \(2,\)"):
        env.step(torch.zeros(2))


# The distribution and its split


def test_split_default_sizes(default_distribution):
    split = default_distribution.meta_split()
    assert len(split.train) == 10_000
    assert len(split.test) == 1_000


def test_split_disjoint(default_distribution):
    split = default_distribution.meta_split()
    train_keys = {task.key() for task in split.train}
    test_keys = {task.key() for task in split.test}
    assert train_keys.isdisjoint(test_keys)
    assert len(test_keys) == len(split.test)


def test_split_reproducible_and_seeded():
    first = small_distribution().meta_split()
    assert small_distribution().meta_split() == first
    assert set(small_distribution(split_seed=1).meta_split().test).isdisjoint(first.test)


def test_split_goals_in_range(default_distribution):
    goals = default_distribution.task_params(default_distribution.meta_split().train)
    assert goals.shape == (10_000, 2)
    assert goals.dtype == np.float32
    assert np.abs(goals).max() <= 0.5
    # Uniform(-0.5, 0.5) has mean 0 and variance 1/12; 10,000 draws give a standard error
    # of about 0.003 for the mean.
    np.testing.assert_allclose(goals.mean(axis=0), [0.0, 0.0], rtol=0, atol=0.015)
    np.testing.assert_allclose(goals.var(axis=0), [1 / 12, 1 / 12], rtol=0.05)


def test_sample_tasks_uses_callers_generator(default_distribution):
    first = default_distribution.sample_tasks(np.random.default_rng(3), 5)
    second = default_distribution.sample_tasks(np.random.default_rng(3), 5)
    third = default_distribution.sample_tasks(np.random.default_rng(4), 5)
    assert first == second
    assert set(first).isdisjoint(third)


def test_task_params_and_back(default_distribution):
    tasks = default_distribution.meta_split().test[:4]
    params = default_distribution.task_params(tasks)
    assert params.shape == (4, 2)
    assert params.dtype == np.float32
    np.testing.assert_array_equal(params[2], tasks[2].goal)
    assert [default_distribution.task_from_params(row) for row in params] == list(tasks)
    assert default_distribution.task_params([]).shape == (0, 2)


def test_task_params_wrong_type(default_distribution):
    maze_task = make_distribution("maze-5x5-n2", num_train_tasks=4, num_test_tasks=2).meta_split().test[0]
    with pytest.raises(TypeError, match=r"navigation-2d takes Navigation2DTask tasks, got MazeTask"):
        default_distribution.task_params([maze_task])


def test_task_from_params_wrong_shape(default_distribution):
    with pytest.raises(ValueError, match=r"expected a row of shape \(2,\) .* got shape \(3,\)"):
        default_distribution.task_from_params([0.1, 0.2, 0.3])


# Registry and arguments


def test_registry_builds(default_distribution):
    assert isinstance(default_distribution, Navigation2DDistribution)
    assert default_distribution.name == "navigation-2d"
    assert default_distribution.registry_name == "navigation-2d"
    assert default_distribution.episodes_per_trial == 2
    assert default_distribution.horizon == 100
    assert default_distribution.has_batched_env
    assert "navigation-2d" in envs.known_names()
    env = default_distribution.make_env(oracle=True)
    assert isinstance(env, Navigation2DEnv)
    assert env.oracle
    assert env.horizon == 100
    batched = default_distribution.make_batched_env(3)
    assert batched.observation_dim == 2
    assert batched.action_space == env.action_space


def test_registry_kwargs_reach_distribution():
    distribution = make_distribution("navigation-2d", horizon=20, episodes_per_trial=3, num_test_tasks=9)
    assert distribution.horizon == 20
    assert distribution.episodes_per_trial == 3
    assert distribution.num_test_tasks == 9
    assert distribution.make_env().horizon == 20
    assert distribution.make_batched_env(1).horizon == 20


def test_config_records_constants():
    assert make_distribution("navigation-2d", horizon=50).config() == {
        "name": "navigation-2d",
        "episodes_per_trial": 2,
        "num_train_tasks": 10_000,
        "num_test_tasks": 1_000,
        "split_seed": 0,
        "horizon": 50,
        "goal_low": -0.5,
        "goal_high": 0.5,
        "action_bound": 0.1,
    }


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"horizon": 0}, r"at least 1 step, got horizon=0; pass horizon >= 1"),
        ({"episodes_per_trial": 0}, r"at least 1 episode, got episodes_per_trial=0"),
        ({"num_test_tasks": 0}, r"num_test_tasks must be at least 1, got 0"),
    ],
)
def test_bad_arguments_registry(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_distribution("navigation-2d", **kwargs)


def test_unknown_name_lists_family():
    with pytest.raises(ValueError, match=r"navigation-2d"):
        make_distribution("navigation-3d")


# Trials


def test_trial_wrapper_runs_trial():
    distribution = small_distribution(horizon=5)
    wrapper = TrialWrapper(distribution.make_env(), distribution, split="meta-test")
    obs, info = wrapper.reset(seed=0)
    assert obs.shape == (2 + 2 + 2,)
    np.testing.assert_array_equal(obs, [0, 0, 0, 0, 0, 1])
    assert set(info) == {"inner_episode", "inner_episode_returns"}
    task = wrapper.task
    assert task in distribution.meta_split().test

    action = np.float32([0.3, -0.05])
    rewards, flags, ends = [], [], []
    for _ in range(10):
        obs, reward, terminated, truncated, info = wrapper.step(action)
        rewards.append(reward)
        flags.append(obs[-1])
        ends.append(terminated)
        assert not truncated
        assert "task" not in info
        # The previous action is the one given, before clipping.
        np.testing.assert_array_equal(obs[2:4], action)
    assert wrapper.task == task
    assert ends == [False] * 9 + [True]
    # The flag marks the first observation of the second episode and the trial's end.
    assert flags == [0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    # Both episodes follow the same path on the same task, so their rewards repeat.
    assert rewards[:5] == rewards[5:]
    assert info["inner_episode_returns"] == pytest.approx([sum(rewards[:5])] * 2, abs=1e-12)


def test_make_trial_env_by_name():
    env = envs.make_trial_env("navigation-2d", split="meta-test")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (6,)
    steps = 0
    terminated = False
    while not terminated:
        _, _, terminated, _, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == 200
    env.close()


def test_batched_trial_env_runs_trial():
    distribution = small_distribution(horizon=5)
    tasks = distribution.meta_split().train
    trial_env = BatchedTrialEnv(
        distribution.make_batched_env(3), tasks,
        torch.as_tensor(distribution.task_params(tasks)), distribution.episodes_per_trial,
        generator=torch.Generator().manual_seed(1), name=distribution.name,
    )
    assert trial_env.observation_dim == 2 + 2 + 2
    obs = trial_env.reset()
    np.testing.assert_array_equal(obs.numpy(), [[0, 0, 0, 0, 0, 1]] * 3)
    first_tasks = trial_env.current_tasks()

    actions = torch.tensor([[0.1, 0.0], [0.0, -0.4], [0.05, 0.05]])
    rewards, episode_ends, trial_ends = [], [], []
    for step in range(10):
        result = trial_env.step(actions)
        rewards.append(result.reward)
        episode_ends.append(result.episode_end[0].item())
        trial_ends.append(result.terminated[0].item())
        assert result.episode_index.tolist() == [step // 5] * 3
        if step == 4:
            # The second episode starts at the origin on the same task.
            assert trial_env.current_tasks() == first_tasks
            np.testing.assert_array_equal(result.obs[:, :2].numpy(), [[0, 0]] * 3)
            np.testing.assert_array_equal(result.obs[:, -1].numpy(), [1, 1, 1])
    assert episode_ends == [False] * 4 + [True] + [False] * 4 + [True]
    assert trial_ends == [False] * 9 + [True]
    torch.testing.assert_close(torch.stack(rewards[:5]), torch.stack(rewards[5:]), rtol=0, atol=0)
    # A new trial starts with no previous action or reward.
    np.testing.assert_array_equal(result.obs[:, 2:5].numpy(), [[0, 0, 0]] * 3)


# References


def test_oracle_action_clips_per_coordinate():
    np.testing.assert_allclose(oracle_action([0.0, 0.0], [0.3, 0.1]), [0.1, 0.1])
    np.testing.assert_allclose(oracle_action([0.0, 0.0], [0.05, -0.3]), [0.05, -0.1])
    np.testing.assert_allclose(oracle_action([[0.2, 0.2]], [[0.25, 0.0]]), [[0.05, -0.1]])


def test_oracle_return_hand_computed():
    # Goal (0.25, 0): the oracle reaches (0.1, 0), (0.2, 0) and then the goal, so the rewards
    # are -0.15, -0.05, 0, 0, ... and the return is -0.2.
    assert float(oracle_returns([0.25, 0.0], 100)) == pytest.approx(-0.2, abs=1e-12)
    # Goal (0.3, -0.1): after one step it is at (0.1, -0.1), 0.2 short; then at (0.2, -0.1),
    # 0.1 short; then at the goal. The return is -0.3.
    np.testing.assert_allclose(oracle_returns([[0.3, -0.1], [0.0, 0.0]], 100), [-0.3, 0.0], atol=1e-12)
    # With a horizon of 1 only the first distance counts.
    assert float(oracle_returns([0.25, 0.0], 1)) == pytest.approx(-0.15, abs=1e-12)


def test_stand_still_return_hand_computed():
    np.testing.assert_allclose(stand_still_returns([[0.3, 0.4], [0.0, -0.2]], 100), [-50.0, -20.0])


def test_oracle_return_matches_env():
    distribution = small_distribution()
    for task in distribution.meta_split().test:
        env = env_with_task(task)
        obs, _ = env.reset(seed=0)
        total = 0.0
        for _ in range(100):
            obs, reward, _, _, _ = env.step(oracle_action(obs, task.goal))
            total += reward
        assert total == pytest.approx(float(oracle_returns(task.goal, 100)), abs=FLOAT32_RETURN_TOLERANCE)


def test_oracle_beats_straight_line():
    """The per-coordinate clip is at least as good as moving along the line to the goal."""
    goals = np.random.default_rng(0).uniform(-0.5, 0.5, size=(200, 2))
    straight = np.zeros(len(goals))
    positions = np.zeros_like(goals)
    for _ in range(100):
        offset = goals - positions
        largest = np.abs(offset).max(axis=1, keepdims=True)
        positions = positions + offset * np.minimum(1.0, 0.1 / np.maximum(largest, 1e-300))
        straight -= np.linalg.norm(goals - positions, axis=1)
    oracle = oracle_returns(goals, 100)
    assert (oracle >= straight - 1e-12).all()
    # Off the axes and diagonals the straight line is strictly worse.
    assert (oracle > straight + 1e-6).mean() > 0.9
    # For the goal (0.3, 0.1) the straight line passes (0.1, 1/30) and (0.2, 2/30), at
    # distances √0.04444 and √0.01111, and returns -√0.1 ≈ -0.3162. The oracle returns -0.3.
    assert float(oracle_returns([0.3, 0.1], 100)) == pytest.approx(-0.3, abs=1e-12)
    assert -math.hypot(0.2, 0.2 / 3) - math.hypot(0.1, 0.1 / 3) == pytest.approx(-math.sqrt(0.1))


def test_oracle_beats_perturbed_actions():
    goal = np.array([0.27, -0.18])
    rng = np.random.default_rng(1)
    best = float(oracle_returns(goal, 10))
    for _ in range(50):
        position = np.zeros(2)
        total = 0.0
        for _ in range(10):
            action = oracle_action(position, goal) + rng.normal(0, 0.02, size=2)
            position = position + np.clip(action, -0.1, 0.1)
            total -= np.linalg.norm(goal - position)
        assert total <= best + 1e-12


@pytest.fixture(scope="module")
def meta_test_references(default_distribution):
    tasks = default_distribution.meta_split().test
    return tasks, navigation_references(default_distribution, tasks, seed=0)


def test_references_shapes_and_names(meta_test_references):
    tasks, results = meta_test_references
    assert tuple(results) == NAVIGATION_REFERENCE_NAMES
    for result in results.values():
        assert result.returns.shape == (len(tasks), 2)
        assert result.lengths is None
        # Deterministic policies from the origin: every episode of a trial is the same.
        np.testing.assert_array_equal(result.returns[:, 0], result.returns[:, 1])
        assert result.exact_value == pytest.approx(result.returns.sum(axis=1).mean(), rel=1e-12)


def test_references_oracle_prior_mean(meta_test_references):
    _, results = meta_test_references
    per_task = results["oracle"].returns[:, 0]
    assert abs(per_task.mean() - ORACLE_PRIOR_VALUE) < STANDARD_ERRORS * standard_error(per_task)
    assert per_task.mean() == pytest.approx(-0.5, abs=0.05)
    assert (per_task <= 0).all()


def test_references_stand_still_prior_mean(meta_test_references):
    _, results = meta_test_references
    per_task = results["stand-still"].returns[:, 0]
    assert abs(per_task.mean() - STAND_STILL_PRIOR_VALUE) < STANDARD_ERRORS * standard_error(per_task)
    assert per_task.mean() == pytest.approx(-38, abs=2)


def test_references_match_env_simulation():
    distribution = small_distribution(horizon=30)
    tasks = distribution.meta_split().test[:4]
    results = navigation_references(distribution, tasks, seed=0)
    for index, task in enumerate(tasks):
        env = env_with_task(task, horizon=30)
        for name in NAVIGATION_REFERENCE_NAMES:
            obs, _ = env.reset()
            total, truncated = 0.0, False
            while not truncated:
                if name == "oracle":
                    action = oracle_action(obs, task.goal)
                else:
                    action = np.zeros(2, dtype=np.float32)
                obs, reward, _, truncated, _ = env.step(action)
                total += reward
            assert total == pytest.approx(results[name].returns[index, 0], abs=FLOAT32_RETURN_TOLERANCE)


def test_references_registered():
    distribution = small_distribution(episodes_per_trial=3)
    tasks = distribution.meta_split().test[:5]
    results = run_references(distribution, tasks, seed=7)
    assert tuple(results) == NAVIGATION_REFERENCE_NAMES
    assert results["oracle"].returns.shape == (5, 3)
    np.testing.assert_array_equal(
        results["oracle"].returns, navigation_references(distribution, tasks, seed=0)["oracle"].returns
    )


def test_oracle_returns_bad_input():
    with pytest.raises(ValueError, match=r"horizon must be at least 1, got 0"):
        oracle_returns([0.1, 0.1], 0)
    with pytest.raises(ValueError, match=r"goals must have shape \(num_tasks, 2\) or \(2,\), got \(3,\)"):
        oracle_returns([0.1, 0.1, 0.1], 10)
