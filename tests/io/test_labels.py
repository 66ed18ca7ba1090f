"""Label images (dng_jax/io/labels.py): 16-bit PNG and TIFF round trips, what is read, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dng_jax.errors import DataError
from dng_jax.io.labels import read_labels, write_labels


@pytest.mark.parametrize("name", ["x.png", "x.tif", "x.TIFF"])
def test_label_round_trip(tmp_path, name):
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 65536, (17, 23)).astype(np.uint16)
    write_labels(tmp_path / name, lab)
    back = read_labels(tmp_path / name)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, lab)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_label_png_is_16bit(tmp_path):
    write_labels(tmp_path / "a.png", np.ones((3, 3), np.int64))
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode.startswith("I;16")


def test_label_uint32_tiff_and_png_limit(tmp_path):
    lab = np.array([[0, 70000], [3, 1]], np.uint32)
    write_labels(tmp_path / "a.tif", lab)
    back = read_labels(tmp_path / "a.tif")
    assert back.dtype == np.uint32 and back.tolist() == lab.tolist()
    with pytest.raises(ValueError, match=r"b.png: label 70000 does not fit a 16-bit PNG"):
        write_labels(tmp_path / "b.png", lab)
    assert not (tmp_path / "b.png").exists()


def test_label_read_8bit_and_bool_png(tmp_path):
    Image.fromarray(np.array([[0, 5], [7, 0]], np.uint8)).save(tmp_path / "a.png")
    assert read_labels(tmp_path / "a.png").tolist() == [[0, 5], [7, 0]]
    Image.fromarray(np.array([[0, 1], [1, 0]], bool)).save(tmp_path / "b.png")
    assert read_labels(tmp_path / "b.png").tolist() == [[0, 1], [1, 0]]


def test_label_io_errors(tmp_path):
    with pytest.raises(DataError, match="missing.png: no such file"):
        read_labels(tmp_path / "missing.png")
    with pytest.raises(ValueError, match=r"a.jpg: unsupported label image type '.jpg'"):
        read_labels(tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="integer dtype"):
        write_labels(tmp_path / "a.png", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="negative"):
        write_labels(tmp_path / "a.png", -np.ones((2, 2), int))
    with pytest.raises(ValueError, match="2-D"):
        write_labels(tmp_path / "a.png", np.zeros((2, 2, 2), int))
    import tifffile

    tifffile.imwrite(tmp_path / "f.tif", np.full((2, 2), 0.5, np.float32))
    with pytest.raises(ValueError, match="f.tif: floating-point image with non-integer values"):
        read_labels(tmp_path / "f.tif")
    tifffile.imwrite(tmp_path / "g.tif", np.full((2, 2), 3.0, np.float32))
    assert read_labels(tmp_path / "g.tif").tolist() == [[3, 3], [3, 3]]
    tifffile.imwrite(tmp_path / "n.tif", np.full((2, 2), -1, np.int16))
    with pytest.raises(ValueError, match="n.tif: label image has negative values"):
        read_labels(tmp_path / "n.tif")
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((3, 2, 2), np.uint16), photometric="minisblack")
    with pytest.raises(ValueError, match=r"s.tif: label image must be 2-D, got shape \(3, 2, 2\)"):
        read_labels(tmp_path / "s.tif")
    Image.fromarray(np.zeros((2, 2, 4), np.uint8)).save(tmp_path / "rgba.png")
    with pytest.raises(ValueError, match="rgba.png: PNG mode RGBA is not a label image"):
        read_labels(tmp_path / "rgba.png")
