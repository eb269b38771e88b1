"""RL² internals: recurrent reset, GAE, the PPO replay, seeding, save/load and predict."""

from __future__ import annotations

import logging

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import RL2, RL2Config, compute_gae, reset_recurrent_state, resolve_device
from agents.gae import compute_gae as gae_function
from agents.networks import RecurrentActorCritic
from agents.ppo import (
    PPOSettings,
    SequenceBatch,
    evaluate_sequences,
    observation_prediction_loss,
    ppo_loss,
    ppo_update,
    split_sequences,
)
from agents.seeding import SeedStreams
from envs import BanditDistribution, BatchedBanditEnv, NonFiniteError, make_distribution


def small_distribution(name: str = "bandit-k3-n4"):
    return make_distribution(name, num_train_tasks=500, num_test_tasks=100)


def tiny_config(**overrides) -> RL2Config:
    values = dict(num_envs=6, num_steps=8, minibatch_size=24, hidden_size=16, num_epochs=2)
    values.update(overrides)
    return RL2Config(**values)


# --------------------------------------------------------------------------- recurrent reset


def test_reset_zeroes_only_trial_starts():
    state = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    out = reset_recurrent_state(state, torch.tensor([False, True, False]))
    assert torch.equal(out, torch.tensor([[1.0, 2.0], [0.0, 0.0], [5.0, 6.0]]))


def test_reset_rejects_mask_of_wrong_shape():
    with pytest.raises(ValueError, match=r"expected trial_start of shape \(3,\)"):
        reset_recurrent_state(torch.ones(3, 2), torch.ones(2, dtype=torch.bool))


# --------------------------------------------------------------------------- GAE


def test_gae_hand_computed_with_all_boundary_kinds():
    # One env, 5 steps, gamma = 0.9, lambda = 0.5.
    # step 0: ordinary; step 1: trial terminates; step 2: ordinary (new trial);
    # step 3: truncated, bootstraps from the final observation's value 10;
    # step 4: rollout end, bootstraps from next_values[4] = 2.
    gamma, lam = 0.9, 0.5
    rewards = torch.tensor([[1.0], [2.0], [0.5], [1.0], [0.0]])
    values = torch.tensor([[0.5], [1.0], [2.0], [3.0], [1.0]])
    next_values = torch.tensor([[1.0], [99.0], [3.0], [10.0], [2.0]])
    terminated = torch.tensor([[False], [True], [False], [False], [False]])
    done = torch.tensor([[False], [True], [False], [True], [False]])
    advantages, returns = compute_gae(rewards, values, next_values, terminated, done, gamma, lam)

    delta4 = 0.0 + 0.9 * 2.0 - 1.0          # 0.8
    delta3 = 1.0 + 0.9 * 10.0 - 3.0         # 7.0, truncation bootstraps
    delta2 = 0.5 + 0.9 * 3.0 - 2.0          # 1.2
    delta1 = 2.0 - 1.0                      # 1.0, termination: no bootstrap
    delta0 = 1.0 + 0.9 * 1.0 - 0.5          # 1.4
    a4 = delta4
    a3 = delta3                             # done cuts the trace after step 3
    a2 = delta2 + gamma * lam * a3          # 1.2 + 0.45 * 7.0 = 4.35
    a1 = delta1                             # done cuts the trace after step 1
    a0 = delta0 + gamma * lam * a1          # 1.4 + 0.45 * 1.0 = 1.85
    expected = torch.tensor([[a0], [a1], [a2], [a3], [a4]])
    assert torch.allclose(advantages, expected, atol=1e-6)
    assert torch.allclose(returns, expected + values, atol=1e-6)


