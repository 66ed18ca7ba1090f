"""Tables and figures of a sweep: the paper's Table I and Figs. 2, 5, 6, 7, 8.

Pure functions from result rows (:class:`~dng_jax.experiment.layout.RunResult`, one per run) to text,
and matplotlib figures written as PNG. Nothing here trains or clusters. The report is a function of the
work dir (:func:`rebuild_report`): the sweep calls it at the end, and ``python -m dng_jax.report --workdir
DIR`` calls it on any sweep's work dir, also one whose configurations were run by several jobs (every
finished ``runs/*/results.json``, ``baseline/map.json``, the per-image scores, ``test_set.json``,
``cluster_data/`` and, for the table's notes and the statistics, ``sweep_config.json``).
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import numpy as np

from dng_jax.clustering.methods import METHODS
from dng_jax.errors import DataError, InputError
from dng_jax.evaluation.scores import view_maps
from dng_jax.experiment.comparisons import (CLASSICAL, ENSEMBLE, SweepScores, compare_all, differences_markdown,
                                            map_interval, per_type_markdown, test_groups, validation_groups,
                                            write_differences_csv)
from dng_jax.experiment import layout
from dng_jax.experiment.layout import RunResult
from dng_jax.experiment.sweep_scores import METHOD_ORDER, method_rank, read_sweep_scores, stack_sweeps, sweep_rows
from dng_jax.experiment.tsne import tsne
from dng_jax.io import stage
from dng_jax.io.atomic import atomic_write_bytes, atomic_write_text

__all__ = [
    "RESULT_FIELDS",
    "METHOD_ORDER",
    "write_results_csv",
    "read_results_csv",
    "table1_markdown",
    "row_name",
    "table1_notes",
    "plot_map_vs_k",
    "map_vs_k_figure",
    "plot_entropy_std",
    "plot_latent",
    "draw_latent",
    "plot_panels",
    "write_report",
    "rebuild_report",
    "combine_report",
    "read_sweep_scores",
    "ENSEMBLE",
]

RESULT_FIELDS = ("method", "k", "seed", "units", "norm_entropy", "quant_error",
                 "map_known", "map_unknown", "map_all")
MAP_COLUMNS = (("map_known", "CT1 (known)"), ("map_unknown", "without CT1 (unknown)"), ("map_all", "all"))


def write_results_csv(path, rows: Sequence[RunResult]) -> None:
    """One row per run, columns :data:`RESULT_FIELDS` (and ``baseline``, the training each run was made on,
    when the runs sit on several)."""
    fields = RESULT_FIELDS + (("baseline",) if any(r.baseline for r in rows) else ())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for r in sorted(rows, key=lambda r: (method_rank(r.method), int(r.k), int(r.baseline), int(r.seed))):
        w.writerow([f"{v:.6f}" if isinstance(v, float) else v for v in (getattr(r, f) for f in fields)])
    atomic_write_text(path, buf.getvalue())


def read_results_csv(path) -> list[RunResult]:
    """The rows of a ``results.csv`` (``final_loss`` is not in it: nan)."""
    with open(path, newline="") as f:
        return [RunResult(r["method"], int(r["k"]), int(r["seed"]), int(r["units"]),
                          *(float(r[c]) for c in RESULT_FIELDS[4:]), baseline=int(r.get("baseline") or 0))
                for r in csv.DictReader(f)]


def _label(method: str) -> str:
    if method.endswith(ENSEMBLE):
        return f"{_label(method[: -len(ENSEMBLE)])} ensemble"
    return METHODS[method].label if method in METHODS else method


def _ordered_methods(rows: Sequence[RunResult]) -> list[str]:
    return sorted({r.method for r in rows}, key=method_rank)


def _group(rows: Sequence[RunResult]) -> dict[tuple[str, int], list[RunResult]]:
    groups: dict[tuple[str, int], list[RunResult]] = defaultdict(list)
    for r in rows:
        groups[(r.method, int(r.k))].append(r)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][1] if kv[0][0] != "gng" else math.inf,
                                                          method_rank(kv[0][0]))))


def row_name(method: str, k: int) -> str:
    """A configuration's name in the tables: ``kMC(5)``, ``NG ensemble(20)``."""
    return f"{_label(method)}({k})"


