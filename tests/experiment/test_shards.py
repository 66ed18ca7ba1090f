"""A sweep split across jobs (``sweep.only``): two shard jobs at once on one work dir, then the report's
merge, give the whole sweep's bytes; a configuration held by another job is skipped; the locks say who
holds them; bad values are one line."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, tiny_sweep_config

from dng_jax import report as report_cli
from dng_jax.config import comparable, experiment_config
from dng_jax.errors import ConfigError, WorkdirBusyError
from dng_jax.experiment import shards, sweep
from dng_jax.io.workdir import LockFile, WorkdirLock

TESTS = ROOT / "tests"
NAMES = ["kmc_k5", "kmc_k50", "ng_k5", "ng_k50", "gng_k10"]
MERGED = ("results.csv", "table1.md", "differences.csv", "fig2_latent_tsne.png", "fig6_map_known.png",
          "fig7_map_unknown.png", "fig8_entropy_std.png")


def _config_file(tmp_path, checkpoint):
    """The tiny sweep as a configs/*.py file (for the command line), on the finished sweep's baseline."""
    path = tmp_path / "tiny_sweep.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nfrom conftest import tiny_sweep_config\n\n\n"
                    f"def get_config():\n    c = tiny_sweep_config()\n    c.sweep.checkpoint = {str(checkpoint)!r}\n"
                    f"    return c\n")
    return path


def _sweep_job(config_file, workdir, only):
    return subprocess.Popen([sys.executable, "-m", "dng_jax.sweep", "--config", str(config_file), "--workdir",
                             str(workdir), f"--config.sweep.only={only}", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


@pytest.mark.slow
def test_two_shards_at_once_then_the_report_give_the_whole_sweep(finished_sweep, tmp_path, capsys):
    """shared stages once, then jobs 0/2 and 1/2 at the same time on one work dir, then the report:
    results.csv, table1.md and the figures are byte for byte the whole sweep's."""
    whole, _ = finished_sweep
    config_file = _config_file(tmp_path, whole / "baseline")
    wd = tmp_path / "wd"
    config = tiny_sweep_config()
    config.sweep.checkpoint, config.sweep.only = str(whole / "baseline"), shards.SHARED
    assert sweep.run_sweep(config, wd, progress=False).rows == []  # (in this process: one start-up less)
    assert all((wd / s / "done.json").exists() for s in ("baseline", "classical", "cluster_data"))
    assert not (wd / "runs").exists() and not (wd / "results.csv").exists()
    assert json.loads((wd / "sweep_config.json").read_text())["sweep"]["only"] == ""  # the experiment, not the job

    jobs = [_sweep_job(config_file, wd, f"{i}/2") for i in range(2)]
    logs = [_finish(job) for job in jobs]
    ran = [re.findall(r"configuration \d/\d: (\w+\(\d+\))", log) for log in logs]
    assert ran == [["kmc(2)", "gng(2)"], ["ng(2)"]]  # configuration j in job j % 2
    assert sorted(p.parent.name for p in (wd / "runs").glob("*/done.json")) == ["gng_k2", "kmc_k2", "ng_k2"]
    for name in ("results.csv", "table1.md", "failures.json", "timings.csv", "fig6_map_known.png"):
        assert not (wd / name).exists(), f"a shard job wrote the whole sweep's {name}"
    assert json.loads((wd / "shards" / "0of2" / "failures.json").read_text()) == {}
    assert (wd / "shards" / "1of2" / "timings.csv").read_text().count(",configuration,ng_k2,") == 1

    capsys.readouterr()
    assert report_cli.main(["--workdir", str(wd)]) == 0  # python -m dng_jax.report --workdir wd
    err = capsys.readouterr().err
    assert "not in the table" not in err and "fig5_panels.png needs the model" in err
    for name in MERGED:
        assert (wd / name).read_bytes() == (whole / name).read_bytes(), name


