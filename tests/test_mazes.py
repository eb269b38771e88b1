"""Tests of the procedural maze family: generation, dynamics, batched env, split and references."""

import copy
import dataclasses
import functools
import hashlib
import os
import pickle
import subprocess
import sys
import textwrap
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AsyncVectorEnv
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker

import envs
from agents.references.base import run_references
from agents.references.mazes import (
    MAZE_REFERENCE_NAMES,
    _DepthFirstExplorer,
    maze_references,
    shortest_path_length,
)
from envs import BatchedTrialEnv, TrialWrapper, make_distribution
from envs.mazes import (
    AGENT_COLOR,
    FLOOR_COLOR,
    GOAL_COLOR,
    PIXELS_PER_SQUARE,
    WALL_COLOR,
    BatchedMazeEnv,
    MazeDistribution,
    MazeEnv,
    MazeTask,
    generate_maze_layout,
    generate_maze_task,
)

UP, RIGHT, DOWN, LEFT = range(4)

# A hand-built size-3 maze: an S-shaped corridor from the start (1, 1) along the top row,
# down the right side and back along the bottom row to the goal (3, 1). The shortest path is
# right, right, down, down, left, left: 6 steps.
TINY_ROWS = (
    "11111",
    "10001",
    "11101",
    "10001",
    "11111",
)
TINY = MazeTask(size=3, layout="".join(TINY_ROWS), start=(1, 1), goal=(3, 1))
TINY_PATH = [RIGHT, RIGHT, DOWN, DOWN, LEFT, LEFT]

# The same walls with the goal cut off from the start.
CUT_OFF = MazeTask(
    size=3, layout="11111" "10101" "11111" "11111" "11111", start=(1, 1), goal=(1, 3)
)

TRIAL_INFO_KEYS = {"inner_episode", "inner_episode_returns"}


def tiny_env(**kwargs):
    kwargs.setdefault("size", 3)
    kwargs.setdefault("window", 3)
    return MazeEnv(task=TINY, **kwargs)


def maze_env_with_task(task, window=3):
    return MazeEnv(size=task.size, window=window, task=task)


def open_squares(task):
    walls = task.wall_grid()
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(~walls), strict=True)}


def reachable_squares(task):
    """Return the open squares reachable from the start, by breadth-first search."""
    walls = task.wall_grid()
    seen = {task.start}
    queue = deque([task.start])
    while queue:
        row, col = queue.popleft()
        for dr, dc in ((-1, 0), (0, 1), (1, 0), (0, -1)):
            neighbour = (row + dr, col + dc)
            if not walls[neighbour] and neighbour not in seen:
                seen.add(neighbour)
                queue.append(neighbour)
    return seen


def layout_hash(task):
    return hashlib.sha256(task.layout.encode()).hexdigest()


def split_digest(split, count=20):
    """Hash the first tasks of each half of a split. The subprocess test repeats this code."""
    text = repr((split.train[:count], split.test[:count]))
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def default_split():
    return make_distribution("maze-9x9-n2").meta_split()


# Maze generation


@pytest.mark.parametrize("size", [3, 5, 7, 9, 15])
def test_generated_mazes_perfect(size):
    cells_per_side = (size + 1) // 2
    num_cells = cells_per_side**2
    for seed in range(25):
        task = generate_maze_task(size, seed)
        walls = task.wall_grid()
        assert walls.shape == (size + 2, size + 2)
        # A spanning tree over the cells: every cell open, cells - 1 corridor squares, connected.
        assert len(open_squares(task)) == 2 * num_cells - 1
        assert reachable_squares(task) == open_squares(task)


@pytest.mark.parametrize("size", [3, 9, 15])
def test_generated_maze_grid_structure(size):
    for seed in range(10):
        walls = generate_maze_task(size, seed).wall_grid()
        assert walls[0, :].all()
        assert walls[-1, :].all()
        assert walls[:, 0].all()
        assert walls[:, -1].all()
        # Junction cells at odd coordinates are open, squares at even coordinates are walls.
        assert not walls[1::2, 1::2].any()
        assert walls[::2, ::2].all()


@pytest.mark.parametrize("size", [3, 5, 9])
def test_generated_start_goal_on_cells(size):
    for seed in range(50):
        task = generate_maze_task(size, seed)
        assert task.start != task.goal
        assert task.start[0] % 2 == 1
        assert task.start[1] % 2 == 1
        assert task.goal[0] % 2 == 1
        assert task.goal[1] % 2 == 1


def test_generation_same_seed_same_maze():
    first = generate_maze_task(9, 1234)
    second = generate_maze_task(9, 1234)
    assert first == second
    assert first.seed == 1234
    layouts = [generate_maze_layout(9, np.random.default_rng(5)) for _ in range(2)]
    assert layouts[0] == layouts[1]


def test_generation_seeds_differ():
    layouts = {generate_maze_task(9, seed).layout for seed in range(20)}
    assert len(layouts) == 20


def test_generation_large_maze_iterative():
    # 76 x 76 cells: a recursive search would pass Python's default recursion limit of 1000.
    task = generate_maze_task(151, 0)
    assert len(open_squares(task)) == 2 * 76 * 76 - 1


