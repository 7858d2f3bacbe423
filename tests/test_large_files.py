"""Large files through gateways: the fast paths must give exactly what the plain ones do.

The gateway sends the raw leaves of a CAR byte range from their repository files with
sendfile, framing the HTTP chunks itself; the client receives CAR windows straight into
buffers it uses again, hashes in a second thread, and fetches the next window while one
is given out.  Each test compares against the plain path or the original bytes, over
real servers on 127.0.0.1, with windows made small so a few MiB span many of them.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from multiformats import CID

from howto.blocks.chain import Chain, MappingBlocks
from howto.blocks.repo import Repo
from howto.errors import GatewayError, IntegrityError
from howto.formats.cids import cid_text
from howto.gateway import serve
from howto.retrieval import reader as reader_module
from howto.retrieval.reader import DagReader
from howto.retrieval.trustless import GatewayBlocks
from howto.unixfs.add import add
from howto.unixfs.resolver import Resolver

# 40 leaves of 64 KiB and a short one, under one node (``deep``: 8 KiB leaves, two levels).
LEAF = 1 << 16
DATA = os.urandom(40 * LEAF + 12345)
WINDOW = 5 * LEAF + 1000  # windows that end inside leaves


def added(base: Path, leaf: int) -> tuple[CID, Repo]:
    """``DATA`` added to a repository of its own in leaves of ``leaf`` bytes."""
    (base / "data.bin").write_bytes(DATA)
    repo = Repo(base / "repo")
    return add(base / "data.bin", repo=repo, cid_version=1, chunker=f"size-{leaf}"), repo


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[CID, Repo]:
    return added(tmp_path_factory.mktemp("large"), LEAF)


@pytest.fixture(scope="module")
def deep(tmp_path_factory) -> tuple[CID, Repo]:
    """The same bytes in 326 leaves of 8 KiB: more than one node holds, so two levels."""
    return added(tmp_path_factory.mktemp("deep"), LEAF // 8)


@pytest.fixture(scope="module")
def gateways(stored):
    """The repository served twice: from its directory (sendfile for leaves) and from a
    plain mapping of the same blocks (every block read into memory)."""
    root, repo = stored
    blocks = {cid_text(b.cid): b.data for b in Resolver(repo).walk(root)}
    with serve(repo) as files, serve(MappingBlocks(blocks, "a mapping")) as plain:
        yield root, files, plain, repo


X = b"x"
X_CID = CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(X).digest()))


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def fetch(url: str, target: str) -> tuple[int, dict, bytes]:
    """One GET of a CAR with http.client (which decodes chunked bodies)."""
    connection = http.client.HTTPConnection(*address(url), timeout=30)
    connection.request("GET", target, headers={"Accept": "application/vnd.ipld.car"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def fetch_http10(url: str, target: str) -> tuple[int, bytes]:
    """One GET of a CAR as an HTTP/1.0 client: no chunks, the body ends with the connection."""
    host, port = address(url)
    with socket.create_connection((host, port), timeout=30) as raw:
        raw.sendall(
            f"GET {target} HTTP/1.0\r\nHost: {host}\r\n"
            "Accept: application/vnd.ipld.car\r\n\r\n".encode()
        )
        reply = b"".join(iter(lambda: raw.recv(1 << 20), b""))
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@contextmanager
def running(handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None):
    """A small HTTP server on loopback for the ``with`` block; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def relay(honest: tuple[str, int], path: str, accept: str) -> tuple[int, str, bytes]:
    """What the honest gateway answers to ``path``: status, content type and body."""
    upstream = http.client.HTTPConnection(*honest, timeout=30)
    upstream.request("GET", path, headers={"Accept": accept})
    reply = upstream.getresponse()
    body = reply.read()
    upstream.close()
    return reply.status, reply.getheader("Content-Type", ""), body


@pytest.mark.parametrize(
    "query",
    [
        "entity-bytes=0:*",
        f"entity-bytes={LEAF - 1}:{3 * LEAF}",
        f"entity-bytes={10 * LEAF + 7}:{10 * LEAF + 8}",
        "entity-bytes=-100000:*",
        "entity-bytes=0:*&dups=y",
    ],
)
def test_sendfile_ranges_are_the_plain_replies_byte_for_byte(gateways, query) -> None:
    root, files, plain, _ = gateways
    target = f"/ipfs/{root}?format=car&dag-scope=entity&{query}"
    status, headers, sent = fetch(files, target)
    assert status == 200 and headers.get("Transfer-Encoding") == "chunked"
    assert (200, sent) == fetch(plain, target)[::2]
    # and an HTTP/1.0 reader (no chunks) gets the same bytes from the plain code path
    assert (200, sent) == fetch_http10(files, target)


