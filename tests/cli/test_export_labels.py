"""Ground-truth export: the label images equal the loader's, and evaluate accepts them."""

import json

import numpy as np
import pytest

from dng_jax import evaluate, export_labels
from dng_jax.data.sources import open_source
from dng_jax.data.export import export, split_ids
from dng_jax.config import DataConfig
from dng_jax.data.partition import make_splits, manifest_for
from dng_jax.io.labels import read_labels


def test_export_test_split_round_trips(tmp_path):
    ids = export(tmp_path, DataConfig(protocol="paper"), split="test", progress=False)
    src = open_source(None)
    assert ids == make_splits(manifest_for(src), 2, 0).test_all
    assert sorted(p.stem for p in (tmp_path / "gt").iterdir()) == sorted(ids)
    for sid in ids:
        sample = src.load(sid)
        np.testing.assert_array_equal(read_labels(tmp_path / "gt" / f"{sid}.png"), sample.labels)
    types = json.loads((tmp_path / "cell_types.json").read_text())["cell_types"]
    assert set(types) == set(ids) and "fluorescence" in types.values()
    # the ground truth scores 1 against itself through the evaluate CLI
    out = tmp_path / "score.json"
    assert evaluate.main(["--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "gt"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["map"] == 1.0


def test_export_cli_errors(tmp_path, capsys):
    assert export_labels.main(["--output", str(tmp_path), "--data", str(tmp_path / "missing.zip")]) == 2
    assert "missing.zip" in capsys.readouterr().err
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert export_labels.main(["--output", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder" in err and "Traceback" not in err
    assert export_labels.main(["--output", str(tmp_path / "o"), "--n-test-per-type", "-1"]) == 2
    assert "--n-test-per-type" in capsys.readouterr().err
    with pytest.raises(ValueError, match="validation"):
        split_ids(make_splits({}), {}, "validation")


def test_export_cli_labels_only(tmp_path):
    assert export_labels.main(["--out", str(tmp_path), "--split", "test_known", "--protocol", "paper", "--no-images"]) == 0
    assert len(list((tmp_path / "gt").glob("*.png"))) == 2 and not (tmp_path / "images").exists()


def test_export_the_wide_validation_split(tmp_path):
    assert export_labels.main(["--output", str(tmp_path / "ct1"), "--split", "val_known", "--protocol", "wide",
                               "--no-images", "--no-progress"]) == 0
    doc = json.loads((tmp_path / "ct1" / "cell_types.json").read_text())
    assert doc["protocol"] == "wide" and set(doc["cell_types"].values()) == {"fluorescence"}
    assert len(list((tmp_path / "ct1" / "gt").glob("*.png"))) == len(doc["cell_types"]) == 1
    # --split val: CT1's validation images and one of the three images of each other type
    assert export_labels.main(["--output", str(tmp_path / "all"), "--split", "val", "--no-images", "--no-progress"]) == 0
    types = json.loads((tmp_path / "all" / "cell_types.json").read_text())["cell_types"]
    assert sorted(types.values()) == ["brightfield", "fluorescence", "tissue_magenta", "tissue_purple", "tissue_white"]
