"""DAG-JSON (codec 0x0129) read into the same values as DAG-CBOR: links become ``CID``.

The IPLD DAG-JSON spec reserves maps whose only key is ``"/"``: ``{"/": "bafy…"}`` is a
link and ``{"/": {"bytes": "…"}}`` bytes in unpadded standard base64.  Everything else is
plain JSON.  ``display`` turns any decoded IPLD value back into DAG-JSON text, for people
to read (the gateway's HTML preview of a DAG-CBOR or DAG-JSON block).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from multiformats import CID

__all__ = ["decode", "display"]


def _special(pairs: list[tuple[str, Any]]) -> Any:
    if len(pairs) == 1 and pairs[0][0] == "/":
        value = pairs[0][1]
        if isinstance(value, str):
            return CID.decode(value)
        if isinstance(value, dict) and list(value) == ["bytes"]:
            text = value["bytes"]
            return base64.b64decode(text + "=" * (-len(text) % 4))
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("DAG-JSON map with a repeated key")
    return dict(pairs)


def decode(data: bytes) -> Any:
    """The IPLD value of a DAG-JSON block (``ValueError`` when it is not valid)."""
    try:
        return json.loads(data, object_pairs_hook=_special)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid DAG-JSON: {exc}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, CID):
        return {"/": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"/": {"bytes": base64.b64encode(bytes(value)).decode().rstrip("=")}}
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def display(value: Any) -> str:
    """``value`` (decoded DAG-CBOR or DAG-JSON) as indented DAG-JSON text."""
    return json.dumps(_plain(value), indent=2, ensure_ascii=False, sort_keys=True)
