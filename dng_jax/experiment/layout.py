"""What a sweep's work dir holds and where: the one module that builds paths inside it.

Stages, the report and the resume checks ask here for a folder or file, so a name changes in one place
and nobody parses a folder's name back into what it holds: a configuration's method and k are read
from its ``results.json`` rows (:class:`RunResult`), the test set from ``test_set.json``
(:class:`ImageSets`). ::

    sweep_config.json, method_files.json, test_set.json, manifest.json   the sweep's identity and images
    baseline/          map.json, scores.csv, baseline.json, checkpoints/, metrics.csv
    baseline_runs/     scores.csv, run<i>/ (sweep.baseline_runs)
    baseline_views/    scores.csv (eval.baseline_views)
    classical/         scores.csv
    cluster_data/      images.npy, features.npy, pca_*.npy, sources.json, latent.npy
    runs/<m>_k<k>/     clustering.json, pseudo_labels.npy, chunk_*.json, scores.csv, results.json, ...
    results.csv, table1.md, differences*.csv, fig*.png, failures.json, timings.csv

Every stage folder also holds ``done.json`` (:mod:`dng_jax.io.stage`), written last. Three kinds of
file are named by the code that writes them, inside folders named here: ``manifest.json``
(:func:`dng_jax.data.partition.open_data`), a training's ``checkpoints/`` and ``metrics.*`` (the
segmentation trainer), and a split sweep's ``.locks/`` and ``shards/<job>/`` (:mod:`dng_jax.experiment.shards`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dng_jax.data.partition import KNOWN_TYPE
from dng_jax.io.atomic import atomic_write_text

__all__ = ["BASELINE", "BASELINE_RUNS", "BASELINE_VIEWS", "CLASSICAL", "CLUSTER_DATA", "RUNS", "SCORES", "MAP",
           "BASELINE_RESULT", "CHECKPOINTS", "CLUSTER_DATA_FILES", "IMAGES", "FEATURES", "LATENT", "SOURCES",
           "PCA_MEAN", "PCA_COMPONENTS", "CLUSTERING",
           "PSEUDO_LABELS", "RESULTS", "SEED0_PREDICTIONS", "ENSEMBLE_RESULT", "ENSEMBLE_SCORES", "RETRAIN_METRICS",
           "SWEEP_CONFIG", "METHOD_FILES", "TEST_SET", "RESULTS_CSV", "TABLE1", "DIFFERENCES",
           "DIFFERENCES_VALIDATION", "FIG2", "FIG5", "FIG6", "FIG7", "FIG8", "FAILURES", "TIMINGS",
           "stage_dir", "baseline_run_dir", "run_name", "run_dir", "chunk_rows", "chunk_variables", "chunk_files",
           "read_json", "write_json", "json_value", "RunResult", "read_results", "write_results",
           "finished_configurations",
           "ImageSets", "write_test_set", "read_test_set"]

# the stage folders
BASELINE, BASELINE_RUNS, BASELINE_VIEWS, CLASSICAL = "baseline", "baseline_runs", "baseline_views", "classical"
CLUSTER_DATA, RUNS = "cluster_data", "runs"

# files inside the stage folders
SCORES = "scores.csv"  # per-image scores, one row per run (:func:`dng_jax.evaluation.scores.write_scores`)
MAP, BASELINE_RESULT, CHECKPOINTS = "map.json", "baseline.json", "checkpoints"
IMAGES, FEATURES, LATENT, SOURCES = "images.npy", "features.npy", "latent.npy", "sources.json"
PCA_MEAN, PCA_COMPONENTS = "pca_mean.npy", "pca_components.npy"
CLUSTER_DATA_FILES = (IMAGES, FEATURES, PCA_MEAN, PCA_COMPONENTS, SOURCES, LATENT)  # LATENT last: its marker
CLUSTERING, PSEUDO_LABELS, RESULTS = "clustering.json", "pseudo_labels.npy", "results.json"
SEED0_PREDICTIONS = "seed0_predictions.npz"  # one run's predictions of the Fig. 5 images
ENSEMBLE_RESULT, ENSEMBLE_SCORES = "ensemble.json", "ensemble_scores.csv"
RETRAIN_METRICS = "retrain_metrics"  # .csv / .jsonl

# files at the top of the work dir
SWEEP_CONFIG, METHOD_FILES, TEST_SET = "sweep_config.json", "method_files.json", "test_set.json"
RESULTS_CSV, TABLE1 = "results.csv", "table1.md"
DIFFERENCES, DIFFERENCES_VALIDATION = "differences.csv", "differences_validation.csv"
FIG2, FIG5, FIG6 = "fig2_latent_tsne.png", "fig5_panels.png", "fig6_map_known.png"
FIG7, FIG8 = "fig7_map_unknown.png", "fig8_entropy_std.png"
FAILURES, TIMINGS = "failures.json", "timings"  # in a job's log folder (:func:`dng_jax.experiment.shards.job_dir`)


def stage_dir(workdir, stage: str) -> Path:
    """A stage's folder: ``stage`` is one of :data:`BASELINE`, ..., :data:`CLUSTER_DATA`."""
    return Path(workdir) / stage


def baseline_run_dir(workdir, i: int) -> Path:
    """Baseline training ``i`` (1, 2, ...) of ``sweep.baseline_runs``."""
    return Path(workdir) / BASELINE_RUNS / f"run{i}"


