"""The metrics writer (CSV + JSON lines, optional TensorBoard)."""

from __future__ import annotations

import csv
import json

import pytest

from dng_jax.metric_writers import CsvWriter, JsonlWriter, create_default_writer, tensorboard_available, up_to_step


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
