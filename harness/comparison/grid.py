"""Run a comparison: check everything, train the cells on a backend, write the report.

Files under ``<output_dir>/<name>/``:

- ``comparison.yaml``: the grid's settings. A rerun under the same name with other training
  or evaluation settings is rejected, so finished cells are never mixed with new ones;
- ``runs/<cell>/``: one run folder per cell (see :mod:`harness.comparison.cells`);
- ``logs/<cell>.log``: each cell's output (local backend);
- ``results.csv``, ``summary.csv``, ``report.md`` and ``plots/*.png``;
- ``summary/``: the W&B summary run's files, when tracking.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from agents.registry import agent_entry
from harness.comparison.backends import CellOutcome, connect_ray, run_local, run_ray
from harness.comparison.cells import finished_evaluation, read_cell_record, training_wall_seconds
from harness.comparison.config import Cell, ComparisonConfig
from harness.comparison.report import (
    RESULTS_COLUMNS,
    SUMMARY_COLUMNS,
    Report,
    make_plots,
    results_rows,
    summary_rows,
    write_csv,
    write_report,
)
from harness.comparison.results import (
    HIGH_REFERENCES,
    LOW_REFERENCES,
    CellResult,
    group_by_env,
    load_cell,
)

logger = logging.getLogger(__name__)

CONFIG_FILE = "comparison.yaml"
# Settings that may change between a stopped comparison and its rerun: where and how the
# cells run, not what they compute.
_RUNTIME_KEYS = ("workers", "backend", "address", "cpus_per_cell", "gpus_per_cell", "track",
                 "wandb_project", "wandb_entity", "torch_threads", "device", "output_dir")


@dataclass
class ComparisonResult:
    """The result of :func:`run_comparison`.

    Attributes:
        outcomes: one per cell, in grid order.
        report: the written tables and plots; None when no cell finished.
        interrupted: a signal stopped the comparison; rerun the same command to resume it.
    """

    outcomes: list[CellOutcome] = field(default_factory=list)
    report: Report | None = None
    interrupted: bool = False

    @property
    def failed(self) -> list[CellOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "failed"]


def check_comparison(config: ComparisonConfig) -> None:
    """Every check that must pass before a cell starts; raises ValueError naming the problem."""
    config.validate()
    if config.normalize == "always":
        for env in config.envs:
            names = reference_names(config, Cell(config.agents[0], env.name, config.seeds[0]))
            low = [name for name in LOW_REFERENCES if name in names]
            high = [name for name in HIGH_REFERENCES if name in names]
            if not (low and high):
                raise ValueError(
                    f"normalize: always needs a lower reference ({' or '.join(LOW_REFERENCES)}) and "
                    f"an oracle ({' or '.join(HIGH_REFERENCES)}) on every env, but {env.name} has "
                    f"{', '.join(names) or 'no references'}; set normalize: auto to normalize only "
                    "where both exist, or remove the env"
                )
    _check_saved_config(config)


def reference_names(config: ComparisonConfig, cell: Cell) -> list[str]:
    """Return the names of the references that meta-testing ``cell``'s env reports."""
    from agents.references import run_references

    distribution = config.train_config(cell).validate()
    task = distribution.meta_split().test[:1]
    return list(run_references(distribution, task, config.eval_seed))


def _check_saved_config(config: ComparisonConfig) -> None:
    import yaml

    path = config.folder / CONFIG_FILE
    if not path.is_file():
        return
    with open(path) as file:
        saved = yaml.safe_load(file) or {}
    current = config.to_dict()
    changed = sorted(key for key in set(saved) | set(current)
                     if key not in _RUNTIME_KEYS and saved.get(key) != current.get(key))
    if changed:
        raise ValueError(
            f"{config.folder} contains a comparison with other settings ({', '.join(changed)} "
            f"differ from {path}); its finished cells would not match. Choose another name, "
            "restore the settings, or delete the folder to start over."
        )


