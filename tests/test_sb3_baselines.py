"""The stable-baselines3 baselines: task pinning, LSTM resets, files, resume, evaluation, errors."""

from __future__ import annotations

import importlib.util
import json
import re

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import (
    PPOBaseline,
    PPOBaselineConfig,
    RecurrentPPOBaseline,
    RecurrentPPOBaselineConfig,
    load_agent,
)
from envs import BanditDistribution, BanditTask, make_distribution
from harness import TrainConfig, train
from harness.cli import evaluate_main, train_main
from harness.evaluation import evaluate

pytest.importorskip("sb3_contrib")

BASELINES = [
    pytest.param(PPOBaseline, PPOBaselineConfig, id="ppo"),
    pytest.param(RecurrentPPOBaseline, RecurrentPPOBaselineConfig, id="recurrent-ppo"),
]
# Small splits: drawing the default 110,000 bandit tasks takes longer than these tests.
SMALL_BANDITS = {"num_train_tasks": 500, "num_test_tasks": 100}


def tiny(config_class, **overrides):
    """A config whose rollout is 2 envs x 16 steps, one PPO epoch in 2 minibatches."""
    values = dict(num_envs=2, n_steps=16, batch_size=16, n_epochs=1, net_arch=(8,))
    if config_class is RecurrentPPOBaselineConfig:
        values["lstm_hidden_size"] = 8
    values.update(overrides)
    return config_class(**values)


def bandits():
    return make_distribution("bandit-k5-n10", **SMALL_BANDITS)


def one_hot_bandit(best_arm: int) -> BanditTask:
    """A bandit whose arm ``best_arm`` always pays 1 and every other arm never pays."""
    return BanditTask(tuple(1.0 if arm == best_arm else 0.0 for arm in range(5)))


# --------------------------------------------------------------------------- meta-test


def test_ppo_meta_test_pins_each_task():
    agent = PPOBaseline(bandits(), tiny(PPOBaselineConfig), device="cpu")
    tasks = [one_hot_bandit(index % 5) for index in range(10)]

    def always_arm_2(observation, state=None, episode_start=None, deterministic=False):
        return np.full(len(observation), 2), None

    agent.model.predict = always_arm_2
    returns, lengths = agent.meta_test(tasks, seed=3, return_lengths=True)
    assert returns.shape == (10, 10)
    assert lengths.shape == (10, 10)
    # Tasks 2 and 7 pay 1 on arm 2 at every pull, and the others never pay on it.
    expected = np.array([[1.0 if index % 5 == 2 else 0.0] * 10 for index in range(10)])
    np.testing.assert_array_equal(returns, expected)
    np.testing.assert_array_equal(lengths, np.ones((10, 10)))
    agent.close()


def test_recurrent_state_reset_only_at_trial_start():
    agent = RecurrentPPOBaseline(bandits(), tiny(RecurrentPPOBaselineConfig), device="cpu")
    real_predict = agent.model.predict
    calls = []

    def recording_predict(observation, state=None, episode_start=None, deterministic=False):
        actions, next_state = real_predict(observation, state=state, episode_start=episode_start,
                                           deterministic=deterministic)
        calls.append((state, np.array(episode_start), next_state))
        return actions, next_state

    agent.model.predict = recording_predict
    tasks = [one_hot_bandit(arm) for arm in range(3)]
    returns, lengths = agent.meta_test(tasks, seed=0, return_lengths=True)
    assert returns.shape == (3, 10)
    np.testing.assert_array_equal(lengths, np.ones((3, 10)))
    # One call per pull. Every pull ends an inner episode, yet only the first call of the
    # trial starts from no state with episode_start set.
    assert len(calls) == 10
    first_state, first_start, _ = calls[0]
    assert first_state is None
    assert first_start.tolist() == [True] * 3
    for (_, _, previous_next_state), (state, episode_start, _) in zip(calls, calls[1:]):
        assert state is previous_next_state
        assert episode_start.tolist() == [False] * 3
    agent.close()


