"""Why does encoder retraining change the MAP? Separate BatchNorm-statistics drift from weight drift.

Takes a finished sweep work dir and retrains a few runs of one configuration again, with the same pseudo-labels, in
four ways: 0 epochs (must give back the baseline: a check of the plumbing), 1 epoch at learning rate 0 (only
the BatchNorm running statistics follow the clustering images), the config's retraining (new weights and
statistics), and the same with BatchNorm frozen (eval mode) while retraining. Prints MAP known / unknown / all
per run; the table in docs/history.md came from

    python scripts/studies/diagnose_retrain_drift.py --workdir runs/cpu_real --config configs/cpu_real.py --run kmc_k100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dng_jax.config import experiment_config, load_config
from dng_jax.data.dsb2018 import SampleCache
from dng_jax.evaluation.evaluator import SegmentationEvaluator
from dng_jax.experiment import layout
from dng_jax.experiment.retrain import EncoderClassifier, retrain_runs
from dng_jax.experiment.stages.baseline import stage_baseline
from dng_jax.experiment.stages.context import StageContext
from dng_jax.experiment.stages.data import open_scoring, prepare_data


class FrozenBNClassifier(EncoderClassifier):
    """The retraining model with the encoder's BatchNorm in eval mode (running statistics fixed)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        latent, _ = self.encoder(x, train=False)
        return nn.Dense(self.num_classes, name="head")(jnp.mean(latent.astype(jnp.float32), axis=(1, 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="a finished sweep work dir")
    ap.add_argument("--config", required=True, help="the configs/*.py file of that sweep")
    ap.add_argument("--run", default="kmc_k100", help="configuration folder under WORKDIR/runs/")
    ap.add_argument("--runs", type=int, default=2, help="how many of its seeds to retrain")
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args()

    wd, cfg = Path(a.workdir), experiment_config(load_config(a.config))
    data = prepare_data(cfg, wd, False)
    splits = data.splits
    test_cache = SampleCache(data.source, splits.test_all)
    evaluator = SegmentationEvaluator.from_config(cfg)
    with open_scoring(evaluator, data) as scoring:  # the baseline as the sweep loads (or scores) it
        variables, model, baseline = stage_baseline(StageContext(cfg, wd, data, scoring, False))
    images = np.load(layout.stage_dir(wd, layout.CLUSTER_DATA) / layout.IMAGES)
    rdir = layout.run_dir(wd, a.run)
    labels = np.load(rdir / layout.PSEUDO_LABELS)[: a.runs]
    stats = json.loads((rdir / layout.CLUSTERING).read_text())
    k = max(int(s["units"]) for s in stats)  # the sweep's head size
    enc = {"params": variables["params"]["encoder"], "batch_stats": variables["batch_stats"]["encoder"]}
    run_ids = np.arange(a.runs, dtype=np.int32)

    def score(states, j, take_weights=True, take_stats=True):
        p, b = dict(variables["params"]), dict(variables["batch_stats"])
        if take_weights:
            p["encoder"] = jax.tree.map(lambda x: x[j], states.params["encoder"])
        if take_stats:
            b["encoder"] = jax.tree.map(lambda x: x[j], states.batch_stats["encoder"])
        r = evaluator({"params": p, "batch_stats": b}, model, test_cache, splits.test)
        return [round(r.known, 3), round(r.unknown, 3), round(r.all, 3)]

    out = {"baseline": [round(baseline[c], 3) for c in ("map_known", "map_unknown", "map_all")]}
    print("baseline (known, unknown, all):", out["baseline"], flush=True)
    variants = [("0 epochs", EncoderClassifier, dict(epochs=0)),
                ("1 epoch at lr 0 (BatchNorm statistics only)", EncoderClassifier, dict(epochs=1, learning_rate=0.0)),
                ("config's retraining", EncoderClassifier, {}),
                ("config's retraining, BatchNorm frozen", FrozenBNClassifier, {})]
    for name, cls, override in variants:
        t = time.time()
        states, _ = retrain_runs(jax.random.key(1), cls(model.encoder, k), enc, images, labels,
                                 cfg.retrain.replace(**override), cfg.augment, progress=False, run_ids=run_ids)
        out[name] = [score(states, j) for j in range(a.runs)]
        print(f"{name}: {out[name]}  ({time.time() - t:.0f}s)", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
