"""The cell-type rule, the manifest and the paper's splits (dng_jax/data/partition.py)."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from dng_jax.data.sources import open_source
from dng_jax.errors import DataError
from dng_jax.data.partition import (
    CELL_TYPES,
    KNOWN_TYPE,
    build_manifest,
    classify,
    halve_validation,
    image_statistics,
    load_or_build_manifest,
    make_splits,
    pseudo_label_ids,
    read_manifest,
    write_manifest,
)


def solid(rgb, noise=0.0, size=32, seed=0):
    rng = np.random.default_rng(seed)
    im = np.broadcast_to(np.array(rgb, np.float32), (size, size, 3)).copy()
    im += rng.normal(0, noise, (size, size, 1))  # same noise on every channel: stays gray if gray
    return np.clip(im, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "rgb,expected",
    [
        ((10, 10, 10), "fluorescence"),
        ((220, 220, 220), "brightfield"),
        ((205, 205, 212), "tissue_white"),  # saturation 0.03
        ((170, 150, 200), "tissue_purple"),  # saturation 0.25
        ((200, 110, 190), "tissue_magenta"),  # saturation 0.45
    ],
)
def test_rule_on_hand_made_images(rgb, expected):
    assert classify(image_statistics(solid(rgb, noise=3))) == expected


def test_bundled_manifest_matches_rule_counts():
    path = resources.files("dng_jax.data") / "minidata" / "dsb2018_stage1_manifest.json"
    manifest = read_manifest(str(path))
    counts = {t: sum(v == t for v in manifest.values()) for t in CELL_TYPES}
    assert len(manifest) == 664
    assert counts == {"fluorescence": 541, "brightfield": 16, "tissue_white": 38, "tissue_purple": 56,
                      "tissue_magenta": 13}


def test_minidata_is_classified_like_the_full_set():
    src = open_source(None)
    full = read_manifest(str(resources.files("dng_jax.data") / "minidata" / "dsb2018_stage1_manifest.json"))
    mini = build_manifest(src, progress=False)
    assert mini == {i: full[i] for i in mini}
    assert set(mini.values()) == set(CELL_TYPES)


def test_manifest_round_trip_and_cache(tmp_path):
    src = open_source(None)
    path = tmp_path / "m.json"
    m = load_or_build_manifest(src, path)
    assert read_manifest(path) == m
    write_manifest(path, {i: "fluorescence" for i in m})  # cached file wins while its ids match
    assert set(load_or_build_manifest(src, path).values()) == {"fluorescence"}


def test_bad_manifest_errors(tmp_path):
    p = tmp_path / "m.json"
    p.write_text("{not json")
    with pytest.raises(DataError, match=r"m\.json: not a dng-jax manifest"):
        read_manifest(p)
    p.write_text(json.dumps({"rule_version": 1, "types": {"x": "alien"}}))
    with pytest.raises(DataError, match="unknown cell types"):
        read_manifest(p)


def test_splits_follow_the_paper():
    manifest = {f"f{i}": "fluorescence" for i in range(10)}
    manifest |= {f"b{i}": "brightfield" for i in range(3)} | {"w0": "tissue_white", "w1": "tissue_white"}
    s = make_splits(manifest, n_test_per_type=2, seed=1)
    assert {t: len(v) for t, v in s.test.items()} == {"fluorescence": 2, "brightfield": 2, "tissue_white": 2}
    assert set(s.train_ct1) == {f"f{i}" for i in range(10)} - set(s.test[KNOWN_TYPE])
    assert set(s.cluster) == {i for i, t in manifest.items() if t != KNOWN_TYPE}  # test images included
    assert set(s.test_unknown) <= set(s.cluster) and not set(s.test_known) & set(s.train_ct1)
    assert make_splits(manifest, 2, seed=1) == s
    assert make_splits(manifest, 2, seed=2) != s


def test_teacher_and_choosing_pools_are_disjoint_halves_without_test_images():
    """The self-training teacher pool and the choosing pool split each other type's validation images by
    sorted position (even / odd), hold no test image, and only the transductive variant adds the test images."""
    path = resources.files("dng_jax.data") / "minidata" / "dsb2018_stage1_manifest.json"
    manifest = read_manifest(str(path))
    s = make_splits(manifest, protocol="wide", unknown_val_fraction=0.5, cluster_from="all")
    test = set(s.test_known) | set(s.test_unknown)
    teacher, choosing = set(s.teacher_pool), {i for ids in s.choosing.values() for i in ids}
    assert teacher and choosing and not teacher & choosing and not (teacher | choosing) & test
    assert teacher | choosing == set(s.val_all) and set(s.choosing[KNOWN_TYPE]) == set(s.val_known)
    for ctype, ids in s.val.items():
        if ctype != KNOWN_TYPE:
            assert s.choosing[ctype] == sorted(ids)[1::2] and set(sorted(ids)[0::2]) <= teacher
    assert pseudo_label_ids(s, "teacher_pool") == sorted(teacher)
    assert set(pseudo_label_ids(s, "transductive")) == teacher | set(s.test_unknown)
    assert pseudo_label_ids(s, "clustering") == s.cluster and set(s.test_unknown) <= set(s.cluster)
    with pytest.raises(ValueError, match="pseudo-labeled images"):
        pseudo_label_ids(s, "test")
    # an odd count gives the teacher the extra image; a type with one validation image has none to choose on
    assert halve_validation({"fluorescence": ["f1", "f0"], "brightfield": ["b2", "b0", "b1"], "tissue_white": ["w"]},
                            KNOWN_TYPE) == ({"brightfield": ["b0", "b2"], "tissue_white": ["w"]},
                                            {"fluorescence": ["f0", "f1"], "brightfield": ["b1"]})
