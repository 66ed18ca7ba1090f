"""The experiment's config (dng_jax/config.py, typed_config.py): typed sections converted once and checked,
the fields compared across runs, overrides, and configs/paper.py holding every typed field."""

from __future__ import annotations

import pytest
from conftest import ROOT

from dng_jax.config import (TRAINING_VOLATILE, ExperimentConfig, training_volatile, SweepConfig, apply_overrides, comparable, config_table,
                            experiment_config, load_config, parse_overrides)
from dng_jax.errors import ConfigError
from dng_jax.experiment.retrain import RetrainConfig
from dng_jax.typed_config import FieldError, describe_fields, from_section


def test_typed_sections_convert_once_and_check_values():
    cfg = experiment_config({"sweep": {"ks": [5, 50], "seeds": 3}, "train": {"lr": 1}})
    assert cfg.sweep.ks == (5, 50) and cfg.sweep.seeds == 3 and cfg.train.lr == 1.0  # list -> tuple, int -> float
    assert isinstance(cfg, ExperimentConfig) and hash(cfg) == hash(experiment_config(
        {"sweep": {"ks": (5, 50), "seeds": 3}, "train": {"lr": 1.0}}))
    assert from_section(RetrainConfig, {"epochs": 0}).epochs == 0
    with pytest.raises(ConfigError, match=r"config field sweep\.seeds: must be >= 1, got 0"):
        experiment_config({"sweep": {"seeds": 0}})
    with pytest.raises(ConfigError, match=r"sweep\.ks: expected an integer, got 'abc'"):
        experiment_config({"sweep": {"ks": ("abc",)}})
    with pytest.raises(ConfigError, match=r"clustering\.gng\.start_units"):
        experiment_config({"clustering": {"gng": {"start_units": 1}}})
    with pytest.raises(ConfigError, match=r"train\.nope: no such field"):
        experiment_config({"train": {"nope": 1}})
    with pytest.raises(FieldError, match="seeds_per_chunk"):
        SweepConfig(seeds_per_chunk=0)
    with pytest.raises(ConfigError, match=r"data\.crop_size: must be a positive multiple of 32"):
        experiment_config({"data": {"crop_size": 100}})


def test_comparable_ignores_volatile_fields_and_table_lists_every_field():
    a = experiment_config({"sweep": {"seeds_per_chunk": 4}})
    b = experiment_config({"sweep": {"seeds_per_chunk": 8}})
    assert comparable(a) == comparable(b) and "sweep.seeds_per_chunk" not in comparable(a)
    assert comparable(a) != comparable(experiment_config({"sweep": {"seeds": 2}}))
    table = config_table(a)
    assert "--config.clustering.gng.max_units" in table and "--config.sweep.seeds_per_chunk" in table


def test_parse_and_apply_overrides():
    o = parse_overrides("train.schedule=cosine, train.class_weights=(1.0, 2.0, 4.0),train.lr=3e-4")
    assert o == {"train.schedule": "cosine", "train.class_weights": (1.0, 2.0, 4.0), "train.lr": 3e-4}
    c = apply_overrides(load_config(ROOT / "configs" / "paper.py"), o)
    cfg = experiment_config(c)
    assert cfg.train.schedule == "cosine" and cfg.train.class_weights == (1.0, 2.0, 4.0)
    with pytest.raises(ConfigError, match="no config field train.nope"):
        apply_overrides(c, {"train.nope": 1})
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        parse_overrides("train.lr")


def test_every_typed_field_is_in_the_paper_config():
    """--config.help lists the typed fields; each must also be a --config.<field> override."""
    raw = load_config(ROOT / "configs" / "paper.py").to_dict()
    for name, _, _ in describe_fields(experiment_config(raw)):
        node = raw
        for part in name.split("."):
            assert part in node, f"{name} is a typed field but not in configs/paper.py"
            node = node[part]


def test_a_self_training_resume_keeps_the_fields_that_pick_its_pseudo_labelled_images():
    plain = ExperimentConfig()
    assert training_volatile(plain) == TRAINING_VOLATILE
    selftrained = experiment_config(apply_overrides(load_config(ROOT / "configs" / "default.py"),
                                                    {"train.pseudo_label_rounds": 1}))
    assert "data.cluster_from" in TRAINING_VOLATILE
    assert {"data.cluster_from", "data.unknown_val_fraction"}.isdisjoint(training_volatile(selftrained))
    assert "data.path" in training_volatile(selftrained)
