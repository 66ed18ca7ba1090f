"""The segmentation evaluator (dng_jax/evaluation/evaluator.py): MAP by cell type, its JSON and its table."""

import json

import numpy as np
import pytest

from dng_jax.data.dsb2018 import Sample
from dng_jax.data.partition import Splits
from dng_jax.evaluation.evaluator import SegmentationEvaluator, format_table


class _FakeSource:
    def __init__(self, samples):
        self.samples = {s.id: s for s in samples}

    def load(self, sid):
        return self.samples[sid]


def test_evaluator_scores_by_type_and_writes_json(model_and_state, tmp_path):
    model, state = model_and_state
    rng = np.random.default_rng(0)
    samples = []
    for i in range(3):
        labels = np.zeros((32, 40), np.uint16)
        labels[5:12, 5:12] = 1
        samples.append(Sample(f"id{i}", rng.integers(0, 256, (32, 40, 3)).astype(np.uint8), labels))
    splits = Splits(train_ct1=[], test={"fluorescence": ["id0"], "brightfield": ["id1", "id2"]}, cluster=[])
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    res = SegmentationEvaluator()(variables, model, _FakeSource(samples), splits.test)
    assert res.n_known == 1 and res.n_unknown == 2 and 0.0 <= res.all <= 1.0
    assert list(res.per_image) == ["id0", "id1", "id2"]
    assert res.all == pytest.approx(np.mean([r["score"] for r in res.per_image.values()]))
    named = dict(res.named_values())
    assert set(named) == {"map_known", "map_unknown", "map_all", "map/brightfield", "map/fluorescence"}
    res.write_json(tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text())["per_image"]["id1"]["type"] == "brightfield"
    assert "known (CT1)" in format_table(res)
