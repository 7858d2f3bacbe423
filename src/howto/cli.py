"""The ``howto`` command: kubo's verbs (add, cat, ls, dag export/import, serve) and catalogs.

Errors print one line on stderr and exit non-zero; tracebacks are for bugs only.

Each verb imports what it uses when it runs, and nothing is imported at the top but the
standard library's argparse: ``howto --help`` need not load an HTTP client, and
``howto cat`` of a local block need not load fsspec (``tests/test_cli.py`` checks it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from .errors import SHOWN_CHARS, HowtoError, printable

if TYPE_CHECKING:
    from multiformats import CID

    from .retrieval.reader import DagReader


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2), like other errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> NoReturn:
        from . import __version__

        print(f"howto version {__version__}")  # as 'ipfs --version' words it
        parser.exit(0)


def _cid_arg(text: str) -> tuple[CID | None, str]:
    """``CID[/PATH]`` (or ``/ipfs/…``, ``ipfs://…``) as (CID, path); ``/ipns/NAME[/PATH]``
    as (None, ``NAME/PATH``), resolved later, when the gateways are known."""
    if text.startswith(("/ipns/", "ipns://")):
        from .names.ipns import name_text, parse_name

        name, _, path = text.removeprefix("/ipns/").removeprefix("ipns://").partition("/")
        try:
            return None, "/".join(filter(None, [name_text(parse_name(name)), path.strip("/")]))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    from .formats.cids import parse_cid

    try:
        return parse_cid(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _target(args: argparse.Namespace) -> tuple[CID, str]:
    """The CID and path a command names; an IPNS name through its newest valid record."""
    cid, path = args.cid
    if cid is not None:
        return cid, path
    from .formats.cids import parse_cid
    from .names.ipns import resolve_path
    from .retrieval.sources import default_chain

    root, inner = parse_cid(resolve_path(path, default_chain(offline=args.offline)).path)
    return root, inner


def _port_arg(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not between 0 and 65535")
    return port


def _cmd_add(args: argparse.Namespace) -> int:
    from .formats.cids import to_cid
    from .unixfs.add import STDIN, add_paths

    if args.cid_version not in (0, 1):
        raise ValueError(f"unknown CID version {args.cid_version}: use 0 or 1")
    paths = args.paths
    if not paths:  # as 'ipfs add': read a pipe, but never wait on a terminal
        if sys.stdin is None or sys.stdin.isatty():
            raise ValueError("nothing to add: give a PATH, or pipe bytes to standard input")
        paths = [STDIN]
    last = None
    for added in add_paths(
        paths,
        recursive=args.recursive,
        hidden=args.hidden,
        only_hash=args.only_hash,
        wrap_with_directory=args.wrap_with_directory,
        raw_leaves=True if args.raw_leaves else None,
        cid_version=args.cid_version,
        chunker=args.chunker,
        progress=False if (args.quiet or args.quieter) else None,
        stdin_name=args.stdin_name,
    ):
        last = added
        if args.quieter:
            continue
        cid = to_cid(added.cid)
        print(cid if args.quiet else f"added {cid} {added.name}", flush=False)
    if args.quieter and last is not None:
        print(to_cid(last.cid))
    return 0


def _reader(args: argparse.Namespace) -> DagReader:
    """Local blocks first, then the configured gateways (none with ``--offline``); blocks
    fetched from gateways are kept in the repository, as kubo keeps them."""
    from .retrieval.reader import DagReader
    from .retrieval.sources import default_chain

    return DagReader(default_chain(offline=args.offline, keep=True))


def _cmd_cat(args: argparse.Namespace) -> int:
    cid, path = _target(args)
    out = sys.stdout.buffer
    _reader(args).read_to(out, cid, path)
    out.flush()
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    from .formats.cids import cid_text

    cid, path = _target(args)
    for entry in _reader(args).entries(cid, path):  # printed as they come
        name = printable(entry.name)  # a name from the DAG may hold terminal escapes
        if entry.kind == "directory":
            print(f"{cid_text(entry.raw)} - {name}/")
        else:
            print(f"{cid_text(entry.raw)} {entry.size} {name}")
    return 0


def _cmd_get(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .retrieval.transfer import get_tree

    cid, path = _target(args)
    out = Path(args.output) if args.output else Path(path.rsplit("/", 1)[-1] or str(cid))
    written = get_tree(_reader(args), cid, path, out, progress=not args.quiet)
    if not args.quiet:
        shown = printable(f"{cid}{'/' + path if path else ''} to {out}")
        print(f"saved {shown} ({written} bytes)")
    return 0


def _cmd_dag_export(args: argparse.Namespace) -> int:
    from .retrieval.transfer import export_car

    cid, path = _target(args)
    if sys.stdout.isatty():
        raise ValueError("refusing to write a CAR to a terminal: redirect it to a file")
    reader = _reader(args)
    target = reader.resolve(cid, path)[-1]
    export_car(target, sys.stdout.buffer, reader.chain)
    sys.stdout.buffer.flush()
    return 0


def _cmd_dag_import(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from .blocks.bucket import open_repo
    from .formats.cids import cid_text
    from .retrieval.transfer import import_cars

    with ExitStack() as files:  # one transaction for all: a root may span several CARs
        cars = ((path, files.enter_context(open(path, "rb"))) for path in args.files)
        imported = import_cars(cars, open_repo(), check=not args.no_check)
    state = "DAG not checked" if args.no_check else "DAG complete"
    for root in imported.roots:
        print(f"imported root {cid_text(root)} ({state})")
    if not imported.roots:
        named = "it names" if len(args.files) == 1 else "they name"
        print(f"imported {imported.blocks} blocks from {', '.join(args.files)} ({named} no root)")
    if args.stats:  # kubo's --stats line, word for word
        print(f"Imported {imported.blocks} blocks ({imported.size} bytes)")
    return 0


def _cmd_repo_verify(args: argparse.Namespace) -> int:
    from .blocks.bucket import open_repo

    repo = open_repo()
    where = getattr(repo, "url", None) or getattr(repo, "path", "")
    damaged = 0
    for damage in repo.verify():
        damaged += 1
        name = str(damage.path).rsplit("/", 1)[-1]
        print(f"damaged block {name}: {damage.reason}", file=sys.stderr)
    if damaged:
        print(f"howto repo verify: {damaged} damaged block(s) in {where}", file=sys.stderr)
        return 1
    print(f"verified all blocks in {where}")
    return 0


def _cmd_repo_gc(args: argparse.Namespace) -> int:
    from .blocks.bucket import open_repo

    repo = open_repo()
    for folder in repo.collect_garbage():
        print(f"removed {str(folder).rstrip('/').rsplit('/', 1)[-1]}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging
    import threading

    from .blocks.chain import CarBlocks, Chain
    from .gateway import GatewayServer
    from .retrieval.sources import local_chain

    # one line on stderr per failed request (see howto.gateway.log), 404s included
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("howto serve: %(message)s"))
    gateway_log = logging.getLogger("howto.gateway")
    gateway_log.addHandler(handler)
    gateway_log.setLevel(logging.INFO)
    gateway_log.propagate = False

    source = local_chain()
    if args.car:
        given = CarBlocks(args.car, "CAR files given to serve")
        given.load()  # refuse a bad CAR before serving anything
        source = Chain([given, *source.local])
    server = GatewayServer(source, args.port)
    url = server.start()
    print(f"howto gateway serving on {url}/ipfs/ (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    finally:
        server.stop()
    return 0


def _cmd_key_gen(args: argparse.Namespace) -> int:
    from .names.ipns import KeyStore, name_text

    print(name_text(KeyStore().generate(args.name)))
    return 0


def _cmd_key_list(args: argparse.Namespace) -> int:
    from .names.ipns import KeyStore, name_text

    for key, name in KeyStore().names().items():
        print(f"{name_text(name)} {key}" if args.l else key)
    return 0


def _cmd_name_publish(args: argparse.Namespace) -> int:
    from .errors import IpnsError, NotFoundError
    from .formats.cids import parse_cid
    from .names.ipns import (
        DEFAULT_LIFETIME,
        KeyStore,
        RecordStore,
        create_record,
        name_of,
        name_text,
        parse_duration,
    )

    root, inner = parse_cid(args.path)  # only content paths, checked like any CID
    value = "/ipfs/" + str(root) + (f"/{inner}" if inner else "")
    key = KeyStore().load_or_generate(args.key)
    name = name_of(key)
    records = RecordStore()
    try:
        sequence = records.get(name).sequence + 1
    except (NotFoundError, IpnsError):
        sequence = 0
    lifetime = parse_duration(args.lifetime) if args.lifetime else DEFAULT_LIFETIME
    ttl = {"ttl": parse_duration(args.ttl)} if args.ttl else {}
    records.put(create_record(key, value, sequence, lifetime, **ttl), name)
    print(name_text(name) if args.quieter else f"Published to {name_text(name)}: {value}")
    return 0


def _cmd_name_resolve(args: argparse.Namespace) -> int:
    from .names.ipns import resolve_path
    from .retrieval.sources import default_chain

    print(printable(resolve_path(args.name, default_chain(offline=args.offline)).path))
    return 0


def _cmd_name_inspect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import IpnsError
    from .formats.dagjson import display
    from .names.ipns import inspect_record, verify_record

    raw = Path(args.file).read_bytes()
    for field, value in inspect_record(raw).items():
        if isinstance(value, bytes) and field not in ("Value", "Validity"):
            value = f"{len(value)} bytes"
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, dict):
            readable = {k: _text_or_bytes(v) for k, v in value.items()}
            value = display(readable).replace("\n", "\n  ")
        print(f"{field}: {value}")
    if args.verify:
        try:
            record = verify_record(raw, args.verify)
        except IpnsError as exc:
            print(f"Valid for {args.verify}: no ({exc})")
            return 1
        print(f"Valid for {args.verify}: yes, until {record.validity:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def _text_or_bytes(value: object) -> object:
    """Bytes that are printable ASCII as text (a record's Value and Validity)."""
    if isinstance(value, bytes) and value.isascii() and value.decode().isprintable():
        return value.decode()
    return value


def _cmd_routing_put(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .names.ipns import RecordStore, name_text, parse_name

    if not args.key.startswith("/ipns/"):
        raise ValueError(f"only /ipns/ keys can be put, not {args.key!r}")
    name = parse_name(args.key)
    record = RecordStore().put(Path(args.file).read_bytes(), name)
    print(f"stored the record for /ipns/{name_text(name)} (sequence {record.sequence})")
    return 0


def _cmd_catalog_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .catalog.build import convert_catalog, pin_version

    classic = Path(args.catalog) if args.catalog else None
    if args.lock:
        entry = pin_version(args.lock, args.note or "", classic=classic)
        print(f"locked {entry.version}: {entry.cid}")
        return 0
    downloads = Path(args.downloads) if args.downloads else None
    built = convert_catalog(
        classic, None, args.only_hash, args.fetch_remote, downloads, progress=True
    )
    print(built.root)
    print(built.totals, file=sys.stderr)
    return 0


def _cmd_catalog_check(args: argparse.Namespace) -> int:
    from .catalog.check import check

    report = check(args.target, offline=args.offline)
    print(report.as_json() if args.json else report.table())
    return 1 if report.refused else 0


def _cmd_catalog_versions(args: argparse.Namespace) -> int:
    from .catalog.build import list_catalog_versions

    for v in list_catalog_versions():
        print(f"{v.version}\t{v.date}\t{v.cid}\t{v.note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="howto", description="Content-addressed data, the IPFS way, verified.")
    parser.add_argument(
        "--offline", action="store_true", help="read local blocks only, ask no gateway"
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    network = _Parser(add_help=False)
    network.add_argument(
        "--offline", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "add",
        help="import files like 'ipfs add' and print their CIDs",
        description="Import files, directories (-r), URLs or standard input (no PATH, or -) "
        "as 'ipfs add' does, and print their CIDs.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="a file, folder, URL or -")
    p.add_argument("-r", "--recursive", action="store_true", help="add directories")
    p.add_argument("-H", "--hidden", action="store_true", help="include files starting with .")
    p.add_argument("-n", "--only-hash", action="store_true", help="only compute CIDs")
    p.add_argument("-q", "--quiet", action="store_true", help="print only CIDs")
    p.add_argument("-Q", "--quieter", action="store_true", help="print only the root CID")
    p.add_argument(
        "-w", "--wrap-with-directory", action="store_true", help="wrap inputs in a directory"
    )
    p.add_argument("--raw-leaves", action="store_true", help="leaves as raw blocks")
    p.add_argument("--cid-version", type=int, default=0, help="0 (default) or 1")
    p.add_argument("--chunker", default="size-262144", help="size-N (default size-262144)")
    p.add_argument(
        "--stdin-name", metavar="NAME", help="name for standard input (default: its CID)"
    )
    p.set_defaults(func=_cmd_add)

    p = sub.add_parser("cat", help="print a file's bytes, verified", parents=[network])
    p.add_argument("cid", type=_cid_arg, metavar="CID[/PATH]")
    p.set_defaults(func=_cmd_cat)

    p = sub.add_parser("ls", help="list a directory", parents=[network])
    p.add_argument("cid", type=_cid_arg, metavar="CID[/PATH]")
    p.set_defaults(func=_cmd_ls)

    p = sub.add_parser("get", help="save a file or directory, verified", parents=[network])
    p.add_argument("cid", type=_cid_arg, metavar="CID[/PATH]")
    p.add_argument("-o", "--output", metavar="OUT", help="where to save it (default: its name)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    p.set_defaults(func=_cmd_get)

    dag = sub.add_parser("dag", help="move whole DAGs as CAR files").add_subparsers(
        dest="dag_command", required=True
    )
    p = dag.add_parser("export", help="write a DAG as CARv1 to stdout", parents=[network])
    p.add_argument("cid", type=_cid_arg, metavar="CID[/PATH]")
    p.set_defaults(func=_cmd_dag_export)
    p = dag.add_parser(
        "import",
        help="verify and store the blocks of CAR files",
        description="Verify every block of the CAR files and store them all, or none. "
        "By default every block under each root must be in the files or the repository "
        "(kubo pins the roots it imports, which fails on an incomplete DAG).",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--no-check",
        action="store_true",
        help="keep an incomplete DAG: do not walk the blocks under each root (kubo's "
        "--pin-roots=false; howto keeps no pins, so the flag is named for what it skips)",
    )
    p.add_argument("--stats", action="store_true", help="print how many blocks and bytes")
    p.set_defaults(func=_cmd_dag_import)
    repo = sub.add_parser("repo", help="look after the local repository").add_subparsers(
        dest="repo_command", required=True
    )
    p = repo.add_parser("verify", help="check every stored block against its CID")
    p.set_defaults(func=_cmd_repo_verify)
    p = repo.add_parser("gc", help="remove what interrupted writes left behind")
    p.set_defaults(func=_cmd_repo_gc)

    p = sub.add_parser("serve", help="run a gateway on 127.0.0.1 for the local repository")
    p.add_argument("--port", type=_port_arg, default=8080, help="port (0 picks a free one)")
    p.add_argument("--car", action="append", default=[], metavar="FILE", help="also serve")
    p.set_defaults(func=_cmd_serve)

    key = sub.add_parser("key", help="make and list the keys that sign IPNS names")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    p = key_sub.add_parser("gen", help="make an ed25519 key, print its IPNS name")
    p.add_argument("name", help="the key's local name")
    p.set_defaults(func=_cmd_key_gen)
    p = key_sub.add_parser("list", help="list the keys")
    p.add_argument("-l", action="store_true", help="show each key's IPNS name too")
    p.set_defaults(func=_cmd_key_list)

    name = sub.add_parser("name", help="publish, resolve and inspect IPNS names")
    name_sub = name.add_subparsers(dest="name_command", required=True)
    p = name_sub.add_parser("publish", help="sign a record pointing a name at /ipfs/CID")
    p.add_argument("path", help="/ipfs/CID[/path] (or a bare CID)")
    p.add_argument("-k", "--key", default="self", help="the key to sign with (default: self)")
    p.add_argument("--lifetime", help="how long the record is valid, e.g. 24h (default 48h)")
    p.add_argument("--ttl", help="how long readers may cache it, e.g. 5m (default 1h)")
    p.add_argument("-Q", "--quieter", action="store_true", help="print the name only")
    p.set_defaults(func=_cmd_name_publish)
    p = name_sub.add_parser(
        "resolve", help="the path a name points at, verified", parents=[network]
    )
    p.add_argument("name", help="k51… or /ipns/k51…")
    p.set_defaults(func=_cmd_name_resolve)
    p = name_sub.add_parser("inspect", help="show what a record file says")
    p.add_argument("file", help="a record, as 'howto routing put' takes it")
    p.add_argument("--verify", metavar="NAME", help="check the record against this name")
    p.set_defaults(func=_cmd_name_inspect)

    routing = sub.add_parser("routing", help="store records obtained elsewhere")
    routing_sub = routing.add_subparsers(dest="routing_command", required=True)
    p = routing_sub.add_parser("put", help="verify and keep an IPNS record for a name")
    p.add_argument("key", help="/ipns/NAME")
    p.add_argument("file", help="the record")
    p.set_defaults(func=_cmd_routing_put)

    catalog = sub.add_parser("catalog", help="build and list IPFS catalog versions")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    p = catalog_sub.add_parser("build", help="add the classic catalog, print its root CID")
    p.add_argument("--catalog", help="root YAML of the classic catalog (default: bundled)")
    p.add_argument("-n", "--only-hash", action="store_true", help="compute the CID only")
    p.add_argument("--lock", metavar="VERSION", help="record it as a new version in the index")
    p.add_argument("--pin", dest="lock", metavar="VERSION", help=argparse.SUPPRESS)
    p.add_argument("--note", help="what changed, for the versions index")
    p.add_argument(
        "--fetch-remote", action="store_true", help="download https:// files and zarr, add them"
    )
    p.add_argument("--downloads", metavar="DIR", help="keep downloads here (resumable)")
    p.set_defaults(func=_cmd_catalog_build)
    p = catalog_sub.add_parser(
        "check", help="verified, location or refused: each entry of a tree", parents=[network]
    )
    p.add_argument("target", help="a catalog's root CID, or a local catalog file or folder")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_catalog_check)
    p = catalog_sub.add_parser("versions", help="list the locked catalog versions")
    p.set_defaults(func=_cmd_catalog_versions)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``howto`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("howto: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except (HowtoError, OSError, ValueError, KeyError) as exc:
        subcommand = next(
            (
                getattr(args, f"{c}_command", None)
                for c in ("dag", "catalog", "repo", "key", "name", "routing")
                if getattr(args, f"{c}_command", None)
            ),
            None,
        )
        command = " ".join(filter(None, (args.command, subcommand)))
        reason = printable((str(exc).strip().splitlines() or [type(exc).__name__])[0])
        if len(reason) > 3 * SHOWN_CHARS:  # whatever a message repeats, one short line
            reason = f"{reason[:SHOWN_CHARS]}…({len(reason)} characters)…{reason[-SHOWN_CHARS:]}"
        print(f"howto {command}: error: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
