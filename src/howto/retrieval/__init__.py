"""Retrieval: blocks from other machines, each checked against its CID.

``trustless`` is the client of trustless gateways (CAR and raw replies; ``blockwalk``
stands in for a CAR with single blocks where a gateway serves no CARs), ``discovery`` finds
the configured gateways (IPIP-280), ``sources`` assembles the default chain (local first),
``reader`` reads files and directories through a chain, ``transfer`` moves DAGs in and out
as CAR files and folders.  Imports ``formats``, ``blocks``, ``unixfs``, ``names`` and ``ipld``.
"""

from ..lazy import folder_exports

__getattr__, __dir__ = folder_exports(__name__)
