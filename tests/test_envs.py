"""Tests of envs: tasks, splits, bandit envs, trials, batched envs and the registry."""

import copy
import dataclasses
import functools
import hashlib
import os
import pickle
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AsyncVectorEnv, AutoresetMode
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker

import envs
from envs import (
    BanditDistribution,
    BanditEnv,
    BanditTask,
    BatchedBanditEnv,
    BatchedTrialEnv,
    NonFiniteError,
    Task,
    TaskDistribution,
    TrialWrapper,
    make_distribution,
)

ADAPTRL_ENV_IDS = sorted(env_id for env_id in gym.registry if env_id.startswith("adaptrl/"))

# Layout of a bandit-k3 trial observation: base obs, one-hot previous action, previous reward,
# inner-episode-start flag.
K3_BASE, K3_ACTION, K3_REWARD, K3_FLAG = slice(0, 1), slice(1, 4), 4, 5

# Under Bernoulli rewards arm 0 always pays 1 and arm 1 never pays.
SURE_TASK = BanditTask((1.0, 0.0, 0.5))


def small_bandits(name="bandit-k3-n4", **kwargs):
    return make_distribution(name, num_train_tasks=50, num_test_tasks=10, **kwargs)


def split_digest(split, count=20):
    """Hash the first tasks of each half of a split. The subprocess test repeats this code."""
    text = repr((split.train[:count], split.test[:count]))
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def default_split():
    return make_distribution("bandit-k5-n10").meta_split()


# A tiny continuous-action task family: two steps per episode, reward -|action - target|.


@dataclass(frozen=True)
class TargetTask(Task):
    target: float


class TargetEnv(gym.Env):
    """An env with two steps per episode. The observation is the step index inside the episode."""

    episode_length = 2

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 2.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._task = None
        self._step_in_episode = 0

    @property
    def task(self):
        return self._task

    def set_task(self, task):
        self._task = task

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._step_in_episode = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        self._step_in_episode += 1
        reward = -abs(float(action[0]) - self._task.target)
        terminated = self._step_in_episode >= self.episode_length
        obs = np.array([self._step_in_episode], dtype=np.float32)
        return obs, reward, terminated, False, {}


class NonFiniteEnv(TargetEnv):
    """A TargetEnv whose third step since construction returns a non-finite value."""

    def __init__(self, field, value):
        super().__init__()
        self.field = field
        self.value = value
        self.total_steps = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self.total_steps += 1
        if self.total_steps == 3 and self.field == "reward":
            reward = self.value
        if self.total_steps == 3 and self.field == "observation":
            obs = np.full(1, self.value, dtype=np.float32)
        return obs, reward, terminated, truncated, info


class TargetDistribution(TaskDistribution):
    name = "target"
    episodes_per_trial = 3

    def __init__(self, num_train_tasks=20, num_test_tasks=5, split_seed=0):
        super().__init__(num_train_tasks, num_test_tasks, split_seed)

    def sample_tasks(self, rng, num_tasks):
        return [TargetTask(float(x)) for x in rng.uniform(-1.0, 1.0, num_tasks)]

    def make_env(self, oracle=False):
        return TargetEnv()


# Tasks


