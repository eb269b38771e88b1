"""Non-learned reference policies for k-armed bandits with arm means ~ Uniform(0, 1).

A trial is ``num_pulls`` pulls on one task. Bernoulli rewards are Bernoulli(mean) and Gaussian
rewards are Normal(mean, reward_std²), as in :mod:`envs.bandits`. Every reference runs on
many tasks at once: the state of a batch is the per-arm pull counts and reward sums, of
shape ``(num_tasks, num_arms)``, and each pull is one vectorized step over all tasks.

References (names in :data:`REFERENCE_NAMES`):

- ``random``: a uniformly random arm.
- ``ucb1``: UCB1 (Auer, Cesa-Bianchi and Fischer, 2002, "Finite-time Analysis of the
  Multiarmed Bandit Problem").
- ``thompson``: Thompson sampling with the prior matched to Uniform(0, 1) arm means.
- ``gittins``: the Gittins index policy for Bernoulli rewards, Beta(1, 1) priors and a
  discount factor.
- ``bayes-optimal``: the policy that maximizes expected total reward over the trial under
  independent Beta(1, 1) priors, found by dynamic programming. It needs Bernoulli rewards
  and a small enough state space.

Ties between arms are broken uniformly at random with the caller's ``rng``. Thompson sampling
takes the plain argmax, because its continuous samples tie with probability 0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from agents.references.base import ReferenceResult, register_references
from envs.bandits import REWARD_KINDS, BanditDistribution
from envs.tasks import Task

REFERENCE_NAMES = ("random", "ucb1", "thompson", "gittins", "bayes-optimal")

# Scores within this distance of the maximum are ties. The Q-values of equivalent arms can
# differ by rounding because the DP sums them in different orders.
_TIE_TOLERANCE = 1e-9

# Thompson sampling's Normal prior for Gaussian rewards has the mean and variance of
# Uniform(0, 1).
_PRIOR_MEAN = 0.5
_PRIOR_VARIANCE = 1.0 / 12.0

# The Bayes-optimal DP stores one int32 pair code and one float64 Q-value per arm and state,
# 12 bytes per Q-value, so this limit keeps its tables near 60 MB. k=5, n=20 (1.2 million
# Q-values) and k=2, n=100 (4.4 million, solved in 4.6 s on a 2-core AMD EPYC VM) fit, but
# k=10, n=20 (7.6 million) does not.
_MAX_BAYES_OPTIMAL_Q_VALUES = 5_000_000

# Gittins calibration: the retirement-rate grid size, and the lattice depth beyond the largest
# pull count, in effective horizons 1 / (1 - discount). For n=10 and n=100 at the default
# discount, the indices differ by at most 3e-6 from those with 4x the lookahead, and the
# tests compare some with published 4-decimal values.
_GITTINS_GRID_SIZE = 2001
_GITTINS_LOOKAHEAD_HORIZONS = 4
# Upper bound on lattice states × grid points, the number of float64 updates per table. At
# the default discount n=100 needs 0.25e9 (0.9 s on a 2-core AMD EPYC VM) and n=300 needs
# 2.25e9 (13 s). n > 316 is rejected.
_MAX_GITTINS_UPDATES = 2.5e9


class ReferenceUnavailable(ValueError):
    """Error for a reference that does not apply to a bandit setting, with the reason."""


# A policy maps (pulls, reward_sums, step, rng) to one arm per task. pulls and reward_sums
# have shape (num_tasks, num_arms), and step is the number of pulls made so far in the trial.
_Policy = Callable[[np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray]


# ---------------------------------------------------------------------------------------------
# Public API


def simulate_reference(
    name: str,
    arm_means: np.ndarray,
    num_pulls: int,
    rng: np.random.Generator,
    reward: str = "bernoulli",
    reward_std: float = 1.0,
    discount: float | None = None,
) -> np.ndarray:
    """Run a reference policy for one trial on each task and return its rewards.

    Tie-breaks, posterior samples and rewards are all drawn from ``rng``, so the same
    generator state gives the same output.

    Args:
        name: one of :data:`REFERENCE_NAMES`.
        arm_means: arm means of shape ``(num_tasks, num_arms)``. Bernoulli means must lie in
            [0, 1].
        num_pulls: n, pulls per trial.
        rng: the generator for actions and rewards.
        reward: ``"bernoulli"`` or ``"gaussian"``.
        reward_std: standard deviation of Gaussian rewards. Bernoulli rewards ignore it.
        discount: the Gittins index discount factor in [0, 1). ``None`` means
            ``1 - 1 / num_pulls``. Other references ignore it.

    Returns:
        Rewards of shape ``(num_tasks, num_pulls)``, dtype float64, in pull order.

    Raises:
        ValueError: for an unknown name or invalid arguments.
        ReferenceUnavailable: when the reference does not apply to this setting, such as
            ``gittins`` with Gaussian rewards.
        TypeError: when ``rng`` is not a ``numpy.random.Generator``.
    """
    _check_name(name)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    arm_means = _check_arm_means(arm_means, reward)
    num_arms = arm_means.shape[1]
    _check_setting(num_arms, num_pulls, reward)
    if reward == "gaussian" and not reward_std > 0:
        raise ValueError(f"reward_std must be positive for Gaussian rewards, got {reward_std}")

    policy = _make_policy(name, num_arms, int(num_pulls), reward, float(reward_std), discount)
    return _run_trials(policy, arm_means, int(num_pulls), rng, reward, float(reward_std))


def supported_references(num_arms: int, num_pulls: int, reward: str) -> tuple[str, ...]:
    """Return the names in :data:`REFERENCE_NAMES` that apply to a bandit setting.

    ``gittins`` is checked at its default discount ``1 - 1 / num_pulls``.

    Args:
        num_arms: k.
        num_pulls: n, pulls per trial.
        reward: ``"bernoulli"`` or ``"gaussian"``.

    Returns:
        The applicable names, in the order of :data:`REFERENCE_NAMES`.
    """
    _check_setting(num_arms, num_pulls, reward)
    supported = []
    for name in REFERENCE_NAMES:
        try:
            _check_available(name, int(num_arms), int(num_pulls), reward, discount=None)
        except ReferenceUnavailable:
            continue
        supported.append(name)
    return tuple(supported)


def bayes_optimal_value(num_arms: int, num_pulls: int) -> float:
    """Compute the expected total reward of the Bayes-optimal policy for Bernoulli bandits.

    The priors are independent Beta(1, 1) = Uniform(0, 1) on the arm means, and the value is
    exact up to float64 rounding. The DP state is the multiset of per-arm (successes,
    failures) pairs, because permuting arms changes nothing. For k=5, n=10 that leaves 1,951
    states with decisions to make.

    Args:
        num_arms: k.
        num_pulls: n, pulls per trial.

    Returns:
        The expected sum of the n rewards.

    Raises:
        ReferenceUnavailable: when the DP would need more than 5,000,000 Q-values
            (states × num_arms). The message gives the state count.
    """
    _check_setting(num_arms, num_pulls, "bernoulli")
    _check_bayes_optimal_size(int(num_arms), int(num_pulls))
    return _solve_bayes_optimal(int(num_arms), int(num_pulls)).value


# ---------------------------------------------------------------------------------------------
# Argument checks


def _check_name(name: str) -> None:
    if name not in REFERENCE_NAMES:
        raise ValueError(f"unknown reference {name!r}; expected one of {REFERENCE_NAMES}")


def _check_setting(num_arms: int, num_pulls: int, reward: str) -> None:
    if reward not in REWARD_KINDS:
        raise ValueError(f"unknown bandit reward {reward!r}; expected one of {REWARD_KINDS}")
    if int(num_arms) != num_arms or num_arms < 1:
        raise ValueError(f"num_arms must be a positive integer, got {num_arms!r}")
    if int(num_pulls) != num_pulls or num_pulls < 1:
        raise ValueError(f"num_pulls must be a positive integer, got {num_pulls!r}")


def _check_arm_means(arm_means: np.ndarray, reward: str) -> np.ndarray:
    arm_means = np.asarray(arm_means, dtype=np.float64)
    if arm_means.ndim != 2 or arm_means.shape[1] < 1:
        raise ValueError(
            f"arm_means must have shape (num_tasks, num_arms) with num_arms >= 1, "
            f"got shape {arm_means.shape}"
        )
    if not np.all(np.isfinite(arm_means)):
        raise ValueError("arm_means contains NaN or infinite values")
    if reward == "bernoulli" and (arm_means.min(initial=0.0) < 0 or arm_means.max(initial=0.0) > 1):
        raise ValueError(
            f"Bernoulli arm means must lie in [0, 1], got values in "
            f"[{arm_means.min()}, {arm_means.max()}]"
        )
    return arm_means


def _check_available(
    name: str, num_arms: int, num_pulls: int, reward: str, discount: float | None
) -> None:
    """Raise ReferenceUnavailable when ``name`` does not apply to the setting."""
    if name in ("gittins", "bayes-optimal") and reward != "bernoulli":
        raise ReferenceUnavailable(
            f"reference {name!r} needs Bernoulli rewards because it is computed over Beta "
            f"posteriors, got reward={reward!r}; supported_references() lists the ones that apply"
        )
    if name == "gittins":
        _check_gittins_size(_resolve_discount(discount, num_pulls), num_pulls - 1)
    if name == "bayes-optimal":
        _check_bayes_optimal_size(num_arms, num_pulls)


# ---------------------------------------------------------------------------------------------
# Simulation


def _run_trials(
    policy: _Policy,
    arm_means: np.ndarray,
    num_pulls: int,
    rng: np.random.Generator,
    reward: str,
    reward_std: float,
) -> np.ndarray:
    """Run ``policy`` for ``num_pulls`` pulls on every task and return the rewards."""
    num_tasks, num_arms = arm_means.shape
    pulls = np.zeros((num_tasks, num_arms), dtype=np.int64)
    reward_sums = np.zeros((num_tasks, num_arms), dtype=np.float64)
    rewards = np.empty((num_tasks, num_pulls), dtype=np.float64)
    tasks = np.arange(num_tasks)

    for step in range(num_pulls):
        actions = policy(pulls, reward_sums, step, rng)
        means = arm_means[tasks, actions]
        if reward == "bernoulli":
            # Same rule as envs.bandits: reward 1 when Uniform(0, 1) noise < mean.
            step_rewards = (rng.random(num_tasks) < means).astype(np.float64)
        else:
            step_rewards = means + reward_std * rng.standard_normal(num_tasks)
        rewards[:, step] = step_rewards
        pulls[tasks, actions] += 1
        reward_sums[tasks, actions] += step_rewards
    return rewards


def _argmax_random_tie(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return, per row of ``scores`` (num_tasks, num_arms), a uniformly random maximizing arm."""
    best = scores.max(axis=1, keepdims=True)
    tied = scores >= best - _TIE_TOLERANCE
    keys = np.where(tied, rng.random(scores.shape), -1.0)
    return keys.argmax(axis=1)


