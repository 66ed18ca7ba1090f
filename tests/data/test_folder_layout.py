"""The folder layout users already have (images/ + masks/ + manifest.csv): reading it, packing DSB2018 into
it (same samples, splits and training crops as the zip), and one line with exit status 2 for each bad input."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from dng_jax import pack as pack_cli
from dng_jax import summary
from dng_jax.config import DataConfig
from dng_jax.data.dsb2018 import Source, bundled_minidata_path
from dng_jax.data.folder import FolderSource, is_folder_layout
from dng_jax.data.partition import open_data
from dng_jax.data.pipeline import segmentation_batches
from dng_jax.data.sources import open_source
from dng_jax.errors import DataError


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _disks(h=24, w=32):
    yy, xx = np.mgrid[:h, :w]
    labels = np.zeros((h, w), np.uint16)
    labels[(yy - 8) ** 2 + (xx - 8) ** 2 < 20] = 1
    labels[(yy - 15) ** 2 + (xx - 22) ** 2 < 25] = 300  # labels need not be consecutive, and may pass 255
    return labels


def _experiment(root: Path, n_labeled=3, n_unlabeled=1, prefix="im") -> None:
    for i in range(n_labeled + n_unlabeled):
        labels = _disks()
        image = np.where(labels > 0, 200, 20).astype(np.uint8)
        _png(root / "images" / f"{prefix}{i}.png", np.stack([image] * 3, -1))
        if i < n_labeled:
            _png(root / "masks" / f"{prefix}{i}.png", labels)


def _manifest(root: Path, text: str) -> None:
    (root / "manifest.csv").write_text(text)


def test_one_experiment_with_a_manifest(tmp_path):
    _experiment(tmp_path, n_labeled=3, n_unlabeled=1)
    tifffile.imwrite(tmp_path / "images" / "t0.tif", (_disks() * 100).astype(np.uint16))  # 16-bit gray TIFF
    tifffile.imwrite(tmp_path / "masks" / "t0.tif", _disks())
    _manifest(tmp_path, "id,cell_type,split\nim0,ct1,\nim1,ct1,\nim2,ct1,test\nim3,ct1,\nt0,other,\n")
    assert is_folder_layout(tmp_path)
    src = open_source(tmp_path)
    assert isinstance(src, FolderSource) and src.ids() == ["im0", "im1", "im2", "im3", "t0"]
    assert src.labeled_ids() == ["im0", "im1", "im2", "t0"]
    s = src.load("t0")
    assert s.image.shape == (24, 32, 3) and s.image.dtype == np.uint8 and s.image.max() == 255
    np.testing.assert_array_equal(s.labels, _disks())
    assert s.labels.dtype == np.uint16
    _, types, splits = open_data(DataConfig(path=str(tmp_path), known_type="ct1", protocol="wide",
                                            test_fraction=0.3, val_fraction=0.0))
    assert types["t0"] == "other" and splits.known_type == "ct1"
    assert "im2" in splits.test["ct1"]  # fixed by the manifest
    assert "im3" in splits.cluster and "im3" in splits.unlabeled  # no mask: clustering only
    assert "im3" not in splits.train_ct1 + splits.test_all + splits.val_all
    assert splits.test["other"] == ["t0"]


def test_experiments_side_by_side_take_their_folder_names(tmp_path):
    _experiment(tmp_path / "ct1", n_labeled=4, n_unlabeled=0, prefix="a")
    _experiment(tmp_path / "new", n_labeled=0, n_unlabeled=3, prefix="b")
    src = open_source(tmp_path)
    assert src.manifest_types() == {**{f"a{i}": "ct1" for i in range(4)}, **{f"b{i}": "new" for i in range(3)}}
    _, _, splits = open_data(DataConfig(path=str(tmp_path), known_type="ct1", protocol="wide"))
    assert splits.cluster == ["b0", "b1", "b2"] and splits.test_unknown == [] and len(splits.train_ct1) == 2


def test_the_manifest_of_experiments_side_by_side_goes_in_the_top_folder(tmp_path, capsys):
    """Where manifest.csv goes (README, "Your own experiment"): beside images/ + masks/ of one experiment, or
    once in the top folder of experiments side by side; one inside an experiment's folder is named as such."""
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert "it goes beside `images/` and `masks/` of one experiment (`DIR/manifest.csv`)" in readme
    assert "once in the top folder (`my_study/manifest.csv`" in readme
    _experiment(tmp_path / "ct1", n_labeled=4, n_unlabeled=0, prefix="a")
    _experiment(tmp_path / "new", n_labeled=2, n_unlabeled=1, prefix="b")
    _manifest(tmp_path / "new", "id,cell_type\nb0,new\nb1,new\nb2,new\n")
    err = _bad(tmp_path, capsys)
    assert f"new/manifest.csv: one manifest.csv for all experiments goes in {tmp_path}" in err
    (tmp_path / "new" / "manifest.csv").rename(tmp_path / "manifest.csv")
    _manifest(tmp_path, "id,cell_type\n" + "".join(f"a{i},ct1\n" for i in range(4)) + "b0,new\nb1,new\nb2,new\n")
    assert open_source(tmp_path).manifest_types()["b2"] == "new"


