"""Names a package hands on from its modules, imported when first asked for.

A package's ``__init__`` says which of its modules defines each public name; the module is
imported on first access, so ``import howto`` (and the command line) loads only what is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping

__all__ = ["exports"]


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
        globals_of(package)[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals_of(package)) | set(where))

    return sorted(where), __getattr__, __dir__


def globals_of(package: str) -> dict:
    """The namespace of an imported package (where a resolved name is kept for next time)."""
    return vars(importlib.import_module(package))