def _make_policy(
    name: str,
    num_arms: int,
    num_pulls: int,
    reward: str,
    reward_std: float,
    discount: float | None,
) -> _Policy:
    """Build the policy for ``name``, computing its tables first."""
    _check_available(name, num_arms, num_pulls, reward, discount)
    if name == "random":
        return _random_policy
    if name == "ucb1":
        # UCB1's bonus assumes rewards in [0, 1]. For Gaussian rewards it is scaled by the
        # noise standard deviation, the usual form for sub-Gaussian rewards.
        bonus_scale = 1.0 if reward == "bernoulli" else reward_std
        return functools.partial(_ucb1_policy, bonus_scale=bonus_scale)
    if name == "thompson":
        if reward == "bernoulli":
            return _thompson_beta_policy
        return functools.partial(_thompson_normal_policy, reward_std=reward_std)
    if name == "gittins":
        table = _gittins_index_table(_resolve_discount(discount, num_pulls), num_pulls - 1)
        return functools.partial(_gittins_policy, index_table=table)
    solution = _solve_bayes_optimal(num_arms, num_pulls)
    return functools.partial(_bayes_optimal_policy, solution=solution)


def _random_policy(pulls, reward_sums, step, rng):
    num_tasks, num_arms = pulls.shape
    return rng.integers(0, num_arms, size=num_tasks)


