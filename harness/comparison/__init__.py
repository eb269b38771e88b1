"""The comparison grid: agents x environments x seeds, trained locally or on Ray, then reported.

``scripts/compare.py`` is its command line; :func:`run_comparison` its entry point.
"""

from harness.comparison.config import Cell, ComparisonConfig, EnvSettings, bundled_configs
from harness.comparison.grid import ComparisonResult, check_comparison, run_comparison

__all__ = ["Cell", "ComparisonConfig", "ComparisonResult", "EnvSettings", "bundled_configs",
           "check_comparison", "run_comparison"]
