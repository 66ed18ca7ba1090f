"""What a sweep prints when it is done: where its outputs are and what they say, in at most 15 lines.

The tables stay in ``table1.md``; the console gives the answer: the baseline's MAP, the best row of the
sweep on the unknown cell types (the paper's question) with its difference to the baseline, its run-level
interval and its verdict (:func:`dng_jax.experiment.comparisons.compare_all`, as the table has them; "–"
where the group is too small for a verdict), the classical reference, the failed configurations, and, for a
baseline trained on a handful of images (the embedded default's 4), that the numbers only show that the
pipeline works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dng_jax.experiment import layout
from dng_jax.experiment.comparisons import Comparison, GroupComparison, compare_all, map_interval, test_groups
from dng_jax.experiment.report import row_name
from dng_jax.experiment.sweep_scores import read_sweep_scores

__all__ = ["MAX_LINES", "FEW_TRAINING_IMAGES", "sweep_summary"]

MAX_LINES = 15
#: Below this many CT1 training images the summary says that the numbers only show that the pipeline works.
FEW_TRAINING_IMAGES = 20
KNOWN, UNKNOWN = "CT1", "without CT1"


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


def _verdict(g: GroupComparison) -> str:
    """The verdict in words, "–" when the group is too small for one (as in the table)."""
    v = g.verdict
    if v.word in ("no verdict", "no claim"):
        return f"– {v.reason}"
    return f"{v.mark} {v.word}".strip() + (f" ({v.reason})" if v.word == "not established" else "")


def _difference(g: GroupComparison, level: float) -> str:
    r = g.result
    interval = (f" [{_signed(float(r.low))}, {_signed(float(r.high))}]" if np.isfinite([r.low, r.high]).all()
                else " (no interval)")
    return f"Δ {_signed(float(r.estimate))}{interval} ({level:.0%} run-level interval): {_verdict(g)}"


def _best(comparisons: Sequence[Comparison], group: str) -> Comparison | None:
    rows = [c for c in comparisons if c.key is not None and group in c.groups]
    return max(rows, key=lambda c: c.groups[group].mean) if rows else None


def _baseline_line(scores, groups: Mapping[str, list[str]], checkpoint: str, level: float) -> str:
    parts = []
    for label, words in ((KNOWN, "CT1"), (UNKNOWN, "the other types")):
        ids = groups[label]
        if not ids:
            parts.append(f"{words} – (no test image)")
            continue
        iv = map_interval(scores.baseline, ids, level=level)
        parts.append(f"{words} {float(iv.estimate):.3f} ({len(ids)} test images)")
    where = f"loaded from sweep.checkpoint {checkpoint}" if checkpoint else "trained by this sweep"
    return f"baseline ({where}): MAP {', '.join(parts)}"


def sweep_summary(workdir: str | Path, *, level: float, checkpoint: str = "",
                  failures: Mapping[str, str] | None = None, train_images: int = -1, runs: int = -1) -> str:
    """The lines a finished sweep prints (at most :data:`MAX_LINES`), from its work dir's scores;
    ``train_images``: how many CT1 images the baseline learned from, ``runs``: how many runs the sweep
    holds (-1: not known)."""
    wd = Path(workdir).resolve()
    lines = [f"outputs in {wd}" + (f" (the baseline and {runs} runs):" if runs >= 0 else ":"),
             "  table1.md (Table I, the differences to the baseline with intervals and verdicts, the MAP per cell "
             "type), results.csv, differences.csv, fig2_latent_tsne.png, fig5-fig8 *.png"]
    scores = read_sweep_scores(wd)
    if scores is None:
        return "\n".join(lines + ["(no per-image scores in the work dir: python -m dng_jax.report --workdir "
                                  f"{workdir} rebuilds the table)"])
    groups = test_groups(scores)
    names = {key: row_name(*key) for key in scores.runs}
    comparisons = compare_all(scores, names, {g: groups[g] for g in (KNOWN, UNKNOWN) if groups[g]}, level=level)
    lines.append(_baseline_line(scores, groups, checkpoint, level))
    group = UNKNOWN if groups[UNKNOWN] else KNOWN
    if not groups[UNKNOWN]:
        lines.append("the other cell types have no test image (no masks): nothing to score there; give some of "
                     "their images masks to score them (README, 'Your own experiment')")
    best = _best(comparisons, group)
    if best is not None:
        g = best.groups[group]
        on = "the other types" if group == UNKNOWN else "CT1"
        lines.append(f"best row on {on}: {best.name} ({best.design} runs), MAP {g.mean:.3f}")
        lines.append(f"  against the baseline on the same {g.n} images: {_difference(g, level)}")
    classical = next((c for c in comparisons if c.key is None and c.name.startswith("classical")), None)
    if classical is not None and group in classical.groups:
        lines.append(f"classical reference (no learning) on {'the other types' if group == UNKNOWN else 'CT1'}: "
                     f"MAP {classical.groups[group].mean:.3f}")
    if failures:
        lines.append(f"failed: {len(failures)} configurations ({', '.join(sorted(failures))}), listed with why in "
                     f"failures.json; rerun the same command to retry them")
    if 0 <= train_images < FEW_TRAINING_IMAGES:
        lines.append(f"the baseline learned from {train_images} CT1 training images: these numbers only show that "
                     f"the pipeline works, not how well the method segments (configs/cpu_real.py: real data)")
    lines.append(f"the full tables: {wd / layout.TABLE1}")
    return "\n".join(lines[:MAX_LINES])
