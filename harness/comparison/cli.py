"""Command line of ``scripts/compare.py``: a YAML config, flags, or a config with flags on top."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.comparison.config import ComparisonConfig, EnvSettings, parse_seeds
from harness.flags import parse_flags


@dataclass
class CompareArgs:
    """Train and meta-test agents x environments x seeds, then write tables and plots.

    Give a YAML config (--config quick for the bundled quick grid), or the grid as flags, or
    both: a flag given on the command line overrides the config's value. Rerunning the same
    command resumes a stopped comparison: finished cells are reused, half-finished ones
    resume from their checkpoints.
    """

    config: str | None = None
    """A YAML config file, or a bundled one by name: quick or full."""
    name: str | None = None
    """Name of the comparison: its folder under --output-dir and its W&B group; default the
    config's name, or "comparison"."""
    agents: tuple[str, ...] | None = None
    """Agents to compare, e.g. rl2 memory maml-ppo ppo recurrent-ppo."""
    envs: tuple[str, ...] | None = None
    """Task distributions to compare on; every one gets --total-timesteps. Replaces the
    config's envs."""
    total_timesteps: int | None = None
    """Training budget per cell in env steps, for envs given with --envs."""
    seeds: int | None = None
    """Number of seeds (0, 1, ...); default 3."""
    eval_tasks: int | None = None
    """Held-out tasks each cell is meta-tested on; default the whole meta-test split."""
    eval_seed: int | None = None
    """Seed of the meta-test, shared by every cell."""
    workers: int | None = None
    """Cells trained at once by the local backend (and local Ray's CPU count)."""
    backend: str | None = None
    """local (processes on this machine, the default) or ray."""
    address: str | None = None
    """Address of a running Ray cluster; default a local Ray instance."""
    cpus_per_cell: float | None = None
    """CPUs a Ray task declares per cell."""
    gpus_per_cell: float | None = None
    """GPUs a Ray task declares per cell."""
    device: str | None = None
    """Torch device of every cell: auto, cpu (the default) or cuda."""
    torch_threads: int | None = None
    """CPU threads per cell; default 1."""
    track: bool | None = None
    """Log each cell and a summary run to Weights & Biases (WANDB_MODE=offline works offline)."""
    normalize: str | None = None
    """auto, always or never: the normalized score (score - random) / (oracle - random)."""
    output_dir: Path | None = None
    """Folder of the comparison folders; default comparisons."""
    progress: bool = True
    """Show a progress bar over the cells."""


def build_config(args: CompareArgs) -> ComparisonConfig:
    """Merge the config file (if any) with the flags that were given."""
    config = ComparisonConfig.from_file(args.config) if args.config else ComparisonConfig()
    if args.envs is not None:
        if args.total_timesteps is None:
            raise ValueError("--envs needs --total-timesteps, the training budget of each cell")
        config.envs = [EnvSettings(env, args.total_timesteps) for env in args.envs]
    elif args.total_timesteps is not None:
        if not config.envs:
            raise ValueError("--total-timesteps applies to the envs of --envs or of --config; "
                             "give one of them")
        config.envs = [EnvSettings(env.name, args.total_timesteps, env.env_kwargs, env.hyperparameters)
                       for env in config.envs]  # the flag sets one budget for every agent
    if args.agents is not None:
        config.agents = list(args.agents)
    if args.seeds is not None:
        config.seeds = parse_seeds(args.seeds)
    for name in ("name", "eval_tasks", "eval_seed", "workers", "backend", "address", "cpus_per_cell",
                 "gpus_per_cell", "device", "torch_threads", "track", "normalize", "output_dir"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    return config


def compare_main(argv: list[str] | None = None) -> int:
    """Run a comparison; exit 0 when every cell finished, 1 when any failed, 2 on bad input."""
    from harness.comparison.grid import run_comparison

    args = parse_flags(CompareArgs, argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = build_config(args)
        result = run_comparison(config, progress=args.progress)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts: dict[str, int] = {}
    for outcome in result.outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    print(f"\nComparison {config.name}: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    for outcome in result.failed:
        print(f"\nFAILED {outcome.key}: {outcome.error}", file=sys.stderr)
        if outcome.traceback:
            print(outcome.traceback.rstrip(), file=sys.stderr)
        if outcome.log_path:
            print(f"(log: {outcome.log_path})", file=sys.stderr)
    if result.report is not None:
        print(f"Report: {result.report.report_path} (results.csv, summary.csv, plots/)")
    if result.interrupted:
        print("Stopped before every cell finished; run the same command again to resume.")
        return 130
    return 1 if result.failed else 0