@pytest.mark.slow
def test_a_configuration_held_by_another_job_is_skipped(finished_sweep, tmp_path, monkeypatch, caplog, capsys):
    """kmc_k2 is held by another process: skipped, not run twice; ng_k2 fails: recorded in the job's own
    failures.json; the report merges what is finished and names both."""
    whole, _ = finished_sweep
    wd = tmp_path / "wd"
    shutil.copytree(whole, wd)
    shutil.rmtree(wd / "runs" / "kmc_k2")  # not run yet
    (wd / "runs" / "ng_k2" / "results.json").unlink()  # not finished
    reports = {n: (wd / n).read_bytes() for n in ("results.csv", "table1.md", "failures.json", "timings.csv")}
    (wd / ".locks").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; from dng_jax.io.workdir import LockFile\n"
        f"lock = LockFile({str(wd / '.locks' / 'kmc_k2.lock')!r}); assert lock.acquire(job='elsewhere')\n"
        "print('held', flush=True); sys.stdin.read()")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(sweep.log, "propagate", True)  # caplog listens at the root logger
        ran = []

        def fails(ctx, conf, *args, **kwargs):
            ran.append(conf.dirname)
            raise RuntimeError("out of memory (simulated)")

        monkeypatch.setattr(sweep, "stage_configuration", fails)
        config = tiny_sweep_config()
        config.sweep.only = "kmc_k2, ng_k2"
        with caplog.at_level(logging.INFO, logger="dng_jax.sweep"):
            out = sweep.run_sweep(config, wd, progress=False)
        assert ran == ["ng_k2"] and not (wd / "runs" / "kmc_k2").exists()  # skipped, not run twice
        assert f"kmc_k2: skipped, another job runs it (pid {holder.pid} on " in caplog.text
        assert "sweep.only=elsewhere" in caplog.text
        assert out.failures == {"ng_k2": "RuntimeError: out of memory (simulated)"} and out.paths == []
        assert json.loads((wd / "shards" / "kmc_k2+ng_k2" / "failures.json").read_text()) == out.failures
        assert {n: (wd / n).read_bytes() for n in reports} == reports  # the whole sweep's files untouched

        capsys.readouterr()
        assert report_cli.main(["--workdir", str(wd)]) == 1
        err = capsys.readouterr().err
        assert "not in the table: 2 of 3 configurations" in err and "kmc_k2: no results yet" in err
        assert "ng_k2: failed in job kmc_k2+ng_k2: RuntimeError: out of memory (simulated)" in err
        table = (wd / "table1.md").read_text()
        assert "| GNG(2) | 2 |" in table and "| kMC(2)" not in table and "| NG(2)" not in table
    finally:
        holder.communicate(timeout=30)


def test_a_whole_sweep_and_split_jobs_exclude_each_other(tmp_path):
    """A whole sweep owns its work dir (a shard cannot start in it, nor it beside a shard); shards and the
    report share it. All refused at once, before any work."""
    config = tiny_sweep_config()
    config.sweep.only = "0/2"
    with WorkdirLock(tmp_path):  # a whole sweep runs
        with pytest.raises(WorkdirBusyError, match=r"in use by another run \(pid \d+"):
            sweep.run_sweep(config, tmp_path)
        assert report_cli.main(["--workdir", str(tmp_path)]) == 2
    with WorkdirLock(tmp_path, shared=True), WorkdirLock(tmp_path, shared=True):  # two split jobs run
        with pytest.raises(WorkdirBusyError, match=r"in use by another run \(pid \d+"):
            sweep.run_sweep(tiny_sweep_config(), tmp_path)
    assert not (tmp_path / "sweep_config.json").exists()


def test_waiting_for_the_shared_stages_says_for_what_and_whom(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sweep.log, "propagate", True)
    job = shards.select("1/2", NAMES)
    first = shards.shared_stages_lock(tmp_path, shards.select("0/2", NAMES))
    first.note(stage="cluster_data")
    threading.Timer(0.5, first.release).start()
    t0 = time.time()
    with caplog.at_level(logging.INFO, logger="dng_jax.sweep"), shards.shared_stages_lock(tmp_path, job) as lock:
        assert time.time() - t0 > 0.3  # it waited
        assert lock.holder()["job"] == "1/2"
    assert "waiting for cluster_data, held by pid " in caplog.text and "(sweep.only=0/2)" in caplog.text
    assert isinstance(shards.shared_stages_lock(tmp_path, shards.select("", NAMES)), shards._NoLock)


