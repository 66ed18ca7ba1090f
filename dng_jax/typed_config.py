"""Typed, hashable hyperparameters: frozen dataclasses that check their own values.

Every section of an experiment's ``ConfigDict`` (``configs/*.py``) has one of these, with field names
equal to the section's keys, so it converts once: ``Cls(**section)`` (:func:`from_section`; unknown
keys are refused, missing ones take the defaults, so a config stored by an older version still loads).
Being frozen and hashable they are jit static arguments and cache keys.

A field is declared with :func:`param` (default + a one-line help, shown by ``--config.help``);
``__post_init__`` coerces values to the annotated type (a list becomes a tuple, an int a float where a
float is wanted) and refuses the rest, then calls :meth:`TypedConfig.check` for the ranges. Errors are
:class:`dng_jax.errors.ConfigError` naming the field, e.g. ``sweep.seeds: must be >= 1, got 0``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from dng_jax.errors import ConfigError

__all__ = ["TypedConfig", "FieldError", "REQUIRED", "param", "require", "from_section", "describe_fields", "as_dict",
           "field_types", "type_words", "nearest_fields"]


class FieldError(ConfigError):
    """A bad value of one field; ``field`` is its dotted name inside the section."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


REQUIRED: Any = dataclasses.MISSING


def param(default: Any, help: str) -> Any:  # noqa: A002 - the word users know
    """A dataclass field with a default (:data:`REQUIRED`: none) and a one-line description."""
    return dataclasses.field(default=default, metadata={"help": help})


def require(ok: bool, field: str, message: str) -> None:
    """Raise :class:`FieldError` for ``field`` unless ``ok``."""
    if not ok:
        raise FieldError(field, message)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, field: str) -> Any:
    """``value`` as the annotated type ``tp`` (int, float, bool, str, X | None, tuple[X, ...], a
    TypedConfig), or a :class:`FieldError`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, field)
            except FieldError as e:
                errors.append(e.message)
        raise FieldError(field, errors[0] if len(errors) == 1 else f"expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
            raise FieldError(field, f"expected a tuple, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], field) for v in value)
        return tuple(value)
    if isinstance(tp, type) and issubclass(tp, TypedConfig):
        if isinstance(value, tp):
            return value
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        if not isinstance(value, Mapping):
            raise FieldError(field, f"expected a section of fields, got {value!r}")
        try:
            return from_section(tp, value)
        except FieldError as e:
            raise FieldError(f"{field}.{e.field}", e.message) from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise FieldError(field, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            raise FieldError(field, f"expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldError(field, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise FieldError(field, f"expected a string, got {value!r}")
        return value
    return value


@typing.dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, param))
class TypedConfig:
    """Base of the typed config sections: type coercion, then :meth:`check`.

    Every subclass is made a frozen dataclass (``__init_subclass__``): declare the fields with
    :func:`param` and override :meth:`check`."""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True)(cls)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(getattr(self, f.name), hints[f.name], f.name))
        self.check()

    def check(self) -> None:
        """Range checks of the values (raise :class:`FieldError` via :func:`require`)."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def from_section(cls: type, section: Mapping[str, Any] | Any, name: str | None = None):
    """``cls(**section)`` for a ConfigDict section or a dict; unknown keys are a :class:`FieldError`.

    ``name`` (the section's name, e.g. ``"sweep"``) prefixes the field in error messages."""
    d = section.to_dict() if hasattr(section, "to_dict") else dict(section or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    try:
        if unknown:
            raise FieldError(unknown[0], f"no such field (the fields are {', '.join(sorted(known))})")
        return cls(**d)
    except FieldError as e:
        if name is None:
            raise
        raise FieldError(f"{name}.{e.field}", e.message) from None


def as_dict(cfg: TypedConfig) -> dict[str, Any]:
    """Nested plain dict of a typed config (tuples stay tuples)."""
    return {f.name: (as_dict(v) if isinstance(v := getattr(cfg, f.name), TypedConfig) else v)
            for f in dataclasses.fields(cfg)}


def field_types(cls: type, prefix: str = "") -> dict[str, Any]:
    """Dotted name -> annotated type of every field of the config class ``cls``, nested sections flattened
    (what a ``--config.<section>.<field>`` may name)."""
    hints, out = typing.get_type_hints(cls), {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and issubclass(tp, TypedConfig):
            out.update(field_types(tp, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = tp
    return out


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def type_words(tp: Any) -> str:
    """An annotated type as a user reads it: ``int`` -> "an integer", ``tuple[int, ...]`` -> "a tuple of
    integers, e.g. (5, 20)", ``float | None`` -> "a number or None"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        words = [type_words(a) for a in args if a is not type(None)]
        return " or ".join(words) + (" or None" if type(None) in args else "")
    if origin is tuple:
        inner = args[0] if args else None
        example = {int: "(5, 20)", float: "(0.5, 1.0)", str: "('kmc', 'ng')"}.get(inner, "(1, 2)")
        plural = {int: "integers", float: "numbers", str: "strings"}.get(inner, "values")
        return f"a tuple of {plural}, e.g. {example}"
    return _TYPE_WORDS.get(tp, _type_name(tp))


def _initials(name: str) -> str:
    return "".join(w[0] for w in name.split("_") if w)


def nearest_fields(cls: type, name: str, n: int = 3) -> list[str]:
    """The fields of ``cls`` nearest to the unknown dotted ``name``: a field of the same section whose name
    abbreviates it (``train.learning_rate`` -> ``train.lr``), then the closest spellings (difflib)."""
    names = list(field_types(cls))
    section, _, leaf = name.rpartition(".")
    short = [f for f in names if f.rpartition(".")[0] == section and f.rpartition(".")[2] == _initials(leaf)]
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    return list(dict.fromkeys(short + close))[:n]


def describe_fields(cfg: TypedConfig, prefix: str = "") -> Iterator[tuple[str, Any, str]]:
    """``(dotted name, value, help)`` of every field, nested sections flattened."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, TypedConfig):
            yield from describe_fields(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value, f.metadata.get("help", "")