def test_task_frozen():
    task = BanditTask((0.1, 0.2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.arm_means = (0.3, 0.4)


def test_task_equal_by_value():
    assert BanditTask((0.1, 0.2)) == BanditTask((0.1, 0.2))
    assert BanditTask((0.1, 0.2)) != BanditTask((0.2, 0.1))


def test_task_hashable():
    assert hash(BanditTask((0.1, 0.2))) == hash(BanditTask((0.1, 0.2)))
    assert len({BanditTask((0.1, 0.2)), BanditTask((0.1, 0.2)), BanditTask((0.2, 0.1))}) == 2


def test_task_key_and_dict():
    task = BanditTask((0.1, 0.2))
    assert task.key() == ((0.1, 0.2),)
    assert task.to_dict() == {"arm_means": (0.1, 0.2)}


def test_task_pickle_roundtrip():
    task = BanditTask((0.1, 0.2, 0.3))
    restored = pickle.loads(pickle.dumps(task))
    assert restored == task
    assert type(restored) is BanditTask


def test_task_deepcopy():
    task = BanditTask((0.1, 0.2, 0.3))
    assert copy.deepcopy(task) == task


# Splits


def test_split_default_sizes(default_split):
    assert len(default_split.train) == 100_000
    assert len(default_split.test) == 10_000


def test_split_disjoint_by_key(default_split):
    train_keys = {task.key() for task in default_split.train}
    test_keys = {task.key() for task in default_split.test}
    assert train_keys.isdisjoint(test_keys)


def test_split_test_tasks_distinct(default_split):
    assert len({task.key() for task in default_split.test}) == len(default_split.test)


def test_split_reproducible_in_fresh_process(default_split):
    script = textwrap.dedent(
        """
        import hashlib
        import envs
        split = envs.make_distribution("bandit-k5-n10").meta_split()
        text = repr((split.train[:20], split.test[:20]))
        print(hashlib.sha256(text.encode()).hexdigest())
        """
    )
    # A different hash seed checks that the split does not depend on set iteration order.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == split_digest(default_split)


def test_split_seed_changes_tasks():
    first = make_distribution("bandit-k5-n10", num_train_tasks=1000, num_test_tasks=200)
    second = make_distribution(
        "bandit-k5-n10", num_train_tasks=1000, num_test_tasks=200, split_seed=1
    )
    assert set(first.meta_split().test).isdisjoint(second.meta_split().test)
    assert set(first.meta_split().train).isdisjoint(second.meta_split().train)


def test_split_small_sizes():
    distribution = make_distribution("bandit-k5-n10", num_train_tasks=1000, num_test_tasks=200)
    split = distribution.meta_split()
    assert len(split.train) == 1000
    assert len(split.test) == 200
    assert split.seed == 0
    assert {task.key() for task in split.train}.isdisjoint(task.key() for task in split.test)


def test_split_small_sizes_in_config():
    distribution = make_distribution("bandit-k5-n10", num_train_tasks=1000, num_test_tasks=200)
    assert distribution.config()["num_train_tasks"] == 1000
    assert distribution.config()["num_test_tasks"] == 200


def test_split_tasks_in_prior():
    split = small_bandits().meta_split()
    means = np.array([task.arm_means for task in split.train + split.test])
    assert means.shape == (60, 3)
    assert means.min() >= 0.0
    assert means.max() < 1.0


def test_split_survives_pickle():
    distribution = small_bandits()
    restored = pickle.loads(pickle.dumps(distribution))
    assert restored.meta_split() == distribution.meta_split()


def test_split_tasks_by_name():
    split = small_bandits().meta_split()
    assert split.tasks("meta-train") == split.train
    assert split.tasks("meta-test") == split.test
    with pytest.raises(ValueError, match=r"unknown split 'meta-valid'"):
        split.tasks("meta-valid")


@pytest.mark.parametrize("label", ["num_train_tasks", "num_test_tasks"])
def test_split_size_zero(label):
    with pytest.raises(ValueError, match=rf"{label} must be at least 1, got 0"):
        make_distribution("bandit-k5-n10", **{label: 0})


# Gymnasium's environment checker


def test_registry_has_adaptrl_envs():
    assert "adaptrl/BernoulliBandit-v0" in ADAPTRL_ENV_IDS
    assert "adaptrl/Trials-v0" in ADAPTRL_ENV_IDS


@pytest.mark.parametrize("env_id", ADAPTRL_ENV_IDS)
def test_check_env_passes(env_id):
    env = gym.make(env_id)
    # Check the env as its entry point built it: the TrialWrapper for trial ids, whose
    # .unwrapped would be the inner bandit. Only gym.make's own wrappers are removed.
    while isinstance(env, (OrderEnforcing, PassiveEnvChecker)):
        env = env.env
    # check_env also builds gym.make'd envs in "human" render mode, which MuJoCo cannot open
    # without a display; the locomotion envs' render modes have their own tests.
    check_env(env, skip_render_check=isinstance(env.unwrapped, envs.LocomotionEnv))
    env.close()


# set_task and where the task travels


def test_set_task_kept_across_resets():
    env = BanditEnv(num_arms=3)
    env.set_task(SURE_TASK)
    env.reset(seed=0)
    env.reset(seed=1)
    env.reset()
    assert env.task == SURE_TASK


def test_set_task_replaces_task():
    env = BanditEnv(num_arms=3)
    env.set_task(SURE_TASK)
    env.reset(seed=0)
    other = BanditTask((0.0, 1.0, 0.5))
    env.set_task(other)
    env.reset()
    assert env.task == other
    assert env.step(1)[1] == 1.0


def test_set_task_rewards_follow_task():
    env = BanditEnv(num_arms=3)
    env.set_task(SURE_TASK)
    env.reset(seed=0)
    sure_rewards = [env.step(0)[1] for _ in range(50)]
    never_rewards = [env.step(1)[1] for _ in range(50)]
    assert sure_rewards == [1.0] * 50
    assert never_rewards == [0.0] * 50


def test_set_task_wrong_arm_count():
    env = BanditEnv(num_arms=3)
    with pytest.raises(ValueError, match=r"task has 2 arms but the environment has 3"):
        env.set_task(BanditTask((0.5, 0.5)))


def test_task_survives_env_pickle():
    env = BanditEnv(num_arms=3)
    env.set_task(SURE_TASK)
    env.reset(seed=0)
    restored = pickle.loads(pickle.dumps(env))
    assert restored.task == SURE_TASK
    assert restored.step(0)[1] == 1.0


def test_task_survives_env_deepcopy():
    env = BanditEnv(num_arms=3)
    env.set_task(SURE_TASK)
    env.reset(seed=0)
    copied = copy.deepcopy(env)
    assert copied.task == SURE_TASK
    assert copied.step(1)[1] == 0.0


def test_task_survives_wrapper_pickle():
    distribution = small_bandits()
    wrapper = TrialWrapper(distribution.make_env(), distribution)
    wrapper.reset(seed=0, options={"task": SURE_TASK})
    assert pickle.loads(pickle.dumps(wrapper)).task == SURE_TASK
    assert copy.deepcopy(wrapper).task == SURE_TASK


def bandit_with_task(task):
    env = BanditEnv(num_arms=len(task.arm_means))
    env.set_task(task)
    return env


def test_task_survives_async_vector_env():
    tasks = [BanditTask((1.0, 0.0)), BanditTask((0.0, 1.0)), BanditTask((1.0, 1.0))]
    env_fns = [functools.partial(bandit_with_task, task) for task in tasks]
    # Each bandit episode is one step, so the default NEXT_STEP autoreset would spend every
    # other step on a reset with reward 0. SAME_STEP resets inside the step that terminated.
    vector_env = AsyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)
    try:
        vector_env.reset(seed=0)
        assert vector_env.get_attr("task") == tuple(tasks)

        arm0 = [vector_env.step(np.zeros(3, dtype=np.int64))[1] for _ in range(20)]
        arm1 = [vector_env.step(np.ones(3, dtype=np.int64))[1] for _ in range(20)]
        np.testing.assert_array_equal(np.mean(arm0, axis=0), [1.0, 0.0, 1.0])
        np.testing.assert_array_equal(np.mean(arm1, axis=0), [0.0, 1.0, 1.0])
        assert vector_env.get_attr("task") == tuple(tasks)
    finally:
        vector_env.close()


# Task parameters stay out of observations and info unless oracle=True

TRIAL_INFO_KEYS = {"inner_episode", "inner_episode_returns"}
HIDDEN_TASK = BanditTask((0.125, 0.375, 0.625))


def test_bandit_info_hides_task():
    env = BanditEnv(num_arms=3, task=HIDDEN_TASK)
    obs, reset_info = env.reset(seed=0)
    step_obs, _, _, _, step_info = env.step(0)
    assert reset_info == {}
    assert step_info == {}
    assert not np.isin(np.float32(HIDDEN_TASK.arm_means), np.concatenate([obs, step_obs])).any()


def test_bandit_oracle_info_has_means():
    env = BanditEnv(num_arms=3, oracle=True, task=HIDDEN_TASK)
    _, reset_info = env.reset(seed=0)
    _, _, _, _, step_info = env.step(0)
    assert reset_info["task"]["arm_means"] == HIDDEN_TASK.arm_means
    assert step_info["task"]["arm_means"] == HIDDEN_TASK.arm_means


def test_trial_info_hides_task():
    distribution = small_bandits()
    wrapper = TrialWrapper(distribution.make_env(), distribution)
    observations = []
    obs, info = wrapper.reset(seed=0, options={"task": HIDDEN_TASK})
    observations.append(obs)
    assert set(info) == TRIAL_INFO_KEYS
    for _ in range(4):
        obs, _, _, _, info = wrapper.step(2)
        observations.append(obs)
        assert set(info) == TRIAL_INFO_KEYS
    assert not np.isin(np.float32(HIDDEN_TASK.arm_means), np.stack(observations)).any()


def test_trial_oracle_info_has_means():
    distribution = small_bandits()
    wrapper = TrialWrapper(distribution.make_env(oracle=True), distribution)
    _, info = wrapper.reset(seed=0, options={"task": HIDDEN_TASK})
    assert set(info) == TRIAL_INFO_KEYS | {"task"}
    assert info["task"]["arm_means"] == HIDDEN_TASK.arm_means
    for _ in range(4):
        _, _, _, _, info = wrapper.step(1)
        assert info["task"]["arm_means"] == HIDDEN_TASK.arm_means


def test_trial_oracle_info_follows_trial_task():
    distribution = small_bandits()
    wrapper = TrialWrapper(distribution.make_env(oracle=True), distribution)
    _, info = wrapper.reset(seed=3)
    assert info["task"]["arm_means"] == wrapper.task.arm_means
    assert wrapper.task in distribution.meta_split().train


# TrialWrapper


def test_trial_bandit_observations():
    distribution = small_bandits()
    wrapper = TrialWrapper(distribution.make_env(), distribution)
    assert wrapper.observation_space.shape == (6,)
    obs, _ = wrapper.reset(seed=0, options={"task": SURE_TASK})
    np.testing.assert_array_equal(obs, [0, 0, 0, 0, 0, 1])

    # Arm 0 always pays 1, arm 1 never pays.
    expected = [
        [0, 1, 0, 0, 1, 1],
        [0, 0, 1, 0, 0, 1],
        [0, 1, 0, 0, 1, 1],
        [0, 0, 1, 0, 0, 1],
    ]
    for action, row in zip([0, 1, 0, 1], expected, strict=True):
        obs, _, _, _, _ = wrapper.step(action)
        assert obs.dtype == np.float32
        np.testing.assert_array_equal(obs, row)


def test_trial_bandit_start_layout():
    distribution = small_bandits()
    wrapper = TrialWrapper(distribution.make_env(), distribution)
    obs, _ = wrapper.reset(seed=0)
    np.testing.assert_array_equal(obs[K3_BASE], [0.0])
    np.testing.assert_array_equal(obs[K3_ACTION], [0.0, 0.0, 0.0])
    assert obs[K3_REWARD] == 0.0
    assert obs[K3_FLAG] == 1.0


def test_trial_bandit_length_and_returns():
    distribution = small_bandits()
    wrapper = TrialWrapper(distribution.make_env(), distribution)
    assert wrapper.episodes_per_trial == 4
    _, info = wrapper.reset(seed=0, options={"task": SURE_TASK})
    assert info["inner_episode"] == 0
    assert info["inner_episode_returns"] == []

    rewards, terminated_flags, episode_indices, returns = [], [], [], []
    for action in [0, 1, 0, 0]:
        _, reward, terminated, truncated, info = wrapper.step(action)
        assert truncated is False
        rewards.append(reward)
        terminated_flags.append(terminated)
        episode_indices.append(info["inner_episode"])
        returns.append(info["inner_episode_returns"])
    assert rewards == [1.0, 0.0, 1.0, 1.0]
    assert terminated_flags == [False, False, False, True]
    assert episode_indices == [1, 2, 3, 3]
    assert returns == [[1.0], [1.0, 0.0], [1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 1.0]]


def test_trial_task_fixed_within_trial():
    distribution = small_bandits()
    wrapper = TrialWrapper(distribution.make_env(), distribution)
    wrapper.reset(seed=0)
    first = wrapper.task
    for _ in range(4):
        wrapper.step(2)
        assert wrapper.task == first


def test_trial_new_task_each_trial():
    distribution = small_bandits()
    wrapper = TrialWrapper(distribution.make_env(), distribution)
    trial_tasks = []
    wrapper.reset(seed=0)
    for _ in range(5):
        trial_tasks.append(wrapper.task)
        for _ in range(4):
            wrapper.step(0)
        wrapper.reset()
    assert len(set(trial_tasks)) == 5
    assert set(trial_tasks) <= set(distribution.meta_split().train)


def test_trial_meta_test_split():
    distribution = small_bandits()
    wrapper = TrialWrapper(distribution.make_env(), distribution, split="meta-test")
    wrapper.reset(seed=0)
    assert wrapper.task in distribution.meta_split().test


def test_trial_seed_fixes_task_draws():
    distribution = small_bandits()
    first = TrialWrapper(distribution.make_env(), distribution)
    second = TrialWrapper(distribution.make_env(), distribution)
    first.reset(seed=7)
    second.reset(seed=7)
    assert first.task == second.task


def test_trial_forced_task_lasts_one_trial():
    distribution = small_bandits()
    wrapper = TrialWrapper(distribution.make_env(), distribution)
    wrapper.reset(seed=0, options={"task": SURE_TASK})
    assert wrapper.task == SURE_TASK
    wrapper.reset()
    assert wrapper.task in distribution.meta_split().train


def test_trial_episodes_per_trial_override():
    distribution = small_bandits()
    wrapper = TrialWrapper(distribution.make_env(), distribution, episodes_per_trial=2)
    wrapper.reset(seed=0, options={"task": SURE_TASK})
    assert wrapper.step(0)[2] is False
    assert wrapper.step(0)[2] is True


def test_trial_box_action_observations():
    wrapper = TrialWrapper(TargetEnv(), TargetDistribution())
    assert wrapper.observation_space.shape == (4,)
    obs, _ = wrapper.reset(seed=0, options={"task": TargetTask(0.25)})
    np.testing.assert_array_equal(obs, [0.0, 0.0, 0.0, 1.0])

    # Columns: base obs (step inside the episode), raw previous action, reward, episode-start flag.
    actions = [0.5, -0.5, 0.25, 0.0, 1.0, 0.25]
    expected = [
        [1.0, 0.5, -0.25, 0.0],
        [0.0, -0.5, -0.75, 1.0],
        [1.0, 0.25, 0.0, 0.0],
        [0.0, 0.0, -0.25, 1.0],
        [1.0, 1.0, -0.75, 0.0],
        [2.0, 0.25, 0.0, 1.0],
    ]
    for action, row in zip(actions, expected, strict=True):
        obs, _, _, _, _ = wrapper.step(np.array([action], dtype=np.float32))
        np.testing.assert_array_equal(obs, row)


def test_trial_box_action_length_and_returns():
    wrapper = TrialWrapper(TargetEnv(), TargetDistribution())
    wrapper.reset(seed=0, options={"task": TargetTask(0.25)})
    terminated_flags, episode_indices = [], []
    for action in [0.5, -0.5, 0.25, 0.0, 1.0, 0.25]:
        _, _, terminated, _, info = wrapper.step(np.array([action], dtype=np.float32))
        terminated_flags.append(terminated)
        episode_indices.append(info["inner_episode"])
    assert terminated_flags == [False] * 5 + [True]
    assert episode_indices == [0, 1, 1, 2, 2, 2]
    assert info["inner_episode_returns"] == [-1.0, -0.25, -0.75]


def test_trial_box_action_draws_tasks():
    distribution = TargetDistribution()
    wrapper = TrialWrapper(TargetEnv(), distribution)
    wrapper.reset(seed=0)
    assert wrapper.task in distribution.meta_split().train


# Batched torch envs against Gymnasium trial wrappers


def draw_like_env(env):
    """Draw the noise the bandit's next step will draw, without moving its generator."""
    bandit = env.unwrapped
    rng = copy.deepcopy(bandit.np_random)
    return float(rng.random()) if bandit.reward == "bernoulli" else float(rng.standard_normal())


def run_side_by_side(name, num_envs=4, num_trials=3, seed=0):
    """Step N TrialWrappers and one BatchedTrialEnv with the same tasks, actions and noise."""
    distribution = small_bandits(name)
    tasks = distribution.meta_split().train
    params = torch.as_tensor(distribution.task_params(tasks))
    k = distribution.episodes_per_trial
    batched = BatchedTrialEnv(
        distribution.make_batched_env(num_envs), tasks, params, k,
        generator=torch.Generator().manual_seed(seed),
    )
    wrappers = [TrialWrapper(distribution.make_env(), distribution) for _ in range(num_envs)]
    rng = np.random.default_rng(seed)

    start_index = torch.as_tensor(rng.integers(len(tasks), size=num_envs))
    batched_obs = [batched.reset(task_index=start_index).numpy()]
    gym_obs = [np.stack([
        wrapper.reset(seed=seed + i, options={"task": tasks[int(start_index[i])]})[0]
        for i, wrapper in enumerate(wrappers)
    ])]
    record = {key: [] for key in ("gym_reward", "batched_reward", "gym_terminated",
                                  "batched_terminated", "gym_tasks", "batched_tasks")}
    for _ in range(num_trials * k):
        actions = rng.integers(distribution.num_arms, size=num_envs)
        noise = torch.tensor([draw_like_env(w) for w in wrappers], dtype=torch.float64)
        gym_steps = [w.step(int(a)) for w, a in zip(wrappers, actions, strict=True)]
        step = batched.step(torch.as_tensor(actions), noise=noise)

        observations = []
        for i, (obs, _, terminated, _, _) in enumerate(gym_steps):
            if terminated:
                # Compare the trial's last observation, then start the next trial on the task
                # that the batched env drew.
                np.testing.assert_array_equal(obs, step.final_obs[i].numpy())
                next_task = tasks[int(batched.task_index[i])]
                obs, _ = wrappers[i].reset(options={"task": next_task})
            observations.append(obs)
        gym_obs.append(np.stack(observations))
        batched_obs.append(step.obs.numpy())
        record["gym_reward"].append([s[1] for s in gym_steps])
        record["batched_reward"].append(step.reward.numpy())
        record["gym_terminated"].append([s[2] for s in gym_steps])
        record["batched_terminated"].append(step.terminated.numpy())
        record["gym_tasks"].append([w.task for w in wrappers])
        record["batched_tasks"].append(batched.current_tasks())
    record["gym_obs"], record["batched_obs"] = gym_obs, batched_obs
    return {key: np.asarray(value) for key, value in record.items()}


def test_batched_matches_gym_bernoulli():
    run = run_side_by_side("bandit-k3-n4")
    np.testing.assert_array_equal(run["gym_obs"], run["batched_obs"])
    np.testing.assert_array_equal(run["gym_reward"], run["batched_reward"])
    np.testing.assert_array_equal(run["gym_terminated"], run["batched_terminated"])
    assert run["gym_tasks"].tolist() == run["batched_tasks"].tolist()


def test_batched_matches_gym_bernoulli_trial_ends():
    run = run_side_by_side("bandit-k3-n4")
    # 3 trials of 4 pulls: every env ends a trial at steps 4, 8 and 12.
    expected = np.zeros((12, 4), dtype=bool)
    expected[[3, 7, 11]] = True
    np.testing.assert_array_equal(run["batched_terminated"], expected)
    # Both reward values occur, so the comparison is not vacuous.
    assert set(np.unique(run["gym_reward"])) == {0.0, 1.0}


def test_batched_matches_gym_gaussian():
    run = run_side_by_side("gaussian-bandit-k3-n4")
    # The Gymnasium env computes rewards in float64, the batched env in float32.
    np.testing.assert_allclose(run["gym_obs"], run["batched_obs"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(run["gym_reward"], run["batched_reward"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(run["gym_terminated"], run["batched_terminated"])
    assert run["gym_tasks"].tolist() == run["batched_tasks"].tolist()


def test_batched_reset_observation():
    distribution = small_bandits()
    tasks = distribution.meta_split().train
    params = torch.as_tensor(distribution.task_params(tasks))
    batched = BatchedTrialEnv(distribution.make_batched_env(2), tasks, params, 4)
    obs = batched.reset(task_index=torch.tensor([3, 5]))
    np.testing.assert_array_equal(obs.numpy(), [[0, 0, 0, 0, 0, 1]] * 2)
    assert batched.current_tasks() == [tasks[3], tasks[5]]


# Registry


@pytest.mark.parametrize(
    "name, num_arms, num_pulls, reward",
    [
        ("bandit-k5-n10", 5, 10, "bernoulli"),
        ("bandit-k3-n4", 3, 4, "bernoulli"),
        ("bandit-k12-n100", 12, 100, "bernoulli"),
        ("gaussian-bandit-k5-n10", 5, 10, "gaussian"),
        ("gaussian-bandit-k7-n20", 7, 20, "gaussian"),
    ],
)
def test_registry_known_name(name, num_arms, num_pulls, reward):
    distribution = make_distribution(name)
    assert isinstance(distribution, BanditDistribution)
    assert distribution.num_arms == num_arms
    assert distribution.num_pulls == num_pulls
    assert distribution.episodes_per_trial == num_pulls
    assert distribution.reward == reward
    assert distribution.name == name
    assert distribution.registry_name == name


def test_registry_known_names_resolve():
    assert "bandit-k5-n10" in envs.known_names()
    for name in envs.known_names():
        assert make_distribution(name).name == name


def test_registry_kwargs_recorded():
    distribution = make_distribution("bandit-k5-n10", num_test_tasks=7)
    assert distribution.num_test_tasks == 7
    assert distribution.registry_kwargs == {"num_test_tasks": 7}


@pytest.mark.parametrize("name", ["bandit-k5", "cheetah-vel", "Bandit-k5-n10", "bandit-kx-n10"])
def test_registry_unknown_name(name):
    with pytest.raises(ValueError, match=r"(?s)unknown environment .*bandit-k5-n10"):
        make_distribution(name)


@pytest.mark.parametrize("name", ["", None])
def test_registry_empty_name(name):
    with pytest.raises(ValueError, match=r"expected a task-distribution name"):
        make_distribution(name)


CUSTOM_MODULE = "envs_fixture_custom_tasks"

CUSTOM_SOURCE = '''
from envs import BanditDistribution


def make(num_test_tasks=5):
    return BanditDistribution(2, 3, num_train_tasks=20, num_test_tasks=num_test_tasks)


def make_wrong():
    return "not a distribution"


not_callable = 3
'''


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    # The module lives outside the package, reachable only through the patched sys.path.
    (tmp_path / f"{CUSTOM_MODULE}.py").write_text(CUSTOM_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield CUSTOM_MODULE
    sys.modules.pop(CUSTOM_MODULE, None)


def test_custom_factory_loads(custom_module):
    distribution = make_distribution(f"{custom_module}:make", num_test_tasks=4)
    assert isinstance(distribution, TaskDistribution)
    assert distribution.num_arms == 2
    assert distribution.num_test_tasks == 4
    assert len(distribution.meta_split().test) == 4
    assert distribution.registry_name == f"{custom_module}:make"


def test_custom_class_loads(custom_module):
    distribution = make_distribution(
        f"{custom_module}:BanditDistribution", num_arms=4, num_train_tasks=30
    )
    assert distribution.num_arms == 4
    assert len(distribution.meta_split().train) == 30


@pytest.mark.parametrize("path", ["a:b:c", ":x", "a:"])
def test_custom_path_malformed(path):
    with pytest.raises(ValueError, match=rf"malformed custom environment path '{path}'"):
        make_distribution(path)


def test_custom_module_missing():
    with pytest.raises(ValueError, match=r"cannot import module 'adaptrl_no_such_module'"):
        make_distribution("adaptrl_no_such_module:make")


@pytest.mark.parametrize("attribute", ["missing", "not_callable"])
def test_custom_attribute_missing(custom_module, attribute):
    with pytest.raises(ValueError, match=rf"has no callable '{attribute}'"):
        make_distribution(f"{custom_module}:{attribute}")


def test_custom_factory_wrong_type(custom_module):
    with pytest.raises(TypeError, match=r"returned str, expected an envs.TaskDistribution"):
        make_distribution(f"{custom_module}:make_wrong")


# Bad input


def test_bad_arms_registry():
    with pytest.raises(ValueError, match=r"at least 2 arms \(k >= 2\), got k=1"):
        make_distribution("bandit-k1-n10")


def test_bad_arms_env():
    with pytest.raises(ValueError, match=r"got k=1"):
        BanditEnv(num_arms=1)
    with pytest.raises(ValueError, match=r"got k=0"):
        BatchedBanditEnv(num_envs=2, num_arms=0)


def test_bad_pulls_registry():
    with pytest.raises(ValueError, match=r"at least one pull \(n >= 1\), got n=0"):
        make_distribution("bandit-k5-n0")


def test_bad_episodes_per_trial_wrapper():
    distribution = small_bandits()
    with pytest.raises(ValueError, match=r"episodes_per_trial must be at least 1, got 0"):
        TrialWrapper(distribution.make_env(), distribution, episodes_per_trial=0)


def test_bad_episodes_per_trial_batched():
    distribution = small_bandits()
    tasks = distribution.meta_split().train
    params = torch.as_tensor(distribution.task_params(tasks))
    with pytest.raises(ValueError, match=r"episodes_per_trial must be at least 1, got 0"):
        BatchedTrialEnv(distribution.make_batched_env(2), tasks, params, 0)


def test_bad_reward_kind():
    with pytest.raises(ValueError, match=r"unknown bandit reward 'poisson'"):
        BanditDistribution(reward="poisson")
    with pytest.raises(ValueError, match=r"unknown bandit reward 'poisson'"):
        BanditEnv(reward="poisson")


@pytest.mark.parametrize("reward_std, shown", [(0.0, "0.0"), (-1.0, "-1.0"), (float("nan"), "nan")])
def test_bad_reward_std(reward_std, shown):
    with pytest.raises(ValueError, match=rf"reward_std must be positive .*got {shown}"):
        BanditDistribution(reward="gaussian", reward_std=reward_std)


def test_bad_reward_std_registry():
    with pytest.raises(ValueError, match=r"reward_std must be positive .*got 0"):
        make_distribution("gaussian-bandit-k5-n10", reward_std=0)


def test_bad_split_name():
    distribution = small_bandits()
    with pytest.raises(ValueError, match=r"unknown split 'train'"):
        TrialWrapper(distribution.make_env(), distribution, split="train")


def test_bad_task_params_rows():
    distribution = small_bandits()
    tasks = distribution.meta_split().train
    params = torch.as_tensor(distribution.task_params(tasks[:3]))
    with pytest.raises(ValueError, match=r"got 3 rows for 50 tasks"):
        BatchedTrialEnv(distribution.make_batched_env(2), tasks, params, 4)


# Non-finite values from an environment


@pytest.mark.parametrize(
    "field, value",
    [("reward", float("nan")), ("reward", float("inf")), ("observation", float("nan")),
     ("observation", float("-inf"))],
)
def test_non_finite_names_env_task_step(field, value):
    wrapper = TrialWrapper(NonFiniteEnv(field, value), TargetDistribution())
    task = TargetTask(0.25)
    wrapper.reset(seed=0, options={"task": task})
    action = np.array([0.0], dtype=np.float32)
    wrapper.step(action)
    wrapper.step(action)
    with pytest.raises(NonFiniteError) as excinfo:
        wrapper.step(action)
    message = str(excinfo.value)
    assert "NonFiniteEnv" in message
    assert repr(task) in message
    assert "at step 3 " in message
    assert f"non-finite {field}" in message


def test_non_finite_error_is_value_error():
    assert issubclass(NonFiniteError, ValueError)
