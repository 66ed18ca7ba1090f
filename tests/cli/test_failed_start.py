"""Check, then write: a command that fails on its input leaves the file system as it found it, and the corrected
command on the same --workdir / --output then runs (README, "Exit status"; issue: the first hour of a new user).

The sweep and train command lines run once per process (their --config.* flags); here their library calls, the
command lines themselves in tests/test_own_experiment.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ORBAX_LOOP_WARNING, ROOT, tiny_config, tiny_sweep_config
from PIL import Image

from dng_jax import classical, cli, cluster, evaluate, export_labels, pack, predict, report, summary, tfds_dsb2018, variants
from dng_jax.errors import CheckpointError, ConfigError, DataError
from dng_jax.experiment import sweep
from dng_jax.segmentation import trainer
from dng_jax.segmentation.trainer import train_and_evaluate


def listing(path):
    """Every path under ``path`` (relative), or None when it does not exist."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else None


def error_line(capsys, *needles) -> str:
    err = capsys.readouterr().err
    assert "error: " in err and "Traceback" not in err, err
    for n in needles:
        assert str(n) in err, (n, err)
    return err


# ----------------------------------------------------------------------------------------- sweep, train


@pytest.mark.parametrize("existing", [False, True])
def test_a_sweep_that_cannot_start_leaves_its_workdir_as_it_was(tmp_path, monkeypatch, existing):
    wd = tmp_path / "w"
    if existing:
        wd.mkdir()
    before = listing(wd)
    bad_type = tiny_sweep_config()
    bad_type.data.known_type = "ct1"  # the mini-set's labeled images are fluorescence, ...
    with pytest.raises(DataError, match="no labeled image of the known cell type 'ct1'"):
        sweep.run_sweep(bad_type, wd, progress=False)
    assert listing(wd) == before
    bad_checkpoint = tiny_sweep_config()
    bad_checkpoint.sweep.checkpoint = str(tmp_path / "no_such_training")
    with pytest.raises(CheckpointError, match="no_such_training"):
        sweep.run_sweep(bad_checkpoint, wd, progress=False)
    assert listing(wd) == before  # no sweep_config.json, no .lock
    # the corrected command gets past every check on the same work dir (the stages themselves: test_sweep.py)
    started = []
    monkeypatch.setattr(sweep, "_run", lambda cfg, workdir, *a: started.append(workdir) or "started")
    assert sweep.run_sweep(tiny_sweep_config(), wd, progress=False) == "started"
    assert (wd / "sweep_config.json").exists()