def run_comparison(config: ComparisonConfig, progress: bool = True) -> ComparisonResult:
    """Train and meta-test every cell that is not finished, then write the report.

    A finished cell is reused; a half-finished one resumes from its checkpoint. A cell that
    fails is reported with its traceback and the others go on.
    """
    import yaml
    from tqdm.auto import tqdm

    check_comparison(config)
    started_ray = False
    if config.backend == "ray":
        started_ray = connect_ray(config.address, num_cpus=config.workers if config.address is None else None)
    config.folder.mkdir(parents=True, exist_ok=True)
    with open(config.folder / CONFIG_FILE, "w") as file:
        yaml.safe_dump(config.to_dict(), file, sort_keys=False)

    cells = config.cells()
    specs: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, CellOutcome] = {}
    for cell in cells:
        train_config = config.train_config(cell)
        if finished_evaluation(train_config) is not None:
            outcomes[cell.key] = CellOutcome(cell.key, "reused")
        else:
            specs[cell.key] = train_config.to_dict()
    logger.info("%d cells: %d finished already, %d to run", len(cells), len(outcomes), len(specs))

    bar = tqdm(total=len(cells), initial=len(outcomes), unit="cell", disable=not progress,
               dynamic_ncols=True)
    counts = {"failed": 0, "interrupted": 0}

    def on_outcome(outcome: CellOutcome) -> None:
        if outcome.status in counts:
            counts[outcome.status] += 1
        bar.update(1)
        bar.set_postfix(counts)
        if outcome.status == "failed":
            logger.error("cell %s failed: %s", outcome.key, outcome.error)

    try:
        if specs:
            if config.backend == "ray":
                ran = run_ray(specs, config.runs_dir, config.cpus_per_cell, config.gpus_per_cell, on_outcome)
            else:
                ran = run_local(specs, config.folder, config.workers, on_outcome)
            outcomes.update({outcome.key: outcome for outcome in ran})
    finally:
        bar.close()
        if started_ray:
            import ray

            ray.shutdown()
    ordered = [outcomes[cell.key] for cell in cells]
    result = ComparisonResult(ordered, interrupted=any(o.status in ("interrupted", "not started")
                                                       for o in ordered))
    result.report = write_outputs(config, ordered)
    return result


def write_outputs(config: ComparisonConfig, outcomes: list[CellOutcome]) -> Report | None:
    """Read the finished cells and write results.csv, summary.csv, report.md and the plots."""
    cells, cell_rows = read_cells(config, outcomes)
    if not cells:
        return None
    groups = group_by_env(cells, [env.name for env in config.envs], config.agents)
    rows = results_rows(groups)
    summary = summary_rows(groups, config.normalize, seed=config.eval_seed)
    write_csv(rows, RESULTS_COLUMNS, config.folder / "results.csv")
    write_csv(summary, SUMMARY_COLUMNS, config.folder / "summary.csv")

    plots = make_plots(groups, config.folder / "plots", seed=config.eval_seed)
    report_path = write_report(config.folder / "report.md", config.name, groups, summary, outcomes,
                               plots, cell_rows)
    report = Report(rows, summary, plots, report_path)
    if config.track:
        log_summary_run(config, report)
    return report


def read_cells(config: ComparisonConfig, outcomes: list[CellOutcome]
               ) -> tuple[list[CellResult], list[dict[str, Any]]]:
    """Return the finished cells' results, and a status row for every cell of the grid."""
    finished = {outcome.key for outcome in outcomes if outcome.status in ("finished", "reused")}
    status = {outcome.key: outcome.status for outcome in outcomes}
    cells: list[CellResult] = []
    cell_rows = []
    for cell in config.cells():
        folder = config.runs_dir / cell.key
        row = {"key": cell.key, "status": status[cell.key],
               "wall_seconds": training_wall_seconds(folder) if folder.is_dir() else None}
        if cell.key in finished:
            metric = getattr(agent_entry(cell.agent).agent_class, "progress_metric",
                             "rollout/mean_trial_return")
            result = load_cell(folder, cell.agent, cell.env, cell.seed, metric)
            cells.append(result)
            row["env_steps"] = result.env_steps
        elif folder.is_dir():
            sessions = read_cell_record(folder)["sessions"]
            row["env_steps"] = sessions[-1]["num_timesteps"] if sessions else None
        cell_rows.append(row)
    return cells, cell_rows


def log_summary_run(config: ComparisonConfig, report: Report) -> None:
    """Log the comparison's tables and plots as one W&B run in the comparison's group."""
    from harness.tracking import Tracker, WandbSettings

    settings = WandbSettings(project=config.wandb_project, entity=config.wandb_entity,
                             group=config.name, tags=("comparison-summary", config.name))
    tables = {
        "comparison/results": (RESULTS_COLUMNS, [[row.get(c) for c in RESULTS_COLUMNS]
                                                 for row in report.results_rows]),
        "comparison/summary": (SUMMARY_COLUMNS, [[row.get(c) for c in SUMMARY_COLUMNS]
                                                 for row in report.summary_rows]),
    }
    with Tracker(config.folder / "summary", f"{config.name}-summary", config.to_dict(),
                 wandb=settings) as tracker:
        tracker.log_tables(tables, report.plots)
