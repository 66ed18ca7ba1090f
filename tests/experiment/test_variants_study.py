"""The variants study (python -m dng_jax.variants): the study table's verdicts are the rows' own (interval and
Holm p), not the interval alone."""

import csv
import io
import json

import numpy as np
import pytest
from conftest import tiny_sweep_config

from dng_jax import variants
from dng_jax.config import experiment_config
from dng_jax.errors import DataError
from dng_jax.experiment import variants_study
from dng_jax.experiment.comparisons import DIFFERENCE_FIELDS
from dng_jax.experiment.stability import seed_entropies, stability

HEADER = ",".join(DIFFERENCE_FIELDS) + "\n"


def row(name, group, low, high, p_holm, verdict, method="kmc"):
    values = {"name": name, "method": method, "k": 100, "group": group, "n": 60, "baselines": 1, "runs": 2,
              "design": "1 × 2", "claim": "this step, on this trained network", "map_baseline": 0.2, "map": 0.21,
              "diff": (low + high) / 2, "low": low, "high": high, "se": 0.01, "df": 3, "p": 0.01, "family_size": 3,
              "p_holm": p_holm, "detectable": 0.05, "verdict": verdict, "reason": "", "beats_baseline": 0,
              "networks_low": low, "networks_high": high, "p_networks": 0.01, "p_exact": 0, "improved": 0.6,
              "worse": 0.4}
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([values[f] for f in DIFFERENCE_FIELDS])
    return buf.getvalue()


def test_verdicts_follow_the_rows_holm_adjusted_table(tmp_path):
    lines = [HEADER, row("classical (no learning)", "CT1", -0.1, -0.05, 0.001, "worse", "classical")]
    for g, (low, high, holm, v) in {"CT1": (-0.06, -0.01, 0.01, "worse"),
                                    "without CT1": (0.001, 0.03, 0.29, "not established"),  # interval > 0, Holm no
                                    "all": (-0.02, 0.01, 1.0, "not established")}.items():
        lines.append(row("kMC ensemble(100)", g, low, high, holm, v))
    for g, (low, high, holm, v) in {"CT1": (-0.01, 0.02, 1.0, "not established"),
                                    "without CT1": (0.01, 0.04, 0.003, "better"),
                                    "all": (0.0, 0.03, 0.2, "not established")}.items():
        lines.append(row("NG(100)", g, low, high, holm, v))
    (tmp_path / "differences.csv").write_text("".join(lines))
    (tmp_path / "timings.csv").write_text("step,stage,configuration,seconds,wall_time\n0,baseline,,120,0\n")
    entries = variants_study.row_results("decoder", tmp_path)
    assert [e["configuration"] for e in entries] == ["kMC ensemble(100)", "NG(100)"]  # classical is not a row
    assert entries[0]["diff without CT1"].low > 0 and variants_study.verdict(entries[0]) == "unknown ~"
    assert variants_study.verdict(entries[1]) == "✓"
    entries[1]["verdict CT1"] = "worse"
    assert variants_study.verdict(entries[1]) == "unknown ✓, CT1 ✗"
    variants_study.write_study(tmp_path, entries, {"decoder": variants_study.row_minutes(tmp_path)})
    study = (tmp_path / "study.csv").read_text().splitlines()
    assert "p_holm without CT1" in study[0] and study[1].split(",")[14:16] == ["0.29", "not established"]
    md = (tmp_path / "study.md").read_text()
    assert "| decoder | kMC ensemble(100) |" in md and "| unknown ~ | 2 |" in md and "Holm" in md
    assert (tmp_path / "study.png").stat().st_size > 0


def test_a_report_without_run_level_verdicts_is_named(tmp_path):
    old_header = ("name,method,k,group,n,runs,baseline_runs,map_baseline,map,diff,low,high,images_low,images_high,"
                  "improved,worse,p_permutation,p_exact,p_holm,verdict,beats_baseline\n")  # the two-level report's
    (tmp_path / "differences.csv").write_text(old_header + "NG(100),ng,100,CT1,60,2,1,0.2,0.21,0.01,0,0.02,0,0.02,"
                                              "0.6,0.4,0.01,0,0.02,worse,0\n")
    with pytest.raises(DataError, match="differences.csv has no run-level verdicts.*dng_jax.report --workdir"):
        variants_study.row_results("paper", tmp_path)


