"""dng_jax.config.parse_row: the one parser of every tool's ``--row NAME:FIELD=VALUE,...``."""

import pytest

from dng_jax.config import ConfigError, parse_row


def test_a_row_is_a_name_and_its_overrides():
    assert parse_row("cosine:train.schedule=cosine,train.class_weights=(1.0, 2.0, 4.0)") == (
        "cosine", {"train.schedule": "cosine", "train.class_weights": (1.0, 2.0, 4.0)})
    assert parse_row("rounds:retrain.rounds=2,sweep.methods=('kmc',)") == (
        "rounds", {"retrain.rounds": 2, "sweep.methods": ("kmc",)})
    assert parse_row("paper:") == parse_row("paper") == ("paper", {})  # the base, nothing changed
    assert parse_row("gemm:retrain.batch_size=*2,runs=/2") == ("gemm", {"retrain.batch_size": "*2", "runs": "/2"})


@pytest.mark.parametrize("spec, needle", [(":train.epochs=2", "NAME:FIELD=VALUE"), ("a/b:", "folder name"),
                                          ("..:", "folder name"), ("x:train.epochs", "FIELD=VALUE")])
def test_a_bad_row_is_named(spec, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_row(spec)
