"""The report's tables and figures (dng_jax/experiment/report.py), the sweep's scores read back from a work dir,
and ``python -m dng_jax.report --compare`` on them."""

from __future__ import annotations

import csv
import json

import numpy as np

from dng_jax import report as report_cli
from dng_jax.data.partition import KNOWN_TYPE
from dng_jax.evaluation.scores import ScoreTable, view_maps, write_scores
from dng_jax.experiment import comparisons  # (its test_groups would be collected as a test if imported by name)
from dng_jax.evaluation.run_level import CONDITIONAL, GENERAL
from dng_jax.experiment.comparisons import DIFFERENCE_FIELDS, SweepScores, validation_groups
from dng_jax.experiment import layout
from dng_jax.experiment.layout import RunResult, write_test_set
from dng_jax.experiment.report import (map_vs_k_figure, read_results_csv, read_sweep_scores, table1_markdown,
                                       write_report)


def _rows():
    rows = []
    for method, k, maps in (("kmc", 5, (0.4, 0.2)), ("kmc", 5, (0.5, 0.3)), ("ng", 5, (0.45, 0.25)),
                            ("gng", 5, (0.3, 0.1)), ("gng", 5, (0.5, 0.1))):
        rows.append(RunResult(method, k, seed=len(rows), units=7 if method == "gng" else k, norm_entropy=0.9,
                              quant_error=1.5, map_known=maps[0], map_unknown=maps[1],
                              map_all=(maps[0] + maps[1]) / 2))
    return rows


def test_table1_by_hand():
    table = table1_markdown(_rows(), {"map_known": 0.41, "map_unknown": 0.21, "map_all": 0.23})
    lines = table.splitlines()
    assert "| baseline | 1 | - | 0.410 | 0.210 | 0.230 |" in lines
    # kMC(5): known 0.4, 0.5 -> mean 0.45, sample std 0.0707
    assert "| kMC(5) | 2 | 5 | 0.450 ± 0.071 | 0.250 ± 0.071 | 0.350 ± 0.071 |" in lines
    assert "| NG(5) | 1 | 5 | 0.450 ± 0.000 | 0.250 ± 0.000 | 0.350 ± 0.000 |" in lines
    assert [ln.split("|")[1].strip() for ln in lines if ln.startswith("| ")][1:] == [
        "baseline", "kMC(5)", "NG(5)", "GNG(5)"]


def test_write_report_round_trip(tmp_path):
    rows = _rows()
    paths = write_report(tmp_path, rows, {"map_known": 0.41, "map_unknown": 0.21, "map_all": 0.23})
    for p in paths:
        assert p.stat().st_size > 0
    back = read_results_csv(tmp_path / "results.csv")
    assert len(back) == len(rows)
    assert {(r.method, r.seed, r.map_known) for r in back} == {(r.method, r.seed, r.map_known) for r in rows}


def test_fig6_legend_covers_no_point_or_line():
    """The legend sits outside the axes (right of them), so it cannot cover the classical reference line
    or any point, and the saved figure (bbox_inches="tight") still holds it."""
    rows = _rows()
    base = {"map_known": 0.41, "map_unknown": 0.21, "map_all": 0.23}
    intervals = {"baseline": (0.41, 0.38, 0.44), "classical": (0.55, 0.5, 0.6), ("kmc", 5): (0.45, 0.4, 0.5)}
    fig = map_vs_k_figure(rows, base, "map_known", "MAP on the known cell type (Fig. 6)", intervals)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    inside = ax.get_window_extent(renderer)
    classical = [ln for ln in ax.get_lines() if ln.get_label() == "classical (no learning)"]
    assert classical and inside.y0 < ax.transData.transform((0, 0.55))[1] < inside.y1  # the line is drawn
    assert legend.x0 > inside.x1 and not legend.overlaps(inside)
    whole = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)  # what is saved, in pixels
    assert whole.x1 >= legend.x1 - 1 and whole.y0 <= legend.y0 + 1


def test_a_group_without_test_images_says_so_in_words():
    """A new experiment without masks: Table I shows "–" and why, Fig. 7 a sentence, not nan or empty axes."""
    nan = float("nan")
    rows = [r._replace(map_unknown=nan, map_all=r.map_known) for r in _rows()]
    table = table1_markdown(rows, {"map_known": 0.41, "map_unknown": nan, "map_all": 0.41})
    assert "nan" not in table and "| baseline | 1 | - | 0.410 | – | 0.410 |" in table
    assert "| kMC(5) | 2 | 5 | 0.450 ± 0.071 | – | 0.450 ± 0.071 |" in table
    assert "– in without CT1 (unknown): no test image there, nothing to score" in table
    fig = map_vs_k_figure(rows, {"map_unknown": nan}, "map_unknown", "MAP on the unknown cell types (Fig. 7)")
    ax = fig.axes[0]
    assert not ax.axison and ax.get_legend() is None and not ax.get_lines()
    assert "nothing to score" in " ".join(t.get_text() for t in ax.texts)


