"""Tests of the random tabular MDP family: tasks, environments, split, registry and references."""

import copy
import dataclasses
import functools
import hashlib
import os
import pickle
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AsyncVectorEnv
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker

from agents.references.base import run_references
from agents.references.tabular import (
    TABULAR_REFERENCE_NAMES,
    _Statistics,
    _TrialSimulator,
    tabular_references,
    value_iteration,
)
from envs.batched import BatchedTrialEnv
from envs.registry import make_distribution
from envs.tabular import (
    BatchedTabularEnv,
    MDPTask,
    TabularMDPDistribution,
    TabularMDPEnv,
    next_states,
)
from envs.trial import TrialWrapper

# Tolerance of the mean comparisons below, in standard errors. A two-sided 4-sigma check fails
# by chance with probability about 6e-5.
STANDARD_ERRORS = 4.0

# The oracle's expected episode return with the default constants (10 states, 5 actions,
# horizon 10, start state 0), averaged over the prior: value iteration on 200,000 tasks drawn
# with numpy.random.default_rng(123) gives 21.833 with a standard error of 0.005.
ORACLE_EPISODE_VALUE = 21.833

# Under uniformly random actions the actions and visited states do not depend on R, so every
# step's expected reward is the prior mean 1 and an episode of 10 steps expects 10.
RANDOM_EPISODE_VALUE = 10.0


def small_mdps(name="mdp-s4-a3-n3", **kwargs):
    return make_distribution(name, num_train_tasks=64, num_test_tasks=16, **kwargs)


def deterministic_task(num_states, num_actions, target, mean_rewards=None):
    """Return a task whose every action moves to state ``target``."""
    transitions = np.zeros((num_states, num_actions, num_states))
    transitions[:, :, target] = 1.0
    if mean_rewards is None:
        mean_rewards = np.zeros((num_states, num_actions))
    return MDPTask.from_arrays(transitions, mean_rewards)


def standard_error(values):
    return values.std(ddof=1) / np.sqrt(values.size)


@pytest.fixture(scope="module")
def default_distribution():
    return make_distribution("mdp-s10-a5-n10")


@pytest.fixture(scope="module")
def reference_results(default_distribution):
    tasks = default_distribution.meta_split().test[:300]
    return tasks, tabular_references(default_distribution, tasks, seed=0)


# Value iteration

# A hand-made MDP with 2 states and 2 actions. In state 0, action 0 stays and action 1 moves to
# state 1; in state 1, action 0 moves to either state with probability 1/2 and action 1 stays.
HAND_TRANSITIONS = np.array(
    [
        [[1.0, 0.0], [0.0, 1.0]],
        [[0.5, 0.5], [0.0, 1.0]],
    ]
)
HAND_REWARDS = np.array([[1.0, 0.0], [2.0, 3.0]])

# By hand, with horizon 2. At the last step Q = R, so V[1] = [max(1, 0), max(2, 3)] = [1, 3].
# At the first step:
#   Q[0, 0, 0] = 1 + V[1, 0]                     = 2
#   Q[0, 0, 1] = 0 + V[1, 1]                     = 3
#   Q[0, 1, 0] = 2 + 0.5 * V[1, 0] + 0.5 * V[1, 1] = 4
#   Q[0, 1, 1] = 3 + V[1, 1]                     = 6
# so V[0] = [3, 6], and V[2] = [0, 0] after the last step.
HAND_Q = np.array([[[2.0, 3.0], [4.0, 6.0]], [[1.0, 0.0], [2.0, 3.0]]])
HAND_V = np.array([[3.0, 6.0], [1.0, 3.0], [0.0, 0.0]])


def test_value_iteration_hand_mdp():
    q_values, values = value_iteration(HAND_TRANSITIONS, HAND_REWARDS, horizon=2)
    assert q_values.shape == (2, 2, 2)
    assert values.shape == (3, 2)
    np.testing.assert_allclose(q_values, HAND_Q, rtol=0, atol=1e-12)
    np.testing.assert_allclose(values, HAND_V, rtol=0, atol=1e-12)


def test_value_iteration_batch():
    # The second MDP is the first with rewards doubled, so its values double too.
    transitions = np.stack([HAND_TRANSITIONS, HAND_TRANSITIONS])
    rewards = np.stack([HAND_REWARDS, 2.0 * HAND_REWARDS])
    q_values, values = value_iteration(transitions, rewards, horizon=2)
    assert q_values.shape == (2, 2, 2, 2)
    np.testing.assert_allclose(q_values[0], HAND_Q, rtol=0, atol=1e-12)
    np.testing.assert_allclose(q_values[1], 2.0 * HAND_Q, rtol=0, atol=1e-12)
    np.testing.assert_allclose(values[1], 2.0 * HAND_V, rtol=0, atol=1e-12)


def test_value_iteration_horizon_one():
    q_values, values = value_iteration(HAND_TRANSITIONS, HAND_REWARDS, horizon=1)
    np.testing.assert_array_equal(q_values[0], HAND_REWARDS)
    np.testing.assert_array_equal(values, [[1.0, 3.0], [0.0, 0.0]])


