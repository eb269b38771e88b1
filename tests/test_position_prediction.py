"""Position prediction: the maze's displacement target, its loss by hand, files and bad input."""

import gymnasium as gym
import pytest
import torch
from test_agents import collect_one_rollout, update_once
from test_mazes import TINY, TINY_PATH, UP, tiny_batched

from agents import RL2, MemoryAgent, MemoryConfig, RL2Config, load_agent
from agents.networks import RecurrentActorCritic
from agents.ppo import SequenceBatch, position_prediction_loss, split_sequences
from envs import BatchedTrialEnv, MazeDistribution, make_distribution

# Where each step of TINY_PATH leaves the agent: (rows, cols) from the start (1, 1), before
# the division by the maze size 3. The path runs along the top row, down the right side and
# back along the bottom row to the goal (3, 1).
TINY_PATH_DISPLACEMENTS = [(0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0)]


def small_maze_distribution():
    return make_distribution("maze-5x5-n2", num_train_tasks=64, num_test_tasks=16)


def rl2_config(**overrides) -> RL2Config:
    # One epoch over one minibatch that is the whole rollout of 3 envs x 12 steps.
    values = dict(num_envs=3, num_steps=12, minibatch_size=36, hidden_size=16, num_epochs=1,
                  position_prediction_coef=0.5)
    values.update(overrides)
    return RL2Config(**values)


# --------------------------------------------------------------------------- the target


def test_maze_displacement_along_the_tiny_path():
    batched, _ = tiny_batched()
    assert batched.displacement().tolist() == [[0.0, 0.0]]
    batched.step(torch.tensor([UP]))  # into the wall: the agent stays on the start
    assert batched.displacement().tolist() == [[0.0, 0.0]]
    for action, (rows, cols) in zip(TINY_PATH, TINY_PATH_DISPLACEMENTS, strict=True):
        batched.step(torch.tensor([action]))
        expected = torch.tensor([[rows / 3, cols / 3]])
        torch.testing.assert_close(batched.displacement(), expected, rtol=0, atol=0)
    # The last step reached the goal; the reset puts the agent back on the start.
    batched.reset(torch.ones(1, dtype=torch.bool))
    assert batched.displacement().tolist() == [[0.0, 0.0]]


def test_families_without_positions_report_none():
    for name in ("bandit-k3-n4", "mdp-s10-a5-n10"):
        assert make_distribution(name).make_batched_env(2).displacement() is None


def test_trial_displacement_before_reset():
    distribution = MazeDistribution(size=3, window=3, episodes_per_trial=2)
    base = distribution.make_batched_env(1)
    params = torch.as_tensor(distribution.task_params([TINY]))
    env = BatchedTrialEnv(base, [TINY], params, episodes_per_trial=2)
    env.reset()
    for action in TINY_PATH:
        result = env.step(torch.tensor([action]))
    # The goal step ends episode 1: its displacement is the goal's, (2, 0) / 3, while the
    # observation that follows is already the start's, where episode 2 begins.
    assert result.episode_end.tolist() == [True]
    torch.testing.assert_close(result.displacement, torch.tensor([[2 / 3, 0.0]]), rtol=0, atol=0)
    result = env.step(torch.tensor([UP]))
    assert result.displacement.tolist() == [[0.0, 0.0]]


def test_rollout_and_sequences_carry_the_displacements():
    agent = RL2(small_maze_distribution(), rl2_config(), "cpu", seed=0)
    rollout = collect_one_rollout(agent)
    assert rollout.displacements.shape == (12, 3, 2)
    # Every row is a whole number of squares over the size, 5.
    squares = rollout.displacements * 5
    torch.testing.assert_close(squares, squares.round(), rtol=0, atol=1e-6)
    # Sequences of 4 steps: sequence b * 3 + n contains steps 4b .. 4b + 3 of env n.
    batch = split_sequences(rollout, 4)
    assert torch.equal(batch.displacements[:, 3 + 2], rollout.displacements[4:8, 2])
    assert torch.equal(batch.select(torch.tensor([5])).displacements[:, 0],
                       rollout.displacements[4:8, 2])


# --------------------------------------------------------------------------- the loss


def test_position_prediction_loss_by_hand():
    net = RecurrentActorCritic(7, gym.spaces.Discrete(2), hidden_size=4, position_prediction_size=2)
    *_, last = net.position_predictor
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.5, 0.0]))
    zeros = torch.zeros(3, 1)
    batch = SequenceBatch(
        obs=torch.zeros(3, 1, 7), following_obs=torch.zeros(1, 7), hidden_start=torch.zeros(1, 4),
        trial_start=zeros.bool(), trial_end=torch.tensor([[False], [False], [True]]),
        actions=zeros.long(), log_probs=zeros, values=zeros, advantages=zeros, returns=zeros,
        rewards=zeros, displacements=torch.tensor([[[1.0, 0.0]], [[0.5, -1.0]], [[0.0, 0.5]]]),
    )
    # Step 0: (0.5 - 1)^2 + 0^2 = 0.25; step 1: 0^2 + (0 + 1)^2 = 1; step 2, which ends the
    # trial and still counts, since its target is where the agent stood before the reset:
    # 0.5^2 + 0.5^2 = 0.5. Mean: 1.75 / 3.
    loss = position_prediction_loss(net, torch.randn(3, 1, 4), batch)
    assert float(loss.detach()) == pytest.approx(1.75 / 3)


