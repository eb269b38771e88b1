"""The built-in task-distribution families and their registry names."""

from envs.bandits import BanditDistribution
from envs.registry import register_family


@register_family(
    r"bandit-k(?P<num_arms>\d+)-n(?P<num_pulls>\d+)",
    "bandit-k5-n10",
    "Bernoulli bandits: k arms with means ~ Uniform(0, 1), n pulls per trial",
)
def _bernoulli_bandits(num_arms: int, num_pulls: int, **kwargs) -> BanditDistribution:
    return BanditDistribution(num_arms, num_pulls, reward="bernoulli", **kwargs)


@register_family(
    r"gaussian-bandit-k(?P<num_arms>\d+)-n(?P<num_pulls>\d+)",
    "gaussian-bandit-k5-n10",
    "Gaussian bandits: arm means ~ Uniform(0, 1), rewards ~ Normal(mean, 1), n pulls",
)
def _gaussian_bandits(num_arms: int, num_pulls: int, **kwargs) -> BanditDistribution:
    return BanditDistribution(num_arms, num_pulls, reward="gaussian", **kwargs)
