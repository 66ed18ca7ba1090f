"""One metrics interface for every stage (clu's ``write_scalars`` idea, written here, no TensorFlow).

Segmentation training (loss, accuracy, throughput), encoder retraining (loss per epoch per run) and
the sweep (stage timings) all log through :class:`MetricWriter`::

    writer = create_default_writer(workdir, "metrics", fields=("step", "loss"), keep=up_to_step(300))
    writer.write_scalars(310, {"loss": 0.12})
    writer.close()

Backends: :class:`CsvWriter` (columns fixed up front, for pandas and spreadsheets) and
:class:`JsonlWriter` (one JSON object a line, any keys) always; :class:`TensorBoardWriter` when the
TF-free ``tensorboardX`` is installed (``pip install -e ".[tensorboard]"``). Rows are flushed and
fsynced as they are written, so a killed job loses nothing it logged.

Resuming: ``keep`` decides which rows already in the files stay (e.g. :func:`up_to_step` drops the rows
logged after the checkpoint a run restarts from, so the files match an uninterrupted run);
``keep=None`` starts the files afresh.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from dng_jax.distributed import on_writer
from dng_jax.io.atomic import atomic_write_text

__all__ = ["MetricWriter", "CsvWriter", "JsonlWriter", "TensorBoardWriter", "MultiWriter", "create_default_writer",
           "up_to_step", "keep_all", "tensorboard_available"]

Row = Mapping[str, Any]


class MetricWriter(Protocol):
    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def up_to_step(step: int) -> Callable[[Row], bool]:
    """Keep the rows logged at or before ``step`` (resuming from a checkpoint at ``step``)."""
    return lambda row: int(float(row.get("step") or 0)) <= step


def keep_all(row: Row) -> bool:
    return True


def _format(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.3f}" if abs(v) >= 1e6 else f"{v:.6g}"  # Unix times keep their milliseconds
    return "" if v is None else str(v)


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


class CsvWriter:
    """Rows ``step, <fields...>`` appended to a CSV file; keys not in ``fields`` are not written."""

    def __init__(self, path: str | os.PathLike, fields: Sequence[str], keep: Callable[[Row], bool] | None = None):
        self.path = Path(path)
        self.fields = tuple(f for f in fields if f != "step")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = ",".join(("step",) + self.fields)
        if self.path.exists() and keep is not None:
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if keep(r)]
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=("step",) + self.fields, extrasaction="ignore", lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
            atomic_write_text(self.path, buf.getvalue())
        else:
            atomic_write_text(self.path, header + "\n")

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([str(int(step))] + [_format(scalars.get(k)) for k in self.fields])
        _append(self.path, buf.getvalue())

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class JsonlWriter:
    """Rows ``{"step": step, **scalars}`` appended to a JSON-lines file."""

    def __init__(self, path: str | os.PathLike, keep: Callable[[Row], bool] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and keep is not None:
            rows = []
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:  # a line cut by a crash
                    continue
                if keep(row):
                    rows.append(line)
            atomic_write_text(self.path, "".join(r + "\n" for r in rows))
        else:
            atomic_write_text(self.path, "")

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        row = {"step": int(step), **{k: (float(v) if hasattr(v, "dtype") else v) for k, v in scalars.items()}}
        _append(self.path, json.dumps(row, allow_nan=True) + "\n")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def tensorboard_available() -> bool:
    """Whether the optional ``tensorboardX`` (``pip install -e ".[tensorboard]"``) is installed."""
    return importlib.util.find_spec("tensorboardX") is not None


class TensorBoardWriter:
    """Event files for TensorBoard through ``tensorboardX`` (no TensorFlow); numeric values only.
    On resume the events after ``purge_step`` are hidden by TensorBoard itself."""

    def __init__(self, logdir: str | os.PathLike, purge_step: int | None = None):
        from tensorboardX import SummaryWriter  # optional extra, imported only when asked for

        self._writer = SummaryWriter(logdir=os.fspath(logdir), purge_step=purge_step)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for k, v in scalars.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self._writer.add_scalar(k, float(v), int(step))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class MultiWriter:
    """Fans every call out to several writers."""

    def __init__(self, writers: Sequence[MetricWriter]):
        self.writers = list(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for w in self.writers:
            w.write_scalars(step, scalars)

    def flush(self) -> None:
        for w in self.writers:
            w.flush()

    def close(self) -> None:
        for w in self.writers:
            w.close()


def create_default_writer(logdir: str | os.PathLike, name: str, fields: Sequence[str], *,
                          keep: Callable[[Row], bool] | None = None, purge_step: int | None = None,
                          tensorboard: bool | None = None) -> MultiWriter:
    """``logdir/<name>.csv`` + ``logdir/<name>.jsonl`` (+ ``logdir/tensorboard/<name>/`` when
    ``tensorboard`` is True, or None and tensorboardX is installed). With several processes
    (:mod:`dng_jax.distributed`) process 0 writes them; the others get a writer that writes nothing."""
    return on_writer(_create_default_writer, logdir, name, fields, keep, purge_step, tensorboard) or MultiWriter([])


def _create_default_writer(logdir, name, fields, keep, purge_step, tensorboard) -> MultiWriter:
    logdir = Path(logdir)
    writers: list[MetricWriter] = [CsvWriter(logdir / f"{name}.csv", fields, keep),
                                   JsonlWriter(logdir / f"{name}.jsonl", keep)]
    if tensorboard or (tensorboard is None and tensorboard_available()):
        writers.append(TensorBoardWriter(logdir / "tensorboard" / name, purge_step))
    return MultiWriter(writers)