def assert_position_loss_matches_hand_error(agent) -> set[str]:
    """Check one update's logged loss against the untrained predictor's error; return changed weights.

    The agent's config must make one epoch over one minibatch that is the whole rollout.
    """
    rollout = collect_one_rollout(agent)
    with torch.no_grad():
        _, _, _, features = agent.policy.unroll_features(
            rollout.obs, rollout.hidden_in[0], rollout.trial_start
        )
        predicted = agent.policy.position_predictor(features, rollout.actions)
    errors = [
        float((predicted[t, i] - rollout.displacements[t, i]).pow(2).sum())
        for t in range(rollout.num_steps) for i in range(rollout.num_envs)
    ]
    stats, changed = update_once(agent, rollout)
    assert float(stats["position_prediction_loss"]) == pytest.approx(sum(errors) / len(errors),
                                                                     rel=1e-5)
    assert "position_predictor.0.weight" in changed
    return changed


def test_rl2_position_loss_matches_hand_error():
    agent = RL2(small_maze_distribution(), rl2_config(), "cpu", seed=3)
    assert agent.policy.position_predictor[-1].out_features == 2
    assert "gru.weight_hh_l0" in assert_position_loss_matches_hand_error(agent)


def test_memory_position_loss_matches_hand_error():
    config = MemoryConfig(num_envs=3, num_steps=12, minibatch_size=36, hidden_size=16,
                          num_epochs=1, memory_slots=4, memory_width=3,
                          position_prediction_coef=0.5)
    agent = MemoryAgent(small_maze_distribution(), config, "cpu", seed=3)
    assert "controller.weight_hh" in assert_position_loss_matches_hand_error(agent)


def test_position_loss_needs_predictor_and_targets():
    agent = RL2(small_maze_distribution(), rl2_config(position_prediction_coef=0.0), "cpu")
    assert agent.policy.position_predictor is None
    with pytest.raises(ValueError, match="has no position predictor"):
        position_prediction_loss(agent.policy, torch.zeros(1, 1, 16), None)
    agent = RL2(small_maze_distribution(), rl2_config(), "cpu")
    rollout = collect_one_rollout(agent)
    rollout.displacements = None
    with pytest.raises(ValueError, match="has no displacements"):
        position_prediction_loss(agent.policy, torch.zeros(12, 3, 16), split_sequences(rollout, 12))


# --------------------------------------------------------------------------- files and bad input


@pytest.mark.parametrize("agent_class, config_class", [(RL2, RL2Config),
                                                        (MemoryAgent, MemoryConfig)])
def test_position_predictor_saved_and_loaded(tmp_path, agent_class, config_class):
    config = config_class(num_envs=3, num_steps=12, minibatch_size=36, hidden_size=16,
                          position_prediction_coef=0.25)
    agent = agent_class(small_maze_distribution(), config, "cpu", seed=0)
    agent.learn(total_timesteps=72)
    _, loaded = load_agent(agent.save(tmp_path / "model.pt"))
    assert loaded.config.position_prediction_coef == 0.25
    assert "position_predictor.2.bias" in loaded.policy.state_dict()
    for key, value in agent.policy.state_dict().items():
        assert torch.equal(value, loaded.policy.state_dict()[key]), key


def test_position_prediction_needs_positions():
    with pytest.raises(ValueError, match=r"position_prediction_coef 0.5 needs an environment "
                                         r"that reports the agent's position, and bandit-k3-n4"):
        RL2(make_distribution("bandit-k3-n4"), rl2_config(), "cpu")


def test_position_coef_rejects_negative():
    with pytest.raises(ValueError, match="position_prediction_coef must be a non-negative"):
        RL2(small_maze_distribution(), rl2_config(position_prediction_coef=-1.0), "cpu")


def test_predictor_leaves_initial_weights_unchanged():
    # The predictor is built last, so adding it leaves every other initial weight as it was.
    plain = RL2(small_maze_distribution(), rl2_config(position_prediction_coef=0.0), "cpu", seed=1)
    with_loss = RL2(small_maze_distribution(), rl2_config(), "cpu", seed=1)
    for key, value in plain.policy.state_dict().items():
        assert torch.equal(value, with_loss.policy.state_dict()[key]), key