#: What a cell of Table I holds when its group has no test image (e.g. a new experiment without masks).
NOTHING_SCORED = "–"


def _mean_std(v: np.ndarray) -> str:
    if not np.isfinite(v).any():
        return NOTHING_SCORED
    return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def _map_text(v: float) -> str:
    return f"{v:.3f}" if np.isfinite(v) else NOTHING_SCORED


def _nothing_scored_note(columns: Sequence[str]) -> str:
    return (f"{NOTHING_SCORED} in {' and '.join(columns)}: no test image there, nothing to score (images without "
            f"a mask are clustered, not scored; give some of them masks to score them).")


def table1_markdown(rows: Sequence[RunResult], baseline: Mapping[str, float], notes: str = "",
                    classical: Mapping[str, float] | None = None,
                    baseline_runs: Sequence[Mapping[str, float]] | None = None,
                    references: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """Mean +- std over seeds of the MAP per configuration, with the baseline (and the classical
    reference, and the ``references``: the baseline's views) first (Table I). ``baseline_runs``: the MAPs
    of each baseline training when there are several (the baseline row then shows their mean +- std, like
    a configuration's)."""
    lines = ["| name | runs | units | CT1 | without CT1 | all |", "|---|---|---|---|---|---|"]
    if baseline_runs and len(baseline_runs) > 1:
        lines.append(f"| baseline | {len(baseline_runs)} | - | " + " | ".join(
            _mean_std(np.array([r[c] for r in baseline_runs], float)) for c, _ in MAP_COLUMNS) + " |")
    else:
        lines.append("| baseline | 1 | - | " + " | ".join(_map_text(baseline[c]) for c, _ in MAP_COLUMNS) + " |")
    if classical is not None:
        lines.append(f"| {CLASSICAL} | 1 | - | " + " | ".join(_map_text(classical[c]) for c, _ in MAP_COLUMNS) + " |")
    for name, maps in (references or {}).items():
        lines.append(f"| {name} | 1 | - | " + " | ".join(_map_text(maps[c]) for c, _ in MAP_COLUMNS) + " |")
    for (method, k), rs in _group(rows).items():
        units = np.array([r.units for r in rs], float)
        cells = [_mean_std(np.array([getattr(r, c) for r in rs], float)) for c, _ in MAP_COLUMNS]
        unit_txt = f"{units.mean():.0f}" if units.std() == 0 else f"{units.mean():.0f} ± {units.std():.0f}"
        lines.append(f"| {row_name(method, k)} | {len(rs)} | {unit_txt} | " + " | ".join(cells) + " |")
    head = "# Table I: MAP on the test images (mean ± std over seeds)\n\n"
    empty = [label for c, label in MAP_COLUMNS if not np.isfinite(float(baseline[c]))]
    notes = " ".join(n for n in (notes, _nothing_scored_note(empty) if empty else "") if n)
    return head + ("\n".join(lines)) + "\n" + (f"\n{notes}\n" if notes else "")


def table1_notes(config: Mapping) -> str:
    """The notes line under Table I from a sweep configuration.

    ``config`` is the sweep's ``ConfigDict`` or the dict read from a work dir's ``sweep_config.json``
    (same text for both); the sweep and ``python -m dng_jax.report`` both use this."""
    sweep, cluster_data, model = config["sweep"], config["cluster_data"], config["model"]
    dtype = model.get("dtype", "float32")
    data = config.get("data", {})
    return (f"{int(sweep['seeds'])} seeds per configuration; {int(cluster_data['n_images'])} "
            f"clustering images; model stage_sizes={tuple(model['stage_sizes'])} width={model['width']}"
            + (f", computed in {dtype} (parameters float32)" if dtype != "float32" else "") + "; "
            f"segmentation {config['train']['epochs']} epochs, retraining {config['retrain']['epochs']} epochs"
            + (f"; {data['protocol']} protocol" if data.get("protocol") else "") + ".")


def _read_notes(workdir: Path) -> str:
    """:func:`table1_notes` of ``workdir/sweep_config.json``; "" when it is missing or incomplete."""
    try:
        return table1_notes(layout.read_json(workdir / layout.SWEEP_CONFIG))
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_map_vs_k(rows: Sequence[RunResult], baseline: Mapping[str, float], column: str, path, title: str,
                  intervals: Mapping[object, tuple[float, float, float]] | None = None, *, level: float = 0.95) -> None:
    """Figs. 6/7 (:func:`map_vs_k_figure`) written to ``path``."""
    _save(map_vs_k_figure(rows, baseline, column, title, intervals, level=level), path)


def _nothing_to_plot(title: str):
    """A figure that says in words that its group has no test image (instead of empty axes and a legend)."""
    fig, ax = _plt().subplots(figsize=(6.4, 4.2))
    ax.text(0.5, 0.5, "no test image in this group: nothing to score\n(images without a mask are clustered, "
                      "not scored)", ha="center", va="center", fontsize=10, transform=ax.transAxes)
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def map_vs_k_figure(rows: Sequence[RunResult], baseline: Mapping[str, float], column: str, title: str,
                    intervals: Mapping[object, tuple[float, float, float]] | None = None, *, level: float = 0.95):
    """Figs. 6/7: every run's MAP against k per method (jittered), means joined, baseline dashed.

    ``intervals`` (optional): ``(method, k) -> (MAP, low, high)`` with the run-level interval at ``level``
    (runs and images), drawn as error bars where it is finite (the title names them only then); the keys
    ``"baseline"`` and ``"classical"`` give a shaded band (where the baseline's interval can be computed:
    several trainings) and a dotted line. The legend names only what is drawn and sits outside the axes,
    right of them, so it covers no point or line. A group without a test image gives a figure that says so."""
    if not any(np.isfinite(getattr(r, column)) for r in rows):
        return _nothing_to_plot(title)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rng = np.random.default_rng(0)
    intervals = intervals or {}
    methods = _ordered_methods(rows)
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"]
    colours = {m: palette[i % len(palette)] for i, m in enumerate(dict.fromkeys(METHOD_ORDER + tuple(methods)))}
    offsets, bars = {"kmc": -0.06, "ng": 0.06, "gng": 0.0}, False
    for method in methods:
        groups = {k: rs for (m, k), rs in _group(rows).items() if m == method}
        if not groups:
            continue
        ks, means = [], []
        for k, rs in sorted(groups.items()):
            # GNG's k is where it starts; plot it at the units it ended with.
            kx = float(np.mean([r.units for r in rs])) if method == "gng" else float(k)
            v = np.array([getattr(r, column) for r in rs], float)
            x0 = np.log10(max(kx, 1)) + offsets.get(method, 0.03)
            ax.scatter(x0 + rng.uniform(-0.02, 0.02, len(v)), v, s=10, alpha=0.45, color=colours[method])
            ks.append(x0)
            means.append(v.mean())
            est, lo, hi = intervals.get((method, k), (np.nan,) * 3)
            if np.isfinite([est, lo, hi]).all():  # one image (or one run) has no interval: no bar
                ax.errorbar([x0], [est], yerr=[[est - lo], [hi - est]], color=colours[method], capsize=3, lw=1)
                bars = True
        label = f"{_label(method)} (start {min(groups)})" if method == "gng" else _label(method)
        ax.plot(ks, means, "-o", color=colours[method], label=label, ms=5)
    ax.axhline(baseline[column], color="k", ls="--", lw=1.2, label="baseline")
    if "baseline" in intervals and np.isfinite(intervals["baseline"][1:]).all():
        _, lo, hi = intervals["baseline"]
        ax.axhspan(lo, hi, color="k", alpha=0.08, lw=0, label=f"baseline {level:.0%} interval")
    if "classical" in intervals:
        ax.axhline(intervals["classical"][0], color="tab:gray", ls=":", lw=1.5, label="classical (no learning)")
    ticks = sorted({int(r.k) for r in rows if r.method != "gng"})
    if ticks:
        ax.set_xticks(np.log10(ticks), [str(t) for t in ticks])
    ax.set_xlabel("k (number of clusters; GNG at its final size)")
    ax.set_ylabel("MAP")
    ax.set_title(title + (f"\n(bars: {level:.0%} interval over the runs and the images)" if bars else ""))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.grid(alpha=0.3)
    return fig


def plot_entropy_std(rows: Sequence[RunResult], path) -> None:
    """Fig. 8: std over seeds of the normalized entropy of the cluster sizes, per method and k."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    groups = _group(rows)
    methods = _ordered_methods(rows)
    ks = sorted({k for (m, k) in groups if m != "gng"})
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        xs, stds = [], []
        for j, k in enumerate(ks if method != "gng" else []):
            if (method, k) in groups:
                xs.append(j + i * width)
                stds.append(np.std([r.norm_entropy for r in groups[(method, k)]], ddof=1)
                            if len(groups[(method, k)]) > 1 else 0.0)
        if method == "gng":
            for (m, k), rs in groups.items():
                if m == "gng":
                    xs.append(len(ks) + i * width)
                    stds.append(np.std([r.norm_entropy for r in rs], ddof=1) if len(rs) > 1 else 0.0)
        ax.bar(xs, stds, width=width, label=_label(method))
    labels = [str(k) for k in ks] + (["GNG"] if "gng" in methods else [])
    ax.set_xticks(np.arange(len(labels)) + width * (len(methods) - 1) / 2, labels)
    ax.set_xlabel("k")
    ax.set_ylabel("std of normalized entropy over seeds")
    ax.set_title("Stability of the clusterings (Fig. 8)")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


def plot_latent(embedding: np.ndarray, cell_types: Sequence[str], path, title: str) -> None:
    """Fig. 2: a 2-D embedding of the 32-D latent vectors coloured by cell type."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    cell_types = np.asarray(cell_types)
    for t in sorted(set(cell_types.tolist())):
        sel = cell_types == t
        ax.scatter(embedding[sel, 0], embedding[sel, 1], s=6, alpha=0.7, label=f"{t} ({sel.sum()})")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, markerscale=2)
    _save(fig, path)


