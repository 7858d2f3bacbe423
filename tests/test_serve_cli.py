"""`howto serve`: a gateway in the foreground for other programs, on loopback only."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from howto.blocks.repo import Repo
from howto.formats.car import write_car
from howto.unixfs.add import add
from howto.unixfs.resolver import Resolver

HOWTO = [sys.executable, "-m", "howto.cli"]


def _car_of(tmp_path: Path, content: bytes) -> tuple[str, Path]:
    source = tmp_path / "note.txt"
    source.write_bytes(content)
    repo = Repo(tmp_path / "scratch")
    root = add(source, repo=repo, cid_version=1, chunker="size-64")
    car = tmp_path / "note.car"
    with open(car, "wb") as f:
        write_car(f, [root], ((b.cid, b.data) for b in Resolver(repo).walk(root)))
    return str(root), car


def test_serve_answers_for_the_blocks_of_a_car(tmp_path):
    content = b"Deebles Point, Barbados: one sounding every few hours.\n" * 5
    root, car = _car_of(tmp_path, content)
    server = subprocess.Popen(
        [*HOWTO, "serve", "--port", "0", "--car", str(car)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        assert "http://127.0.0.1:" in line, line + server.stderr.read()
        url = line.split()[4].removesuffix("/ipfs/")
        with urllib.request.urlopen(f"{url}/ipfs/{root}", timeout=30) as response:
            assert response.read() == content
            assert response.headers["X-Ipfs-Roots"] == root
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_refuses_a_corrupt_car_in_one_line(tmp_path):
    content = b"0123456789" * 30
    _, car = _car_of(tmp_path, content)
    raw = bytearray(car.read_bytes())
    raw[raw.index(b"0123456789")] ^= 0x01  # one flipped bit inside the first leaf
    car.write_bytes(bytes(raw))
    result = subprocess.run(
        [*HOWTO, "serve", "--port", "0", "--car", str(car)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert "does not match" in result.stderr and "Traceback" not in result.stderr


def test_serve_refuses_the_car_headers_that_dag_import_refuses(tmp_path):
    import dag_cbor

    _, car = _car_of(tmp_path, b"a block\n")
    whole = car.read_bytes()
    header_length = whole[0]  # a one-byte varint for a header this short
    sections = whole[1 + header_length :]
    for name, header in (
        ("roots-not-a-list", {"roots": "x", "version": 1}),
        ("version-2", {"roots": [], "version": 2}),
    ):
        encoded = dag_cbor.encode(header)
        bad = tmp_path / f"{name}.car"
        bad.write_bytes(bytes([len(encoded)]) + encoded + sections)
        said = []
        for command in (["dag", "import", str(bad)], ["serve", "--port", "0", "--car", str(bad)]):
            result = subprocess.run([*HOWTO, *command], capture_output=True, text=True, timeout=60)
            assert result.returncode == 1 and result.stdout == "", (name, command)
            assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
            said.append(result.stderr.split(str(bad))[-1])
        assert said[0] == said[1], (name, said)


def test_serve_and_dag_import_take_a_car_that_names_no_root(tmp_path):
    """kubo's ``dag import`` takes a CAR whose header names no root (``ipfs-car pack``
    writes one when it streams to stdout); so do both of howto's readers of CAR files."""
    import dag_cbor
    from multiformats import CID

    from howto.blocks import CarBlocks

    cid, car = _car_of(tmp_path, b"a block\n")
    whole = car.read_bytes()
    encoded = dag_cbor.encode({"roots": [], "version": 1})
    rootless = tmp_path / "rootless.car"
    rootless.write_bytes(bytes([len(encoded)]) + encoded + whole[1 + whole[0] :])
    imported = subprocess.run(
        [*HOWTO, "dag", "import", str(rootless)], capture_output=True, text=True, timeout=60
    )
    assert imported.returncode == 0 and "no root" in imported.stdout, imported.stderr
    assert CarBlocks([rootless]).get(CID.decode(cid)) == b"a block\n"  # serve --car reads it
