"""The comparison grid's configuration: agents x environments x seeds, from YAML or flags.

A comparison config is a YAML mapping. Every key is checked, so a typo is an error that names
the key, not a setting silently ignored::

    name: quick
    agents: [rl2, memory, maml-ppo, ppo, recurrent-ppo]
    seeds: 3                       # or an explicit list, e.g. [0, 1, 2]
    envs:
      bandit-k5-n10:
        total_timesteps: 300000    # training budget of each cell on this env
        agent_timesteps: {recurrent-ppo: 100000}   # a slower agent's own budget here
        env_kwargs: {num_test_tasks: 500}
        hyperparameters:           # per agent, on this env only
          rl2: {num_envs: 128}
    hyperparameters:               # per agent, on every env (an env's own entry wins)
      maml-ppo: {meta_batch_size: 20}
    evaluation: {tasks: 500, seed: 0, deterministic: false}

Each (agent, env, seed) cell becomes one :class:`harness.config.TrainConfig`, so a cell
trains exactly as ``scripts/train.py`` would with the same flags.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from agents.registry import AGENTS, agent_entry, config_field
from harness.config import TrainConfig

BACKENDS = ("local", "ray")
NORMALIZE_CHOICES = ("auto", "always", "never")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TOP_KEYS = ("name", "agents", "envs", "seeds", "hyperparameters", "evaluation", "workers",
             "backend", "address", "cpus_per_cell", "gpus_per_cell", "device", "torch_threads",
             "track", "wandb_project", "wandb_entity", "normalize", "output_dir",
             "checkpoints_per_cell")
_ENV_KEYS = ("total_timesteps", "agent_timesteps", "env_kwargs", "hyperparameters")
_EVALUATION_KEYS = ("tasks", "seed", "deterministic")


def bundled_configs() -> dict[str, Path]:
    """Return the configs shipped with AdaptRL, by name (``quick``, ``full``)."""
    folder = resources.files("harness") / "configs"
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir()
            if entry.name.endswith(".yaml")}


@dataclass(frozen=True)
class EnvSettings:
    """One environment column of the grid.

    Attributes:
        name: a registered task-distribution name or ``package.module:factory``.
        total_timesteps: training budget of every cell on this env, in env steps.
        env_kwargs: keyword arguments of the task distribution.
        hyperparameters: per agent name, settings that override the agent's defaults here.
        agent_timesteps: per agent name, a budget that replaces ``total_timesteps`` for that
            agent, for agents whose env steps cost far more (the report shows every cell's
            env steps, so a reader sees the difference).
    """

    name: str
    total_timesteps: int
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    agent_timesteps: dict[str, int] = field(default_factory=dict)

    def budget(self, agent: str) -> int:
        """Return ``agent``'s training budget on this env."""
        return self.agent_timesteps.get(agent, self.total_timesteps)


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: an agent on an env with a seed."""

    agent: str
    env: str
    seed: int

    @property
    def key(self) -> str:
        """The cell's run-folder name, unique within a comparison."""
        return f"{self.agent}-{self.env.replace(':', '.')}-seed{self.seed}"


