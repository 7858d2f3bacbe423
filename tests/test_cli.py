"""The ``howto`` command, run as a subprocess: kubo's output, the repository, clean failures."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import pytest
from kubo_vectors import keystream, random_names, write_tree

from howto.unixfs.add import PROGRESS_MIN_BYTES, add_paths
from howto.unixfs.importer import DEFAULT_CHUNK

HOWTO = [sys.executable, "-m", "howto.cli"]

# Published in kubo's tests (t0040-add-and-cat, cid_profiles_test.go, t0044 planets).
HELLO_V0 = "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"
HELLO_V1 = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
EMPTY_V0 = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
EMPTY_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
PLANETS = {"planets/mars.txt": "Hello Mars!\n", "planets/venus.txt": "Hello Venus!\n"}
PLANETS_V0 = "QmWSgS32xQEcXMeqd3YPJLrNBLSdsfYCep2U7CFkyrjXwY"
PLANETS_RAW_LEAVES = "QmfWfQfKCY5Ukv9peBbxM5vqWM9BzmqUSXvdCgjT2wsiBT"
PLANETS_V1 = "bafybeih7e5dmkyk25up5vxug4q3hrg2fxbzf23dfrac2fns5h7z4aa7ioi"


def run(*args: str | Path, cwd: Path | None = None, env: dict | None = None):
    return subprocess.run(
        [*HOWTO, *map(str, args)], capture_output=True, cwd=cwd, env=env, timeout=300
    )


def ok(*args: str | Path, **kwargs) -> str:
    """stdout of a command that must succeed quietly."""
    result = run(*args, **kwargs)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return result.stdout.decode()


def fails(*args: str | Path, **kwargs) -> str:
    """The single stderr line of a command that must fail without a traceback."""
    result = run(*args, **kwargs)
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def repo_files(repo: Path) -> list[Path]:
    return sorted(p.relative_to(repo) for p in repo.rglob("*") if p.is_file())


def block_files(repo: Path) -> list[Path]:
    return [p for p in repo_files(repo) if p.parts[0] == "blocks"]


@pytest.fixture
def hello(tmp_path) -> Path:
    path = tmp_path / "hello"
    path.write_text("hello world")
    return path


@pytest.fixture
def planets(tmp_path) -> Path:
    return write_tree(tmp_path, PLANETS) / "planets"


# --- add: kubo's output --------------------------------------------------------------------


def test_add_prints_an_added_line(hello):
    assert ok("add", hello) == f"added {HELLO_V0} hello\n"
    assert ok("add", "--cid-version", "1", hello) == f"added {HELLO_V1} hello\n"
    assert ok("add", "--cid-version=1", "-Q", hello) == f"{HELLO_V1}\n"


def test_add_options_change_the_cid_as_in_kubo(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert ok("add", "-Q", empty) == f"{EMPTY_V0}\n"
    assert ok("add", "-Q", "--raw-leaves", empty) == f"{EMPTY_RAW}\n"


# --- add from standard input ---------------------------------------------------------------

# kubo's t0040-add-and-cat: a pipe is named by its own CID, unless --stdin-name names it.
NEPTUNE = b"Hello Neptune!\nHello Pluton!"
NEPTUNE_V0 = "QmZDhWpi8NvKrekaYYhxKCdNVGWsFFe1CREnAjP1QbPaB3"
JUPITER_V0 = "QmUnvPcBctVTAcJpigv6KMqDvmDewksPWrNVoy1E1WP5fh"  # "Hello Jupiter!\n"
IPFS_TXT_V0 = "QmdFyxZXsFiP4csgfM5uPu99AvFiKH62CSPDw5TP92nr7w"  # "IPFS\n" as file.txt


def piped(data: bytes, *args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*HOWTO, *map(str, args)], input=data, capture_output=True, timeout=300, **kwargs
    )


def test_add_reads_a_pipe_as_kubo_does(howto_repo):
    result = piped(NEPTUNE, "add")
    assert result.returncode == 0 and result.stderr == b"", result.stderr
    assert result.stdout.decode() == f"added {NEPTUNE_V0} {NEPTUNE_V0}\n"
    assert piped(NEPTUNE, "add", "-Q").stdout.decode() == f"{NEPTUNE_V0}\n"
    assert piped(b"Hello Jupiter!\n", "add", "-q").stdout.decode() == f"{JUPITER_V0}\n"
    named = piped(b"IPFS\n", "add", "--stdin-name", "file.txt").stdout.decode()
    assert named == f"added {IPFS_TXT_V0} file.txt\n"
    wrapped = piped(b"IPFS\n", "add", "-w", "-Q", "--stdin-name", "file.txt").stdout.decode()
    assert ok("cat", f"{wrapped.strip()}/file.txt") == "IPFS\n"
    assert run("cat", NEPTUNE_V0).stdout == NEPTUNE  # stored: readable back


@pytest.mark.parametrize(
    "flags",
    [[], ["--cid-version", "1"], ["--raw-leaves"], ["--chunker", "size-1000"], ["-n"]],
)
def test_a_pipe_gets_the_cid_of_the_same_bytes_in_a_file(tmp_path, howto_repo, flags):
    data = keystream("stdin", 2 * DEFAULT_CHUNK + 3)  # three leaves and a root
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    from_file = ok("add", "-Q", *flags, path).strip()
    from_pipe = piped(data, "add", "-Q", *flags)
    assert from_pipe.returncode == 0, from_pipe.stderr
    assert from_pipe.stdout.decode().strip() == from_file
    dash = piped(data, "add", *flags, path, "-").stdout.decode().splitlines()
    assert dash == [f"added {from_file} data.bin", f"added {from_file} {from_file}"]


def test_add_with_only_hash_from_a_pipe_stores_nothing(howto_repo):
    assert piped(NEPTUNE, "add", "-n", "-Q").stdout.decode() == f"{NEPTUNE_V0}\n"
    assert block_files(howto_repo) == []


def test_add_refuses_to_wait_on_a_terminal_and_a_nameless_wrap(howto_repo):
    primary, secondary = pty.openpty()
    try:
        result = subprocess.run([*HOWTO, "add"], stdin=secondary, capture_output=True, timeout=60)
    finally:
        os.close(secondary)
        os.close(primary)
    err = result.stderr.decode()
    assert result.returncode == 1 and "pipe" in err and len(err.splitlines()) == 1, err
    wrapped = piped(NEPTUNE, "add", "-w")
    assert wrapped.returncode == 1 and b"--stdin-name" in wrapped.stderr
    assert wrapped.stdout == b"" and block_files(howto_repo) == []


def test_add_directory_lists_entries_root_last(planets):
    lines = ok("add", "-r", planets).splitlines()
    names = [line.split(" ", 2)[2] for line in lines]
    assert names == ["planets/mars.txt", "planets/venus.txt", "planets"]
    assert all(line.startswith("added ") for line in lines)
    assert lines[-1] == f"added {PLANETS_V0} planets"
    cids = [line.split()[1] for line in lines]
    assert ok("add", "-r", "-q", planets).splitlines() == cids
    assert ok("add", "-rQ", planets) == f"{PLANETS_V0}\n"
    assert ok("add", "-r", "-Q", "--raw-leaves", planets) == f"{PLANETS_RAW_LEAVES}\n"
    assert ok("add", "-r", "-Q", "--cid-version", "1", planets) == f"{PLANETS_V1}\n"


def test_add_of_dot_uses_the_directory_name(planets):
    assert ok("add", "-r", ".", cwd=planets).splitlines()[-1] == f"added {PLANETS_V0} planets"


def test_wrap_with_directory_ends_with_an_unnamed_line(hello, tmp_path):
    lines = ok("add", "-w", hello).split("\n")
    assert lines[0] == f"added {HELLO_V0} hello"
    assert lines[1].startswith("added ") and lines[1].endswith(" ")
    assert lines[2:] == [""]
    wrapper = lines[1].split(" ")[1]
    # The wrapper is the directory one would get by adding a folder holding just "hello".
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "hello").write_text("hello world")
    assert ok("add", "-r", "-Q", "-n", alone) == f"{wrapper}\n"
    assert ok("add", "-w", "-Q", hello) == f"{wrapper}\n"
    assert ok("ls", wrapper) == f"{HELLO_V0} 11 hello\n"


def test_several_paths_keep_their_order(hello, planets):
    lines = ok("add", "-r", "-w", hello, planets).splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "hello",
        "planets/mars.txt",
        "planets/venus.txt",
        "planets",
        "",
    ]
    listing = ok("ls", lines[-1].split()[1]).splitlines()
    assert listing == [f"{HELLO_V0} 11 hello", f"{PLANETS_V0} - planets/"]


def test_hidden_files_need_the_flag(tmp_path):
    write_tree(tmp_path, {"d/a": "a", "d/.secret": "s"})
    assert [line.split()[2] for line in ok("add", "-r", tmp_path / "d").splitlines()] == [
        "d/a",
        "d",
    ]
    names = [line.split()[2] for line in ok("add", "-r", "-H", tmp_path / "d").splitlines()]
    assert names == ["d/.secret", "d/a", "d"]


@pytest.mark.parametrize("size, length", [(1, 400), (1000, 180_000), (4096, 800_000)])
def test_chunker_matches_the_npm_importer(tmp_path, oracle, size, length):
    """Each input needs more than 174 chunks, so a tree with a second level."""
    path = tmp_path / "data"
    path.write_bytes(keystream(f"chunker-{size}", length))
    got = ok("add", "-Q", "--cid-version", "1", "--chunker", f"size-{size}", path).strip()
    assert got == oracle.cid(path, chunk=size)


# --- the repository ------------------------------------------------------------------------


def test_only_hash_stores_nothing(planets, howto_repo):
    assert ok("add", "-r", "-n", planets).splitlines()[-1] == f"added {PLANETS_V0} planets"
    assert list(howto_repo.iterdir()) == []
    assert "not available" in fails("cat", f"{PLANETS_V0}/mars.txt")


def test_add_then_cat_and_ls(tmp_path, howto_repo):
    data = keystream("cli-cat", 3 * DEFAULT_CHUNK + 1)
    write_tree(tmp_path, {"d/big.bin": data, "d/sub/note.txt": "note\n"})
    root = ok("add", "-r", "-Q", tmp_path / "d").strip()
    assert len(block_files(howto_repo)) == 5 + 1 + 1 + 1  # big.bin, note, sub, d
    big = run("cat", f"{root}/big.bin")
    assert big.returncode == 0 and big.stdout == data
    assert ok("cat", f"/ipfs/{root}/sub/note.txt") == "note\n"
    assert ok("cat", f"ipfs://{root}/sub/note.txt") == "note\n"
    listing = ok("ls", root).splitlines()
    sub = ok("add", "-r", "-Q", "-n", tmp_path / "d/sub").strip()
    big_cid = ok("add", "-Q", "-n", tmp_path / "d/big.bin").strip()
    assert listing == [f"{big_cid} {len(data)} big.bin", f"{sub} - sub/"]
    assert ok("ls", f"{root}/sub").split()[1:] == ["5", "note.txt"]


def test_cat_an_entry_of_a_sharded_directory(tmp_path):
    names = random_names("cli-hamt", 4033, 31)
    folder = tmp_path / "many"
    folder.mkdir()
    for name in names:
        (folder / name).write_text(name.upper())
    root = ok("add", "-r", "-Q", folder).strip()
    for name in (names[0], names[-1]):
        assert ok("cat", f"{root}/{name}") == name.upper()
    assert "no link named" in fails("cat", f"{root}/{names[0]}x")


def test_dag_export_then_import_into_a_fresh_repo(tmp_path, howto_repo):
    data = keystream("cli-export", 2 * DEFAULT_CHUNK + 3)
    write_tree(tmp_path, {"d/x.bin": data, "d/y.txt": "why\n"})
    root = ok("add", "-r", "-Q", "--cid-version", "1", tmp_path / "d").strip()
    car = tmp_path / "d.car"
    with open(car, "wb") as out:
        result = subprocess.run([*HOWTO, "dag", "export", root], stdout=out, timeout=300)
    assert result.returncode == 0
    fresh = tmp_path / "fresh"
    env = {**os.environ, "HOWTO_REPO": str(fresh)}
    assert "not available" in fails("cat", f"{root}/y.txt", env=env)
    imported = ok("dag", "import", car, env=env)
    assert imported.startswith(f"imported root {root} ")
    assert run("cat", f"{root}/x.bin", env=env).stdout == data
    assert ok("cat", f"{root}/y.txt", env=env) == "why\n"
    assert block_files(fresh) == block_files(howto_repo)


def test_dag_export_refuses_a_terminal(hello):
    root = ok("add", "-Q", hello).strip()
    primary, secondary = pty.openpty()
    try:
        result = subprocess.run(
            [*HOWTO, "dag", "export", root], stdout=secondary, stderr=subprocess.PIPE, timeout=300
        )
    finally:
        os.close(secondary)
        os.close(primary)
    assert result.returncode != 0
    assert b"terminal" in result.stderr and b"Traceback" not in result.stderr


def test_a_corrupt_block_in_the_repo_is_reported(hello, howto_repo):
    root = ok("add", "-Q", hello).strip()
    [block] = block_files(howto_repo)
    path = howto_repo / block
    path.write_bytes(path.read_bytes().replace(b"hello", b"jello"))
    assert root in fails("cat", root)


# --- failures: one line, no traceback, nothing stored ---------------------------------------


def _error_cases(tmp: Path) -> list[tuple[list[str], str]]:
    (tmp / "dir").mkdir()
    (tmp / "file").write_text("x")
    stored = [HELLO_V0]  # added by the test before running these
    return [
        (["add", str(tmp / "missing")], "missing"),
        (["add", str(tmp / "dir")], "-r"),
        (["add", "--chunker", "size-0", str(tmp / "file")], "size 0"),
        (["add", "--chunker", "size-x", str(tmp / "file")], "size-x"),
        (["add", "--chunker", "rabin", str(tmp / "file")], "rabin"),
        (["add", "--chunker", "rabin-1-2-3", str(tmp / "file")], "rabin"),
        (["add", "--chunker", "size-2096897", str(tmp / "file")], "2096897"),
        (["add", "--cid-version", "2", str(tmp / "file")], "CID version 2"),
        (["add", "--cid-version", "one", str(tmp / "file")], "cid-version"),
        (["add", "-", str(tmp / "file"), "-"], "only once"),  # refused before reading
        (["add", "-w", "-"], "--stdin-name"),
        (["cat", "notacid"], "notacid"),
        (["cat", "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyf"], "not a CID"),
        (["ls", "bafy"], "not a CID"),
        (["dag", "export", "zzzz"], "not a CID"),
        (["cat", EMPTY_V0], "not available"),
        (["cat", f"{stored[0]}/inside"], "inside"),
        (["ls", stored[0]], "not a directory"),
        (["dag", "import", str(tmp / "missing.car")], "missing.car"),
        (["dag", "import", str(tmp / "file")], "CAR"),
        (["frobnicate"], "frobnicate"),
    ]


def test_bad_input_gives_one_line_and_stores_nothing(tmp_path, hello, howto_repo):
    ok("add", "-Q", hello)
    before = repo_files(howto_repo)
    for args, expected in _error_cases(tmp_path):
        line = fails(*args)
        assert expected in line, (args, line)
        assert repo_files(howto_repo) == before, args


def test_cat_of_a_directory_is_refused(planets):
    root = ok("add", "-r", "-Q", planets).strip()
    assert "directory" in fails("cat", root)


def _special_file(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    else:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_an_entry_that_cannot_be_read_aborts_the_whole_add(tmp_path, howto_repo, kind):
    write_tree(tmp_path, {"d/a.txt": "a\n", "d/b.bin": keystream("late", 2 * DEFAULT_CHUNK)})
    _special_file(tmp_path / "d/z", kind)
    line = fails("add", "-r", tmp_path / "d")
    assert str(tmp_path / "d/z") in line
    assert repo_files(howto_repo) == []  # no blocks, no staging leftovers
    assert "z" in fails("add", tmp_path / "d/z")
    assert repo_files(howto_repo) == []


def _as_unprivileged(argv: list[str], repo: Path) -> tuple[int, str]:
    """Run the CLI in a forked child; as root, the child first becomes ``nobody``.

    Root reads any file whatever its mode, so an unreadable file needs a user it binds.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run main(), report through the pipe
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            os.environ["HOWTO_REPO"] = str(repo)
            sys.stderr = open(write_end, "w")  # noqa: SIM115 - flushed and closed below
            from howto.cli import main

            code = main(argv)
            sys.stderr.close()
        except BaseException:
            code = 99
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        err = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


