"""What XLA says a compiled step costs (memory, FLOPs), and how long its calls take."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["analyse_compiled", "compile_timed", "median_time", "zeros_of"]


def analyse_compiled(compiled) -> tuple[int | None, int | None, float | None]:
    """``(bytes per device, temporaries, flops)`` of a compiled step; None where the backend says nothing.
    Bytes per device: arguments + outputs + temporaries - donated (``memory_analysis()``)."""
    total = temp = flops = None
    try:
        ma = compiled.memory_analysis()
        if ma is not None:
            temp = int(ma.temp_size_in_bytes)
            total = int(ma.argument_size_in_bytes + ma.output_size_in_bytes + temp - ma.alias_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend implements it
        pass
    try:
        ca = compiled.cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) and ca else ca
        if ca and "flops" in ca:
            flops = float(ca["flops"])
    except Exception:  # noqa: BLE001
        pass
    return total, temp, flops


def compile_timed(fn, *args) -> tuple[Any, float]:
    """``fn`` (a jitted function) compiled for ``args`` (arrays or abstract shapes), and the seconds it took."""
    t = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t


def zeros_of(init: Callable[[], Any]):
    """What ``init()`` returns, as zeros: traced, never compiled or run (a step's time and memory do not
    depend on the values of its weights, and initialising a ResNet-50 costs more than compiling its step)."""
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(init))


def median_time(call: Callable[[], Any], n: int) -> float:
    """Median wall time of ``n`` calls of ``call`` after one untimed call (results waited for)."""
    jax.block_until_ready(call())
    times = []
    for _ in range(max(1, n)):
        t = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t)
    return float(np.median(times))
