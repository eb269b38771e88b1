"""AdaptRL environments: tasks, task distributions, trials, batched torch envs and the registry."""

import gymnasium as gym

from envs import families as _families  # noqa: F401  (registers the built-in families)
from envs.bandits import BanditDistribution, BanditEnv, BanditTask, BatchedBanditEnv
from envs.batched import BatchedEnv, BatchedTrialEnv, TrialStep
from envs.contract import ContractError, check_task_distribution
from envs.locomotion import (
    AntDir2DDistribution,
    AntDirDistribution,
    AntDirEnv,
    AntGoalDistribution,
    AntGoalEnv,
    HalfCheetahDirDistribution,
    HalfCheetahDirEnv,
    HalfCheetahVelDistribution,
    HalfCheetahVelEnv,
    LocomotionDistribution,
    LocomotionEnv,
)
from envs.locomotion_tasks import (
    AntDir2DTask,
    AntDirTask,
    AntGoalTask,
    HalfCheetahDirTask,
    HalfCheetahVelTask,
)
from envs.mazes import BatchedMazeEnv, MazeDistribution, MazeEnv, MazeTask
from envs.navigation import (
    BatchedNavigationEnv,
    Navigation2DDistribution,
    Navigation2DEnv,
    Navigation2DTask,
)
from envs.registry import known_names, make_distribution, register_family
from envs.tabular import BatchedTabularEnv, MDPTask, TabularMDPDistribution, TabularMDPEnv
from envs.task_sampling import TaskSamplingEnv
from envs.tasks import SPLITS, MetaSplit, Task, TaskDistribution
from envs.trial import NonFiniteError, TrialWrapper, check_finite
from envs.vector import VectorBatchedEnv

# Marks this package as AdaptRL's own; other distributions also install a top-level `envs`.
__adaptrl__ = True

__all__ = [
    "SPLITS",
    "AntDir2DDistribution",
    "AntDir2DTask",
    "AntDirDistribution",
    "AntDirEnv",
    "AntDirTask",
    "AntGoalDistribution",
    "AntGoalEnv",
    "AntGoalTask",
    "BanditDistribution",
    "BanditEnv",
    "BanditTask",
    "BatchedBanditEnv",
    "BatchedEnv",
    "BatchedMazeEnv",
    "BatchedNavigationEnv",
    "BatchedTabularEnv",
    "BatchedTrialEnv",
    "ContractError",
    "HalfCheetahDirDistribution",
    "HalfCheetahDirEnv",
    "HalfCheetahDirTask",
    "HalfCheetahVelDistribution",
    "HalfCheetahVelEnv",
    "HalfCheetahVelTask",
    "LocomotionDistribution",
    "LocomotionEnv",
    "MDPTask",
    "MazeDistribution",
    "MazeEnv",
    "MazeTask",
    "MetaSplit",
    "Navigation2DDistribution",
    "Navigation2DEnv",
    "Navigation2DTask",
    "NonFiniteError",
    "Task",
    "TabularMDPEnv",
    "TabularMDPDistribution",
    "TaskDistribution",
    "TaskSamplingEnv",
    "TrialStep",
    "TrialWrapper",
    "VectorBatchedEnv",
    "check_finite",
    "check_task_distribution",
    "known_names",
    "make_distribution",
    "make_trial_env",
    "register_family",
]


def make_trial_env(
    distribution: str = "bandit-k5-n10", split: str = "meta-train", oracle: bool = False
) -> TrialWrapper:
    """Build a Gymnasium trial environment for a registered distribution name."""
    dist = make_distribution(distribution)
    return TrialWrapper(dist.make_env(oracle=oracle), dist, split=split)


for _env_id, _entry_point, _kwargs in (
    ("adaptrl/AntDir-v0", "envs.locomotion:AntDirEnv", {}),
    ("adaptrl/AntGoal-v0", "envs.locomotion:AntGoalEnv", {}),
    ("adaptrl/BernoulliBandit-v0", "envs.bandits:BanditEnv", {"reward": "bernoulli"}),
    ("adaptrl/GaussianBandit-v0", "envs.bandits:BanditEnv", {"reward": "gaussian"}),
    ("adaptrl/HalfCheetahDir-v0", "envs.locomotion:HalfCheetahDirEnv", {}),
    ("adaptrl/HalfCheetahVel-v0", "envs.locomotion:HalfCheetahVelEnv", {}),
    ("adaptrl/Maze-v0", "envs.mazes:MazeEnv", {}),
    ("adaptrl/Navigation2D-v0", "envs.navigation:Navigation2DEnv", {}),
    ("adaptrl/TabularMDP-v0", "envs.tabular:TabularMDPEnv", {}),
    ("adaptrl/Trials-v0", "envs:make_trial_env", {}),
):
    if _env_id not in gym.registry:
        gym.register(_env_id, entry_point=_entry_point, kwargs=_kwargs)