def test_gae_matches_plain_loop_on_random_rollout():
    generator = torch.Generator().manual_seed(3)
    t, n, gamma, lam = 12, 4, 0.97, 0.9
    rewards = torch.randn(t, n, generator=generator)
    values = torch.randn(t, n, generator=generator)
    next_values = torch.randn(t, n, generator=generator)
    terminated = torch.rand(t, n, generator=generator) < 0.2
    done = terminated | (torch.rand(t, n, generator=generator) < 0.2)
    advantages, _ = gae_function(rewards, values, next_values, terminated, done, gamma, lam)
    for env in range(n):
        running = 0.0
        for step in reversed(range(t)):
            bootstrap = 0.0 if terminated[step, env] else gamma * float(next_values[step, env])
            delta = float(rewards[step, env]) + bootstrap - float(values[step, env])
            running = delta + (0.0 if done[step, env] else gamma * lam * running)
            assert float(advantages[step, env]) == pytest.approx(running, abs=1e-5)


def test_gae_rejects_mismatched_shapes():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"expected values of shape \(3, 2\), got \(3, 1\)"):
        compute_gae(x, torch.zeros(3, 1), x, x.bool(), x.bool(), 0.9, 0.9)


# --------------------------------------------------------------------------- rollouts and replay


def collect_one_rollout(agent: RL2):
    collector = agent._ensure_collector()
    rollout, _ = collector.collect(agent.policy, agent.config.num_steps)
    rollout.advantages, rollout.returns = compute_gae(
        rollout.rewards, rollout.values, rollout.next_values, rollout.terminated, rollout.done,
        agent.config.gamma, agent.config.gae_lambda,
    )
    return rollout


def test_hidden_state_zero_exactly_at_trial_starts():
    # Trials of 4 pulls, rollouts of 7 steps: trials start mid-rollout.
    agent = RL2(small_distribution(), tiny_config(num_steps=7, minibatch_size=21), "cpu", seed=1)
    collect_one_rollout(agent)
    rollout = collect_one_rollout(agent)
    steps = torch.arange(7)[:, None] + 7  # global step index of the second rollout
    expected_start = (steps % 4 == 0).expand(7, 6)
    assert torch.equal(rollout.trial_start, expected_start)
    flat_hidden = rollout.hidden_in.reshape(-1, 16)
    reset = reset_recurrent_state(flat_hidden, rollout.trial_start.reshape(-1)).reshape(7, 6, 16)
    assert torch.all(reset[rollout.trial_start] == 0)
    # Inside a trial every step starts an inner episode (one pull each), and the state is kept.
    carried = ~rollout.trial_start
    assert torch.all(rollout.obs[..., -1][carried] == 1.0)
    assert torch.all(reset[carried].abs().sum(-1) > 0)


def assert_replay_matches_rollout(agent, sequence_length: int, minibatch_size: int) -> None:
    """Replay a fresh rollout in shuffled minibatches; log-probs and values must match."""
    collect_one_rollout(agent)
    rollout = collect_one_rollout(agent)
    batch = split_sequences(rollout, sequence_length)
    order = torch.randperm(batch.obs.shape[1])
    per_minibatch = minibatch_size // sequence_length
    for start in range(0, batch.obs.shape[1], per_minibatch):
        minibatch = batch.select(order[start:start + per_minibatch])
        with torch.no_grad():
            log_probs, values, _ = evaluate_sequences(agent.policy, minibatch)
        ratio = (log_probs - minibatch.log_probs).exp()
        assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-6, rtol=0)
        assert torch.allclose(values, minibatch.values, atol=1e-6, rtol=0)


@pytest.mark.parametrize("separate_critic, reward_prediction_coef",
                         [(False, 0.0), (True, 0.0), (False, 0.5)])
@pytest.mark.parametrize("sequence_length, minibatch_size", [(7, 7), (7, 21), (1, 3)])
def test_replay_ratio_is_one_before_update(sequence_length, minibatch_size, separate_critic,
                                           reward_prediction_coef):
    # 3 envs, 7-step rollouts, 4-pull trials: trials start mid-rollout and mid-sequence,
    # and minibatches hold an odd number of steps.
    config = tiny_config(num_envs=3, num_steps=7, sequence_length=sequence_length,
                         minibatch_size=minibatch_size, separate_critic=separate_critic,
                         reward_prediction_coef=reward_prediction_coef)
    agent = RL2(small_distribution(), config, "cpu", seed=2)
    assert_replay_matches_rollout(agent, sequence_length, minibatch_size)


