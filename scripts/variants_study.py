"""The deep-clustering variants study: does any variant lift the unknown-type MAP above the baseline
without lowering CT1? And does NG give more stable clusterings than kMC (paper Fig. 8)?

Each ``--row NAME:FIELD=VALUE,...`` is one sweep (``python -m dng_jax.sweep``) in ``WORKDIR/NAME``: the
base config (``--config``) with the study's settings (``STUDY``, then ``--set``), then the row's own
overrides, on the trained baseline ``--checkpoint``. Every row scores the same test images with the same
baseline and the same clustering images; rows that change only ``retrain.*`` / ``sweep.*`` fields of
the configurations (``STAGE3_FIELDS``) start from a copy of the first row's baseline scores, classical
reference and clustering data instead of computing them again. Rerun the same command to resume (each sweep resumes where it stopped).

Written to WORKDIR:

  study.csv / study.md   per row and configuration (and its ensemble): the MAPs and the paired difference
                         to the baseline (CT1 / without CT1 / all) with bootstrap intervals
  study.png              the differences with their intervals, CT1 beside the unknown types
  stability.csv / .md    std over seeds of the normalised entropy of the cluster sizes, kMC and NG at
  stability.png          every --stability-ks, with bootstrap intervals over seeds (paper Fig. 8)

    python scripts/variants_study.py --workdir runs/variants --checkpoint runs/baseline_cpu_real
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not another install

import jax  # noqa: E402

from dng_jax.clustering.methods import build_method, method_keys, run_method  # noqa: E402
from dng_jax.config import apply_overrides, experiment_config, load_config, parse_overrides  # noqa: E402
from dng_jax.evaluation.statistics import Interval  # noqa: E402
from dng_jax.experiment.sweep import run_sweep  # noqa: E402
from dng_jax.io.atomic import atomic_write_text  # noqa: E402

#: What every row shares (before --set): both methods at one k, 2 seeds in one chunk, each
#: configuration's ensemble scored too; a small t-SNE (Fig. 2 is not what the study is about).
STUDY = ("sweep.methods=('kmc', 'ng'),sweep.ks=(100,),sweep.seeds=2,sweep.seeds_per_chunk=2,sweep.ensemble=-1,"
         "report.tsne_points=300")

#: The rows: the paper's step and each variant alone (combinations: add --row, e.g.
#: ``--row frozen_bn_decoder:retrain.batch_norm=frozen,retrain.decoder_epochs=2``). Each row is
#: finished before the next starts; a stopped study resumes with the same command.
DEFAULT_ROWS = [
    "paper:",
    "frozen_bn:retrain.batch_norm=frozen",
    "decoder:retrain.decoder_epochs=2",
    "adabn:retrain.batch_norm=adabn",
    "joint:retrain.segmentation_weight=1.0",
    "rounds:retrain.rounds=2,sweep.methods=('kmc',)",  # kMC only: two rounds cost twice the retraining
]

SHARED_STAGES = ("baseline", "classical", "cluster_data", "test_set.json")
#: Fields that change only the configurations (stage 3), not the stages a row copies from the first.
STAGE3_FIELDS = ("retrain.", "sweep.ensemble", "sweep.methods", "sweep.ks", "sweep.seeds")
GROUPS = ("CT1", "without CT1", "all")


def row_config(base: Path, common: dict, overrides: dict, checkpoint: str):
    config = apply_overrides(load_config(base), common)
    apply_overrides(config, overrides)
    config.sweep.checkpoint = checkpoint
    return config


def seed_shared_stages(first: Path, target: Path) -> None:
    """Copy the first row's finished baseline / classical / clustering-data stages into a new row."""
    for name in SHARED_STAGES:
        src, dst = first / name, target / name
        if dst.exists() or not src.exists() or (src.is_dir() and not (src / "done.json").exists()):
            continue
        target.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst.with_name(dst.name + ".copying"), dirs_exist_ok=True)
            dst.with_name(dst.name + ".copying").rename(dst)
        else:
            shutil.copy2(src, dst)


def row_results(row: str, rdir: Path) -> list[dict]:
    """The row's configurations (and ensembles) against the baseline, from the sweep's differences.csv."""
    entries: dict[str, dict] = {}
    with open(rdir / "differences.csv", newline="") as f:
        reader = csv.DictReader(f)
        if not {"p_holm", "verdict"} <= set(reader.fieldnames or ()):
            raise SystemExit(f"error: {rdir / 'differences.csv'} has no Holm verdicts (an older report): "
                             f"remake it with python -m dng_jax.report --workdir {rdir}")
        for r in reader:
            if r["method"] == "classical":
                continue
            e = entries.setdefault(r["name"], {"row": row, "configuration": r["name"], "baseline": {}, "n": {}})
            g = r["group"]
            e[f"map {g}"] = float(r["map"])
            e[f"diff {g}"] = Interval(float(r["diff"]), float(r["low"]), float(r["high"]))
            e[f"improved {g}"] = float(r["improved"])
            e[f"holm {g}"], e[f"verdict {g}"] = float(r["p_holm"]), r["verdict"]
            e["baseline"][g], e["n"][g] = float(r["map_baseline"]), int(r["n"])
    return list(entries.values())


