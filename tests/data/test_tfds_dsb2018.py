"""The TFDS builder over the bundled mini-set and the crop-batch iterator over its data source."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from dng_jax.data.dsb2018 import Sample, bundled_minidata_path
from dng_jax.data.sources import open_source
from dng_jax.errors import DataError
from dng_jax.data.partition import CELL_TYPES, build_manifest, make_splits
from dng_jax.data.pipeline import CropBatches
from dng_jax.data.tfds_builder import SPLITS, load_builder, load_data_source, prepare_dsb2018
from dng_jax import pack
from dng_jax.tfds_dsb2018 import main
from dng_jax.data.tfds_pipeline import TfdsCropBatches, from_data_dir


@pytest.fixture(scope="module")
def mini():
    with open_source(bundled_minidata_path()) as src:
        manifest = build_manifest(src, progress=False)
        samples = {sid: src.load(sid) for sid in src.ids()}
    return manifest, samples


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    prepare_dsb2018(bundled_minidata_path(), d)
    return d


def _ids(ds) -> list[str]:
    return [ds[i]["id"].decode() if isinstance(ds[i]["id"], bytes) else ds[i]["id"] for i in range(len(ds))]


def test_splits_match_make_splits(data_dir, mini):
    manifest, _ = mini
    splits = make_splits(manifest)  # defaults: seed 0, 2 per type
    want = {
        "train": splits.train_ct1,
        "test": splits.test_all,
        "cluster": splits.cluster,
        "full": sorted(manifest),
    }
    builder = load_builder(data_dir)
    assert builder.is_prepared()
    assert set(builder.info.splits.keys()) == set(SPLITS)
    for name, ids in want.items():
        ds = load_data_source(data_dir, name)
        assert len(ds) == len(ids) == builder.info.splits[name].num_examples
        assert sorted(_ids(ds)) == sorted(ids), name
    assert len(load_data_source(data_dir, "all")) == len(manifest)  # alias of "full"
    meta = builder.info.metadata
    assert meta["cell_types"] == manifest
    assert meta["split_ids"]["test"] == splits.test_all


def test_records_round_trip_exactly(data_dir, mini):
    manifest, samples = mini
    ds = load_data_source(data_dir, "full")
    for i in range(len(ds)):
        ex = ds[i]
        s = samples[ex["id"].decode()]
        assert ex["image"].dtype == np.uint8 and ex["labels"].dtype == np.uint16
        np.testing.assert_array_equal(ex["image"], s.image)
        np.testing.assert_array_equal(ex["labels"], s.labels)
        assert (ex["height"], ex["width"]) == s.labels.shape
        assert ex["n_nuclei"] == int(s.labels.max())
        assert CELL_TYPES[ex["cell_type"]] == manifest[s.id]


@pytest.mark.slow
def test_other_config_and_reuse(tmp_path, mini):
    manifest, _ = mini
    b = prepare_dsb2018(bundled_minidata_path(), tmp_path, seed=3, n_test_per_type=1)
    assert b.builder_config.name == "seed3_test1"
    splits = make_splits(manifest, n_test_per_type=1, seed=3)
    ds = load_data_source(tmp_path, "test", seed=3, n_test_per_type=1)
    assert sorted(_ids(ds)) == sorted(splits.test_all)
    # a second call reuses the prepared data instead of rebuilding
    files = sorted(os.stat(p).st_mtime_ns for p in b.data_path.iterdir())
    prepare_dsb2018(bundled_minidata_path(), tmp_path, seed=3, n_test_per_type=1)
    assert sorted(os.stat(p).st_mtime_ns for p in b.data_path.iterdir()) == files
    # overwrite=True rebuilds the same content
    b2 = prepare_dsb2018(bundled_minidata_path(), tmp_path, seed=3, n_test_per_type=1, overwrite=True)
    assert sorted(os.stat(p).st_mtime_ns for p in b2.data_path.iterdir()) != files
    assert sorted(_ids(load_data_source(tmp_path, "test", seed=3, n_test_per_type=1))) == sorted(
        splits.test_all
    )


def test_errors_name_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.zip"
    with pytest.raises(DataError, match="nope.zip"):
        prepare_dsb2018(missing, tmp_path / "out")
    bad = tmp_path / "stage1_train.zip"
    bad.write_bytes(b"not a zip")
    assert main(["--zip", str(bad), "--data-dir", str(tmp_path / "out")]) == 2
    assert "stage1_train.zip" in capsys.readouterr().err
    with pytest.raises(DataError, match="no prepared"):
        load_data_source(tmp_path / "empty", "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_data_source(tmp_path, "validation")


def test_batches_shapes_dtypes_and_determinism(data_dir):
    ds = load_data_source(data_dir, "full")
    it = TfdsCropBatches(ds, batch_size=4, crop_size=128, seed=5)
    assert it.steps_per_epoch == len(ds) // 4
    b0 = list(it.epoch(0))
    assert len(b0) == it.steps_per_epoch
    for images, labels in b0:
        assert images.shape == (4, 128, 128, 3) and images.dtype == np.uint8
        assert labels.shape == (4, 128, 128) and labels.dtype == np.uint16
    again = list(TfdsCropBatches(ds, batch_size=4, crop_size=128, seed=5, workers=0).epoch(0))
    for (a, b), (c, d) in zip(b0, again):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    other_epoch = list(it.epoch(1))
    assert any(not np.array_equal(a, c) for (a, _), (c, _) in zip(b0, other_epoch))
    # resuming mid-epoch gives the same tail
    tail = list(it.epoch(0, start_step=2))
    np.testing.assert_array_equal(tail[0][0], b0[2][0])
    # transform: any callable labels -> array, applied to the crop
    classes = TfdsCropBatches(ds, 4, 128, seed=5, transform=lambda lab: (lab > 0).astype(np.uint8))
    for (_, lab), (_, cls) in zip(b0, classes.epoch(0)):
        assert cls.dtype == np.uint8
        np.testing.assert_array_equal(cls, (lab > 0).astype(np.uint8))


def test_same_batches_as_in_memory_pipeline(data_dir):
    ds = load_data_source(data_dir, "train")
    samples = [Sample(ds[i]["id"].decode(), ds[i]["image"], ds[i]["labels"]) for i in range(len(ds))]
    mem = CropBatches(samples, batch_size=2, crop_size=64, seed=7)
    disk = from_data_dir(data_dir, "train", batch_size=2, crop_size=64, seed=7)
    assert disk.steps_per_epoch == mem.steps_per_epoch
    for e in (0, 1):
        for (a, b), (c, d) in zip(mem.epoch(e), disk.epoch(e), strict=True):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)


def test_small_images_zero_padded(data_dir):
    ds = load_data_source(data_dir, "full")
    big = 1 + max(max(ds[i]["height"], ds[i]["width"]) for i in range(len(ds)))
    it = TfdsCropBatches(ds, batch_size=len(ds), crop_size=big, seed=0)
    images, labels = next(it.epoch(0))
    order = it.order(0)
    for k, i in enumerate(order):
        h, w = ds[int(i)]["height"], ds[int(i)]["width"]
        np.testing.assert_array_equal(images[k, :h, :w], ds[int(i)]["image"])
        assert not images[k, h:].any() and not images[k, :, w:].any()
        assert not labels[k, h:].any() and not labels[k, :, w:].any()


def test_bad_arguments(data_dir):
    ds = load_data_source(data_dir, "train")
    with pytest.raises(ValueError, match="cannot fill"):
        TfdsCropBatches(ds, batch_size=len(ds) + 1)
    with pytest.raises(ValueError):
        TfdsCropBatches(ds, batch_size=0)


@pytest.mark.slow
def test_tensorflow_never_imported(data_dir):
    assert "tensorflow" not in sys.modules
    # also in a fresh interpreter, through the whole build + read path
    code = (
        "import sys, tempfile\n"
        "from dng_jax.data.tfds_builder import prepare_dsb2018, load_data_source\n"
        "from dng_jax.data.tfds_pipeline import from_data_dir\n"
        "d = tempfile.mkdtemp()\n"
        "prepare_dsb2018(None, d)\n"
        "next(from_data_dir(d, 'train', 2, 64).epoch(0))\n"
        "load_data_source(d, 'test')[0]\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


@pytest.mark.slow
def test_folder_source_and_skip_bad(tmp_path, mini):
    """A Kaggle folder works as source; a sample with overlapping masks fails the build, or is left out
    (and listed) with skip_bad."""
    import shutil
    import zipfile

    manifest, samples = mini
    root = tmp_path / "stage1_train"
    with zipfile.ZipFile(bundled_minidata_path()) as z:
        z.extractall(root)
    bad_id = sorted(samples)[0]
    masks = sorted(p for p in root.rglob(f"{bad_id}/masks/*.png"))
    shutil.copy(masks[0], masks[0].with_name("zz_duplicate.png"))  # overlaps masks[0] completely
    with pytest.raises(DataError, match="zz_duplicate.png: overlaps"):
        prepare_dsb2018(tmp_path, tmp_path / "out1")  # a folder holding stage1_train/
    b = prepare_dsb2018(root, tmp_path / "out2", skip_bad=True)
    assert list(b.info.metadata["skipped"]) == [bad_id]
    assert b.info.splits["full"].num_examples == len(samples) - 1
    rest = {k: v for k, v in manifest.items() if k != bad_id}
    splits = make_splits(rest)
    assert sorted(_ids(load_data_source(tmp_path / "out2", "test"))) == sorted(splits.test_all)


def test_plain_builder_reads_manual_dir(tmp_path):
    """The TFDS way: stage1_train.zip in the manual dir, no source argument."""
    import shutil

    import tensorflow_datasets as tfds

    from dng_jax.data.tfds_builder import Dsb2018

    manual = tmp_path / "manual"
    manual.mkdir()
    shutil.copy(bundled_minidata_path(), manual / "stage1_train.zip")
    b = Dsb2018(data_dir=tmp_path / "data")
    b.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual, try_download_gcs=False)
    )
    assert b.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
    assert len(tfds.data_source("dsb2018", data_dir=tmp_path / "data", split="full")) == 18


def test_builder_reads_the_folder_layout_with_its_own_cell_types(tmp_path):
    """An experiment of one's own (folder layout, manifest with other cell types, an unlabeled image): the
    cell types extend the class names, the unlabeled image is clustered only (n_nuclei -1, labels 0)."""
    folder = tmp_path / "own"
    assert pack.main(["--types", "fluorescence,brightfield", "--output", str(folder), "--no-progress"]) == 0
    rows = (folder / "manifest.csv").read_text().splitlines()
    unlabeled = rows[1].split(",")[0]
    (folder / "masks" / f"{unlabeled}.png").unlink()
    (folder / "manifest.csv").write_text("\n".join([rows[0]] + [r.replace("brightfield", "my_new_type")
                                                               for r in rows[1:]]) + "\n")
    b = prepare_dsb2018(folder, tmp_path / "tfds")
    assert "my_new_type" in b.info.features["cell_type"].names
    full = load_data_source(tmp_path / "tfds", "full")
    by_id = {ex["id"].decode(): ex for ex in (full[i] for i in range(len(full)))}
    assert by_id[unlabeled]["n_nuclei"] == -1 and by_id[unlabeled]["labels"].max() == 0
    assert unlabeled in b.info.metadata["split_ids"]["cluster"]
    assert unlabeled not in b.info.metadata["split_ids"]["test"] + b.info.metadata["split_ids"]["train"]
