#!/usr/bin/env python
"""Which recipe generalises to unseen cell types? Trainings scored on the *validation* images only.

Each ``--row NAME:FIELD=VALUE,...`` is a training of the base config (``--config``, default
configs/cpu_real.py) with the ``--set`` overrides of every row and then the row's own, for each of
``--seeds`` (train.seed 0, 1, ...). Every training is scored with the config's watershed, with and without
test-time augmentation, on the wide protocol's validation images: CT1's and the other types' validation
halves (the test images are never looked at). Every row is paired with the first (the base) on the same
images, with the two-level interval (seeds, then images within cell types), the permutation p and Holm's
adjustment over the table (dng_jax.evaluation.statistics). Resumable: rerun the same command.

``--score-on choosing`` scores only the choosing pool (CT1's validation images and the half of each other
type's that a self-training teacher pool leaves out, dng_jax.data.partition.Splits.choosing): the rows that
pseudo-label the teacher pool (train.pseudo_label_images=teacher_pool) are then chosen on images none of
them trained on. Its scores go to NAME/scores_choosing_tta<0|1>.csv and its tables to ablation_choosing.csv
and ablation_choosing.md, beside the validation ones.

  WORKDIR/NAME/seed<s>/            the training (checkpoints, metrics.csv)
  WORKDIR/NAME/scores_tta<0|1>.csv one row per seed, one column per validation image
  WORKDIR/ablation.csv             per row, TTA and group: MAP, the difference to the base with its interval
  WORKDIR/ablation.md              the same as Markdown, and the MAP per cell type; the classical reference

    python scripts/studies/ablate_generalisation.py --workdir runs/generalise --set train.epochs=20 \\
        --row base: --row polarity:model.input_polarity=grey_bright_nuclei
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path
from typing import NamedTuple

from dng_jax.config import apply_overrides, experiment_config, load_config, parse_overrides, parse_row
from dng_jax.data.dsb2018 import SampleCache
from dng_jax.data.partition import open_data
from dng_jax.evaluation.evaluator import SegmentationEvaluator, score_predictions
from dng_jax.evaluation.scores import ScoreTable, read_scores, write_scores
from dng_jax.evaluation.statistics import paired_comparison, verdict, with_holm
from dng_jax.io.atomic import atomic_write_text
from dng_jax.segmentation.checkpointing import load_variables
from dng_jax.segmentation.classical import classical_instances
from dng_jax.segmentation.trainer import train_and_evaluate


#: ``--score-on``: the images scored, and the prefix of each row's score files.
SCORE_ON = {"val": "scores", "choosing": "scores_choosing"}


def row_scores(name: str, config, seeds: int, rdir: Path, cache, val, types, tta: bool,
               prefix: str = "scores") -> ScoreTable:
    """The row's per-image validation scores, one row per seed (trained / scored once, then read)."""
    path = rdir / f"{prefix}_tta{int(tta)}.csv"
    if path.exists():
        return read_scores(path)
    per_seed = []
    for s in range(seeds):
        cfg = experiment_config(apply_overrides(config.copy_and_resolve_references(), {"train.seed": s}))
        t0 = time.time()
        train_and_evaluate(cfg, rdir / f"seed{s}", evaluate=False, progress=False)
        variables, model, _ = load_variables(rdir / f"seed{s}")
        evaluator = SegmentationEvaluator.from_config(cfg)._replace(tta=tta)
        res = evaluator(variables, model, cache, val, known_type=cfg.data.known_type)
        per_seed.append({k: v["score"] for k, v in res.per_image.items()})
        print(f"{name} seed {s} tta={tta}: {time.time() - t0:.0f} s", flush=True)
    table = ScoreTable.from_per_image([str(s) for s in range(seeds)], per_seed, types, ids=list(types))
    write_scores(path, table)
    return table


class Images(NamedTuple):
    """The images the rows are scored on (``--score-on``): cell type -> ids, their order, and the groups."""

    val: dict[str, list[str]]
    order: list[str]
    types: dict[str, str]  # id -> cell type
    groups: dict[str, list[str]]  # CT1, unknown types, all
    what: str  # how the tables name them


def scored_images(splits, manifest, score_on: str) -> Images:
    """Every validation image (``val``) or only the choosing pool (``choosing``), in the splits' type order."""
    val = splits.val if score_on == "val" else splits.choosing
    order = [i for t in splits.cell_types() for i in val.get(t, [])]
    known = list(val.get(splits.known_type, []))
    unknown = [i for t, ids in sorted(val.items()) if t != splits.known_type for i in ids]
    what = "validation images" if score_on == "val" else "choosing pool (validation images outside the teacher pool)"
    return Images(val, order, {i: manifest[i] for i in order}, {"CT1": known, "unknown types": unknown, "all": order},
                  what)


def compare_rows(tables, cls: ScoreTable, rows, groups, n_boot: int):
    """``(cells, comparisons)``: every row (and the classical reference) against the base row, per TTA
    setting and group; one Holm family."""
    cells, flat = [], []
    base_name = rows[0][0]
    candidates = [("classical", cls)] + [(name, None) for name, _ in rows[1:]]
    for tta in (False, True):
        b = tables[(base_name, tta)]
        for name, fixed in candidates:
            other = fixed if fixed is not None else tables[(name, tta)]
            for g, ids in groups.items():
                x, y = b.select(ids), other.select(ids)
                flat.append(paired_comparison(x.scores, y.scores, x.types, n_boot=n_boot))
                cells.append((name, tta, g))
    return cells, with_holm(flat)


