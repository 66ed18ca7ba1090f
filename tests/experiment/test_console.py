"""What a finished sweep prints (dng_jax/experiment/console.py): at most 15 lines that end with the answer, "–"
where a group is too small for a verdict, where the baseline came from, and for a baseline of a handful of
images that its numbers only show that the pipeline works."""

from __future__ import annotations

import numpy as np

from dng_jax.evaluation.scores import ScoreTable, write_scores
from dng_jax.experiment import layout
from dng_jax.experiment.console import MAX_LINES, sweep_summary
from dng_jax.experiment.layout import RunResult, write_test_set


def sweep_workdir(workdir, test: dict[str, list[str]], shift: float):
    """The score files of a sweep: a baseline of 1 training, the classical reference, kMC(5) with 3 runs
    ``shift`` above the baseline on every image, NG(5) equal to it."""
    rng = np.random.default_rng(0)
    types = {i: t for t, ids in test.items() for i in ids}
    truth = dict(zip(types, rng.uniform(0.2, 0.6, len(types))))

    def table(runs: int, up: float) -> ScoreTable:
        return ScoreTable.from_per_image([str(r) for r in range(runs)], [
            {i: float(np.clip(s + up + rng.normal(0, 0.001), 0, 1)) for i, s in truth.items()} for _ in range(runs)],
            types)

    for sub, t in (("baseline", table(1, 0.0)), ("classical", table(1, -0.1))):
        (workdir / sub).mkdir(parents=True)
        write_scores(workdir / sub / "scores.csv", t)
    for method, up in (("kmc", shift), ("ng", 0.0)):
        d = layout.run_dir(workdir, layout.run_name(method, 5))
        d.mkdir(parents=True)
        write_scores(d / "scores.csv", table(3, up))
        layout.write_results(d, [RunResult(method, 5, r, units=5, norm_entropy=0.9, quant_error=1.0, map_known=0.3,
                                           map_unknown=0.3, map_all=0.3) for r in range(3)])
    write_test_set(workdir, test, None)
    return workdir


def test_the_summary_ends_with_the_best_row_and_its_verdict(tmp_path):
    test = {"fluorescence": ["k0"], "brightfield": [f"u{i}" for i in range(12)]}
    wd = sweep_workdir(tmp_path, test, shift=0.1)
    lines = sweep_summary(wd, level=0.95, train_images=4).splitlines()
    assert len(lines) <= MAX_LINES and lines[0] == f"outputs in {wd.resolve()}:"
    assert lines[2].startswith("baseline (trained by this sweep): MAP CT1 ") and "(1 test images)" in lines[2]
    assert "the other types" in lines[2] and "(12 test images)" in lines[2]
    best = lines.index(next(x for x in lines if x.startswith("best row on the other types:")))
    assert lines[best].startswith("best row on the other types: kMC(5) (1 × 3 runs), MAP ")
    assert lines[best + 1].startswith("  against the baseline on the same 12 images: Δ +0.10")
    assert lines[best + 1].endswith(": ✓ better")
    assert any(x.startswith("classical reference (no learning) on the other types: MAP ") for x in lines)
    assert any("4 CT1 training images: these numbers only show that the pipeline works" in x for x in lines)
    assert lines[-1] == f"the full tables: {wd.resolve() / 'table1.md'}"
    assert max(map(len, lines)) < 200  # no paragraph


def test_a_group_too_small_for_a_verdict_says_so_and_a_loaded_baseline_is_named(tmp_path):
    test = {"fluorescence": ["k0", "k1"], "brightfield": ["u0", "u1", "u2"]}
    wd = sweep_workdir(tmp_path, test, shift=0.1)
    text = sweep_summary(wd, level=0.95, checkpoint="runs/my_train", train_images=200,
                         failures={"gng_k5": "boom"}, runs=6)
    assert text.startswith(f"outputs in {wd.resolve()} (the baseline and 6 runs):\n")
    assert "baseline (loaded from sweep.checkpoint runs/my_train): MAP" in text
    assert "against the baseline on the same 3 images: Δ +0.10" in text
    assert ": – too few images for a verdict (n = 3," in text and "improved" not in text
    assert "failed: 1 configurations (gng_k5)" in text
    assert "only show that the pipeline works" not in text  # 200 training images: a real baseline


def test_other_types_without_masks_are_named_not_scored(tmp_path):
    wd = sweep_workdir(tmp_path, {"fluorescence": [f"k{i}" for i in range(10)]}, shift=0.0)
    text = sweep_summary(wd, level=0.95)
    assert "the other types – (no test image)" in text and "nan" not in text
    assert "the other cell types have no test image (no masks): nothing to score there" in text
    assert "best row on CT1: " in text
