"""MAML-PPO as an agent: sampling, configuration errors, files, resume and the harness."""

import gc
import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import MAMLPPO, MAMLConfig, load_agent
from agents.maml_objective import log_probs_of, meta_loss
from agents.maml_sampler import sample_trajectories
from agents.mlp_policy import resolve_policy_kind
from envs import make_distribution
from harness.config import TrainConfig
from harness.training import train

SMALL = dict(meta_batch_size=4, rollouts_per_task=5, num_epochs=2, hidden_sizes=(8,),
             eval_adaptation_steps=2)


def bandit_agent(seed=0, **overrides) -> MAMLPPO:
    config = MAMLConfig(**{**SMALL, **overrides})
    return MAMLPPO(make_distribution("bandit-k5-n10"), config, device="cpu", seed=seed)


def flat_parameters(agent) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in agent.policy.parameters()])


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"inner_learning_rate": 0.0}, "inner_learning_rate must be a positive"),
        ({"inner_learning_rate": -0.1}, "inner_learning_rate must be a positive"),
        ({"num_adaptation_steps": 0}, "num_adaptation_steps must be a positive integer"),
        ({"meta_batch_size": 0}, "meta_batch_size must be a positive integer"),
        ({"hidden_sizes": ()}, "hidden_sizes must be positive"),
        ({"policy": "gaussian"}, "needs a Box action space"),
    ],
)
def test_bad_settings_rejected(overrides, fragment):
    with pytest.raises(ValueError, match=fragment):
        bandit_agent(**overrides)


def test_meta_batch_larger_than_split_rejected():
    distribution = make_distribution("bandit-k5-n10", num_train_tasks=3, num_test_tasks=2)
    with pytest.raises(ValueError, match="meta_batch_size 4 is larger than the 3 meta-train"):
        MAMLPPO(distribution, MAMLConfig(**SMALL), device="cpu")


def test_categorical_policy_on_box_rejected():
    box = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    with pytest.raises(ValueError, match="policy 'categorical' needs a Discrete action space"):
        resolve_policy_kind("categorical", box)
    assert resolve_policy_kind("auto", box) == "gaussian"
    assert resolve_policy_kind("auto", gym.spaces.Discrete(3)) == "categorical"


def test_train_config_maml_errors():
    config = TrainConfig(agent="maml-ppo")
    config.maml_ppo.inner_learning_rate = 0.0
    with pytest.raises(ValueError, match="--maml-ppo.inner-learning-rate must be a positive"):
        config.validate()
    config = TrainConfig(agent="rl2")
    config.maml_ppo.num_epochs = 3
    with pytest.raises(ValueError, match="--maml-ppo.\\* flags were given"):
        config.validate()


def test_sampler_uses_task_parameters():
    """Log-probabilities stored by the sampler equal the policy's under the task's parameters."""
    agent = bandit_agent()
    env = agent.distribution.make_batched_env(7)  # 3 tasks x 5 rollouts run in 3 chunks
    task_params = agent._train_params[:3]
    params = {k: v.detach()[None].repeat(3, *(1,) * v.dim()) for k, v in agent.meta_parameters().items()}
    params["head.logits.bias"] = torch.tensor([[5.0, 0, 0, 0, 0], [0, 5.0, 0, 0, 0], [0, 0, 5.0, 0, 0]])
    sample = sample_trajectories(env, agent.policy, params, task_params, 5, 1,
                                 torch.Generator().manual_seed(0))
    assert sample.obs.shape == (3, 5, 1, 1)
    assert sample.actions.shape == (3, 5, 1)
    assert torch.equal(sample.mask, torch.ones(3, 5, 1))
    for task in range(3):
        task_params_i = {k: v[task] for k, v in params.items()}
        expected = log_probs_of(agent.policy, task_params_i, sample.obs[task], sample.actions[task])
        torch.testing.assert_close(sample.log_probs[task], expected)
    # A bias of 5 on arm `task` makes that arm far more likely than the other four.
    assert (sample.actions[0] == 0).float().mean() > 0.5
    assert (sample.actions[2] == 2).float().mean() > 0.5