def test_fig6_legend_names_only_what_is_drawn():
    """One baseline training has no interval: no band, and no "baseline interval" in the legend; with
    several the band is drawn at the report's level and named so."""
    base = {"map_known": 0.41, "map_unknown": 0.21, "map_all": 0.23}
    one = {"baseline": (0.41, float("nan"), float("nan")), ("kmc", 5): (0.45, 0.4, 0.5)}
    several = {"baseline": (0.41, 0.38, 0.44), ("kmc", 5): (0.45, 0.4, 0.5)}
    for intervals, level, band in ((one, 0.95, None), (several, 0.9, "baseline 90% interval")):
        ax = map_vs_k_figure(_rows(), base, "map_known", "Fig. 6", intervals, level=level).axes[0]
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        drawn = [a.get_label() for a in ax.patches + ax.get_lines() + ax.collections if not a.get_label().startswith("_")]
        assert sorted(labels) == sorted(drawn), (labels, drawn)
        assert [x for x in labels if "interval" in x] == ([band] if band else [])
        assert f"bars: {level:.0%} interval" in ax.get_title()
    # one test image: no interval, no bar, and the title promises none
    nan3 = (float("nan"),) * 3
    ax = map_vs_k_figure(_rows(), base, "map_known", "Fig. 6", {"baseline": nan3, ("kmc", 5): nan3}).axes[0]
    assert "bars" not in ax.get_title() and not ax.containers


def _scores(baseline_runs, known="fluorescence", val=True):
    """Two types of 12 test images (and 6 + 6 validation images), kMC(5) clearly up, NG(5) the same."""
    rng = np.random.default_rng(0)
    types = {f"k{i}": known for i in range(18)} | {f"u{i}": "brightfield" for i in range(18)}
    ids = list(types)
    truth = rng.uniform(0.2, 0.6, len(ids))

    def table(runs, shift, sd=0.01):
        return ScoreTable.from_per_image([str(r) for r in range(runs)], [dict(zip(ids, np.clip(
            truth + shift + rng.normal(0, sd, len(ids)), 0, 1))) for _ in range(runs)], types)

    return SweepScores(baseline=table(baseline_runs, 0.0), classical=table(1, -0.1),
                       runs={("kmc", 5): table(3, 0.05), ("ng", 5): table(3, 0.0)},
                       test={known: ids[:12], "brightfield": ids[18:30]},
                       val={known: ids[12:18], "brightfield": ids[30:]} if val else {}, known_type=known)


def _rows_of(scores):
    return [RunResult(m, k, r, units=k, norm_entropy=0.9, quant_error=1.0,
                      **view_maps(dict(zip(t.ids, t.scores[r])), scores.test, scores.known_type))
            for (m, k), t in scores.runs.items() for r in range(len(t.runs))]


def test_report_validation_table_baseline_runs_and_holm(tmp_path):
    scores = _scores(baseline_runs=3)
    base = {"map_known": 0.0, "map_unknown": 0.0, "map_all": 0.0}  # replaced by the 3 runs' mean
    paths = write_report(tmp_path, _rows_of(scores), base, "", scores)
    table = (tmp_path / "table1.md").read_text()
    runs = [view_maps(dict(zip(scores.baseline.ids, s)), scores.test) for s in scores.baseline.scores]
    known = np.array([r["map_known"] for r in runs])
    assert f"| baseline | 3 | - | {known.mean():.3f} ± {known.std(ddof=1):.3f} |" in table
    # the runs sit on baseline 0 (1 x 3: the claim is about that network); the classical reference against
    # the baseline's 3 trainings is a general claim; Holm within each column's family of 3 rows
    assert "| kMC(5) | 1 × 3 | on this baseline |" in table and "| classical (no learning) | 3 × – | general |" in table
    assert table.count("family sizes CT1: 3, without CT1: 3, all: 3") == 2
    test_part, val_part = table.split("## Validation (for choosing)")
    assert "Δ CT1 (n=12)" in test_part and "Δ CT1 (n=6)" in val_part and "## MAP per cell type" in val_part
    assert "Better than the baseline: kMC(5) (CT1, without CT1, all)." in test_part
    with open(tmp_path / "differences.csv", newline="") as f:
        test_rows = list(csv.DictReader(f))
    with open(tmp_path / "differences_validation.csv", newline="") as f:
        val_rows = list(csv.DictReader(f))
    assert tuple(test_rows[0]) == DIFFERENCE_FIELDS == tuple(val_rows[0])
    assert tmp_path / "differences_validation.csv" in paths
    kmc = {r["group"]: r for r in test_rows if r["name"] == "kMC(5)"}
    assert kmc["all"]["runs"] == "3" and kmc["all"]["baselines"] == "1" and kmc["all"]["verdict"] == "better"
    assert kmc["all"]["claim"] == "this step, on this trained network" and kmc["all"]["family_size"] == "3"
    assert float(kmc["all"]["low"]) < float(kmc["all"]["networks_low"])  # the runs widen the interval
    assert 0 < float(kmc["all"]["detectable"]) < 0.05
    assert {r["n"] for r in val_rows if r["group"] == "all"} == {"12"}
    before = {p.name: p.read_bytes() for p in paths if p.suffix in (".md", ".csv")}
    write_report(tmp_path, _rows_of(scores), base, "", scores)  # deterministic, byte for byte
    assert {p.name: p.read_bytes() for p in paths if p.suffix in (".md", ".csv")} == before


