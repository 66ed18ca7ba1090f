"""The house rules of dng_jax/, checked on its source with ``ast``: no function or method over 60 lines, no
file over 500 lines, no private name (``from dng_jax.x import _y``) imported from another module.

A long function hides the steps a reader should see named; a private name imported elsewhere is an
interface nobody promised to keep. Each test lists every offender, so one run shows all that is left.
"""

from __future__ import annotations

import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "dng_jax"
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 500



def _modules() -> list[tuple[str, str]]:
    """``(path relative to the repository, source)`` of every module of the package."""
    return [(str(p.relative_to(PACKAGE.parent)), p.read_text(encoding="utf-8"))
            for p in sorted(PACKAGE.rglob("*.py"))]


def long_functions(path: str, source: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (n lines)`` of every function or method longer than ``limit`` lines, from its
    ``def`` line (decorators excluded) to its last line."""
    found = []
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                found.append(f"{path}:{node.lineno} {node.name} ({n} lines)")
    return found


def private_imports(path: str, source: str) -> list[str]:
    """``path:line module._name`` of every ``from <a dng_jax module> import _name`` (absolute or relative)."""
    found = []
    for node in ast.walk(ast.parse(source, path)):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0 and not (node.module or "").split(".")[0] == "dng_jax":
            continue
        for alias in node.names:
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                found.append(f"{path}:{node.lineno} {'.' * node.level}{node.module or ''}.{alias.name}")
    return found


def test_the_checks_see_what_they_look_for():
    """The checkers themselves, on made-up source: a 61-line function, a private import, their negatives."""
    long_body = "def f():\n" + "    x = 1\n" * 59 + "    return x\n"
    assert long_functions("m.py", long_body) == ["m.py:1 f (61 lines)"]
    assert long_functions("m.py", "@decorator\n" + long_body.replace("    x = 1\n", "", 1)) == []
    assert private_imports("m.py", "from dng_jax.io import _x, y\nfrom .stage import _z\nfrom os import _exit\n"
                                   "from dng_jax import __version__\n") == ["m.py:1 dng_jax.io._x", "m.py:2 .stage._z"]


def test_no_function_is_longer_than_60_lines():
    offenders = [f for path, source in _modules() for f in long_functions(path, source)]
    assert not offenders, "functions over 60 lines:\n" + "\n".join(offenders)


def test_no_module_is_longer_than_500_lines():
    offenders = [f"{path} ({n} lines)" for path, source in _modules()
                 if (n := len(source.splitlines())) > MAX_FILE_LINES]
    assert not offenders, "modules over 500 lines:\n" + "\n".join(offenders)


def test_no_module_imports_a_private_name_from_another():
    offenders = [f for path, source in _modules() for f in private_imports(path, source)]
    assert not offenders, "private names imported across modules:\n" + "\n".join(offenders)
