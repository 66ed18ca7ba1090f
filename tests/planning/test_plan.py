"""python -m dng_jax.plan (compile-only memory, FLOPs, projected time) and scripts/tools/gpu_check.sh --dry-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, tiny_sweep_config

from dng_jax import config, planning
from dng_jax.config import experiment_config
from dng_jax.errors import DataError
from dng_jax.evaluation.design_power import VarianceComponents
from dng_jax.planning.designs import design_costs, format_designs, image_floor, read_components
from dng_jax.planning.report import Plan, StepPlan
from dng_jax.segmentation import inference


def test_chunk_for_memory_is_the_largest_equal_split_that_fits():
    # 1 fixed + 1 resident + 2 per run within 20: at most 9 runs -> 6 chunks of 48 -> 8 runs each
    assert planning.chunk_for_memory(2, 1, 1, 20, 48) == 8
    assert planning.chunk_for_memory(2, 1, 1, 1e9, 48) == 48  # everything fits
    assert planning.chunk_for_memory(2, 1, 1, 3, 48) == 1  # not even one: never below 1 (the plan says so)
    assert planning.chunk_for_memory(1, 0, 0, 25, 48) == 24  # 25 fit -> still 2 chunks -> 24 each


@pytest.mark.parametrize("h,w,tile,tta", [(256, 320, 1024, False), (1040, 1388, 1024, False), (520, 696, 256, False),
                                          (360, 360, 1024, True), (600, 300, 256, True)])
def test_forward_shapes_are_the_calls_predict_probs_makes(monkeypatch, h, w, tile, tta):
    seen = Counter()

    def fake_forward(model, variables, images, adabn=False):
        seen[tuple(images.shape[1:3])] += 1
        return jnp.full(images.shape[:3] + (3,), 1 / 3, jnp.float32)

    monkeypatch.setattr(inference, "softmax_forward", fake_forward)
    inference.predict_probs({"params": {}}, None, np.zeros((h, w, 3), np.uint8), tile_size=tile, tta=tta)
    assert planning.forward_shapes(h, w, tile, tta=tta) == seen


def test_workload_json_round_trip_and_bad_file(tmp_path):
    w = planning.Workload(539, 125, {"256x320": 107, "1024x1024": 16, "256x256": 2}, "x")
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"workload": w.to_json()}))
    assert planning.workload_from_json(str(path))._replace(source="x") == w
    path.write_text("{}")
    with pytest.raises(DataError, match="plan.json"):
        planning.workload_from_json(str(path))


@pytest.mark.slow
def test_plan_of_the_tiny_sweep_picks_the_chunk_that_fits():
    c = tiny_sweep_config()
    c.sweep.methods, c.sweep.seeds, c.sweep.seeds_per_chunk = ("kmc", "gng"), 6, 6
    cfg = experiment_config(c)
    work = planning.Workload(4, 3, {"64x96": 2, "40x40": 1}, "test")
    free = planning.plan_sweep(cfg, work, stages=("retrain",), n_time=1)
    cm = free.chunk_memory
    assert cm["per_run_bytes"] > 0 and cm["runs_2_bytes"] > cm["runs_1_bytes"]
    assert free.seeds_per_chunk == 6  # no device memory on a CPU: the config's chunk
    # room for 3.5 runs beside the fixed part and the resident data -> 3 fit -> 2 equal chunks of 3
    budget = (cm["fixed_bytes"] + cm["resident_bytes"] + 3.5 * cm["per_run_bytes"]) / planning.MEMORY_HEADROOM
    tight = planning.plan_sweep(cfg, work, device_memory=int(budget), stages=("retrain", "cluster", "eval"), n_time=1)
    assert tight.seeds_per_chunk == 3
    (retrain,) = [s for s in tight.steps if s.stage == "retrain"]
    steps_per_epoch = cfg.cluster_data.n_images // cfg.retrain.batch_size
    assert retrain.calls == 2 * 2 * cfg.retrain.epochs * steps_per_epoch  # 2 configurations x 2 chunks
    assert retrain.bytes_per_device <= budget
    assert [s.step for s in tight.steps if s.stage == "cluster"][0].startswith("kmc(2) x 6 seeds")
    forwards = {s.step: s.calls for s in tight.steps if s.stage == "eval" and s.step.startswith("forward")}
    networks = 1 + 6 * 2
    assert forwards == {"forward 64x96": 2 * networks, "forward 64x64": networks}  # padded to the stride (32)
    assert all(s.projected_s > 0 for s in tight.steps)
    assert "sweep.seeds_per_chunk = 3" in planning.format_plan(tight)


@pytest.mark.slow
def test_measured_and_projected_plans_count_the_calls_of_sweep_steps(tmp_path):
    """Both plans take their steps and calls from one count model (a file-loaded method and decoder tuning
    included, as rows not planned), and a plan projected from a measured plan's JSON at the same config gives
    every step its measured time per call back (a retraining step timed with fewer runs, NG's and kMC's
    patterns over the whole schedule and GNG's over one epoch, the host's scoring per image)."""
    c = tiny_sweep_config()
    c.sweep.methods = ("kmc", "ng", "gng", f"{ROOT / 'examples' / 'minibatch_kmeans.py'}:minibatch_kmeans")
    c.sweep.seeds, c.sweep.seeds_per_chunk = 3, 3
    c.retrain.decoder_epochs = 1
    cfg = experiment_config(c)
    work = planning.Workload(5, 3, {"64x96": 2, "40x40": 1}, "test")
    measured = planning.plan_sweep(cfg, work, n_time=1, cluster_steps=4)
    path = tmp_path / "plan.json"
    planning.write_plan_json(measured, str(path))
    projected = planning.project_plan(cfg, work, planning.read_timings([path]))
    specs = planning.sweep_steps(cfg, work, seeds_per_chunk=measured.seeds_per_chunk)
    expected = [(s.stage, s.key, s.calls, s.units) for s in specs]
    assert [(s.stage, s.key, s.calls, s.units) for s in measured.steps] == expected
    assert [(s.stage, s.key, s.calls, s.units) for s in projected.steps] == expected
    assert {s.stage for s in specs} == set(planning.STAGES) and sum(s.key is None for s in specs) == 2
    assert [s.call_s for s in projected.steps] == pytest.approx([s.call_s for s in measured.steps], rel=1e-9)
    (gng,) = [s for s in specs if s.key and s.key[:2] == ("cluster", "gng")]
    assert (gng.calls, gng.units) == (12 * 2, 1)  # 12 patterns x 2 epochs, one epoch a call


@pytest.mark.slow
def test_plan_command_errors_are_one_line(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-m", "dng_jax.plan", "--config", str(ROOT / "configs" / "default.py"),
                        "--workload", str(tmp_path / "missing.json")], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "missing.json" in r.stderr


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    """The GPU check's phases at tiny sizes on the CPU: every phase finishes and the summary has its tables."""
    out = tmp_path / "gc"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "tools" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    for phase in ("pilot", "bench_retrain", "env", "plan", "bench_train", "bench_cluster"):
        assert (out / f"{phase}.done").exists(), phase
    summary = (out / "summary.md").read_text()
    assert "| stage | step |" in summary and "| batch | images/s |" in summary and "kmc  k=" in summary
    assert json.loads((out / "plan.json").read_text())["projected_s"]["total"] > 0
    rows = json.loads((out / "bench_retrain.json").read_text())["rows"]  # lax convs grouped under vmap, matmuls not
    assert [(r["conv"], r["grouped_convs"] > 0) for r in rows] == [("xla", True), ("gemm", False)]
    assert "| xla_f32 | xla |" in summary
    # the pilot's outputs fit what a lent machine sends back: at most 8 files, one folder down
    files = list((out / "pilot").rglob("*"))
    assert 6 <= len(files) <= 8 and all(f.is_file() and f.parent == out / "pilot" for f in files)
    assert {"results.csv", "table1.md", "differences.csv", "figures.tar", "pilot.log"} <= {f.name for f in files}
    assert "kMC(2)" in (out / "pilot" / "table1.md").read_text()
    # a rerun resumes: every phase is done already
    again = subprocess.run(["bash", str(ROOT / "scripts" / "tools" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and again.stdout.count("done before") == 6


def test_the_pilot_is_projected_within_eight_minutes_on_one_h200():
    """configs/paper_pilot.py, projected from the H200's recorded step times (docs/gpu/), compiling included,
    on the wide protocol's images of the real DSB2018 set (458 CT1 training images, 206 scored)."""
    cfg = experiment_config(config.load_config(ROOT / "configs" / "paper_pilot.py"))
    assert (cfg.model.stage_sizes, cfg.sweep.methods, cfg.sweep.ks, cfg.retrain.epochs) == ((3, 4, 6, 3), ("kmc",), (500,), 20)
    shapes = {"256x256": 51, "520x696": 17, "360x360": 12, "603x1272": 1, "512x640": 1, "256x320": 108,
              "1024x1024": 16}  # python -m dng_jax.summary's wide protocol: test and validation images
    work = planning.Workload(458, sum(shapes.values()), shapes, "test")
    timings = planning.read_timings([ROOT / "docs" / "gpu" / "plan.json",
                                     ROOT / "docs" / "gpu" / "retrain_bf16.json"])
    p = planning.project_plan(cfg, work, timings)
    (retrain,) = [s for s in p.steps if s.stage == "retrain"]
    assert retrain.calls == 20 * (5000 // 32) and retrain.call_s == pytest.approx(0.141 / 24 * cfg.sweep.seeds)
    assert all(s.call_s is not None for s in p.steps), [s.step for s in p.steps if s.call_s is None]
    assert p.total_s() + p.compile_s() <= 8 * 60
    assert "projected for NVIDIA H200" in planning.format_plan(p)


def test_designs_that_detect_a_difference_and_their_time(tmp_path):
    """python -m dng_jax.plan prints, after the plan, the baselines and runs a comparison needs to detect
    --detect on the unknown types, from the shipped variance components (or --variance FILE)."""
    shipped, source = read_components()
    assert shipped.n_images > 0 and "CPU scale" in source
    cfg = experiment_config(tiny_sweep_config())
    steps = [StepPlan(stage, stage, None, None, None, 0.0, 1.0, calls) for stage, calls in
             (("train", 100), ("features", 10), ("cluster", 30), ("retrain", 60), ("eval", 30))]
    plan = Plan("cpu", "cpu", 1, None, 1, {}, None, steps)
    quiet = VarianceComponents(1e-8, 1e-8, 1e-8, 1e-8, 500, 4)
    costs = design_costs(plan, cfg, quiet, 0.02, 4)
    assert [c.baselines for c in costs] == [1, 2, 3, 4, 6, 8] and all(c.reaches for c in costs)
    # per baseline: training + clustering data (110 s); per run: one configuration's share of the rest (120 s /
    # (3 configurations x 2 seeds))
    assert costs[0].seconds == 110 + costs[0].runs * 20
    loud = quiet._replace(between_baseline=1e-2)  # the step's effect varies between trainings: B matters
    general = [c for c in design_costs(plan, cfg, loud, 0.02, 4) if c.baselines > 1]
    assert [c.detectable for c in general] == sorted((c.detectable for c in general), reverse=True)
    path = tmp_path / "vc.json"
    path.write_text(json.dumps({"source": "made up", "components": quiet._asdict()}))
    assert read_components(path)[0] == quiet
    text = format_designs(costs, 0.02, 4, "made up", image_floor(quiet, 4))
    assert "| 1 | 2 |" in text and "made up" in text and "No number" not in text and "On one baseline" not in text
