"""RL² (Duan et al., 2016): a GRU policy trained with PPO over whole trials."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym

from agents.networks import RecurrentActorCritic
from agents.trial_agent import TrialAgent, TrialPPOConfig

SAVE_FORMAT = "adaptrl.rl2.v1"


@dataclass
class RL2Config(TrialPPOConfig):
    """Hyperparameters of RL² with PPO over trials.

    The defaults were tuned on ``bandit-k5-n10`` (trials of 10 steps); longer trials want
    ``num_steps`` of at least one trial and usually a wider GRU.
    """

    separate_critic: bool = False
    """Give the value function its own encoder and GRU instead of sharing the policy's, so
    that the value loss does not shape the state the policy reads (doubles the state)."""


class RL2(TrialAgent):
    """RL² agent: a GRU policy whose state persists across the episodes of a trial.

    The GRU state is cleared only at trial starts, so within a trial the policy can learn
    from earlier episodes on the same task.

    Args:
        distribution: task distribution; training draws trials from its meta-train split.
        config: hyperparameters.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a torch device.
        seed: the run's seed, split into independent streams (:class:`agents.SeedStreams`).

    Example:
        >>> from envs import make_distribution
        >>> agent = RL2(make_distribution("bandit-k5-n10"), RL2Config(num_envs=8, minibatch_size=40))
        >>> agent = agent.learn(total_timesteps=320)
        >>> agent.num_timesteps
        320
    """

    save_format = SAVE_FORMAT
    config_class = RL2Config
    display_name = "RL²"

    def build_policy(self, observation_dim: int, action_space: gym.Space) -> RecurrentActorCritic:
        return RecurrentActorCritic(observation_dim, action_space, self.config.hidden_size,
                                    separate_critic=self.config.separate_critic,
                                    reward_prediction=self.config.reward_prediction_coef > 0,
                                    observation_prediction_size=self.observation_prediction_size(),
                                    position_prediction_size=self.position_prediction_size())
