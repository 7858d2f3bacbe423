"""A content-addressable store in a dozen lines: the idea behind IPFS, for teaching.

Content goes in, its sha256 digest comes out as the key; the same content always gets
the same key, so storing it twice keeps one copy, and nobody can change what a key
names without the key changing too.
"""

import hashlib


class CAStore:
    """Keeps bytes under the hex sha256 of those bytes."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}

    def put(self, content: bytes) -> str:
        key = hashlib.sha256(content).hexdigest()
        self._objects[key] = bytes(content)
        return key

    def get(self, key: str) -> bytes:
        return self._objects[key]  # an unknown key raises KeyError

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects


__all__ = [
    "CAStore",
]
