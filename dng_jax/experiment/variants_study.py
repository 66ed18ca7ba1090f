"""The deep-clustering variants study: does any variant lift the unknown-type MAP above the baseline
without lowering CT1?

Each row ``NAME:FIELD=VALUE,...`` (:func:`dng_jax.config.parse_row`) is one sweep in ``WORKDIR/NAME``: the
base config with the study's settings (:data:`STUDY`, then the caller's), then the row's own overrides,
on one trained baseline (``sweep.checkpoint``). Every row scores the same test images with the same
baseline and the same clustering images; rows that change only the configurations' fields
(:data:`STAGE3_FIELDS`) start from a copy of the first row's finished baseline, classical reference and
clustering data instead of computing them again. Each sweep resumes where it stopped, so the study does.

The study table (``study.csv`` / ``study.md`` / ``study.png``): per row and configuration (and its
ensemble), the MAPs and the paired difference to the baseline (CT1 / without CT1 / all) with its
interval, and the verdicts of the row's own ``differences.csv`` (interval and Holm-adjusted p).
``python -m dng_jax.variants`` runs it, then :mod:`dng_jax.experiment.stability`.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.figure import Figure

from dng_jax.config import (ExperimentConfig, apply_overrides, experiment_config, load_config, parse_overrides,
                            parse_row)
from dng_jax.errors import ConfigError, DataError
from dng_jax.evaluation.statistics import Interval
from dng_jax.experiment import layout
from dng_jax.experiment.sweep import run_sweep
from dng_jax.io.atomic import atomic_write_bytes, atomic_write_text
from dng_jax.io.stage import MARKER

__all__ = ["STUDY", "DEFAULT_ROWS", "SHARED_STAGES", "STAGE3_FIELDS", "GROUPS", "StudyResult", "row_config",
           "seed_shared_stages", "row_results", "row_minutes", "verdict", "signed", "study_markdown", "study_csv",
           "write_study", "save_png", "plot_study", "row_configs", "run_study"]

log = logging.getLogger("dng_jax.variants")

#: What every row shares (before the caller's settings): both methods at one k, 2 seeds in one chunk, each
#: configuration's ensemble scored too; a small t-SNE (Fig. 2 is not what the study is about).
STUDY = ("sweep.methods=('kmc', 'ng'),sweep.ks=(100,),sweep.seeds=2,sweep.seeds_per_chunk=2,sweep.ensemble=-1,"
         "report.tsne_points=300")

#: The rows: the paper's step and each variant alone (combinations: add a row, e.g.
#: ``frozen_bn_decoder:retrain.batch_norm=frozen,retrain.decoder_epochs=2``). Each row is finished before
#: the next starts; a stopped study resumes with the same command.
DEFAULT_ROWS = (
    "paper:",
    "frozen_bn:retrain.batch_norm=frozen",
    "decoder:retrain.decoder_epochs=2",
    "adabn:retrain.batch_norm=adabn",
    "joint:retrain.segmentation_weight=1.0",
    "rounds:retrain.rounds=2,sweep.methods=('kmc',)",  # kMC only: two rounds cost twice the retraining
)

#: What a row copies from the first row's work dir (stages finished there, and its test images).
SHARED_STAGES = (layout.BASELINE, layout.CLASSICAL, layout.CLUSTER_DATA, layout.TEST_SET)
#: Fields that change only the configurations (stage 3), not the stages a row copies from the first.
STAGE3_FIELDS = ("retrain.", "sweep.ensemble", "sweep.methods", "sweep.ks", "sweep.seeds")
GROUPS = ("CT1", "without CT1", "all")


class StudyResult(NamedTuple):
    entries: list[dict[str, Any]]  # one per row and configuration (:func:`row_results`)
    minutes: dict[str, float]  # row -> compute minutes of its sweep
    first: Path  # the first row's work dir (its clustering data serves the stability comparison)
    config: ExperimentConfig  # the last row's config


def row_config(base, common: Mapping[str, Any], overrides: Mapping[str, Any], checkpoint: str):
    """The ConfigDict of one row: ``base`` (a config file, or a ConfigDict left as it is), then the study's
    ``common`` settings, then the row's own."""
    config = load_config(base) if isinstance(base, (str, Path)) else base.copy_and_resolve_references()
    apply_overrides(config, dict(common))
    apply_overrides(config, dict(overrides))
    config.sweep.checkpoint = checkpoint
    return config