def _ucb1_policy(pulls, reward_sums, step, rng, bonus_scale):
    # Unpulled arms score +inf, so the first k pulls try every arm once, in random order.
    # Afterwards step is the total pull count, the t of UCB1's bonus sqrt(2 ln t / n_i).
    with np.errstate(divide="ignore", invalid="ignore"):
        means = reward_sums / pulls
        bonus = bonus_scale * np.sqrt(2.0 * math.log(max(step, 1)) / pulls)
    scores = np.where(pulls == 0, np.inf, means + bonus)
    return _argmax_random_tie(scores, rng)


def _thompson_beta_policy(pulls, reward_sums, step, rng):
    # Posterior Beta(1 + successes, 1 + failures). Continuous samples tie with probability 0.
    successes = reward_sums
    failures = pulls - reward_sums
    samples = rng.beta(1.0 + successes, 1.0 + failures)
    return samples.argmax(axis=1)


def _thompson_normal_policy(pulls, reward_sums, step, rng, reward_std):
    # Conjugate Normal posterior of an arm mean, with known noise variance reward_std².
    noise_precision = 1.0 / reward_std**2
    precision = 1.0 / _PRIOR_VARIANCE + pulls * noise_precision
    mean = (_PRIOR_MEAN / _PRIOR_VARIANCE + reward_sums * noise_precision) / precision
    samples = mean + rng.standard_normal(pulls.shape) / np.sqrt(precision)
    return samples.argmax(axis=1)


