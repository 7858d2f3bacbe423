"""Names: IPNS keys of every libp2p type (``keys``); signed records, their validation and
resolution (``ipns``); where keys and records are kept (``storage``: records with the
repository, keys on this machine).  Imports ``formats`` and ``blocks``.
"""

from ..lazy import folder_exports

__getattr__, __dir__ = folder_exports(__name__)
