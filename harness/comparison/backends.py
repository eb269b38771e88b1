"""Where the cells of a comparison run: local worker processes, or Ray tasks.

Both backends take the cells' :meth:`TrainConfig.to_dict` specs and return one
:class:`CellOutcome` per cell; a cell that fails is an outcome with its traceback, never an
exception that stops the others.

Local: each cell is a ``python -m harness.comparison.worker`` process in its own session,
at most ``workers`` at a time, its output in ``<comparison>/logs/<cell>.log``. Ctrl-C or
SIGTERM to the driver is passed on to the running workers as SIGTERM, so that each writes a
checkpoint and exits. A worker still running after a grace period is killed with its whole
process group (vector-env workers, W&B's service), so nothing outlives the driver.

Ray: each cell is a Ray task declaring ``cpus_per_cell`` and ``gpus_per_cell``. The task
trains in a temporary folder on whichever node runs it and sends the run folder back to the
driver as a tar archive. A half-finished cell's folder travels the other way, so resuming
works on a cluster without a shared file system.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.run import write_json_atomic

logger = logging.getLogger(__name__)

# Seconds that stopped workers get to finish their update and write a checkpoint.
STOP_GRACE_SECONDS = 120.0
_POLL_SECONDS = 0.2


@dataclass
class CellOutcome:
    """The outcome of one cell.

    Attributes:
        key: the cell's run-folder name.
        status: ``finished``, ``reused``, ``interrupted``, ``failed`` or ``not started``.
        error: one line on what went wrong, for a failure.
        traceback: the failure's traceback, when the cell got far enough to have one.
        log_path: the local backend's log file of the cell.
    """

    key: str
    status: str
    error: str | None = None
    traceback: str | None = None
    log_path: Path | None = None


class StopSignal:
    """Records SIGINT and SIGTERM instead of raising, so the backend can stop its cells cleanly."""

    def __init__(self):
        self.count = 0
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        self.count += 1
        self.signal_number = signum
        if self.count == 1:
            logger.warning("stop requested: the running cells write a checkpoint and stop; "
                           "send the signal again to kill them at once")


def run_local(specs: dict[str, dict[str, Any]], folder: Path, workers: int,
              on_outcome: Callable[[CellOutcome], None] | None = None) -> list[CellOutcome]:
    """Run each cell in a worker process, ``workers`` at a time.

    Args:
        specs: per cell key, its TrainConfig dict.
        folder: the comparison folder; ``logs/`` and ``.cells/`` are made inside.
        workers: cells at once.
        on_outcome: called as each cell ends.
    """
    logs, scratch = folder / "logs", folder / ".cells"
    logs.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    pending = list(specs)
    running: dict[str, tuple[subprocess.Popen, Path, Any]] = {}
    outcomes: list[CellOutcome] = []
    stop_sent_at: float | None = None

    def finish(outcome: CellOutcome) -> None:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    with StopSignal() as stop:
        try:
            while pending or running:
                if stop.count and stop_sent_at is None:
                    stop_sent_at = time.monotonic()
                    for process, _, _ in running.values():
                        _signal_group(process, signal.SIGTERM)
                if stop.count > 1 or (stop_sent_at is not None
                                      and time.monotonic() - stop_sent_at > STOP_GRACE_SECONDS):
                    for process, _, _ in running.values():
                        _signal_group(process, signal.SIGKILL)
                while pending and len(running) < workers and not stop.count:
                    key = pending.pop(0)
                    running[key] = _start_worker(key, specs[key], scratch, logs)
                for key in [key for key, (process, _, _) in running.items() if process.poll() is not None]:
                    process, result_path, log_file = running.pop(key)
                    log_file.close()
                    finish(_read_outcome(key, process.returncode, result_path, logs / f"{key}.log"))
                time.sleep(_POLL_SECONDS)
        finally:
            for process, _, log_file in running.values():
                _signal_group(process, signal.SIGKILL)
                process.wait()
                log_file.close()
    outcomes += [CellOutcome(key, "not started") for key in pending]
    return outcomes


def _start_worker(key: str, spec: dict[str, Any], scratch: Path, logs: Path):
    spec_path, result_path = scratch / f"{key}.spec.json", scratch / f"{key}.result.json"
    write_json_atomic(spec, spec_path)
    result_path.unlink(missing_ok=True)
    log_file = open(logs / f"{key}.log", "a")
    log_file.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start of cell {key}\n")
    log_file.flush()
    env = dict(os.environ)
    threads = spec.get("torch_threads")
    if threads:
        # Native thread pools (OpenMP, MKL) follow torch's thread count; several cells at
        # once would otherwise each use every core.
        env.setdefault("OMP_NUM_THREADS", str(threads))
    logger.info("starting cell %s", key)
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.comparison.worker", str(spec_path), str(result_path)],
        stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        start_new_session=True,
    )
    return process, result_path, log_file


def _read_outcome(key: str, returncode: int, result_path: Path, log_path: Path) -> CellOutcome:
    if result_path.is_file():
        with open(result_path) as file:
            result = json.load(file)
        return CellOutcome(key, result["status"], result.get("error"), result.get("traceback"),
                           log_path)
    reason = (f"killed by signal {-returncode}" if returncode < 0
              else f"exited with status {returncode}")
    return CellOutcome(key, "failed", f"the worker process {reason} before reporting a result; "
                       f"see {log_path}", _tail(log_path), log_path)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass


def _tail(path: Path, lines: int = 30) -> str | None:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return None


# --- Ray --------------------------------------------------------------------------------


def import_ray():
    """Import Ray, or raise naming the extra that installs it."""
    try:
        import ray
    except ImportError as error:
        raise ValueError(
            "the ray backend needs Ray, which is not installed; install it with "
            "`pip install -e \".[ray]\"`, or use --backend local"
        ) from error
    return ray


def connect_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to the Ray cluster at ``address``, or start a local instance when it is None.

    Returns:
        True when this call started Ray (the caller shuts it down when done).

    Raises:
        ValueError: when Ray is missing or the address cannot be reached.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address is not None:
        check_reachable(address)
    try:
        if address is None:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
        else:
            ray.init(address=address, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ValueError(
            f"cannot connect to the Ray cluster at {address!r}: {error}. Start one with `ray "
            "start --head` and pass the address it prints, or omit --address for a local "
            "instance. A cluster with token authentication (the default of `ray start` from "
            "Ray 2.59) also needs RAY_AUTH_MODE=token here, with its token in ~/.ray/auth_token "
            "or RAY_AUTH_TOKEN."
        ) from error
    return True


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Raise ValueError unless a TCP connection to ``address`` (``[ray://]host:port``) opens.

    Ray itself retries an unreachable address for minutes before it gives up, so the driver
    tries the port once first. ``auto`` (Ray's own lookup of a local cluster) is left to Ray.
    """
    import socket

    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"invalid Ray address {address!r}; expected host:port, for example "
                         "127.0.0.1:6379, or ray://host:10001 for Ray Client")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as error:
        raise ValueError(
            f"cannot reach the Ray cluster at {address!r} ({error}). Start one with `ray start "
            "--head` and pass the address it prints, or omit --address for a local instance."
        ) from error


