"""The errors a user can act on. Each names the file, flag or config field that is wrong.

Every command line prints one of these as one line ``error: ...`` on stderr and exits with status 2
(:data:`USER_ERRORS`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "DistributedError",
    "CheckpointError",
    "ConfigError",
    "ConfigMismatchError",
    "EvaluationError",
    "InputError",
    "WorkdirError",
    "WorkdirBusyError",
    "WorkerError",
    "USER_ERRORS",
]


class DataError(ValueError):
    """Bad or missing input data (images, masks, manifests); the message names the file."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or unreadable; the message names the path."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field (``sweep.seeds``)."""


class ConfigMismatchError(ConfigError):
    """A work dir holds results made with another configuration."""


class EvaluationError(ValueError):
    """A problem with the inputs of an evaluation; the message says what and where."""


class InputError(ValueError):
    """A bad command-line input (a file, a flag value); the message names it."""


class WorkdirError(OSError):
    """A work dir or output folder that cannot be used (a file, read-only, full); names the path."""


class WorkdirBusyError(WorkdirError):
    """Another process holds the work dir's lock."""


class DistributedError(RuntimeError):
    """The processes of a multi-process run cannot start together (a bad flag, an unreachable
    coordinator, a process missing); the message names the flag."""


class WorkerError(RuntimeError):
    """A worker process died (killed, out of memory); the message says what to do."""


#: Printed as one line, exit status 2, by every command.
USER_ERRORS: tuple[type[BaseException], ...] = (DataError, CheckpointError, ConfigError, EvaluationError,
                                                 InputError, WorkdirError, WorkerError, DistributedError)
