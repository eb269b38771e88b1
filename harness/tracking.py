"""Experiment tracking: local metric files always, Weights & Biases when asked.

The training loop talks to one `Tracker`. Every `log` call appends one JSON line to
``run_dir/metrics.jsonl``. When `WandbSettings` are given, the same values also go to a
W&B run whose files live in ``run_dir/wandb/``. W&B is imported only inside the tracker,
so runs without tracking never import it. A W&B failure logs one warning and turns W&B
off for the rest of the run, and training continues with the local files.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

logger = logging.getLogger(__name__)

METRIC_PREFIXES = ("rollout/", "train/", "eval/", "time/")
METRICS_FILENAME = "metrics.jsonl"
RUN_ID_FILENAME = "wandb_run_id"

# W&B logs this key with every row, and every other metric is plotted against it.
STEP_METRIC = "global_step"

# Upper bounds on the two blocking W&B calls, so an unreachable server cannot stall
# training. When the finish timeout expires, W&B keeps the unsent data in run_dir/wandb/
# for a later `wandb sync`.
# NOTE: Neither bound covers W&B's login prompt, which waits for input when online mode
# has no API key and a terminal is attached. The tests run only offline mode.
INIT_TIMEOUT_S = 60.0
FINISH_TIMEOUT_S = 300.0

# Number of open W&B runs in this process. The last tracker to close shuts down W&B's
# background service process, which would otherwise live until the interpreter exits.
_open_wandb_runs = 0


@dataclass
class WandbSettings:
    """Weights & Biases destination and mode of a run.

    Attributes:
        project: W&B project name.
        entity: W&B user or team. None uses the default entity of the logged-in account.
        group: W&B run group, for example one comparison grid.
        tags: W&B run tags.
        mode: ``"online"``, ``"offline"`` or ``"disabled"``. None reads ``WANDB_MODE``
            from the environment and falls back to ``"online"``.
    """

    project: str = "adaptrl"
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    mode: str | None = None

    def resolved_mode(self) -> str:
        """Return the W&B mode, taking ``WANDB_MODE`` when `mode` is None."""
        if self.mode is not None:
            return self.mode
        return os.environ.get("WANDB_MODE") or "online"


class Tracker:
    """Record a run's metrics, evaluation and models locally and, optionally, in W&B.

    Local files, always written:

    - ``run_dir/metrics.jsonl``: one JSON object per `log` call,
      ``{"step": ..., "time": ..., <metric keys>}``, flushed after each line. A line
      cut short by a killed process stays as one invalid line until `truncate_after`
      drops it.
    - ``run_dir/wandb_run_id``: the W&B run id, when W&B is on, so that a resumed run
      continues the same W&B run.

    Args:
        run_dir: Run directory; created if missing.
        run_name: Display name of the W&B run.
        config: Resolved run configuration, sent to W&B as the run config.
        wandb: W&B settings; None keeps the run local.
        resume: Continue the W&B run whose id is stored in ``run_dir/wandb_run_id``.
            Pair it with `truncate_after` at the checkpoint step to drop the local metric
            lines written after that checkpoint.

    Example:
        >>> with Tracker(Path("runs/demo"), "demo", {"lr": 3e-4}) as tracker:
        ...     tracker.log({"train/loss": 0.25}, step=2048)
    """

    def __init__(
        self,
        run_dir: Path,
        run_name: str,
        config: dict,
        wandb: WandbSettings | None = None,
        resume: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / METRICS_FILENAME
        self._metrics_file = _open_for_append(self.metrics_path)
        self._last_step: int | None = None
        self._closed = False
        self._wandb_run: Any = None
        if wandb is not None:
            self._start_wandb(run_name, config, wandb, resume)

    @property
    def wandb_enabled(self) -> bool:
        """Whether values are still sent to a W&B run."""
        return self._wandb_run is not None

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Append one line of metrics at a given step.

        Args:
            metrics: Metric values keyed by a name that starts with one of
                ``rollout/``, ``train/``, ``eval/`` or ``time/``. Python and NumPy
                integers stay integers; every other value is converted with `float`, and
                NaN or infinity is written to the local file as null.
            step: Environment steps taken so far, the x-axis of every chart.

        Raises:
            ValueError: A key lacks a known prefix, or step is negative.
            TypeError: Step is not an integer, or a value is not a real number.
            RuntimeError: The tracker is closed.
        """
        self._check_open()
        step = _check_step(step)
        for key in metrics:
            _check_key(key)
        values = {key: _to_number(key, value) for key, value in metrics.items()}

        record: dict[str, Any] = {"step": step, "time": time.time()}
        for key, value in values.items():
            record[key] = value if _is_finite(value) else None
        # allow_nan=False makes a NaN that slipped past the conversion above raise here
        # instead of writing invalid JSON.
        self._metrics_file.write(json.dumps(record, allow_nan=False) + "\n")
        self._metrics_file.flush()
        self._last_step = step

        if self._wandb_run is not None:
            # W&B stores NaN and infinity, so it gets the values unchanged.
            self._call_wandb("log", self._wandb_run.log, {STEP_METRIC: step, **values})

    def log_evaluation(self, evaluation: dict) -> None:
        """Send a meta-test evaluation to W&B as summary values and an adaptation curve.

        The evaluation itself is stored by the evaluation code in ``evaluation.json``, so
        without W&B this only validates it. Summary keys are namespaced by split, for
        example ``eval/meta_test/mean_return``, so they do not collide with the
        ``eval/`` metrics logged during training. The adaptation curves of the agent and
        of every reference go to one table with columns ``policy``, ``index`` (episode
        index inside a trial, or adaptation step) and ``mean_return``, drawn as a line
        chart.

        Args:
            evaluation: The contents of ``evaluation.json``: ``agent``, ``env``,
                ``split``, ``num_tasks``, ``mean_return`` (a dict with ``mean``,
                ``ci_low``, ``ci_high``), ``adaptation_curve`` (the mean return per
                index) and ``references``, a dict from reference name to a dict with its
                own ``mean_return`` and ``adaptation_curve``.

        Raises:
            ValueError: A required key is missing.
            RuntimeError: The tracker is closed.
        """
        self._check_open()
        _check_evaluation(evaluation)
        if self._wandb_run is None:
            return

        split = evaluation["split"]
        prefix = f"eval/{split}"
        summary: dict[str, Any] = {
            f"{prefix}/agent": evaluation["agent"],
            f"{prefix}/env": evaluation["env"],
            f"{prefix}/num_tasks": evaluation["num_tasks"],
        }
        summary.update(_return_stats(prefix, evaluation["mean_return"]))
        rows = _curve_rows(evaluation["agent"], evaluation["adaptation_curve"])
        for name, reference in evaluation["references"].items():
            summary.update(_return_stats(f"{prefix}/reference/{name}", reference["mean_return"]))
            rows += _curve_rows(name, reference.get("adaptation_curve", []))

        def upload() -> None:
            import wandb

            self._wandb_run.summary.update(summary)
            table = wandb.Table(columns=["policy", "index", "mean_return"], data=rows)
            chart = wandb.plot.line(
                table,
                x="index",
                y="mean_return",
                stroke="policy",
                title=f"Adaptation curve on {evaluation['env']} ({split})",
            )
            # wandb stores the chart's data as the table "<key>_table".
            row = {f"{prefix}/adaptation_curve": chart}
            if self._last_step is not None:
                row[STEP_METRIC] = self._last_step
            self._wandb_run.log(row)

        self._call_wandb("evaluation upload", upload)

    def log_model(self, path: Path, name: str) -> None:
        """Upload a checkpoint file or directory to W&B as an artifact of type ``model``.

        The artifact's metadata stores the last logged step. Without W&B this only checks
        that the path exists.

        Args:
            path: Checkpoint file or directory.
            name: Artifact name. W&B allows letters, digits, ``-``, ``_`` and ``.``.

        Raises:
            FileNotFoundError: The path does not exist.
            RuntimeError: The tracker is closed.
        """
        self._check_open()
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"model checkpoint not found: {path}")
        if self._wandb_run is None:
            return

        def upload() -> None:
            import wandb

            artifact = wandb.Artifact(name, type="model", metadata={STEP_METRIC: self._last_step})
            if path.is_dir():
                artifact.add_dir(str(path))
            else:
                artifact.add_file(str(path))
            self._wandb_run.log_artifact(artifact)

        self._call_wandb("log_artifact", upload)

    def log_tables(self, tables: dict[str, tuple[list[str], list[list[Any]]]],
                   images: dict[str, Path]) -> None:
        """Send tables and PNG images to W&B, for example a comparison's results and plots.

        Without W&B this only checks that the images exist.

        Args:
            tables: per W&B key, ``(columns, rows)``.
            images: per W&B key, the path of a PNG file.

        Raises:
            FileNotFoundError: An image does not exist.
            RuntimeError: The tracker is closed.
        """
        self._check_open()
        for path in images.values():
            if not Path(path).is_file():
                raise FileNotFoundError(f"image not found: {path}")
        if self._wandb_run is None:
            return

        def upload() -> None:
            import wandb

            row: dict[str, Any] = {key: wandb.Table(columns=columns, data=rows)
                                   for key, (columns, rows) in tables.items()}
            row.update({key: wandb.Image(str(path)) for key, path in images.items()})
            self._wandb_run.log(row)

        self._call_wandb("table upload", upload)

    def truncate_after(self, step: int) -> int:
        """Drop the lines of ``metrics.jsonl`` logged after `step`, for a resumed run.

        The file is rewritten to a temporary file and moved into place, so a crash
        leaves either the old or the new file. Lines that are not valid JSON, such as
        a line cut short when the process was killed, are dropped too. W&B history is
        not rewritten.

        Args:
            step: The environment step of the checkpoint the run resumes from.

        Returns:
            The number of lines dropped.
        """
        self._check_open()
        step = _check_step(step)
        self._metrics_file.close()
        try:
            kept_lines, dropped, corrupt = _filter_metric_lines(self.metrics_path, step)
            if dropped:
                temporary_path = self.metrics_path.with_name(self.metrics_path.name + ".tmp")
                with temporary_path.open("w", encoding="utf-8") as temporary_file:
                    temporary_file.writelines(kept_lines)
                    temporary_file.flush()
                    os.fsync(temporary_file.fileno())
                os.replace(temporary_path, self.metrics_path)
        finally:
            self._metrics_file = _open_for_append(self.metrics_path)

        if corrupt:
            logger.warning(
                "Dropped %d line(s) of %s that are not valid JSON, such as a line cut "
                "short when the process was killed.",
                corrupt,
                self.metrics_path,
            )
        self._last_step = step
        return dropped

    def close(self) -> None:
        """Close the metrics file and finish the W&B run. Calling it again does nothing."""
        self._close(exit_code=0)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # A nonzero exit code marks the W&B run as failed.
        self._close(exit_code=0 if exc_type is None else 1)

    def _close(self, exit_code: int) -> None:
        if self._closed:
            return
        self._closed = True
        self._metrics_file.close()
        if self._wandb_run is not None:
            self._finish_wandb(exit_code)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the tracker of {self.run_dir} is closed")

    def _start_wandb(
        self, run_name: str, config: dict, settings: WandbSettings, resume: bool
    ) -> None:
        global _open_wandb_runs
        run_id_path = self.run_dir / RUN_ID_FILENAME
        run_id = None
        if resume and run_id_path.exists():
            run_id = run_id_path.read_text(encoding="utf-8").strip() or None
        if resume and run_id is None:
            logger.info("No W&B run id in %s, so a new W&B run starts.", run_id_path)

        try:
            import wandb

            run = wandb.init(
                project=settings.project,
                entity=settings.entity,
                group=settings.group,
                tags=list(settings.tags),
                name=run_name,
                config=config,
                dir=str(self.run_dir),
                mode=settings.resolved_mode(),
                id=run_id,
                resume="allow" if run_id is not None else None,
                # Each tracker owns its run, so opening a second tracker does not
                # finish the first one's run.
                reinit="create_new",
                settings=wandb.Settings(
                    init_timeout=INIT_TIMEOUT_S, finish_timeout=FINISH_TIMEOUT_S
                ),
            )
            # Charts use env steps as the x-axis through a step metric, not through
            # `run.log(step=...)`: wandb 0.31 ignores rows whose `step` is below the
            # run's current step, and a resumed run logs steps again from its last
            # checkpoint. W&B's own `_step` still counts log calls.
            run.define_metric(STEP_METRIC)
            run.define_metric("*", step_metric=STEP_METRIC)
        except Exception as error:
            # W&B raises many types here: pydantic's ValidationError or wandb's
            # UsageError for invalid settings, other wandb.Error subclasses or
            # TimeoutError for login, network and timeout failures, OSError for files.
            # None of them may stop training.
            _warn_wandb_failure("init", error, self.run_dir)
            _shut_down_idle_wandb()
            return

        _open_wandb_runs += 1
        self._wandb_run = run
        run_id_path.write_text(run.id + "\n", encoding="utf-8")

    def _call_wandb(self, action: str, function: Callable[..., Any], *args: Any) -> None:
        """Call a W&B function. On failure, warn once and turn W&B off for this run."""
        try:
            function(*args)
        except Exception as error:
            # See _start_wandb: any W&B error switches the run to local files only.
            _warn_wandb_failure(action, error, self.run_dir)
            self._finish_wandb(exit_code=1)

    def _finish_wandb(self, exit_code: int) -> None:
        global _open_wandb_runs
        run, self._wandb_run = self._wandb_run, None
        _open_wandb_runs -= 1
        try:
            run.finish(exit_code=exit_code)
        except Exception as error:
            logger.warning(
                "Finishing the W&B run failed (%s: %s). The local files in %s are "
                "complete, and `wandb sync %s` uploads what W&B stored.",
                type(error).__name__,
                error,
                self.run_dir,
                self.run_dir / "wandb",
            )
        _shut_down_idle_wandb()