def ablation_csv(cells, comparisons, changes) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["row", "changes", "tta", "group", "n", "runs", "map_base", "map", "diff", "low", "high", "p_holm",
                "verdict"])
    for (name, tta, g), c in zip(cells, comparisons):
        w.writerow([name, changes.get(name, "no learning"), int(tta), g, c.n, c.runs_b, f"{c.mean_a:.4f}",
                    f"{c.mean_b:.4f}", f"{c.diff.estimate:+.4f}", f"{c.diff.low:+.4f}", f"{c.diff.high:+.4f}",
                    f"{c.p_holm:.4f}", verdict(c)])
    return out.getvalue()


def ablation_markdown(images: Images, splits, tables, cls: ScoreTable, rows, by, changes, seeds: int,
                      per_type_of: str) -> str:
    """The table of MAPs and differences to the base row, then the MAP per cell type."""
    groups, val = images.groups, images.val
    base_name = rows[0][0]
    md = [f"{images.what[0].upper() + images.what[1:]}: {len(groups['CT1'])} CT1, {len(groups['unknown types'])} of "
          f"the other types; {seeds} seed(s) per row; differences to `{base_name}` with 95% two-level intervals "
          f"(seeds, images within types), Holm over the table.", "",
          "| row | change | TTA | CT1 | Δ CT1 | unknown types | Δ unknown |", "|---|---|---|---|---|---|---|"]
    for tta in (False, True):
        for name in [base_name, "classical"] + [n for n, _ in rows[1:]]:
            t = cls if name == "classical" else tables[(name, tta)]
            maps = [t.select(groups[g]).scores.mean() for g in ("CT1", "unknown types")]
            deltas = ["-" if name == base_name else
                      f"{by[(name, tta, g)].diff.estimate:+.3f} [{by[(name, tta, g)].diff.low:+.3f}, "
                      f"{by[(name, tta, g)].diff.high:+.3f}]" for g in ("CT1", "unknown types")]
            md.append(f"| {name} | {changes.get(name, 'no learning')} | {'yes' if tta else 'no'} | {maps[0]:.3f} | "
                      f"{deltas[0]} | {maps[1]:.3f} | {deltas[1]} |")
    ctypes = [t for t in splits.cell_types() if val.get(t)]
    md += ["", f"MAP per cell type ({per_type_of}; seeds averaged):", "",
           "| row | TTA | " + " | ".join(f"{t} (n={len(val[t])})" for t in ctypes) + " |",
           "|---|---|" + "---|" * len(ctypes)]
    for tta in (False, True):
        for name in [base_name, "classical"] + [n for n, _ in rows[1:]]:
            t = cls if name == "classical" else tables[(name, tta)]
            md.append(f"| {name} | {'yes' if tta else 'no'} | " + " | ".join(
                f"{t.select(val[ct]).scores.mean():.3f}" for ct in ctypes) + " |")
    return "\n".join(md) + "\n"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[2] / "configs" / "cpu_real.py"))
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--set", default="", help="overrides of every row: FIELD=VALUE,...")
    ap.add_argument("--row", action="append", required=True, help="NAME:FIELD=VALUE,... (the first is the base)")
    ap.add_argument("--seeds", type=int, default=1, help="trainings per row (train.seed 0..N-1)")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--score-on", choices=tuple(SCORE_ON), default="val",
                    help="val: every validation image; choosing: only those outside the self-training teacher pool")
    return ap


def main() -> None:
    ap = _parser()
    a = ap.parse_args()
    workdir = Path(a.workdir)
    common = parse_overrides(a.set)
    rows = [parse_row(spec) for spec in a.row]
    if any(name == "classical" for name, _ in rows):
        ap.error("--row classical: the tables call the classical reference so; name the row otherwise")
    base = experiment_config(apply_overrides(load_config(a.config), common))
    source, manifest, splits = open_data(base.data, progress=False)
    images = scored_images(splits, manifest, a.score_on)
    cache = SampleCache(source, images.order)
    classical = score_predictions(lambda im: classical_instances(im, base.classical), cache, images.val,
                                  known_type=base.data.known_type)
    cls = ScoreTable.from_per_image(["classical"], [{k: v["score"] for k, v in classical.per_image.items()}],
                                    images.types, ids=images.order)
    print(f"{images.what}: {len(images.groups['CT1'])} CT1, {len(images.groups['unknown types'])} of the other types",
          flush=True)
    tables = {}
    for name, overrides in rows:
        config = apply_overrides(load_config(a.config), {**common, **overrides})
        for tta in (False, True):
            tables[(name, tta)] = row_scores(name, config, a.seeds, workdir / name, cache, images.val, images.types,
                                             tta, SCORE_ON[a.score_on])
    cells, comparisons = compare_rows(tables, cls, rows, images.groups, a.n_boot)
    changes = {name: ", ".join(f"{k}={v}" for k, v in o.items()) or "-" for name, o in rows}
    suffix = "" if a.score_on == "val" else "_choosing"
    atomic_write_text(workdir / f"ablation{suffix}.csv", ablation_csv(cells, comparisons, changes))
    text = ablation_markdown(images, splits, tables, cls, rows, dict(zip(cells, comparisons)), changes, a.seeds,
                             "validation" if a.score_on == "val" else "choosing pool")
    atomic_write_text(workdir / f"ablation{suffix}.md", text)
    print(text)


if __name__ == "__main__":
    main()
