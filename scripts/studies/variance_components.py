#!/usr/bin/env python
"""The variance components that `python -m dng_jax.plan` plans designs with (dng_jax/planning/variance_components.json).

From the committed per-image scores of the paper's sweep on the shipped recipe (configs/cpu_real_unseen.py):
per configuration (kMC / NG at k = 5, 100, 500 and GNG), the unknown types' test images, the components of
the difference run - baseline (between runs, between images, run x image); the median over configurations is
kept. The between-baseline component (how a configuration's effect varies between trainings of the baseline)
comes from the nested design where it exists (docs/figures/replicated: the same configurations on the seed 1
and seed 2 trainings), else from the baseline trainings' own spread as a stand-in (said in the file).

    python scripts/studies/variance_components.py [--output dng_jax/planning/variance_components.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dng_jax.evaluation.design_power import VarianceComponents, components_from_scores
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


def _nested_between(ids) -> tuple[float, str] | None:
    """The between-baseline variance of a configuration's mean difference, from the replicated sweeps: the
    variance over the baselines of (mean over runs and images of run - own baseline), less its within part."""
    seeds = [FIGURES / "replicated" / f"seed{s}" / "sweep" for s in (1, 2)]
    seeds = [d for d in seeds if (d / "baseline" / "scores.csv").exists()]  # those swept so far
    if not seeds:
        return None
    values = []
    for name, stem in SEED0.items():
        diffs, within = [], []
        for b, root in enumerate([None] + seeds):
            if root is None:
                runs, base = read_scores(FIGURES / f"{stem}_scores.csv"), read_scores(
                    FIGURES / "generalise" / "clustering_on_top" / "baseline_scores.csv")
            else:
                path = root / "runs" / name / "scores.csv"
                if not path.exists():
                    break
                runs, base = read_scores(path), read_scores(root / "baseline" / "scores.csv")
            d = runs.select(ids).scores - base.select(ids).scores
            diffs.append(d.mean())
            within.append(np.var(d.mean(1), ddof=1) / d.shape[0])
        if len(diffs) == 1 + len(seeds):
            values.append(max(float(np.var(diffs, ddof=1) - np.mean(within)), 0.0))
    if not values:
        return None
    return float(np.median(values)), (f"the replicated sweeps ({1 + len(seeds)} baselines, median over {len(values)} configurations; "
                                 f"an estimate with {len(seeds)} df)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default=str(ROOT / "dng_jax" / "planning" / "variance_components.json"))
    a = ap.parse_args()
    base = read_scores(FIGURES / "generalise" / "clustering_on_top" / "baseline_scores.csv")
    trainings = read_scores(FIGURES / "cpu_real_baselines" / "test_scores.csv")  # the test images only
    ids = _unknown_ids(trainings)
    per = [components_from_scores(read_scores(FIGURES / f"{stem}_scores.csv"), base, ids, trainings)
           for stem in SEED0.values()]
    median = {f: float(np.median([getattr(c, f) for c in per]))
              for f in ("between_baseline", "between_run", "image", "residual", "baseline_image")}
    nested = _nested_between(ids)
    source = ("between-baseline: the cpu_real baseline trainings' spread as a stand-in (no replicated sweep yet)"
              if nested is None else f"between-baseline: {nested[1]}")
    if nested is not None:
        median["between_baseline"] = nested[0]
    c = VarianceComponents(**median, n_images=len(ids), n_strata=len(set(base.select(ids).types)), source=source)
    doc = {"source": f"configs/cpu_real_unseen.py at CPU scale, the unknown types' {len(ids)} test images; within "
                     f"a baseline: the median over kMC / NG at k = 5, 100, 500 and GNG (4 runs each); {source}",
           "components": c._asdict()}
    atomic_write_text(Path(a.output), json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
