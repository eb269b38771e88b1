"""The README's two set-up commands: they stay in step with CI and the scripts they call."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MAIN_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && "
    ".venv/bin/pip install -e . && .venv/bin/python scripts/train.py"
)
TEST_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && "
    '.venv/bin/pip install -e ".[test]" && .venv/bin/python -m pytest'
)


def bash_blocks() -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", README, re.DOTALL)]


def test_readme_gives_main_and_test_commands():
    blocks = bash_blocks()
    assert blocks[0] == MAIN_COMMAND
    assert blocks[1] == TEST_COMMAND


def test_ci_runs_the_readme_test_steps():
    ci = (ROOT / ".ci" / "run").read_text()
    for step in ("python3 -m venv .venv", "pip install --quiet torch==2.13.0",
                 'pip install --quiet -e ".[test]"', ".venv/bin/python -m pytest"):
        assert step in ci, step


def test_train_script_help_lists_flags_with_units():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--total-timesteps" in result.stdout
    assert "env steps" in result.stdout
    assert "--rl2.learning-rate" in result.stdout
    assert "--memory.memory-slots" in result.stdout
    assert "--env-kwargs" in result.stdout


@pytest.mark.slow
def test_main_job_reaches_target(tmp_path):
    # The README's main job as a user runs it: no flags, from a fresh working directory.
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--no-progress"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    row = re.search(r"^rl2\s+([0-9.]+)", result.stdout, re.MULTILINE)
    assert row, result.stdout
    assert float(row.group(1)) >= 6.55, result.stdout
    assert (tmp_path / "runs" / "rl2-bandit-k5-n10-seed0" / "evaluation.json").is_file()
