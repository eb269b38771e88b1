"""Non-learned reference policies for random tabular MDPs (:mod:`envs.tabular`).

A trial is ``episodes_per_trial`` episodes of ``horizon`` steps on one MDP, each from state 0,
with rewards ``R[s, a] + noise_std * Normal(0, 1)`` and next states drawn by the same
inverse-CDF rule as the environments. Every reference runs on many tasks at once: each step
is one vectorized numpy step over all tasks.

References (names in :data:`TABULAR_REFERENCE_NAMES`):

- ``oracle``: is given P and R, solves the finite-horizon MDP by value iteration and acts
  greedily on its Q-values. Its expected trial return is exact and is reported too.
- ``random``: uniformly random actions. Its expected trial return, from policy evaluation on
  the true MDP, is reported too.
- ``psrl``: posterior sampling for reinforcement learning (Osband, Russo and Van Roy, 2013,
  "(More) Efficient Reinforcement Learning via Posterior Sampling"). At each episode start it
  draws an MDP from the posterior, solves it by value iteration and acts greedily on it for
  the whole episode. The posterior of each row P[s, a, :] is Dirichlet(1 + transition counts).
  The posterior of each mean reward is the Normal one under the prior
  Normal(reward_mean, reward_std²) with the noise variance noise_std² known. Observations
  accumulate over the episodes of a trial and start from the prior on each task.
- ``posterior-mean``: certainty equivalence. After every step it solves, by value iteration,
  the MDP whose transitions and mean rewards are the posterior means (same priors as
  ``psrl``) and acts greedily on it. It explores only as far as the prior's mean makes an
  untried action look as good as a tried one. Yet on this family it earns more than PSRL,
  which spends whole episodes acting on unlikely samples. A learned agent that reaches it
  has learned to exploit what the trial has shown.

Greedy actions take the lowest index among tied Q-values. Ties have probability zero under
the continuous priors of this family, so no random tie-break is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agents.references.base import ReferenceResult, register_references
from envs.tabular import TabularMDPDistribution, next_states
from envs.tasks import Task

TABULAR_REFERENCE_NAMES = ("oracle", "random", "psrl", "posterior-mean")


def value_iteration(
    transitions: np.ndarray, mean_rewards: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Solve finite-horizon MDPs by backward induction, for one MDP or a batch.

    Args:
        transitions: ``P[..., s, a, s']``, shape ``(..., S, A, S)``.
        mean_rewards: ``R[..., s, a]``, shape ``(..., S, A)``.
        horizon: steps per episode, at least 1.

    Returns:
        ``(Q, V)`` in float64. ``Q[..., t, s, a]``, shape ``(..., horizon, S, A)``, is the
        expected sum of the remaining rewards after ``t`` steps when the next action is ``a``
        in state ``s`` and later actions are optimal. ``V[..., t, s] = max_a Q[..., t, s, a]``
        has shape ``(..., horizon + 1, S)``, and ``V[..., horizon, :]`` is 0.
    """
    transitions = np.asarray(transitions, dtype=np.float64)
    mean_rewards = np.asarray(mean_rewards, dtype=np.float64)
    if transitions.ndim < 3 or transitions.shape[-1] != transitions.shape[-3]:
        raise ValueError(f"transitions must have shape (..., S, A, S), got {transitions.shape}")
    if mean_rewards.shape != transitions.shape[:-1]:
        raise ValueError(
            f"mean_rewards must have shape (..., S, A) = {transitions.shape[:-1]}, "
            f"got {mean_rewards.shape}"
        )
    if int(horizon) < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    horizon = int(horizon)
    batch_shape, (num_states, num_actions) = mean_rewards.shape[:-2], mean_rewards.shape[-2:]
    q_values = np.empty(batch_shape + (horizon, num_states, num_actions))
    values = np.zeros(batch_shape + (horizon + 1, num_states))
    for step in range(horizon - 1, -1, -1):
        next_values = values[..., step + 1, :]
        q_values[..., step, :, :] = mean_rewards + np.einsum(
            "...sat,...t->...sa", transitions, next_values
        )
        values[..., step, :] = q_values[..., step, :, :].max(axis=-1)
    return q_values, values


