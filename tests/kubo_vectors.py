"""Inputs from kubo's own tests, regenerated here so their published CIDs can be checked.

kubo's test/cli helpers draw bytes from a ChaCha20 keystream keyed with sha256(seed)
(zero nonce, counter 0); file names map keystream bytes onto a 39-character alphabet.
Source: ipfs/kubo test/cli/cid_profiles_test.go and add_test.go; t0040, t0044, t0260.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

ALPHABET = "abcdefghijklmnopqrstuvwxyz01234567890-_"


def keystream(seed: str, size: int) -> bytes:
    key = hashlib.sha256(seed.encode()).digest()
    return Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(size))


def random_names(seed: str, count: int, length: int, last_length: int | None = None) -> list[str]:
    lengths = [length] * count
    if last_length is not None:
        lengths[-1] = last_length
    stream = keystream(seed, sum(lengths))
    names, pos = [], 0
    for n in lengths:
        names.append("".join(ALPHABET[b % len(ALPHABET)] for b in stream[pos : pos + n]))
        pos += n
    return names


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root