@pytest.mark.parametrize(
    "transitions, rewards, horizon, message",
    [
        (HAND_TRANSITIONS, HAND_REWARDS, 0, r"horizon must be at least 1, got 0"),
        (HAND_TRANSITIONS, HAND_REWARDS[:, :1], 2, r"mean_rewards must have shape"),
        (HAND_TRANSITIONS[:, :, :1], HAND_REWARDS, 2, r"transitions must have shape"),
    ],
)
def test_value_iteration_bad_input(transitions, rewards, horizon, message):
    with pytest.raises(ValueError, match=message):
        value_iteration(transitions, rewards, horizon)


# Tasks


def test_task_from_arrays_roundtrip():
    task = MDPTask.from_arrays(HAND_TRANSITIONS, HAND_REWARDS)
    assert task.num_states == 2
    assert task.num_actions == 2
    np.testing.assert_array_equal(task.transitions, HAND_TRANSITIONS)
    np.testing.assert_array_equal(task.mean_rewards, HAND_REWARDS)
    assert task.transitions.dtype == np.float32
    np.testing.assert_array_equal(task.params, np.concatenate([HAND_TRANSITIONS.ravel(),
                                                               HAND_REWARDS.ravel()]))


def test_task_arrays_read_only():
    task = MDPTask.from_arrays(HAND_TRANSITIONS, HAND_REWARDS)
    with pytest.raises(ValueError, match="read-only"):
        task.mean_rewards[0, 0] = 5.0


