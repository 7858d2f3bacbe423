"""howto works from a fresh clone (editable install) and from a wheel, in a new venv.

Nothing is downloaded: the new environment gets howto alone (``--no-deps``), and its
dependencies come from this test environment through ``PYTHONPATH``, pointed at a folder
that links every installed package except howto itself.  Folders on ``PYTHONPATH`` have
their ``.pth`` files ignored, and this environment's own howto (editable or not) is left
out, so the script can only import the howto that was installed into the new venv.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
import howto
from howto.blocks.bundled import catalog_dir

launch = {}
for use_ipfs in (True, False, howto.list_catalog_versions()[0].cid):
    with howto.get_intake_catalog(use_ipfs).BCO.radiosondes.level2.to_dask() as ds:
        launch[str(use_ipfs)] = str(np.ravel(ds.launch_time.values)[0])
files = sorted(
    p.relative_to(catalog_dir()).as_posix()
    for p in catalog_dir().rglob("*")
    if p.is_file() and "__pycache__" not in p.parts
)
print(json.dumps({
    "howto": howto.__file__,
    "catalogs": str(catalog_dir()),
    "prefix": sys.prefix,
    "versions": [v.version for v in howto.list_catalog_versions()],
    "latest": howto.get_latest_catalog_cid(),
    "launch": launch,
    "files": files,
}))
"""


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


def dependencies_view(folder: Path) -> Path:
    """Links to this environment's installed packages, without howto and without .pth."""
    folder.mkdir()
    # an environment may chain another's site-packages (a .pth line): those count too
    chained = [p for p in sys.path if Path(p).name == "site-packages" and Path(p).is_dir()]
    for packages in dict.fromkeys([*site.getsitepackages(), *chained]):
        for item in sorted(Path(packages).iterdir()):
            name = item.name
            if (
                name.startswith(("howto", "__editable__", "__pycache__"))
                or name.endswith(".pth")
                or (folder / name).exists()
            ):
                continue
            (folder / name).symlink_to(item)
    assert (folder / "xarray").exists() and not list(folder.glob("howto*"))
    return folder


def clone(target: Path) -> Path:
    """The committed state of the repository, nothing else."""
    run(["git", "clone", "--quiet", str(ROOT), str(target)])
    return target


def fresh_venv(path: Path) -> Path:
    run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    return path / "bin" / "python"


def pip_install(python: Path, deps: Path, *args: str) -> None:
    """This environment's pip, installing into ``python``'s environment."""
    env = {**os.environ, "PYTHONPATH": str(deps)}  # setuptools for --no-build-isolation
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", *args], env=env)


def use(python: Path, deps: Path, tmp_path: Path) -> dict:
    """Run the script with the new environment's python, offline, in an empty folder."""
    work = tmp_path / "work"
    work.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("IPFS_GATEWAY", "IPFS_PATH", "XDG_CONFIG_HOME", "PYTHONHOME")
    }
    env.update(PYTHONPATH=str(deps), HOME=str(tmp_path / "home"), HOWTO_REPO=str(work / "repo"))
    out = run([str(python), "-c", SCRIPT], cwd=work, env=env).stdout
    cli = run([str(python.parent / "howto"), "catalog", "versions"], cwd=work, env=env).stdout
    return {**json.loads(out.splitlines()[-1]), "cli": cli}


def committed_catalog_files(repo: Path) -> list[str]:
    listing = run(["git", "-C", str(repo), "ls-files", "catalogs"]).stdout.split()
    return sorted(name.removeprefix("catalogs/") for name in listing)


def check(result: dict, repo: Path) -> None:
    assert result["versions"][:2] == ["v1", "v2"]
    assert result["cli"].splitlines()[0].startswith("v1\t")
    launch = result.pop("launch")
    assert launch.pop("True") == "2019-02-18T20:41:24.000000000"  # newest IPFS version
    assert launch.pop("False") == "2019-02-18T20:41:24.000000000"  # classic
    ((v1, fill),) = launch.items()  # v1 still holds the netCDF fill value
    assert v1 != result["latest"] and float(fill) == pytest.approx(9.969209968386869e36)
    # Every committed catalog file is there (YAML, data, index, CAR files).
    assert result["files"] == committed_catalog_files(repo)


@pytest.mark.timeout(180)
def test_editable_install_of_a_fresh_clone(tmp_path) -> None:
    deps = dependencies_view(tmp_path / "deps")
    repo = clone(tmp_path / "clone")
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, deps, "--no-deps", "--no-build-isolation", "-e", str(repo))
    result = use(python, deps, tmp_path)
    assert Path(result["prefix"]) == tmp_path / "venv"
    assert Path(result["howto"]) == repo / "src" / "howto" / "__init__.py"
    assert Path(result["catalogs"]) == repo / "catalogs"
    check(result, repo)


@pytest.mark.timeout(180)
def test_wheel_in_a_fresh_venv(tmp_path) -> None:
    deps = dependencies_view(tmp_path / "deps")
    repo = clone(tmp_path / "clone")  # built from committed files, as CI would
    dist = tmp_path / "dist"
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(dist), str(repo)]
    )
    (wheel,) = dist.glob("howto-*.whl")
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, deps, "--no-deps", str(wheel))
    result = use(python, deps, tmp_path)
    packages = tmp_path / "venv" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site_packages = packages / "site-packages"
    assert Path(result["howto"]) == site_packages / "howto" / "__init__.py"
    assert Path(result["catalogs"]) == site_packages / "howto" / "catalogs"
    check(result, repo)


@pytest.mark.timeout(180)
def test_metadata_builds_without_warnings(tmp_path) -> None:
    """setuptools has nothing to say about pyproject.toml: no deprecated license table, no
    data folder that it would import but not ship."""
    repo = clone(tmp_path / "clone")
    build = "import sys, setuptools.build_meta as b; b.build_wheel(sys.argv[1])"
    result = run([sys.executable, "-W", "always", "-c", build, str(tmp_path / "dist")], cwd=repo)
    output = result.stdout + result.stderr
    assert list((tmp_path / "dist").glob("howto-*.whl"))
    assert "Warning" not in output and "deprecated" not in output, output[-4000:]


@pytest.mark.timeout(180)
def test_editable_build_is_quiet_and_one_path_line(tmp_path) -> None:
    """``pip install -e .`` has nothing to warn about: every package lives under src/ (the
    catalogs through a link), so setuptools writes one .pth line, not an import finder."""
    import zipfile

    repo = clone(tmp_path / "clone")
    build = "import sys, setuptools.build_meta as b; b.build_editable(sys.argv[1])"
    result = run([sys.executable, "-W", "always", "-c", build, str(tmp_path / "dist")], cwd=repo)
    output = result.stdout + result.stderr
    assert "!!" not in output and "Warning" not in output, output[-4000:]
    (wheel,) = (tmp_path / "dist").glob("howto-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (pth,) = [name for name in archive.namelist() if name.endswith(".pth")]
        assert archive.read(pth).decode().strip() == str(repo / "src")
        assert not [name for name in archive.namelist() if name.endswith("finder.py")]
