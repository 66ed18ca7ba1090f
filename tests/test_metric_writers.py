"""The metrics writer (CSV + JSON lines, optional TensorBoard) and the typed config sections."""

from __future__ import annotations

import csv
import json

import pytest

from dng_jax.config import ExperimentConfig, SweepConfig, comparable, config_table, experiment_config
from dng_jax.experiment.retrain import RetrainConfig
from dng_jax.errors import ConfigError
from dng_jax.metric_writers import CsvWriter, JsonlWriter, create_default_writer, tensorboard_available, up_to_step
from dng_jax.typed_config import FieldError, from_section


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_and_jsonl_rows_and_resume_truncation(tmp_path):
    w = create_default_writer(tmp_path, "m", ("step", "split", "loss", "wall_time"), tensorboard=False)
    for step in (10, 20, 30):
        w.write_scalars(step, {"split": "train", "loss": 1.0 / step, "wall_time": 1795618642.828046, "extra": 1})
    w.close()
    rows = _csv(tmp_path / "m.csv")
    assert [r["step"] for r in rows] == ["10", "20", "30"] and list(rows[0]) == ["step", "split", "loss", "wall_time"]
    assert rows[0]["loss"] == "0.1" and rows[0]["wall_time"] == "1795618642.828"  # Unix times keep ms
    lines = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert lines[2] == {"step": 30, "split": "train", "loss": 1 / 30, "wall_time": 1795618642.828046, "extra": 1}
    # resuming from step 20 drops what came after it, in both files, then appends
    w = create_default_writer(tmp_path, "m", ("step", "split", "loss", "wall_time"), keep=up_to_step(20),
                              tensorboard=False)
    w.write_scalars(25, {"split": "eval", "loss": 0.5})
    assert [r["step"] for r in _csv(tmp_path / "m.csv")] == ["10", "20", "25"]
    assert [json.loads(x)["step"] for x in (tmp_path / "m.jsonl").read_text().splitlines()] == [10, 20, 25]
    # keep=None starts afresh
    CsvWriter(tmp_path / "m.csv", ("step", "loss"))
    JsonlWriter(tmp_path / "m.jsonl")
    assert _csv(tmp_path / "m.csv") == [] and (tmp_path / "m.jsonl").read_text() == ""


def test_jsonl_skips_a_line_cut_by_a_crash(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"step": 1, "run": 0, "loss": 2.0}\n{"step": 1, "run": 1, "lo')
    JsonlWriter(p, keep=lambda row: row["run"] != 1).write_scalars(2, {"run": 1, "loss": 1.5})
    assert [json.loads(x) for x in p.read_text().splitlines()] == [
        {"step": 1, "run": 0, "loss": 2.0}, {"step": 2, "run": 1, "loss": 1.5}]


@pytest.mark.skipif(not tensorboard_available(), reason="tensorboardX (the [tensorboard] extra) not installed")
def test_tensorboard_event_files(tmp_path):
    w = create_default_writer(tmp_path, "m", ("step", "loss"), tensorboard=True)
    w.write_scalars(1, {"loss": 0.5, "split": "train"})
    w.close()
    assert any((tmp_path / "tensorboard" / "m").iterdir())


def test_typed_sections_convert_once_and_check_values():
    cfg = experiment_config({"sweep": {"ks": [5, 50], "seeds": 3}, "train": {"lr": 1}})
    assert cfg.sweep.ks == (5, 50) and cfg.sweep.seeds == 3 and cfg.train.lr == 1.0  # list -> tuple, int -> float
    assert isinstance(cfg, ExperimentConfig) and hash(cfg) == hash(experiment_config(
        {"sweep": {"ks": (5, 50), "seeds": 3}, "train": {"lr": 1.0}}))
    assert from_section(RetrainConfig, {"epochs": 0}).epochs == 0
    with pytest.raises(ConfigError, match=r"config field sweep\.seeds: must be >= 1, got 0"):
        experiment_config({"sweep": {"seeds": 0}})
    with pytest.raises(ConfigError, match=r"sweep\.ks: expected an integer, got 'abc'"):
        experiment_config({"sweep": {"ks": ("abc",)}})
    with pytest.raises(ConfigError, match=r"clustering\.gng\.start_units"):
        experiment_config({"clustering": {"gng": {"start_units": 1}}})
    with pytest.raises(ConfigError, match=r"train\.nope: no such field"):
        experiment_config({"train": {"nope": 1}})
    with pytest.raises(FieldError, match="seeds_per_chunk"):
        SweepConfig(seeds_per_chunk=0)
    with pytest.raises(ConfigError, match=r"data\.crop_size: must be a positive multiple of 32"):
        experiment_config({"data": {"crop_size": 100}})


def test_comparable_ignores_volatile_fields_and_table_lists_every_field():
    a = experiment_config({"sweep": {"seeds_per_chunk": 4}})
    b = experiment_config({"sweep": {"seeds_per_chunk": 8}})
    assert comparable(a) == comparable(b) and "sweep.seeds_per_chunk" not in comparable(a)
    assert comparable(a) != comparable(experiment_config({"sweep": {"seeds": 2}}))
    table = config_table(a)
    assert "--config.clustering.gng.max_units" in table and "--config.sweep.seeds_per_chunk" in table