def test_recurrent_predict_resets_state_at_episode_start():
    agent = RecurrentPPOBaseline(bandits(), tiny(RecurrentPPOBaselineConfig), device="cpu")
    obs = np.zeros((1, agent.model.observation_space.shape[0]), dtype=np.float32)
    obs[0, -1] = 1.0
    _, fresh = agent.predict(obs, state=None, episode_start=np.array([True]), deterministic=True)
    busy = tuple(np.full_like(part, 0.5) for part in fresh)
    _, after_reset = agent.predict(obs, state=busy, episode_start=np.array([True]), deterministic=True)
    _, carried = agent.predict(obs, state=busy, episode_start=np.array([False]), deterministic=True)
    for fresh_part, reset_part, carried_part in zip(fresh, after_reset, carried):
        np.testing.assert_allclose(reset_part, fresh_part)
        assert not np.allclose(carried_part, fresh_part)
    agent.close()


@pytest.mark.parametrize("agent_class, config_class", BASELINES)
@pytest.mark.parametrize("env, kwargs", [
    ("bandit-k5-n10", SMALL_BANDITS),
    ("mdp-s10-a5-n10", {"num_train_tasks": 200, "num_test_tasks": 20}),
    ("maze-9x9-n2", {"num_train_tasks": 200, "num_test_tasks": 20, "max_episode_steps": 30}),
    ("navigation-2d", {"num_train_tasks": 200, "num_test_tasks": 20, "horizon": 20}),
])
def test_curves_have_trial_shape_on_families(agent_class, config_class, env, kwargs):
    distribution = make_distribution(env, **kwargs)
    agent = agent_class(distribution, tiny(config_class), device="cpu", seed=1)
    agent.learn(32)
    train_tasks = set(distribution.meta_split().train)
    for slot in agent._vec_env.envs:
        assert slot.task in train_tasks
    tasks = distribution.meta_split().test[:4]
    returns, lengths = agent.meta_test(tasks, seed=5, return_lengths=True)
    k = distribution.episodes_per_trial
    assert returns.shape == (4, k)
    assert lengths.shape == (4, k)
    limit = distribution.episode_step_limit()
    assert lengths.min() >= 1
    assert lengths.max() <= limit
    if not distribution.episode_length_varies:
        np.testing.assert_array_equal(lengths, np.full((4, k), limit))
    again = agent.meta_test(tasks, seed=5)
    np.testing.assert_array_equal(again, returns)
    agent.close()


# --------------------------------------------------------------------------- training


def test_callback_false_stops_after_update():
    agent = PPOBaseline(bandits(), tiny(PPOBaselineConfig), device="cpu")
    seen = []

    def stop_after_first(agent, metrics):
        seen.append((agent.num_timesteps, dict(metrics)))
        return False

    agent.learn(320, callback=stop_after_first)
    assert [steps for steps, _ in seen] == [32]
    assert agent.num_timesteps == 32
    metrics = seen[0][1]
    # Every pull is a one-step episode, so a rollout of 32 pulls ends 32 episodes.
    assert metrics["rollout/episodes"] == 32
    assert 0.0 <= metrics["rollout/mean_episode_return"] <= 1.0
    assert metrics["train/n_updates"] == 1
    assert "train/approx_kl" in metrics
    assert metrics["time/steps_per_second"] > 0
    agent.learn(96)
    assert agent.num_timesteps == 96
    agent.close()


def test_recurrent_rollout_metrics_per_inner_episode():
    agent = RecurrentPPOBaseline(bandits(), tiny(RecurrentPPOBaselineConfig, n_steps=40,
                                                 batch_size=40), device="cpu")
    rows = []
    agent.learn(160, callback=lambda agent, metrics: rows.append(metrics))
    assert len(rows) == 2
    # Each rollout of 2 envs x 40 pulls ends 8 trials of 10 pulls.
    assert rows[0]["rollout/trials"] == 8
    curve = [rows[0][f"rollout/episode_return/{index}"] for index in range(10)]
    assert sum(curve) == pytest.approx(rows[0]["rollout/mean_trial_return"])
    agent.close()