def _shut_down_idle_wandb() -> None:
    """Stop W&B's service process once no tracker in this process has an open run."""
    if _open_wandb_runs > 0 or "wandb" not in sys.modules:
        return  # wandb was never imported, so it started no service process
    import wandb

    try:
        wandb.teardown()
    except Exception as error:
        logger.warning(
            "Stopping the W&B service process failed (%s: %s).", type(error).__name__, error
        )


def _warn_wandb_failure(action: str, error: Exception, run_dir: Path) -> None:
    logger.warning(
        "W&B %s failed (%s: %s). Continuing with local files only in %s. To fix: check "
        "the W&B settings and login, or set WANDB_MODE=offline to record the run for a "
        "later `wandb sync`, or drop --track to run without W&B.",
        action,
        type(error).__name__,
        error,
        run_dir,
    )
    logger.debug("W&B %s traceback", action, exc_info=error)


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"step must be an integer count of env steps, got {step!r}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return int(step)


def _check_key(key: str) -> None:
    if not any(key.startswith(prefix) and len(key) > len(prefix) for prefix in METRIC_PREFIXES):
        raise ValueError(
            f"metric key {key!r} has no namespace. Expected a name after one of "
            f"{', '.join(METRIC_PREFIXES)}, for example 'train/{key}'"
        )


