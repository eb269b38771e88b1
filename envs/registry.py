"""Resolve task-distribution names such as ``bandit-k5-n10`` or ``my_pkg.tasks:make``."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from envs.contract import check_task_distribution
from envs.tasks import TaskDistribution


@dataclass(frozen=True)
class Family:
    """A named pattern of distributions, e.g. ``bandit-k{arms}-n{pulls}``."""

    pattern: str
    example: str
    build: Callable[..., TaskDistribution]
    description: str


_FAMILIES: dict[str, Family] = {}


def register_family(pattern: str, example: str, description: str):
    """Register a builder for names matching ``pattern`` (a regex with named integer groups)."""

    def decorator(build: Callable[..., TaskDistribution]):
        _FAMILIES[pattern] = Family(pattern, example, build, description)
        return build

    return decorator


def known_names() -> list[str]:
    """Return one example name per registered family."""
    return [family.example for family in _FAMILIES.values()]


def describe_families() -> str:
    lines = [f"  {f.example:<28} {f.description}" for f in _FAMILIES.values()]
    lines.append("  package.module:factory       your own TaskDistribution (class or factory)")
    return "\n".join(lines)


def make_distribution(name: str, **kwargs) -> TaskDistribution:
    """Build the task distribution called ``name``.

    Args:
        name: a registered family name such as ``bandit-k5-n10``, or ``package.module:factory``
            naming a :class:`TaskDistribution` subclass or a function returning one; the
            module must be importable (installed, or on ``PYTHONPATH``).
        **kwargs: passed to the family's builder, e.g. ``num_test_tasks`` or ``split_seed``.

    Raises:
        ValueError: for an unknown or malformed name; the message lists the known families.
        ContractError: when a ``package.module:factory`` distribution or its env breaks the
            environment contract (see :func:`envs.contract.check_task_distribution`).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"expected a task-distribution name, got {name!r}")
    if ":" in name:
        distribution = _load_custom(name, kwargs)
    else:
        distribution = _build_registered(name, kwargs)
    distribution.registry_name = name
    distribution.registry_kwargs = dict(kwargs)
    return distribution


def _build_registered(name: str, kwargs: dict) -> TaskDistribution:
    for family in _FAMILIES.values():
        match = re.fullmatch(family.pattern, name)
        if match:
            params = {key: int(value) for key, value in match.groupdict().items()}
            return family.build(**params, **kwargs)
    raise ValueError(
        f"unknown environment {name!r}. Known task distributions:\n{describe_families()}"
    )


def _load_custom(path: str, kwargs: dict) -> TaskDistribution:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise ValueError(
            f"malformed custom environment path {path!r}; expected 'package.module:factory', "
            "for example 'my_tasks.bandits:make_distribution'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"cannot import module {module_name!r} from custom environment path {path!r}: "
            f"{error}. Install the module or add its folder to PYTHONPATH."
        ) from error
    factory = getattr(module, attribute, None)
    if factory is None or not callable(factory):
        raise ValueError(
            f"module {module_name!r} has no callable {attribute!r} (from {path!r}); expected a "
            "TaskDistribution subclass or a function returning one"
        )
    distribution = factory(**kwargs)
    if not isinstance(distribution, TaskDistribution):
        raise TypeError(
            f"{path} returned {type(distribution).__name__}, expected an "
            "envs.TaskDistribution; subclass it and implement sample_tasks and make_env"
        )
    # A few seeded episodes, a few milliseconds for a light env: a broken env fails here, with
    # the rule and the fix, instead of deep inside training or evaluation.
    check_task_distribution(distribution)
    return distribution
