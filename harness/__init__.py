"""AdaptRL harness: run folders, configuration, tracking, checkpoints and meta-test evaluation."""

import agents as _agents
import envs as _envs

for _module in (_envs, _agents):
    if not getattr(_module, "__adaptrl__", False):
        raise ImportError(
            f"the top-level `{_module.__name__}` module at {getattr(_module, '__file__', '?')} "
            "is not AdaptRL's: another installed distribution provides a module of that name. "
            "Install AdaptRL in its own virtual environment (see the README)."
        )

from harness.config import TrainConfig  # noqa: E402
from harness.evaluation import evaluate, format_table, summarize  # noqa: E402
from harness.run import RunDirectory  # noqa: E402
from harness.tracking import Tracker, WandbSettings  # noqa: E402
from harness.training import TrainResult, train  # noqa: E402

__all__ = ["RunDirectory", "TrainConfig", "TrainResult", "Tracker", "WandbSettings", "evaluate",
           "format_table", "summarize",
           "train"]