def test_an_unreadable_file_aborts_the_add():
    base = Path(tempfile.mkdtemp(prefix="howto-perm-"))
    try:
        base.chmod(0o755)
        write_tree(base, {"d/a.txt": "a\n", "d/secret": "s\n"})
        (base / "d").chmod(0o755)
        (base / "d/a.txt").chmod(0o644)
        (base / "d/secret").chmod(0)
        repo = base / "repo"
        repo.mkdir(mode=0o777)
        repo.chmod(0o777)
        for argv in (["add", "-r", str(base / "d")], ["add", str(base / "d/secret")]):
            code, err = _as_unprivileged(argv, repo)
            assert code == 1, err
            assert "ermission denied" in err and "Traceback" not in err
            assert len(err.splitlines()) == 1
        assert not [p for p in repo.rglob("*") if p.is_file()]
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- the progress bar ----------------------------------------------------------------------


@pytest.fixture
def large(tmp_path) -> Path:
    path = tmp_path / "large.bin"
    path.write_bytes(bytes(PROGRESS_MIN_BYTES + DEFAULT_CHUNK))
    return path


def _stderr_on_a_terminal(*args: str | Path) -> tuple[int, str, bytes]:
    """Run with stderr on a pseudo-terminal; return status, what the terminal got, stdout."""
    primary, secondary = pty.openpty()
    # A new pty is 0x0 characters; give it the size of a usual terminal window.
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [*HOWTO, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=secondary,
        stdin=subprocess.DEVNULL,
    )
    os.close(secondary)
    seen = bytearray()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(primary)
    stdout = proc.stdout.read()
    proc.stdout.close()
    return proc.wait(timeout=60), seen.decode(errors="replace"), stdout