def test_split_sequences_regroups_time_and_envs():
    agent = RL2(small_distribution(), tiny_config(num_envs=2, num_steps=4, sequence_length=2,
                                                  minibatch_size=4), "cpu", seed=0)
    rollout = collect_one_rollout(agent)
    batch = split_sequences(rollout, 2)
    # Sequence b * N + n contains steps 2b, 2b + 1 of env n.
    assert torch.equal(batch.returns[:, 3], rollout.returns[2:4, 1])
    assert torch.equal(batch.hidden_start[3], rollout.hidden_in[2, 1])


def test_ppo_loss_clips_ratio():
    settings = PPOSettings(num_epochs=1, minibatch_size=2, sequence_length=1, clip_coef=0.2,
                           ent_coef=0.0, vf_coef=0.0, max_grad_norm=1.0, normalize_advantages=False)
    old = torch.zeros(2)
    new = torch.log(torch.tensor([1.5, 0.5]))
    advantages = torch.tensor([1.0, -1.0])
    loss, stats = ppo_loss(new, old, advantages, torch.zeros(2), torch.zeros(2), torch.zeros(2),
                           settings)
    # min(1.5 * 1, 1.2 * 1) = 1.2 and min(0.5 * -1, 0.8 * -1) = -0.8: loss = -(1.2 - 0.8) / 2.
    assert float(loss) == pytest.approx(-0.2)
    assert float(stats["clip_fraction"]) == pytest.approx(1.0)


# --------------------------------------------------------------------------- seeding, files


def test_seed_streams_are_distinct_and_reproducible():
    first, second = SeedStreams.from_seed(7), SeedStreams.from_seed(7)
    assert first == second
    assert len({first.tasks, first.env, first.init, first.sampling}) == 4
    assert SeedStreams.from_seed(8) != first


def run_metrics(seed: int) -> list[dict[str, float]]:
    agent = RL2(small_distribution(), tiny_config(), "cpu", seed=seed)
    history: list[dict[str, float]] = []
    agent.learn(3 * agent.config.rollout_size,
                callback=lambda a, m: history.append({k: v for k, v in m.items()
                                                      if not k.startswith("time/")}))
    return history


def test_same_seed_gives_identical_metrics():
    first, second = run_metrics(5), run_metrics(5)
    assert first == second
    assert run_metrics(6) != first


def test_save_load_gives_identical_predictions(tmp_path):
    agent = RL2(small_distribution(), tiny_config(), "cpu", seed=3)
    agent.learn(2 * agent.config.rollout_size)
    path = agent.save(tmp_path / "model.pt")
    loaded = RL2.load(path, device="cpu")
    assert loaded.num_timesteps == agent.num_timesteps
    obs = np.random.default_rng(0).normal(size=(5, agent.observation_dim)).astype(np.float32)
    action_a, state_a = agent.predict(obs, deterministic=True)
    action_b, state_b = loaded.predict(obs, deterministic=True)
    assert np.array_equal(action_a, action_b)
    assert np.array_equal(state_a, state_b)
    returns_a = agent.meta_test(agent.distribution.meta_split().test[:20], seed=4)
    returns_b = loaded.meta_test(loaded.distribution.meta_split().test[:20], seed=4)
    assert np.array_equal(returns_a, returns_b)


def test_load_rejects_other_files(tmp_path):
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a model file of RL2"):
        RL2.load(tmp_path / "other.pt")


