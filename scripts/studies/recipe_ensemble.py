#!/usr/bin/env python
"""The ensemble of the recipe's three trainings (configs/cpu_real_unseen.py, seeds 0-2: the mean softmax before
the watershed, `python -m dng_jax.predict --checkpoint A --checkpoint B --checkpoint C`), with and without TTA,
against each single training and the classical reference, on the wide protocol's validation images first
(28 CT1 + 61 of the other types), then its test images (55 + 62).

Nothing is chosen here: the ensemble (the three trainings, equal weights, the config's watershed) and its two
views (TTA off / on) were fixed before any image was scored, and the validation images are scored and written
before the test images are looked at (`--split val`, then `--split test`). The networks are the float16 weights
of each training (seed 0: bundled:cpu_real, the shipped model; seeds 1 and 2: docs/figures/replicated/seed<s>/
weights/), so the single trainings are rescored here from the same weights the ensemble averages. Per image,
each network's softmax is computed once with and once without TTA; the ensembles average them
(dng_jax.segmentation.ensemble.mean_softmax, what predict does), and the eight softmaxes go through the
watershed and the metric. Scores are cached per image in --cache (a rerun continues where it stopped).

Written to --output (docs/figures/replicated/ensemble): <split>_scores.csv and tta/<split>_scores.csv (runs
seed0, seed1, seed2, ensemble; split = validation or test), <split>_against_classical.md / .csv (the ensemble
against the reference: one predictor, so a claim about these networks on these images), <split>_against_singles
.md / .csv (the ensemble against each training, and against the three as trainings of the recipe),
<split>_summary.md; `--timing` writes timing.json (seconds per image of one network and of the ensemble, each
with and without TTA, measured side by side, interleaved, in one process).

    nice -n 5 python scripts/studies/recipe_ensemble.py --split val
    nice -n 5 python scripts/studies/recipe_ensemble.py --split test
    nice -n 5 python scripts/studies/recipe_ensemble.py --timing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from dng_jax.data.partition import KNOWN_TYPE, open_data
from dng_jax.evaluation.networks import (PerImage, compare_networks, difference, image_groups, networks_csv,
                                         networks_markdown, read_per_image)
from dng_jax.evaluation.run_level import RunLevel, Verdict, holm_by_family, verdict
from dng_jax.evaluation.run_level import ensemble as ensemble_interval
from dng_jax.evaluation.scores import ScoreTable, write_scores
from dng_jax.evaluation.scoring_pool import score_probs
from dng_jax.evaluation.statistics import MIN_N, MIN_PER_STRATUM, TOO_FEW
from dng_jax.io.atomic import atomic_write_text
from dng_jax.segmentation.ensemble import load_networks, make_ensemble_predictor, mean_softmax
from dng_jax.segmentation.inference import predict_probs

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "docs" / "figures"
TRAININGS = {"seed0": "bundled:cpu_real",
             "seed1": str(FIGURES / "replicated" / "seed1" / "weights" / "cpu_real_unseen_seed1.npz"),
             "seed2": str(FIGURES / "replicated" / "seed2" / "weights" / "cpu_real_unseen_seed2.npz")}
RUNS = (*TRAININGS, "ensemble")
CLASSICAL = FIGURES / "generalise" / "clustering_on_top" / "classical_scores.csv"  # validation and test images
SPLITS = {"val": "validation", "test": "test"}

#: image id -> (cell type, {run or run_tta: score})
Scored = dict[str, tuple[str, dict[str, float]]]


def ordered(images: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(type, id) of a split: the known type first, then the others by name (the evaluator's order)."""
    out = [(KNOWN_TYPE, i) for i in images.get(KNOWN_TYPE, [])]
    return out + [(t, i) for t in sorted(images) if t != KNOWN_TYPE for i in images[t]]


def score_image(networks, sample, tile_size: int, post) -> dict[str, float]:
    """The image's score for each training and the ensemble, without and with TTA (``<run>_tta``)."""
    out = {}
    for tta in (False, True):
        probs = [predict_probs(n.variables, n.model, sample.image, tile_size=tile_size, tta=tta) for n in networks]
        for run, p in zip(RUNS, [*probs, mean_softmax(probs)]):
            out[run + ("_tta" if tta else "")] = score_probs(sample.labels, p, post)[0]
    return out


def read_cache(path: Path) -> Scored:
    """The images scored so far (a torn last line, from a killed run, is scored again)."""
    scored: Scored = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            scored[row["id"]] = (row["type"], row["scores"])
    return scored


