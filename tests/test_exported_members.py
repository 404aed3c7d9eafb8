"""The public surface (STYLE §13, after httpx's `tests/test_exported_members.py`).

`mirrorspec/__init__.py` exports the stable library API in one sorted `__all__`, and every
module says what it exports with its own `__all__`, all of whose names exist.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

import mirrorspec

PACKAGE = Path(mirrorspec.__file__).parent
# `python -m mirrorspec` runs the CLI on import; it is a script, not a module to import from.
SCRIPTS = {"mirrorspec.__main__"}


def defined_names(source: Path) -> set[str]:
    """Public names a module binds at top level: imports (except `__future__`), assignments,
    functions and classes."""
    names: set[str] = set()
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.asname or alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return {name for name in names if not name.startswith("_")}


def test_all_is_sorted() -> None:
    assert mirrorspec.__all__ == sorted(mirrorspec.__all__)
    assert len(set(mirrorspec.__all__)) == len(mirrorspec.__all__)


def lazy_names(source: Path) -> set[str]:
    """Names a module imports at top level under `if TYPE_CHECKING:` (for type checkers) and
    serves at run time from its `__getattr__` (PEP 562), imported at first use."""
    names: set[str] = set()
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom):
                    names |= {alias.asname or alias.name for alias in statement.names}
    return names


def test_all_imports_are_exported() -> None:
    # Statically: every public name __init__.py binds (at once, or at first use for the
    # library's heavier names: `--help` must not import them) is exported, and nothing else.
    lazy = lazy_names(PACKAGE / "__init__.py")
    assert set(mirrorspec.__all__) == defined_names(PACKAGE / "__init__.py") | lazy
    assert lazy == set(mirrorspec._LAZY)
    for name in mirrorspec.__all__:  # each resolves (and stays bound afterwards)
        getattr(mirrorspec, name)
    # `plan` is the engine's function, not the submodule of the same name.
    assert mirrorspec.plan is importlib.import_module("mirrorspec.engine").plan
    # At run time too, leaving out submodules (set as attributes when they are imported)
    # and `annotations` from `from __future__ import annotations`.
    public = {
        name
        for name, value in vars(mirrorspec).items()
        if not name.startswith("_") and not isinstance(value, ModuleType) and name != "annotations"
    }
    assert public == set(mirrorspec.__all__)


def test_the_library_api_in_the_package_docstring_is_exported() -> None:
    # The usage example imports these from `mirrorspec`; keep them exported.
    assert {"RunContext", "load_spec", "plan", "apply", "audit"} <= set(mirrorspec.__all__)
    assert isinstance(mirrorspec.__version__, str)


def _module_names() -> list[str]:
    found = [
        info.name
        for info in pkgutil.walk_packages(mirrorspec.__path__, prefix="mirrorspec.")
        if info.name not in SCRIPTS
    ]
    return sorted(found)


MODULES = _module_names()


def test_walk_finds_every_module_file() -> None:
    files = {
        ".".join(("mirrorspec", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        for p in PACKAGE.rglob("*.py")
    }
    assert set(MODULES) | SCRIPTS == files - {"mirrorspec"}


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_all_and_every_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{name} declares no __all__ list"
    assert all(isinstance(n, str) for n in exported)
    assert len(set(exported)) == len(exported), f"{name}.__all__ lists a name twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names what it does not define"
