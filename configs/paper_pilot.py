"""The paper's sharpest claim at the paper's scale, in one GPU command of at most 9 minutes.

The paper's settings (configs/paper.py) unless named here: the ResNet-50 U-Net trained on CT1 with LAMB for
50 epochs on 256 px crops, batch 8; 5000 augmented clustering crops, their pooled latent reduced to 32
dimensions by PCA; kMC with k = 500 ("for k >= 500, all approaches led to a systematic improvement",
Fig. 7); the encoder retrained on the pseudo-labels with SGD for 20 epochs on 128 px crops. Named here:

- the ``wide`` protocol (55 CT1 test images; every other type halved into validation and test);
- one configuration, kMC(500), with as many seeds as the time allows and their ensemble (the mean softmax);
- the baseline scored also with test-time augmentation and AdaBN, beside the classical reference;
- bfloat16 compute (parameters stay float32): the float32 retraining step would not fit the time
  (docs/benchmarks.md, "The pilot"); the outputs name it (sweep_config.json, table1.md).

``python -m dng_jax.plan --config configs/paper_pilot.py --timings docs/gpu/plan.json --timings
docs/gpu/retrain_bf16.json`` projects it on one H200; ``scripts/tools/gpu_check.sh pilot --data DIR`` runs it
(DIR: the DSB2018 collection packed by ``python -m dng_jax.pack``). The verdict follows the decision rule
written in docs/results.md before the run.
"""

from pathlib import Path

from dng_jax.config import load_config

#: Runs of kMC(500): what fits the 9-minute command with the current retraining step (docs/benchmarks.md).
PILOT_SEEDS = 12


def get_config():
    c = load_config(Path(__file__).with_name("paper.py"))
    c.data.protocol = "wide"
    c.model.dtype = "bfloat16"
    c.eval.baseline_views = ("tta", "adabn", "tta+adabn")
    c.sweep.methods = ("kmc",)
    c.sweep.ks = (500,)
    c.sweep.seeds = PILOT_SEEDS
    c.sweep.seeds_per_chunk = PILOT_SEEDS
    c.sweep.ensemble = -1
    return c