def score_split(networks, source, images: list[tuple[str, str]], cache: Path) -> Scored:
    """Every image of ``images`` scored (continuing ``cache``, one JSON line per image)."""
    scored = read_cache(cache)
    config = networks[0].config
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache, "a") as f:
        for n, (t, sid) in enumerate(images):
            if sid in scored:
                continue
            start = time.perf_counter()
            scores = score_image(networks, source.load(sid), config.eval.tile_size, config.postprocess)
            f.write(json.dumps({"id": sid, "type": t, "scores": scores}) + "\n")
            f.flush()
            scored[sid] = (t, scores)
            print(f"{n + 1}/{len(images)} {t} {sid[:12]}: ensemble {scores['ensemble']:.3f}, TTA "
                  f"{scores['ensemble_tta']:.3f} ({time.perf_counter() - start:.1f} s)", flush=True)
    return {sid: scored[sid] for _, sid in images}


def table(scored: Scored, suffix: str) -> ScoreTable:
    ids = list(scored)
    return ScoreTable.from_per_image(RUNS, [{i: scored[i][1][r + suffix] for i in ids} for r in RUNS],
                                     {i: scored[i][0] for i in ids}, ids=ids)


def per_image(scored: Scored, runs: list[str]) -> PerImage:
    return {i: (t, np.array([s[r] for r in runs])) for i, (t, s) in scored.items()}


def judged(result: RunLevel, p_holm: float, types: np.ndarray) -> Verdict:
    """:func:`verdict`, or none for fewer than MIN_N images or a type of fewer than MIN_PER_STRATUM."""
    if len(types) < MIN_N or np.unique(types, return_counts=True)[1].min() < MIN_PER_STRATUM:
        return Verdict("no verdict", "", TOO_FEW)
    return verdict(result, p_holm)


def against_singles(scored: Scored) -> list[dict]:
    """The ensemble minus each training (one network against one: these networks on these images) and minus
    the three as trainings of the recipe (their spread is the run level; the ensemble is held fixed), per
    group of images, without and with TTA; Holm within each (view, group) over the four rows."""
    ids = list(scored)
    types = np.array([scored[i][0] for i in ids])
    rows = []
    for suffix, view in (("", "no TTA"), ("_tta", "TTA")):
        runs = {r: np.array([[scored[i][1][r + suffix] for i in ids]]) for r in RUNS}
        sides = {**{r: runs[r] for r in TRAININGS}, "3 trainings": np.concatenate([runs[r] for r in TRAININGS])}
        for g, mask in image_groups(types).items():
            for name, side in sides.items():
                r = difference(runs["ensemble"][:, mask], side[:, mask], types[mask], 0.95)
                rows.append({"view": view, "group": g, "n": int(mask.sum()), "single": name,
                             "map_single": float(side[:, mask].mean()),
                             "map_ensemble": float(runs["ensemble"][:, mask].mean()), "result": r,
                             "types": types[mask],
                             "improved": float(np.mean(runs["ensemble"][0, mask] - side[:, mask].mean(0) > 1e-9))})
    adjusted = holm_by_family([row["result"].p for row in rows], [(row["view"], row["group"]) for row in rows])
    for row, h in zip(rows, adjusted):
        row["p_holm"], row["verdict"] = float(h), judged(row["result"], float(h), row.pop("types"))
    return rows


def singles_markdown(rows: list[dict], n_images: int) -> str:
    lines = [f"{n_images} images; each cell: that training's MAP → the ensemble minus it. Ensemble − one training: "
             f"the ensemble against that network (one against one: "
             f"these networks on these images); ensemble − 3 trainings: against a training of the recipe (the three's "
             f"spread is the run level, the ensemble held fixed). 95% run-level intervals, Holm within each view "
             f"and group over the four columns; ✓ / ✗ better / worse, – no verdict (fewer than {MIN_N} images or a "
             f"type of fewer than {MIN_PER_STRATUM})", ""]
    singles = list(dict.fromkeys(r["single"] for r in rows))
    for view in dict.fromkeys(r["view"] for r in rows):
        lines += [f"**{view}**", "", "| images | n | ensemble | " + " | ".join(f"ensemble − {s}" for s in singles)
                  + " |", "|---|---|---|" + "---|" * len(singles)]
        for g in dict.fromkeys(r["group"] for r in rows):
            cells = {r["single"]: r for r in rows if r["view"] == view and r["group"] == g}
            first = next(iter(cells.values()))
            diffs = [f"{c['map_single']:.3f} → {c['result']}{_mark(c['verdict'])}, Holm p {c['p_holm']:.2g}"
                     for c in cells.values()]
            lines.append(f"| {g} | {first['n']} | {first['map_ensemble']:.3f} | " + " | ".join(diffs) + " |")
        lines.append("")
    return "\n".join(lines)


