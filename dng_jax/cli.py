"""What every command line shares: the same flags for the same ideas, one-line errors, exit codes.

Conventions (all ``python -m dng_jax.<command>``):

- ``--workdir DIR`` for an experiment's work dir (train, sweep, report), ``--output DIR`` for a folder
  of results (predict, cluster, export_labels; ``--out`` is accepted too), ``--no-progress`` turns the
  progress bars off, ``--quiet`` prints less, ``--help`` shows the usage and exits 0.
- Exit status 0: done; 1: done, but some items failed (they are listed); 2: bad input (a flag, a
  file, a config value, a busy or unusable work dir), one line ``error: ...`` on stderr naming it.
- The config-driven commands (train, sweep) take ``--config configs/<file>.py`` (default: the embedded
  ``configs/default.py``, :data:`DEFAULT_CONFIG`) and override any field with
  ``--config.<section>.<field>=value``; ``--config.help`` prints every field with its value and meaning. They run as several processes with ``--coordinator_address``, ``--num_processes`` and
  ``--process_id`` (:mod:`dng_jax.distributed`; process 0 prints and writes, the others only warn).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from functools import partial
from importlib import resources
from pathlib import Path

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from dng_jax import distributed
from dng_jax.config import DataConfig, ExperimentConfig, config_table, experiment_config, load_config
from dng_jax.errors import USER_ERRORS, ConfigError, InputError
from dng_jax.typed_config import FieldError, field_types, nearest_fields, type_words

__all__ = ["DEFAULT_CONFIG", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USER_ERROR", "ArgumentParser", "make_parser",
           "add_output_flag", "add_verbosity_flags", "add_data_flags", "data_config", "report_skipped", "run_command",
           "run_config_command", "show_log", "normalise_argv", "field_message", "value_message"]

EXIT_OK, EXIT_PARTIAL, EXIT_USER_ERROR = 0, 1, 2
#: The config a config-driven command runs without ``--config``: configs/default.py, installed with the
#: package as ``dng_jax.configs`` (a tiny model on the bundled mini-set).
DEFAULT_CONFIG = Path(str(resources.files("dng_jax.configs") / "default.py"))
_HELP_FLAGS = ("--help", "-h", "--helpfull", "--helpshort", "-?", "--helpxml")


def _error(message: str) -> int:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_USER_ERROR


class _StdoutHandler(logging.StreamHandler):
    """A handler that writes to ``sys.stdout`` as it is when a line is logged, not as it was when the handler
    was made: a command run again in one process (a test, a notebook) whose stdout was replaced meanwhile
    does not write to a closed stream."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        del value  # always sys.stdout


def show_log(name: str = "dng_jax", label: str = "dng_jax") -> None:
    """Progress lines of ``logging.getLogger(name)`` on stdout as ``[label HH:MM:SS] message``."""
    logger = logging.getLogger(name)
    if not any(getattr(h, "_dng_jax", False) for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter(f"[{label} %(asctime)s] %(message)s", "%H:%M:%S"))
        handler._dng_jax = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if distributed.is_writer() else logging.WARNING)  # one process tells the story
    logger.propagate = False


