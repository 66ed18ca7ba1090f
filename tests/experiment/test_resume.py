"""Resuming a work dir (dng_jax/experiment/resume.py): a method file edited since the work dir began is noticed."""

from __future__ import annotations

import pytest
from conftest import ROOT, tiny_sweep_config

from dng_jax.config import experiment_config
from dng_jax.errors import ConfigMismatchError
from dng_jax.experiment.resume import check_workdir_config


def test_an_edited_method_file_is_noticed(tmp_path):
    f = tmp_path / "variant.py"
    f.write_text((ROOT / "examples" / "minibatch_kmeans.py").read_text())
    cfg = tiny_sweep_config()
    cfg.sweep.methods = (f"{f}:minibatch_kmeans",)
    typed = experiment_config(cfg)
    check_workdir_config(tmp_path, typed)
    check_workdir_config(tmp_path, typed)  # unchanged: fine
    f.write_text(f.read_text() + "\n# edited\n")
    with pytest.raises(ConfigMismatchError, match="changed since"):
        check_workdir_config(tmp_path, typed)