def test_ppo_learns_best_arm_of_single_task():
    distribution = BanditDistribution(5, 10, num_train_tasks=1, num_test_tasks=1)
    task = distribution.meta_split().train[0]
    config = PPOBaselineConfig(num_envs=8, n_steps=32, batch_size=64, n_epochs=4,
                               learning_rate=3e-3)
    agent = PPOBaseline(distribution, config, device="cpu")
    agent.learn(2048)
    action, _ = agent.predict(np.zeros((1, 1), dtype=np.float32), deterministic=True)
    assert int(action[0]) == int(np.argmax(task.arm_means))
    agent.close()


def test_same_seed_gives_same_metrics():
    runs = [[], []]
    for rows in runs:
        def record(agent, metrics, rows=rows):
            rows.append({key: value for key, value in metrics.items()
                         if not key.startswith("time/")})

        agent = PPOBaseline(bandits(), tiny(PPOBaselineConfig), device="cpu", seed=4)
        agent.learn(64, callback=record)
        agent.close()
    assert len(runs[0]) == 2
    assert runs[0] == runs[1]


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("agent_class, config_class", BASELINES)
def test_save_load_gives_same_actions(tmp_path, agent_class, config_class):
    agent = agent_class(bandits(), tiny(config_class), device="cpu", seed=2)
    agent.learn(64)
    path = agent.save(tmp_path / "model.pt")
    name, loaded = load_agent(path, device="cpu")
    assert name == ("ppo" if agent_class is PPOBaseline else "recurrent-ppo")
    assert isinstance(loaded, agent_class)
    assert loaded.num_timesteps == 64
    assert loaded.config == agent.config
    observations = np.random.default_rng(0).random(
        (6, agent.model.observation_space.shape[0])).astype(np.float32)
    starts = np.ones(6, dtype=bool)
    actions, state = agent.predict(observations, episode_start=starts, deterministic=True)
    loaded_actions, loaded_state = loaded.predict(observations, episode_start=starts,
                                                  deterministic=True)
    np.testing.assert_array_equal(loaded_actions, actions)
    if state is not None:
        for part, loaded_part in zip(state, loaded_state):
            np.testing.assert_array_equal(loaded_part, part)
    agent.close()
    loaded.close()


def test_training_state_restores_weights_and_counters():
    agent = RecurrentPPOBaseline(bandits(), tiny(RecurrentPPOBaselineConfig), device="cpu")
    agent.learn(64)
    state = agent.training_state()
    resumed = RecurrentPPOBaseline(bandits(), tiny(RecurrentPPOBaselineConfig), device="cpu")
    resumed.load_training_state(state)
    assert resumed.num_timesteps == 64
    assert resumed.num_updates == 2
    assert resumed.model._n_updates == agent.model._n_updates
    weights = agent.model.policy.state_dict()
    for key, value in resumed.model.policy.state_dict().items():
        assert torch.equal(value, weights[key]), key
    optimizer_state = resumed.model.policy.optimizer.state_dict()["state"]
    for index, moments in agent.model.policy.optimizer.state_dict()["state"].items():
        assert torch.equal(optimizer_state[index]["exp_avg"], moments["exp_avg"])
    resumed.learn(128)
    assert resumed.num_timesteps == 128
    agent.close()
    resumed.close()


# --------------------------------------------------------------------------- harness