def row_minutes(rdir: Path) -> float:
    """Compute time of a row's sweep, all its runs together (its timings.csv)."""
    with open(rdir / "timings.csv", newline="") as f:
        return sum(float(r["seconds"]) for r in csv.DictReader(f)) / 60


def verdict(entry: dict) -> str:
    """The row's own verdicts (its sweep's differences.csv: the two-level interval on one side of 0 *and*
    Holm p < 0.05 over that table's comparisons). ✓: the unknown types are better and CT1 is not worse."""
    unknown, ct1 = entry["verdict without CT1"], entry["verdict CT1"]
    if unknown == "better":
        return "✓" if ct1 != "worse" else "unknown ✓, CT1 ✗"
    return "unknown ✗" if unknown == "worse" else "unknown ~"


def study_markdown(entries: list[dict], minutes: dict[str, float]) -> str:
    first = entries[0]
    base = " / ".join(f"{first['baseline'][g]:.3f}" for g in GROUPS)
    n = " / ".join(str(first["n"][g]) for g in GROUPS)
    lines = [f"Baseline MAP (CT1 / without CT1 / all): {base}; images {n}. Δ = paired difference to the baseline, "
             f"mean over the images of the seeds' mean, with its two-level bootstrap interval (runs, then images "
             f"within cell types). verdict: each row's own table (its table1.md), where a difference counts "
             f"when its interval excludes 0 and its Holm-adjusted p < 0.05; ~ = not established.", "",
             "| row | configuration | CT1 | without CT1 | all | Δ CT1 | Δ without CT1 | Δ all | verdict | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        cells = [f"{e[f'map {g}']:.3f}" for g in GROUPS] + [_signed(e[f"diff {g}"]) for g in GROUPS]
        lines.append(f"| {e['row']} | {e['configuration']} | " + " | ".join(cells) +
                     f" | {verdict(e)} | {minutes.get(e['row'], float('nan')):.0f} |")
    return "\n".join(lines) + "\n"


def _signed(iv: Interval) -> str:
    return f"{iv.estimate:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}]"


def write_study(workdir: Path, entries: list[dict], minutes: dict[str, float]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "configuration"] + [f"{c} {g}" for g in GROUPS
                                           for c in ("map", "diff", "low", "high", "improved", "p_holm", "verdict")])
    for e in entries:
        w.writerow([e["row"], e["configuration"]] + [
            v for g in GROUPS for v in (*(f"{x:.6f}" for x in (e[f"map {g}"], *e[f"diff {g}"], e[f"improved {g}"])),
                                        f"{e[f'holm {g}']:.4g}", e[f"verdict {g}"])])
    atomic_write_text(workdir / "study.csv", buf.getvalue())
    atomic_write_text(workdir / "study.md", study_markdown(entries, minutes))
    plot_study(entries, workdir / "study.png")


