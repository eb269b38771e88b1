"""Atomic checkpoint files: a crash while saving never leaves a truncated file behind."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` to a temporary file, fsync it, then rename it into place.

    ``os.replace`` is atomic on POSIX and Windows when both paths are on one file system, which
    is the case here because the temporary file is created in the destination folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        set_default_permissions(fd)
        with os.fdopen(fd, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def set_default_permissions(fd: int) -> None:
    """Give a file from ``mkstemp`` (mode 0600) the mode a plain ``open`` would give it."""
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)


def load_file(path: str | os.PathLike, device: torch.device | str = "cpu") -> Any:
    """Load a file written by :func:`atomic_save`, mapping tensors onto ``device``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint or model file at {path}")
    # weights_only=False: the files contain configs and RNG states besides tensors, and
    # unpickling can run code, so load only files you wrote or trust.
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as error:
        raise ValueError(
            f"{path} is not a model or checkpoint file written by AdaptRL ({error}); pass a "
            "run folder, its model.pt, or checkpoints/latest.pt"
        ) from error
