"""RL² and MAML-PPO on the continuous-control families: 2D navigation and MuJoCo locomotion."""

import multiprocessing

import numpy as np
import pytest
import torch

from agents import MAMLPPO, RL2, MAMLConfig, RL2Config
from envs import make_distribution
from harness.config import TrainConfig
from harness.training import train

TINY_MAML = dict(meta_batch_size=2, rollouts_per_task=2, num_epochs=1, hidden_sizes=(8,),
                 eval_adaptation_steps=1)


def test_rl2_clips_gaussian_actions():
    distribution = make_distribution("navigation-2d")
    config = RL2Config(num_envs=4, num_steps=20, minibatch_size=40, hidden_size=16)
    agent = RL2(distribution, config, device="cpu", seed=0)
    with torch.no_grad():
        agent.policy.head.log_std.fill_(1.0)  # std e = 2.7, so most samples fall outside [-0.1, 0.1]
    rollout, _ = agent._ensure_collector().collect(agent.policy, config.num_steps)
    assert rollout.actions.abs().max() > 0.1
    # The trial observation's previous-action block (after the 2-D position) holds what the
    # env received: the sample clipped to the action box.
    previous = rollout.obs[1:, :, 2:4]
    expected = rollout.actions[:-1].clamp(-0.1, 0.1)
    starts = rollout.trial_start[1:]
    torch.testing.assert_close(previous[~starts], expected[~starts])


def test_rl2_trains_on_navigation(tmp_path):
    config = TrainConfig(env="navigation-2d", total_timesteps=800, runs_dir=tmp_path,
                         eval_tasks=10, progress=False)
    config.rl2 = RL2Config(num_envs=4, num_steps=200, minibatch_size=400, hidden_size=16)
    result = train(config)
    evaluation = result.evaluation
    assert len(evaluation["adaptation_curve"]) == 2  # two episodes per trial
    assert evaluation["references"]["oracle"]["mean_return"]["mean"] > -3.0  # two episodes


def test_maml_navigation_whole_episodes():
    agent = MAMLPPO(make_distribution("navigation-2d"), MAMLConfig(**TINY_MAML), device="cpu")
    metrics = agent.meta_iteration()
    # 2 tasks x 2 episodes x 100 steps, before and after one adaptation step.
    assert agent.num_timesteps == 800
    assert -100.0 < metrics["rollout/adapted_return"] < 0.0


def _worker_processes() -> int:
    return len(multiprocessing.active_children())


@pytest.mark.parametrize("env_name", ["halfcheetah-vel", "halfcheetah-dir", "ant-goal"])
def test_maml_mujoco_iteration_closes_workers(env_name):
    distribution = make_distribution(env_name, horizon=5)
    agent = MAMLPPO(distribution, MAMLConfig(**TINY_MAML), device="cpu", seed=1)
    before = _worker_processes()
    metrics = agent.meta_iteration()
    assert agent.num_timesteps <= 2 * 2 * 5 * 2
    assert np.isfinite(metrics["train/meta_loss"])
    curve = agent.meta_test(distribution.meta_split().test[:2])
    assert curve.shape == (2, 2)
    agent.close()
    assert _worker_processes() <= before


def test_rl2_trains_on_halfcheetah_dir():
    distribution = make_distribution("halfcheetah-dir", horizon=5)
    config = RL2Config(num_envs=2, num_steps=10, minibatch_size=20, hidden_size=16)
    agent = RL2(distribution, config, device="cpu", seed=0)
    try:
        agent.learn(40)
        returns = agent.meta_test(distribution.meta_split().test[:4])
    finally:
        agent.close()
    assert agent.observation_dim == 17 + 6 + 2  # cheetah obs, previous action, reward, flag
    assert returns.shape == (4, 2)
    assert np.isfinite(returns).all()


def test_maml_continuous_bad_inputs():
    with pytest.raises(ValueError, match="policy 'categorical' needs a Discrete action space"):
        MAMLPPO(make_distribution("navigation-2d"), MAMLConfig(policy="categorical"), device="cpu")
    with pytest.raises(ValueError, match="meta_batch_size 20 is larger than the 2 meta-train"):
        MAMLPPO(make_distribution("halfcheetah-dir"), MAMLConfig(), device="cpu")
    with pytest.raises(ValueError, match="horizon"):
        make_distribution("navigation-2d", horizon=0)
