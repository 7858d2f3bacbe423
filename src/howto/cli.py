"""The ``howto`` command: kubo's verbs (add, cat, ls, dag export/import, serve) and catalogs.

Errors print one line on stderr and exit non-zero; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from multiformats import CID

from .add import add_paths
from .blocks import CarBlocks, Chain
from .bucket import open_repo
from .car import CARError
from .cids import parse_cid, to_cid
from .errors import HowtoError
from .reader import DagReader
from .sources import default_chain, local_chain
from .transfer import export_car, get_tree, import_car


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2), like other errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


def _cid_arg(text: str) -> tuple[CID, str]:
    try:
        return parse_cid(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port_arg(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not between 0 and 65535")
    return port


def _cmd_add(args: argparse.Namespace) -> int:
    if args.cid_version not in (0, 1):
        raise ValueError(f"unknown CID version {args.cid_version}: use 0 or 1")
    last = None
    for added in add_paths(
        args.paths,
        recursive=args.recursive,
        hidden=args.hidden,
        only_hash=args.only_hash,
        wrap_with_directory=args.wrap_with_directory,
        raw_leaves=True if args.raw_leaves else None,
        cid_version=args.cid_version,
        chunker=args.chunker,
        progress=False if (args.quiet or args.quieter) else None,
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
    return DagReader(default_chain(offline=args.offline, keep=True))


def _cmd_cat(args: argparse.Namespace) -> int:
    cid, path = args.cid
    out = sys.stdout.buffer
    for chunk in _reader(args).read(cid, path):
        out.write(chunk)
    out.flush()
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    cid, path = args.cid
    for entry in _reader(args).ls(cid, path):
        if entry.kind == "directory":
            print(f"{entry.cid} - {entry.name}/")
        else:
            print(f"{entry.cid} {entry.size} {entry.name}")
    return 0


def _cmd_get(args: argparse.Namespace) -> int:
    cid, path = args.cid
    out = Path(args.output) if args.output else Path(path.rsplit("/", 1)[-1] or str(cid))
    written = get_tree(_reader(args), cid, path, out, progress=not args.quiet)
    if not args.quiet:
        print(f"saved {cid}{'/' + path if path else ''} to {out} ({written} bytes)")
    return 0


def _cmd_dag_export(args: argparse.Namespace) -> int:
    cid, path = args.cid
    if sys.stdout.isatty():
        raise ValueError("refusing to write a CAR to a terminal: redirect it to a file")
    reader = _reader(args)
    target = reader.resolve(cid, path)[-1]
    export_car(target, sys.stdout.buffer, reader.chain)
    sys.stdout.buffer.flush()
    return 0


def _cmd_dag_import(args: argparse.Namespace) -> int:
    for path in args.files:
        with open(path, "rb") as f:
            try:
                roots, count = import_car(f, open_repo())
            except CARError as exc:
                raise CARError(f"{path}: {exc}") from None
        for root in roots:
            print(f"imported root {root} ({count} blocks from {path})")
    return 0


def _cmd_repo_verify(args: argparse.Namespace) -> int:
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
    repo = open_repo()
    for folder in repo.collect_garbage():
        print(f"removed {str(folder).rstrip('/').rsplit('/', 1)[-1]}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from .gateway import GatewayServer

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


def _cmd_catalog_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .catalog import build_ipfs_catalog, pin_version

    classic = Path(args.catalog) if args.catalog else None
    if args.pin:
        entry = pin_version(args.pin, args.note or "", classic=classic)
        print(f"pinned {entry.version}: {entry.cid}")
    else:
        print(build_ipfs_catalog(classic, only_hash=args.only_hash))
    return 0


def _cmd_catalog_versions(args: argparse.Namespace) -> int:
    from .catalog import list_catalog_versions

    for v in list_catalog_versions():
        print(f"{v.version}\t{v.date}\t{v.cid}\t{v.note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="howto", description="Content-addressed data, the IPFS way, verified.")
    parser.add_argument(
        "--offline", action="store_true", help="read local blocks only, ask no gateway"
    )
    network = _Parser(add_help=False)
    network.add_argument(
        "--offline", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("add", help="import files like 'ipfs add' and print their CIDs")
    p.add_argument("paths", nargs="+", metavar="PATH")
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
    p = dag.add_parser("import", help="verify and store the blocks of CAR files")
    p.add_argument("files", nargs="+", metavar="FILE")
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

    catalog = sub.add_parser("catalog", help="build and list IPFS catalog versions")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    p = catalog_sub.add_parser("build", help="add the classic catalog, print its root CID")
    p.add_argument("--catalog", help="root YAML of the classic catalog (default: bundled)")
    p.add_argument("-n", "--only-hash", action="store_true", help="compute the CID only")
    p.add_argument("--pin", metavar="VERSION", help="record it as a new pinned version")
    p.add_argument("--note", help="what changed, for the versions index")
    p.set_defaults(func=_cmd_catalog_build)
    p = catalog_sub.add_parser("versions", help="list the pinned catalog versions")
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
                for c in ("dag", "catalog", "repo")
                if getattr(args, f"{c}_command", None)
            ),
            None,
        )
        command = " ".join(filter(None, (args.command, subcommand)))
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # one line
        print(f"howto {command}: error: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
