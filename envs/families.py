"""The built-in task-distribution families and their registry names."""

from envs.bandits import BanditDistribution
from envs.mazes import MazeDistribution
from envs.registry import register_family
from envs.tabular import TabularMDPDistribution


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


@register_family(
    r"maze-(?P<size>\d+)x(?P=size)-n(?P<episodes_per_trial>\d+)",
    "maze-9x9-n2",
    "perfect mazes of odd width, egocentric 5x5 view, n episodes per trial",
)
def _mazes(size: int, episodes_per_trial: int, **kwargs) -> MazeDistribution:
    return MazeDistribution(size=size, episodes_per_trial=episodes_per_trial, **kwargs)


@register_family(
    r"mdp-s(?P<num_states>\d+)-a(?P<num_actions>\d+)-n(?P<episodes_per_trial>\d+)",
    "mdp-s10-a5-n10",
    "random tabular MDPs: P rows ~ Dirichlet(1), R ~ Normal(1, 1), n episodes of 10 steps",
)
def _tabular_mdps(
    num_states: int, num_actions: int, episodes_per_trial: int, **kwargs
) -> TabularMDPDistribution:
    return TabularMDPDistribution(num_states, num_actions, episodes_per_trial, **kwargs)
