"""Device selection for ``--device auto|cpu|cuda``."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device for a ``--device`` value.

    ``auto`` takes the GPU when CUDA is available and the CPU otherwise. ``cuda`` (or
    ``cuda:N``) on a machine without CUDA raises instead of silently running on the CPU.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {device} was requested but CUDA is not available here "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}). Use "
                "--device cpu, or install a CUDA build of torch on a machine with a GPU."
            )
        return torch.device(device)
    raise ValueError(f"unknown device {device!r}; expected one of {DEVICE_CHOICES} or 'cuda:N'")