def run_name(method: str, k: int) -> str:
    """The ``runs/`` folder of a configuration, as ``sweep.only`` and the report's lists name it."""
    return f"{method}_k{k}"


def run_dir(workdir, name: str) -> Path:
    return Path(workdir) / RUNS / name


def chunk_rows(rdir: Path, c0: int) -> Path:
    """The result rows (with per-image scores) of the chunk of runs starting at seed ``c0``."""
    return rdir / f"chunk_{c0:04d}.json"


def chunk_variables(rdir: Path, c0: int) -> Path:
    """What the runs of the chunk starting at seed ``c0`` changed in the U-Net (kept for the ensemble)."""
    return rdir / f"chunk_{c0:04d}_variables.npz"


def chunk_files(rdir: Path) -> list[str]:
    """The names of the chunks' result files in a run folder, in seed order."""
    return sorted(p.name for p in rdir.glob("chunk_*.json"))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON with sorted keys (numpy scalars and arrays as numbers and lists), atomically."""
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default) + "\n")


def json_value(obj: Any) -> Any:
    """``obj`` as :func:`write_json` would write it and ``json.loads`` give it back."""
    return json.loads(json.dumps(obj, default=_json_default))


class RunResult(NamedTuple):
    """One run of Table I: a configuration's seed, its clustering and its MAPs (a row of ``results.json``)."""

    method: str  # the method's id ("kmc", "ng", "gng" or a file-loaded factory's name)
    k: int
    seed: int
    units: int  # clusters the run ended with (GNG grows)
    norm_entropy: float  # of the cluster sizes (Fig. 8)
    quant_error: float
    map_known: float
    map_unknown: float
    map_all: float
    final_loss: float = float("nan")  # the retraining's last epoch (nan: no epochs, or not recorded)
    rounds: tuple[tuple[int, float], ...] = ()  # retrain.rounds > 1: (units, norm_entropy) of rounds 2, 3, ...
    baseline: int = 0  # the baseline training the run was made on (sweep.baseline_runs; set when read back)

    def as_json(self) -> dict[str, Any]:
        """The row as ``results.json`` holds it (``round<r>_units`` / ``round<r>_norm_entropy`` per later round;
        the baseline is where the file lies, not in it)."""
        out: dict[str, Any] = self._asdict()
        del out["rounds"], out["baseline"]
        for r, (units, entropy) in enumerate(self.rounds, start=2):
            out[f"round{r}_units"], out[f"round{r}_norm_entropy"] = units, entropy
        return out

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> RunResult:
        rounds, r = [], 2
        while f"round{r}_units" in row:
            rounds.append((row[f"round{r}_units"], row[f"round{r}_norm_entropy"]))
            r += 1
        return cls(row["method"], int(row["k"]), int(row["seed"]), int(row["units"]), row["norm_entropy"],
                   row["quant_error"], row["map_known"], row["map_unknown"], row["map_all"],
                   row.get("final_loss", float("nan")), tuple(rounds))


def read_results(rdir: Path) -> list[RunResult]:
    """A finished configuration's rows (its ``results.json``); raises ``OSError`` / ``ValueError`` /
    ``KeyError`` / ``TypeError`` when they cannot be read."""
    return [RunResult.from_json(r) for r in read_json(rdir / RESULTS)]


def write_results(rdir: Path, rows: Sequence[RunResult]) -> None:
    write_json(rdir / RESULTS, [r.as_json() for r in rows])


def finished_configurations(workdir) -> dict[str, list[RunResult]]:
    """``runs/`` folder name -> its result rows, for every configuration whose ``results.json`` is there
    and reads whole (it is written last but for the marker: the runs the sweep's scores come from), in
    name order. The rows say which method and k the folder holds."""
    out = {}
    for path in sorted((Path(workdir) / RUNS).glob(f"*/{RESULTS}")):
        try:
            rows = read_results(path.parent)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        out[path.parent.name] = rows
    return out


class ImageSets(NamedTuple):
    """Which scored images are the protocol's test set (cell type -> ids: the MAPs of results.csv), which
    its validation set (choices are made on it), and the known type; ``every_unknown``: the paper
    protocol's every non-CT1 image, scored too (``eval.wide_unknown``)."""

    test: dict[str, list[str]]
    every_unknown: list[str] | None
    val: dict[str, list[str]]
    known_type: str


def write_test_set(workdir, test: Mapping[str, Sequence[str]], every_unknown: Sequence[str] | None,
                   val: Mapping[str, Sequence[str]] | None = None, known_type: str = KNOWN_TYPE) -> None:
    """``test_set.json`` (:class:`ImageSets`): the report reads the scores on these images."""
    atomic_write_text(Path(workdir) / TEST_SET, json.dumps(
        {"test": {t: list(ids) for t, ids in test.items()},
         "every_unknown": list(every_unknown) if every_unknown else None,
         "val": {t: list(ids) for t, ids in (val or {}).items()}, "known_type": known_type}, indent=1) + "\n")


def read_test_set(workdir) -> ImageSets:
    """``test_set.json``; one made before the validation split (no ``val`` / ``known_type``) reads as no
    validation images and the known type :data:`~dng_jax.data.partition.KNOWN_TYPE`."""
    doc = read_json(Path(workdir) / TEST_SET)
    return ImageSets(doc["test"], doc.get("every_unknown"), doc.get("val") or {}, doc.get("known_type", KNOWN_TYPE))
