"""The shape of the package: folders by layer, imports that run one way, declared APIs.

The layers, lowest first (``src/howto/README.md`` says what each holds).  A module may
import from its own layer's folder and from any lower layer, never from a higher one, and
folders that share a layer stay independent of each other.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "howto"

#: Lowest first.  Top-level modules not named here are the faces, above every layer.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "lazy"),
    ("formats",),
    ("blocks",),
    ("unixfs", "names", "ipld"),
    ("retrieval",),
    ("gateway",),
    ("catalog",),
]


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, read from the source (nothing is run)."""
    modules = {
        ".".join(p.relative_to(src.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in src.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                candidates = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                candidates = [node.module or ""]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in modules:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name and not name.startswith(candidate + "."):
                    graph[name].add(candidate)
    return graph


def room(module: str) -> str:
    """The folder (or top-level module) a module belongs to: ``howto.blocks.repo`` -> ``blocks``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def rank(module: str) -> int:
    for level, rooms in enumerate(LAYERS):
        if room(module) in rooms:
            return level
    return len(LAYERS)  # a face


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that runs up a layer or across to another folder of the same layer."""
    wrong = []
    for module, targets in graph.items():
        for target in targets:
            if target == "howto" or room(target) == room(module):
                continue
            if rank(target) > rank(module):
                wrong.append(f"{module} -> {target} (runs up)")
            elif rank(target) == rank(module) < len(LAYERS):
                wrong.append(f"{module} -> {target} (across one layer)")
    return sorted(wrong)


def test_the_package_has_no_import_cycles() -> None:
    graph = import_graph()

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), list(graph[start])
        while stack:
            current = stack.pop()
            if current == goal:
                return True
            if current not in seen:
                seen.add(current)
                stack.extend(graph[current])
        return False

    assert sorted(m for m in graph if reaches(m, m)) == []


def test_imports_run_down_the_layers() -> None:
    assert layer_violations(import_graph()) == []


def test_the_layer_check_sees_an_import_up_or_across(tmp_path: Path) -> None:
    (tmp_path / "howto" / "formats").mkdir(parents=True)
    (tmp_path / "howto" / "names").mkdir()
    (tmp_path / "howto" / "ipld").mkdir()
    for path in ["__init__.py", "formats/__init__.py", "names/__init__.py", "ipld/__init__.py"]:
        (tmp_path / "howto" / path).write_text("")
    (tmp_path / "howto" / "fs.py").write_text("")
    (tmp_path / "howto" / "formats" / "cids.py").write_text("from .. import fs\n")
    (tmp_path / "howto" / "names" / "ipns.py").write_text("from ..ipld.codec import Link\n")
    (tmp_path / "howto" / "ipld" / "codec.py").write_text("from ..formats import cids\n")
    assert layer_violations(import_graph(tmp_path / "howto")) == [
        "howto.formats.cids -> howto.fs (runs up)",
        "howto.names.ipns -> howto.ipld.codec (across one layer)",
    ]


def test_every_folder_is_a_layer() -> None:
    # howto.catalogs is the shipped data, a link to the top-level catalogs/ folder, not code
    folders = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()} - {"catalogs"}
    assert (SRC / "catalogs").is_symlink()
    assert folders == {r for rooms in LAYERS for r in rooms if (SRC / r).is_dir()}


@pytest.mark.parametrize("folder", [r for rooms in LAYERS[1:] for r in rooms])
def test_every_folder_hands_on_what_its_modules_declare(folder: str) -> None:
    package = importlib.import_module(f"howto.{folder}")
    declared: dict[str, list[str]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"howto.{folder}.{info.name}")
        assert hasattr(module, "__all__"), f"howto.{folder}.{info.name} declares no __all__"
        for name in module.__all__:
            declared.setdefault(name, []).append(info.name)
    modules = {info.name for info in pkgutil.iter_modules(package.__path__)}
    # a name two modules declare, or a module's own name, is left to its module; ipld
    # hands on a chosen few (what a zarr user needs), the other folders everything
    unique = {name for name, where in declared.items() if len(where) == 1} - modules
    if folder != "ipld":
        assert sorted(unique - set(package.__all__)) == [], f"howto.{folder} leaves some out"
    for name in package.__all__:
        assert getattr(package, name) is not None
    assert package.__doc__, f"howto.{folder} does not say what it holds"


def test_import_howto_loads_no_heavy_library() -> None:
    code = (
        "import sys, howto; heavy = {'aiohttp', 'xarray', 'intake', 'zarr', 'fsspec'}"
        " & set(sys.modules); print(sorted(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
