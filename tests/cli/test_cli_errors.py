"""Bad input on every command line: one line ``error: ...`` naming what is wrong, the documented exit
status, no traceback, and (for config values) no work done before the check."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ORBAX_LOOP_WARNING, ROOT, synthetic_samples, tiny_config, tiny_sweep_config
from PIL import Image

from dng_jax import cli, cluster, evaluate, export_labels, predict, report, summary
from dng_jax import sweep as sweep_cli
from dng_jax.config import load_config
from dng_jax.errors import ConfigError, ConfigMismatchError, WorkdirBusyError
from dng_jax.experiment.sweep import run_sweep
from dng_jax.io.workdir import WorkdirLock
from dng_jax.segmentation.trainer import train_and_evaluate


def one_line_error(capsys, *needles) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert str(n) in err, (n, err)
    return err


def run_module(*args, cwd=ROOT, timeout=300):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


# ----------------------------------------------------------------------------------------- config values


@pytest.mark.slow
@pytest.mark.parametrize("override, field", [
    ("--config.sweep.seeds=0", "sweep.seeds"),
    ("--config.sweep.seeds=-2", "sweep.seeds"),
    ("--config.sweep.ks=abc", "sweep.ks"),
    ("--config.sweep.methods=('kmc','nope')", "sweep.methods"),
    ("--config.retrain.crop_size=512", "retrain.crop_size"),
])
def test_bad_sweep_values_stop_before_any_work(tmp_path, override, field):
    wd = tmp_path / "wd"
    proc = run_module("dng_jax.sweep", "--workdir", str(wd), "--no-progress", override)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: config field") and field in lines[0], proc.stderr
    assert not wd.exists()  # checked before the baseline trains


def test_typed_config_names_fields():
    cfg = tiny_sweep_config()
    cfg.sweep.seeds = 0
    with pytest.raises(ConfigError, match=r"sweep\.seeds: must be >= 1, got 0"):
        run_sweep(cfg, "/nonexistent/never-created")
    cfg = tiny_sweep_config()
    cfg.sweep.ks = ("abc",)
    with pytest.raises(ConfigError, match=r"sweep\.ks: expected an integer, got 'abc'"):
        run_sweep(cfg, "/nonexistent/never-created")


@pytest.mark.slow
def test_help_exits_zero_and_fields_are_listed():
    for module in ("dng_jax.sweep", "dng_jax.train"):
        proc = run_module(module, "--help")
        assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr
        assert "--quiet" in proc.stdout and "--no-progress" in proc.stdout and "--data PATH" in proc.stdout
    proc = run_module("dng_jax.sweep", "--config", "configs/paper.py", "--config.help")
    assert proc.returncode == 0, proc.stderr
    assert "--config.sweep.seeds" in proc.stdout and "48" in proc.stdout and "runs per configuration" in proc.stdout
    for mod in (predict, evaluate, cluster, summary, export_labels, report):
        with pytest.raises(SystemExit) as e:
            mod.main(["--help"])
        assert e.value.code == 0


@pytest.mark.slow
def test_train_takes_overrides_without_config():
    """Like the sweep, train runs the embedded configs/default.py when --config is not given."""
    proc = run_module("dng_jax.train", "--workdir", "never-written", "--config.train.epochs=7", "--config.help")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.lstrip().startswith("--config.train.epochs"))
    assert line.split()[1] == "7", line
    assert not (ROOT / "never-written").exists()


# ----------------------------------------------------------------------------------------- work dirs


@pytest.mark.slow
def test_workdir_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(Exception, match="exists and is not a folder"):
        run_sweep(tiny_sweep_config(), f)
    proc = run_module("dng_jax.train", "--config", "configs/default.py", "--workdir", str(f))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not a folder" in proc.stderr, proc.stderr


def test_second_sweep_on_a_locked_workdir_is_refused(tmp_path):
    with WorkdirLock(tmp_path):
        with pytest.raises(WorkdirBusyError, match=r"in use by another run \(pid \d+"):
            run_sweep(tiny_sweep_config(), tmp_path)
    with WorkdirLock(tmp_path):  # released: it can be taken again
        pass


# ----------------------------------------------------------------------------------------- predict


@pytest.mark.parametrize("flags, needle", [
    (["--tile-size", "100"], "--tile-size"), (["--tile-size", "0"], "--tile-size"),
    (["--overlap", "-5"], "--overlap"),
])
def test_predict_bad_tiling(checkpoint, tmp_path, capsys, flags, needle):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    assert predict.main(["--checkpoint", str(checkpoint), "--input", str(img), "--output", str(tmp_path / "o")]
                        + flags) == 2
    one_line_error(capsys, needle)


@pytest.mark.slow
def test_predict_output_is_a_file_and_corrupt_images(checkpoint, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(np.full((40, 40, 3), 30, np.uint8)).save(inp / "good.png")
    (inp / "broken.png").write_bytes(b"\x89PNG not really")
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert predict.main(["--checkpoint", str(checkpoint), "--input", str(inp), "--output", str(a_file)]) == 2
    one_line_error(capsys, a_file, "not a folder")
    # one corrupt image does not stop the batch: the rest is written, the bad one listed, status 1
    out = tmp_path / "out"
    assert predict.main(["--checkpoint", str(checkpoint), "--input", str(inp), "--output", str(out),
                         "--quiet", "--no-progress"]) == cli.EXIT_PARTIAL
    assert (out / "good.png").exists() and not (out / "broken.png").exists()
    err = capsys.readouterr().err
    assert "broken.png" in err and "1 of 2 images" in err and "Traceback" not in err


def test_predict_takes_a_sweeps_workdir_and_the_docs_agree(checkpoint, tmp_path, capsys):
    """A sweep's work dir keeps one network, its baseline/: --checkpoint WORKDIR predicts with it; a sweep
    whose baseline came from sweep.checkpoint keeps none, and the error names the folder to give."""
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(checkpoint, sweep_dir / "baseline")
    img = tmp_path / "a.png"
    Image.fromarray(np.full((40, 40, 3), 30, np.uint8)).save(img)
    for given in (sweep_dir, sweep_dir / "baseline"):
        out = tmp_path / f"out_{given.name}"
        assert predict.main(["--checkpoint", str(given), "--input", str(img), "--output", str(out),
                             "--quiet", "--no-progress"]) == 0
        assert (out / "a.png").exists()
    capsys.readouterr()
    loaded = tmp_path / "loaded"
    (loaded / "baseline").mkdir(parents=True)
    (loaded / "baseline" / "done.json").write_text('{"files": {}, "checkpoint": "runs/cpu_real_train"}')
    assert predict.main(["--checkpoint", str(loaded), "--input", str(img), "--output", str(tmp_path / "o"),
                         "--no-progress"]) == 2
    one_line_error(capsys, loaded / "baseline", "sweep.checkpoint runs/cpu_real_train")
    # export_labels' example and the README give the same --checkpoint
    pattern = r"dng_jax\.predict --checkpoint (\S+) --input test_set/images"
    assert re.findall(pattern, export_labels.__doc__) == re.findall(pattern, (ROOT / "README.md").read_text())
    assert re.findall(pattern, export_labels.__doc__) == ["runs/cpu_real/baseline"]


def test_predict_names_a_png_that_is_no_image_and_goes_on(checkpoint, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(np.full((40, 40, 3), 30, np.uint8)).save(inp / "good.png")
    (inp / "notes.png").write_text("these are my notes, not an image\n")
    out = tmp_path / "out"
    assert predict.main(["--checkpoint", str(checkpoint), "--input", str(inp), "--output", str(out),
                         "--no-progress"]) == cli.EXIT_PARTIAL
    assert (out / "good.png").exists()
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {inp / 'notes.png'}: not a readable image (its content is not PNG, TIFF, JPEG "
                      "or BMP)"], captured.err
    assert "cannot identify" not in captured.out + captured.err and "1 of 2 images" in captured.err


# ----------------------------------------------------------------------------------------- others


def test_summary_and_cluster_flags(tmp_path, capsys):
    assert summary.main(["--n-test-per-type", "-1"]) == 2
    one_line_error(capsys, "--n-test-per-type")
    X = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    base = ["--method", "ng", "--k", "3", "--input", str(tmp_path / "X.npy"), "--output", str(tmp_path / "o"),
            "--no-progress"]
    assert cluster.main(base + ["--r0", "-1"]) == 2
    one_line_error(capsys, "--r0")
    assert cluster.main(["--method", "nope.py:f", "--k", "3", "--input", str(tmp_path / "X.npy"),
                         "--output", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "nope.py")
    assert not (tmp_path / "o").exists()


def test_cluster_refuses_data_too_large_for_float32(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(30, 3)) * 1e20
    np.save(tmp_path / "big.npy", X)
    assert cluster.main(["--method", "kmc", "--k", "3", "--input", str(tmp_path / "big.npy"),
                         "--output", str(tmp_path / "o"), "--no-progress"]) == 2
    one_line_error(capsys, "big.npy", "too large", "rescale")


# ----------------------------------------------------------------------------------------- review fixes


@pytest.mark.slow
@pytest.mark.parametrize("content, needle", [
    ("x\n", "not a Python file"), ("def get_config(:\n", "SyntaxError"), ("x = 1\n", "defines no get_config"),
    ("def get_config():\n    return 5\n", "not an ml_collections.ConfigDict"), (None, "is a folder"),
])
def test_config_files_that_cannot_load(tmp_path, capsys, content, needle):
    path = tmp_path / ("cfg.py" if content is None or content != "x\n" else "cfg")
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        load_config(path)
    args = ["--config", str(path), "--workdir", str(tmp_path / "wd")]
    assert sweep_cli.main(["sweep", *args]) == 2  # the command's own check, before the flag library parses
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    if content == "x\n":  # once as a user runs it: the process's exit status and its whole stderr
        proc = run_module("dng_jax.sweep", *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr


def test_methods_sharing_an_id_or_failing_factories_stop_the_sweep_first(tmp_path, capsys):
    other = tmp_path / "v2"
    other.mkdir()
    (other / "variant_example.py").write_text((ROOT / "examples" / "minibatch_kmeans.py").read_text())
    cfg = tiny_sweep_config()
    cfg.sweep.methods = (f"{ROOT}/examples/minibatch_kmeans.py:minibatch_kmeans",
                         f"{other}/variant_example.py:minibatch_kmeans")
    with pytest.raises(ConfigError, match="are both called 'minibatch_kmeans'"):
        run_sweep(cfg, tmp_path / "wd")
    bad = tmp_path / "bad.py"
    bad.write_text("def wrongsig(k):\n    return None\n\ndef notmethod(k, cfg):\n    return 3\n")
    cfg.sweep.methods = (f"{bad}:wrongsig",)
    with pytest.raises(ConfigError, match="its factory failed"):
        run_sweep(cfg, tmp_path / "wd")
    assert not (tmp_path / "wd").exists()
    X = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    assert cluster.main(["--method", f"{bad}:notmethod", "--k", "3", "--input", str(tmp_path / "X.npy"),
                         "--output", str(tmp_path / "o")]) == 2
    one_line_error(capsys, "not a ClusteringMethod")


@pytest.mark.slow
@ORBAX_LOOP_WARNING
def test_training_resumed_with_another_config_is_refused(tmp_path):

    cfg = tiny_config()
    cfg.train.max_steps = 2
    train_and_evaluate(cfg, tmp_path, samples=synthetic_samples(), eval_samples=[], progress=False)
    cfg.train.lr = 0.5
    with pytest.raises(ConfigMismatchError, match=r"differs in: train\.lr"):
        train_and_evaluate(cfg, tmp_path, samples=synthetic_samples(), eval_samples=[], progress=False)
    assert '"lr": 0.001' in (tmp_path / "config.json").read_text()  # config.json still tells the truth


def test_sweep_checkpoint_of_another_split_is_refused(checkpoint, tmp_path):
    cfg = tiny_sweep_config()
    cfg.sweep.checkpoint = str(checkpoint)  # trained with tiny_config(): the paper protocol
    cfg.data.protocol = "wide"
    with pytest.raises(ConfigMismatchError, match=r"differs in: data\.protocol"):
        run_sweep(cfg, tmp_path)
