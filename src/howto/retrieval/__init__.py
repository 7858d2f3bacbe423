"""Retrieval: blocks from other machines, each checked against its CID.

``trustless`` is the client of trustless gateways (CAR and raw replies; ``blockwalk``
stands in for a CAR with single blocks where a gateway serves no CARs), ``discovery`` finds
the configured gateways (IPIP-280), ``sources`` assembles the default chain (local first),
``reader`` reads files and directories through a chain, ``transfer`` moves DAGs in and out
as CAR files and folders.  Imports ``formats``, ``blocks``, ``unixfs``, ``names`` and ``ipld``.
"""

from ..lazy import exports

__all__, __getattr__, __dir__ = exports(
    __name__,
    {
        "blockwalk": ["walk_blocks"],
        "discovery": ["configured_gateway", "configured_gateways"],
        "readahead": [
            "FIRST_BYTES",
            "MOST_BYTES",
            "ReadAhead",
            "ReadAheadStats",
            "Sibling",
            "UnavailableAhead",
            "chunk_order",
            "default_read_ahead",
        ],
        "reader": ["DagReader"],
        "sources": [
            "bundled_blocks",
            "default_chain",
            "gateway_sources",
            "local_chain",
            "local_sources",
        ],
        "transfer": ["Imported", "export_car", "get_tree", "import_car", "import_cars"],
        "trustless": [
            "CAR_REFUSALS",
            "CAR_TYPE",
            "CarReply",
            "DEFAULT_CONNECTIONS",
            "GatewayBlocks",
            "RAW_TYPE",
            "Received",
            "default_connections",
            "default_timeout",
            "retry_after",
            "same_roots",
        ],
    },
)