@register_references(TabularMDPDistribution)
def tabular_references(
    distribution: TabularMDPDistribution, tasks: Sequence[Task], seed: int
) -> dict[str, ReferenceResult]:
    """Run every tabular reference for one trial on each task.

    Each reference draws from its own stream spawned from ``seed``, so equal seeds give equal
    results and adding a reference does not change the others.

    Returns:
        For each name in :data:`TABULAR_REFERENCE_NAMES`, a :class:`ReferenceResult` whose
        returns have shape ``(num_tasks, episodes_per_trial)``. ``oracle`` and ``random`` also
        carry their expected trial return, averaged over the tasks, in ``exact_value``.
    """
    num_states, num_actions = distribution.num_states, distribution.num_actions
    params = distribution.task_params(tasks).astype(np.float64)
    num_transition_params = num_states * num_actions * num_states
    transitions = params[:, :num_transition_params].reshape(-1, num_states, num_actions, num_states)
    mean_rewards = params[:, num_transition_params:].reshape(-1, num_states, num_actions)
    simulator = _TrialSimulator(
        transitions, mean_rewards, distribution.horizon, distribution.episodes_per_trial,
        distribution.noise_std,
    )
    rngs = dict(
        zip(
            TABULAR_REFERENCE_NAMES,
            (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)),
            strict=True,
        )
    )
    episodes = distribution.episodes_per_trial

    oracle_q, oracle_values = value_iteration(transitions, mean_rewards, distribution.horizon)
    oracle = simulator.run(lambda statistics, rng: oracle_q, rngs["oracle"])
    oracle_value = float(oracle_values[:, 0, 0].mean()) * episodes

    random = simulator.run(None, rngs["random"])
    random_value = float(_uniform_policy_values(transitions, mean_rewards, distribution.horizon)
                         [:, 0].mean()) * episodes

    def sample_posterior_q(statistics: _Statistics, rng: np.random.Generator) -> np.ndarray:
        sampled_transitions, sampled_rewards = statistics.sample_posterior(
            rng, distribution.reward_mean, distribution.reward_std, distribution.noise_std
        )
        return value_iteration(sampled_transitions, sampled_rewards, distribution.horizon)[0]

    psrl = simulator.run(sample_posterior_q, rngs["psrl"])

    def posterior_mean_q(statistics: _Statistics, rng: np.random.Generator) -> np.ndarray:
        mean_transitions, mean_rewards = statistics.posterior_mean(
            distribution.reward_mean, distribution.reward_std, distribution.noise_std
        )
        return value_iteration(mean_transitions, mean_rewards, distribution.horizon)[0]

    posterior_mean = simulator.run(posterior_mean_q, rngs["posterior-mean"], replan_every_step=True)
    return {
        "oracle": ReferenceResult(oracle, exact_value=oracle_value),
        "random": ReferenceResult(random, exact_value=random_value),
        "psrl": ReferenceResult(psrl),
        "posterior-mean": ReferenceResult(posterior_mean),
    }


