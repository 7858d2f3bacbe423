"""Gateway: the HTTP server that serves blocks as the IPFS gateway specs describe.

Imports every layer below it.
"""

from ..lazy import exports

__all__, __getattr__, __dir__ = exports(
    __name__,
    {
        "server": [
            "CAR_TYPE",
            "FORMATS",
            "RAW_TYPE",
            "TAR_TYPE",
            "Gateway",
            "GatewayServer",
            "Wanted",
            "disposition",
            "embedded_gateway_url",
            "negotiate",
            "serve",
        ],
    },
)
