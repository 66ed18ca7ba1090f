#!/usr/bin/env python
"""Score a trained network on the test (or validation) images of its config, with or without TTA.

Writes a ``baseline.json``-style file (MAP known / unknown / all, per type, per image) that
``scripts/compare_baselines.py`` reads; the split is the one of the config stored with the checkpoint
(``data.protocol``), so the images are those its training held out.

    python scripts/score_checkpoint.py --checkpoint runs/baseline_cpu_real --tta --output tta.json
    python scripts/score_checkpoint.py --checkpoint runs/baseline_cpu_real --split val --output val.json
    python scripts/score_checkpoint.py --checkpoint runs/baseline_cpu_real --adabn --output adabn.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not another install

from dng_jax.data.partition import open_data  # noqa: E402
from dng_jax.evaluation.evaluator import SegmentationEvaluator, format_table  # noqa: E402
from dng_jax.segmentation.checkpointing import load_variables  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="training work dir (or checkpoint folder)")
    ap.add_argument("--split", choices=("test", "val"), default="test")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                    help="test-time augmentation (default: the config's eval.tta)")
    ap.add_argument("--adabn", action="store_true",
                    help="normalise the encoder with each image's own statistics (AdaBN, retrain.batch_norm=adabn)")
    ap.add_argument("--data", default=None, help="the DSB2018 zip, if not where the config says")
    ap.add_argument("--output", required=True, help="JSON file to write")
    a = ap.parse_args()
    variables, model, config = load_variables(a.checkpoint)
    data = config.data if a.data is None else dataclasses.replace(config.data, path=a.data)
    source, _, splits = open_data(data, progress=False)
    images = splits.test if a.split == "test" else splits.val  # val: CT1's and the other types' validation images
    evaluator = SegmentationEvaluator.from_config(config)
    if a.tta is not None:
        evaluator = evaluator._replace(tta=a.tta)
    evaluator = evaluator._replace(adabn=a.adabn)
    scores = evaluator(variables, model, source, images, progress=True, known_type=splits.known_type)
    scores.write_json(a.output)
    print(format_table(scores))


if __name__ == "__main__":
    main()
