#!/usr/bin/env python
"""The variance components that `python -m dng_jax.plan` plans designs with (dng_jax/planning/variance_components.json).

From the committed per-image scores of the paper's sweep on the shipped recipe (configs/cpu_real_unseen.py):
per configuration (kMC / NG at k = 5, 100, 500 and GNG), the unknown types' test images, the components of
the difference run - baseline (between runs, between images, run x image); the median over configurations is
kept. The between-baseline components (how a configuration's effect varies between trainings of the baseline,
overall and image by image) come from the nested design where it exists (docs/figures/replicated: the same
configurations on the seed 1 and seed 2 trainings), else from the baseline trainings' own spread as a
stand-in (said in the file).

    python scripts/studies/variance_components.py [--output dng_jax/planning/variance_components.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dng_jax.evaluation.design_power import VarianceComponents, components_from_scores
from dng_jax.evaluation.run_level import two_way_components
from dng_jax.evaluation.scores import read_scores
from dng_jax.io.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "docs" / "figures"
SEED0 = {"kmc_k5": "generalise/wide_sweep/kmc_k5", "ng_k5": "generalise/wide_sweep/ng_k5",
         "kmc_k100": "generalise/clustering_on_top/paper/kmc_k100", "ng_k100": "generalise/clustering_on_top/paper/ng_k100",
         "kmc_k500": "generalise/wide_sweep/kmc_k500", "ng_k500": "generalise/wide_sweep/ng_k500",
         "gng_k5": "generalise/wide_sweep/gng_k5"}
KNOWN = "fluorescence"


def _unknown_ids(table) -> list[str]:
    return [i for i, t in zip(table.ids, table.types) if t != KNOWN]


def _nested_between(ids) -> tuple[float, float, str] | None:
    """The between-baseline variance of a configuration's mean difference and the baseline x image variance,
    from the replicated sweeps: over the baselines, the variance of (mean over runs and images of run - own
    baseline) and the interaction of the per-image means over runs, each less its within-baseline part."""
    seeds = [FIGURES / "replicated" / f"seed{s}" / "sweep" for s in (1, 2)]
    seeds = [d for d in seeds if (d / "baseline" / "scores.csv").exists()]  # those swept so far
    if not seeds:
        return None
    between, interaction = [], []
    for name, stem in SEED0.items():
        per_image, within, within_resid = [], [], []
        for root in [None] + seeds:
            if root is None:
                runs, base = read_scores(FIGURES / f"{stem}_scores.csv"), read_scores(
                    FIGURES / "generalise" / "clustering_on_top" / "baseline_scores.csv")
            else:
                path = root / "runs" / name / "scores.csv"
                if not path.exists():
                    break
                runs, base = read_scores(path), read_scores(root / "baseline" / "scores.csv")
            x = base.select(ids)
            d = runs.select(ids).scores - x.scores
            per_image.append(d.mean(0))
            within.append(np.var(d.mean(1), ddof=1) / d.shape[0])
            c = two_way_components(d, x.types)
            within_resid.append(float(c.residual @ c.sizes / c.sizes.sum()) / d.shape[0])
        if len(per_image) == 1 + len(seeds):
            between.append(max(float(np.var([p.mean() for p in per_image], ddof=1) - np.mean(within)), 0.0))
            c = two_way_components(np.stack(per_image), x.types)
            interaction.append(max(float(c.residual @ c.sizes / c.sizes.sum()) - float(np.mean(within_resid)), 0.0))
    if not between:
        return None
    return float(np.median(between)), float(np.median(interaction)), (
        f"the replicated sweeps ({1 + len(seeds)} baselines, median over {len(between)} configurations; "
        f"an estimate with {len(seeds)} df)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default=str(ROOT / "dng_jax" / "planning" / "variance_components.json"))
    a = ap.parse_args()
    base = read_scores(FIGURES / "generalise" / "clustering_on_top" / "baseline_scores.csv")
    trainings = read_scores(FIGURES / "cpu_real_baselines" / "test_scores.csv")  # the test images only
    ids = _unknown_ids(trainings)
    nested = _nested_between(ids)
    # the image level seen on one baseline holds its baseline x image part: taken out with the nested
    # estimate where it exists, else with the cpu_real trainings' interaction (the stand-in)
    per = [components_from_scores(read_scores(FIGURES / f"{stem}_scores.csv"), base, ids,
                                  trainings if nested is None else None) for stem in SEED0.values()]
    if nested is not None:
        per = [c._replace(between_baseline=nested[0], baseline_image=nested[1],
                          image=max(c.image - nested[1], 0.0)) for c in per]
    median = {f: float(np.median([getattr(c, f) for c in per]))
              for f in ("between_baseline", "between_run", "image", "residual", "baseline_image")}
    source = ("between-baseline: the cpu_real baseline trainings' spread as a stand-in (no replicated sweep yet)"
              if nested is None else f"between-baseline and baseline x image: {nested[2]}")
    c = VarianceComponents(**median, n_images=len(ids), n_strata=len(set(base.select(ids).types)), source=source)
    doc = {"source": f"configs/cpu_real_unseen.py at CPU scale, the unknown types' {len(ids)} test images; within "
                     f"a baseline: the median over kMC / NG at k = 5, 100, 500 and GNG (4 runs each); {source}",
           "components": c._asdict()}
    atomic_write_text(Path(a.output), json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