def _gittins_policy(pulls, reward_sums, step, rng, index_table):
    successes = reward_sums.astype(np.int64)
    failures = pulls - successes
    return _argmax_random_tie(index_table[successes, failures], rng)


def _bayes_optimal_policy(pulls, reward_sums, step, rng, solution):
    successes = reward_sums.astype(np.int64)
    q_values = solution.q_values_of(successes, pulls - successes, step)
    return _argmax_random_tie(q_values, rng)


# ---------------------------------------------------------------------------------------------
# Gittins index


def _resolve_discount(discount: float | None, num_pulls: int) -> float:
    """Return the Gittins discount factor, by default ``1 - 1 / num_pulls``.

    The Gittins index policy is optimal for an infinite, discounted horizon, and a trial has
    n undiscounted pulls. With discount 1 - 1/n the effective horizon 1 / (1 - discount) is
    n, so the index values exploration over about as many pulls as the trial has left at its
    start. For n=1 the discount is 0, and the index is the posterior mean.
    """
    if discount is None:
        return 1.0 - 1.0 / num_pulls
    if not 0.0 <= discount < 1.0:
        raise ValueError(f"the Gittins discount must lie in [0, 1), got {discount}")
    return float(discount)


def _gittins_depth(discount: float, max_count: int) -> int:
    return max_count + math.ceil(_GITTINS_LOOKAHEAD_HORIZONS / (1.0 - discount))


def _check_gittins_size(discount: float, max_count: int) -> None:
    depth = _gittins_depth(discount, max_count)
    updates = (depth + 1) * (depth + 2) / 2 * _GITTINS_GRID_SIZE
    if updates > _MAX_GITTINS_UPDATES:
        raise ReferenceUnavailable(
            f"the Gittins index table for discount {discount} needs a Beta lattice of depth "
            f"{depth} and {updates:.3g} updates, more than the limit of "
            f"{_MAX_GITTINS_UPDATES:.3g}; use a smaller discount or fewer pulls"
        )


@functools.lru_cache(maxsize=16)
def _gittins_index_table(discount: float, max_count: int) -> np.ndarray:
    """Compute Gittins indices of Bernoulli arms with Beta(1, 1) priors by calibration.

    The index of an arm with s successes and f failures is the retirement rate λ at which
    two options are worth the same: retiring for good on λ per step, worth λ / (1 - discount),
    and pulling the arm once more, then continuing optimally. Backward induction over the
    Beta lattice runs for a grid of λ values at once. Each index is found by linear
    interpolation between the two grid points where continuing stops being better, since
    that advantage decreases strictly in λ.

    The lattice is truncated at depth max_count + 4 / (1 - discount) pulls, where an arm's
    value is approximated by never learning more: max(λ, posterior mean) / (1 - discount).

    Args:
        discount: the discount factor in [0, 1).
        max_count: the largest s + f the table covers.

    Returns:
        Read-only indices of shape ``(max_count + 1, max_count + 1)`` at ``[s, f]``,
        NaN where s + f > max_count.
    """
    grid = np.linspace(0.0, 1.0, _GITTINS_GRID_SIZE)[:, None]
    retirement_value = grid / (1.0 - discount)
    depth = _gittins_depth(discount, max_count)
    table = np.full((max_count + 1, max_count + 1), np.nan)

    # values[g, s]: the optimal value at grid point g of the state with s successes on the
    # current anti-diagonal s + f = d.
    successes = np.arange(depth + 1)
    posterior_mean = (successes + 1) / (depth + 2)
    values = np.maximum(grid, posterior_mean) / (1.0 - discount)

    for d in range(depth - 1, -1, -1):
        successes = np.arange(d + 1)
        posterior_mean = (successes + 1) / (d + 2)
        # A success leads to (s + 1, f), index s + 1 on the next diagonal, a failure to (s, f + 1).
        continuation_value = (
            posterior_mean * (1.0 + discount * values[:, 1:])
            + (1.0 - posterior_mean) * discount * values[:, :-1]
        )
        if d <= max_count:
            table[successes, d - successes] = _interpolate_crossing(
                grid[:, 0], continuation_value - retirement_value
            )
        values = np.maximum(retirement_value, continuation_value)

    table.setflags(write=False)
    return table


