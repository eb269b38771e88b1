"""MuJoCo locomotion task families: HalfCheetah velocity and direction, Ant direction and goal.

Each environment wraps one of Gymnasium's MuJoCo v5 environments (``HalfCheetahEnv``,
``AntEnv``), which simulates the robot and computes the task-independent reward terms, and
adds the task term, a horizon and a divergence check. The task is set with ``set_task`` or
by assigning the ``task`` property, so that ``VectorEnv.set_attr("task", tasks)`` puts each
worker on its own task.

The ``mujoco`` package is imported only when an environment is built, so ``import envs``
and the task distributions work without the ``mujoco`` extra. Tasks, priors and reward
constants are in :mod:`envs.locomotion_tasks`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from envs.locomotion_tasks import (
    ANT_CONTACT_COST_WEIGHT,
    ANT_CONTACT_FORCE_RANGE,
    ANT_CTRL_COST_WEIGHT,
    ANT_GOAL_RADIUS,
    ANT_HEALTHY_REWARD,
    ANT_HEALTHY_Z_RANGE,
    DEFAULT_HORIZON,
    DIRECTIONS,
    FRAME_SKIP,
    HALFCHEETAH_CTRL_COST_WEIGHT,
    HALFCHEETAH_VELOCITY_RANGE,
    RESET_NOISE_SCALE,
    AntDir2DTask,
    AntDirTask,
    AntGoalTask,
    HalfCheetahDirTask,
    HalfCheetahVelTask,
    sample_ant_angle_tasks,
    sample_ant_direction_tasks,
    sample_ant_goal_tasks,
    sample_cheetah_direction_tasks,
    sample_velocity_tasks,
)
from envs.tasks import Task, TaskDistribution
from envs.trial import NonFiniteError
from envs.vector import VectorBatchedEnv, usable_cpu_count

MUJOCO_INSTALL_HINT = 'pip install -e ".[mujoco]"'

logger = logging.getLogger(__name__)


def import_gymnasium_mujoco():
    """Import and return the ``mujoco`` module and Gymnasium's v5 ``HalfCheetahEnv`` and ``AntEnv``.

    Raises:
        gymnasium.error.DependencyNotInstalled: the ``mujoco`` package is missing. The message
            names AdaptRL's extra that installs it.
    """
    try:
        # Imported first and by name, because Gymnasium's mujoco_env module turns a missing
        # mujoco into its own error that names Gymnasium's extra instead of AdaptRL's.
        import mujoco
        from gymnasium.envs.mujoco.ant_v5 import AntEnv
        from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
    except (ImportError, gym.error.DependencyNotInstalled) as error:
        raise gym.error.DependencyNotInstalled(
            f"the MuJoCo locomotion environments need the mujoco package, which failed to import "
            f"({error}). Install AdaptRL's mujoco extra from the repository root: "
            f"{MUJOCO_INSTALL_HINT}"
        ) from error
    _route_mujoco_warnings(mujoco)
    return mujoco, HalfCheetahEnv, AntEnv


_SEEN_MUJOCO_WARNINGS: set[str] = set()


def _route_mujoco_warnings(mujoco) -> None:
    """Send MuJoCo's C-level warnings to this module's logger, each distinct text once.

    MuJoCo's default handler prints to stderr and appends to ``MUJOCO_LOG.TXT`` in the working
    directory. MuJoCo 4 warns that Gymnasium's model files use a deprecated compiler
    attribute (``settotalmass``) every time a model is compiled, so a run with 64 envs would
    print 64 copies and leave a log file in the user's folder. Divergence is still caught:
    the check reads MuJoCo's warning counters in ``mjData``, which the handler does not touch.
    """
    if mujoco.get_mju_user_warning() is not None:
        return  # the user (or an earlier call) installed a handler; keep it

    def log_once(message: str) -> None:
        text = message.strip()
        if text not in _SEEN_MUJOCO_WARNINGS:
            _SEEN_MUJOCO_WARNINGS.add(text)
            logger.warning("MuJoCo: %s", text)

    mujoco.set_mju_user_warning(log_once)


def installed_version(package: str) -> str | None:
    """Return the installed version of ``package``, or None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_render_backend(render_mode: str | None) -> None:
    """Raise a clear error where MuJoCo rendering would fail or abort the process on Linux.

    Without a display, GLFW (MuJoCo's default OpenGL backend) aborts the Python process when
    Gymnasium opens a "human" window, and offscreen rendering fails unless ``MUJOCO_GL``
    names a headless backend.
    """
    if render_mode is None or sys.platform != "linux":
        return
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    if render_mode == "human":
        raise gym.error.Error(
            "render_mode='human' needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is "
            "set. Render offscreen with render_mode='rgb_array' and MUJOCO_GL=egl (GPU) or "
            "MUJOCO_GL=osmesa (software) instead."
        )
    if os.environ.get("MUJOCO_GL") in (None, "", "glfw"):
        raise gym.error.Error(
            f"render_mode={render_mode!r} without a display needs a headless OpenGL backend: set "
            "the environment variable MUJOCO_GL=egl (GPU) or MUJOCO_GL=osmesa (software)"
        )