def test_sample_tasks_from_caller_rng():
    distribution = MazeDistribution(num_train_tasks=10, num_test_tasks=5)
    first = distribution.sample_tasks(np.random.default_rng(3), 6)
    second = distribution.sample_tasks(np.random.default_rng(3), 6)
    assert first == second
    assert len({task.seed for task in first}) == 6
    for task in first:
        assert task == generate_maze_task(9, task.seed)


# Tasks


def test_task_key_is_layout():
    assert TINY.key() == ("".join(TINY_ROWS),)
    moved_goal = dataclasses.replace(TINY, goal=(1, 3))
    assert moved_goal.key() == TINY.key()
    assert moved_goal != TINY


def test_task_frozen_hashable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.goal = (1, 3)
    assert len({TINY, dataclasses.replace(TINY), dataclasses.replace(TINY, goal=(1, 3))}) == 2


def test_task_params_tiny():
    params = MazeDistribution(size=3, window=3).task_params([TINY])
    assert params.shape == (1, 27)
    assert params.dtype == np.int16
    expected_walls = [int(flag) for flag in "".join(TINY_ROWS)]
    np.testing.assert_array_equal(params[0, :25], expected_walls)
    assert params[0, 25] == 1 * 5 + 1
    assert params[0, 26] == 3 * 5 + 1


def test_task_params_shape_default(default_split):
    params = MazeDistribution().task_params(default_split.test[:7])
    assert params.shape == (7, 11 * 11 + 2)
    assert params.dtype == np.int16


# Gymnasium env dynamics on the hand-built maze


def test_tiny_steps_hand_computed():
    env = tiny_env()
    env.reset(seed=0)
    assert env.agent_position == (1, 1)
    # (action, position after the step); bumps into walls leave the agent in place.
    expected = [
        (UP, (1, 1)),
        (LEFT, (1, 1)),
        (DOWN, (1, 1)),
        (RIGHT, (1, 2)),
        (RIGHT, (1, 3)),
        (RIGHT, (1, 3)),
        (UP, (1, 3)),
        (DOWN, (2, 3)),
        (DOWN, (3, 3)),
        (LEFT, (3, 2)),
    ]
    for action, position in expected:
        _, reward, terminated, truncated, _ = env.step(action)
        assert env.agent_position == position
        assert reward == pytest.approx(-0.01, abs=1e-12)
        assert terminated is False
        assert truncated is False

    _, reward, terminated, truncated, _ = env.step(LEFT)
    assert env.agent_position == (3, 1)
    assert reward == pytest.approx(0.99, abs=1e-12)
    assert terminated is True
    assert truncated is False


def test_tiny_shortest_path_return():
    env = tiny_env()
    env.reset(seed=0)
    rewards = [env.step(action)[1] for action in TINY_PATH]
    assert sum(rewards) == pytest.approx(1.0 - 0.01 * 6, abs=1e-12)


def test_tiny_truncated_at_limit():
    env = tiny_env(max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(UP)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    assert env.agent_position == (1, 1)


def test_tiny_goal_on_last_step_terminates():
    env = tiny_env(max_episode_steps=6)
    env.reset(seed=0)
    for action in TINY_PATH[:-1]:
        env.step(action)
    _, _, terminated, truncated, _ = env.step(TINY_PATH[-1])
    assert terminated is True
    assert truncated is False


def test_tiny_custom_rewards():
    env = tiny_env(step_cost=0.5, goal_reward=10.0)
    env.reset(seed=0)
    rewards = [env.step(action)[1] for action in TINY_PATH]
    assert rewards == [-0.5] * 5 + [9.5]


def test_tiny_reset_returns_to_start():
    env = tiny_env()
    env.reset(seed=0)
    env.step(RIGHT)
    env.step(RIGHT)
    env.reset()
    assert env.agent_position == (1, 1)
    assert env.task == TINY


def test_step_before_reset():
    with pytest.raises(RuntimeError, match=r"call reset\(\) before step\(\)"):
        tiny_env().step(UP)


def test_step_invalid_action():
    env = tiny_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"invalid action 4"):
        env.step(4)


# Observation windows


def split_window(obs, window):
    walls, goal = obs.reshape(2, window, window)
    return walls, goal


def test_window5_at_start_hand_written():
    env = tiny_env(window=5)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (50,)
    assert obs.dtype == np.float32
    walls, goal = split_window(obs, 5)
    # Rows -1 .. 3 and columns -1 .. 3 of the grid. Squares outside the grid read as walls.
    expected_walls = [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 0],
    ]
    expected_goal = np.zeros((5, 5))
    expected_goal[4, 2] = 1.0
    np.testing.assert_array_equal(walls, expected_walls)
    np.testing.assert_array_equal(goal, expected_goal)


@pytest.mark.parametrize(
    "actions, expected_walls, goal_square",
    [
        ([], [[1, 1, 1], [1, 0, 0], [1, 1, 1]], None),
        ([RIGHT, RIGHT], [[1, 1, 1], [0, 0, 1], [1, 0, 1]], None),
        ([RIGHT, RIGHT, DOWN, DOWN], [[1, 0, 1], [0, 0, 1], [1, 1, 1]], None),
        ([RIGHT, RIGHT, DOWN, DOWN, LEFT], [[1, 1, 0], [0, 0, 0], [1, 1, 1]], (1, 0)),
    ],
)
def test_window3_along_path(actions, expected_walls, goal_square):
    env = tiny_env(window=3)
    obs, _ = env.reset(seed=0)
    for action in actions:
        obs, *_ = env.step(action)
    walls, goal = split_window(obs, 3)
    expected_goal = np.zeros((3, 3))
    if goal_square is not None:
        expected_goal[goal_square] = 1.0
    np.testing.assert_array_equal(walls, expected_walls)
    np.testing.assert_array_equal(goal, expected_goal)


