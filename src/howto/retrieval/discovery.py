"""Which gateways howto may ask for blocks that are not local.

First the one configured the IPIP-280 way (ipfs/specs): the ``IPFS_GATEWAY`` variable,
else the first line of a ``gateway`` file that a kubo node writes: ``$IPFS_PATH/gateway``,
``~/.ipfs/gateway``, ``$XDG_CONFIG_HOME/ipfs/gateway``, ``~/.config/ipfs/gateway``,
``/etc/ipfs/gateway``.  Then any listed in ``$HOWTO_GATEWAYS`` (separated by commas or
spaces), in that order.  With none, howto reads local blocks only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


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


def configured_gateways() -> list[str]:
    """Every gateway to ask, in order: the IPIP-280 one, then ``$HOWTO_GATEWAYS``."""
    urls = [configured_gateway()] + re.split(r"[\s,]+", os.environ.get("HOWTO_GATEWAYS", ""))
    found: list[str] = []
    for url in urls:
        if url and url.rstrip("/") not in found:
            found.append(url.rstrip("/"))
    return found


__all__ = [
    "configured_gateway",
    "configured_gateways",
]