def test_first_outer_epoch_ratio_one():
    """Recomputing the adaptation from theta gives the sampling parameters: ratio 1, no clipping."""
    agent = bandit_agent(num_adaptation_steps=2)
    task_params = agent._train_params[:4]
    batches, _, _ = agent._sample_and_adapt(agent._training_env(), task_params, 2,
                                            agent._sampling)
    post = batches.pop()
    _, stats = meta_loss(agent.policy, agent.meta_parameters(), batches, post,
                         agent.config.inner_learning_rate, False, agent.config.clip_coef)
    assert stats["approx_kl"].abs() < 1e-6
    assert stats["clip_fraction"] == 0


def test_learn_counts_env_steps():
    agent = bandit_agent()
    seen = []
    agent.learn(60, callback=lambda _agent, metrics: seen.append(metrics))
    # 4 tasks x 5 rollouts x 1 pull, before and after one adaptation step: 40 per iteration.
    assert agent.num_timesteps == 80
    assert len(seen) == 2
    for key in ("rollout/pre_adaptation_return", "rollout/adapted_return", "train/meta_loss",
                "train/approx_kl", "train/grad_norm", "time/steps_per_second"):
        assert np.isfinite(seen[-1][key]), key


def test_memory_flat_across_iterations():
    """No autograd graph or tensor outlives a meta-iteration."""
    agent = bandit_agent()
    agent.learn(200)

    def live_tensors():
        gc.collect()
        with warnings.catch_warnings():  # isinstance on torch's deprecated module proxies warns
            warnings.simplefilter("ignore")
            return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))

    before = live_tensors()
    agent.learn(agent.num_timesteps + 400)
    assert live_tensors() <= before + 5


def test_meta_test_curve_and_seed():
    agent = bandit_agent()
    tasks = agent.distribution.meta_split().test[:6]
    curve, lengths = agent.meta_test(tasks, seed=3, return_lengths=True)
    assert curve.shape == (6, 3)
    assert lengths.shape == (6, 3)
    assert np.all(lengths == 1.0)
    np.testing.assert_array_equal(curve, agent.meta_test(tasks, seed=3))


def test_greedy_meta_test_measures_the_most_likely_action():
    """Greedy measurement: every episode of a step pulls the arm the adapted policy likes most."""
    agent = bandit_agent()
    tasks = agent.distribution.meta_split().test[:3]
    params = agent._train_params.new_tensor(agent.distribution.task_params(tasks))
    _, sampled, greedy = agent._sample_and_adapt(agent._training_env(), params, 1,
                                                 torch.Generator().manual_seed(0), greedy=True)
    assert len(sampled) == len(greedy) == 2
    for step in greedy:
        # (tasks, rollouts, 1 pull): one arm per task, the same in every rollout.
        assert torch.equal(step.actions, step.actions[:, :1].expand_as(step.actions))
    curve = agent.meta_test(tasks, seed=3, deterministic=True)
    assert curve.shape == (3, 3)
    np.testing.assert_array_equal(curve, agent.meta_test(tasks, seed=3, deterministic=True))


def test_save_and_load_round_trip(tmp_path):
    agent = bandit_agent(seed=4).learn(40)
    path = agent.save(tmp_path / "model.pt")
    name, loaded = load_agent(path, device="cpu")
    assert name == "maml-ppo" and isinstance(loaded, MAMLPPO)
    assert loaded.config == agent.config
    assert loaded.num_timesteps == 40
    torch.testing.assert_close(flat_parameters(loaded), flat_parameters(agent))
    obs = np.zeros((3, 1), dtype=np.float32)
    actions, state = loaded.predict(obs, deterministic=True)
    assert state is None
    np.testing.assert_array_equal(actions, agent.predict(obs, deterministic=True)[0])


