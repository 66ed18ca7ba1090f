"""Shared bits of the absl-based CLIs (``dng_jax.train``, ``dng_jax.sweep``): one-line errors, no tracebacks."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["config_file_error", "check_flags", "user_errors"]


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


def _field_message(e: BaseException, argv: Sequence[str]) -> str:
    inner: object = e
    while isinstance(inner, BaseException) and inner.args:  # AttributeError(KeyError("'x'\nDid you mean ..."))
        inner = inner.args[0]
    overrides = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
    return (f"no such config field: {str(inner).replace(chr(10), ' ')} (overrides given: "
            f"{', '.join(overrides) or 'none'}); the configs/*.py file lists the fields")


def check_flags(define: Callable[[], None], flag_values, argv: Sequence[str] | None) -> str | None:
    """Define the CLI's flags (``define``, once per process) and parse ``argv`` once, turning the config
    errors that ml_collections raises with a traceback into a message; None when all is well.

    A missing ``--config`` file, or a ``--config.<path>=value`` naming no field (ml_collections raises a
    bare ``AttributeError``/``KeyError``, even while the flag is defined) give a message. Other flag
    errors are left to absl's ``app.run``, which reports them in one line itself. The flags are reset
    afterwards, so ``app.run`` parses them as usual."""
    argv = list(sys.argv if argv is None else argv)
    msg = config_file_error(argv)
    if msg:
        return msg
    try:
        if "config" not in flag_values:
            define()
        flag_values(argv)
    except (AttributeError, KeyError) as e:
        return _field_message(e, argv)
    except Exception:
        return None
    finally:
        if "config" in flag_values:
            flag_values.unparse_flags()
    return None


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that come from the user's data, config or checkpoint: printed as one line, exit status 2."""
    from dng_jax.checkpointing import CheckpointError
    from dng_jax.dsb2018 import DataError

    return (DataError, CheckpointError, ValueError)