def seed_shared_stages(first: Path, target: Path) -> None:
    """Copy the first row's finished baseline / classical / clustering-data stages into a new row."""
    for name in SHARED_STAGES:
        src, dst = first / name, target / name
        if dst.exists() or not src.exists() or (src.is_dir() and not (src / MARKER).exists()):
            continue
        target.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            partial = dst.with_name(dst.name + ".copying")
            shutil.copytree(src, partial, dirs_exist_ok=True)
            partial.rename(dst)
        else:
            shutil.copy2(src, dst)


def row_results(row: str, rdir: Path) -> list[dict[str, Any]]:
    """The row's configurations (and ensembles) against the baseline, from the sweep's differences.csv."""
    entries: dict[str, dict[str, Any]] = {}
    path = rdir / layout.DIFFERENCES
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not {"p_holm", "verdict", "claim"} <= set(reader.fieldnames or ()):
            raise DataError(f"{path} has no run-level verdicts (an older report): remake it with python -m "
                            f"dng_jax.report --workdir {rdir}")
        for r in reader:
            if r["method"] == "classical":
                continue
            e = entries.setdefault(r["name"], {"row": row, "configuration": r["name"], "baseline": {}, "n": {},
                                               "design": r.get("design", ""), "claim": r.get("claim", "")})
            g = r["group"]
            e[f"map {g}"] = float(r["map"])
            e[f"diff {g}"] = Interval(float(r["diff"]), float(r["low"]), float(r["high"]))
            e[f"improved {g}"] = float(r["improved"])
            e[f"holm {g}"], e[f"verdict {g}"] = float(r["p_holm"]), r["verdict"]
            e["baseline"][g], e["n"][g] = float(r["map_baseline"]), int(r["n"])
    return list(entries.values())


def row_minutes(rdir: Path) -> float:
    """Compute time of a row's sweep, all its runs together (its timings.csv)."""
    with open(rdir / f"{layout.TIMINGS}.csv", newline="") as f:
        return sum(float(r["seconds"]) for r in csv.DictReader(f)) / 60


def verdict(entry: Mapping[str, Any]) -> str:
    """The row's own verdicts (its sweep's differences.csv: the run-level interval on one side of 0 *and*
    Holm p < 0.05 within the group's family). ✓: the unknown types are better and CT1 is not worse."""
    unknown, ct1 = entry["verdict without CT1"], entry["verdict CT1"]
    if unknown == "better":
        return "✓" if ct1 != "worse" else "unknown ✓, CT1 ✗"
    return "unknown ✗" if unknown == "worse" else "unknown ~"


def signed(iv: Interval, digits: int = 3) -> str:
    """``+0.012 [-0.003, +0.027]``."""
    return f"{iv.estimate:+.{digits}f} [{iv.low:+.{digits}f}, {iv.high:+.{digits}f}]"


