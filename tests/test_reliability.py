"""Fault injection on a finished tiny sweep: damaged stage files are named and recomputed to the same
bytes, what cannot be recomputed stops the sweep with one line, and disk errors end in one line too.

Each test copies the session's finished sweep (conftest ``finished_sweep``), damages it, reruns the
sweep and compares ``results.csv`` and ``table1.md`` byte for byte with the unbroken run. The table of
faults and outcomes is docs/reliability.md.
"""

from __future__ import annotations

import errno
import logging
import shutil

import pytest
from conftest import tiny_sweep_config

from dng_jax import cli
from dng_jax.errors import CheckpointError, ConfigMismatchError
from dng_jax.experiment import sweep
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


def test_deleted_files_are_recomputed_too(damaged, caplog):
    wd, rerun = damaged
    for victim in ("runs/ng_k2/clustering.json", "cluster_data/sources.json", "runs/kmc_k2/done.json"):
        (wd / victim).unlink()
    with caplog.at_level(logging.WARNING, logger="dng_jax.sweep"):
        rerun()
    assert any("clustering.json: missing" in r.getMessage() for r in caplog.records)


def test_a_truncated_figure_is_drawn_again(damaged):
    wd, rerun = damaged
    _truncate(wd / "fig2_latent_tsne.png", 0.3)
    rerun()
    assert (wd / "fig2_latent_tsne.png").stat().st_size > 1000


def test_the_final_baseline_checkpoint_missing_stops_the_sweep(damaged):
    wd, _ = damaged
    steps = sorted((wd / "baseline" / "checkpoints").iterdir(), key=lambda p: int(p.name))
    shutil.rmtree(steps[-1])
    with pytest.raises(CheckpointError, match=f"{steps[-1]} is missing"):
        sweep.run_sweep(tiny_sweep_config(), wd, progress=False)


def test_an_unreadable_sweep_config_is_named(damaged):
    wd, _ = damaged
    _truncate(wd / "sweep_config.json")
    with pytest.raises(ConfigMismatchError, match="sweep_config.json is not a readable sweep configuration"):
        sweep.run_sweep(tiny_sweep_config(), wd, progress=False)


def test_a_full_disk_stops_the_sweep_with_one_line(damaged, monkeypatch, capsys):
    wd, _ = damaged
    shutil.rmtree(wd / "runs" / "ng_k2")

    def full(path, *_):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(sweep, "write_scores", full)
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


def test_killed_between_two_chunks_of_a_configuration(damaged, monkeypatch):
    """seeds_per_chunk=1: the kill lands after the first chunk of ng(2) was saved."""
    wd, rerun = damaged
    shutil.rmtree(wd / "runs" / "ng_k2")
    real, calls = sweep.retrain_runs, []

    def killed(*args, **kwargs):
        calls.append(kwargs["run_ids"].tolist())
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "retrain_runs", killed)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(tiny_sweep_config(), wd, progress=False)
    assert (wd / "runs" / "ng_k2" / "chunk_0000.json").exists() and not (wd / "runs" / "ng_k2" / "done.json").exists()
    monkeypatch.setattr(sweep, "retrain_runs", real)
    rerun()


def test_a_work_dir_that_cannot_be_created(capsys):
    rc = cli.run_command(lambda: sweep.run_sweep(tiny_sweep_config(), "/proc/dng_jax_cannot_be_here", progress=False))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "/proc/dng_jax_cannot_be_here: cannot create it" in err
