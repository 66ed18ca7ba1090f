"""README "Your own experiment", at tiny size: a labeled folder of one cell type beside an unlabeled folder
of another (the bundled mini-set repacked into the folder layout), through train and sweep to predict."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ORBAX_LOOP_WARNING

from dng_jax import pack, predict
from dng_jax import train as train_cli
from dng_jax.io.labels import read_labels

TESTS = Path(__file__).resolve().parent


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_own.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nimport ml_collections\n"
                    "from conftest import tiny_sweep_config\n\n\n"
                    "def get_config():\n    c = tiny_sweep_config()\n    c.data.protocol = 'wide'\n"
                    "    c.data.path = ml_collections.FieldReference(None, field_type=str)\n"
                    "    c.sweep.methods = ('kmc',)\n    c.sweep.seeds, c.sweep.seeds_per_chunk = 2, 2\n"
                    "    c.report.panels = 1\n    return c\n")
    return path


@pytest.mark.slow
@ORBAX_LOOP_WARNING
def test_labeled_and_unlabeled_folders_through_train_sweep_and_predict(tmp_path, capsys):
    study = tmp_path / "my_study"
    assert pack.main(["--types", "fluorescence", "--no-manifest", "--output", str(study / "ct1"), "--no-progress"]) == 0
    assert pack.main(["--types", "tissue_purple", "--no-masks", "--no-manifest", "--output", str(study / "new"),
                      "--no-progress"]) == 0
    assert not (study / "new" / "masks").exists()
    config = _config_file(tmp_path)
    data = [f"--config.data.path={study}", "--config.data.known_type=ct1"]
    assert train_cli.main(["train", "--config", str(config), "--workdir", str(tmp_path / "train"), "--no-progress",
                           *data]) == 0
    # (a second command line in this process would define its --config.* flags twice: a process of its own)
    proc = subprocess.run([sys.executable, "-m", "dng_jax.sweep", "--config", str(config), "--workdir",
                           str(tmp_path / "sweep"), "--no-progress", *data, f"--config.sweep.checkpoint={tmp_path / 'train'}",
                           "--config.sweep.baseline_runs=2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wd = tmp_path / "sweep"
    rows = list(csv.DictReader(open(wd / "results.csv")))
    # sweep.baseline_runs=2: the runs are made on each baseline (the nested design), each paired with its own
    assert [(r["method"], r["baseline"], r["seed"]) for r in rows] == [("kmc", "0", "0"), ("kmc", "0", "1"),
                                                                       ("kmc", "1", "0"), ("kmc", "1", "1")]
    # the clustering images are the unlabeled experiment's; the test images are CT1's only
    types = json.loads((wd / "cluster_data" / "sources.json").read_text())["types"]
    assert set(types) == {"new"}
    test_set = json.loads((wd / "test_set.json").read_text())
    assert test_set["known_type"] == "ct1" and set(test_set["test"]) == {"ct1"}
    assert np.isfinite(float(rows[0]["map_known"])) and (wd / "table1.md").exists()
    # a second baseline trained by the sweep (train.seed + 1), its own clustering data and runs; both in Table
    # I's row, and the configuration's interval over the 2 baselines (a general claim)
    assert (wd / "baseline_runs" / "run1" / "checkpoints").is_dir()
    assert (wd / "baseline_runs" / "run1" / "runs" / "kmc_k2" / "scores.csv").is_file()
    assert (wd / "baseline_runs" / "run1" / "cluster_data" / "latent.npy").is_file()
    table = (wd / "table1.md").read_text()
    assert "| baseline | 2 |" in table and "| kMC(2) | 2 × 2 | general |" in table
    capsys.readouterr()
    out = tmp_path / "labels"
    assert predict.main(["--checkpoint", str(tmp_path / "train"), "--input", str(study / "new" / "images"),
                         "--output", str(out), "--no-progress", "--quiet"]) == 0
    written = sorted(p.name for p in out.glob("*.png"))
    assert written == sorted(p.name for p in (study / "new" / "images").glob("*.png")) and len(written) == 3
    assert read_labels(out / written[0]).shape == read_labels(out / written[0]).shape