class _Statistics:
    """Transition counts and reward sums that a trial has observed so far on each task."""

    def __init__(self, num_tasks: int, num_states: int, num_actions: int):
        self.transition_counts = np.zeros((num_tasks, num_states, num_actions, num_states))
        self.visits = np.zeros((num_tasks, num_states, num_actions))
        self.reward_sums = np.zeros((num_tasks, num_states, num_actions))

    def record(self, states, actions, rewards, following_states) -> None:
        tasks = np.arange(states.shape[0])
        self.transition_counts[tasks, states, actions, following_states] += 1.0
        self.visits[tasks, states, actions] += 1.0
        self.reward_sums[tasks, states, actions] += rewards

    def sample_posterior(
        self, rng: np.random.Generator, reward_mean: float, reward_std: float, noise_std: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw one MDP per task from the posterior; return its ``(P, R)``."""
        # Normalized Gamma(alpha_i, 1) draws are a Dirichlet(alpha) draw, one row per (s, a).
        gammas = rng.standard_gamma(1.0 + self.transition_counts)
        transitions = gammas / gammas.sum(axis=-1, keepdims=True)
        mean, precision = self._reward_posterior(reward_mean, reward_std, noise_std)
        mean_rewards = mean + rng.standard_normal(mean.shape) / np.sqrt(precision)
        return transitions, mean_rewards

    def posterior_mean(
        self, reward_mean: float, reward_std: float, noise_std: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the posterior mean MDP of each task, ``(P, R)``."""
        counts = 1.0 + self.transition_counts
        transitions = counts / counts.sum(axis=-1, keepdims=True)
        return transitions, self._reward_posterior(reward_mean, reward_std, noise_std)[0]

    def _reward_posterior(
        self, reward_mean: float, reward_std: float, noise_std: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the Normal posterior's mean and precision of every mean reward, ``(N, S, A)``."""
        prior_precision = 1.0 / reward_std**2
        noise_precision = 1.0 / noise_std**2
        precision = prior_precision + noise_precision * self.visits
        mean = (prior_precision * reward_mean + noise_precision * self.reward_sums) / precision
        return mean, precision


class _TrialSimulator:
    """Simulator of one trial per task for a policy that acts greedily on Q-values it chooses."""

    def __init__(self, transitions, mean_rewards, horizon, episodes_per_trial, noise_std):
        self.mean_rewards = mean_rewards
        # Same float32 cumulative sums as the environments, so the same u gives the same state.
        self.cumulative = np.cumsum(transitions.astype(np.float32), axis=-1, dtype=np.float32)
        self.horizon = int(horizon)
        self.episodes_per_trial = int(episodes_per_trial)
        self.noise_std = float(noise_std)

    def run(self, choose_q, rng: np.random.Generator, replan_every_step: bool = False) -> np.ndarray:
        """Return the return of every episode, ``(num_tasks, episodes_per_trial)``.

        Args:
            choose_q: called as ``choose_q(statistics, rng)`` at each episode start; returns
                Q-values ``(num_tasks, horizon, S, A)`` to act greedily on. None acts uniformly
                at random.
            rng: the generator for actions, rewards, transitions and posterior samples.
            replan_every_step: call ``choose_q`` before every step instead, with the
                statistics of all earlier steps. The step's action reads the new Q-values at
                the step's index in the episode.
        """
        num_tasks, num_states, num_actions = self.mean_rewards.shape
        tasks = np.arange(num_tasks)
        statistics = _Statistics(num_tasks, num_states, num_actions)
        returns = np.zeros((num_tasks, self.episodes_per_trial))
        for episode in range(self.episodes_per_trial):
            q_values = None if choose_q is None else choose_q(statistics, rng)
            states = np.zeros(num_tasks, dtype=np.int64)
            for step in range(self.horizon):
                if replan_every_step and step > 0:
                    q_values = choose_q(statistics, rng)
                if q_values is None:
                    actions = rng.integers(num_actions, size=num_tasks)
                else:
                    actions = q_values[tasks, step, states].argmax(axis=-1)
                uniform = rng.random(num_tasks)
                normal = rng.standard_normal(num_tasks)
                rewards = self.mean_rewards[tasks, states, actions] + self.noise_std * normal
                following = next_states(self.cumulative[tasks, states, actions], uniform)
                statistics.record(states, actions, rewards, following)
                returns[:, episode] += rewards
                states = following
        return returns


def _uniform_policy_values(transitions, mean_rewards, horizon) -> np.ndarray:
    """Return the expected return of uniformly random actions from each state, ``(..., S)``."""
    values = np.zeros(mean_rewards.shape[:-1])
    for _ in range(int(horizon)):
        q_values = mean_rewards + np.einsum("...sat,...t->...sa", transitions, values)
        values = q_values.mean(axis=-1)
    return values