def test_a_checkpoint_of_another_split_is_refused_before_the_workdir_is_made(checkpoint, tmp_path):
    cfg = tiny_sweep_config()
    cfg.sweep.checkpoint = str(checkpoint)  # trained with tiny_config(): the paper protocol
    cfg.data.protocol = "wide"
    with pytest.raises(Exception, match=r"differs in: data\.protocol"):
        sweep.run_sweep(cfg, tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()


def test_a_training_that_cannot_start_leaves_no_lock(tmp_path, monkeypatch):
    wd = tmp_path / "w"
    bad = tiny_config()
    bad.data.known_type = "ct1"
    with pytest.raises(DataError, match="no labeled image of the known cell type 'ct1'"):
        train_and_evaluate(bad, wd, progress=False)
    assert not wd.exists()
    wd.mkdir()
    too_big = tiny_config()
    too_big.train.batch_size = 64  # the mini-set has 4 CT1 training images
    with pytest.raises(ConfigError, match="train.batch_size: 4 training images cannot fill one batch of 64"):
        train_and_evaluate(too_big, wd, progress=False)
    assert listing(wd) == []  # no .lock, no manifest.json
    # the corrected command gets past every check on the same work dir and caches the rule's cell types of the
    # mini-set, which has none of its own (train --help: manifest.json); the training itself: test_own_experiment
    started = []
    monkeypatch.setattr(trainer, "_train", lambda cfg, workdir, *a: started.append(workdir) or "started")
    assert train_and_evaluate(tiny_config(), wd, progress=False) == "started" and started == [wd]
    assert listing(wd) == [".lock", "manifest.json"]  # the lock released (its file stays), the types cached


# ----------------------------------------------------------------------------------------- predict, classical


def _images(folder, good: bool):
    folder.mkdir(parents=True, exist_ok=True)
    if good:
        Image.fromarray(np.full((40, 40, 3), 30, np.uint8)).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder


@pytest.mark.parametrize("command", ["predict", "classical"])
def test_no_readable_image_writes_nothing_then_the_same_output_works(command, checkpoint, tmp_path, capsys):
    run = predict.main if command == "predict" else classical.main
    model = ["--checkpoint", str(checkpoint)] if command == "predict" else []
    out = tmp_path / "o3"
    args = [*model, "--output", str(out), "--csv", str(out / "sub.csv"), "--no-progress", "--quiet"]
    assert run(["--input", str(_images(tmp_path / "bad", good=False)), *args]) == cli.EXIT_USER_ERROR
    err = error_line(capsys, "broken.png", "none of the 1 images could be read")
    assert "the others are in" not in err and not out.exists()
    # the corrected command: --csv into the folder the command makes
    assert run(["--input", str(_images(tmp_path / "good", good=True)), *args]) == cli.EXIT_PARTIAL
    assert (out / "good.png").exists() and (out / "sub.csv").read_text().startswith("ImageId")


def test_an_output_that_cannot_be_made_is_refused_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    inp = _images(tmp_path / "in", good=True)
    assert classical.main(["--input", str(inp), "--output", str(a_file / "sub"), "--no-progress"]) == 2
    error_line(capsys, "is a file, not a folder")
    assert classical.main(["--input", str(inp), "--output", str(tmp_path / "o"), "--csv",
                           str(tmp_path / "elsewhere" / "s.csv"), "--no-progress"]) == 2
    error_line(capsys, "--csv", "does not exist")
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------- the others


def test_pack_and_export_labels_check_first(tmp_path, capsys):
    out = tmp_path / "packed"
    assert pack.main(["--types", "nope", "--output", str(out), "--no-progress"]) == 2
    error_line(capsys, "no image of cell type 'nope'")
    assert not out.exists()
    assert pack.main(["--types", "tissue_purple", "--masks-for", "2", "--output", str(out), "--no-progress",
                      "--quiet"]) == 0
    assert capsys.readouterr().out == ""  # --quiet: no summary line
    assert len(listing(out / "images")) == 3 and len(listing(out / "masks")) == 2  # one image left unlabeled
    gt = tmp_path / "gt"
    assert export_labels.main(["--known-type", "ct1", "--output", str(gt), "--no-progress"]) == 2
    error_line(capsys, "'ct1'")
    assert not gt.exists()
    assert export_labels.main(["--output", str(gt), "--no-progress", "-q"]) == 0
    assert (gt / "cell_types.json").exists()


def test_cluster_evaluate_and_report_check_first(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "c"
    base = ["--method", "kmc", "--input", str(tmp_path / "X.npy"), "--output", str(out), "--no-progress", "--quiet"]
    assert cluster.main([*base, "--k", "50"]) == 2
    error_line(capsys, "k=50")
    assert not out.exists()
    assert cluster.main([*base, "--k", "3", "--epochs", "2"]) == 0 and (out / "summary.json").exists()
    # evaluate: a --json in a folder that does not exist, then the corrected one
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for d in (gt, pred):
        d.mkdir()
        Image.fromarray(np.eye(8, dtype=np.uint16)).save(d / "a.png")
    args = ["--gt", str(gt), "--pred", str(pred), "--no-progress", "--quiet"]
    assert evaluate.main([*args, "--json", str(tmp_path / "no" / "s.json")]) == 2
    error_line(capsys, "--json")
    assert not (tmp_path / "no").exists()
    assert evaluate.main([*args, "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["n_images"] == 1
    # report: a folder without a finished sweep is named as such, and not locked (nothing written)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report.main(["--workdir", str(empty)]) == 2
    error_line(capsys, "holds no finished sweep", "dng_jax.sweep --workdir")
    assert listing(empty) == []


def test_variants_with_a_bad_checkpoint_leave_no_study(tmp_path, capsys):
    wd = tmp_path / "study"
    assert variants.main(["--config", str(tmp_path / "none.py"), "--checkpoint", str(tmp_path / "nope"),
                          "--workdir", str(wd), "--no-progress", "--quiet"]) == 2
    capsys.readouterr()
    cfg = tmp_path / "tiny.py"
    cfg.write_text("import sys\nsys.path.insert(0, %r)\nfrom conftest import tiny_sweep_config\n\n\n"
                   "def get_config():\n    return tiny_sweep_config()\n" % str(ROOT / "tests"))
    assert variants.main(["--config", str(cfg), "--checkpoint", str(tmp_path / "nope"), "--workdir", str(wd),
                          "--row", "paper:", "--set", "sweep.ks=(2,),report.tsne_points=12", "--no-progress",
                          "--quiet"]) == 2
    error_line(capsys, "nope")
    assert not wd.exists()


def test_tfds_and_summary_name_both_layouts(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert summary.main(["--data", str(empty), "--no-progress"]) == 2
    error_line(capsys, "images/<id>.png + masks/<id>.png (+ manifest.csv", "<id>/images/<id>.png + <id>/masks/*.png")
    out = tmp_path / "tfds"
    assert tfds_dsb2018.main(["--data", str(tmp_path / "nope.zip"), "--data-dir", str(out), "--no-progress"]) == 2
    error_line(capsys, "nope.zip")
    assert not out.exists()
    assert summary.main(["--no-progress", "--quiet"]) == 0
    quiet = capsys.readouterr().out
    assert quiet.startswith("wide protocol") and "cell type" not in quiet  # the split sizes only