def run_ray(specs: dict[str, dict[str, Any]], runs_dir: Path, cpus_per_cell: float,
            gpus_per_cell: float,
            on_outcome: Callable[[CellOutcome], None] | None = None) -> list[CellOutcome]:
    """Run each cell as a Ray task on the connected cluster; bring the run folders back."""
    ray = import_ray()
    remote = ray.remote(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell, max_retries=0)(ray_cell)
    refs = {}
    for key, spec in specs.items():
        refs[remote.remote(spec, pack_folder(runs_dir / key))] = key
    outcomes: list[CellOutcome] = []
    with StopSignal() as stop:
        try:
            while refs and not stop.count:
                done, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
                for ref in done:
                    key = refs.pop(ref)
                    outcome = _ray_outcome(ray, ref, key, runs_dir)
                    outcomes.append(outcome)
                    if on_outcome is not None:
                        on_outcome(outcome)
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)
    outcomes += [CellOutcome(key, "interrupted") for key in refs.values()]
    return outcomes


def _ray_outcome(ray, ref, key: str, runs_dir: Path) -> CellOutcome:
    try:
        result, archive = ray.get(ref)
    except ray.exceptions.RayError as error:
        return CellOutcome(key, "failed", f"the Ray task failed: {type(error).__name__}",
                           str(error))
    if archive is not None:
        unpack_folder(archive, runs_dir / key)
    return CellOutcome(key, result["status"], result.get("error"), result.get("traceback"))


def ray_cell(spec: dict[str, Any], archive: bytes | None) -> tuple[dict[str, Any], bytes | None]:
    """Body of a Ray task: train the cell in a temporary folder, return its result and folder."""
    from harness.comparison.cells import run_cell

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="adaptrl-cell-") as scratch:
        key = spec["run_name"]
        runs_dir = Path(scratch) / "runs"
        if archive is not None:
            unpack_folder(archive, runs_dir / key)
        result = run_cell({**spec, "runs_dir": str(runs_dir)})
        return result, pack_folder(runs_dir / key)


def pack_folder(folder: Path) -> bytes | None:
    """Return ``folder`` as gzipped tar bytes, or None when it does not exist."""
    if not folder.is_dir():
        return None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def unpack_folder(archive: bytes, folder: Path) -> None:
    """Replace ``folder`` with the contents of a :func:`pack_folder` archive."""
    import shutil

    staging = folder.with_name(f".{folder.name}.incoming")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(staging, filter="data")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
