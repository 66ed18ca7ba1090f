"""Shared bits of the absl-based CLIs (``dng_jax.train``, ``dng_jax.sweep``): one-line errors, no tracebacks."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["config_file_error", "user_errors"]


def config_file_error(argv: Sequence[str] | None) -> str | None:
    """The message for a ``--config FILE`` / ``--config=FILE`` that does not exist, else None.

    ml_collections only fails on it inside absl's flag parsing, with a chained traceback."""
    args = list(sys.argv if argv is None else argv)[1:]
    for i, a in enumerate(args):
        if a == "--config" and i + 1 < len(args):
            path = args[i + 1]
        elif a.startswith("--config="):
            path = a.split("=", 1)[1]
        else:
            continue
        path = path.split(":", 1)[0]  # ml_collections' "file.py:arg" form
        if not Path(path).is_file():
            return f"--config {path}: no such file (give a configs/*.py file)"
    return None


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that come from the user's data, config or checkpoint: printed as one line, exit status 2."""
    from dng_jax.checkpointing import CheckpointError
    from dng_jax.dsb2018 import DataError

    return (DataError, CheckpointError, ValueError)

