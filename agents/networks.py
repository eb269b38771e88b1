"""Recurrent actor-critic network and its action heads, shared by the recurrent agents."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.recurrent import reset_recurrent_state


def orthogonal_linear(layer: nn.Linear, gain: float) -> nn.Linear:
    """Initialize ``layer`` with orthogonal weights of scale ``gain`` and zero bias."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class CategoricalHead(nn.Module):
    """Categorical policy over ``num_actions`` discrete actions."""

    def __init__(self, hidden_size: int, num_actions: int):
        super().__init__()
        # A small gain keeps the initial policy close to uniform (Andrychowicz et al., 2021).
        self.logits = orthogonal_linear(nn.Linear(hidden_size, num_actions), 0.01)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.logits(features), dim=-1)

    def sample(self, log_probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(-1)

    def mode(self, log_probs: torch.Tensor) -> torch.Tensor:
        return log_probs.argmax(dim=-1)

    def log_prob(self, log_probs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, log_probs: torch.Tensor) -> torch.Tensor:
        return -(log_probs.exp() * log_probs).sum(-1)


class GaussianHead(nn.Module):
    """Diagonal Gaussian policy with a state-independent log standard deviation."""

    def __init__(self, hidden_size: int, action_dim: int, log_std_init: float = 0.0):
        super().__init__()
        self.mean = orthogonal_linear(nn.Linear(hidden_size, action_dim), 0.01)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # (batch, 2 * action_dim): means, then log standard deviations.
        mean = self.mean(features)
        return torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        mean, log_std = params.chunk(2, dim=-1)
        noise = torch.randn(mean.shape, device=mean.device, generator=generator)
        return mean + log_std.exp() * noise

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return params.chunk(2, dim=-1)[0]

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = params.chunk(2, dim=-1)
        z = (actions - mean) / log_std.exp()
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        log_std = params.chunk(2, dim=-1)[1]
        return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)


