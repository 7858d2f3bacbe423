"""``howto add``: import paths like ``ipfs add`` and store the blocks in the repository.

A path may also be an fsspec URL (``s3://bucket/key``, ``gs://…``, ``https://…``,
``file://…``): its files are streamed from where they are and get the CIDs the same
files would get on disk (see ``howto.remote``).  ``-`` stands for the bytes of standard
input (``echo hi | howto add``), imported as one file, as ``ipfs add`` does with a pipe.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import BinaryIO

from multiformats import CID
from tqdm import tqdm

from ..blocks.bucket import is_url, open_repo
from ..blocks.chain import BlockStore
from ..formats.cids import cid_text, to_cid
from ..formats.dagpb import PBLink
from .importer import Added, Importer, Options, walk
from .remote import RemoteEntry, list_tree, name_of, stat_url, tree_size, walk_url

PROGRESS_MIN_BYTES = 8 * 1024 * 1024
#: The path that names standard input.
STDIN = "-"


def _total_size(paths: Sequence[Path | str], hidden: bool) -> int:
    total = 0
    for path in paths:
        if isinstance(path, str):  # a URL (sized when listed) or stdin (size unknown)
            continue
        if path.is_symlink():
            continue
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():  # a stack, not os.walk: it recurses per level before 3.12
            folders = [path]
            while folders:
                with os.scandir(folders.pop()) as scan:
                    for entry in scan:
                        if not hidden and entry.name.startswith("."):
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            folders.append(Path(entry.path))
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
    return total


def check_paths(paths: Sequence[str | os.PathLike], recursive: bool) -> list[Path | str]:
    """Refuse missing, unreadable or directory paths before any block is written.

    Local paths come back as ``Path``s (``file://`` URLs too), other URLs as strings.
    """
    checked: list[Path | str] = []
    for raw in paths:
        text = os.fspath(raw)
        if text == STDIN and not isinstance(raw, Path):
            if STDIN in checked:
                raise ValueError("standard input can be added only once")
            checked.append(STDIN)
            continue
        if is_url(text):
            stat_url(text, recursive)
            checked.append(text)
            continue
        raw = text.removeprefix("file://") if text.startswith("file://") else raw
        path = Path(raw)
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(f"{raw}: no such file or directory")
        if path.is_dir() and not path.is_symlink() and not recursive:
            raise IsADirectoryError(f"{raw} is a directory, use -r to add directories")
        if not path.is_symlink() and not os.access(path, os.R_OK):
            raise PermissionError(f"{raw}: permission denied")
        checked.append(path)
    return checked


def _entry_name(path: Path) -> str:
    """The name kubo prints for a command-line path: its last part (``.`` is the cwd's)."""
    if str(path) == ".":  # go-ipfs-cmds resolves "." to the real working directory
        return Path.cwd().resolve().name or "/"
    return path.name or str(path)


def add_paths(
    paths: Sequence[str | os.PathLike],
    *,
    recursive: bool = False,
    hidden: bool = False,
    only_hash: bool = False,
    wrap_with_directory: bool = False,
    raw_leaves: bool | None = None,
    cid_version: int = 0,
    chunker: str = "size-262144",
    repo: BlockStore | None = None,
    progress: bool | None = None,
    stdin: BinaryIO | None = None,
    stdin_name: str | None = None,
) -> Iterator[Added]:
    """Import ``paths``; yield one ``Added`` per entry, the root last.

    Blocks reach the repository only once everything has been imported (nothing on
    failure).  ``progress=None`` shows a bar when stderr is a terminal and the input is large.
    The path ``-`` reads ``stdin`` (default: this process's standard input) as one file,
    named ``stdin_name`` or, as kubo names a pipe it was given, by its own CID.
    """
    options = Options.create(cid_version, raw_leaves, chunker, hidden)
    checked = check_paths(paths, recursive)
    if wrap_with_directory and STDIN in checked and not stdin_name:
        raise ValueError("-w with standard input needs --stdin-name (a name for its entry)")
    if progress is None:
        progress = sys.stderr.isatty()
    with ExitStack() as stack:
        txn = None if only_hash else stack.enter_context((repo or open_repo()).transaction())
        importer = Importer(options, txn.put if txn else None)
        trees: dict[str, RemoteEntry] = {}
        for url in (p for p in checked if isinstance(p, str) and p != STDIN):
            top = stat_url(url, recursive)
            trees[url] = list_tree(url, hidden) if top.kind == "directory" else top
        total = _total_size(checked, hidden) + sum(map(tree_size, trees.values()))
        total = total if progress else 0
        bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            file=sys.stderr,
            disable=not progress or total < PROGRESS_MIN_BYTES,
        )
        stack.enter_context(bar if not bar.disable else nullcontext())
        tops = []
        for path in checked:
            if path == STDIN:
                node = importer.add_stream(stdin or sys.stdin.buffer, bar.update)
                name = stdin_name or cid_text(node.cid)
                entries = [(Added(node.cid, name, node.filesize), node)]
            elif isinstance(path, str):
                name = name_of(path)
                entries = walk_url(importer, path, trees[path], name, bar.update)
            else:
                name = _entry_name(path)
                entries = walk(importer, path, name, recursive, bar.update)
            for added, node in entries:
                yield added
                top = node  # the path itself comes last
            tops.append(PBLink(top.cid, name, top.tsize))
        if wrap_with_directory:
            wrapper = importer.add_directory_links(tops)
            yield Added(wrapper.cid, "", 0)


def _is_directory(path: str | os.PathLike) -> bool:
    text = os.fspath(path)
    if is_url(text):
        return stat_url(text, True).kind == "directory"
    return Path(text.removeprefix("file://")).is_dir()


def add(path: str | os.PathLike | Sequence[str | os.PathLike], **options: object) -> CID:
    """Import a file or directory as ``ipfs add`` would and return the root CID.

    Takes the options of ``add_paths`` (``recursive``, ``hidden``, ``only_hash``,
    ``wrap_with_directory``, ``raw_leaves``, ``cid_version``, ``chunker``, ``repo``,
    ``progress``, off by default); the CLI's ``quiet``/``quieter`` are accepted and
    ignored, as they only shape printed output.  A directory implies ``recursive=True``.
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    for printing_only in ("quiet", "quieter"):  # CLI output flags: nothing to print here
        options.pop(printing_only, None)
    if any(_is_directory(p) for p in paths):
        options.setdefault("recursive", True)
    options.setdefault("progress", False)
    entries = deque(add_paths(paths, **options), maxlen=1)  # type: ignore[arg-type]
    if not entries:
        raise ValueError("nothing to add")
    return to_cid(entries[0].cid)


__all__ = [
    "PROGRESS_MIN_BYTES",
    "STDIN",
    "add",
    "add_paths",
    "check_paths",
]