def test_a_reader_that_hangs_up_leaves_the_gateway_serving(gateways) -> None:
    root, files, _, repo = gateways
    host, port = address(files)
    for _ in range(20):  # each time the gateway is in the middle of sending leaves
        with socket.create_connection((host, port), timeout=10) as raw:
            raw.sendall(
                f"GET /ipfs/{root}?format=car&dag-scope=entity&entity-bytes=0:* HTTP/1.1\r\n"
                f"Host: {host}\r\nAccept: application/vnd.ipld.car\r\n\r\n".encode()
            )
            raw.recv(1000)
    target = f"/ipfs/{root}?format=car&dag-scope=entity&entity-bytes=0:*"
    assert fetch(files, target)[::2] == fetch(gateways[2], target)[::2]


@pytest.fixture
def small_windows(monkeypatch) -> None:
    monkeypatch.setattr(reader_module, "WINDOW_BYTES", WINDOW)


def remote_reader(url: str, tmp_path: Path) -> DagReader:
    """Nothing local: every window comes from the gateway."""
    return DagReader(Chain([Repo(tmp_path / "empty")], [GatewayBlocks(url, timeout=30)]))


class Sink:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)


@pytest.mark.parametrize("which", ["stored", "deep"])
@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, None),
        (1, None),
        (WINDOW, 2 * WINDOW),
        (WINDOW - 1, 3 * WINDOW + 1),
        (len(DATA) - 5, None),
    ],
)
def test_windows_from_a_gateway_give_the_file(which, start, end, request, tmp_path, small_windows):
    root, repo = request.getfixturevalue(which)
    expected = DATA[start:end]
    with serve(repo) as url:
        reader = remote_reader(url, tmp_path)
        assert b"".join(reader.read(root, "", start, end)) == expected
        sink = Sink()
        assert reader.read_to(sink, root, "", start, end) == len(expected)
        assert b"".join(sink.parts) == expected
        assert all(len(p) <= WINDOW for p in sink.parts)


def test_a_reader_stopping_early_loses_nothing(stored, tmp_path, small_windows) -> None:
    root, repo = stored
    with serve(repo) as url:
        reader = remote_reader(url, tmp_path)
        for _ in range(5):  # the window fetched ahead is dropped; its buffer comes back
            pieces = reader.read(root)
            first = next(pieces)
            assert first and DATA.startswith(first)
            pieces.close()
        assert b"".join(reader.read(root)) == DATA


def test_window_buffers_are_used_again_not_shared(stored, tmp_path, small_windows) -> None:
    """Bytes given out by ``read`` are the reader's own: a later window received into the
    same buffer does not change them."""
    root, repo = stored
    with serve(repo) as url:
        reader = remote_reader(url, tmp_path)
        kept = list(reader.read(root))  # every window, held at once
        again = list(reader.read(root))
    assert b"".join(kept) == DATA == b"".join(again)


def test_window_buffers_are_let_go_when_idle(stored, tmp_path, small_windows, monkeypatch):
    """The two buffers kept for the next read go once no read has used them for
    ``BUFFERS_IDLE_SECONDS``; a later read takes new ones."""
    monkeypatch.setattr(reader_module, "BUFFERS_IDLE_SECONDS", 0.3)
    root, repo = stored
    with serve(repo) as url:
        reader = remote_reader(url, tmp_path)
        assert reader.buffered_bytes == 0
        assert b"".join(reader.read(root)) == DATA
        assert reader.buffered_bytes >= 2 * WINDOW
        deadline = time.monotonic() + 20
        while reader.buffered_bytes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.buffered_bytes == 0
        assert b"".join(reader.read(root)) == DATA
        assert reader.buffered_bytes >= 2 * WINDOW


def test_a_lie_in_a_window_writes_nothing_of_that_window(stored, tmp_path, small_windows) -> None:
    root, repo = stored

    class Liar(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            status, kind, body = relay(honest, self.path, self.headers["Accept"])
            body = bytearray(body)
            if "entity-bytes=" in self.path and "entity-bytes=0:" not in self.path:
                body[-3] ^= 0x10  # the second window on: one byte of its last leaf
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    sink = Sink()
    with serve(repo) as url, running(Liar) as lying:
        honest = address(url)
        with pytest.raises(IntegrityError, match="does not match"):
            remote_reader(lying, tmp_path).read_to(sink, root)
    assert b"".join(sink.parts) == DATA[:WINDOW]  # the first window only: it was true


# --- the client's connections --------------------------------------------------------------


class Counting(BaseHTTPRequestHandler):
    """Answers every GET with a small body; counts connections; may close after a reply
    without saying so (as a gateway dropping idle keep-alive connections does)."""

    protocol_version = "HTTP/1.1"
    connections = 0
    close_silently = False

    def setup(self) -> None:
        super().setup()
        type(self).connections += 1

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(X)))
        self.end_headers()
        self.wfile.write(X)
        if self.close_silently:
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def counting(**attrs) -> type[Counting]:
    return type("Handler", (Counting,), {"connections": 0, **attrs})