def test_a_group_of_one_image_gets_no_verdict_and_no_p(tmp_path):
    """The default's single CT1 test image: "–" for the verdict and for the p-values, not "1"."""
    scores = _scores(baseline_runs=1, val=False)
    one = {"fluorescence": scores.test["fluorescence"][:1], "brightfield": scores.test["brightfield"]}
    scores = scores._replace(test=one)
    base = view_maps(dict(zip(scores.baseline.ids, scores.baseline.scores[0])), scores.test)
    write_report(tmp_path, _rows_of(scores), base, "", scores)
    table = (tmp_path / "table1.md").read_text()
    kmc = next(line for line in table.splitlines() if line.startswith("| kMC(5) | 1 × 3 |")).split(" | ")
    assert kmc[3].endswith("(no interval) –") and kmc[-1].startswith("– / ") and kmc[-2].startswith("– / ")


def test_report_with_one_baseline_run_says_what_it_claims(tmp_path):
    scores = _scores(baseline_runs=1, val=False)
    base = view_maps(dict(zip(scores.baseline.ids, scores.baseline.scores[0])), scores.test)
    paths = write_report(tmp_path, _rows_of(scores), base, "", scores)
    table = (tmp_path / "table1.md").read_text()
    assert "| kMC(5) | 1 × 3 | on this baseline |" in table
    assert "| classical (no learning) | 1 × – | these networks |" in table
    assert "Validation" not in table and not (tmp_path / "differences_validation.csv").exists()
    assert tmp_path / "differences_validation.csv" not in paths


def test_nested_runs_give_the_general_claim_with_the_baselines_as_the_top_level(tmp_path):
    """Runs on each of 2 baselines, each paired with its own: the baselines are the top level (1 df), so the
    interval is far wider than the one of the same runs read as 6 runs on one baseline."""
    scores = _scores(baseline_runs=2, val=False)
    six = scores.runs[("kmc", 5)]
    six = ScoreTable.from_per_image([str(r) for r in range(6)], [dict(zip(six.ids, row)) for row in
                                                                  np.concatenate([six.scores, six.scores + 0.01])],
                                    dict(zip(six.ids, six.types)))
    nested = scores._replace(runs={("kmc", 5): six}, run_baselines={("kmc", 5): (0, 0, 0, 1, 1, 1)})
    flat = scores._replace(runs={("kmc", 5): six})
    names = {("kmc", 5): "kMC(5)"}
    (n,), (f,) = (c for c in comparisons.compare_all(nested, names, level=0.95) if c.key), \
        (c for c in comparisons.compare_all(flat, names, level=0.95) if c.key)
    assert n.design == "2 × 3" and n.baselines == 2 and f.design == "1 × 6"
    assert n.groups["all"].result.claim == GENERAL and f.groups["all"].result.claim == CONDITIONAL
    width = {k: c.groups["all"].result.high - c.groups["all"].result.low for k, c in (("n", n), ("f", f))}
    assert width["n"] > 3 * width["f"]
    # each run against its own baseline: the estimate is the mean of the two baselines' differences
    ids = comparisons.test_groups(scores)["all"]
    x, y = scores.baseline.select(ids).scores, six.select(ids).scores
    expected = np.mean([y[:3].mean() - x[0].mean(), y[3:].mean() - x[1].mean()])
    assert np.isclose(n.groups["all"].result.estimate, expected)