def test_task_frozen():
    task = MDPTask.from_arrays(HAND_TRANSITIONS, HAND_REWARDS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.num_states = 3


def test_task_equal_and_hashable():
    first = MDPTask.from_arrays(HAND_TRANSITIONS, HAND_REWARDS)
    same = MDPTask.from_arrays(HAND_TRANSITIONS.copy(), HAND_REWARDS.copy())
    other = MDPTask.from_arrays(HAND_TRANSITIONS, HAND_REWARDS + 1.0)
    assert first == same
    assert first != other
    assert hash(first) == hash(same)
    assert first.key() == same.key()
    assert first.key() != other.key()
    assert len({first, same, other}) == 2


def test_task_pickle_and_deepcopy():
    task = MDPTask.from_arrays(HAND_TRANSITIONS, HAND_REWARDS)
    restored = pickle.loads(pickle.dumps(task))
    assert restored == task
    assert type(restored) is MDPTask
    assert copy.deepcopy(task) == task


def test_task_repr_short():
    task = small_mdps().meta_split().test[0]
    assert len(repr(task)) < 100
    assert repr(task).startswith("MDPTask(num_states=4, num_actions=3, sha256=")


@pytest.mark.parametrize(
    "transitions, rewards, message",
    [
        (np.full((2, 2, 2), 0.4), HAND_REWARDS, r"P\[0, 0, :\] sums to 0.8"),
        (np.array([[[1.5, -0.5]] * 2] * 2), HAND_REWARDS, r"must be non-negative"),
        (HAND_TRANSITIONS, np.zeros((2, 3)), r"mean_rewards must have shape \(S, A\) = \(2, 2\)"),
        (np.ones((2, 2, 3)) / 3, HAND_REWARDS, r"transitions must have shape \(S, A, S\)"),
        (HAND_TRANSITIONS, np.full((2, 2), np.nan), r"must be finite"),
    ],
)
def test_task_from_arrays_invalid(transitions, rewards, message):
    with pytest.raises(ValueError, match=message):
        MDPTask.from_arrays(transitions, rewards)


def test_task_wrong_byte_count():
    with pytest.raises(ValueError, match=r"param_bytes has 4 bytes, but an MDP with 2 states"):
        MDPTask(2, 2, b"\x00" * 4)


# The prior


@pytest.fixture(scope="module")
def prior_sample(default_distribution):
    tasks = default_distribution.sample_tasks(np.random.default_rng(7), 2000)
    transitions = np.stack([task.transitions for task in tasks])
    rewards = np.stack([task.mean_rewards for task in tasks])
    return transitions, rewards


def test_prior_rows_sum_to_one(prior_sample):
    transitions, _ = prior_sample
    assert transitions.shape == (2000, 10, 5, 10)
    np.testing.assert_allclose(transitions.sum(axis=-1, dtype=np.float64), 1.0, rtol=0, atol=1e-6)
    assert transitions.min() > 0.0


def test_prior_dirichlet_moments(prior_sample):
    transitions, _ = prior_sample
    # Each entry of a Dirichlet(1, ..., 1) row of 10 is Beta(1, 9): mean 1/10 and variance
    # 9 / (10² · 11). The first entry of 100,000 rows gives standard errors near 3e-4 for the
    # mean and 7e-5 for the variance.
    first_entries = transitions[..., 0].ravel().astype(np.float64)
    assert abs(first_entries.mean() - 0.1) < STANDARD_ERRORS * standard_error(first_entries)
    assert first_entries.var() == pytest.approx(9 / 1100, abs=4e-4)


def test_prior_reward_moments(prior_sample):
    _, rewards = prior_sample
    rewards = rewards.ravel().astype(np.float64)
    assert abs(rewards.mean() - 1.0) < STANDARD_ERRORS * standard_error(rewards)
    # The sample standard deviation of 100,000 Normal draws has a standard error near 0.0022.
    assert rewards.std() == pytest.approx(1.0, abs=0.01)


def test_prior_uses_callers_generator(default_distribution):
    first = default_distribution.sample_tasks(np.random.default_rng(3), 5)
    second = default_distribution.sample_tasks(np.random.default_rng(3), 5)
    third = default_distribution.sample_tasks(np.random.default_rng(4), 5)
    assert first == second
    assert set(first).isdisjoint(third)


# The inverse-CDF rule for next states

# Cumulative sums of the row [0.25, 0.25, 0.5]: [0.25, 0.5, 1.0], exact in float32. The next
# state is the first index whose cumulative sum exceeds u.
QUARTER_ROW = np.array([0.25, 0.25, 0.5])
QUARTER_CASES = [(0.0, 0), (0.2499, 0), (0.25, 1), (0.4999, 1), (0.5, 2), (0.75, 2), (0.999999, 2)]


@pytest.mark.parametrize("uniform, expected", QUARTER_CASES)
def test_next_state_quarter_row(uniform, expected):
    cumulative = np.cumsum(QUARTER_ROW.astype(np.float32), dtype=np.float32)
    assert next_states(cumulative, uniform) == expected


def test_next_state_float32_rounding():
    # float32(0.2) is 0.2000000030, above the float64 u = 0.2, so u = 0.2 picks state 0.
    cumulative = np.cumsum(np.float32([0.2, 0.3, 0.5]), dtype=np.float32)
    assert next_states(cumulative, 0.2) == 0
    assert next_states(cumulative, 0.2000000031) == 1


def test_next_state_clamps_to_last_reachable():
    # Rows whose float32 total is below 1: no cumulative sum exceeds u = 0.99999999.
    reachable_last = np.float32([0.5, 0.75, 0.9999999])
    unreachable_last = np.float32([0.5, 0.9999999, 0.9999999])
    assert next_states(reachable_last, 0.99999999) == 2
    # State 2 has probability 0 here, so the rule stops at state 1.
    assert next_states(unreachable_last, 0.99999999) == 1


def test_next_state_batched():
    cumulative = np.cumsum(np.tile(QUARTER_ROW.astype(np.float32), (len(QUARTER_CASES), 1)),
                           axis=-1, dtype=np.float32)
    uniform = np.array([u for u, _ in QUARTER_CASES])
    np.testing.assert_array_equal(next_states(cumulative, uniform),
                                  [expected for _, expected in QUARTER_CASES])


def one_step_batched(rows, uniform):
    """Step a BatchedTabularEnv from state 0 with action 0, one env per transition row."""
    num_envs, num_states = len(rows), len(rows[0])
    env = BatchedTabularEnv(num_envs, num_states=num_states, num_actions=2, horizon=3)
    transitions = np.zeros((num_envs, num_states, 2, num_states), dtype=np.float32)
    transitions[:, :, :] = np.asarray(rows, dtype=np.float32)[:, None, None, :]
    params = np.concatenate(
        [transitions.reshape(num_envs, -1), np.zeros((num_envs, num_states * 2), np.float32)], axis=1
    )
    all_envs = torch.ones(num_envs, dtype=torch.bool)
    env.set_tasks(all_envs, torch.as_tensor(params))
    env.reset(all_envs)
    noise = torch.stack([torch.tensor(uniform, dtype=torch.float64),
                         torch.zeros(num_envs, dtype=torch.float64)], dim=1)
    obs, _, _, _ = env.step(torch.zeros(num_envs, dtype=torch.long), noise)
    return obs.argmax(dim=1).tolist()


def test_next_state_batched_env_same_rule():
    rows = [QUARTER_ROW] * len(QUARTER_CASES) + [[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]]
    uniform = [u for u, _ in QUARTER_CASES] + [0.2, 0.2000000031]
    expected = [state for _, state in QUARTER_CASES] + [0, 1]
    assert one_step_batched(rows, uniform) == expected


def test_next_state_batched_env_clamps():
    # float32 rows summing to 0.99999994: [0.5, 0.49999994, 0] and [0.5, 0.25, 0.24999994].
    rows = [[0.5, 0.49999994, 0.0], [0.5, 0.25, 0.24999994]]
    assert one_step_batched(rows, [0.99999999, 0.99999999]) == [1, 2]


# The Gymnasium environment


def test_env_spaces_and_start_state():
    env = TabularMDPEnv()
    assert env.observation_space == gym.spaces.Box(0.0, 1.0, shape=(10,), dtype=np.float32)
    assert env.action_space == gym.spaces.Discrete(5)
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs, np.eye(10, dtype=np.float32)[0])
    assert obs.dtype == np.float32
    assert info == {}
    assert env.task is not None


def test_env_terminates_after_horizon():
    env = TabularMDPEnv(num_states=3, num_actions=2, horizon=4)
    env.reset(seed=0)
    flags = [env.step(0)[2:4] for _ in range(4)]
    assert flags == [(False, False)] * 3 + [(True, False)]
    env.reset()
    assert env.step(1)[2] is False