@pytest.mark.parametrize(
    ("close_silently", "requests", "connections"),
    [(False, 10, 1), (True, 5, 5)],
    ids=["kept alive", "closed by the gateway and replaced"],
)
def test_connections_are_kept_and_replaced_when_the_gateway_closed_them(
    close_silently, requests, connections
) -> None:
    handler = counting(close_silently=close_silently)
    with running(handler) as url:
        gateway = GatewayBlocks(url, timeout=10)
        assert [gateway.get(X_CID) for _ in range(requests)] == [X] * requests
    assert handler.connections == connections


def test_an_https_gateway_with_an_untrusted_certificate_is_refused(tmp_path) -> None:
    """TLS is verified: a self-signed certificate gets one error naming the gateway."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    with running(counting(), tls=context) as url:
        gateway = GatewayBlocks(url.replace("http://", "https://"), timeout=10)
        with pytest.raises(GatewayError, match="cannot reach gateway https://127.0.0.1") as info:
            gateway.get(X_CID)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert "\n" not in str(info.value)


def test_open_block_gives_the_stored_file_or_none(stored, tmp_path) -> None:
    root, repo = stored
    leaf = Resolver(repo).block(root).node.links[0].hash
    with repo.open_block(leaf) as file:
        assert file.read() == repo.get(leaf)
    assert Repo(tmp_path / "empty").open_block(leaf) is None
    identity = CID("base32", 1, "raw", ("identity", b"inline"))
    assert repo.open_block(identity) is None


class Rechunking(BaseHTTPRequestHandler):
    """Relays the honest gateway's reply in HTTP chunks of awkward sizes."""

    protocol_version = "HTTP/1.1"
    honest: tuple[str, int]
    sizes = (1, 3, 37, 4093, 65537, 300001)

    def do_GET(self) -> None:  # noqa: N802
        status, _, body = relay(self.honest, self.path, self.headers["Accept"])
        self.send_response(status)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pos = turn = 0
        while pos < len(body):
            piece = body[pos : pos + self.sizes[turn % len(self.sizes)]]
            self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            pos, turn = pos + len(piece), turn + 1
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args) -> None:
        pass


def test_chunks_of_any_size_and_a_buffer_too_small_give_the_same_blocks(stored) -> None:
    root, repo = stored
    with serve(repo) as url:
        handler = type("Handler", (Rechunking,), {"honest": address(url)})
        with running(handler) as rechunked:
            honest = GatewayBlocks(url, timeout=30).car(root, "", "entity", "0:*")
            odd = GatewayBlocks(rechunked, timeout=30)
            for buffer in (None, bytearray(100), bytearray(len(DATA) * 2)):
                reply = odd.car(root, "", "entity", "0:*", buffer=buffer)
                assert reply.cids == honest.cids
                got = {key: bytes(data) for key, data in reply.blocks.items()}
                assert got == {key: bytes(data) for key, data in honest.blocks.items()}
    assert b"".join(Resolver(repo).read(root)) == DATA


def test_what_readers_get_is_bytes_whatever_path_it_took(stored, tmp_path, small_windows):
    """Views of reused buffers never leave: the file system, ``read`` and a CAR reply
    without a buffer give ``bytes``."""
    from howto.fs import VerifiedIPFSFileSystem

    root, repo = stored
    (tmp_path / "small.txt").write_bytes(b"one raw block\n")
    small = add(tmp_path / "small.txt", repo=repo, cid_version=1)
    with serve(repo) as url:
        reply = GatewayBlocks(url, timeout=30).car(root, "", "entity", "0:*")
        assert all(type(data) is bytes for data in reply.blocks.values())
        fs = VerifiedIPFSFileSystem(gateway_addr=url, repo=str(tmp_path / "empty"))
        for path, expected in [(str(small), b"one raw block\n"), (str(root), DATA)]:
            got = fs.cat_file(f"ipfs://{path}")
            assert type(got) is bytes and got == expected
        pieces = list(remote_reader(url, tmp_path).read(root))
        assert all(type(p) is bytes for p in pieces) and b"".join(pieces) == DATA
