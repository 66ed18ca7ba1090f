"""The clustering CLI: outputs, and one-line errors with exit code 2 on bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dng_jax import cluster


def _x(tmp_path, arr, name="X.npy"):
    p = tmp_path / name
    np.save(p, arr)
    return p


@pytest.mark.slow
def test_cli_ng_end_to_end_subprocess(tmp_path):
    X = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    inp = _x(tmp_path, X)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "dng_jax.cluster", "--method", "ng", "--k", "4", "--seeds", "3",
                        "--epochs", "3", "--input", str(inp), "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    C, lab = np.load(out / "centroids.npy"), np.load(out / "labels.npy")
    assert C.shape == (3, 4, 3) and lab.shape == (3, 30) and lab.dtype == np.int32
    s = json.loads((out / "summary.json").read_text())
    assert len(s["runs"]) == 3 and s["config"]["r0"] == 8.0  # R0 = 2k
    assert all(run["n_units"] == 4 and 0 <= run["normalized_entropy"] <= 1 for run in s["runs"])
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["kmc", "gng"])
def test_cli_kmc_gng(tmp_path, method):
    X = (np.random.default_rng(1).normal(size=(40, 2)) * 2).astype(np.float32)
    out = tmp_path / method
    args = ["--method", method, "--seeds", "2", "--epochs", "2", "--input", str(_x(tmp_path, X)), "--no-progress"]
    args += ["--k", "3"] if method == "kmc" else ["--max-units", "12"]
    assert cluster.main(args + ["--out", str(out)]) == 0
    C = np.load(out / "centroids.npy")
    s = json.loads((out / "summary.json").read_text())
    if method == "gng":
        act = np.load(out / "active.npy")
        assert C.shape == (2, 12, 2) and act.shape == (2, 12)
        assert [r["n_units"] for r in s["runs"]] == act.sum(1).tolist()
        assert np.all(C[~act] == 0)
        lab = np.load(out / "labels.npy")
        assert all(act[i][lab[i]].all() for i in range(2))
    else:
        assert C.shape == (2, 3, 2)
    # same seed, same result
    assert cluster.main(args + ["--out", str(tmp_path / "again")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "again" / "centroids.npy"), C)


def _bad(tmp_path, capsys, path, k="2"):
    rc = cluster.main(["--method", "ng", "--k", k, "--input", str(path), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    return err


def test_cli_bad_inputs(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    nan = X.copy()
    nan[2, 1] = np.nan
    assert "NaN" in _bad(tmp_path, capsys, _x(tmp_path, nan, "nan.npy"))
    assert "2-D" in _bad(tmp_path, capsys, _x(tmp_path, X[0], "rank1.npy"))
    assert "2-D" in _bad(tmp_path, capsys, _x(tmp_path, X[None], "rank3.npy"))
    assert "k=9" in _bad(tmp_path, capsys, _x(tmp_path, X, "small.npy"), k="9")
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    assert "empty" in _bad(tmp_path, capsys, empty)
    assert "empty" in _bad(tmp_path, capsys, _x(tmp_path, np.zeros((0, 3), np.float32), "zero.npy"))
    assert "no such file" in _bad(tmp_path, capsys, tmp_path / "missing.npy")
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not an array")
    assert "not an .npy file" in _bad(tmp_path, capsys, junk)


def test_cli_input_that_is_not_npy(tmp_path, capsys):
    """A text table, an image or an object array: named as not an .npy data matrix; numpy's advice to
    load pickles unsafely is never passed on."""
    text = tmp_path / "X.txt"
    text.write_text("1 2\n3 4\n5 6\n")
    png = tmp_path / "X.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    for path in (text, png):
        err = _bad(tmp_path, capsys, path)
        assert "not an .npy file" in err and "pickle" not in err, err
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}, None], dtype=object))
    err = _bad(tmp_path, capsys, objects)
    assert "Python objects" in err and "pickle" not in err, err
