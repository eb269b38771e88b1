"""Reference results for the MuJoCo locomotion families (:mod:`envs.locomotion`).

References (names in :data:`LOCOMOTION_REFERENCE_NAMES`):

- ``oracle``: the recorded meta-test return of a PPO policy trained with the task parameters
  in its observation. It is read from a JSON record that ``scripts/train_oracle.py``
  (:mod:`harness.oracle`) writes, and each record states how it was obtained. Reported only when a
  record exists for the family and horizon, was evaluated on the meta-test split of the same
  split seed, and was trained with the same reward settings. Training one takes hours, so
  it is never trained or rolled out here.
- ``zero-action``: the all-zero action (no torque) for one episode on each of the first
  :data:`ZERO_ACTION_MAX_TASKS` tasks, rolled out in the real environment. It is the return
  of a policy that does nothing: standing still (the cheetah) or resting on its legs (the
  ant). It pays no control cost, so it is a lower yardstick that any learned policy should
  beat.

Records are looked up as ``<env>-h<horizon>.json`` in the folder named by the environment
variable ``ADAPTRL_ORACLE_RETURNS_DIR`` when it is set, and otherwise in the
``oracle_returns`` folder shipped inside this package.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.references.base import ReferenceResult, register_references
from envs.locomotion import LocomotionDistribution
from envs.tasks import Task

LOCOMOTION_REFERENCE_NAMES = ("oracle", "zero-action")

# Folder of oracle records to use instead of the packaged ones, for tests and new records.
ORACLE_RETURNS_DIR_VARIABLE = "ADAPTRL_ORACLE_RETURNS_DIR"

# Zero-action episodes on one task differ only by their reset noise (scale 0.1), so 20 tasks
# give a tight mean. They cost about 0.2 s (HalfCheetah) to 1 s (Ant) of simulation at
# horizon 200, measured on one busy CPU core.
ZERO_ACTION_MAX_TASKS = 20

# Keys every record must have, with the type each value must have.
_RECORD_FIELDS = {
    "env": str,
    "horizon": int,
    "split_seed": int,
    "num_tasks": int,
    "mean_return": dict,
    "episode_returns": list,
    "task_params": list,
    "distribution": dict,
}

logger = logging.getLogger(__name__)


def oracle_record_name(env: str, horizon: int) -> str:
    """Return the file name of the oracle record of ``env`` at ``horizon``: ``<env>-h<horizon>.json``."""
    return f"{env}-h{horizon}.json"


def load_oracle_record(
    env: str, horizon: int, records_dir: str | Path | None = None
) -> dict[str, Any] | None:
    """Load the oracle record of ``env`` at ``horizon``, or return None when there is none.

    Args:
        records_dir: the folder to read. Default: ``$ADAPTRL_ORACLE_RETURNS_DIR`` when set,
            otherwise the package's ``oracle_returns`` folder.

    Raises:
        ValueError: the file exists but is not a valid record for ``env`` and ``horizon``.
    """
    name = oracle_record_name(env, horizon)
    if records_dir is None:
        records_dir = os.environ.get(ORACLE_RETURNS_DIR_VARIABLE) or None
    if records_dir is None:
        path = importlib.resources.files(__package__).joinpath("oracle_returns").joinpath(name)
    else:
        path = Path(records_dir) / name
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid oracle record {path}: not JSON ({error})") from error
    _check_record(record, env, horizon, path)
    return record


def _check_record(record: Any, env: str, horizon: int, path) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"invalid oracle record {path}: expected a JSON object")
    for key, kind in _RECORD_FIELDS.items():
        if not isinstance(record.get(key), kind):
            raise ValueError(
                f"invalid oracle record {path}: {key!r} must be a {kind.__name__}, got "
                f"{record.get(key)!r}; write records with scripts/train_oracle.py"
            )
    if (record["env"], record["horizon"]) != (env, horizon):
        raise ValueError(
            f"invalid oracle record {path}: it records env {record['env']!r} at horizon "
            f"{record['horizon']}, but its name says {env!r} at horizon {horizon}"
        )
    num_tasks = record["num_tasks"]
    if len(record["episode_returns"]) != num_tasks or len(record["task_params"]) != num_tasks:
        raise ValueError(
            f"invalid oracle record {path}: num_tasks is {num_tasks}, but it has "
            f"{len(record['episode_returns'])} episode returns and {len(record['task_params'])} "
            "task parameter rows"
        )


def record_mismatch(record: dict[str, Any], distribution: LocomotionDistribution) -> str | None:
    """Return why ``record`` does not apply to ``distribution``, or None when it does.

    A record applies when it was evaluated on the same meta-test split (the split seed) and
    the reward and environment settings it was trained with equal the distribution's now.
    """
    if record["split_seed"] != distribution.split_seed:
        return (f"it was evaluated on the meta-test split of split_seed {record['split_seed']}, "
                f"not {distribution.split_seed}")
    current = json.loads(json.dumps(distribution.config()))
    for key in ("reward", "env_kwargs", "env_class"):
        if record["distribution"].get(key) != current.get(key):
            return (f"its {key} {record['distribution'].get(key)!r} differs from the current "
                    f"{current.get(key)!r}")
    return None


def oracle_result(
    record: dict[str, Any], distribution: LocomotionDistribution, tasks: Sequence[Task]
) -> ReferenceResult:
    """Turn a record into the oracle's per-episode returns on ``tasks``.

    When ``tasks`` are the first ``len(tasks)`` tasks the record was evaluated on (equal task
    parameters, in order), each task gets its own recorded episode return. Otherwise each
    task gets the recorded mean: a recorded figure, not a rollout on these tasks, so its
    confidence interval has zero width and gives no measure of these tasks' spread. Either way
    the oracle gains nothing from experience, so every inner episode of a trial gets the
    same return.
    """
    episodes = distribution.episodes_per_trial
    recorded_params = np.asarray(record["task_params"], dtype=np.float64)
    params = distribution.task_params(tasks).astype(np.float64)
    num_tasks = len(tasks)
    same_tasks = (num_tasks <= len(recorded_params)
                  and np.array_equal(params, recorded_params[:num_tasks]))
    if same_tasks:
        returns = np.asarray(record["episode_returns"][:num_tasks], dtype=np.float64)
    else:
        returns = np.full(num_tasks, float(record["mean_return"]["mean"]))
    return ReferenceResult(returns=np.repeat(returns[:, None], episodes, axis=1))


def zero_action_result(
    distribution: LocomotionDistribution,
    tasks: Sequence[Task],
    seed: int,
    max_tasks: int = ZERO_ACTION_MAX_TASKS,
) -> ReferenceResult:
    """Roll out the zero action for one episode on each of the first ``max_tasks`` tasks.

    The reset seeds are ``SeedSequence(seed).generate_state(num_tasks)``, so equal seeds give
    equal results. Zero actions cannot adapt, so the episode's return and length are repeated
    for every inner episode of a trial. The result has ``min(len(tasks), max_tasks)`` rows.
    """
    tasks = list(tasks)[:max_tasks]
    episodes = distribution.episodes_per_trial
    seeds = np.random.SeedSequence(seed).generate_state(len(tasks))
    returns = np.zeros(len(tasks))
    lengths = np.zeros(len(tasks), dtype=np.int64)
    env = distribution.make_env()
    try:
        action = np.zeros(env.action_space.shape, dtype=env.action_space.dtype)
        for i, task in enumerate(tasks):
            env.set_task(task)
            env.reset(seed=int(seeds[i]))
            done = False
            while not done:
                _, reward, terminated, truncated, _ = env.step(action)
                returns[i] += float(reward)
                lengths[i] += 1
                done = terminated or truncated
    finally:
        env.close()
    return ReferenceResult(returns=np.repeat(returns[:, None], episodes, axis=1),
                           lengths=np.repeat(lengths[:, None], episodes, axis=1))


@register_references(LocomotionDistribution)
def locomotion_references(
    distribution: LocomotionDistribution,
    tasks: Sequence[Task],
    seed: int,
    records_dir: str | Path | None = None,
) -> dict[str, ReferenceResult]:
    """Return ``zero-action`` on ``tasks``, and ``oracle`` when a matching record exists.

    Args:
        records_dir: the folder of oracle records; see :func:`load_oracle_record`.
    """
    results: dict[str, ReferenceResult] = {}
    record = load_oracle_record(distribution.name, distribution.horizon, records_dir)
    if record is not None:
        mismatch = record_mismatch(record, distribution)
        if mismatch is None:
            results["oracle"] = oracle_result(record, distribution, tasks)
        else:
            logger.warning("not reporting the oracle record of %s at horizon %d: %s",
                           distribution.name, distribution.horizon, mismatch)
    results["zero-action"] = zero_action_result(distribution, tasks, seed)
    return results
