"""End-to-end tests of ``python -m dng_jax.evaluate`` (label-image reading/writing: tests/io/test_labels.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dng_jax.evaluate import main
from dng_jax.io.labels import write_labels


def _gt_pred():
    gt = np.zeros((10, 10), np.uint16)
    gt[0, 0:10] = 1  # 10 pixels
    pred = np.zeros((10, 10), np.uint16)
    pred[0, 0:6] = 300  # IoU 0.6 -> 0.2
    return gt, pred


@pytest.fixture
def dirs(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt, pred = _gt_pred()
    write_labels(gt_dir / "a.png", gt)
    write_labels(pred_dir / "a.tif", pred)  # stems pair across formats
    write_labels(gt_dir / "b.tiff", gt)
    write_labels(pred_dir / "b.png", gt)  # perfect -> 1.0
    write_labels(gt_dir / "c.png", np.zeros((4, 5), np.uint16))
    write_labels(pred_dir / "c.png", np.zeros((4, 5), np.uint16))  # empty/empty -> 1.0
    return gt_dir, pred_dir


def test_main_scores_and_json(dirs, tmp_path, capsys):
    gt_dir, pred_dir = dirs
    out = tmp_path / "res" / "scores.json"
    out.parent.mkdir()
    assert main(["--gt", str(gt_dir), "--pred", str(pred_dir), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["per_image"] == pytest.approx({"a": 0.2, "b": 1.0, "c": 1.0})
    assert res["map"] == pytest.approx(2.2 / 3)
    assert res["n_images"] == 3
    text = capsys.readouterr().out
    assert "a  0.200000" in text and "mAP 0.733333 [" in text and "over 3 images (95% bootstrap interval" in text
    assert res["interval"][0] <= res["map"] <= res["interval"][1]
    assert [p.name for p in out.parent.iterdir()] == ["scores.json"]  # no temp file left


def test_compare_prints_the_permutation_test_and_one_rule(tmp_path, capsys):
    """--compare: B - PRED with its interval and the sign-flip p (exact for 3 images); 3 images are too
    few for a verdict, said as one rule even though the interval lies above 0."""
    gt, pred = _gt_pred()
    for name in ("a", "b", "c"):
        write_labels(tmp_path / "gt" / f"{name}.png", gt)
        write_labels(tmp_path / "pred" / f"{name}.png", pred)  # 0.2 each
        write_labels(tmp_path / "better" / f"{name}.png", gt)  # 1.0 each
    out = tmp_path / "cmp.json"
    assert main(["--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--compare", str(tmp_path / "better"),
                 "--json", str(out), "-q"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    res = json.loads(out.read_text())["compare"]
    assert res["diff"] == pytest.approx(0.8) and res["interval"] == pytest.approx([0.8, 0.8])
    # 3 images up by 0.8: of the 8 sign sets, all-up and all-down are as far from 0
    assert res["p_permutation"] == 0.25 and res["p_exact"] and "p_wilcoxon" not in res
    assert "sign-flip permutation p = 0.25 (exact)" in line
    assert line.endswith("too few images for a verdict (n < 10 or a type < 5)") and "no difference" not in line

def test_bad_json_path_is_refused_before_scoring(dirs, tmp_path, capsys):
    gt_dir, pred_dir = dirs
    nowhere = tmp_path / "nope" / "dir" / "out.json"
    for target, why in ((nowhere, "does not exist"), (tmp_path, "is a folder")):
        assert main(["--gt", str(gt_dir), "--pred", str(pred_dir), "--json", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and why in err and str(target) in err and ".tmp" not in err
    assert not (tmp_path / "nope").exists()  # no folders made on the way


def test_quiet(dirs, capsys):
    gt_dir, pred_dir = dirs
    assert main(["--gt", str(gt_dir), "--pred", str(pred_dir), "-q"]) == 0
    assert capsys.readouterr().out.strip().startswith("mAP 0.733333")


@pytest.mark.slow
def test_subprocess_end_to_end(dirs, tmp_path):
    gt_dir, pred_dir = dirs
    out = tmp_path / "s.json"
    proc = subprocess.run([sys.executable, "-m", "dng_jax.evaluate", "--gt", str(gt_dir), "--pred",
                           str(pred_dir), "--json", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["map"] == pytest.approx(2.2 / 3)


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_missing_prediction(dirs, capsys):
    gt_dir, pred_dir = dirs
    (pred_dir / "b.png").unlink()
    err = _error(capsys, ["--gt", str(gt_dir), "--pred", str(pred_dir)])
    assert "1 ground-truth image(s) have no prediction" in err and ": b" in err and "--allow-missing" in err
    assert main(["--gt", str(gt_dir), "--pred", str(pred_dir), "--allow-missing", "-q"]) == 0
    assert "mAP 0.400000 [" in capsys.readouterr().out  # (0.2 + 0 + 1) / 3


def test_extra_prediction(dirs, capsys):
    gt_dir, pred_dir = dirs
    write_labels(pred_dir / "zz.png", np.zeros((3, 3), np.uint16))
    err = _error(capsys, ["--gt", str(gt_dir), "--pred", str(pred_dir)])
    assert "prediction(s) have no ground truth" in err and "zz" in err
    assert main(["--gt", str(gt_dir), "--pred", str(pred_dir), "--ignore-extra", "-q"]) == 0


def test_shape_mismatch_names_both_files(dirs, capsys):
    gt_dir, pred_dir = dirs
    write_labels(pred_dir / "c.png", np.zeros((5, 4), np.uint16))
    err = _error(capsys, ["--gt", str(gt_dir), "--pred", str(pred_dir)])
    assert "shape mismatch for 'c'" in err
    assert str(gt_dir / "c.png") in err and str(pred_dir / "c.png") in err and "4x5" in err


def test_missing_and_empty_dirs(tmp_path, capsys):
    err = _error(capsys, ["--gt", str(tmp_path / "nope"), "--pred", str(tmp_path)])
    assert "ground-truth folder" in err and "does not exist" in err
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "notes.txt").write_text("x")
    err = _error(capsys, ["--gt", str(tmp_path / "g"), "--pred", str(tmp_path)])
    assert "has no label images" in err
    f = tmp_path / "file.png"
    f.write_bytes(b"")
    err = _error(capsys, ["--gt", str(tmp_path / "g"), "--pred", str(f)])
    assert "is not a directory" in err


def test_duplicate_stem(dirs, capsys):
    gt_dir, pred_dir = dirs
    write_labels(gt_dir / "a.tif", np.zeros((10, 10), np.uint16))
    err = _error(capsys, ["--gt", str(gt_dir), "--pred", str(pred_dir)])
    assert "two files for 'a'" in err


def test_corrupt_and_rgb_files(dirs, capsys):
    gt_dir, pred_dir = dirs
    (pred_dir / "b.png").write_bytes(b"not a png")
    err = _error(capsys, ["--gt", str(gt_dir), "--pred", str(pred_dir)])
    assert str(pred_dir / "b.png") in err and "cannot read PNG" in err
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(pred_dir / "b.png")
    err = _error(capsys, ["--gt", str(gt_dir), "--pred", str(pred_dir)])
    assert "mode RGB is not a label image" in err
    (pred_dir / "b.png").unlink()
    (pred_dir / "b.tif").write_bytes(b"II*\x00garbage")
    err = _error(capsys, ["--gt", str(gt_dir), "--pred", str(pred_dir)])
    assert str(pred_dir / "b.tif") in err and "cannot read TIFF" in err
    assert capsys.readouterr().err == ""  # nothing more than the one line
