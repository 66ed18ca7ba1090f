"""python -m dng_jax.evaluate networks / checkpoint: trained networks scored and paired on the same images,
checked against what the tiny sweep scored itself."""

import csv
import json

import numpy as np
import pytest
from conftest import ROOT

from dng_jax import evaluate
from dng_jax.data.dsb2018 import bundled_minidata_path
from dng_jax.errors import InputError
from dng_jax.evaluation.networks import compare_networks, networks_csv, networks_markdown, read_per_image
from dng_jax.evaluation.scores import read_scores


@pytest.mark.slow
def test_checkpoint_scores_what_the_sweep_scored(finished_sweep, tmp_path, capsys):
    """The baseline's checkpoint scored again on its config's test images gives the sweep's own scores."""
    workdir, _ = finished_sweep
    out = tmp_path / "again.json"
    assert evaluate.main(["checkpoint", "--checkpoint", str(workdir / "baseline"), "--output", str(out),
                          "--no-progress"]) == 0
    assert "MAP" in capsys.readouterr().out
    again = json.loads(out.read_text())
    ids = list(again["per_image"])
    sweep = read_scores(workdir / "baseline" / "scores.csv")  # the test images and the validation images
    assert len(ids) == 10 and set(ids) <= set(sweep.ids)
    sweep = sweep.select(ids)
    for j, i in enumerate(ids):
        assert again["per_image"][i]["score"] == pytest.approx(sweep.scores[0, j], abs=1e-8)
        assert again["per_image"][i]["type"] == sweep.types[j]
    # and paired with the sweep's scores: no difference on any image
    assert evaluate.main(["networks", f"sweep={workdir / 'baseline' / 'scores.csv'}",
                          f"again={out}"]) == 0
    table = capsys.readouterr().out
    assert "| all | 10 |" in table and "+0.000 [+0.000, +0.000] – (these networks on these images), 0% improved" in table


@pytest.mark.slow
def test_networks_classical_is_scored_saved_and_read_back(finished_sweep, tmp_path, capsys):
    """``classical=classical`` segments the first file's images of --data with --config's settings: the
    sweep's classical stage (configs/paper.py's settings, the mini-set) on every image; --save-classical
    reads back alike."""
    workdir, _ = finished_sweep
    paper, saved, table_csv = ROOT / "configs" / "paper.py", tmp_path / "classical.csv", tmp_path / "table.csv"
    stage = workdir / "classical" / "scores.csv"
    assert evaluate.main(["networks", "--config", str(paper), "--data", str(bundled_minidata_path()),
                          f"sweep={stage}", "here=classical", "--save-classical", str(saved),
                          "--csv", str(table_csv)]) == 0
    first = capsys.readouterr().out
    np.testing.assert_allclose(read_scores(saved).select(read_scores(stage).ids).scores, read_scores(stage).scores)
    rows = list(csv.DictReader(open(table_csv)))
    assert {r["group"] for r in rows} >= {"CT1", "without CT1", "all", "type fluorescence"}
    assert all(float(r["diff"]) == 0 and r["a"] == "sweep" and r["b"] == "here" for r in rows)
    again_csv = tmp_path / "again.csv"
    assert evaluate.main(["networks", "--config", str(paper), f"sweep={stage}",
                          f"here={saved}", "--csv", str(again_csv)]) == 0
    assert capsys.readouterr().out.splitlines()[1:3] == first.splitlines()[1:3]  # the same table, read back
    again = list(csv.DictReader(open(again_csv)))
    assert [r["group"] for r in again] == [r["group"] for r in rows]
    assert all(abs(float(r["mean_b"]) - float(q["mean_b"])) < 1e-4 for r, q in zip(again, rows))


def test_networks_table_pairs_runs_and_images():
    """Two runs of B against one of A, on the images both scored; a type with no image has no row."""
    a = {"x": ("fluorescence", np.array([0.5])), "y": ("brightfield", np.array([0.2])),
         "only_a": ("brightfield", np.array([0.9]))}
    b = {"x": ("fluorescence", np.array([0.7, 0.5])), "y": ("brightfield", np.array([0.4, 0.2]))}
    c = compare_networks({"a": a, "b": b})
    assert c.n_images == 2 and list(c.groups) == ["CT1", "without CT1", "all", "type brightfield", "type fluorescence"]
    assert c.compared[("all", "b")].result.estimate == pytest.approx(0.1)
    md = networks_markdown(c)
    assert md.startswith("2 images in all scored") and "| images | n | a (1 run) | b (2 runs) | b - a |" in md
    assert networks_csv(c).splitlines()[3].startswith('"all",2,a,b,1,2,0.3500,0.4500,0.1000,')


def test_networks_errors_are_one_line(tmp_path, capsys):
    for args, needle in [(["nameless"], "is not NAME=PATH"), ([f"a={tmp_path / 'none.json'}"], "does not exist"),
                         (["a=classical"], "at least one baseline.json")]:
        assert evaluate.main(["networks", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and err.count("\n") == 1, err
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="bad.json: not a baseline.json"):
        read_per_image(tmp_path / "bad.json")
