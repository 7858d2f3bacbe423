"""Blocks from anywhere: local sources first, then gateways in order, every block verified.

The gateways are real servers on 127.0.0.1: howto's own (serving a second repository), a
server that answers 404 to everything, one that accepts connections and never answers,
and one that flips a byte in every block it sends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import howto
from howto.blocks.bundled import bundled_car_files
from howto.blocks.chain import CarBlocks, Chain, MappingBlocks
from howto.blocks.repo import Repo
from howto.errors import GatewayError, IntegrityError, NotFoundError, UnavailableError
from howto.gateway import serve
from howto.retrieval.discovery import configured_gateway, configured_gateways
from howto.retrieval.reader import DagReader
from howto.retrieval.trustless import GatewayBlocks
from howto.unixfs.add import add

SRC = Path(__file__).parent.parent / "src" / "howto"
BIG = os.urandom(3 * 262144 + 99)


@pytest.fixture(autouse=True)
def offline(no_configured_gateway):
    assert configured_gateway() is None


class Server:
    """A small HTTP server on loopback whose every GET gets ``answer(path)``."""

    def __init__(self, answer) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.paths.append(self.path)
                status, body = answer(self.path)
                if status is None:  # never answer
                    time.sleep(60)
                    return
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET

            def log_message(self, *args) -> None:
                pass

        server = self
        self.paths: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def nowhere():
    server = Server(lambda path: (404, b"not here\n"))
    yield server
    server.close()


@pytest.fixture
def stalling():
    server = Server(lambda path: (None, b""))
    yield server
    server.close()


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """A second repository with a file and a directory, served by howto's gateway."""
    base = tmp_path_factory.mktemp("remote")
    repo = Repo(base / "repo")
    tree = base / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "big.bin").write_bytes(BIG)
    (tree / "sub" / "note.txt").write_text("a note from elsewhere\n")
    root = add(tree, repo=repo, cid_version=1)
    with serve(repo) as url:
        yield root, url, repo


@pytest.fixture
def liar(remote):
    """A gateway that relays the honest one but flips the last byte of every reply (the last
    block of a CAR, or the single block asked for)."""
    import urllib.request

    _, honest, _ = remote

    def answer(path: str):
        with urllib.request.urlopen(honest + path) as response:
            body = bytearray(response.read())
        if body:
            body[-1] ^= 1
        return 200, bytes(body)

    server = Server(answer)
    yield server
    server.close()


def howto_cli(*args, env: dict | None = None, timeout: float = 120):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "howto.cli", *map(str, args)],
        capture_output=True,
        env=full_env,
        timeout=timeout,
    )


# --- the chain ----------------------------------------------------------------------------


def test_local_sources_answer_before_any_gateway(nowhere) -> None:
    data = b"kept locally\n"
    cid = add_bytes(data)
    chain = Chain([Repo()], [GatewayBlocks(nowhere.url, timeout=5)])
    assert chain.get(cid) == data
    assert nowhere.paths == []


def test_gateways_are_asked_in_order_and_a_404_passes_the_request_on(remote, nowhere) -> None:
    root, url, _ = remote
    chain = Chain([Repo()], [GatewayBlocks(nowhere.url, 5), GatewayBlocks(url, 5)])
    assert chain.get(root)  # the root directory node, from the second gateway
    assert len(nowhere.paths) == 1 and "format=raw" in nowhere.paths[0]


def test_when_every_source_fails_one_error_names_each(nowhere, stalling) -> None:
    cid = add_bytes(b"nobody has this\n", only_hash=True)
    chain = Chain(
        [Repo(), CarBlocks(bundled_car_files())],
        [GatewayBlocks(nowhere.url, 5), GatewayBlocks(stalling.url, 0.5)],
    )
    started = time.monotonic()
    with pytest.raises(GatewayError) as info:
        chain.get(cid)
    assert time.monotonic() - started < 5
    message = str(info.value)
    for part in ("local repository", "bundled catalog blocks", nowhere.url, stalling.url):
        assert part in message
    assert "HTTP 404" in message and "did not answer within 0.5 s" in message
    assert "\n" not in message


def test_known_path_answers_from_verified_nodes_in_memory_only(tmp_path) -> None:
    """``DagReader.known_path`` walks only nodes verified earlier: nothing before a read,
    the same CIDs after one, even once no source holds any block."""
    tree = tmp_path / "tree"
    (tree / "inner").mkdir(parents=True)
    (tree / "inner" / "leaf.txt").write_bytes(b"a leaf\n")
    blocks: dict[str, bytes] = {}
    store = MappingBlocks(blocks)
    root = add(tree, repo=store, cid_version=1, raw_leaves=True)
    reader = DagReader(Chain([store]))
    assert reader.known_path(root, "inner/leaf.txt") is None
    cids = reader.resolve(root, "inner/leaf.txt")
    assert len(cids) == 3 and reader.chain.get(cids[-1]) == b"a leaf\n"
    blocks.clear()
    assert reader.known_path(root, "inner/leaf.txt") == cids
    assert reader.known_path(root, "") == [root]
    with pytest.raises(NotFoundError):
        reader.known_path(root, "inner/other.txt")


