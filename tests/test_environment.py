"""Binder and conda users get the packages pip users get.

environment.yml (conda-forge, with a pip section for what conda-forge lacks) must name the
runtime dependencies of pyproject.toml plus its ``book`` extra, with the same version
constraints; the ``test`` extra is for developers and need not be there.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
#: conda-forge names that differ from the PyPI name by more than case and -/_/.
CONDA_TO_PYPI = {"matplotlib-base": "matplotlib", "pytables": "tables"}
CONDA_ONLY = {"python", "pip"}


def normalise(name: str) -> str:
    """PEP 503 normalisation: netCDF4 == netcdf4, dag_cbor == dag-cbor."""
    return re.sub(r"[-_.]+", "-", name).lower()


def conda_requirement(spec: str) -> tuple[str, SpecifierSet]:
    """``name>=1,<2`` or ``name=1.2`` (conda's prefix match) as (pypi name, specifiers)."""
    spec = spec.split("::")[-1].strip()
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", spec)
    assert match, f"cannot read the conda spec {spec!r}"
    name, constraint = match.groups()
    constraint = constraint.replace(" ", "")
    if re.fullmatch(r"=[^=].*", constraint):  # conda's "=1.2" means "1.2.*"
        constraint = f"=={constraint[1:]}.*"
    name = normalise(name)
    return normalise(CONDA_TO_PYPI.get(name, name)), SpecifierSet(constraint)


def pip_requirement(spec: str) -> tuple[str, SpecifierSet]:
    requirement = Requirement(spec)
    return normalise(requirement.name), requirement.specifier


def read_environment(text: str) -> tuple[dict[str, SpecifierSet], dict[str, SpecifierSet], str]:
    """conda packages, pip packages and the python spec of an environment.yml."""
    doc = yaml.safe_load(text)
    assert "conda-forge" in doc["channels"]
    conda, pip, python = {}, {}, ""
    for item in doc["dependencies"]:
        if isinstance(item, dict):
            for spec in item["pip"]:
                name, specifier = pip_requirement(spec)
                assert name not in pip, f"{name} is listed twice under pip"
                pip[name] = specifier
            continue
        name, specifier = conda_requirement(str(item))
        if name == "python":
            python = str(specifier)
        if name in CONDA_ONLY:
            continue
        assert name not in conda, f"{name} is listed twice"
        conda[name] = specifier
    return conda, pip, python


def read_pyproject(text: str) -> tuple[dict[str, SpecifierSet], str]:
    """Runtime dependencies plus the book extra, and requires-python."""
    project = tomllib.loads(text)["project"]
    wanted = {}
    for spec in project["dependencies"] + project["optional-dependencies"]["book"]:
        name, specifier = pip_requirement(spec)
        wanted[name] = specifier
    return wanted, project["requires-python"]


def differences(environment_yml: str, pyproject_toml: str) -> list[str]:
    conda, pip, python = read_environment(environment_yml)
    wanted, requires_python = read_pyproject(pyproject_toml)
    problems = [
        f"{n} is in both the conda and the pip list" for n in sorted(conda.keys() & pip.keys())
    ]
    listed = {**conda, **pip}
    problems += [
        f"{n} is missing from environment.yml" for n in sorted(wanted.keys() - listed.keys())
    ]
    problems += [
        f"{n} is not a dependency in pyproject.toml" for n in sorted(listed.keys() - wanted.keys())
    ]
    for name in sorted(wanted.keys() & listed.keys()):
        if listed[name] != wanted[name]:
            problems.append(
                f"{name}: environment.yml says {str(listed[name]) or 'any'}, "
                f"pyproject.toml says {str(wanted[name]) or 'any'}"
            )
    pinned = re.fullmatch(r"==(\d+\.\d+)\.\*", python)
    if not pinned:
        problems.append(f"environment.yml should pin one python minor version, not {python!r}")
    elif Version(pinned.group(1)) not in SpecifierSet(requires_python):
        problems.append(
            f"python {pinned.group(1)} does not satisfy requires-python {requires_python}"
        )
    return problems


def test_environment_yml_names_the_packages_of_pyproject():
    environment = (ROOT / "environment.yml").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert differences(environment, pyproject) == []


PYPROJECT = """
[project]
name = "x"
requires-python = ">=3.11"
dependencies = ["netCDF4>=1.6", "dag_cbor>=0.3", "intake>=2.0.9,<3"]
[project.optional-dependencies]
book = ["jupyter-book>=1,<2"]
test = ["pytest>=8"]
"""

GOOD_ENVIRONMENT = """
channels: [conda-forge]
dependencies:
  - python=3.11
  - pip
  - netcdf4 >=1.6
  - intake>=2.0.9,<3
  - pip:
      - dag-cbor>=0.3
      - jupyter-book>=1,<2
"""


def test_comparison_normalises_names_and_ignores_the_test_extra():
    assert differences(GOOD_ENVIRONMENT, PYPROJECT) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("  - netcdf4 >=1.6\n", ""), "netcdf4 is missing"),
        (("  - pip\n", "  - pip\n  - zarr>=3\n"), "zarr is not a dependency"),
        (("intake>=2.0.9,<3", "intake>=2"), "intake: environment.yml says >=2"),
        (("  - pip\n", "  - pip\n  - jupyter-book>=1,<2\n"), "in both the conda and the pip"),
        (("python=3.11", "python=3.10"), "does not satisfy"),
    ],
)
def test_comparison_finds_differences(change, expected):
    environment = GOOD_ENVIRONMENT.replace(*change)
    assert environment != GOOD_ENVIRONMENT
    assert any(expected in problem for problem in differences(environment, PYPROJECT))


def test_postbuild_installs_howto_and_opens_markdown_as_notebooks():
    post_build = (ROOT / "postBuild").read_text()
    assert re.search(r"pip install .*-e \.", post_build)
    assert "jupytext" in post_build and "md:myst" in post_build


def test_postbuild_makes_jupyterlab_open_chapters_as_notebooks(tmp_path):
    """The launch button opens a chapter's .md file: JupyterLab must show it as a notebook.

    Runs postBuild's jupytext-config lines with a fresh HOME and reads the JupyterLab
    setting they write.
    """
    lines = [
        line
        for line in (ROOT / "postBuild").read_text().splitlines()
        if line.startswith("jupytext-config ")
    ]
    assert lines, "postBuild does not set JupyterLab's default viewer"
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("JUPYTER_CONFIG_DIR", None)
    for line in lines:
        subprocess.run(shlex.split(line), env=env, check=True, capture_output=True, timeout=60)
    settings = tmp_path / ".jupyter" / "labconfig" / "default_setting_overrides.json"
    viewers = json.loads(settings.read_text())["@jupyterlab/docmanager-extension:plugin"]
    assert viewers["defaultViewers"]["markdown"] == "Jupytext Notebook"
    assert viewers["defaultViewers"]["myst"] == "Jupytext Notebook"
