"""Shared fixtures: an isolated block repository and the npm oracle."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ORACLE_DIR = HERE / ".oracle"
ORACLE_PACKAGES = [
    "ipfs-unixfs-importer@17.1.1",
    "blockstore-core@7.0.1",
    # js-ipns and the keys it signs with (all run on node 20)
    "ipns@10.1.6",
    "@libp2p/crypto@5.2.0",
    "multiformats@13.4.2",
    # CAR files: the reference JS library, the ipfs-car command and the UnixFS exporter
    "@ipld/car@5.4.7",
    "ipfs-car@3.1.0",
    "ipfs-unixfs-exporter@16.2.2",
]
# verified-fetch and its libp2p dependencies want node >= 22: it goes into a folder of its
# own with a node 22 from the npm registry, so the other oracles stay small and use any node
FETCH_DIR = ORACLE_DIR / "fetch"
FETCH_PACKAGES = ["@helia/verified-fetch@8.0.4", "node@22.23.3"]


@pytest.fixture(autouse=True)
def howto_repo(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty ``$HOWTO_REPO``."""
    path = tmp_path_factory.mktemp("repo")
    monkeypatch.setenv("HOWTO_REPO", str(path))
    return path


@pytest.fixture
def no_configured_gateway(monkeypatch, tmp_path) -> Path:
    """No gateway from the environment or a gateway file: only local blocks, unless a test
    configures one.  Returns the (empty) home directory."""
    for name in ("IPFS_GATEWAY", "IPFS_PATH", "XDG_CONFIG_HOME", "HOWTO_GATEWAYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("HOWTO_GATEWAY_TIMEOUT", raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    return home


class Oracle:
    """Runs ipfs-unixfs-importer (node) on paths and returns its root CIDs."""

    def __init__(self, directory: Path) -> None:
        self.script = directory / "oracle.mjs"

    def cids(self, *paths: Path, profile: str = "default", chunk: int = 0) -> list[str]:
        out = subprocess.run(
            ["node", str(self.script), profile, str(chunk), *map(str, paths)],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout
        return out.split()

    def cid(self, path: Path, **kwargs) -> str:
        return self.cids(path, **kwargs)[0]


def _installed(directory: Path, packages: list[str]) -> bool:
    """Whether every ``name@version`` of ``packages`` is in ``directory``'s node_modules."""
    for package in packages:
        name, version = package.rsplit("@", 1)
        manifest = directory / "node_modules" / name / "package.json"
        if not manifest.exists() or json.loads(manifest.read_text())["version"] != version:
            return False
    return True


def _npm_install(directory: Path, packages: list[str]) -> None:
    if _installed(directory, packages):
        return
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / "package.json"
    if not manifest.exists():
        manifest.write_text(f'{{"name": "howto-{directory.name}", "private": true}}\n')
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent", *packages],
        cwd=directory,
        check=True,
        timeout=900,
    )


def install_oracle() -> Path:
    """Install the pinned npm packages into tests/.oracle (ignored by git) when missing.

    Returns the importer's script; the benchmarks call this too.
    """
    _npm_install(ORACLE_DIR, ORACLE_PACKAGES)
    for script in (HERE / "oracle").glob("*.mjs"):
        shutil.copy(script, ORACLE_DIR / script.name)
    return ORACLE_DIR / "oracle.mjs"


def install_fetch_oracle() -> tuple[Path, Path]:
    """Install verified-fetch and node 22 into tests/.oracle/fetch when missing.

    Returns (the node 22 program, the script that fetches through verified-fetch).
    """
    _npm_install(FETCH_DIR, FETCH_PACKAGES)
    node = FETCH_DIR / "node_modules" / ".bin" / "node"
    if not node.exists():  # the node package fetches its binary in an install script
        raise RuntimeError(f"{node} is missing: npm did not run the node package's script")
    shutil.copy(HERE / "oracle" / "fetch" / "verified_fetch.mjs", FETCH_DIR)
    return node, FETCH_DIR / "verified_fetch.mjs"


@pytest.fixture(scope="session")
def oracle() -> Oracle:
    """The npm importer, installed once per session."""
    install_oracle()
    return Oracle(ORACLE_DIR)


@pytest.fixture(scope="session")
def js_ipns() -> Path:
    """js-ipns's script (tests/oracle/ipns.mjs), installed once per session."""
    install_oracle()
    return ORACLE_DIR / "ipns.mjs"
