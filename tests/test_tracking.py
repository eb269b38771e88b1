"""Tests for harness.tracking: the local metrics file and real offline W&B runs.

W&B runs here are offline, so nothing leaves the machine. wandb 0.31 writes no
config.yaml or wandb-summary.json for an offline run, so the checks read the run's
transaction log (``run-<id>.wandb``) directly. wandb 0.31 ships no Python reader for
that file, so `read_transaction_log` below decodes it into protobuf records.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from wandb_files import (
    config_of,
    history_rows,
    offline_run_dirs,
    records_of,
    run_record,
    summary_of,
)

from harness.tracking import Tracker, WandbSettings

CONFIG = {"agent": "rl2", "lr": 0.0003, "seed": 7, "env": {"name": "bandit", "arms": 5}}

EVALUATION = {
    "agent": "rl2",
    "env": "bandit-5",
    "split": "meta_test",
    "num_tasks": 32,
    "mean_return": {"mean": 41.5, "ci_low": 39.0, "ci_high": 44.0},
    "adaptation_curve": [3.0, 7.5, 9.25],
    "references": {
        "random": {
            "mean_return": {"mean": 20.0, "ci_low": 19.0, "ci_high": 21.0},
            "adaptation_curve": [2.0, 2.0, 2.0],
        },
        "thompson": {
            "mean_return": {"mean": 45.0, "ci_low": 44.5, "ci_high": 45.5},
            "adaptation_curve": [2.5, 8.0, 9.5],
        },
    },
}


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    """Run W&B offline and silent, with its user-level directories under tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    # Offline artifacts are staged under WANDB_DATA_DIR until `wandb sync`.
    for variable in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb_home" / variable.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def read_metric_lines(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def wandb_core_children() -> list[int]:
    """Return the ids of live wandb-core processes whose parent is this process."""
    children = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
            command = (stat_path.parent / "cmdline").read_bytes()
        except OSError:
            continue  # The process exited while it was being read.
        state, parent_id = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent_id) == os.getpid() and state != "Z" and b"wandb-core" in command:
            children.append(int(stat_path.parent.name))
    return children


def test_metrics_file_matches_logged_values(tmp_path):
    before = time.time()
    with Tracker(tmp_path, "local", CONFIG) as tracker:
        tracker.log({"rollout/episode_return": 12.5, "time/steps_per_second": 830}, step=256)
        tracker.log({"train/approx_kl": 0.0125, "train/clip_fraction": 0.25}, step=512)
    after = time.time()

    records = read_metric_lines(tmp_path)
    times = [record.pop("time") for record in records]
    assert records == [
        {"step": 256, "rollout/episode_return": 12.5, "time/steps_per_second": 830},
        {"step": 512, "train/approx_kl": 0.0125, "train/clip_fraction": 0.25},
    ]
    assert all(before <= value <= after for value in times)
    assert not (tmp_path / "wandb").exists()
    assert not (tmp_path / "wandb_run_id").exists()


def test_non_finite_values_written_as_null(tmp_path):
    with Tracker(tmp_path, "local", CONFIG) as tracker:
        tracker.log(
            {
                "train/nan": float("nan"),
                "train/inf": math.inf,
                "train/minus_inf": -math.inf,
                "train/numpy_nan": np.float32("nan"),
                "train/numpy_float": np.float64(0.5),
                "train/numpy_int": np.int64(3),
            },
            step=np.int64(10),
        )

    text = (tmp_path / "metrics.jsonl").read_text(encoding="utf-8")
    assert "NaN" not in text
    assert "Infinity" not in text
    (record,) = read_metric_lines(tmp_path)
    assert record["step"] == 10
    assert record["train/nan"] is None
    assert record["train/inf"] is None
    assert record["train/minus_inf"] is None
    assert record["train/numpy_nan"] is None
    assert record["train/numpy_float"] == 0.5
    assert record["train/numpy_int"] == 3


