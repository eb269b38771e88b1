"""One seed per run, split into independent random streams."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

STREAMS = ("tasks", "env", "init", "sampling")


@dataclass(frozen=True)
class SeedStreams:
    """Integer seeds of the independent streams of one run, from ``SeedSequence(seed).spawn``.

    Attributes:
        tasks: draws of tasks at trial starts.
        env: environment noise (rewards, resets).
        init: network initialization.
        sampling: action sampling and minibatch order.
    """

    tasks: int
    env: int
    init: int
    sampling: int

    @classmethod
    def from_seed(cls, seed: int) -> SeedStreams:
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        children = np.random.SeedSequence(int(seed)).spawn(len(STREAMS))
        return cls(*(int(child.generate_state(1, dtype=np.uint64)[0] >> 1) for child in children))

    def generator(self, stream: str, device: torch.device) -> torch.Generator:
        """Return a fresh torch generator on ``device`` seeded for ``stream``."""
        generator = torch.Generator(device=device)
        generator.manual_seed(getattr(self, stream))
        return generator
