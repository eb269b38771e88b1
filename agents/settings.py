"""The hyperparameter check that every agent's constructor starts with."""

from __future__ import annotations

from typing import Any


def checked_config(agent_name: str, config: Any, config_class: type) -> Any:
    """Return ``config`` (or the defaults when it is None) after checking its type and values.

    Raises:
        TypeError: when ``config`` is not a ``config_class``.
        ValueError: from the config's own ``validate``.
    """
    config = config if config is not None else config_class()
    if not isinstance(config, config_class):
        raise TypeError(f"{agent_name} takes a {config_class.__name__}, got {type(config).__name__}")
    config.validate()
    return config
