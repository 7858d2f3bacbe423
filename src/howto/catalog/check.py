"""``howto catalog check``: how much of a catalog tree is content-addressed, entry by entry.

The tree is read and judged exactly as ``get_intake_catalog(use_ipfs=CID)`` would judge
it (``pinned.load_tree``), so the table shows what a reader of the pinned catalog gets:
*verified* entries open and are checked against their CIDs, *location* entries open only
with ``verified_only=False``, *refused* entries never open.  Kerchunk entries whose
reference file is in the DAG are judged by the targets that file names.

A local folder is checked as if it were pinned: its root CID is computed (nothing is
stored) and ``{{ CATALOG_DIR }}`` paths that stay inside it count as verified.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import CatalogError, HowtoError
from ..formats.cids import parse_cid, v1_str
from ..retrieval.reader import DagReader
from ..retrieval.sources import default_chain
from .pinned import Reader, load_tree
from .policy import LOCATION, MAX_REFERENCE_BYTES, REFUSED, VERIFIED, Judged, reference_targets
from .versions import ROOT_NAME

VERDICTS = (VERIFIED, LOCATION, REFUSED)


@dataclass(frozen=True)
class Row:
    """One entry of the tree: where it is, what it is, and why."""

    file: str
    entry: str
    kind: str
    verdict: str
    reason: str
    url: str


@dataclass
class Report:
    """The verdict on every entry of a catalog tree."""

    root: str
    files: int
    rows: list[Row]

    def totals(self, kind: str | None = None) -> dict[str, int]:
        """Entries by verdict (all entries, or only ``"data"`` or ``"catalog"`` ones)."""
        counts = dict.fromkeys(VERDICTS, 0)
        for row in self.rows:
            if kind is None or row.kind == kind:
                counts[row.verdict] += 1
        return counts

    @property
    def refused(self) -> int:
        return self.totals()[REFUSED]

    def summary(self) -> str:
        """One line of totals, as ``catalog check`` prints it last."""
        data, subs = self.totals("data"), self.totals("catalog")
        parts = ", ".join(f"{data[v]} {v}" for v in VERDICTS)
        return (
            f"{len(self.rows)} entries in {self.files} files: data {parts}; "
            f"sub-catalogs {subs[VERIFIED]} verified, {subs[REFUSED]} refused"
        )

    def table(self) -> str:
        """A table with one line per entry, then the totals."""
        width = max([len(r.file) + len(r.entry) + 1 for r in self.rows] + [5])
        lines = [f"{'verdict':<9} {'entry':<{width}} URL, or why not verified"]
        for r in self.rows:
            noted = f"{r.url} ({r.reason})" if r.reason else r.url
            detail = r.reason if r.verdict == REFUSED else noted
            lines.append(f"{r.verdict:<9} {r.file + ':' + r.entry:<{width}} {detail}")
        lines.append(self.summary())
        return "\n".join(lines)

    def as_json(self) -> str:
        """The report as JSON: root, totals and every row."""
        doc = {
            "root": self.root,
            "files": self.files,
            "totals": self.totals(),
            "data": self.totals("data"),
            "catalogs": self.totals("catalog"),
            "entries": [asdict(r) for r in self.rows],
        }
        return json.dumps(doc, indent=1)


def _dag_reader(reader: DagReader) -> Reader:
    def read(url: str, limit: int) -> bytes:
        cid, path = parse_cid(url)
        _, size, _ = reader.stat(cid, path)
        if size > limit:
            raise CatalogError(f"{url}: {size} bytes, more than a catalog may have")
        return b"".join(reader.read(cid, path))

    return read


def _local_reader(root: str, folder: Path, fallback: Reader) -> Reader:
    """Files under ``ipfs://<root>/`` from ``folder``; other CIDs through ``fallback``."""

    def read(url: str, limit: int) -> bytes:
        inside = url.removeprefix(f"ipfs://{root}/")
        if inside == url:
            return fallback(url, limit)
        path = folder / inside
        if path.stat().st_size > limit:
            raise CatalogError(f"{url}: {path.stat().st_size} bytes, more than allowed")
        return path.read_bytes()

    return read


def _references(judged: Judged, read: Reader) -> Judged:
    """A verified kerchunk entry, judged again by the targets of its reference file."""
    options = judged.args.get("storage_options") or {}
    try:
        data = read(judged.references, MAX_REFERENCE_BYTES)
    except CatalogError as exc:
        return replace(judged, verdict=REFUSED, reason=" ".join(str(exc).split()))
    except (HowtoError, OSError) as exc:  # content-addressed, only not to be had here
        return replace(judged, reason="references not available: " + " ".join(str(exc).split()))
    try:
        _, outside = reference_targets(data, options.get("remote_protocol"))
    except CatalogError as exc:
        return replace(judged, verdict=REFUSED, reason=" ".join(str(exc).split()))
    if outside:
        reason = f"{len(outside)} kerchunk targets are locations, e.g. {outside[0]}"
        return replace(judged, verdict=LOCATION, reason=reason)
    return judged


def check(target: str, offline: bool = False) -> Report:
    """The verdict on every entry of the catalog tree at ``target``: a CID (its root file
    is ``catalog.yml``), or a local catalog file or folder checked as if it were pinned."""
    reader = _dag_reader(DagReader(default_chain(offline=offline)))
    local = Path(target)
    if local.exists():
        from ..unixfs.add import add
        from .build import PROFILE

        root_file = local / ROOT_NAME if local.is_dir() else local
        if not root_file.is_file():
            raise CatalogError(f"{target}: no {ROOT_NAME} in this folder")
        root = v1_str(add(root_file.parent, only_hash=True, **PROFILE))
        reader = _local_reader(root, root_file.parent, reader)
        url = f"ipfs://{root}/{root_file.name}"
    else:
        cid, path = parse_cid(target)
        url = f"ipfs://{v1_str(cid)}/{path or ROOT_NAME}"
        root = v1_str(cid)
    tree = load_tree(url, reader)
    rows = []
    # the tree lists sub-catalogs before the files naming them; the table starts at the root
    for file_url, doc in reversed(tree.files.items()):
        for judged in doc.entries.values():
            if judged.references and judged.verdict == VERIFIED:
                judged = _references(judged, reader)
            rows.append(
                Row(
                    file=file_url.removeprefix(f"ipfs://{root}/"),
                    entry=judged.name,
                    kind="catalog" if judged.is_catalog else "data",
                    verdict=judged.verdict,
                    reason=judged.reason,
                    url=judged.url,
                )
            )
    return Report(url, len(tree.files), rows)


__all__ = ["VERDICTS", "Report", "Row", "check"]
