"""The embedded IPFS HTTP gateway (aiohttp), serving blocks by CID on loopback only.

It follows the path gateway and trustless gateway specs (ipfs/specs, http-gateways).
``GET``/``HEAD /ipfs/{cid}[/{path}]`` gives UnixFS files as bytes (single and multiple
``Range``), directories as an HTML listing (or their ``index.html``), DAG-CBOR, DAG-JSON,
JSON and CBOR blocks as stored (an HTML preview for browsers), and, asked for with
``?format=`` or ``Accept``: a single block (``raw``), a CAR (``car``, with ``dag-scope``,
``entity-bytes`` and the ``order``/``dups`` parameters), a tar archive (``tar``).  Paths
go through UnixFS folders and through DAG-CBOR and DAG-JSON links.  ``/ipns/{name}/…``
serves what a verified IPNS record points at, and ``?format=ipns-record`` the record.
Only content reached from a CID or a signed name is served: there is no way to name a
file on this machine.

This module starts and stops the server; ``app`` routes the requests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from ..blocks.chain import BlockSource
from ..blocks.repo import default_repo_location
from ..names.ipns import RecordStore
from ..retrieval.sources import local_chain
from .app import Gateway
from .failures import server_log


class GatewayServer:
    """An aiohttp gateway on 127.0.0.1 running in a background thread."""

    def __init__(
        self, source: BlockSource, port: int = 0, records: RecordStore | None = None
    ) -> None:
        self.source = source
        self.records = records
        self.port = port
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> str:
        """Start serving; returns the base URL (``http://127.0.0.1:PORT``)."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start())
            except BaseException as exc:  # reported to the caller of start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="howto-gateway", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self.url

    async def _start(self) -> None:
        self._runner = web.AppRunner(
            Gateway(self.source, self.records).app(), access_log=None, logger=server_log
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.port = port
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop serving and end the background thread."""
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None


@contextmanager
def serve(
    source: BlockSource | None = None, port: int = 0, records: RecordStore | None = None
) -> Iterator[str]:
    """Run a gateway on loopback for the ``with`` block; yields its base URL.

    It serves ``source``, by default the local blocks (never a configured gateway's), and
    the IPNS records of ``records`` (by default those kept beside the blocks).
    """
    server = GatewayServer(source if source is not None else local_chain(), port, records)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


_embedded: dict[str, GatewayServer] = {}  # repository path → its running gateway
_embedded_lock = threading.Lock()


def embedded_gateway_url() -> str:
    """The URL of a gateway serving the local blocks, started in-process on first use.

    For programs that want an HTTP gateway (plain ipfsspec, a browser): howto itself reads
    local blocks directly.  One per repository path, so that changing ``$HOWTO_REPO`` in a
    running process changes what is served, as it does for ``howto.repo.Repo()``.
    """
    repo = default_repo_location()
    with _embedded_lock:
        server = _embedded.get(repo)
        if server is None:
            server = GatewayServer(local_chain())
            server.start()
            _embedded[repo] = server
        return server.url


__all__ = ["GatewayServer", "embedded_gateway_url", "serve"]
