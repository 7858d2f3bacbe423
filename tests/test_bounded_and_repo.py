"""Hostile input at the block layer: oversized or compressed gateway replies, and a
repository shared by many processes, damaged on disk, or left with a killed write."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import get_context

import aiohttp
import pytest
from multiformats import CID, multihash

from howto.blocks.repo import Repo
from howto.errors import GatewayError
from howto.retrieval.trustless import MAX_BLOCK_BYTES, GatewayBlocks

BLOCK = b"a block that a gateway could send\n"
CID_OF_BLOCK = CID("base32", 1, "raw", multihash.digest(BLOCK, "sha2-256"))


def serve_reply(headers: dict[str, str], body_chunks):
    """A loopback HTTP server whose every GET gets ``headers`` and the chunks as the body."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            try:
                for chunk in body_chunks():
                    self.wfile.write(chunk)
            except OSError:
                pass  # the client stopped reading: what a bounded client does

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.mark.parametrize(
    ("headers", "chunks", "message"),
    [
        ({"Content-Length": str(1_500_000_000)}, lambda: iter([b"x" * 1024]), "1500000000 bytes"),
        ({}, lambda: (b"x" * (1 << 20) for _ in range(1500)), "larger than"),
        (
            {"Content-Encoding": "gzip"},
            lambda: iter([gzip.compress(b"\0" * (64 << 20))]),
            "'gzip'-encoded reply",
        ),
    ],
    ids=["declared 1.5 GB", "streamed 1.5 GB", "gzip bomb"],
)
@pytest.mark.parametrize("way", ["thread", "event loop"])
def test_gateway_replies_are_bounded(headers, chunks, message, way) -> None:
    httpd, url = serve_reply(headers, chunks)
    gateway = GatewayBlocks(url, timeout=20)

    async def on_a_loop() -> bytes:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            return await gateway.aget(CID_OF_BLOCK, session)

    try:
        with pytest.raises(GatewayError, match=message):
            gateway.get(CID_OF_BLOCK) if way == "thread" else asyncio.run(on_a_loop())
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert MAX_BLOCK_BYTES == 2 << 20


def _put_many(path: str, worker: int) -> int:
    repo = Repo(path)
    for i in range(100):
        data = f"worker {worker} block {i}\n".encode()
        repo.put(CID("base32", 1, "raw", multihash.digest(data, "sha2-256")), data)
    return worker


def test_many_processes_write_one_repository_without_spurious_errors(tmp_path) -> None:
    with get_context("spawn").Pool(6) as pool:
        done = pool.starmap(_put_many, [(str(tmp_path), w) for w in range(12)])
    assert sorted(done) == list(range(12))
    assert len(list(Repo(tmp_path).keys())) == 1200
    assert list((tmp_path / "staging").iterdir()) == []


def howto(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "howto.cli", *args],
        capture_output=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_a_damaged_block_is_reported_and_replaced_by_a_put(tmp_path) -> None:
    repo = Repo(tmp_path)
    repo.put(CID_OF_BLOCK, BLOCK)
    key = next(repo.path.glob("blocks/*/*"))
    key.write_bytes(b"damaged on disk")
    env = {"HOWTO_REPO": str(tmp_path)}
    verify = howto("repo", "verify", env=env)
    assert verify.returncode == 1 and key.name.encode() in verify.stderr
    assert hashlib.sha256(BLOCK).digest() != hashlib.sha256(key.read_bytes()).digest()
    repo.put(CID_OF_BLOCK, BLOCK)  # the same block again: the damaged copy is replaced
    assert repo.get(CID_OF_BLOCK) == BLOCK
    assert howto("repo", "verify", env=env).returncode == 0


def test_staging_left_by_a_killed_write_is_removed(tmp_path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a process id that no longer runs
    host = socket.gethostname().replace("-", "_")
    stale = tmp_path / "staging" / f"{host}-{child.pid}-0123abcd"
    stale.mkdir(parents=True)
    (stale / "half-written").write_bytes(b"x" * 1000)
    mine = tmp_path / "staging" / f"{host}-{os.getpid()}-live"
    mine.mkdir()
    out = howto("repo", "gc", env={"HOWTO_REPO": str(tmp_path)})
    assert out.returncode == 0 and stale.name.encode() in out.stdout
    assert not stale.exists() and mine.exists()  # a running writer's folder stays
    stale.mkdir()
    Repo(tmp_path).put(CID_OF_BLOCK, BLOCK)  # the next transaction cleans up too
    assert not stale.exists()