def test_rows_copy_only_the_first_rows_finished_stages(tmp_path):
    first, row = tmp_path / "paper", tmp_path / "decoder"
    for name, done in (("baseline", True), ("classical", False), ("cluster_data", True)):
        (first / name).mkdir(parents=True)
        (first / name / "scores.csv").write_text(name)
        if done:
            (first / name / "done.json").write_text("{}")
    (first / "test_set.json").write_text("{}")
    variants_study.seed_shared_stages(first, row)
    assert sorted(p.name for p in row.iterdir()) == ["baseline", "cluster_data", "test_set.json"]
    assert (row / "baseline" / "scores.csv").read_text() == "baseline"
    (first / "baseline" / "scores.csv").write_text("changed")
    variants_study.seed_shared_stages(first, row)  # a row's own stage is never replaced
    assert (row / "baseline" / "scores.csv").read_text() == "baseline"


def test_stability_table_from_the_seeds_entropies(tmp_path):
    """NG's entropies vary less than kMC's: its std is lower and the interval of NG - kMC lies below 0."""
    rng = np.random.default_rng(0)
    done = {"kmc_k5": list(0.9 + 0.05 * rng.standard_normal(24)), "ng_k5": list(0.9 + 0.001 * rng.standard_normal(24))}
    (tmp_path / "stability.json").write_text(json.dumps(done))
    text = stability(tmp_path, None, np.zeros((30, 4)), [5], 24, 500, 0.95)  # every seed cached: no clustering
    assert text.startswith("24 seeds per method and k on the study's 30 clustering vectors")
    assert text.rstrip().endswith("| yes |")
    rows = (tmp_path / "stability.csv").read_text().splitlines()
    assert rows[0] == "k,std_kmc,low_kmc,high_kmc,std_ng,low_ng,high_ng,diff,diff_low,diff_high"
    k, std_kmc, _, _, std_ng, *_, diff_high = rows[1].split(",")
    assert k == "5" and float(std_kmc) == pytest.approx(np.std(done["kmc_k5"], ddof=1), abs=1e-6)
    assert float(std_ng) < float(std_kmc) and float(diff_high) < 0
    assert (tmp_path / "stability.png").stat().st_size > 0


def test_stability_clusters_the_seeds_it_lacks(tmp_path):
    cfg = experiment_config(tiny_sweep_config())
    latent = np.random.default_rng(0).standard_normal((24, 4)).astype(np.float32)
    done = seed_entropies(tmp_path / "stability.json", cfg, latent, [2], 3)
    assert sorted(done) == ["kmc_k2", "ng_k2"] and all(len(v) == 3 and all(0 <= e <= 1 for e in v)
                                                       for v in done.values())
    assert json.loads((tmp_path / "stability.json").read_text()) == done


def test_study_command_names_a_bad_row_in_one_line(tmp_path, capsys):
    assert variants.main(["--checkpoint", "bundled:cpu_real", "--workdir", str(tmp_path / "study"),
                          "--row", "paper:", "--row", "bad:retrain.nope=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "retrain.nope" in err and err.count("\n") == 1
    assert not (tmp_path / "study" / "paper").exists()  # every row is checked before the first sweep starts
    with pytest.raises(SystemExit) as stop:
        variants.main(["--checkpoint", "x", "--stability-ks", "5,a"])
    assert stop.value.code == 2 and "--stability-ks" in capsys.readouterr().err


@pytest.mark.slow
def test_a_study_of_two_rows_on_one_baseline(finished_sweep, tmp_path):
    """Two rows on the tiny sweep's baseline: the second (a retraining field only) starts from the first's
    stages; the table has both rows' configurations and ensembles; the stability table follows."""
    done, _ = finished_sweep
    settings = {"sweep.methods": ("kmc",), "sweep.ks": (2,), "report.tsne_points": 12}
    result = variants_study.run_study(tiny_sweep_config(), str(done / "baseline"), tmp_path,
                                      ["paper:", "frozen:retrain.batch_norm=frozen"], settings, progress=False)
    assert [(e["row"], e["configuration"]) for e in result.entries] == [
        ("paper", "kMC(2)"), ("paper", "kMC ensemble(2)"), ("frozen", "kMC(2)"), ("frozen", "kMC ensemble(2)")]
    assert result.first == tmp_path / "paper" and set(result.minutes) == {"paper", "frozen"}
    latent = tmp_path / "paper" / "cluster_data" / "latent.npy"
    assert (tmp_path / "frozen" / "cluster_data" / "latent.npy").read_bytes() == latent.read_bytes()
    assert (tmp_path / "study.csv").read_text().count("\n") == 5 and "| frozen | kMC(2) |" in (
        tmp_path / "study.md").read_text()
    text = stability(tmp_path, result.config, np.load(latent), [2], 3, 200, 0.95)
    assert "| 2 |" in text and (tmp_path / "stability.png").exists()
