"""Non-learned reference policies: yardsticks that run on the same tasks as the agents.

Each family module registers a runner with :func:`register_references`; importing this
package registers the built-in ones, and :func:`run_references` finds them by distribution.
"""

from agents.references.bandits import (
    REFERENCE_NAMES,
    ReferenceUnavailable,
    bandit_references,
    bayes_optimal_value,
    simulate_reference,
    supported_references,
)
from agents.references.base import ReferenceResult, register_references, run_references
from agents.references.locomotion import (
    LOCOMOTION_REFERENCE_NAMES,
    load_oracle_record,
    locomotion_references,
    zero_action_result,
)
from agents.references.mazes import MAZE_REFERENCE_NAMES, maze_references, shortest_path_length
from agents.references.navigation import (
    NAVIGATION_REFERENCE_NAMES,
    navigation_references,
    oracle_action,
    oracle_returns,
    stand_still_returns,
)
from agents.references.tabular import TABULAR_REFERENCE_NAMES, tabular_references, value_iteration

__all__ = [
    "LOCOMOTION_REFERENCE_NAMES",
    "MAZE_REFERENCE_NAMES",
    "NAVIGATION_REFERENCE_NAMES",
    "REFERENCE_NAMES",
    "ReferenceResult",
    "ReferenceUnavailable",
    "TABULAR_REFERENCE_NAMES",
    "bandit_references",
    "bayes_optimal_value",
    "load_oracle_record",
    "locomotion_references",
    "maze_references",
    "navigation_references",
    "oracle_action",
    "oracle_returns",
    "register_references",
    "run_references",
    "shortest_path_length",
    "simulate_reference",
    "stand_still_returns",
    "supported_references",
    "tabular_references",
    "value_iteration",
    "zero_action_result",
]
