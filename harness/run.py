"""The run directory: ``runs/<run-name>/`` with config, metrics, checkpoints and evaluation."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from agents.serialization import atomic_save, load_file, set_default_permissions

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
EVALUATION_FILE = "evaluation.json"
MODEL_FILE = "model.pt"
PER_TASK_FILE = "evaluation.npz"
CHECKPOINT_FILE = "checkpoints/latest.pt"


def write_json_atomic(data: Any, path: Path) -> Path:
    """Write ``data`` as indented JSON through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        set_default_permissions(fd)
        with os.fdopen(fd, "w") as file:
            json.dump(data, file, indent=2, allow_nan=False, default=str)
            file.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def software_versions() -> dict[str, str]:
    """Return the versions that a result depends on, saved with every run."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


class RunDirectory:
    """Files of one run. Every file is written atomically, so a killed run leaves whole files.

    Args:
        path: the run's folder, ``runs_dir / run_name``.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def evaluation_path(self) -> Path:
        return self.path / EVALUATION_FILE

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def prepare(self, resume: bool) -> None:
        """Create the folder, refusing to overwrite a run that resume should continue."""
        if resume:
            if not self.has_checkpoint():
                raise FileNotFoundError(
                    f"--resume: no checkpoint at {self.checkpoint_path}. Check --run-name and "
                    "--runs-dir, or start a new run without --resume."
                )
            return
        if self.has_checkpoint() or (self.path / CONFIG_FILE).exists():
            raise FileExistsError(
                f"run folder {self.path} already contains a run. Pass --resume to continue it, or "
                "choose another --run-name."
            )
        self.path.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(config, self.path / CONFIG_FILE)

    def read_config(self) -> dict[str, Any]:
        with open(self.path / CONFIG_FILE) as file:
            return json.load(file)

    def save_checkpoint(self, state: dict[str, Any]) -> Path:
        return atomic_save(state, self.checkpoint_path)

    def load_checkpoint(self, device: torch.device | str = "cpu") -> dict[str, Any]:
        return load_file(self.checkpoint_path, device)

    @property
    def per_task_path(self) -> Path:
        return self.path / PER_TASK_FILE

    def write_evaluation(self, evaluation: dict[str, Any], path: Path | None = None) -> Path:
        """Write ``evaluation.json``; per-task arrays under ``"per_task"`` go beside it as ``.npz``.

        The arrays are popped from ``evaluation``, so that the dict left is the JSON written.
        ``evaluation.json`` gets ``evaluation.npz``; another name gets the same stem.
        """
        per_task = evaluation.pop("per_task", None)
        path = path or self.evaluation_path
        if per_task is not None:
            write_npz_atomic(per_task, path.with_suffix(".npz"))
        return write_json_atomic(evaluation, path)


def write_npz_atomic(arrays: dict[str, np.ndarray], path: Path) -> Path:
    """Write ``arrays`` to an uncompressed ``.npz`` file through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    try:
        set_default_permissions(fd)
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_per_task(path: Path) -> dict[str, np.ndarray]:
    """Read the per-task arrays that :meth:`RunDirectory.write_evaluation` stored."""
    with np.load(path) as data:
        return {name: data[name] for name in data.files}
