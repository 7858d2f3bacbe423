"""Formats: the bytes of content addressing, with no I/O of their own.

CIDs and the hash policy (``cids``), dag-pb nodes and UnixFS data (``dagpb``), DAG-JSON
(``dagjson``) and CAR files (``car``).  Imports nothing of howto but ``howto.errors``.
"""

from ..lazy import folder_exports

__getattr__, __dir__ = folder_exports(__name__)