def test_sweep_scores_read_the_split_and_the_known_type(tmp_path):
    scores = _scores(baseline_runs=2, known="tissue")
    write_scores_dir(tmp_path, scores)
    write_test_set(tmp_path, scores.test, None, scores.val, "tissue")
    back = read_sweep_scores(tmp_path)
    assert back.val == scores.val and back.known_type == "tissue" and back.test == scores.test
    assert comparisons.test_groups(back)["CT1"] == scores.test["tissue"]  # the known type, not the constant
    assert validation_groups(back)["without CT1"] == scores.val["brightfield"]
    assert back.baseline.scores.shape == (2, 36)
    # a work dir from before the validation split: no "val" / "known_type" keys
    (tmp_path / "test_set.json").write_text(json.dumps({"test": scores.test, "every_unknown": None}))
    old = read_sweep_scores(tmp_path)
    assert old.val == {} and old.known_type == KNOWN_TYPE and not any(validation_groups(old).values())


def write_scores_dir(workdir, scores):
    """The score files a sweep leaves: baseline/, classical/, runs/<m>_k<k>/ (with results.json: its rows
    name the configuration's method and k)."""
    for sub, table in (("baseline", scores.baseline), ("classical", scores.classical)):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
        write_scores(workdir / sub / "scores.csv", table)
    for (method, k), table in scores.runs.items():
        d = layout.run_dir(workdir, layout.run_name(method, k))
        d.mkdir(parents=True, exist_ok=True)
        write_scores(d / "scores.csv", table)
        layout.write_results(d, [r for r in _rows_of(scores) if (r.method, r.k) == (method, k)])


def test_sweeps_of_separate_baselines_combine_into_the_nested_table(tmp_path):
    """python -m dng_jax.report --combine: one sweep per trained baseline (each with the baseline's own
    score table) becomes one nested design, each run paired with its own baseline."""
    rng = np.random.default_rng(3)
    dirs = []
    for b in range(2):
        s = _scores(baseline_runs=1, val=False)
        shift = rng.normal(0, 0.02)
        s = s._replace(baseline=s.baseline._replace(scores=np.clip(s.baseline.scores + shift, 0, 1)))
        d = tmp_path / f"sweep_b{b}"
        write_scores_dir(d, s)
        write_test_set(d, s.test, None, s.val, s.known_type)
        dirs.append(d)
    assert report_cli.main(["--workdir", str(tmp_path / "nested"), "--combine", *map(str, dirs)]) == 0
    table = (tmp_path / "nested" / "table1.md").read_text()
    assert "| kMC(5) | 2 × 3 | general |" in table and "| baseline | 2 |" in table
    rows = list(csv.DictReader(open(tmp_path / "nested" / "results.csv")))
    assert sorted({r["baseline"] for r in rows}) == ["0", "1"] and len(rows) == 12
    assert json.loads((tmp_path / "nested" / "combined_from.json").read_text())["workdirs"] == list(map(str, dirs))
    # sweeps on other test images do not combine; nor does a work dir with itself as the output
    write_test_set(dirs[1], {"fluorescence": ["x"]}, None)
    assert report_cli.main(["--workdir", str(tmp_path / "bad"), "--combine", *map(str, dirs)]) == 2
    assert report_cli.main(["--workdir", str(dirs[0]), "--combine", *map(str, dirs)]) == 2


def test_compare_configurations_reads_one_rule_and_the_validation_split(tmp_path, capsys):
    """Issue 23: an interval that excludes 0 was printed next to "no difference shown" when there were
    too few images for a verdict. Now the rule reads as one; --split validation compares the validation
    images. (The command runs in this process, as ``python -m dng_jax.report --compare``.)"""
    full = _scores(baseline_runs=1)
    few = full._replace(test={t: ids[:4] for t, ids in full.test.items()})  # 8 test images, 4 per type
    write_scores_dir(tmp_path, few)
    write_test_set(tmp_path, few.test, None, few.val, few.known_type)

    def run(*args):
        assert report_cli.main(["--workdir", str(tmp_path), "--group", "all", *args]) == 0
        return capsys.readouterr().out

    out = run("--compare", "baseline", "kmc:5", "--compare", "baseline", "ng:5")
    head, kmc, ng = out.splitlines()
    assert head.startswith("all (test): 8 images") and "Holm over 2 pair(s)" in head
    low = float(kmc.split("[")[1].split(",")[0])
    assert low > 0 and kmc.endswith("too few images for a verdict (n < 10 or a type < 5)")
    assert ng.endswith("too few images for a verdict (n < 10 or a type < 5)") and "no difference" not in out
    val = run("--split", "validation", "--pair", "baseline", "kmc:5")  # the old spelling of --compare
    assert val.startswith("all (validation): 12 images") and "on this baseline (3 runs on 1 baseline)" in val
    assert val.rstrip().endswith("B better")  # 6 images per type, all up by 0.05
