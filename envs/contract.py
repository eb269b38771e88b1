"""Check that a task distribution and its environment keep the contract that training relies on.

:func:`check_task_distribution` runs a few seeded episodes on a handful of tasks and raises
:class:`ContractError` at the first broken rule, with the rule's name, the distribution and
env classes, the offending value and the fix. ``envs.make_distribution`` runs it on every
``package.module:factory`` distribution, so ``scripts/train.py`` and ``scripts/evaluate.py``
reject a broken env before any training starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from envs.tasks import Task, TaskDistribution
from envs.vector import VectorBatchedEnv

RULE_DISTRIBUTION = "distribution attributes"
RULE_SAMPLE_TASKS = "tasks are immutable values"
RULE_SEEDED_SAMPLER = "sample_tasks draws from its generator"
RULE_ENV_TYPE = "make_env returns a gymnasium.Env"
RULE_SET_TASK = "env has set_task"
RULE_SPACES = "supported spaces"
RULE_KEEPS_TASK = "env keeps its task"
RULE_RESET = "reset returns (observation, info)"
RULE_STEP = "step accepts sampled actions"
RULE_OBSERVATION = "observation inside observation_space"
RULE_REWARD = "reward is a finite number"
RULE_INFO = "task hidden from info"
RULE_PICKLE = "env survives pickling"
RULE_TASK_PARAMS = "task_params round trip"
RULE_TASK_ASSIGNMENT = "task assignment repeats set_task"
RULE_SNAPSHOT = "snapshot restores the env"

# Every rule, in the order the check tests them. The last three apply only to distributions
# with a batched env (task_params) or a VectorBatchedEnv (task assignment, snapshot).
RULES = (
    RULE_DISTRIBUTION,
    RULE_SAMPLE_TASKS,
    RULE_SEEDED_SAMPLER,
    RULE_ENV_TYPE,
    RULE_SET_TASK,
    RULE_SPACES,
    RULE_KEEPS_TASK,
    RULE_RESET,
    RULE_STEP,
    RULE_OBSERVATION,
    RULE_REWARD,
    RULE_INFO,
    RULE_PICKLE,
    RULE_TASK_PARAMS,
    RULE_TASK_ASSIGNMENT,
    RULE_SNAPSHOT,
)

# Maximum length of the repr of a task or value quoted in a message, because maze layouts
# and MDP tables are long.
_MAX_REPR = 160
# Info values are searched this deep (nested dicts and lists) and this wide.
_MAX_INFO_DEPTH = 3
_MAX_INFO_ITEMS = 1024
# Marks an attribute that getattr did not find, where None is a valid value.
_MISSING = object()


class ContractError(ValueError):
    """A task distribution or its environment breaks a rule of the environment contract.

    Attributes:
        rule: the rule's name, one of :data:`RULES`.
    """

    def __init__(self, rule: str, subject: str, problem: str, fix: str):
        self.rule = rule
        super().__init__(f"{subject} breaks the contract rule '{rule}': {problem}. Fix: {fix}")


def check_task_distribution(
    distribution: TaskDistribution, num_tasks: int = 3, num_steps: int = 32, seed: int = 0
) -> None:
    """Run a distribution's env on a few sampled tasks and raise at the first broken rule.

    The check draws ``num_tasks`` tasks with its own generator, without drawing the
    meta-train / meta-test split. It steps one env ``num_steps`` times per task with actions
    sampled from its action space. Then it replays one episode in fresh envs the way vector
    envs and checkpoints drive them. It is seeded, so the same distribution passes or fails
    the same way every time.

    Args:
        distribution: the task distribution to check.
        num_tasks: tasks to run the env on, at least 2 so that a value that merely equals a
            task parameter on one task can be distinguished from a leak.
        num_steps: env steps per task.
        seed: seed of the task draw, the resets and the sampled actions.

    Raises:
        ContractError: naming the broken rule (one of :data:`RULES`), the classes, the
            offending value and the fix.
    """
    if int(num_tasks) < 2 or int(num_steps) < 1:
        raise ValueError(
            f"num_tasks must be at least 2 and num_steps at least 1, got num_tasks={num_tasks}, "
            f"num_steps={num_steps}"
        )
    subject = f"task distribution {_class_name(distribution)}"
    _check_attributes(subject, distribution)
    subject = f"task distribution {_class_name(distribution)} ({distribution.name!r})"
    tasks = _check_sampled_tasks(subject, distribution, int(num_tasks), seed)

    env = distribution.make_env()
    if not isinstance(env, gym.Env):
        raise ContractError(
            RULE_ENV_TYPE, subject,
            f"make_env() returned {_short(env)} of type {_class_name(env)}",
            "return an instance of a gymnasium.Env subclass, built fresh on each call",
        )
    subject = f"{subject} with env {_class_name(env.unwrapped)}"
    try:
        _check_env_interface(subject, env)
        runs = [_run_task(subject, env, task, int(num_steps), seed + index)
                for index, task in enumerate(tasks)]
        _check_info(subject, runs)
        _check_pickling(subject, env, tasks[-1])
    finally:
        env.close()

    if distribution.has_batched_env:
        _check_task_params(subject, distribution, tasks)
        if _uses_vector_env(distribution, seed):
            _check_vector_replay(subject, distribution, runs[0].first_episode)


# --------------------------------------------------------------------------- distribution


def _check_attributes(subject: str, distribution: TaskDistribution) -> None:
    if not hasattr(distribution, "split_seed"):
        raise ContractError(
            RULE_DISTRIBUTION, subject,
            "it has no split_seed, so TaskDistribution.__init__ never ran",
            "call super().__init__(num_train_tasks, num_test_tasks, split_seed) in __init__",
        )
    name = getattr(distribution, "name", None)
    if not isinstance(name, str) or not name:
        raise ContractError(
            RULE_DISTRIBUTION, subject, f"its name is {name!r}",
            "set the class attribute name to a short non-empty string, for example 'line-goal'",
        )
    episodes = distribution.episodes_per_trial
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ContractError(
            RULE_DISTRIBUTION, subject, f"episodes_per_trial is {episodes!r}",
            "set episodes_per_trial, the inner episodes of one RL² trial, to an int of at least 1",
        )


def _check_sampled_tasks(
    subject: str, distribution: TaskDistribution, num_tasks: int, seed: int
) -> list[Task]:
    sampled = distribution.sample_tasks(np.random.default_rng(seed), num_tasks)
    if not isinstance(sampled, Sequence):
        raise ContractError(
            RULE_SAMPLE_TASKS, subject,
            f"sample_tasks(rng, {num_tasks}) returned {_short(sampled)}",
            "return a list of exactly num_tasks tasks",
        )
    tasks = list(sampled)
    if len(tasks) != num_tasks:
        raise ContractError(
            RULE_SAMPLE_TASKS, subject,
            f"sample_tasks(rng, {num_tasks}) returned {len(tasks)} tasks",
            "return a list of exactly num_tasks tasks",
        )
    fix = ("define the task as a frozen dataclass subclass of envs.Task whose fields are plain "
           "values (float, int, str, bytes, tuples of them), for example "
           "@dataclass(frozen=True) class MyTask(Task): goal: float")
    for task in tasks:
        if not isinstance(task, Task):
            raise ContractError(
                RULE_SAMPLE_TASKS, subject,
                f"sample_tasks returned {_short(task)} of type {_class_name(task)}, not an envs.Task",
                fix,
            )
        if not dataclasses.fields(task) or not type(task).__dataclass_params__.frozen:
            raise ContractError(
                RULE_SAMPLE_TASKS, subject,
                f"the task class {_class_name(task)} is not a frozen dataclass with fields, so "
                "its tasks have no parameters to compare, hash and split by",
                fix,
            )
        try:
            hash(task.key())
            survives = pickle.loads(pickle.dumps(task)) == task
        except (TypeError, ValueError, pickle.PicklingError) as error:
            raise ContractError(
                RULE_SAMPLE_TASKS, subject,
                f"the task {_short(task)} cannot be hashed, compared or pickled "
                f"({type(error).__name__}: {error})",
                fix + ", with arrays stored as tuples",
            ) from error
        if not survives:
            raise ContractError(
                RULE_SAMPLE_TASKS, subject,
                f"the task {_short(task)} does not equal its own pickled copy",
                fix,
            )

    again = list(distribution.sample_tasks(np.random.default_rng(seed), num_tasks))
    if again != tasks:
        raise ContractError(
            RULE_SEEDED_SAMPLER, subject,
            f"two generators with the same seed gave different tasks: {_short(tasks)} and "
            f"{_short(again)}",
            "draw every random number from the rng argument of sample_tasks, never from "
            "np.random or random, so that every process redraws the same meta-train / "
            "meta-test split from split_seed",
        )
    return tasks


# --------------------------------------------------------------------------- env


def _check_env_interface(subject: str, env: gym.Env) -> None:
    if not callable(getattr(env.unwrapped, "set_task", None)):
        raise ContractError(
            RULE_SET_TASK, subject,
            "env.unwrapped has no callable set_task, so a task cannot be put on the env",
            "add a method set_task(self, task) that stores the task and keeps it across resets "
            "until the next set_task",
        )
    observation_space = env.observation_space
    if not (isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 1):
        raise ContractError(
            RULE_SPACES, subject,
            f"the observation_space is {observation_space}, but trials and batched envs take a "
            "1-D Box",
            "flatten the observation into a 1-D gymnasium.spaces.Box, for example with "
            "gymnasium.wrappers.FlattenObservation inside make_env",
        )
    action_space = env.action_space
    discrete = isinstance(action_space, gym.spaces.Discrete)
    box = isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1
    if not (discrete or box):
        raise ContractError(
            RULE_SPACES, subject,
            f"the action_space is {action_space}, but the agents act in a Discrete or 1-D Box space",
            "use gymnasium.spaces.Discrete or a 1-D gymnasium.spaces.Box",
        )


@dataclass
class _Episode:
    """The first episode of one task, recorded for the replay in fresh envs."""

    task: Task
    seed: int
    observations: list[Any] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)


@dataclass
class _Run:
    """The infos one env returned on one task, each with the call that produced it."""

    task: Task
    infos: list[tuple[str, dict]]
    first_episode: _Episode


def _run_task(subject: str, env: gym.Env, task: Task, num_steps: int, seed: int) -> _Run:
    """Put ``env`` on ``task``, reset it with ``seed`` and step it ``num_steps`` times."""
    unwrapped = env.unwrapped
    unwrapped.set_task(task)
    _check_current_task(subject, env, task, "after set_task")
    env.action_space.seed(seed)

    call = f"reset(seed={seed}) on task {_short(task)}"
    observation, info = _reset(subject, env, call, seed)
    _check_current_task(subject, env, task, f"after {call}")
    infos = [(call, info)]
    episode = _Episode(task, seed, observations=[observation])
    recording = True
    episode_start = f"reset(seed={seed})"
    episode_step = 0
    for _ in range(num_steps):
        action = env.action_space.sample()
        episode_step += 1
        call = (f"step {episode_step} after {episode_start} on task {_short(task)}, with the "
                f"action {_short(_as_list(action))} sampled from the action_space,")
        observation, reward, terminated, truncated, info = _step(subject, env, call, action)
        infos.append((call, info))
        if recording:
            episode.actions.append(action)
            episode.observations.append(observation)
            episode.rewards.append(reward)
        if terminated or truncated:
            recording = False
            episode_start = "reset()"
            episode_step = 0
            call = f"reset() on task {_short(task)} after the end of an episode"
            _, info = _reset(subject, env, call, None)
            infos.append((call, info))
            _check_current_task(subject, env, task, f"after {call}")
    return _Run(task, infos, episode)


def _reset(subject: str, env: gym.Env, call: str, seed: int | None) -> tuple[Any, dict]:
    try:
        result = env.reset(seed=seed)
    except Exception as error:
        raise ContractError(
            RULE_RESET, subject, f"{call} raised {type(error).__name__}: {error}",
            "accept reset(seed=None, options=None) on an env whose task was set with set_task",
        ) from error
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise ContractError(
            RULE_RESET, subject, f"{call} returned {_short(result)}",
            "return the pair (observation, info) with info a dict, as Gymnasium 1.x does",
        )
    _check_observation(subject, env, result[0], call)
    return result


def _step(subject: str, env: gym.Env, call: str, action) -> tuple:
    try:
        result = env.step(action)
    except Exception as error:
        raise ContractError(
            RULE_STEP, subject, f"{call} raised {type(error).__name__}: {error}",
            "accept every action that action_space.sample() returns (a numpy integer for "
            "Discrete, an array of the space's shape and dtype for Box), or correct the "
            "action_space",
        ) from error
    if not (isinstance(result, tuple) and len(result) == 5 and isinstance(result[4], dict)):
        raise ContractError(
            RULE_STEP, subject, f"{call} returned {_short(result)}",
            "return (observation, reward, terminated, truncated, info) with info a dict, as "
            "Gymnasium 1.x does",
        )
    observation, reward, terminated, truncated, info = result
    _check_observation(subject, env, observation, call)
    try:
        finite = math.isfinite(float(reward))
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise ContractError(
            RULE_REWARD, subject, f"{call} returned the reward {_short(reward)}",
            "return one finite float per step; a NaN or infinite reward means the dynamics or "
            "the reward function went wrong",
        )
    return observation, float(reward), bool(terminated), bool(truncated), info


def _check_observation(subject: str, env: gym.Env, observation, call: str) -> None:
    space = env.observation_space
    value = np.asarray(observation) if not isinstance(observation, np.ndarray) else observation
    if space.contains(value):
        return
    problem = f"{call} returned the observation {_short(_as_list(value))}, outside {space}"
    if value.shape != space.shape:
        problem += f": its shape is {value.shape}, the space's is {space.shape}"
        fix = "return observations of the space's shape, or declare the shape you return"
    elif not np.can_cast(value.dtype, space.dtype):
        problem += f": its dtype {value.dtype} does not cast safely to the space's {space.dtype}"
        fix = (f"return observations of dtype {space.dtype}, for example "
               f"np.asarray(observation, dtype=np.{space.dtype})")
    elif np.issubdtype(value.dtype, np.number) and not np.all(np.isfinite(value)):
        problem += ": it contains NaN or infinite values"
        fix = "find where the dynamics produce the non-finite value"
    else:
        outside = np.flatnonzero((value < space.low) | (value > space.high))
        problem += (f": elements {outside.tolist()} are {_as_list(value[outside])}, but the "
                    f"bounds there are low={_as_list(space.low[outside])} "
                    f"high={_as_list(space.high[outside])}")
        fix = ("widen low and high of the observation_space to every value the env can return, "
               "or clip the observation into them")
    raise ContractError(RULE_OBSERVATION, subject, problem, fix)


def _check_current_task(subject: str, env: gym.Env, task: Task, when: str) -> None:
    current = getattr(env.unwrapped, "task", _MISSING)
    if current is _MISSING:
        raise ContractError(
            RULE_KEEPS_TASK, subject, "env.unwrapped has no task attribute",
            "add a task property that returns the task given to set_task, because trial "
            "wrappers and vector envs read it",
        )
    if current != task:
        raise ContractError(
            RULE_KEEPS_TASK, subject,
            f"{when}, env.unwrapped.task is {_short(current)}, not the task set, {_short(task)}",
            "store the task in set_task and keep it across resets until the next set_task",
        )


def _check_pickling(subject: str, env: gym.Env, task: Task) -> None:
    try:
        copy = pickle.loads(pickle.dumps(env))
    except Exception as error:
        raise ContractError(
            RULE_PICKLE, subject,
            f"pickling the env after a step failed with {type(error).__name__}: {error}",
            "keep unpicklable members (open files, simulator handles, lambdas) out of the "
            "pickled state with __getstate__ and __setstate__, as envs.LocomotionEnv does",
        ) from error
    try:
        restored = getattr(copy.unwrapped, "task", None)
        if restored != task:
            raise ContractError(
                RULE_PICKLE, subject,
                f"after pickling, env.unwrapped.task is {_short(restored)} instead of {_short(task)}",
                "keep the task in an instance attribute that pickling carries, and restore it in "
                "__setstate__ if you define one",
            )
    finally:
        copy.close()


# --------------------------------------------------------------------------- info


def _check_info(subject: str, runs: Sequence[_Run]) -> None:
    """Raise if an info names a task field, contains the task, or contains a task parameter.

    A value equal to a parameter of the current task is a leak unless it is explained
    otherwise: the same path carries that value also on a task whose parameter differs (a
    constant of the env, say).
    """
    fix = ("remove the task and its parameters from info, or pass them only when the env is "
           "built with make_env(oracle=True), under info['task']")
    field_names = {item.name for item in dataclasses.fields(runs[0].task)}
    matches = []
    for index, run in enumerate(runs):
        candidates = _distinctive_values(run.task)
        whole = (run.task, run.task.to_dict())
        for call, info in run.infos:
            for path, key, value in _walk_info(info):
                if key == "task" or key in field_names:
                    raise ContractError(
                        RULE_INFO, subject,
                        f"{call} returned info with the key {path}, named like the task or one of "
                        f"its fields {sorted(field_names)}",
                        fix,
                    )
                if any(_equal(value, target) for target in whole):
                    raise ContractError(
                        RULE_INFO, subject,
                        f"{call} returned info whose {path} contains the task {_short(run.task)}",
                        fix,
                    )
                for name, parameter in candidates:
                    if _contains_value(value, parameter):
                        matches.append((index, call, path, name, parameter))

    for index, call, path, name, parameter in matches:
        if not _explained(runs, index, path, name, parameter):
            raise ContractError(
                RULE_INFO, subject,
                f"{call} returned info whose {path} contains {parameter!r}, the value of the task "
                f"field {name!r} of {_short(runs[index].task)}, and follows the task",
                fix,
            )


def _distinctive_values(task: Task) -> list[tuple[str, Any]]:
    """Return the parameter values of ``task`` that an info value would not match by chance.

    Those are non-integral floats, also inside tuples, and strings or bytes of 8 or more
    characters. Integers and integral floats (a direction of +1 or -1, a maze square) are
    left out, because positions, counters and flags take such values all the time.
    """
    values: list[tuple[str, Any]] = []
    for item in dataclasses.fields(task):
        value = getattr(task, item.name)
        if isinstance(value, (str, bytes)):
            if len(value) >= 8:
                values.append((item.name, value))
            continue
        flat = value if isinstance(value, (tuple, list)) else (value,)
        for element in flat[:_MAX_INFO_ITEMS]:
            if isinstance(element, (float, np.floating)) and math.isfinite(element) \
                    and not float(element).is_integer():
                values.append((item.name, float(element)))
    return values


def _walk_info(info: dict, prefix: str = "info", depth: int = 0) -> Iterator[tuple[str, Any, Any]]:
    """Yield ``(path, key, value)`` for every entry of ``info``, nested dicts and lists included."""
    for key, value in list(info.items())[:_MAX_INFO_ITEMS]:
        path = f"{prefix}[{key!r}]"
        yield path, key, value
        if depth + 1 >= _MAX_INFO_DEPTH:
            continue
        if isinstance(value, dict):
            yield from _walk_info(value, path, depth + 1)
        elif isinstance(value, (list, tuple)) and not _is_numeric(value):
            for position, element in enumerate(value[:_MAX_INFO_ITEMS]):
                element_path = f"{path}[{position}]"
                yield element_path, None, element
                if isinstance(element, dict):
                    yield from _walk_info(element, element_path, depth + 2)


def _contains_value(value, parameter) -> bool:
    """Return whether ``value`` is or contains ``parameter``, floats compared at float32 precision."""
    if isinstance(parameter, (str, bytes)):
        return isinstance(value, type(parameter)) and parameter in value
    if not _is_numeric(value):
        return False
    numbers = np.asarray(value, dtype=np.float64).reshape(-1)[:_MAX_INFO_ITEMS]
    return bool(np.any(numbers.astype(np.float32) == np.float32(parameter)))


def _explained(runs: Sequence[_Run], index: int, path: str, name: str, parameter) -> bool:
    """Return whether ``path`` also contains ``parameter`` on a task whose field ``name`` differs."""
    for other, run in enumerate(runs):
        same_parameter = any(_contains_value(value, parameter)
                             for value in _field_values(run.task, name))
        if other == index or same_parameter:
            continue
        for _, info in run.infos:
            for other_path, _, value in _walk_info(info):
                if other_path == path and _contains_value(value, parameter):
                    return True
    return False


def _field_values(task: Task, name: str) -> tuple:
    value = getattr(task, name)
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _is_numeric(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.number)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "iuf"
    if isinstance(value, (list, tuple)) and 0 < len(value) <= _MAX_INFO_ITEMS:
        return all(isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in value)
    return False


# --------------------------------------------------------------------------- batched envs


def _check_task_params(subject: str, distribution: TaskDistribution, tasks: list[Task]) -> None:
    """Check the rows that batched envs take tasks as, and their way back to tasks."""
    task_params = getattr(distribution, "task_params", None)
    if not callable(task_params):
        raise ContractError(
            RULE_TASK_PARAMS, subject,
            "the distribution has a batched env but no task_params(tasks), which the batched "
            "trials need to hand tasks to it",
            "add task_params(tasks) returning a float array of shape (len(tasks), k), one row "
            "of task parameters per task",
        )
    rows = np.asarray(task_params(tasks))
    if rows.ndim != 2 or rows.shape[0] != len(tasks) or not np.issubdtype(rows.dtype, np.number) \
            or not np.all(np.isfinite(rows)):
        raise ContractError(
            RULE_TASK_PARAMS, subject,
            f"task_params of {len(tasks)} tasks returned {_short(_as_list(rows))} with shape "
            f"{rows.shape} and dtype {rows.dtype}",
            "return finite numbers of shape (len(tasks), k), one row per task",
        )
    task_from_params = getattr(distribution, "task_from_params", None)
    if not callable(task_from_params):
        return
    for task, row in zip(tasks, rows):
        rebuilt = task_from_params(row)
        rebuilt_row = np.asarray(task_params([rebuilt])).reshape(-1)
        if not np.array_equal(rebuilt_row, row.reshape(-1)):
            raise ContractError(
                RULE_TASK_PARAMS, subject,
                f"task_from_params({_short(_as_list(row))}) returned {_short(rebuilt)}, whose "
                f"row is {_short(_as_list(rebuilt_row))}, so a vector env would step a "
                f"different task than {_short(task)}",
                "make task_from_params the inverse of task_params: rebuild the task from the "
                "row's values in the order task_params writes them",
            )


def _uses_vector_env(distribution: TaskDistribution, seed: int) -> bool:
    """Return whether the distribution's batched env steps its Gymnasium envs (a VectorBatchedEnv)."""
    generator = torch.Generator().manual_seed(seed)
    batched = distribution.make_batched_env(1, "cpu", generator)
    try:
        return isinstance(batched, VectorBatchedEnv)
    finally:
        close = getattr(batched, "close", None)
        if callable(close):
            close()