def baseline_config(tmp_path, agent: str, **overrides) -> TrainConfig:
    settings = {"ppo": tiny(PPOBaselineConfig), "recurrent-ppo": tiny(RecurrentPPOBaselineConfig)}
    values = dict(
        agent=agent,
        env="bandit-k5-n10",
        env_kwargs=("num_train_tasks=500", "num_test_tasks=100"),
        total_timesteps=64,
        runs_dir=tmp_path / "runs",
        run_name="baseline",
        checkpoint_interval=32,
        eval_tasks=50,
        device="cpu",
        progress=False,
    )
    values[agent.replace("-", "_")] = settings[agent]
    values.update(overrides)
    return TrainConfig(**values)


def read_rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("agent", ["ppo", "recurrent-ppo"])
def test_resume_through_train_continues(tmp_path, agent):
    first = train(baseline_config(tmp_path, agent))
    assert first.agent.num_timesteps == 64
    run = first.run.path
    resumed = train(baseline_config(tmp_path, agent, resume=True, total_timesteps=128))
    assert resumed.agent.num_timesteps == 128
    training_rows = [row for row in read_rows(run) if "train/n_updates" in row]
    assert [row["step"] for row in training_rows] == [32, 64, 96, 128]
    # SB3 counts one update per epoch; the count carries over the resume.
    assert [row["train/n_updates"] for row in training_rows] == [1, 2, 3, 4]
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["num_timesteps"] == 128


def test_evaluation_output_format(tmp_path, capsys):
    result = train(baseline_config(tmp_path, "recurrent-ppo"))
    evaluation = result.evaluation
    assert evaluation["agent"] == "recurrent-ppo"
    assert evaluation["adaptation_unit"] == "inner episode"
    assert evaluation["episodes_per_trial"] == 10
    assert evaluation["num_tasks"] == 50
    assert len(evaluation["adaptation_curve"]) == 10
    curve_total = sum(point["mean"] for point in evaluation["adaptation_curve"])
    assert curve_total == pytest.approx(evaluation["mean_return"]["mean"])
    assert "random" in evaluation["references"]
    output = tmp_path / "again.json"
    code = evaluate_main([str(result.run.path), "--eval-tasks", "50", "--device", "cpu",
                          "--output", str(output)])
    assert code == 0
    again = json.loads(output.read_text())
    assert again["mean_return"] == evaluation["mean_return"]
    assert "recurrent-ppo" in capsys.readouterr().out


def test_evaluate_reports_maze_steps():
    distribution = make_distribution("maze-7x7-n2", num_train_tasks=100, num_test_tasks=10,
                                     max_episode_steps=20)
    agent = PPOBaseline(distribution, tiny(PPOBaselineConfig), device="cpu")
    evaluation = evaluate(agent, "ppo", distribution, seed=0, references=False)
    assert len(evaluation["adaptation_curve"]) == 2
    assert len(evaluation["episode_length_curve"]) == 2
    for point in evaluation["episode_length_curve"]:
        assert 1 <= point["mean"] <= 20
    agent.close()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--agent", "ppo", "--ppo.batch-size", "100"],
         "--ppo.batch-size 100 must divide the rollout of --ppo.num-envs \\* --ppo.n-steps = 2048 "
         "env steps.*--ppo.batch-size=256"),
        (["--agent", "ppo", "--ppo.batch-size", "1"], "--ppo.batch-size must be at least 2, got 1"),
        (["--agent", "ppo", "--ppo.n-steps", "0"], "--ppo.n-steps must be a positive integer, got 0"),
        (["--agent", "ppo", "--ppo.gamma", "1.5"], r"--ppo.gamma must lie in \[0, 1\], got 1.5"),
        (["--agent", "ppo", "--ppo.learning-rate", "-1"],
         "--ppo.learning-rate must be a positive finite number, got -1.0"),
        (["--agent", "ppo", "--ppo.net-arch", "64", "0"],
         r"--ppo.net-arch must list positive layer widths, got \(64, 0\)"),
        (["--agent", "recurrent-ppo", "--recurrent-ppo.lstm-hidden-size", "0"],
         "--recurrent-ppo.lstm-hidden-size must be a positive integer, got 0"),
        (["--agent", "recurrent-ppo", "--recurrent-ppo.ent-coef", "-0.1"],
         "--recurrent-ppo.ent-coef must be a non-negative finite number, got -0.1"),
        (["--agent", "rl2", "--ppo.n-steps", "8"],
         "--ppo.\\* flags were given, but the agent is rl2"),
    ],
)
def test_bad_flags_name_the_flag(tmp_path, capsys, flags, message):
    code = train_main(["--runs-dir", str(tmp_path / "runs"), "--no-progress", *flags])
    assert code == 2
    error = capsys.readouterr().err
    assert re.search(message, error), error
    assert not (tmp_path / "runs").exists()


