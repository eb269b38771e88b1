"""The memory-augmented policy: memory operations by hand, resets, replay, files, bad input."""

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_agents import (
    assert_observation_loss_matches_hand_error,
    assert_replay_matches_rollout,
    assert_reward_loss_matches_hand_error,
    collect_one_rollout,
    short_mdp_distribution,
)

from agents import MemoryAgent, MemoryConfig, load_agent, reset_recurrent_state
from agents.memory_network import (
    MemoryActorCritic,
    content_read_weights,
    least_used_weights,
    lrua_write,
)
from envs import make_distribution


def tiny_config(**overrides) -> MemoryConfig:
    values = dict(num_envs=6, num_steps=8, minibatch_size=24, hidden_size=16, num_epochs=2,
                  memory_slots=4, memory_width=3)
    values.update(overrides)
    return MemoryConfig(**values)


def small_distribution():
    return make_distribution("bandit-k3-n4", num_train_tasks=64, num_test_tasks=16)


# --------------------------------------------------------------------------- memory operations


def test_content_read_hand_computed():
    keys = torch.tensor([[[2.0, 0.0]]])  # (batch 1, 1 read, width 2)
    memory = torch.tensor([[[1.0, 0.0], [0.0, 3.0], [0.0, 0.0]]])
    weights = content_read_weights(keys, memory, torch.tensor([[2.0]]))
    # Cosines 1, 0 and 0 (the empty slot scores 0, not NaN); softmax of 2 * cosine.
    e2 = math.exp(2.0)
    expected = torch.tensor([e2, 1.0, 1.0]) / (e2 + 2.0)
    assert torch.allclose(weights[0, 0], expected, atol=1e-6)


def test_read_weights_sum_to_one():
    generator = torch.Generator().manual_seed(0)
    keys = torch.randn(5, 3, 4, generator=generator)
    memory = torch.randn(5, 7, 4, generator=generator)
    strength = torch.rand(5, 3, generator=generator) * 10
    weights = content_read_weights(keys, memory, strength)
    assert weights.shape == (5, 3, 7)
    assert torch.allclose(weights.sum(-1), torch.ones(5, 3), atol=1e-6)
    assert torch.all(weights >= 0)


def test_empty_memory_reads_uniformly():
    weights = content_read_weights(torch.ones(1, 1, 3), torch.zeros(1, 4, 3), torch.tensor([[5.0]]))
    assert torch.allclose(weights, torch.full((1, 1, 4), 0.25))


def test_least_used_picks_smallest_usage_with_stable_ties():
    usage = torch.tensor([[0.5, 0.1, 0.1, 0.9]])
    weights = least_used_weights(usage, num_reads=2)
    assert torch.equal(weights[0, 0], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    assert torch.equal(weights[0, 1], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    # An empty memory fills slot 0 first.
    assert torch.equal(least_used_weights(torch.zeros(1, 3), 1)[0, 0], torch.tensor([1.0, 0.0, 0.0]))


def test_write_lands_in_least_used_slot():
    memory = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [2.0, 2.0]]])
    usage = torch.tensor([[0.9, 0.1, 0.5]])  # slot 1 is the least used
    previous_read = torch.tensor([[[1.0, 0.0, 0.0]]])
    content = torch.tensor([[[5.0, -5.0]]])
    # A very negative gate logit writes only to the least-used slot, which is cleared first.
    new_memory, write_weights = lrua_write(memory, previous_read, usage, torch.tensor([[-50.0]]), content)
    assert torch.allclose(write_weights, torch.tensor([[[0.0, 1.0, 0.0]]]))
    expected = torch.tensor([[[1.0, 1.0], [5.0, -5.0], [2.0, 2.0]]])
    assert torch.allclose(new_memory, expected)