def test_predict_resets_state_at_episode_start():
    agent = RL2(small_distribution(), tiny_config(), "cpu", seed=0)
    env = gym.make("adaptrl/Trials-v0", distribution="bandit-k3-n4")
    obs, _ = env.reset(seed=0)
    action, state = agent.predict(obs)
    assert env.action_space.contains(int(action))
    assert state.shape == (1, 16)
    batch_obs = np.stack([obs, obs])
    states = np.stack([state[0], state[0]])
    _, fresh = agent.predict(batch_obs, states, episode_start=np.array([True, False]))
    _, from_zero = agent.predict(obs[None], None)
    assert np.allclose(fresh[0], from_zero[0])
    assert not np.allclose(fresh[1], from_zero[0])


def test_predict_rejects_wrong_state_shape():
    agent = RL2(small_distribution(), tiny_config(), "cpu", seed=0)
    obs = np.zeros(agent.observation_dim, dtype=np.float32)
    with pytest.raises(ValueError, match=r"expected state of shape \(1, 16\)"):
        agent.predict(obs, np.zeros((1, 3)))


def test_meta_test_returns_one_row_per_task():
    agent = RL2(small_distribution(), tiny_config(), "cpu", seed=0)
    tasks = agent.distribution.meta_split().test[:30]
    returns = agent.meta_test(tasks, seed=1)
    assert returns.shape == (30, 4)
    assert set(np.unique(returns)) <= {0.0, 1.0}