class _GridObservation(gym.ObservationWrapper):
    """Reshapes a bandit's observation to 1 x 1, a 2-D Box."""

    def __init__(self, env):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1, 1), dtype=np.float32)

    def observation(self, observation):
        return observation.reshape(1, 1)


class _PairedActions(gym.ActionWrapper):
    """Turns a bandit's action into a MultiDiscrete pair of which only the first counts."""

    def __init__(self, env):
        super().__init__(env)
        self.action_space = gym.spaces.MultiDiscrete([5, 2])

    def action(self, action):
        return int(action[0])


class _GridBandits(BanditDistribution):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.name = "grid-bandits"

    def make_env(self, oracle: bool = False):
        return _GridObservation(super().make_env(oracle))


class _PairedActionBandits(BanditDistribution):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.name = "paired-action-bandits"

    def make_env(self, oracle: bool = False):
        return _PairedActions(super().make_env(oracle))


@pytest.mark.parametrize("agent_class, config_class", BASELINES)
def test_two_dimensional_observation_is_rejected(agent_class, config_class):
    distribution = _GridBandits(num_train_tasks=10, num_test_tasks=5)
    with pytest.raises(ValueError, match=r"does not support grid-bandits: its observation space "
                                         r"Box\(0.0, 1.0, \(1, 1\), float32\) is not a 1-D Box"):
        agent_class(distribution, tiny(config_class), device="cpu")


def test_multidiscrete_actions_fit_ppo_only():
    distribution = _PairedActionBandits(num_train_tasks=10, num_test_tasks=5)
    agent = PPOBaseline(distribution, tiny(PPOBaselineConfig), device="cpu")
    agent.learn(32)
    agent.close()
    with pytest.raises(ValueError, match=r"--agent recurrent-ppo does not support "
                                         r"paired-action-bandits: its action space "
                                         r"MultiDiscrete\(\[5 2\]\) is not Discrete or 1-D Box"):
        RecurrentPPOBaseline(distribution, tiny(RecurrentPPOBaselineConfig), device="cpu")


def test_missing_sb3_contrib_is_clear_error(tmp_path, capsys, monkeypatch):
    find_spec = importlib.util.find_spec

    def without_sb3_contrib(name, *args, **kwargs):
        return None if name == "sb3_contrib" else find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_sb3_contrib)
    code = train_main(["--agent", "recurrent-ppo", "--runs-dir", str(tmp_path / "runs"),
                       "--no-progress"])
    assert code == 2
    error = capsys.readouterr().err
    assert "needs the sb3-contrib package, which is not installed" in error
    assert "pip install sb3-contrib" in error
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_recurrent_ppo_beats_random_on_bandits():
    distribution = make_distribution("bandit-k5-n10")
    agent = RecurrentPPOBaseline(distribution, RecurrentPPOBaselineConfig(), device="cpu")
    agent.learn(150_000)
    tasks = distribution.meta_split().test[:1000]
    returns = agent.meta_test(tasks, seed=0).sum(axis=1)
    agent.close()
    # Random play earns 5.0 per trial in expectation, with a standard error of about 0.06
    # on 1000 tasks. Thompson sampling earns about 5.8.
    assert returns.mean() > 5.5