def _check_vector_replay(subject: str, distribution: TaskDistribution, episode: _Episode) -> None:
    """Replay ``episode`` in fresh envs the way a VectorBatchedEnv and its checkpoints drive them.

    A vector env puts each worker on its task by assigning ``env.task`` (Gymnasium's
    ``set_attr``), and a checkpoint saves ``env.snapshot`` and assigns it to a new env on
    resume. Both must reproduce the recorded episode exactly.
    """
    replica = distribution.make_env()
    restored = distribution.make_env()
    try:
        try:
            replica.unwrapped.task = episode.task
        except AttributeError as error:
            raise ContractError(
                RULE_TASK_ASSIGNMENT, subject,
                f"assigning env.unwrapped.task failed with AttributeError: {error}, and vector "
                "envs put each worker on its task by assignment",
                "make task a property whose setter calls set_task",
            ) from error
        _check_current_task(subject, replica, episode.task, "after assigning env.task")
        assignment_fix = ("make task a property whose setter calls set_task, and draw every random "
                          f"number from self.np_random so that reset(seed={episode.seed}) repeats "
                          "an episode exactly")
        half = len(episode.actions) // 2
        with _replay_errors(subject, RULE_TASK_ASSIGNMENT, "the env whose task was assigned",
                            episode, assignment_fix):
            observation, _ = replica.reset(seed=episode.seed)
            _compare_replay(subject, RULE_TASK_ASSIGNMENT, "the env whose task was assigned",
                            episode, 0, observation, None, assignment_fix)
            for step in range(half):
                observation, reward, *_ = replica.step(episode.actions[step])
                _compare_replay(subject, RULE_TASK_ASSIGNMENT, "the env whose task was assigned",
                                episode, step + 1, observation, reward, assignment_fix)

        snapshot_fix = ("add a snapshot property that returns the env's full state (task, "
                        "simulation state, step count, self.np_random.bit_generator.state) and a "
                        "setter that restores all of it into a newly built env")
        try:
            snapshot = replica.unwrapped.snapshot
            restored.unwrapped.snapshot = snapshot
        except AttributeError as error:
            raise ContractError(
                RULE_SNAPSHOT, subject,
                f"reading or assigning env.unwrapped.snapshot failed with AttributeError: {error}, "
                "and checkpoints of a VectorBatchedEnv save and restore every env this way",
                snapshot_fix,
            ) from error
        with _replay_errors(subject, RULE_SNAPSHOT, "the env restored from a snapshot", episode,
                            snapshot_fix):
            for step in range(half, len(episode.actions)):
                observation, reward, *_ = restored.step(episode.actions[step])
                _compare_replay(subject, RULE_SNAPSHOT, "the env restored from a snapshot",
                                episode, step + 1, observation, reward, snapshot_fix)
    finally:
        replica.close()
        restored.close()


