"""PPO's clipped objective (Schulman et al., 2017) over stored recurrent sequences."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from agents.networks import OutcomePredictor, RecurrentActorCritic
from agents.rollout import Rollout


@dataclass(frozen=True)
class PPOSettings:
    """The knobs of one PPO update; see the agent configs for their meaning and defaults."""

    num_epochs: int
    minibatch_size: int
    sequence_length: int
    clip_coef: float
    ent_coef: float
    vf_coef: float
    max_grad_norm: float
    normalize_advantages: bool
    reward_prediction_coef: float = 0.0
    observation_prediction_coef: float = 0.0
    position_prediction_coef: float = 0.0


@dataclass
class SequenceBatch:
    """Rollout steps regrouped as sequences: time-major ``(sequence_length, num_sequences, ...)``."""

    obs: torch.Tensor
    following_obs: torch.Tensor  # (num_sequences, obs_dim): the observation after each sequence
    hidden_start: torch.Tensor  # (num_sequences, state_size): hidden_in at each sequence's first step
    trial_start: torch.Tensor
    trial_end: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    rewards: torch.Tensor
    displacements: torch.Tensor | None = None  # (sequence_length, num_sequences, k) or None

    @property
    def next_obs(self) -> torch.Tensor:
        """Return the observation that each step led to, ``(sequence_length, num_sequences, obs_dim)``."""
        return torch.cat([self.obs[1:], self.following_obs[None]])

    def select(self, index: torch.Tensor) -> SequenceBatch:
        return SequenceBatch(
            obs=self.obs[:, index],
            following_obs=self.following_obs[index],
            hidden_start=self.hidden_start[index],
            trial_start=self.trial_start[:, index],
            trial_end=self.trial_end[:, index],
            actions=self.actions[:, index],
            log_probs=self.log_probs[:, index],
            values=self.values[:, index],
            advantages=self.advantages[:, index],
            returns=self.returns[:, index],
            rewards=self.rewards[:, index],
            displacements=None if self.displacements is None else self.displacements[:, index],
        )


def split_sequences(rollout: Rollout, sequence_length: int) -> SequenceBatch:
    """Cut a ``(T, N)`` rollout into ``T // L * N`` sequences of length ``L``.

    Axis change: ``(T, N, ...)`` -> ``(T // L, L, N, ...)`` -> ``(L, T // L * N, ...)``, where
    sequence ``b * N + n`` is steps ``b*L .. b*L + L - 1`` of env ``n``.
    """
    t, n = rollout.num_steps, rollout.num_envs
    if t % sequence_length:
        raise ValueError(f"sequence_length {sequence_length} must divide num_steps {t}")
    blocks = t // sequence_length

    def regroup(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(blocks, sequence_length, n, *x.shape[2:])
        return x.transpose(0, 1).reshape(sequence_length, blocks * n, *x.shape[3:])

    hidden_start = rollout.hidden_in[::sequence_length].reshape(blocks * n, -1)
    # The observation after block b is block b + 1's first, or the rollout's last_obs.
    following_obs = torch.cat([rollout.obs[sequence_length::sequence_length], rollout.last_obs[None]])
    return SequenceBatch(
        obs=regroup(rollout.obs),
        following_obs=following_obs.reshape(blocks * n, -1),
        hidden_start=hidden_start,
        trial_start=regroup(rollout.trial_start),
        trial_end=regroup(rollout.done),
        actions=regroup(rollout.actions),
        log_probs=regroup(rollout.log_probs),
        values=regroup(rollout.values),
        advantages=regroup(rollout.advantages),
        returns=regroup(rollout.returns),
        rewards=regroup(rollout.rewards),
        displacements=None if rollout.displacements is None else regroup(rollout.displacements),
    )


def evaluate_sequences(
    policy: RecurrentActorCritic, batch: SequenceBatch, with_features: bool = False
) -> tuple[torch.Tensor, ...]:
    """Replay stored sequences from their stored initial states.

    The replay applies the stored ``trial_start`` resets through the same
    :func:`agents.recurrent.reset_recurrent_state` as the rollout, so before any update the
    log-probabilities and values equal the stored ones.

    Args:
        with_features: also return the features that ``policy.unroll_features`` returns: the
            actor's GRU output for RL², the heads' input for the memory policy.

    Returns:
        ``(log_probs, values, entropy)``, each ``(sequence_length, num_sequences)``, followed
        with ``with_features`` by the features ``(sequence_length, num_sequences, width)``.
    """
    unroll = policy.unroll_features if with_features else policy.unroll
    params, values, _, *features = unroll(batch.obs, batch.hidden_start, batch.trial_start)
    head = policy.head
    return head.log_prob(params, batch.actions), values, head.entropy(params), *features


def reward_prediction_loss(
    policy: RecurrentActorCritic, features: torch.Tensor, batch: SequenceBatch
) -> torch.Tensor:
    """Return the mean squared error of the policy's reward predictions on ``batch``.

    The targets are raw rewards, not scaled by reward_scale, so the loss's weight alone sets
    its scale against PPO's loss.
    """
    return (policy.predict_rewards(features, batch.actions) - batch.rewards).pow(2).mean()


def observation_prediction_loss(
    policy: RecurrentActorCritic, features: torch.Tensor, batch: SequenceBatch
) -> torch.Tensor:
    """Return the squared error of the policy's next-observation predictions on ``batch``.

    The target is the base observation the action led to, the first ``output_size`` entries
    of the next trial observation. The error is summed over those entries and averaged over
    steps, leaving out each trial's last step: it leads into another task's first
    observation, which the trial's history cannot predict.
    """
    predictor = OutcomePredictor.require(policy.observation_predictor, "observation")
    predicted = predictor(features, batch.actions)
    target = batch.next_obs[..., :predicted.shape[-1]]
    keep = (~batch.trial_end).to(predicted.dtype)
    error = (predicted - target).pow(2).sum(-1)
    return (error * keep).sum() / keep.sum().clamp(min=1.0)


def position_prediction_loss(
    policy: RecurrentActorCritic, features: torch.Tensor, batch: SequenceBatch
) -> torch.Tensor:
    """Return the squared error of the policy's predictions of where each step leaves it.

    The target is the env's displacement from the episode's start after the step, before any
    reset (:meth:`envs.batched.BatchedEnv.displacement`). The error is summed over its
    entries and averaged over steps. Unlike the next observation, which the current window
    mostly shows, the displacement can only come from the trial's history: the policy has to
    integrate its own moves.
    """
    predictor = OutcomePredictor.require(policy.position_predictor, "position")
    if batch.displacements is None:
        raise ValueError(
            "the rollout has no displacements to predict: its environment reports no positions. "
            "Set position_prediction_coef to 0 for this environment."
        )
    predicted = predictor(features, batch.actions)
    return (predicted - batch.displacements).pow(2).sum(-1).mean()


def ppo_loss(
    new_log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    settings: PPOSettings,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return the PPO loss and its parts (detached), all inputs of one shape."""
    log_ratio = new_log_probs - old_log_probs
    ratio = log_ratio.exp()
    if settings.normalize_advantages and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    clipped = ratio.clamp(1 - settings.clip_coef, 1 + settings.clip_coef)
    policy_loss = -torch.min(ratio * advantages, clipped * advantages).mean()
    value_loss = 0.5 * (new_values - returns).pow(2).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss + settings.vf_coef * value_loss - settings.ent_coef * entropy_mean
    with torch.no_grad():
        stats = {
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "entropy": entropy_mean.detach(),
            # Unbiased KL estimator k3 (Schulman, "Approximating KL divergence", 2020).
            "approx_kl": ((ratio - 1) - log_ratio).mean(),
            "clip_fraction": ((ratio - 1).abs() > settings.clip_coef).float().mean(),
        }
    return loss, stats


def ppo_update(
    policy: RecurrentActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    settings: PPOSettings,
    generator: torch.Generator | None,
) -> dict[str, torch.Tensor]:
    """Run ``num_epochs`` passes of minibatch PPO over whole stored sequences.

    Returns:
        Mean of each loss statistic over all minibatches, plus ``explained_variance`` of the
        rollout's values; scalar tensors left on the device.
    """
    batch = split_sequences(rollout, settings.sequence_length)
    num_sequences = batch.obs.shape[1]
    per_minibatch = settings.minibatch_size // settings.sequence_length
    totals: dict[str, torch.Tensor] = {}
    count = 0
    predict_rewards = settings.reward_prediction_coef > 0
    predict_observations = settings.observation_prediction_coef > 0
    predict_positions = settings.position_prediction_coef > 0
    with_features = predict_rewards or predict_observations or predict_positions
    for _ in range(settings.num_epochs):
        order = torch.randperm(num_sequences, device=batch.obs.device, generator=generator)
        for start in range(0, num_sequences, per_minibatch):
            minibatch = batch.select(order[start:start + per_minibatch])
            new_log_probs, new_values, entropy, *features = evaluate_sequences(
                policy, minibatch, with_features=with_features)
            loss, stats = ppo_loss(
                new_log_probs, minibatch.log_probs, minibatch.advantages, new_values,
                minibatch.returns, entropy, settings,
            )
            if predict_rewards:
                reward_loss = reward_prediction_loss(policy, features[0], minibatch)
                loss = loss + settings.reward_prediction_coef * reward_loss
                stats["reward_prediction_loss"] = reward_loss.detach()
            if predict_observations:
                observation_loss = observation_prediction_loss(policy, features[0], minibatch)
                loss = loss + settings.observation_prediction_coef * observation_loss
                stats["observation_prediction_loss"] = observation_loss.detach()
            if predict_positions:
                position_loss = position_prediction_loss(policy, features[0], minibatch)
                loss = loss + settings.position_prediction_coef * position_loss
                stats["position_prediction_loss"] = position_loss.detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), settings.max_grad_norm)
            optimizer.step()
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
            count += 1
    result = {key: value / count for key, value in totals.items()}
    result["explained_variance"] = explained_variance(rollout.values, rollout.returns)
    return result


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return 1 - Var[target - predicted] / Var[target]; NaN when the target is constant."""
    variance = target.var()
    return 1 - (target - predicted).var() / variance
