"""Progress bars of compiled steps whose estimate leaves out the compilation.

The first call of a jitted step compiles it: on a CPU that can take longer than a hundred steps, and a bar
that counts it estimates the remaining time many times too long. :func:`step_bar` says "compiling" until
the first step is done, then restarts its clock (:func:`step_done`): the rate and the estimate are the
compiled steps'. Waiting for the first step's result changes no number, only when the host looks.
"""

from __future__ import annotations

from typing import Any

import jax
from tqdm.auto import tqdm

__all__ = ["COMPILING", "step_bar", "step_done"]

COMPILING = " (compiling)"


def step_bar(total: int, desc: str, **kwargs) -> tqdm:
    """A tqdm bar over ``total`` compiled steps, labelled ``desc`` + " (compiling)" until the first is done."""
    return tqdm(total=total, desc=desc + COMPILING, **kwargs)


def step_done(bar: tqdm, result: Any = None) -> None:
    """Count one step of ``bar``. After the first (``result``: what it returned, waited for), the clock
    restarts there: the estimate leaves the compilation out."""
    if bar.disable:
        return
    desc = bar.desc
    if not desc.endswith(COMPILING):
        bar.update(1)
        return
    jax.block_until_ready(result)
    n = bar.n + 1
    bar.reset(bar.total)  # start_t, the rate's averages and the last print restart now
    bar.initial = bar.n = bar.last_print_n = n  # ... from the steps already done
    bar.set_description_str(desc[: -len(COMPILING)])
