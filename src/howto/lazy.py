"""Names a package hands on from its modules, imported when first asked for.

A folder hands on every public name of its modules (``folder_exports``: their ``__all__``
lists are the one record of what is public); the top-level package names the few it shows
(``exports``).  A module is imported when one of its names is first asked for, so
``import howto`` (and the command line) loads only what is used.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

__all__ = ["exports", "folder_exports"]


def exports(
    package: str, modules: Mapping[str, Iterable[str]]
) -> tuple[list[str], Callable[[str], object], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for ``package``.

    ``modules`` maps a module of the package (relative, as ``"chain"``) to the names it
    defines that the package hands on.
    """
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        vars(sys.modules[package])[name] = value  # kept: the next access is a plain lookup
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return sorted(where), __getattr__, __dir__


def folder_exports(package: str) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a folder that hands on the public names of all its
    modules: the names each declares in its ``__all__``, read from the sources when a name
    is first asked for (nothing is imported before).  A name that two modules declare, or
    that is a module's own name, is left to its module.  The folder's ``__all__`` is
    computed the same way, on first use."""
    found: dict[str, str] = {}

    def where() -> dict[str, str]:
        if not found:
            folder = Path(sys.modules[package].__file__).parent
            declared: dict[str, list[str]] = {}
            modules = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
            for module in modules:
                for name in _declared(folder / f"{module}.py"):
                    declared.setdefault(name, []).append(module)
            found.update(
                (name, owners[0])
                for name, owners in declared.items()
                if len(owners) == 1 and name not in modules
            )
        return found

    def __getattr__(name: str) -> object:
        if name == "__all__":
            value: object = sorted(where())
        elif name in where():
            value = getattr(importlib.import_module(f"{package}.{where()[name]}"), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        vars(sys.modules[package])[name] = value  # kept: the next access is a plain lookup
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where()))

    return __getattr__, __dir__


def _declared(source: Path) -> list[str]:
    """The names in a module's ``__all__ = [...]``, read from its source."""
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
    return []