def check_horizon(horizon: int) -> int:
    """Return ``horizon`` as an int, or raise ValueError unless it is an integer of at least 1."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be an integer number of steps of at least 1, got {horizon!r}")
    return int(horizon)


# ---------------------------------------------------------------------------------------------
# Gymnasium environments


class LocomotionEnv(gym.Env):
    """Base class of the locomotion environments: one Gymnasium MuJoCo env plus a task.

    Observations and dynamics are those of the wrapped Gymnasium v5 env. The reward is the
    task term plus the subclass's task-independent terms from Gymnasium. ``info`` keeps
    Gymnasium's entries, with ``reward_forward`` (plain forward velocity) replaced by
    ``reward_task``, so the ``reward_*`` entries sum to the reward. With ``oracle=True``,
    ``info["task"]`` is ``task.to_dict()``. Otherwise the task appears nowhere in the
    observation or ``info``.

    The env itself truncates the episode after ``horizon`` steps. So envs built without
    ``gym.make`` (by the distributions and vector envs) end their episodes at the same step,
    and a vector env's ``set_attr`` reaches the env with no ``TimeLimit`` wrapper in between.

    After every step it raises :class:`envs.trial.NonFiniteError` if the simulation
    diverged. MuJoCo resets the simulation by itself when it finds a NaN, infinite or huge
    value in qpos, qvel or qacc, so the check also counts MuJoCo's warnings for those.

    Without a task, the first reset draws one from the family's prior, from a stream
    derived from the reset seed, so that ``gym.make`` alone gives a working env.

    Args:
        horizon: steps per episode before truncation.
        oracle: put the task into ``info["task"]``.
        task: the initial task, until ``set_task`` replaces it.
        render_mode: passed to the Gymnasium MuJoCo env.
    """

    task_type: type[Task] = Task

    def __init__(
        self,
        horizon: int = DEFAULT_HORIZON,
        oracle: bool = False,
        task: Task | None = None,
        render_mode: str | None = None,
    ):
        self.horizon = check_horizon(horizon)
        self.oracle = bool(oracle)
        check_render_backend(render_mode)
        self.render_mode = render_mode
        self.mujoco_env = self._build_mujoco_env(render_mode)
        self.observation_space = self.mujoco_env.observation_space
        self.action_space = self.mujoco_env.action_space
        self.metadata = dict(self.mujoco_env.metadata)
        mujoco = import_gymnasium_mujoco()[0]
        self._bad_state_warning_kinds = tuple(
            int(kind) for kind in (mujoco.mjtWarning.mjWARN_BADQPOS,
                                   mujoco.mjtWarning.mjWARN_BADQVEL,
                                   mujoco.mjtWarning.mjWARN_BADQACC)
        )
        self._task: Task | None = None
        # None until the first reset, so that a step before it fails clearly.
        self._elapsed_steps: int | None = None
        if task is not None:
            self.set_task(task)

    def _build_mujoco_env(self, render_mode: str | None) -> gym.Env:
        raise NotImplementedError

    def _sample_task(self, rng: np.random.Generator) -> Task:
        raise NotImplementedError

    def _reward(self, info: dict[str, Any]) -> tuple[float, dict[str, float]]:
        """Return the reward and its ``reward_*`` terms from the Gymnasium env's step ``info``."""
        raise NotImplementedError

    @classmethod
    def reward_constants(cls) -> dict[str, Any]:
        """Return the constants of the reward and the episode end, saved in run configs."""
        raise NotImplementedError

    # ------------------------------------------------------------------------- task

    @property
    def task(self) -> Task | None:
        return self._task

    @task.setter
    def task(self, task: Task) -> None:
        self.set_task(task)

    def set_task(self, task: Task) -> None:
        """Put the env on ``task`` from its next step on, and keep it across resets."""
        if not isinstance(task, self.task_type):
            raise TypeError(
                f"{type(self).__name__} takes a {self.task_type.__name__}, got {task!r}"
            )
        self._task = task

    # ------------------------------------------------------------------------- simulator access

    @property
    def model(self):
        """The MuJoCo ``MjModel``."""
        return self.mujoco_env.model

    @property
    def data(self):
        """The MuJoCo ``MjData``: ``qpos``, ``qvel`` and the rest of the simulation state."""
        return self.mujoco_env.data

    @property
    def dt(self) -> float:
        """Seconds of simulated time per env step."""
        return self.mujoco_env.dt

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Set the joint positions and velocities, as Gymnasium's ``MujocoEnv.set_state``."""
        self.mujoco_env.set_state(qpos, qvel)

    # ------------------------------------------------------------------------- Gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._task is None:
            # A separate stream, so that the first reset leaves np_random where every later
            # reset with the same seed leaves it.
            entropy = None if seed is None else np.random.SeedSequence(seed).spawn(1)[0]
            self.set_task(self._sample_task(np.random.default_rng(entropy)))
        # One generator for the whole env: the Gymnasium env draws its reset noise from it.
        self.mujoco_env.np_random = self.np_random
        obs, info = self.mujoco_env.reset()
        self._elapsed_steps = 0
        return obs, self._info(info)

    def step(self, action):
        if self._elapsed_steps is None:
            raise RuntimeError(f"call reset() before step() on {self._name}")
        warnings_before = self._bad_state_warnings()
        obs, _, terminated, _, info = self.mujoco_env.step(action)
        self._elapsed_steps += 1
        reward, reward_info = self._reward(info)
        self._check_divergence(warnings_before, reward, action)

        info = {key: value for key, value in info.items() if key != "reward_forward"}
        info.update(reward_info)
        truncated = self._elapsed_steps >= self.horizon
        return obs, reward, bool(terminated), truncated, self._info(info)

    def render(self):
        return self.mujoco_env.render()

    def close(self):
        self.mujoco_env.close()

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        if self.oracle:
            return {**info, "task": self._task.to_dict()}
        return info

    @property
    def _name(self) -> str:
        return self.spec.id if self.spec is not None else type(self).__name__

    # ------------------------------------------------------------------------- divergence

    def _bad_state_warnings(self) -> int:
        """Return how often MuJoCo has reset the simulation for a bad qpos, qvel or qacc."""
        return sum(int(self.data.warning[kind].number) for kind in self._bad_state_warning_kinds)

    def _check_divergence(self, warnings_before: int, reward: float, action) -> None:
        data = self.data
        if not (np.isfinite(data.qpos).all() and np.isfinite(data.qvel).all()):
            problem = "qpos or qvel contains NaN or infinite values"
        elif self._bad_state_warnings() > warnings_before:
            problem = (
                "MuJoCo found a NaN, infinite or huge value in qpos, qvel or qacc and reset the "
                "simulation"
            )
        elif not math.isfinite(reward):
            problem = f"the reward is {reward}"
        else:
            return
        raise NonFiniteError(
            f"{self._name} diverged at step {self._elapsed_steps} of the episode on task "
            f"{self._task!r}: {problem}. Action: {np.asarray(action).tolist()}. Check the "
            "actions sent to the env and any state set with set_state, because training on such a "
            "step corrupts the policy."
        )

    # ------------------------------------------------------------------------- snapshots

    @property
    def snapshot(self) -> dict[str, Any]:
        """The env's full state: task, step count, simulation state and random generator state.

        Assigning a snapshot restores it exactly, so that the following steps and resets give
        the same results as in the env it was taken from.
        """
        mujoco = import_gymnasium_mujoco()[0]
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, state, spec)
        return {
            "task": self._task,
            "elapsed_steps": self._elapsed_steps,
            "integration_state": state,
            # Body positions as the last step left them: MuJoCo computes them before the
            # step's last integration, and Ant-v5 reads the torso's to get its velocity.
            "body_positions": self.data.xpos.copy(),
            "rng_state": None if self._np_random is None else self.np_random.bit_generator.state,
        }

    @snapshot.setter
    def snapshot(self, snapshot: dict[str, Any]) -> None:
        mujoco = import_gymnasium_mujoco()[0]
        mujoco.mj_setState(self.model, self.data, snapshot["integration_state"],
                           mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self.model, self.data)
        self.data.xpos[:] = snapshot["body_positions"]
        self._task = snapshot["task"]
        self._elapsed_steps = snapshot["elapsed_steps"]
        if snapshot["rng_state"] is not None:
            self.np_random.bit_generator.state = snapshot["rng_state"]
            self.mujoco_env.np_random = self.np_random

    def __getstate__(self) -> dict[str, Any]:
        # Gymnasium's MuJoCo envs pickle as their constructor arguments only, which would
        # lose the simulation state. The snapshot carries it.
        state = self.__dict__.copy()
        state["_simulation"] = self.snapshot
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        simulation = state.pop("_simulation")
        self.__dict__.update(state)
        self.snapshot = simulation