# ----------------------------------------------------------------------------------------- argparse


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Epilog as written; ``(default: ...)`` only for options whose default is a value."""

    def _get_help_string(self, action):
        if action.required or action.default is None or action.default is False or action.default is True:
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (``error: ... (see --help)``) and exit status 2."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def make_parser(prog: str, doc: str | None) -> ArgumentParser:
    """A parser whose description is the first paragraph of ``doc`` and whose epilog is the rest."""
    head, _, rest = (doc or "").strip().partition("\n\n")
    return ArgumentParser(prog=prog, description=head, epilog=rest.strip() or None, formatter_class=_HelpFormatter)


#: The data flags of the commands that read a collection without a config file (summary, export_labels):
#: flag -> the ``data`` config field it sets.
DATA_FLAGS = {"--data": "path", "--protocol": "protocol", "--known-type": "known_type",
              "--n-test-per-type": "n_test_per_type", "--test-fraction": "test_fraction",
              "--val-fraction": "val_fraction", "--unknown-val-fraction": "unknown_val_fraction", "--seed": "seed"}


def add_data_flags(p: argparse.ArgumentParser) -> None:
    """The ``data`` section as flags, defaults as in configs/default.py and cpu_real.py (the wide protocol)."""
    d = DataConfig()
    p.add_argument("--data", default=None, help="a folder images/ + masks/ (+ manifest.csv), or the Kaggle-layout "
                                                "zip or folder (default: the bundled mini-set)")
    p.add_argument("--protocol", choices=("paper", "wide"), default="wide",
                   help="paper: n test images per type; wide: CT1 test and validation sets, the other types halved "
                        "into validation and test")
    p.add_argument("--known-type", default=d.known_type, help="the labeled cell type trained on (CT1)")
    p.add_argument("--n-test-per-type", type=int, default=d.n_test_per_type, help="paper protocol: test images per cell type")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction, help="wide protocol: share of CT1 tested")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="wide protocol: share of CT1 for validation")
    p.add_argument("--unknown-val-fraction", type=float, default=d.unknown_val_fraction,
                   help="wide protocol: share of each other cell type for validation")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the test and validation split")


def data_config(args: argparse.Namespace) -> DataConfig:
    """The :class:`DataConfig` of :func:`add_data_flags`'s flags; a bad value is an :class:`InputError` naming
    the flag."""
    values = {field: getattr(args, flag[2:].replace("-", "_")) for flag, field in DATA_FLAGS.items()}
    try:
        return DataConfig(**values)
    except FieldError as e:
        flag = next(f for f, field in DATA_FLAGS.items() if field == e.field) if e.field in DATA_FLAGS.values() else e.field
        raise InputError(f"{flag} {e.message}") from None


def add_output_flag(parser: argparse.ArgumentParser, help: str) -> None:  # noqa: A002
    parser.add_argument("--output", "--out", dest="output", required=True, help=help)


def add_verbosity_flags(parser: argparse.ArgumentParser, quiet: str) -> None:
    """``--no-progress`` (no progress bars) and ``--quiet`` / ``-q`` (``quiet``: what the command then leaves
    out; errors are always printed), the same two flags on every command."""
    parser.add_argument("--no-progress", "--noprogress", dest="progress", action="store_false",
                        help="no progress bars")
    parser.add_argument("-q", "--quiet", action="store_true", help=f"fewer lines: {quiet} (errors are still printed)")


def report_skipped(bad: dict[str, str], n: int, output) -> int:
    """List the inputs a batch command skipped (one ``error:`` line each); EXIT_PARTIAL if any,
    EXIT_USER_ERROR when none could be read (then nothing was written)."""
    for why in bad.values():
        print(f"error: {why}", file=sys.stderr)
    if bad and len(bad) == n:
        print(f"none of the {n} images could be read (listed above); nothing was written", file=sys.stderr)
        return EXIT_USER_ERROR
    if bad:
        print(f"{len(bad)} of {n} images could not be read (listed above); the others are in {output}",
              file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def run_command(fn: Callable[[], int | None]) -> int:
    """Call ``fn``; a user error (:data:`dng_jax.errors.USER_ERRORS`) or an ``OSError`` (disk full,
    read-only, permission) becomes one line naming the path, status 2."""
    try:
        return int(fn() or EXIT_OK)
    except USER_ERRORS as e:
        return _error(e)
    except OSError as e:  # a full disk, a read-only or forbidden path met while writing: name it
        where = f"{e.filename}: " if e.filename else ""
        return _error(f"{where}{e.strerror or type(e).__name__}")


# ----------------------------------------------------------------------------------------- absl


def _config_file_error(argv: Sequence[str], default: str | None) -> str | None:
    """The message for a ``--config FILE`` (or the default) that cannot be loaded, else None: the flag
    library only fails on it inside its parsing, with a chained traceback."""
    paths = []
    for i, a in enumerate(argv[1:], start=1):
        if a == "--config" and i + 1 < len(argv):
            paths.append(argv[i + 1])
        elif a.startswith("--config="):
            paths.append(a.split("=", 1)[1])
    for path in paths or ([default] if default else []):
        try:
            load_config(path.split(":", 1)[0])  # ml_collections' "file.py:arg" form
        except ConfigError as e:
            return f"--config {e}"
    return None


def field_message(e: BaseException, argv: Sequence[str]) -> str:
    """The one line for an override naming no config field: which, and the nearest names there are."""
    overrides = [a.split("=", 1)[0][len("--config."):] for a in argv[1:] if a.startswith("--config.")]
    fields = field_types(ExperimentConfig)
    unknown = [o for o in overrides if o not in fields and not any(f.startswith(o + ".") for f in fields)]
    if not unknown:  # not an override's name: say what the flag library said
        inner: object = e
        while isinstance(inner, BaseException) and inner.args:  # AttributeError(KeyError("'x'\nDid you mean"))
            inner = inner.args[0]
        unknown = [str(inner).splitlines()[0].strip("'")]
    hints = []
    for name in unknown:
        near = nearest_fields(ExperimentConfig, name)
        hints.append(f"{name}" + (f" (did you mean {', '.join(near)}?)" if near else ""))
    return f"no such config field: {'; '.join(hints)}; --config.help lists the fields"


def value_message(e: BaseException) -> str:
    """The one line for a flag the flag library refused: a ``--config.<field>=<value>`` of the wrong type
    names the field and the type it takes."""
    m = re.match(r"flag --config\.([\w.]+)=(.*?): ", str(e), re.S)
    tp = field_types(ExperimentConfig).get(m.group(1)) if m else None
    if tp is None:
        return f"{e} (see --help)"
    return f"config field {m.group(1)}: expected {type_words(tp)}, got {m.group(2)!r}"


def normalise_argv(argv: Sequence[str]) -> tuple[list[str], bool]:
    """argv with ``--no-progress`` spelt as absl wants it and ``--data PATH`` as ``--config.data.path=PATH``
    (the flag every command that reads data takes), and whether ``--config.help`` was asked for."""
    out, show_fields, rest = [], False, iter(argv)
    for a in rest:
        if a == "--config.help":
            show_fields = True
        elif a == "--no-progress":
            out.append("--noprogress")
        elif a == "--data" or a.startswith("--data="):
            path = a.split("=", 1)[1] if "=" in a else next(rest, "")
            out.append(f"--config.data.path={path}")
        else:
            out.append(a)
    return out, show_fields


def run_config_command(argv: Sequence[str] | None,
                       command: Callable[[ExperimentConfig, str, bool, bool], int | None],
                       *, default_config: str | None, default_workdir: str | None, workdir_help: str) -> int:
    """The shell of a config-driven command (flax ``main.py`` style): define ``--config``, ``--workdir``,
    ``--progress`` and ``--quiet`` (``--data PATH`` is ``--config.data.path=PATH``), parse, check the config
    (one line naming a bad field, status 2), then call ``command(config, workdir, progress, quiet)`` and
    return its status. ``--help`` prints the calling
    module's docstring (absl shows ``__main__.__doc__``)."""
    argv, show_fields = normalise_argv(list(sys.argv if argv is None else argv))
    msg = _config_file_error(argv, default_config)
    if msg:
        return _error(msg)
    # ml_collections reads the --config.* overrides from sys.argv (when the flag is defined and when it
    # is parsed), so it sees the arguments as given here for the whole call
    saved_argv, sys.argv = sys.argv, argv
    try:
        return _run_absl(argv, show_fields, command, default_config, default_workdir, workdir_help)
    finally:
        sys.argv = saved_argv


