"""scripts/variants_study.py: the study table's verdicts are the rows' own (interval and Holm p), not the
interval alone."""

import importlib.util

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("variants_study", ROOT / "scripts" / "variants_study.py")
variants_study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(variants_study)

HEADER = ("name,method,k,group,n,runs,baseline_runs,map_baseline,map,diff,low,high,images_low,images_high,"
          "improved,worse,p_permutation,p_exact,p_holm,verdict,beats_baseline\n")


def row(name, group, low, high, p_holm, verdict, method="kmc"):
    return (f"{name},{method},100,{group},60,2,1,0.2,0.21,{(low + high) / 2},{low},{high},{low},{high},0.6,0.4,"
            f"0.01,0,{p_holm},{verdict},0\n")


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


def test_a_report_without_holm_verdicts_is_named(tmp_path):
    old_header = HEADER.replace(",p_holm,verdict,beats_baseline", "")
    (tmp_path / "differences.csv").write_text(old_header + "NG(100),ng,100,CT1,60,2,1,0.2,0.21,0.01,0,0.02,0,0.02,"
                                              "0.6,0.4,0.01,0\n")
    with pytest.raises(SystemExit, match="differences.csv has no Holm verdicts.*dng_jax.report --workdir"):
        variants_study.row_results("paper", tmp_path)