class HalfCheetahTaskEnv(LocomotionEnv):
    """HalfCheetah with Gymnasium HalfCheetah-v5's dynamics, to which subclasses add the task term.

    Reward: ``task term - 0.05 * ||a||^2`` for the action ``a``. ``v_x`` in the task terms is
    the torso's x displacement over the step divided by ``dt`` (m/s), as HalfCheetah-v5
    computes it. Observation: HalfCheetah-v5's 17 values, qpos without the x position, then
    qvel. Episodes never terminate and are truncated after ``horizon`` steps.
    """

    def _build_mujoco_env(self, render_mode):
        half_cheetah_class = import_gymnasium_mujoco()[1]
        return half_cheetah_class(
            frame_skip=FRAME_SKIP,
            ctrl_cost_weight=HALFCHEETAH_CTRL_COST_WEIGHT,
            reset_noise_scale=RESET_NOISE_SCALE,
            render_mode=render_mode,
        )

    def _task_reward(self, info: dict[str, Any]) -> float:
        raise NotImplementedError

    def _reward(self, info):
        task_reward = float(self._task_reward(info))
        return task_reward + float(info["reward_ctrl"]), {"reward_task": task_reward}

    @classmethod
    def reward_constants(cls):
        return {
            "ctrl_cost_weight": HALFCHEETAH_CTRL_COST_WEIGHT,
            "frame_skip": FRAME_SKIP,
            "reset_noise_scale": RESET_NOISE_SCALE,
        }


