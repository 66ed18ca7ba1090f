#!/usr/bin/env python
"""The committed comparisons re-read with the run-level intervals (the examples of docs/statistics.md).

- every clustering configuration (4 runs on the one baseline: the conditional claim) and its ensemble
  against docs/figures/generalise/clustering_on_top/baseline_scores.csv, on the wide test set's CT1,
  unknown types and all images; Holm within each group (one family per group), the verdict at the
  design's own claim and, beside it, at the general claim;
- the recipe for unseen types (docs/figures/generalise/winner, 2 trainings) against the cpu_real
  baselines (3 trainings): unpaired;
- the classical reference against those 3 baseline trainings;
- the planner: designs that detect 0.02 on the unknown types (80% power, Bonferroni over a family of 12),
  from the kMC(100) runs' components, with the cpu_real baselines as the between-baseline stand-in and
  with 0 there.

    python scripts/studies/run_level_examples.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

from dng_jax.evaluation import run_level as rl
from dng_jax.evaluation.design_power import components_from_scores, plan_designs, plan_markdown
from dng_jax.evaluation.scores import read_scores

FIGURES = ROOT / "docs" / "figures"
ON_TOP = FIGURES / "generalise" / "clustering_on_top"
CONFIGS = {"kMC(5)": "wide_sweep/kmc_k5", "NG(5)": "wide_sweep/ng_k5", "kMC(50)": "wide_sweep/kmc_k50",
           "NG(50)": "wide_sweep/ng_k50", "kMC(100)": "clustering_on_top/paper/kmc_k100",
           "NG(100)": "clustering_on_top/paper/ng_k100", "kMC(500)": "wide_sweep/kmc_k500",
           "NG(500)": "wide_sweep/ng_k500", "GNG(5)": "wide_sweep/gng_k5"}
KNOWN = "fluorescence"


def _groups() -> dict[str, list[str]]:
    t = read_scores(FIGURES / "cpu_real_baselines" / "test_scores.csv")  # the wide protocol's test images
    return {"CT1": [i for i, c in zip(t.ids, t.types) if c == KNOWN],
            "unknown types": [i for i, c in zip(t.ids, t.types) if c != KNOWN], "all": list(t.ids)}


def _rows(groups):
    base = read_scores(ON_TOP / "baseline_scores.csv")
    for name, stem in CONFIGS.items():
        runs = read_scores(FIGURES / "generalise" / f"{stem}_scores.csv")
        for label, ids in groups.items():
            x = base.select(ids)
            yield name, label, rl.conditional(runs.select(ids).scores, x.scores[0], x.types)
        ens = FIGURES / "generalise" / f"{stem}_ensemble_scores.csv"
        if ens.exists():
            e = read_scores(ens)
            for label, ids in groups.items():
                x = base.select(ids)
                yield f"{name} ensemble", label, rl.ensemble(e.select(ids).scores, runs.select(ids).scores[None],
                                                             x.scores, x.types)
    classical = read_scores(ON_TOP / "classical_scores.csv")
    for label, ids in groups.items():
        x = base.select(ids)
        yield "classical (no learning)", label, rl.conditional(classical.select(ids).scores[0], x.scores[0], x.types)


def _print_table(rows) -> None:
    judged = rl.judge([r for _, _, r in rows], [label for _, label, _ in rows])
    print("| row | group | Δ [95%] | df | p | Holm p | verdict (own claim) | general claim |\n"
          "|---|---|---|---:|---:|---:|---|---|")
    for (name, label, r), (p_holm, v) in zip(rows, judged):
        general = rl.verdict(r, p_holm, rl.GENERAL)
        print(f"| {name} | {label} | {r} | {r.df:.1f} | {r.p:.2g} | {p_holm:.2g} | {v.word} {v.mark} | "
              f"{general.word} |")


def main() -> None:
    groups = _groups()
    rows = list(_rows(groups))
    _print_table(rows)
    trainings = read_scores(FIGURES / "cpu_real_baselines" / "test_scores.csv")
    winner = read_scores(FIGURES / "generalise" / "winner" / "test_scores.csv")
    classical = read_scores(ON_TOP / "classical_scores.csv")
    print("\n| comparison | group | Δ [95%] | df | p | design |\n|---|---|---|---:|---:|---|")
    for label, ids in groups.items():
        t, w = trainings.select(ids), winner.select(ids)
        r = rl.unpaired(w.scores, t.scores, t.types)
        print(f"| recipe for unseen types vs cpu_real baselines | {label} | {r} | {r.df:.1f} | {r.p:.2g} | "
              f"{r.design} |")
        r = rl.against_reference(t.scores, classical.select(ids).scores[0], t.types)
        print(f"| cpu_real baselines vs classical | {label} | {r} | {r.df:.1f} | {r.p:.2g} | {r.design} |")
    ids = groups["unknown types"]
    c = components_from_scores(read_scores(ON_TOP / "paper" / "kmc_k100_scores.csv"),
                               read_scores(ON_TOP / "baseline_scores.csv"), ids, trainings)
    print(f"\ncomponents (unknown types, kMC(100); between-baseline {c.source}): {c}\n")
    zero = c._replace(between_baseline=0.0, image=c.image + c.baseline_image, baseline_image=0.0, source="0")
    for between in (c, zero):  # with none, the image level seen on the one baseline is all image level
        print(f"general claim, between-baseline variance {between.source}:")
        print(plan_markdown(plan_designs(between, 0.02, 12, baselines=(2, 3, 4, 6, 8, 12), runs=(1, 2, 4, 8)), 0.02))
    print("conditional claim (one baseline):")
    print(plan_markdown(plan_designs(c, 0.02, 12, claim=rl.CONDITIONAL, runs=(2, 4, 8, 16, 32)), 0.02))


if __name__ == "__main__":
    main()
