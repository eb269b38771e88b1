"""Tests of the non-learned bandit references: values, behaviour and argument checks."""

import numpy as np
import pytest

from agents.references import (
    REFERENCE_NAMES,
    ReferenceUnavailable,
    bayes_optimal_value,
    simulate_reference,
    supported_references,
)
from agents.references.bandits import _gittins_index_table

# Tolerance of the mean comparisons below, in standard errors. A two-sided 4-sigma check fails
# by chance with probability about 6e-5.
STANDARD_ERRORS = 4.0


def uniform_tasks(num_tasks, num_arms, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(num_tasks, num_arms))


def total_rewards(name, arm_means, num_pulls, seed=1, **kwargs):
    rewards = simulate_reference(name, arm_means, num_pulls, np.random.default_rng(seed), **kwargs)
    return rewards.sum(axis=1)


def standard_error(values):
    return values.std(ddof=1) / np.sqrt(values.size)


def test_bayes_optimal_value_k5_n10():
    assert bayes_optimal_value(5, 10) == pytest.approx(6.660, abs=5e-4)


def test_bayes_optimal_value_small_cases():
    # One pull: every arm has prior mean 1/2.
    assert bayes_optimal_value(2, 1) == pytest.approx(0.5, abs=1e-12)

    # Two pulls, two arms. Pull arm A first, worth 1/2. After a success A's posterior is
    # Beta(2, 1) with mean 2/3 > 1/2, so pull A again. After a failure A's mean is 1/3 < 1/2,
    # so pull the fresh arm B. Total: 1/2 + 1/2 * 2/3 + 1/2 * 1/2 = 6/12 + 4/12 + 3/12 = 13/12.
    assert bayes_optimal_value(2, 2) == pytest.approx(13 / 12, abs=1e-12)

    # One arm: every pull has prior predictive success probability 1/2.
    assert bayes_optimal_value(1, 5) == pytest.approx(2.5, abs=1e-12)


def test_bayes_optimal_value_too_large():
    # k=10, n=20 has 760,948 states with decisions to make, 7.6 million Q-values.
    with pytest.raises(ReferenceUnavailable, match=r"k=10, n=20 needs 760,948 states"):
        bayes_optimal_value(10, 20)
    with pytest.raises(ReferenceUnavailable, match=r"limit of 5,000,000 Q-values"):
        bayes_optimal_value(10, 100)


def test_random_mean_is_half_of_pulls():
    totals = total_rewards("random", uniform_tasks(10_000, 5), 10)

    assert abs(totals.mean() - 5.0) < STANDARD_ERRORS * standard_error(totals)


def test_ucb1_pulls_each_arm_once_first():
    # Near-noiseless Gaussian rewards equal the pulled arm's mean, which reveals the action.
    num_tasks, num_arms = 200, 5
    distinct_means = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    rng = np.random.default_rng(0)
    arm_means = np.stack([rng.permutation(distinct_means) for _ in range(num_tasks)])

    rewards = simulate_reference(
        "ucb1", arm_means, 8, np.random.default_rng(1), reward="gaussian", reward_std=1e-9
    )
    actions = np.abs(rewards[:, :, None] - arm_means[:, None, :]).argmin(axis=2)

    first_actions = np.sort(actions[:, :num_arms], axis=1)
    assert np.array_equal(first_actions, np.tile(np.arange(num_arms), (num_tasks, 1)))
    # With one pull per arm the bonuses are equal, so the next pull is the arm with the best mean.
    assert np.array_equal(actions[:, num_arms], arm_means.argmax(axis=1))
    # The first k pulls come in random order, not always arm 0 first.
    assert len(np.unique(actions[:, 0])) == num_arms


@pytest.mark.parametrize(
    ("name", "reward", "margin"),
    [
        ("ucb1", "bernoulli", 0.3),
        ("thompson", "bernoulli", 0.5),
        ("gittins", "bernoulli", 1.2),
        ("bayes-optimal", "bernoulli", 1.2),
        ("ucb1", "gaussian", 0.3),
        ("thompson", "gaussian", 0.3),
    ],
)
def test_reference_beats_random(name, reward, margin):
    # Mean gains over random on these 10,000 tasks, k=5, n=10: Bernoulli UCB1 0.68,
    # Thompson 0.81, Gittins 1.65, Bayes-optimal 1.66. Gaussian with reward_std=0.5: UCB1
    # 0.75, Thompson 0.67. The same tasks make the per-task difference a paired sample.
    arm_means = uniform_tasks(10_000, 5)
    random_totals = total_rewards("random", arm_means, 10, reward=reward, reward_std=0.5)
    reference_totals = total_rewards(name, arm_means, 10, reward=reward, reward_std=0.5)

    differences = reference_totals - random_totals
    assert differences.mean() - STANDARD_ERRORS * standard_error(differences) > margin


def test_gittins_close_to_bayes_optimal():
    totals = total_rewards("gittins", uniform_tasks(10_000, 5), 10)

    assert totals.mean() > bayes_optimal_value(5, 10) - 0.1


def test_bayes_optimal_policy_matches_value():
    # Tasks drawn from the prior make the policy's mean total reward an unbiased estimate of
    # the DP value.
    totals = total_rewards("bayes-optimal", uniform_tasks(10_000, 5), 10)

    difference = totals.mean() - bayes_optimal_value(5, 10)
    assert abs(difference) < STANDARD_ERRORS * standard_error(totals)