def test_resume_is_exact():
    straight = bandit_agent(seed=2).learn(160)

    first = bandit_agent(seed=2).learn(80)
    state = first.training_state()
    resumed = bandit_agent(seed=2)
    resumed.load_training_state(state)
    resumed.learn(160)
    assert resumed.num_timesteps == straight.num_timesteps == 160
    torch.testing.assert_close(flat_parameters(resumed), flat_parameters(straight), rtol=0, atol=0)


def test_learned_step_sizes_train_save_and_resume(tmp_path):
    agent = bandit_agent(seed=3, num_adaptation_steps=2, learn_inner_learning_rate=True)
    num_tensors = len(list(agent.policy.parameters()))
    assert torch.equal(agent.inner_learning_rates.detach(), torch.full((2, num_tensors), 0.1))
    seen = []
    agent.learn(240, callback=lambda _agent, metrics: seen.append(metrics))
    assert not torch.equal(agent.inner_learning_rates.detach(), torch.full((2, num_tensors), 0.1))
    assert {"train/inner_learning_rate/0", "train/inner_learning_rate/1"} <= set(seen[-1])

    _, loaded = load_agent(agent.save(tmp_path / "model.pt"), device="cpu")
    torch.testing.assert_close(loaded.inner_learning_rates, agent.inner_learning_rates)
    tasks = agent.distribution.meta_split().test[:4]
    np.testing.assert_array_equal(loaded.meta_test(tasks, seed=1), agent.meta_test(tasks, seed=1))

    straight = bandit_agent(seed=3, num_adaptation_steps=2, learn_inner_learning_rate=True)
    straight.learn(480)
    resumed = bandit_agent(seed=3, num_adaptation_steps=2, learn_inner_learning_rate=True)
    resumed.load_training_state(agent.training_state())
    resumed.learn(480)
    torch.testing.assert_close(resumed.inner_learning_rates, straight.inner_learning_rates,
                               rtol=0, atol=0)
    torch.testing.assert_close(flat_parameters(resumed), flat_parameters(straight), rtol=0, atol=0)


def test_fixed_step_size_saves_no_learned_rates(tmp_path):
    agent = bandit_agent().learn(40)
    assert agent.inner_learning_rates is None
    assert "inner_learning_rates" not in torch.load(agent.save(tmp_path / "m.pt"),
                                                    weights_only=False)


def test_train_writes_adaptation_step_evaluation(tmp_path):
    config = TrainConfig(agent="maml-ppo", total_timesteps=80, runs_dir=tmp_path, eval_tasks=20,
                         progress=False)
    config.maml_ppo = MAMLConfig(**SMALL)
    result = train(config)
    evaluation = json.loads((result.run.path / "evaluation.json").read_text())
    assert evaluation["adaptation_unit"] == "adaptation step"
    assert evaluation["trained_adaptation_steps"] == 1
    assert len(evaluation["adaptation_curve"]) == 3
    assert evaluation["mean_return"] == evaluation["adaptation_curve"][1]
    # References are per episode (one pull), so they lie between 0 and 1.
    assert 0.0 < evaluation["references"]["random"]["mean_return"]["mean"] < 1.0
    saved = json.loads((result.run.path / "config.json").read_text())
    assert saved["train"]["maml_ppo"]["hidden_sizes"] == [8]
    assert TrainConfig.from_dict(saved["train"]).maml_ppo == config.maml_ppo


@pytest.mark.parametrize("env_name, steps_per_episode", [("mdp-s10-a5-n10", 10), ("maze-9x9-n2", None)])
def test_maml_runs_on_mdps_and_mazes(env_name, steps_per_episode):
    distribution = make_distribution(env_name)
    config = MAMLConfig(meta_batch_size=2, rollouts_per_task=3, num_epochs=1, hidden_sizes=(8,),
                        eval_adaptation_steps=1)
    agent = MAMLPPO(distribution, config, device="cpu")
    metrics = agent.meta_iteration()
    if steps_per_episode is not None:  # fixed-horizon MDP episodes
        assert agent.num_timesteps == 2 * 3 * steps_per_episode * 2
    assert np.isfinite(metrics["train/meta_loss"])
    assert agent.meta_test(distribution.meta_split().test[:2]).shape == (2, 2)