def _interpolate_crossing(grid: np.ndarray, advantage: np.ndarray) -> np.ndarray:
    """Return, per column of ``advantage`` (grid points, states), where it crosses zero.

    Each column decreases strictly, is positive at λ = 0 and is negative at λ = 1, so the
    crossing lies between two neighbouring grid points.
    """
    num_points, num_states = advantage.shape
    above = np.clip((advantage > 0).sum(axis=0), 1, num_points - 1)
    columns = np.arange(num_states)
    upper = advantage[above - 1, columns]
    lower = advantage[above, columns]
    fraction = upper / (upper - lower)
    return grid[above - 1] + fraction * (grid[above] - grid[above - 1])


# ---------------------------------------------------------------------------------------------
# Bayes-optimal dynamic programming
#
# An arm's posterior is fixed by its (successes, failures) pair, coded as one integer
# code = m (m + 1) / 2 + s with m = s + f, so codes grow with the pull count. A DP state
# with t pulls made is the sorted row of the k arms' codes, which merges the states that
# differ by a permutation of arms. Each row of levels[t] is one state, and rows are unique
# and in np.unique order, so a state is found with np.searchsorted.


def _pair_code(successes: np.ndarray, failures: np.ndarray) -> np.ndarray:
    pulls = successes + failures
    return pulls * (pulls + 1) // 2 + successes


def _count_decision_states(num_arms: int, num_pulls: int) -> float:
    """Count the DP states with fewer than ``num_pulls`` pulls made.

    A state is a multiset of num_arms pairs (s, f) whose s + f add up to t < num_pulls.
    counts[j, t] is the number of multisets of j pairs with total t. The m + 1 pair types with
    s + f = m are added together: i pairs drawn from them, with repetition, can be chosen in
    C(i + m, i) ways and add i arms and i * m pulls. The count is a float because it can
    exceed int64, so above 2**53 it is rounded.
    """
    counts = np.zeros((num_arms + 1, num_pulls))
    counts[0, 0] = 1.0
    for pair_pulls in range(num_pulls):
        updated = counts.copy()
        for num_pairs in range(1, num_arms + 1):
            added_pulls = num_pairs * pair_pulls
            if added_pulls >= num_pulls:
                break
            ways = float(math.comb(num_pairs + pair_pulls, num_pairs))
            updated[num_pairs:, added_pulls:] += (
                ways * counts[:-num_pairs, : num_pulls - added_pulls]
            )
        counts = updated
    return float(counts[num_arms].sum())


def _check_bayes_optimal_size(num_arms: int, num_pulls: int) -> None:
    num_states = _count_decision_states(num_arms, num_pulls)
    if num_states * num_arms > _MAX_BAYES_OPTIMAL_Q_VALUES:
        count_text = f"{num_states:,.0f}" if num_states < 1e12 else f"about {num_states:.3g}"
        raise ReferenceUnavailable(
            f"the Bayes-optimal DP for k={num_arms}, n={num_pulls} needs {count_text} states "
            f"({num_arms} Q-values each), more than the limit of "
            f"{_MAX_BAYES_OPTIMAL_Q_VALUES:,} Q-values; use fewer arms or pulls"
        )


def _row_keys(rows: np.ndarray) -> np.ndarray:
    """View each row of an int32 array (num_rows, k) as one opaque key that sorts and compares."""
    rows = np.ascontiguousarray(rows, dtype=np.int32)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()


@dataclass(frozen=True)
class _BayesOptimalSolution:
    """Value and Q-values of the Bayes-optimal policy for one (num_arms, num_pulls).

    Attributes:
        value: expected total reward from the start of a trial.
        levels: per pull count t < num_pulls, the sorted pair codes of every state,
            shape ``(num_states_t, num_arms)``, int32.
        level_keys: ``_row_keys(levels[t])``, sorted, for lookups.
        q_values: per t, the expected reward-to-go of pulling the arm at each position of a
            state's sorted row, shape ``(num_states_t, num_arms)``.
    """

    value: float
    levels: tuple[np.ndarray, ...]
    level_keys: tuple[np.ndarray, ...]
    q_values: tuple[np.ndarray, ...]

    def q_values_of(self, successes: np.ndarray, failures: np.ndarray, step: int) -> np.ndarray:
        """Return the Q-value of every arm, shape (num_tasks, num_arms), after ``step`` pulls."""
        codes = _pair_code(successes, failures)
        order = np.argsort(codes, axis=1, kind="stable")
        sorted_codes = np.take_along_axis(codes, order, axis=1)
        state_index = np.searchsorted(self.level_keys[step], _row_keys(sorted_codes))
        q_values = np.empty(codes.shape)
        np.put_along_axis(q_values, order, self.q_values[step][state_index], axis=1)
        return q_values