def _to_number(key: str, value: Any) -> int | float:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"metric {key!r} must be a real number, got {type(value).__name__}: {value!r}"
        ) from error


def _is_finite(value: int | float) -> bool:
    return isinstance(value, int) or math.isfinite(value)


def _open_for_append(path: Path) -> TextIO:
    """Open the metrics file for appending, first ending a line cut short by a kill.

    Without the newline, the next record would be glued to the partial line. The partial
    line stays as one invalid line, which readers should skip and `truncate_after` drops.
    """
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as metrics_file:
            metrics_file.seek(-1, os.SEEK_END)
            ends_with_newline = metrics_file.read(1) == b"\n"
        if not ends_with_newline:
            with path.open("a", encoding="utf-8") as metrics_file:
                metrics_file.write("\n")
    return path.open("a", encoding="utf-8")


def _filter_metric_lines(path: Path, step: int) -> tuple[list[str], int, int]:
    """Split a metrics file into lines to keep and counts of dropped and corrupt lines."""
    if not path.exists():
        return [], 0, 0
    kept_lines: list[str] = []
    dropped = 0
    corrupt = 0
    with path.open(encoding="utf-8") as metrics_file:
        for line in metrics_file:
            try:
                record = json.loads(line)
                record_step = record["step"]
            except (json.JSONDecodeError, KeyError, TypeError):
                dropped += 1
                corrupt += 1
                continue
            if record_step > step:
                dropped += 1
            else:
                kept_lines.append(line)
    return kept_lines, dropped, corrupt