class OutcomePredictor(nn.Sequential):
    """A two-layer network that predicts what follows an action: its reward or next observation.

    It reads a recurrent policy's features and the action taken, one-hot for a Discrete
    space and as it is for a Box space. Its squared error is an auxiliary loss of the PPO
    update (:mod:`agents.ppo`); the policy never reads its predictions.

    Args:
        feature_size: width of the features it reads.
        action_space: Discrete or 1-D Box.
        hidden_size: width of its hidden layer.
        output_size: width of what it predicts.
    """

    def __init__(self, feature_size: int, action_space: gym.Space, hidden_size: int,
                 output_size: int):
        discrete = isinstance(action_space, gym.spaces.Discrete)
        action_input_size = int(action_space.n) if discrete else int(action_space.shape[0])
        super().__init__(
            nn.Linear(feature_size + action_input_size, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, output_size),
        )
        self.discrete_actions = discrete
        self.action_input_size = action_input_size

    def forward(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Return predictions ``(..., output_size)`` for features ``(..., feature_size)``."""
        if self.discrete_actions:
            actions = F.one_hot(actions.long(), self.action_input_size).to(features.dtype)
        return super().forward(torch.cat([features, actions], dim=-1))

    @staticmethod
    def require(predictor: OutcomePredictor | None, target: str) -> OutcomePredictor:
        """Return ``predictor``, or raise ValueError when the network was built without one.

        Args:
            target: ``"reward"``, ``"observation"`` or ``"position"``, what it predicts.
        """
        if predictor is None:
            raise ValueError(
                f"this network has no {target} predictor; the agents build it when "
                f"{target}_prediction_coef is positive"
            )
        return predictor


class RewardPredictor(OutcomePredictor):
    """An :class:`OutcomePredictor` of the reward that follows an action, one float per step."""

    def __init__(self, feature_size: int, action_space: gym.Space, hidden_size: int):
        super().__init__(feature_size, action_space, hidden_size, 1)

    def forward(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Return the predicted rewards, ``(...)``, for features ``(..., feature_size)``."""
        return super().forward(features, actions).squeeze(-1)


def make_policy_head(action_space: gym.Space, input_size: int) -> CategoricalHead | GaussianHead:
    """Build the categorical head for a Discrete space or the Gaussian head for a 1-D Box."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(input_size, int(action_space.n))
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianHead(input_size, int(action_space.shape[0]))
    raise TypeError(
        f"the recurrent policies support Discrete and 1-D Box action spaces, got {action_space}"
    )


class RecurrentActorCritic(nn.Module):
    """Observation encoder, GRU, and policy and value heads on the GRU's output.

    With ``separate_critic`` the value head gets its own encoder and GRU, so the value loss
    does not shape the state the policy reads. The recurrent state is then the actor's GRU
    state followed by the critic's.

    With ``reward_prediction`` a small network reads the actor's GRU output and the action
    taken and predicts the reward that follows (:meth:`predict_rewards`). Its loss is an
    auxiliary objective of the PPO update and trains the GRU to keep what the trial has
    shown about rewards. The policy never reads the prediction. With
    ``observation_prediction_size`` another one predicts the next observation from the same
    inputs (:func:`agents.ppo.observation_prediction_loss`), and with
    ``position_prediction_size`` a third predicts where the step leaves the agent
    (:func:`agents.ppo.position_prediction_loss`).

    Args:
        observation_dim: width of the trial observation.
        action_space: Discrete (categorical head) or 1-D Box (Gaussian head).
        hidden_size: width of the encoder and of the GRU state.
        separate_critic: give the value head its own encoder and GRU.
        reward_prediction: add the reward predictor.
        observation_prediction_size: width of the next observation that the observation
            predictor predicts, the base observation's width; 0 leaves it out.
        position_prediction_size: width of the env's displacement that the position
            predictor predicts; 0 leaves it out.
    """

    def __init__(
        self,
        observation_dim: int,
        action_space: gym.Space,
        hidden_size: int = 128,
        separate_critic: bool = False,
        reward_prediction: bool = False,
        observation_prediction_size: int = 0,
        position_prediction_size: int = 0,
    ):
        super().__init__()
        self.head = make_policy_head(action_space, hidden_size)
        self.observation_dim = int(observation_dim)
        self.hidden_size = int(hidden_size)
        self.separate_critic = bool(separate_critic)
        # Width of the flat recurrent state that rollouts store and the reset clears.
        self.state_size = self.hidden_size * (2 if self.separate_critic else 1)
        self.encoder = make_encoder(observation_dim, hidden_size)
        # nn.GRU rather than nn.GRUCell: the replay runs whole segments through its fused
        # kernel, and one step of it gives the same numbers as one step of the cell.
        self.gru = nn.GRU(hidden_size, hidden_size)
        if self.separate_critic:
            self.critic_encoder = make_encoder(observation_dim, hidden_size)
            self.critic_gru = nn.GRU(hidden_size, hidden_size)
        self.critic = orthogonal_linear(nn.Linear(hidden_size, 1), 1.0)
        # The predictors are built last, so that a network without them draws the same
        # initial weights.
        self.reward_predictor = (RewardPredictor(hidden_size, action_space, hidden_size)
                                 if reward_prediction else None)
        self.observation_predictor = (
            OutcomePredictor(hidden_size, action_space, hidden_size, observation_prediction_size)
            if observation_prediction_size else None
        )
        self.position_predictor = (
            OutcomePredictor(hidden_size, action_space, hidden_size, position_prediction_size)
            if position_prediction_size else None
        )

    def initial_state(self, batch_size: int, device=None) -> torch.Tensor:
        """Return the zero state, shape ``(batch_size, state_size)``."""
        return torch.zeros(batch_size, self.state_size, device=device)

    def _trunks(self) -> list[tuple[nn.Module, nn.GRU]]:
        """Return the (encoder, GRU) pairs: the actor's, then the critic's when it has one."""
        trunks = [(self.encoder, self.gru)]
        if self.separate_critic:
            trunks.append((self.critic_encoder, self.critic_gru))
        return trunks

    def step(
        self, obs: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance one step from an already reset state.

        Args:
            obs: ``(batch, observation_dim)``.
            state: ``(batch, state_size)``, after :func:`agents.recurrent.reset_recurrent_state`.

        Returns:
            ``(policy_params, value, next_state)``: head parameters ``(batch, ...)``,
            value ``(batch,)`` and the next state ``(batch, state_size)``.
        """
        check_observation_width(obs, self.observation_dim)
        trunks = self._trunks()
        outputs, next_states = [], []
        for (encoder, gru), part in zip(trunks, state.chunk(len(trunks), dim=-1)):
            output, next_part = gru(encoder(obs)[None], part.contiguous()[None])
            outputs.append(output[0])
            next_states.append(next_part[0])
        next_state = next_states[0] if len(trunks) == 1 else torch.cat(next_states, dim=-1)
        return self.head(outputs[0]), self.critic(outputs[-1]).squeeze(-1), next_state

    def unroll(
        self, obs: torch.Tensor, state: torch.Tensor, trial_start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run stored sequences, resetting the state where ``trial_start`` is set.

        The same as :meth:`unroll_features` without the GRU output.
        """
        return self.unroll_features(obs, state, trial_start)[:3]

    def predict_rewards(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Predict the reward that follows each action from the actor's GRU output.

        Args:
            features: the actor's GRU output, ``(..., hidden_size)``, from :meth:`unroll_features`.
            actions: the actions taken, ``(...)`` for Discrete or ``(..., action_dim)`` for Box.

        Returns:
            The predicted rewards, ``(...)``.
        """
        return OutcomePredictor.require(self.reward_predictor, "reward")(features, actions)

    def unroll_features(
        self, obs: torch.Tensor, state: torch.Tensor, trial_start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run stored sequences, resetting the state where ``trial_start`` is set.

        Equivalent to calling :func:`reset_recurrent_state` and :meth:`step` at every step,
        but each GRU runs each segment between trial starts as one fused call. Finding the
        segments reads the mask back to the host once per call.

        Args:
            obs: ``(seq_len, batch, observation_dim)``.
            state: ``(batch, state_size)``, the state before the first step's reset.
            trial_start: ``(seq_len, batch)`` bool.

        Returns:
            ``(policy_params, values, final_state, actor_output)``: ``(seq_len, batch, ...)``,
            ``(seq_len, batch)``, ``(batch, state_size)`` and the actor's GRU output
            ``(seq_len, batch, hidden_size)``.
        """
        seq_len = obs.shape[0]
        trunks = self._trunks()
        features = [encoder(obs) for encoder, _ in trunks]
        reset_steps = (trial_start[1:].any(dim=1).nonzero().flatten() + 1).tolist()
        bounds = [0, *reset_steps, seq_len]
        outputs: list[list[torch.Tensor]] = [[] for _ in trunks]
        for start, stop in zip(bounds[:-1], bounds[1:]):
            state = reset_recurrent_state(state, trial_start[start])
            finals = []
            for index, ((_, gru), part) in enumerate(zip(trunks, state.chunk(len(trunks), dim=-1))):
                output, final = gru(features[index][start:stop], part.contiguous()[None])
                outputs[index].append(output)
                finals.append(final[0])
            state = finals[0] if len(trunks) == 1 else torch.cat(finals, dim=-1)
        actor_output = torch.cat(outputs[0])
        critic_output = torch.cat(outputs[-1])
        return self.head(actor_output), self.critic(critic_output).squeeze(-1), state, actor_output


def make_encoder(observation_dim: int, hidden_size: int) -> nn.Sequential:
    """Build the observation encoder the recurrent policies share: a linear layer and tanh."""
    return nn.Sequential(
        orthogonal_linear(nn.Linear(observation_dim, hidden_size), math.sqrt(2)), nn.Tanh()
    )


def check_observation_width(obs: torch.Tensor, observation_dim: int) -> None:
    """Raise ValueError when the last axis of ``obs`` is not ``observation_dim`` wide."""
    if obs.shape[-1] != observation_dim:
        raise ValueError(
            f"expected observations of width {observation_dim}, got shape {tuple(obs.shape)}"
        )


def clip_action(action_space: gym.Space, actions: np.ndarray) -> np.ndarray:
    """Clip Gaussian samples into a Box action space; Discrete actions pass through."""
    if isinstance(action_space, gym.spaces.Box):
        return np.clip(actions, action_space.low, action_space.high)
    return actions


def clip_action_tensor(action_space: gym.Space, actions: torch.Tensor) -> torch.Tensor:
    """Clip Gaussian samples into a Box action space on the device; Discrete passes through.

    Rollouts store the unclipped sample, so that its log-probability is that of the
    distribution that drew it; only the environment receives the clipped action.
    """
    if not isinstance(action_space, gym.spaces.Box):
        return actions
    low = torch.as_tensor(np.asarray(action_space.low), dtype=actions.dtype, device=actions.device)
    high = torch.as_tensor(np.asarray(action_space.high), dtype=actions.dtype, device=actions.device)
    return torch.maximum(torch.minimum(actions, high), low)
