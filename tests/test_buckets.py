"""Cloud buckets against a real S3 server on 127.0.0.1 (moto's, started by howto.s3server).

``howto add s3://…`` gives the CIDs of the same files on disk; a repository in a bucket
is a verified block store that the command line, the gateway and dask workers use; bad
buckets, credentials and endpoints fail in one line, in time, with nothing half-written.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from howto.blocks.bucket import BucketRepo, StorageError, open_repo
from howto.blocks.bundled import bundled_car_files
from howto.blocks.chain import CarBlocks, Chain
from howto.blocks.repo import MAX_STORED_BYTES, Repo, block_key
from howto.errors import IntegrityError, NotFoundError
from howto.formats.car import write_car
from howto.formats.cids import cid_bytes, multihash_of, raw_cid, to_cid
from howto.fs import enable, filesystem
from howto.retrieval.reader import DagReader
from howto.s3server import local_s3
from howto.unixfs.add import add
from howto.unixfs.importer import Importer, Options
from howto.unixfs.remote import BATCH_FILES, SMALL_FILE

HOWTO = [sys.executable, "-m", "howto.cli"]


@pytest.fixture(scope="session")
def s3():
    """One local S3 server for the session (each test uses buckets of its own)."""
    with local_s3() as server:
        yield server


@pytest.fixture
def s3env(s3, monkeypatch):
    """The standard variables pointing at the local server, for this process and children."""
    for name, value in s3.environ.items():
        monkeypatch.setenv(name, value)
    return s3


@pytest.fixture
def bucket(s3env) -> str:
    """A new, empty bucket."""
    name = f"b{uuid.uuid4().hex[:12]}"
    s3env.make_bucket(name)
    return name


def run(*args: str | Path, env: dict | None = None, timeout: float = 120):
    return subprocess.run([*HOWTO, *map(str, args)], capture_output=True, env=env, timeout=timeout)


def ok(*args: str | Path, **kwargs) -> str:
    result = run(*args, **kwargs)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def one_line_failure(*args: str | Path, **kwargs) -> str:
    result = run(*args, **kwargs)
    err = result.stderr.decode()
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def make_tree(root: Path) -> Path:
    """Small and large files, a hidden file and folder, nesting, and enough small files
    to fill more than one fetch batch."""
    tree = root / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / ".hidden").mkdir()
    (tree / "a.txt").write_text("hello bucket\n")
    (tree / ".dotfile").write_text("secret-ish\n")
    (tree / ".hidden" / "inside").write_text("x\n")
    (tree / "sub" / "big.bin").write_bytes(np.random.default_rng(1).bytes(SMALL_FILE + 12345))
    (tree / "sub" / "empty").write_bytes(b"")
    for i in range(BATCH_FILES + 7):
        (tree / "sub" / "deeper" / f"{i:04d}").write_bytes(bytes([i % 256]) * (i * 97 % 5000))
    return tree


def upload(s3, local: Path, url: str) -> None:
    fs = s3.filesystem()
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.pipe_file(
                f"{url.removeprefix('s3://')}/{path.relative_to(local)}", path.read_bytes()
            )


# --- the server ---------------------------------------------------------------------------


def test_local_server_listens_on_loopback_and_restores_the_environment(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with local_s3(buckets=["first"], environ=True) as server:
        assert server.endpoint_url.startswith("http://127.0.0.1:")
        assert os.environ["AWS_ENDPOINT_URL"] == server.endpoint_url
        assert "…" in repr(server) and server.endpoint_url not in repr(server)
        fs = server.filesystem()
        fs.pipe_file("first/x", b"1")
        assert fs.cat_file("first/x") == b"1"
        process = server.process
    assert "AWS_ENDPOINT_URL" not in os.environ
    assert process.poll() is not None


# --- howto add s3://… ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"hidden": True},
        {"cid_version": 1},
        {"raw_leaves": True, "chunker": "size-65536"},
        {"wrap_with_directory": True},
    ],
)
def test_add_from_a_bucket_gives_the_cids_of_the_local_copy(tmp_path, s3env, bucket, flags):
    tree = make_tree(tmp_path)
    upload(s3env, tree, f"s3://{bucket}/tree")
    local = add(tree, only_hash=True, **flags)
    remote = add(f"s3://{bucket}/tree", only_hash=True, **flags)
    assert remote == local
    big = tree / "sub" / "big.bin"
    assert add(f"s3://{bucket}/tree/sub/big.bin", only_hash=True, **flags) == add(
        big, only_hash=True, **flags
    )
    assert add(f"file://{tree}", only_hash=True, **flags) == local


def test_cli_add_prints_the_same_lines_for_a_bucket_and_a_folder(tmp_path, s3env, bucket):
    tree = make_tree(tmp_path)
    upload(s3env, tree, f"s3://{bucket}/tree")
    for flags in (["-r"], ["-r", "-H"], ["-r", "-w", "--cid-version", "1"]):
        local = ok("add", *flags, tree)
        remote = ok("add", *flags, f"s3://{bucket}/tree")
        assert remote == local
    assert "-r" in one_line_failure("add", f"s3://{bucket}/tree")  # a directory needs -r


def test_add_from_a_bucket_stores_blocks_that_read_back(tmp_path, s3env, bucket):
    tree = make_tree(tmp_path)
    upload(s3env, tree, f"s3://{bucket}/tree")
    cid = ok("add", "-Q", "-r", f"s3://{bucket}/tree").strip()
    out = tmp_path / "out"
    ok("--offline", "get", "-q", f"{cid}", "-o", out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == sorted(
        p.relative_to(tree)
        for p in tree.rglob("*")
        if not any(part.startswith(".") for part in p.relative_to(tree).parts)
    )
    assert (out / "sub" / "big.bin").read_bytes() == (tree / "sub" / "big.bin").read_bytes()


# --- a repository in a bucket --------------------------------------------------------------


def test_bucket_repository_keys_are_the_local_repository_layout(tmp_path, s3env, bucket):
    tree = make_tree(tmp_path)
    local_repo = Repo(tmp_path / "repo")
    cid = add(tree, repo=local_repo)
    upload(s3env, tmp_path / "repo", f"s3://{bucket}/copied")  # a folder copied up
    copied = BucketRepo(f"s3://{bucket}/copied")
    for multihash in local_repo.keys():
        assert copied.get_unverified(multihash_cid(multihash)) == local_repo.get(
            multihash_cid(multihash)
        )
    assert sorted(copied.keys()) == sorted(local_repo.keys())
    assert copied.has(cid) and list(copied.verify()) == []


def multihash_cid(multihash: bytes):
    from multiformats import CID

    return CID("base32", 1, "raw", multihash)


def test_cli_works_on_a_repository_in_a_bucket(tmp_path, s3env, bucket, monkeypatch):
    monkeypatch.setenv("HOWTO_REPO", f"s3://{bucket}/repo")
    tree = make_tree(tmp_path)
    cid = ok("add", "-Q", "-r", tree).strip()
    assert isinstance(open_repo(), BucketRepo)
    assert s3env.filesystem().find(f"{bucket}/repo/blocks")  # the blocks are objects
    assert "a.txt" in ok("--offline", "ls", cid)
    assert ok("--offline", "cat", f"{cid}/a.txt") == "hello bucket\n"
    ok("--offline", "get", "-q", f"{cid}/sub", "-o", tmp_path / "sub")
    assert (tmp_path / "sub" / "big.bin").read_bytes() == (tree / "sub" / "big.bin").read_bytes()
    car = tmp_path / "tree.car"
    with open(car, "wb") as f:
        subprocess.run([*HOWTO, "--offline", "dag", "export", cid], stdout=f, check=True)
    monkeypatch.setenv("HOWTO_REPO", f"s3://{bucket}/second")
    assert f"imported root {cid}" in ok("dag", "import", car)
    assert ok("--offline", "cat", f"{cid}/a.txt") == "hello bucket\n"
    assert "verified all blocks" in ok("repo", "verify")


def test_serve_answers_from_a_repository_in_a_bucket(tmp_path, s3env, bucket, monkeypatch):
    monkeypatch.setenv("HOWTO_REPO", f"s3://{bucket}/repo")
    (tmp_path / "f.txt").write_text("served from a bucket\n")
    cid = ok("add", "-Q", tmp_path / "f.txt").strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [*HOWTO, "serve", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert b"serving" in server.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ipfs/{cid}", timeout=30) as reply:
            assert reply.read() == b"served from a bucket\n"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_an_overwritten_object_is_refused_never_returned(tmp_path, s3env, bucket, monkeypatch):
    monkeypatch.setenv("HOWTO_REPO", f"s3://{bucket}/repo")
    (tmp_path / "t.txt").write_text("temperature in kelvin\n")
    cid = ok("add", "-Q", "--cid-version", "1", tmp_path / "t.txt").strip()
    repo = open_repo()
    path = repo.object_path(block_key(multihash_of(raw_cid(cid))))
    s3env.filesystem().pipe_file(path, b"temperature in celsius\n")
    with pytest.raises(IntegrityError):
        repo.get(cid)
    err = one_line_failure("--offline", "cat", cid)
    assert "does not match" in err and "celsius" not in err and bucket in err
    result = run("--offline", "cat", cid)
    assert b"celsius" not in result.stdout
    assert "damaged block" in run("repo", "verify").stderr.decode()


def test_a_huge_object_under_a_block_key_is_refused_unread(tmp_path, s3env, bucket):
    """200 MB where a block belongs is damage: refused after reading the most a block can
    be (``MAX_STORED_BYTES``), never read whole, in a bucket and in a folder alike."""
    data = b"one small block\n"
    cid = cid_bytes(data, 0x55, 1)
    repo = BucketRepo(f"s3://{bucket}/repo")
    repo.put(cid, data)
    path = repo.object_path(block_key(multihash_of(cid)))
    s3env.filesystem().pipe_file(path, bytes(200_000_000))
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match="more than any block"):
            repo.get(cid)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_STORED_BYTES * 3 < 200_000_000  # what was read, not the object
    folder = Repo(tmp_path / "repo")
    folder.put(cid, data)
    with open(folder.block_path(block_key(multihash_of(cid))), "r+b") as f:
        f.truncate(1 << 40)  # a sparse terabyte: reading it whole would never end
    with pytest.raises(IntegrityError, match="more than any block"):
        folder.get(cid)


def test_a_failed_transaction_leaves_no_object(s3env, bucket, monkeypatch):
    monkeypatch.setattr("howto.blocks.bucket.FLUSH_BYTES", 300_000)  # stage in the bucket early
    repo = BucketRepo(f"s3://{bucket}/repo")
    fs = s3env.filesystem()
    with pytest.raises(RuntimeError), repo.transaction() as txn:
        importer = Importer(Options.create(cid_version=1), txn.put)
        importer.add_bytes(np.random.default_rng(3).bytes(2_000_000))
        assert txn.staged  # uploaded under the staging prefix, not under block keys
        assert fs.find(f"{bucket}/repo/staging") and not fs.find(f"{bucket}/repo/blocks")
        raise RuntimeError("interrupted")
    assert not fs.find(f"{bucket}/repo")


def test_a_large_transaction_lands_every_block_and_clears_its_staging(s3env, bucket, monkeypatch):
    monkeypatch.setattr("howto.blocks.bucket.FLUSH_BYTES", 300_000)
    repo = BucketRepo(f"s3://{bucket}/repo")
    data = np.random.default_rng(4).bytes(2_000_000)
    with repo.transaction() as txn:
        root = Importer(Options.create(cid_version=1), txn.put).add_bytes(data)
        assert txn.staged and txn.pending  # some staged in the bucket, some still held
    fs = s3env.filesystem()
    assert not fs.find(f"{bucket}/repo/staging")
    assert len(fs.find(f"{bucket}/repo/blocks")) == 9  # 8 leaves and their parent
    assert list(repo.verify()) == []
    assert b"".join(DagReader(Chain([repo])).read(to_cid(root.cid), "")) == data


def test_gc_removes_only_stale_staging(s3env, bucket):
    repo = BucketRepo(f"s3://{bucket}/repo")
    fs = s3env.filesystem()
    old = f"{bucket}/repo/staging/{int(time.time()) - 2 * 86400}-dead"
    young = f"{bucket}/repo/staging/{int(time.time())}-running"
    fs.pipe({f"{old}/x": b"1", f"{young}/x": b"2"})
    assert [p.rsplit("/", 1)[-1] for p in repo.collect_garbage()] == [old.rsplit("/", 1)[-1]]
    assert fs.find(f"{bucket}/repo/staging", detail=False) == [f"{young}/x"]


def test_bucket_repository_and_filesystem_pickle(s3env, bucket):
    repo = BucketRepo(f"s3://{bucket}/repo")
    repo.put(_raw_cid(b"abc"), b"abc")
    again = pickle.loads(pickle.dumps(repo))
    assert again.get(_raw_cid(b"abc")) == b"abc"
    cars = CarBlocks(bundled_car_files())
    cars.load()
    assert pickle.loads(pickle.dumps(cars)).load().keys() == cars.load().keys()
    fs = filesystem(offline=True, repo=f"s3://{bucket}/repo", repo_options=repo.storage_options)
    assert pickle.loads(pickle.dumps(fs)).repo == f"s3://{bucket}/repo"


def _raw_cid(data: bytes):
    from multiformats import CID, multihash

    return CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))


# --- bad input ------------------------------------------------------------------------------


def test_missing_bucket_is_one_line_naming_it(tmp_path, s3env, monkeypatch):
    err = one_line_failure("add", "-r", "s3://no-such-bucket/data")
    assert "no-such-bucket" in err
    monkeypatch.setenv("HOWTO_REPO", "s3://no-such-bucket/repo")
    (tmp_path / "f").write_text("x")
    err = one_line_failure("add", tmp_path / "f")
    assert "no-such-bucket" in err
    with pytest.raises(StorageError):
        open_repo().get(_raw_cid(b"x"))


def test_a_missing_bucket_is_an_error_wherever_it_is_asked(tmp_path, s3env, bucket, monkeypatch):
    """An object store says "no such key" alike for an absent block and an absent bucket;
    the repository tells them apart, so a misspelt bucket never passes for an empty one."""
    cid = _raw_cid(b"x")
    present = BucketRepo(f"s3://{bucket}/repo")  # a bucket that exists, still empty
    assert not present.has(cid) and list(present.keys()) == [] and list(present.verify()) == []
    assert present.collect_garbage() == []
    with pytest.raises(NotFoundError):
        present.get(cid)
    missing = f"b{uuid.uuid4().hex[:12]}"
    asks = {
        "has": lambda repo: repo.has(cid),
        "in": lambda repo: cid in repo,
        "get": lambda repo: repo.get(cid),
        "keys": lambda repo: list(repo.keys()),
        "verify": lambda repo: list(repo.verify()),
        "collect_garbage": lambda repo: repo.collect_garbage(),
        "put": lambda repo: repo.put(cid, b"x"),
        "chain": lambda repo: Chain([repo]).has(cid),
    }
    for name, ask in asks.items():
        with pytest.raises(StorageError) as info:
            ask(BucketRepo(f"s3://{missing}/repo"))
        assert (
            str(info.value) == f"s3://{missing}/repo: no bucket {missing!r} at {s3env.endpoint_url}"
        ), name
    monkeypatch.setenv("HOWTO_REPO", f"s3://{missing}/repo")
    car = tmp_path / "x.car"
    with open(car, "wb") as f:
        write_car(f, [cid], [(cid, b"x")])
    for args in (
        ["repo", "verify"],
        ["repo", "gc"],
        ["cat", "--offline", str(cid)],
        ["dag", "import", car],
    ):
        err = one_line_failure(*args)
        assert f"no bucket {missing!r}" in err, (args, err)
    s3env.make_bucket(missing)  # nothing was written on the way
    assert list(BucketRepo(f"s3://{missing}/repo").keys()) == []


def test_unreachable_endpoint_fails_in_time_naming_it(tmp_path, s3env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    (tmp_path / "f").write_text("x")
    start = time.monotonic()
    err = one_line_failure("add", "s3://somebucket/data", timeout=60)
    assert "127.0.0.1:9" in err
    monkeypatch.setenv("HOWTO_REPO", "s3://somebucket/repo")
    err = one_line_failure("add", tmp_path / "f", timeout=60)
    assert "127.0.0.1:9" in err
    assert time.monotonic() - start < 90  # each within 45 s


def test_wrong_credentials_are_refused_with_nothing_written(tmp_path):
    with local_s3(buckets=["locked"]) as server:
        key, secret = server.require_credentials()
        env = {**os.environ, **server.environ, "HOWTO_REPO": "s3://locked/repo"}
        (tmp_path / "f").write_text("x")
        good = {**env, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
        bad = {**env, "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1", "AWS_SECRET_ACCESS_KEY": "no"}
        err = one_line_failure("add", tmp_path / "f", env=bad)
        assert "locked" in err and "refused" in err
        fs = server.filesystem()
        assert not fs.find("locked")  # nothing half-written
        ok("add", tmp_path / "f", env=good)
        assert fs.find("locked/repo/blocks")


# --- beyond one machine ----------------------------------------------------------------------


def test_dask_workers_read_and_verify_a_bucket_backed_zarr(tmp_path, s3env, bucket):
    distributed = pytest.importorskip("distributed")
    enable()
    ds = xr.Dataset({"t": (("z",), np.arange(4000, dtype="f8"))})
    ds.to_zarr(
        tmp_path / "d.zarr", zarr_format=2, consolidated=True, encoding={"t": {"chunks": 500}}
    )
    url = f"s3://{bucket}/repo"
    repo = BucketRepo(url)
    cid = add(tmp_path / "d.zarr", repo=repo, cid_version=1, hidden=True)
    options = {"offline": True, "repo": url, "repo_options": repo.storage_options}
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        opened = xr.open_dataset(f"ipfs://{cid}", engine="zarr", chunks={}, storage_options=options)
        assert float(opened.t.sum().compute()) == float(ds.t.sum())
        workers = client.run(lambda: os.getpid())
        assert len(set(workers.values())) == 2
        # overwrite one chunk's object in the bucket: the worker reading it refuses it
        from howto.fs import filesystem as ipfs

        chunk_cid = ipfs(**options).info(f"{cid}/t/3")["CID"]
        path = repo.object_path(block_key(multihash_of(raw_cid(chunk_cid))))
        s3env.filesystem().pipe_file(path, b"\0" * 4000)
        fresh = xr.open_dataset(f"ipfs://{cid}", engine="zarr", chunks={}, storage_options=options)
        with pytest.raises(IntegrityError):
            fresh.t.sum().compute()
    shutil.rmtree(tmp_path / "d.zarr")


def test_a_bucket_repository_is_never_asked_on_the_event_loop(tmp_path, s3env, bucket, monkeypatch):
    """Every question to a bucket waits on a network, so ``ipfs://`` reads ask it from
    worker threads, never from the event loop that drives all reads (first or repeated)."""
    (tmp_path / "tree").mkdir()
    files = {f"f{i}": os.urandom(1000 + i) for i in range(6)}
    for name, data in files.items():
        (tmp_path / "tree" / name).write_bytes(data)
    url = f"s3://{bucket}/repo"
    root = add(tmp_path / "tree", repo=BucketRepo(url), cid_version=1, raw_leaves=True)
    asked_from: set[str] = set()
    for method in ("has", "get", "get_unverified"):
        real = getattr(BucketRepo, method)

        def spy(self, *args, _real=real, **kwargs):
            asked_from.add(threading.current_thread().name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(BucketRepo, method, spy)
    fs = filesystem(offline=True, repo=url, skip_instance_cache=True)
    for _ in range(2):  # first reads, then paths the file system remembers
        assert {name: fs.cat_file(f"{root}/{name}") for name in files} == files
    assert asked_from and "fsspecIO" not in asked_from


def test_add_over_http_gives_the_cid_of_the_local_file(tmp_path):
    import functools
    import http.server
    import threading

    data = tmp_path / "served"
    data.mkdir()
    (data / "file.bin").write_bytes(np.random.default_rng(2).bytes(3_000_000))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(data))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/file.bin"
        for flags in ({}, {"cid_version": 1}):
            assert add(url, only_hash=True, **flags) == add(
                data / "file.bin", only_hash=True, **flags
            )
    finally:
        server.shutdown()


def test_bucket_benchmark_runs_and_reports_every_figure():
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_bucket.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--size-mib", "4", "--repeat", "1", "--no-goal"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for figure in ("sha256 in memory", "add s3:// / add local", "verified / direct"):
        assert figure in result.stdout


def test_a_repository_under_a_file_url_renames_blocks_into_place(tmp_path, monkeypatch):
    monkeypatch.setattr("howto.blocks.bucket.FLUSH_BYTES", 300_000)
    repo = BucketRepo(f"file://{tmp_path}/repo")
    assert not repo.atomic_puts
    data = np.random.default_rng(5).bytes(1_500_000)
    with repo.transaction() as txn:
        root = Importer(Options.create(cid_version=1), txn.put).add_bytes(data)
    assert not list((tmp_path / "repo" / "staging").glob("*/*"))
    local = Repo(tmp_path / "repo")  # the same layout: a local repository reads it
    assert b"".join(DagReader(Chain([local])).read(to_cid(root.cid), "")) == data