def _mark(v: Verdict) -> str:
    mark = v.mark or ("–" if v.word == "no verdict" else "")
    return f" {mark}" if mark else ""


def singles_csv(rows: list[dict]) -> str:
    out = ["view,group,n,single,map_single,map_ensemble,diff,low,high,se,df,claim,p,p_holm,verdict,improved"]
    for r in rows:
        x = r["result"]
        claim = "these networks on these images" if r["single"] != "3 trainings" else \
            "a training of the recipe, the ensemble held fixed"
        out.append(",".join([r["view"], f'"{r["group"]}"', str(r["n"]), f'"{r["single"]}"', f"{r['map_single']:.4f}",
                             f"{r['map_ensemble']:.4f}", f"{x.estimate:.4f}", f"{x.low:.4f}", f"{x.high:.4f}",
                             f"{x.se:.4f}", f"{x.df:.2f}", f'"{claim}"', f"{x.p:.3g}", f"{r['p_holm']:.3g}",
                             r["verdict"].word, f"{r['improved']:.3f}"]))
    return "\n".join(out) + "\n"


def classical_scores(scored: Scored) -> PerImage:
    """The classical reference's committed per-image scores on these images."""
    classical = read_per_image(CLASSICAL)
    missing = [i for i in scored if i not in classical]
    if missing:
        raise SystemExit(f"{CLASSICAL}: no classical score for {len(missing)} image(s), e.g. {missing[0]}")
    return {i: classical[i] for i in scored}


def against_classical(scored: Scored, classical: PerImage):
    """The ensemble (without, with TTA) against the classical reference on the same images: one predictor
    against one, so the interval is over the images (these networks on these images)."""
    return compare_networks({"classical": classical, "ensemble": per_image(scored, ["ensemble"]),
                             "ensemble with TTA": per_image(scored, ["ensemble_tta"])})


def summary_markdown(scored: Scored, classical: PerImage, c, name: str) -> str:
    """MAPs per group (classical, each training, the ensemble; without and with TTA), the ensemble against
    classical with its members' spread as the run level, and issue 36's bar for shipping."""
    ids = list(scored)
    types = np.array([scored[i][0] for i in ids])
    x = np.array([float(classical[i][1][0]) for i in ids])
    score = {r: np.array([scored[i][1][r] for i in ids]) for r in scored[ids[0]][1]}
    heads = [*RUNS, *(f"{r} TTA" for r in RUNS)]
    lines = [f"MAP on the {name} images ({len(ids)}); single trainings and the ensemble from the same float16 "
             f"weights", "", "| images | n | classical | " + " | ".join(heads) + " |", "|---|---|---|" + "---|" * len(heads)]
    groups = image_groups(types)
    for g, mask in groups.items():
        maps = [f"{score[r + sfx][mask].mean():.3f}" for sfx in ("", "_tta") for r in RUNS]
        lines.append(f"| {g} | {int(mask.sum())} | {x[mask].mean():.3f} | " + " | ".join(maps) + " |")
    lines += ["", "Ensemble − classical with the members' spread as the run level (dng_jax.evaluation.run_level."
              "ensemble: assumes an ensemble of three other trainings varies like the mean of these three "
              "trainings' scores; a claim about ensembles of this recipe under that assumption):", ""]
    for g in ("CT1", "without CT1", "all"):
        mask = groups[g]
        for sfx, view in (("", "no TTA"), ("_tta", "TTA")):
            members = np.stack([score[r + sfx][mask] for r in TRAININGS])
            r = ensemble_interval(score["ensemble" + sfx][mask][None], members[None], x[mask][None], types[mask])
            lines.append(f"- {g}, {view}: {r} (se {float(r.se):.3f})")
    bar = ["", *bar_lines(c)] if name == "test" else []  # the bar is set on the test images
    return "\n".join(lines + bar) + "\n"