def test_the_kaggle_layout_is_not_taken_for_folders(tmp_path):
    with zipfile.ZipFile(bundled_minidata_path()) as zf:
        zf.extractall(tmp_path)
    root = next(p for p in [tmp_path, *tmp_path.iterdir()] if p.is_dir() and len(list(p.iterdir())) > 5)
    assert not is_folder_layout(root) and isinstance(open_source(root), Source)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    out = tmp_path_factory.mktemp("packed")
    assert pack_cli.main(["--output", str(out), "--no-progress"]) == 0
    return out


def test_packed_minidata_gives_the_same_samples_splits_and_crops(packed):
    """What makes the shipped model's MAPs identical from the zip and from the folder (checked on all of
    DSB2018 by scripts/studies/check_pack.py): the same images, labels, cell types and splits."""
    zip_src, folder_src = open_source(None), open_source(packed)
    assert folder_src.ids() == zip_src.ids() and folder_src.has_manifest
    for sid in zip_src.ids():
        a, b = zip_src.load(sid), folder_src.load(sid)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.labels, b.labels)
    gray = [sid for sid in zip_src.ids() if Image.open(packed / "images" / f"{sid}.png").mode == "L"]
    assert len(gray) == 9  # the fluorescence and brightfield images (equal channels) are stored as gray
    for protocol in ("wide", "paper"):
        za = open_data(DataConfig(path=None, protocol=protocol), progress=False)
        fa = open_data(DataConfig(path=str(packed), protocol=protocol), progress=False)
        assert za[1] == fa[1] and za[2] == fa[2]
    train = open_data(DataConfig(path=None, protocol="wide"), progress=False)[2].train_ct1
    batches = [segmentation_batches([s.load(i) for i in train], 2, 64, 2, seed=0) for s in (zip_src, folder_src)]
    for (xa, ya), (xb, yb) in zip(batches[0].epoch(0), batches[1].epoch(0)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def _bad(tmp_path: Path, capsys, *args) -> str:
    assert summary.main(["--data", str(tmp_path), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_a_mask_of_another_size(tmp_path, capsys):
    _experiment(tmp_path)
    _png(tmp_path / "masks" / "im1.png", np.zeros((10, 10), np.uint16))
    err = _bad(tmp_path, capsys)
    assert "im1.png" in err and "10x10" in err and "32x24" in err


def test_an_rgb_mask(tmp_path, capsys):
    _experiment(tmp_path)
    _png(tmp_path / "masks" / "im1.png", np.zeros((24, 32, 3), np.uint8))
    err = _bad(tmp_path, capsys)
    assert "im1.png" in err and "colour" in err


def test_a_float_mask(tmp_path, capsys):
    _experiment(tmp_path)
    (tmp_path / "masks" / "im1.png").unlink()
    tifffile.imwrite(tmp_path / "masks" / "im1.tif", _disks().astype(np.float32))
    err = _bad(tmp_path, capsys)
    assert "im1.tif" in err and "floating-point" in err
    with pytest.raises(DataError, match="floating-point"):  # the loader refuses it too
        from dng_jax.io.labels import read_labels
        read_labels(tmp_path / "masks" / "im1.tif", integer_only=True)


def test_duplicate_ids(tmp_path, capsys):
    _experiment(tmp_path)
    tifffile.imwrite(tmp_path / "images" / "im2.tif", np.zeros((24, 32), np.uint8))
    err = _bad(tmp_path, capsys)
    assert "im2" in err and "duplicate id" in err
    # and across experiments side by side
    other = tmp_path / "two"
    _experiment(other / "a", prefix="x")
    _experiment(other / "b", prefix="x")
    err = _bad(other, capsys)
    assert "duplicate id 'x0'" in err


def test_a_manifest_row_naming_a_missing_file_and_an_unknown_split(tmp_path, capsys):
    _experiment(tmp_path)
    _manifest(tmp_path, "id,cell_type\nim0,a\nim1,a\nim2,a\nim3,a\nim9,a\n")
    err = _bad(tmp_path, capsys)
    assert "manifest.csv, line 6" in err and "'im9'" in err
    _manifest(tmp_path, "id,cell_type,split\nim0,a,train\nim1,a,training\nim2,a,\nim3,a,\n")
    err = _bad(tmp_path, capsys)
    assert "manifest.csv, line 3" in err and "unknown split 'training'" in err


def test_no_labeled_image_of_the_known_type(tmp_path, capsys):
    _experiment(tmp_path)
    _manifest(tmp_path, "id,cell_type\nim0,a\nim1,a\nim2,a\nim3,a\n")
    err = _bad(tmp_path, capsys)  # known_type defaults to "fluorescence"
    assert "manifest.csv" in err and "'fluorescence'" in err and "'a'" in err
    assert summary.main(["--data", str(tmp_path), "--no-progress", "--known-type", "a"]) == 0
    capsys.readouterr()
    _manifest(tmp_path, "id,cell_type\nim0,b\nim1,b\nim2,b\nim3,a\n")  # im3 is of type a but has no mask
    err = _bad(tmp_path, capsys, "--known-type", "a")
    assert "no labeled image of the known cell type 'a'" in err


def test_a_test_image_without_a_mask(tmp_path, capsys):
    _experiment(tmp_path)
    _manifest(tmp_path, "id,cell_type,split\nim0,a,\nim1,a,\nim2,a,\nim3,a,test\n")
    err = _bad(tmp_path, capsys, "--known-type", "a")
    assert "manifest.csv, line 5" in err and "'im3' is a test image but has no mask" in err
