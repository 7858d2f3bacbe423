"""Large files through gateways: the fast paths must give exactly what the plain ones do.

The gateway sends the raw leaves of a CAR byte range from their repository files with
sendfile, framing the HTTP chunks itself; the client receives CAR windows straight into
buffers it uses again, hashes in a second thread, and fetches the next window while one
is given out.  Each test compares against the plain path or the original bytes, over
real servers on 127.0.0.1, with windows made small so a few MiB span many of them.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from multiformats import CID

from howto import reader as reader_module
from howto.add import add
from howto.blocks import Chain, MappingBlocks
from howto.cids import cid_text
from howto.errors import GatewayError, IntegrityError
from howto.gateway import serve
from howto.reader import DagReader
from howto.repo import Repo
from howto.resolver import Resolver
from howto.trustless import GatewayBlocks

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


def fetch(url: str, target: str, http10: bool = False) -> tuple[int, dict, bytes]:
    """One GET with http.client (chunked bodies decoded by it), or as HTTP/1.0."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    if http10:
        connection._http_vsn, connection._http_vsn_str = 10, "HTTP/1.0"
    connection.request("GET", target, headers={"Accept": "application/vnd.ipld.car"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


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
    assert (200, sent) == fetch(files, target, http10=True)[::2]


def test_a_reader_that_hangs_up_leaves_the_gateway_serving(gateways) -> None:
    root, files, _, repo = gateways
    host, port = files.removeprefix("http://").split(":")
    for _ in range(20):  # each time the gateway is in the middle of sending leaves
        with socket.create_connection((host, int(port)), timeout=10) as raw:
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


def test_a_lie_in_a_window_writes_nothing_of_that_window(stored, tmp_path, small_windows) -> None:
    root, repo = stored

    class Liar(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            upstream = http.client.HTTPConnection(*honest, timeout=30)
            upstream.request("GET", self.path, headers={"Accept": self.headers["Accept"]})
            reply = upstream.getresponse()
            body = bytearray(reply.read())
            upstream.close()
            if "entity-bytes=" in self.path and "entity-bytes=0:" not in self.path:
                body[-3] ^= 0x10  # the second window on: one byte of its last leaf
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.getheader("Content-Type", ""))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    with serve(repo) as url:
        honest = url.removeprefix("http://").split(":")
        honest[1] = int(honest[1])
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Liar)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            sink = Sink()
            lying = f"http://127.0.0.1:{httpd.server_address[1]}"
            with pytest.raises(IntegrityError, match="does not match"):
                remote_reader(lying, tmp_path).read_to(sink, root)
        finally:
            httpd.shutdown()
            httpd.server_close()
    assert b"".join(sink.parts) == DATA[:WINDOW]  # the first window only: it was true


# --- the client's connections --------------------------------------------------------------


class Counting(BaseHTTPRequestHandler):
    """Answers every GET with a small body; counts connections; may close after a reply
    without saying so (as a gateway dropping idle keep-alive connections does)."""

    protocol_version = "HTTP/1.1"
    body = b"x"
    connections = 0
    close_silently = False

    def setup(self) -> None:
        super().setup()
        type(self).connections += 1

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)
        if self.close_silently:
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def counting_server(**attrs):
    handler = type("Handler", (Counting,), {"connections": 0, **attrs})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, handler, f"http://127.0.0.1:{httpd.server_address[1]}"


def test_one_kept_alive_connection_serves_many_requests() -> None:
    httpd, handler, url = counting_server()
    cid = CID("base32", 1, "raw", ("sha2-256", __import__("hashlib").sha256(b"x").digest()))
    try:
        gateway = GatewayBlocks(url, timeout=10)
        assert [gateway.get(cid) for _ in range(10)] == [b"x"] * 10
        assert handler.connections == 1
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_connection_the_gateway_closed_is_replaced_once() -> None:
    httpd, handler, url = counting_server(close_silently=True)
    cid = CID("base32", 1, "raw", ("sha2-256", __import__("hashlib").sha256(b"x").digest()))
    try:
        gateway = GatewayBlocks(url, timeout=10)
        assert [gateway.get(cid) for _ in range(5)] == [b"x"] * 5
        assert handler.connections == 5
    finally:
        httpd.shutdown()
        httpd.server_close()


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
    httpd, _, url = counting_server()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    cid = CID("base32", 1, "raw", ("sha2-256", __import__("hashlib").sha256(b"x").digest()))
    try:
        gateway = GatewayBlocks(url.replace("http://", "https://"), timeout=10)
        with pytest.raises(GatewayError, match="cannot reach gateway https://127.0.0.1") as info:
            gateway.get(cid)
        assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
        assert "\n" not in str(info.value)
    finally:
        httpd.shutdown()
        httpd.server_close()


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
        upstream = http.client.HTTPConnection(*self.honest, timeout=30)
        upstream.request("GET", self.path, headers={"Accept": self.headers["Accept"]})
        reply = upstream.getresponse()
        body = reply.read()
        upstream.close()
        self.send_response(reply.status)
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
        host, port = url.removeprefix("http://").split(":")
        handler = type("Handler", (Rechunking,), {"honest": (host, int(port))})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            honest = GatewayBlocks(url, timeout=30).car(root, "", "entity", "0:*")
            odd = GatewayBlocks(f"http://127.0.0.1:{httpd.server_address[1]}", timeout=30)
            for buffer in (None, bytearray(100), bytearray(len(DATA) * 2)):
                reply = odd.car(root, "", "entity", "0:*", buffer=buffer)
                assert reply.cids == honest.cids
                got = {key: bytes(data) for key, data in reply.blocks.items()}
                assert got == {key: bytes(data) for key, data in honest.blocks.items()}
        finally:
            httpd.shutdown()
            httpd.server_close()
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
