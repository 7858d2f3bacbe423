"""Blocks: where blocks are kept, and the one protocol to get them.

``chain`` holds the block protocol (``BlockSource``, ``BlockStore``) and the ``Chain`` that asks
sources in order; ``repo`` is the local repository, ``bucket`` a repository in a cloud bucket,
``bundled`` the CAR files that ship with howto.  Imports ``formats``.
"""

from ..lazy import folder_exports

__getattr__, __dir__ = folder_exports(__name__)