@pytest.mark.parametrize("key", ["loss", "training/loss", "train/", "Train/loss"])
def test_key_without_namespace_raises(tmp_path, key):
    with Tracker(tmp_path, "local", CONFIG) as tracker:
        with pytest.raises(ValueError, match=f"'{key}'"):
            tracker.log({"train/loss": 1.0, key: 2.0}, step=1)

    # The whole call is rejected, so no partial line was written.
    assert (tmp_path / "metrics.jsonl").read_text(encoding="utf-8") == ""


def test_invalid_step_and_value_raise(tmp_path):
    with Tracker(tmp_path, "local", CONFIG) as tracker:
        with pytest.raises(TypeError, match="step"):
            tracker.log({"train/loss": 1.0}, step=1.5)
        with pytest.raises(ValueError, match="step"):
            tracker.log({"train/loss": 1.0}, step=-1)
        with pytest.raises(TypeError, match="train/loss"):
            tracker.log({"train/loss": "low"}, step=1)


def test_truncate_after_drops_later_lines(tmp_path):
    with Tracker(tmp_path, "first", CONFIG) as tracker:
        for step in (100, 200, 300):
            tracker.log({"train/loss": step / 100}, step=step)
    # A process killed mid-write leaves a partial last line.
    with (tmp_path / "metrics.jsonl").open("a", encoding="utf-8") as metrics_file:
        metrics_file.write('{"step": 400, "train/lo')

    with Tracker(tmp_path, "resumed", CONFIG, resume=True) as tracker:
        dropped = tracker.truncate_after(200)
        tracker.log({"train/loss": 2.5}, step=300)

    assert dropped == 2
    records = read_metric_lines(tmp_path)
    assert [record["step"] for record in records] == [100, 200, 300]
    assert [record["train/loss"] for record in records] == [1.0, 2.0, 2.5]
    assert not (tmp_path / "metrics.jsonl.tmp").exists()


