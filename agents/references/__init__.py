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

__all__ = [
    "REFERENCE_NAMES",
    "ReferenceResult",
    "ReferenceUnavailable",
    "bandit_references",
    "bayes_optimal_value",
    "register_references",
    "run_references",
    "simulate_reference",
    "supported_references",
]
