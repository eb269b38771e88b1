"""Tasks, priors and reward constants of the MuJoCo locomotion families.

This module does not import MuJoCo, so task distributions can sample, split and store
locomotion tasks on a machine without the ``mujoco`` extra. The environments that
simulate them are in :mod:`envs.locomotion`.

Lengths are in the units of Gymnasium's MJCF models (metres), times in seconds and angles
in radians. One environment step advances ``FRAME_SKIP`` MuJoCo steps of 0.01 s, so
``dt = 0.05`` s for both robots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from envs.tasks import Task

# Episode length of the MAML code's locomotion runs (max_path_length = 200 in
# cbfinn/maml_rl, maml_examples/cluster_maml_trpo_cheetah.py).
DEFAULT_HORIZON = 200

# Simulation settings, equal to the Gymnasium v5 defaults and passed explicitly, so that a
# change of those defaults in a later Gymnasium release does not change these tasks.
FRAME_SKIP = 5
RESET_NOISE_SCALE = 0.1

# HalfCheetah control cost 0.05 * ||a||^2: the coefficient 0.5 * 0.1 of the MAML code's
# cheetah (cbfinn/maml_rl, rllab/envs/mujoco/half_cheetah_env_rand.py). Gymnasium's
# HalfCheetah-v5 default is 0.1.
HALFCHEETAH_CTRL_COST_WEIGHT = 0.05

# Ant reward terms, equal to Gymnasium's Ant-v5 defaults.
ANT_CTRL_COST_WEIGHT = 0.5
ANT_CONTACT_COST_WEIGHT = 5e-4
ANT_CONTACT_FORCE_RANGE = (-1.0, 1.0)
ANT_HEALTHY_REWARD = 1.0
# The episode terminates when the torso height leaves this range (metres).
ANT_HEALTHY_Z_RANGE = (0.2, 1.0)

# Priors: HalfCheetahVel target velocity ~ Uniform(0, 2) m/s, AntGoal goal uniform in a disc.
HALFCHEETAH_VELOCITY_RANGE = (0.0, 2.0)
ANT_GOAL_RADIUS = 3.0
DIRECTIONS = (1.0, -1.0)


def _require_finite(task: Task, *values: float) -> None:
    if not all(math.isfinite(value) for value in values):
        raise ValueError(f"invalid task {task!r}: every task parameter must be finite")


def _require_direction(task: Task, direction: float) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"invalid task {task!r}: direction must be +1.0 or -1.0, got {direction}")


@dataclass(frozen=True)
class HalfCheetahVelTask(Task):
    """A HalfCheetah target forward velocity, in m/s along +x."""

    target_velocity: float

    def __post_init__(self):
        object.__setattr__(self, "target_velocity", float(self.target_velocity))
        _require_finite(self, self.target_velocity)


@dataclass(frozen=True)
class HalfCheetahDirTask(Task):
    """A HalfCheetah running direction: +1.0 rewards running forward, -1.0 backward."""

    direction: float

    def __post_init__(self):
        object.__setattr__(self, "direction", float(self.direction))
        _require_direction(self, self.direction)


@dataclass(frozen=True)
class AntDirTask(Task):
    """An Ant running direction along the x axis: +1.0 or -1.0."""

    direction: float

    def __post_init__(self):
        object.__setattr__(self, "direction", float(self.direction))
        _require_direction(self, self.direction)

    def unit_vector(self) -> tuple[float, float]:
        return (self.direction, 0.0)


@dataclass(frozen=True)
class AntDir2DTask(Task):
    """An Ant running direction in the xy plane, as an angle in radians from +x toward +y."""

    angle: float

    def __post_init__(self):
        object.__setattr__(self, "angle", float(self.angle))
        _require_finite(self, self.angle)

    def unit_vector(self) -> tuple[float, float]:
        return (math.cos(self.angle), math.sin(self.angle))


@dataclass(frozen=True)
class AntGoalTask(Task):
    """An Ant goal position in the xy plane, in metres."""

    goal_x: float
    goal_y: float

    def __post_init__(self):
        object.__setattr__(self, "goal_x", float(self.goal_x))
        object.__setattr__(self, "goal_y", float(self.goal_y))
        _require_finite(self, self.goal_x, self.goal_y)


# Priors. Continuous values are rounded to float32, so that a task survives the float32
# task-parameter arrays of the batched environments exactly (see
# LocomotionDistribution.task_params).


def sample_velocity_tasks(rng: np.random.Generator, num_tasks: int) -> list[HalfCheetahVelTask]:
    low, high = HALFCHEETAH_VELOCITY_RANGE
    velocities = rng.uniform(low, high, num_tasks).astype(np.float32)
    return [HalfCheetahVelTask(v) for v in velocities.tolist()]


def sample_cheetah_direction_tasks(rng: np.random.Generator, num_tasks: int) -> list[HalfCheetahDirTask]:
    return [HalfCheetahDirTask(d) for d in rng.choice(DIRECTIONS, num_tasks).tolist()]


def sample_ant_direction_tasks(rng: np.random.Generator, num_tasks: int) -> list[AntDirTask]:
    return [AntDirTask(d) for d in rng.choice(DIRECTIONS, num_tasks).tolist()]


def sample_ant_angle_tasks(rng: np.random.Generator, num_tasks: int) -> list[AntDir2DTask]:
    angles = rng.uniform(0.0, 2.0 * math.pi, num_tasks).astype(np.float32)
    return [AntDir2DTask(a) for a in angles.tolist()]


def sample_ant_goal_tasks(rng: np.random.Generator, num_tasks: int) -> list[AntGoalTask]:
    # Uniform by area: the radius of a uniform point in a disc has density proportional to r,
    # so r = R * sqrt(u) with u ~ Uniform(0, 1).
    angles = rng.uniform(0.0, 2.0 * math.pi, num_tasks)
    radii = ANT_GOAL_RADIUS * np.sqrt(rng.uniform(0.0, 1.0, num_tasks))
    goals = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1).astype(np.float32)
    return [AntGoalTask(x, y) for x, y in goals.tolist()]