def test_window1_sees_goal_only_on_it():
    env = tiny_env(window=1)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    for action in TINY_PATH:
        obs, *_ = env.step(action)
    np.testing.assert_array_equal(obs, [0.0, 1.0])


# Batched env against the Gymnasium env


def tiny_batched(num_envs=1, **kwargs):
    kwargs.setdefault("size", 3)
    kwargs.setdefault("window", 3)
    env = BatchedMazeEnv(num_envs, **kwargs)
    params = torch.as_tensor(MazeDistribution(size=3, window=3).task_params([TINY] * num_envs))
    all_envs = torch.ones(num_envs, dtype=torch.bool)
    env.set_tasks(all_envs, params)
    return env, env.reset(all_envs)


def test_batched_tiny_hand_computed():
    batched, obs = tiny_batched()
    gym_env = tiny_env()
    gym_obs, _ = gym_env.reset(seed=0)
    np.testing.assert_array_equal(obs[0].numpy(), gym_obs)

    actions = [UP, RIGHT, RIGHT, RIGHT, DOWN, DOWN, LEFT, LEFT]
    expected_positions = [6, 7, 8, 8, 13, 18, 17, 16]
    for action, position in zip(actions, expected_positions, strict=True):
        obs, reward, terminated, truncated = batched.step(torch.tensor([action]))
        gym_obs, gym_reward, gym_terminated, _, _ = gym_env.step(action)
        assert batched.positions.tolist() == [position]
        np.testing.assert_array_equal(obs[0].numpy(), gym_obs)
        assert reward.dtype == torch.float32
        assert reward.tolist() == [np.float32(gym_reward)]
        assert terminated.tolist() == [gym_terminated]
        assert truncated.tolist() == [False]
    assert terminated.tolist() == [True]
    assert reward.tolist() == [np.float32(0.99)]


def test_batched_tiny_truncated_at_limit():
    batched, _ = tiny_batched(max_episode_steps=2)
    flags = []
    for _ in range(2):
        _, _, terminated, truncated = batched.step(torch.tensor([UP]))
        flags.append((terminated.item(), truncated.item()))
    assert flags == [(False, False), (False, True)]


def run_random_comparison(size, window, device="cpu", num_envs=12, num_steps=300, seed=0):
    """Step Gymnasium and batched envs side by side with random actions, resets and task changes.

    Returns the counts of terminated and truncated steps, so that a caller can check that the
    run covered both.
    """
    rng = np.random.default_rng(seed)
    distribution = MazeDistribution(size=size, window=window, max_episode_steps=20)
    pool = [generate_maze_task(size, 1000 * seed + i) for i in range(40)]
    pool_params = torch.as_tensor(distribution.task_params(pool), device=device)
    task_index = rng.integers(len(pool), size=num_envs)

    gym_envs = [distribution.make_env() for _ in range(num_envs)]
    for env, index in zip(gym_envs, task_index, strict=True):
        env.set_task(pool[index])
    gym_obs = np.stack([env.reset(seed=i)[0] for i, env in enumerate(gym_envs)])
    batched = distribution.make_batched_env(num_envs, device=device)
    everyone = torch.ones(num_envs, dtype=torch.bool, device=device)
    batched.set_tasks(everyone, pool_params[torch.as_tensor(task_index, device=device)])
    batched_obs = batched.reset(everyone)
    np.testing.assert_array_equal(batched_obs.cpu().numpy(), gym_obs)

    counts = {"terminated": 0, "truncated": 0}
    for step in range(num_steps):
        if step == num_steps // 2:
            # Resume from a state_dict in a new env and continue from there.
            state = copy.deepcopy(batched.state_dict())
            batched = distribution.make_batched_env(num_envs, device=device)
            batched.load_state_dict(state)

        actions = rng.integers(4, size=num_envs)
        gym_steps = [env.step(int(a)) for env, a in zip(gym_envs, actions, strict=True)]
        obs, reward, terminated, truncated = batched.step(torch.as_tensor(actions, device=device))
        gym_obs = np.stack([s[0] for s in gym_steps])
        np.testing.assert_array_equal(obs.cpu().numpy(), gym_obs)
        np.testing.assert_array_equal(
            reward.cpu().numpy(), np.float32([s[1] for s in gym_steps])
        )
        np.testing.assert_array_equal(terminated.cpu().numpy(), [s[2] for s in gym_steps])
        np.testing.assert_array_equal(truncated.cpu().numpy(), [s[3] for s in gym_steps])
        counts["terminated"] += int(terminated.sum())
        counts["truncated"] += int(truncated.sum())

        # Reset every finished episode plus a random subset, half of them on a new task.
        ended = terminated.cpu().numpy() | truncated.cpu().numpy()
        reset_mask = ended | (rng.random(num_envs) < 0.05)
        new_task_mask = reset_mask & (rng.random(num_envs) < 0.5)
        task_index = np.where(new_task_mask, rng.integers(len(pool), size=num_envs), task_index)
        for i in np.flatnonzero(new_task_mask):
            gym_envs[i].set_task(pool[task_index[i]])
        new_params = pool_params[torch.as_tensor(task_index, device=device)]
        batched.set_tasks(torch.as_tensor(new_task_mask, device=device), new_params)
        obs = batched.reset(torch.as_tensor(reset_mask, device=device))
        for i in np.flatnonzero(reset_mask):
            gym_obs[i] = gym_envs[i].reset()[0]
        np.testing.assert_array_equal(obs.cpu().numpy(), gym_obs)
    return counts


