"""The built-in task-distribution families and their registry names."""

from envs.bandits import BanditDistribution
from envs.locomotion import (
    AntDir2DDistribution,
    AntDirDistribution,
    AntGoalDistribution,
    HalfCheetahDirDistribution,
    HalfCheetahVelDistribution,
)
from envs.mazes import MazeDistribution
from envs.navigation import Navigation2DDistribution
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
    r"navigation-2d",
    "navigation-2d",
    "MAML's 2D navigation: goals ~ Uniform([-0.5, 0.5]²), 100 steps, 2 episodes per trial",
)
def _navigation_2d(**kwargs) -> Navigation2DDistribution:
    return Navigation2DDistribution(**kwargs)


@register_family(
    r"mdp-s(?P<num_states>\d+)-a(?P<num_actions>\d+)-n(?P<episodes_per_trial>\d+)",
    "mdp-s10-a5-n10",
    "random tabular MDPs: P rows ~ Dirichlet(1), R ~ Normal(1, 1), n episodes of 10 steps",
)
def _tabular_mdps(
    num_states: int, num_actions: int, episodes_per_trial: int, **kwargs
) -> TabularMDPDistribution:
    return TabularMDPDistribution(num_states, num_actions, episodes_per_trial, **kwargs)


@register_family(
    r"halfcheetah-vel",
    "halfcheetah-vel",
    "MuJoCo HalfCheetah, target velocity ~ Uniform(0, 2) m/s, 200 steps, 2 episodes per trial",
)
def _halfcheetah_vel(**kwargs) -> HalfCheetahVelDistribution:
    return HalfCheetahVelDistribution(**kwargs)


@register_family(
    r"halfcheetah-dir",
    "halfcheetah-dir",
    "MuJoCo HalfCheetah, run forward or backward (2 tasks), 200 steps, 2 episodes per trial",
)
def _halfcheetah_dir(**kwargs) -> HalfCheetahDirDistribution:
    return HalfCheetahDirDistribution(**kwargs)


@register_family(
    r"ant-dir",
    "ant-dir",
    "MuJoCo Ant, run along +x or -x (2 tasks), 200 steps, 2 episodes per trial",
)
def _ant_dir(**kwargs) -> AntDirDistribution:
    return AntDirDistribution(**kwargs)


@register_family(
    r"ant-dir-2d",
    "ant-dir-2d",
    "MuJoCo Ant, run at an angle ~ Uniform(0, 2 pi) in the plane, 200 steps, 2 episodes",
)
def _ant_dir_2d(**kwargs) -> AntDir2DDistribution:
    return AntDir2DDistribution(**kwargs)


@register_family(
    r"ant-goal",
    "ant-goal",
    "MuJoCo Ant, walk to a goal uniform in a disc of radius 3 m, 200 steps, 2 episodes",
)
def _ant_goal(**kwargs) -> AntGoalDistribution:
    return AntGoalDistribution(**kwargs)