def _child_rows(states: np.ndarray, position: int, next_code: np.ndarray) -> np.ndarray:
    """Return the states with the code c at ``position`` replaced by next_code[c], re-sorted."""
    children = states.copy()
    children[:, position] = next_code[states[:, position]]
    children.sort(axis=1)
    return children


@functools.lru_cache(maxsize=4)
def _solve_bayes_optimal(num_arms: int, num_pulls: int) -> _BayesOptimalSolution:
    """Solve the Bayes-optimal DP for k = num_arms, n = num_pulls. Call after the size check."""
    # Per-code tables over every pair with s + f <= num_pulls.
    pair_pulls = np.repeat(np.arange(num_pulls + 1), np.arange(1, num_pulls + 2))
    pair_successes = np.arange(pair_pulls.size) - pair_pulls * (pair_pulls + 1) // 2
    pair_failures = pair_pulls - pair_successes
    success_code = _pair_code(pair_successes + 1, pair_failures).astype(np.int32)
    failure_code = _pair_code(pair_successes, pair_failures + 1).astype(np.int32)
    posterior_mean = (pair_successes + 1) / (pair_pulls + 2)

    # Forward: enumerate the states reachable after t = 0 .. num_pulls - 1 pulls.
    levels = [np.zeros((1, num_arms), dtype=np.int32)]
    for _ in range(num_pulls - 1):
        states = levels[-1]
        child_keys = [
            np.unique(_row_keys(_child_rows(states, position, next_code)))
            for position in range(num_arms)
            for next_code in (success_code, failure_code)
        ]
        next_keys = np.unique(np.concatenate(child_keys))
        levels.append(next_keys.view(np.int32).reshape(-1, num_arms))
    level_keys = [_row_keys(states) for states in levels]
    for states in levels:
        states.setflags(write=False)

    # Backward: Q(state, position) = p (1 + V(success child)) + (1 - p) V(failure child),
    # with V = 0 once all num_pulls pulls are made.
    q_values: list[np.ndarray] = [np.empty(0)] * num_pulls
    next_values = np.zeros(1)
    for t in range(num_pulls - 1, -1, -1):
        states = levels[t]
        success_probability = posterior_mean[states]
        if t == num_pulls - 1:
            q = success_probability
        else:
            q = np.empty(states.shape)
            for position in range(num_arms):
                success_child = np.searchsorted(
                    level_keys[t + 1], _row_keys(_child_rows(states, position, success_code))
                )
                failure_child = np.searchsorted(
                    level_keys[t + 1], _row_keys(_child_rows(states, position, failure_code))
                )
                p = success_probability[:, position]
                q[:, position] = (
                    p * (1.0 + next_values[success_child]) + (1.0 - p) * next_values[failure_child]
                )
        q.setflags(write=False)
        q_values[t] = q
        next_values = q.max(axis=1)

    return _BayesOptimalSolution(
        value=float(next_values[0]),
        levels=tuple(levels),
        level_keys=tuple(level_keys),
        q_values=tuple(q_values),
    )


@register_references(BanditDistribution)
def bandit_references(
    distribution: BanditDistribution, tasks: Sequence[Task], seed: int
) -> dict[str, ReferenceResult]:
    """Run every reference that applies to ``distribution`` for one trial on each task."""
    k, n = distribution.num_arms, distribution.num_pulls
    names = supported_references(k, n, distribution.reward)
    arm_means = distribution.task_params(tasks).astype(np.float64)
    streams = np.random.SeedSequence(seed).spawn(len(names))
    results: dict[str, ReferenceResult] = {}
    for name, stream in zip(names, streams):
        # One pull is one inner episode, so the reward array is the per-episode return array.
        rewards = simulate_reference(
            name, arm_means, n, np.random.default_rng(stream), reward=distribution.reward,
            reward_std=distribution.reward_std,
        )
        exact = bayes_optimal_value(k, n) if name == "bayes-optimal" else None
        results[name] = ReferenceResult(rewards, exact_value=exact)
    return results
