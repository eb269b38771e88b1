"""Configuration of a training run, parsed from the command line by tyro."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.device import resolve_device
from agents.maml import MAMLConfig
from agents.memory import MemoryConfig
from agents.registry import AGENTS, agent_entry, config_field
from agents.rl2 import RL2Config
from agents.sb3_config import PPOBaselineConfig, RecurrentPPOBaselineConfig
from envs.contract import ContractError
from envs.registry import make_distribution
from envs.tasks import TaskDistribution

_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_INVALID_NAME_CHARACTER = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class TrainConfig:
    """Train a meta-RL agent on a task distribution, then meta-test it on held-out tasks.

    The defaults train RL² on 5-armed Bernoulli bandits with 10 pulls per trial.
    """

    env: str = "bandit-k5-n10"
    """Task distribution: a registered name such as bandit-k5-n10 (k arms, n pulls per trial),
    maze-9x9-n2 (mazes, n episodes per trial), mdp-s10-a5-n10 (tabular MDPs), navigation-2d,
    halfcheetah-vel, halfcheetah-dir, ant-dir, ant-dir-2d or ant-goal (MuJoCo), or
    package.module:factory for your own."""
    env_kwargs: tuple[str, ...] = ()
    """Settings of the task distribution as KEY=VALUE pairs, for example window=3
    max_episode_steps=50 for mazes, horizon=5 for tabular MDPs, horizon=50 for navigation or
    MuJoCo, or num_test_tasks=500."""
    agent: str = "rl2"
    """Agent to train: rl2 (a GRU policy), memory (a controller with an external memory),
    maml-ppo (gradient-based adaptation), or a stable-baselines3 baseline: ppo (no memory, a
    new task each episode) or recurrent-ppo (sb3-contrib's LSTM policy on trials). Their
    hyperparameters are the --rl2.*, --memory.*, --maml-ppo.*, --ppo.* and --recurrent-ppo.*
    flags."""
    total_timesteps: int = 5_000_000
    """Training budget in env steps (pulls, for bandits), counted from the start of the run and
    rounded up to whole rollouts."""
    seed: int = 0
    """Seed of the run; split into independent streams for tasks, envs, init and sampling."""
    device: str = "auto"
    """auto (GPU when CUDA is available), cpu, or cuda (fails when CUDA is not available)."""
    run_name: str | None = None
    """Name of the run folder under --runs-dir; default {agent}-{env}-seed{seed}, with each item
    of --env-kwargs added before the seed (window=3 adds -window3)."""
    runs_dir: Path = Path("runs")
    """Folder that contains the run folders."""
    resume: bool = False
    """Continue the run named by --run-name from its latest checkpoint."""
    checkpoint_interval: int = 1_000_000
    """Env steps between checkpoints; one is also written at the end and on Ctrl-C."""
    eval_tasks: int | None = None
    """Held-out tasks to meta-test on after training; default all of the meta-test split."""
    eval_seed: int = 0
    """Seed of the evaluation's env noise and action sampling, equal for every agent."""
    eval_deterministic: bool = False
    """Meta-test with the most likely action instead of sampling. For maml-ppo, each adapted
    policy is measured this way while adaptation still learns from sampled episodes."""
    track: bool = False
    """Track the run with Weights & Biases (set WANDB_MODE=offline to work without network)."""
    wandb_project: str = "adaptrl"
    """W&B project."""
    wandb_entity: str | None = None
    """W&B entity (user or team); default is your W&B default entity."""
    wandb_group: str | None = None
    """W&B group, for example one per comparison."""
    wandb_tags: tuple[str, ...] = ()
    """W&B tags."""
    progress: bool = True
    """Show a progress bar."""
    torch_threads: int | None = None
    """CPU threads for torch; default torch's own choice (one per core). On a machine shared
    with other busy processes, 1 avoids stalls of torch's thread pool."""
    rl2: RL2Config = field(default_factory=RL2Config)
    """Hyperparameters of the rl2 agent."""
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    """Hyperparameters of the memory agent."""
    maml_ppo: MAMLConfig = field(default_factory=MAMLConfig)
    """Hyperparameters of the maml-ppo agent."""
    ppo: PPOBaselineConfig = field(default_factory=PPOBaselineConfig)
    """Hyperparameters of the ppo baseline (stable-baselines3's names)."""
    recurrent_ppo: RecurrentPPOBaselineConfig = field(default_factory=RecurrentPPOBaselineConfig)
    """Hyperparameters of the recurrent-ppo baseline (sb3-contrib's names)."""

    def resolved_run_name(self) -> str:
        if self.run_name:
            return self.run_name
        # Runs that differ only in --env-kwargs get different folders. Characters that a
        # folder name should not hold (such as '/' or spaces in string values) become '_'.
        parts = [self.agent, self.env.replace(":", ".")]
        parts += [_INVALID_NAME_CHARACTER.sub("_", item.replace("=", "", 1)) for item in self.env_kwargs]
        return "-".join(parts + [f"seed{self.seed}"])

    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.resolved_run_name()

    def agent_config(self):
        return getattr(self, config_field(self.agent))

    def distribution_kwargs(self) -> dict[str, Any]:
        """Parse ``env_kwargs`` into keyword arguments; values are Python literals or strings."""
        kwargs: dict[str, Any] = {}
        for item in self.env_kwargs:
            key, sep, text = item.partition("=")
            if not sep or not key.isidentifier():
                raise ValueError(
                    f"invalid --env-kwargs item {item!r}; write KEY=VALUE, for example window=3"
                )
            try:
                kwargs[key] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                kwargs[key] = text
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["runs_dir"] = str(self.runs_dir)
        data["wandb_tags"] = list(self.wandb_tags)
        data["env_kwargs"] = list(self.env_kwargs)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys are {sorted(known)}")
        data["rl2"] = RL2Config(**data.get("rl2", {}))
        data["memory"] = MemoryConfig(**data.get("memory", {}))
        data["maml_ppo"] = MAMLConfig.from_dict(data.get("maml_ppo", {}))
        data["ppo"] = PPOBaselineConfig.from_dict(data.get("ppo", {}))
        data["recurrent_ppo"] = RecurrentPPOBaselineConfig.from_dict(data.get("recurrent_ppo", {}))
        data["runs_dir"] = Path(data.get("runs_dir", "runs"))
        data["wandb_tags"] = tuple(data.get("wandb_tags", ()))
        data["env_kwargs"] = tuple(data.get("env_kwargs", ()))
        return cls(**data)

    def validate(self, explicit_settings: Collection[str] = ()) -> TaskDistribution:
        """Check every value before training starts; return the task distribution.

        Args:
            explicit_settings: the settings the command line set, as
                :func:`harness.cli.given_settings` names them (``rl2.hidden_size``). A flag of
                another agent is rejected even when it repeats that agent's default.

        Raises:
            ValueError: naming the invalid value and how to fix it.
        """
        agent_entry(self.agent)
        kwargs = self.distribution_kwargs()
        try:
            distribution = make_distribution(self.env, **kwargs)
        except TypeError as error:
            raise ValueError(
                f"--env-kwargs {' '.join(self.env_kwargs)} does not fit {self.env}: {error}. "
                f"The valid keys are: {', '.join(_distribution_keys(self.env))}."
            ) from error
        except ContractError:
            raise  # names the broken rule itself; the env kwargs are not to blame
        except ValueError as error:
            if not self.env_kwargs:
                raise
            # A value of the wrong kind (horizon=abc) fails deep in the family's checks.
            raise ValueError(
                f"--env-kwargs {' '.join(self.env_kwargs)} is invalid for {self.env}: {error}"
            ) from error
        self._validate_agent_settings(distribution, explicit_settings)
        for name in ("total_timesteps", "checkpoint_interval"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("seed", "eval_seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be a non-negative integer, got {value!r}")
        resolve_device(self.device)
        if self.torch_threads is not None and (not isinstance(self.torch_threads, int)
                                               or self.torch_threads < 1):
            raise ValueError(f"--torch-threads must be a positive integer, got {self.torch_threads!r}")
        if self.eval_tasks is not None and not 1 <= self.eval_tasks <= distribution.num_test_tasks:
            raise ValueError(
                f"--eval-tasks must lie in [1, {distribution.num_test_tasks}] (the size of the "
                f"meta-test split of {distribution.name}), got {self.eval_tasks}"
            )
        if not _RUN_NAME.fullmatch(self.resolved_run_name()):
            raise ValueError(
                f"invalid run name {self.resolved_run_name()!r}: use letters, digits, '.', '_' "
                "and '-', starting with a letter or digit"
            )
        return distribution

    def _validate_agent_settings(
        self, distribution: TaskDistribution, explicit_settings: Collection[str]
    ) -> None:
        """Check the chosen agent's settings, naming flags, and reject flags of other agents."""
        config = self.agent_config()
        try:
            config.validate()
            if hasattr(config, "validate_for"):
                config.validate_for(distribution)
        except ValueError as error:
            message = str(error)
            for setting in dataclasses.fields(config):
                flag = f"--{self.agent}.{setting.name.replace('_', '-')}"
                message = re.sub(rf"\b{setting.name}\b", flag, message)
            raise ValueError(message) from error
        own_settings = {setting.name for setting in dataclasses.fields(config)}
        for name in AGENTS:
            if name == self.agent:
                continue
            other_config, other_default = getattr(self, config_field(name)), AGENTS[name].config_class()
            given_keys = {setting.partition(".")[2] for setting in explicit_settings
                          if setting.partition(".")[0] == config_field(name)}
            changed = [setting.name for setting in dataclasses.fields(other_config)
                       if setting.name in given_keys
                       or getattr(other_config, setting.name) != getattr(other_default, setting.name)]
            if not changed:
                continue
            given_flags = ", ".join(f"--{name}.{key.replace('_', '-')}" for key in changed)
            unknown = [f"--{self.agent}.{key.replace('_', '-')}" for key in changed
                       if key not in own_settings]
            message = (
                f"--{name}.* flags were given, but the agent is {self.agent}, which reads only "
                f"--{self.agent}.* flags (given: {given_flags}); pass --agent {name} or move the "
                f"settings to --{self.agent}.*"
            )
            if unknown:
                message += f" ({self.agent} has no {', '.join(unknown)})"
            raise ValueError(message)


def _distribution_keys(env: str) -> list[str]:
    """Return the keyword arguments the distribution class behind ``env`` accepts."""
    distribution_class = type(make_distribution(env))
    parameters = inspect.signature(distribution_class.__init__).parameters
    return [name for name in parameters if name != "self"]
