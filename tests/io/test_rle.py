"""Kaggle RLE encode/decode, CSV reading/writing, and every malformed input's error message."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dng_jax.evaluation.metrics import relabel_consecutive
from dng_jax.io.rle import (
    labels_to_rles,
    parse_rle,
    read_rle_csv,
    read_solution_csv,
    rle_decode,
    rle_encode,
    rles_to_labels,
    write_submission_csv,
)


def test_column_major_hand_example():
    m = np.array([[0, 1, 0],
                  [1, 1, 0],
                  [0, 0, 1]])
    # pixels numbered down columns from 1: col0 -> 1,2,3; col1 -> 4,5,6; col2 -> 7,8,9
    assert rle_encode(m) == "2 1 4 2 9 1"
    np.testing.assert_array_equal(rle_decode("2 1 4 2 9 1", (3, 3)), m.astype(bool))
    # a run wraps from the bottom of one column to the top of the next
    rows, cols = rle_decode("3 2", (3, 3)).nonzero()
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (2, 0)]


def test_non_square_orientation():
    m = np.zeros((2, 3), bool)
    m[0, 2] = True  # row 0, column 2 -> pixel 2*2 + 0 + 1 = 5
    assert rle_encode(m) == "5 1"
    assert rle_decode("5 1", (2, 3))[0, 2]


def test_empty_and_full():
    assert rle_encode(np.zeros((4, 5))) == ""
    assert rle_decode("", (4, 5)).sum() == 0
    assert rle_encode(np.ones((4, 5))) == "1 20"
    assert rle_decode("1 20", (4, 5)).all()


def test_random_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = rng.integers(1, 40, 2)
        m = rng.random((h, w)) < rng.random()
        r = rle_encode(m)
        np.testing.assert_array_equal(rle_decode(r, (h, w)), m)


def test_labels_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(50):
        h, w = rng.integers(1, 30, 2)
        lab = rng.integers(0, 8, (h, w)) * int(rng.integers(1, 9000))
        rles = labels_to_rles(lab)
        assert len(rles) == len(np.unique(lab[lab > 0]))
        back = rles_to_labels(rles, (h, w))
        assert back.dtype == np.uint16
        np.testing.assert_array_equal(back, relabel_consecutive(lab)[0].reshape(h, w))
        for k, r in enumerate(rles, start=1):
            assert r == rle_encode(back == k)


def test_labels_to_rles_empty_and_errors():
    assert labels_to_rles(np.zeros((3, 3), np.uint16)) == []
    with pytest.raises(ValueError, match="2-D"):
        labels_to_rles(np.zeros((2, 2, 2), int))
    with pytest.raises(ValueError, match="negative"):
        labels_to_rles(-np.ones((2, 2), int))
    with pytest.raises(ValueError, match="integer dtype"):
        labels_to_rles(np.zeros((2, 2)))


@pytest.mark.parametrize(
    "rle, match",
    [
        ("1 2 3", "odd number of RLE tokens"),
        ("1 x", "bad RLE token 'x'"),
        ("1.5 2", "bad RLE token '1.5'"),
        ("0 2", "start 0 < 1"),
        ("1 0", "run length 0 < 1"),
        ("5 3 6 1", "overlap or are not ascending"),
        ("6 1 1 1", "overlap or are not ascending"),
        ("8 3", "past the 3x3 image"),
    ],
)
def test_bad_rle(rle, match):
    with pytest.raises(ValueError, match=f"^where: .*{match}"):
        rle_decode(rle, (3, 3), where="where")


def test_bad_shape_and_type():
    with pytest.raises(ValueError, match="shape must be"):
        rle_decode("1 1", (0, 3))
    with pytest.raises(ValueError, match="must be a string"):
        parse_rle(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2-D"):
        rle_encode(np.zeros(4))


def test_rles_to_labels_overlap_and_empty_rows():
    lab = rles_to_labels(["", "1 2", "", "4 2"], (3, 3))
    assert lab.max() == 2 and np.count_nonzero(lab) == 4
    with pytest.raises(ValueError, match=r"img\[1\]: object overlaps object 1 \(1 shared pixels\)"):
        rles_to_labels(["1 3", "3 2"], (3, 3), where="img")


def _write(path, text):
    path.write_text(text)
    return path


def test_read_rle_csv(tmp_path):
    p = _write(tmp_path / "labels.csv", "ImageId,EncodedPixels\na,1 2 5 1\nb,\na,7 3\n\nc,3 1\n")
    got = read_rle_csv(p)
    assert got == {"a": ["1 2 5 1", "7 3"], "b": [], "c": ["3 1"]}
    # column order and extra columns do not matter
    p2 = _write(tmp_path / "l2.csv", "EncodedPixels,Extra,ImageId\n1 2,x,a\n")
    assert read_rle_csv(p2) == {"a": ["1 2"]}


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty file"),
        ("Id,EncodedPixels\n", r":1: missing column\(s\) ImageId"),
        ("ImageId,EncodedPixels\na,1 2\nb,1 x\n", r":3: bad RLE token 'x'"),
        ("ImageId,EncodedPixels\na,1 2 3\n", r":2: odd number"),
        ("ImageId,EncodedPixels\na,1 2,zz\n", r":2: expected 2 fields, got 3"),
        ("ImageId,EncodedPixels\n,1 2\n", r":2: empty ImageId"),
        ("ImageId,EncodedPixels\na,5 2 1 1\n", r":2: RLE runs overlap or are not ascending"),
    ],
)
def test_read_rle_csv_errors(tmp_path, text, match):
    p = _write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=match) as e:
        read_rle_csv(p)
    assert "bad.csv" in str(e.value)


def test_read_rle_csv_missing_file(tmp_path):
    with pytest.raises(ValueError, match="nope.csv: cannot open"):
        read_rle_csv(tmp_path / "nope.csv")


SOLUTION = (
    "ImageId,EncodedPixels,Height,Width,Usage\n"
    "a,1 2,3,4,Public\n"
    "a,5 1 7 2,3,4,Public\n"
    "b,,2,2,Private\n"
    "c,4 1,2,2,Private\n"
)


def test_read_solution_csv(tmp_path):
    p = _write(tmp_path / "stage1_solution.csv", SOLUTION)
    labels, usage = read_solution_csv(p, return_usage=True)
    assert usage == {"a": "Public", "b": "Private", "c": "Private"}
    assert labels["a"].shape == (3, 4) and labels["a"].dtype == np.uint16
    # "1 2" -> pixels 1,2 = column 0 rows 0,1; "5 1 7 2" -> pixel 5 = (1,1), pixels 7,8 = (0,2),(1,2)
    np.testing.assert_array_equal(labels["a"], np.array([[1, 0, 2, 0],
                                                         [1, 2, 2, 0],
                                                         [0, 0, 0, 0]]))
    assert labels["b"].shape == (2, 2) and labels["b"].max() == 0
    assert labels["c"][1, 1] == 1
    assert set(read_solution_csv(p)) == {"a", "b", "c"}


@pytest.mark.parametrize(
    "text, match",
    [
        ("ImageId,EncodedPixels,Height,Width\n", r":1: missing column\(s\) Usage"),
        ("ImageId,EncodedPixels,Height,Width,Usage\na,1 2,x,4,P\n", ":2: Height/Width must be integers"),
        ("ImageId,EncodedPixels,Height,Width,Usage\na,1 2,3,4,P\na,5 1,4,4,P\n",
         ":3: image a is 4x4 here but 3x4 on an earlier line"),
        ("ImageId,EncodedPixels,Height,Width,Usage\na,1 2,3,4,P\na,11 3,3,4,P\n", ":3: .*past the 3x4 image"),
        ("ImageId,EncodedPixels,Height,Width,Usage\na,1 2,3,4,P\na,2 3,3,4,P\n",
         r":3: object overlaps the object on line 2 of image a"),
        ("ImageId,EncodedPixels,Height,Width,Usage\na,1 2,0,4,P\n", r":2: shape must be positive"),
    ],
)
def test_read_solution_csv_errors(tmp_path, text, match):
    p = _write(tmp_path / "sol.csv", text)
    with pytest.raises(ValueError, match=match) as e:
        read_solution_csv(p)
    assert "sol.csv" in str(e.value)


def test_submission_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    preds = {
        "img1": rng.integers(0, 6, (20, 30)).astype(np.uint16),
        "img2": np.zeros((10, 10), np.uint16),
        "img3": (rng.integers(0, 3, (7, 5)) * 1000).astype(np.int32),
    }
    out = tmp_path / "sub" / "submission.csv"
    write_submission_csv(out, preds)
    lines = out.read_text().splitlines()
    assert lines[0] == "ImageId,EncodedPixels"
    assert "img2," in lines
    assert not [f for f in os.listdir(out.parent) if f != "submission.csv"]  # no temp file left
    back = read_rle_csv(out)
    assert back["img2"] == []
    for k, lab in preds.items():
        got = rles_to_labels(back[k], lab.shape)
        np.testing.assert_array_equal(got, relabel_consecutive(lab)[0].reshape(lab.shape))


def test_submission_errors(tmp_path):
    with pytest.raises(ValueError, match="bad image id"):
        write_submission_csv(tmp_path / "s.csv", {"a,b": np.zeros((2, 2), int)})
    with pytest.raises(ValueError, match="s.csv: image x: .*integer dtype"):
        write_submission_csv(tmp_path / "s.csv", {"x": np.zeros((2, 2))})
    assert not list(tmp_path.iterdir())
