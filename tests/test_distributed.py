"""Multi-process JAX (dng_jax.distributed): the sweep run as 2 processes on this machine, killed half-way
and started again, gives one process with 2 devices' results byte for byte; the segmentation training as 2 processes is the
data-parallel training of one process with 2 devices; bad flags and an unreachable coordinator are one
line each.

The processes are separate Python interpreters, 1 CPU device each, talking through JAX's CPU collectives
(gloo); the tests are skipped, naming the reason, where those do not work.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, xla_flags_with_devices

from dng_jax import distributed
from dng_jax.errors import DistributedError
from dng_jax.segmentation.checkpointing import load_variables

TESTS = Path(__file__).resolve().parent
LAUNCH = ROOT / "scripts" / "tools" / "launch_local.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


#: A sitecustomize that lets process 1 write the persistent XLA cache too (its docstring says why).
EVERY_PROCESS_CACHES = Path(__file__).with_name("multiprocess_cache")


def env(devices: int = 1) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(EVERY_PROCESS_CACHES), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1", "PYTHON": sys.executable,
            "XLA_FLAGS": xla_flags_with_devices(devices), "PYTHONPATH": path}


def config_file(tmp_path: Path, factory: str, *lines: str) -> Path:
    """A configs/*.py file returning conftest's ``factory()`` (the tests' tiny model) changed by ``lines``."""
    path = tmp_path / f"{factory}_config.py"
    body = "".join(f"    {line}\n" for line in lines)
    path.write_text(textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from conftest import {factory}


        def get_config():
            c = {factory}()
        """) + body + "    return c\n")
    return path


def process_args(port: int, n: int, i: int) -> list[str]:
    return [f"--coordinator_address=localhost:{port}", f"--num_processes={n}", f"--process_id={i}"]


@pytest.fixture(scope="module")
def gloo(tmp_path_factory):
    """Skip unless two processes on this machine can run one JAX computation together."""
    script = tmp_path_factory.mktemp("gloo") / "probe.py"
    script.write_text(textwrap.dedent("""\
        import sys
        import numpy as np
        from dng_jax import distributed
        from jax.experimental import multihost_utils
        distributed.initialize(sys.argv[1], 2, int(sys.argv[2]), timeout=60)
        print(multihost_utils.process_allgather(np.int32(7)).tolist())
        """))
    port = free_port()
    procs = [subprocess.Popen([sys.executable, str(script), f"localhost:{port}", str(i)], env=env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.skip("two JAX processes on this machine did not finish a collective within 120 s")
    if any(p.returncode for p in procs) or any("[7, 7]" not in out for out, _ in outs):
        last = [err.strip().splitlines()[-1] if err.strip() else "" for _, err in outs]
        pytest.skip(f"JAX CPU collectives (gloo) do not work here: {last}")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_same_table(a: Path, b: Path, tol: float = 1e-5) -> bool:
    """Every row and column equal, numbers within ``tol``; True when the files are byte-identical."""
    ra, rb = read_csv(a), read_csv(b)
    assert len(ra) == len(rb) and (not ra or ra[0].keys() == rb[0].keys()), (a, b)
    for x, y in zip(ra, rb):
        for k in x:
            try:
                fx, fy = float(x[k]), float(y[k])
            except ValueError:
                assert x[k] == y[k], (a.name, k, x[k], y[k])
                continue
            assert np.isclose(fx, fy, rtol=0, atol=tol, equal_nan=True), (a.name, k, x, y)
    return a.read_bytes() == b.read_bytes()


# ----------------------------------------------------------------------------------------- the sweep


@pytest.mark.slow
def test_two_process_sweep_killed_and_resumed_is_one_process_with_two_devices(gloo, finished_sweep, tmp_path):
    """The tiny sweep at the default config's chunking (4 seeds in one chunk: 2 runs per device) as 2
    processes; process 1 is killed in the second configuration (then process 0 too, as launch_local.sh
    does), the same command started again finishes it. results.csv, every run's per-image scores and
    retraining losses are byte for byte those of one process with 2 devices: both split each chunk's
    runs over the same runs mesh, so every device runs the same programs (docs/scaling.md). Both load
    the same baseline (sweep.checkpoint); that 2 processes train it as one process with 2 devices is the
    next test."""
    one, _ = finished_sweep
    cfg = config_file(tmp_path, "tiny_sweep_config", "c.sweep.methods = ('kmc', 'ng')", "c.sweep.seeds = 4",
                      "c.sweep.seeds_per_chunk = 4")
    common = ["--config", str(cfg), "--no-progress", "--config.eval.workers=1",
              f"--config.sweep.checkpoint={one / 'baseline'}"]
    devices2 = tmp_path / "devices2"
    proc = subprocess.run([sys.executable, "-m", "dng_jax.sweep", *common, "--workdir", str(devices2)],
                          env=env(devices=2), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    two = tmp_path / "two"
    args = [*common, "--workdir", str(two)]
    port = free_port()
    with open(tmp_path / "p1.log", "w") as p1_log:  # (a process group each: a kill takes its scoring worker too)
        procs = [subprocess.Popen([sys.executable, "-m", "dng_jax.sweep", *args, *process_args(port, 2, i)],
                                  env=env(), cwd=ROOT, text=True, stdout=subprocess.PIPE if i == 0 else p1_log,
                                  stderr=subprocess.STDOUT, start_new_session=True) for i in range(2)]
    seen = []
    try:
        deadline = time.time() + 600
        for line in procs[0].stdout:
            seen.append(line)
            if "configuration 2/2" in line or time.time() > deadline:
                break
        assert any("configuration 2/2" in s for s in seen), "".join(seen)
        os.killpg(procs[1].pid, signal.SIGKILL)  # a crash of process 1 in the middle of ng(2)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # process 0 too, as launch_local.sh would
            except ProcessLookupError:
                pass
            p.communicate(timeout=60)
    assert (two / "runs" / "kmc_k2" / "done.json").exists()
    assert not (two / "runs" / "ng_k2" / "done.json").exists() and not (two / "results.csv").exists()
    kmc_done = (two / "runs" / "kmc_k2" / "done.json").stat().st_mtime_ns

    proc = subprocess.run(["bash", str(LAUNCH), "2", *args], env=env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "(the baseline and 8 runs):" in proc.stdout and "[p0] outputs in" in proc.stdout
    assert not [line for line in proc.stdout.splitlines() if line.startswith("[p1] [sweep")]  # process 0 reports
    assert (two / "runs" / "kmc_k2" / "done.json").stat().st_mtime_ns == kmc_done  # not computed again

    files = [Path("results.csv")] + [Path("runs") / conf / name for conf in ("kmc_k2", "ng_k2")
                                     for name in ("scores.csv", "retrain_metrics.csv")]
    for f in files:
        assert_same_table(devices2 / f, two / f, tol=0.0)
        assert (devices2 / f).read_bytes() == (two / f).read_bytes(), f


# ----------------------------------------------------------------------------------------- training


@pytest.mark.slow
def test_two_process_training_is_one_process_data_parallel_training(gloo, tmp_path):
    """2 processes with 1 device each train exactly as 1 process with 2 devices: the same batches split
    the same way, the same losses, the same checkpoint (written through orbax's multi-host support)."""
    cfg = config_file(tmp_path, "tiny_config", "c.train.epochs = 1")
    base = ["--config", str(cfg), "--no-progress"]
    one = subprocess.run([sys.executable, "-m", "dng_jax.train", *base, "--workdir", str(tmp_path / "one")],
                         env=env(devices=2), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(["bash", str(LAUNCH), "2", "--module", "dng_jax.train", *base, "--workdir",
                          str(tmp_path / "two")], env=env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]

    columns = ("step", "epoch", "split", "loss", "accuracy", "grad_norm")
    rows = [[{c: r[c] for c in columns} for r in read_csv(tmp_path / w / "metrics.csv")] for w in ("one", "two")]
    assert rows[0] == rows[1] and len(rows[0]) >= 2
    a, _, _ = load_variables(tmp_path / "one")
    b, _, _ = load_variables(tmp_path / "two")
    import jax

    assert jax.tree.all(jax.tree.map(lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)), a, b))


# ----------------------------------------------------------------------------------------- starting


@pytest.mark.slow
@pytest.mark.parametrize("flags, needle", [
    (["--num_processes=2", "--process_id=2", "--coordinator_address=localhost:1234"], "--process_id must lie in 0..1"),
    (["--num_processes=2"], "--coordinator_address, --process_id missing"),
    (["--num_processes=2", "--process_id=0", "--coordinator_address=nohost"], "must be host:port"),
])
def test_bad_process_flags_are_one_line(tmp_path, flags, needle):
    proc = subprocess.run([sys.executable, "-m", "dng_jax.sweep", "--workdir", str(tmp_path / "wd"), *flags],
                          env=env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert not (tmp_path / "wd").exists()


@pytest.mark.slow
def test_unreachable_coordinator_stops_in_one_line_after_the_timeout(tmp_path):
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "dng_jax.train", "--config", str(ROOT / "configs" / "default.py"),
                           "--workdir", str(tmp_path / "wd"), "--initialization_timeout=2",
                           *process_args(free_port(), 2, 1)],
                          env=env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "process 1 of 2" in errors[0] and "could not join" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and time.time() - t0 < 60


@pytest.fixture
def no_cluster(monkeypatch):
    for var in ("SLURM_JOB_ID", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_NODELIST", "SLURM_NTASKS",
                "SLURM_STEP_NUM_TASKS", "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES"):
        monkeypatch.delenv(var, raising=False)


def test_cluster_environment(no_cluster, monkeypatch):
    assert distributed.cluster_environment() is None
    slurm = {"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_STEP_NODELIST": "n[1-2]"}
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")  # a job of one task: one process, nothing to join
    assert distributed.cluster_environment() is None
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert distributed.cluster_environment() == "SLURM"
    for k in slurm:
        monkeypatch.delenv(k)
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "w0")
    assert distributed.cluster_environment() is None
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "w0,w1")
    assert distributed.cluster_environment() == "TPU"


def test_one_process_is_plain_calls(no_cluster):
    """Without initialize() nothing is collective: writes are plain calls, runs are all local."""
    assert not distributed.initialize() and not distributed.is_multiprocess() and distributed.is_writer()
    assert distributed.on_writer(lambda a, b=0: a + b, 1, b=2) == 3
    with pytest.raises(KeyError):
        distributed.each_process(lambda: {}["x"])
    tree = {"w": np.arange(6.0).reshape(3, 2)}
    mine = distributed.local_runs(tree, 3)
    assert mine.runs == range(3) and mine.block == 3 and mine.tree is tree
    assert np.array_equal(distributed.gather_runs(np.ones((4, 2)), 3), np.ones((3, 2)))
    with pytest.raises(DistributedError, match="--process_id must lie"):
        distributed.initialize("localhost:1", 2, -1)