def test_only_selects_names_shards_or_the_shared_stages():
    assert shards.select("", NAMES) == ("", tuple(NAMES)) and shards.select("", NAMES).whole
    assert shards.select("0/2", NAMES).names == ("kmc_k5", "ng_k5", "gng_k10")
    assert shards.select(" 1 / 2 ", NAMES).names == ("kmc_k50", "ng_k50")
    assert shards.select("4/7", NAMES).names == ("gng_k10",) and shards.select("6/7", NAMES).names == ()
    assert [n for i in range(3) for n in shards.select(f"{i}/3", NAMES).names] != NAMES  # j % N, not blocks
    assert sorted(n for i in range(3) for n in shards.select(f"{i}/3", NAMES).names) == sorted(NAMES)
    job = shards.select("ng_k50, kmc_k5", NAMES)
    assert job.names == ("kmc_k5", "ng_k50") and job.tag == "kmc_k5+ng_k50"  # in the sweep's order
    assert shards.select("shared", NAMES) == ("shared", ()) and shards.select("3/11", NAMES).tag == "3of11"
    for bad, needle in [("ng_k7", "'ng_k7' is not a configuration"), ("kmc_k5,x,y", "'x', 'y' are not"),
                        ("2/2", "no shard '2/2'"), ("-1/2", "no shard"), ("1/0", "no shard"), (",", "','")]:
        with pytest.raises(ConfigError, match=needle) as e:
            shards.select(bad, NAMES)
        assert str(e.value).startswith("config field sweep.only: ") and "\n" not in str(e.value)
        assert "kmc_k5, kmc_k50, ng_k5, ng_k50, gng_k10" in str(e.value)


def test_only_is_not_part_of_the_experiment():
    cfg = experiment_config(tiny_sweep_config())
    job_cfg = experiment_config({**tiny_sweep_config().to_dict(), "sweep": {**tiny_sweep_config().sweep.to_dict(),
                                                                             "only": "1/2"}})
    assert job_cfg.sweep.only == "1/2" and comparable(job_cfg) == comparable(cfg)
    assert shards.experiment_part(job_cfg) == cfg


@pytest.mark.slow
def test_an_unknown_configuration_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dng_jax.sweep", "--workdir", str(tmp_path / "wd"),
                           "--config.sweep.only=ng_k7"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: config field sweep.only: 'ng_k7'")
    assert "ng_k5" in proc.stderr and "0 <= i < N" in proc.stderr and not (tmp_path / "wd").exists()


def test_a_split_job_with_several_processes_is_refused(tmp_path, monkeypatch):
    from dng_jax import distributed
    monkeypatch.setattr(distributed, "is_multiprocess", lambda: True)
    config = tiny_sweep_config()
    config.sweep.only = "0/2"
    with pytest.raises(ConfigError, match="sweep.only: a split sweep's jobs run one process each"):
        sweep.run_sweep(config, tmp_path / "wd", progress=False)
    assert not (tmp_path / "wd").exists()


def test_a_held_lock_is_refused_and_named(tmp_path):
    a, b = LockFile(tmp_path / "x.lock"), LockFile(tmp_path / "x.lock")
    assert a.acquire(job="0/2")
    assert not b.acquire() and b.holder()["job"] == "0/2"
    a.release()
    assert b.acquire() and b.holder()["pid"] == a.holder()["pid"]
    b.release()


def test_a_split_job_removes_stale_files_only_where_no_other_job_writes(tmp_path):
    stale = {name: tmp_path / name for name in (".results.csv.a.tmp", "baseline/.map.json.b.tmp",
                                               "cluster_data/.latent.npy.c.tmp", "runs/ng_k5/.chunk_0000.json.d.tmp",
                                               "shards/1of2/.failures.json.e.tmp", "shards/0of2/.timings.csv.f.tmp")}
    for path in stale.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    job = shards.select("0/2", NAMES)
    assert sorted(shards.clean_stale_files(tmp_path, job)) == sorted(
        stale[n] for n in ("baseline/.map.json.b.tmp", "cluster_data/.latent.npy.c.tmp", "shards/0of2/.timings.csv.f.tmp"))
    # the report may be writing at the top, another job in runs/ng_k5 (until this job claims it) and shards/1of2
    assert all(stale[n].exists() for n in (".results.csv.a.tmp", "runs/ng_k5/.chunk_0000.json.d.tmp",
                                           "shards/1of2/.failures.json.e.tmp"))
    with shards.claim(tmp_path, "ng_k5", job):
        assert not stale["runs/ng_k5/.chunk_0000.json.d.tmp"].exists()