class HalfCheetahVelEnv(HalfCheetahTaskEnv):
    """HalfCheetah running at a target forward velocity.

    Reward: ``-|v_x - target_velocity| - 0.05 * ||a||^2``, in the terms of
    :class:`HalfCheetahTaskEnv`. Tasks: :class:`~envs.locomotion_tasks.HalfCheetahVelTask`,
    target ~ Uniform(0, 2) m/s by default.
    """

    task_type = HalfCheetahVelTask

    def _sample_task(self, rng):
        return sample_velocity_tasks(rng, 1)[0]

    def _task_reward(self, info):
        return -abs(info["x_velocity"] - self._task.target_velocity)

    @classmethod
    def reward_constants(cls):
        return {**super().reward_constants(), "velocity_range": list(HALFCHEETAH_VELOCITY_RANGE)}


class HalfCheetahDirEnv(HalfCheetahTaskEnv):
    """HalfCheetah running forward (direction +1) or backward (direction -1).

    Reward: ``direction * v_x - 0.05 * ||a||^2``, in the terms of :class:`HalfCheetahTaskEnv`.
    Tasks: :class:`~envs.locomotion_tasks.HalfCheetahDirTask`.
    """

    task_type = HalfCheetahDirTask

    def _sample_task(self, rng):
        return sample_cheetah_direction_tasks(rng, 1)[0]

    def _task_reward(self, info):
        return self._task.direction * info["x_velocity"]


