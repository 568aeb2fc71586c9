"""The attribution domain stays pure: standard library only, no I/O, no clock.

The decisive check imports every module of ``services/domain`` (found by walking the package
directory, not through ``__init__``) in a fresh interpreter without site-packages, where any
import outside the standard library and the domain itself is refused and recorded.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import services.domain as domain

FORBIDDEN = {"sqlalchemy", "kafka", "fastapi", "logging", "httpx", "socket"}
ALSO_FORBIDDEN = {"os", "io", "time", "random", "subprocess", "requests", "asyncio", "pydantic"}
FIRST_PARTY = {"services"}
DOMAIN = "services.domain"
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}
PACKAGE_DIR = Path(domain.__file__).parent
SOURCES = sorted(PACKAGE_DIR.glob("*.py"))


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_every_module_imports() -> None:
    names = [info.name for info in pkgutil.iter_modules(domain.__path__, f"{domain.__name__}.")]
    assert {n.rsplit(".", 1)[1] for n in names} >= {"journey", "models", "allocation", "attribute"}
    for name in names:
        importlib.import_module(name)
    assert len(SOURCES) == len(names) + 1  # + __init__.py


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_module_imports_only_pure_stdlib(source: Path) -> None:
    roots = imported_roots(ast.parse(source.read_text(), filename=str(source)))
    assert not roots & FORBIDDEN
    assert not roots & ALSO_FORBIDDEN
    allowed = set(sys.stdlib_module_names) | FIRST_PARTY
    assert roots <= allowed, roots - allowed
    first_party = {
        node.module
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
        if node.module.split(".")[0] in FIRST_PARTY
    }
    assert all(m == DOMAIN or m.startswith(DOMAIN + ".") for m in first_party), first_party


# Run with ``python -I -S``: no site-packages, no environment. A finder first on the meta path
# refuses any import that is neither standard library nor the domain package, and records it
# when a domain module asked (the stdlib's own optional imports, e.g. ``org``, are not ours).
_EVERY_MODULE_PROBE = """
import importlib, json, pathlib, sys

root = pathlib.Path(sys.argv[1])
sys.path.insert(0, str(root))
stdlib = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
refused = []


def importer():
    frame = sys._getframe(2)
    while frame is not None and "importlib" in frame.f_globals.get("__name__", "importlib"):
        frame = frame.f_back
    return "" if frame is None else frame.f_globals.get("__name__", "")


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in stdlib or name in ("services", "services.domain"):
            return None
        if name.startswith("services.domain."):
            return None
        asker = importer()
        if asker.startswith("services."):
            refused.append(f"{asker} -> {name}")
        raise ImportError(f"not standard library: {name}")


sys.meta_path.insert(0, Refuse())
failures = {}
package = root / "services" / "domain"
for source in sorted(package.rglob("*.py")):
    parts = source.relative_to(root).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    try:
        importlib.import_module(name)
    except Exception as exc:
        failures[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"refused": sorted(set(refused)), "failures": failures}))
"""


def test_every_module_imports_with_only_the_standard_library() -> None:
    """Each module of the domain imports with nothing but the stdlib available (issue 9)."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _EVERY_MODULE_PROBE, str(PACKAGE_DIR.parents[1])],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report == {"refused": [], "failures": {}}


def test_public_api_pulls_in_nothing_impure_transitively() -> None:
    """Importing the package (what callers do) loads only the stdlib, checked in a fresh process."""
    repo_root = PACKAGE_DIR.parents[2]
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import services.domain; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(repo_root)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    loaded = set(result.stdout.split())
    assert not loaded & (FORBIDDEN | (ALSO_FORBIDDEN - {"os", "io", "time"}))
    stdlib = set(sys.stdlib_module_names) | set(sys.builtin_module_names) | {"__main__"}
    assert loaded - FIRST_PARTY <= stdlib, loaded - FIRST_PARTY - stdlib


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_module_reads_no_clock_and_does_no_io(source: Path) -> None:
    tree = ast.parse(source.read_text(), filename=str(source))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                assert func.attr not in CLOCK_CALLS, f"{source.name}:{node.lineno}"
            if isinstance(func, ast.Name):
                assert func.id not in {"open", "print", "input", "eval", "exec"}, (
                    f"{source.name}:{node.lineno}"
                )


def test_public_api_is_reexported() -> None:
    for name in domain.__all__:
        assert hasattr(domain, name), name