def test_network_gaussian_head_log_prob():
    net = RecurrentActorCritic(3, gym.spaces.Box(-1.0, 1.0, shape=(2,)), hidden_size=8)
    params = torch.tensor([[0.0, 1.0, 0.0, np.log(2.0)]])  # means (0, 1), stds (1, 2)
    actions = torch.tensor([[1.0, 1.0]])
    expected = (-0.5 - 0.5 * np.log(2 * np.pi)) + (-np.log(2.0) - 0.5 * np.log(2 * np.pi))
    assert float(net.head.log_prob(params, actions)) == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"learning_rate": 0.0}, "learning_rate must be a positive finite number, got 0.0"),
        ({"learning_rate": -1e-3}, "learning_rate must be a positive finite number"),
        ({"minibatch_size": 7}, "minibatch_size 7 must divide the rollout of num_envs"),
        ({"sequence_length": 3}, "sequence_length 3 must be a positive divisor of num_steps 8"),
        ({"num_envs": 0}, "num_envs must be a positive integer, got 0"),
        ({"gamma": 1.5}, r"gamma must lie in \[0, 1\], got 1.5"),
        ({"reward_scale": 0.0}, "reward_scale must be a positive finite number, got 0.0"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        RL2(small_distribution(), tiny_config(**overrides), "cpu")


def test_learn_rejects_non_positive_budget():
    agent = RL2(small_distribution(), tiny_config(), "cpu")
    with pytest.raises(ValueError, match="total_timesteps must be a positive integer, got 0"):
        agent.learn(0)


def test_learn_logs_budget_rounded_up(caplog):
    agent = RL2(small_distribution(), tiny_config(), "cpu")
    rollout_size = agent.config.rollout_size
    with caplog.at_level(logging.INFO, logger="agents.trial_agent"):
        agent.learn(rollout_size + 1)
    assert agent.num_timesteps == 2 * rollout_size
    assert f"training stops after {2 * rollout_size} env steps" in caplog.text


def test_learn_whole_rollouts_log_nothing(caplog):
    agent = RL2(small_distribution(), tiny_config(), "cpu")
    with caplog.at_level(logging.INFO, logger="agents.trial_agent"):
        agent.learn(agent.config.rollout_size)
    assert "whole number of rollouts" not in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_request_without_cuda_is_an_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_unknown_device_lists_choices():
    with pytest.raises(ValueError, match=r"unknown device 'tpu'; expected one of \('auto'"):
        resolve_device("tpu")


class _NaNBanditEnv(BatchedBanditEnv):
    """Pays NaN to env 1 from its third step on."""

    steps = 0

    def step(self, actions, noise=None):
        obs, rewards, terminated, truncated = super().step(actions, noise)
        self.steps += 1
        if self.steps >= 3:
            rewards = rewards.clone()
            rewards[1] = float("nan")
        return obs, rewards, terminated, truncated


class _NaNBandits(BanditDistribution):
    def make_batched_env(self, num_envs, device="cpu", generator=None):
        return _NaNBanditEnv(num_envs, self.num_arms, device=device, generator=generator)


def test_batched_nan_reward_names_step():
    distribution = _NaNBandits(3, 4, num_train_tasks=50, num_test_tasks=10)
    agent = RL2(distribution, tiny_config(), "cpu", seed=0)
    with pytest.raises(NonFiniteError, match=r"bandit-k3-n4 .* in env 1 at step 2 .* on task "
                                             r"BanditTask\(arm_means="):
        agent.learn(agent.config.rollout_size)


def test_load_rejects_non_pickle_file(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# not a model\n")
    with pytest.raises(ValueError, match="is not a model or checkpoint file written by AdaptRL"):
        RL2.load(path)


# --------------------------------------------------------------------------- reward prediction


def test_reward_predictor_by_hand():
    net = RecurrentActorCritic(3, gym.spaces.Discrete(2), hidden_size=4, reward_prediction=True)
    features = torch.randn(5, 4)
    actions = torch.tensor([0, 1, 1, 0, 1])
    first, _, last = net.reward_predictor
    onehot = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    expected = last(torch.tanh(first(torch.cat([features, onehot], dim=-1)))).squeeze(-1)
    assert torch.allclose(net.predict_rewards(features, actions), expected)


def test_reward_predictor_takes_box_actions_as_they_are():
    net = RecurrentActorCritic(3, gym.spaces.Box(-1.0, 1.0, (2,)), hidden_size=4,
                               reward_prediction=True)
    features, actions = torch.randn(6, 3, 4), torch.randn(6, 3, 2)
    first, _, last = net.reward_predictor
    expected = last(torch.tanh(first(torch.cat([features, actions], dim=-1)))).squeeze(-1)
    assert torch.allclose(net.predict_rewards(features, actions), expected)


def test_no_reward_predictor_without_its_weight():
    agent = RL2(small_distribution(), tiny_config(), "cpu", seed=0)
    assert not any(key.startswith("reward_predictor") for key in agent.policy.state_dict())
    with pytest.raises(ValueError, match="has no reward predictor"):
        agent.policy.predict_rewards(torch.zeros(1, 16), torch.zeros(1))


def assert_reward_loss_matches_hand_error(agent) -> set[str]:
    """Check the logged loss of one update against the untrained predictor's error.

    The agent's config must make one epoch over one minibatch that is the whole rollout, so
    that the loss is computed before the update. Returns the names of the changed weights.
    """
    rollout = collect_one_rollout(agent)
    with torch.no_grad():
        _, _, _, features = agent.policy.unroll_features(
            rollout.obs, rollout.hidden_in[0], rollout.trial_start
        )
        predicted = agent.policy.predict_rewards(features, rollout.actions)
    # The reward at step t follows action t: both are stored at index t.
    expected = (predicted - rollout.rewards).pow(2).mean()
    stats, changed = update_once(agent, rollout)
    assert float(stats["reward_prediction_loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert "reward_predictor.0.weight" in changed
    return changed


def update_once(agent, rollout) -> tuple[dict, set[str]]:
    """Run one PPO update on ``rollout``; return its statistics and the changed weights' names."""
    before = {key: value.clone() for key, value in agent.policy.state_dict().items()}
    stats = ppo_update(agent.policy, agent.optimizer, rollout, agent.config.ppo_settings(), None)
    changed = {key for key, value in agent.policy.state_dict().items()
               if not torch.equal(value, before[key])}
    return stats, changed


def test_reward_prediction_loss_matches_hand_error():
    config = tiny_config(num_envs=3, num_steps=8, minibatch_size=24, num_epochs=1,
                         reward_prediction_coef=0.5)
    changed = assert_reward_loss_matches_hand_error(RL2(small_distribution(), config, "cpu", seed=3))
    assert "gru.weight_hh_l0" in changed


def test_reward_prediction_coef_must_be_non_negative():
    with pytest.raises(ValueError, match="reward_prediction_coef must be a non-negative"):
        RL2(small_distribution(), tiny_config(reward_prediction_coef=-0.1), "cpu")


def test_reward_predictor_saved_and_loaded(tmp_path):
    agent = RL2(small_distribution(), tiny_config(reward_prediction_coef=1.0), "cpu", seed=0)
    agent.learn(total_timesteps=96)
    loaded = RL2.load(agent.save(tmp_path / "model.pt"))
    assert loaded.config.reward_prediction_coef == 1.0
    for key, value in agent.policy.state_dict().items():
        assert torch.equal(value, loaded.policy.state_dict()[key]), key


# --------------------------------------------------------------------------- observation prediction


def short_mdp_distribution():
    # Trials of 2 episodes of 2 steps: a rollout of 6 steps crosses a trial boundary.
    return make_distribution("mdp-s3-a2-n2", horizon=2, num_train_tasks=50, num_test_tasks=10)


def test_rollout_next_obs_shifts_obs():
    agent = RL2(short_mdp_distribution(), tiny_config(num_envs=2, num_steps=6, minibatch_size=12),
                "cpu", seed=0)
    collector = agent._ensure_collector()
    rollout, _ = collector.collect(agent.policy, 6)
    assert torch.equal(rollout.next_obs[:-1], rollout.obs[1:])
    assert torch.equal(rollout.next_obs[-1], collector.obs)
    # Step 3 ends each env's first trial; the observation it led to starts the next trial.
    assert rollout.done[3].all()
    assert rollout.trial_start[4].all()
    assert torch.equal(rollout.next_obs[3], rollout.obs[4])
    # Sequences of 3 steps: the first sequence's last step led to the second's first.
    rollout.advantages = rollout.returns = torch.zeros_like(rollout.rewards)
    batch = split_sequences(rollout, 3)
    assert torch.equal(batch.next_obs[:, :2], rollout.next_obs[:3])
    assert torch.equal(batch.next_obs[:, 2:], rollout.next_obs[3:])


def test_observation_prediction_loss_by_hand():
    net = RecurrentActorCritic(7, gym.spaces.Discrete(2), hidden_size=4,
                               observation_prediction_size=2)
    first, _, last = net.observation_predictor
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.5, 0.0]))
    # 3 steps of 1 sequence; the trial observation is the 2 base entries and 5 more.
    next_obs = torch.zeros(3, 1, 7)
    next_obs[0, 0, :2] = torch.tensor([1.0, 0.0])
    next_obs[1, 0, :2] = torch.tensor([0.0, 1.0])
    next_obs[2, 0, :2] = torch.tensor([9.0, 9.0])
    next_obs[:, 0, 2:] = 3.0  # beyond the base observation: not a target
    # Each step's next observation is the following step's, and the last one's is stored apart.
    obs = torch.cat([torch.zeros(1, 1, 7), next_obs[:2]])
    zeros = torch.zeros(3, 1)
    batch = SequenceBatch(
        obs=obs, following_obs=next_obs[2], hidden_start=torch.zeros(1, 4),
        trial_start=zeros.bool(), trial_end=torch.tensor([[False], [False], [True]]),
        actions=zeros.long(), log_probs=zeros, values=zeros, advantages=zeros, returns=zeros,
        rewards=zeros,
    )
    assert torch.equal(batch.next_obs, next_obs)
    # Step 0: (0.5 - 1)^2 + 0^2 = 0.25; step 1: 0.5^2 + (0 - 1)^2 = 1.25; step 2 ends the
    # trial and is left out. Mean over the two kept steps: 0.75.
    loss = observation_prediction_loss(net, torch.randn(3, 1, 4), batch)
    assert float(loss.detach()) == pytest.approx(0.75)


def assert_observation_loss_matches_hand_error(agent) -> set[str]:
    """Check the logged loss of one update against the untrained predictor's error.

    The agent's config must make one epoch over one minibatch that is the whole rollout.
    Returns the names of the changed weights.
    """
    rollout = collect_one_rollout(agent)
    width = agent.base_observation_dim
    with torch.no_grad():
        _, _, _, features = agent.policy.unroll_features(
            rollout.obs, rollout.hidden_in[0], rollout.trial_start
        )
        predicted = agent.policy.observation_predictor(features, rollout.actions)
    errors = [
        float((predicted[t, i] - rollout.next_obs[t, i, :width]).pow(2).sum())
        for t in range(rollout.num_steps) for i in range(rollout.num_envs)
        if not rollout.done[t, i]
    ]
    assert 0 < len(errors) < rollout.num_steps * rollout.num_envs
    stats, changed = update_once(agent, rollout)
    assert float(stats["observation_prediction_loss"]) == pytest.approx(np.mean(errors), rel=1e-5)
    assert "observation_predictor.0.weight" in changed
    return changed


def test_observation_prediction_loss_matches_hand_error():
    config = tiny_config(num_envs=3, num_steps=6, minibatch_size=18, num_epochs=1,
                         observation_prediction_coef=0.5)
    agent = RL2(short_mdp_distribution(), config, "cpu", seed=3)
    assert agent.policy.observation_predictor[-1].out_features == 3  # the one-hot MDP state
    changed = assert_observation_loss_matches_hand_error(agent)
    assert "gru.weight_hh_l0" in changed


def test_no_observation_predictor_without_its_weight():
    agent = RL2(small_distribution(), tiny_config(), "cpu", seed=0)
    assert agent.policy.observation_predictor is None
    with pytest.raises(ValueError, match="has no observation predictor"):
        observation_prediction_loss(agent.policy, torch.zeros(1, 1, 16), None)


def test_observation_prediction_coef_must_be_non_negative():
    with pytest.raises(ValueError, match="observation_prediction_coef must be a non-negative"):
        RL2(small_distribution(), tiny_config(observation_prediction_coef=-1.0), "cpu")


def test_observation_predictor_saved_and_loaded(tmp_path):
    config = tiny_config(observation_prediction_coef=0.1, reward_prediction_coef=1.0)
    agent = RL2(small_distribution(), config, "cpu", seed=0)
    agent.learn(total_timesteps=96)
    loaded = RL2.load(agent.save(tmp_path / "model.pt"))
    assert loaded.config.observation_prediction_coef == 0.1
    assert "observation_predictor.2.bias" in loaded.policy.state_dict()
    for key, value in agent.policy.state_dict().items():
        assert torch.equal(value, loaded.policy.state_dict()[key]), key


def test_separate_critic_has_its_own_state_and_gradients():
    net = RecurrentActorCritic(3, gym.spaces.Discrete(2), hidden_size=4, separate_critic=True)
    assert net.state_size == 8
    obs = torch.randn(5, 2, 3)
    trial_start = torch.zeros(5, 2, dtype=torch.bool)
    params, values, final = net.unroll(obs, net.initial_state(2), trial_start)
    assert final.shape == (2, 8)
    # The value loss reaches only the critic's encoder and GRU, never the policy's.
    values.sum().backward()
    assert net.gru.weight_ih_l0.grad is None
    assert net.encoder[0].weight.grad is None
    assert net.critic_gru.weight_ih_l0.grad.abs().sum() > 0
    # Step by step gives the same numbers as the fused replay.
    state = net.initial_state(2)
    for t in range(5):
        step_params, value, state = net.step(obs[t], state)
        assert torch.allclose(step_params, params[t], atol=1e-6)
        assert torch.allclose(value, values[t], atol=1e-6)