def _run_absl(argv, show_fields, command, default_config, default_workdir, workdir_help) -> int:
    flag_values = flags.FLAGS
    try:
        if "config" not in flag_values:
            _define_flags(default_config, default_workdir, workdir_help)
    except (AttributeError, KeyError) as e:
        return _error(field_message(e, argv))
    asked_for_help = any(a in _HELP_FLAGS or a.startswith("--help") for a in argv[1:])
    try:
        app.run(partial(_main, flag_values=flag_values, show_fields=show_fields, command=command), argv=argv,
                flags_parser=partial(_parse, flag_values))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return EXIT_OK if asked_for_help and code == 1 else code
    return EXIT_OK


def _define_flags(default_config: str | None, default_workdir: str | None, workdir_help: str) -> None:
    """The flags of a config-driven command, defined once per process (absl keeps them in ``flags.FLAGS``)."""
    config_flags.DEFINE_config_file(
        "config", default_config, "a configs/*.py file" + (" (default: the embedded default)"
                                                           if default_config else " (required)")
        + "; override any field with --config.<section>.<field>=value, list them with --config.help",
        lock_config=True)
    flags.DEFINE_string("workdir", default_workdir, workdir_help)
    flags.DEFINE_bool("progress", True, "progress bars (--no-progress: none)")
    flags.DEFINE_bool("quiet", False, "fewer lines: no progress lines, only the result (errors are still printed)",
                      short_name="q")
    flags.DEFINE_string("coordinator_address", None,
                        "several processes (machines) run one experiment: host:port of process 0, the "
                        "same for every process (with --num_processes and --process_id; none of them in "
                        "a SLURM step of several tasks or on a TPU slice: JAX reads the cluster's "
                        "environment); scripts/tools/launch_local.sh N starts N on this machine")
    flags.DEFINE_integer("num_processes", None, "how many processes run this experiment together (1: "
                         "this process alone, also inside a SLURM step or on a TPU slice)")
    flags.DEFINE_integer("process_id", None, "this process's number, 0..num_processes-1 (process 0 "
                         "writes the work dir)")
    flags.DEFINE_integer("initialization_timeout", 300, "seconds every process waits for the others to "
                         "join before it stops")


