"""Which gateway howto reads from: one configured the IPIP-280 way, else its own.

IPIP-280 (ipfs/specs) order: the ``IPFS_GATEWAY`` variable, then the first line of a
``gateway`` file that a kubo node writes: ``$IPFS_PATH/gateway``, ``~/.ipfs/gateway``,
``$XDG_CONFIG_HOME/ipfs/gateway``, ``~/.config/ipfs/gateway``, ``/etc/ipfs/gateway``.
With none of them, howto starts its embedded gateway on a free loopback port, serving the
local repository and the bundled catalog blocks, so everything works offline.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .gateway import GatewayServer

_embedded: dict[Path, GatewayServer] = {}  # repository path → its running gateway
_lock = threading.Lock()


def _gateway_files() -> list[Path]:
    home = Path.home()
    files = []
    if ipfs_path := os.environ.get("IPFS_PATH"):
        files.append(Path(ipfs_path) / "gateway")
    files.append(home / ".ipfs" / "gateway")
    if xdg := os.environ.get("XDG_CONFIG_HOME"):
        files.append(Path(xdg) / "ipfs" / "gateway")
    files += [home / ".config" / "ipfs" / "gateway", Path("/etc/ipfs/gateway")]
    return files


def configured_gateway() -> str | None:
    """The gateway a user configured (IPIP-280), or ``None``."""
    if url := os.environ.get("IPFS_GATEWAY", "").strip():
        return url.rstrip("/")
    for path in _gateway_files():
        try:
            line = path.read_text().splitlines()[0].strip()
        except (OSError, IndexError):
            continue
        if line:
            return line.rstrip("/")
    return None


def embedded_gateway_url() -> str:
    """The URL of the embedded gateway for the current repository, started on first use.

    One gateway per repository path, so that changing ``$HOWTO_REPO`` in a running process
    changes what is served, as it does for ``howto.Repo()``.
    """
    from .repo import default_repo_path

    repo = default_repo_path()
    with _lock:
        server = _embedded.get(repo)
        if server is None:
            from .gateway import GatewayServer
            from .sources import default_source

            server = GatewayServer(default_source())
            server.start()
            _embedded[repo] = server
        return server.url


def gateway_url() -> str:
    """The configured gateway, else the embedded one."""
    return configured_gateway() or embedded_gateway_url()
