"""Fault injection on a finished tiny sweep: damaged stage files are named and recomputed to the same
bytes, what cannot be recomputed stops the sweep with one line, and disk errors end in one line too.

Each test copies the session's finished sweep (conftest ``finished_sweep``), damages it, reruns the
sweep and compares ``results.csv`` and ``table1.md`` byte for byte with the unbroken run. The table of
faults and outcomes is docs/reliability.md.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
from concurrent.futures.process import BrokenProcessPool

import pytest
from conftest import tiny_sweep_config

from dng_jax import cli
from dng_jax.errors import CheckpointError, ConfigMismatchError, WorkerError
from dng_jax.experiment import sweep
from dng_jax.experiment.stages import cluster_data, configuration
from dng_jax.io import stage
from dng_jax.segmentation.checkpointing import Checkpointer


@pytest.fixture
def damaged(finished_sweep, tmp_path, monkeypatch):
    """A copy of the finished sweep's work dir, and a function to rerun it and compare the outputs."""
    monkeypatch.setattr(sweep.log, "propagate", True)  # caplog listens at the root logger
    src, _ = finished_sweep
    wd = tmp_path / "wd"
    shutil.copytree(src, wd)
    reference = {n: (src / n).read_bytes() for n in ("results.csv", "table1.md")}

    def rerun():
        sweep.run_sweep(tiny_sweep_config(), wd, progress=False)
        for name, data in reference.items():
            assert (wd / name).read_bytes() == data, name

    return wd, rerun


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.slow
@pytest.mark.parametrize("victim", [
    "runs/kmc_k2/results.json", "runs/kmc_k2/chunk_0001.json", "runs/ng_k2/pseudo_labels.npy",
    "runs/gng_k2/scores.csv", "runs/kmc_k2/seed0_predictions.npz", "cluster_data/latent.npy",
    "cluster_data/images.npy", "baseline/map.json", "baseline/scores.csv", "classical/scores.csv",
])
def test_a_damaged_stage_file_is_named_and_recomputed(damaged, victim, caplog):
    wd, rerun = damaged
    _truncate(wd / victim)
    with caplog.at_level(logging.WARNING, logger="dng_jax.sweep"):
        rerun()
    assert any(victim in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


@pytest.mark.slow
def test_deleted_files_are_recomputed_too(damaged, caplog):
    wd, rerun = damaged
    for victim in ("runs/ng_k2/clustering.json", "cluster_data/sources.json", "runs/kmc_k2/done.json"):
        (wd / victim).unlink()
    with caplog.at_level(logging.WARNING, logger="dng_jax.sweep"):
        rerun()
    assert any("clustering.json: missing" in r.getMessage() for r in caplog.records)


def _no_retraining(monkeypatch):
    """Make retraining fail loudly: the rerun must reuse every run."""
    def forbidden(*_, **__):
        raise AssertionError("a run was retrained")

    monkeypatch.setattr(configuration, "adapt_runs", forbidden)


@pytest.mark.slow
def test_an_intact_work_dir_recomputes_nothing(damaged, monkeypatch, caplog):
    """The baseline restored from its checkpoint is the network the later stages recorded."""
    wd, rerun = damaged
    _no_retraining(monkeypatch)
    monkeypatch.setattr(cluster_data, "extract_cluster_data", lambda *_: pytest.fail("cluster data recomputed"))
    with caplog.at_level(logging.WARNING, logger="dng_jax.sweep"):
        rerun()
    assert not caplog.records, [r.getMessage() for r in caplog.records]


@pytest.mark.slow
def test_lost_clustering_stats_keep_the_runs(damaged, monkeypatch):
    """clustering.json deleted: the seeded clustering gives the same labels, so no run is retrained."""
    wd, rerun = damaged
    (wd / "runs" / "ng_k2" / "clustering.json").unlink()
    _no_retraining(monkeypatch)
    rerun()


@pytest.mark.slow
def test_killed_while_clustering_again_keeps_the_record(damaged, monkeypatch):
    """The old marker stays until the configuration is done again, so a second rerun can still compare the
    new labels with the old ones and keep the runs."""
    wd, rerun = damaged
    (wd / "runs" / "ng_k2" / "clustering.json").unlink()
    real = configuration.run_method

    def killed(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(configuration, "run_method", killed)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(tiny_sweep_config(), wd, progress=False)
    monkeypatch.setattr(configuration, "run_method", real)
    _no_retraining(monkeypatch)
    rerun()


@pytest.mark.slow
@pytest.mark.parametrize("marker,field,what", [("cluster_data", "baseline", "another baseline network"),
                                               ("runs/kmc_k2", "upstream", "other clustering data")])
def test_a_stage_made_from_other_inputs_is_computed_again(damaged, caplog, marker, field, what):
    """A marker that names another baseline (or other clustering data) than the one at hand."""
    wd, rerun = damaged
    path = wd / marker / "done.json"
    doc = json.loads(path.read_text())
    assert doc[field]
    path.write_text(json.dumps({**doc, field: "0" * 64}))
    with caplog.at_level(logging.WARNING, logger="dng_jax.sweep"):
        rerun()
    assert any(what in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_an_old_stage_with_an_unreadable_file_is_not_adopted(damaged, finished_sweep, caplog):
    """A stage without a marker (made before markers existed) is adopted only when its files load: with a
    truncated summary its checksums are not recorded as they are; the summary is made again from the runs,
    byte for byte as before, and the stage is marked done."""
    wd, rerun = damaged
    src, _ = finished_sweep
    rdir = wd / "runs" / "kmc_k2"
    (rdir / "done.json").unlink()
    _truncate(rdir / "results.json")
    with caplog.at_level(logging.INFO, logger="dng_jax.sweep"):
        rerun()
    adopted = [r.getMessage() for r in caplog.records if "made before done-markers" in r.getMessage()]
    assert not adopted, adopted
    assert stage.check(rdir) == []
    assert (rdir / "results.json").read_bytes() == (src / "runs" / "kmc_k2" / "results.json").read_bytes()


@pytest.mark.slow
def test_an_unreadable_method_files_record_is_named(damaged):
    wd, _ = damaged
    (wd / "method_files.json").write_text("{")
    with pytest.raises(ConfigMismatchError, match="method_files.json cannot be read"):
        sweep.run_sweep(tiny_sweep_config(), wd, progress=False)


@pytest.mark.slow
def test_a_dead_scoring_worker_stops_the_sweep_with_one_line(damaged, monkeypatch, capsys):
    wd, _ = damaged
    shutil.rmtree(wd / "runs" / "ng_k2")

    def broken(*_, **__):
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(sweep, "stage_configuration", broken)
    with pytest.raises(WorkerError, match="rerun the same command"):
        sweep.run_sweep(tiny_sweep_config(), wd, progress=False)
    rc = cli.run_command(lambda: sweep.run_sweep(tiny_sweep_config(), wd, progress=False))
    assert rc == 2 and capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow
def test_a_truncated_figure_is_drawn_again(damaged):
    wd, rerun = damaged
    _truncate(wd / "fig2_latent_tsne.png", 0.3)
    rerun()
    assert (wd / "fig2_latent_tsne.png").stat().st_size > 1000


@pytest.mark.slow
def test_the_final_baseline_checkpoint_missing_stops_the_sweep(damaged):
    wd, _ = damaged
    steps = sorted((wd / "baseline" / "checkpoints").iterdir(), key=lambda p: int(p.name))
    shutil.rmtree(steps[-1])
    with pytest.raises(CheckpointError, match=f"{steps[-1]} is missing"):
        sweep.run_sweep(tiny_sweep_config(), wd, progress=False)


@pytest.mark.slow
def test_an_unreadable_sweep_config_is_named(damaged):
    wd, _ = damaged
    _truncate(wd / "sweep_config.json")
    with pytest.raises(ConfigMismatchError, match="sweep_config.json is not a readable sweep configuration"):
        sweep.run_sweep(tiny_sweep_config(), wd, progress=False)


@pytest.mark.slow
def test_a_full_disk_stops_the_sweep_with_one_line(damaged, monkeypatch, capsys):
    wd, _ = damaged
    shutil.rmtree(wd / "runs" / "ng_k2")

    def full(path, *_):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(configuration, "write_scores", full)
    rc = cli.run_command(lambda: sweep.run_sweep(tiny_sweep_config(), wd, progress=False))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "No space left on device" in err and "ng_k2" in err
    assert not list(wd.rglob(".*.tmp"))  # nothing half-written left behind


def test_a_checkpoint_write_on_a_full_disk_is_one_line(tiny_state, tmp_path, monkeypatch, capsys):
    with Checkpointer(tmp_path / "ck") as ck:
        def full(*_, **__):
            raise RuntimeError("async save failed") from OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(ck.manager, "save", full)
        rc = cli.run_command(lambda: ck.save(5, tiny_state, {}))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "No space left on device (writing a checkpoint" in err
    assert str(tmp_path / "ck" / "5") in err


@pytest.mark.slow
def test_killed_between_two_chunks_of_a_configuration(damaged, monkeypatch):
    """seeds_per_chunk=1: the kill lands after the first chunk of ng(2) was saved."""
    wd, rerun = damaged
    shutil.rmtree(wd / "runs" / "ng_k2")
    real, calls = configuration.adapt_runs, []

    def killed(*args, **kwargs):
        calls.append(list(kwargs["run_ids"]))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(configuration, "adapt_runs", killed)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(tiny_sweep_config(), wd, progress=False)
    assert (wd / "runs" / "ng_k2" / "chunk_0000.json").exists() and not (wd / "runs" / "ng_k2" / "done.json").exists()
    monkeypatch.setattr(configuration, "adapt_runs", real)
    rerun()


def test_a_work_dir_that_cannot_be_created(capsys):
    rc = cli.run_command(lambda: sweep.run_sweep(tiny_sweep_config(), "/proc/dng_jax_cannot_be_here", progress=False))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "/proc/dng_jax_cannot_be_here: cannot create it" in err