def test_partial_line_not_joined_to_next(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "tr', encoding="utf-8")
    with Tracker(tmp_path, "resumed", CONFIG) as tracker:
        tracker.log({"train/loss": 1.0}, step=3)

    lines = (tmp_path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ['{"step": 1}', '{"step": 2, "tr']
    assert json.loads(lines[2])["step"] == 3


def test_truncate_after_keeps_earlier_file_unchanged(tmp_path):
    with Tracker(tmp_path, "first", CONFIG) as tracker:
        tracker.log({"train/loss": 1.0}, step=100)
        before = (tmp_path / "metrics.jsonl").read_bytes()
        assert tracker.truncate_after(100) == 0
        assert (tmp_path / "metrics.jsonl").read_bytes() == before


def test_closed_tracker_rejects_calls(tmp_path):
    with Tracker(tmp_path, "local", CONFIG) as tracker:
        pass
    tracker.close()  # A second close does nothing.
    with pytest.raises(RuntimeError, match="closed"):
        tracker.log({"train/loss": 1.0}, step=1)


def test_evaluation_missing_key_raises(tmp_path):
    evaluation = {key: value for key, value in EVALUATION.items() if key != "mean_return"}
    with Tracker(tmp_path, "local", CONFIG) as tracker:
        with pytest.raises(ValueError, match="mean_return"):
            tracker.log_evaluation(evaluation)


def test_log_model_missing_path_raises(tmp_path):
    with Tracker(tmp_path, "local", CONFIG) as tracker:
        with pytest.raises(FileNotFoundError, match="missing.pt"):
            tracker.log_model(tmp_path / "missing.pt", "rl2-model")


def test_offline_run_holds_config_and_metrics(tmp_path, offline_wandb):
    # mode=None takes WANDB_MODE=offline from the environment.
    settings = WandbSettings(group="grid-1", tags=("bandit", "rl2"))
    with Tracker(tmp_path, "rl2-bandit", CONFIG, wandb=settings) as tracker:
        assert tracker.wandb_enabled
        tracker.log({"rollout/episode_return": 12.5, "train/entropy": 1.25}, step=256)
        tracker.log({"train/entropy": 1.0, "train/nan": float("nan")}, step=512)

    (offline_dir,) = offline_run_dirs(tmp_path)
    records = records_of(offline_dir)
    run = run_record(records)
    assert (tmp_path / "wandb_run_id").read_text(encoding="utf-8").strip() == run.run_id
    assert offline_dir.name.endswith(f"-{run.run_id}")
    assert run.display_name == "rl2-bandit"
    assert run.project == "adaptrl"
    assert run.run_group == "grid-1"
    assert list(run.tags) == ["bandit", "rl2"]

    config = config_of(records)
    for key, value in CONFIG.items():
        assert config[key] == value

    metric_records = [r.metric for r in records if r.WhichOneof("record_type") == "metric"]
    assert any(m.glob_name == "*" and m.step_metric == "global_step" for m in metric_records)

    rows = history_rows(records)
    assert len(rows) == 2
    assert rows[0]["global_step"] == 256
    assert rows[0]["rollout/episode_return"] == 12.5
    assert rows[0]["train/entropy"] == 1.25
    assert rows[1]["global_step"] == 512
    assert rows[1]["train/entropy"] == 1.0
    assert math.isnan(rows[1]["train/nan"])


def test_offline_run_holds_evaluation_and_model(tmp_path, offline_wandb):
    checkpoint = tmp_path / "checkpoints" / "latest.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights")

    with Tracker(tmp_path, "rl2-bandit", CONFIG, wandb=WandbSettings()) as tracker:
        tracker.log({"train/entropy": 1.0}, step=4096)
        tracker.log_evaluation(EVALUATION)
        tracker.log_model(checkpoint, "rl2-bandit-model")
        assert tracker.wandb_enabled

    (offline_dir,) = offline_run_dirs(tmp_path)
    records = records_of(offline_dir)
    summary = summary_of(records)
    assert summary["eval/meta_test/mean_return"] == 41.5
    assert summary["eval/meta_test/mean_return_ci_low"] == 39.0
    assert summary["eval/meta_test/mean_return_ci_high"] == 44.0
    assert summary["eval/meta_test/num_tasks"] == 32
    assert summary["eval/meta_test/agent"] == "rl2"
    assert summary["eval/meta_test/reference/random/mean_return"] == 20.0
    assert summary["eval/meta_test/reference/thompson/mean_return_ci_high"] == 45.5

    (table_path,) = (offline_dir / "files" / "media" / "table" / "eval" / "meta_test").glob(
        "adaptation_curve_table_*.table.json"
    )
    table = json.loads(table_path.read_text(encoding="utf-8"))
    assert table["columns"] == ["policy", "index", "mean_return"]
    assert table["data"] == [
        ["rl2", 0, 3.0],
        ["rl2", 1, 7.5],
        ["rl2", 2, 9.25],
        ["random", 0, 2.0],
        ["random", 1, 2.0],
        ["random", 2, 2.0],
        ["thompson", 0, 2.5],
        ["thompson", 1, 8.0],
        ["thompson", 2, 9.5],
    ]

    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    (model,) = [artifact for artifact in artifacts if artifact.type == "model"]
    assert model.name == "rl2-bandit-model"
    assert [entry.path for entry in model.manifest.contents] == ["latest.pt"]
    assert json.loads(model.metadata) == {"global_step": 4096}


def test_resume_reuses_stored_run_id(tmp_path, offline_wandb):
    with Tracker(tmp_path, "first", CONFIG, wandb=WandbSettings()) as tracker:
        tracker.log({"train/loss": 1.0}, step=100)
    stored_id = (tmp_path / "wandb_run_id").read_text(encoding="utf-8").strip()

    with Tracker(tmp_path, "first", CONFIG, wandb=WandbSettings(), resume=True) as tracker:
        tracker.truncate_after(100)
        tracker.log({"train/loss": 0.5}, step=200)

    # W&B names the resumed run's directory with the same id, plus "-1" when both start
    # in the same second, so sorting by name puts it second.
    first_dir, resumed_dir = offline_run_dirs(tmp_path)
    assert run_record(records_of(first_dir)).run_id == stored_id
    resumed_records = records_of(resumed_dir)
    assert run_record(resumed_records).run_id == stored_id
    assert history_rows(resumed_records)[0]["global_step"] == 200
    assert (tmp_path / "wandb_run_id").read_text(encoding="utf-8").strip() == stored_id


def test_run_without_resume_gets_new_id(tmp_path, offline_wandb):
    with Tracker(tmp_path, "first", CONFIG, wandb=WandbSettings()):
        pass
    first_id = (tmp_path / "wandb_run_id").read_text(encoding="utf-8").strip()

    with Tracker(tmp_path, "second", CONFIG, wandb=WandbSettings()):
        pass
    second_id = (tmp_path / "wandb_run_id").read_text(encoding="utf-8").strip()

    assert second_id != first_id
    # Directory names sort by start second, then by run id, so compare as a set.
    run_ids = {run_record(records_of(path)).run_id for path in offline_run_dirs(tmp_path)}
    assert run_ids == {first_id, second_id}


def test_resume_without_stored_id_starts_run(tmp_path, offline_wandb):
    with Tracker(tmp_path, "resumed", CONFIG, wandb=WandbSettings(), resume=True) as tracker:
        assert tracker.wandb_enabled

    (offline_dir,) = offline_run_dirs(tmp_path)
    stored_id = (tmp_path / "wandb_run_id").read_text(encoding="utf-8").strip()
    assert run_record(records_of(offline_dir)).run_id == stored_id


def test_invalid_mode_falls_back_to_local(tmp_path, offline_wandb, caplog):
    caplog.set_level(logging.WARNING, logger="harness.tracking")
    with Tracker(tmp_path, "bad", CONFIG, wandb=WandbSettings(mode="bogus")) as tracker:
        assert not tracker.wandb_enabled
        tracker.log({"train/loss": 1.0}, step=1)
        tracker.log_evaluation(EVALUATION)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "W&B init failed" in message
    assert "bogus" in message
    assert "WANDB_MODE=offline" in message
    assert "--track" in message
    assert [record["step"] for record in read_metric_lines(tmp_path)] == [1]
    assert not (tmp_path / "wandb_run_id").exists()


def test_failed_wandb_call_falls_back_to_local(tmp_path, offline_wandb, caplog):
    caplog.set_level(logging.WARNING, logger="harness.tracking")
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")

    with Tracker(tmp_path, "bad-artifact", CONFIG, wandb=WandbSettings()) as tracker:
        tracker.log({"train/loss": 1.0}, step=1)
        # W&B rejects artifact names with spaces or slashes with a ValueError.
        tracker.log_model(checkpoint, "not a valid/name")
        assert not tracker.wandb_enabled
        tracker.log({"train/loss": 0.5}, step=2)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "W&B log_artifact failed" in warnings[0].getMessage()
    assert [record["step"] for record in read_metric_lines(tmp_path)] == [1, 2]
    (offline_dir,) = offline_run_dirs(tmp_path)
    assert [row["global_step"] for row in history_rows(records_of(offline_dir))] == [1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_close_stops_wandb_service(tmp_path, offline_wandb):
    first = Tracker(tmp_path / "a", "a", CONFIG, wandb=WandbSettings())
    second = Tracker(tmp_path / "b", "b", CONFIG, wandb=WandbSettings())
    assert wandb_core_children(), "expected a wandb-core service process while runs are open"

    first.close()
    assert wandb_core_children(), "the service must outlive the first of two open runs"
    second.log({"train/loss": 1.0}, step=1)
    second.close()

    deadline = time.monotonic() + 5.0
    while wandb_core_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert wandb_core_children() == []
    (offline_dir,) = offline_run_dirs(tmp_path / "b")
    assert history_rows(records_of(offline_dir))[0]["train/loss"] == 1.0
