"""Reading the Kaggle layout: normalisation, folder == zip, and a clear error for each bad input."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dng_jax.data.dsb2018 import Source, bundled_minidata_path, to_rgb_uint8
from dng_jax.data.sources import open_source
from dng_jax.errors import DataError


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def write_sample(root: Path, sid: str, image: np.ndarray, masks: list[np.ndarray]) -> None:
    (root / sid / "images").mkdir(parents=True)
    (root / sid / "masks").mkdir()
    (root / sid / "images" / f"{sid}.png").write_bytes(png(image))
    for j, m in enumerate(masks):
        (root / sid / "masks" / f"m{j}.png").write_bytes(png(m))


def disk(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).astype(np.uint8) * 255


@pytest.fixture
def good(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = rgba[..., 1] = rgba[..., 2] = np.arange(30, dtype=np.uint8)[None, :] * 8
    rgba[..., 3] = 255
    write_sample(tmp_path, "a", rgba, [disk((20, 30), 5, 5, 3), disk((20, 30), 12, 20, 4)])
    write_sample(tmp_path, "b", np.full((16, 16), 7, np.uint8), [disk((16, 16), 8, 8, 2)])
    return tmp_path


def zip_folder(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for f in sorted(folder.rglob("*.png")):
            zf.write(f, f.relative_to(folder).as_posix())
    return out


def test_folder_reads_rgba_and_grayscale(good):
    src = open_source(good)
    assert src.ids() == ["a", "b"]
    a = src.load("a")
    assert a.image.shape == (20, 30, 3) and a.image.dtype == np.uint8
    np.testing.assert_array_equal(a.image[0, :, 0], np.arange(30) * 8)
    assert a.labels.dtype == np.uint16 and a.labels.max() == 2
    assert (a.labels == 1).sum() == (disk((20, 30), 5, 5, 3) > 0).sum()
    b = src.load("b")
    assert b.image.shape == (16, 16, 3) and (b.image == 7).all()


def test_zip_equals_folder(good, tmp_path_factory):
    z = zip_folder(good, tmp_path_factory.mktemp("z") / "data.zip")
    folder, zipped = open_source(good), open_source(z)
    assert folder.ids() == zipped.ids()
    for sid in folder.ids():
        np.testing.assert_array_equal(folder.load(sid).image, zipped.load(sid).image)
        np.testing.assert_array_equal(folder.load(sid).labels, zipped.load(sid).labels)


def test_bundled_minidata_has_every_type():
    src = open_source(None)
    assert bundled_minidata_path().exists() and len(src) >= 15
    s = src.load(src.ids()[0])
    assert s.image.ndim == 3 and s.labels.max() > 0


def test_to_rgb_uint8_normalises_16_bit_and_gray_alpha():
    im16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000)
    out = to_rgb_uint8(im16)
    assert out.shape == (3, 4, 3) and out.max() == 255 and out.dtype == np.uint8
    la = np.stack([np.full((2, 2), 9, np.uint8), np.full((2, 2), 255, np.uint8)], -1)
    assert (to_rgb_uint8(la) == 9).all()


def test_overlapping_masks_name_both_files(good):
    m = disk((16, 16), 8, 8, 2)
    (good / "b" / "masks" / "m1.png").write_bytes(png(m))
    with pytest.raises(DataError, match=r"m1\.png: overlaps mask m0\.png"):
        open_source(good).load("b")


def test_seam_of_a_few_shared_pixels_keeps_the_earlier_mask(good):
    m0 = np.zeros((16, 16), np.uint8)
    m0[2:8, 2:8] = 255
    m1 = np.zeros((16, 16), np.uint8)
    m1[7:13, 3:9] = 255  # shares one row of 5 pixels with m0 ... 5 of 36 = 14% > 5%: error
    (good / "b" / "masks" / "m0.png").write_bytes(png(m0))
    (good / "b" / "masks" / "m1.png").write_bytes(png(m1))
    with pytest.raises(DataError, match="overlaps mask m0.png in 5 of its pixels"):
        open_source(good).load("b")
    labels = open_source(good, overlap_tolerance=0.2).load("b").labels
    assert (labels[7, 3:8] == 1).all() and labels.max() == 2 and (labels == 2).sum() == 36 - 5


def test_mask_of_wrong_size(good):
    (good / "b" / "masks" / "m1.png").write_bytes(png(np.zeros((10, 16), np.uint8)))
    with pytest.raises(DataError, match=r"m1\.png: mask is 16x10 .* image is 16x16"):
        open_source(good).load("b")


def test_corrupt_png_names_the_file(good):
    (good / "a" / "masks" / "m0.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"a/masks/m0\.png: cannot decode"):
        open_source(good).load("a")


def test_empty_masks_folder(good):
    for f in (good / "b" / "masks").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"b/masks: no mask files"):
        open_source(good).load("b")


def test_missing_image_file(good):
    (good / "a" / "images" / "a.png").unlink()
    with pytest.raises(DataError, match=r"a/images/a\.png: expected exactly one image file, found 0"):
        open_source(good).load("a")


def test_missing_path_and_empty_folder_and_bad_zip(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        open_source(tmp_path / "nope.zip")
    with pytest.raises(DataError, match="no samples found") as e:
        open_source(tmp_path)
    # both layouts named: the folder layout (images/ + masks/ + manifest.csv) and the Kaggle one
    assert "images/<id>.png + masks/<id>.png (+ manifest.csv" in str(e.value)
    assert "<id>/images/<id>.png + <id>/masks/*.png" in str(e.value)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"bad\.zip: not a readable zip"):
        open_source(bad)


def test_unknown_id(good):
    with pytest.raises(DataError, match="no sample with id 'zzz'"):
        open_source(good).load("zzz")


def _mask_png(path: Path, rgba: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba).save(path)


def test_rgba_mask_with_transparency_is_refused(tmp_path):
    sid = "abc"
    (tmp_path / sid / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / sid / "images" / f"{sid}.png")
    # white everywhere, the nucleus only in the alpha channel: read naively it covers the whole image
    mask = np.full((8, 8, 4), 255, np.uint8)
    mask[..., 3] = 0
    mask[2:5, 2:5, 3] = 255
    _mask_png(tmp_path / sid / "masks" / "m1.png", mask)
    with pytest.raises(DataError, match="m1.png: the mask has transparent pixels"):
        Source(tmp_path).load(sid)
    # an opaque colour mask is fine, and a mask covering every pixel is an error
    colour = np.zeros((8, 8, 4), np.uint8)
    colour[..., 3] = 255
    colour[2:5, 2:5, 0] = 255
    _mask_png(tmp_path / sid / "masks" / "m1.png", colour)
    assert Source(tmp_path).load(sid).labels.sum() == 9
    _mask_png(tmp_path / sid / "masks" / "m1.png", np.full((8, 8), 255, np.uint8))
    with pytest.raises(DataError, match="covers every pixel"):
        Source(tmp_path).load(sid)