def test_write_gate_interpolates_previous_read_and_least_used():
    memory = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [2.0, 2.0]]])
    usage = torch.tensor([[0.9, 0.1, 0.5]])
    previous_read = torch.tensor([[[1.0, 0.0, 0.0]]])
    content = torch.tensor([[[4.0, 0.0]]])
    # Gate logit 0: sigmoid 0.5, half to the previously read slot 0, half to slot 1.
    new_memory, write_weights = lrua_write(memory, previous_read, usage, torch.zeros(1, 1), content)
    assert torch.allclose(write_weights, torch.tensor([[[0.5, 0.5, 0.0]]]))
    expected = torch.tensor([[[3.0, 1.0], [2.0, 0.0], [2.0, 2.0]]])
    assert torch.allclose(new_memory, expected)


def test_stored_key_is_retrieved_by_content_read():
    memory = torch.zeros(1, 3, 4)
    usage = torch.zeros(1, 3)
    read_weights = torch.zeros(1, 1, 3)
    stored = [torch.tensor([1.0, 0.0, 0.0, 0.5]), torch.tensor([0.0, 1.0, -0.5, 0.0])]
    for vector in stored:
        memory, write_weights = lrua_write(memory, read_weights, usage, torch.tensor([[-50.0]]),
                                           vector.reshape(1, 1, 4))
        usage = 0.95 * usage + write_weights.sum(1)
    # A noisy copy of the first vector, read with a large key strength, retrieves it.
    query = (stored[0] + torch.tensor([0.05, 0.05, 0.0, 0.0])).reshape(1, 1, 4)
    weights = content_read_weights(query, memory, torch.tensor([[50.0]]))
    read = (weights @ memory)[0, 0]
    assert int(weights.argmax()) == 0
    assert torch.allclose(read, stored[0], atol=1e-3)


def test_memory_cleared_at_trial_starts_only():
    # Trials of 4 pulls, 7-step rollouts: trials start mid-rollout; every step ends an inner
    # episode (one pull), which must not clear anything.
    agent = MemoryAgent(small_distribution(), tiny_config(num_steps=7, minibatch_size=21), "cpu",
                        seed=1)
    collect_one_rollout(agent)
    rollout = collect_one_rollout(agent)
    size = agent.policy.state_size
    expected_start = ((torch.arange(7)[:, None] + 7) % 4 == 0).expand(7, 6)
    assert torch.equal(rollout.trial_start, expected_start)
    reset = reset_recurrent_state(rollout.hidden_in.reshape(-1, size),
                                  rollout.trial_start.reshape(-1)).reshape(7, 6, size)
    assert torch.all(reset[rollout.trial_start] == 0)
    carried = ~rollout.trial_start
    assert torch.all(rollout.obs[..., -1][carried] == 1.0)
    _, memory, usage, _, _ = agent.policy.layout.unpack(reset[carried])
    # Inside a trial the slots hold what earlier pulls wrote.
    assert torch.all(memory.abs().sum(dim=(1, 2)) > 0)
    assert torch.all(usage.sum(-1) > 0)


# --------------------------------------------------------------------------- PPO replay


@pytest.mark.parametrize("controller, reward_prediction_coef",
                         [("gru", 0.0), ("lstm", 0.0), ("gru", 0.5)])
@pytest.mark.parametrize("sequence_length, minibatch_size", [(7, 7), (1, 3)])
def test_replay_ratio_is_one_before_update(controller, reward_prediction_coef, sequence_length,
                                           minibatch_size):
    # As for RL²: trials start mid-rollout and mid-sequence, and minibatches are odd.
    config = tiny_config(num_envs=3, num_steps=7, sequence_length=sequence_length,
                         minibatch_size=minibatch_size, controller=controller, num_reads=2,
                         reward_prediction_coef=reward_prediction_coef)
    agent = MemoryAgent(small_distribution(), config, "cpu", seed=2)
    assert_replay_matches_rollout(agent, sequence_length, minibatch_size)