def bar_lines(c) -> list[str]:
    """Issue 36's bar: the unknown types ≥ 0.05 above classical with the interval above 0, and CT1 ≥ 0.60."""
    out = ["Issue 36's bar for shipping (test images): without CT1 ≥ 0.05 above classical with the interval above 0, "
           "and CT1 ≥ 0.60:", ""]
    for b in c.names[1:]:
        cell = c.compared[("without CT1", b)].result
        ct1 = float(c.runs[b][:, c.groups["CT1"]].mean())
        met = cell.estimate >= 0.05 and cell.low > 0 and ct1 >= 0.60
        out.append(f"- {b}: without CT1 {cell} against classical, CT1 {ct1:.3f}: {'met' if met else 'not met'}")
    return out


def run_split(networks, source, images: list[tuple[str, str]], name: str, out: Path, cache: Path) -> None:
    """Score one split, then write its score tables and comparisons."""
    scored = score_split(networks, source, images, cache / f"{name}_scores.jsonl")
    (out / "tta").mkdir(parents=True, exist_ok=True)
    write_scores(out / f"{name}_scores.csv", table(scored, ""))
    write_scores(out / "tta" / f"{name}_scores.csv", table(scored, "_tta"))
    classical = classical_scores(scored)
    c = against_classical(scored, classical)
    atomic_write_text(out / f"{name}_against_classical.md", networks_markdown(c))
    atomic_write_text(out / f"{name}_against_classical.csv", networks_csv(c))
    rows = against_singles(scored)
    atomic_write_text(out / f"{name}_against_singles.md", singles_markdown(rows, len(scored)))
    atomic_write_text(out / f"{name}_against_singles.csv", singles_csv(rows))
    summary = summary_markdown(scored, classical, c, name)
    atomic_write_text(out / f"{name}_summary.md", summary)
    print(summary, networks_markdown(c), singles_markdown(rows, len(scored)), sep="\n")


def time_predictors(networks, source, ids: list[str]) -> dict:
    """Seconds per image of the predict path (softmax, watershed) of one network and of the ensemble, each
    without and with TTA: every shape compiled first, then per image the four in turn (the order rotating),
    so that all four meet the same load."""
    tile = networks[0].config.eval.tile_size
    predictors = {f"{who}{', TTA' if tta else ''}": make_ensemble_predictor(nets, tile_size=tile, tta=tta)
                  for tta in (False, True) for who, nets in (("one network", networks[:1]),
                                                             (f"ensemble of {len(networks)}", networks))}
    images = [source.load(i).image for i in ids]
    for image in images:
        for predict in predictors.values():
            predict(image)
    wall = {name: [] for name in predictors}
    cpu = {name: [] for name in predictors}
    load_before = os.getloadavg()
    for k, image in enumerate(images):
        names = list(predictors)
        for name in names[k % len(names):] + names[: k % len(names)]:
            w, c = time.perf_counter(), time.process_time()
            predictors[name](image)
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    base = float(np.mean(wall["one network"]))
    sizes = sorted({f"{im.shape[0]}x{im.shape[1]}" for im in images})
    return {"images": len(images), "image_sizes": sizes, "ids": ids,
            "seconds_per_image": {n: round(float(np.mean(v)), 4) for n, v in wall.items()},
            "cpu_seconds_per_image": {n: round(float(np.mean(v)), 4) for n, v in cpu.items()},
            "ratio_to_one_network": {n: round(float(np.mean(v)) / base, 2) for n, v in wall.items()},
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpu": _cpu_name(),
            "cores": os.cpu_count(), "seconds_per_image_each": {n: [round(x, 4) for x in v] for n, v in wall.items()}}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=tuple(SPLITS), help="score this split and write its tables")
    ap.add_argument("--timing", action="store_true", help="time the four predictors on every --timing-every-th "
                                                          "validation image, side by side")
    ap.add_argument("--timing-every", type=int, default=4)
    ap.add_argument("--note", default="", help="what else ran on the machine (written to timing.json)")
    ap.add_argument("--output", default=str(FIGURES / "replicated" / "ensemble"))
    ap.add_argument("--cache", default=str(ROOT / "runs" / "recipe_ensemble"), help="per-image scores so far")
    args = ap.parse_args()
    networks = load_networks(list(TRAININGS.values()))
    source, _, splits = open_data(networks[0].config.data, progress=False)
    out = Path(args.output)
    if args.split:
        images = ordered(splits.val if args.split == "val" else splits.test)
        run_split(networks, source, images, SPLITS[args.split], out, Path(args.cache))
    if args.timing:
        ids = [i for _, i in ordered(splits.val)][:: args.timing_every]
        result = {**time_predictors(networks, source, ids), "note": args.note}
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "timing.json", json.dumps(result, indent=1) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k not in ("ids", "seconds_per_image_each")}, indent=1))


if __name__ == "__main__":
    main()
