#!/usr/bin/env python
"""The findings on the shipped recipe re-derived over three baseline trainings (the nested design).

Seed 0 is the shipped model (bundled:cpu_real): its sweep's per-image scores are committed in
docs/figures/generalise/ (wide_sweep, clustering_on_top); seeds 1 and 2 were trained again and swept with the
same settings (docs/figures/replicated/seed<s>/: training, weights, sweep, variants). This assembles seed 0's
work dir from the committed files (in a temporary folder) and combines the three with
``python -m dng_jax.report --combine``'s function, into --output:

  <output>/paper_sweep/   kMC / NG at k = 5, 100, 500 and GNG on 3 baselines (k = 50 and the ensembles: seed 0 only)
  <output>/joint/, <output>/decoder/   the joint objective and decoder re-pairing at k = 100, where two
                          baselines have them (seed 0 and the seeds whose variants study finished)
  <output>/per_baseline/seed<s>/   each replicated seed's sweep alone, re-read at the run level, and its
                          variants rows (joint/, decoder/: their study.md is the runs' own summary, written by
                          the pinned code with the older two-level bootstrap)
  <seed0>/sweep/, <seed0>/variants/<row>/   seed 0 alone (one baseline: the claims are about that network),
                          its committed sweep and variants rows re-read with the run-level intervals

    python scripts/studies/replicated_baselines.py --output docs/figures/replicated/nested
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
from pathlib import Path

from dng_jax.config import experiment_config, load_config
from dng_jax.experiment import layout
from dng_jax.experiment.layout import RunResult
from dng_jax.experiment.report import combine_report
from dng_jax.experiment.stages.data import prepare_data

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "docs" / "figures"
ON_TOP = FIGURES / "generalise" / "clustering_on_top"
REPLICATED = FIGURES / "replicated"
#: seed 0's configurations: run folder -> (its scores' stem, the results.csv that holds its rows)
SEED0_SWEEP = {f"{m}_k{k}": (f"generalise/wide_sweep/{m}_k{k}", "generalise/wide_sweep/results.csv")
               for m in ("kmc", "ng") for k in (5, 50, 500)}
SEED0_SWEEP |= {f"{m}_k100": (f"generalise/clustering_on_top/paper/{m}_k100", "generalise/clustering_on_top/paper/results.csv")
                for m in ("kmc", "ng")}
SEED0_SWEEP["gng_k5"] = ("generalise/wide_sweep/gng_k5", "generalise/wide_sweep/results.csv")


def _rows(results_csv: Path, name: str) -> list[RunResult]:
    method, k = name.rsplit("_k", 1)  # the committed files' own names, not a work dir's
    with open(results_csv, newline="") as f:
        return [RunResult(r["method"], int(r["k"]), int(r["seed"]), int(r["units"]), float(r["norm_entropy"]),
                          float(r["quant_error"]), float(r["map_known"]), float(r["map_unknown"]),
                          float(r["map_all"])) for r in csv.DictReader(f) if r["method"] == method and r["k"] == k]


def seed0_workdir(wd: Path, configurations: dict[str, tuple[str, str]], test_set_from: Path) -> Path:
    """A work dir of seed 0's sweep made of the committed scores: baseline, classical, the runs."""
    for stage_name, src in ((layout.BASELINE, ON_TOP / "baseline_scores.csv"),
                            (layout.CLASSICAL, ON_TOP / "classical_scores.csv")):
        layout.stage_dir(wd, stage_name).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, layout.stage_dir(wd, stage_name) / layout.SCORES)
    for name, (stem, results) in configurations.items():
        rdir = layout.run_dir(wd, name)
        rdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIGURES / f"{stem}_scores.csv", rdir / layout.SCORES)
        ensemble = FIGURES / f"{stem}_ensemble_scores.csv"
        if ensemble.exists():
            shutil.copy(ensemble, rdir / layout.ENSEMBLE_SCORES)
        layout.write_results(rdir, _rows(FIGURES / results, name))
    shutil.copy(test_set_from, wd / layout.TEST_SET)
    return wd


def report(out: Path, workdirs: list[Path]) -> list[Path]:
    """The run-level report of ``workdirs`` combined into ``out``; its combined_from.json names the committed
    folders (seed 0's work dir is a temporary assembly of them)."""
    paths = combine_report(out, workdirs)
    names = [str(w.relative_to(ROOT)) if w.is_relative_to(ROOT) else "docs/figures/generalise (seed 0, assembled)"
             for w in workdirs]
    layout.write_json(out / "combined_from.json", {"workdirs": names,
                                                   "made_by": "python scripts/studies/replicated_baselines.py"})
    return paths


def seed0_reports(out: Path, sweep: Path, tmp: Path, test_set: Path) -> list[Path]:
    """Seed 0's sweep and every variants row (the committed ones), each as its own one-baseline report."""
    paths = report(out / "sweep", [sweep])
    for row in sorted(p.name for p in ON_TOP.iterdir() if (p / "results.csv").exists()):
        names = {f.name[: -len("_scores.csv")] for f in (ON_TOP / row).glob("*_k*_scores.csv")
                 if not f.name.endswith("_ensemble_scores.csv")}
        mine = {n: (f"generalise/clustering_on_top/{row}/{n}", f"generalise/clustering_on_top/{row}/results.csv")
                for n in sorted(names)}
        wd = seed0_workdir(tmp / f"seed0_v_{row}", mine, test_set)
        paths += report(out / "variants" / row, [wd])
    return paths


def _test_set(tmp: Path) -> Path:
    """The wide protocol's test_set.json of configs/cpu_real_unseen.py (the same split for every seed)."""
    cfg = experiment_config(load_config(ROOT / "configs" / "cpu_real_unseen.py"))
    prepare_data(cfg, tmp, progress=False)
    return tmp / layout.TEST_SET


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default=str(REPLICATED / "nested"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="the replicated trainings to combine")
    ap.add_argument("--seed0", default=str(REPLICATED / "seed0"), help="where seed 0's own run-level tables go")
    a = ap.parse_args()
    out = Path(a.output)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        test_set = _test_set(tmp / "split")
        seed0 = seed0_workdir(tmp / "seed0", SEED0_SWEEP, test_set)
        paths = seed0_reports(Path(a.seed0), seed0, tmp, test_set)
        swept = [s for s in a.seeds if (REPLICATED / f"seed{s}" / "sweep").is_dir()]
        paths += report(out / "paper_sweep", [seed0] + [REPLICATED / f"seed{s}" / "sweep" for s in swept])
        for s in swept:  # each replicated seed's sweep alone, run-level
            paths += report(out / "per_baseline" / f"seed{s}", [REPLICATED / f"seed{s}" / "sweep"])
        for row in ("joint", "decoder"):
            others = [REPLICATED / f"seed{s}" / "variants" / row for s in a.seeds
                      if (REPLICATED / f"seed{s}" / "variants" / row / layout.TEST_SET).exists()]
            if not others:
                continue
            mine = {n: (f"generalise/clustering_on_top/{row}/{n}", f"generalise/clustering_on_top/{row}/results.csv")
                    for n in ("kmc_k100", "ng_k100")}
            base = seed0_workdir(tmp / f"seed0_{row}", mine, test_set)
            paths += report(out / row, [base] + others)
            for wd in others:  # each replicated seed's row alone, run-level (its study.md is the runs' own summary)
                paths += report(out / "per_baseline" / wd.parent.parent.name / row, [wd])
        for path in paths:
            print(path)


if __name__ == "__main__":
    main()
