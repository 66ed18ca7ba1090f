"""A step bar's estimate leaves out the compilation (dng_jax/progress.py): its clock starts after the first step."""

from __future__ import annotations

import io
import time

import jax.numpy as jnp

from dng_jax.progress import COMPILING, step_bar, step_done


def test_the_clock_starts_after_the_first_step():
    bar = step_bar(100, "train", file=io.StringIO(), mininterval=0)
    assert bar.desc == "train" + COMPILING
    time.sleep(1.0)  # the compilation: longer than all the other steps together
    step_done(bar, jnp.ones(3))
    assert bar.desc == "train" and bar.n == 1
    assert time.time() - bar.start_t < 0.5  # the clock restarted after the first step
    for _ in range(9):
        step_done(bar)
    assert bar.n == 10 and bar.format_dict["elapsed"] < 0.5
    # the rate: the nine compiled steps, not the compilation (which would give at least 1 s for 100 steps)
    rate = bar.format_dict["rate"] or (bar.n - bar.initial) / max(bar.format_dict["elapsed"], 1e-9)
    assert (bar.total - bar.n) / rate < 1.0
    bar.close()


def test_a_resumed_bar_counts_from_where_it_starts_and_a_disabled_one_stays_silent():
    bar = step_bar(50, "retrain", initial=20, file=io.StringIO(), mininterval=0)
    step_done(bar, None)
    assert bar.n == 21 and bar.initial == 21 and bar.desc == "retrain"
    off = step_bar(5, "x", disable=True)
    step_done(off, None)
    assert off.n == 0
