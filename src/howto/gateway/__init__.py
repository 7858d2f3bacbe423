"""Gateway: the HTTP server that serves blocks as the IPFS gateway specs describe.

``server`` starts and stops it (``serve``, ``GatewayServer``, ``embedded_gateway_url``);
``app`` routes each request to its reply: ``path_gateway`` (files, directories, IPLD
blocks, tar), ``trustless_gateway`` (raw blocks and CARs, written by ``car_stream``),
``ipns_gateway`` (``/ipns/`` names and their records) or ``pages`` (generated HTML).
Below those: ``negotiation`` (the path and format a request asks for), ``headers``
(cache, Etag and disposition headers), ``ranges`` (``Range`` replies), ``streaming``
(reading a batch ahead in a worker thread) and ``failures`` (error replies and logs).
Imports every layer below it.
"""

from ..lazy import exports

__all__, __getattr__, __dir__ = exports(
    __name__,
    {
        "app": ["Gateway"],
        "car_stream": ["FileLeaf", "LeafOpener", "leaf_opener", "write_car"],
        "failures": ["failure_replies", "log", "mark_started", "server_log"],
        "headers": ["IMMUTABLE", "disposition", "not_modified", "only_if_cached", "reply_headers"],
        "ipns_gateway": ["IpnsGateway", "records_for"],
        "negotiation": ["FORMATS", "TAR_TYPE", "Wanted", "negotiate", "path_segments"],
        "pages": [
            "LISTING_CACHE",
            "LISTING_PAGE",
            "MAX_PREVIEW_LINKS",
            "PAGE_VERSION",
            "dag_preview",
            "directory_listing",
        ],
        "path_gateway": ["SNIFF_BYTES", "serve_ipld", "serve_tar", "serve_unixfs"],
        "ranges": ["ByteReader", "MAX_RANGES", "send_block", "send_content"],
        "server": ["GatewayServer", "embedded_gateway_url", "serve"],
        "streaming": ["BATCH_BYTES", "batches"],
        "trustless_gateway": ["CAR_TYPE", "RAW_TYPE", "RecordingResolver", "TrustlessGateway"],
    },
)