def plot_study(entries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{e['row']}: {e['configuration']}" for e in entries]
    y = np.arange(len(entries))[::-1]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(entries) + 1.6), sharey=True)
    for ax, g in zip(axes, ("CT1", "without CT1")):
        ivs = [e[f"diff {g}"] for e in entries]
        est = np.array([iv.estimate for iv in ivs])
        err = np.array([[iv.estimate - iv.low for iv in ivs], [iv.high - iv.estimate for iv in ivs]])
        colours = [{"better": "tab:green", "worse": "tab:red"}.get(e[f"verdict {g}"], "tab:grey") for e in entries]
        for i, colour in enumerate(colours):
            ax.errorbar(est[i], y[i], xerr=err[:, i : i + 1], fmt="none", ecolor=colour, capsize=2, lw=1)
        ax.scatter(est, y, c=colours, s=14, zorder=3)
        ax.axvline(0, color="k", lw=0.8, ls="--")
        ax.set_title(f"MAP − baseline, {g} (95% interval; colour: Holm verdict)", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(labels, fontsize=8)
    fig.tight_layout()
    fig.savefig(path.with_name(path.name + ".tmp.png"), dpi=120)
    plt.close(fig)
    path.with_name(path.name + ".tmp.png").replace(path)


# ------------------------------------------------------------------------------------- stability


def bootstrap_std(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Std over seeds (ddof=1) of ``n_boot`` resamples of the seeds."""
    idx = rng.integers(0, len(values), (n_boot, len(values)))
    return values[idx].std(axis=1, ddof=1)


def stability(workdir: Path, cfg, latent: np.ndarray, ks: list[int], seeds: int, n_boot: int, level: float) -> str:
    """NG vs kMC: std over ``seeds`` of the normalised entropy at every k, with bootstrap intervals."""
    cache = workdir / "stability.json"
    done = json.loads(cache.read_text()) if cache.exists() else {}
    for m in ("kmc", "ng"):
        for k in ks:
            key = f"{m}_k{k}"
            if key in done and len(done[key]) == seeds:
                continue
            _, method = build_method(m, k, cfg.clustering)
            res = run_method(method, method_keys(jax.random.key(cfg.sweep.seed), m, k, seeds), latent)
            done[key] = [float(v) for v in res.norm_entropy]
            atomic_write_text(cache, json.dumps(done, indent=1) + "\n")
            print(f"stability: {m}({k}) {seeds} seeds: std {np.std(done[key], ddof=1):.4f}", flush=True)
    rng = np.random.default_rng(0)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    rows, lines = [], ["| k | std kMC | std NG | NG − kMC | NG more stable |", "|---|---|---|---|---|"]
    for k in ks:
        kmc, ng = np.asarray(done[f"kmc_k{k}"]), np.asarray(done[f"ng_k{k}"])
        bk, bn = bootstrap_std(kmc, n_boot, rng), bootstrap_std(ng, n_boot, rng)
        sk, sn = Interval(kmc.std(ddof=1), *np.percentile(bk, q)), Interval(ng.std(ddof=1), *np.percentile(bn, q))
        d = Interval(sn.estimate - sk.estimate, *np.percentile(bn - bk, q))
        rows.append((k, sk, sn, d))
        lines.append(f"| {k} | {sk.estimate:.4f} [{sk.low:.4f}, {sk.high:.4f}] | {sn.estimate:.4f} [{sn.low:.4f}, "
                     f"{sn.high:.4f}] | {_signed4(d)} | {'yes' if d.high < 0 else 'no (more variable)' if d.low > 0 else 'not shown'} |")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["k", "std_kmc", "low_kmc", "high_kmc", "std_ng", "low_ng", "high_ng", "diff", "diff_low", "diff_high"])
    for k, sk, sn, d in rows:
        w.writerow([k, *(f"{v:.6f}" for v in (*sk, *sn, *d))])
    atomic_write_text(workdir / "stability.csv", buf.getvalue())
    text = (f"{seeds} seeds per method and k on the study's {latent.shape[0]} clustering vectors; std over seeds of "
            f"the normalised entropy, {level:.0%} bootstrap intervals over seeds.\n\n" + "\n".join(lines) + "\n")
    atomic_write_text(workdir / "stability.md", text)
    plot_stability(rows, workdir / "stability.png")
    return text


def _signed4(iv: Interval) -> str:
    return f"{iv.estimate:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]"


def plot_stability(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    x = np.arange(len(rows))
    for off, idx, label in ((-0.18, 1, "kMC"), (0.18, 2, "NG")):
        ivs = [r[idx] for r in rows]
        ax.bar(x + off, [iv.estimate for iv in ivs], width=0.34, label=label,
               yerr=[[iv.estimate - iv.low for iv in ivs], [iv.high - iv.estimate for iv in ivs]], capsize=3)
    ax.set_xticks(x)
    ax.set_xticklabels([str(r[0]) for r in rows])
    ax.set_xlabel("k")
    ax.set_ylabel("std over seeds of norm. entropy")
    ax.set_title("Stability of the clusterings (Fig. 8) with 95% intervals")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path.with_name(path.name + ".tmp.png"), dpi=120)
    plt.close(fig)
    path.with_name(path.name + ".tmp.png").replace(path)


# ------------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/cpu_real.py")
    p.add_argument("--checkpoint", required=True, help="the trained baseline: a train work dir, a checkpoint, or "
                   "bundled:<name> for a model shipped in the package (e.g. bundled:cpu_real)")
    p.add_argument("--workdir", default="runs/variants")
    p.add_argument("--set", default="", help="FIELD=VALUE,... for every row, after the study's settings")
    p.add_argument("--row", action="append", help="NAME:FIELD=VALUE,... (default: the study's rows)")
    p.add_argument("--stability-ks", default="5,100",
                   help="k of the stability comparison (default: the study's k and the paper's smallest)")
    p.add_argument("--stability-seeds", type=int, default=48)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    common = {**parse_overrides(STUDY), **parse_overrides(args.set)}
    rows = [r.split(":", 1) for r in (args.row or DEFAULT_ROWS)]
    entries, minutes, first, cfg = [], {}, None, None
    for name, spec in rows:
        overrides = parse_overrides(spec)
        config = row_config(Path(args.config), common, overrides, args.checkpoint)
        cfg = experiment_config(config)
        rdir = workdir / name
        if first is not None and all(k.startswith(STAGE3_FIELDS) for k in overrides):
            seed_shared_stages(first, rdir)
        print(f"== {name}: {spec or '(the paper)'}", flush=True)
        run_sweep(config, rdir, progress=not args.no_progress)
        first = first or rdir
        entries += row_results(name, rdir)
        minutes[name] = row_minutes(rdir)
        write_study(workdir, entries, minutes)
    print(study_markdown(entries, minutes))
    latent = np.load(first / "cluster_data" / "latent.npy")
    ks = [int(k) for k in args.stability_ks.split(",") if k]
    print(stability(workdir, cfg, latent, ks, args.stability_seeds, cfg.eval.n_boot, cfg.eval.level))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
