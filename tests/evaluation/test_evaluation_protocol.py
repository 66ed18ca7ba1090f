"""The evaluation instrument: test protocols, per-image score tables, the classical reference, the
parallel scorer, Table I's statistics, and ``evaluate --compare``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from dng_jax import classical as classical_cli
from dng_jax import evaluate
from dng_jax.data.dsb2018 import Sample
from dng_jax.data.partition import KNOWN_TYPE, Splits, make_splits
from dng_jax.evaluation.evaluator import SegmentationEvaluator
from dng_jax.evaluation.metrics import image_score
from dng_jax.evaluation.scores import ScoreTable, read_scores, scored_images, view_maps, write_scores
from dng_jax.experiment.comparisons import SweepScores
from dng_jax.experiment import layout
from dng_jax.experiment.layout import RunResult, write_test_set
from dng_jax.experiment.report import rebuild_report, write_report
from dng_jax.io.labels import read_labels, write_labels
from dng_jax.segmentation.classical import ClassicalConfig, classical_instances


def _manifest():
    m = {f"ct1_{i:03d}": KNOWN_TYPE for i in range(100)}
    m.update({f"bf_{i}": "brightfield" for i in range(7)})
    m.update({f"tw_{i}": "tissue_white" for i in range(5)})
    return m


def test_wide_protocol_splits():
    m = _manifest()
    s = make_splits(m, protocol="wide", test_fraction=0.1, val_fraction=0.05, seed=3)
    test_ct1, val, train = set(s.test[KNOWN_TYPE]), set(s.val_known), set(s.train_ct1)
    assert (len(test_ct1), len(val), len(train)) == (10, 5, 85)
    assert not (test_ct1 & val) and not (test_ct1 & train) and not (val & train)
    assert test_ct1 | val | train == {i for i, t in m.items() if t == KNOWN_TYPE}
    # without an unknown validation split every non-CT1 image is a test image (and a clustering image)
    assert s.test["brightfield"] == sorted(f"bf_{i}" for i in range(7)) and len(s.test["tissue_white"]) == 5
    assert s.val_unknown == [] and s.cluster == sorted(i for i, t in m.items() if t != KNOWN_TYPE)
    assert make_splits(m, protocol="wide", seed=3) == s and make_splits(m, protocol="wide", seed=4) != s
    paper = make_splits(m, 2, 3)
    assert paper.val == {} and len(paper.test[KNOWN_TYPE]) == 2 and len(paper.train_ct1) == 98
    with pytest.raises(ValueError, match="protocol"):
        make_splits(m, protocol="narrow")


def test_wide_protocol_halves_the_unknown_types():
    """Each other type is split in two, seeded and stratified: validation for choosing, test for reporting;
    CT1's split is the same with or without it (so are the trainings), and the clustering images are every
    non-CT1 image (transductive) or only the validation halves (data.cluster_from='validation')."""
    m = _manifest()
    s = make_splits(m, protocol="wide", seed=3, unknown_val_fraction=0.5)
    old = make_splits(m, protocol="wide", seed=3)
    assert (s.train_ct1, s.test[KNOWN_TYPE], s.val_known) == (old.train_ct1, old.test[KNOWN_TYPE], old.val_known)
    assert (len(s.val["brightfield"]), len(s.test["brightfield"])) == (3, 4)
    assert (len(s.val["tissue_white"]), len(s.test["tissue_white"])) == (2, 3)
    for t in ("brightfield", "tissue_white"):
        assert not set(s.val[t]) & set(s.test[t]) and set(s.val[t]) | set(s.test[t]) == {i for i in m if m[i] == t}
    assert s.test_unknown and not set(s.test_unknown) & set(s.val_unknown)
    assert s.cluster == old.cluster
    assert make_splits(m, protocol="wide", seed=4, unknown_val_fraction=0.5).val != s.val
    inductive = make_splits(m, protocol="wide", seed=3, unknown_val_fraction=0.5, cluster_from="validation")
    assert inductive.cluster == sorted(s.val_unknown) and not set(inductive.cluster) & set(s.test_unknown)


def test_score_tables_and_views(tmp_path):
    types = {"a": KNOWN_TYPE, "b": "brightfield", "c": "brightfield", "d": "tissue_white"}
    t = ScoreTable.from_per_image([0, 1], [{"a": 0.5, "b": 0.25, "c": 0.0, "d": 1.0},
                                           {"a": 0.7, "b": 0.75, "c": 0.5, "d": 0.0}], types)
    write_scores(tmp_path / "s.csv", t)
    back = read_scores(tmp_path / "s.csv")
    assert back.runs == ("0", "1") and back.ids == t.ids and back.types == t.types
    np.testing.assert_allclose(back.scores, t.scores)
    np.testing.assert_allclose(back.per_image_mean(), [0.6, 0.5, 0.25, 0.5])
    test = {KNOWN_TYPE: ["a"], "brightfield": ["b"]}  # the protocol's test set: a subset of what was scored
    assert view_maps(dict(zip(t.ids, t.scores[0])), test) == pytest.approx(
        {"map_known": 0.5, "map_unknown": 0.25, "map_all": 0.375})
    splits = Splits(train_ct1=[], test=test, cluster=["b", "c", "d"], val={"tissue_white": ["d"]})
    assert scored_images(splits, types) == {**test, "tissue_white": ["d"]}  # test and validation images
    assert scored_images(splits, types, every_unknown=True) == {
        KNOWN_TYPE: ["a"], "brightfield": ["b", "c"], "tissue_white": ["d"]}
    with pytest.raises(KeyError, match="no scores"):
        t.select(["zz"])


def _discs(bright_background=False):
    yy, xx = np.mgrid[:64, :64]
    labels = np.zeros((64, 64), np.uint16)
    labels[(yy - 32) ** 2 + (xx - 20) ** 2 < 100] = 1
    labels[((yy - 32) ** 2 + (xx - 38) ** 2 < 100) & (labels == 0)] = 2  # touching the first
    labels[(yy - 10) ** 2 + (xx - 52) ** 2 < 30] = 3
    img = np.where(labels > 0, 200, 30).astype(np.uint8)
    if bright_background:
        img = 255 - img
    return np.repeat(img[..., None], 3, axis=2), labels


def test_classical_reference_separates_touching_nuclei():
    for bright in (False, True):
        image, gt = _discs(bright)
        pred = classical_instances(image, ClassicalConfig(sigma=0, min_distance=5, min_size=5))
        assert pred.max() == 3 and image_score(gt, pred) > 0.7, (bright, pred.max())
    assert classical_instances(np.full((20, 20, 3), 90, np.uint8)).max() == 0  # flat: no objects


def test_classical_cli_and_evaluate_compare(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    gt_dir = tmp_path / "gt"
    for i in range(3):
        image, gt = _discs(bright_background=i == 1)
        Image.fromarray(image).save(tmp_path / "in" / f"im{i}.png")
        write_labels(gt_dir / f"im{i}.png", gt)
    out = tmp_path / "classical"
    assert classical_cli.main(["--input", str(tmp_path / "in"), "--output", str(out), "--quiet", "--no-progress",
                               "--min-distance", "5", "--min-size", "5"]) == 0
    assert read_labels(out / "im0.png").max() == 3
    assert classical_cli.main(["--input", str(tmp_path / "in"), "--output", str(out), "--min-size", "-1"]) == 2
    assert "--min-size" in capsys.readouterr().err
    # an empty prediction folder against the classical one: paired, the classical one is better
    empty = tmp_path / "empty"
    for i in range(3):
        write_labels(empty / f"im{i}.png", np.zeros((64, 64), np.uint16))
    res = tmp_path / "cmp.json"
    assert evaluate.main(["--gt", str(gt_dir), "--pred", str(empty), "--compare", str(out), "--json", str(res),
                          "-q"]) == 0
    text = capsys.readouterr().out
    assert "improved on 100% of the images" in text and "too few images" in text
    doc = json.loads(res.read_text())
    assert doc["map"] == 0.0 and doc["compare"]["diff"] > 0.7 and doc["compare"]["improved"] == 1.0


class _Loader:
    def __init__(self, samples):
        self.samples = {s.id: s for s in samples}

    def load(self, sid):
        return self.samples[sid]


@pytest.mark.slow
def test_parallel_scoring_equals_serial(tiny_model, tiny_state):
    rng = np.random.default_rng(0)
    samples = []
    for i in range(4):
        labels = np.zeros((40 + 8 * i, 48), np.uint16)
        labels[5:15, 5:15] = 1
        labels[20:30, 25:40] = 2
        samples.append(Sample(f"id{i}", rng.integers(0, 256, labels.shape + (3,)).astype(np.uint8), labels))
    test = {KNOWN_TYPE: ["id0", "id1"], "brightfield": ["id2", "id3"]}
    variables = {"params": tiny_state.params, "batch_stats": tiny_state.batch_stats}
    serial = SegmentationEvaluator(workers=0)(variables, tiny_model, _Loader(samples), test)
    pooled = SegmentationEvaluator(workers=2)(variables, tiny_model, _Loader(samples), test)
    assert pooled.per_image == serial.per_image and pooled.all == serial.all


def _sweep_scores(rng):
    types = {f"k{i}": KNOWN_TYPE for i in range(12)} | {f"u{i}": "brightfield" for i in range(12)}
    ids = list(types)
    base = rng.uniform(0.2, 0.6, len(ids))

    def table(runs, shift):
        return ScoreTable.from_per_image(runs, [dict(zip(ids, np.clip(base + shift + rng.normal(0, 0.01, len(ids)),
                                                                      0, 1))) for _ in runs], types)

    return SweepScores(
        baseline=ScoreTable.from_per_image(["baseline"], [dict(zip(ids, base))], types),
        classical=table(["classical"], -0.1),
        runs={("kmc", 5): table(["0", "1"], 0.05), ("ng", 5): table(["0", "1"], 0.0)},
        test={KNOWN_TYPE: ids[:12], "brightfield": ids[12:]})


def test_report_statistics_and_rebuild(tmp_path):
    scores = _sweep_scores(np.random.default_rng(1))
    rows = []
    for (method, k), t in scores.runs.items():
        for r, run in enumerate(t.runs):
            maps = view_maps(dict(zip(t.ids, t.scores[r])), scores.test)
            rows.append(RunResult(method, k, int(run), units=k, norm_entropy=0.9, quant_error=1.0, **maps))
    base = view_maps(dict(zip(scores.baseline.ids, scores.baseline.scores[0])), scores.test)
    paths = write_report(tmp_path, rows, base, "", scores)
    table = (tmp_path / "table1.md").read_text()
    assert "| classical (no learning) | 1 | - |" in table
    assert "## Difference to the baseline on the same images (paired)" in table and "## MAP per cell type" in table
    with open(tmp_path / "differences.csv", newline="") as f:
        diffs = {(r["name"], r["group"]): r for r in csv.DictReader(f)}
    assert diffs[("kMC(5)", "all")]["beats_baseline"] == "1" and float(diffs[("kMC(5)", "all")]["diff"]) > 0.04
    assert diffs[("classical (no learning)", "CT1")]["beats_baseline"] == "0"
    assert float(diffs[("classical (no learning)", "CT1")]["high"]) < 0  # clearly worse
    assert all(p.stat().st_size > 0 for p in paths)
    # the same tables from the files alone (python -m dng_jax.report)
    (tmp_path / "baseline").mkdir()
    (tmp_path / "baseline" / "map.json").write_text(json.dumps(base))
    write_scores(tmp_path / "baseline" / "scores.csv", scores.baseline)
    (tmp_path / "classical").mkdir()
    write_scores(tmp_path / "classical" / "scores.csv", scores.classical)
    for (method, k), t in scores.runs.items():
        d = layout.run_dir(tmp_path, layout.run_name(method, k))
        d.mkdir(parents=True)
        write_scores(d / "scores.csv", t)
        layout.write_results(d, [r for r in rows if (r.method, r.k) == (method, k)])  # the rows name (method, k)
    write_test_set(tmp_path, scores.test, None)
    before = table
    rebuild_report(tmp_path)
    assert (tmp_path / "table1.md").read_text() == before
