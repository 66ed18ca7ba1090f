"""Does NG give more stable clusterings than kMC (paper Fig. 8)? The std over seeds of the normalised
entropy of the cluster sizes, kMC against NG at each k, with bootstrap intervals over the seeds.

Both methods cluster the same latent vectors (a sweep's ``cluster_data/latent.npy``) with many seeds; each
seed's normalised entropy is kept in ``stability.json`` as soon as its (method, k) is done, so a stopped
comparison resumes. Written: ``stability.csv``, ``stability.md`` and ``stability.png`` (the variants study's
second table, ``python -m dng_jax.variants``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
from matplotlib.figure import Figure

from dng_jax.clustering.methods import build_method, method_keys, run_method
from dng_jax.config import ExperimentConfig
from dng_jax.evaluation.statistics import Interval
from dng_jax.experiment.variants_study import save_png, signed
from dng_jax.io.atomic import atomic_write_text

__all__ = ["METHODS", "StabilityRow", "bootstrap_std", "seed_entropies", "stability_rows", "stability_markdown",
           "stability_csv", "plot_stability", "stability"]

log = logging.getLogger("dng_jax.variants")

METHODS = ("kmc", "ng")


class StabilityRow(NamedTuple):
    k: int
    kmc: Interval  # std over seeds of kMC's normalised entropy
    ng: Interval
    diff: Interval  # NG - kMC


def bootstrap_std(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Std over seeds (ddof=1) of ``n_boot`` resamples of the seeds."""
    idx = rng.integers(0, len(values), (n_boot, len(values)))
    return values[idx].std(axis=1, ddof=1)


def seed_entropies(cache: Path, cfg: ExperimentConfig, latent: np.ndarray, ks: Sequence[int],
                   seeds: int) -> dict[str, list[float]]:
    """``{"<method>_k<k>": [normalised entropy of each seed]}``, clustered here where ``cache`` lacks them."""
    done = json.loads(cache.read_text()) if cache.exists() else {}
    for m in METHODS:
        for k in ks:
            key = f"{m}_k{k}"
            if key in done and len(done[key]) == seeds:
                continue
            _, method = build_method(m, k, cfg.clustering)
            res = run_method(method, method_keys(jax.random.key(cfg.sweep.seed), m, k, seeds), latent)
            done[key] = [float(v) for v in res.norm_entropy]
            atomic_write_text(cache, json.dumps(done, indent=1) + "\n")
            log.info("stability: %s(%d) %d seeds: std %.4f", m, k, seeds, np.std(done[key], ddof=1))
    return done


def stability_rows(done: dict[str, list[float]], ks: Sequence[int], n_boot: int, level: float) -> list[StabilityRow]:
    """Per k: each method's std over seeds and NG - kMC, with percentile intervals (one seeded generator)."""
    rng = np.random.default_rng(0)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    rows = []
    for k in ks:
        kmc, ng = np.asarray(done[f"kmc_k{k}"]), np.asarray(done[f"ng_k{k}"])
        bk, bn = bootstrap_std(kmc, n_boot, rng), bootstrap_std(ng, n_boot, rng)
        sk, sn = Interval(kmc.std(ddof=1), *np.percentile(bk, q)), Interval(ng.std(ddof=1), *np.percentile(bn, q))
        rows.append(StabilityRow(k, sk, sn, Interval(sn.estimate - sk.estimate, *np.percentile(bn - bk, q))))
    return rows


def _shown(d: Interval) -> str:
    return "yes" if d.high < 0 else "no (more variable)" if d.low > 0 else "not shown"


def stability_markdown(rows: Sequence[StabilityRow], seeds: int, vectors: int, level: float) -> str:
    lines = ["| k | std kMC | std NG | NG − kMC | NG more stable |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.k} | {r.kmc.estimate:.4f} [{r.kmc.low:.4f}, {r.kmc.high:.4f}] | {r.ng.estimate:.4f} "
                     f"[{r.ng.low:.4f}, {r.ng.high:.4f}] | {signed(r.diff, 4)} | {_shown(r.diff)} |")
    return (f"{seeds} seeds per method and k on the study's {vectors} clustering vectors; std over seeds of "
            f"the normalised entropy, {level:.0%} bootstrap intervals over seeds.\n\n" + "\n".join(lines) + "\n")


def stability_csv(rows: Sequence[StabilityRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["k", "std_kmc", "low_kmc", "high_kmc", "std_ng", "low_ng", "high_ng", "diff", "diff_low", "diff_high"])
    for r in rows:
        w.writerow([r.k, *(f"{v:.6f}" for v in (*r.kmc, *r.ng, *r.diff))])
    return buf.getvalue()


def plot_stability(rows: Sequence[StabilityRow], path: Path) -> None:
    fig = Figure(figsize=(6, 3.4))
    ax = fig.subplots()
    x = np.arange(len(rows))
    for off, ivs, label in ((-0.18, [r.kmc for r in rows], "kMC"), (0.18, [r.ng for r in rows], "NG")):
        ax.bar(x + off, [iv.estimate for iv in ivs], width=0.34, label=label,
               yerr=[[iv.estimate - iv.low for iv in ivs], [iv.high - iv.estimate for iv in ivs]], capsize=3)
    ax.set_xticks(x)
    ax.set_xticklabels([str(r.k) for r in rows])
    ax.set_xlabel("k")
    ax.set_ylabel("std over seeds of norm. entropy")
    ax.set_title("Stability of the clusterings (Fig. 8) with 95% intervals")
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)


def stability(workdir: Path, cfg: ExperimentConfig, latent: np.ndarray, ks: Sequence[int], seeds: int,
              n_boot: int, level: float) -> str:
    """NG vs kMC: std over ``seeds`` of the normalised entropy at every k, written to ``workdir``; returns
    the Markdown table."""
    done = seed_entropies(workdir / "stability.json", cfg, latent, ks, seeds)
    rows = stability_rows(done, ks, n_boot, level)
    atomic_write_text(workdir / "stability.csv", stability_csv(rows))
    text = stability_markdown(rows, seeds, latent.shape[0], level)
    atomic_write_text(workdir / "stability.md", text)
    plot_stability(rows, workdir / "stability.png")
    return text