@contextlib.contextmanager
def _replay_errors(subject: str, rule: str, env_label: str, episode: _Episode, fix: str):
    """Turn an exception of a replayed reset or step into a ContractError of ``rule``."""
    try:
        yield
    except ContractError:
        raise
    except Exception as error:
        raise ContractError(
            rule, subject,
            f"on task {_short(episode.task)}, {env_label} raised {type(error).__name__}: {error} "
            f"while repeating the episode after reset(seed={episode.seed}), which the env put on "
            "the task with set_task ran without error",
            fix,
        ) from error


def _compare_replay(
    subject: str, rule: str, env_label: str, episode: _Episode, step: int, observation, reward, fix: str
) -> None:
    expected_observation = episode.observations[step]
    expected_reward = None if step == 0 else episode.rewards[step - 1]
    if np.array_equal(np.asarray(observation), np.asarray(expected_observation)) \
            and reward == expected_reward:
        return
    call = f"reset(seed={episode.seed})" if step == 0 else f"step {step} after reset(seed={episode.seed})"
    raise ContractError(
        rule, subject,
        f"on task {_short(episode.task)}, {env_label} returned the observation "
        f"{_short(_as_list(observation))} and reward {reward!r} at {call}, but the env put on the "
        f"task with set_task returned {_short(_as_list(expected_observation))} and reward "
        f"{expected_reward!r} for the same actions",
        fix,
    )


# --------------------------------------------------------------------------- formatting


def _class_name(value) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[:_MAX_REPR - 3] + "..."


def _as_list(value):
    array = np.asarray(value)
    return array.tolist() if array.dtype.kind in "biuf" else value


def _equal(value, target) -> bool:
    """Compare with ``==``, treating comparisons that raise or return arrays as unequal."""
    try:
        return bool(value == target)
    except (TypeError, ValueError):
        return False
