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
]


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


def _installed(package: str) -> bool:
    """Whether ``name@version`` is installed in tests/.oracle at that version."""
    name, _, version = package.rpartition("@")
    manifest = ORACLE_DIR / "node_modules" / name / "package.json"
    return manifest.exists() and json.loads(manifest.read_text()).get("version") == version


def install_oracle() -> Path:
    """Install the pinned npm packages into tests/.oracle (ignored by git) when one is
    missing or at another version, and copy the scripts of tests/oracle beside them.

    Returns the importer's script; the benchmarks call this too.
    """
    if not all(map(_installed, ORACLE_PACKAGES)):
        ORACLE_DIR.mkdir(exist_ok=True)
        (ORACLE_DIR / "package.json").write_text('{"name": "howto-oracle", "private": true}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "--save-exact"]
            + ORACLE_PACKAGES,
            cwd=ORACLE_DIR,
            check=True,
            timeout=900,
        )
    for script in (HERE / "oracle").glob("*.mjs"):
        shutil.copy(script, ORACLE_DIR / script.name)
    return ORACLE_DIR / "oracle.mjs"


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