@dataclass
class ComparisonConfig:
    """Everything a comparison needs; see the module docstring for the YAML form.

    Attributes:
        name: the comparison's folder under ``output_dir`` and its W&B group.
        agents: agent names, in table order.
        envs: the environment columns.
        seeds: training seeds; every (agent, env) pair trains once per seed.
        hyperparameters: per agent name, settings for every env.
        eval_tasks: held-out tasks each cell is meta-tested on (the same for every cell of
            an env); None for the whole meta-test split.
        eval_seed: seed of the meta-test's env noise and action sampling, shared by all cells.
        eval_deterministic: meta-test with the most likely action.
        workers: cells trained at once by the local backend.
        backend: ``local`` (processes on this machine) or ``ray``.
        address: a Ray cluster's address; None starts a local Ray instance.
        cpus_per_cell, gpus_per_cell: the resources a Ray task declares per cell.
        device: torch device of every cell: auto, cpu or cuda.
        torch_threads: CPU threads per cell; 1 keeps parallel cells from oversubscribing cores.
        track: log every cell and a summary run to Weights & Biases.
        wandb_project, wandb_entity: W&B destination.
        normalize: ``auto`` reports (agent - random) / (oracle - random) where the env has
            both references, ``always`` requires them on every env, ``never`` skips it.
        output_dir: parent folder of ``<name>/``.
        checkpoints_per_cell: checkpoints written during each cell's training, so that a
            stopped comparison loses at most this fraction of a cell.
    """

    name: str = "comparison"
    agents: list[str] = field(default_factory=lambda: ["rl2"])
    envs: list[EnvSettings] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    hyperparameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_tasks: int | None = None
    eval_seed: int = 0
    eval_deterministic: bool = False
    workers: int = 1
    backend: str = "local"
    address: str | None = None
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    device: str = "cpu"
    torch_threads: int | None = 1
    track: bool = False
    wandb_project: str = "adaptrl"
    wandb_entity: str | None = None
    normalize: str = "auto"
    output_dir: Path = Path("comparisons")
    checkpoints_per_cell: int = 4

    @property
    def folder(self) -> Path:
        return Path(self.output_dir) / self.name

    @property
    def runs_dir(self) -> Path:
        return self.folder / "runs"

    def cells(self) -> list[Cell]:
        """Return every cell, env by env, then agent, then seed."""
        return [Cell(agent, env.name, seed) for env in self.envs for agent in self.agents
                for seed in self.seeds]

    def env_settings(self, name: str) -> EnvSettings:
        for env in self.envs:
            if env.name == name:
                return env
        raise KeyError(name)

    def train_config(self, cell: Cell) -> TrainConfig:
        """Return the TrainConfig that trains ``cell``, with the grid's shared settings."""
        env = self.env_settings(cell.env)
        budget = env.budget(cell.agent)
        config = TrainConfig(
            env=cell.env,
            env_kwargs=tuple(f"{key}={value!r}" for key, value in env.env_kwargs.items()),
            agent=cell.agent,
            total_timesteps=budget,
            seed=cell.seed,
            device=self.device,
            run_name=cell.key,
            runs_dir=self.runs_dir,
            checkpoint_interval=max(1, -(-budget // self.checkpoints_per_cell)),
            eval_tasks=self.eval_tasks,
            eval_seed=self.eval_seed,
            eval_deterministic=self.eval_deterministic,
            track=self.track,
            wandb_project=self.wandb_project,
            wandb_entity=self.wandb_entity,
            wandb_group=self.name,
            wandb_tags=("comparison", self.name),
            progress=False,
            torch_threads=self.torch_threads,
        )
        setattr(config, config_field(cell.agent), self.agent_config(cell))
        return config

    def agent_config(self, cell: Cell) -> Any:
        """Return ``cell``'s agent settings: the grid-wide ones, then the env's own on top."""
        env = self.env_settings(cell.env)
        settings = {**self.hyperparameters.get(cell.agent, {}),
                    **env.hyperparameters.get(cell.agent, {})}
        agent_class = agent_entry(cell.agent).config_class
        valid = [f.name for f in dataclasses.fields(agent_class)]
        unknown = [key for key in settings if key not in valid]
        if unknown:
            raise ValueError(
                f"hyperparameters.{cell.agent} (or envs.{cell.env}.hyperparameters.{cell.agent}) "
                f"has the unknown key {unknown[0]!r}; the valid keys are: {', '.join(valid)} "
                "(a flag's name with underscores, e.g. --maml-ppo.meta-batch-size is meta_batch_size)"
            )
        from_dict = getattr(agent_class, "from_dict", None)
        return from_dict(settings) if from_dict else agent_class(**settings)

    def validate(self) -> None:
        """Check the grid before any cell starts: names, numbers and every cell's TrainConfig.

        Raises:
            ValueError: naming the value and how to fix it.
        """
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"invalid comparison name {self.name!r}: use letters, digits, '.', "
                             "'_' and '-', starting with a letter or digit")
        if not self.agents:
            raise ValueError(f"no agents to compare; list some of: {', '.join(AGENTS)}")
        for agent in self.agents:
            agent_entry(agent)
        if not self.envs:
            raise ValueError("no environments to compare; give at least one with --envs or under "
                             "`envs` in a --config file")
        _check_unique("agents", self.agents)
        _check_unique("envs", [env.name for env in self.envs])
        _check_unique("seeds", self.seeds)
        for agent in self.hyperparameters:
            if agent not in self.agents:
                raise ValueError(f"hyperparameters are given for {agent!r}, which is not in the "
                                 f"agents list {self.agents}; add it or remove its settings")
        for env in self.envs:
            budgets = {"total_timesteps": env.total_timesteps,
                       **{f"agent_timesteps.{agent}": steps for agent, steps in env.agent_timesteps.items()}}
            for label, steps in budgets.items():
                if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                    raise ValueError(f"envs.{env.name}.{label} must be a positive integer, got "
                                     f"{steps!r}")
            for section in ("hyperparameters", "agent_timesteps"):
                for agent in getattr(env, section):
                    if agent not in self.agents:
                        raise ValueError(f"envs.{env.name}.{section} names {agent!r}, which is not "
                                         f"in the agents list {self.agents}")
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be a count of at least 1 or a list of non-negative "
                             f"integers, got {self.seeds!r}")
        for name in ("workers", "checkpoints_per_cell"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}")
        if self.address is not None and self.backend != "ray":
            raise ValueError(f"address {self.address!r} is for the Ray backend; pass backend ray "
                             "or drop the address")
        if self.cpus_per_cell <= 0 or self.gpus_per_cell < 0:
            raise ValueError(f"cpus_per_cell must be positive and gpus_per_cell non-negative, got "
                             f"{self.cpus_per_cell} and {self.gpus_per_cell}")
        if self.normalize not in NORMALIZE_CHOICES:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZE_CHOICES)}, got "
                             f"{self.normalize!r}")
        for cell in self.cells():
            try:
                self.train_config(cell).validate()
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"cell {cell.key}: {error} (in the config file, the flag --{cell.agent}.some-name "
                    f"is the key some_name under hyperparameters.{cell.agent})"
                ) from error

    def to_dict(self) -> dict[str, Any]:
        """Return the config in its YAML form, as saved in ``comparison.yaml``."""
        data = {
            "name": self.name, "agents": list(self.agents), "seeds": list(self.seeds),
            "envs": {env.name: {"total_timesteps": env.total_timesteps,
                                "agent_timesteps": dict(env.agent_timesteps),
                                "env_kwargs": dict(env.env_kwargs),
                                "hyperparameters": dict(env.hyperparameters)}
                     for env in self.envs},
            "hyperparameters": dict(self.hyperparameters),
            "evaluation": {"tasks": self.eval_tasks, "seed": self.eval_seed,
                           "deterministic": self.eval_deterministic},
        }
        for key in _TOP_KEYS:
            if key not in data:
                value = getattr(self, key)
                data[key] = str(value) if isinstance(value, Path) else value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ComparisonConfig:
        """Build a config from its YAML form, rejecting keys that do not exist."""
        _check_keys(data, _TOP_KEYS, source)
        data = dict(data)
        kwargs: dict[str, Any] = {}
        if "envs" in data:
            kwargs["envs"] = _parse_envs(data.pop("envs"), source)
        if "seeds" in data:
            kwargs["seeds"] = parse_seeds(data.pop("seeds"))
        if "evaluation" in data:
            evaluation = data.pop("evaluation") or {}
            _check_keys(evaluation, _EVALUATION_KEYS, f"{source}: evaluation")
            for key, value in evaluation.items():
                kwargs[f"eval_{key}"] = value
        if "hyperparameters" in data:
            data["hyperparameters"] = _check_hyperparameters(data["hyperparameters"],
                                                             f"{source}: hyperparameters")
        if "output_dir" in data:
            kwargs["output_dir"] = Path(data.pop("output_dir"))
        if "agents" in data:
            agents = data.pop("agents")
            kwargs["agents"] = [agents] if isinstance(agents, str) else list(agents)
        kwargs.update(data)
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path) -> ComparisonConfig:
        """Read a YAML config; a bare name such as ``quick`` picks a bundled one."""
        import yaml

        path = resolve_config_path(path)
        with open(path) as file:
            try:
                data = yaml.safe_load(file) or {}
            except yaml.YAMLError as error:
                raise ValueError(f"{path} is not valid YAML: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path))


def resolve_config_path(path: str | Path) -> Path:
    """Return ``path``, or the bundled config it names; raise listing both kinds when neither."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    bundled = bundled_configs()
    if str(path) in bundled:
        return bundled[str(path)]
    raise ValueError(f"no config file {str(path)!r}; pass a YAML file or a bundled config: "
                     f"{', '.join(sorted(bundled))}")


def parse_seeds(value: Any) -> list[int]:
    """Turn ``3`` into seeds ``[0, 1, 2]``; keep an explicit list."""
    if isinstance(value, bool):
        raise ValueError(f"seeds must be a count or a list of integers, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"the seed count (seeds, --seeds) must be at least 1, got {value}")
        return list(range(value))
    if isinstance(value, list | tuple):
        return list(value)
    raise ValueError(f"seeds must be a count or a list of integers, got {value!r}")


def _parse_envs(value: Any, source: str) -> list[EnvSettings]:
    if not isinstance(value, dict):
        raise ValueError(f"{source}: envs must map each env name to its settings (at least "
                         "total_timesteps), got " + type(value).__name__)
    envs = []
    for name, settings in value.items():
        settings = settings or {}
        _check_keys(settings, _ENV_KEYS, f"{source}: envs.{name}")
        if "total_timesteps" not in settings:
            raise ValueError(f"{source}: envs.{name} needs total_timesteps, the training budget of "
                             "each cell on it")
        for key in ("env_kwargs", "agent_timesteps"):
            if not isinstance(settings.get(key) or {}, dict):
                raise ValueError(f"{source}: envs.{name}.{key} must be a mapping, got "
                                 f"{settings[key]!r}")
        hyperparameters = _check_hyperparameters(settings.get("hyperparameters"),
                                                 f"{source}: envs.{name}.hyperparameters")
        envs.append(EnvSettings(str(name), settings["total_timesteps"],
                                dict(settings.get("env_kwargs") or {}),
                                hyperparameters,
                                dict(settings.get("agent_timesteps") or {})))
    return envs


def _check_hyperparameters(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """Check that ``value`` maps agent names to mappings of settings; return it as a dict."""
    value = value or {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must map agent names to their settings, got {value!r}")
    for agent, settings in value.items():
        if not isinstance(settings or {}, dict):
            raise ValueError(f"{where}.{agent} must be a mapping of settings such as "
                             f"{{learning_rate: 0.001}}, got {settings!r}")
    return {agent: dict(settings or {}) for agent, settings in value.items()}


def _check_keys(data: Any, valid: tuple[str, ...], where: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {data!r}")
    unknown = [key for key in data if key not in valid]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; the valid keys are: "
                         f"{', '.join(valid)}")


def _check_unique(label: str, values: list) -> None:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{label} lists {', '.join(repeated)} more than once")
