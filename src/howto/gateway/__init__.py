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

from ..lazy import folder_exports

__getattr__, __dir__ = folder_exports(__name__)
