"""python -m dng_jax.evaluate seeds: several seeds' baseline.json as one per-image table that the comparisons read."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dng_jax.evaluation.scores import read_scores

SEEDS = [sys.executable, "-m", "dng_jax.evaluate", "seeds"]
pytestmark = pytest.mark.slow  # every test here starts a subprocess or runs a sweep


def baseline_json(path, scores):
    per_image = {i: {"type": t, "score": s, "known": t == "fluorescence"} for i, (t, s) in scores.items()}
    path.write_text(json.dumps({"per_image": per_image}))
    return path


def test_seeds_become_one_table_with_their_maps(tmp_path):
    a = baseline_json(tmp_path / "a.json", {"x": ("fluorescence", 0.8), "y": ("brightfield", 0.1),
                                            "z": ("brightfield", 0.3)})
    b = baseline_json(tmp_path / "b.json", {"z": ("brightfield", 0.5), "x": ("fluorescence", 0.6),
                                            "y": ("brightfield", 0.2)})
    r = subprocess.run([*SEEDS, "--output", str(tmp_path / "out"), f"s0={a}", f"s1={b}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    table = read_scores(tmp_path / "out" / "test_scores.csv")
    assert table.runs == ("s0", "s1") and table.ids == ("x", "y", "z")
    np.testing.assert_allclose(table.scores, [[0.8, 0.1, 0.3], [0.6, 0.2, 0.5]])
    rows = (tmp_path / "out" / "maps.csv").read_text().splitlines()
    assert rows[0] == "run,map_ct1,map_unknown,map_all,map_brightfield,map_fluorescence"
    assert rows[2] == "s1,0.6000,0.3500,0.4333,0.3500,0.6000"


def test_runs_on_other_images_or_bad_files_are_one_line_errors(tmp_path):
    a = baseline_json(tmp_path / "a.json", {"x": ("fluorescence", 0.8)})
    b = baseline_json(tmp_path / "b.json", {"w": ("fluorescence", 0.8)})
    (tmp_path / "bad.json").write_text("{")
    for args, needle in [([f"s0={a}", f"s1={b}"], "other images"), ([f"s0={tmp_path / 'bad.json'}"], "bad.json"),
                         (["nameless"], "NAME=PATH")]:
        r = subprocess.run([*SEEDS, "--output", str(tmp_path / "o"), *args],
                           capture_output=True, text=True)
        assert r.returncode != 0 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