def test_unroll_equals_step_by_step():
    policy = MemoryActorCritic(6, gym.spaces.Discrete(3), hidden_size=8,
                               num_slots=4, width=3)
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(5, 2, 6, generator=generator)
    trial_start = torch.tensor([[1, 1], [0, 0], [0, 1], [1, 0], [0, 0]], dtype=torch.bool)
    state = torch.randn(2, policy.state_size, generator=generator)
    params, values, final = policy.unroll(obs, state, trial_start)
    for t in range(5):
        state = reset_recurrent_state(state, trial_start[t])
        step_params, value, state = policy.step(obs[t], state)
        # The replay runs the encoder and heads once over all steps, so a matrix product
        # may sum in another order than one step's: equal to float32 rounding, not bitwise.
        assert torch.allclose(params[t], step_params, atol=1e-6, rtol=0)
        assert torch.allclose(values[t], value, atol=1e-6, rtol=0)
    assert torch.allclose(final, state, atol=1e-6, rtol=0)


def test_unroll_features_are_the_heads_input():
    policy = MemoryActorCritic(6, gym.spaces.Discrete(3), hidden_size=8, num_slots=4, width=3,
                               num_reads=2)
    generator = torch.Generator().manual_seed(1)
    obs = torch.randn(4, 2, 6, generator=generator)
    trial_start = torch.tensor([[1, 1], [0, 0], [1, 0], [0, 0]], dtype=torch.bool)
    state = torch.zeros(2, policy.state_size)
    params, values, _, features = policy.unroll_features(obs, state, trial_start)
    # Controller output (8) and two read vectors of width 3.
    assert features.shape == (4, 2, 8 + 2 * 3)
    assert torch.equal(params, policy.head(features))
    assert torch.equal(values, policy.critic(features).squeeze(-1))


# --------------------------------------------------------------------------- reward prediction


def test_reward_predictor_reads_heads_input_and_action():
    policy = MemoryActorCritic(6, gym.spaces.Discrete(3), hidden_size=8, num_slots=4, width=3,
                               reward_prediction=True)
    features = torch.randn(5, 8 + 3)
    actions = torch.tensor([0, 2, 1, 2, 0])
    first, _, last = policy.reward_predictor
    assert first.in_features == 8 + 3 + 3
    onehot = torch.eye(3)[actions]
    expected = last(torch.tanh(first(torch.cat([features, onehot], dim=-1)))).squeeze(-1)
    assert torch.allclose(policy.predict_rewards(features, actions), expected)


def test_memory_has_no_reward_predictor_by_default():
    agent = MemoryAgent(small_distribution(), tiny_config(), "cpu", seed=0)
    assert not any(key.startswith("reward_predictor") for key in agent.policy.state_dict())
    with pytest.raises(ValueError, match="has no reward predictor"):
        agent.policy.predict_rewards(torch.zeros(1, 16 + 3), torch.zeros(1))


def test_memory_reward_prediction_loss_matches_hand_error():
    config = tiny_config(num_envs=3, num_steps=8, minibatch_size=24, num_epochs=1,
                         reward_prediction_coef=0.5)
    agent = MemoryAgent(small_distribution(), config, "cpu", seed=3)
    changed = assert_reward_loss_matches_hand_error(agent)
    # The loss reaches the controller and the interface that writes and reads the memory.
    assert "controller.weight_hh" in changed
    assert "interface.weight" in changed


def test_memory_reward_prediction_coef_must_be_non_negative():
    with pytest.raises(ValueError, match="reward_prediction_coef must be a non-negative"):
        MemoryAgent(small_distribution(), tiny_config(reward_prediction_coef=float("nan")), "cpu")


def test_memory_reward_predictor_saved_and_loaded(tmp_path):
    agent = MemoryAgent(small_distribution(), tiny_config(reward_prediction_coef=1.0), "cpu",
                        seed=0)
    agent.learn(agent.config.rollout_size)
    _, loaded = load_agent(agent.save(tmp_path / "model.pt"), device="cpu")
    assert loaded.config.reward_prediction_coef == 1.0
    for key, value in agent.policy.state_dict().items():
        assert torch.equal(value, loaded.policy.state_dict()[key]), key