@pytest.mark.parametrize("size, window", [(5, 3), (9, 5), (7, 9)])
def test_batched_matches_gym_random(size, window):
    counts = run_random_comparison(size, window)
    # Both kinds of episode end occurred, so the comparison covers them.
    assert counts["terminated"] > 0
    assert counts["truncated"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batched_matches_gym_cuda():
    counts = run_random_comparison(9, 5, device="cuda", num_steps=100)
    assert counts["truncated"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batched_step_no_host_sync_cuda():
    distribution = MazeDistribution()
    batched = distribution.make_batched_env(64, device="cuda")
    params = torch.as_tensor(
        distribution.task_params([generate_maze_task(9, seed) for seed in range(64)]),
        device="cuda",
    )
    mask = torch.rand(64, device="cuda") < 0.5
    actions = torch.randint(4, (64,), device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        batched.set_tasks(mask, params)
        batched.reset(mask)
        batched.step(actions)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_batched_state_dict_resumes_exactly():
    tasks = [generate_maze_task(7, seed) for seed in range(6)]
    distribution = MazeDistribution(size=7, window=5)
    everyone = torch.ones(6, dtype=torch.bool)
    original = distribution.make_batched_env(6)
    original.set_tasks(everyone, torch.as_tensor(distribution.task_params(tasks)))
    original.reset(everyone)
    for action in [0, 1, 2, 3, 1]:
        original.step(torch.full((6,), action))

    restored = distribution.make_batched_env(6)
    restored.load_state_dict(copy.deepcopy(original.state_dict()))
    actions = torch.as_tensor(np.random.default_rng(0).integers(4, size=(30, 6)))
    for step_actions in actions:
        for expected, actual in zip(original.step(step_actions), restored.step(step_actions),
                                    strict=True):
            assert torch.equal(expected, actual)


def test_batched_set_tasks_keeps_unmasked():
    tasks = [generate_maze_task(5, seed) for seed in range(3)]
    distribution = MazeDistribution(size=5, window=3)
    params = torch.as_tensor(distribution.task_params(tasks))
    batched = distribution.make_batched_env(3)
    batched.set_tasks(torch.ones(3, dtype=torch.bool), params)
    other = torch.as_tensor(distribution.task_params([generate_maze_task(5, 99)] * 3))
    batched.set_tasks(torch.tensor([False, True, False]), other)
    assert torch.equal(batched.task_params[0], params[0])
    assert torch.equal(batched.task_params[1], other[1])
    assert torch.equal(batched.task_params[2], params[2])


def test_batched_ignores_noise():
    first, _ = tiny_batched()
    second, _ = tiny_batched()
    step = first.step(torch.tensor([RIGHT]))
    noisy_step = second.step(torch.tensor([RIGHT]), noise=torch.tensor([0.123]))
    for expected, actual in zip(step, noisy_step, strict=True):
        assert torch.equal(expected, actual)


# BatchedTrialEnv over mazes


def test_batched_trials_end_at_goal_or_limit():
    distribution = MazeDistribution(size=3, window=3, max_episode_steps=8, episodes_per_trial=2)
    base = distribution.make_batched_env(2)
    params = torch.as_tensor(distribution.task_params([TINY]))
    trials = BatchedTrialEnv(base, [TINY], params, distribution.episodes_per_trial)
    obs = trials.reset(task_index=torch.zeros(2, dtype=torch.long))
    assert obs.shape == (2, 18 + 4 + 2)
    np.testing.assert_array_equal(obs[:, :18].numpy(), [tiny_env().reset()[0]] * 2)
    assert obs[:, -1].tolist() == [1.0, 1.0]

    # Env 0 walks the shortest path, 6 steps per episode. Env 1 bumps into the wall above the
    # start until each episode is truncated after 8 steps.
    path_actions = (TINY_PATH * 3)[:16]
    episode_ends, trial_ends, episode_indices, rewards = [], [], [], []
    for action in path_actions:
        step = trials.step(torch.tensor([action, UP]))
        episode_ends.append(step.episode_end.tolist())
        trial_ends.append(step.terminated.tolist())
        episode_indices.append(step.episode_index.tolist())
        rewards.append(step.reward.tolist())

    steps_with_end = [[t + 1 for t, ends in enumerate(episode_ends) if ends[i]] for i in (0, 1)]
    steps_with_trial_end = [[t + 1 for t, ends in enumerate(trial_ends) if ends[i]] for i in (0, 1)]
    assert steps_with_end == [[6, 12], [8, 16]]
    assert steps_with_trial_end == [[12], [16]]
    assert [row[0] for row in episode_indices] == [0] * 6 + [1] * 6 + [0] * 4
    assert [row[1] for row in episode_indices] == [0] * 8 + [1] * 8
    goal_steps = [t + 1 for t, row in enumerate(rewards) if row[0] > 0]
    assert goal_steps == [6, 12]
    assert {row[1] for row in rewards} == {float(np.float32(-0.01))}


# Gymnasium checks, seeding and where the task travels


# Built without gym.make, these envs have no spec, so check_env cannot try other render modes.
@pytest.mark.filterwarnings("ignore:.*alternative render modes")
def test_check_env_passes():
    check_env(tiny_env())
    check_env(MazeEnv())


def test_check_env_gym_make():
    env = gym.make("adaptrl/Maze-v0", render_mode="rgb_array")
    while isinstance(env, (OrderEnforcing, PassiveEnvChecker)):
        env = env.env
    check_env(env)
    env.close()


def test_reset_without_task_draws_one():
    first = MazeEnv()
    second = MazeEnv()
    first.reset(seed=3)
    second.reset(seed=3)
    assert first.task is not None
    assert first.task == second.task
    assert reachable_squares(first.task) == open_squares(first.task)
    third = MazeEnv()
    third.reset(seed=4)
    assert third.task != first.task


def test_set_task_kept_across_resets():
    env = MazeEnv()
    task = generate_maze_task(9, 11)
    env.set_task(task)
    env.reset(seed=0)
    env.reset(seed=1)
    env.reset()
    assert env.task == task


def test_set_task_wrong_size():
    with pytest.raises(ValueError, match=r"task has size 3 but the environment has size 9"):
        MazeEnv().set_task(TINY)


def test_task_survives_env_pickle_and_deepcopy():
    env = tiny_env()
    env.reset(seed=0)
    env.step(RIGHT)
    for restored in (pickle.loads(pickle.dumps(env)), copy.deepcopy(env)):
        assert restored.task == TINY
        assert restored.agent_position == (1, 2)
        restored.step(RIGHT)
        assert restored.agent_position == (1, 3)


def test_task_survives_pickle():
    task = generate_maze_task(9, 5)
    assert pickle.loads(pickle.dumps(task)) == task
    assert copy.deepcopy(task) == task


def test_task_survives_async_vector_env():
    mirrored = MazeTask(size=3, layout=TINY.layout, start=(3, 1), goal=(1, 1))
    tasks = [TINY, mirrored]
    vector_env = AsyncVectorEnv([functools.partial(maze_env_with_task, task) for task in tasks])
    local_envs = [maze_env_with_task(task) for task in tasks]
    try:
        obs, _ = vector_env.reset(seed=0)
        assert vector_env.get_attr("task") == tuple(tasks)
        np.testing.assert_array_equal(obs, [env.reset(seed=0)[0] for env in local_envs])
        # Four steps reach neither goal, so no autoreset interferes.
        for action in TINY_PATH[:4]:
            obs, rewards, terminated, _, _ = vector_env.step(np.full(2, action))
            local = [env.step(action) for env in local_envs]
            np.testing.assert_array_equal(obs, [step[0] for step in local])
            np.testing.assert_array_equal(rewards, [step[1] for step in local])
            assert not terminated.any()
        assert vector_env.get_attr("task") == tuple(tasks)
    finally:
        vector_env.close()


def test_info_hides_task():
    env = tiny_env()
    _, reset_info = env.reset(seed=0)
    _, _, _, _, step_info = env.step(RIGHT)
    assert reset_info == {}
    assert step_info == {}


def test_oracle_info_has_task():
    env = tiny_env(oracle=True)
    _, reset_info = env.reset(seed=0)
    _, _, _, _, step_info = env.step(RIGHT)
    assert reset_info["task"] == TINY.to_dict()
    assert step_info["task"] == TINY.to_dict()


def test_observation_ignores_seed_and_oracle():
    # Two tasks that differ only in their seed field, one env in oracle mode: the
    # observations must match, so no task field beyond the local view reaches them.
    seeded = dataclasses.replace(TINY, seed=987_654_321)
    plain = MazeEnv(size=3, window=3, task=TINY)
    oracle = MazeEnv(size=3, window=3, task=seeded, oracle=True)
    observations = [plain.reset(seed=0)[0], oracle.reset(seed=0)[0]]
    np.testing.assert_array_equal(*observations)
    for action in [UP, RIGHT, RIGHT, DOWN, DOWN, LEFT]:
        plain_obs = plain.step(action)[0]
        oracle_obs = oracle.step(action)[0]
        np.testing.assert_array_equal(plain_obs, oracle_obs)
        assert set(np.unique(plain_obs)) <= {0.0, 1.0}


@pytest.mark.parametrize("oracle, expected_keys", [(False, TRIAL_INFO_KEYS),
                                                   (True, TRIAL_INFO_KEYS | {"task"})])
def test_trial_info_task_only_for_oracle(oracle, expected_keys):
    distribution = MazeDistribution(size=3, window=3, num_train_tasks=2, num_test_tasks=1)
    wrapper = TrialWrapper(distribution.make_env(oracle=oracle), distribution)
    _, info = wrapper.reset(seed=0, options={"task": TINY})
    assert set(info) == expected_keys
    for action in TINY_PATH * 2:
        _, _, _, _, info = wrapper.step(action)
        assert set(info) == expected_keys
    assert info["inner_episode_returns"] == pytest.approx([0.94, 0.94], abs=1e-12)


# Meta-train / meta-test split


def test_split_default_sizes(default_split):
    assert len(default_split.train) == 20_000
    assert len(default_split.test) == 1_000


def test_split_disjoint_by_layout(default_split):
    train_hashes = {layout_hash(task) for task in default_split.train}
    test_hashes = {layout_hash(task) for task in default_split.test}
    assert len(test_hashes) == len(default_split.test)
    assert train_hashes.isdisjoint(test_hashes)


def test_split_tasks_perfect(default_split):
    for task in default_split.test[:50] + default_split.train[:50]:
        assert task.size == 9
        assert reachable_squares(task) == open_squares(task)


def test_split_reproducible_in_fresh_process(default_split):
    script = textwrap.dedent(
        """
        import hashlib
        import envs
        import envs.mazes
        split = envs.make_distribution("maze-9x9-n2").meta_split()
        text = repr((split.train[:20], split.test[:20]))
        print(hashlib.sha256(text.encode()).hexdigest())
        """
    )
    # A different hash seed checks that the split does not depend on set iteration order.
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == split_digest(default_split)


def test_split_seed_changes_tasks():
    first = MazeDistribution(num_train_tasks=200, num_test_tasks=50)
    second = MazeDistribution(num_train_tasks=200, num_test_tasks=50, split_seed=1)
    assert set(first.meta_split().test).isdisjoint(second.meta_split().test)


def test_split_small_size_too_few_layouts():
    # Size 3 has only 4 layouts, so 5 distinct meta-test layouts cannot exist.
    distribution = MazeDistribution(size=3, window=3, num_train_tasks=10, num_test_tasks=5)
    with pytest.raises(ValueError, match=r"could not draw 5 distinct tasks"):
        distribution.meta_split()


# Registry and configuration


@pytest.mark.parametrize("name, size, episodes", [("maze-9x9-n2", 9, 2), ("maze-7x7-n3", 7, 3)])
def test_registry_builds_mazes(name, size, episodes):
    distribution = make_distribution(name)
    assert isinstance(distribution, MazeDistribution)
    assert distribution.size == size
    assert distribution.episodes_per_trial == episodes
    assert distribution.name == name
    assert distribution.registry_name == name
    assert distribution.episode_length_varies is True
    assert distribution.has_batched_env


def test_registry_lists_maze_example():
    assert "maze-9x9-n2" in envs.known_names()


def test_registry_kwargs_reach_distribution():
    distribution = make_distribution("maze-9x9-n2", window=3, max_episode_steps=50)
    assert distribution.window == 3
    assert distribution.max_episode_steps == 50


def test_registry_rejects_non_square():
    with pytest.raises(ValueError, match=r"(?s)unknown environment 'maze-9x7-n2'.*maze-9x9-n2"):
        make_distribution("maze-9x7-n2")


def test_config_has_every_constant():
    config = MazeDistribution(size=7, window=3, episodes_per_trial=4, max_episode_steps=60,
                              step_cost=0.02, goal_reward=2.0).config()
    assert config == {
        "name": "maze-7x7-n4",
        "episodes_per_trial": 4,
        "num_train_tasks": 20_000,
        "num_test_tasks": 1_000,
        "split_seed": 0,
        "size": 7,
        "window": 3,
        "max_episode_steps": 60,
        "step_cost": 0.02,
        "goal_reward": 2.0,
    }


# Bad input


@pytest.mark.parametrize(
    "size, message",
    [
        (1, r"maze size 1 is too small to place start and goal"),
        (2, r"maze size 2 is too small"),
        (8, r"maze size 8 must be odd.*use 7 or 9"),
        (10, r"maze size 10 must be odd"),
    ],
)
def test_bad_size(size, message):
    with pytest.raises(ValueError, match=message):
        MazeEnv(size=size, window=1)
    with pytest.raises(ValueError, match=message):
        BatchedMazeEnv(2, size=size, window=1)
    with pytest.raises(ValueError, match=message):
        MazeDistribution(size=size, window=1)
    with pytest.raises(ValueError, match=message):
        generate_maze_task(size, 0)


def test_bad_size_registry():
    with pytest.raises(ValueError, match=r"maze size 8 must be odd"):
        make_distribution("maze-8x8-n2")
    with pytest.raises(ValueError, match=r"maze size 1 is too small"):
        make_distribution("maze-1x1-n2")


@pytest.mark.parametrize(
    "size, window, message",
    [
        (9, 4, r"window 4 must be odd.*use 3 or 5"),
        (9, 13, r"window 13 is larger than the grid.*at most 11"),
        (3, 7, r"window 7 is larger .*at most 5"),
        (9, -1, r"window -1 must be a positive odd number"),
        (9, 0, r"window 0 must be a positive odd number, such as 3 or 5"),
    ],
)
def test_bad_window(size, window, message):
    with pytest.raises(ValueError, match=message):
        MazeEnv(size=size, window=window)
    with pytest.raises(ValueError, match=message):
        BatchedMazeEnv(2, size=size, window=window)
    with pytest.raises(ValueError, match=message):
        MazeDistribution(size=size, window=window)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_episode_steps": 0}, r"max_episode_steps must be a positive integer, got 0"),
        ({"step_cost": -0.1}, r"step_cost must be finite and non-negative, got -0.1"),
        ({"goal_reward": float("nan")}, r"goal_reward must be finite, got nan"),
        ({"episodes_per_trial": 0}, r"at least one episode \(n >= 1\), got n=0"),
    ],
)
def test_bad_episode_args(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MazeDistribution(**kwargs)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"layout": "1" * 24}, r"needs a layout of 25 wall flags \(5 x 5 squares\), got 24"),
        ({"layout": "2" * 25}, r"layout may contain only '0' and '1'"),
        ({"start": (0, 0)}, r"start \(0, 0\) is on a wall"),
        ({"goal": (5, 1)}, r"goal \(5, 1\) is outside the 5 x 5 grid"),
        ({"goal": (1, 1)}, r"start and goal are the same square \(1, 1\)"),
    ],
)
def test_bad_task(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **changes)


