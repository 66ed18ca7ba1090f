"""README "Your own experiment", at tiny size: a labeled folder of one cell type beside a new experiment of which
some images are annotated (the bundled mini-set repacked into the folder layout), through train and sweep (each
after a failed start on the same work dir) to predict and evaluate; the commands as the README gives them."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ORBAX_LOOP_WARNING, ROOT

from dng_jax import evaluate, pack, predict
from dng_jax import train as train_cli
from dng_jax.config import load_config
from dng_jax.errors import DataError
from dng_jax.io.labels import read_labels
from dng_jax.segmentation.trainer import train_and_evaluate

TESTS = Path(__file__).resolve().parent
#: The two pack commands of the README's walkthrough (kept in step with it by the test).
PACK_CT1 = ["--types", "fluorescence", "--no-manifest"]
PACK_NEW = ["--types", "tissue_purple,tissue_magenta", "--masks-for", "4", "--no-manifest"]


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_own.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nimport ml_collections\n"
                    "from conftest import tiny_sweep_config\n\n\n"
                    "def get_config():\n    c = tiny_sweep_config()\n    c.data.protocol = 'wide'\n"
                    "    c.data.path = ml_collections.FieldReference(None, field_type=str)\n"
                    "    c.sweep.methods = ('kmc',)\n    c.sweep.seeds, c.sweep.seeds_per_chunk = 2, 2\n"
                    "    c.report.panels = 1\n    return c\n")
    return path


def test_the_readme_walkthrough_packs_what_this_test_packs():
    readme = " ".join((ROOT / "README.md").read_text().replace("\\\n", " ").split())
    for flags, out in ((PACK_CT1, "my_study/ct1"), (PACK_NEW, "my_study/new")):
        assert f"python -m dng_jax.pack {' '.join(flags)} --output {out}" in readme
    assert "--workdir runs/my_sweep --data my_study" in readme and "--ignore-extra" in readme


def _sweep(config, workdir, *flags):
    return subprocess.run([sys.executable, "-m", "dng_jax.sweep", "--config", str(config), "--workdir", str(workdir),
                           "--no-progress", *flags], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@ORBAX_LOOP_WARNING
def test_labeled_and_partly_annotated_folders_through_train_sweep_and_predict(tmp_path, capsys):
    study = tmp_path / "my_study"
    assert pack.main([*PACK_CT1, "--output", str(study / "ct1"), "--no-progress"]) == 0
    assert pack.main([*PACK_NEW, "--output", str(study / "new"), "--no-progress"]) == 0
    assert len(list((study / "new" / "images").glob("*.png"))) == 6
    assert len(list((study / "new" / "masks").glob("*.png"))) == 4  # 2 images of the new experiment unlabeled
    config = _config_file(tmp_path)
    data = ["--data", str(study), "--config.data.known_type=ct1"]
    # a failed start (a known type no image has) leaves the work dir as it was; the corrected command runs there
    bad = load_config(config)
    bad.data.path, bad.data.known_type = str(study), "nope"
    with pytest.raises(DataError, match="no labeled image of the known cell type 'nope'"):
        train_and_evaluate(bad, tmp_path / "train", progress=False)
    assert not (tmp_path / "train").exists()
    assert train_cli.main(["train", "--config", str(config), "--workdir", str(tmp_path / "train"), "--no-progress",
                           *data]) == 0
    # (a second command line in this process would define its --config.* flags twice: a process of its own)
    wd = tmp_path / "sweep"
    failed = _sweep(config, wd, "--data", str(study), "--config.data.known_type=fluorescence")
    assert failed.returncode == 2 and "no labeled image of the known cell type 'fluorescence'" in failed.stderr
    assert not wd.exists(), failed.stderr
    proc = _sweep(config, wd, *data, f"--config.sweep.checkpoint={tmp_path / 'train'}", "--config.sweep.baseline_runs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(wd / "results.csv")))
    # sweep.baseline_runs=2: the runs are made on each baseline (the nested design), each paired with its own
    assert [(r["method"], r["baseline"], r["seed"]) for r in rows] == [("kmc", "0", "0"), ("kmc", "0", "1"),
                                                                       ("kmc", "1", "0"), ("kmc", "1", "1")]
    # the clustering images are the new experiment's (annotated or not); its annotated images are scored
    types = json.loads((wd / "cluster_data" / "sources.json").read_text())["types"]
    assert set(types) == {"new"}
    test_set = json.loads((wd / "test_set.json").read_text())
    assert test_set["known_type"] == "ct1" and set(test_set["test"]) == {"ct1", "new"}
    assert all(np.isfinite(float(r[c])) for r in rows for c in ("map_known", "map_unknown"))
    # a second baseline trained by the sweep (train.seed + 1), its own clustering data and runs; both in Table
    # I's row, and the configuration's interval over the 2 baselines (a general claim)
    assert (wd / "baseline_runs" / "run1" / "checkpoints").is_dir()
    assert (wd / "baseline_runs" / "run1" / "runs" / "kmc_k2" / "scores.csv").is_file()
    assert (wd / "baseline_runs" / "run1" / "cluster_data" / "latent.npy").is_file()
    table = (wd / "table1.md").read_text()
    assert "| baseline | 2 |" in table and "| kMC(2) | 2 × 2 | general |" in table and "nan" not in table
    assert re.search(r"\| kMC\(2\) \| 4 \| \d+ \| [\d.]+ ± [\d.]+ \| [\d.]+ ± [\d.]+ \|", table), table
    # the console ends with the answer: at most 15 lines, the best row's verdict ("–": too few images for one)
    summary = proc.stdout.rstrip("\n").split("\n\n")[-1].splitlines()
    assert len(summary) <= 15 and summary[0].startswith(f"outputs in {wd.resolve()}"), proc.stdout[-3000:]
    best = next(i for i, line in enumerate(summary) if line.startswith("best row on the other types: kMC(2)"))
    assert summary[best + 1].startswith("  against the baseline on the same 2 images: Δ ")
    assert "– too few images for a verdict (n = 2" in summary[best + 1]
    assert any("only show that the pipeline works" in line for line in summary)
    assert any(line.startswith(f"baseline (loaded from sweep.checkpoint {tmp_path / 'train'})") for line in summary)
    capsys.readouterr()
    out = study / "new" / "labels"
    assert predict.main(["--checkpoint", str(tmp_path / "train"), "--input", str(study / "new" / "images"),
                         "--output", str(out), "--no-progress", "--quiet"]) == 0
    written = sorted(p.name for p in out.glob("*.png"))
    assert written == sorted(p.name for p in (study / "new" / "images").glob("*.png")) and len(written) == 6
    assert read_labels(out / written[0]).shape == Image.open(study / "new" / "images" / written[0]).size[::-1]
    assert evaluate.main(["--gt", str(study / "new" / "masks"), "--pred", str(out), "--ignore-extra",
                          "--no-progress", "--quiet"]) == 0
    assert re.match(r"mAP [\d.]+ \[[\d.]+, [\d.]+\] over 4 images", capsys.readouterr().out)