def test_env_follows_transitions_and_rewards():
    rewards = np.array([[5.0, -5.0], [0.5, 0.25], [0.0, 0.0]])
    task = deterministic_task(3, 2, target=1, mean_rewards=rewards)
    env = TabularMDPEnv(num_states=3, num_actions=2, horizon=3, noise_std=1.0, task=task)
    env.reset(seed=0)
    noise = [draw_like_env(env)[1]]
    env_copy = copy.deepcopy(env)
    env_copy.step(0)
    noise.append(draw_like_env(env_copy)[1])
    obs, reward, _, _, _ = env.step(0)
    np.testing.assert_array_equal(obs, [0.0, 1.0, 0.0])
    assert reward == float(np.float32(5.0 + noise[0]))
    obs, reward, _, _, _ = env.step(1)
    np.testing.assert_array_equal(obs, [0.0, 1.0, 0.0])
    assert reward == float(np.float32(0.25 + noise[1]))


def test_env_draws_own_task_from_seed():
    first, second = TabularMDPEnv(), TabularMDPEnv()
    first.reset(seed=11)
    second.reset(seed=11)
    assert first.task == second.task
    first.reset(seed=12)
    assert first.task == second.task, "a reset must keep the task"


def test_env_set_task_kept_and_replaced():
    env = TabularMDPEnv(num_states=3, num_actions=2)
    task = deterministic_task(3, 2, target=2)
    env.set_task(task)
    env.reset(seed=0)
    env.reset(seed=1)
    assert env.task == task
    other = deterministic_task(3, 2, target=1)
    env.set_task(other)
    env.reset()
    assert env.task == other
    np.testing.assert_array_equal(env.step(0)[0], [0.0, 1.0, 0.0])


def test_env_set_task_wrong_size():
    env = TabularMDPEnv(num_states=3, num_actions=2)
    with pytest.raises(ValueError, match=r"task has 2 states and 2 actions but the environment has 3 and 2"):
        env.set_task(MDPTask.from_arrays(HAND_TRANSITIONS, HAND_REWARDS))


def test_env_invalid_action():
    env = TabularMDPEnv(num_states=3, num_actions=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"invalid action 2; expected an int in \[0, 2\)"):
        env.step(2)


def test_env_step_before_reset():
    with pytest.raises(RuntimeError, match=r"call reset\(\) before step\(\)"):
        TabularMDPEnv().step(0)


# A bare env has no spec, so the checker cannot test render modes and warns.
@pytest.mark.filterwarnings("ignore:.*alternative render modes")
def test_check_env_passes():
    check_env(TabularMDPEnv())


def test_check_env_gym_make():
    env = gym.make("adaptrl/TabularMDP-v0")
    while isinstance(env, (OrderEnforcing, PassiveEnvChecker)):
        env = env.env
    check_env(env)
    env.close()


# Where the task travels


def test_task_survives_env_pickle_and_deepcopy():
    task = deterministic_task(3, 2, target=2)
    env = TabularMDPEnv(num_states=3, num_actions=2, task=task)
    env.reset(seed=0)
    for restored in (pickle.loads(pickle.dumps(env)), copy.deepcopy(env)):
        assert restored.task == task
        np.testing.assert_array_equal(restored.step(0)[0], [0.0, 0.0, 1.0])


def mdp_env_with_task(task):
    return TabularMDPEnv(num_states=3, num_actions=2, horizon=2, task=task)


def test_task_survives_async_vector_env():
    tasks = [deterministic_task(3, 2, target=target) for target in (1, 2, 0)]
    vector_env = AsyncVectorEnv([functools.partial(mdp_env_with_task, task) for task in tasks])
    try:
        vector_env.reset(seed=0)
        assert vector_env.get_attr("task") == tuple(tasks)
        obs = vector_env.step(np.zeros(3, dtype=np.int64))[0]
        np.testing.assert_array_equal(obs, np.eye(3, dtype=np.float32)[[1, 2, 0]])
        assert vector_env.get_attr("task") == tuple(tasks)
    finally:
        vector_env.close()