def test_bad_task_params_shape():
    batched, _ = tiny_batched(num_envs=2)
    with pytest.raises(ValueError, match=r"must have shape \(2, 27\), got \(2, 25\)"):
        batched.set_tasks(torch.ones(2, dtype=torch.bool), torch.zeros(2, 25, dtype=torch.int16))


def test_bad_task_params_size():
    with pytest.raises(ValueError, match=r"task of size 3 given where size 9 was expected"):
        MazeDistribution().task_params([TINY])


# Rendering


def square_pixel(image, square):
    row, col = square
    return tuple(image[row * PIXELS_PER_SQUARE + PIXELS_PER_SQUARE // 2,
                       col * PIXELS_PER_SQUARE + PIXELS_PER_SQUARE // 2])


def test_render_rgb_array():
    env = tiny_env(render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (5 * PIXELS_PER_SQUARE, 5 * PIXELS_PER_SQUARE, 3)
    assert image.dtype == np.uint8
    assert square_pixel(image, (1, 1)) == AGENT_COLOR
    assert square_pixel(image, (3, 1)) == GOAL_COLOR
    assert square_pixel(image, (0, 0)) == WALL_COLOR
    assert square_pixel(image, (1, 2)) == FLOOR_COLOR
    assert len({AGENT_COLOR, GOAL_COLOR, WALL_COLOR, FLOOR_COLOR}) == 4
    # The agent fills its whole square.
    block = image[PIXELS_PER_SQUARE:2 * PIXELS_PER_SQUARE, PIXELS_PER_SQUARE:2 * PIXELS_PER_SQUARE]
    assert (block == AGENT_COLOR).all()


def test_render_follows_agent():
    env = tiny_env(render_mode="rgb_array")
    env.reset(seed=0)
    env.step(RIGHT)
    image = env.render()
    assert square_pixel(image, (1, 1)) == FLOOR_COLOR
    assert square_pixel(image, (1, 2)) == AGENT_COLOR


def test_render_default_size():
    env = MazeEnv(render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().shape == (11 * PIXELS_PER_SQUARE, 11 * PIXELS_PER_SQUARE, 3)


def test_render_bad_mode():
    with pytest.raises(ValueError, match=r"unknown render_mode 'human'"):
        MazeEnv(render_mode="human")


# References


def test_shortest_path_length_hand_made():
    assert shortest_path_length(TINY) == 6
    assert shortest_path_length(dataclasses.replace(TINY, goal=(1, 3))) == 2
    assert shortest_path_length(dataclasses.replace(TINY, start=(2, 3))) == 3


def test_shortest_path_length_cut_off():
    with pytest.raises(ValueError, match=r"no path joins start \(1, 1\) and goal \(1, 3\)"):
        shortest_path_length(CUT_OFF)


def test_shortest_path_matches_env_walk():
    # Stepping a generated maze towards the goal along the breadth-first distances reaches it
    # in exactly shortest_path_length steps.
    task = generate_maze_task(9, 7)
    length = shortest_path_length(task)
    distance_to_goal = breadth_first_distances(task, task.goal)
    env = MazeEnv(task=task)
    env.reset(seed=0)
    total, steps, terminated = 0.0, 0, False
    while not terminated:
        action = next_action_towards_goal(env, distance_to_goal)
        _, reward, terminated, _, _ = env.step(action)
        total += reward
        steps += 1
    assert steps == length
    assert total == pytest.approx(1.0 - 0.01 * length, abs=1e-9)


def breadth_first_distances(task, source):
    walls = task.wall_grid()
    distances = {source: 0}
    queue = deque([source])
    while queue:
        row, col = queue.popleft()
        for dr, dc in ((-1, 0), (0, 1), (1, 0), (0, -1)):
            neighbour = (row + dr, col + dc)
            if not walls[neighbour] and neighbour not in distances:
                distances[neighbour] = distances[(row, col)] + 1
                queue.append(neighbour)
    return distances


def next_action_towards_goal(env, distance_to_goal):
    row, col = env.agent_position
    for action, (dr, dc) in enumerate(((-1, 0), (0, 1), (1, 0), (0, -1))):
        neighbour = (row + dr, col + dc)
        if distance_to_goal.get(neighbour, -1) == distance_to_goal[(row, col)] - 1:
            return action
    raise AssertionError(f"no neighbour of {(row, col)} is closer to the goal")


def test_references_tiny_maze():
    distribution = MazeDistribution(size=3, window=3, episodes_per_trial=2)
    results = maze_references(distribution, [TINY], seed=0)
    assert set(results) == set(MAZE_REFERENCE_NAMES)
    oracle = results["shortest-path"]
    np.testing.assert_array_equal(oracle.lengths, [[6, 6]])
    np.testing.assert_allclose(oracle.returns, [[0.94, 0.94]], atol=1e-12)


def test_references_shortest_path_capped():
    distribution = MazeDistribution(size=3, window=3, episodes_per_trial=3, max_episode_steps=4)
    oracle = maze_references(distribution, [TINY], seed=0)["shortest-path"]
    np.testing.assert_array_equal(oracle.lengths, [[4, 4, 4]])
    np.testing.assert_allclose(oracle.returns, [[-0.04, -0.04, -0.04]], atol=1e-12)


def test_references_random_walk_longer():
    distribution = MazeDistribution()
    tasks = [generate_maze_task(9, seed) for seed in range(200)]
    results = maze_references(distribution, tasks, seed=0)
    oracle, walk = results["shortest-path"], results["random-walk"]
    for result in (oracle, walk):
        assert result.returns.shape == (200, 2)
        assert result.lengths.shape == (200, 2)
    assert (walk.lengths >= oracle.lengths).all()
    assert walk.lengths.mean() > 3 * oracle.lengths.mean()
    assert walk.returns.mean() < oracle.returns.mean()


def test_references_random_walk_returns_match_lengths():
    distribution = MazeDistribution(size=5, window=3, max_episode_steps=30)
    tasks = [generate_maze_task(5, seed) for seed in range(100)]
    walk = maze_references(distribution, tasks, seed=1)["random-walk"]
    reached_early = walk.lengths < 30
    np.testing.assert_allclose(
        walk.returns[reached_early], 1.0 - 0.01 * walk.lengths[reached_early], atol=1e-12
    )
    at_limit = walk.returns[~reached_early]
    # An episode at the limit either reached the goal on its last step or was truncated.
    assert np.isin(np.round(at_limit, 9), [0.7, -0.3]).all()
    assert reached_early.any()
    assert (~reached_early).any()


def test_references_random_walk_seeded():
    distribution = MazeDistribution()
    tasks = [generate_maze_task(9, seed) for seed in range(30)]
    first = maze_references(distribution, tasks, seed=5)["random-walk"]
    second = maze_references(distribution, tasks, seed=5)["random-walk"]
    other = maze_references(distribution, tasks, seed=6)["random-walk"]
    np.testing.assert_array_equal(first.lengths, second.lengths)
    np.testing.assert_array_equal(first.returns, second.returns)
    assert not np.array_equal(first.lengths, other.lengths)


def test_references_registered():
    distribution = MazeDistribution(size=3, window=3)
    results = run_references(distribution, [TINY], seed=0)
    assert set(results) == {"shortest-path", "random-walk", "depth-first"}


# A corridor with a dead end to the left of the start and the goal behind a bend to the right.
BEND_ROWS = (
    "1111111",
    "1000001",
    "1111101",
    "1000001",
    "1111111",
    "1111111",
    "1111111",
)
BEND = MazeTask(size=5, layout="".join(BEND_ROWS), start=(1, 3), goal=(3, 1))


def test_depth_first_left_out_with_one_square_window():
    distribution = MazeDistribution(size=3, window=1)
    assert set(maze_references(distribution, [TINY], seed=0)) == {"shortest-path", "random-walk"}


def test_depth_first_explorer_by_hand():
    explorer = _DepthFirstExplorer(BEND, window=3, move_order=np.array([LEFT, RIGHT, DOWN, UP]))
    # Episode 1: left twice into the dead end, back twice, right twice, down twice, then left
    # along row 3. From (3, 2) the 3 x 3 window shows the goal, one step away: 12 steps.
    assert explorer.run_episode(max_steps=100) == (12, True)
    # Episode 2 remembers the map: the 8-step path, which is also the maze's shortest.
    assert explorer.run_episode(max_steps=100) == (8, True)
    assert shortest_path_length(BEND) == 8


def test_depth_first_explorer_keeps_exploring_after_a_timeout():
    explorer = _DepthFirstExplorer(BEND, window=3, move_order=np.array([LEFT, RIGHT, DOWN, UP]))
    assert explorer.run_episode(max_steps=5) == (5, False)
    # The dead end is remembered, so the second episode goes right at once: 3 steps to the
    # bend, 2 down and 3 left, 8 in all, without seeing the goal first.
    assert explorer.run_episode(max_steps=100) == (8, True)


def test_references_depth_first_remembers_the_maze():
    distribution = MazeDistribution()
    tasks = [generate_maze_task(9, seed) for seed in range(200)]
    results = maze_references(distribution, tasks, seed=0)
    explorer, oracle = results["depth-first"], results["shortest-path"]
    assert explorer.lengths.shape == (200, 2)
    # Every episode 1 here explores and reaches the goal within the 100-step limit. Episode
    # 2 walks the shortest path.
    assert (explorer.lengths[:, 0] >= oracle.lengths[:, 0]).all()
    assert (explorer.lengths[:, 0] > oracle.lengths[:, 0]).mean() > 0.5
    np.testing.assert_array_equal(explorer.lengths[:, 1], oracle.lengths[:, 1])
    np.testing.assert_allclose(explorer.returns, 1.0 - 0.01 * explorer.lengths, atol=1e-12)
    again = maze_references(distribution, tasks, seed=0)["depth-first"]
    other = maze_references(distribution, tasks, seed=1)["depth-first"]
    np.testing.assert_array_equal(explorer.lengths, again.lengths)
    assert not np.array_equal(explorer.lengths, other.lengths)