def test_memory_observation_prediction_loss_matches_hand_error():
    config = tiny_config(num_envs=3, num_steps=6, minibatch_size=18, num_epochs=1,
                         observation_prediction_coef=0.5)
    agent = MemoryAgent(short_mdp_distribution(), config, "cpu", seed=3)
    # The predictor reads the heads' input and the one-hot action, and predicts the state.
    first, _, last = agent.policy.observation_predictor
    assert (first.in_features, last.out_features) == (16 + 3 + 2, 3)
    changed = assert_observation_loss_matches_hand_error(agent)
    assert "controller.weight_hh" in changed
    assert "interface.weight" in changed


def test_memory_observation_predictor_saved_and_loaded(tmp_path):
    agent = MemoryAgent(short_mdp_distribution(), tiny_config(observation_prediction_coef=0.1),
                        "cpu", seed=0)
    agent.learn(agent.config.rollout_size)
    _, loaded = load_agent(agent.save(tmp_path / "model.pt"), device="cpu")
    assert loaded.config.observation_prediction_coef == 0.1
    for key, value in agent.policy.state_dict().items():
        assert torch.equal(value, loaded.policy.state_dict()[key]), key


# --------------------------------------------------------------------------- training and files


def test_memory_agent_learns_and_resumes_exactly(tmp_path):
    distribution = small_distribution()
    first = MemoryAgent(distribution, tiny_config(), "cpu", seed=4)
    first.learn(2 * first.config.rollout_size)
    # A deep copy, as a checkpoint file would hold: training updates the live tensors.
    state = copy.deepcopy(first.training_state())
    history_first: list[dict] = []
    first.learn(4 * first.config.rollout_size,
                callback=lambda a, m: history_first.append(m["train/policy_loss"]))

    second = MemoryAgent(distribution, tiny_config(), "cpu", seed=4)
    second.load_training_state(state)
    history_second: list[dict] = []
    second.learn(4 * second.config.rollout_size,
                 callback=lambda a, m: history_second.append(m["train/policy_loss"]))
    assert history_first == history_second
    assert len(history_first) == 2


def test_save_and_load_agent_by_format(tmp_path):
    agent = MemoryAgent(small_distribution(), tiny_config(controller="lstm"), "cpu", seed=3)
    agent.learn(agent.config.rollout_size)
    path = agent.save(tmp_path / "model.pt")
    name, loaded = load_agent(path, device="cpu")
    assert name == "memory"
    assert isinstance(loaded, MemoryAgent)
    assert loaded.config == agent.config
    obs = np.zeros((2, agent.observation_dim), dtype=np.float32)
    first, state = agent.predict(obs, deterministic=True)
    second, loaded_state = loaded.predict(obs, deterministic=True)
    assert np.array_equal(first, second)
    assert np.array_equal(state, loaded_state)
    assert state.shape == (2, agent.policy.state_size)


def test_meta_test_returns_curves_and_lengths():
    agent = MemoryAgent(small_distribution(), tiny_config(), "cpu", seed=0)
    tasks = agent.distribution.meta_split().test[:5]
    returns, lengths = agent.meta_test(tasks, seed=0, return_lengths=True)
    assert returns.shape == (5, 4)
    # One pull per inner episode.
    assert np.array_equal(lengths, np.ones((5, 4), dtype=np.int64))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"memory_slots": 0}, "memory_slots must be a positive integer, got 0"),
        ({"memory_width": -2}, "memory_width must be a positive integer, got -2"),
        ({"num_reads": 0}, "num_reads must be a positive integer, got 0"),
        ({"num_reads": 5, "memory_slots": 4}, r"num_reads \(5\) must not exceed memory_slots \(4\)"),
        ({"controller": "rnn"}, "unknown controller 'rnn'"),
        ({"usage_decay": 1.5}, r"usage_decay must lie in \[0, 1\], got 1.5"),
    ],
)
def test_config_rejects_bad_memory_shapes(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides).validate()