def draw_latent(workdir, latent: np.ndarray, cell_types: Sequence[str], points: int) -> Path:
    """Fig. 2 (``fig2_latent_tsne.png``): t-SNE of ``points`` latent vectors drawn at random (seeded),
    unless a whole one is there already (the sweep and :func:`rebuild_report` draw the same)."""
    path = Path(workdir) / layout.FIG2
    if not stage.readable(path):  # a truncated figure is drawn again
        m = min(points, latent.shape[0])
        sel = np.random.default_rng(0).choice(latent.shape[0], m, replace=False)
        emb = tsne(latent[sel], jax.random.key(0))
        plot_latent(emb, [cell_types[i] for i in sel], path,
                    f"t-SNE of the {latent.shape[1]}-D latent of {m} clustering images (Fig. 2)")
    return path


def _colour_labels(labels: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    lut = rng.uniform(0.25, 1.0, (int(labels.max()) + 1, 3))
    lut[0] = 0
    return lut[labels]


def plot_panels(panels: Sequence[Mapping], path) -> None:
    """Fig. 5: per image: input, ground truth, baseline, after clustering (instance labels coloured)."""
    plt = _plt()
    n = len(panels)
    fig, axes = plt.subplots(n, 4, figsize=(12, 3 * n), squeeze=False)
    for row, p in zip(axes, panels):
        row[0].imshow(p["image"])
        row[0].set_title(f"{p['name']}\n{p.get('cell_type', '')}", fontsize=8)
        row[1].imshow(_colour_labels(p["gt"]))
        row[1].set_title("ground truth", fontsize=8)
        row[2].imshow(_colour_labels(p["baseline"]))
        row[2].set_title(f"baseline  MAP {p['baseline_map']:.2f}", fontsize=8)
        row[3].imshow(_colour_labels(p["clustered"]))
        row[3].set_title(f"{p['run']}  MAP {p['clustered_map']:.2f}", fontsize=8)
        for a in row:
            a.axis("off")
    _save(fig, path)


def _figure_intervals(scores: SweepScores, ids, *, level: float) -> dict:
    def triple(table):
        iv = map_interval(table, ids, level=level)
        return float(iv.estimate), float(iv.low), float(iv.high)
    out = {"baseline": triple(scores.baseline)}
    if scores.classical is not None:
        out["classical"] = triple(scores.classical)
    for key, table in scores.runs.items():
        out[key] = triple(table)
    return out


def _baseline_run_maps(scores: SweepScores) -> list[dict[str, float]]:
    """Each baseline training's MAPs on the test images (one dict per row of its score table)."""
    return [view_maps(dict(zip(scores.baseline.ids, row)), scores.test, scores.known_type)
            for row in scores.baseline.scores]


def write_report(workdir, rows: Sequence[RunResult], baseline: Mapping[str, float], notes: str = "",
                 scores: SweepScores | None = None, *, level: float = 0.95) -> list[Path]:
    """results.csv, table1.md, fig6/fig7/fig8 PNGs into ``workdir``; returns the paths.

    With the per-image ``scores``: the classical row, the paired differences to the baseline on the
    test images (``differences.csv`` too), on the validation images when the sweep has them
    (``differences_validation.csv``, same columns), the per-type MAPs, and intervals in Figs. 6 and 7.
    With several baseline runs, the baseline's MAPs (row, dashed line) are their mean."""
    workdir = Path(workdir)
    out = [workdir / name for name in (layout.RESULTS_CSV, layout.TABLE1, layout.FIG6, layout.FIG7, layout.FIG8)]
    write_results_csv(out[0], rows)
    classical = None
    baseline_runs = None
    references = {}
    text = ""
    fig_intervals: dict[str, dict] = {"map_known": {}, "map_unknown": {}}
    if scores is not None:
        groups = test_groups(scores)
        names = {key: row_name(*key) for key in scores.runs}
        if scores.classical is not None:
            classical = {c: float(scores.classical.select(groups[g]).scores.mean()) if groups[g] else float("nan")
                         for c, g in zip(("map_known", "map_unknown", "map_all"), ("CT1", "without CT1", "all"))}
        references = {name: view_maps(dict(zip(t.ids, t.scores[0])), scores.test, scores.known_type)
                      for name, t in scores.references.items()}
        if len(scores.baseline.runs) > 1:
            baseline_runs = _baseline_run_maps(scores)
            baseline = {c: float(np.mean([r[c] for r in baseline_runs])) for c, _ in MAP_COLUMNS}
        comparisons = compare_all(scores, names, groups, level=level)
        text = "\n" + differences_markdown(comparisons, groups, level=level)
        write_differences_csv(workdir / layout.DIFFERENCES, comparisons)
        out.append(workdir / layout.DIFFERENCES)
        val = validation_groups(scores)
        if any(val.values()):
            checked = compare_all(scores, names, val, level=level)
            text += "\n" + differences_markdown(checked, val, level=level, validation=True)
            write_differences_csv(workdir / layout.DIFFERENCES_VALIDATION, checked)
            out.append(workdir / layout.DIFFERENCES_VALIDATION)
        text += "\n" + per_type_markdown(scores, names, level=level)
        for column, g in (("map_known", "CT1"), ("map_unknown", "without CT1")):
            if groups[g]:
                fig_intervals[column] = _figure_intervals(scores, groups[g], level=level)
    atomic_write_text(out[1], table1_markdown(rows, baseline, notes, classical, baseline_runs, references) + text)
    if rows:
        plot_map_vs_k(rows, baseline, "map_known", out[2], "MAP on the known cell type (Fig. 6)",
                      fig_intervals["map_known"], level=level)
        plot_map_vs_k(rows, baseline, "map_unknown", out[3], "MAP on the unknown cell types (Fig. 7)",
                      fig_intervals["map_unknown"], level=level)
        plot_entropy_std(rows, out[4])
    return out


def _saved_level(workdir: Path) -> float:
    """``eval.level`` of the sweep in ``workdir`` (its ``sweep_config.json``), else 0.95."""
    try:
        return float(layout.read_json(workdir / layout.SWEEP_CONFIG)["eval"]["level"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.95


def rebuild_report(workdir, *, level: float | None = None) -> list[Path]:
    """Make ``results.csv``, ``table1.md`` (with its statistics), Figs. 6-8 and, when the clustering data
    is there and the figure is not, Fig. 2 of a sweep from its work dir; returns the paths. The rows come
    from every finished configuration's ``runs/*/results.json`` (whichever job ran it: this merges a split
    sweep; a work dir with none falls back on its ``results.csv``), the rest from ``baseline/map.json``, the
    per-image ``scores.csv`` files, ``test_set.json``, ``cluster_data/`` and ``sweep_config.json``. The
    sweep makes its report with this too. ``level`` defaults to the sweep's own (``eval.level``)."""
    wd = Path(workdir)
    try:
        rows = sweep_rows(wd) or read_results_csv(wd / layout.RESULTS_CSV)
        baseline = layout.read_json(layout.stage_dir(wd, layout.BASELINE) / layout.MAP)
        base = {c: baseline[c] for c, _ in MAP_COLUMNS}
        scores = read_sweep_scores(wd)
    except (OSError, KeyError, ValueError, TypeError, DataError) as e:
        raise InputError(f"{wd}: cannot read the sweep's results ({e})") from None
    paths = write_report(wd, rows, base, _read_notes(wd), scores,
                         level=level or _saved_level(wd))
    cdir = layout.stage_dir(wd, layout.CLUSTER_DATA)
    if stage.read_done(cdir) is not None:
        try:
            latent, types = np.load(cdir / layout.LATENT), layout.read_json(cdir / layout.SOURCES)["types"]
            points = int(layout.read_json(wd / layout.SWEEP_CONFIG)["report"]["tsne_points"])
        except (OSError, ValueError, KeyError, TypeError):
            return paths
        paths.append(draw_latent(wd, latent, types, points))
    return paths


def combine_report(output, workdirs: Sequence, *, level: float | None = None) -> list[Path]:
    """Sweeps made one per trained baseline (``sweep.checkpoint``), on the same images, as one nested
    design in ``output``: ``results.csv`` (with each run's ``baseline``: its work dir's place in
    ``workdirs``), ``table1.md`` with the run-level intervals over the baselines, ``differences*.csv``,
    Figs. 6-8 and ``combined_from.json`` naming the work dirs."""
    out = Path(output)
    sweeps, rows, names = [], [], []
    for b, wd in enumerate(Path(w) for w in workdirs):
        try:
            scores = read_sweep_scores(wd)
            more = sweep_rows(wd)
        except (OSError, KeyError, ValueError, TypeError, DataError) as e:
            raise InputError(f"{wd}: cannot read the sweep's results ({e})") from None
        if scores is None:
            raise InputError(f"{wd} holds no per-image scores of a finished sweep (baseline/scores.csv, "
                             f"test_set.json): run python -m dng_jax.sweep there first")
        sweeps.append(scores)
        rows += [r._replace(baseline=b) for r in more]
        names.append(f"baseline {b} ({wd.name})")
    combined = stack_sweeps(sweeps, names)
    maps = [view_maps(dict(zip(combined.baseline.ids, row)), combined.test, combined.known_type)
            for row in combined.baseline.scores]
    base = {c: float(np.mean([m[c] for m in maps])) for c, _ in MAP_COLUMNS}
    out.mkdir(parents=True, exist_ok=True)
    layout.write_json(out / "combined_from.json", {"workdirs": [str(w) for w in workdirs]})
    return write_report(out, rows, base, _read_notes(Path(workdirs[0])), combined,
                        level=level or _saved_level(Path(workdirs[0]))) + [out / "combined_from.json"]
