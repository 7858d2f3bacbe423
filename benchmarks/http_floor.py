"""The least any verified in-process HTTP read of a zarr store can cost on this machine.

An aiohttp app on 127.0.0.1, in a thread of this process (as the embedded gateway runs),
answers each key of a local zarr directory from memory, and a minimal fsspec file system
(``httpfloor://``) fetches each key with aiohttp and hashes the reply once with sha256,
the one pass verification cannot skip.  No CIDs, no DAG, no repository: whatever
``xr.open_zarr("httpfloor://…")`` costs beyond the local read is the price of HTTP in
the same process plus that one hash, and the real gateway cannot go below it.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import fsspec
from aiohttp import web
from fsspec.asyn import AsyncFileSystem

PROTOCOL = "httpfloor"


class FloorFileSystem(AsyncFileSystem):
    """``httpfloor://name/key`` → GET ``{base}/key`` from the floor server, hashed once."""

    protocol = PROTOCOL
    base = ""  # the server's address, set by ``floor_server``
    sizes: dict[str, int] = {}

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return path.removeprefix(f"{PROTOCOL}://").strip("/")

    @staticmethod
    def _key(path: str) -> str:
        return path.partition("/")[2]

    async def _cat_file(self, path: str, start=None, end=None, **kwargs) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        key = self._key(self._strip_protocol(path))
        async with self._session.get(f"{self.base}/{key}") as response:
            if response.status == 404:
                raise FileNotFoundError(path)
            body = await response.read()
        hashlib.sha256(body).digest()
        return body[start:end]

    async def _info(self, path: str, **kwargs) -> dict:
        key = self._key(self._strip_protocol(path))
        if key not in self.sizes:
            raise FileNotFoundError(path)
        return {"name": path, "size": self.sizes[key], "type": "file"}


@contextmanager
def floor_server(store: Path) -> Iterator[str]:
    """Serve every file of ``store`` from memory; yields the ``httpfloor://`` URL to open."""
    files = {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*") if p.is_file()}

    async def handle(request: web.Request) -> web.Response:
        body = files.get(request.match_info["key"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body)

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/{key:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    host, port = runner.addresses[0][:2]
    thread = threading.Thread(target=loop.run_forever, name="http-floor", daemon=True)
    thread.start()
    FloorFileSystem.base = f"http://{host}:{port}"
    FloorFileSystem.sizes = {key: len(body) for key, body in files.items()}
    fsspec.register_implementation(PROTOCOL, FloorFileSystem, clobber=True)
    try:
        yield f"{PROTOCOL}://{store.name}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