class AntTaskEnv(LocomotionEnv):
    """Ant with Gymnasium Ant-v5's reward terms and termination, plus a task term from subclasses.

    Reward: ``task term + 1.0 (healthy) - 0.5 * ||a||^2 - 5e-4 * ||clip(F, -1, 1)||^2``, where
    ``F`` are MuJoCo's external contact forces on the bodies (``cfrc_ext``). The episode
    terminates when the torso height leaves [0.2, 1.0] m, as in Ant-v5, and is truncated after
    ``horizon`` steps.
    """

    # Observations leave out the 78 clipped contact forces that Ant-v5 appends by default.
    # They carry no information about the direction or goal, are mostly zero or saturated at
    # the clip bound, and would make the input four times wider for every policy. The contact
    # cost still enters the reward.
    include_contact_forces = False
    include_xy_position = False

    def _build_mujoco_env(self, render_mode):
        ant_class = import_gymnasium_mujoco()[2]
        return ant_class(
            frame_skip=FRAME_SKIP,
            ctrl_cost_weight=ANT_CTRL_COST_WEIGHT,
            contact_cost_weight=ANT_CONTACT_COST_WEIGHT,
            contact_force_range=ANT_CONTACT_FORCE_RANGE,
            healthy_reward=ANT_HEALTHY_REWARD,
            healthy_z_range=ANT_HEALTHY_Z_RANGE,
            terminate_when_unhealthy=True,
            reset_noise_scale=RESET_NOISE_SCALE,
            exclude_current_positions_from_observation=not self.include_xy_position,
            include_cfrc_ext_in_observation=self.include_contact_forces,
            render_mode=render_mode,
        )

    def _task_reward(self, info: dict[str, Any]) -> float:
        raise NotImplementedError

    def _reward(self, info):
        task_reward = float(self._task_reward(info))
        reward = task_reward + sum(
            float(info[key]) for key in ("reward_survive", "reward_ctrl", "reward_contact")
        )
        return reward, {"reward_task": task_reward}

    @classmethod
    def reward_constants(cls):
        return {
            "healthy_reward": ANT_HEALTHY_REWARD,
            "healthy_z_range": list(ANT_HEALTHY_Z_RANGE),
            "ctrl_cost_weight": ANT_CTRL_COST_WEIGHT,
            "contact_cost_weight": ANT_CONTACT_COST_WEIGHT,
            "contact_force_range": list(ANT_CONTACT_FORCE_RANGE),
            "terminate_when_unhealthy": True,
            "contact_forces_in_observation": cls.include_contact_forces,
            "frame_skip": FRAME_SKIP,
            "reset_noise_scale": RESET_NOISE_SCALE,
        }


class AntDirEnv(AntTaskEnv):
    """Ant running in a direction: ``task term = (u_x, u_y) . (v_x, v_y)`` for a unit vector u.

    ``(v_x, v_y)`` is the torso's xy displacement over the step divided by ``dt`` (m/s), as
    Ant-v5 computes it. With ``planar=False`` tasks are
    :class:`~envs.locomotion_tasks.AntDirTask` (``u = (±1, 0)``). With ``planar=True`` they are
    :class:`~envs.locomotion_tasks.AntDir2DTask` (``u = (cos angle, sin angle)``). The other
    reward terms, termination and truncation are described in :class:`AntTaskEnv`. Observation:
    Ant-v5's qpos without the torso's x and y, then qvel (27 values).
    """

    def __init__(self, horizon=DEFAULT_HORIZON, oracle=False, task=None, render_mode=None,
                 planar: bool = False):
        self.planar = bool(planar)
        self.task_type = AntDir2DTask if self.planar else AntDirTask
        super().__init__(horizon, oracle, task, render_mode)

    def _sample_task(self, rng):
        if self.planar:
            return sample_ant_angle_tasks(rng, 1)[0]
        return sample_ant_direction_tasks(rng, 1)[0]

    def _task_reward(self, info):
        u_x, u_y = self._task.unit_vector()
        return u_x * info["x_velocity"] + u_y * info["y_velocity"]