def test_the_configured_gateways_in_order(monkeypatch) -> None:
    monkeypatch.setenv("IPFS_GATEWAY", "http://127.0.0.1:1/")
    monkeypatch.setenv(
        "HOWTO_GATEWAYS", "http://127.0.0.1:2, http://127.0.0.1:1 http://127.0.0.1:3"
    )
    assert configured_gateways() == [
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        "http://127.0.0.1:3",
    ]


def add_bytes(data: bytes, **options) -> object:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data"
        path.write_bytes(data)
        return add(path, cid_version=1, **options)


# --- the catalog with a configured gateway ----------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["nowhere", "stalling"])
def test_a_configured_gateway_never_hides_the_bundled_catalog(kind, request, monkeypatch) -> None:
    gateway = request.getfixturevalue(kind)
    monkeypatch.setenv("IPFS_GATEWAY", gateway.url)
    started = time.monotonic()
    ds = howto.get_intake_catalog(True).BCO.radiosondes.level2.to_dask().load()
    assert ds.sizes["alt"] > 1000
    assert time.monotonic() - started < 15
    assert gateway.paths == []


# --- the command line -------------------------------------------------------------------------


def test_cli_reads_from_the_gateway_keeps_the_blocks_and_then_works_offline(
    remote, howto_repo
) -> None:
    root, url, _ = remote
    env = {"IPFS_GATEWAY": url}
    out = howto_cli("cat", f"{root}/big.bin", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == BIG
    listed = howto_cli("ls", f"{root}", env=env)
    assert b"sub/" in listed.stdout and b"big.bin" in listed.stdout
    offline = howto_cli("--offline", "cat", f"{root}/big.bin", env=env)
    assert offline.returncode == 0 and offline.stdout == BIG  # kept, as kubo keeps them
    assert (howto_repo / "blocks").is_dir()


def test_offline_asks_no_gateway(nowhere, howto_repo) -> None:
    cid = add_bytes(b"only hashed\n", only_hash=True)
    for args in (["--offline", "cat", cid], ["cat", "--offline", cid]):
        out = howto_cli(*args, env={"IPFS_GATEWAY": nowhere.url})
        assert out.returncode == 1
        assert b"not available" in out.stderr and b"Traceback" not in out.stderr
    assert nowhere.paths == []


def test_get_writes_a_file_and_a_directory_tree(remote, tmp_path) -> None:
    root, url, _ = remote
    env = {"IPFS_GATEWAY": url}
    out = howto_cli("get", f"{root}/big.bin", "-o", tmp_path / "big.bin", env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "big.bin").read_bytes() == BIG
    out = howto_cli("get", str(root), "-o", tmp_path / "tree", env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "tree" / "sub" / "note.txt").read_text() == "a note from elsewhere\n"
    assert (tmp_path / "tree" / "big.bin").read_bytes() == BIG
    again = howto_cli("get", str(root), "-o", tmp_path / "tree", env=env)
    assert again.returncode == 1 and b"already exists" in again.stderr


def test_a_lying_gateway_gets_a_one_line_error_and_no_byte_out(liar, remote, tmp_path) -> None:
    root, _, _ = remote
    env = {"IPFS_GATEWAY": liar.url}
    for args in (
        ["cat", f"{root}/sub/note.txt"],
        ["get", f"{root}/sub/note.txt", "-o", tmp_path / "n"],
    ):
        out = howto_cli(*args, env=env)
        err = out.stderr.decode()
        assert out.returncode == 1
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert liar.url in err and "does not match" in err
        assert out.stdout == b""
    assert not (tmp_path / "n").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".n.")] == []


@pytest.mark.timeout(120)
def test_an_unreachable_or_stalling_gateway_fails_in_time_naming_it(stalling) -> None:
    cid = add_bytes(b"unreachable\n", only_hash=True)
    for url, env in (
        ("http://127.0.0.1:9", {"IPFS_GATEWAY": "http://127.0.0.1:9"}),
        (stalling.url, {"IPFS_GATEWAY": stalling.url}),
    ):
        started = time.monotonic()
        out = howto_cli("cat", cid, env=env)
        assert time.monotonic() - started < 45
        err = out.stderr.decode()
        assert out.returncode == 1 and url in err and len(err.splitlines()) == 1


def test_xarray_through_a_lying_gateway_raises_integrity_error(liar, remote, monkeypatch) -> None:
    root, _, _ = remote
    from howto.fs import VerifiedIPFSFileSystem

    fs = VerifiedIPFSFileSystem(gateway_addr=liar.url, timeout=10, skip_instance_cache=True)
    with pytest.raises(IntegrityError, match="does not match"):
        fs.cat(f"{root}/sub/note.txt")
    with pytest.raises(UnavailableError) as nowhere:  # no copy anywhere: not "absent"
        VerifiedIPFSFileSystem(offline=True, skip_instance_cache=True).cat(f"{root}/big.bin")
    assert not isinstance(nowhere.value, FileNotFoundError) and str(root) in str(nowhere.value)
