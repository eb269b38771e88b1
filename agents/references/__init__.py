"""Non-learned reference policies: yardsticks that run on the same tasks as the agents."""

from agents.references.bandits import (
    REFERENCE_NAMES,
    ReferenceUnavailable,
    bayes_optimal_value,
    simulate_reference,
    supported_references,
)

__all__ = [
    "REFERENCE_NAMES",
    "ReferenceUnavailable",
    "bayes_optimal_value",
    "simulate_reference",
    "supported_references",
]
