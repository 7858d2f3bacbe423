"""The block chain howto reads from: the local repository, the bundled CARs, then gateways.

``default_chain`` assembles it.  Local sources answer first, with no HTTP; gateways are
asked only for what is not local, in order: the one configured the IPIP-280 way, then
those listed in ``$HOWTO_GATEWAYS`` (see ``howto.gateways``).  ``offline=True`` leaves
the gateways out, as kubo's ``--offline`` does.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from ..blocks.bucket import open_repo
from ..blocks.bundled import bundled_car_files
from ..blocks.chain import BlockSource, BlockStore, CarBlocks, Chain
from .discovery import configured_gateways
from .trustless import GatewayBlocks


@functools.lru_cache(maxsize=8)
def _bundled(paths: tuple) -> CarBlocks:
    return CarBlocks(paths)


def bundled_blocks() -> CarBlocks:
    """The blocks of every pinned catalog version, read and verified once per process."""
    return _bundled(tuple(bundled_car_files()))


def local_sources(repo: BlockStore | None = None) -> list[BlockSource]:
    """The repository (``$HOWTO_REPO`` unless given: a folder or a bucket), then the
    bundled blocks."""
    return [repo if repo is not None else open_repo(), bundled_blocks()]


def gateway_sources(
    urls: Sequence[str] | None = None, timeout: float | None = None
) -> list[GatewayBlocks]:
    """A trustless client for each gateway in ``urls`` (default: the configured ones)."""
    urls = configured_gateways() if urls is None else urls
    return [GatewayBlocks(url, timeout) for url in urls]


def default_chain(
    offline: bool = False,
    gateways: Sequence[str] | None = None,
    timeout: float | None = None,
    keep: bool = False,
    repo: BlockStore | None = None,
) -> Chain:
    """Local sources, then gateways (none when ``offline``).

    ``keep=True`` stores blocks fetched from gateways in the local repository, as
    ``ipfs cat`` does; the command line does that, the ``ipfs://`` file system does not.
    """
    repo = repo if repo is not None else open_repo()
    remote = [] if offline else gateway_sources(gateways, timeout)
    return Chain(local_sources(repo), remote, keep=repo if keep else None)


def local_chain(repo: BlockStore | None = None) -> Chain:
    """What ``howto serve`` and the embedded gateway serve: the repository and the bundled
    blocks, no gateway."""
    return Chain(local_sources(repo))


__all__ = ["bundled_blocks", "default_chain", "gateway_sources", "local_chain", "local_sources"]