@pytest.mark.parametrize(
    ("discount", "successes", "failures", "expected"),
    [
        # Gittins indices of Beta(1 + s, 1 + f) arms as tabulated in B. Christian and
        # T. Griffiths, "Algorithms to Live By" (2016), chapter 2, to 4 decimals.
        (0.9, 0, 0, 0.7029),
        (0.9, 1, 1, 0.6346),
        (0.9, 2, 2, 0.6010),
        (0.9, 9, 1, 0.8695),
        (0.99, 0, 0, 0.8699),
    ],
)
def test_gittins_index_matches_published_table(discount, successes, failures, expected):
    table = _gittins_index_table(discount, 10)

    assert table[successes, failures] == pytest.approx(expected, abs=1e-4)


def test_gittins_index_without_discount_is_posterior_mean():
    table = _gittins_index_table(0.0, 3)

    for successes in range(4):
        for failures in range(4 - successes):
            posterior_mean = (successes + 1) / (successes + failures + 2)
            assert table[successes, failures] == pytest.approx(posterior_mean, abs=1e-9)


def test_unknown_reference_lists_names():
    with pytest.raises(ValueError, match=r"unknown reference 'oracle'.*'random'.*'bayes-optimal'"):
        simulate_reference("oracle", uniform_tasks(3, 5), 10, np.random.default_rng(0))


@pytest.mark.parametrize("name", ["gittins", "bayes-optimal"])
def test_bernoulli_reference_rejects_gaussian(name):
    with pytest.raises(ReferenceUnavailable, match=r"needs Bernoulli rewards.*'gaussian'"):
        simulate_reference(
            name, uniform_tasks(3, 5), 10, np.random.default_rng(0), reward="gaussian"
        )


def test_bayes_optimal_reference_too_large():
    with pytest.raises(ReferenceUnavailable, match=r"k=10, n=100 needs about 9.57e\+15 states"):
        simulate_reference("bayes-optimal", uniform_tasks(3, 10), 100, np.random.default_rng(0))


def test_reference_unavailable_is_value_error():
    assert issubclass(ReferenceUnavailable, ValueError)


def test_supported_references():
    assert supported_references(5, 10, "bernoulli") == REFERENCE_NAMES
    assert supported_references(5, 10, "gaussian") == ("random", "ucb1", "thompson")
    assert supported_references(10, 100, "bernoulli") == ("random", "ucb1", "thompson", "gittins")
    # The default discount 1 - 1/n makes the Gittins lattice too deep for n=1000.
    assert supported_references(10, 1000, "bernoulli") == ("random", "ucb1", "thompson")


def test_supported_references_rejects_unknown_reward():
    with pytest.raises(ValueError, match=r"unknown bandit reward 'poisson'"):
        supported_references(5, 10, "poisson")


@pytest.mark.parametrize("reward", ["bernoulli", "gaussian"])
def test_output_shape_and_dtype(reward):
    arm_means = uniform_tasks(7, 4).astype(np.float32)

    for name in supported_references(4, 6, reward):
        rewards = simulate_reference(name, arm_means, 6, np.random.default_rng(0), reward=reward)
        assert rewards.shape == (7, 6), name
        assert rewards.dtype == np.float64, name
        if reward == "bernoulli":
            assert set(np.unique(rewards)) <= {0.0, 1.0}, name


@pytest.mark.parametrize("reward", ["bernoulli", "gaussian"])
def test_same_seed_same_rewards(reward):
    arm_means = uniform_tasks(50, 5)

    for name in supported_references(5, 10, reward):
        first = simulate_reference(name, arm_means, 10, np.random.default_rng(3), reward=reward)
        second = simulate_reference(name, arm_means, 10, np.random.default_rng(3), reward=reward)
        other = simulate_reference(name, arm_means, 10, np.random.default_rng(4), reward=reward)
        assert np.array_equal(first, second), name
        assert not np.array_equal(first, other), name


def test_invalid_arguments_rejected():
    rng = np.random.default_rng(0)

    with pytest.raises(ValueError, match=r"shape \(num_tasks, num_arms\)"):
        simulate_reference("random", np.full(5, 0.5), 10, rng)
    with pytest.raises(ValueError, match=r"Bernoulli arm means must lie in \[0, 1\]"):
        simulate_reference("random", np.full((2, 5), 1.5), 10, rng)
    with pytest.raises(ValueError, match=r"NaN or infinite"):
        simulate_reference("random", np.full((2, 5), np.nan), 10, rng)
    with pytest.raises(ValueError, match=r"num_pulls must be a positive integer"):
        simulate_reference("random", uniform_tasks(2, 5), 0, rng)
    with pytest.raises(ValueError, match=r"reward_std must be positive"):
        simulate_reference("thompson", uniform_tasks(2, 5), 10, rng, "gaussian", reward_std=0.0)
    with pytest.raises(ValueError, match=r"Gittins discount must lie in \[0, 1\)"):
        simulate_reference("gittins", uniform_tasks(2, 5), 10, rng, discount=1.0)
    with pytest.raises(TypeError, match=r"numpy.random.Generator"):
        simulate_reference("random", uniform_tasks(2, 5), 10, np.random.RandomState(0))
