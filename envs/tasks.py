"""Tasks, task distributions and their disjoint meta-train / meta-test splits."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

SPLITS = ("meta-train", "meta-test")


@dataclass(frozen=True)
class Task:
    """One MDP of a family, fixed by its parameters.

    Subclasses are frozen dataclasses whose fields are plain Python values (floats, ints,
    strings, bytes, tuples), so a task is hashable, compares by value and survives pickling
    unchanged.
    """

    def key(self) -> tuple:
        """Return the hashable identity used to keep the meta-train and meta-test splits apart."""
        # A shallow tuple: dataclasses.astuple deep-copies and is slow for 10^5 tasks.
        return tuple(getattr(self, field.name) for field in dataclasses.fields(self))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MetaSplit:
    """Disjoint meta-train and meta-test task sets of one distribution.

    Attributes:
        train: meta-train tasks; training trials sample from these.
        test: held-out meta-test tasks; evaluation uses these only.
        seed: the split seed both sets were drawn from.
    """

    train: tuple[Task, ...]
    test: tuple[Task, ...]
    seed: int

    def tasks(self, split: str) -> tuple[Task, ...]:
        if split == "meta-train":
            return self.train
        if split == "meta-test":
            return self.test
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


class TaskDistribution(ABC):
    """A family of tasks with a sampler and a fixed, disjoint meta-train / meta-test split.

    The split is drawn from ``split_seed``, which belongs to the distribution, not to a run.
    So every run and every agent trained on ``bandit-k5-n10`` is evaluated on the same held-out
    tasks, and no seed of a training run can move a meta-test task into its meta-train set.

    Subclasses implement :meth:`sample_tasks`, :meth:`make_env` and set ``name`` and
    ``episodes_per_trial``; cheap families also implement :meth:`make_batched_env`.

    A family with only a few tasks (HalfCheetahDir's two directions) has no task to hold
    out. It returns them from :meth:`finite_tasks`: meta-train is then every task, and
    meta-test cycles through them ``num_test_tasks`` times, each a fresh adaptation with its
    own noise, as in the MAML paper's direction experiments.

    Args:
        num_train_tasks: size of the meta-train set. Large by default, so that training sees
            practically the whole prior.
        num_test_tasks: size of the meta-test set.
        split_seed: seed of the split.
    """

    name: str = "task-distribution"
    episodes_per_trial: int = 1
    # True where inner episodes end at different steps (a maze ends at its goal), so that
    # meta-test also reports the steps of each inner episode.
    episode_length_varies: bool = False

    def __init__(self, num_train_tasks: int, num_test_tasks: int, split_seed: int = 0):
        for label, value in (("num_train_tasks", num_train_tasks), ("num_test_tasks", num_test_tasks)):
            if int(value) < 1:
                raise ValueError(f"{label} must be at least 1, got {value}")
        self.num_train_tasks = int(num_train_tasks)
        self.num_test_tasks = int(num_test_tasks)
        self.split_seed = int(split_seed)
        self._split: MetaSplit | None = None
        # Set by envs.make_distribution, so that saved agents can rebuild the distribution.
        self.registry_name: str | None = None
        self.registry_kwargs: dict[str, Any] = {}

    @abstractmethod
    def sample_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[Task]:
        """Draw ``num_tasks`` tasks from the prior with the caller's generator."""

    @abstractmethod
    def make_env(self, oracle: bool = False) -> gym.Env:
        """Build one Gymnasium environment of this family, with no task set yet.

        Args:
            oracle: expose the task parameters in ``info["task"]`` (for oracle references
                only; agents never get them otherwise).
        """

    def make_batched_env(self, num_envs: int, device: Any = "cpu", generator=None):
        """Build a batched torch environment stepping ``num_envs`` tasks at once.

        Args:
            num_envs: environments stepped together.
            device: torch device of every tensor.
            generator: ``torch.Generator`` on ``device`` for the environment's randomness.
        """
        raise NotImplementedError(
            f"{self.name} has no batched torch environment; train it through Gymnasium vector "
            "environments instead"
        )

    def episode_step_limit(self) -> int:
        """Return the most steps one inner episode can last: its horizon or time limit."""
        for name in ("horizon", "max_episode_steps"):
            value = getattr(self, name, None)
            if isinstance(value, int):
                return value
        raise NotImplementedError(
            f"{self.name} sets neither horizon nor max_episode_steps; override "
            "episode_step_limit() to say how long an inner episode can last"
        )

    def finite_tasks(self) -> tuple[Task, ...] | None:
        """Return every task of a family too small to hold tasks out; None for the rest."""
        return None

    @property
    def has_batched_env(self) -> bool:
        return type(self).make_batched_env is not TaskDistribution.make_batched_env

    def config(self) -> dict[str, Any]:
        """Return the constants that define this distribution, saved with every run."""
        return {
            "name": self.name,
            "episodes_per_trial": self.episodes_per_trial,
            "num_train_tasks": self.num_train_tasks,
            "num_test_tasks": self.num_test_tasks,
            "split_seed": self.split_seed,
        }

    def meta_split(self) -> MetaSplit:
        """Return the split, drawing it from ``split_seed`` on first use.

        Test tasks come from the first child stream of ``SeedSequence(split_seed)`` and
        train tasks from the second. A train task whose key equals a test task's is dropped
        and redrawn, so the two sets are disjoint by construction. Families with
        :meth:`finite_tasks` are the exception described in the class docstring.
        """
        if self._split is None and self.finite_tasks() is not None:
            every = tuple(self.finite_tasks())
            test = tuple(every[i % len(every)] for i in range(self.num_test_tasks))
            self._split = MetaSplit(train=every, test=test, seed=self.split_seed)
        if self._split is None:
            test_seq, train_seq = np.random.SeedSequence(self.split_seed).spawn(2)
            test = _unique_tasks(self, np.random.default_rng(test_seq), self.num_test_tasks, set())
            test_keys = {task.key() for task in test}
            train = _unique_tasks(
                self, np.random.default_rng(train_seq), self.num_train_tasks, test_keys,
                allow_repeats=True,
            )
            self._split = MetaSplit(train=tuple(train), test=tuple(test), seed=self.split_seed)
        return self._split

    def __getstate__(self) -> dict[str, Any]:
        # The split is a cache that any process can redraw from split_seed; leaving it out
        # keeps vector-env workers cheap to start.
        state = self.__dict__.copy()
        state["_split"] = None
        return state


def _unique_tasks(
    distribution: TaskDistribution,
    rng: np.random.Generator,
    num_tasks: int,
    excluded: set,
    allow_repeats: bool = False,
    max_rounds: int = 100,
) -> list[Task]:
    """Draw tasks until ``num_tasks`` are collected whose keys are not in ``excluded``.

    Test tasks are also kept distinct from one another; finite families whose prior cannot
    supply that many distinct tasks raise instead of looping forever.
    """
    tasks: list[Task] = []
    seen = set(excluded)
    for _ in range(max_rounds):
        for task in distribution.sample_tasks(rng, num_tasks - len(tasks)):
            key = task.key()
            if key in excluded or (not allow_repeats and key in seen):
                continue
            seen.add(key)
            tasks.append(task)
        if len(tasks) == num_tasks:
            return tasks
    raise ValueError(
        f"{distribution.name}: could not draw {num_tasks} distinct tasks outside the other split "
        f"after {max_rounds} rounds, only {len(tasks)}; the family may have fewer distinct "
        "tasks. Lower num_train_tasks or num_test_tasks (on the command line, for example "
        "--env-kwargs num_test_tasks=50), or choose a larger family."
    )