def study_markdown(entries: Sequence[Mapping[str, Any]], minutes: Mapping[str, float]) -> str:
    first = entries[0]
    base = " / ".join(f"{first['baseline'][g]:.3f}" for g in GROUPS)
    n = " / ".join(str(first["n"][g]) for g in GROUPS)
    lines = [f"Baseline MAP (CT1 / without CT1 / all): {base}; images {n}. Δ = paired difference to the baseline, "
             f"mean over the images of the seeds' mean, with its run-level interval (docs/statistics.md); design = "
             f"baselines × runs per baseline (one baseline: a claim about that trained network). verdict: each "
             f"row's own table (its table1.md), where a difference counts when its interval excludes 0 and its "
             f"Holm-adjusted p < 0.05 within its column; ~ = not established.", "",
             "| row | configuration | design | CT1 | without CT1 | all | Δ CT1 | Δ without CT1 | Δ all | verdict "
             "| minutes |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        cells = [f"{e[f'map {g}']:.3f}" for g in GROUPS] + [signed(e[f"diff {g}"]) for g in GROUPS]
        lines.append(f"| {e['row']} | {e['configuration']} | {e.get('design', '')} | " + " | ".join(cells) +
                     f" | {verdict(e)} | {minutes.get(e['row'], float('nan')):.0f} |")
    return "\n".join(lines) + "\n"


def study_csv(entries: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "configuration"] + [f"{c} {g}" for g in GROUPS
                                           for c in ("map", "diff", "low", "high", "improved", "p_holm", "verdict")])
    for e in entries:
        w.writerow([e["row"], e["configuration"]] + [
            v for g in GROUPS for v in (*(f"{x:.6f}" for x in (e[f"map {g}"], *e[f"diff {g}"], e[f"improved {g}"])),
                                        f"{e[f'holm {g}']:.4g}", e[f"verdict {g}"])])
    return buf.getvalue()


def write_study(workdir: Path, entries: Sequence[Mapping[str, Any]], minutes: Mapping[str, float]) -> None:
    """``study.csv``, ``study.md`` and ``study.png`` in ``workdir``."""
    atomic_write_text(workdir / "study.csv", study_csv(entries))
    atomic_write_text(workdir / "study.md", study_markdown(entries, minutes))
    plot_study(entries, workdir / "study.png")


def save_png(fig: Figure, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue())


def plot_study(entries: Sequence[Mapping[str, Any]], path: Path) -> None:
    """The differences with their intervals, CT1 beside the unknown types, coloured by the Holm verdict."""
    labels = [f"{e['row']}: {e['configuration']}" for e in entries]
    y = np.arange(len(entries))[::-1]
    fig = Figure(figsize=(11, 0.32 * len(entries) + 1.6))
    axes = fig.subplots(1, 2, sharey=True)
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
    save_png(fig, path)


def row_configs(base, checkpoint: str, rows: Sequence[str],
                settings: Mapping[str, Any] | None = None) -> list[tuple[str, str, dict[str, Any], Any]]:
    """``(name, overrides as given, overrides, ConfigDict)`` of every row, each checked
    (:func:`~dng_jax.config.experiment_config`) before any sweep starts."""
    common = {**parse_overrides(STUDY), **dict(settings or {})}
    out = []
    for spec in rows:
        name, overrides = parse_row(spec)
        config = row_config(base, common, overrides, checkpoint)
        experiment_config(config)
        out.append((name, spec.partition(":")[2], overrides, config))
    if not out:
        raise ConfigError("the study needs at least one row")
    return out


def run_study(base, checkpoint: str, workdir: str | Path, rows: Sequence[str] = DEFAULT_ROWS,
              settings: Mapping[str, Any] | None = None, progress: bool = True) -> StudyResult:
    """Run (or resume) every row's sweep in ``workdir/NAME``, rewriting the study table after each row.

    ``rows``: ``NAME:FIELD=VALUE,...``; ``settings``: overrides of every row after :data:`STUDY`."""
    workdir = Path(workdir)
    configs = row_configs(base, checkpoint, rows, settings)  # the rows' sweeps make workdir once their checks pass
    entries: list[dict[str, Any]] = []
    minutes: dict[str, float] = {}
    first: Path | None = None
    for name, given, overrides, config in configs:
        rdir = workdir / name
        if first is not None and all(k.startswith(STAGE3_FIELDS) for k in overrides):
            seed_shared_stages(first, rdir)
        log.info("== %s: %s", name, given or "(the paper)")
        run_sweep(config, rdir, progress=progress)
        first = first or rdir
        entries += row_results(name, rdir)
        minutes[name] = row_minutes(rdir)
        write_study(workdir, entries, minutes)
    return StudyResult(entries, minutes, workdir / configs[0][0], experiment_config(configs[-1][3]))