def test_info_hides_task():
    env = TabularMDPEnv(num_states=4, num_actions=3)
    obs, info = env.reset(seed=0)
    observations = [obs]
    assert info == {}
    for action in (0, 1, 2, 0):
        obs, _, _, _, info = env.step(action)
        observations.append(obs)
        assert info == {}
    # The observation is only a one-hot state.
    assert set(np.unique(np.stack(observations)).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(np.stack(observations).sum(axis=1), 1.0)


def test_oracle_info_has_task():
    task = small_mdps().meta_split().test[0]
    env = TabularMDPEnv(num_states=4, num_actions=3, oracle=True, task=task)
    _, info = env.reset(seed=0)
    np.testing.assert_array_equal(info["task"]["transitions"], task.transitions)
    np.testing.assert_array_equal(info["task"]["mean_rewards"], task.mean_rewards)
    _, _, _, _, info = env.step(1)
    np.testing.assert_array_equal(info["task"]["mean_rewards"], task.mean_rewards)


def test_trial_wrapper_hides_task():
    distribution = small_mdps()
    wrapper = TrialWrapper(distribution.make_env(), distribution)
    _, info = wrapper.reset(seed=0)
    assert set(info) == {"inner_episode", "inner_episode_returns"}
    _, _, _, _, info = wrapper.step(0)
    assert set(info) == {"inner_episode", "inner_episode_returns"}


def test_trial_wrapper_runs_trial():
    distribution = small_mdps(horizon=4)
    wrapper = TrialWrapper(distribution.make_env(), distribution)
    wrapper.reset(seed=0)
    terminated, steps = False, 0
    while not terminated:
        _, _, terminated, truncated, info = wrapper.step(steps % 3)
        steps += 1
        assert not truncated
    assert steps == 3 * 4
    assert len(info["inner_episode_returns"]) == 3


# The batched environment against the Gymnasium environment


def draw_like_env(env):
    """Draw the noise the env's next step will draw, without moving its generator."""
    rng = copy.deepcopy(env.np_random)
    return [rng.random(), rng.standard_normal()]


def run_side_by_side(num_envs=24, num_steps=45, seed=0):
    """Step N TabularMDPEnvs and one BatchedTabularEnv with the same tasks, actions and noise.

    Every env resets when its episode terminates, and a random subset also resets early, so
    the batched env's masked reset is exercised. Halfway through, the batched env is replaced
    by a fresh one loaded from its state_dict.
    """
    distribution = small_mdps("mdp-s10-a5-n10", horizon=6)
    tasks = distribution.meta_split().train[:num_envs]
    params = torch.as_tensor(distribution.task_params(tasks))
    rng = np.random.default_rng(seed)
    gym_envs = [distribution.make_env() for _ in range(num_envs)]
    batched = distribution.make_batched_env(num_envs)

    every_env = torch.ones(num_envs, dtype=torch.bool)
    batched.set_tasks(every_env, params)
    record = {key: [] for key in ("gym_obs", "batched_obs", "gym_reward", "batched_reward",
                                  "gym_terminated", "batched_terminated")}
    gym_obs = []
    for i, env in enumerate(gym_envs):
        env.set_task(tasks[i])
        gym_obs.append(env.reset(seed=seed + i)[0])
    record["gym_obs"].append(np.stack(gym_obs))
    record["batched_obs"].append(batched.reset(every_env).numpy())

    for step in range(num_steps):
        if step == num_steps // 2:
            restored = distribution.make_batched_env(num_envs)
            restored.load_state_dict(batched.state_dict())
            batched = restored
        actions = rng.integers(distribution.num_actions, size=num_envs)
        noise = torch.tensor([draw_like_env(env) for env in gym_envs], dtype=torch.float64)
        gym_steps = [env.step(int(a)) for env, a in zip(gym_envs, actions, strict=True)]
        obs, reward, terminated, truncated = batched.step(torch.as_tensor(actions), noise)
        assert not truncated.any()
        record["gym_obs"].append(np.stack([s[0] for s in gym_steps]))
        record["batched_obs"].append(obs.numpy())
        record["gym_reward"].append([s[1] for s in gym_steps])
        record["batched_reward"].append(reward.numpy())
        record["gym_terminated"].append([s[2] for s in gym_steps])
        record["batched_terminated"].append(terminated.numpy())

        reset = terminated.numpy() | (rng.random(num_envs) < 0.1)
        batched_reset_obs = batched.reset(torch.as_tensor(reset)).numpy()
        gym_reset_obs = np.stack([
            env.reset()[0] if reset[i] else gym_steps[i][0] for i, env in enumerate(gym_envs)
        ])
        record["gym_obs"].append(gym_reset_obs)
        record["batched_obs"].append(batched_reset_obs)
    return {key: np.asarray(value) for key, value in record.items()}


@pytest.fixture(scope="module")
def side_by_side():
    return run_side_by_side()


def test_batched_matches_gym_observations(side_by_side):
    np.testing.assert_array_equal(side_by_side["gym_obs"], side_by_side["batched_obs"])
    # The envs spread over several states, so the comparison is not vacuous.
    visited = side_by_side["gym_obs"].argmax(axis=-1)
    assert len(np.unique(visited)) >= 8


def test_batched_matches_gym_rewards(side_by_side):
    assert side_by_side["batched_reward"].dtype == np.float32
    np.testing.assert_array_equal(side_by_side["gym_reward"], side_by_side["batched_reward"])


def test_batched_matches_gym_terminated(side_by_side):
    np.testing.assert_array_equal(side_by_side["gym_terminated"], side_by_side["batched_terminated"])
    # Early resets put the envs out of step, so episodes end at different steps.
    terminated = side_by_side["batched_terminated"]
    assert terminated.any()
    assert (terminated.any(axis=1) & ~terminated.all(axis=1)).any()


def test_batched_state_dict_copies():
    distribution = small_mdps()
    env = distribution.make_batched_env(3, generator=torch.Generator().manual_seed(0))
    every_env = torch.ones(3, dtype=torch.bool)
    env.set_tasks(every_env, torch.as_tensor(distribution.task_params(distribution.meta_split().train[:3])))
    env.reset(every_env)
    env.step(torch.tensor([0, 1, 2]))
    state = env.state_dict()
    assert set(state) == {"task_params", "state", "elapsed_steps"}
    saved_state = state["state"].clone()
    env.step(torch.tensor([0, 1, 2]))
    np.testing.assert_array_equal(state["elapsed_steps"].numpy(), [1, 1, 1])
    np.testing.assert_array_equal(state["state"].numpy(), saved_state.numpy())


def test_batched_own_noise_shape_and_seed():
    distribution = small_mdps()
    first = distribution.make_batched_env(5, generator=torch.Generator().manual_seed(4))
    second = distribution.make_batched_env(5, generator=torch.Generator().manual_seed(4))
    noise = first.draw_noise()
    assert noise.shape == (5, 2)
    assert ((noise[:, 0] >= 0) & (noise[:, 0] < 1)).all()
    torch.testing.assert_close(noise, second.draw_noise())


def test_batched_reset_only_masked():
    distribution = small_mdps()
    env = distribution.make_batched_env(2)
    every_env = torch.ones(2, dtype=torch.bool)
    tasks = [deterministic_task(4, 3, target=3)] * 2
    env.set_tasks(every_env, torch.as_tensor(distribution.task_params(tasks)))
    env.reset(every_env)
    env.step(torch.tensor([0, 0]))
    obs = env.reset(torch.tensor([True, False]))
    np.testing.assert_array_equal(obs.numpy(), [[1, 0, 0, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(env.elapsed_steps.numpy(), [0, 1])


def test_batched_set_tasks_only_masked():
    distribution = small_mdps()
    env = distribution.make_batched_env(2)
    params = torch.as_tensor(distribution.task_params([deterministic_task(4, 3, target=2)] * 2))
    env.set_tasks(torch.tensor([False, True]), params)
    np.testing.assert_array_equal(env.task_params[1].numpy(), params[1].numpy())
    assert not torch.equal(env.task_params[0], params[0])


def test_batched_set_tasks_wrong_shape():
    env = small_mdps().make_batched_env(2)
    with pytest.raises(ValueError, match=r"expected task_params of shape \(2, 60\)"):
        env.set_tasks(torch.ones(2, dtype=torch.bool), torch.zeros(2, 10))


# Trials over the batched environment


def test_batched_trial_env_runs_trials():
    distribution = small_mdps(horizon=5)
    tasks = distribution.meta_split().train
    params = torch.as_tensor(distribution.task_params(tasks))
    trial_env = BatchedTrialEnv(
        distribution.make_batched_env(4, generator=torch.Generator().manual_seed(0)),
        tasks, params, distribution.episodes_per_trial,
        generator=torch.Generator().manual_seed(1), name=distribution.name,
    )
    assert trial_env.observation_dim == 4 + 3 + 2
    obs = trial_env.reset()
    np.testing.assert_array_equal(obs[:, :4].numpy(), [[1, 0, 0, 0]] * 4)
    np.testing.assert_array_equal(obs[:, -1].numpy(), [1, 1, 1, 1])

    trial_tasks = trial_env.task_index.clone()
    episode_ends, trial_ends, episode_indices = [], [], []
    for step in range(2 * 15):
        result = trial_env.step(torch.tensor([0, 1, 2, step % 3]))
        episode_ends.append(result.episode_end[0].item())
        trial_ends.append(result.terminated[0].item())
        episode_indices.append(result.episode_index[0].item())
        if result.episode_end[0] and not result.terminated[0]:
            # A new inner episode starts at state 0 on the same task.
            assert torch.equal(trial_env.task_index, trial_tasks)
            np.testing.assert_array_equal(result.obs[:, :4].numpy(), [[1, 0, 0, 0]] * 4)
            np.testing.assert_array_equal(result.obs[:, -1].numpy(), [1, 1, 1, 1])
        if result.terminated[0]:
            trial_tasks = trial_env.task_index.clone()
    # 3 episodes of 5 steps per trial, 2 trials.
    assert [i for i, end in enumerate(episode_ends) if end] == [4, 9, 14, 19, 24, 29]
    assert [i for i, end in enumerate(trial_ends) if end] == [14, 29]
    assert episode_indices == [0] * 5 + [1] * 5 + [2] * 5 + [0] * 5 + [1] * 5 + [2] * 5


# The split


def test_split_default_sizes(default_distribution):
    split = default_distribution.meta_split()
    assert len(split.train) == 20_000
    assert len(split.test) == 2_000


def test_split_disjoint(default_distribution):
    split = default_distribution.meta_split()
    train_keys = {task.key() for task in split.train}
    test_keys = {task.key() for task in split.test}
    assert train_keys.isdisjoint(test_keys)
    assert len(test_keys) == len(split.test)


def test_split_task_params(default_distribution):
    split = default_distribution.meta_split()
    params = default_distribution.task_params(split.test[:3])
    assert params.shape == (3, 10 * 5 * 10 + 10 * 5)
    assert params.dtype == np.float32
    np.testing.assert_array_equal(params[1, :500].reshape(10, 5, 10), split.test[1].transitions)
    np.testing.assert_array_equal(params[1, 500:].reshape(10, 5), split.test[1].mean_rewards)


def test_task_params_wrong_size(default_distribution):
    with pytest.raises(ValueError, match=r"mdp-s10-a5-n10 takes tasks with 10 states and 5 actions"):
        default_distribution.task_params([MDPTask.from_arrays(HAND_TRANSITIONS, HAND_REWARDS)])


def split_digest(distribution, count=20):
    """Hash the first tasks of each half of a split. The subprocess test repeats this code."""
    split = distribution.meta_split()
    data = distribution.task_params(split.train[:count]).tobytes()
    data += distribution.task_params(split.test[:count]).tobytes()
    return hashlib.sha256(data).hexdigest()


def test_split_reproducible_in_fresh_process(default_distribution):
    script = textwrap.dedent(
        """
        import hashlib
        import envs.tabular
        from envs.registry import make_distribution
        distribution = make_distribution("mdp-s10-a5-n10")
        split = distribution.meta_split()
        data = distribution.task_params(split.train[:20]).tobytes()
        data += distribution.task_params(split.test[:20]).tobytes()
        print(hashlib.sha256(data).hexdigest())
        """
    )
    # A different hash seed checks that the split does not depend on set iteration order.
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == split_digest(default_distribution)


def test_split_seed_changes_tasks():
    first = small_mdps().meta_split()
    second = small_mdps(split_seed=1).meta_split()
    assert set(first.test).isdisjoint(second.test)


def test_split_survives_pickle():
    distribution = small_mdps()
    restored = pickle.loads(pickle.dumps(distribution))
    assert restored.meta_split() == distribution.meta_split()


# Registry and arguments


@pytest.mark.parametrize(
    "name, num_states, num_actions, episodes",
    [("mdp-s10-a5-n10", 10, 5, 10), ("mdp-s4-a3-n25", 4, 3, 25)],
)
def test_registry_builds(name, num_states, num_actions, episodes):
    distribution = make_distribution(name)
    assert isinstance(distribution, TabularMDPDistribution)
    assert distribution.name == name
    assert distribution.registry_name == name
    assert distribution.num_states == num_states
    assert distribution.num_actions == num_actions
    assert distribution.episodes_per_trial == episodes
    assert distribution.horizon == 10
    assert distribution.has_batched_env
    env = distribution.make_env()
    assert env.observation_space.shape == (num_states,)
    assert env.action_space.n == num_actions
    batched = distribution.make_batched_env(2)
    assert batched.observation_dim == num_states
    assert batched.action_space.n == num_actions


def test_registry_kwargs_reach_distribution():
    distribution = make_distribution("mdp-s4-a3-n25", horizon=7, noise_std=0.5, num_test_tasks=9)
    assert distribution.horizon == 7
    assert distribution.make_env().horizon == 7
    assert distribution.make_batched_env(1).noise_std == 0.5
    assert distribution.num_test_tasks == 9


def test_config_records_constants():
    config = make_distribution("mdp-s4-a3-n25", horizon=7).config()
    assert config == {
        "name": "mdp-s4-a3-n25",
        "episodes_per_trial": 25,
        "num_train_tasks": 20_000,
        "num_test_tasks": 2_000,
        "split_seed": 0,
        "num_states": 4,
        "num_actions": 3,
        "horizon": 7,
        "reward_mean": 1.0,
        "reward_std": 1.0,
        "noise_std": 1.0,
    }


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("mdp-s1-a5-n10", {}, r"at least 2 states, got num_states=1; pass num_states >= 2"),
        ("mdp-s10-a1-n10", {}, r"at least 2 actions, got num_actions=1; pass num_actions >= 2"),
        ("mdp-s10-a5-n0", {}, r"at least 1 episode, got episodes_per_trial=0"),
        ("mdp-s10-a5-n10", {"horizon": 0}, r"at least 1 step, got horizon=0; pass horizon >= 1"),
        ("mdp-s10-a5-n10", {"reward_std": 0.0}, r"reward_std must be positive and finite, got 0.0"),
        ("mdp-s10-a5-n10", {"noise_std": -1.0}, r"noise_std must be positive and finite, got -1.0"),
    ],
)
def test_bad_arguments_registry(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_distribution(name, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_states": 1}, r"num_states=1"),
        ({"num_actions": 0}, r"num_actions=0"),
        ({"horizon": 0}, r"horizon=0"),
    ],
)
def test_bad_arguments_envs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TabularMDPEnv(**kwargs)
    batched_kwargs = {"num_states": 3, "num_actions": 2, "horizon": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        BatchedTabularEnv(2, **batched_kwargs)


# References


def test_references_shapes_and_names(reference_results):
    tasks, results = reference_results
    assert tuple(results) == TABULAR_REFERENCE_NAMES
    for result in results.values():
        assert result.returns.shape == (len(tasks), 10)
        assert result.lengths is None


@pytest.fixture(scope="module")
def oracle_start_values(reference_results, default_distribution):
    """Return the exact expected episode return of the oracle on each reference task."""
    tasks, _ = reference_results
    params = default_distribution.task_params(tasks).astype(np.float64)
    transitions = params[:, :500].reshape(-1, 10, 5, 10)
    rewards = params[:, 500:].reshape(-1, 10, 5)
    return value_iteration(transitions, rewards, 10)[1][:, 0, 0]


def test_references_oracle_value(reference_results, oracle_start_values):
    _, results = reference_results
    assert results["oracle"].exact_value == pytest.approx(10 * oracle_start_values.mean(), rel=1e-12)
    # These 300 tasks are a sample of the prior: their mean value is within 4 standard errors
    # of the prior's (the task-to-task standard deviation is about 2.3, so about ±0.5).
    assert abs(oracle_start_values.mean() - ORACLE_EPISODE_VALUE) < STANDARD_ERRORS * standard_error(
        oracle_start_values
    )


def test_references_oracle_simulation(reference_results, oracle_start_values):
    _, results = reference_results
    # Episodes of one task share its MDP, so errors are computed from per-task means. The
    # difference to each task's exact value leaves only the reward and transition noise.
    per_task = results["oracle"].returns.mean(axis=1)
    error = per_task - oracle_start_values
    assert abs(error.mean()) < STANDARD_ERRORS * standard_error(error)
    assert abs(per_task.mean() - ORACLE_EPISODE_VALUE) < STANDARD_ERRORS * standard_error(per_task)


def test_references_random_value(reference_results):
    _, results = reference_results
    per_task = results["random"].returns.mean(axis=1)
    assert abs(per_task.mean() - RANDOM_EPISODE_VALUE) < STANDARD_ERRORS * standard_error(per_task)
    exact = results["random"].exact_value / 10
    assert abs(per_task.mean() - exact) < STANDARD_ERRORS * standard_error(per_task)


def test_references_psrl_learns(reference_results):
    _, results = reference_results
    psrl = results["psrl"].returns
    improvement = psrl[:, -1] - psrl[:, 0]
    assert improvement.mean() > STANDARD_ERRORS * standard_error(improvement)
    gap = results["oracle"].returns[:, -1] - psrl[:, -1]
    assert gap.mean() > STANDARD_ERRORS * standard_error(gap)
    assert results["psrl"].exact_value is None


def test_references_posterior_mean_learns_and_beats_psrl(reference_results):
    _, results = reference_results
    planner = results["posterior-mean"].returns
    improvement = planner[:, -1] - planner[:, 0]
    assert improvement.mean() > STANDARD_ERRORS * standard_error(improvement)
    # On this family certainty equivalence earns about 158 per trial and PSRL about 134;
    # the two runs are independent, so the standard error of the difference adds in squares.
    planner_trials, psrl_trials = planner.sum(axis=1), results["psrl"].returns.sum(axis=1)
    difference_error = np.hypot(standard_error(planner_trials), standard_error(psrl_trials))
    assert planner_trials.mean() - psrl_trials.mean() > STANDARD_ERRORS * difference_error
    gap = results["oracle"].returns.sum(axis=1) - planner_trials
    assert gap.mean() > STANDARD_ERRORS * standard_error(gap)


def test_posterior_mean_by_hand():
    statistics = _Statistics(num_tasks=1, num_states=2, num_actions=2)
    # Action 0 in state 0 twice, rewards 3 and 1, both times to state 1.
    statistics.record(np.array([0]), np.array([0]), np.array([3.0]), np.array([1]))
    statistics.record(np.array([0]), np.array([0]), np.array([1.0]), np.array([1]))
    transitions, rewards = statistics.posterior_mean(reward_mean=1.0, reward_std=1.0, noise_std=1.0)
    # Dirichlet(1, 1) + counts (0, 2): mean (1, 3) / 4. Normal prior N(1, 1), unit noise, two
    # rewards summing to 4: mean (1 * 1 + 1 * 4) / (1 + 2) = 5 / 3. Unvisited pairs keep the prior.
    np.testing.assert_allclose(transitions[0, 0, 0], [0.25, 0.75])
    np.testing.assert_allclose(transitions[0, 1, 1], [0.5, 0.5])
    np.testing.assert_allclose(rewards[0], [[5 / 3, 1.0], [1.0, 1.0]])
    # A wider prior (std 2, precision 1/4) weighs the data more: (1/4 + 4) / (1/4 + 2) = 17 / 9.
    _, rewards = statistics.posterior_mean(reward_mean=1.0, reward_std=2.0, noise_std=1.0)
    assert rewards[0, 0, 0] == pytest.approx(17 / 9)


def test_trial_simulator_replans_before_every_step():
    # One MDP, 2 states, 2 actions, 3 episodes of 2 steps.
    transitions = np.full((1, 2, 2, 2), 0.5)
    simulator = _TrialSimulator(transitions, np.zeros((1, 2, 2)), horizon=2, episodes_per_trial=3,
                                noise_std=1.0)
    seen = []

    def choose_q(statistics, rng):
        seen.append(int(statistics.visits.sum()))
        return np.zeros((1, 2, 2, 2))

    simulator.run(choose_q, np.random.default_rng(0), replan_every_step=True)
    # Called before each of the 6 steps, with all earlier steps recorded.
    assert seen == [0, 1, 2, 3, 4, 5]
    seen.clear()
    simulator.run(choose_q, np.random.default_rng(0))
    assert seen == [0, 2, 4]


def test_references_seeded():
    distribution = small_mdps()
    tasks = distribution.meta_split().test
    first = tabular_references(distribution, tasks, seed=5)
    second = tabular_references(distribution, tasks, seed=5)
    third = tabular_references(distribution, tasks, seed=6)
    for name in TABULAR_REFERENCE_NAMES:
        np.testing.assert_array_equal(first[name].returns, second[name].returns)
        assert not np.array_equal(first[name].returns, third[name].returns)


def test_references_registered():
    distribution = small_mdps()
    tasks = distribution.meta_split().test[:4]
    results = run_references(distribution, tasks, seed=0)
    assert tuple(results) == TABULAR_REFERENCE_NAMES
    np.testing.assert_array_equal(
        results["psrl"].returns, tabular_references(distribution, tasks, seed=0)["psrl"].returns
    )
