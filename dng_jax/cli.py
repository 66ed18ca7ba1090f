"""Config files and the absl-based CLIs (``dng_jax.train``, ``dng_jax.sweep``): one-line errors, no tracebacks."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["load_config", "config_file_error", "check_flags", "run", "user_errors"]


def load_config(path: str | os.PathLike):
    """``get_config()`` of a configs/*.py file (what ``--config`` does, without the overrides); also how
    ``configs/default.py`` and ``configs/cpu_real.py`` start from ``configs/paper.py``."""
    import importlib.util

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: config file not found")
    spec = importlib.util.spec_from_file_location(f"dng_config_{p.stem}", p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


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
    """Define the CLI's flags (``define``, once per process); the message for a missing ``--config`` file
    or for an override naming no config field (ml_collections parses the overrides in ``sys.argv``
    while the flag is defined and raises a bare ``AttributeError``/``KeyError``), else None."""
    argv = list(sys.argv if argv is None else argv)
    msg = config_file_error(argv)
    if msg:
        return msg
    try:
        if "config" not in flag_values:
            define()
    except (AttributeError, KeyError) as e:
        return _field_message(e, argv)
    return None


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a one-line message and exit status 2 for an unknown config field (when
    the config has no default file, ml_collections parses the overrides only here)."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:
        print(f"error: {_field_message(e, argv)}", file=sys.stderr)
        sys.exit(2)
    except flags.Error as e:
        print(f"FATAL Flags parsing error: {e}\nPass --helpshort or --helpfull to see help on flags.",
              file=sys.stderr)
        sys.exit(1)


def run(define: Callable[[], None], main: Callable[[list[str]], int], argv: Sequence[str] | None) -> int:
    """``absl.app.run(main)`` with one-line config errors; returns the exit status instead of exiting."""
    from absl import app, flags

    msg = check_flags(define, flags.FLAGS, argv)
    if msg:
        print(f"error: {msg}", file=sys.stderr)
        return 2
    try:
        app.run(main, argv=None if argv is None else list(argv), flags_parser=_parse_flags)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that come from the user's data, config or checkpoint: printed as one line, exit status 2."""
    from dng_jax.checkpointing import CheckpointError
    from dng_jax.dsb2018 import DataError

    return (DataError, CheckpointError, ValueError)