def test_progress_bar_on_a_terminal(large):
    status, terminal, stdout = _stderr_on_a_terminal("add", "-n", large)
    assert status == 0
    assert "100%" in terminal and "B/s" in terminal
    assert stdout.decode().startswith("added ")


@pytest.mark.parametrize("flag", ["-q", "-Q"])
def test_quiet_flags_silence_the_bar(large, flag):
    status, terminal, stdout = _stderr_on_a_terminal("add", "-n", flag, large)
    assert status == 0 and terminal == ""
    assert len(stdout.split()) == 1


def test_no_bar_when_stderr_is_not_a_terminal(large):
    result = run("add", "-n", large)
    assert result.returncode == 0 and result.stderr == b""


def test_progress_bar_through_the_api(large, hello, capsys):
    list(add_paths([large], only_hash=True, progress=True))
    err = capsys.readouterr().err
    assert "100%" in err
    list(add_paths([hello], only_hash=True, progress=True))  # too small to bother
    assert capsys.readouterr().err == ""


# --- start-up: each verb imports what it uses ----------------------------------------------

HEAVY = {"aiohttp", "xarray", "intake", "zarr", "fsspec", "numpy", "pandas", "s3fs"}


def imported_by(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, set]:
    """Run the command with ``-X importtime``; the top-level names of every module it
    imported, read from the interpreter's own report on stderr."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *HOWTO[1:], *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    report = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert report, result.stderr  # the report is there, so an empty set would mean something
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in report}
    return result, names


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["add", "--help"]])
def test_version_and_help_load_no_heavy_library(args):
    result, names = imported_by(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "howto" in names and not names & (HEAVY | {"multiformats", "http", "ssl"}), names
    if args == ["--version"]:
        assert result.stdout.startswith("howto version ")


def test_cat_of_a_local_block_loads_no_http_client_nor_fsspec(hello, howto_repo, tmp_path):
    root = ok("add", "-Q", "--cid-version", "1", hello).strip()
    # a configured gateway is not asked (nor its client imported) for a block held locally
    env = {**os.environ, "IPFS_GATEWAY": "http://127.0.0.1:9"}
    result, names = imported_by("cat", root, env=env)
    assert result.returncode == 0 and result.stdout == "hello world", result.stderr[-2000:]
    assert "multiformats" in names
    assert not names & (HEAVY | {"http", "ssl"}), names & (HEAVY | {"http", "ssl"})


def test_startup_benchmark_runs_and_reports_every_figure():
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_startup.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--repeat", "2", "--no-goal"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for figure in ("reference: python -c pass", "howto --version", "howto --help", "howto cat"):
        assert figure in result.stdout