def _parse(flag_values, args: list[str]) -> list[str]:
    """absl's flag parsing, its errors as one line and status 2."""
    try:
        return flag_values(args)
    except (AttributeError, KeyError) as e:
        sys.exit(_error(field_message(e, args)))
    except flags.Error as e:
        sys.exit(_error(value_message(e)))


def _main(rest: list[str], *, flag_values, show_fields: bool, command) -> int:
    """What absl's ``app.run`` calls once the flags are parsed: check them and the config, join the other
    processes, run ``command``."""
    if len(rest) > 1:
        return _error(f"unexpected arguments {' '.join(rest[1:])} (see --help)")
    if flag_values.config is None:
        return _error("--config is required (a configs/*.py file)")
    try:
        cfg = experiment_config(flag_values.config)
    except ConfigError as e:
        return _error(e)
    if show_fields:
        print(config_table(cfg), end="")
        return EXIT_OK
    if not flag_values.workdir:
        return _error("--workdir is required")
    if not flag_values["verbosity"].present:
        _quiet_orbax()
    try:
        distributed.initialize(flag_values.coordinator_address, flag_values.num_processes,
                               flag_values.process_id, timeout=flag_values.initialization_timeout)
    except USER_ERRORS as e:
        return _error(e)
    progress = flag_values.progress and distributed.is_writer()  # process 0's bars only
    return run_command(lambda: command(cfg, flag_values.workdir, progress, flag_values.quiet))


def _quiet_orbax() -> None:
    """orbax logs every checkpoint step at INFO, and a failed write as pages of ERROR lines from its threads;
    the failure reaches us as an exception and is printed as one line (``--verbosity=0`` shows orbax's own
    log again)."""
    absl_logging.set_verbosity(absl_logging.FATAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # orbax's unretrieved task errors
