"""The batched-env interface over Gymnasium vector envs, for families that need a simulator."""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import signal
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from envs.batched import BatchedEnv
from envs.tasks import Task, TaskDistribution

logger = logging.getLogger(__name__)


def _make_worker_env(make_env):
    """Build an env inside an AsyncVectorEnv worker process, deaf to Ctrl-C and SIGTERM.

    A forked worker inherits the trainer's stop handler, so a Ctrl-C in the terminal, which
    reaches the whole process group, would also interrupt every worker mid-step and leave
    the trainer writing its checkpoint to broken pipes. The trainer alone handles the signal
    and closes its workers; a worker whose trainer dies exits when its pipe closes.
    """
    # AsyncVectorEnv also calls the first factory once in the trainer itself, to read the
    # spaces; that call must leave the trainer's handlers alone.
    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return make_env()


def usable_cpu_count() -> int:
    """Return the CPU cores this process may run on (its affinity set, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class VectorBatchedEnv(BatchedEnv):
    """``num_envs`` Gymnasium envs of one distribution behind the :class:`~envs.batched.BatchedEnv` interface.

    The envs run in a Gymnasium ``AsyncVectorEnv``, one worker process each, or in a
    ``SyncVectorEnv`` in this process when ``num_envs`` is 1 or ``asynchronous=False``.
    Autoreset is disabled, so that, as in every :class:`BatchedEnv`, only :meth:`reset`
    resets an env. :class:`~envs.batched.BatchedTrialEnv` therefore runs RL² trials over
    them unchanged. Observations, rewards and flags come back as torch tensors on
    ``device``, while the simulation stays on CPU.

    Task parameters are rows of ``distribution.task_params``. :meth:`set_tasks` rebuilds the
    tasks with ``distribution.task_from_params`` and assigns each worker's env its own one
    through ``set_attr("task", ...)``.

    Actions are clipped into a Box action space before they are sent, as stable-baselines3
    does for Gaussian policies. So the control cost stays bounded by the action bounds while
    the policy keeps its unclipped sample for the log-probability.

    Randomness: one integer seed is drawn from ``generator`` at construction. The first
    reset of env ``i`` uses seed ``seed + i`` (Gymnasium's convention for an integer vector
    seed) and later resets continue that env's stream. A run with the same generator state
    is therefore reproducible.

    Call :meth:`close` (or use the object as a context manager) to stop the workers.

    Args:
        distribution: a task distribution with ``make_env`` and ``task_from_params``.
        num_envs: environments stepped together.
        device: torch device of the returned tensors.
        generator: ``torch.Generator`` the seed is drawn from, or None for torch's global one.
        asynchronous: step the envs in worker processes (ignored when ``num_envs`` is 1).
        context: ``multiprocessing`` start method for the workers (``"fork"``, ``"spawn"``,
            ``"forkserver"``), or None for the platform default.
    """

    def __init__(
        self,
        distribution: TaskDistribution,
        num_envs: int,
        device: Any = "cpu",
        generator: torch.Generator | None = None,
        asynchronous: bool = True,
        context: str | None = None,
    ):
        super().__init__(num_envs, device, generator)
        if not hasattr(distribution, "task_from_params"):
            raise TypeError(
                f"{distribution.name} has no task_from_params(row), which a vector env needs to "
                "rebuild tasks from parameter rows. Add it to the distribution class."
            )
        self.distribution = distribution
        generator_device = generator.device if generator is not None else "cpu"
        self.seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator_device))

        env_fns = [distribution.make_env] * self.num_envs
        if asynchronous and self.num_envs > 1:
            # Gymnasium's AsyncVectorEnv runs one process per env, so more envs than CPU cores
            # mostly adds process switching and memory.
            cpus = usable_cpu_count()
            if self.num_envs > cpus:
                logger.warning(
                    "%s: starting %d worker processes, one per env, on %d CPUs. Pass fewer envs "
                    "or asynchronous=False to step them in this process",
                    distribution.name, self.num_envs, cpus,
                )
            worker_fns = [functools.partial(_make_worker_env, fn) for fn in env_fns]
            self.vector_env = AsyncVectorEnv(
                worker_fns, autoreset_mode=AutoresetMode.DISABLED, context=context
            )
        else:
            self.vector_env = SyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.DISABLED)

        observation_space = self.vector_env.single_observation_space
        if not (isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 1):
            self.close()
            raise TypeError(
                f"{distribution.name} envs have the observation space {observation_space}, but a "
                "batched env needs a 1-D Box. Flatten the observations with a Gymnasium wrapper."
            )
        self.observation_dim = int(observation_space.shape[0])
        self.action_space = self.vector_env.single_action_space
        self._tasks: list[Task | None] = [None] * self.num_envs
        self._seeded = np.zeros(self.num_envs, dtype=bool)
        self._obs = torch.zeros(self.num_envs, self.observation_dim, device=self.device)

    # ------------------------------------------------------------------------- BatchedEnv

    def set_tasks(self, mask: torch.Tensor, task_params: torch.Tensor) -> None:
        """Put the masked envs on the tasks of their rows of ``task_params`` ``(num_envs, k)``.

        The new task takes effect at the env's next step. Call :meth:`reset` to start an
        episode on it.
        """
        mask_np = self._mask_to_numpy(mask)
        if not mask_np.any():
            return
        if any(task is None for task in self._tasks):
            # Envs that drew their own task at reset keep it, so read them all first.
            self._tasks = list(self.vector_env.get_attr("task"))
        rows = task_params.detach().cpu().numpy()
        for index in np.flatnonzero(mask_np):
            self._tasks[index] = self.distribution.task_from_params(rows[index])
        self.vector_env.set_attr("task", list(self._tasks))

    def reset(self, mask: torch.Tensor) -> torch.Tensor:
        mask_np = self._mask_to_numpy(mask)
        if not mask_np.any():
            return self._obs
        seeds = [
            self.seed + index if reset and not seeded else None
            for index, (reset, seeded) in enumerate(zip(mask_np, self._seeded))
        ]
        obs, _ = self.vector_env.reset(seed=seeds, options={"reset_mask": mask_np})
        self._seeded |= mask_np
        new_obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32).to(self.device)
        rows = torch.as_tensor(mask_np, device=self.device)
        self._obs = torch.where(rows[:, None], new_obs, self._obs)
        return self._obs

    def step(self, actions: torch.Tensor, noise: torch.Tensor | None = None):
        """Step every env and return ``(obs, reward, terminated, truncated)``, without resetting.

        Args:
            actions: ``(num_envs, *action_shape)``, on any device.
            noise: must be None, because the simulators draw their own randomness.
        """
        if noise is not None:
            raise ValueError(
                f"{self.distribution.name} envs draw their randomness inside the simulator and "
                "take no noise. Call step(actions) without noise."
            )
        actions_np = actions.detach().cpu().numpy()
        if isinstance(self.action_space, gym.spaces.Box):
            actions_np = np.clip(actions_np, self.action_space.low, self.action_space.high)
            actions_np = actions_np.astype(self.action_space.dtype, copy=False)
        obs, rewards, terminated, truncated, _ = self.vector_env.step(actions_np)
        self._obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32).to(self.device)
        return (
            self._obs,
            torch.as_tensor(rewards, dtype=torch.float32).to(self.device),
            torch.as_tensor(terminated, dtype=torch.bool).to(self.device),
            torch.as_tensor(truncated, dtype=torch.bool).to(self.device),
        )

    def current_tasks(self) -> list[Task]:
        """Return each env's current task, read from its worker."""
        return list(self.vector_env.get_attr("task"))

    # ------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Return what resumes the envs exactly: each env's snapshot, observations and seeds."""
        return {
            "snapshots": list(self.vector_env.get_attr("snapshot")),
            "obs": self._obs.clone(),
            "seed": self.seed,
            "seeded": torch.as_tensor(self._seeded),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        snapshots = list(state["snapshots"])
        if len(snapshots) != self.num_envs:
            raise ValueError(
                f"invalid state: it contains {len(snapshots)} env snapshots, but this batched env "
                f"has {self.num_envs} envs"
            )
        self.vector_env.set_attr("snapshot", snapshots)
        self._tasks = [snapshot["task"] for snapshot in snapshots]
        self._obs = state["obs"].to(self.device)
        self.seed = int(state["seed"])
        self._seeded = state["seeded"].cpu().numpy().astype(bool)

    # ------------------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Stop the worker processes. Calling it again does nothing."""
        if not self.vector_env.closed:
            self.vector_env.close()

    def __enter__(self) -> VectorBatchedEnv:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _mask_to_numpy(self, mask: torch.Tensor) -> np.ndarray:
        mask_np = mask.detach().cpu().numpy().astype(bool).reshape(-1)
        if mask_np.shape != (self.num_envs,):
            raise ValueError(f"expected a mask of shape ({self.num_envs},), got {tuple(mask.shape)}")
        return mask_np
