#!/usr/bin/env python
"""Retraining speed of the checkout on PYTHONPATH: 1 and 2 epochs of 10 steps, 8 runs vmapped.

The sweep's retraining (encoder + classifier head on pseudo-labels, ``retrain_runs``) on a finished
sweep's clustering images and one configuration's labels, at that sweep's model size. Each call
compiles its step again, so the times include compilation; the difference of the two is 10 steps.
It also runs an older checkout (layout before the redesign: ``dng_jax.retrain``), so code and host
can be told apart side by side (docs/results.md, "Wall time"):

    python scripts/bench_retrain_checkout.py --workdir runs/cpu_real
    git worktree add /tmp/old 167a9cc && PYTHONPATH=/tmp/old python scripts/bench_retrain_checkout.py --workdir runs/cpu_real
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import numpy as np

try:  # this layout
    from dng_jax.data.augment import AugmentConfig
    from dng_jax.experiment.retrain import EncoderClassifier, RetrainConfig, retrain_runs
    from dng_jax.segmentation.checkpointing import load_variables
except ImportError:  # before the redesign (issue 9)
    from dng_jax.augment import AugmentConfig
    from dng_jax.checkpointing import load_variables
    from dng_jax.retrain import EncoderClassifier, RetrainConfig, retrain_runs
import dng_jax


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="a finished sweep (baseline/, cluster_data/, runs/)")
    ap.add_argument("--run", default="kmc_k50", help="the configuration whose pseudo-labels are used")
    a = ap.parse_args()
    variables, model, _ = load_variables(f"{a.workdir}/baseline")
    labels = np.load(f"{a.workdir}/runs/{a.run}/pseudo_labels.npy")[:, :320]  # 10 batches of 32
    images = np.asarray(np.load(f"{a.workdir}/cluster_data/images.npy", mmap_mode="r")[:320])
    clf = EncoderClassifier(model.encoder, int(labels.max()) + 1)
    encoder = {"params": variables["params"]["encoder"], "batch_stats": variables["batch_stats"]["encoder"]}
    times = {}
    for epochs in (1, 2):
        cfg = RetrainConfig(epochs=epochs, crop_size=64, batch_size=32, decay_every_epochs=3)
        t = time.perf_counter()
        retrain_runs(jax.random.key(1), clf, encoder, images, labels, cfg, AugmentConfig(), progress=False)
        times[epochs] = time.perf_counter() - t
    print(json.dumps({"code": dng_jax.__file__, "runs": int(labels.shape[0]), "one_epoch_s": round(times[1], 1),
                      "two_epochs_s": round(times[2], 1), "s_per_step": round((times[2] - times[1]) / 10, 2)}))


if __name__ == "__main__":
    sys.exit(main())