def _check_evaluation(evaluation: dict) -> None:
    required = ("agent", "env", "split", "num_tasks", "mean_return", "adaptation_curve")
    missing = [key for key in required + ("references",) if key not in evaluation]
    if missing:
        raise ValueError(
            f"evaluation is missing {', '.join(missing)}. Expected the contents of "
            f"evaluation.json with keys {', '.join(required)}, references"
        )
    _check_return_stats("mean_return", evaluation["mean_return"])
    for name, reference in evaluation["references"].items():
        if "mean_return" not in reference:
            raise ValueError(f"evaluation reference {name!r} is missing mean_return")
        _check_return_stats(f"references[{name!r}].mean_return", reference["mean_return"])


def _check_return_stats(where: str, stats: dict) -> None:
    missing = [key for key in ("mean", "ci_low", "ci_high") if key not in stats]
    if missing:
        raise ValueError(f"evaluation {where} is missing {', '.join(missing)}")


def _return_stats(prefix: str, stats: dict) -> dict[str, float]:
    return {
        f"{prefix}/mean_return": float(stats["mean"]),
        f"{prefix}/mean_return_ci_low": float(stats["ci_low"]),
        f"{prefix}/mean_return_ci_high": float(stats["ci_high"]),
    }


def _curve_rows(policy: str, curve: list) -> list[list[Any]]:
    # Points are summaries ({"mean", "ci_low", ...}) as harness.evaluation writes them, or floats.
    return [
        [policy, index, float(point["mean"] if isinstance(point, dict) else point)]
        for index, point in enumerate(curve)
    ]