class AntGoalEnv(AntTaskEnv):
    """Ant walking to a goal: ``task term = -||(x, y) - goal||``, in metres.

    ``(x, y)`` is the torso position after the step (qpos[0:2]). The observation therefore
    includes it: Ant-v5's full qpos, then qvel (29 values). The other reward terms,
    termination and truncation are described in :class:`AntTaskEnv`. Tasks:
    :class:`~envs.locomotion_tasks.AntGoalTask`, uniform by area in a disc of radius 3 m.
    """

    task_type = AntGoalTask
    include_xy_position = True

    def _sample_task(self, rng):
        return sample_ant_goal_tasks(rng, 1)[0]

    def _task_reward(self, info):
        return -math.hypot(info["x_position"] - self._task.goal_x,
                           info["y_position"] - self._task.goal_y)

    @classmethod
    def reward_constants(cls):
        return {**super().reward_constants(), "goal_radius": ANT_GOAL_RADIUS}


# ---------------------------------------------------------------------------------------------
# Task distributions


class LocomotionDistribution(TaskDistribution):
    """Base class of the locomotion task distributions.

    Subclasses set ``name``, ``task_type``, ``env_class``, ``default_num_train_tasks`` and
    implement ``sample_tasks``. Tasks are stepped in Gymnasium vector envs on CPU
    (:meth:`make_batched_env`), while the policy may run on any device.

    Args:
        horizon: steps per episode.
        episodes_per_trial: inner episodes per RL² trial.
        num_train_tasks: meta-train set size, or None for the family's default.
        num_test_tasks: meta-test set size. Each meta-test task costs
            ``episodes_per_trial * horizon`` simulator steps per evaluation, so the default
            is far below the bandits'.
        split_seed: seed of the meta-train / meta-test split.
    """

    task_type: type[Task] = Task
    env_class: type[LocomotionEnv] = LocomotionEnv
    # Large enough that training covers practically the whole continuous prior.
    default_num_train_tasks = 10_000

    def __init__(
        self,
        horizon: int = DEFAULT_HORIZON,
        episodes_per_trial: int = 2,
        num_train_tasks: int | None = None,
        num_test_tasks: int = 100,
        split_seed: int = 0,
    ):
        if num_train_tasks is None:
            num_train_tasks = self.default_num_train_tasks
        super().__init__(num_train_tasks, num_test_tasks, split_seed)
        self.horizon = check_horizon(horizon)
        if isinstance(episodes_per_trial, bool) or int(episodes_per_trial) < 1:
            raise ValueError(f"episodes_per_trial must be at least 1, got {episodes_per_trial!r}")
        self.episodes_per_trial = int(episodes_per_trial)
        finite = self.finite_tasks()
        if finite is not None and self.num_train_tasks != len(finite):
            raise ValueError(
                f"{self.name} has exactly {len(finite)} tasks, all of them meta-train, so "
                f"num_train_tasks must be {len(finite)}, got {num_train_tasks}"
            )

    @property
    def num_task_params(self) -> int:
        """k, the number of float parameters of one task."""
        return len(self.task_type.__dataclass_fields__)

    def task_params(self, tasks: Sequence[Task]) -> np.ndarray:
        """Return the parameters of ``tasks`` as float32, shape ``(num_tasks, k)``, in field order."""
        rows = [task.key() for task in tasks]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), self.num_task_params)

    def task_from_params(self, row) -> Task:
        """Rebuild the task of one row of :meth:`task_params` (any float sequence of length k)."""
        values = np.asarray(row, dtype=np.float64).reshape(-1)
        if values.shape != (self.num_task_params,):
            raise ValueError(
                f"{self.name} tasks have {self.num_task_params} parameters, got a row of "
                f"shape {np.shape(row)}"
            )
        return self.task_type(*values.tolist())

    def env_kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments of ``env_class`` besides horizon, oracle and render mode."""
        return {}

    def make_env(self, oracle: bool = False, render_mode: str | None = None) -> LocomotionEnv:
        return self.env_class(
            horizon=self.horizon, oracle=oracle, render_mode=render_mode, **self.env_kwargs()
        )

    def make_batched_env(self, num_envs: int, device: Any = "cpu", generator=None) -> VectorBatchedEnv:
        """Build a :class:`~envs.vector.VectorBatchedEnv` stepping ``num_envs`` MuJoCo envs.

        Up to one env per CPU core, each runs in its own worker process of a Gymnasium
        ``AsyncVectorEnv``. Beyond that, one process per env would mostly add process switching
        and memory (RL²'s default of 512 envs would start 512 processes), so the envs step one
        after the other in this process (``SyncVectorEnv``).

        Args:
            num_envs: environments stepped together.
            device: torch device of the returned tensors. The simulation runs on CPU.
            generator: ``torch.Generator`` that the workers' seed is drawn from.
        """
        asynchronous = int(num_envs) <= usable_cpu_count()
        return VectorBatchedEnv(self, num_envs, device=device, generator=generator,
                                asynchronous=asynchronous)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "horizon": self.horizon,
            "env_class": self.env_class.__name__,
            "env_kwargs": self.env_kwargs(),
            "reward": self.env_class.reward_constants(),
            "gymnasium_version": gym.__version__,
            "mujoco_version": installed_version("mujoco"),
        }


class HalfCheetahVelDistribution(LocomotionDistribution):
    """HalfCheetah target velocities ~ Uniform(0, 2) m/s, stepped in :class:`HalfCheetahVelEnv`."""

    name = "halfcheetah-vel"
    task_type = HalfCheetahVelTask
    env_class = HalfCheetahVelEnv

    def sample_tasks(self, rng, num_tasks):
        return sample_velocity_tasks(rng, num_tasks)


class HalfCheetahDirDistribution(LocomotionDistribution):
    """HalfCheetah running forward or backward (two tasks), stepped in :class:`HalfCheetahDirEnv`."""

    name = "halfcheetah-dir"
    task_type = HalfCheetahDirTask
    env_class = HalfCheetahDirEnv
    default_num_train_tasks = len(DIRECTIONS)

    def sample_tasks(self, rng, num_tasks):
        return sample_cheetah_direction_tasks(rng, num_tasks)

    def finite_tasks(self):
        return tuple(HalfCheetahDirTask(d) for d in DIRECTIONS)


class AntDirDistribution(LocomotionDistribution):
    """Ant running along +x or -x (two tasks), stepped in :class:`AntDirEnv`."""

    name = "ant-dir"
    task_type = AntDirTask
    env_class = AntDirEnv
    default_num_train_tasks = len(DIRECTIONS)

    def sample_tasks(self, rng, num_tasks):
        return sample_ant_direction_tasks(rng, num_tasks)

    def finite_tasks(self):
        return tuple(AntDirTask(d) for d in DIRECTIONS)

    def env_kwargs(self):
        return {"planar": False}


class AntDir2DDistribution(LocomotionDistribution):
    """Ant running at an angle ~ Uniform(0, 2 pi) in the xy plane, stepped in :class:`AntDirEnv`."""

    name = "ant-dir-2d"
    task_type = AntDir2DTask
    env_class = AntDirEnv

    def sample_tasks(self, rng, num_tasks):
        return sample_ant_angle_tasks(rng, num_tasks)

    def env_kwargs(self):
        return {"planar": True}


class AntGoalDistribution(LocomotionDistribution):
    """Ant goals uniform by area in a disc of radius 3 m, stepped in :class:`AntGoalEnv`."""

    name = "ant-goal"
    task_type = AntGoalTask
    env_class = AntGoalEnv

    def sample_tasks(self, rng, num_tasks):
        return sample_ant_goal_tasks(rng, num_tasks)
